//! Message mode through the simulator: whole messages, the in-order flag,
//! and TTL expiry that drops messages on both sides without ever
//! delivering part of one.

mod common;

use std::collections::BTreeSet;
use std::time::Duration;

use common::{init_logs, link, pattern_byte, Pair};
use udt_core::sim::{Loss, NodeId, Sim, UdtNode};
use udt_core::{Config, ReadError, SocketId, SocketType, WriteError};

fn message_config() -> Config {
    Config::default().with_socket_type(SocketType::Message)
}

/// Message `index` of length `len`: an 12-byte header (index, length) and
/// pattern bytes, so the receiver can check each message on its own.
fn make_message(index: u64, len: usize, out: &mut Vec<u8>) {
    out.clear();
    out.extend_from_slice(&index.to_le_bytes());
    out.extend_from_slice(&(len as u32).to_le_bytes());
    for k in 12..len {
        out.push(pattern_byte(index, k as u64));
    }
}

/// Checks one received message; returns its index.
fn check_message(msg: &[u8]) -> u64 {
    assert!(
        msg.len() >= 12,
        "message of {} bytes is too short",
        msg.len()
    );
    let index = u64::from_le_bytes(msg[..8].try_into().unwrap());
    let len = u32::from_le_bytes(msg[8..12].try_into().unwrap()) as usize;
    assert_eq!(
        msg.len(),
        len,
        "message {index} delivered with the wrong length"
    );
    for (k, &b) in msg.iter().enumerate().skip(12) {
        assert_eq!(
            b,
            pattern_byte(index, k as u64),
            "message {index} byte {k} differs"
        );
    }
    index
}

fn length_of(index: u64) -> usize {
    // 12 bytes .. ~20 KB, several packets for many of them.
    12 + ((index * 7919) % 20_000) as usize
}

struct Outcome {
    received: Vec<u64>,
    sent: u64,
}

/// Sends `count` messages from A to B and collects what B delivers until
/// `done` says so or the limit passes.
fn exchange(
    sim: &mut Sim<UdtNode>,
    (from, from_id): (NodeId, SocketId),
    (to, to_id): (NodeId, SocketId),
    count: u64,
    ttl: Option<Duration>,
    in_order: bool,
    settle: Duration,
) -> Outcome {
    let seed = sim.seed();
    let mut sent = 0u64;
    let mut received = Vec::new();
    let mut msg = Vec::new();
    let mut rbuf = Vec::new();
    let mut finished_at = None;
    let res = sim.run_until(
        |sim| {
            let now = sim.now();
            while sent < count {
                make_message(sent, length_of(sent), &mut msg);
                let r = sim
                    .node_mut(from)
                    .with_connection(from_id, |c| c.send_msg(now, &msg, ttl, in_order))
                    .unwrap();
                match r {
                    Ok(()) => sent += 1,
                    Err(WriteError::WouldBlock) => break,
                    Err(e) => panic!("seed={seed}: send_msg failed: {e}"),
                }
            }
            sim.poke(from);
            loop {
                let r = sim
                    .node_mut(to)
                    .with_connection(to_id, |c| c.recv_msg_into(&mut rbuf))
                    .unwrap();
                match r {
                    Ok(_) => received.push(check_message(&rbuf)),
                    Err(ReadError::WouldBlock) => break,
                    Err(e) => panic!("seed={seed}: recv_msg failed: {e}"),
                }
            }
            sim.poke(to);
            if sent == count && finished_at.is_none() {
                let idle = sim
                    .node(from)
                    .connection(from_id)
                    .is_some_and(|c| c.is_send_buffer_empty());
                if idle {
                    finished_at = Some(now);
                }
            }
            received.len() as u64 == count || finished_at.is_some_and(|t| now >= t + settle)
        },
        Duration::from_secs(1200),
    );
    res.unwrap_or_else(|e| panic!("seed={seed}: message exchange stalled: {e}"));
    Outcome { received, sent }
}

#[test]
fn in_order_messages_arrive_whole_and_in_order_over_loss() {
    init_logs();
    let l = link(100, Duration::from_millis(10), Loss::Bernoulli(0.05));
    let mut p = Pair::new(21, l.clone(), l, message_config());
    let (a, b) = p.connect();
    let out = exchange(
        &mut p.sim,
        (p.a, a),
        (p.b, b),
        2000,
        None,
        true,
        Duration::ZERO,
    );
    let expected: Vec<u64> = (0..2000).collect();
    assert_eq!(
        out.received, expected,
        "every message, in order, exactly once"
    );
}

#[test]
fn out_of_order_messages_may_overtake_but_all_arrive_whole() {
    init_logs();
    let l = link(100, Duration::from_millis(10), Loss::Bernoulli(0.05));
    let mut p = Pair::new(22, l.clone(), l, message_config());
    let (a, b) = p.connect();
    let out = exchange(
        &mut p.sim,
        (p.a, a),
        (p.b, b),
        2000,
        None,
        false,
        Duration::ZERO,
    );
    let set: BTreeSet<u64> = out.received.iter().copied().collect();
    assert_eq!(set.len(), out.received.len(), "no message delivered twice");
    assert_eq!(set, (0..2000).collect::<BTreeSet<u64>>());
    let overtaken = out.received.windows(2).filter(|w| w[1] < w[0]).count();
    assert!(
        overtaken > 0,
        "with 5% loss some complete messages overtake lost ones"
    );
}

#[test]
fn expired_messages_are_dropped_on_both_sides_never_partially_delivered() {
    init_logs();
    // 200 ms RTT, 10 % loss, TTL 100 ms: a lost packet cannot be repaired
    // in time, so its message must be dropped.
    let l = link(50, Duration::from_millis(100), Loss::Bernoulli(0.10));
    let mut p = Pair::new(23, l.clone(), l, message_config());
    let (a, b) = p.connect();
    let out = exchange(
        &mut p.sim,
        (p.a, a),
        (p.b, b),
        1500,
        Some(Duration::from_millis(100)),
        true,
        Duration::from_secs(5),
    );
    assert_eq!(out.sent, 1500);
    // check_message already proved each delivered message whole; in-order
    // delivery means strictly increasing indices with gaps for drops.
    assert!(
        out.received.windows(2).all(|w| w[0] < w[1]),
        "in order, no repeats"
    );
    assert!(!out.received.is_empty());
    assert!(
        (out.received.len() as u64) < out.sent,
        "some messages must have expired"
    );
    let sender = p.sim.node(p.a).connection(a).unwrap().stats();
    let receiver = p.sim.node(p.b).connection(b).unwrap().stats();
    assert!(sender.messages_dropped_sent > 0, "{sender:?}");
    assert!(receiver.messages_dropped_received > 0, "{receiver:?}");
}

#[test]
fn stream_calls_on_a_message_connection_are_refused() {
    init_logs();
    let l = link(100, Duration::from_millis(1), Loss::None);
    let mut p = Pair::new(24, l.clone(), l, message_config());
    let (a, _) = p.connect();
    let r = p
        .sim
        .node_mut(p.a)
        .with_connection(a, |c| c.write(b"abc"))
        .unwrap();
    assert_eq!(r, Err(WriteError::WrongMode));
    let mut buf = [0u8; 8];
    let r = p
        .sim
        .node_mut(p.a)
        .with_connection(a, |c| c.read(&mut buf))
        .unwrap();
    assert_eq!(r, Err(ReadError::WrongMode));
}
