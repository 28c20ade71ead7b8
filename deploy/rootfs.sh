#!/bin/sh
# Lays out the x402-gateway container's whole root filesystem in one folder, for a `FROM scratch` image:
#
#   deploy/rootfs.sh BINARY OUTDIR [CONFIG]
#
#   /usr/local/bin/x402-gateway          the binary
#   /lib64/ld-linux-x86-64.so.2, /lib/...  exactly the shared libraries `ldd BINARY` lists (glibc, libgcc_s)
#   /etc/ssl/certs/ca-certificates.crt   CA bundle, for https facilitators and upstreams
#   /etc/passwd, /etc/group              one non-root user: nonroot, uid/gid 65532
#   /etc/nsswitch.conf                   hosts: files, then DNS (as Kubernetes' /etc/hosts expects)
#   /etc/x402-gateway/gateway.yaml       the default config (CONFIG, default: deploy/gateway.yaml)
#
# Used by both deploy/Dockerfile (in its build stage) and scripts/image (on this machine, offline), so the
# two images have the same contents. Libraries are copied from the machine this runs on: run it where the
# binary was built (or on the same distribution release), as both callers do. POSIX sh: the build stage's
# /bin/sh is dash. OUTDIR is emptied first.
set -eu
umask 022   # the image's files must be readable by its non-root user

if [ "$#" -lt 2 ] || [ "$#" -gt 3 ]; then
  echo "usage: $0 BINARY OUTDIR [CONFIG]" >&2
  exit 2
fi
bin=$1
out=$2
here=$(cd "$(dirname "$0")" && pwd)
config=${3:-$here/gateway.yaml}
ca=/etc/ssl/certs/ca-certificates.crt

fail() { echo "rootfs.sh: $*" >&2; exit 1; }
[ -x "$bin" ] || fail "$bin is not an executable file"
[ -r "$config" ] || fail "config $config is not readable"
[ -r "$ca" ] || fail "$ca is missing (install Debian's ca-certificates)"
command -v ldd >/dev/null 2>&1 || fail "ldd not found (Debian's libc-bin)"

rm -rf "$out"
mkdir -p "$out/usr/local/bin" "$out/etc/ssl/certs" "$out/etc/x402-gateway"

# Everything the dynamic loader will open, the loader itself included, each at the path ldd names (the
# loader's path is baked into the binary; the others sit in the loader's built-in search path). cp -L
# resolves Debian's /lib -> usr/lib symlinks, so each library lands as one real file at that path.
libs=$(ldd "$bin" | awk '
  $2 == "=>" && $3 ~ /^\// { print $3; next }
  $1 ~ /^\// { print $1 }')
[ -n "$libs" ] || fail "ldd listed no libraries for $bin (a static binary needs no rootfs.sh)"
for lib in $libs; do
  mkdir -p "$out$(dirname "$lib")"
  cp -L "$lib" "$out$lib"
done

install -m 0755 "$bin" "$out/usr/local/bin/x402-gateway"
install -m 0644 "$ca" "$out/etc/ssl/certs/ca-certificates.crt"
install -m 0644 "$config" "$out/etc/x402-gateway/gateway.yaml"
printf 'nonroot:x:65532:65532:nonroot:/nonexistent:/sbin/nologin\n' >"$out/etc/passwd"
printf 'nonroot:x:65532:\n' >"$out/etc/group"
printf 'hosts: files dns\n' >"$out/etc/nsswitch.conf"
chmod 0644 "$out/etc/passwd" "$out/etc/group" "$out/etc/nsswitch.conf"
# Fixed timestamps: the same inputs give the same layer, so rebuilding an unchanged binary is a no-op.
find "$out" -exec touch -h -d @0 {} +

echo "rootfs.sh: $out: x402-gateway, $(echo "$libs" | wc -l) libraries, CA bundle, nonroot user, config"
