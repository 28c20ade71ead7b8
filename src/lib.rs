//! x402-gateway: sell an existing HTTP API per call over x402.
//!
//! The crate is layered; each folder is a layer and imports only from the layers below it
//! (ARCHITECTURE.md, enforced by `tests/layers.rs`):
//!
//! 1. [`core`]: money, secrets, the clock, durations, signals.
//! 2. [`protocol`]: x402 wire types, the header codec, networks, assets, the `exact` scheme. No I/O.
//! 3. [`rules`]: pure rules: route matching, the 402, local verification, time windows.
//! 4. [`config`]: the YAML file to a validated model.
//! 5. [`gateway`] (the request's journey through Pingora) and [`tools`] (chain, devnet, facilitator, pay,
//!    demo, echo upstream), which never import each other.
//! 6. [`cli`]: argument parsing and dispatch; imported by nothing.
#![cfg_attr(not(test), deny(clippy::unwrap_used, clippy::expect_used))]

pub mod cli;
pub mod config;
pub mod core;
pub mod gateway;
pub mod protocol;
pub mod rules;
pub mod tools;
