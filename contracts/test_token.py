#!/usr/bin/env python3
"""On-chain checks of contracts/X402TestToken.json against a real anvil.

    ANVIL=path/to/anvil python3 contracts/test_token.py
    ANVIL=http://127.0.0.1:8545 python3 contracts/test_token.py   # running node

With a binary path (default: tools/node_modules/@foundry-rs/anvil-linux-amd64/
bin/anvil) the script starts anvil on a free loopback port and stops it at the
end. With a URL it uses that node, whose first dev accounts must be anvil's
defaults. Needs only eth-account (and the eth-abi/eth-utils it brings) plus
urllib. Prints PASS/FAIL per check and exits 1 if any check failed.
"""

from eth_abi import encode
from eth_account import Account
from eth_utils import keccak, to_checksum_address

from devchain import calldata, check, load, run_checks

# anvil's default mnemonic ("test test ... junk"), accounts 0..2.
ACCT0 = "0xf39Fd6e51aad88F6F4ce6aB8827279cffFb92266"
KEY1 = "0x59c6995e998f97a5a0044966f0945389dc9e86dae88c7a8412f4603b6b78690d"
ACCT1 = "0x70997970C51812dc3A010C7d01b50e0d17dC79C8"
KEY2 = "0x5de4111afa1a4b94908f83103eb1f1706367c2e68ca870fc3fb9a8926ab2ec3a"
ACCT2 = "0x3C44CdDdB6a900fa2b585dd299e03d12FA4293BC"
SECP256K1_N = 0xFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFEBAAEDCE6AF48A03BBFD25E8CD0364141


def run(rpc):
    art = load("X402TestToken")
    chain_id = int(rpc("eth_chainId"), 16)

    send = rpc.send

    # --- deploy -------------------------------------------------------------
    ctor = encode(["string", "string", "string", "uint8"], ["USD Coin", "2", "USDC", 6]).hex()
    rcpt, err = send(ACCT0, None, art["bytecode"] + ctor)
    check("deploy", rcpt is not None and rcpt["status"] == "0x1", err)
    token = to_checksum_address(rcpt["contractAddress"])

    def call(sig, types=(), args=(), out=None, frm=ACCT0):
        return rpc.call(frm, token, sig, types, args, out)

    def view(sig, types=(), args=(), out=("uint256",)):
        return call(sig, types, args, list(out))[0][0]

    def tx(sig, types, args, frm=ACCT0):
        """eth_call first for the revert reason, then send it for real if it passes."""
        _, err = call(sig, types, args, frm=frm)
        if err is not None:
            return None, err
        rcpt, err = send(frm, token, calldata(sig, list(types), list(args)))
        if err is not None or rcpt["status"] != "0x1":
            return None, err or "mined with status 0"
        return rcpt, None

    bal = lambda a: view("balanceOf(address)", ["address"], [a])

    # --- metadata, EIP-712 --------------------------------------------------
    check("name/version/symbol/decimals",
          (view("name()", out=["string"]), view("version()", out=["string"]),
           view("symbol()", out=["string"]), view("decimals()", out=["uint8"]))
          == ("USD Coin", "2", "USDC", 6))
    expected_ds = keccak(encode(
        ["bytes32", "bytes32", "bytes32", "uint256", "address"],
        [keccak(text="EIP712Domain(string name,string version,uint256 chainId,address verifyingContract)"),
         keccak(text="USD Coin"), keccak(text="2"), chain_id, token]))
    check("DOMAIN_SEPARATOR matches EIP-712 formula", view("DOMAIN_SEPARATOR()", out=["bytes32"]) == expected_ds)
    dom, _ = call("eip712Domain()", out=["bytes1", "string", "string", "uint256", "address", "bytes32", "uint256[]"])
    check("eip712Domain (EIP-5267)", dom[:5] == (b"\x0f", "USD Coin", "2", chain_id, token.lower()) and dom[6] == (),
          str(dom))
    check("TRANSFER_WITH_AUTHORIZATION_TYPEHASH",
          view("TRANSFER_WITH_AUTHORIZATION_TYPEHASH()", out=["bytes32"]).hex()
          == "7c7c6cdb67a18743f49ec6fa9b35f50d52ed05cbed4cc592e13b44501c1a2267")
    check("RECEIVE_WITH_AUTHORIZATION_TYPEHASH",
          view("RECEIVE_WITH_AUTHORIZATION_TYPEHASH()", out=["bytes32"]).hex()
          == "d099cc98ef71107a616c4f0f941f04c322d8e254fe26b3c6668db87aae413de8")
    check("CANCEL_AUTHORIZATION_TYPEHASH",
          view("CANCEL_AUTHORIZATION_TYPEHASH()", out=["bytes32"]).hex()
          == "158b0a9edf7a828aad02f63cd515c68ef2f50ba807396f6d12842833a1597429")

    # --- mint and plain ERC-20 ---------------------------------------------
    rcpt, err = tx("mint(address,uint256)", ["address", "uint256"], [ACCT1, 10_000_000])
    check("owner can mint", rcpt is not None and bal(ACCT1) == 10_000_000, err)
    _, err = tx("mint(address,uint256)", ["address", "uint256"], [ACCT2, 1], frm=ACCT2)
    check("non-owner cannot mint", err == "X402TestToken: caller is not the owner", err)
    check("totalSupply", view("totalSupply()") == 10_000_000)
    rcpt, err = tx("approve(address,uint256)", ["address", "uint256"], [ACCT0, 5], frm=ACCT1)
    rcpt, err = tx("transferFrom(address,address,uint256)", ["address", "address", "uint256"], [ACCT1, ACCT2, 5])
    check("approve + transferFrom", rcpt is not None and bal(ACCT2) == 5
          and view("allowance(address,address)", ["address", "address"], [ACCT1, ACCT0]) == 0, err)
    rcpt, err = tx("transfer(address,uint256)", ["address", "uint256"], [ACCT1, 5], frm=ACCT2)
    check("transfer", rcpt is not None and bal(ACCT2) == 0 and bal(ACCT1) == 10_000_000, err)

    # --- EIP-3009 -----------------------------------------------------------
    domain = {"name": "USD Coin", "version": "2", "chainId": chain_id, "verifyingContract": token}
    auth_fields = [{"name": n, "type": t} for n, t in [
        ("from", "address"), ("to", "address"), ("value", "uint256"),
        ("validAfter", "uint256"), ("validBefore", "uint256"), ("nonce", "bytes32")]]

    def sign(primary, msg, key=KEY1):
        fields = auth_fields if primary != "CancelAuthorization" else [
            {"name": "authorizer", "type": "address"}, {"name": "nonce", "type": "bytes32"}]
        return Account.sign_typed_data(key, domain, {primary: fields}, msg)

    now = int(rpc("eth_getBlockByNumber", "latest", False)["timestamp"], 16)
    counter = [0]

    def auth(value=1_000_000, valid_after=0, valid_before=None, to=ACCT0, frm=ACCT1):
        counter[0] += 1
        return {"from": frm, "to": to, "value": value, "validAfter": valid_after,
                "validBefore": valid_before if valid_before is not None else now + 3600,
                "nonce": keccak(text=f"nonce-{counter[0]}")}

    twa_vrs = "transferWithAuthorization(address,address,uint256,uint256,uint256,bytes32,uint8,bytes32,bytes32)"
    twa_bytes = "transferWithAuthorization(address,address,uint256,uint256,uint256,bytes32,bytes)"
    rwa_vrs = twa_vrs.replace("transfer", "receive")
    rwa_bytes = twa_bytes.replace("transfer", "receive")
    vrs_types = ["address", "address", "uint256", "uint256", "uint256", "bytes32", "uint8", "bytes32", "bytes32"]
    bytes_types = ["address", "address", "uint256", "uint256", "uint256", "bytes32", "bytes"]

    def args(m):
        return [m["from"], m["to"], m["value"], m["validAfter"], m["validBefore"], m["nonce"]]

    def vrs(sig):
        return [sig.v, sig.r.to_bytes(32, "big"), sig.s.to_bytes(32, "big")]

    # Valid transfer (v, r, s form) submitted by account 0, a third party.
    m = auth()
    sig = sign("TransferWithAuthorization", m)
    b0, b1 = bal(ACCT0), bal(ACCT1)
    state_before = view("authorizationState(address,bytes32)", ["address", "bytes32"], [ACCT1, m["nonce"]], ["bool"])
    rcpt, err = tx(twa_vrs, vrs_types, args(m) + vrs(sig))
    check("transferWithAuthorization (v,r,s) moves balances",
          rcpt is not None and bal(ACCT0) == b0 + 1_000_000 and bal(ACCT1) == b1 - 1_000_000, err)
    if rcpt:
        print(f"      gas used: {int(rcpt['gasUsed'], 16)}")
        used_topic = "0x" + keccak(text="AuthorizationUsed(address,bytes32)").hex()
        check("AuthorizationUsed event",
              any(l["topics"][0] == used_topic and l["topics"][2] == "0x" + m["nonce"].hex() for l in rcpt["logs"]))
    check("authorizationState false -> true", not state_before and
          view("authorizationState(address,bytes32)", ["address", "bytes32"], [ACCT1, m["nonce"]], ["bool"]))
    _, err = tx(twa_vrs, vrs_types, args(m) + vrs(sig))
    check("nonce reuse reverts", err == "FiatTokenV2: authorization is used or canceled", err)

    # Malleated twin: (r, n - s) with v flipped recovers the same address.
    m = auth()
    sig = sign("TransferWithAuthorization", m)
    high = [55 - sig.v, sig.r.to_bytes(32, "big"), (SECP256K1_N - sig.s).to_bytes(32, "big")]
    _, err = tx(twa_vrs, vrs_types, args(m) + high)
    check("high-s signature reverts", err == "ECRecover: invalid signature 's' value", err)
    for v in (0, 1):
        _, err = tx(twa_vrs, vrs_types, args(m) + [v] + vrs(sig)[1:])
        check(f"v={v} reverts", err == "ECRecover: invalid signature 'v' value", err)

    # Bytes form, r || s || v.
    rcpt, err = tx(twa_bytes, bytes_types, args(m) + [bytes(sig.signature)])
    check("transferWithAuthorization (bytes) works", rcpt is not None, err)
    m = auth()
    sig = sign("TransferWithAuthorization", m)
    _, err = tx(twa_bytes, bytes_types, args(m) + [bytes(sig.signature)[:64]])
    check("64-byte signature reverts", err == "ECRecover: invalid signature length", err)
    m2 = dict(m, value=m["value"] + 1)
    _, err = tx(twa_bytes, bytes_types, args(m2) + [bytes(sig.signature)])
    check("tampered value reverts", err == "FiatTokenV2: invalid signature", err)
    _, err = tx(twa_vrs, vrs_types, args(m) + vrs(sign("TransferWithAuthorization", m, KEY2)))
    check("wrong signer reverts", err == "FiatTokenV2: invalid signature", err)

    # Validity window.
    m = auth(valid_before=now - 1)
    _, err = tx(twa_vrs, vrs_types, args(m) + vrs(sign("TransferWithAuthorization", m)))
    check("expired reverts", err == "FiatTokenV2: authorization is expired", err)
    m = auth(valid_after=now + 3600, valid_before=now + 7200)
    _, err = tx(twa_vrs, vrs_types, args(m) + vrs(sign("TransferWithAuthorization", m)))
    check("not yet valid reverts", err == "FiatTokenV2: authorization is not yet valid", err)

    # Exact boundaries: mined in a block whose timestamp is T, an authorization
    # with validAfter == T or validBefore == T must fail (open interval), and
    # validAfter == T-1, validBefore == T+1 must succeed.
    def at_boundary(valid_after, valid_before, t):
        m = auth(valid_after=valid_after, valid_before=valid_before)
        rpc("evm_setNextBlockTimestamp", hex(t))
        rcpt, err = send(ACCT0, token, calldata(twa_vrs, vrs_types, args(m) + vrs(sign("TransferWithAuthorization", m))),
                         gas=200_000)
        assert err is None, err
        return rcpt["status"] == "0x1"

    t = now + 10_000
    check("validAfter == block.timestamp reverts", not at_boundary(t, t + 100, t))
    check("validBefore == block.timestamp reverts", not at_boundary(t - 100, t + 1, t + 1))
    check("validAfter < block.timestamp < validBefore succeeds", at_boundary(t + 1, t + 3, t + 2))
    now = t + 2

    # receiveWithAuthorization: only the payee may submit.
    m = auth(to=ACCT2)
    sig = sign("ReceiveWithAuthorization", m)
    _, err = tx(rwa_vrs, vrs_types, args(m) + vrs(sig))
    check("receiveWithAuthorization by non-payee reverts", err == "FiatTokenV2: caller must be the payee", err)
    b2 = bal(ACCT2)
    rcpt, err = tx(rwa_vrs, vrs_types, args(m) + vrs(sig), frm=ACCT2)
    check("receiveWithAuthorization (v,r,s) by payee works", rcpt is not None and bal(ACCT2) == b2 + m["value"], err)
    m = auth(to=ACCT2)
    rcpt, err = tx(rwa_bytes, bytes_types, args(m) + [bytes(sign("ReceiveWithAuthorization", m).signature)], frm=ACCT2)
    check("receiveWithAuthorization (bytes) works", rcpt is not None, err)
    m = auth(to=ACCT2)
    _, err = tx(rwa_vrs, vrs_types, args(m) + vrs(sign("TransferWithAuthorization", m)), frm=ACCT2)
    check("Transfer signature not accepted as Receive", err == "FiatTokenV2: invalid signature", err)

    # cancelAuthorization.
    m = auth()
    tsig = sign("TransferWithAuthorization", m)
    csig = sign("CancelAuthorization", {"authorizer": ACCT1, "nonce": m["nonce"]})
    cancel_vrs = "cancelAuthorization(address,bytes32,uint8,bytes32,bytes32)"
    cancel_bytes = "cancelAuthorization(address,bytes32,bytes)"
    _, err = tx(cancel_vrs, ["address", "bytes32", "uint8", "bytes32", "bytes32"],
                [ACCT1, m["nonce"]] + vrs(sign("CancelAuthorization", {"authorizer": ACCT1, "nonce": m["nonce"]}, KEY2)))
    check("cancel signed by someone else reverts", err == "FiatTokenV2: invalid signature", err)
    rcpt, err = tx(cancel_vrs, ["address", "bytes32", "uint8", "bytes32", "bytes32"], [ACCT1, m["nonce"]] + vrs(csig))
    canceled_topic = "0x" + keccak(text="AuthorizationCanceled(address,bytes32)").hex()
    check("cancelAuthorization (v,r,s) works", rcpt is not None and any(l["topics"][0] == canceled_topic for l in rcpt["logs"])
          and view("authorizationState(address,bytes32)", ["address", "bytes32"], [ACCT1, m["nonce"]], ["bool"]), err)
    _, err = tx(twa_vrs, vrs_types, args(m) + vrs(tsig))
    check("canceled authorization cannot be used", err == "FiatTokenV2: authorization is used or canceled", err)
    _, err = tx(cancel_bytes, ["address", "bytes32", "bytes"], [ACCT1, m["nonce"], bytes(csig.signature)])
    check("cancel twice reverts", err == "FiatTokenV2: authorization is used or canceled", err)
    m = auth()
    rcpt, err = tx(cancel_bytes, ["address", "bytes32", "bytes"],
                   [ACCT1, m["nonce"], bytes(sign("CancelAuthorization", {"authorizer": ACCT1, "nonce": m["nonce"]}).signature)])
    check("cancelAuthorization (bytes) works", rcpt is not None, err)

    # ERC-1271: a contract signer whose isValidSignature always says yes
    # (PUSH4 magic, PUSH1 0xe0, SHL, MSTORE at 0, RETURN 32 bytes), and one
    # that returns zero.
    yes = "0x" + "00" * 19 + "a1"
    no = "0x" + "00" * 19 + "a2"
    rpc("anvil_setCode", yes, "0x631626ba7e60e01b60005260206000f3")
    rpc("anvil_setCode", no, "0x60206000f3")
    tx("mint(address,uint256)", ["address", "uint256"], [yes, 100])
    tx("mint(address,uint256)", ["address", "uint256"], [no, 100])
    m = auth(value=100, frm=to_checksum_address(yes))
    rcpt, err = tx(twa_bytes, bytes_types, args(m) + [b"anything"])
    check("ERC-1271 signer accepted", rcpt is not None and bal(yes) == 0, err)
    m = auth(value=100, frm=to_checksum_address(no))
    _, err = tx(twa_bytes, bytes_types, args(m) + [b"anything"])
    check("ERC-1271 rejecting signer reverts", err == "FiatTokenV2: invalid signature", err)

    # Insufficient balance.
    m = auth(value=10**12)
    _, err = tx(twa_vrs, vrs_types, args(m) + vrs(sign("TransferWithAuthorization", m)))
    check("insufficient balance reverts", err == "ERC20: transfer amount exceeds balance", err)


if __name__ == "__main__":
    run_checks(run)
