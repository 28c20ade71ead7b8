//! The price table as the request path sees it: routes in order, each with its matcher, its upstream by
//! index and, when priced, its offers and 402 already built. First match wins.

use http::Method;
use serde::Deserialize;

use crate::protocol::payment_id::PaymentIdMode;
use crate::rules::challenge::Template;
use crate::rules::offer::Offer;
use crate::rules::routes::{HostPattern, NormalPath, PathPattern};

/// When a priced route settles.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum SettleMode {
    /// After the upstream answered < 400, before any byte reaches the client.
    #[default]
    After,
    /// Before proxying; the payer pays even if the upstream fails.
    Before,
}

/// Whether the facilitator's `/verify` runs before proxying.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum VerifyMode {
    /// Local checks, then the facilitator's `/verify` (balance, nonce, simulation).
    #[default]
    Remote,
    /// Local checks only; settlement is the only chain check.
    Local,
}

/// Whether a priced route charges, or only says what it would have done.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Mode {
    /// Challenge, verify, settle.
    #[default]
    Enforce,
    /// Decide, log and count (would challenge, would accept, would settle), but always proxy and never
    /// settle: for trying prices on live traffic.
    Shadow,
}

/// What a priced route does when the facilitator cannot be used.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum OnFacilitatorError {
    /// Refuse (502/503/504); nothing is served unpaid.
    #[default]
    Deny,
    /// Serve the request unpaid, and count and log it (fail open).
    Allow,
}

/// How a priced route is enforced: every per-route switch, with its default.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Policy {
    pub settle: SettleMode,
    pub verify: VerifyMode,
    pub payment_id: PaymentIdMode,
    pub mode: Mode,
    pub on_facilitator_error: OnFacilitatorError,
}

/// What a request that matches no route gets.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Unmatched {
    /// Proxied for free to this upstream (an index into the config's upstreams).
    Pass { upstream: usize },
    /// 404.
    Deny,
}

/// One route of the price table.
#[derive(Debug, Clone)]
pub struct Route {
    /// For logs and metrics: the configured name or the path pattern.
    pub name: String,
    /// `None`: any method.
    pub methods: Option<Vec<Method>>,
    pub host: Option<HostPattern>,
    pub path: PathPattern,
    /// Index into the config's upstreams.
    pub upstream: usize,
    /// `None`: free.
    pub pricing: Option<Pricing>,
}

impl Route {
    /// Whether this route serves `method` on `host` at `path`. A `GET` route also answers `HEAD`.
    pub fn matches(&self, method: &Method, host: &str, path: &NormalPath) -> bool {
        self.serves(method) && self.covers(host, path)
    }

    /// Whether this route takes `method` (a `GET` route also answers `HEAD`).
    fn serves(&self, method: &Method) -> bool {
        self.methods
            .as_ref()
            .is_none_or(|ms| ms.contains(method) || (method == Method::HEAD && ms.contains(&Method::GET)))
    }

    /// Whether this route's host and path patterns take `host` and `path`, whatever the method.
    fn covers(&self, host: &str, path: &NormalPath) -> bool {
        self.host.as_ref().is_none_or(|h| h.matches(host)) && self.path.matches(path)
    }

    /// Whether this route lists `method` by name (not merely "any method").
    pub fn lists(&self, method: &Method) -> bool {
        self.methods.as_ref().is_some_and(|ms| ms.contains(method))
    }

    /// Whether this route charges (priced, and not `mode: shadow`).
    pub fn enforces(&self) -> bool {
        self.pricing.as_ref().is_some_and(|p| p.mode == Mode::Enforce)
    }
}

/// What a priced route asks for.
#[derive(Debug, Clone)]
pub struct Pricing {
    /// One offer per accepted network/asset, all for the same price.
    pub offers: Vec<Offer>,
    pub description: String,
    pub mime_type: String,
    pub settle: SettleMode,
    pub verify: VerifyMode,
    pub payment_id: PaymentIdMode,
    pub mode: Mode,
    pub on_facilitator_error: OnFacilitatorError,
    /// The 402's bytes, built once; only the resource URL and the reason vary per request.
    pub challenge: Template,
}

impl Pricing {
    /// A route's pricing, with its challenge built.
    pub fn new(offers: Vec<Offer>, description: String, mime_type: String, policy: Policy) -> Self {
        let challenge = Template::new(&offers, &description, &mime_type, policy.payment_id);
        Pricing {
            offers,
            description,
            mime_type,
            settle: policy.settle,
            verify: policy.verify,
            payment_id: policy.payment_id,
            mode: policy.mode,
            on_facilitator_error: policy.on_facilitator_error,
            challenge,
        }
    }

    /// The longest `maxTimeoutSeconds` of its offers: how long a quote from this route stays payable.
    pub fn max_timeout(&self) -> u64 {
        self.offers
            .iter()
            .map(|o| o.requirement.max_timeout_seconds)
            .max()
            .unwrap_or(0)
    }
}

/// The routes in order, and what unmatched requests get.
#[derive(Debug, Clone)]
pub struct RouteTable {
    pub routes: Vec<Route>,
    pub unmatched: Unmatched,
}

impl RouteTable {
    /// The first route that serves the request, with its index.
    pub fn find(&self, method: &Method, host: &str, path: &NormalPath) -> Option<(usize, &Route)> {
        self.routes
            .iter()
            .enumerate()
            .find(|(_, r)| r.matches(method, host, path))
    }

    /// Where a priced route's paths meet free ones for other methods or hosts, as warnings for `check`: a
    /// method-limited priced route (other methods get 405 unless a free route lists them), and a
    /// host-limited one (other hosts reach the free routes after it, or `default: pass`).
    pub fn gaps(&self) -> Vec<String> {
        let mut out = Vec::new();
        for (i, r) in self.routes.iter().enumerate().filter(|(_, r)| r.enforces()) {
            // Where its paths go for other methods or hosts: the first later route for any method and host
            // that covers them (a priced one closes the gap), else `default: pass`.
            let catcher = self.routes[i + 1..]
                .iter()
                .find(|f| f.methods.is_none() && f.host.is_none() && f.path.covers(&r.path));
            let falls_through = match catcher {
                Some(f) if f.pricing.is_some() => None,
                Some(f) => Some(format!("free route {:?}", f.name)),
                None => matches!(self.unmatched, Unmatched::Pass { .. }).then(|| "default: pass".to_owned()),
            };
            let Some(to) = falls_through else { continue };
            if let Some(ms) = &r.methods {
                let ms = ms.iter().map(Method::as_str).collect::<Vec<_>>().join(", ");
                out.push(format!(
                    "route {:?} sells {ms} only: other methods on its paths are refused (405) rather than reaching {to}; list a method on a free route by name to serve it free",
                    r.name
                ));
            }
            if let Some(h) = &r.host {
                out.push(format!(
                    "route {:?} is priced for host {} only: the same paths on any other Host reach {to} unpaid; drop `host:` or add a route for the other hosts",
                    r.name,
                    h.as_str()
                ));
            }
        }
        out
    }

    /// The priced route that sells `host` and `path` for other methods than `method`, if one does: a
    /// method-limited priced route that wins the table for its own first method there. A request that
    /// would otherwise fall to a free route (or to none) must not be served for free on a priced path
    /// merely because its method differs, unless a free route lists that method by name.
    pub fn priced_for_other_methods(&self, method: &Method, host: &str, path: &NormalPath) -> Option<(usize, &Route)> {
        self.routes.iter().enumerate().find(|(i, r)| {
            let Some(first) = r.methods.as_ref().and_then(|ms| ms.first()) else {
                return false;
            };
            r.enforces()
                && !r.serves(method)
                && r.covers(host, path)
                && self.find(first, host, path).is_some_and(|(w, _)| w == *i)
        })
    }
}
