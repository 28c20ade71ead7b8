//! What the client gets when settlement does not simply succeed, and the transports around a payment.

mod support;

use alloy::primitives::U256;
use serde_json::{json, Value};
use support::{decode_header, encode_header, get, python_sign, Stack};

const PRICE: u64 = 1000;

#[tokio::test(flavor = "multi_thread")]
async fn failed_settlement_gets_402_with_the_failed_receipt_and_no_upstream_byte() {
    // On the SQLite store, so the failed attempt can be read back from the file.
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("claims.db");
    let stack = Stack::start(31_337, &format!("store: \"sqlite:{}\"", db.display())).await;
    let (payer, key) = stack.devnet.account(0);
    let (sink, _) = stack.devnet.account(7);
    let payee_before = stack.devnet.balance(stack.pay_to).await;
    let header = encode_header(&python_sign(&stack.challenge("/paid/drain").await, &key));
    let url = format!("{}/paid/drain", stack.gateway.url);
    // The upstream takes a while; meanwhile the payer empties its account, so settlement must fail.
    let reached = support::upstream_received(&stack.upstream.url).await;
    let request =
        tokio::spawn(async move { get(&url, &[("payment-signature", &header), ("x-echo-delay-ms", "2000")]).await });
    // Verified (balance included) once it is at the upstream; settlement comes after the delay.
    support::wait_upstream_reached(&stack.upstream.url, reached).await;
    let balance = stack.devnet.balance(payer).await;
    let transfer = format!("0xa9059cbb{:0>64}{:064x}", hex(sink.as_slice()), balance);
    stack
        .devnet
        .rpc(
            "eth_sendTransaction",
            json!([{"from": payer.to_string(), "to": stack.devnet.state.asset, "data": transfer}]),
        )
        .await;

    let resp = request.await.unwrap();
    assert_eq!(resp.status(), 402);
    let receipt = decode_header(resp.headers().get("payment-response").unwrap().to_str().unwrap());
    assert_eq!(receipt["success"], false, "{receipt}");
    assert_eq!(
        receipt["errorReason"], "invalid_exact_evm_insufficient_balance",
        "{receipt}"
    );
    assert_eq!(receipt["transaction"], "");
    let body = resp.text().await.unwrap();
    assert!(!body.contains("served_by"), "upstream bytes leaked: {body}");
    assert_eq!(stack.devnet.balance(stack.pay_to).await, payee_before);
    assert_eq!(stack.devnet.balance(payer).await, U256::ZERO);
    // The attempt and its reason are stored (and the authorization is free again).
    let stored = [
        std::fs::read(&db).unwrap_or_default(),
        std::fs::read(dir.path().join("claims.db-wal")).unwrap_or_default(),
    ]
    .concat();
    let stored = String::from_utf8_lossy(&stored);
    assert!(
        stored.contains("\"state\":\"failed\"") && stored.contains("insufficient_balance"),
        "the failed attempt is recorded with its reason"
    );
}

fn hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

#[tokio::test(flavor = "multi_thread")]
async fn pending_settlement_names_its_transaction_and_the_same_payment_is_served_once_it_lands() {
    let stack = Stack::start_with(31_337, "", &["--receipt-timeout", "1s"]).await;
    let (payer, key) = stack.devnet.account(1);
    let before = stack.devnet.balance(payer).await;
    let header = encode_header(&python_sign(&stack.challenge("/paid/slow").await, &key));
    let url = format!("{}/paid/slow", stack.gateway.url);
    stack.devnet.rpc("evm_setAutomine", json!([false])).await;

    let resp = get(&url, &[("payment-signature", &header)]).await;
    assert_eq!(resp.status(), 504);
    let body: Value = resp.json().await.unwrap();
    assert_eq!(body["error"], "settlement_pending", "{body}");
    let tx = body["transaction"].as_str().unwrap().to_owned();
    assert_eq!(tx.len(), 66, "{body}");
    let (_, settles, sent) = stack.facilitator_calls().await;
    assert_eq!(
        (settles, sent),
        (2, 1),
        "one retry of the same payload, one transaction"
    );

    // Before the transaction is mined, the same payment again is neither challenged (that would invite
    // paying twice) nor sent again: the answer names the transaction.
    let again = get(&url, &[("payment-signature", &header)]).await;
    assert_eq!(again.status(), 504);
    assert!(!again.headers().contains_key("payment-required"));
    assert_eq!(again.json::<Value>().await.unwrap()["transaction"], tx.as_str());

    stack.devnet.rpc("evm_mine", json!([])).await;
    assert_eq!(stack.devnet.receipt(&tx).await["status"], "0x1");
    assert_eq!(stack.devnet.balance(payer).await, before - U256::from(PRICE));
    // Once mined, the same payment gets what it paid for, with the receipt of that one transaction.
    let served = get(&url, &[("payment-signature", &header)]).await;
    assert_eq!(served.status(), 200);
    let receipt = decode_header(served.headers().get("payment-response").unwrap().to_str().unwrap());
    assert_eq!(
        (receipt["success"].clone(), receipt["transaction"].clone()),
        (json!(true), json!(tx))
    );
    assert_eq!(stack.facilitator_calls().await.2, 1, "still one transaction");
    // And only once.
    let replay = get(&url, &[("payment-signature", &header)]).await;
    assert_eq!(replay.status(), 409);
    assert_eq!(
        decode_header(replay.headers().get("payment-response").unwrap().to_str().unwrap())["transaction"],
        tx.as_str()
    );
    assert_eq!(stack.devnet.balance(payer).await, before - U256::from(PRICE));
}

/// A fake facilitator that injects one fault: every answer is garbage.
async fn garbage_facilitator() -> String {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    let app = axum::Router::new().fallback(|| async { "<html>oops</html>" });
    tokio::spawn(async move { axum::serve(listener, app).await });
    url
}

/// A fake facilitator that injects one fault: it answers `/verify` and `/settle` with the given status and
/// body, and counts the settles it was asked for.
async fn scripted_facilitator(
    verify: (u16, Value),
    settle: (u16, Value),
) -> (String, std::sync::Arc<std::sync::atomic::AtomicU64>) {
    use axum::http::StatusCode;
    use axum::routing::post;
    use std::sync::atomic::{AtomicU64, Ordering};
    let settles = std::sync::Arc::new(AtomicU64::new(0));
    let counter = settles.clone();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    let answer = |(status, body): (u16, Value)| (StatusCode::from_u16(status).unwrap(), axum::Json(body));
    let app = axum::Router::new()
        .route("/verify", post(move || async move { answer(verify) }))
        .route(
            "/settle",
            post(move || async move {
                counter.fetch_add(1, Ordering::SeqCst);
                answer(settle)
            }),
        );
    tokio::spawn(async move { axum::serve(listener, app).await });
    (url, settles)
}

#[tokio::test(flavor = "multi_thread")]
async fn a_facilitator_answer_with_a_failing_status_is_never_a_success() {
    use std::sync::atomic::Ordering;
    let stack = Stack::start(31_337, "").await;
    let (_, key) = stack.devnet.account(4);
    let ok_settle = json!({"success": true, "transaction": format!("0x{}", "ab".repeat(32)), "network": stack.devnet.state.network});
    // /verify: 503 with `isValid: true` refuses with 503, nothing proxied, and says nothing of the facilitator.
    let (url, _) = scripted_facilitator((503, json!({"isValid": true})), (200, ok_settle.clone())).await;
    let gw = stack.gateway_with(&url, "").await;
    let header = encode_header(&python_sign(&stack.challenge("/paid/x").await, &key));
    let resp = get(&format!("{}/paid/x", gw.url), &[("payment-signature", &header)]).await;
    assert_eq!(resp.status(), 503);
    assert!(!resp.headers().contains_key("payment-response"));
    let text = resp.text().await.unwrap();
    let body: Value = serde_json::from_str(&text).unwrap();
    assert_eq!(
        (body["error"].as_str(), body["reason"].as_str()),
        (Some("facilitator_unavailable"), Some("facilitator_failed")),
        "{body}"
    );
    let port = url.rsplit(':').next().unwrap();
    assert!(
        !text.contains(port) && !text.contains("127.0.0.1") && !text.contains("served_by"),
        "{text}"
    );

    // /settle: 503 with `success: true` is an unknown outcome: not served, and the same payment presented
    // again is settled again (reconciled), never challenged to pay anew.
    let (url, settles) = scripted_facilitator((200, json!({"isValid": true})), (503, ok_settle)).await;
    let gw = stack.gateway_with(&url, "").await;
    let header = encode_header(&python_sign(&stack.challenge("/paid/y").await, &key));
    for attempt in 1..=2u64 {
        let resp = get(&format!("{}/paid/y", gw.url), &[("payment-signature", &header)]).await;
        assert!(
            resp.status() == 503 || resp.status() == 504,
            "attempt {attempt}: {}",
            resp.status()
        );
        assert!(
            !resp.headers().contains_key("payment-required"),
            "never asked to pay again"
        );
        assert!(!resp.text().await.unwrap().contains("served_by"));
        assert_eq!(
            settles.load(Ordering::SeqCst),
            attempt,
            "each presentation re-settles the same payload"
        );
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn a_settlement_that_went_pending_is_never_called_failed_by_a_fresh_judgement_of_the_retry() {
    use axum::routing::post;
    use std::sync::atomic::{AtomicU64, Ordering};
    let stack = Stack::start(31_337, "").await;
    let (_, key) = stack.devnet.account(5);
    let network = stack.devnet.state.network.clone();
    // A fake facilitator that injects one fault: the first `/settle` is pending (a transaction was sent), and
    // every later one judges the payload afresh and finds its nonce used (the transaction landed).
    let calls = std::sync::Arc::new(AtomicU64::new(0));
    let counter = calls.clone();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    let tx = format!("0x{}", "cd".repeat(32));
    let app = axum::Router::new()
        .route("/verify", post(|| async { axum::Json(json!({"isValid": true})) }))
        .route(
            "/settle",
            post(move || async move {
                let first = counter.fetch_add(1, Ordering::SeqCst) == 0;
                let reason = if first {
                    "settlement_pending"
                } else {
                    "invalid_exact_evm_nonce_already_used"
                };
                let transaction = if first { tx } else { String::new() };
                axum::Json(
                    json!({"success": false, "errorReason": reason, "transaction": transaction, "network": network}),
                )
            }),
        );
    tokio::spawn(async move { axum::serve(listener, app).await });
    let gw = stack.gateway_with(&url, "").await;
    let header = encode_header(&python_sign(&stack.challenge("/paid/p").await, &key));
    for attempt in 1..=2 {
        let resp = get(&format!("{}/paid/p", gw.url), &[("payment-signature", &header)]).await;
        assert_eq!(resp.status(), 504, "attempt {attempt}: in doubt, not failed");
        assert!(
            !resp.headers().contains_key("payment-required"),
            "never asked to pay again"
        );
    }
    assert!(
        calls.load(Ordering::SeqCst) >= 3,
        "the retry and the re-presentation both re-settled"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_failed_settle_that_names_a_transaction_is_in_doubt_never_a_new_challenge() {
    use std::sync::atomic::Ordering;
    let stack = Stack::start(31_337, "").await;
    let (_, key) = stack.devnet.account(6);
    let tx = format!("0x{}", "ef".repeat(32));
    // A fake facilitator that injects one fault, as the Go reference answers when it broadcast and then gave
    // up waiting for the receipt.
    let gave_up = json!({"success": false, "errorReason": "unexpected_settle_error", "transaction": tx, "network": stack.devnet.state.network});
    let (url, settles) = scripted_facilitator((200, json!({"isValid": true})), (200, gave_up)).await;
    let gw = stack.gateway_with(&url, "").await;
    let header = encode_header(&python_sign(&stack.challenge("/paid/gave-up").await, &key));
    for attempt in 1..=2u64 {
        let resp = get(&format!("{}/paid/gave-up", gw.url), &[("payment-signature", &header)]).await;
        assert_eq!(resp.status(), 504, "attempt {attempt}: in doubt");
        assert!(
            !resp.headers().contains_key("payment-required"),
            "attempt {attempt}: never asked to pay again"
        );
        let body: Value = resp.json().await.unwrap();
        assert_eq!(
            body["transaction"],
            tx.as_str(),
            "attempt {attempt}: the transaction is kept: {body}"
        );
        assert_eq!(settles.load(Ordering::SeqCst), attempt, "re-settled, not challenged");
    }
    // A failure made before anything was broadcast is still definite: a fresh 402 with the reason.
    let refused = json!({"success": false, "errorReason": "invalid_exact_evm_insufficient_balance", "transaction": "", "network": stack.devnet.state.network});
    let (url, _) = scripted_facilitator((200, json!({"isValid": true})), (200, refused)).await;
    let gw = stack.gateway_with(&url, "").await;
    let header = encode_header(&python_sign(&stack.challenge("/paid/refused").await, &key));
    let resp = get(&format!("{}/paid/refused", gw.url), &[("payment-signature", &header)]).await;
    assert_eq!(resp.status(), 402);
    let receipt = decode_header(resp.headers().get("payment-response").unwrap().to_str().unwrap());
    assert_eq!(receipt["errorReason"], "invalid_exact_evm_insufficient_balance");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_rate_limiting_facilitator_is_never_a_reason_to_serve_unpaid() {
    use std::sync::atomic::Ordering;
    let stack = Stack::start(31_337, "").await;
    let (_, key) = stack.devnet.account(7);
    // A fake facilitator that injects one fault: HTTP 429 on /verify, which anyone can cause by flooding it.
    let (url, settles) = scripted_facilitator((429, json!({"isValid": true})), (200, json!({}))).await;
    let open = "  - path: /open/**\n    price: \"$0.001\"\n    on_facilitator_error: allow\n";
    let table = support::price_table(&stack.devnet, &stack.upstream.url, &url, stack.pay_to, "");
    let gw = support::Gateway::start(&format!("{table}{open}")).await;
    let challenge = get(&format!("{}/open/x", gw.url), &[]).await;
    let offer = decode_header(challenge.headers()["payment-required"].to_str().unwrap());
    let header = encode_header(&python_sign(&offer, &key));
    let resp = get(&format!("{}/open/x", gw.url), &[("payment-signature", &header)]).await;
    assert_eq!(resp.status(), 503, "refused, though the route fails open");
    let body: Value = resp.json().await.unwrap();
    assert_eq!(body["reason"], "facilitator_rate_limited", "{body}");
    assert_eq!(settles.load(Ordering::SeqCst), 0);
}

#[tokio::test(flavor = "multi_thread")]
async fn facilitator_answering_garbage_means_502_and_no_content() {
    let stack = Stack::start(31_337, "").await;
    let (_, key) = stack.devnet.account(2);
    let gw = stack.gateway_with(&garbage_facilitator().await, "").await;
    let header = encode_header(&python_sign(&stack.challenge("/paid/x").await, &key));
    let resp = get(&format!("{}/paid/x", gw.url), &[("payment-signature", &header)]).await;
    assert_eq!(resp.status(), 502);
    let body: Value = resp.json().await.unwrap();
    assert_eq!(body["error"], "facilitator_unavailable", "{body}");
    // Settle-side garbage on a `verify: local` route: also 502, nothing served.
    let header = encode_header(&python_sign(&stack.challenge("/local/x").await, &key));
    let resp = get(&format!("{}/local/x", gw.url), &[("payment-signature", &header)]).await;
    assert_eq!(resp.status(), 502);
    assert!(!resp.text().await.unwrap().contains("served_by"));
}

#[tokio::test(flavor = "multi_thread")]
async fn v2_header_wins_over_v1_and_local_verify_skips_the_facilitator_check() {
    let stack = Stack::start(31_337, "").await;
    let (_, key) = stack.devnet.account(3);
    let header = encode_header(&python_sign(&stack.challenge("/paid/both").await, &key));
    let resp = get(
        &format!("{}/paid/both", stack.gateway.url),
        &[("payment-signature", &header), ("x-payment", "garbage")],
    )
    .await;
    assert_eq!(resp.status(), 200);
    assert!(resp.headers().contains_key("payment-response") && !resp.headers().contains_key("x-payment-response"));
    assert_eq!(stack.facilitator_calls().await, (1, 1, 1));

    let header = encode_header(&python_sign(&stack.challenge("/local/x").await, &key));
    let resp = get(
        &format!("{}/local/x", stack.gateway.url),
        &[("payment-signature", &header)],
    )
    .await;
    assert_eq!(resp.status(), 200);
    assert_eq!(
        stack.facilitator_calls().await,
        (1, 2, 2),
        "verify: local makes no /verify call"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn h2c_clients_get_the_same_answers() {
    let stack = Stack::start(31_337, "").await;
    let h2 = reqwest::Client::builder().http2_prior_knowledge().build().unwrap();
    let free = h2.get(format!("{}/free/x", stack.gateway.url)).send().await.unwrap();
    assert_eq!(free.version(), reqwest::Version::HTTP_2);
    assert_eq!(free.status(), 200);
    let paid = h2.get(format!("{}/paid/x", stack.gateway.url)).send().await.unwrap();
    assert_eq!(paid.status(), 402);
    assert_eq!(
        decode_header(paid.headers().get("payment-required").unwrap().to_str().unwrap())["accepts"][0]["amount"],
        "1000"
    );
    let (_, key) = stack.devnet.account(4);
    let header = encode_header(&python_sign(&stack.challenge("/paid/h2").await, &key));
    let ok = h2
        .post(format!("{}/paid/h2", stack.gateway.url))
        .header("payment-signature", header)
        .body("streamed body")
        .send()
        .await
        .unwrap();
    assert_eq!(ok.status(), 200);
    assert!(ok.headers().contains_key("payment-response"));
    let echoed: Value = ok.json().await.unwrap();
    assert_eq!(echoed["body"], "streamed body");
}

/// Sends raw bytes and reads until the server closes or `until` appears; returns the text.
async fn raw(addr: &str, parts: &[&[u8]], pause_ms: u64) -> String {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut s = tokio::net::TcpStream::connect(addr).await.unwrap();
    for p in parts {
        s.write_all(p).await.unwrap();
        tokio::time::sleep(std::time::Duration::from_millis(pause_ms)).await;
    }
    let mut out = Vec::new();
    let _ = tokio::time::timeout(std::time::Duration::from_secs(20), s.read_to_end(&mut out)).await;
    String::from_utf8_lossy(&out).into_owned()
}

/// An upstream that sends an informational `100 Continue` before its real answer, as servers do for
/// `Expect: 100-continue` uploads.
async fn upstream_with_interim_response() -> String {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(async move {
        loop {
            let Ok((mut s, _)) = listener.accept().await else {
                return;
            };
            tokio::spawn(async move {
                let mut buf = Vec::new();
                let mut chunk = [0u8; 4096];
                while !buf.windows(4).any(|w| w == b"\r\n\r\n") {
                    match s.read(&mut chunk).await {
                        Ok(0) | Err(_) => return,
                        Ok(n) => buf.extend_from_slice(&chunk[..n]),
                    }
                }
                // `x-echo-status: 500` makes the final answer an error.
                let failing = String::from_utf8_lossy(&buf)
                    .to_ascii_lowercase()
                    .contains("x-echo-status: 500");
                let status = if failing { "500 Internal Server Error" } else { "200 OK" };
                let body = "{\"served_by\":\"interim upstream\"}";
                let answer = format!("HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 {status}\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}", body.len());
                let _ = s.write_all(answer.as_bytes()).await;
            });
        }
    });
    url
}

#[tokio::test(flavor = "multi_thread")]
async fn an_interim_1xx_from_the_upstream_neither_settles_nor_settles_twice() {
    let stack = Stack::start(31_337, "").await;
    let (payer, key) = stack.devnet.account(5);
    let before = stack.devnet.balance(payer).await;
    let gw = support::Gateway::start(&support::price_table(
        &stack.devnet,
        &upstream_with_interim_response().await,
        &stack.facilitator.url,
        stack.pay_to,
        "",
    ))
    .await;
    let header = encode_header(&python_sign(&stack.challenge("/paid/upload").await, &key));
    // 100 then 500: the interim answer must not trigger settlement.
    let failed = get(
        &format!("{}/paid/upload", gw.url),
        &[("payment-signature", &header), ("x-echo-status", "500")],
    )
    .await;
    assert_eq!(failed.status(), 500);
    assert_eq!(
        stack.facilitator_calls().await.1,
        0,
        "no settle for an upstream error after a 1xx"
    );
    assert_eq!(stack.devnet.balance(payer).await, before);
    let resp = get(&format!("{}/paid/upload", gw.url), &[("payment-signature", &header)]).await;
    assert_eq!(resp.status(), 200);
    assert!(resp.headers().contains_key("payment-response"));
    assert_eq!(resp.text().await.unwrap(), "{\"served_by\":\"interim upstream\"}");
    assert_eq!(stack.facilitator_calls().await.1, 1, "settled exactly once");
    assert_eq!(stack.devnet.balance(payer).await, before - U256::from(PRICE));
}

#[tokio::test(flavor = "multi_thread")]
async fn ambiguous_requests_get_400_not_a_free_pass_or_a_5xx() {
    let stack = Stack::start(31_337, "").await;
    let addr = stack.gateway.url.trim_start_matches("http://").to_owned();
    let cases = [
        format!("GET /paid/x HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n").replace("GET", "get"),
        format!("GET /paid;v=1/x HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n"),
        format!("GET /free%2F..%2Fpaid/x HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n"),
        format!(
            "POST /free/x HTTP/1.1\r\nHost: {addr}\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\nzz\r\n"
        ),
    ];
    for req in cases {
        let text = raw(&addr, &[req.as_bytes()], 0).await;
        assert!(text.starts_with("HTTP/1.1 400"), "{req:?} -> {text}");
    }
    // Dot segments are resolved before matching: this is the priced route.
    let text = raw(
        &addr,
        &[format!("GET /free/../paid/x HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n").as_bytes()],
        0,
    )
    .await;
    assert!(text.starts_with("HTTP/1.1 402"), "{text}");
}

#[tokio::test(flavor = "multi_thread")]
async fn https_upstreams_are_reached_over_tls() {
    let stack = Stack::start(31_337, "").await;
    let dir = tempfile::tempdir().unwrap();
    let p = |name: &str| dir.path().join(name).to_str().unwrap().to_owned();
    let (ca, cert, key) = (p("ca.pem"), p("cert.pem"), p("key.pem"));
    std::fs::write(
        p("leaf.ext"),
        "subjectAltName=DNS:localhost\nbasicConstraints=CA:FALSE\n",
    )
    .unwrap();
    // A test CA and a localhost certificate it signs (webpki refuses a self-signed CA as a server cert).
    let steps: [Vec<String>; 3] = [
        [
            "req",
            "-x509",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-days",
            "1",
            "-subj",
            "/CN=x402 test CA",
            "-addext",
            "basicConstraints=critical,CA:TRUE",
            "-addext",
            "keyUsage=critical,keyCertSign",
            "-keyout",
            &p("ca.key"),
            "-out",
            &ca,
        ]
        .map(String::from)
        .to_vec(),
        [
            "req",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-subj",
            "/CN=localhost",
            "-keyout",
            &key,
            "-out",
            &p("leaf.csr"),
        ]
        .map(String::from)
        .to_vec(),
        [
            "x509",
            "-req",
            "-in",
            &p("leaf.csr"),
            "-CA",
            &ca,
            "-CAkey",
            &p("ca.key"),
            "-CAcreateserial",
            "-days",
            "1",
            "-extfile",
            &p("leaf.ext"),
            "-out",
            &cert,
        ]
        .map(String::from)
        .to_vec(),
    ];
    for args in steps {
        let made = std::process::Command::new("openssl").args(&args).output().unwrap();
        assert!(
            made.status.success(),
            "openssl {args:?}: {}",
            String::from_utf8_lossy(&made.stderr)
        );
    }
    let port = support::free_port();
    // `openssl s_server -www` answers any request with an HTML status page over TLS.
    let mut server = std::process::Command::new("openssl")
        .args([
            "s_server",
            "-www",
            "-quiet",
            "-accept",
            &format!("127.0.0.1:{port}"),
            "-cert",
            &cert,
            "-key",
            &key,
        ])
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::null())
        .spawn()
        .unwrap();
    support::wait_until("the TLS server", std::time::Duration::from_secs(10), || {
        std::net::TcpStream::connect(("127.0.0.1", port)).is_ok()
    })
    .await;
    let table = support::price_table(
        &stack.devnet,
        &format!("https://localhost:{port}"),
        &stack.facilitator.url,
        stack.pay_to,
        &format!("upstream_ca_file: \"{ca}\""),
    );
    let gw = support::Gateway::start(&table).await;
    let resp = get(&format!("{}/free/tls", gw.url), &[]).await;
    let status = resp.status();
    let body = resp.text().await.unwrap();
    let _ = server.kill();
    let _ = server.wait();
    assert_eq!(status, 200, "{body}");
    assert!(body.contains("s_server"), "{body}");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_large_paid_response_streams_through_intact() {
    let stack = Stack::start(31_337, "").await;
    let (_, key) = stack.devnet.account(6);
    let header = encode_header(&python_sign(&stack.challenge("/paid/big").await, &key));
    const SIZE: usize = 8 * 1024 * 1024;
    let resp = get(
        &format!("{}/paid/big", stack.gateway.url),
        &[("payment-signature", &header), ("x-echo-pad", &SIZE.to_string())],
    )
    .await;
    assert_eq!(resp.status(), 200);
    assert_eq!(
        decode_header(resp.headers().get("payment-response").unwrap().to_str().unwrap())["success"],
        true
    );
    let body: Value = serde_json::from_slice(&resp.bytes().await.unwrap()).unwrap();
    let pad = body["pad"].as_str().unwrap();
    assert_eq!(pad.len(), SIZE);
    assert!(pad.bytes().all(|b| b == b'x'));
}

/// A fake facilitator that injects one fault: it passes `/verify` and the first `/settle` to the real one at
/// `real`, then loses track (a restart, say) and judges every later `/settle` afresh, finding the nonce
/// used, as the Go reference does.
async fn forgetful_facilitator(real: String, network: String) -> String {
    use axum::routing::post;
    use std::sync::atomic::{AtomicU64, Ordering};
    let settles = std::sync::Arc::new(AtomicU64::new(0));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    let forward = |real: String, path: &'static str| {
        move |body: axum::body::Bytes| async move {
            let resp = reqwest::Client::new()
                .post(format!("{real}{path}"))
                .header("content-type", "application/json")
                .body(body)
                .send()
                .await
                .unwrap();
            axum::Json(resp.json::<Value>().await.unwrap())
        }
    };
    let first_settle = forward(real.clone(), "/settle");
    let app = axum::Router::new()
        .route("/verify", post(forward(real, "/verify")))
        .route(
            "/settle",
            post(move |body: axum::body::Bytes| async move {
                if settles.fetch_add(1, Ordering::SeqCst) == 0 {
                    return first_settle(body).await;
                }
                axum::Json(json!({"success": false, "errorReason": "invalid_exact_evm_nonce_already_used", "transaction": "", "network": network}))
            }),
        );
    tokio::spawn(async move { axum::serve(listener, app).await });
    url
}

#[tokio::test(flavor = "multi_thread")]
async fn a_payment_in_doubt_is_resolved_from_the_chain_served_when_it_landed_released_when_it_cannot() {
    let stack = Stack::start_with(31_337, "", &["--receipt-timeout", "1s"]).await;
    let network = stack.devnet.state.network.clone();
    let rpc = format!(
        "rpc:\n  \"{network}\": \"{}\"\nmax_timeout_seconds: 12",
        stack.devnet.state.rpc_url
    );
    let (payer, key) = stack.devnet.account(3);
    let before = stack.devnet.balance(payer).await;

    // Landed: sent, the facilitator gave up on the receipt, then forgot it; the chain shows it paid.
    let forgetful = forgetful_facilitator(stack.facilitator.url.clone(), network.clone()).await;
    let gw = stack.gateway_with(&forgetful, &rpc).await;
    let url = format!("{}/paid/landed", gw.url);
    let offer = decode_header(get(&url, &[]).await.headers()["payment-required"].to_str().unwrap());
    let header = encode_header(&python_sign(&offer, &key));
    stack.devnet.rpc("evm_setAutomine", json!([false])).await;
    let resp = get(&url, &[("payment-signature", &header)]).await;
    assert_eq!(resp.status(), 504, "in doubt");
    let tx = resp.json::<Value>().await.unwrap()["transaction"]
        .as_str()
        .unwrap()
        .to_owned();
    stack.devnet.rpc("evm_mine", json!([])).await;
    stack.devnet.rpc("evm_setAutomine", json!([true])).await;
    assert_eq!(stack.devnet.receipt(&tx).await["status"], "0x1");
    let served = get(&url, &[("payment-signature", &header)]).await;
    assert_eq!(served.status(), 200, "the chain proves it paid: served");
    let receipt = decode_header(served.headers()["payment-response"].to_str().unwrap());
    assert_eq!(
        (receipt["success"].clone(), receipt["transaction"].clone()),
        (json!(true), json!(tx))
    );
    assert!(served.text().await.unwrap().contains("served_by"));
    assert_eq!(
        get(&url, &[("payment-signature", &header)]).await.status(),
        409,
        "and only once"
    );
    assert_eq!(stack.devnet.balance(payer).await, before - U256::from(PRICE));

    // Never sent (the facilitator named a transaction it never broadcast): once the authorization is past
    // its deadline and unused on chain, the payment is released with the reason.
    let ghost = json!({"success": false, "errorReason": "unexpected_settle_error", "transaction": format!("0x{}", "ab".repeat(32)), "network": network});
    let (liar, _) = scripted_facilitator((200, json!({"isValid": true})), (200, ghost)).await;
    let gw = stack.gateway_with(&liar, &rpc).await;
    let url = format!("{}/paid/ghost", gw.url);
    let offer = decode_header(get(&url, &[]).await.headers()["payment-required"].to_str().unwrap());
    let header = encode_header(&python_sign(&offer, &key));
    assert_eq!(get(&url, &[("payment-signature", &header)]).await.status(), 504);
    let still = get(&url, &[("payment-signature", &header)]).await;
    assert_eq!(still.status(), 504, "still valid and unused: it may yet land");
    let deadline = offer["accepts"][0]["maxTimeoutSeconds"].as_u64().unwrap();
    tokio::time::sleep(std::time::Duration::from_secs(deadline + 1)).await;
    let released = get(&url, &[("payment-signature", &header)]).await;
    assert_eq!(released.status(), 402, "it can no longer land: not paid");
    let receipt = decode_header(released.headers()["payment-response"].to_str().unwrap());
    assert_eq!(
        receipt["errorReason"], "invalid_exact_evm_payload_authorization_valid_before",
        "{receipt}"
    );
    assert!(!released.text().await.unwrap().contains("served_by"));
    assert_eq!(
        stack.devnet.balance(payer).await,
        before - U256::from(PRICE),
        "nothing more moved"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn payments_lists_a_payment_in_doubt_and_resolves_it_by_hand() {
    let stack = Stack::start(31_337, "").await;
    let (payer, key) = stack.devnet.account(2);
    let tx = format!("0x{}", "cd".repeat(32));
    let gave_up = json!({"success": false, "errorReason": "unexpected_settle_error", "transaction": tx, "network": stack.devnet.state.network});
    let (url, _) = scripted_facilitator((200, json!({"isValid": true})), (200, gave_up)).await;
    let dir = tempfile::tempdir().unwrap();
    // Bound on every address, as for probes and Prometheus from other pods.
    let admin_port = support::free_port();
    let admin = format!("http://127.0.0.1:{admin_port}");
    let extra = format!(
        "admin_listen: \"0.0.0.0:{admin_port}\"\nstore: \"sqlite:{}\"",
        dir.path().join("claims.db").display()
    );
    let gw = stack.gateway_with(&url, &extra).await;
    let paid = format!("{}/paid/by-hand", gw.url);
    let offer = decode_header(get(&paid, &[]).await.headers()["payment-required"].to_str().unwrap());
    let header = encode_header(&python_sign(&offer, &key));
    assert_eq!(get(&paid, &[("payment-signature", &header)]).await.status(), 504);

    let payments = |args: &[&str]| {
        support::output(
            std::process::Command::new(support::bin())
                .args(["payments", "--admin", &admin])
                .args(args),
        )
    };
    let (ok, listed) = payments(&["list", "--json"]);
    assert!(ok, "{listed}");
    let listed: Value = serde_json::from_str(listed.trim()).unwrap();
    let found = &listed["payments"].as_array().unwrap()[..];
    assert_eq!(found.len(), 1, "{listed}");
    assert_eq!(
        (
            found[0]["state"].as_str(),
            found[0]["transaction"].as_str(),
            found[0]["payer"].as_str()
        ),
        (Some("in_doubt"), Some(tx.as_str()), Some(payer.to_string().as_str())),
        "{listed}"
    );
    let payment_key = found[0]["key"].as_str().unwrap().to_owned();
    let (ok, text) = payments(&[]);
    assert!(ok && text.contains(&payment_key) && text.contains(&tx), "{text}");

    let (ok, text) = payments(&["resolve", "x402:claim:nonsense", "--settled", &tx]);
    assert!(!ok && text.contains("is not a payment key"), "{text}");
    let (ok, text) = payments(&["resolve", &payment_key, "--settled", "0x12"]);
    assert!(!ok && text.contains("transaction hash"), "{text}");
    // From another host (this machine's own non-loopback address stands in for one): refused, untouched.
    let probe = std::net::UdpSocket::bind("0.0.0.0:0").unwrap();
    probe.connect("198.51.100.1:9").unwrap();
    let outside = probe.local_addr().unwrap().ip();
    assert!(!outside.is_loopback(), "this test needs a non-loopback address");
    let remote = reqwest::Client::new()
        .post(format!("http://{outside}:{admin_port}/payments/resolve"))
        .json(&json!({"key": payment_key, "settled": tx}))
        .send()
        .await
        .unwrap();
    assert_eq!(remote.status(), 403);
    assert!(remote.text().await.unwrap().contains("loopback"));
    let (ok, text) = payments(&["list", "--json"]);
    assert!(ok && text.contains("in_doubt"), "still in doubt: {text}");
    let (ok, text) = payments(&["resolve", &payment_key, "--settled", &tx]);
    assert!(ok, "{text}");
    // Settled by the operator's word: the same payment is used, never served again or re-settled.
    let used = get(&paid, &[("payment-signature", &header)]).await;
    assert_eq!(used.status(), 409);
    assert_eq!(used.json::<Value>().await.unwrap()["transaction"], tx.as_str());
    let (ok, text) = payments(&[]);
    assert!(ok && text.contains("no payment is in doubt"), "{text}");
    let (ok, text) = payments(&["resolve", &payment_key, "--failed", "late"]);
    assert!(!ok && text.contains("known already"), "{text}");
}

#[tokio::test(flavor = "multi_thread")]
async fn payment_attempts_over_a_clients_limit_get_429_and_never_reach_the_facilitator() {
    let stack = Stack::start(31_337, "").await;
    let gw = stack
        .gateway_with(&stack.facilitator.url, "payment_attempts: {per_second: 1, burst: 2}")
        .await;
    let url = format!("{}/paid/limited", gw.url);
    let offer = decode_header(get(&url, &[]).await.headers()["payment-required"].to_str().unwrap());
    let headers: Vec<String> = (0..3)
        .map(|i| encode_header(&python_sign(&offer, &stack.devnet.account(i).1)))
        .collect();
    let calls = stack.facilitator_calls().await;
    let mut statuses = Vec::new();
    let mut last = None;
    for h in &headers {
        let resp = get(&url, &[("payment-signature", h)]).await;
        statuses.push(resp.status().as_u16());
        last = Some(resp);
    }
    assert_eq!(statuses, [200, 200, 429], "the burst, then refused");
    let refused = last.unwrap();
    assert!(refused.headers().contains_key("retry-after"));
    assert!(
        !refused.headers().contains_key("payment-required"),
        "not a challenge: the payment is fine"
    );
    assert_eq!(
        refused.json::<Value>().await.unwrap()["error"],
        "too_many_payment_attempts"
    );
    let after = stack.facilitator_calls().await;
    assert_eq!(
        (after.0 - calls.0, after.1 - calls.1),
        (2, 2),
        "the refused attempt cost no facilitator call"
    );
    // The limit is on attempts, not on payments: the refused one is good a second later.
    tokio::time::sleep(std::time::Duration::from_millis(1100)).await;
    assert_eq!(get(&url, &[("payment-signature", &headers[2])]).await.status(), 200);
}
