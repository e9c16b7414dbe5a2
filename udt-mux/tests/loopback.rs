//! Connection set-up, close and failure over real UDP sockets on 127.0.0.1.

mod common;

use std::io::{self, Read, Write};
use std::net::UdpSocket;
use std::time::{Duration, Instant};

use common::{bind, bind_at, config, init, pattern, spawn, Relay};
use udt_mux::{Config, ConnectError, Endpoint, UdtStream};

/// Reads exactly `want.len()` bytes and checks them.
fn expect_bytes(stream: &mut UdtStream, want: &[u8]) {
    let mut got = vec![0u8; want.len()];
    stream.read_exact(&mut got).expect("read_exact");
    assert!(got == want, "payload differs");
}

#[test]
fn one_port_carries_listener_accepted_and_outgoing_connections() {
    init();
    let hub = bind(config());
    let hub_listener = hub.listen(8).unwrap();
    let other = bind(config());
    let other_listener = other.listen(8).unwrap();
    let third = bind(config());

    // Outgoing from the hub's port, and two incoming to it.
    let mut out = hub.connect(other.local_addr()).unwrap();
    let mut in_from_other = other.connect(hub.local_addr()).unwrap();
    let mut in_from_third = third.connect(hub.local_addr()).unwrap();
    let (mut out_peer, _) = other_listener.accept().unwrap();
    let mut accepted = Vec::new();
    for _ in 0..2 {
        accepted.push(hub_listener.accept().unwrap());
    }
    assert_eq!(out.local_addr(), hub.local_addr());
    assert_eq!(out_peer.peer_addr(), hub.local_addr());
    assert_eq!(hub.stats().connections, 3);
    // Both incoming connections come from their endpoints' ports.
    let mut peers: Vec<_> = accepted.iter().map(|(_, a)| *a).collect();
    peers.sort();
    let mut want = vec![other.local_addr(), third.local_addr()];
    want.sort();
    assert_eq!(peers, want);

    // Traffic on all three at once, distinct per connection.
    out.write_all(&pattern(1, 300_000)).unwrap();
    in_from_other.write_all(&pattern(2, 300_000)).unwrap();
    in_from_third.write_all(&pattern(3, 300_000)).unwrap();
    expect_bytes(&mut out_peer, &pattern(1, 300_000));
    for (stream, addr) in &mut accepted {
        let seed = if *addr == other.local_addr() { 2 } else { 3 };
        expect_bytes(stream, &pattern(seed, 300_000));
        stream.write_all(&pattern(seed + 10, 1000)).unwrap();
    }
    expect_bytes(&mut in_from_other, &pattern(12, 1000));
    expect_bytes(&mut in_from_third, &pattern(13, 1000));
}

#[test]
fn rendezvous_between_two_endpoints() {
    init();
    let a = bind(config());
    let b = bind(config());
    let (a_addr, b_addr) = (a.local_addr(), b.local_addr());
    let t = spawn("rendezvous-b".into(), move || {
        let mut s = b.rendezvous(a_addr).expect("rendezvous from b");
        s.write_all(&pattern(20, 100_000)).unwrap();
        expect_bytes(&mut s, &pattern(21, 100_000));
        s.close().unwrap();
    });
    let mut s = a.rendezvous(b_addr).expect("rendezvous from a");
    assert_eq!(s.peer_addr(), b_addr);
    s.write_all(&pattern(21, 100_000)).unwrap();
    expect_bytes(&mut s, &pattern(20, 100_000));
    let mut rest = Vec::new();
    s.read_to_end(&mut rest).unwrap();
    assert!(rest.is_empty());
    t.join().unwrap();
    // A second rendezvous with the same peer on the same port is refused
    // while the first one exists.
    let again = a.rendezvous(b_addr).err();
    assert!(
        matches!(again, Some(ConnectError::RendezvousBusy { .. })),
        "{again:?}"
    );
}

#[test]
fn connect_to_a_port_without_listener_times_out_clearly() {
    init();
    // A bound UDP socket that never answers: nobody listens there.
    let silent = UdpSocket::bind("127.0.0.1:0").unwrap();
    let mut cfg = config();
    cfg.connect_timeout = Duration::from_millis(800);
    let client = bind(cfg);
    let start = Instant::now();
    let err = client.connect(silent.local_addr().unwrap()).unwrap_err();
    let took = start.elapsed();
    assert!(matches!(err, ConnectError::TimedOut { .. }), "{err:?}");
    assert!(
        took >= Duration::from_millis(800),
        "gave up early: {took:?}"
    );
    assert!(took < Duration::from_millis(2000), "gave up late: {took:?}");
    let text = err.to_string();
    assert!(
        text.contains(&silent.local_addr().unwrap().to_string()),
        "{text}"
    );
    let io: io::Error = err.into();
    assert_eq!(io.kind(), io::ErrorKind::TimedOut);
    // The caller sent its request every 250 ms (UDT4 cadence): 4 in 800 ms.
    let mut buf = [0u8; 128];
    silent.set_nonblocking(true).unwrap();
    let mut requests = 0;
    while silent.recv_from(&mut buf).is_ok() {
        requests += 1;
    }
    assert!((3..=5).contains(&requests), "{requests} requests");
}

#[test]
fn listener_with_full_backlog_rejects() {
    init();
    let server = bind(config());
    let _listener = server.listen(1).unwrap();
    let client = bind(config());
    let _first = client.connect(server.local_addr()).unwrap();
    let second = client.connect(server.local_addr()).unwrap_err();
    assert!(
        matches!(second, ConnectError::Rejected { .. }),
        "{second:?}"
    );
    assert_eq!(server.stats().handshakes_rejected, 1);
}

#[test]
fn orderly_close_delivers_everything_then_eof() {
    init();
    let server = bind(config());
    let listener = server.listen(4).unwrap();
    let client = bind(config());
    let mut stream = client.connect(server.local_addr()).unwrap();
    let (mut accepted, _) = listener.accept().unwrap();
    let data = pattern(7, 6 << 20);
    let writer = {
        let data = data.clone();
        spawn("writer".into(), move || {
            stream.write_all(&data).unwrap();
            // Blocks until the peer acknowledged every byte.
            stream.close()
        })
    };
    let mut got = Vec::with_capacity(data.len());
    accepted.read_to_end(&mut got).unwrap();
    assert_eq!(got.len(), data.len());
    assert!(got == data, "payload differs");
    // End of stream stays end of stream.
    assert_eq!(accepted.read(&mut [0u8; 16]).unwrap(), 0);
    writer.join().unwrap().expect("close reports success");
    // Writing to a connection the peer closed fails.
    let err = accepted.write_all(b"late").unwrap_err();
    assert_eq!(err.kind(), io::ErrorKind::BrokenPipe, "{err}");
}

#[test]
fn close_returns_only_after_the_shutdown_left() {
    // A process may exit right after `close()`: the shutdown must already be
    // on the wire, or the peer waits for its idle timeout. `abort()` stands
    // in for the exit: it discards anything not yet sent.
    // The peer reads while we close: close waits until the peer's
    // application has read everything (its ACKs report the buffer drained).
    init();
    for round in 0..10u64 {
        let (_server, mut accepted, client, mut stream) = pair(config());
        let data = pattern(round, 64 << 10);
        let reader = spawn(format!("reader-{round}"), move || {
            let mut got = Vec::new();
            let r = accepted.read_to_end(&mut got);
            (r, got)
        });
        stream.write_all(&data).unwrap();
        stream.close().expect("close reports success");
        client.abort();
        let (r, got) = reader.join().expect("reader thread");
        r.unwrap_or_else(|e| panic!("round {round}: the peer missed our shutdown: {e}"));
        assert!(got == data, "round {round}: payload differs");
    }
}

#[test]
fn dropped_stream_still_delivers_in_the_background() {
    init();
    let server = bind(config());
    let listener = server.listen(4).unwrap();
    let client = bind(config());
    let mut stream = client.connect(server.local_addr()).unwrap();
    let (mut accepted, _) = listener.accept().unwrap();
    let data = pattern(8, 1 << 20);
    stream.write_all(&data).unwrap();
    drop(stream);
    drop(client); // the endpoint lives on until the linger finishes
    let mut got = Vec::new();
    accepted.read_to_end(&mut got).unwrap();
    assert!(got == data, "payload differs");
}

/// A connected pair where the client side can be killed.
fn pair(cfg: Config) -> (Endpoint, UdtStream, Endpoint, UdtStream) {
    let server = bind(cfg.clone());
    let listener = server.listen(4).unwrap();
    let client = bind(cfg);
    let stream = client.connect(server.local_addr()).unwrap();
    let (accepted, _) = listener.accept().unwrap();
    (server, accepted, client, stream)
}

#[test]
fn data_after_a_quiet_spell_is_not_timed_out_as_it_leaves() {
    // 100 ms each way, so no answer can come back within 200 ms of a
    // packet. The quiet spell (600 ms, before any keep-alive) is the
    // scenario, not a wait for an event: the client last heard the server
    // at the handshake. The first data packet's retransmission timeout
    // (310 ms here) must count from the packet, not from the handshake,
    // or it expires the moment the packet leaves.
    init();
    let server = bind(config());
    let listener = server.listen(4).unwrap();
    let relay = Relay::start(server.local_addr(), Duration::from_millis(100), 0.0, 7);
    let client = bind(config());
    let mut stream = client.connect(relay.front).unwrap();
    let (mut accepted, _) = listener.accept().unwrap();
    std::thread::sleep(Duration::from_millis(600));
    let data = pattern(7, 20_000);
    stream.write_all(&data).unwrap();
    expect_bytes(&mut accepted, &data);
    let stats = stream.stats();
    assert_eq!(stats.timeouts, 0, "{stats:?}");
    assert_eq!(stats.packets_retransmitted, 0, "{stats:?}");
}

#[test]
fn peer_killed_blocked_read_fails_within_idle_timeout() {
    init();
    let idle = Duration::from_millis(1500);
    let mut cfg = config();
    cfg.peer_idle_timeout = idle;
    let (_server, accepted, client, _stream) = pair(cfg);
    let reader = spawn("blocked-reader".into(), move || {
        let mut accepted = accepted;
        let start = Instant::now();
        let r = accepted.read(&mut [0u8; 64]);
        (r, start.elapsed())
    });
    // Kill the peer: no shutdown, no more packets.
    client.abort();
    let (r, took) = reader.join().unwrap();
    let err = r.expect_err("read must fail once the peer is gone");
    assert_eq!(err.kind(), io::ErrorKind::TimedOut, "{err}");
    assert!(took >= idle - Duration::from_millis(100), "{took:?}");
    assert!(took < idle + Duration::from_secs(1), "{took:?}");
}

#[test]
fn peer_killed_blocked_write_fails_within_idle_timeout() {
    init();
    let idle = Duration::from_millis(1500);
    let mut cfg = config();
    cfg.peer_idle_timeout = idle;
    let (_server, accepted, client, _stream) = pair(cfg);
    client.abort();
    let start = Instant::now();
    // The peer never reads: the send buffer fills and the write blocks
    // until the connection is declared dead.
    let chunk = pattern(9, 1 << 20);
    let mut accepted = accepted;
    let err = loop {
        if let Err(e) = accepted.write_all(&chunk) {
            break e;
        }
        assert!(start.elapsed() < idle * 3, "writes never failed");
    };
    let took = start.elapsed();
    assert_eq!(err.kind(), io::ErrorKind::TimedOut, "{err}");
    assert!(took < idle + Duration::from_secs(1), "{took:?}");
    // The aborted side's own handles fail at once.
    let mut dead = _stream;
    assert_eq!(
        dead.read(&mut [0u8; 4]).unwrap_err().kind(),
        io::ErrorKind::ConnectionAborted
    );
}

#[test]
fn timeouts_and_nonblocking_mode() {
    init();
    let (_server, mut accepted, _client, mut stream) = pair(config());
    accepted.set_read_timeout(Some(Duration::from_millis(100)));
    let start = Instant::now();
    let err = accepted.read(&mut [0u8; 8]).unwrap_err();
    assert_eq!(err.kind(), io::ErrorKind::TimedOut);
    assert!(start.elapsed() >= Duration::from_millis(100));
    accepted.set_nonblocking(true);
    let err = accepted.read(&mut [0u8; 8]).unwrap_err();
    assert_eq!(err.kind(), io::ErrorKind::WouldBlock);
    stream.write_all(b"abc").unwrap();
    accepted.set_nonblocking(false);
    let mut buf = [0u8; 3];
    accepted.read_exact(&mut buf).unwrap();
    assert_eq!(&buf, b"abc");
    // A full send buffer: non-blocking writes stop with WouldBlock.
    stream.set_nonblocking(true);
    let chunk = vec![0u8; 1 << 16];
    let mut written = 0usize;
    let err = loop {
        match stream.write(&chunk) {
            Ok(n) => written += n,
            Err(e) => break e,
        }
        assert!(written < 64 << 20, "the send buffer never filled");
    };
    assert_eq!(err.kind(), io::ErrorKind::WouldBlock);
    assert!(written > 0);
}

#[test]
fn ipv6_endpoints_connect() {
    init();
    let Ok(server) = bind_at("[::1]:0", config()) else {
        eprintln!("no IPv6 loopback here: skipped");
        return;
    };
    let listener = server.listen(2).unwrap();
    let client = bind_at("[::1]:0", config()).unwrap();
    let mut s = client.connect(server.local_addr()).unwrap();
    let (mut a, peer) = listener.accept().unwrap();
    assert_eq!(peer, client.local_addr());
    s.write_all(b"six").unwrap();
    expect_bytes(&mut a, b"six");
}

#[test]
fn hostile_datagrams_are_counted_and_dropped() {
    init();
    let (server, mut accepted, _client, mut stream) = pair(config());
    let target = server.local_addr();
    let attacker = UdpSocket::bind("127.0.0.1:0").unwrap();
    let mut rng = udt_core::rng::Rng::new(99);
    let id = accepted.socket_id().0.to_be_bytes();
    for i in 0..5000u32 {
        let len = rng.below(200) as usize;
        let mut d: Vec<u8> = (0..len).map(|_| rng.next_u32() as u8).collect();
        match i % 4 {
            // A live connection's ID from the wrong address.
            0 if d.len() >= 16 => d[12..16].copy_from_slice(&id),
            // Handshake-looking garbage for the listener.
            1 if d.len() >= 16 => {
                d[0] = 0x80;
                d[1] = 0;
                d[12..16].copy_from_slice(&[0; 4]);
            }
            _ => {}
        }
        attacker.send_to(&d, target).unwrap();
    }
    // An oversized datagram (longer than any packet of the connection).
    let mut big = vec![0u8; 65_000];
    big[12..16].copy_from_slice(&id);
    attacker.send_to(&big, target).unwrap();
    // The connection still works.
    stream.write_all(&pattern(5, 200_000)).unwrap();
    expect_bytes(&mut accepted, &pattern(5, 200_000));
    let s = server.stats();
    eprintln!("{s:?}");
    assert!(s.malformed > 0);
    assert!(s.wrong_source > 0);
    assert!(s.unknown_destination > 0);
    assert_eq!(s.connections, 1);
}
