//! The top layer: the command line. Parses the subcommands and their flags and hands each to its module;
//! imported by nothing. Each tool defines its own flags next to its code.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::{Arc, Mutex};

use clap::{Args, Parser, Subcommand};

use crate::config::{LogFormat, ProcessEnv};
use crate::tools::channels::ChannelsArgs;
use crate::tools::demo::DemoArgs;
use crate::tools::devnet::DevnetArgs;
use crate::tools::facilitator::server::FacilitatorArgs;
use crate::tools::pay::PayArgs;
use crate::tools::payments::PaymentsArgs;

/// Sell an existing HTTP API per call over x402.
#[derive(Debug, Parser)]
#[command(name = "x402-gateway", version, about)]
pub struct Cli {
    /// Log format: `text` for people, `json` for log pipelines (default: the config's `log_format`, else
    /// text).
    #[arg(long, global = true, value_enum)]
    pub log_format: Option<LogFormat>,
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
    /// List payments whose settlement outcome is unknown, or resolve one (through the admin listener).
    Payments(PaymentsArgs),
    /// List `batch-settlement` channels (deposit, charged, unclaimed), or claim or settle them now.
    Channels(ChannelsArgs),
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

/// Sets up `tracing` (filter from `RUST_LOG`, default `info`), writing to stderr through a non-blocking
/// writer: a worker hands its line to a queue and goes on; when stderr is too slow the queue drops lines
/// rather than stall requests. Flushed when the guard drops.
fn init_tracing(format: LogFormat) -> tracing_appender::non_blocking::WorkerGuard {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let (writer, guard) = tracing_appender::non_blocking(std::io::stderr());
    let builder = tracing_subscriber::fmt().with_env_filter(filter).with_writer(writer);
    match format {
        LogFormat::Json => builder.json().init(),
        LogFormat::Text => builder.init(),
    }
    guard
}

/// `run`: the config decides the log format unless the flag does; the log writer is flushed on every
/// way out, including the drain's early exit.
fn run(path: &Path, flag: Option<LogFormat>) -> Result<(), String> {
    let config = crate::config::load(path, &ProcessEnv).map_err(|e| e.to_string())?;
    let format = flag.or(config.log_format).unwrap_or_default();
    let guard = Arc::new(Mutex::new(Some(init_tracing(format))));
    let flush = guard.clone();
    let before_exit = Box::new(move || drop(flush.lock().ok().and_then(|mut g| g.take())));
    let result = crate::gateway::server::run(path, config, before_exit);
    drop(guard.lock().ok().and_then(|mut g| g.take()));
    result
}

fn runtime() -> Result<tokio::runtime::Runtime, String> {
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .map_err(|e| format!("cannot start the async runtime: {e}"))
}

/// Runs the chosen subcommand; prints the error and exits 1 on failure.
pub fn dispatch(cli: Cli) -> ExitCode {
    use crate::tools::{demo, devnet, facilitator, pay, payments, upstream};
    let _guard = match cli.command {
        Command::Run(_) => None,
        _ => Some(init_tracing(cli.log_format.unwrap_or_default())),
    };
    let result = match cli.command {
        Command::Devnet(args) => runtime().and_then(|rt| rt.block_on(devnet::run(args))),
        Command::Facilitator(args) => runtime().and_then(|rt| rt.block_on(facilitator::server::run(args))),
        // Pingora owns its runtimes and threads: no tokio runtime around it.
        Command::Run(args) => run(&args.config, cli.log_format),
        Command::Pay(args) => runtime().and_then(|rt| rt.block_on(pay::run(args))),
        Command::Payments(args) => runtime().and_then(|rt| rt.block_on(payments::run(args))),
        Command::Channels(args) => runtime().and_then(|rt| rt.block_on(crate::tools::channels::run(args))),
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
