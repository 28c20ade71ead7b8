//! Stage 1, decode: read the payment off a request (the v2 header wins over v1), decode it strictly, and
//! match it against the route's own offers (x402-notes §10.1 steps 1–2). No I/O.

use http::HeaderMap;
use serde::Deserialize;
use serde_json::Value;

use crate::protocol::codec::{self, DecodeError};
use crate::protocol::exact::{Rejection, Requirement, Transfer};
use crate::protocol::network::Network;
use crate::protocol::payment::Payment;
use crate::protocol::{reason, v1, v2, Version, HEADER_PAYMENT_SIGNATURE, HEADER_X_PAYMENT, SCHEME_EXACT};
use crate::rules::offer::Offer;

/// A payment header that was present, decoded to JSON.
#[derive(Debug, Clone)]
pub struct Presented {
    pub version: Version,
    /// The decoded payload, forwarded to the facilitator exactly as the client sent it.
    pub json: Value,
}

/// A payment matched to one of the route's offers.
#[derive(Debug, Clone)]
pub struct Matched {
    pub version: Version,
    /// Indexes into the route's offers this payment could be for (v1 names only a network, so several
    /// assets on one network are all candidates; the signature decides).
    pub candidates: Vec<usize>,
    pub json: Value,
    /// The payment's `payload`, as its scheme defines it.
    pub payload: Value,
    /// The v2 payload's `extensions` (v1 has none).
    pub extensions: Option<Value>,
}

impl Matched {
    /// The offer this payment names (v2), or the first it could be for (v1).
    pub fn offer<'o>(&self, offers: &'o [Offer]) -> Option<&'o Offer> {
        self.candidates.first().and_then(|&i| offers.get(i))
    }

    /// The payload as an `exact` (or `upto`) payment: v2 names its offer, which says how the tokens move;
    /// v1 clients only know EIP-3009.
    pub fn exact_payment(&self, offers: &[Offer]) -> Result<Payment, PaymentError> {
        let transfer = match self.version {
            Version::V2 => self.offer(offers).map(|o| o.requirement.transfer),
            Version::V1 => None,
        };
        Payment::parse(transfer.unwrap_or(Transfer::Eip3009), &self.payload).map_err(PaymentError::Rejected)
    }
}

/// Why a payment was refused before any verification.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PaymentError {
    #[error("{0}")]
    Decode(#[from] DecodeError),
    #[error("{0}")]
    Rejected(Rejection),
}

impl PaymentError {
    /// The reason string for the 402.
    pub fn reason(&self) -> String {
        match self {
            PaymentError::Decode(e) => format!("{}: {e}", reason::INVALID_PAYLOAD),
            PaymentError::Rejected(r) => r.reason.to_owned(),
        }
    }
}

/// The payment header of a request, if any: `PAYMENT-SIGNATURE` (v2) when present, else `X-PAYMENT` (v1).
pub fn read(headers: &HeaderMap) -> Option<Result<Presented, PaymentError>> {
    let (version, value) = match headers.get(HEADER_PAYMENT_SIGNATURE) {
        Some(v) => (Version::V2, v),
        None => (Version::V1, headers.get(HEADER_X_PAYMENT)?),
    };
    Some(
        codec::decode::<Value>(value.as_bytes())
            .map(|json| Presented { version, json })
            .map_err(PaymentError::from),
    )
}

/// Matches a presented payment against `offers`.
pub fn match_offer(p: Presented, offers: &[Offer]) -> Result<Matched, PaymentError> {
    let reject = |r: &'static str, m: String| PaymentError::Rejected(Rejection::new(r, m));
    let claimed = p.json.get("x402Version").and_then(Value::as_u64);
    let (candidates, payload, extensions) = match p.version {
        Version::V2 => {
            if claimed != Some(2) {
                return Err(reject(
                    reason::INVALID_VERSION,
                    "PAYMENT-SIGNATURE must carry an x402Version 2 payload".into(),
                ));
            }
            let pp = v2::PaymentPayload::deserialize(&p.json)
                .map_err(|e| reject(reason::INVALID_PAYLOAD, format!("not a v2 PaymentPayload: {e}")))?;
            // The 2.27 rule (x402-notes §10.1 step 2): every field equal and `extra` carrying our name and
            // version; typed comparison, so address case and integer spelling cannot split a match.
            let accepted = Requirement::from_v2(&pp.accepted).ok();
            let found = offers.iter().position(|o| Some(&o.requirement) == accepted.as_ref());
            let i = found.ok_or_else(|| {
                reject(
                    reason::NO_MATCHING_REQUIREMENTS,
                    "`accepted` is none of the offers in this resource's 402".into(),
                )
            })?;
            (vec![i], pp.payload, pp.extensions)
        }
        Version::V1 => {
            if claimed != Some(1) {
                return Err(reject(
                    reason::INVALID_VERSION,
                    "X-PAYMENT must carry an x402Version 1 payload".into(),
                ));
            }
            let pp = v1::PaymentPayload::deserialize(&p.json)
                .map_err(|e| reject(reason::INVALID_PAYLOAD, format!("not a v1 PaymentPayload: {e}")))?;
            let network = Network::parse(&pp.network);
            let c: Vec<usize> = offers
                .iter()
                .enumerate()
                // v1 clients pay with EIP-3009 only (Permit2 offers are not in the v1 body either).
                .filter(|(_, o)| {
                    pp.scheme == SCHEME_EXACT
                        && Some(o.requirement.network) == network
                        && o.requirement.transfer == Transfer::Eip3009
                })
                .map(|(i, _)| i)
                .collect();
            if c.is_empty() {
                return Err(reject(
                    reason::NO_MATCHING_REQUIREMENTS,
                    format!("no offer for scheme {:?} on network {:?}", pp.scheme, pp.network),
                ));
            }
            (c, pp.payload, None)
        }
    };
    Ok(Matched {
        version: p.version,
        candidates,
        json: p.json,
        payload,
        extensions,
    })
}

/// Whether a payment was made out for the terms of one of `offers` (v2: its `accepted` is one of them; v1:
/// an offer on its network asks its amount for its recipient). No signature work: this only chooses
/// between price tables, and the chosen one's checks all run afterwards.
pub fn quotes(p: &Presented, offers: &[Offer]) -> bool {
    let Ok(m) = match_offer(p.clone(), offers) else {
        return false;
    };
    // A v2 `accepted` equal to an offer is made out for exactly its terms.
    if m.version == Version::V2 {
        return true;
    }
    let Ok(payment) = m.exact_payment(offers) else {
        return false;
    };
    m.candidates
        .iter()
        .filter_map(|&i| offers.get(i))
        .any(|o| o.requirement.amount == payment.amount() && o.requirement.pay_to == payment.payee())
}
