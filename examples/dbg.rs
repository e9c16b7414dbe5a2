use std::time::Duration;
use udt_core::sim::harness::{link, Pair};
use udt_core::sim::Loss;
use udt_core::Config;
fn main() {
    let l = link(100, Duration::from_millis(30), Loss::Bernoulli(0.3));
    let mut p = Pair::new(37, l.clone(), l, Config::default());
    let now = p.sim.now();
    let (a_addr, b_addr) = (p.a_addr, p.b_addr);
    let ida = p.sim.node_mut(p.a).rendezvous(now, b_addr);
    p.sim.poke(p.a);
    p.sim.run_for(Duration::from_millis(700));
    let now = p.sim.now();
    let idb = p.sim.node_mut(p.b).rendezvous(now, a_addr);
    p.sim.poke(p.b);
    let (a, b) = (p.a, p.b);
    p.sim.run_until(|sim| sim.node(a).is_connected(ida) && sim.node(b).is_connected(idb), Duration::from_secs(60)).unwrap();
    let data = vec![1u8; 1 << 20];
    let mut off = 0;
    let mut buf = vec![0u8; 1 << 20];
    let mut got = 0;
    for i in 0..400 {
        while off < data.len() {
            match p.sim.node_mut(a).with_connection(ida, |c| c.write(&data[off..])).unwrap() { Ok(n) => off += n, Err(_) => break }
        }
        p.sim.poke(a);
        while let Some(Ok(n)) = p.sim.node_mut(b).with_connection(idb, |c| c.read(&mut buf)) { if n == 0 { break } got += n; }
        p.sim.poke(b);
        p.sim.run_for(Duration::from_millis(100));
        if i % 20 == 0 || got == data.len() {
            let s = p.sim.node(a).connection(ida).unwrap().stats();
            let r = p.sim.node(b).connection(idb).unwrap().stats();
            println!("t={:?} got={got} off={off} sent={} rexmit={} inflight={} fw={} cwnd={} period={:?} naks_rx={} timeouts={} | rcv pkts={} lost={} naks={} acks={} dup={} oow={}",
              p.sim.elapsed(), s.packets_sent, s.packets_retransmitted, s.packets_in_flight, s.flow_window, s.congestion_window, s.send_period, s.naks_received, s.timeouts, r.packets_received, r.packets_lost, r.naks_sent, r.acks_sent, r.dropped.duplicate, r.dropped.out_of_window);
            if got == data.len() { break }
        }
    }
}
