//! A rendezvous driven to the end: the handshake machines until they finish,
//! then the connections they produce, which answer the peer's late
//! handshakes (udt4-protocol.md §4.2 step 5). Here rather than with the
//! handshake tests because it needs both halves.

use std::collections::VecDeque;
use std::net::{Ipv4Addr, SocketAddr};
use std::time::{Duration, Instant};

use crate::config::{Config, SocketType};
use crate::handshake::{ConnectParams, Rendezvous};
use crate::packet::{decode, Control, ControlPacket, Handshake, Packet, PeerIp, ReqType};
use crate::seq::{SeqNumber, SocketId};

use crate::time::test_epoch as epoch;

fn ms(n: u64) -> Duration {
    Duration::from_millis(n)
}

fn addr(last: u8, port: u16) -> SocketAddr {
    (Ipv4Addr::new(127, 0, 0, last), port).into()
}

/// One side of a simulated rendezvous: the handshake machine until it
/// finishes, then the real [`Connection`](crate::connection::Connection)
/// built from its parameters, which answers the peer's late handshakes.
struct Side {
    addr: SocketAddr,
    config: Config,
    id: SocketId,
    isn: SeqNumber,
    start: Instant,
    machine: Option<Rendezvous>,
    params: Option<ConnectParams>,
    conn: Option<crate::connection::Connection>,
}

/// Runs two rendezvous sides over a 5 ms, loss-free link until both are
/// connected; returns both parameters and the time it took.
fn run_rendezvous(
    t0: Instant,
    mut a: Side,
    mut b: Side,
) -> (ConnectParams, ConnectParams, Duration) {
    let mut wire: VecDeque<(Instant, usize, Vec<u8>)> = VecDeque::new();
    let mut buf = Vec::new();
    let mut now = t0;
    let delay = ms(5);
    for _ in 0..10_000 {
        let sides = [&mut a, &mut b];
        // Start sides whose time has come.
        for s in sides {
            if s.machine.is_none() && s.params.is_none() && now >= s.start {
                s.machine = Some(Rendezvous::new(
                    &s.config,
                    s.id,
                    peer_of(s.addr),
                    s.isn,
                    now,
                ));
            }
        }
        // Deliver due datagrams (to a side that does not exist yet: lost).
        while wire.front().is_some_and(|(t, _, _)| *t <= now) {
            let Some((_, to, d)) = wire.pop_front() else {
                break;
            };
            let (dst, src) = if to == 0 {
                (&mut a, b.addr)
            } else {
                (&mut b, a.addr)
            };
            if let Some(m) = dst.machine.as_mut() {
                m.handle_datagram(now, src, &d);
            } else if let Some(c) = dst.conn.as_mut() {
                c.handle_datagram(now, src, &d);
                let mut out = Vec::new();
                while c.poll_transmit_control(now, &mut out).is_some() {
                    wire.push_back((now + delay, 1 - to, std::mem::take(&mut out)));
                }
            }
        }
        // Timers, transmissions, results.
        for (i, s) in [&mut a, &mut b].into_iter().enumerate() {
            if let Some(m) = s.machine.as_mut() {
                m.handle_timeout(now);
                while let Some(to) = m.poll_transmit(now, &mut buf) {
                    assert_eq!(to, peer_of(s.addr));
                    wire.push_back((now + delay, 1 - i, buf.clone()));
                }
                if let Some(r) = m.poll_result() {
                    let params = r.expect("rendezvous failed");
                    s.conn = Some(crate::connection::Connection::new(
                        params.clone(),
                        std::sync::Arc::new(s.config.clone()),
                        now,
                    ));
                    s.params = Some(params);
                    s.machine = None;
                }
            }
        }
        if let (Some(pa), Some(pb)) = (&a.params, &b.params) {
            return (pa.clone(), pb.clone(), now - t0);
        }
        // Jump to the next event.
        let next = [
            wire.front().map(|w| w.0),
            a.machine.as_ref().and_then(Rendezvous::poll_timeout),
            b.machine.as_ref().and_then(Rendezvous::poll_timeout),
            (a.machine.is_none() && a.params.is_none()).then_some(a.start),
            (b.machine.is_none() && b.params.is_none()).then_some(b.start),
        ];
        now = next.into_iter().flatten().min().expect("stalled");
    }
    panic!("rendezvous did not finish");
}

const A_ADDR: ([u8; 4], u16) = ([127, 0, 0, 1], 6001);
const B_ADDR: ([u8; 4], u16) = ([127, 0, 0, 2], 6002);

/// Each side aims at the other's address.
fn peer_of(own: SocketAddr) -> SocketAddr {
    if own == SocketAddr::from(A_ADDR) {
        B_ADDR.into()
    } else {
        A_ADDR.into()
    }
}

fn side(addr: SocketAddr, id: u32, isn: u32, mss: u32, start: Instant) -> Side {
    Side {
        addr,
        config: Config {
            mss,
            ..Config::default()
        },
        id: SocketId(id),
        isn: SeqNumber::new(isn),
        start,
        machine: None,
        params: None,
        conn: None,
    }
}

fn check_pair(a: &ConnectParams, b: &ConnectParams) {
    assert_eq!(a.send_isn, b.recv_isn);
    assert_eq!(b.send_isn, a.recv_isn);
    assert_eq!(a.peer_socket_id, b.local_socket_id);
    assert_eq!(b.peer_socket_id, a.local_socket_id);
    assert_eq!(a.mss, b.mss);
    assert!(a.rendezvous && b.rendezvous);
}

#[test]
fn rendezvous_in_both_orders_and_with_a_late_side() {
    let t0 = epoch();
    for (delay_a, delay_b) in [(0, 0), (0, 100), (100, 0), (0, 5_000), (5_000, 0), (0, 3)] {
        let a = side(A_ADDR.into(), 0xA, 0x7FFF_FFF0, 1500, t0 + ms(delay_a));
        let b = side(B_ADDR.into(), 0xB, 0x10, 1400, t0 + ms(delay_b));
        let (pa, pb, took) = run_rendezvous(t0, a, b);
        check_pair(&pa, &pb);
        assert_eq!(
            (pa.send_isn.value(), pb.send_isn.value()),
            (0x7FFF_FFF0, 0x10)
        );
        assert_eq!(pa.mss, 1400, "min(ours, peer's)");
        assert_eq!(pa.peer_addr, SocketAddr::from(B_ADDR));
        assert_eq!(pb.self_ip, Some(B_ADDR.0.into()), "{delay_a} {delay_b}");
        // Both up within a request interval or so of the later start.
        let later = ms(delay_a.max(delay_b));
        assert!(
            took <= later + ms(300),
            "{delay_a} {delay_b}: took {took:?}"
        );
    }
}

/// How a connected socket answers one more handshake from its peer
/// (UDT4 `processCtrl` case 0; udt4-protocol.md §4.2 step 5): a rendezvous
/// socket answers anything but −2 with −2 and its own values; a caller
/// answers nothing (requests go to socket ID 0, so a UDT4 peer never sends
/// one to a connected caller); the listener side answers only a repeated
/// final request, with its stored response (docs/divergences.md).
#[test]
fn a_connected_socket_answers_late_handshakes_as_udt4() {
    let t0 = epoch();
    let params = ConnectParams {
        local_socket_id: SocketId(5),
        peer_socket_id: SocketId(6),
        peer_addr: addr(1, 1),
        send_isn: SeqNumber::new(77),
        recv_isn: SeqNumber::new(88),
        mss: 1400,
        peer_flow_window: 100,
        socket_type: SocketType::Message,
        rendezvous: true,
        self_ip: None,
        response: None,
        secure: None,
    };
    let incoming = |req| Handshake {
        version: 4,
        socket_type: 2,
        isn: SeqNumber::new(88),
        mss: 1500,
        flow_window: 8192,
        req_type: req,
        socket_id: SocketId(6),
        cookie: 0,
        peer_ip: PeerIp::ZERO,
    };
    let stored = Handshake {
        req_type: ReqType::Response,
        socket_id: SocketId(5),
        ..incoming(ReqType::Response)
    };
    let config = std::sync::Arc::new(Config::default());
    for (req, rendezvous, response, answered) in [
        (
            ReqType::Rendezvous,
            true,
            None,
            Some(ReqType::RendezvousConnected),
        ),
        (
            ReqType::Response,
            true,
            None,
            Some(ReqType::RendezvousConnected),
        ),
        (ReqType::RendezvousConnected, true, None, None),
        (
            ReqType::Caller,
            true,
            None,
            Some(ReqType::RendezvousConnected),
        ),
        (ReqType::Caller, false, None, None),
        (ReqType::Response, false, None, None),
        (
            ReqType::Response,
            false,
            Some(stored),
            Some(ReqType::Response),
        ),
        (ReqType::Caller, false, Some(stored), None),
    ] {
        let p = ConnectParams {
            rendezvous,
            response,
            secure: None,
            ..params.clone()
        };
        let mut c = crate::connection::Connection::new(p, config.clone(), t0);
        let mut d = Vec::new();
        incoming(req).encode(0, SocketId(5), &mut d);
        c.handle_datagram(t0, addr(1, 1), &d);
        let mut out = Vec::new();
        let reply = c.poll_transmit_control(t0, &mut out).map(|_| {
            let Ok(Packet::Control(ControlPacket {
                control: Control::Handshake(hs),
                ..
            })) = decode(&out)
            else {
                panic!("{req:?}: the answer is not a handshake");
            };
            hs
        });
        assert_eq!(
            reply.map(|r| r.req_type),
            answered,
            "{req:?} rendezvous={rendezvous} listener={}",
            response.is_some()
        );
        if let Some(r) = reply.filter(|_| rendezvous) {
            assert_eq!(
                (r.isn, r.mss, r.socket_id),
                (SeqNumber::new(77), 1400, SocketId(5))
            );
            assert_eq!(r.flow_window, 8192);
        }
    }
}
