//! A per-client limit on payment attempts that would reach the facilitator (`payment_attempts:`), so that
//! nobody can spend the gateway's facilitator quota (or cause the outage a fail-open route would serve
//! through) by flooding it with locally valid signatures. A token bucket per client address, in integer
//! thousandths of an attempt; buckets idle for a minute are forgotten.

use std::net::IpAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use crate::config::AttemptLimit;

/// Clients tracked at once; past this the least recently seen are forgotten (and start with a full bucket).
const CLIENTS: u64 = 100_000;

struct Bucket {
    /// Thousandths of an attempt left.
    milli: u64,
    at: Instant,
}

/// The limiter.
pub struct Throttle {
    limit: AttemptLimit,
    buckets: moka::future::Cache<IpAddr, Arc<Mutex<Bucket>>>,
}

impl Throttle {
    /// A limiter allowing `limit`.
    pub fn new(limit: AttemptLimit) -> Self {
        Throttle {
            limit,
            buckets: moka::future::Cache::builder()
                .max_capacity(CLIENTS)
                .time_to_idle(Duration::from_secs(60))
                .build(),
        }
    }

    /// Takes one attempt from `client`'s bucket at `now`; `Err` says how long until one is available.
    pub async fn admit(&self, client: IpAddr, now: Instant) -> Result<(), Duration> {
        let full = u64::from(self.limit.burst) * 1000;
        let bucket = self
            .buckets
            .get_with(
                client,
                async move { Arc::new(Mutex::new(Bucket { milli: full, at: now })) },
            )
            .await;
        let mut b = bucket.lock().unwrap_or_else(|e| e.into_inner());
        let elapsed = u64::try_from(now.saturating_duration_since(b.at).as_millis()).unwrap_or(u64::MAX);
        // `per_second` attempts a second is `per_second` thousandths a millisecond.
        b.milli = b
            .milli
            .saturating_add(elapsed.saturating_mul(u64::from(self.limit.per_second)))
            .min(full);
        b.at = now;
        if b.milli >= 1000 {
            b.milli -= 1000;
            return Ok(());
        }
        let per_ms = u64::from(self.limit.per_second).max(1);
        Err(Duration::from_millis((1000u64 - b.milli).div_ceil(per_ms)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn each_client_gets_its_burst_then_its_rate() {
        let t = Throttle::new(AttemptLimit {
            per_second: 2,
            burst: 3,
        });
        let (a, b): (IpAddr, IpAddr) = ("192.0.2.1".parse().unwrap(), "192.0.2.2".parse().unwrap());
        let start = Instant::now();
        for _ in 0..3 {
            assert_eq!(t.admit(a, start).await, Ok(()));
        }
        assert_eq!(
            t.admit(a, start).await,
            Err(Duration::from_millis(500)),
            "empty: one more in half a second"
        );
        assert_eq!(t.admit(b, start).await, Ok(()), "another client has its own bucket");
        assert_eq!(
            t.admit(a, start + Duration::from_millis(499)).await,
            Err(Duration::from_millis(1))
        );
        assert_eq!(t.admit(a, start + Duration::from_millis(500)).await, Ok(()));
        // Refilled no higher than the burst.
        let later = start + Duration::from_secs(60);
        for _ in 0..3 {
            assert_eq!(t.admit(a, later).await, Ok(()));
        }
        assert!(t.admit(a, later).await.is_err());
    }
}
