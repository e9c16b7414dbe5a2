//! One thread serves 100 connections through a `Poller`: readable and
//! writable events drive an echo server, then hang-ups (orderly close of
//! half the clients) and errors (the other half's endpoint killed).

mod common;

use std::collections::HashMap;
use std::io::{self, Read, Write};
use std::time::{Duration, Instant};

use common::{bind, config, init, pattern};
use udt_mux::{Interest, PollEvent, Poller, Token, UdtStream};

const CONNECTIONS: usize = 100;
const MESSAGE: usize = 20_000;

struct Echo {
    stream: UdtStream,
    pending: Vec<u8>,
    echoed: usize,
    writable_interest: bool,
    ended: Option<PollEvent>,
}

#[test]
fn one_thread_serves_hundred_connections() {
    init();
    let idle = Duration::from_millis(1500);
    let mut cfg = config();
    cfg.peer_idle_timeout = idle;
    // A tiny send buffer: echoes must wait for writability.
    let mut tiny = cfg.clone();
    tiny.send_buffer_packets = 8;
    let server = bind(tiny);
    let listener = server.listen(CONNECTIONS).unwrap();
    // Half the clients close in order, the other half die with their endpoint.
    let polite = bind(cfg.clone());
    let doomed = bind(cfg);
    let mut clients = Vec::new();
    for i in 0..CONNECTIONS {
        let ep = if i % 2 == 0 { &polite } else { &doomed };
        clients.push(ep.connect(server.local_addr()).unwrap());
    }

    // The server side: one thread, one poller.
    let poller = Poller::new();
    let mut conns: HashMap<usize, Echo> = HashMap::new();
    for _ in 0..CONNECTIONS {
        let (stream, peer) = listener.accept_timeout(Duration::from_secs(10)).unwrap();
        let i = clients
            .iter()
            .position(|c| c.local_addr() == peer && c.peer_addr() == server.local_addr());
        assert!(i.is_some());
        stream.set_nonblocking(true);
        let token = conns.len();
        poller
            .register(&stream, Token(token), Interest::READABLE)
            .unwrap();
        conns.insert(
            token,
            Echo {
                stream,
                pending: Vec::new(),
                echoed: 0,
                writable_interest: false,
                ended: None,
            },
        );
    }
    assert_eq!(poller.len(), CONNECTIONS);

    // Every client sends its message; the server echoes them all.
    for (i, c) in clients.iter_mut().enumerate() {
        c.write_all(&pattern(i as u64, MESSAGE)).unwrap();
    }
    let mut events = Vec::new();
    let mut buf = vec![0u8; 8192];
    let deadline = Instant::now() + Duration::from_secs(20);
    let mut readable_events = 0;
    let mut writable_events = 0;
    while conns.values().any(|e| e.echoed < MESSAGE) {
        assert!(Instant::now() < deadline, "echo did not finish");
        poller
            .wait(&mut events, Some(Duration::from_secs(1)))
            .unwrap();
        for ev in &events {
            let e = conns.get_mut(&ev.token.0).unwrap();
            assert!(ev.error.is_none() && !ev.hang_up, "{ev:?}");
            if ev.readable {
                readable_events += 1;
                loop {
                    match e.stream.read(&mut buf) {
                        Ok(0) => break,
                        Ok(n) => e.pending.extend_from_slice(&buf[..n]),
                        Err(err) if err.kind() == io::ErrorKind::WouldBlock => break,
                        Err(err) => panic!("read: {err}"),
                    }
                }
            }
            if ev.writable {
                writable_events += 1;
            }
            while !e.pending.is_empty() {
                match e.stream.write(&e.pending) {
                    Ok(n) => {
                        e.pending.drain(..n);
                        e.echoed += n;
                    }
                    Err(err) if err.kind() == io::ErrorKind::WouldBlock => break,
                    Err(err) => panic!("write: {err}"),
                }
            }
            // Ask for writability only while output waits (level-triggered).
            let want = !e.pending.is_empty();
            if want != e.writable_interest {
                e.writable_interest = want;
                let interest = if want {
                    Interest::BOTH
                } else {
                    Interest::READABLE
                };
                poller.reregister(ev.token, interest).unwrap();
            }
        }
    }
    assert!(readable_events >= CONNECTIONS);
    assert!(writable_events > 0, "no write ever had to wait");
    for (i, c) in clients.iter_mut().enumerate() {
        let mut back = vec![0u8; MESSAGE];
        c.read_exact(&mut back).unwrap();
        assert!(back == pattern(i as u64, MESSAGE), "echo {i} differs");
    }
    eprintln!("{readable_events} readable and {writable_events} writable events");

    // Now half are killed (before their handles drop, which would close
    // them in order) and half close in order.
    let started = Instant::now();
    doomed.abort();
    for (i, c) in clients.into_iter().enumerate() {
        if i % 2 == 0 {
            c.close().unwrap();
        }
    }
    while conns.values().any(|e| e.ended.is_none()) {
        assert!(
            started.elapsed() < idle + Duration::from_secs(3),
            "hang-ups/errors not reported in time"
        );
        poller
            .wait(&mut events, Some(Duration::from_millis(500)))
            .unwrap();
        for ev in &events {
            if ev.hang_up || ev.error.is_some() {
                let e = conns.get_mut(&ev.token.0).unwrap();
                e.ended = Some(*ev);
                poller.deregister(ev.token).unwrap();
            }
        }
    }
    let hang_ups = conns.values().filter(|e| e.ended.unwrap().hang_up).count();
    let errors = conns
        .values()
        .filter(|e| e.ended.unwrap().error == Some(udt_mux::ConnectionError::TimedOut))
        .count();
    eprintln!(
        "{hang_ups} hang-ups, {errors} errors after {:?}",
        started.elapsed()
    );
    assert_eq!(hang_ups, CONNECTIONS / 2);
    assert_eq!(errors, CONNECTIONS / 2);
    // The hung-up connections read as end of stream, the failed ones as errors.
    for e in conns.values_mut() {
        let r = e.stream.read(&mut buf);
        if e.ended.unwrap().hang_up {
            assert_eq!(r.unwrap(), 0);
        } else {
            assert_eq!(r.unwrap_err().kind(), io::ErrorKind::TimedOut);
        }
    }
    assert!(poller.is_empty());
}
