//! The self-hosted facilitator against a real anvil chain and the real test token, paid by the official
//! Python client.

mod support;

use alloy::primitives::{Address, B256, U256};
use alloy::signers::local::PrivateKeySigner;
use serde_json::{json, Value};
use support::{python_sign, Devnet, Facilitator};
use x402_gateway::protocol::exact::{Requirement, Scheme};
use x402_gateway::protocol::network::Network;

const PRICE: u64 = 1000;

/// The v2 challenge for `PRICE` of the devnet token, paid to `pay_to`.
fn payment_required(devnet: &Devnet, pay_to: Address, max_timeout: u64) -> Value {
    json!({
        "x402Version": 2,
        "resource": {"url": "http://api.example/paid", "description": "", "mimeType": "application/json"},
        "accepts": [requirements(devnet, pay_to, max_timeout)],
    })
}

fn requirements(devnet: &Devnet, pay_to: Address, max_timeout: u64) -> Value {
    json!({
        "scheme": "exact",
        "network": devnet.state.network,
        "amount": PRICE.to_string(),
        "asset": devnet.state.asset,
        "payTo": pay_to.to_string(),
        "maxTimeoutSeconds": max_timeout,
        "extra": {"name": devnet.state.asset_name, "version": devnet.state.asset_version},
    })
}

fn request(payload: &Value, requirements: &Value) -> Value {
    json!({"x402Version": 2, "paymentPayload": payload, "paymentRequirements": requirements})
}

/// Signs an authorization ourselves, for shapes the official clients never produce (future validAfter…).
fn sign_raw(devnet: &Devnet, key: &str, pay_to: Address, value: u64, valid_after: u64, valid_before: u64) -> Value {
    sign_raw_with_nonce(devnet, key, pay_to, value, valid_after, valid_before, B256::random())
}

fn sign_raw_with_nonce(
    devnet: &Devnet,
    key: &str,
    pay_to: Address,
    value: u64,
    valid_after: u64,
    valid_before: u64,
    nonce: B256,
) -> Value {
    let signer: PrivateKeySigner = key.parse().unwrap();
    let req = Requirement {
        scheme: Scheme::Exact,
        network: Network::new(devnet.state.chain_id),
        asset: devnet.asset(),
        pay_to,
        amount: U256::from(PRICE),
        max_timeout_seconds: 60,
        eip712_name: devnet.state.asset_name.clone(),
        eip712_version: devnet.state.asset_version.clone(),
        transfer: Default::default(),
    };
    let mut auth = x402_gateway::tools::pay::authorize(&signer, &req, valid_after, valid_before);
    auth.value = U256::from(value);
    auth.nonce = nonce;
    let payload = x402_gateway::tools::pay::sign(&signer, &req, auth).unwrap();
    json!({"x402Version": 2, "accepted": requirements(devnet, pay_to, 60), "payload": payload.to_json()})
}

#[tokio::test(flavor = "multi_thread")]
async fn python_signed_payment_verifies_settles_and_moves_exactly_the_price() {
    let devnet = Devnet::start(31_337).await;
    let facilitator = Facilitator::start(&devnet, &[]).await;
    let (payer, key) = devnet.account(0);
    let (pay_to, _) = devnet.account(1);
    let payload = python_sign(&payment_required(&devnet, pay_to, 60), &key);
    let body = request(&payload, &requirements(&devnet, pay_to, 60));

    let (status, verify) = facilitator.post("/verify", &body).await;
    assert_eq!((status, verify["isValid"].as_bool()), (200, Some(true)), "{verify}");
    assert_eq!(verify["payer"].as_str().unwrap().parse::<Address>().unwrap(), payer);

    let (payer_before, payee_before) = (devnet.balance(payer).await, devnet.balance(pay_to).await);
    let (status, settle) = facilitator.post("/settle", &body).await;
    assert_eq!((status, settle["success"].as_bool()), (200, Some(true)), "{settle}");
    assert_eq!(settle["network"], devnet.state.network);
    let tx = settle["transaction"].as_str().unwrap();
    let receipt = devnet.receipt(tx).await;
    assert_eq!(receipt["status"], "0x1");
    assert_eq!(
        receipt["to"].as_str().unwrap().to_lowercase(),
        devnet.state.asset.to_lowercase()
    );
    assert_eq!(devnet.balance(payer).await, payer_before - U256::from(PRICE));
    assert_eq!(devnet.balance(pay_to).await, payee_before + U256::from(PRICE));

    // The same payload again (a resource server that lost the answer): the same success and transaction,
    // remembered, and nothing is broadcast.
    let sent = facilitator.counter("facilitator_transactions_sent_total").await;
    let (status, again) = facilitator.post("/settle", &body).await;
    assert_eq!(status, 200);
    assert_eq!(
        (again["success"].clone(), again["transaction"].clone()),
        (json!(true), json!(tx)),
        "{again}"
    );
    assert_eq!(facilitator.counter("facilitator_transactions_sent_total").await, sent);
    // Another payload on the same authorization is refused as a used nonce.
    let twin = request(&payload, &requirements(&devnet, pay_to, 61));
    let (_, other) = facilitator.post("/settle", &twin).await;
    assert_eq!(other["errorReason"], "invalid_exact_evm_nonce_already_used", "{other}");
    assert_eq!(other["transaction"], "");
    assert_eq!(facilitator.counter("facilitator_transactions_sent_total").await, sent);
    assert_eq!(devnet.balance(payer).await, payer_before - U256::from(PRICE));
}

#[tokio::test(flavor = "multi_thread")]
async fn tampered_and_out_of_window_payments_are_refused_with_the_right_reason() {
    let devnet = Devnet::start(31_337).await;
    let facilitator = Facilitator::start(&devnet, &[]).await;
    let (_, key) = devnet.account(2);
    let (pay_to, _) = devnet.account(3);
    let (other, _) = devnet.account(4);
    let reqs = requirements(&devnet, pay_to, 60);
    let signed = python_sign(&payment_required(&devnet, pay_to, 60), &key);
    let now = support::now();

    let mut cases: Vec<(&str, Value, Value)> = Vec::new();
    // Value changed after signing: the signature no longer covers it.
    let mut p = signed.clone();
    p["payload"]["authorization"]["value"] = json!("1");
    cases.push(("invalid_exact_evm_signature", p, reqs.clone()));
    // Signed properly, but for a different amount than the price.
    cases.push((
        "invalid_exact_evm_payload_authorization_value_mismatch",
        sign_raw(&devnet, &key, pay_to, 999, now - 600, now + 60),
        reqs.clone(),
    ));
    // Signed to another recipient than the requirement's payTo.
    cases.push((
        "invalid_exact_evm_recipient_mismatch",
        python_sign(&payment_required(&devnet, other, 60), &key),
        reqs.clone(),
    ));
    // Payload claims another network than the requirement.
    let mut p = signed.clone();
    p["accepted"]["network"] = json!("eip155:8453");
    cases.push(("invalid_exact_evm_network_mismatch", p, reqs.clone()));
    // Expired (validBefore inside the 6 s buffer) and not yet valid.
    cases.push((
        "invalid_exact_evm_payload_authorization_valid_before",
        python_sign(&payment_required(&devnet, pay_to, 3), &key),
        requirements(&devnet, pay_to, 3),
    ));
    cases.push((
        "invalid_exact_evm_payload_authorization_valid_after",
        sign_raw(&devnet, &key, pay_to, PRICE, now + 3600, now + 7200),
        reqs.clone(),
    ));

    for (want, payload, reqs) in cases {
        for path in ["/verify", "/settle"] {
            let (status, resp) = facilitator.post(path, &request(&payload, &reqs)).await;
            assert_eq!(status, 200, "{path} {resp}");
            let reason = if path == "/verify" {
                &resp["invalidReason"]
            } else {
                &resp["errorReason"]
            };
            assert_eq!(reason, want, "{path}: {resp}");
        }
    }
    assert_eq!(facilitator.counter("facilitator_transactions_sent_total").await, 0);
}

#[tokio::test(flavor = "multi_thread")]
async fn malformed_requests_get_400_with_a_reason() {
    let devnet = Devnet::start(31_337).await;
    let facilitator = Facilitator::start(&devnet, &[]).await;
    let client = reqwest::Client::new();
    for body in [
        "not json",
        "{}",
        r#"{"x402Version":3,"paymentPayload":{},"paymentRequirements":{}}"#,
        r#"{"x402Version":2,"paymentPayload":{},"paymentRequirements":{"scheme":1}}"#,
    ] {
        let resp = client
            .post(format!("{}/verify", facilitator.url))
            .body(body)
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), 400, "{body}");
        let v: Value = resp.json().await.unwrap();
        assert!(v["error"].as_str().is_some_and(|e| !e.is_empty()), "{v}");
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn supported_lists_v1_and_v2_kinds_and_the_signer() {
    let devnet = Devnet::start(84_532).await;
    let facilitator = Facilitator::start(&devnet, &[]).await;
    let s: Value = reqwest::get(format!("{}/supported", facilitator.url))
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let kinds = s["kinds"].as_array().unwrap();
    assert!(
        kinds.contains(&json!({"x402Version": 1, "scheme": "exact", "network": "base-sepolia"})),
        "{s}"
    );
    assert!(
        kinds.contains(&json!({"x402Version": 2, "scheme": "exact", "network": "eip155:84532"})),
        "{s}"
    );
    let signer: PrivateKeySigner = devnet.state.facilitator_private_key.parse().unwrap();
    // `upto` (v2 only), naming the account it settles from: the address upto payers sign.
    assert!(
        kinds.contains(&json!({"x402Version": 2, "scheme": "upto", "network": "eip155:84532", "extra": {"facilitatorAddress": signer.address().to_string()}})),
        "{s}"
    );
    // `batch-settlement` (v2 only), with no receiver authorizer of its own: resource servers sign claims.
    assert!(
        kinds.contains(&json!({"x402Version": 2, "scheme": "batch-settlement", "network": "eip155:84532"})),
        "{s}"
    );
    assert_eq!(kinds.len(), 4, "{s}");
    assert_eq!(s["extensions"], json!([]));
    assert_eq!(s["signers"]["eip155:*"], json!([signer.address().to_string()]));
}

#[tokio::test(flavor = "multi_thread")]
async fn v1_payment_settles_by_network_name() {
    let devnet = Devnet::start(84_532).await;
    let facilitator = Facilitator::start(&devnet, &[]).await;
    let (payer, key) = devnet.account(0);
    let (pay_to, _) = devnet.account(1);
    let v1_req = json!({
        "scheme": "exact", "network": "base-sepolia", "maxAmountRequired": PRICE.to_string(),
        "resource": "http://api.example/paid", "description": "", "mimeType": "application/json",
        "payTo": pay_to.to_string(), "maxTimeoutSeconds": 60, "asset": devnet.state.asset,
        "extra": {"name": devnet.state.asset_name, "version": devnet.state.asset_version},
    });
    let payload = python_sign(&json!({"x402Version": 1, "error": "", "accepts": [v1_req]}), &key);
    assert_eq!(payload["x402Version"], 1);
    let body = json!({"x402Version": 1, "paymentPayload": payload, "paymentRequirements": v1_req});
    let before = devnet.balance(payer).await;
    let (_, settle) = facilitator.post("/settle", &body).await;
    assert_eq!(settle["success"], true, "{settle}");
    assert_eq!(settle["network"], "base-sepolia");
    assert_eq!(
        devnet.receipt(settle["transaction"].as_str().unwrap()).await["status"],
        "0x1"
    );
    assert_eq!(devnet.balance(payer).await, before - U256::from(PRICE));
}

#[tokio::test(flavor = "multi_thread")]
async fn pending_settlement_is_reconciled_not_resent() {
    let devnet = Devnet::start(31_337).await;
    let facilitator = Facilitator::start(&devnet, &["--receipt-timeout", "1s"]).await;
    let (payer, key) = devnet.account(5);
    let (pay_to, _) = devnet.account(6);
    let body = request(
        &python_sign(&payment_required(&devnet, pay_to, 120), &key),
        &requirements(&devnet, pay_to, 120),
    );
    let before = devnet.balance(payer).await;

    devnet.rpc("evm_setAutomine", json!([false])).await;
    // Two settles at once: one transaction, both answers pending on the same hash.
    let (a, b) = tokio::join!(facilitator.post("/settle", &body), facilitator.post("/settle", &body));
    for (_, r) in [&a, &b] {
        assert_eq!(r["success"], false, "{r}");
        assert_eq!(r["errorReason"], "settlement_pending", "{r}");
    }
    let hash = a.1["transaction"].as_str().unwrap().to_owned();
    assert_eq!(hash.len(), 66);
    assert_eq!(b.1["transaction"], hash.as_str());
    assert_eq!(facilitator.counter("facilitator_transactions_sent_total").await, 1);

    // Another payment reusing this authorization's nonce on other terms is not taken for the pending one.
    let (other, _) = devnet.account(7);
    let nonce: B256 = body["paymentPayload"]["payload"]["authorization"]["nonce"]
        .as_str()
        .unwrap()
        .parse()
        .unwrap();
    let now = support::now();
    let twin = sign_raw_with_nonce(&devnet, &key, other, PRICE, now - 600, now + 120, nonce);
    let (_, r) = facilitator
        .post("/settle", &request(&twin, &requirements(&devnet, other, 60)))
        .await;
    assert_eq!(
        (r["success"].clone(), r["errorReason"].clone()),
        (json!(false), json!("invalid_exact_evm_nonce_already_used")),
        "{r}"
    );
    assert_eq!(facilitator.counter("facilitator_transactions_sent_total").await, 1);

    devnet.rpc("evm_mine", json!([])).await;
    let (_, done) = facilitator.post("/settle", &body).await;
    assert_eq!(done["success"], true, "{done}");
    assert_eq!(done["transaction"], hash.as_str());
    assert_eq!(facilitator.counter("facilitator_transactions_sent_total").await, 1);
    assert_eq!(devnet.receipt(&hash).await["status"], "0x1");
    assert_eq!(devnet.balance(payer).await, before - U256::from(PRICE));
    // A success is remembered: the same request again (a resource server that lost the first answer) gets
    // the same success and transaction, not "nonce used".
    let (_, again) = facilitator.post("/settle", &body).await;
    assert_eq!(
        (again["success"].clone(), again["transaction"].clone()),
        (json!(true), json!(hash)),
        "{again}"
    );
    assert_eq!(facilitator.counter("facilitator_transactions_sent_total").await, 1);
    assert_eq!(devnet.balance(payer).await, before - U256::from(PRICE));
}

#[test]
fn committed_token_artifact_matches_its_source() {
    let out = std::process::Command::new(support::repo().join("scripts/build-token"))
        .arg("--check")
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

/// The contracts' own on-chain checks (`contracts/test_*.py`) against a fresh anvil: the test token's
/// EIP-3009, the Permit2 stand-in with the x402 proxies, and the batch-settlement contract with its two
/// deposit collectors, at their canonical addresses, paid with payloads the official Python client builds.
#[test]
fn the_contracts_behave_on_a_real_chain() {
    for script in [
        "contracts/test_token.py",
        "contracts/test_permit2.py",
        "contracts/test_batch_settlement.py",
    ] {
        let (ok, text) =
            support::output(std::process::Command::new(support::python()).arg(support::repo().join(script)));
        assert!(ok, "{script}:\n{text}");
        let bad = text
            .lines()
            .filter(|l| l.starts_with("FAIL") || l.starts_with("SKIP"))
            .count();
        assert_eq!(bad, 0, "{script}:\n{text}");
        assert!(text.contains("all checks passed"), "{script}:\n{text}");
    }
}

/// An `eth_call` of `data` on `to`, as a 32-byte word.
async fn call_word(devnet: &Devnet, to: &str, data: String) -> U256 {
    let out = devnet
        .rpc("eth_call", json!([{"to": to, "data": data}, "latest"]))
        .await;
    U256::from_str_radix(out.as_str().unwrap().trim_start_matches("0x"), 16).unwrap()
}

#[tokio::test(flavor = "multi_thread")]
async fn the_devnet_has_permit2_at_its_canonical_address_and_a_plain_token_its_payers_approved() {
    use alloy::sol_types::Eip712Domain;
    use x402_gateway::protocol::permit2::{EXACT_PROXY, PERMIT2, UPTO_PROXY};
    let devnet = Devnet::start(31_337).await;
    let s = &devnet.state;
    assert_eq!(s.permit2, PERMIT2.to_string());
    for at in [PERMIT2, EXACT_PROXY, UPTO_PROXY] {
        let code = devnet.rpc("eth_getCode", json!([at.to_string(), "latest"])).await;
        assert!(code.as_str().unwrap().len() > 1000, "no code at {at}");
    }
    // What clients sign against: domain {name: "Permit2", chainId, verifyingContract}, no version.
    let domain = Eip712Domain::new(
        Some("Permit2".into()),
        None,
        Some(U256::from(31_337)),
        Some(PERMIT2),
        None,
    );
    let separator = call_word(&devnet, &s.permit2, "0x3644e515".into()).await; // DOMAIN_SEPARATOR()
    assert_eq!(B256::from(separator), domain.separator());
    assert_eq!(s.plain_asset_decimals, 18);
    let decimals = call_word(&devnet, &s.plain_asset, "0x313ce567".into()).await; // decimals()
    assert_eq!(decimals, U256::from(18));
    let word = |a: &str| format!("{:0>64}", a.trim_start_matches("0x").to_lowercase());
    let allowance = |owner: &str| format!("0xdd62ed3e{}{}", word(owner), word(&s.permit2)); // allowance(owner, spender)
    let payer = &s.accounts[0].address;
    for token in [&s.asset, &s.plain_asset] {
        assert_eq!(call_word(&devnet, token, allowance(payer)).await, U256::MAX, "{token}");
        assert_eq!(
            call_word(&devnet, token, allowance(&s.unapproved_account)).await,
            U256::ZERO
        );
    }
    let balance = call_word(&devnet, &s.plain_asset, format!("0x70a08231{}", word(payer))).await;
    assert_eq!(
        balance,
        U256::from(1_000_000u64) * U256::from(10u64).pow(U256::from(18))
    );
    let (unapproved, _) = devnet.account(x402_gateway::tools::devnet::UNAPPROVED_ACCOUNT - 1);
    assert_eq!(unapproved.to_string(), s.unapproved_account);
}

/// An `exact` requirement for `amount` of the devnet's plain 18-decimal token, paid through Permit2.
fn permit2_requirements(devnet: &Devnet, pay_to: Address, amount: U256) -> Value {
    json!({
        "scheme": "exact",
        "network": devnet.state.network,
        "amount": amount.to_string(),
        "asset": devnet.state.plain_asset,
        "payTo": pay_to.to_string(),
        "maxTimeoutSeconds": 60,
        "extra": {"assetTransferMethod": "permit2"},
    })
}

#[tokio::test(flavor = "multi_thread")]
async fn a_permit2_payment_in_a_plain_token_verifies_settles_once_and_needs_an_approval() {
    use x402_gateway::protocol::permit2::EXACT_PROXY;
    let devnet = Devnet::start(31_337).await;
    let facilitator = Facilitator::start(&devnet, &[]).await;
    let (payer, key) = devnet.account(2);
    let (pay_to, _) = devnet.account(3);
    // 0.0015 of an 18-decimal token.
    let amount = U256::from(1_500_000_000_000_000u64);
    let accepts = permit2_requirements(&devnet, pay_to, amount);
    let challenge = json!({"x402Version": 2, "resource": {"url": "http://api.example/paid", "description": "", "mimeType": "application/json"}, "accepts": [accepts]});
    let payload = python_sign(&challenge, &key);
    assert!(payload["payload"]["permit2Authorization"].is_object(), "{payload}");
    let body = request(&payload, &accepts);

    let (status, verify) = facilitator.post("/verify", &body).await;
    assert_eq!((status, verify["isValid"].as_bool()), (200, Some(true)), "{verify}");
    assert_eq!(verify["payer"].as_str().unwrap().parse::<Address>().unwrap(), payer);
    let (payer_before, payee_before) = (devnet.plain_balance(payer).await, devnet.plain_balance(pay_to).await);
    let (_, settle) = facilitator.post("/settle", &body).await;
    assert_eq!(settle["success"], true, "{settle}");
    let tx = settle["transaction"].clone();
    let receipt = devnet.receipt(settle["transaction"].as_str().unwrap()).await;
    assert_eq!(receipt["status"], "0x1");
    assert_eq!(
        receipt["to"].as_str().unwrap().to_lowercase(),
        EXACT_PROXY.to_string().to_lowercase()
    );
    assert_eq!(devnet.plain_balance(payer).await, payer_before - amount);
    assert_eq!(devnet.plain_balance(pay_to).await, payee_before + amount);

    // Used once: /verify refuses the same payload on its Permit2 nonce, /settle answers the remembered
    // success, and nothing is sent.
    let sent = facilitator.counter("facilitator_transactions_sent_total").await;
    let (_, again) = facilitator.post("/verify", &body).await;
    assert_eq!(again["invalidReason"], "permit2_invalid_nonce", "{again}");
    let (_, again) = facilitator.post("/settle", &body).await;
    assert_eq!(
        (again["success"].clone(), again["transaction"].clone()),
        (json!(true), tx),
        "the same payload again: the remembered success, {again}"
    );
    assert_eq!(facilitator.counter("facilitator_transactions_sent_total").await, sent);
    assert_eq!(devnet.plain_balance(pay_to).await, payee_before + amount);

    // A payer that never approved Permit2: the spec's reason (a resource server answers 412), no transaction.
    let unapproved_key = &devnet.state.accounts[x402_gateway::tools::devnet::UNAPPROVED_ACCOUNT - 1].private_key;
    let payload = python_sign(&challenge, unapproved_key);
    let (_, refused) = facilitator.post("/verify", &request(&payload, &accepts)).await;
    assert_eq!(refused["isValid"], false);
    assert_eq!(refused["invalidReason"], "permit2_allowance_required", "{refused}");
    // A payment made out for someone else is refused for it by name.
    let (other, _) = devnet.account(4);
    let (_, wrong) = facilitator
        .post(
            "/verify",
            &request(
                &python_sign(&challenge, &key),
                &permit2_requirements(&devnet, other, amount),
            ),
        )
        .await;
    assert_eq!(wrong["invalidReason"], "invalid_permit2_recipient_mismatch", "{wrong}");
    assert_eq!(facilitator.counter("facilitator_transactions_sent_total").await, sent);
}

/// An `upto` requirement of at most `amount` of the devnet's 6-decimal token, settled by `facilitator`.
fn upto_requirements(devnet: &Devnet, pay_to: Address, amount: u64, facilitator: &str) -> Value {
    json!({
        "scheme": "upto",
        "network": devnet.state.network,
        "amount": amount.to_string(),
        "asset": devnet.state.asset,
        "payTo": pay_to.to_string(),
        "maxTimeoutSeconds": 60,
        "extra": {"assetTransferMethod": "permit2", "facilitatorAddress": facilitator},
    })
}

#[tokio::test(flavor = "multi_thread")]
async fn an_upto_payment_settles_the_charge_never_above_the_ceiling_and_only_by_its_facilitator() {
    use x402_gateway::protocol::permit2::UPTO_PROXY;
    let devnet = Devnet::start(31_337).await;
    let facilitator = Facilitator::start(&devnet, &[]).await;
    let own: PrivateKeySigner = devnet.state.facilitator_private_key.parse().unwrap();
    let own = own.address().to_string();
    let (payer, key) = devnet.account(2);
    let (pay_to, _) = devnet.account(3);
    let sign = |accepts: &Value| {
        let challenge = json!({"x402Version": 2, "resource": {"url": "http://api.example/ai", "description": "", "mimeType": "application/json"}, "accepts": [accepts]});
        python_sign(&challenge, &key)
    };
    let at = |accepts: &Value, charge: u64| {
        let mut r = accepts.clone();
        r["amount"] = json!(charge.to_string());
        r
    };
    let accepts = upto_requirements(&devnet, pay_to, 10_000, &own);
    let payload = sign(&accepts);
    let (_, verify) = facilitator.post("/verify", &request(&payload, &accepts)).await;
    assert_eq!(verify["isValid"], true, "{verify}");

    // Asked to settle more than the payer signed: refused by name, nothing sent.
    let sent = facilitator.counter("facilitator_transactions_sent_total").await;
    let (_, over) = facilitator
        .post("/settle", &request(&payload, &at(&accepts, 10_001)))
        .await;
    assert_eq!(
        over["errorReason"], "invalid_upto_evm_payload_settlement_exceeds_amount",
        "{over}"
    );
    // Zero: success, no transaction, the answer says 0.
    let (_, zero) = facilitator.post("/settle", &request(&payload, &at(&accepts, 0))).await;
    assert_eq!(
        (
            zero["success"].clone(),
            zero["transaction"].clone(),
            zero["amount"].clone()
        ),
        (json!(true), json!(""), json!("0")),
        "{zero}"
    );
    assert_eq!(facilitator.counter("facilitator_transactions_sent_total").await, sent);

    // The charge: exactly that moves, through the upto proxy.
    let before = (devnet.balance(payer).await, devnet.balance(pay_to).await);
    let (_, settled) = facilitator
        .post("/settle", &request(&payload, &at(&accepts, 4321)))
        .await;
    assert_eq!(
        (settled["success"].clone(), settled["amount"].clone()),
        (json!(true), json!("4321")),
        "{settled}"
    );
    let receipt = devnet.receipt(settled["transaction"].as_str().unwrap()).await;
    assert_eq!(
        receipt["to"].as_str().unwrap().to_lowercase(),
        UPTO_PROXY.to_string().to_lowercase()
    );
    assert_eq!(devnet.balance(payer).await, before.0 - U256::from(4321));
    assert_eq!(devnet.balance(pay_to).await, before.1 + U256::from(4321));

    // A payment naming another facilitator is not ours to settle (the proxy would refuse our sender).
    let (other, _) = devnet.account(5);
    let theirs = upto_requirements(&devnet, pay_to, 10_000, &other.to_string());
    let (_, refused) = facilitator.post("/verify", &request(&sign(&theirs), &theirs)).await;
    assert_eq!(refused["invalidReason"], "upto_facilitator_mismatch", "{refused}");
}

/// Our facilitator's `batch-settlement` scheme, driven by the official Python SDK as its resource server
/// and channel manager drive a facilitator (`tests/clients/batch_facilitator.py`, which checks each
/// balance on chain): one deposit, vouchers verified against the channel, a claim, a settle to the
/// receiver and a refund of the rest; four transactions in all, the repeated deposit sending none.
#[tokio::test(flavor = "multi_thread")]
async fn batch_settlement_deposit_claim_settle_and_refund_move_exactly_what_the_sdk_asks() {
    let devnet = Devnet::start(31_337).await;
    let facilitator = Facilitator::start(&devnet, &[]).await;
    let (_, payer_key) = devnet.account(0);
    let (receiver, _) = devnet.account(1);
    let (_, authorizer_key) = devnet.account(2);
    let script = support::repo().join("tests/clients/batch_facilitator.py");
    let (ok, text) = support::output(
        std::process::Command::new(support::python())
            .arg(script)
            .env("RPC_URL", &devnet.state.rpc_url)
            .env("FACILITATOR_URL", &facilitator.url)
            .env("TOKEN", &devnet.state.asset)
            .env("PAYER_KEY", &payer_key)
            .env("RECEIVER", receiver.to_string())
            .env("AUTHORIZER_KEY", &authorizer_key),
    );
    assert!(ok && text.contains("all checks passed"), "{text}");
    assert!(!text.lines().any(|l| l.starts_with("FAIL")), "{text}");
    assert_eq!(
        facilitator.counter("facilitator_transactions_sent_total").await,
        4,
        "{text}"
    );
}
