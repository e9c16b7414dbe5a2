//! The receiving half of a connection: receive buffer, receiver loss list,
//! ACK bookkeeping and arrival estimators (UDT4 `processData` and the ACK
//! and NAK sides of `sendCtrl`).
//!
//! The receiver stores data, detects gaps, builds ACKs and NAKs and decides
//! when they are due; it reports what happened so the connection can queue
//! the control packets and keep its counters.

use std::collections::VecDeque;
use std::time::{Duration, Instant};

use super::advertised::AdvertisedWindows;
use crate::ack_window::AckWindow;
use crate::estimate::{ArrivalWindow, RttEstimator};
use crate::loss_list::LossList;
use crate::packet::{self, Ack, AckRates, DataHeader};
use crate::recv_buffer::{InsertError, RecvBuffer};
use crate::seq::{AckSeqNumber, MsgNumber, SeqNumber, SocketId};
use crate::time::SYN_INTERVAL;

/// Data packets between two light ACKs (UDT4's self clock,
/// `m_iSelfClockInterval`).
const LIGHT_ACK_INTERVAL: u32 = 64;

/// ACKs that carry the arrival speed and link capacity at the start of a
/// connection (until the first gap), one at each self-clock point instead of
/// a light ACK and not only once per SYN.
///
/// Why: a UDT4 sender averages these two fields into 7/8 moving averages
/// that start at 16 and 1 packets/s, and when it leaves slow start it takes
/// its sending period from that average (udt4-protocol.md §6.5, §7). On a
/// short path it leaves after four to six SYNs, so at one report per SYN its
/// average is still a half or less of what we measured, and it kept that
/// pace: libudt0 sent into our receiver at ~5.7 µs per packet instead of
/// ~3 µs. After 32 reports the starting value weighs (7/8)^32 ≈ 1.4 %.
/// Its own receiver hides this by reporting ~1 000 000 packets/s, read-batch
/// time (docs/performance.md). The cost is the ACK2s the extra reports draw:
/// 32 per connection.
const EARLY_RATE_REPORTS: u32 = 32;

/// A window advertised below this many packets is "nearly closed": once the
/// application frees this many, an ACK reopens it at once instead of
/// leaving the sender to discover it on its EXP timer (docs/divergences.md).
const WINDOW_UPDATE_THRESHOLD: u32 = 32;

/// UDT4 never advertises less than this "to break deadlock".
const MIN_ADVERTISED_WINDOW: u32 = 2;

/// The shortest periodic NAK interval.
const MIN_NAK_INTERVAL: Duration = Duration::from_millis(20);

/// The longest time allowed for receiving the lost packets in the periodic
/// NAK interval.
const MAX_NAK_DRAIN: Duration = Duration::from_secs(1);

/// The most recent gaps remembered for the reordering window (their age is
/// bounded by a round trip too).
const RECENT_GAPS: usize = 1024;

/// A gap found by a later packet: when, and whether its NAK has left.
#[derive(Clone, Copy, Debug)]
struct RecentGap {
    first: SeqNumber,
    last: SeqNumber,
    found: Instant,
    reported: bool,
    /// The sender's timestamp on the packet that revealed the gap: a
    /// missing packet stamped no later was sent before it (or with it) and
    /// overtaken; a retransmission is stamped when it is resent, later.
    revealed_at: u32,
}

/// Receiver-side state.
#[derive(Debug)]
pub(super) struct Receiver {
    buffer: RecvBuffer,
    loss: LossList,
    /// The largest sequence number received (UDT4 `m_iRcvCurrSeqNo`).
    current: SeqNumber,
    /// The last ACK number sent in a full or medium ACK (UDT4 `m_iRcvLastAck`).
    last_ack: SeqNumber,
    /// The highest ACK number the sender confirmed with ACK2 (UDT4 `m_iRcvLastAckAck`).
    last_ack_ack: SeqNumber,
    /// Sequence number of the next full/medium ACK.
    next_ack_seq: AckSeqNumber,
    ack_window: AckWindow,
    arrivals: ArrivalWindow,
    /// When the last full or medium ACK left.
    last_ack_time: Instant,
    /// When the last full ACK (with rate fields) left.
    last_full_ack_time: Instant,
    /// ACKs sent with the rate fields, counted up to [`EARLY_RATE_REPORTS`].
    rate_reports: u32,
    /// Data packets since the last ACK, for the light-ACK self-clock.
    packets_since_ack: u32,
    /// ACK at once: a short packet arrived (UDT4 sets the ACK timer to
    /// now), or the application reopened a nearly closed window.
    ack_now: bool,
    /// When the periodic NAK timer last fired.
    last_nak_time: Instant,
    /// The largest sequence number received when the periodic NAK timer
    /// last fired. Every loss up to it was found (and reported by an
    /// immediate NAK) before that firing, so at least a period ago; a loss
    /// after it was reported less than a period ago and is not repeated yet.
    nak_watermark: SeqNumber,
    /// A periodic NAK is queued (at most one at a time), of the losses up to
    /// this sequence number.
    nak_list_queued: Option<SeqNumber>,
    /// Gaps found within about the last round trip, oldest first: the
    /// evidence of reordering, and the NAKs the reordering window holds.
    recent_gaps: VecDeque<RecentGap>,
    /// How many of `recent_gaps` still wait for their NAK (the timer asks
    /// often; most of the time none does).
    held_naks: usize,
    /// How long a new gap waits before its NAK, in case the missing packets
    /// were only overtaken (RACK's reordering window, RFC 8985 6.2). Zero,
    /// UDT4's immediate NAK, until a missing packet arrives that the sender
    /// stamped before the packet that revealed its gap (it was overtaken,
    /// not resent); then the largest such delay and a quarter, never more
    /// than a quarter of the current RTT. It does not shrink again (RACK's
    /// decays): a path that stopped reordering keeps its NAKs that late.
    reorder_window: Duration,
    /// The window we advertised in the last ACK, to decide on window updates.
    last_advertised: u32,
    /// The windows advertised in the last round trip, to tell whether the
    /// window holds the sender back.
    advertised: AdvertisedWindows,
    /// Light ACKs also while the ACK number is the confirmed one
    /// (`Config::stall_light_acks`; UDT4 sends none then).
    stall_light_acks: bool,
}

/// A gap detected on arrival: `[first, last]` is missing, `added` of it
/// newly recorded in the loss list.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) struct Gap {
    pub(super) first: SeqNumber,
    pub(super) last: SeqNumber,
    pub(super) added: u32,
    /// NAK it now; otherwise the reordering window holds it
    /// ([`Receiver::take_due_naks`]).
    pub(super) report_now: bool,
}

/// What a data packet did.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum DataOutcome {
    /// Longer than the negotiated payload size: dropped.
    Oversized,
    /// Already received: dropped.
    Duplicate,
    /// Outside the receive window: dropped.
    OutOfWindow,
    /// Another payload than the unread one held for its sequence number:
    /// injected data won a race against the genuine packet (or the reverse).
    Conflict,
    /// Accepted. `dropped_message` when its message had been dropped (the
    /// payload is discarded but the sequence number still counts).
    Accepted {
        dropped_message: bool,
        /// A gap it revealed, to be reported with an immediate NAK.
        gap: Option<Gap>,
        /// A light ACK of this number is due (every 64 packets).
        light_ack: Option<SeqNumber>,
    },
}

impl Receiver {
    /// A receiver expecting `isn` first, with a buffer of `capacity`
    /// packets of `payload_size` bytes, read as a byte stream only when
    /// `stream` (a stream connection never assembles messages);
    /// `stall_light_acks` and `early_rate_reports` as the `Config` fields
    /// of those names.
    pub(super) fn new(
        capacity: u32,
        payload_size: usize,
        isn: SeqNumber,
        now: Instant,
        stream: bool,
        stall_light_acks: bool,
        early_rate_reports: bool,
    ) -> Self {
        let buffer = RecvBuffer::new(capacity, payload_size, isn);
        Receiver {
            buffer: if stream { buffer.stream_only() } else { buffer },
            loss: LossList::new(capacity),
            current: isn.prev(),
            last_ack: isn,
            last_ack_ack: isn,
            next_ack_seq: AckSeqNumber::FIRST,
            ack_window: AckWindow::new(),
            arrivals: ArrivalWindow::new(),
            last_ack_time: now,
            last_full_ack_time: now,
            rate_reports: if early_rate_reports {
                0
            } else {
                EARLY_RATE_REPORTS
            },
            packets_since_ack: 0,
            ack_now: false,
            last_nak_time: now,
            nak_watermark: isn.prev(),
            nak_list_queued: None,
            recent_gaps: VecDeque::new(),
            held_naks: 0,
            reorder_window: Duration::ZERO,
            last_advertised: u32::MAX,
            advertised: AdvertisedWindows::default(),
            stall_light_acks,
        }
    }

    // ----- queries -----

    /// The receive buffer, for what is readable.
    pub(super) fn buffer(&self) -> &RecvBuffer {
        &self.buffer
    }

    /// True when the sender has used (nearly) all the window that held it
    /// back: data arrived within an eighth of the far edge of the window
    /// advertised a round trip (`rtt`) before `now`, which is what the
    /// packets arriving now were sent under. Only then can a larger buffer
    /// raise the rate. (Comparing with the newest window instead missed a
    /// window-limited sender on long paths: see `advertised`.)
    pub(super) fn is_window_limited(&mut self, now: Instant, rtt: Duration) -> bool {
        let Some(held_to) = self.advertised.in_force(now, rtt) else {
            return false;
        };
        let margin = (held_to.window / 8).max(2);
        !self.current.next().is_before(held_to.edge().sub(margin))
    }

    /// Grows the receive buffer (and so the advertised window, and the loss
    /// list's span with it) to `packets`; never shrinks.
    pub(super) fn grow_buffer(&mut self, packets: u32) {
        self.buffer.grow(packets);
        self.loss.grow(packets);
        // The smaller windows before no longer tell whether this one holds
        // the sender back: judge it on its own advertisements.
        self.advertised.clear();
    }

    /// The data arrival speed, packets/s (0 until measurable).
    pub(super) fn recv_speed(&self) -> u32 {
        self.arrivals.recv_speed()
    }

    /// The ACK number: the first missing packet (UDT4 `sendCtrl(2)`).
    fn ack_number(&self) -> SeqNumber {
        self.loss.first().unwrap_or(self.current.next())
    }

    /// True when the sender has not yet confirmed everything we received.
    fn has_unconfirmed(&self) -> bool {
        self.ack_number() != self.last_ack_ack
    }

    /// Releases the receive buffer's memory if it holds nothing.
    pub(super) fn trim(&mut self) {
        self.buffer.trim();
    }

    /// Narrows the receive window (`None`: the whole buffer again). When it
    /// reopens, an ACK goes at once so the sender learns of the space.
    pub(super) fn set_window_limit(&mut self, limit: Option<u32>) {
        self.buffer.set_window_limit(limit);
        if limit.is_none() {
            self.ack_now = true;
        }
    }

    /// True when nothing the peer sent is known to be missing and, if the
    /// peer said where its data ends (`end`, from its shutdown), every
    /// packet before `end` has arrived. A UDT4 peer says nothing, so only
    /// gaps already seen count (a lost tail stays invisible).
    pub(super) fn has_everything_before(&self, end: Option<SeqNumber>) -> bool {
        self.loss.is_empty() && end.is_none_or(|e| !e.is_after(self.current.next()))
    }

    // ----- data -----

    /// A data packet arrived (UDT4 `processData`, udt4-protocol.md §6.2):
    /// stores it, detects a gap before it and counts it for the light ACK.
    /// `arrived` is when the packet reached the host (a kernel receive
    /// timestamp when the driver has one, else the time it was handed
    /// over), for the arrival speed, the packet pairs and the reordering
    /// window; `rtt` is the connection's smoothed round-trip time.
    pub(super) fn on_data(
        &mut self,
        arrived: Instant,
        header: &DataHeader,
        payload: &[u8],
        payload_size: usize,
        rtt: Duration,
    ) -> DataOutcome {
        let seq = header.seq;
        self.arrivals.on_data(arrived, seq);
        if payload.len() > payload_size {
            return DataOutcome::Oversized;
        }
        let dropped_message =
            match self
                .buffer
                .insert(seq, header.position, header.in_order, header.msg, payload)
            {
                Ok(()) => false,
                Err(InsertError::Duplicate) => return DataOutcome::Duplicate,
                Err(InsertError::OutOfWindow) => return DataOutcome::OutOfWindow,
                Err(InsertError::Conflict) => return DataOutcome::Conflict,
                Err(InsertError::Dropped) => true,
            };
        // Gap detection: everything between the largest sequence number
        // seen and this one is missing; report it at once, or once the
        // reordering window passed.
        let mut gap = None;
        if seq.is_after(self.current.next()) {
            let (first, last) = (self.current.next(), seq.prev());
            if self.loss.is_empty() {
                // The first loss after a spell without any: its immediate
                // NAK reports the whole list, so the period starts afresh
                // and its end repeats this loss. (Counted from the timer's
                // last firing, long ago, the period would end at once and
                // report the loss twice within a round trip.)
                self.last_nak_time = arrived;
                self.nak_watermark = seq;
            }
            let added = self.loss.insert(first, last);
            // The early rate reports end at the first gap: a UDT4 sender
            // leaves slow start on its first loss report with the average
            // it has then, and speeds measured over arrivals with holes and
            // late packets in them are noisy (a late packet splits one
            // interval in two), so more of them would only give our own
            // sender's bandwidth cap more chances to read high.
            self.rate_reports = EARLY_RATE_REPORTS;
            let wait = !self.window(rtt).is_zero();
            let remembered = self.remember_gap(RecentGap {
                first,
                last,
                found: arrived,
                reported: !wait,
                revealed_at: header.timestamp,
            });
            gap = Some(Gap {
                first,
                last,
                added,
                report_now: !wait || !remembered,
            });
        }
        if seq.is_after(self.current) {
            self.current = seq;
        } else if self.loss.remove(seq) {
            self.note_late_arrival(seq, arrived, header.timestamp, rtt);
        }
        // A short packet usually ends a message: acknowledge at once.
        if payload.len() < payload_size {
            self.ack_now = true;
        }
        self.packets_since_ack += 1;
        let mut light_ack = None;
        if self.packets_since_ack >= LIGHT_ACK_INTERVAL {
            self.packets_since_ack = 0;
            if self.early_rate_reports() && self.ack_number() != self.last_ack {
                // A full ACK instead, at the next timer poll. (One whose
                // number did not move would wait for RTT + 4·RTTVar; the
                // light ACK below repeats it now, as after the start.)
                self.ack_now = true;
            } else {
                // UDT4 sends no ACK of any kind whose number the sender has
                // confirmed already: while the first missing packet is
                // stuck, it falls silent one round trip after the ACK
                // naming it.
                let ack = self.ack_number();
                if self.stall_light_acks || ack != self.last_ack_ack {
                    light_ack = Some(ack);
                }
            }
        }
        DataOutcome::Accepted {
            dropped_message,
            gap,
            light_ack,
        }
    }

    /// Remembers a new gap (dropping those older than a round trip whose
    /// NAK has left); false when there is no room for one whose NAK waits,
    /// which must then be sent at once.
    fn remember_gap(&mut self, gap: RecentGap) -> bool {
        while self.recent_gaps.len() >= RECENT_GAPS {
            match self.recent_gaps.iter().position(|g| g.reported) {
                Some(i) => {
                    self.recent_gaps.remove(i);
                }
                None => return false,
            }
        }
        if !gap.reported {
            self.held_naks += 1;
        }
        self.recent_gaps.push_back(gap);
        true
    }

    /// The reordering window for a smoothed RTT of `rtt`: never more than
    /// a quarter of it.
    fn window(&self, rtt: Duration) -> Duration {
        self.reorder_window.min(rtt / 4)
    }

    /// A missing packet stamped `sent` by the sender arrived at `arrived`.
    /// Stamped no later than the packet that revealed its gap, it was sent
    /// first and overtaken on the way (a retransmission carries the time it
    /// was resent): the reordering window widens to cover the delay.
    fn note_late_arrival(&mut self, seq: SeqNumber, arrived: Instant, sent: u32, rtt: Duration) {
        // Gaps older than a round trip can no longer tell reordering from
        // a retransmission.
        while let Some(g) = self.recent_gaps.front() {
            if g.reported && arrived.saturating_duration_since(g.found) > rtt {
                self.recent_gaps.pop_front();
            } else {
                break;
            }
        }
        let Some(gap) = self
            .recent_gaps
            .iter()
            .rev()
            .find(|g| !seq.is_before(g.first) && !seq.is_after(g.last))
        else {
            return;
        };
        // Stamped no later than the packet that revealed the gap: sent
        // before it or in the same batch (one stamp for a whole batch),
        // so not resent after the gap was reported. The timestamps wrap
        // after 71 minutes: compare by difference.
        let sent_first = (gap.revealed_at.wrapping_sub(sent) as i32) >= 0;
        if !sent_first {
            return;
        }
        let delay = arrived.saturating_duration_since(gap.found);
        let window = delay + delay / 4;
        if window > self.reorder_window {
            log::debug!("reordering: a packet {delay:?} late, NAKs now wait up to {window:?}");
            self.reorder_window = window;
        }
    }

    /// When the oldest NAK the reordering window holds is due.
    pub(super) fn delayed_nak_deadline(&self, rtt: Duration) -> Option<Instant> {
        if self.held_naks == 0 {
            return None;
        }
        self.recent_gaps
            .iter()
            .find(|g| !g.reported)
            .map(|g| g.found + self.window(rtt))
    }

    /// The NAKs the reordering window held that are due at `now`: what is
    /// still missing of each gap found a window ago (nothing for a gap the
    /// overtaken packets filled meanwhile).
    pub(super) fn take_due_naks(
        &mut self,
        now: Instant,
        rtt: Duration,
    ) -> Vec<(SeqNumber, SeqNumber)> {
        let mut naks = Vec::new();
        if self.held_naks == 0 {
            return naks;
        }
        let window = self.window(rtt);
        for gap in self.recent_gaps.iter_mut() {
            if gap.reported {
                continue;
            }
            if gap.found + window > now {
                break;
            }
            gap.reported = true;
            self.held_naks = self.held_naks.saturating_sub(1);
            naks.extend(self.loss.ranges_within(gap.first, gap.last));
        }
        naks
    }

    /// Stream read; returns how many bytes were copied.
    pub(super) fn read(&mut self, buf: &mut [u8]) -> usize {
        let n = self.buffer.read(buf);
        if n > 0 {
            self.after_read();
        }
        n
    }

    /// Stream read appending at most `max` bytes to `out`; returns how many.
    pub(super) fn read_to_vec(&mut self, out: &mut Vec<u8>, max: usize) -> usize {
        let n = self.buffer.read_to_vec(out, max);
        if n > 0 {
            self.after_read();
        }
        n
    }

    /// See [`RecvBuffer::lend_sink`].
    pub(super) fn lend_sink(&mut self, buf: Vec<u8>, room: usize) -> Result<(), Vec<u8>> {
        self.buffer.lend_sink(buf, room)
    }

    /// See [`RecvBuffer::take_sink`].
    pub(super) fn take_sink(&mut self) -> Option<Vec<u8>> {
        self.buffer.take_sink()
    }

    /// See [`RecvBuffer::take_reader_due`].
    pub(super) fn take_reader_due(&mut self) -> bool {
        self.buffer.take_reader_due()
    }

    /// See [`RecvBuffer::set_read_want`].
    pub(super) fn set_read_want(&mut self, bytes: usize) {
        self.buffer.set_read_want(bytes);
    }

    /// Reads one whole message into `out`; returns false when none is ready.
    pub(super) fn read_message(&mut self, out: &mut Vec<u8>) -> bool {
        let read = self.buffer.read_message(out);
        if read {
            self.after_read();
        }
        read
    }

    /// After the application consumed data: reopen the window promptly if
    /// the last advertisement was nearly closed, instead of waiting for the
    /// sender's EXP timer (a divergence that a UDT4 sender simply sees as
    /// an earlier ACK).
    fn after_read(&mut self) {
        let avail = self.buffer.available_packets();
        if self.last_advertised < WINDOW_UPDATE_THRESHOLD && avail >= WINDOW_UPDATE_THRESHOLD {
            self.ack_now = true;
        }
    }

    /// Message drop request (UDT4 `processCtrl` case 7, §11), bounded: the
    /// range is clipped to the receive window of `window` packets before
    /// anything is touched. Returns false for an impossible range, which
    /// changes nothing.
    pub(super) fn on_drop_request(
        &mut self,
        msg: MsgNumber,
        first: SeqNumber,
        last: SeqNumber,
        window: u32,
    ) -> bool {
        let window_start = self.buffer.contiguous_end();
        let window_end = window_start.add(window.saturating_sub(1));
        if first.is_after(last)
            || !first.is_comparable(self.current)
            || !last.is_comparable(self.current)
            || first.is_after(window_end)
            || last.is_before(window_start)
        {
            return false;
        }
        // What was already received in order cannot be dropped any more.
        let first = first.max_of(window_start);
        let last = last.min_of(window_end);
        self.buffer.drop_message(msg, first, last);
        self.loss.remove_range(first, last);
        // The sender skipped the rest of the message: do not wait for it.
        if !first.is_after(self.current.next()) && last.is_after(self.current) {
            self.current = last;
        }
        true
    }

    // ----- ACK -----

    /// Whether ACKs still carry the rates at every self-clock point
    /// ([`EARLY_RATE_REPORTS`]).
    fn early_rate_reports(&self) -> bool {
        self.rate_reports < EARLY_RATE_REPORTS
    }

    /// When the next full or medium ACK is due, or `None` while the sender
    /// has confirmed everything. `period` is the ACK period (one SYN, or
    /// shorter if the congestion controller asks); `now` the latest time seen.
    pub(super) fn ack_deadline(
        &self,
        now: Instant,
        rtt: &RttEstimator,
        period: Duration,
    ) -> Option<Instant> {
        if self.ack_now {
            return Some(self.last_ack_time.min(now));
        }
        if !self.has_unconfirmed() {
            return None;
        }
        if self.ack_number() == self.last_ack {
            // Sent already and not confirmed: UDT4 repeats a full ACK after
            // RTT + 4·RTTVar (udt4-protocol.md §6.4).
            Some(self.last_ack_time + resend_after(rtt).max(period))
        } else {
            Some(self.last_ack_time + period)
        }
    }

    /// The ACK timer fired (UDT4 `sendCtrl(2)`, §6.4): builds the full or
    /// medium ACK to send, if one is due, and records it for its ACK2.
    pub(super) fn build_ack(&mut self, now: Instant, rtt: &RttEstimator) -> Option<Ack> {
        let window_update = self.ack_now && self.last_advertised < WINDOW_UPDATE_THRESHOLD;
        self.ack_now = false;
        let ack = self.ack_number();
        if ack == self.last_ack_ack && !window_update {
            return None;
        }
        if ack.is_after(self.last_ack) {
            self.last_ack = ack;
        } else if ack == self.last_ack {
            if !window_update && now < self.last_ack_time + resend_after(rtt) {
                return None;
            }
        } else {
            return None;
        }
        let ack_seq = self.next_ack_seq;
        self.next_ack_seq = ack_seq.next();
        let full = now.saturating_duration_since(self.last_full_ack_time) >= SYN_INTERVAL
            || self.early_rate_reports();
        let available = self.buffer.available_packets().max(MIN_ADVERTISED_WINDOW);
        self.last_advertised = available;
        self.advertised.record(now, ack, available);
        let rates = full.then(|| AckRates {
            recv_rate: self.arrivals.recv_speed(),
            link_capacity: self.arrivals.link_capacity(),
        });
        self.ack_window.store(ack_seq, ack, now);
        self.last_ack_time = now;
        if full {
            self.last_full_ack_time = now;
            self.rate_reports = self.rate_reports.saturating_add(1);
        }
        self.packets_since_ack = 0;
        Some(Ack {
            ack_seq,
            ack,
            rtt_us: rtt.rtt_us(),
            rtt_var_us: rtt.rtt_var_us(),
            available_buffer: available,
            rates,
        })
    }

    /// ACK2 (§6.6): the sender confirmed the ACK numbered `ack_seq`. Returns
    /// the round-trip time since that ACK left, if it is one we are waiting
    /// for.
    pub(super) fn on_ack2(&mut self, now: Instant, ack_seq: AckSeqNumber) -> Option<Duration> {
        let (ack, rtt) = self.ack_window.acknowledge(ack_seq, now)?;
        if ack.is_after(self.last_ack_ack) {
            self.last_ack_ack = ack;
        }
        Some(rtt)
    }

    // ----- NAK -----

    /// When the periodic NAK is due, or `None` while nothing is missing.
    pub(super) fn nak_deadline(&self, rtt: &RttEstimator) -> Option<Instant> {
        if self.loss.is_empty() {
            None
        } else {
            Some(self.last_nak_time + self.nak_interval(rtt))
        }
    }

    /// UDT4's NAK interval formula (computed but unused in 4.11):
    /// RTT + 4·RTTVar plus the time to receive the lost packets at the
    /// current arrival rate.
    fn nak_interval(&self, rtt: &RttEstimator) -> Duration {
        let speed = self.arrivals.recv_speed();
        let drain = if speed > 0 {
            Duration::from_micros(u64::from(self.loss.len()) * 1_000_000 / u64::from(speed))
        } else {
            Duration::ZERO
        };
        (resend_after(rtt) + drain.min(MAX_NAK_DRAIN)).max(MIN_NAK_INTERVAL)
    }

    /// The periodic NAK timer fired: returns true when a NAK should be
    /// queued, of the losses found before the previous firing (none is
    /// queued yet and there are such losses).
    ///
    /// Losses found since then were reported by their immediate NAK less
    /// than a period ago. Repeating them too would report a loss twice
    /// within a round trip, and a UDT4 sender counts every NAK of a
    /// congestion period towards a further rate decrease (`CUDTCC::onLoss`)
    /// and sends the packet again for each.
    pub(super) fn on_nak_timer(&mut self, now: Instant) -> bool {
        self.last_nak_time = now;
        let upto = std::mem::replace(&mut self.nak_watermark, self.current);
        let due = self.loss.first().is_some_and(|first| !first.is_after(upto));
        if self.nak_list_queued.is_none() && due {
            self.nak_list_queued = Some(upto);
            return true;
        }
        false
    }

    /// The periodic NAK [`on_nak_timer`](Self::on_nak_timer) asked for
    /// could not be queued: the next period asks again.
    pub(super) fn nak_list_dropped(&mut self) {
        self.nak_list_queued = None;
    }

    /// Encodes the queued periodic NAK: as much of the losses it is due for
    /// as fits in `max_words` words. Returns false, with `buf` to be
    /// discarded, when none of them is still missing (the retransmissions
    /// arrived meanwhile): an empty NAK must not be sent, since UDT4 reads
    /// its first entry regardless.
    pub(super) fn encode_nak_list(
        &mut self,
        timestamp: u32,
        dest: SocketId,
        max_words: usize,
        buf: &mut Vec<u8>,
    ) -> bool {
        let Some(upto) = self.nak_list_queued.take() else {
            return false;
        };
        let due = self
            .loss
            .ranges()
            .take_while(|&(first, _)| !first.is_after(upto))
            .map(|(first, last)| (first, last.min_of(upto)));
        packet::encode_nak(timestamp, dest, due, max_words, buf) > 0
    }
}

/// How long an unconfirmed ACK or a reported loss waits before it is sent
/// again: RTT + 4·RTTVar.
fn resend_after(rtt: &RttEstimator) -> Duration {
    rtt.rtt() + 4 * rtt.rtt_var()
}
