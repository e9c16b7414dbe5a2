//! The congestion-control scenarios of issue 9 in the deterministic
//! simulator, for each built-in controller, printed as a Markdown table
//! (kept in docs/congestion-control.md).
//!
//! `cargo bench --bench sim_cc` runs every scenario for 30 s of virtual
//! time with seeds 1, 2 and 3 and reports the median goodput after a 5 s
//! warm-up. Options: `--quick` (10 s, one seed), `--seeds N`, `--seed N`
//! (that seed alone),
//! `--seconds S`, `--warmup S`, `--only NAME[,NAME…]`, `--cc NAME[,NAME…]`,
//! `--detail` (per-second goodput and sender counters), `--transfer MIB`
//! (with `--detail`: how long the first MIB mebibytes took from the start,
//! ramp-up included, as the real-socket benchmark times a transfer).
//!
//! The rows named `S2-udt4`, `S3-udt4` and `S5-udt4` run those paths into a
//! receiver that reports each loss once, as libudt0 does
//! (`scenario::udt4_like_receiver`): our sender into a UDT4 receiver.
//! The rows named `…-batched` run their paths with receivers that read in
//! batches as on real sockets (`Scenario::batched`).

use std::time::{Duration, Instant};

use udt_core::cc::CcAlgorithm;
use udt_core::sim::scenario::{self, RunSpec, Scenario};

struct Options {
    seeds: u64,
    /// Run only this seed.
    seed: Option<u64>,
    seconds: f64,
    warmup: f64,
    only: Option<Vec<String>>,
    ccs: Vec<CcAlgorithm>,
    detail: bool,
    /// Mebibytes whose transfer time from the start `--detail` reports.
    transfer_mib: Option<f64>,
}

fn parse() -> Options {
    let mut o = Options {
        seeds: 3,
        seed: None,
        seconds: 30.0,
        warmup: 5.0,
        only: None,
        ccs: vec![CcAlgorithm::Udt, CcAlgorithm::Bbr, CcAlgorithm::BbrBulk],
        detail: false,
        transfer_mib: None,
    };
    let mut args = std::env::args().skip(1);
    while let Some(a) = args.next() {
        let mut value = || args.next().unwrap_or_default();
        match a.as_str() {
            "--detail" => o.detail = true,
            "--quick" => {
                o.seeds = 1;
                o.seconds = 10.0;
                o.warmup = 3.0;
            }
            "--seeds" => o.seeds = value().parse().unwrap_or(o.seeds),
            "--seed" => o.seed = value().parse().ok(),
            "--transfer" => o.transfer_mib = value().parse().ok(),
            "--seconds" => o.seconds = value().parse().unwrap_or(o.seconds),
            "--warmup" => o.warmup = value().parse().unwrap_or(o.warmup),
            "--only" => o.only = Some(value().split(',').map(str::to_owned).collect()),
            "--cc" => {
                o.ccs = value().split(',').filter_map(|n| n.parse().ok()).collect();
            }
            // cargo bench passes --bench; ignore what we do not know.
            _ => {}
        }
    }
    o
}

/// The scenarios, each with the name it is listed and selected by and
/// whether its receiver is UDT4-like.
fn scenarios() -> Vec<(Scenario, String, bool)> {
    let ours = |s: Scenario| {
        let name = s.name.to_owned();
        (s, name, false)
    };
    let udt4 = |s: Scenario| {
        let name = format!("{}-udt4", s.name);
        (s, name, true)
    };
    vec![
        ours(Scenario::s2()),
        ours(Scenario::s3()),
        ours(Scenario::s4()),
        ours(Scenario::s5()),
        ours(Scenario::high_bdp()),
        ours(Scenario::lan()),
        ours(Scenario::lan_shallow()),
        ours(Scenario::bursty()),
        ours(Scenario::reordering()),
        ours(Scenario::clean_queue()),
        ours(Scenario::two_flows()),
        ours(Scenario::shared()),
        udt4(Scenario::s2()),
        udt4(Scenario::s3()),
        udt4(Scenario::s5()),
        ours(Scenario::s3().batched()),
        ours(Scenario::s4().batched()),
        ours(Scenario::high_bdp().batched()),
        udt4(Scenario::s3().batched()),
        udt4(Scenario::s4().batched()),
    ]
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

fn main() {
    let _ = env_logger::builder().format_timestamp(None).try_init();
    let o = parse();
    println!(
        "{} s per run, goodput measured after {} s, median of seeds 1..={}",
        o.seconds, o.warmup, o.seeds
    );
    println!();
    println!(
        "| scenario | link | RTT | loss | cc | goodput (Mbit/s) | of link | retransmitted | queue p50 / p99 | per flow | wall |"
    );
    println!("|---|---:|---:|---:|---|---:|---:|---:|---:|---|---:|");
    for (s, name, udt4_receiver) in scenarios() {
        if let Some(only) = &o.only {
            if !only.iter().any(|n| n.eq_ignore_ascii_case(&name)) {
                continue;
            }
        }
        for &cc in &o.ccs {
            let wall = Instant::now();
            let mut goodputs = Vec::new();
            let mut reports = Vec::new();
            let seeds = match o.seed {
                Some(seed) => seed..=seed,
                None => 1..=o.seeds,
            };
            for seed in seeds {
                let spec = RunSpec {
                    verify: false,
                    ..RunSpec::new(
                        seed,
                        Duration::from_secs_f64(o.seconds),
                        Duration::from_secs_f64(o.warmup),
                    )
                };
                let r = if s.name == "shared" {
                    // The native controller first, the one under test
                    // joining it: does it take the link over?
                    let flows = [
                        scenario::config_for(CcAlgorithm::Udt),
                        scenario::config_for(cc),
                    ];
                    scenario::run(&s, &flows, udt_core::Config::default(), spec)
                } else if udt4_receiver {
                    let flows = [scenario::config_for(cc)];
                    scenario::run_into_udt4(&s, &flows, spec)
                } else {
                    scenario::run_with(&s, cc, spec)
                };
                goodputs.push(r.total_goodput_mbps());
                reports.push(r);
            }
            let g = median(goodputs.clone());
            let r = reports
                .iter()
                .find(|r| r.total_goodput_mbps() == g)
                .unwrap_or(&reports[0]);
            let retrans: f64 = r
                .flows
                .iter()
                .map(|f| f.sender.retransmit_ratio())
                .sum::<f64>()
                / r.flows.len() as f64;
            let per_flow: Vec<String> = r
                .flows
                .iter()
                .map(|f| format!("{:.1}", f.goodput_mbps))
                .collect();
            println!(
                "| {} | {} Mbit/s | {} ms | {:.2} % | {} | {:.1} | {:.0} % | {:.2} % | {:.1} / {:.1} ms | {} | {:.1} s |",
                name,
                s.rate_mbps,
                s.rtt().as_millis(),
                s.loss.mean_loss() * 100.0,
                cc,
                g,
                r.efficiency() * 100.0,
                retrans * 100.0,
                r.queue_delay.percentile(0.5).as_secs_f64() * 1e3,
                r.queue_delay.percentile(0.99).as_secs_f64() * 1e3,
                per_flow.join(" + "),
                wall.elapsed().as_secs_f64()
            );
            if o.detail {
                for f in &r.flows {
                    let s = &f.sender;
                    println!(
                        "    sent {} retx {} reported-lost {} presumed-lost {} timeouts {} naks {} acks {} rtt {:?} cwnd {:.0} period {:?}",
                        s.packets_sent,
                        s.packets_retransmitted,
                        s.packets_reported_lost,
                        s.packets_presumed_lost,
                        s.timeouts,
                        s.naks_received,
                        s.acks_received,
                        s.rtt,
                        s.congestion_window,
                        s.send_period
                    );
                    let l = s.send_limits.shares();
                    println!(
                        "    sender limited by: app {:.0} % flow window {:.0} % cwnd {:.0} % pacing {:.0} % driver {:.0} %",
                        l[0] * 100.0,
                        l[1] * 100.0,
                        l[2] * 100.0,
                        l[3] * 100.0,
                        l[4] * 100.0
                    );
                    let bins: Vec<String> = f
                        .bins
                        .chunks(10)
                        .map(|c| format!("{:.0}", c.iter().sum::<u64>() as f64 * 8.0 / 1e6))
                        .collect();
                    println!("    Mbit/s per second: {}", bins.join(" "));
                    if let Some(mib) = o.transfer_mib {
                        let want = mib * f64::from(1u32 << 20);
                        let mut got = 0.0;
                        let done = f.bins.iter().position(|&b| {
                            got += b as f64;
                            got >= want
                        });
                        match done {
                            Some(i) => {
                                let secs = (i + 1) as f64 * 0.1;
                                println!(
                                    "    the first {mib} MiB took {secs:.1} s from the start: {:.1} Mbit/s",
                                    want * 8.0 / secs / 1e6
                                );
                            }
                            None => println!("    the first {mib} MiB did not arrive"),
                        }
                    }
                }
                println!(
                    "    link: sent {} lost {} queue-dropped {}",
                    r.link.sent, r.link.lost, r.link.queue_dropped
                );
            }
        }
    }
}
