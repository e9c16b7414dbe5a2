//! The relay with plain UDP sockets on loopback: loss rate, delay, rate cap,
//! ordering with and without jitter, duplication, sessions, bounds, stop.
//!
//! Timing assertions leave room for a loaded 2-core CI machine: they check
//! that the impairment is there and roughly right, not microseconds.

use std::collections::HashSet;
use std::net::{SocketAddr, UdpSocket};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::thread;
use std::time::{Duration, Instant};

use udt_relay::{Impairment, Loss, Relay, RelayConfig};

/// A loopback socket with a large receive buffer, so that only the relay
/// drops datagrams even when the test thread is descheduled for a while.
fn udp() -> UdpSocket {
    let s = socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::DGRAM, None).unwrap();
    s.set_recv_buffer_size(4 << 20).unwrap();
    s.bind(&SocketAddr::from(([127, 0, 0, 1], 0)).into())
        .unwrap();
    let s: UdpSocket = s.into();
    s.set_read_timeout(Some(Duration::from_millis(20))).unwrap();
    s
}

/// Datagram with an index in its first 8 bytes, padded to `len`.
fn datagram(index: u64, len: usize) -> Vec<u8> {
    let mut d = vec![0xA5; len.max(8)];
    d[..8].copy_from_slice(&index.to_be_bytes());
    d
}

fn index_of(d: &[u8]) -> u64 {
    u64::from_be_bytes(d[..8].try_into().unwrap())
}

/// Receives until `quiet` passes without a datagram (or `limit` in all).
/// Returns (index, arrival time, length) per datagram.
fn collect(sock: &UdpSocket, quiet: Duration, limit: Duration) -> Vec<(u64, Instant, usize)> {
    let start = Instant::now();
    let mut last = Instant::now();
    let mut out = Vec::new();
    let mut buf = vec![0u8; 65_536];
    while start.elapsed() < limit && last.elapsed() < quiet {
        if let Ok((n, _)) = sock.recv_from(&mut buf) {
            last = Instant::now();
            out.push((index_of(&buf[..n]), last, n));
        }
    }
    out
}

/// Sends `count` datagrams of `len` bytes in bursts, pausing between bursts
/// so loopback socket buffers never overflow (only the relay may drop).
fn send_paced(sock: &UdpSocket, to: SocketAddr, count: u64, len: usize) {
    for i in 0..count {
        sock.send_to(&datagram(i, len), to).unwrap();
        if i % 100 == 99 {
            thread::sleep(Duration::from_millis(2));
        }
    }
}

fn start(config: RelayConfig) -> Relay {
    let relay = Relay::start(config).unwrap();
    assert!(relay.failure().is_none());
    relay
}

#[test]
fn transparent_round_trip_and_sessions() {
    let server = udp();
    let relay = start(RelayConfig::new(server.local_addr().unwrap()));
    let a = udp();
    let b = udp();
    let mut buf = [0u8; 2048];
    let mut upstream_sources = HashSet::new();
    for round in 0..50u64 {
        for (k, client) in [&a, &b].into_iter().enumerate() {
            let payload = datagram(round * 2 + k as u64, 100 + k * 50);
            client.send_to(&payload, relay.local_addr()).unwrap();
            let (n, from) = server.recv_from(&mut buf).expect("server receives");
            assert_eq!(&buf[..n], &payload[..]);
            upstream_sources.insert(from);
            // Echo, prefixed so the client can tell it came back.
            server.send_to(&buf[..n], from).unwrap();
            let (n, back_from) = client.recv_from(&mut buf).expect("client gets the answer");
            assert_eq!(back_from, relay.local_addr());
            assert_eq!(&buf[..n], &payload[..], "answer routed to the right client");
        }
    }
    // One upstream-facing socket per client.
    assert_eq!(upstream_sources.len(), 2);
    let stats = relay.stop();
    assert_eq!(stats.sessions_opened, 2);
    assert_eq!(stats.to_upstream.forwarded, 100);
    assert_eq!(stats.to_client.forwarded, 100);
    assert_eq!(stats.to_upstream.dropped() + stats.to_client.dropped(), 0);
}

#[test]
fn random_loss_rate_within_tolerance() {
    let sink = udp();
    let relay = start(
        RelayConfig {
            seed: 42,
            ..RelayConfig::new(sink.local_addr().unwrap())
        }
        .with_both(Impairment {
            loss: Loss::Random(0.05),
            ..Impairment::default()
        }),
    );
    let client = udp();
    let n = 20_000;
    // No quiet gap decides when the sink is done (a loaded machine can
    // starve either thread for longer than any gap): the sink reads until
    // it has what the relay says it forwarded, once the relay has handled
    // every datagram.
    let target = Arc::new(AtomicU64::new(u64::MAX));
    let deadline = Instant::now() + Duration::from_secs(30);
    let sink_target = target.clone();
    let sink_thread = thread::spawn(move || {
        let mut got = Vec::new();
        let mut buf = [0u8; 2048];
        while (got.len() as u64) < sink_target.load(Ordering::Acquire) && Instant::now() < deadline
        {
            if let Ok((len, _)) = sink.recv_from(&mut buf) {
                got.push(index_of(&buf[..len]));
            }
        }
        got
    });
    send_paced(&client, relay.local_addr(), n, 64);
    let handled = |s: &udt_relay::RelayStats| {
        let u = &s.to_upstream;
        u.received == n && u.forwarded + u.dropped() + u.send_errors == n
    };
    while !handled(&relay.stats()) && Instant::now() < deadline {
        thread::sleep(Duration::from_millis(10));
    }
    target.store(relay.stats().to_upstream.forwarded, Ordering::Release);
    let got = sink_thread.join().unwrap();
    let stats = relay.stop();
    assert_eq!(stats.to_upstream.received, n);
    let lost = stats.to_upstream.dropped_loss;
    // 5 % of 20 000 = 1000, sd ≈ 31.
    assert!((850..1150).contains(&lost), "lost {lost}");
    assert_eq!(
        got.len() as u64,
        n - lost,
        "only the model may drop: {:?}",
        stats.to_upstream
    );
    assert_eq!(stats.to_upstream.forwarded, n - lost);
}

#[test]
fn same_seed_same_losses_other_seed_other_losses() {
    let run = |seed: u64| -> Vec<u64> {
        let sink = udp();
        let relay = start(
            RelayConfig {
                seed,
                ..RelayConfig::new(sink.local_addr().unwrap())
            }
            .with_both(Impairment {
                loss: Loss::bursty(0.1, 3.0),
                ..Impairment::default()
            }),
        );
        let client = udp();
        let sink_thread = thread::spawn(move || {
            collect(&sink, Duration::from_millis(300), Duration::from_secs(20))
        });
        send_paced(&client, relay.local_addr(), 2000, 32);
        let mut got: Vec<u64> = sink_thread.join().unwrap().iter().map(|d| d.0).collect();
        got.sort_unstable();
        got
    };
    let a = run(9);
    assert_eq!(a, run(9));
    assert_ne!(a, run(10));
}

#[test]
fn delay_is_applied_each_way() {
    let server = udp();
    let relay = start(RelayConfig {
        to_upstream: Impairment {
            delay: Duration::from_millis(30),
            ..Impairment::default()
        },
        to_client: Impairment {
            delay: Duration::from_millis(20),
            ..Impairment::default()
        },
        ..RelayConfig::new(server.local_addr().unwrap())
    });
    let client = udp();
    client
        .set_read_timeout(Some(Duration::from_secs(2)))
        .unwrap();
    server
        .set_read_timeout(Some(Duration::from_secs(2)))
        .unwrap();
    let mut rtts = Vec::new();
    let mut one_way = Vec::new();
    let mut buf = [0u8; 64];
    for i in 0..20 {
        let sent = Instant::now();
        client
            .send_to(&datagram(i, 16), relay.local_addr())
            .unwrap();
        let (n, from) = server.recv_from(&mut buf).unwrap();
        one_way.push(sent.elapsed());
        server.send_to(&buf[..n], from).unwrap();
        client.recv_from(&mut buf).unwrap();
        rtts.push(sent.elapsed());
    }
    rtts.sort();
    one_way.sort();
    assert!(one_way[0] >= Duration::from_millis(30), "{one_way:?}");
    assert!(rtts[0] >= Duration::from_millis(50), "{rtts:?}");
    // Median within a few ms of the target: the precise wait works.
    assert!(one_way[10] < Duration::from_millis(34), "{one_way:?}");
    assert!(rtts[10] < Duration::from_millis(56), "{rtts:?}");
}

#[test]
fn rate_cap_paces_and_bounded_queue_drops_tail() {
    // 8 Mbit/s: each 972-byte datagram (1000 bytes on the wire) takes 1 ms.
    let sink = udp();
    let relay = start(
        RelayConfig::new(sink.local_addr().unwrap()).with_both(Impairment {
            rate_bps: Some(8_000_000),
            queue_bytes: 1 << 20,
            ..Impairment::default()
        }),
    );
    let client = udp();
    let sink_thread =
        thread::spawn(move || collect(&sink, Duration::from_millis(300), Duration::from_secs(10)));
    let t0 = Instant::now();
    for i in 0..300 {
        client
            .send_to(&datagram(i, 972), relay.local_addr())
            .unwrap();
    }
    let got = sink_thread.join().unwrap();
    assert_eq!(got.len(), 300);
    let span = got.last().unwrap().1 - t0;
    assert!(span >= Duration::from_millis(295), "{span:?}");
    assert!(span < Duration::from_millis(400), "{span:?}");
    drop(relay);

    // Now a 20 000-byte queue: a burst of 300 keeps only about 20.
    let sink = udp();
    let relay = start(
        RelayConfig::new(sink.local_addr().unwrap()).with_both(Impairment {
            rate_bps: Some(8_000_000),
            queue_bytes: 20_000,
            ..Impairment::default()
        }),
    );
    let sink_thread =
        thread::spawn(move || collect(&sink, Duration::from_millis(300), Duration::from_secs(10)));
    for i in 0..300 {
        client
            .send_to(&datagram(i, 972), relay.local_addr())
            .unwrap();
    }
    let got = sink_thread.join().unwrap();
    let stats = relay.stop();
    assert_eq!(stats.to_upstream.dropped_queue + got.len() as u64, 300);
    // The sender is faster than 1 ms per datagram, so most of the burst is
    // refused; a descheduled sender lets a few more through.
    assert!(got.len() >= 20 && got.len() < 120, "{}", got.len());
}

#[test]
fn order_kept_without_jitter_and_shuffled_with_it() {
    let run = |jitter_ms: u64| -> Vec<u64> {
        let sink = udp();
        let relay = start(
            RelayConfig::new(sink.local_addr().unwrap()).with_both(Impairment {
                delay: Duration::from_millis(5),
                jitter: Duration::from_millis(jitter_ms),
                ..Impairment::default()
            }),
        );
        let client = udp();
        let sink_thread = thread::spawn(move || {
            collect(&sink, Duration::from_millis(300), Duration::from_secs(10))
        });
        send_paced(&client, relay.local_addr(), 2000, 100);
        let got: Vec<u64> = sink_thread.join().unwrap().iter().map(|d| d.0).collect();
        let stats = relay.stop();
        assert_eq!(got.len(), 2000, "{:?}", stats.to_upstream);
        got
    };
    let plain = run(0);
    assert_eq!(plain, (0..2000).collect::<Vec<_>>());
    let jittered = run(5);
    let inversions = jittered.windows(2).filter(|w| w[1] < w[0]).count();
    assert!(inversions > 50, "inversions {inversions}");
    let mut sorted = jittered.clone();
    sorted.sort_unstable();
    assert_eq!(
        sorted,
        (0..2000).collect::<Vec<_>>(),
        "nothing lost or repeated"
    );
}

#[test]
fn duplication_rate() {
    let sink = udp();
    let relay = start(
        RelayConfig::new(sink.local_addr().unwrap()).with_both(Impairment {
            duplicate: 0.1,
            ..Impairment::default()
        }),
    );
    let client = udp();
    let sink_thread =
        thread::spawn(move || collect(&sink, Duration::from_millis(300), Duration::from_secs(20)));
    send_paced(&client, relay.local_addr(), 5000, 32);
    let got = sink_thread.join().unwrap();
    let stats = relay.stop();
    let dups = got.len() - 5000;
    assert_eq!(dups as u64, stats.to_upstream.duplicated);
    assert!((400..600).contains(&dups), "{dups}");
    let distinct: HashSet<u64> = got.iter().map(|d| d.0).collect();
    assert_eq!(distinct.len(), 5000);
}

#[test]
fn held_datagrams_are_bounded() {
    let sink = udp();
    let relay = start(RelayConfig {
        max_pending: 10,
        ..RelayConfig::new(sink.local_addr().unwrap()).with_both(Impairment {
            delay: Duration::from_millis(200),
            ..Impairment::default()
        })
    });
    let client = udp();
    for i in 0..50 {
        client
            .send_to(&datagram(i, 32), relay.local_addr())
            .unwrap();
    }
    let got = collect(&sink, Duration::from_millis(400), Duration::from_secs(5));
    let stats = relay.stop();
    assert_eq!(got.len(), 10);
    assert_eq!(stats.to_upstream.dropped_overflow, 40);
}

#[test]
fn session_limit_and_fixed_upstream_bind() {
    let server = udp();
    let fixed = udp().local_addr().unwrap(); // a free port, released at once
    let relay = start(RelayConfig {
        upstream_bind: Some(fixed),
        max_sessions: 1,
        ..RelayConfig::new(server.local_addr().unwrap())
    });
    let a = udp();
    let b = udp();
    a.send_to(b"from a", relay.local_addr()).unwrap();
    let mut buf = [0u8; 64];
    let (n, from) = server.recv_from(&mut buf).unwrap();
    assert_eq!(&buf[..n], b"from a");
    assert_eq!(from, fixed, "the session socket uses the fixed address");
    // A second client finds the table full (the first is not idle).
    b.send_to(b"from b", relay.local_addr()).unwrap();
    assert!(server.recv_from(&mut buf).is_err());
    let stats = relay.stop();
    assert_eq!(stats.to_upstream.dropped_no_session, 1);
    assert_eq!(stats.sessions_opened, 1);
}

#[test]
fn idle_session_is_evicted_for_a_new_client() {
    let server = udp();
    let relay = start(RelayConfig {
        max_sessions: 1,
        session_idle: Duration::from_millis(50),
        ..RelayConfig::new(server.local_addr().unwrap())
    });
    let a = udp();
    let b = udp();
    let mut buf = [0u8; 64];
    a.send_to(b"a", relay.local_addr()).unwrap();
    server.recv_from(&mut buf).unwrap();
    thread::sleep(Duration::from_millis(120));
    b.send_to(b"b", relay.local_addr()).unwrap();
    let (n, from) = server.recv_from(&mut buf).unwrap();
    assert_eq!(&buf[..n], b"b");
    server.send_to(b"to b", from).unwrap();
    let (n, _) = b.recv_from(&mut buf).unwrap();
    assert_eq!(&buf[..n], b"to b");
    let stats = relay.stop();
    assert_eq!(stats.sessions_evicted, 1);
}

#[test]
fn invalid_config_is_refused_and_stop_is_prompt() {
    let sink = udp();
    let bad = RelayConfig::new(sink.local_addr().unwrap()).with_both(Impairment {
        loss: Loss::Random(2.0),
        ..Impairment::default()
    });
    let err = Relay::start(bad).unwrap_err();
    assert_eq!(err.kind(), std::io::ErrorKind::InvalidInput);
    let zero = RelayConfig {
        max_pending: 0,
        ..RelayConfig::new(sink.local_addr().unwrap())
    };
    assert!(Relay::start(zero).is_err());

    // Dropping a relay with datagrams held for a long time returns at once.
    let relay = start(
        RelayConfig::new(sink.local_addr().unwrap()).with_both(Impairment {
            delay: Duration::from_secs(60),
            ..Impairment::default()
        }),
    );
    let client = udp();
    client.send_to(b"held", relay.local_addr()).unwrap();
    thread::sleep(Duration::from_millis(20));
    let t = Instant::now();
    let addr = relay.local_addr();
    drop(relay);
    assert!(t.elapsed() < Duration::from_secs(1));
    // The port is free again.
    UdpSocket::bind(addr).unwrap();
}

/// Waits (bounded) until the relay has read `n` datagrams from clients.
fn wait_received(relay: &Relay, n: u64) {
    let deadline = Instant::now() + Duration::from_secs(10);
    while relay.stats().to_upstream.received < n {
        assert!(
            Instant::now() < deadline,
            "the relay read {:?}",
            relay.stats()
        );
        thread::sleep(Duration::from_millis(5));
    }
}

#[test]
fn blackholes_and_impairment_changes_apply_while_running() {
    let server = udp();
    let relay = start(RelayConfig::new(server.local_addr().unwrap()));
    let client = udp();
    send_paced(&client, relay.local_addr(), 100, 200);
    let clear = collect(&server, Duration::from_millis(300), Duration::from_secs(5));
    assert_eq!(clear.len(), 100, "transparent before the outage");

    relay.set_blackhole(true);
    send_paced(&client, relay.local_addr(), 100, 200);
    wait_received(&relay, 200);
    assert_eq!(relay.stats().to_upstream.dropped_loss, 100);
    relay.set_blackhole(false);
    let dark = collect(&server, Duration::from_millis(100), Duration::from_secs(1));
    assert!(
        dark.is_empty(),
        "{} datagrams crossed a blackhole",
        dark.len()
    );

    let lossy = Impairment {
        loss: Loss::Random(1.0),
        ..Impairment::default()
    };
    relay.set_impairments(lossy, Impairment::default()).unwrap();
    send_paced(&client, relay.local_addr(), 50, 200);
    wait_received(&relay, 250);
    assert_eq!(
        relay.stats().to_upstream.dropped_loss,
        150,
        "100% loss applied"
    );

    relay
        .set_impairments(Impairment::default(), Impairment::default())
        .unwrap();
    send_paced(&client, relay.local_addr(), 50, 200);
    let back = collect(&server, Duration::from_millis(300), Duration::from_secs(5));
    assert_eq!(back.len(), 50, "transparent again");
    let bad = Impairment {
        loss: Loss::Random(2.0),
        ..Impairment::default()
    };
    assert!(relay.set_impairments(bad, Impairment::default()).is_err());
}
