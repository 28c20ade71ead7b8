//! The self-hosted facilitator's logic, free of HTTP: parse a `/verify` or `/settle` request, run the local
//! checks, then the chain checks, then settle with exactly one transaction per authorization.
//!
//! Longer than most modules on purpose: settling, reconciling a pending transaction and concluding it are
//! one state machine per authorization, and its rules read best side by side.

use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use alloy::primitives::{Address, TxHash, U256};
use alloy::rpc::types::TransactionRequest;
use tokio::sync::Mutex;

use crate::core::time::unix_now;
use crate::protocol::batch;
use crate::protocol::erc6492::{self, Wrapped};
use crate::protocol::exact::{signing_hash, AuthorizationId, ExactPayload, Rejection, Requirement};
use crate::protocol::facilitator::{
    FacilitatorRequest, SettleResponse, SupportedKind, SupportedResponse, VerifyResponse,
};
use crate::protocol::network::Network;
use crate::protocol::payment::Payment;
use crate::protocol::permit2::{Permit2Payload, PERMIT2};
use crate::protocol::{assets, reason, v1, v2, Version, SCHEME_EXACT, SCHEME_UPTO};
use crate::rules::verify::{self, Proof};
use crate::tools::chain::{Chain, ChainError, TokenInfo, TxOutcome};

/// How long settled-or-pending authorizations are remembered; longer than any sane `maxTimeoutSeconds`.
const SETTLEMENT_MEMORY: Duration = Duration::from_secs(24 * 3600);

/// A request the facilitator cannot even read: answered with HTTP 400.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct BadRequest(pub String);

/// A readable request, parsed into typed values.
struct Parsed {
    requirement: Requirement,
    payment: Payment,
    /// The network spelled as the request spelled it, echoed in the answer.
    network_wire: String,
}

/// A settlement transaction sent: not concluded yet, or succeeded.
#[derive(Debug, Clone, Copy)]
struct SentSettlement {
    hash: TxHash,
    nonce: u64,
    /// SHA-256 of the `/settle` request that sent it.
    digest: [u8; 32],
    /// Mined and succeeded: the same request again gets the same success, not a fresh judgement that would
    /// find the nonce used and call it a failure.
    settled: bool,
}

/// Whom a settlement answer names: the payer (if any) and the network as the request spelled it.
pub(super) struct Addressee<'a> {
    pub payer: Option<String>,
    pub network: &'a str,
}

/// A scheme's reasons for the ways a settlement transaction fails.
pub(super) struct Failures {
    /// Another request already spends this authorization.
    pub nonce_used: &'static str,
    /// The call would revert (found before anything was sent).
    pub simulation: &'static str,
    /// Sent and reverted or dropped, or refused by the node.
    pub transaction: &'static str,
    /// Whether the same request after a success is judged again (an action that spends no payer's
    /// authorization) instead of being answered with that success (a payment, spent once).
    pub fresh_after_success: bool,
}

const EXACT_FAILURES: Failures = Failures {
    nonce_used: reason::NONCE_ALREADY_USED,
    simulation: reason::SIMULATION_FAILED,
    transaction: reason::TRANSACTION_FAILED,
    fresh_after_success: false,
};

/// Counters the facilitator exposes on `/metrics` (tests use them to count calls).
#[derive(Debug, Default)]
pub struct Counters {
    pub verify_requests: AtomicU64,
    pub settle_requests: AtomicU64,
    pub transactions_sent: AtomicU64,
    pub supported_requests: AtomicU64,
}

/// The self-hosted facilitator.
pub struct FacilitatorService {
    pub(super) chains: HashMap<u64, Chain>,
    /// EIP-712 identities of tokens outside the built-in table, read from the token once.
    token_domains: moka::future::Cache<(u64, Address), TokenInfo>,
    /// Per authorization: the sent transaction whose outcome is not known yet, or that succeeded. The mutex
    /// makes concurrent settles of one payload send one transaction.
    settlements: moka::future::Cache<AuthorizationId, Arc<Mutex<Option<SentSettlement>>>>,
    receipt_timeout: Duration,
    /// Factories a counterfactual (EIP-6492) payer's wallet may be deployed from before settling.
    factories: Vec<Address>,
    /// Public call counters.
    pub counters: Counters,
}

impl FacilitatorService {
    /// A facilitator serving `chains`, waiting up to `receipt_timeout` for a settlement's receipt.
    pub fn new(chains: Vec<Chain>, receipt_timeout: Duration) -> Self {
        FacilitatorService {
            chains: chains.into_iter().map(|c| (c.chain_id(), c)).collect(),
            token_domains: moka::future::Cache::new(1024),
            // LRU: TinyLFU admission could refuse to remember a pending transaction.
            settlements: moka::future::Cache::builder()
                .eviction_policy(moka::policy::EvictionPolicy::lru())
                .max_capacity(100_000)
                .time_to_live(SETTLEMENT_MEMORY)
                .build(),
            receipt_timeout,
            factories: Vec::new(),
            counters: Counters::default(),
        }
    }

    /// Lets counterfactual (EIP-6492) payers whose wrapper names one of `factories` be deployed, at this
    /// facilitator's cost, before their payment is settled.
    pub fn deploying_from(mut self, factories: Vec<Address>) -> Self {
        self.factories = factories;
        self
    }

    /// `GET /supported`: v1 and v2 `exact` for each chain; v2 `batch-settlement` and `upto` where it has a
    /// key (its address is the one `upto` payers name); and the settling address.
    pub fn supported(&self) -> SupportedResponse {
        let mut ids: Vec<u64> = self.chains.keys().copied().collect();
        ids.sort_unstable();
        let mut kinds = Vec::new();
        for id in &ids {
            let net = Network::new(*id);
            // v1 uses the network's v1 name, or CAIP-2 where it has none (this facilitator reads both).
            for version in [Version::V1, Version::V2] {
                kinds.push(SupportedKind {
                    x402_version: version,
                    scheme: SCHEME_EXACT.into(),
                    network: net.wire_name(version),
                    extra: None,
                });
            }
            if let Some(sender) = self.chains.get(id).and_then(Chain::sender) {
                // No receiver-authorizer key here: resource servers sign claims and refunds themselves.
                kinds.push(SupportedKind {
                    x402_version: Version::V2,
                    scheme: batch::SCHEME.into(),
                    network: net.caip2(),
                    extra: None,
                });
                kinds.push(SupportedKind {
                    x402_version: Version::V2,
                    scheme: SCHEME_UPTO.into(),
                    network: net.caip2(),
                    extra: Some(serde_json::json!({"facilitatorAddress": sender.to_string()})),
                });
            }
        }
        let signers: Vec<String> = self
            .chains
            .values()
            .filter_map(Chain::sender)
            .map(|a| a.to_string())
            .collect::<std::collections::BTreeSet<_>>()
            .into_iter()
            .collect();
        SupportedResponse {
            kinds,
            extensions: Vec::new(),
            signers: BTreeMap::from([("eip155:*".to_owned(), signers)]),
        }
    }

    fn parse(&self, req: &FacilitatorRequest) -> Result<Result<Parsed, Rejection>, BadRequest> {
        fn decode<T: serde::de::DeserializeOwned>(v: &serde_json::Value, what: &str) -> Result<T, String> {
            T::deserialize(v).map_err(|e| format!("{what}: {e}"))
        }
        // Unreadable requirements are the caller's bug (400); an unreadable payload is the payer's (invalid).
        let parts = match req.x402_version {
            Version::V2 => {
                let r: v2::PaymentRequirements = decode(
                    &req.payment_requirements,
                    "paymentRequirements is not a v2 PaymentRequirements",
                )
                .map_err(BadRequest)?;
                decode::<v2::PaymentPayload>(&req.payment_payload, "paymentPayload is not a v2 PaymentPayload").map(
                    |p| {
                        (
                            Requirement::from_v2(&r),
                            r.network,
                            p.accepted.scheme,
                            p.accepted.network,
                            p.payload,
                        )
                    },
                )
            }
            Version::V1 => {
                let r: v1::PaymentRequirements = decode(
                    &req.payment_requirements,
                    "paymentRequirements is not a v1 PaymentRequirements",
                )
                .map_err(BadRequest)?;
                decode::<v1::PaymentPayload>(&req.payment_payload, "paymentPayload is not a v1 PaymentPayload")
                    .map(|p| (Requirement::from_v1(&r), r.network, p.scheme, p.network, p.payload))
            }
        };
        let (requirement, network_wire, payload_scheme, payload_network, payload) = match parts {
            Ok(parts) => parts,
            Err(m) => return Ok(Err(Rejection::new(reason::INVALID_PAYLOAD, m))),
        };
        Ok((|| {
            let requirement = requirement?;
            let scheme = requirement.scheme.name();
            if payload_scheme != scheme {
                let why = if scheme == SCHEME_EXACT {
                    reason::INVALID_SCHEME
                } else {
                    reason::UPTO_INVALID_SCHEME
                };
                return Err(Rejection::new(
                    why,
                    format!("payload scheme {payload_scheme:?} is not the requirement's {scheme:?}"),
                ));
            }
            if Network::parse(&payload_network) != Some(requirement.network) {
                return Err(Rejection::new(
                    reason::NETWORK_MISMATCH,
                    format!("payload network {payload_network:?} differs from the requirement's {network_wire:?}"),
                ));
            }
            if !self.chains.contains_key(&requirement.network.chain_id) {
                return Err(Rejection::new(
                    reason::INVALID_NETWORK,
                    format!("this facilitator does not serve {}", requirement.network),
                ));
            }
            let payment = Payment::parse(requirement.transfer, &payload)?;
            Ok(Parsed {
                requirement,
                payment,
                network_wire: network_wire.clone(),
            })
        })())
    }

    fn chain(&self, network: Network) -> Result<&Chain, Rejection> {
        self.chains.get(&network.chain_id).ok_or_else(|| {
            Rejection::new(
                reason::INVALID_NETWORK,
                format!("this facilitator does not serve {network}"),
            )
        })
    }

    async fn token_info(&self, chain: &Chain, asset: Address) -> Result<TokenInfo, ChainError> {
        if let Some(a) = assets::builtin(chain.chain_id(), asset) {
            return Ok(TokenInfo {
                name: a.eip712_name,
                version: a.eip712_version,
            });
        }
        let key = (chain.chain_id(), asset);
        if let Some(info) = self.token_domains.get(&key).await {
            return Ok(info);
        }
        let info = chain.token_info(asset).await?;
        self.token_domains.insert(key, info.clone()).await;
        Ok(info)
    }

    /// Every check of x402-notes §10.1 (EIP-3009) or §9.1 (Permit2), local first, then chain state.
    /// `Ok(Some(wrapper))`: a counterfactual payer, whose wallet the wrapper deploys before settling.
    async fn check(&self, p: &Parsed, simulate: bool) -> Result<Option<Wrapped>, Rejection> {
        let req = &p.requirement;
        let verified = verify::check_payment(req, &p.payment, unix_now())?;
        let payer = verified.payer;
        let chain = self.chain(req.network)?;
        // Only the named facilitator can settle an `upto` payment: one naming another is not ours to take.
        if let Some(named) = req.settler().filter(|&a| Some(a) != chain.sender()) {
            return Err(Rejection::new(
                reason::UPTO_FACILITATOR_MISMATCH,
                format!(
                    "the payment names facilitator {named}; this one settles from {}",
                    chain.sender().map_or_else(|| "no key".to_owned(), |a| a.to_string())
                ),
            ));
        }
        let mut deploy = None;
        let simulation_failed = match &p.payment {
            Payment::Eip3009(e) => {
                if verified.proof == Proof::Contract {
                    deploy = self.check_wallet(chain, req, e).await?;
                }
                self.check_eip3009(chain, req, e).await?;
                reason::SIMULATION_FAILED
            }
            Payment::Permit2(permit) => {
                check_permit2(chain, req, payer, permit).await?;
                reason::PERMIT2_SIMULATION_FAILED
            }
        };
        // A wallet that does not exist yet cannot be simulated paying (it is deployed first, at settle).
        if simulate && deploy.is_none() {
            chain
                .simulate(req.asset, &p.payment, req.amount)
                .await
                .map_err(|e| Rejection::new(simulation_failed, e.to_string()))?;
        }
        Ok(deploy)
    }

    /// A contract wallet's signature: a deployed wallet must accept it (ERC-1271 `isValidSignature` over
    /// the authorization's digest); one not deployed yet must come wrapped (EIP-6492) with a factory this
    /// facilitator deploys from, and is judged once deployed. `Ok(Some(wrapper))` for the latter.
    async fn check_wallet(
        &self,
        chain: &Chain,
        req: &Requirement,
        payment: &ExactPayload,
    ) -> Result<Option<Wrapped>, Rejection> {
        let from = payment.authorization.from;
        let wrapped = erc6492::unwrap(&payment.signature).and_then(Result::ok);
        let deployed = chain
            .has_code(from)
            .await
            .map_err(|e| Rejection::new(reason::UNEXPECTED_VERIFY_ERROR, e.to_string()))?;
        if deployed {
            self.wallet_accepts(chain, req, payment).await?;
            return Ok(None);
        }
        match wrapped {
            Some(w) if self.factories.contains(&w.factory) => Ok(Some(w)),
            Some(w) => Err(Rejection::new(
                reason::EIP6492_FACTORY_NOT_ALLOWED,
                format!(
                    "the payer's wallet is not deployed, and this facilitator does not deploy from factory {}",
                    w.factory
                ),
            )),
            None => Err(Rejection::new(
                reason::UNDEPLOYED_SMART_WALLET,
                format!("no contract at {from}, and the signature carries no EIP-6492 deployment"),
            )),
        }
    }

    /// The deployed wallet `from` accepts the payment's (inner) signature.
    async fn wallet_accepts(&self, chain: &Chain, req: &Requirement, payment: &ExactPayload) -> Result<(), Rejection> {
        let auth = &payment.authorization;
        // `verify::check` already refused a malformed wrapper.
        let inner = erc6492::inner(&payment.signature).unwrap_or_else(|| payment.signature.clone());
        let digest = signing_hash(&req.domain().separator(), auth);
        match chain.is_valid_signature(auth.from, digest, inner).await {
            Ok(true) => Ok(()),
            Ok(false) => Err(Rejection::new(
                reason::INVALID_SIGNATURE,
                format!("the wallet at {} does not accept this signature (ERC-1271)", auth.from),
            )),
            Err(e) => Err(Rejection::new(reason::UNEXPECTED_VERIFY_ERROR, e.to_string())),
        }
    }

    /// Deploys a counterfactual payer's wallet with its EIP-6492 wrapper's factory call, then asks it
    /// whether it made the signature. Nothing of the payer's moves here.
    async fn deploy_wallet(&self, chain: &Chain, p: &Parsed, w: &Wrapped) -> Result<(), Rejection> {
        let failed = |m: String| Rejection::new(reason::SMART_WALLET_DEPLOYMENT_FAILED, m);
        let Payment::Eip3009(payment) = &p.payment else {
            return Err(failed("only an EIP-3009 payer is deployed".into()));
        };
        let tx = alloy::rpc::types::TransactionRequest::default()
            .to(w.factory)
            .input(w.calldata.clone().into());
        let hash = chain.send(tx).await.map_err(|e| failed(e.to_string()))?;
        // Counted once sent, whatever its receipt says: gas was spent either way.
        self.counters.transactions_sent.fetch_add(1, Ordering::Relaxed);
        match chain.wait(hash, self.receipt_timeout).await {
            Ok(TxOutcome::Succeeded) => {}
            Ok(other) => return Err(failed(format!("the factory call {hash} did not succeed: {other:?}"))),
            Err(e) => return Err(failed(format!("the factory call {hash}: {e}"))),
        }
        tracing::info!(tx = %hash, wallet = %payment.authorization.from, factory = %w.factory, "payer's wallet deployed (EIP-6492)");
        let deployed = chain.has_code(payment.authorization.from).await.unwrap_or(false);
        if !deployed {
            return Err(failed(format!(
                "the factory call {hash} succeeded but left no contract at {}",
                payment.authorization.from
            )));
        }
        self.wallet_accepts(chain, &p.requirement, payment).await
    }

    /// The chain checks of an EIP-3009 payment: the token's domain, the balance, the nonce.
    async fn check_eip3009(&self, chain: &Chain, req: &Requirement, payment: &ExactPayload) -> Result<(), Rejection> {
        let unexpected = |e: ChainError| Rejection::new(reason::UNEXPECTED_VERIFY_ERROR, e.to_string());
        let info = self.token_info(chain, req.asset).await.map_err(|e| {
            Rejection::new(
                "invalid_exact_evm_eip3009_not_supported",
                format!("cannot read the token at {}: {e}", req.asset),
            )
        })?;
        if info.name != req.eip712_name {
            return Err(Rejection::new(
                reason::TOKEN_NAME_MISMATCH,
                format!("extra.name is {:?}, the token's is {:?}", req.eip712_name, info.name),
            ));
        }
        if info.version != req.eip712_version {
            return Err(Rejection::new(
                reason::TOKEN_VERSION_MISMATCH,
                format!(
                    "extra.version is {:?}, the token's is {:?}",
                    req.eip712_version, info.version
                ),
            ));
        }
        let auth = &payment.authorization;
        let balance = chain.balance_of(req.asset, auth.from).await.map_err(unexpected)?;
        if balance < auth.value {
            return Err(Rejection::new(
                reason::INSUFFICIENT_BALANCE,
                format!("payer holds {balance}, needs {}", auth.value),
            ));
        }
        if chain
            .authorization_used(req.asset, auth.from, auth.nonce)
            .await
            .map_err(unexpected)?
        {
            return Err(Rejection::new(
                reason::NONCE_ALREADY_USED,
                format!("nonce {} of {} is already used or cancelled", auth.nonce, auth.from),
            ));
        }
        Ok(())
    }

    /// `POST /verify`.
    pub async fn verify(&self, req: &FacilitatorRequest) -> Result<VerifyResponse, BadRequest> {
        self.counters.verify_requests.fetch_add(1, Ordering::Relaxed);
        if is_batch(req) {
            return self.verify_batch(req).await;
        }
        let parsed = match self.parse(req)? {
            Ok(p) => p,
            Err(r) => return Ok(VerifyResponse::invalid(r.reason, r.message, claimed_payer(req))),
        };
        let payer = Some(parsed.payment.payer().to_string());
        Ok(match self.check(&parsed, true).await {
            Ok(_) => VerifyResponse {
                is_valid: true,
                invalid_reason: None,
                invalid_message: None,
                payer,
                extra: None,
            },
            Err(r) => VerifyResponse::invalid(r.reason, r.message, payer),
        })
    }

    /// `POST /settle`: re-verify, send, wait for the receipt. A payload whose transaction is still pending
    /// is reconciled against that transaction, never sent twice.
    pub async fn settle(&self, req: &FacilitatorRequest) -> Result<SettleResponse, BadRequest> {
        self.counters.settle_requests.fetch_add(1, Ordering::Relaxed);
        if is_batch(req) {
            return self.settle_batch(req).await;
        }
        let mut parsed = match self.parse(req)? {
            Ok(p) => p,
            Err(r) => {
                let network = req
                    .payment_requirements
                    .get("network")
                    .and_then(|n| n.as_str())
                    .unwrap_or_default()
                    .to_owned();
                return Ok(SettleResponse::failed(
                    r.reason,
                    r.message,
                    claimed_payer(req),
                    network,
                    String::new(),
                ));
            }
        };
        let payer = Some(parsed.payment.payer().to_string());
        let failed = |reason: &str, message: String, tx: String| {
            SettleResponse::failed(reason, message, payer.clone(), parsed.network_wire.clone(), tx)
        };
        // `upto`: the requirement's amount is now the charge; the payment is checked against the ceiling
        // it signed, and at most that is moved.
        let charge = parsed.requirement.settler().map(|_| parsed.requirement.amount);
        if let Some(c) = charge {
            let ceiling = parsed.payment.amount();
            if c > ceiling {
                return Ok(failed(
                    reason::UPTO_SETTLEMENT_EXCEEDS_AMOUNT,
                    format!("asked to settle {c}, above the {ceiling} the payer signed"),
                    String::new(),
                ));
            }
            parsed.requirement.amount = ceiling;
        }
        let amount = charge.unwrap_or(parsed.requirement.amount);
        let payment = &parsed.payment;
        let chain = match self.chain(parsed.requirement.network) {
            Ok(c) => c,
            Err(r) => return Ok(failed(r.reason, r.message, String::new())),
        };
        let key = payment.id(parsed.requirement.network, parsed.requirement.asset);
        let transaction = async {
            // Reference facilitators skip the simulation here; the balance and nonce checks still run, and
            // gas estimation simulates the call anyway.
            let deploy = self.check(&parsed, false).await.map_err(|r| (r, String::new()))?;
            if let Some(w) = &deploy {
                self.deploy_wallet(chain, &parsed, w)
                    .await
                    .map_err(|r| (r, String::new()))?;
            }
            if charge == Some(U256::ZERO) {
                // Nothing to move: no transaction (the proxy refuses zero), and the answer says so.
                return Ok(None);
            }
            chain
                .settlement_call(parsed.requirement.asset, payment, amount)
                .map(Some)
                .map_err(|e| (Rejection::new(reason::SIMULATION_FAILED, e.to_string()), String::new()))
        };
        let sent = self
            .send_once(
                chain,
                key,
                req,
                &EXACT_FAILURES,
                Addressee {
                    payer: payer.clone(),
                    network: &parsed.network_wire,
                },
                transaction,
            )
            .await;
        if sent.success {
            tracing::info!(tx = %sent.transaction, payer = %payment.payer(), to = %payment.payee(), value = %amount, network = %parsed.requirement.network, "settlement concluded");
        }
        Ok(sent.charged(charge))
    }

    /// Sends the transaction `transaction` builds at most once per `key` (the authorization it spends),
    /// whatever happens to this request: a retry of the same request finds the transaction already sent
    /// and is answered from its outcome; another request spending the same key is refused. `transaction`
    /// runs under the key's lock; `Ok(None)` settles with nothing to send, `Err` refuses (with the
    /// transaction it names, if any). `failures` names the scheme's reasons.
    pub(super) async fn send_once(
        &self,
        chain: &Chain,
        key: AuthorizationId,
        req: &FacilitatorRequest,
        failures: &Failures,
        to: Addressee<'_>,
        transaction: impl std::future::Future<Output = Result<Option<TransactionRequest>, (Rejection, String)>>,
    ) -> SettleResponse {
        let Addressee { payer, network } = to;
        let failed = |reason: &str, message: String, tx: String| {
            SettleResponse::failed(reason, message, payer.clone(), network.to_owned(), tx)
        };
        // The whole request, so a different payload reusing this authorization's nonce is told apart.
        let digest = req.encode().digest;
        let slot = self
            .settlements
            .get_with(key, async { Arc::new(Mutex::new(None)) })
            .await;
        let mut pending = slot.lock().await;

        if pending.is_some_and(|sent| sent.settled && failures.fresh_after_success) {
            *pending = None;
        }
        if let Some(sent) = *pending {
            if sent.digest != digest {
                return failed(
                    failures.nonce_used,
                    format!(
                        "another payment with this nonce {} in {}",
                        if sent.settled {
                            "was settled"
                        } else {
                            "is being settled"
                        },
                        sent.hash
                    ),
                    String::new(),
                );
            }
            if sent.settled {
                return SettleResponse::settled(payer, network.to_owned(), sent.hash.to_string());
            }
            let outcome = self.outcome(chain, &sent).await;
            return Self::conclude(&mut pending, outcome, sent.hash, failures, payer, network);
        }
        let tx = match transaction.await {
            Ok(Some(tx)) => tx,
            Ok(None) => return SettleResponse::settled(payer, network.to_owned(), String::new()),
            Err((r, tx)) => return failed(r.reason, r.message, tx),
        };
        let prepared = match chain.prepare(tx).await {
            Ok(p) => p,
            // Gas estimation simulates the call: nothing was sent, and the answer must say so (a failure
            // that names no pre-broadcast reason leaves a resource server in doubt).
            Err(e) => return failed(failures.simulation, e.to_string(), String::new()),
        };
        let sent = SentSettlement {
            hash: prepared.hash,
            nonce: prepared.nonce,
            digest,
            settled: false,
        };
        // Recorded before it leaves: whatever happens to this request now, a retry finds this transaction.
        *pending = Some(sent);
        match prepared.broadcast().await {
            Ok(_) => {}
            Err(ChainError::Unknown { message, .. }) => {
                self.counters.transactions_sent.fetch_add(1, Ordering::Relaxed);
                tracing::warn!(tx = %sent.hash, error = %message, "transaction sent, answer lost");
                return failed(
                    reason::SETTLEMENT_PENDING,
                    format!("sent, but the node's answer was lost ({message}); retry settle with the same payload"),
                    sent.hash.to_string(),
                );
            }
            Err(e) => {
                *pending = None;
                return failed(failures.transaction, e.to_string(), String::new());
            }
        }
        self.counters.transactions_sent.fetch_add(1, Ordering::Relaxed);
        tracing::info!(tx = %sent.hash, network, "transaction sent");
        let outcome = chain.wait(sent.hash, self.receipt_timeout).await;
        Self::conclude(&mut pending, outcome, sent.hash, failures, payer, network)
    }

    /// The outcome of a sent settlement, noticing one the chain dropped.
    async fn outcome(&self, chain: &Chain, sent: &SentSettlement) -> Result<TxOutcome, ChainError> {
        match chain.outcome(sent.hash).await? {
            TxOutcome::Pending if chain.is_dropped(sent.hash, sent.nonce).await? => Ok(TxOutcome::Dropped),
            other => Ok(other),
        }
    }

    /// Turns an outcome into the answer; a failure forgets the transaction, a success is remembered.
    fn conclude(
        pending: &mut Option<SentSettlement>,
        outcome: Result<TxOutcome, ChainError>,
        hash: TxHash,
        failures: &Failures,
        payer: Option<String>,
        network: &str,
    ) -> SettleResponse {
        let network = network.to_owned();
        let tx = hash.to_string();
        let failed = |reason: &str, message: String| {
            SettleResponse::failed(reason, message, payer.clone(), network.clone(), tx.clone())
        };
        let (resp, terminal) = match outcome {
            Ok(TxOutcome::Succeeded) => (
                SettleResponse::settled(payer.clone(), network.clone(), tx.clone()),
                true,
            ),
            Ok(TxOutcome::Reverted) => (
                failed(failures.transaction, "the settlement transaction reverted".into()),
                true,
            ),
            Ok(TxOutcome::Dropped) => (
                failed(
                    failures.transaction,
                    "the settlement transaction was dropped by the network".into(),
                ),
                true,
            ),
            Ok(TxOutcome::Pending) => (
                failed(
                    reason::SETTLEMENT_PENDING,
                    "sent, not mined yet; retry settle with the same payload".into(),
                ),
                false,
            ),
            // Could not even ask: the outcome is unknown, so it stays pending.
            Err(e) => (
                failed(reason::SETTLEMENT_PENDING, format!("cannot read the receipt yet: {e}")),
                false,
            ),
        };
        if terminal {
            match pending {
                Some(sent) if resp.success => sent.settled = true,
                _ => *pending = None,
            }
        }
        resp
    }
}

/// The chain checks of a Permit2 payment: the payer approved Permit2 for the token (else the spec's
/// `permit2_allowance_required`, which resource servers answer with 412), holds the amount, and has not
/// used the nonce.
async fn check_permit2(
    chain: &Chain,
    req: &Requirement,
    payer: Address,
    permit: &Permit2Payload,
) -> Result<(), Rejection> {
    let unexpected = |e: ChainError| Rejection::new(reason::UNEXPECTED_VERIFY_ERROR, e.to_string());
    let amount = permit.authorization.amount;
    let allowed = chain.allowance(req.asset, payer, PERMIT2).await.map_err(unexpected)?;
    if allowed < amount {
        return Err(Rejection::new(
            reason::PERMIT2_ALLOWANCE_REQUIRED,
            format!(
                "{payer} has not approved Permit2 ({PERMIT2}) to move {amount} of {}: approve it once, then pay again",
                req.asset
            ),
        ));
    }
    let balance = chain.balance_of(req.asset, payer).await.map_err(unexpected)?;
    if balance < amount {
        return Err(Rejection::new(
            reason::PERMIT2_INSUFFICIENT_BALANCE,
            format!("payer holds {balance}, needs {amount}"),
        ));
    }
    let nonce = permit.authorization.nonce;
    if chain.permit2_nonce_used(payer, nonce).await.map_err(unexpected)? {
        return Err(Rejection::new(
            reason::PERMIT2_INVALID_NONCE,
            format!("Permit2 nonce {nonce} of {payer} is already used or invalidated"),
        ));
    }
    Ok(())
}

/// `authorization.from` if the payload has one, for answers about payloads we could not fully parse.
/// Whether the requirement is `batch-settlement` (a v2 scheme with payloads of its own).
fn is_batch(req: &FacilitatorRequest) -> bool {
    req.x402_version == Version::V2
        && req.payment_requirements.get("scheme").and_then(|s| s.as_str()) == Some(batch::SCHEME)
}

fn claimed_payer(req: &FacilitatorRequest) -> Option<String> {
    ["/payload/authorization/from", "/payload/permit2Authorization/from"]
        .iter()
        .find_map(|p| req.payment_payload.pointer(p).and_then(|v| v.as_str()))
        .map(str::to_owned)
}
