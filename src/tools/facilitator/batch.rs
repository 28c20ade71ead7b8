//! The self-hosted facilitator's `batch-settlement` scheme: `/verify` of a deposit, voucher or refund
//! against the channel's on-chain state, and `/settle` of the four actions a resource server asks for
//! (`deposit`, `claim`, `settle`, an enriched `refund`), each a transaction to the batch-settlement
//! contract sent at most once per request (`FacilitatorService::send_once`).
//!
//! It holds no receiver-authorizer key (so `/supported` advertises none): the resource server signs
//! claim batches and refunds with its own, as the SDK servers do when configured with a signer.

use alloy::primitives::{keccak256, Address, Bytes, B256, U256};
use alloy::providers::Provider;
use alloy::rpc::types::TransactionRequest;
use alloy::sol_types::{SolCall, SolEvent, SolValue};
use serde::Deserialize;
use serde_json::{json, Value};

use super::service::{Addressee, BadRequest, FacilitatorService, Failures};
use crate::core::time::unix_now;
use crate::protocol::batch::{
    self, reason as why, BatchPayload, ChannelConfig, DepositAuthorization, IX402BatchSettlement, Kind, VoucherClaim,
};
use crate::protocol::exact::{parse_address, AuthorizationId, Rejection};
use crate::protocol::facilitator::{FacilitatorRequest, SettleResponse, VerifyResponse};
use crate::protocol::network::Network;
use crate::protocol::{reason, v2};
use crate::rules::channel::{self, OnChain as ChannelState};
use crate::rules::verify::recover_signer;
use crate::tools::chain::{Chain, ChainError};

/// Seconds an authorisation must still be valid for when it is checked (as for `exact`).
const VALIDITY_BUFFER: u64 = 6;

const DEPOSIT_FAILURES: Failures = Failures {
    nonce_used: reason::NONCE_ALREADY_USED,
    simulation: why::DEPOSIT_SIMULATION_FAILED,
    transaction: why::DEPOSIT_TRANSACTION_FAILED,
    fresh_after_success: false,
};
const CLAIM_FAILURES: Failures = Failures {
    nonce_used: reason::NONCE_ALREADY_USED,
    simulation: why::CLAIM_SIMULATION_FAILED,
    transaction: why::CLAIM_TRANSACTION_FAILED,
    // The same action again once it succeeded is a new one: judged afresh (nothing to claim, settle or
    // refund twice on chain), never answered with the old success.
    fresh_after_success: true,
};
const SETTLE_FAILURES: Failures = Failures {
    nonce_used: reason::NONCE_ALREADY_USED,
    simulation: why::SETTLE_SIMULATION_FAILED,
    transaction: why::SETTLE_TRANSACTION_FAILED,
    // The same action again once it succeeded is a new one: judged afresh (nothing to claim, settle or
    // refund twice on chain), never answered with the old success.
    fresh_after_success: true,
};
const REFUND_FAILURES: Failures = Failures {
    nonce_used: reason::NONCE_ALREADY_USED,
    simulation: why::REFUND_SIMULATION_FAILED,
    transaction: why::REFUND_TRANSACTION_FAILED,
    // The same action again once it succeeded is a new one: judged afresh (nothing to claim, settle or
    // refund twice on chain), never answered with the old success.
    fresh_after_success: true,
};

/// A settle refused before anything was sent.
fn refused(reason: &str, message: impl Into<String>, network: &str) -> SettleResponse {
    SettleResponse::failed(reason, message, None, network.to_owned(), String::new())
}

/// The terms of the requirement a batch-settlement payment answers.
struct Terms {
    network: Network,
    network_wire: String,
    asset: Address,
    pay_to: Address,
    receiver_authorizer: Option<Address>,
    withdraw_delay: Option<u64>,
}

/// A request this scheme can act on.
struct Request {
    terms: Terms,
    payload: Value,
}

impl FacilitatorService {
    /// `POST /verify` of a `batch-settlement` payment.
    pub(super) async fn verify_batch(&self, req: &FacilitatorRequest) -> Result<VerifyResponse, BadRequest> {
        let r = read(req)?;
        let outcome = async {
            let chain = self.batch_chain(&r.terms)?;
            let p = BatchPayload::parse(&r.payload)?;
            let state = check(chain, &r.terms, &p).await?;
            Ok::<_, Rejection>((p, state))
        };
        Ok(match outcome.await {
            Ok((p, state)) => VerifyResponse {
                is_valid: true,
                invalid_reason: None,
                invalid_message: None,
                payer: Some(p.config.payer.to_string()),
                extra: Some(state.to_json(p.voucher.channel_id)),
            },
            Err(e) => VerifyResponse::invalid(e.reason, e.message, payer_of(&r.payload)),
        })
    }

    /// `POST /settle` of a `batch-settlement` action.
    pub(super) async fn settle_batch(&self, req: &FacilitatorRequest) -> Result<SettleResponse, BadRequest> {
        let r = read(req)?;
        let network = r.terms.network_wire.clone();
        let chain = match self.batch_chain(&r.terms) {
            Ok(c) => c,
            Err(e) => return Ok(refused(e.reason, e.message, &network)),
        };
        let kind = r.payload.get("type").and_then(Value::as_str).unwrap_or_default();
        Ok(match kind {
            "deposit" => self.settle_deposit(chain, req, &r).await,
            "claim" => self.settle_claim(chain, req, &r).await,
            "settle" => self.settle_receiver(chain, req, &r).await,
            "refund" if r.payload.get("refundNonce").is_some() => self.settle_refund(chain, req, &r).await,
            _ => SettleResponse::failed(
                why::PAYLOAD_TYPE,
                format!("nothing to settle for a {kind:?} payload (deposit, claim, settle or an enriched refund)"),
                payer_of(&r.payload),
                network,
                String::new(),
            ),
        })
    }

    fn batch_chain(&self, terms: &Terms) -> Result<&Chain, Rejection> {
        self.chains.get(&terms.network.chain_id).ok_or_else(|| {
            Rejection::new(
                reason::INVALID_NETWORK,
                format!("this facilitator does not serve {}", terms.network),
            )
        })
    }

    async fn settle_deposit(&self, chain: &Chain, req: &FacilitatorRequest, r: &Request) -> SettleResponse {
        let network = &r.terms.network_wire;
        let p = match BatchPayload::parse(&r.payload) {
            Ok(p) => p,
            Err(e) => return refused(e.reason, e.message, network),
        };
        let Kind::Deposit { amount, authorization } = &p.kind else {
            return refused(why::PAYLOAD_TYPE, "not a deposit", network);
        };
        let payer = Some(p.config.payer.to_string());
        // One deposit per payer authorisation: keyed like an `exact` payment by the nonce it spends.
        let key = AuthorizationId {
            network: r.terms.network,
            asset: p.config.token,
            payer: p.config.payer,
            nonce: match authorization.as_ref() {
                DepositAuthorization::Erc3009 { salt, .. } => batch::deposit_nonce(p.voucher.channel_id, *salt),
                DepositAuthorization::Permit2 { nonce, .. } => B256::from(*nonce),
            },
        };
        let transaction = async {
            check(chain, &r.terms, &p).await.map_err(|e| (e, String::new()))?;
            Ok(Some(call(deposit_call(&p.config, *amount, authorization))))
        };
        let sent = self
            .send_once(
                chain,
                key,
                req,
                &DEPOSIT_FAILURES,
                Addressee { payer, network },
                transaction,
            )
            .await;
        if !sent.success {
            return sent;
        }
        let mut sent = sent;
        sent.amount = Some(amount.to_string());
        // The state after the deposit; if the node cannot say, the deposit still happened.
        if let Ok(state) = read_state(chain, p.voucher.channel_id).await {
            sent.extra = Some(json!({"channelState": state.to_json(p.voucher.channel_id)}));
        }
        sent
    }

    async fn settle_claim(&self, chain: &Chain, req: &FacilitatorRequest, r: &Request) -> SettleResponse {
        let network = &r.terms.network_wire;
        let failed = |m: String| refused(why::CLAIM_PAYLOAD, m, network);
        let w = match WireClaim::deserialize(&r.payload) {
            Ok(w) => w,
            Err(e) => return failed(format!("not a claim payload: {e}")),
        };
        let (claims, signature) = match (parse_claims(&w.claims), hex_bytes(&w.claim_authorizer_signature)) {
            (Ok(c), Some(s)) if !c.is_empty() => (c, s),
            (Err(e), _) => return failed(e),
            _ => {
                return refused(why::AUTHORIZER_NOT_CONFIGURED,
                    "a claim needs claims and the receiver authorizer's claimAuthorizerSignature (this facilitator holds no authorizer key)", network)
            }
        };
        let call_ = IX402BatchSettlement::claimWithSignatureCall {
            voucherClaims: claims,
            authorizerSignature: signature,
        };
        self.send_action(chain, req, r, &CLAIM_FAILURES, call_.abi_encode(), async { Ok(()) })
            .await
    }

    async fn settle_receiver(&self, chain: &Chain, req: &FacilitatorRequest, r: &Request) -> SettleResponse {
        let network = &r.terms.network_wire;
        let parse = |k: &str| r.payload.get(k).and_then(Value::as_str).and_then(parse_address);
        let (Some(receiver), Some(token)) = (parse("receiver"), parse("token")) else {
            return refused(
                why::PAYLOAD_TYPE,
                "a settle payload needs receiver and token addresses",
                network,
            );
        };
        let owed = match view(chain, IX402BatchSettlement::receiversCall { receiver, token }).await {
            Ok(s) => s,
            Err(e) => return refused(why::RPC_READ_FAILED, e.to_string(), network),
        };
        // Nothing owed refuses only a settle not sent yet: a retry of one already sent (and perhaps mined)
        // is answered from its transaction, whatever the chain says now.
        let ready = async {
            if owed.totalClaimed <= owed.totalSettled {
                return Err(Rejection::new(
                    why::NOTHING_TO_SETTLE,
                    "nothing to settle for receiver and token",
                ));
            }
            Ok(())
        };
        let data = IX402BatchSettlement::settleCall { receiver, token }.abi_encode();
        let mut sent = self.send_action(chain, req, r, &SETTLE_FAILURES, data, ready).await;
        if sent.success {
            sent.amount = logged(chain, &sent.transaction, |log| {
                IX402BatchSettlement::Settled::decode_log_data(log)
                    .ok()
                    .map(|e| e.amount)
            })
            .await
            .map(|a| a.to_string());
        }
        sent
    }

    async fn settle_refund(&self, chain: &Chain, req: &FacilitatorRequest, r: &Request) -> SettleResponse {
        let network = &r.terms.network_wire;
        let failed = |m: String| refused(why::REFUND_PAYLOAD, m, network);
        let p = match BatchPayload::parse(&r.payload) {
            Ok(p) => p,
            Err(e) => return refused(e.reason, e.message, network),
        };
        let w = match WireRefund::deserialize(&r.payload) {
            Ok(w) => w,
            Err(e) => return failed(format!("not an enriched refund: {e}")),
        };
        let claims = match parse_claims(&w.claims) {
            Ok(c) => c,
            Err(e) => return failed(e),
        };
        let (Some(nonce), Some(refund_sig)) = (
            crate::protocol::exact::parse_decimal(&w.refund_nonce),
            w.refund_authorizer_signature.as_deref().and_then(hex_bytes),
        ) else {
            return refused(why::AUTHORIZER_NOT_CONFIGURED,
                "a refund needs refundNonce and the receiver authorizer's refundAuthorizerSignature (this facilitator holds no authorizer key)", network);
        };
        let channel = p.voucher.channel_id;
        if channel != batch::channel_id(&p.config, r.terms.network.chain_id) {
            return refused(
                why::CHANNEL_ID_MISMATCH,
                "voucher.channelId is not the hash of channelConfig",
                network,
            );
        }
        let asked = match &p.kind {
            Kind::Refund { amount: Some(a) } => *a,
            _ => u128::MAX,
        };
        // Nothing left refuses only a refund not sent yet: a retry of one already sent is answered from
        // its transaction.
        let rows: Vec<u128> = claims
            .iter()
            .filter(|c| batch::channel_id(&c.voucher.channel, r.terms.network.chain_id) == channel)
            .map(|c| c.totalClaimed)
            .collect();
        let ready = async {
            let pre = read_state(chain, channel)
                .await
                .map_err(|e| Rejection::new(why::RPC_READ_FAILED, e.to_string()))?;
            // What the claims in the same transaction leave claimed, and so what is left to return.
            let claimed = rows.iter().copied().fold(pre.total_claimed, u128::max);
            if claimed > pre.balance || asked.min(pre.balance - claimed) == 0 {
                return Err(Rejection::new(why::REFUND_NO_BALANCE, "Nothing to refund"));
            }
            Ok(())
        };
        let refund = IX402BatchSettlement::refundWithSignatureCall {
            config: p.config.clone(),
            amount: asked,
            nonce,
            receiverAuthorizerSignature: refund_sig,
        }
        .abi_encode();
        let data = if claims.is_empty() {
            refund
        } else {
            let Some(claim_sig) = w.claim_authorizer_signature.as_deref().and_then(hex_bytes) else {
                return refused(
                    why::AUTHORIZER_NOT_CONFIGURED,
                    "claims in a refund need the receiver authorizer's claimAuthorizerSignature",
                    network,
                );
            };
            let claim = IX402BatchSettlement::claimWithSignatureCall {
                voucherClaims: claims,
                authorizerSignature: claim_sig,
            };
            IX402BatchSettlement::multicallCall {
                data: vec![claim.abi_encode().into(), refund.into()],
            }
            .abi_encode()
        };
        let mut sent = self.send_action(chain, req, r, &REFUND_FAILURES, data, ready).await;
        if sent.success {
            // What the transaction did, from its own log, and the channel as the chain now holds it.
            let refunded = logged(chain, &sent.transaction, |log| {
                IX402BatchSettlement::Refunded::decode_log_data(log)
                    .ok()
                    .map(|e| e.amount)
            })
            .await;
            sent.payer = Some(p.config.payer.to_string());
            sent.amount = Some(refunded.unwrap_or(0).to_string());
            if let Ok(post) = read_state(chain, channel).await {
                sent.extra = Some(json!({"channelState": post.to_json(channel)}));
            }
        }
        sent
    }

    /// A claim, settle or refund transaction: checked by `ready` and simulated only when this request has
    /// nothing in flight; a retry while it is pending is answered from its transaction.
    async fn send_action(
        &self,
        chain: &Chain,
        req: &FacilitatorRequest,
        r: &Request,
        failures: &Failures,
        data: Vec<u8>,
        ready: impl std::future::Future<Output = Result<(), Rejection>>,
    ) -> SettleResponse {
        let tx = call(data);
        // No authorisation of a payer is spent here: the request itself is what must not be sent twice.
        let key = AuthorizationId {
            network: r.terms.network,
            asset: r.terms.asset,
            payer: batch::SETTLEMENT,
            nonce: keccak256(req.encode().body),
        };
        let transaction = async {
            ready.await.map_err(|e| (e, String::new()))?;
            chain
                .provider()
                .call(tx.clone())
                .await
                .map_err(|e| (Rejection::new(failures.simulation, e.to_string()), String::new()))?;
            Ok(Some(tx))
        };
        let to = Addressee {
            payer: None,
            network: &r.terms.network_wire,
        };
        self.send_once(chain, key, req, failures, to, transaction).await
    }
}

/// The first of the settlement contract's logs in transaction `hash` that `pick` reads.
async fn logged<T>(chain: &Chain, hash: &str, pick: impl Fn(&alloy::primitives::LogData) -> Option<T>) -> Option<T> {
    let hash: alloy::primitives::TxHash = hash.parse().ok()?;
    let receipt = chain.provider().get_transaction_receipt(hash).await.ok()??;
    receipt
        .inner
        .logs()
        .iter()
        .filter(|l| l.address() == batch::SETTLEMENT)
        .find_map(|l| pick(l.data()))
}

/// Every check of a deposit, voucher or refund, local first, then against the chain; the channel's state
/// (before a deposit) when it passes.
async fn check(chain: &Chain, terms: &Terms, p: &BatchPayload) -> Result<ChannelState, Rejection> {
    channel::check_terms(
        p,
        &channel::Terms {
            chain_id: terms.network.chain_id,
            pay_to: terms.pay_to,
            asset: terms.asset,
            receiver_authorizer: terms.receiver_authorizer,
            withdraw_delay: terms.withdraw_delay,
        },
    )?;
    check_voucher_signature(chain, terms.network.chain_id, p).await?;
    let channel = p.voucher.channel_id;
    let state = read_state(chain, channel)
        .await
        .map_err(|e| Rejection::new(why::RPC_READ_FAILED, e.to_string()))?;
    let max = p.voucher.max_claimable;
    let (balance, at_least_claimed) = match &p.kind {
        Kind::Voucher => (state.balance, true),
        Kind::Refund { .. } => (state.balance, false),
        Kind::Deposit { amount, authorization } => {
            check_deposit(chain, terms, p, *amount, authorization).await?;
            (state.balance.saturating_add(*amount), true)
        }
    };
    if balance == 0 {
        return Err(Rejection::new(
            why::CHANNEL_NOT_FOUND,
            format!("channel {channel} holds nothing"),
        ));
    }
    if max > balance {
        return Err(Rejection::new(
            why::CUMULATIVE_EXCEEDS_BALANCE,
            format!("the voucher's {max} exceeds the channel's balance {balance}"),
        ));
    }
    let below = if at_least_claimed {
        max <= state.total_claimed
    } else {
        max < state.total_claimed
    };
    if below {
        return Err(Rejection::new(
            why::CUMULATIVE_BELOW_CLAIMED,
            format!(
                "the voucher's {max} is not above the {} already claimed",
                state.total_claimed
            ),
        ));
    }
    if let Kind::Deposit { amount, authorization } = &p.kind {
        let tx = call(deposit_call(&p.config, *amount, authorization));
        chain
            .provider()
            .call(tx)
            .await
            .map_err(|e| Rejection::new(why::DEPOSIT_SIMULATION_FAILED, e.to_string()))?;
    }
    Ok(state)
}

/// The voucher's signature: by the payer authorizer's key when there is one (what the contract requires
/// then), else by the payer, an EOA by key or a contract wallet by ERC-1271.
async fn check_voucher_signature(chain: &Chain, chain_id: u64, p: &BatchPayload) -> Result<(), Rejection> {
    let digest = batch::voucher_digest(p.voucher.channel_id, p.voucher.max_claimable, chain_id);
    let sig = p.voucher.signature.as_ref();
    let signer = p.config.payerAuthorizer;
    if signer != Address::ZERO {
        let got = recover_signer(&digest, sig, why::VOUCHER_SIGNATURE)?;
        return if got == signer {
            Ok(())
        } else {
            Err(Rejection::new(
                why::VOUCHER_SIGNATURE,
                format!("the voucher is signed by {got}, not payerAuthorizer {signer}"),
            ))
        };
    }
    let payer = p.config.payer;
    let contract = chain
        .has_code(payer)
        .await
        .map_err(|e| Rejection::new(why::RPC_READ_FAILED, e.to_string()))?;
    let valid = if contract {
        chain
            .is_valid_signature(payer, digest, p.voucher.signature.clone())
            .await
            .map_err(|e| Rejection::new(why::RPC_READ_FAILED, e.to_string()))?
    } else {
        recover_signer(&digest, sig, why::VOUCHER_SIGNATURE)? == payer
    };
    valid.then_some(()).ok_or_else(|| {
        Rejection::new(
            why::VOUCHER_SIGNATURE,
            format!("the voucher is not the payer {payer}'s"),
        )
    })
}

/// A deposit's authorisation: its window, what it names, and that the payer holds the amount.
async fn check_deposit(
    chain: &Chain,
    terms: &Terms,
    p: &BatchPayload,
    amount: u128,
    authorization: &DepositAuthorization,
) -> Result<(), Rejection> {
    let now = U256::from(unix_now());
    match authorization {
        DepositAuthorization::Erc3009 {
            valid_after,
            valid_before,
            ..
        } => {
            if *valid_before < now + U256::from(VALIDITY_BUFFER) {
                return Err(Rejection::new(
                    why::VALID_BEFORE,
                    "the deposit authorization has expired",
                ));
            }
            if *valid_after > now {
                return Err(Rejection::new(
                    why::VALID_AFTER,
                    "the deposit authorization is not valid yet",
                ));
            }
        }
        DepositAuthorization::Permit2 {
            from,
            token,
            amount: permitted,
            spender,
            deadline,
            channel_id,
            ..
        } => {
            if *from != p.config.payer {
                return Err(Rejection::new(
                    why::PERMIT2_INVALID_SIGNATURE,
                    "permit2Authorization.from is not the payer",
                ));
            }
            if *spender != batch::PERMIT2_COLLECTOR {
                return Err(Rejection::new(
                    why::PERMIT2_INVALID_SPENDER,
                    format!("spender {spender} is not the Permit2 collector"),
                ));
            }
            if *token != terms.asset {
                return Err(Rejection::new(
                    why::TOKEN_MISMATCH,
                    format!("permitted token {token} is not the asset"),
                ));
            }
            if *permitted != U256::from(amount) {
                return Err(Rejection::new(
                    why::PERMIT2_AMOUNT_MISMATCH,
                    "permitted.amount differs from deposit.amount",
                ));
            }
            if *channel_id != p.voucher.channel_id {
                return Err(Rejection::new(
                    why::CHANNEL_ID_MISMATCH,
                    "the witness names another channel",
                ));
            }
            if *deadline < now + U256::from(VALIDITY_BUFFER) {
                return Err(Rejection::new(
                    why::PERMIT2_DEADLINE_EXPIRED,
                    "the Permit2 deadline has passed",
                ));
            }
            let allowed = chain
                .allowance(p.config.token, p.config.payer, crate::protocol::permit2::PERMIT2)
                .await
                .map_err(|e| Rejection::new(why::RPC_READ_FAILED, e.to_string()))?;
            if allowed < U256::from(amount) {
                return Err(Rejection::new(
                    why::PERMIT2_ALLOWANCE_REQUIRED,
                    "the payer has not approved Permit2 for the deposit",
                ));
            }
        }
    }
    let held = chain
        .balance_of(p.config.token, p.config.payer)
        .await
        .map_err(|e| Rejection::new(why::RPC_READ_FAILED, e.to_string()))?;
    if held < U256::from(amount) {
        return Err(Rejection::new(
            why::INSUFFICIENT_BALANCE,
            format!("the payer holds {held}, less than the deposit {amount}"),
        ));
    }
    Ok(())
}

/// The `deposit` call for a payload, through the collector its authorisation is for.
fn deposit_call(config: &ChannelConfig, amount: u128, authorization: &DepositAuthorization) -> Vec<u8> {
    let (collector, data) = match authorization {
        DepositAuthorization::Erc3009 {
            valid_after,
            valid_before,
            salt,
            signature,
        } => (
            batch::ERC3009_COLLECTOR,
            (
                *valid_after,
                *valid_before,
                U256::from_be_bytes(salt.0),
                // A counterfactual wallet's wrapper is not what the token checks (the wallet is deployed
                // first, or the deposit fails); a malformed one is passed as is and fails there.
                crate::protocol::erc6492::inner(signature).unwrap_or_else(|| signature.clone()),
            )
                .abi_encode_params(),
        ),
        DepositAuthorization::Permit2 {
            nonce,
            deadline,
            signature,
            ..
        } => (
            batch::PERMIT2_COLLECTOR,
            (*nonce, *deadline, signature.clone(), Bytes::new()).abi_encode_params(),
        ),
    };
    IX402BatchSettlement::depositCall {
        config: config.clone(),
        amount,
        collector,
        collectorData: data.into(),
    }
    .abi_encode()
}

fn call(data: Vec<u8>) -> TransactionRequest {
    TransactionRequest::default().to(batch::SETTLEMENT).input(data.into())
}

/// A view of the batch-settlement contract.
async fn view<C: SolCall>(chain: &Chain, c: C) -> Result<C::Return, ChainError> {
    let out = chain
        .provider()
        .call(call(c.abi_encode()))
        .await
        .map_err(|e| ChainError::Call(e.to_string()))?;
    C::abi_decode_returns(&out).map_err(|e| ChainError::Call(e.to_string()))
}

/// The channel's balance, claims, pending withdrawal and refund nonce.
pub async fn read_state(chain: &Chain, channel: B256) -> Result<ChannelState, ChainError> {
    let c = view(chain, IX402BatchSettlement::channelsCall { channelId: channel }).await?;
    let w = view(
        chain,
        IX402BatchSettlement::pendingWithdrawalsCall { channelId: channel },
    )
    .await?;
    let nonce = view(chain, IX402BatchSettlement::refundNonceCall { channelId: channel }).await?;
    Ok(ChannelState {
        balance: c.balance,
        total_claimed: c.totalClaimed,
        withdraw_requested_at: w.initiatedAt.to::<u64>(),
        refund_nonce: nonce,
    })
}

/// The requirement and payload of a batch-settlement request; unreadable requirements are a 400.
fn read(req: &FacilitatorRequest) -> Result<Request, BadRequest> {
    let r = v2::PaymentRequirements::deserialize(&req.payment_requirements)
        .map_err(|e| BadRequest(format!("paymentRequirements is not a v2 PaymentRequirements: {e}")))?;
    let bad = |what: &str| BadRequest(format!("paymentRequirements.{what} is not valid"));
    let extra = r.extra.clone().unwrap_or_default();
    let terms = Terms {
        network: Network::parse(&r.network).ok_or_else(|| bad("network"))?,
        network_wire: r.network.clone(),
        asset: parse_address(&r.asset).ok_or_else(|| bad("asset"))?,
        pay_to: parse_address(&r.pay_to).ok_or_else(|| bad("payTo"))?,
        receiver_authorizer: extra
            .get("receiverAuthorizer")
            .and_then(Value::as_str)
            .and_then(parse_address),
        withdraw_delay: extra.get("withdrawDelay").and_then(Value::as_u64),
    };
    let payload = req.payment_payload.get("payload").cloned().unwrap_or(Value::Null);
    Ok(Request { terms, payload })
}

/// The payer a payload names, for a refusal's `payer`.
fn payer_of(payload: &Value) -> Option<String> {
    payload
        .pointer("/channelConfig/payer")
        .and_then(Value::as_str)
        .map(str::to_owned)
}

fn hex_bytes(s: &str) -> Option<Bytes> {
    s.strip_prefix("0x")
        .and_then(|h| alloy::hex::decode(h).ok())
        .map(Bytes::from)
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct WireClaim {
    claims: Vec<WireClaimRow>,
    #[serde(default)]
    claim_authorizer_signature: String,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct WireRefund {
    refund_nonce: String,
    #[serde(default)]
    claims: Vec<WireClaimRow>,
    refund_authorizer_signature: Option<String>,
    claim_authorizer_signature: Option<String>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct WireClaimRow {
    voucher: WireClaimVoucher,
    signature: String,
    total_claimed: String,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct WireClaimVoucher {
    channel: Value,
    max_claimable_amount: String,
}

/// Claim rows as the contract takes them; each config parsed as in a payment payload.
fn parse_claims(rows: &[WireClaimRow]) -> Result<Vec<VoucherClaim>, String> {
    rows.iter()
        .enumerate()
        .map(|(i, row)| {
            let amount = |s: &str, what: &str| {
                crate::protocol::exact::parse_decimal(s)
                    .and_then(|v| u128::try_from(v).ok())
                    .ok_or_else(|| format!("claims[{i}].{what} is not a decimal integer below 2^128"))
            };
            let channel = batch::parse_config(&row.voucher.channel)
                .map_err(|e| format!("claims[{i}].voucher.channel: {}", e.message))?;
            let signature =
                hex_bytes(&row.signature).ok_or_else(|| format!("claims[{i}].signature is not 0x-prefixed hex"))?;
            Ok(VoucherClaim {
                voucher: batch::ChannelVoucher {
                    channel,
                    maxClaimableAmount: amount(&row.voucher.max_claimable_amount, "voucher.maxClaimableAmount")?,
                },
                signature,
                totalClaimed: amount(&row.total_claimed, "totalClaimed")?,
            })
        })
        .collect()
}
