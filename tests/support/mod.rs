//! Test support: starts the real pieces (anvil devnet with the test token, our facilitator, the gateway,
//! the demo upstream) as subprocesses of the built binary on free ports, and tears them down on drop.
#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use alloy::primitives::{Address, U256};
use serde_json::{json, Value};
use x402_gateway::tools::chain::Chain;
use x402_gateway::tools::devnet::DevnetState;

/// The repository root.
pub fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// The binary under test.
pub fn bin() -> PathBuf {
    PathBuf::from(env!("CARGO_BIN_EXE_x402-gateway"))
}

/// Ports handed to tests: below Linux's ephemeral range (32768 and up), so no outgoing connection is given
/// one between the test choosing it and a server binding it.
const TEST_PORTS: std::ops::Range<u16> = 20_000..32_000;

/// A port nobody listens on right now, never handed out twice by one test process: each comes from a counter
/// (started at a point of its own per process), so two tests cannot pick the same one, as two binds to
/// port 0 released at once could.
pub fn free_port() -> u16 {
    use std::sync::atomic::{AtomicU32, Ordering};
    static NEXT: AtomicU32 = AtomicU32::new(u32::MAX);
    let span = u32::from(TEST_PORTS.end - TEST_PORTS.start);
    let _ = NEXT.compare_exchange(
        u32::MAX,
        std::process::id().wrapping_mul(7919) % span,
        Ordering::SeqCst,
        Ordering::SeqCst,
    );
    for _ in 0..span {
        let n = NEXT.fetch_add(1, Ordering::SeqCst) % span;
        let port = TEST_PORTS.start + u16::try_from(n).unwrap();
        if std::net::TcpListener::bind(("127.0.0.1", port)).is_ok() {
            return port;
        }
    }
    panic!("no free port in {TEST_PORTS:?}")
}

/// A child process killed when dropped.
pub struct Proc {
    pub child: Child,
    pub name: String,
}

impl Drop for Proc {
    fn drop(&mut self) {
        // SIGTERM first so devnet stops its anvil; then make sure.
        let _ = Command::new("kill").arg(self.child.id().to_string()).status();
        let deadline = Instant::now() + Duration::from_secs(5);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = self.child.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Spawns the binary with `args` and `env`; its stderr goes to `target/test-logs/<name>.log`.
pub fn spawn(name: &str, args: &[&str], env: &[(&str, &str)]) -> Proc {
    let logs = repo().join("target/test-logs");
    std::fs::create_dir_all(&logs).unwrap();
    let log = std::fs::File::create(logs.join(format!("{name}.log"))).unwrap();
    let child = Command::new(bin())
        .args(args)
        .envs(env.iter().copied())
        .env("RUST_LOG", "info")
        .stdout(log.try_clone().unwrap())
        .stderr(log)
        .spawn()
        .unwrap();
    Proc {
        child,
        name: name.to_owned(),
    }
}

/// Runs `cmd` to its end: whether it succeeded, and what it wrote (stdout, then stderr).
pub fn output(cmd: &mut Command) -> (bool, String) {
    let out = cmd.output().unwrap();
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (out.status.success(), text)
}

/// Waits until `cond` holds, panicking with `what` after `timeout`.
pub async fn wait_until<F: FnMut() -> bool>(what: &str, timeout: Duration, mut cond: F) {
    let deadline = Instant::now() + timeout;
    while !cond() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Waits until the async `cond` holds, panicking with `what` after `timeout`.
pub async fn wait_for<F, Fut>(what: &str, timeout: Duration, mut cond: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let deadline = Instant::now() + timeout;
    while !cond().await {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// How many requests the echo upstream at `url` has received.
pub async fn upstream_received(url: &str) -> u64 {
    let v: Value = reqwest::get(format!("{url}/__echo/received"))
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    v["received"].as_u64().unwrap()
}

/// Waits until the echo upstream at `url` has received more than `before` requests: a request sent
/// through the gateway got past payment verification and is now being served.
pub async fn wait_upstream_reached(url: &str, before: u64) {
    wait_for("the request to reach the upstream", Duration::from_secs(30), || async {
        upstream_received(url).await > before
    })
    .await;
}

/// Waits until `url` answers any HTTP status.
pub async fn wait_http(url: &str) {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        if reqwest::get(url).await.is_ok() {
            return;
        }
        assert!(Instant::now() < deadline, "timed out waiting for {url}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// A running devnet and what its state file says.
pub struct Devnet {
    pub proc: Proc,
    pub state: DevnetState,
    pub dir: tempfile::TempDir,
}

impl Devnet {
    /// Starts `x402-gateway devnet` with the given chain id on a free port.
    pub async fn start(chain_id: u64) -> Devnet {
        let dir = tempfile::tempdir().unwrap();
        let state_file = dir.path().join("devnet.json");
        let port = free_port().to_string();
        let chain = chain_id.to_string();
        let proc = spawn(
            &format!("devnet-{port}"),
            &[
                "devnet",
                "--port",
                &port,
                "--chain-id",
                &chain,
                "--state-file",
                state_file.to_str().unwrap(),
            ],
            &[],
        );
        wait_until("the devnet state file", Duration::from_secs(90), || state_file.exists()).await;
        let state: DevnetState = serde_json::from_slice(&std::fs::read(&state_file).unwrap()).unwrap();
        Devnet { proc, state, dir }
    }

    pub fn asset(&self) -> Address {
        self.state.asset.parse().unwrap()
    }

    pub fn account(&self, i: usize) -> (Address, String) {
        let a = &self.state.accounts[i];
        (a.address.parse().unwrap(), a.private_key.clone())
    }

    pub async fn chain(&self) -> Chain {
        Chain::connect(&self.state.rpc_url.parse().unwrap(), None)
            .await
            .unwrap()
    }

    pub async fn balance(&self, who: Address) -> U256 {
        self.chain().await.balance_of(self.asset(), who).await.unwrap()
    }

    /// The plain token's balance of `who`.
    pub async fn plain_balance(&self, who: Address) -> U256 {
        let plain = self.state.plain_asset.parse().unwrap();
        self.chain().await.balance_of(plain, who).await.unwrap()
    }

    /// A raw JSON-RPC call.
    pub async fn rpc(&self, method: &str, params: Value) -> Value {
        let body = json!({"jsonrpc": "2.0", "id": 1, "method": method, "params": params});
        let resp: Value = reqwest::Client::new()
            .post(&self.state.rpc_url)
            .json(&body)
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        assert!(resp.get("error").is_none(), "{method}: {resp}");
        resp["result"].clone()
    }

    /// The receipt of `tx`, which must exist.
    pub async fn receipt(&self, tx: &str) -> Value {
        let r = self.rpc("eth_getTransactionReceipt", json!([tx])).await;
        assert!(!r.is_null(), "no receipt for {tx}");
        r
    }
}

/// Our facilitator, started against a devnet.
pub struct Facilitator {
    pub proc: Proc,
    pub url: String,
}

impl Facilitator {
    pub async fn start(devnet: &Devnet, extra: &[&str]) -> Facilitator {
        let listen = format!("127.0.0.1:{}", free_port());
        let mut args = vec!["facilitator", "--listen", &listen, "--rpc-url", &devnet.state.rpc_url];
        args.extend_from_slice(extra);
        let proc = spawn(
            &format!("facilitator-{listen}"),
            &args,
            &[(
                "X402_FACILITATOR_PRIVATE_KEY",
                devnet.state.facilitator_private_key.as_str(),
            )],
        );
        let url = format!("http://{listen}");
        wait_http(&format!("{url}/healthz")).await;
        Facilitator { proc, url }
    }

    pub async fn post(&self, path: &str, body: &Value) -> (u16, Value) {
        let resp = reqwest::Client::new()
            .post(format!("{}{path}", self.url))
            .json(body)
            .send()
            .await
            .unwrap();
        let status = resp.status().as_u16();
        (status, resp.json().await.unwrap())
    }

    /// A counter from `/metrics`.
    pub async fn counter(&self, name: &str) -> u64 {
        let text = reqwest::get(format!("{}/metrics", self.url))
            .await
            .unwrap()
            .text()
            .await
            .unwrap();
        text.lines()
            .find_map(|l| l.strip_prefix(name).and_then(|rest| rest.trim().parse().ok()))
            .unwrap_or_else(|| panic!("no {name} in /metrics"))
    }
}

/// Python from the venv `scripts/setup` makes.
pub fn python() -> PathBuf {
    let p = repo().join("tools/venv/bin/python");
    assert!(p.exists(), "{} missing: run scripts/setup", p.display());
    p
}

/// Node.
pub fn node() -> PathBuf {
    PathBuf::from("node")
}

/// Runs an official-client wrapper from `tests/clients` with `env`, feeding `stdin`; returns its one JSON line.
pub fn run_client(program: &Path, script: &str, env: &[(&str, &str)], stdin: Option<&str>) -> Value {
    use std::io::Write;
    let mut child = Command::new(program)
        .arg(repo().join("tests/clients").join(script))
        .envs(env.iter().copied())
        .current_dir(repo())
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    if let Some(input) = stdin {
        child.stdin.take().unwrap().write_all(input.as_bytes()).unwrap();
    }
    drop(child.stdin.take());
    let out = child.wait_with_output().unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    let line = stdout.lines().last().unwrap_or_else(|| {
        panic!(
            "{script} printed nothing; stderr: {}",
            String::from_utf8_lossy(&out.stderr)
        )
    });
    serde_json::from_str(line).unwrap_or_else(|e| {
        panic!(
            "{script} printed {line:?} ({e}); stderr: {}",
            String::from_utf8_lossy(&out.stderr)
        )
    })
}

/// Signs a payment for `payment_required` with the official Python SDK.
pub fn python_sign(payment_required: &Value, private_key: &str) -> Value {
    python_sign_with(payment_required, private_key, &[])
}

/// Like `python_sign`, with extra environment for the wrapper (e.g. `PAYMENT_ID`).
pub fn python_sign_with(payment_required: &Value, private_key: &str, env: &[(&str, &str)]) -> Value {
    let mut vars = vec![("PRIVATE_KEY", private_key)];
    vars.extend_from_slice(env);
    let v = run_client(&python(), "sign_python.py", &vars, Some(&payment_required.to_string()));
    assert!(v.get("error").is_none(), "python signer failed: {v}");
    v
}

/// Seconds since the epoch.
pub fn now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs()
}

/// The echo upstream (`x402-gateway upstream`).
pub struct Upstream {
    pub proc: Proc,
    pub url: String,
}

impl Upstream {
    pub async fn start() -> Upstream {
        let listen = format!("127.0.0.1:{}", free_port());
        let proc = spawn(&format!("upstream-{listen}"), &["upstream", "--listen", &listen], &[]);
        let url = format!("http://{listen}");
        wait_http(&url).await;
        Upstream { proc, url }
    }
}

/// The gateway under test, started from a YAML price table.
pub struct Gateway {
    pub proc: Proc,
    pub url: String,
    pub dir: tempfile::TempDir,
}

impl Gateway {
    /// `yaml` may use `{listen}` for the address the gateway must listen on.
    pub async fn start(yaml: &str) -> Gateway {
        let dir = tempfile::tempdir().unwrap();
        let listen = format!("127.0.0.1:{}", free_port());
        let path = dir.path().join("gateway.yaml");
        std::fs::write(&path, yaml.replace("{listen}", &listen)).unwrap();
        let proc = spawn(
            &format!("gateway-{listen}"),
            &["run", "-c", path.to_str().unwrap()],
            &[],
        );
        let url = format!("http://{listen}");
        wait_http(&url).await;
        Gateway { proc, url, dir }
    }

    /// What the gateway has logged so far.
    pub fn log(&self) -> String {
        let listen = self.url.trim_start_matches("http://");
        std::fs::read_to_string(repo().join(format!("target/test-logs/gateway-{listen}.log"))).unwrap_or_default()
    }
}

/// The standard test price table: `/free/**` free, `/paid/**` and `/before/**` at 1000 atomic units of the
/// devnet token, paid to `pay_to`.
pub fn price_table(devnet: &Devnet, upstream: &str, facilitator: &str, pay_to: Address, extra: &str) -> String {
    format!(
        r#"listen: "{{listen}}"
upstreams:
  default: "{upstream}"
facilitator:
  url: "{facilitator}"
  timeout: 20s
pay_to: "{pay_to}"
assets:
  - network: "{network}"
    address: "{asset}"
    name: "{name}"
    version: "{version}"
    decimals: 6
    symbol: USDC
accepts: ["{network}"]
{extra}
routes:
  - path: /free/**
    free: true
  - path: /paid/**
    price: "$0.001"
    description: "test resource"
  - path: /before/**
    price: "$0.001"
    settle: before
  - path: /local/**
    price: "$0.001"
    verify: local
"#,
        network = devnet.state.network,
        asset = devnet.state.asset,
        name = devnet.state.asset_name,
        version = devnet.state.asset_version,
    )
}

/// A whole stack: devnet, facilitator, echo upstream, gateway.
pub struct Stack {
    pub devnet: Devnet,
    pub facilitator: Facilitator,
    pub upstream: Upstream,
    pub gateway: Gateway,
    pub pay_to: Address,
}

impl Stack {
    pub async fn start(chain_id: u64, extra: &str) -> Stack {
        Self::start_with(chain_id, extra, &[]).await
    }

    /// Like `start`, with extra flags for the facilitator.
    pub async fn start_with(chain_id: u64, extra: &str, facilitator_args: &[&str]) -> Stack {
        let devnet = Devnet::start(chain_id).await;
        let facilitator = Facilitator::start(&devnet, facilitator_args).await;
        let upstream = Upstream::start().await;
        let (pay_to, _) = devnet.account(8);
        let gateway = Gateway::start(&price_table(&devnet, &upstream.url, &facilitator.url, pay_to, extra)).await;
        Stack {
            devnet,
            facilitator,
            upstream,
            gateway,
            pay_to,
        }
    }

    /// Facilitator calls so far: (verify, settle, transactions sent).
    pub async fn facilitator_calls(&self) -> (u64, u64, u64) {
        let f = &self.facilitator;
        (
            f.counter("facilitator_verify_requests_total").await,
            f.counter("facilitator_settle_requests_total").await,
            f.counter("facilitator_transactions_sent_total").await,
        )
    }

    /// Another gateway on this stack's devnet and upstream, with its own facilitator URL and `extra`
    /// top-level keys.
    pub async fn gateway_with(&self, facilitator: &str, extra: &str) -> Gateway {
        Gateway::start(&self.table_with(facilitator, extra)).await
    }

    /// The standard price table on this stack, with its facilitator and `extra` top-level keys.
    pub fn table(&self, extra: &str) -> String {
        self.table_with(&self.facilitator.url, extra)
    }

    fn table_with(&self, facilitator: &str, extra: &str) -> String {
        price_table(&self.devnet, &self.upstream.url, facilitator, self.pay_to, extra)
    }

    /// Fetches the 402 for `path` and returns its decoded `PAYMENT-REQUIRED`.
    pub async fn challenge(&self, path: &str) -> Value {
        let resp = reqwest::get(format!("{}{path}", self.gateway.url)).await.unwrap();
        assert_eq!(resp.status(), 402);
        decode_header(resp.headers().get("payment-required").unwrap().to_str().unwrap())
    }
}

/// Base64 JSON header → JSON.
pub fn decode_header(v: &str) -> Value {
    use base64::Engine;
    serde_json::from_slice(&base64::engine::general_purpose::STANDARD.decode(v).unwrap()).unwrap()
}

/// JSON → base64 header value.
pub fn encode_header(v: &Value) -> String {
    use base64::Engine;
    base64::engine::general_purpose::STANDARD.encode(v.to_string())
}

/// GET with extra headers.
pub async fn get(url: &str, headers: &[(&str, &str)]) -> reqwest::Response {
    let mut rb = reqwest::Client::new().get(url);
    for (k, v) in headers {
        rb = rb.header(*k, *v);
    }
    rb.send().await.unwrap()
}

/// Presents a payment again under its `payment-identifier`, waiting while the first request is still being
/// finished (409 with `Retry-After`): its outcome is kept just after its last byte.
pub async fn replay_once_kept(url: &str, header: &str) -> reqwest::Response {
    let mut r = get(url, &[("payment-signature", header)]).await;
    for _ in 0..50 {
        if r.status() != 409 || !r.headers().contains_key("retry-after") {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
        r = get(url, &[("payment-signature", header)]).await;
    }
    r
}

/// A real `redis-server` on a port of its own, with a data directory of its own; killed when dropped.
pub struct Redis {
    child: Child,
    pub port: u16,
    _dir: tempfile::TempDir,
}

impl Redis {
    /// A Redis that keeps every claim, as the gateway requires: no eviction, an append-only file.
    pub async fn start_on(port: u16) -> Redis {
        Self::start_with(port, &["--appendonly", "yes"]).await
    }

    /// A Redis with `args` on top of a port, loopback and a data directory of its own.
    pub async fn start_with(port: u16, args: &[&str]) -> Redis {
        let dir = tempfile::tempdir().unwrap();
        let child = Command::new("redis-server")
            .args(["--port", &port.to_string(), "--save", "", "--bind", "127.0.0.1"])
            .args(["--dir", dir.path().to_str().unwrap()])
            .args(args)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("redis-server (scripts/setup installs it)");
        wait_until("redis-server", Duration::from_secs(10), || {
            std::net::TcpStream::connect(("127.0.0.1", port)).is_ok()
        })
        .await;
        Redis { child, port, _dir: dir }
    }

    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}/0", self.port)
    }
}

impl Drop for Redis {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
