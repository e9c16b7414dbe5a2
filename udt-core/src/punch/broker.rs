//! The broker: a sans-I/O introducer on one UDP port.
//!
//! - It answers standard STUN Binding requests with the source address
//!   (XOR-MAPPED-ADDRESS, and MAPPED-ADDRESS for RFC 3489 clients), so any
//!   STUN client can use it.
//! - Peers send Register requests under a session code with their host
//!   candidates and a random check token. The response carries the
//!   peer's server-reflexive address; once two peers share a code, each
//!   gets the other's candidates (host ones plus the source the broker
//!   saw), the other's token and a common start delay: the second in its
//!   response, the first in an Introduce indication (and in its next
//!   refresh, should the indication be lost).
//!
//! State is bounded: at most [`BrokerConfig::max_sessions`] sessions, at
//! most [`BrokerConfig::max_sessions_per_ip`] opened from one IP address
//! (a flood from one host cannot crowd others out), two peers and
//! [`MAX_CANDIDATES`] candidates per peer; a registration not refreshed
//! within [`BrokerConfig::registration_ttl`] is forgotten.

use std::collections::{HashMap, VecDeque};
use std::net::{IpAddr, SocketAddr};
use std::time::{Duration, Instant};

use super::candidate::{Candidate, CandidateType};
use super::stun::{attr, method, Class, Message};
use crate::endpoint::DatagramHandler;

/// Most candidates kept per peer.
pub const MAX_CANDIDATES: usize = 8;
/// Longest session code, in bytes.
pub const MAX_CODE: usize = 64;
/// Answers waiting to be sent beyond this many are dropped (the sender
/// retries), so a burst cannot grow the queue without bound.
const MAX_OUTBOX: usize = 1024;
/// The SOFTWARE attribute of the broker's answers.
const SOFTWARE: &[u8] = b"udt-broker";

/// Limits and timers of a [`Broker`].
#[derive(Clone, Debug)]
pub struct BrokerConfig {
    /// Most sessions held at once.
    pub max_sessions: usize,
    /// Most sessions opened from one IP address.
    pub max_sessions_per_ip: usize,
    /// A registration not refreshed for this long is forgotten.
    pub registration_ttl: Duration,
    /// How far ahead of the introduction both peers start checking (room
    /// for the Introduce indication to arrive).
    pub start_delay: Duration,
}

impl Default for BrokerConfig {
    fn default() -> Self {
        BrokerConfig {
            max_sessions: 4096,
            max_sessions_per_ip: 16,
            registration_ttl: Duration::from_secs(30),
            start_delay: Duration::from_millis(100),
        }
    }
}

/// What the broker did, for monitoring and tests.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct BrokerCounters {
    /// Plain STUN Binding requests answered.
    pub bindings: u64,
    /// Register requests accepted (new and refreshed).
    pub registrations: u64,
    /// Pairs of peers introduced.
    pub introductions: u64,
    /// Registrations refused: broker full, per-IP limit, code taken.
    pub refused: u64,
    /// Datagrams that were not valid requests.
    pub malformed: u64,
    /// Registrations that expired.
    pub expired: u64,
}

/// One registered peer.
#[derive(Clone, Debug)]
struct Peer {
    /// The source the broker saw: the peer's server-reflexive address.
    addr: SocketAddr,
    token: [u8; 16],
    host: Vec<Candidate>,
    last_seen: Instant,
}

impl Peer {
    /// The candidates the other peer gets: the host ones, plus the
    /// observed source unless it is one of them (no NAT in between).
    fn candidates(&self) -> Vec<Candidate> {
        let mut c = self.host.clone();
        if !c.iter().any(|h| h.addr == self.addr) {
            c.push(Candidate::new(
                CandidateType::ServerReflexive,
                self.addr,
                65535,
            ));
        }
        c
    }
}

/// Up to two peers under one code.
#[derive(Clone, Debug)]
struct Session {
    /// The IP the session was opened from (for the per-IP limit).
    opener: IpAddr,
    peers: Vec<Peer>,
    /// When both peers start checking, once there are two.
    start_at: Option<Instant>,
}

/// The broker state machine. See the module documentation.
#[derive(Debug)]
pub struct Broker {
    config: BrokerConfig,
    sessions: HashMap<Vec<u8>, Session>,
    per_ip: HashMap<IpAddr, usize>,
    outbox: VecDeque<(SocketAddr, Vec<u8>)>,
    counters: BrokerCounters,
    next_sweep: Option<Instant>,
}

impl Broker {
    /// An empty broker.
    pub fn new(config: BrokerConfig) -> Broker {
        Broker {
            config,
            sessions: HashMap::new(),
            per_ip: HashMap::new(),
            outbox: VecDeque::new(),
            counters: BrokerCounters::default(),
            next_sweep: None,
        }
    }

    /// Counters of what it did.
    pub fn counters(&self) -> BrokerCounters {
        self.counters
    }

    /// Sessions held now.
    pub fn sessions(&self) -> usize {
        self.sessions.len()
    }

    /// Handles one datagram from `from` (anything that is not a valid
    /// request is counted and ignored).
    pub fn handle(&mut self, now: Instant, from: SocketAddr, datagram: &[u8]) {
        let msg = match Message::decode(datagram) {
            Ok(m) if m.class == Class::Request => m,
            _ => {
                self.counters.malformed += 1;
                return;
            }
        };
        if self.next_sweep.is_none() {
            self.next_sweep = Some(now + self.sweep_interval());
        }
        match msg.method {
            method::BINDING => self.on_binding(from, &msg),
            method::REGISTER => self.on_register(now, from, &msg),
            _ => {
                self.counters.malformed += 1;
                self.error(from, &msg, 400, "unknown method");
            }
        }
    }

    /// The next answer to send: destination and bytes.
    pub fn poll_send(&mut self) -> Option<(SocketAddr, Vec<u8>)> {
        self.outbox.pop_front()
    }

    /// When expired registrations should next be swept.
    pub fn next_timeout(&self) -> Option<Instant> {
        self.next_sweep
    }

    /// Forgets registrations not refreshed within the TTL.
    pub fn sweep(&mut self, now: Instant) {
        let ttl = self.config.registration_ttl;
        let mut expired = 0u64;
        let mut closed = Vec::new();
        for (code, s) in self.sessions.iter_mut() {
            let before = s.peers.len();
            s.peers
                .retain(|p| now.saturating_duration_since(p.last_seen) < ttl);
            expired += (before - s.peers.len()) as u64;
            if s.peers.is_empty() {
                closed.push(code.clone());
            }
        }
        self.counters.expired += expired;
        for code in closed {
            if let Some(s) = self.sessions.remove(&code) {
                self.release_ip(s.opener);
            }
        }
        self.next_sweep = if self.sessions.is_empty() {
            None
        } else {
            Some(now + self.sweep_interval())
        };
    }

    fn sweep_interval(&self) -> Duration {
        (self.config.registration_ttl / 4).max(Duration::from_millis(10))
    }

    fn release_ip(&mut self, ip: IpAddr) {
        if let Some(n) = self.per_ip.get_mut(&ip) {
            *n -= 1;
            if *n == 0 {
                self.per_ip.remove(&ip);
            }
        }
    }

    /// A standard Binding request: the reflexive address.
    fn on_binding(&mut self, from: SocketAddr, req: &Message) {
        // Comprehension-required attributes we do not know (RFC 8489 §7.3.1).
        let unknown: Vec<u8> = req
            .attributes
            .iter()
            .filter(|(t, _)| *t < 0x8000 && !matches!(*t, attr::USERNAME | attr::PRIORITY))
            .flat_map(|(t, _)| t.to_be_bytes())
            .collect();
        if !unknown.is_empty() {
            let mut m = Message::new(Class::Error, method::BINDING, req.transaction);
            m.push_error(420, "Unknown Attribute");
            m.push(attr::UNKNOWN_ATTRIBUTES, unknown);
            self.send(from, &m);
            return;
        }
        self.counters.bindings += 1;
        let mut m = Message::new(Class::Success, method::BINDING, req.transaction);
        m.push_xor_address(attr::XOR_MAPPED_ADDRESS, from);
        m.push_address(attr::MAPPED_ADDRESS, from);
        m.push(attr::SOFTWARE, SOFTWARE.to_vec());
        self.send(from, &m);
    }

    fn on_register(&mut self, now: Instant, from: SocketAddr, req: &Message) {
        let code = req.get(attr::SESSION).unwrap_or_default();
        let token = req
            .get(attr::TOKEN)
            .and_then(|t| <[u8; 16]>::try_from(t).ok());
        let (Some(token), 1..=MAX_CODE) = (token, code.len()) else {
            self.counters.malformed += 1;
            self.error(from, req, 400, "session code and token required");
            return;
        };
        let host: Vec<Candidate> = req
            .all(attr::CANDIDATE)
            .filter_map(Candidate::decode)
            .filter(|c| c.kind == CandidateType::Host)
            .take(MAX_CANDIDATES)
            .collect();
        let peer = Peer {
            addr: from,
            token,
            host,
            last_seen: now,
        };
        if !self.sessions.contains_key(code) {
            if self.sessions.len() >= self.config.max_sessions {
                self.refuse(from, req, "broker full");
                return;
            }
            let opened = self.per_ip.get(&from.ip()).copied().unwrap_or(0);
            if opened >= self.config.max_sessions_per_ip {
                self.refuse(from, req, "too many sessions from this address");
                return;
            }
            *self.per_ip.entry(from.ip()).or_insert(0) += 1;
            self.sessions.insert(
                code.to_vec(),
                Session {
                    opener: from.ip(),
                    peers: Vec::with_capacity(2),
                    start_at: None,
                },
            );
        }
        let Some(session) = self.sessions.get_mut(code) else {
            return;
        };
        let me = match session.peers.iter().position(|p| p.token == token) {
            Some(i) => {
                session.peers[i] = peer;
                i
            }
            None if session.peers.len() < 2 => {
                session.peers.push(peer);
                session.peers.len() - 1
            }
            None => {
                self.refuse(from, req, "session code in use");
                return;
            }
        };
        self.counters.registrations += 1;
        let introduce = session.peers.len() == 2 && session.start_at.is_none();
        if introduce {
            session.start_at = Some(now + self.config.start_delay);
            self.counters.introductions += 1;
        }
        let session = session.clone();
        let mut resp = Message::new(Class::Success, method::REGISTER, req.transaction);
        resp.push_xor_address(attr::XOR_MAPPED_ADDRESS, from);
        if let (Some(other), Some(start)) = (session.peers.get(1 - me), session.start_at) {
            add_peer(&mut resp, other, start, now);
            if introduce {
                let me = &session.peers[me];
                let tx = super::stun::transaction_id(
                    u64::from_be_bytes(token[..8].try_into().unwrap_or_default()),
                    self.counters.introductions as u32,
                );
                let mut ind = Message::new(Class::Indication, method::INTRODUCE, tx);
                add_peer(&mut ind, me, start, now);
                self.send(other.addr, &ind);
            }
        }
        self.send(from, &resp);
    }

    fn refuse(&mut self, from: SocketAddr, req: &Message, why: &str) {
        self.counters.refused += 1;
        log::debug!("refused a registration from {from}: {why}");
        self.error(from, req, 508, why);
    }

    fn error(&mut self, to: SocketAddr, req: &Message, code: u16, reason: &str) {
        let mut m = Message::new(Class::Error, req.method, req.transaction);
        m.push_error(code, reason);
        self.send(to, &m);
    }

    fn send(&mut self, to: SocketAddr, m: &Message) {
        if self.outbox.len() >= MAX_OUTBOX {
            return;
        }
        let mut out = Vec::with_capacity(128);
        m.encode(true, &mut out);
        self.outbox.push_back((to, out));
    }
}

/// The other peer's token, candidates and the start delay.
fn add_peer(m: &mut Message, peer: &Peer, start: Instant, now: Instant) {
    m.push(attr::PEER_TOKEN, peer.token.to_vec());
    for c in peer.candidates() {
        m.push(attr::CANDIDATE, c.encode());
    }
    let delay = start.saturating_duration_since(now).as_millis();
    m.push(
        attr::START_DELAY,
        (delay.min(u128::from(u32::MAX)) as u32)
            .to_be_bytes()
            .to_vec(),
    );
}

impl DatagramHandler for Broker {
    fn handle_datagram(&mut self, now: Instant, from: SocketAddr, datagram: &[u8]) {
        self.handle(now, from, datagram);
    }

    fn poll_transmit(&mut self, _now: Instant, buf: &mut Vec<u8>) -> Option<SocketAddr> {
        let (to, d) = self.poll_send()?;
        buf.extend_from_slice(&d);
        Some(to)
    }

    fn poll_timeout(&self) -> Option<Instant> {
        self.next_timeout()
    }

    fn handle_timeout(&mut self, now: Instant) {
        if self.next_sweep.is_some_and(|t| t <= now) {
            self.sweep(now);
        }
    }
}
