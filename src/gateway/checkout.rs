//! The paid request's way in: decode and match the payment ([`decode`]), then hand it to the server of the
//! scheme its offer names (the seam: [`scheme`]). For `exact` and `upto`, stage by stage: verify it locally
//! ([`verify::local`]), claim the authorization ([`claims`]), verify it with the facilitator
//! ([`verify::remote`]), and settle first on `settle: before` routes ([`settle`]). Each refusal is typed;
//! nothing here writes HTTP.
//!
//! [`scheme`]: crate::gateway::scheme
//!
//! [`decode`]: crate::gateway::decode
//! [`claims`]: crate::gateway::claims
//! [`settle`]: crate::gateway::settle

use alloy::primitives::Address;
use async_trait::async_trait;

use crate::gateway::batch::BatchServer;
use crate::gateway::claims::{ClaimRefusal, ClaimState, ClaimTicket};
use crate::gateway::decode::{self, Matched, Presented};
use crate::gateway::facilitator::{no_settler, FacilitatorError};
use crate::gateway::fault::{self, Point};
use crate::gateway::idempotency;
use crate::gateway::metrics::{Verdict, Where};
use crate::gateway::refusal::Refusal;
use crate::gateway::scheme::{Admission, Checkout, SchemeServer};
use crate::gateway::settle::{settle, Admitted, ExactHold, Metered, Resolver};
use crate::gateway::verify;
use crate::protocol::exact::{AuthorizationId, Requirement, Scheme};
use crate::protocol::facilitator::{EncodedRequest, FacilitatorRequest, SettleResponse};
use crate::protocol::payment::Payment;
use crate::protocol::{reason, Version};
use crate::rules::challenge::resource;
use crate::rules::table::{OnFacilitatorError, Pricing, SettleMode, VerifyMode};
use crate::rules::verify::Proof;
use crate::rules::window;

/// Refuses a payment for what decoding it found.
fn undecodable(e: &decode::PaymentError) -> Refusal {
    Refusal::PaymentRequired {
        reason: Some(e.reason()),
        receipt: None,
    }
}

impl Checkout<'_> {
    /// Runs a presented payment through every check of the scheme of the offer it names; on success the
    /// payment is held for this request.
    pub async fn admit(&self, presented: Presented, pricing: &Pricing, url: &str) -> Result<Admission, Refusal> {
        let matched = decode::match_offer(presented, &pricing.offers).map_err(|e| undecodable(&e))?;
        let Some(offer) = matched.offer(&pricing.offers) else {
            return Err(Refusal::PaymentRequired {
                reason: Some(reason::NO_MATCHING_REQUIREMENTS.to_owned()),
                receipt: None,
            });
        };
        server(&offer.requirement.scheme)
            .admit(self, matched, pricing, url)
            .await
    }
}

/// The server for a scheme: the one place a scheme is looked up (ARCHITECTURE.md, "Adding a scheme").
fn server(scheme: &Scheme) -> &'static dyn SchemeServer {
    match scheme {
        Scheme::Exact | Scheme::Upto { .. } => &ExactServer,
        Scheme::Batch(_) => &BatchServer,
    }
}

/// `exact` and `upto`: an authorization signed for one payment, claimed here and settled by the
/// facilitator.
pub struct ExactServer;

#[async_trait]
impl SchemeServer for ExactServer {
    async fn admit(
        &self,
        cx: &Checkout<'_>,
        matched: Matched,
        pricing: &Pricing,
        url: &str,
    ) -> Result<Admission, Refusal> {
        let payment = matched.exact_payment(&pricing.offers).map_err(|e| undecodable(&e))?;
        // A payment identifier is looked up before anything is verified: a retry gets its first answer.
        let tracked = idempotency::begin(
            cx.store.as_ref(),
            pricing.payment_id,
            matched.extensions.as_ref(),
            &matched.json,
            window::claim_expiry(&payment, pricing.max_timeout(), cx.clock.now()),
            cx.clock.now(),
            cx.claims.lease(),
        )
        .await?;
        match cx.checked(matched, payment, pricing, url).await {
            Ok(mut a) => {
                a.tracked = tracked;
                Ok(Admission::Paid(Box::new(ExactHold::new(*a, cx.claims, cx.remote))))
            }
            Err(e) => {
                if let Some(t) = &tracked {
                    idempotency::abandon(cx.store.as_ref(), t).await;
                }
                match e {
                    Checked::Refused(r) => Err(r),
                    Checked::Unpaid(error) => Ok(Admission::Unpaid(error)),
                }
            }
        }
    }
}

/// How an `exact` payment's checks end when it is not admitted.
enum Checked {
    Refused(Refusal),
    /// Served unpaid under `on_facilitator_error: allow`.
    Unpaid(FacilitatorError),
}

impl From<Refusal> for Checked {
    fn from(r: Refusal) -> Self {
        Checked::Refused(r)
    }
}

impl Checkout<'_> {
    /// Every check of an `exact` payment after the identifier, through the claim and the facilitator's
    /// `/verify`.
    async fn checked(
        &self,
        matched: Matched,
        payment: Payment,
        pricing: &Pricing,
        url: &str,
    ) -> Result<Box<Admitted>, Checked> {
        // A payment this process already settled is refused before any signature work: a replay costs a
        // cache lookup. (`from` is unverified here, but it is part of the settled payment's identity.)
        let payment = &payment;
        for o in matched.candidates.iter().filter_map(|&i| pricing.offers.get(i)) {
            let q = &o.requirement;
            if let Some(transaction) = self.claims.settled_here(&payment.id(q.network, q.asset)).await {
                let settled = ClaimRefusal::Settled { transaction };
                return Err(claim_refusal(settled, matched.version, q, payment.payer()).into());
            }
        }
        let metrics = self.remote.metrics();
        let (offer, verified) = verify::local(pricing, &matched, payment).map_err(|e| {
            let network = matched.candidates.first().and_then(|&i| pricing.offers.get(i));
            let network = network.map_or_else(|| "unknown".to_owned(), |o| o.requirement.network.to_string());
            metrics.verification(&network, Where::Local, Verdict::Invalid);
            verify::refuse(&e)
        })?;
        let (payer, proof) = (verified.payer, verified.proof);
        let requirement = &offer.requirement;
        metrics.verification(&requirement.network.to_string(), Where::Local, Verdict::Valid);
        let key = payment.id(requirement.network, requirement.asset);
        let meta = resource(url, &pricing.description, &pricing.mime_type);
        let facilitator_request = FacilitatorRequest {
            x402_version: matched.version,
            payment_payload: matched.json,
            payment_requirements: requirement.to_wire(matched.version, &meta),
        };
        let mut request = facilitator_request.encode();
        if matched.version == Version::V1 {
            // A v1 requirement names the URL, which the payer did not sign: a payment whose outcome is
            // unknown is the same payment whatever URL it comes back on, so the URL is left out of its
            // identity.
            let anywhere = FacilitatorRequest {
                payment_requirements: requirement
                    .to_wire(Version::V1, &resource("", &pricing.description, &pricing.mime_type)),
                ..facilitator_request.clone()
            };
            request.digest = anywhere.encode().digest;
        }
        let settler = requirement.settler();
        let metered = settler.map(|settler| Metered {
            settler,
            min: offer.min,
            decimals: offer.decimals,
            request: facilitator_request,
        });
        let version = matched.version;
        let admit = |ticket, request, reconciling| Admitted {
            version,
            request,
            ticket,
            payer,
            network: requirement.network,
            asset: requirement.asset,
            amount: requirement.amount,
            settled: None,
            reconciling,
            tracked: None,
            metered: metered.clone(),
            resolver: None,
        };

        let now = self.clock.now();
        let via = self
            .remote
            .pick(requirement.network, settler)
            .ok_or_else(|| Refusal::Facilitator {
                error: no_settler(settler),
                settling: false,
            })?;
        let claimed = match window::check_for_route(payment, requirement.max_timeout_seconds, now) {
            Ok(()) => {
                // A fresh payment about to reach the facilitator: counted against its client.
                if let Some((throttle, client)) = self.throttle {
                    throttle
                        .admit(client, std::time::Instant::now())
                        .await
                        .map_err(|retry_after| Refusal::TooManyAttempts { retry_after })?;
                }
                self.claims
                    .claim(
                        key.clone(),
                        window::claim_expiry(payment, requirement.max_timeout_seconds, now),
                        request.digest,
                        via,
                    )
                    .await
            }
            // Out of its window, a payment may still be one whose settlement outcome is unknown: that one
            // is reconciled below, whatever the clock says; any other is refused for its window.
            Err(e) => match self.claims.get(&key).await {
                Ok(Some(r)) if r.state.is_unknown() => Err(r.state.into()),
                Ok(_) => return Err(verify::refuse(&e).into()),
                Err(_) => return Err(Refusal::Store.into()),
            },
        };
        let ticket = match claimed {
            Ok(ticket) => ticket,
            // Sent for settlement, outcome unknown: ask the facilitator again (it reconciles against the
            // sent transaction) instead of challenging, which would invite paying twice.
            Err(ClaimRefusal::InDoubt { transaction }) => {
                let ticket = self.reconcile(&key, &request, &transaction).await?;
                let mut admitted = admit(ticket, request, Some(transaction));
                // Where the facilitator cannot say what became of it, the chain may.
                admitted.resolver = self.onchain.reads(requirement.network).then(|| {
                    Box::new(Resolver {
                        onchain: self.onchain.clone(),
                        payment: payment.clone(),
                        now,
                    })
                });
                admitted.settled = Some(settle(self.claims, self.remote, &admitted).await?);
                return Ok(Box::new(admitted));
            }
            Err(e) => return Err(claim_refusal(e, version, requirement, payer).into()),
        };
        fault::point(Point::AfterClaim).await;
        let mut admitted = admit(ticket, request, None);
        match self.after_claim(&mut admitted, pricing, proof).await {
            Ok(()) => Ok(Box::new(admitted)),
            // A contract wallet's signature was never checked here: without the facilitator's word it
            // proves nothing, and anyone could mint such signatures, so it never fails open.
            Err(Refusal::Facilitator { error, settling: false })
                if proof == Proof::Key && fails_open(&error, pricing) =>
            {
                // Spent before anything is served: one signature, at most one unpaid response.
                if self.claims.served_unpaid(&admitted.ticket).await {
                    Err(Checked::Unpaid(error))
                } else {
                    self.claims.release(&admitted.ticket).await;
                    Err(Refusal::Facilitator { error, settling: false }.into())
                }
            }
            Err(r) => {
                // Frees the authorization unless settlement already moved the claim on (settled or in doubt).
                self.claims.release(&admitted.ticket).await;
                Err(r.into())
            }
        }
    }

    /// Takes over a payment whose settlement outcome is unknown, for this request to settle it again. Only
    /// the same payment qualifies (not another one reusing its nonce), and only one request at a time.
    async fn reconcile(
        &self,
        key: &AuthorizationId,
        request: &EncodedRequest,
        transaction: &str,
    ) -> Result<ClaimTicket, Refusal> {
        let pending = || Refusal::SettlementPending {
            transaction: transaction.to_owned(),
        };
        let current = match self.claims.get(key).await {
            Ok(Some(r)) if r.state.is_unknown() && r.payment == request.digest => r,
            Ok(_) => return Err(pending()),
            Err(_) => return Err(Refusal::Store),
        };
        // A claim still being settled by its holder is not taken over before its lease runs out: two
        // settlements of one payment must never run at once.
        if current.state == ClaimState::Settling && self.clock.now() < current.lease_until {
            return Err(pending());
        }
        match self.claims.take_over(key, &current.state, &current).await {
            Ok(Some(t)) => Ok(t),
            Ok(None) => Err(pending()),
            Err(_) => Err(Refusal::Store),
        }
    }

    /// What follows the claim before proxying: the facilitator's `/verify` (unless `verify: local` and the
    /// signature was proven here), and on `settle: before` routes the settlement.
    async fn after_claim(&self, a: &mut Admitted, pricing: &Pricing, proof: Proof) -> Result<(), Refusal> {
        // A contract wallet's signature is the facilitator's to judge, even on a `verify: local` route.
        if pricing.verify == VerifyMode::Remote || proof == Proof::Contract {
            let settler = a.metered.as_ref().map(|m| m.settler);
            let via = verify::remote(self.remote, &a.request, a.network, settler).await?;
            a.ticket.verified_by(via);
        }
        if pricing.settle == SettleMode::Before {
            a.settled = Some(settle(self.claims, self.remote, a).await?);
        }
        Ok(())
    }
}

/// Whether a facilitator that could not verify a payment lets the route serve it unpaid: only where the
/// operator allowed it, and never when the facilitator is rate-limiting us (anyone can cause that by
/// flooding it).
fn fails_open(error: &FacilitatorError, pricing: &Pricing) -> bool {
    pricing.on_facilitator_error == OnFacilitatorError::Allow && !matches!(error, FacilitatorError::Throttled { .. })
}

fn claim_refusal(e: ClaimRefusal, version: Version, requirement: &Requirement, payer: Address) -> Refusal {
    match &e {
        ClaimRefusal::Full => Refusal::Busy(e.to_string()),
        ClaimRefusal::Store(_) => Refusal::Store,
        ClaimRefusal::InFlight | ClaimRefusal::ServedUnpaid => Refusal::PaymentRequired {
            reason: Some(format!("{}: {e}", reason::NONCE_ALREADY_USED)),
            receipt: None,
        },
        // Outcome unknown: not a fresh challenge (that would invite paying twice), the pending answer.
        ClaimRefusal::InDoubt { transaction } => Refusal::SettlementPending {
            transaction: transaction.clone(),
        },
        ClaimRefusal::Settled { transaction } => {
            // The receipt names the transaction that used this authorization.
            let receipt = SettleResponse::failed(
                reason::NONCE_ALREADY_USED,
                e.to_string(),
                Some(payer.to_string()),
                requirement.network.wire_name(version),
                transaction.clone(),
            );
            Refusal::Used {
                transaction: transaction.clone(),
                receipt: (version, receipt),
            }
        }
    }
}
