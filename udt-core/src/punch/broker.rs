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
//! A Register request without a session code asks the broker to pick one:
//! a free nameplate number, as short as the table allows, returned in the
//! response's SESSION attribute. The peer refreshes under it and gives it
//! to the other side as the nameplate of its code (`7-amber-falcon-river`),
//! so two pairs using one broker never meet under the same name, as
//! magic-wormhole's server allocates nameplates.
//!
//! With [`BrokerConfig::relay`] on, the introduction also carries a relay
//! ticket; when no candidate pair works, both peers send a Relay request
//! with it and the broker forwards their UDT datagrams between the two
//! source addresses it saw (see [`super::relay`]). Only sessions it
//! introduced, only between their two peers: never an open relay.
//!
//! State is bounded: at most [`BrokerConfig::max_sessions`] sessions, at
//! most [`BrokerConfig::max_sessions_per_ip`] opened from one IP address
//! (a flood from one host cannot crowd others out), two peers and
//! [`MAX_CANDIDATES`] candidates per peer; a registration not refreshed
//! within [`BrokerConfig::registration_ttl`] is forgotten.

use std::borrow::Cow;
use std::collections::{HashMap, VecDeque};
use std::net::{IpAddr, SocketAddr};
use std::time::{Duration, Instant};

use super::candidate::{Candidate, CandidateType};
use super::relay::{RelayCounters, RelayTable};
use super::stun::{attr, method, Class, Message, TransactionId};
use crate::endpoint::{is_stun, DatagramHandler};
use crate::rng::Rng;

/// Most candidates kept per peer.
pub const MAX_CANDIDATES: usize = 8;
/// Longest session code, in bytes.
pub const MAX_CODE: usize = 64;
/// Answers waiting to be sent beyond this many are dropped (the sender
/// retries), so a burst cannot grow the queue without bound.
const MAX_OUTBOX: usize = 1024;
/// The SOFTWARE attribute of the broker's answers.
const SOFTWARE: &[u8] = b"udt-broker";
/// Relayed datagrams queued for [`DatagramHandler::poll_transmit`] beyond
/// this many are dropped (UDT retransmits), bounding the queue.
const MAX_FORWARD: usize = 4096;

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
    /// Offer a relay to the sessions it introduces (off by default: a
    /// relay carries other people's bulk data).
    pub relay: bool,
    /// Most relayed pairs at once.
    pub max_relays: usize,
    /// A relayed pair without traffic for this long is dropped.
    pub relay_idle: Duration,
    /// Seeds the relay tickets (draw it from the operating system).
    pub seed: u64,
}

impl Default for BrokerConfig {
    fn default() -> Self {
        BrokerConfig {
            max_sessions: 4096,
            max_sessions_per_ip: 16,
            registration_ttl: Duration::from_secs(30),
            start_delay: Duration::from_millis(100),
            relay: false,
            max_relays: 1024,
            relay_idle: Duration::from_secs(60),
            seed: 0,
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
    /// Session names the broker picked for a peer that named none.
    pub allocations: u64,
}

/// One registered peer.
#[derive(Clone, Debug)]
struct Peer {
    /// The source the broker saw: the peer's server-reflexive address.
    addr: SocketAddr,
    token: [u8; 16],
    host: Vec<Candidate>,
    last_seen: Instant,
    /// Its Relay request waiting for the other peer's, if any.
    relay_tx: Option<TransactionId>,
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
    /// The relay ticket issued at the introduction (relay offered only).
    relay_ticket: Option<[u8; 16]>,
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
    relay: RelayTable,
    rng: Rng,
    /// Relayed datagrams for the handler's `poll_transmit`, and spare
    /// buffers so forwarding does not allocate once warmed up.
    forward: VecDeque<(SocketAddr, Vec<u8>)>,
    spare: Vec<Vec<u8>>,
}

impl Broker {
    /// An empty broker.
    pub fn new(config: BrokerConfig) -> Broker {
        Broker {
            relay: RelayTable::new(config.max_relays, config.relay_idle),
            rng: Rng::new(config.seed),
            forward: VecDeque::new(),
            spare: Vec::new(),
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

    /// Counters of the relay.
    pub fn relay_counters(&self) -> RelayCounters {
        self.relay.counters()
    }

    /// Relayed pairs bound now.
    pub fn relayed_pairs(&self) -> usize {
        self.relay.pairs()
    }

    /// Where a relayed (non-STUN) datagram of `len` bytes from `from`
    /// goes: the other peer of its bound pair, or `None` (drop it: no
    /// binding, or the relay is off). One lookup, no allocation: this is
    /// the per-packet path of the relay.
    pub fn relay(&mut self, now: Instant, from: SocketAddr, len: usize) -> Option<SocketAddr> {
        if !self.config.relay {
            return None;
        }
        self.relay.route(now, from, len)
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
            method::RELAY => self.on_relay(now, from, &msg),
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
        // A relayed pair lives while its traffic flows, even if the
        // registrations lapse (the peers refresh them, so that is rare).
        self.relay.sweep(now);
        self.next_sweep = if self.sessions.is_empty() && self.relay.pairs() == 0 {
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
        let token = req
            .get(attr::TOKEN)
            .and_then(|t| <[u8; 16]>::try_from(t).ok());
        let Some(token) = token else {
            self.counters.malformed += 1;
            self.error(from, req, 400, "session code and token required");
            return;
        };
        let code: Cow<'_, [u8]> = match req.get(attr::SESSION) {
            Some(code) => Cow::Borrowed(code),
            // No session named: the first peer asks us to pick a free one.
            None => match self.allocate(from, &token) {
                Some(code) => Cow::Owned(code),
                None => {
                    self.refuse(from, req, "no free session name");
                    return;
                }
            },
        };
        let code = &*code;
        if !(1..=MAX_CODE).contains(&code.len()) {
            self.counters.malformed += 1;
            self.error(from, req, 400, "session code and token required");
            return;
        }
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
            relay_tx: None,
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
            if !req.has(attr::SESSION) {
                self.counters.allocations += 1;
            }
            self.sessions.insert(
                code.to_vec(),
                Session {
                    opener: from.ip(),
                    peers: Vec::with_capacity(2),
                    start_at: None,
                    relay_ticket: None,
                },
            );
        }
        let Some(session) = self.sessions.get_mut(code) else {
            return;
        };
        let me = match session.peers.iter().position(|p| p.token == token) {
            Some(i) => {
                // A refresh: keep a pending relay request, and a relayed
                // pair alive while its peers are registered.
                self.relay.touch(now, from);
                let p = &mut session.peers[i];
                (p.addr, p.host, p.last_seen) = (peer.addr, peer.host, peer.last_seen);
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
            if self.config.relay {
                let mut t = [0u8; 16];
                t[..8].copy_from_slice(&self.rng.next_u64().to_be_bytes());
                t[8..].copy_from_slice(&self.rng.next_u64().to_be_bytes());
                session.relay_ticket = Some(t);
            }
            self.counters.introductions += 1;
        }
        let session = session.clone();
        let mut resp = Message::new(Class::Success, method::REGISTER, req.transaction);
        resp.push_xor_address(attr::XOR_MAPPED_ADDRESS, from);
        if !req.has(attr::SESSION) {
            // The name we picked: the peer refreshes under it and tells
            // the other side (as the nameplate of its code).
            resp.push(attr::SESSION, code.to_vec());
        }
        if let (Some(other), Some(start)) = (session.peers.get(1 - me), session.start_at) {
            add_peer(&mut resp, other, start, now, session.relay_ticket);
            if introduce {
                let me = &session.peers[me];
                let tx = super::stun::transaction_id(
                    u64::from_be_bytes(token[..8].try_into().unwrap_or_default()),
                    self.counters.introductions as u32,
                );
                let mut ind = Message::new(Class::Indication, method::INTRODUCE, tx);
                add_peer(&mut ind, me, start, now, session.relay_ticket);
                self.send(other.addr, &ind);
            }
        }
        self.send(from, &resp);
    }

    /// A free session name for a peer that asked for one: the decimal
    /// number of a nameplate, as short as the table allows (1-99 until all
    /// are in use, then 100-9999, then longer), drawn at random so a name
    /// says little about how busy the broker is. A repeated request
    /// (its answer was lost) gets the name this token already holds, so a
    /// retransmission never takes a second one. `None` when no free name
    /// was found (the table is that full).
    fn allocate(&mut self, from: SocketAddr, token: &[u8; 16]) -> Option<Vec<u8>> {
        if let Some(code) = self.sessions.iter().find_map(|(code, s)| {
            s.peers
                .iter()
                .any(|p| p.token == *token && p.addr == from)
                .then(|| code.clone())
        }) {
            return Some(code);
        }
        // Random draws find a free name at once while a range is sparse;
        // a walk from a random start then finds the last free ones of a
        // short range before a longer name is handed out.
        const TRIES: u64 = 32;
        const WALK_UP_TO: u64 = 10_000;
        for (low, high) in [(1u64, 99u64), (100, 9_999), (10_000, 999_999_999)] {
            let size = high - low + 1;
            let start = self.rng.next_u64() % size;
            let walk = if size <= WALK_UP_TO { size } else { 0 };
            let draws = (0..TRIES)
                .map(|_| self.rng.next_u64() % size)
                .collect::<Vec<_>>();
            let mut candidates = draws
                .into_iter()
                .chain((0..walk).map(|k| (start + k) % size));
            if let Some(code) = candidates.find_map(|i| {
                let code = (low + i).to_string().into_bytes();
                (!self.sessions.contains_key(&code)).then_some(code)
            }) {
                return Some(code);
            }
        }
        None
    }

    /// A Relay request: when both peers of the session have asked with
    /// the ticket, bind their source addresses and answer both.
    fn on_relay(&mut self, now: Instant, from: SocketAddr, req: &Message) {
        if !self.config.relay {
            self.error(from, req, 403, "this broker does not relay");
            return;
        }
        let code = req.get(attr::SESSION).unwrap_or_default();
        let token = req.get(attr::TOKEN);
        let ticket = req.get(attr::RELAY_TICKET);
        let Some(session) = self.sessions.get_mut(code) else {
            self.error(from, req, 437, "no such session");
            return;
        };
        let me = session
            .peers
            .iter()
            .position(|p| Some(&p.token[..]) == token);
        let (Some(me), true) = (
            me,
            ticket.is_some() && session.relay_ticket.as_ref().map(|t| &t[..]) == ticket,
        ) else {
            self.counters.refused += 1;
            self.error(from, req, 403, "not introduced by this broker");
            return;
        };
        let p = &mut session.peers[me];
        if p.addr != from {
            // The relay binds the address this request came from.
            self.relay.unbind(p.addr);
            p.addr = from;
        }
        p.last_seen = now;
        p.relay_tx = Some(req.transaction);
        let ready: Vec<(SocketAddr, TransactionId)> = session
            .peers
            .iter()
            .filter_map(|p| Some((p.addr, p.relay_tx?)))
            .collect();
        let [(a, tx_a), (b, tx_b)] = ready[..] else {
            // The other peer has not asked yet; this one retransmits.
            return;
        };
        if let Err(e) = self.relay.bind(now, a, b) {
            log::debug!("relay for {a} and {b} refused: {e}");
            self.counters.refused += 1;
            self.error(from, req, 508, "relay full");
            return;
        }
        log::debug!("relaying between {a} and {b}");
        for (me, tx, other) in [(a, tx_a, b), (b, tx_b, a)] {
            let mut m = Message::new(Class::Success, method::RELAY, tx);
            m.push_xor_address(attr::XOR_MAPPED_ADDRESS, me);
            m.push_xor_address(attr::XOR_PEER_ADDRESS, other);
            self.send(me, &m);
        }
        if self.next_sweep.is_none() {
            self.next_sweep = Some(now + self.sweep_interval());
        }
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

/// The other peer's token, candidates, the start delay and the relay
/// ticket (when the relay is offered).
fn add_peer(m: &mut Message, peer: &Peer, start: Instant, now: Instant, ticket: Option<[u8; 16]>) {
    m.push(attr::PEER_TOKEN, peer.token.to_vec());
    if let Some(t) = ticket {
        m.push(attr::RELAY_TICKET, t.to_vec());
    }
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

/// A broker on a UDT endpoint's port. With the relay on it claims every
/// datagram (relayed UDT packets are not for this endpoint's own
/// sockets), so such a port serves the broker only.
impl DatagramHandler for Broker {
    fn recognises(&self, datagram: &[u8]) -> bool {
        self.config.relay || is_stun(datagram)
    }

    fn handle_datagram(&mut self, now: Instant, from: SocketAddr, datagram: &[u8]) {
        if is_stun(datagram) {
            self.handle(now, from, datagram);
            return;
        }
        let Some(to) = self.relay(now, from, datagram.len()) else {
            return;
        };
        if self.forward.len() >= MAX_FORWARD {
            return;
        }
        let mut b = self.spare.pop().unwrap_or_default();
        b.clear();
        b.extend_from_slice(datagram);
        self.forward.push_back((to, b));
    }

    fn poll_transmit(&mut self, _now: Instant, buf: &mut Vec<u8>) -> Option<SocketAddr> {
        if let Some((to, d)) = self.poll_send() {
            buf.extend_from_slice(&d);
            return Some(to);
        }
        let (to, d) = self.forward.pop_front()?;
        buf.extend_from_slice(&d);
        if self.spare.len() < MAX_FORWARD {
            self.spare.push(d);
        }
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
