//! The scheme seam: each payment scheme's server side behind one interface, as the SDKs register a scheme
//! server per name. Checkout picks the server by the offer a payment names ([`server`]); the server admits
//! the payment and hands back a [`Hold`]; the proxy drives the hold once the upstream answered and never
//! asks which scheme it is. A new scheme (Solana `exact`, say) is one more [`SchemeServer`] and one more
//! arm in [`server`] (ARCHITECTURE.md, "Adding a scheme").

use alloy::primitives::{Address, B256, U256};
use async_trait::async_trait;

use crate::gateway::batch::BatchServer;
use crate::gateway::checkout::{Admission, Checkout, ExactServer};
use crate::gateway::decode::Matched;
use crate::gateway::idempotency::Tracked;
use crate::gateway::refusal::{Answer, Refusal};
use crate::protocol::exact::Scheme;
use crate::protocol::facilitator::SettleResponse;
use crate::protocol::network::Network;
use crate::protocol::Version;
use crate::rules::table::Pricing;

/// A scheme's server side: admits a payment made out to one of its offers.
#[async_trait]
pub trait SchemeServer: Send + Sync {
    /// Checks `matched` (already matched to `pricing`'s offers) through every stage this scheme has before
    /// the upstream is asked; on success the payment is held for this request.
    async fn admit(
        &self,
        cx: &Checkout<'_>,
        matched: Matched,
        pricing: &Pricing,
        url: &str,
    ) -> Result<Admission, Refusal>;
}

/// The server for a scheme. The one place a scheme is looked up.
pub fn server(scheme: &Scheme) -> &'static dyn SchemeServer {
    match scheme {
        Scheme::Exact | Scheme::Upto { .. } => &ExactServer,
        Scheme::Batch(_) => &BatchServer,
    }
}

/// A payment admitted for one request, whatever its scheme: what the proxy does with it once the upstream
/// answered, and what it reports.
#[async_trait]
pub trait Hold: Send + Sync {
    /// The protocol version the payer spoke (the receipt header's name).
    fn version(&self) -> Version;
    fn payer(&self) -> Address;
    fn network(&self) -> Network;
    fn asset(&self) -> Address;
    /// What this request is charged, in atomic units.
    fn paid(&self) -> U256;
    /// The successful settlement, once there is one.
    fn settled(&self) -> Option<&SettleResponse>;
    /// The `payment-identifier` this request holds, if any.
    fn tracked(&self) -> Option<&Tracked> {
        None
    }
    /// The `batch-settlement` channel paid from, for the access log.
    fn channel(&self) -> Option<B256> {
        None
    }
    /// Whether a settled payment is revenue now (`exact`, `upto`), rather than a charge collected later.
    fn settles_on_chain(&self) -> bool {
        true
    }
    /// The gateway's own answer when the upstream is not to be asked for this payment (a refund).
    fn own_answer(&self) -> Option<Answer> {
        None
    }
    /// The upstream answered `status` (the gateway's own answer's, when there is one): collect the payment
    /// and return its receipt, `None` when nothing is owed (>= 400, HEAD), or the refusal that replaces
    /// the answer.
    async fn on_response(
        &mut self,
        status: u16,
        head: bool,
        overrides: Option<&[u8]>,
    ) -> Result<Option<SettleResponse>, Refusal>;
    /// The request is over without a settlement: free what was held for it.
    async fn release(&mut self);
}
