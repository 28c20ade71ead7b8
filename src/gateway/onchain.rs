//! What the chain itself says about a payment whose settlement outcome is unknown, on the networks the
//! config gives an RPC URL for (`rpc:`). Asked only when the same payment comes back and the facilitator
//! cannot say (it lost track, says "nonce used", or is down): a settlement proven on chain is served, one
//! that can no longer happen is released, and anything else stays in doubt. Never on the path of a
//! payment settled normally.
//!
//! Proof of payment is an event, not a nonce: a used EIP-3009 nonce may have been cancelled by its payer
//! (`cancelAuthorization`), and a Permit2 nonce may have gone to another permit, so only a successful
//! transaction that moved this payment (EIP-3009's `AuthorizationUsed(payer, nonce)`, or the token's
//! `Transfer(payer, pay_to)` in the transaction the facilitator named) counts as paid.

use std::collections::HashMap;
use std::time::Duration;

use alloy::primitives::{Address, B256, U256};
use alloy::providers::{DynProvider, Provider, ProviderBuilder};
use alloy::rpc::types::{Filter, TransactionReceipt};
use alloy::sol;
use alloy::sol_types::SolEvent;

use crate::core::secret::{redact, Secret};
use crate::protocol::network::Network;
use crate::protocol::payment::Payment;
use crate::protocol::permit2::PERMIT2;
use crate::protocol::reason;

sol! {
    #[sol(rpc)]
    interface IAuthorizationState {
        function authorizationState(address authorizer, bytes32 nonce) external view returns (bool);
    }

    #[sol(rpc)]
    interface INonceBitmap {
        function nonceBitmap(address owner, uint256 wordPos) external view returns (uint256);
    }

    event AuthorizationUsed(address indexed authorizer, bytes32 indexed nonce);
    event Transfer(address indexed from, address indexed to, uint256 value);
}

/// Longest the chain is asked about one payment, all calls together.
const RESOLVE_TIMEOUT: Duration = Duration::from_secs(5);
/// How far back an `AuthorizationUsed` event is looked for when no transaction is known: many RPC
/// providers refuse wider log queries, and an authorization lives minutes, not days.
const LOG_WINDOW_BLOCKS: u64 = 10_000;

/// What the chain shows.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Finding {
    /// Paid, in this transaction.
    Settled { transaction: String },
    /// It did not happen and cannot any more; why, as a reason code.
    NotSettled { reason: &'static str, message: String },
    /// The chain does not settle it either way (still valid and unused, or used without proof).
    Unknown,
}

/// The chains the gateway may read, by chain id.
#[derive(Default)]
pub struct Onchain {
    chains: HashMap<u64, (DynProvider, String)>,
}

impl Onchain {
    /// Readers for `rpc` (network → URL); the URLs are never shown but redacted.
    pub fn new(rpc: &[(Network, Secret)]) -> Result<Self, String> {
        let mut chains = HashMap::new();
        for (network, url) in rpc {
            let parsed: url::Url = url
                .expose()
                .parse()
                .map_err(|e| format!("rpc URL for {network}: {e}"))?;
            let http = reqwest::Client::builder()
                .timeout(RESOLVE_TIMEOUT)
                .build()
                .map_err(|e| format!("HTTP client: {e}"))?;
            let shown = redact(&parsed);
            let provider = ProviderBuilder::new().connect_reqwest(http, parsed).erased();
            chains.insert(network.chain_id, (provider, shown));
        }
        Ok(Onchain { chains })
    }

    /// Whether the gateway can read `network`.
    pub fn reads(&self, network: Network) -> bool {
        self.chains.contains_key(&network.chain_id)
    }

    /// What the chain says of `payment` in `asset` on `network`, paid to `pay_to`, which may have been
    /// sent in `transaction` (`""` when none is known). Errors and timeouts come to [`Finding::Unknown`].
    pub async fn resolve(
        &self,
        network: Network,
        asset: Address,
        payment: &Payment,
        transaction: &str,
        now: u64,
    ) -> Finding {
        let Some((provider, shown)) = self.chains.get(&network.chain_id) else {
            return Finding::Unknown;
        };
        match tokio::time::timeout(RESOLVE_TIMEOUT, look(provider, asset, payment, transaction, now)).await {
            Ok(Ok(f)) => f,
            Ok(Err(e)) => {
                tracing::warn!(rpc = %shown, error = %e, "cannot read the chain to resolve a payment in doubt");
                Finding::Unknown
            }
            Err(_) => {
                tracing::warn!(rpc = %shown, "the chain did not answer in time to resolve a payment in doubt");
                Finding::Unknown
            }
        }
    }
}

type Rpc<T> = Result<T, String>;

fn rpc_error(e: impl std::fmt::Display) -> String {
    e.to_string()
}

async fn look(p: &DynProvider, asset: Address, payment: &Payment, transaction: &str, now: u64) -> Rpc<Finding> {
    // The transaction the facilitator named, if it is mined.
    if let Ok(hash) = transaction.parse::<B256>() {
        if let Some(r) = p.get_transaction_receipt(hash).await.map_err(rpc_error)? {
            if r.status() && moved(&r, asset, payment) {
                return Ok(Finding::Settled {
                    transaction: transaction.to_owned(),
                });
            }
        }
    }
    let payer = payment.payer();
    match payment {
        Payment::Eip3009(e) => {
            let a = &e.authorization;
            let used = IAuthorizationState::new(asset, p)
                .authorizationState(payer, a.nonce)
                .call()
                .await
                .map_err(rpc_error)?;
            if used {
                return used_by(p, asset, payer, a.nonce).await;
            }
            Ok(unused(a.valid_before, now, reason::VALID_BEFORE))
        }
        Payment::Permit2(p2) => {
            let a = &p2.authorization;
            let word = INonceBitmap::new(PERMIT2, p)
                .nonceBitmap(payer, a.nonce >> 8)
                .call()
                .await
                .map_err(rpc_error)?;
            let bit = U256::from(1u8) << (a.nonce & U256::from(0xffu16)).to::<usize>();
            if word & bit != U256::ZERO {
                // Used, but by what: without the transaction, a Permit2 nonce proves nothing.
                return Ok(Finding::Unknown);
            }
            Ok(unused(a.deadline, now, reason::PERMIT2_DEADLINE_EXPIRED))
        }
    }
}

/// An unused authorization: it cannot land once past its deadline; before, it still may.
fn unused(deadline: U256, now: u64, reason: &'static str) -> Finding {
    if U256::from(now) < deadline {
        return Finding::Unknown;
    }
    Finding::NotSettled {
        reason,
        message: "the chain shows the authorization unused past its deadline: it can no longer be settled".into(),
    }
}

/// The transaction whose `AuthorizationUsed(payer, nonce)` event spent this EIP-3009 authorization, found
/// in the recent blocks.
async fn used_by(p: &DynProvider, asset: Address, payer: Address, nonce: B256) -> Rpc<Finding> {
    let latest = p.get_block_number().await.map_err(rpc_error)?;
    let filter = Filter::new()
        .address(asset)
        .event_signature(AuthorizationUsed::SIGNATURE_HASH)
        .topic1(payer.into_word())
        .topic2(nonce)
        .from_block(latest.saturating_sub(LOG_WINDOW_BLOCKS))
        .to_block(latest);
    let logs = p.get_logs(&filter).await.map_err(rpc_error)?;
    Ok(match logs.iter().find_map(|l| l.transaction_hash) {
        Some(tx) => Finding::Settled {
            transaction: tx.to_string(),
        },
        None => Finding::Unknown,
    })
}

/// Whether a successful receipt moved this payment: EIP-3009's event for its payer and nonce, or (Permit2)
/// a transfer of the token from the payer to the payee.
fn moved(r: &TransactionReceipt, asset: Address, payment: &Payment) -> bool {
    let payer = payment.payer().into_word();
    r.inner.logs().iter().filter(|l| l.address() == asset).any(|l| {
        let t = l.topics();
        match payment {
            Payment::Eip3009(e) => {
                t.len() == 3
                    && t[0] == AuthorizationUsed::SIGNATURE_HASH
                    && t[1] == payer
                    && t[2] == e.authorization.nonce
            }
            Payment::Permit2(_) => {
                t.len() == 3 && t[0] == Transfer::SIGNATURE_HASH && t[1] == payer && t[2] == payment.payee().into_word()
            }
        }
    })
}
