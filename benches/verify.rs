//! Per-request CPU cost of the payment path that needs no network: decoding a `PAYMENT-SIGNATURE` header,
//! matching it to the route's offer, the local EIP-712/EIP-3009 checks (signature recovery dominates) and
//! rendering a route's 402.
//! Run: `cargo bench --bench verify`. Prints ns per operation; compare runs on the same machine.

use std::hint::black_box;
use std::time::Instant;

use alloy::primitives::{B256, U256};
use alloy::signers::local::PrivateKeySigner;
use serde_json::json;
use x402_gateway::protocol::exact::Requirement;
use x402_gateway::protocol::network::Network;
use x402_gateway::rules::offer::Offer;

fn time<F: FnMut()>(name: &str, iters: u32, mut f: F) {
    for _ in 0..iters / 10 {
        f();
    }
    let start = Instant::now();
    for _ in 0..iters {
        f();
    }
    let ns = start.elapsed().as_nanos() / u128::from(iters);
    println!("{name:<40} {ns:>10} ns/op  ({iters} iterations)");
}

fn main() {
    let signer: PrivateKeySigner = "0x59c6995e998f97a5a0044966f0945389dc9e86dae88c7a8412f4603b6b78690d"
        .parse()
        .unwrap();
    let req = Requirement {
        network: Network::new(8453),
        asset: "0x833589fCD6eDb6E08f4c7C32D4f71b54bdA02913".parse().unwrap(),
        pay_to: "0x3C44CdDdB6a900fa2b585dd299e03d12FA4293BC".parse().unwrap(),
        amount: U256::from(1000),
        max_timeout_seconds: 120,
        eip712_name: "USD Coin".into(),
        eip712_version: "2".into(),
    };
    let now = x402_gateway::core::time::unix_now();
    let mut auth = x402_gateway::tools::pay::authorize(&signer, &req, 0, now + 3600);
    auth.nonce = B256::repeat_byte(7);
    let payload = x402_gateway::tools::pay::sign(&signer, &req, auth).unwrap();
    let header = x402_gateway::protocol::codec::encode(
        &json!({"x402Version": 2, "accepted": req.to_v2(), "payload": payload.to_json()}),
    );
    let offers = vec![Offer::new(req.clone(), "USDC".into(), 6)];
    let mut headers = http::HeaderMap::new();
    headers.insert("payment-signature", header.parse().unwrap());

    time("eip712 signing hash", 200_000, || {
        black_box(req.signing_hash(black_box(&payload.authorization)));
    });
    time("eip712 signing hash, separator precomputed", 200_000, || {
        black_box(x402_gateway::protocol::exact::signing_hash(
            black_box(&offers[0].domain_separator),
            black_box(&payload.authorization),
        ));
    });
    time("local verify (recover + checks)", 20_000, || {
        black_box(x402_gateway::rules::verify::check(black_box(&req), black_box(&payload), now).unwrap());
    });
    time("local verify, separator precomputed", 20_000, || {
        black_box(
            x402_gateway::rules::verify::check_terms(black_box(&req), &offers[0].domain_separator, &payload).unwrap(),
        );
    });
    let challenge = x402_gateway::rules::challenge::Template::new(
        &offers,
        "",
        "application/json",
        x402_gateway::protocol::payment_id::PaymentIdMode::Off,
    );
    time("402 challenge (v2 header + v1 body)", 100_000, || {
        black_box(challenge.render(black_box("http://127.0.0.1:8402/paid/x"), None, false));
    });
    time("header decode + offer match", 100_000, || {
        let p = x402_gateway::gateway::decode::read(black_box(&headers))
            .unwrap()
            .unwrap();
        black_box(x402_gateway::gateway::decode::match_offer(p, &offers).unwrap());
    });
}
