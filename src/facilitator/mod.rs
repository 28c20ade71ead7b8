//! The facilitator API on both sides: [`client`] is how the gateway calls one; [`service`] and
//! [`server`] are the self-hosted facilitator that verifies and settles on chain itself.

pub mod client;
pub mod server;
pub mod service;
