//! Connection set-up through the simulator: caller/listener with cookie
//! under loss, rendezvous (simultaneous and late), rejection, timeouts.

mod common;

use std::time::Duration;

use common::{init_logs, link, stream_transfer, Pair};
use udt_core::handshake::ConnectError;
use udt_core::sim::{LinkConfig, Loss};
use udt_core::{Config, SocketType};

#[test]
fn caller_and_listener_connect_and_carry_data() {
    init_logs();
    let l = link(100, Duration::from_millis(20), Loss::None);
    let mut p = Pair::new(31, l.clone(), l, Config::default());
    let (a, b) = p.connect();
    let ca = p.sim.node(p.a).connection(a).unwrap();
    let cb = p.sim.node(p.b).connection(b).unwrap();
    assert_eq!(ca.peer_socket_id(), b);
    assert_eq!(cb.peer_socket_id(), a);
    assert_eq!(ca.peer_addr(), p.b_addr);
    assert_eq!(cb.peer_addr(), p.a_addr);
    // The listener reported the caller's reflexive address.
    assert_eq!(ca.reflexive_ip(), Some(p.a_addr.ip()));
    stream_transfer(
        &mut p.sim,
        (p.a, a),
        (p.b, b),
        1 << 20,
        Duration::from_secs(60),
    );
}

#[test]
fn handshake_survives_heavy_loss_by_retrying() {
    init_logs();
    let l = link(100, Duration::from_millis(20), Loss::Bernoulli(0.4));
    let mut p = Pair::new(32, l.clone(), l, Config::default());
    let (a, b) = p.connect();
    stream_transfer(
        &mut p.sim,
        (p.a, a),
        (p.b, b),
        256 << 10,
        Duration::from_secs(600),
    );
}

#[test]
fn connect_to_nobody_times_out_after_the_connect_timeout() {
    init_logs();
    let l = link(100, Duration::from_millis(5), Loss::None);
    let mut p = Pair::new(33, l.clone(), l, Config::default());
    let start = p.sim.now();
    let id = p.sim.node_mut(p.a).connect(start, p.b_addr);
    p.sim.poke(p.a);
    let a = p.a;
    p.sim
        .run_until(
            |sim| sim.node(a).connect_error(id).is_some(),
            Duration::from_secs(10),
        )
        .unwrap();
    assert!(matches!(
        p.sim.node(a).connect_error(id),
        Some(ConnectError::TimedOut)
    ));
    let took = p.sim.now() - start;
    assert!(
        took >= Duration::from_secs(3) && took < Duration::from_millis(3300),
        "timed out after {took:?}"
    );
}

#[test]
fn socket_type_mismatch_is_rejected() {
    init_logs();
    let l = link(100, Duration::from_millis(5), Loss::None);
    let msg = Config::default().with_socket_type(SocketType::Message);
    let mut p = Pair::with_configs(34, l.clone(), l, Config::default(), msg);
    let now = p.sim.now();
    p.sim.node_mut(p.b).listen(now);
    let id = p.sim.node_mut(p.a).connect(now, p.b_addr);
    p.sim.poke(p.a);
    let a = p.a;
    p.sim
        .run_until(
            |sim| sim.node(a).connect_error(id).is_some(),
            Duration::from_secs(10),
        )
        .unwrap();
    assert!(matches!(
        p.sim.node(a).connect_error(id),
        Some(ConnectError::Rejected)
    ));
    assert!(
        p.sim.now() - now < Duration::from_secs(1),
        "rejection is immediate"
    );
}

fn rendezvous(seed: u64, late: Duration, l: LinkConfig) {
    init_logs();
    let mut p = Pair::new(seed, l.clone(), l, Config::default());
    let now = p.sim.now();
    let (a_addr, b_addr) = (p.a_addr, p.b_addr);
    let ida = p.sim.node_mut(p.a).rendezvous(now, b_addr);
    p.sim.poke(p.a);
    p.sim.run_for(late);
    let now = p.sim.now();
    let idb = p.sim.node_mut(p.b).rendezvous(now, a_addr);
    p.sim.poke(p.b);
    let (a, b) = (p.a, p.b);
    p.sim
        .run_until(
            |sim| sim.node(a).is_connected(ida) && sim.node(b).is_connected(idb),
            Duration::from_secs(60),
        )
        .unwrap_or_else(|e| panic!("seed={seed}: rendezvous did not complete: {e}"));
    assert!(p.sim.node(a).connection(ida).unwrap().is_rendezvous());
    stream_transfer(
        &mut p.sim,
        (a, ida),
        (b, idb),
        1 << 20,
        Duration::from_secs(120),
    );
}

#[test]
fn rendezvous_simultaneous() {
    rendezvous(
        35,
        Duration::ZERO,
        link(100, Duration::from_millis(20), Loss::None),
    );
}

#[test]
fn rendezvous_one_side_five_seconds_late() {
    rendezvous(
        36,
        Duration::from_secs(5),
        link(100, Duration::from_millis(20), Loss::None),
    );
}

#[test]
fn rendezvous_under_loss() {
    rendezvous(
        37,
        Duration::from_millis(700),
        link(100, Duration::from_millis(30), Loss::Bernoulli(0.3)),
    );
}

/// A rendezvous side may complete on the peer's first data packet (the
/// peer already counts as connected, udt4-protocol.md §4.2 step 4). That
/// packet is the first of the stream: the endpoint hands it to the new
/// connection, so it is readable the instant the handshake completes.
/// (The simulator's former router of its own dropped it; the data then
/// arrived only with a retransmission.)
#[test]
fn the_data_packet_that_completes_a_rendezvous_is_delivered() {
    init_logs();
    let l = link(100, Duration::from_millis(20), Loss::None);
    let mut p = Pair::new(38, l.clone(), l, Config::default());
    let now = p.sim.now();
    let (a_addr, b_addr) = (p.a_addr, p.b_addr);
    let ida = p.sim.node_mut(p.a).rendezvous(now, b_addr);
    p.sim.poke(p.a);
    // B starts late: A answers B's first request at once and completes
    // first, while B waits for a sign that A is connected.
    p.sim.run_for(Duration::from_millis(100));
    let now = p.sim.now();
    let idb = p.sim.node_mut(p.b).rendezvous(now, a_addr);
    p.sim.poke(p.b);
    let (a, b) = (p.a, p.b);
    p.sim
        .run_until(
            |sim| sim.node(a).is_connected(ida) || sim.node(b).is_connected(idb),
            Duration::from_secs(10),
        )
        .expect("one side connects");
    let ((first, first_id), (second, second_id)) = if p.sim.node(a).is_connected(ida) {
        ((a, ida), (b, idb))
    } else {
        ((b, idb), (a, ida))
    };
    assert!(
        !p.sim.node(second).is_connected(second_id),
        "both completed on handshakes: the scenario did not happen"
    );
    let written = p
        .sim
        .node_mut(first)
        .with_connection(first_id, |c| c.write(b"first words"))
        .expect("connected")
        .expect("write");
    assert_eq!(written, 11);
    p.sim.poke(first);
    p.sim
        .run_until(
            |sim| sim.node(second).is_connected(second_id),
            Duration::from_secs(10),
        )
        .expect("the data packet completes the rendezvous");
    let mut buf = [0u8; 64];
    let n = p
        .sim
        .node_mut(second)
        .with_connection(second_id, |c| c.read(&mut buf))
        .expect("connected")
        .expect("the completing data packet is readable at once");
    assert_eq!(&buf[..n], b"first words");
}
