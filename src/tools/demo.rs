//! `x402-gateway demo`: the whole product on one machine. Starts a devnet, our facilitator, the echo
//! upstream and the gateway (from an embedded price table), pays one request with the built-in client and
//! prints each step; then keeps everything running until Ctrl-C.

use std::process::Stdio;
use std::sync::Arc;
use std::time::Duration;

use alloy::primitives::{Address, U256};
use serde::Serialize;

use crate::core::signal::shutdown_signal;
use crate::tools::chain::{Chain, TxOutcome};
use crate::tools::devnet::{write_json_atomically, Devnet, DevnetOptions, DevnetState};
use crate::tools::facilitator::service::FacilitatorService;
use crate::tools::pay::{PayRequest, DEFAULT_MAX_AMOUNT};

/// Flags of `demo`.
#[derive(Debug, clap::Args)]
pub struct DemoArgs {
    /// Write every devnet key plus the demo's URLs here once everything is ready.
    #[arg(long)]
    pub state_file: Option<std::path::PathBuf>,
    /// anvil RPC port.
    #[arg(long, default_value_t = 8545)]
    pub rpc_port: u16,
    /// Facilitator port.
    #[arg(long, default_value_t = 4020)]
    pub facilitator_port: u16,
    /// Echo upstream port.
    #[arg(long, default_value_t = 3000)]
    pub upstream_port: u16,
    /// Gateway port.
    #[arg(long, default_value_t = 8402)]
    pub gateway_port: u16,
    /// Gateway admin port (/metrics).
    #[arg(long, default_value_t = 9402)]
    pub admin_port: u16,
    /// Chain id of the local chain.
    #[arg(long, default_value_t = 31_337)]
    pub chain_id: u64,
}

/// The embedded price table.
const DEMO_CONFIG: &str = include_str!("demo.yaml");
/// The demo's price, in atomic units of its 6-decimals token ("$0.001").
const PRICE_ATOMIC: u64 = 1000;
/// Calls the demo pays by batch settlement, from one deposit.
const BATCH_CALLS: u64 = 100;
/// How long the gateway may take to start answering.
const GATEWAY_START_TIMEOUT: Duration = Duration::from_secs(30);

/// `--state-file` of the demo: every devnet key plus where the demo's parts run.
#[derive(Debug, Serialize)]
struct DemoState<'a> {
    #[serde(flatten)]
    devnet: &'a DevnetState,
    gateway_url: String,
    paid_url: String,
    free_url: String,
    /// `upto`, at most $0.01: the echo upstream charges the request's `x-echo-charge` (atomic units).
    metered_url: String,
    /// `exact` through Permit2 in the plain 18-decimal token.
    permit2_url: String,
    /// `batch-settlement` at $0.0001 a call.
    batch_url: String,
    /// Calls the demo paid on `batch_url`, and the transactions they took (the deposit).
    batch_calls: u64,
    batch_transactions: usize,
    facilitator_url: String,
    pay_to: String,
    price_atomic: String,
    /// The gateway's payment store (`sqlite:PATH`).
    store: String,
}

fn parse_addr(s: &str) -> Result<Address, String> {
    s.parse().map_err(|_| format!("devnet returned a bad address {s:?}"))
}

/// Runs the demo.
pub async fn run(args: DemoArgs) -> Result<(), String> {
    println!(
        "[1/5] local chain: starting anvil on port {} and deploying the EIP-3009 test token...",
        args.rpc_port
    );
    let devnet = Devnet::start(&DevnetOptions {
        port: args.rpc_port,
        chain_id: args.chain_id,
        ..DevnetOptions::default()
    })
    .await
    .map_err(|e| e.to_string())?;
    let s = devnet.state.clone();
    println!(
        "      {} (chain {}), token {} \"{}\" v{}",
        s.rpc_url, s.network, s.asset, s.asset_name, s.asset_version
    );

    let facilitator_url = format!("http://127.0.0.1:{}", args.facilitator_port);
    println!("[2/5] facilitator: {facilitator_url} (settles from anvil dev account 0)");
    let settler = s
        .facilitator_private_key
        .parse()
        .map_err(|_| "devnet facilitator key is invalid".to_owned())?;
    let rpc: url::Url = s.rpc_url.parse().map_err(|e| format!("{e}"))?;
    let chain = Chain::connect(&rpc, Some(settler)).await.map_err(|e| e.to_string())?;
    let facilitator_address = chain.sender().ok_or("the facilitator has no key")?;
    let service = Arc::new(FacilitatorService::new(vec![chain.clone()], Duration::from_secs(30)));
    let listener = tokio::net::TcpListener::bind(("127.0.0.1", args.facilitator_port))
        .await
        .map_err(|e| format!("facilitator port {}: {e}", args.facilitator_port))?;
    tokio::spawn(async move { axum::serve(listener, crate::tools::facilitator::server::router(service)).await });

    println!("[3/5] upstream: JSON echo on http://127.0.0.1:{}", args.upstream_port);
    let listener = tokio::net::TcpListener::bind(("127.0.0.1", args.upstream_port))
        .await
        .map_err(|e| format!("upstream port {}: {e}", args.upstream_port))?;
    tokio::spawn(crate::tools::upstream::serve(listener));

    let payer = s.accounts.first().ok_or("devnet has no funded accounts")?;
    // Signs the receiver's claims and refunds for batch settlement (never a payer in the demo).
    let authorizer = s.accounts.get(5).ok_or("devnet has too few accounts")?;
    let pay_to = s.accounts.get(1).ok_or("devnet has too few accounts")?.address.clone();
    let gateway_url = format!("http://127.0.0.1:{}", args.gateway_port);
    let (paid_url, free_url) = (format!("{gateway_url}/paid/hello"), format!("{gateway_url}/free/hello"));
    let (metered_url, permit2_url, batch_url) = (
        format!("{gateway_url}/metered/hello"),
        format!("{gateway_url}/token/hello"),
        format!("{gateway_url}/batch/hello"),
    );
    println!("[4/5] gateway: {gateway_url} (free /free/**, $0.001 for /paid/**, up to $0.01 for /metered/**, $0.001 in {} via Permit2 for /token/**, $0.0001 a call by batch settlement for /batch/**, paid to {pay_to}); metrics on http://127.0.0.1:{}/metrics", s.plain_asset_symbol, args.admin_port);
    let dir = std::env::temp_dir().join(format!("x402-demo-{}", std::process::id()));
    std::fs::create_dir_all(&dir).map_err(|e| e.to_string())?;
    let config_path = dir.join("gateway.yaml");
    std::fs::write(&config_path, DEMO_CONFIG).map_err(|e| e.to_string())?;
    let exe = std::env::current_exe().map_err(|e| e.to_string())?;
    let log_path = dir.join("gateway.log");
    let log = std::fs::File::create(&log_path).map_err(|e| format!("{}: {e}", log_path.display()))?;
    let mut gateway = tokio::process::Command::new(exe)
        .arg("run")
        .arg("-c")
        .arg(&config_path)
        .env("GATEWAY_PORT", args.gateway_port.to_string())
        .env("ADMIN_PORT", args.admin_port.to_string())
        .env("UPSTREAM_PORT", args.upstream_port.to_string())
        .env("FACILITATOR_PORT", args.facilitator_port.to_string())
        .env("PAY_TO", &pay_to)
        .env("NETWORK", &s.network)
        .env("ASSET", &s.asset)
        .env("ASSET_NAME", &s.asset_name)
        .env("ASSET_VERSION", &s.asset_version)
        .env("PLAIN_ASSET", &s.plain_asset)
        .env("PLAIN_SYMBOL", &s.plain_asset_symbol)
        .env("FACILITATOR_ADDRESS", facilitator_address.to_string())
        .env("STORE_PATH", dir.join("claims.db"))
        .env("RECEIVER_AUTHORIZER_KEY", authorizer.private_key.as_str())
        .env_remove(crate::config::FACILITATOR_URL_ENV)
        .stdout(Stdio::null())
        .stderr(log)
        .kill_on_drop(true)
        .spawn()
        .map_err(|e| format!("cannot start the gateway: {e}"))?;
    let http = reqwest::Client::new();
    let deadline = tokio::time::Instant::now() + GATEWAY_START_TIMEOUT;
    while http.get(&free_url).send().await.is_err() {
        if tokio::time::Instant::now() > deadline || gateway.try_wait().map(|s| s.is_some()).unwrap_or(true) {
            let log = std::fs::read_to_string(&log_path).unwrap_or_default();
            return Err(format!(
                "the gateway did not start; its log ({}):\n{log}",
                log_path.display()
            ));
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }

    println!(
        "[5/5] paying GET {paid_url} as {} with the built-in client",
        payer.address
    );
    let signer = payer.private_key.parse().map_err(|_| "bad dev key".to_owned())?;
    let asset = parse_addr(&s.asset)?;
    let (payer_addr, pay_to_addr) = (parse_addr(&payer.address)?, parse_addr(&pay_to)?);
    let before = (
        chain.balance_of(asset, payer_addr).await.map_err(|e| e.to_string())?,
        chain.balance_of(asset, pay_to_addr).await.map_err(|e| e.to_string())?,
    );
    let req = PayRequest {
        url: paid_url.clone(),
        method: reqwest::Method::GET,
        headers: Default::default(),
        body: None,
        v1: false,
        max_amount: U256::from(DEFAULT_MAX_AMOUNT),
    };
    let t = crate::tools::pay::pay(&http, &signer, &req, |_| false)
        .await
        .map_err(|e| e.to_string())?;
    println!("      first answer: {}", t.first_status);
    for line in crate::tools::pay::describe(&t).lines() {
        println!("      {line}");
    }
    let receipt = t
        .receipt
        .as_ref()
        .filter(|r| r.success && t.status == 200)
        .ok_or_else(|| format!("the paid request was not served (status {})", t.status))?;
    let hash = receipt
        .transaction
        .parse()
        .map_err(|_| format!("receipt names no transaction: {receipt:?}"))?;
    let outcome = chain.outcome(hash).await.map_err(|e| e.to_string())?;
    let after = (
        chain.balance_of(asset, payer_addr).await.map_err(|e| e.to_string())?,
        chain.balance_of(asset, pay_to_addr).await.map_err(|e| e.to_string())?,
    );
    println!(
        "      on chain: transaction {hash} {}",
        if outcome == TxOutcome::Succeeded {
            "succeeded"
        } else {
            "NOT confirmed"
        }
    );
    println!(
        "      payer balance {} -> {}, payee balance {} -> {} (atomic units)",
        before.0, after.0, before.1, after.1
    );

    // Batch settlement: one deposit, then a voucher per call that the gateway checks by itself.
    let batch_payer = s.accounts.get(4).ok_or("devnet has too few accounts")?;
    println!(
        "      batch settlement: paying {BATCH_CALLS} calls to {batch_url} as {} from one deposit...",
        batch_payer.address
    );
    let batch_signer = batch_payer.private_key.parse().map_err(|_| "bad dev key".to_owned())?;
    let now = crate::core::time::unix_now();
    let run = crate::tools::batch_pay::pay_calls(&http, batch_signer, &batch_url, BATCH_CALLS, now).await?;
    let served = run.statuses.iter().filter(|&&s| s == 200).count();
    if served != run.statuses.len() {
        return Err(format!(
            "batch settlement: only {served} of {BATCH_CALLS} calls were served: {:?}",
            run.statuses
        ));
    }
    println!(
        "      {served} calls served, {} on-chain transaction(s) (the deposit of {} atomic units), where exact would have sent {BATCH_CALLS}; charged {} so far",
        run.transactions.len(),
        run.deposit,
        run.charged
    );
    println!(
        "      the gateway claims the vouchers every 10s, many channels per transaction: x402-gateway channels --admin http://127.0.0.1:{}",
        args.admin_port
    );

    if let Some(path) = &args.state_file {
        let state = DemoState {
            devnet: &s,
            gateway_url: gateway_url.clone(),
            paid_url: paid_url.clone(),
            free_url,
            metered_url: metered_url.clone(),
            permit2_url: permit2_url.clone(),
            batch_url: batch_url.clone(),
            batch_calls: BATCH_CALLS,
            batch_transactions: run.transactions.len(),
            facilitator_url,
            pay_to,
            price_atomic: PRICE_ATOMIC.to_string(),
            store: format!("sqlite:{}", dir.join("claims.db").display()),
        };
        write_json_atomically(path, &state).map_err(|e| e.to_string())?;
    }
    println!("      gateway log: {}", log_path.display());
    let key = s.accounts.get(2).map_or("", |a| a.private_key.as_str());
    println!("\nDemo running. Pay again with:\n  X402_PRIVATE_KEY={key} x402-gateway pay {paid_url}");
    println!("Metered: authorise up to $0.01, pay what the upstream reports (here x-echo-charge, atomic units):");
    println!("  X402_PRIVATE_KEY={key} x402-gateway pay -H 'x-echo-charge: 2500' {metered_url}");
    println!(
        "Any ERC-20 through Permit2: $0.001 in {} (18 decimals, so 10^15 atomic units):",
        s.plain_asset_symbol
    );
    println!("  X402_PRIVATE_KEY={key} x402-gateway pay --max-amount 1000000000000000 {permit2_url}");
    println!("Batch settlement with the official clients (register BatchSettlementEvmScheme), e.g. Python:");
    println!("  see tests/clients/batch_python.py; URL={batch_url}");
    println!("Ctrl-C stops everything.");
    shutdown_signal().await;
    let _ = gateway.kill().await;
    devnet.stop().await;
    let _ = std::fs::remove_dir_all(&dir);
    Ok(())
}
