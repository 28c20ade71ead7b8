//! `store: "redis://HOST:PORT[/DB]"` (or `rediss://`): claims in Redis, shared by every replica. Each step
//! is one Lua script on one key, so it is atomic in Redis, Redis Cluster and Valkey alike; keys expire in
//! Redis itself at the record's `expires_at`.
//!
//! The connection lives on a small runtime of its own: Pingora runs several runtimes, and the connection's
//! driver must outlive whichever request first opened it. It is opened on first use and reopened after a
//! failure, so the gateway starts and serves free routes while Redis is down, and recovers by itself.

use std::time::Duration;

use async_trait::async_trait;
use redis::aio::{ConnectionManager, ConnectionManagerConfig};
use tokio::sync::Mutex;

use super::{key, ClaimState, Insert, Record, Store, StoreError};
use crate::protocol::exact::AuthorizationId;

/// How long one Redis call may take before the store counts as unreachable (503, never a hang).
const CALL_TIMEOUT: Duration = Duration::from_secs(2);

/// Inserts ARGV[1] (a record) with a TTL of ARGV[3] ms unless a live record is there at ARGV[2] (now: a
/// failed attempt, or an in-flight claim past its lease, is not live); returns the live record, or false.
const INSERT: &str = r"
local cur = redis.call('GET', KEYS[1])
if cur then
  local r = cjson.decode(cur)
  local now = tonumber(ARGV[2])
  if tonumber(r.expires_at) > now and r.state ~= 'failed'
    and not (r.state == 'in_flight' and tonumber(r.lease_until) <= now) then
    return cur
  end
end
redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[3])
return false
";

/// Replaces the record held by ARGV[1] in state ARGV[2] (with transaction ARGV[3]) by ARGV[4] (TTL ARGV[5]
/// ms), or deletes it when ARGV[4] is empty; returns 1 when it did.
const SWAP: &str = r"
local cur = redis.call('GET', KEYS[1])
if not cur then return 0 end
local r = cjson.decode(cur)
if r.holder ~= ARGV[1] or r.state ~= ARGV[2] or (r.transaction or '') ~= ARGV[3] then return 0 end
if ARGV[4] == '' then redis.call('DEL', KEYS[1]) else redis.call('SET', KEYS[1], ARGV[4], 'PX', ARGV[5]) end
return 1
";

/// Puts ARGV[1] with a TTL of ARGV[2] ms unless the key holds a value; returns that value, or false.
const PUT_NEW: &str = r"
local cur = redis.call('GET', KEYS[1])
if cur then return cur end
redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[2])
return false
";

/// The Redis store.
pub struct RedisStore {
    client: redis::Client,
    conn: std::sync::Arc<Mutex<Option<ConnectionManager>>>,
    runtime: tokio::runtime::Handle,
    insert: redis::Script,
    swap: redis::Script,
    put_new: redis::Script,
}

fn err(e: impl std::fmt::Display) -> StoreError {
    StoreError {
        backend: "redis",
        message: e.to_string(),
    }
}

/// Milliseconds from `now` until `expires_at`, at least 1 (Redis refuses a zero TTL).
fn ttl_ms(expires_at: u64, now: u64) -> u64 {
    expires_at.saturating_sub(now).saturating_mul(1000).max(1)
}

/// The state's tag and transaction, as the scripts compare them.
fn tag(state: &ClaimState) -> (&'static str, &str) {
    match state {
        ClaimState::InFlight => ("in_flight", ""),
        ClaimState::Settling => ("settling", ""),
        ClaimState::Settled { transaction } => ("settled", transaction),
        ClaimState::InDoubt { transaction } => ("in_doubt", transaction),
        ClaimState::ServedUnpaid => ("served_unpaid", ""),
        ClaimState::Failed { .. } => ("failed", ""),
    }
}

impl RedisStore {
    /// A store for `url`; nothing is connected yet.
    pub fn open(url: &str) -> Result<Self, StoreError> {
        let client = redis::Client::open(url).map_err(err)?;
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .map_err(err)?;
        let handle = runtime.handle().clone();
        std::thread::Builder::new()
            .name("redis-store".into())
            .spawn(move || runtime.block_on(std::future::pending::<()>()))
            .map_err(err)?;
        Ok(RedisStore {
            client,
            conn: std::sync::Arc::new(Mutex::new(None)),
            runtime: handle,
            insert: redis::Script::new(INSERT),
            swap: redis::Script::new(SWAP),
            put_new: redis::Script::new(PUT_NEW),
        })
    }

    /// Runs `f` with a connection, on the store's runtime, within [`CALL_TIMEOUT`].
    async fn with<T, F, Fut>(&self, f: F) -> Result<T, StoreError>
    where
        T: Send + 'static,
        F: FnOnce(ConnectionManager) -> Fut + Send + 'static,
        Fut: std::future::Future<Output = redis::RedisResult<T>> + Send,
    {
        let (client, slot) = (self.client.clone(), self.conn.clone());
        let task = self.runtime.spawn(async move {
            let conn = {
                let mut slot = slot.lock().await;
                match slot.as_ref() {
                    Some(c) => c.clone(),
                    None => {
                        let config = ConnectionManagerConfig::new()
                            .set_connection_timeout(CALL_TIMEOUT)
                            .set_response_timeout(CALL_TIMEOUT);
                        let c = tokio::time::timeout(CALL_TIMEOUT, ConnectionManager::new_with_config(client, config))
                            .await
                            .map_err(|_| err("connecting timed out"))?
                            .map_err(err)?;
                        *slot = Some(c.clone());
                        c
                    }
                }
            };
            tokio::time::timeout(CALL_TIMEOUT, f(conn))
                .await
                .map_err(|_| err("the call timed out"))?
                .map_err(err)
        });
        task.await.map_err(err)?
    }
}

#[async_trait]
impl Store for RedisStore {
    async fn insert(&self, id: &AuthorizationId, record: Record, now: u64) -> Result<Insert, StoreError> {
        let json = serde_json::to_string(&record).map_err(err)?;
        let (k, script, ttl) = (key(id), self.insert.clone(), ttl_ms(record.expires_at, now));
        let existing: Option<String> = self
            .with(move |mut c| async move { script.key(k).arg(json).arg(now).arg(ttl).invoke_async(&mut c).await })
            .await?;
        Ok(match existing {
            None => Insert::Inserted,
            Some(j) => Insert::Exists(serde_json::from_str(&j).map_err(err)?),
        })
    }

    async fn get(&self, id: &AuthorizationId, now: u64) -> Result<Option<Record>, StoreError> {
        let k = key(id);
        let json: Option<String> = self
            .with(move |mut c| async move { redis::cmd("GET").arg(k).query_async(&mut c).await })
            .await?;
        let record = json
            .map(|j| serde_json::from_str::<Record>(&j))
            .transpose()
            .map_err(err)?;
        Ok(record.filter(|r| r.is_live(now)))
    }

    async fn swap(
        &self,
        id: &AuthorizationId,
        holder: u64,
        state: &ClaimState,
        next: Option<Record>,
        now: u64,
    ) -> Result<bool, StoreError> {
        let (state_tag, transaction) = tag(state);
        let (state_tag, transaction) = (state_tag.to_owned(), transaction.to_owned());
        let (next_json, ttl) = match &next {
            Some(n) => (serde_json::to_string(n).map_err(err)?, ttl_ms(n.expires_at, now)),
            None => (String::new(), 0),
        };
        let (k, script) = (key(id), self.swap.clone());
        let done: i64 = self
            .with(move |mut c| async move {
                script
                    .key(k)
                    .arg(holder.to_string())
                    .arg(state_tag)
                    .arg(transaction)
                    .arg(next_json)
                    .arg(ttl)
                    .invoke_async(&mut c)
                    .await
            })
            .await?;
        Ok(done == 1)
    }

    async fn put_new(&self, key: &str, value: String, expires_at: u64, now: u64) -> Result<Option<String>, StoreError> {
        let (k, script, ttl) = (key.to_owned(), self.put_new.clone(), ttl_ms(expires_at, now));
        self.with(move |mut c| async move { script.key(k).arg(value).arg(ttl).invoke_async(&mut c).await })
            .await
    }

    async fn put(&self, key: &str, value: String, expires_at: u64, now: u64) -> Result<(), StoreError> {
        let (k, ttl) = (key.to_owned(), ttl_ms(expires_at, now));
        self.with(move |mut c| async move {
            redis::cmd("SET")
                .arg(k)
                .arg(value)
                .arg("PX")
                .arg(ttl)
                .query_async::<()>(&mut c)
                .await
        })
        .await
    }

    async fn remove(&self, key: &str) -> Result<(), StoreError> {
        let k = key.to_owned();
        self.with(move |mut c| async move { redis::cmd("DEL").arg(k).query_async::<()>(&mut c).await })
            .await
    }

    async fn unknown(&self, now: u64) -> Result<Vec<(AuthorizationId, Record)>, StoreError> {
        // SCAN, not KEYS: a large store is walked without blocking Redis.
        let found: Vec<(String, Option<String>)> = self
            .with(|mut c| async move {
                let mut out = Vec::new();
                let mut cursor: u64 = 0;
                loop {
                    let (next, keys): (u64, Vec<String>) = redis::cmd("SCAN")
                        .arg(cursor)
                        .arg("MATCH")
                        .arg("x402:claim:*")
                        .arg("COUNT")
                        .arg(1000)
                        .query_async(&mut c)
                        .await?;
                    for k in keys {
                        let v: Option<String> = redis::cmd("GET").arg(&k).query_async(&mut c).await?;
                        out.push((k, v));
                    }
                    if next == 0 {
                        return Ok(out);
                    }
                    cursor = next;
                }
            })
            .await?;
        Ok(found
            .into_iter()
            .filter_map(|(k, v)| Some((super::parse_key(&k)?, serde_json::from_str::<Record>(&v?).ok()?)))
            .filter(|(_, r)| r.is_live(now) && r.state.is_unknown())
            .collect())
    }

    async fn ping(&self) -> Result<(), StoreError> {
        self.with(|mut c| async move { redis::cmd("PING").query_async::<String>(&mut c).await })
            .await
            .map(drop)
    }
}
