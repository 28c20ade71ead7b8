//! `batch-settlement` on the request path (x402 v2; BATCH-SETTLEMENT-RESEARCH.md §4): a deposit opens or
//! tops up a channel through the facilitator; a voucher is checked here, against the channel's record in
//! the store, with no facilitator call; the channel is reserved for one request at a time (across
//! replicas, by the store's compare-and-swap) and the call's charge is committed to the record, durably,
//! before the response goes out. A refund is answered by the gateway itself, once the facilitator has
//! returned the funds. The rules of each step are `rules::channel`'s.

use std::sync::Arc;

use alloy::primitives::{Address, B256, U256};
use alloy::signers::local::PrivateKeySigner;
use alloy::signers::SignerSync;
use async_trait::async_trait;
use serde_json::{json, Map, Value};

use crate::core::time::Clock;
use crate::gateway::channels::{self, Change};
use crate::gateway::decode::Matched;
use crate::gateway::facilitator::{Remote, Settlement};
use crate::gateway::metrics::{Verdict, Where};
use crate::gateway::refusal::{Answer, Refusal};
use crate::gateway::scheme::{Admission, Checkout, Hold, SchemeServer};
use crate::gateway::store::Store;
use crate::protocol::batch::{self, reason as why, BatchPayload, ClaimEntry, Kind};
use crate::protocol::exact::{Rejection, Requirement, Scheme};
use crate::protocol::facilitator::{EncodedRequest, FacilitatorRequest, SettleResponse};
use crate::protocol::network::Network;
use crate::protocol::{reason, Version};
use crate::rules::challenge::resource;
use crate::rules::channel::{self as rules, Channel, OnChain, Pending, Refused, Terms};
use crate::rules::charge;
use crate::rules::table::Pricing;

/// How long a channel record is kept after its last change: far beyond any withdraw delay, so a record
/// with unclaimed charges is never dropped by its store for age.
pub const RECORD_LIFETIME_SECS: u64 = 400 * 86_400;
/// The bounds of a reservation's life (the SDK servers' clamp of `maxTimeoutSeconds`).
const HOLD_BOUNDS_MS: (u64, u64) = (5_000, 600_000);

/// Where channel records sit in the store: `channel:<network>:<channel id>`.
pub const CHANNEL_PREFIX: &str = crate::gateway::store::PINNED_PREFIX;

/// The store key of a channel's record.
pub fn channel_key(network: Network, channel_id: B256) -> String {
    format!("{CHANNEL_PREFIX}{}:{channel_id}", network.caip2())
}

fn refuse(r: &Rejection) -> Refusal {
    Refusal::PaymentRequired {
        reason: Some(r.reason.to_owned()),
        receipt: None,
    }
}

fn refuse_with(why: &'static str) -> Refusal {
    Refusal::PaymentRequired {
        reason: Some(why.to_owned()),
        receipt: None,
    }
}

/// The corrective 402: the channel as the gateway knows it, for the client to resume from (the SDK
/// clients read `channelState.chargedCumulativeAmount` and `voucherState`).
fn corrective(offer: usize, c: &Channel, channel_id: B256) -> Refusal {
    let mut state = c.on_chain().to_json(channel_id);
    if let Some(o) = state.as_object_mut() {
        o.insert("chargedCumulativeAmount".into(), json!(c.charged.to_string()));
    }
    let extra = Map::from_iter([
        ("channelState".to_owned(), state),
        (
            "voucherState".to_owned(),
            json!({"signedMaxClaimable": c.signed_max.to_string(), "signature": c.signature.to_string()}),
        ),
    ]);
    Refusal::Corrective {
        reason: why::CUMULATIVE_AMOUNT_MISMATCH.to_owned(),
        offer,
        extra,
    }
}

/// Reads a channel's record.
async fn record(store: &dyn Store, key: &str, now: u64) -> Result<Option<Channel>, Refusal> {
    let raw = store.entry(key, now).await.map_err(|_| Refusal::Store)?;
    Ok(raw.and_then(|r| serde_json::from_str(&r).ok()))
}

/// A 64-bit random id for a reservation.
fn random_id() -> u64 {
    let mut b = [0u8; 8];
    // A failed draw leaves zeros: ids then collide only with other failed draws, and a collision can at
    // worst let one request commit another's reservation on the same channel, never past its voucher.
    let _ = aws_lc_rs::rand::fill(&mut b);
    u64::from_le_bytes(b)
}

/// `batch-settlement`: a channel per payer, many calls per deposit.
pub struct BatchServer;

/// The label of a payload's kind (never the client's own string: metric labels stay bounded).
fn kind_label(payload: &Value) -> &'static str {
    match payload.get("type").and_then(Value::as_str) {
        Some("voucher") => "voucher",
        Some("deposit") => "deposit",
        Some("refund") => "refund",
        _ => "other",
    }
}

/// A refusal's label: its reason when it is a 402, else its outcome.
fn refusal_label(r: &Refusal) -> String {
    match r {
        Refusal::PaymentRequired { reason: Some(why), .. } | Refusal::Corrective { reason: why, .. } => {
            why.split(':').next().unwrap_or_default().to_owned()
        }
        other => other.outcome().as_str().to_owned(),
    }
}

#[async_trait]
impl SchemeServer for BatchServer {
    async fn admit(
        &self,
        cx: &Checkout<'_>,
        matched: Matched,
        pricing: &Pricing,
        url: &str,
    ) -> Result<Admission, Refusal> {
        let kind = kind_label(&matched.payload);
        let admitted = admit(cx, matched, pricing, url).await;
        if let Err(r) = &admitted {
            cx.remote.metrics().batch_voucher(kind, &refusal_label(r));
        }
        admitted
    }
}

/// Every check of a `batch-settlement` payment through the channel's reservation.
async fn admit(cx: &Checkout<'_>, matched: Matched, pricing: &Pricing, url: &str) -> Result<Admission, Refusal> {
    {
        let index = matched.candidates.first().copied().unwrap_or_default();
        let (Some(offer), Some(settings)) = (pricing.offers.get(index), cx.batch) else {
            return Err(refuse_with(reason::NO_MATCHING_REQUIREMENTS));
        };
        let q = &offer.requirement;
        let Scheme::Batch(terms) = q.scheme else {
            return Err(refuse_with(reason::NO_MATCHING_REQUIREMENTS));
        };
        let metrics = cx.remote.metrics();
        let network = q.network.to_string();
        let refused = |r: &Rejection| {
            metrics.verification(&network, Where::Local, Verdict::Invalid);
            refuse(r)
        };
        let p = BatchPayload::parse(&matched.payload).map_err(|r| refused(&r))?;
        let t = Terms {
            chain_id: q.network.chain_id,
            pay_to: q.pay_to,
            asset: q.asset,
            receiver_authorizer: Some(terms.receiver_authorizer),
            withdraw_delay: Some(terms.withdraw_delay),
        };
        rules::check_terms(&p, &t).map_err(|r| refused(&r))?;
        let price = u128::try_from(q.amount).unwrap_or(u128::MAX);
        let channel_id = p.voucher.channel_id;
        let key = channel_key(q.network, channel_id);
        let store = cx.store.as_ref();
        let now = cx.clock.now();
        let now_ms = now.saturating_mul(1000);
        let current = record(store, &key, now).await?;
        if p.voucher.max_claimable != rules::expected(current.as_ref(), &p, price) {
            if let Some(c) = &current {
                return Err(corrective(index, c, channel_id));
            }
        }
        let ttl_ms = u64::try_from(settings.onchain_ttl.as_millis()).unwrap_or(u64::MAX);
        let meta = resource(url, &pricing.description, &pricing.mime_type);
        let request = FacilitatorRequest {
            x402_version: Version::V2,
            payment_payload: matched.json,
            payment_requirements: q.to_wire(Version::V2, &meta),
        };
        let encoded = request.encode();
        let (state, local, via) = match rules::check_locally(current.as_ref(), &p, q.network.chain_id, now_ms, ttl_ms) {
            Some(Ok(state)) => {
                metrics.verification(&network, Where::Local, Verdict::Valid);
                (state, true, None)
            }
            Some(Err(r)) => return Err(refused(&r)),
            None => {
                let (state, via) = verify(cx.remote, &encoded, q.network).await?;
                (state, false, Some(via))
            }
        };
        let hold_ms = (q.max_timeout_seconds.saturating_mul(1000)).clamp(HOLD_BOUNDS_MS.0, HOLD_BOUNDS_MS.1);
        let pending = Pending {
            id: random_id(),
            max: p.voucher.max_claimable,
            expires_ms: now_ms.saturating_add(hold_ms),
        };
        let reserved =
            channels::update(
                store,
                &key,
                now + RECORD_LIFETIME_SECS,
                now,
                |cur: Option<Channel>| match rules::reserve(cur.as_ref(), &p, price, state, local, pending, now_ms) {
                    Ok(next) => (Change::Put(next.clone()), Ok((next, cur.is_some()))),
                    Err(e) => (Change::Keep, Err(e)),
                },
            )
            .await
            .map_err(|e| {
                tracing::warn!(error = %e, "a channel could not be reserved");
                Refusal::Store
            })?;
        let (snapshot, existed) = match reserved {
            Ok(r) => r,
            Err(Refused::Busy) => {
                return Err(Refusal::PaymentRequired {
                    reason: Some(why::CHANNEL_BUSY.to_owned()),
                    receipt: None,
                })
            }
            Err(Refused::Stale(c)) => return Err(corrective(index, &c, channel_id)),
        };
        Ok(Admission::Paid(Box::new(BatchHold {
            requirement: q.clone(),
            decimals: offer.decimals,
            payload: p,
            request,
            encoded,
            via,
            key,
            pending: pending.id,
            existed,
            snapshot,
            price,
            store: cx.store.clone(),
            remote: cx.remote.clone(),
            clock: cx.clock.clone(),
            authorizer: settings.authorizer.clone(),
            charged: None,
            settled: None,
        })))
    }
}

/// The facilitator's `/verify` of a deposit, a refund or a voucher the gateway cannot check alone: the
/// channel's on-chain state (before the deposit) and the facilitator that answered.
async fn verify(remote: &Remote, request: &EncodedRequest, network: Network) -> Result<(OnChain, usize), Refusal> {
    let shown = network.to_string();
    let count = |v| remote.metrics().verification(&shown, Where::Remote, v);
    let (v, via) = remote.verify(request, network, None).await.map_err(|error| {
        count(Verdict::Error);
        Refusal::Facilitator { error, settling: false }
    })?;
    if !v.is_valid {
        count(Verdict::Invalid);
        return Err(Refusal::PaymentRequired {
            reason: Some(
                v.invalid_reason
                    .unwrap_or_else(|| reason::UNEXPECTED_VERIFY_ERROR.to_owned()),
            ),
            receipt: None,
        });
    }
    count(Verdict::Valid);
    let state = v
        .extra
        .as_ref()
        .and_then(OnChain::from_json)
        .ok_or_else(|| refuse_with(why::VERIFICATION_STATE_UNAVAILABLE))?;
    Ok((state, via))
}

/// A channel reserved for one request.
pub struct BatchHold {
    requirement: Requirement,
    decimals: u8,
    payload: BatchPayload,
    /// The client's payment with the offer, for `/settle` (a deposit) or to enrich (a refund).
    request: FacilitatorRequest,
    encoded: EncodedRequest,
    /// The facilitator that verified it, when one did.
    via: Option<usize>,
    key: String,
    /// This request's reservation.
    pending: u64,
    /// Whether the channel had a record before this request (a release keeps it then, else deletes it).
    existed: bool,
    /// The record as reserved: the channel before this call.
    snapshot: Channel,
    price: u128,
    store: Arc<dyn Store>,
    remote: Arc<Remote>,
    clock: Clock,
    authorizer: Arc<PrivateKeySigner>,
    charged: Option<u128>,
    settled: Option<SettleResponse>,
}

impl BatchHold {
    fn channel_id(&self) -> B256 {
        self.payload.voucher.channel_id
    }

    fn chain_id(&self) -> u64 {
        self.requirement.network.chain_id
    }

    fn wire_network(&self) -> String {
        self.requirement.network.caip2()
    }

    /// A settle-time refusal, with the failed receipt the SDKs send.
    fn failed(&self, why: &str, message: impl Into<String>) -> Refusal {
        let receipt = SettleResponse::failed(
            why,
            message,
            Some(self.payer_wire()),
            self.wire_network(),
            String::new(),
        );
        Refusal::PaymentRequired {
            reason: Some(why.to_owned()),
            receipt: Some((Version::V2, receipt)),
        }
    }

    fn payer_wire(&self) -> String {
        format!("{:#x}", self.payload.config.payer)
    }

    /// Commits this call's `charge` to the record (and the chain's state after a deposit): one atomic step,
    /// written to the store before the response goes out. A charge past the voucher frees the reservation.
    async fn commit(&self, charge: u128, state: Option<OnChain>) -> Result<Channel, Refusal> {
        let now = self.clock.now();
        let now_ms = now.saturating_mul(1000);
        let pending = self.pending;
        let outcome = channels::update(
            self.store.as_ref(),
            &self.key,
            now + RECORD_LIFETIME_SECS,
            now,
            |cur: Option<Channel>| match rules::commit(cur.as_ref(), pending, charge, state, now_ms) {
                Ok(next) => (Change::Put(next.clone()), Ok(next)),
                Err(r) if r.reason == why::CHARGE_EXCEEDS_SIGNED_CUMULATIVE => {
                    let change = match rules::release(cur, pending, true) {
                        Some(c) => Change::Put(c),
                        None => Change::Keep,
                    };
                    (change, Err(r))
                }
                Err(r) => (Change::Keep, Err(r)),
            },
        )
        .await
        .map_err(|e| {
            tracing::error!(error = %e, channel = %self.channel_id(), "a voucher's charge could not be recorded; not served");
            Refusal::Store
        })?;
        outcome.map_err(|r| self.failed(r.reason, r.message))
    }

    /// The receipt of a paid call: the channel before it with the new cumulative charge (SDK shape).
    fn receipt(&self, mut base: SettleResponse, state: Value, charged: u128, charge: Option<u128>) -> SettleResponse {
        let mut state = state;
        if let Some(o) = state.as_object_mut() {
            o.insert("chargedCumulativeAmount".into(), json!(charged.to_string()));
        }
        let mut extra = Map::from_iter([("channelState".to_owned(), state)]);
        if let Some(c) = charge {
            extra.insert("chargedAmount".into(), json!(c.to_string()));
        }
        base.extra = Some(Value::Object(extra));
        base
    }

    async fn voucher(&mut self, charge: u128) -> Result<SettleResponse, Refusal> {
        let committed = self.commit(charge, None).await?;
        let mut base = SettleResponse::settled(Some(self.payer_wire()), self.wire_network(), String::new());
        base.amount = Some(String::new());
        let state = self.snapshot.on_chain().to_json(self.channel_id());
        Ok(self.receipt(base, state, committed.charged, Some(charge)))
    }

    /// `/settle` through the facilitator that verified the payment, judged as the SDK servers judge it.
    async fn settle(&self, request: &EncodedRequest) -> Result<SettleResponse, Refusal> {
        let Some(via) = self.via else {
            return Err(self.failed(
                why::VERIFICATION_STATE_UNAVAILABLE,
                "no facilitator verified this payment",
            ));
        };
        let network = self.requirement.network.to_string();
        let outcome = self.remote.settle(request, via).await;
        let counted = match &outcome {
            Settlement::Settled(_) => crate::gateway::metrics::Settled::Success,
            Settlement::Failed(_) => crate::gateway::metrics::Settled::Failed,
            Settlement::Pending(_) => crate::gateway::metrics::Settled::Pending,
            Settlement::Error { maybe_sent: true, .. } => crate::gateway::metrics::Settled::InDoubt,
            Settlement::Error { .. } => crate::gateway::metrics::Settled::Error,
        };
        self.remote.metrics().settlement(&network, counted);
        match outcome {
            Settlement::Settled(s) => Ok(s),
            Settlement::Failed(s) => Err(Refusal::PaymentRequired {
                reason: s.error_reason.clone(),
                receipt: Some((Version::V2, s)),
            }),
            // The facilitator keys a deposit by its authorization and a refund by its request: sending the
            // same payment again reconciles instead of moving funds twice.
            Settlement::Pending(s) => Err(Refusal::SettlementPending {
                transaction: s.transaction,
            }),
            Settlement::Error { error, .. } => Err(Refusal::Facilitator { error, settling: true }),
        }
    }

    async fn deposit(&mut self, charge: u128) -> Result<SettleResponse, Refusal> {
        let s = self.settle(&self.encoded.clone()).await?;
        let state = s.extra.as_ref().and_then(|e| e.get("channelState")).cloned();
        let after = state.as_ref().and_then(OnChain::from_json);
        let committed = self.commit(charge, after).await?;
        let state = state.unwrap_or_else(|| committed.on_chain().to_json(self.channel_id()));
        Ok(self.receipt(s, state, committed.charged, Some(charge)))
    }

    /// The client's refund, with what the receiver adds (SDK `enrichSettlementPayload`): the claim of what
    /// was charged, the refund nonce and amount, and the receiver authorizer's signatures.
    fn enriched_refund(&self, asked: Option<u128>) -> Result<FacilitatorRequest, (&'static str, String)> {
        let c = &self.snapshot;
        let remainder = c.balance.saturating_sub(c.charged);
        if remainder == 0 {
            return Err((
                why::REFUND_NO_BALANCE,
                "nothing in the channel is left to refund".into(),
            ));
        }
        let amount = match asked {
            Some(a) if a > remainder => {
                return Err((
                    why::REFUND_NO_BALANCE,
                    format!("asked for {a}, but only {remainder} is left unclaimed"),
                ))
            }
            Some(a) => a,
            None => remainder,
        };
        let id = self.channel_id();
        let v = &self.payload.voucher;
        let sign = |digest: B256| {
            self.authorizer
                .sign_hash_sync(&digest)
                .map(|s| alloy::primitives::Bytes::from(s.as_bytes().to_vec()).to_string())
                .map_err(|_| (why::REFUND_PAYLOAD, "the receiver authorizer could not sign".to_owned()))
        };
        let refund_sig = sign(batch::refund_digest(id, c.refund_nonce, amount, self.chain_id()))?;
        let entry = ClaimEntry {
            channelId: id,
            maxClaimableAmount: v.max_claimable,
            totalClaimed: c.charged,
        };
        let claim_sig = sign(batch::claim_batch_digest(vec![entry], self.chain_id()))?;
        let mut request = self.request.clone();
        let Some(payload) = request
            .payment_payload
            .get_mut("payload")
            .and_then(Value::as_object_mut)
        else {
            return Err((why::REFUND_PAYLOAD, "the refund payload is not an object".into()));
        };
        payload.insert(
            "claims".into(),
            json!([batch::claim_row_json(
                &self.payload.config,
                v.max_claimable,
                &v.signature,
                c.charged
            )]),
        );
        payload.insert("refundNonce".into(), json!(c.refund_nonce.to_string()));
        payload.insert("refundAuthorizerSignature".into(), json!(refund_sig));
        payload.insert("claimAuthorizerSignature".into(), json!(claim_sig));
        payload.entry("amount").or_insert_with(|| json!(amount.to_string()));
        Ok(request)
    }

    async fn refund(&mut self, asked: Option<u128>) -> Result<SettleResponse, Refusal> {
        let request = self
            .enriched_refund(asked)
            .map_err(|(why, message)| self.failed(why, message))?
            .encode();
        let s = self.settle(&request).await?;
        let state = s.extra.as_ref().and_then(|e| e.get("channelState")).cloned();
        let Some(after) = state.as_ref().and_then(OnChain::from_json) else {
            return Err(self.failed(why::REFUND_PAYLOAD, "the facilitator's answer carries no channel state"));
        };
        let (now, pending, charged) = (self.clock.now(), self.pending, self.snapshot.charged);
        // Emptied: the record goes (its charges were claimed in the same transaction); else it mirrors the
        // chain and the reservation is freed.
        channels::update(
            self.store.as_ref(),
            &self.key,
            now + RECORD_LIFETIME_SECS,
            now,
            |cur: Option<Channel>| match cur {
                Some(_) if after.balance <= charged => (Change::Delete, ()),
                Some(c) => {
                    let mut next = rules::release(Some(c), pending, true).unwrap_or_else(|| self.snapshot.clone());
                    next.balance = after.balance;
                    next.total_claimed = after.total_claimed;
                    next.withdraw_requested_at = after.withdraw_requested_at;
                    next.refund_nonce = after.refund_nonce;
                    next.synced_at_ms = now.saturating_mul(1000);
                    (Change::Put(next), ())
                }
                None => (Change::Keep, ()),
            },
        )
        .await
        .map_err(|_| Refusal::Store)?;
        let state = state.unwrap_or(Value::Null);
        Ok(self.receipt(s, state, charged, None))
    }
}

#[async_trait]
impl Hold for BatchHold {
    fn version(&self) -> Version {
        Version::V2
    }
    fn payer(&self) -> Address {
        self.payload.config.payer
    }
    fn network(&self) -> Network {
        self.requirement.network
    }
    fn asset(&self) -> Address {
        self.requirement.asset
    }
    fn paid(&self) -> U256 {
        U256::from(self.charged.unwrap_or_default())
    }
    fn settled(&self) -> Option<&SettleResponse> {
        self.settled.as_ref()
    }
    fn channel(&self) -> Option<B256> {
        Some(self.channel_id())
    }
    fn settles_on_chain(&self) -> bool {
        false
    }

    fn own_answer(&self) -> Option<Answer> {
        matches!(self.payload.kind, Kind::Refund { .. }).then(|| Answer {
            status: 200,
            headers: vec![("content-type", "application/json".to_owned())],
            body: json!({"message": "Refund acknowledged", "channelId": self.channel_id().to_string()})
                .to_string()
                .into_bytes(),
        })
    }

    async fn on_response(
        &mut self,
        status: u16,
        head: bool,
        overrides: Option<&[u8]>,
    ) -> Result<Option<SettleResponse>, Refusal> {
        if let Some(s) = &self.settled {
            return Ok(Some(s.clone()));
        }
        if status >= 400 || head {
            return Ok(None);
        }
        // The upstream may lower a call's price (`Settlement-Overrides`); the voucher covers the offer's.
        let max = U256::from(self.price);
        let c = charge::charge(overrides, max, U256::ZERO, self.decimals);
        if let Some(note) = &c.note {
            tracing::warn!(payer = %self.payer(), charge = %c.amount, "batch charge adjusted: {note}");
        }
        let charge = u128::try_from(c.amount).unwrap_or(self.price);
        let collected = match self.payload.kind.clone() {
            Kind::Voucher => self.voucher(charge).await,
            Kind::Deposit { .. } => self.deposit(charge).await,
            Kind::Refund { amount } => self.refund(amount).await,
        };
        let kind = match self.payload.kind {
            Kind::Voucher => "voucher",
            Kind::Deposit { .. } => "deposit",
            Kind::Refund { .. } => "refund",
        };
        let result = collected.as_ref().map_or_else(refusal_label, |_| "accepted".to_owned());
        self.remote.metrics().batch_voucher(kind, &result);
        let s = collected?;
        self.charged = Some(if matches!(self.payload.kind, Kind::Refund { .. }) {
            0
        } else {
            charge
        });
        self.settled = Some(s.clone());
        Ok(Some(s))
    }

    async fn release(&mut self) {
        let (now, pending, existed) = (self.clock.now(), self.pending, self.existed);
        let released = channels::update(
            self.store.as_ref(),
            &self.key,
            now + RECORD_LIFETIME_SECS,
            now,
            |cur: Option<Channel>| {
                let held = cur.as_ref().is_some_and(|c| c.pending.is_some_and(|p| p.id == pending));
                match (held, rules::release(cur, pending, existed)) {
                    (false, _) => (Change::Keep, ()),
                    (true, Some(c)) => (Change::Put(c), ()),
                    (true, None) => (Change::Delete, ()),
                }
            },
        )
        .await;
        if let Err(e) = released {
            // The reservation then runs out by itself (at most the hold's bound).
            tracing::warn!(error = %e, channel = %self.channel_id(), "a channel's reservation could not be released");
        }
    }
}
