//! The self-hosted facilitator: [`service`] verifies and settles on chain itself, [`server`] serves it over
//! HTTP (`/verify`, `/settle`, `/supported`).

pub mod server;
pub mod service;
