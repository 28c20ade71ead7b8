//! Layer 5 beside the gateway, the tools around it: chain access ([`chain`]), a local chain with the test
//! token ([`devnet`]), the self-hosted [`facilitator`], the paying client ([`pay`]), the operator's view of
//! payments in doubt ([`payments`]) and of `batch-settlement` channels ([`channels`]), the [`demo`] and the
//! echo [`upstream`]. The tools never import the gateway (the demo starts it as a process), and the gateway
//! never imports them: `chain` is never on the request path.

pub mod batch_pay;
pub mod chain;
pub mod channels;
pub mod demo;
pub mod devnet;
pub mod facilitator;
pub mod pay;
pub mod payments;
pub mod upstream;
