//! Where `batch-settlement` channel records live: in the payment store, changed only by atomic
//! read-modify-write steps, so one request at a time holds a channel, across replicas that share Redis.
//! The rules of each change are `rules::channel`'s; this module only applies them.

use serde::de::DeserializeOwned;
use serde::Serialize;

use super::store::{Store, StoreError};

/// How often a change is retried when another writer got there first before giving up (a store error:
/// the request gets a 503, never a wrong answer).
const ATTEMPTS: usize = 64;

/// What a change does to the record.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Change<R> {
    /// Leave it as it is.
    Keep,
    /// Write this.
    Put(R),
    /// Delete it.
    Delete,
}

/// Applies `f` to the record at `key` as one atomic step: `f` sees the record as it is, and what it decides
/// is written only if nobody wrote in between (else `f` runs again on the new record). Returns what `f`
/// returned with the change that was made. A record written lives until `expires_at`.
pub async fn update<R, T>(
    store: &dyn Store,
    key: &str,
    expires_at: u64,
    now: u64,
    mut f: impl FnMut(Option<R>) -> (Change<R>, T),
) -> Result<T, StoreError>
where
    R: Serialize + DeserializeOwned,
{
    let bad = |m: String| StoreError {
        backend: "channels",
        message: m,
    };
    for _ in 0..ATTEMPTS {
        let raw = store.entry(key, now).await?;
        let current = raw
            .as_deref()
            .map(serde_json::from_str::<R>)
            .transpose()
            .map_err(|e| bad(format!("the record at {key} cannot be read: {e}")))?;
        let (change, out) = f(current);
        let next = match change {
            Change::Keep => return Ok(out),
            Change::Put(r) => Some(serde_json::to_string(&r).map_err(|e| bad(e.to_string()))?),
            Change::Delete if raw.is_none() => return Ok(out),
            Change::Delete => None,
        };
        if store.swap_entry(key, raw.as_deref(), next, expires_at, now).await? {
            return Ok(out);
        }
    }
    Err(bad(format!(
        "{key} kept changing under {ATTEMPTS} attempts to update it"
    )))
}
