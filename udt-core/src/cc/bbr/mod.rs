//! A model-based congestion controller in the spirit of BBR (the IETF
//! draft-ietf-ccwg-bbr and the BBR papers by Cardwell et al.), written for
//! UDT's cumulative ACKs and NAKs.
//!
//! It keeps a model of the path: the bottleneck bandwidth (the largest
//! per-packet delivery rate of the last [`BW_WINDOW_ROUNDS`] round trips) and
//! the round-trip propagation delay (the smallest RTT of the last
//! [`MIN_RTT_WINDOW`]). It paces at the bandwidth times a gain and bounds
//! the packets in flight by a multiple of their product, the BDP:
//!
//! * **Startup** paces at 2.77× the bandwidth found so far, doubling the
//!   rate every round trip, until three rounds in a row raise the bandwidth
//!   by less than 25 %, or a round loses more than the profile's loss
//!   threshold. A single loss never ends it.
//! * **Drain** paces below the bandwidth until the queue Startup built is gone.
//! * **ProbeBw** cycles through eight phases of one round trip each (never
//!   shorter than the time between two ACKs): one at 1.25× (probe for more
//!   bandwidth), one at 0.75× (drain what the probe queued), six at 1×.
//! * **ProbeRtt**: when the minimum RTT has not been seen for
//!   [`PROBE_RTT_INTERVAL`], the window drops to half the BDP for 200 ms and
//!   a round trip, so that the queue empties and the true RTT shows.
//!
//! Loss is judged as a rate per round trip, not per event: a round whose
//! loss-event rate is clearly above the profile's threshold (2 % for
//! [`BbrProfile::Fair`], 15 % for [`BbrProfile::Bulk`]) is congestion, and
//! cuts the bandwidth and in-flight bounds to 70 % (never below what the
//! path delivered in the last rounds); random loss below the threshold only
//! costs its retransmissions. The next probe lifts the bounds again.
//!
//! How the samples are taken from UDT's cumulative ACKs and NAKs, and why
//! the window is the BDP plus a fixed allowance rather than twice the BDP:
//! docs/congestion-control.md, section 7.

use std::time::{Duration, Instant};

mod filter;
#[cfg(test)]
mod tests;

use filter::{MaxPerRound, MinRtt};

use super::{
    AckSample, CcContext, CongestionControl, CongestionControlFactory, WindowBasis,
    INITIAL_CONGESTION_WINDOW,
};
use crate::rng::Rng;
use crate::seq::SeqNumber;
use crate::time::SYN_INTERVAL;

/// Round trips the bandwidth filter remembers.
pub const BW_WINDOW_ROUNDS: usize = 10;

/// Round trips without an accepted bandwidth sample that age the filter as
/// much as one with a sample (see `BbrCc::bw_round`).
const UNMEASURED_ROUNDS_PER_TICK: u32 = 2;

/// How long the model's minimum RTT stays valid without being seen again;
/// after it, the minimum of the last [`PROBE_RTT_INTERVAL`] replaces it.
pub const MIN_RTT_WINDOW: Duration = Duration::from_secs(10);

/// How long the minimum RTT may go without being seen again (within the
/// filter's tolerance) before ProbeRtt looks for it: BBRv2/v3's 5 s, half
/// of [`MIN_RTT_WINDOW`]. Flows that joined a standing queue took it for
/// path delay; the sooner they all drain together, the sooner their shares
/// even out (BBRv1 probed every 10 s).
pub const PROBE_RTT_INTERVAL: Duration = Duration::from_secs(5);

/// How long ProbeRtt holds the small window (at least one round trip too).
const PROBE_RTT_DURATION: Duration = Duration::from_millis(200);

/// The window during ProbeRtt, as a fraction of the BDP (BBRv2's choice:
/// half the BDP drains the queue without the v1 collapse to 4 packets).
const PROBE_RTT_CWND_GAIN: f64 = 0.5;

/// The RTT the first window is paced over before any was measured.
const INITIAL_PACING_RTT: Duration = Duration::from_millis(1);

/// Startup's pacing gain, 4·ln 2: the smallest gain that doubles the
/// delivery rate every round trip.
const STARTUP_PACING_GAIN: f64 = 2.77;

/// Drain's pacing gain, the inverse of Startup's.
const DRAIN_PACING_GAIN: f64 = 1.0 / STARTUP_PACING_GAIN;

/// The window as a multiple of the BDP: room for ACKs that arrive late or
/// in bunches (UDT acknowledges every 10 ms, and a light ACK every 64
/// packets).
const CWND_GAIN: f64 = 2.0;

/// The eight ProbeBw phases: probe up, drain the probe, cruise.
const PROBE_BW_GAINS: [f64; 8] = [1.25, 0.75, 1.0, 1.0, 1.0, 1.0, 1.0, 1.0];

/// ProbeBw's drain phase lasts until the packets in flight are down to the
/// BDP and the ACK allowance (the queue is empty), but at most this many
/// round trips.
const DRAIN_PHASE_MAX_RTTS: u32 = 3;

/// Startup ends when the bandwidth grew less than this factor ...
const FULL_BW_GROWTH: f64 = 1.25;

/// ... for this many round trips in a row.
const FULL_BW_ROUNDS: u32 = 3;

/// The multiplicative cut of the bounds on congestion.
const BETA: f64 = 0.7;

/// A receiver sends a light ACK every this many packets (and a full one
/// every SYN).
const LIGHT_ACK_PACKETS: f64 = 64.0;

/// Packets beyond the BDP the window allows once the pipe is full: one
/// light-ACK interval.
const ACK_ALLOWANCE: f64 = LIGHT_ACK_PACKETS;

/// The smallest congestion window, packets.
const MIN_CWND: f64 = 4.0;

/// Packets that may leave back to back when the window opens after the
/// sender waited for it ([`CongestionControl::idle_burst`]). The
/// millisecond of catch-up a late driver gets was a whole window at once
/// here: on a LAN path of 200 µs behind a 64-packet queue that cost 2.5 %
/// of the packets and more than half the goodput. 32 packets (46 KB, less
/// than the 64 KB Linux sends at once under pacing) keep that path's gain
/// (415 → 650 Mbit/s in the simulator, 4 packets gave 662) and most of a
/// loopback's batching, which 4 packets cut by ~10 %
/// (docs/congestion-control.md 7.4).
const IDLE_BURST_PACKETS: u32 = 32;

/// Pace 1 % below the estimate so that a queue built by an overestimate
/// drains by itself.
const PACING_MARGIN: f64 = 0.99;

/// The bandwidth assumed before any sample, and the floor of any estimate:
/// one packet per second.
const MIN_BW: f64 = 1.0;

/// Pacing rates (packets/s) from which two packets leave per pacing slot:
/// the BBR draft's 1.2 Mbit/s at 1500-byte packets. Below it one does.
const PAIRED_QUANTUM_RATE: f64 = 100.0;

/// The send quantum at and above [`PAIRED_QUANTUM_RATE`]. The draft's
/// quantum is 2 packets up to 24 Mbit/s and a millisecond of the pacing
/// rate above (at most 64 KB); we stop at 2, because above ~2000 packets/s
/// the driver's batch interval already sends what fell due together, and
/// longer line-rate bursts would reach shallow queues and receivers that
/// read one datagram at a time (UDT4) untested.
const SEND_QUANTUM: u32 = 2;

/// Loss rounds are judged on at least this many standard deviations above
/// the threshold, so that a round of few packets with one or two random
/// losses is not taken for congestion.
const LOSS_SIGNIFICANCE: f64 = 2.0;

/// In Startup a loss rate must stand out by this many standard deviations.
/// An overflowing queue loses a tenth to a half of a round (S3, S4);
/// random loss and reordering (a UDT4 receiver reports each reordered
/// packet as lost) just above the threshold are noise in Startup's small
/// early rounds: with two, the 1 % reordering path ended Startup on 8
/// losses in 171 packets at a tenth of the link, and its first 6 s gave
/// 28 % of it.
const STARTUP_LOSS_SIGNIFICANCE: f64 = 3.0;

/// A round whose loss rate is above the threshold must also have seen at
/// least this many loss events to count as congestion.
const MIN_LOSS_EVENTS: u64 = 4;

/// Startup ends once this many RTT samples in a row show a queue at the
/// bottleneck (see `BbrCc::check_startup_queue`) ...
const STARTUP_QUEUE_SAMPLES: u32 = 8;

/// ... of more than this share of the minimum RTT, on top of one ACK
/// interval (an RTT sample includes the receiver's wait for its ACK timer,
/// up to 10 ms).
const STARTUP_QUEUE_SHARE: f64 = 0.25;

/// A Startup round counts towards the bandwidth plateau only when it
/// delivered at least this share of the window (`BbrCc::check_full_bw`).
const MIN_PLATEAU_ROUND_SHARE: f64 = 0.25;

/// Startup ends on loss only when its current round lost at least this
/// many packets (BBRv3's `StartupFullLossCnt`).
const STARTUP_MIN_ROUND_LOSSES: u64 = 6;

/// How the controller weighs loss.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Default)]
pub enum BbrProfile {
    /// For shared paths: a round trip losing more than about 2 % of its
    /// packets is congestion (the threshold BBRv2 and v3 use), and the
    /// bandwidth and in-flight bounds are cut to 70 %.
    #[default]
    Fair,
    /// For dedicated or lossy links (satellite, radio, a leased line): only
    /// a round trip losing more than about 15 % is congestion, about where
    /// BBRv1's throughput starts to fall under random loss. On a shared
    /// path it yields to other flows only under heavy loss.
    Bulk,
}

impl BbrProfile {
    /// The per-round loss rate above which a round counts as congestion.
    pub const fn loss_threshold(self) -> f64 {
        match self {
            BbrProfile::Fair => 0.02,
            BbrProfile::Bulk => 0.15,
        }
    }
}

/// The controller's state machine.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Mode {
    Startup,
    Drain,
    ProbeBw,
    ProbeRtt,
}

/// The model-based controller. Build it with [`BbrCc::new`] or through
/// [`BbrCcFactory`].
#[derive(Debug, Clone)]
pub struct BbrCc {
    profile: BbrProfile,
    mode: Mode,
    /// Largest delivery rate per round, packets/s.
    max_bw: MaxPerRound<BW_WINDOW_ROUNDS>,
    /// Short-term bound on the bandwidth after congestion (∞ when unset).
    bw_lo: f64,
    /// The largest delivery rate of the current and of the previous round.
    bw_latest: f64,
    bw_latest_prev: f64,
    /// Bound on the packets in flight after congestion (∞ when unset).
    inflight_hi: f64,
    /// The model's minimum RTT, over [`MIN_RTT_WINDOW`].
    min_rtt: MinRtt,
    /// The minimum RTT over [`PROBE_RTT_INTERVAL`] (BBRv3's
    /// `probe_rtt_min_delay`): when it goes stale, ProbeRtt; it feeds
    /// `min_rtt`.
    probe_rtt_min: MinRtt,
    /// The connection's smoothed RTT, used until a sample exists.
    srtt: Duration,
    /// Round trips counted so far.
    round: u64,
    /// The bandwidth filter's clock: one tick per round trip that gave it
    /// a sample, and one per two that did not. A round whose samples were
    /// all rejected (application- or receiver-limited, or stuck behind a
    /// hole under repair) says less about the path, so it ages what the
    /// filter knows at half the pace; not at all would keep an estimate
    /// that no longer holds (measured: a flow at 5 % loss into a UDT4
    /// receiver kept its queue overflowing).
    bw_round: u64,
    /// The current round gave the bandwidth filter a sample.
    round_measured: bool,
    /// Rounds in a row that gave the filter no sample.
    unmeasured_rounds: u32,
    /// A round ends when a packet sent after this many deliveries is acked.
    next_round_delivered: u64,
    /// The latest sample ended a round.
    round_start: bool,
    /// Lost and delivered counts when the current round started.
    round_lost_base: u64,
    round_delivered_base: u64,
    /// Packets reported lost in the last round that ended.
    last_round_lost: u64,
    /// Packets delivered in the last round that ended.
    last_round_delivered: u64,
    /// The last round in which any loss was reported.
    last_loss_round: Option<u64>,
    /// The current ProbeBw cycle saw congestion: keep the bounds.
    congested_in_cycle: bool,
    /// Deliveries counted when congestion was last acted on: samples of
    /// packets sent before then describe the flight already answered.
    congestion_delivered: Option<u64>,
    /// The receiver has reported an arrival speed at least once.
    seen_recv_speed: bool,
    /// The pacing rate comes from bandwidth samples, not the initial guess.
    paced_by_samples: bool,
    /// Startup found the bandwidth.
    filled_pipe: bool,
    full_bw: f64,
    full_bw_rounds: u32,
    /// RTT samples in a row during Startup that showed a queue.
    queue_samples: u32,
    /// ProbeBw phase and when it began.
    cycle_index: usize,
    cycle_stamp: Option<Instant>,
    /// ProbeRtt: when the small window may end, once reached.
    probe_rtt_done: Option<Instant>,
    probe_rtt_round_done: bool,
    pacing_gain: f64,
    cwnd_gain: f64,
    /// Pacing rate, packets/s.
    pacing_rate: f64,
    /// Congestion window, packets (counting packets in flight).
    cwnd: f64,
    /// Retransmission timeouts since the last delivery sample.
    timeouts_in_a_row: u32,
    /// The window before a lone timeout, restored by the next delivery
    /// (0: none saved).
    prior_cwnd: f64,
    rng: Rng,
}

impl BbrCc {
    /// A controller in its pre-`init` state (Startup, window 16).
    pub fn new(profile: BbrProfile) -> Self {
        BbrCc {
            profile,
            mode: Mode::Startup,
            max_bw: MaxPerRound::new(),
            bw_lo: f64::INFINITY,
            bw_latest: 0.0,
            bw_latest_prev: 0.0,
            inflight_hi: f64::INFINITY,
            min_rtt: MinRtt::new(),
            probe_rtt_min: MinRtt::new(),
            srtt: Duration::from_millis(100),
            round: 0,
            bw_round: 0,
            round_measured: false,
            unmeasured_rounds: 0,
            next_round_delivered: 0,
            round_start: false,
            round_lost_base: 0,
            round_delivered_base: 0,
            last_round_lost: 0,
            last_round_delivered: 0,
            last_loss_round: None,
            congested_in_cycle: false,
            congestion_delivered: None,
            seen_recv_speed: false,
            paced_by_samples: false,
            filled_pipe: false,
            full_bw: 0.0,
            full_bw_rounds: 0,
            queue_samples: 0,
            cycle_index: 0,
            cycle_stamp: None,
            probe_rtt_done: None,
            probe_rtt_round_done: false,
            pacing_gain: STARTUP_PACING_GAIN,
            cwnd_gain: CWND_GAIN,
            pacing_rate: 0.0,
            cwnd: INITIAL_CONGESTION_WINDOW,
            timeouts_in_a_row: 0,
            prior_cwnd: 0.0,
            rng: Rng::new(0),
        }
    }

    /// The profile this controller weighs loss with.
    pub fn profile(&self) -> BbrProfile {
        self.profile
    }

    /// The bottleneck bandwidth the controller believes in, packets/s
    /// (the filtered maximum, lowered by a congestion bound), or `None`
    /// before the first sample.
    pub fn bandwidth(&self) -> Option<f64> {
        let max = self.max_bw.get(self.bw_round);
        (max > 0.0).then(|| max.min(self.bw_lo).max(MIN_BW))
    }

    /// The smallest RTT seen in the current window.
    pub fn min_rtt(&self) -> Option<Duration> {
        self.min_rtt.get()
    }

    /// True once Startup has found the bandwidth.
    pub fn has_filled_pipe(&self) -> bool {
        self.filled_pipe
    }

    /// The name of the current state, for logs and tests.
    pub fn mode_name(&self) -> &'static str {
        match self.mode {
            Mode::Startup => "startup",
            Mode::Drain => "drain",
            Mode::ProbeBw => "probe-bw",
            Mode::ProbeRtt => "probe-rtt",
        }
    }

    /// The round trip the model works with: the windowed minimum RTT (the
    /// connection's smoothed RTT before any sample), but never shorter
    /// than the time between two ACKs. A UDT receiver acknowledges every
    /// 10 ms and every 64 packets, so on a path of a millisecond a flow
    /// below 6 400 packets/s hears back only every 10 ms: that is its
    /// feedback loop, for the window and for the length of a probe phase.
    fn rtt(&self) -> Duration {
        let rtt = self.min_rtt.get().unwrap_or(self.srtt);
        rtt.max(self.ack_interval())
    }

    /// The time between two ACKs at the model's bandwidth: a full ACK
    /// every 10 ms, a light one every 64 packets.
    fn ack_interval(&self) -> Duration {
        let bw = self.max_bw.get(self.bw_round).min(self.bw_lo);
        if bw > 0.0 {
            SYN_INTERVAL.min(Duration::from_secs_f64(LIGHT_ACK_PACKETS / bw))
        } else {
            SYN_INTERVAL
        }
    }

    /// Startup's window: twice the flight the bandwidth found so far
    /// stands for. A delivery-rate sample's interval spans the round trip
    /// and the receiver's wait for its ACK timer, so the bandwidth reads
    /// the flight over `rtt + ack_interval`, and twice its BDP (over the
    /// round trip alone) is less than twice the flight: the window, not
    /// the pacing, bounded each round, and the simulator's S4 (500 Mbit/s,
    /// 100 ms, ACKs every 10 ms) grew 1.78x a round instead of 2x (twelve
    /// rounds to fill the pipe instead of ten; the second did not grow).
    /// BBR's answer is the window's allowance for aggregated ACKs
    /// (`extra_acked`); a fixed ACK interval is UDT's whole aggregation.
    fn startup_target(&self, bw: f64) -> f64 {
        CWND_GAIN * bw * (self.rtt() + self.ack_interval()).as_secs_f64()
    }

    /// The bandwidth-delay product in packets at bandwidth `bw`.
    fn bdp(&self, bw: f64) -> f64 {
        bw * self.rtt().as_secs_f64()
    }

    /// The bandwidth used for pacing: the model's, or before any sample,
    /// the initial window per measured RTT, or per millisecond before any
    /// RTT was measured (the draft's choice: UDT's initial 100 ms RTT is a
    /// placeholder, not a measurement, and pacing the first window over
    /// it would hold back a fast path).
    fn model_bw(&self) -> f64 {
        self.bandwidth().unwrap_or_else(|| {
            let rtt = self.min_rtt.get().unwrap_or(INITIAL_PACING_RTT);
            INITIAL_CONGESTION_WINDOW / rtt.as_secs_f64().max(1e-3)
        })
    }

    /// What the window allows beyond the BDP at bandwidth `bw` once the
    /// pipe is full: packets delivered and not yet acknowledged (one
    /// light-ACK interval, and a millisecond of the bandwidth).
    fn ack_allowance(&self, bw: f64) -> f64 {
        ACK_ALLOWANCE + bw * SYN_INTERVAL.as_secs_f64() / 10.0
    }

    /// The least Startup paces at once an RTT is known: its gain times
    /// the initial window per minimum RTT, the draft's initial pacing rate
    /// (`BBRInitPacingRate`) with the first measured RTT in place of the
    /// handshake's, which UDT does not time.
    ///
    /// A first sample may cover a single packet: libudt0's ACK timer is
    /// overdue when the first data packet arrives, so its first ACK
    /// covers that one packet. On real sockets into libudt0 (S3) the
    /// sample read 1 packet in 50 ms (20 packets/s), and pacing at 2.77
    /// times that sent 3 packets in the next round trip instead of the 32
    /// the window allowed: Startup took 16-17 rounds against 12-13.
    fn startup_pacing_floor(&self) -> f64 {
        self.min_rtt.get().map_or(0.0, |rtt| {
            STARTUP_PACING_GAIN * INITIAL_CONGESTION_WINDOW / rtt.as_secs_f64().max(1e-6)
        })
    }

    fn enter_drain(&mut self) {
        self.mode = Mode::Drain;
        self.pacing_gain = DRAIN_PACING_GAIN;
        self.cwnd_gain = CWND_GAIN;
    }

    fn enter_probe_bw(&mut self, now: Instant) {
        self.mode = Mode::ProbeBw;
        self.cwnd_gain = CWND_GAIN;
        // Start in a random cruise phase so that flows sharing a
        // bottleneck do not probe in step.
        self.cycle_index = 2 + self.rng.below(6) as usize;
        self.cycle_stamp = Some(now);
        self.pacing_gain = PROBE_BW_GAINS[self.cycle_index];
    }

    fn enter_probe_rtt(&mut self) {
        self.mode = Mode::ProbeRtt;
        self.pacing_gain = 1.0;
        self.probe_rtt_done = None;
        self.probe_rtt_round_done = false;
    }

    fn exit_probe_rtt(&mut self, now: Instant) {
        // The probe's own window restarts; the model's minimum keeps its
        // stamp, so that a path that became longer is taken once the
        // model's window ran out.
        self.probe_rtt_min.confirm(now);
        if self.filled_pipe {
            self.enter_probe_bw(now);
        } else {
            self.mode = Mode::Startup;
            self.pacing_gain = STARTUP_PACING_GAIN;
            self.cwnd_gain = CWND_GAIN;
        }
    }

    /// The end of a round trip: judge its loss rate.
    fn end_round(&mut self, ctx: &CcContext) {
        let lost = ctx.lost.saturating_sub(self.round_lost_base);
        let delivered = ctx.delivered.saturating_sub(self.round_delivered_base);
        self.round_lost_base = ctx.lost;
        self.round_delivered_base = ctx.delivered;
        self.last_round_lost = lost;
        self.last_round_delivered = delivered;
        if lost > 0 {
            self.last_loss_round = Some(self.round);
        }
        log::trace!(
            "bbr: round {} {} lost {lost}/{} bw {:.0} (lo {:.0}) rtt {:?} pacing {:.0} cwnd {:.0} hi {:.0} inflight {}",
            self.round,
            self.mode_name(),
            lost + delivered,
            self.max_bw.get(self.bw_round),
            self.bw_lo,
            self.rtt(),
            self.pacing_rate,
            self.cwnd,
            self.inflight_hi,
            ctx.in_flight
        );
    }

    /// True when `lost` loss events in `total` packets are clearly above
    /// the profile's loss threshold (by [`LOSS_SIGNIFICANCE`] standard
    /// deviations of a random loss at the threshold rate).
    fn is_congestion(&self, lost: u64, total: u64) -> bool {
        if lost < MIN_LOSS_EVENTS {
            return false;
        }
        let total = total.max(lost) as f64;
        let p = self.profile.loss_threshold();
        let expected = p * total;
        let sd = (expected * (1.0 - p)).sqrt();
        let significance = if self.mode == Mode::Startup {
            STARTUP_LOSS_SIGNIFICANCE
        } else {
            LOSS_SIGNIFICANCE
        };
        lost as f64 > expected + significance * sd
    }

    /// A round lost too much: in Startup the pipe is full; later, cut the
    /// bounds.
    fn on_congestion(&mut self, ctx: &CcContext, flight_delivered: u64) {
        // React once per flight: the next signal must come from a packet
        // sent after this reaction.
        self.congestion_delivered = Some(ctx.delivered);
        let bw = self.model_bw();
        match self.mode {
            Mode::Startup => {
                log::debug!("bbr: startup ends on loss at {bw:.0} packets/s");
                self.filled_pipe = true;
                self.inflight_hi = self.bdp(bw).max(flight_delivered as f64).max(MIN_CWND);
                self.enter_drain();
            }
            _ => {
                self.congested_in_cycle = true;
                // Cut to 70 %, but never below what the path delivered in
                // the last round trips (BBRv2's lower bounds): a loss rate
                // that stays high at the lower rate is not ours to cure, so
                // it must not drive the rate down round after round.
                let latest = self.bw_latest.max(self.bw_latest_prev);
                self.bw_lo = (BETA * bw).max(latest).max(MIN_BW);
                let inflight = f64::from(ctx.in_flight).max(self.bdp(bw));
                self.inflight_hi = (BETA * self.inflight_hi.min(inflight))
                    .max(self.bdp(latest))
                    .max(MIN_CWND);
                log::debug!(
                    "bbr: congestion, bounds {:.0} packets/s, {:.0} packets in flight",
                    self.bw_lo,
                    self.inflight_hi
                );
                if self.mode == Mode::ProbeBw && self.pacing_gain > 1.0 {
                    // Stop probing at once.
                    self.advance_cycle(ctx.now);
                }
            }
        }
    }

    /// Startup: is the bandwidth still growing?
    ///
    /// A round that delivered less than a quarter of the window says
    /// nothing either way: the flow did not fill what it was allowed (a
    /// stall behind a lost retransmission into a receiver that reports
    /// each loss once, or a sender short of CPU), where a full pipe
    /// delivers at least the BDP, half the window, each round. Counting
    /// such rounds ended Startup on real sockets into libudt0 at 556 of
    /// 25 000 packets/s (S3), and ProbeBw then took seconds to climb.
    fn check_full_bw(&mut self) {
        let bw = self.max_bw.get(self.bw_round);
        if bw >= self.full_bw * FULL_BW_GROWTH {
            self.full_bw = bw;
            self.full_bw_rounds = 0;
            return;
        }
        if (self.last_round_delivered as f64) < self.cwnd * MIN_PLATEAU_ROUND_SHARE {
            return;
        }
        self.full_bw_rounds += 1;
        if self.full_bw_rounds >= FULL_BW_ROUNDS {
            log::debug!("bbr: startup ends at {bw:.0} packets/s");
            self.filled_pipe = true;
        }
    }

    /// Startup: does the RTT sample `rtt` show a queue building at the
    /// bottleneck? The pipe is full once the flight no longer fits in
    /// the BDP: a queue grows, and every round at 2.77x makes it grow
    /// faster. On a drop-tail queue shallower than the BDP the loss that
    /// would end Startup otherwise comes a queue's worth of round trip
    /// later (the first packet after a drop waits out the full queue
    /// before its NAK can leave), and the packets sent meanwhile at twice
    /// the delivery rate overflow it: about 1 800 drops on the 500 Mbit/s
    /// path with 100 ms RTT and a 50 ms queue in the simulator. A rise of
    /// a quarter of the minimum RTT is the queue, not the noise of ACK
    /// timing, which the extra ACK interval covers; several samples in a
    /// row keep a scheduling hiccup of either host from ending Startup.
    fn check_startup_queue(&mut self, rtt: Duration) {
        let Some(min) = self.min_rtt.get() else {
            return;
        };
        let threshold = min + min.mul_f64(STARTUP_QUEUE_SHARE) + SYN_INTERVAL;
        if rtt <= threshold {
            self.queue_samples = 0;
            return;
        }
        self.queue_samples += 1;
        if self.queue_samples >= STARTUP_QUEUE_SAMPLES {
            log::debug!(
                "bbr: startup ends on a queue ({rtt:?} against {min:?}) at {:.0} packets/s",
                self.max_bw.get(self.bw_round)
            );
            self.filled_pipe = true;
        }
    }

    fn advance_cycle(&mut self, now: Instant) {
        self.cycle_index = (self.cycle_index + 1) % PROBE_BW_GAINS.len();
        self.cycle_stamp = Some(now);
        self.pacing_gain = PROBE_BW_GAINS[self.cycle_index];
        if self.cycle_index == 0 {
            // A new probe starts from the filtered bandwidth again (BBRv3
            // resets its short-term bound each cycle too). The in-flight
            // bound is lifted after a whole cycle without congestion, and
            // otherwise probed a quarter higher.
            self.bw_lo = f64::INFINITY;
            if self.congested_in_cycle {
                self.inflight_hi *= PROBE_BW_GAINS[0];
            } else {
                self.inflight_hi = f64::INFINITY;
            }
            self.congested_in_cycle = false;
        }
    }

    /// ProbeBw: move to the next phase when this one has done its job.
    fn update_cycle(&mut self, ctx: &CcContext, had_loss: bool) {
        let Some(stamp) = self.cycle_stamp else {
            self.cycle_stamp = Some(ctx.now);
            return;
        };
        let elapsed = ctx.now.saturating_duration_since(stamp);
        let min_rtt = self.rtt();
        let full_length = elapsed > min_rtt;
        let bdp = self.bdp(self.model_bw());
        let inflight = f64::from(ctx.in_flight);
        let done = if self.pacing_gain > 1.0 {
            // Probe until the pipe holds the extra, a loss says it will
            // not, or two round trips passed (a flow-window-limited
            // sender never gets there).
            (full_length && (had_loss || inflight >= self.pacing_gain * bdp))
                || elapsed > 2 * min_rtt
        } else if self.pacing_gain < 1.0 {
            // Drain until the queue is gone (the flight is down to what
            // the cruise window allows), as the draft's ProbeBW_DOWN does,
            // not for one round trip: an estimate a few percent above the
            // link (ACK timing noise that the maximum filter collects,
            // batched reads on real sockets) builds a standing queue that
            // one round at 0.75 does not empty, and the next probe then
            // overflows it (real S3: the relay's queue overflowed every
            // 3-5 s). At most a few round trips, should the flight never
            // come down (a misjudged pipe).
            inflight <= bdp + self.ack_allowance(self.model_bw())
                || elapsed > DRAIN_PHASE_MAX_RTTS * min_rtt
        } else {
            full_length
        };
        if done {
            self.advance_cycle(ctx.now);
        }
    }

    /// Moves between states after a sample.
    fn update_mode(&mut self, ctx: &CcContext, sample: &AckSample, rtt_expired: bool) {
        let had_loss = sample.rate.is_some_and(|r| r.lost > 0);
        match self.mode {
            Mode::Startup => {
                let measured = sample.rate.is_some_and(|r| !r.is_app_limited);
                if self.round_start && measured && !self.filled_pipe {
                    self.check_full_bw();
                }
                if self.filled_pipe {
                    self.enter_drain();
                }
            }
            Mode::Drain => {}
            Mode::ProbeBw => self.update_cycle(ctx, had_loss),
            Mode::ProbeRtt => {}
        }
        if self.mode == Mode::Drain && f64::from(ctx.in_flight) <= self.bdp(self.model_bw()) {
            self.enter_probe_bw(ctx.now);
        }
        // Look for the RTT again when the minimum went stale (judged
        // before this sample replaced it, as BBR does).
        if self.mode != Mode::ProbeRtt && rtt_expired {
            log::debug!("bbr: probing the minimum RTT");
            self.enter_probe_rtt();
        }
        if self.mode == Mode::ProbeRtt {
            self.update_probe_rtt(ctx);
        }
    }

    fn probe_rtt_cwnd(&self) -> f64 {
        (PROBE_RTT_CWND_GAIN * self.bdp(self.model_bw())).max(MIN_CWND)
    }

    fn update_probe_rtt(&mut self, ctx: &CcContext) {
        match self.probe_rtt_done {
            None => {
                if f64::from(ctx.in_flight) <= self.probe_rtt_cwnd() {
                    self.probe_rtt_done = Some(ctx.now + PROBE_RTT_DURATION);
                    self.probe_rtt_round_done = false;
                    // Count a fresh round from here.
                    self.next_round_delivered = ctx.delivered;
                }
            }
            Some(done) => {
                if self.round_start {
                    self.probe_rtt_round_done = true;
                }
                if self.probe_rtt_round_done && ctx.now >= done {
                    self.exit_probe_rtt(ctx.now);
                }
            }
        }
    }

    /// Computes the pacing rate and window from the model.
    fn set_outputs(&mut self, ctx: &CcContext, newly_acked: u32) {
        let bw = self.model_bw();
        let mut rate = self.pacing_gain * bw * PACING_MARGIN;
        if !self.filled_pipe {
            rate = rate.max(self.startup_pacing_floor());
        }
        self.pacing_rate = if self.filled_pipe || !self.paced_by_samples {
            // (The first sample replaces the initial guess, up or down.)
            self.paced_by_samples = self.bandwidth().is_some();
            rate
        } else {
            // Startup never slows down: a low early sample must not undo
            // the doubling.
            self.pacing_rate.max(rate)
        };

        let bdp = self.bdp(bw);
        // Startup and Drain leave room for the doubling. Once the pipe is
        // full, the window is the BDP (times the probing gain) plus a fixed
        // allowance for the ACK clock: a UDT receiver acknowledges every 64
        // packets or every 10 ms, so that much may be delivered and not yet
        // acknowledged. A fixed allowance, rather than BBR's 2×BDP, matters
        // when flows end up window-limited behind a standing queue: each
        // then keeps about the same number of packets queued, so they
        // converge to equal rates (as TCP Vegas flows do) instead of
        // keeping whatever shares they had.
        let mut target = match self.mode {
            Mode::Startup => self.startup_target(bw),
            Mode::Drain => self.cwnd_gain * bdp,
            _ => self.pacing_gain.max(1.0) * bdp + self.ack_allowance(bw),
        };
        // UDT's ACK is cumulative, and a NAK proves only the packets sent
        // before the one that revealed the gap: what is sent after it stays
        // "in flight" until the hole is repaired, about a round trip and an
        // ACK interval later. While losses are being repaired the window
        // allows for that, so random loss does not become a window stall.
        // Not in Startup: its window is already twice the BDP it has
        // found, and on top of that, random loss made it three times the
        // BDP and the overshoot into a queue of one BDP as large again
        // (S3: 4 200 packets in flight where 2 500 fit).
        let recent_loss = self.mode != Mode::Startup
            && self
                .last_loss_round
                .is_some_and(|r| self.round <= r.saturating_add(2));
        if recent_loss {
            target += bw * (ctx.rtt.max(self.rtt()) + SYN_INTERVAL).as_secs_f64();
        }
        let target = target.max(MIN_CWND);
        let acked = f64::from(newly_acked);
        if self.mode == Mode::ProbeRtt {
            self.cwnd = self.cwnd.min(self.probe_rtt_cwnd());
        } else if self.filled_pipe {
            self.cwnd = (self.cwnd + acked).min(target);
        } else if self.cwnd < target || ctx.delivered < INITIAL_CONGESTION_WINDOW as u64 {
            self.cwnd += acked;
        }
        self.cwnd = self.cwnd.min(self.inflight_hi).max(MIN_CWND);
    }
}

impl CongestionControl for BbrCc {
    fn name(&self) -> &'static str {
        match self.profile {
            BbrProfile::Fair => "bbr",
            BbrProfile::Bulk => "bbr-bulk",
        }
    }

    fn init(&mut self, ctx: &CcContext) {
        let profile = self.profile;
        *self = BbrCc::new(profile);
        // Different connections start their probe cycles in different
        // phases; seeding from the initial sequence number keeps a run
        // reproducible.
        self.rng = Rng::new(u64::from(ctx.send_current_seq.value()) ^ 0xBB_4C);
        self.srtt = ctx.rtt;
        self.next_round_delivered = ctx.delivered;
        self.round_lost_base = ctx.lost;
        self.round_delivered_base = ctx.delivered;
        self.pacing_rate = STARTUP_PACING_GAIN * self.model_bw();
    }

    fn on_ack_sample(&mut self, ctx: &CcContext, sample: &AckSample) {
        self.srtt = ctx.rtt;
        if sample.rate.is_some() {
            // The path delivers again after a lone timeout.
            self.timeouts_in_a_row = 0;
            if self.prior_cwnd > 0.0 {
                self.cwnd = self.cwnd.max(self.prior_cwnd);
                self.prior_cwnd = 0.0;
            }
        }
        let rtt_expired = self
            .probe_rtt_min
            .stamp()
            .is_some_and(|t| ctx.now.saturating_duration_since(t) > PROBE_RTT_INTERVAL);
        if let Some(rtt) = sample.rtt {
            let tolerance = self.min_rtt.get().map_or(Duration::ZERO, |m| m / 32);
            self.probe_rtt_min
                .update(ctx.now, rtt, PROBE_RTT_INTERVAL, tolerance);
            // A model minimum gone stale is replaced by the smallest RTT of
            // the last probe interval (one ProbeRtt at least), not by
            // whatever this sample's queue was.
            let stale = self
                .min_rtt
                .stamp()
                .is_some_and(|t| ctx.now.saturating_duration_since(t) > MIN_RTT_WINDOW);
            let recent = self.probe_rtt_min.get().unwrap_or(rtt);
            let taken = if stale { recent.min(rtt) } else { rtt };
            self.min_rtt
                .update(ctx.now, taken, MIN_RTT_WINDOW, tolerance);
            if self.mode == Mode::Startup && !self.filled_pipe {
                self.check_startup_queue(rtt);
            }
        }
        self.round_start = false;
        if let Some(rs) = sample.rate {
            if rs.prior_delivered >= self.next_round_delivered {
                self.end_round(ctx);
                self.next_round_delivered = ctx.delivered;
                self.round += 1;
                if self.round_measured {
                    self.bw_round += 1;
                    self.unmeasured_rounds = 0;
                } else {
                    self.unmeasured_rounds += 1;
                    if self.unmeasured_rounds >= UNMEASURED_ROUNDS_PER_TICK {
                        self.bw_round += 1;
                        self.unmeasured_rounds = 0;
                    }
                }
                self.round_measured = false;
                self.round_start = true;
                self.bw_latest_prev = self.bw_latest;
                self.bw_latest = 0.0;
            }
            // Loss is judged over the sampled packet's round trip: the
            // loss events reported against the packets sent in the same
            // time. Counting events, not packets, keeps a burst of radio
            // loss from looking like a queue overflowing.
            let total = rs.sent.max(u64::from(rs.tx_in_flight));
            let answered = self
                .congestion_delivered
                .is_some_and(|d| rs.prior_delivered < d);
            // Startup ends on loss only once its round lost a few packets
            // (BBRv3's StartupFullLossCnt): early rounds are a few dozen
            // packets, and a stall behind one lost retransmission made a
            // sample's window show four losses in forty sent; on real
            // sockets into libudt0 (S3, 1 % loss) Startup then ended at
            // 1 300 of 25 000 packets/s, and ProbeBw took seconds to climb.
            let round_lost = ctx
                .lost
                .saturating_sub(self.round_lost_base)
                .max(self.last_round_lost);
            let startup_evidence =
                self.mode != Mode::Startup || round_lost >= STARTUP_MIN_ROUND_LOSSES;
            if !answered && startup_evidence && self.is_congestion(rs.loss_events, total) {
                log::debug!(
                    "bbr: congestion: {} loss events ({} lost) in {} sent, {} in flight, delivered {} in {:?}",
                    rs.loss_events,
                    rs.lost,
                    rs.sent,
                    rs.tx_in_flight,
                    rs.delivered,
                    rs.interval
                );
                self.on_congestion(ctx, rs.delivered);
            }
            let mut rate = rs.delivery_rate();
            // A cumulative ACK that jumps over a repaired hole credits
            // packets that arrived over a long time to a short interval
            // (ACK compression). The receiver's own measurement of the
            // arrival speed has no such error, nor the timing noise whose
            // peaks a maximum filter would collect: no sample may exceed
            // it. Except a Startup sample whose round trip saw no loss
            // (so no repaired hole): the report is up to 10 ms old, and
            // capping by it would stall a doubling that takes a millisecond
            // per round. And a report far below the sample is not a
            // measurement of this flight: a receiver just starting, or one
            // that saw an idle gap, reports a few packets per second.
            let reported = speed_lower_bound(ctx.recv_speed);
            // A receiver that reads datagrams in batches (recvmmsg, UDP
            // GRO: libudt0 and ours on real sockets) times a whole batch
            // at one instant and reports ~1 000 000 packets/s, or, with
            // batches of a few, a speed a fifth above the link. Packets
            // cannot arrive faster than the sender sends them or than the
            // bottleneck it has measured passes them, so a report above
            // both is no measurement; the sample is then bounded by what
            // its own flight could deliver instead.
            let sending = self
                .pacing_rate
                .max(self.max_bw.get(self.bw_round))
                .max(MIN_BW);
            let implausible = reported > IMPLAUSIBLE_SPEED_FACTOR * sending;
            let speed = if implausible { 0.0 } else { reported };
            if speed > 0.0 {
                self.seen_recv_speed = true;
            }
            let exempt = !self.filled_pipe && rs.lost == 0;
            if exempt {
                // Clean Startup sample: taken as it is.
            } else if implausible {
                rate = rate.min(rs.flight_delivery_rate());
            } else if speed > 0.0 {
                if speed * 4.0 >= rate {
                    rate = rate.min(self.speed_ceiling(ctx, speed));
                }
            } else if self.seen_recv_speed {
                // The receiver measures, but not lately (heavy loss makes
                // its intervals too irregular): exactly when repaired holes
                // compress ACKs. Such a sample may keep the estimate, not
                // raise it.
                rate = rate.min(self.max_bw.get(self.bw_round));
            }
            // An interval shorter than the minimum RTT means compressed
            // ACKs, not a faster path; an application-limited sample only
            // counts when it shows more than the model knows.
            let plausible = self.min_rtt.get().is_none_or(|m| rs.interval >= m);
            if plausible {
                self.bw_latest = self.bw_latest.max(rate);
            }
            if plausible && (!rs.is_app_limited || rate >= self.max_bw.get(self.bw_round)) {
                // A model raised past Startup is where an overestimate
                // (compressed ACKs, a receiver's bursty arrival speed)
                // shows first.
                if self.filled_pipe && rate > self.max_bw.get(self.bw_round) * 1.05 {
                    log::trace!(
                        "bbr: raise {:.0} -> {rate:.0} (raw {:.0}, speed {} capacity {}, delivered {} in {:?}, lost {}, limited {}) gain {}",
                        self.max_bw.get(self.bw_round),
                        rs.delivery_rate(),
                        ctx.recv_speed,
                        ctx.bandwidth,
                        rs.delivered,
                        rs.interval,
                        rs.lost,
                        rs.is_app_limited,
                        self.pacing_gain
                    );
                }
                self.max_bw.update(self.bw_round, rate);
                self.round_measured = true;
            }
        }
        self.update_mode(ctx, sample, rtt_expired);
        self.set_outputs(ctx, sample.newly_acked);
    }

    fn on_ack(&mut self, _ctx: &CcContext, _ack: SeqNumber) {
        // Everything happens in on_ack_sample, which sees light ACKs too.
    }

    fn on_loss(&mut self, _ctx: &CcContext, _first_lost: SeqNumber, _count: u32) {
        // Losses are judged per round trip when the round ends (the
        // connection's `lost` count carries them); one loss is not news.
    }

    fn on_timeout(&mut self, ctx: &CcContext) {
        // Nothing came back for a whole retransmission timeout. Restart the
        // window from the minimum (the retransmissions are not bound by
        // it). A lone timeout is most often one lost retransmission that a
        // receiver reporting each loss once (UDT4) never reports again,
        // going silent meanwhile; the next delivery then restores the
        // window, as BBR's drafts restore the window saved at an RTO. A
        // second timeout in a row means the path changed or broke: cut the
        // bounds as for congestion.
        self.srtt = ctx.rtt;
        self.timeouts_in_a_row = self.timeouts_in_a_row.saturating_add(1);
        if self.timeouts_in_a_row == 1 {
            self.prior_cwnd = self.cwnd;
            self.cwnd = MIN_CWND;
            return;
        }
        // The window the path carried before the first of these timeouts.
        let window = self.cwnd.max(self.prior_cwnd);
        self.prior_cwnd = 0.0;
        if self.filled_pipe {
            let bw = self.model_bw();
            self.bw_lo = (BETA * bw).max(MIN_BW);
            self.inflight_hi = (BETA * self.inflight_hi.min(window)).max(MIN_CWND);
            self.congested_in_cycle = true;
        }
        self.cwnd = MIN_CWND;
    }

    fn send_period_us(&self) -> f64 {
        if self.pacing_rate > 0.0 {
            1e6 / self.pacing_rate
        } else {
            1.0
        }
    }

    fn pacing_rate(&self) -> Option<f64> {
        (self.pacing_rate > 0.0).then_some(self.pacing_rate)
    }

    fn send_quantum(&self) -> u32 {
        if self.pacing_rate >= PAIRED_QUANTUM_RATE {
            SEND_QUANTUM
        } else {
            1
        }
    }

    fn idle_burst(&self) -> Option<u32> {
        Some(IDLE_BURST_PACKETS)
    }

    fn congestion_window(&self) -> f64 {
        self.cwnd
    }

    fn window_basis(&self) -> WindowBasis {
        WindowBasis::InFlight
    }
}

impl BbrCc {
    /// The most a delivery-rate sample may show given the receiver's
    /// measured arrival `speed`: the speed itself, or up to one probing
    /// step (the ProbeBW up gain) above the current estimate, never above
    /// the packet-pair link capacity.
    ///
    /// Why the step: the receiver's speed is a median over its last 16
    /// arrival intervals. Below ~1600 packets/s at a 10 ms RTT those span
    /// more than the one round trip a probe lasts, so the report mostly
    /// shows the rate before the probe, and a plain cap at the speed locked
    /// the estimate where it was (a 5 % loss path stuck at 500 packets/s
    /// of 8500). The step lets each probe raise the estimate by its gain, as
    /// it would without a cap; the link capacity bounds the ratchet, so
    /// compressed ACKs at the bottleneck cannot raise it without end.
    ///
    /// Only where the report is that slow: when 16 arrivals take less than
    /// half a round trip, the report is current and stays the cap (at high
    /// rates the packet-pair capacity is itself up to ~9 % high, and a
    /// ceiling there would keep a standing queue).
    fn speed_ceiling(&self, ctx: &CcContext, speed: f64) -> f64 {
        let span = SPEED_SAMPLE_ARRIVALS / speed;
        let slow = self
            .min_rtt
            .get()
            .is_some_and(|rtt| span > rtt.as_secs_f64() / 2.0);
        let capacity = f64::from(ctx.bandwidth);
        if !slow || capacity <= 0.0 {
            return speed;
        }
        let step = self.max_bw.get(self.bw_round) * PROBE_BW_GAINS[0];
        speed.max(step.min(capacity))
    }
}

/// A receiver's arrival speed above this many times the larger of our
/// pacing rate and our bandwidth estimate is no measurement: it timed
/// batches of datagrams read at once (7.2). The margin covers a report's
/// lag behind a change of pacing and the few percent an exact measurement
/// reads high with reordering; on real sockets our receiver's reports
/// of 30 000-34 000 packets/s on a 25 750 packets/s link (S3) were
/// 14-30 % above.
const IMPLAUSIBLE_SPEED_FACTOR: f64 = 1.05;

/// Arrival intervals behind a receiver's speed report (UDT4 takes the
/// median-filtered mean of its last 16, udt4-protocol.md §6.4).
const SPEED_SAMPLE_ARRIVALS: f64 = 16.0;

/// The least arrival speed, packets/s, consistent with a receiver's report
/// of `reported` (0 for none). UDT4 computes it as `ceil(1e6 / m)` from an
/// integer mean interval `m` in µs, truncated: the true mean lies in
/// `[m, m + 1)`, so at 85 000 packets/s (1 Gbit/s, `m` = 11) the report is up
/// to 9 % high. Pacing above the bottleneck would keep its queue full;
/// taking the bound errs low by at most one part in `m` instead.
fn speed_lower_bound(reported: u32) -> f64 {
    if reported == 0 {
        return 0.0;
    }
    let mean_us = (1e6 / f64::from(reported)).ceil();
    1e6 / (mean_us + 1.0)
}

/// Builds a [`BbrCc`] with the given profile for each connection.
#[derive(Clone, Copy, Debug, Default)]
pub struct BbrCcFactory {
    profile: BbrProfile,
}

impl BbrCcFactory {
    /// A factory of controllers with `profile`.
    pub const fn new(profile: BbrProfile) -> Self {
        BbrCcFactory { profile }
    }
}

impl CongestionControlFactory for BbrCcFactory {
    fn build(&self) -> Box<dyn CongestionControl> {
        Box::new(BbrCc::new(self.profile))
    }
}
