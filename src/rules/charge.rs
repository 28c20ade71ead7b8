//! What a metered (`upto`) call is charged. The upstream says it in its `Settlement-Overrides` response
//! header, `{"amount": "<atomic>" | "<n>%" | "$<x>"}` (x402-notes §11, the reference middleware's
//! spelling); the gateway holds it to the route's terms: never above the maximum the payer signed, never
//! below the route's `min`. Pure: the caller logs the notes and strips the header.

use alloy::primitives::U256;
use serde::Deserialize;

use crate::core::money::UsdPrice;

/// The response header an upstream reports its charge in.
pub const HEADER_SETTLEMENT_OVERRIDES: &str = "settlement-overrides";

/// A charge, and why it is not what the upstream asked for, if it is not.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Charge {
    /// Atomic units of the offer's asset.
    pub amount: U256,
    /// Set when the upstream's report was malformed, capped at the maximum or raised to the minimum.
    pub note: Option<String>,
}

#[derive(Deserialize)]
struct Overrides {
    amount: String,
}

/// The charge for a call whose upstream sent `header` (absent: the maximum), on an offer of at most
/// `max` and at least `min` atomic units of an asset with `decimals`.
pub fn charge(header: Option<&[u8]>, max: U256, min: U256, decimals: u8) -> Charge {
    let Some(raw) = header else {
        return Charge {
            amount: max,
            note: None,
        };
    };
    let asked = serde_json::from_slice::<Overrides>(raw)
        .map_err(|_| "is not JSON like {\"amount\": \"1000\"}".to_owned())
        .and_then(|o| {
            amount(&o.amount, max, decimals)
                .ok_or_else(|| format!("amount {:?} is not atomic units, \"<n>%\" or \"$<x>\"", o.amount))
        });
    match asked {
        Err(why) => Charge {
            amount: max,
            note: Some(format!("Settlement-Overrides {why}: charged the maximum {max}")),
        },
        Ok(a) if a > max => Charge {
            amount: max,
            note: Some(format!(
                "the upstream asked for {a}, above the maximum the payer signed: capped at {max}"
            )),
        },
        Ok(a) if a < min => Charge {
            amount: min,
            note: Some(format!(
                "the upstream asked for {a}, below the route's min: charged {min}"
            )),
        },
        Ok(a) => Charge { amount: a, note: None },
    }
}

/// An override amount in atomic units: digits as they are, `n%` (up to two decimals) of `max` rounded
/// down, `$x` in an asset of `decimals` rounded down.
fn amount(s: &str, max: U256, decimals: u8) -> Option<U256> {
    let digits = |p: &str| !p.is_empty() && p.bytes().all(|b| b.is_ascii_digit());
    if let Some(p) = s.strip_suffix('%') {
        let (int, frac) = p.split_once('.').unwrap_or((p, ""));
        if !digits(int) || frac.len() > 2 || !(frac.is_empty() || digits(frac)) {
            return None;
        }
        // Hundredths of a percent.
        let basis = U256::from_str_radix(&format!("{int}{frac:0<2}"), 10).ok()?;
        return Some(max.checked_mul(basis)? / U256::from(10_000u32));
    }
    if s.starts_with('$') {
        return UsdPrice::parse(s).ok()?.to_atomic_floor(decimals);
    }
    digits(s).then(|| U256::from_str_radix(s, 10).ok()).flatten()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn c(h: &str, max: u64, min: u64) -> (u64, bool) {
        let r = charge(Some(h.as_bytes()), U256::from(max), U256::from(min), 6);
        (r.amount.to::<u64>(), r.note.is_some())
    }

    #[test]
    fn each_spelling_is_read_and_held_to_the_terms() {
        assert_eq!(
            charge(None, U256::from(10_000), U256::ZERO, 6).amount,
            U256::from(10_000)
        );
        assert_eq!(c(r#"{"amount":"2500"}"#, 10_000, 0), (2500, false));
        assert_eq!(c(r#"{"amount":"0"}"#, 10_000, 0), (0, false));
        assert_eq!(c(r#"{"amount":"10000"}"#, 10_000, 0), (10_000, false));
        assert_eq!(c(r#"{"amount":"10001"}"#, 10_000, 0), (10_000, true));
        assert_eq!(c(r#"{"amount":"12.5%"}"#, 10_000, 0), (1250, false));
        assert_eq!(c(r#"{"amount":"33.33%"}"#, 1000, 0), (333, false));
        assert_eq!(c(r#"{"amount":"150%"}"#, 1000, 0), (1000, true));
        assert_eq!(c(r#"{"amount":"$0.004"}"#, 10_000, 0), (4000, false));
        // Finer than the asset: rounded down, never up.
        assert_eq!(c(r#"{"amount":"$0.0040009"}"#, 10_000, 0), (4000, false));
        assert_eq!(c(r#"{"amount":"5"}"#, 10_000, 100), (100, true));
        assert_eq!(c(r#"{"amount":"0"}"#, 10_000, 100), (100, true));
        for bad in [
            r#"{"amount":"-1"}"#,
            r#"{"amount":"1e3"}"#,
            r#"{"amount":"0x10"}"#,
            "2500",
            r#"{"amount":"1.234%"}"#,
            r#"{"amount":"$"}"#,
        ] {
            assert_eq!(c(bad, 10_000, 0), (10_000, true), "{bad}");
        }
        // Larger than any U256 percent product: malformed, not a wrap-around.
        assert_eq!(
            c(&format!(r#"{{"amount":"{}%"}}"#, "9".repeat(80)), 10_000, 0),
            (10_000, true)
        );
    }
}
