//! NAT traversal ("hole punching") on the multiplexed port, sans-I/O.
//!
//! Everything here is STUN (RFC 8489) on the wire, so the endpoint's one
//! recogniser ([`is_stun`](crate::endpoint::is_stun)) hands it all to the
//! registered [`DatagramHandler`](crate::endpoint::DatagramHandler) and
//! UDT keeps the rest of the port:
//! - [`stun`]: the message codec (XOR-MAPPED-ADDRESS, FINGERPRINT, our
//!   broker methods and attributes);
//! - [`integrity`]: MESSAGE-INTEGRITY (HMAC-SHA1) on the checks;
//! - [`candidate`]: candidates and the ICE priority formulas;
//! - [`broker`]: the introducer, which also answers plain STUN Binding;
//! - [`relay`]: the broker's relay table (fallback when no pair works);
//! - [`checklist`]: candidate pairs and their checks;
//! - [`agent`]: one side of a punch: registration, checks, regular
//!   nomination, keep-alives;
//! - [`outcome`]: states, events, the selected pair and failure diagnosis;
//! - [`shared`]: the agent shared between the port's driver and the
//!   thread waiting for the outcome.
//!
//! The protocol is described in docs/punch.md.

pub mod agent;
pub mod broker;
pub mod candidate;
pub mod checklist;
mod crc32;
pub mod integrity;
pub mod outcome;
pub mod relay;
pub mod shared;
pub mod stun;
#[cfg(test)]
mod tests;

pub use agent::{PunchAgent, PunchConfig};
pub use broker::{Broker, BrokerConfig, BrokerCounters};
pub use candidate::{Candidate, CandidateType};
pub use outcome::{
    FailureReason, NatObservations, PunchEvent, PunchFailure, PunchState, RelayStatus, Selected,
};
pub use relay::{RelayCounters, RelayTable};
pub use shared::SharedPunch;
