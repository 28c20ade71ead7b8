//! Stablecoin deployments the reference SDKs know (x402-notes §13), with their EIP-712 domains.
//! Only entries whose domain version is known are listed; anything else is configured as a custom asset.

use alloy::primitives::{address, Address};

use super::exact::Transfer;

/// A token the gateway can price in: where it lives and how it signs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Asset {
    /// The chain it is deployed on.
    pub chain_id: u64,
    /// The token contract.
    pub address: Address,
    /// EIP-712 domain `name`.
    pub eip712_name: String,
    /// EIP-712 domain `version`.
    pub eip712_version: String,
    /// ERC-20 decimals: how many atomic units make one token.
    pub decimals: u8,
    /// A short label for humans (`USDC`).
    pub symbol: String,
    /// How payments move it: EIP-3009 (the built-in stablecoins) or Permit2 (any ERC-20).
    pub transfer: Transfer,
}

const BUILTIN: &[(u64, Address, &str, &str, u8, &str)] = &[
    (
        8453,
        address!("833589fCD6eDb6E08f4c7C32D4f71b54bdA02913"),
        "USD Coin",
        "2",
        6,
        "USDC",
    ),
    (
        84_532,
        address!("036CbD53842c5426634e7929541eC2318f3dCF7e"),
        "USDC",
        "2",
        6,
        "USDC",
    ),
    (
        43_114,
        address!("B97EF9Ef8734C71904D8002F8b6Bc66Dd9c48a6E"),
        "USD Coin",
        "2",
        6,
        "USDC",
    ),
    (
        137,
        address!("3c499c542cEF5E3811e1192ce70d8cC03d5c3359"),
        "USD Coin",
        "2",
        6,
        "USDC",
    ),
    (
        1,
        address!("A0b86991c6218b36c1d19D4a2e9Eb0cE3606eB48"),
        "USD Coin",
        "2",
        6,
        "USDC",
    ),
    (
        42_161,
        address!("af88d065e77c8cC2239327C5EDb3A432268e5831"),
        "USD Coin",
        "2",
        6,
        "USDC",
    ),
    (
        421_614,
        address!("75faf114eafb1BDbe2F0316DF893fd58CE46AA4d"),
        "USD Coin",
        "2",
        6,
        "USDC",
    ),
    (
        988,
        address!("779Ded0c9e1022225f8E0630b35a9b54bE713736"),
        "USDT0",
        "1",
        6,
        "USDT0",
    ),
    (
        2201,
        address!("78Cf24370174180738C5B8E352B6D14c83a6c9A9"),
        "USDT0",
        "1",
        6,
        "USDT0",
    ),
];

fn from_row(row: &(u64, Address, &str, &str, u8, &str)) -> Asset {
    let (chain_id, address, name, version, decimals, symbol) = *row;
    Asset {
        chain_id,
        address,
        eip712_name: name.to_owned(),
        eip712_version: version.to_owned(),
        decimals,
        symbol: symbol.to_owned(),
        transfer: Transfer::Eip3009,
    }
}

/// The default stablecoin of a chain, if the built-in table has one.
pub fn default_for_chain(chain_id: u64) -> Option<Asset> {
    BUILTIN.iter().find(|r| r.0 == chain_id).map(from_row)
}

/// A built-in asset by chain and address.
pub fn builtin(chain_id: u64, address: Address) -> Option<Asset> {
    BUILTIN.iter().find(|r| r.0 == chain_id && r.1 == address).map(from_row)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn base_sepolia_usdc_signs_as_usdc_v2() {
        let a = default_for_chain(84_532).unwrap();
        assert_eq!(a.eip712_name, "USDC");
        assert_eq!(a.eip712_version, "2");
        assert_eq!(builtin(84_532, a.address), Some(a));
        assert_eq!(default_for_chain(31_337), None);
    }
}
