//! The gateway's configuration: [`raw`] reads the YAML as written; this module resolves it into a
//! [`Config`] that can only hold valid states (parsed addresses, integer prices, compiled patterns).
//! The proxy never sees a string it has to re-check.

pub mod locate;
pub mod raw;

use std::collections::{BTreeMap, HashMap};
use std::fmt::Write as _;
use std::net::SocketAddr;
use std::path::Path;
use std::time::Duration;

use alloy::primitives::{Address, U256};
use http::{HeaderName, HeaderValue, Method};

use crate::money::{format_units, UsdPrice};
use crate::protocol::assets::{self, Asset};
use crate::protocol::exact::{parse_address, parse_decimal, Requirement};
use crate::protocol::network::Network;
use crate::routes::{HostPattern, PathPattern};
use crate::secret::Secret;
use locate::{locate, PathPart};
pub use raw::{DefaultAction, SettleMode, VerifyMode};
use raw::{RawConfig, RawPrice, RawRoute, Text};

/// Environment variable that overrides `facilitator.url`.
pub const FACILITATOR_URL_ENV: &str = "X402_FACILITATOR_URL";
/// Listen address when the file sets none: all interfaces, so a sidecar is reachable in its pod.
const DEFAULT_LISTEN: SocketAddr = SocketAddr::V4(std::net::SocketAddrV4::new(std::net::Ipv4Addr::UNSPECIFIED, 8402));
/// `maxTimeoutSeconds` when neither the route nor the file sets one. Shorter than the v2 reference's
/// 300 s: it bounds how long an unsettled authorization stays claimable.
const DEFAULT_MAX_TIMEOUT_SECS: u64 = 120;
/// Longest `maxTimeoutSeconds` accepted: an authorization stays claimable this long.
const MAX_TIMEOUT_LIMIT_SECS: u64 = 86_400;
/// Facilitator call timeout when unset: long enough for `/settle` to wait out a block or two, so a slow
/// receipt is an answer rather than an unknown outcome.
const DEFAULT_FACILITATOR_TIMEOUT: Duration = Duration::from_secs(30);

/// A configuration error: where it is and what to do about it.
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

/// The resolved configuration.
#[derive(Debug, Clone)]
pub struct Config {
    pub listen: SocketAddr,
    pub admin_listen: Option<SocketAddr>,
    pub upstreams: BTreeMap<String, Upstream>,
    /// PEM CAs trusted for `https://` upstreams instead of the system's roots.
    pub upstream_ca_file: Option<std::path::PathBuf>,
    pub facilitator: FacilitatorSettings,
    pub default_action: DefaultAction,
    pub routes: Vec<Route>,
}

/// Where the facilitator is and how to call it.
#[derive(Debug, Clone)]
pub struct FacilitatorSettings {
    pub url: String,
    pub timeout: Duration,
    /// Extra headers (e.g. auth); values are secrets and never logged.
    pub headers: Vec<(HeaderName, Secret)>,
}

impl FacilitatorSettings {
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
    pub tls: bool,
    pub host: String,
    pub port: u16,
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
    pub upstream: String,
    /// `None`: free.
    pub pricing: Option<Pricing>,
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
}

/// One way to pay a route: the requirement plus what a person needs to read it.
#[derive(Debug, Clone)]
pub struct Offer {
    pub requirement: Requirement,
    pub symbol: String,
    pub decimals: u8,
}

impl Offer {
    /// `0.001 USDC on eip155:8453`.
    pub fn display(&self) -> String {
        format!(
            "{} {} on {}",
            format_units(self.requirement.amount, self.decimals),
            self.symbol,
            self.requirement.network
        )
    }
}

/// Loads and resolves a file.
pub fn load(path: &Path) -> Result<Config, ConfigError> {
    let file = path.display().to_string();
    let src = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
        file: file.clone(),
        source,
    })?;
    parse(&src, &file, None)
}

/// Parses and resolves YAML text; `file` names it in errors. Variables come from `env`, or from the
/// process environment when `None`.
pub fn parse(src: &str, file: &str, env: Option<HashMap<String, String>>) -> Result<Config, ConfigError> {
    raw::with_env(env, || parse_here(src, file))
}

fn parse_here(src: &str, file: &str) -> Result<Config, ConfigError> {
    let raw: RawConfig = serde_yaml::from_str(src).map_err(|e| {
        let (line, column) = e.location().map_or((1, 1), |l| (l.line(), l.column()));
        let text = e.to_string();
        let message = text
            .rsplit_once(" at line ")
            .map_or(text.as_str(), |(m, _)| m)
            .to_owned();
        // serde_yaml loses the position of errors raised while expanding `${VAR}`; the reference itself
        // is in the text, so point at it.
        if let Some((line, column, key)) = locate::env_reference(src, &message) {
            return ConfigError::At {
                file: file.to_owned(),
                line,
                column,
                message: format!("{key}: {message}"),
            };
        }
        ConfigError::At {
            file: file.to_owned(),
            line,
            column,
            message,
        }
    })?;
    Resolver { src, file }.resolve(raw)
}

struct Resolver<'a> {
    src: &'a str,
    file: &'a str,
}

impl Resolver<'_> {
    fn err(&self, at: &[PathPart], message: String) -> ConfigError {
        let (line, column) = locate(self.src, at);
        let field = locate::display(at);
        ConfigError::At {
            file: self.file.to_owned(),
            line,
            column,
            message: format!("{field}: {message}"),
        }
    }

    fn resolve(&self, raw: RawConfig) -> Result<Config, ConfigError> {
        use PathPart::{Index, Key};
        let addr = |v: &Option<Text>, key: &'static str| -> Result<Option<SocketAddr>, ConfigError> {
            v.as_ref()
                .map(|Text(s)| {
                    s.parse().map_err(|_| {
                        self.err(
                            &[Key(key)],
                            format!("{s:?} is not an address like 0.0.0.0:8402 (IP:port)"),
                        )
                    })
                })
                .transpose()
        };
        let listen = addr(&raw.listen, "listen")?.unwrap_or(DEFAULT_LISTEN);
        let admin_listen = addr(&raw.admin_listen, "admin_listen")?;

        let mut upstreams = BTreeMap::new();
        for (name, Text(url)) in &raw.upstreams {
            let u = parse_upstream(url).map_err(|m| self.err(&[Key("upstreams"), Key(name)], m))?;
            upstreams.insert(name.clone(), u);
        }

        let upstream_ca_file = match &raw.upstream_ca_file {
            Some(Text(f)) => {
                let path = std::path::PathBuf::from(f);
                if !path.is_file() {
                    return Err(self.err(
                        &[Key("upstream_ca_file")],
                        format!("{f:?} is not a readable file: give the path of a PEM bundle of CA certificates"),
                    ));
                }
                Some(path)
            }
            None => None,
        };
        let facilitator = self.facilitator(&raw)?;
        let custom = self.assets(&raw)?;
        let pay_to = match &raw.pay_to {
            Some(Text(s)) => Some(
                parse_address(s)
                    .ok_or_else(|| self.err(&[Key("pay_to")], format!("{s:?} is not a 0x-prefixed 20-byte address")))?,
            ),
            None => None,
        };
        let max_timeout = raw.max_timeout_seconds.unwrap_or(DEFAULT_MAX_TIMEOUT_SECS);

        let mut routes = Vec::with_capacity(raw.routes.len());
        for (i, r) in raw.routes.iter().enumerate() {
            let at = |k: &'static str| [Key("routes"), Index(i), Key(k)];
            routes.push(self.route(r, &at, &upstreams, &custom, &raw.accepts, pay_to, max_timeout)?);
        }
        // A host-limited price means nothing if other hosts reach the same upstream for free.
        if raw.default == DefaultAction::Pass {
            if let Some((i, r)) = routes
                .iter()
                .enumerate()
                .find(|(_, r)| r.host.is_some() && r.pricing.is_some() && r.upstream == "default")
            {
                return Err(self.err(
                    &[Key("routes"), Index(i), Key("host")],
                    format!("route {:?} is priced for one host, but `default: pass` sends every other host to the same upstream for free: set `default: deny`, or give this route its own `upstream`", r.name),
                ));
            }
        }
        if raw.default == DefaultAction::Pass && !upstreams.contains_key("default") {
            return Err(self.err(&[Key("upstreams")], "`default: pass` proxies unmatched requests to the upstream named `default`: add `upstreams: {default: \"http://127.0.0.1:3000\"}` or set `default: deny`".into()));
        }
        Ok(Config {
            listen,
            admin_listen,
            upstreams,
            upstream_ca_file,
            facilitator,
            default_action: raw.default,
            routes,
        })
    }

    fn facilitator(&self, raw: &RawConfig) -> Result<FacilitatorSettings, ConfigError> {
        use PathPart::Key;
        let f = &raw.facilitator;
        let url = raw::lookup_env(FACILITATOR_URL_ENV).unwrap_or_else(|| f.url.0.clone());
        let parsed = url::Url::parse(&url).map_err(|e| {
            self.err(
                &[Key("facilitator"), Key("url")],
                format!("{url:?} is not a URL ({e}); write e.g. https://x402.org/facilitator"),
            )
        })?;
        if !matches!(parsed.scheme(), "http" | "https") {
            return Err(self.err(
                &[Key("facilitator"), Key("url")],
                format!("{url:?} must be an http:// or https:// URL"),
            ));
        }
        let timeout = match &f.timeout {
            Some(Text(t)) => {
                crate::cli::parse_duration(t).map_err(|m| self.err(&[Key("facilitator"), Key("timeout")], m))?
            }
            None => DEFAULT_FACILITATOR_TIMEOUT,
        };
        let mut headers = Vec::new();
        for (name, Text(value)) in &f.headers {
            let at = [Key("facilitator"), Key("headers"), Key(name)];
            let n = HeaderName::from_bytes(name.as_bytes())
                .map_err(|_| self.err(&at, format!("{name:?} is not a valid HTTP header name")))?;
            // The value may be a secret: the message must not repeat it.
            HeaderValue::from_str(value).map_err(|_| {
                self.err(
                    &at,
                    "the value is not a valid HTTP header value (control characters?)".into(),
                )
            })?;
            headers.push((n, Secret::new(value.clone())));
        }
        Ok(FacilitatorSettings {
            url: url.trim_end_matches('/').to_owned(),
            timeout,
            headers,
        })
    }

    fn assets(&self, raw: &RawConfig) -> Result<Vec<Asset>, ConfigError> {
        use PathPart::{Index, Key};
        let mut out = Vec::new();
        for (i, a) in raw.assets.iter().enumerate() {
            let at = |k: &'static str| [Key("assets"), Index(i), Key(k)];
            let network = Network::parse(&a.network.0).ok_or_else(|| {
                self.err(
                    &at("network"),
                    format!("{:?} is not eip155:<chainId> or a known v1 network name", a.network.0),
                )
            })?;
            let address = parse_address(&a.address.0).ok_or_else(|| {
                self.err(
                    &at("address"),
                    format!("{:?} is not a 0x-prefixed 20-byte address", a.address.0),
                )
            })?;
            out.push(Asset {
                chain_id: network.chain_id,
                address,
                eip712_name: a.name.0.clone(),
                eip712_version: a.version.0.clone(),
                decimals: a.decimals,
                symbol: a.symbol.as_ref().map_or_else(|| "tokens".to_owned(), |s| s.0.clone()),
            });
        }
        Ok(out)
    }

    #[allow(clippy::too_many_arguments)]
    fn route(
        &self,
        r: &RawRoute,
        at: &dyn Fn(&'static str) -> [PathPart; 3],
        upstreams: &BTreeMap<String, Upstream>,
        custom: &[Asset],
        default_accepts: &[Text],
        default_pay_to: Option<Address>,
        default_max_timeout: u64,
    ) -> Result<Route, ConfigError> {
        let path = PathPattern::parse(&r.path.0).map_err(|m| self.err(&at("path"), m))?;
        let methods = match &r.methods {
            None => None,
            Some(ms) => Some(
                ms.iter()
                    .map(|Text(m)| {
                        let up = m.to_ascii_uppercase();
                        Method::from_bytes(up.as_bytes())
                            .map_err(|_| self.err(&at("methods"), format!("{m:?} is not an HTTP method")))
                    })
                    .collect::<Result<Vec<_>, _>>()?,
            ),
        };
        let host = match &r.host {
            Some(Text(h)) => Some(HostPattern::parse(h).map_err(|m| self.err(&at("host"), m))?),
            None => None,
        };
        let upstream = r.upstream.as_ref().map_or("default", |t| t.0.as_str()).to_owned();
        if !upstreams.contains_key(&upstream) {
            let known: Vec<&str> = upstreams.keys().map(String::as_str).collect();
            return Err(self.err(
                &at(if r.upstream.is_some() { "upstream" } else { "path" }),
                format!("upstream {upstream:?} is not defined under `upstreams:` (defined: {known:?})"),
            ));
        }
        let name = r.name.as_ref().map_or_else(|| path.to_string(), |t| t.0.clone());
        let pricing = match (&r.price, r.free) {
            (Some(_), true) => {
                return Err(self.err(
                    &at("free"),
                    "a route is either `free: true` or has a `price`, not both".into(),
                ))
            }
            (None, true) => None,
            (None, false) => {
                return Err(self.err(
                    &at("path"),
                    "this route has no `price`: add `price: \"$0.001\"` or mark it `free: true`".into(),
                ))
            }
            (Some(price), false) => Some(self.pricing(
                r,
                price,
                at,
                custom,
                default_accepts,
                default_pay_to,
                default_max_timeout,
            )?),
        };
        Ok(Route {
            name,
            methods,
            host,
            path,
            upstream,
            pricing,
        })
    }

    #[allow(clippy::too_many_arguments)]
    fn pricing(
        &self,
        r: &RawRoute,
        price: &RawPrice,
        at: &dyn Fn(&'static str) -> [PathPart; 3],
        custom: &[Asset],
        default_accepts: &[Text],
        default_pay_to: Option<Address>,
        default_max_timeout: u64,
    ) -> Result<Pricing, ConfigError> {
        let pay_to = match &r.pay_to {
            Some(Text(s)) => parse_address(s)
                .ok_or_else(|| self.err(&at("pay_to"), format!("{s:?} is not a 0x-prefixed 20-byte address")))?,
            None => default_pay_to.ok_or_else(|| {
                self.err(
                    &at("path"),
                    "a priced route needs a recipient: set `pay_to` on the route or at the top level".into(),
                )
            })?,
        };
        let max_timeout_seconds = r.max_timeout_seconds.unwrap_or(default_max_timeout);
        if max_timeout_seconds == 0 || max_timeout_seconds > MAX_TIMEOUT_LIMIT_SECS {
            let key = if r.max_timeout_seconds.is_some() {
                "max_timeout_seconds"
            } else {
                "path"
            };
            return Err(self.err(
                &at(key),
                format!("max_timeout_seconds must be between 1 and {MAX_TIMEOUT_LIMIT_SECS} (one day)"),
            ));
        }
        let priced: Vec<(Asset, U256)> = match price {
            RawPrice::Usd(s) => {
                let usd = UsdPrice::parse(s).map_err(|e| self.err(&at("price"), e.to_string()))?;
                let (list, key) = match &r.accepts {
                    Some(l) => (l.as_slice(), "accepts"),
                    None => (default_accepts, "price"),
                };
                if list.is_empty() {
                    return Err(self.err(&at(key), "say which networks/assets this price is payable in: add `accepts: [eip155:8453]` to the route or at the top level".into()));
                }
                let mut out = Vec::new();
                for Text(a) in list {
                    let asset = find_asset(a, custom).map_err(|m| self.err(&at(key), m))?;
                    let amount = usd
                        .to_atomic(asset.decimals, s)
                        .map_err(|e| self.err(&at("price"), e.to_string()))?;
                    out.push((asset, amount));
                }
                out
            }
            RawPrice::Atomic { amount, asset } => {
                if r.accepts.is_some() {
                    return Err(self.err(
                        &at("accepts"),
                        "a price in atomic units names its one asset; drop `accepts` or use a \"$\" price".into(),
                    ));
                }
                let a = find_asset(asset, custom).map_err(|m| self.err(&at("price"), m))?;
                let n = parse_decimal(amount).ok_or_else(|| {
                    self.err(
                        &at("price"),
                        format!("amount {amount:?} must be a whole number of atomic units, e.g. \"1000\""),
                    )
                })?;
                vec![(a, n)]
            }
        };
        let mut offers: Vec<Offer> = Vec::new();
        for (asset, amount) in priced {
            if amount.is_zero() {
                return Err(self.err(
                    &at("price"),
                    "the price is zero: use `free: true` for free routes".into(),
                ));
            }
            let requirement = Requirement {
                network: Network::new(asset.chain_id),
                asset: asset.address,
                pay_to,
                amount,
                max_timeout_seconds,
                eip712_name: asset.eip712_name.clone(),
                eip712_version: asset.eip712_version.clone(),
            };
            if offers.iter().any(|o| o.requirement == requirement) {
                continue;
            }
            offers.push(Offer {
                requirement,
                symbol: asset.symbol.clone(),
                decimals: asset.decimals,
            });
        }
        Ok(Pricing {
            offers,
            description: r.description.as_ref().map_or_else(String::new, |t| t.0.clone()),
            mime_type: r
                .mime_type
                .as_ref()
                .map_or_else(|| "application/json".to_owned(), |t| t.0.clone()),
            settle: r.settle.unwrap_or_default(),
            verify: r.verify.unwrap_or_default(),
        })
    }
}

/// An `accepts` entry: a network (its default stablecoin) or a CAIP-19 asset `eip155:<id>/erc20:0x…`.
fn find_asset(s: &str, custom: &[Asset]) -> Result<Asset, String> {
    if let Some((net, token)) = s.split_once('/') {
        let network = Network::parse(net)
            .ok_or_else(|| format!("{net:?} in {s:?} is not eip155:<chainId> or a v1 network name"))?;
        let addr = token
            .strip_prefix("erc20:")
            .and_then(parse_address)
            .ok_or_else(|| format!("{s:?}: write an asset as eip155:<chainId>/erc20:0x<address>"))?;
        return custom
            .iter()
            .find(|a| a.chain_id == network.chain_id && a.address == addr)
            .cloned()
            .or_else(|| assets::builtin(network.chain_id, addr))
            .ok_or_else(|| format!("asset {s:?} is not built in: describe it under `assets:` (network, address, name, version, decimals)"));
    }
    let network = Network::parse(s).ok_or_else(|| {
        format!("{s:?} is not a network (eip155:<chainId> or a v1 name) or an asset (eip155:<chainId>/erc20:0x…)")
    })?;
    custom
        .iter()
        .find(|a| a.chain_id == network.chain_id)
        .cloned()
        .or_else(|| assets::default_for_chain(network.chain_id))
        .ok_or_else(|| format!("network {s:?} has no built-in stablecoin: describe its token under `assets:`"))
}

fn parse_upstream(s: &str) -> Result<Upstream, String> {
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
    Ok(Upstream { tls, host, port })
}

impl Config {
    /// The resolved price table as `check` prints it.
    pub fn describe(&self) -> String {
        let mut out = String::new();
        let _ = writeln!(
            out,
            "listen {}  admin {}  facilitator {}  unmatched: {:?}",
            self.listen,
            self.admin_listen.map_or_else(|| "-".into(), |a| a.to_string()),
            self.facilitator.url,
            self.default_action
        );
        for r in &self.routes {
            let methods = r.methods.as_ref().map_or_else(
                || "ANY".to_owned(),
                |m| m.iter().map(Method::as_str).collect::<Vec<_>>().join(","),
            );
            let host = r.host.as_ref().map_or_else(String::new, |h| format!(" host {h:?}"));
            match &r.pricing {
                None => {
                    let _ = writeln!(
                        out,
                        "route {:?}: {methods} {}{host} -> {}  free",
                        r.name, r.path, r.upstream
                    );
                }
                Some(p) => {
                    let _ = writeln!(
                        out,
                        "route {:?}: {methods} {}{host} -> {}  settle {:?}, verify {:?}",
                        r.name, r.path, r.upstream, p.settle, p.verify
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
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const BASE: &str = "facilitator:\n  url: http://127.0.0.1:4020\n  headers:\n    Authorization: \"Bearer ${TOKEN}\"\nupstreams:\n  default: http://127.0.0.1:3000\n  search: https://search.example\npay_to: \"0x3C44CdDdB6a900fa2b585dd299e03d12FA4293BC\"\nassets:\n  - network: eip155:31337\n    address: \"0x5FbDB2315678afecb367f032d93F642f64180aa3\"\n    name: USD Coin\n    version: \"2\"\n    decimals: 6\n";

    fn env(extra: &[(&str, &str)]) -> Option<HashMap<String, String>> {
        let mut vars: HashMap<String, String> = HashMap::from([("TOKEN".to_owned(), "s3cret-token".to_owned())]);
        vars.extend(extra.iter().map(|(k, v)| ((*k).to_owned(), (*v).to_owned())));
        Some(vars)
    }

    fn load(routes: &str) -> Result<Config, ConfigError> {
        parse(&format!("{BASE}{routes}"), "t.yaml", env(&[]))
    }

    #[test]
    fn dollar_price_is_offered_in_every_accepted_asset() {
        let c = load("routes:\n  - path: /a/**\n    price: \"$0.01\"\n    accepts: [base, eip155:31337, eip155:137]\n    upstream: search\n").unwrap();
        let p = c.routes[0].pricing.as_ref().unwrap();
        let offers: Vec<(u64, String)> = p
            .offers
            .iter()
            .map(|o| (o.requirement.network.chain_id, o.requirement.amount.to_string()))
            .collect();
        assert_eq!(
            offers,
            [(8453, "10000".into()), (31_337, "10000".into()), (137, "10000".into())]
        );
        assert_eq!(
            c.upstreams["search"],
            Upstream {
                tls: true,
                host: "search.example".into(),
                port: 443
            }
        );
        assert_eq!((p.settle, p.verify), (SettleMode::After, VerifyMode::Remote));
    }

    #[test]
    fn atomic_price_names_its_asset() {
        let c = load("routes:\n  - path: /a\n    price: {amount: \"25\", asset: \"eip155:31337/erc20:0x5FbDB2315678afecb367f032d93F642f64180aa3\"}\n    settle: before\n").unwrap();
        let p = c.routes[0].pricing.as_ref().unwrap();
        assert_eq!(p.offers.len(), 1);
        assert_eq!(p.offers[0].requirement.amount, U256::from(25));
        assert_eq!(p.offers[0].requirement.eip712_name, "USD Coin");
        assert_eq!(p.settle, SettleMode::Before);
    }

    #[test]
    fn facilitator_url_comes_from_the_environment_when_set_and_secrets_stay_hidden() {
        let c = parse(
            &format!("{BASE}routes: []\n"),
            "t.yaml",
            env(&[(FACILITATOR_URL_ENV, "https://f.example/")]),
        )
        .unwrap();
        assert_eq!(c.facilitator.url, "https://f.example");
        assert_eq!(c.facilitator.header_map()["authorization"], "Bearer s3cret-token");
        assert!(
            !format!("{c:?}").contains("s3cret"),
            "secrets must not reach Debug output"
        );
    }

    #[test]
    fn errors_point_at_the_field_and_say_how_to_fix_it() {
        let cases = [
            ("routes:\n  - path: /a\n", "routes[0].path", "free: true"),
            ("routes:\n  - path: /a\n    price: \"$0.0000001\"\n    accepts: [base]\n", "routes[0].price", "round it to 6 places"),
            ("routes:\n  - path: /a\n    price: \"$1\"\n    accepts: [eip155:31337/erc20:0x0000000000000000000000000000000000000001]\n", "routes[0].accepts", "describe it under `assets:`"),
            ("routes:\n  - path: /a\n    free: true\n    upstream: nope\n", "routes[0].upstream", "not defined under `upstreams:`"),
            ("routes:\n  - path: /a/**/b\n    free: true\n", "routes[0].path", "last segment"),
        ];
        for (routes, field, hint) in cases {
            let e = load(routes).unwrap_err().to_string();
            assert!(e.starts_with("t.yaml:") && e.contains(field) && e.contains(hint), "{e}");
        }
    }
}
