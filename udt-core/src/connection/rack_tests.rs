//! Scripted tests of the sender's own loss detection (`rack.rs` and
//! `Connection::detect_losses`) against a peer that reports each loss once,
//! as a UDT4 receiver does: a lost retransmission or a lost NAK shows in no
//! later NAK, only in what later NAKs and ACKs prove arrived.

use std::time::Duration;

use super::scripted_tests::{
    ack_in, drive, light_ack_in, ms, nak_in, retransmitted, us, Script, Sent, FULL, ISN,
};
use super::*;
use crate::cc::{AckSample, CcContext, CongestionControl, CongestionControlFactory, WindowBasis};
use crate::seq::SeqNumber;

fn seq(n: u32) -> SeqNumber {
    ISN.add(n)
}

/// The NAK a UDT4 receiver sends when `n` arrives and `n - 1` is missing:
/// it proves `n` arrived, and every first transmission before it that no
/// NAK reported.
fn nak_before(n: u32) -> Vec<u8> {
    nak_in(&[(seq(n - 1), seq(n - 1))])
}

fn first_sent(sent: &[Sent], n: u32) -> Duration {
    sent.iter()
        .find(|s| s.n == n && !s.retransmitted)
        .map(|s| s.at)
        .expect("sent")
}

/// The first packet sent for the first time more than 6 ms after 16 (its
/// arrival proves that 5, sent long before, is lost).
fn sent_well_after_16(sent: &[Sent]) -> &Sent {
    sent.iter()
        .find(|p| !p.retransmitted && p.at > first_sent(sent, 16) + ms(6))
        .expect("a packet sent later")
}

/// A controller for these scripts: the first window of 16 packets at
/// once, then after the first feedback one packet every [`Trickle::PERIOD`]
/// (new data and retransmissions alike) within [`Trickle::WINDOW`] packets
/// in flight.
///
/// The scripts need new data to leave at known times after a loss report
/// (packets sent before and after a reordering window, an ACK interval
/// after a proof), whatever a real controller's Startup does: its pacing
/// after a first small sample decides how fast new packets follow, and a
/// change to it (Startup's pacing floor, docs/congestion-control.md 7.1)
/// made them all leave at once and then the window hold them, so that the
/// scripts found none sent later. Loss detection does not depend on the
/// controller.
#[derive(Debug, Default)]
struct Trickle {
    heard: bool,
}

impl Trickle {
    const PERIOD: Duration = Duration::from_micros(500);
    const WINDOW: f64 = 1000.0;
}

impl CongestionControl for Trickle {
    fn name(&self) -> &'static str {
        "trickle"
    }
    fn init(&mut self, _ctx: &CcContext) {}
    fn on_ack(&mut self, _ctx: &CcContext, _ack: SeqNumber) {
        self.heard = true;
    }
    fn on_loss(&mut self, _ctx: &CcContext, _first_lost: SeqNumber, _count: u32) {
        self.heard = true;
    }
    fn on_timeout(&mut self, _ctx: &CcContext) {}
    fn on_ack_sample(&mut self, _ctx: &CcContext, _sample: &AckSample) {
        self.heard = true;
    }
    fn send_period_us(&self) -> f64 {
        if self.heard {
            Self::PERIOD.as_secs_f64() * 1e6
        } else {
            1.0
        }
    }
    fn congestion_window(&self) -> f64 {
        if self.heard {
            Self::WINDOW
        } else {
            16.0
        }
    }
    fn window_basis(&self) -> WindowBasis {
        WindowBasis::InFlight
    }
}

#[derive(Debug)]
struct TrickleFactory;

impl CongestionControlFactory for TrickleFactory {
    fn build(&self) -> Box<dyn CongestionControl> {
        Box::new(Trickle::default())
    }
}

/// A connection paced by [`Trickle`] with 200 full packets written.
fn trickling_with_200_packets_written() -> Script {
    let config = Config {
        congestion: std::sync::Arc::new(TrickleFactory),
        ..Config::default()
    };
    let mut s = Script::new(config);
    let data = vec![0x5Au8; FULL * 200];
    assert_eq!(s.conn.write(&data), Ok(data.len()));
    s
}

/// A connection with plenty of data written and packets 0..=15 sent in
/// the first millisecond (the first window); the peer then reports 2 lost
/// at 20 ms, and the sender retransmits it and sends new data until 30 ms
/// (one packet every 0.5 ms, [`Trickle`]). Returns the script and what
/// left between 20 and 30 ms.
fn with_a_retransmission(also_lost: &[u32]) -> (Script, Vec<Sent>) {
    let mut s = trickling_with_200_packets_written();
    let first = drive(&mut s, ms(0), ms(5));
    assert_eq!(first.len(), 16, "{first:?}");
    s.feed(ms(20), &nak_in(&[(seq(2), seq(2))]));
    for &n in also_lost {
        s.feed(ms(20), &nak_in(&[(seq(n), seq(n))]));
    }
    let sent = drive(&mut s, ms(20), ms(30));
    let mut expected = vec![2];
    expected.extend_from_slice(also_lost);
    assert_eq!(retransmitted(&sent), expected, "{sent:?}");
    assert!(sent[0].at < ms(21));
    (s, sent)
}

#[test]
fn a_lost_retransmission_beyond_the_head_is_resent_once_a_later_packet_arrived() {
    // 2 and 5 were reported lost (one NAK each, as UDT4 sends them) and
    // retransmitted at 20 ms; both retransmissions are lost. The ACKs keep
    // naming 2; nothing ever names 5 until 2 is repaired, and no NAK will
    // report either again.
    let (mut s, sent) = with_a_retransmission(&[5]);
    // The reordering window is a quarter of the smallest RTT (about 20 ms
    // here, from the NAK's proof of 0, 1, 3, 4 and 6): packets sent within
    // 5 ms after the retransmissions arriving prove nothing yet.
    let window = ms(20) / 4;
    let early: Vec<&Sent> = sent
        .iter()
        .filter(|p| !p.retransmitted && p.at < ms(20) + window - ms(1))
        .collect();
    let late = sent
        .iter()
        .find(|p| !p.retransmitted && p.at > ms(20) + window + ms(1))
        .expect("a packet sent after the window");
    let last_early = early.last().expect("a packet sent within the window").n;
    s.feed(ms(45), &nak_before(last_early));
    s.feed(ms(46), &light_ack_in(seq(2)));
    let resent = drive(&mut s, ms(46), ms(47));
    assert_eq!(retransmitted(&resent), vec![last_early - 1], "{resent:?}");
    assert_eq!(s.conn.stats().packets_presumed_lost, 0);
    // A packet sent after the window arrived (the NAK of the one after it
    // proves it), and the next ACK still names 2: both retransmissions
    // were lost. 5 is resent although no ACK names it yet.
    s.feed(ms(50), &nak_before(late.n));
    s.feed(ms(51), &light_ack_in(seq(2)));
    let resent = drive(&mut s, ms(51), ms(52));
    assert_eq!(retransmitted(&resent), vec![2, 5, late.n - 1], "{resent:?}");
    assert_eq!(s.conn.stats().packets_presumed_lost, 2);
    // Once per window: the same evidence again resends nothing.
    s.feed(ms(52), &light_ack_in(seq(2)));
    assert!(retransmitted(&drive(&mut s, ms(52), ms(53))).is_empty());
    assert_eq!(s.conn.stats().packets_presumed_lost, 2);
    assert_eq!(s.conn.stats().timeouts, 0);
}

#[test]
fn a_first_missing_packet_whose_nak_was_lost_is_resent_once_a_later_packet_arrived() {
    // 5 was lost and so was its NAK: a later NAK proves, wrongly,
    // that 5 arrived. The full ACK that follows names 5 as the first
    // missing packet (2's retransmission arrived): that withdraws the
    // proof, and since packets sent long after 5 have arrived, 5 is lost.
    // Before, a first transmission never reported lost waited 2 RTT + 4
    // RTTVar + 10 ms + 300 ms (710 ms with the initial estimates).
    let (mut s, sent) = with_a_retransmission(&[]);
    let late = sent_well_after_16(&sent);
    s.feed(ms(50), &nak_before(late.n));
    s.feed(ms(51), &ack_in(1, seq(5)));
    let resent = drive(&mut s, ms(51), ms(52));
    assert_eq!(retransmitted(&resent), vec![5, late.n - 1], "{resent:?}");
    assert_eq!(s.conn.stats().packets_presumed_lost, 1);
    // Its retransmission is now the one the rule watches: the ACK naming
    // it again right away is no news.
    s.feed(ms(52), &ack_in(2, seq(5)));
    assert!(retransmitted(&drive(&mut s, ms(52), ms(53))).is_empty());
}

#[test]
fn an_ack_covering_the_retransmission_stops_its_resend() {
    // 2's retransmission arrived: the light ACK after the later packets'
    // proof names the packet the NAK just reported as the first missing,
    // so nothing but that is resent (the retransmission of 2 is no longer
    // outstanding).
    let (mut s, sent) = with_a_retransmission(&[]);
    let late = sent
        .iter()
        .rev()
        .find(|p| !p.retransmitted)
        .expect("new data");
    s.feed(ms(50), &nak_before(late.n));
    s.feed(ms(51), &light_ack_in(seq(late.n - 1)));
    assert_eq!(
        retransmitted(&drive(&mut s, ms(51), ms(52))),
        vec![late.n - 1]
    );
    assert_eq!(s.conn.stats().packets_presumed_lost, 0);
}

#[test]
fn a_retransmission_sent_before_the_heads_repair_waits_for_it() {
    // 2 is retransmitted at 20 ms and 5 at 30 ms; 2's retransmission is
    // lost. Evidence at 50 ms shows 2 lost (the head) but not yet 5, so 2
    // leaves again at 51 ms. Later evidence makes 5's retransmission look
    // lost too, but the ACKs are stuck on 2's repair, which left after it:
    // they say nothing about 5, which most likely arrived. It waits until
    // the ACKs name it.
    let (mut s, mut sent) = with_a_retransmission(&[]);
    s.feed(ms(30), &nak_in(&[(seq(5), seq(5))]));
    let more = drive(&mut s, ms(30), ms(50));
    assert_eq!(retransmitted(&more), vec![5], "{more:?}");
    let five = more[0].at;
    sent.extend(more);
    let window = ms(20) / 4;
    let new_between = |from: Duration, to: Duration| {
        sent.iter()
            .find(|p| !p.retransmitted && p.at > from && p.at < to)
            .copied()
            .expect("a packet sent then")
    };
    // Sent after 2's retransmission and its window, but within 5's.
    let p = new_between(ms(20) + window + ms(1), five + window - ms(1));
    s.feed(ms(50), &nak_before(p.n));
    s.feed(ms(51), &light_ack_in(seq(2)));
    let resent = drive(&mut s, ms(51), ms(52));
    assert_eq!(retransmitted(&resent), vec![2, p.n - 1], "{resent:?}");
    assert_eq!(s.conn.stats().packets_presumed_lost, 1);
    // Sent after 5's retransmission and its window.
    let q = new_between(five + window + ms(1), ms(50));
    s.feed(ms(60), &nak_before(q.n));
    s.feed(ms(61), &light_ack_in(seq(2)));
    let resent = drive(&mut s, ms(61), ms(62));
    assert_eq!(retransmitted(&resent), vec![q.n - 1], "{resent:?}");
    assert_eq!(s.conn.stats().packets_presumed_lost, 1);
    // 2 arrived; the next ACK names 5: now it is judged, and resent.
    s.feed(ms(75), &ack_in(1, seq(5)));
    let resent = drive(&mut s, ms(75), ms(76));
    assert_eq!(retransmitted(&resent), vec![5], "{resent:?}");
    assert_eq!(s.conn.stats().packets_presumed_lost, 2);
}

#[test]
fn send_limits_account_each_state() {
    // The peer's handshake grants a window of 4 packets; the native
    // controller (1 µs period, window 16) would send more.
    let config = Config::default().with_congestion(crate::cc::CcAlgorithm::Udt);
    let mut s = Script::with_peer_window(config, 4);
    // 10 ms with nothing written: the application.
    s.conn.handle_timeout(s.t0 + ms(10));
    assert_eq!(s.conn.stats().send_limits.app, ms(10));
    let data = vec![0x5Au8; FULL * 10];
    assert_eq!(s.conn.write(&data), Ok(data.len()));
    let sent = drive(&mut s, ms(10), ms(11));
    assert_eq!(sent.len(), 4, "{sent:?}");
    // Until 20 ms the flow window stops it.
    s.conn.handle_timeout(s.t0 + ms(20));
    let limits = s.conn.stats().send_limits;
    assert_eq!(limits.total(), ms(20));
    assert_eq!(limits.app, ms(10));
    assert!(limits.flow_window >= ms(9), "{limits:?}");
    assert_eq!(limits.congestion_window, Duration::ZERO);
    // The packets sent between 10 and 11 ms each waited for the driver's
    // next 50 µs poll at most, or for their pacing slot.
    assert!(limits.pacing + limits.driver <= ms(1), "{limits:?}");
    let shares = limits.shares();
    assert!((shares.iter().sum::<f64>() - 1.0).abs() < 1e-9);
    assert!((shares[0] - 0.5).abs() < 1e-9);
}

/// A native-controller connection into a flow window of 4 with ten
/// packets written at 0 ms, driven at 10 ms: the window's four leave.
/// Returns the script and the data written.
fn window_of_four_filled_at_10_ms() -> (Script, Vec<u8>) {
    let config = Config::default().with_congestion(crate::cc::CcAlgorithm::Udt);
    let mut s = Script::with_peer_window(config, 4);
    let data = vec![0x5Au8; FULL * 10];
    assert_eq!(s.conn.write(&data), Ok(data.len()));
    let sent = drive(&mut s, ms(10), ms(11));
    assert_eq!(sent.len(), 4, "{sent:?}");
    (s, data)
}

#[test]
fn the_time_before_a_write_is_the_applications() {
    // As above, but nothing observes the time before the write: `write`
    // takes no time, and the 10 ms before it were spent waiting for the
    // application, not for the driver (which the state after the write,
    // data waiting and its slot passed, would claim).
    let (s, _) = window_of_four_filled_at_10_ms();
    let limits = s.conn.stats().send_limits;
    assert_eq!(limits.app, ms(10), "{limits:?}");
    assert!(limits.driver <= ms(1), "{limits:?}");
}

#[test]
fn a_write_while_the_window_is_full_leaves_the_time_to_the_window() {
    // The application tops the buffer up while the flow window holds the
    // sender (as a writer woken by freed space does): the time until the
    // next observation was the window's, not the application's. Counting
    // it as the application's showed 2-5 % "app" in every second of real
    // S4 transfers whose writer never let the buffer run dry.
    let (mut s, data) = window_of_four_filled_at_10_ms();
    assert_eq!(s.conn.write(&data), Ok(data.len()));
    s.conn.handle_timeout(s.t0 + ms(20));
    let limits = s.conn.stats().send_limits;
    assert_eq!(limits.app, ms(10), "{limits:?}");
    assert!(limits.flow_window >= ms(9), "{limits:?}");
}

#[test]
fn a_peer_that_repeats_its_loss_reports_is_left_to_report_them() {
    // As in the first test, but the peer repeats its list of losses (our
    // receiver's periodic NAK): it will report 2 and 5 again if their
    // retransmissions were lost, so the sender leaves them to its reports
    // (and to the head's timeout).
    let (mut s, sent) = with_a_retransmission(&[5]);
    s.feed(ms(21), &nak_in(&[(seq(2), seq(2)), (seq(5), seq(5))]));
    let late = sent
        .iter()
        .find(|p| !p.retransmitted && p.at > ms(26))
        .expect("a packet sent after the window");
    s.feed(ms(50), &nak_before(late.n));
    s.feed(ms(51), &light_ack_in(seq(2)));
    let resent = drive(&mut s, ms(51), ms(52));
    assert_eq!(retransmitted(&resent), vec![late.n - 1], "{resent:?}");
    assert_eq!(s.conn.stats().packets_presumed_lost, 0);
}

#[test]
fn a_peer_that_stopped_acknowledging_is_judged_on_its_naks() {
    // A UDT4 receiver sends no ACK (not even a light one) while its first
    // missing packet is the one its last confirmed ACK named: here 2, whose
    // retransmission was lost. Only NAKs of new gaps arrive; they prove
    // later packets arrived, and once that evidence is old enough for any
    // ACK covering 2 to have arrived, 2 is resent.
    let (mut s, sent) = with_a_retransmission(&[]);
    s.feed(ms(25), &ack_in(1, seq(2)));
    let late = sent
        .iter()
        .find(|p| !p.retransmitted && p.at > ms(26))
        .expect("a packet sent after the window");
    s.feed(ms(50), &nak_before(late.n));
    // Fresh evidence: an ACK covering 2 may still come.
    assert_eq!(
        retransmitted(&drive(&mut s, ms(50), ms(51))),
        vec![late.n - 1]
    );
    assert_eq!(s.conn.stats().packets_presumed_lost, 0);
    // A NAK of a gap further on, 25 ms later: the evidence has settled.
    let newer = drive(&mut s, ms(51), ms(70));
    let further = newer.iter().find(|p| !p.retransmitted).expect("new data").n;
    s.feed(ms(75), &nak_before(further + 1));
    let resent = drive(&mut s, ms(75), ms(76));
    assert_eq!(retransmitted(&resent), vec![2, further], "{resent:?}");
    assert_eq!(s.conn.stats().packets_presumed_lost, 1);
}

#[test]
fn no_guesses_beyond_a_head_that_a_nak_proved_arrived() {
    // Before any ACK, the first packet no ACK covers is 0, which the NAK
    // of 2 proved arrived: where the receiver is really stuck is unknown,
    // so the retransmissions of 2 and 5 are not guessed lost however old
    // the evidence (a storm of such guesses collapsed a transfer into
    // libudt0 at S3).
    let (mut s, sent) = with_a_retransmission(&[5]);
    let late = sent
        .iter()
        .find(|p| !p.retransmitted && p.at > ms(26))
        .expect("a packet sent after the window");
    s.feed(ms(50), &nak_before(late.n));
    let newer = drive(&mut s, ms(50), ms(70));
    let further = newer.iter().find(|p| !p.retransmitted).expect("new data").n;
    s.feed(ms(75), &nak_before(further + 1));
    let resent = drive(&mut s, ms(75), ms(76));
    assert_eq!(retransmitted(&resent), vec![further], "{resent:?}");
    assert_eq!(s.conn.stats().packets_presumed_lost, 0);
}

#[test]
fn a_nak_proof_of_a_head_the_ack_named_missing_is_doubted() {
    // 5 was lost and so was its NAK; 2's retransmission arrived, so the
    // full ACK at 25 ms names 5. Only then does a NAK of a later gap
    // "prove" 5 arrived. A UDT4 receiver sends no further ACK while 5 is
    // missing (the sender confirmed the one naming it): before, the proof
    // stood, nothing judged 5, and the EXP timer resent the whole window
    // (simulator S5-udt4: 3 500 packets sent past such a head). Now the
    // head is judged from the time of the proof: once a packet sent an
    // ACK interval and a reordering window after it has arrived, 5 is lost.
    let (mut s, sent) = with_a_retransmission(&[]);
    s.feed(ms(25), &ack_in(1, seq(5)));
    let late = sent_well_after_16(&sent);
    s.feed(ms(50), &nak_before(late.n));
    let newer = drive(&mut s, ms(50), ms(80));
    assert_eq!(retransmitted(&newer), vec![late.n - 1], "{newer:?}");
    // Sent 16 ms after the proof (window 5 ms, ACK interval 10 ms).
    let after = newer
        .iter()
        .find(|p| !p.retransmitted && p.at > ms(66))
        .expect("a packet sent after the proof")
        .n;
    s.feed(ms(80), &nak_before(after));
    let fresh = drive(&mut s, ms(80), ms(100));
    assert_eq!(retransmitted(&fresh), vec![after - 1], "{fresh:?}");
    assert_eq!(s.conn.stats().packets_presumed_lost, 0);
    // A NAK 21 ms later: that evidence has settled.
    let further = fresh.iter().find(|p| !p.retransmitted).expect("new data").n;
    s.feed(ms(101), &nak_before(further + 1));
    let resent = retransmitted(&drive(&mut s, ms(101), ms(102)));
    assert_eq!(resent.first(), Some(&5), "{resent:?}");
    assert!(resent.contains(&further), "{resent:?}");
    assert!(s.conn.stats().packets_presumed_lost >= 1);
    assert_eq!(s.conn.stats().timeouts, 0);
}

/// 2 is reported and retransmitted (`with_a_retransmission`); then the NAK
/// of the gap `5..=lost_to` is lost, and the next one reports `reported`
/// alone (so `reported - 1` arrived). A later NAK proves a packet sent
/// well after all of them arrived, and the full ACK names 5. Returns the
/// retransmissions that follow.
fn after_a_lost_nak_of_5_to(lost_to: u32, reported: u32) -> Vec<u32> {
    let (mut s, sent) = with_a_retransmission(&[]);
    assert!(lost_to < reported - 1);
    s.feed(ms(31), &nak_in(&[(seq(reported), seq(reported))]));
    let more = drive(&mut s, ms(31), ms(50));
    assert_eq!(retransmitted(&more), vec![reported], "{more:?}");
    let late = sent_well_after_16(&sent);
    s.feed(ms(50), &nak_before(late.n));
    s.feed(ms(51), &ack_in(1, seq(5)));
    let resent = retransmitted(&drive(&mut s, ms(51), ms(60)));
    assert_eq!(resent.last(), Some(&(late.n - 1)), "{resent:?}");
    resent[..resent.len() - 1].to_vec()
}

#[test]
fn samples_behind_a_head_found_lost_are_not_taken_for_the_path() {
    // The ACKs named 5 for a round trip while later packets arrived: the
    // cumulative ACK stands still until 5's repair, then jumps. The rate
    // samples of that flight are marked limited, so that a stall (many of
    // them in a row after Startup's overshoot) cannot drag the model's
    // bandwidth down.
    let (mut s, sent) = with_a_retransmission(&[]);
    let late = sent_well_after_16(&sent);
    s.feed(ms(50), &nak_before(late.n));
    assert!(!s.conn.delivery.is_app_limited());
    s.feed(ms(51), &ack_in(1, seq(5)));
    assert!(s.conn.delivery.is_app_limited());
}

#[test]
fn a_flight_the_driver_sent_late_is_not_taken_for_the_path() {
    // After the first feedback the controller paces a packet every 0.5 ms.
    // Polled every 50 µs, the sender keeps to it and its samples are the
    // path's; a driver kept away for 10 ms (a send thread off the CPU)
    // sends the next packet far behind its slot, and that flight's samples
    // show the host: taken for the path, they lowered the model to the late
    // driver's rate, which kept every later wake-up late.
    let mut s = trickling_with_200_packets_written();
    assert_eq!(drive(&mut s, ms(0), ms(5)).len(), 16);
    s.feed(ms(20), &ack_in(1, seq(16)));
    let on_time = drive(&mut s, ms(20), ms(25));
    assert!(on_time.len() >= 9, "{on_time:?}");
    assert!(!s.conn.delivery.is_app_limited());
    let late = drive(&mut s, ms(35), ms(35) + us(1));
    assert!(!late.is_empty(), "nothing left at 35 ms");
    assert!(s.conn.delivery.is_app_limited());
}

#[test]
fn the_rest_of_a_lost_naks_range_is_resent_with_its_head() {
    // 5 and 6 were lost, and so was the NAK reporting them; 7 arrived
    // (the NAK of 8 was sent on 9's arrival, with 7 the newest). Once the
    // ACK names 5, 6 is just as unreported: both leave at once, instead
    // of 6 waiting a round trip for the ACK to name it. 7 does not.
    assert_eq!(after_a_lost_nak_of_5_to(6, 8), vec![5, 6]);
}

#[test]
fn a_lost_naks_head_alone_when_the_next_reported_loss_is_far() {
    // The next reported loss is 11 packets on (more than
    // `MAX_LOST_NAK_RUN` between): on a path with sparse losses the
    // packets in between arrived, and resending them all would be
    // duplicates. Only the head leaves; the ACK names the rest if it must.
    assert_eq!(after_a_lost_nak_of_5_to(6, 16), vec![5]);
    // One packet closer, the run is short enough: all of it leaves.
    assert_eq!(
        after_a_lost_nak_of_5_to(6, 15),
        (5..=13).collect::<Vec<_>>()
    );
}
