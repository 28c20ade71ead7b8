//! `store: "sqlite:PATH"`: claims in a SQLite file, for one node that must not forget a settlement across a
//! crash. WAL mode and `synchronous = FULL`: a record is on disk before the response it guards goes out.
//! One connection on a thread of its own is the only writer, so no call ever blocks a Pingora worker and
//! every step is atomic without locks of our own.

use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc;

use async_trait::async_trait;
use rusqlite::{params, Connection, OptionalExtension, TransactionBehavior};

use super::{key, ClaimState, Insert, Record, Store, StoreError};
use crate::protocol::exact::AuthorizationId;

/// Expired rows are swept once every this many inserts.
const SWEEP_EVERY: u64 = 1024;

type Job = Box<dyn FnOnce(&mut Connection) + Send>;

/// The SQLite store: a handle to its writer thread.
pub struct SqliteStore {
    jobs: mpsc::Sender<Job>,
    inserts: AtomicU64,
}

fn err(e: impl std::fmt::Display) -> StoreError {
    StoreError {
        backend: "sqlite",
        message: e.to_string(),
    }
}

fn decode(json: &str) -> Result<Record, rusqlite::Error> {
    serde_json::from_str(json).map_err(|e| rusqlite::Error::ToSqlConversionFailure(Box::new(e)))
}

fn encode(r: &Record) -> Result<String, rusqlite::Error> {
    serde_json::to_string(r).map_err(|e| rusqlite::Error::ToSqlConversionFailure(Box::new(e)))
}

fn current(c: &Connection, k: &str) -> Result<Option<Record>, rusqlite::Error> {
    c.query_row("SELECT record FROM claims WHERE key = ?1", params![k], |row| {
        row.get::<_, String>(0)
    })
    .optional()?
    .map(|j| decode(&j))
    .transpose()
}

/// Takes the store file for this process alone: an exclusive lock on `PATH.lock`, held until the process
/// ends (the kernel drops it even on SIGKILL). A second process is refused with a message saying what to
/// do instead.
fn lock(path: &Path) -> Result<std::fs::File, StoreError> {
    use std::io::{Seek, Write};
    let lock_path = path.with_extension(match path.extension() {
        Some(e) => format!("{}.lock", e.to_string_lossy()),
        None => "lock".to_owned(),
    });
    let mut file = std::fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .read(true)
        .write(true)
        .open(&lock_path)
        .map_err(|e| err(format!("cannot open the lock file {}: {e}", lock_path.display())))?;
    match file.try_lock() {
        Ok(()) => {}
        Err(std::fs::TryLockError::WouldBlock) => {
            let holder = std::fs::read_to_string(&lock_path).unwrap_or_default();
            let holder = holder.trim();
            let holder = if holder.is_empty() {
                "another process".to_owned()
            } else {
                format!("process {holder}")
            };
            return Err(err(format!(
                "{} is in use by {holder} (it holds {}): a SQLite store belongs to one gateway process; give each its own file, or share claims between replicas with store: \"redis://…\"",
                path.display(),
                lock_path.display()
            )));
        }
        Err(std::fs::TryLockError::Error(e)) => return Err(err(format!("cannot lock {}: {e}", lock_path.display()))),
    }
    // Who holds it, for the next one's message; the lock, not this text, is what excludes.
    let _ = file
        .set_len(0)
        .and_then(|()| file.rewind())
        .and_then(|()| write!(file, "{}", std::process::id()));
    Ok(file)
}

impl SqliteStore {
    /// Opens (creating if needed) the file. One node per file, so whatever a process that died was holding
    /// is settled here: claims it had in flight are released, settlements it had started are in doubt (to be
    /// reconciled when the payment comes back), and payment identifiers it had in flight are freed.
    pub fn open(path: &Path) -> Result<Self, StoreError> {
        // Before anything is read or released: the clean-up below would free another live process's claims.
        let lock = lock(path)?;
        let mut conn = Connection::open(path).map_err(err)?;
        conn.pragma_update(None, "journal_mode", "WAL").map_err(err)?;
        conn.pragma_update(None, "synchronous", "FULL").map_err(err)?;
        conn.busy_timeout(std::time::Duration::from_secs(5)).map_err(err)?;
        conn.execute_batch(
            "CREATE TABLE IF NOT EXISTS claims (key TEXT PRIMARY KEY, record TEXT NOT NULL, expires_at INTEGER NOT NULL);
             CREATE TABLE IF NOT EXISTS entries (key TEXT PRIMARY KEY, value TEXT NOT NULL, expires_at INTEGER NOT NULL);
             DELETE FROM claims WHERE json_extract(record, '$.state') = 'in_flight';
             UPDATE claims SET record = json_set(record, '$.state', 'in_doubt', '$.transaction', '')
               WHERE json_extract(record, '$.state') = 'settling';
             DELETE FROM entries WHERE json_extract(value, '$.state') = 'in_flight';",
        )
        .map_err(err)?;
        let (jobs, inbox) = mpsc::channel::<Job>();
        std::thread::Builder::new()
            .name("sqlite-store".into())
            .spawn(move || {
                // Held for as long as the store is in use: the file stays this process's alone.
                let _lock = lock;
                for job in inbox {
                    job(&mut conn);
                }
            })
            .map_err(err)?;
        Ok(SqliteStore {
            jobs,
            inserts: AtomicU64::new(0),
        })
    }

    /// Runs `f` on the writer thread.
    async fn run<T: Send + 'static>(
        &self,
        f: impl FnOnce(&mut Connection) -> Result<T, rusqlite::Error> + Send + 'static,
    ) -> Result<T, StoreError> {
        let (tx, rx) = tokio::sync::oneshot::channel();
        self.jobs
            .send(Box::new(move |c| {
                let _ = tx.send(f(c));
            }))
            .map_err(|_| err("the writer thread is gone"))?;
        rx.await
            .map_err(|_| err("the writer thread dropped the request"))?
            .map_err(err)
    }
}

#[async_trait]
impl Store for SqliteStore {
    async fn insert(&self, id: &AuthorizationId, record: Record, now: u64) -> Result<Insert, StoreError> {
        let k = key(id);
        let sweep = self.inserts.fetch_add(1, Ordering::Relaxed).is_multiple_of(SWEEP_EVERY);
        self.run(move |c| {
            let tx = c.transaction_with_behavior(TransactionBehavior::Immediate)?;
            if let Some(r) = current(&tx, &k)?.filter(|r| r.is_live(now)) {
                return Ok(Insert::Exists(r));
            }
            tx.execute(
                "INSERT OR REPLACE INTO claims (key, record, expires_at) VALUES (?1, ?2, ?3)",
                params![k, encode(&record)?, record.expires_at],
            )?;
            if sweep {
                tx.execute("DELETE FROM claims WHERE expires_at <= ?1", params![now])?;
                tx.execute("DELETE FROM entries WHERE expires_at <= ?1", params![now])?;
            }
            tx.commit()?;
            Ok(Insert::Inserted)
        })
        .await
    }

    async fn get(&self, id: &AuthorizationId, now: u64) -> Result<Option<Record>, StoreError> {
        let k = key(id);
        self.run(move |c| Ok(current(c, &k)?.filter(|r| r.is_live(now)))).await
    }

    async fn swap(
        &self,
        id: &AuthorizationId,
        holder: u64,
        state: &ClaimState,
        next: Option<Record>,
        now: u64,
    ) -> Result<bool, StoreError> {
        let (k, state) = (key(id), state.clone());
        self.run(move |c| {
            let tx = c.transaction_with_behavior(TransactionBehavior::Immediate)?;
            let matches =
                current(&tx, &k)?.is_some_and(|r| r.holder == holder && r.state == state && now < r.expires_at);
            if !matches {
                return Ok(false);
            }
            match &next {
                Some(n) => tx.execute(
                    "UPDATE claims SET record = ?2, expires_at = ?3 WHERE key = ?1",
                    params![k, encode(n)?, n.expires_at],
                )?,
                None => tx.execute("DELETE FROM claims WHERE key = ?1", params![k])?,
            };
            tx.commit()?;
            Ok(true)
        })
        .await
    }

    async fn put_new(&self, key: &str, value: String, expires_at: u64, now: u64) -> Result<Option<String>, StoreError> {
        let k = key.to_owned();
        self.run(move |c| {
            let tx = c.transaction_with_behavior(TransactionBehavior::Immediate)?;
            let existing = live_entry(&tx, &k, now)?;
            if existing.is_none() {
                tx.execute(
                    "INSERT OR REPLACE INTO entries (key, value, expires_at) VALUES (?1, ?2, ?3)",
                    params![k, value, expires_at],
                )?;
            }
            tx.commit()?;
            Ok(existing)
        })
        .await
    }

    async fn entry(&self, key: &str, now: u64) -> Result<Option<String>, StoreError> {
        let k = key.to_owned();
        self.run(move |c| live_entry(c, &k, now)).await
    }

    async fn scan_entries(&self, prefix: &str, now: u64) -> Result<Vec<(String, String)>, StoreError> {
        let p = prefix.to_owned();
        self.run(move |c| {
            let mut q =
                c.prepare("SELECT key, value FROM entries WHERE substr(key, 1, length(?1)) = ?1 AND expires_at > ?2")?;
            let rows = q.query_map(params![p, now], |row| {
                Ok((row.get::<_, String>(0)?, row.get::<_, String>(1)?))
            })?;
            rows.collect::<Result<Vec<_>, _>>()
        })
        .await
    }

    async fn swap_entry(
        &self,
        key: &str,
        expected: Option<&str>,
        next: Option<String>,
        expires_at: u64,
        now: u64,
    ) -> Result<bool, StoreError> {
        let (k, expected) = (key.to_owned(), expected.map(str::to_owned));
        self.run(move |c| {
            let tx = c.transaction_with_behavior(TransactionBehavior::Immediate)?;
            if live_entry(&tx, &k, now)? != expected {
                return Ok(false);
            }
            match next {
                Some(v) => tx.execute(
                    "INSERT OR REPLACE INTO entries (key, value, expires_at) VALUES (?1, ?2, ?3)",
                    params![k, v, expires_at],
                )?,
                None => tx.execute("DELETE FROM entries WHERE key = ?1", params![k])?,
            };
            tx.commit()?;
            Ok(true)
        })
        .await
    }

    async fn put(&self, key: &str, value: String, expires_at: u64, _now: u64) -> Result<(), StoreError> {
        let k = key.to_owned();
        self.run(move |c| {
            c.execute(
                "INSERT OR REPLACE INTO entries (key, value, expires_at) VALUES (?1, ?2, ?3)",
                params![k, value, expires_at],
            )
            .map(drop)
        })
        .await
    }

    async fn remove(&self, key: &str) -> Result<(), StoreError> {
        let k = key.to_owned();
        self.run(move |c| c.execute("DELETE FROM entries WHERE key = ?1", params![k]).map(drop))
            .await
    }

    async fn unknown(&self, now: u64) -> Result<Vec<(AuthorizationId, Record)>, StoreError> {
        let rows = self
            .run(move |c| {
                let mut q = c.prepare(
                    "SELECT key, record FROM claims WHERE expires_at > ?1 AND json_extract(record, '$.state') IN ('settling', 'in_doubt')",
                )?;
                let rows = q.query_map(params![now], |row| Ok((row.get::<_, String>(0)?, row.get::<_, String>(1)?)))?;
                rows.map(|r| r.and_then(|(k, j)| Ok((k, decode(&j)?)))).collect::<Result<Vec<_>, _>>()
            })
            .await?;
        Ok(rows
            .into_iter()
            .filter_map(|(k, r)| Some((super::parse_key(&k)?, r)))
            .collect())
    }

    async fn ping(&self) -> Result<(), StoreError> {
        self.run(|c| c.query_row("SELECT 1", [], |_| Ok(()))).await
    }
}

/// The value at `key` unless it expired by `now`.
fn live_entry(c: &Connection, key: &str, now: u64) -> Result<Option<String>, rusqlite::Error> {
    c.query_row(
        "SELECT value FROM entries WHERE key = ?1 AND expires_at > ?2",
        params![key, now],
        |row| row.get(0),
    )
    .optional()
}
