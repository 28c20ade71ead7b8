//! The 402 challenge: the v2 `PAYMENT-REQUIRED` header, the v1 JSON body strict legacy clients accept,
//! and a small HTML page for browsers (x402-notes §2.1, §3.1, §12.1).

use crate::config::Pricing;
use crate::money::format_units;
use crate::protocol::{codec, v1, v2, Version};

/// `error` of a first challenge, as the reference servers word it.
pub const V2_PAYMENT_REQUIRED: &str = "Payment required";
/// `error` of a first v1 challenge, as the legacy middleware words it.
pub const V1_PAYMENT_REQUIRED: &str = "X-PAYMENT header is required";

/// What a 402 carries.
#[derive(Debug, Clone)]
pub struct Challenge {
    /// Value of `PAYMENT-REQUIRED`.
    pub header: String,
    pub content_type: &'static str,
    pub body: Vec<u8>,
}

/// Whether the client is a browser by the reference servers' test: `Accept` has `text/html` and
/// `User-Agent` has `Mozilla`.
pub fn is_browser(headers: &http::HeaderMap) -> bool {
    let has = |name: http::header::HeaderName, needle: &str| {
        headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .is_some_and(|v| v.contains(needle))
    };
    has(http::header::ACCEPT, "text/html") && has(http::header::USER_AGENT, "Mozilla")
}

/// The resource description for `url`.
pub fn resource(pricing: &Pricing, url: &str) -> v2::ResourceInfo {
    v2::ResourceInfo {
        url: url.to_owned(),
        description: pricing.description.clone(),
        mime_type: pricing.mime_type.clone(),
    }
}

/// Builds the challenge for `url`. `error` is the reason for a refused payment, `None` for a first ask.
pub fn build(pricing: &Pricing, url: &str, error: Option<&str>, browser: bool) -> Challenge {
    let meta = resource(pricing, url);
    let v2 = v2::PaymentRequired {
        x402_version: Version::V2,
        error: Some(error.unwrap_or(V2_PAYMENT_REQUIRED).to_owned()),
        resource: meta.clone(),
        accepts: pricing.offers.iter().map(|o| o.requirement.to_v2()).collect(),
    };
    let header = codec::encode(&v2);
    if browser {
        return Challenge {
            header,
            content_type: "text/html; charset=utf-8",
            body: html(pricing, url, error).into_bytes(),
        };
    }
    let v1 = v1::PaymentRequired {
        x402_version: Version::V1,
        error: error.unwrap_or(V1_PAYMENT_REQUIRED).to_owned(),
        // Networks without a v1 name are left out: legacy clients reject unknown names outright.
        accepts: pricing
            .offers
            .iter()
            .filter_map(|o| o.requirement.to_v1(&meta))
            .collect(),
    };
    Challenge {
        header,
        content_type: "application/json",
        body: serde_json::to_vec(&v1).unwrap_or_default(),
    }
}

fn html(pricing: &Pricing, url: &str, error: Option<&str>) -> String {
    let esc = |s: &str| {
        s.replace('&', "&amp;")
            .replace('<', "&lt;")
            .replace('>', "&gt;")
            .replace('"', "&quot;")
    };
    let offers: String = pricing
        .offers
        .iter()
        .map(|o| {
            let q = &o.requirement;
            format!(
                "<li><b>{} {}</b> on <code>{}</code> (token <code>{}</code>) to <code>{}</code></li>",
                format_units(q.amount, o.decimals),
                esc(&o.symbol),
                q.network,
                q.asset,
                q.pay_to
            )
        })
        .collect();
    let error = error
        .map(|e| format!("<p class=\"err\">Payment refused: {}</p>", esc(e)))
        .unwrap_or_default();
    format!(
        "<!doctype html><html><head><meta charset=\"utf-8\"><title>Payment required</title>\
<style>body{{font-family:system-ui,sans-serif;max-width:40rem;margin:3rem auto;padding:0 1rem}}code{{font-size:.9em}}.err{{color:#b00}}</style></head>\
<body><h1>402 Payment Required</h1><p><code>{}</code>{}</p>{error}<p>This resource is sold per request over <a href=\"https://x402.org\">x402</a>. Pay one of:</p><ul>{offers}</ul>\
<p>Use an x402 client (for example <code>x402-gateway pay {}</code>, or the <code>@x402/fetch</code> and Python <code>x402</code> SDKs): it reads the offer from the <code>PAYMENT-REQUIRED</code> header, signs an EIP-3009 authorization and retries with <code>PAYMENT-SIGNATURE</code>.</p></body></html>",
        esc(url),
        if pricing.description.is_empty() { String::new() } else { format!(": {}", esc(&pricing.description)) },
        esc(url)
    )
}
