//! `mode: shadow`: what a priced route would have done with a request, judged with the local checks only
//! (decode, offer, signature, terms, time window). Never claims, never calls the facilitator, never
//! settles: the request is proxied whatever the verdict.

use crate::gateway::decode::{self, PaymentError, Presented};
use crate::gateway::metrics::WouldDo;
use crate::gateway::verify;
use crate::rules::table::Pricing;
use crate::rules::window;

/// The verdict on a request's payment (`None`: it carried none), with the reason when it would be refused.
pub fn judge(
    pricing: &Pricing,
    payment: Option<Result<Presented, PaymentError>>,
    now: u64,
) -> (WouldDo, Option<String>) {
    let presented = match payment {
        None => return (WouldDo::Challenge, None),
        Some(Err(e)) => return (WouldDo::Refuse, Some(e.reason())),
        Some(Ok(p)) => p,
    };
    let checked = decode::match_offer(presented, &pricing.offers)
        .map_err(|e| e.reason())
        .and_then(|m| {
            // Shadow judges what the local checks of `exact` and `upto` can; other schemes' payloads fail
            // to parse here and count as would-refuse.
            let payment = m.exact_payment(&pricing.offers).map_err(|e| e.reason())?;
            let (offer, _) = verify::local(pricing, &m, &payment).map_err(|r| r.reason.to_owned())?;
            let max = offer.requirement.max_timeout_seconds;
            window::check_for_route(&payment, max, now).map_err(|r| r.reason.to_owned())
        });
    match checked {
        Ok(()) => (WouldDo::Accept, None),
        Err(reason) => (WouldDo::Refuse, Some(reason)),
    }
}
