//! A small JSON echo service: the demo's upstream and the tests' stand-in for "your API". It answers
//! every request with what it received (method, path, query, headers, body), so a test can see exactly
//! what reached the upstream; the request header `x-echo-status: <code>` makes it answer with that status, and
//! `x-echo-delay-ms: <n>` makes it wait first, `x-echo-pad: <n>` makes the answer n bytes longer, and
//! `x-echo-charge: <amount>` makes it report that charge for a metered (`upto`) route, as a real API
//! would report what a call cost, in `Settlement-Overrides`; each `x-echo-header: <name>: <value>` adds
//! that header to the answer (caching headers, say). `GET /__echo/received` answers how many requests it
//! has received so far (`{"received": n}`, counted as each arrives), so a test can wait until one reached
//! it instead of sleeping.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::{Request, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde_json::{json, Map, Value};

/// Largest padding `x-echo-pad` adds.
const MAX_PAD: usize = 64 * 1024 * 1024;
/// Largest request body echoed back.
const MAX_BODY: usize = 1024 * 1024;

/// Requests received so far (the counter endpoint's own excluded).
type Received = Arc<AtomicU64>;

async fn received(State(count): State<Received>) -> Json<Value> {
    Json(json!({ "received": count.load(Ordering::SeqCst) }))
}

async fn echo(State(count): State<Received>, req: Request) -> Response {
    count.fetch_add(1, Ordering::SeqCst);
    let (parts, body) = req.into_parts();
    let body = axum::body::to_bytes(body, MAX_BODY)
        .await
        .unwrap_or_else(|_| Bytes::new());
    let headers: Map<String, Value> = parts
        .headers
        .iter()
        .map(|(k, v)| (k.to_string(), json!(v.to_str().unwrap_or("<binary>"))))
        .collect();
    let path = parts.uri.path().to_owned();
    let status = parts
        .headers
        .get("x-echo-status")
        .and_then(|v| v.to_str().ok())
        .and_then(|c| c.parse::<u16>().ok())
        .and_then(|c| StatusCode::from_u16(c).ok())
        .unwrap_or(StatusCode::OK);
    // Lets a test act while the upstream is "working" (e.g. drain the payer before settlement).
    let delay = parts
        .headers
        .get("x-echo-delay-ms")
        .and_then(|v| v.to_str().ok())
        .and_then(|d| d.parse::<u64>().ok());
    if let Some(ms) = delay {
        tokio::time::sleep(std::time::Duration::from_millis(ms.min(60_000))).await;
    }
    // `x-echo-pad: <n>` adds n bytes to the answer, for tests of large, streamed responses.
    let pad = parts
        .headers
        .get("x-echo-pad")
        .and_then(|v| v.to_str().ok())
        .and_then(|n| n.parse::<usize>().ok())
        .map_or(0, |n| n.min(MAX_PAD));
    let answer = json!({
        "method": parts.method.as_str(),
        "path": path,
        "query": parts.uri.query(),
        "headers": headers,
        "body": String::from_utf8_lossy(&body),
        "served_by": "x402-gateway demo upstream",
        "pad": "x".repeat(pad),
    });
    let mut resp = (status, [("x-upstream", "echo")], Json(answer)).into_response();
    let charge = parts.headers.get("x-echo-charge").and_then(|v| v.to_str().ok());
    if let Some(v) = charge.and_then(|c| axum::http::HeaderValue::from_str(&json!({ "amount": c }).to_string()).ok()) {
        resp.headers_mut().insert("settlement-overrides", v);
    }
    for (name, value) in parts
        .headers
        .get_all("x-echo-header")
        .iter()
        .filter_map(|v| v.to_str().ok()?.split_once(':'))
    {
        if let (Ok(n), Ok(v)) = (
            axum::http::HeaderName::try_from(name.trim()),
            axum::http::HeaderValue::from_str(value.trim()),
        ) {
            resp.headers_mut().append(n, v);
        }
    }
    resp
}

/// Serves the echo app on `listener` until the task is dropped.
pub async fn serve(listener: tokio::net::TcpListener) -> std::io::Result<()> {
    let app = axum::Router::new()
        .route("/__echo/received", axum::routing::get(received))
        .fallback(echo)
        .with_state(Received::default());
    axum::serve(listener, app).await
}

/// `x402-gateway upstream`: run the echo service by itself.
pub async fn run(listen: SocketAddr) -> Result<(), String> {
    let listener = tokio::net::TcpListener::bind(listen)
        .await
        .map_err(|e| format!("cannot listen on {listen}: {e}"))?;
    tracing::info!(%listen, "echo upstream ready");
    tokio::select! {
        r = serve(listener) => r.map_err(|e| e.to_string()),
        () = crate::core::signal::shutdown_signal() => Ok(()),
    }
}
