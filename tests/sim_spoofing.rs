//! Forged packets from the peer's own address (issue 10): a third party
//! that knows a connection's socket IDs and spoofs the peer's address must
//! not turn a truncated stream into a clean end of file, hold a dead
//! connection open with keep-alives, wedge the sender with a forged ACK,
//! or take over a rendezvous.

mod common;

use std::time::Duration;

use common::{init_logs, link, Pair};
use udt_core::packet::{self, Control, ControlPacket, DataHeader, Packet, PacketPosition};
use udt_core::sim::Loss;
use udt_core::{Config, ConnectionError, MsgNumber, ReadError, SeqNumber, SocketId};

const ISN: u32 = 5000;

fn control(dest: SocketId, control: Control<'_>) -> Vec<u8> {
    let mut buf = Vec::new();
    Packet::Control(ControlPacket {
        timestamp: 0,
        dest,
        control,
    })
    .encode(&mut buf);
    buf
}

fn data(dest: SocketId, seq: SeqNumber, payload: &[u8]) -> Vec<u8> {
    let mut buf = Vec::new();
    packet::encode_data(
        &DataHeader {
            seq,
            position: PacketPosition::Only,
            in_order: false,
            msg: MsgNumber::new(1),
            timestamp: 0,
            dest,
        },
        payload,
        &mut buf,
    );
    buf
}

/// A connected pair whose real A is then cut off: from here on the test
/// speaks for A (the attacker spoofing A's address, or A's last packets).
fn cut_off_pair(seed: u64, config: Config) -> (Pair, SocketId, SocketId) {
    init_logs();
    let l = link(100, Duration::from_millis(5), Loss::None);
    let mut p = Pair::new(seed, l.clone(), l, config);
    let (a, b) = p.connect_with_isn(SeqNumber::new(ISN));
    for (from, to) in [(p.a, p.b), (p.b, p.a)] {
        p.sim.link_config_mut(from, to).expect("linked").blackhole = true;
    }
    (p, a, b)
}

/// Feeds `datagrams` to B's connection as if from A's address.
fn feed_b(p: &mut Pair, b: SocketId, datagrams: &[Vec<u8>]) {
    let now = p.sim.now();
    let from = p.a_addr;
    p.sim.node_mut(p.b).with_connection(b, |c| {
        for d in datagrams {
            c.handle_datagram(now, from, d);
        }
    });
    p.sim.poke(p.b);
}

/// Reads B until it stops returning data: (bytes read, the final result).
fn drain_b(p: &mut Pair, b: SocketId) -> (usize, Result<usize, ReadError>) {
    let mut total = 0;
    let mut buf = vec![0u8; 64 * 1024];
    loop {
        let r = p
            .sim
            .node_mut(p.b)
            .with_connection(b, |c| c.read(&mut buf))
            .expect("B's connection");
        match r {
            Ok(n) if n > 0 => total += n,
            other => return (total, other),
        }
    }
}

fn seq(off: u32) -> SeqNumber {
    SeqNumber::new(ISN).add(off)
}

#[test]
fn a_spoofed_shutdown_over_a_gap_is_an_error_not_eof() {
    let (mut p, _a, b) = cut_off_pair(61, Config::default());
    let payload = [7u8; 1000];
    feed_b(
        &mut p,
        b,
        &[
            data(b, seq(0), &payload),
            data(b, seq(1), &payload),
            // seq(2) is lost
            data(b, seq(3), &payload),
            // A forger sends a plain shutdown, as UDT4 does.
            control(b, Control::Shutdown),
        ],
    );
    let (n, end) = drain_b(&mut p, b);
    assert_eq!(n, 2000, "the contiguous data stays readable");
    assert_eq!(
        end,
        Err(ReadError::Closed(ConnectionError::PeerAborted)),
        "a shutdown with a hole before it must not read as end of stream"
    );
}

#[test]
fn a_shutdown_whose_end_was_not_reached_is_an_error() {
    let (mut p, _a, b) = cut_off_pair(62, Config::default());
    let payload = [7u8; 1000];
    let mut shutdown = control(b, Control::Shutdown);
    // The sender says its data ends before seq(6): seq(3..6) never came
    // (a lost tail, invisible without the end marker).
    packet::set_shutdown_end(&mut shutdown, seq(6));
    let mut datagrams: Vec<Vec<u8>> = (0..3).map(|i| data(b, seq(i), &payload)).collect();
    datagrams.push(shutdown);
    feed_b(&mut p, b, &datagrams);
    let (n, end) = drain_b(&mut p, b);
    assert_eq!(n, 3000);
    assert_eq!(end, Err(ReadError::Closed(ConnectionError::PeerAborted)));
}

#[test]
fn a_complete_stream_ends_cleanly_with_or_without_the_end_marker() {
    for marked in [false, true] {
        let (mut p, _a, b) = cut_off_pair(63, Config::default());
        let payload = [7u8; 1000];
        let mut shutdown = control(b, Control::Shutdown);
        if marked {
            packet::set_shutdown_end(&mut shutdown, seq(3));
        }
        let mut datagrams: Vec<Vec<u8>> = (0..3).map(|i| data(b, seq(i), &payload)).collect();
        datagrams.push(shutdown);
        feed_b(&mut p, b, &datagrams);
        let (n, end) = drain_b(&mut p, b);
        assert_eq!((n, end), (3000, Ok(0)), "marked={marked}");
    }
}

#[test]
fn an_error_signal_is_never_a_clean_end() {
    let (mut p, _a, b) = cut_off_pair(64, Config::default());
    feed_b(
        &mut p,
        b,
        &[
            data(b, seq(0), &[1u8; 100]),
            control(b, Control::ErrorSignal { code: 4000 }),
        ],
    );
    let (n, end) = drain_b(&mut p, b);
    assert_eq!(n, 100);
    assert_eq!(end, Err(ReadError::Closed(ConnectionError::PeerAborted)));
}

#[test]
fn spoofed_keepalives_do_not_hold_a_connection_with_a_hole_open() {
    let config = Config::default();
    let idle = config.peer_idle_timeout;
    let (mut p, _a, b) = cut_off_pair(65, config);
    let payload = [7u8; 1000];
    feed_b(
        &mut p,
        b,
        &[data(b, seq(0), &payload), data(b, seq(2), &payload)],
    );
    // The real A is gone; a spoofer keeps sending keep-alives.
    let keepalive = control(b, Control::KeepAlive);
    let mut waited = Duration::ZERO;
    while waited < 3 * idle {
        feed_b(&mut p, b, std::slice::from_ref(&keepalive));
        p.sim.run_for(Duration::from_millis(500));
        waited += Duration::from_millis(500);
        if p.sim.node(p.b).connection(b).expect("B").is_closed() {
            break;
        }
    }
    assert!(
        waited <= idle + Duration::from_secs(1),
        "keep-alives held the connection open for {waited:?}"
    );
    let (n, end) = drain_b(&mut p, b);
    assert_eq!(n, 1000);
    assert_eq!(end, Err(ReadError::Closed(ConnectionError::TimedOut)));
}

#[test]
fn keepalives_still_hold_an_idle_connection() {
    let config = Config::default();
    let idle = config.peer_idle_timeout;
    let (mut p, _a, b) = cut_off_pair(66, config);
    feed_b(&mut p, b, &[data(b, seq(0), &[1u8; 10])]);
    let keepalive = control(b, Control::KeepAlive);
    let mut waited = Duration::ZERO;
    while waited < 2 * idle {
        feed_b(&mut p, b, std::slice::from_ref(&keepalive));
        p.sim.run_for(Duration::from_millis(500));
        waited += Duration::from_millis(500);
    }
    assert!(
        !p.sim.node(p.b).connection(b).expect("B").is_closed(),
        "an idle connection with nothing outstanding lives on keep-alives"
    );
}

#[test]
fn an_abortive_close_mid_transfer_reads_as_an_error() {
    init_logs();
    let l = link(50, Duration::from_millis(10), Loss::None);
    let mut config = Config::default();
    config.linger = None;
    let mut p = Pair::new(67, l.clone(), l, config);
    let (a, b) = p.connect();
    let chunk = vec![3u8; 256 * 1024];
    let written = p
        .sim
        .node_mut(p.a)
        .with_connection(a, |c| c.write(&chunk))
        .expect("A")
        .expect("write");
    assert!(written > 100_000);
    p.sim.poke(p.a);
    p.sim.run_for(Duration::from_millis(15));
    let now = p.sim.now();
    p.sim.node_mut(p.a).with_connection(a, |c| c.close(now));
    p.sim.poke(p.a);
    p.sim.run_for(Duration::from_secs(1));
    let (n, end) = drain_b(&mut p, b);
    assert!(n < written, "read {n} of {written}");
    assert_eq!(end, Err(ReadError::Closed(ConnectionError::PeerAborted)));
}

/// How a forged-ACK transfer ended.
#[derive(Debug, PartialEq, Eq)]
enum Ending {
    /// Every byte arrived, checked.
    Complete,
    /// The reader got this error after `read` checked bytes.
    ReadError(ConnectionError, u64),
}

/// Streams `total` pattern bytes from A to B over a lossy link while
/// `forge` (called every 10 ms of virtual time with the time since start)
/// may inject packets; returns how it ended, or panics after 60 s.
fn transfer_under_forgery(
    p: &mut Pair,
    a: SocketId,
    b: SocketId,
    total: u64,
    mut forge: impl FnMut(&mut Pair, Duration),
) -> Ending {
    use common::{check_pattern, fill_pattern};
    let start = p.sim.now();
    let (mut written, mut read) = (0u64, 0u64);
    let mut chunk = vec![0u8; 64 * 1024];
    let mut rbuf = vec![0u8; 64 * 1024];
    while p.sim.now() - start < Duration::from_secs(60) {
        while written < total {
            let n = (total - written).min(chunk.len() as u64) as usize;
            fill_pattern(1, written, &mut chunk[..n]);
            match p
                .sim
                .node_mut(p.a)
                .with_connection(a, |c| c.write(&chunk[..n]))
            {
                Some(Ok(k)) => written += k as u64,
                _ => break,
            }
        }
        p.sim.poke(p.a);
        loop {
            let r = p
                .sim
                .node_mut(p.b)
                .with_connection(b, |c| c.read(&mut rbuf))
                .expect("B");
            match r {
                Ok(n) if n > 0 => {
                    assert_eq!(check_pattern(1, read, &rbuf[..n]), None, "corrupt data");
                    read += n as u64;
                }
                Err(ReadError::WouldBlock) => break,
                Err(ReadError::Closed(e)) => return Ending::ReadError(e, read),
                other => panic!("unexpected read result {other:?} at {read}"),
            }
        }
        if read == total {
            return Ending::Complete;
        }
        p.sim.poke(p.b);
        let elapsed = p.sim.now() - start;
        forge(p, elapsed);
        p.sim.run_for(Duration::from_millis(10));
    }
    let sa = p
        .sim
        .node(p.a)
        .connection(a)
        .map(|c| (c.state(), c.stats()));
    let sb = p
        .sim
        .node(p.b)
        .connection(b)
        .map(|c| (c.state(), c.stats()));
    panic!("transfer hung: {read}/{total} bytes after 60 s of virtual time\nA {sa:?}\nB {sb:?}");
}

/// A's next new sequence number, as an on-path observer would know it.
fn a_next_seq(p: &Pair, a: SocketId) -> SeqNumber {
    let s = p.sim.node(p.a).connection(a).expect("A").stats();
    SeqNumber::new(ISN).add((s.packets_sent - s.packets_retransmitted) as u32)
}

fn lossy_pair(seed: u64) -> (Pair, SocketId, SocketId) {
    init_logs();
    let l = link(50, Duration::from_millis(10), Loss::Bernoulli(0.02));
    let mut p = Pair::new(seed, l.clone(), l, Config::default());
    let (a, b) = p.connect_with_isn(SeqNumber::new(ISN));
    (p, a, b)
}

#[test]
fn forged_in_window_light_acks_under_loss_do_not_stop_the_transfer() {
    let (mut p, a, b) = lossy_pair(71);
    let b_addr = p.b_addr;
    let ending = transfer_under_forgery(&mut p, a, b, 4 << 20, |p, t| {
        if t >= Duration::from_millis(100) && t < Duration::from_secs(2) {
            // Everything sent so far "received": UDT4 would then ignore
            // the NAKs of the holes below and never resend them.
            let ack = a_next_seq(p, a);
            let forged = control(a, Control::LightAck { ack });
            let now = p.sim.now();
            p.sim
                .node_mut(p.a)
                .with_connection(a, |c| c.handle_datagram(now, b_addr, &forged));
        }
    });
    assert_eq!(ending, Ending::Complete);
}

#[test]
fn a_forged_full_ack_over_a_hole_breaks_the_connection_visibly() {
    let (mut p, a, b) = lossy_pair(72);
    let b_addr = p.b_addr;
    let total = 16 << 20;
    let ending = transfer_under_forgery(&mut p, a, b, total, |p, t| {
        // "Everything sent so far arrived", repeated for a while so that
        // some forgery lands while the receiver has a hole.
        if t >= Duration::from_millis(300) && t < Duration::from_secs(1) {
            let forged = control(
                a,
                Control::Ack(udt_core::packet::Ack {
                    ack_seq: udt_core::AckSeqNumber::new(7),
                    ack: a_next_seq(p, a),
                    rtt_us: 20_000,
                    rtt_var_us: 1_000,
                    available_buffer: 1000,
                    rates: None,
                }),
            );
            let now = p.sim.now();
            p.sim
                .node_mut(p.a)
                .with_connection(a, |c| c.handle_datagram(now, b_addr, &forged));
        }
    });
    // The released hole can never be filled: both sides must say so
    // instead of hanging or delivering a stream with a hole.
    match ending {
        Ending::ReadError(ConnectionError::PeerAborted, n) => assert!(n < total),
        other => panic!("expected the reader to see PeerAborted, got {other:?}"),
    }
    let sender = p.sim.node(p.a).connection(a).expect("A").state();
    assert_eq!(
        sender,
        udt_core::connection::State::Closed(ConnectionError::DataLost)
    );
}

#[test]
fn injected_data_is_detected_when_the_genuine_packet_arrives() {
    // A blind attacker that guessed the socket ID and a sequence number
    // ahead of the sender: its packet is stored, the genuine one arrives
    // later as a "duplicate". UDT4 (and this code before issue 10) kept the
    // forgery and delivered it as if it were the stream.
    init_logs();
    let l = link(50, Duration::from_millis(10), Loss::None);
    let mut p = Pair::new(73, l.clone(), l, Config::default());
    let (a, b) = p.connect_with_isn(SeqNumber::new(ISN));
    let a_addr = p.a_addr;
    let mut injected = false;
    let ending = transfer_under_forgery(&mut p, a, b, 4 << 20, |p, t| {
        if t >= Duration::from_millis(200) && !injected {
            injected = true;
            let ahead = a_next_seq(p, a).add(1000);
            let forged = data(b, ahead, &[0xEE; 1000]);
            let now = p.sim.now();
            p.sim
                .node_mut(p.b)
                .with_connection(b, |c| c.handle_datagram(now, a_addr, &forged));
        }
    });
    match ending {
        Ending::ReadError(ConnectionError::Corrupted, n) => assert!(n < 4 << 20),
        other => panic!("the injection went unnoticed: {other:?}"),
    }
}

#[test]
fn a_reader_that_stops_for_longer_than_the_idle_timeout_keeps_its_connection() {
    // Its window is full, so the sender's data stays unacknowledged and the
    // receiver only sends keep-alives: those must keep the sender alive.
    init_logs();
    let l = link(100, Duration::from_millis(5), Loss::None);
    let mut config = Config::default();
    config.recv_buffer_packets = 64;
    let idle = config.peer_idle_timeout;
    let mut p = Pair::new(74, l.clone(), l, config);
    let (a, b) = p.connect();
    let total = 1 << 20;
    let chunk = vec![5u8; total];
    let mut written = 0;
    let start = p.sim.now();
    while p.sim.now() - start < 3 * idle {
        if written < total {
            if let Some(Ok(n)) = p
                .sim
                .node_mut(p.a)
                .with_connection(a, |c| c.write(&chunk[written..]))
            {
                written += n;
            }
            p.sim.poke(p.a);
        }
        p.sim.run_for(Duration::from_millis(100));
    }
    for (node, id) in [(p.a, a), (p.b, b)] {
        let c = p.sim.node(node).connection(id).expect("connection");
        assert!(!c.is_closed(), "{:?} after a long pause", c.state());
    }
    // The reader comes back and gets everything.
    let mut got = 0;
    let mut buf = vec![0u8; 64 * 1024];
    let deadline = p.sim.now() + Duration::from_secs(30);
    while got < total && p.sim.now() < deadline {
        if written < total {
            if let Some(Ok(n)) = p
                .sim
                .node_mut(p.a)
                .with_connection(a, |c| c.write(&chunk[written..]))
            {
                written += n;
            }
            p.sim.poke(p.a);
        }
        while let Some(Ok(n)) = p
            .sim
            .node_mut(p.b)
            .with_connection(b, |c| c.read(&mut buf))
            .filter(|r| r.as_ref().is_ok_and(|&n| n > 0))
        {
            assert!(buf[..n].iter().all(|&x| x == 5));
            got += n;
        }
        p.sim.poke(p.b);
        p.sim.run_for(Duration::from_millis(10));
    }
    assert_eq!(got, total);
}

#[test]
fn one_stale_nak_does_not_break_a_later_transfer() {
    // A NAK that arrives after the ACK that covered it (reordering on the
    // way back) reports released data as missing once; that is no
    // desynchronisation, however much later the next loss comes.
    let (mut p, a, b) = lossy_pair(75);
    let b_addr = p.b_addr;
    assert_eq!(
        transfer_under_forgery(&mut p, a, b, 1 << 20, |_, _| {}),
        Ending::Complete
    );
    // Every ACK has arrived: the stale NAK is the last word.
    p.sim.run_for(Duration::from_secs(1));
    let mut stale = Vec::new();
    packet::encode_nak(0, a, [(seq(5), seq(9))].into_iter(), 64, &mut stale);
    let now = p.sim.now();
    p.sim
        .node_mut(p.a)
        .with_connection(a, |c| c.handle_datagram(now, b_addr, &stale));
    p.sim.run_for(Duration::from_secs(5));
    // Any later feedback (here a NAK the sender must ignore) finds the old
    // report stale.
    let mut late = Vec::new();
    let ahead = a_next_seq(&p, a).add(100);
    packet::encode_nak(0, a, [(ahead, ahead)].into_iter(), 64, &mut late);
    let now = p.sim.now();
    p.sim
        .node_mut(p.a)
        .with_connection(a, |c| c.handle_datagram(now, b_addr, &late));
    assert_eq!(
        p.sim.node(p.a).connection(a).expect("A").state(),
        udt_core::connection::State::Connected
    );
    assert_eq!(
        transfer_under_forgery(&mut p, a, b, 4 << 20, |_, _| {}),
        Ending::Complete
    );
}
