//! `store: memory`: claims in this process only (moka, LRU, bounded, each record expiring at its own
//! `expires_at`). Fast and enough for one replica that may forget its payments on a restart.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use async_trait::async_trait;
use moka::future::Cache;
use moka::notification::RemovalCause;
use moka::ops::compute::{CompResult, Op};
use moka::policy::{EvictionPolicy, Expiry};

use super::{ClaimState, Insert, Record, Store, StoreError};
use crate::core::time::Clock;
use crate::protocol::exact::AuthorizationId;

/// Expires each record at its own `expires_at`, read on the injected clock.
#[derive(Clone)]
struct UntilExpiry(Clock);

impl UntilExpiry {
    /// Time left until `expires_at` (unix seconds) on the clock.
    fn until(&self, expires_at: u64) -> Option<Duration> {
        Some(Duration::from_secs(expires_at.saturating_sub(self.0.now())))
    }
}

/// A plain entry and when it is forgotten.
#[derive(Clone)]
struct Entry {
    value: String,
    expires_at: u64,
}

impl Expiry<String, Entry> for UntilExpiry {
    fn expire_after_create(&self, _: &String, e: &Entry, _: Instant) -> Option<Duration> {
        self.until(e.expires_at)
    }
    fn expire_after_update(&self, _: &String, e: &Entry, _: Instant, _: Option<Duration>) -> Option<Duration> {
        self.until(e.expires_at)
    }
}

impl Expiry<AuthorizationId, Record> for UntilExpiry {
    fn expire_after_create(&self, _: &AuthorizationId, r: &Record, _: Instant) -> Option<Duration> {
        self.until(r.expires_at)
    }
    fn expire_after_update(
        &self,
        _: &AuthorizationId,
        r: &Record,
        _: Instant,
        _: Option<Duration>,
    ) -> Option<Duration> {
        self.until(r.expires_at)
    }
}

/// The in-memory store.
pub struct MemoryStore {
    cache: Cache<AuthorizationId, Record>,
    entries: Cache<String, Entry>,
    capacity: u64,
    /// Live entries, counted exactly (moka's own count lags until its maintenance runs).
    live: Arc<AtomicU64>,
}

impl MemoryStore {
    /// A store for at most `capacity` live claims (LRU: TinyLFU admission could refuse a new key).
    pub fn new(capacity: u64, clock: Clock) -> Self {
        let live = Arc::new(AtomicU64::new(0));
        let on_removal = live.clone();
        let cache = Cache::builder()
            // Headroom over the admission check, so the cache itself never evicts a live claim.
            .max_capacity(capacity.saturating_mul(2))
            .eviction_policy(EvictionPolicy::lru())
            .expire_after(UntilExpiry(clock.clone()))
            .eviction_listener(move |_, _, cause| {
                if cause != RemovalCause::Replaced {
                    on_removal.fetch_sub(1, Ordering::Relaxed);
                }
            })
            .build();
        let entries = Cache::builder()
            .max_capacity(capacity)
            .eviction_policy(EvictionPolicy::lru())
            .expire_after(UntilExpiry(clock))
            .build();
        MemoryStore {
            cache,
            entries,
            capacity,
            live,
        }
    }
}

#[async_trait]
impl Store for MemoryStore {
    fn entries(&self) -> Option<u64> {
        Some(self.live.load(Ordering::Relaxed))
    }

    async fn insert(&self, id: &AuthorizationId, record: Record, now: u64) -> Result<Insert, StoreError> {
        if self.live.load(Ordering::Relaxed) >= self.capacity {
            // Expired entries are only counted out when moka's maintenance runs.
            self.cache.run_pending_tasks().await;
            if self.live.load(Ordering::Relaxed) >= self.capacity {
                // A known authorization still gets its own answer; only new ones are turned away.
                return Ok(match self.get(id, now).await? {
                    Some(r) => Insert::Exists(r),
                    None => Insert::Full,
                });
            }
        }
        let holder = record.holder;
        let result = self
            .cache
            .entry(id.clone())
            .and_compute_with(|current| async move {
                match current.map(|e| e.into_value()) {
                    Some(r) if r.is_live(now) => Op::Nop,
                    _ => Op::Put(record),
                }
            })
            .await;
        Ok(match result {
            CompResult::Inserted(_) => {
                self.live.fetch_add(1, Ordering::Relaxed);
                Insert::Inserted
            }
            CompResult::ReplacedWith(e) if e.value().holder == holder => Insert::Inserted,
            CompResult::Unchanged(e) | CompResult::ReplacedWith(e) => Insert::Exists(e.into_value()),
            CompResult::StillNone(_) | CompResult::Removed(_) => Insert::Full,
        })
    }

    async fn get(&self, id: &AuthorizationId, now: u64) -> Result<Option<Record>, StoreError> {
        Ok(self.cache.get(id).await.filter(|r| r.is_live(now)))
    }

    async fn swap(
        &self,
        id: &AuthorizationId,
        holder: u64,
        state: &ClaimState,
        next: Option<Record>,
        now: u64,
    ) -> Result<bool, StoreError> {
        let state = state.clone();
        let result = self
            .cache
            .entry(id.clone())
            .and_compute_with(|current| async move {
                match current.map(|e| e.into_value()) {
                    Some(r) if r.holder == holder && r.state == state && now < r.expires_at => match next {
                        Some(n) => Op::Put(n),
                        None => Op::Remove,
                    },
                    _ => Op::Nop,
                }
            })
            .await;
        Ok(matches!(result, CompResult::ReplacedWith(_) | CompResult::Removed(_)))
    }

    async fn put_new(&self, key: &str, value: String, expires_at: u64, now: u64) -> Result<Option<String>, StoreError> {
        let entry = Entry { value, expires_at };
        let result = self
            .entries
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
        self.entries.insert(key.to_owned(), Entry { value, expires_at }).await;
        Ok(())
    }

    async fn remove(&self, key: &str) -> Result<(), StoreError> {
        self.entries.invalidate(key).await;
        Ok(())
    }

    async fn ping(&self) -> Result<(), StoreError> {
        Ok(())
    }
}
