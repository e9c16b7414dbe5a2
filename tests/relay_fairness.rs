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
    // From 8 s on both have been through a ProbeRtt after the join. The
    // median second counts, not the sum: the two flows' later ProbeRtts
    // need not fall in the same second, and the one that probes lends the
    // other its share for that second (one run: 34 against 59 Mbit/s, a
    // sum over 8-14 s of 0.88 with every other second at 0.90-0.98).
    // On real sockets this checks that the shares even out; whether they
    // do so after 5 s rather than BBRv1's 10 s is pinned by the
    // simulator's `two_flows_converge_to_equal_shares` (a build probing
    // every 10 s passed this one too).
    let mut seconds_shares: Vec<f64> = (8..seconds as usize)
        .map(|i| paths::share(&bins, i, i + 1))
        .collect();
    seconds_shares.sort_by(f64::total_cmp);
    let mid = seconds_shares.len() / 2;
    let median = (seconds_shares[mid - 1] + seconds_shares[mid]) / 2.0;
    assert!(
        median >= 0.9,
        "in the median second the slower flow had {median:.2} of the faster one's goodput \
         (per second, sorted: {seconds_shares:.2?})"
    );
    // And together they keep the link busy (ProbeRtt dips included).
    let together: f64 = (8..seconds as usize)
        .map(|i| bins[0][i] + bins[1][i])
        .sum::<f64>()
        / (seconds - 8) as f64;
    assert!(together >= 80.0, "together {together:.1} Mbit/s of 100");
}
