//! The gateway's Prometheus metrics, registered once, and the closed set of request outcomes they count.
//! Label values come from closed sets (route names from the config, [`Outcome`]), never from the client.

use prometheus::{IntCounterVec, Opts, Registry};

/// How a request ended, as logs and metrics name it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Outcome {
    /// Unmatched, proxied under `default: pass`.
    #[default]
    Proxied,
    /// A free route, proxied.
    Free,
    /// Refused as malformed (400).
    BadRequest,
    /// Unmatched under `default: deny` (404).
    Denied,
    /// A CORS preflight answered by the gateway.
    Preflight,
    /// A priced route asked for payment (first 402).
    Challenged,
    /// A payment was refused before proxying.
    Refused,
    /// Paid, served, settled.
    Paid,
    /// The earlier answer to the same payment, replayed under its `payment-identifier`.
    Replayed,
    /// The upstream answered >= 400 (or the request was HEAD): passed through, nothing settled.
    UpstreamError,
    /// The settlement failed or is in doubt after the upstream answered: nothing served.
    SettleFailed,
    /// The upstream could not be reached or broke off.
    UpstreamFailed,
}

impl Outcome {
    /// The label value.
    pub fn as_str(self) -> &'static str {
        match self {
            Outcome::Proxied => "proxied",
            Outcome::Free => "free",
            Outcome::BadRequest => "bad_request",
            Outcome::Denied => "denied",
            Outcome::Preflight => "preflight",
            Outcome::Challenged => "challenged",
            Outcome::Refused => "refused",
            Outcome::Paid => "paid",
            Outcome::Replayed => "replayed",
            Outcome::UpstreamError => "upstream_error",
            Outcome::SettleFailed => "settle_failed",
            Outcome::UpstreamFailed => "upstream_failed",
        }
    }
}

/// Typed metric handles.
pub struct Metrics {
    /// Registry served on the admin listener.
    pub registry: Registry,
    requests: IntCounterVec,
    facilitator_calls: IntCounterVec,
    store_errors: prometheus::IntCounter,
}

impl Metrics {
    /// Creates and registers the metrics.
    pub fn new() -> Result<Self, prometheus::Error> {
        let registry = Registry::new();
        let requests = IntCounterVec::new(
            Opts::new("x402_requests_total", "Requests by route and outcome"),
            &["route", "outcome"],
        )?;
        let facilitator_calls = IntCounterVec::new(
            Opts::new(
                "x402_facilitator_calls_total",
                "Facilitator calls by endpoint and result",
            ),
            &["call", "result"],
        )?;
        let store_errors = prometheus::IntCounter::new(
            "x402_store_errors_total",
            "Payment store calls that failed (the request was refused with 503)",
        )?;
        registry.register(Box::new(store_errors.clone()))?;
        registry.register(Box::new(requests.clone()))?;
        registry.register(Box::new(facilitator_calls.clone()))?;
        Ok(Metrics {
            registry,
            requests,
            facilitator_calls,
            store_errors,
        })
    }

    /// Counts a failed payment store call.
    pub fn store_error(&self) {
        self.store_errors.inc();
    }

    /// Counts a finished request.
    pub fn request(&self, route: &str, outcome: Outcome) {
        self.requests.with_label_values(&[route, outcome.as_str()]).inc();
    }

    /// Counts a facilitator call.
    pub fn facilitator_call(&self, call: &str, ok: bool) {
        self.facilitator_calls
            .with_label_values(&[call, if ok { "ok" } else { "error" }])
            .inc();
    }

    /// The text exposition format.
    pub fn render(&self) -> String {
        let mut buf = String::new();
        let _ = prometheus::TextEncoder::new().encode_utf8(&self.registry.gather(), &mut buf);
        buf
    }
}
