//! Gateway overhead under load: requests/s and latency percentiles for the same upstream reached directly,
//! through a free route, as a 402 challenge, as a paid request (fresh payment each time), and as a replayed
//! payment (one already settled, refused with 409).
//!
//! The paid scenario uses an *isolating fake facilitator* (answers every /verify valid and every /settle
//! successful at once) so the figure is the gateway's own cost, not the chain's; correctness against a
//! real chain is what `tests/` prove. Run: `cargo bench --bench proxy` (release build of the binary first).
//! Client and server share this machine's cores, so compare runs on the same machine only;
//! `X402_BENCH_BINARY=PATH` measures another build of the gateway with the same client.

use std::sync::Arc;
use std::time::{Duration, Instant};

use alloy::primitives::{Address, B256, U256};
use alloy::signers::local::PrivateKeySigner;
use serde_json::json;
use x402_gateway::protocol::exact::{Requirement, Scheme};
use x402_gateway::protocol::network::Network;

const CONCURRENCY: usize = 16;
const REQUESTS: usize = 4000;
const ASSET: &str = "0x5FbDB2315678afecb367f032d93F642f64180aa3";
const PAY_TO: &str = "0x3C44CdDdB6a900fa2b585dd299e03d12FA4293BC";

fn free_addr() -> String {
    let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    l.local_addr().unwrap().to_string()
}

async fn isolating_facilitator() -> String {
    use axum::routing::post;
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    let app = axum::Router::new()
        .route("/verify", post(|| async { axum::Json(json!({"isValid": true})) }))
        .route("/settle", post(|| async { axum::Json(json!({"success": true, "transaction": format!("{}", B256::repeat_byte(0xab)), "network": "eip155:31337"})) }));
    tokio::spawn(async move { axum::serve(listener, app).await });
    url
}

struct Run {
    name: &'static str,
    ok: usize,
    elapsed: Duration,
    latencies: Vec<Duration>,
}

impl Run {
    fn print(&mut self) {
        self.latencies.sort_unstable();
        let p = |q: f64| {
            self.latencies
                .get(((self.latencies.len() as f64 - 1.0) * q) as usize)
                .copied()
                .unwrap_or_default()
        };
        println!(
            "{:<28} {:>8.0} req/s   p50 {:>7.2} ms   p99 {:>7.2} ms   ({} ok of {REQUESTS}, {CONCURRENCY} concurrent)",
            self.name,
            self.ok as f64 / self.elapsed.as_secs_f64(),
            p(0.5).as_secs_f64() * 1e3,
            p(0.99).as_secs_f64() * 1e3,
            self.ok
        );
    }
}

/// Fires REQUESTS requests from CONCURRENCY workers; `make(i)` builds request i; `want` is the expected status.
async fn load(
    name: &'static str,
    client: &reqwest::Client,
    want: u16,
    make: Arc<dyn Fn(usize) -> reqwest::RequestBuilder + Send + Sync>,
) -> Run {
    let next = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let start = Instant::now();
    let mut workers = Vec::new();
    for _ in 0..CONCURRENCY {
        let (next, make, _client) = (next.clone(), make.clone(), client.clone());
        workers.push(tokio::spawn(async move {
            let mut lat = Vec::new();
            let mut ok = 0;
            loop {
                let i = next.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                if i >= REQUESTS {
                    return (ok, lat);
                }
                let t = Instant::now();
                if let Ok(r) = make(i).send().await {
                    let status = r.status().as_u16();
                    let _ = r.bytes().await;
                    if status == want {
                        ok += 1;
                    }
                }
                lat.push(t.elapsed());
            }
        }));
    }
    let mut run = Run {
        name,
        ok: 0,
        elapsed: Duration::ZERO,
        latencies: Vec::new(),
    };
    for w in workers {
        let (ok, lat) = w.await.unwrap();
        run.ok += ok;
        run.latencies.extend(lat);
    }
    run.elapsed = start.elapsed();
    run
}

#[tokio::main]
async fn main() {
    let upstream_addr = free_addr();
    let up = tokio::net::TcpListener::bind(&upstream_addr).await.unwrap();
    tokio::spawn(x402_gateway::tools::upstream::serve(up));
    let facilitator = isolating_facilitator().await;
    let listen = free_addr();
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("bench.yaml");
    std::fs::write(
        &config,
        format!(
            "listen: \"{listen}\"\nupstreams:\n  default: \"http://{upstream_addr}\"\nfacilitator:\n  url: \"{facilitator}\"\npay_to: \"{PAY_TO}\"\nassets:\n  - network: eip155:31337\n    address: \"{ASSET}\"\n    name: USD Coin\n    version: \"2\"\n    decimals: 6\naccepts: [eip155:31337]\nroutes:\n  - path: /free/**\n    free: true\n  - path: /paid/**\n    price: \"$0.001\"\n"
        ),
    )
    .unwrap();
    // `X402_BENCH_BINARY` runs another build (an older commit's, say) under the same load, for before/after.
    let binary = std::env::var("X402_BENCH_BINARY").unwrap_or_else(|_| env!("CARGO_BIN_EXE_x402-gateway").to_owned());
    let mut gateway = std::process::Command::new(binary)
        .args(["run", "-c", config.to_str().unwrap()])
        .env("RUST_LOG", "warn")
        .spawn()
        .unwrap();
    let client = reqwest::Client::new();
    let gw = format!("http://{listen}");
    while client.get(format!("{gw}/free/ready")).send().await.is_err() {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }

    // Fresh, valid payments signed up front so the paid scenario measures the gateway, not the signer.
    let signer: PrivateKeySigner = "0x59c6995e998f97a5a0044966f0945389dc9e86dae88c7a8412f4603b6b78690d"
        .parse()
        .unwrap();
    let req = Requirement {
        scheme: Scheme::Exact,
        network: Network::new(31_337),
        asset: ASSET.parse().unwrap(),
        pay_to: PAY_TO.parse::<Address>().unwrap(),
        amount: U256::from(1000),
        max_timeout_seconds: 120,
        eip712_name: "USD Coin".into(),
        eip712_version: "2".into(),
        transfer: Default::default(),
    };
    let now = x402_gateway::core::time::unix_now();
    let headers: Arc<Vec<String>> = Arc::new(
        (0..REQUESTS)
            .map(|_| {
                let auth = x402_gateway::tools::pay::authorize(&signer, &req, 0, now + 100);
                let payload = x402_gateway::tools::pay::sign(&signer, &req, auth).unwrap();
                x402_gateway::protocol::codec::encode(
                    &json!({"x402Version": 2, "accepted": req.to_v2(), "payload": payload.to_json()}),
                )
            })
            .collect(),
    );

    let (c1, c2, c3, c4, c5) = (
        client.clone(),
        client.clone(),
        client.clone(),
        client.clone(),
        client.clone(),
    );
    let replayed = headers[0].clone();
    let direct = format!("http://{upstream_addr}/free/x");
    let free = format!("{gw}/free/x");
    let paid = format!("{gw}/paid/x");
    let (paid2, paid3) = (paid.clone(), paid.clone());
    let mut runs = vec![
        load("upstream directly", &client, 200, Arc::new(move |_| c1.get(&direct))).await,
        load("gateway, free route", &client, 200, Arc::new(move |_| c2.get(&free))).await,
        load("gateway, 402 challenge", &client, 402, Arc::new(move |_| c3.get(&paid))).await,
        load(
            "gateway, paid (fresh payment)",
            &client,
            200,
            Arc::new(move |i| c4.get(&paid2).header("payment-signature", headers[i].clone())),
        )
        .await,
        load(
            "gateway, replayed payment",
            &client,
            409,
            Arc::new(move |_| c5.get(&paid3).header("payment-signature", replayed.clone())),
        )
        .await,
    ];
    for r in &mut runs {
        r.print();
    }
    let _ = gateway.kill();
    let _ = gateway.wait();
}
