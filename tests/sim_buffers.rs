//! Buffers give back what a burst took (issue 10, bounded memory): a
//! connection that carried megabytes and then went quiet holds no payload
//! memory, and grows again when the next burst comes.

mod common;

use std::time::Duration;

use common::{init_logs, link, stream_bytes, Pair};
use udt_core::sim::Loss;
use udt_core::Config;

#[test]
fn buffers_shrink_after_a_burst_and_grow_again() {
    init_logs();
    let l = link(100, Duration::from_millis(5), Loss::Bernoulli(0.001));
    let mut p = Pair::new(91, l.clone(), l, Config::default());
    let (a, b) = p.connect();
    let memory = |p: &Pair| {
        (
            p.sim.node(p.a).connection(a).expect("A").buffer_memory(),
            p.sim.node(p.b).connection(b).expect("B").buffer_memory(),
        )
    };
    assert_eq!(memory(&p), (0, 0), "nothing allocated before data");
    // The writer stays ahead of the network, so the send buffer fills.
    stream_bytes(
        &mut p.sim,
        (p.a, a),
        (p.b, b),
        16 << 20,
        Duration::from_secs(60),
    );
    let (sent, received) = memory(&p);
    assert!(sent > 1 << 20, "the burst used the send buffer: {sent}");
    assert!(received > 64 << 10, "and the receive buffer: {received}");
    // Quiet for a few keep-alive intervals.
    p.sim.run_for(Duration::from_secs(3));
    assert_eq!(
        memory(&p),
        (0, 0),
        "the quiet connection kept its burst memory"
    );
    // The next burst works as before.
    stream_bytes(
        &mut p.sim,
        (p.a, a),
        (p.b, b),
        4 << 20,
        Duration::from_secs(60),
    );
    assert!(memory(&p).0 > 0);
}
