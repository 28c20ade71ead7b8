//! Benchmark helper for `benches/load`: pays like a real x402 v2 client, N times over, ahead of the load.
//!
//! `presign URL N OUT [--key 0x…] [--threads T]` requests URL without payment, expects a 402 with a
//! `PAYMENT-REQUIRED` header, takes `accepts[0]` exactly as offered (and the offer's `resource`), and writes
//! N distinct `PAYMENT-SIGNATURE` header values to OUT, one a line: each an EIP-3009 authorization with a
//! fresh random nonce, `validAfter` = now − 600 s and `validBefore` = now + the offer's maxTimeoutSeconds
//! (the window the gateway's own `pay` client signs), signed locally. So every contender gets payments for
//! its own exact terms, and the load generator never signs. On stdout: one JSON line with the offer taken,
//! the count and the signing time.
//!
//! A `batch-settlement` offer (`--batch C`): C channels of the same payer (salts S..S+C, `--salt-base S`);
//! OUT.deposits gets each channel's opening deposit (which pays call 1), and OUT gets N vouchers dealt
//! round-robin over the channels (line i: channel i mod C, its call i div C + 2). Keep C a multiple of
//! the load generator's threads and the lines dealt i mod threads, so each channel's vouchers are sent
//! in order by one thread, and far apart: one request per channel at a time.
//!
//! The default key is the well-known dev key #0 of anvil/hardhat (0xf39F…2266): a benchmark key with no
//! value anywhere, never to be used for real funds.

use std::io::Write;
use std::time::Instant;

use alloy::signers::local::PrivateKeySigner;
use serde_json::{json, Value};
use x402_gateway::protocol::exact::{Requirement, Scheme};
use x402_gateway::protocol::{codec, v2};
use x402_gateway::tools::batch_pay::Channel;

const DEV_KEY: &str = "0xac0974bec39a17e36ba4a6b4d238ff944bacb478cbed5efcae784d7bf4f2ff80";
const VALID_AFTER_SKEW_SECS: u64 = 600;

struct Args {
    url: String,
    n: usize,
    out: String,
    key: String,
    threads: usize,
    /// `batch-settlement`: how many channels, and the first salt.
    channels: usize,
    salt_base: u64,
}

fn args() -> Result<Args, String> {
    let usage = "usage: presign URL N OUT [--key 0x…] [--threads T] [--batch CHANNELS] [--salt-base S]";
    let mut positional = Vec::new();
    let mut key = std::env::var("X402_BENCH_KEY").unwrap_or_else(|_| DEV_KEY.to_owned());
    let mut threads = std::thread::available_parallelism().map_or(2, |n| n.get());
    let (mut channels, mut salt_base) = (64, 0);
    let mut it = std::env::args().skip(1);
    while let Some(a) = it.next() {
        match a.as_str() {
            "--key" => key = it.next().ok_or(usage)?,
            "--threads" => threads = it.next().ok_or(usage)?.parse().map_err(|e| format!("--threads: {e}"))?,
            "--batch" => channels = it.next().ok_or(usage)?.parse().map_err(|e| format!("--batch: {e}"))?,
            "--salt-base" => {
                salt_base = it
                    .next()
                    .ok_or(usage)?
                    .parse()
                    .map_err(|e| format!("--salt-base: {e}"))?
            }
            _ => positional.push(a),
        }
    }
    let [url, n, out]: [String; 3] = positional.try_into().map_err(|_| usage.to_owned())?;
    Ok(Args {
        url,
        n: n.parse().map_err(|e| format!("N: {e}"))?,
        out,
        key,
        threads: threads.max(1),
        channels: channels.max(1),
        salt_base,
    })
}

/// The 402's `PaymentRequired`, as JSON, from the v2 header.
async fn offer(url: &str) -> Result<Value, String> {
    let r = reqwest::Client::new()
        .get(url)
        .send()
        .await
        .map_err(|e| format!("GET {url}: {e}"))?;
    if r.status().as_u16() != 402 {
        return Err(format!("GET {url} answered {}, not 402", r.status()));
    }
    let h = r
        .headers()
        .get("payment-required")
        .ok_or_else(|| format!("the 402 from {url} has no PAYMENT-REQUIRED header"))?;
    codec::decode::<Value>(h.as_bytes()).map_err(|e| format!("PAYMENT-REQUIRED: {e}"))
}

async fn run() -> Result<(), String> {
    let a = args()?;
    let signer: PrivateKeySigner = a.key.parse().map_err(|e| format!("--key: {e}"))?;
    let required = offer(&a.url).await?;
    // Echoed byte for byte as the server offered it (peers compare `accepted` with their own offer).
    let accepted = required["accepts"]
        .get(0)
        .cloned()
        .ok_or("the 402 offers nothing (accepts is empty)")?;
    let resource = required.get("resource").cloned();
    let typed: v2::PaymentRequirements =
        serde_json::from_value(accepted.clone()).map_err(|e| format!("accepts[0]: {e}"))?;
    let requirement = Requirement::from_v2(&typed).map_err(|e| format!("accepts[0]: {e:?}"))?;
    let now = x402_gateway::core::time::unix_now();
    if matches!(requirement.scheme, Scheme::Batch(_)) {
        return vouchers(&a, signer, &accepted, now);
    }
    let (valid_after, valid_before) = (
        now.saturating_sub(VALID_AFTER_SKEW_SECS),
        now + requirement.max_timeout_seconds,
    );

    let started = Instant::now();
    let per = a.n.div_ceil(a.threads);
    let chunks: Vec<Result<String, String>> = std::thread::scope(|s| {
        let handles: Vec<_> = (0..a.threads)
            .map(|t| {
                let (signer, requirement, accepted, resource) = (&signer, &requirement, &accepted, &resource);
                let count = per.min(a.n.saturating_sub(t * per));
                s.spawn(move || -> Result<String, String> {
                    let mut out = String::with_capacity(count * 1200);
                    for _ in 0..count {
                        let auth = x402_gateway::tools::pay::authorize(signer, requirement, valid_after, valid_before);
                        let payload = x402_gateway::tools::pay::sign(signer, requirement, auth)
                            .map_err(|e| e.to_string())?
                            .to_json();
                        let mut p = json!({"x402Version": 2, "accepted": accepted, "payload": payload});
                        if let Some(r) = resource {
                            p["resource"] = r.clone();
                        }
                        out.push_str(&codec::encode(&p));
                        out.push('\n');
                    }
                    Ok(out)
                })
            })
            .collect();
        handles
            .into_iter()
            .map(|h| h.join().unwrap_or_else(|_| Err("a signing thread panicked".into())))
            .collect()
    });
    let mut file = std::io::BufWriter::new(std::fs::File::create(&a.out).map_err(|e| format!("{}: {e}", a.out))?);
    for c in chunks {
        file.write_all(c?.as_bytes()).map_err(|e| format!("{}: {e}", a.out))?;
    }
    file.flush().map_err(|e| format!("{}: {e}", a.out))?;
    println!(
        "{}",
        json!({
            "url": a.url,
            "count": a.n,
            "payer": signer.address().to_string(),
            "accepted": accepted,
            "valid_before": valid_before,
            "sign_seconds": started.elapsed().as_secs_f64(),
        })
    );
    Ok(())
}

/// Writes the whole of `text` to `path`.
fn write(path: &str, text: &str) -> Result<(), String> {
    std::fs::write(path, text).map_err(|e| format!("{path}: {e}"))
}

/// `batch-settlement`: the channels' deposits to OUT.deposits, then N vouchers dealt round-robin to OUT.
fn vouchers(a: &Args, signer: PrivateKeySigner, accepted: &Value, now: u64) -> Result<(), String> {
    let started = Instant::now();
    let channels: Vec<Channel> = (0..a.channels)
        .map(|c| {
            let salt = alloy::primitives::B256::from(alloy::primitives::U256::from(a.salt_base + c as u64));
            Channel::open(accepted, signer.clone()).map(|ch| ch.with_salt(salt))
        })
        .collect::<Result<_, _>>()?;
    let price = u128::try_from(channels[0].price()).map_err(|_| "price too large")?;
    let rounds = a.n.div_ceil(a.channels) as u128 + 2;
    let deposit = channels[0]
        .min_deposit()
        .max(alloy::primitives::U256::from(price * rounds));
    let mut deposits = String::new();
    for c in &channels {
        deposits.push_str(&c.deposit(deposit, now)?);
        deposits.push('\n');
    }
    write(&format!("{}.deposits", a.out), &deposits)?;
    let per = a.n.div_ceil(a.threads);
    let parts: Vec<Result<String, String>> = std::thread::scope(|s| {
        let handles: Vec<_> = (0..a.threads)
            .map(|t| {
                let channels = &channels;
                let lines = (t * per)..((t + 1) * per).min(a.n);
                s.spawn(move || -> Result<String, String> {
                    let mut out = String::with_capacity(lines.len() * 900);
                    for i in lines {
                        let call = (i / channels.len()) as u128 + 2;
                        out.push_str(&channels[i % channels.len()].voucher(call * price)?);
                        out.push('\n');
                    }
                    Ok(out)
                })
            })
            .collect();
        handles
            .into_iter()
            .map(|h| h.join().unwrap_or_else(|_| Err("a signing thread panicked".into())))
            .collect()
    });
    let mut all = String::new();
    for p in parts {
        all.push_str(&p?);
    }
    write(&a.out, &all)?;
    println!(
        "{}",
        json!({
            "url": a.url,
            "count": a.n,
            "channels": a.channels,
            "deposit": deposit.to_string(),
            "payer": signer.address().to_string(),
            "accepted": accepted,
            "sign_seconds": started.elapsed().as_secs_f64(),
        })
    );
    Ok(())
}

#[tokio::main(flavor = "current_thread")]
async fn main() {
    if let Err(e) = run().await {
        eprintln!("presign: {e}");
        std::process::exit(1);
    }
}
