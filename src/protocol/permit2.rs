//! Permit2 (x402-notes §9.1): where the contracts are. The same addresses on every chain (CREATE2), so
//! they are facts of the protocol, not configuration.

use alloy::primitives::{address, Address};

/// Uniswap's Permit2.
pub const PERMIT2: Address = address!("000000000022D473030F116dDEE9F6B43aC78BA3");
/// `x402ExactPermit2Proxy`: the spender of an `exact` payment made through Permit2.
pub const EXACT_PROXY: Address = address!("402085c248EeA27D92E8b30b2C58ed07f9E20001");
/// `x402UptoPermit2Proxy`: the spender of an `upto` payment; only the facilitator named in the witness
/// may settle through it.
pub const UPTO_PROXY: Address = address!("4020A4f3b7b90ccA423B9fabCc0CE57C6C240002");
