//! The port's kernel receive buffer grows with the connections it serves
//! (`EndpointConfig::udp_recv_buffer_per_connection`), on both the
//! accepting and the connecting side, up to `udp_recv_buffer_max`.

mod common;

use common::{config, init};
use udt_mux::{Endpoint, EndpointConfig};

const BASE: usize = 1 << 20;
const PER_CONNECTION: usize = 256 << 10;

fn options(max: usize) -> EndpointConfig {
    let mut options = EndpointConfig::default();
    options.udp_recv_buffer = Some(BASE);
    options.udp_recv_buffer_per_connection = PER_CONNECTION;
    options.udp_recv_buffer_max = max;
    options
}

/// Opens `n` connections from a client endpoint to a server endpoint, both
/// with `options`; returns both (the connections stay open) and the
/// streams.
fn connect(n: usize, options: EndpointConfig) -> (Endpoint, Endpoint, Vec<udt_mux::UdtStream>) {
    let server = Endpoint::bind_with("127.0.0.1:0", config(), options.clone()).expect("bind");
    let listener = server.listen(2 * n).expect("listen");
    let client = Endpoint::bind_with("127.0.0.1:0", config(), options).expect("bind");
    let mut streams = Vec::new();
    for _ in 0..n {
        streams.push(client.connect(server.local_addr()).expect("connect"));
        streams.push(listener.accept().expect("accept").0);
    }
    (server, client, streams)
}

#[test]
fn the_receive_buffer_grows_with_the_connections() {
    init();
    let (server, client, _streams) = connect(0, options(64 << 20));
    // Linux reports twice the bytes asked (its bookkeeping included).
    let first = server.stats().udp_recv_buffer;
    assert!(first >= BASE, "granted {first} B for {BASE} B");
    assert!(first <= 2 * BASE, "granted {first} B before any connection");
    drop((server, client));

    let n = 12;
    let (server, client, _streams) = connect(n, options(64 << 20));
    let asked = BASE + n * PER_CONNECTION;
    for (side, ep) in [("server", &server), ("client", &client)] {
        let granted = ep.stats().udp_recv_buffer;
        assert!(
            granted >= asked,
            "{side}: granted {granted} B with {n} connections, want at least {asked} B"
        );
    }
}

#[test]
fn the_receive_buffer_stops_at_its_maximum() {
    init();
    let max = BASE + 2 * PER_CONNECTION;
    let (server, _client, _streams) = connect(12, options(max));
    let granted = server.stats().udp_recv_buffer;
    // Grown (Linux reports twice the bytes asked: 2 * BASE before), but
    // only to `max`, not to twelve connections' worth.
    assert!(granted > 2 * BASE, "granted {granted} B: never grown");
    assert!(
        granted <= 2 * max,
        "granted {granted} B past the maximum of {max} B"
    );
}
