//! Resolving `batch_settlement:`: the receiver authorizer's key (a secret, read from the environment or a
//! file) and the channel terms every `batch-settlement` route offers.

use std::sync::Arc;
use std::time::Duration;

use alloy::signers::local::PrivateKeySigner;

use super::locate::PathPart::Key;
use super::raw::RawConfig;
use super::resolve::Resolver;
use super::BatchSettings;
use crate::core::secret::Secret;
use crate::protocol::batch::{MAX_WITHDRAW_DELAY, MIN_WITHDRAW_DELAY};

/// The SDKs' default withdraw delay: the shortest the contract allows.
const DEFAULT_WITHDRAW_DELAY: Duration = Duration::from_secs(MIN_WITHDRAW_DELAY);
/// The on-chain snapshot's freshness for local voucher checks. Well inside the shortest withdraw delay:
/// a payer who asked to withdraw cannot take the funds before the vouchers seen meanwhile are claimed.
const DEFAULT_ONCHAIN_TTL: Duration = Duration::from_secs(300);
const DEFAULT_CLAIM_EVERY: Duration = Duration::from_secs(60);
const DEFAULT_SETTLE_EVERY: Duration = Duration::from_secs(600);
/// The SDKs' default rows per claim transaction.
const DEFAULT_MAX_CLAIMS: usize = 100;

impl Resolver<'_> {
    /// `batch_settlement:`, when present.
    pub(super) fn batch(&mut self, raw: &RawConfig) -> Option<Option<BatchSettings>> {
        let Some(b) = &raw.batch_settlement else {
            return Some(None);
        };
        let at = |k: &'static str| [Key("batch_settlement"), Key(k)];
        let key = match (&b.receiver_authorizer_key, &b.receiver_authorizer_key_file) {
            (Some(k), None) => self.text(k, &at("receiver_authorizer_key")).map(|k| (Secret::new(k), "receiver_authorizer_key")),
            (None, Some(f)) => self
                .parse(f, &at("receiver_authorizer_key_file"), |path| {
                    std::fs::read_to_string(path)
                        .map_err(|e| format!("cannot read the receiver authorizer's key from {path:?}: {e}"))
                })
                .map(|k| (Secret::new(k), "receiver_authorizer_key_file")),
            _ => self.fail(
                &[Key("batch_settlement")],
                "batch settlement needs the key that signs claims and refunds for the receiver: set exactly one of `receiver_authorizer_key: ${RECEIVER_AUTHORIZER_KEY}` or `receiver_authorizer_key_file: <path>`",
            ),
        };
        let authorizer = key.and_then(|(k, place)| match k.expose().trim().parse::<PrivateKeySigner>() {
            Ok(s) => Some(Arc::new(s)),
            // The message never repeats the value.
            Err(_) => self.fail(&at(place), "not a private key: give 32 bytes of hex, 0x-prefixed"),
        });
        let delays = (
            Duration::from_secs(MIN_WITHDRAW_DELAY),
            Duration::from_secs(MAX_WITHDRAW_DELAY),
        );
        let withdraw_delay = self.duration(&b.withdraw_delay, &at("withdraw_delay"), DEFAULT_WITHDRAW_DELAY, delays);
        let (second, day) = (Duration::from_secs(1), Duration::from_secs(86_400));
        let onchain_ttl = self.duration(&b.onchain_ttl, &at("onchain_ttl"), DEFAULT_ONCHAIN_TTL, (second, day));
        let claim_every = self.duration(&b.claim_every, &at("claim_every"), DEFAULT_CLAIM_EVERY, (second, day));
        let settle_every = self.duration(
            &b.settle_every,
            &at("settle_every"),
            DEFAULT_SETTLE_EVERY,
            (second, day),
        );
        let max_claims = match b.max_claims_per_batch {
            Some(0) => self.fail(&at("max_claims_per_batch"), "must be at least 1 (the SDKs use 100)"),
            n => Some(n.unwrap_or(DEFAULT_MAX_CLAIMS)),
        };
        let (withdraw_delay, onchain_ttl) = (withdraw_delay?, onchain_ttl?);
        if onchain_ttl * 2 > withdraw_delay {
            return self.fail(
                &at("onchain_ttl"),
                format!("onchain_ttl ({onchain_ttl:?}) must be at most half the withdraw_delay ({withdraw_delay:?}), so vouchers checked against a snapshot can still be claimed before a payer who asked to withdraw can leave"),
            );
        }
        Some(Some(BatchSettings {
            authorizer: authorizer?,
            withdraw_delay: withdraw_delay.as_secs(),
            onchain_ttl,
            claim_every: claim_every?,
            settle_every: settle_every?,
            max_claims_per_batch: max_claims?,
        }))
    }
}
