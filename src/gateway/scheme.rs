//! The scheme seam: each payment scheme's server side behind one interface, as the SDKs register a scheme
//! server per name. Checkout picks the server by the offer a payment names (`checkout`'s registry); the
//! server admits the payment with the shared stages ([`Checkout`]) and hands back a [`Hold`]; the proxy
//! drives the hold once the upstream answered and never asks which scheme it is. A new scheme (Solana
//! `exact`, say) is one more [`SchemeServer`] and one more arm in that registry (ARCHITECTURE.md, "Adding
//! a scheme").

use alloy::primitives::{Address, B256, U256};
use async_trait::async_trait;

use std::sync::Arc;

use crate::config::BatchSettings;
use crate::core::time::Clock;
use crate::gateway::claims::Claims;
use crate::gateway::decode::Matched;
use crate::gateway::facilitator::{FacilitatorError, Remote};
use crate::gateway::idempotency::Tracked;
use crate::gateway::onchain::Onchain;
use crate::gateway::refusal::{Answer, Refusal};
use crate::gateway::store::Store;
use crate::gateway::throttle::Throttle;
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

/// What checkout comes to, when it does not refuse.
pub enum Admission {
    /// Verified and held (an `exact` authorization claimed, a channel reserved): proxy, then collect.
    Paid(Box<dyn Hold>),
    /// The facilitator could not verify it, on a route that fails open (`on_facilitator_error: allow`):
    /// served once, unpaid. Its authorization is spent before anything is served, so one signature never
    /// buys a second unpaid response.
    Unpaid(FacilitatorError),
}

/// The parts checkout needs: the stages every scheme shares.
pub struct Checkout<'a> {
    pub claims: &'a Arc<Claims>,
    pub remote: &'a Arc<Remote>,
    pub onchain: &'a Arc<Onchain>,
    /// The per-client limit on attempts that reach the facilitator, and this request's client.
    pub throttle: Option<(&'a Throttle, std::net::IpAddr)>,
    pub store: &'a Arc<dyn Store>,
    pub clock: &'a Clock,
    /// `batch_settlement:`, when configured.
    pub batch: Option<&'a BatchSettings>,
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
