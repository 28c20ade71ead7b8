//! `store: memory`: claims in this process only. Fast and enough for one replica that may forget its
//! payments on a restart.
//!
//! Claims live in a sharded hash map of compact records (about 180 bytes each with their key: a transaction
//! hash is kept as 32 bytes, not as text), each forgotten at its own `expires_at` by a sweep that runs on a
//! shard at most once a second, when it is written to. A general-purpose cache would cost several times
//! that per entry in bookkeeping (access order, timer wheel) the store does not need: it never evicts a
//! live claim, it refuses new ones when full. The payment-identifier entries, rare and small, stay in moka.

use std::collections::hash_map::{Entry as Slot, HashMap};
use std::hash::{BuildHasher, RandomState};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Mutex, MutexGuard};
use std::time::{Duration, Instant};

use alloy::primitives::{B256, U256};
use async_trait::async_trait;
use moka::future::Cache;
use moka::ops::compute::{CompResult, Op};
use moka::policy::{EvictionPolicy, Expiry};

use super::{ClaimState, Insert, Record, Store, StoreError, PINNED_PREFIX};
use crate::core::time::Clock;
use crate::protocol::exact::AuthorizationId;

/// Shards of the claim map: enough that two worker threads rarely meet on one lock.
const SHARDS: usize = 16;

/// Expires each payment-identifier entry at its own `expires_at`, read on the injected clock.
#[derive(Clone)]
struct UntilExpiry(Clock);

/// A plain entry and when it is forgotten.
#[derive(Clone)]
struct Entry {
    value: String,
    expires_at: u64,
}

impl Expiry<String, Entry> for UntilExpiry {
    fn expire_after_create(&self, _: &String, e: &Entry, _: Instant) -> Option<Duration> {
        Some(Duration::from_secs(e.expires_at.saturating_sub(self.0.now())))
    }
    fn expire_after_update(&self, _: &String, e: &Entry, _: Instant, _: Option<Duration>) -> Option<Duration> {
        Some(Duration::from_secs(e.expires_at.saturating_sub(self.0.now())))
    }
}

/// A transaction as a claim keeps it: a canonical `0x` + 64 lowercase hex digits as its 32 bytes, anything
/// else (a facilitator's odd spelling, a test's) as the text itself, so it reads back exactly as written.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Transaction {
    Hash(B256),
    Text(Box<str>),
}

impl Transaction {
    fn of(text: &str) -> Self {
        let canonical = text.len() == 66
            && text.starts_with("0x")
            && text[2..]
                .bytes()
                .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b));
        match text.parse::<B256>() {
            Ok(hash) if canonical => Transaction::Hash(hash),
            _ => Transaction::Text(text.into()),
        }
    }

    fn text(&self) -> String {
        match self {
            Transaction::Hash(hash) => hash.to_string(),
            Transaction::Text(text) => text.to_string(),
        }
    }
}

/// [`ClaimState`], compact, with an `upto` payment's charge where a record must keep it (while its
/// settlement outcome is unknown), boxed because every claim pays for the widest variant.
#[derive(Debug, Clone, PartialEq, Eq)]
enum State {
    InFlight,
    Settling(Option<Box<U256>>),
    Settled(Transaction),
    InDoubt(Transaction),
    InDoubtCharged(Box<(Transaction, U256)>),
    ServedUnpaid,
    Failed(Box<str>),
}

impl State {
    fn of(s: &ClaimState, charge: Option<U256>) -> Self {
        match (s, charge) {
            (ClaimState::InFlight, _) => State::InFlight,
            (ClaimState::Settling, c) => State::Settling(c.map(Box::new)),
            (ClaimState::Settled { transaction }, _) => State::Settled(Transaction::of(transaction)),
            (ClaimState::InDoubt { transaction }, None) => State::InDoubt(Transaction::of(transaction)),
            (ClaimState::InDoubt { transaction }, Some(c)) => {
                State::InDoubtCharged(Box::new((Transaction::of(transaction), c)))
            }
            (ClaimState::ServedUnpaid, _) => State::ServedUnpaid,
            (ClaimState::Failed { reason }, _) => State::Failed(reason.as_str().into()),
        }
    }

    /// The state, and the charge it keeps.
    fn claim(&self) -> (ClaimState, Option<U256>) {
        match self {
            State::InFlight => (ClaimState::InFlight, None),
            State::Settling(c) => (ClaimState::Settling, c.as_deref().copied()),
            State::Settled(t) => (ClaimState::Settled { transaction: t.text() }, None),
            State::InDoubt(t) => (ClaimState::InDoubt { transaction: t.text() }, None),
            State::InDoubtCharged(b) => (
                ClaimState::InDoubt {
                    transaction: b.0.text(),
                },
                Some(b.1),
            ),
            State::ServedUnpaid => (ClaimState::ServedUnpaid, None),
            State::Failed(reason) => (
                ClaimState::Failed {
                    reason: reason.to_string(),
                },
                None,
            ),
        }
    }

    /// Whether this is `s` (whatever charge it keeps).
    fn is(&self, s: &ClaimState) -> bool {
        match (self, s) {
            (State::InFlight, ClaimState::InFlight)
            | (State::Settling(_), ClaimState::Settling)
            | (State::ServedUnpaid, ClaimState::ServedUnpaid) => true,
            (State::Settled(t), ClaimState::Settled { transaction })
            | (State::InDoubt(t), ClaimState::InDoubt { transaction }) => *t == Transaction::of(transaction),
            (State::InDoubtCharged(b), ClaimState::InDoubt { transaction }) => b.0 == Transaction::of(transaction),
            (State::Failed(r), ClaimState::Failed { reason }) => **r == **reason,
            _ => false,
        }
    }
}

/// [`Record`], compact.
struct Held {
    state: State,
    payment: [u8; 32],
    holder: u64,
    expires_at: u64,
    lease_until: u64,
    facilitator: u8,
}

impl From<&Record> for Held {
    fn from(r: &Record) -> Self {
        Held {
            state: State::of(&r.state, r.charge),
            payment: r.payment,
            holder: r.holder,
            expires_at: r.expires_at,
            lease_until: r.lease_until,
            facilitator: r.facilitator,
        }
    }
}

impl Held {
    fn record(&self) -> Record {
        let (state, charge) = self.state.claim();
        Record {
            state,
            payment: self.payment,
            holder: self.holder,
            expires_at: self.expires_at,
            lease_until: self.lease_until,
            facilitator: self.facilitator,
            charge,
        }
    }

    /// [`Record::is_live`] without building the record.
    fn is_live(&self, now: u64) -> bool {
        now < self.expires_at
            && !matches!(self.state, State::Failed(_))
            && !(self.state == State::InFlight && now >= self.lease_until)
    }
}

/// One shard: its claims and when it is next swept of expired ones.
#[derive(Default)]
struct Shard {
    claims: HashMap<AuthorizationId, Held>,
    next_sweep: u64,
}

/// The in-memory store.
pub struct MemoryStore {
    shards: Box<[Mutex<Shard>]>,
    hasher: RandomState,
    entries: Cache<String, Entry>,
    /// Entries under [`PINNED_PREFIX`]: kept until they expire, never evicted for room.
    pinned: Cache<String, Entry>,
    capacity: u64,
    /// Claims held (expired ones until their shard is swept), counted exactly.
    live: AtomicU64,
}

impl MemoryStore {
    /// A store for at most `capacity` live claims; past that, new ones are refused, none evicted.
    pub fn new(capacity: u64, clock: Clock) -> Self {
        let entries = Cache::builder()
            .max_capacity(capacity)
            .eviction_policy(EvictionPolicy::lru())
            .expire_after(UntilExpiry(clock.clone()))
            .build();
        let pinned = Cache::builder().expire_after(UntilExpiry(clock)).build();
        MemoryStore {
            shards: (0..SHARDS).map(|_| Mutex::default()).collect(),
            hasher: RandomState::new(),
            entries,
            pinned,
            capacity,
            live: AtomicU64::new(0),
        }
    }

    /// Where the plain entry `key` lives.
    fn cache(&self, key: &str) -> &Cache<String, Entry> {
        if key.starts_with(PINNED_PREFIX) {
            &self.pinned
        } else {
            &self.entries
        }
    }

    /// The shard holding `id`, swept first if its time has come. A panic elsewhere while holding the lock
    /// leaves the map consistent (no operation here panics half-way), so a poisoned lock is used as is.
    fn shard(&self, id: &AuthorizationId, now: u64) -> MutexGuard<'_, Shard> {
        let i = (self.hasher.hash_one(id) % SHARDS as u64) as usize;
        let mut shard = self.shards[i].lock().unwrap_or_else(|e| e.into_inner());
        if due(&shard, now) {
            self.sweep(&mut shard, now);
        }
        shard
    }

    /// Forgets the shard's expired claims, and failed attempts: they hold nothing and nothing reads them
    /// here, so they must not take room from live claims.
    fn sweep(&self, shard: &mut Shard, now: u64) {
        let before = shard.claims.len();
        shard
            .claims
            .retain(|_, h| now < h.expires_at && !matches!(h.state, State::Failed(_)));
        let gone = before - shard.claims.len();
        if gone > 0 {
            self.live.fetch_sub(gone as u64, Ordering::Relaxed);
            if shard.claims.capacity() > 4 * shard.claims.len().max(64) {
                shard.claims.shrink_to_fit();
            }
        }
        shard.next_sweep = now.saturating_add(1);
    }

    /// Sweeps every shard whose time has come (the store looks full: some of it may have expired). At
    /// most once a second per shard, so a store that stays full is not rescanned on every request.
    fn sweep_all(&self, now: u64) {
        for shard in self.shards.iter() {
            let mut shard = shard.lock().unwrap_or_else(|e| e.into_inner());
            if due(&shard, now) {
                self.sweep(&mut shard, now);
            }
        }
    }
}

/// Whether a shard is due a sweep: its second has passed, or the clock went back (a sweep scheduled on
/// the old clock would otherwise wait out the step).
fn due(shard: &Shard, now: u64) -> bool {
    now >= shard.next_sweep || now.saturating_add(1) < shard.next_sweep
}

#[async_trait]
impl Store for MemoryStore {
    fn in_process(&self) -> bool {
        true
    }

    fn entries(&self) -> Option<u64> {
        Some(self.live.load(Ordering::Relaxed))
    }

    async fn insert(&self, id: &AuthorizationId, record: Record, now: u64) -> Result<Insert, StoreError> {
        if self.live.load(Ordering::Relaxed) >= self.capacity {
            self.sweep_all(now);
        }
        let full = self.live.load(Ordering::Relaxed) >= self.capacity;
        let mut shard = self.shard(id, now);
        Ok(match shard.claims.entry(id.clone()) {
            // A known authorization still gets its own answer when full; only new ones are turned away.
            Slot::Occupied(held) if held.get().is_live(now) => Insert::Exists(held.get().record()),
            Slot::Occupied(mut held) => {
                held.insert(Held::from(&record));
                Insert::Inserted
            }
            Slot::Vacant(_) if full => Insert::Full,
            Slot::Vacant(slot) => {
                slot.insert(Held::from(&record));
                self.live.fetch_add(1, Ordering::Relaxed);
                Insert::Inserted
            }
        })
    }

    async fn unknown(&self, now: u64) -> Result<Vec<(AuthorizationId, Record)>, StoreError> {
        let mut out = Vec::new();
        for shard in self.shards.iter() {
            let shard = shard.lock().unwrap_or_else(|e| e.into_inner());
            out.extend(
                shard
                    .claims
                    .iter()
                    .filter(|(_, h)| h.is_live(now))
                    .map(|(id, h)| (id.clone(), h.record()))
                    .filter(|(_, r)| r.state.is_unknown()),
            );
        }
        Ok(out)
    }

    async fn get(&self, id: &AuthorizationId, now: u64) -> Result<Option<Record>, StoreError> {
        let shard = self.shard(id, now);
        Ok(shard.claims.get(id).filter(|h| h.is_live(now)).map(Held::record))
    }

    async fn swap(
        &self,
        id: &AuthorizationId,
        holder: u64,
        state: &ClaimState,
        next: Option<Record>,
        now: u64,
    ) -> Result<bool, StoreError> {
        let mut shard = self.shard(id, now);
        let Slot::Occupied(mut held) = shard.claims.entry(id.clone()) else {
            return Ok(false);
        };
        let h = held.get();
        if h.holder != holder || now >= h.expires_at || !h.state.is(state) {
            return Ok(false);
        }
        match next {
            Some(n) => {
                held.insert(Held::from(&n));
            }
            None => {
                held.remove();
                self.live.fetch_sub(1, Ordering::Relaxed);
            }
        }
        Ok(true)
    }

    async fn put_new(&self, key: &str, value: String, expires_at: u64, now: u64) -> Result<Option<String>, StoreError> {
        let entry = Entry { value, expires_at };
        let result = self
            .cache(key)
            .entry(key.to_owned())
            .and_compute_with(|current| async move {
                match current.map(|e| e.into_value()) {
                    Some(e) if now < e.expires_at => Op::Nop,
                    _ => Op::Put(entry),
                }
            })
            .await;
        Ok(match result {
            CompResult::Unchanged(e) => Some(e.into_value().value),
            _ => None,
        })
    }

    async fn put(&self, key: &str, value: String, expires_at: u64, _now: u64) -> Result<(), StoreError> {
        self.cache(key)
            .insert(key.to_owned(), Entry { value, expires_at })
            .await;
        Ok(())
    }

    async fn remove(&self, key: &str) -> Result<(), StoreError> {
        self.cache(key).invalidate(key).await;
        Ok(())
    }

    async fn entry(&self, key: &str, now: u64) -> Result<Option<String>, StoreError> {
        Ok(self
            .cache(key)
            .get(key)
            .await
            .filter(|e| now < e.expires_at)
            .map(|e| e.value))
    }

    async fn scan_entries(&self, prefix: &str, now: u64) -> Result<Vec<(String, String)>, StoreError> {
        Ok(self
            .cache(prefix)
            .iter()
            .filter(|(k, e)| k.starts_with(prefix) && now < e.expires_at)
            .map(|(k, e)| (k.as_ref().clone(), e.value))
            .collect())
    }

    async fn swap_entry(
        &self,
        key: &str,
        expected: Option<&str>,
        next: Option<String>,
        expires_at: u64,
        now: u64,
    ) -> Result<bool, StoreError> {
        let matched = AtomicBool::new(false);
        self.cache(key)
            .entry(key.to_owned())
            .and_compute_with(|current| {
                let live = current.map(|e| e.into_value()).filter(|e| now < e.expires_at);
                let op = if live.as_ref().map(|e| e.value.as_str()) != expected {
                    Op::Nop
                } else {
                    matched.store(true, Ordering::Relaxed);
                    match next {
                        Some(value) => Op::Put(Entry { value, expires_at }),
                        None => Op::Remove,
                    }
                };
                std::future::ready(op)
            })
            .await;
        Ok(matched.load(Ordering::Relaxed))
    }

    async fn ping(&self) -> Result<(), StoreError> {
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::protocol::network::Network;
    use alloy::primitives::Address;

    const NOW: u64 = 1_800_000_000;

    fn id(n: u64) -> AuthorizationId {
        AuthorizationId {
            network: Network::new(8453),
            asset: Address::repeat_byte(1),
            payer: Address::repeat_byte(2),
            nonce: B256::left_padding_from(&n.to_be_bytes()),
        }
    }

    fn record(state: ClaimState, expires_at: u64) -> Record {
        Record {
            state,
            payment: [9; 32],
            holder: 5,
            expires_at,
            lease_until: expires_at,
            facilitator: 1,
            charge: None,
        }
    }

    #[tokio::test]
    async fn transactions_read_back_exactly_as_written() {
        let store = MemoryStore::new(10, Clock::fixed(NOW));
        let hash = format!("0x{}", "ab".repeat(32));
        let upper = format!("0x{}", "AB".repeat(32));
        for (n, tx) in [hash, upper, "0xabc".to_owned(), String::new()].into_iter().enumerate() {
            let r = record(ClaimState::Settled { transaction: tx }, NOW + 60);
            store.insert(&id(n as u64), r.clone(), NOW).await.unwrap();
            assert_eq!(store.get(&id(n as u64), NOW).await.unwrap(), Some(r));
        }
        assert_eq!(
            Transaction::of(&format!("0x{}", "ab".repeat(32))),
            Transaction::Hash(B256::repeat_byte(0xab)),
            "a canonical hash is kept as its 32 bytes"
        );
    }

    /// An `upto` charge is kept while the outcome is unknown, and a swap matches its state whatever it keeps.
    #[tokio::test]
    async fn an_upto_charge_is_kept_while_the_outcome_is_unknown() {
        let store = MemoryStore::new(10, Clock::fixed(NOW));
        let charged = |state| Record {
            charge: Some(U256::from(2500)),
            ..record(state, NOW + 60)
        };
        let settling = charged(ClaimState::Settling);
        store.insert(&id(1), settling.clone(), NOW).await.unwrap();
        assert_eq!(store.get(&id(1), NOW).await.unwrap(), Some(settling.clone()));
        let in_doubt = charged(ClaimState::InDoubt {
            transaction: format!("0x{}", "cd".repeat(32)),
        });
        let key = id(1);
        let swapped = store.swap(
            &key,
            settling.holder,
            &ClaimState::Settling,
            Some(in_doubt.clone()),
            NOW,
        );
        assert!(swapped.await.unwrap());
        assert_eq!(store.get(&id(1), NOW).await.unwrap(), Some(in_doubt.clone()));
        let settled = charged(ClaimState::Settled {
            transaction: String::new(),
        });
        assert!(store
            .swap(&id(1), in_doubt.holder, &in_doubt.state, Some(settled), NOW)
            .await
            .unwrap());
        // Settled: nothing is settled again, so the charge is not kept.
        assert_eq!(store.get(&id(1), NOW).await.unwrap().unwrap().charge, None);
    }

    #[tokio::test]
    async fn expired_claims_are_swept_and_make_room() {
        let clock = Clock::fixed(NOW);
        let store = MemoryStore::new(3, clock);
        for n in 0..3 {
            let r = record(ClaimState::InFlight, NOW + 10 + n);
            assert_eq!(store.insert(&id(n), r, NOW).await.unwrap(), Insert::Inserted);
        }
        let late = record(ClaimState::InFlight, NOW + 100);
        assert_eq!(store.insert(&id(7), late.clone(), NOW).await.unwrap(), Insert::Full);
        assert_eq!(store.entries(), Some(3));
        // Two have expired by NOW + 11: the full store sweeps and takes the new claim.
        assert_eq!(store.insert(&id(7), late, NOW + 11).await.unwrap(), Insert::Inserted);
        assert_eq!(store.entries(), Some(2));
        assert_eq!(store.get(&id(0), NOW + 11).await.unwrap(), None);
        assert!(store.get(&id(2), NOW + 11).await.unwrap().is_some());
    }

    #[tokio::test]
    async fn failed_attempts_make_room() {
        let store = MemoryStore::new(2, Clock::fixed(NOW));
        let failed = record(ClaimState::Failed { reason: "x".into() }, NOW + 600);
        store.insert(&id(1), failed, NOW).await.unwrap();
        store
            .insert(&id(2), record(ClaimState::InFlight, NOW + 600), NOW)
            .await
            .unwrap();
        assert_eq!(store.entries(), Some(2));
        // Full: the sweep a second later drops the failed attempt, which held nothing.
        let third = record(ClaimState::InFlight, NOW + 600);
        assert_eq!(store.insert(&id(3), third, NOW + 1).await.unwrap(), Insert::Inserted);
        assert_eq!(store.entries(), Some(2));
    }

    #[tokio::test]
    async fn a_clock_stepped_back_does_not_postpone_sweeps() {
        let store = MemoryStore::new(2, Clock::fixed(NOW));
        let shard_of = |n: u64| store.hasher.hash_one(id(n)) % SHARDS as u64;
        // A claim whose shard was swept at NOW (next sweep NOW + 1), then, an hour back, another claim
        // in the same shard that expires ten seconds later.
        store
            .insert(&id(1), record(ClaimState::InFlight, NOW + 600), NOW)
            .await
            .unwrap();
        let same = (2..1000).find(|&n| shard_of(n) == shard_of(1)).unwrap();
        let back = NOW - 3600;
        store
            .insert(&id(same), record(ClaimState::InFlight, back + 10), back)
            .await
            .unwrap();
        assert_eq!(store.entries(), Some(2));
        // Full at back + 11: the expired one is swept, not kept until the clock reaches NOW + 1.
        let next = record(ClaimState::InFlight, back + 600);
        assert_eq!(
            store.insert(&id(5000), next, back + 11).await.unwrap(),
            Insert::Inserted
        );
        assert_eq!(store.get(&id(same), back + 11).await.unwrap(), None);
    }

    #[tokio::test]
    async fn a_swap_needs_the_holder_and_the_state() {
        let store = MemoryStore::new(3, Clock::fixed(NOW));
        let settling = record(ClaimState::Settling, NOW + 60);
        store.insert(&id(1), settling.clone(), NOW).await.unwrap();
        let done = record(
            ClaimState::Settled {
                transaction: "0x1".into(),
            },
            NOW + 60,
        );
        let key = id(1);
        let swap = |holder, state| store.swap(&key, holder, state, Some(done.clone()), NOW);
        assert!(!swap(6, &ClaimState::Settling).await.unwrap(), "another holder");
        assert!(!swap(5, &ClaimState::InFlight).await.unwrap(), "another state");
        assert!(swap(5, &ClaimState::Settling).await.unwrap());
        assert_eq!(store.get(&id(1), NOW).await.unwrap(), Some(done.clone()));
        assert!(store.swap(&id(1), 5, &done.state, None, NOW).await.unwrap());
        assert_eq!(store.entries(), Some(0));
        assert!(!store.swap(&id(1), 5, &done.state, None, NOW).await.unwrap(), "gone");
    }

    #[tokio::test]
    async fn channel_records_are_never_evicted_for_room() {
        let store = MemoryStore::new(2, Clock::fixed(100));
        store.put("channel:x", "kept".into(), 1_000, 100).await.unwrap();
        for i in 0..50 {
            store.put(&format!("id:{i}"), "v".into(), 1_000, 100).await.unwrap();
        }
        store.entries.run_pending_tasks().await;
        assert!(store.entries.entry_count() <= 2, "the other entries are bounded");
        assert_eq!(store.entry("channel:x", 100).await.unwrap().as_deref(), Some("kept"));
        let scanned = store.scan_entries("channel:", 100).await.unwrap();
        assert_eq!(scanned, vec![("channel:x".to_owned(), "kept".to_owned())]);
        assert_eq!(store.entry("channel:x", 1_000).await.unwrap(), None, "it still expires");
    }
}
