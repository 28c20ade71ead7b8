//! What must never reach a log or a client: keys, facilitator credentials, and the secrets providers put
//! in URLs.

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

/// A URL fit for logs and error messages: scheme, host and port only, since RPC providers and facilitators
/// put API keys in paths, queries and user info.
pub fn redact(url: &url::Url) -> String {
    match (url.host_str(), url.port()) {
        (Some(h), Some(p)) => format!("{}://{h}:{p}", url.scheme()),
        (Some(h), None) => format!("{}://{h}", url.scheme()),
        _ => format!("{}://…", url.scheme()),
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

#[cfg(test)]
mod tests {
    #[test]
    fn urls_lose_their_keys_in_messages() {
        let url: url::Url = "https://user:pw@eth-mainnet.example.com/v2/SECRETKEY?apikey=X"
            .parse()
            .unwrap();
        assert_eq!(super::redact(&url), "https://eth-mainnet.example.com");
        let local: url::Url = "http://127.0.0.1:8545".parse().unwrap();
        assert_eq!(super::redact(&local), "http://127.0.0.1:8545");
    }
}
