//! Resolving `routes:`: each route's matcher and upstream, and for a priced route its offers, one per
//! accepted asset, with the price converted exactly into that asset's atomic units.

use alloy::primitives::U256;
use http::Method;

use super::locate::PathPart::{Index, Key};
use super::raw::{RawPrice, RawRoute, Text};
use super::resolve::{Defaults, Resolver, DEFAULT_UPSTREAM};
use crate::core::money::UsdPrice;
use crate::protocol::assets::{self, Asset};
use crate::protocol::batch::BatchTerms;
use crate::protocol::exact::{parse_address, parse_decimal, Requirement, Scheme, Transfer};
use crate::protocol::network::Network;
use crate::rules::offer::Offer;
use crate::rules::routes::{HostPattern, Matching, PathPattern};
use crate::rules::table::{Mode, Policy, Pricing, Route, SettleMode};

/// Longest `maxTimeoutSeconds` accepted: an authorization stays claimable this long.
const MAX_TIMEOUT_LIMIT_SECS: u64 = 86_400;

impl Resolver<'_> {
    pub(super) fn route(&mut self, r: &RawRoute, i: usize, d: &Defaults) -> Option<Route> {
        let at = |k: &'static str| [Key("routes"), Index(i), Key(k)];
        // Free routes match only what they say; priced ones every spelling an upstream may serve as theirs.
        let strict = r.case_sensitive.unwrap_or(d.case_sensitive);
        let matching = if r.price.is_none() || strict {
            Matching::Exact
        } else {
            Matching::Loose
        };
        let path = self.parse(&r.path, &at("path"), |p| PathPattern::parse(p, matching));
        let methods = match &r.methods {
            None => Some(None),
            Some(ms) => ms
                .iter()
                .map(|m| {
                    self.parse(m, &at("methods"), |m| {
                        Method::from_bytes(m.to_ascii_uppercase().as_bytes())
                            .map_err(|_| format!("{m:?} is not an HTTP method"))
                    })
                })
                .collect::<Vec<_>>()
                .into_iter()
                .collect::<Option<Vec<_>>>()
                .map(Some),
        };
        let host = match &r.host {
            Some(h) => self.parse(h, &at("host"), HostPattern::parse).map(Some),
            None => Some(None),
        };
        let upstream_name = match &r.upstream {
            Some(u) => self.text(u, &at("upstream")),
            None => Some(DEFAULT_UPSTREAM.to_owned()),
        };
        let upstream = upstream_name.and_then(|name| match d.upstreams.iter().position(|u| u.name == name) {
            Some(i) => Some(i),
            None => {
                let known: Vec<&str> = d.upstreams.iter().map(|u| u.name.as_str()).collect();
                let key = if r.upstream.is_some() { "upstream" } else { "path" };
                self.fail(
                    &at(key),
                    format!("upstream {name:?} is not defined under `upstreams:` (defined: {known:?})"),
                )
            }
        });
        let name = match &r.name {
            Some(n) => self.text(n, &at("name")),
            None => path.as_ref().map(ToString::to_string),
        };
        let pricing = match (&r.price, r.free) {
            (Some(_), true) => self.fail(&at("free"), "a route is either `free: true` or has a `price`, not both"),
            (None, true) => Some(None),
            (None, false) => self.fail(
                &at("path"),
                "this route has no `price`: add `price: \"$0.001\"` or mark it `free: true`",
            ),
            (Some(price), false) => self.pricing(r, price, i, d).map(Some),
        };
        Some(Route {
            name: name?,
            methods: methods?,
            host: host?,
            path: path?,
            upstream: upstream?,
            pricing: pricing?,
        })
    }

    fn pricing(&mut self, r: &RawRoute, price: &RawPrice, i: usize, d: &Defaults) -> Option<Pricing> {
        let at = |k: &'static str| [Key("routes"), Index(i), Key(k)];
        let description = match &r.description {
            Some(t) => self.text(t, &at("description")),
            None => Some(String::new()),
        };
        let mime_type = match &r.mime_type {
            Some(t) => self.text(t, &at("mime_type")),
            None => Some("application/json".to_owned()),
        };
        let pay_to = match &r.pay_to {
            Some(t) => self.address(t, &at("pay_to")),
            None => d.pay_to.or_else(|| {
                self.fail(
                    &at("path"),
                    "a priced route needs a recipient: set `pay_to` on the route or at the top level",
                )
            }),
        };
        let max_timeout_seconds = r.max_timeout_seconds.unwrap_or(d.max_timeout);
        let max_timeout_seconds = if max_timeout_seconds == 0 || max_timeout_seconds > MAX_TIMEOUT_LIMIT_SECS {
            let key = if r.max_timeout_seconds.is_some() {
                "max_timeout_seconds"
            } else {
                "path"
            };
            self.fail(
                &at(key),
                format!("max_timeout_seconds must be between 1 and {MAX_TIMEOUT_LIMIT_SECS} (one day)"),
            )
        } else {
            Some(max_timeout_seconds)
        };
        if matches!(price, RawPrice::Upto { .. }) && r.settle == Some(SettleMode::Before) {
            return self.fail(&at("settle"), "an `upto` route charges what the upstream reports, which is known only after it answered: drop `settle: before`");
        }
        let batch = match (price, d.batch) {
            // `batch_settlement:` is there but wrong: its own error says so.
            (RawPrice::Batch { .. }, None) if d.batch_declared => return None,
            (RawPrice::Batch { .. }, None) => {
                return self.fail(&at("price"), "a `batch` price needs the top-level `batch_settlement:` block with the receiver authorizer's key (`receiver_authorizer_key: ${RECEIVER_AUTHORIZER_KEY}`)")
            }
            (RawPrice::Batch { .. }, Some(terms)) => Some(terms),
            _ => None,
        };
        if batch.is_some() {
            // A voucher is charged after the upstream answered, and channels are their own idempotency.
            for (key, set) in [
                ("settle", r.settle == Some(SettleMode::Before)),
                ("payment_identifier", r.payment_identifier.is_some()),
            ] {
                if set {
                    return self.fail(&at(key), format!("a `batch` route charges each voucher after the upstream answered and needs no `{key}`: remove it"));
                }
            }
            if r.mode.unwrap_or(d.mode) == Mode::Shadow {
                return self.fail(
                    &at("mode"),
                    "`mode: shadow` judges exact and upto payments only: give this `batch` route `mode: enforce`",
                );
            }
        }
        let priced = self.priced(r, price, i, d);
        let (pay_to, max_timeout_seconds, priced) = (pay_to?, max_timeout_seconds?, priced?);
        let mut offers: Vec<Offer> = Vec::new();
        for (asset, amount, min) in priced {
            if amount.is_zero() {
                return self.fail(&at("price"), "the price is zero: use `free: true` for free routes");
            }
            if min > amount && batch.is_none() {
                return self.fail(
                    &at("price"),
                    "`min` is above `upto`: the least charge cannot exceed the maximum",
                );
            }
            if !min.is_zero() && min < amount && batch.is_some() {
                return self.fail(
                    &at("price"),
                    "`min_deposit` is below the price of one call: raise it, or leave it out (ten calls' worth)",
                );
            }
            // `upto` always moves the tokens through Permit2, whatever the asset's own method.
            let (scheme, transfer) = match (price, d.upto_facilitator) {
                (RawPrice::Batch { .. }, _) => {
                    let (receiver_authorizer, withdraw_delay) = batch?;
                    // The SDK servers' hint when none is configured: ten calls.
                    let min_deposit = if min.is_zero() { amount.saturating_mul(U256::from(10)) } else { min };
                    let terms = BatchTerms {
                        receiver_authorizer,
                        withdraw_delay,
                        min_deposit,
                    };
                    (Scheme::Batch(terms), asset.transfer)
                }
                (RawPrice::Upto { .. }, Some(facilitator)) => (Scheme::Upto { facilitator }, Transfer::Permit2),
                (RawPrice::Upto { .. }, None) => {
                    return self.fail(&at("price"), "an `upto` price is settled by one facilitator, whose address the payer signs: set `address:` on that facilitator (the `extra.facilitatorAddress` its /supported lists for upto)")
                }
                _ => (Scheme::Exact, asset.transfer),
            };
            let requirement = Requirement {
                scheme,
                network: Network::new(asset.chain_id),
                asset: asset.address,
                pay_to,
                amount,
                max_timeout_seconds,
                eip712_name: asset.eip712_name.clone(),
                eip712_version: asset.eip712_version.clone(),
                transfer,
            };
            if offers.iter().any(|o| o.requirement == requirement) {
                continue;
            }
            let min = if batch.is_some() { U256::ZERO } else { min };
            offers.push(Offer::new(requirement, asset.symbol.clone(), asset.decimals).with_min(min));
        }
        Some(Pricing::new(
            offers,
            description?,
            mime_type?,
            Policy {
                settle: r.settle.unwrap_or_default(),
                verify: r.verify.unwrap_or_default(),
                payment_id: r.payment_identifier.unwrap_or_default(),
                mode: r.mode.unwrap_or(d.mode),
                on_facilitator_error: r.on_facilitator_error.unwrap_or_default(),
            },
        ))
    }

    /// Each asset the price is payable in, with the amount (for `upto`, the maximum; for `batch`, one call)
    /// and the second figure (`upto`'s least charge, `batch`'s least deposit; zero when unset) in its atomic
    /// units.
    fn priced(&mut self, r: &RawRoute, price: &RawPrice, i: usize, d: &Defaults) -> Option<Vec<(Asset, U256, U256)>> {
        let (amount, asset, min) = match price {
            RawPrice::Usd(s) => (s, None, None),
            RawPrice::Atomic { amount, asset } => (amount, Some(asset), None),
            RawPrice::Upto { max, asset, min } => (max, asset.as_ref(), min.as_ref()),
            RawPrice::Batch {
                price,
                asset,
                min_deposit,
            } => (price, asset.as_ref(), min_deposit.as_ref()),
        };
        let amounts = self.amounts(r, amount, asset, i, d)?;
        let mins = match min {
            Some(m) => self.amounts(r, m, asset, i, d)?,
            None => Vec::new(),
        };
        Some(
            amounts
                .into_iter()
                .enumerate()
                .map(|(k, (asset, amount))| (asset, amount, mins.get(k).map_or(U256::ZERO, |m| m.1)))
                .collect(),
        )
    }

    /// A price written as `amount` (a dollar string, or atomic units of `asset`) in each asset it is
    /// payable in.
    fn amounts(
        &mut self,
        r: &RawRoute,
        amount: &Text,
        asset: Option<&Text>,
        i: usize,
        d: &Defaults,
    ) -> Option<Vec<(Asset, U256)>> {
        let at = |k: &'static str| [Key("routes"), Index(i), Key(k)];
        match asset {
            None => {
                let s = self.text(amount, &at("price"))?;
                let usd = match UsdPrice::parse(&s) {
                    Ok(u) => u,
                    Err(e) => return self.fail(&at("price"), e.to_string()),
                };
                let (list, key) = match &r.accepts {
                    Some(l) => (
                        l.iter()
                            .filter_map(|t| self.text(t, &at("accepts")))
                            .collect::<Vec<_>>(),
                        "accepts",
                    ),
                    None => (d.accepts.clone(), "price"),
                };
                if list.is_empty() {
                    return self.fail(&at(key), "say which networks/assets this price is payable in: add `accepts: [eip155:8453]` to the route or at the top level");
                }
                let mut out = Vec::new();
                for a in &list {
                    let asset = match find_asset(a, &d.assets) {
                        Ok(asset) => asset,
                        Err(m) => return self.fail(&at(key), m),
                    };
                    match usd.to_atomic(asset.decimals, &s) {
                        Ok(amount) => out.push((asset, amount)),
                        Err(e) => return self.fail(&at("price"), e.to_string()),
                    }
                }
                Some(out)
            }
            Some(asset) => {
                if r.accepts.is_some() {
                    return self.fail(
                        &at("accepts"),
                        "a price in atomic units names its one asset; drop `accepts` or use a \"$\" price",
                    );
                }
                let asset = self.text(asset, &at("price"))?;
                let asset = match find_asset(&asset, &d.assets) {
                    Ok(a) => a,
                    Err(m) => return self.fail(&at("price"), m),
                };
                let amount = self.parse(amount, &at("price"), |a| {
                    parse_decimal(a)
                        .ok_or_else(|| format!("amount {a:?} must be a whole number of atomic units, e.g. \"1000\""))
                })?;
                Some(vec![(asset, amount)])
            }
        }
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
