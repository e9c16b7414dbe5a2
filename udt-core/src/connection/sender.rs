//! The sending half of a connection: send buffer, sender loss list, flow
//! and congestion windows, and pacing (UDT4 `packData` and the sender side
//! of `processCtrl` and `checkTimers`).
//!
//! The sender reacts to ACKs, light ACKs and NAKs, detects losses on a
//! timeout and packs the next data packet; it reports what happened so the
//! connection can feed its RTT estimator, congestion controller and
//! counters, which both halves share.

use std::time::{Duration, Instant};

use crate::cc::{WindowBasis, INITIAL_CONGESTION_WINDOW};
use crate::estimate::RateSmoother;
use crate::loss_list::LossList;
use crate::packet::{self, Ack, DataHeader, LossRanges};
use crate::send_buffer::{Block, SendBuffer, SendBufferError};
use crate::seq::{AckSeqNumber, MsgNumber, SeqNumber, SocketId};

/// How far behind schedule the pacer may fall and still catch up with a
/// burst. UDT4's Debian build sends "immediately when behind by at least one
/// interval" (udt4-protocol.md §6.1); an unbounded catch-up would turn a
/// stalled driver into a line-rate burst, so the credit is capped.
pub(super) const BURST_CREDIT: Duration = Duration::from_millis(1);

/// Sender-side state.
#[derive(Debug)]
pub(super) struct Sender {
    buffer: SendBuffer,
    loss: LossList,
    /// Everything before this was acknowledged by a full, medium or light
    /// ACK (UDT4 `m_iSndLastAck`); the flow window counts from here.
    last_ack: SeqNumber,
    /// The ACK sequence number of the newest full ACK taken for the flow
    /// window and the peer's free space (`None` before the first).
    last_ack_seq: Option<AckSeqNumber>,
    /// Everything before this was released from the buffer (UDT4 `m_iSndLastDataAck`).
    last_data_ack: SeqNumber,
    /// The largest sequence number sent (UDT4 `m_iSndCurrSeqNo`).
    current: SeqNumber,
    /// Packets the receiver can still take, from its last ACK.
    flow_window: u32,
    /// Congestion window from the controller, packets.
    cwnd: f64,
    /// What the congestion window counts.
    window_basis: WindowBasis,
    /// Packets beyond `last_ack` that NAKs proved delivered (the
    /// connection's delivery tracker keeps the count).
    sacked: u32,
    /// Inter-packet period from the controller (after the bandwidth cap).
    period: Duration,
    /// Packets that may leave back to back per pacing slot (the
    /// controller's [`send_quantum`](crate::cc::CongestionControl::send_quantum)).
    quantum: u32,
    /// Packets sent since the slot last advanced.
    burst: u32,
    /// When the next data packet may leave.
    next_slot: Instant,
    /// The last [`pack`](Self::pack) left nothing it could send (the
    /// windows were full, or the application had written nothing more):
    /// the time since then is no lateness of the driver's.
    idle: bool,
    /// Packets that may then leave back to back (the controller's
    /// [`idle_burst`](crate::cc::CongestionControl::idle_burst)); `None`:
    /// the catch-up of a late driver, up to [`BURST_CREDIT`], as UDT4.
    idle_burst: Option<u32>,
    /// The first data packet is held back until the peer is heard from or
    /// the hold expires (see `FIRST_DATA_HOLD` in the connection).
    first_data_hold: bool,
    /// Smoothed receive rate and link capacity reported in full ACKs.
    rates: RateSmoother,
    /// Reports of the receiver missing data that a full ACK already
    /// released (see [`Sender::is_desynchronized`]).
    behind: Option<Behind>,
    /// What the peer's ACKs say about its application's reading.
    peer_reader: PeerReader,
}

/// The peer's receive buffer as its full and medium ACKs report it: how
/// much its application has not read yet (UDT4 `getAvailBufSize`, §6.4).
///
/// A UDT4 receiver discards what it acknowledged but its application has
/// not read when our shutdown arrives (docs/interop.md), so an orderly close
/// waits until the peer reports its buffer drained. "Drained" is the largest
/// free space an empty receiver reports: an empty UDT4 receiver (and ours)
/// advertises `buffer − 1` packets, and its handshake flow window is
/// `min(buffer, flight flag size)`, so `handshake window − 1` is a lower
/// bound; so is the largest value ever reported (a UDT4 peer whose flight
/// flag size was set below its buffer advertises more than its handshake
/// window once its reader catches up). The target is the larger of the two.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct PeerReader {
    /// The flow window of the peer's handshake.
    handshake_window: u32,
    /// The largest available-buffer value an ACK that released data carried.
    max_available: u32,
    /// The available buffer of the newest ACK (the one that set the flow
    /// window); until the first ACK, the handshake window (nothing sent yet,
    /// nothing unread).
    available: u32,
}

impl PeerReader {
    fn new(handshake_window: u32) -> Self {
        PeerReader {
            handshake_window,
            max_available: 0,
            available: handshake_window,
        }
    }

    /// The free space that means "the application has read everything".
    fn drained_target(&self) -> u32 {
        self.handshake_window
            .saturating_sub(1)
            .max(self.max_available)
    }

    /// Packets the peer's application had not read, by its newest ACK.
    fn unread(&self) -> u32 {
        self.drained_target().saturating_sub(self.available)
    }
}

/// A run of reports that the receiver misses released data.
#[derive(Clone, Copy, Debug)]
struct Behind {
    /// The first report of the run.
    since: Instant,
    /// The latest report.
    last: Instant,
    /// Reports in the run.
    count: u32,
}

/// How long the receiver may keep reporting released data as missing
/// before the connection is declared broken. An honest receiver's ACK
/// number never decreases, so only reordering on the return path produces
/// such reports, and the next ACK (one SYN later) clears them.
const DESYNC_LIMIT: Duration = Duration::from_secs(2);

/// Reports further apart than this start a new run: a receiver that really
/// misses released data repeats its NAK at least every RTT + 1 s, while a
/// lone late NAK (and nothing after it, at the end of a transfer) must not
/// count against a later one.
const DESYNC_REPORT_GAP: Duration = Duration::from_secs(3);

/// Reports a run needs before the connection is declared broken.
const DESYNC_REPORTS: u32 = 3;

/// What a full or medium ACK did.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum AckOutcome {
    /// It acknowledges data never sent, or is not comparable with what was:
    /// dropped without effect.
    Invalid,
    /// Plausible, but releases nothing new (a repeated or reordered ACK): at
    /// most the flow window moved. It still deserves an ACK2.
    Repeated,
    /// It released data from the send buffer: the RTT it carries and the
    /// congestion controller's `on_ack` apply.
    Advanced,
}

/// What a NAK did.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(super) struct NakOutcome {
    /// Malformed or impossible entries, ignored.
    pub(super) invalid: u64,
    /// Sequence numbers newly queued for retransmission.
    pub(super) added: u32,
    /// Loss events among them: runs of consecutive numbers newly queued.
    pub(super) events: u32,
    /// The first newly reported loss, if the NAK brought news: only then is
    /// it a congestion signal.
    pub(super) first_lost: Option<SeqNumber>,
}

/// What keeps the sender from sending (see
/// [`SendLimits`](crate::stats::SendLimits)).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum SendLimit {
    App,
    FlowWindow,
    CongestionWindow,
    /// Waiting for the pacing slot.
    Pacing,
    /// The slot has passed: the driver has not asked yet.
    Driver,
}

/// What [`Sender::pack`] produced.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Packed {
    /// A first transmission of `seq` with `len` payload bytes is in the buffer.
    New { seq: SeqNumber, len: u64 },
    /// A retransmission of `seq` with `len` payload bytes is in the buffer.
    Retransmit { seq: SeqNumber, len: u64 },
    /// Nothing was written: the message holding a packet due for
    /// retransmission outlived its TTL and was skipped. The receiver must be
    /// told to drop `[first, last]` (§11); call `pack` again for a packet.
    Expired {
        msg: MsgNumber,
        first: SeqNumber,
        last: SeqNumber,
    },
}

impl Sender {
    /// A sender whose first packet will be `isn`, with a buffer of
    /// `capacity` packets of `payload_size` bytes, allowed `flow_window`
    /// packets in flight by the handshake.
    pub(super) fn new(
        capacity: u32,
        payload_size: usize,
        isn: SeqNumber,
        flow_window: u32,
        now: Instant,
    ) -> Self {
        Sender {
            buffer: SendBuffer::new(capacity, payload_size, isn),
            loss: LossList::new(capacity),
            last_ack: isn,
            last_ack_seq: None,
            last_data_ack: isn,
            current: isn.prev(),
            flow_window,
            cwnd: INITIAL_CONGESTION_WINDOW,
            window_basis: WindowBasis::Sent,
            sacked: 0,
            period: Duration::from_micros(1),
            next_slot: now,
            quantum: 1,
            burst: 0,
            first_data_hold: false,
            idle: false,
            idle_burst: None,
            rates: RateSmoother::new(),
            behind: None,
            peer_reader: PeerReader::new(flow_window),
        }
    }

    // ----- queries -----

    /// The send buffer, for its fill level.
    pub(super) fn buffer(&self) -> &SendBuffer {
        &self.buffer
    }

    /// The receive and capacity rates the peer reported.
    pub(super) fn rates(&self) -> &RateSmoother {
        &self.rates
    }

    /// The largest sequence number sent.
    pub(super) fn current(&self) -> SeqNumber {
        self.current
    }

    /// Packets the receiver can still take.
    pub(super) fn flow_window(&self) -> u32 {
        self.flow_window
    }

    /// The congestion window in force, packets.
    pub(super) fn cwnd(&self) -> f64 {
        self.cwnd
    }

    /// The inter-packet period in force.
    pub(super) fn period(&self) -> Duration {
        self.period
    }

    /// When the next data packet may leave.
    pub(super) fn next_slot(&self) -> Instant {
        self.next_slot
    }

    /// Packets sent and not yet acknowledged.
    pub(super) fn in_flight(&self) -> u32 {
        self.current.next().offset_from(self.last_ack).max(0) as u32
    }

    /// Packets in flight: sent and not yet acknowledged, less those known
    /// lost and not yet retransmitted and those NAKs proved delivered.
    pub(super) fn pipe(&self) -> u32 {
        self.in_flight()
            .saturating_sub(self.loss.len())
            .saturating_sub(self.sacked)
    }

    /// True when what is sent and unacknowledged fills at least half the
    /// send buffer: the buffer, not the application, limits what may be in
    /// flight, so a larger one can raise the rate.
    pub(super) fn is_buffer_limited(&self) -> bool {
        self.unacked() >= self.buffer.capacity() / 2
    }

    /// True when the peer's flow window, not the congestion window or the
    /// application, stops the next new packet.
    pub(super) fn is_flow_window_limited(&self) -> bool {
        self.buffer.next_unsent().is_some() && self.in_flight() >= self.flow_window.max(1)
    }

    /// Grows the send buffer (and the loss list's span with it) to
    /// `packets`; never shrinks.
    pub(super) fn grow_buffer(&mut self, packets: u32) {
        self.buffer.grow(packets);
        self.loss.grow(packets);
    }

    /// Sets the send buffer's capacity (see [`SendBuffer::resize`]); the
    /// loss list keeps its span, which only bounds it. Returns the capacity.
    pub(super) fn resize_buffer(&mut self, packets: u32) -> u32 {
        self.buffer.resize(packets);
        let capacity = self.buffer.capacity();
        self.loss.grow(capacity);
        capacity
    }

    /// Records how many packets beyond the last ACK are known delivered.
    pub(super) fn set_sacked(&mut self, sacked: u32) {
        self.sacked = sacked;
    }

    /// Queues `seq` for retransmission again, the sender having concluded
    /// on its own that it was lost; false when it is not outstanding
    /// (acknowledged, or never sent) or is queued already.
    pub(super) fn requeue(&mut self, seq: SeqNumber) -> bool {
        if self.unacked() == 0
            || seq.is_before(self.last_data_ack)
            || seq.is_after(self.current)
            || self.loss.contains(seq)
        {
            return false;
        }
        self.loss.insert(seq, seq) > 0
    }

    /// True when `seq` waits in the loss list for retransmission.
    pub(super) fn is_queued(&self, seq: SeqNumber) -> bool {
        self.loss.contains(seq)
    }

    /// True when the application has written nothing that is still unsent
    /// and no retransmission is pending: the flow is application-limited.
    pub(super) fn is_idle(&self) -> bool {
        self.buffer.next_unsent().is_none() && self.loss.is_empty()
    }

    /// Packets sent and not yet released from the buffer.
    pub(super) fn unacked(&self) -> u32 {
        self.current.next().offset_from(self.last_data_ack).max(0) as u32
    }

    /// How many packets may be in flight (UDT4: `min(flow window, (int)cwnd)`).
    fn window(&self) -> u32 {
        let cwnd = if self.cwnd.is_finite() && self.cwnd > 0.0 {
            self.cwnd as u32
        } else {
            u32::MAX
        };
        self.flow_window.min(cwnd).max(1)
    }

    /// True when a new packet could go out now if the pacer allows.
    fn may_send_new(&self) -> bool {
        if self.buffer.next_unsent().is_none() {
            return false;
        }
        match self.window_basis {
            WindowBasis::Sent => self.in_flight() < self.window(),
            WindowBasis::InFlight => {
                let cwnd = if self.cwnd.is_finite() && self.cwnd > 0.0 {
                    (self.cwnd as u32).max(1)
                } else {
                    u32::MAX
                };
                self.in_flight() < self.flow_window.max(1) && self.pipe() < cwnd
            }
        }
    }

    /// What keeps the sender from sending at `now` (see
    /// [`SendLimits`](crate::stats::SendLimits)).
    pub(super) fn limit(&self, now: Instant) -> SendLimit {
        if self.has_work() {
            if now < self.next_slot {
                SendLimit::Pacing
            } else {
                SendLimit::Driver
            }
        } else if self.buffer.next_unsent().is_none() {
            SendLimit::App
        } else if self.in_flight() >= self.flow_window.max(1) {
            SendLimit::FlowWindow
        } else {
            SendLimit::CongestionWindow
        }
    }

    /// True when the pacer has anything to send.
    pub(super) fn has_work(&self) -> bool {
        !self.loss.is_empty() || self.may_send_new()
    }

    /// Packets the peer's application had not read yet by the peer's newest
    /// full or medium ACK (0 before any ACK, or once it reported its
    /// receive buffer drained).
    pub(super) fn peer_unread(&self) -> u32 {
        self.peer_reader.unread()
    }

    /// True when the peer acknowledged everything written and its newest
    /// ACK reported its receive buffer drained: its application has read
    /// everything, so a shutdown now loses nothing.
    pub(super) fn is_peer_drained(&self) -> bool {
        self.buffer.is_empty() && self.peer_reader.unread() == 0
    }

    /// True when the ACK just processed should not be confirmed with an
    /// ACK2: it acknowledged everything written, but the peer's application
    /// has not read it all. A UDT4 receiver stops sending ACKs once its
    /// newest one is confirmed (§6.4), so withholding this ACK2 is what
    /// keeps its ACKs, and their available-buffer field, coming until the
    /// reader has caught up. Any later ACK (a repeat reporting more free
    /// space, or one for new data) is answered as usual.
    pub(super) fn withholds_ack2(&self) -> bool {
        self.buffer.is_empty() && self.peer_reader.unread() > 0
    }

    // ----- application data -----

    /// Queues stream data; returns how many bytes were accepted.
    pub(super) fn write_stream(&mut self, data: &[u8], now: Instant) -> usize {
        self.buffer.write_stream(data, now)
    }

    /// Queues one whole message.
    ///
    /// # Errors
    /// As [`SendBuffer::write_message`].
    pub(super) fn write_message(
        &mut self,
        msg: &[u8],
        ttl: Option<Duration>,
        in_order: bool,
        now: Instant,
    ) -> Result<(), SendBufferError> {
        self.buffer.write_message(msg, ttl, in_order, now)
    }

    // ----- pacing -----

    /// Installs the controller's period, send quantum, burst after a wait
    /// and window.
    pub(super) fn set_pacing(
        &mut self,
        period: Duration,
        (quantum, idle_burst): (u32, Option<u32>),
        cwnd: f64,
        basis: WindowBasis,
    ) {
        self.period = period;
        self.quantum = quantum.max(1);
        self.idle_burst = idle_burst;
        self.cwnd = cwnd;
        self.window_basis = basis;
    }

    /// Holds the first data packet back until `until`.
    pub(super) fn hold_first_data(&mut self, until: Instant) {
        self.first_data_hold = true;
        self.next_slot = until;
    }

    /// Ends the first-data hold early: the peer proved it is ready.
    pub(super) fn release_hold(&mut self, now: Instant) {
        if self.first_data_hold {
            self.first_data_hold = false;
            self.next_slot = self.next_slot.min(now);
        }
    }

    /// Moves the pacing slot past the packet just sent, once a quantum of
    /// packets has used it: then by a period per packet of the quantum, so
    /// the average rate is the period's.
    fn advance_slot(&mut self, now: Instant) {
        self.burst += 1;
        if self.burst < self.quantum {
            return;
        }
        let next = self.next_slot + self.period * std::mem::take(&mut self.burst);
        let floor = now.checked_sub(BURST_CREDIT).unwrap_or(now);
        self.next_slot = next.max(floor);
    }

    // ----- feedback from the receiver -----

    /// Light ACK: moves the flow window, releases nothing (§6.5). Returns
    /// false for an ACK beyond what was sent, which changes nothing.
    ///
    /// Unlike UDT4, a light ACK never decides what is retransmitted: NAKs
    /// and timeouts count from the last *full* ACK, so one forged light ACK
    /// cannot make the sender ignore the holes below it (issue 10 item 3).
    pub(super) fn on_light_ack(&mut self, ack: SeqNumber) -> bool {
        if ack.is_after(self.current.next()) || !ack.is_comparable(self.current) {
            return false;
        }
        if !ack.is_before(self.last_ack) {
            let advanced = ack.offset_from(self.last_ack) as u32;
            self.flow_window = self.flow_window.saturating_sub(advanced);
            self.last_ack = ack;
        }
        true
    }

    /// Full or medium ACK (UDT4 `processCtrl` case 2, §6.5): takes the
    /// advertised window and releases the acknowledged data and losses.
    /// Only what was sent and not yet released can be acknowledged.
    pub(super) fn on_ack(&mut self, now: Instant, ack: &Ack) -> AckOutcome {
        let seq = ack.ack;
        if seq.is_after(self.current.next()) || !seq.is_comparable(self.current) {
            // UDT4 breaks the connection here; a forged or corrupted ACK
            // must not kill a healthy connection, so we drop the packet.
            return AckOutcome::Invalid;
        }
        self.note_receiver_position(now, seq);
        // Of ACKs naming the same number, an older one (by its ACK
        // sequence number) says less than the newest: the network, or a
        // receiver sending ACKs from two threads as ours does, may deliver
        // it last, and its stale free space held a close until its linger
        // time (1000 connections from an endpoint with two sockets: a close
        // lingering for a minute on "3 packets unread" its peer had long
        // read). While the number stands still nothing new arrives in
        // order, so the peer's free space only grows as its reader reads:
        // more room is taken whatever its sequence number, so that one
        // forged sequence number far ahead cannot freeze it either.
        let advanced = seq.is_after(self.last_ack);
        let newer = self
            .last_ack_seq
            .is_none_or(|s| ack_seq_is_newer(ack.ack_seq, s));
        let more_room = ack.available_buffer >= self.peer_reader.available;
        if !seq.is_before(self.last_ack) && (advanced || newer || more_room) {
            self.flow_window = ack.available_buffer;
            self.peer_reader.available = ack.available_buffer;
            self.last_ack = seq;
            if advanced || newer {
                self.last_ack_seq = Some(ack.ack_seq);
            }
        }
        if let Some(rates) = ack.rates {
            // The raw arrival speed counts even when the ACK repeats an
            // old number (a hole stalls it); the UDT4 smoothing below does
            // not see it.
            self.rates.note_latest(rates.recv_rate, now);
        }
        if !seq.is_after(self.last_data_ack) {
            // A repeated ACK: UDT4 stops here (no RTT or rate update).
            return AckOutcome::Repeated;
        }
        self.buffer.ack(seq);
        self.loss.remove_before(seq);
        self.last_data_ack = seq;
        // Only an ACK that released data raises the drain target: it is the
        // receiver's real progress, whereas a stray or forged repeat (which
        // any plausible old ACK number makes) could set an unreachable
        // target and hold every close until its linger time.
        self.peer_reader.max_available = self.peer_reader.max_available.max(ack.available_buffer);
        if let Some(rates) = ack.rates {
            self.rates.update(rates.recv_rate, rates.link_capacity);
        }
        AckOutcome::Advanced
    }

    /// NAK (UDT4 `processCtrl` case 3, §6.3): queues the reported losses
    /// for retransmission, except the numbers for which `stale(seq)` says
    /// the report predates their latest retransmission.
    pub(super) fn on_nak(
        &mut self,
        now: Instant,
        ranges: &LossRanges<'_>,
        stale: impl Fn(SeqNumber) -> bool,
    ) -> NakOutcome {
        let mut out = NakOutcome::default();
        for item in ranges.iter() {
            let Ok((first, last)) = item else {
                out.invalid += 1;
                break;
            };
            // Reversed ranges and anything beyond what was sent are
            // impossible from a correct receiver; UDT4 breaks the
            // connection, we ignore the entry.
            if first.is_after(last)
                || last.is_after(self.current)
                || !last.is_comparable(self.current)
            {
                out.invalid += 1;
                continue;
            }
            if first.is_before(self.last_data_ack) {
                // Released already: a late NAK, or the receiver never got
                // what a (forged) full ACK released.
                self.note_behind(now);
            }
            if last.is_before(self.last_data_ack) {
                continue;
            }
            let first = first.max_of(self.last_data_ack);
            // Our periodic NAK repeats the whole loss list; a number
            // retransmitted less than a round trip ago is still on its way,
            // and queueing it again would send it twice.
            let mut run: Option<SeqNumber> = None;
            let mut seq = first;
            loop {
                if stale(seq) {
                    if let Some(start) = run.take() {
                        self.queue_lost(start, seq.prev(), &mut out);
                    }
                } else if run.is_none() {
                    run = Some(seq);
                }
                if seq == last {
                    break;
                }
                seq = seq.next();
            }
            if let Some(start) = run {
                self.queue_lost(start, last, &mut out);
            }
        }
        out
    }

    /// Queues `[first, last]` for retransmission and counts what was news.
    fn queue_lost(&mut self, first: SeqNumber, last: SeqNumber, out: &mut NakOutcome) {
        let added = self.loss.insert(first, last);
        out.added += added;
        if added > 0 {
            out.events += 1;
        }
        // Only news is a congestion signal: our periodic NAK repeats
        // losses already reported, which must not cut the rate again.
        if added > 0 && out.first_lost.is_none() {
            out.first_lost = Some(first);
        }
    }

    /// The EXP timer expired (UDT4 `checkTimers`, §7). With data
    /// outstanding and no loss known, everything unacknowledged is presumed
    /// lost; the retransmission may leave at once. Returns whether data was
    /// outstanding (a timeout for the congestion controller).
    pub(super) fn on_timeout(&mut self, now: Instant) -> bool {
        if self.unacked() == 0 {
            return false;
        }
        if self.loss.is_empty() {
            // Nothing known lost, yet nothing acknowledged: resend all that
            // is unacknowledged.
            // From the last full ACK: a light ACK (forgeable, and never
            // proof that the packets below it stayed received) does not
            // narrow the retransmission.
            let first = self.last_data_ack;
            if !first.is_after(self.current) {
                self.loss.insert(first, self.current);
            }
        }
        // Send the retransmission now rather than at a stale slot.
        self.next_slot = self.next_slot.min(now);
        true
    }

    /// Releases the send buffer's memory if it holds nothing.
    pub(super) fn trim(&mut self) {
        self.buffer.trim();
    }

    /// Tracks whether the receiver's ACK (`reported`, its first missing
    /// packet) is behind what a full ACK released.
    fn note_receiver_position(&mut self, now: Instant, reported: SeqNumber) {
        if reported.is_before(self.last_data_ack) {
            self.note_behind(now);
        } else {
            self.behind = None;
        }
    }

    /// One more report that the receiver misses released data.
    fn note_behind(&mut self, now: Instant) {
        self.behind = Some(match self.behind {
            Some(b) if now.saturating_duration_since(b.last) <= DESYNC_REPORT_GAP => Behind {
                last: now,
                count: b.count.saturating_add(1),
                ..b
            },
            _ => Behind {
                since: now,
                last: now,
                count: 1,
            },
        });
    }

    /// True when the receiver has kept reporting released data as missing
    /// for longer than any reordering explains: a forged (or corrupted)
    /// full ACK released data the receiver never got. It can never be
    /// resent, so the connection must end with an error rather than hang
    /// or deliver a stream with a hole.
    pub(super) fn is_desynchronized(&self, now: Instant) -> bool {
        self.behind.is_some_and(|b| {
            b.count >= DESYNC_REPORTS
                && now.saturating_duration_since(b.last) <= DESYNC_REPORT_GAP
                && b.last.saturating_duration_since(b.since) > DESYNC_LIMIT
        })
    }

    // ----- the paced data path -----

    /// Writes the next data packet into `buf` if the pacer allows at `now`:
    /// retransmissions first, then new data within the windows (UDT4
    /// `packData`, §6.1). Without `inline` only its header is written: the
    /// payload stays in the send buffer for the driver to gather.
    pub(super) fn pack(
        &mut self,
        now: Instant,
        timestamp: u32,
        dest: SocketId,
        buf: &mut Vec<u8>,
        inline: bool,
    ) -> Option<Packed> {
        if now < self.next_slot {
            return None;
        }
        if let (true, Some(burst)) = (self.idle, self.idle_burst) {
            let floor = now.checked_sub(self.period * burst).unwrap_or(now);
            self.next_slot = self.next_slot.max(floor);
        }
        let packed = self.pack_due(now, timestamp, dest, buf, inline);
        // Drivers stop asking once nothing is left to send, so the packet
        // that filled the window (or emptied the buffer) is the mark.
        self.idle = packed.is_none() || !self.has_work();
        packed
    }

    /// [`pack`](Self::pack) once the pacer allows.
    fn pack_due(
        &mut self,
        now: Instant,
        timestamp: u32,
        dest: SocketId,
        buf: &mut Vec<u8>,
        inline: bool,
    ) -> Option<Packed> {
        while let Some(seq) = self.loss.pop_first() {
            if seq.is_before(self.last_data_ack) {
                continue;
            }
            if self.buffer.is_expired(seq, now) {
                match self.skip_expired_message(seq) {
                    Some(expired) => return Some(expired),
                    None => continue,
                }
            }
            let Some(block) = self.buffer.block(seq) else {
                continue;
            };
            let len = encode_block(&block, timestamp, dest, buf, inline);
            self.advance_slot(now);
            return Some(Packed::Retransmit { seq, len });
        }
        if !self.may_send_new() {
            return None;
        }
        // The hold (if any) has expired: it must not pull the pacing slot
        // back later.
        self.first_data_hold = false;
        let block = self.buffer.take_next()?;
        let seq = block.seq;
        let len = encode_block(&block, timestamp, dest, buf, inline);
        self.current = seq;
        // Packet pair: 16n and 16n+1 leave back to back so the receiver
        // can estimate the link capacity (§6.1 step 4, §8.3).
        if seq.value() & 0xF != 0 {
            self.advance_slot(now);
        }
        Some(Packed::New { seq, len })
    }

    /// The message holding `seq` outlived its TTL: skips what is left of it
    /// and returns the range the receiver must drop (§11). Unlike UDT4 the
    /// range ends at the message's real last packet (no off-by-one).
    fn skip_expired_message(&mut self, seq: SeqNumber) -> Option<Packed> {
        let (msg, first, _) = self.buffer.message_span(seq)?;
        let last = self.buffer.skip_message(seq);
        if last.is_after(self.current) {
            self.current = last;
        }
        self.loss.remove_range(first, last);
        Some(Packed::Expired { msg, first, last })
    }
}

/// Encodes one send-buffer block as a data packet (only its header unless
/// `inline`); returns its payload length.
fn encode_block(
    block: &Block<'_>,
    timestamp: u32,
    dest: SocketId,
    buf: &mut Vec<u8>,
    inline: bool,
) -> u64 {
    let header = DataHeader {
        seq: block.seq,
        position: block.position,
        in_order: block.in_order,
        msg: block.msg,
        timestamp,
        dest,
    };
    if inline {
        packet::encode_data(&header, block.payload, buf);
    } else {
        packet::encode_data_header(&header, buf);
    }
    block.payload.len() as u64
}

/// True when ACK sequence number `a` was sent after `b`: they count up by
/// one per ACK and wrap at 2^31, so "after" is less than half the circle
/// ahead.
fn ack_seq_is_newer(a: AckSeqNumber, b: AckSeqNumber) -> bool {
    let ahead = a.value().wrapping_sub(b.value()) & SeqNumber::MAX;
    ahead != 0 && ahead < (SeqNumber::MAX >> 1) + 1
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::time::test_epoch;

    /// A sender whose window of 100 packets filled at its pacing of one
    /// packet per 5 µs, then waited 10 ms for the ACK that opens it again;
    /// returns how many packets leave at that ACK's instant.
    fn burst_after_a_wait(idle_burst: Option<u32>) -> usize {
        let t0 = test_epoch();
        let isn = SeqNumber::new(5000);
        let mut s = Sender::new(1024, 1456, isn, 8192, t0);
        s.set_pacing(
            Duration::from_micros(5),
            (1, idle_burst),
            100.0,
            WindowBasis::InFlight,
        );
        let data = vec![7u8; 1456 * 300];
        assert_eq!(s.write_stream(&data, t0), data.len());
        let mut buf = Vec::new();
        let mut sent = 0;
        let mut at = t0;
        while at < t0 + Duration::from_millis(10) {
            while s.pack(at, 0, SocketId(1), &mut buf, false).is_some() {
                sent += 1;
            }
            at += Duration::from_micros(5);
        }
        assert_eq!(sent, 100, "the window");
        assert!(s.on_light_ack(isn.add(100)));
        let mut at_once = 0;
        while s.pack(at, 0, SocketId(1), &mut buf, false).is_some() {
            at_once += 1;
        }
        at_once
    }

    #[test]
    fn a_window_that_opens_after_a_wait_leaves_in_the_controllers_burst() {
        // UDT4's catch-up: the wait counts as lateness, a millisecond of
        // packets (200 here), so the whole window leaves at once.
        assert_eq!(burst_after_a_wait(None), 100);
        // A controller's bound: 32 packets of credit, the slot at the
        // instant itself, and a packet pair (16n, 16n+1) sharing a slot.
        let bounded = burst_after_a_wait(Some(32));
        assert!((33..=36).contains(&bounded), "{bounded}");
    }
}
