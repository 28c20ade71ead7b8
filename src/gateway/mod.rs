//! Layer 5, the gateway: a paid request's journey through Pingora, one module per stage, in order.
//!
//! [`intake`] (route the request) → [`decode`] (read the payment) → [`verify`] (locally) → [`claims`]
//! (make it single-use) → [`verify`] (with the facilitator) → proxy ([`forward`]: the headers the upstream
//! gets) → [`settle`] → [`receipt`]; a payment
//! whose settlement outcome is unknown is resolved by [`onchain`] when the facilitator cannot say.
//! [`checkout`] runs the stages before proxying; [`proxy`] holds Pingora's phases, each calling a stage.
//! Beside them: [`challenge`](crate::rules::challenge) answers are rendered by [`refusal`] (every answer
//! of our own, in one place), [`cors`], the [`facilitator`] client, the [`store`] claims live in,
//! [`idempotency`] (the `payment-identifier` extension), [`throttle`] (payment attempts per client), [`fault`]
//! (test-only pause points for crash tests), [`shadow`] (routes that only say what they would do),
//! [`access`] (the access log), [`metrics`]. Operations: [`live`] (the config a request runs under,
//! swapped whole by [`reload`]), [`health`] (readiness, checked in the background), [`drain`]
//! (graceful shutdown), [`admin`] (the control plane's thread and the admin listener), and [`server`]
//! which starts it all. Imports `core`, `protocol`, `rules` and `config`; never the tools. Only
//! [`server`] (how it starts), and [`decode`] and [`store`] (benchmarked on their own), are used from
//! outside.

mod access;
mod admin;
mod batch;
pub mod channels;
mod checkout;
mod claimer;
mod claims;
mod cors;
pub mod decode;
mod drain;
mod facilitator;
mod fault;
mod forward;
mod health;
mod idempotency;
mod intake;
mod live;
mod metrics;
mod onchain;
mod proxy;
mod receipt;
mod refusal;
mod reload;
mod revenue;
mod scheme;
pub mod server;
mod settle;
mod shadow;
pub mod store;
mod throttle;
mod tls;
mod verify;
