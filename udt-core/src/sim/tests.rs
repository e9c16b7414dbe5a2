//! Tests of the simulator with toy endpoints: a pinger that sends numbered,
//! checksummed datagrams on a schedule, and a sink that logs (and may echo)
//! what arrives.

use super::*;
use std::collections::VecDeque;

/// seq (4) + send time in ns since the epoch (8) + fill + FNV-1a (4).
const HEADER: usize = 16;

fn fnv1a(bytes: &[u8]) -> u32 {
    bytes.iter().fold(0x811c_9dc5u32, |h, &b| {
        (h ^ b as u32).wrapping_mul(0x0100_0193)
    })
}

/// One arrival as a sink saw it.
#[derive(Clone, Debug, PartialEq, Eq)]
struct Arrival {
    at: Duration,
    from: SocketAddr,
    /// `None` for datagrams too short to carry a header.
    seq: Option<u32>,
    sent_at: Duration,
    len: usize,
    is_intact: bool,
}

/// A toy endpoint: optionally sends `total` datagrams to `peer` every
/// `interval` from `start`, logs arrivals, optionally echoes them, and has
/// one optional timer.
struct Toy {
    epoch: Instant,
    start: Instant,
    peer: Option<SocketAddr>,
    total: u32,
    sent: u32,
    interval: Duration,
    size: fn(u32) -> usize,
    is_echo: bool,
    echo_queue: VecDeque<(SocketAddr, Vec<u8>)>,
    log: Vec<Arrival>,
    /// (time, 'd' datagram | 't' timeout), for ordering tests.
    calls: Vec<(Duration, char)>,
    timer: Option<Instant>,
    /// A wakeup that never goes away: a buggy endpoint.
    stuck_at: Option<Instant>,
}

impl Toy {
    fn sink(epoch: Instant) -> Self {
        Toy {
            epoch,
            start: epoch,
            peer: None,
            total: 0,
            sent: 0,
            interval: Duration::ZERO,
            size: |_| 100,
            is_echo: false,
            echo_queue: VecDeque::new(),
            log: Vec::new(),
            calls: Vec::new(),
            timer: None,
            stuck_at: None,
        }
    }

    fn pinger(epoch: Instant, peer: SocketAddr, total: u32, interval: Duration) -> Self {
        Toy {
            peer: Some(peer),
            total,
            interval,
            ..Toy::sink(epoch)
        }
    }

    fn with_size(mut self, size: fn(u32) -> usize) -> Self {
        self.size = size;
        self
    }

    fn echoing(mut self) -> Self {
        self.is_echo = true;
        self
    }

    fn next_send(&self) -> Option<Instant> {
        (self.peer.is_some() && self.sent < self.total)
            .then(|| self.start + self.interval * self.sent)
    }

    fn seqs(&self) -> Vec<u32> {
        self.log.iter().filter_map(|a| a.seq).collect()
    }
}

impl Endpoint for Toy {
    fn handle_datagram(&mut self, now: Instant, from: SocketAddr, datagram: &[u8]) {
        self.calls.push((now - self.epoch, 'd'));
        let (seq, sent_at, is_intact) = match datagram {
            [s0, s1, s2, s3, t @ ..] if datagram.len() >= HEADER => {
                let mut ns = [0u8; 8];
                ns.copy_from_slice(&t[..8]);
                let body = &datagram[..datagram.len() - 4];
                let mut sum = [0u8; 4];
                sum.copy_from_slice(&datagram[datagram.len() - 4..]);
                (
                    Some(u32::from_be_bytes([*s0, *s1, *s2, *s3])),
                    Duration::from_nanos(u64::from_be_bytes(ns)),
                    fnv1a(body) == u32::from_be_bytes(sum),
                )
            }
            _ => (None, Duration::ZERO, true),
        };
        self.log.push(Arrival {
            at: now - self.epoch,
            from,
            seq,
            sent_at,
            len: datagram.len(),
            is_intact,
        });
        if self.is_echo {
            self.echo_queue.push_back((from, datagram.to_vec()));
        }
    }

    fn handle_timeout(&mut self, now: Instant) {
        self.calls.push((now - self.epoch, 't'));
        if self.timer.is_some_and(|t| t <= now) {
            self.timer = None;
        }
    }

    fn poll_transmit(&mut self, now: Instant, buf: &mut Vec<u8>) -> Option<SocketAddr> {
        assert!(buf.is_empty(), "sim must hand out empty buffers");
        if let Some((to, bytes)) = self.echo_queue.pop_front() {
            buf.extend_from_slice(&bytes);
            return Some(to);
        }
        let at = self.next_send().filter(|&t| t <= now)?;
        let seq = self.sent;
        self.sent += 1;
        let len = (self.size)(seq);
        if len < HEADER {
            buf.resize(len, 0xAB);
        } else {
            buf.extend_from_slice(&seq.to_be_bytes());
            let ns = (at - self.epoch).as_nanos() as u64;
            buf.extend_from_slice(&ns.to_be_bytes());
            buf.extend((0..len - HEADER).map(|i| (i as u32 ^ seq) as u8));
            let sum = fnv1a(buf);
            buf.extend_from_slice(&sum.to_be_bytes());
        }
        self.peer
    }

    fn poll_wakeup(&self) -> Option<Instant> {
        [self.next_send(), self.timer, self.stuck_at]
            .into_iter()
            .flatten()
            .min()
    }
}

fn addr(port: u16) -> SocketAddr {
    SocketAddr::from(([10, 0, 0, 1], port))
}

use crate::time::test_epoch as epoch;

/// A pinger at node 0 sending to a sink at node 1 over `ab` (and `ba`
/// back).
fn pair(
    seed: u64,
    pinger: fn(Instant, SocketAddr) -> Toy,
    ab: LinkConfig,
    ba: LinkConfig,
) -> (Sim<Toy>, NodeId, NodeId) {
    let t0 = epoch();
    let mut sim = Sim::with_epoch(seed, t0);
    let a = sim.add_node(addr(1), pinger(t0, addr(2)));
    let b = sim.add_node(addr(2), Toy::sink(t0));
    sim.link(a, b, ab, ba);
    (sim, a, b)
}

/// Runs until the pinger has sent everything and nothing is in flight.
fn run_to_end(sim: &mut Sim<Toy>, a: NodeId, limit: Duration) {
    let result = sim.run_until(
        |s| s.node(a).sent == s.node(a).total && s.in_flight() == 0,
        limit,
    );
    if let Err(e) = result {
        panic!("{e}");
    }
}

fn ms(n: u64) -> Duration {
    Duration::from_millis(n)
}

fn us(n: u64) -> Duration {
    Duration::from_micros(n)
}

/// Checks the conservation law of link counters once nothing is in flight.
fn assert_conserved(s: &LinkStats) {
    assert_eq!(s.in_flight(), 0, "{s:?}");
    assert_eq!(
        s.sent + s.duplicated,
        s.delivered + s.lost + s.queue_dropped + s.mtu_dropped + s.blackholed,
        "{s:?}"
    );
}

fn messy_link() -> LinkConfig {
    LinkConfig {
        delay: ms(20),
        jitter: ms(3),
        loss: Loss::Bernoulli(0.1),
        duplicate: 0.05,
        reorder: 0.0,
        reorder_delay: Duration::ZERO,
        corrupt: 0.05,
        bandwidth_bps: Some(10_000_000),
        queue_bytes: 20_000,
        mtu: 1500,
        blackhole: false,
        read_batching: None,
    }
}

/// Everything both endpoints saw, for determinism comparisons.
fn echo_run(seed: u64) -> (Vec<Arrival>, Vec<Arrival>, LinkStats, LinkStats) {
    let t0 = epoch();
    let mut sim = Sim::with_epoch(seed, t0);
    let a = sim.add_node(
        addr(1),
        Toy::pinger(t0, addr(2), 2000, us(500)).with_size(|i| 64 + (i as usize * 37) % 1400),
    );
    let b = sim.add_node(addr(2), Toy::sink(t0).echoing());
    sim.link(a, b, messy_link(), messy_link());
    run_to_end(&mut sim, a, Duration::from_secs(10));
    let (ab, ba) = (
        *sim.link_stats(a, b).unwrap(),
        *sim.link_stats(b, a).unwrap(),
    );
    (sim.node(a).log.clone(), sim.node(b).log.clone(), ab, ba)
}

#[test]
fn same_seed_same_run_different_seed_different_run() {
    let first = echo_run(1234);
    let again = echo_run(1234);
    let other = echo_run(1235);
    assert!(first.1.len() > 1000, "too few arrivals: {}", first.1.len());
    assert_eq!(first, again);
    assert_ne!(first.0, other.0);
    assert_ne!(first.1, other.1);
    for s in [&first.2, &first.3] {
        assert_conserved(s);
        assert!(s.lost > 0 && s.duplicated > 0 && s.corrupted > 0, "{s:?}");
    }
    // a offers 11 Mbit/s to a 10 Mbit/s bottleneck.
    assert!(first.2.queue_dropped > 0, "{:?}", first.2);
}

#[test]
fn bernoulli_loss_rate_over_100k_datagrams() {
    for seed in [1u64, 99] {
        let (mut sim, a, b) = pair(
            seed,
            |t0, to| Toy::pinger(t0, to, 100_000, us(10)),
            LinkConfig {
                loss: Loss::Bernoulli(0.1),
                ..LinkConfig::ideal(ms(1))
            },
            LinkConfig::ideal(ms(1)),
        );
        run_to_end(&mut sim, a, Duration::from_secs(10));
        let got = sim.node(b).log.len() as f64;
        let rate = 1.0 - got / 100_000.0;
        // 3σ of a binomial(100k, 0.1) fraction is 0.0028.
        assert!((rate - 0.1).abs() < 0.004, "seed={seed} rate={rate}");
        let s = sim.link_stats(a, b).unwrap();
        assert_eq!(s.sent, 100_000);
        assert_eq!(s.delivered as f64, got);
        assert_eq!(s.lost, s.sent - s.delivered);
        assert_conserved(s);
    }
}

/// Mean length of runs of missing sequence numbers in `0..total`.
fn mean_loss_burst(received: &[u32], total: u32) -> (f64, f64) {
    let mut seen = vec![false; total as usize];
    for &s in received {
        seen[s as usize] = true;
    }
    let (mut lost, mut bursts) = (0u32, 0u32);
    let mut prev_lost = false;
    for &ok in &seen {
        if !ok {
            lost += 1;
            if !prev_lost {
                bursts += 1;
            }
        }
        prev_lost = !ok;
    }
    (
        lost as f64 / total as f64,
        lost as f64 / bursts.max(1) as f64,
    )
}

#[test]
fn gilbert_elliott_loses_in_bursts() {
    let ge = Loss::GilbertElliott {
        p_good_to_bad: 0.01,
        p_bad_to_good: 0.25,
        loss_good: 0.0,
        loss_bad: 1.0,
    };
    let mean = ge.mean_loss();
    let run = |loss: Loss| {
        let (mut sim, a, b) = pair(
            7,
            |t0, to| Toy::pinger(t0, to, 100_000, us(10)),
            LinkConfig {
                loss,
                ..LinkConfig::ideal(ms(1))
            },
            LinkConfig::ideal(ms(1)),
        );
        run_to_end(&mut sim, a, Duration::from_secs(10));
        mean_loss_burst(&sim.node(b).seqs(), 100_000)
    };
    let (ge_rate, ge_burst) = run(ge);
    let (bern_rate, bern_burst) = run(Loss::Bernoulli(mean));
    assert!(
        (ge_rate - mean).abs() < 0.01,
        "ge_rate={ge_rate} mean={mean}"
    );
    assert!((bern_rate - mean).abs() < 0.004, "bern_rate={bern_rate}");
    assert!(ge_burst > 3.0, "ge_burst={ge_burst}");
    assert!(bern_burst < 1.2, "bern_burst={bern_burst}");
}

#[test]
fn bandwidth_cap_spaces_arrivals_exactly() {
    // 1000 bytes at 8 Mbit/s take exactly 1 ms on the wire.
    let (mut sim, a, b) = pair(
        3,
        |t0, to| Toy::pinger(t0, to, 500, Duration::ZERO).with_size(|_| 1000),
        LinkConfig {
            bandwidth_bps: Some(8_000_000),
            queue_bytes: 1_000_000,
            ..LinkConfig::ideal(ms(10))
        },
        LinkConfig::ideal(ms(10)),
    );
    run_to_end(&mut sim, a, Duration::from_secs(10));
    let log = &sim.node(b).log;
    assert_eq!(log.len(), 500);
    for (i, arrival) in log.iter().enumerate() {
        assert_eq!(arrival.seq, Some(i as u32));
        assert_eq!(arrival.at, ms(10) + ms(1) * (i as u32 + 1), "datagram {i}");
    }
}

#[test]
fn bandwidth_cap_limits_the_delivery_rate() {
    // Offer 1472-byte datagrams every 1 ms (11.8 Mbit/s) to a 10 Mbit/s
    // bottleneck: the queue fills, and delivery runs at the cap.
    let (mut sim, a, b) = pair(
        4,
        |t0, to| Toy::pinger(t0, to, 4000, ms(1)).with_size(|_| 1472),
        LinkConfig {
            bandwidth_bps: Some(10_000_000),
            queue_bytes: 50_000,
            ..LinkConfig::ideal(ms(5))
        },
        LinkConfig::ideal(ms(5)),
    );
    run_to_end(&mut sim, a, Duration::from_secs(10));
    let log = &sim.node(b).log;
    let s = sim.link_stats(a, b).unwrap();
    assert!(s.queue_dropped > 300, "{s:?}");
    // Measure between the 1000th and the last arrival (queue full).
    let (first, last) = (&log[1000], log.last().unwrap());
    let bits = (log.len() - 1001) as f64 * 1472.0 * 8.0;
    let bps = bits / (last.at - first.at).as_secs_f64();
    assert!((bps - 10e6).abs() / 10e6 < 0.001, "bps={bps}");
    assert_conserved(s);
}

#[test]
fn drop_tail_drops_what_the_queue_cannot_hold() {
    // 100 × 1000 bytes at once: one goes on the wire, 10 fit in 10 kB.
    let (mut sim, a, b) = pair(
        5,
        |t0, to| Toy::pinger(t0, to, 100, Duration::ZERO).with_size(|_| 1000),
        LinkConfig {
            bandwidth_bps: Some(8_000_000),
            queue_bytes: 10_000,
            ..LinkConfig::ideal(ms(10))
        },
        LinkConfig::ideal(ms(10)),
    );
    run_to_end(&mut sim, a, Duration::from_secs(10));
    assert_eq!(sim.node(b).seqs(), (0..11).collect::<Vec<_>>());
    let s = sim.link_stats(a, b).unwrap();
    assert_eq!((s.sent, s.delivered, s.queue_dropped), (100, 11, 89));
    assert_eq!(s.delivered_bytes, 11_000);
    assert_conserved(s);
}

fn reorders(seqs: &[u32]) -> usize {
    let mut max = None;
    let mut count = 0;
    for &s in seqs {
        if max.is_some_and(|m| s < m) {
            count += 1;
        }
        max = max.max(Some(s));
    }
    count
}

#[test]
fn jitter_reorders_and_no_jitter_keeps_order() {
    let run = |jitter: Duration| {
        let (mut sim, a, b) = pair(
            6,
            |t0, to| Toy::pinger(t0, to, 1000, us(100)),
            LinkConfig {
                jitter,
                ..LinkConfig::ideal(ms(10))
            },
            LinkConfig::ideal(ms(10)),
        );
        run_to_end(&mut sim, a, Duration::from_secs(10));
        sim.node(b).log.clone()
    };
    let smooth = run(Duration::ZERO);
    assert_eq!(smooth.len(), 1000);
    assert_eq!(
        reorders(&smooth.iter().filter_map(|a| a.seq).collect::<Vec<_>>()),
        0
    );
    for a in &smooth {
        assert_eq!(a.at, a.sent_at + ms(10));
    }
    let jittery = run(ms(5));
    assert_eq!(jittery.len(), 1000);
    let seqs: Vec<u32> = jittery.iter().filter_map(|a| a.seq).collect();
    assert!(reorders(&seqs) > 100, "reorders={}", reorders(&seqs));
    for a in &jittery {
        let d = a.at - a.sent_at;
        assert!(d >= ms(10) && d <= ms(15), "{a:?}");
    }
}

#[test]
fn duplication_delivers_extra_intact_copies() {
    let (mut sim, a, b) = pair(
        8,
        |t0, to| Toy::pinger(t0, to, 20_000, us(50)),
        LinkConfig {
            duplicate: 0.2,
            jitter: ms(1),
            ..LinkConfig::ideal(ms(10))
        },
        LinkConfig::ideal(ms(10)),
    );
    run_to_end(&mut sim, a, Duration::from_secs(10));
    let s = *sim.link_stats(a, b).unwrap();
    assert!((3700..4300).contains(&s.duplicated), "{s:?}");
    assert_eq!(s.delivered, s.sent + s.duplicated);
    let mut copies = vec![0u32; 20_000];
    for a in &sim.node(b).log {
        assert!(a.is_intact);
        copies[a.seq.unwrap() as usize] += 1;
    }
    assert!(copies.iter().all(|&c| c == 1 || c == 2));
    assert_eq!(
        copies.iter().filter(|&&c| c == 2).count() as u64,
        s.duplicated
    );
    assert_conserved(&s);
}

#[test]
fn corruption_flips_bits_in_the_counted_datagrams() {
    let (mut sim, a, b) = pair(
        9,
        |t0, to| Toy::pinger(t0, to, 10_000, us(50)),
        LinkConfig {
            corrupt: 0.1,
            duplicate: 0.1,
            ..LinkConfig::ideal(ms(10))
        },
        LinkConfig::ideal(ms(10)),
    );
    run_to_end(&mut sim, a, Duration::from_secs(10));
    let s = *sim.link_stats(a, b).unwrap();
    let broken = sim.node(b).log.iter().filter(|a| !a.is_intact).count() as u64;
    assert_eq!(broken, s.corrupted);
    assert!((800..1400).contains(&broken), "{s:?}");
}

#[test]
fn datagrams_over_the_mtu_are_dropped() {
    let (mut sim, a, b) = pair(
        10,
        |t0, to| {
            Toy::pinger(t0, to, 100, us(100)).with_size(|i| if i % 2 == 0 { 1400 } else { 1501 })
        },
        LinkConfig {
            mtu: 1500,
            ..LinkConfig::ideal(ms(1))
        },
        LinkConfig::ideal(ms(1)),
    );
    run_to_end(&mut sim, a, Duration::from_secs(1));
    assert_eq!(sim.node(b).seqs(), (0..100).step_by(2).collect::<Vec<_>>());
    let s = sim.link_stats(a, b).unwrap();
    assert_eq!((s.mtu_dropped, s.delivered), (50, 50));
    assert_conserved(s);
}

#[test]
fn blackhole_toggled_mid_run_drops_only_what_is_sent_during_it() {
    let (mut sim, a, b) = pair(
        11,
        |t0, to| Toy::pinger(t0, to, 1000, ms(1)),
        LinkConfig::ideal(ms(5)),
        LinkConfig::ideal(ms(5)),
    );
    sim.run_for(ms(300));
    assert_eq!(sim.elapsed(), ms(300));
    sim.link_config_mut(a, b).unwrap().blackhole = true;
    sim.run_for(ms(200));
    sim.link_config_mut(a, b).unwrap().blackhole = false;
    run_to_end(&mut sim, a, Duration::from_secs(2));
    // Sent at 0..=300 ms (those in flight at the toggle still arrive) and
    // after 500 ms; the datagram sent at exactly 500 ms was in the outage.
    let expected: Vec<u32> = (0..=300).chain(501..1000).collect();
    assert_eq!(sim.node(b).seqs(), expected);
    let s = sim.link_stats(a, b).unwrap();
    assert_eq!(s.blackholed, 200);
    assert_conserved(s);
}

#[test]
fn directions_are_independent() {
    // What b receives from a must not depend on b's traffic back to a.
    let run = |echo: bool| {
        let t0 = epoch();
        let mut sim = Sim::with_epoch(77, t0);
        let a = sim.add_node(addr(1), Toy::pinger(t0, addr(2), 5000, us(200)));
        let sink = Toy::sink(t0);
        let b = sim.add_node(addr(2), if echo { sink.echoing() } else { sink });
        sim.link(a, b, messy_link(), messy_link());
        run_to_end(&mut sim, a, Duration::from_secs(10));
        (sim.node(b).log.clone(), *sim.link_stats(b, a).unwrap())
    };
    let (quiet, back_quiet) = run(false);
    let (busy, back_busy) = run(true);
    assert_eq!(back_quiet.sent, 0);
    assert!(back_busy.sent > 4000);
    assert_eq!(quiet, busy);
}

#[test]
fn unroutable_datagrams_are_counted_and_dropped() {
    let t0 = epoch();
    let mut sim = Sim::with_epoch(12, t0);
    let a = sim.add_node(addr(1), Toy::pinger(t0, addr(9), 5, ms(1)));
    // b exists but has no link from a.
    let b = sim.add_node(addr(2), Toy::pinger(t0, addr(1), 3, ms(1)));
    let c = sim.add_node(addr(3), Toy::sink(t0));
    sim.link(a, c, LinkConfig::default(), LinkConfig::default());
    sim.run_for(ms(100));
    assert_eq!(sim.unroutable(), 8);
    assert!(sim.node(a).log.is_empty() && sim.node(b).log.is_empty());
    assert!(sim.link_stats(a, b).is_none());
    assert!(sim.link_config_mut(b, a).is_none());
    assert_eq!(sim.link_stats(a, c).unwrap().sent, 0);
}

#[test]
fn datagram_before_timeout_at_one_instant() {
    let (mut sim, _a, b) = pair(
        13,
        |t0, to| Toy::pinger(t0, to, 1, Duration::ZERO),
        LinkConfig::ideal(ms(10)),
        LinkConfig::ideal(ms(10)),
    );
    let at = sim.now() + ms(10);
    sim.node_mut(b).timer = Some(at);
    sim.run_for(ms(50));
    assert_eq!(sim.node(b).calls, vec![(ms(10), 'd'), (ms(10), 't')]);
}

#[test]
fn poke_after_the_app_changes_a_node() {
    let (mut sim, a, b) = pair(
        14,
        |t0, to| Toy::pinger(t0, to, 0, ms(1)),
        LinkConfig::ideal(ms(10)),
        LinkConfig::ideal(ms(10)),
    );
    sim.run_for(ms(100));
    assert!(!sim.step(), "nothing should be pending");
    // The app asks for 3 more datagrams "now" (a burst).
    let now = sim.now();
    let node = sim.node_mut(a);
    node.total = 3;
    node.start = now;
    node.interval = Duration::ZERO;
    sim.run_for(ms(20));
    let arrivals: Vec<_> = sim.node(b).log.iter().map(|x| x.at).collect();
    assert_eq!(arrivals, vec![ms(110); 3]);
    // An explicit poke with nothing changed is harmless: it needs no step.
    sim.poke(a);
    assert!(!sim.step());
}

#[test]
fn step_reports_an_empty_network() {
    let mut sim: Sim<Toy> = Sim::new(15);
    assert!(!sim.step());
    assert_eq!(sim.elapsed(), Duration::ZERO);
    assert_eq!(sim.seed(), 15);
    let err = sim.run_until(|_| false, ms(10)).unwrap_err();
    assert_eq!(
        err,
        SimError::Stalled {
            seed: 15,
            elapsed: Duration::ZERO,
            reason: StallReason::NoEvents
        }
    );
    assert!(err.to_string().contains("seed=15"), "{err}");
    sim.run_for(ms(10));
    assert_eq!(sim.elapsed(), ms(10));
}

#[test]
fn run_until_stops_at_the_time_limit_exactly() {
    let (mut sim, a, b) = pair(
        1234,
        |t0, to| Toy::pinger(t0, to, u32::MAX, ms(3)),
        LinkConfig::default(),
        LinkConfig::default(),
    );
    let err = sim
        .run_until(|_| false, Duration::from_secs(1))
        .unwrap_err();
    assert_eq!(
        err,
        SimError::TimeLimit {
            seed: 1234,
            elapsed: Duration::from_secs(1)
        }
    );
    assert!(err.to_string().contains("seed=1234"), "{err}");
    assert_eq!(sim.elapsed(), Duration::from_secs(1));
    // Sent at 0, 3, …, 999 ms: 334 datagrams, those up to 990 ms arrived.
    assert_eq!(sim.node(a).sent, 334);
    assert_eq!(sim.node(b).log.len(), 331);
    // A condition already true returns at once; one met later stops there.
    sim.run_until(|_| true, Duration::ZERO).unwrap();
    sim.run_until(|s| s.node(b).log.len() >= 340, Duration::from_secs(1))
        .unwrap();
    assert_eq!(sim.elapsed(), ms(1017) + ms(10));
    // No limit at all must not overflow.
    sim.run_until(|s| s.node(b).log.len() >= 341, Duration::MAX)
        .unwrap();
}

#[test]
fn stuck_wakeup_is_reported_as_no_progress() {
    let t0 = epoch();
    let mut sim = Sim::with_epoch(16, t0);
    let mut toy = Toy::sink(t0);
    toy.stuck_at = Some(t0);
    let a = sim.add_node(addr(1), toy);
    sim.set_stall_steps(1000);
    let err = sim
        .run_until(|_| false, Duration::from_secs(1))
        .unwrap_err();
    assert_eq!(
        err,
        SimError::Stalled {
            seed: 16,
            elapsed: Duration::ZERO,
            reason: StallReason::NoProgress { steps: 1000 }
        }
    );
    assert!(err.to_string().contains("seed=16"), "{err}");
    // Exactly one handle_timeout per step at the stuck instant (the first
    // step only drains the newly added node).
    let timeouts = sim.node(a).calls.iter().filter(|c| c.1 == 't').count();
    assert_eq!(timeouts, 1000);
}

#[test]
#[should_panic(expected = "seed=17")]
fn run_for_panics_on_a_stuck_endpoint() {
    let t0 = epoch();
    let mut sim = Sim::with_epoch(17, t0);
    let mut toy = Toy::sink(t0);
    toy.stuck_at = Some(t0 + ms(5));
    sim.add_node(addr(1), toy);
    sim.set_stall_steps(100);
    sim.run_for(ms(10));
}

#[test]
fn zero_delay_echo_loop_is_reported_as_no_progress() {
    let t0 = epoch();
    let mut sim = Sim::with_epoch(18, t0);
    let a = sim.add_node(
        addr(1),
        Toy::pinger(t0, addr(2), 1, Duration::ZERO).echoing(),
    );
    let b = sim.add_node(addr(2), Toy::sink(t0).echoing());
    sim.link(
        a,
        b,
        LinkConfig::ideal(Duration::ZERO),
        LinkConfig::ideal(Duration::ZERO),
    );
    let err = sim
        .run_until(|_| false, Duration::from_secs(1))
        .unwrap_err();
    assert!(
        matches!(
            err,
            SimError::Stalled {
                reason: StallReason::NoProgress { .. },
                ..
            }
        ),
        "{err}"
    );
    assert!(sim.node(b).log.len() > 1000);
}

#[test]
fn hostile_configs_do_not_panic() {
    let (mut sim, a, b) = pair(
        19,
        |t0, to| Toy::pinger(t0, to, 50, ms(1)).with_size(|i| (i % 3) as usize),
        LinkConfig {
            bandwidth_bps: Some(0),
            loss: Loss::Bernoulli(f64::NAN),
            duplicate: f64::INFINITY,
            corrupt: -1.0,
            ..LinkConfig::ideal(ms(1))
        },
        LinkConfig::ideal(Duration::MAX),
    );
    sim.run_for(ms(100));
    assert_eq!(sim.link_stats(a, b).unwrap().queue_dropped, 50);
    // Unlimited bandwidth, odd probabilities: tiny and empty datagrams
    // arrive, each twice (duplicate ≥ 1), never corrupted.
    let config = sim.link_config_mut(a, b).unwrap();
    config.bandwidth_bps = None;
    let node = sim.node_mut(a);
    node.total = 100;
    run_to_end(&mut sim, a, Duration::from_secs(1));
    let s = *sim.link_stats(a, b).unwrap();
    assert_eq!((s.delivered, s.duplicated, s.corrupted), (100, 50, 0));
    assert!(sim.node(b).log.iter().all(|x| x.len < 3 && x.seq.is_none()));
    assert_conserved(&s);
    // A delay that overflows Instant drops instead of panicking.
    sim.node_mut(b).peer = Some(addr(1));
    sim.node_mut(b).total = 5;
    sim.run_for(ms(10));
    assert_eq!(sim.link_stats(b, a).unwrap().blackholed, 5);
}

#[test]
fn relinking_replaces_config_and_counters() {
    let (mut sim, a, b) = pair(
        20,
        |t0, to| Toy::pinger(t0, to, 10, ms(1)),
        LinkConfig::ideal(ms(1)),
        LinkConfig::ideal(ms(1)),
    );
    sim.run_for(ms(100));
    assert_eq!(sim.link_stats(a, b).unwrap().delivered, 10);
    sim.link(a, b, LinkConfig::ideal(ms(2)), LinkConfig::ideal(ms(2)));
    assert_eq!(*sim.link_stats(a, b).unwrap(), LinkStats::default());
    assert_eq!(sim.link_config_mut(a, b).unwrap().delay, ms(2));
}

#[test]
fn steady_state_reuses_buffers() {
    let (mut sim, a, _b) = pair(
        21,
        |t0, to| Toy::pinger(t0, to, 50_000, us(20)).with_size(|_| 1400),
        LinkConfig {
            jitter: ms(1),
            duplicate: 0.01,
            ..LinkConfig::ideal(ms(10))
        },
        LinkConfig::ideal(ms(10)),
    );
    sim.run_for(ms(100));
    let (buffers, slots) = (sim.buffers_allocated, sim.flights.len());
    assert!(buffers > 0 && buffers < 1000, "buffers={buffers}");
    run_to_end(&mut sim, a, Duration::from_secs(5));
    // In flight never exceeds ~(delay + jitter) / interval × 1.01 + 1.
    assert!(
        sim.buffers_allocated <= buffers + 30,
        "{} vs {buffers}",
        sim.buffers_allocated
    );
    assert!(sim.flights.len() <= slots + 30);
}

#[test]
#[allow(clippy::disallowed_methods)] // the test needs one real Instant as an epoch
fn accessors_and_debug() {
    let t0 = Instant::now();
    let mut sim: Sim<Toy> = Sim::with_epoch(22, t0);
    let a = sim.add_node(addr(7), Toy::sink(t0));
    assert_eq!(sim.epoch(), t0);
    assert_eq!(sim.now(), t0);
    assert_eq!(sim.addr(a), addr(7));
    assert_eq!(a.index(), 0);
    let text = format!("{sim:?}");
    assert!(text.contains("seed: 22"), "{text}");
}

#[test]
#[should_panic(expected = "two nodes")]
fn duplicate_addresses_are_rejected() {
    let mut sim: Sim<Toy> = Sim::new(23);
    let t0 = sim.epoch();
    sim.add_node(addr(1), Toy::sink(t0));
    sim.add_node(addr(1), Toy::sink(t0));
}

#[test]
fn seeds_parse_and_random_seeds_differ() {
    assert_eq!(parse_seed("1234"), Some(1234));
    assert_eq!(parse_seed(" 0x1F \n"), Some(31));
    assert_eq!(parse_seed("0XfF"), Some(255));
    assert_eq!(parse_seed("18446744073709551615"), Some(u64::MAX));
    assert_eq!(parse_seed("18446744073709551616"), None);
    assert_eq!(parse_seed("-1"), None);
    assert_eq!(parse_seed("0x"), None);
    assert_eq!(parse_seed("seed"), None);
    assert_ne!(random_seed(), random_seed());
    // Unset in the test environment unless someone is replaying a seed.
    let expected = std::env::var("UDT_SIM_SEED")
        .ok()
        .and_then(|s| parse_seed(&s))
        .unwrap_or(5);
    assert_eq!(seed_from_env_or(5), expected);
}
