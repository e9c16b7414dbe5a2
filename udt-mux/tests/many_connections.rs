//! 100 concurrent connections to one listener port, each carrying 4 MiB in
//! both directions at once, checked byte for byte.

mod common;

use std::io::{Read, Write};
use std::time::{Duration, Instant};

use common::{bind, config, init, spawn};

static CONNECTIONS: std::sync::LazyLock<usize> =
    std::sync::LazyLock::new(|| env("MANY_CONNS", 100));
static BYTES: std::sync::LazyLock<usize> = std::sync::LazyLock::new(|| env("MANY_BYTES", 4 << 20));

fn env(name: &str, default: usize) -> usize {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// Reads `BYTES` of the pattern of `seed`, checked.
fn read_pattern(stream: &mut impl Read, seed: u64) {
    common::read_pattern(stream, seed, *BYTES);
}

/// Writes `BYTES` of the pattern of `seed`.
fn write_pattern(stream: &mut impl Write, seed: u64) {
    common::write_pattern(stream, seed, *BYTES);
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
