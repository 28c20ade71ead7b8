//! Facilitator API bodies (x402-notes §6): `/verify`, `/settle`, `/supported`. Same shapes for v1 and v2.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::Version;

/// Body of `POST /verify` and `POST /settle`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct FacilitatorRequest {
    pub x402_version: Version,
    /// The client's payload, exactly as decoded from its header.
    pub payment_payload: Value,
    /// The server's own requirement that matched (never the client's copy).
    pub payment_requirements: Value,
}

impl FacilitatorRequest {
    /// The `/settle` request of an `upto` payment that cost `amount`: the same payment, with the
    /// requirement's `amount` (the maximum at `/verify`) replaced by the charge, as the spec has the
    /// resource server send it.
    pub fn charging(&self, amount: alloy::primitives::U256) -> FacilitatorRequest {
        let mut req = self.clone();
        if let Some(r) = req.payment_requirements.as_object_mut() {
            r.insert("amount".into(), Value::String(amount.to_string()));
        }
        req
    }

    /// Serialises the request once: the same bytes are hashed, sent to `/verify` and sent to `/settle`.
    pub fn encode(&self) -> EncodedRequest {
        use sha2::{Digest, Sha256};
        let body = serde_json::to_vec(self).unwrap_or_default();
        EncodedRequest {
            digest: Sha256::digest(&body).into(),
            body: body.into(),
        }
    }
}

/// A facilitator request as bytes on the wire, with its SHA-256, which identifies one payment on one
/// requirement.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EncodedRequest {
    pub body: bytes::Bytes,
    pub digest: [u8; 32],
}

/// Answer of `POST /verify`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct VerifyResponse {
    pub is_valid: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub invalid_reason: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub invalid_message: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub payer: Option<String>,
    /// Scheme-specific detail; `batch-settlement`: the channel's on-chain state.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub extra: Option<Value>,
}

impl VerifyResponse {
    /// A refusal with a reason string from §10.2 and a sentence for humans.
    pub fn invalid(reason: &str, message: impl Into<String>, payer: Option<String>) -> Self {
        VerifyResponse {
            is_valid: false,
            invalid_reason: Some(reason.to_owned()),
            invalid_message: Some(message.into()),
            payer,
            extra: None,
        }
    }
}

/// Answer of `POST /settle`; also the receipt the gateway base64-encodes into `PAYMENT-RESPONSE`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct SettleResponse {
    pub success: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error_reason: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error_message: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub payer: Option<String>,
    /// Transaction hash; `""` when nothing was sent.
    #[serde(default)]
    pub transaction: String,
    /// Same spelling as the request used.
    #[serde(default)]
    pub network: String,
    /// `upto`: what was charged, in atomic units (`"0"` when nothing was sent).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub amount: Option<String>,
    /// Scheme-specific detail; `batch-settlement`: the channel's state after a deposit or refund, and
    /// what this call charged.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub extra: Option<Value>,
}

impl SettleResponse {
    /// A failed settlement.
    pub fn failed(
        reason: &str,
        message: impl Into<String>,
        payer: Option<String>,
        network: String,
        transaction: String,
    ) -> Self {
        SettleResponse {
            success: false,
            error_reason: Some(reason.to_owned()),
            error_message: Some(message.into()),
            payer,
            transaction,
            network,
            amount: None,
            extra: None,
        }
    }

    /// A successful settlement in `transaction`.
    pub fn settled(payer: Option<String>, network: String, transaction: String) -> Self {
        SettleResponse {
            success: true,
            error_reason: None,
            error_message: None,
            payer,
            transaction,
            network,
            amount: None,
            extra: None,
        }
    }

    /// The same answer saying, if it succeeded, that it charged `amount` (`upto`; `None` leaves it as is).
    pub fn charged(mut self, amount: Option<alloy::primitives::U256>) -> Self {
        if let (true, Some(a)) = (self.success, amount) {
            self.amount = Some(a.to_string());
        }
        self
    }

    /// Whether the facilitator broadcast a transaction whose outcome it has not seen yet.
    pub fn is_pending(&self) -> bool {
        !self.success && self.error_reason.as_deref() == Some(super::reason::SETTLEMENT_PENDING)
    }
}

/// One (version, scheme, network) a facilitator can handle.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct SupportedKind {
    pub x402_version: Version,
    pub scheme: String,
    pub network: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub extra: Option<Value>,
}

/// Answer of `GET /supported`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct SupportedResponse {
    pub kinds: Vec<SupportedKind>,
    #[serde(default)]
    pub extensions: Vec<String>,
    #[serde(default)]
    pub signers: BTreeMap<String, Vec<String>>,
}
