//! Arbitrary packets into both ends of an established connection in the
//! simulator while data flows. Input: records of [direction and time step
//! (1 byte), length (1 byte), datagram].
#![no_main]

use std::time::Duration;

use libfuzzer_sys::fuzz_target;
use udt_core::sim::harness::{link, Pair};
use udt_core::sim::Loss;
use udt_core::{Config, SeqNumber};

fuzz_target!(|data: &[u8]| {
    let l = link(100, Duration::from_millis(2), Loss::None);
    let mut p = Pair::new(5, l.clone(), l, Config::default());
    let (a, b) = p.connect_with_isn(SeqNumber::new(1000));
    let payload = vec![7u8; 64 * 1024];
    let mut rest = data;
    while let [ctl, len, tail @ ..] = rest {
        let n = (*len as usize).min(tail.len());
        let (d, next) = tail.split_at(n);
        rest = next;
        let now = p.sim.now();
        let _ = p.sim.node_mut(p.a).with_connection(a, |c| c.write(&payload));
        let (node, id, from) = if ctl & 1 == 0 {
            (p.b, b, p.a_addr)
        } else {
            (p.a, a, p.b_addr)
        };
        p.sim
            .node_mut(node)
            .with_connection(id, |c| c.handle_datagram(now, from, d));
        p.sim.poke(node);
        p.sim.run_for(Duration::from_micros(u64::from(ctl >> 1) * 100));
        let mut buf = vec![0u8; 64 * 1024];
        let _ = p.sim.node_mut(p.b).with_connection(b, |c| c.read(&mut buf));
    }
});
