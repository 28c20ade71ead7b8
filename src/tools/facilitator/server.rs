//! The self-hosted facilitator's HTTP face (x402-notes §6): `POST /verify`, `POST /settle`,
//! `GET /supported`, `GET /healthz`, `GET /metrics`.

use std::fmt::Write as _;
use std::sync::atomic::Ordering;
use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::State;
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use serde_json::json;

use super::service::{BadRequest, FacilitatorService};
use crate::protocol::facilitator::FacilitatorRequest;

/// Flags of `facilitator`. The settling key comes from `X402_FACILITATOR_PRIVATE_KEY`, never a flag.
#[derive(Debug, clap::Args)]
pub struct FacilitatorArgs {
    /// Address to serve the facilitator API on.
    #[arg(long, default_value = "127.0.0.1:4020")]
    pub listen: std::net::SocketAddr,
    /// JSON-RPC endpoint of the chain to settle on.
    #[arg(long, env = "X402_RPC_URL")]
    pub rpc_url: url::Url,
    /// Networks to serve (CAIP-2 or v1 name), each optionally `=RPC_URL` for its own endpoint. Repeatable.
    /// Default: the chain `--rpc-url` reports.
    #[arg(long = "network")]
    pub networks: Vec<String>,
    /// How long to wait for a settlement's receipt before answering `settlement_pending`.
    #[arg(long, default_value = "30s", value_parser = crate::core::time::parse_duration)]
    pub receipt_timeout: std::time::Duration,
    /// A factory a counterfactual (EIP-6492) payer's wallet may be deployed from, by this facilitator at
    /// its own cost before settling. Repeatable. Default: none (as the official facilitators: such a payer
    /// is refused with `eip6492_factory_not_allowed`).
    #[arg(long = "eip6492-factory")]
    pub eip6492_factories: Vec<alloy::primitives::Address>,
}

/// Request bodies above this are refused; a real payload is a few KB.
const MAX_BODY_BYTES: usize = 64 * 1024;

/// The router serving the facilitator API.
pub fn router(service: Arc<FacilitatorService>) -> Router {
    Router::new()
        .route("/verify", post(verify))
        .route("/settle", post(settle))
        .route("/supported", get(supported))
        .route("/healthz", get(|| async { Json(json!({"status": "ok"})) }))
        .route("/metrics", get(metrics))
        .layer(axum::extract::DefaultBodyLimit::max(MAX_BODY_BYTES))
        .with_state(service)
}

fn bad_request(message: String) -> Response {
    (StatusCode::BAD_REQUEST, Json(json!({ "error": message }))).into_response()
}

/// Reads a `/verify` or `/settle` body; anything unreadable is a 400 saying what was expected.
fn parse(body: &Bytes) -> Result<FacilitatorRequest, BadRequest> {
    serde_json::from_slice(body).map_err(|e| {
        BadRequest(format!(
            "body must be JSON {{x402Version: 1|2, paymentPayload: {{…}}, paymentRequirements: {{…}}}}: {e}"
        ))
    })
}

fn answer<T: serde::Serialize>(result: Result<T, BadRequest>) -> Response {
    match result {
        Ok(v) => Json(v).into_response(),
        Err(BadRequest(m)) => bad_request(m),
    }
}

async fn verify(State(s): State<Arc<FacilitatorService>>, body: Bytes) -> Response {
    match parse(&body) {
        Ok(req) => answer(s.verify(&req).await),
        Err(e) => answer::<()>(Err(e)),
    }
}

async fn settle(State(s): State<Arc<FacilitatorService>>, body: Bytes) -> Response {
    let req = match parse(&body) {
        Ok(req) => req,
        Err(e) => return answer::<()>(Err(e)),
    };
    // A settlement runs to its end even if the caller hangs up: a transaction half-recorded would be sent
    // twice by the retry.
    match tokio::spawn(async move { s.settle(&req).await }).await {
        Ok(result) => answer(result),
        Err(e) => (
            StatusCode::INTERNAL_SERVER_ERROR,
            Json(json!({ "error": format!("settlement task failed: {e}") })),
        )
            .into_response(),
    }
}

async fn supported(State(s): State<Arc<FacilitatorService>>) -> Response {
    s.counters.supported_requests.fetch_add(1, Ordering::Relaxed);
    Json(s.supported()).into_response()
}

async fn metrics(State(s): State<Arc<FacilitatorService>>) -> Response {
    let c = &s.counters;
    let mut out = String::new();
    for (name, help, v) in [
        (
            "facilitator_verify_requests_total",
            "POST /verify requests",
            &c.verify_requests,
        ),
        (
            "facilitator_settle_requests_total",
            "POST /settle requests",
            &c.settle_requests,
        ),
        (
            "facilitator_transactions_sent_total",
            "settlement transactions broadcast",
            &c.transactions_sent,
        ),
        (
            "facilitator_supported_requests_total",
            "GET /supported requests",
            &c.supported_requests,
        ),
    ] {
        let _ = writeln!(
            out,
            "# HELP {name} {help}\n# TYPE {name} counter\n{name} {}",
            v.load(Ordering::Relaxed)
        );
    }
    ([(header::CONTENT_TYPE, "text/plain; version=0.0.4")], out).into_response()
}

/// `x402-gateway facilitator`: connect to each network's RPC with the settling key, then serve.
pub async fn run(args: FacilitatorArgs) -> Result<(), String> {
    use crate::protocol::network::Network;
    const KEY_VAR: &str = "X402_FACILITATOR_PRIVATE_KEY";
    let signer = crate::core::secret::private_key_from_env(KEY_VAR)?;
    let settler = signer.address();
    let mut chains = Vec::new();
    let specs: Vec<(Option<Network>, url::Url)> = if args.networks.is_empty() {
        vec![(None, args.rpc_url.clone())]
    } else {
        let mut out = Vec::new();
        for spec in &args.networks {
            let (name, url) = match spec.split_once('=') {
                Some((n, u)) => (
                    n,
                    u.parse()
                        .map_err(|e| format!("--network {n}: the RPC URL after '=' is not a URL: {e}"))?,
                ),
                None => (spec.as_str(), args.rpc_url.clone()),
            };
            let net = Network::parse(name)
                .ok_or_else(|| format!("--network {name:?} is neither eip155:<chainId> nor a known v1 network name"))?;
            out.push((Some(net), url));
        }
        out
    };
    for (want, url) in specs {
        let chain = crate::tools::chain::Chain::connect(&url, Some(signer.clone()))
            .await
            .map_err(|e| e.to_string())?;
        if let Some(net) = want {
            if net.chain_id != chain.chain_id() {
                return Err(format!(
                    "--network {net}: the RPC at {} serves chain id {}, not {}",
                    crate::core::secret::redact(&url),
                    chain.chain_id(),
                    net.chain_id
                ));
            }
        }
        tracing::info!(network = %Network::new(chain.chain_id()), rpc = %crate::core::secret::redact(&url), "serving network");
        chains.push(chain);
    }
    let service =
        Arc::new(FacilitatorService::new(chains, args.receipt_timeout).deploying_from(args.eip6492_factories.clone()));
    let listener = tokio::net::TcpListener::bind(args.listen)
        .await
        .map_err(|e| format!("cannot listen on {}: {e}", args.listen))?;
    tracing::info!(listen = %args.listen, settler = %settler, "facilitator ready");
    axum::serve(listener, router(service))
        .with_graceful_shutdown(crate::core::signal::shutdown_signal())
        .await
        .map_err(|e| format!("facilitator server failed: {e}"))
}
