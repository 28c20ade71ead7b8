//! The control plane, on a thread and runtime of its own so it never competes with the data plane: the
//! background health checks, the reloader, and (when `admin_listen` is set) the admin listener with
//! `/metrics` (Prometheus), `/healthz` (the process is up) and `/readyz` (what the health checks last
//! found; a probe never makes a network call).

use std::net::SocketAddr;
use std::sync::Arc;

use axum::http::{header, StatusCode};
use axum::routing::get;
use axum::Router;

use crate::gateway::claims::Claims;
use crate::gateway::facilitator::Remote;
use crate::gateway::health::Health;
use crate::gateway::live::LiveConfig;
use crate::gateway::metrics::Metrics;
use crate::gateway::reload::Reloader;
use crate::gateway::store::Store;

/// What the control plane runs and reports on.
pub struct ControlPlane {
    pub admin_listen: Option<SocketAddr>,
    pub metrics: Arc<Metrics>,
    pub health: Arc<Health>,
    pub remote: Arc<Remote>,
    pub claims: Arc<Claims>,
    pub store: Arc<dyn Store>,
    pub live: Arc<LiveConfig>,
    pub reloader: Reloader,
}

/// Starts the control plane on a thread of its own. The admin port is bound before this returns, so a
/// port in use is a start-up error.
pub fn spawn(plane: ControlPlane) -> std::io::Result<()> {
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
    let listener = match plane.admin_listen {
        Some(addr) => {
            let l = std::net::TcpListener::bind(addr)?;
            l.set_nonblocking(true)?;
            Some(l)
        }
        None => None,
    };
    // SIGHUP's handler must be in place before this returns: its default action ends the process.
    let hup = {
        let _in = rt.enter();
        tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup())?
    };
    std::thread::Builder::new().name("control".into()).spawn(move || {
        rt.block_on(async move {
            tokio::spawn(
                plane
                    .health
                    .clone()
                    .run(plane.remote, plane.store.clone(), plane.live),
            );
            let reloads = tokio::spawn(plane.reloader.run(hup));
            let listener = match listener.map(tokio::net::TcpListener::from_std) {
                Some(Ok(l)) => l,
                Some(Err(e)) => {
                    tracing::error!(error = %e, "admin listener cannot start; /metrics, /healthz and /readyz are unavailable");
                    let _ = reloads.await;
                    return;
                }
                None => {
                    let _ = reloads.await;
                    return;
                }
            };
            let (metrics, claims, store, health) = (plane.metrics, plane.claims, plane.store, plane.health);
            let gauges = health.clone();
            let app = Router::new()
                .route(
                    "/metrics",
                    get(move || {
                        let _ = gauges.readiness();
                        metrics.cache_entries("settled", claims.settled_entries());
                        if let Some(n) = store.entries() {
                            metrics.cache_entries("claims", n);
                        }
                        let body = metrics.render();
                        async move { ([(header::CONTENT_TYPE, "text/plain; version=0.0.4")], body) }
                    }),
                )
                .route("/healthz", get(|| async { "ok" }))
                .route(
                    "/readyz",
                    get(move || {
                        let answer = match health.readiness() {
                            Ok(()) => (StatusCode::OK, "ready\n".to_owned()),
                            Err(why) => (
                                StatusCode::SERVICE_UNAVAILABLE,
                                format!("not ready: {}\n", why.join("; ")),
                            ),
                        };
                        async move { answer }
                    }),
                );
            if let Err(e) = axum::serve(listener, app).await {
                tracing::error!(error = %e, "admin server stopped");
            }
        });
    })?;
    Ok(())
}
