//! The `x402-gateway` binary: parse the command line, set up logging, hand over to the subcommand.

use clap::Parser;

fn main() -> std::process::ExitCode {
    let cli = x402_gateway::cli::Cli::parse();
    x402_gateway::cli::init_tracing(&cli);
    x402_gateway::cli::dispatch(cli)
}
