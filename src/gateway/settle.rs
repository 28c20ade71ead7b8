//! Stage 5, settle: ask the facilitator to execute the payment, and record on its claim what came of it.
//! An outcome that is not known (pending, lost answer) is never treated as "not paid" (ARCHITECTURE.md,
//! invariant 6): the claim is held in doubt and the refusal names the transaction.

use alloy::primitives::{Address, U256};

use crate::gateway::claims::{ClaimTicket, Claims};
use crate::gateway::facilitator::{Remote, Settlement};
use crate::gateway::fault::{self, Point};
use crate::gateway::idempotency::Tracked;
use crate::gateway::metrics::Settled;
use crate::gateway::refusal::Refusal;
use crate::protocol::facilitator::{EncodedRequest, FacilitatorRequest, SettleResponse};
use crate::protocol::network::Network;
use crate::protocol::{reason, Version};
use crate::rules::charge;

/// A request whose payment is verified and claimed.
#[derive(Debug, Clone)]
pub struct Admitted {
    pub version: Version,
    /// What `/verify` and `/settle` receive, serialised once.
    pub request: EncodedRequest,
    pub ticket: ClaimTicket,
    pub payer: Address,
    /// What is paid: on which network, in which asset, how many atomic units.
    pub network: Network,
    pub asset: Address,
    pub amount: U256,
    /// Set when the route settles before proxying, or a payment in doubt was reconciled.
    pub settled: Option<SettleResponse>,
    /// The transaction an earlier request sent for this payment, when this request re-settles it.
    pub reconciling: Option<String>,
    /// The `payment-identifier` this request holds, if any.
    pub tracked: Option<Tracked>,
    /// `upto`: `amount` is the maximum, and the upstream says what the call cost.
    pub metered: Option<Metered>,
}

/// What an `upto` payment's charge is held to, and the request its settlement is built from.
#[derive(Debug, Clone)]
pub struct Metered {
    /// The one account the payer lets settle it (the witness's facilitator).
    pub settler: Address,
    /// The route's least charge, atomic units.
    pub min: U256,
    /// The asset's decimals (for a charge reported in dollars).
    pub decimals: u8,
    /// The `/verify` request; `/settle` sends it with the charge as the requirement's amount.
    pub request: FacilitatorRequest,
}

impl Admitted {
    /// What the payer is charged: the charge of an `upto` payment once known, else the amount.
    pub fn paid(&self) -> U256 {
        self.ticket.charged().unwrap_or(self.amount)
    }
}

/// What the upstream's final answer (`status`, and for `upto` the `Settlement-Overrides` header it sent)
/// to an admitted request comes to: the settlement whose receipt goes out with it, `None` when nothing is
/// to be settled (the upstream answered >= 400, or the request was HEAD), or the refusal that replaces
/// the upstream's answer.
pub async fn on_response(
    claims: &Claims,
    remote: &Remote,
    a: &mut Admitted,
    status: u16,
    head: bool,
    overrides: Option<&[u8]>,
) -> Result<Option<SettleResponse>, Refusal> {
    if let Some(s) = &a.settled {
        return Ok(Some(s.clone()));
    }
    if status >= 400 || head {
        return Ok(None);
    }
    if let Some(m) = &a.metered {
        let c = charge::charge(overrides, a.amount, m.min, m.decimals);
        if let Some(note) = &c.note {
            tracing::warn!(payer = %a.payer, charge = %c.amount, "metered charge adjusted: {note}");
        }
        a.ticket.charge(c.amount);
    }
    let s = settle(claims, remote, a).await?;
    a.settled = Some(s.clone());
    fault::point(Point::AfterSettle).await;
    Ok(Some(s))
}

/// The receipt of a payment settled before its upstream failed: the payer keeps it whatever the answer.
pub fn kept_receipt(a: &Admitted) -> Option<(&'static str, String)> {
    a.settled
        .as_ref()
        .map(|s| crate::gateway::receipt::header(a.version, s))
}

/// Settles an admitted payment and records the outcome on its claim. `Ok` is a successful settlement.
///
/// Before `/settle` is called the claim is marked `Settling`, so a crash or a lost answer leaves the
/// payment in doubt, never free for reuse; a request that no longer holds its claim settles nothing.
pub async fn settle(claims: &Claims, remote: &Remote, a: &Admitted) -> Result<SettleResponse, Refusal> {
    // An `upto` payment is settled for its charge, never for the maximum the `/verify` bytes carry.
    if a.metered.is_some() && a.ticket.charged().is_none() {
        return Err(Refusal::PaymentRequired {
            reason: Some(format!(
                "{}: no charge was set for this metered payment",
                reason::UPTO_INVALID_SCHEME
            )),
            receipt: None,
        });
    }
    if a.reconciling.is_none() {
        match claims.settling(&a.ticket).await {
            Ok(true) => {}
            Ok(false) => {
                return Err(Refusal::PaymentRequired {
                    reason: Some(format!(
                        "{}: this payment's claim passed to another request",
                        reason::NONCE_ALREADY_USED
                    )),
                    receipt: None,
                })
            }
            Err(_) => return Err(Refusal::Store),
        }
    }
    let charged = a.ticket.charged();
    if charged == Some(U256::ZERO) {
        // `upto` at zero: nothing to move, no transaction; the authorization is spent all the same.
        return match claims.settled(&a.ticket, String::new()).await {
            true => Ok(receipt(
                a,
                SettleResponse::settled(Some(a.payer.to_string()), a.network.wire_name(a.version), String::new()),
            )),
            false => Err(Refusal::SettlementPending {
                transaction: String::new(),
            }),
        };
    }
    let charged_request = match (&a.metered, charged) {
        (Some(m), Some(c)) => Some(m.request.charging(c).encode()),
        _ => None,
    };
    let outcome = remote
        .settle(charged_request.as_ref().unwrap_or(&a.request), a.ticket.via())
        .await;
    fault::point(Point::DuringSettle).await;
    let counted = match &outcome {
        Settlement::Settled(_) => Settled::Success,
        Settlement::Failed(_) => Settled::Failed,
        Settlement::Pending(_) => Settled::Pending,
        Settlement::Error { maybe_sent: true, .. } => Settled::InDoubt,
        Settlement::Error { .. } => Settled::Error,
    };
    remote.metrics().settlement(&a.network.to_string(), counted);
    match outcome {
        Settlement::Settled(s) => {
            if claims.settled(&a.ticket, s.transaction.clone()).await {
                Ok(receipt(a, s))
            } else {
                // Settled but not recorded: never served as paid unrecorded (a second request could then be
                // served too); the claim stays unknown and the same payment is reconciled later.
                Err(Refusal::SettlementPending {
                    transaction: s.transaction,
                })
            }
        }
        // Re-settling a sent transaction, only its own revert is a definite "not paid": a facilitator that
        // lost track of it judges the payload afresh (expired, nonce used, balance spent) for a payment that
        // may well have landed.
        Settlement::Failed(s) if a.reconciling.as_ref().is_some_and(|t| !reverted(&s, t)) => {
            Err(still_in_doubt(claims, a, None).await)
        }
        Settlement::Failed(s) => {
            let reason = s.error_reason.clone().unwrap_or_else(|| "settlement failed".to_owned());
            claims.failed(&a.ticket, reason).await;
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
                claims.failed(&a.ticket, error.code().to_owned()).await;
            }
            Err(Refusal::Facilitator { error, settling: true })
        }
    }
}

/// The receipt of a settled payment: an `upto` one says what was charged.
fn receipt(a: &Admitted, s: SettleResponse) -> SettleResponse {
    let charge = a.ticket.charged();
    if let (Some(c), Some(said)) = (charge, &s.amount) {
        if *said != c.to_string() {
            tracing::warn!(payer = %a.payer, charge = %c, facilitator_said = %said, transaction = %s.transaction, "the facilitator reports settling another amount than the charge it was sent");
        }
    }
    s.charged(charge)
}

/// Whether `s` reports that `transaction` itself failed on chain.
fn reverted(s: &SettleResponse, transaction: &str) -> bool {
    let failed = [reason::TRANSACTION_FAILED, reason::UPTO_TRANSACTION_FAILED];
    s.error_reason.as_deref().is_some_and(|r| failed.contains(&r)) && s.transaction == transaction
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
