//! `store: "redis://HOST:PORT[/DB]"` (or `rediss://`): claims in Redis, shared by every replica. Each step
//! is one Lua script on one key, so it is atomic in Redis, Redis Cluster and Valkey alike; keys expire in
//! Redis itself at the record's `expires_at`.
//!
//! The connection lives on a small runtime of its own: Pingora runs several runtimes, and the connection's
//! driver must outlive whichever request first opened it. It is opened on first use and reopened after a
//! failure, so the gateway starts and serves free routes while Redis is down, and recovers by itself; one
//! task connects at a time and the others fail at once, and every call has one deadline. A Redis that may
//! evict or forget claims is refused on connecting (`redis_durability`). A step that timed out after it may
//! have run is read back, never reported as not done.

use std::sync::Arc;
use std::time::Duration;

use arc_swap::ArcSwapOption;
use async_trait::async_trait;
use redis::aio::{ConnectionManager, ConnectionManagerConfig};
use tokio::sync::Mutex;

use super::{key, ClaimState, Insert, Record, Store, StoreError, CLAIM_PREFIX};
use crate::config::RedisDurability;
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

/// Replaces KEYS[1] by ARGV[4] (TTL ARGV[5] ms; deleted when ARGV[3] is '0') if it holds ARGV[2] (absent
/// when ARGV[1] is '0'); 1 if it did, 0 if the key held something else.
const SWAP_ENTRY: &str = r"
local cur = redis.call('GET', KEYS[1])
if ARGV[1] == '1' then
  if cur ~= ARGV[2] then return 0 end
elseif cur then
  return 0
end
if ARGV[3] == '1' then redis.call('SET', KEYS[1], ARGV[4], 'PX', ARGV[5]) else redis.call('DEL', KEYS[1]) end
return 1
";

/// The Redis store.
pub struct RedisStore {
    link: Arc<Link>,
    runtime: tokio::runtime::Handle,
    insert: redis::Script,
    swap: redis::Script,
    put_new: redis::Script,
    swap_entry: redis::Script,
}

/// The connection, opened on first use and again after a failure. One task connects at a time; the others
/// wait for that attempt (within their own deadline) and, if it failed, fail at once rather than try again
/// one after another: an unreachable Redis costs each request one bounded wait at most, never a place in
/// a queue of connects.
struct Link {
    client: redis::Client,
    conn: ArcSwapOption<ConnectionManager>,
    connecting: Mutex<()>,
    /// When the last attempt to connect failed (or was given up).
    failed_at: std::sync::Mutex<Option<std::time::Instant>>,
    durability: RedisDurability,
}

/// After a failed connect, how long callers are refused at once instead of trying again.
const RECONNECT_AFTER: Duration = Duration::from_millis(500);

/// Marks a connect attempt failed unless it is disarmed: also when the attempt is dropped at a deadline.
struct Attempt<'a>(Option<&'a std::sync::Mutex<Option<std::time::Instant>>>);

impl Drop for Attempt<'_> {
    fn drop(&mut self) {
        if let Some(at) = self.0 {
            *at.lock().unwrap_or_else(|e| e.into_inner()) = Some(std::time::Instant::now());
        }
    }
}

/// Why a call has no result, and whether Redis may have acted on it.
struct Failure {
    error: StoreError,
    /// The command may have reached Redis (a timeout or a broken connection after sending): its effect must
    /// be read back, not assumed absent.
    maybe_ran: bool,
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

impl Link {
    /// The open connection, or a new one if none is open and no other task is opening one.
    async fn connection(&self) -> Result<ConnectionManager, StoreError> {
        if let Some(c) = self.conn.load_full() {
            return Ok((*c).clone());
        }
        let _connecting = self.connecting.lock().await;
        if let Some(c) = self.conn.load_full() {
            return Ok((*c).clone());
        }
        let last = *self.failed_at.lock().unwrap_or_else(|e| e.into_inner());
        if last.is_some_and(|t| t.elapsed() < RECONNECT_AFTER) {
            return Err(err("Redis did not answer the last attempt to connect; retry shortly"));
        }
        let mut attempt = Attempt(Some(&self.failed_at));
        let config = ConnectionManagerConfig::new()
            .set_connection_timeout(CALL_TIMEOUT)
            .set_response_timeout(CALL_TIMEOUT);
        let c = ConnectionManager::new_with_config(self.client.clone(), config)
            .await
            .map_err(err)?;
        // A Redis that may evict or forget claims is not used unless the operator said so.
        if let Err(problem) = durability_of(&c).await {
            match self.durability {
                RedisDurability::Enforce => return Err(refused(problem)),
                RedisDurability::Warn => tracing::warn!(problem, "Redis may lose claims (redis_durability: warn)"),
            }
        }
        self.conn.store(Some(Arc::new(c.clone())));
        attempt.0 = None;
        Ok(c)
    }
}

/// A Redis that may lose claims, refused under `redis_durability: enforce`.
fn refused(problem: String) -> StoreError {
    err(format!("{problem} (or set `redis_durability: warn`)"))
}

/// Whether Redis keeps every claim: no eviction (`maxmemory-policy noeviction`) and an append-only file
/// (`appendonly yes`; snapshots alone lose the last minutes of writes in a crash). `Err` says what to fix.
async fn durability_of<C: redis::aio::ConnectionLike + Clone + Send>(c: &C) -> Result<(), String> {
    let get = |name: &'static str| {
        let mut c = c.clone();
        async move {
            let pair: Vec<String> = redis::cmd("CONFIG")
                .arg("GET")
                .arg(name)
                .query_async(&mut c)
                .await
                .map_err(|e| format!("cannot read Redis' {name} (CONFIG GET: {e}); check it yourself"))?;
            Ok::<_, String>(pair.get(1).cloned().unwrap_or_default())
        }
    };
    let policy = get("maxmemory-policy").await?;
    if policy != "noeviction" {
        return Err(format!(
            "Redis' maxmemory-policy is {policy}: it may evict claims, and an evicted claim lets a payment be used twice; set maxmemory-policy noeviction"
        ));
    }
    let aof = get("appendonly").await?;
    if aof != "yes" {
        return Err(
            "Redis has no append-only file (appendonly no): a Redis crash would forget recent settlements; set appendonly yes".into(),
        );
    }
    Ok(())
}

impl RedisStore {
    /// A store for `url`; nothing is connected yet. Its calls run on a small runtime of its own (two
    /// threads), so the connection's driver outlives the request that opened it.
    pub fn open(url: &str, durability: RedisDurability) -> Result<Self, StoreError> {
        let client = redis::Client::open(url).map_err(err)?;
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .thread_name("redis-store")
            .enable_all()
            .build()
            .map_err(err)?;
        let handle = runtime.handle().clone();
        // At start-up, a reachable Redis that may lose claims stops the gateway (unless told to warn); an
        // unreachable one does not: free routes are served meanwhile, and it is checked on connecting.
        // The whole probe (connect, then CONFIG GET) within one deadline: a Redis that accepts and never
        // answers does not hold up the start.
        if durability == RedisDurability::Enforce {
            // The timer is made inside the runtime it needs.
            let probe = handle.block_on(async {
                let checked = async {
                    match client.get_multiplexed_async_connection().await {
                        Ok(c) => durability_of(&c).await,
                        Err(_) => Ok(()),
                    }
                };
                tokio::time::timeout(CALL_TIMEOUT, checked).await
            });
            probe.unwrap_or(Ok(())).map_err(refused)?;
        }
        // The runtime lives as long as the process: its threads are parked on this one's.
        std::thread::Builder::new()
            .name("redis-store".into())
            .spawn(move || runtime.block_on(std::future::pending::<()>()))
            .map_err(err)?;
        Ok(RedisStore {
            link: Arc::new(Link {
                client,
                conn: ArcSwapOption::empty(),
                connecting: Mutex::new(()),
                failed_at: std::sync::Mutex::new(None),
                durability,
            }),
            runtime: handle,
            insert: redis::Script::new(INSERT),
            swap: redis::Script::new(SWAP),
            put_new: redis::Script::new(PUT_NEW),
            swap_entry: redis::Script::new(SWAP_ENTRY),
        })
    }

    /// Runs `f` with a connection, on the store's runtime, everything within [`CALL_TIMEOUT`].
    async fn call<T, F, Fut>(&self, f: F) -> Result<T, Failure>
    where
        T: Send + 'static,
        F: FnOnce(ConnectionManager) -> Fut + Send + 'static,
        Fut: std::future::Future<Output = redis::RedisResult<T>> + Send,
    {
        let link = self.link.clone();
        let task = self.runtime.spawn(async move {
            let deadline = tokio::time::Instant::now() + CALL_TIMEOUT;
            let not_sent = |error| Failure {
                error,
                maybe_ran: false,
            };
            let conn = tokio::time::timeout_at(deadline, link.connection())
                .await
                .map_err(|_| not_sent(err("connecting timed out")))?
                .map_err(not_sent)?;
            match tokio::time::timeout_at(deadline, f(conn)).await {
                Ok(Ok(v)) => Ok(v),
                // Refused by Redis itself (a script error): it did not act.
                Ok(Err(e)) if e.kind() == redis::ErrorKind::ResponseError => Err(not_sent(err(e))),
                Ok(Err(e)) => Err(Failure {
                    error: err(e),
                    maybe_ran: true,
                }),
                Err(_) => Err(Failure {
                    error: err("the call timed out"),
                    maybe_ran: true,
                }),
            }
        });
        task.await.map_err(|e| Failure {
            error: err(e),
            maybe_ran: true,
        })?
    }

    /// [`call`](Self::call) for a step whose outcome need not be read back.
    async fn with<T, F, Fut>(&self, f: F) -> Result<T, StoreError>
    where
        T: Send + 'static,
        F: FnOnce(ConnectionManager) -> Fut + Send + 'static,
        Fut: std::future::Future<Output = redis::RedisResult<T>> + Send,
    {
        self.call(f).await.map_err(|f| f.error)
    }

    /// The value at `k` as Redis holds it now.
    async fn value(&self, k: String) -> Result<Option<String>, StoreError> {
        self.with(move |mut c| async move { redis::cmd("GET").arg(k).query_async(&mut c).await })
            .await
    }

    /// Every key starting with `prefix` (no glob characters) and its value. SCAN, not KEYS: a large store
    /// is walked without blocking Redis; one MGET per batch, not a GET per key.
    async fn scan(&self, prefix: &str) -> Result<Vec<(String, String)>, StoreError> {
        let pattern = format!("{prefix}*");
        let found: Vec<(String, Option<String>)> = self
            .with(move |mut c| async move {
                let mut out = Vec::new();
                let mut cursor: u64 = 0;
                loop {
                    let (next, keys): (u64, Vec<String>) = redis::cmd("SCAN")
                        .arg(cursor)
                        .arg("MATCH")
                        .arg(&pattern)
                        .arg("COUNT")
                        .arg(1000)
                        .query_async(&mut c)
                        .await?;
                    if !keys.is_empty() {
                        let values: Vec<Option<String>> = redis::cmd("MGET").arg(&keys).query_async(&mut c).await?;
                        out.extend(keys.into_iter().zip(values));
                    }
                    if next == 0 {
                        return Ok(out);
                    }
                    cursor = next;
                }
            })
            .await?;
        Ok(found.into_iter().filter_map(|(k, v)| Some((k, v?))).collect())
    }

    /// The record at `k` as Redis holds it now (also to read back a step whose outcome is unknown).
    async fn read_back(&self, k: String) -> Result<Option<Record>, StoreError> {
        let json = self.value(k).await?;
        json.map(|j| serde_json::from_str::<Record>(&j))
            .transpose()
            .map_err(err)
    }
}

#[async_trait]
impl Store for RedisStore {
    async fn insert(&self, id: &AuthorizationId, record: Record, now: u64) -> Result<Insert, StoreError> {
        let json = serde_json::to_string(&record).map_err(err)?;
        let (k, script, ttl) = (key(id), self.insert.clone(), ttl_ms(record.expires_at, now));
        let key_back = k.clone();
        let existing: Option<String> = match self
            .call(move |mut c| async move { script.key(k).arg(json).arg(now).arg(ttl).invoke_async(&mut c).await })
            .await
        {
            Ok(e) => e,
            // The script may have run: what Redis holds now says whether this claim is in.
            Err(Failure { error, maybe_ran: true }) => {
                return match self.read_back(key_back).await? {
                    Some(r) if r.holder == record.holder && r.state == record.state => Ok(Insert::Inserted),
                    Some(r) if r.is_live(now) => Ok(Insert::Exists(r)),
                    _ => Err(error),
                }
            }
            Err(f) => return Err(f.error),
        };
        Ok(match existing {
            None => Insert::Inserted,
            Some(j) => Insert::Exists(serde_json::from_str(&j).map_err(err)?),
        })
    }

    async fn get(&self, id: &AuthorizationId, now: u64) -> Result<Option<Record>, StoreError> {
        Ok(self.read_back(key(id)).await?.filter(|r| r.is_live(now)))
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
        let key_back = k.clone();
        let done: Result<i64, Failure> = self
            .call(move |mut c| async move {
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
            .await;
        match done {
            Ok(n) => Ok(n == 1),
            // The script may have run: it did if Redis now holds what it would have written.
            Err(Failure { error, maybe_ran: true }) => match (self.read_back(key_back).await?, &next) {
                (Some(r), Some(n)) if r.holder == n.holder && r.state == n.state => Ok(true),
                (None, None) => Ok(true),
                _ => Err(error),
            },
            Err(f) => Err(f.error),
        }
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

    async fn entry(&self, key: &str, _now: u64) -> Result<Option<String>, StoreError> {
        self.value(key.to_owned()).await
    }

    async fn scan_entries(&self, prefix: &str, _now: u64) -> Result<Vec<(String, String)>, StoreError> {
        self.scan(prefix).await
    }

    async fn swap_entry(
        &self,
        key: &str,
        expected: Option<&str>,
        next: Option<String>,
        expires_at: u64,
        now: u64,
    ) -> Result<bool, StoreError> {
        let flag = |present: bool| if present { "1" } else { "0" };
        let (k, script, ttl) = (key.to_owned(), self.swap_entry.clone(), ttl_ms(expires_at, now));
        let args = (
            flag(expected.is_some()),
            expected.unwrap_or_default().to_owned(),
            flag(next.is_some()),
            next.clone().unwrap_or_default(),
        );
        let done: Result<i64, Failure> = self
            .call(move |mut c| async move {
                script
                    .key(k)
                    .arg(args.0)
                    .arg(args.1)
                    .arg(args.2)
                    .arg(args.3)
                    .arg(ttl)
                    .invoke_async(&mut c)
                    .await
            })
            .await;
        match done {
            Ok(n) => Ok(n == 1),
            // The script may have run: it did if Redis now holds what it would have written (a record
            // carries its request's random hold id, so another writer's equal value is not a worry).
            Err(Failure { maybe_ran: true, .. }) if self.value(key.to_owned()).await? == next => Ok(true),
            Err(f) => Err(f.error),
        }
    }

    async fn unknown(&self, now: u64) -> Result<Vec<(AuthorizationId, Record)>, StoreError> {
        let found = self.scan(CLAIM_PREFIX).await?;
        Ok(found
            .into_iter()
            .filter_map(|(k, v)| Some((super::parse_key(&k)?, serde_json::from_str::<Record>(&v).ok()?)))
            .filter(|(_, r)| r.is_live(now) && r.state.is_unknown())
            .collect())
    }

    async fn ping(&self) -> Result<(), StoreError> {
        self.with(|mut c| async move { redis::cmd("PING").query_async::<String>(&mut c).await })
            .await
            .map(drop)
    }
}
