//! The gateway's Prometheus metrics, registered once; label values come from closed sets (route names
//! from the config, outcome words from the code), never from the client.

use prometheus::{IntCounterVec, Opts, Registry};

/// Typed metric handles.
pub struct Metrics {
    /// Registry served on the admin listener.
    pub registry: Registry,
    requests: IntCounterVec,
    facilitator_calls: IntCounterVec,
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
        registry.register(Box::new(requests.clone()))?;
        registry.register(Box::new(facilitator_calls.clone()))?;
        Ok(Metrics {
            registry,
            requests,
            facilitator_calls,
        })
    }

    /// Counts a finished request.
    pub fn request(&self, route: &str, outcome: &str) {
        self.requests.with_label_values(&[route, outcome]).inc();
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
