//! Congestion-control scenarios (issue 9) in the simulator, for the native
//! UDT controller and the model-based one: the paths of the table
//! (S2–S5), a long fat path, bursty loss, reordering, two flows sharing a
//! bottleneck and a newcomer joining a loss-based flow. Every byte is
//! checked. The bounds are loose on purpose (the simulator tables in
//! docs/congestion-control.md show the figures); they catch a controller
//! that stopped filling the link, a queue kept full, or flows that never
//! converge. Replay a failure with `UDT_SIM_SEED`.

mod common;

use std::time::Duration;

use common::{init_logs, stream_transfer, Pair};
use udt_core::cc::CcAlgorithm;
use udt_core::sim::scenario::{self, config_for, RunSpec, Scenario, ScenarioReport};
use udt_core::sim::{seed_from_env_or, Loss};
use udt_core::Config;

fn secs(s: u64) -> Duration {
    Duration::from_secs(s)
}

/// Runs `scenario` with every flow on `cc`, logging the result.
fn run(scenario: &Scenario, cc: CcAlgorithm, seconds: u64, warmup: u64) -> ScenarioReport {
    init_logs();
    let seed = seed_from_env_or(1);
    let r = scenario::run_with(
        scenario,
        cc,
        RunSpec::new(seed, secs(seconds), secs(warmup)),
    );
    log_report(&r, cc, seed);
    r
}

fn log_report(r: &ScenarioReport, cc: CcAlgorithm, seed: u64) {
    let flows: Vec<String> = r
        .flows
        .iter()
        .map(|f| format!("{} {:.1}", f.cc, f.goodput_mbps))
        .collect();
    eprintln!(
        "seed={seed} {} {cc}: {:.1} Mbit/s ({:.0} % of {} Mbit/s), flows [{}], queue p50 {:?} p99 {:?}",
        r.scenario,
        r.total_goodput_mbps(),
        r.efficiency() * 100.0,
        r.rate_mbps,
        flows.join(", "),
        r.queue_delay.percentile(0.5),
        r.queue_delay.percentile(0.99),
    );
}

/// The model-based controller fills a lossy path (at least `share` of the
/// link after the warm-up) and beats the native controller at least
/// threefold, as the issue asks.
fn fills_and_beats_native(s: Scenario, cc: CcAlgorithm, share: f64, seconds: u64, warmup: u64) {
    let model = run(&s, cc, seconds, warmup);
    let native = run(&s, CcAlgorithm::Udt, seconds, warmup);
    assert!(
        model.efficiency() >= share,
        "{} with {cc}: {:.1} % of the link",
        s.name,
        model.efficiency() * 100.0
    );
    assert!(
        model.total_goodput_mbps() >= 3.0 * native.total_goodput_mbps(),
        "{}: {cc} {:.1} Mbit/s, native {:.1} Mbit/s",
        s.name,
        model.total_goodput_mbps(),
        native.total_goodput_mbps()
    );
}

#[test]
fn s2_100mbit_20ms_half_percent_loss() {
    fills_and_beats_native(Scenario::s2(), CcAlgorithm::Bbr, 0.85, 6, 2);
}

#[test]
fn s3_300mbit_50ms_one_percent_loss() {
    fills_and_beats_native(Scenario::s3(), CcAlgorithm::Bbr, 0.85, 6, 2);
}

/// Our sender with `cc` into a receiver that reports each loss once, as
/// libudt0 does (no periodic NAK, fixed 8192-packet buffers): a lost
/// retransmission or a lost NAK shows in no later NAK, so only the
/// sender's own loss detection keeps the window from stalling. It must
/// fill at least `share` of the link, beat the native controller into the
/// same receiver threefold, and presume no more packets lost than the
/// receiver reported (beyond the first missing packet a presumed loss is a
/// guess, partly duplicates; a storm of them once made the link collapse
/// after Startup's overshoot).
fn into_a_udt4_like_receiver(s: Scenario, cc: CcAlgorithm, share: f64) {
    init_logs();
    let seed = seed_from_env_or(1);
    let spec = RunSpec::new(seed, secs(6), secs(2));
    let ours = scenario::run_into_udt4(&s, &[config_for(cc)], spec);
    log_report(&ours, cc, seed);
    let native = scenario::run_into_udt4(&s, &[config_for(CcAlgorithm::Udt)], spec);
    log_report(&native, CcAlgorithm::Udt, seed);
    let sender = &ours.flows[0].sender;
    eprintln!(
        "retransmitted {:.2} % ({} reported lost, {} presumed lost), timeouts {}",
        sender.retransmit_ratio() * 100.0,
        sender.packets_reported_lost,
        sender.packets_presumed_lost,
        sender.timeouts
    );
    assert!(
        ours.efficiency() >= share,
        "{} into a UDT4-like receiver with {cc}: {:.1} % of the link",
        s.name,
        ours.efficiency() * 100.0
    );
    assert!(
        ours.total_goodput_mbps() >= 3.0 * native.total_goodput_mbps(),
        "{}: {cc} {:.1} Mbit/s, native {:.1} Mbit/s",
        s.name,
        ours.total_goodput_mbps(),
        native.total_goodput_mbps()
    );
    assert!(
        sender.packets_presumed_lost <= sender.packets_reported_lost,
        "{}: {} presumed lost, {} reported lost",
        s.name,
        sender.packets_presumed_lost,
        sender.packets_reported_lost
    );
}

#[test]
fn s3_into_a_udt4_like_receiver() {
    into_a_udt4_like_receiver(Scenario::s3(), CcAlgorithm::Bbr, 0.85);
}

#[test]
fn s5_into_a_udt4_like_receiver() {
    into_a_udt4_like_receiver(Scenario::s5(), CcAlgorithm::BbrBulk, 0.60);
}

/// S3 with both receivers reading in batches as on real sockets: every
/// millisecond, and now and then after a stall. Both then report an arrival
/// speed of ~1 000 000 packets/s, which caps no delivery sample; before the
/// flight bound of docs/congestion-control.md 7.2 the model ran above the
/// link after Startup, and the bottleneck queue overflowed every second or
/// two (seed 1: 5 400 drops in 12 s into ours, 93 % of the link; now 33
/// and 98 %, and 38 into the UDT4-like receiver).
#[test]
fn batched_reads_keep_the_model_at_the_link() {
    init_logs();
    let seed = seed_from_env_or(1);
    let s = Scenario::s3().batched();
    let spec = RunSpec::new(seed, secs(12), secs(4));
    for (udt4, name) in [(false, "ours"), (true, "UDT4-like")] {
        let flows = [config_for(CcAlgorithm::Bbr)];
        let r = if udt4 {
            scenario::run_into_udt4(&s, &flows, spec)
        } else {
            scenario::run(&s, &flows, Config::default(), spec)
        };
        log_report(&r, CcAlgorithm::Bbr, seed);
        eprintln!("into {name}: {} queue drops", r.link.queue_dropped);
        assert!(
            r.efficiency() >= 0.9,
            "into {name}: {:.1} % of the link",
            r.efficiency() * 100.0
        );
        assert!(
            r.link.queue_dropped <= 1_000,
            "into {name}: {} queue drops",
            r.link.queue_dropped
        );
    }
}

#[test]
fn s4_500mbit_100ms_no_loss() {
    let model = run(&Scenario::s4(), CcAlgorithm::Bbr, 8, 3);
    assert!(model.efficiency() >= 0.90, "{:.3}", model.efficiency());
    // The native controller also fills a clean path, only slower: it must
    // still move data (a sanity check of the scenario, not a target).
    let native = run(&Scenario::s4(), CcAlgorithm::Udt, 8, 3);
    assert!(native.efficiency() >= 0.3, "{:.3}", native.efficiency());
}

#[test]
fn s5_100mbit_10ms_five_percent_loss() {
    // 5 % random loss is above the fair profile's threshold: the bulk
    // profile is the one for such a link.
    fills_and_beats_native(Scenario::s5(), CcAlgorithm::BbrBulk, 0.60, 6, 2);
    // The fair profile takes 5 % per round trip for congestion and backs
    // off (still beating the native controller, which reads every loss as
    // congestion).
    let fair = run(&Scenario::s5(), CcAlgorithm::Bbr, 6, 2);
    let bulk = run(&Scenario::s5(), CcAlgorithm::BbrBulk, 6, 2);
    let native = run(&Scenario::s5(), CcAlgorithm::Udt, 6, 2);
    assert!(
        fair.efficiency() < 0.5 * bulk.efficiency(),
        "fair did not back off"
    );
    assert!(fair.total_goodput_mbps() > native.total_goodput_mbps());
}

#[test]
fn high_bdp_1gbit_200ms_tenth_percent_loss() {
    // 17 000 packets in flight: far beyond the 8192-packet default
    // buffers, so this needs the buffers to follow the BDP.
    let r = run(&Scenario::high_bdp(), CcAlgorithm::Bbr, 12, 6);
    assert!(r.efficiency() >= 0.85, "{:.3}", r.efficiency());
    let sender = &r.flows[0].sender;
    assert!(
        sender.send_buffer_packets > 17_000,
        "send buffer stayed at {} packets",
        sender.send_buffer_packets
    );
    // Bounded by the memory cap: half of 256 MiB in 1456-byte packets.
    assert!(sender.send_buffer_packets <= (128 << 20) / 1456);
}

#[test]
fn a_one_millisecond_lan_is_filled_although_acks_come_every_10_ms() {
    // Below 64 packets per 10 ms a UDT receiver acknowledges only on its
    // 10 ms timer: a controller that took the 1 ms RTT for its feedback
    // loop would see each round deliver one ACK interval's worth and stop
    // growing (it did: 8 % of the link).
    let r = run(&Scenario::lan(), CcAlgorithm::Bbr, 3, 1);
    assert!(r.efficiency() >= 0.85, "{:.3}", r.efficiency());
}

/// The same LAN into a UDT4 receiver, whose timers run only when a
/// datagram arrives or on a 100 ms sweep: a sender that sends its window
/// at once and waits hears the ACK only at the sweep unless it nudges the
/// receiver. Without the nudge Startup's rounds took ~100 ms and it ended
/// at a few hundred packets/s (real sockets into libudt0: 556-640); the
/// first second then carried 58 % of the link here, with it 92 %.
#[test]
fn a_lan_into_a_udt4_receiver_is_filled_although_its_acks_wait_for_arrivals() {
    init_logs();
    let seed = seed_from_env_or(1);
    let s = Scenario::lan();
    let flows = [config_for(CcAlgorithm::Bbr)];
    let r = scenario::run_into_udt4(&s, &flows, RunSpec::new(seed, secs(1), secs(0)));
    log_report(&r, CcAlgorithm::Bbr, seed);
    let sender = &r.flows[0].sender;
    eprintln!("ACK nudges sent: {}", sender.ack_nudges_sent);
    assert!(r.efficiency() >= 0.85, "{:.3}", r.efficiency());
}

#[test]
fn memory_cap_bounds_the_buffers() {
    init_logs();
    let seed = seed_from_env_or(2);
    let s = Scenario::high_bdp();
    let mut sender = config_for(CcAlgorithm::Bbr);
    sender.memory_cap = 32 << 20;
    let mut receiver = Config::default();
    receiver.memory_cap = 32 << 20;
    let r = scenario::run(
        &s,
        &[sender],
        receiver,
        RunSpec::new(seed, secs(6), secs(3)),
    );
    log_report(&r, CcAlgorithm::Bbr, seed);
    let cap_packets = (16 << 20) / 1456;
    let stats = &r.flows[0].sender;
    assert!(
        stats.send_buffer_packets <= cap_packets,
        "{}",
        stats.send_buffer_packets
    );
    assert!(stats.send_buffer_packets > 8192, "never grew");
    // 11 500 packets per buffer: the window caps the rate below the link.
    assert!(r.efficiency() < 0.85, "{:.3}", r.efficiency());
}

#[test]
fn bursty_loss_costs_no_more_than_the_loss() {
    let bursty = run(&Scenario::bursty(), CcAlgorithm::Bbr, 6, 2);
    let random = run(&Scenario::s3(), CcAlgorithm::Bbr, 6, 2);
    assert!(bursty.efficiency() >= 0.85, "{:.3}", bursty.efficiency());
    assert!(
        bursty.total_goodput_mbps() >= 0.9 * random.total_goodput_mbps(),
        "bursty {:.1}, random {:.1}",
        bursty.total_goodput_mbps(),
        random.total_goodput_mbps()
    );
}

#[test]
fn reordering_costs_no_more_than_the_loss() {
    let reordered = run(&Scenario::reordering(), CcAlgorithm::Bbr, 6, 2);
    let plain = run(&Scenario::s3(), CcAlgorithm::Bbr, 6, 2);
    assert!(
        reordered.total_goodput_mbps() >= 0.97 * plain.total_goodput_mbps(),
        "reordered {:.1}, plain {:.1}",
        reordered.total_goodput_mbps(),
        plain.total_goodput_mbps()
    );
    // The receiver's reordering window holds the NAK of an overtaken
    // packet until it arrives: no spurious retransmission. Counted as the
    // resends beyond what the link lost or dropped, not against the plain
    // path's resend ratio: a change of Startup's overshoot moves the
    // queue's drops in one run and not the other (before the window, 1.95 %
    // were resent against 1.06 % on the plain path: 0.9 % spurious).
    let sender = &reordered.flows[0].sender;
    let link = &reordered.link;
    let spurious = sender
        .packets_retransmitted
        .saturating_sub(link.lost + link.queue_dropped);
    assert!(
        spurious as f64 <= 0.002 * sender.packets_sent as f64,
        "{spurious} resends beyond the link's {} lost and {} dropped, of {} sent",
        link.lost,
        link.queue_dropped,
        sender.packets_sent
    );
}

/// A LAN path of 200 µs behind a 64-packet queue: the window's ACK
/// opened it while the sender waited, and the pacer's millisecond of
/// catch-up sent a whole window into the queue at once (2.5 % lost, 42 %
/// of the link). The model-based controller now bounds that burst.
#[test]
fn a_short_path_behind_a_shallow_queue_is_not_flooded_by_bursts() {
    let r = run(&Scenario::lan_shallow(), CcAlgorithm::Bbr, 6, 2);
    assert!(r.efficiency() >= 0.55, "{:.3}", r.efficiency());
    let resent = r.flows[0].sender.retransmit_ratio();
    assert!(resent < 0.01, "{resent:.4}");
}

#[test]
fn a_lone_flow_fills_the_link_without_keeping_the_queue_full() {
    for cc in [CcAlgorithm::Bbr, CcAlgorithm::BbrBulk] {
        let r = run(&Scenario::clean_queue(), cc, 6, 2);
        assert!(r.efficiency() >= 0.9, "{cc}: {:.3}", r.efficiency());
        // The queue holds 50 ms: a controller that paces at the bottleneck
        // keeps it nearly empty.
        assert!(r.queue_delay.percentile(0.5) <= secs(0) + Duration::from_millis(5));
        assert!(r.queue_delay.percentile(0.99) <= Duration::from_millis(25));
    }
}

#[test]
fn two_flows_converge_to_equal_shares() {
    let s = Scenario::two_flows();
    let r = run(&s, CcAlgorithm::Bbr, 14, 2);
    // The second flow starts at 2 s; from 4 s on the two are within 20 %.
    let bin = Duration::from_millis(100);
    let a = r.flows[0].goodput_between(bin, secs(4), secs(14));
    let b = r.flows[1].goodput_between(bin, secs(4), secs(14));
    assert!(a.min(b) >= 0.8 * a.max(b), "shares {a:.1} and {b:.1}");
    assert!(a + b >= 90.0, "together {:.1} Mbit/s", a + b);
    // The newcomer took the queue it joined for path delay, so its window
    // reads larger; both look for the minimum RTT again 5 s after they last
    // saw it (BBRv2/v3's interval) and the split evens out. (With BBRv1's
    // 10 s it stayed 44 / 54 here until 12 s.)
    let a = r.flows[0].goodput_between(bin, secs(8), secs(14));
    let b = r.flows[1].goodput_between(bin, secs(8), secs(14));
    assert!(
        a.min(b) >= 0.9 * a.max(b),
        "shares after ProbeRtt {a:.1} and {b:.1}"
    );
    assert!(r.queue_delay.percentile(0.99) < Duration::from_millis(45));
}

#[test]
fn a_newcomer_does_not_take_over_from_a_loss_based_flow() {
    init_logs();
    let seed = seed_from_env_or(3);
    let s = Scenario::shared();
    let flows = [config_for(CcAlgorithm::Udt), config_for(CcAlgorithm::Bbr)];
    let r = scenario::run(
        &s,
        &flows,
        Config::default(),
        RunSpec::new(seed, secs(10), secs(4)),
    );
    log_report(&r, CcAlgorithm::Bbr, seed);
    let (native, model) = (r.flows[0].goodput_mbps, r.flows[1].goodput_mbps);
    // The native flow keeps at least a third of the link; the newcomer gets
    // a share too (it is not starved either).
    assert!(native >= 33.0, "native {native:.1}, bbr {model:.1}");
    assert!(model >= 10.0, "native {native:.1}, bbr {model:.1}");
}

#[test]
fn byte_exact_transfer_with_close_on_a_lossy_long_path() {
    // The harness checks every byte and the EOF after the sender's close,
    // with the model-based controller and buffers growing past 8192.
    init_logs();
    let seed = seed_from_env_or(4);
    let s = Scenario::s3();
    let mut config = config_for(CcAlgorithm::Bbr);
    config.linger = Some(Duration::from_secs(600));
    let mut p = Pair::new(seed, s.link(), s.link(), config);
    let (a, b) = p.connect();
    let r = stream_transfer(&mut p.sim, (p.a, a), (p.b, b), 128 << 20, secs(600));
    eprintln!(
        "seed={seed}: 128 MiB in {:?}: {:.1} Mbit/s, send buffer {} packets",
        r.elapsed,
        r.goodput_mbps(),
        r.sender.send_buffer_packets
    );
    assert!(r.goodput_mbps() > 150.0, "{:.1} Mbit/s", r.goodput_mbps());
}

#[test]
fn high_bdp_without_loss_grows_the_receive_window() {
    // No loss holds the receiver's window edge still, so the sender that
    // the window holds back arrives a round trip behind the newest edge:
    // judged against that edge, the 8192-packet default never grew (47 %
    // of the link).
    let s = Scenario {
        loss: Loss::None,
        ..Scenario::high_bdp()
    };
    let r = run(&s, CcAlgorithm::Bbr, 12, 6);
    assert!(r.efficiency() >= 0.9, "{:.3}", r.efficiency());
    let limits = &r.flows[0].sender.send_limits;
    assert!(
        limits.flow_window < secs(1),
        "held by the receive window for {:?}",
        limits.flow_window
    );
}
