//! The access log: one event per request, on the `x402_gateway::access` target (filter it with
//! `RUST_LOG`), written like every log line through the non-blocking writer the binary sets up, so a slow
//! stderr never stalls a worker. It carries the payer, the amount and the transaction, never a key, a
//! credential or a payment header.

use std::time::Duration;

use crate::gateway::metrics::Outcome;
use crate::gateway::scheme::Hold;

/// What one request came to.
pub struct Entry<'a> {
    pub route: &'a str,
    pub method: &'a str,
    pub path: &'a str,
    /// 0 when no response went out (the client left).
    pub status: u16,
    pub outcome: Outcome,
    /// The payment admitted for it, whatever its scheme.
    pub admitted: Option<&'a dyn Hold>,
    /// From sending upstream to the upstream's response header; `None` when the upstream was not asked.
    pub upstream: Option<Duration>,
    pub total: Duration,
}

/// Writes the entry.
pub fn log(e: &Entry<'_>) {
    let ms = |d: Duration| d.as_secs_f64() * 1000.0;
    let a = e.admitted;
    tracing::info!(
        target: "x402_gateway::access",
        route = e.route,
        method = e.method,
        path = e.path,
        status = e.status,
        outcome = e.outcome.as_str(),
        payer = a.map(|a| tracing::field::display(a.payer())),
        amount = a.map(|a| tracing::field::display(a.paid())),
        network = a.map(|a| tracing::field::display(a.network())),
        transaction = a.and_then(|a| a.settled()).map(|s| s.transaction.as_str()),
        channel = a.and_then(|a| a.channel()).map(tracing::field::display),
        upstream_ms = e.upstream.map(ms),
        total_ms = ms(e.total),
        "request"
    );
}
