#!/usr/bin/env python3
"""On-chain checks of our Permit2 stand-in, the two x402 Permit2 proxies and
the plain ERC-20 (contracts/X402Permit2.json, X402ExactPermit2Proxy.json,
X402UptoPermit2Proxy.json, X402PlainToken.json) against a real anvil.

    ANVIL=path/to/anvil tools/venv/bin/python contracts/test_permit2.py
    ANVIL=http://127.0.0.1:8545 tools/venv/bin/python contracts/test_permit2.py

With a binary path (default: tools/node_modules/@foundry-rs/anvil-linux-amd64/
bin/anvil) the script starts anvil on a free loopback port and stops it at the
end. With a URL it uses that node, whose first dev accounts must be anvil's
defaults; it overwrites the code at the three canonical addresses there.

Permit2 and the proxies are placed at their canonical addresses with
anvil_setCode (their deployedBytecode), as the devnet does. Signatures are made
with eth_account exactly the way the official x402 clients make them; if the
x402 Python package is importable, payloads built by its own client classes
are settled as well. Prints PASS/FAIL per check and exits 1 if any failed.
"""

from eth_abi import encode
from eth_account import Account
from eth_account.messages import encode_typed_data
from eth_utils import keccak, to_checksum_address

from devchain import Calls, calldata, check, load, run_checks

PERMIT2 = "0x000000000022D473030F116dDEE9F6B43aC78BA3"
EXACT_PROXY = "0x402085c248EeA27D92E8b30b2C58ed07f9E20001"
UPTO_PROXY = "0x4020A4f3b7b90ccA423B9fabCc0CE57C6C240002"

# anvil's default mnemonic ("test test ... junk").
ACCT0 = "0xf39Fd6e51aad88F6F4ce6aB8827279cffFb92266"  # deployer / minter, settles exact
KEY1 = "0x59c6995e998f97a5a0044966f0945389dc9e86dae88c7a8412f4603b6b78690d"
ACCT1 = "0x70997970C51812dc3A010C7d01b50e0d17dC79C8"  # payer (approves Permit2)
KEY2 = "0x5de4111afa1a4b94908f83103eb1f1706367c2e68ca870fc3fb9a8926ab2ec3a"
ACCT2 = "0x3C44CdDdB6a900fa2b585dd299e03d12FA4293BC"  # payee
ACCT3 = "0x90F79bf6EB2c4f870365E785982E1f101E93b906"  # upto facilitator
KEY4 = "0x47e179ec197488593b187f80a00eb0da91f1b9d0b13f8733639f19c30a34926a"
ACCT4 = "0x15d34AAf54267DB7D7c367839AAf71A00a2C6A65"  # payer that never approves

EXACT_WITNESS_STRING = "Witness witness)TokenPermissions(address token,uint256 amount)Witness(address to,uint256 validAfter)"
UPTO_WITNESS_STRING = ("Witness witness)TokenPermissions(address token,uint256 amount)"
                       "Witness(address to,address facilitator,uint256 validAfter)")

# The EIP-712 types the clients use (x402 TS/Python constants).
_COMMON = {
    "PermitWitnessTransferFrom": [
        {"name": "permitted", "type": "TokenPermissions"},
        {"name": "spender", "type": "address"},
        {"name": "nonce", "type": "uint256"},
        {"name": "deadline", "type": "uint256"},
        {"name": "witness", "type": "Witness"},
    ],
    "TokenPermissions": [{"name": "token", "type": "address"}, {"name": "amount", "type": "uint256"}],
}
EXACT_TYPES = dict(_COMMON, Witness=[{"name": "to", "type": "address"}, {"name": "validAfter", "type": "uint256"}])
UPTO_TYPES = dict(_COMMON, Witness=[{"name": "to", "type": "address"}, {"name": "facilitator", "type": "address"},
                                    {"name": "validAfter", "type": "uint256"}])
PLAIN_TYPES = {
    "PermitTransferFrom": [
        {"name": "permitted", "type": "TokenPermissions"},
        {"name": "spender", "type": "address"},
        {"name": "nonce", "type": "uint256"},
        {"name": "deadline", "type": "uint256"},
    ],
    "TokenPermissions": _COMMON["TokenPermissions"],
}

# Custom errors we expect to see, by selector.
ERRORS = {keccak(text=s)[:4].hex(): s.split("(")[0] for s in [
    "SignatureExpired(uint256)", "InvalidNonce()", "InvalidAmount(uint256)", "InvalidSignatureLength()",
    "InvalidSignature()", "InvalidSigner()", "InvalidContractSignature()", "InvalidAmount()", "InvalidOwner()",
    "InvalidDestination()", "PaymentTooEarly()", "Permit2612AmountMismatch()", "UnauthorizedFacilitator()",
    "AmountExceedsPermitted()", "ReentrancyGuardReentrantCall()",
]}

def offline_vectors():
    """The digests and signatures in contracts/vendor/RESEARCH.md §1.4,
    recomputed with eth_account (chain 31337), so that the helpers below are
    known to sign exactly what the clients sign."""
    domain = {"name": "Permit2", "chainId": 31337, "verifyingContract": PERMIT2}
    common = {"permitted": {"token": "0x5FbDB2315678afecb367f032d93F642f64180aa3", "amount": 10**18},
              "nonce": 12345678901234567890, "deadline": 1900000000}
    exact = dict(common, spender=EXACT_PROXY, witness={"to": ACCT2, "validAfter": 0})
    upto = dict(common, spender=UPTO_PROXY, witness={"to": ACCT2, "facilitator": ACCT3, "validAfter": 0})
    for label, types, msg, digest, sig in [
        ("exact", EXACT_TYPES, exact, "533fc143b73d8a9e198d34521d4817a4f74e7810ed8160df8fc456910c6ce37e",
         "95d6206fa8109b1f912798e82ad1497871fb1d284cc8679d59afd26e233a43a16f4509a628f749aa6955ee903f2472d4d93f74bb01fb441ffac568381d04838c1c"),
        ("upto", UPTO_TYPES, upto, "e802b40b1aa0451ee01554e987b490f3b378c1adca01571c7f7f8585839fdd43",
         "04bf9b81f1d95576f2f9adfc4075a3243fed0de0d2cbef2d481f3ed9c48594970db8cd446c348a650305b65937ed9005034e3dbf33ee6eec17b5f2c10a093fc91b"),
    ]:
        signed = Account.sign_typed_data(KEY1, domain, types, msg)
        check(f"{label} test vector: digest and signature match RESEARCH.md",
              signed.message_hash.hex().removeprefix("0x") == digest
              and bytes(signed.signature).hex() == sig, signed.message_hash.hex())


def run(rpc):
    chain_id = int(rpc("eth_chainId"), 16)
    offline_vectors()

    def send(frm, to, data, gas=None):
        return rpc.send(frm, to, data, gas, ERRORS)

    calls = Calls(rpc, ERRORS, ACCT0)
    call, view, tx = calls.call, calls.view, calls.tx

    # --- placement at the canonical addresses -----------------------------
    for addr, name in [(PERMIT2, "X402Permit2"), (EXACT_PROXY, "X402ExactPermit2Proxy"),
                       (UPTO_PROXY, "X402UptoPermit2Proxy")]:
        code = load(name)["deployedBytecode"]
        rpc("anvil_setCode", addr, code)
        check(f"{name} placed at {addr}", rpc("eth_getCode", addr, "latest").lower() == code.lower())

    domain = {"name": "Permit2", "chainId": chain_id, "verifyingContract": PERMIT2}
    expected_ds = encode_typed_data(full_message={
        "types": {"EIP712Domain": [{"name": "name", "type": "string"}, {"name": "chainId", "type": "uint256"},
                                   {"name": "verifyingContract", "type": "address"}], **PLAIN_TYPES},
        "primaryType": "PermitTransferFrom", "domain": domain,
        "message": {"permitted": {"token": PERMIT2, "amount": 0}, "spender": PERMIT2, "nonce": 0, "deadline": 0},
    }).header
    ds = view(PERMIT2, "DOMAIN_SEPARATOR()", out=["bytes32"])
    check("DOMAIN_SEPARATOR() at the canonical address equals eth_account's domain hash", ds == expected_ds,
          ds.hex())
    if chain_id == 31337:
        check("DOMAIN_SEPARATOR() equals RESEARCH.md's value for chain 31337",
              ds.hex() == "4d553c58ae79a6c4ba64f0e690a5d1cd2deff8c6b91cf38300e0f2b76f9ee346")

    for proxy, wstr, wth in [
        (EXACT_PROXY, EXACT_WITNESS_STRING, "d97b3239a7f32295517bd14cb074edfdd188dfe5eb42f802bb26d4fd1eb12c37"),
        (UPTO_PROXY, UPTO_WITNESS_STRING, "d4171c445a74218b01d4fd8af34ff1106580ea1e36ff837e64484bfaa2253b75"),
    ]:
        label = "exact" if proxy == EXACT_PROXY else "upto"
        check(f"{label} proxy views: PERMIT2(), WITNESS_TYPEHASH(), WITNESS_TYPE_STRING()",
              view(proxy, "PERMIT2()", out=["address"]) == PERMIT2.lower()
              and view(proxy, "WITNESS_TYPEHASH()", out=["bytes32"]).hex() == wth
              and view(proxy, "WITNESS_TYPE_STRING()", out=["string"]) == wstr)

    # --- plain token ------------------------------------------------------
    art = load("X402PlainToken")
    ctor = encode(["string", "string", "uint8"], ["Plain Test Token", "PTT", 18]).hex()
    rcpt, err = send(ACCT0, None, art["bytecode"] + ctor)
    check("plain token deploys", rcpt is not None and rcpt["status"] == "0x1", err)
    token = to_checksum_address(rcpt["contractAddress"])
    bal = lambda a: view(token, "balanceOf(address)", ["address"], [a])
    check("plain token metadata (name, symbol, 18 decimals)",
          (view(token, "name()", out=["string"]), view(token, "symbol()", out=["string"]),
           view(token, "decimals()", out=["uint8"])) == ("Plain Test Token", "PTT", 18))
    _, err1 = call(token, "transferWithAuthorization(address,address,uint256,uint256,uint256,bytes32,bytes)",
                   ["address", "address", "uint256", "uint256", "uint256", "bytes32", "bytes"],
                   [ACCT1, ACCT2, 1, 0, 2**40, b"\0" * 32, b"\0" * 65])
    _, err2 = call(token, "permit(address,address,uint256,uint256,uint8,bytes32,bytes32)",
                   ["address", "address", "uint256", "uint256", "uint8", "bytes32", "bytes32"],
                   [ACCT1, PERMIT2, 1, 2**40, 27, b"\0" * 32, b"\0" * 32])
    _, err3 = call(token, "DOMAIN_SEPARATOR()")
    check("plain token has no EIP-3009, EIP-2612 or EIP-712 domain", None not in (err1, err2, err3))
    _, err = tx(token, "mint(address,uint256)", ["address", "uint256"], [ACCT2, 1], frm=ACCT2)
    check("non-owner cannot mint", err == "X402PlainToken: caller is not the owner", err)

    unit = 10**18
    for who in (ACCT1, ACCT4):
        tx(token, "mint(address,uint256)", ["address", "uint256"], [who, 1000 * unit])
    rcpt, err = tx(token, "approve(address,uint256)", ["address", "uint256"], [PERMIT2, 2**256 - 1], frm=ACCT1)
    check("payer approves Permit2 (max)", rcpt is not None
          and view(token, "allowance(address,address)", ["address", "address"], [ACCT1, PERMIT2]) == 2**256 - 1, err)

    # --- signing helpers (what the clients send) ----------------------------
    def now():
        return int(rpc("eth_getBlockByNumber", "latest", False)["timestamp"], 16)

    nonce_counter = [int.from_bytes(keccak(text="x402-permit2-test"), "big") >> 8 << 8]

    def fresh_nonce():
        nonce_counter[0] += 1
        return nonce_counter[0]

    def signed_permit(kind, amount, key=KEY1, deadline=None, valid_after=0, to=ACCT2, facilitator=ACCT3,
                      nonce=None, spender=None):
        witness = {"to": to, "validAfter": valid_after}
        if kind == "upto":
            witness = {"to": to, "facilitator": facilitator, "validAfter": valid_after}
        msg = {"permitted": {"token": token, "amount": amount},
               "spender": spender or (EXACT_PROXY if kind == "exact" else UPTO_PROXY),
               "nonce": nonce if nonce is not None else fresh_nonce(),
               "deadline": deadline if deadline is not None else now() + 300, "witness": witness}
        sig = Account.sign_typed_data(key, domain, EXACT_TYPES if kind == "exact" else UPTO_TYPES, msg)
        return msg, bytes(sig.signature)

    permit_t = "((address,uint256),uint256,uint256)"
    exact_sig = f"settle({permit_t},address,(address,uint256),bytes)"
    exact_types = [permit_t, "address", "(address,uint256)", "bytes"]
    upto_sig = f"settle({permit_t},uint256,address,(address,address,uint256),bytes)"
    upto_types = [permit_t, "uint256", "address", "(address,address,uint256)", "bytes"]

    def permit_tuple(m):
        return ((m["permitted"]["token"], m["permitted"]["amount"]), m["nonce"], m["deadline"])

    def exact_settle(m, sig, owner=ACCT1, frm=ACCT0):
        w = m["witness"]
        return tx(EXACT_PROXY, exact_sig, exact_types, [permit_tuple(m), owner, (w["to"], w["validAfter"]), sig], frm)

    def upto_settle(m, sig, amount, owner=ACCT1, frm=ACCT3):
        w = m["witness"]
        return tx(UPTO_PROXY, upto_sig, upto_types,
                  [permit_tuple(m), amount, owner, (w["to"], w["facilitator"], w["validAfter"]), sig], frm)

    settled_topic = "0x" + keccak(text="Settled()").hex()

    # --- exact --------------------------------------------------------------
    m, sig = signed_permit("exact", 5 * unit)
    b1, b2 = bal(ACCT1), bal(ACCT2)
    rcpt, err = exact_settle(m, sig)
    check("exact settle moves exactly the signed amount to witness.to",
          rcpt is not None and bal(ACCT2) == b2 + 5 * unit and bal(ACCT1) == b1 - 5 * unit, err)
    if rcpt:
        print(f"      gas used: {int(rcpt['gasUsed'], 16)}")
        check("exact settle emits Settled()", any(l["topics"][0] == settled_topic and
                                                  l["address"].lower() == EXACT_PROXY.lower() for l in rcpt["logs"]))
    word, bit = m["nonce"] >> 8, m["nonce"] & 0xff
    check("nonceBitmap has the used nonce's bit set",
          view(PERMIT2, "nonceBitmap(address,uint256)", ["address", "uint256"], [ACCT1, word]) >> bit & 1 == 1)
    _, err = exact_settle(m, sig)
    check("replaying the same signature reverts InvalidNonce", err == "InvalidNonce", err)

    m, sig = signed_permit("exact", unit, deadline=now() - 10)
    _, err = exact_settle(m, sig)
    check("expired deadline reverts SignatureExpired", err == f"SignatureExpired({m['deadline']})", err)

    m, sig = signed_permit("exact", unit, key=KEY4)
    _, err = exact_settle(m, sig, owner=ACCT4)
    check("payer without Permit2 approval reverts TRANSFER_FROM_FAILED", err == "TRANSFER_FROM_FAILED", err)

    m, sig = signed_permit("exact", unit, valid_after=now() + 3600)
    _, err = exact_settle(m, sig)
    check("validAfter in the future reverts PaymentTooEarly", err == "PaymentTooEarly", err)

    m, sig = signed_permit("exact", unit)
    _, err = exact_settle(dict(m, witness={"to": ACCT0, "validAfter": 0}), sig)
    check("redirected witness.to reverts InvalidSigner", err == "InvalidSigner", err)
    _, err = exact_settle(dict(m, permitted={"token": token, "amount": 2 * unit}), sig)
    check("tampered amount reverts InvalidSigner", err == "InvalidSigner", err)
    _, err = exact_settle(m, sig, owner=ACCT4)
    check("wrong owner reverts InvalidSigner", err == "InvalidSigner", err)
    _, err = exact_settle(m, sig[:63])
    check("63-byte signature reverts InvalidSignatureLength", err == "InvalidSignatureLength", err)
    _, err = exact_settle(m, sig[:64] + bytes([29]))
    check("v=29 reverts InvalidSignature", err == "InvalidSignature", err)
    _, err = exact_settle(m, sig, owner="0x0000000000000000000000000000000000000000")
    check("owner 0 reverts InvalidOwner", err == "InvalidOwner", err)
    m0, sig0 = signed_permit("exact", 0)
    _, err = exact_settle(m0, sig0)
    check("exact with amount 0 reverts InvalidAmount", err == "InvalidAmount", err)

    # EIP-2098 compact form of the still-unused signature above.
    r, s, v = sig[:32], int.from_bytes(sig[32:64], "big"), sig[64]
    compact = r + ((v - 27) << 255 | s).to_bytes(32, "big")
    b2 = bal(ACCT2)
    rcpt, err = exact_settle(m, compact)
    check("64-byte EIP-2098 signature accepted", rcpt is not None and bal(ACCT2) == b2 + unit, err)

    # A signature for the exact proxy cannot be used by anyone else.
    m, sig = signed_permit("exact", unit)
    _, err = call(PERMIT2, f"permitWitnessTransferFrom({permit_t},(address,uint256),address,bytes32,string,bytes)",
                  [permit_t, "(address,uint256)", "address", "bytes32", "string", "bytes"],
                  [permit_tuple(m), (ACCT0, unit), ACCT1,
                   keccak(encode(["bytes32", "address", "uint256"],
                                 [keccak(text="Witness(address to,uint256 validAfter)"), ACCT2, 0])),
                   EXACT_WITNESS_STRING, sig])
    check("calling Permit2 directly with a proxy's signature reverts InvalidSigner", err == "InvalidSigner", err)

    # invalidateUnorderedNonces burns the nonce.
    rcpt, err = tx(PERMIT2, "invalidateUnorderedNonces(uint256,uint256)", ["uint256", "uint256"],
                   [m["nonce"] >> 8, 1 << (m["nonce"] & 0xff)], frm=ACCT1)
    inv_topic = "0x" + keccak(text="UnorderedNonceInvalidation(address,uint256,uint256)").hex()
    check("invalidateUnorderedNonces emits UnorderedNonceInvalidation",
          rcpt is not None and any(l["topics"][0] == inv_topic for l in rcpt["logs"]), err)
    _, err = exact_settle(m, sig)
    check("invalidated nonce reverts InvalidNonce", err == "InvalidNonce", err)

    # settleWithPermit on a token without EIP-2612: the permit fails, is
    # logged, and the existing approval carries the payment.
    m, sig = signed_permit("exact", unit)
    p2612 = (unit, now() + 300, b"\1" * 32, b"\2" * 32, 27)
    swp_sig = f"settleWithPermit((uint256,uint256,bytes32,bytes32,uint8),{permit_t},address,(address,uint256),bytes)"
    swp_types = ["(uint256,uint256,bytes32,bytes32,uint8)"] + exact_types
    _, err = tx(EXACT_PROXY, swp_sig, swp_types, [(unit + 1,) + p2612[1:], permit_tuple(m), ACCT1, (ACCT2, 0), sig])
    check("settleWithPermit with mismatched value reverts Permit2612AmountMismatch",
          err == "Permit2612AmountMismatch", err)
    b2 = bal(ACCT2)
    rcpt, err = tx(EXACT_PROXY, swp_sig, swp_types, [p2612, permit_tuple(m), ACCT1, (ACCT2, 0), sig])
    failed_topic = "0x" + keccak(text="EIP2612PermitFailedWithData(address,address,bytes)").hex()
    swp_topic = "0x" + keccak(text="SettledWithPermit()").hex()
    check("exact settleWithPermit: failed permit logged, payment made",
          rcpt is not None and bal(ACCT2) == b2 + unit
          and {failed_topic, swp_topic} <= {l["topics"][0] for l in rcpt["logs"]}, err)

    # --- upto ---------------------------------------------------------------
    m, sig = signed_permit("upto", 10 * unit)
    _, err = upto_settle(m, sig, 3 * unit, frm=ACCT0)
    check("upto settle from another sender reverts UnauthorizedFacilitator", err == "UnauthorizedFacilitator", err)
    _, err = upto_settle(m, sig, 0)
    check("upto settle with amount 0 reverts InvalidAmount", err == "InvalidAmount", err)
    _, err = upto_settle(m, sig, 10 * unit + 1)
    check("upto settle above the signed maximum reverts AmountExceedsPermitted", err == "AmountExceedsPermitted", err)
    b1, b2 = bal(ACCT1), bal(ACCT2)
    rcpt, err = upto_settle(m, sig, 3 * unit)
    check("upto settle by the facilitator moves only the requested amount",
          rcpt is not None and bal(ACCT2) == b2 + 3 * unit and bal(ACCT1) == b1 - 3 * unit, err)
    if rcpt:
        print(f"      gas used: {int(rcpt['gasUsed'], 16)}")
    _, err = upto_settle(m, sig, 1)
    check("upto signature cannot be settled twice (InvalidNonce)", err == "InvalidNonce", err)
    m, sig = signed_permit("upto", 10 * unit)
    b2 = bal(ACCT2)
    rcpt, err = upto_settle(m, sig, 10 * unit)
    check("upto settle of exactly the maximum works", rcpt is not None and bal(ACCT2) == b2 + 10 * unit, err)
    m, sig = signed_permit("upto", unit, valid_after=now() + 3600)
    _, err = upto_settle(m, sig, unit)
    check("upto validAfter in the future reverts PaymentTooEarly", err == "PaymentTooEarly", err)
    m, sig = signed_permit("upto", unit, facilitator=ACCT0)
    _, err = upto_settle(dict(m, witness=dict(m["witness"], facilitator=ACCT3)), sig, unit)
    check("upto with a swapped facilitator reverts InvalidSigner", err == "InvalidSigner", err)
    m, sig = signed_permit("exact", unit)
    _, err = upto_settle(dict(m, witness={"to": ACCT2, "facilitator": ACCT3, "validAfter": 0}), sig, unit)
    check("an exact signature is not accepted by the upto proxy", err == "InvalidSigner", err)

    # --- Permit2 used directly (spender = caller) ----------------------------
    m = {"permitted": {"token": token, "amount": 2 * unit}, "spender": ACCT0, "nonce": fresh_nonce(),
         "deadline": now() + 300}
    sig = bytes(Account.sign_typed_data(KEY1, domain, PLAIN_TYPES, m).signature)
    ptf = f"permitTransferFrom({permit_t},(address,uint256),address,bytes)"
    ptf_types = [permit_t, "(address,uint256)", "address", "bytes"]
    _, err = tx(PERMIT2, ptf, ptf_types, [permit_tuple(m), (ACCT2, 2 * unit + 1), ACCT1, sig])
    check("permitTransferFrom above the permitted amount reverts InvalidAmount(max)",
          err == f"InvalidAmount({2 * unit})", err)
    b2 = bal(ACCT2)
    rcpt, err = tx(PERMIT2, ptf, ptf_types, [permit_tuple(m), (ACCT2, unit), ACCT1, sig])
    check("permitTransferFrom (no witness) moves the requested amount", rcpt is not None and bal(ACCT2) == b2 + unit,
          err)

    # ERC-1271 owners: one that always approves, one that always refuses.
    # (Each approves Permit2 while still code-less, then gets its code.)
    yes = to_checksum_address("0x" + "00" * 19 + "b1")
    no = to_checksum_address("0x" + "00" * 19 + "b2")
    for who in (yes, no):
        rpc("anvil_setBalance", who, hex(10**18))
        rpc("anvil_impersonateAccount", who)
        tx(token, "mint(address,uint256)", ["address", "uint256"], [who, 10 * unit])
        send(who, token, calldata("approve(address,uint256)", ["address", "uint256"], [PERMIT2, 2**256 - 1]))
        rpc("anvil_stopImpersonatingAccount", who)
    rpc("anvil_setCode", yes, "0x631626ba7e60e01b60005260206000f3")  # returns the magic value
    rpc("anvil_setCode", no, "0x60206000f3")  # returns 32 zero bytes
    m, _ = signed_permit("exact", unit)
    b2 = bal(ACCT2)
    rcpt, err = exact_settle(m, b"anything", owner=yes)
    check("ERC-1271 owner accepted", rcpt is not None and bal(ACCT2) == b2 + unit, err)
    m, _ = signed_permit("exact", unit)
    _, err = exact_settle(m, b"anything", owner=no)
    check("ERC-1271 owner refusing reverts InvalidContractSignature", err == "InvalidContractSignature", err)

    # Safe-transfer semantics, driven through permitTransferFrom with an
    # arbitrary `token`: a contract that returns nothing is accepted (as
    # USDT-style tokens need), an address without code is refused.
    silent = to_checksum_address("0x" + "00" * 19 + "c1")
    rpc("anvil_setCode", silent, "0x00")
    for label, tok, want in [("token returning no data is accepted", silent, None),
                             ("token address without code reverts TRANSFER_FROM_FAILED",
                              to_checksum_address("0x" + "00" * 19 + "c2"), "TRANSFER_FROM_FAILED")]:
        m = {"permitted": {"token": tok, "amount": 1}, "spender": ACCT0, "nonce": fresh_nonce(),
             "deadline": now() + 300}
        sig = bytes(Account.sign_typed_data(KEY1, domain, PLAIN_TYPES, m).signature)
        rcpt, err = tx(PERMIT2, ptf, ptf_types, [permit_tuple(m), (ACCT2, 1), ACCT1, sig])
        check(label, err == want, err)

    # --- payloads built by the official x402 Python client ------------------
    official_client(rpc, chain_id, token, bal, exact_settle, upto_settle)


def official_client(rpc, chain_id, token, bal, exact_settle, upto_settle):
    try:
        from x402.mechanisms.evm.exact.client import ExactEvmScheme
        from x402.mechanisms.evm.signers import EthAccountSigner
        from x402.mechanisms.evm.upto.client import UptoEvmScheme
        from x402.schemas.payments import PaymentRequirements
    except ImportError as e:
        print(f"SKIP  official x402 Python client payloads ({e})")
        return
    signer = EthAccountSigner(Account.from_key(KEY1))
    unit = 10**18

    def as_msg(payload):
        a = payload["permit2Authorization"]
        w = a["witness"]
        witness = {"to": w["to"], "validAfter": int(w["validAfter"])}
        if "facilitator" in w:
            witness = {"to": w["to"], "facilitator": w["facilitator"], "validAfter": int(w["validAfter"])}
        return ({"permitted": {"token": a["permitted"]["token"], "amount": int(a["permitted"]["amount"])},
                 "nonce": int(a["nonce"]), "deadline": int(a["deadline"]), "witness": witness},
                bytes.fromhex(payload["signature"].removeprefix("0x")), a["from"])

    req = PaymentRequirements(scheme="exact", network=f"eip155:{chain_id}", asset=token, amount=str(2 * unit),
                              pay_to=ACCT2, max_timeout_seconds=300, extra={"assetTransferMethod": "permit2"})
    m, sig, owner = as_msg(ExactEvmScheme(signer).create_payment_payload(req))
    b2 = bal(ACCT2)
    rcpt, err = exact_settle(m, sig, owner=owner)
    check("x402 Python client exact+permit2 payload settles", rcpt is not None and bal(ACCT2) == b2 + 2 * unit, err)

    req = PaymentRequirements(scheme="upto", network=f"eip155:{chain_id}", asset=token, amount=str(4 * unit),
                              pay_to=ACCT2, max_timeout_seconds=300,
                              extra={"assetTransferMethod": "permit2", "facilitatorAddress": ACCT3})
    m, sig, owner = as_msg(UptoEvmScheme(signer).create_payment_payload(req))
    b2 = bal(ACCT2)
    rcpt, err = upto_settle(m, sig, unit, owner=owner)
    check("x402 Python client upto payload settles a partial amount", rcpt is not None and bal(ACCT2) == b2 + unit,
          err)


if __name__ == "__main__":
    run_checks(run)
