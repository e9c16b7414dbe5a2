//! Estimators of path properties (udt4-protocol.md §8): smoothed RTT and its
//! variance, the receiver's packet arrival speed and packet-pair link
//! capacity, and the sender's smoothing of the rates the receiver reports.
//!
//! Everything here is fixed-size: the windows are arrays, medians are taken
//! on a stack copy, and no method allocates, so the per-packet receive path
//! can call [`ArrivalWindow::on_data`] freely.

use std::time::{Duration, Instant};

use crate::seq::SeqNumber;

/// Initial smoothed RTT: 10 SYN = 100 ms (UDT4 `m_iRTT = 10 * m_iSYNInterval`).
const INITIAL_RTT_US: u32 = 100_000;

/// Initial RTT variance: half the initial RTT (UDT4 `m_iRTTVar = m_iRTT >> 1`).
const INITIAL_RTT_VAR_US: u32 = 50_000;

/// Samples and set values above this are clamped (60 s). UDT4 trusts the
/// RTT field of an ACK blindly; a hostile or broken peer could otherwise push
/// the EXP timer (`RTT + 4·RTTVar`, times the EXP count) out by hours.
const MAX_RTT_US: u32 = 60_000_000;

/// Slots in the arrival-interval window (UDT4 `CPktTimeWindow(16, 64)`).
const ARRIVAL_SLOTS: usize = 16;

/// Slots in the packet-pair probe window.
const PROBE_SLOTS: usize = 64;

/// Initial value of each arrival interval: 1 s (window.cpp constructor).
const INITIAL_ARRIVAL_US: u32 = 1_000_000;

/// Initial value of each probe interval: 1 ms, i.e. 1000 packets/s.
const INITIAL_PROBE_US: u32 = 1_000;

/// Microseconds in a second, for interval-to-rate conversions.
const MICROS_PER_SEC: u64 = 1_000_000;

/// Smoothed round-trip time and RTT variance (UDT4 `m_iRTT`/`m_iRTTVar`,
/// udt4-protocol.md §8.1).
///
/// Kept in whole microseconds with UDT4's integer arithmetic, so our ACKs
/// carry exactly the values a UDT4 receiver would compute from the same
/// samples. The sender feeds it the RTT field of each full or medium ACK
/// (§6.5); the receiver feeds it ACK→ACK2 samples (§6.6).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RttEstimator {
    rtt_us: u32,
    var_us: u32,
    /// A sample (or a cached value) replaced the initial guess.
    measured: bool,
}

impl RttEstimator {
    /// RTT 100 ms and variance 50 ms, as a fresh UDT4 socket starts.
    pub fn new() -> Self {
        RttEstimator {
            rtt_us: INITIAL_RTT_US,
            var_us: INITIAL_RTT_VAR_US,
            measured: false,
        }
    }

    /// Folds one sample in: `var = (3·var + |s − rtt|)/4`, then
    /// `rtt = (7·rtt + s)/8` (integer µs, UDT4 core.cpp processCtrl cases 2
    /// and 6). Samples above 60 s are clamped to 60 s.
    ///
    /// Unlike UDT4, the first sample replaces the initial guess (RTT = s,
    /// variance s/2, as RFC 6298 starts): folded into 100 ms ± 50 ms with
    /// weights of 1/8, a 1 ms path still read 59 ms ± 69 ms after a
    /// 16 MiB transfer, and a receiver repeats an unconfirmed ACK only
    /// after RTT + 4·RTTVar — 335 ms, which our sender's close waits for
    /// (docs/interop.md). The values an ACK carries are then ours, not
    /// the ones a UDT4 receiver would compute; UDT4 senders fold them in
    /// like any other.
    pub fn update(&mut self, sample: Duration) {
        let s = u64::from(micros_clamped(sample));
        if !self.measured {
            self.measured = true;
            // At most MAX_RTT_US, so it fits back into u32.
            self.rtt_us = s as u32;
            self.var_us = (s / 2) as u32;
            return;
        }
        let rtt = u64::from(self.rtt_us);
        let var = u64::from(self.var_us);
        // Both results are weighted means of values <= MAX_RTT_US, so they
        // fit back into u32.
        self.var_us = ((3 * var + s.abs_diff(rtt)) / 4) as u32;
        self.rtt_us = ((7 * rtt + s) / 8) as u32;
    }

    /// True for the pair of values an estimator holds before its first
    /// sample (100 ms, 50 ms): what a UDT receiver reports in its ACKs
    /// until an ACK2 gave it a measurement.
    pub fn is_initial_report(rtt_us: u32, var_us: u32) -> bool {
        rtt_us == INITIAL_RTT_US && var_us == INITIAL_RTT_VAR_US
    }

    /// The smoothed RTT.
    pub fn rtt(&self) -> Duration {
        Duration::from_micros(u64::from(self.rtt_us))
    }

    /// The RTT variance.
    pub fn rtt_var(&self) -> Duration {
        Duration::from_micros(u64::from(self.var_us))
    }

    /// The smoothed RTT in µs, as carried in ACK field 2.
    pub fn rtt_us(&self) -> u32 {
        self.rtt_us
    }

    /// The RTT variance in µs, as carried in ACK field 3.
    pub fn rtt_var_us(&self) -> u32 {
        self.var_us
    }

    /// Overwrites both values, e.g. from a cache of a previous connection to
    /// the same host (UDT4 does this per peer IP, §8.1). Clamped to 60 s.
    pub fn set(&mut self, rtt: Duration, var: Duration) {
        self.rtt_us = micros_clamped(rtt);
        self.var_us = micros_clamped(var);
        self.measured = true;
    }
}

impl Default for RttEstimator {
    fn default() -> Self {
        RttEstimator::new()
    }
}

/// The receiver's record of data arrivals: the last 16 inter-arrival
/// intervals and the last 64 packet-pair intervals (UDT4 `CPktTimeWindow`,
/// udt4-protocol.md §8.2–§8.3). It yields the arrival speed and the link
/// capacity that full ACKs carry in fields 5 and 6.
///
/// Intervals are stored in whole µs, at least 1 (two packets read in the same
/// microsecond would otherwise give a zero median and a division by zero).
#[derive(Clone, Debug)]
pub struct ArrivalWindow {
    /// Inter-arrival intervals, µs, as a ring.
    intervals: [u32; ARRIVAL_SLOTS],
    /// Next slot of `intervals` to overwrite.
    interval_pos: usize,
    /// Packet-pair intervals (probe 2 arrival − probe 1 arrival), µs, as a ring.
    probes: [u32; PROBE_SLOTS],
    /// Next slot of `probes` to overwrite.
    probe_pos: usize,
    /// When the previous data packet arrived; `None` before the first.
    last_arrival: Option<Instant>,
    /// The previous data packet, if it was a probe-1 (`seq & 0xF == 0`).
    probe1: Option<(SeqNumber, Instant)>,
}

impl ArrivalWindow {
    /// A window in UDT4's initial state: 16 arrival intervals of 1 s (speed
    /// 1 packet/s) and 64 probe intervals of 1 ms (capacity 1000 packets/s).
    pub fn new() -> Self {
        ArrivalWindow {
            intervals: [INITIAL_ARRIVAL_US; ARRIVAL_SLOTS],
            interval_pos: 0,
            probes: [INITIAL_PROBE_US; PROBE_SLOTS],
            probe_pos: 0,
            last_arrival: None,
            probe1: None,
        }
    }

    /// Records the arrival of data packet `seq` at `now` (UDT4 processData:
    /// `onPktArrival`, `probe1Arrival`, `probe2Arrival`).
    ///
    /// - Every packet after the first records its interval since the
    ///   previous arrival. (UDT4 measures the first against the socket's
    ///   creation time; we have no such instant, so the first only starts
    ///   the clock.)
    /// - `seq & 0xF == 0` is probe 1 of a packet pair: its time is kept.
    /// - `seq & 0xF == 1` is probe 2: the pair interval is recorded **only if
    ///   the previous packet was its probe 1** (`seq − 1`). UDT4 measures
    ///   against whatever probe-1 time it last saw, so a lost, reordered or
    ///   retransmitted probe 1 gives a stale, far too long interval that only
    ///   the median filter can remove; we do not record it at all.
    ///
    /// A `now` earlier than the previous arrival counts as a 1 µs interval.
    pub fn on_data(&mut self, now: Instant, seq: SeqNumber) {
        if let Some(last) = self.last_arrival {
            self.intervals[self.interval_pos] = interval_us(last, now);
            self.interval_pos = (self.interval_pos + 1) % ARRIVAL_SLOTS;
        }
        self.last_arrival = Some(now);

        let previous_probe1 = self.probe1.take();
        match seq.value() & 0xF {
            0 => self.probe1 = Some((seq, now)),
            1 => {
                if let Some((probe1_seq, probe1_time)) = previous_probe1 {
                    if probe1_seq.next() == seq {
                        self.probes[self.probe_pos] = interval_us(probe1_time, now);
                        self.probe_pos = (self.probe_pos + 1) % PROBE_SLOTS;
                    }
                }
            }
            _ => {}
        }
    }

    /// The packet arrival speed in packets/s, or 0 when the recent intervals
    /// are too irregular (udt4-protocol.md §8.2, window.cpp getPktRcvSpeed).
    ///
    /// Takes the median of the 16 intervals, keeps those strictly between
    /// median/8 and median·8, and if more than 8 survive returns
    /// `ceil(1e6 / (sum / count))` with integer `sum / count`, as UDT4 does.
    /// Divergence: the median is over all 16 slots; UDT4's `nth_element`
    /// leaves the 16th slot out by an off-by-one.
    pub fn recv_speed(&self) -> u32 {
        let median = u64::from(median_of(self.intervals));
        let (lower, upper) = (median / 8, median * 8);
        let mut count = 0u64;
        let mut sum = 0u64;
        for &v in &self.intervals {
            let v = u64::from(v);
            if v > lower && v < upper {
                count += 1;
                sum += v;
            }
        }
        if count <= (ARRIVAL_SLOTS / 2) as u64 {
            return 0;
        }
        // Every kept value is >= 1, so the mean is >= 1.
        let mean = (sum / count).max(1);
        MICROS_PER_SEC.div_ceil(mean) as u32
    }

    /// The link capacity in packets/s from packet pairs (udt4-protocol.md
    /// §8.3, window.cpp getBandwidth).
    ///
    /// Takes the median of the 64 probe intervals, keeps those strictly
    /// between median/8 and median·8 and counts the median once more (as
    /// UDT4 does: count starts at 1 and sum at the median), then returns
    /// `ceil(1e6 / (sum / count))`. Divergence: the median is over all 64
    /// slots (UDT4 leaves the last out).
    pub fn link_capacity(&self) -> u32 {
        let median = u64::from(median_of(self.probes));
        let (lower, upper) = (median / 8, median * 8);
        let mut count = 1u64;
        let mut sum = median;
        for &v in &self.probes {
            let v = u64::from(v);
            if v > lower && v < upper {
                count += 1;
                sum += v;
            }
        }
        // ceil(1e6 / (sum/count)) = ceil(1e6·count / sum), exactly; sum >= 1
        // because every slot is >= 1.
        let capacity = (MICROS_PER_SEC * count).div_ceil(sum.max(1));
        capacity.min(u64::from(u32::MAX)) as u32
    }
}

impl Default for ArrivalWindow {
    fn default() -> Self {
        ArrivalWindow::new()
    }
}

/// The sender's smoothed view of the rates receivers report in full ACKs
/// (UDT4 `m_iDeliveryRate` and `m_iBandwidth`, udt4-protocol.md §8.4), which
/// it hands to the congestion controller as `recv_rate` and `bandwidth`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RateSmoother {
    recv_rate: u32,
    bandwidth: u32,
    recv_rate_measured: bool,
    bandwidth_measured: bool,
    /// The latest valid arrival speed reported, unsmoothed, and when.
    latest_recv_rate: Option<(u32, Instant)>,
}

/// How long a reported arrival speed stays current when later reports say
/// "not measurable": a few full-ACK intervals.
const RECV_SPEED_LIFETIME: Duration = Duration::from_millis(100);

impl RateSmoother {
    /// Delivery rate 16 packets/s and bandwidth 1 packet/s, UDT4's initial values.
    pub fn new() -> Self {
        RateSmoother {
            recv_rate: 16,
            bandwidth: 1,
            recv_rate_measured: false,
            bandwidth_measured: false,
            latest_recv_rate: None,
        }
    }

    /// Folds in the arrival speed and link capacity of one full ACK (fields 5
    /// and 6): `x = (7·x + v)/8` in integers, each only when its value is
    /// positive. UDT4 reads the fields as signed 32-bit integers, so values
    /// above `i32::MAX` are negative there and ignored; we ignore them too.
    ///
    /// Divergence (docs/congestion-control.md): the initial 16 and 1 are
    /// placeholders, not measurements, so the first valid sample replaces
    /// them instead of being averaged with them; UDT4 needs dozens of ACKs to
    /// forget the placeholder.
    pub fn update(&mut self, recv_rate: u32, bandwidth: u32) {
        self.recv_rate = smooth(self.recv_rate, recv_rate, &mut self.recv_rate_measured);
        self.bandwidth = smooth(self.bandwidth, bandwidth, &mut self.bandwidth_measured);
    }

    /// Notes the arrival speed of a full ACK as it is, whether or not the
    /// ACK is news (UDT4 smooths only the rates of ACKs that acknowledge
    /// new data; [`update`](Self::update) keeps that). 0 ("the intervals
    /// were too irregular to tell") and values UDT4 would read as negative
    /// keep the previous measurement.
    pub fn note_latest(&mut self, recv_rate: u32, now: Instant) {
        if recv_rate > 0 && recv_rate <= i32::MAX as u32 {
            self.latest_recv_rate = Some((recv_rate, now));
        }
    }

    /// The arrival speed the receiver last measured, packets/s,
    /// unsmoothed; 0 before any, or when the last measurement is older than
    /// 100 ms at `now`. While the path is saturated it is a direct
    /// measurement of the bottleneck rate, free of the ACK compression that
    /// delivery-rate samples suffer.
    pub fn latest_recv_rate(&self, now: Instant) -> u32 {
        match self.latest_recv_rate {
            Some((rate, at)) if now.saturating_duration_since(at) <= RECV_SPEED_LIFETIME => rate,
            _ => 0,
        }
    }

    /// True once a receiver has reported a real arrival rate.
    pub fn is_recv_rate_measured(&self) -> bool {
        self.recv_rate_measured
    }

    /// The smoothed packet arrival rate at the receiver, packets/s.
    pub fn recv_rate(&self) -> u32 {
        self.recv_rate
    }

    /// The smoothed link capacity estimate, packets/s.
    pub fn bandwidth(&self) -> u32 {
        self.bandwidth
    }
}

impl Default for RateSmoother {
    fn default() -> Self {
        RateSmoother::new()
    }
}

/// How many bandwidth-delay products a buffer grows to: the packets in
/// flight (one BDP and the queue), those held behind a loss until its
/// repair (about one more), and room for the next writes or reads.
const BUFFER_BDPS: f64 = 4.0;

/// Sizes a send or receive buffer from the measured bandwidth-delay
/// product: `BUFFER_BDPS × rate × RTT` packets, never below the configured
/// size, never above the memory cap, at most doubling per step (a rate
/// read from a burst can be far too high), and never shrinking (memory
/// already allocated is kept, as UDT4 keeps its buffer units). The caller
/// asks only while the buffer actually limits the flow; a buffer that
/// still limits it a round trip after it last grew doubles, so that it
/// keeps up with a sender doubling its rate every round trip (the rate
/// measured through a limiting buffer only shows what the buffer allows).
///
/// A fixed 8192-packet buffer limits a 200 ms path to about 477 Mbit/s at
/// 1500-byte packets; this one follows the path up to the cap.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct BufferSizer {
    current: u32,
    cap: u32,
    /// When it last grew.
    grown_at: Option<Instant>,
}

impl BufferSizer {
    /// A sizer starting at `initial` packets and growing up to `cap`
    /// (a cap below `initial` keeps the buffer at `initial`).
    pub fn new(initial: u32, cap: u32) -> Self {
        BufferSizer {
            current: initial,
            cap: cap.max(initial),
            grown_at: None,
        }
    }

    /// The current size, packets.
    pub fn current(&self) -> u32 {
        self.current
    }

    /// The largest size it may grow to, packets.
    pub fn cap(&self) -> u32 {
        self.cap
    }

    /// The buffer limits a flow of `rate` packets per second over `rtt` at
    /// `now`; returns the new size when it grows.
    pub fn observe(&mut self, rate: f64, rtt: Duration, now: Instant) -> Option<u32> {
        let mut want = BUFFER_BDPS * rate * rtt.as_secs_f64();
        if !want.is_finite() {
            return None;
        }
        if self
            .grown_at
            .is_none_or(|t| now.saturating_duration_since(t) >= rtt)
        {
            want = want.max(2.0 * f64::from(self.current));
        }
        if want <= f64::from(self.current) {
            return None;
        }
        let next = (want.ceil() as u64)
            .min(2 * u64::from(self.current))
            .min(u64::from(self.cap)) as u32;
        if next > self.current {
            self.current = next;
            self.grown_at = Some(now);
            Some(next)
        } else {
            None
        }
    }
}

/// One 7/8 EWMA step, skipping values UDT4 would see as zero or negative;
/// the first valid value replaces the placeholder.
fn smooth(current: u32, value: u32, measured: &mut bool) -> u32 {
    if value == 0 || value > i32::MAX as u32 {
        return current;
    }
    if !*measured {
        *measured = true;
        return value;
    }
    // A weighted mean of two u32 values fits in u32.
    ((7 * u64::from(current) + u64::from(value)) / 8) as u32
}

/// `d` in whole microseconds, clamped to [`MAX_RTT_US`].
fn micros_clamped(d: Duration) -> u32 {
    d.as_micros().min(u128::from(MAX_RTT_US)) as u32
}

/// The interval from `from` to `to` in µs, within `[1, u32::MAX]`.
fn interval_us(from: Instant, to: Instant) -> u32 {
    let us = to.saturating_duration_since(from).as_micros();
    us.clamp(1, u128::from(u32::MAX)) as u32
}

/// The upper median of a window, selected on a stack copy so the window's
/// order (which slot is oldest) is kept.
fn median_of<const N: usize>(window: [u32; N]) -> u32 {
    let mut copy = window;
    let (_, median, _) = copy.select_nth_unstable(N / 2);
    *median
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::rng::Rng;

    use crate::time::test_epoch as epoch;

    fn us(t0: Instant, n: u64) -> Instant {
        t0 + Duration::from_micros(n)
    }

    #[test]
    fn rtt_starts_at_udt4_defaults() {
        let r = RttEstimator::new();
        assert_eq!(r.rtt_us(), 100_000);
        assert_eq!(r.rtt_var_us(), 50_000);
        assert_eq!(r.rtt(), Duration::from_millis(100));
        assert_eq!(r.rtt_var(), Duration::from_millis(50));
        assert_eq!(RttEstimator::default(), r);
    }

    #[test]
    fn the_first_sample_replaces_the_initial_guess() {
        // Folded into 100 ms ± 50 ms, samples of 1 ms needed dozens of
        // ACK2s to be believed (59 ms ± 69 ms after a 16 MiB transfer).
        let mut r = RttEstimator::new();
        r.update(Duration::from_millis(1));
        assert_eq!((r.rtt_us(), r.rtt_var_us()), (1_000, 500));
        r.update(Duration::from_millis(1));
        assert_eq!((r.rtt_us(), r.rtt_var_us()), (1_000, 375));
        // A cached value counts as measured.
        let mut c = RttEstimator::new();
        c.set(Duration::from_millis(40), Duration::from_millis(4));
        c.update(Duration::from_millis(48));
        assert_eq!((c.rtt_us(), c.rtt_var_us()), (41_000, 5_000));
    }

    #[test]
    fn rtt_ewma_matches_integer_formula() {
        let mut r = RttEstimator::new();
        // The first sample replaces the initial 100 ms ± 50 ms.
        r.update(Duration::from_micros(90_000));
        assert_eq!((r.rtt_us(), r.rtt_var_us()), (90_000, 45_000));
        // Then UDT4's EWMA; the variance uses the old RTT:
        // |95000 - 90000| = 5000.
        r.update(Duration::from_micros(95_000));
        assert_eq!(r.rtt_var_us(), (3 * 45_000 + 5_000) / 4);
        assert_eq!(r.rtt_us(), (7 * 90_000 + 95_000) / 8);
        // Truncating division, as UDT4's shifts.
        r.set(Duration::from_micros(7), Duration::from_micros(3));
        r.update(Duration::from_micros(0));
        assert_eq!(r.rtt_var_us(), (9 + 7) / 4);
        assert_eq!(r.rtt_us(), 49 / 8);
    }

    #[test]
    fn rtt_against_float_model() {
        // Integer EWMA stays within a few µs of the exact real-valued one.
        let mut rng = Rng::new(0x5EED);
        let mut r = RttEstimator::new();
        let first = 1_000 + rng.below(200_000);
        r.update(Duration::from_micros(first));
        let (mut rtt, mut var) = (first as f64, (first / 2) as f64);
        for i in 0..10_000 {
            let s = 1_000 + rng.below(200_000);
            r.update(Duration::from_micros(s));
            var = (3.0 * var + (s as f64 - rtt).abs()) / 4.0;
            rtt = (7.0 * rtt + s as f64) / 8.0;
            assert!((f64::from(r.rtt_us()) - rtt).abs() < 16.0, "step {i}");
            assert!((f64::from(r.rtt_var_us()) - var).abs() < 16.0, "step {i}");
        }
    }

    #[test]
    fn rtt_converges_and_clamps_hostile_samples() {
        let mut r = RttEstimator::new();
        for _ in 0..200 {
            r.update(Duration::from_millis(10));
        }
        assert!((9_990..=10_000).contains(&r.rtt_us()), "{}", r.rtt_us());
        assert!(r.rtt_var_us() < 50);
        for _ in 0..200 {
            r.update(Duration::MAX);
        }
        assert!(r.rtt_us() <= MAX_RTT_US && r.rtt_us() > MAX_RTT_US - 100);
        r.set(Duration::MAX, Duration::from_secs(1_000_000));
        assert_eq!((r.rtt_us(), r.rtt_var_us()), (MAX_RTT_US, MAX_RTT_US));
        r.update(Duration::ZERO);
        assert!(r.rtt_var_us() <= MAX_RTT_US);
    }

    #[test]
    fn udt4_vector_after_one_packet() {
        // udt4-protocol.md §14 vector 4: the first full ACK after one data
        // packet carries speed 1 and capacity 1000.
        let t0 = epoch();
        let mut w = ArrivalWindow::new();
        assert_eq!(w.recv_speed(), 1);
        assert_eq!(w.link_capacity(), 1000);
        w.on_data(us(t0, 1_200), SeqNumber::new(0x3039));
        assert_eq!(w.recv_speed(), 1);
        assert_eq!(w.link_capacity(), 1000);
        // A second packet soon after: 15 slots of 1 s still dominate.
        w.on_data(us(t0, 1_300), SeqNumber::new(0x303A));
        assert_eq!(w.recv_speed(), 1);
    }

    #[test]
    fn steady_arrivals_give_their_rate() {
        let t0 = epoch();
        let mut w = ArrivalWindow::new();
        // 10 µs apart, pairs back to back 2 µs apart.
        let mut t = 0;
        for i in 0..200u32 {
            let seq = SeqNumber::new(i);
            t += if i & 0xF == 1 { 2 } else { 10 };
            w.on_data(us(t0, t), seq);
        }
        // Of the last 16 intervals one is a 2 µs pair (kept: 2 > 10/8), so
        // the integer mean is 9 and the speed ceil(1e6/9) = 111 112.
        assert_eq!(w.recv_speed(), 111_112);
        // 13 pairs of 2 µs replaced 13 of the 64 initial 1000 µs slots:
        // median is still 1000, so the 2 µs ones are filtered out.
        assert_eq!(w.link_capacity(), 1000);
        for i in 200..2000u32 {
            t += if i & 0xF == 1 { 2 } else { 10 };
            w.on_data(us(t0, t), SeqNumber::new(i));
        }
        // Now every probe slot is 2 µs: 500 000 packets/s.
        assert_eq!(w.link_capacity(), 500_000);
    }

    #[test]
    fn exact_steady_speed() {
        let t0 = epoch();
        let mut w = ArrivalWindow::new();
        for i in 0..17u32 {
            // Avoid probe numbers mattering: speed only.
            w.on_data(us(t0, 10 * u64::from(i)), SeqNumber::new(i + 2));
        }
        assert_eq!(w.recv_speed(), 100_000);
    }

    #[test]
    fn outliers_are_filtered() {
        let t0 = epoch();
        let mut w = ArrivalWindow::new();
        let mut t = 0;
        for i in 0..64u32 {
            // Every 8th interval is a 5 ms pause (an idle sender or a
            // scheduling hiccup): 2 of 16 slots, far above median·8.
            t += if i % 8 == 0 { 5_000 } else { 100 };
            w.on_data(us(t0, t), SeqNumber::new(i + 2));
        }
        assert_eq!(w.recv_speed(), 10_000);
        // Too many irregular intervals: not enough survive, speed 0.
        for i in 0..16u32 {
            t += if i % 2 == 0 { 5_000 } else { 10 };
            w.on_data(us(t0, t), SeqNumber::new(i + 100));
        }
        assert_eq!(w.recv_speed(), 0);
    }

    #[test]
    fn probe2_needs_its_probe1_just_before() {
        let t0 = epoch();
        let mut w = ArrivalWindow::new();
        // Probe 1 (seq 32) arrives, then an unrelated packet, then probe 2:
        // not a pair, nothing recorded.
        w.on_data(us(t0, 0), SeqNumber::new(32));
        w.on_data(us(t0, 100), SeqNumber::new(7));
        w.on_data(us(t0, 200), SeqNumber::new(33));
        assert_eq!(w.probes, [INITIAL_PROBE_US; PROBE_SLOTS]);
        // Probe 2 of another pair right after a probe 1: not recorded.
        w.on_data(us(t0, 300), SeqNumber::new(48));
        w.on_data(us(t0, 350), SeqNumber::new(17));
        assert_eq!(w.probes, [INITIAL_PROBE_US; PROBE_SLOTS]);
        // Probe 1 lost: probe 2 alone records nothing.
        w.on_data(us(t0, 500), SeqNumber::new(65));
        assert_eq!(w.probes, [INITIAL_PROBE_US; PROBE_SLOTS]);
        // A real pair, across the 31-bit wrap (0x7FFF_FFF0 & 0xF == 0).
        w.on_data(us(t0, 1_000), SeqNumber::new(0x7FFF_FFF0));
        w.on_data(us(t0, 1_040), SeqNumber::new(0x7FFF_FFF1));
        assert_eq!(w.probes[0], 40);
        // MAX then 0 then 1: 0 is a probe 1, 1 is its probe 2.
        w.on_data(us(t0, 2_000), SeqNumber::new(SeqNumber::MAX));
        w.on_data(us(t0, 2_010), SeqNumber::new(0));
        w.on_data(us(t0, 2_030), SeqNumber::new(1));
        assert_eq!(w.probes[1], 20);
    }

    #[test]
    fn hostile_timing_does_not_panic_or_divide_by_zero() {
        let t0 = epoch();
        let mut w = ArrivalWindow::new();
        // Everything in the same microsecond, pairs included (125 pairs fill
        // all 64 probe slots).
        for i in 0..2000u32 {
            w.on_data(t0, SeqNumber::new(i));
        }
        assert_eq!(w.recv_speed(), 1_000_000);
        assert_eq!(w.link_capacity(), 1_000_000);
        // Time going backwards.
        w.on_data(us(t0, 0), SeqNumber::new(16));
        w.on_data(t0 - Duration::from_secs(1), SeqNumber::new(17));
        assert!(w.recv_speed() > 0);
        // Hours between packets saturate rather than overflow.
        let mut w = ArrivalWindow::new();
        let mut t = t0;
        for i in 0..40u32 {
            t += Duration::from_secs(10_000);
            w.on_data(t, SeqNumber::new(i));
        }
        assert_eq!(w.recv_speed(), 1);
        // Three pairs of saturated intervals against 61 initial slots: filtered.
        assert_eq!(w.link_capacity(), 1000);
        // All 64 probe slots saturated: capacity rounds up to 1, never 0.
        for i in 40..2000u32 {
            t += Duration::from_secs(10_000);
            w.on_data(t, SeqNumber::new(i));
        }
        assert_eq!(w.link_capacity(), 1);
    }

    #[test]
    fn speed_matches_naive_model() {
        // Random interval patterns against a direct transcription of §8.2
        // (sorted median, with all 16 slots).
        let seed = 0xA11CE;
        let mut rng = Rng::new(seed);
        let t0 = epoch();
        for round in 0..300 {
            let mut w = ArrivalWindow::new();
            let mut t = 0u64;
            let mut model = [INITIAL_ARRIVAL_US; ARRIVAL_SLOTS];
            let n = 1 + rng.below(40) as usize;
            w.on_data(us(t0, t), SeqNumber::new(2));
            for i in 0..n {
                let gap = match rng.below(4) {
                    0 => 1 + rng.below(20),
                    1 => 100 + rng.below(50),
                    2 => 1_000 + rng.below(10_000),
                    _ => 100,
                };
                t += gap;
                w.on_data(us(t0, t), SeqNumber::new(3 + i as u32));
                model[i % ARRIVAL_SLOTS] = gap as u32;
            }
            let mut sorted = model;
            sorted.sort_unstable();
            let median = u64::from(sorted[ARRIVAL_SLOTS / 2]);
            let kept: Vec<u64> = model
                .iter()
                .map(|&v| u64::from(v))
                .filter(|&v| v > median / 8 && v < median * 8)
                .collect();
            let expected = if kept.len() > 8 {
                let mean = kept.iter().sum::<u64>() / kept.len() as u64;
                (1e6 / mean as f64).ceil() as u32
            } else {
                0
            };
            assert_eq!(w.recv_speed(), expected, "seed={seed} round={round}");
        }
    }

    #[test]
    fn rate_smoother_replaces_placeholders_then_follows_udt4() {
        let mut s = RateSmoother::new();
        assert_eq!((s.recv_rate(), s.bandwidth()), (16, 1));
        assert!(!s.is_recv_rate_measured());
        // Zero and "negative" values are no measurement.
        s.update(0, 0x8000_0000);
        assert_eq!((s.recv_rate(), s.bandwidth()), (16, 1));
        assert!(!s.is_recv_rate_measured());
        // The first real sample replaces the placeholder (UDT4 would give
        // (7·16 + 1000)/8 = 139 and (7·1 + 8001)/8 = 1001).
        s.update(1000, 8001);
        assert_eq!((s.recv_rate(), s.bandwidth()), (1000, 8001));
        assert!(s.is_recv_rate_measured());
        // Then the UDT4 7/8 EWMA, each field independently.
        s.update(2000, 0);
        assert_eq!(
            (s.recv_rate(), s.bandwidth()),
            ((7 * 1000 + 2000) / 8, 8001)
        );
        s.update(u32::MAX, 9);
        assert_eq!((s.recv_rate(), s.bandwidth()), (1125, (7 * 8001 + 9) / 8));
        // Converges on a steady value.
        for _ in 0..200 {
            s.update(50_000, i32::MAX as u32);
        }
        assert!((49_990..=50_000).contains(&s.recv_rate()));
        assert!(s.bandwidth() > i32::MAX as u32 - 100);
    }

    #[test]
    fn buffer_sizer_follows_the_bdp_between_floor_and_cap() {
        let ms = Duration::from_millis;
        let t0 = epoch();
        let at = |n| t0 + ms(n);
        let mut b = BufferSizer::new(8192, 100_000);
        // Still limiting a round trip after it started: it doubles.
        assert_eq!(b.observe(10_000.0, ms(50), at(0)), Some(16_384));
        // 10 000 packets/s over 50 ms: 2 000 in flight, 8 000 wanted, and
        // less than a round trip since it grew: nothing.
        assert_eq!(b.observe(10_000.0, ms(50), at(10)), None);
        assert_eq!(b.current(), 16_384);
        // 85 000 packets/s over 200 ms (1 Gbit/s): 68 000 wanted, reached
        // by doubling (each step at most twice the size).
        assert_eq!(b.observe(85_000.0, ms(200), at(20)), Some(32_768));
        assert_eq!(b.observe(85_000.0, ms(200), at(30)), Some(65_536));
        assert_eq!(b.observe(85_000.0, ms(200), at(40)), Some(68_000));
        // Never shrinks.
        assert_eq!(b.observe(1_000.0, ms(10), at(41)), None);
        assert_eq!(b.current(), 68_000);
        // Capped.
        assert_eq!(b.observe(1e9, ms(200), at(50)), Some(100_000));
        assert_eq!(b.observe(1e12, ms(200), at(500)), None);
        assert_eq!(b.observe(f64::NAN, ms(1), at(600)), None);
        assert_eq!(b.observe(f64::INFINITY, ms(1), at(700)), None);
        // A cap below the start keeps the start.
        let b = BufferSizer::new(8192, 100);
        assert_eq!((b.current(), b.cap()), (8192, 8192));
    }

    #[test]
    fn latest_recv_rate_keeps_the_last_measurement_for_a_while() {
        let t0 = epoch();
        let ms = |n| t0 + Duration::from_millis(n);
        let mut s = RateSmoother::new();
        assert_eq!(s.latest_recv_rate(t0), 0);
        s.note_latest(1000, ms(0));
        assert_eq!(s.latest_recv_rate(ms(0)), 1000);
        s.note_latest(0, ms(10)); // not measurable: the last one stands
        s.note_latest(u32::MAX, ms(20)); // negative to UDT4: likewise
        assert_eq!(s.latest_recv_rate(ms(20)), 1000);
        s.note_latest(990, ms(30));
        assert_eq!(s.latest_recv_rate(ms(130)), 990);
        assert_eq!(s.latest_recv_rate(ms(131)), 0, "stale");
        // The UDT4 smoothing is untouched by it.
        assert_eq!(s.recv_rate(), 16);
    }
}
