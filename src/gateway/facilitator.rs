//! The facilitator as the gateway uses it. [`FacilitatorClient`] is the HTTP client (`/verify`, `/settle`,
//! `/supported`, per-call timeout, extra headers) and reads the three answer shapes seen in the wild
//! (x402-notes §6.1: 200 with a body, non-2xx with the same body, non-2xx `{"error": …}`). [`Remote`] adds
//! what the request path needs on top: `/settle` retried once
//! when pending (x402-notes §6.2).

use std::sync::Arc;
use std::time::Duration;

use reqwest::header::HeaderMap;
use serde::de::DeserializeOwned;

use crate::core::secret::redact;
use crate::gateway::metrics::Metrics;
use crate::protocol::facilitator::{EncodedRequest, SettleResponse, SupportedResponse, VerifyResponse};

/// Pause before re-asking about a pending settlement: roughly a block on fast chains.
const PENDING_RETRY_DELAY: Duration = Duration::from_secs(2);

/// Why a facilitator call produced no usable answer. The gateway answers these with 502/503/504, never
/// by serving content. The text (for logs) carries the URL redacted to scheme, host and port; clients only
/// ever get [`FacilitatorError::code`] and [`FacilitatorError::public_message`].
#[derive(Debug, Clone, thiserror::Error)]
pub enum FacilitatorError {
    #[error("facilitator {url} is unreachable: {message}")]
    Unreachable { url: String, message: String },
    #[error("facilitator {url} broke off the exchange: {message}")]
    Interrupted { url: String, message: String },
    #[error("facilitator {url} did not answer within {timeout:?}")]
    Timeout { url: String, timeout: Duration },
    #[error("facilitator {url} answered HTTP {status} with an unusable body: {message}")]
    BadAnswer { url: String, status: u16, message: String },
    /// A non-2xx status is never a success, whatever its body claims.
    #[error("facilitator {url} answered HTTP {status} with a body claiming success; a failed call is never a success")]
    Failed { url: String, status: u16 },
}

impl FacilitatorError {
    /// A stable reason code for clients.
    pub fn code(&self) -> &'static str {
        match self {
            FacilitatorError::Unreachable { .. } => "facilitator_unreachable",
            FacilitatorError::Interrupted { .. } => "facilitator_interrupted",
            FacilitatorError::Timeout { .. } => "facilitator_timeout",
            FacilitatorError::BadAnswer { .. } => "facilitator_bad_answer",
            FacilitatorError::Failed { .. } => "facilitator_failed",
        }
    }

    /// A short sentence for clients: no URL, no transport detail.
    pub fn public_message(&self) -> &'static str {
        match self {
            FacilitatorError::Unreachable { .. } => "the payment facilitator cannot be reached; retry later",
            FacilitatorError::Interrupted { .. } => "the payment facilitator broke off the exchange; retry later",
            FacilitatorError::Timeout { .. } => "the payment facilitator did not answer in time; retry later",
            FacilitatorError::BadAnswer { .. } => "the payment facilitator gave an answer the gateway cannot read",
            FacilitatorError::Failed { .. } => "the payment facilitator reported a failure",
        }
    }
}

/// The facilitator's endpoints.
#[derive(Debug, Clone, Copy)]
enum Endpoint {
    Verify,
    Settle,
    Supported,
}

impl Endpoint {
    const ALL: [Endpoint; 3] = [Endpoint::Verify, Endpoint::Settle, Endpoint::Supported];

    fn path(self) -> &'static str {
        match self {
            Endpoint::Verify => "/verify",
            Endpoint::Settle => "/settle",
            Endpoint::Supported => "/supported",
        }
    }
}

/// A facilitator at a base URL.
#[derive(Clone)]
pub struct FacilitatorClient {
    /// Each endpoint's URL, parsed once (by [`Endpoint`] order).
    urls: Arc<[reqwest::Url; 3]>,
    /// `base` as logs and errors show it.
    shown: String,
    /// One HTTP client (and connection pool) per thread: a connection's tasks live on the runtime that
    /// opened it, so a Pingora worker that kept using another thread's connections would pay a cross-thread
    /// wake-up on every call. Each carries the extra headers and the timeout.
    http: Arc<thread_local::ThreadLocal<reqwest::Client>>,
    /// What each thread's client is built from.
    headers: HeaderMap,
    timeout: Duration,
    /// Every call is timed here, by endpoint and result.
    metrics: Arc<Metrics>,
}

impl FacilitatorClient {
    /// A client for `base` (a trailing `/` is dropped). `headers` go on every call (e.g. auth).
    pub fn new(base: &str, headers: HeaderMap, timeout: Duration, metrics: Arc<Metrics>) -> Result<Self, String> {
        let shown = url::Url::parse(base).map_or_else(|_| "(invalid URL)".to_owned(), |u| redact(&u));
        let base = base.trim_end_matches('/');
        let parse = |e: Endpoint| {
            reqwest::Url::parse(&format!("{base}{}", e.path())).map_err(|err| format!("facilitator URL {shown}: {err}"))
        };
        let [verify, settle, supported] = Endpoint::ALL.map(parse);
        let client = FacilitatorClient {
            urls: Arc::new([verify?, settle?, supported?]),
            shown,
            http: Arc::new(thread_local::ThreadLocal::new()),
            headers,
            timeout,
            metrics,
        };
        // Built once here so a client that cannot be built is a start-up error, not a per-call one.
        client
            .http()
            .map_err(|e| format!("cannot build the facilitator HTTP client: {e}"))?;
        Ok(client)
    }

    /// This thread's HTTP client.
    fn http(&self) -> Result<&reqwest::Client, reqwest::Error> {
        self.http.get_or_try(|| {
            reqwest::Client::builder()
                .default_headers(self.headers.clone())
                .timeout(self.timeout)
                .tcp_nodelay(true)
                .build()
        })
    }

    /// `POST /verify`. An `isValid: true` under a non-2xx status is an error, not a success.
    pub async fn verify(&self, req: &EncodedRequest) -> Result<VerifyResponse, FacilitatorError> {
        let (status, v) = self
            .call::<VerifyResponse>(reqwest::Method::POST, Endpoint::Verify, Some(req))
            .await?;
        self.never_success_unless_2xx(status, v.is_valid)?;
        Ok(v)
    }

    /// `POST /settle`. Any non-2xx answer is an error with an unknown outcome, whatever its body says: a
    /// `success: true` under it is not a success, and a `success: false` is not a definite failure either.
    pub async fn settle(&self, req: &EncodedRequest) -> Result<SettleResponse, FacilitatorError> {
        let (status, s) = self
            .call::<SettleResponse>(reqwest::Method::POST, Endpoint::Settle, Some(req))
            .await?;
        self.never_success_unless_2xx(status, true)?;
        Ok(s)
    }

    /// `GET /supported`.
    pub async fn supported(&self) -> Result<SupportedResponse, FacilitatorError> {
        let (status, s) = self.call(reqwest::Method::GET, Endpoint::Supported, None).await?;
        self.never_success_unless_2xx(status, true)?;
        Ok(s)
    }

    fn never_success_unless_2xx(&self, status: u16, success: bool) -> Result<(), FacilitatorError> {
        if success && !(200..300).contains(&status) {
            return Err(FacilitatorError::Failed {
                url: self.shown.clone(),
                status,
            });
        }
        Ok(())
    }

    /// The status and the parsed body of a call, timed.
    async fn call<T: DeserializeOwned>(
        &self,
        method: reqwest::Method,
        endpoint: Endpoint,
        body: Option<&EncodedRequest>,
    ) -> Result<(u16, T), FacilitatorError> {
        let started = std::time::Instant::now();
        let r = self.exchange(method, endpoint, body).await;
        let ok = r.as_ref().is_ok_and(|(status, _)| (200..300).contains(status));
        let name = endpoint.path().trim_start_matches('/');
        self.metrics.facilitator_call(name, ok, started.elapsed());
        r
    }

    async fn exchange<T: DeserializeOwned>(
        &self,
        method: reqwest::Method,
        endpoint: Endpoint,
        body: Option<&EncodedRequest>,
    ) -> Result<(u16, T), FacilitatorError> {
        let path = endpoint.path();
        let http = self.http().map_err(|e| FacilitatorError::Unreachable {
            url: format!("{}{path}", self.shown),
            message: e.without_url().to_string(),
        })?;
        let mut rb = http.request(method, self.urls[endpoint as usize].clone());
        // Errors name the endpoint with the URL redacted, and the HTTP client's text without the URL.
        let url = format!("{}{path}", self.shown);
        if let Some(b) = body {
            rb = rb
                .header(reqwest::header::CONTENT_TYPE, "application/json")
                .body(b.body.clone());
        }
        let sent = rb.send().await;
        let resp = sent.map_err(|e| {
            if e.is_timeout() {
                FacilitatorError::Timeout {
                    url: url.clone(),
                    timeout: self.timeout,
                }
            } else if e.is_connect() {
                // Only a failed connect proves the request never arrived; anything later may have been acted on.
                FacilitatorError::Unreachable {
                    url: url.clone(),
                    message: e.without_url().to_string(),
                }
            } else {
                FacilitatorError::Interrupted {
                    url: url.clone(),
                    message: e.without_url().to_string(),
                }
            }
        })?;
        let status = resp.status().as_u16();
        let body = resp.bytes().await.map_err(|e| FacilitatorError::Interrupted {
            url: url.clone(),
            message: e.without_url().to_string(),
        })?;
        // A non-2xx whose body still has the answer's shape is an answer (TS maps it to VerifyError/SettleError).
        let parsed = serde_json::from_slice(&body).map_err(|e| {
            let text = String::from_utf8_lossy(&body);
            let message = match serde_json::from_slice::<serde_json::Value>(&body)
                .ok()
                .and_then(|v| v.get("error").cloned())
            {
                Some(err) => format!("error {err}"),
                None => format!("{e}; body starts {:?}", text.chars().take(200).collect::<String>()),
            };
            FacilitatorError::BadAnswer { url, status, message }
        })?;
        Ok((status, parsed))
    }
}

/// What a settlement came to.
#[derive(Debug)]
pub enum Settlement {
    Settled(SettleResponse),
    /// A definite failure: nothing moved.
    Failed(SettleResponse),
    /// Broadcast, not confirmed, even after the retry.
    Pending(SettleResponse),
    /// No usable answer; `maybe_sent` is true when the call may have reached the facilitator.
    Error {
        error: FacilitatorError,
        maybe_sent: bool,
    },
}

/// The remote facilitator as the request path uses it.
pub struct Remote {
    client: FacilitatorClient,
    metrics: Arc<Metrics>,
}

impl Remote {
    /// Wraps a client.
    pub fn new(client: FacilitatorClient) -> Self {
        let metrics = client.metrics.clone();
        Remote { client, metrics }
    }

    /// Where verifications and settlements are counted.
    pub fn metrics(&self) -> &Metrics {
        &self.metrics
    }

    /// `/verify`. Not cached: only the request holding the payment's claim asks, so the same payment is
    /// never verified twice at once.
    pub async fn verify(&self, req: &EncodedRequest) -> Result<VerifyResponse, FacilitatorError> {
        let r = self.client.verify(req).await;
        if let Err(e) = &r {
            tracing::warn!(error = %e, "facilitator /verify failed");
        }
        r
    }

    /// `/settle`, with one retry of the identical payload if the first answer is `settlement_pending`.
    pub async fn settle(&self, req: &EncodedRequest) -> Settlement {
        // The transaction a first `settlement_pending` answer named, kept for the retry's answer.
        let mut sent: Option<String> = None;
        loop {
            match self.client.settle(req).await {
                Ok(s) if s.success => return Settlement::Settled(s),
                Ok(s) if s.is_pending() && sent.is_none() => {
                    sent = Some(s.transaction);
                    tokio::time::sleep(PENDING_RETRY_DELAY).await;
                }
                // Once a transaction was broadcast, a facilitator that judges the retry afresh (nonce used,
                // expired) may be looking at that transaction's own success: still unknown, not a failure.
                Ok(mut s) if s.is_pending() || sent.is_some() => {
                    if s.transaction.is_empty() {
                        s.transaction = sent.unwrap_or_default();
                    }
                    return Settlement::Pending(s);
                }
                Ok(s) => return Settlement::Failed(s),
                Err(error) => {
                    tracing::warn!(error = %error, "facilitator /settle failed");
                    let maybe_sent = !matches!(error, FacilitatorError::Unreachable { .. }) || sent.is_some();
                    return Settlement::Error { error, maybe_sent };
                }
            }
        }
    }
}
