//! The request's first look, before any payment is read: normalise the path, refuse what an upstream
//! could read differently than the route table (no Host, a lower-case method), find the route, and decide
//! what happens next: proxy for free, answer ourselves, or go through checkout.

use http::Method;
use pingora::http::RequestHeader;

use crate::gateway::cors;
use crate::gateway::decode::{self, PaymentError, Presented};
use crate::gateway::metrics::Outcome;
use crate::gateway::refusal::Refusal;
use crate::rules::routes::NormalPath;
use crate::rules::table::{Mode, Pricing, Route, RouteTable, Unmatched};

/// What the gateway does with a request.
pub enum Decision<'t> {
    /// Proxy it without payment.
    Proxy(Outcome),
    /// Answer it ourselves.
    Answer(Refusal, Outcome),
    /// Answer a CORS preflight on a priced route.
    Preflight,
    /// A payment was presented for a priced route: check it out.
    Pay(&'t Pricing, Presented),
    /// A priced route in `mode: shadow`: judge the payment (if any), then proxy whatever the verdict.
    Shadow(&'t Pricing, Option<Result<Presented, PaymentError>>),
}

/// The request's route, upstream and path as the upstream must see them, and the decision.
pub struct Intake<'t> {
    /// Index into the route table.
    pub route: Option<usize>,
    /// Index into the config's upstreams.
    pub upstream: Option<usize>,
    /// The normalised path, when normalising changed it: the upstream gets this, so it cannot see a
    /// different resource than the one that was priced.
    pub rewrite_path: Option<String>,
    pub decision: Decision<'t>,
}

impl<'t> Intake<'t> {
    fn answer(refusal: Refusal, outcome: Outcome) -> Self {
        Intake {
            route: None,
            upstream: None,
            rewrite_path: None,
            decision: Decision::Answer(refusal, outcome),
        }
    }
}

/// `host[:port]` the client addressed: the h2 `:authority` / absolute-form target, else `Host`.
pub fn authority(req: &RequestHeader) -> Option<&str> {
    // Userinfo (`user@`) is not part of the host.
    req.uri
        .authority()
        .and_then(|a| a.as_str().rsplit('@').next())
        .or_else(|| req.headers.get("host").and_then(|h| h.to_str().ok()))
        .filter(|h| !h.is_empty())
}

/// The URL the client asked for, absolute, as `resource` must be. `scheme` is what the client used
/// (`forward::scheme`).
pub fn request_url(req: &RequestHeader, scheme: &str) -> String {
    let host = authority(req).unwrap_or("localhost");
    let pq = req.uri.path_and_query().map_or("/", |p| p.as_str());
    format!("{scheme}://{host}{pq}")
}

/// Decides what to do with `req` under `table`.
pub fn classify<'t>(req: &RequestHeader, table: &'t RouteTable) -> Intake<'t> {
    let path = match NormalPath::parse(req.uri.path()) {
        Ok(p) => p,
        Err(e) => return Intake::answer(Refusal::BadRequest(e.to_string()), Outcome::BadRequest),
    };
    // Route matching must see what the upstream will see: no Host, or a method some upstreams read
    // case-insensitively, could land a priced request on a free route.
    let host = authority(req).unwrap_or_default();
    if host.is_empty() {
        return Intake::answer(
            Refusal::BadRequest("a Host header is required".into()),
            Outcome::BadRequest,
        );
    }
    if req.method.as_str().bytes().any(|b| b.is_ascii_lowercase()) {
        return Intake::answer(
            Refusal::BadRequest("the method must be upper case".into()),
            Outcome::BadRequest,
        );
    }
    let rewrite_path = path.rewritten.then(|| path.to_path());
    let found = table.find(&req.method, host, &path);
    if let Some(refused) = priced_path_guard(req, table, host, &path, found) {
        return refused;
    }
    let Some((index, route)) = found else {
        let decision = match table.unmatched {
            Unmatched::Pass { upstream } => {
                return Intake {
                    route: None,
                    upstream: Some(upstream),
                    rewrite_path,
                    decision: Decision::Proxy(Outcome::Proxied),
                }
            }
            Unmatched::Deny => Decision::Answer(Refusal::NotFound, Outcome::Denied),
        };
        return Intake {
            route: None,
            upstream: None,
            rewrite_path,
            decision,
        };
    };
    let decision = match &route.pricing {
        None => Decision::Proxy(Outcome::Free),
        // Shadow routes behave as if the gateway were not there, preflights included.
        Some(pricing) if pricing.mode == Mode::Shadow => Decision::Shadow(pricing, decode::read(&req.headers)),
        Some(_) if cors::is_preflight(req) => Decision::Preflight,
        Some(pricing) => priced(req, pricing),
    };
    Intake {
        route: Some(index),
        upstream: Some(route.upstream),
        rewrite_path,
        decision,
    }
}

/// Headers some frameworks read as the method (Express' method-override, ASP.NET, Symfony, Rails):
/// on a priced path the upstream must see the method that was priced.
const METHOD_OVERRIDES: [&str; 3] = ["x-http-method-override", "x-http-method", "x-method-override"];

/// What a request on a priced path gets before routing goes on, if not the route `found` for it: a
/// method the priced route does not sell is refused (405) unless a free route lists it by name, its
/// preflight is answered by the gateway, and a method-override header is refused (400).
fn priced_path_guard<'t>(
    req: &RequestHeader,
    table: &'t RouteTable,
    host: &str,
    path: &NormalPath,
    found: Option<(usize, &'t Route)>,
) -> Option<Intake<'t>> {
    let on_priced_route = found.is_some_and(|(_, r)| r.enforces());
    let other = if on_priced_route {
        None
    } else {
        table.priced_for_other_methods(&req.method, host, path)
    };
    if !on_priced_route && other.is_none() {
        return None;
    }
    let answer = |refusal, outcome, route| {
        let mut i = Intake::answer(refusal, outcome);
        i.route = route;
        Some(i)
    };
    if let Some((index, priced)) = other {
        if cors::is_preflight(req) {
            return Some(Intake {
                route: Some(index),
                upstream: Some(priced.upstream),
                rewrite_path: None,
                decision: Decision::Preflight,
            });
        }
        if !found.is_some_and(|(_, r)| r.lists(&req.method)) {
            let allow = priced
                .methods
                .iter()
                .flatten()
                .map(Method::as_str)
                .collect::<Vec<_>>()
                .join(", ");
            return answer(Refusal::MethodNotAllowed { allow }, Outcome::Denied, Some(index));
        }
    }
    if let Some(h) = METHOD_OVERRIDES.iter().find(|h| req.headers.contains_key(**h)) {
        let refusal = Refusal::BadRequest(format!(
            "the {h} header is not accepted on a priced path: send the method itself"
        ));
        return answer(refusal, Outcome::BadRequest, found.map(|(i, _)| i));
    }
    None
}

/// A priced route: challenge, refuse an unreadable payment, or check it out.
fn priced<'t>(req: &RequestHeader, pricing: &'t Pricing) -> Decision<'t> {
    let challenge = Refusal::PaymentRequired {
        reason: None,
        receipt: None,
    };
    // HEAD is never settled (invariant 2), so a priced HEAD always gets the challenge's headers.
    if req.method == Method::HEAD {
        return Decision::Answer(challenge, Outcome::Challenged);
    }
    match decode::read(&req.headers) {
        None => Decision::Answer(challenge, Outcome::Challenged),
        Some(Err(e)) => Decision::Answer(
            Refusal::PaymentRequired {
                reason: Some(e.reason()),
                receipt: None,
            },
            Outcome::RefusedPayment,
        ),
        Some(Ok(p)) => Decision::Pay(pricing, p),
    }
}
