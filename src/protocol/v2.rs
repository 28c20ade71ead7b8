//! x402 v2 wire types (x402-notes §5): the `PAYMENT-REQUIRED` challenge and the `PAYMENT-SIGNATURE` payload.

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use super::Version;

/// What is being paid for (`PaymentRequired.resource`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ResourceInfo {
    /// The URL the client asked for.
    pub url: String,
    /// Human-readable description; the reference server always sends it, `""` when unset.
    #[serde(default)]
    pub description: String,
    /// MIME type of the paid response; `""` when unset.
    #[serde(default)]
    pub mime_type: String,
}

/// One way to pay (`PaymentRequired.accepts[i]`, and `PaymentPayload.accepted`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct PaymentRequirements {
    pub scheme: String,
    /// CAIP-2 network id.
    pub network: String,
    /// Atomic units, decimal string.
    pub amount: String,
    pub asset: String,
    pub pay_to: String,
    pub max_timeout_seconds: u64,
    /// EVM exact: `{name, version}` of the token's EIP-712 domain.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub extra: Option<Map<String, Value>>,
}

/// The challenge, base64-encoded into the `PAYMENT-REQUIRED` header.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct PaymentRequired {
    pub x402_version: Version,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    pub resource: ResourceInfo,
    pub accepts: Vec<PaymentRequirements>,
    /// Extensions the server declares, keyed by name (e.g. `payment-identifier`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub extensions: Option<Map<String, Value>>,
}

/// A payment, base64-decoded from the `PAYMENT-SIGNATURE` header.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct PaymentPayload {
    pub x402_version: Version,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub resource: Option<Value>,
    /// The requirement the client chose, echoed back.
    pub accepted: PaymentRequirements,
    /// Scheme-specific; for exact on EVM see [`super::exact::ExactPayload`].
    pub payload: Value,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub extensions: Option<Value>,
}
