//! The `payment-identifier` extension (x402 v2, x402-notes §12.2 and §14): an idempotency key a client
//! attaches to a payment, so a retry of the same payment gets the same answer instead of a second charge.
//! The server declares it in the 402 (`extensions["payment-identifier"] = {info: {required}, schema}`); the
//! client echoes it with `info.id` added.

use serde::Deserialize;
use serde_json::{json, Value};

/// The extension's key in `extensions`.
pub const PAYMENT_IDENTIFIER: &str = "payment-identifier";
/// Shortest id accepted.
pub const MIN_LEN: usize = 16;
/// Longest id accepted.
pub const MAX_LEN: usize = 128;

/// Whether a priced route takes the `payment-identifier` extension (idempotent retries by id).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum PaymentIdMode {
    /// Not declared; ids are ignored.
    #[default]
    Off,
    /// Declared; a payment may carry an id.
    Optional,
    /// Declared as required; a payment without an id is refused (400).
    Required,
}

/// The declaration a 402 carries: whether an id is required, and the JSON Schema of `info`.
pub fn declaration(required: bool) -> Value {
    json!({
        "info": {"required": required},
        "schema": {
            "$schema": "https://json-schema.org/draft/2020-12/schema",
            "type": "object",
            "properties": {
                "required": {"type": "boolean"},
                "id": {"type": "string", "minLength": MIN_LEN, "maxLength": MAX_LEN, "pattern": "^[a-zA-Z0-9_-]+$"}
            },
            "required": ["required"]
        }
    })
}

/// The id a payment's `extensions` carry: `Ok(None)` when there is none, `Err` when it is malformed.
pub fn id(extensions: Option<&Value>) -> Result<Option<String>, String> {
    let Some(id) = extensions
        .and_then(|e| e.get(PAYMENT_IDENTIFIER))
        .and_then(|p| p.get("info"))
        .and_then(|i| i.get("id"))
    else {
        return Ok(None);
    };
    let id = id
        .as_str()
        .ok_or_else(|| "extensions.payment-identifier.info.id must be a string".to_owned())?;
    let ok = (MIN_LEN..=MAX_LEN).contains(&id.len())
        && id.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_');
    if !ok {
        return Err(format!(
            "extensions.payment-identifier.info.id must be {MIN_LEN}-{MAX_LEN} characters of A-Z, a-z, 0-9, '-' and '_'"
        ));
    }
    Ok(Some(id.to_owned()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_are_16_to_128_safe_characters() {
        let ext = |id: Value| json!({"payment-identifier": {"info": {"required": false, "id": id}}});
        assert_eq!(id(None), Ok(None));
        assert_eq!(id(Some(&json!({"other": {}}))), Ok(None));
        assert_eq!(
            id(Some(&ext(json!("pay_0123456789abcdef")))),
            Ok(Some("pay_0123456789abcdef".into()))
        );
        for bad in [
            json!("short"),
            json!("x".repeat(129)),
            json!("has space in it 123"),
            json!(7),
        ] {
            assert!(id(Some(&ext(bad.clone()))).is_err(), "{bad}");
        }
    }
}
