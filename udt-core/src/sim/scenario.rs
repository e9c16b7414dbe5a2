//! The congestion-control scenarios (issue 9) in the simulator: a
//! bottleneck of a given rate behind a drop-tail queue, a one-way delay,
//! random or bursty loss both ways, and one or more bulk flows through it.
//! The scenario tests (tests/sim_cc.rs), the simulator table
//! (benches/sim_cc.rs) and the real-socket benchmark through udt-relay
//! (benches/relay_cc.rs) all take their parameters from here, so the three
//! measure the same paths.

use std::net::SocketAddr;
use std::time::Duration;

use super::harness::{check_pattern, fill_pattern};
use super::{DelayHistogram, LinkConfig, LinkStats, Loss, ReadBatching, Sim, UdtNode};
use crate::cc::CcAlgorithm;
use crate::config::Config;
use crate::error::{ReadError, WriteError};
use crate::seq::SocketId;
use crate::stats::Stats;

/// The bottleneck queue of the measurements: 50 ms at the link rate.
pub const QUEUE_50_MS: Duration = Duration::from_millis(50);

/// How long a datagram picked for reordering is held back.
pub const REORDER_DELAY: Duration = Duration::from_millis(1);

/// One path and the flows that cross it.
#[derive(Clone, Debug, PartialEq)]
pub struct Scenario {
    /// Short name for tables ("S2", "high-bdp", ...).
    pub name: &'static str,
    /// Bottleneck rate each way, megabits per second of datagrams.
    pub rate_mbps: u64,
    /// One-way propagation delay (half the base RTT).
    pub one_way_delay: Duration,
    /// Random loss, applied in both directions (data and control).
    pub loss: Loss,
    /// Drop-tail queue in front of the bottleneck, as time at the link rate.
    pub queue: Duration,
    /// Extra per-datagram delay drawn from `[0, jitter]` (reorders datagrams
    /// sent closer together than it).
    pub jitter: Duration,
    /// Share of the datagrams held back by [`REORDER_DELAY`] (overtaken by
    /// the ones sent in that time).
    pub reorder: f64,
    /// When each bulk flow starts sending, from the start of the run; one
    /// entry per flow.
    pub flow_starts: Vec<Duration>,
    /// How both endpoints read their datagrams: `None` at the instant each
    /// arrives, or in bursts as on real sockets ([`Scenario::batched`]).
    pub read_batching: Option<ReadBatching>,
}

/// Reads as this machine's receivers do them on real sockets
/// (docs/congestion-control.md 11.6): every millisecond (UDP GRO hands
/// over ~44 datagrams of S3 at once), and in a tenth of the 100 ms windows
/// after a stall of up to 8 ms (the receiving thread waiting for a core
/// it shares with the relay and the sender).
pub const REAL_SOCKET_READS: ReadBatching = ReadBatching {
    period: Duration::from_millis(1),
    stall_every: Duration::from_millis(100),
    stall_chance: 0.1,
    longest_stall: Duration::from_millis(8),
};

impl Scenario {
    fn single(name: &'static str, rate_mbps: u64, one_way_ms: u64, loss: Loss) -> Scenario {
        Scenario {
            name,
            rate_mbps,
            one_way_delay: Duration::from_millis(one_way_ms),
            loss,
            queue: QUEUE_50_MS,
            jitter: Duration::ZERO,
            reorder: 0.0,
            flow_starts: vec![Duration::ZERO],
            read_batching: None,
        }
    }

    /// This path with both ends reading in bursts as on real sockets
    /// ([`REAL_SOCKET_READS`]), named `NAME-batched`.
    pub fn batched(self) -> Scenario {
        let name = match self.name {
            "S2" => "S2-batched",
            "S3" => "S3-batched",
            "S4" => "S4-batched",
            "S5" => "S5-batched",
            "high-bdp" => "high-bdp-batched",
            "bursty" => "bursty-batched",
            _ => "batched",
        };
        Scenario {
            name,
            read_batching: Some(REAL_SOCKET_READS),
            ..self
        }
    }

    /// S2: 100 Mbit/s, 10 ms one way, 0.5 % random loss.
    pub fn s2() -> Scenario {
        Self::single("S2", 100, 10, Loss::Bernoulli(0.005))
    }

    /// S3: 300 Mbit/s, 25 ms one way, 1 % random loss.
    pub fn s3() -> Scenario {
        Self::single("S3", 300, 25, Loss::Bernoulli(0.01))
    }

    /// S4: 500 Mbit/s, 50 ms one way, no random loss.
    pub fn s4() -> Scenario {
        Self::single("S4", 500, 50, Loss::None)
    }

    /// S5: 100 Mbit/s, 5 ms one way, 5 % random loss.
    pub fn s5() -> Scenario {
        Self::single("S5", 100, 5, Loss::Bernoulli(0.05))
    }

    /// High BDP: 1 Gbit/s, 100 ms one way (200 ms RTT), 0.1 % random loss.
    pub fn high_bdp() -> Scenario {
        Self::single("high-bdp", 1000, 100, Loss::Bernoulli(0.001))
    }

    /// S3's path with the same mean loss (1 %) in bursts of 4 datagrams on
    /// average (Gilbert–Elliott).
    pub fn bursty() -> Scenario {
        let burst = 4.0;
        let mean = 0.01;
        let p_bad_to_good = 1.0 / burst;
        Self::single(
            "bursty",
            300,
            25,
            Loss::GilbertElliott {
                p_good_to_bad: mean * p_bad_to_good / (1.0 - mean),
                p_bad_to_good,
                loss_good: 0.0,
                loss_bad: 1.0,
            },
        )
    }

    /// S3 with 1 % of the datagrams held back by 1 ms (overtaken by the
    /// next ~25) on top of its 1 % loss.
    pub fn reordering() -> Scenario {
        Scenario {
            name: "reorder",
            reorder: 0.01,
            ..Self::s3()
        }
    }

    /// Two flows through one 100 Mbit/s bottleneck, 10 ms one way, no
    /// random loss; the second starts 2 s after the first.
    pub fn two_flows() -> Scenario {
        Scenario {
            name: "two-flows",
            flow_starts: vec![Duration::ZERO, Duration::from_secs(2)],
            ..Self::single("two-flows", 100, 10, Loss::None)
        }
    }

    /// Two flows through one 100 Mbit/s, 10 ms bottleneck, the second
    /// joining after 2 s: run with a loss-based flow first and the one under
    /// test second, to see whether the newcomer takes the link over.
    pub fn shared() -> Scenario {
        Scenario {
            name: "shared",
            ..Self::two_flows()
        }
    }

    /// One flow alone on a clean 100 Mbit/s, 10 ms path: it should fill the
    /// link without keeping the 50 ms queue full.
    pub fn clean_queue() -> Scenario {
        Self::single("queue", 100, 10, Loss::None)
    }

    /// A fast LAN: 1 Gbit/s, 0.5 ms one way, no random loss, and a
    /// bottleneck queue of only 1 ms (85 packets).
    pub fn lan() -> Scenario {
        Scenario {
            queue: Duration::from_millis(1),
            ..Self::single("lan", 1000, 0, Loss::None)
        }
        .with_one_way_delay(Duration::from_micros(500))
    }

    /// A short LAN path behind a shallow queue: 1 Gbit/s, 100 µs one way,
    /// a bottleneck queue of 0.8 ms (64 packets), as behind a switch port
    /// slower than the sender's: a burst of a window's worth overflows it
    /// (docs/congestion-control.md 7.4).
    pub fn lan_shallow() -> Scenario {
        Scenario {
            queue: Duration::from_micros(768),
            ..Self::single("lan-shallow", 1000, 0, Loss::None)
        }
        .with_one_way_delay(Duration::from_micros(100))
    }

    fn with_one_way_delay(self, one_way_delay: Duration) -> Scenario {
        Scenario {
            one_way_delay,
            ..self
        }
    }

    /// The base round-trip time.
    pub fn rtt(&self) -> Duration {
        2 * self.one_way_delay
    }

    /// The simulated link of one direction.
    pub fn link(&self) -> LinkConfig {
        let bps = self.rate_mbps * 1_000_000;
        let queue_bytes = (bps as f64 / 8.0 * self.queue.as_secs_f64()) as usize;
        LinkConfig {
            delay: self.one_way_delay,
            jitter: self.jitter,
            reorder: self.reorder,
            reorder_delay: REORDER_DELAY,
            loss: self.loss,
            bandwidth_bps: Some(bps),
            queue_bytes: queue_bytes.max(2 * 1500),
            read_batching: self.read_batching,
            ..LinkConfig::default()
        }
    }
}

/// How long to run and what to measure.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RunSpec {
    /// The simulator's seed.
    pub seed: u64,
    /// Virtual time from the first flow's start to the end of the run.
    pub duration: Duration,
    /// Goodput and queue delay are measured from this time on (the ramp-up
    /// before it is left out of [`FlowReport::goodput_mbps`]).
    pub warmup: Duration,
    /// Width of the bins of [`FlowReport::bins`].
    pub bin: Duration,
    /// Write a deterministic byte pattern and check every byte read
    /// (tests); off, the data is not checked (faster, for tables).
    pub verify: bool,
}

impl RunSpec {
    /// A run of `duration` measured after `warmup`, with 100 ms bins and
    /// every byte checked.
    pub fn new(seed: u64, duration: Duration, warmup: Duration) -> RunSpec {
        RunSpec {
            seed,
            duration,
            warmup,
            bin: Duration::from_millis(100),
            verify: true,
        }
    }
}

/// What one flow achieved.
#[derive(Clone, Debug)]
pub struct FlowReport {
    /// The sender's congestion controller.
    pub cc: &'static str,
    /// Payload goodput over the measured part of the run (after the warm-up
    /// and after the flow started), megabits per second.
    pub goodput_mbps: f64,
    /// Payload bytes the receiving application read during the whole run.
    pub bytes: u64,
    /// Payload bytes read per [`RunSpec::bin`], from the start of the run.
    pub bins: Vec<u64>,
    /// The sender's statistics at the end.
    pub sender: Stats,
}

impl FlowReport {
    /// Mean goodput in Mbit/s over the bins `[from, to)` of the run.
    pub fn goodput_between(&self, bin: Duration, from: Duration, to: Duration) -> f64 {
        let width = bin.as_secs_f64();
        let first = (from.as_secs_f64() / width) as usize;
        let last = ((to.as_secs_f64() / width) as usize).min(self.bins.len());
        if last <= first {
            return 0.0;
        }
        let bytes: u64 = self.bins[first..last].iter().sum();
        bytes as f64 * 8.0 / ((last - first) as f64 * width) / 1e6
    }
}

/// What a run measured.
#[derive(Clone, Debug)]
pub struct ScenarioReport {
    /// The scenario's name.
    pub scenario: &'static str,
    /// The bottleneck rate, Mbit/s.
    pub rate_mbps: u64,
    /// One report per flow, in the scenario's order.
    pub flows: Vec<FlowReport>,
    /// Queueing delay at the forward bottleneck during the measured part.
    pub queue_delay: DelayHistogram,
    /// The forward link's counters at the end.
    pub link: LinkStats,
}

impl ScenarioReport {
    /// The flows' goodputs added up, Mbit/s.
    pub fn total_goodput_mbps(&self) -> f64 {
        self.flows.iter().map(|f| f.goodput_mbps).sum()
    }

    /// Total goodput as a fraction of the bottleneck rate.
    pub fn efficiency(&self) -> f64 {
        self.total_goodput_mbps() / self.rate_mbps as f64
    }
}

/// A configuration for a bulk sender with controller `cc`.
pub fn config_for(cc: CcAlgorithm) -> Config {
    Config::default().with_congestion(cc)
}

/// A receiver configuration that reports losses the way Debian's libudt0
/// (UDT 4.11) does: one NAK per gap when it appears and never again (no
/// periodic NAK), no ACK at all, not even a light one, while its first
/// missing packet stays the one the sender confirmed, and fixed
/// 8192-packet buffers (UDT4's default, never growing with the path).
/// Everything else a UDT4 receiver does the same way as ours (estimators;
/// docs/divergences.md) but the cadence of its timers, which is the node's
/// ([`UdtNode::with_udt4_timer_cadence`], used by [`run_into_udt4`]).
pub fn udt4_like_receiver() -> Config {
    Config {
        periodic_nak: false,
        stall_light_acks: false,
        early_rate_reports: false,
        // A cap below the configured sizes keeps the buffers fixed.
        memory_cap: 0,
        ..Config::default()
    }
}

/// One bulk flow during a run.
struct Flow {
    sender: SocketId,
    receiver: SocketId,
    start: Duration,
    written: u64,
    bytes: u64,
    measured: u64,
    bins: Vec<u64>,
}

/// Runs `scenario` with one sender configuration per flow (so flows may use
/// different controllers) and the receivers' configuration `receiver`.
///
/// # Panics
/// With the seed in the message, when `flows` does not match the
/// scenario's flow count, when a connection cannot be set up, or when a
/// read or write fails (a protocol bug, not a measurement).
pub fn run(
    scenario: &Scenario,
    flows: &[Config],
    receiver: Config,
    spec: RunSpec,
) -> ScenarioReport {
    run_between(scenario, flows, receiver, false, spec)
}

/// Runs `scenario` as [`run`] does, into receivers that behave as UDT4's
/// (Debian's libudt0) do: [`udt4_like_receiver`]'s loss reports and fixed
/// buffers, and timers that run only when a datagram arrives or on a
/// 100 ms sweep ([`UdtNode::with_udt4_timer_cadence`]). A sender that
/// keeps up with this receiver in the simulator should keep up with
/// libudt0.
///
/// # Panics
/// As [`run`].
pub fn run_into_udt4(scenario: &Scenario, flows: &[Config], spec: RunSpec) -> ScenarioReport {
    run_between(scenario, flows, udt4_like_receiver(), true, spec)
}

fn run_between(
    scenario: &Scenario,
    flows: &[Config],
    receiver: Config,
    udt4_timers: bool,
    spec: RunSpec,
) -> ScenarioReport {
    assert_eq!(
        flows.len(),
        scenario.flow_starts.len(),
        "one sender configuration per flow"
    );
    let seed = spec.seed;
    let mut sim: Sim<UdtNode> = Sim::new(seed);
    let a_addr: SocketAddr = "192.0.2.1:9000".parse().expect("literal address");
    let b_addr: SocketAddr = "198.51.100.7:9000".parse().expect("literal address");
    let a = sim.add_node(a_addr, UdtNode::new(a_addr, Config::default(), seed ^ 0xA));
    let mut receiver_node = UdtNode::new(b_addr, receiver, seed ^ 0xB);
    if udt4_timers {
        receiver_node = receiver_node.with_udt4_timer_cadence();
    }
    let b = sim.add_node(b_addr, receiver_node);
    sim.link(a, b, scenario.link(), scenario.link());
    let now = sim.now();
    sim.node_mut(b).listen(now);
    let ids: Vec<SocketId> = flows
        .iter()
        .map(|config| sim.node_mut(a).connect_with(now, b_addr, config.clone()))
        .collect();
    let mut accepted = Vec::new();
    sim.run_until(
        |sim| {
            while let Some(id) = sim.node_mut(b).accept() {
                accepted.push(id);
            }
            accepted.len() == ids.len() && ids.iter().all(|&id| sim.node(a).is_connected(id))
        },
        Duration::from_secs(30),
    )
    .unwrap_or_else(|e| panic!("seed={seed}: connections not set up: {e}"));
    // The listener accepts in handshake order, which is the connect order
    // on one link without jitter; match them by peer socket id anyway.
    let mut run_flows: Vec<Flow> = Vec::new();
    for (i, &sender) in ids.iter().enumerate() {
        let peer = sim
            .node(a)
            .connection(sender)
            .map(|c| c.peer_socket_id())
            .unwrap_or_else(|| panic!("seed={seed}: flow {i} has no connection"));
        let receiver = accepted
            .iter()
            .copied()
            .find(|&id| id == peer)
            .unwrap_or_else(|| panic!("seed={seed}: flow {i} was not accepted"));
        run_flows.push(Flow {
            sender,
            receiver,
            start: scenario.flow_starts[i],
            written: 0,
            bytes: 0,
            measured: 0,
            bins: Vec::new(),
        });
    }

    let start = sim.now();
    let nbins = (spec.duration.as_secs_f64() / spec.bin.as_secs_f64()).ceil() as usize;
    for f in &mut run_flows {
        f.bins = vec![0; nbins.max(1)];
    }
    let mut chunk = vec![0x5Au8; 256 * 1024];
    let mut rbuf = vec![0u8; 1 << 20];
    let mut queue_at_warmup: Option<DelayHistogram> = None;
    let mut failure: Option<String> = None;
    let result = sim.run_until(
        |sim| {
            let t = sim.now() - start;
            if t >= spec.duration {
                return true;
            }
            if queue_at_warmup.is_none() && t >= spec.warmup {
                queue_at_warmup = sim.link_queue_delay(a, b).cloned();
            }
            let bin = ((t.as_secs_f64() / spec.bin.as_secs_f64()) as usize).min(nbins - 1);
            for f in &mut run_flows {
                if t < f.start {
                    continue;
                }
                // Writer: keep the send buffer full.
                loop {
                    let free = sim
                        .node(a)
                        .connection(f.sender)
                        .map_or(0, |c| c.send_buffer_free());
                    if free < chunk.len().min(64 * 1024) {
                        break;
                    }
                    let n = free.min(chunk.len());
                    let stream = u64::from(f.sender.0);
                    if spec.verify {
                        fill_pattern(stream, f.written, &mut chunk[..n]);
                    }
                    match sim
                        .node_mut(a)
                        .with_connection(f.sender, |c| c.write(&chunk[..n]))
                    {
                        Some(Ok(k)) => f.written += k as u64,
                        Some(Err(WriteError::WouldBlock)) => break,
                        Some(Err(e)) => {
                            failure = Some(format!("write failed: {e}"));
                            return true;
                        }
                        None => {
                            failure = Some("sender connection vanished".into());
                            return true;
                        }
                    }
                }
                // Reader: take everything.
                loop {
                    match sim
                        .node_mut(b)
                        .with_connection(f.receiver, |c| c.read(&mut rbuf))
                    {
                        Some(Ok(0)) | Some(Err(ReadError::WouldBlock)) => break,
                        Some(Ok(n)) => {
                            let stream = u64::from(f.sender.0);
                            if spec.verify {
                                if let Some(at) = check_pattern(stream, f.bytes, &rbuf[..n]) {
                                    failure = Some(format!("byte {at} differs"));
                                    return true;
                                }
                            }
                            f.bytes += n as u64;
                            f.bins[bin] += n as u64;
                            if t >= spec.warmup {
                                f.measured += n as u64;
                            }
                        }
                        Some(Err(e)) => {
                            failure = Some(format!("read failed: {e}"));
                            return true;
                        }
                        None => {
                            failure = Some("receiver connection vanished".into());
                            return true;
                        }
                    }
                }
            }
            false
        },
        spec.duration + Duration::from_secs(1),
    );
    if let Err(e) = result {
        panic!("seed={seed}: scenario {} stopped: {e}", scenario.name);
    }
    if let Some(f) = failure {
        panic!("seed={seed}: scenario {}: {f}", scenario.name);
    }
    let queue_now = sim.link_queue_delay(a, b).cloned().unwrap_or_default();
    let queue_delay = match &queue_at_warmup {
        Some(earlier) => queue_now.since(earlier),
        None => queue_now,
    };
    let flows = run_flows
        .iter()
        .zip(flows)
        .map(|(f, config)| {
            let measured_from = spec.warmup.max(f.start);
            let secs = spec.duration.saturating_sub(measured_from).as_secs_f64();
            let sender = sim
                .node(a)
                .connection(f.sender)
                .map(|c| c.stats())
                .unwrap_or_default();
            FlowReport {
                cc: config.congestion.build().name(),
                goodput_mbps: if secs > 0.0 {
                    f.measured as f64 * 8.0 / secs / 1e6
                } else {
                    0.0
                },
                bytes: f.bytes,
                bins: f.bins.clone(),
                sender,
            }
        })
        .collect();
    ScenarioReport {
        scenario: scenario.name,
        rate_mbps: scenario.rate_mbps,
        flows,
        queue_delay,
        link: sim.link_stats(a, b).copied().unwrap_or_default(),
    }
}

/// Runs `scenario` with every flow using `cc` and default receivers.
///
/// # Panics
/// As [`run`].
pub fn run_with(scenario: &Scenario, cc: CcAlgorithm, spec: RunSpec) -> ScenarioReport {
    let flows: Vec<Config> = scenario
        .flow_starts
        .iter()
        .map(|_| config_for(cc))
        .collect();
    run(scenario, &flows, Config::default(), spec)
}
