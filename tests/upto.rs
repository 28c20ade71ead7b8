//! `upto`: a metered route whose upstream says what each call cost. The official clients pay it
//! unmodified (with the upto scheme registered, as no helper does), on the devnet's Permit2 and x402 upto
//! proxy, through our facilitator; balances move by exactly the charge each time.

mod support;

use alloy::primitives::{Address, U256};
use alloy::signers::local::PrivateKeySigner;
use serde_json::{json, Value};
use support::{decode_header, get, node, python, run_client, Gateway, Stack};
use x402_gateway::protocol::permit2::UPTO_PROXY;

/// "$0.01" of the devnet's 6-decimal token: the most a call may cost.
const MAX: u64 = 10_000;

/// The facilitator's settling account (the devnet's facilitator key).
fn facilitator_address(stack: &Stack) -> Address {
    let key: PrivateKeySigner = stack.devnet.state.facilitator_private_key.parse().unwrap();
    key.address()
}

/// The stack's price table with the facilitator's address and `/metered/**` priced `upto` $0.01.
fn metered_table(stack: &Stack, min: &str) -> String {
    let table = stack.table("");
    let table = table.replacen(
        "  timeout: 20s\n",
        &format!("  timeout: 20s\n  address: \"{}\"\n", facilitator_address(stack)),
        1,
    );
    format!("{table}  - path: /metered/**\n    price: {{upto: \"$0.01\"{min}}}\n")
}

#[tokio::test(flavor = "multi_thread")]
async fn the_official_clients_pay_what_the_upstream_charges_never_more_than_the_maximum() {
    let stack = Stack::start(31_337, "").await;
    let gateway = Gateway::start(&metered_table(&stack, "")).await;
    let url = format!("{}/metered/inference", gateway.url);
    let facilitator = facilitator_address(&stack);

    // The 402 offers `upto` with the maximum as the amount, through Permit2, naming the facilitator.
    let challenge = get(&url, &[]).await;
    assert_eq!(challenge.status(), 402);
    let required = decode_header(challenge.headers()["payment-required"].to_str().unwrap());
    let offer = &required["accepts"][0];
    assert_eq!(offer["scheme"], "upto", "{required}");
    assert_eq!(offer["amount"], MAX.to_string());
    assert_eq!(offer["extra"]["assetTransferMethod"], "permit2");
    assert_eq!(offer["extra"]["facilitatorAddress"], facilitator.to_string());
    let body: Value = challenge.json().await.unwrap();
    assert_eq!(body["accepts"], json!([]), "v1 has no upto: not offered to v1 clients");
    // Our facilitator says it settles `upto` from that account.
    let supported: Value = reqwest::get(format!("{}/supported", stack.facilitator.url))
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let kind = supported["kinds"]
        .as_array()
        .unwrap()
        .iter()
        .find(|k| k["scheme"] == "upto")
        .cloned()
        .unwrap_or_default();
    assert_eq!(
        kind["extra"]["facilitatorAddress"],
        facilitator.to_string(),
        "{supported}"
    );

    // (reported by the upstream, charged): below, at, zero, above the maximum (capped), and a share.
    let charges = [
        ("2500", 2500u64),
        ("10000", MAX),
        ("0", 0),
        ("25000", MAX),
        ("12.5%", 1250),
    ];
    let mut payee_gained = U256::ZERO;
    for (program, script, account) in [(python(), "pay_python.py", 2), (node(), "pay_v2.mjs", 3)] {
        let (payer, key) = stack.devnet.account(account);
        for (reported, charged) in charges {
            let (payer_before, payee_before) = (
                stack.devnet.balance(payer).await,
                stack.devnet.balance(stack.pay_to).await,
            );
            let headers = json!({ "x-echo-charge": reported }).to_string();
            let out = run_client(
                &program,
                script,
                &[("URL", &url), ("PRIVATE_KEY", &key), ("HEADERS", &headers)],
                None,
            );
            let case = format!("{script} reporting {reported}");
            assert_eq!(out["status"], 200, "{case}: {out}");
            assert_eq!(
                out["settlement_overrides"],
                Value::Null,
                "{case}: the report reached the client"
            );
            let payload = &out["payment_payload"];
            assert_eq!(payload["accepted"]["scheme"], "upto", "{case}");
            assert_eq!(
                payload["payload"]["permit2Authorization"]["witness"]["facilitator"],
                facilitator.to_string(),
                "{case}"
            );
            let receipt = &out["payment_response"];
            assert_eq!(receipt["success"], true, "{case}: {out}");
            assert_eq!(receipt["amount"], charged.to_string(), "{case}: {out}");
            let tx = receipt["transaction"].as_str().unwrap();
            if charged == 0 {
                assert_eq!(tx, "", "{case}: nothing to move, no transaction");
            } else {
                let mined = stack.devnet.receipt(tx).await;
                assert_eq!(mined["status"], "0x1", "{case}");
                assert_eq!(
                    mined["to"].as_str().unwrap().to_lowercase(),
                    UPTO_PROXY.to_string().to_lowercase(),
                    "{case}"
                );
            }
            let charged = U256::from(charged);
            assert_eq!(stack.devnet.balance(payer).await, payer_before - charged, "{case}");
            assert_eq!(
                stack.devnet.balance(stack.pay_to).await,
                payee_before + charged,
                "{case}"
            );
            payee_gained += charged;

            // The authorization served its one response, even at zero: the same payment again is refused.
            let replay = get(&url, &[("payment-signature", out["payment_header"].as_str().unwrap())]).await;
            assert_eq!(replay.status(), 409, "{case}");
            assert_eq!(stack.devnet.balance(payer).await, payer_before - charged, "{case}");
        }
    }
    assert_eq!(payee_gained, U256::from(2 * (2500 + MAX + MAX + 1250)));

    // The upstream failed: nothing is settled and the payer keeps everything.
    let (payer, key) = stack.devnet.account(4);
    let before = stack.devnet.balance(payer).await;
    let headers = json!({ "x-echo-charge": "5000", "x-echo-status": "503" }).to_string();
    let out = run_client(
        &python(),
        "pay_python.py",
        &[("URL", &url), ("PRIVATE_KEY", &key), ("HEADERS", &headers)],
        None,
    );
    assert_eq!(out["status"], 503, "{out}");
    assert_eq!(out["payment_response"], Value::Null, "{out}");
    assert_eq!(stack.devnet.balance(payer).await, before);

    // A free route's upstream report is stripped too: it is the gateway's, never the client's.
    let free = get(&format!("{}/free/x", gateway.url), &[("x-echo-charge", "5")]).await;
    assert_eq!(free.status(), 200);
    assert!(free.headers().get("settlement-overrides").is_none());
}

#[tokio::test(flavor = "multi_thread")]
async fn a_route_min_is_the_least_a_successful_call_costs() {
    let stack = Stack::start(31_337, "").await;
    let gateway = Gateway::start(&metered_table(&stack, ", min: \"$0.002\"")).await;
    let url = format!("{}/metered/rows", gateway.url);
    let (payer, key) = stack.devnet.account(5);
    let before = stack.devnet.balance(payer).await;
    let headers = json!({ "x-echo-charge": "0" }).to_string();
    let out = run_client(
        &node(),
        "pay_v2.mjs",
        &[("URL", &url), ("PRIVATE_KEY", &key), ("HEADERS", &headers)],
        None,
    );
    assert_eq!(out["status"], 200, "{out}");
    assert_eq!(out["payment_response"]["amount"], "2000", "{out}");
    assert_eq!(stack.devnet.balance(payer).await, before - U256::from(2000));
}
