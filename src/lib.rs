//! x402-gateway: sell an existing HTTP API per call over x402.
//!
//! A request's journey, module by module: [`config`] resolves the price table, [`routes`] matches the
//! request, [`challenge`] answers 402, [`payment`] decodes and matches a payment, [`verify`] checks it
//! locally, [`claims`] makes it single-use, [`facilitator`] verifies and settles it remotely,
//! [`proxy`] wires those stages into Pingora. [`chain`], [`devnet`] and [`facilitator::server`] are the
//! self-hosted tools around it.
#![cfg_attr(not(test), deny(clippy::unwrap_used, clippy::expect_used))]

pub mod chain;
pub mod cli;
pub mod devnet;
pub mod facilitator;
pub mod money;
pub mod protocol;
pub mod secret;
pub mod verify;
