//! x402 wire types (v1 and v2 side by side), the header codec, network names and the asset table.
//!
//! Layer 2. Everything here is plain data: no I/O, and nothing from the crate but `core`. Wire types keep the JSON exactly as the spec spells it so they
//! round-trip; typed values (addresses, integers) are parsed out of them by [`exact`].

pub mod assets;
pub mod batch;
pub mod cdp;
pub mod codec;
pub mod erc6492;
pub mod exact;
pub mod facilitator;
pub mod network;
pub mod payment;
pub mod payment_id;
pub mod permit2;
pub mod v1;
pub mod v2;

/// The fixed-price scheme.
pub const SCHEME_EXACT: &str = "exact";
/// The metered scheme: the payer authorises a maximum, the server settles what the call cost.
pub const SCHEME_UPTO: &str = "upto";
/// Wire name of the `batch-settlement` scheme.
pub const SCHEME_BATCH: &str = "batch-settlement";

/// Request header carrying a v2 payment.
pub const HEADER_PAYMENT_SIGNATURE: &str = "payment-signature";
/// Request header carrying a v1 payment.
pub const HEADER_X_PAYMENT: &str = "x-payment";
/// Response header carrying the v2 challenge.
pub const HEADER_PAYMENT_REQUIRED: &str = "payment-required";
/// Response header carrying the v2 receipt.
pub const HEADER_PAYMENT_RESPONSE: &str = "payment-response";
/// Response header carrying the v1 receipt.
pub const HEADER_X_PAYMENT_RESPONSE: &str = "x-payment-response";

/// Protocol version of a payment or a facilitator exchange.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
#[serde(into = "u8", try_from = "u8")]
pub enum Version {
    /// x402 v1: `X-PAYMENT`, v1 network names, `maxAmountRequired`.
    V1,
    /// x402 v2: `PAYMENT-SIGNATURE`, CAIP-2 networks, `accepted`.
    V2,
}

impl Version {
    /// The response header that carries a receipt in this version.
    pub fn receipt_header(self) -> &'static str {
        match self {
            Version::V1 => HEADER_X_PAYMENT_RESPONSE,
            Version::V2 => HEADER_PAYMENT_RESPONSE,
        }
    }
}

impl From<Version> for u8 {
    fn from(v: Version) -> u8 {
        match v {
            Version::V1 => 1,
            Version::V2 => 2,
        }
    }
}

impl TryFrom<u8> for Version {
    type Error = String;
    fn try_from(v: u8) -> Result<Self, String> {
        match v {
            1 => Ok(Version::V1),
            2 => Ok(Version::V2),
            other => Err(format!("unsupported x402Version {other} (this server speaks 1 and 2)")),
        }
    }
}

/// Reason strings, from the v2 TS column of x402-notes §10.2. Passed to clients as-is.
pub mod reason {
    pub const INVALID_SCHEME: &str = "invalid_exact_evm_scheme";
    pub const NETWORK_MISMATCH: &str = "invalid_exact_evm_network_mismatch";
    pub const INVALID_NETWORK: &str = "invalid_network";
    pub const MISSING_EIP712_DOMAIN: &str = "invalid_exact_evm_missing_eip712_domain";
    pub const INVALID_SIGNATURE: &str = "invalid_exact_evm_signature";
    pub const RECIPIENT_MISMATCH: &str = "invalid_exact_evm_recipient_mismatch";
    pub const VALID_BEFORE: &str = "invalid_exact_evm_payload_authorization_valid_before";
    pub const VALID_AFTER: &str = "invalid_exact_evm_payload_authorization_valid_after";
    pub const VALUE_MISMATCH: &str = "invalid_exact_evm_payload_authorization_value_mismatch";
    pub const INSUFFICIENT_BALANCE: &str = "invalid_exact_evm_insufficient_balance";
    pub const NONCE_ALREADY_USED: &str = "invalid_exact_evm_nonce_already_used";
    pub const TOKEN_NAME_MISMATCH: &str = "invalid_exact_evm_token_name_mismatch";
    pub const TOKEN_VERSION_MISMATCH: &str = "invalid_exact_evm_token_version_mismatch";
    pub const SIMULATION_FAILED: &str = "invalid_exact_evm_transaction_simulation_failed";
    pub const TRANSACTION_FAILED: &str = "invalid_exact_evm_transaction_failed";
    pub const SETTLEMENT_PENDING: &str = "settlement_pending";
    pub const INVALID_PAYLOAD: &str = "invalid_payload";
    pub const INVALID_REQUIREMENTS: &str = "invalid_payment_requirements";
    pub const INVALID_VERSION: &str = "invalid_x402_version";
    pub const NO_MATCHING_REQUIREMENTS: &str = "No matching payment requirements";
    pub const UNEXPECTED_VERIFY_ERROR: &str = "unexpected_verify_error";
    // Permit2 (the same strings in the TS, Go and Python SDKs).
    pub const PERMIT2_SPENDER: &str = "invalid_permit2_spender";
    pub const PERMIT2_RECIPIENT_MISMATCH: &str = "invalid_permit2_recipient_mismatch";
    pub const PERMIT2_DEADLINE_EXPIRED: &str = "permit2_deadline_expired";
    pub const PERMIT2_NOT_YET_VALID: &str = "permit2_not_yet_valid";
    pub const PERMIT2_AMOUNT_MISMATCH: &str = "permit2_amount_mismatch";
    pub const PERMIT2_TOKEN_MISMATCH: &str = "permit2_token_mismatch";
    pub const PERMIT2_SIGNATURE: &str = "invalid_permit2_signature";
    /// The payer never approved Permit2 for the token: the resource server answers HTTP 412.
    pub const PERMIT2_ALLOWANCE_REQUIRED: &str = "permit2_allowance_required";
    pub const PERMIT2_SIMULATION_FAILED: &str = "permit2_simulation_failed";
    pub const PERMIT2_INSUFFICIENT_BALANCE: &str = "permit2_insufficient_balance";
    pub const PERMIT2_INVALID_NONCE: &str = "permit2_invalid_nonce";
    // `upto` (the TS SDK's strings).
    pub const UPTO_INVALID_SCHEME: &str = "invalid_upto_evm_scheme";
    pub const UPTO_FACILITATOR_MISMATCH: &str = "upto_facilitator_mismatch";
    pub const UPTO_SETTLEMENT_EXCEEDS_AMOUNT: &str = "invalid_upto_evm_payload_settlement_exceeds_amount";
    pub const UPTO_TRANSACTION_FAILED: &str = "invalid_upto_evm_transaction_failed";
    /// A contract wallet's signature from an address with no code and no EIP-6492 deployment (Python SDK).
    pub const UNDEPLOYED_SMART_WALLET: &str = "invalid_exact_evm_payload_undeployed_smart_wallet";
    /// A counterfactual (EIP-6492) payer whose factory the facilitator does not deploy from.
    pub const EIP6492_FACTORY_NOT_ALLOWED: &str = "eip6492_factory_not_allowed";
    /// The counterfactual payer's deployment failed; the payment itself was never sent.
    pub const SMART_WALLET_DEPLOYMENT_FAILED: &str = "smart_wallet_deployment_failed";

    /// Refusals every reference facilitator makes before it broadcasts anything (signature, balance,
    /// nonce, time window, allowance, recipient, amount, the scheme and network, and the simulation a
    /// broadcast is preceded by), in each SDK's spelling (x402-notes §10.2). A failed `/settle` with one of
    /// these and no transaction moved nothing; any other failure may have been broadcast.
    const BEFORE_BROADCAST: &[&str] = &[
        INVALID_SCHEME,
        "unsupported_scheme",
        "invalid_scheme",
        NETWORK_MISMATCH,
        INVALID_NETWORK,
        "network_mismatch",
        MISSING_EIP712_DOMAIN,
        "missing_eip712_domain",
        INVALID_SIGNATURE,
        "invalid_exact_evm_payload_signature",
        "invalid_exact_evm_payload_missing_signature",
        "invalid_exact_evm_payload_signature_format",
        "invalid_exact_evm_failed_to_verify_signature",
        UNDEPLOYED_SMART_WALLET,
        EIP6492_FACTORY_NOT_ALLOWED,
        SMART_WALLET_DEPLOYMENT_FAILED,
        RECIPIENT_MISMATCH,
        "invalid_exact_evm_payload_recipient_mismatch",
        VALID_BEFORE,
        VALID_AFTER,
        "payment_expired",
        VALUE_MISMATCH,
        "invalid_exact_evm_payload_authorization_value",
        "invalid_exact_evm_authorization_value",
        INSUFFICIENT_BALANCE,
        "insufficient_funds",
        NONCE_ALREADY_USED,
        TOKEN_NAME_MISMATCH,
        TOKEN_VERSION_MISMATCH,
        "invalid_exact_evm_eip3009_not_supported",
        SIMULATION_FAILED,
        INVALID_PAYLOAD,
        INVALID_REQUIREMENTS,
        INVALID_VERSION,
        PERMIT2_SPENDER,
        PERMIT2_RECIPIENT_MISMATCH,
        PERMIT2_DEADLINE_EXPIRED,
        PERMIT2_NOT_YET_VALID,
        PERMIT2_AMOUNT_MISMATCH,
        PERMIT2_TOKEN_MISMATCH,
        PERMIT2_SIGNATURE,
        PERMIT2_ALLOWANCE_REQUIRED,
        PERMIT2_SIMULATION_FAILED,
        PERMIT2_INSUFFICIENT_BALANCE,
        PERMIT2_INVALID_NONCE,
        "permit2_invalid_amount",
        "permit2_invalid_destination",
        "permit2_invalid_owner",
        "permit2_payment_too_early",
        UPTO_INVALID_SCHEME,
        UPTO_FACILITATOR_MISMATCH,
        UPTO_SETTLEMENT_EXCEEDS_AMOUNT,
    ];

    /// The transaction itself failed on chain (it was mined and reverted, or dropped), in each SDK's
    /// spelling: with that transaction named, nothing moved.
    const REVERTED: &[&str] = &[
        TRANSACTION_FAILED,
        UPTO_TRANSACTION_FAILED,
        "transaction_failed",
        "invalid_transaction_state",
    ];

    /// Whether `r` is a refusal made before anything was broadcast.
    pub fn refused_before_broadcast(r: &str) -> bool {
        BEFORE_BROADCAST.contains(&r)
    }

    /// Whether `r` says the named transaction failed on chain.
    pub fn reverted(r: &str) -> bool {
        REVERTED.contains(&r)
    }
}
