//! Per-request CPU cost of the work that needs no network: decoding a `PAYMENT-SIGNATURE` header, matching
//! it to the route's offer, the local EIP-712/EIP-3009 checks (signature recovery dominates), rendering a
//! route's 402, finding the route in tables of 10 and 1,000 routes, and inserting and looking up claims in
//! the in-memory store.
//! Run: `cargo bench --bench verify`. Prints ns per operation; compare runs on the same machine.

use std::hint::black_box;
use std::time::Instant;

use alloy::primitives::{B256, U256};
use alloy::signers::local::PrivateKeySigner;
use serde_json::json;
use x402_gateway::protocol::exact::{Requirement, Scheme};
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
        scheme: Scheme::Exact,
        network: Network::new(8453),
        asset: "0x833589fCD6eDb6E08f4c7C32D4f71b54bdA02913".parse().unwrap(),
        pay_to: "0x3C44CdDdB6a900fa2b585dd299e03d12FA4293BC".parse().unwrap(),
        amount: U256::from(1000),
        max_timeout_seconds: 120,
        eip712_name: "USD Coin".into(),
        eip712_version: "2".into(),
        transfer: Default::default(),
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
    route_matching();
    claims();
}

/// A price table of `n` priced routes `/api/v1/r<i>/:id` (plus a free catch-all), as a user would write it.
fn table(n: usize) -> x402_gateway::rules::table::RouteTable {
    let mut yaml = String::from(
        "facilitator: {url: \"http://127.0.0.1:4020\"}\nupstreams: {default: \"http://127.0.0.1:3000\"}\npay_to: \"0x3C44CdDdB6a900fa2b585dd299e03d12FA4293BC\"\naccepts: [eip155:8453]\nroutes:\n",
    );
    for i in 0..n {
        yaml.push_str(&format!(
            "  - path: /api/v1/r{i}/:id\n    methods: [GET]\n    price: \"$0.001\"\n"
        ));
    }
    yaml.push_str("  - path: /**\n    free: true\n");
    let env: std::collections::HashMap<String, String> = std::collections::HashMap::new();
    x402_gateway::config::parse(&yaml, "bench.yaml", &env).unwrap().table
}

fn route_matching() {
    use x402_gateway::rules::routes::NormalPath;
    let get = http::Method::GET;
    for n in [10, 1000] {
        let t = table(n);
        // Parsed each time: a request folds its path once for all loose (priced) routes.
        let last = format!("/api/v1/r{}/42", n - 1);
        time(&format!("normalise + route match, {n} routes, last"), 20_000, || {
            let p = NormalPath::parse(black_box(&last)).unwrap();
            black_box(t.find(&get, "api.example.com", &p).is_some());
        });
        time(
            &format!("normalise + route match, {n} routes, catch-all"),
            20_000,
            || {
                let p = NormalPath::parse(black_box("/static/app.js")).unwrap();
                black_box(t.find(&get, "api.example.com", &p).is_some());
            },
        );
    }
    time("path normalisation (/api/v1/r7/42)", 200_000, || {
        black_box(NormalPath::parse(black_box("/api/v1/r7/42")).unwrap());
    });
}

fn claims() {
    use x402_gateway::gateway::store::memory::MemoryStore;
    use x402_gateway::gateway::store::{ClaimState, Record, Store};
    use x402_gateway::protocol::exact::AuthorizationId;
    let rt = tokio::runtime::Builder::new_current_thread().build().unwrap();
    let store = MemoryStore::new(1_000_000, x402_gateway::core::time::Clock::system());
    let now = x402_gateway::core::time::unix_now();
    let id = |i: u64| AuthorizationId {
        network: Network::new(8453),
        asset: "0x833589fCD6eDb6E08f4c7C32D4f71b54bdA02913".parse().unwrap(),
        payer: "0x3C44CdDdB6a900fa2b585dd299e03d12FA4293BC".parse().unwrap(),
        nonce: B256::from(U256::from(i)),
    };
    let record = Record {
        state: ClaimState::InFlight,
        payment: [7; 32],
        holder: 1,
        expires_at: now + 600,
        lease_until: now + 300,
        facilitator: 0,
        charge: None,
    };
    let mut i = 0u64;
    time("claim insert (memory store)", 200_000, || {
        i += 1;
        black_box(rt.block_on(store.insert(&id(i), record.clone(), now)).unwrap());
    });
    let mut j = 0u64;
    time("claim lookup (memory store, 200k+ live)", 200_000, || {
        j = (j + 7919) % i.max(1);
        black_box(rt.block_on(store.get(&id(j + 1), now)).unwrap());
    });
}
