//! x402 v1 wire types (x402-notes §4): the JSON 402 body and the `X-PAYMENT` payload.

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use super::Version;

/// One way to pay, in v1 spelling. Every field the strict legacy clients require is always present.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct PaymentRequirements {
    pub scheme: String,
    /// A v1 network name such as `base-sepolia`.
    pub network: String,
    /// Atomic units, decimal string.
    pub max_amount_required: String,
    /// Absolute URL of the resource.
    pub resource: String,
    pub description: String,
    /// Required by the legacy client's schema even when empty.
    pub mime_type: String,
    pub pay_to: String,
    pub max_timeout_seconds: u64,
    pub asset: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub output_schema: Option<Value>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub extra: Option<Map<String, Value>>,
}

/// The v1 402 body.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct PaymentRequired {
    pub x402_version: Version,
    pub error: String,
    pub accepts: Vec<PaymentRequirements>,
}

/// A payment, base64-decoded from the `X-PAYMENT` header.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct PaymentPayload {
    pub x402_version: Version,
    pub scheme: String,
    pub network: String,
    pub payload: Value,
}
