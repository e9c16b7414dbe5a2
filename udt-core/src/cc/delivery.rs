//! Per-packet delivery-rate sampling for a sender that only sees cumulative
//! ACKs, after the delivery-rate estimation of the BBR drafts
//! (draft-cheng-iccrg-delivery-rate-estimation).
//!
//! When a packet leaves, the tracker records how much had been delivered
//! (acknowledged) by then and when. When an ACK acknowledges it, the packets
//! delivered since, divided by the time they took, is one delivery-rate
//! sample. Taking the sample per packet (from the most recently sent packet
//! an ACK covers) rather than between two ACK events keeps it honest when
//! ACKs are late, bunched or stalled behind a hole: the interval is the
//! longer of the send and the ACK interval, so a burst of ACKs after a
//! repaired hole cannot claim more than the data took to send.
//!
//! UDT's ACK is cumulative (no SACK): a packet that arrived behind a hole
//! is only acknowledged when the hole is repaired, a round trip or more
//! later, and crediting all of them to the repair would read as a burst of
//! speed. But a NAK is also a selective acknowledgement: the receiver sends
//! one when a packet beyond a gap arrives, so the packet right after each
//! reported range arrived, and so did every packet sent before it that no
//! NAK reports lost (the path delivers in order; a gap the receiver saw is
//! reported). [`DeliveryTracker::on_nak`] counts those packets as delivered
//! when the NAK arrives, as TCP counts SACKed segments. Retransmissions are
//! left to the ACK: the receiver reports a gap once, when it appears, so a
//! retransmission lost again shows in no immediate NAK.

use std::collections::VecDeque;
use std::time::{Duration, Instant};

use crate::packet::LossRanges;
use crate::seq::SeqNumber;

/// The most packets tracked beyond the last ACK. The sender never has more
/// than its send buffer in flight; this only bounds memory against a
/// broken caller.
const MAX_TRACKED: i32 = 1 << 26;

/// One delivery-rate sample: `delivered` packets in `interval`.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct RateSample {
    /// Packets delivered (acknowledged) during the interval.
    pub delivered: u64,
    /// Packets sent in the sampled packet's flight: after the packet the
    /// previous sample came from, up to the sampled one, retransmissions
    /// included (the packets the send interval covers). Without SACK a
    /// cumulative ACK that jumps over a repaired hole credits packets of
    /// earlier flights too, which `delivered` counts and this does not.
    pub flight: u64,
    /// The longer of the time the sampled flight took to send and the time
    /// its ACKs took to arrive.
    pub interval: Duration,
    /// The connection's delivered count when the sampled packet was sent;
    /// a controller counts round trips with it.
    pub prior_delivered: u64,
    /// Packets in flight just after the sampled packet was sent (itself
    /// included).
    pub tx_in_flight: u32,
    /// Packets reported lost between the sampled packet's send and now.
    pub lost: u64,
    /// Loss events reported in the same time: runs of consecutive lost
    /// packets, each counted once (a burst of radio loss is one event; a
    /// drop-tail queue overflowing under paced traffic drops every few
    /// packets, many events).
    pub loss_events: u64,
    /// Packets sent (first transmissions and retransmissions) between the
    /// sampled packet's send and now: `lost / sent` is the loss rate over
    /// the same stretch of time, however late the ACK came.
    pub sent: u64,
    /// The sampled packet was sent while the application had nothing more
    /// to send, so the sample may be below what the path can carry.
    pub is_app_limited: bool,
}

impl RateSample {
    /// The delivery rate in packets per second (0 for an empty interval).
    pub fn delivery_rate(&self) -> f64 {
        self.per_second(self.delivered)
    }

    /// The delivery rate counting no more than the sampled flight could
    /// have delivered: its packets sent less those reported lost in the
    /// interval (packets/s, 0 for an empty interval). Where the cumulative
    /// ACK jumped over a repaired hole, `delivered` includes packets of
    /// earlier flights that arrived long before, behind it; their credit
    /// belongs to no interval, and counting it here read as 2-4 % above
    /// the link on every sample, enough for a maximum filter to keep a
    /// queue growing (docs/congestion-control.md 7.2).
    pub fn flight_delivery_rate(&self) -> f64 {
        let own = self.flight.saturating_sub(self.lost).max(1);
        self.per_second(self.delivered.min(own))
    }

    /// `packets` over the sample's interval, per second (0 for an empty
    /// interval).
    fn per_second(&self, packets: u64) -> f64 {
        let secs = self.interval.as_secs_f64();
        if secs > 0.0 {
            packets as f64 / secs
        } else {
            0.0
        }
    }
}

/// What one ACK or NAK that proved new deliveries tells a controller.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct AckSample {
    /// Packets known delivered for the first time: acknowledged by an ACK,
    /// or proved arrived by a NAK (see the module docs).
    pub newly_acked: u32,
    /// The delivery-rate sample from the most recently sent packet it
    /// acknowledged, if that packet's interval is measurable.
    pub rate: Option<RateSample>,
    /// The round-trip time of the most recently sent packet it acknowledged
    /// that was never retransmitted (Karn: a retransmitted packet's ACK may
    /// belong to either transmission).
    pub rtt: Option<Duration>,
}

/// Flags of a [`Record`].
const SENT: u8 = 1;
const RETRANSMITTED: u8 = 2;
const APP_LIMITED: u8 = 4;
/// Proved delivered by a NAK before the cumulative ACK reached it.
const DELIVERED: u8 = 8;

/// The connection's delivery state when one packet was last sent.
#[derive(Clone, Copy, Debug)]
struct Record {
    /// When the packet was last sent, ns since the tracker's epoch.
    sent_ns: u64,
    /// The connection's delivered count then.
    delivered: u64,
    /// When that count was last raised, ns since the epoch.
    delivered_ns: u64,
    /// The send time of the packet the latest ACK then was sampled from.
    first_sent_ns: u64,
    /// The connection's sent count when that packet was sent: the packets
    /// sent after it, up to this one, are this packet's flight.
    first_sent: u64,
    /// The connection's lost count then.
    lost: u64,
    /// The connection's loss-event count then.
    loss_events: u64,
    /// The connection's sent count then (this packet included).
    sent: u64,
    /// Packets in flight just after this one was sent.
    tx_in_flight: u32,
    flags: u8,
}

/// A placeholder for a sequence number that was skipped, never sent (a
/// message that expired before its first transmission).
const UNSENT: Record = Record {
    sent_ns: 0,
    delivered: 0,
    delivered_ns: 0,
    first_sent_ns: 0,
    first_sent: 0,
    lost: 0,
    loss_events: 0,
    sent: 0,
    tx_in_flight: 0,
    flags: 0,
};

/// The sender's per-packet delivery bookkeeping.
///
/// The connection calls [`on_sent`](Self::on_sent) for every data packet
/// (first transmissions and retransmissions), [`on_ack`](Self::on_ack) for
/// every ACK, [`on_lost`](Self::on_lost) for every NAK that brought news,
/// and [`mark_app_limited`](Self::mark_app_limited) when the application
/// runs out of data.
#[derive(Debug)]
pub(crate) struct DeliveryTracker {
    epoch: Instant,
    /// The sequence number of `records[0]`: everything before it is acknowledged.
    first: SeqNumber,
    /// Per-packet records from `first` on.
    records: VecDeque<Record>,
    /// Packets acknowledged so far.
    delivered: u64,
    /// When `delivered` last grew, ns since the epoch.
    delivered_ns: u64,
    /// Send time of the packet the latest rate sample came from.
    first_sent_ns: u64,
    /// The sent count just after that packet was sent.
    first_sent: u64,
    /// Packets reported lost so far.
    lost: u64,
    /// Loss events (runs of lost packets) reported so far.
    loss_events: u64,
    /// Data packets sent so far, retransmissions included.
    sent: u64,
    /// While non-zero, the flow is application-limited until `delivered`
    /// passes this count.
    app_limited_until: u64,
    /// Records beyond the ACK that a NAK proved delivered.
    sacked: u32,
    /// Records before this index were examined by a NAK already.
    proved_upto: usize,
    /// The send time of the most recently sent packet known delivered
    /// (RFC 8985's `RACK.xmit_ts`), ns since the epoch.
    newest_delivered_ns: Option<u64>,
    /// The smallest RTT sample so far, ns (`u64::MAX` before any).
    min_rtt_ns: u64,
}

impl DeliveryTracker {
    /// A tracker whose first packet will be `isn`, counting time from `now`.
    pub(crate) fn new(isn: SeqNumber, now: Instant) -> Self {
        DeliveryTracker {
            epoch: now,
            first: isn,
            records: VecDeque::new(),
            delivered: 0,
            delivered_ns: 0,
            first_sent_ns: 0,
            first_sent: 0,
            lost: 0,
            loss_events: 0,
            sent: 0,
            app_limited_until: 0,
            sacked: 0,
            proved_upto: 0,
            newest_delivered_ns: None,
            min_rtt_ns: u64::MAX,
        }
    }

    /// Packets acknowledged so far.
    pub(crate) fn delivered(&self) -> u64 {
        self.delivered
    }

    /// The first packet no ACK (full or light) covers yet: the one the
    /// receiver's latest ACK named missing.
    pub(crate) fn first_unacked(&self) -> SeqNumber {
        self.first
    }

    /// Packets reported lost so far.
    pub(crate) fn lost(&self) -> u64 {
        self.lost
    }

    /// Packets beyond the cumulative ACK that NAKs proved delivered: they
    /// are not in flight any more.
    pub(crate) fn sacked(&self) -> u32 {
        self.sacked
    }

    /// True while the flow is limited by the application, not the network.
    pub(crate) fn is_app_limited(&self) -> bool {
        self.app_limited_until != 0
    }

    /// When the most recently sent packet known delivered (acknowledged,
    /// or proved arrived by a NAK) left, if any is. A retransmission counts
    /// only once it has been out for at least the smallest RTT seen: an
    /// earlier acknowledgement belongs to the original (RFC 8985 §6.2).
    pub(crate) fn newest_delivered_sent(&self) -> Option<Instant> {
        self.newest_delivered_ns
            .map(|ns| self.epoch + Duration::from_nanos(ns))
    }

    /// The smallest RTT sample so far (from packets never retransmitted).
    pub(crate) fn min_rtt(&self) -> Option<Duration> {
        (self.min_rtt_ns != u64::MAX).then(|| Duration::from_nanos(self.min_rtt_ns))
    }

    fn ns(&self, t: Instant) -> u64 {
        u64::try_from(t.saturating_duration_since(self.epoch).as_nanos()).unwrap_or(u64::MAX)
    }

    /// Data packet `seq` left at `now`; `in_flight` packets (itself
    /// included) are now in flight, and `unacked` packets (itself included)
    /// were sent and not acknowledged, lost ones too. A sequence number
    /// already recorded is a retransmission.
    pub(crate) fn on_sent(&mut self, now: Instant, seq: SeqNumber, in_flight: u32, unacked: u32) {
        let off = seq.offset_from(self.first);
        if !(0..MAX_TRACKED).contains(&off) {
            return;
        }
        let now_ns = self.ns(now);
        self.sent += 1;
        if unacked <= 1 {
            // Nothing else outstanding: the next sample's clock starts now,
            // not at the last ACK before an idle period. (Not when only the
            // packets in flight ran out: with losses outstanding the ACK
            // clock is merely stalled behind a hole, and restarting it
            // would credit the whole stall to a short interval.)
            self.first_sent_ns = now_ns;
            self.first_sent = self.sent - 1;
            self.delivered_ns = now_ns;
        }
        let mut record = Record {
            sent_ns: now_ns,
            delivered: self.delivered,
            delivered_ns: self.delivered_ns,
            first_sent_ns: self.first_sent_ns,
            first_sent: self.first_sent,
            lost: self.lost,
            loss_events: self.loss_events,
            sent: self.sent,
            tx_in_flight: in_flight,
            flags: SENT,
        };
        if self.is_app_limited() {
            record.flags |= APP_LIMITED;
        }
        let idx = off as usize;
        if let Some(existing) = self.records.get_mut(idx) {
            if existing.flags & SENT != 0 {
                record.flags |= RETRANSMITTED;
            }
            if existing.flags & DELIVERED != 0 {
                // Resent after all (an EXP timeout resends everything
                // unacknowledged): in flight again.
                self.sacked -= 1;
            }
            *existing = record;
        } else {
            while self.records.len() < idx {
                self.records.push_back(UNSENT);
            }
            self.records.push_back(record);
        }
    }

    /// The application has nothing more to send with `in_flight` packets
    /// in flight: samples from packets sent until those are delivered may
    /// understate the path.
    pub(crate) fn mark_app_limited(&mut self, in_flight: u32) {
        self.app_limited_until = (self.delivered + u64::from(in_flight)).max(1);
    }

    /// When `seq` last left, and whether that was a retransmission, if it
    /// is tracked and was sent.
    pub(crate) fn last_sent(&self, seq: SeqNumber) -> Option<(Instant, bool)> {
        let off = usize::try_from(seq.offset_from(self.first)).ok()?;
        let record = self.records.get(off)?;
        (record.flags & SENT != 0).then(|| {
            (
                self.epoch + Duration::from_nanos(record.sent_ns),
                record.flags & RETRANSMITTED != 0,
            )
        })
    }

    /// The packets still outstanding (sent, and not proved delivered by a
    /// NAK) whose last transmission left at or before `cutoff`, in
    /// sequence order.
    pub(crate) fn outstanding_sent_by(
        &self,
        cutoff: Instant,
    ) -> impl Iterator<Item = SeqNumber> + '_ {
        let cutoff_ns = self.ns(cutoff);
        let first = self.first;
        self.records
            .iter()
            .zip(0u32..)
            .filter(move |(r, _)| r.flags & (SENT | DELIVERED) == SENT && r.sent_ns <= cutoff_ns)
            .map(move |(_, i)| first.add(i))
    }

    /// True when a NAK proved `seq` arrived (and no ACK has since named it
    /// missing).
    pub(crate) fn is_proved_delivered(&self, seq: SeqNumber) -> bool {
        usize::try_from(seq.offset_from(self.first))
            .ok()
            .and_then(|off| self.records.get(off))
            .is_some_and(|r| r.flags & DELIVERED != 0)
    }

    /// The rest of a lost NAK's range after `head`, a first transmission
    /// whose own NAK never came (the ACKs name it missing, later packets
    /// arrived): the last of the packets after it that only the silence of
    /// later NAKs "proved" delivered, up to two before the next packet a
    /// NAK reported lost. That NAK was sent when its packet's predecessor
    /// was the newest arrival, so the lost NAK's range ends before it.
    /// `None` when there is nothing after `head` to suspect, or when more
    /// than `max` packets lie in between: a long run is what a path with
    /// sparse losses delivers in full, and resending it would be mostly
    /// duplicates.
    pub(crate) fn unreported_run_after(&self, head: SeqNumber, max: usize) -> Option<SeqNumber> {
        let start = usize::try_from(head.offset_from(self.first)).ok()? + 1;
        for i in 0..=max + 1 {
            let idx = start + i;
            // Beyond what NAKs have examined nothing is known either way.
            if idx >= self.proved_upto {
                return None;
            }
            let record = self.records.get(idx)?;
            if record.flags & (SENT | DELIVERED | RETRANSMITTED) == SENT | DELIVERED {
                continue;
            }
            // The next reported loss (or a packet never sent): the lost
            // range ends at least two before it, since its predecessor
            // arrived.
            return (i >= 2).then(|| self.first.add((idx - 2) as u32));
        }
        None
    }

    /// True when `seq` was retransmitted at or after `since`: a loss report
    /// for it that arrives now was sent before that retransmission could
    /// have arrived, so it is no news.
    pub(crate) fn retransmitted_since(&self, seq: SeqNumber, since: Instant) -> bool {
        let off = seq.offset_from(self.first);
        if off < 0 {
            return false;
        }
        let since_ns = self.ns(since);
        self.records
            .get(off as usize)
            .is_some_and(|r| r.flags & RETRANSMITTED != 0 && r.sent_ns >= since_ns)
    }

    /// A NAK reported `count` packets lost for the first time, in
    /// `events` runs.
    pub(crate) fn on_lost(&mut self, count: u32, events: u32) {
        self.lost += u64::from(count);
        self.loss_events += u64::from(events);
    }

    /// An ACK said everything before `ack` arrived. Returns what it
    /// proved delivered for the first time, or `None` when it brought no
    /// news.
    ///
    /// The ACK also names `ack` as missing: a NAK's proof that it arrived
    /// was wrong (the NAK that reported it was lost) and is withdrawn.
    pub(crate) fn on_ack(&mut self, now: Instant, ack: SeqNumber) -> Option<AckSample> {
        let off = ack.offset_from(self.first);
        if !(0..MAX_TRACKED).contains(&off) {
            return None;
        }
        let take = (off as usize).min(self.records.len());
        let mut newest = Newest::default();
        let mut sacked_popped = 0;
        for record in self.records.drain(..take) {
            if record.flags & DELIVERED != 0 {
                sacked_popped += 1;
            } else if record.flags & SENT != 0 {
                newest.add(&record);
            }
        }
        self.sacked -= sacked_popped;
        self.proved_upto = self.proved_upto.saturating_sub(take);
        self.first = ack;
        if let Some(head) = self.records.front_mut() {
            if head.flags & DELIVERED != 0 {
                head.flags &= !DELIVERED;
                self.sacked -= 1;
            }
        }
        if newest.count == 0 {
            // Everything it covered was already proved delivered by NAKs.
            return None;
        }
        // The first packet this ACK leaves outstanding, if it left once
        // and nothing proved it delivered.
        let first_left_waiting = self
            .records
            .front()
            .filter(|r| r.flags & (SENT | RETRANSMITTED | DELIVERED) == SENT)
            .map(|r| r.sent_ns);
        Some(self.take_sample(now, newest, first_left_waiting))
    }

    /// A NAK arrived: `ranges` are missing at the receiver, and
    /// `is_queued(seq)` tells which numbers the sender holds for
    /// retransmission. The packet after the highest range arrived, and so
    /// did every packet sent before it that is neither reported nor queued
    /// (see the module docs). Returns what that proved delivered for the
    /// first time, or `None`.
    pub(crate) fn on_nak(
        &mut self,
        now: Instant,
        ranges: &LossRanges<'_>,
        is_queued: impl Fn(SeqNumber) -> bool,
    ) -> Option<AckSample> {
        // The packet right after the highest range: proved received.
        let mut top: Option<usize> = None;
        for (first, last) in ranges.iter().map_while(Result::ok) {
            if first.is_after(last) {
                continue;
            }
            let end = last.offset_from(self.first);
            if (-1..MAX_TRACKED).contains(&end) {
                let received = (end + 1) as usize;
                top = Some(top.map_or(received, |t: usize| t.max(received)));
            }
        }
        let top = top?;
        let reference = *self.records.get(top)?;
        if reference.flags & SENT == 0 {
            return None;
        }
        let first = self.first;
        let offsets = move |(f, l): (SeqNumber, SeqNumber)| {
            let (a, b) = (f.offset_from(first), l.offset_from(first));
            (a <= b && b >= 0).then_some((a.max(0) as usize, b as usize))
        };
        // A reported number proved delivered before was proved wrongly (the
        // NAK that reported it was lost): withdraw the proof.
        for (a, b) in ranges.iter().map_while(Result::ok).filter_map(offsets) {
            for idx in a..=b.min(top) {
                if let Some(record) = self.records.get_mut(idx) {
                    if record.flags & DELIVERED != 0 {
                        record.flags &= !DELIVERED;
                        self.sacked -= 1;
                    }
                }
            }
        }
        // Below `proved_upto` every first transmission was proved or
        // reported by an earlier NAK (a reported one is lost and will only
        // come back as a retransmission, which NAKs never prove): walk
        // each record once, not the whole flight on every NAK.
        let mut newest = Newest::default();
        let mut ranges_iter = ranges.iter().map_while(Result::ok).filter_map(offsets);
        let mut range = ranges_iter.next();
        let from = self.proved_upto;
        self.proved_upto = self.proved_upto.max(top + 1);
        for idx in from..=top {
            while let Some((_, b)) = range {
                if b < idx {
                    range = ranges_iter.next();
                } else {
                    break;
                }
            }
            if range.is_some_and(|(a, b)| a <= idx && idx <= b) {
                continue;
            }
            let seq = self.first.add(idx as u32);
            let Some(record) = self.records.get_mut(idx) else {
                break;
            };
            // Only first transmissions: a receiver reports a gap once, when
            // it sees it, so a retransmission lost again shows in no
            // immediate NAK; only the ACK proves it arrived.
            if record.flags & (SENT | DELIVERED | RETRANSMITTED) != SENT
                || record.sent_ns > reference.sent_ns
            {
                continue;
            }
            if is_queued(seq) {
                continue;
            }
            record.flags |= DELIVERED;
            self.sacked += 1;
            newest.add(record);
        }
        if newest.count == 0 {
            return None;
        }
        Some(self.take_sample(now, newest, None))
    }

    /// Counts `newest.count` packets delivered at `now` and builds the
    /// sample from the most recently sent of them. `first_left_waiting`:
    /// the send time of the first packet an ACK left outstanding, if it is
    /// a first transmission nothing proved delivered.
    fn take_sample(
        &mut self,
        now: Instant,
        newest: Newest,
        first_left_waiting: Option<u64>,
    ) -> AckSample {
        let now_ns = self.ns(now);
        self.delivered += u64::from(newest.count);
        self.delivered_ns = now_ns;
        if self.app_limited_until != 0 && self.delivered > self.app_limited_until {
            self.app_limited_until = 0;
        }
        let rate = newest.record.and_then(|p| {
            self.first_sent_ns = p.sent_ns;
            self.first_sent = p.sent;
            let send_elapsed = p.sent_ns.saturating_sub(p.first_sent_ns);
            let ack_elapsed = now_ns.saturating_sub(p.delivered_ns);
            let interval = send_elapsed.max(ack_elapsed);
            (interval > 0).then(|| RateSample {
                delivered: self.delivered - p.delivered,
                flight: p.sent.saturating_sub(p.first_sent).max(1),
                interval: Duration::from_nanos(interval),
                prior_delivered: p.delivered,
                tx_in_flight: p.tx_in_flight,
                lost: self.lost.saturating_sub(p.lost),
                loss_events: self.loss_events.saturating_sub(p.loss_events),
                sent: self.sent.saturating_sub(p.sent),
                is_app_limited: p.flags & APP_LIMITED != 0,
            })
        });
        let rtt = newest
            .clean_sent_ns
            .map(|sent| Duration::from_nanos(now_ns.saturating_sub(sent)));
        if let Some(rtt) = rtt {
            let ns = u64::try_from(rtt.as_nanos()).unwrap_or(u64::MAX);
            self.min_rtt_ns = self.min_rtt_ns.min(ns.max(1));
        }
        // RFC 8985 §6.2 step 2: a retransmission acknowledged sooner than a
        // round trip after it left was delivered as the original. A UDT
        // ACK may also lag its packets by an ACK interval (10 ms), far more
        // than a loopback or LAN round trip, so a later ACK can still be
        // the original's: it is when the ACK stops at a packet that left
        // before the retransmission and was never reported lost, which
        // (the path delivers in order) would have arrived before it. Taken
        // for the retransmission's, such an ACK made that packet look
        // overtaken: presumed lost and resent, whose ACK then did the same
        // to the next (1 376 resends, none lost, 64 connections on
        // loopback).
        let trusted = newest.record.and_then(|r| {
            let retransmitted = r.flags & RETRANSMITTED != 0;
            let too_soon = now_ns.saturating_sub(r.sent_ns) < self.min_rtt_ns;
            let overtook_an_earlier = first_left_waiting.is_some_and(|t| t < r.sent_ns);
            let spurious = retransmitted && (too_soon || overtook_an_earlier);
            (!spurious).then_some(r.sent_ns)
        });
        if let Some(sent) = trusted.or(newest.clean_sent_ns) {
            self.newest_delivered_ns = Some(self.newest_delivered_ns.map_or(sent, |n| n.max(sent)));
        }
        AckSample {
            newly_acked: newest.count,
            rate,
            rtt,
        }
    }
}

/// The packets one ACK or NAK proved delivered: how many, the most
/// recently sent (the rate sample's), and the send time of the most recent
/// one never retransmitted (the RTT sample's, after Karn).
#[derive(Default)]
struct Newest {
    count: u32,
    record: Option<Record>,
    clean_sent_ns: Option<u64>,
}

impl Newest {
    fn add(&mut self, record: &Record) {
        self.count += 1;
        if self.record.is_none_or(|n| record.sent_ns >= n.sent_ns) {
            self.record = Some(*record);
        }
        if record.flags & RETRANSMITTED == 0
            && self.clean_sent_ns.is_none_or(|t| record.sent_ns >= t)
        {
            self.clean_sent_ns = Some(record.sent_ns);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    use crate::time::test_epoch as epoch;

    fn ms(t0: Instant, n: u64) -> Instant {
        t0 + Duration::from_millis(n)
    }

    const ISN: u32 = 100;

    fn seq(n: u32) -> SeqNumber {
        SeqNumber::new(ISN + n)
    }

    #[test]
    fn paced_flow_samples_the_sending_rate() {
        // One packet per ms, 20 ms RTT, ACK of each packet as it returns:
        // every sample must read 1000 packets/s once the pipe is full.
        let t0 = epoch();
        let mut d = DeliveryTracker::new(seq(0), t0);
        let mut rates = Vec::new();
        for i in 0..100u32 {
            let now = ms(t0, u64::from(i));
            if i >= 20 {
                let s = d.on_ack(now, seq(i - 19)).expect("news");
                assert_eq!(s.newly_acked, 1);
                assert_eq!(s.rtt, Some(Duration::from_millis(20)));
                rates.push(s.rate.expect("rate").delivery_rate());
            }
            let in_flight = i.min(19) + 1;
            d.on_sent(now, seq(i), in_flight, in_flight);
        }
        for r in &rates[25..] {
            assert!((r - 1000.0).abs() < 1.0, "rate {r}");
        }
        assert_eq!(d.delivered(), 80);
    }

    #[test]
    fn ack_after_a_stall_is_bounded_by_the_send_interval() {
        // 10 packets sent 1 ms apart; the ACK for all of them arrives at
        // once 50 ms later (a repaired hole). The sample may not exceed the
        // rate they were sent at.
        let t0 = epoch();
        let mut d = DeliveryTracker::new(seq(0), t0);
        for i in 0..10u32 {
            d.on_sent(ms(t0, u64::from(i)), seq(i), i + 1, i + 1);
        }
        // A first ACK at 20 ms for packet 0 sets the clock.
        let first = d.on_ack(ms(t0, 20), seq(1)).expect("news");
        assert_eq!(first.newly_acked, 1);
        let s = d.on_ack(ms(t0, 60), seq(10)).expect("news");
        assert_eq!(s.newly_acked, 9);
        let rate = s.rate.expect("rate");
        assert_eq!(rate.delivered, 10);
        // Packet 9 was sent at 9 ms, with the connection's clock started at
        // 0 ms (idle start): send interval 9 ms, ACK interval 60 ms.
        assert_eq!(rate.interval, Duration::from_millis(60));
        assert!(rate.delivery_rate() <= 1000.0 / 6.0 + 1e-9);
        assert_eq!(s.rtt, Some(Duration::from_millis(51)));
        // The same ACK again brings nothing.
        assert_eq!(d.on_ack(ms(t0, 61), seq(10)), None);
        assert_eq!(d.on_ack(ms(t0, 61), seq(3)), None);
    }

    #[test]
    fn retransmission_is_not_an_rtt_sample_and_counts_loss() {
        let t0 = epoch();
        let mut d = DeliveryTracker::new(seq(0), t0);
        d.on_sent(ms(t0, 0), seq(0), 1, 1);
        d.on_sent(ms(t0, 1), seq(1), 2, 2);
        d.on_lost(1, 1);
        // Packet 1 retransmitted at 30 ms; the ACK of both at 45 ms.
        d.on_sent(ms(t0, 30), seq(1), 2, 2);
        assert!(d.retransmitted_since(seq(1), ms(t0, 30)));
        assert!(!d.retransmitted_since(seq(1), ms(t0, 31)));
        assert!(
            !d.retransmitted_since(seq(0), ms(t0, 0)),
            "never retransmitted"
        );
        assert!(!d.retransmitted_since(seq(7), ms(t0, 0)), "never sent");
        let s = d.on_ack(ms(t0, 45), seq(2)).expect("news");
        assert_eq!(s.newly_acked, 2);
        // RTT from packet 0, the newest never retransmitted.
        assert_eq!(s.rtt, Some(Duration::from_millis(45)));
        let rate = s.rate.expect("rate");
        // Sampled from the retransmission (the newest send); no loss
        // reported or packet sent after it.
        assert_eq!((rate.lost, rate.loss_events, rate.sent), (0, 0, 0));
        assert_eq!(d.lost(), 1);
    }

    #[test]
    fn app_limited_marks_samples_until_delivered() {
        let t0 = epoch();
        let mut d = DeliveryTracker::new(seq(0), t0);
        d.on_sent(ms(t0, 0), seq(0), 1, 1);
        d.mark_app_limited(1);
        assert!(d.is_app_limited());
        d.on_sent(ms(t0, 1), seq(1), 2, 2);
        let s = d.on_ack(ms(t0, 20), seq(1)).expect("news");
        assert!(!s.rate.expect("rate").is_app_limited);
        // Delivered 1, limit 1: still app-limited until beyond it.
        assert!(d.is_app_limited());
        let s = d.on_ack(ms(t0, 21), seq(2)).expect("news");
        assert!(s.rate.expect("rate").is_app_limited);
        assert!(!d.is_app_limited());
    }

    #[test]
    fn skipped_numbers_are_placeholders() {
        let t0 = epoch();
        let mut d = DeliveryTracker::new(seq(0), t0);
        d.on_sent(ms(t0, 0), seq(0), 1, 1);
        // 1..=4 skipped (an expired message), 5 sent.
        d.on_sent(ms(t0, 1), seq(5), 2, 2);
        let s = d.on_ack(ms(t0, 20), seq(6)).expect("news");
        // Only the two packets really sent count as deliveries.
        assert_eq!(s.newly_acked, 2);
        assert_eq!(s.rtt, Some(Duration::from_millis(19)));
        // A number before the first tracked one, or absurdly far, is ignored.
        d.on_sent(ms(t0, 21), seq(2), 1, 1);
        d.on_sent(ms(t0, 21), SeqNumber::new(ISN + (1 << 27)), 1, 1);
        assert_eq!(d.records.len(), 0);
    }

    /// A NAK body with the given ranges, as the receiver encodes it.
    fn nak(ranges: &[(u32, u32)]) -> Vec<u8> {
        let mut buf = Vec::new();
        crate::packet::encode_nak(
            0,
            crate::seq::SocketId(1),
            ranges.iter().map(|&(a, b)| (seq(a), seq(b))),
            64,
            &mut buf,
        );
        buf.split_off(crate::packet::HEADER_SIZE)
    }

    #[test]
    fn nak_proves_what_was_sent_before_the_packet_after_the_gap() {
        let t0 = epoch();
        let mut d = DeliveryTracker::new(seq(0), t0);
        for i in 0..10u32 {
            d.on_sent(ms(t0, u64::from(i)), seq(i), i + 1, i + 1);
        }
        // 3 and 4 lost; the arrival of 5 (sent at 5 ms) triggered the NAK.
        let body = nak(&[(3, 4)]);
        let ranges = LossRanges::new(&body).expect("valid body");
        let s = d
            .on_nak(ms(t0, 25), &ranges, |q| q == seq(3) || q == seq(4))
            .expect("news");
        // 0, 1, 2 and 5 arrived; 6..9 were sent after 5 and are unknown.
        assert_eq!(s.newly_acked, 4);
        assert_eq!(s.rtt, Some(Duration::from_millis(20)));
        assert_eq!(d.sacked(), 4);
        assert_eq!(d.delivered(), 4);
        // 3 is retransmitted; the same NAK again proves nothing new.
        d.on_sent(ms(t0, 26), seq(3), 5, 10);
        assert_eq!(d.on_nak(ms(t0, 30), &ranges, |q| q == seq(4)), None);
        // 8 lost, 9 arrived: 6, 7 and 9 arrived; 3 (a retransmission) is
        // left to the ACK, 4 is still queued.
        let body = nak(&[(8, 8)]);
        let ranges = LossRanges::new(&body).expect("valid body");
        let s = d
            .on_nak(ms(t0, 40), &ranges, |q| q == seq(4) || q == seq(8))
            .expect("news");
        assert_eq!(s.newly_acked, 3);
        assert_eq!(d.sacked(), 7);
        // The ACK of everything counts only what no NAK proved: 3, 4, 8.
        let s = d.on_ack(ms(t0, 45), seq(10)).expect("news");
        assert_eq!(s.newly_acked, 3);
        assert_eq!(d.sacked(), 0);
        assert_eq!(d.delivered(), 10);
    }

    #[test]
    fn a_sample_knows_its_flight_apart_from_earlier_credit() {
        // 0..=23 sent 1 ms apart; 2 is lost and the NAK of its gap (the
        // arrival of 3) proves 0, 1 and 3 at 23 ms, before 23 leaves. The
        // ACK that covers the repaired hole at 44 ms credits 2 and 4..=23:
        // 21 packets, but the flight of the sampled packet (23) is the 20
        // sent after 3, the packet the previous sample came from.
        let t0 = epoch();
        let mut d = DeliveryTracker::new(seq(0), t0);
        for i in 0..23u32 {
            d.on_sent(ms(t0, u64::from(i)), seq(i), i + 1, i + 1);
        }
        let body = nak(&[(2, 2)]);
        let ranges = LossRanges::new(&body).expect("valid body");
        let s = d
            .on_nak(ms(t0, 23), &ranges, |q| q == seq(2))
            .expect("news");
        assert_eq!(s.newly_acked, 3);
        d.on_sent(ms(t0, 23), seq(23), 21, 24);
        let s = d.on_ack(ms(t0, 44), seq(24)).expect("news");
        assert_eq!(s.newly_acked, 21);
        let rate = s.rate.expect("rate");
        assert_eq!((rate.delivered, rate.flight), (21, 20));
        // Send interval 20 ms (3 to 23), ACK interval 21 ms.
        assert_eq!(rate.interval, Duration::from_millis(21));
        assert!((rate.delivery_rate() - 1000.0).abs() < 1e-6);
        assert!((rate.flight_delivery_rate() - 20.0 / 0.021).abs() < 1e-6);
        // Losses reported in the interval are not the flight's deliveries.
        let lossy = RateSample { lost: 5, ..rate };
        assert!((lossy.flight_delivery_rate() - 15.0 / 0.021).abs() < 1e-6);
    }

    #[test]
    fn a_nak_reporting_a_proved_packet_withdraws_the_proof() {
        let t0 = epoch();
        let mut d = DeliveryTracker::new(seq(0), t0);
        for i in 0..6u32 {
            d.on_sent(ms(t0, u64::from(i)), seq(i), i + 1, i + 1);
        }
        let body = nak(&[(4, 4)]);
        let ranges = LossRanges::new(&body).expect("valid body");
        d.on_nak(ms(t0, 20), &ranges, |q| q == seq(4))
            .expect("news");
        assert_eq!(d.sacked(), 5, "0..=3 and 5");
        // A later NAK says 2 was lost after all (its first NAK was lost).
        let body = nak(&[(2, 2), (4, 4)]);
        let ranges = LossRanges::new(&body).expect("valid body");
        assert_eq!(
            d.on_nak(ms(t0, 30), &ranges, |q| q == seq(2) || q == seq(4)),
            None
        );
        assert_eq!(d.sacked(), 4);
        // A NAK beyond anything sent is ignored.
        let body = nak(&[(40, 50)]);
        let ranges = LossRanges::new(&body).expect("valid body");
        assert_eq!(d.on_nak(ms(t0, 31), &ranges, |_| false), None);
    }

    #[test]
    fn an_ack_naming_a_proved_packet_withdraws_the_proof() {
        // A UDT4 receiver's NAK of 1 was lost: the NAK of 3 proves 0, 1, 2
        // and 4 arrived. The ACKs then name 1 as the first missing packet.
        let t0 = epoch();
        let mut d = DeliveryTracker::new(seq(0), t0);
        for i in 0..6u32 {
            d.on_sent(ms(t0, u64::from(i)), seq(i), i + 1, i + 1);
        }
        let body = nak(&[(3, 3)]);
        let ranges = LossRanges::new(&body).expect("valid body");
        d.on_nak(ms(t0, 20), &ranges, |q| q == seq(3))
            .expect("news");
        assert_eq!(d.sacked(), 4);
        assert!(d.is_proved_delivered(seq(1)));
        assert!(!d.is_proved_delivered(seq(3)));
        // 0 leaves the count as acknowledged; 1 as missing after all.
        assert_eq!(d.on_ack(ms(t0, 21), seq(1)), None);
        assert_eq!(d.sacked(), 2);
        assert!(!d.is_proved_delivered(seq(1)));
        // Naming it again changes nothing.
        assert_eq!(d.on_ack(ms(t0, 22), seq(1)), None);
        assert_eq!(d.sacked(), 2);
        assert_eq!(d.last_sent(seq(1)), Some((ms(t0, 1), false)));
    }

    #[test]
    fn newest_delivered_trusts_a_retransmission_only_after_a_round_trip() {
        let t0 = epoch();
        let mut d = DeliveryTracker::new(seq(0), t0);
        assert_eq!(d.newest_delivered_sent(), None);
        d.on_sent(ms(t0, 0), seq(0), 1, 1);
        d.on_sent(ms(t0, 1), seq(1), 2, 2);
        d.on_ack(ms(t0, 20), seq(1)).expect("news");
        assert_eq!(d.min_rtt(), Some(Duration::from_millis(20)));
        assert_eq!(d.newest_delivered_sent(), Some(ms(t0, 0)));
        // 1 is retransmitted at 30 ms and acknowledged 5 ms later: that
        // ACK is for the original (which was only late), not a delivery
        // of a packet sent at 30 ms.
        d.on_lost(1, 1);
        d.on_sent(ms(t0, 30), seq(1), 1, 1);
        d.on_ack(ms(t0, 35), seq(2)).expect("news");
        assert_eq!(d.newest_delivered_sent(), Some(ms(t0, 0)));
        // 2 is retransmitted at 40 ms and acknowledged a round trip later:
        // the retransmission arrived.
        d.on_sent(ms(t0, 36), seq(2), 1, 1);
        d.on_lost(1, 1);
        d.on_sent(ms(t0, 40), seq(2), 1, 1);
        d.on_ack(ms(t0, 61), seq(3)).expect("news");
        assert_eq!(d.newest_delivered_sent(), Some(ms(t0, 40)));
        assert_eq!(d.min_rtt(), Some(Duration::from_millis(20)));
    }

    #[test]
    fn an_ack_that_stops_before_a_retransmission_is_the_originals() {
        // A 1 ms path whose ACKs lag by up to 10 ms: 1 is resent at 20 ms
        // although it only waited for an ACK. The ACK at 25 ms covers 1 and
        // 2 but not 3, which left before the resend: had the resend
        // arrived, so had 3. The ACK was the original's, so the newest
        // delivered send time stays at 2's, not the resend's.
        let t0 = epoch();
        let mut d = DeliveryTracker::new(seq(0), t0);
        for n in 0..4 {
            d.on_sent(ms(t0, u64::from(n)), seq(n), n + 1, n + 1);
        }
        d.on_ack(ms(t0, 1) + Duration::from_micros(500), seq(1))
            .expect("news");
        assert_eq!(d.newest_delivered_sent(), Some(ms(t0, 0)));
        d.on_sent(ms(t0, 20), seq(1), 3, 3);
        d.on_ack(ms(t0, 25), seq(3)).expect("news");
        assert_eq!(d.newest_delivered_sent(), Some(ms(t0, 2)));
        // Once the ACK covers everything sent before the resend, the resend
        // may have arrived: it counts.
        d.on_sent(ms(t0, 30), seq(3), 1, 1);
        d.on_sent(ms(t0, 31), seq(4), 2, 2);
        d.on_ack(ms(t0, 40), seq(4)).expect("news");
        assert_eq!(d.newest_delivered_sent(), Some(ms(t0, 30)));
    }

    #[test]
    fn losses_outstanding_do_not_restart_the_ack_clock() {
        // With every packet in flight lost (the pipe empty) but the ACK
        // stalled behind them, a new packet must not restart the clock:
        // the repair would otherwise be credited to a short interval.
        let t0 = epoch();
        let mut d = DeliveryTracker::new(seq(0), t0);
        for i in 0..10u32 {
            d.on_sent(ms(t0, u64::from(i)), seq(i), i + 1, i + 1);
        }
        d.on_ack(ms(t0, 20), seq(1)).expect("news");
        d.on_sent(ms(t0, 30), seq(10), 1, 10);
        let s = d.on_ack(ms(t0, 50), seq(11)).expect("news");
        let rate = s.rate.expect("rate");
        assert_eq!(rate.interval, Duration::from_millis(30));
        assert_eq!(rate.delivered, 10);
    }
}
