//! The Pingora `ProxyHttp` implementation: one method per phase, each a few lines that call a stage and
//! keep its result in the request context (ARCHITECTURE.md traces one paid request through them).

use std::borrow::Cow;
use std::sync::Arc;
use std::time::{Duration, Instant};

use async_trait::async_trait;
use bytes::Bytes;
use http::Method;
use pingora::http::{RequestHeader, ResponseHeader};
use pingora::prelude::{HttpPeer, Session};
use pingora::proxy::{FailToProxy, ProxyHttp};
use pingora::{Error, ErrorType, Result};

use crate::core::time::Clock;
use crate::gateway::claims::Claims;
use crate::gateway::decode::{self, Presented};
use crate::gateway::drain::{InFlight, Requests};
use crate::gateway::facilitator::Remote;
use crate::gateway::health::Health;
use crate::gateway::idempotency::{self, Tracked};
use crate::gateway::intake::{self, Decision};
use crate::gateway::live::{Generations, LiveConfig};
use crate::gateway::metrics::{Metrics, Outcome, WouldDo, UNMATCHED};
use crate::gateway::onchain::Onchain;
use crate::gateway::refusal::{self, Answer, Refusal};
use crate::gateway::scheme::{Admission, Checkout, Hold};
use crate::gateway::settle;
use crate::gateway::store::Store;
use crate::gateway::throttle::Throttle;
use crate::gateway::{access, cors, forward, receipt, shadow};
use crate::protocol::{HEADER_PAYMENT_SIGNATURE, HEADER_X_PAYMENT};
use crate::rules::challenge::is_browser;
use crate::rules::charge::HEADER_SETTLEMENT_OVERRIDES;
use crate::rules::table::{Pricing, Route};

/// The proxy: the live configuration plus the shared stages.
pub struct Gateway {
    pub live: Arc<LiveConfig>,
    pub claims: Arc<Claims>,
    pub remote: Arc<Remote>,
    /// Reads the chain to resolve a payment whose settlement outcome is unknown (`rpc:`).
    pub onchain: Arc<Onchain>,
    /// `payment_attempts:`, per client address.
    pub throttle: Option<Arc<Throttle>>,
    pub metrics: Arc<Metrics>,
    pub clock: Clock,
    /// Where `payment-identifier` outcomes are kept (the claims' store).
    pub store: Arc<dyn Store>,
    pub health: Arc<Health>,
    pub requests: Arc<Requests>,
}

/// Per-request state.
pub struct Ctx {
    /// The configuration this request runs under from start to end, whatever is reloaded meanwhile.
    gen: Arc<Generations>,
    _in_flight: InFlight,
    started: Instant,
    upstream_sent: Option<Instant>,
    /// From sending the request upstream to its response header.
    upstream_took: Option<Duration>,
    /// When the response header was ready to go out (after any settlement).
    header_ready: Option<Instant>,
    /// A shadow route's payment passed the local checks: it would have been settled.
    shadow_accepted: bool,
    route: Option<usize>,
    upstream: Option<usize>,
    rewrite_path: Option<String>,
    /// The absolute URL, for priced routes (the 402's `resource`).
    url: String,
    browser: bool,
    /// The payment admitted for this request, whatever its scheme.
    admitted: Option<Box<dyn Hold>>,
    /// A refusal decided in a phase that can only fail; `fail_to_proxy` renders it.
    refusal: Option<Refusal>,
    outcome: Outcome,
    /// A paid body kept for a `payment-identifier` replay, while within the configured size.
    kept: Vec<u8>,
    /// Whether the paid body outgrew that size.
    kept_overflow: bool,
    kept_type: Option<String>,
}

impl Ctx {
    fn route(&self) -> Option<&Route> {
        self.route.and_then(|i| self.gen.current.config.table.routes.get(i))
    }

    fn route_name(&self) -> &str {
        self.route().map_or(UNMATCHED, |r| r.name.as_str())
    }

    fn pricing(&self) -> Option<&Pricing> {
        self.route().and_then(|r| r.pricing.as_ref())
    }
}

impl Gateway {
    /// Writes an answer of our own. Always with Content-Length, so keep-alive clients do not hang.
    async fn write(
        &self,
        session: &mut Session,
        ctx: &Ctx,
        answer: Answer,
        extra: &[(&'static str, String)],
    ) -> Result<()> {
        let head = session.req_header().method == Method::HEAD;
        let mut resp = ResponseHeader::build(answer.status, Some(answer.headers.len() + extra.len() + 2))?;
        for (k, v) in answer.headers.iter().chain(extra) {
            resp.insert_header(*k, v.as_str())?;
        }
        resp.insert_header("content-length", answer.body.len().to_string())?;
        cors::expose(session.req_header(), &mut resp, ctx.pricing().is_some())?;
        let empty = head || answer.body.is_empty();
        session.write_response_header(Box::new(resp), empty).await?;
        if !empty {
            session
                .write_response_body(Some(Bytes::from(answer.body)), true)
                .await?;
        }
        Ok(())
    }

    /// Answers with a refusal; the request ends here.
    async fn refuse(&self, session: &mut Session, ctx: &mut Ctx, refusal: Refusal, outcome: Outcome) -> Result<bool> {
        let answer = refusal::render(&refusal, ctx.pricing(), &ctx.url, ctx.browser);
        ctx.outcome = outcome;
        self.write(session, ctx, answer, &[]).await?;
        Ok(true)
    }
}

impl Gateway {
    /// Keeps a paid outcome under its `payment-identifier`, or frees the identifier when it was not paid.
    /// The body is kept only when it went out whole (`complete`) and as plain bytes (no content encoding).
    async fn keep_outcome(&self, session: &Session, ctx: &Ctx, a: &dyn Hold, t: &Tracked, complete: bool) {
        let (Outcome::Paid, Some(settled), Some(resp)) = (ctx.outcome, a.settled(), session.response_written()) else {
            return idempotency::abandon(self.store.as_ref(), t).await;
        };
        let outcome = idempotency::Outcome {
            status: resp.status.as_u16(),
            receipt: receipt::header(a.version(), settled),
            transaction: &settled.transaction,
            content_type: ctx.kept_type.clone(),
            body: (complete && !ctx.kept_overflow && !resp.headers.contains_key("content-encoding"))
                .then_some(ctx.kept.as_slice()),
        };
        idempotency::finish(self.store.as_ref(), t, outcome, self.clock.now()).await;
    }
}

impl Gateway {
    /// The pricing a payment is judged by: the route's, unless the payment was made out for other terms
    /// that a retired price table quoted for this request within that route's `maxTimeoutSeconds` before
    /// it was replaced, to the same recipient (a changed `pay_to` is never honoured). An old quote brings
    /// its offers only: how the payment is enforced (verify, settle, fail-open, identifiers) is the current
    /// route's. Chosen before any side effect, so a payment is checked out once, under one set of terms.
    fn quoted<'g>(
        &self,
        req: &RequestHeader,
        gen: &'g Generations,
        pricing: &'g Pricing,
        p: &Presented,
    ) -> Cow<'g, Pricing> {
        let now = self.clock.now();
        if gen.honoured(now).next().is_none() || decode::quotes(p, &pricing.offers) {
            return Cow::Borrowed(pricing);
        }
        let same_recipient = |old: &Pricing| {
            old.offers.iter().all(|o| {
                pricing
                    .offers
                    .iter()
                    .any(|c| c.requirement.pay_to == o.requirement.pay_to)
            })
        };
        for (old, retired_at) in gen.honoured(now) {
            let Decision::Pay(old_pricing, _) = intake::classify(req, &old.config.table).decision else {
                continue;
            };
            if now <= retired_at.saturating_add(old_pricing.max_timeout())
                && same_recipient(old_pricing)
                && decode::quotes(p, &old_pricing.offers)
            {
                tracing::info!("payment made out to a retired price table's quote; honoured");
                let mut honoured = pricing.clone();
                honoured.offers.clone_from(&old_pricing.offers);
                return Cow::Owned(honoured);
            }
        }
        Cow::Borrowed(pricing)
    }

    /// Checks out a presented payment: admitted, refused, or (the facilitator could not verify, on a route
    /// that allows it) proxied unpaid.
    async fn pay(
        &self,
        session: &mut Session,
        ctx: &mut Ctx,
        gen: &Generations,
        pricing: &Pricing,
        presented: Presented,
    ) -> Result<bool> {
        let checkout = Checkout {
            claims: &self.claims,
            remote: &self.remote,
            onchain: &self.onchain,
            batch: gen.current.config.batch.as_ref(),
            // The client is worked out only when a limit is set.
            throttle: self.throttle.as_deref().and_then(|t| {
                let f = &gen.current.config.forwarding;
                forward::client(f, forward::peer(session), &session.req_header().headers).map(|c| (t, c))
            }),
            store: &self.store,
            clock: &self.clock,
        };
        let pricing = self.quoted(session.req_header(), gen, pricing, &presented);
        let result = checkout.admit(presented, &pricing, &ctx.url).await;
        match result {
            Ok(Admission::Paid(a)) => {
                self.metrics.claims_in_flight.inc();
                let own = a.own_answer();
                ctx.admitted = Some(a);
                match own {
                    Some(answer) => self.answer_paid(session, ctx, answer).await,
                    None => Ok(false),
                }
            }
            Ok(Admission::Unpaid(error)) => {
                tracing::warn!(route = ctx.route_name(), error = %error, "facilitator could not verify; serving this payment once, unpaid (on_facilitator_error: allow)");
                ctx.outcome = Outcome::FailOpen;
                Ok(false)
            }
            Err(r) => {
                let outcome = r.outcome();
                self.refuse(session, ctx, r, outcome).await
            }
        }
    }

    /// Answers a paid request with the gateway's own answer (a refund acknowledged), collecting its
    /// payment first as if the upstream had given that answer.
    async fn answer_paid(&self, session: &mut Session, ctx: &mut Ctx, mut answer: Answer) -> Result<bool> {
        let head = session.req_header().method == Method::HEAD;
        let Some(a) = ctx.admitted.as_mut() else {
            return Ok(false);
        };
        match a.on_response(answer.status, head, None).await {
            Ok(settled) => {
                if let Some(s) = &settled {
                    answer.headers.push(receipt::header(a.version(), s));
                }
                answer.headers.push(("cache-control", "private".to_owned()));
                ctx.outcome = if settled.is_some() {
                    Outcome::Paid
                } else {
                    Outcome::UpstreamError
                };
                self.write(session, ctx, answer, &[]).await?;
                Ok(true)
            }
            Err(r) => {
                let outcome = Outcome::SettleFailed;
                self.refuse(session, ctx, r, outcome).await
            }
        }
    }

    /// Judges a shadow route's request and lets it through.
    fn shadow(
        &self,
        ctx: &mut Ctx,
        pricing: &Pricing,
        payment: Option<Result<Presented, crate::gateway::decode::PaymentError>>,
    ) {
        let (would, reason) = shadow::judge(pricing, payment, self.clock.now());
        self.metrics.shadow(ctx.route_name(), would);
        tracing::info!(route = ctx.route_name(), decision = ?would, reason, "shadow");
        ctx.shadow_accepted = would == WouldDo::Accept;
        ctx.outcome = Outcome::Shadow;
    }
}

/// Whether a response status ends the header phase: anything but 1xx, and 101 (the protocol switched).
fn is_final(status: http::StatusCode) -> bool {
    !status.is_informational() || status == http::StatusCode::SWITCHING_PROTOCOLS
}

#[async_trait]
impl ProxyHttp for Gateway {
    type CTX = Ctx;

    fn new_ctx(&self) -> Ctx {
        Ctx {
            gen: self.live.load(),
            _in_flight: self.requests.start(),
            started: Instant::now(),
            upstream_sent: None,
            upstream_took: None,
            header_ready: None,
            shadow_accepted: false,
            route: None,
            upstream: None,
            rewrite_path: None,
            url: String::new(),
            browser: false,
            admitted: None,
            refusal: None,
            outcome: Outcome::default(),
            kept: Vec::new(),
            kept_overflow: false,
            kept_type: None,
        }
    }

    async fn request_filter(&self, session: &mut Session, ctx: &mut Ctx) -> Result<bool> {
        // Draining: clients are told to reconnect (elsewhere) after this answer.
        if self.health.is_draining() {
            session.set_keepalive(None);
        }
        let gen = ctx.gen.clone();
        let req = session.req_header();
        let intake = intake::classify(req, &gen.current.config.table);
        (ctx.route, ctx.upstream, ctx.rewrite_path) = (intake.route, intake.upstream, intake.rewrite_path);
        if ctx.pricing().is_some() {
            ctx.url = intake::request_url(req, forward::scheme(&gen.current.config.forwarding, session));
            ctx.browser = is_browser(&req.headers);
        }
        match intake.decision {
            Decision::Proxy(outcome) => {
                ctx.outcome = outcome;
                Ok(false)
            }
            Decision::Answer(refusal, outcome) => self.refuse(session, ctx, refusal, outcome).await,
            Decision::Preflight => {
                ctx.outcome = Outcome::Preflight;
                let answer = Answer::empty(204, cors::preflight_headers(req));
                self.write(session, ctx, answer, &[]).await?;
                Ok(true)
            }
            Decision::Pay(pricing, presented) => self.pay(session, ctx, &gen, pricing, presented).await,
            Decision::Shadow(pricing, payment) => {
                self.shadow(ctx, pricing, payment);
                Ok(false)
            }
        }
    }

    async fn upstream_peer(&self, _session: &mut Session, ctx: &mut Ctx) -> Result<Box<HttpPeer>> {
        let u = ctx
            .upstream
            .and_then(|i| ctx.gen.current.upstreams.get(i))
            .ok_or_else(|| Error::explain(ErrorType::InternalError, "no upstream for this request"))?;
        let f = &ctx.gen.current.config.forwarding;
        let mut peer = HttpPeer::new(u.addr, u.tls, u.sni.clone());
        peer.options.connection_timeout = Some(f.connect_timeout);
        peer.options.read_timeout = Some(f.read_timeout);
        peer.options.write_timeout = Some(f.write_timeout);
        peer.options.idle_timeout = Some(f.idle_timeout);
        Ok(Box::new(peer))
    }

    async fn upstream_request_filter(
        &self,
        session: &mut Session,
        upstream: &mut RequestHeader,
        ctx: &mut Ctx,
    ) -> Result<()> {
        ctx.upstream_sent = Some(Instant::now());
        // Invariant 4: payment headers never reach the upstream.
        upstream.remove_header(HEADER_PAYMENT_SIGNATURE);
        upstream.remove_header(HEADER_X_PAYMENT);
        let u = ctx.upstream.and_then(|i| ctx.gen.current.upstreams.get(i));
        forward::headers(
            upstream,
            &ctx.gen.current.config.forwarding,
            forward::peer(session),
            forward::over_tls(session),
            u.map(|u| u.authority.as_str()),
        )?;
        if let Some(path) = &ctx.rewrite_path {
            let pq = match upstream.uri.query() {
                Some(q) => format!("{path}?{q}"),
                None => path.clone(),
            };
            let uri = pq
                .parse()
                .map_err(|_| Error::explain(ErrorType::InternalError, "normalised path is not a URI"))?;
            upstream.set_uri(uri);
        }
        Ok(())
    }

    async fn response_filter(&self, session: &mut Session, resp: &mut ResponseHeader, ctx: &mut Ctx) -> Result<()> {
        // The upstream's word to the gateway on what a metered call cost; never the client's business.
        let overrides = resp
            .remove_header(HEADER_SETTLEMENT_OVERRIDES)
            .map(|v| v.as_bytes().to_vec());
        // 1xx (100 Continue, 103 Early Hints) is not the answer: nothing to settle yet.
        if !is_final(resp.status) {
            return Ok(());
        }
        ctx.upstream_took = ctx.upstream_sent.map(|t| t.elapsed());
        ctx.header_ready = Some(Instant::now());
        cors::expose(session.req_header(), resp, ctx.pricing().is_some())?;
        // Whatever a priced route's upstream answers (paid, served unpaid under `allow`, an error) no
        // shared cache may keep it to serve to someone who did not pay.
        if ctx.route().is_some_and(Route::enforces) {
            receipt::make_private(resp)?;
        }
        let head = session.req_header().method == Method::HEAD;
        if ctx.shadow_accepted && resp.status.as_u16() < 400 && !head {
            self.metrics.shadow(ctx.route_name(), WouldDo::Settle);
        }
        let Some(admitted) = ctx.admitted.as_mut() else {
            return Ok(());
        };
        let status = resp.status.as_u16();
        let settled = admitted.on_response(status, head, overrides.as_deref()).await;
        ctx.header_ready = Some(Instant::now());
        match settled {
            Ok(Some(settled)) => {
                receipt::attach(resp, admitted.version(), &settled)?;
                let content_type = resp.headers.get("content-type").and_then(|v| v.to_str().ok());
                ctx.kept_type = content_type.map(str::to_owned);
                ctx.outcome = Outcome::Paid;
                Ok(())
            }
            // Upstream failed: passed through unsettled; the claim is released in `logging`.
            Ok(None) => {
                ctx.outcome = Outcome::UpstreamError;
                Ok(())
            }
            Err(r) => {
                let status = r.status();
                (ctx.refusal, ctx.outcome) = (Some(r), Outcome::SettleFailed);
                Err(Error::explain(
                    ErrorType::HTTPStatus(status),
                    "refused by the payment stage",
                ))
            }
        }
    }

    fn response_body_filter(
        &self,
        _session: &mut Session,
        body: &mut Option<Bytes>,
        _end_of_stream: bool,
        ctx: &mut Ctx,
    ) -> Result<Option<std::time::Duration>> {
        // Keep the paid body for a `payment-identifier` replay, up to the configured size; streamed as is.
        let tracked = ctx.admitted.as_ref().is_some_and(|a| a.tracked().is_some());
        if let (true, Outcome::Paid, false, Some(b)) = (tracked, ctx.outcome, ctx.kept_overflow, body.as_ref()) {
            if ctx.kept.len() + b.len() > ctx.gen.current.config.payment_identifier_max_body {
                ctx.kept_overflow = true;
                ctx.kept = Vec::new();
            } else {
                ctx.kept.extend_from_slice(b);
            }
        }
        Ok(None)
    }

    async fn fail_to_proxy(&self, session: &mut Session, e: &Error, ctx: &mut Ctx) -> FailToProxy {
        let gone = FailToProxy {
            error_code: 0,
            can_reuse_downstream: false,
        };
        // Once a final header is out, nothing more can be said; the connection is closed.
        if session.response_written().is_some_and(|r| is_final(r.status)) {
            return gone;
        }
        let refusal = match ctx.refusal.take() {
            Some(r) => r,
            None => match refusal::for_proxy_error(e) {
                Some((r, outcome)) => {
                    ctx.outcome = outcome.unwrap_or(ctx.outcome);
                    r
                }
                None => return gone,
            },
        };
        let answer = refusal::render(&refusal, ctx.pricing(), &ctx.url, ctx.browser);
        // A route that settled before proxying keeps the payer's receipt whatever went wrong after.
        let kept: Vec<_> = ctx
            .admitted
            .iter()
            .filter_map(|a| settle::kept_receipt(a.as_ref()))
            .collect();
        let code = answer.status;
        match self.write(session, ctx, answer, &kept).await {
            Ok(()) => FailToProxy {
                error_code: code,
                can_reuse_downstream: false,
            },
            Err(_) => gone,
        }
    }

    fn suppress_error_log(&self, _session: &Session, ctx: &Ctx, _error: &Error) -> bool {
        // Our own refusals after the upstream answered are not proxy errors; `logging` records them.
        ctx.outcome == Outcome::SettleFailed
    }

    async fn logging(&self, session: &mut Session, e: Option<&Error>, ctx: &mut Ctx) {
        if let Some(mut a) = ctx.admitted.take() {
            self.metrics.claims_in_flight.dec();
            // Whatever did not settle (upstream >= 400, errors, client gone) frees what was held.
            if a.settled().is_none() {
                a.release().await;
            }
            if let Some(t) = a.tracked() {
                self.keep_outcome(session, ctx, a.as_ref(), t, e.is_none()).await;
            }
            if a.settled().is_some() && a.settles_on_chain() {
                let (network, asset) = (a.network().to_string(), a.asset().to_string());
                self.metrics.revenue(ctx.route_name(), &network, &asset, a.paid());
            }
            ctx.admitted = Some(a);
        }
        let total = ctx.started.elapsed();
        let to_header = ctx.header_ready.map_or(total, |t| t.duration_since(ctx.started));
        let added = to_header.saturating_sub(ctx.upstream_took.unwrap_or_default());
        if let Some(m) = ctx.gen.current.route_metrics(ctx.route) {
            m.finished(ctx.outcome, ctx.upstream_took, added);
        }
        let req = session.req_header();
        access::log(&access::Entry {
            route: ctx.route_name(),
            method: req.method.as_str(),
            path: req.uri.path(),
            status: session.response_written().map_or(0, |r| r.status.as_u16()),
            outcome: ctx.outcome,
            admitted: ctx.admitted.as_deref(),
            upstream: ctx.upstream_took,
            total,
        });
    }
}
