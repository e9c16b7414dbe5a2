//! What a punch attempt reports: its state, progress events, the selected
//! pair (direct, or relayed through the broker), and on failure a
//! diagnosis naming the NAT behaviour seen and what became of the relay.

use std::fmt;
use std::net::SocketAddr;
use std::time::Duration;

use super::candidate::Candidate;

/// The pair both peers settled on: the UDT rendezvous runs on exactly
/// this remote address, from the agent's port.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Selected {
    /// How the peer sees us on this path (host, srflx or prflx).
    pub local: Candidate,
    /// The peer's candidate: the rendezvous target.
    pub remote: Candidate,
    /// The pair priority (RFC 8445 §6.1.2.3) in this agent's checklist.
    pub priority: u64,
    /// Round-trip time of the check that validated it.
    pub rtt: Option<Duration>,
}

impl Selected {
    /// True when the pair is the broker's relay, not a direct path.
    pub fn is_relayed(&self) -> bool {
        self.remote.kind == super::candidate::CandidateType::Relayed
    }
}

impl fmt::Display for Selected {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} <-> {}", self.local, self.remote)?;
        if let Some(rtt) = self.rtt {
            write!(f, " (rtt {:.1} ms)", rtt.as_secs_f64() * 1e3)?;
        }
        Ok(())
    }
}

/// Where a punch attempt stands.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum PunchState {
    /// Registering with the broker.
    Registering,
    /// Registered; waiting for the peer to register under the same code.
    Waiting,
    /// Running connectivity checks.
    Checking,
    /// No pair worked: asking the broker to relay (both peers must ask).
    Relaying,
    /// A pair is nominated: run the UDT rendezvous on it.
    Nominated(Selected),
    /// Gave up.
    Failed(PunchFailure),
}

/// Why a punch attempt failed.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum FailureReason {
    /// The broker never answered.
    BrokerUnreachable,
    /// The broker refused the registration (STUN error code and reason).
    BrokerRefused(u16, String),
    /// No peer registered under the code in time.
    NoPeer,
    /// No candidate pair worked (or none was nominated) in time.
    NoPairWorked,
}

/// What became of the relay fallback in a failed attempt.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum RelayStatus {
    /// The attempt failed before a relay could matter (broker, no peer).
    NotNeeded,
    /// The broker offers no relay (it runs without `--relay`).
    NotOffered,
    /// This side does not allow relaying.
    Disabled,
    /// The relay was asked for and did not come about (why).
    Failed(String),
}

/// What the checks revealed about the NATs on the path.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct NatObservations {
    /// Our address as the broker saw it.
    pub local_reflexive: Option<SocketAddr>,
    /// A peer saw us from another port than the broker did: our NAT maps
    /// per destination (address- or port-dependent, "symmetric").
    pub local_mapping_varies: bool,
    /// A check came from the peer's public IP but a port the broker never
    /// saw: the peer's NAT maps per destination.
    pub peer_mapping_varies: bool,
    /// Authenticated checks received from the peer.
    pub checks_received: u32,
    /// Responses received to our checks.
    pub responses_received: u32,
}

/// A failed attempt: the reason and what was seen on the way.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PunchFailure {
    /// Why it failed.
    pub reason: FailureReason,
    /// NAT behaviour observed.
    pub nat: NatObservations,
    /// What became of the relay fallback.
    pub relay: RelayStatus,
}

impl fmt::Display for PunchFailure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.reason {
            FailureReason::BrokerUnreachable => f.write_str("the broker did not answer")?,
            FailureReason::BrokerRefused(code, why) => {
                write!(f, "the broker refused the registration ({code} {why})")?
            }
            FailureReason::NoPeer => f.write_str("no peer registered under this code in time")?,
            FailureReason::NoPairWorked => {
                f.write_str("hole punching failed: no candidate pair answered")?
            }
        }
        if self.reason != FailureReason::NoPairWorked {
            return Ok(());
        }
        let n = &self.nat;
        if n.local_mapping_varies {
            f.write_str("; our NAT maps each destination to a new port (symmetric NAT)")?;
        }
        if n.peer_mapping_varies {
            f.write_str("; the peer's NAT maps each destination to a new port (symmetric NAT)")?;
        }
        if !n.local_mapping_varies && !n.peer_mapping_varies {
            if n.checks_received == 0 {
                f.write_str("; no check from the peer arrived (a firewall or NAT filters inbound UDP, or the peer is behind a symmetric NAT)")?;
            } else {
                f.write_str(
                    "; checks arrived but ours were not answered (the peer's NAT filters us)",
                )?;
            }
        }
        f.write_str("; a relay is needed")?;
        match &self.relay {
            RelayStatus::NotNeeded => Ok(()),
            RelayStatus::NotOffered => f.write_str(
                ", but the broker offers none (it relays when started with `udt broker --relay`)",
            ),
            RelayStatus::Disabled => f.write_str(", but relaying is disabled here"),
            RelayStatus::Failed(why) => write!(f, ", but relaying failed: {why}"),
        }
    }
}

impl std::error::Error for PunchFailure {}

/// Progress of an attempt, for a person to follow.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum PunchEvent {
    /// The broker answered: our reflexive address and the round trip.
    Registered {
        /// Our address as the broker saw it.
        reflexive: SocketAddr,
        /// Round-trip time to the broker.
        rtt: Duration,
        /// The session's name: the configured code, or the one the broker
        /// picked when none was configured.
        session: String,
    },
    /// The broker introduced the peer.
    PeerIntroduced {
        /// The peer's candidates.
        candidates: Vec<Candidate>,
        /// True when this agent nominates (ICE controlling role).
        controlling: bool,
    },
    /// A check succeeded.
    CheckSucceeded {
        /// The remote candidate.
        remote: Candidate,
        /// Its round-trip time.
        rtt: Duration,
    },
    /// A pair failed all its checks.
    CheckFailed {
        /// The remote candidate.
        remote: Candidate,
    },
    /// No pair worked; asking the broker to relay (the diagnosis of the
    /// direct attempt).
    RelayRequested(PunchFailure),
    /// A pair was nominated (the relay, when [`Selected::is_relayed`]).
    Nominated(Selected),
    /// The attempt failed.
    Failed(PunchFailure),
}
