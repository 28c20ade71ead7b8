#!/usr/bin/env python3
"""The side-by-side load benchmark of x402-gateway (issue 10). Started by `benches/load/run`, which installs
and builds everything first; this file only runs contenders and measures them (Python standard library only).

Method: wrk, THREADS threads and CONNS connections, WARMUP s of warm-up (discarded) then SECS s measured, for
every scenario in turn; ROUNDS interleaved rounds (each round runs every scenario once, in the same order, every
process started afresh for its run); medians over rounds. Per run: requests/s, p50/p99 latency (wrk's
histogram), CPU time per request of the server under test (utime+stime from /proc, summed over its process
tree; never the upstream, the facilitator stand-in or the load generator), resident memory after the run (VmRSS
summed over the tree), and for the gateway its idle RSS before any load. Then, once, the memory scenario: RSS of
the gateway holding MEMORY_CLAIMS live claims.

Every contender proxies to the same nginx upstream (a fixed 64-byte JSON body); every paid contender calls the
same facilitator stand-in: nginx answering /verify, /settle and /supported with fixed bodies. It is a benchmark
stand-in, not a facilitator: it checks nothing, so the figures are the servers' own cost.

Environment: ROUNDS (5), SECS (10), WARMUP (5), THREADS (2), CONNS (64), ONLY (comma-separated scenario ids),
MEMORY_CLAIMS (100000; 0 skips), KEEP=1 (keep the work directory), OUT (results directory), GATEWAY_BIN and
EXAMPLES_DIR (binaries built elsewhere). The binaries are copied into the work directory first, so a rebuild
during the run changes nothing measured.
"""

import base64
import datetime
import json
import math
import os
import platform
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import http.client

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(os.path.dirname(HERE))


def env_int(name, default):
    v = os.environ.get(name)
    return int(v) if v not in (None, "") else default


ROUNDS = env_int("ROUNDS", 5)
SECS = env_int("SECS", 10)
WARMUP = env_int("WARMUP", 5)
THREADS = env_int("THREADS", 2)
CONNS = env_int("CONNS", 64)
MEMORY_CLAIMS = env_int("MEMORY_CLAIMS", 100_000)
ONLY = [s for s in os.environ.get("ONLY", "").split(",") if s]
KEEP = os.environ.get("KEEP") == "1"
OUT = os.environ.get("OUT") or os.path.join(HERE, "results")
FULL_METHOD = (ROUNDS, SECS, WARMUP, THREADS, CONNS) == (5, 10, 5, 2, 64) and not ONLY

# GATEWAY_BIN and EXAMPLES_DIR measure binaries built elsewhere (another checkout or commit).
GATEWAY = os.environ.get("GATEWAY_BIN") or os.path.join(REPO, "target", "release", "x402-gateway")
EXAMPLES = os.environ.get("EXAMPLES_DIR") or os.path.join(REPO, "target", "release", "examples")
BARE_PINGORA = os.path.join(EXAMPLES, "bare_pingora")
PRESIGN = os.path.join(EXAMPLES, "presign")
AXUM_PEER = os.path.join(HERE, "peers", "x402-axum", "target", "release", "x402-axum-bench-peer")
EXPRESS_DIR = os.path.join(HERE, "peers", "x402-express")
STATIC_LUA = os.path.join(HERE, "wrk", "static.lua")
PAYMENTS_LUA = os.path.join(HERE, "wrk", "payments.lua")

# The price every paid contender charges: $0.001 of Base Sepolia USDC (its EIP-712 domain is name "USDC",
# version "2"), to the same payee, with the v2 reference servers' default maxTimeoutSeconds.
NETWORK = "eip155:84532"
V1_NETWORK = "base-sepolia"
ASSET = "0x036CbD53842c5426634e7929541eC2318f3dCF7e"
EIP712_NAME, EIP712_VERSION = "USDC", "2"
AMOUNT = "1000"
PRICE_USD = "$0.001"
PAY_TO = "0x3C44CdDdB6a900fa2b585dd299e03d12FA4293BC"  # anvil dev account #2: a benchmark address
PAYER = "0xf39Fd6e51aad88F6F4ce6aB8827279cffFb92266"  # anvil dev account #0, whose well-known key presigns
MAX_TIMEOUT = 300
MEMORY_MAX_TIMEOUT = 3600
DESCRIPTION = "benchmark resource"
MIME = "application/json"
TX_HASH = "0x" + "ab" * 32

UPSTREAM_BODY = '{"ok":true,"from":"benchmark upstream","pad":"' + "x" * 16 + '"}'
assert len(UPSTREAM_BODY) == 64, len(UPSTREAM_BODY)

CLK_TCK = os.sysconf("SC_CLK_TCK")

# A first guess at each paid scenario's rate (req/s), to size its presigned payments before any run; later
# runs use the largest rate seen so far. Payments for warm-up and run are RATE * seconds * MARGIN + SPARE.
RATE_GUESS = {"gw-paid-batch": 20000, "gw-paid-batch-sqlite": 8000, "gw-paid-batch-redis": 10000, "gw-paid": 9000, "gw-paid-sqlite": 6000, "gw-paid-redis": 6000, "gw-paid-local": 12000, "axum-paid": 9000, "express-paid": 2500}
MARGIN, SPARE = 1.5, 2000


def log(msg):
    print(msg, file=sys.stderr, flush=True)


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


# ---------------------------------------------------------------------------------------------- /proc

def proc_tree(root):
    """root and all its descendants."""
    children = {}
    for d in os.listdir("/proc"):
        if not d.isdigit():
            continue
        try:
            with open(f"/proc/{d}/stat") as f:
                ppid = int(f.read().rsplit(")", 1)[1].split()[1])
        except (OSError, IndexError, ValueError):
            continue
        children.setdefault(ppid, []).append(int(d))
    out, i = [root], 0
    while i < len(out):
        out += children.get(out[i], [])
        i += 1
    return out


def cpu_seconds(root):
    """utime + stime of root's process tree (every thread of every process), in seconds."""
    total = 0
    for pid in proc_tree(root):
        try:
            with open(f"/proc/{pid}/stat") as f:
                fields = f.read().rsplit(")", 1)[1].split()
            total += int(fields[11]) + int(fields[12])
        except (OSError, IndexError, ValueError):
            pass
    return total / CLK_TCK


def rss_kib(root):
    total = 0
    for pid in proc_tree(root):
        try:
            with open(f"/proc/{pid}/status") as f:
                for line in f:
                    if line.startswith("VmRSS:"):
                        total += int(line.split()[1])
        except (OSError, ValueError):
            pass
    return total


# ---------------------------------------------------------------------------------------------- processes

class Proc:
    def __init__(self, name, args, cwd, env=None, stop_signal=signal.SIGTERM):
        self.name = name
        self.log_path = os.path.join(cwd, f"{name}.log")
        self.stop_signal = stop_signal
        full_env = dict(os.environ)
        full_env.update(env or {})
        self.p = subprocess.Popen(args, cwd=cwd, env=full_env, stdout=open(self.log_path, "w"),
                                  stderr=subprocess.STDOUT, start_new_session=True)

    @property
    def pid(self):
        return self.p.pid

    def alive(self):
        return self.p.poll() is None

    def stop(self):
        if self.p.poll() is None:
            self._signal_group(self.stop_signal)
        self._signal_group(signal.SIGKILL)  # whatever of its group is left (nginx workers)

    def _signal_group(self, sig):
        try:
            os.killpg(self.p.pid, sig)
        except ProcessLookupError:
            pass
        try:
            self.p.wait(timeout=5)
        except subprocess.TimeoutExpired:
            pass

    def tail(self, n=20):
        try:
            with open(self.log_path) as f:
                return "".join(f.readlines()[-n:])
        except OSError:
            return ""


def http_get(port, path, headers=None, timeout=5):
    c = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)
    try:
        c.request("GET", path, headers=headers or {})
        r = c.getresponse()
        body = r.read()
        return r.status, {k.lower(): v for k, v in r.getheaders()}, body
    finally:
        c.close()


def wait_http(proc, port, path, timeout=30):
    deadline = time.time() + timeout
    while time.time() < deadline:
        if proc is not None and not proc.alive():
            raise RuntimeError(f"{proc.name} exited at start:\n{proc.tail()}")
        try:
            return http_get(port, path, timeout=2)
        except OSError:
            time.sleep(0.05)
    raise RuntimeError(f"{proc.name if proc else path} did not answer on port {port} within {timeout}s")


def wait_tcp(proc, port, timeout=30):
    deadline = time.time() + timeout
    while time.time() < deadline:
        if not proc.alive():
            raise RuntimeError(f"{proc.name} exited at start:\n{proc.tail()}")
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            return
        except OSError:
            time.sleep(0.05)
    raise RuntimeError(f"{proc.name} did not listen on {port} within {timeout}s")


# ---------------------------------------------------------------------------------------------- nginx

NGINX_COMMON = """
worker_processes {workers};
pid {dir}/nginx.pid;
error_log {dir}/error.log warn;
events {{ worker_connections 4096; }}
http {{
  access_log off;
  keepalive_requests 1000000;
  keepalive_timeout 75s;
  client_body_temp_path {dir}/client_body;
  proxy_temp_path {dir}/proxy;
  fastcgi_temp_path {dir}/fastcgi;
  uwsgi_temp_path {dir}/uwsgi;
  scgi_temp_path {dir}/scgi;
  default_type application/json;
{body}
}}
"""


def start_nginx(name, rundir, body, workers=2):
    d = os.path.join(rundir, name)
    os.makedirs(d, exist_ok=True)
    conf = os.path.join(d, "nginx.conf")
    with open(conf, "w") as f:
        f.write(NGINX_COMMON.format(workers=workers, dir=d, body=body))
    return Proc(name, ["nginx", "-p", d, "-e", os.path.join(d, "error.log"), "-c", conf, "-g", "daemon off;"],
                rundir, stop_signal=signal.SIGQUIT)


def start_upstream(rundir):
    port = free_port()
    body = f"""  server {{
    listen 127.0.0.1:{port};
    location / {{ return 200 '{UPSTREAM_BODY}'; }}
  }}"""
    p = start_nginx("upstream", rundir, body)
    wait_http(p, port, "/free/x")
    return p, port


# batch-settlement: the receiver authorizer's key (anvil dev key #1: a benchmark key with no value anywhere)
# and the channel state the stand-in reports for every deposit (a balance no run can spend).
AUTHORIZER_KEY = "0x59c6995e998f97a5a0044966f0945389dc9e86dae88c7a8412f4603b6b78690d"
BATCH_STATE = {"channelId": "0x" + "00" * 32, "balance": str(10**15), "totalClaimed": "0",
               "withdrawRequestedAt": 0, "refundNonce": "0"}

def facilitator_bodies(batch=False):
    verify = {"isValid": True, "payer": PAYER}
    settle = {"success": True, "transaction": TX_HASH, "network": NETWORK, "payer": PAYER}
    if batch:
        # What a batch-settlement deposit's /verify and /settle carry: the channel's on-chain state.
        verify["extra"] = BATCH_STATE
        settle["extra"] = {"channelState": BATCH_STATE}
    supported = {
        "kinds": [
            {"x402Version": 2, "scheme": "exact", "network": NETWORK},
            {"x402Version": 1, "scheme": "exact", "network": V1_NETWORK},
        ],
        "extensions": [],
        "signers": {"eip155:*": [PAYER]},
    }
    return [json.dumps(x, separators=(",", ":")) for x in (verify, settle, supported)]


def start_facilitator(rundir, batch=False):
    """The benchmark facilitator stand-in: instant fixed answers, and a request counter (stub_status)."""
    port = free_port()
    verify, settle, supported = facilitator_bodies(batch)
    body = f"""  # Benchmark facilitator stand-in: answers every /verify valid and every /settle settled at once.
  server {{
    listen 127.0.0.1:{port};
    location = /verify {{ return 200 '{verify}'; }}
    location = /settle {{ return 200 '{settle}'; }}
    location = /supported {{ return 200 '{supported}'; }}
    location = /bench_status {{ stub_status; }}
  }}"""
    p = start_nginx("facilitator", rundir, body)
    wait_http(p, port, "/supported")
    return p, port


def facilitator_requests(port):
    """Requests the stand-in has served so far (this query included)."""
    _, _, body = http_get(port, "/bench_status")
    lines = body.decode().splitlines()
    return int(lines[2].split()[2])


def start_nginx_proxy(rundir, upstream_port):
    port = free_port()
    body = f"""  upstream backend {{
    server 127.0.0.1:{upstream_port};
    keepalive 64;
    keepalive_requests 1000000;
  }}
  server {{
    listen 127.0.0.1:{port};
    location / {{
      proxy_pass http://backend;
      proxy_http_version 1.1;
      proxy_set_header Connection "";
    }}
  }}"""
    p = start_nginx("nginx-proxy", rundir, body)
    wait_http(p, port, "/free/x")
    return p, port


# ---------------------------------------------------------------------------------------------- contenders

def gateway_yaml(port, admin, upstream, facilitator, store=None, max_timeout=MAX_TIMEOUT, verify=None, batch=False):
    lines = [
        f'listen: "127.0.0.1:{port}"',
        f'admin_listen: "127.0.0.1:{admin}"',
        "upstreams:",
        f'  default: "http://127.0.0.1:{upstream}"',
        "facilitator:",
        f'  url: "http://127.0.0.1:{facilitator}"',
        f'pay_to: "{PAY_TO}"',
        f"accepts: [{NETWORK}]",
        f"max_timeout_seconds: {max_timeout}",
    ]
    if store:
        lines.append(f'store: "{store}"')
    lines += [
        "routes:",
        "  - path: /free/**",
        "    free: true",
        "  - path: /paid/**",
        f'    price: "{PRICE_USD}"',
        f'    description: "{DESCRIPTION}"',
        f"    mime_type: {MIME}",
    ]
    if verify:
        lines.append(f"    verify: {verify}")
    if batch:
        lines += [
            "  - path: /batch/**",
            "    methods: [GET]",
            f'    price: {{batch: "{PRICE_USD}", min_deposit: "$1"}}',
            f'    description: "{DESCRIPTION}"',
            f"    mime_type: {MIME}",
            "batch_settlement:",
            f'  receiver_authorizer_key: "{AUTHORIZER_KEY}"',
        ]
    return "\n".join(lines) + "\n"


def start_gateway(rundir, upstream, facilitator, store=None, max_timeout=MAX_TIMEOUT, verify=None, batch=False):
    port, admin = free_port(), free_port()
    cfg = os.path.join(rundir, "gateway.yaml")
    with open(cfg, "w") as f:
        f.write(gateway_yaml(port, admin, upstream, facilitator, store, max_timeout, verify, batch))
    p = Proc("gateway", [GATEWAY, "run", "-c", cfg], rundir, env={"RUST_LOG": "warn"}, stop_signal=signal.SIGINT)
    p.admin_port = admin
    wait_http(p, port, "/free/ready")
    return p, port


def gateway_metrics(proc, prefixes=("x402_settlements_total", "x402_cache_entries", "x402_claims_in_flight")):
    """The gateway's own counters (Prometheus text) whose names start with one of `prefixes`."""
    try:
        _, _, body = http_get(proc.admin_port, "/metrics")
    except OSError as e:
        return {"error": str(e)}
    return {line.rsplit(" ", 1)[0]: float(line.rsplit(" ", 1)[1]) for line in body.decode().splitlines()
            if line.startswith(prefixes)}


def start_bare_pingora(rundir, upstream):
    port = free_port()
    p = Proc("bare-pingora", [BARE_PINGORA, "--listen", f"127.0.0.1:{port}", "--upstream", f"127.0.0.1:{upstream}"],
             rundir, stop_signal=signal.SIGINT)  # Pingora's fast shutdown (SIGTERM drains for seconds)
    wait_http(p, port, "/free/x")
    return p, port


def peer_env(port, upstream, facilitator):
    return {
        "UPSTREAM": f"http://127.0.0.1:{upstream}", "PAY_TO": PAY_TO, "ASSET": ASSET, "NETWORK": NETWORK,
        "AMOUNT": AMOUNT, "MAX_TIMEOUT_SECONDS": str(MAX_TIMEOUT), "EIP712_NAME": EIP712_NAME,
        "EIP712_VERSION": EIP712_VERSION, "DESCRIPTION": DESCRIPTION, "MIME_TYPE": MIME,
    }


def start_axum(rundir, upstream, facilitator):
    port = free_port()
    env = peer_env(port, upstream, facilitator)
    env.update({"LISTEN": f"127.0.0.1:{port}", "FACILITATOR": f"http://127.0.0.1:{facilitator}/", "RUST_LOG": "warn"})
    p = Proc("x402-axum", [AXUM_PEER], rundir, env=env)
    wait_http(p, port, "/free/ready")
    return p, port


def start_express(rundir, upstream, facilitator):
    port = free_port()
    env = peer_env(port, upstream, facilitator)
    env.update({"PORT": str(port), "FACILITATOR": f"http://127.0.0.1:{facilitator}", "NODE_ENV": "production"})
    p = Proc("x402-express", ["node", os.path.join(EXPRESS_DIR, "server.mjs")], rundir, env=env)
    wait_http(p, port, "/free/ready")
    return p, port


def start_redis(rundir):
    port = free_port()
    d = os.path.join(rundir, "redis")
    os.makedirs(d)
    p = Proc("redis", ["redis-server", "--port", str(port), "--bind", "127.0.0.1", "--dir", d, "--save", "",
                       "--appendonly", "yes", "--appendfsync", "everysec", "--loglevel", "warning"], rundir)
    wait_tcp(p, port)
    return p, port


# ---------------------------------------------------------------------------------------------- scenarios

# id, contender, what, path, expected status, kind (free|challenge|paid|replay), extra options
SCENARIOS = [
    dict(id="upstream", contender="nginx upstream, directly (ceiling)", what="free", path="/free/x", status=200),
    dict(id="bare-pingora", contender="bare Pingora ProxyHttp", what="free", path="/free/x", status=200),
    dict(id="nginx-proxy", contender="nginx reverse proxy", what="free", path="/free/x", status=200),
    dict(id="gw-free", contender="x402-gateway", what="free", path="/free/x", status=200),
    dict(id="gw-402", contender="x402-gateway", what="402", path="/paid/x", status=402),
    dict(id="gw-paid", contender="x402-gateway", what="paid", path="/paid/x", status=200, paid=True),
    dict(id="gw-replay", contender="x402-gateway", what="replay", path="/paid/x", status=409, replay=True),
    dict(id="gw-paid-sqlite", contender="x402-gateway, store sqlite", what="paid", path="/paid/x", status=200,
         paid=True, store="sqlite"),
    dict(id="gw-paid-redis", contender="x402-gateway, store redis", what="paid", path="/paid/x", status=200,
         paid=True, store="redis"),
    dict(id="gw-paid-local", contender="x402-gateway, verify: local", what="paid", path="/paid/x", status=200,
         paid=True, verify="local"),
    # batch-settlement: one deposit per channel before the clock starts, then a voucher per request, checked
    # by the gateway alone (no facilitator call).
    dict(id="gw-paid-batch", contender="x402-gateway, batch-settlement", what="paid", path="/batch/x",
         status=200, paid=True, batch=True),
    dict(id="gw-paid-batch-sqlite", contender="x402-gateway, batch-settlement, store sqlite", what="paid",
         path="/batch/x", status=200, paid=True, batch=True, store="sqlite"),
    dict(id="gw-paid-batch-redis", contender="x402-gateway, batch-settlement, store redis", what="paid",
         path="/batch/x", status=200, paid=True, batch=True, store="redis"),
    dict(id="axum-402", contender="x402-axum 2.0.2", what="402", path="/paid/x", status=402),
    dict(id="axum-paid", contender="x402-axum 2.0.2", what="paid", path="/paid/x", status=200, paid=True),
    dict(id="express-402", contender="@x402/express 2.27", what="402", path="/paid/x", status=402),
    dict(id="express-paid", contender="@x402/express 2.27", what="paid", path="/paid/x", status=200, paid=True),
]


def start_contender(s, rundir, upstream, facilitator, store_port=None):
    sid = s["id"]
    if sid == "upstream":
        return None, upstream
    if sid == "bare-pingora":
        return start_bare_pingora(rundir, upstream)
    if sid == "nginx-proxy":
        return start_nginx_proxy(rundir, upstream)
    if sid.startswith("gw-"):
        store = None
        if s.get("store") == "sqlite":
            store = f"sqlite:{os.path.join(rundir, 'claims.db')}"
        elif s.get("store") == "redis":
            store = f"redis://127.0.0.1:{store_port}/0"
        return start_gateway(rundir, upstream, facilitator, store, verify=s.get("verify"), batch=s.get("batch", False))
    if sid.startswith("axum-"):
        return start_axum(rundir, upstream, facilitator)
    if sid.startswith("express-"):
        return start_express(rundir, upstream, facilitator)
    raise ValueError(sid)


def presign(port, path, n, out, extra=()):
    r = subprocess.run([PRESIGN, f"http://127.0.0.1:{port}{path}", str(n), out, *extra], capture_output=True, text=True)
    if r.returncode != 0:
        raise RuntimeError(f"presign failed: {r.stderr.strip()}")
    return json.loads(r.stdout.strip().splitlines()[-1])


def split_payments(src, skip, first, base_warm, base_run, threads):
    """After `skip` lines, `first` lines to base_warm.k and the rest to base_run.k; line i of a part goes to
    thread i % threads (disjoint slices, never a payment twice)."""
    warm = [open(f"{base_warm}.{k}", "w") for k in range(threads)]
    run = [open(f"{base_run}.{k}", "w") for k in range(threads)]
    with open(src) as f:
        for i, line in enumerate(f):
            i -= skip
            if i < 0:
                continue
            if i < first:
                warm[i % threads].write(line)
            else:
                run[(i - first) % threads].write(line)
    for h in warm + run:
        h.close()


def deal(src, base, threads):
    """Line i of `src` to base.(i % threads), in order: a batch channel's vouchers stay with one thread."""
    out = [open(f"{base}.{k}", "w") for k in range(threads)]
    with open(src) as f:
        for i, line in enumerate(f):
            out[i % threads].write(line)
    for h in out:
        h.close()
    os.remove(src)


def wrk(port, path, secs, script, script_args=(), headers=(), logfile=None):
    cmd = ["wrk", f"-t{THREADS}", f"-c{CONNS}", f"-d{secs}s", "--latency", "-s", script]
    for h in headers:
        cmd += ["-H", h]
    cmd.append(f"http://127.0.0.1:{port}{path}")
    if script_args:
        cmd += ["--"] + list(script_args)
    r = subprocess.run(cmd, capture_output=True, text=True)
    if logfile:
        with open(logfile, "a") as f:
            f.write(" ".join(c if len(c) < 200 else c[:60] + "…" for c in cmd) + "\n" + r.stdout + r.stderr + "\n")
    for line in r.stdout.splitlines():
        if line.startswith("WRKJSON "):
            return json.loads(line[len("WRKJSON "):])
    raise RuntimeError(f"wrk printed no summary (exit {r.returncode}): {r.stdout[-500:]} {r.stderr[-500:]}")


def check_status(s, port, headers=None):
    status, h, body = http_get(port, s["path"], headers=headers)
    if status != s["status"]:
        why = body[:300]
        if "payment-required" in h:
            why = json.loads(base64.b64decode(h["payment-required"])).get("error")
        raise RuntimeError(f"{s['id']}: expected {s['status']}, got {status}: {why}")
    if s["status"] == 402 and "payment-required" not in h:
        raise RuntimeError(f"{s['id']}: 402 without PAYMENT-REQUIRED")
    if s.get("paid") and "payment-response" not in h:
        raise RuntimeError(f"{s['id']}: paid 200 without PAYMENT-RESPONSE")
    return h


def run_scenario(s, workdir, round_no, rates):
    sid = s["id"]
    rundir = tempfile.mkdtemp(prefix=f"r{round_no}-{sid}-", dir=workdir)
    procs = []
    result = dict(id=sid, round=round_no)
    try:
        upstream, up_port = start_upstream(rundir)
        procs.append(upstream)
        fac, fac_port = start_facilitator(rundir, batch=s.get("batch", False))
        procs.append(fac)
        store_proc = store_port = None
        if s.get("store") == "redis":
            store_proc, store_port = start_redis(rundir)
            procs.append(store_proc)
        server, port = start_contender(s, rundir, up_port, fac_port, store_port)
        if server is None:
            server = upstream
        else:
            procs.insert(0, server)
        if sid.startswith("gw-"):
            result["idle_rss_kib"] = rss_kib(server.pid)
        wrk_log = os.path.join(rundir, "wrk.log")
        script, script_args, headers = STATIC_LUA, (), ()
        warm_args = ()
        if s.get("batch"):
            rate = rates.get(sid, RATE_GUESS.get(sid, 5000))
            # Channels per set (warm-up, run): far more than connections, so a channel's next voucher is sent
            # long after its last answer (one request per channel at a time); a multiple of THREADS.
            channels = max(16 * CONNS // THREADS, 1) * THREADS
            for part, secs, salt in (("warm", WARMUP, 0), ("run", SECS, channels)):
                n = int(rate * secs * MARGIN) + SPARE
                src = os.path.join(rundir, f"{part}.txt")
                info = presign(port, s["path"], n, src, ("--batch", str(channels), "--salt-base", str(salt)))
                result["accepted"] = info["accepted"]
                result.setdefault("presigned", 0)
                result["presigned"] += n
                result["channels"] = channels
                with open(src + ".deposits") as f:
                    for line in f:  # each deposit opens a channel (and pays its call 1)
                        check_status(s, port, {"PAYMENT-SIGNATURE": line.strip()})
                deal(src, os.path.join(rundir, part), THREADS)
            script = PAYMENTS_LUA
            warm_args = (os.path.join(rundir, "warm"),)
            script_args = (os.path.join(rundir, "run"),)
        elif s.get("paid"):
            rate = rates.get(sid, RATE_GUESS.get(sid, 5000))
            n_warm = int(rate * WARMUP * MARGIN) + SPARE
            n_run = int(rate * SECS * MARGIN) + SPARE
            src = os.path.join(rundir, "payments.txt")
            info = presign(port, s["path"], n_warm + n_run + 1, src)
            result["accepted"] = info["accepted"]
            result["presigned"] = n_warm + n_run
            result["sign_seconds"] = info["sign_seconds"]
            with open(src) as f:
                check_line = f.readline().strip()  # the first one pays the sanity check below
            split_payments(src, 1, n_warm, os.path.join(rundir, "warm"), os.path.join(rundir, "run"), THREADS)
            check_status(s, port, {"PAYMENT-SIGNATURE": check_line})
            os.remove(src)
            script = PAYMENTS_LUA
            warm_args = (os.path.join(rundir, "warm"),)
            script_args = (os.path.join(rundir, "run"),)
        elif s.get("replay"):
            src = os.path.join(rundir, "payments.txt")
            info = presign(port, s["path"], 1, src)
            result["accepted"] = info["accepted"]
            with open(src) as f:
                header = f.readline().strip()
            status, _, _ = http_get(port, s["path"], {"PAYMENT-SIGNATURE": header})
            if status != 200:
                raise RuntimeError(f"{sid}: the first use of the replayed payment got {status}, not 200")
            check_status(s, port, {"PAYMENT-SIGNATURE": header})
            headers = (f"PAYMENT-SIGNATURE: {header}",)
        else:
            h = check_status(s, port)
            if s["status"] == 402:
                result["accepted"] = json.loads(base64.b64decode(h["payment-required"]))["accepts"][0]

        warm = wrk(port, s["path"], WARMUP, script, warm_args, headers, wrk_log)
        result["warmup_rps"] = warm["requests"] / (warm["duration_us"] / 1e6)
        fac_before = facilitator_requests(fac_port)
        cpu_before = cpu_seconds(server.pid)
        store_cpu_before = cpu_seconds(store_proc.pid) if store_proc else 0.0
        w = wrk(port, s["path"], SECS, script, script_args, headers, wrk_log)
        cpu_after = cpu_seconds(server.pid)
        store_cpu_after = cpu_seconds(store_proc.pid) if store_proc else 0.0
        fac_after = facilitator_requests(fac_port)
        result["rss_kib"] = rss_kib(server.pid)
        if store_proc:
            result["store_rss_kib"] = rss_kib(store_proc.pid)
        n = max(w["requests"], 1)
        result.update(
            rps=w["requests"] / (w["duration_us"] / 1e6),
            requests=w["requests"],
            p50_ms=w["p50_us"] / 1000, p90_ms=w["p90_us"] / 1000, p99_ms=w["p99_us"] / 1000,
            mean_ms=w["mean_us"] / 1000, max_ms=w["max_us"] / 1000,
            cpu_us_per_req=(cpu_after - cpu_before) * 1e6 / n,
            cpu_cores=(cpu_after - cpu_before) / (w["duration_us"] / 1e6),
            facilitator_calls_per_req=(fac_after - fac_before - 1) / n,
            socket_errors=w["connect"] + w["read"] + w["write"] + w["timeout"],
            exhausted=w["exhausted"],
        )
        if store_proc:
            result["store_cpu_us_per_req"] = (store_cpu_after - store_cpu_before) * 1e6 / n
        # Responses with another status than expected: wrk counts every status > 399 as an error.
        result["unexpected"] = w["status"] if s["status"] < 400 else w["requests"] - w["status"]
        if s.get("paid"):
            rates[sid] = max(rates.get(sid, 0), result["rps"], result["warmup_rps"])
    except Exception as e:  # noqa: BLE001 - one failed run is recorded, the benchmark goes on
        result["error"] = str(e)
        for p in procs:
            if p.name not in ("upstream", "facilitator") and not p.alive():
                result["error"] += f"\n{p.name} log:\n{p.tail()}"
    finally:
        cleanup(procs, rundir)
    return result


def cleanup(procs, rundir):
    """Stops a run's processes and, unless KEEP, removes its directory."""
    for p in procs:
        p.stop()
    if not KEEP:
        shutil.rmtree(rundir, ignore_errors=True)


def memory_scenario(workdir, rate):
    """RSS of the gateway (memory store) holding `MEMORY_CLAIMS` live claims: that many paid requests on a route
    whose maxTimeoutSeconds keeps them alive for an hour, then VmRSS."""
    rundir = tempfile.mkdtemp(prefix="memory-", dir=workdir)
    procs = []
    out = dict(claims_target=MEMORY_CLAIMS)
    try:
        upstream, up_port = start_upstream(rundir)
        fac, fac_port = start_facilitator(rundir, batch=s.get("batch", False))
        procs += [upstream, fac]
        gw, port = start_gateway(rundir, up_port, fac_port, None, MEMORY_MAX_TIMEOUT)
        procs.insert(0, gw)
        out["idle_rss_kib"] = rss_kib(gw.pid)
        src = os.path.join(rundir, "payments.txt")
        info = presign(port, "/paid/x", MEMORY_CLAIMS, src)
        out["sign_seconds"] = info["sign_seconds"]
        split_payments(src, 0, 0, os.path.join(rundir, "unused"), os.path.join(rundir, "mem"), THREADS)
        os.remove(src)
        secs = int(math.ceil(MEMORY_CLAIMS / max(rate, 500) * 1.5)) + 5
        w = wrk(port, "/paid/x", secs, PAYMENTS_LUA, (os.path.join(rundir, "mem"), "stop"), (),
                os.path.join(rundir, "wrk.log"))
        out["paid_200"] = w["requests"] - w["status"]
        out["non_2xx"] = w["status"]
        out["exhausted"] = w["exhausted"]
        out["rss_kib"] = rss_kib(gw.pid)
        time.sleep(2)
        out["rss_kib_after_2s"] = rss_kib(gw.pid)
        out["metrics"] = gateway_metrics(gw)
    except Exception as e:  # noqa: BLE001
        out["error"] = str(e)
    finally:
        cleanup(procs, rundir)
    return out


# ---------------------------------------------------------------------------------------------- report

def sh(cmd):
    try:
        r = subprocess.run(cmd, capture_output=True, text=True, shell=True, timeout=30)
        return (r.stdout + r.stderr).strip()
    except Exception as e:  # noqa: BLE001
        return f"? ({e})"


def machine():
    model = sh("grep -m1 'model name' /proc/cpuinfo | cut -d: -f2").strip()
    lock = os.path.join(REPO, "Cargo.lock")
    pingora = sh(f"grep -A1 '^name = \"pingora-core\"' {lock} | sed -n 2p | cut -d'\"' -f2")
    axum_lock = os.path.join(HERE, "peers", "x402-axum", "Cargo.lock")
    x402_axum = sh(f"grep -A1 '^name = \"x402-axum\"' {axum_lock} | sed -n 2p | cut -d'\"' -f2")
    express = sh(f"node -p \"require('{EXPRESS_DIR}/node_modules/@x402/express/package.json').version\"")
    express_js = sh(f"node -p \"require('{EXPRESS_DIR}/node_modules/express/package.json').version\"")
    commit = sh(f"git -C {REPO} rev-parse --short HEAD")
    dirty = sh(f"git -C {REPO} status --porcelain -- src Cargo.toml Cargo.lock")
    return {
        "cpu": model, "nproc": os.cpu_count(), "kernel": platform.release(),
        "memory": sh("grep MemTotal /proc/meminfo | awk '{print $2\" kB\"}'"),
        "gateway_commit": os.environ.get("GATEWAY_REV") or (commit + (" (+ uncommitted changes in src/)" if dirty else "")),
        "rustc": sh("rustc --version"), "pingora": pingora, "x402_axum": x402_axum,
        "x402_express": express, "express": express_js, "node": sh("node --version"),
        "nginx": sh("nginx -v").replace("nginx version: ", ""), "wrk": sh("wrk -v | head -1").split(" Copyright")[0],
        "redis": sh("redis-server --version").split(" sha=")[0], "sqlite": "bundled with rusqlite (see Cargo.lock)",
    }


def med(rows, key):
    vals = [r[key] for r in rows if key in r and r[key] is not None]
    return statistics.median(vals) if vals else None


def summarize(results):
    by = {}
    for r in results:
        by.setdefault(r["id"], []).append(r)
    out = {}
    for s in SCENARIOS:
        if s["id"] not in by:
            continue
        rows = [r for r in by.get(s["id"], []) if "error" not in r]
        errs = [r["error"] for r in by.get(s["id"], []) if "error" in r]
        if not rows:
            out[s["id"]] = dict(ok_runs=0, errors=errs)
            continue
        out[s["id"]] = dict(
            ok_runs=len(rows), errors=errs,
            rps=med(rows, "rps"), p50_ms=med(rows, "p50_ms"), p99_ms=med(rows, "p99_ms"),
            cpu_us_per_req=med(rows, "cpu_us_per_req"), rss_mib=med(rows, "rss_kib") / 1024,
            idle_rss_mib=(med(rows, "idle_rss_kib") or 0) / 1024 or None,
            store_cpu_us_per_req=med(rows, "store_cpu_us_per_req"),
            facilitator_calls_per_req=med(rows, "facilitator_calls_per_req"),
            unexpected=sum(r["unexpected"] for r in rows), socket_errors=sum(r["socket_errors"] for r in rows),
            exhausted=sum(r["exhausted"] for r in rows),
            rps_all=[round(r["rps"]) for r in rows],
        )
    return out


def fmt(v, digits=0):
    if v is None:
        return "–"
    return f"{v:,.{digits}f}"


def ratio(a, b):
    return None if not a or not b else a / b


def comparisons(sm):
    def get(sid, key):
        return sm.get(sid, {}).get(key)

    pairs = [
        ("free: gateway vs nginx upstream directly (ceiling)", "gw-free", "upstream"),
        ("free: gateway vs bare Pingora (row 2)", "gw-free", "bare-pingora"),
        ("free: gateway vs nginx reverse proxy (row 3)", "gw-free", "nginx-proxy"),
        ("free: bare Pingora vs nginx reverse proxy", "bare-pingora", "nginx-proxy"),
        ("402: gateway vs x402-axum", "gw-402", "axum-402"),
        ("402: gateway vs @x402/express", "gw-402", "express-402"),
        ("paid: gateway vs x402-axum", "gw-paid", "axum-paid"),
        ("paid: gateway vs @x402/express", "gw-paid", "express-paid"),
        ("replay (409) vs the gateway's own 402", "gw-replay", "gw-402"),
        ("paid, sqlite store vs memory store", "gw-paid-sqlite", "gw-paid"),
        ("paid, redis store vs memory store", "gw-paid-redis", "gw-paid"),
        ("paid, verify: local (one facilitator call) vs x402-axum", "gw-paid-local", "axum-paid"),
        ("batch-settlement voucher vs x402-axum paid", "gw-paid-batch", "axum-paid"),
        ("batch-settlement voucher vs the gateway's 402", "gw-paid-batch", "gw-402"),
        ("batch-settlement, sqlite store vs memory store", "gw-paid-batch-sqlite", "gw-paid-batch"),
        ("batch-settlement, redis store vs memory store", "gw-paid-batch-redis", "gw-paid-batch"),
        ("402: gateway vs nginx reverse proxy", "gw-402", "nginx-proxy"),
    ]
    out = []
    for label, a, b in pairs:
        out.append(dict(label=label, a=a, b=b, rps_ratio=ratio(get(a, "rps"), get(b, "rps")),
                        cpu_ratio=ratio(get(a, "cpu_us_per_req"), get(b, "cpu_us_per_req"))))
    return out


def targets(sm, mem):
    def g(sid, key):
        return sm.get(sid, {}).get(key)

    def check(label, value, bound, op, shown):
        met = None if value is None else (value >= bound if op == ">=" else value <= bound)
        return dict(target=label, figure=shown, met=met)

    t = []
    r = ratio(g("gw-free", "rps"), g("nginx-proxy", "rps"))
    t.append(check("free route ≥ 1.0× nginx reverse proxy req/s", r, 1.0, ">=", f"{fmt(r, 2)}×"))
    r = ratio(g("gw-free", "rps"), g("bare-pingora", "rps"))
    t.append(check("free route ≥ 1.2× bare Pingora req/s", r, 1.2, ">=", f"{fmt(r, 2)}×"))
    a, b = g("gw-free", "cpu_us_per_req"), g("nginx-proxy", "cpu_us_per_req")
    t.append(check("free route CPU/request ≤ nginx reverse proxy's", ratio(a, b), 1.0, "<=",
                   f"{fmt(a, 1)} µs vs {fmt(b, 1)} µs"))
    r = ratio(g("gw-402", "rps"), g("axum-402", "rps"))
    t.append(check("402 ≥ 2× x402-axum", r, 2.0, ">=", f"{fmt(r, 2)}×"))
    r = ratio(g("gw-402", "rps"), g("express-402", "rps"))
    t.append(check("402 ≥ 10× @x402/express", r, 10.0, ">=", f"{fmt(r, 2)}×"))
    r = ratio(g("gw-paid", "rps"), g("axum-paid", "rps"))
    t.append(check("paid ≥ 2× x402-axum", r, 2.0, ">=", f"{fmt(r, 2)}×"))
    r = ratio(g("gw-paid", "rps"), g("express-paid", "rps"))
    t.append(check("paid ≥ 10× @x402/express", r, 10.0, ">=", f"{fmt(r, 2)}×"))
    a = g("gw-paid", "cpu_us_per_req")
    t.append(check("paid: gateway CPU/request ≤ 100 µs (stand-in excluded)", a, 100.0, "<=", f"{fmt(a, 1)} µs"))
    r = ratio(g("gw-replay", "rps"), g("gw-402", "rps"))
    t.append(check("replay refused at ≥ the 402 rate", r, 1.0, ">=", f"{fmt(r, 2)}×"))
    c = g("gw-replay", "facilitator_calls_per_req")
    t.append(check("replay: zero facilitator calls", c, 0.0005, "<=",
                   f"{fmt(c, 4)} calls/request (the gateway's 5 s /supported health check included)"))
    m = mem.get("rss_kib") if mem else None
    t.append(check(f"RSS with {MEMORY_CLAIMS:,} live claims ≤ 64 MiB", None if m is None else m / 1024, 64.0, "<=",
                   "–" if m is None else f"{m / 1024:.1f} MiB ({mem.get('paid_200', 0):,} claims)"))
    return t


def markdown(meta, sm, comps, tg, mem, started, finished):
    L = []
    L.append(f"# x402-gateway load benchmark, {started:%Y-%m-%d %H:%M} UTC")
    L.append("")
    L.append(f"Method: wrk {THREADS} threads, {CONNS} connections, {WARMUP} s warm-up (discarded) + {SECS} s measured, "
             f"{ROUNDS} interleaved round(s), medians; fresh processes every run; logging at warn. "
             f"{'Full method.' if FULL_METHOD else 'NOT the full method (overridden by environment).'} "
             f"Took {(finished - started).total_seconds() / 60:.1f} min.")
    L.append("")
    L.append("Machine: " + ", ".join(f"{k} {v}" for k, v in meta.items()))
    L.append("")
    L.append("| scenario | contender | req/s | p50 ms | p99 ms | CPU µs/req | RSS after MiB | notes |")
    L.append("|---|---|---:|---:|---:|---:|---:|---|")
    for s in SCENARIOS:
        m = sm.get(s["id"])
        if m is None:
            continue
        if not m.get("ok_runs"):
            L.append(f"| {s['what']} | {s['contender']} | failed | | | | | {'; '.join(e.splitlines()[0] for e in m['errors'])[:200]} |")
            continue
        notes = []
        if m.get("idle_rss_mib"):
            notes.append(f"idle RSS {m['idle_rss_mib']:.1f} MiB")
        if m.get("store_cpu_us_per_req") is not None:
            notes.append(f"+ redis {m['store_cpu_us_per_req']:.0f} µs/req")
        if s.get("paid") or s.get("replay"):
            notes.append(f"facilitator calls/req {m['facilitator_calls_per_req']:.3f}")
        for k, label in (("unexpected", "unexpected statuses"), ("socket_errors", "socket errors"),
                         ("exhausted", "payments exhausted")):
            if m.get(k):
                notes.append(f"{m[k]} {label}")
        if m.get("errors"):
            notes.append(f"{len(m['errors'])} failed run(s)")
        notes.append("runs " + "/".join(f"{x / 1000:.1f}k" for x in m["rps_all"]))
        L.append(f"| {s['what']} | {s['contender']} (`{s['id']}`) | {fmt(m['rps'])} | {fmt(m['p50_ms'], 2)} | "
                 f"{fmt(m['p99_ms'], 2)} | {fmt(m['cpu_us_per_req'], 1)} | {fmt(m['rss_mib'], 1)} | {'; '.join(notes)} |")
    L.append("")
    L.append("| comparison | req/s ratio | CPU/req ratio |")
    L.append("|---|---:|---:|")
    for c in comps:
        L.append(f"| {c['label']} | {fmt(c['rps_ratio'], 2)}× | {fmt(c['cpu_ratio'], 2)}× |")
    L.append("")
    if mem:
        if "error" in mem:
            L.append(f"Memory scenario failed: {mem['error'].splitlines()[0]}")
        else:
            claims = (mem.get("metrics") or {}).get('x402_cache_entries{cache="claims"}')
            L.append(f"Memory: gateway idle RSS {mem['idle_rss_kib'] / 1024:.1f} MiB; after {mem['paid_200']:,} paid "
                     f"requests answered 200 (the gateway's metrics: {fmt(claims)} claims held; each kept to "
                     f"validBefore = {MEMORY_MAX_TIMEOUT} s ahead, + 60 s) RSS {mem['rss_kib'] / 1024:.1f} MiB "
                     f"({mem['rss_kib_after_2s'] / 1024:.1f} MiB 2 s later).")
        L.append("")
    L.append("| target (issue 10) | figure | met |")
    L.append("|---|---|---|")
    for t in tg:
        L.append(f"| {t['target']} | {t['figure']} | {'–' if t['met'] is None else ('yes' if t['met'] else 'no')} |")
    L.append("")
    return "\n".join(L)


def terms_check(results):
    """Every paid contender's offer must carry the same terms."""
    keys = ("scheme", "network", "amount", "asset", "payTo", "maxTimeoutSeconds")
    seen = {}
    for r in results:
        a = r.get("accepted")
        if not a:
            continue
        t = tuple(str(a.get(k)).lower() for k in keys) + (
            str((a.get("extra") or {}).get("name")), str((a.get("extra") or {}).get("version")))
        seen.setdefault(t, set()).add(r["id"].split("-")[0])
    return [dict(terms=list(t), contenders=sorted(v)) for t, v in seen.items()]


def snapshot_binaries(workdir):
    """Copies the Rust binaries into the work directory (a rebuild during the run changes nothing measured);
    returns the gateway binary's provenance."""
    global GATEWAY, BARE_PINGORA, PRESIGN, AXUM_PEER
    import hashlib
    d = os.path.join(workdir, "bin")
    os.makedirs(d)
    built = datetime.datetime.fromtimestamp(os.path.getmtime(GATEWAY), datetime.timezone.utc)
    with open(GATEWAY, "rb") as f:
        digest = hashlib.sha256(f.read()).hexdigest()[:16]
    copies = []
    for path in (GATEWAY, BARE_PINGORA, PRESIGN, AXUM_PEER):
        if os.path.exists(path):
            dst = os.path.join(d, os.path.basename(path))
            shutil.copy2(path, dst)
            copies.append(dst)
        else:
            copies.append(path)
    GATEWAY, BARE_PINGORA, PRESIGN, AXUM_PEER = copies
    return f"built {built:%Y-%m-%d %H:%M} UTC, sha256 {digest}…"


def main():
    scenarios = [s for s in SCENARIOS if not ONLY or s["id"] in ONLY]
    needed = {GATEWAY, PRESIGN}
    needed |= {BARE_PINGORA} if any(s["id"] == "bare-pingora" for s in scenarios) else set()
    needed |= {AXUM_PEER} if any(s["id"].startswith("axum-") for s in scenarios) else set()
    for path in sorted(needed):
        if not os.path.exists(path):
            sys.exit(f"{path} is missing: run benches/load/run (it builds everything)")
    per_run = WARMUP + SECS + 4
    log(f"{len(scenarios)} scenarios x {ROUNDS} rounds, ~{per_run} s a run plus presigning: "
        f"~{len(scenarios) * ROUNDS * per_run / 60:.0f} min before signing time")
    started = datetime.datetime.now(datetime.timezone.utc)
    workdir = tempfile.mkdtemp(prefix="x402-load-")
    meta = machine()
    meta["gateway_binary"] = snapshot_binaries(workdir)
    results, rates = [], {}
    try:
        for rnd in range(1, ROUNDS + 1):
            for s in scenarios:
                t0 = time.time()
                r = run_scenario(s, workdir, rnd, rates)
                results.append(r)
                if "error" in r:
                    log(f"round {rnd} {s['id']:<15} FAILED: {r['error'].splitlines()[0]}")
                else:
                    log(f"round {rnd} {s['id']:<15} {r['rps']:>9,.0f} req/s  p50 {r['p50_ms']:6.2f} ms  "
                        f"p99 {r['p99_ms']:6.2f} ms  cpu {r['cpu_us_per_req']:6.1f} µs/req  "
                        f"rss {r['rss_kib'] / 1024:6.1f} MiB  unexpected {r['unexpected']}  "
                        f"exhausted {r['exhausted']}  ({time.time() - t0:.0f} s)")
        mem = None
        if MEMORY_CLAIMS > 0 and (not ONLY or "memory" in ONLY or "gw-paid" in ONLY):
            rate = rates.get("gw-paid", RATE_GUESS["gw-paid"])
            log(f"memory scenario: {MEMORY_CLAIMS:,} paid requests")
            mem = memory_scenario(workdir, rate)
            log(f"memory scenario: {json.dumps(mem)}")
    finally:
        if not KEEP:
            shutil.rmtree(workdir, ignore_errors=True)
        else:
            log(f"work directory kept: {workdir}")
    finished = datetime.datetime.now(datetime.timezone.utc)
    sm = summarize(results)
    comps = comparisons(sm)
    tg = targets(sm, mem)
    md = markdown(meta, sm, comps, tg, mem, started, finished)
    os.makedirs(OUT, exist_ok=True)
    stem = started.strftime("%Y-%m-%d") + ("" if FULL_METHOD else "-quick")
    with open(os.path.join(OUT, stem + ".md"), "w") as f:
        f.write(md)
    with open(os.path.join(OUT, stem + ".json"), "w") as f:
        json.dump(dict(method=dict(rounds=ROUNDS, secs=SECS, warmup=WARMUP, threads=THREADS, connections=CONNS,
                                   full=FULL_METHOD),
                       machine=meta, started=started.isoformat(), finished=finished.isoformat(),
                       facilitator_stand_in=dict(zip(("verify", "settle", "supported"),
                                                     map(json.loads, facilitator_bodies()))),
                       upstream_body=UPSTREAM_BODY, offers=terms_check(results), summary=sm, comparisons=comps,
                       targets=tg, memory=mem, runs=results), f, indent=1)
    print(md)
    log(f"written: {os.path.join(OUT, stem + '.md')} and .json")


if __name__ == "__main__":
    main()
