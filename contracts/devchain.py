"""What the contracts' on-chain check scripts share: an anvil to run against,
a JSON-RPC client, calldata building, revert decoding and PASS/FAIL bookkeeping.

A script calls `run_checks(run)`: with ANVIL a binary path (default:
tools/node_modules/@foundry-rs/anvil-linux-amd64/bin/anvil) it starts anvil on a
free loopback port and stops it at the end; with ANVIL a URL it uses that node,
whose first dev accounts must be anvil's defaults. `run(rpc)` makes its checks
with `check`; the process exits 1 if any failed.
"""

import json
import os
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

from eth_abi import decode, encode
from eth_utils import keccak

REPO = Path(__file__).resolve().parent.parent
CONTRACTS = REPO / "contracts"
DEFAULT_ANVIL = REPO / "tools/node_modules/@foundry-rs/anvil-linux-amd64/bin/anvil"

_failures = 0


def check(name, ok, detail=""):
    """Prints one PASS/FAIL line (the detail only on failure) and counts failures."""
    global _failures
    print(("PASS" if ok else "FAIL") + f"  {name}" + (f"  ({detail})" if detail and not ok else ""), flush=True)
    if not ok:
        _failures += 1


def failures():
    """How many checks have failed so far."""
    return _failures


class Rpc:
    """A minimal JSON-RPC client: `rpc(method, *params)` returns the result or raises."""

    def __init__(self, url):
        self.url, self.id = url, 0

    def raw(self, method, *params):
        self.id += 1
        body = json.dumps({"jsonrpc": "2.0", "id": self.id, "method": method, "params": list(params)})
        req = urllib.request.Request(self.url, body.encode(), {"Content-Type": "application/json"})
        with urllib.request.urlopen(req, timeout=30) as resp:
            return json.load(resp)

    def __call__(self, method, *params):
        out = self.raw(method, *params)
        if "error" in out:
            raise RuntimeError(f"{method}: {out['error']}")
        return out["result"]

    def send(self, frm, to, data, gas=None, errors=None):
        """Sends a transaction from an unlocked dev account: (receipt, None), or (None, why it reverted)."""
        tx = {"from": frm, "data": data}
        if to:
            tx["to"] = to
        if gas:
            tx["gas"] = hex(gas)
        out = self.raw("eth_sendTransaction", tx)
        if "error" in out:
            return None, revert_reason(out["error"], errors)
        # anvil can answer before the automined block is in; poll briefly.
        for _ in range(100):
            rcpt = self("eth_getTransactionReceipt", out["result"])
            if rcpt is not None:
                return rcpt, None
            time.sleep(0.05)
        raise RuntimeError(f"no receipt for {out['result']}")

    def call(self, frm, to, sig, types=(), args=(), out=None, errors=None):
        """An eth_call: (decoded `out` types or raw bytes, None), or (None, why it reverted)."""
        res = self.raw("eth_call", {"from": frm, "to": to, "data": calldata(sig, list(types), list(args))}, "latest")
        if "error" in res:
            return None, revert_reason(res["error"], errors)
        r = bytes.fromhex(res["result"][2:])
        return (decode(list(out), r) if out else r), None


class Calls:
    """Calls into contracts through `rpc`, naming reverts from `errors` (selector hex → name); `frm` is
    the default sender."""

    def __init__(self, rpc, errors, frm):
        self.rpc, self.errors, self.frm = rpc, errors, frm

    def call(self, to, sig, types=(), args=(), out=None, frm=None):
        """An eth_call: (decoded `out` or raw bytes, None), or (None, why it reverted)."""
        return self.rpc.call(frm or self.frm, to, sig, types, args, out, self.errors)

    def view(self, to, sig, types=(), args=(), out=("uint256",)):
        """A view's single (or, with several `out` types, tuple) result; raises if it reverts."""
        res, err = self.call(to, sig, types, args, out)
        if err is not None:
            raise RuntimeError(f"{sig}: {err}")
        return res[0] if len(out) == 1 else tuple(res)

    def tx(self, to, sig, types, args, frm=None):
        """eth_call first for the revert reason, then the transaction itself: (receipt, None) or (None, why)."""
        frm = frm or self.frm
        _, err = self.call(to, sig, types, args, frm=frm)
        if err is not None:
            return None, err
        rcpt, err = self.rpc.send(frm, to, calldata(sig, list(types), list(args)), None, self.errors)
        if err is not None or rcpt["status"] != "0x1":
            return None, err or "mined with status 0"
        return rcpt, None


def selector(sig):
    return keccak(text=sig)[:4]


def calldata(sig, types, args):
    return "0x" + (selector(sig) + encode(types, args)).hex()


def revert_reason(err, errors=None):
    """Names a JSON-RPC revert: Error(string)'s message, a custom error from
    `errors` (selector hex → name; with its first argument if any), the bare
    selector, or the node's message."""
    data = err.get("data")
    if isinstance(data, dict):
        data = data.get("data")
    if isinstance(data, str) and data.startswith("0x") and len(data) >= 10:
        sel, body = data[2:10], bytes.fromhex(data[10:])
        if sel == "08c379a0":
            return decode(["string"], body)[0]
        if errors and sel in errors:
            return errors[sel] + (f"({int.from_bytes(body[:32], 'big')})" if body else "")
        return "0x" + sel
    return err.get("message", "")


def load(name):
    """A compiled artifact written by scripts/build-token."""
    return json.loads((CONTRACTS / f"{name}.json").read_text())


def run_checks(run):
    """Runs `run(rpc)` against anvil (see the module doc), then exits 0 or 1."""
    target = os.environ.get("ANVIL", str(DEFAULT_ANVIL))
    proc = None
    if target.startswith("http"):
        url = target
    else:
        if not os.access(target, os.X_OK):
            sys.exit(f"anvil not found at {target}: run scripts/setup or set ANVIL")
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            port = s.getsockname()[1]
        proc = subprocess.Popen([target, "--host", "127.0.0.1", "--port", str(port), "--silent"],
                                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        url = f"http://127.0.0.1:{port}"
    try:
        rpc = Rpc(url)
        for _ in range(100):
            try:
                rpc("eth_chainId")
                break
            except OSError:
                time.sleep(0.1)
        run(rpc)
    finally:
        if proc:
            proc.terminate()
            proc.wait(timeout=10)
    print(f"{'all checks passed' if _failures == 0 else f'{_failures} check(s) FAILED'}")
    sys.exit(1 if _failures else 0)
