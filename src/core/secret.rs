//! A value that must never reach a log: keys and facilitator credentials.

use std::fmt;

/// Holds a secret string; `Debug` and `Display` print `***`.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(String);

impl Secret {
    /// Wraps a secret.
    pub fn new(s: impl Into<String>) -> Self {
        Secret(s.into())
    }

    /// The secret itself, for the one place that needs it.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("***")
    }
}

impl fmt::Display for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("***")
    }
}

/// Reads a private key from the environment variable `var`; the error never contains the value.
pub fn private_key_from_env(var: &str) -> Result<alloy::signers::local::PrivateKeySigner, String> {
    let raw = std::env::var(var).map_err(|_| format!("set {var} to a 0x-prefixed hex private key"))?;
    Secret::new(raw)
        .expose()
        .trim()
        .parse()
        .map_err(|_| format!("{var} is not a valid hex private key (expected 32 bytes of hex, optionally 0x-prefixed)"))
}
