//! The `x402-gateway` binary: parse the command line, set up logging, hand over to the subcommand.

use clap::Parser;

#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> std::process::ExitCode {
    x402_gateway::cli::dispatch(x402_gateway::cli::Cli::parse())
}
