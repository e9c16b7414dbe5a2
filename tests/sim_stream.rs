//! Stream transfers of 64 MiB through the simulator, byte-exact, under the
//! link conditions the core issue lists.

mod common;

use std::time::Duration;

use common::{init_logs, link, stream_bytes, stream_transfer, Pair, MIB_64};
use udt_core::sim::{LinkConfig, Loss};
use udt_core::{Config, SeqNumber};

const LIMIT: Duration = Duration::from_secs(4 * 3600);

fn run(seed: u64, ab: LinkConfig, ba: LinkConfig, total: u64) -> common::TransferReport {
    init_logs();
    // Slow lossy transfers may take longer than the default linger after
    // the sender's close.
    let mut config = Config::default();
    config.linger = Some(LIMIT);
    let mut p = Pair::new(seed, ab, ba, config);
    let (a_id, b_id) = p.connect();
    let report = stream_transfer(&mut p.sim, (p.a, a_id), (p.b, b_id), total, LIMIT);
    eprintln!(
        "seed={seed}: {} bytes in {:?} virtual: {:.1} Mbit/s, retransmitted {} of {} packets, rtt {:?}",
        report.bytes,
        report.elapsed,
        report.goodput_mbps(),
        report.sender.packets_retransmitted,
        report.sender.packets_sent,
        report.sender.rtt,
    );
    report
}

#[test]
fn clean_link_64_mib() {
    init_logs();
    let l = link(1000, Duration::from_millis(5), Loss::None);
    let mut p = Pair::new(1, l.clone(), l, Config::default());
    let (a_id, b_id) = p.connect();
    let r = stream_transfer(&mut p.sim, (p.a, a_id), (p.b, b_id), MIB_64, LIMIT);
    // The only losses on a clean link are drop-tail drops at its bottleneck
    // queue when the sender probes above capacity.
    let queue_drops = p.sim.link_stats(p.a, p.b).unwrap().queue_dropped;
    assert!(
        r.receiver.packets_lost <= queue_drops,
        "{} lost but only {queue_drops} dropped by the queue",
        r.receiver.packets_lost
    );
    // A clean 1 Gbit/s link must be used well, not trickled.
    assert!(
        r.goodput_mbps() > 300.0,
        "goodput {:.1} Mbit/s",
        r.goodput_mbps()
    );
}

#[test]
fn lossy_100mbit_50ms_rtt_1_percent() {
    let l = link(100, Duration::from_millis(25), Loss::Bernoulli(0.01));
    let r = run(2, l.clone(), l, MIB_64);
    assert!(r.sender.packets_retransmitted > 0);
    assert!(r.receiver.packets_lost > 0);
}

#[test]
fn ten_percent_loss() {
    let l = link(100, Duration::from_millis(10), Loss::Bernoulli(0.10));
    let r = run(3, l.clone(), l, MIB_64);
    assert!(r.sender.packets_retransmitted as f64 > 0.05 * r.sender.packets_sent as f64);
}

#[test]
fn thirty_percent_loss_with_duplication_and_reordering() {
    let l = LinkConfig {
        duplicate: 0.05,
        jitter: Duration::from_millis(4),
        ..link(100, Duration::from_millis(10), Loss::Bernoulli(0.30))
    };
    let r = run(4, l.clone(), l, MIB_64);
    assert!(
        r.receiver.dropped.duplicate > 0,
        "duplicates must have been seen and dropped"
    );
}

#[test]
fn bursty_loss() {
    let ge = Loss::GilbertElliott {
        p_good_to_bad: 0.01,
        p_bad_to_good: 0.25,
        loss_good: 0.001,
        loss_bad: 0.5,
    };
    let l = link(100, Duration::from_millis(15), ge);
    let r = run(5, l.clone(), l, MIB_64);
    assert!(r.sender.packets_retransmitted > 0);
}

#[test]
fn isn_just_below_the_wrap() {
    init_logs();
    let l = link(100, Duration::from_millis(5), Loss::Bernoulli(0.01));
    let mut p = Pair::new(6, l.clone(), l, Config::default());
    let (a_id, b_id) = p.connect_with_isn(SeqNumber::new(SeqNumber::MAX - 20));
    let r = stream_transfer(&mut p.sim, (p.a, a_id), (p.b, b_id), MIB_64, LIMIT);
    assert_eq!(r.bytes, MIB_64);
}

#[test]
fn timestamps_wrap_during_transfer() {
    init_logs();
    let l = link(100, Duration::from_millis(5), Loss::Bernoulli(0.01));
    let mut p = Pair::new(7, l.clone(), l, Config::default());
    let (a_id, b_id) = p.connect();
    // The 32-bit microsecond timestamp wraps after 4294.97 s: idle until
    // just before that, then transfer across it.
    p.sim.run_for(Duration::from_secs(4292));
    assert!(p
        .sim
        .node(p.a)
        .connection(a_id)
        .is_some_and(|c| !c.is_closed()));
    let r = stream_transfer(&mut p.sim, (p.a, a_id), (p.b, b_id), MIB_64, LIMIT);
    assert!(r.sender.elapsed > Duration::from_micros(u32::MAX as u64));
}

#[test]
fn a_close_ends_as_soon_as_the_reader_has_read_everything() {
    // Our sender's close waits until an ACK reports the peer's buffer
    // drained, withholding the ACK2 of the last one so the receiver
    // repeats it; the repeat came RTT + 4·RTTVar later, with an estimate
    // still near UDT4's initial 100 ms ± 50 ms after a short transfer: on
    // this 1 ms path 16 MiB were read after 45 ms and the EOF came at
    // 382 ms. The same transfer run twice (the simulator is
    // deterministic): once left open, once closed after the last write.
    init_logs();
    let l = link(10_000, Duration::from_micros(500), Loss::None);
    let total = 16 << 20;
    let mut open = Pair::new(1, l.clone(), l.clone(), Config::default());
    let (a, b) = open.connect();
    let read = stream_bytes(&mut open.sim, (open.a, a), (open.b, b), total, LIMIT);
    let mut closed = Pair::new(1, l.clone(), l, Config::default());
    let (a, b) = closed.connect();
    let eof = stream_transfer(&mut closed.sim, (closed.a, a), (closed.b, b), total, LIMIT);
    assert!(
        eof.elapsed <= read.elapsed + Duration::from_millis(20),
        "everything read after {:?}, EOF after {:?}",
        read.elapsed,
        eof.elapsed
    );
}

#[test]
fn a_lan_transfer_is_not_held_by_the_peers_unmeasured_rtt() {
    // A receiver's ACKs carry 100 ms ± 50 ms until an ACK2 gave it a
    // sample. Our sender took that as its own first RTT sample and then
    // moved off it at 1/8 per ACK: on a 0.5 ms path its RTT still read
    // tens of milliseconds when Startup's overshoot had to be repaired,
    // and the receiver's NAKs of a packet resent "less than an RTT ago"
    // were taken as stale: 1 MiB took 121 ms, 70 of them without a
    // packet sent.
    init_logs();
    let l = link(1000, Duration::from_micros(250), Loss::None);
    let mut p = Pair::new(1, l.clone(), l, Config::default());
    let (a, b) = p.connect();
    let r = stream_bytes(&mut p.sim, (p.a, a), (p.b, b), 1 << 20, LIMIT);
    assert!(
        r.sender.rtt < Duration::from_millis(10),
        "{:?}",
        r.sender.rtt
    );
    assert!(
        r.elapsed < Duration::from_millis(80),
        "1 MiB over 1 Gbit/s took {:?}",
        r.elapsed
    );
}
