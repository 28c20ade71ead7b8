//! Stage 3, claim: single use of an authorization. Its identity (network, asset, payer, nonce) is claimed
//! atomically before any facilitator call, so a second request carrying the same payment, in flight or
//! after settlement, is refused without reaching the facilitator or the upstream (x402-notes §12.2).

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use moka::future::Cache;
use moka::notification::RemovalCause;
use moka::ops::compute::{CompResult, Op};
use moka::policy::{EvictionPolicy, Expiry};

use crate::core::time::Clock;
use crate::protocol::exact::AuthorizationId;

/// Where a claimed authorization stands.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ClaimState {
    /// A request is using it now.
    InFlight,
    /// Settled on chain in this transaction.
    Settled { transaction: String },
    /// Sent for settlement, outcome unknown (pending or the facilitator timed out): never reusable.
    InDoubt { transaction: String },
}

#[derive(Debug, Clone)]
struct Claim {
    state: ClaimState,
    /// Digest of the payment as presented (payload and requirement): only that same payment may take an
    /// in-doubt claim over, not another one reusing the nonce on different terms.
    payment: [u8; 32],
    /// Unix seconds after which the claim is forgotten (the chain refuses the authorization by then).
    expires_at: u64,
    /// Which request holds it, so a stale release cannot free someone else's claim.
    holder: u64,
}

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
    #[error("the gateway is tracking too many unsettled payments right now; retry shortly")]
    Full,
}

/// A held claim. Whoever holds it must settle it, mark it in doubt, or release it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClaimTicket {
    key: AuthorizationId,
    holder: u64,
}

fn refusal(state: ClaimState) -> ClaimRefusal {
    match state {
        ClaimState::InFlight => ClaimRefusal::InFlight,
        ClaimState::Settled { transaction } => ClaimRefusal::Settled { transaction },
        ClaimState::InDoubt { transaction } => ClaimRefusal::InDoubt { transaction },
    }
}

/// Expires each claim at its own `expires_at`, read on the injected clock.
struct UntilExpiry(Clock);

impl UntilExpiry {
    fn remaining(&self, claim: &Claim) -> Option<Duration> {
        Some(Duration::from_secs(claim.expires_at.saturating_sub(self.0.now())))
    }
}

impl Expiry<AuthorizationId, Claim> for UntilExpiry {
    fn expire_after_create(&self, _: &AuthorizationId, claim: &Claim, _: Instant) -> Option<Duration> {
        self.remaining(claim)
    }
    fn expire_after_update(
        &self,
        _: &AuthorizationId,
        claim: &Claim,
        _: Instant,
        _: Option<Duration>,
    ) -> Option<Duration> {
        self.remaining(claim)
    }
}

/// The claim table: bounded, LRU (TinyLFU admission could refuse a new key), entries expire after
/// `validBefore` plus a grace (`rules::window::claim_expiry`).
pub struct Claims {
    cache: Cache<AuthorizationId, Claim>,
    capacity: u64,
    /// Live entries, counted exactly (moka's own count lags until its maintenance runs).
    live: Arc<AtomicU64>,
    next_holder: AtomicU64,
}

impl Claims {
    /// A table for at most `capacity` live authorizations, expiring claims on `clock`.
    pub fn new(capacity: u64, clock: Clock) -> Self {
        let live = Arc::new(AtomicU64::new(0));
        let on_removal = live.clone();
        let cache = Cache::builder()
            // Headroom over the admission check below, so the cache itself never evicts a live claim.
            .max_capacity(capacity.saturating_mul(2))
            .eviction_policy(EvictionPolicy::lru())
            .expire_after(UntilExpiry(clock))
            .eviction_listener(move |_, _, cause| {
                if cause != RemovalCause::Replaced {
                    on_removal.fetch_sub(1, Ordering::Relaxed);
                }
            })
            .build();
        Claims {
            cache,
            capacity,
            live,
            next_holder: AtomicU64::new(1),
        }
    }

    /// Claims `key` for one request, atomically, until `expires_at` (unix seconds).
    pub async fn claim(
        &self,
        key: AuthorizationId,
        expires_at: u64,
        payment: [u8; 32],
    ) -> Result<ClaimTicket, ClaimRefusal> {
        if self.live.load(Ordering::Relaxed) >= self.capacity {
            // Expired entries are only counted out when moka's maintenance runs.
            self.cache.run_pending_tasks().await;
            if self.live.load(Ordering::Relaxed) >= self.capacity {
                // A known authorization still gets its own answer; only new ones are turned away.
                return Err(self
                    .cache
                    .get(&key)
                    .await
                    .map_or(ClaimRefusal::Full, |c| refusal(c.state)));
            }
        }
        let holder = self.next_holder.fetch_add(1, Ordering::Relaxed);
        let entry = self
            .cache
            .entry(key.clone())
            .or_insert_with(async {
                Claim {
                    state: ClaimState::InFlight,
                    payment,
                    expires_at,
                    holder,
                }
            })
            .await;
        if entry.is_fresh() {
            self.live.fetch_add(1, Ordering::Relaxed);
            return Ok(ClaimTicket { key, holder });
        }
        Err(refusal(entry.into_value().state))
    }

    /// Records the settlement: the authorization stays refused until it expires.
    pub async fn settled(&self, ticket: &ClaimTicket, transaction: String) {
        self.set(ticket, Some(ClaimState::Settled { transaction })).await;
    }

    /// Records an unknown outcome: never reusable, never treated as unpaid.
    pub async fn in_doubt(&self, ticket: &ClaimTicket, transaction: String) {
        self.set(ticket, Some(ClaimState::InDoubt { transaction })).await;
    }

    /// Frees an in-flight claim (no settlement happened), so the payer can use the authorization again.
    pub async fn release(&self, ticket: &ClaimTicket) {
        self.set(ticket, None).await;
    }

    /// Takes over an authorization in doubt (`transaction` sent, outcome unknown) so one request can
    /// settle it again and, if it settled, be served. Only one request gets it.
    pub async fn take_over(&self, key: &AuthorizationId, transaction: &str, payment: &[u8; 32]) -> Option<ClaimTicket> {
        let holder = self.next_holder.fetch_add(1, Ordering::Relaxed);
        let expected = ClaimState::InDoubt {
            transaction: transaction.to_owned(),
        };
        let payment = *payment;
        let result = self
            .cache
            .entry(key.clone())
            .and_compute_with(|current| async move {
                match current.map(|e| e.into_value()) {
                    Some(c) if c.state == expected && c.payment == payment => Op::Put(Claim {
                        state: ClaimState::InFlight,
                        holder,
                        ..c
                    }),
                    _ => Op::Nop,
                }
            })
            .await;
        match result {
            CompResult::ReplacedWith(e) if e.value().holder == holder => Some(ClaimTicket {
                key: key.clone(),
                holder,
            }),
            _ => None,
        }
    }

    /// The state of an authorization, if claimed.
    pub async fn state(&self, key: &AuthorizationId) -> Option<ClaimState> {
        self.cache.get(key).await.map(|c| c.state)
    }

    /// Moves the ticket's own in-flight claim to `next` (or removes it); anything else is left alone.
    async fn set(&self, ticket: &ClaimTicket, next: Option<ClaimState>) {
        let holder = ticket.holder;
        self.cache
            .entry(ticket.key.clone())
            .and_compute_with(|current| async move {
                match current.map(|e| e.into_value()) {
                    Some(c) if c.holder == holder && c.state == ClaimState::InFlight => match next {
                        Some(state) => Op::Put(Claim { state, ..c }),
                        None => Op::Remove,
                    },
                    _ => Op::Nop,
                }
            })
            .await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    use crate::protocol::network::Network;
    use alloy::primitives::{Address, B256};

    const NOW: u64 = 1_800_000_000;

    fn key(n: u8) -> AuthorizationId {
        AuthorizationId {
            network: Network::new(1),
            asset: Address::ZERO,
            payer: Address::ZERO,
            nonce: B256::repeat_byte(n),
        }
    }

    fn later() -> u64 {
        NOW + 60
    }

    fn table(capacity: u64) -> Claims {
        Claims::new(capacity, Clock::fixed(NOW))
    }

    #[tokio::test]
    async fn one_claim_per_authorization_until_released() {
        let claims = table(10);
        let t = claims.claim(key(1), later(), [0; 32]).await.unwrap();
        assert_eq!(
            claims.claim(key(1), later(), [0; 32]).await,
            Err(ClaimRefusal::InFlight)
        );
        claims.release(&t).await;
        let t2 = claims.claim(key(1), later(), [0; 32]).await.unwrap();
        // A stale ticket cannot free the new holder's claim.
        claims.release(&t).await;
        assert_eq!(
            claims.claim(key(1), later(), [0; 32]).await,
            Err(ClaimRefusal::InFlight)
        );
        claims.settled(&t2, "0xabc".into()).await;
        assert_eq!(
            claims.claim(key(1), later(), [0; 32]).await,
            Err(ClaimRefusal::Settled {
                transaction: "0xabc".into()
            })
        );
        // Settled claims are not released by a late release.
        claims.release(&t2).await;
        assert!(matches!(claims.state(&key(1)).await, Some(ClaimState::Settled { .. })));
    }

    #[tokio::test]
    async fn an_in_doubt_claim_is_taken_over_once() {
        let claims = table(10);
        let t = claims.claim(key(4), later(), [0; 32]).await.unwrap();
        claims.in_doubt(&t, "0xfeed".into()).await;
        assert_eq!(
            claims.claim(key(4), later(), [0; 32]).await,
            Err(ClaimRefusal::InDoubt {
                transaction: "0xfeed".into()
            })
        );
        assert_eq!(claims.take_over(&key(4), "0xother", &[0; 32]).await, None);
        assert_eq!(
            claims.take_over(&key(4), "0xfeed", &[1; 32]).await,
            None,
            "another payment reusing the nonce"
        );
        let t2 = claims.take_over(&key(4), "0xfeed", &[0; 32]).await.unwrap();
        assert_eq!(
            claims.take_over(&key(4), "0xfeed", &[0; 32]).await,
            None,
            "only one request takes it over"
        );
        claims.settled(&t2, "0xfeed".into()).await;
        assert_eq!(
            claims.state(&key(4)).await,
            Some(ClaimState::Settled {
                transaction: "0xfeed".into()
            })
        );
    }

    #[tokio::test]
    async fn concurrent_claims_have_exactly_one_winner() {
        let claims = std::sync::Arc::new(table(100));
        let tasks: Vec<_> = (0..16)
            .map(|_| {
                let c = claims.clone();
                tokio::spawn(async move { c.claim(key(7), later(), [0; 32]).await.is_ok() })
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
        claims.claim(key(1), later(), [0; 32]).await.unwrap();
        claims.claim(key(2), later(), [0; 32]).await.unwrap();
        let t3 = claims.claim(key(3), later(), [0; 32]).await;
        assert_eq!(t3, Err(ClaimRefusal::Full));
        assert_eq!(
            claims.claim(key(1), later(), [0; 32]).await,
            Err(ClaimRefusal::InFlight)
        );
        // Releasing one makes room again.
        let t2 = ClaimTicket { key: key(2), holder: 2 };
        claims.release(&t2).await;
        claims.cache.run_pending_tasks().await;
        assert!(claims.claim(key(3), later(), [0; 32]).await.is_ok());
    }

    #[tokio::test]
    async fn expiry_is_read_on_the_injected_clock() {
        let clock = Clock::fixed(NOW);
        let claims = Claims::new(10, clock.clone());
        let t = claims.claim(key(9), NOW + 30, [0; 32]).await.unwrap();
        claims.settled(&t, "0x1".into()).await;
        assert!(claims.state(&key(9)).await.is_some(), "remembered until its expiry");
        // Expiry is computed on the clock when an entry is written: one written after its time is gone.
        clock.set(NOW + 31);
        let t = claims.claim(key(8), NOW + 30, [0; 32]).await.unwrap();
        claims.settled(&t, "0x2".into()).await;
        assert_eq!(claims.state(&key(8)).await, None);
    }
}
