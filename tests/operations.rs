//! Operations (issue 9): metrics after real traffic (revenue equals the price, every series the Grafana
//! dashboard queries exists), the access log, background readiness (no probe calls the facilitator; an
//! outage fails readiness late and liveness never), hot reload under load (by file change through a
//! Kubernetes-style symlink swap, and by SIGHUP; a broken file keeps the old table; an old quote is still
//! honoured), SIGTERM during a paid request, shadow mode and fail-open. All against a real chain, our
//! facilitator and the official Python client.

mod support;

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use alloy::primitives::U256;
use serde_json::Value;
use support::{
    decode_header, encode_header, free_port, get, price_table, python_sign, spawn, wait_http, Facilitator, Proc, Stack,
};

/// `$0.001` in the devnet token's atomic units.
const PRICE: u64 = 1000;

/// The standard table with `top` keys added and `routes` appended after the standard routes.
fn table(stack: &Stack, facilitator: &str, top: &str, routes: &str) -> String {
    format!(
        "{}{routes}",
        price_table(&stack.devnet, &stack.upstream.url, facilitator, stack.pay_to, top)
    )
}

/// A gateway started from a file at a path the test chooses (so it can change it), with its admin port.
struct Gw {
    proc: Proc,
    url: String,
    admin: String,
    log: PathBuf,
    /// The config file.
    config: PathBuf,
    _dir: Option<tempfile::TempDir>,
}

impl Gw {
    /// A gateway on `stack` with a config file of its own: the standard table with an admin port, `top`
    /// keys added and `routes` appended.
    async fn for_stack(stack: &Stack, facilitator: &str, top: &str, routes: &str) -> Gw {
        let dir = tempfile::tempdir().unwrap();
        let admin = free_port();
        let path = dir.path().join("gateway.yaml");
        let top = format!("admin_listen: \"127.0.0.1:{admin}\"\n{top}");
        let listen = write_config(&path, &table(stack, facilitator, &top, routes));
        let mut gw = Gw::start(&path, &listen, admin).await;
        gw._dir = Some(dir);
        gw
    }

    async fn start(config: &Path, listen: &str, admin: u16) -> Gw {
        let name = format!("gateway-{listen}");
        let proc = spawn(&name, &["run", "-c", config.to_str().unwrap()], &[]);
        let url = format!("http://{listen}");
        wait_http(&url).await;
        Gw {
            proc,
            url,
            admin: format!("http://127.0.0.1:{admin}"),
            log: support::repo().join(format!("target/test-logs/{name}.log")),
            config: config.to_owned(),
            _dir: None,
        }
    }

    async fn metrics(&self) -> String {
        get(&format!("{}/metrics", self.admin), &[]).await.text().await.unwrap()
    }

    async fn ready(&self) -> (u16, String) {
        let r = get(&format!("{}/readyz", self.admin), &[]).await;
        (r.status().as_u16(), r.text().await.unwrap())
    }

    async fn wait_ready(&self) {
        let deadline = Instant::now() + Duration::from_secs(20);
        while self.ready().await.0 != 200 {
            assert!(Instant::now() < deadline, "not ready: {:?}", self.ready().await);
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    fn signal(&self, sig: &str) {
        let pid = self.proc.child.id().to_string();
        assert!(std::process::Command::new("kill")
            .args([sig, &pid])
            .status()
            .unwrap()
            .success());
    }
}

/// Writes `yaml` (with `{listen}` filled in) and returns the listen address.
fn write_config(path: &Path, yaml: &str) -> String {
    let listen = format!("127.0.0.1:{}", free_port());
    std::fs::write(path, yaml.replace("{listen}", &listen)).unwrap();
    listen
}

/// The sum of a metric's samples whose labels include every one of `labels` (`key="value"`).
fn sample(metrics: &str, name: &str, labels: &[&str]) -> Option<f64> {
    let mut found = None;
    for line in metrics.lines().filter(|l| !l.starts_with('#')) {
        let Some((series, value)) = line.rsplit_once(' ') else {
            continue;
        };
        let (metric, rest) = series.split_once('{').unwrap_or((series, ""));
        if metric == name && labels.iter().all(|l| rest.contains(l)) {
            *found.get_or_insert(0.0) += value.parse::<f64>().unwrap();
        }
    }
    found
}

/// Polls `/metrics` until the samples of `name` with `labels` sum to `want`, and returns that scrape:
/// requests are counted in their last phase, after the client already has its answer.
async fn metric_reaches(gw: &Gw, name: &str, labels: &[&str], want: f64) -> String {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let m = gw.metrics().await;
        if sample(&m, name, labels) == Some(want) {
            return m;
        }
        assert!(Instant::now() < deadline, "{name}{labels:?} never reached {want}:\n{m}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Polls `path` until it contains `text`, and returns it (log lines go through a non-blocking writer).
async fn file_contains(path: &Path, text: &str) -> String {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let content = std::fs::read_to_string(path).unwrap_or_default();
        if content.contains(text) {
            return content;
        }
        assert!(
            Instant::now() < deadline,
            "{} never contained {text:?}:\n{content}",
            path.display()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// The amount the first offer of a 402 asks for.
async fn quoted(url: &str) -> String {
    let resp = get(url, &[]).await;
    assert_eq!(resp.status(), 402, "{url}");
    let pr = decode_header(resp.headers()["payment-required"].to_str().unwrap());
    pr["accepts"][0]["amount"].as_str().unwrap().to_owned()
}

async fn challenge(url: &str) -> Value {
    let resp = get(url, &[]).await;
    assert_eq!(resp.status(), 402, "{url}");
    decode_header(resp.headers()["payment-required"].to_str().unwrap())
}

fn receipt(resp: &reqwest::Response) -> Value {
    decode_header(resp.headers()["payment-response"].to_str().unwrap())
}

#[tokio::test(flavor = "multi_thread")]
async fn metrics_after_traffic_match_the_dashboard_and_revenue_equals_the_price() {
    let stack = Stack::start(31_337, "").await;
    let shadow = "  - path: /shadow/**\n    price: \"$0.001\"\n    mode: shadow\n";
    let top = "log_format: json\nhealth: {interval: 200ms}";
    let gw = Gw::for_stack(&stack, &stack.facilitator.url, top, shadow).await;
    gw.wait_ready().await;

    let (payer, key) = stack.devnet.account(3);
    let before = stack.devnet.balance(payer).await;
    assert_eq!(get(&format!("{}/free/x", gw.url), &[]).await.status(), 200);
    let header = encode_header(&python_sign(&challenge(&format!("{}/paid/m", gw.url)).await, &key));
    let paid = get(&format!("{}/paid/m", gw.url), &[("payment-signature", &header)]).await;
    assert_eq!(paid.status(), 200);
    let tx = receipt(&paid)["transaction"].as_str().unwrap().to_owned();
    assert_eq!(
        get(&format!("{}/paid/m", gw.url), &[("payment-signature", &header)])
            .await
            .status(),
        409,
        "replayed"
    );
    assert_eq!(
        get(&format!("{}/paid/m", gw.url), &[("payment-signature", "bm90IGpzb24=")])
            .await
            .status(),
        402
    );
    assert_eq!(get(&format!("{}/shadow/m", gw.url), &[]).await.status(), 200);
    assert_eq!(stack.devnet.balance(payer).await, before - U256::from(PRICE));

    // Seven requests: start-up's probe (unmatched), free, challenged, paid, replayed, refused, shadow.
    let m = metric_reaches(&gw, "x402_requests_total", &[], 7.0).await;
    let asset = format!("asset=\"{}\"", stack.devnet.state.asset);
    let revenue = sample(&m, "x402_revenue_atomic_total", &["route=\"/paid/**\"", &asset]);
    assert_eq!(revenue, Some(PRICE as f64), "revenue equals the price paid:\n{m}");
    let count = |outcome: &str| sample(&m, "x402_requests_total", &[&format!("outcome=\"{outcome}\"")]);
    for outcome in [
        "free",
        "paid",
        "challenged",
        "refused_replay",
        "refused_payment",
        "shadow",
    ] {
        assert_eq!(count(outcome), Some(1.0), "{outcome}:\n{m}");
    }
    assert_eq!(
        sample(&m, "x402_replays_refused_total", &["route=\"/paid/**\""]),
        Some(1.0)
    );
    assert_eq!(sample(&m, "x402_settlements_total", &["result=\"success\""]), Some(1.0));
    assert_eq!(
        sample(
            &m,
            "x402_verifications_total",
            &["where=\"remote\"", "result=\"valid\""]
        ),
        Some(1.0)
    );
    assert_eq!(
        sample(
            &m,
            "x402_facilitator_request_duration_seconds_count",
            &["endpoint=\"settle\""]
        ),
        Some(1.0)
    );
    assert_eq!(sample(&m, "x402_build_info", &[]), Some(1.0));
    assert_eq!(sample(&m, "x402_ready", &[]), Some(1.0));

    // Every metric the shipped dashboard queries is exported.
    let dashboard: Value = serde_json::from_str(
        &std::fs::read_to_string(support::repo().join("deploy/grafana/x402-gateway.json")).unwrap(),
    )
    .unwrap();
    let mut exprs = Vec::new();
    collect_exprs(&dashboard, &mut exprs);
    assert!(exprs.len() >= 10, "the dashboard has panels: {exprs:?}");
    let exported: BTreeSet<&str> = m
        .lines()
        .filter(|l| !l.starts_with('#'))
        .filter_map(|l| l.split(['{', ' ']).next())
        .collect();
    let mut queried = BTreeSet::new();
    for e in &exprs {
        let mut rest = e.as_str();
        while let Some(i) = rest.find("x402_") {
            let tail = &rest[i..];
            let end = tail
                .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
                .unwrap_or(tail.len());
            queried.insert(tail[..end].to_owned());
            rest = &tail[end..];
        }
    }
    let missing: Vec<_> = queried.iter().filter(|q| !exported.contains(q.as_str())).collect();
    assert!(
        missing.is_empty(),
        "queried by the dashboard but not in /metrics: {missing:?}\n{m}"
    );

    // One access-log line per request, in JSON, with the payment's facts and nothing secret.
    let deadline = Instant::now() + Duration::from_secs(10);
    let entry = loop {
        let log = std::fs::read_to_string(&gw.log).unwrap();
        let found = log
            .lines()
            .filter_map(|l| serde_json::from_str::<Value>(l).ok())
            .find(|v| v["target"] == "x402_gateway::access" && v["fields"]["outcome"] == "paid");
        if let Some(v) = found {
            assert!(!log.contains(&header), "the payment header is never logged");
            assert!(!log.contains(key.trim_start_matches("0x")), "no key is logged");
            break v;
        }
        assert!(
            Instant::now() < deadline,
            "no access-log line for the paid request:\n{log}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    let f = &entry["fields"];
    assert_eq!(f["route"], "/paid/**");
    assert_eq!(f["method"], "GET");
    assert_eq!(f["status"], 200);
    assert_eq!(
        f["payer"].as_str().unwrap().to_lowercase(),
        payer.to_string().to_lowercase()
    );
    assert_eq!(f["amount"], PRICE.to_string());
    assert_eq!(f["network"], "eip155:31337");
    assert_eq!(f["transaction"], tx.as_str());
    assert!(f["upstream_ms"].as_f64().unwrap() > 0.0 && f["total_ms"].as_f64().unwrap() > 0.0);
}

fn collect_exprs(v: &Value, out: &mut Vec<String>) {
    match v {
        Value::Object(map) => {
            for (k, v) in map {
                match (k.as_str(), v) {
                    ("expr" | "query", Value::String(s)) => out.push(s.clone()),
                    ("query", Value::Object(q)) => {
                        if let Some(Value::String(s)) = q.get("query") {
                            out.push(s.clone());
                        }
                    }
                    _ => collect_exprs(v, out),
                }
            }
        }
        Value::Array(a) => a.iter().for_each(|v| collect_exprs(v, out)),
        _ => {}
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn readiness_is_local_state_only_and_an_outage_is_reported_not_failed_on() {
    let stack = Stack::start(31_337, "").await;

    // A facilitator of its own, so its /supported count is this gateway's alone.
    let own = Facilitator::start(&stack.devnet, &[]).await;
    let top = "health: {interval: 3600s, stale_after: 7200s}";
    let gw = Gw::for_stack(&stack, &own.url, top, "").await;
    gw.wait_ready().await;
    let supported = own.counter("facilitator_supported_requests_total").await;
    assert_eq!(supported, 1, "one background check so far");
    for _ in 0..20 {
        assert_eq!(gw.ready().await.0, 200);
    }
    assert_eq!(
        own.counter("facilitator_supported_requests_total").await,
        supported,
        "no probe called the facilitator"
    );

    // An outage: readiness holds until the last good answer is `stale_after` old; liveness never fails;
    // payments are refused with 503, free routes keep working.
    let doomed = Facilitator::start(&stack.devnet, &[]).await;
    let top = "health: {interval: 200ms, stale_after: 2s}";
    let gw = Gw::for_stack(&stack, &doomed.url, top, "").await;
    gw.wait_ready().await;
    let (_, key) = stack.devnet.account(4);
    let header = encode_header(&python_sign(&challenge(&format!("{}/paid/o", gw.url)).await, &key));
    drop(doomed);
    let down_at = Instant::now();
    let resp = get(&format!("{}/paid/o", gw.url), &[("payment-signature", &header)]).await;
    assert_eq!(resp.status(), 503);
    assert_eq!(resp.json::<Value>().await.unwrap()["error"], "facilitator_unavailable");
    assert_eq!(get(&format!("{}/free/o", gw.url), &[]).await.status(), 200);
    assert_eq!(
        gw.ready().await.0,
        200,
        "a blip does not take the replica out of its Service"
    );
    // Once stale, the outage is reported, but the replica stays ready: readiness is local state only, so an
    // outage never takes every replica (and the free routes) out of the Service.
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        assert_eq!(
            get(&format!("{}/healthz", gw.admin), &[]).await.status(),
            200,
            "liveness"
        );
        let (status, text) = gw.ready().await;
        assert_eq!(status, 200, "{text}");
        if text.contains("degraded") {
            assert!(text.contains("facilitator"), "{text}");
            assert!(down_at.elapsed() >= Duration::from_secs(1), "not before it went stale");
            break;
        }
        assert!(Instant::now() < deadline, "the outage was never reported");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let m = gw.metrics().await;
    assert_eq!(sample(&m, "x402_facilitator_up", &[]), Some(0.0), "{m}");
    assert_eq!(get(&format!("{}/free/o", gw.url), &[]).await.status(), 200);
}

/// Points `dir/gateway.yaml` at a new version of the file the way the kubelet updates a mounted
/// ConfigMap: a new timestamped folder, then an atomic rename of the `..data` symlink.
fn kube_swap(dir: &Path, version: usize, yaml: &str) {
    let folder = format!("..v{version}");
    std::fs::create_dir(dir.join(&folder)).unwrap();
    std::fs::write(dir.join(&folder).join("gateway.yaml"), yaml).unwrap();
    let tmp = dir.join("..data_tmp");
    std::os::unix::fs::symlink(&folder, &tmp).unwrap();
    std::fs::rename(&tmp, dir.join("..data")).unwrap();
    if version == 0 {
        std::os::unix::fs::symlink("..data/gateway.yaml", dir.join("gateway.yaml")).unwrap();
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn reload_under_load_changes_prices_keeps_old_quotes_and_survives_a_broken_file() {
    let stack = Stack::start(31_337, "").await;
    let dir = tempfile::tempdir().unwrap();
    let admin = free_port();
    let listen = format!("127.0.0.1:{}", free_port());
    let top = format!("admin_listen: \"127.0.0.1:{admin}\"\nreload: {{interval: 200ms}}");
    let v1 = table(&stack, &stack.facilitator.url, &top, "").replace("{listen}", &listen);
    kube_swap(dir.path(), 0, &v1);
    let gw = Gw::start(&dir.path().join("gateway.yaml"), &listen, admin).await;
    let paid_url = format!("{}/paid/r", gw.url);
    assert_eq!(quoted(&paid_url).await, "1000");

    // A quote taken before the reload, paid after it.
    let (old_payer, old_key) = stack.devnet.account(5);
    let old_payment = encode_header(&python_sign(&challenge(&paid_url).await, &old_key));

    // Load throughout: free requests and challenges; every answer must be 200 or 402.
    let stop = Arc::new(AtomicBool::new(false));
    let (done, failed) = (Arc::new(AtomicU64::new(0)), Arc::new(AtomicU64::new(0)));
    let mut load = Vec::new();
    for i in 0..4 {
        let (stop, done, failed, base) = (stop.clone(), done.clone(), failed.clone(), gw.url.clone());
        load.push(tokio::spawn(async move {
            let client = reqwest::Client::new();
            while !stop.load(Ordering::Relaxed) {
                let url = if i % 2 == 0 {
                    format!("{base}/free/l")
                } else {
                    format!("{base}/paid/l")
                };
                match client.get(&url).send().await {
                    Ok(r) if r.status() == 200 || r.status() == 402 => done.fetch_add(1, Ordering::Relaxed),
                    _ => failed.fetch_add(1, Ordering::Relaxed),
                };
            }
        }));
    }

    kube_swap(
        dir.path(),
        1,
        &v1.replace(
            "price: \"$0.001\"\n    description",
            "price: \"$0.002\"\n    description",
        ),
    );
    let deadline = Instant::now() + Duration::from_secs(10);
    while quoted(&paid_url).await != "2000" {
        assert!(Instant::now() < deadline, "the new price never showed");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }

    // The old quote is honoured at its old price; a new payment pays the new one.
    let before = stack.devnet.balance(old_payer).await;
    let resp = get(&paid_url, &[("payment-signature", &old_payment)]).await;
    assert_eq!(resp.status(), 200, "an old quote is still payable");
    assert_eq!(receipt(&resp)["success"], true);
    assert_eq!(stack.devnet.balance(old_payer).await, before - U256::from(PRICE));
    let (new_payer, new_key) = stack.devnet.account(6);
    let before = stack.devnet.balance(new_payer).await;
    let header = encode_header(&python_sign(&challenge(&paid_url).await, &new_key));
    assert_eq!(get(&paid_url, &[("payment-signature", &header)]).await.status(), 200);
    assert_eq!(stack.devnet.balance(new_payer).await, before - U256::from(2 * PRICE));

    // A broken file: the running table stays, the failure is counted.
    kube_swap(
        dir.path(),
        2,
        &v1.replace(
            "price: \"$0.001\"\n    description",
            "price: \"one dollar\"\n    description",
        ),
    );
    let deadline = Instant::now() + Duration::from_secs(10);
    while sample(
        &gw.metrics().await,
        "x402_config_reloads_total",
        &["result=\"failure\""],
    ) != Some(1.0)
    {
        assert!(Instant::now() < deadline, "the failed reload was not counted");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(quoted(&paid_url).await, "2000", "the old config keeps running");
    let m = gw.metrics().await;
    assert_eq!(
        sample(&m, "x402_config_reloads_total", &["result=\"success\""]),
        Some(1.0)
    );

    // A new recipient is never honoured for old quotes: a payment made out to the old one is refused.
    let to_old = encode_header(&python_sign(&challenge(&paid_url).await, &new_key));
    let new_pay_to = alloy::primitives::Address::repeat_byte(0x77);
    let v2 = v1.replace(
        "price: \"$0.001\"\n    description",
        "price: \"$0.002\"\n    description",
    );
    kube_swap(
        dir.path(),
        3,
        &v2.replace(&stack.pay_to.to_string(), &new_pay_to.to_string()),
    );
    let deadline = Instant::now() + Duration::from_secs(10);
    while challenge(&paid_url).await["accepts"][0]["payTo"]
        .as_str()
        .map(str::to_lowercase)
        != Some(new_pay_to.to_string().to_lowercase())
    {
        assert!(Instant::now() < deadline, "the new recipient never showed");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let before = stack.devnet.balance(new_payer).await;
    let resp = get(&paid_url, &[("payment-signature", &to_old)]).await;
    assert_eq!(resp.status(), 402, "an old quote to another recipient is refused");
    assert_eq!(stack.devnet.balance(new_payer).await, before);

    stop.store(true, Ordering::Relaxed);
    for t in load {
        t.await.unwrap();
    }
    assert!(done.load(Ordering::Relaxed) > 100, "the load ran");
    assert_eq!(
        failed.load(Ordering::Relaxed),
        0,
        "no request failed during the reloads"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn sighup_reloads_when_the_file_is_not_watched() {
    let stack = Stack::start(31_337, "").await;
    let mut gw = Gw::for_stack(&stack, &stack.facilitator.url, "reload: {watch: false}", "").await;
    let paid_url = format!("{}/paid/h", gw.url);
    let text = std::fs::read_to_string(&gw.config).unwrap();
    std::fs::write(
        &gw.config,
        text.replace(
            "price: \"$0.001\"\n    description",
            "price: \"$0.003\"\n    description",
        ),
    )
    .unwrap();
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(
        quoted(&paid_url).await,
        "1000",
        "not watched: nothing changes by itself"
    );
    gw.signal("-HUP");
    let deadline = Instant::now() + Duration::from_secs(10);
    while quoted(&paid_url).await != "3000" {
        assert!(Instant::now() < deadline, "SIGHUP did not reload");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(
        gw.proc.child.try_wait().unwrap().is_none(),
        "SIGHUP did not end the process"
    );
    assert_eq!(
        get(&format!("{}/free/h", gw.url), &[]).await.status(),
        200,
        "still serving"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn sigterm_during_a_paid_request_finishes_it_with_its_receipt_then_exits_0() {
    let stack = Stack::start(31_337, "").await;
    let top = "health: {interval: 200ms}\nshutdown: {drain_delay: 3s, grace_period: 20s}";
    let mut gw = Gw::for_stack(&stack, &stack.facilitator.url, top, "").await;
    gw.wait_ready().await;
    let (payer, key) = stack.devnet.account(7);
    let before = stack.devnet.balance(payer).await;
    let url = format!("{}/paid/slow", gw.url);
    let header = encode_header(&python_sign(&challenge(&url).await, &key));
    let reached = support::upstream_received(&stack.upstream.url).await;
    let request = tokio::spawn(async move {
        let resp = get(&url, &[("payment-signature", &header), ("x-echo-delay-ms", "5000")]).await;
        let status = resp.status().as_u16();
        (status, receipt(&resp))
    });
    support::wait_upstream_reached(&stack.upstream.url, reached).await;
    gw.signal("-TERM");
    let sent = Instant::now();
    let text = loop {
        let (status, text) = gw.ready().await;
        if status == 503 {
            break text;
        }
        assert!(
            sent.elapsed() < Duration::from_secs(2),
            "readiness did not go false at once"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    assert!(text.contains("shutting down"), "{text}");
    // Inside the drain delay the listener still accepts.
    assert_eq!(get(&format!("{}/free/t", gw.url), &[]).await.status(), 200);
    assert!(
        sent.elapsed() < Duration::from_secs(3),
        "that request was inside the drain delay"
    );

    let (status, receipt) = request.await.unwrap();
    assert_eq!(status, 200, "the paid request in flight completed");
    assert_eq!(receipt["success"], true);
    assert_eq!(stack.devnet.balance(payer).await, before - U256::from(PRICE));
    let code = loop {
        if let Some(s) = gw.proc.child.try_wait().unwrap() {
            break s;
        }
        assert!(
            sent.elapsed() < Duration::from_secs(20),
            "did not exit within the grace period"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    assert!(code.success(), "exit 0, got {code:?}");
    assert!(
        sent.elapsed() < Duration::from_secs(15),
        "exited once drained, not at the deadline"
    );
    assert!(
        reqwest::get(format!("{}/free/t", gw.url)).await.is_err(),
        "no longer listening"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn shadow_routes_proxy_everything_and_never_settle() {
    let stack = Stack::start(31_337, "").await;
    let shadow = "  - path: /shadow/**\n    price: \"$0.001\"\n    mode: shadow\n";
    let gw = Gw::for_stack(&stack, &stack.facilitator.url, "", shadow).await;
    let (payer, key) = stack.devnet.account(2);
    let before = stack.devnet.balance(payer).await;
    let calls = stack.facilitator_calls().await;

    let resp = get(&format!("{}/shadow/a", gw.url), &[]).await;
    assert_eq!(resp.status(), 200, "no payment, proxied");
    assert!(!resp.headers().contains_key("payment-required"));
    // A payment for the same terms (the /paid route's price), proxied and not settled; the upstream does
    // not see it.
    let header = encode_header(&python_sign(&challenge(&format!("{}/paid/a", gw.url)).await, &key));
    let resp = get(&format!("{}/shadow/a", gw.url), &[("payment-signature", &header)]).await;
    assert_eq!(resp.status(), 200);
    assert!(!resp.headers().contains_key("payment-response"));
    let echo: Value = resp.json().await.unwrap();
    assert!(echo["headers"].get("payment-signature").is_none(), "{echo}");
    let resp = get(
        &format!("{}/shadow/a", gw.url),
        &[("payment-signature", "bm90IGpzb24=")],
    )
    .await;
    assert_eq!(resp.status(), 200, "a bad payment, proxied too");

    assert_eq!(
        stack.facilitator_calls().await,
        calls,
        "the facilitator was never called"
    );
    assert_eq!(stack.devnet.balance(payer).await, before, "nothing moved");
    let m = metric_reaches(&gw, "x402_requests_total", &["outcome=\"shadow\""], 3.0).await;
    for decision in ["would_challenge", "would_accept", "would_refuse", "would_settle"] {
        let d = format!("decision=\"{decision}\"");
        assert_eq!(
            sample(&m, "x402_shadow_decisions_total", &[&d]),
            Some(1.0),
            "{decision}:\n{m}"
        );
    }
    assert_eq!(sample(&m, "x402_revenue_atomic_total", &[]), Some(0.0));
}

#[tokio::test(flavor = "multi_thread")]
async fn fail_open_serves_unpaid_and_counts_it_only_where_allowed() {
    let stack = Stack::start(31_337, "").await;
    let dead = format!("http://127.0.0.1:{}", free_port());
    let open = "  - path: /open/**\n    price: \"$0.001\"\n    on_facilitator_error: allow\n  - path: /open-local/**\n    price: \"$0.001\"\n    verify: local\n    on_facilitator_error: allow\n";
    let gw = Gw::for_stack(&stack, &dead, "", open).await;
    let (payer, key) = stack.devnet.account(1);
    let before = stack.devnet.balance(payer).await;

    let header = encode_header(&python_sign(&challenge(&format!("{}/open/x", gw.url)).await, &key));
    let resp = get(&format!("{}/open/x", gw.url), &[("payment-signature", &header)]).await;
    assert_eq!(resp.status(), 200, "served unpaid");
    assert!(!resp.headers().contains_key("payment-response"));
    // One signature serves at most one unpaid response: the same one again is spent, not served.
    let again = get(&format!("{}/open/x", gw.url), &[("payment-signature", &header)]).await;
    assert_eq!(again.status(), 402, "a spent signature buys nothing more");
    let reason = decode_header(again.headers().get("payment-required").unwrap().to_str().unwrap());
    assert!(
        reason["error"]
            .as_str()
            .unwrap()
            .starts_with("invalid_exact_evm_nonce_already_used"),
        "{reason}"
    );
    assert!(!again.text().await.unwrap().contains("served_by"));
    let header = encode_header(&python_sign(&challenge(&format!("{}/paid/x", gw.url)).await, &key));
    let resp = get(&format!("{}/paid/x", gw.url), &[("payment-signature", &header)]).await;
    assert_eq!(resp.status(), 503, "deny (the default) refuses");
    // With `verify: local` the facilitator is first needed at /settle: once settling, a payment may have
    // been sent, so it is never served unpaid, even where failing open is allowed.
    let header = encode_header(&python_sign(
        &challenge(&format!("{}/open-local/x", gw.url)).await,
        &key,
    ));
    let resp = get(&format!("{}/open-local/x", gw.url), &[("payment-signature", &header)]).await;
    assert_eq!(resp.status(), 503, "not served unpaid after a failed /settle");
    assert!(!resp.text().await.unwrap().contains("served_by"));

    assert_eq!(stack.devnet.balance(payer).await, before);
    // Start-up's probe (unmatched), three challenges, the fail-open, the spent replay and two refusals.
    let m = metric_reaches(&gw, "x402_requests_total", &[], 8.0).await;
    assert_eq!(
        sample(
            &m,
            "x402_requests_total",
            &["route=\"/open/**\"", "outcome=\"fail_open\""]
        ),
        Some(1.0),
        "{m}"
    );
    assert_eq!(
        sample(
            &m,
            "x402_requests_total",
            &["route=\"/paid/**\"", "outcome=\"facilitator_error\""]
        ),
        Some(1.0)
    );
    file_contains(&gw.log, "serving this payment once, unpaid").await;
}
