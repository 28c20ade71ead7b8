//! The `batch-settlement` scheme on EVM (x402 v2): a payer deposits once into a channel, then pays each
//! call with a voucher, a signed cumulative ceiling the receiver claims later, many at a time. Here: the
//! canonical contract addresses, the EIP-712 types and digests (domain "x402 Batch Settlement", "1"), the
//! channel id, and the three payloads a client sends (deposit, voucher, refund), parsed strictly into typed
//! values. Plain data: no I/O.

use alloy::primitives::aliases::U40;
use alloy::primitives::{address, Address, Bytes, B256, U256};
use alloy::sol;
use alloy::sol_types::{Eip712Domain, SolStruct};
use serde::Deserialize;
use serde_json::{json, Value};

use super::exact::{parse_address, parse_decimal, Rejection};
use super::permit2::WirePermitted;

/// The scheme's wire name.
pub const SCHEME: &str = super::SCHEME_BATCH;
/// The batch-settlement contract, at the same address on every chain.
pub const SETTLEMENT: Address = address!("4020074e9dF2ce1deE5A9C1b5c3f541D02a10003");
/// The deposit collector that takes an EIP-3009 `receiveWithAuthorization`.
pub const ERC3009_COLLECTOR: Address = address!("4020806089470a89826cB9fB1f4059150b550004");
/// The deposit collector that takes a Permit2 witness transfer.
pub use super::permit2::BATCH_COLLECTOR as PERMIT2_COLLECTOR;
/// The shortest withdraw delay the contract accepts, in seconds (15 minutes).
pub const MIN_WITHDRAW_DELAY: u64 = 900;
/// The longest withdraw delay the contract accepts, in seconds (30 days).
pub const MAX_WITHDRAW_DELAY: u64 = 2_592_000;

sol! {
    /// A channel's fixed terms; its EIP-712 hash is the channel id. Field order is part of the type hash.
    #[derive(Debug, PartialEq, Eq)]
    struct ChannelConfig {
        address payer;
        address payerAuthorizer;
        address receiver;
        address receiverAuthorizer;
        address token;
        uint40 withdrawDelay;
        bytes32 salt;
    }

    /// EIP-3009's receive authorization: what a payer signs for a deposit through the EIP-3009 collector
    /// (`to` is the collector, `nonce` is [`deposit_nonce`]), under the token's own domain.
    struct ReceiveWithAuthorization {
        address from;
        address to;
        uint256 value;
        uint256 validAfter;
        uint256 validBefore;
        bytes32 nonce;
    }

    /// What the payer signs per call: the total the receiver may claim from the channel so far.
    struct Voucher {
        bytes32 channelId;
        uint128 maxClaimableAmount;
    }

    /// What the receiver authorizer signs to return unclaimed funds.
    struct Refund {
        bytes32 channelId;
        uint256 nonce;
        uint128 amount;
    }

    /// One row of a claim batch.
    struct ClaimEntry {
        bytes32 channelId;
        uint128 maxClaimableAmount;
        uint128 totalClaimed;
    }

    /// What the receiver authorizer signs for `claimWithSignature`.
    struct ClaimBatch {
        ClaimEntry[] claims;
    }

    /// The contract's voucher: the whole channel config, not its id (its ABI struct `Voucher`).
    struct ChannelVoucher {
        ChannelConfig channel;
        uint128 maxClaimableAmount;
    }

    /// One row of `claim`/`claimWithSignature`: `totalClaimed` is cumulative.
    struct VoucherClaim {
        ChannelVoucher voucher;
        bytes signature;
        uint128 totalClaimed;
    }

    /// The calls and views of the batch-settlement contract this crate makes (encoding only).
    interface IX402BatchSettlement {
        function deposit(ChannelConfig config, uint128 amount, address collector, bytes collectorData) external;
        function claimWithSignature(VoucherClaim[] voucherClaims, bytes authorizerSignature) external;
        function settle(address receiver, address token) external;
        function refundWithSignature(ChannelConfig config, uint128 amount, uint256 nonce, bytes receiverAuthorizerSignature) external;
        function multicall(bytes[] data) external returns (bytes[] results);
        function channels(bytes32 channelId) external view returns (uint128 balance, uint128 totalClaimed);
        function pendingWithdrawals(bytes32 channelId) external view returns (uint128 amount, uint40 initiatedAt);
        function refundNonce(bytes32 channelId) external view returns (uint256);
        function receivers(address receiver, address token) external view returns (uint128 totalClaimed, uint128 totalSettled);
        event Settled(address indexed receiver, address indexed token, address indexed sender, uint128 amount);
        event Refunded(bytes32 indexed channelId, address indexed sender, uint128 amount);
    }
}

/// The scheme's reason strings, as the official SDKs spell them.
pub mod reason {
    pub const PAYLOAD_TYPE: &str = "invalid_batch_settlement_evm_payload_type";
    pub const CHANNEL_ID_INVALID: &str = "invalid_batch_settlement_evm_channel_id_invalid";
    pub const CHANNEL_ID_MISMATCH: &str = "invalid_batch_settlement_evm_channel_id_mismatch";
    pub const CHANNEL_NOT_FOUND: &str = "invalid_batch_settlement_evm_channel_not_found";
    pub const RECEIVER_MISMATCH: &str = "invalid_batch_settlement_evm_receiver_mismatch";
    pub const RECEIVER_AUTHORIZER_MISMATCH: &str = "invalid_batch_settlement_evm_receiver_authorizer_mismatch";
    pub const TOKEN_MISMATCH: &str = "invalid_batch_settlement_evm_token_mismatch";
    pub const WITHDRAW_DELAY_MISMATCH: &str = "invalid_batch_settlement_evm_withdraw_delay_mismatch";
    pub const WITHDRAW_DELAY_OUT_OF_RANGE: &str = "invalid_batch_settlement_evm_withdraw_delay_out_of_range";
    pub const VOUCHER_SIGNATURE: &str = "invalid_batch_settlement_evm_voucher_signature";
    pub const CUMULATIVE_EXCEEDS_BALANCE: &str = "invalid_batch_settlement_evm_cumulative_exceeds_balance";
    pub const CUMULATIVE_BELOW_CLAIMED: &str = "invalid_batch_settlement_evm_cumulative_below_claimed";
    pub const CUMULATIVE_AMOUNT_MISMATCH: &str = "invalid_batch_settlement_evm_cumulative_amount_mismatch";
    pub const INSUFFICIENT_BALANCE: &str = "invalid_batch_settlement_evm_insufficient_balance";
    pub const DEPOSIT_SIMULATION_FAILED: &str = "invalid_batch_settlement_evm_deposit_simulation_failed";
    pub const DEPOSIT_BELOW_MIN_DEPOSIT: &str = "invalid_batch_settlement_evm_deposit_below_min_deposit";
    pub const DEPOSIT_TRANSACTION_FAILED: &str = "invalid_batch_settlement_evm_deposit_transaction_failed";
    pub const MISSING_EIP712_DOMAIN: &str = "invalid_batch_settlement_evm_missing_eip712_domain";
    pub const VALID_AFTER: &str = "invalid_batch_settlement_evm_payload_authorization_valid_after";
    pub const VALID_BEFORE: &str = "invalid_batch_settlement_evm_payload_authorization_valid_before";
    pub const RECEIVE_AUTHORIZATION_SIGNATURE: &str = "invalid_batch_settlement_evm_receive_authorization_signature";
    pub const ERC3009_AUTHORIZATION_REQUIRED: &str = "invalid_batch_settlement_evm_erc3009_authorization_required";
    pub const PERMIT2_AUTHORIZATION_REQUIRED: &str = "invalid_batch_settlement_evm_permit2_authorization_required";
    pub const PERMIT2_INVALID_SPENDER: &str = "invalid_batch_settlement_evm_permit2_invalid_spender";
    pub const PERMIT2_AMOUNT_MISMATCH: &str = "invalid_batch_settlement_evm_permit2_amount_mismatch";
    pub const PERMIT2_DEADLINE_EXPIRED: &str = "invalid_batch_settlement_evm_permit2_deadline_expired";
    pub const PERMIT2_INVALID_SIGNATURE: &str = "invalid_batch_settlement_evm_permit2_invalid_signature";
    pub const PERMIT2_ALLOWANCE_REQUIRED: &str = "invalid_batch_settlement_evm_permit2_allowance_required";
    pub const CLAIM_SIMULATION_FAILED: &str = "invalid_batch_settlement_evm_claim_simulation_failed";
    pub const CLAIM_TRANSACTION_FAILED: &str = "invalid_batch_settlement_evm_claim_transaction_failed";
    pub const CLAIM_PAYLOAD: &str = "invalid_batch_settlement_evm_claim_payload";
    pub const SETTLE_SIMULATION_FAILED: &str = "invalid_batch_settlement_evm_settle_simulation_failed";
    pub const SETTLE_TRANSACTION_FAILED: &str = "invalid_batch_settlement_evm_settle_transaction_failed";
    pub const NOTHING_TO_SETTLE: &str = "invalid_batch_settlement_evm_nothing_to_settle";
    pub const REFUND_PAYLOAD: &str = "invalid_batch_settlement_evm_refund_payload";
    pub const REFUND_SIMULATION_FAILED: &str = "invalid_batch_settlement_evm_refund_simulation_failed";
    pub const REFUND_TRANSACTION_FAILED: &str = "invalid_batch_settlement_evm_refund_transaction_failed";
    pub const REFUND_AMOUNT_INVALID: &str = "invalid_batch_settlement_evm_refund_amount_invalid";
    pub const REFUND_NO_BALANCE: &str = "invalid_batch_settlement_evm_refund_no_balance";
    pub const AUTHORIZER_NOT_CONFIGURED: &str = "invalid_batch_settlement_evm_authorizer_not_configured";
    pub const AUTHORIZER_ADDRESS_MISMATCH: &str = "invalid_batch_settlement_evm_authorizer_address_mismatch";
    pub const RPC_READ_FAILED: &str = "invalid_batch_settlement_evm_rpc_read_failed";
    pub const CHANNEL_BUSY: &str = "invalid_batch_settlement_evm_channel_busy";
    pub const MISSING_CHANNEL: &str = "invalid_batch_settlement_evm_missing_channel";
    pub const VERIFICATION_STATE_UNAVAILABLE: &str = "invalid_batch_settlement_evm_verification_state_unavailable";
    pub const CHARGE_EXCEEDS_SIGNED_CUMULATIVE: &str = "invalid_batch_settlement_evm_charge_exceeds_signed_cumulative";
}

/// The domain every batch-settlement digest is signed under.
pub fn domain(chain_id: u64) -> Eip712Domain {
    Eip712Domain::new(
        Some("x402 Batch Settlement".into()),
        Some("1".into()),
        Some(U256::from(chain_id)),
        Some(SETTLEMENT),
        None,
    )
}

/// The channel id: the EIP-712 hash of its config (chain- and contract-bound).
pub fn channel_id(config: &ChannelConfig, chain_id: u64) -> B256 {
    config.eip712_signing_hash(&domain(chain_id))
}

/// What the payer (or its authorizer) signs for a voucher.
pub fn voucher_digest(channel_id: B256, max_claimable: u128, chain_id: u64) -> B256 {
    let v = Voucher {
        channelId: channel_id,
        maxClaimableAmount: max_claimable,
    };
    v.eip712_signing_hash(&domain(chain_id))
}

/// What the receiver authorizer signs to refund `amount` at the channel's refund `nonce`.
pub fn refund_digest(channel_id: B256, nonce: U256, amount: u128, chain_id: u64) -> B256 {
    let r = Refund {
        channelId: channel_id,
        nonce,
        amount,
    };
    r.eip712_signing_hash(&domain(chain_id))
}

/// What the receiver authorizer signs for a batch of claims.
pub fn claim_batch_digest(claims: Vec<ClaimEntry>, chain_id: u64) -> B256 {
    ClaimBatch { claims }.eip712_signing_hash(&domain(chain_id))
}

/// The EIP-3009 nonce the deposit collector derives: `keccak256(abi.encode(channelId, salt))`.
pub fn deposit_nonce(channel_id: B256, salt: B256) -> B256 {
    let mut both = [0u8; 64];
    both[..32].copy_from_slice(channel_id.as_slice());
    both[32..].copy_from_slice(salt.as_slice());
    alloy::primitives::keccak256(both)
}

pub use super::exact::BatchTerms;

/// A voucher as it travels: the channel, the cumulative ceiling, the payer's signature.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SignedVoucher {
    /// The channel it draws on.
    pub channel_id: B256,
    /// The total the receiver may claim from the channel, this call included.
    pub max_claimable: u128,
    /// The payer's (or payer authorizer's) EIP-712 signature over [`voucher_digest`].
    pub signature: Bytes,
}

/// How a deposit's funds are authorised.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DepositAuthorization {
    /// EIP-3009 `ReceiveWithAuthorization` to the EIP-3009 collector, nonce [`deposit_nonce`].
    Erc3009 {
        /// Start of validity (unix seconds).
        valid_after: U256,
        /// End of validity (unix seconds).
        valid_before: U256,
        /// The per-deposit salt behind the nonce.
        salt: B256,
        /// The payer's signature under the token's domain.
        signature: Bytes,
    },
    /// A Permit2 witness transfer (witness: the channel id) with the Permit2 collector as spender.
    Permit2 {
        /// The payer.
        from: Address,
        /// The token permitted.
        token: Address,
        /// The amount permitted.
        amount: U256,
        /// The spender the payer signed for.
        spender: Address,
        /// Permit2's unordered nonce.
        nonce: U256,
        /// The permit's deadline (unix seconds).
        deadline: U256,
        /// The channel id in the witness.
        channel_id: B256,
        /// The payer's signature under Permit2's domain.
        signature: Bytes,
    },
}

/// What a batch-settlement payment asks for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Kind {
    /// Pay this call from the channel's existing deposit.
    Voucher,
    /// Deposit `amount` first (opening or topping up the channel), then pay this call.
    Deposit {
        /// The deposit, in the token's atomic units.
        amount: u128,
        /// The payer's authorisation to take it (boxed: far larger than the other kinds).
        authorization: Box<DepositAuthorization>,
    },
    /// Return unclaimed funds: `amount`, or all of them when absent. The voucher charges nothing more.
    Refund {
        /// How much to return.
        amount: Option<u128>,
    },
}

/// A batch-settlement payload, parsed: every address, integer and hash checked once.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BatchPayload {
    /// The channel's terms.
    pub config: ChannelConfig,
    /// The voucher this request carries.
    pub voucher: SignedVoucher,
    /// What the payer asks for.
    pub kind: Kind,
}

impl BatchPayload {
    /// Parses the `payload` object of a `batch-settlement` payment.
    pub fn parse(payload: &Value) -> Result<Self, Rejection> {
        let bad = |m: String| Rejection::new(super::reason::INVALID_PAYLOAD, m);
        let w = WirePayload::deserialize(payload).map_err(|e| bad(format!("not a batch-settlement payload: {e}")))?;
        let config = w.channel_config.parse()?;
        let voucher = w.voucher.parse()?;
        let kind = match w.kind.as_str() {
            "voucher" => Kind::Voucher,
            "refund" => Kind::Refund {
                amount: match &w.amount {
                    Some(a) => Some(atomic(a, "amount", reason::REFUND_AMOUNT_INVALID)?),
                    None => None,
                },
            },
            "deposit" => {
                let d = w
                    .deposit
                    .as_ref()
                    .ok_or_else(|| bad("a deposit payload needs `deposit`".into()))?;
                Kind::Deposit {
                    amount: atomic(&d.amount, "deposit.amount", super::reason::INVALID_PAYLOAD)?,
                    authorization: Box::new(d.authorization.parse()?),
                }
            }
            other => {
                return Err(Rejection::new(
                    reason::PAYLOAD_TYPE,
                    format!("payload type {other:?} is not voucher, deposit or refund"),
                ))
            }
        };
        Ok(BatchPayload { config, voucher, kind })
    }

    /// Whether `voucher.channelId` is the hash of `channelConfig` on this chain.
    pub fn channel_matches(&self, chain_id: u64) -> bool {
        channel_id(&self.config, chain_id) == self.voucher.channel_id
    }
}

/// The channel config's wire form, as the SDKs spell it (addresses as given, `withdrawDelay` a number).
pub fn config_json(c: &ChannelConfig) -> Value {
    json!({
        "payer": c.payer.to_string(),
        "payerAuthorizer": c.payerAuthorizer.to_string(),
        "receiver": c.receiver.to_string(),
        "receiverAuthorizer": c.receiverAuthorizer.to_string(),
        "token": c.token.to_string(),
        "withdrawDelay": withdraw_delay(c),
        "salt": c.salt.to_string(),
    })
}

/// One row of a `claim` or enriched `refund` payload: the payer's voucher on `config` up to
/// `max_claimable`, and the cumulative amount to claim on it.
pub fn claim_row_json(config: &ChannelConfig, max_claimable: u128, signature: &Bytes, total_claimed: u128) -> Value {
    json!({
        "voucher": {"channel": config_json(config), "maxClaimableAmount": max_claimable.to_string()},
        "signature": signature.to_string(),
        "totalClaimed": total_claimed.to_string(),
    })
}

/// A channel config in its wire form (as in a payload's `channelConfig`, or a claim row's `channel`).
pub fn parse_config(v: &Value) -> Result<ChannelConfig, Rejection> {
    WireConfig::deserialize(v)
        .map_err(|e| Rejection::new(super::reason::INVALID_PAYLOAD, format!("not a channel config: {e}")))?
        .parse()
}

/// The channel's withdraw delay, in seconds.
pub fn withdraw_delay(c: &ChannelConfig) -> u64 {
    c.withdrawDelay.to::<u64>()
}

/// A positive amount that fits the contract's `uint128`.
fn atomic(s: &str, what: &str, why: &'static str) -> Result<u128, Rejection> {
    parse_decimal(s)
        .and_then(|v| u128::try_from(v).ok())
        .filter(|v| *v > 0)
        .ok_or_else(|| Rejection::new(why, format!("{what} must be a positive decimal integer below 2^128")))
}

fn bytes32(s: &str, what: &str, why: &'static str) -> Result<B256, Rejection> {
    let ok = s.len() == 66 && s.starts_with("0x") && s[2..].bytes().all(|b| b.is_ascii_hexdigit());
    ok.then(|| s.parse().ok())
        .flatten()
        .ok_or_else(|| Rejection::new(why, format!("{what} must be 0x and 64 hex digits")))
}

fn addr(s: &str, what: &str) -> Result<Address, Rejection> {
    parse_address(s).ok_or_else(|| {
        Rejection::new(
            super::reason::INVALID_PAYLOAD,
            format!("{what} is not a 0x-prefixed address"),
        )
    })
}

fn signature(s: &str, what: &str) -> Result<Bytes, Rejection> {
    s.strip_prefix("0x")
        .and_then(|h| alloy::hex::decode(h).ok())
        .map(Bytes::from)
        .ok_or_else(|| Rejection::new(super::reason::INVALID_PAYLOAD, format!("{what} is not 0x-prefixed hex")))
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct WirePayload {
    #[serde(rename = "type")]
    kind: String,
    channel_config: WireConfig,
    voucher: WireVoucher,
    deposit: Option<WireDeposit>,
    amount: Option<String>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct WireConfig {
    payer: String,
    payer_authorizer: String,
    receiver: String,
    receiver_authorizer: String,
    token: String,
    withdraw_delay: u64,
    salt: String,
}

impl WireConfig {
    fn parse(&self) -> Result<ChannelConfig, Rejection> {
        let withdraw_delay = U40::try_from(self.withdraw_delay).map_err(|_| {
            Rejection::new(
                reason::WITHDRAW_DELAY_OUT_OF_RANGE,
                "channelConfig.withdrawDelay does not fit uint40",
            )
        })?;
        Ok(ChannelConfig {
            payer: addr(&self.payer, "channelConfig.payer")?,
            payerAuthorizer: addr(&self.payer_authorizer, "channelConfig.payerAuthorizer")?,
            receiver: addr(&self.receiver, "channelConfig.receiver")?,
            receiverAuthorizer: addr(&self.receiver_authorizer, "channelConfig.receiverAuthorizer")?,
            token: addr(&self.token, "channelConfig.token")?,
            withdrawDelay: withdraw_delay,
            salt: bytes32(&self.salt, "channelConfig.salt", super::reason::INVALID_PAYLOAD)?,
        })
    }
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct WireVoucher {
    channel_id: String,
    max_claimable_amount: String,
    signature: String,
}

impl WireVoucher {
    fn parse(&self) -> Result<SignedVoucher, Rejection> {
        Ok(SignedVoucher {
            channel_id: bytes32(&self.channel_id, "voucher.channelId", reason::CHANNEL_ID_INVALID)?,
            max_claimable: parse_decimal(&self.max_claimable_amount)
                .and_then(|v| u128::try_from(v).ok())
                .ok_or_else(|| {
                    Rejection::new(
                        super::reason::INVALID_PAYLOAD,
                        "voucher.maxClaimableAmount must be a decimal integer below 2^128",
                    )
                })?,
            signature: signature(&self.signature, "voucher.signature")?,
        })
    }
}

#[derive(Deserialize)]
struct WireDeposit {
    amount: String,
    authorization: WireDepositAuthorization,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct WireDepositAuthorization {
    erc3009_authorization: Option<WireErc3009>,
    permit2_authorization: Option<WirePermit2>,
}

impl WireDepositAuthorization {
    fn parse(&self) -> Result<DepositAuthorization, Rejection> {
        let int = |s: &str, what: &str| {
            parse_decimal(s).ok_or_else(|| {
                Rejection::new(
                    super::reason::INVALID_PAYLOAD,
                    format!("{what} is not a decimal integer string"),
                )
            })
        };
        match (&self.erc3009_authorization, &self.permit2_authorization) {
            (Some(a), None) => Ok(DepositAuthorization::Erc3009 {
                valid_after: int(&a.valid_after, "erc3009Authorization.validAfter")?,
                valid_before: int(&a.valid_before, "erc3009Authorization.validBefore")?,
                salt: bytes32(&a.salt, "erc3009Authorization.salt", super::reason::INVALID_PAYLOAD)?,
                signature: signature(&a.signature, "erc3009Authorization.signature")?,
            }),
            (None, Some(p)) => Ok(DepositAuthorization::Permit2 {
                from: addr(&p.from, "permit2Authorization.from")?,
                token: addr(&p.permitted.token, "permit2Authorization.permitted.token")?,
                amount: int(&p.permitted.amount, "permit2Authorization.permitted.amount")?,
                spender: addr(&p.spender, "permit2Authorization.spender")?,
                nonce: int(&p.nonce, "permit2Authorization.nonce")?,
                deadline: int(&p.deadline, "permit2Authorization.deadline")?,
                channel_id: bytes32(
                    &p.witness.channel_id,
                    "permit2Authorization.witness.channelId",
                    reason::CHANNEL_ID_INVALID,
                )?,
                signature: signature(&p.signature, "permit2Authorization.signature")?,
            }),
            _ => Err(Rejection::new(
                reason::PAYLOAD_TYPE,
                "deposit.authorization holds exactly one of erc3009Authorization and permit2Authorization",
            )),
        }
    }
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct WireErc3009 {
    valid_after: String,
    valid_before: String,
    salt: String,
    signature: String,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct WirePermit2 {
    from: String,
    permitted: WirePermitted,
    spender: String,
    nonce: String,
    deadline: String,
    witness: WireWitness,
    signature: String,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct WireWitness {
    channel_id: String,
}

#[cfg(test)]
mod tests {
    use super::*;
    use alloy::primitives::b256;

    /// The SDK reference's vector: payer = payerAuthorizer = anvil account 0, receiver account 1,
    /// receiverAuthorizer account 2, Base Sepolia USDC, delay 900, zero salt.
    fn vector_config() -> ChannelConfig {
        ChannelConfig {
            payer: address!("f39Fd6e51aad88F6F4ce6aB8827279cffFb92266"),
            payerAuthorizer: address!("f39Fd6e51aad88F6F4ce6aB8827279cffFb92266"),
            receiver: address!("70997970C51812dc3A010C7d01b50e0d17dc79C8"),
            receiverAuthorizer: address!("3C44CdDdB6a900fa2b585dd299e03d12FA4293BC"),
            token: address!("036CbD53842c5426634e7929541eC2318f3dCF7e"),
            withdrawDelay: U40::from(900),
            salt: B256::ZERO,
        }
    }

    #[test]
    fn type_hashes_and_digests_match_the_official_sdks_vectors() {
        let config = vector_config();
        assert_eq!(
            config.eip712_hash_struct(),
            b256!("536446274cb8d077cc3240ec0557fd6b7c02b4fd963ac94fc330e743fa8d54c1")
        );
        for (chain, id, voucher, refund, claims) in [
            (
                84_532,
                b256!("29ccd7626a1289e60f2284c95763b20cf4a944f591a4f613133e6cf22eb9196d"),
                b256!("beb0e53efa76256c494cc2640bca70e7002e826b27091240a3af90066a676366"),
                b256!("c3a640ecdf881a2693c2be9bfa454a83371a98ea7c183e92e65b3ccfef87f145"),
                b256!("8613ca04d45a16ff43122b8e9c4117d60d4cd44bbce8909ef9b110210ac6fe46"),
            ),
            (
                31_337,
                b256!("b6593707755f39d506654c82c56f5780e9c57bff675508b04d334e57f0ef2358"),
                b256!("e128ea3230613bd54378401df258c3ea08becb7b4543bd541911feeae5f066d6"),
                b256!("6aa3cab38b8ad93e90075439a4db0693994a3d9beeb2ab13d3790adab773e9a5"),
                b256!("e6b54282b324a0eae77cc6dc71ef63c8433ff572fe5dbf6fba00cc33df024285"),
            ),
        ] {
            assert_eq!(channel_id(&config, chain), id, "channel id on {chain}");
            assert_eq!(voucher_digest(id, 1000, chain), voucher, "voucher on {chain}");
            assert_eq!(refund_digest(id, U256::ZERO, 500, chain), refund, "refund on {chain}");
            let entry = ClaimEntry {
                channelId: id,
                maxClaimableAmount: 1000,
                totalClaimed: 700,
            };
            assert_eq!(claim_batch_digest(vec![entry], chain), claims, "claim batch on {chain}");
        }
        let salt = B256::repeat_byte(0x11);
        assert_eq!(
            deposit_nonce(
                b256!("29ccd7626a1289e60f2284c95763b20cf4a944f591a4f613133e6cf22eb9196d"),
                salt
            ),
            b256!("7cdfc15e100a0559497896a9bb41e6949baa63ec9924f8d3e79f7b4f64e32c24")
        );
    }

    /// The Python client's deposit payload from the SDK reference (Base Sepolia, price 10000).
    fn client_deposit() -> Value {
        serde_json::from_str(r#"{"type":"deposit","channelConfig":{"payer":"0xf39Fd6e51aad88F6F4ce6aB8827279cffFb92266","payerAuthorizer":"0xf39Fd6e51aad88F6F4ce6aB8827279cffFb92266","receiver":"0x70997970C51812dc3A010C7d01b50e0d17dc79C8","receiverAuthorizer":"0x3C44CdDdB6a900fa2b585dd299e03d12FA4293BC","token":"0x036CbD53842c5426634e7929541eC2318f3dCF7e","withdrawDelay":900,"salt":"0x0000000000000000000000000000000000000000000000000000000000000000"},
 "voucher":{"channelId":"0x29ccd7626a1289e60f2284c95763b20cf4a944f591a4f613133e6cf22eb9196d","maxClaimableAmount":"10000","signature":"0x86d4aa709e395d28dc3b0dfe63993452688621cf7db39e0c420c0679297fc89a2c5fb76320d011ac5a100048ae287f84802d995008d5db09f08a887006a1fd031c"},
 "deposit":{"amount":"100000","authorization":{"erc3009Authorization":{"validAfter":"0","validBefore":"1796521387","salt":"0x22beca1d4d6ff12f0450920deb6c09accefb551fc2b919ca6fb8ab7076238a07","signature":"0x5dd0aa1ad29ea6abf45ec9cb7d75030360854c470c332c2f778ff928044d9f6e3bfc56c245d5a06d80b70dcd204425ddf756a655904ff7ffd0ad1eb70671bcf71b"}}}}"#).unwrap()
    }

    #[test]
    fn the_python_clients_deposit_parses_to_its_channel_and_amounts() {
        let p = BatchPayload::parse(&client_deposit()).unwrap();
        assert_eq!(p.config, vector_config());
        assert!(p.channel_matches(84_532));
        assert!(!p.channel_matches(31_337), "the id is chain-bound");
        assert_eq!(p.voucher.max_claimable, 10_000);
        assert_eq!(p.voucher.signature.len(), 65);
        let Kind::Deposit { amount, authorization } = p.kind else {
            panic!("a deposit: {:?}", p.kind)
        };
        let DepositAuthorization::Erc3009 { valid_before, .. } = *authorization else {
            panic!("an EIP-3009 deposit: {authorization:?}")
        };
        assert_eq!((amount, valid_before), (100_000, U256::from(1_796_521_387u64)));
        // The wire form of the config round-trips.
        let again: WireConfig = serde_json::from_value(config_json(&p.config)).unwrap();
        assert_eq!(again.parse().unwrap(), p.config);
    }

    #[test]
    fn malformed_payloads_are_refused_with_the_scheme_reason() {
        let refused = |edit: &dyn Fn(&mut Value)| {
            let mut v = client_deposit();
            edit(&mut v);
            BatchPayload::parse(&v).unwrap_err().reason
        };
        assert_eq!(refused(&|v| v["type"] = json!("claim")), reason::PAYLOAD_TYPE);
        assert_eq!(
            refused(&|v| v["voucher"]["channelId"] = json!("0x29cc")),
            reason::CHANNEL_ID_INVALID
        );
        assert_eq!(
            refused(&|v| v["channelConfig"]["withdrawDelay"] = json!(1u64 << 40)),
            reason::WITHDRAW_DELAY_OUT_OF_RANGE
        );
        assert_eq!(
            refused(&|v| v["deposit"]["authorization"]["permit2Authorization"] = json!({})),
            super::super::reason::INVALID_PAYLOAD,
            "a half-formed second authorization is not a payload"
        );
        assert_eq!(
            refused(&|v| v["deposit"]["amount"] = json!("0")),
            super::super::reason::INVALID_PAYLOAD
        );
        assert_eq!(
            refused(&|v| v["deposit"]["authorization"] = json!({})),
            reason::PAYLOAD_TYPE
        );
        assert_eq!(
            refused(&|v| v["voucher"]["maxClaimableAmount"] = json!("1e5")),
            super::super::reason::INVALID_PAYLOAD
        );
        let mut refund = client_deposit();
        refund["type"] = json!("refund");
        refund["amount"] = json!("0");
        assert_eq!(
            BatchPayload::parse(&refund).unwrap_err().reason,
            reason::REFUND_AMOUNT_INVALID
        );
        refund.as_object_mut().unwrap().remove("amount");
        assert_eq!(
            BatchPayload::parse(&refund).unwrap().kind,
            Kind::Refund { amount: None },
            "no amount: everything unclaimed"
        );
    }
}
