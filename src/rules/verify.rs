//! Local verification of an `exact` payment against the server's own requirement: EIP-3009 (x402-notes
//! §10.1 steps 5–10) or Permit2 (§9.1). Pure: no network, the clock is a parameter.
//!
//! Both the gateway (before spending a facilitator call) and the self-hosted facilitator (before touching
//! the chain) run these checks, so a payment is judged the same way in both places.

use alloy::primitives::{keccak256, Address, B256, U256};
use secp256k1::ecdsa::{RecoverableSignature, RecoveryId};
use secp256k1::Message;

use crate::protocol::erc6492;
use crate::protocol::exact::{signing_hash, ExactPayload, Rejection, Requirement, Transfer};
use crate::protocol::payment::Payment;
use crate::protocol::permit2::{self, Permit2Payload};
use crate::protocol::reason;
use crate::rules::window;

/// Half the secp256k1 group order: USDC's ECRecover refuses any `s` above it (EIP-2 malleability).
const SECP256K1N_HALF: U256 = U256::from_be_slice(&alloy::hex!(
    "7FFFFFFFFFFFFFFFFFFFFFFFFFFFFFFF5D576E7357A4501DDFE92F46681B20A0"
));

/// How the payer's signature was proven.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Proof {
    /// Recovered here: the key of `from` signed it.
    Key,
    /// A contract wallet's signature (ERC-1271, or EIP-6492 for a wallet not deployed yet): not an EOA's
    /// 65 bytes, so nothing local can judge it; the chain must (`isValidSignature`, through the
    /// facilitator's `/verify`). Every other term was checked.
    Contract,
}

/// A payment whose terms hold: who pays, and how that was proven.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Verified {
    pub payer: Address,
    pub proof: Proof,
}

/// Whether `sig` has a contract wallet's shape rather than an EOA's: not 65 bytes, or EIP-6492-wrapped.
/// A 65-byte signature is always an EOA's here and must recover to the payer.
pub fn contract_shaped(sig: &[u8]) -> bool {
    sig.len() != 65 || erc6492::unwrap(sig).is_some()
}

/// Checks a payment against `req` at unix time `now`; returns the payer on success.
///
/// Order follows the reference verifiers so the first failing check names the reason a client expects.
pub fn check(req: &Requirement, payment: &ExactPayload, now: u64) -> Result<Verified, Rejection> {
    let verified = check_signer(req, &req.domain().separator(), payment)?;
    window::check(&payment.authorization, now)?;
    check_value(req, payment)?;
    Ok(verified)
}

/// The parts that do not depend on the clock: domain, signature, recipient and amount, under the
/// requirement's precomputed EIP-712 domain separator. Used on its own to recognise a payment that was
/// already submitted for settlement, whatever the time is now.
pub fn check_terms(req: &Requirement, domain_separator: &B256, payment: &ExactPayload) -> Result<Verified, Rejection> {
    let verified = check_signer(req, domain_separator, payment)?;
    check_value(req, payment)?;
    Ok(verified)
}

/// The EIP-712 domain is complete, the signature recovers to `from` (or has a contract wallet's shape,
/// left to the chain), and `to` is the payee.
fn check_signer(req: &Requirement, domain_separator: &B256, payment: &ExactPayload) -> Result<Verified, Rejection> {
    let auth = &payment.authorization;
    if req.eip712_name.is_empty() || req.eip712_version.is_empty() {
        return Err(Rejection::new(
            reason::MISSING_EIP712_DOMAIN,
            "the requirement has no EIP-712 name/version",
        ));
    }
    let proof = if contract_shaped(&payment.signature) {
        if let Some(Err(())) = erc6492::unwrap(&payment.signature) {
            return Err(Rejection::new(
                reason::INVALID_SIGNATURE,
                "the signature ends with the EIP-6492 suffix but is not abi.encode(address, bytes, bytes)",
            ));
        }
        Proof::Contract
    } else {
        let signer = recover(domain_separator, payment)?;
        if signer != auth.from {
            return Err(Rejection::new(
                reason::INVALID_SIGNATURE,
                format!("signature recovers to {signer}, not authorization.from {}", auth.from),
            ));
        }
        Proof::Key
    };
    if auth.to != req.pay_to {
        return Err(Rejection::new(
            reason::RECIPIENT_MISMATCH,
            format!("authorization.to is {}, this resource pays {}", auth.to, req.pay_to),
        ));
    }
    Ok(Verified {
        payer: auth.from,
        proof,
    })
}

/// The exact amount (every v2 SDK requires equality).
fn check_value(req: &Requirement, payment: &ExactPayload) -> Result<(), Rejection> {
    let value = payment.authorization.value;
    if value != req.amount {
        return Err(Rejection::new(
            reason::VALUE_MISMATCH,
            format!("authorization.value is {value}, the price is {}", req.amount),
        ));
    }
    Ok(())
}

/// Recovers the EOA that signed the authorization, with USDC's rules: 65 bytes `r‖s‖v`, `v` ∈ {27, 28},
/// low `s`.
fn recover(domain_separator: &B256, payment: &ExactPayload) -> Result<Address, Rejection> {
    let digest = signing_hash(domain_separator, &payment.authorization);
    recover_signer(&digest, payment.signature.as_ref(), reason::INVALID_SIGNATURE)
}

/// The EOA whose 65-byte `r‖s‖v` signature (`v` ∈ {27, 28}, low `s`) signed `digest`; refusals carry `why`.
pub fn recover_signer(digest: &B256, sig: &[u8], why: &'static str) -> Result<Address, Rejection> {
    let bad = |m: &str| Rejection::new(why, m.to_owned());
    let (Some(compact), Some(&v), 65) = (sig.get(..64), sig.get(64), sig.len()) else {
        return Err(bad("an EOA signature is 65 bytes (r||s||v)"));
    };
    let recovery_id = match v {
        27 => RecoveryId::Zero,
        28 => RecoveryId::One,
        _ => return Err(bad("signature v must be 27 or 28")),
    };
    if U256::from_be_slice(&compact[32..]) > SECP256K1N_HALF {
        return Err(bad("signature s is in the upper half of the curve order (malleable)"));
    }
    let compact = RecoverableSignature::from_compact(compact, recovery_id)
        .map_err(|_| bad("signature is not a valid secp256k1 signature"))?;
    let key = secp256k1::SECP256K1
        .recover_ecdsa(&Message::from_digest(digest.0), &compact)
        .map_err(|_| bad("no public key recovers from this signature"))?;
    // An Ethereum address is the last 20 bytes of keccak256 of the uncompressed key without its 0x04 prefix.
    let uncompressed = key.serialize_uncompressed();
    Ok(Address::from_slice(&keccak256(&uncompressed[1..])[12..]))
}

/// Checks an `exact` payment, whichever way it moves the tokens, at unix time `now`; returns the payer.
pub fn check_payment(req: &Requirement, payment: &Payment, now: u64) -> Result<Verified, Rejection> {
    match (payment, req.transfer) {
        (Payment::Eip3009(p), Transfer::Eip3009) => check(req, p, now),
        (Payment::Permit2(p), Transfer::Permit2) => {
            window::check_permit2(&p.authorization, now)?;
            check_permit2_terms(req, &permit2::domain(req.network.chain_id).separator(), p).map(by_key)
        }
        _ => Err(other_transfer()),
    }
}

/// [`check_payment`] without the clock, under the offer's precomputed `domain_separator` (the token's for
/// EIP-3009, Permit2's for Permit2).
pub fn check_payment_terms(
    req: &Requirement,
    domain_separator: &B256,
    payment: &Payment,
) -> Result<Verified, Rejection> {
    match (payment, req.transfer) {
        (Payment::Eip3009(p), Transfer::Eip3009) => check_terms(req, domain_separator, p),
        (Payment::Permit2(p), Transfer::Permit2) => check_permit2_terms(req, domain_separator, p).map(by_key),
        _ => Err(other_transfer()),
    }
}

/// A payer proven by its key (Permit2 payers are EOAs here: a contract wallet pays by EIP-3009).
fn by_key(payer: Address) -> Verified {
    Verified {
        payer,
        proof: Proof::Key,
    }
}

/// A payment that moves the tokens another way than its offer asks: never checked under the wrong domain.
fn other_transfer() -> Rejection {
    Rejection::new(
        reason::INVALID_PAYLOAD,
        "the payment moves the tokens another way than this offer asks (EIP-3009 vs Permit2)",
    )
}

/// The parts of a Permit2 `exact` payment that do not depend on the clock (x402-notes §9.1, in the
/// reference order: spender, recipient, amount, token, signature); returns the payer.
fn check_permit2_terms(
    req: &Requirement,
    domain_separator: &B256,
    payment: &Permit2Payload,
) -> Result<Address, Rejection> {
    let auth = &payment.authorization;
    let (spender, facilitator) = (permit2::spender(req.scheme), req.settler());
    if auth.spender != spender {
        return Err(Rejection::new(
            reason::PERMIT2_SPENDER,
            format!(
                "the spender is {}, not the x402 {} proxy {spender}",
                auth.spender,
                req.scheme.name()
            ),
        ));
    }
    // An `upto` witness names who may settle it; an `exact` one names nobody (the type hash differs).
    if auth.facilitator != facilitator {
        let named = |a: Option<Address>| a.map_or_else(|| "no facilitator".to_owned(), |a| a.to_string());
        return Err(Rejection::new(
            reason::UPTO_FACILITATOR_MISMATCH,
            format!(
                "witness.facilitator is {}, this resource's {} offer names {}",
                named(auth.facilitator),
                req.scheme.name(),
                named(facilitator)
            ),
        ));
    }
    if auth.to != req.pay_to {
        return Err(Rejection::new(
            reason::PERMIT2_RECIPIENT_MISMATCH,
            format!("witness.to is {}, this resource pays {}", auth.to, req.pay_to),
        ));
    }
    if auth.amount != req.amount {
        return Err(Rejection::new(
            reason::PERMIT2_AMOUNT_MISMATCH,
            format!("permitted.amount is {}, the price is {}", auth.amount, req.amount),
        ));
    }
    if auth.token != req.asset {
        return Err(Rejection::new(
            reason::PERMIT2_TOKEN_MISMATCH,
            format!(
                "permitted.token is {}, this resource is priced in {}",
                auth.token, req.asset
            ),
        ));
    }
    let digest = permit2::signing_hash(domain_separator, auth);
    let signer = recover_signer(&digest, payment.signature.as_ref(), reason::PERMIT2_SIGNATURE)?;
    if signer != auth.from {
        return Err(Rejection::new(
            reason::PERMIT2_SIGNATURE,
            format!(
                "signature recovers to {signer}, not permit2Authorization.from {}",
                auth.from
            ),
        ));
    }
    Ok(signer)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::protocol::exact::{Authorization, Scheme};
    use crate::protocol::network::Network;
    use alloy::primitives::{address, b256, Bytes, Signature};
    use alloy::sol_types::SolStruct;

    // Golden vector, x402-notes §8.4: anvil dev key #0 signing the spec's example authorization.
    const SIG: &str = "0xdc53a4a579de989368a0fae2ef2172ff2f474b4297013f865d171239f17ef4c3157b4b4030f1bebc53d55ace15c2377dff501a60e1e56c291f1000d6e78f082f1b";
    const NOW: u64 = 1_740_672_100;

    fn requirement() -> Requirement {
        Requirement {
            scheme: Scheme::Exact,
            network: Network::new(84_532),
            asset: address!("036CbD53842c5426634e7929541eC2318f3dCF7e"),
            pay_to: address!("209693Bc6afc0C5328bA36FaF03C514EF312287C"),
            amount: U256::from(10_000),
            max_timeout_seconds: 60,
            eip712_name: "USDC".into(),
            eip712_version: "2".into(),
            transfer: Default::default(),
        }
    }

    fn payment() -> ExactPayload {
        ExactPayload {
            signature: SIG.parse::<Bytes>().unwrap(),
            authorization: Authorization {
                from: address!("f39Fd6e51aad88F6F4ce6aB8827279cffFb92266"),
                to: address!("209693Bc6afc0C5328bA36FaF03C514EF312287C"),
                value: U256::from(10_000),
                valid_after: U256::from(1_740_672_089u64),
                valid_before: U256::from(1_740_672_154u64),
                nonce: b256!("f3746613c2d920b5fdabc0856f2aeb2d4f88ee6037b8cc5d04a71a4462f13480"),
            },
        }
    }

    #[test]
    fn golden_vector_domain_separator_and_digest() {
        let req = requirement();
        assert_eq!(
            req.domain().separator(),
            b256!("71f17a3b2ff373b803d70a5a07c046c1a2bc8e89c09ef722fcb047abe94c9818")
        );
        assert_eq!(
            req.signing_hash(&payment().authorization),
            b256!("50708d3bf7216e1aeabe7bf22081b9f36c7c287530f92510318f13a03d89dc86")
        );
        assert_eq!(
            alloy::primitives::keccak256(
                crate::protocol::exact::TransferWithAuthorization::eip712_encode_type().as_bytes()
            ),
            b256!("7c7c6cdb67a18743f49ec6fa9b35f50d52ed05cbed4cc592e13b44501c1a2267")
        );
    }

    #[test]
    fn golden_vector_signature_is_reproduced_by_signing() {
        use alloy::signers::{local::PrivateKeySigner, SignerSync};
        let key: PrivateKeySigner = "0xac0974bec39a17e36ba4a6b4d238ff944bacb478cbed5efcae784d7bf4f2ff80"
            .parse()
            .unwrap();
        let sig = key
            .sign_hash_sync(&requirement().signing_hash(&payment().authorization))
            .unwrap();
        assert_eq!(Bytes::from(sig.as_bytes()).to_string(), SIG);
    }

    #[test]
    fn golden_vector_verifies() {
        assert_eq!(
            check(&requirement(), &payment(), NOW),
            Ok(by_key(address!("f39Fd6e51aad88F6F4ce6aB8827279cffFb92266")))
        );
    }

    #[test]
    fn golden_v1_header_decodes_to_the_vector() {
        let header = "eyJ4NDAyVmVyc2lvbiI6MSwic2NoZW1lIjoiZXhhY3QiLCJuZXR3b3JrIjoiYmFzZS1zZXBvbGlhIiwicGF5bG9hZCI6eyJzaWduYXR1cmUiOiIweGRjNTNhNGE1NzlkZTk4OTM2OGEwZmFlMmVmMjE3MmZmMmY0NzRiNDI5NzAxM2Y4NjVkMTcxMjM5ZjE3ZWY0YzMxNTdiNGI0MDMwZjFiZWJjNTNkNTVhY2UxNWMyMzc3ZGZmNTAxYTYwZTFlNTZjMjkxZjEwMDBkNmU3OGYwODJmMWIiLCJhdXRob3JpemF0aW9uIjp7ImZyb20iOiIweGYzOUZkNmU1MWFhZDg4RjZGNGNlNmFCODgyNzI3OWNmZkZiOTIyNjYiLCJ0byI6IjB4MjA5NjkzQmM2YWZjMEM1MzI4YkEzNkZhRjAzQzUxNEVGMzEyMjg3QyIsInZhbHVlIjoiMTAwMDAiLCJ2YWxpZEFmdGVyIjoiMTc0MDY3MjA4OSIsInZhbGlkQmVmb3JlIjoiMTc0MDY3MjE1NCIsIm5vbmNlIjoiMHhmMzc0NjYxM2MyZDkyMGI1ZmRhYmMwODU2ZjJhZWIyZDRmODhlZTYwMzdiOGNjNWQwNGE3MWE0NDYyZjEzNDgwIn19fQ==";
        let p: crate::protocol::v1::PaymentPayload = crate::protocol::codec::decode(header.as_bytes()).unwrap();
        assert_eq!(p.network, "base-sepolia");
        assert_eq!(ExactPayload::parse(&p.payload).unwrap(), payment());
        // Our encoder produces the same bytes (compact JSON, same key order).
        let ours = serde_json::json!({"x402Version":1,"scheme":"exact","network":"base-sepolia","payload":payment().to_json()});
        let reparsed: serde_json::Value =
            crate::protocol::codec::decode(crate::protocol::codec::encode(&ours).as_bytes()).unwrap();
        assert_eq!(reparsed, serde_json::to_value(&p).unwrap());
    }

    #[test]
    fn each_tampered_field_is_refused_with_its_reason() {
        let req = requirement();
        type Tamper = Box<dyn Fn(&mut ExactPayload, &mut Requirement)>;
        let cases: Vec<(&str, Tamper)> = vec![
            (
                reason::INVALID_SIGNATURE,
                Box::new(|p, _| p.authorization.value = U256::from(10_001)),
            ),
            (
                reason::RECIPIENT_MISMATCH,
                Box::new(|_, r| r.pay_to = address!("0000000000000000000000000000000000000001")),
            ),
            (reason::VALUE_MISMATCH, Box::new(|_, r| r.amount = U256::from(9_999))),
            (
                reason::INVALID_SIGNATURE,
                Box::new(|_, r| r.network = Network::new(8453)),
            ),
            (
                reason::INVALID_SIGNATURE,
                Box::new(|_, r| r.eip712_name = "USD Coin".into()),
            ),
            (
                reason::MISSING_EIP712_DOMAIN,
                Box::new(|_, r| r.eip712_version = String::new()),
            ),
        ];
        for (want, tamper) in cases {
            let (mut p, mut r) = (payment(), req.clone());
            tamper(&mut p, &mut r);
            assert_eq!(check(&r, &p, NOW).unwrap_err().reason, want);
        }
    }

    #[test]
    fn terms_under_a_precomputed_separator_agree_with_the_full_check() {
        let req = requirement();
        let sep = req.domain().separator();
        assert_eq!(check_terms(&req, &sep, &payment()), check(&req, &payment(), NOW));
        assert_eq!(
            check_terms(&req, &B256::ZERO, &payment()).unwrap_err().reason,
            reason::INVALID_SIGNATURE
        );
    }

    #[test]
    fn time_window_has_a_six_second_buffer() {
        let (req, p) = (requirement(), payment());
        assert!(check(&req, &p, 1_740_672_154 - 6).is_ok());
        assert_eq!(
            check(&req, &p, 1_740_672_154 - 5).unwrap_err().reason,
            reason::VALID_BEFORE
        );
        assert_eq!(check(&req, &p, 1_740_672_088).unwrap_err().reason, reason::VALID_AFTER);
    }

    #[test]
    fn malleable_and_odd_v_signatures_are_refused() {
        let req = requirement();
        let mut p = payment();
        // High-s twin: s' = n - s, v flipped. Recovers to the same key, but USDC refuses it.
        let sig = Signature::from_raw(p.signature.as_ref()).unwrap();
        let n = U256::from_be_slice(&alloy::hex!(
            "FFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFEBAAEDCE6AF48A03BBFD25E8CD0364141"
        ));
        let twin = Signature::new(sig.r(), n - sig.s(), !sig.v());
        p.signature = Bytes::from(twin.as_bytes());
        assert!(check(&req, &p, NOW).unwrap_err().message.contains("upper half"));
        let mut q = payment();
        let mut raw = q.signature.to_vec();
        raw[64] = 0;
        q.signature = raw.into();
        assert!(check(&req, &q, NOW).unwrap_err().message.contains("27 or 28"));
    }

    #[test]
    fn contract_wallet_signatures_are_left_to_the_chain_and_a_broken_wrapper_is_refused() {
        let req = requirement();
        // An ERC-1271 wallet's signature: any length but 65; every other term is still checked here.
        let mut p = payment();
        p.signature = Bytes::from(vec![0x5a; 96]);
        let contract = Verified {
            payer: p.authorization.from,
            proof: Proof::Contract,
        };
        assert_eq!(check(&req, &p, NOW), Ok(contract));
        p.authorization.value = U256::from(1);
        assert_eq!(check(&req, &p, NOW).unwrap_err().reason, reason::VALUE_MISMATCH);
        // An EIP-6492 wrapper around 65 bytes is still a contract's (the wallet is not deployed yet).
        let mut q = payment();
        q.signature = erc6492::wrap(&erc6492::Wrapped {
            factory: Address::repeat_byte(0x11),
            calldata: Bytes::from(vec![1, 2, 3]),
            signature: payment().signature,
        });
        assert_eq!(check(&req, &q, NOW), Ok(contract));
        // The suffix on something that is not a wrapper.
        let mut broken = vec![0xab; 10];
        broken.extend_from_slice(erc6492::MAGIC.as_slice());
        q.signature = broken.into();
        assert_eq!(check(&req, &q, NOW).unwrap_err().reason, reason::INVALID_SIGNATURE);
    }

    /// The Permit2 vector of contracts/PERMIT2-RESEARCH.md §1.4 (signed as the official clients sign).
    fn permit2_case() -> (Requirement, Permit2Payload) {
        use crate::protocol::permit2::tests::{vector, EXACT_SIGNATURE};
        let authorization = vector(permit2::EXACT_PROXY, None);
        let req = Requirement {
            scheme: Scheme::Exact,
            network: Network::new(31_337),
            asset: authorization.token,
            pay_to: authorization.to,
            amount: authorization.amount,
            max_timeout_seconds: 60,
            eip712_name: String::new(),
            eip712_version: String::new(),
            transfer: Transfer::Permit2,
        };
        let payload = Permit2Payload {
            authorization,
            signature: EXACT_SIGNATURE.parse().unwrap(),
        };
        (req, payload)
    }

    #[test]
    fn permit2_terms_are_checked_field_by_field_under_permit2s_domain() {
        use crate::protocol::permit2::{domain, UPTO_PROXY};
        let (req, good) = permit2_case();
        let separator = domain(31_337).separator();
        let check = |p: &Permit2Payload| check_payment_terms(&req, &separator, &Payment::Permit2(p.clone()));
        assert_eq!(check(&good), Ok(by_key(good.authorization.from)));
        let other = address!("0000000000000000000000000000000000000001");
        type Tamper = fn(&mut Permit2Payload, Address);
        let cases: [(Tamper, &str); 6] = [
            (|p, _| p.authorization.spender = UPTO_PROXY, reason::PERMIT2_SPENDER),
            // An `upto` witness on an `exact` offer.
            (
                |p, a| p.authorization.facilitator = Some(a),
                reason::UPTO_FACILITATOR_MISMATCH,
            ),
            (|p, a| p.authorization.to = a, reason::PERMIT2_RECIPIENT_MISMATCH),
            (
                |p, _| p.authorization.amount += U256::from(1),
                reason::PERMIT2_AMOUNT_MISMATCH,
            ),
            (|p, a| p.authorization.token = a, reason::PERMIT2_TOKEN_MISMATCH),
            // Signed for another nonce: recovers to someone else.
            (|p, _| p.authorization.nonce += U256::from(1), reason::PERMIT2_SIGNATURE),
        ];
        for (tamper, expected) in cases {
            let mut p = good.clone();
            tamper(&mut p, other);
            assert_eq!(check(&p).unwrap_err().reason, expected);
        }
        // Under another domain (the token's, as for EIP-3009) the signature is not the payer's.
        let token_domain = req.domain().separator();
        let wrong = check_payment_terms(&req, &token_domain, &Payment::Permit2(good.clone()));
        assert_eq!(wrong.unwrap_err().reason, reason::PERMIT2_SIGNATURE);
        // A Permit2 payment for an EIP-3009 offer is never checked at all.
        let eip3009 = Requirement {
            scheme: Scheme::Exact,
            transfer: Transfer::Eip3009,
            ..req.clone()
        };
        let mixed = check_payment_terms(&eip3009, &separator, &Payment::Permit2(good.clone()));
        assert_eq!(mixed.unwrap_err().reason, reason::INVALID_PAYLOAD);
        // The window: a deadline 6 s or less away, and a validAfter still to come.
        assert!(check_payment(&req, &Payment::Permit2(good.clone()), 1_900_000_000 - 6).is_ok());
        let late = check_payment(&req, &Payment::Permit2(good.clone()), 1_900_000_000 - 5);
        assert_eq!(late.unwrap_err().reason, reason::PERMIT2_DEADLINE_EXPIRED);
        let mut early = good;
        early.authorization.valid_after = U256::from(1_800_000_001u64);
        let early = check_payment(&req, &Payment::Permit2(early), 1_800_000_000);
        assert_eq!(early.unwrap_err().reason, reason::PERMIT2_NOT_YET_VALID);
    }
}
