//! From the file as written to the validated model. Each field is checked where it is read; a mistake is
//! recorded with its file, line, column and field and a fix, and resolution goes on, so one run of `check`
//! shows every mistake in the file. Routes are resolved in `route.rs`.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use alloy::primitives::Address;
use http::{HeaderName, HeaderValue};

use super::env::{self, Env};
use super::locate::{self, PathPart};
use super::raw::{DefaultAction, RawConfig, RawFacilitator, Text, Transfer};
use super::{
    AttemptLimit, Config, ConfigError, ConfigErrors, FacilitatorSettings, Forwarding, Health, ListenerTls, Reload,
    Shutdown, StoreUrl, TlsFileError, Upstream, FACILITATOR_URL_ENV,
};
use crate::core::secret::Secret;
use crate::core::time::parse_duration;
use crate::protocol::assets::Asset;
use crate::protocol::cdp::CdpKey;
use crate::protocol::exact::parse_address;
use crate::protocol::network::Network;
use crate::rules::table::{Mode, Route, RouteTable, Unmatched};

use PathPart::{Index, Key};

/// Listen address when the file sets none: all interfaces, so a sidecar is reachable in its pod.
const DEFAULT_LISTEN: SocketAddr = SocketAddr::V4(std::net::SocketAddrV4::new(std::net::Ipv4Addr::UNSPECIFIED, 8402));
/// `maxTimeoutSeconds` when neither the route nor the file sets one. Shorter than the v2 reference's
/// 300 s: it bounds how long an unsettled authorization stays claimable.
const DEFAULT_MAX_TIMEOUT_SECS: u64 = 120;
/// Facilitator call timeout when unset: long enough for `/settle` to wait out a block or two, so a slow
/// receipt is an answer rather than an unknown outcome.
const DEFAULT_FACILITATOR_TIMEOUT: Duration = Duration::from_secs(30);
/// How long an in-flight claim is held when unset: longer than any request's verify and upstream wait.
const DEFAULT_CLAIM_LEASE: Duration = Duration::from_secs(300);
/// Largest response body kept for a `payment-identifier` replay when unset.
const DEFAULT_PAYMENT_ID_MAX_BODY: usize = 64 * 1024;
/// Upstream timeouts when unset: connecting, each read or write, and keeping an idle pooled connection.
const DEFAULT_UPSTREAM_CONNECT: Duration = Duration::from_secs(5);
const DEFAULT_UPSTREAM_IO: Duration = Duration::from_secs(60);
const DEFAULT_UPSTREAM_IDLE: Duration = Duration::from_secs(60);
/// How long readiness is false before the listener stops accepting, when unset: long enough for the
/// endpoint's removal to reach every load balancer.
const DEFAULT_DRAIN_DELAY: Duration = Duration::from_secs(5);
/// The whole shutdown's bound when unset: below Kubernetes' default 30 s termination grace period.
const DEFAULT_GRACE_PERIOD: Duration = Duration::from_secs(25);
/// How often the config file is checked for changes when unset.
const DEFAULT_RELOAD_INTERVAL: Duration = Duration::from_secs(2);
/// How often the facilitator and the store are checked in the background when unset.
const DEFAULT_HEALTH_INTERVAL: Duration = Duration::from_secs(5);
/// How long after its last good answer the facilitator still counts as ready, when unset: a blip does
/// not take every replica out of its Service.
const DEFAULT_STALE_AFTER: Duration = Duration::from_secs(60);
/// The upstream that routes without `upstream:` and unmatched requests under `default: pass` use.
pub(super) const DEFAULT_UPSTREAM: &str = "default";

/// What every route inherits from the top level.
pub(super) struct Defaults {
    pub(super) upstreams: Vec<Upstream>,
    pub(super) assets: Vec<Asset>,
    pub(super) accepts: Vec<String>,
    pub(super) pay_to: Option<Address>,
    pub(super) max_timeout: u64,
    /// Whether priced paths match byte for byte (`case_sensitive: true`).
    pub(super) case_sensitive: bool,
    /// `mode:` of routes that set none.
    pub(super) mode: Mode,
    /// Who settles `upto` payments: the first facilitator with an `address`.
    pub(super) upto_facilitator: Option<Address>,
    /// `batch_settlement:`'s receiver authorizer and withdraw delay (seconds), when set.
    pub(super) batch: Option<(Address, u64)>,
    /// Whether the file has a `batch_settlement:` block at all (resolved or not).
    pub(super) batch_declared: bool,
}

pub(super) struct Resolver<'a> {
    src: &'a str,
    file: &'a str,
    env: &'a dyn Env,
    errors: Vec<ConfigError>,
}

/// Resolves a parsed file; `src` and `file` place the errors.
pub(super) fn resolve(raw: &RawConfig, src: &str, file: &str, env: &dyn Env) -> Result<Config, ConfigErrors> {
    let mut r = Resolver {
        src,
        file,
        env,
        errors: Vec::new(),
    };
    let config = r.config(raw);
    if r.errors.is_empty() {
        if let Some(c) = config {
            return Ok(c);
        }
    }
    r.errors.sort_by_key(|e| match e {
        ConfigError::At { line, column, .. } => (*line, *column),
        ConfigError::Read { .. } => (0, 0),
    });
    Err(ConfigErrors(r.errors))
}

impl Resolver<'_> {
    /// Records an error at `at` (at the `${NAME}` it names, if any); returns `None` so callers can write
    /// `return r.fail(…)`.
    pub(super) fn fail<T>(&mut self, at: &[PathPart], message: impl Into<String>) -> Option<T> {
        let message = message.into();
        let (line, column) = locate::locate(self.src, at);
        let (line, column) = locate::reference(self.src, line, &message).unwrap_or((line, column));
        self.errors.push(ConfigError::At {
            file: self.file.to_owned(),
            line,
            column,
            message: format!("{}: {message}", locate::display(at)),
        });
        None
    }

    /// The string at `at` with `${VAR}` expanded.
    pub(super) fn text(&mut self, t: &Text, at: &[PathPart]) -> Option<String> {
        match env::expand(&t.0, self.env) {
            Ok(s) => Some(s),
            Err(m) => self.fail(at, m),
        }
    }

    /// The string at `at`, expanded and converted by `parse`.
    pub(super) fn parse<T>(
        &mut self,
        t: &Text,
        at: &[PathPart],
        parse: impl FnOnce(&str) -> Result<T, String>,
    ) -> Option<T> {
        let s = self.text(t, at)?;
        match parse(&s) {
            Ok(v) => Some(v),
            Err(m) => self.fail(at, m),
        }
    }

    pub(super) fn address(&mut self, t: &Text, at: &[PathPart]) -> Option<Address> {
        self.parse(t, at, |s| {
            parse_address(s).ok_or_else(|| format!("{s:?} is not a 0x-prefixed 20-byte address"))
        })
    }

    fn socket(&mut self, t: &Option<Text>, key: &'static str) -> Option<Option<SocketAddr>> {
        let Some(t) = t else { return Some(None) };
        self.parse(t, &[Key(key)], |s| {
            s.parse()
                .map_err(|_| format!("{s:?} is not an address like 0.0.0.0:8402 (IP:port)"))
        })
        .map(Some)
    }

    fn config(&mut self, raw: &RawConfig) -> Option<Config> {
        let listen = self.socket(&raw.listen, "listen");
        let admin_listen = self.socket(&raw.admin_listen, "admin_listen");
        let mut upstreams = Vec::new();
        for (name, url) in &raw.upstreams {
            if let Some((tls, host, port)) = self.parse(url, &[Key("upstreams"), Key(name)], parse_upstream) {
                upstreams.push(Upstream {
                    name: name.clone(),
                    tls,
                    host,
                    port,
                });
            }
        }
        let upstream_ca_file = match &raw.upstream_ca_file {
            Some(t) => self
                .parse(t, &[Key("upstream_ca_file")], |f| {
                    let path = std::path::PathBuf::from(f);
                    if path.is_file() {
                        Ok(path)
                    } else {
                        Err(format!(
                            "{f:?} is not a readable file: give the path of a PEM bundle of CA certificates"
                        ))
                    }
                })
                .map(Some),
            None => Some(None),
        };
        let tls = self.tls(raw);
        let facilitators = self.facilitators(raw);
        let claim_lease = match &raw.claim_lease {
            Some(t) => self.parse(t, &[Key("claim_lease")], |s| {
                parse_duration(s).and_then(|d| {
                    (d.as_secs() >= 1)
                        .then_some(d)
                        .ok_or_else(|| "must be at least 1s".to_owned())
                })
            }),
            None => Some(DEFAULT_CLAIM_LEASE),
        };
        let store = match &raw.store {
            Some(t) => self.parse(t, &[Key("store")], StoreUrl::parse),
            None => Some(StoreUrl::Memory),
        };
        let assets = self.assets(raw);
        let rpc = self.rpc(raw);
        let forwarding = self.forwarding(raw);
        let payment_attempts = match &raw.payment_attempts {
            Some(l) if l.per_second == 0 || l.burst == Some(0) => self.fail(
                &[Key("payment_attempts")],
                "`per_second` and `burst` must be at least 1 (remove `payment_attempts:` for no limit)",
            ),
            Some(l) => Some(Some(AttemptLimit {
                per_second: l.per_second,
                burst: l.burst.unwrap_or(l.per_second.saturating_mul(2)),
            })),
            None => Some(None),
        };
        let (shutdown, reload, health) = (self.shutdown(raw), self.reload(raw), self.health(raw));
        let batch = self.batch(raw);
        let pay_to = match &raw.pay_to {
            Some(t) => self.address(t, &[Key("pay_to")]).map(Some),
            None => Some(None),
        };
        let accepts: Vec<String> = raw
            .accepts
            .iter()
            .enumerate()
            .filter_map(|(i, t)| self.text(t, &[Key("accepts"), Index(i)]))
            .collect();
        let defaults = Defaults {
            upstreams,
            assets,
            accepts,
            pay_to: pay_to.flatten(),
            max_timeout: raw.max_timeout_seconds.unwrap_or(DEFAULT_MAX_TIMEOUT_SECS),
            case_sensitive: raw.case_sensitive.unwrap_or(false),
            mode: raw.mode.unwrap_or_default(),
            upto_facilitator: facilitators.iter().flatten().find_map(|f| f.address),
            batch: batch
                .iter()
                .flatten()
                .map(|b| (b.authorizer.address(), b.withdraw_delay))
                .next(),
            batch_declared: raw.batch_settlement.is_some(),
        };
        let routes: Vec<Option<Route>> = raw
            .routes
            .iter()
            .enumerate()
            .map(|(i, r)| self.route(r, i, &defaults))
            .collect();
        let default_upstream = defaults.upstreams.iter().position(|u| u.name == DEFAULT_UPSTREAM);
        let unmatched = match (raw.default, default_upstream) {
            (DefaultAction::Deny, _) => Some(Unmatched::Deny),
            (DefaultAction::Pass, Some(upstream)) => Some(Unmatched::Pass { upstream }),
            (DefaultAction::Pass, None) => self.fail(&[Key("upstreams")], "`default: pass` proxies unmatched requests to the upstream named `default`: add `upstreams: {default: \"http://127.0.0.1:3000\"}` or set `default: deny`"),
        };
        // A host-limited price means nothing if other hosts reach the same upstream for free.
        if let Some(Unmatched::Pass { upstream }) = unmatched {
            let leaks = routes
                .iter()
                .enumerate()
                .filter_map(|(i, r)| Some((i, r.as_ref()?)))
                .find(|(_, r)| r.host.is_some() && r.pricing.is_some() && r.upstream == upstream);
            if let Some((i, r)) = leaks {
                let message = format!("route {:?} is priced for one host, but `default: pass` sends every other host to the same upstream for free: set `default: deny`, or give this route its own `upstream`", r.name);
                self.fail::<()>(&[Key("routes"), Index(i), Key("host")], message);
            }
        }
        Some(Config {
            listen: listen?.unwrap_or(DEFAULT_LISTEN),
            admin_listen: admin_listen?,
            tls: tls?,
            upstreams: defaults.upstreams,
            upstream_ca_file: upstream_ca_file?,
            forwarding: forwarding?,
            facilitators: facilitators?,
            store: store?,
            redis_durability: raw.redis_durability.unwrap_or_default(),
            payment_attempts: payment_attempts?,
            rpc: rpc?,
            claim_lease: claim_lease?,
            payment_identifier_max_body: raw.payment_identifier_max_body.unwrap_or(DEFAULT_PAYMENT_ID_MAX_BODY),
            log_format: raw.log_format,
            shutdown: shutdown?,
            reload: reload?,
            health: health?,
            batch: batch?,
            table: RouteTable {
                routes: routes.into_iter().collect::<Option<Vec<_>>>()?,
                unmatched: unmatched?,
            },
        })
    }

    /// `tls:`: both files there, and a key that goes with the chain.
    fn tls(&mut self, raw: &RawConfig) -> Option<Option<ListenerTls>> {
        let Some(t) = &raw.tls else { return Some(None) };
        let cert = self.text(&t.cert, &[Key("tls"), Key("cert")]);
        let key = self.text(&t.key, &[Key("tls"), Key("key")]);
        let files = ListenerTls {
            cert: cert?.into(),
            key: key?.into(),
        };
        match files.load() {
            Ok(_) => Some(Some(files)),
            Err(TlsFileError::Cert(e)) => self.fail(&[Key("tls"), Key("cert")], e),
            Err(TlsFileError::Key(e)) => self.fail(&[Key("tls"), Key("key")], e),
        }
    }

    /// A duration at `at`, `default` when unset, refused outside `min..=max`.
    pub(super) fn duration(
        &mut self,
        t: &Option<Text>,
        at: &[PathPart],
        default: Duration,
        range: (Duration, Duration),
    ) -> Option<Duration> {
        let Some(t) = t else { return Some(default) };
        let (min, max) = range;
        self.parse(t, at, |s| {
            parse_duration(s).and_then(|d| {
                if d < min || d > max {
                    Err(format!("must be between {min:?} and {max:?}"))
                } else {
                    Ok(d)
                }
            })
        })
    }

    /// `upstream_timeouts:`, `upstream_host:` and `trusted_proxies:`.
    fn forwarding(&mut self, raw: &RawConfig) -> Option<Forwarding> {
        let t = &raw.upstream_timeouts;
        let at = |k: &'static str| [Key("upstream_timeouts"), Key(k)];
        let range = (Duration::from_millis(1), Duration::from_secs(24 * 3600));
        let connect = self.duration(&t.connect, &at("connect"), DEFAULT_UPSTREAM_CONNECT, range);
        let read = self.duration(&t.read, &at("read"), DEFAULT_UPSTREAM_IO, range);
        let write = self.duration(&t.write, &at("write"), DEFAULT_UPSTREAM_IO, range);
        let idle = self.duration(&t.idle, &at("idle"), DEFAULT_UPSTREAM_IDLE, range);
        let trusted: Vec<Option<(std::net::IpAddr, u8)>> =
            raw.trusted_proxies
                .iter()
                .enumerate()
                .map(|(i, p)| {
                    self.parse(p, &[Key("trusted_proxies"), Index(i)], |s| {
                        let (ip, bits) = s.split_once('/').map_or((s, None), |(a, b)| (a, Some(b)));
                        let ip: std::net::IpAddr = ip.trim().parse().map_err(|_| {
                            format!("{s:?} is not an address or a prefix such as 10.0.0.0/8 or fd00::/8")
                        })?;
                        let width = if ip.is_ipv4() { 32 } else { 128 };
                        let bits = match bits {
                            Some(b) => b
                                .trim()
                                .parse::<u8>()
                                .ok()
                                .filter(|b| *b <= width)
                                .ok_or_else(|| format!("{s:?}: the prefix length must be 0 to {width}"))?,
                            None => width,
                        };
                        Ok((ip, bits))
                    })
                })
                .collect();
        Some(Forwarding {
            connect_timeout: connect?,
            read_timeout: read?,
            write_timeout: write?,
            idle_timeout: idle?,
            host: raw.upstream_host.unwrap_or_default(),
            trusted_proxies: trusted.into_iter().collect::<Option<Vec<_>>>()?,
        })
    }

    fn shutdown(&mut self, raw: &RawConfig) -> Option<Shutdown> {
        let s = &raw.shutdown;
        let at = |k: &'static str| [Key("shutdown"), Key(k)];
        let hour = Duration::from_secs(3600);
        let drain_delay = self.duration(
            &s.drain_delay,
            &at("drain_delay"),
            DEFAULT_DRAIN_DELAY,
            (Duration::ZERO, hour),
        );
        let grace_period = self.duration(
            &s.grace_period,
            &at("grace_period"),
            DEFAULT_GRACE_PERIOD,
            (Duration::from_secs(1), hour),
        );
        let (drain_delay, grace_period) = (drain_delay?, grace_period?);
        if drain_delay >= grace_period {
            let message = format!("drain_delay ({drain_delay:?}) must be shorter than grace_period ({grace_period:?}): in-flight requests finish in the time between them; keep grace_period below Kubernetes' terminationGracePeriodSeconds");
            return self.fail(&at("drain_delay"), message);
        }
        Some(Shutdown {
            drain_delay,
            grace_period,
        })
    }

    fn reload(&mut self, raw: &RawConfig) -> Option<Reload> {
        let r = &raw.reload;
        let range = (Duration::from_millis(100), Duration::from_secs(3600));
        let interval = self.duration(
            &r.interval,
            &[Key("reload"), Key("interval")],
            DEFAULT_RELOAD_INTERVAL,
            range,
        )?;
        Some(Reload {
            watch: r.watch.unwrap_or(true),
            interval,
        })
    }

    fn health(&mut self, raw: &RawConfig) -> Option<Health> {
        let h = &raw.health;
        let at = |k: &'static str| [Key("health"), Key(k)];
        let day = Duration::from_secs(86_400);
        let interval = self.duration(
            &h.interval,
            &at("interval"),
            DEFAULT_HEALTH_INTERVAL,
            (Duration::from_millis(100), day),
        );
        let stale_after = self.duration(
            &h.stale_after,
            &at("stale_after"),
            DEFAULT_STALE_AFTER,
            (Duration::from_secs(1), day),
        );
        let (interval, stale_after) = (interval?, stale_after?);
        if stale_after < interval {
            return self.fail(
                &at("stale_after"),
                format!("stale_after ({stale_after:?}) must be at least the check interval ({interval:?}), or every check would already be stale"),
            );
        }
        Some(Health { interval, stale_after })
    }

    /// `facilitator:` or `facilitators:`, one of them. `X402_FACILITATOR_URL` replaces the (first) URL.
    fn facilitators(&mut self, raw: &RawConfig) -> Option<Vec<FacilitatorSettings>> {
        match (&raw.facilitator, raw.facilitators.as_slice()) {
            (Some(f), []) => Some(vec![self.facilitator(f, &[Key("facilitator")], true)?]),
            (None, [_, ..]) => {
                let all: Vec<Option<FacilitatorSettings>> = raw
                    .facilitators
                    .iter()
                    .enumerate()
                    .map(|(i, f)| self.facilitator(f, &[Key("facilitators"), Index(i)], i == 0))
                    .collect();
                all.into_iter().collect()
            }
            (Some(_), [_, ..]) => self.fail(
                &[Key("facilitators")],
                "give either `facilitator:` (one) or `facilitators:` (a list tried in order), not both",
            ),
            (None, []) => self.fail(
                &[Key("facilitator")],
                "no facilitator: add `facilitator: {url: \"https://x402.org/facilitator\"}` (or a `facilitators:` list)",
            ),
        }
    }

    /// One facilitator at `base` (`facilitator` or `facilitators[i]`); `first` takes the URL override.
    fn facilitator(
        &mut self,
        f: &RawFacilitator,
        base: &[PathPart<'static>],
        first: bool,
    ) -> Option<FacilitatorSettings> {
        let at = |k: &'static str| [base, &[Key(k)]].concat();
        let url = match self.env.var(FACILITATOR_URL_ENV).filter(|_| first) {
            Some(u) => Some(u),
            None => self.text(&f.url, &at("url")),
        };
        let url = match url.map(|u| check_url(&u)) {
            Some(Ok(u)) => Some(u),
            Some(Err(m)) => self.fail(&at("url"), m),
            None => None,
        };
        let timeout = match &f.timeout {
            Some(t) => self.parse(t, &at("timeout"), parse_duration),
            None => Some(DEFAULT_FACILITATOR_TIMEOUT),
        };
        let mut headers = Some(Vec::new());
        for (name, value) in &f.headers {
            let at = [base, &[Key("headers"), Key(name)]].concat();
            let Some(value) = self.text(value, &at) else {
                headers = None;
                continue;
            };
            let Ok(n) = HeaderName::from_bytes(name.as_bytes()) else {
                headers = self.fail(&at, format!("{name:?} is not a valid HTTP header name"));
                continue;
            };
            // The value may be a secret: the message must not repeat it.
            if HeaderValue::from_str(&value).is_err() {
                headers = self.fail(&at, "the value is not a valid HTTP header value (control characters?)");
                continue;
            }
            if let Some(h) = headers.as_mut() {
                h.push((n, Secret::new(value)));
            }
        }
        let cdp = self.cdp_key(f, base);
        let address = match &f.address {
            Some(t) => self.address(t, &at("address")).map(Some),
            None => Some(None),
        };
        Some(FacilitatorSettings {
            url: url?,
            timeout: timeout?,
            headers: headers?,
            cdp: cdp?,
            address: address?,
        })
    }

    /// The CDP API key of an `auth: cdp` facilitator; `Some(None)` without `auth`.
    fn cdp_key(&mut self, f: &RawFacilitator, base: &[PathPart<'static>]) -> Option<Option<Arc<CdpKey>>> {
        let at = |k: &'static str| [base, &[Key(k)]].concat();
        if f.auth.is_none() {
            for (k, set) in [
                ("key_id", f.key_id.is_some()),
                ("key_secret", f.key_secret.is_some()),
                ("key_secret_file", f.key_secret_file.is_some()),
            ] {
                if set {
                    return self.fail(&at(k), "a key is only used with `auth: cdp`: add it, or remove the key");
                }
            }
            return Some(None);
        }
        let Some(id) = &f.key_id else {
            return self.fail(
                &at("auth"),
                "`auth: cdp` needs `key_id: ${CDP_API_KEY_ID}` (the API key's id)",
            );
        };
        let id = self.text(id, &at("key_id"));
        let secret =
            match (&f.key_secret, &f.key_secret_file) {
                (Some(s), None) => self.text(s, &at("key_secret")),
                (None, Some(file)) => self.parse(file, &at("key_secret_file"), |path| {
                    std::fs::read_to_string(path).map_err(|e| format!("cannot read the key secret from {path:?}: {e}"))
                }),
                _ => return self.fail(
                    &at("auth"),
                    "`auth: cdp` needs exactly one of `key_secret: ${CDP_API_KEY_SECRET}` or `key_secret_file: <path>`",
                ),
            };
        let (id, secret) = (id?, secret?);
        let place = if f.key_secret.is_some() {
            "key_secret"
        } else {
            "key_secret_file"
        };
        match CdpKey::parse(&id, &secret) {
            Ok(k) => Some(Some(Arc::new(k))),
            Err(e) => self.fail(&at(place), format!("the CDP API key cannot be used: {e}")),
        }
    }

    /// `rpc:`: a URL per network (`eip155:8453: "https://…"`); the URLs are secrets.
    fn rpc(&mut self, raw: &RawConfig) -> Option<Vec<(Network, Secret)>> {
        let entries: Vec<Option<(Network, Secret)>> = raw
            .rpc
            .iter()
            .map(|(name, t)| {
                let at = [Key("rpc"), Key(name)];
                let network = match network(name) {
                    Ok(n) => Some(n),
                    Err(e) => self.fail(&at, e),
                };
                // The URL may hold an API key: the message must not repeat it.
                let url = self.parse(t, &at, |s| {
                    url::Url::parse(s)
                        .ok()
                        .filter(|u| u.scheme() == "http" || u.scheme() == "https")
                        .map(|_| Secret::new(s))
                        .ok_or_else(|| "must be an http:// or https:// JSON-RPC URL for this network".to_owned())
                });
                Some((network?, url?))
            })
            .collect();
        entries.into_iter().collect()
    }

    fn assets(&mut self, raw: &RawConfig) -> Vec<Asset> {
        let mut out = Vec::new();
        for (i, a) in raw.assets.iter().enumerate() {
            let at = |k: &'static str| [Key("assets"), Index(i), Key(k)];
            let network = self.parse(&a.network, &at("network"), network);
            let address = self.address(&a.address, &at("address"));
            let transfer = a.transfer.unwrap_or_default();
            let mut domain = |t: &Option<Text>, k: &'static str| {
                match (t, transfer) {
                (Some(t), _) => self.text(t, &at(k)),
                (None, Transfer::Permit2) => Some(String::new()),
                (None, Transfer::Eip3009) => self.fail(
                    &[Key("assets"), Index(i)],
                    format!("`{k}` is missing: an EIP-3009 token needs its EIP-712 domain name and version (read them from the token), or set `transfer: permit2` to take payments in it through Permit2"),
                ),
            }
            };
            let name = domain(&a.name, "name");
            let version = domain(&a.version, "version");
            let symbol = match &a.symbol {
                Some(s) => self.text(s, &at("symbol")),
                None => Some("tokens".to_owned()),
            };
            if let (Some(network), Some(address), Some(eip712_name), Some(eip712_version), Some(symbol)) =
                (network, address, name, version, symbol)
            {
                out.push(Asset {
                    chain_id: network.chain_id,
                    address,
                    eip712_name,
                    eip712_version,
                    decimals: a.decimals,
                    symbol,
                    transfer,
                });
            }
        }
        out
    }
}

/// The facilitator's base URL, without a trailing `/`.
fn check_url(url: &str) -> Result<String, String> {
    match url::Url::parse(url) {
        Err(e) => Err(format!(
            "{url:?} is not a URL ({e}); write e.g. https://x402.org/facilitator"
        )),
        Ok(p) if !matches!(p.scheme(), "http" | "https") => Err(format!("{url:?} must be an http:// or https:// URL")),
        Ok(_) => Ok(url.trim_end_matches('/').to_owned()),
    }
}

/// A network as `rpc:` and `assets:` name it.
fn network(s: &str) -> Result<Network, String> {
    Network::parse(s).ok_or_else(|| format!("{s:?} is not eip155:<chainId> or a known v1 network name"))
}

/// `(tls, host, port)` of an upstream origin URL.
fn parse_upstream(s: &str) -> Result<(bool, String, u16), String> {
    let u = url::Url::parse(s).map_err(|e| format!("{s:?} is not a URL ({e}); write e.g. http://127.0.0.1:3000"))?;
    let tls = match u.scheme() {
        "http" => false,
        "https" => true,
        other => return Err(format!("scheme {other:?} is not supported: use http:// or https://")),
    };
    if u.path() != "/" || u.query().is_some() {
        return Err(format!(
            "{s:?}: an upstream is an origin (scheme, host, port) without a path"
        ));
    }
    let host = u
        .host_str()
        .ok_or_else(|| format!("{s:?} has no host"))?
        .trim_matches(['[', ']'])
        .to_owned();
    let port = u.port_or_known_default().unwrap_or(if tls { 443 } else { 80 });
    Ok((tls, host, port))
}
