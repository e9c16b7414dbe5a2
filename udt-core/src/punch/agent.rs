//! The punch agent: one side of a NAT traversal, sans-I/O.
//!
//! 1. Register with the broker under the session code, with our host
//!    candidates and a random check token; learn our server-reflexive
//!    address from the answer. Refresh while waiting and afterwards, so
//!    the NAT keeps the mapping (Linux forgets an unreplied flow in 30 s).
//! 2. When the broker introduces the peer, build the checklist and, from
//!    the common start time, send Binding checks in priority order, one
//!    every [`PACE`], retransmitted on a timeout derived from the broker
//!    round trip, a few times at most. A check carries a
//!    MESSAGE-INTEGRITY keyed with the peer's token (proof the broker
//!    introduced us; the token itself never crosses the peer path); an
//!    answer must be signed with the same key, echo our transaction ID
//!    and come from the address checked.
//! 3. A check that arrives from an address the peer never announced adds a
//!    peer-reflexive pair; any check triggers our own check on its pair,
//!    which is what opens address-and-port-dependent filters (both NATs
//!    see an outgoing packet first).
//! 4. Regular nomination: the controlling agent (the larger token) waits
//!    until the best working pair can no longer be beaten (every better
//!    pair failed) or a settle time after the first success has passed,
//!    then repeats the check on it with USE-CANDIDATE. UDT cannot migrate,
//!    so the first pair to answer must not win by speed alone.
//! 5. After nomination: keep-alive Binding indications on the pair, and
//!    answers to the peer's late checks. The driver runs the UDT
//!    rendezvous to [`Selected::remote`] from the same port.
//! 6. When no pair works and the broker offered a relay (a ticket in the
//!    introduction), ask it to relay instead of failing, and stop
//!    answering checks (both sides must end up on the same path). Once
//!    the broker has both requests it binds the two peers and answers;
//!    the selected pair is then the broker itself, a `relay` candidate,
//!    and the UDT rendezvous runs to the broker's address.

use std::collections::VecDeque;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use super::candidate::{priority, Candidate, CandidateType};
use super::checklist::{Checklist, Inflight, PairState};
use super::integrity;
use super::outcome::{
    FailureReason, NatObservations, PunchEvent, PunchFailure, PunchState, RelayStatus, Selected,
};
use super::stun::{attr, method, transaction_id, Class, Message, TransactionId};
use crate::endpoint::DatagramHandler;
use crate::rng::Rng;

/// Spacing of new checks (ICE's Ta).
pub const PACE: Duration = Duration::from_millis(20);
/// Refresh of the registration while waiting for the peer.
const WAIT_REFRESH: Duration = Duration::from_secs(2);
/// Most events kept for [`PunchAgent::poll_event`].
const MAX_EVENTS: usize = 256;
/// Longest retransmission timeout of a check.
const MAX_RTO: Duration = Duration::from_millis(1600);

/// What a [`PunchAgent`] needs to know.
#[derive(Clone, Debug)]
pub struct PunchConfig {
    /// The broker's address.
    pub broker: SocketAddr,
    /// The session code both peers use. Empty: ask the broker to pick a
    /// free one (a nameplate number) and use it from then on
    /// ([`PunchAgent::session`], [`PunchEvent::Registered`]); the other
    /// peer must then be told it.
    pub code: String,
    /// Host candidates: local interface addresses with the port the
    /// agent's socket is bound to.
    pub host_candidates: Vec<SocketAddr>,
    /// A secret random token (draw it from the operating system): it
    /// authenticates checks and breaks the role tie.
    pub token: [u8; 16],
    /// Seeds transaction IDs.
    pub seed: u64,
    /// How long to wait for the broker and then for the peer.
    pub wait_for_peer: Duration,
    /// How long the checks may take from the start time.
    pub check_timeout: Duration,
    /// Transmissions of one check before its pair fails.
    pub max_check_sends: u32,
    /// Keep-alive interval on the nominated pair and towards the broker
    /// (below the 30 s Linux conntrack timeout for unreplied UDP).
    pub keepalive: Duration,
    /// Fall back to the broker's relay when no pair works (if it offers
    /// one).
    pub allow_relay: bool,
    /// Skip the checks and relay at once (when the broker offers it).
    pub relay_only: bool,
}

impl PunchConfig {
    /// Defaults for everything but the broker, code, host candidates,
    /// token and seed.
    pub fn new(
        broker: SocketAddr,
        code: impl Into<String>,
        host_candidates: Vec<SocketAddr>,
        token: [u8; 16],
        seed: u64,
    ) -> PunchConfig {
        PunchConfig {
            broker,
            code: code.into(),
            host_candidates,
            token,
            seed,
            wait_for_peer: Duration::from_secs(60),
            check_timeout: Duration::from_secs(10),
            max_check_sends: 7,
            keepalive: Duration::from_secs(10),
            allow_relay: true,
            relay_only: false,
        }
    }
}

/// The peer as the broker introduced it.
#[derive(Clone, Debug)]
struct PeerInfo {
    token: [u8; 16],
    start_at: Instant,
    deadline: Instant,
    relay_ticket: Option<[u8; 16]>,
}

/// The Relay request in flight.
#[derive(Clone, Copy, Debug)]
struct RelayRequest {
    tx: TransactionId,
    next: Instant,
    rto: Duration,
    deadline: Instant,
}

/// One side of a punch. See the module documentation.
#[derive(Debug)]
pub struct PunchAgent {
    config: PunchConfig,
    rng: Rng,
    started: Instant,
    state: PunchState,
    locals: Vec<Candidate>,
    /// The Register transaction in flight and when it left.
    register: Option<(TransactionId, Instant)>,
    register_rto: Duration,
    next_register: Instant,
    broker_rtt: Option<Duration>,
    peer: Option<PeerInfo>,
    controlling: bool,
    checklist: Checklist,
    triggered: VecDeque<usize>,
    next_check: Instant,
    first_success: Option<Instant>,
    keepalive_at: Option<Instant>,
    relay: Option<RelayRequest>,
    nat: NatObservations,
    outbox: VecDeque<(SocketAddr, Vec<u8>)>,
    events: VecDeque<(Duration, PunchEvent)>,
}

impl PunchAgent {
    /// An agent that starts registering at `now`.
    pub fn new(config: PunchConfig, now: Instant) -> PunchAgent {
        let locals = config
            .host_candidates
            .iter()
            .enumerate()
            .map(|(i, a)| Candidate::new(CandidateType::Host, *a, 65535 - i as u16))
            .collect();
        PunchAgent {
            rng: Rng::new(config.seed),
            config,
            started: now,
            state: PunchState::Registering,
            locals,
            register: None,
            register_rto: Duration::from_millis(250),
            next_register: now,
            broker_rtt: None,
            peer: None,
            controlling: false,
            checklist: Checklist::default(),
            triggered: VecDeque::new(),
            next_check: now,
            first_success: None,
            keepalive_at: None,
            relay: None,
            nat: NatObservations::default(),
            outbox: VecDeque::new(),
            events: VecDeque::new(),
        }
    }

    /// Where the attempt stands.
    pub fn state(&self) -> &PunchState {
        &self.state
    }

    /// The session's name at the broker: the configured code, or the one
    /// the broker picked (empty until it answered).
    pub fn session(&self) -> &str {
        &self.config.code
    }

    /// The nominated pair, once there is one.
    pub fn selected(&self) -> Option<Selected> {
        match self.state {
            PunchState::Nominated(s) => Some(s),
            _ => None,
        }
    }

    /// True when this agent nominates (ICE controlling role).
    pub fn is_controlling(&self) -> bool {
        self.controlling
    }

    /// Our candidates (host, and server-reflexive once known).
    pub fn local_candidates(&self) -> &[Candidate] {
        &self.locals
    }

    /// The checklist, highest priority first.
    pub fn pairs(&self) -> &[super::checklist::Pair] {
        &self.checklist.pairs
    }

    /// What the checks revealed about the NATs so far.
    pub fn nat_observations(&self) -> &NatObservations {
        &self.nat
    }

    /// Round-trip time to the broker, once measured.
    pub fn broker_rtt(&self) -> Option<Duration> {
        self.broker_rtt
    }

    /// The next progress event and when it happened (since the start).
    pub fn poll_event(&mut self) -> Option<(Duration, PunchEvent)> {
        self.events.pop_front()
    }

    /// The next datagram to send.
    pub fn poll_send(&mut self) -> Option<(SocketAddr, Vec<u8>)> {
        self.outbox.pop_front()
    }

    /// When [`handle_timeout`](Self::handle_timeout) is next due.
    pub fn next_timeout(&self) -> Option<Instant> {
        let mut at: Option<Instant> = None;
        let mut consider = |t: Option<Instant>| {
            if let Some(t) = t {
                at = Some(at.map_or(t, |a| a.min(t)));
            }
        };
        match &self.state {
            PunchState::Failed(_) => return None,
            PunchState::Registering | PunchState::Waiting => {
                consider(Some(self.next_register));
                consider(Some(self.started + self.config.wait_for_peer));
            }
            PunchState::Checking => {
                consider(Some(self.next_register));
                consider(self.checklist.next_retransmit());
                if self.checklist.next_waiting().is_some() || !self.triggered.is_empty() {
                    consider(Some(self.next_check));
                }
                if let Some(p) = &self.peer {
                    consider(Some(p.deadline));
                }
                if self.controlling && !self.nominating() {
                    if let Some(t) = self.first_success {
                        consider(Some(t + self.settle_time()));
                    }
                }
            }
            PunchState::Relaying => {
                if let Some(r) = &self.relay {
                    consider(Some(r.next));
                    consider(Some(r.deadline));
                }
            }
            PunchState::Nominated(_) => {
                consider(Some(self.next_register));
                consider(self.keepalive_at);
            }
        }
        at
    }

    /// Fires what is due at `now` (extra calls are harmless).
    pub fn handle_timeout(&mut self, now: Instant) {
        match self.state {
            PunchState::Failed(_) => {}
            PunchState::Registering | PunchState::Waiting => {
                if now >= self.started + self.config.wait_for_peer {
                    let reason = if self.state == PunchState::Registering {
                        FailureReason::BrokerUnreachable
                    } else {
                        FailureReason::NoPeer
                    };
                    self.fail(now, reason);
                    return;
                }
                if now >= self.next_register {
                    self.send_register(now);
                }
            }
            PunchState::Checking => {
                if now >= self.next_register {
                    self.send_register(now);
                }
                self.run_checks(now);
            }
            PunchState::Relaying => self.run_relay(now),
            PunchState::Nominated(s) => {
                if now >= self.next_register {
                    self.send_register(now);
                }
                if self.keepalive_at.is_some_and(|t| t <= now) {
                    let tx = self.new_tx();
                    let m = Message::new(Class::Indication, method::BINDING, tx);
                    self.send(s.remote.addr, &m);
                    self.keepalive_at = Some(now + self.config.keepalive);
                }
            }
        }
    }

    /// Handles a STUN datagram from `from` (anything else is ignored).
    pub fn handle(&mut self, now: Instant, from: SocketAddr, datagram: &[u8]) {
        let Ok(msg) = Message::decode(datagram) else {
            log::debug!("punch: ignored a malformed datagram from {from}");
            return;
        };
        match (msg.class, msg.method) {
            (Class::Success | Class::Error, method::REGISTER) if from == self.config.broker => {
                self.on_register_answer(now, &msg)
            }
            (Class::Indication, method::INTRODUCE) if from == self.config.broker => {
                self.on_introduction(now, &msg)
            }
            (Class::Success | Class::Error, method::RELAY) if from == self.config.broker => {
                self.on_relay_answer(now, &msg)
            }
            (Class::Request, method::BINDING) => self.on_check(now, from, &msg, datagram),
            (Class::Success | Class::Error, method::BINDING) => {
                self.on_check_answer(now, from, &msg, datagram)
            }
            _ => {}
        }
    }

    // ----- broker -----

    fn send_register(&mut self, now: Instant) {
        let tx = match self.register {
            // A retransmission keeps its transaction (RFC 8489 §6.2.1).
            Some((tx, _)) if self.state == PunchState::Registering => tx,
            _ => self.new_tx(),
        };
        let mut m = Message::new(Class::Request, method::REGISTER, tx);
        if !self.config.code.is_empty() {
            m.push(attr::SESSION, self.config.code.as_bytes().to_vec());
        }
        m.push(attr::TOKEN, self.config.token.to_vec());
        for c in self.locals.iter().filter(|c| c.kind == CandidateType::Host) {
            m.push(attr::CANDIDATE, c.encode());
        }
        self.send(self.config.broker, &m);
        self.register = Some((tx, now));
        self.next_register = now
            + match self.state {
                PunchState::Registering => {
                    let rto = self.register_rto;
                    self.register_rto = (rto * 2).min(Duration::from_secs(2));
                    rto
                }
                PunchState::Waiting => WAIT_REFRESH,
                _ => self.config.keepalive,
            };
    }

    fn on_register_answer(&mut self, now: Instant, msg: &Message) {
        let Some((tx, sent)) = self.register else {
            return;
        };
        if tx != msg.transaction {
            return;
        }
        self.register = None;
        if msg.class == Class::Error {
            let code = msg.error_code().unwrap_or(0);
            let reason = msg
                .get(attr::ERROR_CODE)
                .and_then(|v| v.get(4..))
                .map(|r| String::from_utf8_lossy(r).into_owned())
                .unwrap_or_default();
            if !matches!(self.state, PunchState::Registering | PunchState::Waiting) {
                // A refresh refused later (expired and the table is full):
                // the punch itself does not need the broker any more.
                log::debug!("punch: broker refused a refresh: {code} {reason}");
                return;
            }
            self.fail(now, FailureReason::BrokerRefused(code, reason));
            return;
        }
        let Some(reflexive) = msg.xor_address(attr::XOR_MAPPED_ADDRESS) else {
            return;
        };
        if self.state == PunchState::Registering {
            if self.config.code.is_empty() {
                // We asked the broker to name the session: its answer must.
                let named = msg
                    .get(attr::SESSION)
                    .and_then(|c| std::str::from_utf8(c).ok())
                    .filter(|c| !c.is_empty());
                let Some(session) = named else {
                    self.fail(
                        now,
                        FailureReason::BrokerRefused(
                            0,
                            "the broker picked no session name (an older broker? give a code)"
                                .into(),
                        ),
                    );
                    return;
                };
                self.config.code = session.to_string();
            }
            let rtt = now.saturating_duration_since(sent);
            self.broker_rtt = Some(rtt);
            self.nat.local_reflexive = Some(reflexive);
            if !self.locals.iter().any(|c| c.addr == reflexive) {
                self.locals.push(Candidate::new(
                    CandidateType::ServerReflexive,
                    reflexive,
                    65535,
                ));
            }
            self.event(
                now,
                PunchEvent::Registered {
                    reflexive,
                    rtt,
                    session: self.config.code.clone(),
                },
            );
            self.state = PunchState::Waiting;
            self.next_register = now + WAIT_REFRESH;
        }
        if msg.has(attr::PEER_TOKEN) {
            self.on_introduction(now, msg);
        }
    }

    fn on_introduction(&mut self, now: Instant, msg: &Message) {
        if !matches!(self.state, PunchState::Waiting | PunchState::Registering) {
            return;
        }
        let Some(token) = msg
            .get(attr::PEER_TOKEN)
            .and_then(|t| <[u8; 16]>::try_from(t).ok())
        else {
            return;
        };
        let delay = Duration::from_millis(u64::from(msg.u32_attr(attr::START_DELAY).unwrap_or(0)));
        let start_at = now + delay.min(Duration::from_secs(5));
        self.controlling = self.config.token > token;
        let candidates: Vec<Candidate> = msg
            .all(attr::CANDIDATE)
            .filter_map(Candidate::decode)
            .collect();
        for c in &candidates {
            self.checklist.add(&self.locals, *c, self.controlling);
        }
        let relay_ticket = msg
            .get(attr::RELAY_TICKET)
            .and_then(|t| <[u8; 16]>::try_from(t).ok());
        self.peer = Some(PeerInfo {
            token,
            start_at,
            deadline: start_at + self.config.check_timeout,
            relay_ticket,
        });
        self.next_check = start_at;
        self.state = PunchState::Checking;
        self.next_register = now + self.config.keepalive;
        self.event(
            now,
            PunchEvent::PeerIntroduced {
                candidates,
                controlling: self.controlling,
            },
        );
        if self.config.relay_only {
            self.no_pair_worked(now);
        }
    }

    // ----- relay -----

    /// No pair worked (or checks are skipped): relay if the broker offers
    /// it and we allow it, otherwise fail naming what was seen.
    fn no_pair_worked(&mut self, now: Instant) {
        let ticket = self.peer.as_ref().and_then(|p| p.relay_ticket);
        let status = match (self.config.allow_relay, ticket) {
            (false, _) => RelayStatus::Disabled,
            (true, None) => RelayStatus::NotOffered,
            (true, Some(_)) => {
                let direct = PunchFailure {
                    reason: FailureReason::NoPairWorked,
                    nat: self.nat.clone(),
                    relay: RelayStatus::NotNeeded,
                };
                for p in &mut self.checklist.pairs {
                    p.inflight = None;
                }
                self.triggered.clear();
                self.state = PunchState::Relaying;
                // The peer may still be checking (until its own deadline)
                // before it asks too.
                self.relay = Some(RelayRequest {
                    tx: self.new_tx(),
                    next: now,
                    rto: Duration::from_millis(250),
                    deadline: now + self.config.check_timeout + Duration::from_secs(5),
                });
                self.event(now, PunchEvent::RelayRequested(direct));
                self.run_relay(now);
                return;
            }
        };
        self.fail_with(now, FailureReason::NoPairWorked, status);
    }

    fn run_relay(&mut self, now: Instant) {
        let Some(mut r) = self.relay else {
            return;
        };
        if now >= r.deadline {
            self.fail_with(
                now,
                FailureReason::NoPairWorked,
                RelayStatus::Failed(
                    "the broker did not bind us to the peer in time (did the peer ask too?)".into(),
                ),
            );
            return;
        }
        if now < r.next {
            return;
        }
        let (Some(ticket), code) = (
            self.peer.as_ref().and_then(|p| p.relay_ticket),
            self.config.code.as_bytes().to_vec(),
        ) else {
            return;
        };
        // Retransmissions keep the transaction: the broker answers the
        // one it holds once the peer has asked as well.
        let mut m = Message::new(Class::Request, method::RELAY, r.tx);
        m.push(attr::SESSION, code);
        m.push(attr::TOKEN, self.config.token.to_vec());
        m.push(attr::RELAY_TICKET, ticket.to_vec());
        self.send(self.config.broker, &m);
        r.next = now + r.rto;
        r.rto = (r.rto * 2).min(Duration::from_secs(1));
        self.relay = Some(r);
    }

    fn on_relay_answer(&mut self, now: Instant, msg: &Message) {
        if self.state != PunchState::Relaying || self.relay.map(|r| r.tx) != Some(msg.transaction) {
            return;
        }
        self.relay = None;
        if msg.class == Class::Error {
            let why = format!(
                "the broker refused ({} {})",
                msg.error_code().unwrap_or(0),
                msg.get(attr::ERROR_CODE)
                    .and_then(|v| v.get(4..))
                    .map(|r| String::from_utf8_lossy(r).into_owned())
                    .unwrap_or_default()
            );
            self.fail_with(now, FailureReason::NoPairWorked, RelayStatus::Failed(why));
            return;
        }
        let mapped = msg
            .xor_address(attr::XOR_MAPPED_ADDRESS)
            .or(self.nat.local_reflexive);
        let local = match mapped {
            Some(m) => Candidate::new(CandidateType::ServerReflexive, m, 65535),
            None => self.checklist.pairs.first().map_or(
                Candidate::new(CandidateType::Host, self.config.broker, 0),
                |p| p.local,
            ),
        };
        let selected = Selected {
            local,
            remote: Candidate::new(CandidateType::Relayed, self.config.broker, 65535),
            priority: 0,
            rtt: self.broker_rtt,
        };
        self.state = PunchState::Nominated(selected);
        // The registration refreshes keep the broker's binding open; no
        // Binding indications to the broker (it would count them as junk).
        self.keepalive_at = None;
        self.next_register = now + self.config.keepalive;
        self.event(now, PunchEvent::Nominated(selected));
    }

    // ----- checks -----

    /// The initial retransmission timeout of a check: a few broker round
    /// trips (the peer is usually about as far), within bounds.
    fn initial_rto(&self) -> Duration {
        let rtt = self.broker_rtt.unwrap_or(Duration::from_millis(100));
        (rtt * 2 + Duration::from_millis(50))
            .clamp(Duration::from_millis(100), Duration::from_secs(1))
    }

    /// How long the controlling agent waits after the first success for a
    /// better pair to succeed.
    fn settle_time(&self) -> Duration {
        let rtt = self.broker_rtt.unwrap_or(Duration::from_millis(100));
        (rtt * 4).clamp(Duration::from_millis(200), Duration::from_secs(2))
    }

    fn nominating(&self) -> bool {
        self.checklist
            .pairs
            .iter()
            .any(|p| p.inflight.is_some_and(|f| f.use_candidate))
    }

    fn run_checks(&mut self, now: Instant) {
        let Some(peer) = self.peer.clone() else {
            return;
        };
        if now >= peer.deadline {
            self.no_pair_worked(now);
            return;
        }
        if now < peer.start_at {
            return;
        }
        // Retransmissions and give-ups.
        for i in 0..self.checklist.pairs.len() {
            let Some(f) = self.checklist.pairs[i].inflight else {
                continue;
            };
            if f.next > now {
                continue;
            }
            if f.sends >= self.config.max_check_sends {
                let p = &mut self.checklist.pairs[i];
                p.inflight = None;
                // An unanswered nomination also fails the pair: the path
                // stopped working, so the next best one is nominated.
                p.state = PairState::Failed;
                let remote = p.remote;
                self.event(now, PunchEvent::CheckFailed { remote });
            } else {
                self.transmit_check(now, i);
            }
        }
        // One new check per pace interval: triggered ones first.
        if now >= self.next_check {
            let next = loop {
                match self.triggered.pop_front() {
                    Some(i) if self.checklist.pairs[i].inflight.is_none() => break Some(i),
                    Some(_) => continue,
                    None => break self.checklist.next_waiting(),
                }
            };
            if let Some(i) = next {
                self.start_check(now, i, false);
                self.next_check = now + PACE;
            }
        }
        if self.controlling {
            self.maybe_nominate(now);
        }
        if self.checklist.all_failed() && self.triggered.is_empty() {
            self.no_pair_worked(now);
        }
    }

    fn maybe_nominate(&mut self, now: Instant) {
        if self.nominating() || !matches!(self.state, PunchState::Checking) {
            return;
        }
        let Some(best) = self.checklist.best_succeeded() else {
            return;
        };
        let settled = self
            .first_success
            .is_some_and(|t| now >= t + self.settle_time());
        if self.checklist.better_pending(best) && !settled {
            return;
        }
        log::debug!(
            "punch: nominating {} (priority {})",
            self.checklist.pairs[best].remote,
            self.checklist.pairs[best].priority
        );
        self.start_check(now, best, true);
    }

    fn start_check(&mut self, now: Instant, i: usize, use_candidate: bool) {
        let tx = self.new_tx();
        let rto = self.initial_rto();
        let p = &mut self.checklist.pairs[i];
        if !use_candidate {
            p.state = PairState::InProgress;
        }
        p.inflight = Some(Inflight {
            tx,
            sends: 0,
            last_sent: now,
            next: now,
            rto,
            use_candidate,
        });
        self.transmit_check(now, i);
    }

    fn transmit_check(&mut self, now: Instant, i: usize) {
        let Some(peer) = &self.peer else {
            return;
        };
        let peer_token = peer.token;
        let controlling = self.controlling;
        let tie = u64::from_be_bytes(self.config.token[..8].try_into().unwrap_or_default());
        let p = &mut self.checklist.pairs[i];
        let Some(f) = p.inflight.as_mut() else {
            return;
        };
        if f.sends > 0 {
            f.rto = (f.rto * 2).min(MAX_RTO);
        }
        f.sends += 1;
        f.last_sent = now;
        f.next = now + f.rto;
        let mut m = Message::new(Class::Request, method::BINDING, f.tx);
        m.push(
            attr::PRIORITY,
            priority(CandidateType::PeerReflexive, 65535)
                .to_be_bytes()
                .to_vec(),
        );
        let role = if controlling {
            attr::ICE_CONTROLLING
        } else {
            attr::ICE_CONTROLLED
        };
        m.push(role, tie.to_be_bytes().to_vec());
        if f.use_candidate {
            m.push(attr::USE_CANDIDATE, Vec::new());
        }
        let to = p.remote.addr;
        self.send_signed(to, &m, Some(&peer_token));
    }

    fn on_check(&mut self, now: Instant, from: SocketAddr, msg: &Message, datagram: &[u8]) {
        if !integrity::verify(datagram, &self.config.token) {
            log::debug!("punch: ignored an unauthenticated check from {from}");
            return;
        }
        if self.config.relay_only
            || matches!(self.state, PunchState::Relaying)
            || self.selected().is_some_and(|s| s.is_relayed())
        {
            // Committed to the relay: an answered check could lead the
            // peer onto a direct pair we no longer use.
            return;
        }
        let mut resp = Message::new(Class::Success, method::BINDING, msg.transaction);
        resp.push_xor_address(attr::XOR_MAPPED_ADDRESS, from);
        let key = self.config.token;
        self.send_signed(from, &resp, Some(&key));
        self.nat.checks_received += 1;
        if !matches!(self.state, PunchState::Checking) {
            return;
        }
        let i = match self.checklist.find(from) {
            Some(i) => i,
            None => {
                let known_ip = self.checklist.pairs.iter().any(|p| {
                    p.remote.kind != CandidateType::Host && p.remote.addr.ip() == from.ip()
                });
                if known_ip {
                    self.nat.peer_mapping_varies = true;
                }
                let prio = msg
                    .u32_attr(attr::PRIORITY)
                    .unwrap_or_else(|| priority(CandidateType::PeerReflexive, 65535));
                let c = Candidate {
                    kind: CandidateType::PeerReflexive,
                    addr: from,
                    priority: prio,
                };
                match self.checklist.add(&self.locals, c, self.controlling) {
                    Some(i) => {
                        // Indexes after the insertion point moved down.
                        for t in self.triggered.iter_mut() {
                            if *t >= i {
                                *t += 1;
                            }
                        }
                        i
                    }
                    None => return,
                }
            }
        };
        let p = &mut self.checklist.pairs[i];
        if msg.has(attr::USE_CANDIDATE) && !self.controlling {
            p.peer_nominated = true;
            if p.state == PairState::Succeeded {
                self.nominate(now, i);
                return;
            }
        }
        match (p.state, p.inflight.as_mut()) {
            (PairState::Succeeded, _) => {}
            (_, Some(f)) => f.next = now,
            (_, None) => {
                p.state = PairState::Waiting;
                self.triggered.push_back(i);
                self.next_check = self.next_check.min(now);
            }
        }
        self.run_checks(now);
    }

    fn on_check_answer(&mut self, now: Instant, from: SocketAddr, msg: &Message, datagram: &[u8]) {
        let Some(i) = self.checklist.by_transaction(&msg.transaction) else {
            return;
        };
        let signed = self
            .peer
            .as_ref()
            .is_some_and(|p| integrity::verify(datagram, &p.token));
        if !signed {
            log::debug!("punch: ignored an unauthenticated check answer from {from}");
            return;
        }
        let p = &mut self.checklist.pairs[i];
        if p.remote.addr != from {
            return;
        }
        let Some(f) = p.inflight.take() else {
            return;
        };
        self.nat.responses_received += 1;
        if msg.class == Class::Error {
            p.state = PairState::Failed;
            let remote = p.remote;
            self.event(now, PunchEvent::CheckFailed { remote });
            return;
        }
        let rtt = now.saturating_duration_since(f.last_sent);
        let mapped = msg.xor_address(attr::XOR_MAPPED_ADDRESS);
        if let (Some(m), Some(r)) = (mapped, self.nat.local_reflexive) {
            if m.ip() == r.ip() && m.port() != r.port() {
                self.nat.local_mapping_varies = true;
            }
        }
        p.mapped = mapped;
        let newly = p.state != PairState::Succeeded;
        p.state = PairState::Succeeded;
        p.rtt = Some(rtt);
        let (remote, peer_nominated) = (p.remote, p.peer_nominated);
        if newly {
            self.first_success.get_or_insert(now);
            self.event(now, PunchEvent::CheckSucceeded { remote, rtt });
        }
        if f.use_candidate || (!self.controlling && peer_nominated) {
            self.nominate(now, i);
            return;
        }
        if self.controlling {
            self.maybe_nominate(now);
        }
    }

    fn nominate(&mut self, now: Instant, i: usize) {
        let p = &self.checklist.pairs[i];
        // Our address as the peer saw it on this path names the local
        // candidate for a person; the base is the same for all.
        let local = match p.mapped {
            Some(m) => self
                .locals
                .iter()
                .find(|c| c.addr == m)
                .copied()
                .unwrap_or(Candidate::new(CandidateType::PeerReflexive, m, 65535)),
            None => p.local,
        };
        let selected = Selected {
            local,
            remote: p.remote,
            priority: p.priority,
            rtt: p.rtt,
        };
        for p in &mut self.checklist.pairs {
            p.inflight = None;
        }
        self.triggered.clear();
        self.state = PunchState::Nominated(selected);
        self.keepalive_at = Some(now + self.config.keepalive);
        self.event(now, PunchEvent::Nominated(selected));
    }

    // ----- helpers -----

    fn fail(&mut self, now: Instant, reason: FailureReason) {
        self.fail_with(now, reason, RelayStatus::NotNeeded);
    }

    fn fail_with(&mut self, now: Instant, reason: FailureReason, relay: RelayStatus) {
        let failure = PunchFailure {
            reason,
            nat: self.nat.clone(),
            relay,
        };
        self.relay = None;
        for p in &mut self.checklist.pairs {
            p.inflight = None;
        }
        self.state = PunchState::Failed(failure.clone());
        self.event(now, PunchEvent::Failed(failure));
    }

    fn event(&mut self, now: Instant, e: PunchEvent) {
        if self.events.len() >= MAX_EVENTS {
            self.events.pop_front();
        }
        log::debug!("punch: {e:?}");
        self.events
            .push_back((now.saturating_duration_since(self.started), e));
    }

    fn new_tx(&mut self) -> TransactionId {
        transaction_id(self.rng.next_u64(), self.rng.next_u32())
    }

    fn send(&mut self, to: SocketAddr, m: &Message) {
        self.send_signed(to, m, None);
    }

    /// Sends `m` with a MESSAGE-INTEGRITY under `key`, if given.
    fn send_signed(&mut self, to: SocketAddr, m: &Message, key: Option<&[u8]>) {
        let mut out = Vec::with_capacity(128);
        m.encode_signed(key, true, &mut out);
        self.outbox.push_back((to, out));
    }
}

impl DatagramHandler for PunchAgent {
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
        PunchAgent::handle_timeout(self, now);
    }
}
