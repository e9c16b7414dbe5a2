//! An endpoint with several sockets on one port (`EndpointConfig::sockets`):
//! connections from many peers, handshakes landing on any socket, data
//! steered by socket ID, every byte checked.

mod common;

use std::io::{Read, Write};
use std::time::Duration;

use common::{any_port, config, init, read_pattern, spawn, write_pattern};
use udt_mux::{Endpoint, EndpointConfig};

const BYTES: usize = 2 << 20;

fn endpoint(sockets: usize) -> Endpoint {
    let mut options = EndpointConfig::default();
    options.sockets = sockets;
    Endpoint::bind_with(any_port(), config(), options).expect("bind")
}

/// `peers` client endpoints open `per_peer` connections each to a server
/// with `sockets` sockets; both directions carry `BYTES`, byte-exact.
fn exchange(sockets: usize, peers: usize, per_peer: usize) {
    init();
    let server = endpoint(sockets);
    let total = peers * per_peer;
    let listener = server.listen(total).unwrap();
    let addr = server.local_addr();
    let acceptor = spawn("acceptor".into(), move || {
        let mut workers = Vec::new();
        for _ in 0..total {
            let (mut stream, _) = listener
                .accept_timeout(Duration::from_secs(20))
                .expect("accept");
            workers.push(spawn("server-conn".into(), move || {
                let mut index = [0u8; 8];
                stream.read_exact(&mut index).unwrap();
                let i = u64::from_le_bytes(index);
                let writer = {
                    let mut w = stream.try_clone().unwrap();
                    spawn("server-writer".into(), move || {
                        write_pattern(&mut w, 2 * i + 1, BYTES)
                    })
                };
                read_pattern(&mut stream, 2 * i, BYTES);
                writer.join().unwrap();
                assert_eq!(stream.read(&mut [0u8; 1]).unwrap(), 0, "stream {i}: no EOF");
            }));
        }
        for w in workers {
            w.join().unwrap();
        }
        server
    });
    let mut clients = Vec::new();
    for p in 0..peers {
        // Some peers have several sockets too: both ends steer.
        let client = endpoint(if p % 2 == 0 { 1 } else { sockets });
        for c in 0..per_peer {
            let i = (p * per_peer + c) as u64;
            let client = client.clone();
            clients.push(spawn(format!("client-{i}"), move || {
                let mut stream = client.connect(addr).expect("connect");
                stream.write_all(&i.to_le_bytes()).unwrap();
                let writer = {
                    let mut w = stream.try_clone().unwrap();
                    spawn("client-writer".into(), move || {
                        write_pattern(&mut w, 2 * i, BYTES)
                    })
                };
                read_pattern(&mut stream, 2 * i + 1, BYTES);
                writer.join().unwrap();
                stream.close().expect("orderly close");
            }));
        }
    }
    for c in clients {
        c.join().unwrap();
    }
    let server = acceptor.join().unwrap();
    let s = server.stats();
    assert_eq!(s.wrong_source, 0);
    assert_eq!(s.malformed, 0);
    // Every byte of every connection came in through the shared port.
    assert!(s.bytes_received >= (total * BYTES) as u64);
}

#[test]
fn connections_over_two_sockets_deliver_byte_exact() {
    exchange(2, 6, 2);
}

#[test]
fn connections_over_three_sockets_deliver_byte_exact() {
    exchange(3, 4, 3);
}

#[test]
fn out_of_range_socket_counts_are_refused() {
    for sockets in [0, 65] {
        let mut options = EndpointConfig::default();
        options.sockets = sockets;
        let e = Endpoint::bind_with(any_port(), config(), options).unwrap_err();
        assert_eq!(e.kind(), std::io::ErrorKind::InvalidInput);
    }
}
