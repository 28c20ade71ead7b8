//! A payment's payload, whichever way it moves the tokens: EIP-3009, or Permit2 (`exact` or `upto`). What the
//! requirement's `extra.assetTransferMethod` says decides how the payload is read.

use alloy::primitives::{Address, U256};
use serde_json::Value;

use super::exact::{AuthorizationId, ExactPayload, Rejection, Transfer};
use super::network::Network;
use super::permit2::Permit2Payload;

/// A typed `exact` payload.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Payment {
    Eip3009(ExactPayload),
    Permit2(Permit2Payload),
}

impl Payment {
    /// Reads the scheme `payload` of a payment made for a requirement with `transfer`.
    pub fn parse(transfer: Transfer, payload: &Value) -> Result<Self, Rejection> {
        Ok(match transfer {
            Transfer::Eip3009 => Payment::Eip3009(ExactPayload::parse(payload)?),
            Transfer::Permit2 => Payment::Permit2(Permit2Payload::parse(payload)?),
        })
    }

    /// The scheme `payload` a payer sends.
    pub fn to_json(&self) -> Value {
        match self {
            Payment::Eip3009(p) => p.to_json(),
            Payment::Permit2(p) => p.to_json(),
        }
    }

    /// Who pays (as the payload claims it; the signature check proves it).
    pub fn payer(&self) -> Address {
        match self {
            Payment::Eip3009(p) => p.authorization.from,
            Payment::Permit2(p) => p.authorization.from,
        }
    }

    /// The atomic amount authorised.
    pub fn amount(&self) -> U256 {
        match self {
            Payment::Eip3009(p) => p.authorization.value,
            Payment::Permit2(p) => p.authorization.amount,
        }
    }

    /// Who is paid.
    pub fn payee(&self) -> Address {
        match self {
            Payment::Eip3009(p) => p.authorization.to,
            Payment::Permit2(p) => p.authorization.to,
        }
    }

    /// What makes it single-use on `network` when paid in `asset`.
    pub fn id(&self, network: Network, asset: Address) -> AuthorizationId {
        match self {
            Payment::Eip3009(p) => AuthorizationId::of(network, asset, &p.authorization),
            Payment::Permit2(p) => p.authorization.id(network),
        }
    }
}
