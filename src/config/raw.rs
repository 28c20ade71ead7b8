//! The YAML file as written: serde types that mirror it, with `${VAR}` expanded and each scalar checked
//! as it is read, so an error carries the line and column of the offending value. Unknown keys are errors.

use std::collections::BTreeMap;

use serde::de::{Deserializer, Error as _};
use serde::Deserialize;

/// A string scalar with `${VAR}` expanded from the environment.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Text(pub String);

impl<'de> Deserialize<'de> for Text {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let raw = String::deserialize(d)?;
        expand_env(&raw, lookup_env).map(Text).map_err(D::Error::custom)
    }
}

thread_local! {
    /// The variables `${VAR}` reads while one file is parsed on this thread; `None`: the process environment.
    static ENVIRONMENT: std::cell::RefCell<Option<std::collections::HashMap<String, String>>> = const { std::cell::RefCell::new(None) };
}

/// Looks a variable up in the environment the current parse uses.
pub fn lookup_env(name: &str) -> Option<String> {
    ENVIRONMENT.with(|e| match &*e.borrow() {
        Some(vars) => vars.get(name).cloned(),
        None => std::env::var(name).ok(),
    })
}

/// Runs `f` with `vars` as the environment (`None`: the process's), restoring the previous one after.
pub fn with_env<T>(vars: Option<std::collections::HashMap<String, String>>, f: impl FnOnce() -> T) -> T {
    let previous = ENVIRONMENT.with(|e| e.replace(vars));
    let out = f();
    ENVIRONMENT.with(|e| e.replace(previous));
    out
}

/// Expands `${NAME}` using `lookup`. `$$` is a literal `$`. The error names the variable, never a value.
pub fn expand_env(s: &str, lookup: impl Fn(&str) -> Option<String>) -> Result<String, String> {
    let mut out = String::with_capacity(s.len());
    let mut rest = s;
    while let Some(i) = rest.find('$') {
        out.push_str(&rest[..i]);
        let after = &rest[i + 1..];
        if let Some(tail) = after.strip_prefix('$') {
            out.push('$');
            rest = tail;
        } else if let Some(body) = after.strip_prefix('{') {
            let end = body
                .find('}')
                .ok_or_else(|| format!("unclosed ${{ in {s:?}: write ${{NAME}}"))?;
            let name = &body[..end];
            if name.is_empty() || !name.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_') {
                return Err(format!(
                    "${{{name}}} is not a valid variable reference: use letters, digits and '_'"
                ));
            }
            let value = lookup(name).ok_or_else(|| format!("environment variable {name} is not set (referenced as ${{{name}}}): export it, or remove the reference"))?;
            out.push_str(&value);
            rest = &body[end + 1..];
        } else {
            out.push('$');
            rest = after;
        }
    }
    out.push_str(rest);
    Ok(out)
}

/// Reads a [`Text`] and converts it with `parse`, so the error points at this value.
pub fn parsed<'de, D: Deserializer<'de>, T>(
    d: D,
    parse: impl FnOnce(&str) -> Result<T, String>,
) -> Result<T, D::Error> {
    let Text(s) = Text::deserialize(d)?;
    parse(&s).map_err(D::Error::custom)
}

/// The whole file.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawConfig {
    pub listen: Option<Text>,
    pub admin_listen: Option<Text>,
    #[serde(default)]
    pub upstreams: BTreeMap<String, Text>,
    pub upstream_ca_file: Option<Text>,
    pub facilitator: RawFacilitator,
    pub pay_to: Option<Text>,
    #[serde(default)]
    pub assets: Vec<RawAsset>,
    #[serde(default)]
    pub accepts: Vec<Text>,
    pub max_timeout_seconds: Option<u64>,
    #[serde(default)]
    pub default: DefaultAction,
    #[serde(default)]
    pub routes: Vec<RawRoute>,
}

/// `facilitator:`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawFacilitator {
    pub url: Text,
    pub timeout: Option<Text>,
    #[serde(default)]
    pub headers: BTreeMap<String, Text>,
}

/// `assets:` entries: tokens beyond the built-in USDC table.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawAsset {
    pub network: Text,
    pub address: Text,
    pub name: Text,
    pub version: Text,
    pub decimals: u8,
    pub symbol: Option<Text>,
}

/// What unmatched requests get.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum DefaultAction {
    /// Proxied for free.
    #[default]
    Pass,
    /// 404.
    Deny,
}

/// When a priced route settles.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum SettleMode {
    /// After the upstream answered < 400, before any byte reaches the client.
    #[default]
    After,
    /// Before proxying; the payer pays even if the upstream fails.
    Before,
}

/// Whether the facilitator's `/verify` runs before proxying.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum VerifyMode {
    /// Local checks, then the facilitator's `/verify` (balance, nonce, simulation).
    #[default]
    Remote,
    /// Local checks only; settlement is the only chain check.
    Local,
}

/// `price:` either `"$0.001"` or `{amount, asset}`.
#[derive(Debug)]
pub enum RawPrice {
    Usd(String),
    Atomic { amount: String, asset: String },
}

impl<'de> Deserialize<'de> for RawPrice {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        #[derive(Deserialize)]
        #[serde(deny_unknown_fields)]
        struct Atomic {
            amount: Text,
            asset: Text,
        }
        #[derive(Deserialize)]
        #[serde(untagged)]
        enum Either {
            Usd(Text),
            Atomic(Atomic),
        }
        match Either::deserialize(d).map_err(|_| {
            D::Error::custom("price must be a dollar string like \"$0.001\" or {amount: \"1000\", asset: \"eip155:8453/erc20:0x…\"} (atomic units)")
        })? {
            Either::Usd(Text(s)) => Ok(RawPrice::Usd(s)),
            Either::Atomic(a) => Ok(RawPrice::Atomic { amount: a.amount.0, asset: a.asset.0 }),
        }
    }
}

/// `routes:` entries.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawRoute {
    pub name: Option<Text>,
    pub methods: Option<Vec<Text>>,
    pub host: Option<Text>,
    pub path: Text,
    pub price: Option<RawPrice>,
    #[serde(default)]
    pub free: bool,
    pub accepts: Option<Vec<Text>>,
    pub pay_to: Option<Text>,
    pub description: Option<Text>,
    pub mime_type: Option<Text>,
    pub max_timeout_seconds: Option<u64>,
    pub upstream: Option<Text>,
    pub settle: Option<SettleMode>,
    pub verify: Option<VerifyMode>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn expands_variables_and_escapes() {
        let env = |k: &str| (k == "TOKEN").then(|| "s3cret".to_owned());
        assert_eq!(expand_env("Bearer ${TOKEN}", env).unwrap(), "Bearer s3cret");
        assert_eq!(expand_env("$$5 and $x", env).unwrap(), "$5 and $x");
        let err = expand_env("${MISSING}", env).unwrap_err();
        assert!(err.contains("MISSING is not set"), "{err}");
        assert!(expand_env("${OPEN", env).is_err());
    }
}
