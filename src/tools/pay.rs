//! `x402-gateway pay`: a curl-like paying client for operators, and the demo's client. Sends the request,
//! reads the 402 offer (v2 header, or the v1 body), signs locally (an EIP-3009 authorization, or a Permit2
//! one for a Permit2 or `upto` offer), retries with the payment header, and returns every step so the
//! caller can show it.

use std::time::Duration;

use alloy::primitives::{Bytes, B256, U256};
use alloy::signers::local::PrivateKeySigner;
use alloy::signers::SignerSync;
use reqwest::header::{HeaderMap, HeaderName, HeaderValue};
use serde_json::{json, Value};

use crate::core::time::unix_now;
use crate::protocol::exact::{Authorization, ExactPayload, Requirement, Transfer};
use crate::protocol::facilitator::SettleResponse;
use crate::protocol::payment::Payment;
use crate::protocol::permit2::{self, Permit2Authorization, Permit2Payload};
use crate::protocol::{codec, v1, v2, Version, HEADER_PAYMENT_REQUIRED, HEADER_PAYMENT_SIGNATURE, HEADER_X_PAYMENT};
use crate::rules::window;

/// Flags of `pay`.
#[derive(Debug, clap::Args)]
pub struct PayArgs {
    /// The URL to request.
    pub url: String,
    /// HTTP method.
    #[arg(short = 'X', long = "request", default_value = "GET")]
    pub method: String,
    /// Extra request header, `Name: value`. Repeatable.
    #[arg(short = 'H', long = "header")]
    pub headers: Vec<String>,
    /// Request body.
    #[arg(short = 'd', long = "data")]
    pub data: Option<String>,
    /// Pay with the x402 v1 offer (X-PAYMENT) even if a v2 one is present.
    #[arg(long)]
    pub v1: bool,
    /// Largest price paid without asking, in the asset's atomic units (100000 = $0.10 of USDC).
    #[arg(long, default_value_t = DEFAULT_MAX_AMOUNT)]
    pub max_amount: u64,
}

/// Default spending cap in atomic units: 0.10 of a 6-decimals stablecoin, like the legacy client's.
pub const DEFAULT_MAX_AMOUNT: u64 = 100_000;

/// What to send.
#[derive(Debug, Clone)]
pub struct PayRequest {
    pub url: String,
    pub method: reqwest::Method,
    pub headers: HeaderMap,
    pub body: Option<String>,
    /// Pay with the v1 body offer even when a v2 header is present.
    pub v1: bool,
    /// Largest amount paid without asking, in atomic units.
    pub max_amount: U256,
}

/// One paid exchange, step by step.
#[derive(Debug, Clone)]
pub struct Transcript {
    /// Status of the first answer.
    pub first_status: u16,
    /// The offer chosen (v2 or v1 JSON), if a 402 came.
    pub offer: Option<(Version, Value)>,
    /// The typed requirement that was signed.
    pub requirement: Option<Requirement>,
    /// What was signed.
    pub payment: Option<Payment>,
    pub status: u16,
    pub receipt: Option<SettleResponse>,
    pub body: String,
}

/// Why paying failed.
#[derive(Debug, thiserror::Error)]
pub enum PayError {
    #[error("request to {url} failed: {message}")]
    Http { url: String, message: String },
    #[error("the 402 carries no offer this client can pay: {0}")]
    NoOffer(String),
    #[error(
        "the cheapest payable offer asks {amount} atomic units, above --max-amount {max}; raise --max-amount to pay it"
    )]
    TooExpensive { amount: U256, max: U256 },
    #[error("signing failed: {0}")]
    Sign(String),
}

/// Sends the request, paying if asked. `confirm(amount)` is consulted when the price is above the cap.
pub async fn pay(
    http: &reqwest::Client,
    signer: &PrivateKeySigner,
    req: &PayRequest,
    confirm: impl Fn(U256) -> bool,
) -> Result<Transcript, PayError> {
    let first = send(http, req, None).await?;
    let mut t = Transcript {
        first_status: first.status().as_u16(),
        offer: None,
        requirement: None,
        payment: None,
        status: 0,
        receipt: None,
        body: String::new(),
    };
    if first.status().as_u16() != 402 {
        t.status = t.first_status;
        t.body = first.text().await.unwrap_or_default();
        return Ok(t);
    }
    let header = first.headers().get(HEADER_PAYMENT_REQUIRED).cloned();
    let body = first.bytes().await.unwrap_or_default();
    let offers = offers(header.as_ref().map(HeaderValue::as_bytes), &body, req.v1)?;
    let (version, offer, requirement, resource) = choose(offers, req.max_amount, confirm)?;
    let payment = sign_payment(signer, &requirement, unix_now())?;
    let payload = payment.to_json();
    let (name, value) = match version {
        Version::V2 => {
            let mut p = json!({"x402Version": 2, "accepted": offer, "payload": payload});
            if let Some(r) = resource {
                p["resource"] = r;
            }
            (HEADER_PAYMENT_SIGNATURE, codec::encode(&p))
        }
        Version::V1 => {
            let p =
                json!({"x402Version": 1, "scheme": offer["scheme"], "network": offer["network"], "payload": payload});
            (HEADER_X_PAYMENT, codec::encode(&p))
        }
    };
    let paid = send(http, req, Some((name, value))).await?;
    t.status = paid.status().as_u16();
    t.receipt = paid
        .headers()
        .get(version.receipt_header())
        .and_then(|v| codec::decode(v.as_bytes()).ok());
    t.body = paid.text().await.unwrap_or_default();
    t.offer = Some((version, offer));
    t.requirement = Some(requirement);
    t.payment = Some(payment);
    Ok(t)
}

/// Signs a payment for `req` at unix time `now`, the way its offer moves the tokens.
pub fn sign_payment(signer: &PrivateKeySigner, req: &Requirement, now: u64) -> Result<Payment, PayError> {
    Ok(match req.transfer {
        Transfer::Eip3009 => {
            let (valid_after, valid_before) = window::for_client(now, req.max_timeout_seconds);
            Payment::Eip3009(sign(signer, req, authorize(signer, req, valid_after, valid_before))?)
        }
        Transfer::Permit2 => Payment::Permit2(sign_permit2(signer, req, now)?),
    })
}

/// A Permit2 authorization for `req` as the official clients make one: the proxy of its scheme as
/// spender, a random nonce, valid from 0 to `now + maxTimeoutSeconds`; for `upto`, the facilitator the
/// offer names and its maximum.
fn sign_permit2(signer: &PrivateKeySigner, req: &Requirement, now: u64) -> Result<Permit2Payload, PayError> {
    let authorization = Permit2Authorization {
        from: signer.address(),
        token: req.asset,
        amount: req.amount,
        spender: permit2::spender(req.scheme),
        nonce: U256::from_be_bytes(B256::random().0),
        deadline: U256::from(now.saturating_add(req.max_timeout_seconds)),
        to: req.pay_to,
        valid_after: U256::ZERO,
        facilitator: req.settler(),
    };
    let digest = permit2::signing_hash(&permit2::domain(req.network.chain_id).separator(), &authorization);
    let signature = signer
        .sign_hash_sync(&digest)
        .map_err(|e| PayError::Sign(e.to_string()))?;
    Ok(Permit2Payload {
        authorization,
        signature: Bytes::from(signature.as_bytes()),
    })
}

/// An authorization from `signer` paying exactly `req`, valid between the two unix times, with a fresh
/// random nonce.
pub fn authorize(signer: &PrivateKeySigner, req: &Requirement, valid_after: u64, valid_before: u64) -> Authorization {
    Authorization {
        from: signer.address(),
        to: req.pay_to,
        value: req.amount,
        valid_after: U256::from(valid_after),
        valid_before: U256::from(valid_before),
        nonce: B256::random(),
    }
}

/// Signs `authorization` under `req`'s EIP-712 domain: the payload a payer sends.
pub fn sign(
    signer: &PrivateKeySigner,
    req: &Requirement,
    authorization: Authorization,
) -> Result<ExactPayload, PayError> {
    let signature = signer
        .sign_hash_sync(&req.signing_hash(&authorization))
        .map_err(|e| PayError::Sign(e.to_string()))?;
    Ok(ExactPayload {
        signature: Bytes::from(signature.as_bytes()),
        authorization,
    })
}

async fn send(
    http: &reqwest::Client,
    req: &PayRequest,
    payment: Option<(&str, String)>,
) -> Result<reqwest::Response, PayError> {
    let mut rb = http
        .request(req.method.clone(), &req.url)
        .headers(req.headers.clone())
        .timeout(Duration::from_secs(120));
    if let Some(b) = &req.body {
        rb = rb.body(b.clone());
    }
    if let Some((name, value)) = payment {
        rb = rb.header(name, value);
    }
    rb.send().await.map_err(|e| PayError::Http {
        url: req.url.clone(),
        message: e.to_string(),
    })
}

type Candidate = (Version, Value, Requirement, Option<Value>);

/// Offers from the v2 header (preferred) or the v1 body, each with its typed requirement.
fn offers(header: Option<&[u8]>, body: &[u8], v1_only: bool) -> Result<Vec<Candidate>, PayError> {
    if let (Some(h), false) = (header, v1_only) {
        let pr: v2::PaymentRequired =
            codec::decode(h).map_err(|e| PayError::NoOffer(format!("PAYMENT-REQUIRED: {e}")))?;
        let resource = serde_json::to_value(&pr.resource).ok();
        return Ok(pr
            .accepts
            .iter()
            .filter_map(|a| {
                Some((
                    Version::V2,
                    serde_json::to_value(a).ok()?,
                    Requirement::from_v2(a).ok()?,
                    resource.clone(),
                ))
            })
            .collect());
    }
    let pr: v1::PaymentRequired = serde_json::from_slice(body)
        .map_err(|e| PayError::NoOffer(format!("the 402 body is not a v1 PaymentRequired: {e}")))?;
    Ok(pr
        .accepts
        .iter()
        .filter_map(|a| {
            Some((
                Version::V1,
                serde_json::to_value(a).ok()?,
                Requirement::from_v1(a).ok()?,
                None,
            ))
        })
        .collect())
}

fn choose(offers: Vec<Candidate>, max: U256, confirm: impl Fn(U256) -> bool) -> Result<Candidate, PayError> {
    let cheapest = offers
        .iter()
        .map(|o| o.2.amount)
        .min()
        .ok_or_else(|| PayError::NoOffer("no exact EVM offer with a known EIP-712 domain".into()))?;
    if let Some(o) = offers.iter().find(|o| o.2.amount <= max) {
        return Ok(o.clone());
    }
    if confirm(cheapest) {
        return offers
            .into_iter()
            .find(|o| o.2.amount == cheapest)
            .ok_or_else(|| PayError::NoOffer("offer vanished".into()));
    }
    Err(PayError::TooExpensive { amount: cheapest, max })
}

/// Parses `-H "Name: value"`.
pub fn parse_header(s: &str) -> Result<(HeaderName, HeaderValue), String> {
    let (n, v) = s
        .split_once(':')
        .ok_or_else(|| format!("header {s:?} must look like \"Name: value\""))?;
    let name = HeaderName::from_bytes(n.trim().as_bytes()).map_err(|_| format!("{n:?} is not a header name"))?;
    let value = HeaderValue::from_str(v.trim()).map_err(|_| format!("the value of {n} is not a valid header value"))?;
    Ok((name, value))
}

/// `x402-gateway pay`: run and print each step.
pub async fn run(args: PayArgs) -> Result<(), String> {
    use std::io::IsTerminal;
    let signer = crate::core::secret::private_key_from_env("X402_PRIVATE_KEY")?;
    let mut headers = HeaderMap::new();
    for h in &args.headers {
        let (n, v) = parse_header(h)?;
        headers.append(n, v);
    }
    let method = reqwest::Method::from_bytes(args.method.to_ascii_uppercase().as_bytes())
        .map_err(|_| format!("{:?} is not an HTTP method", args.method))?;
    let req = PayRequest {
        url: args.url,
        method,
        headers,
        body: args.data,
        v1: args.v1,
        max_amount: U256::from(args.max_amount),
    };
    let confirm = |amount: U256| {
        if !std::io::stdin().is_terminal() {
            return false;
        }
        eprint!(
            "The offer asks {amount} atomic units, above --max-amount {}. Pay it? [y/N] ",
            args.max_amount
        );
        let mut line = String::new();
        std::io::stdin().read_line(&mut line).is_ok() && line.trim().eq_ignore_ascii_case("y")
    };
    let t = pay(&reqwest::Client::new(), &signer, &req, confirm)
        .await
        .map_err(|e| e.to_string())?;
    print!("{}", describe(&t));
    Ok(())
}

/// The transcript as the CLI and the demo print it.
pub fn describe(t: &Transcript) -> String {
    let mut out = String::new();
    if let (Some((version, offer)), Some(r), Some(p)) = (&t.offer, &t.requirement, &t.payment) {
        out.push_str(&format!(
            "402 Payment Required: offer (x402 v{}) {}\n",
            u8::from(*version),
            offer
        ));
        let signed = match p {
            Payment::Eip3009(e) => format!("EIP-3009 authorization, nonce {}", e.authorization.nonce),
            Payment::Permit2(e) => format!("Permit2 authorization, nonce {}", e.authorization.nonce),
        };
        let up_to = if r.settler().is_some() { "up to " } else { "" };
        out.push_str(&format!(
            "signed {signed}: {} pays {up_to}{} atomic units of {} on {} to {}\n",
            p.payer(),
            p.amount(),
            r.asset,
            r.network,
            p.payee()
        ));
    }
    out.push_str(&format!("status {}\n", t.status));
    if let Some(r) = &t.receipt {
        out.push_str(&format!("receipt: {}\n", serde_json::to_string(r).unwrap_or_default()));
    }
    out.push_str(&t.body);
    if !t.body.ends_with('\n') {
        out.push('\n');
    }
    out
}
