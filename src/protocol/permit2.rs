//! `exact` through Permit2 (x402-notes §9.1): for any ERC-20 the payer has approved to Permit2 once. The
//! payer signs a `PermitWitnessTransferFrom` under Permit2's EIP-712 domain (no version) whose spender is
//! the x402 exact proxy and whose witness names the recipient; the proxy moves the tokens. The contract
//! addresses are the same on every chain (CREATE2), so they are facts of the protocol, not configuration.
//! `upto` is the same payload with one more witness field, the facilitator allowed to settle it, and the
//! upto proxy as spender.

use alloy::primitives::{address, Address, Bytes, B256, U256};
use alloy::sol;
use alloy::sol_types::{Eip712Domain, SolStruct};
use serde::Deserialize;
use serde_json::Value;

use super::exact::{eip712_digest, parse_address, parse_decimal, AuthorizationId, Rejection, Scheme};
use super::network::Network;
use super::reason;

/// Uniswap's Permit2.
pub const PERMIT2: Address = address!("000000000022D473030F116dDEE9F6B43aC78BA3");
/// `x402ExactPermit2Proxy`: the spender of an `exact` payment made through Permit2.
pub const EXACT_PROXY: Address = address!("402085c248EeA27D92E8b30b2C58ed07f9E20001");
/// `x402UptoPermit2Proxy`: the spender of an `upto` payment; only the facilitator named in the witness
/// may settle through it.
pub const UPTO_PROXY: Address = address!("4020A4f3b7b90ccA423B9fabCc0CE57C6C240002");
/// The `batch-settlement` Permit2 deposit collector: the spender of a Permit2 deposit into a channel.
pub const BATCH_COLLECTOR: Address = address!("4020425FAf3B746C082C2f942b4E5159887B0005");

sol! {
    /// What the payer lets the spender take.
    struct TokenPermissions {
        address token;
        uint256 amount;
    }

    /// The exact proxy's witness: who is paid, and from when.
    struct Witness {
        address to;
        uint256 validAfter;
    }

    /// The signed message; field order and the referenced types are part of the type hash.
    struct PermitWitnessTransferFrom {
        TokenPermissions permitted;
        address spender;
        uint256 nonce;
        uint256 deadline;
        Witness witness;
    }
}

/// `upto`'s EIP-712 types: the same names as `exact`'s (they are part of the type hash), with the
/// facilitator in the witness; `TokenPermissions` is the one above.
mod upto {
    use super::TokenPermissions;
    use alloy::sol;

    sol! {
        struct Witness {
            address to;
            address facilitator;
            uint256 validAfter;
        }

        struct PermitWitnessTransferFrom {
            TokenPermissions permitted;
            address spender;
            uint256 nonce;
            uint256 deadline;
            Witness witness;
        }
    }
}

/// A Permit2 authorization (`exact`, or `upto` when the witness names a facilitator), typed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Permit2Authorization {
    pub from: Address,
    pub token: Address,
    pub amount: U256,
    pub spender: Address,
    /// Permit2's unordered nonce: single use per owner across all tokens.
    pub nonce: U256,
    pub deadline: U256,
    pub to: Address,
    pub valid_after: U256,
    /// `upto` only: the one account that may settle it (`msg.sender` of the proxy call).
    pub facilitator: Option<Address>,
}

/// A Permit2 payload: the authorization and the payer's 65-byte signature.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Permit2Payload {
    pub authorization: Permit2Authorization,
    pub signature: Bytes,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct WirePayload {
    signature: String,
    permit2_authorization: WireAuthorization,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct WireAuthorization {
    from: String,
    permitted: WirePermitted,
    spender: String,
    nonce: String,
    deadline: String,
    witness: WireWitness,
}

/// `permitted` as the clients send it (also in a `batch-settlement` Permit2 deposit).
#[derive(Deserialize)]
pub(super) struct WirePermitted {
    pub(super) token: String,
    pub(super) amount: String,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct WireWitness {
    to: String,
    #[serde(default)]
    facilitator: Option<String>,
    valid_after: String,
}

impl Permit2Payload {
    /// Parses the `payload` object of a Permit2 `exact` payment: addresses, decimal integers and a hex
    /// signature, each checked once.
    pub fn parse(payload: &Value) -> Result<Self, Rejection> {
        let bad = |m: String| Rejection::new(reason::INVALID_PAYLOAD, m);
        let w = WirePayload::deserialize(payload).map_err(|e| bad(format!("not a Permit2 payload: {e}")))?;
        let a = &w.permit2_authorization;
        let addr = |s: &str, what: &str| {
            parse_address(s).ok_or_else(|| bad(format!("permit2Authorization.{what} is not a 0x-prefixed address")))
        };
        let int = |s: &str, what: &str| {
            parse_decimal(s).ok_or_else(|| bad(format!("permit2Authorization.{what} is not a decimal integer string")))
        };
        let signature: Bytes = w
            .signature
            .parse()
            .map_err(|_| bad("signature is not 0x-prefixed hex".into()))?;
        Ok(Permit2Payload {
            authorization: Permit2Authorization {
                from: addr(&a.from, "from")?,
                token: addr(&a.permitted.token, "permitted.token")?,
                amount: int(&a.permitted.amount, "permitted.amount")?,
                spender: addr(&a.spender, "spender")?,
                nonce: int(&a.nonce, "nonce")?,
                deadline: int(&a.deadline, "deadline")?,
                to: addr(&a.witness.to, "witness.to")?,
                valid_after: int(&a.witness.valid_after, "witness.validAfter")?,
                facilitator: match &a.witness.facilitator {
                    Some(f) => Some(addr(f, "witness.facilitator")?),
                    None => None,
                },
            },
            signature,
        })
    }

    /// The wire form, as the official clients spell it (decimal strings; the witness's facilitator only for
    /// `upto`, between `to` and `validAfter`).
    pub fn to_json(&self) -> Value {
        let a = &self.authorization;
        let mut witness = serde_json::Map::new();
        witness.insert("to".into(), Value::String(a.to.to_string()));
        if let Some(f) = a.facilitator {
            witness.insert("facilitator".into(), Value::String(f.to_string()));
        }
        witness.insert("validAfter".into(), Value::String(a.valid_after.to_string()));
        serde_json::json!({
            "signature": self.signature.to_string(),
            "permit2Authorization": {
                "from": a.from.to_string(),
                "permitted": {"token": a.token.to_string(), "amount": a.amount.to_string()},
                "spender": a.spender.to_string(),
                "nonce": a.nonce.to_string(),
                "deadline": a.deadline.to_string(),
                "witness": witness,
            }
        })
    }
}

impl Permit2Authorization {
    /// The EIP-712 struct hash of the signed message, under the `upto` types when the witness names a
    /// facilitator.
    pub fn struct_hash(&self) -> B256 {
        match self.facilitator {
            None => self.to_sol().eip712_hash_struct(),
            Some(facilitator) => upto::PermitWitnessTransferFrom {
                permitted: TokenPermissions {
                    token: self.token,
                    amount: self.amount,
                },
                spender: self.spender,
                nonce: self.nonce,
                deadline: self.deadline,
                witness: upto::Witness {
                    to: self.to,
                    facilitator,
                    validAfter: self.valid_after,
                },
            }
            .eip712_hash_struct(),
        }
    }

    /// The signed message of an `exact` authorization (the facilitator is not part of it).
    pub fn to_sol(&self) -> PermitWitnessTransferFrom {
        PermitWitnessTransferFrom {
            permitted: TokenPermissions {
                token: self.token,
                amount: self.amount,
            },
            spender: self.spender,
            nonce: self.nonce,
            deadline: self.deadline,
            witness: Witness {
                to: self.to,
                validAfter: self.valid_after,
            },
        }
    }

    /// The identity that makes it single-use: Permit2's nonces are per owner across every token, so the
    /// asset is Permit2 itself.
    pub fn id(&self, network: Network) -> AuthorizationId {
        AuthorizationId {
            network,
            asset: PERMIT2,
            payer: self.from,
            nonce: B256::from(self.nonce),
        }
    }
}

/// Permit2's EIP-712 domain on a chain: name `Permit2`, no version.
pub fn domain(chain_id: u64) -> Eip712Domain {
    Eip712Domain::new(
        Some("Permit2".into()),
        None,
        Some(U256::from(chain_id)),
        Some(PERMIT2),
        None,
    )
}

/// The digest the payer signs, under Permit2's domain separator on the chain (see [`domain`]; the gateway
/// computes it once per offer).
pub fn signing_hash(domain_separator: &B256, auth: &Permit2Authorization) -> B256 {
    eip712_digest(domain_separator, &auth.struct_hash())
}

/// The proxy a payment of `scheme` names as its spender (and the only contract that can use it).
pub fn spender(scheme: Scheme) -> Address {
    match scheme {
        Scheme::Exact => EXACT_PROXY,
        Scheme::Upto { .. } => UPTO_PROXY,
        Scheme::Batch(_) => BATCH_COLLECTOR,
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn the_type_hash_is_the_one_clients_and_the_proxy_use() {
        // x402-notes §9.1.
        assert_eq!(
            PermitWitnessTransferFrom::eip712_type_hash(&PermitWitnessTransferFrom {
                permitted: TokenPermissions {
                    token: Address::ZERO,
                    amount: U256::ZERO
                },
                spender: Address::ZERO,
                nonce: U256::ZERO,
                deadline: U256::ZERO,
                witness: Witness {
                    to: Address::ZERO,
                    validAfter: U256::ZERO
                },
            }),
            "0xebc156cd23678a74c94df13d772ef5478420637f0c94bd10d509e1dc98f521c7"
                .parse::<B256>()
                .unwrap()
        );
    }

    /// The official clients' signature of the `exact` vector below (eth_account, anvil key #1).
    pub(crate) const EXACT_SIGNATURE: &str = "0x95d6206fa8109b1f912798e82ad1497871fb1d284cc8679d59afd26e233a43a16f4509a628f749aa6955ee903f2472d4d93f74bb01fb441ffac568381d04838c1c";

    /// The authorization of contracts/PERMIT2-RESEARCH.md §1.4's vector, for `spender` and, for `upto`,
    /// a facilitator.
    pub(crate) fn vector(spender: Address, facilitator: Option<Address>) -> Permit2Authorization {
        Permit2Authorization {
            from: address!("70997970C51812dc3A010C7d01b50e0d17dc79C8"),
            token: address!("5FbDB2315678afecb367f032d93F642f64180aa3"),
            amount: U256::from(10u64).pow(U256::from(18)),
            spender,
            nonce: U256::from(12_345_678_901_234_567_890u64),
            deadline: U256::from(1_900_000_000u64),
            to: address!("3C44CdDdB6a900fa2b585dd299e03d12FA4293BC"),
            valid_after: U256::ZERO,
            facilitator,
        }
    }

    /// The vector in contracts/PERMIT2-RESEARCH.md §1.4, signed with eth_account as the official clients
    /// sign: our digest must be theirs, and their signature must recover to the payer.
    #[test]
    fn the_digest_and_signature_match_the_official_clients_vector() {
        let auth = vector(EXACT_PROXY, None);
        let separator = domain(31_337).separator();
        assert_eq!(
            separator,
            "0x4d553c58ae79a6c4ba64f0e690a5d1cd2deff8c6b91cf38300e0f2b76f9ee346"
                .parse::<B256>()
                .unwrap()
        );
        let digest = signing_hash(&separator, &auth);
        assert_eq!(
            digest,
            "0x533fc143b73d8a9e198d34521d4817a4f74e7810ed8160df8fc456910c6ce37e"
                .parse::<B256>()
                .unwrap()
        );
        let sig: Bytes = EXACT_SIGNATURE.parse().unwrap();
        let sig = alloy::primitives::Signature::try_from(sig.as_ref()).unwrap();
        assert_eq!(sig.recover_address_from_prehash(&digest).unwrap(), auth.from);
    }

    /// The same vector's `upto` column: the witness names the facilitator and the spender is the upto
    /// proxy.
    #[test]
    fn the_upto_digest_matches_the_official_clients_vector() {
        let auth = vector(UPTO_PROXY, Some(address!("90F79bf6EB2c4f870365E785982E1f101E93b906")));
        let digest = signing_hash(&domain(31_337).separator(), &auth);
        assert_eq!(
            digest,
            "0xe802b40b1aa0451ee01554e987b490f3b378c1adca01571c7f7f8585839fdd43"
                .parse::<B256>()
                .unwrap()
        );
        let sig: Bytes = "0x04bf9b81f1d95576f2f9adfc4075a3243fed0de0d2cbef2d481f3ed9c48594970db8cd446c348a650305b65937ed9005034e3dbf33ee6eec17b5f2c10a093fc91b".parse().unwrap();
        let sig = alloy::primitives::Signature::try_from(sig.as_ref()).unwrap();
        assert_eq!(sig.recover_address_from_prehash(&digest).unwrap(), auth.from);
        assert_eq!(
            upto::PermitWitnessTransferFrom::eip712_type_hash(&upto::PermitWitnessTransferFrom {
                permitted: TokenPermissions {
                    token: Address::ZERO,
                    amount: U256::ZERO
                },
                spender: Address::ZERO,
                nonce: U256::ZERO,
                deadline: U256::ZERO,
                witness: upto::Witness {
                    to: Address::ZERO,
                    facilitator: Address::ZERO,
                    validAfter: U256::ZERO
                },
            }),
            "0x51dff6974ad4388c499e7fcfe838d2bd767162553a144098ce20ea661d70c2ee"
                .parse::<B256>()
                .unwrap()
        );
    }

    #[test]
    fn a_client_payload_parses_and_recovers_to_its_payer() {
        use alloy::signers::{local::PrivateKeySigner, SignerSync};
        // anvil dev key #1 pays 1000 units of a token to dev account #2 on chain 31337.
        let signer: PrivateKeySigner = "0x59c6995e998f97a5a0044966f0945389dc9e86dae88c7a8412f4603b6b78690d"
            .parse()
            .unwrap();
        let network = Network::new(31_337);
        let payload = json!({
            "signature": "0x00",
            "permit2Authorization": {
                "from": signer.address().to_string(),
                "permitted": {"token": "0x5FbDB2315678afecb367f032d93F642f64180aa3", "amount": "1000"},
                "spender": EXACT_PROXY.to_string(),
                "nonce": "115792089237316195423570985008687907853269984665640564039457584007913129639935",
                "deadline": "1800000000",
                "witness": {"to": "0x3C44CdDdB6a900fa2b585dd299e03d12FA4293BC", "validAfter": "0"}
            }
        });
        let mut p = Permit2Payload::parse(&payload).unwrap();
        assert_eq!(p.authorization.nonce, U256::MAX);
        assert_eq!(Permit2Payload::parse(&p.to_json()).unwrap(), p);
        let digest = signing_hash(&domain(network.chain_id).separator(), &p.authorization);
        p.signature = signer.sign_hash_sync(&digest).unwrap().as_bytes().to_vec().into();
        let sig = alloy::primitives::Signature::try_from(p.signature.as_ref()).unwrap();
        assert_eq!(sig.recover_address_from_prehash(&digest).unwrap(), signer.address());
        assert_eq!(p.authorization.id(network).asset, PERMIT2);
        let broken = json!({"signature": "0x00", "permit2Authorization": {"from": "0x1"}});
        assert_eq!(
            Permit2Payload::parse(&broken).unwrap_err().reason,
            reason::INVALID_PAYLOAD
        );
    }
}
