//! The chain, through alloy: token reads, the `transferWithAuthorization` call and receipts. Used by the
//! self-hosted facilitator and by `devnet`; never on the gateway's request path.

use std::time::Duration;

use alloy::eips::eip2718::Encodable2718;
use alloy::network::{EthereumWallet, ReceiptResponse, TransactionBuilder};
use alloy::primitives::{Address, Bytes, TxHash, B256, U256};
use alloy::providers::{DynProvider, Provider, ProviderBuilder};
use alloy::rpc::types::TransactionRequest;
use alloy::signers::local::PrivateKeySigner;
use alloy::sol;

use crate::core::secret::redact;
use crate::protocol::erc6492;
use crate::protocol::exact::ExactPayload;
use crate::protocol::payment::Payment;
use crate::protocol::permit2::{Permit2Payload, EXACT_PROXY, PERMIT2, UPTO_PROXY};

sol! {
    /// ERC-1271: a contract wallet says whether it made a signature.
    #[sol(rpc)]
    interface IErc1271 {
        function isValidSignature(bytes32 hash, bytes signature) external view returns (bytes4);
    }
}

/// What `isValidSignature` returns for a signature the wallet made.
const ERC1271_MAGIC: [u8; 4] = [0x16, 0x26, 0xba, 0x7e];

sol! {
    /// The parts of an EIP-3009 token (USDC, or our test token) the facilitator and devnet use. Its
    /// ERC-20 part (`balanceOf`, `mint`, `approve`, `allowance`) serves the devnet's plain token too.
    #[sol(rpc)]
    #[allow(clippy::too_many_arguments)]
    interface IEip3009Token {
        function name() external view returns (string);
        function version() external view returns (string);
        function balanceOf(address account) external view returns (uint256);
        function authorizationState(address authorizer, bytes32 nonce) external view returns (bool);
        function transferWithAuthorization(address from, address to, uint256 value, uint256 validAfter, uint256 validBefore, bytes32 nonce, uint8 v, bytes32 r, bytes32 s) external;
        /// USDC v2.2's overload for any signature (a contract wallet's is checked with ERC-1271).
        function transferWithAuthorization(address from, address to, uint256 value, uint256 validAfter, uint256 validBefore, bytes32 nonce, bytes signature) external;
        function mint(address to, uint256 amount) external;
        function approve(address spender, uint256 value) external returns (bool);
        function allowance(address owner, address spender) external view returns (uint256);
    }
}

sol! {
    /// Permit2's unordered-nonce bitmap: bit `nonce & 0xff` of word `nonce >> 8` is set once used.
    #[sol(rpc)]
    interface IPermit2 {
        function nonceBitmap(address owner, uint256 wordPos) external view returns (uint256);
    }

    /// Permit2's signed permit, as both x402 proxies take it.
    struct TokenPermissions {
        address token;
        uint256 amount;
    }
    struct PermitTransferFrom {
        TokenPermissions permitted;
        uint256 nonce;
        uint256 deadline;
    }

    /// The x402 exact Permit2 proxy's `settle` (the canonical ABI; selector 0x13cd3b53).
    #[sol(rpc)]
    interface IX402ExactPermit2Proxy {
        struct Witness {
            address to;
            uint256 validAfter;
        }
        function settle(PermitTransferFrom permit, address owner, Witness witness, bytes signature) external;
    }

    /// The x402 upto Permit2 proxy's `settle` (the canonical ABI; selector 0xff11e7b4): any amount up to
    /// the signed ceiling, sent only by the witness's facilitator.
    #[sol(rpc)]
    interface IX402UptoPermit2Proxy {
        struct Witness {
            address to;
            address facilitator;
            uint256 validAfter;
        }
        function settle(PermitTransferFrom permit, uint256 amount, address owner, Witness witness, bytes signature) external;
    }
}

/// Longest wait for one JSON-RPC answer.
const RPC_TIMEOUT: Duration = Duration::from_secs(20);

/// What went wrong talking to the chain.
#[derive(Debug, thiserror::Error)]
pub enum ChainError {
    #[error("RPC {url} is unreachable or failed: {source}")]
    Rpc {
        url: String,
        source: alloy::transports::TransportError,
    },
    #[error("contract call reverted or failed: {0}")]
    Call(String),
    #[error("transaction {hash} failed: {message}")]
    Transaction { hash: TxHash, message: String },
    #[error("transaction {hash} was sent but the node's answer was lost ({message}); it may still land")]
    Unknown { hash: TxHash, message: String },
    #[error("the node refused the transaction: {0}")]
    Refused(String),
}

/// A token's EIP-712 identity, read from the contract.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TokenInfo {
    pub name: String,
    pub version: String,
}

/// What became of a sent transaction.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TxOutcome {
    /// Mined with status success.
    Succeeded,
    /// Mined, reverted.
    Reverted,
    /// Not mined (yet).
    Pending,
    /// Never mined and never will be: the node forgot it and the sender's nonce moved past it.
    Dropped,
}

/// A connection to one chain, optionally with a key that sends transactions.
#[derive(Clone)]
pub struct Chain {
    provider: DynProvider,
    url: String,
    chain_id: u64,
    sender: Option<Address>,
    /// Signs locally, so a transaction's hash is known before it is sent.
    wallet: Option<EthereumWallet>,
    /// Sends are serialised so each one takes the next nonce from the node's pending count; a cached
    /// nonce would leave a gap forever after one rejected send.
    send_lock: std::sync::Arc<tokio::sync::Mutex<()>>,
}

impl std::fmt::Debug for Chain {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Chain")
            .field("url", &self.url)
            .field("chain_id", &self.chain_id)
            .field("sender", &self.sender)
            .finish()
    }
}

impl Chain {
    /// Connects and reads the chain id. With a signer, transactions are signed locally and sent from it.
    pub async fn connect(url: &url::Url, signer: Option<PrivateKeySigner>) -> Result<Self, ChainError> {
        let sender = signer.as_ref().map(|s| s.address());
        let wallet = signer.map(EthereumWallet::from);
        // A hung RPC call must not hold the send lock forever.
        let http = reqwest::Client::builder()
            .timeout(RPC_TIMEOUT)
            .build()
            .map_err(|e| ChainError::Call(format!("HTTP client: {e}")))?;
        let provider = ProviderBuilder::new().connect_reqwest(http, url.clone()).erased();
        let url = redact(url);
        let chain_id = provider.get_chain_id().await.map_err(|source| ChainError::Rpc {
            url: url.clone(),
            source,
        })?;
        Ok(Chain {
            provider,
            url,
            chain_id,
            sender,
            wallet,
            send_lock: Default::default(),
        })
    }

    /// Wraps a transport error with this connection's (redacted) URL.
    fn rpc_error(&self) -> impl Fn(alloy::transports::TransportError) -> ChainError + Copy + '_ {
        |source| ChainError::Rpc {
            url: self.url.clone(),
            source,
        }
    }

    /// The chain id the RPC reported.
    pub fn chain_id(&self) -> u64 {
        self.chain_id
    }

    /// The address transactions are sent from, if this connection can send.
    pub fn sender(&self) -> Option<Address> {
        self.sender
    }

    /// The underlying provider, for devnet's raw calls.
    pub fn provider(&self) -> &DynProvider {
        &self.provider
    }

    fn token(&self, asset: Address) -> IEip3009Token::IEip3009TokenInstance<&DynProvider> {
        IEip3009Token::new(asset, &self.provider)
    }

    /// Reads `name()` and `version()`: the EIP-712 domain a payer signs under.
    pub async fn token_info(&self, asset: Address) -> Result<TokenInfo, ChainError> {
        let t = self.token(asset);
        let call = |e: alloy::contract::Error| ChainError::Call(e.to_string());
        Ok(TokenInfo {
            name: t.name().call().await.map_err(call)?,
            version: t.version().call().await.map_err(call)?,
        })
    }

    /// The token balance of `who`.
    pub async fn balance_of(&self, asset: Address, who: Address) -> Result<U256, ChainError> {
        self.token(asset)
            .balanceOf(who)
            .call()
            .await
            .map_err(|e| ChainError::Call(e.to_string()))
    }

    /// Whether `nonce` of `authorizer` has been used or cancelled.
    pub async fn authorization_used(
        &self,
        asset: Address,
        authorizer: Address,
        nonce: B256,
    ) -> Result<bool, ChainError> {
        self.token(asset)
            .authorizationState(authorizer, nonce)
            .call()
            .await
            .map_err(|e| ChainError::Call(e.to_string()))
    }

    /// `transferWithAuthorization`: with `v, r, s` for an EOA's 65 bytes, else the `bytes` overload with the
    /// wallet's own signature (an EIP-6492 wrapper removed: the wallet exists by the time this is sent).
    fn transfer_call(&self, asset: Address, p: &ExactPayload) -> Result<TransactionRequest, ChainError> {
        let Some(sig) = erc6492::inner(&p.signature) else {
            return Err(ChainError::Call("a malformed EIP-6492 signature".into()));
        };
        let a = &p.authorization;
        let token = self.token(asset);
        let mut tx = match (sig.get(..32), sig.get(32..64), sig.get(64), sig.len()) {
            (Some(r), Some(s), Some(&v), 65) => token
                .transferWithAuthorization_0(
                    a.from,
                    a.to,
                    a.value,
                    a.valid_after,
                    a.valid_before,
                    a.nonce,
                    v,
                    B256::from_slice(r),
                    B256::from_slice(s),
                )
                .into_transaction_request(),
            _ => token
                .transferWithAuthorization_1(a.from, a.to, a.value, a.valid_after, a.valid_before, a.nonce, sig)
                .into_transaction_request(),
        };
        if let Some(from) = self.sender {
            tx.set_from(from);
        }
        Ok(tx)
    }

    /// The proxy call that settles a Permit2 payment from this connection's key: the exact proxy's
    /// `settle`, or for `upto` (a witness naming a facilitator) the upto proxy's for `amount`.
    fn permit2_call(&self, p: &Permit2Payload, amount: U256) -> TransactionRequest {
        let a = &p.authorization;
        let permit = PermitTransferFrom {
            permitted: TokenPermissions {
                token: a.token,
                amount: a.amount,
            },
            nonce: a.nonce,
            deadline: a.deadline,
        };
        let mut tx = match a.facilitator {
            None => IX402ExactPermit2Proxy::new(EXACT_PROXY, &self.provider)
                .settle(
                    permit,
                    a.from,
                    IX402ExactPermit2Proxy::Witness {
                        to: a.to,
                        validAfter: a.valid_after,
                    },
                    p.signature.clone(),
                )
                .into_transaction_request(),
            Some(facilitator) => IX402UptoPermit2Proxy::new(UPTO_PROXY, &self.provider)
                .settle(
                    permit,
                    amount,
                    a.from,
                    IX402UptoPermit2Proxy::Witness {
                        to: a.to,
                        facilitator,
                        validAfter: a.valid_after,
                    },
                    p.signature.clone(),
                )
                .into_transaction_request(),
        };
        if let Some(from) = self.sender {
            tx.set_from(from);
        }
        tx
    }

    /// The transaction that settles `amount` of `payment` in `asset` (only `upto` may take less than
    /// the amount signed).
    pub fn settlement_call(
        &self,
        asset: Address,
        payment: &Payment,
        amount: U256,
    ) -> Result<TransactionRequest, ChainError> {
        match payment {
            Payment::Eip3009(p) => self.transfer_call(asset, p),
            Payment::Permit2(p) => Ok(self.permit2_call(p, amount)),
        }
    }

    /// How much `owner` lets `spender` take of `token`.
    pub async fn allowance(&self, token: Address, owner: Address, spender: Address) -> Result<U256, ChainError> {
        self.token(token)
            .allowance(owner, spender)
            .call()
            .await
            .map_err(|e| ChainError::Call(e.to_string()))
    }

    /// Whether Permit2 nonce `nonce` of `owner` has been used or invalidated.
    pub async fn permit2_nonce_used(&self, owner: Address, nonce: U256) -> Result<bool, ChainError> {
        let word = IPermit2::new(PERMIT2, &self.provider)
            .nonceBitmap(owner, nonce >> 8)
            .call()
            .await
            .map_err(|e| ChainError::Call(e.to_string()))?;
        Ok(word.bit((nonce & U256::from(0xff)).to::<usize>()))
    }

    /// Whether `who` has code (a contract wallet, once deployed).
    pub async fn has_code(&self, who: Address) -> Result<bool, ChainError> {
        let code = self.provider.get_code_at(who).await.map_err(self.rpc_error())?;
        Ok(!code.is_empty())
    }

    /// Whether the contract wallet `wallet` says it made `signature` over `digest` (ERC-1271). A revert
    /// or any other answer is "no".
    pub async fn is_valid_signature(
        &self,
        wallet: Address,
        digest: B256,
        signature: Bytes,
    ) -> Result<bool, ChainError> {
        match IErc1271::new(wallet, &self.provider)
            .isValidSignature(digest, signature)
            .call()
            .await
        {
            Ok(magic) => Ok(magic.0 == ERC1271_MAGIC),
            Err(alloy::contract::Error::TransportError(e)) if !e.is_error_resp() => {
                Err(ChainError::Call(e.to_string()))
            }
            Err(_) => Ok(false),
        }
    }

    /// Runs the settlement of `amount` of `payment` in `eth_call`: would it succeed if sent now?
    pub async fn simulate(&self, asset: Address, payment: &Payment, amount: U256) -> Result<(), ChainError> {
        let tx = self.settlement_call(asset, payment, amount)?;
        self.provider
            .call(tx)
            .await
            .map(|_| ())
            .map_err(|e| ChainError::Call(e.to_string()))
    }

    /// Signs `tx` with this connection's key and sends it; returns the hash once the node accepted it.
    pub async fn send(&self, tx: TransactionRequest) -> Result<TxHash, ChainError> {
        self.prepare(tx).await?.broadcast().await
    }

    /// Fills and signs `tx` without sending it, holding this connection's send turn until the result is
    /// broadcast or dropped. The hash is known before anything leaves, so a caller can record it first:
    /// a send whose answer is lost is then an unknown outcome with a known hash, never a forgotten one.
    pub async fn prepare(&self, mut tx: TransactionRequest) -> Result<Prepared<'_>, ChainError> {
        let (Some(wallet), Some(from)) = (&self.wallet, self.sender) else {
            return Err(ChainError::Call("this connection has no key to send with".into()));
        };
        let rpc = self.rpc_error();
        let turn = self.send_lock.lock().await;
        let nonce = self.provider.get_transaction_count(from).pending().await.map_err(rpc)?;
        tx.set_from(from);
        tx.set_chain_id(self.chain_id);
        tx.set_nonce(nonce);
        // Estimating runs the call: a transfer that would revert is refused here, before anything is sent.
        let gas = self
            .provider
            .estimate_gas(tx.clone())
            .await
            .map_err(|e| ChainError::Call(e.to_string()))?;
        tx.set_gas_limit(gas);
        let fees = self.provider.estimate_eip1559_fees().await.map_err(rpc)?;
        tx.set_max_fee_per_gas(fees.max_fee_per_gas);
        tx.set_max_priority_fee_per_gas(fees.max_priority_fee_per_gas);
        let envelope = tx
            .build(wallet)
            .await
            .map_err(|e| ChainError::Call(format!("cannot sign: {e}")))?;
        Ok(Prepared {
            hash: *envelope.tx_hash(),
            nonce,
            raw: envelope.encoded_2718(),
            chain: self,
            _turn: turn,
        })
    }

    /// The settlement of `amount` of `payment` in `asset`, prepared (see [`Chain::prepare`]).
    pub async fn prepare_settlement(
        &self,
        asset: Address,
        payment: &Payment,
        amount: U256,
    ) -> Result<Prepared<'_>, ChainError> {
        let tx = self.settlement_call(asset, payment, amount)?;
        self.prepare(tx).await
    }

    /// Whether a transaction that has no receipt is gone for good: the node does not know it and the
    /// sender's mined nonce is past the one it used.
    pub async fn is_dropped(&self, hash: TxHash, nonce: u64) -> Result<bool, ChainError> {
        let rpc = self.rpc_error();
        let Some(from) = self.sender else { return Ok(false) };
        if self
            .provider
            .get_transaction_by_hash(hash)
            .await
            .map_err(rpc)?
            .is_some()
        {
            return Ok(false);
        }
        Ok(self.provider.get_transaction_count(from).latest().await.map_err(rpc)? > nonce)
    }

    /// Deploys `code` (creation bytecode with constructor arguments appended); returns the address.
    pub async fn deploy(&self, code: Bytes, timeout: Duration) -> Result<Address, ChainError> {
        let hash = self.send(TransactionRequest::default().with_deploy_code(code)).await?;
        let outcome = self.wait(hash, timeout).await?;
        if outcome != TxOutcome::Succeeded {
            return Err(ChainError::Transaction {
                hash,
                message: format!("deployment {outcome:?}"),
            });
        }
        let receipt = self
            .provider
            .get_transaction_receipt(hash)
            .await
            .map_err(self.rpc_error())?;
        receipt
            .and_then(|r| r.contract_address())
            .ok_or_else(|| ChainError::Transaction {
                hash,
                message: "deployment produced no contract address".into(),
            })
    }

    /// Looks a transaction's receipt up once.
    pub async fn outcome(&self, hash: TxHash) -> Result<TxOutcome, ChainError> {
        let receipt = self
            .provider
            .get_transaction_receipt(hash)
            .await
            .map_err(self.rpc_error())?;
        Ok(match receipt {
            None => TxOutcome::Pending,
            Some(r) if r.status() => TxOutcome::Succeeded,
            Some(_) => TxOutcome::Reverted,
        })
    }

    /// Polls for the receipt until `timeout`; `Pending` if it never came.
    pub async fn wait(&self, hash: TxHash, timeout: Duration) -> Result<TxOutcome, ChainError> {
        const POLL: Duration = Duration::from_millis(100);
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            match self.outcome(hash).await? {
                TxOutcome::Pending if tokio::time::Instant::now() < deadline => tokio::time::sleep(POLL).await,
                done => return Ok(done),
            }
        }
    }
}

/// A signed transaction not yet sent; holds its connection's send turn.
pub struct Prepared<'a> {
    /// Its hash, known before sending.
    pub hash: TxHash,
    /// The sender nonce it uses.
    pub nonce: u64,
    raw: Vec<u8>,
    chain: &'a Chain,
    _turn: tokio::sync::MutexGuard<'a, ()>,
}

/// JSON-RPC errors that mean the node refused the transaction outright (nothing was broadcast). Any other
/// error, including JSON-RPC errors from hosted endpoints that may already have forwarded it, is unknown.
const REFUSALS: &[&str] = &[
    "nonce too low",
    "underpriced",
    "insufficient funds",
    "intrinsic gas",
    "exceeds block gas limit",
    "execution reverted",
    "invalid sender",
    "invalid signature",
];

impl Prepared<'_> {
    /// Sends it. `Refused`: certainly not broadcast; `Unknown`: may land.
    pub async fn broadcast(self) -> Result<TxHash, ChainError> {
        match self.chain.provider.send_raw_transaction(&self.raw).await {
            Ok(_) => Ok(self.hash),
            Err(alloy::transports::RpcError::ErrorResp(e)) => {
                let message = e.message.to_ascii_lowercase();
                if message.contains("already known") {
                    Ok(self.hash)
                } else if REFUSALS.iter().any(|r| message.contains(r)) {
                    Err(ChainError::Refused(e.to_string()))
                } else {
                    Err(ChainError::Unknown {
                        hash: self.hash,
                        message: e.to_string(),
                    })
                }
            }
            Err(e) => Err(ChainError::Unknown {
                hash: self.hash,
                message: e.to_string(),
            }),
        }
    }
}
