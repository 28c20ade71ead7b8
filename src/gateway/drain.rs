//! Graceful shutdown. On SIGTERM readiness goes false at once (load balancers stop sending), the listener
//! keeps accepting for `shutdown.drain_delay` (requests already routed here still land), then Pingora
//! stops accepting; the requests in flight finish, settlements included, and the process exits 0 as soon
//! as none is left, or when `shutdown.grace_period` (counted from SIGTERM) runs out. SIGINT stops at once.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use async_trait::async_trait;
use pingora::server::{ShutdownSignal, ShutdownSignalWatch};
use tokio::signal::unix::{signal, SignalKind};

use crate::config::Shutdown;
use crate::gateway::health::Health;

/// Requests in flight, counted by [`InFlight`] guards.
#[derive(Default)]
pub struct Requests(AtomicUsize);

/// One request in flight; dropped with its context, however the request ended.
pub struct InFlight(Arc<Requests>);

impl Requests {
    /// Counts a request until its guard drops.
    pub fn start(self: &Arc<Self>) -> InFlight {
        self.0.fetch_add(1, Ordering::Relaxed);
        InFlight(self.clone())
    }

    fn count(&self) -> usize {
        self.0.load(Ordering::Relaxed)
    }
}

impl Drop for InFlight {
    fn drop(&mut self) {
        self.0 .0.fetch_sub(1, Ordering::Relaxed);
    }
}

/// Pingora's shutdown watch, with the drain in front of it.
pub struct Drain {
    pub settings: Shutdown,
    pub health: Arc<Health>,
    pub requests: Arc<Requests>,
    /// Called once just before an early exit (flushes the log writer).
    pub before_exit: std::sync::Mutex<Option<Box<dyn FnOnce() + Send>>>,
}

/// Pingora's own wait after it stops accepting, so that with its runtime shutdown (1 s) the whole stays
/// within the grace period; [`Drain`] exits earlier once nothing is in flight.
pub fn pingora_wait(s: &Shutdown) -> u64 {
    s.grace_period.saturating_sub(s.drain_delay).as_secs().saturating_sub(1)
}

/// How often the drain looks at the requests in flight.
const POLL: Duration = Duration::from_millis(20);
/// Quiet time before exiting: a connection accepted just before the listener closed may not have
/// started its request yet.
const SETTLE: Duration = Duration::from_millis(200);

/// Waits for no request in flight (or the deadline), then exits 0.
fn exit_when_idle(requests: &Requests, before_exit: Option<Box<dyn FnOnce() + Send>>, deadline: Instant) {
    while Instant::now() < deadline {
        if requests.count() == 0 {
            std::thread::sleep(SETTLE);
            if requests.count() == 0 {
                tracing::info!("drained: no request in flight, exiting");
                if let Some(flush) = before_exit {
                    flush();
                }
                std::process::exit(0);
            }
        }
        std::thread::sleep(POLL);
    }
    tracing::warn!(
        in_flight = requests.count(),
        "grace period over with requests in flight"
    );
}

#[async_trait]
impl ShutdownSignalWatch for Drain {
    async fn recv(&self) -> ShutdownSignal {
        let (Ok(mut term), Ok(mut int)) = (signal(SignalKind::terminate()), signal(SignalKind::interrupt())) else {
            tracing::error!("cannot listen for SIGTERM/SIGINT; stopping");
            return ShutdownSignal::FastShutdown;
        };
        tokio::select! {
            _ = int.recv() => {
                tracing::info!("SIGINT: stopping now");
                ShutdownSignal::FastShutdown
            }
            _ = term.recv() => {
                let deadline = Instant::now() + self.settings.grace_period;
                self.health.start_draining();
                tracing::info!(drain_delay = ?self.settings.drain_delay, grace_period = ?self.settings.grace_period, "SIGTERM: not ready; draining");
                // SIGINT still stops at once while draining.
                tokio::select! {
                    () = tokio::time::sleep(self.settings.drain_delay) => {}
                    _ = int.recv() => {
                        tracing::info!("SIGINT while draining: stopping now");
                        return ShutdownSignal::FastShutdown;
                    }
                }
                tracing::info!(in_flight = self.requests.count(), "no longer accepting; finishing requests in flight");
                let requests = self.requests.clone();
                let before_exit = self.before_exit.lock().ok().and_then(|mut f| f.take());
                let _ = std::thread::Builder::new()
                    .name("drain".into())
                    .spawn(move || exit_when_idle(&requests, before_exit, deadline));
                ShutdownSignal::GracefulTerminate
            }
        }
    }
}
