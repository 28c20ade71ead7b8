//! The configuration as a user writes it: prices, upstreams, secrets, and errors that say where and how
//! to fix them.
use std::collections::HashMap;

use alloy::primitives::U256;

use super::*;
use crate::rules::table::{SettleMode, VerifyMode};

const BASE: &str = "facilitator:\n  url: http://127.0.0.1:4020\n  headers:\n    Authorization: \"Bearer ${TOKEN}\"\nupstreams:\n  default: http://127.0.0.1:3000\n  search: https://search.example\npay_to: \"0x3C44CdDdB6a900fa2b585dd299e03d12FA4293BC\"\nassets:\n  - network: eip155:31337\n    address: \"0x5FbDB2315678afecb367f032d93F642f64180aa3\"\n    name: USD Coin\n    version: \"2\"\n    decimals: 6\n";

fn env(extra: &[(&str, &str)]) -> HashMap<String, String> {
    let mut vars: HashMap<String, String> = HashMap::from([("TOKEN".to_owned(), "s3cret-token".to_owned())]);
    vars.extend(extra.iter().map(|(k, v)| ((*k).to_owned(), (*v).to_owned())));
    vars
}

fn load(routes: &str) -> Result<Config, ConfigErrors> {
    parse(&format!("{BASE}{routes}"), "t.yaml", &env(&[]))
}

#[test]
fn dollar_price_is_offered_in_every_accepted_asset() {
    let c = load("routes:\n  - path: /a/**\n    price: \"$0.01\"\n    accepts: [base, eip155:31337, eip155:137]\n    upstream: search\n").unwrap();
    let p = c.table.routes[0].pricing.as_ref().unwrap();
    let offers: Vec<(u64, String)> = p
        .offers
        .iter()
        .map(|o| (o.requirement.network.chain_id, o.requirement.amount.to_string()))
        .collect();
    assert_eq!(
        offers,
        [(8453, "10000".into()), (31_337, "10000".into()), (137, "10000".into())]
    );
    let search = &c.upstreams[c.table.routes[0].upstream];
    assert_eq!(
        search,
        &Upstream {
            name: "search".into(),
            tls: true,
            host: "search.example".into(),
            port: 443
        }
    );
    assert_eq!((p.settle, p.verify), (SettleMode::After, VerifyMode::Remote));
}

#[test]
fn atomic_price_names_its_asset() {
    let c = load("routes:\n  - path: /a\n    price: {amount: \"25\", asset: \"eip155:31337/erc20:0x5FbDB2315678afecb367f032d93F642f64180aa3\"}\n    settle: before\n").unwrap();
    let p = c.table.routes[0].pricing.as_ref().unwrap();
    assert_eq!(p.offers.len(), 1);
    assert_eq!(p.offers[0].requirement.amount, U256::from(25));
    assert_eq!(p.offers[0].requirement.eip712_name, "USD Coin");
    assert_eq!(
        p.offers[0].domain_separator,
        p.offers[0].requirement.domain().separator()
    );
    assert_eq!(p.settle, SettleMode::Before);
}

#[test]
fn facilitator_url_comes_from_the_environment_when_set_and_secrets_stay_hidden() {
    let c = parse(
        &format!("{BASE}routes: []\n"),
        "t.yaml",
        &env(&[(FACILITATOR_URL_ENV, "https://f.example/")]),
    )
    .unwrap();
    assert_eq!(c.facilitators[0].url, "https://f.example");
    assert_eq!(c.facilitators[0].header_map()["authorization"], "Bearer s3cret-token");
    assert!(
        !format!("{c:?}").contains("s3cret"),
        "secrets must not reach Debug output"
    );
}

#[test]
fn errors_point_at_the_field_and_say_how_to_fix_it() {
    let cases = [
        ("routes:\n  - path: /a\n", "routes[0].path", "free: true"),
        ("routes:\n  - path: /a\n    price: \"$0.0000001\"\n    accepts: [base]\n", "routes[0].price", "round it to 6 places"),
        ("routes:\n  - path: /a\n    price: \"$1\"\n    accepts: [eip155:31337/erc20:0x0000000000000000000000000000000000000001]\n", "routes[0].accepts", "describe it under `assets:`"),
        ("routes:\n  - path: /a\n    free: true\n    upstream: nope\n", "routes[0].upstream", "not defined under `upstreams:`"),
        ("routes:\n  - path: /a/**/b\n    free: true\n", "routes[0].path", "last segment"),
    ];
    for (routes, field, hint) in cases {
        let e = load(routes).unwrap_err().to_string();
        assert!(e.starts_with("t.yaml:") && e.contains(field) && e.contains(hint), "{e}");
    }
}

#[test]
fn every_mistake_in_a_file_is_reported_at_once_in_file_order() {
    let src = format!(
        "{BASE}listen: nowhere\nroutes:\n  - path: /a\n  - path: /b/**/c\n    free: true\n  - path: /c\n    price: \"$1\"\n    accepts: [eip155:999999]\n    description: \"${{NOPE}}\"\n"
    );
    let e = parse(&src, "t.yaml", &env(&[])).unwrap_err();
    let lines: Vec<String> = e.0.iter().map(ToString::to_string).collect();
    let fields = [
        "listen",
        "routes[0].path",
        "routes[1].path",
        "routes[2].accepts",
        "routes[2].description",
    ];
    assert_eq!(lines.len(), fields.len(), "{lines:#?}");
    for (line, field) in lines.iter().zip(fields) {
        assert!(
            line.starts_with("t.yaml:") && line.contains(&format!(" {field}: ")),
            "{line}"
        );
    }
    assert!(lines[4].contains("NOPE is not set"), "{}", lines[4]);
}

#[test]
fn the_store_is_memory_sqlite_or_redis_and_a_password_never_shows() {
    let c = |store: &str| parse(&format!("{BASE}store: \"{store}\"\nroutes: []\n"), "t.yaml", &env(&[]));
    assert_eq!(c("memory").unwrap().store, StoreUrl::Memory);
    assert_eq!(
        c("sqlite:/tmp/x.db").unwrap().store,
        StoreUrl::Sqlite("/tmp/x.db".into())
    );
    let redis = c("redis://:hunter2@cache.internal:6379/2").unwrap();
    assert_eq!(redis.store.to_string(), "redis://cache.internal:6379");
    assert!(!redis.describe().contains("hunter2"));
    for (bad, hint) in [
        ("mysql://x", "is not a store"),
        ("sqlite:", "sqlite:/var/lib"),
        ("redis://h:1/zero", "must be a number"),
        ("nonsense", "must be `memory`"),
    ] {
        let e = c(bad).unwrap_err().to_string();
        assert!(e.contains(" store: ") && e.contains(hint), "{bad}: {e}");
    }
}

/// The same price table under another `facilitator…:` section.
fn with_facilitators(section: &str, vars: &[(&str, &str)]) -> Result<Config, ConfigErrors> {
    let rest = BASE.split_once("upstreams:").map(|(_, r)| r).unwrap();
    parse(&format!("{section}upstreams:{rest}routes: []\n"), "t.yaml", &env(vars))
}

/// A CDP Ed25519 secret as the portal shows it (seed ‖ public key, base64), made here.
fn ed25519_secret() -> String {
    use aws_lc_rs::signature::{Ed25519KeyPair, KeyPair};
    use base64::Engine;
    let seed = [7u8; 32];
    let pair = Ed25519KeyPair::from_seed_unchecked(&seed).unwrap();
    let mut raw = seed.to_vec();
    raw.extend_from_slice(pair.public_key().as_ref());
    base64::engine::general_purpose::STANDARD.encode(raw)
}

#[test]
fn facilitators_are_a_list_tried_in_order_with_a_cdp_key_from_the_environment_or_a_file() {
    let secret = ed25519_secret();
    let file = std::env::temp_dir().join(format!("x402-cdp-secret-{}", std::process::id()));
    std::fs::write(&file, format!("{secret}\n")).unwrap();
    let section = format!(
        "facilitators:\n  - url: https://api.cdp.coinbase.com/platform/v2/x402\n    auth: cdp\n    key_id: ${{CDP_API_KEY_ID}}\n    key_secret: ${{CDP_API_KEY_SECRET}}\n  - url: http://127.0.0.1:4020/\n    timeout: 5s\n  - url: http://127.0.0.1:4021\n    auth: cdp\n    key_id: other\n    key_secret_file: {}\n",
        file.display()
    );
    let c = with_facilitators(
        &section,
        &[
            ("CDP_API_KEY_ID", "organizations/o/apiKeys/k"),
            ("CDP_API_KEY_SECRET", &secret),
        ],
    )
    .unwrap();
    std::fs::remove_file(&file).unwrap();
    let urls: Vec<&str> = c.facilitators.iter().map(|f| f.url.as_str()).collect();
    assert_eq!(
        urls,
        [
            "https://api.cdp.coinbase.com/platform/v2/x402",
            "http://127.0.0.1:4020",
            "http://127.0.0.1:4021"
        ]
    );
    let key = c.facilitators[0].cdp.as_ref().unwrap();
    assert_eq!((key.id(), key.alg()), ("organizations/o/apiKeys/k", "EdDSA"));
    assert!(c.facilitators[1].cdp.is_none());
    assert_eq!(c.facilitators[1].timeout, Duration::from_secs(5));
    assert_eq!(c.facilitators[2].cdp.as_ref().unwrap().public_key(), key.public_key());
    assert!(
        !format!("{c:?}").contains(&secret),
        "the secret never reaches Debug output"
    );
    assert!(c.describe().contains("(CDP key organizations/o/apiKeys/k)"));
}

#[test]
fn facilitator_mistakes_name_the_field_and_never_echo_a_secret() {
    let cases = [
        (
            "facilitator:\n  url: http://a\nfacilitators:\n  - url: http://b\n",
            "t.yaml:3:1: facilitators: give either",
        ),
        ("", "facilitator: no facilitator: add `facilitator: {url:"),
        (
            "facilitators:\n  - url: http://a\n  - url: http://b\n    auth: cdp\n    key_secret: c2VjcmV0c2VjcmV0\n",
            "facilitators[1].auth: `auth: cdp` needs `key_id:",
        ),
        (
            "facilitators:\n  - url: http://a\n    auth: cdp\n    key_id: k\n    key_secret: c2VjcmV0c2VjcmV0\n",
            "facilitators[0].key_secret: the CDP API key cannot be used: the key secret is neither",
        ),
        (
            "facilitator:\n  url: http://a\n  key_id: k\n",
            "facilitator.key_id: a key is only used with `auth: cdp`",
        ),
        (
            "facilitator:\n  url: http://a\n  auth: cdp\n  key_id: k\n  key_secret_file: /nonexistent/cdp\n",
            "facilitator.key_secret_file: cannot read the key secret from \"/nonexistent/cdp\"",
        ),
        (
            "facilitator:\n  url: http://a\n  auth: jwt\n",
            "unknown variant `jwt`, expected `cdp`",
        ),
    ];
    for (section, expected) in cases {
        let e = with_facilitators(section, &[]).unwrap_err().to_string();
        assert!(e.contains(expected), "{section}\n{e}");
        assert!(!e.contains("c2VjcmV0c2VjcmV0"), "{e}");
    }
}

#[test]
fn upto_offers_the_maximum_through_permit2_from_the_facilitators_address_with_a_min() {
    use crate::protocol::exact::{Scheme, Transfer};
    let settler = "0x90F79bf6EB2c4f870365E785982E1f101E93b906";
    let with_address = BASE.replacen(
        "  url: http://127.0.0.1:4020\n",
        &format!("  url: http://127.0.0.1:4020\n  address: \"{settler}\"\n"),
        1,
    );
    let c = parse(
        &format!("{with_address}accepts: [eip155:31337]\nroutes:\n  - path: /ai/**\n    price: {{upto: \"$0.10\", min: \"$0.001\"}}\n  - path: /rows\n    price: {{upto: \"500\", asset: \"eip155:31337/erc20:0x5FbDB2315678afecb367f032d93F642f64180aa3\"}}\n"),
        "t.yaml",
        &env(&[]),
    )
    .unwrap();
    let offer = |i: usize| c.table.routes[i].pricing.as_ref().unwrap().offers[0].clone();
    let ai = offer(0);
    assert_eq!(
        ai.requirement.scheme,
        Scheme::Upto {
            facilitator: settler.parse().unwrap()
        }
    );
    assert_eq!(
        ai.requirement.transfer,
        Transfer::Permit2,
        "upto moves even USDC through Permit2"
    );
    assert_eq!((ai.requirement.amount, ai.min), (U256::from(100_000), U256::from(1000)));
    let wire = ai.requirement.to_v2();
    assert_eq!(wire.scheme, "upto");
    assert_eq!(wire.extra.as_ref().unwrap()["facilitatorAddress"], settler);
    assert_eq!(
        ai.domain_separator,
        crate::protocol::permit2::domain(31_337).separator()
    );
    assert_eq!(
        ai.display(),
        format!("up to 0.1 tokens on eip155:31337, at least 0.001, settled by {settler}")
    );
    let rows = offer(1);
    assert_eq!((rows.requirement.amount, rows.min), (U256::from(500), U256::ZERO));

    // Without a facilitator address, with `settle: before`, or a min above the maximum: refused, with the fix.
    let cases = [
        (
            BASE.to_owned(),
            "price: {upto: \"$0.10\"}",
            "routes[0].price",
            "set `address:`",
        ),
        (
            with_address.clone(),
            "price: {upto: \"$0.10\"}\n    settle: before",
            "routes[0].settle",
            "drop `settle: before`",
        ),
        (
            with_address,
            "price: {upto: \"$0.10\", min: \"$0.20\"}",
            "routes[0].price",
            "`min` is above `upto`",
        ),
    ];
    for (base, price, field, hint) in cases {
        let src = format!("{base}accepts: [eip155:31337]\nroutes:\n  - path: /a\n    {price}\n");
        let e = parse(&src, "t.yaml", &env(&[])).unwrap_err().to_string();
        assert!(e.contains(field) && e.contains(hint), "{e}");
    }
}

#[test]
fn forwarding_defaults_and_errors_name_the_field() {
    let c = load("routes: []\n").unwrap();
    assert_eq!(c.forwarding.connect_timeout, std::time::Duration::from_secs(5));
    assert_eq!(c.forwarding.host, UpstreamHost::Client);
    let c = load("upstream_host: upstream\ntrusted_proxies: [10.0.0.0/8, \"2001:db8::1\"]\nupstream_timeouts: {read: 2s}\nroutes: []\n").unwrap();
    assert_eq!(c.forwarding.read_timeout, std::time::Duration::from_secs(2));
    assert!(c.forwarding.trusts("10.9.8.7".parse().unwrap()) && c.forwarding.trusts("2001:db8::1".parse().unwrap()));
    assert!(!c.forwarding.trusts("11.0.0.1".parse().unwrap()));
    let e = load("trusted_proxies: [10.0.0.0/33]\nroutes: []\n")
        .unwrap_err()
        .to_string();
    let line = BASE.lines().count() + 1;
    assert!(
        e.contains(&format!("t.yaml:{line}:")) && e.contains("trusted_proxies[0]") && e.contains("0 to 32"),
        "{e}"
    );
    let e = load("upstream_timeouts: {read: soon}\nroutes: []\n")
        .unwrap_err()
        .to_string();
    assert!(e.contains("upstream_timeouts.read"), "{e}");
}

#[test]
fn batch_offers_the_channel_terms_and_its_key_never_shows() {
    use crate::protocol::exact::Scheme;
    const KEY: &str = "0x5de4111afa1a4b94908f83103eb1f1706367c2e68ca870fc3fb9a804cdab365a";
    let batch = "accepts: [eip155:31337]\nbatch_settlement:\n  receiver_authorizer_key: ${AUTH_KEY}\n  withdraw_delay: 1h\nroutes:\n  - path: /b/**\n    price: {batch: \"$0.0001\", min_deposit: \"$0.10\"}\n  - path: /c\n    price: {batch: \"$0.001\"}\n";
    let c = parse(&format!("{BASE}{batch}"), "t.yaml", &env(&[("AUTH_KEY", KEY)])).unwrap();
    let settings = c.batch.as_ref().unwrap();
    let authorizer: alloy::signers::local::PrivateKeySigner = KEY.parse().unwrap();
    assert_eq!(settings.authorizer.address(), authorizer.address());
    assert!(!format!("{c:?}").contains(&KEY[2..]), "the key is never printed");
    let offer = |i: usize| c.table.routes[i].pricing.as_ref().unwrap().offers[0].clone();
    let Scheme::Batch(terms) = offer(0).requirement.scheme else {
        panic!("not batch: {:?}", offer(0));
    };
    assert_eq!(offer(0).requirement.amount, U256::from(100));
    assert_eq!(
        (terms.receiver_authorizer, terms.withdraw_delay),
        (authorizer.address(), 3600)
    );
    assert_eq!(terms.min_deposit, U256::from(100_000));
    let Scheme::Batch(terms) = offer(1).requirement.scheme else {
        panic!()
    };
    assert_eq!(terms.min_deposit, U256::from(10_000), "ten calls' worth by default");
    let wire = serde_json::to_value(offer(0).requirement.to_v2()).unwrap();
    assert_eq!(wire["scheme"], "batch-settlement");
    assert_eq!(wire["extra"]["receiverAuthorizer"], authorizer.address().to_string());
    assert_eq!(wire["extra"]["withdrawDelay"], 3600);
    assert_eq!(wire["extra"]["minDeposit"], "100000");
    assert!(
        offer(0)
            .requirement
            .to_v1(&crate::rules::challenge::resource("", "", ""))
            .is_none(),
        "v2 only"
    );
}

#[test]
fn batch_mistakes_name_the_field_and_say_how_to_fix_them() {
    let route = "accepts: [eip155:31337]\nroutes:\n  - path: /b\n    price: {batch: \"$0.001\"}\n";
    let block = |b: &str| format!("batch_settlement:\n{b}{route}");
    let cases = [
        (route.to_owned(), "routes[0].price", "batch_settlement:"),
        (block("  withdraw_delay: 15m\n"), "batch_settlement", "receiver_authorizer_key"),
        (block("  receiver_authorizer_key: \"0x12\"\n"), "batch_settlement.receiver_authorizer_key", "not a private key"),
        (block("  receiver_authorizer_key_file: /nonexistent/key\n"), "batch_settlement.receiver_authorizer_key_file", "cannot read"),
        (
            block("  receiver_authorizer_key: \"0x5de4111afa1a4b94908f83103eb1f1706367c2e68ca870fc3fb9a804cdab365a\"\n  withdraw_delay: 1m\n"),
            "batch_settlement.withdraw_delay",
            "must be between",
        ),
        (
            block("  receiver_authorizer_key: \"0x5de4111afa1a4b94908f83103eb1f1706367c2e68ca870fc3fb9a804cdab365a\"\n  onchain_ttl: 10m\n"),
            "batch_settlement.onchain_ttl",
            "at most half the withdraw_delay",
        ),
        (
            "batch_settlement:\n  receiver_authorizer_key: \"0x5de4111afa1a4b94908f83103eb1f1706367c2e68ca870fc3fb9a804cdab365a\"\naccepts: [eip155:31337]\nroutes:\n  - path: /b\n    price: {batch: \"$0.001\"}\n    settle: before\n".to_owned(),
            "routes[0].settle",
            "remove it",
        ),
        (
            "batch_settlement:\n  receiver_authorizer_key: \"0x5de4111afa1a4b94908f83103eb1f1706367c2e68ca870fc3fb9a804cdab365a\"\naccepts: [eip155:31337]\nroutes:\n  - path: /b\n    price: {batch: \"$0.01\", min_deposit: \"$0.001\"}\n".to_owned(),
            "routes[0].price",
            "below the price of one call",
        ),
    ];
    for (yaml, field, hint) in cases {
        let e = load(&yaml).unwrap_err().to_string();
        assert!(
            e.starts_with("t.yaml:") && e.contains(field) && e.contains(hint),
            "{field}: {e}"
        );
    }
}
