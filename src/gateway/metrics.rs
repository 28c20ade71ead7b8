//! The gateway's Prometheus metrics, registered once, and the closed set of request outcomes they count.
//! Label values come from the config (route names, networks, assets) and closed sets ([`Outcome`], the
//! `result` and `where` values below), never from the client. What every request counts (its outcome and
//! timings) goes through per-route handles looked up once per config ([`RouteMetrics`]); the rest
//! (verifications, settlements, revenue) is counted only for payments, by label.

use std::time::Duration;

use alloy::primitives::U256;
use prometheus::{
    Histogram, HistogramOpts, HistogramVec, IntCounter, IntCounterVec, IntGauge, IntGaugeVec, Opts, Registry,
};

use crate::config::Config;
use crate::gateway::revenue::Revenue;

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
    /// A payment refused for what it is: unreadable, wrong terms, bad signature, failed verification (402).
    RefusedPayment,
    /// A payment already used, or in use by another request (409, or 402 `nonce_already_used`).
    RefusedReplay,
    /// A `payment-identifier` in use by another payment or still in flight (409).
    RefusedConflict,
    /// The payment store failed or the gateway is at capacity (503).
    RefusedUnavailable,
    /// The payment's settlement outcome is not known yet (504).
    RefusedPending,
    /// The facilitator failed before anything was served (502/503/504).
    FacilitatorError,
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
    /// A priced route in `mode: shadow`: proxied, never charged.
    Shadow,
    /// Served unpaid because the facilitator failed on a route with `on_facilitator_error: allow`.
    FailOpen,
    /// A payment attempt over the client's `payment_attempts` limit (429).
    RateLimited,
}

impl Outcome {
    /// Every outcome, in declaration order (`ALL[o as usize] == o`).
    pub const ALL: [Outcome; 20] = [
        Outcome::Proxied,
        Outcome::Free,
        Outcome::BadRequest,
        Outcome::Denied,
        Outcome::Preflight,
        Outcome::Challenged,
        Outcome::RefusedPayment,
        Outcome::RefusedReplay,
        Outcome::RefusedConflict,
        Outcome::RefusedUnavailable,
        Outcome::RefusedPending,
        Outcome::FacilitatorError,
        Outcome::Paid,
        Outcome::Replayed,
        Outcome::UpstreamError,
        Outcome::SettleFailed,
        Outcome::UpstreamFailed,
        Outcome::Shadow,
        Outcome::FailOpen,
        Outcome::RateLimited,
    ];

    /// The label value.
    pub fn as_str(self) -> &'static str {
        match self {
            Outcome::Proxied => "proxied",
            Outcome::Free => "free",
            Outcome::BadRequest => "bad_request",
            Outcome::Denied => "denied",
            Outcome::Preflight => "preflight",
            Outcome::Challenged => "challenged",
            Outcome::RefusedPayment => "refused_payment",
            Outcome::RefusedReplay => "refused_replay",
            Outcome::RefusedConflict => "refused_conflict",
            Outcome::RefusedUnavailable => "refused_unavailable",
            Outcome::RefusedPending => "refused_pending",
            Outcome::FacilitatorError => "facilitator_error",
            Outcome::Paid => "paid",
            Outcome::Replayed => "replayed",
            Outcome::UpstreamError => "upstream_error",
            Outcome::SettleFailed => "settle_failed",
            Outcome::UpstreamFailed => "upstream_failed",
            Outcome::Shadow => "shadow",
            Outcome::FailOpen => "fail_open",
            Outcome::RateLimited => "rate_limited",
        }
    }
}

/// Where a payment was verified.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Where {
    Local,
    Remote,
}

/// What a verification came to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    Valid,
    Invalid,
    /// No answer (the facilitator failed).
    Error,
}

/// What a settlement came to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Settled {
    Success,
    Failed,
    Pending,
    InDoubt,
    Error,
}

impl Settled {
    const ALL: [Settled; 5] = [
        Settled::Success,
        Settled::Failed,
        Settled::Pending,
        Settled::InDoubt,
        Settled::Error,
    ];

    fn as_str(self) -> &'static str {
        match self {
            Settled::Success => "success",
            Settled::Failed => "failed",
            Settled::Pending => "pending",
            Settled::InDoubt => "in_doubt",
            Settled::Error => "error",
        }
    }
}

/// What a shadow route would have done.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WouldDo {
    /// No payment: would have answered 402.
    Challenge,
    /// A payment that passes the local checks: would have been admitted.
    Accept,
    /// A payment that fails them: would have been refused.
    Refuse,
    /// Admitted and the upstream answered < 400: would have been settled.
    Settle,
}

impl WouldDo {
    fn as_str(self) -> &'static str {
        match self {
            WouldDo::Challenge => "would_challenge",
            WouldDo::Accept => "would_accept",
            WouldDo::Refuse => "would_refuse",
            WouldDo::Settle => "would_settle",
        }
    }
}

/// Seconds, from a few hundred microseconds (the gateway's own work) to the facilitator's timeout.
const LATENCY_BUCKETS: &[f64] = &[
    0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0,
];

/// Typed metric handles.
pub struct Metrics {
    /// Registry served on the admin listener.
    pub registry: Registry,
    requests: IntCounterVec,
    verifications: IntCounterVec,
    settlements: IntCounterVec,
    revenue: Revenue,
    facilitator_duration: HistogramVec,
    upstream_duration: HistogramVec,
    added_latency: HistogramVec,
    replays_refused: IntCounterVec,
    reloads: IntCounterVec,
    tls_reloads: IntCounterVec,
    shadow: IntCounterVec,
    store_errors: IntCounter,
    batch_vouchers: IntCounterVec,
    batch_transactions: IntCounterVec,
    /// `batch-settlement` channels in the store, as the claimer last counted them.
    pub batch_channels: IntGauge,
    /// Charged by vouchers and not yet claimed, atomic units, as the claimer last counted it.
    pub batch_unclaimed: IntGauge,
    /// Claimed by the claimer since start, atomic units.
    pub batch_claimed: IntCounter,
    /// Requests holding a claimed payment right now.
    pub claims_in_flight: IntGauge,
    cache_entries: IntGaugeVec,
    /// 1 while the facilitator's last `/supported` is fresh and covers every configured network.
    pub facilitator_up: IntGauge,
    /// 1 while the store's last health check answered.
    pub store_up: IntGauge,
    /// What `/readyz` last answered (1 ready).
    pub ready: IntGauge,
    /// 1 once SIGTERM arrived.
    pub draining: IntGauge,
}

/// One route's handles (or the unmatched requests'), looked up once per config.
pub struct RouteMetrics {
    outcomes: Vec<IntCounter>,
    upstream: Histogram,
    added: Histogram,
    replays: IntCounter,
}

impl RouteMetrics {
    /// Counts a finished request, with the upstream's time to its response header (when it was asked) and
    /// the time the gateway added on top of it.
    pub fn finished(&self, outcome: Outcome, upstream: Option<Duration>, added: Duration) {
        if let Some(c) = self.outcomes.get(outcome as usize) {
            c.inc();
        }
        if outcome == Outcome::RefusedReplay {
            self.replays.inc();
        }
        if let Some(u) = upstream {
            self.upstream.observe(u.as_secs_f64());
        }
        self.added.observe(added.as_secs_f64());
    }
}

fn counter(registry: &Registry, name: &str, help: &str, labels: &[&str]) -> Result<IntCounterVec, prometheus::Error> {
    let c = IntCounterVec::new(Opts::new(name, help), labels)?;
    registry.register(Box::new(c.clone()))?;
    Ok(c)
}

fn histogram(registry: &Registry, name: &str, help: &str, labels: &[&str]) -> Result<HistogramVec, prometheus::Error> {
    let h = HistogramVec::new(HistogramOpts::new(name, help).buckets(LATENCY_BUCKETS.to_vec()), labels)?;
    registry.register(Box::new(h.clone()))?;
    Ok(h)
}

fn gauge(registry: &Registry, name: &str, help: &str) -> Result<IntGauge, prometheus::Error> {
    let g = IntGauge::new(name, help)?;
    registry.register(Box::new(g.clone()))?;
    Ok(g)
}

/// The label of unmatched requests.
pub const UNMATCHED: &str = "unmatched";

impl Metrics {
    /// Creates and registers the metrics.
    pub fn new() -> Result<Self, prometheus::Error> {
        let r = Registry::new();
        let build_info = IntGaugeVec::new(
            Opts::new("x402_build_info", "The running build (always 1)"),
            &["version"],
        )?;
        r.register(Box::new(build_info.clone()))?;
        build_info.with_label_values(&[env!("CARGO_PKG_VERSION")]).set(1);
        let store_errors = IntCounter::new(
            "x402_store_errors_total",
            "Payment store calls that failed (the request was refused with 503)",
        )?;
        r.register(Box::new(store_errors.clone()))?;
        let cache_entries = IntGaugeVec::new(
            Opts::new(
                "x402_cache_entries",
                "Entries in the gateway's in-process caches, by cache",
            ),
            &["cache"],
        )?;
        r.register(Box::new(cache_entries.clone()))?;
        let m = Metrics {
            requests: counter(
                &r,
                "x402_requests_total",
                "Requests by route and outcome",
                &["route", "outcome"],
            )?,
            verifications: counter(
                &r,
                "x402_verifications_total",
                "Payment verifications by network, where (local, remote) and result",
                &["network", "where", "result"],
            )?,
            settlements: counter(
                &r,
                "x402_settlements_total",
                "Settlements by network and result (success, failed, pending, in_doubt, error)",
                &["network", "result"],
            )?,
            revenue: {
                let revenue = Revenue::new()?;
                r.register(Box::new(revenue.clone()))?;
                revenue
            },
            facilitator_duration: histogram(
                &r,
                "x402_facilitator_request_duration_seconds",
                "Facilitator calls by endpoint and result",
                &["endpoint", "result"],
            )?,
            upstream_duration: histogram(
                &r,
                "x402_upstream_duration_seconds",
                "Time from sending a request upstream to its response header, by route",
                &["route"],
            )?,
            added_latency: histogram(
                &r,
                "x402_gateway_added_latency_seconds",
                "Time the gateway added to a request (to the response header, less the upstream's time), by route",
                &["route"],
            )?,
            replays_refused: counter(
                &r,
                "x402_replays_refused_total",
                "Payments refused because they were already used or in use, by route",
                &["route"],
            )?,
            reloads: counter(&r, "x402_config_reloads_total", "Config reloads by result", &["result"])?,
            tls_reloads: counter(
                &r,
                "x402_tls_certificate_reloads_total",
                "Changes of the listener's certificate files, by result (a failure keeps the running certificate)",
                &["result"],
            )?,
            shadow: counter(
                &r,
                "x402_shadow_decisions_total",
                "What routes in shadow mode would have done, by route and decision",
                &["route", "decision"],
            )?,
            store_errors,
            claims_in_flight: gauge(&r, "x402_claims_in_flight", "Requests holding a claimed payment")?,
            batch_vouchers: counter(
                &r,
                "x402_batch_vouchers_total",
                "batch-settlement payments (voucher, deposit, refund) by kind and result (accepted, or the refusal's reason)",
                &["kind", "result"],
            )?,
            batch_transactions: counter(
                &r,
                "x402_batch_transactions_total",
                "batch-settlement claim and settle transactions sent by the claimer, by kind and result",
                &["kind", "result"],
            )?,
            batch_channels: gauge(&r, "x402_batch_channels", "batch-settlement channels in the store")?,
            batch_unclaimed: gauge(
                &r,
                "x402_batch_unclaimed_atomic",
                "Charged by batch-settlement vouchers but not yet claimed, atomic units (all tokens)",
            )?,
            batch_claimed: {
                let c = IntCounter::new(
                    "x402_batch_claimed_atomic_total",
                    "Claimed on chain by the claimer, atomic units (all tokens)",
                )?;
                r.register(Box::new(c.clone()))?;
                c
            },
            cache_entries,
            facilitator_up: gauge(
                &r,
                "x402_facilitator_up",
                "1 while the facilitator's /supported answered recently and covers every configured network",
            )?,
            store_up: gauge(
                &r,
                "x402_store_up",
                "1 while the payment store answered its last health check",
            )?,
            ready: gauge(&r, "x402_ready", "1 while /readyz answers 200")?,
            draining: gauge(&r, "x402_draining", "1 once shutdown began")?,
            registry: r,
        };
        for result in ["success", "failure"] {
            m.reloads.with_label_values(&[result]);
            m.tls_reloads.with_label_values(&[result]);
        }
        Ok(m)
    }

    /// The handles of every route of `config`, by route index, then the unmatched requests' last. Also
    /// creates every series the config can produce, at zero, so dashboards and rates see them from the start.
    pub fn for_config(&self, config: &Config) -> Vec<RouteMetrics> {
        let mut out: Vec<RouteMetrics> = config.table.routes.iter().map(|r| self.for_route(&r.name)).collect();
        out.push(self.for_route(UNMATCHED));
        for route in &config.table.routes {
            for o in route.pricing.iter().flat_map(|p| &p.offers) {
                let q = &o.requirement;
                let (network, asset) = (q.network.to_string(), q.asset.to_string());
                self.revenue.add(&route.name, &network, &asset, U256::ZERO);
                for s in Settled::ALL {
                    self.settlements.with_label_values(&[&network, s.as_str()]);
                }
            }
        }
        out
    }

    fn for_route(&self, route: &str) -> RouteMetrics {
        RouteMetrics {
            outcomes: Outcome::ALL
                .iter()
                .map(|o| self.requests.with_label_values(&[route, o.as_str()]))
                .collect(),
            upstream: self.upstream_duration.with_label_values(&[route]),
            added: self.added_latency.with_label_values(&[route]),
            replays: self.replays_refused.with_label_values(&[route]),
        }
    }

    /// Counts a failed payment store call.
    pub fn store_error(&self) {
        self.store_errors.inc();
    }

    /// Counts a verification.
    pub fn verification(&self, network: &str, at: Where, verdict: Verdict) {
        let at = match at {
            Where::Local => "local",
            Where::Remote => "remote",
        };
        let verdict = match verdict {
            Verdict::Valid => "valid",
            Verdict::Invalid => "invalid",
            Verdict::Error => "error",
        };
        self.verifications.with_label_values(&[network, at, verdict]).inc();
    }

    /// Counts a settlement.
    pub fn settlement(&self, network: &str, result: Settled) {
        self.settlements.with_label_values(&[network, result.as_str()]).inc();
    }

    /// Counts a `batch-settlement` payment of `kind` accepted (`result` "accepted") or refused (its reason).
    pub fn batch_voucher(&self, kind: &str, result: &str) {
        self.batch_vouchers.with_label_values(&[kind, result]).inc();
    }

    /// Counts a claim or settle transaction the claimer sent.
    pub fn batch_transaction(&self, kind: &str, ok: bool) {
        self.batch_transactions
            .with_label_values(&[kind, if ok { "success" } else { "failure" }])
            .inc();
    }

    /// Adds settled revenue, in atomic units.
    pub fn revenue(&self, route: &str, network: &str, asset: &str, atomic: U256) {
        self.revenue.add(route, network, asset, atomic);
    }

    /// Times a facilitator call.
    pub fn facilitator_call(&self, endpoint: &str, ok: bool, took: Duration) {
        self.facilitator_duration
            .with_label_values(&[endpoint, if ok { "ok" } else { "error" }])
            .observe(took.as_secs_f64());
    }

    /// Counts a config reload.
    pub fn reload(&self, ok: bool) {
        self.reloads
            .with_label_values(&[if ok { "success" } else { "failure" }])
            .inc();
    }

    /// Counts a change of the listener's certificate files.
    pub fn tls_reload(&self, ok: bool) {
        self.tls_reloads
            .with_label_values(&[if ok { "success" } else { "failure" }])
            .inc();
    }

    /// Counts what a shadow route would have done.
    pub fn shadow(&self, route: &str, decision: WouldDo) {
        self.shadow.with_label_values(&[route, decision.as_str()]).inc();
    }

    /// Sets an in-process cache's size.
    pub fn cache_entries(&self, cache: &str, entries: u64) {
        self.cache_entries
            .with_label_values(&[cache])
            .set(i64::try_from(entries).unwrap_or(i64::MAX));
    }

    /// The text exposition format.
    pub fn render(&self) -> String {
        let mut buf = String::new();
        let _ = prometheus::TextEncoder::new().encode_utf8(&self.registry.gather(), &mut buf);
        buf
    }
}
