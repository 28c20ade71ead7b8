//! One way to pay a route: the typed requirement, what a person needs to read it, and the work that does
//! not depend on the request (the EIP-712 domain separator) done once.

use alloy::primitives::{B256, U256};

use crate::core::money::format_units;
use crate::protocol::exact::{Requirement, Scheme, Transfer};
use crate::protocol::permit2;

/// One accepted network/asset of a priced route.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Offer {
    pub requirement: Requirement,
    /// A short label for people (`USDC`).
    pub symbol: String,
    /// ERC-20 decimals of the asset.
    pub decimals: u8,
    /// The EIP-712 domain separator the payer signs under, computed once: the token's (EIP-3009) or
    /// Permit2's on the chain.
    pub domain_separator: B256,
    /// `upto`: the least a successful call is charged, in atomic units (zero unless configured).
    pub min: U256,
}

impl Offer {
    /// An offer for `requirement`.
    pub fn new(requirement: Requirement, symbol: String, decimals: u8) -> Self {
        let domain_separator = match requirement.transfer {
            Transfer::Eip3009 => requirement.domain().separator(),
            Transfer::Permit2 => permit2::domain(requirement.network.chain_id).separator(),
        };
        Offer {
            requirement,
            symbol,
            decimals,
            domain_separator,
            min: U256::ZERO,
        }
    }

    /// The same offer with `min` as its least charge.
    pub fn with_min(mut self, min: U256) -> Self {
        self.min = min;
        self
    }

    /// `0.001 USDC on eip155:8453`; metered: `up to 0.1 USDC on eip155:8453, at least 0.001, settled by 0x…`.
    pub fn display(&self) -> String {
        let units = |a: U256| format_units(a, self.decimals);
        let (symbol, network) = (&self.symbol, self.requirement.network);
        match self.requirement.scheme {
            Scheme::Exact => format!("{} {symbol} on {network}", units(self.requirement.amount)),
            Scheme::Upto { facilitator } => format!(
                "up to {} {symbol} on {network}, at least {}, settled by {facilitator}",
                units(self.requirement.amount),
                units(self.min)
            ),
            Scheme::Batch(t) => format!(
                "{} {symbol} a call on {network} by batch settlement: deposit at least {}, withdraw delay {}s, claims signed by {}",
                units(self.requirement.amount),
                units(t.min_deposit),
                t.withdraw_delay,
                t.receiver_authorizer
            ),
        }
    }
}
