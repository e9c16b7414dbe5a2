//! Connection-level tests of behaviour a UDT4 peer depends on.

use std::net::{Ipv4Addr, SocketAddr};
use std::sync::Arc;
use std::time::{Duration, Instant};

use super::*;
use crate::packet::{Control, ControlPacket, PeerIp, ReqType};
use crate::seq::SeqNumber;

use crate::time::test_epoch as epoch;

const PEER: SocketId = SocketId(0x2222);

fn params(listener_side: bool, rendezvous: bool, isn: u32) -> ConnectParams {
    let peer_addr: SocketAddr = (Ipv4Addr::LOCALHOST, 9000).into();
    let isn = SeqNumber::new(isn);
    ConnectParams {
        local_socket_id: SocketId(0x1111),
        peer_socket_id: PEER,
        peer_addr,
        send_isn: isn,
        recv_isn: isn,
        mss: 1500,
        peer_flow_window: 8192,
        socket_type: SocketType::Stream,
        rendezvous,
        self_ip: None,
        response: listener_side.then_some(Handshake {
            version: 4,
            socket_type: 1,
            isn,
            mss: 1500,
            flow_window: 8192,
            req_type: ReqType::Response,
            socket_id: SocketId(0x1111),
            cookie: 7,
            peer_ip: PeerIp::ZERO,
        }),
        secure: None,
    }
}

/// Data packets `conn` emits at `now` (control packets are skipped).
fn data_sent(conn: &mut Connection, now: Instant) -> usize {
    let mut buf = Vec::new();
    let mut n = 0;
    while let Some(t) = conn.poll_transmit(now, &mut buf) {
        if t.kind != TransmitKind::Control {
            n += 1;
        }
    }
    n
}

fn keepalive_from_peer(local: SocketId) -> Vec<u8> {
    let mut d = Vec::new();
    ControlPacket {
        timestamp: 0,
        dest: local,
        control: Control::KeepAlive,
    }
    .encode(&mut d);
    d
}

#[test]
fn caller_sends_data_at_once() {
    let t0 = epoch();
    let mut c = Connection::new(params(false, false, 100), Arc::new(Config::default()), t0);
    c.write(&[1u8; 5000]).unwrap();
    assert_eq!(c.next_send_time(), Some(t0));
    assert!(data_sent(&mut c, t0) > 0);
}

#[test]
fn listener_and_rendezvous_hold_first_data_one_syn() {
    // Near the sequence wrap too: the hold concerns time, not numbers.
    for (listener, rendezvous, isn) in [(true, false, 100), (false, true, 0x7FFF_FFFE)] {
        let t0 = epoch();
        let mut c = Connection::new(
            params(listener, rendezvous, isn),
            Arc::new(Config::default()),
            t0,
        );
        c.write(&[1u8; 5000]).unwrap();
        assert_eq!(c.next_send_time(), Some(t0 + FIRST_DATA_HOLD));
        assert_eq!(data_sent(&mut c, t0), 0);
        assert_eq!(data_sent(&mut c, t0 + Duration::from_millis(9)), 0);
        let later = t0 + FIRST_DATA_HOLD;
        assert!(data_sent(&mut c, later) > 0, "listener={listener}");
        // Once data left, a packet from the peer does not disturb pacing.
        c.handle_datagram(later, c.peer_addr(), &keepalive_from_peer(c.socket_id()));
        assert!(c.next_send_time().is_none_or(|t| t >= later));
    }
}

#[test]
fn a_packet_from_the_peer_releases_the_hold() {
    let t0 = epoch();
    let mut c = Connection::new(params(true, false, 5), Arc::new(Config::default()), t0);
    c.write(&[1u8; 3000]).unwrap();
    let heard = t0 + Duration::from_millis(2);
    c.handle_datagram(heard, c.peer_addr(), &keepalive_from_peer(c.socket_id()));
    assert_eq!(c.next_send_time(), Some(heard));
    let first = data_sent(&mut c, heard);
    assert!(first >= 1);
    // The rest follows at the pacing period (1 µs initially): 3000 bytes
    // are three packets.
    assert_eq!(
        first + data_sent(&mut c, heard + Duration::from_millis(1)),
        3
    );
}

#[test]
fn hostile_datagram_does_not_release_the_hold() {
    let t0 = epoch();
    let mut c = Connection::new(params(true, false, 5), Arc::new(Config::default()), t0);
    c.write(&[1u8; 3000]).unwrap();
    c.handle_datagram(t0, c.peer_addr(), &[0xFF; 7]);
    assert_eq!(c.next_send_time(), Some(t0 + FIRST_DATA_HOLD));
}

#[test]
fn poll_transmit_control_never_returns_data() {
    // Near the sequence wrap: the data that stays queued crosses it.
    let t0 = epoch();
    let mut c = Connection::new(
        params(false, false, 0x7FFF_FFFF),
        Arc::new(Config::default()),
        t0,
    );
    c.write(&[1u8; 5000]).unwrap();
    let mut buf = Vec::new();
    // Data due, no control queued: nothing, and the data stays.
    assert_eq!(c.poll_transmit_control(t0, &mut buf), None);
    assert_eq!(c.next_send_time(), Some(t0));
    // A keep-alive falls due while the data still waits.
    let t1 = t0 + timers::KEEPALIVE_INTERVAL;
    c.handle_timeout(t1);
    let mut controls = 0;
    while let Some(t) = c.poll_transmit_control(t1, &mut buf) {
        assert_eq!(t.kind, TransmitKind::Control);
        assert_eq!(t.size, buf.len());
        assert_eq!(t.destination, c.peer_addr());
        controls += 1;
        assert!(
            controls <= CONTROL_QUEUE_LIMIT,
            "control queue never drains"
        );
    }
    assert!(controls >= 1, "the keep-alive was not returned");
    // Only data is left, for the data path.
    assert!(c.next_send_time().is_some_and(|t| t <= t1));
    let mut kinds = Vec::new();
    while let Some(t) = c.poll_transmit(t1, &mut buf) {
        kinds.push(t.kind);
    }
    assert!(!kinds.is_empty());
    assert!(kinds.iter().all(|k| *k == TransmitKind::Data), "{kinds:?}");
}

/// Every datagram `conn` emits at `now`, gathered as a driver does with
/// [`Connection::poll_transmit_gather`]: the header it wrote, then the
/// payload it names.
fn gathered(conn: &mut Connection, now: Instant) -> Vec<(TransmitKind, Vec<u8>)> {
    let mut buf = Vec::new();
    let mut out = Vec::new();
    while let Some((t, payload)) = conn.poll_transmit_gather(now, &mut buf) {
        let mut d = buf.clone();
        if let Some(p) = payload {
            assert_eq!(
                buf.len(),
                crate::packet::HEADER_SIZE,
                "only the header was written"
            );
            d.extend_from_slice(conn.payload(p).expect("still buffered"));
        }
        assert_eq!(d.len(), t.size);
        out.push((t.kind, d));
    }
    out
}

#[test]
fn gathered_datagrams_are_the_datagrams_poll_transmit_writes() {
    let t0 = epoch();
    let data: Vec<u8> = (0..20_000u32).map(|i| (i * 7 % 251) as u8).collect();
    let mut copied = Connection::new(params(false, false, 100), Arc::new(Config::default()), t0);
    let mut gather = Connection::new(params(false, false, 100), Arc::new(Config::default()), t0);
    assert_eq!(copied.write(&data), Ok(data.len()));
    assert_eq!(gather.write(&data), Ok(data.len()));
    let mut buf = Vec::new();
    let mut expected = Vec::new();
    for ms in 0..20 {
        let now = t0 + Duration::from_millis(ms);
        while let Some(t) = copied.poll_transmit(now, &mut buf) {
            expected.push((t.kind, buf.clone()));
        }
    }
    let got: Vec<_> = (0..20)
        .flat_map(|ms| gathered(&mut gather, t0 + Duration::from_millis(ms)))
        .collect();
    assert!(
        got.iter().filter(|(k, _)| *k == TransmitKind::Data).count() >= 13,
        "20 000 bytes are 14 packets"
    );
    assert_eq!(got, expected);
}

#[test]
fn a_gathered_retransmission_carries_the_original_payload() {
    let t0 = epoch();
    let mut c = Connection::new(params(false, false, 100), Arc::new(Config::default()), t0);
    let data: Vec<u8> = (0..3000u32).map(|i| (i % 200) as u8).collect();
    assert_eq!(c.write(&data), Ok(3000));
    let first: Vec<_> = (0..5)
        .flat_map(|ms| gathered(&mut c, t0 + Duration::from_millis(ms)))
        .collect();
    let sent: Vec<&Vec<u8>> = first
        .iter()
        .filter(|(k, _)| *k == TransmitKind::Data)
        .map(|(_, d)| d)
        .collect();
    assert_eq!(sent.len(), 3);
    // The peer reports the second packet lost.
    let lost = SeqNumber::new(101);
    let mut nak = Vec::new();
    crate::packet::encode_nak(
        0,
        SocketId(0x1111),
        std::iter::once((lost, lost)),
        2,
        &mut nak,
    );
    let peer = c.peer_addr();
    c.handle_datagram(t0 + Duration::from_millis(5), peer, &nak);
    let again: Vec<_> = (5..20)
        .flat_map(|ms| gathered(&mut c, t0 + Duration::from_millis(ms)))
        .filter(|(k, _)| *k == TransmitKind::Retransmit)
        .collect();
    assert_eq!(again.len(), 1, "{again:?}");
    // Same bytes after the header's timestamp word.
    assert_eq!(again[0].1[..8], sent[1][..8]);
    assert_eq!(again[0].1[12..], sent[1][12..]);
}
