//! `UdtStream::read_append`: a blocking read that lends the caller's
//! vector to the connection while it waits, so data arriving in order is
//! copied into it straight from the socket's batch.

mod common;

use std::io::{ErrorKind, Write};
use std::time::Duration;

use common::{config, init, PatternStream};
use udt_mux::{Endpoint, UdtStream};

fn pair() -> (Endpoint, UdtStream, Endpoint, UdtStream) {
    let a = Endpoint::bind_with("127.0.0.1:0", config(), Default::default()).expect("bind a");
    let b = Endpoint::bind_with("127.0.0.1:0", config(), Default::default()).expect("bind b");
    let listener = b.listen(1).expect("listen");
    let client = a.connect(b.local_addr()).expect("connect");
    let (server, _) = listener.accept().expect("accept");
    (a, client, b, server)
}

#[test]
fn a_bulk_stream_read_by_appending_is_exact_and_mostly_copied_once() {
    init();
    let (_a, mut client, _b, server) = pair();
    const TOTAL: usize = 48 << 20;
    let writer = std::thread::spawn(move || {
        common::write_pattern(&mut client, 7, TOTAL);
        client.close().expect("close");
    });
    let mut want = PatternStream::new(7);
    let mut expected = vec![0u8; 256 << 10];
    let mut out = Vec::with_capacity(256 << 10);
    let mut at = 0;
    loop {
        // Something already in `out` stays in front of what is appended.
        out.clear();
        out.extend_from_slice(b"kept");
        let n = server.read_append(&mut out, 256 << 10).expect("read");
        assert_eq!(out.len(), 4 + n);
        assert_eq!(&out[..4], b"kept", "the caller's bytes near {at}");
        if n == 0 {
            break;
        }
        want.fill(&mut expected[..n]);
        assert!(out[4..] == expected[..n], "bytes differ near {at}");
        at += n;
    }
    writer.join().expect("the writer");
    assert_eq!(at, TOTAL, "everything, then the end of the stream");
    let direct = server.stats().bytes_received_direct;
    // The reader waits for the network most of the time on loopback, so
    // most bytes go straight into its vector; all of them is not promised
    // (whatever arrives while it is busy waits in the receive buffer).
    assert!(
        direct > 0 && direct <= TOTAL as u64,
        "{direct} of {TOTAL} bytes went straight to the reader"
    );
}

#[test]
fn a_timeout_or_nonblocking_read_gives_the_vector_back_intact() {
    init();
    let (_a, mut client, _b, server) = pair();
    let mut out = b"mine".to_vec();
    server.set_read_timeout(Some(Duration::from_millis(50)));
    let e = server
        .read_append(&mut out, 1024)
        .expect_err("nothing to read");
    assert!(
        matches!(e.kind(), ErrorKind::TimedOut | ErrorKind::WouldBlock),
        "{e}"
    );
    assert_eq!(out, b"mine");
    server.set_nonblocking(true);
    let e = server
        .read_append(&mut out, 1024)
        .expect_err("nothing to read");
    assert_eq!(e.kind(), ErrorKind::WouldBlock);
    assert_eq!(out, b"mine");
    // After a timed-out wait lent it, data still arrives in order.
    server.set_nonblocking(false);
    server.set_read_timeout(None);
    client.write_all(b" and yours").expect("write");
    let mut got = 0;
    while got < 10 {
        got += server.read_append(&mut out, 1024).expect("read");
    }
    assert_eq!(out, b"mine and yours");
}

#[test]
fn a_huge_limit_reads_what_there_is_without_reserving_it() {
    init();
    let (_a, mut client, _b, server) = pair();
    let mut out = Vec::new();
    // Nothing sent yet: the call waits, lending `out`, and times out.
    server.set_read_timeout(Some(Duration::from_millis(20)));
    assert!(server.read_append(&mut out, usize::MAX).is_err());
    assert!(
        out.capacity() <= 32 << 20,
        "reserved {} bytes",
        out.capacity()
    );
    server.set_read_timeout(None);
    client.write_all(b"small").expect("write");
    let mut got = 0;
    while got < 5 {
        got += server.read_append(&mut out, usize::MAX).expect("read");
    }
    assert_eq!(out, b"small");
    assert!(
        out.capacity() <= 32 << 20,
        "reserved {} bytes",
        out.capacity()
    );
}
