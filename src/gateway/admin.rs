//! The control plane, on a thread and runtime of its own so it never competes with the data plane: the
//! background health checks, the reloader, and (when `admin_listen` is set) the admin listener with
//! `/metrics` (Prometheus), `/healthz` (the process is up), `/readyz` (ready unless shutting down; what the
//! health checks last found about the facilitator and the store is shown, not failed on; a probe never
//! makes a network call), and `/payments` (payments whose settlement outcome is
//! unknown; `POST /payments/resolve` records an operator's finding: what `x402-gateway payments` calls).

use std::net::SocketAddr;
use std::sync::Arc;

use axum::extract::ConnectInfo;
use axum::http::{header, StatusCode};
use axum::routing::{get, post};
use axum::{Json, Router};
use serde::Deserialize;
use serde_json::{json, Value};

use crate::gateway::claimer::Claimer;
use crate::gateway::claims::Claims;
use crate::gateway::facilitator::Remote;
use crate::gateway::health::Health;
use crate::gateway::live::LiveConfig;
use crate::gateway::metrics::Metrics;
use crate::gateway::reload::Reloader;
use crate::gateway::store::{key, parse_key, ClaimState, Store};

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
    /// Claims and settles `batch-settlement` vouchers.
    pub claimer: Arc<Claimer>,
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
            tokio::spawn(plane.claimer.clone().run());
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
            let (listed, resolved) = (claims.clone(), claims.clone());
            let (shown, claiming, settling) = (plane.claimer.clone(), plane.claimer.clone(), plane.claimer);
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
                .route("/channels", get(move || channels(shown.clone())))
                .route(
                    "/channels/claim",
                    post(move |ConnectInfo(peer): ConnectInfo<SocketAddr>| collect(claiming.clone(), peer, false)),
                )
                .route(
                    "/channels/settle",
                    post(move |ConnectInfo(peer): ConnectInfo<SocketAddr>| collect(settling.clone(), peer, true)),
                )
                .route("/payments", get(move || list(listed.clone())))
                .route(
                    "/payments/resolve",
                    post(
                        move |ConnectInfo(peer): ConnectInfo<SocketAddr>, Json(r): Json<Resolution>| {
                            resolve(resolved.clone(), peer, r)
                        },
                    ),
                )
                .route(
                    "/readyz",
                    get(move || {
                        let answer = match health.readiness() {
                            Ok(degraded) if degraded.is_empty() => (StatusCode::OK, "ready\n".to_owned()),
                            Ok(degraded) => (
                                StatusCode::OK,
                                format!("ready, degraded (priced routes answer 503): {}\n", degraded.join("; ")),
                            ),
                            Err(why) => (StatusCode::SERVICE_UNAVAILABLE, format!("not ready: {why}\n")),
                        };
                        async move { answer }
                    }),
                );
            if let Err(e) = axum::serve(listener, app.into_make_service_with_connect_info::<SocketAddr>()).await {
                tracing::error!(error = %e, "admin server stopped");
            }
        });
    })?;
    Ok(())
}

/// `GET /channels`: every `batch-settlement` channel with its deposit, charged and unclaimed amounts.
async fn channels(claimer: Arc<Claimer>) -> (StatusCode, Json<Value>) {
    match claimer.list().await {
        Ok(rows) => (StatusCode::OK, Json(json!({ "channels": rows }))),
        Err(e) => (StatusCode::SERVICE_UNAVAILABLE, Json(json!({ "error": e }))),
    }
}

/// `POST /channels/claim` and `/channels/settle`: a claim (or settle) round now, from this host only (it
/// sends transactions).
async fn collect(claimer: Arc<Claimer>, peer: SocketAddr, settle: bool) -> (StatusCode, Json<Value>) {
    if !peer.ip().is_loopback() {
        let message = "channels are claimed by hand only from the gateway's own host (loopback): run `x402-gateway channels` there";
        return (StatusCode::FORBIDDEN, Json(json!({ "error": message })));
    }
    let round = if settle {
        claimer.settle().await
    } else {
        claimer.claim().await
    };
    let status = if round.errors.is_empty() {
        StatusCode::OK
    } else {
        StatusCode::BAD_GATEWAY
    };
    (status, Json(json!(round)))
}

/// `GET /payments`: every payment whose settlement outcome is unknown, oldest deadline first.
async fn list(claims: Arc<Claims>) -> (StatusCode, Json<Value>) {
    match claims.unknown().await {
        Ok(mut found) => {
            found.sort_by_key(|(_, r)| r.expires_at);
            let payments: Vec<Value> = found
                .iter()
                .map(|(id, r)| {
                    let transaction = match &r.state {
                        ClaimState::InDoubt { transaction } => transaction.as_str(),
                        _ => "",
                    };
                    json!({
                        "key": key(id),
                        "network": id.network.to_string(),
                        "asset": id.asset.to_string(),
                        "payer": id.payer.to_string(),
                        "nonce": id.nonce.to_string(),
                        "state": if r.state == ClaimState::Settling { "settling" } else { "in_doubt" },
                        "transaction": transaction,
                        "charge": r.charge.map(|c| c.to_string()),
                        "kept_until": r.expires_at,
                    })
                })
                .collect();
            (StatusCode::OK, Json(json!({ "payments": payments })))
        }
        Err(e) => (StatusCode::SERVICE_UNAVAILABLE, Json(json!({ "error": e.to_string() }))),
    }
}

/// `POST /payments/resolve`: `{"key": …, "settled": "0x<transaction>"}` (the chain shows it paid: the same
/// payment is then refused as used, never served again) or `{"key": …, "failed": "<why>"}` (it did not
/// and cannot happen: the payer may use the authorization again).
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Resolution {
    key: String,
    settled: Option<String>,
    failed: Option<String>,
}

async fn resolve(claims: Arc<Claims>, peer: SocketAddr, r: Resolution) -> (StatusCode, Json<Value>) {
    let refuse = |status, message: String| (status, Json(json!({ "error": message })));
    // Marking a payment settled serves it: only from this host (a shell on it, or `kubectl port-forward`),
    // however widely the admin listener is bound for metrics and probes.
    if !peer.ip().is_loopback() {
        return refuse(
            StatusCode::FORBIDDEN,
            "payments are resolved only from the gateway's own host (loopback): run `x402-gateway payments` there"
                .into(),
        );
    }
    let Some(id) = parse_key(&r.key) else {
        return refuse(
            StatusCode::BAD_REQUEST,
            format!("{:?} is not a payment key (see GET /payments)", r.key),
        );
    };
    let outcome = match (r.settled, r.failed) {
        (Some(transaction), None) if transaction.parse::<alloy::primitives::B256>().is_ok() => {
            ClaimState::Settled { transaction }
        }
        (None, Some(reason)) => ClaimState::Failed {
            reason: format!("resolved by hand: {reason}"),
        },
        _ => {
            return refuse(
                StatusCode::BAD_REQUEST,
                "give exactly one of `settled` (a 0x-prefixed 32-byte transaction hash) or `failed` (why)".into(),
            )
        }
    };
    tracing::warn!(key = %r.key, outcome = ?outcome, "payment resolved by hand");
    match claims.resolve_by_hand(&id, outcome).await {
        Ok(Ok(())) => (StatusCode::OK, Json(json!({ "resolved": r.key }))),
        Ok(Err(why)) => refuse(StatusCode::CONFLICT, why),
        Err(e) => refuse(StatusCode::SERVICE_UNAVAILABLE, e.to_string()),
    }
}
