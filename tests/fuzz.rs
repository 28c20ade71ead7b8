//! Mutation fuzzing, in-process, on the stable toolchain: the payment header decoders and local verification
//! (v1 and v2), and the path normaliser, fed with valid inputs mutated at the byte level and at the JSON
//! level. Each target runs for a bounded time (`X402_FUZZ_SECS`, default 10 s each; set it higher to fuzz
//! longer) and must never panic; it prints how many inputs ran and which distinct outcomes they reached
//! (the reason codes and error kinds: a coverage measure in the protocol's own terms).

use std::collections::BTreeMap;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::time::{Duration, Instant};

use alloy::primitives::{B256, U256};
use alloy::signers::local::PrivateKeySigner;
use serde_json::{json, Value};
use x402_gateway::gateway::decode;
use x402_gateway::protocol::exact::{Requirement, Scheme};
use x402_gateway::protocol::network::Network;
use x402_gateway::protocol::payment::Payment;
use x402_gateway::protocol::permit2;
use x402_gateway::rules::offer::Offer;
use x402_gateway::rules::routes::{Matching, NormalPath, PathPattern};
use x402_gateway::rules::verify;

/// A small, fast, seeded generator (xorshift64*): runs are reproducible from the printed seed.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }
    fn below(&mut self, n: usize) -> usize {
        (self.next() % n.max(1) as u64) as usize
    }
    fn pick<'a, T>(&mut self, items: &'a [T]) -> &'a T {
        &items[self.below(items.len())]
    }
}

fn budget() -> Duration {
    let secs = std::env::var("X402_FUZZ_SECS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(10);
    Duration::from_secs(secs)
}

fn seed() -> u64 {
    std::env::var("X402_FUZZ_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| {
            let t = std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .unwrap_or_default();
            t.as_nanos() as u64 ^ 0x9E37_79B9_7F4A_7C15
        })
}

/// Byte-level mutations: flip, insert, delete, duplicate a slice, or splice in an interesting token.
fn mutate_bytes(rng: &mut Rng, input: &mut Vec<u8>) {
    const TOKENS: &[&[u8]] = &[
        b"%", b"%2", b"%25", b"%2F", b"%2f", b"%00", b"%C0%AF", b"..", b"/", b"//", b";", b"\\", b"=", b"==", b"\xff",
        b"\"", b"{", b"}", b"[", b"]", b"null", b"0x", b"-1", b"1e999", b"\\u0000", b"A", b"+", b"-", b"_",
    ];
    for _ in 0..=rng.below(4) {
        let len = input.len();
        match rng.below(5) {
            0 if len > 0 => {
                let i = rng.below(len);
                input[i] ^= 1 << rng.below(8);
            }
            1 => {
                let i = rng.below(len + 1);
                input.insert(i, rng.next() as u8);
            }
            2 if len > 0 => {
                input.remove(rng.below(len));
            }
            3 if len > 0 => {
                let (a, b) = (rng.below(len), rng.below(len));
                let (a, b) = (a.min(b), a.max(b));
                let slice = input[a..b].to_vec();
                let at = rng.below(input.len() + 1);
                input.splice(at..at, slice);
            }
            _ => {
                let t = rng.pick(TOKENS);
                let at = rng.below(input.len() + 1);
                input.splice(at..at, t.iter().copied());
            }
        }
    }
}

/// JSON-level mutations: replace a value with another type, drop or add a key, or change a number.
fn mutate_json(rng: &mut Rng, v: &mut Value) {
    let odd = [
        json!(null),
        json!(true),
        json!(-1),
        json!(1.5),
        json!(u64::MAX),
        json!("1e3"),
        json!(""),
        json!("0x"),
        json!([]),
        json!({}),
        json!("9".repeat(100)),
        json!(3),
        json!(1),
        json!(2),
    ];
    match v {
        Value::Object(m) if !m.is_empty() => {
            let keys: Vec<String> = m.keys().cloned().collect();
            let k = rng.pick(&keys).clone();
            match rng.below(4) {
                0 => {
                    m.remove(&k);
                }
                1 => {
                    m.insert(k, rng.pick(&odd).clone());
                }
                2 => {
                    m.insert(format!("{k}x"), json!("extra"));
                }
                _ => mutate_json(rng, m.get_mut(&k).unwrap()),
            }
        }
        Value::Array(a) if !a.is_empty() => {
            let i = rng.below(a.len());
            mutate_json(rng, &mut a[i]);
        }
        Value::String(s) if rng.below(2) == 0 && !s.is_empty() => {
            let mut b = s.clone().into_bytes();
            mutate_bytes(rng, &mut b);
            *s = String::from_utf8_lossy(&b).into_owned();
        }
        _ => *v = rng.pick(&odd).clone(),
    }
}

/// Runs `one` on inputs until the budget is spent; panics (with the input) if any call panicked.
fn fuzz(name: &str, mut one: impl FnMut(&mut Rng) -> (String, Vec<u8>)) {
    let seed = seed();
    let mut rng = Rng(seed | 1);
    let mut outcomes: BTreeMap<String, u64> = BTreeMap::new();
    let deadline = Instant::now() + budget();
    let mut runs = 0u64;
    while Instant::now() < deadline {
        for _ in 0..256 {
            let mut sub = Rng(rng.next() | 1);
            let state = sub.0;
            match catch_unwind(AssertUnwindSafe(|| one(&mut sub))) {
                Ok((outcome, _)) => *outcomes.entry(outcome).or_default() += 1,
                Err(_) => {
                    panic!("{name}: panicked (seed {seed}, input rng state {state}); rerun with X402_FUZZ_SEED={seed}")
                }
            }
            runs += 1;
        }
    }
    println!(
        "fuzz {name}: {runs} inputs, seed {seed}, {} distinct outcomes:",
        outcomes.len()
    );
    for (o, n) in &outcomes {
        println!("  {n:>9}  {o}");
    }
    assert!(runs > 1000, "{name}: only {runs} inputs ran");
}

fn requirement() -> Requirement {
    Requirement {
        scheme: Scheme::Exact,
        network: Network::new(8453),
        asset: "0x833589fCD6eDb6E08f4c7C32D4f71b54bdA02913".parse().unwrap(),
        pay_to: "0x3C44CdDdB6a900fa2b585dd299e03d12FA4293BC".parse().unwrap(),
        amount: U256::from(1000),
        max_timeout_seconds: 120,
        eip712_name: "USD Coin".into(),
        eip712_version: "2".into(),
        transfer: Default::default(),
    }
}

const PAYER_KEY: &str = "0x59c6995e998f97a5a0044966f0945389dc9e86dae88c7a8412f4603b6b78690d";

/// The offers under test: `exact` by EIP-3009, `exact` through Permit2, and `upto` (Permit2, a named
/// facilitator).
fn requirements() -> Vec<Requirement> {
    let permit2 = Requirement {
        asset: "0x4200000000000000000000000000000000000006".parse().unwrap(),
        eip712_name: String::new(),
        eip712_version: String::new(),
        transfer: x402_gateway::protocol::exact::Transfer::Permit2,
        ..requirement()
    };
    let upto = Requirement {
        scheme: Scheme::Upto {
            facilitator: alloy::primitives::Address::repeat_byte(0xfa),
        },
        amount: U256::from(10_000),
        ..permit2.clone()
    };
    vec![requirement(), permit2, upto]
}

/// A valid v2 payment for `req` (and for EIP-3009 a v1 one too), signed at `now`.
fn signed(signer: &PrivateKeySigner, req: &Requirement, now: u64) -> Vec<Value> {
    let payload = x402_gateway::tools::pay::sign_payment(signer, req, now)
        .unwrap()
        .to_json();
    let mut out = vec![
        json!({"x402Version": 2, "accepted": req.to_v2(), "payload": payload, "resource": {"url": "http://x/paid"}}),
    ];
    if req.transfer == x402_gateway::protocol::exact::Transfer::Eip3009 {
        out.push(json!({"x402Version": 1, "scheme": "exact", "network": "base", "payload": payload}));
    }
    out
}

/// What a "valid" verdict must mean, checked here independently of the verifier: the payment pays the
/// offer's recipient exactly the offer's amount in its asset, and its signature recovers to its payer under
/// the full EIP-712 domain (not the verifier's precomputed separator).
fn assert_truly_valid(req: &Requirement, payment: &Payment, proof: verify::Proof) {
    let recover = |digest: B256, sig: &[u8]| {
        alloy::primitives::Signature::try_from(sig)
            .ok()
            .and_then(|s| s.recover_address_from_prehash(&digest).ok())
    };
    match payment {
        Payment::Eip3009(p) => {
            let a = &p.authorization;
            assert_eq!((a.to, a.value), (req.pay_to, req.amount), "valid EIP-3009 terms: {a:?}");
            match proof {
                verify::Proof::Key => assert_eq!(
                    recover(req.signing_hash(a), &p.signature),
                    Some(a.from),
                    "valid EIP-3009 signer"
                ),
                // Left to the chain: only a signature no EOA could have made may be.
                verify::Proof::Contract => assert!(
                    verify::contract_shaped(&p.signature),
                    "a 65-byte signature left to the chain: {p:?}"
                ),
            }
        }
        Payment::Permit2(p) => {
            let a = &p.authorization;
            assert_eq!(
                (a.to, a.amount, a.token),
                (req.pay_to, req.amount, req.asset),
                "valid Permit2 terms: {a:?}"
            );
            assert_eq!(a.facilitator, req.settler(), "valid Permit2 settler");
            assert_eq!(proof, verify::Proof::Key, "a Permit2 payer is proven by its key");
            let digest = permit2::signing_hash(&permit2::domain(req.network.chain_id).separator(), a);
            assert_eq!(recover(digest, &p.signature), Some(a.from), "valid Permit2 signer");
        }
    }
}

#[test]
fn payment_headers_decode_match_and_verify_without_panicking() {
    let reqs = requirements();
    let offers: Vec<Offer> = reqs.iter().map(|r| Offer::new(r.clone(), "USDC".into(), 6)).collect();
    let now = x402_gateway::core::time::unix_now();
    let signer: PrivateKeySigner = PAYER_KEY.parse().unwrap();
    let seeds: Vec<Value> = reqs.iter().flat_map(|r| signed(&signer, r, now)).collect();
    let valid = std::cell::Cell::new(0u64);
    fuzz(
        "payment header (v1, v2; EIP-3009, Permit2, upto) → decode → match → verify",
        |rng| {
            let mut v = rng.pick(&seeds).clone();
            // A quarter of the inputs are signed afresh over altered terms, so they pass the signature check and
            // reach the checks behind it (recipient, amount, time window, spender, facilitator).
            if rng.below(4) == 0 {
                let mut req = rng.pick(&reqs).clone();
                let mut when = now;
                match rng.below(5) {
                    0 => req.pay_to = alloy::primitives::Address::repeat_byte(rng.next() as u8),
                    1 => req.amount = U256::from(rng.next() % 3000),
                    2 => when = now.saturating_sub(rng.next() % 400),
                    3 => {
                        req.scheme = match req.scheme {
                            Scheme::Exact => Scheme::Upto {
                                facilitator: alloy::primitives::Address::repeat_byte(rng.next() as u8),
                            },
                            Scheme::Upto { .. } | Scheme::Batch(_) => Scheme::Exact,
                        }
                    }
                    _ => req.max_timeout_seconds = rng.next() % 100_000,
                }
                let accepted = v["accepted"].clone();
                v = rng.pick(&signed(&signer, &req, when)).clone();
                if !accepted.is_null() && rng.below(2) == 0 {
                    v["accepted"] = accepted;
                }
            }
            let version_header = if v["x402Version"] == 2 {
                "payment-signature"
            } else {
                "x-payment"
            };
            // Half the inputs are mutated as JSON and re-encoded (deep), half as base64 bytes (shallow).
            let mut bytes = if rng.below(2) == 0 {
                for _ in 0..=rng.below(3) {
                    mutate_json(rng, &mut v);
                }
                x402_gateway::protocol::codec::encode(&v).into_bytes()
            } else {
                let mut b = x402_gateway::protocol::codec::encode(&v).into_bytes();
                mutate_bytes(rng, &mut b);
                b
            };
            if rng.below(8) == 0 {
                mutate_bytes(rng, &mut bytes);
            }
            let mut headers = http::HeaderMap::new();
            let Ok(value) = http::HeaderValue::from_bytes(&bytes) else {
                return ("not a header value".into(), bytes);
            };
            headers.insert(version_header, value);
            let outcome = match decode::read(&headers) {
                None => "no header".to_owned(),
                Some(Err(e)) => format!("decode: {}", e.reason().split(':').next().unwrap_or_default()),
                Some(Ok(p)) => match decode::match_offer(p, &offers) {
                    Err(e) => format!("match: {}", e.reason().split(':').next().unwrap_or_default()),
                    Ok(m) => {
                        let o = &offers[m.candidates[0]];
                        let payment = match m.exact_payment(&offers) {
                            Ok(p) => p,
                            Err(e) => {
                                return (
                                    format!("match: {}", e.reason().split(':').next().unwrap_or_default()),
                                    bytes,
                                )
                            }
                        };
                        match verify::check_payment_terms(&o.requirement, &o.domain_separator, &payment)
                            .and_then(|_| verify::check_payment(&o.requirement, &payment, now))
                        {
                            Ok(v) => {
                                assert_truly_valid(&o.requirement, &payment, v.proof);
                                if v.proof == verify::Proof::Contract {
                                    return (format!("for the chain {}", o.requirement.scheme.name()), bytes);
                                }
                                valid.set(valid.get() + 1);
                                format!("valid {}", o.requirement.scheme.name())
                            }
                            Err(r) => format!("verify: {}", r.reason),
                        }
                    }
                },
            };
            (outcome, bytes)
        },
    );
    assert!(valid.get() > 0, "no input was valid: the oracle was never consulted");
}

#[test]
fn paths_normalise_and_match_without_panicking() {
    let seeds: &[&[u8]] = &[
        b"/paid/item",
        b"/free/../paid/x",
        b"/%50AID/item",
        b"/a/b/c/d?x=1",
        b"//paid/./x/",
        b"/caf%C3%A9/x",
        b"/",
    ];
    let patterns: Vec<PathPattern> = ["/paid/**", "/free/*", "/users/:id/files/**", "/", "/a/b/c/d"]
        .iter()
        .flat_map(|p| [Matching::Exact, Matching::Loose].map(|m| PathPattern::parse(p, m).unwrap()))
        .collect();
    fuzz("request path → normalise → match", |rng| {
        let mut b = rng.pick(seeds).to_vec();
        mutate_bytes(rng, &mut b);
        let raw = String::from_utf8_lossy(&b).into_owned();
        let outcome = match NormalPath::parse(&raw) {
            Err(e) => format!("refused: {e:?}"),
            Ok(p) => {
                // The normal form is stable: normalising it again changes nothing and matches the same.
                let again = NormalPath::parse(&p.to_path())
                    .unwrap_or_else(|e| panic!("{raw:?} normalises to {:?}, which does not parse: {e:?}", p.to_path()));
                assert_eq!(again.to_path(), p.to_path(), "{raw:?}");
                let hits = patterns.iter().filter(|pat| pat.matches(&p)).count();
                assert_eq!(
                    hits,
                    patterns.iter().filter(|pat| pat.matches(&again)).count(),
                    "{raw:?}"
                );
                format!("normalised, {hits} patterns match")
            }
        };
        (outcome, b)
    });
}
