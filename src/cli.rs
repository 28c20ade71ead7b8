//! The top layer: the command line. Parses the subcommands and their flags and hands each to its module;
//! imported by nothing. Each tool defines its own flags next to its code.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Args, Parser, Subcommand};

use crate::config::ProcessEnv;
use crate::tools::demo::DemoArgs;
use crate::tools::devnet::DevnetArgs;
use crate::tools::facilitator::server::FacilitatorArgs;
use crate::tools::pay::PayArgs;

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
    use crate::tools::{demo, devnet, facilitator, pay, upstream};
    let result = match cli.command {
        Command::Devnet(args) => runtime().and_then(|rt| rt.block_on(devnet::run(args))),
        Command::Facilitator(args) => runtime().and_then(|rt| rt.block_on(facilitator::server::run(args))),
        // Pingora owns its runtimes and threads: no tokio runtime around it.
        Command::Run(args) => crate::gateway::server::run(&args.config),
        Command::Pay(args) => runtime().and_then(|rt| rt.block_on(pay::run(args))),
        Command::Demo(args) => runtime().and_then(|rt| rt.block_on(demo::run(args))),
        Command::Upstream(args) => runtime().and_then(|rt| rt.block_on(upstream::run(args.listen))),
        Command::Check(args) => crate::config::load(&args.config, &ProcessEnv)
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
