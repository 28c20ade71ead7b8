//! The admin listener: `/metrics` (Prometheus), `/healthz` (the process is up), `/readyz` (the price table
//! is loaded, the payment store answers and the facilitator answers `/supported`). Runs on its own thread so it never competes
//! with the data plane's runtime.

use std::net::SocketAddr;
use std::sync::Arc;

use axum::http::header;
use axum::response::IntoResponse;
use axum::routing::get;
use axum::Router;

use crate::gateway::facilitator::FacilitatorClient;
use crate::gateway::metrics::Metrics;
use crate::gateway::store::Store;

/// What the admin listener reports on.
pub struct Probes {
    pub metrics: Arc<Metrics>,
    pub facilitator: FacilitatorClient,
    pub store: Arc<dyn Store>,
}

/// Starts the admin server on a thread of its own.
pub fn spawn(listen: SocketAddr, probes: Probes) -> std::io::Result<()> {
    let Probes {
        metrics,
        facilitator,
        store,
    } = probes;
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
    let listener = std::net::TcpListener::bind(listen)?;
    listener.set_nonblocking(true)?;
    std::thread::Builder::new().name("admin".into()).spawn(move || {
        rt.block_on(async move {
            let Ok(listener) = tokio::net::TcpListener::from_std(listener) else {
                return;
            };
            let app = Router::new()
                .route(
                    "/metrics",
                    get(move || {
                        let m = metrics.clone();
                        async move { ([(header::CONTENT_TYPE, "text/plain; version=0.0.4")], m.render()) }
                    }),
                )
                .route("/healthz", get(|| async { "ok" }))
                .route(
                    "/readyz",
                    get(move || {
                        let (f, store) = (facilitator.clone(), store.clone());
                        async move {
                            if let Err(e) = store.ping().await {
                                return (
                                    axum::http::StatusCode::SERVICE_UNAVAILABLE,
                                    format!("store not ready: {e}"),
                                )
                                    .into_response();
                            }
                            match f.supported().await {
                                Ok(_) => (axum::http::StatusCode::OK, "ready".to_owned()).into_response(),
                                Err(e) => (
                                    axum::http::StatusCode::SERVICE_UNAVAILABLE,
                                    format!("facilitator not ready: {e}"),
                                )
                                    .into_response(),
                            }
                        }
                    }),
                );
            if let Err(e) = axum::serve(listener, app).await {
                tracing::error!(error = %e, "admin server stopped");
            }
        });
    })?;
    Ok(())
}
