//! The `exact` scheme on EVM with EIP-3009 (x402-notes §8): typed requirement, typed payload and the
//! EIP-712 digest a payer signs. Parsing here is strict: addresses, integers and hashes are checked once,
//! so later stages only see valid values.

use std::borrow::Cow;

use alloy::primitives::{Address, Bytes, B256, U256};
use alloy::sol;
use alloy::sol_types::{Eip712Domain, SolStruct};
use serde::Deserialize;
use serde_json::{json, Map, Value};

use super::network::Network;
use super::{reason, v1, v2, Version, SCHEME_BATCH, SCHEME_EXACT, SCHEME_UPTO};

sol! {
    /// EIP-3009's signed message; field order is part of the type hash.
    struct TransferWithAuthorization {
        address from;
        address to;
        uint256 value;
        uint256 validAfter;
        uint256 validBefore;
        bytes32 nonce;
    }
}

/// A refusal with a reason string from x402-notes §10.2 (sent as-is) and a sentence for humans.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{reason}: {message}")]
pub struct Rejection {
    /// Machine-readable reason, e.g. `invalid_exact_evm_signature`.
    pub reason: &'static str,
    /// What was wrong, for the person reading the logs or the 402.
    pub message: String,
}

impl Rejection {
    /// A rejection with the given reason.
    pub fn new(reason: &'static str, message: impl Into<String>) -> Self {
        Rejection {
            reason,
            message: message.into(),
        }
    }
}

/// `extra.assetTransferMethod` of a requirement paid through Permit2.
pub const PERMIT2_TRANSFER_METHOD: &str = "permit2";

/// How an `exact` payment moves the tokens (`extra.assetTransferMethod`; `transfer:` of a configured asset).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Transfer {
    /// EIP-3009 `transferWithAuthorization`, signed under the token's own EIP-712 domain (USDC-like tokens).
    #[default]
    Eip3009,
    /// Permit2 through the x402 exact proxy: any ERC-20 the payer approved to Permit2 (x402-notes §9.1).
    Permit2,
}

/// How much of the amount is taken.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash)]
pub enum Scheme {
    /// `exact`: the amount, no more, no less.
    #[default]
    Exact,
    /// `upto` (x402-notes §14): the amount is a maximum; the server settles what the call cost, through
    /// the Permit2 upto proxy, from `facilitator` (the only account the payer lets settle it).
    Upto { facilitator: Address },
    /// `batch-settlement` (x402 v2): `amount` is the most one call adds to the payer's voucher; the payer
    /// deposits into a channel under these terms and each call is paid by a signed voucher.
    Batch(BatchTerms),
}

impl Scheme {
    /// The wire name.
    pub fn name(&self) -> &'static str {
        match self {
            Scheme::Exact => SCHEME_EXACT,
            Scheme::Upto { .. } => SCHEME_UPTO,
            Scheme::Batch(_) => SCHEME_BATCH,
        }
    }
}

/// The channel terms a `batch-settlement` offer fixes beyond the usual requirement (its `extra`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct BatchTerms {
    /// Signs claim batches and refunds for the receiver (`extra.receiverAuthorizer`); never zero.
    pub receiver_authorizer: Address,
    /// Seconds between a payer's withdraw request and its completion (`extra.withdrawDelay`).
    pub withdraw_delay: u64,
    /// The deposit a client is told to make at least (`extra.minDeposit`), in atomic units.
    pub min_deposit: U256,
}

/// A typed requirement: what the server asks for, independent of the protocol version.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Requirement {
    /// `exact`, or `upto` (then `amount` is the maximum and `transfer` is Permit2).
    pub scheme: Scheme,
    pub network: Network,
    pub asset: Address,
    pub pay_to: Address,
    /// Atomic units of `asset`.
    pub amount: U256,
    pub max_timeout_seconds: u64,
    /// The token's EIP-712 domain name.
    pub eip712_name: String,
    /// The token's EIP-712 domain version.
    pub eip712_version: String,
    /// How the tokens move. Permit2 needs no token domain (`eip712_name`/`version` may then be empty).
    pub transfer: Transfer,
}

impl Requirement {
    fn extra(&self) -> Map<String, Value> {
        let mut m = Map::new();
        if self.transfer == Transfer::Permit2 {
            m.insert("assetTransferMethod".into(), json!(PERMIT2_TRANSFER_METHOD));
        }
        match self.scheme {
            Scheme::Exact => {}
            Scheme::Upto { facilitator } => {
                m.insert("facilitatorAddress".into(), json!(facilitator.to_string()));
            }
            Scheme::Batch(t) => {
                m.insert("receiverAuthorizer".into(), json!(t.receiver_authorizer.to_string()));
                m.insert("withdrawDelay".into(), json!(t.withdraw_delay));
                m.insert("minDeposit".into(), json!(t.min_deposit.to_string()));
            }
        }
        // A Permit2 payment does not use them; clients only read them for a token's own EIP-2612 permit.
        if !self.eip712_name.is_empty() || self.transfer == Transfer::Eip3009 {
            m.insert("name".into(), json!(self.eip712_name));
            m.insert("version".into(), json!(self.eip712_version));
        }
        m
    }

    /// `upto`: the account the payer lets settle it; `None` for `exact`, which anyone may settle.
    pub fn settler(&self) -> Option<Address> {
        match self.scheme {
            Scheme::Exact | Scheme::Batch(_) => None,
            Scheme::Upto { facilitator } => Some(facilitator),
        }
    }

    /// The v2 wire form.
    pub fn to_v2(&self) -> v2::PaymentRequirements {
        v2::PaymentRequirements {
            scheme: self.scheme.name().into(),
            network: self.network.caip2(),
            amount: self.amount.to_string(),
            asset: self.asset.to_string(),
            pay_to: self.pay_to.to_string(),
            max_timeout_seconds: self.max_timeout_seconds,
            extra: Some(self.extra()),
        }
    }

    /// The v1 wire form, or `None` when legacy clients could not pay it: the network has no v1 name, or
    /// the payment goes through Permit2 (v1 knows only EIP-3009).
    pub fn to_v1(&self, meta: &v2::ResourceInfo) -> Option<v1::PaymentRequirements> {
        if self.transfer != Transfer::Eip3009 || matches!(self.scheme, Scheme::Batch(_)) {
            return None;
        }
        Some(self.v1_named(self.network.v1_name()?.to_owned(), meta))
    }

    /// The wire form for a protocol version, as JSON (what a facilitator receives). A v1 requirement on a
    /// chain without a v1 name falls back to CAIP-2, which our own facilitator understands.
    pub fn to_wire(&self, version: Version, meta: &v2::ResourceInfo) -> Value {
        let value = match version {
            Version::V2 => serde_json::to_value(self.to_v2()),
            Version::V1 => serde_json::to_value(self.v1_named(self.network.wire_name(Version::V1), meta)),
        };
        value.unwrap_or(Value::Null)
    }

    fn v1_named(&self, network: String, meta: &v2::ResourceInfo) -> v1::PaymentRequirements {
        v1::PaymentRequirements {
            scheme: SCHEME_EXACT.into(),
            network,
            max_amount_required: self.amount.to_string(),
            resource: meta.url.clone(),
            description: meta.description.clone(),
            mime_type: meta.mime_type.clone(),
            pay_to: self.pay_to.to_string(),
            max_timeout_seconds: self.max_timeout_seconds,
            asset: self.asset.to_string(),
            output_schema: None,
            extra: Some(self.extra()),
        }
    }

    /// Parses a v2 requirement (as a facilitator receives it).
    pub fn from_v2(r: &v2::PaymentRequirements) -> Result<Self, Rejection> {
        Self::from_parts(
            &r.scheme,
            &r.network,
            &r.amount,
            &r.asset,
            &r.pay_to,
            r.max_timeout_seconds,
            r.extra.as_ref(),
        )
    }

    /// Parses a v1 requirement (as a facilitator receives it). v1 knows only EIP-3009.
    pub fn from_v1(r: &v1::PaymentRequirements) -> Result<Self, Rejection> {
        let parsed = Self::from_parts(
            &r.scheme,
            &r.network,
            &r.max_amount_required,
            &r.asset,
            &r.pay_to,
            r.max_timeout_seconds,
            r.extra.as_ref(),
        )?;
        if parsed.transfer != Transfer::Eip3009 {
            return Err(Rejection::new(
                reason::INVALID_REQUIREMENTS,
                "x402 v1 payments are EIP-3009 only; Permit2 needs x402 v2",
            ));
        }
        Ok(parsed)
    }

    fn from_parts(
        scheme: &str,
        network: &str,
        amount: &str,
        asset: &str,
        pay_to: &str,
        max_timeout_seconds: u64,
        extra: Option<&Map<String, Value>>,
    ) -> Result<Self, Rejection> {
        let bad = |what: &str| Rejection::new(reason::INVALID_REQUIREMENTS, what.to_owned());
        let field = |k: &str| extra.and_then(|e| e.get(k)).and_then(Value::as_str).map(str::to_owned);
        let number = |k: &str| {
            let v = extra.and_then(|e| e.get(k))?;
            v.as_u64().or_else(|| v.as_str().and_then(|s| s.parse().ok()))
        };
        let scheme = match scheme {
            SCHEME_BATCH => Scheme::Batch(BatchTerms {
                receiver_authorizer: field("receiverAuthorizer")
                    .as_deref()
                    .and_then(parse_address)
                    .filter(|a| !a.is_zero())
                    .ok_or_else(|| {
                        bad("a batch-settlement requirement needs extra.receiverAuthorizer, a non-zero address")
                    })?,
                withdraw_delay: number("withdrawDelay")
                    .ok_or_else(|| bad("a batch-settlement requirement needs extra.withdrawDelay, in seconds"))?,
                min_deposit: field("minDeposit")
                    .as_deref()
                    .and_then(parse_decimal)
                    .unwrap_or_default(),
            }),
            SCHEME_EXACT => Scheme::Exact,
            SCHEME_UPTO => Scheme::Upto {
                facilitator: field("facilitatorAddress")
                    .as_deref()
                    .and_then(parse_address)
                    .ok_or_else(|| bad("an upto requirement needs extra.facilitatorAddress, a 0x-prefixed address"))?,
            },
            _ => {
                return Err(Rejection::new(
                    reason::INVALID_SCHEME,
                    format!("scheme {scheme:?} is not supported; \"exact\", \"upto\" or \"batch-settlement\""),
                ))
            }
        };
        let network = Network::parse(network).ok_or_else(|| {
            Rejection::new(
                reason::INVALID_NETWORK,
                format!("network {network:?} is not an EVM network this server knows"),
            )
        })?;
        // `upto` always moves the tokens through Permit2.
        let transfer = match (field("assetTransferMethod").as_deref(), scheme) {
            (None, Scheme::Upto { .. }) | (Some(PERMIT2_TRANSFER_METHOD), _) => Transfer::Permit2,
            (None | Some("eip3009"), Scheme::Exact | Scheme::Batch(_)) => Transfer::Eip3009,
            (Some("eip3009"), Scheme::Upto { .. }) => return Err(bad("upto is paid through Permit2, not EIP-3009")),
            (Some(other), _) => {
                return Err(bad(&format!(
                    "extra.assetTransferMethod {other:?} is not supported; \"eip3009\" or \"permit2\""
                )))
            }
        };
        let (eip712_name, eip712_version) = match (field("name"), field("version"), transfer) {
            (Some(n), Some(v), _) => (n, v),
            (_, _, Transfer::Permit2) => (String::new(), String::new()),
            _ => {
                return Err(Rejection::new(
                    reason::MISSING_EIP712_DOMAIN,
                    "requirement extra must carry the token's EIP-712 name and version",
                ))
            }
        };
        Ok(Requirement {
            scheme,
            network,
            asset: parse_address(asset).ok_or_else(|| bad("asset is not a 0x-prefixed 20-byte address"))?,
            pay_to: parse_address(pay_to).ok_or_else(|| bad("payTo is not a 0x-prefixed 20-byte address"))?,
            amount: parse_decimal(amount).ok_or_else(|| bad("amount is not a decimal integer string"))?,
            max_timeout_seconds,
            eip712_name,
            eip712_version,
            transfer,
        })
    }

    /// The EIP-712 domain the token signs under.
    pub fn domain(&self) -> Eip712Domain {
        Eip712Domain::new(
            Some(Cow::Owned(self.eip712_name.clone())),
            Some(Cow::Owned(self.eip712_version.clone())),
            Some(U256::from(self.network.chain_id)),
            Some(self.asset),
            None,
        )
    }

    /// The digest a payer signs for `auth` under this requirement's domain.
    pub fn signing_hash(&self, auth: &Authorization) -> B256 {
        signing_hash(&self.domain().separator(), auth)
    }
}

/// The EIP-712 digest of `auth` under a domain whose separator is already known (`0x1901 ‖ separator ‖
/// hashStruct`); the gateway computes each offer's separator once, at config time.
pub fn signing_hash(domain_separator: &B256, auth: &Authorization) -> B256 {
    eip712_digest(domain_separator, &auth.to_sol().eip712_hash_struct())
}

/// EIP-712's digest, `keccak256(0x1901 ‖ domain separator ‖ hashStruct)`: what every payer signs.
pub fn eip712_digest(domain_separator: &B256, struct_hash: &B256) -> B256 {
    let mut buf = [0u8; 66];
    buf[..2].copy_from_slice(&[0x19, 0x01]);
    buf[2..34].copy_from_slice(domain_separator.as_slice());
    buf[34..].copy_from_slice(struct_hash.as_slice());
    alloy::primitives::keccak256(buf)
}

/// One authorization's identity: the chain refuses a nonce used twice for the same (token, payer), so this
/// is what makes a payment single-use, in the gateway's claims and in the facilitator's settlements alike.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct AuthorizationId {
    pub network: Network,
    pub asset: Address,
    pub payer: Address,
    pub nonce: B256,
}

impl AuthorizationId {
    /// The identity of `auth` paying in `asset` on `network`.
    pub fn of(network: Network, asset: Address, auth: &Authorization) -> Self {
        AuthorizationId {
            network,
            asset,
            payer: auth.from,
            nonce: auth.nonce,
        }
    }
}

/// The EIP-3009 authorization a payer signed.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Authorization {
    pub from: Address,
    pub to: Address,
    pub value: U256,
    pub valid_after: U256,
    pub valid_before: U256,
    pub nonce: B256,
}

impl Authorization {
    fn to_sol(&self) -> TransferWithAuthorization {
        TransferWithAuthorization {
            from: self.from,
            to: self.to,
            value: self.value,
            validAfter: self.valid_after,
            validBefore: self.valid_before,
            nonce: self.nonce,
        }
    }
}

/// The `payload` of an exact EVM payment: a signature and the authorization it covers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExactPayload {
    pub signature: Bytes,
    pub authorization: Authorization,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct WireAuthorization {
    from: String,
    to: String,
    value: String,
    valid_after: String,
    valid_before: String,
    nonce: String,
}

#[derive(Deserialize)]
struct WireExact {
    signature: String,
    authorization: WireAuthorization,
}

impl ExactPayload {
    /// Parses the scheme payload strictly (x402-notes §8.1 formats).
    pub fn parse(payload: &Value) -> Result<Self, Rejection> {
        let bad = |what: String| Rejection::new(reason::INVALID_PAYLOAD, what);
        let w = WireExact::deserialize(payload)
            .map_err(|e| bad(format!("exact EVM payload must be {{signature, authorization:{{from,to,value,validAfter,validBefore,nonce}}}}: {e}")))?;
        let a = &w.authorization;
        let addr = |name: &str, s: &str| {
            parse_address(s).ok_or_else(|| bad(format!("authorization.{name} is not a 0x-prefixed 20-byte address")))
        };
        let int = |name: &str, s: &str| {
            parse_decimal(s).ok_or_else(|| bad(format!("authorization.{name} is not a decimal integer string")))
        };
        let nonce = parse_hex(&a.nonce)
            .filter(|b| b.len() == 32)
            .map(|b| B256::from_slice(&b))
            .ok_or_else(|| bad("authorization.nonce is not 0x + 32 bytes of hex".into()))?;
        let signature = parse_hex(&w.signature).ok_or_else(|| bad("signature is not 0x-prefixed hex".into()))?;
        Ok(ExactPayload {
            signature: Bytes::from(signature),
            authorization: Authorization {
                from: addr("from", &a.from)?,
                to: addr("to", &a.to)?,
                value: int("value", &a.value)?,
                valid_after: int("validAfter", &a.valid_after)?,
                valid_before: int("validBefore", &a.valid_before)?,
                nonce,
            },
        })
    }

    /// The wire JSON of this payload.
    pub fn to_json(&self) -> Value {
        let a = &self.authorization;
        json!({
            "signature": self.signature.to_string(),
            "authorization": {
                "from": a.from.to_string(),
                "to": a.to.to_string(),
                "value": a.value.to_string(),
                "validAfter": a.valid_after.to_string(),
                "validBefore": a.valid_before.to_string(),
                "nonce": a.nonce.to_string(),
            }
        })
    }
}

/// `0x` + 40 hex digits, any case.
pub fn parse_address(s: &str) -> Option<Address> {
    let hex = s.strip_prefix("0x")?;
    if hex.len() != 40 {
        return None;
    }
    hex.parse().ok()
}

/// Decimal digits only (no sign, no exponent, no whitespace), fitting in 256 bits.
pub fn parse_decimal(s: &str) -> Option<U256> {
    if s.is_empty() || s.len() > 78 || !s.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    U256::from_str_radix(s, 10).ok()
}

fn parse_hex(s: &str) -> Option<Vec<u8>> {
    let hex = s.strip_prefix("0x")?;
    alloy::hex::decode(hex).ok()
}
