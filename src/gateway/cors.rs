//! CORS for browser clients of priced routes: the preflight the gateway answers itself, and the payment
//! headers it exposes, added to whatever the upstream said.

use pingora::http::{RequestHeader, ResponseHeader};

/// Headers a browser client must be allowed to read.
pub const EXPOSED_HEADERS: &str = "PAYMENT-REQUIRED, PAYMENT-RESPONSE, X-PAYMENT-RESPONSE";
/// Headers a browser client may send on a paid request (the reference clients also send
/// `Access-Control-Expose-Headers` on requests, x402-notes §2.2).
pub const ALLOWED_REQUEST_HEADERS: &str =
    "PAYMENT-SIGNATURE, X-PAYMENT, Access-Control-Expose-Headers, Content-Type, Authorization";

/// Whether `req` is a CORS preflight.
pub fn is_preflight(req: &RequestHeader) -> bool {
    req.method == http::Method::OPTIONS && req.headers.contains_key("access-control-request-method")
}

/// The headers of the gateway's answer to a preflight on a priced route.
pub fn preflight_headers(req: &RequestHeader) -> Vec<(&'static str, String)> {
    let requested = req
        .headers
        .get("access-control-request-headers")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    let allow = if requested.is_empty() {
        ALLOWED_REQUEST_HEADERS.to_owned()
    } else {
        format!("{ALLOWED_REQUEST_HEADERS}, {requested}")
    };
    vec![
        (
            "access-control-allow-methods",
            "GET, POST, PUT, PATCH, DELETE, HEAD, OPTIONS".into(),
        ),
        ("access-control-allow-headers", allow),
        ("access-control-max-age", "600".into()),
    ]
}

/// Lets a browser read the payment headers of a priced route's answer, keeping what the upstream said
/// about origins and exposed headers.
pub fn expose(req: &RequestHeader, resp: &mut ResponseHeader, priced: bool) -> pingora::Result<()> {
    if !priced || !req.headers.contains_key("origin") {
        return Ok(());
    }
    if !resp.headers.contains_key("access-control-allow-origin") {
        resp.insert_header("access-control-allow-origin", "*")?;
    }
    let exposed = match resp
        .headers
        .get("access-control-expose-headers")
        .and_then(|v| v.to_str().ok())
    {
        Some(theirs) if !theirs.is_empty() => format!("{theirs}, {EXPOSED_HEADERS}"),
        _ => EXPOSED_HEADERS.to_owned(),
    };
    resp.insert_header("access-control-expose-headers", exposed)
}
