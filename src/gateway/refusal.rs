//! Every way the gateway answers instead of the upstream, and the one function that turns each into an
//! HTTP response (status, headers, body).

use serde_json::json;

use pingora::{ErrorSource, ErrorType};

use crate::gateway::facilitator::FacilitatorError;
use crate::gateway::metrics::Outcome;
use crate::protocol::facilitator::SettleResponse;
use crate::protocol::{codec, reason, Version, HEADER_PAYMENT_REQUIRED};
use crate::rules::table::Pricing;

/// A refusal, produced by a stage and rendered once.
#[derive(Debug)]
pub enum Refusal {
    /// 402: pay (again). `reason` is `None` for a first challenge; `receipt` carries a failed settlement
    /// or names the transaction that already used this payment.
    PaymentRequired {
        reason: Option<String>,
        receipt: Option<(Version, SettleResponse)>,
    },
    /// 402 for a `batch-settlement` voucher that does not continue its channel as the gateway knows it:
    /// the challenge, with the channel's state added to offer `offer`'s `extra` so the client can resume.
    Corrective {
        reason: String,
        offer: usize,
        extra: serde_json::Map<String, serde_json::Value>,
    },
    /// 400: the request itself is malformed.
    BadRequest(String),
    /// 404: unmatched under `default: deny`.
    NotFound,
    /// 405: the path is priced for other methods (`allow`), and no free route lists this one.
    MethodNotAllowed { allow: String },
    /// 502/503/504: the facilitator failed; nothing was served. `settling`: it failed at `/settle`, so the
    /// payment may have been sent (never served unpaid, whatever the route allows).
    Facilitator { error: FacilitatorError, settling: bool },
    /// 504: settlement was sent and is still pending; the body names the transaction so the client does
    /// not pay twice.
    SettlementPending { transaction: String },
    /// 429: this client made more payment attempts than `payment_attempts` allows; retry after this long.
    TooManyAttempts { retry_after: std::time::Duration },
    /// 503: the gateway is at capacity.
    Busy(String),
    /// 503: the payment store cannot be reached; nothing was served or settled.
    Store,
    /// 409: a `payment-identifier` is in use by another payment, or still in flight (`retry_after` set).
    Conflict { message: String, retry_after: Option<u64> },
    /// The earlier answer to the same payment under the same `payment-identifier`, replayed.
    Replay(Answer),
    /// 409: this payment already paid for a response; the receipt names its transaction. Not a 402: the
    /// payer must not be asked to pay again.
    Used {
        transaction: String,
        receipt: (Version, SettleResponse),
    },
    /// The upstream could not be reached or broke off (502 unless Pingora chose a status).
    Upstream { status: u16, message: String },
}

/// A rendered answer.
#[derive(Debug, Clone)]
pub struct Answer {
    pub status: u16,
    pub headers: Vec<(&'static str, String)>,
    pub body: Vec<u8>,
}

impl Answer {
    /// An answer without a body.
    pub fn empty(status: u16, headers: Vec<(&'static str, String)>) -> Self {
        Answer {
            status,
            headers,
            body: Vec::new(),
        }
    }
}

/// The answer to an error Pingora raised while proxying, with the outcome it means when the upstream
/// failed; `None` when the client's connection is gone and there is no one to answer.
pub fn for_proxy_error(e: &pingora::Error) -> Option<(Refusal, Option<Outcome>)> {
    Some(match (e.esource(), e.etype()) {
        (_, ErrorType::HTTPStatus(s)) => (
            Refusal::Upstream {
                status: *s,
                message: e.etype().as_str().to_owned(),
            },
            None,
        ),
        // The client's side broke: a dead connection gets nothing, bad input a 400.
        (ErrorSource::Downstream, ErrorType::ReadError | ErrorType::WriteError | ErrorType::ConnectionClosed) => {
            return None
        }
        (ErrorSource::Downstream, _) => (
            Refusal::BadRequest(format!("malformed request: {}", e.etype().as_str())),
            None,
        ),
        _ => (
            Refusal::Upstream {
                status: 502,
                message: e.etype().as_str().to_owned(),
            },
            Some(Outcome::UpstreamFailed),
        ),
    })
}

fn json_answer(status: u16, body: serde_json::Value) -> Answer {
    Answer {
        status,
        headers: vec![
            ("content-type", "application/json".into()),
            ("cache-control", "no-store".into()),
        ],
        body: body.to_string().into_bytes(),
    }
}

impl Refusal {
    /// The outcome a request refused with this counts as.
    pub fn outcome(&self) -> Outcome {
        match self {
            Refusal::PaymentRequired { reason: Some(r), .. } if r.starts_with(reason::NONCE_ALREADY_USED) => {
                Outcome::RefusedReplay
            }
            Refusal::PaymentRequired { reason: None, .. } => Outcome::Challenged,
            Refusal::PaymentRequired { .. } | Refusal::Corrective { .. } => Outcome::RefusedPayment,
            Refusal::BadRequest(_) => Outcome::BadRequest,
            Refusal::NotFound | Refusal::MethodNotAllowed { .. } => Outcome::Denied,
            Refusal::Facilitator { .. } => Outcome::FacilitatorError,
            Refusal::SettlementPending { .. } => Outcome::RefusedPending,
            Refusal::Busy(_) | Refusal::Store => Outcome::RefusedUnavailable,
            Refusal::TooManyAttempts { .. } => Outcome::RateLimited,
            Refusal::Conflict { .. } => Outcome::RefusedConflict,
            Refusal::Replay(_) => Outcome::Replayed,
            Refusal::Used { .. } => Outcome::RefusedReplay,
            Refusal::Upstream { .. } => Outcome::UpstreamFailed,
        }
    }

    /// The HTTP status this refusal is answered with.
    pub fn status(&self) -> u16 {
        match self {
            // The payer must approve Permit2 once before this payment can work (x402-notes §9.1).
            Refusal::PaymentRequired { reason: Some(r), .. } if r == reason::PERMIT2_ALLOWANCE_REQUIRED => 412,
            Refusal::PaymentRequired { .. } | Refusal::Corrective { .. } => 402,
            Refusal::BadRequest(_) => 400,
            Refusal::NotFound => 404,
            Refusal::MethodNotAllowed { .. } => 405,
            Refusal::Facilitator {
                error: FacilitatorError::BadAnswer { .. } | FacilitatorError::Interrupted { .. },
                ..
            } => 502,
            Refusal::Facilitator {
                error:
                    FacilitatorError::Unreachable { .. }
                    | FacilitatorError::Failed { .. }
                    | FacilitatorError::Unauthorized { .. }
                    | FacilitatorError::Throttled { .. },
                ..
            }
            | Refusal::Busy(_)
            | Refusal::Store => 503,
            Refusal::Used { .. } | Refusal::Conflict { .. } => 409,
            Refusal::TooManyAttempts { .. } => 429,
            Refusal::Replay(a) => a.status,
            Refusal::Facilitator {
                error: FacilitatorError::Timeout { .. },
                ..
            }
            | Refusal::SettlementPending { .. } => 504,
            Refusal::Upstream { status, .. } => *status,
        }
    }
}

/// Renders a refusal. `pricing` and `url` describe the priced resource, when there is one.
pub fn render(refusal: &Refusal, pricing: Option<&Pricing>, url: &str, browser: bool) -> Answer {
    let status = refusal.status();
    let body = match refusal {
        Refusal::PaymentRequired { reason, receipt } => {
            let Some(pricing) = pricing else {
                return json_answer(status, json!({ "error": reason }));
            };
            let c = pricing.challenge.render(url, reason.as_deref(), browser);
            let mut headers = vec![
                ("content-type", c.content_type.to_owned()),
                ("cache-control", "no-store".to_owned()),
                (HEADER_PAYMENT_REQUIRED, c.header),
            ];
            if let Some((version, r)) = receipt {
                headers.push((version.receipt_header(), codec::encode(r)));
            }
            return Answer {
                status,
                headers,
                body: c.body,
            };
        }
        Refusal::Corrective { reason, offer, extra } => {
            let Some(pricing) = pricing else {
                return json_answer(status, json!({ "error": reason }));
            };
            let c = pricing.challenge.render_amended(url, reason, *offer, extra);
            return Answer {
                status,
                headers: vec![
                    ("content-type", c.content_type.to_owned()),
                    ("cache-control", "no-store".to_owned()),
                    (HEADER_PAYMENT_REQUIRED, c.header),
                ],
                body: c.body,
            };
        }
        Refusal::BadRequest(m) => json!({ "error": m }),
        Refusal::NotFound => json!({ "error": "no route matches this request" }),
        Refusal::MethodNotAllowed { allow } => {
            let mut a = json_answer(
                status,
                json!({ "error": "method_not_allowed", "message": format!("this path is sold for {allow} only; no route serves this method here") }),
            );
            a.headers.push(("allow", allow.clone()));
            return a;
        }
        // The detail (with the facilitator's redacted URL) is in the log; the client gets a stable code.
        Refusal::Facilitator { error: e, .. } => {
            json!({ "error": "facilitator_unavailable", "reason": e.code(), "message": e.public_message() })
        }
        Refusal::SettlementPending { transaction } => json!({
            "error": "settlement_pending",
            "transaction": transaction,
            "message": if transaction.is_empty() {
                "your payment was submitted for settlement and its outcome is not known yet; do not pay again: send the same payment again later to have it reconciled".to_owned()
            } else {
                format!("your payment was submitted in transaction {transaction} but is not confirmed yet; do not pay again, check the transaction")
            },
        }),
        Refusal::Busy(m) => json!({ "error": "busy", "message": m }),
        Refusal::TooManyAttempts { retry_after } => {
            let secs = retry_after.as_secs() + u64::from(retry_after.subsec_nanos() > 0);
            let mut a = json_answer(
                status,
                json!({ "error": "too_many_payment_attempts", "message": "this client made more payment attempts than the gateway allows; nothing was charged, retry later" }),
            );
            a.headers.push(("retry-after", secs.max(1).to_string()));
            return a;
        }
        Refusal::Conflict { message, retry_after } => {
            let mut a = json_answer(
                status,
                json!({ "error": "payment_identifier_conflict", "message": message }),
            );
            a.headers.extend(retry_after.map(|s| ("retry-after", s.to_string())));
            return a;
        }
        Refusal::Replay(a) => return a.clone(),
        Refusal::Store => {
            json!({ "error": "store_unavailable", "message": "the payment store is unavailable; nothing was charged, retry shortly" })
        }
        Refusal::Used {
            transaction,
            receipt: (version, r),
        } => {
            let mut a = json_answer(
                status,
                json!({
                    "error": "payment_already_used",
                    "transaction": transaction,
                    "message": format!("this payment already paid for a response, in transaction {transaction}; it cannot pay for another"),
                }),
            );
            a.headers.push((version.receipt_header(), codec::encode(r)));
            return a;
        }
        Refusal::Upstream { message, .. } => json!({ "error": "upstream_failed", "message": message }),
    };
    json_answer(status, body)
}
