//! Readiness, kept up to date by a background task so that no probe makes a network call: the
//! facilitators' `/supported` (between them, answered recently and covering every network the price
//! table accepts), the payment store (answers a ping), and whether shutdown began. A facilitator outage
//! fails readiness only once the last good answers are older than `health.stale_after`; it never fails
//! liveness. The same checks tell the request path which facilitator is up and what each serves.

use alloy::primitives::Address;
use std::collections::BTreeSet;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use crate::config::Health as Settings;
use crate::core::time::Clock;
use crate::gateway::facilitator::Remote;
use crate::gateway::live::LiveConfig;
use crate::gateway::metrics::Metrics;
use crate::gateway::store::Store;
use crate::protocol::facilitator::SupportedResponse;
use crate::protocol::network::Network;
use crate::protocol::{SCHEME_EXACT, SCHEME_UPTO};

/// The least time a background check is given, however short the interval.
const MIN_CHECK_TIMEOUT: Duration = Duration::from_secs(2);

/// What readiness depends on.
pub struct Health {
    settings: Settings,
    clock: Clock,
    metrics: Arc<Metrics>,
    draining: AtomicBool,
    /// Unix seconds of the facilitator's last good answer (0: none yet).
    facilitator_ok_at: AtomicU64,
    /// Why the last facilitator check failed, if it did.
    facilitator_problem: Mutex<Option<String>>,
    /// Why the last store ping failed, if it did; `Some` until the first ping.
    store_problem: Mutex<Option<String>>,
}

impl Health {
    /// Nothing checked yet: not ready until the first checks pass.
    pub fn new(settings: Settings, clock: Clock, metrics: Arc<Metrics>) -> Self {
        Health {
            settings,
            clock,
            metrics,
            draining: AtomicBool::new(false),
            facilitator_ok_at: AtomicU64::new(0),
            facilitator_problem: Mutex::new(Some("not checked yet".into())),
            store_problem: Mutex::new(Some("not checked yet".into())),
        }
    }

    /// Readiness from this process's own state only: `Err` once shutdown began. A facilitator or store
    /// outage does not make a replica unready (every replica would leave its Service, free routes with
    /// them): priced routes answer it with 503 themselves, and it is reported here as `Ok(degraded)`, with
    /// the gauges `x402_facilitator_up` and `x402_store_up`. Also brings the gauges up to date.
    pub fn readiness(&self) -> Result<Vec<String>, String> {
        let mut degraded = Vec::new();
        let fresh = self.facilitator_fresh();
        self.metrics.facilitator_up.set(i64::from(fresh));
        if !fresh {
            let problem = lock(&self.facilitator_problem).clone().unwrap_or_default();
            degraded.push(format!(
                "facilitator has not answered /supported for every configured network within {:?}: {problem}",
                self.settings.stale_after
            ));
        }
        let store = lock(&self.store_problem).clone();
        self.metrics.store_up.set(i64::from(store.is_none()));
        if let Some(p) = store {
            degraded.push(format!("store: {p}"));
        }
        let draining = self.is_draining();
        self.metrics.ready.set(i64::from(!draining));
        if draining {
            return Err("shutting down".to_owned());
        }
        Ok(degraded)
    }

    fn facilitator_fresh(&self) -> bool {
        let at = self.facilitator_ok_at.load(Ordering::Relaxed);
        at != 0 && self.clock.now().saturating_sub(at) <= self.settings.stale_after.as_secs()
    }

    /// Readiness goes false for good: shutdown began.
    pub fn start_draining(&self) {
        self.draining.store(true, Ordering::Relaxed);
        self.metrics.draining.set(1);
        self.metrics.ready.set(0);
    }

    /// Whether shutdown began.
    pub fn is_draining(&self) -> bool {
        self.draining.load(Ordering::Relaxed)
    }

    /// Checks the facilitators and the store every `health.interval`, forever.
    pub async fn run(self: Arc<Self>, remote: Arc<Remote>, store: Arc<dyn Store>, live: Arc<LiveConfig>) {
        let mut tick = tokio::time::interval(self.settings.interval);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tick.tick().await;
            let wanted = networks(&live);
            // A check that hangs is a failed check, not a stale success.
            let bound = self.settings.interval.max(MIN_CHECK_TIMEOUT);
            let late = |what| format!("{what} did not answer within {bound:?}");
            let (checked, pinged) = tokio::join!(
                check_facilitators(&remote, &wanted, bound),
                tokio::time::timeout(bound, store.ping())
            );
            match checked {
                Ok(()) => {
                    self.facilitator_ok_at.store(self.clock.now(), Ordering::Relaxed);
                    *lock(&self.facilitator_problem) = None;
                }
                Err(problem) => {
                    if lock(&self.facilitator_problem).as_deref() != Some(problem.as_str()) {
                        tracing::warn!(problem = %problem, "facilitator check failed");
                    }
                    *lock(&self.facilitator_problem) = Some(problem);
                }
            }
            *lock(&self.store_problem) = match pinged {
                Ok(Ok(())) => None,
                Ok(Err(e)) => Some(e.to_string()),
                Err(_) => Some(late("the store")),
            };
            let _ = self.readiness();
        }
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// Every network the current price table accepts.
fn networks(live: &LiveConfig) -> BTreeSet<Network> {
    let g = live.load();
    g.current
        .config
        .table
        .routes
        .iter()
        .filter_map(|r| r.pricing.as_ref())
        .flat_map(|p| &p.offers)
        .map(|o| o.requirement.network)
        .collect()
}

/// Asks every facilitator for `/supported` (each within `bound`), records on each whether it answered and
/// what it serves, and says whether those answering cover every wanted network between them.
async fn check_facilitators(remote: &Remote, wanted: &BTreeSet<Network>, bound: Duration) -> Result<(), String> {
    let mut served = BTreeSet::new();
    let mut problems = Vec::new();
    for m in remote.members() {
        match tokio::time::timeout(bound, m.client.supported()).await {
            Ok(Ok(s)) => {
                if let Some(problem) = m.client.address().and_then(|a| upto_signer_problem(&s, a)) {
                    tracing::warn!(facilitator = %m.client.shown(), "{problem}; it may refuse the `upto` payments naming that address");
                }
                let networks = exact_networks(&s);
                served.extend(networks.iter().copied());
                m.checked(networks);
            }
            Ok(Err(e)) => {
                m.failed();
                problems.push(e.to_string());
            }
            Err(_) => {
                m.failed();
                problems.push(format!(
                    "{}/supported did not answer within {bound:?}",
                    m.client.shown()
                ));
            }
        }
    }
    let missing: Vec<String> = wanted.difference(&served).map(ToString::to_string).collect();
    if missing.is_empty() {
        return Ok(());
    }
    problems.push(format!(
        "no facilitator answering supports `exact` on {}",
        missing.join(", ")
    ));
    Err(problems.join("; "))
}

/// The networks `/supported` lists the `exact` scheme on (by either of their names).
fn exact_networks(s: &SupportedResponse) -> BTreeSet<Network> {
    s.kinds
        .iter()
        .filter(|k| k.scheme == SCHEME_EXACT)
        .filter_map(|k| Network::parse(&k.network))
        .collect()
}

/// Why a facilitator configured to settle `upto` from `address` may not: its `/supported` lists no `upto`
/// kind from that account.
fn upto_signer_problem(s: &SupportedResponse, address: Address) -> Option<String> {
    let listed: Vec<String> = s
        .kinds
        .iter()
        .filter(|k| k.scheme == SCHEME_UPTO)
        .filter_map(|k| k.extra.as_ref()?.get("facilitatorAddress")?.as_str().map(str::to_owned))
        .collect();
    let ours = listed.iter().any(|l| l.parse::<Address>().ok() == Some(address));
    match (ours, listed.is_empty()) {
        (true, _) => None,
        (false, true) => Some(format!("its /supported lists no `upto` kind, but `address: {address}` is configured for upto routes")),
        (false, false) => Some(format!(
            "its /supported settles `upto` from {}, not the configured `address: {address}`: set `address:` to the one it lists",
            listed.join(", ")
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn a_configured_upto_address_must_be_one_the_facilitator_lists() {
        let ours: Address = "0x90F79bf6EB2c4f870365E785982E1f101E93b906".parse().unwrap();
        let supported = |kinds: serde_json::Value| -> SupportedResponse {
            serde_json::from_value(json!({ "kinds": kinds })).unwrap()
        };
        let listing = |a: &str| {
            supported(
                json!([{"x402Version": 2, "scheme": "upto", "network": "eip155:8453", "extra": {"facilitatorAddress": a}}]),
            )
        };
        assert_eq!(
            upto_signer_problem(&listing(&ours.to_string().to_lowercase()), ours),
            None
        );
        let other = upto_signer_problem(&listing("0x0000000000000000000000000000000000000001"), ours).unwrap();
        assert!(
            other.contains("0x0000000000000000000000000000000000000001") && other.contains("set `address:`"),
            "{other}"
        );
        let none = upto_signer_problem(
            &supported(json!([{"x402Version": 2, "scheme": "exact", "network": "eip155:8453"}])),
            ours,
        );
        assert!(none.unwrap().contains("no `upto` kind"));
    }
}
