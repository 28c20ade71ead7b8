#!/usr/bin/env python3
"""Pay an x402-protected URL with the official, unmodified PyPI `x402` v2 SDK (httpx).

Run with tools/venv/bin/python (see scripts/setup).
Env: URL, PRIVATE_KEY (0x hex), optional METHOD (default GET), BODY, TIMEOUT (seconds, default 30),
HEADERS (extra request headers, a JSON object).
Prints ONE JSON line on stdout:
  {"status", "body", "payment_response", "payment_response_header",
   "payment_header", "payment_header_name", "payment_payload", "payment_required", ["error"]}
Exit 0 if the final response was 2xx, else 1. Diagnostics go to stderr.

SDK configuration used (no modification of the SDK):
  * register_exact_evm_client(): ExactEvmScheme for "eip155:*" (any chain id) plus the v1
    scheme for every legacy network name.
  * client.register("eip155:*", UptoEvmScheme(account)): the metered scheme, which no helper
    registers; the client picks whichever scheme the 402 offers.
  * set_spend_controls(False): the 2.x client by default only pays "default" assets
    (known USDC etc.) up to a USD cap and refuses any other token; a test token on anvil is
    not a default asset, so the controls are switched off.
"""
from __future__ import annotations

import os
import sys

# Re-exec under tools/venv/bin/python (created by scripts/setup) when started with another python.
_VENV = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "tools", "venv")
if os.path.exists(os.path.join(_VENV, "bin", "python")) and os.path.realpath(sys.prefix) != os.path.realpath(_VENV):
    os.execv(os.path.join(_VENV, "bin", "python"), [os.path.join(_VENV, "bin", "python"), *sys.argv])

import asyncio
import base64
import json

import httpx
from eth_account import Account
from x402 import x402Client
from x402.http import x402HTTPClient
from x402.http.clients.httpx import x402_httpx_transport
from x402.http.utils import decode_payment_response_header, safe_base64_decode
from x402.mechanisms.evm.exact import register_exact_evm_client
from x402.mechanisms.evm.upto import UptoEvmScheme

PAY_HEADERS = ("PAYMENT-SIGNATURE", "X-PAYMENT")


def log(*a: object) -> None:
    print("[pay_python]", *a, file=sys.stderr, flush=True)


class RecordingTransport(httpx.AsyncBaseTransport):
    """Plain httpx transport that remembers the payment header sent on the wire."""

    def __init__(self) -> None:
        self.inner = httpx.AsyncHTTPTransport()
        self.sent: tuple[str, str] | None = None

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        for name in PAY_HEADERS:
            value = request.headers.get(name)
            if value is not None:
                self.sent = (name, value)
                log(f"sending {name}: {safe_base64_decode(value)}")
        resp = await self.inner.handle_async_request(request)
        log(f"{request.method} {request.url} -> {resp.status_code}")
        return resp

    async def aclose(self) -> None:
        await self.inner.aclose()


def decode_b64_json(value: str | None) -> object | None:
    if not value:
        return None
    try:
        return json.loads(base64.b64decode(value))
    except Exception as e:  # noqa: BLE001
        log(f"cannot decode header value {value!r}: {e}")
        return value


async def main() -> int:
    url = os.environ["URL"]
    private_key = os.environ["PRIVATE_KEY"]
    method = os.environ.get("METHOD", "GET").upper()
    body = os.environ.get("BODY")
    timeout = float(os.environ.get("TIMEOUT", "30"))

    account = Account.from_key(private_key)
    client = x402Client()
    register_exact_evm_client(client, account)  # eip155:* + all v1 network names
    client.register("eip155:*", UptoEvmScheme(account))  # metered routes; no helper registers it
    client.set_spend_controls(False)  # allow non-default assets, no amount cap
    log(f"payer {account.address}; {method} {url}")

    out: dict[str, object] = {
        "status": 0,
        "body": "",
        "payment_response": None,
        "payment_response_header": None,
        "payment_header": None,
        "payment_header_name": None,
        "payment_payload": None,
        "payment_required": None,
    }
    recorder = RecordingTransport()
    try:
        async with httpx.AsyncClient(
            transport=x402_httpx_transport(client, recorder), timeout=timeout
        ) as http:
            headers: dict[str, str] = json.loads(os.environ.get("HEADERS") or "{}")
            kwargs: dict[str, object] = {"headers": headers}
            if body is not None:
                kwargs["content"] = body.encode()
                headers["Content-Type"] = "application/json"
            resp = await http.request(method, url, **kwargs)
        out["status"] = resp.status_code
        out["body"] = resp.text
        # The upstream's charge report must never reach the client: recorded so tests can see it did not.
        out["settlement_overrides"] = resp.headers.get("Settlement-Overrides")
        for name in ("PAYMENT-RESPONSE", "X-PAYMENT-RESPONSE"):
            value = resp.headers.get(name)
            if value:
                out["payment_response_header"] = name
                out["payment_response"] = decode_b64_json(value)
                try:  # also check the official SDK accepts the receipt
                    decode_payment_response_header(value)
                except Exception as e:  # noqa: BLE001
                    out["payment_response_sdk_error"] = str(e)
                break
        out["payment_required"] = decode_b64_json(resp.headers.get("PAYMENT-REQUIRED"))
    except Exception as e:  # noqa: BLE001  (payment could not be created, network error, ...)
        log(f"error: {type(e).__name__}: {e}")
        out["error"] = f"{type(e).__name__}: {e}"
    if recorder.sent:
        out["payment_header_name"], out["payment_header"] = recorder.sent
        out["payment_payload"] = decode_b64_json(recorder.sent[1])
    print(json.dumps(out), flush=True)
    status = out["status"]
    return 0 if isinstance(status, int) and 200 <= status < 300 else 1


# x402HTTPClient is imported so a broken SDK install fails loudly at import time.
_ = x402HTTPClient

if __name__ == "__main__":
    sys.exit(asyncio.run(main()))
