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
        self.methods
            .as_ref()
            .is_none_or(|ms| ms.contains(method) || (method == Method::HEAD && ms.contains(&Method::GET)))
            && self.host.as_ref().is_none_or(|h| h.matches(host))
            && self.path.matches(path)
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
    /// The 402's bytes, built once; only the resource URL and the reason vary per request.
    pub challenge: Template,
}

impl Pricing {
    /// A route's pricing, with its challenge built.
    pub fn new(
        offers: Vec<Offer>,
        description: String,
        mime_type: String,
        modes: (SettleMode, VerifyMode, PaymentIdMode),
    ) -> Self {
        let (settle, verify, payment_id) = modes;
        let challenge = Template::new(&offers, &description, &mime_type, payment_id);
        Pricing {
            offers,
            description,
            mime_type,
            settle,
            verify,
            payment_id,
            challenge,
        }
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
}
