#!/usr/bin/env python3
"""Sign an x402 payment with the official, unmodified PyPI `x402` v2 SDK; no HTTP at all.

Run with tools/venv/bin/python (see scripts/setup).
stdin: one JSON PaymentRequired, v2 ({"x402Version":2,"resource":{...},"accepts":[...]})
       or v1 ({"x402Version":1,"accepts":[...]}).
env:   PRIVATE_KEY (0x hex); PAYMENT_ID (optional): attach it with the SDK's payment-identifier
       extension helper (append_payment_identifier_to_extensions), as an application would.
stdout: ONE JSON line, the PaymentPayload exactly as the SDK serialises it before base64-ing it
        into PAYMENT-SIGNATURE (v2) / X-PAYMENT (v1): compact, camelCase, None fields omitted.
Exit 0 on success, 1 on error (message on stderr and {"error": ...} on stdout).

The payload comes from x402ClientSync.create_payment_payload() with the same configuration as
pay_python.py: register_exact_evm_client() ("eip155:*" + all v1 names), UptoEvmScheme on "eip155:*",
and spend controls off
(so any asset / amount is signed).
"""
from __future__ import annotations

import os
import sys

# Re-exec under tools/venv/bin/python (created by scripts/setup) when started with another python.
_VENV = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "tools", "venv")
if os.path.exists(os.path.join(_VENV, "bin", "python")) and os.path.realpath(sys.prefix) != os.path.realpath(_VENV):
    os.execv(os.path.join(_VENV, "bin", "python"), [os.path.join(_VENV, "bin", "python"), *sys.argv])

import json

from eth_account import Account
from x402 import x402ClientSync
from x402.http.utils import encode_payment_signature_header
from x402.extensions.payment_identifier import append_payment_identifier_to_extensions
from x402.mechanisms.evm.exact import register_exact_evm_client
from x402.mechanisms.evm.upto import UptoEvmScheme
from x402.schemas import PaymentRequired, PaymentRequiredV1


def main() -> int:
    try:
        raw = json.loads(sys.stdin.read())
        if raw.get("x402Version") == 1:
            payment_required = PaymentRequiredV1.model_validate(raw)
        else:
            payment_required = PaymentRequired.model_validate(raw)
        client = x402ClientSync()
        account = Account.from_key(os.environ["PRIVATE_KEY"])
        register_exact_evm_client(client, account)
        client.register("eip155:*", UptoEvmScheme(account))
        client.set_spend_controls(False)
        payment_id = os.environ.get("PAYMENT_ID")
        if payment_id:
            extensions = dict(raw.get("extensions") or {})
            append_payment_identifier_to_extensions(extensions, payment_id)
            payload = client.create_payment_payload(payment_required, extensions=extensions)
        else:
            payload = client.create_payment_payload(payment_required)
        # Same serialisation as the SDK's header encoder (encode_payment_signature_header).
        text = payload.model_dump_json(by_alias=True, exclude_none=True)
        header = encode_payment_signature_header(payload)
        print(f"[sign_python] header: {header}", file=sys.stderr)
        print(text, flush=True)
        return 0
    except Exception as e:  # noqa: BLE001
        print(f"[sign_python] error: {type(e).__name__}: {e}", file=sys.stderr)
        print(json.dumps({"error": f"{type(e).__name__}: {e}"}), flush=True)
        return 1


if __name__ == "__main__":
    sys.exit(main())
