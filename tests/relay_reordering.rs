//! Reordering on real sockets (issue 9: it should cost no more than the
//! loss itself): udt-relay's jitter draws every datagram's delay on its
//! own, so at 100 Mbit/s packets 0.12 ms apart overtake each other all the
//! time.

#[path = "interop/harness.rs"]
mod harness;
#[path = "relay/paths.rs"]
mod paths;

use std::time::Duration;

use udt::{Endpoint, EndpointConfig};
use udt_core::cc::CcAlgorithm;
use udt_core::sim::scenario::Scenario;
use udt_core::Config;

/// Goodput in Mbit/s and the sender's retransmitted share for `bytes`
/// through `impairment`, our BBR sender to our receiver.
fn transfer(impairment: udt_relay::Impairment, bytes: u64) -> (f64, f64) {
    let server = Endpoint::bind_with("127.0.0.1:0", Config::default(), EndpointConfig::default())
        .expect("bind the server");
    let listener = server.listen(1).expect("listen");
    let relay = paths::relay_with(server.local_addr(), impairment, 1);
    let to = relay.local_addr();
    let sender = std::thread::spawn(move || {
        let config = Config::default().with_congestion(CcAlgorithm::Bbr);
        let ep = Endpoint::bind_with("127.0.0.1:0", config, EndpointConfig::default())
            .expect("bind the client");
        let stream = ep.connect(to).expect("connect");
        paths::write_bytes(&stream, bytes);
        let _ = stream.wait_acknowledged(Some(Duration::from_secs(60)));
        let stats = stream.stats();
        let _ = stream.close();
        stats.retransmit_ratio()
    });
    let elapsed = harness::ours_receive(&listener, bytes, Duration::from_secs(60));
    let mbps = bytes as f64 * 8.0 / elapsed.as_secs_f64() / 1e6;
    let resent = sender.join().expect("sender");
    (mbps, resent)
}

#[test]
fn jitter_that_reorders_packets_costs_little_goodput() {
    // The simulator's two-flows path (100 Mbit/s, 20 ms RTT, 50 ms queue),
    // one flow, without and with 1 ms of jitter.
    let plain = paths::impairment(&Scenario::two_flows());
    let jittery = udt_relay::Impairment {
        jitter: Duration::from_millis(1),
        ..plain.clone()
    };
    let bytes = 32 << 20;
    let (base, base_resent) = transfer(plain, bytes);
    let (mbps, resent) = transfer(jittery, bytes);
    eprintln!(
        "plain {base:.1} Mbit/s ({:.2} % resent), with jitter {mbps:.1} Mbit/s ({:.2} % resent)",
        base_resent * 100.0,
        resent * 100.0
    );
    // Before the receiver's reordering window: about 2 Mbit/s, every
    // overtaken packet NAKed, resent and taken for loss by the controller.
    assert!(
        mbps >= 0.7 * base,
        "{mbps:.1} Mbit/s with jitter, {base:.1} without"
    );
    assert!(resent <= 0.03, "{:.2} % resent", resent * 100.0);
}
