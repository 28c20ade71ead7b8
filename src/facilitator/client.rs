//! HTTP client for a remote facilitator: `/verify`, `/settle`, `/supported`, with per-call timeout and
//! extra headers. Handles the three answer shapes seen in the wild (x402-notes §6.1): 200 with a body,
//! non-2xx with the same body, and non-2xx `{"error": …}`.

use std::time::Duration;

use reqwest::header::HeaderMap;
use serde::de::DeserializeOwned;

use crate::protocol::facilitator::{FacilitatorRequest, SettleResponse, SupportedResponse, VerifyResponse};

/// Why a facilitator call produced no usable answer. The gateway answers these with 502/503, never by
/// serving content.
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
}

/// A facilitator at a base URL.
#[derive(Clone, Debug)]
pub struct FacilitatorClient {
    base: String,
    /// Carries the extra headers and the timeout on every call.
    http: reqwest::Client,
    timeout: Duration,
}

impl FacilitatorClient {
    /// A client for `base` (a trailing `/` is dropped). `headers` go on every call (e.g. auth).
    pub fn new(base: &str, headers: HeaderMap, timeout: Duration) -> Result<Self, String> {
        let http = reqwest::Client::builder()
            .default_headers(headers)
            .timeout(timeout)
            .build()
            .map_err(|e| format!("cannot build the facilitator HTTP client: {e}"))?;
        Ok(FacilitatorClient {
            base: base.trim_end_matches('/').to_owned(),
            http,
            timeout,
        })
    }

    /// `POST /verify`.
    pub async fn verify(&self, req: &FacilitatorRequest) -> Result<VerifyResponse, FacilitatorError> {
        self.call(reqwest::Method::POST, "/verify", Some(req)).await
    }

    /// `POST /settle`.
    pub async fn settle(&self, req: &FacilitatorRequest) -> Result<SettleResponse, FacilitatorError> {
        self.call(reqwest::Method::POST, "/settle", Some(req)).await
    }

    /// `GET /supported`.
    pub async fn supported(&self) -> Result<SupportedResponse, FacilitatorError> {
        self.call(reqwest::Method::GET, "/supported", None).await
    }

    async fn call<T: DeserializeOwned>(
        &self,
        method: reqwest::Method,
        path: &str,
        body: Option<&FacilitatorRequest>,
    ) -> Result<T, FacilitatorError> {
        let url = format!("{}{path}", self.base);
        let mut rb = self.http.request(method, &url);
        if let Some(b) = body {
            rb = rb.json(b);
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
                    message: e.to_string(),
                }
            } else {
                FacilitatorError::Interrupted {
                    url: url.clone(),
                    message: e.to_string(),
                }
            }
        })?;
        let status = resp.status().as_u16();
        let body = resp.bytes().await.map_err(|e| FacilitatorError::Interrupted {
            url: url.clone(),
            message: e.to_string(),
        })?;
        // A non-2xx whose body still has the answer's shape is an answer (TS maps it to VerifyError/SettleError).
        serde_json::from_slice(&body).map_err(|e| {
            let text = String::from_utf8_lossy(&body);
            let message = match serde_json::from_slice::<serde_json::Value>(&body)
                .ok()
                .and_then(|v| v.get("error").cloned())
            {
                Some(err) => format!("error {err}"),
                None => format!("{e}; body starts {:?}", text.chars().take(200).collect::<String>()),
            };
            FacilitatorError::BadAnswer { url, status, message }
        })
    }
}
