//! Stage 3, claim: single use of an authorization. Its identity (network, asset, payer, nonce) is claimed
//! atomically in the store before any facilitator call, so a second request carrying the same payment, in
//! flight or after settlement, is refused without reaching the facilitator or the upstream (x402-notes
//! §12.2), on this replica or any other sharing the store.
//!
//! A claim moves `InFlight` → `Settling` (written before `/settle` is called) → `Settled` | `InDoubt`, or
//! is released. With a store outside the process, settled claims are also kept in a small in-process
//! cache: a replay is refused without a store round trip.

use alloy::primitives::U256;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use crate::core::time::Clock;
use crate::gateway::metrics::Metrics;
use crate::gateway::store::{Insert, Record, Store, StoreError};
use crate::protocol::exact::AuthorizationId;

pub use crate::gateway::store::ClaimState;

/// How long a payment whose settlement outcome is unknown is remembered: well past its `validBefore`, so a
/// facilitator outage cannot turn "in doubt, do not pay again" into a fresh 402.
const UNKNOWN_OUTCOME_SECS: u64 = 7 * 24 * 3600;
/// Settled authorizations remembered in process, for refusing replays before any signature work: the most
/// recent ones, which is when replays come. An older replay is still refused, by the store, after the
/// signature check. Small, because every live claim is already in the store once.
const SETTLED_CACHE: u64 = 16_384;

/// Why a claim was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ClaimRefusal {
    #[error("this payment is already being used by another request")]
    InFlight,
    #[error("this payment was already used: settled in transaction {transaction}")]
    Settled { transaction: String },
    #[error(
        "this payment was already submitted for settlement (transaction {transaction}); its outcome is not known yet"
    )]
    InDoubt { transaction: String },
    #[error("this payment was already used: it paid for nothing, but a response was served while the payment facilitator was unavailable; sign a new payment")]
    ServedUnpaid,
    #[error("the gateway is tracking too many unsettled payments right now; retry shortly")]
    Full,
    #[error("the payment store is unavailable; retry shortly")]
    Store(StoreError),
}

/// A held claim. Whoever holds it must settle it, mark it in doubt, or release it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClaimTicket {
    key: AuthorizationId,
    holder: u64,
    payment: [u8; 32],
    expires_at: u64,
    /// The facilitator (by its place in the list) that verifies and settles this payment.
    via: u8,
    /// `upto`: what is being charged, recorded with the claim from `Settling` on.
    charge: Option<U256>,
}

impl ClaimTicket {
    /// The facilitator that verifies and settles this payment.
    pub fn via(&self) -> usize {
        usize::from(self.via)
    }

    /// Another facilitator verified it (the first did not answer): it settles it too.
    pub fn verified_by(&mut self, facilitator: usize) {
        self.via = facilitator_index(facilitator);
    }

    /// `upto`: settles `amount` (recorded with the claim when it is handed to the facilitator).
    pub fn charge(&mut self, amount: U256) {
        self.charge = Some(amount);
    }

    /// `upto`: the amount being charged, if set; a payment taken over keeps its first charge.
    pub fn charged(&self) -> Option<U256> {
        self.charge
    }
}

/// A facilitator's place in the list as a record keeps it (lists are short; a longer one saturates, and
/// a payment whose facilitator cannot be named is never settled through another).
fn facilitator_index(i: usize) -> u8 {
    u8::try_from(i).unwrap_or(u8::MAX)
}

impl From<ClaimState> for ClaimRefusal {
    /// The refusal a claim in `state` gives a second request. (A failed attempt does not hold its
    /// authorization, so no request is refused by one; it reads as in flight only if a store returned it.)
    fn from(state: ClaimState) -> Self {
        match state {
            ClaimState::InFlight | ClaimState::Failed { .. } => ClaimRefusal::InFlight,
            ClaimState::Settled { transaction } => ClaimRefusal::Settled { transaction },
            ClaimState::Settling => ClaimRefusal::InDoubt {
                transaction: String::new(),
            },
            ClaimState::InDoubt { transaction } => ClaimRefusal::InDoubt { transaction },
            ClaimState::ServedUnpaid => ClaimRefusal::ServedUnpaid,
        }
    }
}

/// The claim table, over a store.
pub struct Claims {
    store: Arc<dyn Store>,
    clock: Clock,
    metrics: Arc<Metrics>,
    /// How long an `InFlight` claim is held for a request before another may take it, should its holder
    /// have died. A holder that outlives it loses the claim and settles nothing.
    lease_secs: u64,
    /// The same for a `Settling` claim: longer than any `/settle` call with its retry can take.
    settle_lease_secs: u64,
    next_holder: AtomicU64,
    /// Recent settlements, when the store is outside the process (`None`: the store is asked directly).
    settled: Option<moka::future::Cache<AuthorizationId, String>>,
}

impl Claims {
    /// Claims kept in `store`, timed on `clock`, in-flight ones leased for `lease` and settling ones for
    /// `settle_lease`; store failures are counted in `metrics`.
    pub fn new(
        store: Arc<dyn Store>,
        clock: Clock,
        metrics: Arc<Metrics>,
        lease: Duration,
        settle_lease: Duration,
    ) -> Self {
        // Holders must differ across processes sharing a store: start each process at a random point.
        let start = u64::from_be_bytes(alloy::primitives::B64::random().0);
        let settled = (!store.in_process()).then(|| {
            moka::future::Cache::builder()
                .max_capacity(SETTLED_CACHE)
                .time_to_live(Duration::from_secs(3600))
                .build()
        });
        Claims {
            store,
            clock,
            metrics,
            lease_secs: lease.as_secs().max(1),
            settle_lease_secs: settle_lease.as_secs().max(lease.as_secs()).max(1),
            next_holder: AtomicU64::new(start),
            settled,
        }
    }

    fn record(&self, t: &ClaimTicket, state: ClaimState, now: u64) -> Record {
        let (lease, expires_at) = match state {
            ClaimState::InFlight
            | ClaimState::Settled { .. }
            | ClaimState::ServedUnpaid
            | ClaimState::Failed { .. } => (self.lease_secs, t.expires_at),
            ClaimState::Settling => (
                self.settle_lease_secs,
                t.expires_at.max(now.saturating_add(UNKNOWN_OUTCOME_SECS)),
            ),
            ClaimState::InDoubt { .. } => (
                self.lease_secs,
                t.expires_at.max(now.saturating_add(UNKNOWN_OUTCOME_SECS)),
            ),
        };
        Record {
            state,
            payment: t.payment,
            holder: t.holder,
            expires_at,
            lease_until: now.saturating_add(lease),
            facilitator: t.via,
            charge: t.charge,
        }
    }

    /// The lease of an in-flight claim.
    pub fn lease(&self) -> u64 {
        self.lease_secs
    }

    /// Claims `key` for one request, atomically, until `expires_at` (unix seconds), to be verified and
    /// settled through facilitator `via`.
    pub async fn claim(
        &self,
        key: AuthorizationId,
        expires_at: u64,
        payment: [u8; 32],
        via: usize,
    ) -> Result<ClaimTicket, ClaimRefusal> {
        // A payment settled here was refused before this (`settled_here`); one settled since, or elsewhere, is
        // found by the store's insert.
        let now = self.clock.now();
        let ticket = ClaimTicket {
            key,
            holder: self.next_holder.fetch_add(1, Ordering::Relaxed),
            payment,
            expires_at,
            via: facilitator_index(via),
            charge: None,
        };
        let record = self.record(&ticket, ClaimState::InFlight, now);
        match self.store.insert(&ticket.key, record, now).await {
            Ok(Insert::Inserted) => Ok(ticket),
            Ok(Insert::Exists(r)) => Err(r.state.into()),
            Ok(Insert::Full) => Err(ClaimRefusal::Full),
            Err(e) => Err(ClaimRefusal::Store(self.store_failed(e))),
        }
    }

    /// The transaction that settled `key` in this process, if it did: a replay is refused on this lookup,
    /// before any signature work or store call.
    pub async fn settled_here(&self, key: &AuthorizationId) -> Option<String> {
        match &self.settled {
            Some(cache) => cache.get(key).await,
            None => match self.store.get(key, self.clock.now()).await {
                Ok(Some(Record {
                    state: ClaimState::Settled { transaction },
                    ..
                })) => Some(transaction),
                _ => None,
            },
        }
    }

    /// Settlements remembered in the cache for a store outside the process.
    pub fn settled_entries(&self) -> u64 {
        self.settled.as_ref().map_or(0, |c| c.entry_count())
    }

    /// Moves the ticket's `from` claim to `next` (`None` releases it). `Ok(false)`: the claim was not
    /// there in that state (another holder took it over after its lease).
    async fn advance(&self, t: &ClaimTicket, from: &ClaimState, next: Option<ClaimState>) -> Result<bool, StoreError> {
        let now = self.clock.now();
        let next = next.map(|s| self.record(t, s, now));
        self.store
            .swap(&t.key, t.holder, from, next, now)
            .await
            .map_err(|e| self.store_failed(e))
    }

    /// Logs and counts a store failure.
    fn store_failed(&self, e: StoreError) -> StoreError {
        tracing::warn!(error = %e, "payment store call failed");
        self.metrics.store_error();
        e
    }

    /// Records that the payment is being handed to the facilitator, before `/settle` is called: from here
    /// on its outcome is never assumed. `Ok(false)`: this request no longer holds the claim; do not settle.
    pub async fn settling(&self, t: &ClaimTicket) -> Result<bool, StoreError> {
        self.advance(t, &ClaimState::InFlight, Some(ClaimState::Settling)).await
    }

    /// Records the settlement: the authorization stays refused until it expires. `false`: it could not be
    /// recorded (the store failed, or the claim is no longer this request's), so the response must not go
    /// out as paid; the claim stays in its unknown state and is reconciled later.
    pub async fn settled(&self, t: &ClaimTicket, transaction: String) -> bool {
        let done = self
            .advance(
                t,
                &ClaimState::Settling,
                Some(ClaimState::Settled {
                    transaction: transaction.clone(),
                }),
            )
            .await;
        if !matches!(done, Ok(true)) {
            return false;
        }
        if let Some(cache) = &self.settled {
            cache.insert(t.key.clone(), transaction).await;
        }
        true
    }

    /// Records an unknown outcome: never reusable, never treated as unpaid.
    pub async fn in_doubt(&self, t: &ClaimTicket, transaction: String) {
        let _ = self
            .advance(t, &ClaimState::Settling, Some(ClaimState::InDoubt { transaction }))
            .await;
    }

    /// Records that the settlement definitely did not happen, and why; the payer can use the authorization
    /// again.
    pub async fn failed(&self, t: &ClaimTicket, reason: String) {
        let _ = self
            .advance(t, &ClaimState::Settling, Some(ClaimState::Failed { reason }))
            .await;
    }

    /// Spends an in-flight claim on one response served unpaid (the facilitator could not verify it, on a
    /// route that fails open): the authorization never serves again. `false`: it could not be recorded (the
    /// store failed, or the claim is no longer this request's), so nothing may be served.
    pub async fn served_unpaid(&self, t: &ClaimTicket) -> bool {
        matches!(
            self.advance(t, &ClaimState::InFlight, Some(ClaimState::ServedUnpaid))
                .await,
            Ok(true)
        )
    }

    /// Frees an in-flight claim (nothing was sent for settlement). A claim already handed to the
    /// facilitator is untouched.
    pub async fn release(&self, t: &ClaimTicket) {
        let _ = self.advance(t, &ClaimState::InFlight, None).await;
    }

    /// Takes over an authorization whose settlement outcome is unknown (`state`: settling or in doubt),
    /// so one request can settle the same payment again and, if it settled, be served. Only the same
    /// payment (by digest) qualifies, and only one request gets it. The new ticket is `Settling`.
    pub async fn take_over(
        &self,
        key: &AuthorizationId,
        state: &ClaimState,
        current: &Record,
    ) -> Result<Option<ClaimTicket>, StoreError> {
        let ticket = ClaimTicket {
            key: key.clone(),
            holder: self.next_holder.fetch_add(1, Ordering::Relaxed),
            payment: current.payment,
            expires_at: current.expires_at,
            via: current.facilitator,
            charge: current.charge,
        };
        let now = self.clock.now();
        let next = self.record(&ticket, ClaimState::Settling, now);
        let won = self
            .store
            .swap(key, current.holder, state, Some(next), now)
            .await
            .map_err(|e| self.store_failed(e))?;
        Ok(won.then_some(ticket))
    }

    /// Every payment whose settlement outcome is unknown, for an operator.
    pub async fn unknown(&self) -> Result<Vec<(AuthorizationId, Record)>, StoreError> {
        self.store
            .unknown(self.clock.now())
            .await
            .map_err(|e| self.store_failed(e))
    }

    /// An operator's word on a payment whose outcome is unknown: settled in a transaction they checked, or
    /// not settled. `Ok(Err(why))` when it is not such a payment now (unknown key, already resolved, or
    /// being settled by a request at this moment).
    pub async fn resolve_by_hand(
        &self,
        key: &AuthorizationId,
        outcome: ClaimState,
    ) -> Result<Result<(), String>, StoreError> {
        let now = self.clock.now();
        let Some(current) = self.get(key).await? else {
            return Ok(Err("no live claim for this payment".into()));
        };
        if !current.state.is_unknown() {
            return Ok(Err(format!("its outcome is known already ({:?})", current.state)));
        }
        if current.state == ClaimState::Settling && now < current.lease_until {
            return Ok(Err(format!(
                "a request is settling it right now; retry in {} s",
                current.lease_until - now
            )));
        }
        let transaction = match &outcome {
            ClaimState::Settled { transaction } => Some(transaction.clone()),
            ClaimState::Failed { .. } => None,
            other => return Ok(Err(format!("{other:?} is not an outcome"))),
        };
        let next = Record {
            state: outcome,
            lease_until: now.saturating_add(self.lease_secs),
            ..current.clone()
        };
        let won = self
            .store
            .swap(key, current.holder, &current.state, Some(next), now)
            .await
            .map_err(|e| self.store_failed(e))?;
        if !won {
            return Ok(Err("it changed meanwhile; list the payments again".into()));
        }
        if let (Some(cache), Some(t)) = (&self.settled, transaction) {
            cache.insert(key.clone(), t).await;
        }
        Ok(Ok(()))
    }

    /// The live record of an authorization, if claimed.
    pub async fn get(&self, key: &AuthorizationId) -> Result<Option<Record>, StoreError> {
        self.store
            .get(key, self.clock.now())
            .await
            .map_err(|e| self.store_failed(e))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::gateway::store::memory::MemoryStore;
    use crate::protocol::network::Network;
    use alloy::primitives::{Address, B256};

    const NOW: u64 = 1_800_000_000;
    const LEASE: Duration = Duration::from_secs(300);
    const LEASE_SECS: u64 = 300;

    fn key(n: u8) -> AuthorizationId {
        AuthorizationId {
            network: Network::new(1),
            asset: Address::ZERO,
            payer: Address::ZERO,
            nonce: B256::repeat_byte(n),
        }
    }

    fn later() -> u64 {
        NOW + 600
    }

    fn table(capacity: u64) -> Claims {
        let clock = Clock::fixed(NOW);
        Claims::new(
            Arc::new(MemoryStore::new(capacity, clock.clone())),
            clock,
            metrics(),
            LEASE,
            LEASE,
        )
    }

    fn metrics() -> Arc<Metrics> {
        Arc::new(Metrics::new().unwrap())
    }

    async fn state(c: &Claims, k: &AuthorizationId) -> Option<ClaimState> {
        c.get(k).await.unwrap().map(|r| r.state)
    }

    #[tokio::test]
    async fn one_claim_per_authorization_until_released() {
        let claims = table(10);
        let t = claims.claim(key(1), later(), [0; 32], 0).await.unwrap();
        assert_eq!(
            claims.claim(key(1), later(), [0; 32], 0).await,
            Err(ClaimRefusal::InFlight)
        );
        claims.release(&t).await;
        let t2 = claims.claim(key(1), later(), [0; 32], 0).await.unwrap();
        // A stale ticket cannot free the new holder's claim.
        claims.release(&t).await;
        assert_eq!(
            claims.claim(key(1), later(), [0; 32], 0).await,
            Err(ClaimRefusal::InFlight)
        );
        assert!(claims.settling(&t2).await.unwrap());
        // Handed to the facilitator: a release (the request ending) no longer frees it.
        claims.release(&t2).await;
        assert_eq!(state(&claims, &key(1)).await, Some(ClaimState::Settling));
        assert!(claims.settled(&t2, "0xabc".into()).await);
        assert_eq!(
            claims.claim(key(1), later(), [0; 32], 0).await,
            Err(ClaimRefusal::Settled {
                transaction: "0xabc".into()
            })
        );
        assert!(matches!(
            state(&claims, &key(1)).await,
            Some(ClaimState::Settled { .. })
        ));
    }

    #[tokio::test]
    async fn an_unknown_outcome_is_taken_over_once_by_the_same_payment() {
        let claims = table(10);
        let t = claims.claim(key(4), later(), [7; 32], 0).await.unwrap();
        assert!(claims.settling(&t).await.unwrap());
        claims.in_doubt(&t, "0xfeed".into()).await;
        assert_eq!(
            claims.claim(key(4), later(), [7; 32], 0).await,
            Err(ClaimRefusal::InDoubt {
                transaction: "0xfeed".into()
            })
        );
        let current = claims.get(&key(4)).await.unwrap().unwrap();
        let other = ClaimState::InDoubt {
            transaction: "0xother".into(),
        };
        assert_eq!(claims.take_over(&key(4), &other, &current).await.unwrap(), None);
        let t2 = claims
            .take_over(&key(4), &current.state, &current)
            .await
            .unwrap()
            .unwrap();
        assert_eq!(
            claims.take_over(&key(4), &current.state, &current).await.unwrap(),
            None,
            "only one request takes it over"
        );
        assert!(claims.settled(&t2, "0xfeed".into()).await);
        assert_eq!(
            state(&claims, &key(4)).await,
            Some(ClaimState::Settled {
                transaction: "0xfeed".into()
            })
        );
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
    async fn concurrent_claims_have_exactly_one_winner() {
        let claims = Arc::new(table(100));
        // On several threads, released together: a non-atomic insert would let two through.
        let barrier = Arc::new(tokio::sync::Barrier::new(16));
        let tasks: Vec<_> = (0..16)
            .map(|_| {
                let (c, b) = (claims.clone(), barrier.clone());
                tokio::spawn(async move {
                    b.wait().await;
                    c.claim(key(7), later(), [0; 32], 0).await.is_ok()
                })
            })
            .collect();
        let mut wins = 0;
        for t in tasks {
            wins += usize::from(t.await.unwrap());
        }
        assert_eq!(wins, 1);
    }

    #[tokio::test]
    async fn a_full_table_refuses_instead_of_evicting() {
        let claims = table(2);
        claims.claim(key(1), later(), [0; 32], 0).await.unwrap();
        let t2 = claims.claim(key(2), later(), [0; 32], 0).await.unwrap();
        assert_eq!(claims.claim(key(3), later(), [0; 32], 0).await, Err(ClaimRefusal::Full));
        assert_eq!(
            claims.claim(key(1), later(), [0; 32], 0).await,
            Err(ClaimRefusal::InFlight)
        );
        // Releasing one makes room again.
        claims.release(&t2).await;
        assert!(claims.claim(key(3), later(), [0; 32], 0).await.is_ok());
    }

    #[tokio::test]
    async fn a_dead_holders_claim_is_free_again_after_its_lease_on_the_clock() {
        let clock = Clock::fixed(NOW);
        let claims = Claims::new(
            Arc::new(MemoryStore::new(10, clock.clone())),
            clock.clone(),
            metrics(),
            LEASE,
            LEASE,
        );
        let _lost = claims.claim(key(9), NOW + 3600, [0; 32], 0).await.unwrap();
        clock.set(NOW + LEASE_SECS - 1);
        assert_eq!(
            claims.claim(key(9), NOW + 3600, [0; 32], 0).await,
            Err(ClaimRefusal::InFlight)
        );
        clock.set(NOW + LEASE_SECS);
        assert!(claims.claim(key(9), NOW + 3600, [0; 32], 0).await.is_ok());
        // Records are forgotten at their expiry.
        clock.set(NOW + 3600);
        assert_eq!(claims.get(&key(9)).await.unwrap(), None);
        // A failed attempt is kept, with its reason, but frees the authorization.
        let t = claims.claim(key(11), NOW + 3700, [0; 32], 0).await.unwrap();
        assert!(claims.settling(&t).await.unwrap());
        claims.failed(&t, "invalid_exact_evm_insufficient_balance".into()).await;
        assert_eq!(
            claims.store.get(&key(11), NOW + 3600).await.unwrap(),
            None,
            "not live: it holds nothing"
        );
        assert!(
            claims.claim(key(11), NOW + 3700, [0; 32], 0).await.is_ok(),
            "usable again"
        );
        // ...and an unknown outcome outlives its authorization by days.
        let t = claims.claim(key(10), NOW + 3700, [0; 32], 0).await.unwrap();
        assert!(claims.settling(&t).await.unwrap());
        claims.in_doubt(&t, "0x1".into()).await;
        clock.set(NOW + 3 * 24 * 3600);
        assert!(matches!(
            state(&claims, &key(10)).await,
            Some(ClaimState::InDoubt { .. })
        ));
    }
}
