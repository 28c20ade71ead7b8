//! The one-command demo, and the `pay` CLI against it.

mod support;

use std::time::Duration;

use alloy::primitives::{Address, U256};
use serde_json::Value;
use support::{free_port, spawn, wait_until};

#[tokio::test(flavor = "multi_thread")]
async fn demo_starts_everything_pays_once_and_pay_cli_pays_again() {
    let dir = tempfile::tempdir().unwrap();
    let state_file = dir.path().join("demo.json");
    let ports: Vec<String> = (0..5).map(|_| free_port().to_string()).collect();
    let _demo = spawn(
        &format!("demo-{}", ports[0]),
        &[
            "demo",
            "--state-file",
            state_file.to_str().unwrap(),
            "--rpc-port",
            &ports[0],
            "--facilitator-port",
            &ports[1],
            "--upstream-port",
            &ports[2],
            "--gateway-port",
            &ports[3],
            "--admin-port",
            &ports[4],
        ],
        &[],
    );
    wait_until("the demo state file", Duration::from_secs(120), || state_file.exists()).await;
    let state: Value = serde_json::from_slice(&std::fs::read(&state_file).unwrap()).unwrap();
    for key in [
        "rpc_url",
        "chain_id",
        "network",
        "v1_network",
        "asset",
        "asset_name",
        "asset_version",
        "asset_decimals",
        "accounts",
        "facilitator_private_key",
        "gateway_url",
        "paid_url",
        "free_url",
        "metered_url",
        "permit2_url",
        "batch_url",
        "plain_asset",
        "facilitator_url",
        "pay_to",
        "price_atomic",
        "store",
    ] {
        assert!(state.get(key).is_some(), "state file lacks {key}: {state}");
    }
    // One hundred batch-settlement calls took one transaction: the deposit.
    assert_eq!(state["batch_calls"], 100, "{state}");
    assert_eq!(state["batch_transactions"], 1, "{state}");
    let chain = x402_gateway::tools::chain::Chain::connect(&state["rpc_url"].as_str().unwrap().parse().unwrap(), None)
        .await
        .unwrap();
    let asset: Address = state["asset"].as_str().unwrap().parse().unwrap();
    let pay_to: Address = state["pay_to"].as_str().unwrap().parse().unwrap();
    let price = U256::from(state["price_atomic"].as_str().unwrap().parse::<u64>().unwrap());
    let before = chain.balance_of(asset, pay_to).await.unwrap();

    let key = state["accounts"][3]["private_key"].as_str().unwrap();
    let text = paid(pay_cli(&["pay", state["paid_url"].as_str().unwrap()], key));
    assert!(
        text.contains("status 200") && text.contains("\"success\":true"),
        "{text}"
    );
    assert_eq!(chain.balance_of(asset, pay_to).await.unwrap(), before + price);
    // The demo keeps payment state in SQLite: the settled claim is in the file.
    let db = std::path::PathBuf::from(state["store"].as_str().unwrap().strip_prefix("sqlite:").unwrap());
    let bytes = [
        std::fs::read(&db).unwrap_or_default(),
        std::fs::read(db.with_extension("db-wal")).unwrap_or_default(),
    ]
    .concat();
    assert!(
        String::from_utf8_lossy(&bytes).contains("\"state\":\"settled\""),
        "no settled claim in {}",
        db.display()
    );

    // A cap below the price is refused without paying.
    let out = pay_cli(
        &["pay", "--max-amount", "999", state["paid_url"].as_str().unwrap()],
        key,
    );
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("--max-amount"));
    assert_eq!(chain.balance_of(asset, pay_to).await.unwrap(), before + price);

    // Metering by hand: the echo upstream charges what `x-echo-charge` says, and only that moves.
    let payer: Address = state["accounts"][3]["address"].as_str().unwrap().parse().unwrap();
    let payer_before = chain.balance_of(asset, payer).await.unwrap();
    let text = paid(pay_cli(
        &[
            "pay",
            "-H",
            "x-echo-charge: 2500",
            state["metered_url"].as_str().unwrap(),
        ],
        key,
    ));
    assert!(
        text.contains("Permit2 authorization") && text.contains("\"amount\":\"2500\""),
        "{text}"
    );
    assert_eq!(
        chain.balance_of(asset, payer).await.unwrap(),
        payer_before - U256::from(2500)
    );

    // The plain 18-decimal token through Permit2: $0.001 is 10^15 atomic units.
    let plain: Address = state["plain_asset"].as_str().unwrap().parse().unwrap();
    let plain_before = chain.balance_of(plain, pay_to).await.unwrap();
    paid(pay_cli(
        &[
            "pay",
            "--max-amount",
            "1000000000000000",
            state["permit2_url"].as_str().unwrap(),
        ],
        key,
    ));
    assert_eq!(
        chain.balance_of(plain, pay_to).await.unwrap(),
        plain_before + U256::from(1_000_000_000_000_000u64)
    );

    let free = reqwest::get(state["free_url"].as_str().unwrap()).await.unwrap();
    assert_eq!(free.status(), 200);
    let metrics = reqwest::get(format!("http://127.0.0.1:{}/metrics", ports[4]))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(
        metrics.contains("x402_requests_total") && metrics.contains("outcome=\"paid\""),
        "{metrics}"
    );
}

/// Runs `x402-gateway pay` with `args` as the payer whose key is `key`.
fn pay_cli(args: &[&str], key: &str) -> std::process::Output {
    std::process::Command::new(support::bin())
        .args(args)
        .env("X402_PRIVATE_KEY", key)
        .output()
        .unwrap()
}

/// The output of a `pay` that succeeded.
fn paid(out: std::process::Output) -> String {
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(out.status.success(), "{text}{}", String::from_utf8_lossy(&out.stderr));
    text
}
