//! `exact` through Permit2: a route priced in a plain ERC-20 (18 decimals, no EIP-3009), paid by the
//! official clients unmodified, on the devnet's Permit2 and x402 exact proxy, through our facilitator.

mod support;

use alloy::primitives::{Address, U256};
use serde_json::{json, Value};
use support::{decode_header, get, node, python, run_client, Gateway, Stack};
use x402_gateway::protocol::permit2::EXACT_PROXY;

/// "$0.001" of an 18-decimal token.
const PRICE: u64 = 1_000_000_000_000_000;

/// The stack's price table plus the plain token (paid through Permit2) and `/token/**` priced in it.
fn permit2_table(stack: &Stack) -> String {
    let s = &stack.devnet.state;
    let table = stack.table("");
    let plain = format!(
        "assets:\n  - network: \"{}\"\n    address: \"{}\"\n    decimals: 18\n    symbol: PLAIN\n    transfer: permit2\n",
        s.network, s.plain_asset
    );
    let route = format!(
        "  - path: /token/**\n    price: \"$0.001\"\n    accepts: [\"{}/erc20:{}\"]\n",
        s.network, s.plain_asset
    );
    format!("{}{route}", table.replacen("assets:\n", &plain, 1))
}

/// A client's 200 whose receipt names a mined transaction through the exact proxy.
async fn assert_paid_through_permit2(stack: &Stack, out: &Value) {
    assert_eq!(out["status"], 200, "{out}");
    let receipt = &out["payment_response"];
    assert_eq!(receipt["success"], true, "{out}");
    let tx = stack.devnet.receipt(receipt["transaction"].as_str().unwrap()).await;
    assert_eq!(tx["status"], "0x1");
    assert_eq!(
        tx["to"].as_str().unwrap().to_lowercase(),
        EXACT_PROXY.to_string().to_lowercase()
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn the_official_clients_pay_a_plain_token_through_permit2_once_and_an_unapproved_payer_gets_412() {
    let stack = Stack::start(31_337, "").await;
    let gateway = Gateway::start(&permit2_table(&stack)).await;
    let url = format!("{}/token/weather", gateway.url);

    // The 402 offers the plain token through Permit2, its price converted with 18 decimals.
    let challenge = get(&url, &[]).await;
    assert_eq!(challenge.status(), 402);
    let required = decode_header(challenge.headers()["payment-required"].to_str().unwrap());
    let offer = &required["accepts"][0];
    assert_eq!(offer["extra"]["assetTransferMethod"], "permit2", "{required}");
    assert_eq!(offer["amount"], PRICE.to_string());
    assert_eq!(
        offer["asset"].as_str().unwrap().to_lowercase(),
        stack.devnet.state.plain_asset.to_lowercase()
    );
    let body: Value = challenge.json().await.unwrap();
    assert_eq!(
        body["accepts"],
        json!([]),
        "v1 clients cannot pay through Permit2: not offered to them"
    );

    let price = U256::from(PRICE);
    let payee_before = stack.devnet.plain_balance(stack.pay_to).await;
    for (n, (program, script, account)) in [(python(), "pay_python.py", 2), (node(), "pay_v2.mjs", 3)]
        .into_iter()
        .enumerate()
    {
        let (payer, key) = stack.devnet.account(account);
        let payer_before = stack.devnet.plain_balance(payer).await;
        let out = run_client(&program, script, &[("URL", &url), ("PRIVATE_KEY", &key)], None);
        assert!(
            out["payment_payload"]["payload"]["permit2Authorization"].is_object(),
            "{out}"
        );
        assert_paid_through_permit2(&stack, &out).await;
        assert_eq!(
            stack.devnet.plain_balance(payer).await,
            payer_before - price,
            "{script}"
        );
        let paid = U256::from(n as u64 + 1) * price;
        assert_eq!(
            stack.devnet.plain_balance(stack.pay_to).await,
            payee_before + paid,
            "{script}"
        );

        // The same payment again: refused on its Permit2 nonce without a facilitator call.
        let calls = stack.facilitator_calls().await;
        let replay = get(&url, &[("payment-signature", out["payment_header"].as_str().unwrap())]).await;
        assert_eq!(replay.status(), 409, "{script}");
        assert_eq!(stack.facilitator_calls().await, calls);
        assert_eq!(stack.devnet.plain_balance(payer).await, payer_before - price);
    }

    // A payer that never approved Permit2: 412 with the spec's reason, nothing moves.
    let unapproved = &stack.devnet.state.accounts[x402_gateway::tools::devnet::UNAPPROVED_ACCOUNT - 1];
    let payer: Address = unapproved.address.parse().unwrap();
    let payer_before = stack.devnet.plain_balance(payer).await;
    let out = run_client(
        &python(),
        "pay_python.py",
        &[("URL", &url), ("PRIVATE_KEY", &unapproved.private_key)],
        None,
    );
    assert_eq!(out["status"], 412, "{out}");
    let required = &out["payment_required"];
    assert_eq!(required["error"], "permit2_allowance_required", "{out}");
    assert_eq!(stack.devnet.plain_balance(payer).await, payer_before);
}
