//! The 402 challenge: the v2 `PAYMENT-REQUIRED` header, the v1 JSON body strict legacy clients accept,
//! and a small HTML page for browsers (x402-notes §2.1, §3.1, §12.1).
//!
//! A route's challenge is the same JSON for every request but for the resource URL and the reason, so it is
//! serialised once into a [`Template`] with holes for those two; a request only fills them in.

use crate::core::money::format_units;
use crate::protocol::payment_id::{declaration, PaymentIdMode, PAYMENT_IDENTIFIER};
use crate::protocol::{codec, v1, v2, Version};
use crate::rules::offer::Offer;

/// `error` of a first challenge, as the reference servers word it.
pub const V2_PAYMENT_REQUIRED: &str = "Payment required";
/// `error` of a first v1 challenge, as the legacy middleware words it.
pub const V1_PAYMENT_REQUIRED: &str = "X-PAYMENT header is required";

/// Placeholders serialised into the template and cut out again; control characters, so JSON escapes them
/// and no configured text can contain them escaped the same way.
const URL_HOLE: &str = "\u{1}url\u{1}";
const ERROR_HOLE: &str = "\u{1}error\u{1}";

/// What a 402 carries.
#[derive(Debug, Clone)]
pub struct Challenge {
    /// Value of `PAYMENT-REQUIRED`.
    pub header: String,
    pub content_type: &'static str,
    pub body: Vec<u8>,
}

/// A piece of serialised JSON: literal bytes, or a string value filled in per request.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Piece {
    Literal(Vec<u8>),
    Url,
    Error,
}

/// A route's challenge, serialised once (v2 header JSON and v1 body), with holes for the URL and reason.
#[derive(Debug, Clone)]
pub struct Template {
    v2: Vec<Piece>,
    v1: Vec<Piece>,
    /// For the browser page and amended challenges.
    offers: Vec<Offer>,
    description: String,
    mime_type: String,
    extensions: Option<serde_json::Map<String, serde_json::Value>>,
}

/// Splits serialised JSON at the (JSON-escaped) holes.
fn pieces(json: &[u8]) -> Vec<Piece> {
    let holes = [(escaped(URL_HOLE), Piece::Url), (escaped(ERROR_HOLE), Piece::Error)];
    let mut out = Vec::new();
    let mut literal = Vec::new();
    let mut i = 0;
    while i < json.len() {
        if let Some((h, piece)) = holes.iter().find(|(h, _)| json[i..].starts_with(h.as_bytes())) {
            out.push(Piece::Literal(std::mem::take(&mut literal)));
            out.push(piece.clone());
            i += h.len();
        } else {
            literal.push(json[i]);
            i += 1;
        }
    }
    out.push(Piece::Literal(literal));
    out
}

/// `s` as it appears inside a JSON string (escaped, without the quotes).
fn escaped(s: &str) -> String {
    let quoted = serde_json::to_string(s).unwrap_or_default();
    quoted
        .strip_prefix('"')
        .and_then(|q| q.strip_suffix('"'))
        .unwrap_or_default()
        .to_owned()
}

fn fill(pieces: &[Piece], url: &str, error: &str) -> Vec<u8> {
    let (url, error) = (escaped(url), escaped(error));
    let mut out = Vec::with_capacity(
        pieces
            .iter()
            .map(|p| match p {
                Piece::Literal(l) => l.len(),
                Piece::Url => url.len(),
                Piece::Error => error.len(),
            })
            .sum(),
    );
    for p in pieces {
        out.extend_from_slice(match p {
            Piece::Literal(l) => l,
            Piece::Url => url.as_bytes(),
            Piece::Error => error.as_bytes(),
        });
    }
    out
}

/// The resource description for `url`.
pub fn resource(url: &str, description: &str, mime_type: &str) -> v2::ResourceInfo {
    v2::ResourceInfo {
        url: url.to_owned(),
        description: description.to_owned(),
        mime_type: mime_type.to_owned(),
    }
}

impl Template {
    /// Serialises the challenge of a route offering `offers`.
    pub fn new(offers: &[Offer], description: &str, mime_type: &str, payment_id: PaymentIdMode) -> Self {
        let meta = resource(URL_HOLE, description, mime_type);
        let extensions = (payment_id != PaymentIdMode::Off).then(|| {
            let required = payment_id == PaymentIdMode::Required;
            serde_json::Map::from_iter([(PAYMENT_IDENTIFIER.to_owned(), declaration(required))])
        });
        let v2 = v2::PaymentRequired {
            x402_version: Version::V2,
            error: Some(ERROR_HOLE.to_owned()),
            resource: meta.clone(),
            accepts: offers.iter().map(|o| o.requirement.to_v2()).collect(),
            extensions: extensions.clone(),
        };
        let v1 = v1::PaymentRequired {
            x402_version: Version::V1,
            error: ERROR_HOLE.to_owned(),
            // Networks without a v1 name are left out: legacy clients reject unknown names outright.
            accepts: offers.iter().filter_map(|o| o.requirement.to_v1(&meta)).collect(),
        };
        Template {
            v2: pieces(&serde_json::to_vec(&v2).unwrap_or_default()),
            v1: pieces(&serde_json::to_vec(&v1).unwrap_or_default()),
            offers: offers.to_vec(),
            description: description.to_owned(),
            mime_type: mime_type.to_owned(),
            extensions,
        }
    }

    /// The challenge for `url` refusing with `error`, with `extra` added to offer `offer`'s `extra` (a
    /// `batch-settlement` channel's state, for the client to resume from). Built afresh: it is rare.
    pub fn render_amended(
        &self,
        url: &str,
        error: &str,
        offer: usize,
        extra: &serde_json::Map<String, serde_json::Value>,
    ) -> Challenge {
        let mut accepts: Vec<v2::PaymentRequirements> = self.offers.iter().map(|o| o.requirement.to_v2()).collect();
        if let Some(e) = accepts.get_mut(offer).and_then(|a| a.extra.as_mut()) {
            e.extend(extra.clone());
        }
        let v2 = v2::PaymentRequired {
            x402_version: Version::V2,
            error: Some(error.to_owned()),
            resource: resource(url, &self.description, &self.mime_type),
            accepts,
            extensions: self.extensions.clone(),
        };
        Challenge {
            header: codec::encode(&v2),
            content_type: "application/json",
            body: b"{}".to_vec(),
        }
    }

    /// The challenge for `url`. `error` is the reason for a refused payment, `None` for a first ask.
    pub fn render(&self, url: &str, error: Option<&str>, browser: bool) -> Challenge {
        let header = codec::encode_bytes(&fill(&self.v2, url, error.unwrap_or(V2_PAYMENT_REQUIRED)));
        if browser {
            return Challenge {
                header,
                content_type: "text/html; charset=utf-8",
                body: self.html(url, error).into_bytes(),
            };
        }
        Challenge {
            header,
            content_type: "application/json",
            body: fill(&self.v1, url, error.unwrap_or(V1_PAYMENT_REQUIRED)),
        }
    }

    fn html(&self, url: &str, error: Option<&str>) -> String {
        let esc = |s: &str| {
            s.replace('&', "&amp;")
                .replace('<', "&lt;")
                .replace('>', "&gt;")
                .replace('"', "&quot;")
        };
        let offers: String = self
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
        let description = if self.description.is_empty() {
            String::new()
        } else {
            format!(": {}", esc(&self.description))
        };
        format!(
            "<!doctype html><html><head><meta charset=\"utf-8\"><title>Payment required</title>\
<style>body{{font-family:system-ui,sans-serif;max-width:40rem;margin:3rem auto;padding:0 1rem}}code{{font-size:.9em}}.err{{color:#b00}}</style></head>\
<body><h1>402 Payment Required</h1><p><code>{}</code>{description}</p>{error}<p>This resource is sold per request over <a href=\"https://x402.org\">x402</a>. Pay one of:</p><ul>{offers}</ul>\
<p>Use an x402 client (for example <code>x402-gateway pay {}</code>, or the <code>@x402/fetch</code> and Python <code>x402</code> SDKs): it reads the offer from the <code>PAYMENT-REQUIRED</code> header, signs an EIP-3009 authorization and retries with <code>PAYMENT-SIGNATURE</code>.</p></body></html>",
            esc(url),
            esc(url)
        )
    }
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::protocol::exact::{Requirement, Scheme};
    use crate::protocol::network::Network;
    use alloy::primitives::{Address, U256};

    fn offers() -> Vec<Offer> {
        [8453u64, 31_337]
            .iter()
            .map(|&id| {
                Offer::new(
                    Requirement {
                        scheme: Scheme::Exact,
                        network: Network::new(id),
                        asset: Address::repeat_byte(1),
                        pay_to: Address::repeat_byte(2),
                        amount: U256::from(1000),
                        max_timeout_seconds: 60,
                        eip712_name: "USD \"Coin\"".into(),
                        eip712_version: "2".into(),
                        transfer: Default::default(),
                    },
                    "USDC".into(),
                    6,
                )
            })
            .collect()
    }

    #[test]
    fn the_template_renders_exactly_what_serialising_per_request_would() {
        let offers = offers();
        let t = Template::new(&offers, "a <b>\"thing\"", "application/json", PaymentIdMode::Off);
        let url = "https://api.example/paid/x?q=\"1\"&\u{2028}";
        for error in [None, Some("invalid_exact_evm_signature: \"quoted\"\n")] {
            let c = t.render(url, error, false);
            let meta = resource(url, "a <b>\"thing\"", "application/json");
            let want_v2 = v2::PaymentRequired {
                x402_version: Version::V2,
                error: Some(error.unwrap_or(V2_PAYMENT_REQUIRED).to_owned()),
                resource: meta.clone(),
                accepts: offers.iter().map(|o| o.requirement.to_v2()).collect(),
                extensions: None,
            };
            let got_v2: v2::PaymentRequired = codec::decode(c.header.as_bytes()).unwrap();
            assert_eq!(got_v2, want_v2);
            let got_v1: v1::PaymentRequired = serde_json::from_slice(&c.body).unwrap();
            assert_eq!(got_v1.error, error.unwrap_or(V1_PAYMENT_REQUIRED));
            // Only the chain with a v1 name is offered to legacy clients.
            assert_eq!(got_v1.accepts, vec![offers[0].requirement.to_v1(&meta).unwrap()]);
        }
        let page = t.render("https://x/<script>", Some("no"), true);
        assert!(page.content_type.starts_with("text/html"));
        let body = String::from_utf8(page.body).unwrap();
        assert!(body.contains("&lt;script&gt;") && !body.contains("<script>") && body.contains("0.001 USDC"));
    }
}
