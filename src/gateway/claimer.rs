//! The `batch-settlement` claimer: collects what vouchers charged. Every `claim_every` it claims, in one
//! transaction per (network, token, receiver), each channel whose charges pass what the chain shows
//! claimed (the receiver authorizer signs the batch); every `settle_every` it settles the claimed funds to
//! the receiver. One replica at a time does it, by a lease in the shared store. `x402-gateway channels`
//! lists the channels and claims or settles now, through the admin listener.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use alloy::primitives::Address;
use alloy::signers::SignerSync;
use serde::Serialize;
use serde_json::{json, Value};

use crate::core::time::Clock;
use crate::gateway::batch::CHANNEL_PREFIX;
use crate::gateway::channels::{self, Change};
use crate::gateway::facilitator::{Remote, Settlement};
use crate::gateway::live::LiveConfig;
use crate::gateway::metrics::Metrics;
use crate::gateway::store::Store;
use crate::protocol::batch::{self, ClaimEntry, SCHEME};
use crate::protocol::exact::Scheme;
use crate::protocol::facilitator::FacilitatorRequest;
use crate::protocol::network::Network;
use crate::protocol::Version;
use crate::rules::channel::Channel;

/// The store key of the claimer's lease.
const LEASE_KEY: &str = "batch:claimer";

/// A channel as `x402-gateway channels` shows it.
#[derive(Debug, Clone, Serialize)]
pub struct ChannelRow {
    pub network: String,
    pub channel: String,
    pub payer: String,
    pub receiver: String,
    pub token: String,
    /// Deposited and still in the channel (as last read from the chain), atomic units.
    pub balance: String,
    /// Charged by served calls.
    pub charged: String,
    /// Claimed on chain.
    pub claimed: String,
    /// Charged but not yet claimed.
    pub unclaimed: String,
    /// Unix seconds of a payer's withdraw request, 0 for none.
    pub withdraw_requested_at: u64,
}

/// What one claim round did.
#[derive(Debug, Default, Clone, Serialize)]
pub struct Round {
    /// Claim or settle transactions sent.
    pub transactions: Vec<String>,
    /// Channels claimed.
    pub channels: usize,
    /// What went wrong, per group.
    pub errors: Vec<String>,
}

/// The claimer's parts.
pub struct Claimer {
    pub store: Arc<dyn Store>,
    pub remote: Arc<Remote>,
    pub live: Arc<LiveConfig>,
    pub metrics: Arc<Metrics>,
    pub clock: Clock,
    /// This replica's name in the lease.
    pub id: String,
}

/// Where claims go: one network, token and receiver.
type Group = (Network, Address, Address);

impl Claimer {
    /// Every channel in the store, with its network.
    async fn channels(&self) -> Result<Vec<(String, Network, Channel)>, String> {
        let now = self.clock.now();
        let found = self
            .store
            .scan_entries(CHANNEL_PREFIX, now)
            .await
            .map_err(|e| e.to_string())?;
        Ok(found
            .into_iter()
            .filter_map(|(k, v)| {
                let network = Network::parse(k.strip_prefix(CHANNEL_PREFIX)?.rsplit_once(':')?.0)?;
                Some((k, network, serde_json::from_str(&v).ok()?))
            })
            .collect())
    }

    /// The channels for `x402-gateway channels`.
    pub async fn list(&self) -> Result<Vec<ChannelRow>, String> {
        let mut rows: Vec<ChannelRow> = self
            .channels()
            .await?
            .into_iter()
            .map(|(_, network, c)| {
                let id = batch::channel_id(&c.config, network.chain_id);
                ChannelRow {
                    network: network.caip2(),
                    channel: id.to_string(),
                    payer: c.config.payer.to_string(),
                    receiver: c.config.receiver.to_string(),
                    token: c.config.token.to_string(),
                    balance: c.balance.to_string(),
                    charged: c.charged.to_string(),
                    claimed: c.total_claimed.to_string(),
                    unclaimed: c.charged.saturating_sub(c.total_claimed).to_string(),
                    withdraw_requested_at: c.withdraw_requested_at,
                }
            })
            .collect();
        rows.sort_by(|a, b| a.channel.cmp(&b.channel));
        Ok(rows)
    }

    /// `/settle` of a server-side payload (`claim`, `settle`) for a group, as the SDK channel managers
    /// send it: a requirement of amount 0 naming the network, token and receiver.
    async fn send(&self, (network, token, receiver): Group, payload: Value) -> Result<String, String> {
        let requirement = json!({
            "scheme": SCHEME, "network": network.caip2(), "asset": token.to_string(), "amount": "0",
            "payTo": receiver.to_string(), "maxTimeoutSeconds": 0, "extra": {},
        });
        let request = FacilitatorRequest {
            x402_version: Version::V2,
            payment_payload: json!({"x402Version": 2, "accepted": requirement, "payload": payload}),
            payment_requirements: requirement,
        };
        let via = self.remote.pick(network, None).ok_or("no facilitator is configured")?;
        match self.remote.settle(&request.encode(), via).await {
            Settlement::Settled(s) => Ok(s.transaction),
            Settlement::Failed(s) | Settlement::Pending(s) => Err(format!(
                "{}: {}",
                s.error_reason.unwrap_or_default(),
                s.error_message.unwrap_or_default()
            )),
            Settlement::Error { error, .. } => Err(error.to_string()),
        }
    }

    /// Claims every channel whose charges pass what the chain shows claimed, up to
    /// `max_claims_per_batch` channels per transaction.
    pub async fn claim(&self) -> Round {
        let mut round = Round::default();
        let Some(settings) = self.live.load().current.config.batch.clone() else {
            return round;
        };
        let channels = match self.channels().await {
            Ok(c) => c,
            Err(e) => {
                round.errors.push(e);
                return round;
            }
        };
        let unclaimed: u128 = channels
            .iter()
            .map(|(_, _, c)| c.charged.saturating_sub(c.total_claimed))
            .sum();
        self.metrics
            .batch_channels
            .set(i64::try_from(channels.len()).unwrap_or(i64::MAX));
        self.metrics
            .batch_unclaimed
            .set(i64::try_from(unclaimed).unwrap_or(i64::MAX));
        let mut groups: BTreeMap<Group, Vec<(String, Channel)>> = BTreeMap::new();
        for (key, network, c) in channels {
            if c.charged > c.total_claimed {
                groups
                    .entry((network, c.config.token, c.config.receiver))
                    .or_default()
                    .push((key, c));
            }
        }
        for (group, all) in groups {
            for batch in all.chunks(settings.max_claims_per_batch) {
                let chain_id = group.0.chain_id;
                let entries: Vec<ClaimEntry> = batch
                    .iter()
                    .map(|(_, c)| ClaimEntry {
                        channelId: batch::channel_id(&c.config, chain_id),
                        maxClaimableAmount: c.signed_max,
                        totalClaimed: c.charged,
                    })
                    .collect();
                let signature = match settings
                    .authorizer
                    .sign_hash_sync(&batch::claim_batch_digest(entries, chain_id))
                {
                    Ok(s) => alloy::primitives::Bytes::from(s.as_bytes().to_vec()).to_string(),
                    Err(e) => {
                        round
                            .errors
                            .push(format!("the receiver authorizer could not sign: {e}"));
                        continue;
                    }
                };
                let rows: Vec<Value> = batch
                    .iter()
                    .map(|(_, c)| batch::claim_row_json(&c.config, c.signed_max, &c.signature, c.charged))
                    .collect();
                let payload = json!({"type": "claim", "claims": rows, "claimAuthorizerSignature": signature});
                match self.send(group, payload).await {
                    Ok(tx) => {
                        self.metrics.batch_transaction("claim", true);
                        round.channels += batch.len();
                        round.transactions.push(tx);
                        for (key, c) in batch {
                            let newly = c.charged.saturating_sub(c.total_claimed);
                            self.metrics
                                .batch_claimed
                                .inc_by(u64::try_from(newly).unwrap_or(u64::MAX));
                            self.claimed(key, c.charged).await;
                        }
                    }
                    Err(e) => {
                        self.metrics.batch_transaction("claim", false);
                        round.errors.push(e);
                    }
                }
            }
        }
        round
    }

    /// Raises a channel's record of what is claimed to `amount`, whatever else changed meanwhile.
    async fn claimed(&self, key: &str, amount: u128) {
        let now = self.clock.now();
        let updated = channels::update(
            self.store.as_ref(),
            key,
            now + crate::gateway::batch::RECORD_LIFETIME_SECS,
            now,
            |cur: Option<Channel>| match cur {
                Some(mut c) if c.total_claimed < amount => {
                    c.total_claimed = amount;
                    (Change::Put(c), ())
                }
                _ => (Change::Keep, ()),
            },
        )
        .await;
        if let Err(e) = updated {
            // The next round claims it again, a no-op on chain; nothing is lost.
            tracing::warn!(error = %e, key, "a claimed channel's record could not be updated");
        }
    }

    /// Settles the claimed funds of every (network, token, receiver) with channels in the store.
    pub async fn settle(&self) -> Round {
        let mut round = Round::default();
        let channels = match self.channels().await {
            Ok(c) => c,
            Err(e) => {
                round.errors.push(e);
                return round;
            }
        };
        // Every receiver the price table sells to by batch settlement, and any a channel still names (a
        // route since removed): a refund that emptied a channel leaves its claim to settle, not its record.
        let live = self.live.load();
        let offered = live
            .current
            .config
            .table
            .routes
            .iter()
            .filter_map(|r| r.pricing.as_ref())
            .flat_map(|p| p.offers.iter())
            .filter(|o| matches!(o.requirement.scheme, Scheme::Batch(_)))
            .map(|o| (o.requirement.network, o.requirement.asset, o.requirement.pay_to));
        let groups: std::collections::BTreeSet<Group> = channels
            .iter()
            .map(|(_, n, c)| (*n, c.config.token, c.config.receiver))
            .chain(offered)
            .collect();
        for group in groups {
            let payload = json!({"type": "settle", "receiver": group.2.to_string(), "token": group.1.to_string()});
            match self.send(group, payload).await {
                Ok(tx) => {
                    self.metrics.batch_transaction("settle", true);
                    round.transactions.push(tx);
                }
                // Nothing new claimed since the last settle: not a failure.
                Err(e) if e.starts_with(batch::reason::NOTHING_TO_SETTLE) => {}
                Err(e) => {
                    self.metrics.batch_transaction("settle", false);
                    round.errors.push(e);
                }
            }
        }
        round
    }

    /// Holds (or renews) the lease for `ttl`: whether this replica is the one claiming.
    async fn lease(&self, ttl: Duration) -> bool {
        let now = self.clock.now();
        let until = now + ttl.as_secs().max(1);
        match self.store.put_new(LEASE_KEY, self.id.clone(), until, now).await {
            Ok(None) => true,
            Ok(Some(holder)) if holder == self.id => self
                .store
                .swap_entry(LEASE_KEY, Some(&holder), Some(self.id.clone()), until, now)
                .await
                .unwrap_or(false),
            _ => false,
        }
    }

    /// Claims every `claim_every` and settles every `settle_every`, while this replica holds the lease.
    pub async fn run(self: Arc<Self>) {
        let mut last_settle = self.clock.now();
        loop {
            let Some(settings) = self.live.load().current.config.batch.clone() else {
                tokio::time::sleep(Duration::from_secs(5)).await;
                continue;
            };
            tokio::time::sleep(settings.claim_every).await;
            if !self.lease(settings.claim_every * 3).await {
                continue;
            }
            let claimed = self.claim().await;
            for e in &claimed.errors {
                tracing::warn!(error = %e, "batch claim failed; retried next round");
            }
            if !claimed.transactions.is_empty() {
                tracing::info!(channels = claimed.channels, transactions = ?claimed.transactions, "batch vouchers claimed");
            }
            let now = self.clock.now();
            if now.saturating_sub(last_settle) >= settings.settle_every.as_secs() {
                last_settle = now;
                let settled = self.settle().await;
                for e in &settled.errors {
                    tracing::warn!(error = %e, "batch settle failed; retried next round");
                }
                if !settled.transactions.is_empty() {
                    tracing::info!(transactions = ?settled.transactions, "batch claims settled to the receiver");
                }
            }
        }
    }
}
