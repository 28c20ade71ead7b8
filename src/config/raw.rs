//! The YAML file as written: serde types that mirror it. Unknown keys are errors. Strings stay as written
//! (`${VAR}` unexpanded): the resolver expands them with the environment it is given, and knows where each
//! one sits for its error messages.

use std::collections::BTreeMap;

use serde::de::{Deserializer, Error as _};
use serde::Deserialize;

pub use crate::protocol::exact::Transfer;
pub use crate::protocol::payment_id::PaymentIdMode;
pub use crate::rules::table::{Mode, OnFacilitatorError, SettleMode, VerifyMode};

/// A string scalar as written.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(transparent)]
pub struct Text(pub String);

/// The whole file.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawConfig {
    pub listen: Option<Text>,
    pub admin_listen: Option<Text>,
    #[serde(default)]
    pub upstreams: BTreeMap<String, Text>,
    pub upstream_ca_file: Option<Text>,
    /// The listener's certificate and key: `listen` speaks TLS when set.
    pub tls: Option<RawTls>,
    /// How long the gateway waits on an upstream.
    #[serde(default)]
    pub upstream_timeouts: RawUpstreamTimeouts,
    /// The `Host` the upstream receives: the client's, or the upstream's own name.
    pub upstream_host: Option<UpstreamHost>,
    /// Addresses (`10.0.0.0/8`, `192.0.2.7`) of proxies in front whose `X-Forwarded-*` are believed.
    #[serde(default)]
    pub trusted_proxies: Vec<Text>,
    /// Where payment state is kept.
    pub store: Option<Text>,
    /// A per-client limit on payment attempts that reach the facilitator.
    pub payment_attempts: Option<RawAttemptLimit>,
    /// Whether a Redis store that may evict or forget claims is refused (`enforce`) or used with a warning.
    pub redis_durability: Option<RedisDurability>,
    /// How long a crashed holder's in-flight claim blocks its payment.
    pub claim_lease: Option<Text>,
    /// Largest response body kept for a `payment-identifier` replay.
    pub payment_identifier_max_body: Option<usize>,
    /// One facilitator, or `facilitators:` (a list, tried in order).
    pub facilitator: Option<RawFacilitator>,
    #[serde(default)]
    pub facilitators: Vec<RawFacilitator>,
    pub pay_to: Option<Text>,
    #[serde(default)]
    pub assets: Vec<RawAsset>,
    #[serde(default)]
    pub accepts: Vec<Text>,
    pub max_timeout_seconds: Option<u64>,
    /// JSON-RPC URLs by network, for resolving payments whose settlement outcome is unknown from the chain.
    #[serde(default)]
    pub rpc: BTreeMap<String, Text>,
    /// Priced paths match case-insensitively unless this is true.
    pub case_sensitive: Option<bool>,
    #[serde(default)]
    pub default: DefaultAction,
    #[serde(default)]
    pub routes: Vec<RawRoute>,
    /// `text` or `json`; `--log-format` wins.
    pub log_format: Option<LogFormat>,
    /// The default `mode` of priced routes.
    pub mode: Option<Mode>,
    #[serde(default)]
    pub shutdown: RawShutdown,
    #[serde(default)]
    pub reload: RawReload,
    #[serde(default)]
    pub health: RawHealth,
    /// What every `batch-settlement` route shares: the receiver-authorizer key and the channel terms.
    pub batch_settlement: Option<RawBatch>,
}

/// `batch_settlement:`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawBatch {
    /// The receiver authorizer's private key (`${ENV}`), or a file holding it.
    pub receiver_authorizer_key: Option<Text>,
    pub receiver_authorizer_key_file: Option<Text>,
    /// How long a payer waits between asking to withdraw and withdrawing (900s to 30d).
    pub withdraw_delay: Option<Text>,
    /// How long a channel's on-chain balance, read at a deposit or a claim, counts as fresh for checking
    /// vouchers locally.
    pub onchain_ttl: Option<Text>,
    /// How often served vouchers are claimed.
    pub claim_every: Option<Text>,
    /// How often claimed funds are settled to the receiver.
    pub settle_every: Option<Text>,
    /// Channels per claim transaction.
    pub max_claims_per_batch: Option<usize>,
}

/// `tls:`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawTls {
    pub cert: Text,
    pub key: Text,
}

/// `payment_attempts:`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawAttemptLimit {
    pub per_second: u32,
    pub burst: Option<u32>,
}

/// `redis_durability:`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum RedisDurability {
    /// A Redis whose `maxmemory-policy` is not `noeviction`, or that has no append-only file, is refused:
    /// the gateway does not start, or (if it was down at start) priced routes answer 503.
    #[default]
    Enforce,
    /// Used all the same, with a warning: for managed Redis whose config cannot be read, once checked.
    Warn,
}

/// How logs are written (also the `--log-format` flag's values).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    /// For people.
    #[default]
    Text,
    /// One JSON object per line, for log pipelines.
    Json,
}

/// `upstream_timeouts:`.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawUpstreamTimeouts {
    pub connect: Option<Text>,
    pub read: Option<Text>,
    pub write: Option<Text>,
    pub idle: Option<Text>,
}

/// `upstream_host:`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum UpstreamHost {
    /// The client's `Host`, as a reverse proxy in front of one's own API usually passes it.
    #[default]
    Client,
    /// The upstream URL's own host (and port): what a third-party API behind the gateway expects.
    Upstream,
}

/// `shutdown:`.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawShutdown {
    pub drain_delay: Option<Text>,
    pub grace_period: Option<Text>,
}

/// `reload:`.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawReload {
    pub watch: Option<bool>,
    pub interval: Option<Text>,
}

/// `health:`.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawHealth {
    pub interval: Option<Text>,
    pub stale_after: Option<Text>,
}

/// `facilitator:`, or one entry of `facilitators:`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawFacilitator {
    pub url: Text,
    pub timeout: Option<Text>,
    #[serde(default)]
    pub headers: BTreeMap<String, Text>,
    /// How each call authenticates beyond the fixed `headers`.
    pub auth: Option<AuthKind>,
    /// `auth: cdp`: the API key's id.
    pub key_id: Option<Text>,
    /// `auth: cdp`: the API key's secret, or a file holding it.
    pub key_secret: Option<Text>,
    pub key_secret_file: Option<Text>,
    /// The account this facilitator settles `upto` payments from (its `/supported` upto kinds'
    /// `extra.facilitatorAddress`): the payer signs it, and only it can settle.
    pub address: Option<Text>,
}

/// `auth:` of a facilitator.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum AuthKind {
    /// Coinbase CDP: a JWT signed per call with the API key.
    Cdp,
}

/// `assets:` entries: tokens beyond the built-in USDC table.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawAsset {
    pub network: Text,
    pub address: Text,
    /// The token's EIP-712 domain; required for EIP-3009, unused by Permit2.
    pub name: Option<Text>,
    pub version: Option<Text>,
    pub decimals: u8,
    pub symbol: Option<Text>,
    /// `eip3009` (the default) or `permit2`.
    pub transfer: Option<Transfer>,
}

/// What unmatched requests get.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum DefaultAction {
    /// Proxied for free.
    #[default]
    Pass,
    /// 404.
    Deny,
}

/// `price:`: `"$0.001"`, `{amount, asset}` (atomic units), or metered: `{upto: "$0.10", min?}` or
/// `{upto: "100000", asset, min?}`.
#[derive(Debug)]
pub enum RawPrice {
    Usd(Text),
    Atomic {
        amount: Text,
        asset: Text,
    },
    /// `upto`: a maximum the payer authorises; the upstream says what each call cost. `asset` makes
    /// `upto` and `min` atomic units of it; without it they are dollar strings.
    Upto {
        max: Text,
        asset: Option<Text>,
        min: Option<Text>,
    },
    /// `batch-settlement`: each call adds `price` to the payer's voucher on a channel it deposited into
    /// once; `min_deposit` is the least deposit the payer is told to make. With `asset`, atomic units.
    Batch {
        price: Text,
        asset: Option<Text>,
        min_deposit: Option<Text>,
    },
}

impl<'de> Deserialize<'de> for RawPrice {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        #[derive(Deserialize)]
        #[serde(deny_unknown_fields)]
        struct Atomic {
            amount: Text,
            asset: Text,
        }
        #[derive(Deserialize)]
        #[serde(deny_unknown_fields)]
        struct Upto {
            upto: Text,
            asset: Option<Text>,
            min: Option<Text>,
        }
        #[derive(Deserialize)]
        #[serde(deny_unknown_fields)]
        struct Batch {
            batch: Text,
            asset: Option<Text>,
            min_deposit: Option<Text>,
        }
        #[derive(Deserialize)]
        #[serde(untagged)]
        enum Either {
            Usd(Text),
            Atomic(Atomic),
            Upto(Upto),
            Batch(Batch),
        }
        match Either::deserialize(d).map_err(|_| {
            D::Error::custom("price must be a dollar string like \"$0.001\", {amount: \"1000\", asset: \"eip155:8453/erc20:0x…\"} (atomic units), metered: {upto: \"$0.10\", min: \"$0.001\"}, or batch settlement: {batch: \"$0.0001\", min_deposit: \"$0.10\"} (min and min_deposit optional; with `asset:`, atomic units)")
        })? {
            Either::Usd(t) => Ok(RawPrice::Usd(t)),
            Either::Atomic(a) => Ok(RawPrice::Atomic { amount: a.amount, asset: a.asset }),
            Either::Upto(u) => Ok(RawPrice::Upto {
                max: u.upto,
                asset: u.asset,
                min: u.min,
            }),
            Either::Batch(b) => Ok(RawPrice::Batch {
                price: b.batch,
                asset: b.asset,
                min_deposit: b.min_deposit,
            }),
        }
    }
}

/// `routes:` entries.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawRoute {
    pub name: Option<Text>,
    pub methods: Option<Vec<Text>>,
    pub host: Option<Text>,
    pub path: Text,
    pub price: Option<RawPrice>,
    #[serde(default)]
    pub free: bool,
    pub accepts: Option<Vec<Text>>,
    pub pay_to: Option<Text>,
    pub description: Option<Text>,
    pub mime_type: Option<Text>,
    pub max_timeout_seconds: Option<u64>,
    pub upstream: Option<Text>,
    pub case_sensitive: Option<bool>,
    pub payment_identifier: Option<PaymentIdMode>,
    pub settle: Option<SettleMode>,
    pub verify: Option<VerifyMode>,
    pub mode: Option<Mode>,
    pub on_facilitator_error: Option<OnFacilitatorError>,
}
