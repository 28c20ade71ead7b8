//! The `payment-identifier` extension, gateway side: a payment that carries an id is looked up before it is
//! verified. The same id with the same payment gets the earlier outcome (status, receipt and the body, when it
//! was small enough to keep; else a status naming the transaction); the same id with another payment, or
//! while the first is still in flight, gets 409. Entries live in the payment store, so they hold across
//! replicas and restarts. Only paid outcomes are kept: anything else frees the id for a retry.

use base64::engine::general_purpose::STANDARD;
use base64::Engine;
use serde::{Deserialize, Serialize};
use serde_json::json;

use crate::gateway::refusal::{Answer, Refusal};
use crate::gateway::store::Store;
use crate::protocol::payment_id::{self, PaymentIdMode};

/// Seconds a client is told to wait before retrying an id still in flight.
const RETRY_AFTER_SECS: u64 = 1;

/// What is stored under an id.
#[derive(Debug, Serialize, Deserialize)]
#[serde(tag = "state", rename_all = "snake_case")]
enum Entry {
    /// A request with this id is being served; a holder that died frees it when its lease runs out.
    InFlight { digest: String, lease_until: u64 },
    /// It was served and paid; this is what it got.
    Done {
        digest: String,
        status: u16,
        receipt: (String, String),
        transaction: String,
        content_type: Option<String>,
        /// Base64 of the body, when it was at most the configured size.
        body: Option<String>,
    },
}

/// An id this request holds in flight; it must be finished or abandoned.
#[derive(Debug, Clone)]
pub struct Tracked {
    key: String,
    digest: String,
    expires_at: u64,
}

/// What a paid response was, to keep for a replay.
pub struct Outcome<'a> {
    pub status: u16,
    pub receipt: (&'static str, String),
    pub transaction: &'a str,
    pub content_type: Option<String>,
    /// `None` when the body was larger than the configured limit.
    pub body: Option<&'a [u8]>,
}

fn store_error(e: crate::gateway::store::StoreError) -> Refusal {
    tracing::warn!(error = %e, "payment store call failed");
    Refusal::Store
}

/// Looks a payment's id up, and takes it for this request if it is new. `Ok(None)`: the route does not
/// declare the extension, or the payment carries no id on a route where it is optional.
pub async fn begin(
    store: &dyn Store,
    mode: PaymentIdMode,
    extensions: Option<&serde_json::Value>,
    payment: &serde_json::Value,
    expires_at: u64,
    now: u64,
    lease_secs: u64,
) -> Result<Option<Tracked>, Refusal> {
    if mode == PaymentIdMode::Off {
        return Ok(None);
    }
    let id = match payment_id::id(extensions) {
        Ok(Some(id)) => id,
        Ok(None) if mode == PaymentIdMode::Required => {
            return Err(Refusal::BadRequest(format!(
                "this resource requires a payment identifier: add extensions[\"{}\"].info.id",
                payment_id::PAYMENT_IDENTIFIER
            )))
        }
        Ok(None) => return Ok(None),
        Err(m) => return Err(Refusal::BadRequest(m)),
    };
    let digest = {
        use sha2::{Digest, Sha256};
        alloy::hex::encode(Sha256::digest(serde_json::to_vec(payment).unwrap_or_default()))
    };
    let tracked = Tracked {
        key: format!("x402:payment-id:{id}"),
        digest: digest.clone(),
        expires_at,
    };
    let mine = serde_json::to_string(&Entry::InFlight {
        digest,
        lease_until: now.saturating_add(lease_secs),
    })
    .unwrap_or_default();
    let existing = store
        .put_new(&tracked.key, mine.clone(), expires_at, now)
        .await
        .map_err(store_error)?;
    let Some(existing) = existing else {
        return Ok(Some(tracked));
    };
    Err(match serde_json::from_str::<Entry>(&existing) {
        // Its holder died mid-request (nothing was kept): the id is free again.
        Ok(Entry::InFlight { lease_until, .. }) if now >= lease_until => {
            store
                .put(&tracked.key, mine, expires_at, now)
                .await
                .map_err(store_error)?;
            return Ok(Some(tracked));
        }
        Ok(Entry::InFlight { digest, .. }) if digest == tracked.digest => Refusal::Conflict {
            message: "a request with this payment identifier is still being served; retry shortly".into(),
            retry_after: Some(RETRY_AFTER_SECS),
        },
        Ok(Entry::Done {
            digest,
            status,
            receipt,
            transaction,
            content_type,
            body,
        }) if digest == tracked.digest => replay(status, receipt, &transaction, content_type, body),
        _ => Refusal::Conflict {
            message: "this payment identifier was used with a different payment".into(),
            retry_after: None,
        },
    })
}

/// The earlier outcome of the same payment, as it was answered.
fn replay(
    status: u16,
    receipt: (String, String),
    transaction: &str,
    content_type: Option<String>,
    body: Option<String>,
) -> Refusal {
    let receipt_name = if receipt.0.eq_ignore_ascii_case("x-payment-response") {
        "x-payment-response"
    } else {
        "payment-response"
    };
    let mut headers = vec![(receipt_name, receipt.1), ("cache-control", "private".to_owned())];
    match body.and_then(|b| STANDARD.decode(b).ok()) {
        Some(body) => {
            headers.extend(content_type.map(|c| ("content-type", c)));
            Refusal::Replay(Answer { status, headers, body })
        }
        None => {
            headers.push(("content-type", "application/json".to_owned()));
            let body = json!({
                "error": "payment_identifier_replay_without_body",
                "transaction": transaction,
                "message": format!("this payment was served and settled in transaction {transaction}; its response was too large to keep for a replay"),
            });
            Refusal::Replay(Answer {
                status: 409,
                headers,
                body: body.to_string().into_bytes(),
            })
        }
    }
}

/// Keeps a paid outcome under the id.
pub async fn finish(store: &dyn Store, t: &Tracked, outcome: Outcome<'_>, now: u64) {
    let entry = Entry::Done {
        digest: t.digest.clone(),
        status: outcome.status,
        receipt: (outcome.receipt.0.to_owned(), outcome.receipt.1),
        transaction: outcome.transaction.to_owned(),
        content_type: outcome.content_type,
        body: outcome.body.map(|b| STANDARD.encode(b)),
    };
    let value = serde_json::to_string(&entry).unwrap_or_default();
    if let Err(e) = store.put(&t.key, value, t.expires_at, now).await {
        tracing::warn!(error = %e, "payment store: could not keep a payment-identifier outcome");
    }
}

/// Frees the id: the request was not paid, so a retry with it is handled afresh.
pub async fn abandon(store: &dyn Store, t: &Tracked) {
    if let Err(e) = store.remove(&t.key).await {
        tracing::warn!(error = %e, "payment store: could not free a payment identifier");
    }
}
