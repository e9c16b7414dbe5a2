//! Secure mode (issue 11) through the caller and listener machines and two
//! connections, without the simulator: what goes on the wire, per-method round trips, and what
//! a downgrade or a replay on the path runs into.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::connection::Connection;
use crate::handshake::{Caller, ConnectError, ConnectParams, Listener, ListenerOutput};
use crate::packet::{Handshake, HEADER_SIZE};
use crate::secure::handshake_ext::{self, ExtKind, RefuseReason};
use crate::secure::{generate_keypair, Security};
use crate::seq::{SeqNumber, SocketId};
use crate::Config;

const PLAIN_LEN: usize = HEADER_SIZE + Handshake::BODY_SIZE;

fn config(security: Security) -> Config {
    Config {
        security,
        ..Config::default()
    }
}

use crate::time::test_epoch as epoch;

struct Run {
    /// Every datagram the caller sent, in order.
    caller_sent: Vec<Vec<u8>>,
    /// Every datagram the listener answered, in order.
    listener_sent: Vec<Vec<u8>>,
    caller: Result<ConnectParams, ConnectError>,
    listener: Option<ConnectParams>,
}

/// Runs a caller against a listener over a perfect path; `tamper` may
/// rewrite each datagram the listener sends before the caller sees it.
fn run(
    caller_sec: Security,
    listener_sec: Security,
    isn: u32,
    mut tamper: impl FnMut(&mut Vec<u8>),
) -> Run {
    let t0 = epoch();
    let a: SocketAddr = "192.0.2.1:9000".parse().expect("addr");
    let b: SocketAddr = "198.51.100.7:9000".parse().expect("addr");
    let cc = config(caller_sec);
    let lc = config(listener_sec);
    let mut caller = Caller::new(&cc, SocketId(0x1234), b, SeqNumber::new(isn), t0);
    let mut listener = Listener::new(&lc, [7; 16], t0);
    let mut run = Run {
        caller_sent: Vec::new(),
        listener_sent: Vec::new(),
        caller: Err(ConnectError::TimedOut),
        listener: None,
    };
    let mut buf = Vec::new();
    let mut out = Vec::new();
    for step in 0..6 {
        let now = t0 + Duration::from_millis(300 * step);
        caller.handle_timeout(now);
        while caller.poll_transmit(now, &mut buf).is_some() {
            run.caller_sent.push(buf.clone());
            let reply = match listener.handle_datagram(now, a, &buf, &mut out) {
                ListenerOutput::Nothing => continue,
                ListenerOutput::Reply => out.clone(),
                ListenerOutput::Accept(req) => match req.accept(SocketId(0x77), &lc, &mut out) {
                    Ok(p) => {
                        run.listener = Some(p);
                        out.clone()
                    }
                    Err(_) => out.clone(),
                },
            };
            let mut reply = reply;
            tamper(&mut reply);
            run.listener_sent.push(reply.clone());
            caller.handle_datagram(now, b, &reply);
        }
        if let Some(r) = caller.poll_result() {
            run.caller = r;
            break;
        }
    }
    run
}

fn keys_match(run: &Run) {
    let c = run.caller.as_ref().expect("caller connected");
    let l = run.listener.as_ref().expect("listener accepted");
    let (cs, ls) = (
        c.secure.as_ref().expect("caller secure"),
        l.secure.as_ref().expect("listener secure"),
    );
    assert_eq!(cs.keys.send_key, ls.keys.recv_key);
    assert_eq!(cs.keys.recv_key, ls.keys.send_key);
    assert_ne!(cs.keys.send_key, cs.keys.recv_key);
}

#[test]
fn round_trip_per_method_and_the_wire_shape() {
    let (a_priv, a_pub) = generate_keypair().expect("keypair");
    let (b_priv, b_pub) = generate_keypair().expect("keypair");
    let methods = [
        (
            Security::PreSharedKey([9; 32]),
            Security::PreSharedKey([9; 32]),
        ),
        (
            Security::StaticKeys {
                private_key: a_priv,
                peer_keys: vec![b_pub],
            },
            Security::StaticKeys {
                private_key: b_priv,
                peer_keys: vec![a_pub],
            },
        ),
        (
            Security::Code("5-a-b-c".into()),
            Security::Code("5-a-b-c".into()),
        ),
    ];
    for (c, l) in methods {
        let method = c.method();
        let run = run(c, l, 1000, |_| {});
        keys_match(&run);
        // The induction request is plain UDT4; the final request and
        // both answers carry the extension of the right kind.
        assert_eq!(run.caller_sent[0].len(), PLAIN_LEN);
        let kinds: Vec<_> = run
            .listener_sent
            .iter()
            .map(|d| handshake_ext::parse_datagram(d).expect("ext").kind)
            .collect();
        assert_eq!(kinds, [ExtKind::Offer, ExtKind::Resp]);
        let init = handshake_ext::parse_datagram(&run.caller_sent[1]).expect("init");
        assert_eq!((init.kind, init.method), (ExtKind::Init, method));
    }
}

#[test]
fn plain_mode_is_byte_for_byte_udt4() {
    let run = run(Security::Plain, Security::Plain, 1000, |_| {});
    assert!(run.caller.as_ref().expect("connected").secure.is_none());
    for d in run.caller_sent.iter().chain(&run.listener_sent) {
        assert_eq!(d.len(), PLAIN_LEN);
    }
}

#[test]
fn stripping_the_offer_is_refused_by_the_caller() {
    let run = run(
        Security::PreSharedKey([1; 32]),
        Security::PreSharedKey([1; 32]),
        1000,
        |d| d.truncate(PLAIN_LEN),
    );
    assert_eq!(run.caller.err(), Some(ConnectError::PeerNotSecure));
    assert!(run.listener.is_none());
}

#[test]
fn another_version_of_secure_mode_is_refused_on_both_sides() {
    // Magic and version keep their place in every version (handshake_ext).
    const VERSION_AT: usize = PLAIN_LEN + 4;
    let psk = Security::PreSharedKey([3; 32]);
    // A listener of another version offers secure mode: our caller stops
    // at its offer.
    let run = run(psk.clone(), psk.clone(), 1000, |d| {
        if handshake_ext::parse_datagram(d).is_ok_and(|e| e.kind == ExtKind::Offer) {
            d[VERSION_AT] = handshake_ext::VERSION - 1;
        }
    });
    assert_eq!(run.caller.err(), Some(ConnectError::SecureVersion));
    assert!(run.listener.is_none());
    assert_eq!(run.caller_sent.len(), 1, "no key agreement started");

    // A caller of another version: the listener refuses its Init with a
    // reason that our caller reports as such.
    let cfg = config(psk);
    let (mut listener, mut caller, mut buf, (a, t0)) = at_the_final_request(&cfg, &cfg);
    let init = handshake_ext::parse_datagram(&buf).expect("init");
    assert_eq!(init.kind, ExtKind::Init);
    buf[VERSION_AT] = handshake_ext::VERSION + 1;
    final_request_refused(
        (&mut listener, &mut caller),
        (a, t0),
        &buf,
        RefuseReason::Version,
        ConnectError::SecureVersion,
    );
}

/// A listener with `listener_cfg` and a caller with `caller_cfg` after the
/// first exchange: the caller's final request, not yet delivered, and the
/// caller's address and the time.
fn at_the_final_request(
    listener_cfg: &Config,
    caller_cfg: &Config,
) -> (Listener, Caller, Vec<u8>, (SocketAddr, Instant)) {
    let t0 = epoch();
    let a: SocketAddr = "192.0.2.1:9000".parse().expect("addr");
    let mut listener = Listener::new(listener_cfg, [7; 16], t0);
    let mut caller = Caller::new(caller_cfg, SocketId(9), a, SeqNumber::new(5), t0);
    let mut buf = Vec::new();
    let mut out = Vec::new();
    assert!(caller.poll_transmit(t0, &mut buf).is_some());
    assert_eq!(
        listener.handle_datagram(t0, a, &buf, &mut out),
        ListenerOutput::Reply
    );
    caller.handle_datagram(t0, a, &out);
    assert!(caller.poll_transmit(t0, &mut buf).is_some());
    (listener, caller, buf, (a, t0))
}

/// The listener refuses the caller's final request `request` for
/// `reason`, and the caller, reading the refusal, fails with `error`.
fn final_request_refused(
    (listener, caller): (&mut Listener, &mut Caller),
    (a, t0): (SocketAddr, Instant),
    request: &[u8],
    reason: RefuseReason,
    error: ConnectError,
) {
    let mut out = Vec::new();
    assert_eq!(
        listener.handle_datagram(t0, a, request, &mut out),
        ListenerOutput::Reply
    );
    let ext = handshake_ext::parse_datagram(&out).expect("refusal");
    assert_eq!((ext.kind, ext.reason), (ExtKind::Refuse, reason));
    caller.handle_datagram(t0, a, &out);
    assert_eq!(caller.poll_result(), Some(Err(error)));
}

#[test]
fn altering_the_response_body_fails_authentication() {
    // Someone on the path changes the listener's MSS in its response: the
    // Noise payload no longer matches the clear body.
    let run = run(
        Security::Code("1-x-y-z".into()),
        Security::Code("1-x-y-z".into()),
        1000,
        |d| {
            let is_resp = handshake_ext::parse_datagram(d).is_ok_and(|e| e.kind == ExtKind::Resp);
            if is_resp {
                d[HEADER_SIZE + 15] ^= 0x01;
            }
        },
    );
    assert_eq!(run.caller.err(), Some(ConnectError::AuthFailed));
}

#[test]
fn a_response_replayed_from_an_earlier_handshake_is_refused() {
    let psk = Security::PreSharedKey([5; 32]);
    let first = run(psk.clone(), psk.clone(), 1000, |_| {});
    keys_match(&first);
    let old_response = first.listener_sent.last().expect("response").clone();
    // A new attempt with the same ISN and socket ID: the attacker answers
    // its final request with the earlier connection's response.
    let second = run(psk.clone(), psk, 1000, |d| {
        if handshake_ext::parse_datagram(d).is_ok_and(|e| e.kind == ExtKind::Resp) {
            *d = old_response.clone();
        }
    });
    assert_eq!(second.caller.err(), Some(ConnectError::AuthFailed));
}

#[test]
fn stripping_the_init_is_refused_by_the_listener() {
    // A plain final request (what stripping the extension leaves) to a
    // secure listener: refused with a reason a caller of ours reports.
    let (mut listener, mut caller, buf, (a, t0)) = at_the_final_request(
        &config(Security::PreSharedKey([2; 32])),
        &config(Security::Plain),
    );
    assert_eq!(buf.len(), PLAIN_LEN);
    final_request_refused(
        (&mut listener, &mut caller),
        (a, t0),
        &buf,
        RefuseReason::PlainRefused,
        ConnectError::SecureRequired,
    );
}

/// Two connections from one secure handshake, wired back to back.
fn connected_pair() -> (Connection, Connection, Instant) {
    let psk = Security::PreSharedKey([3; 32]);
    let run = run(psk.clone(), psk.clone(), 1000, |_| {});
    let t0 = epoch();
    let cfg = Arc::new(config(psk));
    let c = Connection::new(run.caller.expect("caller"), cfg.clone(), t0);
    let l = Connection::new(run.listener.expect("listener"), cfg, t0);
    (c, l, t0)
}

/// Feeds `d` to `conn` through the borrowing entry point, or through the
/// one that opens it in place (in a copy, so the caller keeps `d`).
fn feed(conn: &mut Connection, in_place: bool, now: Instant, from: SocketAddr, d: &[u8]) {
    if in_place {
        let mut owned = d.to_vec();
        conn.handle_datagram_mut(now, from, &mut owned);
    } else {
        conn.handle_datagram(now, from, d);
    }
}

#[test]
fn a_secure_connection_seals_whole_datagrams_and_leaves_nothing_to_gather() {
    let (mut c, mut l, t0) = connected_pair();
    let c_addr = l.peer_addr();
    assert_eq!(c.write(&[9u8; 3000]), Ok(3000));
    let mut buf = Vec::new();
    let mut data = 0;
    for ms in 0..50 {
        let now = t0 + Duration::from_millis(ms);
        while let Some((t, payload)) = c.poll_transmit_gather(now, &mut buf) {
            assert_eq!(payload, None, "sealing needs the whole datagram");
            assert_eq!(buf.len(), t.size);
            data += usize::from(t.kind == crate::TransmitKind::Data);
            l.handle_datagram(now, c_addr, &buf);
        }
    }
    assert_eq!(data, 3);
    let mut got = [0u8; 3000];
    assert_eq!(l.read(&mut got), Ok(3000));
    assert!(got.iter().all(|&b| b == 9));
}

#[test]
fn sealed_packets_flow_replays_and_flips_are_dropped_and_counted() {
    // The same through both entry points: a driver that lends the datagram
    // and one that lets the connection decrypt it where it lies.
    for in_place in [false, true] {
        sealed_packets_through(in_place);
    }
}

fn sealed_packets_through(in_place: bool) {
    let (mut c, mut l, t0) = connected_pair();
    let c_addr = l.peer_addr();
    let marker = b"PLAINTEXT-MARKER-issue-11";
    let data: Vec<u8> = marker.iter().copied().cycle().take(4000).collect();
    assert_eq!(c.write(&data), Ok(4000));
    let mut buf = Vec::new();
    let mut sent = Vec::new();
    // The pacer spreads the packets out: step through 50 ms.
    for ms in 0..50 {
        let now = t0 + Duration::from_millis(ms);
        while let Some(t) = c.poll_transmit(now, &mut buf) {
            sent.push((t.kind, buf.clone()));
        }
    }
    assert!(sent.len() >= 3, "4000 bytes take several packets");
    for (_, d) in &sent {
        assert!(
            !d.windows(9).any(|w| w == b"PLAINTEXT"),
            "plaintext on the wire"
        );
    }
    // Every datagram with one bit flipped, then each genuine one twice.
    for (_, d) in &sent {
        for bit in [0usize, 100, 130, 8 * (d.len() - 1)] {
            let mut bad = d.clone();
            bad[bit / 8] ^= 1 << (bit % 8);
            feed(&mut l, in_place, t0, c_addr, &bad);
        }
    }
    let corrupted = 4 * sent.len() as u64;
    let t1 = t0 + Duration::from_millis(50);
    for (_, d) in &sent {
        feed(&mut l, in_place, t1, c_addr, d);
        feed(&mut l, in_place, t1, c_addr, d);
    }
    let s = l.stats();
    // A flip in the header's first word can make the datagram look like a
    // handshake (unsealed, ignored as stray) instead; all others count.
    assert!(
        s.dropped.unauthenticated + s.dropped.stray_handshake >= corrupted - sent.len() as u64,
        "in place {in_place}: {:?}",
        s.dropped
    );
    assert_eq!(s.dropped.replayed, sent.len() as u64);
    let mut out = vec![0u8; 8000];
    assert_eq!(l.read(&mut out), Ok(4000));
    assert_eq!(&out[..4000], &data[..]);
}

#[test]
fn a_wrong_code_ends_the_listeners_connection_at_once() {
    // The listener cannot check a code (NNpsk2 mixes it in message 2), so
    // it accepts; the caller fails on message 2 and sends a refusal to the
    // listener's new socket, which ends the not yet confirmed connection.
    let run = run(
        Security::Code("4-acorn-bison-cedar".into()),
        Security::Code("4-acorn-bison-cedra".into()),
        1000,
        |_| {},
    );
    assert_eq!(run.caller.err(), Some(ConnectError::AuthFailed));
    let refusal = run.caller_sent.last().expect("refusal").clone();
    assert!(handshake_ext::is_auth_refusal(&refusal));
    let params = run.listener.expect("listener accepted");
    let t0 = epoch();
    let caller_addr = params.peer_addr;
    let cfg = Arc::new(config(Security::Code("4-acorn-bison-cedra".into())));
    let mut l = Connection::new(params, cfg, t0);
    l.handle_datagram(t0, caller_addr, &refusal);
    assert_eq!(
        l.state(),
        crate::connection::State::Closed(crate::ConnectionError::AuthFailed)
    );
}

#[test]
fn a_refusal_after_an_authentic_packet_changes_nothing() {
    // Once the caller's first sealed packet authenticated, the keys are
    // confirmed: a refusal (forged, or replayed from the path) is ignored.
    let (mut c, mut l, t0) = connected_pair();
    let c_addr = l.peer_addr();
    let mut refusal = Vec::new();
    Handshake {
        version: 4,
        socket_type: 1,
        isn: SeqNumber::new(1000),
        mss: 1500,
        flow_window: 8192,
        req_type: crate::packet::ReqType::Rejected,
        socket_id: c.local_id,
        cookie: 0,
        peer_ip: crate::packet::PeerIp::from_addr(c_addr.ip()),
    }
    .encode(0, l.local_id, &mut refusal);
    handshake_ext::write(
        &mut refusal,
        ExtKind::Refuse,
        Some(handshake_ext::Method::PreSharedKey),
        Some(RefuseReason::AuthFailed),
        &[],
    );
    assert_eq!(c.write(b"hello"), Ok(5));
    let mut buf = Vec::new();
    let mut delivered = 0;
    for ms in 0..20 {
        let now = t0 + Duration::from_millis(ms);
        while c.poll_transmit(now, &mut buf).is_some() {
            l.handle_datagram(now, c_addr, &buf);
            delivered += 1;
        }
    }
    assert!(delivered > 0);
    l.handle_datagram(t0 + Duration::from_millis(20), c_addr, &refusal);
    assert_eq!(l.state(), crate::connection::State::Connected);
    let mut out = [0u8; 16];
    assert_eq!(l.read(&mut out), Ok(5));
}
