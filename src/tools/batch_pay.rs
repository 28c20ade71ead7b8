//! A `batch-settlement` payer for the demo and the benchmark: opens a channel with one EIP-3009 deposit,
//! then pays each call with a voucher for the running total, as the official clients do (payer and payer
//! authorizer alike, salt zero). It keeps no state beyond one run: the official clients are the real
//! thing for anything longer.

use alloy::primitives::{Bytes, B256, U256};
use alloy::signers::local::PrivateKeySigner;
use alloy::signers::SignerSync;
use alloy::sol_types::SolStruct;
use serde_json::{json, Value};

use crate::protocol::batch::{self, ChannelConfig, ReceiveWithAuthorization};
use crate::protocol::exact::{Requirement, Scheme};
use crate::protocol::{codec, v2, HEADER_PAYMENT_REQUIRED, HEADER_PAYMENT_SIGNATURE};

/// A payer's channel to one batch-settlement offer.
pub struct Channel {
    /// The offer, as the 402 wrote it (echoed as `accepted`).
    offer: Value,
    requirement: Requirement,
    config: ChannelConfig,
    id: B256,
    signer: PrivateKeySigner,
}

/// What a run of calls came to.
#[derive(Debug, Default)]
pub struct Run {
    /// Each call's status.
    pub statuses: Vec<u16>,
    /// Transactions named by the receipts (the deposit's).
    pub transactions: Vec<String>,
    /// The channel paid from.
    pub channel: B256,
    /// The cumulative charge the last receipt states.
    pub charged: String,
    /// The deposit made.
    pub deposit: U256,
}

fn hex(sig: &alloy::signers::Signature) -> String {
    Bytes::from(sig.as_bytes().to_vec()).to_string()
}

impl Channel {
    /// The channel `signer` would pay `offer` (a 402's `batch-settlement` entry) from.
    pub fn open(offer: &Value, signer: PrivateKeySigner) -> Result<Channel, String> {
        let wire: v2::PaymentRequirements =
            serde_json::from_value(offer.clone()).map_err(|e| format!("not a payment requirement: {e}"))?;
        let requirement = Requirement::from_v2(&wire).map_err(|e| e.to_string())?;
        let Scheme::Batch(terms) = requirement.scheme else {
            return Err("the offer is not batch-settlement".into());
        };
        let config = ChannelConfig {
            payer: signer.address(),
            payerAuthorizer: signer.address(),
            receiver: requirement.pay_to,
            receiverAuthorizer: terms.receiver_authorizer,
            token: requirement.asset,
            withdrawDelay: alloy::primitives::aliases::U40::from(terms.withdraw_delay),
            salt: B256::ZERO,
        };
        let id = batch::channel_id(&config, requirement.network.chain_id);
        Ok(Channel {
            offer: offer.clone(),
            requirement,
            config,
            id,
            signer,
        })
    }

    /// The same payer's channel under another `salt` (a payer may hold many channels to one receiver).
    pub fn with_salt(mut self, salt: B256) -> Channel {
        self.config.salt = salt;
        self.id = batch::channel_id(&self.config, self.requirement.network.chain_id);
        self
    }

    /// The channel's id.
    pub fn id(&self) -> B256 {
        self.id
    }

    /// The price of one call, atomic units.
    pub fn price(&self) -> U256 {
        self.requirement.amount
    }

    /// The deposit the offer asks for at least.
    pub fn min_deposit(&self) -> U256 {
        match self.requirement.scheme {
            Scheme::Batch(t) => t.min_deposit.max(self.requirement.amount),
            _ => self.requirement.amount,
        }
    }

    fn signed_voucher(&self, max: u128) -> Result<Value, String> {
        let digest = batch::voucher_digest(self.id, max, self.requirement.network.chain_id);
        let sig = self.signer.sign_hash_sync(&digest).map_err(|e| e.to_string())?;
        Ok(json!({"channelId": self.id.to_string(), "maxClaimableAmount": max.to_string(), "signature": hex(&sig)}))
    }

    fn header(&self, payload: Value) -> String {
        codec::encode(&json!({"x402Version": 2, "accepted": self.offer, "payload": payload}))
    }

    /// A voucher for a running total of `max`.
    pub fn voucher(&self, max: u128) -> Result<String, String> {
        let payload = json!({
            "type": "voucher",
            "channelConfig": batch::config_json(&self.config),
            "voucher": self.signed_voucher(max)?,
        });
        Ok(self.header(payload))
    }

    /// The first call: deposit `amount` through the EIP-3009 collector, and pay one call from it.
    pub fn deposit(&self, amount: U256, now: u64) -> Result<String, String> {
        let mut salt = [0u8; 32];
        aws_lc_rs::rand::fill(&mut salt).map_err(|_| "no randomness for the deposit's salt")?;
        let salt = B256::from(salt);
        let valid_before = U256::from(now + self.requirement.max_timeout_seconds);
        let auth = ReceiveWithAuthorization {
            from: self.signer.address(),
            to: batch::ERC3009_COLLECTOR,
            value: amount,
            validAfter: U256::ZERO,
            validBefore: valid_before,
            nonce: batch::deposit_nonce(self.id, salt),
        };
        let sig = self
            .signer
            .sign_hash_sync(&auth.eip712_signing_hash(&self.requirement.domain()))
            .map_err(|e| e.to_string())?;
        let price = u128::try_from(self.requirement.amount).map_err(|_| "price too large")?;
        let payload = json!({
            "type": "deposit",
            "channelConfig": batch::config_json(&self.config),
            "voucher": self.signed_voucher(price)?,
            "deposit": {
                "amount": amount.to_string(),
                "authorization": {"erc3009Authorization": {
                    "validAfter": "0", "validBefore": valid_before.to_string(),
                    "salt": salt.to_string(), "signature": hex(&sig),
                }},
            },
        });
        Ok(self.header(payload))
    }
}

/// The `batch-settlement` offer of the 402 `url` answers.
pub async fn offer(http: &reqwest::Client, url: &str) -> Result<Value, String> {
    let r = http.get(url).send().await.map_err(|e| e.without_url().to_string())?;
    let header = r
        .headers()
        .get(HEADER_PAYMENT_REQUIRED)
        .ok_or_else(|| format!("{url} answered {} without a 402 challenge", r.status()))?;
    let required: Value = codec::decode(header.as_bytes()).map_err(|e| e.to_string())?;
    required["accepts"]
        .as_array()
        .and_then(|a| a.iter().find(|o| o["scheme"] == batch::SCHEME))
        .cloned()
        .ok_or_else(|| format!("{url} offers no batch-settlement"))
}

/// Pays `calls` calls to `url` from one deposit of the offer's least deposit (at least the calls' worth).
pub async fn pay_calls(
    http: &reqwest::Client,
    signer: PrivateKeySigner,
    url: &str,
    calls: u64,
    now: u64,
) -> Result<Run, String> {
    let channel = Channel::open(&offer(http, url).await?, signer)?;
    let price = u128::try_from(channel.price()).map_err(|_| "price too large")?;
    let deposit = channel.min_deposit().max(channel.price() * U256::from(calls));
    let mut run = Run {
        channel: channel.id(),
        deposit,
        ..Run::default()
    };
    for k in 1..=u128::from(calls) {
        let header = if k == 1 {
            channel.deposit(deposit, now)?
        } else {
            channel.voucher(k * price)?
        };
        let r = http
            .get(url)
            .header(HEADER_PAYMENT_SIGNATURE, header)
            .send()
            .await
            .map_err(|e| e.without_url().to_string())?;
        run.statuses.push(r.status().as_u16());
        let receipt: Option<Value> = r
            .headers()
            .get("payment-response")
            .and_then(|h| codec::decode(h.as_bytes()).ok());
        if let Some(receipt) = receipt {
            let tx = receipt["transaction"].as_str().unwrap_or_default();
            if !tx.is_empty() {
                run.transactions.push(tx.to_owned());
            }
            run.charged = receipt["extra"]["channelState"]["chargedCumulativeAmount"]
                .as_str()
                .unwrap_or_default()
                .to_owned();
        }
    }
    Ok(run)
}
