//! The receive thread's pause on a busy socket (`EndpointConfig::read_pause`):
//! datagrams sent one by one, microseconds apart, as a UDT4 sender sends
//! them, are read in batches instead of one system call each.

mod common;

use std::net::UdpSocket;
use std::time::{Duration, Instant};

use common::{config, init};
use udt_mux::{Endpoint, EndpointConfig};

const DATAGRAMS: u64 = 2_000;
/// One datagram every 20 µs: 50 000 a second, a tenth of what one core
/// sends on loopback, so an unpaused receive thread keeps up and reads
/// them one by one.
const SPACING: Duration = Duration::from_micros(20);

/// Sends `DATAGRAMS` control-packet-shaped datagrams for a socket ID nobody
/// owns (counted and dropped) to `ep`, spaced by spinning, and waits until
/// the endpoint has read them all. Returns its `recvmmsg` calls.
fn receive_calls(ep: &Endpoint) -> u64 {
    let to = ep.local_addr();
    let peer = UdpSocket::bind("127.0.0.1:0").expect("bind the raw peer");
    let mut junk = [0u8; 16];
    junk[0] = 0x80; // a control packet ...
    junk[12..16].copy_from_slice(&0x1234_5678u32.to_be_bytes()); // ... for an unknown socket
    let before = ep.stats();
    let start = Instant::now();
    for i in 0..DATAGRAMS {
        let due = SPACING * i as u32;
        while start.elapsed() < due {
            std::hint::spin_loop();
        }
        peer.send_to(&junk, to).expect("send to loopback");
    }
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let stats = ep.stats();
        if stats.datagrams_received - before.datagrams_received >= DATAGRAMS {
            return stats.recv_calls - before.recv_calls;
        }
        assert!(
            Instant::now() < deadline,
            "the endpoint read {} of {DATAGRAMS} datagrams",
            stats.datagrams_received - before.datagrams_received
        );
        std::thread::yield_now();
    }
}

#[test]
fn datagrams_arriving_one_by_one_are_read_in_batches() {
    init();
    let mut options = EndpointConfig::default();
    options.read_pause = Duration::from_micros(200);
    let ep = Endpoint::bind_with("127.0.0.1:0", config(), options).expect("bind");
    let calls = receive_calls(&ep);
    // About ten datagrams arrive during each pause; without it the thread
    // reads nearly every datagram on its own.
    assert!(
        calls <= DATAGRAMS / 4,
        "{calls} receive calls for {DATAGRAMS} datagrams"
    );
}
