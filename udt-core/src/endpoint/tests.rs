//! Routing tests: datagrams in, events out, at a virtual time.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use super::*;
use crate::packet::{DataHeader, Handshake, PacketPosition, ReqType};

use crate::time::test_epoch as epoch;

fn addr(s: &str) -> SocketAddr {
    s.parse().expect("test address")
}

fn config() -> Arc<Config> {
    Arc::new(Config::default())
}

/// Drives a handshake machine's first datagram out.
fn first_transmit(socket: &mut Socket, now: Instant) -> Vec<u8> {
    let mut buf = Vec::new();
    socket
        .poll_transmit(now, &mut buf)
        .expect("a first handshake");
    buf
}

#[test]
fn socket_ids_are_random_and_never_zero() {
    // UDT4 counts IDs down by one, so whoever connects once learns the IDs
    // of the connections made before and after (issue 10 item 1).
    let mut e = Endpoint::new(7);
    let ids: Vec<u32> = (0..1000).map(|_| e.new_socket_id().0).collect();
    assert!(ids.iter().all(|&i| i != 0 && i <= SocketId::MAX));
    let strides: std::collections::HashSet<u32> =
        ids.windows(2).map(|w| w[0].wrapping_sub(w[1])).collect();
    assert!(strides.len() > 990, "IDs follow a pattern: {:?}", &ids[..8]);
    // Spread over the whole 31-bit space, not a small range.
    assert!(ids.iter().any(|&i| i > 0x6000_0000) && ids.iter().any(|&i| i < 0x2000_0000));
}

#[test]
fn keyed_endpoints_draw_different_values_and_seeded_ones_replay() {
    let mut a = Endpoint::with_key([1; 32]);
    let mut b = Endpoint::with_key([2; 32]);
    let va: Vec<_> = (0..4).map(|_| (a.new_socket_id(), a.new_isn())).collect();
    let vb: Vec<_> = (0..4).map(|_| (b.new_socket_id(), b.new_isn())).collect();
    assert_ne!(va, vb);
    let mut c = Endpoint::new(3);
    let mut d = Endpoint::new(3);
    assert_eq!(c.new_socket_id(), d.new_socket_id());
    assert_eq!(c.new_isn(), d.new_isn());
}

#[test]
fn accepted_socket_ids_are_not_consecutive() {
    // The listener's response reveals the accepted connection's ID: the
    // next connection's must not follow from it.
    let now = epoch();
    let mut server = Endpoint::new(1);
    server.listen(now, config(), 64).expect("listen");
    let mut ids = Vec::new();
    for seed in 0..16 {
        let mut client = Endpoint::new(100 + seed);
        let (_, s, _, _) = handshake(&mut server, &mut client, now);
        ids.push(s.socket_id().0);
    }
    let consecutive = ids.windows(2).filter(|w| w[0].abs_diff(w[1]) <= 16).count();
    assert_eq!(consecutive, 0, "accepted IDs {ids:?}");
}

#[test]
fn handles_are_dense_and_reused() {
    let mut e = Endpoint::new(1);
    let now = epoch();
    let (a, sa) = e.connect(now, addr("127.0.0.1:1"), config());
    let (b, _) = e.connect(now, addr("127.0.0.1:2"), config());
    assert_eq!((a.0, b.0), (0, 1));
    e.remove(now, a, &sa);
    let (c, _) = e.connect(now, addr("127.0.0.1:3"), config());
    assert_eq!(c, a, "a freed handle is reused");
    assert_eq!(e.live(), 2);
}

/// A full caller ↔ listener exchange through two endpoints, by hand.
fn handshake(
    server: &mut Endpoint,
    client: &mut Endpoint,
    now: Instant,
) -> (ConnectionHandle, Socket, ConnectionHandle, Socket) {
    handshake_from(server, client, addr("127.0.0.1:9001"), now)
}

/// [`handshake`] from a caller at `c_addr`.
fn handshake_from(
    server: &mut Endpoint,
    client: &mut Endpoint,
    c_addr: SocketAddr,
    now: Instant,
) -> (ConnectionHandle, Socket, ConnectionHandle, Socket) {
    let s_addr = addr("127.0.0.1:9000");
    let (ch, mut caller) = client.connect(now, s_addr, config());
    let mut buf = Vec::new();
    let mut to_server = first_transmit(&mut caller, now);
    loop {
        match server.handle(now, c_addr, &to_server, &mut buf) {
            DatagramEvent::Respond => {
                let ev = client.handle(now, s_addr, &buf, &mut Vec::new());
                assert!(matches!(ev, DatagramEvent::Route(h) if h == ch));
                let _ = caller.handle_datagram(now, s_addr, &buf);
                to_server = first_transmit(&mut caller, now);
            }
            DatagramEvent::Accepted { handle, socket } => {
                let ev = client.handle(now, s_addr, &buf, &mut Vec::new());
                assert!(matches!(ev, DatagramEvent::Route(h) if h == ch));
                assert_eq!(
                    caller.handle_datagram(now, s_addr, &buf),
                    Progress::Connected
                );
                return (handle, *socket, ch, caller);
            }
            other => panic!("unexpected {other:?}"),
        }
    }
}

#[test]
fn listener_accepts_once_and_routes_repeats_to_the_connection() {
    let now = epoch();
    let mut server = Endpoint::new(1);
    let mut client = Endpoint::new(2);
    let lid = server.listen(now, config(), 4).expect("listen");
    let (sh, _s, _ch, _c) = handshake(&mut server, &mut client, now);
    assert_eq!(server.accept(), Some(sh));
    assert_eq!(server.accept(), None);
    assert!(server.is_listening(lid));
    assert_eq!(
        server.listen(now, config(), 1),
        Err(ListenError::AlreadyListening)
    );
}

#[test]
fn a_full_backlog_rejects_and_counts() {
    let now = epoch();
    let mut server = Endpoint::new(1);
    server.listen(now, config(), 1).expect("listen");
    let mut c1 = Endpoint::new(2);
    let _ = handshake(&mut server, &mut c1, now);
    // The second caller gets its cookie, then a rejection.
    let (s_addr, c_addr) = (addr("127.0.0.1:9000"), addr("127.0.0.1:9001"));
    let mut c2 = Endpoint::new(3);
    let (_, mut caller) = c2.connect(now, s_addr, config());
    let mut buf = Vec::new();
    let req = first_transmit(&mut caller, now);
    assert!(matches!(
        server.handle(now, c_addr, &req, &mut buf),
        DatagramEvent::Respond
    ));
    let _ = caller.handle_datagram(now, s_addr, &buf);
    let req = first_transmit(&mut caller, now);
    assert!(matches!(
        server.handle(now, c_addr, &req, &mut buf),
        DatagramEvent::Respond
    ));
    assert_eq!(server.counters().handshakes_rejected, 1);
    assert_eq!(caller.handle_datagram(now, s_addr, &buf), Progress::Failed);
}

#[test]
fn packets_from_another_address_are_dropped() {
    let now = epoch();
    let mut server = Endpoint::new(1);
    let mut client = Endpoint::new(2);
    server.listen(now, config(), 4).expect("listen");
    let (_sh, s, _ch, _c) = handshake(&mut server, &mut client, now);
    let mut data = Vec::new();
    Packet::Data {
        header: DataHeader {
            seq: SeqNumber::new(1),
            position: PacketPosition::Only,
            in_order: false,
            msg: crate::seq::MsgNumber::new(1),
            timestamp: 0,
            dest: s.socket_id(),
        },
        payload: b"x",
    }
    .encode(&mut data);
    let ev = server.handle(now, addr("127.0.0.1:4444"), &data, &mut Vec::new());
    assert!(matches!(
        ev,
        DatagramEvent::Dropped(DropReason::WrongSource)
    ));
    let ev = server.handle(now, addr("127.0.0.1:9001"), &data, &mut Vec::new());
    assert!(matches!(ev, DatagramEvent::Route(_)));
    assert!(matches!(
        server.handle(now, addr("127.0.0.1:9001"), &data[..10], &mut Vec::new()),
        DatagramEvent::Dropped(DropReason::Malformed)
    ));
    assert_eq!(server.counters().wrong_source, 1);
}

#[test]
fn a_finished_connection_answers_late_packets_with_a_shutdown() {
    let now = epoch();
    let mut server = Endpoint::new(1);
    let mut client = Endpoint::new(2);
    server.listen(now, config(), 4).expect("listen");
    let (sh, s, _ch, _c) = handshake(&mut server, &mut client, now);
    let peer_id = s.connection_ref().expect("connected").peer_socket_id();
    let id = s.socket_id();
    server.remove(now, sh, &s);
    let mut keepalive = Vec::new();
    Packet::Control(ControlPacket {
        timestamp: 0,
        dest: id,
        control: Control::KeepAlive,
    })
    .encode(&mut keepalive);
    let mut buf = Vec::new();
    let ev = server.handle(now, addr("127.0.0.1:9001"), &keepalive, &mut buf);
    assert!(matches!(ev, DatagramEvent::Respond));
    assert!(matches!(
        packet::decode(&buf),
        Ok(Packet::Control(ControlPacket { dest, control: Control::Shutdown, .. })) if dest == peer_id
    ));
    // Not again at once, and never in answer to a shutdown.
    let later = now + Duration::from_secs(1);
    assert!(matches!(
        server.handle(now, addr("127.0.0.1:9001"), &keepalive, &mut buf),
        DatagramEvent::Dropped(DropReason::UnknownDestination)
    ));
    let mut shutdown = Vec::new();
    Packet::Control(ControlPacket {
        timestamp: 0,
        dest: id,
        control: Control::Shutdown,
    })
    .encode(&mut shutdown);
    assert!(matches!(
        server.handle(later, addr("127.0.0.1:9001"), &shutdown, &mut buf),
        DatagramEvent::Dropped(DropReason::UnknownDestination)
    ));
    // The ID is not reused while its tombstone lasts.
    for _ in 0..3 {
        let (_, sock) = server.connect(now, addr("127.0.0.1:1"), config());
        assert_ne!(sock.socket_id(), id);
    }
}

#[test]
fn rendezvous_is_matched_by_peer_address_and_is_exclusive() {
    let now = epoch();
    let (a_addr, b_addr) = (addr("127.0.0.1:7001"), addr("127.0.0.1:7002"));
    let mut a = Endpoint::new(1);
    let mut b = Endpoint::new(2);
    let (ah, mut asock) = a.rendezvous(now, b_addr, config()).expect("rendezvous");
    assert_eq!(
        a.rendezvous(now, b_addr, config()).err(),
        Some(RendezvousError::Busy)
    );
    let (bh, mut bsock) = b.rendezvous(now, a_addr, config()).expect("rendezvous");
    // Exchange until both are connected.
    let mut buf = Vec::new();
    for i in 0..8 {
        let now = now + crate::handshake::REQUEST_INTERVAL * i;
        while let Some(to) = asock.poll_transmit(now, &mut buf) {
            assert_eq!(to, b_addr);
            if let DatagramEvent::Route(h) = b.handle(now, a_addr, &buf, &mut Vec::new()) {
                assert_eq!(h, bh);
                let _ = bsock.handle_datagram(now, a_addr, &buf);
            }
        }
        while let Some(to) = bsock.poll_transmit(now, &mut buf) {
            assert_eq!(to, a_addr);
            if let DatagramEvent::Route(h) = a.handle(now, b_addr, &buf, &mut Vec::new()) {
                assert_eq!(h, ah);
                let _ = asock.handle_datagram(now, b_addr, &buf);
            }
        }
    }
    assert!(asock.connection_ref().is_some() && bsock.connection_ref().is_some());
    // A dest-0 handshake from a stranger does not reach the rendezvous.
    let mut hs = Vec::new();
    Handshake {
        version: Handshake::VERSION,
        socket_type: 1,
        isn: SeqNumber::new(5),
        mss: 1500,
        flow_window: 8192,
        req_type: ReqType::Rendezvous,
        socket_id: SocketId(99),
        cookie: 0,
        peer_ip: crate::packet::PeerIp::from_addr(a_addr.ip()),
    }
    .encode(0, SocketId::HANDSHAKE, &mut hs);
    assert!(matches!(
        a.handle(now, addr("127.0.0.1:7003"), &hs, &mut buf),
        DatagramEvent::Dropped(DropReason::UnknownDestination)
    ));
}

/// A handler that records what it got and answers each datagram once.
#[derive(Debug, Default)]
struct Echo {
    got: Vec<(SocketAddr, Vec<u8>)>,
    out: VecDeque<(SocketAddr, Vec<u8>)>,
}

impl DatagramHandler for Echo {
    fn handle_datagram(&mut self, _now: Instant, from: SocketAddr, datagram: &[u8]) {
        self.got.push((from, datagram.to_vec()));
        self.out.push_back((from, datagram.to_vec()));
    }

    fn poll_transmit(&mut self, _now: Instant, buf: &mut Vec<u8>) -> Option<SocketAddr> {
        let (to, d) = self.out.pop_front()?;
        buf.extend_from_slice(&d);
        Some(to)
    }
}

#[test]
fn stun_goes_to_the_handler_and_udt_does_not() {
    let now = epoch();
    let mut e = Endpoint::new(1);
    let mut stun = vec![0x00, 0x01, 0x00, 0x00];
    stun.extend_from_slice(&STUN_MAGIC_COOKIE.to_be_bytes());
    stun.extend_from_slice(&[3u8; 12]);
    let from = addr("127.0.0.1:5000");
    // No handler: it is not UDT either, so it is dropped.
    assert!(matches!(
        e.handle(now, from, &stun, &mut Vec::new()),
        DatagramEvent::Dropped(_)
    ));
    assert!(e
        .set_datagram_handler(Some(Box::<Echo>::default()))
        .is_none());
    assert!(matches!(
        e.handle(now, from, &stun, &mut Vec::new()),
        DatagramEvent::Handled
    ));
    let mut buf = Vec::new();
    assert_eq!(e.poll_transmit(now, &mut buf), Some(from));
    assert_eq!(buf, stun);
    assert_eq!(e.poll_transmit(now, &mut buf), None);
    assert_eq!(e.counters().foreign, 1);
    // A UDT keep-alive is not offered to the handler.
    let mut ka = Vec::new();
    Packet::Control(ControlPacket {
        timestamp: 0,
        dest: SocketId(5),
        control: Control::KeepAlive,
    })
    .encode(&mut ka);
    assert!(matches!(
        e.handle(now, from, &ka, &mut Vec::new()),
        DatagramEvent::Dropped(DropReason::UnknownDestination)
    ));
}

/// Runs a caller's handshake from `c_addr` to the listener at
/// 127.0.0.1:9000; returns the listener's answer to the final request.
fn final_answer(
    server: &mut Endpoint,
    seed: u64,
    c_addr: SocketAddr,
    now: Instant,
) -> DatagramEvent {
    let s_addr = addr("127.0.0.1:9000");
    let mut client = Endpoint::new(seed);
    let (_, mut caller) = client.connect(now, s_addr, config());
    let mut buf = Vec::new();
    let req = first_transmit(&mut caller, now);
    assert!(matches!(
        server.handle(now, c_addr, &req, &mut buf),
        DatagramEvent::Respond
    ));
    let _ = caller.handle_datagram(now, s_addr, &buf);
    let req = first_transmit(&mut caller, now);
    server.handle(now, c_addr, &req, &mut buf)
}

#[test]
fn one_source_cannot_fill_the_backlog() {
    // One caller proved its address with one cookie, then asks again and
    // again with made-up socket IDs and ISNs: it may hold 7/8 of the
    // backlog, and everyone else still gets in (issue 10 item 7).
    let now = epoch();
    let mut server = Endpoint::new(1);
    server.listen(now, config(), 8).expect("listen");
    let mut accepted = 0;
    for i in 0..20u64 {
        let from = addr("203.0.113.5:4000");
        match final_answer(&mut server, 100 + i, from, now) {
            DatagramEvent::Accepted { .. } => accepted += 1,
            DatagramEvent::Dropped(_) => {}
            other => panic!("unexpected {other:?}"),
        }
    }
    assert_eq!(accepted, 7, "7/8 of the backlog of 8");
    assert_eq!(server.counters().handshakes_throttled, 13);
    assert_eq!(server.counters().handshakes_rejected, 0);
    // Another source is not affected.
    let other = addr("203.0.113.5:4001");
    assert!(matches!(
        final_answer(&mut server, 999, other, now),
        DatagramEvent::Accepted { .. }
    ));
    // Once the application accepts, the first source may come back.
    assert!(server.accept().is_some());
    let from = addr("203.0.113.5:4000");
    assert!(matches!(
        final_answer(&mut server, 1000, from, now),
        DatagramEvent::Accepted { .. }
    ));
}

#[test]
fn a_waiting_connection_holds_little_data_until_accepted() {
    // Each unaccepted connection could buffer a whole receive buffer
    // (~11 MiB by default) before the application ever saw it.
    let now = epoch();
    let mut server = Endpoint::new(1);
    server.listen(now, config(), 4).expect("listen");
    let (s_addr, c_addr) = (addr("127.0.0.1:9000"), addr("127.0.0.1:9001"));
    let isn = SeqNumber::new(777);
    let mut client = Endpoint::new(2);
    let (_, mut caller) = client.connect_with_isn(now, s_addr, config(), isn);
    let mut buf = Vec::new();
    let mut to_server = first_transmit(&mut caller, now);
    let mut s = loop {
        match server.handle(now, c_addr, &to_server, &mut buf) {
            DatagramEvent::Respond => {
                let _ = caller.handle_datagram(now, s_addr, &buf);
                to_server = first_transmit(&mut caller, now);
            }
            DatagramEvent::Accepted { socket, .. } => break *socket,
            other => panic!("unexpected {other:?}"),
        }
    };
    let dest = s.socket_id();
    let feed = |s: &mut Socket| {
        let mut data = Vec::new();
        for i in 0..200u32 {
            crate::packet::encode_data(
                &DataHeader {
                    seq: isn.add(i),
                    position: PacketPosition::Only,
                    in_order: false,
                    msg: crate::seq::MsgNumber::new(1),
                    timestamp: 0,
                    dest,
                },
                &[9u8; 1000],
                &mut data,
            );
            let _ = s.handle_datagram(now, c_addr, &data);
        }
    };
    feed(&mut s);
    let conn = s.connection().expect("accepted");
    let held = conn.stats().packets_received;
    assert!(
        held <= u64::from(PENDING_RECV_WINDOW),
        "an unaccepted connection took {held} packets"
    );
    // Accepted: the whole window opens.
    conn.limit_receive_window(None);
    feed(&mut s);
    assert_eq!(
        s.connection_ref()
            .expect("accepted")
            .stats()
            .packets_received,
        200
    );
}

#[test]
fn the_per_source_share_leaves_room_for_others() {
    assert_eq!(per_source_share(1), 1);
    assert_eq!(per_source_share(2), 1);
    assert_eq!(per_source_share(8), 7);
    assert_eq!(per_source_share(64), 56);
    assert_eq!(per_source_share(usize::MAX), usize::MAX - usize::MAX / 8);
}

#[test]
fn idle_connections_of_one_endpoint_keep_alive_on_one_grid() {
    use crate::connection::Timer;
    let t0 = epoch();
    let mut server = Endpoint::new(1);
    server.listen(t0, config(), 4).expect("listen");
    let mut first_client = Endpoint::new(2);
    let mut second_client = Endpoint::new(3);
    // Two callers 370 ms apart: without a shared grid their keep-alives
    // would fall due 370 ms apart forever, two wake-ups per interval.
    let (_, mut a, _, mut caller_a) =
        handshake_from(&mut server, &mut first_client, addr("127.0.0.1:9001"), t0);
    let t1 = t0 + Duration::from_millis(370);
    let (_, mut b, _, _) =
        handshake_from(&mut server, &mut second_client, addr("127.0.0.1:9002"), t1);
    let keepalive = |s: &mut Socket| {
        s.connection()
            .expect("connected")
            .timer_deadline(Timer::KeepAlive)
            .expect("armed")
    };
    let (da, db) = (keepalive(&mut a), keepalive(&mut b));
    let grid = Duration::from_millis(250);
    // The server's origin is the first time it was told (t0).
    for (due, created) in [(da, t0), (db, t1)] {
        let since = due.duration_since(t0).as_nanos();
        assert_eq!(since % grid.as_nanos(), 0, "off the grid: {due:?}");
        let after = due.duration_since(created);
        assert!(
            after >= Duration::from_secs(1) && after < Duration::from_secs(1) + grid,
            "keep-alive {after:?} after creation"
        );
    }
    // The client's connection is on its own endpoint's grid (origin t0).
    let dc = keepalive(&mut caller_a);
    assert_eq!(dc.duration_since(t0).as_nanos() % grid.as_nanos(), 0);
}
