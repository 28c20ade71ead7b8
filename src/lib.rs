//! x402-gateway: sell an existing HTTP API per call over x402.
//!
//! A request's journey, module by module: [`config`] resolves the price table, [`routes`] matches the
//! request, [`challenge`] answers 402, [`payment`] decodes and matches a payment, [`verify`] checks it
//! locally, [`claims`] makes it single-use, [`facilitator`] verifies and settles it remotely,
//! [`proxy`] wires those stages into Pingora. [`chain`], [`devnet`] and [`facilitator::server`] are the
//! self-hosted tools around it.
#![cfg_attr(not(test), deny(clippy::unwrap_used, clippy::expect_used))]

pub mod admin;
pub mod chain;
pub mod challenge;
pub mod checkout;
pub mod claims;
pub mod cli;
pub mod config;
pub mod demo;
pub mod devnet;
pub mod facilitator;
pub mod gateway;
pub mod metrics;
pub mod money;
pub mod pay;
pub mod payment;
pub mod protocol;
pub mod proxy;
pub mod refusal;
pub mod remote;
pub mod routes;
pub mod secret;
pub mod upstream;
pub mod verify;
