//! Layer 3: pure rules over protocol and config types. Which route a request matches ([`routes`],
//! [`table`]), what a 402 says ([`challenge`]), whether a signature and its terms hold ([`verify`]), and
//! every time-window rule ([`window`]), and a `batch-settlement` channel's bookkeeping ([`channel`]). No
//! I/O, no clock of their own: `now` is a parameter.

pub mod challenge;
pub mod channel;
pub mod charge;
pub mod offer;
pub mod routes;
pub mod table;
pub mod verify;
pub mod window;
