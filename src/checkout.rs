//! From a presented payment to an admitted request, in the order of DESIGN.md: match the route's offers,
//! verify locally, claim the authorization, verify with the facilitator, and settle first on
//! `settle: before` routes. Each refusal is typed; nothing here writes HTTP.

use alloy::primitives::{Address, U256};

use crate::claims::{ClaimKey, ClaimRefusal, ClaimState, ClaimTicket, Claims};
use crate::config::{Pricing, SettleMode, VerifyMode};
use crate::facilitator::service::unix_now;
use crate::payment::{self, Presented};
use crate::protocol::exact::{Rejection, Requirement};
use crate::protocol::facilitator::{FacilitatorRequest, SettleResponse};
use crate::protocol::{reason, Version};
use crate::refusal::Refusal;
use crate::remote::{Remote, Settlement};

/// How far past `now + maxTimeoutSeconds` a `validBefore` may reach (client clock skew). The reference
/// clients set `validBefore = now + maxTimeoutSeconds`; a much later one would keep a claim alive longer
/// than the route allows.
const VALID_BEFORE_SLACK_SECS: u64 = 300;

/// A request whose payment is verified and claimed.
#[derive(Debug, Clone)]
pub struct Admitted {
    pub version: Version,
    pub requirement: Requirement,
    /// What `/settle` will receive.
    pub request: FacilitatorRequest,
    pub ticket: ClaimTicket,
    pub payer: Address,
    /// Set when the route settles before proxying, or a payment in doubt was reconciled.
    pub settled: Option<SettleResponse>,
    /// The transaction an earlier request sent for this payment, when this request re-settles it.
    pub reconciling: Option<String>,
}

/// The parts checkout needs.
pub struct Checkout<'a> {
    pub claims: &'a Claims,
    pub remote: &'a Remote,
}

fn refuse(r: &Rejection) -> Refusal {
    Refusal::PaymentRequired {
        reason: Some(r.reason.to_owned()),
        receipt: None,
    }
}

impl Checkout<'_> {
    /// Runs a presented payment through every check; on success the authorization is claimed.
    pub async fn admit(&self, presented: Presented, pricing: &Pricing, url: &str) -> Result<Admitted, Refusal> {
        let matched = payment::match_offer(presented, &pricing.offers).map_err(|e| Refusal::PaymentRequired {
            reason: Some(e.reason()),
            receipt: None,
        })?;
        // The signature names the asset (EIP-712 verifyingContract), so the first candidate it verifies
        // under is the offer paid; report the first candidate's reason otherwise.
        let mut first_err = None;
        let mut hit = None;
        for &i in &matched.candidates {
            let Some(offer) = pricing.offers.get(i) else { continue };
            match crate::verify::check_terms(&offer.requirement, &matched.exact) {
                Ok(payer) => {
                    hit = Some((offer.requirement.clone(), payer));
                    break;
                }
                Err(e) => {
                    first_err.get_or_insert(e);
                }
            }
        }
        let (requirement, payer) = match (hit, first_err) {
            (Some(h), _) => h,
            (None, Some(e)) => return Err(refuse(&e)),
            (None, None) => {
                return Err(refuse(&Rejection::new(
                    reason::NO_MATCHING_REQUIREMENTS,
                    "no offer matched",
                )))
            }
        };
        let auth = &matched.exact.authorization;
        let key = ClaimKey {
            chain_id: requirement.network.chain_id,
            asset: requirement.asset,
            payer,
            nonce: auth.nonce,
        };
        let meta = crate::challenge::resource(pricing, url);
        let request = FacilitatorRequest {
            x402_version: matched.version,
            payment_payload: matched.json.clone(),
            payment_requirements: requirement.to_wire(matched.version, &meta),
        };
        let digest = request.digest();
        let version = matched.version;
        let admit = |ticket, reconciling| Admitted {
            version,
            requirement: requirement.clone(),
            request: request.clone(),
            ticket,
            payer,
            settled: None,
            reconciling,
        };

        // Already submitted, outcome unknown: ask the facilitator again (it reconciles against the sent
        // transaction) instead of judging the clock or challenging, which would invite paying twice.
        if let Some(ClaimState::InDoubt { transaction }) = self.claims.state(&key).await {
            // Another request is re-settling it right now: still unknown, still not "pay again".
            let ticket = self
                .claims
                .take_over(&key, &transaction, &digest)
                .await
                .ok_or_else(|| Refusal::SettlementPending {
                    transaction: transaction.clone(),
                })?;
            let mut admitted = admit(ticket, Some(transaction));
            admitted.settled = Some(settle(self.claims, self.remote, &admitted).await?);
            return Ok(admitted);
        }

        let now = unix_now();
        crate::verify::check_window(&matched.exact, now).map_err(|e| refuse(&e))?;
        let latest = now
            .saturating_add(requirement.max_timeout_seconds)
            .saturating_add(VALID_BEFORE_SLACK_SECS);
        if auth.valid_before > U256::from(latest) {
            return Err(refuse(&Rejection::new(
                reason::VALID_BEFORE,
                "validBefore is further ahead than this route's maxTimeoutSeconds allows",
            )));
        }
        let valid_before = u64::try_from(auth.valid_before).unwrap_or(u64::MAX);
        let ticket = self
            .claims
            .claim(key, valid_before, digest)
            .await
            .map_err(|e| claim_refusal(e, version, &requirement, payer))?;
        let mut admitted = admit(ticket, None);
        if let Err(r) = self.remote_checks(&mut admitted, pricing).await {
            // Frees the authorization unless settlement already moved the claim on (settled or in doubt).
            self.claims.release(&admitted.ticket).await;
            return Err(r);
        }
        Ok(admitted)
    }

    async fn remote_checks(&self, a: &mut Admitted, pricing: &Pricing) -> Result<(), Refusal> {
        if pricing.verify == VerifyMode::Remote {
            let v = self
                .remote
                .verify(&a.request)
                .await
                .map_err(|e| Refusal::Facilitator((*e).clone()))?;
            if !v.is_valid {
                let reason = v
                    .invalid_reason
                    .unwrap_or_else(|| reason::UNEXPECTED_VERIFY_ERROR.to_owned());
                return Err(Refusal::PaymentRequired {
                    reason: Some(reason),
                    receipt: None,
                });
            }
        }
        if pricing.settle == SettleMode::Before {
            a.settled = Some(settle(self.claims, self.remote, a).await?);
        }
        Ok(())
    }
}

/// Settles an admitted payment and records the outcome on its claim. `Ok` is a successful settlement.
pub async fn settle(claims: &Claims, remote: &Remote, a: &Admitted) -> Result<SettleResponse, Refusal> {
    match remote.settle(&a.request).await {
        Settlement::Settled(s) => {
            claims.settled(&a.ticket, s.transaction.clone()).await;
            Ok(s)
        }
        // Re-settling a sent transaction, only its own revert is a definite "not paid": a facilitator that
        // lost track of it judges the payload afresh (expired, nonce used, balance spent) for a payment that
        // may well have landed.
        Settlement::Failed(s) if a.reconciling.as_ref().is_some_and(|t| !reverted(&s, t)) => {
            Err(still_in_doubt(claims, a, None).await)
        }
        Settlement::Failed(s) => {
            claims.release(&a.ticket).await;
            Err(Refusal::PaymentRequired {
                reason: s.error_reason.clone(),
                receipt: Some((a.version, s)),
            })
        }
        Settlement::Pending(s) => Err(still_in_doubt(claims, a, Some(s.transaction)).await),
        Settlement::Error { error, maybe_sent } => {
            if maybe_sent || a.reconciling.is_some() {
                let _ = still_in_doubt(claims, a, None).await;
            } else {
                claims.release(&a.ticket).await;
            }
            Err(Refusal::Facilitator(error))
        }
    }
}

/// Whether `s` reports that `transaction` itself failed on chain.
fn reverted(s: &SettleResponse, transaction: &str) -> bool {
    s.error_reason.as_deref() == Some(reason::TRANSACTION_FAILED) && s.transaction == transaction
}

/// Marks the claim in doubt with the best known transaction and says so.
async fn still_in_doubt(claims: &Claims, a: &Admitted, transaction: Option<String>) -> Refusal {
    let transaction = transaction
        .filter(|t| !t.is_empty())
        .or_else(|| a.reconciling.clone())
        .unwrap_or_default();
    claims.in_doubt(&a.ticket, transaction.clone()).await;
    Refusal::SettlementPending { transaction }
}

fn claim_refusal(e: ClaimRefusal, version: Version, requirement: &Requirement, payer: Address) -> Refusal {
    match &e {
        ClaimRefusal::Full => Refusal::Busy(e.to_string()),
        ClaimRefusal::InFlight => Refusal::PaymentRequired {
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
            Refusal::PaymentRequired {
                reason: Some(format!("{}: {e}", reason::NONCE_ALREADY_USED)),
                receipt: Some((version, receipt)),
            }
        }
    }
}
