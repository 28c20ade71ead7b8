//! Money as integers: a USD price written as an exact decimal (`"$0.001"`) and its conversion to a token's
//! atomic units. No floating point anywhere (invariant 5).

use alloy::primitives::U256;

/// A price in US dollars, held as `mantissa / 10^scale` exactly.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct UsdPrice {
    mantissa: U256,
    scale: u8,
}

/// Why a price string was refused.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum PriceError {
    #[error("price {0:?} must look like \"$0.001\": a '$' then digits with at most one '.'")]
    Syntax(String),
    #[error(
        "price {price:?} has {scale} decimal places but the asset has only {decimals}; round it to {decimals} places"
    )]
    TooPrecise { price: String, scale: u8, decimals: u8 },
    #[error("price {0:?} is too large")]
    Overflow(String),
}

impl UsdPrice {
    /// Parses `"$1"`, `"$0.001"`, `"$12.50"`. Exponents, signs, spaces and empty parts are refused.
    pub fn parse(s: &str) -> Result<Self, PriceError> {
        let syntax = || PriceError::Syntax(s.to_owned());
        let digits = s.strip_prefix('$').ok_or_else(syntax)?;
        let (int, frac) = digits.split_once('.').unwrap_or((digits, ""));
        let all_digits = |p: &str| p.bytes().all(|b| b.is_ascii_digit());
        if int.is_empty() || !all_digits(int) || !all_digits(frac) || (digits.contains('.') && frac.is_empty()) {
            return Err(syntax());
        }
        let scale = u8::try_from(frac.len()).map_err(|_| syntax())?;
        let mantissa =
            U256::from_str_radix(&format!("{int}{frac}"), 10).map_err(|_| PriceError::Overflow(s.to_owned()))?;
        Ok(UsdPrice { mantissa, scale })
    }

    /// The amount in atomic units of a USD-pegged token with `decimals` decimals.
    pub fn to_atomic(&self, decimals: u8, original: &str) -> Result<U256, PriceError> {
        let shift = decimals.checked_sub(self.scale).ok_or(PriceError::TooPrecise {
            price: original.to_owned(),
            scale: self.scale,
            decimals,
        })?;
        U256::from(10u8)
            .checked_pow(U256::from(shift))
            .and_then(|m| self.mantissa.checked_mul(m))
            .ok_or_else(|| PriceError::Overflow(original.to_owned()))
    }

    /// Atomic units of an asset with `decimals`, rounded down when the amount is finer than the asset
    /// (a charge never exceeds what was asked for); `None` on overflow.
    pub fn to_atomic_floor(&self, decimals: u8) -> Option<U256> {
        let ten = U256::from(10u8);
        match decimals.checked_sub(self.scale) {
            Some(shift) => ten
                .checked_pow(U256::from(shift))
                .and_then(|m| self.mantissa.checked_mul(m)),
            None => ten
                .checked_pow(U256::from(self.scale - decimals))
                .map(|d| self.mantissa / d),
        }
    }
}

/// Formats atomic units as a decimal token amount, e.g. `1000` with 6 decimals → `0.001`.
pub fn format_units(amount: U256, decimals: u8) -> String {
    let s = amount.to_string();
    let d = usize::from(decimals);
    if d == 0 {
        return s;
    }
    let padded = format!("{s:0>width$}", width = d + 1);
    let (int, frac) = padded.split_at(padded.len() - d);
    let frac = frac.trim_end_matches('0');
    if frac.is_empty() {
        int.to_owned()
    } else {
        format!("{int}.{frac}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn atomic(s: &str, d: u8) -> Result<U256, PriceError> {
        UsdPrice::parse(s)?.to_atomic(d, s)
    }

    #[test]
    fn dollar_prices_convert_exactly() {
        assert_eq!(atomic("$0.001", 6), Ok(U256::from(1000)));
        assert_eq!(atomic("$1", 6), Ok(U256::from(1_000_000)));
        assert_eq!(atomic("$12.50", 6), Ok(U256::from(12_500_000)));
        assert_eq!(atomic("$0.000001", 6), Ok(U256::from(1)));
        assert_eq!(atomic("$0.1", 18), Ok(U256::from(100_000_000_000_000_000u128)));
    }

    #[test]
    fn refuses_what_is_not_an_exact_decimal() {
        for bad in ["0.01", "$", "$.5", "$1.", "$1e-3", "$-1", "$ 1", "$1,000", "$0.0.1"] {
            assert!(matches!(UsdPrice::parse(bad), Err(PriceError::Syntax(_))), "{bad}");
        }
        assert!(matches!(atomic("$0.0000001", 6), Err(PriceError::TooPrecise { .. })));
    }

    #[test]
    fn formats_units() {
        assert_eq!(format_units(U256::from(1000), 6), "0.001");
        assert_eq!(format_units(U256::from(12_500_000), 6), "12.5");
        assert_eq!(format_units(U256::from(3_000_000), 6), "3");
    }
}
