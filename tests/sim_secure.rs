//! Secure mode (issue 11) through the simulator: transfers per
//! authentication method through loss, corruption and duplication; wrong
//! keys, wrong codes and downgrades refused on both sides; forged,
//! corrupted and replayed packets dropped and counted without harm.

mod common;

use std::time::Duration;

use common::{init_logs, link, stream_transfer, Pair};
use udt_core::handshake::ConnectError;
use udt_core::packet::{Control, ControlPacket, Packet};
use udt_core::secure::{generate_keypair, public_key};
use udt_core::sim::{LinkConfig, Loss};
use udt_core::{Config, PeerIdentity, ReadError, Security, SocketId, SocketType};

fn config(security: Security) -> Config {
    let mut c = Config::default();
    c.security = security;
    c
}

fn lossy() -> LinkConfig {
    LinkConfig {
        corrupt: 0.01,
        duplicate: 0.01,
        ..link(50, Duration::from_millis(10), Loss::Bernoulli(0.02))
    }
}

fn clean() -> LinkConfig {
    link(100, Duration::from_millis(5), Loss::None)
}

/// Connects A (caller, `a`) to B (listener, `b`) and moves 4 MiB through
/// the lossy link; returns the pair and both socket IDs after checking
/// every byte.
fn secure_transfer(seed: u64, a: Security, b: Security) -> (Pair, SocketId, SocketId) {
    init_logs();
    let mut p = Pair::with_configs(seed, lossy(), lossy(), config(a), config(b));
    let (ia, ib) = p.connect();
    let report = stream_transfer(
        &mut p.sim,
        (p.a, ia),
        (p.b, ib),
        4 * 1024 * 1024,
        Duration::from_secs(120),
    );
    assert!(
        report.sender.packets_retransmitted > 0,
        "seed={seed}: no loss?"
    );
    for (node, id) in [(p.a, ia), (p.b, ib)] {
        let c = p.sim.node(node).connection(id).expect("connection");
        assert!(c.is_secure());
    }
    // The link corrupted and duplicated packets: the receiver dropped
    // them as unauthenticated or replayed, and the data is still whole.
    let r = report.receiver.dropped;
    assert!(
        r.unauthenticated > 0 && r.replayed > 0,
        "seed={seed}: corrupted/duplicated packets not counted: {r:?}"
    );
    (p, ia, ib)
}

#[test]
fn psk_transfer_through_loss_corruption_and_duplication() {
    let key = [0x5A; 32];
    let (p, ia, ib) = secure_transfer(
        0x5EC1,
        Security::PreSharedKey(key),
        Security::PreSharedKey(key),
    );
    let c = p.sim.node(p.a).connection(ia).expect("A");
    assert_eq!(c.peer_identity(), Some(&PeerIdentity::PreSharedKey));
    let c = p.sim.node(p.b).connection(ib).expect("B");
    assert_eq!(c.peer_identity(), Some(&PeerIdentity::PreSharedKey));
}

#[test]
fn static_key_transfer_reports_the_pinned_identities() {
    let (a_priv, a_pub) = generate_keypair().expect("keypair");
    let (b_priv, b_pub) = generate_keypair().expect("keypair");
    assert_eq!(public_key(&a_priv), a_pub);
    let (p, ia, ib) = secure_transfer(
        0x5EC2,
        Security::StaticKeys {
            private_key: a_priv,
            peer_keys: vec![b_pub],
        },
        Security::StaticKeys {
            private_key: b_priv,
            peer_keys: vec![[9; 32], a_pub],
        },
    );
    let c = p.sim.node(p.a).connection(ia).expect("A");
    assert_eq!(c.peer_identity(), Some(&PeerIdentity::StaticKey(b_pub)));
    let c = p.sim.node(p.b).connection(ib).expect("B");
    assert_eq!(c.peer_identity(), Some(&PeerIdentity::StaticKey(a_pub)));
}

#[test]
fn code_transfer_normalises_case_and_spaces() {
    let (p, ia, _) = secure_transfer(
        0x5EC3,
        Security::Code(" 7-Amber-Falcon-River".into()),
        Security::Code("7-amber-falcon-river".into()),
    );
    let c = p.sim.node(p.a).connection(ia).expect("A");
    assert_eq!(c.peer_identity(), Some(&PeerIdentity::Code));
}

#[test]
fn secure_message_mode_with_ttl_and_out_of_order() {
    init_logs();
    let security = Security::Code("3-dune-otter-maple".into());
    let cfg = config(security).with_socket_type(SocketType::Message);
    let mut p = Pair::new(0x5EC4, lossy(), lossy(), cfg);
    let (ia, ib) = p.connect();
    let payload_size = p.sim.node(p.a).connection(ia).expect("A").payload_size();
    // The seal's 24 bytes come out of the payload, rounded down to whole
    // AES blocks: a full sealed data packet still fits the MSS.
    assert_eq!(payload_size, (1500 - 44 - 24) / 16 * 16);
    let count = 200u32;
    let mut sent = 0u32;
    let mut got = Vec::new();
    let mut buf = Vec::new();
    let (a, b) = (p.a, p.b);
    p.sim
        .run_until(
            |sim| {
                let now = sim.now();
                while sent < count {
                    // 1..~6 packets per message, every byte derived from
                    // its index.
                    let len = 4 + (sent as usize * 131) % 8000;
                    let mut msg = sent.to_le_bytes().to_vec();
                    msg.extend((4..len).map(|k| (k as u32 ^ sent) as u8));
                    let r = sim.node_mut(a).with_connection(ia, |c| {
                        c.send_msg(
                            now,
                            &msg,
                            Some(Duration::from_secs(60)),
                            sent.is_multiple_of(2),
                        )
                    });
                    match r {
                        Some(Ok(())) => sent += 1,
                        _ => break,
                    }
                }
                sim.poke(a);
                while let Some(Ok(_)) = sim
                    .node_mut(b)
                    .with_connection(ib, |c| c.recv_msg_into(&mut buf))
                {
                    let i = u32::from_le_bytes(buf[..4].try_into().expect("4 bytes"));
                    let len = 4 + (i as usize * 131) % 8000;
                    assert_eq!(buf.len(), len, "message {i} length");
                    for (k, &byte) in buf.iter().enumerate().skip(4) {
                        assert_eq!(byte, (k as u32 ^ i) as u8, "message {i} byte {k}");
                    }
                    got.push(i);
                }
                sim.poke(b);
                got.len() == count as usize
            },
            Duration::from_secs(300),
        )
        .expect("all messages arrive");
    got.sort_unstable();
    assert_eq!(got, (0..count).collect::<Vec<_>>());
}

/// Starts a connect from A (config `a`) to B listening with `b`; runs until
/// the attempt fails and returns its error and B's endpoint counters.
fn refused(a: Security, b: Security) -> (ConnectError, u64, usize) {
    init_logs();
    let mut p = Pair::with_configs(0x5EC5, clean(), clean(), config(a), config(b));
    let now = p.sim.now();
    p.sim.node_mut(p.b).listen(now);
    let id = p.sim.node_mut(p.a).connect(now, p.b_addr);
    p.sim.poke(p.a);
    let (na, nb) = (p.a, p.b);
    let mut accepted = 0;
    p.sim
        .run_until(
            |sim| {
                while sim.node_mut(nb).accept().is_some() {
                    accepted += 1;
                }
                sim.node(na).connect_error(id).is_some()
            },
            // Well under the 3 s connect timeout: refusals are fast.
            Duration::from_millis(500),
        )
        .expect("the attempt fails fast");
    let err = p.sim.node(na).connect_error(id).expect("failed");
    let refused = p.sim.node_mut(nb).endpoint().counters().secure_refused;
    (err, refused, accepted)
}

#[test]
fn wrong_psk_is_refused_on_both_sides() {
    let (err, refused, accepted) = refused(
        Security::PreSharedKey([1; 32]),
        Security::PreSharedKey([2; 32]),
    );
    assert_eq!(err, ConnectError::AuthFailed);
    assert_eq!(refused, 1, "the listener counts the refusal");
    assert_eq!(accepted, 0);
}

#[test]
fn static_key_not_in_the_list_is_refused() {
    let (a_priv, _) = generate_keypair().expect("keypair");
    let (b_priv, b_pub) = generate_keypair().expect("keypair");
    let (err, refused, accepted) = refused(
        Security::StaticKeys {
            private_key: a_priv,
            peer_keys: vec![b_pub],
        },
        Security::StaticKeys {
            private_key: b_priv,
            peer_keys: vec![[7; 32]],
        },
    );
    assert_eq!(err, ConnectError::AuthFailed);
    assert_eq!((refused, accepted), (1, 0));
}

#[test]
fn wrong_listener_key_is_refused_by_the_caller() {
    let (a_priv, _) = generate_keypair().expect("keypair");
    let (b_priv, _) = generate_keypair().expect("keypair");
    let (_, other_pub) = generate_keypair().expect("keypair");
    let (err, ..) = refused(
        Security::StaticKeys {
            private_key: a_priv,
            peer_keys: vec![other_pub],
        },
        Security::StaticKeys {
            private_key: b_priv,
            peer_keys: vec![public_key(&a_priv)],
        },
    );
    assert_eq!(err, ConnectError::AuthFailed);
}

#[test]
fn wrong_code_fails_fast() {
    let (err, _, _) = refused(
        Security::Code("1-amber-falcon-river".into()),
        Security::Code("2-amber-falcon-river".into()),
    );
    assert_eq!(err, ConnectError::AuthFailed);
}

#[test]
fn secure_caller_refuses_a_plain_listener() {
    let (err, _, accepted) = refused(Security::Code("1-a-b-c".into()), Security::Plain);
    assert_eq!(err, ConnectError::PeerNotSecure);
    assert_eq!(accepted, 0, "nothing was connected in plain mode");
}

#[test]
fn secure_listener_refuses_a_plain_caller() {
    let (err, _, accepted) = refused(Security::Plain, Security::PreSharedKey([3; 32]));
    assert_eq!(err, ConnectError::SecureRequired);
    assert_eq!(accepted, 0);
}

#[test]
fn method_mismatch_is_refused() {
    let (err, _, accepted) = refused(
        Security::PreSharedKey([3; 32]),
        Security::Code("1-a-b-c".into()),
    );
    assert_eq!(err, ConnectError::SecurityMismatch);
    assert_eq!(accepted, 0);
}

/// A rendezvous between A (`a`) and B (`b`), B starting `late` after A,
/// both through `l`; runs until both connected or one failed for good
/// (A's or B's handshake failed, or a connection ended), at most 40 s.
fn secure_rendezvous(
    seed: u64,
    a: Security,
    b: Security,
    late: Duration,
    l: LinkConfig,
) -> (Pair, SocketId, SocketId) {
    init_logs();
    let mut p = Pair::with_configs(seed, l.clone(), l, config(a), config(b));
    let now = p.sim.now();
    let (a_addr, b_addr) = (p.a_addr, p.b_addr);
    let ida = p.sim.node_mut(p.a).rendezvous(now, b_addr);
    p.sim.poke(p.a);
    p.sim.run_for(late);
    let now = p.sim.now();
    let idb = p.sim.node_mut(p.b).rendezvous(now, a_addr);
    p.sim.poke(p.b);
    let (na, nb) = (p.a, p.b);
    let ended = |sim: &udt_core::sim::Sim<udt_core::sim::UdtNode>, node, id| {
        sim.node(node).connect_error(id).is_some()
            || sim
                .node(node)
                .connection(id)
                .is_some_and(|c| c.state() != udt_core::connection::State::Connected)
    };
    p.sim
        .run_until(
            |sim| {
                (sim.node(na).is_connected(ida) && sim.node(nb).is_connected(idb))
                    || ended(sim, na, ida)
                    || ended(sim, nb, idb)
            },
            Duration::from_secs(40),
        )
        .unwrap_or_else(|e| panic!("seed={seed}: rendezvous neither completed nor failed: {e}"));
    (p, ida, idb)
}

#[test]
fn secure_rendezvous_per_method_through_loss_then_a_transfer() {
    let (ka, pa) = generate_keypair().expect("keypair");
    let (kb, pb) = generate_keypair().expect("keypair");
    let methods = [
        (
            Security::Code("7-amber-falcon-river".into()),
            Security::Code("7-amber-falcon-river".into()),
        ),
        (
            Security::PreSharedKey([4; 32]),
            Security::PreSharedKey([4; 32]),
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
        ),
    ];
    for (i, (a, b)) in methods.into_iter().enumerate() {
        for (seed, late) in [(0x5EC6 + i as u64, 0), (0x5EC9 + i as u64, 700)] {
            let (mut p, ida, idb) = secure_rendezvous(
                seed,
                a.clone(),
                b.clone(),
                Duration::from_millis(late),
                lossy(),
            );
            for (node, id) in [(p.a, ida), (p.b, idb)] {
                let c = p.sim.node(node).connection(id).expect("connected");
                assert!(c.is_secure() && c.is_rendezvous(), "seed={seed}");
            }
            let (na, nb) = (p.a, p.b);
            stream_transfer(
                &mut p.sim,
                (na, ida),
                (nb, idb),
                1 << 20,
                Duration::from_secs(120),
            );
        }
    }
}

#[test]
fn secure_rendezvous_with_a_wrong_code_fails_on_both_sides_within_a_second() {
    for seed in [0x5ECA, 0x5ECB, 0x5ECC] {
        let (p, ida, idb) = secure_rendezvous(
            seed,
            Security::Code("7-amber-falcon-river".into()),
            Security::Code("7-amber-falcon-rivet".into()),
            Duration::ZERO,
            clean(),
        );
        let start = p.sim.now();
        let mut p = p;
        let (na, nb) = (p.a, p.b);
        // The first side has failed; the other follows at once: its
        // handshake fails or its unconfirmed connection ends.
        let failed = |sim: &udt_core::sim::Sim<udt_core::sim::UdtNode>, node, id| {
            sim.node(node).connect_error(id) == Some(ConnectError::AuthFailed)
                || sim.node(node).connection(id).is_some_and(|c| {
                    c.state()
                        == udt_core::connection::State::Closed(
                            udt_core::ConnectionError::AuthFailed,
                        )
                })
        };
        p.sim
            .run_until(
                |sim| failed(sim, na, ida) && failed(sim, nb, idb),
                Duration::from_secs(1),
            )
            .unwrap_or_else(|e| panic!("seed={seed}: both sides did not fail: {e}"));
        assert!(p.sim.now() - start < Duration::from_secs(1));
    }
}

#[test]
fn secure_rendezvous_refuses_a_plain_peer() {
    let (p, ida, _) = secure_rendezvous(
        0x5ECD,
        Security::PreSharedKey([4; 32]),
        Security::Plain,
        Duration::ZERO,
        clean(),
    );
    assert_eq!(
        p.sim.node(p.a).connect_error(ida),
        Some(ConnectError::PeerNotSecure)
    );
}

/// Plain control packets, as an attacker who knows the socket IDs and
/// spoofs A's address would send them.
fn forged(dest: SocketId, control: Control<'_>) -> Vec<u8> {
    let mut buf = Vec::new();
    Packet::Control(ControlPacket {
        timestamp: 0,
        dest,
        control,
    })
    .encode(&mut buf);
    buf
}

#[test]
fn spoofed_shutdown_and_keepalives_do_nothing_to_a_secure_connection() {
    init_logs();
    let key = [0x11; 32];
    let cfg = config(Security::PreSharedKey(key));
    let mut p = Pair::new(0x5EC7, clean(), clean(), cfg);
    let (ia, ib) = p.connect();
    let b_conn = p.sim.node(p.b).connection(ib).expect("B");
    let a_sid = b_conn.peer_socket_id();
    let heard_before = b_conn.last_heard();
    p.sim.run_for(Duration::from_millis(50));
    // A forged shutdown (plain, and with random bytes where the seal goes)
    // and a forged keep-alive, all from A's address.
    let mut sealed_looking = forged(ib, Control::Shutdown);
    sealed_looking.extend_from_slice(&[0xAB; 24]);
    let now = p.sim.now();
    let from = p.a_addr;
    p.sim.node_mut(p.b).with_connection(ib, |c| {
        c.handle_datagram(now, from, &forged(ib, Control::Shutdown));
        c.handle_datagram(now, from, &sealed_looking);
        c.handle_datagram(now, from, &forged(ib, Control::KeepAlive));
    });
    let c = p.sim.node(p.b).connection(ib).expect("B");
    assert!(!c.is_closed(), "a forged shutdown closed the connection");
    assert_eq!(c.stats().dropped.unauthenticated, 3);
    assert!(c.last_heard() >= heard_before);
    assert_ne!(a_sid, SocketId(0));
    // The connection still works both ways.
    let report = stream_transfer(
        &mut p.sim,
        (p.a, ia),
        (p.b, ib),
        256 * 1024,
        Duration::from_secs(30),
    );
    assert_eq!(report.bytes, 256 * 1024);
    let mut buf = [0u8; 16];
    let r = p
        .sim
        .node_mut(p.b)
        .with_connection(ib, |c| c.read(&mut buf))
        .expect("B");
    assert_eq!(r, Ok(0), "the real close is a clean end of stream");
    let _ = ReadError::WouldBlock;
}

#[test]
fn a_replayed_final_request_opens_no_second_connection() {
    use std::time::Instant;
    use udt_core::endpoint::{DatagramEvent, Endpoint};
    init_logs();
    let psk = Security::PreSharedKey([0x42; 32]);
    let cfg = std::sync::Arc::new(config(psk));
    let a_addr: std::net::SocketAddr = "192.0.2.1:9000".parse().expect("addr");
    let b_addr: std::net::SocketAddr = "198.51.100.7:9000".parse().expect("addr");
    let t0 = Instant::now();
    let mut listener = Endpoint::new(1);
    listener.listen(t0, cfg.clone(), 8).expect("listen");
    let mut caller = Endpoint::new(2);
    let (_, mut socket) = caller.connect(t0, b_addr, cfg);
    let mut sent = Vec::new();
    let mut buf = Vec::new();
    let mut reply = Vec::new();
    let mut accepted = Vec::new();
    for step in 0..4u64 {
        let now = t0 + Duration::from_millis(step);
        while socket.poll_transmit(now, &mut buf).is_some() {
            sent.push(buf.clone());
            match listener.handle(now, a_addr, &buf, &mut reply) {
                DatagramEvent::Respond => {
                    let _ = socket.handle_datagram(now, b_addr, &reply);
                }
                DatagramEvent::Accepted { handle, socket: s } => {
                    accepted.push((handle, s));
                    let _ = socket.handle_datagram(now, b_addr, &reply);
                }
                _ => {}
            }
        }
    }
    assert!(socket.connection_ref().is_some_and(|c| c.is_secure()));
    assert_eq!(accepted.len(), 1);
    let final_request = sent
        .iter()
        .find(|d| d.len() > 64)
        .expect("the final request carries the extension")
        .clone();
    // The connection ends and is forgotten; the recorded final request is
    // replayed from the caller's address while its cookie is still valid.
    let now = t0 + Duration::from_secs(5);
    let (handle, s) = accepted.pop().expect("one");
    listener.remove(now, handle, &s);
    let event = listener.handle(now, a_addr, &final_request, &mut reply);
    assert!(
        !matches!(event, DatagramEvent::Accepted { .. }),
        "a replay opened a connection: {event:?}"
    );
    assert_eq!(listener.counters().secure_replays, 1);
}

#[test]
fn a_finished_secure_connection_answers_late_packets_with_a_sealed_shutdown() {
    use std::time::Instant;
    use udt_core::endpoint::{DatagramEvent, Endpoint};
    use udt_core::ConnectionError;
    init_logs();
    let cfg = std::sync::Arc::new(config(Security::Code("8-a-b-c".into())));
    let a_addr: std::net::SocketAddr = "192.0.2.1:9000".parse().expect("addr");
    let b_addr: std::net::SocketAddr = "198.51.100.7:9000".parse().expect("addr");
    let t0 = Instant::now();
    let mut listener = Endpoint::new(1);
    listener.listen(t0, cfg.clone(), 8).expect("listen");
    let mut caller = Endpoint::new(2);
    let (_, mut socket) = caller.connect(t0, b_addr, cfg);
    let (mut buf, mut reply) = (Vec::new(), Vec::new());
    let mut accepted = None;
    for step in 0..4u64 {
        let now = t0 + Duration::from_millis(step);
        while socket.poll_transmit(now, &mut buf).is_some() {
            match listener.handle(now, a_addr, &buf, &mut reply) {
                DatagramEvent::Respond => {
                    let _ = socket.handle_datagram(now, b_addr, &reply);
                }
                DatagramEvent::Accepted { handle, socket: s } => {
                    accepted = Some((handle, s));
                    let _ = socket.handle_datagram(now, b_addr, &reply);
                }
                _ => {}
            }
        }
    }
    let (handle, mut b) = accepted.expect("accepted");
    // B closes; its shutdown is lost; B's endpoint forgets the connection.
    let now = t0 + Duration::from_millis(10);
    let conn = b.connection().expect("B's connection");
    conn.close(now);
    while conn.poll_transmit(now, &mut buf).is_some() {}
    assert!(b.is_finished());
    listener.remove(now, handle, &b);
    // A still sends: B's endpoint answers with a shutdown sealed under the
    // finished connection's key, which A authenticates and obeys.
    let a = socket.connection().expect("A's connection");
    assert_eq!(a.write(b"late"), Ok(4));
    let now = t0 + Duration::from_millis(100);
    let mut answered = 0;
    while a.poll_transmit(now, &mut buf).is_some() {
        if let DatagramEvent::Respond = listener.handle(now, a_addr, &buf, &mut reply) {
            answered += 1;
            a.handle_datagram(now, b_addr, &reply);
        }
    }
    assert_eq!(answered, 1);
    assert_eq!(a.stats().dropped.unauthenticated, 0);
    assert_eq!(
        a.state(),
        udt_core::State::Closed(ConnectionError::PeerClosed)
    );
}
