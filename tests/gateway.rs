//! The gateway end to end: real anvil, real token, our facilitator, the echo upstream, and the official
//! x402 clients paying through it.

mod support;

use alloy::primitives::{Address, U256};
use alloy::signers::local::PrivateKeySigner;
use serde_json::{json, Value};
use support::{decode_header, encode_header, get, node, python, python_sign, run_client, Stack};
use x402_gateway::protocol::exact::{Authorization, ExactPayload, Requirement, Scheme};

const PRICE: u64 = 1000;

/// Asserts a paid response: 200, a receipt whose transaction is on chain, and exactly PRICE moved.
async fn assert_paid(stack: &Stack, out: &Value, payer: Address, payer_before: U256, payee_before: U256, header: &str) {
    assert_eq!(out["status"], 200, "{out}");
    assert_eq!(
        out["payment_response_header"].as_str().map(str::to_ascii_uppercase),
        Some(header.to_owned()),
        "{out}"
    );
    let receipt = &out["payment_response"];
    assert_eq!(receipt["success"], true, "{out}");
    let tx = receipt["transaction"].as_str().unwrap();
    assert_eq!(stack.devnet.receipt(tx).await["status"], "0x1");
    assert_eq!(stack.devnet.balance(payer).await, payer_before - U256::from(PRICE));
    assert_eq!(
        stack.devnet.balance(stack.pay_to).await,
        payee_before + U256::from(PRICE)
    );
    // Invariant 4: the upstream saw no payment header.
    let echoed: Value = serde_json::from_str(out["body"].as_str().unwrap()).unwrap();
    let headers = echoed["headers"].as_object().unwrap();
    assert!(
        !headers.contains_key("payment-signature") && !headers.contains_key("x-payment"),
        "{headers:?}"
    );
}

/// Signs an authorization directly, for shapes the official clients never produce.
fn sign(stack: &Stack, key: &str, tweak: impl Fn(&mut Requirement, &mut Authorization)) -> ExactPayload {
    let signer: PrivateKeySigner = key.parse().unwrap();
    let now = support::now();
    let mut req = Requirement {
        scheme: Scheme::Exact,
        network: x402_gateway::protocol::network::Network::new(stack.devnet.state.chain_id),
        asset: stack.devnet.asset(),
        pay_to: stack.pay_to,
        amount: U256::from(PRICE),
        max_timeout_seconds: 120,
        eip712_name: stack.devnet.state.asset_name.clone(),
        eip712_version: stack.devnet.state.asset_version.clone(),
        transfer: Default::default(),
    };
    let mut auth = x402_gateway::tools::pay::authorize(&signer, &req, now - 600, now + 120);
    tweak(&mut req, &mut auth);
    x402_gateway::tools::pay::sign(&signer, &req, auth).unwrap()
}

#[tokio::test(flavor = "multi_thread")]
async fn free_route_passes_untouched_and_unmatched_follows_default() {
    let stack = Stack::start(31_337, "").await;
    let direct = get(&format!("{}/free/a?b=c", stack.upstream.url), &[("x-test", "1")]).await;
    let via = get(&format!("{}/free/a?b=c", stack.gateway.url), &[("x-test", "1")]).await;
    assert_eq!(via.status(), direct.status());
    assert_eq!(via.headers().get("x-upstream").unwrap(), "echo");
    assert_eq!(via.headers().get("content-type"), direct.headers().get("content-type"));
    let (d, v): (Value, Value) = (direct.json().await.unwrap(), via.json().await.unwrap());
    assert_eq!(
        (v["path"].clone(), v["query"].clone(), v["headers"]["x-test"].clone()),
        (d["path"].clone(), d["query"].clone(), d["headers"]["x-test"].clone())
    );
    // Upstream status and body pass through on free routes too.
    let failing = get(&format!("{}/free/x", stack.gateway.url), &[("x-echo-status", "503")]).await;
    assert_eq!(failing.status(), 503);
    // `default: pass`: unmatched requests reach the upstream for free.
    let unmatched = get(&format!("{}/elsewhere", stack.gateway.url), &[]).await;
    assert_eq!(unmatched.status(), 200);
    assert_eq!(unmatched.json::<Value>().await.unwrap()["path"], "/elsewhere");
    // `default: deny`.
    let deny = stack.gateway_with(&stack.facilitator.url, "default: deny").await;
    let r = get(&format!("{}/elsewhere", deny.url), &[]).await;
    assert_eq!(r.status(), 404);
    assert!(r.json::<Value>().await.unwrap()["error"].as_str().is_some());
}

#[tokio::test(flavor = "multi_thread")]
async fn challenge_header_and_body_decode_to_the_configured_offer() {
    // Chain 84532 has a v1 name, so the v1 body lists the offer too.
    let stack = Stack::start(84_532, "").await;
    let url = format!("{}/paid/item?id=7", stack.gateway.url);
    let resp = get(&url, &[]).await;
    assert_eq!(resp.status(), 402);
    assert_eq!(resp.headers().get("cache-control").unwrap(), "no-store");
    let header = decode_header(resp.headers().get("payment-required").unwrap().to_str().unwrap());
    let want = json!({
        "scheme": "exact", "network": "eip155:84532", "amount": "1000", "asset": stack.devnet.asset().to_string(),
        "payTo": stack.pay_to.to_string(), "maxTimeoutSeconds": 120,
        "extra": {"name": stack.devnet.state.asset_name, "version": stack.devnet.state.asset_version},
    });
    assert_eq!(header["x402Version"], 2);
    assert_eq!(header["accepts"], json!([want]));
    assert_eq!(
        header["resource"],
        json!({"url": url, "description": "test resource", "mimeType": "application/json"})
    );
    let body: Value = resp.json().await.unwrap();
    assert_eq!(body["x402Version"], 1);
    assert_eq!(body["error"], "X-PAYMENT header is required");
    let v1 = &body["accepts"][0];
    assert_eq!(
        (
            v1["network"].as_str(),
            v1["maxAmountRequired"].as_str(),
            v1["resource"].as_str()
        ),
        (Some("base-sepolia"), Some("1000"), Some(url.as_str()))
    );
    assert_eq!(v1["payTo"], want["payTo"]);
    assert_eq!(v1["mimeType"], "application/json");

    // HEAD: the same status and headers, no body.
    let head = reqwest::Client::new().head(&url).send().await.unwrap();
    assert_eq!(head.status(), 402);
    assert_eq!(
        decode_header(head.headers().get("payment-required").unwrap().to_str().unwrap())["accepts"],
        json!([want])
    );
    assert!(head.bytes().await.unwrap().is_empty());

    // Browsers get a page, and the header still.
    let page = get(
        &url,
        &[
            ("accept", "text/html,application/xhtml+xml"),
            ("user-agent", "Mozilla/5.0"),
        ],
    )
    .await;
    assert_eq!(page.status(), 402);
    assert!(page
        .headers()
        .get("content-type")
        .unwrap()
        .to_str()
        .unwrap()
        .starts_with("text/html"));
    assert!(page.headers().contains_key("payment-required"));
    let html = page.text().await.unwrap();
    assert!(
        html.contains("0.001 USDC") && html.contains(&stack.pay_to.to_string()),
        "{html}"
    );

    // CORS preflight lets browser clients send and read the payment headers.
    let pre = reqwest::Client::new()
        .request(reqwest::Method::OPTIONS, &url)
        .header("origin", "https://app.example")
        .header("access-control-request-method", "GET")
        .header("access-control-request-headers", "payment-signature")
        .send()
        .await
        .unwrap();
    assert_eq!(pre.status(), 204);
    let allow = pre
        .headers()
        .get("access-control-allow-headers")
        .unwrap()
        .to_str()
        .unwrap()
        .to_ascii_uppercase();
    assert!(
        allow.contains("PAYMENT-SIGNATURE") && allow.contains("X-PAYMENT"),
        "{allow}"
    );
    let cors = get(&url, &[("origin", "https://app.example")]).await;
    assert!(cors
        .headers()
        .get("access-control-expose-headers")
        .unwrap()
        .to_str()
        .unwrap()
        .contains("PAYMENT-REQUIRED"));
}

#[tokio::test(flavor = "multi_thread")]
async fn official_python_client_pays_and_a_replay_is_refused_without_a_facilitator_call() {
    let stack = Stack::start(31_337, "").await;
    let (payer, key) = stack.devnet.account(0);
    let (pb, eb) = (
        stack.devnet.balance(payer).await,
        stack.devnet.balance(stack.pay_to).await,
    );
    let url = format!("{}/paid/python", stack.gateway.url);
    let out = run_client(
        &python(),
        "pay_python.py",
        &[("URL", &url), ("PRIVATE_KEY", &key)],
        None,
    );
    assert_paid(&stack, &out, payer, pb, eb, "PAYMENT-RESPONSE").await;

    // The same PAYMENT-SIGNATURE again: 409 naming the settling transaction (not a 402: the payer must not
    // be asked to pay again), no facilitator call.
    let calls = stack.facilitator_calls().await;
    let replay = get(&url, &[("payment-signature", out["payment_header"].as_str().unwrap())]).await;
    assert_eq!(replay.status(), 409);
    assert!(!replay.headers().contains_key("payment-required"));
    let receipt = decode_header(replay.headers().get("payment-response").unwrap().to_str().unwrap());
    assert_eq!(receipt["success"], false);
    assert_eq!(receipt["transaction"], out["payment_response"]["transaction"]);
    let body: Value = replay.json().await.unwrap();
    assert_eq!(body["error"], "payment_already_used", "{body}");
    assert_eq!(body["transaction"], out["payment_response"]["transaction"]);
    assert_eq!(stack.facilitator_calls().await, calls);
    assert_eq!(stack.devnet.balance(payer).await, pb - U256::from(PRICE));
}

#[tokio::test(flavor = "multi_thread")]
async fn official_typescript_v2_client_pays() {
    let stack = Stack::start(31_337, "").await;
    let (payer, key) = stack.devnet.account(1);
    let (pb, eb) = (
        stack.devnet.balance(payer).await,
        stack.devnet.balance(stack.pay_to).await,
    );
    let url = format!("{}/paid/ts", stack.gateway.url);
    let out = run_client(&node(), "pay_v2.mjs", &[("URL", &url), ("PRIVATE_KEY", &key)], None);
    assert_eq!(
        out["payment_header_name"]
            .as_str()
            .map(str::to_ascii_uppercase)
            .as_deref(),
        Some("PAYMENT-SIGNATURE"),
        "{out}"
    );
    assert_paid(&stack, &out, payer, pb, eb, "PAYMENT-RESPONSE").await;
}

#[tokio::test(flavor = "multi_thread")]
async fn legacy_v1_client_pays_with_x_payment() {
    // The legacy client knows only its own network names: run the chain as base-sepolia.
    let stack = Stack::start(84_532, "").await;
    let (payer, key) = stack.devnet.account(2);
    let (pb, eb) = (
        stack.devnet.balance(payer).await,
        stack.devnet.balance(stack.pay_to).await,
    );
    let url = format!("{}/paid/legacy", stack.gateway.url);
    let out = run_client(
        &node(),
        "pay_v1.mjs",
        &[("URL", &url), ("PRIVATE_KEY", &key), ("NETWORK", "base-sepolia")],
        None,
    );
    assert_paid(&stack, &out, payer, pb, eb, "X-PAYMENT-RESPONSE").await;
    assert_eq!(out["payment_response"]["network"], "base-sepolia");

    // Our own `pay` tool on the same v1 offer, with a method, a header and a body.
    let (_, key) = stack.devnet.account(3);
    let before = stack.devnet.balance(stack.pay_to).await;
    let cli = std::process::Command::new(support::bin())
        .args([
            "pay",
            "--v1",
            "-X",
            "POST",
            "-H",
            "x-note: hello",
            "-d",
            "the body",
            &url,
        ])
        .env("X402_PRIVATE_KEY", &key)
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&cli.stdout);
    assert!(cli.status.success(), "{text}{}", String::from_utf8_lossy(&cli.stderr));
    assert!(
        text.contains("(x402 v1)") && text.contains("status 200") && text.contains("\"success\":true"),
        "{text}"
    );
    let echoed: Value = serde_json::from_str(text.lines().last().unwrap()).unwrap();
    assert_eq!(
        (
            echoed["method"].as_str(),
            echoed["body"].as_str(),
            echoed["headers"]["x-note"].as_str()
        ),
        (Some("POST"), Some("the body"), Some("hello"))
    );
    assert!(echoed["headers"].get("x-payment").is_none());
    assert_eq!(stack.devnet.balance(stack.pay_to).await, before + U256::from(PRICE));
}

#[tokio::test(flavor = "multi_thread")]
async fn eight_concurrent_requests_with_one_payment_get_one_response_and_one_settlement() {
    let stack = Stack::start(31_337, "").await;
    let (payer, key) = stack.devnet.account(3);
    let before = stack.devnet.balance(payer).await;
    let url = format!("{}/paid/race", stack.gateway.url);
    let header = encode_header(&python_sign(&stack.challenge("/paid/race").await, &key));
    let tasks: Vec<_> = (0..8)
        .map(|_| {
            let (url, header) = (url.clone(), header.clone());
            tokio::spawn(async move { get(&url, &[("payment-signature", &header)]).await.status().as_u16() })
        })
        .collect();
    let mut statuses = Vec::new();
    for t in tasks {
        statuses.push(t.await.unwrap());
    }
    statuses.sort_unstable();
    // One is served. The others are refused without content and without a second settlement: 402 while the
    // winner holds the payment in flight, 504 (in doubt, do not pay again) while its settlement runs, or
    // 409 (already used, naming the transaction) once it settled.
    assert_eq!(statuses.iter().filter(|&&s| s == 200).count(), 1, "{statuses:?}");
    assert!(
        statuses.iter().all(|&s| matches!(s, 200 | 402 | 409 | 504)),
        "{statuses:?}"
    );
    assert_eq!(
        stack.facilitator_calls().await.2,
        1,
        "exactly one settlement transaction"
    );
    assert_eq!(stack.devnet.balance(payer).await, before - U256::from(PRICE));
}

#[tokio::test(flavor = "multi_thread")]
async fn upstream_error_is_passed_through_unsettled_and_the_payment_then_succeeds() {
    let stack = Stack::start(31_337, "").await;
    let (payer, key) = stack.devnet.account(4);
    let before = stack.devnet.balance(payer).await;
    let url = format!("{}/paid/flaky", stack.gateway.url);
    let header = encode_header(&python_sign(&stack.challenge("/paid/flaky").await, &key));
    let failed = get(&url, &[("payment-signature", &header), ("x-echo-status", "500")]).await;
    assert_eq!(failed.status(), 500);
    assert!(!failed.headers().contains_key("payment-response"));
    assert_eq!(
        failed.json::<Value>().await.unwrap()["served_by"],
        "x402-gateway demo upstream"
    );
    assert_eq!(
        stack.facilitator_calls().await.1,
        0,
        "no settle after an upstream error"
    );
    assert_eq!(stack.devnet.balance(payer).await, before);

    let ok = get(&url, &[("payment-signature", &header)]).await;
    assert_eq!(ok.status(), 200);
    let receipt = decode_header(ok.headers().get("payment-response").unwrap().to_str().unwrap());
    assert_eq!(receipt["success"], true);
    assert!(ok
        .headers()
        .get("cache-control")
        .unwrap()
        .to_str()
        .unwrap()
        .contains("private"));
    assert_eq!(stack.devnet.balance(payer).await, before - U256::from(PRICE));
}

#[tokio::test(flavor = "multi_thread")]
async fn settle_before_puts_the_receipt_on_whatever_the_upstream_answers() {
    let stack = Stack::start(31_337, "").await;
    let (payer, key) = stack.devnet.account(5);
    let before = stack.devnet.balance(payer).await;
    let header = encode_header(&python_sign(&stack.challenge("/before/x").await, &key));
    let resp = get(
        &format!("{}/before/x", stack.gateway.url),
        &[("payment-signature", &header), ("x-echo-status", "500")],
    )
    .await;
    assert_eq!(resp.status(), 500);
    let receipt = decode_header(resp.headers().get("payment-response").unwrap().to_str().unwrap());
    assert_eq!(receipt["success"], true);
    assert_eq!(
        stack.devnet.receipt(receipt["transaction"].as_str().unwrap()).await["status"],
        "0x1"
    );
    assert_eq!(stack.devnet.balance(payer).await, before - U256::from(PRICE));
}

#[tokio::test(flavor = "multi_thread")]
async fn locally_invalid_payments_get_their_reason_and_cost_no_facilitator_call() {
    let stack = Stack::start(31_337, "").await;
    let (_, key) = stack.devnet.account(6);
    let (other, _) = stack.devnet.account(7);
    let challenge = stack.challenge("/paid/bad").await;
    let accepted = challenge["accepts"][0].clone();
    let envelope = |p: ExactPayload, accepted: &Value| {
        encode_header(&json!({"x402Version": 2, "accepted": accepted, "payload": p.to_json()}))
    };
    let mut wrong_asset = accepted.clone();
    wrong_asset["asset"] = json!("0x036CbD53842c5426634e7929541eC2318f3dCF7e");
    let cases = [
        (
            "invalid_exact_evm_payload_authorization_value_mismatch",
            envelope(sign(&stack, &key, |_, a| a.value = U256::from(PRICE - 1)), &accepted),
        ),
        (
            "invalid_exact_evm_recipient_mismatch",
            envelope(
                sign(&stack, &key, |r, a| {
                    r.pay_to = other;
                    a.to = other
                }),
                &accepted,
            ),
        ),
        (
            "No matching payment requirements",
            envelope(sign(&stack, &key, |_, _| {}), &wrong_asset),
        ),
        (
            "invalid_exact_evm_signature",
            envelope(
                sign(&stack, &key, |r, _| r.asset = Address::repeat_byte(0x11)),
                &accepted,
            ),
        ),
        (
            "invalid_exact_evm_payload_authorization_valid_before",
            envelope(
                sign(&stack, &key, |_, a| a.valid_before = U256::from(support::now() - 1)),
                &accepted,
            ),
        ),
        ("invalid_payload", "not base64!".to_owned()),
    ];
    for (want, header) in cases {
        let resp = get(
            &format!("{}/paid/bad", stack.gateway.url),
            &[("payment-signature", &header)],
        )
        .await;
        assert_eq!(resp.status(), 402, "{want}");
        let got = decode_header(resp.headers().get("payment-required").unwrap().to_str().unwrap());
        assert!(
            got["error"].as_str().unwrap().starts_with(want),
            "want {want}, got {got}"
        );
        let body: Value = resp.json().await.unwrap();
        assert!(body["error"].as_str().unwrap().starts_with(want), "{body}");
    }
    assert_eq!(stack.facilitator_calls().await, (0, 0, 0));
}

#[tokio::test(flavor = "multi_thread")]
async fn facilitator_down_means_no_content_and_a_json_reason() {
    let stack = Stack::start(31_337, "").await;
    let (_, key) = stack.devnet.account(6);
    let dead = format!("http://127.0.0.1:{}", support::free_port());
    let gw = stack.gateway_with(&dead, "").await;
    let header = encode_header(&python_sign(&stack.challenge("/paid/x").await, &key));
    let resp = get(&format!("{}/paid/x", gw.url), &[("payment-signature", &header)]).await;
    assert_eq!(resp.status(), 503);
    let body: Value = resp.json().await.unwrap();
    assert_eq!(body["error"], "facilitator_unavailable", "{body}");
    assert!(body.get("served_by").is_none());
}

#[test]
fn check_validates_files_and_points_at_the_error() {
    let dir = tempfile::tempdir().unwrap();
    let good = dir.path().join("good.yaml");
    std::fs::write(&good, "facilitator:\n  url: http://127.0.0.1:4020\nupstreams:\n  default: http://127.0.0.1:3000\npay_to: \"0x3C44CdDdB6a900fa2b585dd299e03d12FA4293BC\"\naccepts: [base]\nroutes:\n  - path: /paid/**\n    methods: [GET]\n    price: \"$0.01\"\n").unwrap();
    let out = std::process::Command::new(support::bin())
        .args(["check", "-c", good.to_str().unwrap()])
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{text}");
    assert!(
        text.contains("GET /paid/**")
            && text.contains("10000 atomic of 0x833589fCD6eDb6E08f4c7C32D4f71b54bdA02913 on eip155:8453")
            && text.contains("settle After"),
        "{text}"
    );

    let cases = [
        ("routes:\n  - path: /a\n    pric: 1\n", "3:5", "unknown field `pric`"),
        ("facilitator:\n  url: http://x\nupstreams:\n  default: http://127.0.0.1:1\naccepts: [base]\npay_to: \"0x3C44CdDdB6a900fa2b585dd299e03d12FA4293BC\"\nroutes:\n  - path: /a\n    price: \"$0.0.1\"\n", "9:5", "routes[0].price"),
        ("facilitator:\n  url: http://x\nupstreams:\n  default: http://127.0.0.1:1\nroutes:\n  - path: /a\n    price: \"$1\"\n    accepts: [eip155:31337]\n    pay_to: \"0x3C44CdDdB6a900fa2b585dd299e03d12FA4293BC\"\n", "8:5", "no built-in stablecoin"),
        ("facilitator:\n  url: http://x\nupstreams:\n  default: http://127.0.0.1:1\npay_to: \"${NO_SUCH_VAR_X402}\"\n", "5:10", "NO_SUCH_VAR_X402 is not set"),
    ];
    for (yaml, at, what) in cases {
        let bad = dir.path().join("bad.yaml");
        std::fs::write(&bad, yaml).unwrap();
        let out = std::process::Command::new(support::bin())
            .args(["check", "-c", bad.to_str().unwrap()])
            .output()
            .unwrap();
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(1), "{err}");
        assert!(
            err.contains(&format!("bad.yaml:{at}:")) && err.contains(what),
            "want {at} {what}: {err}"
        );
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn case_and_spelling_variants_of_a_priced_path_are_priced() {
    let stack = Stack::start(31_337, "").await;
    let gw = &stack.gateway.url;
    // `/paid/**` is priced and `default: pass` proxies unmatched requests for free: every spelling an
    // upstream may serve as /paid/item must be priced.
    for path in [
        "/PAID/item",
        "/%50AID/item",
        "/Paid/item",
        "/paid./item",
        "/paid%20/item",
        "//paid/item",
    ] {
        let resp = get(&format!("{gw}{path}"), &[]).await;
        assert_eq!(resp.status(), 402, "{path}");
        assert!(resp.headers().contains_key("payment-required"), "{path}");
    }
    assert_eq!(
        get(&format!("{gw}/%2570aid/item"), &[]).await.status(),
        400,
        "double encoding"
    );
    // A case variant, once paid, is served and settled like the canonical spelling.
    let (payer, key) = stack.devnet.account(5);
    let before = stack.devnet.balance(payer).await;
    let header = encode_header(&python_sign(&stack.challenge("/PAID/item").await, &key));
    let resp = get(&format!("{gw}/PAID/item"), &[("payment-signature", &header)]).await;
    assert_eq!(resp.status(), 200);
    assert!(resp.headers().contains_key("payment-response"));
    assert_eq!(stack.devnet.balance(payer).await, before - U256::from(PRICE));
    // Free routes match only their own spelling (here `/FREE/x` is unmatched, which `default: pass` proxies).
    let free: Value = get(&format!("{gw}/free/x"), &[]).await.json().await.unwrap();
    assert_eq!(free["path"], "/free/x");

    // `case_sensitive: true` is the opt-out for upstreams known to be strict.
    let strict = stack.gateway_with(&stack.facilitator.url, "case_sensitive: true").await;
    assert_eq!(get(&format!("{}/PAID/item", strict.url), &[]).await.status(), 200);
    assert_eq!(get(&format!("{}/paid/item", strict.url), &[]).await.status(), 402);
}

/// The standard table plus routes that declare the `payment-identifier` extension.
fn with_payment_id_routes(stack: &Stack, extra: &str) -> String {
    format!(
        "{}  - path: /ided/**\n    price: \"$0.001\"\n    payment_identifier: optional\n  - path: /idreq/**\n    price: \"$0.001\"\n    payment_identifier: required\n",
        stack.table(extra)
    )
}

#[tokio::test(flavor = "multi_thread")]
async fn a_payment_identifier_makes_a_retry_get_the_first_answer_and_never_a_second_charge() {
    let stack = Stack::start(31_337, "").await;
    let gw = support::Gateway::start(&with_payment_id_routes(&stack, "payment_identifier_max_body: 2000")).await;
    let (payer, key) = stack.devnet.account(6);
    let before = stack.devnet.balance(payer).await;
    let challenge = |path: &'static str| {
        let url = format!("{}{path}", gw.url);
        async move {
            let r = get(&url, &[]).await;
            assert_eq!(r.status(), 402);
            decode_header(r.headers().get("payment-required").unwrap().to_str().unwrap())
        }
    };
    // The 402 declares the extension as the official SDKs expect it.
    let offer = challenge("/ided/a").await;
    assert_eq!(
        offer["extensions"]["payment-identifier"]["info"],
        json!({"required": false})
    );
    assert_eq!(
        challenge("/idreq/a").await["extensions"]["payment-identifier"]["info"]["required"],
        true
    );
    assert!(stack.challenge("/paid/a").await.get("extensions").is_none());

    // The official Python client attaches an id; paying works as usual.
    let id = "pay_0123456789abcdef_A";
    let signed = support::python_sign_with(&offer, &key, &[("PAYMENT_ID", id)]);
    assert_eq!(signed["extensions"]["payment-identifier"]["info"]["id"], id);
    let header = encode_header(&signed);
    let url = format!("{}/ided/a", gw.url);
    let first = get(&url, &[("payment-signature", &header)]).await;
    assert_eq!(first.status(), 200);
    let receipt = first
        .headers()
        .get("payment-response")
        .unwrap()
        .to_str()
        .unwrap()
        .to_owned();
    let body = first.text().await.unwrap();
    let calls = stack.facilitator_calls().await;
    // The same payment under the same id: the first answer again, byte for byte, with no facilitator call.
    // (The outcome is kept as the first request finishes, just after its last byte: until then, 409 + retry.)
    let again = support::replay_once_kept(&url, &header).await;
    assert_eq!(again.status(), 200);
    assert_eq!(
        again.headers().get("payment-response").unwrap().to_str().unwrap(),
        receipt
    );
    assert_eq!(again.text().await.unwrap(), body);
    assert_eq!(stack.facilitator_calls().await, calls);
    assert_eq!(stack.devnet.balance(payer).await, before - U256::from(PRICE));

    // The same id with a different payment: 409.
    let other = encode_header(&support::python_sign_with(&offer, &key, &[("PAYMENT_ID", id)]));
    let conflict = get(&url, &[("payment-signature", &other)]).await;
    assert_eq!(conflict.status(), 409);
    assert_eq!(
        conflict.json::<Value>().await.unwrap()["error"],
        "payment_identifier_conflict"
    );
    // A hand-built payload whose id breaks the extension's rules: 400.
    let mut bad = signed.clone();
    bad["extensions"]["payment-identifier"]["info"]["id"] = json!("short id!");
    let resp = get(&url, &[("payment-signature", &encode_header(&bad))]).await;
    assert_eq!(resp.status(), 400);
    assert!(resp.text().await.unwrap().contains("16-128 characters"));
    // A required id that is missing: 400, nothing charged.
    let plain = encode_header(&python_sign(&challenge("/idreq/a").await, &key));
    assert_eq!(
        get(&format!("{}/idreq/a", gw.url), &[("payment-signature", &plain)])
            .await
            .status(),
        400
    );
    // The same id while the first request is still in flight: 409 with Retry-After.
    let slow_id = "pay_slow_0123456789abcdef";
    let slow = encode_header(&support::python_sign_with(
        &challenge("/ided/slow").await,
        &key,
        &[("PAYMENT_ID", slow_id)],
    ));
    let slow_url = format!("{}/ided/slow", gw.url);
    let (u, h) = (slow_url.clone(), slow.clone());
    let reached = support::upstream_received(&stack.upstream.url).await;
    let first = tokio::spawn(async move {
        get(&u, &[("payment-signature", &h), ("x-echo-delay-ms", "1500")])
            .await
            .status()
    });
    support::wait_upstream_reached(&stack.upstream.url, reached).await;
    let busy = get(&slow_url, &[("payment-signature", &slow)]).await;
    assert_eq!(busy.status(), 409);
    assert_eq!(busy.headers().get("retry-after").unwrap(), "1");
    assert_eq!(first.await.unwrap(), 200);
    // A response larger than `payment_identifier_max_body` is not kept: its replay names the transaction.
    let big_id = "pay_big_0123456789abcdef";
    let big = encode_header(&support::python_sign_with(
        &challenge("/ided/big").await,
        &key,
        &[("PAYMENT_ID", big_id)],
    ));
    let big_url = format!("{}/ided/big", gw.url);
    let served = get(&big_url, &[("payment-signature", &big), ("x-echo-pad", "5000")]).await;
    assert_eq!(served.status(), 200);
    let tx = decode_header(served.headers().get("payment-response").unwrap().to_str().unwrap())["transaction"].clone();
    assert!(served.text().await.unwrap().len() > 5000);
    let replay = support::replay_once_kept(&big_url, &big).await;
    assert_eq!(replay.status(), 409);
    assert_eq!(replay.json::<Value>().await.unwrap()["transaction"], tx);
    assert_eq!(
        stack.devnet.balance(payer).await,
        before - U256::from(3 * PRICE),
        "three payments, three charges"
    );
}

/// Sends `method` to `url` with `headers`.
async fn send(method: &str, url: &str, headers: &[(&str, &str)]) -> reqwest::Response {
    let mut rb = reqwest::Client::new().request(method.parse().unwrap(), url);
    for (k, v) in headers {
        rb = rb.header(*k, *v);
    }
    rb.send().await.unwrap()
}

#[tokio::test(flavor = "multi_thread")]
async fn a_method_the_priced_route_does_not_sell_never_reaches_the_upstream_for_free() {
    let stack = Stack::start(31_337, "").await;
    // The README's first example: GET priced, everything else free; plus a free POST listed by name.
    let routes = "  - path: /search/public\n    methods: [POST]\n    free: true\n  - path: /search/**\n    methods: [GET]\n    price: \"$0.001\"\n  - path: /**\n    free: true\n";
    let gw = support::Gateway::start(&format!("{}{routes}", stack.table(""))).await;
    let url = |p: &str| format!("{}{p}", gw.url);
    assert_eq!(send("GET", &url("/search/q"), &[]).await.status(), 402);
    for method in ["POST", "PUT", "DELETE", "PATCH"] {
        let resp = send(method, &url("/search/q"), &[]).await;
        assert_eq!(resp.status(), 405, "{method}");
        assert_eq!(resp.headers()["allow"], "GET", "{method}");
        let body = resp.text().await.unwrap();
        assert!(!body.contains("served_by"), "{method} reached the upstream: {body}");
        assert!(body.contains("method_not_allowed"), "{body}");
    }
    // A method override cannot smuggle a priced GET through a free method, nor re-label a paid one.
    for (method, path) in [("POST", "/search/q"), ("GET", "/search/q"), ("POST", "/search/public")] {
        for header in ["x-http-method-override", "x-http-method", "x-method-override"] {
            let resp = send(method, &url(path), &[(header, "GET")]).await;
            assert!(
                resp.status() == 400 || resp.status() == 405,
                "{method} {path} {header}: {}",
                resp.status()
            );
            assert!(
                !resp.text().await.unwrap().contains("served_by"),
                "{method} {path} {header}"
            );
        }
    }
    // What the config lists by name stays free, and paths no priced route sells are untouched.
    let listed: Value = send("POST", &url("/search/public"), &[]).await.json().await.unwrap();
    assert_eq!(listed["path"], "/search/public");
    let other: Value = send("DELETE", &url("/elsewhere"), &[("x-http-method-override", "GET")])
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(
        other["headers"]["x-http-method-override"], "GET",
        "free paths pass as they are"
    );
    // A browser's preflight for the priced path is answered by the gateway.
    let preflight = send(
        "OPTIONS",
        &url("/search/q"),
        &[
            ("origin", "https://app.example"),
            ("access-control-request-method", "GET"),
        ],
    )
    .await;
    assert_eq!(preflight.status(), 204);

    // `check` warns about the gap it closes.
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("gateway.yaml");
    std::fs::write(
        &file,
        format!("{}{routes}", stack.table("")).replace("{listen}", "127.0.0.1:1"),
    )
    .unwrap();
    let out = std::process::Command::new(support::bin())
        .args(["check", "-c", file.to_str().unwrap()])
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{text}");
    assert!(text.contains("warning: route \"/search/**\" sells GET only"), "{text}");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_paid_response_carries_no_permission_for_a_shared_cache() {
    let stack = Stack::start(31_337, "").await;
    let (_, key) = stack.devnet.account(7);
    let header = encode_header(&python_sign(&stack.challenge("/paid/cached").await, &key));
    let resp = get(
        &format!("{}/paid/cached", stack.gateway.url),
        &[
            ("payment-signature", &header),
            ("x-echo-header", "cache-control: public, max-age=60, s-maxage=600"),
            ("x-echo-header", "cdn-cache-control: max-age=600"),
            ("x-echo-header", "surrogate-control: max-age=600"),
            ("x-echo-header", "cloudflare-cdn-cache-control: max-age=600"),
        ],
    )
    .await;
    assert_eq!(resp.status(), 200);
    assert!(resp.headers().contains_key("payment-response"));
    let cache_control: Vec<_> = resp.headers().get_all("cache-control").iter().collect();
    assert_eq!(cache_control, ["max-age=60, private"]);
    for h in ["cdn-cache-control", "surrogate-control", "cloudflare-cdn-cache-control"] {
        assert!(!resp.headers().contains_key(h), "{h} passed through");
    }
    // The free route's caching is the upstream's business.
    let free = get(
        &format!("{}/free/cached", stack.gateway.url),
        &[("x-echo-header", "cache-control: public, s-maxage=600")],
    )
    .await;
    assert_eq!(free.headers()["cache-control"], "public, s-maxage=600");
}

#[tokio::test(flavor = "multi_thread")]
async fn the_upstream_gets_its_own_host_the_gateways_forwarded_headers_and_a_bounded_wait() {
    let stack = Stack::start(31_337, "").await;
    let gw = support::Gateway::start(&stack.table("upstream_host: upstream\nupstream_timeouts: {read: 1s}")).await;
    let echo: Value = get(
        &format!("{}/free/who", gw.url),
        &[("x-forwarded-for", "6.6.6.6"), ("x-forwarded-proto", "https")],
    )
    .await
    .json()
    .await
    .unwrap();
    let upstream_authority = stack.upstream.url.trim_start_matches("http://");
    assert_eq!(echo["headers"]["host"], upstream_authority, "{echo}");
    assert_eq!(
        echo["headers"]["x-forwarded-for"], "127.0.0.1",
        "a client's own claim is replaced: {echo}"
    );
    assert_eq!(echo["headers"]["x-forwarded-proto"], "http");
    assert_eq!(
        echo["headers"]["x-forwarded-host"],
        gw.url.trim_start_matches("http://"),
        "{echo}"
    );

    // An upstream slower than `read`: the client gets an error, not a hang, and the payment is not charged.
    let (payer, key) = stack.devnet.account(6);
    let before = stack.devnet.balance(payer).await;
    let header = encode_header(&python_sign(&stack.challenge("/paid/slow").await, &key));
    let url = format!("{}/paid/slow", gw.url);
    let resp = get(&url, &[("payment-signature", &header), ("x-echo-delay-ms", "3000")]).await;
    assert!(resp.status().is_server_error(), "{}", resp.status());
    assert!(!resp.headers().contains_key("payment-response"));
    assert_eq!(stack.devnet.balance(payer).await, before, "nothing settled");
    assert_eq!(
        get(&url, &[("payment-signature", &header)]).await.status(),
        200,
        "the payment is still good"
    );
}
