//! Secure rendezvous (issue 11) driven to the end: two [`Rendezvous`]
//! machines, then the connections they produce (the responder's repeats
//! its −1 with the key agreement's second message), over a 5 ms path that
//! a test may tamper with. Per method: round trip both ways round, wrong
//! secrets refused on both sides, downgrades refused, and the plain
//! rendezvous unchanged on the wire.

use std::collections::VecDeque;
use std::net::{Ipv4Addr, SocketAddr};
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::connection::{Connection, State};
use crate::error::ConnectionError;
use crate::handshake::{ConnectError, ConnectParams, Rendezvous};
use crate::packet::{Handshake, HEADER_SIZE};
use crate::secure::handshake_ext::{self, ExtKind};
use crate::secure::{generate_keypair, PeerIdentity, Security};
use crate::seq::{SeqNumber, SocketId};
use crate::Config;

const PLAIN_LEN: usize = HEADER_SIZE + Handshake::BODY_SIZE;

use crate::time::test_epoch as epoch;

fn ms(n: u64) -> Duration {
    Duration::from_millis(n)
}

struct Side {
    addr: SocketAddr,
    config: Config,
    machine: Option<Rendezvous>,
    result: Option<Result<ConnectParams, ConnectError>>,
    /// When the result came, from the start.
    at: Duration,
    conn: Option<Connection>,
    /// Every datagram this side sent.
    sent: Vec<Vec<u8>>,
}

fn side(last: u8, id: u32, isn: u32, security: Security, t0: Instant) -> Side {
    let addr: SocketAddr = (Ipv4Addr::new(192, 0, 2, last), 9000).into();
    let config = Config {
        security,
        ..Config::default()
    };
    let peer: SocketAddr = (Ipv4Addr::new(192, 0, 2, 3 - last), 9000).into();
    Side {
        addr,
        machine: Some(Rendezvous::new(
            &config,
            SocketId(id),
            peer,
            SeqNumber::new(isn),
            t0,
        )),
        config,
        result: None,
        at: Duration::ZERO,
        conn: None,
        sent: Vec::new(),
    }
}

/// Runs sides 1 and 2 until both have a result, then one more simulated
/// second (so that a refusal reaches a connection); `tamper(from, d)` may
/// rewrite or (returning false) drop each datagram side `from` sends.
fn run(a: &mut Side, b: &mut Side, mut tamper: impl FnMut(usize, &mut Vec<u8>) -> bool) {
    let t0 = epoch();
    let mut wire: VecDeque<(Instant, usize, Vec<u8>)> = VecDeque::new();
    let mut now = t0;
    let mut done_at: Option<Instant> = None;
    let mut buf = Vec::new();
    for _ in 0..100_000 {
        while wire.front().is_some_and(|(t, _, _)| *t <= now) {
            let Some((_, to, d)) = wire.pop_front() else {
                break;
            };
            let (dst, src) = if to == 0 {
                (&mut *a, b.addr)
            } else {
                (&mut *b, a.addr)
            };
            if let Some(m) = dst.machine.as_mut() {
                m.handle_datagram(now, src, &d);
            } else if let Some(c) = dst.conn.as_mut() {
                c.handle_datagram(now, src, &d);
            }
        }
        for (i, s) in [&mut *a, &mut *b].into_iter().enumerate() {
            if let Some(m) = s.machine.as_mut() {
                m.handle_timeout(now);
                while m.poll_transmit(now, &mut buf).is_some() {
                    let mut d = buf.clone();
                    s.sent.push(d.clone());
                    if tamper(i, &mut d) {
                        wire.push_back((now + ms(5), 1 - i, d));
                    }
                }
                if let Some(r) = m.poll_result() {
                    if let Ok(p) = &r {
                        s.conn = Some(Connection::new(p.clone(), Arc::new(s.config.clone()), now));
                    }
                    s.result = Some(r);
                    s.at = now - t0;
                    s.machine = None;
                }
            }
            if let Some(c) = s.conn.as_mut() {
                c.handle_timeout(now);
                while c.poll_transmit_control(now, &mut buf).is_some() {
                    let mut d = buf.clone();
                    s.sent.push(d.clone());
                    if tamper(i, &mut d) {
                        wire.push_back((now + ms(5), 1 - i, d));
                    }
                }
            }
        }
        if done_at.is_none() && a.result.is_some() && b.result.is_some() {
            done_at = Some(now);
        }
        if done_at.is_some_and(|d| now >= d + ms(1000)) {
            return;
        }
        let next = [
            wire.front().map(|w| w.0),
            a.machine.as_ref().and_then(Rendezvous::poll_timeout),
            b.machine.as_ref().and_then(Rendezvous::poll_timeout),
            done_at.map(|d| d + ms(1000)),
            Some(now + ms(50)),
        ];
        now = next.into_iter().flatten().min().unwrap_or(now).max(now);
    }
    panic!("the simulation did not end");
}

fn params(s: &Side) -> &ConnectParams {
    match &s.result {
        Some(Ok(p)) => p,
        other => panic!("side {} did not connect: {other:?}", s.addr),
    }
}

fn error(s: &Side) -> ConnectError {
    match &s.result {
        Some(Err(e)) => *e,
        other => panic!("side {} did not fail: {other:?}", s.addr),
    }
}

fn keys_match(a: &Side, b: &Side) {
    let (pa, pb) = (params(a), params(b));
    let (ka, kb) = (
        &pa.secure.as_ref().expect("a secure").keys,
        &pb.secure.as_ref().expect("b secure").keys,
    );
    assert_eq!(ka.send_key, kb.recv_key);
    assert_eq!(ka.recv_key, kb.send_key);
    assert_ne!(ka.send_key, ka.recv_key);
    assert_eq!(pa.peer_socket_id, pb.local_socket_id);
    assert_eq!(pa.send_isn, pb.recv_isn);
}

/// (ID, ISN) pairs: in the first, side 1 initiates; in the second, side 2.
const ROLES: [[(u32, u32); 2]; 2] = [[(0x5000, 77), (0x4000, 99)], [(0x4000, 77), (0x5000, 99)]];

fn sides(sec_a: Security, sec_b: Security, roles: [(u32, u32); 2]) -> (Side, Side) {
    let t0 = epoch();
    (
        side(1, roles[0].0, roles[0].1, sec_a, t0),
        side(2, roles[1].0, roles[1].1, sec_b, t0),
    )
}

#[test]
fn round_trip_per_method_either_side_initiating() {
    let (ka, pa) = generate_keypair().expect("keypair");
    let (kb, pb) = generate_keypair().expect("keypair");
    let methods: Vec<(Security, Security, PeerIdentity, PeerIdentity)> = vec![
        (
            Security::Code("7-amber-falcon-river".into()),
            Security::Code(" 7-Amber-Falcon-River ".into()),
            PeerIdentity::Code,
            PeerIdentity::Code,
        ),
        (
            Security::PreSharedKey([9; 32]),
            Security::PreSharedKey([9; 32]),
            PeerIdentity::PreSharedKey,
            PeerIdentity::PreSharedKey,
        ),
        (
            Security::StaticKeys {
                private_key: ka,
                peer_keys: vec![pb],
            },
            Security::StaticKeys {
                private_key: kb,
                peer_keys: vec![pa],
            },
            PeerIdentity::StaticKey(pb),
            PeerIdentity::StaticKey(pa),
        ),
    ];
    for (sa, sb, ida, idb) in methods {
        for roles in ROLES {
            let (mut a, mut b) = sides(sa.clone(), sb.clone(), roles);
            run(&mut a, &mut b, |_, _| true);
            keys_match(&a, &b);
            let pa = params(&a).secure.as_ref().expect("secure");
            let pb = params(&b).secure.as_ref().expect("secure");
            assert_eq!(pa.keys.peer, ida, "{sa:?} {roles:?}");
            assert_eq!(pb.keys.peer, idb);
            // Both connected within a few round trips, not a timeout.
            assert!(a.at < ms(600) && b.at < ms(600), "{:?} {:?}", a.at, b.at);
            // Every handshake of a secure rendezvous carries the extension
            // (but an established connection's plain "−2, connected").
            let rendezvous_connected = (-2i32).to_be_bytes();
            for d in a.sent.iter().chain(&b.sent) {
                let req_type = d.get(HEADER_SIZE + 20..HEADER_SIZE + 24);
                if d.get(..2) == Some(&[0x80, 0][..]) && req_type != Some(&rendezvous_connected[..])
                {
                    assert!(handshake_ext::parse_datagram(d).is_ok(), "{d:?}");
                }
            }
            // The connections confirm each other and keep going.
            for s in [&a, &b] {
                let c = s.conn.as_ref().expect("connection");
                assert_eq!(c.state(), State::Connected);
            }
        }
    }
}

#[test]
fn a_wrong_code_fails_fast_on_both_sides() {
    for roles in ROLES {
        let (mut a, mut b) = sides(
            Security::Code("7-amber-falcon-river".into()),
            Security::Code("7-amber-falcon-rover".into()),
            roles,
        );
        run(&mut a, &mut b, |_, _| true);
        // The initiator cannot read message 2; the responder completed
        // (it cannot check a code) and its connection ends on the refusal.
        let (init, resp) = if roles[0] > roles[1] {
            (&a, &b)
        } else {
            (&b, &a)
        };
        assert_eq!(error(init), ConnectError::AuthFailed);
        let c = resp.conn.as_ref().expect("responder connected");
        assert_eq!(c.state(), State::Closed(ConnectionError::AuthFailed));
        assert!(init.at < ms(600), "{:?}", init.at);
    }
}

#[test]
fn a_wrong_key_fails_fast_on_both_sides() {
    for roles in ROLES {
        let (mut a, mut b) = sides(
            Security::PreSharedKey([1; 32]),
            Security::PreSharedKey([2; 32]),
            roles,
        );
        run(&mut a, &mut b, |_, _| true);
        // The responder reads a wrong message 1 at once and refuses; the
        // initiator fails on the refusal instead of timing out.
        assert_eq!(error(&a), ConnectError::AuthFailed);
        assert_eq!(error(&b), ConnectError::AuthFailed);
        assert!(a.at < ms(1000) && b.at < ms(1000), "{:?} {:?}", a.at, b.at);
    }
}

#[test]
fn stripping_the_extension_is_a_refused_downgrade() {
    for roles in ROLES {
        let code = || Security::Code("12-acorn-bison-cedar".into());
        let (mut a, mut b) = sides(code(), code(), roles);
        run(&mut a, &mut b, |_, d| {
            d.truncate(PLAIN_LEN.min(d.len()));
            true
        });
        assert_eq!(error(&a), ConnectError::PeerNotSecure);
        assert_eq!(error(&b), ConnectError::PeerNotSecure);
        // Against a plain peer, the secure side refuses too.
        let (mut a, mut b) = sides(code(), Security::Plain, roles);
        run(&mut a, &mut b, |_, _| true);
        assert_eq!(error(&a), ConnectError::PeerNotSecure);
    }
}

#[test]
fn another_version_of_secure_mode_is_refused_on_both_sides() {
    for roles in ROLES {
        let psk = || Security::PreSharedKey([6; 32]);
        let (mut a, mut b) = sides(psk(), psk(), roles);
        // Each side hears the other speak version 1 (magic and version
        // keep their place in every version).
        run(&mut a, &mut b, |_, d| {
            if d.get(PLAIN_LEN..PLAIN_LEN + 4) == Some(&handshake_ext::MAGIC[..]) {
                d[PLAIN_LEN + 4] = handshake_ext::VERSION - 1;
            }
            true
        });
        assert_eq!(error(&a), ConnectError::SecureVersion);
        assert_eq!(error(&b), ConnectError::SecureVersion);
        assert!(a.at < ms(1000) && b.at < ms(1000), "{:?} {:?}", a.at, b.at);
    }
}

#[test]
fn different_methods_are_refused() {
    let (mut a, mut b) = sides(
        Security::Code("3-acorn-bison-cedar".into()),
        Security::PreSharedKey([3; 32]),
        ROLES[0],
    );
    run(&mut a, &mut b, |_, _| true);
    assert_eq!(error(&a), ConnectError::SecurityMismatch);
    assert_eq!(error(&b), ConnectError::SecurityMismatch);
}

#[test]
fn an_altered_response_body_fails_authentication() {
    // Side 1 initiates; flip the MSS word of side 2's −1 that carries the
    // second message: the initiator's comparison with the encrypted copy
    // fails.
    let code = || Security::Code("5-acorn-bison-cedar".into());
    let (mut a, mut b) = sides(code(), code(), ROLES[0]);
    run(&mut a, &mut b, |from, d| {
        if from == 1 && matches!(handshake_ext::parse_datagram(d), Ok(e) if e.kind == ExtKind::Resp)
        {
            d[HEADER_SIZE + 13] ^= 1;
        }
        true
    });
    assert_eq!(error(&a), ConnectError::AuthFailed);
}

#[test]
fn plain_rendezvous_is_unchanged_on_the_wire() {
    for roles in ROLES {
        let (mut a, mut b) = sides(Security::Plain, Security::Plain, roles);
        run(&mut a, &mut b, |_, _| true);
        let (pa, pb) = (params(&a), params(&b));
        assert!(pa.secure.is_none() && pb.secure.is_none());
        assert!(pa.response.is_none() && pb.response.is_none());
        for d in a.sent.iter().chain(&b.sent) {
            if d.get(..2) == Some(&[0x80, 0][..]) {
                assert_eq!(d.len(), PLAIN_LEN, "a plain handshake of UDT4's size");
                assert!(!d.windows(4).any(|w| w == handshake_ext::MAGIC));
            }
        }
    }
}

#[test]
fn a_plain_connected_reply_is_ignored_but_a_plain_response_is_a_downgrade() {
    // A connected rendezvous answers a stray (duplicated, late) type-0
    // request with a plain −2: it must not fail a secure attempt. A plain
    // −1 addressed to us is a plain peer or a stripped extension.
    let t0 = epoch();
    let me = SocketId(0x4000);
    let peer_addr: SocketAddr = (Ipv4Addr::new(192, 0, 2, 2), 9000).into();
    let config = Config {
        security: Security::Code("7-amber-falcon-river".into()),
        ..Config::default()
    };
    let mut r = Rendezvous::new(&config, me, peer_addr, SeqNumber::new(5), t0);
    let plain = |req_type| {
        let mut d = Vec::new();
        Handshake {
            version: 4,
            socket_type: 1,
            isn: SeqNumber::new(9),
            mss: 1500,
            flow_window: 8192,
            req_type,
            socket_id: SocketId(0x5000),
            cookie: 0,
            peer_ip: crate::packet::PeerIp::from_addr(peer_addr.ip()),
        }
        .encode(0, me, &mut d);
        d
    };
    r.handle_datagram(
        t0,
        peer_addr,
        &plain(crate::packet::ReqType::RendezvousConnected),
    );
    assert!(!r.is_finished(), "a plain −2 failed the attempt");
    r.handle_datagram(t0, peer_addr, &plain(crate::packet::ReqType::Response));
    assert_eq!(r.poll_result(), Some(Err(ConnectError::PeerNotSecure)));
}
