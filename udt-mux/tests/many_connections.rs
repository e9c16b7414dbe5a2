//! 100 concurrent connections to one listener port, each carrying 4 MiB in
//! both directions at once, checked byte for byte.

mod common;

use std::io::{Read, Write};
use std::time::{Duration, Instant};

use common::{bind, config, init, spawn, PatternStream};

static CONNECTIONS: std::sync::LazyLock<usize> =
    std::sync::LazyLock::new(|| env("MANY_CONNS", 100));
static BYTES: std::sync::LazyLock<usize> = std::sync::LazyLock::new(|| env("MANY_BYTES", 4 << 20));

fn env(name: &str, default: usize) -> usize {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// Reads `BYTES` and compares them with the pattern of `seed`, chunk by
/// chunk (no copy of the whole payload per connection).
fn read_pattern(stream: &mut impl Read, seed: u64) {
    let total = *BYTES;
    let mut want = PatternStream::new(seed);
    let mut buf = vec![0u8; 64 << 10];
    let mut expected = vec![0u8; 64 << 10];
    let mut at = 0;
    while at < total {
        let n = stream
            .read(&mut buf[..(total - at).min(64 << 10)])
            .expect("read");
        assert!(n > 0, "stream {seed}: early end of stream at {at}");
        want.fill(&mut expected[..n]);
        assert!(
            buf[..n] == expected[..n],
            "stream {seed}: bytes differ near {at}"
        );
        at += n;
    }
}

/// Writes `BYTES` of the pattern of `seed`.
fn write_pattern(stream: &mut impl Write, seed: u64) {
    let mut total = *BYTES;
    let mut pattern = PatternStream::new(seed);
    let mut buf = vec![0u8; 64 << 10];
    while total > 0 {
        let n = total.min(buf.len());
        pattern.fill(&mut buf[..n]);
        stream.write_all(&buf[..n]).expect("write");
        total -= n;
    }
}

#[test]
fn hundred_connections_four_mib_each_way() {
    init();
    let started = Instant::now();
    let server = bind(config());
    let listener = server.listen(*CONNECTIONS).unwrap();
    let server_addr = server.local_addr();
    let client = bind(config());

    let server_side = spawn("acceptor".into(), move || {
        let mut workers = Vec::new();
        for _ in 0..(*CONNECTIONS) {
            let (stream, _) = listener
                .accept_timeout(Duration::from_secs(20))
                .expect("accept");
            workers.push(spawn("server-conn".into(), move || {
                // The client tells us its index first.
                let mut stream = stream;
                let mut index = [0u8; 8];
                stream.read_exact(&mut index).unwrap();
                let i = u64::from_le_bytes(index);
                let writer = {
                    let mut w = stream.try_clone().unwrap();
                    spawn("server-writer".into(), move || {
                        write_pattern(&mut w, 2 * i + 1)
                    })
                };
                read_pattern(&mut stream, 2 * i);
                writer.join().unwrap();
                // The client closes after reading everything: end of stream.
                assert_eq!(stream.read(&mut [0u8; 1]).unwrap(), 0, "stream {i}: no EOF");
            }));
        }
        for w in workers {
            w.join().unwrap();
        }
        server
    });

    let clients: Vec<_> = (0..(*CONNECTIONS) as u64)
        .map(|i| {
            let client = client.clone();
            spawn(format!("client-{i}"), move || {
                let mut stream = client.connect(server_addr).expect("connect");
                stream.write_all(&i.to_le_bytes()).unwrap();
                let writer = {
                    let mut w = stream.try_clone().unwrap();
                    spawn("client-writer".into(), move || write_pattern(&mut w, 2 * i))
                };
                read_pattern(&mut stream, 2 * i + 1);
                writer.join().unwrap();
                stream.close().expect("orderly close");
            })
        })
        .collect();
    for c in clients {
        c.join().unwrap();
    }
    let server = server_side.join().unwrap();
    let s = server.stats();
    eprintln!(
        "{} x {} MiB both ways in {:?}; server {s:?}",
        *CONNECTIONS,
        (*BYTES) >> 20,
        started.elapsed()
    );
    assert_eq!(s.wrong_source, 0);
    assert_eq!(s.malformed, 0);
}
