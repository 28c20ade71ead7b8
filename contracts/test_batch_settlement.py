#!/usr/bin/env python3
"""On-chain checks of our batch-settlement contract and its two deposit collectors
(contracts/X402BatchSettlement.json, X402ERC3009DepositCollector.json,
X402Permit2DepositCollector.json) against a real anvil, with payloads the
official Python SDK (x402 2.25, x402.mechanisms.evm.batch_settlement) builds.

    ANVIL=path/to/anvil tools/venv/bin/python contracts/test_batch_settlement.py
    ANVIL=http://127.0.0.1:8545 tools/venv/bin/python contracts/test_batch_settlement.py

The three contracts and Permit2 are placed at their canonical addresses with
anvil_setCode (their deployedBytecode), as the devnet does; the EIP-3009 test
token is deployed fresh. Covered: the SDK's test vectors (channel id and the
voucher, refund and claim-batch digests), deposits through both collectors,
claims (signed batch and direct), settle, refunds (signed, direct, in a
multicall with a claim), withdrawal after the delay, and each revert the SDKs
expect. Prints PASS/FAIL per check and exits 1 if any failed.
"""

from eth_abi import decode, encode
from eth_account import Account
from eth_utils import keccak, to_checksum_address

from devchain import Calls, calldata, check, load, run_checks
from x402.mechanisms.evm.batch_settlement.authorizer_signer import (
    LocalAuthorizerSigner,
    sign_claim_batch,
    sign_refund,
)
from x402.mechanisms.evm.batch_settlement.client import (
    BatchSettlementEvmScheme,
    BatchSettlementEvmSchemeOptions,
)
from x402.mechanisms.evm.batch_settlement.client.voucher import sign_voucher
from x402.mechanisms.evm.batch_settlement.encoding import (
    build_erc3009_collector_data,
    build_permit2_collector_data,
)
from x402.mechanisms.evm.batch_settlement.types import ChannelConfig, VoucherClaim
from x402.mechanisms.evm.batch_settlement.utils import compute_channel_id
from x402.mechanisms.evm.signers import EthAccountSigner
from x402.schemas import PaymentRequirements

SETTLEMENT = "0x4020074e9dF2ce1deE5A9C1b5c3f541D02a10003"
ERC3009_COLLECTOR = "0x4020806089470a89826cB9fB1f4059150b550004"
PERMIT2_COLLECTOR = "0x4020425FAf3B746C082C2f942b4E5159887B0005"
PERMIT2 = "0x000000000022D473030F116dDEE9F6B43aC78BA3"
NETWORK = "eip155:31337"

# anvil's default mnemonic ("test test ... junk").
ACCT0 = "0xf39Fd6e51aad88F6F4ce6aB8827279cffFb92266"  # deployer, sends the facilitator's transactions
KEY1 = "0x59c6995e998f97a5a0044966f0945389dc9e86dae88c7a8412f4603b6b78690d"
ACCT1 = "0x70997970C51812dc3A010C7d01b50e0d17dC79C8"  # payer
ACCT2 = "0x3C44CdDdB6a900fa2b585dd299e03d12FA4293BC"  # receiver (payTo)
KEY3 = "0x7c852118294e51e653712a81e05800f419141751be58f605c371e15141b007a6"
ACCT3 = "0x90F79bf6EB2c4f870365E785982E1f101E93b906"  # receiver authorizer
KEY4 = "0x47e179ec197488593b187f80a00eb0da91f1b9d0b13f8733639f19c30a34926a"
ACCT4 = "0x15d34AAf54267DB7D7c367839AAf71A00a2C6A65"  # a stranger

ERRORS = {keccak(text=s)[:4].hex(): s.split("(")[0] for s in [
    "InvalidChannel()", "ZeroDeposit()", "DepositOverflow()", "InvalidSignature()", "NotReceiverAuthorizer()",
    "NotAuthorizedToClaim()", "NotAuthorizedToRefund()", "ClaimExceedsCeiling()", "ClaimExceedsBalance()",
    "WithdrawalAlreadyPending()", "WithdrawalNotPending()", "NotAuthorizedToFinalizeWithdraw()",
    "WithdrawDelayNotElapsed()", "NothingToWithdraw()", "WithdrawAmountExceedsAvailable()",
    "WithdrawDelayOutOfRange()", "EmptyBatch()", "DepositCollectionFailed()", "InvalidCollector()",
    "InvalidRefundNonce()", "ZeroRefund()", "OnlyX402BatchSettlement()", "Permit2612AmountMismatch()",
    "InvalidNonce()", "InvalidSigner()", "SignatureExpired(uint256)",
]}

CC = "(address,address,address,address,address,uint40,bytes32)"
VC = f"(({CC},uint128),bytes,uint128)"
SIG = {
    "deposit": (f"deposit({CC},uint128,address,bytes)", [CC, "uint128", "address", "bytes"]),
    "claim": (f"claim({VC}[])", [f"{VC}[]"]),
    "claimWithSignature": (f"claimWithSignature({VC}[],bytes)", [f"{VC}[]", "bytes"]),
    "settle": ("settle(address,address)", ["address", "address"]),
    "initiateWithdraw": (f"initiateWithdraw({CC},uint128)", [CC, "uint128"]),
    "finalizeWithdraw": (f"finalizeWithdraw({CC})", [CC]),
    "refund": (f"refund({CC},uint128)", [CC, "uint128"]),
    "refundWithSignature": (f"refundWithSignature({CC},uint128,uint256,bytes)", [CC, "uint128", "uint256", "bytes"]),
}

# §10 of the SDK reference: payer = payerAuthorizer = ACCT0, receiver = ACCT1, receiverAuthorizer = ACCT2.
VECTOR_CONFIG = ChannelConfig(
    payer=ACCT0, payer_authorizer=ACCT0, receiver=ACCT1, receiver_authorizer=ACCT2,
    token="0x036CbD53842c5426634e7929541eC2318f3dCF7e", withdraw_delay=900, salt="0x" + "00" * 32)
VECTOR_CHANNEL_31337 = "0xb6593707755f39d506654c82c56f5780e9c57bff675508b04d334e57f0ef2358"


def b32(h):
    return bytes.fromhex(h.removeprefix("0x"))


def cc_tuple(c):
    return (c.payer, c.payer_authorizer, c.receiver, c.receiver_authorizer, c.token, c.withdraw_delay, b32(c.salt))


def claim_row(c, max_claimable, signature, total):
    return ((cc_tuple(c), max_claimable), b32(signature), total)


def run(rpc):
    calls = Calls(rpc, ERRORS, ACCT0)
    view = calls.view

    def tx(name, args, frm=ACCT0, to=SETTLEMENT):
        sig, types = SIG[name]
        return calls.tx(to, sig, types, args, frm)

    def encoded(name, args):
        sig, types = SIG[name]
        return bytes.fromhex(calldata(sig, types, args)[2:])

    def logs(rcpt, event):
        topic = "0x" + keccak(text=event).hex()
        return [l for l in rcpt["logs"] if l["topics"][0] == topic]

    # --- placement --------------------------------------------------------------------------------
    for addr, name in [(PERMIT2, "X402Permit2"), (SETTLEMENT, "X402BatchSettlement"),
                       (ERC3009_COLLECTOR, "X402ERC3009DepositCollector"),
                       (PERMIT2_COLLECTOR, "X402Permit2DepositCollector")]:
        code = load(name)["deployedBytecode"]
        rpc("anvil_setCode", addr, code)
        check(f"{name} placed at {addr}", rpc("eth_getCode", addr, "latest").lower() == code.lower())
    check("collectors name the settlement contract and Permit2",
          view(ERC3009_COLLECTOR, "x402BatchSettlement()", out=["address"]) == SETTLEMENT.lower()
          and view(PERMIT2_COLLECTOR, "x402BatchSettlement()", out=["address"]) == SETTLEMENT.lower()
          and view(PERMIT2_COLLECTOR, "PERMIT2()", out=["address"]) == PERMIT2.lower())
    check("withdraw delay bounds are 900 s and 30 days",
          (view(SETTLEMENT, "MIN_WITHDRAW_DELAY()"), view(SETTLEMENT, "MAX_WITHDRAW_DELAY()")) == (900, 2_592_000))
    domain = view(SETTLEMENT, "eip712Domain()", out=["bytes1", "string", "string", "uint256", "address", "bytes32",
                                                      "uint256[]"])
    check("eip712Domain() is (\"x402 Batch Settlement\", \"1\", 31337, the contract)",
          domain[1:5] == ("x402 Batch Settlement", "1", 31337, SETTLEMENT.lower()), str(domain))

    # --- the SDK's vectors: our digests equal what its signers sign --------------------------------
    cid = view(SETTLEMENT, f"getChannelId({CC})", [CC], [cc_tuple(VECTOR_CONFIG)], out=["bytes32"])
    check("getChannelId equals the SDK's channel id (vector, chain 31337)",
          "0x" + cid.hex() == VECTOR_CHANNEL_31337 == compute_channel_id(VECTOR_CONFIG, NETWORK).lower(), cid.hex())
    digest = view(SETTLEMENT, "getVoucherDigest(bytes32,uint128)", ["bytes32", "uint128"], [cid, 1000], out=["bytes32"])
    check("getVoucherDigest equals the vector",
          digest.hex() == "e128ea3230613bd54378401df258c3ea08becb7b4543bd541911feeae5f066d6", digest.hex())
    digest = view(SETTLEMENT, "getRefundDigest(bytes32,uint256,uint128)", ["bytes32", "uint256", "uint128"],
                  [cid, 0, 500], out=["bytes32"])
    check("getRefundDigest equals the vector",
          digest.hex() == "6aa3cab38b8ad93e90075439a4db0693994a3d9beeb2ab13d3790adab773e9a5", digest.hex())
    digest = view(SETTLEMENT, f"getClaimBatchDigest({VC}[])", [f"{VC}[]"],
                  [[claim_row(VECTOR_CONFIG, 1000, "0x", 700)]], out=["bytes32"])
    check("getClaimBatchDigest equals the vector",
          digest.hex() == "e6b54282b324a0eae77cc6dc71ef63c8433ff572fe5dbf6fba00cc33df024285", digest.hex())

    # --- token --------------------------------------------------------------------------------------
    art = load("X402TestToken")
    ctor = encode(["string", "string", "string", "uint8"], ["USD Coin", "2", "USDC", 6]).hex()
    rcpt, err = rpc.send(ACCT0, None, art["bytecode"] + ctor)
    token = to_checksum_address(rcpt["contractAddress"])
    bal = lambda a: view(token, "balanceOf(address)", ["address"], [a])
    calls.tx(token, "mint(address,uint256)", ["address", "uint256"], [ACCT1, 10**12])
    calls.tx(token, "approve(address,uint256)", ["address", "uint256"], [PERMIT2, 2**256 - 1], frm=ACCT1)

    def requirements(method="eip3009", withdraw_delay=900):
        extra = {"name": "USD Coin", "version": "2", "receiverAuthorizer": ACCT3, "withdrawDelay": withdraw_delay,
                 "minDeposit": "100000"}
        if method != "eip3009":
            extra["assetTransferMethod"] = method
        return PaymentRequirements.model_validate({
            "scheme": "batch-settlement", "network": NETWORK, "asset": token, "amount": "1000", "payTo": ACCT2,
            "maxTimeoutSeconds": 300, "extra": extra})

    def client(salt):
        options = BatchSettlementEvmSchemeOptions(salt=salt)
        return BatchSettlementEvmScheme(EthAccountSigner(Account.from_key(KEY1)), options)

    def deposit_args(payload):
        """What a facilitator sends for the client's deposit payload."""
        config = ChannelConfig.from_dict(payload["channelConfig"])
        dep = payload["deposit"]
        auth = dep["authorization"]
        if "erc3009Authorization" in auth:
            a = auth["erc3009Authorization"]
            data = build_erc3009_collector_data(a["validAfter"], a["validBefore"], a["salt"], a["signature"])
            collector = ERC3009_COLLECTOR
        else:
            a = auth["permit2Authorization"]
            data = build_permit2_collector_data(a["nonce"], a["deadline"], a["signature"])
            collector = PERMIT2_COLLECTOR
        return config, [cc_tuple(config), int(dep["amount"]), collector, data]

    # --- deposit through the EIP-3009 collector -------------------------------------------------------
    payer = client("0x" + "00" * 32)
    payload = payer.create_payment_payload(requirements())
    check("the SDK client's first payload is an EIP-3009 deposit of minDeposit with a voucher for one price",
          payload["type"] == "deposit" and payload["deposit"]["amount"] == "100000"
          and "erc3009Authorization" in payload["deposit"]["authorization"]
          and payload["voucher"]["maxClaimableAmount"] == "1000", str(payload)[:200])
    config, args = deposit_args(payload)
    channel = b32(payload["voucher"]["channelId"])
    before = (bal(ACCT1), bal(SETTLEMENT))
    rcpt, err = tx("deposit", args)
    check("deposit (EIP-3009 collector) moves the deposit from the payer to the contract",
          rcpt is not None and (bal(ACCT1), bal(SETTLEMENT)) == (before[0] - 100000, before[1] + 100000), err)
    state = lambda c=channel: view(SETTLEMENT, "channels(bytes32)", ["bytes32"], [c], out=["uint128", "uint128"])
    check("channels(id) = (100000, 0) and the id is the client's", state() == (100000, 0), str(state()))
    if rcpt:
        check("deposit emits ChannelCreated and Deposited(channel, sender, 100000, 100000)",
              len(logs(rcpt, f"ChannelCreated(bytes32,{CC})")) == 1
              and [decode(["uint128", "uint128"], b32(l["data"])) for l in
                   logs(rcpt, "Deposited(bytes32,address,uint128,uint128)")] == [(100000, 100000)])
    _, err = tx("deposit", args)
    check("the same EIP-3009 authorization deposited twice reverts (nonce used)", err is not None, err)
    _, err = calls.tx(ERC3009_COLLECTOR, "collect(address,address,uint256,bytes32,bytes)",
                      ["address", "address", "uint256", "bytes32", "bytes"], [ACCT1, token, 1, channel, args[3]])
    check("collect() from anyone but the settlement contract reverts OnlyX402BatchSettlement",
          err == "OnlyX402BatchSettlement", err)

    # --- deposit reverts ------------------------------------------------------------------------------
    cct = cc_tuple(config)
    for label, bad, want in [
        ("receiverAuthorizer 0", [cct[:3] + ("0x" + "00" * 20,) + cct[4:], 1, ERC3009_COLLECTOR, b""],
         "InvalidChannel"),
        ("withdrawDelay 899", [cct[:5] + (899,) + cct[6:], 1, ERC3009_COLLECTOR, b""], "WithdrawDelayOutOfRange"),
        ("withdrawDelay 30 days + 1", [cct[:5] + (2_592_001,) + cct[6:], 1, ERC3009_COLLECTOR, b""],
         "WithdrawDelayOutOfRange"),
        ("amount 0", [cct, 0, ERC3009_COLLECTOR, b""], "ZeroDeposit"),
        ("collector 0", [cct, 1, "0x" + "00" * 20, b""], "InvalidCollector"),
        ("balance overflowing uint128", [cct, 2**128 - 1, ERC3009_COLLECTOR, b""], "DepositOverflow"),
    ]:
        _, err = tx("deposit", bad)
        check(f"deposit with {label} reverts {want}", err == want, err)

    # --- vouchers and claims --------------------------------------------------------------------------
    signer = EthAccountSigner(Account.from_key(KEY1))
    authorizer = LocalAuthorizerSigner(KEY3)
    channel_hex = "0x" + channel.hex()
    v3 = sign_voucher(signer, channel_hex, 3000, NETWORK)

    def claim_sig(rows):
        return b32(sign_claim_batch(authorizer, [VoucherClaim(channel=c, max_claimable_amount=str(m), signature=s,
                                                              total_claimed=str(t)) for c, m, s, t in rows], NETWORK))

    rows = [(config, 3000, v3.signature, 2500)]
    args = [[claim_row(*r) for r in rows], claim_sig(rows)]
    _, err = tx("claimWithSignature", [args[0], claim_sig([(config, 3000, v3.signature, 2400)])])
    check("claimWithSignature with the authorizer's signature over other rows reverts InvalidSignature",
          err == "InvalidSignature", err)
    rcpt, err = tx("claimWithSignature", args, frm=ACCT4)
    check("claimWithSignature (sent by a stranger) claims 2500 of a 3000 voucher",
          rcpt is not None and state() == (100000, 2500)
          and view(SETTLEMENT, "receivers(address,address)", ["address", "address"], [ACCT2, token],
                   out=["uint128", "uint128"]) == (2500, 0), err)
    rcpt, err = tx("claimWithSignature", args)
    check("the same claim again changes nothing and emits no Claimed",
          rcpt is not None and not logs(rcpt, "Claimed(bytes32,address,uint128,uint128)") and state() == (100000, 2500),
          err)
    for label, row, want in [
        ("a total above the voucher", (config, 3000, v3.signature, 3001), "ClaimExceedsCeiling"),
        ("a voucher above the deposit", (config, 200000, sign_voucher(signer, channel_hex, 200000, NETWORK).signature,
                                         100001), "ClaimExceedsBalance"),
        ("a voucher signed by another key", (config, 3000, sign_voucher(EthAccountSigner(Account.from_key(KEY4)),
                                                                       channel_hex, 3000, NETWORK).signature, 2600),
         "InvalidSignature"),
        ("a voucher for another channel", (config, 3000, sign_voucher(signer, "0x" + "ab" * 32, 3000,
                                                                     NETWORK).signature, 2600), "InvalidSignature"),
    ]:
        _, err = tx("claimWithSignature", [[claim_row(*row)], claim_sig([row])])
        check(f"claiming {label} reverts {want}", err == want, err)
    other = ChannelConfig(**{**config.__dict__, "receiver_authorizer": ACCT4})
    mixed = [(config, 3000, v3.signature, 2600), (other, 3000, v3.signature, 1)]
    _, err = tx("claimWithSignature", [[claim_row(*r) for r in mixed], claim_sig(mixed)])
    check("a batch naming two receiver authorizers reverts NotReceiverAuthorizer", err == "NotReceiverAuthorizer", err)
    _, err = tx("claimWithSignature", [[], claim_sig([])])
    check("an empty batch reverts EmptyBatch", err == "EmptyBatch", err)
    _, err = tx("claim", [[claim_row(config, 3000, v3.signature, 3000)]], frm=ACCT4)
    check("claim() from a stranger reverts NotAuthorizedToClaim", err == "NotAuthorizedToClaim", err)
    rcpt, err = tx("claim", [[claim_row(config, 3000, v3.signature, 3000)]], frm=ACCT2)
    check("claim() from the receiver claims up to 3000", rcpt is not None and state() == (100000, 3000), err)

    # --- settle -----------------------------------------------------------------------------------------
    before = bal(ACCT2)
    rcpt, err = tx("settle", [ACCT2, token], frm=ACCT4)
    check("settle pays the receiver exactly what was claimed (3000)", rcpt is not None and bal(ACCT2) == before + 3000,
          err)
    if rcpt:
        check("settle emits Settled(receiver, token, sender, 3000)",
              [decode(["uint128"], b32(l["data"]))[0] for l in
               logs(rcpt, "Settled(address,address,address,uint128)")] == [3000])
    rcpt, err = tx("settle", [ACCT2, token])
    check("settle with nothing owed does nothing and does not revert",
          rcpt is not None and bal(ACCT2) == before + 3000 and not rcpt["logs"], err)

    # --- refunds --------------------------------------------------------------------------------------
    nonce = lambda: view(SETTLEMENT, "refundNonce(bytes32)", ["bytes32"], [channel])
    refund_sig = sign_refund(authorizer, channel_hex, 7000, 0, NETWORK)
    before = bal(ACCT1)
    rcpt, err = tx("refundWithSignature", [cct, 7000, 0, b32(refund_sig)], frm=ACCT4)
    check("refundWithSignature returns 7000 to the payer and moves the nonce to 1",
          rcpt is not None and bal(ACCT1) == before + 7000 and state() == (93000, 3000) and nonce() == 1, err)
    _, err = tx("refundWithSignature", [cct, 7000, 0, b32(refund_sig)])
    check("the same signed refund again reverts InvalidRefundNonce", err == "InvalidRefundNonce", err)
    _, err = tx("refundWithSignature", [cct, 7000, 1, b32(sign_refund(LocalAuthorizerSigner(KEY4), channel_hex, 7000,
                                                                       1, NETWORK))])
    check("a refund signed by another key reverts InvalidSignature", err == "InvalidSignature", err)
    _, err = tx("refund", [cct, 1], frm=ACCT4)
    check("refund() from a stranger reverts NotAuthorizedToRefund", err == "NotAuthorizedToRefund", err)
    _, err = tx("refund", [cct, 0], frm=ACCT2)
    check("a refund of 0 reverts ZeroRefund", err == "ZeroRefund", err)
    # The facilitator's refund: claim what was charged, then refund, in one multicall.
    v5 = sign_voucher(signer, channel_hex, 5000, NETWORK)
    rows = [(config, 5000, v5.signature, 5000)]
    calls_ = [encoded("claimWithSignature", [[claim_row(*r) for r in rows], claim_sig(rows)]),
              encoded("refundWithSignature", [cct, 2**128 - 1, 1, b32(sign_refund(authorizer, channel_hex, 2**128 - 1,
                                                                                  1, NETWORK))])]
    before = bal(ACCT1)
    rcpt, err = calls.tx(SETTLEMENT, "multicall(bytes[])", ["bytes[]"], [calls_])
    check("multicall(claim to 5000, refund the rest) leaves (5000, 5000) and returns 88000",
          rcpt is not None and state() == (5000, 5000) and bal(ACCT1) == before + 88000 and nonce() == 2, err)
    rcpt, err = tx("refund", [cct, 1], frm=ACCT3)
    check("a refund with nothing left moves only the nonce",
          rcpt is not None and state() == (5000, 5000) and nonce() == 3 and not rcpt["logs"], err)

    # --- deposit through the Permit2 collector, then withdraw after the delay -----------------------------
    payer2 = client("0x" + "01" * 32)
    payload = payer2.create_payment_payload(requirements("permit2"))
    check("with assetTransferMethod permit2 the SDK client signs a Permit2 deposit to the collector",
          "permit2Authorization" in payload["deposit"]["authorization"]
          and payload["deposit"]["authorization"]["permit2Authorization"]["spender"].lower()
          == PERMIT2_COLLECTOR.lower(), str(payload)[:200])
    config2, args = deposit_args(payload)
    channel2 = b32(payload["voucher"]["channelId"])
    cct2 = cc_tuple(config2)
    wrong = list(args)
    wrong[0] = cct2[:6] + (b32("0x" + "02" * 32),)  # another channel: the witness no longer matches
    _, err = tx("deposit", wrong)
    check("a Permit2 deposit into a channel other than the signed witness reverts", err == "InvalidSigner", err)
    before = (bal(ACCT1), bal(SETTLEMENT))
    rcpt, err = tx("deposit", args)
    check("deposit (Permit2 collector) moves the deposit straight from the payer to the contract",
          rcpt is not None and (bal(ACCT1), bal(SETTLEMENT)) == (before[0] - 100000, before[1] + 100000)
          and state(channel2) == (100000, 0), err)
    _, err = tx("deposit", args)
    check("the same Permit2 signature deposited twice reverts InvalidNonce", err == "InvalidNonce", err)

    pending = lambda: view(SETTLEMENT, "pendingWithdrawals(bytes32)", ["bytes32"], [channel2],
                           out=["uint128", "uint40"])
    _, err = tx("initiateWithdraw", [cct2, 1], frm=ACCT4)
    check("initiateWithdraw from a stranger reverts InvalidChannel", err == "InvalidChannel", err)
    _, err = tx("initiateWithdraw", [cct2, 0], frm=ACCT1)
    check("initiateWithdraw of 0 reverts NothingToWithdraw", err == "NothingToWithdraw", err)
    _, err = tx("initiateWithdraw", [cct2, 100001], frm=ACCT1)
    check("initiateWithdraw above the unclaimed balance reverts WithdrawAmountExceedsAvailable",
          err == "WithdrawAmountExceedsAvailable", err)
    _, err = tx("finalizeWithdraw", [cct2], frm=ACCT1)
    check("finalizeWithdraw with none pending reverts WithdrawalNotPending", err == "WithdrawalNotPending", err)
    rcpt, err = tx("initiateWithdraw", [cct2, 100000], frm=ACCT1)
    check("initiateWithdraw(100000) records the withdrawal", rcpt is not None and pending()[0] == 100000, err)
    _, err = tx("initiateWithdraw", [cct2, 1], frm=ACCT1)
    check("a second initiateWithdraw reverts WithdrawalAlreadyPending", err == "WithdrawalAlreadyPending", err)
    _, err = tx("finalizeWithdraw", [cct2], frm=ACCT1)
    check("finalizeWithdraw before the delay reverts WithdrawDelayNotElapsed", err == "WithdrawDelayNotElapsed", err)
    _, err = tx("finalizeWithdraw", [cct2], frm=ACCT4)
    check("finalizeWithdraw from a stranger reverts NotAuthorizedToFinalizeWithdraw",
          err == "NotAuthorizedToFinalizeWithdraw", err)
    # The receiver may still claim during the window; the withdrawal pays only what is unclaimed then.
    v = sign_voucher(signer, "0x" + channel2.hex(), 1000, NETWORK)
    rows = [(config2, 1000, v.signature, 1000)]
    tx("claimWithSignature", [[claim_row(*r) for r in rows], claim_sig(rows)])
    rpc("evm_increaseTime", 900)
    rpc("evm_mine")
    before = bal(ACCT1)
    rcpt, err = tx("finalizeWithdraw", [cct2], frm=ACCT1)
    check("finalizeWithdraw after the delay returns what is unclaimed (99000), not what was asked",
          rcpt is not None and bal(ACCT1) == before + 99000 and state(channel2) == (1000, 1000)
          and pending() == (0, 0), err)


if __name__ == "__main__":
    run_checks(run)
