//! The broker and two agents on a small deterministic network with Linux-
//! like NATs: endpoint-independent or per-destination ("symmetric")
//! mapping, address-and-port-dependent or open filtering, optional
//! hairpinning, a LAN behind each NAT. The UDT rendezvous after the punch
//! is tested in the workspace's simulator tests (tests/sim_punch.rs).

use std::cmp::Reverse;
use std::collections::{BinaryHeap, HashMap, HashSet};
use std::net::{IpAddr, SocketAddr};
use std::time::{Duration, Instant};

use super::*;

use crate::time::test_epoch as epoch;

fn sa(s: &str) -> SocketAddr {
    s.parse().expect("socket address")
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Mapping {
    /// Linux default masquerade: one external port per internal socket.
    EndpointIndependent,
    /// `masquerade random`/`fully-random`: a new port per destination.
    PerDestination,
}

#[derive(Debug)]
struct Nat {
    public: IpAddr,
    mapping: Mapping,
    /// Inbound allowed from anyone once a mapping exists (EIF emulation);
    /// otherwise only from the exact destination (Linux conntrack).
    open_filter: bool,
    hairpin: bool,
    ports: HashMap<(SocketAddr, Option<SocketAddr>), u16>,
    inside: HashMap<u16, SocketAddr>,
    permits: HashSet<(u16, SocketAddr)>,
    next_port: u16,
}

impl Nat {
    fn new(public: &str, mapping: Mapping) -> Nat {
        Nat {
            public: public.parse().expect("ip"),
            mapping,
            open_filter: false,
            hairpin: false,
            ports: HashMap::new(),
            inside: HashMap::new(),
            permits: HashSet::new(),
            next_port: 40000,
        }
    }

    fn outbound(&mut self, src: SocketAddr, dst: SocketAddr) -> SocketAddr {
        let key = match self.mapping {
            Mapping::EndpointIndependent => (src, None),
            Mapping::PerDestination => (src, Some(dst)),
        };
        let port = match self.ports.get(&key) {
            Some(p) => *p,
            None => {
                // Port-preserving while the port is free, like masquerade.
                let p = if self.mapping == Mapping::EndpointIndependent
                    && !self.inside.contains_key(&src.port())
                {
                    src.port()
                } else {
                    self.next_port += 1;
                    self.next_port
                };
                self.ports.insert(key, p);
                self.inside.insert(p, src);
                p
            }
        };
        self.permits.insert((port, dst));
        SocketAddr::new(self.public, port)
    }

    fn inbound(&self, from: SocketAddr, port: u16) -> Option<SocketAddr> {
        let inside = self.inside.get(&port)?;
        (self.open_filter || self.permits.contains(&(port, from))).then_some(*inside)
    }
}

/// Who sits where: `lan` indexes `Net::nats`, `None` is the public side.
#[derive(Debug)]
struct Host {
    addr: SocketAddr,
    lan: Option<usize>,
    agent: PunchAgent,
}

struct Net {
    now: Instant,
    broker_addr: SocketAddr,
    broker: Broker,
    hosts: Vec<Host>,
    nats: Vec<Nat>,
    /// One-way delay on the public side, and inside a LAN.
    wan_delay: Duration,
    lan_delay: Duration,
    hairpin_delay: Duration,
    queue: BinaryHeap<Reverse<(Instant, u64, usize)>>,
    flights: Vec<Option<(SocketAddr, SocketAddr, Vec<u8>)>>,
    seq: u64,
    /// Packets delivered to each host, by source.
    received: Vec<Vec<SocketAddr>>,
    /// Non-STUN datagrams (stand-ins for UDT) delivered to each host.
    payloads: Vec<Vec<(SocketAddr, Vec<u8>)>>,
}

const BROKER: &str = "198.18.0.1:3478";

impl Net {
    fn new(nats: Vec<Nat>) -> Net {
        Net {
            now: epoch(),
            broker_addr: sa(BROKER),
            broker: Broker::new(BrokerConfig::default()),
            hosts: Vec::new(),
            nats,
            wan_delay: Duration::from_millis(15),
            lan_delay: Duration::from_millis(1),
            hairpin_delay: Duration::from_millis(1),
            queue: BinaryHeap::new(),
            flights: Vec::new(),
            seq: 0,
            received: Vec::new(),
            payloads: Vec::new(),
        }
    }

    /// A network whose broker offers the relay.
    fn with_relay(nats: Vec<Nat>) -> Net {
        let mut net = Net::new(nats);
        net.broker = Broker::new(BrokerConfig {
            relay: true,
            seed: 7,
            ..BrokerConfig::default()
        });
        net
    }

    fn add(&mut self, addr: &str, lan: Option<usize>, code: &str, token: u8) -> usize {
        let config = PunchConfig::new(
            self.broker_addr,
            code,
            vec![sa(addr)],
            [token; 16],
            u64::from(token),
        );
        self.add_config(config, lan)
    }

    fn add_config(&mut self, config: PunchConfig, lan: Option<usize>) -> usize {
        let addr = config.host_candidates[0];
        self.hosts.push(Host {
            addr,
            lan,
            agent: PunchAgent::new(config, self.now),
        });
        self.received.push(Vec::new());
        self.payloads.push(Vec::new());
        self.hosts.len() - 1
    }

    fn lan_of(&self, addr: SocketAddr) -> Option<Option<usize>> {
        if addr == self.broker_addr {
            return Some(None);
        }
        self.hosts.iter().find(|h| h.addr == addr).map(|h| h.lan)
    }

    /// Sends one datagram through the NATs; schedules its arrival.
    fn send(&mut self, src: SocketAddr, dst: SocketAddr, data: Vec<u8>) {
        let src_lan = self.lan_of(src).flatten();
        let mut from = src;
        let mut to = dst;
        let mut delay = self.wan_delay;
        if let Some(l) = src_lan {
            if self.lan_of(dst) == Some(Some(l)) {
                delay = self.lan_delay;
            } else {
                let hairpin = self.nats[l].public == dst.ip();
                if hairpin && !self.nats[l].hairpin {
                    return;
                }
                from = self.nats[l].outbound(src, dst);
                if hairpin {
                    delay = self.hairpin_delay;
                }
            }
        }
        if let Some(n) = self.nats.iter().position(|n| n.public == to.ip()) {
            match self.nats[n].inbound(from, to.port()) {
                Some(inside) => to = inside,
                None => return,
            }
        }
        let at = self.now + delay;
        self.flights.push(Some((from, to, data)));
        self.seq += 1;
        self.queue
            .push(Reverse((at, self.seq, self.flights.len() - 1)));
    }

    fn flush(&mut self) {
        let mut out = Vec::new();
        while let Some((to, d)) = self.broker.poll_send() {
            out.push((self.broker_addr, to, d));
        }
        for h in &mut self.hosts {
            while let Some((to, d)) = h.agent.poll_send() {
                out.push((h.addr, to, d));
            }
        }
        for (from, to, d) in out {
            self.send(from, to, d);
        }
    }

    fn next_timer(&self) -> Option<Instant> {
        self.hosts
            .iter()
            .filter_map(|h| h.agent.next_timeout())
            .chain(self.broker.next_timeout())
            .min()
    }

    /// Runs until every agent has nominated or failed, or `limit` passes.
    fn run(&mut self, limit: Duration) {
        self.run_inner(limit, true);
    }

    /// Runs for `d` whatever happens.
    fn run_for(&mut self, d: Duration) {
        self.run_inner(d, false);
    }

    fn run_inner(&mut self, limit: Duration, until_done: bool) {
        let end = self.now + limit;
        loop {
            self.flush();
            let done = until_done
                && self.hosts.iter().all(|h| {
                    matches!(
                        h.agent.state(),
                        PunchState::Nominated(_) | PunchState::Failed(_)
                    )
                });
            if done {
                return;
            }
            let packet = self.queue.peek().map(|Reverse((t, _, _))| *t);
            let timer = self.next_timer();
            let next = match (packet, timer) {
                (Some(p), Some(t)) => p.min(t),
                (a, b) => a.or(b).unwrap_or(end),
            };
            if next > end {
                return;
            }
            self.now = self.now.max(next);
            if packet.is_some_and(|p| p <= self.now) {
                let Some(Reverse((_, _, slot))) = self.queue.pop() else {
                    continue;
                };
                let Some((from, to, data)) = self.flights[slot].take() else {
                    continue;
                };
                if to == self.broker_addr && !crate::endpoint::is_stun(&data) {
                    // What `udt broker` does with a non-STUN datagram.
                    if let Some(peer) = self.broker.relay(self.now, from, data.len()) {
                        self.send(self.broker_addr, peer, data);
                    }
                } else if to == self.broker_addr {
                    self.broker.handle(self.now, from, &data);
                } else if let Some(i) = self.hosts.iter().position(|h| h.addr == to) {
                    self.received[i].push(from);
                    if crate::endpoint::is_stun(&data) {
                        self.hosts[i].agent.handle(self.now, from, &data);
                    } else {
                        self.payloads[i].push((from, data));
                    }
                }
            } else {
                let now = self.now;
                for h in &mut self.hosts {
                    if h.agent.next_timeout().is_some_and(|t| t <= now) {
                        h.agent.handle_timeout(now);
                    }
                }
                if self.broker.next_timeout().is_some_and(|t| t <= now) {
                    self.broker.sweep(now);
                }
            }
        }
    }

    fn selected(&self, i: usize) -> Selected {
        match self.hosts[i].agent.state() {
            PunchState::Nominated(s) => *s,
            other => panic!("host {i} did not nominate: {other:?}"),
        }
    }

    fn failure(&self, i: usize) -> PunchFailure {
        match self.hosts[i].agent.state() {
            PunchState::Failed(f) => f.clone(),
            other => panic!("host {i} did not fail: {other:?}"),
        }
    }
}

/// The two agents' selected pairs are the two ends of one 5-tuple.
fn assert_same_path(net: &Net, a: usize, b: usize) {
    let (sa_, sb) = (net.selected(a), net.selected(b));
    assert_eq!(sa_.local.addr, sb.remote.addr, "A as B sends to it");
    assert_eq!(sb.local.addr, sa_.remote.addr, "B as A sends to it");
    assert_ne!(
        net.hosts[a].agent.is_controlling(),
        net.hosts[b].agent.is_controlling()
    );
}

#[test]
fn two_endpoint_independent_nats_punch_srflx_to_srflx() {
    let mut net = Net::new(vec![
        Nat::new("198.18.1.1", Mapping::EndpointIndependent),
        Nat::new("198.18.2.1", Mapping::EndpointIndependent),
    ]);
    let a = net.add("192.0.2.10:9000", Some(0), "blue-fox", 1);
    let b = net.add("198.51.100.10:9000", Some(1), "blue-fox", 2);
    net.run(Duration::from_secs(20));
    assert_same_path(&net, a, b);
    let s = net.selected(a);
    assert_eq!(s.remote.kind, CandidateType::ServerReflexive);
    assert_eq!(s.remote.addr, sa("198.18.2.1:9000"));
    assert_eq!(s.local.kind, CandidateType::ServerReflexive);
    assert!(s.rtt.is_some_and(|r| r >= Duration::from_millis(30)));
    assert_eq!(net.broker.counters().introductions, 1);
}

#[test]
fn one_side_without_nat_punches() {
    let mut net = Net::new(vec![Nat::new("198.18.1.1", Mapping::EndpointIndependent)]);
    let a = net.add("192.0.2.10:9000", Some(0), "c", 1);
    let b = net.add("198.18.5.5:7000", None, "c", 2);
    net.run(Duration::from_secs(20));
    assert_same_path(&net, a, b);
    assert_eq!(net.selected(a).remote.kind, CandidateType::Host);
    assert_eq!(net.selected(b).remote.addr, sa("198.18.1.1:9000"));
}

#[test]
fn behind_one_nat_without_hairpin_host_candidates_win() {
    let mut net = Net::new(vec![Nat::new("198.18.1.1", Mapping::EndpointIndependent)]);
    let a = net.add("192.0.2.10:9000", Some(0), "same", 1);
    let b = net.add("192.0.2.11:9000", Some(0), "same", 2);
    net.run(Duration::from_secs(20));
    assert_same_path(&net, a, b);
    assert_eq!(net.selected(a).remote.addr, sa("192.0.2.11:9000"));
    assert_eq!(net.selected(b).remote.addr, sa("192.0.2.10:9000"));
}

#[test]
fn the_best_pair_wins_even_when_a_worse_one_answers_first() {
    // Hairpinning NAT, and a LAN slower than the hairpin: the srflx pair
    // answers first, but host-to-host has the higher priority.
    let mut nat = Nat::new("198.18.1.1", Mapping::EndpointIndependent);
    nat.hairpin = true;
    let mut net = Net::new(vec![nat]);
    net.lan_delay = Duration::from_millis(40);
    net.wan_delay = Duration::from_millis(30);
    let a = net.add("192.0.2.10:9000", Some(0), "hp", 1);
    let b = net.add("192.0.2.11:9000", Some(0), "hp", 2);
    net.hairpin_delay = Duration::from_millis(2);
    net.run(Duration::from_secs(20));
    assert_same_path(&net, a, b);
    for (i, peer) in [(a, "192.0.2.11:9000"), (b, "192.0.2.10:9000")] {
        assert_eq!(net.selected(i).remote.addr, sa(peer), "host {i}");
    }
    // Both pairs worked: the srflx one was checked and succeeded too.
    let controlling = if net.hosts[a].agent.is_controlling() {
        a
    } else {
        b
    };
    let worked = net.hosts[controlling]
        .agent
        .pairs()
        .iter()
        .filter(|p| p.rtt.is_some())
        .count();
    assert_eq!(worked, 2, "host and srflx pairs both answered");
    let first = std::iter::from_fn(|| net.hosts[controlling].agent.poll_event()).find_map(
        |(_, e)| match e {
            PunchEvent::CheckSucceeded { remote, .. } => Some(remote.kind),
            _ => None,
        },
    );
    assert_eq!(
        first,
        Some(CandidateType::ServerReflexive),
        "the worse pair answered first"
    );
}

#[test]
fn symmetric_against_port_restricted_fails_with_a_diagnosis() {
    let mut net = Net::new(vec![
        Nat::new("198.18.1.1", Mapping::EndpointIndependent),
        Nat::new("198.18.2.1", Mapping::PerDestination),
    ]);
    let a = net.add("192.0.2.10:9000", Some(0), "sym", 1);
    let b = net.add("198.51.100.10:9000", Some(1), "sym", 2);
    net.run(Duration::from_secs(30));
    for i in [a, b] {
        let f = net.failure(i);
        assert_eq!(f.reason, FailureReason::NoPairWorked);
        assert!(f.to_string().contains("relay"), "{f}");
    }
}

#[test]
fn symmetric_against_open_filtering_punches_through_peer_reflexive() {
    let mut open = Nat::new("198.18.1.1", Mapping::EndpointIndependent);
    open.open_filter = true;
    let mut net = Net::new(vec![open, Nat::new("198.18.2.1", Mapping::PerDestination)]);
    let a = net.add("192.0.2.10:9000", Some(0), "prflx", 1);
    let b = net.add("198.51.100.10:9000", Some(1), "prflx", 2);
    net.run(Duration::from_secs(20));
    assert_same_path(&net, a, b);
    let s = net.selected(a);
    assert_eq!(s.remote.kind, CandidateType::PeerReflexive);
    assert_ne!(
        Some(s.remote.addr),
        net.hosts[b].agent.nat_observations().local_reflexive
    );
    // B's NAT gave the peer another port than the broker: B can tell.
    assert!(net.hosts[b].agent.nat_observations().local_mapping_varies);
}

#[test]
fn no_peer_means_a_clear_timeout() {
    let mut net = Net::new(vec![]);
    let mut config = PunchConfig::new(
        net.broker_addr,
        "alone",
        vec![sa("198.18.7.7:9000")],
        [1; 16],
        1,
    );
    config.wait_for_peer = Duration::from_secs(5);
    let a = net.add_config(config, None);
    net.run(Duration::from_secs(10));
    assert_eq!(net.failure(a).reason, FailureReason::NoPeer);
}

#[test]
fn registrations_keep_the_mapping_alive_while_waiting() {
    // The agent refreshes well inside 30 s, also after nomination.
    let mut net = Net::new(vec![Nat::new("198.18.1.1", Mapping::EndpointIndependent)]);
    let a = net.add("192.0.2.10:9000", Some(0), "ka", 1);
    let b = net.add("198.18.5.5:7000", None, "ka", 2);
    net.run(Duration::from_secs(20));
    assert_same_path(&net, a, b);
    let before = net.received[b].len();
    // Run on: keep-alives must reach B from A's pair at least every 15 s.
    net.run_for(Duration::from_secs(31));
    let keepalives = net.received[b].len() - before;
    assert!(keepalives >= 2, "only {keepalives} keep-alives in 31 s");
}

/// Sends `data` from host `i` to its selected remote (what the UDT
/// rendezvous and connection do after the punch) and delivers it.
fn send_on_selected(net: &mut Net, i: usize, data: &[u8]) {
    let (from, to) = (net.hosts[i].addr, net.selected(i).remote.addr);
    net.send(from, to, data.to_vec());
    net.run_for(Duration::from_millis(200));
}

#[test]
fn symmetric_nats_on_both_sides_fall_back_to_the_relay() {
    let mut net = Net::with_relay(vec![
        Nat::new("198.18.1.1", Mapping::PerDestination),
        Nat::new("198.18.2.1", Mapping::PerDestination),
    ]);
    let a = net.add("192.0.2.10:9000", Some(0), "relay", 1);
    let b = net.add("198.51.100.10:9000", Some(1), "relay", 2);
    net.run(Duration::from_secs(40));
    for i in [a, b] {
        let s = net.selected(i);
        assert!(s.is_relayed(), "{s}");
        assert_eq!(s.remote.addr, net.broker_addr);
        // The events tell why: the direct attempt's diagnosis first.
        let mut events = std::iter::from_fn(|| net.hosts[i].agent.poll_event()).map(|(_, e)| e);
        let direct = events
            .find_map(|e| match e {
                PunchEvent::RelayRequested(f) => Some(f),
                _ => None,
            })
            .expect("a RelayRequested event");
        assert_eq!(direct.reason, FailureReason::NoPairWorked);
    }
    assert_eq!(net.broker.relayed_pairs(), 1);
    // UDT-like datagrams now cross through the broker, both ways, and
    // arrive from the broker's address (the rendezvous target).
    send_on_selected(&mut net, a, b"from a");
    send_on_selected(&mut net, b, b"from b");
    assert_eq!(net.payloads[b], vec![(net.broker_addr, b"from a".to_vec())]);
    assert_eq!(net.payloads[a], vec![(net.broker_addr, b"from b".to_vec())]);
    let c = net.broker.relay_counters();
    assert_eq!((c.packets, c.bytes), (2, 12));
    // The relay keeps the NAT mappings alive through the registration
    // refreshes: still working after a minute.
    net.run_for(Duration::from_secs(65));
    send_on_selected(&mut net, a, b"later");
    assert_eq!(net.payloads[b].len(), 2, "relay still bound after 65 s");
}

#[test]
fn without_a_relay_the_error_names_the_nat_and_the_missing_relay() {
    let mut net = Net::new(vec![
        Nat::new("198.18.1.1", Mapping::PerDestination),
        Nat::new("198.18.2.1", Mapping::PerDestination),
    ]);
    let a = net.add("192.0.2.10:9000", Some(0), "norelay", 1);
    let b = net.add("198.51.100.10:9000", Some(1), "norelay", 2);
    net.run(Duration::from_secs(30));
    for i in [a, b] {
        let f = net.failure(i);
        assert_eq!(f.relay, RelayStatus::NotOffered);
        let text = f.to_string();
        assert!(text.contains("hole punching failed"), "{text}");
        assert!(text.contains("the broker offers none"), "{text}");
    }
}

#[test]
fn a_side_that_refuses_the_relay_fails_and_so_does_its_peer() {
    let mut net = Net::with_relay(vec![
        Nat::new("198.18.1.1", Mapping::PerDestination),
        Nat::new("198.18.2.1", Mapping::PerDestination),
    ]);
    let mut config = PunchConfig::new(
        net.broker_addr,
        "refuse",
        vec![sa("192.0.2.10:9000")],
        [1; 16],
        1,
    );
    config.allow_relay = false;
    let a = net.add_config(config, Some(0));
    let b = net.add("198.51.100.10:9000", Some(1), "refuse", 2);
    net.run(Duration::from_secs(40));
    assert_eq!(net.failure(a).relay, RelayStatus::Disabled);
    assert!(matches!(net.failure(b).relay, RelayStatus::Failed(_)));
    assert!(net.failure(b).to_string().contains("relaying failed"));
    assert_eq!(net.broker.relayed_pairs(), 0, "one request binds nothing");
}

#[test]
fn relay_only_skips_the_checks_even_where_direct_would_work() {
    let mut net = Net::with_relay(vec![]);
    let mut hosts = Vec::new();
    for (addr, token) in [("198.18.5.5:9000", 1u8), ("198.18.6.6:9000", 2)] {
        let mut config = PunchConfig::new(net.broker_addr, "ro", vec![sa(addr)], [token; 16], 1);
        config.relay_only = true;
        hosts.push(net.add_config(config, None));
    }
    net.run(Duration::from_secs(10));
    for &i in &hosts {
        assert!(net.selected(i).is_relayed());
        assert!(net.hosts[i].agent.pairs().iter().all(|p| p.rtt.is_none()));
    }
    // Not a single datagram went host to host.
    for (i, other) in [(hosts[0], hosts[1]), (hosts[1], hosts[0])] {
        assert!(!net.received[i].contains(&net.hosts[other].addr));
    }
}

#[test]
fn relay_only_on_one_side_brings_the_other_to_the_relay() {
    // Direct would work (no NAT), but one side insists on the relay: it
    // does not answer checks, so the other side's checks fail and it
    // asks for the relay too. Both must end on the same (relayed) path.
    let mut net = Net::with_relay(vec![]);
    let mut config = PunchConfig::new(
        net.broker_addr,
        "one",
        vec![sa("198.18.5.5:9000")],
        [1; 16],
        1,
    );
    config.relay_only = true;
    let a = net.add_config(config, None);
    let b = net.add("198.18.6.6:9000", None, "one", 2);
    net.run(Duration::from_secs(30));
    assert!(net.selected(a).is_relayed());
    assert!(net.selected(b).is_relayed());
    assert!(net.hosts[b].agent.pairs().iter().all(|p| p.rtt.is_none()));
}

/// A lone agent (token 1) introduced to a peer (token 2) at `peer` by a
/// hand-made broker answer; returns it checking.
fn introduced_agent(peer: SocketAddr) -> (PunchAgent, Instant) {
    use super::stun::{attr, method, Class, Message};
    let t0 = epoch();
    let broker = sa(BROKER);
    let mut a = PunchAgent::new(
        PunchConfig::new(broker, "mi", vec![sa("198.18.5.5:9000")], [1; 16], 1),
        t0,
    );
    a.handle_timeout(t0);
    let (_, reg) = a.poll_send().expect("a Register request");
    let reg = Message::decode(&reg).expect("valid");
    let mut resp = Message::new(Class::Success, method::REGISTER, reg.transaction);
    resp.push_xor_address(attr::XOR_MAPPED_ADDRESS, sa("198.18.5.5:9000"));
    resp.push(attr::PEER_TOKEN, vec![2; 16]);
    resp.push(
        attr::CANDIDATE,
        Candidate::new(CandidateType::Host, peer, 65535).encode(),
    );
    resp.push(attr::START_DELAY, 0u32.to_be_bytes().to_vec());
    let mut d = Vec::new();
    resp.encode(true, &mut d);
    a.handle(t0, broker, &d);
    assert_eq!(*a.state(), PunchState::Checking);
    (a, t0)
}

#[test]
fn checks_and_answers_must_carry_a_valid_message_integrity() {
    use super::stun::{attr, method, Class, Message};
    let peer = sa("198.18.6.6:9000");
    let (mut a, t0) = introduced_agent(peer);
    a.handle_timeout(t0);
    // Our check: signed with the peer's token, which is not sent in clear.
    let (to, check) = std::iter::from_fn(|| a.poll_send())
        .find(|(to, _)| *to == peer)
        .expect("a check to the peer");
    assert_eq!(to, peer);
    assert!(integrity::verify(&check, &[2; 16]));
    assert!(!check.windows(16).any(|w| w == [2u8; 16]), "token in clear");
    let check = Message::decode(&check).expect("valid");
    // A forged answer (right transaction and source, wrong key) is ignored.
    let mut answer = Message::new(Class::Success, method::BINDING, check.transaction);
    answer.push_xor_address(attr::XOR_MAPPED_ADDRESS, sa("198.18.5.5:9000"));
    let mut forged = Vec::new();
    answer.encode_signed(Some(&[9; 16]), true, &mut forged);
    a.handle(t0, peer, &forged);
    assert!(
        a.pairs().iter().all(|p| p.rtt.is_none()),
        "forged answer taken"
    );
    let mut good = Vec::new();
    answer.encode_signed(Some(&[2; 16]), true, &mut good);
    a.handle(t0, peer, &good);
    assert!(a
        .pairs()
        .iter()
        .any(|p| p.remote.addr == peer && p.rtt.is_some()));
    // A check from the peer must be signed with our token: the old
    // token-in-clear form and a wrong key get no answer.
    let _ = std::iter::from_fn(|| a.poll_send()).count();
    let mut req = Message::new(Class::Request, method::BINDING, [7; 12]);
    req.push(attr::PEER_TOKEN, vec![1; 16]);
    for key in [None, Some(&[2u8; 16][..])] {
        let mut d = Vec::new();
        req.encode_signed(key, true, &mut d);
        a.handle(t0, peer, &d);
        assert!(
            std::iter::from_fn(|| a.poll_send()).all(|(to, _)| to != peer),
            "answered a check signed with {key:?}"
        );
    }
    let mut d = Vec::new();
    req.encode_signed(Some(&[1; 16]), true, &mut d);
    a.handle(t0, peer, &d);
    let answer = std::iter::from_fn(|| a.poll_send())
        .find(|(to, d)| *to == peer && Message::decode(d).is_ok_and(|m| m.transaction == [7; 12]))
        .expect("an answer to the signed check");
    assert!(
        integrity::verify(&answer.1, &[1; 16]),
        "answer signed with our token"
    );
}

#[test]
fn a_side_without_a_code_is_given_one_and_the_other_side_joins_it() {
    let mut net = Net::new(vec![
        Nat::new("198.18.1.1", Mapping::EndpointIndependent),
        Nat::new("198.18.2.1", Mapping::EndpointIndependent),
    ]);
    let a = net.add("192.0.2.10:9000", Some(0), "", 1);
    // Register A alone first: B can only be told the name once it exists.
    net.run(Duration::from_secs(1));
    let name = net.hosts[a].agent.session().to_string();
    assert!(!name.is_empty(), "the broker named A's session");
    let registered =
        std::iter::from_fn(|| net.hosts[a].agent.poll_event()).find_map(|(_, e)| match e {
            PunchEvent::Registered { session, .. } => Some(session),
            _ => None,
        });
    assert_eq!(registered.as_deref(), Some(name.as_str()));
    let b = net.add("198.51.100.10:9000", Some(1), &name, 2);
    net.run(Duration::from_secs(20));
    assert_same_path(&net, a, b);
    assert_eq!(net.broker.counters().allocations, 1);
    assert_eq!(net.broker.counters().introductions, 1);
}

mod broker {
    use super::*;

    fn register(code: &str, token: u8, host: &str) -> Vec<u8> {
        let mut m = Message::new(Class::Request, stun::method::REGISTER, [token; 12]);
        m.push(stun::attr::SESSION, code.as_bytes().to_vec());
        m.push(stun::attr::TOKEN, vec![token; 16]);
        m.push(
            stun::attr::CANDIDATE,
            Candidate::new(CandidateType::Host, sa(host), 65535).encode(),
        );
        let mut out = Vec::new();
        m.encode(true, &mut out);
        out
    }

    /// A Register request that names no session: asks for one.
    fn register_unnamed(token: u8, tx: u8) -> Vec<u8> {
        let mut m = Message::new(Class::Request, stun::method::REGISTER, [tx; 12]);
        m.push(stun::attr::TOKEN, vec![token; 16]);
        let mut out = Vec::new();
        m.encode(true, &mut out);
        out
    }

    fn named(got: &[(SocketAddr, Message)]) -> String {
        let session = got[0].1.get(stun::attr::SESSION).expect("a session name");
        String::from_utf8(session.to_vec()).expect("utf-8")
    }

    #[test]
    fn a_register_without_a_name_gets_a_free_nameplate_once() {
        let mut b = Broker::new(BrokerConfig {
            seed: 5,
            ..BrokerConfig::default()
        });
        let now = epoch();
        let mut names = HashSet::new();
        // 150 waiting peers: past the 99 short names, every one distinct.
        for i in 0..150u32 {
            let from = SocketAddr::new(IpAddr::from([198, 18, 0, (i % 200) as u8 + 1]), 4000);
            b.handle(now, from, &register_unnamed(i as u8, i as u8));
            let got = answers(&mut b);
            assert_eq!(got[0].1.class, Class::Success, "{got:?}");
            let name = named(&got);
            let n: u64 = name.parse().expect("a nameplate number");
            assert!(
                n >= 1 && (i >= 99 || n <= 99) && n <= 9_999,
                "{n} for peer {i}"
            );
            assert!(names.insert(name), "a name given twice");
        }
        assert_eq!(b.counters().allocations, 150);
        assert_eq!(b.sessions(), 150);
        // A retransmission (its answer lost) gets the same name again.
        let from = sa("198.18.0.1:4000");
        b.handle(now, from, &register_unnamed(0, 0));
        let again = named(&answers(&mut b));
        assert!(names.contains(&again));
        assert_eq!(b.counters().allocations, 150, "no second name");
    }

    #[test]
    fn the_named_peer_joins_an_allocated_session_and_a_third_is_refused() {
        let mut b = Broker::new(BrokerConfig::default());
        let now = epoch();
        let (pa, pb, pc) = (
            sa("198.18.1.1:40000"),
            sa("198.18.2.1:40001"),
            sa("198.18.3.1:40002"),
        );
        b.handle(now, pa, &register_unnamed(1, 1));
        let name = named(&answers(&mut b));
        b.handle(now, pb, &register(&name, 2, "198.51.100.1:9000"));
        let got = answers(&mut b);
        assert_eq!(got.len(), 2, "an answer and the introduction: {got:?}");
        assert!(got
            .iter()
            .all(|(_, m)| m.get(stun::attr::PEER_TOKEN).is_some()));
        // The joiner named the session, so its answer need not repeat it.
        assert!(got
            .iter()
            .any(|(to, m)| *to == pb && !m.has(stun::attr::SESSION)));
        b.handle(now, pc, &register(&name, 3, "203.0.113.1:9000"));
        assert_eq!(answers(&mut b)[0].1.class, Class::Error);
        // The allocating peer refreshes under the name it was given.
        b.handle(now, pa, &register(&name, 1, "192.0.2.1:9000"));
        assert_eq!(answers(&mut b)[0].1.class, Class::Success);
        assert_eq!(b.sessions(), 1);
    }

    #[test]
    fn allocation_respects_the_session_limits() {
        let mut b = Broker::new(BrokerConfig {
            max_sessions_per_ip: 2,
            ..BrokerConfig::default()
        });
        let now = epoch();
        let from = sa("198.18.1.1:40000");
        for tx in 1..=3u8 {
            b.handle(
                now,
                SocketAddr::new(from.ip(), 40000 + u16::from(tx)),
                &register_unnamed(tx, tx),
            );
        }
        let got = answers(&mut b);
        assert_eq!(got[2].1.class, Class::Error, "{got:?}");
        assert_eq!(b.sessions(), 2);
        assert_eq!(b.counters().allocations, 2);
    }

    fn answers(b: &mut Broker) -> Vec<(SocketAddr, Message)> {
        std::iter::from_fn(|| b.poll_send())
            .map(|(to, d)| (to, Message::decode(&d).expect("valid answer")))
            .collect()
    }

    use super::stun::{self, Class, Message};

    fn relay_request(code: &str, token: u8, ticket: &[u8], tx: u8) -> Vec<u8> {
        let mut m = Message::new(Class::Request, stun::method::RELAY, [tx; 12]);
        m.push(stun::attr::SESSION, code.as_bytes().to_vec());
        m.push(stun::attr::TOKEN, vec![token; 16]);
        m.push(stun::attr::RELAY_TICKET, ticket.to_vec());
        let mut out = Vec::new();
        m.encode(true, &mut out);
        out
    }

    /// A relaying broker with session "r" introduced between `pa` (token
    /// 1) and `pb` (token 2); returns the ticket both got.
    fn introduced(b: &mut Broker, now: Instant, pa: SocketAddr, pb: SocketAddr) -> Vec<u8> {
        b.handle(now, pa, &register("r", 1, "192.0.2.1:9000"));
        b.handle(now, pb, &register("r", 2, "198.51.100.1:9000"));
        let got = answers(b);
        let tickets: Vec<&[u8]> = got
            .iter()
            .filter_map(|(_, m)| m.get(stun::attr::RELAY_TICKET))
            .collect();
        assert_eq!(tickets.len(), 2, "both peers get the ticket");
        assert_eq!(tickets[0], tickets[1]);
        tickets[0].to_vec()
    }

    #[test]
    fn relays_only_between_the_two_peers_it_introduced() {
        let mut b = Broker::new(BrokerConfig {
            relay: true,
            seed: 3,
            ..BrokerConfig::default()
        });
        let now = epoch();
        let (pa, pb, x) = (
            sa("198.18.1.1:40000"),
            sa("198.18.2.1:40001"),
            sa("203.0.113.9:5000"),
        );
        let ticket = introduced(&mut b, now, pa, pb);
        // A wrong ticket, or a stranger with the right one, is refused.
        b.handle(now, pa, &relay_request("r", 1, &[0; 16], 1));
        b.handle(now, x, &relay_request("r", 9, &ticket, 2));
        let got = answers(&mut b);
        assert!(
            got.iter().all(|(_, m)| m.error_code() == Some(403)),
            "{got:?}"
        );
        // One peer asking binds nothing and gets no answer yet.
        b.handle(now, pa, &relay_request("r", 1, &ticket, 3));
        assert!(answers(&mut b).is_empty());
        assert_eq!(b.relay(now, pa, 100), None);
        // The second request binds them; both are answered.
        b.handle(now, pb, &relay_request("r", 2, &ticket, 4));
        let got = answers(&mut b);
        assert_eq!(got.len(), 2);
        for (to, m) in &got {
            assert_eq!(m.class, Class::Success);
            let other = if *to == pa { pb } else { pa };
            assert_eq!(m.xor_address(stun::attr::XOR_PEER_ADDRESS), Some(other));
            let expect_tx = if *to == pa { [3; 12] } else { [4; 12] };
            assert_eq!(m.transaction, expect_tx);
        }
        assert_eq!(b.relay(now, pa, 1400), Some(pb));
        assert_eq!(b.relay(now, pb, 1400), Some(pa));
        assert_eq!(b.relay(now, x, 1400), None, "never an open relay");
        let c = b.relay_counters();
        assert_eq!((c.packets, c.unrouted), (2, 2));
    }

    #[test]
    fn without_relay_there_is_no_ticket_and_requests_are_refused() {
        let mut b = Broker::new(BrokerConfig::default());
        let now = epoch();
        let (pa, pb) = (sa("198.18.1.1:40000"), sa("198.18.2.1:40001"));
        b.handle(now, pa, &register("r", 1, "192.0.2.1:9000"));
        b.handle(now, pb, &register("r", 2, "198.51.100.1:9000"));
        assert!(answers(&mut b)
            .iter()
            .all(|(_, m)| !m.has(stun::attr::RELAY_TICKET)));
        b.handle(now, pa, &relay_request("r", 1, &[0; 16], 1));
        assert_eq!(answers(&mut b)[0].1.error_code(), Some(403));
        assert_eq!(b.relay(now, pa, 100), None);
    }

    #[test]
    fn relayed_pairs_are_bounded_and_expire_when_idle() {
        let config = BrokerConfig {
            relay: true,
            max_relays: 1,
            relay_idle: Duration::from_secs(20),
            ..BrokerConfig::default()
        };
        let (ttl, idle) = (config.registration_ttl, config.relay_idle);
        let mut b = Broker::new(config);
        let now = epoch();
        let (pa, pb) = (sa("198.18.1.1:40000"), sa("198.18.2.1:40001"));
        let ticket = introduced(&mut b, now, pa, pb);
        b.handle(now, pa, &relay_request("r", 1, &ticket, 1));
        b.handle(now, pb, &relay_request("r", 2, &ticket, 2));
        let _ = answers(&mut b);
        // A second session cannot get a relay: the table holds one pair.
        let (pc, pd) = (sa("198.18.3.1:1"), sa("198.18.4.1:1"));
        b.handle(now, pc, &register("s", 3, "192.0.2.3:1"));
        b.handle(now, pd, &register("s", 4, "192.0.2.4:1"));
        let t2: Vec<u8> = answers(&mut b)
            .iter()
            .find_map(|(_, m)| m.get(stun::attr::RELAY_TICKET).map(<[u8]>::to_vec))
            .expect("ticket");
        b.handle(now, pc, &relay_request("s", 3, &t2, 5));
        b.handle(now, pd, &relay_request("s", 4, &t2, 6));
        assert_eq!(answers(&mut b)[0].1.error_code(), Some(508));
        assert_eq!(b.relay(now, pc, 1), None);
        // Traffic keeps the first pair past the registration TTL; then it
        // goes idle and is dropped.
        let busy = now + ttl + Duration::from_secs(1);
        assert_eq!(b.relay(busy, pa, 1), Some(pb));
        b.sweep(busy);
        assert_eq!(b.relayed_pairs(), 1);
        b.sweep(busy + idle);
        assert_eq!(b.relayed_pairs(), 0);
        assert_eq!(b.relay(busy + idle, pa, 1), None);
        assert_eq!(b.next_timeout(), None, "nothing left to sweep");
    }

    #[test]
    fn answers_a_plain_binding_request() {
        let mut b = Broker::new(BrokerConfig::default());
        let mut req = Vec::new();
        Message::new(Class::Request, stun::method::BINDING, [3; 12]).encode(false, &mut req);
        let from = sa("203.0.113.9:5555");
        b.handle(epoch(), from, &req);
        let got = answers(&mut b);
        assert_eq!(got.len(), 1);
        let (to, m) = &got[0];
        assert_eq!(*to, from);
        assert_eq!(m.class, Class::Success);
        assert_eq!(m.transaction, [3; 12]);
        assert_eq!(m.xor_address(stun::attr::XOR_MAPPED_ADDRESS), Some(from));
        assert!(m.fingerprint);
    }

    #[test]
    fn unknown_required_attributes_get_420() {
        let mut b = Broker::new(BrokerConfig::default());
        let mut m = Message::new(Class::Request, stun::method::BINDING, [4; 12]);
        m.push(0x0003, vec![0, 0, 0, 0]); // CHANGE-REQUEST (RFC 5780)
        let mut req = Vec::new();
        m.encode(false, &mut req);
        b.handle(epoch(), sa("203.0.113.9:5555"), &req);
        let got = answers(&mut b);
        assert_eq!(got[0].1.error_code(), Some(420));
        assert_eq!(
            got[0].1.get(stun::attr::UNKNOWN_ATTRIBUTES),
            Some(&[0x00, 0x03][..])
        );
    }

    #[test]
    fn introduces_the_second_peer_to_the_first() {
        let mut b = Broker::new(BrokerConfig::default());
        let now = epoch();
        let (pa, pb) = (sa("198.18.1.1:40000"), sa("198.18.2.1:40001"));
        b.handle(now, pa, &register("k", 1, "192.0.2.1:9000"));
        let first = answers(&mut b);
        assert_eq!(first.len(), 1);
        assert!(
            !first[0].1.has(stun::attr::PEER_TOKEN),
            "nobody to meet yet"
        );
        b.handle(now, pb, &register("k", 2, "198.51.100.1:9000"));
        let got = answers(&mut b);
        assert_eq!(got.len(), 2, "an introduction and a response");
        let intro = got.iter().find(|(to, _)| *to == pa).expect("to A");
        assert_eq!(intro.1.class, Class::Indication);
        assert_eq!(intro.1.get(stun::attr::PEER_TOKEN), Some(&[2u8; 16][..]));
        let cands: Vec<Candidate> = intro
            .1
            .all(stun::attr::CANDIDATE)
            .filter_map(Candidate::decode)
            .collect();
        assert!(cands
            .iter()
            .any(|c| c.kind == CandidateType::ServerReflexive && c.addr == pb));
        assert!(cands.iter().any(|c| c.kind == CandidateType::Host));
        let resp = got.iter().find(|(to, _)| *to == pb).expect("to B");
        assert_eq!(resp.1.get(stun::attr::PEER_TOKEN), Some(&[1u8; 16][..]));
        // A third party cannot join the session.
        b.handle(now, sa("198.18.3.1:1"), &register("k", 3, "192.0.2.3:1"));
        assert_eq!(answers(&mut b)[0].1.error_code(), Some(508));
    }

    #[test]
    fn a_flood_from_one_address_is_capped_and_others_are_served() {
        let config = BrokerConfig {
            max_sessions: 64,
            ..BrokerConfig::default()
        };
        let per_ip = config.max_sessions_per_ip;
        let mut b = Broker::new(config);
        let now = epoch();
        for i in 0..10_000u32 {
            let from = SocketAddr::new(
                "203.0.113.66".parse().expect("ip"),
                1024 + (i % 60000) as u16,
            );
            b.handle(now, from, &register(&format!("flood{i}"), 9, "192.0.2.9:1"));
            let _ = answers(&mut b);
        }
        assert_eq!(b.sessions(), per_ip);
        assert_eq!(b.counters().refused, 10_000 - per_ip as u64);
        b.handle(
            now,
            sa("198.18.1.1:1"),
            &register("legit", 1, "192.0.2.1:1"),
        );
        b.handle(
            now,
            sa("198.18.2.1:1"),
            &register("legit", 2, "192.0.2.2:1"),
        );
        let got = answers(&mut b);
        assert!(got.iter().all(|(_, m)| m.class != Class::Error));
        assert_eq!(b.counters().introductions, 1);
    }

    #[test]
    fn the_table_is_bounded_and_registrations_expire() {
        let config = BrokerConfig {
            max_sessions: 8,
            max_sessions_per_ip: 1,
            ..BrokerConfig::default()
        };
        let ttl = config.registration_ttl;
        let mut b = Broker::new(config);
        let now = epoch();
        for i in 0..20u8 {
            let from = SocketAddr::new(IpAddr::from([198, 18, 9, i]), 1000);
            b.handle(now, from, &register(&format!("s{i}"), i, "192.0.2.1:1"));
        }
        assert_eq!(b.sessions(), 8);
        let refused = answers(&mut b)
            .iter()
            .filter(|(_, m)| m.error_code() == Some(508))
            .count();
        assert_eq!(refused, 12);
        b.sweep(now + ttl / 2);
        assert_eq!(b.sessions(), 8, "still fresh");
        b.sweep(now + ttl);
        assert_eq!(b.sessions(), 0);
        assert_eq!(b.counters().expired, 8);
        assert_eq!(b.next_timeout(), None, "nothing left to sweep");
    }
}
