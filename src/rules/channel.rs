//! The `batch-settlement` rules a resource server keeps per channel, as pure functions over one record:
//! what cumulative amount the next voucher must carry, when a voucher is checked locally instead of by
//! the facilitator, and how a request reserves the channel, commits its charge or gives it back. The
//! stores apply these atomically (one request per channel at a time, across replicas); the official
//! SDK servers' algorithm is the reference (`.notes` of issue 18: before-verify, after-verify, settle).

use alloy::primitives::{Address, Bytes, U256};
use serde::{Deserialize, Serialize};

use crate::protocol::batch::{self, reason, BatchPayload, ChannelConfig, Kind};
use crate::protocol::exact::Rejection;
use crate::rules::verify::recover_signer;

/// What the gateway knows of one channel. Amounts in the token's atomic units.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Channel {
    /// The channel's terms, as the payer signed them.
    #[serde(with = "config_serde")]
    pub config: ChannelConfig,
    /// Everything served on this channel so far (`chargedCumulativeAmount`): what may be claimed.
    pub charged: u128,
    /// The ceiling of the latest voucher held, and its signature: what a claim presents.
    pub signed_max: u128,
    pub signature: Bytes,
    /// On-chain state as last read (by the facilitator's `/verify` or `/settle`).
    pub balance: u128,
    pub total_claimed: u128,
    pub withdraw_requested_at: u64,
    pub refund_nonce: U256,
    /// When the on-chain fields were read (unix ms).
    pub synced_at_ms: u64,
    /// When a request last paid on this channel (unix ms).
    pub last_request_ms: u64,
    /// The request holding the channel now, if any.
    pub pending: Option<Pending>,
}

/// A request's hold on a channel: no other request may use it until this one commits, gives it back or
/// expires.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Pending {
    /// The holding request's own id (random).
    pub id: u64,
    /// The voucher it carries.
    pub max: u128,
    /// When the hold lapses (unix ms), so a crashed request cannot block the channel for good.
    pub expires_ms: u64,
}

/// The on-chain state the facilitator's `/verify` reported (or the record's own, when checked locally).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct OnChain {
    pub balance: u128,
    pub total_claimed: u128,
    pub withdraw_requested_at: u64,
    pub refund_nonce: U256,
}

impl OnChain {
    /// The wire form (`channelState`, a `/verify` answer's `extra`): amounts as strings, the time a
    /// number, as the SDK facilitators write it.
    pub fn to_json(&self, channel_id: alloy::primitives::B256) -> serde_json::Value {
        serde_json::json!({
            "channelId": channel_id.to_string(),
            "balance": self.balance.to_string(),
            "totalClaimed": self.total_claimed.to_string(),
            "withdrawRequestedAt": self.withdraw_requested_at,
            "refundNonce": self.refund_nonce.to_string(),
        })
    }

    /// Reads the wire form leniently, as the SDK servers do: numbers or decimal strings.
    pub fn from_json(v: &serde_json::Value) -> Option<Self> {
        let field = |k: &str| -> Option<U256> {
            match v.get(k)? {
                serde_json::Value::String(s) => crate::protocol::exact::parse_decimal(s),
                serde_json::Value::Number(n) => n.as_u64().map(U256::from),
                _ => None,
            }
        };
        let small = |k: &str| field(k).and_then(|x| u128::try_from(x).ok());
        Some(OnChain {
            balance: small("balance")?,
            total_claimed: small("totalClaimed")?,
            withdraw_requested_at: match v.get("withdrawRequestedAt") {
                None => 0,
                Some(_) => u64::try_from(field("withdrawRequestedAt")?).ok()?,
            },
            refund_nonce: field("refundNonce").unwrap_or_default(),
        })
    }
}

impl Channel {
    /// The on-chain part of the record.
    pub fn on_chain(&self) -> OnChain {
        OnChain {
            balance: self.balance,
            total_claimed: self.total_claimed,
            withdraw_requested_at: self.withdraw_requested_at,
            refund_nonce: self.refund_nonce,
        }
    }

    /// Whether another request holds the channel at `now_ms`.
    pub fn busy(&self, now_ms: u64) -> bool {
        self.pending.is_some_and(|p| p.expires_ms > now_ms)
    }
}

/// What the next voucher must carry: what was charged so far, plus the price for a paid call (a refund
/// charges nothing). With no record (a channel this gateway never served, or a lost record) the SDK servers
/// take the client's own base (its voucher less one price), which the facilitator bounds by the chain.
pub fn expected(record: Option<&Channel>, p: &BatchPayload, price: u128) -> u128 {
    let refund = matches!(p.kind, Kind::Refund { .. });
    let signed = p.voucher.max_claimable;
    let base = match record {
        Some(c) => c.charged,
        None if refund => signed,
        None => signed.saturating_sub(price),
    };
    if refund {
        base
    } else {
        base.saturating_add(price)
    }
}

/// What a channel's config must agree with: the offer's terms (a facilitator may be asked about a
/// requirement that leaves the authorizer or the delay out; `None` then).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Terms {
    pub chain_id: u64,
    pub pay_to: Address,
    pub asset: Address,
    pub receiver_authorizer: Option<Address>,
    pub withdraw_delay: Option<u64>,
}

/// The channel's config against the offer's terms, in the SDKs' order (`validateChannelConfig`).
pub fn check_terms(p: &BatchPayload, t: &Terms) -> Result<(), Rejection> {
    let c = &p.config;
    let refuse = |why: &'static str, m: String| Err(Rejection::new(why, m));
    if !p.channel_matches(t.chain_id) {
        return refuse(
            reason::CHANNEL_ID_MISMATCH,
            format!(
                "voucher.channelId {} is not the hash of channelConfig",
                p.voucher.channel_id
            ),
        );
    }
    if c.receiver != t.pay_to {
        return refuse(
            reason::RECEIVER_MISMATCH,
            format!("receiver {} is not payTo {}", c.receiver, t.pay_to),
        );
    }
    match t.receiver_authorizer {
        Some(a) if !a.is_zero() && a == c.receiverAuthorizer => {}
        _ => {
            return refuse(
                reason::RECEIVER_AUTHORIZER_MISMATCH,
                format!("receiverAuthorizer {} is not the offer's", c.receiverAuthorizer),
            )
        }
    }
    if c.token != t.asset {
        return refuse(
            reason::TOKEN_MISMATCH,
            format!("token {} is not the asset {}", c.token, t.asset),
        );
    }
    let delay = batch::withdraw_delay(c);
    if t.withdraw_delay.is_some_and(|d| d != delay) {
        return refuse(
            reason::WITHDRAW_DELAY_MISMATCH,
            format!("withdrawDelay {delay} is not the offered one"),
        );
    }
    if !(batch::MIN_WITHDRAW_DELAY..=batch::MAX_WITHDRAW_DELAY).contains(&delay) {
        return refuse(
            reason::WITHDRAW_DELAY_OUT_OF_RANGE,
            format!(
                "withdrawDelay {delay} is outside {}..={} seconds",
                batch::MIN_WITHDRAW_DELAY,
                batch::MAX_WITHDRAW_DELAY
            ),
        );
    }
    Ok(())
}

/// A voucher checked without the facilitator, where the record allows: the channel is known, its
/// on-chain state is fresher than `ttl_ms`, and the payer named a key (so the signature is plain ECDSA,
/// as the contract checks it). `None`: ask the facilitator.
pub fn check_locally(
    record: Option<&Channel>,
    p: &BatchPayload,
    chain_id: u64,
    now_ms: u64,
    ttl_ms: u64,
) -> Option<Result<OnChain, Rejection>> {
    let c = record?;
    let fresh = now_ms.saturating_sub(c.synced_at_ms) <= ttl_ms;
    if !matches!(p.kind, Kind::Voucher) || !fresh || p.config.payerAuthorizer == Address::ZERO || c.config != p.config {
        return None;
    }
    let digest = batch::voucher_digest(p.voucher.channel_id, p.voucher.max_claimable, chain_id);
    let signed = recover_signer(&digest, p.voucher.signature.as_ref(), reason::VOUCHER_SIGNATURE).and_then(|who| {
        (who == p.config.payerAuthorizer)
            .then_some(())
            .ok_or_else(|| Rejection::new(reason::VOUCHER_SIGNATURE, format!("the voucher is signed by {who}")))
    });
    let max = p.voucher.max_claimable;
    Some(signed.and_then(|()| {
        if max > c.balance {
            Err(Rejection::new(
                reason::CUMULATIVE_EXCEEDS_BALANCE,
                format!("the voucher's {max} exceeds the channel's balance {}", c.balance),
            ))
        } else if max <= c.total_claimed {
            Err(Rejection::new(
                reason::CUMULATIVE_BELOW_CLAIMED,
                format!(
                    "the voucher's {max} is not above the {} already claimed",
                    c.total_claimed
                ),
            ))
        } else {
            Ok(c.on_chain())
        }
    }))
}

/// Why a request may not take the channel.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Refused {
    /// Another request holds it (`channel_busy`).
    Busy,
    /// The voucher's cumulative amount is not what this record expects: the client's view is stale. The
    /// corrective 402 carries this record (or, with none, the provisional one).
    Stale(Box<Channel>),
}

/// A verified request takes the channel: the record it leaves (this voucher held, the request pending),
/// unless another request holds it or the cumulative amount no longer matches.
pub fn reserve(
    current: Option<&Channel>,
    p: &BatchPayload,
    price: u128,
    state: OnChain,
    checked_locally: bool,
    pending: Pending,
    now_ms: u64,
) -> Result<Channel, Refused> {
    if current.is_some_and(|c| c.busy(now_ms)) {
        return Err(Refused::Busy);
    }
    let base = current.cloned().unwrap_or_else(|| provisional(p, price, state, now_ms));
    if p.voucher.max_claimable != expected(Some(&base), p, price) {
        return Err(Refused::Stale(Box::new(base)));
    }
    Ok(Channel {
        signed_max: p.voucher.max_claimable,
        signature: p.voucher.signature.clone(),
        balance: state.balance,
        total_claimed: state.total_claimed,
        withdraw_requested_at: state.withdraw_requested_at,
        refund_nonce: state.refund_nonce,
        synced_at_ms: if checked_locally { base.synced_at_ms } else { now_ms },
        last_request_ms: now_ms,
        pending: Some(pending),
        ..base
    })
}

/// The record of a channel first seen in this request: charged what the client's voucher implies.
fn provisional(p: &BatchPayload, price: u128, state: OnChain, now_ms: u64) -> Channel {
    let refund = matches!(p.kind, Kind::Refund { .. });
    let signed = p.voucher.max_claimable;
    Channel {
        config: p.config.clone(),
        // The client's own base, but never below what the chain shows claimed already: a payer whose
        // record was lost does not get calls for less than their price.
        charged: if refund {
            signed
        } else {
            signed.saturating_sub(price).max(state.total_claimed)
        },
        signed_max: signed,
        signature: p.voucher.signature.clone(),
        balance: state.balance,
        total_claimed: state.total_claimed,
        withdraw_requested_at: state.withdraw_requested_at,
        refund_nonce: state.refund_nonce,
        synced_at_ms: now_ms,
        last_request_ms: now_ms,
        pending: None,
    }
}

/// The served request's charge is added: the record to write before its response is released. Refused
/// (nothing changes) when another request took the channel meanwhile, or the charge would pass what the
/// voucher signed. `state` is the chain's after a deposit, `None` for a voucher.
pub fn commit(
    current: Option<&Channel>,
    pending_id: u64,
    charge: u128,
    state: Option<OnChain>,
    now_ms: u64,
) -> Result<Channel, Rejection> {
    let Some(c) = current else {
        return Err(Rejection::new(reason::MISSING_CHANNEL, "the channel's record is gone"));
    };
    let Some(pending) = c.pending.filter(|p| p.id == pending_id) else {
        return Err(Rejection::new(
            reason::CHANNEL_BUSY,
            "Concurrent request modified channel state",
        ));
    };
    let charged = c.charged.saturating_add(charge);
    if charged > pending.max {
        return Err(Rejection::new(
            reason::CHARGE_EXCEEDS_SIGNED_CUMULATIVE,
            format!("charging {charge} would pass the {} the voucher signed", pending.max),
        ));
    }
    let mut next = c.clone();
    next.charged = charged;
    next.pending = None;
    next.last_request_ms = now_ms;
    if let Some(s) = state {
        next.balance = s.balance;
        next.total_claimed = s.total_claimed;
        next.withdraw_requested_at = s.withdraw_requested_at;
        next.refund_nonce = s.refund_nonce;
        next.synced_at_ms = now_ms;
    }
    Ok(next)
}

/// A request that will not be charged gives the channel back (its upstream failed, or its settlement did):
/// the record without its hold, or none if the request created it. Another request's hold is left alone.
pub fn release(current: Option<Channel>, pending_id: u64, existed_before: bool) -> Option<Channel> {
    match current {
        Some(c) if c.pending.is_some_and(|p| p.id == pending_id) => {
            existed_before.then(|| Channel { pending: None, ..c })
        }
        other => other,
    }
}

/// `ChannelConfig` through its wire form, so a stored record reads the way the SDKs spell it.
mod config_serde {
    use super::*;
    use serde::{Deserializer, Serializer};

    pub fn serialize<S: Serializer>(c: &ChannelConfig, s: S) -> Result<S::Ok, S::Error> {
        batch::config_json(c).serialize(s)
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<ChannelConfig, D::Error> {
        let v = serde_json::Value::deserialize(d)?;
        batch::parse_config(&v).map_err(|e| serde::de::Error::custom(e.message))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::protocol::batch::SignedVoucher;
    use alloy::primitives::{address, B256};
    use alloy::signers::local::PrivateKeySigner;
    use alloy::signers::SignerSync;

    const CHAIN: u64 = 31_337;
    const PRICE: u128 = 100;
    const NOW: u64 = 1_000_000;

    fn key() -> PrivateKeySigner {
        "0x59c6995e998f97a5a0044966f0945389dc9e86dae88c7a8412f4603b6b78690d"
            .parse()
            .unwrap()
    }

    fn config() -> ChannelConfig {
        ChannelConfig {
            payer: key().address(),
            payerAuthorizer: key().address(),
            receiver: address!("3C44CdDdB6a900fa2b585dd299e03d12FA4293BC"),
            receiverAuthorizer: address!("90F79bf6EB2c4f870365E785982E1f101E93b906"),
            token: address!("5FbDB2315678afecb367f032d93F642f64180aa3"),
            withdrawDelay: alloy::primitives::aliases::U40::from(900),
            salt: B256::ZERO,
        }
    }

    fn voucher(max: u128, kind: Kind) -> BatchPayload {
        let id = batch::channel_id(&config(), CHAIN);
        let sig = key().sign_hash_sync(&batch::voucher_digest(id, max, CHAIN)).unwrap();
        BatchPayload {
            config: config(),
            voucher: SignedVoucher {
                channel_id: id,
                max_claimable: max,
                signature: sig.as_bytes().to_vec().into(),
            },
            kind,
        }
    }

    fn state(balance: u128, claimed: u128) -> OnChain {
        OnChain {
            balance,
            total_claimed: claimed,
            withdraw_requested_at: 0,
            refund_nonce: U256::ZERO,
        }
    }

    fn hold(id: u64) -> Pending {
        Pending {
            id,
            max: 0,
            expires_ms: NOW + 5_000,
        }
    }

    /// `c` held by request `id` for a voucher of one more price (400 on a record charged 300).
    fn held_by(c: &Channel, id: u64) -> Channel {
        reserve(
            Some(c),
            &voucher(400, Kind::Voucher),
            PRICE,
            state(1_000, 0),
            true,
            hold(id),
            NOW,
        )
        .unwrap()
    }

    /// A record charged `charged`, nobody holding it, synced now.
    fn record(charged: u128) -> Channel {
        let mut c = reserve(
            None,
            &voucher(charged + PRICE, Kind::Voucher),
            PRICE,
            state(1_000, 0),
            false,
            hold(0),
            NOW,
        )
        .unwrap();
        c.pending = None;
        c
    }

    #[test]
    fn each_call_adds_one_price_to_what_was_charged_and_a_refund_adds_nothing() {
        let c = record(300);
        assert_eq!(expected(Some(&c), &voucher(0, Kind::Voucher), PRICE), 400);
        assert_eq!(
            expected(Some(&c), &voucher(0, Kind::Refund { amount: None }), PRICE),
            300
        );
        // No record: the client's own base (its voucher less one price), as the SDK servers do.
        assert_eq!(expected(None, &voucher(700, Kind::Voucher), PRICE), 700);
        assert_eq!(record(300).charged, 300);
    }

    #[test]
    fn a_voucher_is_checked_locally_only_on_a_fresh_known_channel_and_with_the_contracts_rules() {
        let c = record(300);
        let ttl = 60_000;
        let ok = check_locally(Some(&c), &voucher(400, Kind::Voucher), CHAIN, NOW, ttl);
        assert_eq!(ok, Some(Ok(state(1_000, 0))));
        assert_eq!(
            check_locally(None, &voucher(400, Kind::Voucher), CHAIN, NOW, ttl),
            None,
            "unknown"
        );
        assert_eq!(
            check_locally(Some(&c), &voucher(400, Kind::Voucher), CHAIN, NOW + ttl + 1, ttl),
            None,
            "stale"
        );
        let deposit = Kind::Refund { amount: None };
        assert_eq!(
            check_locally(Some(&c), &voucher(300, deposit), CHAIN, NOW, ttl),
            None,
            "refunds go out"
        );
        let reason_of = |p: &BatchPayload| check_locally(Some(&c), p, CHAIN, NOW, ttl).unwrap().unwrap_err().reason;
        assert_eq!(
            reason_of(&voucher(1_001, Kind::Voucher)),
            reason::CUMULATIVE_EXCEEDS_BALANCE
        );
        let mut forged = voucher(400, Kind::Voucher);
        forged.voucher.max_claimable = 500; // signed for 400
        assert_eq!(reason_of(&forged), reason::VOUCHER_SIGNATURE);
        let claimed = Channel {
            total_claimed: 400,
            ..c.clone()
        };
        assert_eq!(
            check_locally(Some(&claimed), &voucher(400, Kind::Voucher), CHAIN, NOW, ttl)
                .unwrap()
                .unwrap_err()
                .reason,
            reason::CUMULATIVE_BELOW_CLAIMED
        );
    }

    #[test]
    fn one_request_holds_a_channel_and_a_stale_voucher_gets_the_record_back() {
        let c = record(300);
        let held = held_by(&c, 7);
        assert_eq!(
            (held.signed_max, held.charged, held.pending.map(|p| p.id)),
            (400, 300, Some(7))
        );
        assert_eq!(
            held.synced_at_ms, c.synced_at_ms,
            "a local check does not refresh the chain state"
        );
        // A second request while it is held: busy; once the hold lapses, it may go.
        let second = |now| {
            reserve(
                Some(&held),
                &voucher(400, Kind::Voucher),
                PRICE,
                state(1_000, 0),
                true,
                hold(8),
                now,
            )
        };
        assert_eq!(second(NOW), Err(Refused::Busy));
        assert!(second(NOW + 5_000).is_ok());
        // A voucher that assumes another charged amount: stale, with the record to correct the client.
        match reserve(
            Some(&c),
            &voucher(500, Kind::Voucher),
            PRICE,
            state(1_000, 0),
            true,
            hold(9),
            NOW,
        ) {
            Err(Refused::Stale(r)) => assert_eq!(r.charged, 300),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn a_commit_adds_the_charge_once_and_only_for_the_holder_and_a_release_gives_the_channel_back() {
        let c = record(300);
        let mut held = held_by(&c, 7);
        held.pending.as_mut().unwrap().max = 400;
        let done = commit(Some(&held), 7, PRICE, None, NOW).unwrap();
        assert_eq!((done.charged, done.pending), (400, None));
        assert_eq!(
            commit(Some(&done), 7, PRICE, None, NOW).unwrap_err().reason,
            reason::CHANNEL_BUSY,
            "once"
        );
        assert_eq!(
            commit(Some(&held), 8, PRICE, None, NOW).unwrap_err().reason,
            reason::CHANNEL_BUSY
        );
        assert_eq!(
            commit(Some(&held), 7, PRICE + 1, None, NOW).unwrap_err().reason,
            reason::CHARGE_EXCEEDS_SIGNED_CUMULATIVE
        );
        assert_eq!(
            commit(None, 7, PRICE, None, NOW).unwrap_err().reason,
            reason::MISSING_CHANNEL
        );
        // Released: the hold goes, the charge does not move; a record the request created goes too.
        let back = release(Some(held.clone()), 7, true).unwrap();
        assert_eq!((back.charged, back.pending), (300, None));
        assert_eq!(release(Some(held.clone()), 7, false), None);
        assert_eq!(
            release(Some(held.clone()), 8, true),
            Some(held),
            "another request's hold stays"
        );
    }

    #[test]
    fn a_record_round_trips_through_its_stored_form() {
        let c = record(300);
        let text = serde_json::to_string(&c).unwrap();
        assert!(text.contains("\"withdrawDelay\":900"), "{text}");
        assert_eq!(serde_json::from_str::<Channel>(&text).unwrap(), c);
    }
}
