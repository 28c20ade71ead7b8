//! Command-line interface: the subcommands and their flags. Each subcommand's work lives in its own module.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use clap::{Args, Parser, Subcommand};

/// Sell an existing HTTP API per call over x402.
#[derive(Debug, Parser)]
#[command(name = "x402-gateway", version, about)]
pub struct Cli {
    /// Log format: `text` for people, `json` for log pipelines.
    #[arg(long, global = true, default_value = "text", value_parser = ["text", "json"])]
    pub log_format: String,
    #[command(subcommand)]
    pub command: Command,
}

/// The subcommands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Start a local chain (anvil) with an EIP-3009 test token and funded dev accounts.
    Devnet(DevnetArgs),
    /// Run a self-hosted x402 facilitator that verifies and settles on chain.
    Facilitator(FacilitatorArgs),
    /// Run the paid reverse proxy.
    Run(ConfigArgs),
    /// Validate a config file without starting; print the resolved price table.
    Check(ConfigArgs),
    /// Run the demo's JSON echo upstream by itself.
    Upstream(UpstreamArgs),
    /// Request a URL, paying its x402 price (key from X402_PRIVATE_KEY).
    Pay(PayArgs),
    /// Start everything locally (chain, facilitator, upstream, gateway) and pay one request.
    Demo(DemoArgs),
}

/// Flags of `pay`.
#[derive(Debug, Args)]
pub struct PayArgs {
    /// The URL to request.
    pub url: String,
    /// HTTP method.
    #[arg(short = 'X', long = "request", default_value = "GET")]
    pub method: String,
    /// Extra request header, `Name: value`. Repeatable.
    #[arg(short = 'H', long = "header")]
    pub headers: Vec<String>,
    /// Request body.
    #[arg(short = 'd', long = "data")]
    pub data: Option<String>,
    /// Pay with the x402 v1 offer (X-PAYMENT) even if a v2 one is present.
    #[arg(long)]
    pub v1: bool,
    /// Largest price paid without asking, in the asset's atomic units (100000 = $0.10 of USDC).
    #[arg(long, default_value_t = crate::pay::DEFAULT_MAX_AMOUNT)]
    pub max_amount: u64,
}

/// Flags of `demo`.
#[derive(Debug, Args)]
pub struct DemoArgs {
    /// Write every devnet key plus the demo's URLs here once everything is ready.
    #[arg(long)]
    pub state_file: Option<PathBuf>,
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

/// Flags of `upstream`.
#[derive(Debug, Args)]
pub struct UpstreamArgs {
    /// Address to serve on.
    #[arg(long, default_value = "127.0.0.1:3000")]
    pub listen: SocketAddr,
}

/// `-c FILE`.
#[derive(Debug, Args)]
pub struct ConfigArgs {
    /// The gateway configuration (YAML).
    #[arg(short, long, default_value = "gateway.yaml")]
    pub config: PathBuf,
}

/// Flags of `devnet`.
#[derive(Debug, Args)]
pub struct DevnetArgs {
    /// RPC port for anvil.
    #[arg(long, default_value_t = 8545)]
    pub port: u16,
    /// Chain id (use 84532 to let legacy v1 clients call it `base-sepolia`).
    #[arg(long, default_value_t = 31_337)]
    pub chain_id: u64,
    /// Write a JSON description (RPC URL, token, funded keys) here once everything is ready.
    #[arg(long)]
    pub state_file: Option<PathBuf>,
    /// The anvil binary (default: tools/node_modules/.bin/anvil, then PATH).
    #[arg(long)]
    pub anvil: Option<PathBuf>,
}

/// Flags of `facilitator`. The settling key comes from `X402_FACILITATOR_PRIVATE_KEY`, never a flag.
#[derive(Debug, Args)]
pub struct FacilitatorArgs {
    /// Address to serve the facilitator API on.
    #[arg(long, default_value = "127.0.0.1:4020")]
    pub listen: SocketAddr,
    /// JSON-RPC endpoint of the chain to settle on.
    #[arg(long, env = "X402_RPC_URL")]
    pub rpc_url: url::Url,
    /// Networks to serve (CAIP-2 or v1 name), each optionally `=RPC_URL` for its own endpoint. Repeatable.
    /// Default: the chain `--rpc-url` reports.
    #[arg(long = "network")]
    pub networks: Vec<String>,
    /// How long to wait for a settlement's receipt before answering `settlement_pending`.
    #[arg(long, default_value = "30s", value_parser = parse_duration)]
    pub receipt_timeout: Duration,
}

/// Parses `500ms`, `30s`, `2m`, or plain seconds.
pub fn parse_duration(s: &str) -> Result<Duration, String> {
    let err = || format!("{s:?} is not a duration: write e.g. 500ms, 30s or 2m");
    let (num, unit) = s
        .find(|c: char| !c.is_ascii_digit())
        .map_or((s, "s"), |i| s.split_at(i));
    let n: u64 = num.parse().map_err(|_| err())?;
    match unit {
        "ms" => Ok(Duration::from_millis(n)),
        "s" => Ok(Duration::from_secs(n)),
        "m" => Ok(Duration::from_secs(n.saturating_mul(60))),
        _ => Err(err()),
    }
}

/// Sets up `tracing` (filter from `RUST_LOG`, default `info`).
pub fn init_tracing(cli: &Cli) {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    if cli.log_format == "json" {
        builder.json().init();
    } else {
        builder.init();
    }
}

fn runtime() -> Result<tokio::runtime::Runtime, String> {
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .map_err(|e| format!("cannot start the async runtime: {e}"))
}

/// Runs the chosen subcommand; prints the error and exits 1 on failure.
pub fn dispatch(cli: Cli) -> ExitCode {
    let result = match cli.command {
        Command::Devnet(args) => runtime().and_then(|rt| rt.block_on(crate::devnet::run(args))),
        Command::Facilitator(args) => runtime().and_then(|rt| rt.block_on(crate::facilitator::server::run(args))),
        // Pingora owns its runtimes and threads: no tokio runtime around it.
        Command::Run(args) => crate::gateway::run(&args.config),
        Command::Pay(args) => runtime().and_then(|rt| rt.block_on(crate::pay::run(args))),
        Command::Demo(args) => runtime().and_then(|rt| rt.block_on(crate::demo::run(args))),
        Command::Upstream(args) => runtime().and_then(|rt| rt.block_on(crate::upstream::run(args.listen))),
        Command::Check(args) => crate::config::load(&args.config)
            .map(|c| print!("{}", c.describe()))
            .map_err(|e| e.to_string()),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::FAILURE
        }
    }
}

/// Resolves on SIGINT or SIGTERM.
pub async fn shutdown_signal() {
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending().await,
        }
    };
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        _ = term => {}
    }
}
