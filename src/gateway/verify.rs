//! Stages 2 and 4, verify: locally first (the signature and terms against the route's own offers, so a
//! payment that cannot be valid never costs a claim or a facilitator call), then, once claimed, with the
//! facilitator (`/verify`: balance, nonce unused, simulation), unless the route says `verify: local`. A
//! contract wallet's signature (ERC-1271, EIP-6492) is judged only by the facilitator, whatever the route
//! says: nothing local can.

use alloy::primitives::Address;

use crate::gateway::decode::Matched;
use crate::gateway::facilitator::Remote;
use crate::gateway::metrics::{Verdict, Where};
use crate::gateway::refusal::Refusal;
use crate::protocol::exact::Rejection;
use crate::protocol::facilitator::EncodedRequest;
use crate::protocol::network::Network;
use crate::protocol::payment::Payment;
use crate::protocol::reason;
use crate::rules::offer::Offer;
use crate::rules::table::Pricing;
use crate::rules::verify::{check_payment_terms, Verified};

/// The refusal of a payment for `r`.
pub fn refuse(r: &Rejection) -> Refusal {
    Refusal::PaymentRequired {
        reason: Some(r.reason.to_owned()),
        receipt: None,
    }
}

/// The offer a matched payment pays, its payer and how the signature was proven. The signature names
/// the asset (EIP-712 `verifyingContract`), so the first candidate it verifies under is the one paid; when
/// none does, the first candidate's reason is reported.
pub fn local<'p>(
    pricing: &'p Pricing,
    matched: &Matched,
    payment: &Payment,
) -> Result<(&'p Offer, Verified), Rejection> {
    let mut first_err = None;
    for &i in &matched.candidates {
        let Some(offer) = pricing.offers.get(i) else { continue };
        match check_payment_terms(&offer.requirement, &offer.domain_separator, payment) {
            Ok(verified) => return Ok((offer, verified)),
            Err(e) => {
                first_err.get_or_insert(e);
            }
        }
    }
    Err(first_err.unwrap_or_else(|| Rejection::new(reason::NO_MATCHING_REQUIREMENTS, "no offer matched")))
}

/// The facilitators' `/verify` (for `upto`, only the one settling from `settler`): `Ok` with the
/// facilitator that said valid. Counted under `network`.
pub async fn remote(
    remote: &Remote,
    request: &EncodedRequest,
    network: Network,
    settler: Option<Address>,
) -> Result<usize, Refusal> {
    let shown = network.to_string();
    let count = |v| remote.metrics().verification(&shown, Where::Remote, v);
    let (v, via) = remote.verify(request, network, settler).await.map_err(|e| {
        count(Verdict::Error);
        Refusal::Facilitator {
            error: e,
            settling: false,
        }
    })?;
    if v.is_valid {
        count(Verdict::Valid);
        return Ok(via);
    }
    count(Verdict::Invalid);
    Err(Refusal::PaymentRequired {
        reason: Some(
            v.invalid_reason
                .unwrap_or_else(|| reason::UNEXPECTED_VERIFY_ERROR.to_owned()),
        ),
        receipt: None,
    })
}
