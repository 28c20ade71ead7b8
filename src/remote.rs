//! The facilitator as the gateway uses it: `/verify` cached by payload and coalesced (concurrent identical
//! payloads share one call), `/settle` retried once when pending (x402-notes §6.2).

use std::sync::Arc;
use std::time::Duration;

use crate::facilitator::client::{FacilitatorClient, FacilitatorError};
use crate::metrics::Metrics;
use crate::protocol::facilitator::{FacilitatorRequest, SettleResponse, VerifyResponse};

/// How long a verify answer is reused for the same payload.
const VERIFY_CACHE_TTL: Duration = Duration::from_secs(30);
/// Pause before re-asking about a pending settlement: roughly a block on fast chains.
const PENDING_RETRY_DELAY: Duration = Duration::from_secs(2);

/// What a settlement came to.
#[derive(Debug)]
pub enum Settlement {
    Settled(SettleResponse),
    /// A definite failure: nothing moved.
    Failed(SettleResponse),
    /// Broadcast, not confirmed, even after the retry.
    Pending(SettleResponse),
    /// No usable answer; `sent` is true when the call may have reached the facilitator.
    Error {
        error: FacilitatorError,
        maybe_sent: bool,
    },
}

/// The remote facilitator with its caches.
pub struct Remote {
    client: FacilitatorClient,
    verified: moka::future::Cache<[u8; 32], VerifyResponse>,
    metrics: Arc<Metrics>,
}

impl Remote {
    /// Wraps a client.
    pub fn new(client: FacilitatorClient, metrics: Arc<Metrics>) -> Self {
        let verified = moka::future::Cache::builder()
            .max_capacity(100_000)
            .time_to_live(VERIFY_CACHE_TTL)
            .build();
        Remote {
            client,
            verified,
            metrics,
        }
    }

    /// `/verify`, once per distinct request however many ask at the same time.
    pub async fn verify(&self, req: &FacilitatorRequest) -> Result<VerifyResponse, Arc<FacilitatorError>> {
        let key = req.digest();
        let answer = self
            .verified
            .try_get_with(key, async {
                let r = self.client.verify(req).await;
                self.metrics.facilitator_call("verify", r.is_ok());
                r
            })
            .await;
        // Only a valid answer is worth reusing; a payer who tops up must not be refused from the cache.
        if answer.as_ref().is_ok_and(|v| !v.is_valid) {
            self.verified.invalidate(&key).await;
        }
        answer
    }

    /// `/settle`, with one retry of the identical payload if the first answer is `settlement_pending`.
    pub async fn settle(&self, req: &FacilitatorRequest) -> Settlement {
        let mut retried = false;
        loop {
            let r = self.client.settle(req).await;
            self.metrics.facilitator_call("settle", r.is_ok());
            match r {
                Ok(s) if s.success => return Settlement::Settled(s),
                Ok(s) if s.is_pending() && !retried => {
                    retried = true;
                    tokio::time::sleep(PENDING_RETRY_DELAY).await;
                }
                Ok(s) if s.is_pending() => return Settlement::Pending(s),
                Ok(s) => return Settlement::Failed(s),
                Err(error) => {
                    let maybe_sent = !matches!(error, FacilitatorError::Unreachable { .. }) || retried;
                    return Settlement::Error { error, maybe_sent };
                }
            }
        }
    }
}
