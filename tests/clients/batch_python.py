#!/usr/bin/env python3
"""Pay a `batch-settlement` route with the official, unmodified PyPI `x402` v2 SDK: its client scheme
deposits once and then signs a voucher per call; its httpx transport sends them and runs the scheme's
hooks on each answer (and its corrective-402 recovery); then, optionally, its refund API takes the rest
back.

Run with tools/venv/bin/python (see scripts/setup).
env: URL (a GET route priced by batch settlement), PRIVATE_KEY, RPC_URL, CALLS (default 3),
     REFUND ("1": refund the rest after the calls), REFUND_AMOUNT (atomic units; default: all),
     REFUND_ONLY ("1": no calls, only the refund; the channel is recovered from the chain),
     SALT (0x-hex channel salt; default zero).
stdout: one JSON line {"statuses", "receipts" (each decoded PAYMENT-RESPONSE or null), "refund"
     (the refund's SettleResponse, or {"error": …}), "bodies"}.

SDK configuration (no modification of the SDK): set_spend_controls(False), because the devnet token
is not one of the SDK's default assets; EthAccountSignerWithRPC so the client can recover a channel
from the chain, as its corrective-402 handling needs.
"""
from __future__ import annotations

import os
import sys

_VENV = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "tools", "venv")
if os.path.exists(os.path.join(_VENV, "bin", "python")) and os.path.realpath(sys.prefix) != os.path.realpath(_VENV):
    os.execv(os.path.join(_VENV, "bin", "python"), [os.path.join(_VENV, "bin", "python"), *sys.argv])

import asyncio
import base64
import json

from eth_account import Account
from x402 import x402Client
from x402.http.clients import x402HttpxClient
from x402.mechanisms.evm.batch_settlement.client import (
    BatchSettlementEvmScheme,
    BatchSettlementEvmSchemeOptions,
    InMemoryClientChannelStorage,
    RefundOptions,
)
from x402.mechanisms.evm.signers import EthAccountSignerWithRPC


def decode(value: str | None):
    return json.loads(base64.b64decode(value)) if value else None


async def main() -> None:
    env = os.environ
    account = Account.from_key(env["PRIVATE_KEY"])
    options = BatchSettlementEvmSchemeOptions(storage=InMemoryClientChannelStorage())
    if env.get("SALT"):
        options.salt = env["SALT"]
    scheme = BatchSettlementEvmScheme(EthAccountSignerWithRPC(account, env["RPC_URL"]), options)
    client = x402Client().register("eip155:*", scheme)
    client.set_spend_controls(False)
    statuses, receipts, bodies = [], [], []
    calls = 0 if env.get("REFUND_ONLY") == "1" else int(env.get("CALLS", "3"))
    async with x402HttpxClient(client, timeout=60) as http:
        for _ in range(calls):
            r = await http.get(env["URL"])
            statuses.append(r.status_code)
            receipts.append(decode(r.headers.get("payment-response")))
            bodies.append(r.text[:300])
    out = {"statuses": statuses, "receipts": receipts, "bodies": bodies}
    if env.get("REFUND") == "1" or env.get("REFUND_ONLY") == "1":
        try:
            s = await asyncio.to_thread(scheme.refund, env["URL"], RefundOptions(amount=env.get("REFUND_AMOUNT")))
            out["refund"] = s.model_dump(by_alias=True, exclude_none=True)
        except Exception as e:  # the SDK raises RuntimeError("Refund failed: …")
            out["refund"] = {"error": str(e)}
    print(json.dumps(out))


asyncio.run(main())
