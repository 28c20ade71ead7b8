//! The facilitators as the gateway uses them. [`FacilitatorClient`] is the HTTP client of one (`/verify`,
//! `/settle`, `/supported`, per-call timeout, extra headers, a CDP token signed for every call) and reads
//! the three answer shapes seen in the wild (x402-notes §6.1: 200 with a body, non-2xx with the same body,
//! non-2xx `{"error": …}`). [`Remote`] is the configured list as the request path uses it: `/verify` tried
//! in order, skipping a facilitator that failed until a health check finds it answering again; a payment
//! settled only by the facilitator that verified it, with `/settle` retried once when pending (x402-notes
//! §6.2).

use std::collections::BTreeSet;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use alloy::primitives::Address;
use arc_swap::ArcSwapOption;
use reqwest::header::{HeaderMap, HeaderValue, AUTHORIZATION};
use serde::de::DeserializeOwned;

use crate::config::FacilitatorSettings;
use crate::core::time::unix_now;
use crate::gateway::metrics::Metrics;
use crate::protocol::cdp::CdpKey;
use crate::protocol::facilitator::{EncodedRequest, SettleResponse, SupportedResponse, VerifyResponse};
use crate::protocol::network::Network;

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
    /// Its credentials were refused: a configuration error, named as such for the operator.
    #[error("facilitator {url} refused the gateway's credentials (HTTP {status}): check its `auth`/`key_id`/`key_secret` or `headers`")]
    Unauthorized { url: String, status: u16 },
    /// HTTP 429: it is rate-limiting this gateway. Nothing was acted on; never a reason to serve unpaid
    /// (anyone can cause it by flooding the facilitator).
    #[error("facilitator {url} is rate-limiting the gateway (HTTP 429)")]
    Throttled { url: String },
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
            FacilitatorError::Unauthorized { .. } => "facilitator_unauthorized",
            FacilitatorError::Throttled { .. } => "facilitator_rate_limited",
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
            FacilitatorError::Unauthorized { .. } => "the payment facilitator refused this gateway; retry later",
            FacilitatorError::Throttled { .. } => "the payment facilitator is busy; retry later",
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
    /// Signs a token for every call (`auth: cdp`).
    cdp: Option<Arc<CdpKey>>,
    /// The account it settles `upto` payments from, if configured.
    address: Option<Address>,
    /// Every call is timed here, by endpoint and result.
    metrics: Arc<Metrics>,
}

impl FacilitatorClient {
    /// A client for the facilitator `f` describes.
    pub fn new(f: &FacilitatorSettings, metrics: Arc<Metrics>) -> Result<Self, String> {
        let shown = f.shown();
        let base = f.url.trim_end_matches('/');
        let parse = |e: Endpoint| {
            reqwest::Url::parse(&format!("{base}{}", e.path())).map_err(|err| format!("facilitator URL {shown}: {err}"))
        };
        let [verify, settle, supported] = Endpoint::ALL.map(parse);
        let client = FacilitatorClient {
            urls: Arc::new([verify?, settle?, supported?]),
            shown,
            http: Arc::new(thread_local::ThreadLocal::new()),
            headers: f.header_map(),
            timeout: f.timeout,
            cdp: f.cdp.clone(),
            address: f.address,
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

    /// The account it settles `upto` payments from, if configured.
    pub fn address(&self) -> Option<Address> {
        self.address
    }

    /// `GET /supported`.
    pub async fn supported(&self) -> Result<SupportedResponse, FacilitatorError> {
        let (status, s) = self.call(reqwest::Method::GET, Endpoint::Supported, None).await?;
        self.never_success_unless_2xx(status, true)?;
        Ok(s)
    }

    /// The facilitator as logs show it (credentials redacted).
    pub fn shown(&self) -> &str {
        &self.shown
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
        let target = &self.urls[endpoint as usize];
        // Errors name the endpoint with the URL redacted, and the HTTP client's text without the URL.
        let url = format!("{}{path}", self.shown);
        let mut rb = http.request(method.clone(), target.clone());
        if let Some(key) = &self.cdp {
            let host = match (target.host_str(), target.port()) {
                (Some(h), Some(p)) => format!("{h}:{p}"),
                (h, None) => h.unwrap_or_default().to_owned(),
                (None, Some(_)) => String::new(),
            };
            let mut bearer = key
                .token(method.as_str(), &host, target.path(), unix_now())
                .and_then(|t| HeaderValue::from_str(&format!("Bearer {t}")).ok())
                .ok_or_else(|| FacilitatorError::Unreachable {
                    url: url.clone(),
                    message: "could not sign a CDP token (no system randomness)".to_owned(),
                })?;
            bearer.set_sensitive(true);
            rb = rb.header(AUTHORIZATION, bearer);
        }
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
        if status == 401 || status == 403 {
            return Err(FacilitatorError::Unauthorized { url, status });
        }
        if status == 429 {
            return Err(FacilitatorError::Throttled { url });
        }
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

/// Why no facilitator was asked: none is configured, or none settles from the account an `upto` payment
/// names (its `address:` was changed without a restart, or the offer came from elsewhere).
pub fn no_settler(settler: Option<Address>) -> FacilitatorError {
    let message = match settler {
        Some(a) => format!("no configured facilitator settles upto payments from {a} (facilitator `address:`; a change takes a restart)"),
        None => "no facilitator is configured".to_owned(),
    };
    FacilitatorError::Unreachable {
        url: String::new(),
        message,
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

/// One facilitator of the list, and what was last learnt about it.
pub struct Member {
    pub client: FacilitatorClient,
    /// False from a failed call until its next good `/supported`.
    up: AtomicBool,
    /// The networks its last good `/supported` listed for `exact`; `None` until it answered once (it is
    /// then assumed to serve every network, so a gateway can take payments before its first check).
    serves: ArcSwapOption<BTreeSet<Network>>,
}

impl Member {
    fn serves(&self, network: Network) -> bool {
        self.serves.load().as_ref().is_none_or(|s| s.contains(&network))
    }

    /// Whether the last call or check found it answering.
    pub fn is_up(&self) -> bool {
        self.up.load(Ordering::Relaxed)
    }

    /// A health check's finding: answering, serving `networks`.
    pub fn checked(&self, networks: BTreeSet<Network>) {
        self.serves.store(Some(Arc::new(networks)));
        if !self.up.swap(true, Ordering::Relaxed) {
            tracing::info!(facilitator = %self.client.shown, "facilitator answers again");
        }
    }

    /// A failed call or check: skipped until a health check finds it answering.
    pub fn failed(&self) {
        if self.up.swap(false, Ordering::Relaxed) {
            tracing::warn!(facilitator = %self.client.shown, "facilitator is down; skipped until it answers again");
        }
    }
}

/// The configured facilitators as the request path uses them.
pub struct Remote {
    members: Vec<Member>,
    metrics: Arc<Metrics>,
}

impl Remote {
    /// The facilitators, in the order `/verify` tries them (at least one).
    pub fn new(clients: Vec<FacilitatorClient>, metrics: Arc<Metrics>) -> Self {
        let members = clients
            .into_iter()
            .map(|client| Member {
                client,
                up: AtomicBool::new(true),
                serves: ArcSwapOption::empty(),
            })
            .collect();
        Remote { members, metrics }
    }

    /// Where verifications and settlements are counted.
    pub fn metrics(&self) -> &Metrics {
        &self.metrics
    }

    /// Every facilitator, in order.
    pub fn members(&self) -> &[Member] {
        &self.members
    }

    /// The facilitators to ask about a payment on `network`, in order: those up and serving it; if none is
    /// up, every one serving it (a failure must not stop all payments until the next check); failing
    /// that, the first. An `upto` payment names the one account that may settle it (`settler`): only the
    /// facilitator settling from it is asked.
    fn candidates(&self, network: Network, settler: Option<Address>) -> Vec<usize> {
        // The payer's signature binds an `upto` payment to one account: only the facilitator settling from
        // it may take it, whatever its `/supported` says, and none at all if no configured one does.
        if let Some(a) = settler {
            return (0..self.members.len())
                .filter(|&i| self.members[i].client.address == Some(a))
                .collect();
        }
        let serving: Vec<usize> = (0..self.members.len())
            .filter(|&i| self.members[i].serves(network))
            .collect();
        let up: Vec<usize> = serving.iter().copied().filter(|&i| self.members[i].is_up()).collect();
        match (up.is_empty(), serving.is_empty()) {
            (false, _) => up,
            (true, false) => serving,
            (true, true) => vec![0],
        }
    }

    /// The facilitator that settles a payment on `network` not verified remotely (`verify: local`); `None`
    /// for an `upto` payment naming an account no configured facilitator settles from.
    pub fn pick(&self, network: Network, settler: Option<Address>) -> Option<usize> {
        self.candidates(network, settler).first().copied()
    }

    /// `/verify`, through each candidate in turn until one answers; the answer and who gave it. A
    /// definite answer (valid or not) is final: another facilitator is asked only when one gave none. Not
    /// cached: only the request holding the payment's claim asks, so it is never verified twice at once.
    pub async fn verify(
        &self,
        req: &EncodedRequest,
        network: Network,
        settler: Option<Address>,
    ) -> Result<(VerifyResponse, usize), FacilitatorError> {
        let mut last = None;
        for i in self.candidates(network, settler) {
            let m = &self.members[i];
            match m.client.verify(req).await {
                Ok(v) => return Ok((v, i)),
                Err(e) => {
                    tracing::warn!(error = %e, facilitator = %m.client.shown, "facilitator /verify failed; trying the next");
                    m.failed();
                    last = Some(e);
                }
            }
        }
        Err(last.unwrap_or_else(|| no_settler(settler)))
    }

    /// `/settle` through facilitator `via` (the one that verified the payment; never another), with one
    /// retry of the identical payload if the first answer is `settlement_pending`.
    pub async fn settle(&self, req: &EncodedRequest, via: usize) -> Settlement {
        let Some(m) = self.members.get(via) else {
            let error = FacilitatorError::Unreachable {
                url: format!("#{via}"),
                message: "this payment's facilitator is no longer configured".to_owned(),
            };
            return Settlement::Error {
                error,
                maybe_sent: false,
            };
        };
        // The transaction a first `settlement_pending` answer named, kept for the retry's answer.
        let mut sent: Option<String> = None;
        loop {
            match m.client.settle(req).await {
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
                    tracing::warn!(error = %error, facilitator = %m.client.shown, "facilitator /settle failed");
                    // Refused at the door (no connection, credentials refused): nothing was acted on, and
                    // `verify: local` routes should stop picking it until a health check finds it again.
                    let refused = matches!(
                        error,
                        FacilitatorError::Unreachable { .. }
                            | FacilitatorError::Unauthorized { .. }
                            | FacilitatorError::Throttled { .. }
                    );
                    if refused {
                        m.failed();
                    }
                    let maybe_sent = !refused || sent.is_some();
                    return Settlement::Error { error, maybe_sent };
                }
            }
        }
    }
}
