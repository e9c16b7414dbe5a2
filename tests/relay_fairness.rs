//! Fair to itself on real sockets (issue 9): two of our flows through one
//! `udt-relay` bottleneck (100 Mbit/s, 20 ms RTT, 50 ms queue), the second
//! joining after 2 s. The newcomer takes the queue it joined for path delay
//! and gets the larger share until both probe the minimum RTT (every 5 s);
//! after that the split is even.

#[path = "relay/paths.rs"]
mod paths;

use udt_core::cc::CcAlgorithm;

#[test]
fn two_of_our_flows_share_one_bottleneck_once_both_probed_the_rtt() {
    let seconds = 14;
    let bins = paths::two_flows(CcAlgorithm::Bbr, seconds, 1);
    eprintln!("first flow, Mbit/s per second:  {:.0?}", bins[0]);
    eprintln!("second flow, Mbit/s per second: {:.0?}", bins[1]);
    // From 8 s on both have been through a ProbeRtt after the join (with
    // the 10 s of BBRv1 the shares stayed 0.83-0.87 apart here).
    let share = paths::share(&bins, 8, seconds as usize);
    assert!(
        share >= 0.9,
        "the slower flow had {share:.2} of the faster one's goodput"
    );
    // And together they keep the link busy (ProbeRtt dips included).
    let together: f64 = (8..seconds as usize)
        .map(|i| bins[0][i] + bins[1][i])
        .sum::<f64>()
        / (seconds - 8) as f64;
    assert!(together >= 80.0, "together {together:.1} Mbit/s of 100");
}
