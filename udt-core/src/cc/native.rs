//! The native UDT congestion controller: UDT4 `CUDTCC`, a rate-based DAIMD
//! (decreasing additive increase, multiplicative decrease) controller
//! (udt4-protocol.md §10, UDT4 ccc.cpp).
//!
//! It follows the 4.11 code step by step, with a few deliberate divergences
//! that `docs/congestion-control.md` lists one by one:
//! - the "inverted" fallback period `cwnd/(RTT+RCInterval)` of `onLoss` and
//!   `onTimeout` is replaced by the `onACK` formula `(RTT+RCInterval)/cwnd`;
//! - `srand(LastDecSeq); rand()` becomes [`Rng`] seeded with `LastDecSeq`;
//! - a timeout after slow start applies one gentle 1/9 rate decrease (UDT4
//!   does nothing);
//! - the period is kept within [`NativeCc::MIN_PERIOD_US`] and a floor rate of
//!   one packet per `RTT + SYN` (never slower than [`NativeCc::MAX_PERIOD_US`]).

use std::time::{Duration, Instant};

use super::{CcContext, CongestionControl, CongestionControlFactory, INITIAL_CONGESTION_WINDOW};
use crate::rng::Rng;
use crate::seq::SeqNumber;
use crate::time::SYN_INTERVAL;

/// The rate-control interval (UDT4 `m_iRCInterval` = SYN): the rate is
/// raised at most once per interval, and each raise adds `inc` packets per
/// interval.
const RC_INTERVAL: Duration = SYN_INTERVAL;

/// [`RC_INTERVAL`] in microseconds, as the formulas use it.
const RC_INTERVAL_US: f64 = 10_000.0;

/// Initial period, µs: in slow start only the window limits sending.
const INITIAL_PERIOD_US: f64 = 1.0;

/// One multiplicative decrease multiplies the period by 9/8 (rate × 8/9).
const DECREASE_FACTOR: f64 = 1.125;

/// A congestion period allows the first decrease plus this many more
/// (`DecCount` runs 1..=4 before `DecCount++ < 5` fails; ccc.cpp onLoss).
const MAX_EXTRA_DECREASES: u32 = 4;

/// Floor of the per-interval increase, packets (ccc.cpp 2012 note: raised
/// from 1/MSS to 0.01 "because the rate stayed low too long").
const MIN_INCREASE: f64 = 0.01;

/// The `Beta` of the increase formula: `inc = 10^ceil(log10(B·MSS·8)) · β / MSS`.
const INCREASE_BETA: f64 = 1.5e-6;

/// The native UDT DAIMD rate controller (UDT4 `CUDTCC`).
///
/// Build it with [`NativeCc::new`] (or through [`NativeCcFactory`]) and call
/// [`CongestionControl::init`] once the connection is established.
#[derive(Debug, Clone)]
pub struct NativeCc {
    /// Inter-packet period, µs (UDT4 `m_dPktSndPeriod`).
    period_us: f64,
    /// Congestion window, packets (UDT4 `m_dCWndSize`).
    cwnd: f64,
    /// When the rate was last adjusted by an ACK (UDT4 `m_LastRCTime`).
    last_rc_time: Option<Instant>,
    /// Slow start: the window grows with ACKs, the period stays at 1 µs.
    slow_start: bool,
    /// A loss was reported since the last rate adjustment: skip the next
    /// increase (UDT4 `m_bLoss`).
    loss: bool,
    /// The highest ACK seen in slow start (UDT4 `m_iLastAck`).
    last_ack: SeqNumber,
    /// The largest sequence number sent when the rate was last decreased;
    /// a loss after it starts a new congestion period (UDT4 `m_iLastDecSeq`).
    last_dec_seq: SeqNumber,
    /// The period just before the last new-period decrease (UDT4 `m_dLastDecPeriod`).
    last_dec_period: f64,
    /// Moving average of NAKs per congestion period (UDT4 `m_iAvgNAKNum`).
    avg_nak_num: u32,
    /// NAKs counted in the current congestion period (UDT4 `m_iNAKCount`).
    nak_count: u32,
    /// NAK events seen in the current congestion period (UDT4 `m_iDecCount`).
    dec_count: u32,
    /// Decrease on every `dec_random`-th NAK of a period (UDT4 `m_iDecRandom`).
    dec_random: u32,
}

impl NativeCc {
    /// The smallest period this controller sets, µs (the base-class
    /// default: 10^6 packets/s, about 12 Gbit/s at MSS 1500).
    pub const MIN_PERIOD_US: f64 = 1.0;

    /// The largest period this controller ever sets, µs (1 packet/s).
    /// The actual ceiling is `min(RTT + SYN, MAX_PERIOD_US)`: the rate never
    /// falls below one packet per round trip plus one rate-control interval.
    pub const MAX_PERIOD_US: f64 = 1_000_000.0;

    /// A controller in its pre-`init` state (period 1 µs, window 16, slow start).
    pub fn new() -> Self {
        NativeCc {
            period_us: INITIAL_PERIOD_US,
            cwnd: INITIAL_CONGESTION_WINDOW,
            last_rc_time: None,
            slow_start: true,
            loss: false,
            last_ack: SeqNumber::new(0),
            last_dec_seq: SeqNumber::new(0),
            last_dec_period: 1.0,
            avg_nak_num: 0,
            nak_count: 0,
            dec_count: 0,
            dec_random: 1,
        }
    }

    /// True while the controller is in slow start (window growth only).
    pub fn is_slow_start(&self) -> bool {
        self.slow_start
    }

    /// The period used when slow start ends: the receiver's delivery rate if
    /// known, else one window per `RTT + RCInterval` (ccc.cpp onACK).
    fn slow_start_exit_period(&self, ctx: &CcContext) -> f64 {
        if ctx.recv_rate > 0 {
            1e6 / f64::from(ctx.recv_rate)
        } else {
            // udt4-protocol.md §10: onLoss/onTimeout use cwnd/(RTT+RCInterval)
            // here, the inverse (a 4.11 bug that means "no limit"). We use the
            // onACK formula everywhere; see docs/congestion-control.md.
            (rtt_us(ctx) + RC_INTERVAL_US) / self.cwnd.max(1.0)
        }
    }

    /// One multiplicative decrease: rate × 8/9, rounded up to whole µs as
    /// UDT4 does (`ceil(period · 1.125)`).
    fn decrease(&mut self) {
        self.period_us = (self.period_us * DECREASE_FACTOR).ceil();
    }

    /// Keeps the period within `[MIN_PERIOD_US, min(RTT + SYN, MAX_PERIOD_US)]`.
    fn clamp_period(&mut self, ctx: &CcContext) {
        let ceiling = (rtt_us(ctx) + RC_INTERVAL_US).min(Self::MAX_PERIOD_US);
        self.period_us = if self.period_us.is_nan() {
            ceiling
        } else {
            self.period_us.clamp(Self::MIN_PERIOD_US, ceiling)
        };
    }
}

impl Default for NativeCc {
    fn default() -> Self {
        NativeCc::new()
    }
}

impl CongestionControl for NativeCc {
    fn name(&self) -> &'static str {
        "udt"
    }

    fn init(&mut self, ctx: &CcContext) {
        // ccc.cpp CUDTCC::init; DecCount keeps its constructor value.
        self.last_rc_time = Some(ctx.now);
        self.slow_start = true;
        self.last_ack = ctx.send_current_seq;
        self.loss = false;
        self.last_dec_seq = self.last_ack.prev();
        self.last_dec_period = 1.0;
        self.avg_nak_num = 0;
        self.nak_count = 0;
        self.dec_random = 1;
        self.cwnd = INITIAL_CONGESTION_WINDOW;
        self.period_us = INITIAL_PERIOD_US;
    }

    fn on_ack(&mut self, ctx: &CcContext, ack: SeqNumber) {
        // Step 1: adjust at most once per RCInterval.
        if let Some(last) = self.last_rc_time {
            if ctx.now.saturating_duration_since(last) < RC_INTERVAL {
                return;
            }
        }
        self.last_rc_time = Some(ctx.now);

        // Step 2/3: the window.
        if self.slow_start {
            // UDT4 seqlen(LastAck, ack) is inclusive: one more than the newly
            // acknowledged count. `len_to` is 0 for an ACK that went back,
            // where UDT4's seqlen would wrap to ~2^31.
            self.cwnd += f64::from(self.last_ack.len_to(ack));
            self.last_ack = self.last_ack.max_of(ack);
            if self.cwnd > f64::from(ctx.max_window) {
                self.slow_start = false;
                self.period_us = self.slow_start_exit_period(ctx);
            } else {
                return;
            }
        } else {
            self.cwnd = f64::from(ctx.recv_rate) / 1e6 * (rtt_us(ctx) + RC_INTERVAL_US)
                + INITIAL_CONGESTION_WINDOW;
        }

        // Step 4: no increase in the interval right after a loss.
        if self.loss {
            self.loss = false;
            self.clamp_period(ctx);
            return;
        }

        // Step 5: spare capacity in packets/s, truncated to an integer like
        // UDT4's `(int64_t)` cast; capped at a ninth of the link right after a
        // decrease so the rate climbs back carefully.
        let bandwidth = i64::from(ctx.bandwidth);
        let mut spare = (bandwidth as f64 - 1e6 / self.period_us) as i64;
        if self.period_us > self.last_dec_period && bandwidth / 9 < spare {
            spare = bandwidth / 9;
        }

        // Steps 6/7: add `inc` packets per RCInterval to the rate.
        let inc = increase_per_interval(spare, ctx.mss);
        self.period_us =
            (self.period_us * RC_INTERVAL_US) / (self.period_us * inc + RC_INTERVAL_US);
        self.clamp_period(ctx);
    }

    fn on_loss(&mut self, ctx: &CcContext, first_lost: SeqNumber, _count: u32) {
        if self.slow_start {
            self.slow_start = false;
            if ctx.recv_rate > 0 {
                // Leave slow start at the receiver's rate: no decrease and
                // no loss flag (ccc.cpp onLoss returns here).
                self.period_us = 1e6 / f64::from(ctx.recv_rate);
                self.clamp_period(ctx);
                return;
            }
            self.period_us = self.slow_start_exit_period(ctx);
        }

        self.loss = true;

        if first_lost.is_after(self.last_dec_seq) {
            // A loss of a packet sent after the last decrease: a new
            // congestion period.
            self.last_dec_period = self.period_us;
            self.decrease();
            let avg = 0.875 * f64::from(self.avg_nak_num) + 0.125 * f64::from(self.nak_count);
            self.avg_nak_num = avg.ceil() as u32;
            self.nak_count = 1;
            self.dec_count = 1;
            self.last_dec_seq = ctx.send_current_seq;
            // UDT4: srand(LastDecSeq); DecRandom = ceil(AvgNAKNum · rand()/RAND_MAX),
            // at least 1. Seeding our own generator the same way keeps the
            // randomisation (it breaks synchronisation between flows) while
            // staying deterministic and free of global state.
            let mut rng = Rng::new(u64::from(self.last_dec_seq.value()));
            let random = (f64::from(self.avg_nak_num) * rng.next_f64()).ceil() as u32;
            self.dec_random = random.max(1);
        } else {
            // Same period: `DecCount++ < 5 && ++NAKCount % DecRandom == 0`.
            // The post-increment always happens; NAKCount only advances while
            // the first test passes (short-circuit).
            let events = self.dec_count;
            self.dec_count = self.dec_count.saturating_add(1);
            if events <= MAX_EXTRA_DECREASES {
                self.nak_count = self.nak_count.saturating_add(1);
                if self.nak_count.is_multiple_of(self.dec_random.max(1)) {
                    self.decrease();
                    self.last_dec_seq = ctx.send_current_seq;
                }
            }
        }
        self.clamp_period(ctx);
    }

    fn on_timeout(&mut self, ctx: &CcContext) {
        if self.slow_start {
            // ccc.cpp onTimeout: leave slow start at the receiver's rate.
            self.slow_start = false;
            self.period_us = self.slow_start_exit_period(ctx);
        } else {
            // Divergence: UDT4 does nothing here (its halving is commented
            // out). A timeout after slow start means the reverse path was
            // silent for at least 300 ms, so one gentle decrease (as at the
            // start of a congestion period) is cheap insurance against a
            // sender that keeps flooding a path whose NAKs are being lost.
            // Moving LastDecSeq stops NAKs for packets already in flight from
            // starting another period, so one event costs one decrease.
            self.loss = true;
            self.last_dec_period = self.period_us;
            self.decrease();
            self.last_dec_seq = ctx.send_current_seq;
        }
        self.clamp_period(ctx);
    }

    fn send_period_us(&self) -> f64 {
        self.period_us
    }

    fn congestion_window(&self) -> f64 {
        self.cwnd
    }
}

/// Builds [`NativeCc`] controllers.
#[derive(Debug, Default, Clone, Copy)]
pub struct NativeCcFactory;

impl CongestionControlFactory for NativeCcFactory {
    fn build(&self) -> Box<dyn CongestionControl> {
        Box::new(NativeCc::new())
    }
}

/// The smoothed RTT in whole microseconds, as UDT4's `m_iRTT`.
fn rtt_us(ctx: &CcContext) -> f64 {
    ctx.rtt.as_micros().min(u128::from(u32::MAX)) as f64
}

/// Packets added to the rate per RCInterval for `spare` packets/s of spare
/// capacity (udt4-protocol.md §10 step 6):
/// `max(0.01, 10^ceil(log10(spare · MSS · 8)) · 1.5e-6 / MSS)`, or 0.01 when
/// there is no spare capacity.
///
/// The power of ten is found with integers, so exact powers of ten (where a
/// floating `log10` may land either side) give the mathematically exact
/// answer and the result is reproducible on every platform.
fn increase_per_interval(spare: i64, mss: u32) -> f64 {
    if spare <= 0 {
        return MIN_INCREASE;
    }
    let mss = u128::from(mss.max(1));
    // spare < 2^63 and mss < 2^32, so the product fits easily in u128, and
    // the loop runs at most 30 times.
    let bits = spare.unsigned_abs() as u128 * mss * 8;
    let mut power: u128 = 1;
    while power < bits {
        power *= 10;
    }
    let inc = power as f64 * INCREASE_BETA / mss as f64;
    inc.max(MIN_INCREASE)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::VecDeque;

    use crate::time::test_epoch as epoch;

    const ISN: u32 = 1000;

    fn ctx(now: Instant) -> CcContext {
        CcContext {
            now,
            mss: 1500,
            rtt: Duration::from_millis(100),
            recv_rate: 16,
            bandwidth: 1,
            recv_speed: 0,
            send_current_seq: SeqNumber::new(ISN).prev(),
            max_window: 8192,
            in_flight: 0,
            delivered: 0,
            lost: 0,
            app_limited: false,
        }
    }

    fn ms(t0: Instant, n: u64) -> Instant {
        t0 + Duration::from_millis(n)
    }

    fn close(a: f64, b: f64) -> bool {
        (a - b).abs() <= 1e-9 * b.abs().max(1.0)
    }

    /// A controller just out of slow start at `period` µs, with
    /// `last_dec_period` = 1 (nothing decreased yet).
    fn out_of_slow_start(t0: Instant, period_us: f64) -> NativeCc {
        let mut cc = NativeCc::new();
        let mut c = ctx(t0);
        cc.init(&c);
        c.recv_rate = (1e6 / period_us) as u32;
        c.send_current_seq = SeqNumber::new(ISN + 100);
        cc.on_loss(&c, SeqNumber::new(ISN + 50), 1);
        assert!(!cc.is_slow_start());
        assert!(
            !cc.loss,
            "leaving slow start with a known rate sets no loss flag"
        );
        assert!(close(cc.send_period_us(), period_us));
        cc
    }

    #[test]
    fn init_matches_udt4() {
        let t0 = epoch();
        let mut cc = NativeCc::new();
        cc.init(&ctx(t0));
        assert_eq!(cc.name(), "udt");
        assert_eq!(cc.send_period_us(), 1.0);
        assert_eq!(cc.congestion_window(), 16.0);
        assert!(cc.is_slow_start());
        assert_eq!(cc.last_ack, SeqNumber::new(ISN - 1));
        assert_eq!(cc.last_dec_seq, SeqNumber::new(ISN - 2));
        let built = NativeCcFactory.build();
        assert_eq!(built.send_period_us(), 1.0);
        assert_eq!(built.congestion_window(), 16.0);
    }

    #[test]
    fn slow_start_grows_window_by_acked_plus_one() {
        let t0 = epoch();
        let mut cc = NativeCc::new();
        let mut c = ctx(t0);
        cc.init(&c);
        // ACK = ISN+10: seqlen(ISN-1, ISN+10) = 12 = 11 newly acked + 1.
        c.now = ms(t0, 10);
        cc.on_ack(&c, SeqNumber::new(ISN + 10));
        assert_eq!(cc.congestion_window(), 16.0 + 12.0);
        assert_eq!(cc.send_period_us(), 1.0, "no rate change in slow start");
        // Next ACK counts from the last one, inclusive again.
        c.now = ms(t0, 20);
        cc.on_ack(&c, SeqNumber::new(ISN + 30));
        assert_eq!(cc.congestion_window(), 28.0 + 21.0);
        // A repeated ACK still adds one (seqlen(a, a) = 1).
        c.now = ms(t0, 30);
        cc.on_ack(&c, SeqNumber::new(ISN + 30));
        assert_eq!(cc.congestion_window(), 50.0);
        // An ACK that went back adds nothing and does not move LastAck.
        c.now = ms(t0, 40);
        cc.on_ack(&c, SeqNumber::new(ISN + 5));
        assert_eq!(cc.congestion_window(), 50.0);
        assert_eq!(cc.last_ack, SeqNumber::new(ISN + 30));
        assert!(cc.is_slow_start());
    }

    #[test]
    fn slow_start_across_the_sequence_wrap() {
        let t0 = epoch();
        let mut cc = NativeCc::new();
        let mut c = ctx(t0);
        c.send_current_seq = SeqNumber::new(SeqNumber::MAX - 2);
        cc.init(&c);
        c.now = ms(t0, 10);
        // From MAX-2 to 3 inclusive: MAX-2, MAX-1, MAX, 0, 1, 2, 3 = 7.
        cc.on_ack(&c, SeqNumber::new(3));
        assert_eq!(cc.congestion_window(), 16.0 + 7.0);
        assert_eq!(cc.last_ack, SeqNumber::new(3));
    }

    #[test]
    fn slow_start_ends_when_window_exceeds_max_window() {
        let t0 = epoch();
        let mut cc = NativeCc::new();
        let mut c = ctx(t0);
        c.max_window = 100;
        c.recv_rate = 5000;
        c.bandwidth = 5000;
        cc.init(&c);
        // cwnd 16 + 85 = 101 > 100.
        c.now = ms(t0, 10);
        cc.on_ack(&c, SeqNumber::new(ISN + 83));
        assert_eq!(cc.congestion_window(), 101.0);
        assert!(!cc.is_slow_start());
        // Period = 1e6/5000 = 200 µs, then the same call's increase step runs
        // (UDT4 falls through): spare = 5000 - 5000 = 0 -> inc 0.01.
        let expected = 200.0 * 10_000.0 / (200.0 * 0.01 + 10_000.0);
        assert!(
            close(cc.send_period_us(), expected),
            "{}",
            cc.send_period_us()
        );

        // cwnd exactly == max_window stays in slow start.
        let mut cc = NativeCc::new();
        let mut c = ctx(t0);
        c.max_window = 100;
        cc.init(&c);
        c.now = ms(t0, 10);
        cc.on_ack(&c, SeqNumber::new(ISN + 82));
        assert_eq!(cc.congestion_window(), 100.0);
        assert!(cc.is_slow_start());
    }

    #[test]
    fn slow_start_exit_without_rate_uses_window_over_rtt() {
        let t0 = epoch();
        let mut cc = NativeCc::new();
        let mut c = ctx(t0);
        c.max_window = 100;
        c.recv_rate = 0;
        cc.init(&c);
        c.now = ms(t0, 10);
        cc.on_ack(&c, SeqNumber::new(ISN + 99)); // cwnd = 16 + 101 = 117
        assert!(!cc.is_slow_start());
        // (RTT + RC)/cwnd = 110000/117, then one +0.01 increase.
        let p = 110_000.0 / 117.0;
        let expected = p * 10_000.0 / (p * 0.01 + 10_000.0);
        assert!(close(cc.send_period_us(), expected));
    }

    #[test]
    fn on_ack_adjusts_at_most_once_per_rc_interval() {
        let t0 = epoch();
        let mut cc = NativeCc::new();
        let mut c = ctx(t0);
        cc.init(&c);
        c.now = ms(t0, 9);
        cc.on_ack(&c, SeqNumber::new(ISN + 10));
        assert_eq!(cc.congestion_window(), 16.0, "9 ms after init: ignored");
        c.now = ms(t0, 10);
        cc.on_ack(&c, SeqNumber::new(ISN + 10));
        assert_eq!(cc.congestion_window(), 28.0, "exactly 10 ms: applied");
        c.now = ms(t0, 15);
        cc.on_ack(&c, SeqNumber::new(ISN + 20));
        assert_eq!(cc.congestion_window(), 28.0, "5 ms later: ignored");
        c.now = ms(t0, 20);
        cc.on_ack(&c, SeqNumber::new(ISN + 20));
        assert_eq!(cc.congestion_window(), 28.0 + 11.0);
        // Time going backwards is treated as "no time passed".
        c.now = t0;
        cc.on_ack(&c, SeqNumber::new(ISN + 40));
        assert_eq!(cc.congestion_window(), 39.0);
    }

    #[test]
    fn increase_values_match_hand_computation() {
        // §10 steps 5-7 by hand, MSS 1500 (so B·MSS·8 = B·12000), RC = 10 ms.
        let t0 = epoch();

        // 1) Period 1000 µs (1000 pkt/s), bandwidth 10 000, LastDecPeriod 1:
        //    B = 10000 - 1000 = 9000; period > LastDecPeriod and 10000/9 = 1111
        //    < 9000 so B = 1111; 1111·12000 = 13 332 000 -> 10^8;
        //    inc = 1e8·1.5e-6/1500 = 0.1; period = 1000·1e4/(1000·0.1 + 1e4)
        //    = 1e7/10100 = 990.0990...
        let mut cc = out_of_slow_start(t0, 1000.0);
        let mut c = ctx(ms(t0, 10));
        c.bandwidth = 10_000;
        cc.on_ack(&c, SeqNumber::new(ISN + 60));
        assert!(
            close(cc.send_period_us(), 1e7 / 10_100.0),
            "{}",
            cc.send_period_us()
        );
        // cwnd = RcvRate/1e6·(RTT+RC) + 16 = 16·0.11 + 16 = 17.76.
        assert!(close(cc.congestion_window(), 17.76));

        // 2) Period 100 µs, bandwidth 100 000, LastDecPeriod 200 (no cap):
        //    B = 90 000; 90000·12000 = 1.08e9 -> 10^10; inc = 1e10·1.5e-6/1500
        //    = 10; period = 100·1e4/(100·10 + 1e4) = 1e6/11000 = 90.909...
        let mut cc = out_of_slow_start(t0, 100.0);
        cc.last_dec_period = 200.0;
        c.bandwidth = 100_000;
        cc.on_ack(&c, SeqNumber::new(ISN + 60));
        assert!(
            close(cc.send_period_us(), 1e6 / 11_000.0),
            "{}",
            cc.send_period_us()
        );

        // 3) No spare capacity (bandwidth 1, the initial estimate):
        //    B = 1 - 1000 < 0 -> inc = 0.01; period = 1e7/10010 = 999.000999...
        let mut cc = out_of_slow_start(t0, 1000.0);
        c.bandwidth = 1;
        cc.on_ack(&c, SeqNumber::new(ISN + 60));
        assert!(
            close(cc.send_period_us(), 1e7 / 10_010.0),
            "{}",
            cc.send_period_us()
        );

        // 4) Small spare: bandwidth 1010, period 1000, LastDecPeriod 1000 (no
        //    cap since period is not > it): B = 10; 120 000 -> 10^6;
        //    inc = 1e6·1.5e-6/1500 = 0.001 -> floor 0.01.
        let mut cc = out_of_slow_start(t0, 1000.0);
        cc.last_dec_period = 1000.0;
        c.bandwidth = 1010;
        cc.on_ack(&c, SeqNumber::new(ISN + 60));
        assert!(
            close(cc.send_period_us(), 1e7 / 10_010.0),
            "{}",
            cc.send_period_us()
        );

        // 5) 1 Gbit/s-class link: bandwidth 83 333, period 20 µs (50 000 pkt/s),
        //    LastDecPeriod 1 -> cap: 83333/9 = 9259 < 33333 -> B = 9259;
        //    9259·12000 = 111 108 000 -> 10^9; inc = 1e9·1.5e-6/1500 = 1;
        //    period = 20·1e4/(20·1 + 1e4) = 200000/10020 = 19.9600...
        let mut cc = out_of_slow_start(t0, 20.0);
        c.bandwidth = 83_333;
        cc.on_ack(&c, SeqNumber::new(ISN + 60));
        assert!(
            close(cc.send_period_us(), 200_000.0 / 10_020.0),
            "{}",
            cc.send_period_us()
        );
    }

    #[test]
    fn increase_formula_at_exact_powers_of_ten() {
        // B·MSS·8 = 10^k exactly must give 10^k, not 10^(k+1).
        // MSS 125: B·1000; B = 10_000 -> 10^7 -> inc = 1e7·1.5e-6/125 = 0.12.
        assert!(close(increase_per_interval(10_000, 125), 0.12));
        // One more packet/s crosses to 10^8.
        assert!(close(increase_per_interval(10_001, 125), 1.2));
        assert_eq!(increase_per_interval(0, 1500), MIN_INCREASE);
        assert_eq!(increase_per_interval(-5, 1500), MIN_INCREASE);
        // Hostile extremes stay finite.
        assert!(increase_per_interval(i64::MAX, u32::MAX).is_finite());
        assert!(increase_per_interval(1, 0).is_finite());
    }

    #[test]
    fn no_increase_right_after_a_loss() {
        let t0 = epoch();
        let mut cc = out_of_slow_start(t0, 1000.0);
        let mut c = ctx(ms(t0, 5));
        c.bandwidth = 10_000;
        c.recv_rate = 1000;
        c.send_current_seq = SeqNumber::new(ISN + 200);
        cc.on_loss(&c, SeqNumber::new(ISN + 150), 1);
        assert_eq!(cc.send_period_us(), 1125.0);
        // The first ACK after the loss clears the flag and changes nothing
        // but the window.
        c.now = ms(t0, 10);
        cc.on_ack(&c, SeqNumber::new(ISN + 150));
        assert_eq!(cc.send_period_us(), 1125.0);
        assert!(close(cc.congestion_window(), 1000.0 * 0.11 + 16.0));
        // The next one increases (capped: period 1125 > LastDecPeriod 1000).
        c.now = ms(t0, 20);
        cc.on_ack(&c, SeqNumber::new(ISN + 160));
        assert!(cc.send_period_us() < 1125.0);
    }

    #[test]
    fn new_congestion_period_decreases_by_one_ninth() {
        let t0 = epoch();
        let mut cc = out_of_slow_start(t0, 1000.0);
        let mut c = ctx(ms(t0, 5));
        c.send_current_seq = SeqNumber::new(ISN + 300);
        cc.on_loss(&c, SeqNumber::new(ISN + 200), 3);
        assert_eq!(cc.send_period_us(), 1125.0); // ceil(1000 · 1.125)
        assert_eq!(cc.last_dec_period, 1000.0);
        assert_eq!(cc.last_dec_seq, SeqNumber::new(ISN + 300));
        assert_eq!(cc.nak_count, 1);
        assert_eq!(cc.dec_count, 1);
        // AvgNAKNum = ceil(0.875·0 + 0.125·0) = 0, so DecRandom = 1.
        assert_eq!(cc.avg_nak_num, 0);
        assert_eq!(cc.dec_random, 1);
        // A loss after LastDecSeq starts another period: 1125 -> ceil(1265.625).
        c.send_current_seq = SeqNumber::new(ISN + 400);
        cc.on_loss(&c, SeqNumber::new(ISN + 301), 1);
        assert_eq!(cc.send_period_us(), 1266.0);
        assert_eq!(cc.last_dec_period, 1125.0);
        // AvgNAKNum = ceil(0.125 · 1) = 1.
        assert_eq!(cc.avg_nak_num, 1);
        assert_eq!(cc.dec_random, 1);
    }

    #[test]
    fn at_most_five_decreases_per_congestion_period() {
        let t0 = epoch();
        let mut cc = out_of_slow_start(t0, 1000.0);
        let mut c = ctx(ms(t0, 5));
        c.rtt = Duration::from_secs(1); // keep the floor out of the way
        c.send_current_seq = SeqNumber::new(ISN + 300);
        cc.on_loss(&c, SeqNumber::new(ISN + 200), 1);
        assert_eq!(cc.dec_random, 1, "every NAK may decrease");
        let mut expected = 1125.0;
        assert_eq!(cc.send_period_us(), expected);
        // NAKs inside the period (first lost <= LastDecSeq): 4 more decreases,
        // then none however many arrive.
        for i in 0..20u32 {
            c.send_current_seq = SeqNumber::new(ISN + 301 + i);
            cc.on_loss(&c, SeqNumber::new(ISN + 201 + i), 1);
            if i < MAX_EXTRA_DECREASES {
                expected = (expected * 1.125_f64).ceil();
            }
            assert_eq!(cc.send_period_us(), expected, "NAK {i}");
        }
        // 1000 -> 1125 -> 1266 -> 1425 -> 1604 -> 1805: five decreases in all.
        assert_eq!(expected, 1805.0);
        assert_eq!(cc.nak_count, 5, "NAKCount stops once DecCount reaches 5");
        // A loss past LastDecSeq opens a new period and decreases again.
        c.send_current_seq = SeqNumber::new(ISN + 1000);
        cc.on_loss(&c, SeqNumber::new(ISN + 900), 1);
        assert_eq!(cc.send_period_us(), (1805.0_f64 * 1.125).ceil());
        // AvgNAKNum = ceil(0.875·0 + 0.125·5) = 1.
        assert_eq!(cc.avg_nak_num, 1);
    }

    #[test]
    fn dec_random_spreads_decreases_and_is_deterministic() {
        // Drive AvgNAKNum up, then check DecRandom is in [1, AvgNAKNum] and a
        // function of LastDecSeq only.
        let t0 = epoch();
        let run = |seed_seq: u32| {
            let mut cc = out_of_slow_start(t0, 10.0);
            cc.avg_nak_num = 5;
            cc.nak_count = 5;
            let mut c = ctx(ms(t0, 5));
            c.send_current_seq = SeqNumber::new(seed_seq);
            cc.on_loss(&c, SeqNumber::new(ISN + 200), 1);
            assert_eq!(cc.avg_nak_num, 5);
            (cc.dec_random, cc.send_period_us())
        };
        let mut seen = [false; 6];
        for s in 0..200u32 {
            let (r, _) = run(ISN + 300 + s);
            assert!((1..=5).contains(&r), "DecRandom {r}");
            assert_eq!(run(ISN + 300 + s).0, r, "same LastDecSeq, same DecRandom");
            seen[r as usize] = true;
        }
        assert!(
            seen[1..].iter().all(|&x| x),
            "all values 1..=5 occur: {seen:?}"
        );

        // With DecRandom = 3, only every third NAK (counting the first) decreases.
        let mut cc = out_of_slow_start(t0, 1000.0);
        cc.dec_random = 3;
        cc.nak_count = 1;
        cc.dec_count = 1;
        cc.last_dec_seq = SeqNumber::new(ISN + 500);
        let mut c = ctx(ms(t0, 5));
        c.rtt = Duration::from_secs(1);
        let mut periods = Vec::new();
        for i in 0..6u32 {
            c.send_current_seq = SeqNumber::new(ISN + 500 + i);
            cc.on_loss(&c, SeqNumber::new(ISN + 100), 1);
            periods.push(cc.send_period_us());
        }
        // NAKCount 2, 3 (decrease), 4, 5, then DecCount hits 5: frozen.
        assert_eq!(
            periods,
            vec![1000.0, 1125.0, 1125.0, 1125.0, 1125.0, 1125.0]
        );
    }

    #[test]
    fn loss_in_slow_start() {
        let t0 = epoch();
        // With a known receive rate: period = 1e6/rate, no decrease, no flag.
        let mut cc = NativeCc::new();
        let mut c = ctx(t0);
        cc.init(&c);
        c.recv_rate = 4000;
        c.send_current_seq = SeqNumber::new(ISN + 100);
        cc.on_loss(&c, SeqNumber::new(ISN + 10), 1);
        assert!(!cc.is_slow_start());
        assert_eq!(cc.send_period_us(), 250.0);
        assert!(!cc.loss);
        assert_eq!(cc.last_dec_seq, SeqNumber::new(ISN - 2));

        // Without: (RTT+RC)/cwnd = 110000/16 = 6875, then a decrease.
        let mut cc = NativeCc::new();
        let mut c = ctx(t0);
        c.recv_rate = 0;
        cc.init(&c);
        c.send_current_seq = SeqNumber::new(ISN + 100);
        cc.on_loss(&c, SeqNumber::new(ISN + 10), 1);
        assert!(cc.loss);
        assert_eq!(cc.send_period_us(), (6875.0_f64 * 1.125).ceil());
        assert_eq!(cc.last_dec_period, 6875.0);
    }

    #[test]
    fn timeout_in_slow_start_matches_udt4_vector() {
        // udt4-protocol.md §10 [X]: a timeout before any ACK, with the initial
        // DeliveryRate of 16, gives a period of 62 500 µs.
        let t0 = epoch();
        let mut cc = NativeCc::new();
        let c = ctx(t0);
        cc.init(&c);
        cc.on_timeout(&c);
        assert!(!cc.is_slow_start());
        assert_eq!(cc.send_period_us(), 62_500.0);
        assert!(!cc.loss);
    }

    #[test]
    fn timeout_after_slow_start_is_one_gentle_decrease() {
        let t0 = epoch();
        let mut cc = out_of_slow_start(t0, 1000.0);
        let mut c = ctx(ms(t0, 500));
        c.send_current_seq = SeqNumber::new(ISN + 700);
        cc.on_timeout(&c);
        assert_eq!(cc.send_period_us(), 1125.0);
        assert!(cc.loss);
        assert_eq!(cc.last_dec_seq, SeqNumber::new(ISN + 700));
        // A NAK for a packet sent before the timeout does not open a new
        // period (at most the in-period extra decreases apply).
        cc.dec_count = 5;
        cc.on_loss(&c, SeqNumber::new(ISN + 650), 1);
        assert_eq!(cc.send_period_us(), 1125.0);
        // Repeated timeouts decay geometrically, bounded by the floor.
        c.rtt = Duration::from_millis(20);
        for _ in 0..200 {
            cc.on_timeout(&c);
            assert!(cc.send_period_us() <= 30_000.0);
        }
        assert_eq!(
            cc.send_period_us(),
            30_000.0,
            "floor: one packet per RTT + SYN"
        );
    }

    #[test]
    fn period_bounds_hold_against_hostile_inputs() {
        let t0 = epoch();
        let mut cc = NativeCc::new();
        let mut c = ctx(t0);
        c.rtt = Duration::from_secs(3600);
        c.recv_rate = 1; // 1 packet/s -> 1e6 µs
        cc.init(&c);
        cc.on_loss(&c, SeqNumber::new(ISN), 1);
        assert_eq!(cc.send_period_us(), NativeCc::MAX_PERIOD_US);
        for _ in 0..50 {
            cc.on_timeout(&c);
            assert_eq!(cc.send_period_us(), NativeCc::MAX_PERIOD_US);
        }
        // Huge bandwidth claims cannot push the period below 1 µs.
        let mut cc = out_of_slow_start(t0, 2.0);
        let mut c = ctx(t0);
        c.bandwidth = u32::MAX;
        c.recv_rate = u32::MAX;
        c.mss = u32::MAX;
        for i in 1..1000u64 {
            c.now = ms(t0, 10 * i);
            cc.on_ack(&c, SeqNumber::new(ISN + 60));
            let p = cc.send_period_us();
            assert!((NativeCc::MIN_PERIOD_US..=NativeCc::MAX_PERIOD_US).contains(&p));
            assert!(cc.congestion_window().is_finite());
        }
        assert_eq!(cc.send_period_us(), NativeCc::MIN_PERIOD_US);
        // A zero MSS and a far-away ACK do not produce NaN or infinity.
        let mut cc = NativeCc::new();
        let mut c = ctx(t0);
        c.mss = 0;
        c.max_window = 0;
        cc.init(&c);
        c.now = ms(t0, 10);
        cc.on_ack(&c, SeqNumber::new(ISN + 0x3FFF_0000));
        assert!(!cc.is_slow_start());
        assert!(cc.send_period_us().is_finite() && cc.congestion_window().is_finite());
    }

    /// Feedback the model's receiver sends in one step: the first lost
    /// number of each NAK, and the ACK with the step's delivered count.
    #[derive(Default)]
    struct Feedback {
        naks: Vec<SeqNumber>,
        ack: Option<(SeqNumber, u32)>,
    }

    /// A crude packet-level model of one flow through a bottleneck with
    /// random loss, stepping in SYN intervals: packets are paced by the
    /// controller's period and window, each is lost at random with `loss`
    /// or to the bottleneck when the step carries more than the link can;
    /// each run of lost packets becomes one NAK and every step sends one
    /// ACK, both arriving one RTT later. Returns (delivered pkt/s over the
    /// last half, min rate, max rate) in packets/s.
    fn model(capacity: u32, rtt_ms: u64, loss: f64, seconds: u64, seed: u64) -> (f64, f64, f64) {
        let t0 = epoch();
        let mut rng = Rng::new(seed);
        let mut cc = NativeCc::new();
        let mut c = ctx(t0);
        c.rtt = Duration::from_millis(rtt_ms);
        c.max_window = 25_600;
        let mut smoother = crate::estimate::RateSmoother::new();
        c.recv_rate = smoother.recv_rate();
        c.bandwidth = smoother.bandwidth();
        cc.init(&c);

        let delay_steps = (rtt_ms / 10).max(1) as usize;
        // Per step: NAK first-lost numbers and (ack, delivered count) due then.
        let mut pending: VecDeque<Feedback> =
            (0..delay_steps).map(|_| Feedback::default()).collect();
        let mut next_seq = SeqNumber::new(ISN);
        let mut credit = 0.0_f64;
        let mut in_flight: VecDeque<u32> = (0..delay_steps).map(|_| 0).collect();
        let steps = seconds * 100;
        let (mut min_rate, mut max_rate) = (f64::MAX, 0.0_f64);
        let mut delivered_late = 0u64;
        for step in 0..steps {
            c.now = t0 + Duration::from_millis(10 * step);
            // Feedback sent one RTT ago arrives now.
            let Feedback { naks, ack } = pending.pop_front().unwrap_or_default();
            c.send_current_seq = next_seq.prev();
            for first in naks {
                cc.on_loss(&c, first, 1);
            }
            if let Some((ack, delivered)) = ack {
                smoother.update(delivered * 100, capacity);
                c.recv_rate = smoother.recv_rate();
                c.bandwidth = smoother.bandwidth();
                cc.on_ack(&c, ack);
            }
            let period = cc.send_period_us();
            let rate = 1e6 / period;
            assert!(
                (NativeCc::MIN_PERIOD_US..=NativeCc::MAX_PERIOD_US).contains(&period),
                "seed={seed} period {period}"
            );
            if !cc.is_slow_start() {
                min_rate = min_rate.min(rate);
                max_rate = max_rate.max(rate);
            }
            // Send this step, limited by rate and window.
            let flight: u32 = in_flight.iter().sum();
            let window = cc.congestion_window().min(f64::from(c.max_window));
            let room = (window - f64::from(flight)).max(0.0);
            credit = (credit + rate * 0.01).min(room.max(1.0));
            let n = credit.min(room).floor() as u32;
            credit -= f64::from(n);
            let link = capacity / 100;
            let mut naks = Vec::new();
            let mut delivered = 0u32;
            let mut in_run = false;
            for i in 0..n {
                let seq = next_seq;
                next_seq = next_seq.next();
                let lost = i >= link || rng.chance(loss);
                if lost {
                    if !in_run {
                        naks.push(seq);
                    }
                    in_run = true;
                } else {
                    delivered += 1;
                    in_run = false;
                }
            }
            in_flight.pop_front();
            in_flight.push_back(n);
            if step >= steps / 2 {
                delivered_late += u64::from(delivered);
            }
            pending.push_back(Feedback {
                naks,
                ack: Some((next_seq, delivered)),
            });
        }
        let goodput = delivered_late as f64 / (seconds as f64 / 2.0);
        (goodput, min_rate, max_rate)
    }

    #[test]
    fn stable_under_random_loss_model() {
        // capacity 10 000 pkt/s (120 Mbit/s), RTT 50 ms.
        for (loss, seed) in [(0.0, 1), (0.01, 2), (0.05, 3), (0.10, 4), (0.30, 5)] {
            let (goodput, min_rate, max_rate) = model(10_000, 50, loss, 30, seed);
            println!(
                "loss {loss:>4}: goodput {goodput:>8.0} pkt/s, rate {min_rate:.0}..{max_rate:.0}"
            );
            // Never below the floor (1 packet per RTT + SYN = 16.7 pkt/s) ...
            assert!(
                min_rate >= 1e6 / 60_000.0 - 1e-6,
                "seed={seed} loss={loss} min {min_rate}"
            );
            // ... never running away beyond what the link could justify ...
            assert!(
                max_rate < 10.0 * 10_000.0,
                "seed={seed} loss={loss} max {max_rate}"
            );
            // ... and still moving data.
            assert!(goodput > 100.0, "seed={seed} loss={loss} goodput {goodput}");
        }
        // Without random loss the flow uses most of the link.
        let (goodput, _, _) = model(10_000, 50, 0.0, 30, 9);
        assert!(goodput > 5_000.0, "goodput {goodput}");
    }

    /// Prints the goodput table quoted in docs/congestion-control.md:
    /// `cargo test -p udt-core goodput_table -- --ignored --nocapture`.
    #[test]
    #[ignore = "prints a table for the documentation"]
    fn goodput_table() {
        println!("capacity pkt/s | RTT ms | loss | goodput pkt/s | share of capacity");
        for capacity in [1_000u32, 10_000, 100_000] {
            for rtt_ms in [10u64, 50, 200] {
                for loss in [0.0, 0.01, 0.05, 0.10, 0.30] {
                    let runs: Vec<f64> = (0..3)
                        .map(|seed| model(capacity, rtt_ms, loss, 60, seed).0)
                        .collect();
                    let goodput = runs.iter().sum::<f64>() / runs.len() as f64;
                    println!(
                        "{capacity:>8} | {rtt_ms:>4} | {:>3}% | {goodput:>9.0} | {:>5.1}%",
                        loss * 100.0,
                        goodput / f64::from(capacity) * 100.0
                    );
                }
            }
        }
    }
}
