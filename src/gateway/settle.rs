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
use crate::protocol::facilitator::{EncodedRequest, SettleResponse};
use crate::protocol::network::Network;
use crate::protocol::{reason, Version};

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
}

/// What the upstream's final answer (`status`) to an admitted request comes to: the settlement whose
/// receipt goes out with it, `None` when nothing is to be settled (the upstream answered >= 400, or the
/// request was HEAD), or the refusal that replaces the upstream's answer.
pub async fn on_response(
    claims: &Claims,
    remote: &Remote,
    a: &mut Admitted,
    status: u16,
    head: bool,
) -> Result<Option<SettleResponse>, Refusal> {
    if let Some(s) = &a.settled {
        return Ok(Some(s.clone()));
    }
    if status >= 400 || head {
        return Ok(None);
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
    let outcome = remote.settle(&a.request, a.ticket.via()).await;
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
                Ok(s)
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
