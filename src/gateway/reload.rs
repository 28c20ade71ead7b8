//! Hot reload: on SIGHUP, and when the config file's content changes (polled, so the symlink swap
//! Kubernetes does for a mounted ConfigMap is seen like any edit), the file is parsed and validated and
//! the result swapped in whole. A file that does not load leaves the running config in place, is logged
//! with every error and counted as a failed reload. Requests in flight finish under the config they
//! started with; quotes from the replaced table stay payable until they expire ([`live`]).
//!
//! The listener's certificate files are looked at on the same tick and on SIGHUP ([`tls`]).
//!
//! The price table, routes, upstreams and modes reload. Settings the running process was built from
//! (listen addresses, `tls` paths, store, facilitator, shutdown, health, reload, log format) need a restart: a change
//! to one is logged and otherwise ignored.
//!
//! [`live`]: crate::gateway::live
//! [`tls`]: crate::gateway::tls

use std::path::PathBuf;
use std::sync::Arc;

use sha2::{Digest, Sha256};
use tokio::signal::unix::Signal;

use crate::config::{Config, ProcessEnv, Reload};
use crate::core::time::Clock;
use crate::gateway::live::{Live, LiveConfig};
use crate::gateway::metrics::Metrics;
use crate::gateway::tls::{Certificate, Refresh};

/// Watches for SIGHUP and file changes, forever.
pub struct Reloader {
    pub path: PathBuf,
    pub settings: Reload,
    pub live: Arc<LiveConfig>,
    pub metrics: Arc<Metrics>,
    pub clock: Clock,
    /// The listener's certificate, when it speaks TLS: its files are looked at on the same tick.
    pub tls: Option<Arc<Certificate>>,
}

/// What a file's bytes hash to, or `None` when it cannot be read.
fn digest(path: &PathBuf) -> Option<[u8; 32]> {
    std::fs::read(path).ok().map(|b| Sha256::digest(&b).into())
}

impl Reloader {
    /// Runs until the process ends, reloading on each `hup` (SIGHUP, registered by the caller before
    /// anything could send it: its default action ends the process).
    pub async fn run(self, mut hup: Signal) {
        // Restart-only settings are compared with what the process started with, not the last reload.
        let started = self.live.load().current.config.clone();
        let mut seen = digest(&self.path);
        let mut tick = tokio::time::interval(self.settings.interval);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            let why = tokio::select! {
                _ = hup.recv() => "SIGHUP",
                _ = tick.tick(), if self.settings.watch => "file changed",
            };
            self.refresh_certificate(why);
            let now = digest(&self.path);
            // A file caught missing mid-swap is not a change (the next look sees the new one); the same
            // content again (a SIGHUP with nothing edited) would only retire an identical table.
            if now.is_none() || now == seen {
                if why == "SIGHUP" {
                    tracing::info!("SIGHUP: the config file is unchanged (or unreadable); nothing to reload");
                }
                continue;
            }
            seen = now;
            self.reload(why, &started).await;
        }
    }

    /// Serves the listener's certificate files anew if they changed and load.
    fn refresh_certificate(&self, why: &'static str) {
        let Some(cert) = &self.tls else { return };
        match cert.refresh() {
            Refresh::Unchanged => {}
            Refresh::Replaced => {
                self.metrics.tls_reload(true);
                tracing::info!(trigger = why, "TLS certificate reloaded");
            }
            Refresh::Failed(e) => {
                self.metrics.tls_reload(false);
                tracing::error!(trigger = why, error = %e, "TLS certificate files changed but do not load; the running certificate is kept");
            }
        }
    }

    /// Loads the file and swaps it in, or keeps the running config.
    async fn reload(&self, why: &'static str, started: &Config) {
        let path = self.path.clone();
        let metrics = self.metrics.clone();
        // Reading, resolving upstream names and building every route's 402 is blocking work.
        let running = started.clone();
        let built = tokio::task::spawn_blocking(move || {
            let config = crate::config::load(&path, &ProcessEnv).map_err(|e| e.to_string())?;
            unsettled_upto(&running, &config)?;
            Live::new(config, &metrics)
        })
        .await
        .unwrap_or_else(|e| Err(format!("reload task failed: {e}")));
        match built {
            Ok(live) => {
                for field in restart_only(started, &live.config) {
                    tracing::warn!(
                        field,
                        "changed in the file, but takes effect only on restart; the running value is kept"
                    );
                }
                let routes = live.config.table.routes.len();
                self.live.swap(live, self.clock.now());
                self.metrics.reload(true);
                tracing::info!(trigger = why, routes, "config reloaded");
            }
            Err(errors) => {
                self.metrics.reload(false);
                tracing::error!(trigger = why, errors = %errors, "config reload failed; the running config is kept");
            }
        }
    }
}

/// The fields that differ between `old` and `new` but only take effect on restart.
fn restart_only(old: &Config, new: &Config) -> Vec<&'static str> {
    let checks = [
        ("listen", old.listen == new.listen),
        ("admin_listen", old.admin_listen == new.admin_listen),
        ("tls", old.tls == new.tls),
        ("store", old.store == new.store),
        ("rpc", old.rpc == new.rpc),
        ("redis_durability", old.redis_durability == new.redis_durability),
        ("payment_attempts", old.payment_attempts == new.payment_attempts),
        ("claim_lease", old.claim_lease == new.claim_lease),
        ("upstream_ca_file", old.upstream_ca_file == new.upstream_ca_file),
        ("facilitators", same_facilitators(old, new)),
        ("shutdown", old.shutdown == new.shutdown),
        ("health", old.health == new.health),
        ("reload", old.reload == new.reload),
        ("log_format", old.log_format == new.log_format),
    ];
    checks.iter().filter(|(_, same)| !same).map(|(f, _)| *f).collect()
}

/// Refuses a config whose `upto` offers name a settling account no running facilitator settles from (a
/// changed `facilitator.address`): its payers would sign for a facilitator this process cannot reach,
/// since facilitators take a restart.
fn unsettled_upto(running: &Config, new: &Config) -> Result<(), String> {
    let settles = |a: &alloy::primitives::Address| running.facilitators.iter().any(|f| f.address.as_ref() == Some(a));
    let offers = new
        .table
        .routes
        .iter()
        .filter_map(|r| r.pricing.as_ref())
        .flat_map(|p| &p.offers);
    match offers.filter_map(|o| o.requirement.settler()).find(|a| !settles(a)) {
        Some(a) => Err(format!(
            "upto routes would offer facilitator account {a}, which no running facilitator settles from: a change to `facilitator.address` takes a restart"
        )),
        None => Ok(()),
    }
}

/// Whether the facilitators are the same, in the same order (secrets compared, never shown).
fn same_facilitators(old: &Config, new: &Config) -> bool {
    let (a, b) = (&old.facilitators, &new.facilitators);
    a.len() == b.len() && a.iter().zip(b).all(|(x, y)| x.same_as(y))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    fn config(address: &str) -> Config {
        let yaml = format!(
            "facilitator:\n  url: http://127.0.0.1:4020\n  address: \"{address}\"\nupstreams:\n  default: http://127.0.0.1:3000\npay_to: \"0x3C44CdDdB6a900fa2b585dd299e03d12FA4293BC\"\naccepts: [eip155:84532]\nroutes:\n  - path: /ai/**\n    price: {{upto: \"$0.10\"}}\n"
        );
        crate::config::parse(&yaml, "t.yaml", &HashMap::<String, String>::new()).unwrap()
    }

    #[test]
    fn a_reload_offering_upto_from_an_account_no_running_facilitator_settles_from_is_refused() {
        let running = config("0x90F79bf6EB2c4f870365E785982E1f101E93b906");
        assert_eq!(unsettled_upto(&running, &running.clone()), Ok(()));
        let moved = config("0x15d34AAf54267DB7D7c367839AAf71A00a2C6A65");
        let err = unsettled_upto(&running, &moved).unwrap_err();
        assert!(
            err.contains("0x15d34AAf54267DB7D7c367839AAf71A00a2C6A65") && err.contains("takes a restart"),
            "{err}"
        );
    }
}
