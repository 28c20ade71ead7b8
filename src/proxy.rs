//! The Pingora `ProxyHttp` implementation. It only wires the stages: each phase calls one stage and keeps
//! its result in the request context (see DESIGN.md, "One request, through Pingora's phases").

use std::net::SocketAddr;
use std::sync::Arc;

use async_trait::async_trait;
use bytes::Bytes;
use http::Method;
use pingora::http::{RequestHeader, ResponseHeader};
use pingora::prelude::{HttpPeer, Session};
use pingora::proxy::{FailToProxy, ProxyHttp};
use pingora::{Error, ErrorSource, ErrorType, Result};

use crate::checkout::{self, Admitted, Checkout};
use crate::claims::Claims;
use crate::config::{Config, DefaultAction, Pricing, Route};
use crate::metrics::Metrics;
use crate::protocol::{codec, HEADER_PAYMENT_SIGNATURE, HEADER_X_PAYMENT};
use crate::refusal::{self, receipt_header, Answer, Refusal};
use crate::remote::Remote;
use crate::routes::NormalPath;

/// An upstream with its address resolved at start-up (Pingora's `HttpPeer::new` would resolve names
/// blocking, and panic on failure).
#[derive(Debug, Clone)]
pub struct ResolvedUpstream {
    pub addr: SocketAddr,
    pub tls: bool,
    pub sni: String,
}

/// The proxy: configuration plus the shared stages.
pub struct Gateway {
    pub config: Arc<Config>,
    pub upstreams: std::collections::HashMap<String, ResolvedUpstream>,
    pub claims: Claims,
    pub remote: Remote,
    pub metrics: Arc<Metrics>,
}

/// Per-request state.
#[derive(Default)]
pub struct Ctx {
    route: Option<usize>,
    upstream: Option<String>,
    rewrite_path: Option<String>,
    url: String,
    browser: bool,
    /// The matched route has a price (CORS for the payment headers applies).
    priced: bool,
    admitted: Option<Admitted>,
    refusal: Option<Refusal>,
    outcome: &'static str,
}

impl Gateway {
    fn route(&self, ctx: &Ctx) -> Option<&Route> {
        ctx.route.and_then(|i| self.config.routes.get(i))
    }

    fn pricing(&self, ctx: &Ctx) -> Option<&Pricing> {
        self.route(ctx).and_then(|r| r.pricing.as_ref())
    }

    fn route_name(&self, ctx: &Ctx) -> &str {
        self.route(ctx).map_or("unmatched", |r| r.name.as_str())
    }

    fn find_route(&self, method: &Method, host: &str, path: &NormalPath) -> Option<usize> {
        self.config.routes.iter().position(|r: &Route| {
            r.methods
                .as_ref()
                .is_none_or(|ms| ms.contains(method) || (method == Method::HEAD && ms.contains(&Method::GET)))
                && r.host.as_ref().is_none_or(|h| h.matches(host))
                && r.path.matches(path)
        })
    }

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
        cors_expose(session, &mut resp, ctx)?;
        session
            .write_response_header(Box::new(resp), head || answer.body.is_empty())
            .await?;
        if !head && !answer.body.is_empty() {
            session
                .write_response_body(Some(Bytes::from(answer.body)), true)
                .await?;
        }
        Ok(())
    }

    async fn refuse(
        &self,
        session: &mut Session,
        ctx: &mut Ctx,
        refusal: Refusal,
        outcome: &'static str,
    ) -> Result<bool> {
        let answer = refusal::render(&refusal, self.pricing(ctx), &ctx.url, ctx.browser);
        ctx.outcome = outcome;
        self.write(session, ctx, answer, &[]).await?;
        Ok(true)
    }
}

fn cors_expose(session: &Session, resp: &mut ResponseHeader, ctx: &Ctx) -> Result<()> {
    if !ctx.priced || !session.req_header().headers.contains_key("origin") {
        return Ok(());
    }
    // Keep what the upstream said about origins and exposed headers; only add ours.
    if !resp.headers.contains_key("access-control-allow-origin") {
        resp.insert_header("access-control-allow-origin", "*")?;
    }
    let exposed = match resp
        .headers
        .get("access-control-expose-headers")
        .and_then(|v| v.to_str().ok())
    {
        Some(theirs) if !theirs.is_empty() => format!("{theirs}, {}", refusal::EXPOSED_HEADERS),
        _ => refusal::EXPOSED_HEADERS.to_owned(),
    };
    resp.insert_header("access-control-expose-headers", exposed)?;
    Ok(())
}

/// Whether a response status ends the header phase: anything but 1xx, and 101 (the protocol switched).
fn is_final(status: http::StatusCode) -> bool {
    !status.is_informational() || status == http::StatusCode::SWITCHING_PROTOCOLS
}

/// `Cache-Control` of a paid response: the upstream's, made `private` so shared caches never replay it.
fn private_cache_control(current: Option<&http::HeaderValue>) -> String {
    match current.and_then(|v| v.to_str().ok()) {
        Some(c)
            if c.split(',')
                .any(|d| d.trim().eq_ignore_ascii_case("private") || d.trim().eq_ignore_ascii_case("no-store")) =>
        {
            c.to_owned()
        }
        Some(c) => format!("{c}, private"),
        None => "private".to_owned(),
    }
}

/// `host[:port]` the client addressed: the h2 `:authority` / absolute-form target, else `Host`.
fn authority(req: &RequestHeader) -> Option<&str> {
    // Userinfo (`user@`) is not part of the host.
    req.uri
        .authority()
        .and_then(|a| a.as_str().rsplit('@').next())
        .or_else(|| req.headers.get("host").and_then(|h| h.to_str().ok()))
        .filter(|h| !h.is_empty())
}

/// The URL the client asked for, absolute, as `resource` must be.
fn request_url(req: &RequestHeader) -> String {
    let scheme = req
        .headers
        .get("x-forwarded-proto")
        .and_then(|v| v.to_str().ok())
        .filter(|s| *s == "https" || *s == "http")
        .unwrap_or("http");
    let host = authority(req).unwrap_or("localhost");
    let pq = req.uri.path_and_query().map_or("/", |p| p.as_str());
    format!("{scheme}://{host}{pq}")
}

fn refused_in_phase(status: u16) -> Box<Error> {
    Error::explain(ErrorType::HTTPStatus(status), "refused by the payment stage")
}

#[async_trait]
impl ProxyHttp for Gateway {
    type CTX = Ctx;

    fn new_ctx(&self) -> Ctx {
        Ctx {
            outcome: "proxied",
            ..Ctx::default()
        }
    }

    async fn request_filter(&self, session: &mut Session, ctx: &mut Ctx) -> Result<bool> {
        let req = session.req_header();
        ctx.url = request_url(req);
        ctx.browser = crate::challenge::is_browser(&req.headers);
        let path = match NormalPath::parse(req.uri.path()) {
            Ok(p) => p,
            Err(e) => {
                return self
                    .refuse(session, ctx, Refusal::BadRequest(e.to_string()), "bad_request")
                    .await
            }
        };
        if path.rewritten {
            ctx.rewrite_path = Some(path.to_path());
        }
        let host = authority(req).unwrap_or_default().to_owned();
        // Route matching must see what the upstream will see: no Host, or a method some upstreams read
        // case-insensitively, could land a priced request on a free route.
        let malformed = if host.is_empty() {
            Some("a Host header is required")
        } else if req.method.as_str().bytes().any(|b| b.is_ascii_lowercase()) {
            Some("the method must be upper case")
        } else {
            None
        };
        if let Some(m) = malformed {
            return self
                .refuse(session, ctx, Refusal::BadRequest(m.into()), "bad_request")
                .await;
        }
        let method = req.method.clone();
        ctx.route = self.find_route(&method, &host, &path);
        let Some(route) = self.route(ctx) else {
            return match self.config.default_action {
                DefaultAction::Pass => {
                    ctx.upstream = Some("default".into());
                    Ok(false)
                }
                DefaultAction::Deny => self.refuse(session, ctx, Refusal::NotFound, "denied").await,
            };
        };
        ctx.upstream = Some(route.upstream.clone());
        let Some(pricing) = &route.pricing else {
            ctx.outcome = "free";
            return Ok(false);
        };
        ctx.priced = true;
        if method == Method::OPTIONS && req.headers.contains_key("access-control-request-method") {
            ctx.outcome = "preflight";
            let answer = Answer {
                status: 204,
                headers: preflight_headers(req),
                body: Vec::new(),
            };
            self.write(session, ctx, answer, &[]).await?;
            return Ok(true);
        }
        // HEAD is never settled (invariant 2), so a priced HEAD always gets the challenge's headers.
        let presented = if method == Method::HEAD {
            None
        } else {
            crate::payment::read(&req.headers)
        };
        let presented = match presented {
            None => {
                return self
                    .refuse(
                        session,
                        ctx,
                        Refusal::PaymentRequired {
                            reason: None,
                            receipt: None,
                        },
                        "challenged",
                    )
                    .await
            }
            Some(Err(e)) => {
                return self
                    .refuse(
                        session,
                        ctx,
                        Refusal::PaymentRequired {
                            reason: Some(e.reason()),
                            receipt: None,
                        },
                        "refused",
                    )
                    .await
            }
            Some(Ok(p)) => p,
        };
        let checkout = Checkout {
            claims: &self.claims,
            remote: &self.remote,
        };
        match checkout.admit(presented, pricing, &ctx.url).await {
            Ok(a) => {
                ctx.admitted = Some(a);
                Ok(false)
            }
            Err(r) => self.refuse(session, ctx, r, "refused").await,
        }
    }

    async fn upstream_peer(&self, _session: &mut Session, ctx: &mut Ctx) -> Result<Box<HttpPeer>> {
        let name = ctx.upstream.as_deref().unwrap_or("default");
        let u = self
            .upstreams
            .get(name)
            .ok_or_else(|| Error::explain(ErrorType::InternalError, "route names an unknown upstream"))?;
        Ok(Box::new(HttpPeer::new(u.addr, u.tls, u.sni.clone())))
    }

    async fn upstream_request_filter(
        &self,
        _session: &mut Session,
        upstream: &mut RequestHeader,
        ctx: &mut Ctx,
    ) -> Result<()> {
        // Invariant 4: payment headers never reach the upstream.
        upstream.remove_header(HEADER_PAYMENT_SIGNATURE);
        upstream.remove_header(HEADER_X_PAYMENT);
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
        // 1xx (100 Continue, 103 Early Hints) is not the answer: nothing to settle yet. 101 switches protocols
        // and is final.
        if !is_final(resp.status) {
            return Ok(());
        }
        cors_expose(session, resp, ctx)?;
        let head = session.req_header().method == Method::HEAD;
        let Some(admitted) = ctx.admitted.as_mut() else {
            return Ok(());
        };
        let settled = match &admitted.settled {
            Some(s) => s.clone(),
            None if resp.status.as_u16() >= 400 || head => {
                // Upstream failed: pass it through, no settle; the claim is released in `logging`.
                ctx.outcome = "upstream_error";
                return Ok(());
            }
            None => match checkout::settle(&self.claims, &self.remote, admitted).await {
                Ok(s) => {
                    admitted.settled = Some(s.clone());
                    s
                }
                Err(r) => {
                    let status = r.status();
                    ctx.refusal = Some(r);
                    ctx.outcome = "settle_failed";
                    return Err(refused_in_phase(status));
                }
            },
        };
        resp.insert_header(receipt_header(admitted.version), codec::encode(&settled))?;
        resp.insert_header(
            "cache-control",
            private_cache_control(resp.headers.get("cache-control")),
        )?;
        ctx.outcome = "paid";
        Ok(())
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
            None => match (e.esource(), e.etype()) {
                (_, ErrorType::HTTPStatus(s)) => Refusal::Upstream {
                    status: *s,
                    message: e.etype().as_str().to_owned(),
                },
                // The client's side broke: a dead connection gets nothing, bad input a 400.
                (
                    ErrorSource::Downstream,
                    ErrorType::ReadError | ErrorType::WriteError | ErrorType::ConnectionClosed,
                ) => return gone,
                (ErrorSource::Downstream, _) => {
                    Refusal::BadRequest(format!("malformed request: {}", e.etype().as_str()))
                }
                _ => {
                    ctx.outcome = "upstream_failed";
                    Refusal::Upstream {
                        status: 502,
                        message: e.etype().as_str().to_owned(),
                    }
                }
            },
        };
        let answer = refusal::render(&refusal, self.pricing(ctx), &ctx.url, ctx.browser);
        // A route that settled before proxying keeps the payer's receipt whatever went wrong after.
        let receipt: Vec<(&'static str, String)> = ctx
            .admitted
            .as_ref()
            .and_then(|a| {
                a.settled
                    .as_ref()
                    .map(|s| (receipt_header(a.version), codec::encode(s)))
            })
            .into_iter()
            .collect();
        let code = answer.status;
        match self.write(session, ctx, answer, &receipt).await {
            Ok(()) => FailToProxy {
                error_code: code,
                can_reuse_downstream: false,
            },
            Err(_) => gone,
        }
    }

    fn suppress_error_log(&self, _session: &Session, ctx: &Ctx, _error: &Error) -> bool {
        // Our own refusals after the upstream answered are not proxy errors; `logging` records them.
        ctx.outcome == "settle_failed"
    }

    async fn logging(&self, session: &mut Session, _e: Option<&Error>, ctx: &mut Ctx) {
        if let Some(a) = &ctx.admitted {
            // Whatever did not settle (upstream >= 400, errors, client gone) frees the authorization.
            // Settled and in-doubt claims are untouched by a release.
            self.claims.release(&a.ticket).await;
        }
        let status = session.response_written().map_or(0, |r| r.status.as_u16());
        self.metrics.request(self.route_name(ctx), ctx.outcome);
        tracing::info!(
            method = %session.req_header().method,
            path = %session.req_header().uri.path(),
            route = self.route_name(ctx),
            status,
            outcome = ctx.outcome,
            payer = ctx.admitted.as_ref().map(|a| a.payer.to_string()),
            "request"
        );
    }
}

fn preflight_headers(req: &RequestHeader) -> Vec<(&'static str, String)> {
    let requested = req
        .headers
        .get("access-control-request-headers")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    let allow = if requested.is_empty() {
        refusal::ALLOWED_REQUEST_HEADERS.to_owned()
    } else {
        format!("{}, {requested}", refusal::ALLOWED_REQUEST_HEADERS)
    };
    vec![
        (
            "access-control-allow-methods",
            "GET, POST, PUT, PATCH, DELETE, HEAD, OPTIONS".into(),
        ),
        ("access-control-allow-headers", allow),
        ("access-control-max-age", "600".into()),
    ]
}
