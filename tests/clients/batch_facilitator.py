#!/usr/bin/env python3
"""Drive our facilitator's `batch-settlement` scheme with the official, unmodified PyPI `x402` v2 SDK:
its client scheme builds the deposit, its signers sign vouchers, claim batches and refunds exactly as
its resource server does, and its HTTP facilitator client (HTTPFacilitatorClientSync) sends them and
parses the answers with its own models. Each outcome is checked on chain.

Run with tools/venv/bin/python (see scripts/setup); tests/facilitator.rs starts the devnet and the
facilitator and runs it.
env: RPC_URL, FACILITATOR_URL, TOKEN (the devnet's EIP-3009 token, "USD Coin" version "2"),
     PAYER_KEY, RECEIVER (payTo), AUTHORIZER_KEY (the receiver authorizer's key).
stdout: PASS/FAIL lines, then "all checks passed" or "N check(s) FAILED"; exit 1 on any failure.
"""
from __future__ import annotations

import os
import sys

_VENV = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "tools", "venv")
if os.path.exists(os.path.join(_VENV, "bin", "python")) and os.path.realpath(sys.prefix) != os.path.realpath(_VENV):
    os.execv(os.path.join(_VENV, "bin", "python"), [os.path.join(_VENV, "bin", "python"), *sys.argv])
sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "contracts"))

from eth_account import Account
from x402.http import FacilitatorConfig, HTTPFacilitatorClientSync
from x402.mechanisms.evm.batch_settlement.authorizer_signer import (
    LocalAuthorizerSigner,
    sign_claim_batch,
    sign_refund,
)
from x402.mechanisms.evm.batch_settlement.client import BatchSettlementEvmScheme
from x402.mechanisms.evm.batch_settlement.client.voucher import sign_voucher
from x402.mechanisms.evm.batch_settlement.types import ChannelConfig, VoucherClaim
from x402.mechanisms.evm.signers import EthAccountSigner
from x402.schemas import PaymentPayload, PaymentRequirements

from devchain import Calls, Rpc, check, failures

SETTLEMENT = "0x4020074e9dF2ce1deE5A9C1b5c3f541D02a10003"
PRICE = 1000
DEPOSIT = 10 * PRICE


def main() -> int:
    env = os.environ
    rpc = Rpc(env["RPC_URL"])
    network = f"eip155:{int(rpc('eth_chainId'), 16)}"
    token, receiver = env["TOKEN"], env["RECEIVER"]
    payer = Account.from_key(env["PAYER_KEY"])
    authorizer = LocalAuthorizerSigner(env["AUTHORIZER_KEY"])
    chain = Calls(rpc, {}, payer.address)
    bal = lambda who: chain.view(token, "balanceOf(address)", ["address"], [who])
    facilitator = HTTPFacilitatorClientSync(FacilitatorConfig(url=env["FACILITATOR_URL"]))

    requirements = PaymentRequirements.model_validate({
        "scheme": "batch-settlement", "network": network, "asset": token, "amount": str(PRICE),
        "payTo": receiver, "maxTimeoutSeconds": 300,
        "extra": {"name": "USD Coin", "version": "2", "receiverAuthorizer": authorizer.address,
                  "withdrawDelay": 900, "minDeposit": str(DEPOSIT)}})
    # What the SDK's channel manager sends for claim, settle and refund.
    manager = PaymentRequirements.model_validate({
        "scheme": "batch-settlement", "network": network, "asset": token, "amount": "0", "payTo": receiver,
        "maxTimeoutSeconds": 0, "extra": {}})

    def payment(inner, accepted=requirements):
        return PaymentPayload(x402_version=2, accepted=accepted, payload=inner)

    kinds = facilitator.get_supported().kinds
    check("/supported lists batch-settlement on the devnet, without a receiver authorizer of its own",
          any(k.scheme == "batch-settlement" and k.network == network and not k.extra for k in kinds), str(kinds))

    # --- deposit: the SDK client's first payload ------------------------------------------------------
    deposit = BatchSettlementEvmScheme(EthAccountSigner(payer)).create_payment_payload(requirements)
    channel = deposit["voucher"]["channelId"]
    config = ChannelConfig.from_dict(deposit["channelConfig"])
    v = facilitator.verify(payment(deposit), requirements)
    check("/verify of the deposit is valid and reports the empty channel",
          v.is_valid and v.extra and v.extra["balance"] == "0" and v.extra["channelId"].lower() == channel.lower(),
          str(v))
    before = (bal(payer.address), bal(SETTLEMENT))
    s = facilitator.settle(payment(deposit), requirements)
    check("/settle of the deposit sends it: the deposit moved from the payer to the contract",
          s.success and s.transaction.startswith("0x") and s.amount == str(DEPOSIT)
          and (bal(payer.address), bal(SETTLEMENT)) == (before[0] - DEPOSIT, before[1] + DEPOSIT), str(s))
    check("the deposit's answer carries the channel's new state",
          bool(s.extra) and s.extra["channelState"]["balance"] == str(DEPOSIT), str(s.extra))
    again = facilitator.settle(payment(deposit), requirements)
    check("the same deposit settled again answers the same transaction and moves nothing",
          again.success and again.transaction == s.transaction and bal(SETTLEMENT) == before[1] + DEPOSIT, str(again))

    # --- vouchers ------------------------------------------------------------------------------------------
    signer = EthAccountSigner(payer)

    def voucher(amount, key=None):
        fields = sign_voucher(EthAccountSigner(Account.from_key(key)) if key else signer, channel, amount, network)
        return {"type": "voucher", "channelConfig": deposit["channelConfig"], "voucher": fields.to_dict()}

    v = facilitator.verify(payment(voucher(3 * PRICE)), requirements)
    check("/verify of a voucher within the deposit is valid", v.is_valid and v.extra["balance"] == str(DEPOSIT), str(v))
    for label, inner, want in [
        ("above the deposit", voucher(DEPOSIT + 1), "invalid_batch_settlement_evm_cumulative_exceeds_balance"),
        ("signed by someone else", voucher(2 * PRICE, key="0x" + "42" * 32),
         "invalid_batch_settlement_evm_voucher_signature"),
        ("for another receiver", {**voucher(2 * PRICE), "channelConfig": {**deposit["channelConfig"],
                                                                           "receiver": payer.address}},
         "invalid_batch_settlement_evm_channel_id_mismatch"),
    ]:
        v = facilitator.verify(payment(inner), requirements)
        check(f"/verify of a voucher {label} is refused with {want}", not v.is_valid and v.invalid_reason == want,
              str(v))

    # --- claim, then settle to the receiver ---------------------------------------------------------------
    last = voucher(3 * PRICE)["voucher"]
    row = VoucherClaim(channel=config, max_claimable_amount=last["maxClaimableAmount"], signature=last["signature"],
                       total_claimed=str(3 * PRICE))
    claim = {"type": "claim", "claims": [row.to_dict()],
             "claimAuthorizerSignature": sign_claim_batch(authorizer, [row], network)}
    s = facilitator.settle(payment(claim, manager), manager)
    claimed = chain.view(SETTLEMENT, "channels(bytes32)", ["bytes32"], [bytes.fromhex(channel[2:])],
                         out=["uint128", "uint128"])
    check("/settle of a claim sends claimWithSignature: the channel's totalClaimed is 3000",
          s.success and claimed == (DEPOSIT, 3 * PRICE), f"{s} {claimed}")
    before = bal(receiver)
    s = facilitator.settle(payment({"type": "settle", "receiver": receiver, "token": token}, manager), manager)
    check("/settle of a settle pays the receiver exactly what was claimed",
          s.success and s.amount == str(3 * PRICE) and bal(receiver) == before + 3 * PRICE, str(s))
    s = facilitator.settle(payment({"type": "settle", "receiver": receiver, "token": token}, manager), manager)
    check("a settle with nothing claimed since is refused with nothing_to_settle",
          not s.success and s.error_reason == "invalid_batch_settlement_evm_nothing_to_settle" and not s.transaction,
          str(s))

    # --- refund of the rest, enriched as the SDK's resource server enriches it ----------------------------
    rest = DEPOSIT - 3 * PRICE
    refund = {"type": "refund", "channelConfig": deposit["channelConfig"], "voucher": last, "amount": str(rest),
              "refundNonce": "0", "claims": [row.to_dict()],
              "refundAuthorizerSignature": sign_refund(authorizer, channel, rest, 0, network),
              "claimAuthorizerSignature": sign_claim_batch(authorizer, [row], network)}
    before = bal(payer.address)
    s = facilitator.settle(payment(refund), requirements)
    check("/settle of a refund returns the unclaimed rest to the payer and reports the channel",
          s.success and s.amount == str(rest) and bal(payer.address) == before + rest
          and s.extra["channelState"]["balance"] == str(3 * PRICE) and s.extra["channelState"]["refundNonce"] == "1",
          str(s))
    s = facilitator.settle(payment({**refund, "refundNonce": "1"}), requirements)
    check("a second refund finds nothing left: refund_no_balance, nothing sent",
          not s.success and s.error_reason == "invalid_batch_settlement_evm_refund_no_balance" and not s.transaction,
          str(s))
    v = facilitator.verify(payment(voucher(PRICE)), requirements)
    check("a voucher below what was claimed is refused with cumulative_below_claimed",
          not v.is_valid and v.invalid_reason == "invalid_batch_settlement_evm_cumulative_below_claimed", str(v))

    failed = failures()
    print("all checks passed" if failed == 0 else f"{failed} check(s) FAILED")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
