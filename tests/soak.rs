//! The soak: mixed load (free, unpaid, paid, replayed, malformed) through one gateway with the SQLite store,
//! against the real devnet and our facilitator, for `SOAK_SECS` (default 600). Not part of the test
//! command: run it with `scripts/soak`. It reports every unexpected answer (there must be none) and the
//! gateway's resident memory at the start, the middle and the end.

mod support;

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use alloy::primitives::U256;
use alloy::signers::local::PrivateKeySigner;
use serde_json::json;
use support::{encode_header, Stack};
use x402_gateway::protocol::exact::{Requirement, Scheme};
use x402_gateway::protocol::network::Network;

/// Resident memory of a process, in KiB.
fn rss_kib(pid: u32) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()
        .and_then(|s| {
            s.lines().find_map(|l| {
                l.strip_prefix("VmRSS:")
                    .map(|v| v.trim().trim_end_matches(" kB").trim().to_owned())
            })
        })
        .and_then(|v| v.parse().ok())
        .unwrap_or(0)
}

#[tokio::test(flavor = "multi_thread")]
#[ignore = "ten minutes of load: run scripts/soak"]
async fn soak_mixed_load_through_the_sqlite_store() {
    let secs: u64 = std::env::var("SOAK_SECS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(600);
    let workers: usize = std::env::var("SOAK_WORKERS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(8);
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("claims.db");
    let stack = Stack::start(31_337, &format!("store: \"sqlite:{}\"", db.display())).await;
    let pid = stack.gateway.proc.child.id();
    let gw = stack.gateway.url.clone();
    let req = Requirement {
        scheme: Scheme::Exact,
        network: Network::new(stack.devnet.state.chain_id),
        asset: stack.devnet.asset(),
        pay_to: stack.pay_to,
        amount: U256::from(1000),
        max_timeout_seconds: 120,
        eip712_name: stack.devnet.state.asset_name.clone(),
        eip712_version: stack.devnet.state.asset_version.clone(),
        transfer: Default::default(),
    };
    let client = reqwest::Client::new();
    let stop = Arc::new(AtomicBool::new(false));
    let counts: Arc<[AtomicU64; 7]> = Arc::new(Default::default());
    let unexpected = Arc::new(std::sync::Mutex::new(Vec::<String>::new()));
    let mut tasks = Vec::new();
    for w in 0..workers {
        let (client, gw, req, stop, counts, unexpected) = (
            client.clone(),
            gw.clone(),
            req.clone(),
            stop.clone(),
            counts.clone(),
            unexpected.clone(),
        );
        let key: PrivateKeySigner = stack.devnet.account(1 + w % 7).1.parse().unwrap();
        tasks.push(tokio::spawn(async move {
            let mut i = 0u64;
            while !stop.load(Ordering::Relaxed) {
                i += 1;
                let kind = (i as usize + w) % 6;
                let now = support::now();
                let paid = || {
                    let auth = x402_gateway::tools::pay::authorize(&key, &req, now - 600, now + 100);
                    let p = x402_gateway::tools::pay::sign(&key, &req, auth).unwrap();
                    encode_header(&json!({"x402Version": 2, "accepted": req.to_v2(), "payload": p.to_json()}))
                };
                let (url, header, want): (String, Option<String>, &[u16]) = match kind {
                    0 => (format!("{gw}/free/soak/{i}"), None, &[200]),
                    1 => (format!("{gw}/paid/soak/{i}"), None, &[402]),
                    2 | 3 => (format!("{gw}/paid/soak/{i}"), Some(paid()), &[200]),
                    4 => (format!("{gw}/paid/soak/{i}"), Some("bm90IGpzb24=".into()), &[402]),
                    _ => (format!("{gw}/paid/..%2F..%2Fsoak"), None, &[400]),
                };
                let send = |h: Option<&String>| {
                    let mut rb = client.get(&url).timeout(Duration::from_secs(60));
                    if let Some(h) = h {
                        rb = rb.header("payment-signature", h);
                    }
                    rb.send()
                };
                let status = send(header.as_ref()).await.map(|r| r.status().as_u16());
                let ok = status.as_ref().is_ok_and(|s| want.contains(s));
                if !ok {
                    unexpected
                        .lock()
                        .unwrap()
                        .push(format!("{url} kind {kind}: {status:?}, wanted {want:?}"));
                }
                counts[kind].fetch_add(1, Ordering::Relaxed);
                // Every paid request is replayed once: refused, naming its transaction.
                if kind == 2 && ok {
                    let replay = send(header.as_ref()).await.map(|r| r.status().as_u16());
                    if !matches!(replay, Ok(409)) {
                        unexpected
                            .lock()
                            .unwrap()
                            .push(format!("replay of {url}: {replay:?}, wanted 409"));
                    }
                    counts[6].fetch_add(1, Ordering::Relaxed);
                }
            }
        }));
    }
    let start = Instant::now();
    let mut rss = vec![(0u64, rss_kib(pid))];
    tokio::time::sleep(Duration::from_secs(secs / 2)).await;
    rss.push((start.elapsed().as_secs(), rss_kib(pid)));
    tokio::time::sleep(Duration::from_secs(secs - secs / 2)).await;
    rss.push((start.elapsed().as_secs(), rss_kib(pid)));
    stop.store(true, Ordering::Relaxed);
    for t in tasks {
        t.await.unwrap();
    }
    let names = ["free", "unpaid", "paid", "paid", "malformed header", "ambiguous path"];
    println!("soak: {secs} s, {workers} workers, store sqlite");
    for (k, name) in names.iter().enumerate().filter(|(k, _)| *k != 3) {
        let n = counts[k].load(Ordering::Relaxed) + if k == 2 { counts[3].load(Ordering::Relaxed) } else { 0 };
        println!("  {name:<17} {n:>8} requests");
    }
    println!(
        "  replays           {:>8} (each refused with 409)",
        counts[6].load(Ordering::Relaxed)
    );
    for (t, kib) in &rss {
        println!("  resident memory at {t:>4} s: {:.1} MiB", *kib as f64 / 1024.0);
    }
    let unexpected = unexpected.lock().unwrap();
    println!("  unexpected answers: {}", unexpected.len());
    for u in unexpected.iter().take(20) {
        println!("    {u}");
    }
    assert!(unexpected.is_empty());
}
