//! The punch engine on the multiplexed port, in the simulator: a broker
//! node and two peers, each an ordinary [`UdtNode`] whose endpoint hands
//! STUN to the registered handler. After nomination both peers run the UDT
//! rendezvous on exactly the nominated pair, on the same port, and data
//! flows. (NAT behaviour is covered by udt-core's punch tests and by the
//! namespace lab in udt-cli/tests/nat_lab.rs.)

mod common;

use std::net::SocketAddr;
use std::time::Duration;

use common::{init_logs, link, stream_transfer};
use udt_core::punch::{
    Broker, BrokerConfig, CandidateType, PunchAgent, PunchConfig, PunchState, SharedPunch,
};
use udt_core::sim::{Loss, NodeId, Sim, UdtNode};
use udt_core::Config;

fn sa(s: &str) -> SocketAddr {
    s.parse().expect("socket address")
}

struct Lab {
    sim: Sim<UdtNode>,
    a: NodeId,
    b: NodeId,
    pa: SharedPunch,
    pb: SharedPunch,
}

/// Broker and two peers; `a_hosts` are A's announced host candidates
/// (some may be unreachable), `direct` says whether A and B can reach each
/// other at all.
fn lab(seed: u64, a_hosts: &[&str], direct: bool, loss: Loss) -> Lab {
    lab_with(seed, a_hosts, direct, loss, false)
}

/// [`lab`] with the broker's relay on or off.
fn lab_with(seed: u64, a_hosts: &[&str], direct: bool, loss: Loss, relay: bool) -> Lab {
    let mut sim = Sim::new(seed);
    let now = sim.now();
    let broker_addr = sa("198.18.0.1:3478");
    let (a_addr, b_addr) = (sa("198.18.0.10:9000"), sa("198.18.0.20:9000"));
    let mut broker = UdtNode::new(broker_addr, Config::default(), seed);
    broker
        .endpoint()
        .set_datagram_handler(Some(Box::new(Broker::new(BrokerConfig {
            relay,
            seed,
            ..BrokerConfig::default()
        }))));
    let agent = |hosts: Vec<SocketAddr>, token: u8| {
        SharedPunch::new(PunchAgent::new(
            PunchConfig::new(
                broker_addr,
                "sim-session",
                hosts,
                [token; 16],
                seed ^ u64::from(token),
            ),
            now,
        ))
    };
    let pa = agent(a_hosts.iter().map(|s| sa(s)).collect(), 0xA0);
    let pb = agent(vec![b_addr], 0xB0);
    let mut na = UdtNode::new(a_addr, Config::default(), seed + 1);
    na.endpoint().set_datagram_handler(Some(pa.handler()));
    let mut nb = UdtNode::new(b_addr, Config::default(), seed + 2);
    nb.endpoint().set_datagram_handler(Some(pb.handler()));
    let k = sim.add_node(broker_addr, broker);
    let a = sim.add_node(a_addr, na);
    let b = sim.add_node(b_addr, nb);
    let slow = link(100, Duration::from_millis(30), Loss::None);
    sim.link(a, k, slow.clone(), slow.clone());
    sim.link(b, k, slow.clone(), slow);
    if direct {
        let l = link(100, Duration::from_millis(10), loss);
        sim.link(a, b, l.clone(), l);
    }
    Lab { sim, a, b, pa, pb }
}

fn settled(p: &SharedPunch) -> bool {
    matches!(
        p.lock().state(),
        PunchState::Nominated(_) | PunchState::Failed(_)
    )
}

#[test]
fn punch_then_rendezvous_on_the_nominated_pair_carries_data() {
    init_logs();
    // A's first host candidate is a LAN address nobody can reach: it has
    // the highest priority, fails, and the working pair is nominated.
    let mut l = lab(
        71,
        &["192.0.2.10:9000", "198.18.0.10:9000"],
        true,
        Loss::None,
    );
    let (pa, pb) = (l.pa.clone(), l.pb.clone());
    l.sim
        .run_until(|_| settled(&pa) && settled(&pb), Duration::from_secs(30))
        .expect("both sides settle");
    let sa_ = l.pa.lock().selected().expect("A nominated");
    let sb = l.pb.lock().selected().expect("B nominated");
    assert_eq!(sa_.remote.addr, sa("198.18.0.20:9000"));
    assert_eq!(sb.remote.addr, sa("198.18.0.10:9000"));
    assert_eq!(sb.remote.kind, CandidateType::Host);
    // The unreachable LAN candidate was checked (by B) and failed.
    let failed_lan =
        l.pb.lock()
            .pairs()
            .iter()
            .any(|p| p.remote.addr == sa("192.0.2.10:9000") && p.rtt.is_none());
    assert!(failed_lan);
    // The UDT rendezvous on exactly that pair, on the same ports.
    let now = l.sim.now();
    let ida = l.sim.node_mut(l.a).rendezvous(now, sa_.remote.addr);
    let idb = l.sim.node_mut(l.b).rendezvous(now, sb.remote.addr);
    l.sim.poke(l.a);
    l.sim.poke(l.b);
    let (a, b) = (l.a, l.b);
    l.sim
        .run_until(
            |s| s.node(a).is_connected(ida) && s.node(b).is_connected(idb),
            Duration::from_secs(10),
        )
        .expect("rendezvous completes");
    stream_transfer(
        &mut l.sim,
        (a, ida),
        (b, idb),
        4 << 20,
        Duration::from_secs(60),
    );
    // The agents answered the peer's late checks and sent keep-alives
    // through the same endpoint without disturbing UDT.
    assert!(l.sim.node_mut(a).endpoint().counters().foreign > 0);
}

#[test]
fn punch_survives_loss_on_the_direct_path() {
    init_logs();
    let mut l = lab(72, &["198.18.0.10:9000"], true, Loss::Bernoulli(0.3));
    let (pa, pb) = (l.pa.clone(), l.pb.clone());
    l.sim
        .run_until(|_| settled(&pa) && settled(&pb), Duration::from_secs(30))
        .expect("both sides settle");
    assert!(l.pa.lock().selected().is_some());
    assert!(l.pb.lock().selected().is_some());
}

#[test]
fn no_direct_path_fails_with_a_relay_hint() {
    init_logs();
    let mut l = lab(73, &["198.18.0.10:9000"], false, Loss::None);
    let (pa, pb) = (l.pa.clone(), l.pb.clone());
    l.sim
        .run_until(|_| settled(&pa) && settled(&pb), Duration::from_secs(30))
        .expect("both sides settle");
    for p in [&l.pa, &l.pb] {
        let g = p.lock();
        let PunchState::Failed(f) = g.state() else {
            panic!("expected failure, got {:?}", g.state());
        };
        assert!(f.to_string().contains("relay is needed"), "{f}");
    }
}

#[test]
fn no_direct_path_relays_through_the_broker_and_carries_data() {
    init_logs();
    // The broker runs on a UDT endpoint's port here: with the relay on,
    // its handler takes every datagram and forwards the UDT ones.
    let mut l = lab_with(74, &["198.18.0.10:9000"], false, Loss::None, true);
    let (pa, pb) = (l.pa.clone(), l.pb.clone());
    l.sim
        .run_until(|_| settled(&pa) && settled(&pb), Duration::from_secs(40))
        .expect("both sides settle");
    let broker = sa("198.18.0.1:3478");
    let sa_ = l.pa.lock().selected().expect("A relayed");
    let sb = l.pb.lock().selected().expect("B relayed");
    for s in [sa_, sb] {
        assert!(s.is_relayed(), "{s}");
        assert_eq!(s.remote.kind, CandidateType::Relayed);
        assert_eq!(s.remote.addr, broker);
    }
    let now = l.sim.now();
    let ida = l.sim.node_mut(l.a).rendezvous(now, broker);
    let idb = l.sim.node_mut(l.b).rendezvous(now, broker);
    l.sim.poke(l.a);
    l.sim.poke(l.b);
    let (a, b) = (l.a, l.b);
    l.sim
        .run_until(
            |s| s.node(a).is_connected(ida) && s.node(b).is_connected(idb),
            Duration::from_secs(10),
        )
        .expect("rendezvous through the relay completes");
    stream_transfer(
        &mut l.sim,
        (a, ida),
        (b, idb),
        4 << 20,
        Duration::from_secs(60),
    );
}
