//! Coinbase CDP's API authentication, as its facilitator requires (x402-notes §14.1): every call carries
//! `Authorization: Bearer <JWT>`, a token signed afresh for that one method and URL with the API key, valid
//! for two minutes. Keys are Ed25519 (the secret is base64 of seed ‖ public key, 64 bytes) or ECDSA P-256
//! (the secret is a PEM key, SEC1 `EC PRIVATE KEY` or PKCS#8 `PRIVATE KEY`). Pure: the caller gives the time.

use std::fmt;

use aws_lc_rs::rand::SystemRandom;
use aws_lc_rs::signature::{EcdsaKeyPair, Ed25519KeyPair, KeyPair, ECDSA_P256_SHA256_FIXED_SIGNING};
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use base64::Engine;
use serde::Serialize;

/// How long a token is valid, as every official SDK signs it.
pub const TOKEN_LIFETIME_SECS: u64 = 120;

/// Why a CDP API key cannot be used. Never contains the secret.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum KeyError {
    #[error("the key id is empty")]
    EmptyId,
    #[error("the PEM key secret is not valid PEM ({0}); paste the whole key including its BEGIN/END lines")]
    BadPem(&'static str),
    #[error("the PEM key secret is not an ECDSA P-256 private key (SEC1 or PKCS#8); CDP ECDSA keys are P-256")]
    NotP256,
    #[error(
        "the key secret is neither a PEM ECDSA key nor base64 of a 64-byte Ed25519 key (it decodes to {0} bytes); \
         copy the secret exactly as the CDP portal showed it"
    )]
    NotEd25519(usize),
    #[error("the Ed25519 key secret's two halves do not belong together (seed and public key differ); the secret is damaged")]
    Ed25519Mismatch,
}

/// The signing half of a key.
enum Signer {
    Ed25519(Ed25519KeyPair),
    Es256(EcdsaKeyPair),
}

/// A CDP API key, ready to sign tokens. Its `Debug` shows the id and the algorithm only.
pub struct CdpKey {
    id: String,
    signer: Signer,
    rng: SystemRandom,
}

impl fmt::Debug for CdpKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("CdpKey")
            .field("id", &self.id)
            .field("alg", &self.alg())
            .finish()
    }
}

#[derive(Serialize)]
struct Header<'a> {
    alg: &'a str,
    kid: &'a str,
    typ: &'a str,
    nonce: &'a str,
}

#[derive(Serialize)]
struct Claims<'a> {
    sub: &'a str,
    iss: &'a str,
    nbf: u64,
    iat: u64,
    exp: u64,
    uris: [&'a str; 1],
}

impl CdpKey {
    /// Reads a key from its id and secret as the CDP portal gives them. A PEM secret whose line breaks were
    /// written as `\n` (as in many `.env` files) is accepted too.
    pub fn parse(id: &str, secret: &str) -> Result<Self, KeyError> {
        let id = id.trim();
        if id.is_empty() {
            return Err(KeyError::EmptyId);
        }
        let secret = secret.trim().replace("\\n", "\n");
        let signer = if secret.contains("-----BEGIN") {
            let der = pem_body(&secret)?;
            // Takes RFC 5915 (SEC1) and PKCS#8 alike.
            Signer::Es256(
                EcdsaKeyPair::from_private_key_der(&ECDSA_P256_SHA256_FIXED_SIGNING, &der)
                    .map_err(|_| KeyError::NotP256)?,
            )
        } else {
            let bytes = STANDARD
                .decode(secret.as_bytes())
                .map_err(|_| KeyError::NotEd25519(0))?;
            if bytes.len() != 64 {
                return Err(KeyError::NotEd25519(bytes.len()));
            }
            Signer::Ed25519(
                Ed25519KeyPair::from_seed_and_public_key(&bytes[..32], &bytes[32..])
                    .map_err(|_| KeyError::Ed25519Mismatch)?,
            )
        };
        Ok(CdpKey {
            id: id.to_owned(),
            signer,
            rng: SystemRandom::new(),
        })
    }

    /// The key id (not a secret).
    pub fn id(&self) -> &str {
        &self.id
    }

    /// The JWS algorithm name.
    pub fn alg(&self) -> &'static str {
        match self.signer {
            Signer::Ed25519(_) => "EdDSA",
            Signer::Es256(_) => "ES256",
        }
    }

    /// The public key: 32 bytes (Ed25519) or the 65-byte uncompressed point (P-256). For tests and logs.
    pub fn public_key(&self) -> Vec<u8> {
        match &self.signer {
            Signer::Ed25519(k) => k.public_key().as_ref().to_vec(),
            Signer::Es256(k) => k.public_key().as_ref().to_vec(),
        }
    }

    /// A token for one call: `method` (upper case) on `host` (with `:port` when the URL names one) and
    /// `path`, issued at `now` (unix seconds). `None` only if the system's random source fails.
    pub fn token(&self, method: &str, host: &str, path: &str, now: u64) -> Option<String> {
        let mut nonce = [0u8; 16];
        aws_lc_rs::rand::fill(&mut nonce).ok()?;
        let nonce = alloy::hex::encode(nonce);
        let uri = format!("{method} {host}{path}");
        let header = Header {
            alg: self.alg(),
            kid: &self.id,
            typ: "JWT",
            nonce: &nonce,
        };
        let claims = Claims {
            sub: &self.id,
            iss: "cdp",
            nbf: now,
            iat: now,
            exp: now + TOKEN_LIFETIME_SECS,
            uris: [&uri],
        };
        let mut jwt = String::with_capacity(512);
        URL_SAFE_NO_PAD.encode_string(serde_json::to_vec(&header).ok()?, &mut jwt);
        jwt.push('.');
        URL_SAFE_NO_PAD.encode_string(serde_json::to_vec(&claims).ok()?, &mut jwt);
        let signature = match &self.signer {
            Signer::Ed25519(k) => k.sign(jwt.as_bytes()).as_ref().to_vec(),
            Signer::Es256(k) => k.sign(&self.rng, jwt.as_bytes()).ok()?.as_ref().to_vec(),
        };
        jwt.push('.');
        URL_SAFE_NO_PAD.encode_string(signature, &mut jwt);
        Some(jwt)
    }
}

/// The DER inside the first PEM block.
fn pem_body(pem: &str) -> Result<Vec<u8>, KeyError> {
    let mut lines = pem.lines().map(str::trim).skip_while(|l| !l.starts_with("-----BEGIN"));
    let Some(begin) = lines.next() else {
        return Err(KeyError::BadPem("no BEGIN line"));
    };
    if !begin.ends_with("PRIVATE KEY-----") {
        return Err(KeyError::BadPem("the block is not a private key"));
    }
    let mut body = String::new();
    for line in lines {
        if line.starts_with("-----END") {
            return STANDARD
                .decode(body.as_bytes())
                .map_err(|_| KeyError::BadPem("the body is not base64"));
        }
        // OpenSSL's SEC1 output may carry headers such as `Proc-Type:`; keys from the portal do not.
        if !line.contains(':') {
            body.push_str(line);
        }
    }
    Err(KeyError::BadPem("no END line"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use aws_lc_rs::signature::{UnparsedPublicKey, ECDSA_P256_SHA256_FIXED, ED25519};

    /// A fresh Ed25519 secret as the portal shows it: base64 of seed ‖ public key.
    fn ed25519_secret() -> String {
        let mut seed = [0u8; 32];
        aws_lc_rs::rand::fill(&mut seed).unwrap();
        let pair = Ed25519KeyPair::from_seed_unchecked(&seed).unwrap();
        let mut raw = seed.to_vec();
        raw.extend_from_slice(pair.public_key().as_ref());
        STANDARD.encode(raw)
    }

    fn pem(label: &str, der: &[u8]) -> String {
        let body = STANDARD.encode(der);
        let lines: Vec<&str> = body
            .as_bytes()
            .chunks(64)
            .map(|c| std::str::from_utf8(c).unwrap())
            .collect();
        format!("-----BEGIN {label}-----\n{}\n-----END {label}-----\n", lines.join("\n"))
    }

    /// A fresh P-256 key as PKCS#8 PEM, and the same key as SEC1 PEM.
    fn es256_pems() -> (String, String) {
        use aws_lc_rs::encoding::{AsDer, EcPrivateKeyRfc5915Der};
        let doc = EcdsaKeyPair::generate_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, &SystemRandom::new()).unwrap();
        let pair = EcdsaKeyPair::from_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, doc.as_ref()).unwrap();
        let sec1: EcPrivateKeyRfc5915Der = pair.private_key().as_der().unwrap();
        (pem("PRIVATE KEY", doc.as_ref()), pem("EC PRIVATE KEY", sec1.as_ref()))
    }

    fn decode_part(part: &str) -> serde_json::Value {
        serde_json::from_slice(&URL_SAFE_NO_PAD.decode(part).unwrap()).unwrap()
    }

    /// Checks a token the way CDP would: signature under the public key, then the fields.
    fn check(key: &CdpKey, token: &str) -> (serde_json::Value, serde_json::Value) {
        let parts: Vec<&str> = token.split('.').collect();
        assert_eq!(parts.len(), 3);
        let signed = format!("{}.{}", parts[0], parts[1]);
        let sig = URL_SAFE_NO_PAD.decode(parts[2]).unwrap();
        let alg: &dyn aws_lc_rs::signature::VerificationAlgorithm = match key.alg() {
            "EdDSA" => &ED25519,
            _ => &ECDSA_P256_SHA256_FIXED,
        };
        UnparsedPublicKey::new(alg, key.public_key())
            .verify(signed.as_bytes(), &sig)
            .expect("signature verifies under the key's public half");
        (decode_part(parts[0]), decode_part(parts[1]))
    }

    #[test]
    fn ed25519_tokens_carry_cdps_claims_and_verify() {
        let key = CdpKey::parse("organizations/o/apiKeys/k", &ed25519_secret()).unwrap();
        let token = key
            .token(
                "POST",
                "api.cdp.coinbase.com",
                "/platform/v2/x402/settle",
                1_800_000_000,
            )
            .unwrap();
        let (header, claims) = check(&key, &token);
        assert_eq!(header["alg"], "EdDSA");
        assert_eq!(header["kid"], "organizations/o/apiKeys/k");
        assert_eq!(header["typ"], "JWT");
        assert_eq!(header["nonce"].as_str().unwrap().len(), 32);
        assert_eq!(claims["sub"], "organizations/o/apiKeys/k");
        assert_eq!(claims["iss"], "cdp");
        assert_eq!(claims["nbf"], 1_800_000_000u64);
        assert_eq!(claims["iat"], 1_800_000_000u64);
        assert_eq!(claims["exp"], 1_800_000_120u64);
        assert_eq!(
            claims["uris"],
            serde_json::json!(["POST api.cdp.coinbase.com/platform/v2/x402/settle"])
        );
        assert!(claims.get("aud").is_none());
        let again = key.token(
            "POST",
            "api.cdp.coinbase.com",
            "/platform/v2/x402/settle",
            1_800_000_000,
        );
        assert_ne!(Some(token), again, "a fresh nonce every time");
    }

    #[test]
    fn es256_tokens_are_raw_r_s_and_verify() {
        let (pem, sec1) = es256_pems();
        let key = CdpKey::parse("3f2a", &pem).unwrap();
        assert_eq!(CdpKey::parse("3f2a", &sec1).unwrap().public_key(), key.public_key());
        let token = key.token("GET", "127.0.0.1:9", "/supported", 5).unwrap();
        let (header, claims) = check(&key, &token);
        assert_eq!(header["alg"], "ES256");
        assert_eq!(claims["uris"], serde_json::json!(["GET 127.0.0.1:9/supported"]));
        assert_eq!(
            URL_SAFE_NO_PAD.decode(token.rsplit('.').next().unwrap()).unwrap().len(),
            64
        );
        // The same key written with literal `\n`s, as in a .env file.
        let escaped = pem.replace('\n', "\\n");
        assert_eq!(CdpKey::parse("3f2a", &escaped).unwrap().public_key(), key.public_key());
    }

    #[test]
    fn bad_secrets_are_named_without_echoing_them() {
        let e = CdpKey::parse("k", "c2VjcmV0").unwrap_err();
        assert_eq!(e, KeyError::NotEd25519(6));
        assert!(!e.to_string().contains("c2VjcmV0"));
        assert_eq!(CdpKey::parse(" ", &ed25519_secret()).unwrap_err(), KeyError::EmptyId);
        let mut raw = STANDARD.decode(ed25519_secret()).unwrap();
        raw[40] ^= 1;
        assert_eq!(
            CdpKey::parse("k", &STANDARD.encode(raw)).unwrap_err(),
            KeyError::Ed25519Mismatch
        );
        assert_eq!(
            CdpKey::parse("k", "-----BEGIN PRIVATE KEY-----\nAAAA\n").unwrap_err(),
            KeyError::BadPem("no END line")
        );
        assert_eq!(
            CdpKey::parse("k", "-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----").unwrap_err(),
            KeyError::NotP256
        );
    }
}
