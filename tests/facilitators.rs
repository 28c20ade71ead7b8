//! More than one facilitator, and facilitators that want a signed token per call (Coinbase CDP): the
//! second verifies and settles when the first is down, a payment is never settled through two, and every
//! call to a CDP facilitator carries a fresh token that verifies under the key's public half.

mod support;

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex};

use alloy::primitives::U256;
use aws_lc_rs::signature::{Ed25519KeyPair, KeyPair, UnparsedPublicKey, ED25519};
use axum::body::Bytes;
use axum::http::{HeaderMap, Method, StatusCode, Uri};
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use base64::Engine;
use serde_json::{json, Value};
use support::{decode_header, encode_header, free_port, get, now, python_sign, Gateway, Stack};

const PRICE: u64 = 1000;

/// The stack's price table with `section` in place of its one `facilitator:`.
fn with_facilitators(stack: &Stack, section: &str) -> String {
    let url = &stack.facilitator.url;
    let table = stack.table("");
    let one = format!("facilitator:\n  url: \"{url}\"\n  timeout: 20s\n");
    assert!(table.contains(&one));
    table.replace(&one, section)
}

/// Pays `path` once with the official Python client's signature; the response and the payment header.
async fn pay(stack: &Stack, gateway: &Gateway, path: &str, account: usize) -> (reqwest::Response, String) {
    let (_, key) = stack.devnet.account(account);
    let challenge = get(&format!("{}{path}", gateway.url), &[]).await;
    assert_eq!(challenge.status(), 402);
    let required = decode_header(challenge.headers()["payment-required"].to_str().unwrap());
    let header = encode_header(&python_sign(&required, &key));
    (
        get(&format!("{}{path}", gateway.url), &[("payment-signature", &header)]).await,
        header,
    )
}

/// A paid 200 whose receipt names a mined, successful transaction.
async fn assert_settled(stack: &Stack, resp: reqwest::Response) -> String {
    assert_eq!(resp.status(), 200);
    let receipt = decode_header(resp.headers()["payment-response"].to_str().unwrap());
    assert_eq!(receipt["success"], true, "{receipt}");
    let tx = receipt["transaction"].as_str().unwrap().to_owned();
    assert_eq!(stack.devnet.receipt(&tx).await["status"], "0x1");
    tx
}

#[tokio::test(flavor = "multi_thread")]
async fn the_second_facilitator_verifies_and_settles_when_the_first_is_down() {
    let stack = Stack::start(31_337, "").await;
    let payee = stack.devnet.balance(stack.pay_to).await;
    let calls = stack.facilitator_calls().await;
    // First unreachable (the health check marks it down at once); then one that passes its health checks
    // but breaks every /verify and /settle, so each payment is failed over by the request itself.
    let dead = format!("http://127.0.0.1:{}", free_port());
    let (broken, broken_calls) = faulty_facilitator(stack.facilitator.url.clone(), &["/verify", "/settle"]).await;
    let mut paid = 0;
    // `verify: local` payments go to the first facilitator up and are settled there, never failed over:
    // with the unreachable one marked down by the first health check, that is the second.
    for (first, paths, down_at_start) in [
        (dead, &["/paid/failover", "/local/failover"][..], true),
        (broken, &["/paid/failover"][..], false),
    ] {
        let section = format!(
            "facilitators:\n  - url: \"{first}\"\n    timeout: 2s\n  - url: \"{}\"\n    timeout: 20s\n",
            stack.facilitator.url
        );
        let gateway = Gateway::start(&with_facilitators(&stack, &section)).await;
        // The first health check runs as the gateway starts: wait until it has found the dead one down.
        if down_at_start {
            support::wait_until(
                "the dead facilitator marked down",
                std::time::Duration::from_secs(30),
                || gateway.log().contains("facilitator is down"),
            )
            .await;
        }
        for path in paths {
            paid += 1;
            let (resp, _) = pay(&stack, &gateway, path, paid).await;
            assert_settled(&stack, resp).await;
            assert_eq!(
                stack.devnet.balance(stack.pay_to).await,
                payee + U256::from(paid as u64 * PRICE)
            );
        }
    }
    let (verify, settle, sent) = stack.facilitator_calls().await;
    // Two `verify: remote` payments verified by the second; all three settled by it.
    assert_eq!((verify - calls.0, settle - calls.1, sent - calls.2), (2, 3, 3));
    let broken_calls = broken_calls.lock().unwrap();
    assert_eq!(
        broken_calls.get("/verify"),
        Some(&1),
        "the broken one was asked first, once"
    );
    assert_eq!(
        broken_calls.get("/settle"),
        None,
        "and never asked to settle what it did not verify"
    );
}

/// A facilitator stand-in that injects faults: it answers the calls to `breaks` with a broken 500, as if
/// it crashed mid-call, passes every other call on to `real`, and counts calls by path.
async fn faulty_facilitator(
    real: String,
    breaks: &'static [&'static str],
) -> (String, Arc<Mutex<HashMap<String, u64>>>) {
    let calls = Arc::new(Mutex::new(HashMap::new()));
    let seen = calls.clone();
    let client = reqwest::Client::new();
    let app = axum::Router::new().fallback(move |method: Method, uri: Uri, body: Bytes| {
        let (client, real, seen) = (client.clone(), real.clone(), seen.clone());
        async move {
            *seen.lock().unwrap().entry(uri.path().to_owned()).or_insert(0) += 1;
            if breaks.contains(&uri.path()) {
                return (StatusCode::INTERNAL_SERVER_ERROR, "<html>crashed</html>".to_owned());
            }
            forward(&client, &real, method, &uri, body).await
        }
    });
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await });
    (url, calls)
}

#[tokio::test(flavor = "multi_thread")]
async fn a_payment_is_settled_only_by_the_facilitator_that_verified_it() {
    let stack = Stack::start(31_337, "").await;
    // The first breaks /verify (so the second verifies), the second breaks /settle: the outcome is
    // unknown, and the payment may only ever be settled again through the second.
    let real = stack.facilitator.url.clone();
    let (first, first_calls) = faulty_facilitator(real.clone(), &["/verify", "/settle"]).await;
    let (second, second_calls) = faulty_facilitator(real, &["/settle"]).await;
    let section = format!("facilitators:\n  - url: \"{first}\"\n  - url: \"{second}\"\n");
    let gateway = Gateway::start(&with_facilitators(&stack, &section)).await;
    let (payer, _) = stack.devnet.account(4);
    let (payer_before, payee_before) = (
        stack.devnet.balance(payer).await,
        stack.devnet.balance(stack.pay_to).await,
    );
    let (_, settled_before, _) = stack.facilitator_calls().await;

    let (resp, header) = pay(&stack, &gateway, "/paid/once", 4).await;
    assert_eq!(resp.status(), 502, "the settle broke off: outcome unknown");
    assert!(!resp.text().await.unwrap().contains("served_by"), "no upstream byte");
    // The same payment again: reconciled through the facilitator that verified it, never the other.
    let again = get(&format!("{}/paid/once", gateway.url), &[("payment-signature", &header)]).await;
    assert!(again.status().is_server_error(), "{}", again.status());
    assert_eq!(first_calls.lock().unwrap().get("/verify"), Some(&1));
    assert_eq!(
        first_calls.lock().unwrap().get("/settle"),
        None,
        "the first never settles it"
    );
    assert_eq!(second_calls.lock().unwrap().get("/verify"), Some(&1));
    assert_eq!(
        second_calls.lock().unwrap().get("/settle"),
        Some(&2),
        "both settle calls went to the verifying facilitator"
    );
    let (_, settled_after, _) = stack.facilitator_calls().await;
    assert_eq!(settled_after, settled_before, "the real facilitator never settled it");
    assert_eq!(stack.devnet.balance(payer).await, payer_before);
    assert_eq!(stack.devnet.balance(stack.pay_to).await, payee_before);
}

/// Passes a stand-in's call on to our real facilitator at `real`, and its answer back.
async fn forward(client: &reqwest::Client, real: &str, method: Method, uri: &Uri, body: Bytes) -> (StatusCode, String) {
    let r = client
        .request(method, format!("{real}{}", uri.path()))
        .header("content-type", "application/json")
        .body(body)
        .send()
        .await
        .unwrap();
    (
        StatusCode::from_u16(r.status().as_u16()).unwrap(),
        r.text().await.unwrap(),
    )
}

/// What the CDP stand-in saw.
#[derive(Default)]
struct Seen {
    valid: u64,
    refused: Vec<String>,
    nonces: HashSet<String>,
    uris: Vec<String>,
}

/// A test stand-in for CDP's API gateway (not CDP): it checks each call's JWT as CDP documents it
/// (EdDSA under `public_key`, `kid`/`sub` the key id, `iss` cdp, two minutes' life, `uris` naming this very
/// call, a nonce never seen before), answers 401 to anything else, and passes good calls on to `real`.
async fn cdp_standin(real: String, key_id: &'static str, public_key: Vec<u8>) -> (String, Arc<Mutex<Seen>>) {
    let seen = Arc::new(Mutex::new(Seen::default()));
    let state = seen.clone();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let client = reqwest::Client::new();
    let app = axum::Router::new().fallback(move |method: Method, uri: Uri, headers: HeaderMap, body: Bytes| {
        let (client, real, state, public_key) = (client.clone(), real.clone(), state.clone(), public_key.clone());
        async move {
            let call = format!("{method} {addr}{}", uri.path());
            let checked = headers
                .get("authorization")
                .and_then(|v| v.to_str().ok())
                .and_then(|v| v.strip_prefix("Bearer "))
                .ok_or_else(|| "no bearer token".to_owned())
                .and_then(|t| check_jwt(t, key_id, &public_key, &call));
            let accepted = {
                let mut seen = state.lock().unwrap();
                seen.uris.push(call.clone());
                let refusal = match checked {
                    Ok(nonce) => (!seen.nonces.insert(nonce)).then(|| format!("{call}: nonce reused")),
                    Err(e) => Some(format!("{call}: {e}")),
                };
                let accepted = refusal.is_none();
                match refusal {
                    None => seen.valid += 1,
                    Some(r) => seen.refused.push(r),
                }
                accepted
            };
            if !accepted {
                return (StatusCode::UNAUTHORIZED, json!({"error": "unauthorized"}).to_string());
            }
            forward(&client, &real, method, &uri, body).await
        }
    });
    tokio::spawn(async move { axum::serve(listener, app).await });
    (format!("http://{addr}"), seen)
}

/// The token's nonce if it is one CDP would take for `call`.
fn check_jwt(token: &str, key_id: &str, public_key: &[u8], call: &str) -> Result<String, String> {
    let parts: Vec<&str> = token.split('.').collect();
    let [h, c, s] = parts[..] else {
        return Err("not three parts".into());
    };
    let sig = URL_SAFE_NO_PAD.decode(s).map_err(|e| e.to_string())?;
    UnparsedPublicKey::new(&ED25519, public_key)
        .verify(format!("{h}.{c}").as_bytes(), &sig)
        .map_err(|_| "signature does not verify".to_owned())?;
    let part = |p: &str| -> Result<Value, String> {
        serde_json::from_slice(&URL_SAFE_NO_PAD.decode(p).map_err(|e| e.to_string())?).map_err(|e| e.to_string())
    };
    let (header, claims) = (part(h)?, part(c)?);
    let t = now();
    let iat = claims["iat"].as_u64().unwrap_or(0);
    let fields_ok = header["alg"] == "EdDSA"
        && header["typ"] == "JWT"
        && header["kid"] == key_id
        && claims["sub"] == key_id
        && claims["iss"] == "cdp"
        && claims["nbf"].as_u64() == Some(iat)
        && claims["exp"].as_u64() == Some(iat + 120)
        && iat <= t + 1
        && t <= iat + 120
        && claims["uris"] == json!([call]);
    if !fields_ok {
        return Err(format!("wrong fields: {header} {claims}"));
    }
    header["nonce"]
        .as_str()
        .map(str::to_owned)
        .ok_or_else(|| "no nonce".into())
}

/// A fresh Ed25519 key: its CDP secret (base64 of seed ‖ public key) and its public half.
fn cdp_key(seed_byte: u8) -> (String, Vec<u8>) {
    let seed = [seed_byte; 32];
    let public = Ed25519KeyPair::from_seed_unchecked(&seed)
        .unwrap()
        .public_key()
        .as_ref()
        .to_vec();
    (STANDARD.encode([&seed[..], &public].concat()), public)
}

#[tokio::test(flavor = "multi_thread")]
async fn every_call_to_a_cdp_facilitator_carries_a_fresh_valid_token_and_a_wrong_key_is_reported() {
    const KEY_ID: &str = "organizations/test/apiKeys/gateway";
    let stack = Stack::start(31_337, "").await;
    let (secret, public) = cdp_key(11);
    let (cdp, seen) = cdp_standin(stack.facilitator.url.clone(), KEY_ID, public).await;
    let secrets = tempfile::tempdir().unwrap();
    let file = secrets.path().join("cdp-secret");
    std::fs::write(&file, &secret).unwrap();
    let section = format!(
        "facilitator:\n  url: \"{cdp}\"\n  auth: cdp\n  key_id: \"{KEY_ID}\"\n  key_secret_file: \"{}\"\n",
        file.display()
    );
    let gateway = Gateway::start(&with_facilitators(&stack, &section)).await;
    let payee = stack.devnet.balance(stack.pay_to).await;
    let (resp, _) = pay(&stack, &gateway, "/paid/cdp", 5).await;
    assert_settled(&stack, resp).await;
    assert_eq!(stack.devnet.balance(stack.pay_to).await, payee + U256::from(PRICE));
    {
        let seen = seen.lock().unwrap();
        assert!(seen.refused.is_empty(), "{:?}", seen.refused);
        let calls: HashSet<&str> = seen.uris.iter().map(|u| u.split('/').next_back().unwrap()).collect();
        assert!(
            calls.contains("verify") && calls.contains("settle") && calls.contains("supported"),
            "{:?}",
            seen.uris
        );
        assert_eq!(seen.valid as usize, seen.uris.len(), "one fresh token per call");
    }

    // The same key id with another key: refused, and the gateway says why without showing either secret.
    let (wrong, _) = cdp_key(12);
    std::fs::write(&file, &wrong).unwrap();
    let gateway = Gateway::start(&with_facilitators(&stack, &section)).await;
    let (resp, _) = pay(&stack, &gateway, "/paid/cdp", 6).await;
    assert_eq!(resp.status(), 503);
    let body: Value = resp.json().await.unwrap();
    assert_eq!(body["reason"], "facilitator_unauthorized", "{body}");
    assert_eq!(stack.devnet.balance(stack.pay_to).await, payee + U256::from(PRICE));
    let log =
        std::fs::read_to_string(support::repo().join(format!("target/test-logs/{}.log", gateway.proc.name))).unwrap();
    assert!(log.contains("refused the gateway's credentials (HTTP 401)"), "{log}");
    assert!(!log.contains(&wrong) && !log.contains(&secret));
}

#[tokio::test(flavor = "multi_thread")]
async fn an_upto_payment_goes_only_to_the_facilitator_it_names_even_when_another_is_first() {
    use alloy::signers::local::PrivateKeySigner;
    let stack = Stack::start(31_337, "").await;
    // The first is healthy and would verify anything; only the second settles from the address upto
    // payers sign, so only it may see the payment.
    let (first, first_calls) = faulty_facilitator(stack.facilitator.url.clone(), &[]).await;
    let settler: PrivateKeySigner = stack.devnet.state.facilitator_private_key.parse().unwrap();
    let section = format!(
        "facilitators:\n  - url: \"{first}\"\n  - url: \"{}\"\n    address: \"{}\"\n",
        stack.facilitator.url,
        settler.address()
    );
    let table = format!(
        "{}  - path: /metered/**\n    price: {{upto: \"$0.01\"}}\n",
        with_facilitators(&stack, &section)
    );
    let gateway = Gateway::start(&table).await;
    let payee = stack.devnet.balance(stack.pay_to).await;
    let (resp, _) = pay(&stack, &gateway, "/metered/one", 6).await;
    assert_settled(&stack, resp).await;
    // No report from the upstream: the maximum, $0.01.
    assert_eq!(stack.devnet.balance(stack.pay_to).await, payee + U256::from(10 * PRICE));
    let first_calls = first_calls.lock().unwrap();
    assert_eq!(
        (first_calls.get("/verify"), first_calls.get("/settle")),
        (None, None),
        "the facilitator the payment does not name was asked: {first_calls:?}"
    );
}
