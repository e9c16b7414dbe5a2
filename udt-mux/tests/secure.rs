//! Secure mode (issue 11) over real UDP sockets on 127.0.0.1, through a
//! relay thread in the middle that records every datagram, flips bits and
//! replays: no plaintext on the wire, corruption costs retransmissions
//! and never corrupts the output, a replayed handshake opens nothing, and
//! wrong codes or downgrades fail fast with a clear error.

mod common;

use std::io::{self, Read, Write};
use std::net::{SocketAddr, UdpSocket};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use common::{bind, config, init};
use udt_core::handshake::ConnectError as HandshakeError;
use udt_core::rng::Rng;
use udt_mux::{ConnectError, Options, PeerIdentity, Security};

const MARKER: &[u8] = b"PLAINTEXT-MARKER-issue-11";

/// A UDP forwarder between one client and `server`: records every
/// datagram, and once `flip` is set flips one random bit in that share of
/// the datagrams that are not handshakes.
struct Relay {
    addr: SocketAddr,
    socket: UdpSocket,
    server: SocketAddr,
    seen: Arc<Mutex<Vec<Vec<u8>>>>,
    flip_per_mille: Arc<AtomicU64>,
    flipped: Arc<AtomicU64>,
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl Relay {
    fn start(server: SocketAddr) -> Relay {
        let socket = UdpSocket::bind("127.0.0.1:0").expect("bind relay");
        socket
            .set_read_timeout(Some(Duration::from_millis(20)))
            .expect("timeout");
        let addr = socket.local_addr().expect("addr");
        let seen = Arc::new(Mutex::new(Vec::new()));
        let flip_per_mille = Arc::new(AtomicU64::new(0));
        let flipped = Arc::new(AtomicU64::new(0));
        let stop = Arc::new(AtomicBool::new(false));
        let thread = {
            let socket = socket.try_clone().expect("clone");
            let (seen, flip, flipped, stop) = (
                seen.clone(),
                flip_per_mille.clone(),
                flipped.clone(),
                stop.clone(),
            );
            std::thread::spawn(move || {
                let mut rng = Rng::new(11);
                let mut client: Option<SocketAddr> = None;
                let mut buf = vec![0u8; 65536];
                // Bounded: the test stops it; the deadline is a backstop.
                let deadline = Instant::now() + Duration::from_secs(120);
                while !stop.load(Ordering::Relaxed) && Instant::now() < deadline {
                    let Ok((n, from)) = socket.recv_from(&mut buf) else {
                        continue;
                    };
                    let mut d = buf[..n].to_vec();
                    if let Ok(mut s) = seen.lock() {
                        s.push(d.clone());
                    }
                    let to = if from == server {
                        match client {
                            Some(c) => c,
                            None => continue,
                        }
                    } else {
                        client = Some(from);
                        server
                    };
                    let is_handshake = d.len() >= 2 && d[0] == 0x80 && d[1] == 0;
                    let p = flip.load(Ordering::Relaxed);
                    if !is_handshake && p > 0 && rng.below(1000) < p {
                        let bit = rng.below(8 * d.len() as u64) as usize;
                        d[bit / 8] ^= 1 << (bit % 8);
                        flipped.fetch_add(1, Ordering::Relaxed);
                    }
                    let _ = socket.send_to(&d, to);
                }
            })
        };
        Relay {
            addr,
            socket,
            server,
            seen,
            flip_per_mille,
            flipped,
            stop,
            thread: Some(thread),
        }
    }

    fn datagrams(&self) -> Vec<Vec<u8>> {
        self.seen.lock().map(|s| s.clone()).unwrap_or_default()
    }
}

impl Drop for Relay {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

fn code(c: &str) -> Options {
    Options::stream().security(Security::Code(c.into()))
}

fn payload(len: usize) -> Vec<u8> {
    let mut rng = Rng::new(5);
    let mut out = Vec::with_capacity(len);
    while out.len() < len {
        out.extend_from_slice(MARKER);
        out.extend_from_slice(&rng.next_u64().to_le_bytes());
    }
    out.truncate(len);
    out
}

#[test]
fn the_relay_sees_no_plaintext_and_flipped_bits_cost_only_retransmissions() {
    init();
    let server = bind(config());
    let listener = server
        .listen_with(4, code("7-amber-falcon-river"))
        .expect("listen");
    let relay = Relay::start(server.local_addr());
    let client = bind(config());
    let mut stream = client
        .connect_with(relay.addr, code("7-amber-falcon-river"))
        .expect("connect through the relay");
    let (mut peer, _) = listener.accept().expect("accept");
    assert_eq!(stream.peer_identity(), Some(PeerIdentity::Code));
    assert_eq!(peer.peer_identity(), Some(PeerIdentity::Code));
    // From here on, 3 % of the data and control packets get one bit flipped.
    relay.flip_per_mille.store(30, Ordering::Relaxed);
    let data = payload(2 * 1024 * 1024);
    let writer = {
        let data = data.clone();
        std::thread::spawn(move || {
            stream.write_all(&data).expect("write");
            stream.close().expect("close");
        })
    };
    let mut got = Vec::with_capacity(data.len());
    peer.set_read_timeout(Some(Duration::from_secs(30)));
    peer.read_to_end(&mut got).expect("read to the end");
    writer.join().expect("writer");
    assert!(
        got == data,
        "output differs from input ({} bytes)",
        got.len()
    );
    let stats = peer.stats();
    assert!(relay.flipped.load(Ordering::Relaxed) > 0);
    assert!(
        stats.dropped.unauthenticated > 0,
        "flipped packets were not refused: {:?}",
        stats.dropped
    );
    let datagrams = relay.datagrams();
    assert!(datagrams.len() > 1000);
    for d in &datagrams {
        assert!(
            !d.windows(MARKER.len()).any(|w| w == MARKER),
            "plaintext marker on the wire"
        );
    }
}

fn handshake_error(err: &io::Error) -> Option<HandshakeError> {
    match err.get_ref()?.downcast_ref::<ConnectError>()? {
        ConnectError::Handshake(h) => Some(*h),
        _ => None,
    }
}

#[test]
fn a_wrong_code_fails_fast_with_a_clear_error() {
    init();
    let server = bind(config());
    let _listener = server
        .listen_with(4, code("1-amber-falcon-river"))
        .expect("listen");
    let client = bind(config());
    let start = Instant::now();
    let err: io::Error = client
        .connect_with(server.local_addr(), code("2-amber-falcon-river"))
        .expect_err("a wrong code must fail")
        .into();
    assert!(
        start.elapsed() < Duration::from_secs(1),
        "{:?}",
        start.elapsed()
    );
    assert_eq!(err.kind(), io::ErrorKind::PermissionDenied);
    assert_eq!(handshake_error(&err), Some(HandshakeError::AuthFailed));
    assert!(err.to_string().contains("wrong code or key"), "{err}");
}

#[test]
fn downgrades_are_refused_both_ways() {
    init();
    let secure = bind(config());
    let _l1 = secure.listen_with(4, code("9-a-b-c")).expect("listen");
    let plain = bind(config());
    let _l2 = plain.listen(4).expect("listen");
    let client = bind(config());
    let err: io::Error = client
        .connect(secure.local_addr())
        .expect_err("plain to secure")
        .into();
    assert_eq!(handshake_error(&err), Some(HandshakeError::SecureRequired));
    let err: io::Error = client
        .connect_with(plain.local_addr(), code("9-a-b-c"))
        .expect_err("secure to plain")
        .into();
    assert_eq!(handshake_error(&err), Some(HandshakeError::PeerNotSecure));
    // Plain to plain is UDT4 as before.
    let mut s = client.connect(plain.local_addr()).expect("plain connects");
    assert!(!s.is_secure());
    assert_eq!(s.peer_identity(), None);
    s.write_all(b"plain").expect("write");
}

#[test]
fn a_replayed_handshake_from_an_earlier_connection_opens_nothing() {
    init();
    let psk = Options::stream().security(Security::PreSharedKey([0x33; 32]));
    let server = bind(config());
    let listener = server.listen_with(4, psk.clone()).expect("listen");
    let relay = Relay::start(server.local_addr());
    let client = bind(config());
    let mut stream = client.connect_with(relay.addr, psk).expect("connect");
    let (mut peer, _) = listener.accept().expect("accept");
    stream.write_all(b"first connection").expect("write");
    let mut buf = [0u8; 16];
    peer.read_exact(&mut buf).expect("read");
    stream.close().expect("close");
    drop(peer);
    // The final request of that handshake, replayed from the relay's
    // address (where the cookie is valid) once the connection is gone.
    let final_request = relay
        .datagrams()
        .into_iter()
        .find(|d| d.len() > 64 && d[0] == 0x80 && d[1] == 0 && d[12..16] == [0; 4])
        .expect("recorded final request");
    // Wait (bounded, polling the condition) until the server has
    // forgotten the connection, so the replay meets the listener itself.
    let deadline = Instant::now() + Duration::from_secs(10);
    while server.stats().connections > 0 && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(20));
    }
    assert_eq!(
        server.stats().connections,
        0,
        "the first connection lingers"
    );
    relay
        .socket
        .send_to(&final_request, relay.server)
        .expect("replay");
    let r = listener.accept_timeout(Duration::from_millis(500));
    assert!(r.is_err(), "the replay opened a connection");
    // ... because it was recognised as a replay (not merely lost).
    let deadline = Instant::now() + Duration::from_secs(2);
    while server.stats().secure_replays == 0 && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(10));
    }
    assert_eq!(server.stats().secure_replays, 1);
}

/// Both sides of a rendezvous on loopback, each in its own thread, with
/// `a` and `b`; returns both results.
fn rendezvous_pair(
    a: Options,
    b: Options,
) -> (
    Result<udt_mux::UdtStream, ConnectError>,
    Result<udt_mux::UdtStream, ConnectError>,
) {
    let ea = bind(config());
    let eb = bind(config());
    let (aa, ba) = (ea.local_addr(), eb.local_addr());
    let tb = std::thread::spawn(move || {
        let r = eb.rendezvous_with(aa, b);
        (eb, r)
    });
    let ra = ea.rendezvous_with(ba, a);
    let (eb, rb) = tb.join().expect("rendezvous thread");
    // The streams keep their endpoints' threads running.
    drop((ea, eb));
    (ra, rb)
}

#[test]
fn a_secure_rendezvous_with_a_code_moves_data_encrypted() {
    init();
    let (ra, rb) = rendezvous_pair(code("7-amber-falcon-river"), code("7-amber-falcon-river"));
    let (mut a, mut b) = (ra.expect("rendezvous a"), rb.expect("rendezvous b"));
    assert!(a.is_secure() && b.is_secure());
    assert_eq!(a.peer_identity(), Some(PeerIdentity::Code));
    assert_eq!(b.peer_identity(), Some(PeerIdentity::Code));
    let data = payload(1024 * 1024);
    let writer = {
        let data = data.clone();
        std::thread::spawn(move || {
            a.write_all(&data).expect("write");
            a.close().expect("close");
        })
    };
    let mut got = Vec::with_capacity(data.len());
    b.set_read_timeout(Some(Duration::from_secs(30)));
    b.read_to_end(&mut got).expect("read to the end");
    writer.join().expect("writer");
    assert!(got == data, "output differs ({} bytes)", got.len());
}

#[test]
fn a_secure_rendezvous_with_a_wrong_code_fails_fast_on_both_sides() {
    init();
    let start = Instant::now();
    let (ra, rb) = rendezvous_pair(code("7-amber-falcon-river"), code("7-amber-falcon-rivet"));
    // The initiator fails in its handshake; the responder completed (it
    // cannot check a code) and its connection ends on the refusal: its
    // first read says so.
    let mut errors = Vec::new();
    for r in [ra, rb] {
        match r {
            Err(e) => errors.push(io::Error::from(e)),
            Ok(mut s) => {
                s.set_read_timeout(Some(Duration::from_secs(5)));
                let e = s.read(&mut [0u8; 16]).expect_err("no data, an error");
                errors.push(e);
            }
        }
    }
    assert!(
        start.elapsed() < Duration::from_secs(3),
        "{:?}",
        start.elapsed()
    );
    for e in &errors {
        assert_eq!(e.kind(), io::ErrorKind::PermissionDenied, "{e}");
        assert!(e.to_string().contains("wrong code"), "{e}");
    }
}
