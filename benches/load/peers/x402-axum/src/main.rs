//! x402-axum 2.0.2 peer for the load benchmark (benches/load): `GET /paid/**` behind `X402Middleware` with
//! one static v2 `exact` price tag (the same network, asset, payTo, amount, maxTimeoutSeconds and EIP-712
//! name/version as the gateway's bench route), proxied to the nginx upstream with a keep-alive client;
//! `GET /free/**` proxied without the middleware. Settlement after the handler (the crate's default, and
//! the gateway's). Configured from the environment:
//!   LISTEN, UPSTREAM (http://ip:port), FACILITATOR (http://ip:port/), PAY_TO, ASSET, NETWORK (CAIP-2),
//!   AMOUNT (atomic units), MAX_TIMEOUT_SECONDS, EIP712_NAME, EIP712_VERSION, DESCRIPTION, MIME_TYPE.

use axum::body::Body;
use axum::extract::{Request, State};
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::Router;
use serde_json::json;
use x402_axum::X402Middleware;
use x402_types::chain::ChainId;
use x402_types::proto::v2;

fn env(name: &str) -> String {
    std::env::var(name).unwrap_or_else(|_| panic!("{name} must be set"))
}

#[derive(Clone)]
struct Upstream {
    client: reqwest::Client,
    base: String,
}

async fn proxy(State(up): State<Upstream>, req: Request) -> Response {
    let path = req.uri().path_and_query().map_or("/", |p| p.as_str());
    match up.client.get(format!("{}{}", up.base, path)).send().await {
        Ok(r) => {
            let status = StatusCode::from_u16(r.status().as_u16()).unwrap_or(StatusCode::BAD_GATEWAY);
            let content_type = r.headers().get(reqwest::header::CONTENT_TYPE).cloned();
            match r.bytes().await {
                Ok(body) => {
                    let mut resp = Response::new(Body::from(body));
                    *resp.status_mut() = status;
                    if let Some(ct) = content_type.and_then(|v| header::HeaderValue::from_bytes(v.as_bytes()).ok()) {
                        resp.headers_mut().insert(header::CONTENT_TYPE, ct);
                    }
                    resp
                }
                Err(_) => StatusCode::BAD_GATEWAY.into_response(),
            }
        }
        Err(_) => StatusCode::BAD_GATEWAY.into_response(),
    }
}

#[tokio::main]
async fn main() {
    let listen = env("LISTEN");
    let network: ChainId = env("NETWORK").parse().expect("NETWORK must be CAIP-2");
    let tag = v2::PriceTag {
        requirements: v2::PaymentRequirements {
            scheme: "exact".into(),
            network,
            amount: env("AMOUNT"),
            asset: env("ASSET"),
            pay_to: env("PAY_TO"),
            max_timeout_seconds: env("MAX_TIMEOUT_SECONDS").parse().expect("MAX_TIMEOUT_SECONDS"),
            extra: Some(json!({"name": env("EIP712_NAME"), "version": env("EIP712_VERSION")})),
        },
        enricher: None,
    };
    let base_url: url::Url = format!("http://{listen}/").parse().expect("LISTEN");
    let x402 = X402Middleware::new(&env("FACILITATOR")).with_base_url(base_url);
    let up = Upstream {
        client: reqwest::Client::builder()
            .pool_max_idle_per_host(256)
            .build()
            .expect("client"),
        base: env("UPSTREAM"),
    };
    let app = Router::new()
        .route(
            "/paid/{*rest}",
            get(proxy).layer(
                x402.with_price_tag(tag)
                    .with_description(env("DESCRIPTION"))
                    .with_mime_type(env("MIME_TYPE")),
            ),
        )
        .route("/free/{*rest}", get(proxy))
        .with_state(up);
    let listener = tokio::net::TcpListener::bind(&listen).await.expect("bind LISTEN");
    use axum::serve::ListenerExt;
    let listener = listener.tap_io(|tcp| {
        let _ = tcp.set_nodelay(true);
    });
    axum::serve(listener, app).await.expect("serve");
}
