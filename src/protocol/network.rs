//! Network identifiers: CAIP-2 (`eip155:<chainId>`, v2) and the v1 names (x402-notes §7).

use std::fmt;

/// An EVM network, identified by its chain id. Both wire spellings convert to and from it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Network {
    /// The EIP-155 chain id.
    pub chain_id: u64,
}

/// v1 network names and their chain ids, as the TS and Go SDKs define them (x402-notes §7.1; the Python
/// table disagrees on a few and is not used).
const V1_NAMES: &[(&str, u64)] = &[
    ("ethereum", 1),
    ("sepolia", 11_155_111),
    ("base", 8453),
    ("base-sepolia", 84_532),
    ("avalanche", 43_114),
    ("avalanche-fuji", 43_113),
    ("polygon", 137),
    ("polygon-amoy", 80_002),
    ("abstract", 2741),
    ("abstract-testnet", 11_124),
    ("iotex", 4689),
    ("sei", 1329),
    ("sei-testnet", 1328),
    ("peaq", 3338),
    ("story", 1514),
    ("educhain", 41_923),
    ("skale-base-sepolia", 324_705_682),
    ("megaeth", 4326),
    ("monad", 143),
    ("stable", 988),
    ("stable-testnet", 2201),
];

impl Network {
    /// The network with this chain id.
    pub const fn new(chain_id: u64) -> Self {
        Network { chain_id }
    }

    /// Parses either spelling: `eip155:8453` or `base`.
    pub fn parse(s: &str) -> Option<Self> {
        Self::from_caip2(s).or_else(|| Self::from_v1_name(s))
    }

    /// Parses `eip155:<decimal chain id>`; any other namespace is not an EVM network.
    pub fn from_caip2(s: &str) -> Option<Self> {
        let id = s.strip_prefix("eip155:")?;
        if id.is_empty() || !id.bytes().all(|b| b.is_ascii_digit()) || (id.len() > 1 && id.starts_with('0')) {
            return None;
        }
        id.parse().ok().map(Self::new)
    }

    /// Looks up a v1 network name.
    pub fn from_v1_name(s: &str) -> Option<Self> {
        V1_NAMES
            .iter()
            .find(|(name, _)| *name == s)
            .map(|(_, id)| Self::new(*id))
    }

    /// The CAIP-2 id, e.g. `eip155:8453`.
    pub fn caip2(&self) -> String {
        format!("eip155:{}", self.chain_id)
    }

    /// The v1 name, when this chain has one.
    pub fn v1_name(&self) -> Option<&'static str> {
        V1_NAMES
            .iter()
            .find(|(_, id)| *id == self.chain_id)
            .map(|(name, _)| *name)
    }

    /// The spelling a given protocol version uses on the wire (v1 falls back to CAIP-2 when unnamed).
    pub fn wire_name(&self, version: super::Version) -> String {
        match version {
            super::Version::V1 => self.v1_name().map_or_else(|| self.caip2(), str::to_owned),
            super::Version::V2 => self.caip2(),
        }
    }
}

impl fmt::Display for Network {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "eip155:{}", self.chain_id)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn both_spellings_name_the_same_chain() {
        assert_eq!(Network::parse("base-sepolia"), Some(Network::new(84_532)));
        assert_eq!(Network::parse("eip155:84532"), Some(Network::new(84_532)));
        assert_eq!(Network::new(8453).v1_name(), Some("base"));
        assert_eq!(Network::new(31_337).v1_name(), None);
        assert_eq!(Network::new(31_337).caip2(), "eip155:31337");
    }

    #[test]
    fn refuses_non_evm_and_malformed_ids() {
        for bad in [
            "solana:5eykt4UsFv8P8NJdTREpY1vzqKqZKvdp",
            "eip155:",
            "eip155:0x1",
            "eip155:01",
            "eip155:-1",
            "nope",
        ] {
            assert_eq!(Network::parse(bad), None, "{bad}");
        }
    }
}
