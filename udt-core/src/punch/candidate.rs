//! Candidates (addresses a peer may be reached at) and the ICE priority
//! formulas (RFC 8445 §5.1.2 and §6.1.2.3), which order the checks and
//! decide which working pair wins.

use std::fmt;
use std::net::SocketAddr;

use super::stun::{decode_address, encode_address};

/// How a candidate was found.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum CandidateType {
    /// An address of a local interface.
    Host,
    /// The address a server (the broker) saw: the NAT's mapping.
    ServerReflexive,
    /// An address a check arrived from that nobody announced.
    PeerReflexive,
    /// An address on a relay.
    Relayed,
}

impl CandidateType {
    /// The RFC 8445 recommended type preference.
    pub fn preference(self) -> u32 {
        match self {
            CandidateType::Host => 126,
            CandidateType::PeerReflexive => 110,
            CandidateType::ServerReflexive => 100,
            CandidateType::Relayed => 0,
        }
    }

    /// The short name ICE uses ("host", "srflx", "prflx", "relay").
    pub fn name(self) -> &'static str {
        match self {
            CandidateType::Host => "host",
            CandidateType::ServerReflexive => "srflx",
            CandidateType::PeerReflexive => "prflx",
            CandidateType::Relayed => "relay",
        }
    }

    fn code(self) -> u8 {
        match self {
            CandidateType::Host => 0,
            CandidateType::ServerReflexive => 1,
            CandidateType::PeerReflexive => 2,
            CandidateType::Relayed => 3,
        }
    }

    fn from_code(c: u8) -> Option<CandidateType> {
        Some(match c {
            0 => CandidateType::Host,
            1 => CandidateType::ServerReflexive,
            2 => CandidateType::PeerReflexive,
            3 => CandidateType::Relayed,
            _ => return None,
        })
    }
}

impl fmt::Display for CandidateType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// One candidate: type, address and priority.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Candidate {
    /// How it was found.
    pub kind: CandidateType,
    /// Where to send.
    pub addr: SocketAddr,
    /// Its ICE priority (higher is preferred).
    pub priority: u32,
}

impl Candidate {
    /// A candidate with the standard priority; `local_preference` orders
    /// candidates of one type (the first host address gets the highest).
    pub fn new(kind: CandidateType, addr: SocketAddr, local_preference: u16) -> Candidate {
        Candidate {
            kind,
            addr,
            priority: priority(kind, local_preference),
        }
    }

    /// The CANDIDATE attribute value: type, family, port, priority, IP.
    pub fn encode(&self) -> Vec<u8> {
        let a = encode_address(self.addr);
        let mut v = Vec::with_capacity(a.len() + 4);
        v.push(self.kind.code());
        v.extend_from_slice(&a[1..4]);
        v.extend_from_slice(&self.priority.to_be_bytes());
        v.extend_from_slice(&a[4..]);
        v
    }

    /// Parses a CANDIDATE attribute value; `None` when malformed.
    pub fn decode(v: &[u8]) -> Option<Candidate> {
        let kind = CandidateType::from_code(*v.first()?)?;
        let priority = u32::from_be_bytes(*v.get(4..8)?.first_chunk::<4>()?);
        let mut a = vec![0];
        a.extend_from_slice(v.get(1..4)?);
        a.extend_from_slice(v.get(8..)?);
        Some(Candidate {
            kind,
            addr: decode_address(&a)?,
            priority,
        })
    }
}

impl fmt::Display for Candidate {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} {}", self.kind, self.addr)
    }
}

/// Candidate priority (RFC 8445 §5.1.2.1), for the single component UDT
/// uses.
pub fn priority(kind: CandidateType, local_preference: u16) -> u32 {
    (kind.preference() << 24) | (u32::from(local_preference) << 8) | 255
}

/// Pair priority (RFC 8445 §6.1.2.3) from the controlling agent's
/// candidate priority `g` and the controlled agent's `d`.
pub fn pair_priority(g: u32, d: u32) -> u64 {
    let (g, d) = (u64::from(g), u64::from(d));
    (g.min(d) << 32) + 2 * g.max(d) + u64::from(g > d)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn candidates_round_trip_both_families() {
        for (kind, addr) in [
            (CandidateType::Host, "192.0.2.4:9000"),
            (CandidateType::ServerReflexive, "[2001:db8::7]:1234"),
            (CandidateType::PeerReflexive, "198.18.0.1:1"),
        ] {
            let c = Candidate::new(kind, addr.parse().expect("addr"), 65535);
            assert_eq!(Candidate::decode(&c.encode()), Some(c));
        }
        assert_eq!(Candidate::decode(&[9, 1, 0, 0, 0, 0, 0, 0]), None);
        assert_eq!(Candidate::decode(&[0, 1, 0]), None);
    }

    #[test]
    fn host_pairs_outrank_reflexive_pairs() {
        let host = priority(CandidateType::Host, 65535);
        let srflx = priority(CandidateType::ServerReflexive, 65535);
        let prflx = priority(CandidateType::PeerReflexive, 65535);
        assert!(host > prflx && prflx > srflx);
        assert!(pair_priority(host, host) > pair_priority(srflx, srflx));
        assert!(pair_priority(host, srflx) > pair_priority(srflx, srflx));
        // The formula is the same on both sides once roles are fixed.
        assert_ne!(pair_priority(host, srflx), pair_priority(srflx, host));
    }
}
