//! The header encoding shared by every x402 header: standard base64 (with padding) of UTF-8 JSON (x402-notes §3.3).

use base64::engine::general_purpose::STANDARD;
use base64::Engine;
use serde::de::DeserializeOwned;
use serde::Serialize;

/// Largest payment header we decode. Permit2 payloads with extensions run to several KB; 16 KiB leaves room
/// and stops decode bombs.
pub const MAX_HEADER_BYTES: usize = 16 * 1024;

/// Why a header value could not be decoded.
#[derive(Debug, Clone, thiserror::Error, PartialEq, Eq)]
pub enum DecodeError {
    #[error("payment header is {0} bytes; the limit is {MAX_HEADER_BYTES}")]
    TooLarge(usize),
    #[error("payment header is not standard base64 (RFC 4648 §4, with '=' padding)")]
    NotBase64,
    #[error("payment header does not decode to JSON: {0}")]
    NotJson(String),
}

/// Encodes a value as compact JSON in standard base64.
pub fn encode<T: Serialize>(value: &T) -> String {
    // Serialising our own types to a Vec cannot fail: they hold no maps with non-string keys.
    encode_bytes(&serde_json::to_vec(value).unwrap_or_default())
}

/// Encodes bytes that already are JSON.
pub fn encode_bytes(json: &[u8]) -> String {
    STANDARD.encode(json)
}

/// Decodes a header value strictly: size cap, the standard alphabet only, then JSON into `T`.
pub fn decode<T: DeserializeOwned>(value: &[u8]) -> Result<T, DecodeError> {
    if value.len() > MAX_HEADER_BYTES {
        return Err(DecodeError::TooLarge(value.len()));
    }
    // The TS reference checks `^[A-Za-z0-9+/]*={0,2}$` before decoding; do the same so URL-safe or
    // whitespace-padded values are refused rather than guessed at.
    let body_len = value.iter().rposition(|&b| b != b'=').map_or(0, |p| p + 1);
    let padding = value.len() - body_len;
    let alphabet_ok = value[..body_len]
        .iter()
        .all(|b| b.is_ascii_alphanumeric() || *b == b'+' || *b == b'/');
    if !alphabet_ok || padding > 2 {
        return Err(DecodeError::NotBase64);
    }
    let bytes = STANDARD.decode(value).map_err(|_| DecodeError::NotBase64)?;
    serde_json::from_slice(&bytes).map_err(|e| DecodeError::NotJson(e.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips_json() {
        let v = serde_json::json!({"a": 1, "b": "x"});
        let back: serde_json::Value = decode(encode(&v).as_bytes()).unwrap();
        assert_eq!(back, v);
    }

    #[test]
    fn refuses_url_safe_alphabet_and_whitespace() {
        assert_eq!(
            decode::<serde_json::Value>(b"eyJhIjoxfQ-_").unwrap_err(),
            DecodeError::NotBase64
        );
        assert_eq!(
            decode::<serde_json::Value>(b" eyJhIjoxfQ==").unwrap_err(),
            DecodeError::NotBase64
        );
        assert_eq!(
            decode::<serde_json::Value>(b"eyJhIjoxfQ===").unwrap_err(),
            DecodeError::NotBase64
        );
    }

    #[test]
    fn refuses_oversized_headers() {
        let big = vec![b'A'; MAX_HEADER_BYTES + 4];
        assert!(matches!(
            decode::<serde_json::Value>(&big),
            Err(DecodeError::TooLarge(_))
        ));
    }

    #[test]
    fn refuses_non_json() {
        assert!(matches!(
            decode::<serde_json::Value>(b"aGVsbG8="),
            Err(DecodeError::NotJson(_))
        ));
    }
}
