//! The self-hosted facilitator: [`service`] verifies and settles on chain itself, [`server`] serves it over
//! HTTP (`/verify`, `/settle`, `/supported`); [`batch`] is its `batch-settlement` scheme.

pub mod batch;
pub mod server;
pub mod service;
