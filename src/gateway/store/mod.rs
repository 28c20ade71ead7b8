//! Where payment state lives: each authorization's claim and what became of its settlement. One trait,
//! three places: this process's memory (the default), a SQLite file (one node; survives a crash), or Redis
//! (several replicas share it). The store keeps records and swaps them atomically; it decides no policy,
//! which is `claims`' job. Every operation is on one key, so Redis Cluster and Valkey work too.

pub mod memory;
pub mod redis;
pub mod sqlite;

use std::sync::Arc;

use alloy::primitives::U256;
use async_trait::async_trait;
use serde::{Deserialize, Serialize};

use crate::config::{RedisDurability, StoreUrl};
use crate::core::time::Clock;
use crate::protocol::exact::AuthorizationId;

/// Where a claimed authorization stands.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "state", rename_all = "snake_case")]
pub enum ClaimState {
    /// A request holds it (verifying, proxying); a holder that died leaves it to its lease.
    InFlight,
    /// Handed to the facilitator for settlement; outcome not recorded yet. Never reusable.
    Settling,
    /// Settled on chain in this transaction.
    Settled { transaction: String },
    /// Sent for settlement, outcome unknown (pending, lost answer): never reusable, never "not paid".
    InDoubt { transaction: String },
    /// Served once without payment because the facilitator could not verify it, on a route that allows
    /// that (`on_facilitator_error: allow`): spent, never reusable, never settled.
    ServedUnpaid,
    /// Definitely not settled, for this reason. Kept as the record of the attempt, but it no longer holds the
    /// authorization: the payer may use it again (after topping up, say).
    Failed { reason: String },
}

/// A claim as stored.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Record {
    #[serde(flatten)]
    pub state: ClaimState,
    /// SHA-256 of the facilitator request (payload and requirement): only that same payment may take an
    /// unknown outcome over, not another one reusing the nonce on different terms.
    #[serde(with = "hex32")]
    pub payment: [u8; 32],
    /// Which request holds it, unique across processes, so a stale write cannot touch someone else's claim.
    /// Written as text: Redis' Lua reads JSON numbers as doubles.
    #[serde(with = "text_u64")]
    pub holder: u64,
    /// Unix seconds after which the record is forgotten (the chain refuses the authorization by then).
    pub expires_at: u64,
    /// Unix seconds after which an `InFlight` claim whose holder vanished may be claimed again.
    pub lease_until: u64,
    /// Which facilitator (by its place in the configured list) verifies and settles it: a payment whose
    /// outcome is unknown is settled again only there. Absent in records written before there were lists.
    #[serde(default)]
    pub facilitator: u8,
    /// `upto`: the amount handed to the facilitator for settlement (set from `Settling` on), so a payment
    /// whose outcome is unknown is settled again for the same charge (the memory store keeps it only
    /// while the outcome is unknown).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub charge: Option<U256>,
}

/// The store failed; the request path answers 503 and never treats this as "not paid" or "paid".
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("payment store {backend}: {message}")]
pub struct StoreError {
    pub backend: &'static str,
    pub message: String,
}

/// What an insert came to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Insert {
    /// The record is in.
    Inserted,
    /// A live record is there already.
    Exists(Record),
    /// The store holds as many live claims as it may (memory only): fail closed, evict nothing.
    Full,
}

/// Plain entries under this prefix are never evicted for room by the memory store (its other entries are
/// an LRU cache): a `batch-settlement` channel's record holds charges not yet claimed. Only a real
/// deposit makes one, so they cannot be multiplied for free.
pub const PINNED_PREFIX: &str = "channel:";

/// A place for claims. Each method is one atomic step on one key.
#[async_trait]
pub trait Store: Send + Sync {
    /// Inserts `record` unless the key holds a live record (an `InFlight` one past its lease at `now` does
    /// not count).
    async fn insert(&self, id: &AuthorizationId, record: Record, now: u64) -> Result<Insert, StoreError>;

    /// The live record, if any.
    async fn get(&self, id: &AuthorizationId, now: u64) -> Result<Option<Record>, StoreError>;

    /// Replaces the record held by `holder` in state `state` with `next` (`None` deletes it). `Ok(false)`:
    /// the record was not that one, nothing changed.
    async fn swap(
        &self,
        id: &AuthorizationId,
        holder: u64,
        state: &ClaimState,
        next: Option<Record>,
        now: u64,
    ) -> Result<bool, StoreError>;

    /// Puts `value` at `key` until `expires_at` unless a live entry is there; `Ok(Some(existing))` when one
    /// is. Plain entries (not claims), for the `payment-identifier` extension.
    async fn put_new(&self, key: &str, value: String, expires_at: u64, now: u64) -> Result<Option<String>, StoreError>;

    /// Puts `value` at `key` until `expires_at`, replacing what is there.
    async fn put(&self, key: &str, value: String, expires_at: u64, now: u64) -> Result<(), StoreError>;

    /// Removes `key`.
    async fn remove(&self, key: &str) -> Result<(), StoreError>;

    /// The live plain entry at `key`, if any.
    async fn entry(&self, key: &str, now: u64) -> Result<Option<String>, StoreError>;

    /// Replaces the live entry at `key` by `next` (until `expires_at`; `None` removes it), only if it is
    /// `expected` now (`None`: no live entry). `Ok(false)`: it was something else, and nothing changed.
    /// One atomic step, across replicas: what a read-modify-write of a shared record (a
    /// `batch-settlement` channel) is built on.
    async fn swap_entry(
        &self,
        key: &str,
        expected: Option<&str>,
        next: Option<String>,
        expires_at: u64,
        now: u64,
    ) -> Result<bool, StoreError>;

    /// Every live plain entry whose key starts with `prefix` (the `batch-settlement` channels, for the
    /// claimer and `x402-gateway channels`). A scan: never on the request path.
    async fn scan_entries(&self, prefix: &str, now: u64) -> Result<Vec<(String, String)>, StoreError>;

    /// Whether the store answers (readiness).
    async fn ping(&self) -> Result<(), StoreError>;

    /// Every live claim whose settlement outcome is unknown (settling, in doubt), for an operator to see
    /// and resolve (`x402-gateway payments`). A scan: never on the request path.
    async fn unknown(&self, now: u64) -> Result<Vec<(AuthorizationId, Record)>, StoreError>;

    /// Whether the store lives in this process, so that a lookup costs no more than a cache's would.
    fn in_process(&self) -> bool {
        false
    }

    /// Claims held in this process, for `x402_cache_entries`; `None` for stores outside the process.
    fn entries(&self) -> Option<u64> {
        None
    }
}

/// Opens the store a config names. `capacity` bounds the memory store; `clock` expires its records;
/// `durability` says whether a Redis that may lose claims is refused.
pub fn open(
    url: &StoreUrl,
    capacity: u64,
    clock: Clock,
    durability: RedisDurability,
) -> Result<Arc<dyn Store>, StoreError> {
    Ok(match url {
        StoreUrl::Memory => Arc::new(memory::MemoryStore::new(capacity, clock)),
        StoreUrl::Sqlite(path) => Arc::new(sqlite::SqliteStore::open(path)?),
        StoreUrl::Redis(url) => Arc::new(redis::RedisStore::open(url, durability)?),
    })
}

impl Record {
    /// Whether the record still holds its authorization at `now`: not expired, not a failed attempt, and not
    /// an `InFlight` claim past its lease.
    pub fn is_live(&self, now: u64) -> bool {
        let failed = matches!(self.state, ClaimState::Failed { .. });
        now < self.expires_at && !failed && !(self.state == ClaimState::InFlight && now >= self.lease_until)
    }
}

impl ClaimState {
    /// Whether the settlement outcome is unknown: handed to the facilitator, no answer recorded.
    pub fn is_unknown(&self) -> bool {
        matches!(self, ClaimState::Settling | ClaimState::InDoubt { .. })
    }
}

/// What every claim's key starts with.
pub const CLAIM_PREFIX: &str = "x402:claim:";

/// The key of an authorization, the same in every backend.
pub fn key(id: &AuthorizationId) -> String {
    format!(
        "{CLAIM_PREFIX}{}:{}:{}:{}",
        id.network.chain_id, id.asset, id.payer, id.nonce
    )
}

/// The authorization a store key names (the inverse of [`key`]).
pub fn parse_key(k: &str) -> Option<AuthorizationId> {
    let mut parts = k.strip_prefix(CLAIM_PREFIX)?.split(':');
    let id = AuthorizationId {
        network: crate::protocol::network::Network::new(parts.next()?.parse().ok()?),
        asset: parts.next()?.parse().ok()?,
        payer: parts.next()?.parse().ok()?,
        nonce: parts.next()?.parse().ok()?,
    };
    parts.next().is_none().then_some(id)
}

mod text_u64 {
    use serde::{Deserialize, Deserializer, Serializer};

    pub fn serialize<S: Serializer>(v: &u64, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&v.to_string())
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<u64, D::Error> {
        String::deserialize(d)?.parse().map_err(serde::de::Error::custom)
    }
}

mod hex32 {
    use serde::{Deserialize, Deserializer, Serializer};

    pub fn serialize<S: Serializer>(v: &[u8; 32], s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&alloy::hex::encode(v))
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<[u8; 32], D::Error> {
        let s = String::deserialize(d)?;
        let mut out = [0u8; 32];
        alloy::hex::decode_to_slice(&s, &mut out).map_err(serde::de::Error::custom)?;
        Ok(out)
    }
}
