//! Stage 5, settle: ask the facilitator to execute the payment, and record on its claim what came of it.
//! An outcome that is not known (pending, lost answer) is never treated as "not paid" (ARCHITECTURE.md,
//! invariant 6): the claim is held in doubt and the refusal names the transaction.

use std::sync::Arc;

use alloy::primitives::{Address, U256};
use async_trait::async_trait;

use crate::gateway::claims::{ClaimTicket, Claims};
use crate::gateway::facilitator::{FacilitatorError, Remote, Settlement};
use crate::gateway::fault::{self, Point};
use crate::gateway::idempotency::Tracked;
use crate::gateway::metrics::Settled;
use crate::gateway::onchain::{Finding, Onchain};
use crate::gateway::refusal::Refusal;
use crate::gateway::scheme::Hold;
use crate::protocol::facilitator::{EncodedRequest, FacilitatorRequest, SettleResponse};
use crate::protocol::network::Network;
use crate::protocol::payment::Payment;
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
    /// Re-settling a payment whose outcome is unknown, on a network the gateway can read: the chain is asked
    /// when the facilitator cannot say.
    pub resolver: Option<Box<Resolver>>,
}

/// What asking the chain about a payment in doubt takes.
#[derive(Clone)]
pub struct Resolver {
    pub onchain: Arc<Onchain>,
    pub payment: Payment,
    /// When the payment came back (its deadline is judged against this).
    pub now: u64,
}

impl std::fmt::Debug for Resolver {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Resolver")
            .field("payer", &self.payment.payer())
            .finish()
    }
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

/// An admitted `exact` or `upto` payment with the stages that settle it: the [`Hold`] the proxy drives.
pub struct ExactHold {
    pub admitted: Admitted,
    claims: Arc<Claims>,
    remote: Arc<Remote>,
}

impl ExactHold {
    /// Holds `admitted` for its request.
    pub fn new(admitted: Admitted, claims: &Arc<Claims>, remote: &Arc<Remote>) -> Self {
        ExactHold {
            admitted,
            claims: claims.clone(),
            remote: remote.clone(),
        }
    }
}

#[async_trait]
impl Hold for ExactHold {
    fn version(&self) -> Version {
        self.admitted.version
    }
    fn payer(&self) -> Address {
        self.admitted.payer
    }
    fn network(&self) -> Network {
        self.admitted.network
    }
    fn asset(&self) -> Address {
        self.admitted.asset
    }
    fn paid(&self) -> U256 {
        self.admitted.paid()
    }
    fn settled(&self) -> Option<&SettleResponse> {
        self.admitted.settled.as_ref()
    }
    fn tracked(&self) -> Option<&Tracked> {
        self.admitted.tracked.as_ref()
    }

    async fn on_response(
        &mut self,
        status: u16,
        head: bool,
        overrides: Option<&[u8]>,
    ) -> Result<Option<SettleResponse>, Refusal> {
        on_response(&self.claims, &self.remote, &mut self.admitted, status, head, overrides).await
    }

    async fn release(&mut self) {
        // Settled and in-doubt claims are untouched by a release, so a settled one is not asked.
        if self.admitted.settled.is_none() {
            self.claims.release(&self.admitted.ticket).await;
        }
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
pub fn kept_receipt(h: &dyn Hold) -> Option<(&'static str, String)> {
    h.settled().map(|s| crate::gateway::receipt::header(h.version(), s))
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
    let verdict = match (judge(outcome, a.reconciling.as_deref()), &a.resolver) {
        (Verdict::InDoubt { transaction, error }, Some(r)) => from_chain(a, r, transaction, error).await,
        (v, _) => v,
    };
    match verdict {
        Verdict::Settled(s) => {
            if claims.settled(&a.ticket, s.transaction.clone()).await {
                Ok(receipt(a, s))
            } else {
                // Settled but not recorded: never served as paid unrecorded (a second request could then be
                // served too); the claim is held in doubt with its transaction, if the store still takes a
                // write, and the same payment is reconciled later.
                Err(still_in_doubt(claims, a, Some(s.transaction)).await)
            }
        }
        Verdict::Failed(s) => {
            let reason = s.error_reason.clone().unwrap_or_else(|| "settlement failed".to_owned());
            claims.failed(&a.ticket, reason).await;
            Err(Refusal::PaymentRequired {
                reason: s.error_reason.clone(),
                receipt: Some((a.version, s)),
            })
        }
        Verdict::Refused(error) => {
            claims.failed(&a.ticket, error.code().to_owned()).await;
            Err(Refusal::Facilitator { error, settling: true })
        }
        Verdict::InDoubt { transaction, error } => {
            let pending = still_in_doubt(claims, a, transaction).await;
            Err(match error {
                Some(error) => Refusal::Facilitator { error, settling: true },
                None => pending,
            })
        }
    }
}

/// The verdict on a payment the facilitator left in doubt, from what the chain shows: paid in a
/// transaction proven to have moved it, not paid once it can no longer land, else still in doubt.
async fn from_chain(
    a: &Admitted,
    r: &Resolver,
    transaction: Option<String>,
    error: Option<FacilitatorError>,
) -> Verdict {
    let sent = transaction.as_deref().or(a.reconciling.as_deref()).unwrap_or_default();
    let finding = r.onchain.resolve(a.network, a.asset, &r.payment, sent, r.now).await;
    let (payer, network) = (Some(a.payer.to_string()), a.network.wire_name(a.version));
    match finding {
        Finding::Settled { transaction } => {
            tracing::info!(payer = %a.payer, %transaction, "payment in doubt resolved from the chain: settled");
            Verdict::Settled(SettleResponse::settled(payer, network, transaction))
        }
        Finding::NotSettled { reason, message } => {
            tracing::info!(payer = %a.payer, reason, "payment in doubt resolved from the chain: not settled");
            Verdict::Failed(SettleResponse::failed(reason, message, payer, network, String::new()))
        }
        Finding::Unknown => Verdict::InDoubt { transaction, error },
    }
}

/// What a settlement attempt comes to: the claim's next state, and the answer that goes with it.
#[derive(Debug)]
pub enum Verdict {
    /// Paid: record the transaction, then serve with its receipt.
    Settled(SettleResponse),
    /// Definitely not paid, with the facilitator's answer: the claim records why and frees the
    /// authorization; the payer gets a 402 with the failed receipt.
    Failed(SettleResponse),
    /// Definitely not paid: the facilitator was never reached. The claim is freed; the answer is 502/503.
    Refused(FacilitatorError),
    /// Unknown: held in doubt with the best known transaction; 504 (or the facilitator's error), never a
    /// new challenge, which would invite paying twice.
    InDoubt {
        transaction: Option<String>,
        error: Option<FacilitatorError>,
    },
}

/// The settlement decision, in one place: a facilitator's answer to `/settle`, for a payment sent for the
/// first time (`reconciling: None`) or re-settled after an unknown outcome (`Some(transaction)` known
/// then, possibly `""`).
///
/// A failure is definite only when nothing was broadcast (no transaction, and a refusal every facilitator
/// makes before broadcasting) or the transaction itself reverted. When re-settling, only the revert of the
/// transaction sent before counts: a facilitator judging the payload afresh (nonce used, expired, balance
/// spent) may be looking at that transaction's own success.
pub fn judge(outcome: Settlement, reconciling: Option<&str>) -> Verdict {
    match outcome {
        Settlement::Settled(s) => Verdict::Settled(s),
        Settlement::Failed(s) => {
            let why = s.error_reason.as_deref().unwrap_or_default();
            let named = !s.transaction.is_empty();
            let definite = match reconciling {
                Some(sent) => named && !sent.is_empty() && s.transaction == sent && reason::reverted(why),
                None if named => reason::reverted(why),
                None => reason::refused_before_broadcast(why),
            };
            if definite {
                Verdict::Failed(s)
            } else {
                Verdict::InDoubt {
                    transaction: named.then_some(s.transaction),
                    error: None,
                }
            }
        }
        Settlement::Pending(s) => Verdict::InDoubt {
            transaction: Some(s.transaction).filter(|t| !t.is_empty()),
            error: None,
        },
        Settlement::Error { error, maybe_sent } if maybe_sent || reconciling.is_some() => Verdict::InDoubt {
            transaction: None,
            error: Some(error),
        },
        Settlement::Error { error, .. } => Verdict::Refused(error),
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

/// Marks the claim in doubt with the best known transaction and says so.
async fn still_in_doubt(claims: &Claims, a: &Admitted, transaction: Option<String>) -> Refusal {
    let transaction = transaction
        .filter(|t| !t.is_empty())
        .or_else(|| a.reconciling.clone())
        .unwrap_or_default();
    claims.in_doubt(&a.ticket, transaction.clone()).await;
    Refusal::SettlementPending { transaction }
}

#[cfg(test)]
mod tests {
    use super::*;

    const TX: &str = "0x1111111111111111111111111111111111111111111111111111111111111111";
    const OTHER: &str = "0x2222222222222222222222222222222222222222222222222222222222222222";

    fn failed(why: &str, tx: &str) -> Settlement {
        Settlement::Failed(SettleResponse::failed(why, "", None, "eip155:1".into(), tx.into()))
    }

    fn error(maybe_sent: bool) -> Settlement {
        let error = FacilitatorError::Timeout {
            url: String::new(),
            timeout: std::time::Duration::from_secs(1),
        };
        Settlement::Error { error, maybe_sent }
    }

    /// What the claim becomes: "settled", "failed", "refused", or "in doubt <transaction>".
    fn next(v: Verdict) -> String {
        match v {
            Verdict::Settled(s) => format!("settled {}", s.transaction),
            Verdict::Failed(_) => "failed".into(),
            Verdict::Refused(_) => "refused".into(),
            Verdict::InDoubt { transaction, .. } => format!("in doubt {}", transaction.unwrap_or_default()),
        }
    }

    #[test]
    fn only_a_refusal_before_broadcast_or_a_revert_of_the_sent_transaction_is_not_paid() {
        let ok = || Settlement::Settled(SettleResponse::settled(None, "eip155:1".into(), TX.into()));
        let pending = || {
            Settlement::Pending(SettleResponse::failed(
                reason::SETTLEMENT_PENDING,
                "",
                None,
                String::new(),
                TX.into(),
            ))
        };
        let cases: Vec<(&str, Settlement, Option<&str>, String)> = vec![
            ("success", ok(), None, format!("settled {TX}")),
            ("success on a re-settle", ok(), Some(TX), format!("settled {TX}")),
            (
                "refused before broadcast",
                failed(reason::INSUFFICIENT_BALANCE, ""),
                None,
                "failed".into(),
            ),
            (
                "Permit2 allowance",
                failed(reason::PERMIT2_ALLOWANCE_REQUIRED, ""),
                None,
                "failed".into(),
            ),
            (
                "nonce used, first send",
                failed(reason::NONCE_ALREADY_USED, ""),
                None,
                "failed".into(),
            ),
            (
                "Python's spelling",
                failed("invalid_exact_evm_payload_signature", ""),
                None,
                "failed".into(),
            ),
            // The Go reference and older TS facilitators: broadcast, then gave up on the receipt.
            (
                "gave up after broadcast",
                failed("unexpected_settle_error", TX),
                None,
                format!("in doubt {TX}"),
            ),
            (
                "unknown reason, no tx",
                failed("unexpected_settle_error", ""),
                None,
                "in doubt ".into(),
            ),
            ("no reason at all", failed("", ""), None, "in doubt ".into()),
            (
                "a pre-broadcast reason naming a tx",
                failed(reason::INSUFFICIENT_BALANCE, TX),
                None,
                format!("in doubt {TX}"),
            ),
            (
                "reverted",
                failed(reason::TRANSACTION_FAILED, TX),
                None,
                "failed".into(),
            ),
            (
                "upto reverted",
                failed(reason::UPTO_TRANSACTION_FAILED, TX),
                None,
                "failed".into(),
            ),
            (
                "reverted, no tx named",
                failed(reason::TRANSACTION_FAILED, ""),
                None,
                "in doubt ".into(),
            ),
            ("pending", pending(), None, format!("in doubt {TX}")),
            (
                "re-settle: the sent tx reverted",
                failed(reason::TRANSACTION_FAILED, TX),
                Some(TX),
                "failed".into(),
            ),
            (
                "re-settle: another tx reverted",
                failed(reason::TRANSACTION_FAILED, OTHER),
                Some(TX),
                format!("in doubt {OTHER}"),
            ),
            (
                "re-settle of an unknown tx: a revert",
                failed(reason::TRANSACTION_FAILED, OTHER),
                Some(""),
                format!("in doubt {OTHER}"),
            ),
            (
                "re-settle: nonce used",
                failed(reason::NONCE_ALREADY_USED, ""),
                Some(TX),
                "in doubt ".into(),
            ),
            (
                "re-settle: expired",
                failed(reason::VALID_BEFORE, ""),
                Some(TX),
                "in doubt ".into(),
            ),
            ("no answer, may have been sent", error(true), None, "in doubt ".into()),
            ("refused at the door", error(false), None, "refused".into()),
            (
                "re-settle: refused at the door",
                error(false),
                Some(TX),
                "in doubt ".into(),
            ),
        ];
        for (case, outcome, reconciling, want) in cases {
            assert_eq!(next(judge(outcome, reconciling)), want, "{case}");
        }
    }
}
