//! Layer 4, the gateway's configuration: [`raw`] reads the YAML as written; [`resolve`] turns it into a
//! [`Config`] that can only hold valid states (parsed addresses, integer prices, compiled patterns,
//! upstreams by index, each route's offers and challenge built), reporting every mistake in the file at
//! once. The request path never sees a string it has to re-check or a name it has to look up.

mod batch;
pub mod env;
mod locate;
mod raw;
mod resolve;
mod route;
#[cfg(test)]
mod tests;
mod tls;

use std::fmt::Write as _;
use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use alloy::primitives::Address;
use http::{HeaderName, HeaderValue, Method};

use crate::core::secret::Secret;
use crate::protocol::cdp::CdpKey;
use crate::rules::table::{RouteTable, Unmatched};
pub use env::{Env, ProcessEnv};
pub use raw::{LogFormat, RedisDurability, UpstreamHost};
pub use tls::{ListenerTls, TlsFileError};

/// Environment variable that overrides `facilitator.url`.
pub const FACILITATOR_URL_ENV: &str = "X402_FACILITATOR_URL";

/// One configuration error: where it is and what to do about it.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("{file}: cannot read: {source}")]
    Read { file: String, source: std::io::Error },
    #[error("{file}:{line}:{column}: {message}")]
    At {
        file: String,
        line: usize,
        column: usize,
        message: String,
    },
}

/// Every error found in a file, one per line.
#[derive(Debug)]
pub struct ConfigErrors(pub Vec<ConfigError>);

impl std::fmt::Display for ConfigErrors {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        for (i, e) in self.0.iter().enumerate() {
            if i > 0 {
                f.write_char('\n')?;
            }
            write!(f, "{e}")?;
        }
        Ok(())
    }
}

impl std::error::Error for ConfigErrors {}

/// The resolved configuration.
#[derive(Debug, Clone)]
pub struct Config {
    pub listen: SocketAddr,
    pub admin_listen: Option<SocketAddr>,
    /// `listen` speaks TLS with this certificate when set.
    pub tls: Option<ListenerTls>,
    /// Routes refer to these by index.
    pub upstreams: Vec<Upstream>,
    /// PEM CAs trusted for `https://` upstreams instead of the system's roots.
    pub upstream_ca_file: Option<std::path::PathBuf>,
    /// How requests are sent upstream: timeouts, `Host`, and whose `X-Forwarded-*` is believed.
    pub forwarding: Forwarding,
    /// Facilitators in the order they are tried for `/verify`; never empty.
    pub facilitators: Vec<FacilitatorSettings>,
    /// Where payment state is kept.
    pub store: StoreUrl,
    /// Whether a Redis store that may lose claims is refused.
    pub redis_durability: RedisDurability,
    /// Payment attempts each client address may make that reach the facilitator (`None`: no limit).
    pub payment_attempts: Option<AttemptLimit>,
    /// JSON-RPC URLs by network (`rpc:`): a payment in doubt on one of these is resolved from the chain.
    /// Secrets: providers put API keys in them.
    pub rpc: Vec<(crate::protocol::network::Network, Secret)>,
    /// How long an in-flight claim is held for its request; a replica that died mid-request blocks the
    /// payment this long at most.
    pub claim_lease: Duration,
    /// Largest response body kept for a `payment-identifier` replay; a larger one is answered with a status
    /// naming the transaction instead.
    pub payment_identifier_max_body: usize,
    /// `log_format:`, when the file sets it (`--log-format` wins).
    pub log_format: Option<LogFormat>,
    pub shutdown: Shutdown,
    pub reload: Reload,
    pub health: Health,
    /// `batch_settlement:`: set when any route sells by batch settlement.
    pub batch: Option<BatchSettings>,
    pub table: RouteTable,
}

/// `batch_settlement:`: what the gateway needs to sell by `batch-settlement`.
#[derive(Clone)]
pub struct BatchSettings {
    /// Signs claim batches and refunds for the receiver; its address is every offer's `receiverAuthorizer`.
    pub authorizer: Arc<alloy::signers::local::PrivateKeySigner>,
    /// Seconds, offered as `withdrawDelay`.
    pub withdraw_delay: u64,
    /// How long an on-chain snapshot of a channel lets vouchers be checked without the facilitator.
    pub onchain_ttl: Duration,
    pub claim_every: Duration,
    pub settle_every: Duration,
    pub max_claims_per_batch: usize,
}

impl std::fmt::Debug for BatchSettings {
    // The key never reaches a log: only its address.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("BatchSettings")
            .field("authorizer", &self.authorizer.address())
            .field("withdraw_delay", &self.withdraw_delay)
            .field("onchain_ttl", &self.onchain_ttl)
            .field("claim_every", &self.claim_every)
            .field("settle_every", &self.settle_every)
            .field("max_claims_per_batch", &self.max_claims_per_batch)
            .finish()
    }
}

/// How requests are sent upstream.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Forwarding {
    pub connect_timeout: Duration,
    /// Longest wait for each read of the upstream's answer (its header, then each part of the body).
    pub read_timeout: Duration,
    pub write_timeout: Duration,
    /// How long an idle pooled connection to the upstream is kept.
    pub idle_timeout: Duration,
    pub host: UpstreamHost,
    /// Proxies in front (address, prefix length) whose `X-Forwarded-For/-Proto/-Host` are kept and added to;
    /// from anyone else they are replaced.
    pub trusted_proxies: Vec<(std::net::IpAddr, u8)>,
}

impl Forwarding {
    /// Whether `peer` is one of the trusted proxies.
    pub fn trusts(&self, peer: std::net::IpAddr) -> bool {
        self.trusted_proxies
            .iter()
            .any(|(net, bits)| in_prefix(peer, *net, *bits))
    }
}

/// Whether `ip` lies in `net`/`bits` (an IPv4 address never lies in an IPv6 prefix, nor the reverse).
fn in_prefix(ip: std::net::IpAddr, net: std::net::IpAddr, bits: u8) -> bool {
    use std::net::IpAddr::{V4, V6};
    let (a, b, width) = match (ip, net) {
        (V4(a), V4(b)) => (u128::from(u32::from(a)), u128::from(u32::from(b)), 32u32),
        (V6(a), V6(b)) => (u128::from(a), u128::from(b), 128u32),
        _ => return false,
    };
    let bits = u32::from(bits).min(width);
    let shift = width - bits;
    bits == 0 || (a >> shift) == (b >> shift)
}

/// `payment_attempts:`: a token bucket per client address: `burst` at once, then `per_second`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AttemptLimit {
    pub per_second: u32,
    pub burst: u32,
}

/// `shutdown:`: what SIGTERM does. Readiness goes false at once; after `drain_delay` the listener stops
/// accepting; in-flight requests (and their settlements) finish; the process exits within `grace_period`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Shutdown {
    pub drain_delay: Duration,
    pub grace_period: Duration,
}

/// `reload:`: besides SIGHUP, whether the file is watched (polled; sees Kubernetes' ConfigMap symlink
/// swap), and how often.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Reload {
    pub watch: bool,
    pub interval: Duration,
}

/// `health:`: how often the facilitator's `/supported` and the store are checked in the background, and
/// how long after its last good answer the facilitator still counts as ready.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Health {
    pub interval: Duration,
    pub stale_after: Duration,
}

/// `store:`: where claims and settlement outcomes are kept.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub enum StoreUrl {
    /// This process's memory: forgotten on restart (one replica, development).
    #[default]
    Memory,
    /// `sqlite:PATH`: a file on this node; survives a crash.
    Sqlite(std::path::PathBuf),
    /// `redis://HOST:PORT[/DB]` or `rediss://…`: shared by replicas.
    Redis(String),
}

impl StoreUrl {
    /// Parses `memory`, `sqlite:PATH`, `redis://…` or `rediss://…`.
    pub fn parse(s: &str) -> Result<Self, String> {
        if s == "memory" {
            return Ok(StoreUrl::Memory);
        }
        if let Some(path) = s.strip_prefix("sqlite:") {
            if path.is_empty() {
                return Err("write the database file as sqlite:/var/lib/x402/claims.db".into());
            }
            return Ok(StoreUrl::Sqlite(path.into()));
        }
        let url = url::Url::parse(s).map_err(|_| {
            "must be `memory`, `sqlite:PATH` or `redis://HOST:PORT[/DB]` (`rediss://` for TLS)".to_owned()
        })?;
        match url.scheme() {
            "redis" | "rediss" if url.host_str().is_some_and(|h| !h.is_empty()) => {
                let db = url.path().trim_start_matches('/');
                if !db.is_empty() && db.parse::<u32>().is_err() {
                    return Err(format!("the Redis database must be a number, not {db:?}"));
                }
                Ok(StoreUrl::Redis(s.to_owned()))
            }
            "redis" | "rediss" => Err("a Redis URL needs a host: redis://HOST:PORT".into()),
            other => Err(format!(
                "scheme {other:?} is not a store: use `memory`, `sqlite:PATH` or `redis://HOST:PORT[/DB]`"
            )),
        }
    }
}

impl std::fmt::Display for StoreUrl {
    /// As logs show it: a Redis password never appears.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            StoreUrl::Memory => f.write_str("memory"),
            StoreUrl::Sqlite(p) => write!(f, "sqlite:{}", p.display()),
            StoreUrl::Redis(u) => match url::Url::parse(u) {
                Ok(u) => f.write_str(&crate::core::secret::redact(&u)),
                Err(_) => f.write_str("redis://…"),
            },
        }
    }
}

/// Where a facilitator is and how to call it.
#[derive(Debug, Clone)]
pub struct FacilitatorSettings {
    pub url: String,
    pub timeout: Duration,
    /// Extra headers (e.g. auth); values are secrets and never logged.
    pub headers: Vec<(HeaderName, Secret)>,
    /// A CDP API key that signs a token for every call (`auth: cdp`).
    pub cdp: Option<Arc<CdpKey>>,
    /// The account it settles `upto` payments from, if it settles them.
    pub address: Option<Address>,
}

impl FacilitatorSettings {
    /// The URL as output shows it: scheme, host and port (facilitators put API keys in paths and queries).
    pub fn shown(&self) -> String {
        url::Url::parse(&self.url).map_or_else(|_| "(invalid URL)".to_owned(), |u| crate::core::secret::redact(&u))
    }

    /// Whether `other` calls the same facilitator the same way (URL, timeout, headers, key).
    pub fn same_as(&self, other: &FacilitatorSettings) -> bool {
        let headers = |f: &FacilitatorSettings| {
            f.headers
                .iter()
                .map(|(n, v)| (n.clone(), v.expose().to_owned()))
                .collect::<Vec<_>>()
        };
        let key = |f: &FacilitatorSettings| f.cdp.as_ref().map(|k| (k.id().to_owned(), k.public_key()));
        self.url == other.url
            && self.address == other.address
            && self.timeout == other.timeout
            && headers(self) == headers(other)
            && key(self) == key(other)
    }

    /// The headers as an HTTP header map.
    pub fn header_map(&self) -> http::HeaderMap {
        let mut map = http::HeaderMap::new();
        for (name, value) in &self.headers {
            if let Ok(mut v) = HeaderValue::from_str(value.expose()) {
                v.set_sensitive(true);
                map.insert(name.clone(), v);
            }
        }
        map
    }
}

/// An upstream origin.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Upstream {
    /// Its name under `upstreams:`.
    pub name: String,
    pub tls: bool,
    pub host: String,
    pub port: u16,
}

/// Loads and resolves a file, reading `${VAR}` from `env`.
pub fn load(path: &Path, env: &dyn Env) -> Result<Config, ConfigErrors> {
    let file = path.display().to_string();
    let src = std::fs::read_to_string(path).map_err(|source| {
        ConfigErrors(vec![ConfigError::Read {
            file: file.clone(),
            source,
        }])
    })?;
    parse(&src, &file, env)
}

/// Parses and resolves YAML text; `file` names it in errors.
pub fn parse(src: &str, file: &str, env: &dyn Env) -> Result<Config, ConfigErrors> {
    let raw: raw::RawConfig = serde_yaml::from_str(src).map_err(|e| {
        // A YAML or schema error stops the parse: nothing after it can be read reliably.
        let (line, column) = e.location().map_or((1, 1), |l| (l.line(), l.column()));
        let text = e.to_string();
        let message = text
            .rsplit_once(" at line ")
            .map_or(text.as_str(), |(m, _)| m)
            .to_owned();
        ConfigErrors(vec![ConfigError::At {
            file: file.to_owned(),
            line,
            column,
            message,
        }])
    })?;
    resolve::resolve(&raw, src, file, env)
}

impl Config {
    /// The resolved price table as `check` prints it.
    pub fn describe(&self) -> String {
        let mut out = String::new();
        let unmatched = match self.table.unmatched {
            Unmatched::Pass { .. } => "Pass",
            Unmatched::Deny => "Deny",
        };
        let _ = writeln!(
            out,
            "listen {}  admin {}  facilitator {}  store {}  unmatched: {unmatched}",
            self.listen,
            self.admin_listen.map_or_else(|| "-".into(), |a| a.to_string()),
            self.facilitators
                .iter()
                .map(|f| match &f.cdp {
                    Some(k) => format!("{} (CDP key {})", f.shown(), k.id()),
                    None => f.shown(),
                })
                .collect::<Vec<_>>()
                .join(", then "),
            self.store,
        );
        for r in &self.table.routes {
            let methods = r.methods.as_ref().map_or_else(
                || "ANY".to_owned(),
                |m| m.iter().map(Method::as_str).collect::<Vec<_>>().join(","),
            );
            let host = r.host.as_ref().map_or_else(String::new, |h| format!(" host {h:?}"));
            let upstream = self.upstreams.get(r.upstream).map_or("?", |u| u.name.as_str());
            match &r.pricing {
                None => {
                    let _ = writeln!(
                        out,
                        "route {:?}: {methods} {}{host} -> {upstream}  free",
                        r.name, r.path
                    );
                }
                Some(p) => {
                    let _ = writeln!(
                        out,
                        "route {:?}: {methods} {}{host} -> {upstream}  settle {:?}, verify {:?}, mode {:?}, on facilitator error {:?}",
                        r.name, r.path, p.settle, p.verify, p.mode, p.on_facilitator_error
                    );
                    for o in &p.offers {
                        let q = &o.requirement;
                        let _ = writeln!(
                            out,
                            "    {} atomic of {} on {} ({}), pay to {}",
                            q.amount,
                            q.asset,
                            q.network,
                            o.display(),
                            q.pay_to
                        );
                    }
                }
            }
        }
        for gap in self.table.gaps() {
            let _ = writeln!(out, "warning: {gap}");
        }
        out
    }
}
