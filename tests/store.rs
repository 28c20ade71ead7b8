//! Payment state that outlives a process and is shared by replicas: the SQLite store across a SIGKILL at
//! the worst moments, and the Redis store (a real `redis-server`) under two gateways at once and while it is
//! down.

mod support;

use std::process::Command;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use alloy::primitives::U256;
use serde_json::{json, Value};
use support::{
    decode_header, encode_header, free_port, get, python_sign, wait_for, wait_http, wait_until, Proc, Redis, Stack,
};

const PRICE: u64 = 1000;

/// A gateway on a fixed config file and port, which a test can kill with SIGKILL and start again.
struct Restartable {
    yaml: std::path::PathBuf,
    url: String,
    proc: Option<Proc>,
    _dir: tempfile::TempDir,
}

impl Restartable {
    async fn start(yaml: &str, dir: tempfile::TempDir, env: &[(&str, &str)]) -> Restartable {
        let listen = format!("127.0.0.1:{}", free_port());
        let path = dir.path().join("gateway.yaml");
        std::fs::write(&path, yaml.replace("{listen}", &listen)).unwrap();
        let mut g = Restartable {
            yaml: path,
            url: format!("http://{listen}"),
            proc: None,
            _dir: dir,
        };
        g.run(env).await;
        g
    }

    async fn run(&mut self, env: &[(&str, &str)]) {
        let name = format!("gateway-{}", self.url.rsplit(':').next().unwrap());
        self.proc = Some(support::spawn(&name, &["run", "-c", self.yaml.to_str().unwrap()], env));
        wait_http(&self.url).await;
    }

    /// SIGKILL: no destructor, no flush, nothing the process can do about it.
    fn kill9(&mut self) {
        let mut p = self.proc.take().unwrap();
        Command::new("kill")
            .args(["-9", &p.child.id().to_string()])
            .status()
            .unwrap();
        p.child.wait().unwrap();
    }
}

/// The stack's price table with `store:` (and any other top-level keys) set.
fn table(stack: &Stack, store: &str, facilitator: &str, extra: &str) -> String {
    support::price_table(
        &stack.devnet,
        &stack.upstream.url,
        facilitator,
        stack.pay_to,
        &format!("store: \"{store}\"\n{extra}"),
    )
}

/// The durable stores, each crashed at every point.
#[derive(Clone, Copy)]
enum Backend {
    Sqlite,
    Redis,
}

/// What is left after a crash and a restart.
struct Crash {
    stack: Stack,
    /// The answer to the same payment presented again after the restart.
    again: reqwest::Response,
    payer_before: U256,
    payer: alloy::primitives::Address,
    /// Transactions the facilitator had sent when the gateway died.
    sent_before: u64,
    _redis: Option<Redis>,
}

/// Kills the gateway with SIGKILL at `point` of a paid request, restarts it on the same store, and presents
/// the same payment again. A Redis claim left by the dead process is only freed by its lease: 2 s in flight
/// (`claim_lease`), 11 s settling (three 2 s facilitator timeouts and 5 s).
async fn crash_at(point: &str, account: usize, backend: Backend) -> Crash {
    let stack = Stack::start(31_337, "").await;
    let dir = tempfile::tempdir().unwrap();
    let marker = dir.path().join("paused");
    let (store, redis) = match backend {
        Backend::Sqlite => (format!("sqlite:{}", dir.path().join("claims.db").display()), None),
        Backend::Redis => {
            let r = Redis::start_on(free_port()).await;
            (r.url(), Some(r))
        }
    };
    let yaml = table(&stack, &store, &stack.facilitator.url, "claim_lease: 2s").replace("timeout: 20s", "timeout: 2s");
    let fault = [
        ("X402_TEST_PAUSE_AT", point),
        ("X402_TEST_PAUSE_FILE", marker.to_str().unwrap()),
    ];
    let mut gw = Restartable::start(&yaml, dir, &fault).await;
    let (payer, key) = stack.devnet.account(account);
    let payer_before = stack.devnet.balance(payer).await;
    let header = encode_header(&python_sign(&stack.challenge("/paid/crash").await, &key));
    let url = format!("{}/paid/crash", gw.url);
    let (u, h) = (url.clone(), header.clone());
    let first = tokio::spawn(async move {
        reqwest::Client::new()
            .get(&u)
            .header("payment-signature", &h)
            .send()
            .await
    });
    wait_until(
        &format!("the gateway to pause {point}"),
        Duration::from_secs(30),
        || marker.exists(),
    )
    .await;
    gw.kill9();
    assert!(
        first.await.unwrap().is_err(),
        "the client got nothing from the killed process"
    );
    let sent_before = stack.facilitator_calls().await.2;
    gw.run(&[]).await;
    match (backend, point) {
        (Backend::Redis, "after_claim") => tokio::time::sleep(Duration::from_millis(2500)).await,
        (Backend::Redis, "during_settle") => tokio::time::sleep(Duration::from_millis(11_500)).await,
        _ => {}
    }
    let again = get(&url, &[("payment-signature", &header)]).await;
    Crash {
        stack,
        again,
        payer_before,
        payer,
        sent_before,
        _redis: redis,
    }
}

async fn after_settle(backend: Backend, account: usize) {
    let c = crash_at("after_settle", account, backend).await;
    assert_eq!(c.sent_before, 1, "the first request settled");
    assert_eq!(c.again.status(), 409, "refused, not asked to pay again");
    assert!(!c.again.headers().contains_key("payment-required"));
    let receipt = decode_header(c.again.headers().get("payment-response").unwrap().to_str().unwrap());
    let body: Value = c.again.json().await.unwrap();
    assert_eq!(body["error"], "payment_already_used");
    assert_eq!(body["transaction"], receipt["transaction"]);
    let tx = body["transaction"].as_str().unwrap();
    assert_eq!(c.stack.devnet.receipt(tx).await["status"], "0x1");
    assert_eq!(c.stack.facilitator_calls().await.2, 1, "no second transaction");
    assert_eq!(
        c.stack.devnet.balance(c.payer).await,
        c.payer_before - U256::from(PRICE)
    );
}

async fn during_settle(backend: Backend, account: usize) {
    let c = crash_at("during_settle", account, backend).await;
    assert_eq!(c.sent_before, 1);
    // The same payload was settled again, and our facilitator, which remembers what it settled, answers
    // with the transaction that landed: the payment is served, once, never charged twice.
    assert_eq!(
        c.stack.facilitator_calls().await.1,
        2,
        "presenting it again re-settled the same payload"
    );
    assert_eq!(c.again.status(), 200, "reconciled and served");
    let receipt = decode_header(c.again.headers()["payment-response"].to_str().unwrap());
    assert_eq!(receipt["success"], true, "{receipt}");
    let tx = receipt["transaction"].as_str().unwrap().to_owned();
    assert_eq!(c.stack.devnet.receipt(&tx).await["status"], "0x1");
    assert_eq!(c.stack.facilitator_calls().await.2, 1, "no second transaction");
    assert_eq!(
        c.stack.devnet.balance(c.payer).await,
        c.payer_before - U256::from(PRICE)
    );
}

async fn after_claim(backend: Backend, account: usize) {
    let c = crash_at("after_claim", account, backend).await;
    assert_eq!(c.sent_before, 0, "nothing was sent for settlement");
    assert_eq!(
        c.again.status(),
        200,
        "the claim was released (SQLite) or its lease ran out (Redis)"
    );
    assert!(c.again.headers().contains_key("payment-response"));
    assert_eq!(c.stack.facilitator_calls().await.2, 1);
    assert_eq!(
        c.stack.devnet.balance(c.payer).await,
        c.payer_before - U256::from(PRICE)
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn sqlite_sigkill_after_settle_never_settles_twice_and_names_the_transaction() {
    after_settle(Backend::Sqlite, 1).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn sqlite_sigkill_during_settle_leaves_the_payment_in_doubt_and_it_is_reconciled() {
    during_settle(Backend::Sqlite, 2).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn sqlite_sigkill_after_the_claim_leaves_the_payment_usable() {
    after_claim(Backend::Sqlite, 3).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn redis_sigkill_after_settle_never_settles_twice_and_names_the_transaction() {
    after_settle(Backend::Redis, 1).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn redis_sigkill_during_settle_leaves_the_payment_in_doubt_and_it_is_reconciled() {
    during_settle(Backend::Redis, 2).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn redis_sigkill_after_the_claim_leaves_the_payment_usable_once_its_lease_runs_out() {
    after_claim(Backend::Redis, 3).await;
}

/// A fake facilitator that injects one fault: every `/verify` is valid and every `/settle` succeeds, used or
/// not, after `settle_delay`. Correctness must not rest on the facilitator or the chain refusing a second use.
async fn yes_facilitator(network: &str, settle_delay: Duration) -> (String, Arc<AtomicU64>) {
    use axum::routing::post;
    let settles = Arc::new(AtomicU64::new(0));
    let counter = settles.clone();
    let network = network.to_owned();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    let app = axum::Router::new()
        .route("/verify", post(|| async { axum::Json(json!({"isValid": true})) }))
        .route(
            "/settle",
            post(move || async move {
                let n = counter.fetch_add(1, Ordering::SeqCst);
                tokio::time::sleep(settle_delay).await;
                axum::Json(json!({"success": true, "transaction": format!("0x{n:064x}"), "network": network}))
            }),
        );
    tokio::spawn(async move { axum::serve(listener, app).await });
    (url, settles)
}

#[tokio::test(flavor = "multi_thread")]
async fn two_replicas_sharing_redis_serve_and_settle_one_payment_once() {
    let stack = Stack::start(31_337, "").await;
    let redis = Redis::start_on(free_port()).await;
    let (facilitator, settles) = yes_facilitator(&stack.devnet.state.network, Duration::ZERO).await;
    let yaml = table(&stack, &redis.url(), &facilitator, "");
    let a = support::Gateway::start(&yaml).await;
    let b = support::Gateway::start(&yaml).await;
    let (_, key) = stack.devnet.account(4);
    // `verify: local`: nothing but the shared claim stands between a payment and a second use.
    let header = encode_header(&python_sign(&stack.challenge("/local/once").await, &key));
    let mut tasks = Vec::new();
    for i in 0..8 {
        let url = format!("{}/local/once", if i % 2 == 0 { &a.url } else { &b.url });
        let h = header.clone();
        tasks.push(tokio::spawn(async move {
            let r = get(&url, &[("payment-signature", &h), ("x-echo-delay-ms", "300")]).await;
            let status = r.status().as_u16();
            (status, r.text().await.unwrap().contains("served_by"))
        }));
    }
    let mut answers = Vec::new();
    for t in tasks {
        answers.push(t.await.unwrap());
    }
    let served: Vec<_> = answers.iter().filter(|(s, body)| *s == 200 && *body).collect();
    assert_eq!(served.len(), 1, "{answers:?}");
    assert!(answers.iter().all(|(s, body)| *s == 200 || !body), "{answers:?}");
    assert_eq!(settles.load(Ordering::SeqCst), 1, "settled once");
    // And in turn, on either replica: refused, naming the transaction, no settle.
    for gw in [&a.url, &b.url] {
        let r = get(&format!("{gw}/local/once"), &[("payment-signature", &header)]).await;
        assert_eq!(r.status(), 409);
        assert!(!r.text().await.unwrap().contains("served_by"));
    }
    assert_eq!(settles.load(Ordering::SeqCst), 1);
}

#[tokio::test(flavor = "multi_thread")]
async fn redis_down_fails_priced_routes_closed_keeps_free_ones_and_recovers() {
    let stack = Stack::start(31_337, "").await;
    let (port, admin) = (free_port(), free_port());
    let yaml = table(
        &stack,
        &format!("redis://127.0.0.1:{port}"),
        &stack.facilitator.url,
        &format!("admin_listen: \"127.0.0.1:{admin}\"\nhealth: {{interval: 200ms}}"),
    );
    let gw = support::Gateway::start(&yaml).await;
    let readyz = || async move { get(&format!("http://127.0.0.1:{admin}/readyz"), &[]).await };
    // The store's health check has run (and found nothing listening).
    wait_for(
        "the store check to report Redis down",
        Duration::from_secs(30),
        || async { readyz().await.text().await.unwrap().contains("store: ") },
    )
    .await;
    let (payer, key) = stack.devnet.account(5);
    let header = encode_header(&python_sign(&stack.challenge("/paid/r").await, &key));
    let resp = get(&format!("{}/paid/r", gw.url), &[("payment-signature", &header)]).await;
    assert_eq!(resp.status(), 503);
    let body: Value = resp.json().await.unwrap();
    assert_eq!(body["error"], "store_unavailable", "{body}");
    assert_eq!(get(&format!("{}/free/x", gw.url), &[]).await.status(), 200);
    assert_eq!(
        stack.facilitator_calls().await,
        (0, 0, 0),
        "nothing reached the facilitator"
    );
    // Reported, not failed on: the free routes must stay in the Service.
    let degraded = readyz().await;
    assert_eq!(degraded.status(), 200);
    let text = degraded.text().await.unwrap();
    assert!(
        text.starts_with("ready, degraded") && text.contains("store: "),
        "{text}"
    );
    let metrics = get(&format!("http://127.0.0.1:{admin}/metrics"), &[])
        .await
        .text()
        .await
        .unwrap();
    let errors: u64 = metrics
        .lines()
        .find_map(|l| l.strip_prefix("x402_store_errors_total "))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or(0);
    assert!(errors >= 1, "store errors are counted: {metrics}");

    let _redis = Redis::start_on(port).await;
    let before = stack.devnet.balance(payer).await;
    // Recovers by itself, without a restart, once a connect is tried again (at most twice a second).
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    let resp = loop {
        let resp = get(&format!("{}/paid/r", gw.url), &[("payment-signature", &header)]).await;
        if resp.status() != 503 || std::time::Instant::now() > deadline {
            break resp;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    assert_eq!(resp.status(), 200, "recovered without a restart");
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while readyz().await.text().await.unwrap() != "ready\n" {
        assert!(
            std::time::Instant::now() < deadline,
            "the store never reported healthy again"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(stack.devnet.balance(payer).await, before - U256::from(PRICE));
}

#[tokio::test(flavor = "multi_thread")]
async fn a_payment_identifier_outcome_survives_a_restart() {
    let stack = Stack::start(31_337, "").await;
    let dir = tempfile::tempdir().unwrap();
    let store = format!("sqlite:{}", dir.path().join("claims.db").display());
    let yaml = format!(
        "{}  - path: /ided/**\n    price: \"$0.001\"\n    payment_identifier: optional\n",
        table(&stack, &store, &stack.facilitator.url, "")
    );
    let mut gw = Restartable::start(&yaml, dir, &[]).await;
    let (_, key) = stack.devnet.account(6);
    let url = format!("{}/ided/r", gw.url);
    let offer = decode_header(
        get(&url, &[])
            .await
            .headers()
            .get("payment-required")
            .unwrap()
            .to_str()
            .unwrap(),
    );
    let header = encode_header(&support::python_sign_with(
        &offer,
        &key,
        &[("PAYMENT_ID", "pay_restart_0123456789")],
    ));
    let first = get(&url, &[("payment-signature", &header)]).await;
    assert_eq!(first.status(), 200);
    let body = first.text().await.unwrap();
    assert_eq!(
        support::replay_once_kept(&url, &header).await.status(),
        200,
        "the outcome was kept"
    );
    gw.kill9();
    gw.run(&[]).await;
    let again = get(&url, &[("payment-signature", &header)]).await;
    assert_eq!(again.status(), 200, "the first answer, after a restart");
    assert_eq!(again.text().await.unwrap(), body);
    assert_eq!(stack.facilitator_calls().await.2, 1, "charged once");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_second_gateway_on_the_same_sqlite_file_refuses_to_start_and_the_first_keeps_its_records() {
    let stack = Stack::start(31_337, "").await;
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("claims.db");
    let yaml = table(&stack, &format!("sqlite:{}", db.display()), &stack.facilitator.url, "");
    let second = dir.path().join("second.yaml");
    std::fs::write(&second, yaml.replace("{listen}", &format!("127.0.0.1:{}", free_port()))).unwrap();
    let gw = Restartable::start(&yaml, dir, &[]).await;
    let (_, key) = stack.devnet.account(7);
    let header = encode_header(&python_sign(&stack.challenge("/paid/locked").await, &key));
    let url = format!("{}/paid/locked", gw.url);
    assert_eq!(get(&url, &[("payment-signature", &header)]).await.status(), 200);

    let name = "gateway-second-on-one-sqlite-file";
    let mut other = support::spawn(name, &["run", "-c", second.to_str().unwrap()], &[]);
    let mut exit = None;
    wait_until("the second gateway to exit", Duration::from_secs(30), || {
        exit = other.child.try_wait().unwrap();
        exit.is_some()
    })
    .await;
    assert!(!exit.unwrap().success(), "refused to start");
    let log = std::fs::read_to_string(support::repo().join(format!("target/test-logs/{name}.log"))).unwrap();
    assert!(
        log.contains(&format!("{} is in use by process", db.display())) && log.contains("redis"),
        "the error names the file and says what to do: {log}"
    );
    // The first one's records are untouched: the payment is still spent.
    let replay = get(&url, &[("payment-signature", &header)]).await;
    assert_eq!(replay.status(), 409);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_payment_being_settled_is_not_settled_again_by_a_request_on_another_replica() {
    let stack = Stack::start(31_337, "").await;
    let redis = Redis::start_on(free_port()).await;
    // `/settle` takes 2 s: the second request arrives while the first one's settlement is running.
    let (facilitator, settles) = yes_facilitator(&stack.devnet.state.network, Duration::from_secs(2)).await;
    let yaml = table(&stack, &redis.url(), &facilitator, "");
    let (a, b) = (
        support::Gateway::start(&yaml).await,
        support::Gateway::start(&yaml).await,
    );
    let (_, key) = stack.devnet.account(7);
    let header = encode_header(&python_sign(&stack.challenge("/local/slow").await, &key));
    let (url_a, h) = (format!("{}/local/slow", a.url), header.clone());
    let first = tokio::spawn(async move {
        let r = get(&url_a, &[("payment-signature", &h)]).await;
        (r.status().as_u16(), r.text().await.unwrap().contains("served_by"))
    });
    wait_until("the first replica's /settle", Duration::from_secs(30), || {
        settles.load(Ordering::SeqCst) == 1
    })
    .await;
    let second = get(&format!("{}/local/slow", b.url), &[("payment-signature", &header)]).await;
    assert_eq!(
        second.status(),
        504,
        "in doubt while the other replica settles: not served, not settled again"
    );
    assert!(!second.text().await.unwrap().contains("served_by"));
    assert_eq!(first.await.unwrap(), (200, true));
    assert_eq!(settles.load(Ordering::SeqCst), 1, "settled once");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_redis_that_may_evict_or_forget_claims_is_refused_unless_the_operator_says_warn() {
    let stack = Stack::start(31_337, "").await;
    for (args, problem) in [
        (
            &["--appendonly", "yes", "--maxmemory-policy", "allkeys-lru"][..],
            "maxmemory-policy is allkeys-lru",
        ),
        (&["--appendonly", "no"][..], "appendonly no"),
    ] {
        let redis = Redis::start_with(free_port(), args).await;
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("gateway.yaml");
        let yaml = table(&stack, &redis.url(), &stack.facilitator.url, "");
        std::fs::write(&file, yaml.replace("{listen}", &format!("127.0.0.1:{}", free_port()))).unwrap();
        let name = format!("gateway-redis-refused-{}", redis.port);
        let mut gw = support::spawn(&name, &["run", "-c", file.to_str().unwrap()], &[]);
        let mut exit = None;
        wait_until("the gateway to refuse the Redis", Duration::from_secs(30), || {
            exit = gw.child.try_wait().unwrap();
            exit.is_some()
        })
        .await;
        assert!(!exit.unwrap().success());
        let log = std::fs::read_to_string(support::repo().join(format!("target/test-logs/{name}.log"))).unwrap();
        assert!(
            log.contains(problem) && log.contains("redis_durability: warn"),
            "names the problem and the way out: {log}"
        );
    }
    // Told to warn, it runs on such a Redis.
    let redis = Redis::start_with(free_port(), &["--appendonly", "no"]).await;
    let yaml = table(&stack, &redis.url(), &stack.facilitator.url, "redis_durability: warn");
    let gw = support::Gateway::start(&yaml).await;
    let (_, key) = stack.devnet.account(3);
    let header = encode_header(&python_sign(&stack.challenge("/paid/warned").await, &key));
    let url = format!("{}/paid/warned", gw.url);
    assert_eq!(get(&url, &[("payment-signature", &header)]).await.status(), 200);
    assert_eq!(get(&url, &[("payment-signature", &header)]).await.status(), 409);
}

#[tokio::test(flavor = "multi_thread")]
async fn requests_never_queue_behind_a_connect_to_a_redis_that_does_not_answer() {
    let stack = Stack::start(31_337, "").await;
    // A Redis that accepts connections and never answers: every connect runs into its deadline (2 s).
    let silent = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = silent.local_addr().unwrap().port();
    let held = std::thread::spawn(move || silent.incoming().take(64).filter_map(Result::ok).collect::<Vec<_>>());
    let yaml = table(&stack, &format!("redis://127.0.0.1:{port}"), &stack.facilitator.url, "");
    let gw = support::Gateway::start(&yaml).await;
    let challenge = stack.challenge("/paid/q").await;
    let headers: Vec<String> = (0..6)
        .map(|i| encode_header(&python_sign(&challenge, &stack.devnet.account(i).1)))
        .collect();
    let started = std::time::Instant::now();
    let answers = futures_join(headers.iter().map(|h| {
        let (url, h) = (format!("{}/paid/q", gw.url), h.clone());
        async move { get(&url, &[("payment-signature", &h)]).await.status().as_u16() }
    }))
    .await;
    assert_eq!(answers, [503; 6], "refused, fail closed");
    // Queued behind one lock, six connects would take six deadlines; without a queue, one or two.
    assert!(
        started.elapsed() < Duration::from_secs(6),
        "requests waited in a queue: {:?}",
        started.elapsed()
    );
    assert_eq!(get(&format!("{}/free/q", gw.url), &[]).await.status(), 200);
    drop(held);
}

/// Runs the futures concurrently and collects their outputs in order.
async fn futures_join<F: std::future::Future<Output = u16> + Send + 'static>(fs: impl Iterator<Item = F>) -> Vec<u16> {
    let tasks: Vec<_> = fs.map(tokio::spawn).collect();
    let mut out = Vec::new();
    for t in tasks {
        out.push(t.await.unwrap());
    }
    out
}
