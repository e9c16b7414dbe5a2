//! Timers at their edges: the peer-idle timeout fires exactly when
//! configured and not before; an outage shorter than it is survived.

mod common;

use std::time::Duration;

use common::{init_logs, link, stream_transfer, Pair};
use udt_core::sim::Loss;
use udt_core::{Config, ConnectionError, State};

fn idle_config(timeout: Duration) -> Config {
    let mut config = Config::default();
    config.peer_idle_timeout = timeout;
    config
}

fn blackhole(p: &mut Pair, on: bool) {
    let (a, b) = (p.a, p.b);
    p.sim.link_config_mut(a, b).unwrap().blackhole = on;
    p.sim.link_config_mut(b, a).unwrap().blackhole = on;
}

#[test]
fn dead_peer_declared_exactly_at_the_idle_timeout() {
    init_logs();
    let timeout = Duration::from_secs(10);
    let l = link(100, Duration::from_millis(10), Loss::None);
    let mut p = Pair::new(41, l.clone(), l, idle_config(timeout));
    let (a, _b) = p.connect();
    p.sim.run_for(Duration::from_secs(2));
    blackhole(&mut p, true);
    let cut = p.sim.now();
    let node = p.a;
    let mut last_alive = cut;
    p.sim
        .run_until(
            |sim| {
                let c = sim.node(node).connection(a).unwrap();
                if c.is_closed() {
                    return true;
                }
                last_alive = sim.now();
                false
            },
            Duration::from_secs(60),
        )
        .unwrap();
    let c = p.sim.node(node).connection(a).unwrap();
    assert_eq!(c.state(), State::Closed(ConnectionError::TimedOut));
    let heard = c.last_heard();
    assert!(heard <= cut, "nothing arrives through the blackhole");
    assert!(
        cut - heard < Duration::from_millis(1100),
        "keep-alives flowed before the cut"
    );
    let closed_at = p.sim.now();
    assert_eq!(
        closed_at,
        heard + timeout,
        "declared dead exactly at the timeout"
    );
    assert!(
        last_alive < closed_at,
        "still alive one event before the deadline"
    );
}

#[test]
fn outage_shorter_than_the_idle_timeout_is_survived_mid_transfer() {
    init_logs();
    let l = link(100, Duration::from_millis(10), Loss::None);
    let mut p = Pair::new(42, l.clone(), l, idle_config(Duration::from_secs(10)));
    let (a, b) = p.connect();
    // Start a transfer, cut the link for 6 s in the middle of it.
    let (na, nb) = (p.a, p.b);
    p.sim.node_mut(na).with_connection(a, |c| {
        let data = vec![7u8; 4 << 20];
        let mut off = 0;
        while off < data.len() {
            match c.write(&data[off..]) {
                Ok(n) => off += n,
                Err(_) => break,
            }
        }
    });
    p.sim.poke(na);
    p.sim.run_for(Duration::from_millis(100));
    blackhole(&mut p, true);
    p.sim.run_for(Duration::from_secs(6));
    assert!(!p.sim.node(na).connection(a).unwrap().is_closed());
    blackhole(&mut p, false);
    // Drain what was queued, then a fresh byte-exact transfer.
    let mut buf = vec![0u8; 1 << 16];
    p.sim
        .run_until(
            |sim| {
                while let Some(Ok(n)) = sim.node_mut(nb).with_connection(b, |c| c.read(&mut buf)) {
                    if n == 0 {
                        break;
                    }
                }
                sim.poke(nb);
                sim.node(na).connection(a).unwrap().is_send_buffer_empty()
            },
            Duration::from_secs(60),
        )
        .unwrap();
    assert!(!p.sim.node(na).connection(a).unwrap().is_closed());
    assert!(!p.sim.node(nb).connection(b).unwrap().is_closed());
    stream_transfer(
        &mut p.sim,
        (na, a),
        (nb, b),
        1 << 20,
        Duration::from_secs(60),
    );
}

#[test]
fn outage_longer_than_the_idle_timeout_kills_the_connection() {
    init_logs();
    let l = link(100, Duration::from_millis(10), Loss::None);
    let mut p = Pair::new(43, l.clone(), l, idle_config(Duration::from_secs(4)));
    let (a, b) = p.connect();
    blackhole(&mut p, true);
    p.sim.run_for(Duration::from_secs(5));
    let ca = p.sim.node(p.a).connection(a).unwrap();
    let cb = p.sim.node(p.b).connection(b).unwrap();
    assert_eq!(ca.state(), State::Closed(ConnectionError::TimedOut));
    assert_eq!(cb.state(), State::Closed(ConnectionError::TimedOut));
}

#[test]
fn close_delivers_everything_then_peer_sees_eof() {
    init_logs();
    let l = link(100, Duration::from_millis(25), Loss::Bernoulli(0.02));
    let mut p = Pair::new(44, l.clone(), l, Config::default());
    let (a, b) = p.connect();
    // stream_transfer closes the sender after the last write and requires
    // Ok(0) (EOF) after every byte on the receiver.
    let r = stream_transfer(
        &mut p.sim,
        (p.a, a),
        (p.b, b),
        8 << 20,
        Duration::from_secs(120),
    );
    assert_eq!(r.bytes, 8 << 20);
    let na = p.a;
    p.sim
        .run_until(
            |sim| sim.node(na).connection(a).unwrap().is_closed(),
            Duration::from_secs(30),
        )
        .unwrap();
    assert_eq!(
        p.sim.node(na).connection(a).unwrap().state(),
        State::Closed(ConnectionError::LocallyClosed)
    );
}
