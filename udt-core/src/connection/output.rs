//! Packet output: the control queue, ACK/NAK generation, EXP reactions and
//! the paced data path (UDT4 `sendCtrl`, `packData`, `checkTimers`).

use std::net::SocketAddr;
use std::time::Instant;

use super::{Connection, State, CONTROL_QUEUE_LIMIT};
use crate::packet::{self, Ack, AckRates, Control, ControlPacket, DataHeader, Handshake, Packet};
use crate::send_buffer::Block;
use crate::seq::{AckSeqNumber, MsgNumber, SeqNumber, SocketId};
use crate::time::{wire_timestamp, SYN_INTERVAL};

/// One datagram for the driver to send; the bytes are in the buffer that
/// was passed to [`Connection::poll_transmit`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Transmit {
    /// Where to send it (always the peer).
    pub destination: SocketAddr,
    /// Length of the datagram at the start of the buffer.
    pub size: usize,
    /// What it carries.
    pub kind: TransmitKind,
}

/// What a [`Transmit`] carries.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TransmitKind {
    /// A control packet (never paced).
    Control,
    /// A data packet sent for the first time.
    Data,
    /// A retransmitted data packet.
    Retransmit,
}

/// A control packet waiting to be encoded and sent.
#[derive(Clone, Debug)]
pub(super) enum ControlItem {
    Ack(Ack),
    LightAck(SeqNumber),
    Ack2(AckSeqNumber),
    /// An immediate NAK of one newly detected gap.
    Nak(SeqNumber, SeqNumber),
    /// The periodic NAK of the whole loss list, encoded when sent.
    NakList,
    KeepAlive,
    Shutdown,
    MsgDrop {
        msg: MsgNumber,
        first: SeqNumber,
        last: SeqNumber,
    },
    Handshake(Handshake),
}

/// Encodes one send-buffer block as a data packet; returns its payload length.
fn encode_block(block: &Block<'_>, timestamp: u32, dest: SocketId, buf: &mut Vec<u8>) -> u64 {
    let header = DataHeader {
        seq: block.seq,
        position: block.position,
        in_order: block.in_order,
        msg: block.msg,
        timestamp,
        dest,
    };
    packet::encode_data(&header, block.payload, buf);
    block.payload.len() as u64
}

impl Connection {
    /// Writes the next datagram to send into `buf` (cleared first): pending
    /// control packets first, then at most one data packet if the pacer
    /// allows at `now` (retransmissions before new data).
    pub fn poll_transmit(&mut self, now: Instant, buf: &mut Vec<u8>) -> Option<Transmit> {
        self.observe_time(now);
        let kind = if let Some(item) = self.control.pop_front() {
            self.encode_control(now, item, buf);
            TransmitKind::Control
        } else {
            self.poll_data(now, buf)?
        };
        self.last_send_time = now;
        Some(Transmit {
            destination: self.peer_addr,
            size: buf.len(),
            kind,
        })
    }

    /// Writes the next pending control packet into `buf` (cleared first),
    /// or returns `None` when none is queued; never a data packet.
    ///
    /// For a driver that sends control packets from another thread than
    /// data: an ACK, ACK2 or NAK may overtake data packets harmlessly (UDT4
    /// sends them from its receive thread too, core.cpp `processCtrl` and
    /// `sendCtrl`), whereas data batches sent by two threads could reorder
    /// and look like loss to the peer. [`poll_transmit`](Self::poll_transmit)
    /// still returns both kinds, control first.
    pub fn poll_transmit_control(&mut self, now: Instant, buf: &mut Vec<u8>) -> Option<Transmit> {
        self.observe_time(now);
        let item = self.control.pop_front()?;
        self.encode_control(now, item, buf);
        self.last_send_time = now;
        Some(Transmit {
            destination: self.peer_addr,
            size: buf.len(),
            kind: TransmitKind::Control,
        })
    }

    pub(super) fn queue_control(&mut self, item: ControlItem) {
        if self.control.len() >= CONTROL_QUEUE_LIMIT {
            self.counters.dropped.control_queue_full += 1;
            return;
        }
        self.control.push_back(item);
    }

    fn encode_control(&mut self, now: Instant, item: ControlItem, buf: &mut Vec<u8>) {
        let timestamp = wire_timestamp(self.start, now);
        let dest = self.peer_id;
        let control = match item {
            ControlItem::Nak(first, last) => {
                packet::encode_nak(timestamp, dest, std::iter::once((first, last)), 2, buf);
                self.counters.naks_sent += 1;
                return;
            }
            ControlItem::NakList => {
                self.nak_list_queued = false;
                let max_words = (self.payload_size / 4).max(2);
                packet::encode_nak(timestamp, dest, self.receiver.loss.ranges(), max_words, buf);
                self.counters.naks_sent += 1;
                return;
            }
            ControlItem::Ack(ack) => Control::Ack(ack),
            ControlItem::LightAck(ack) => Control::LightAck { ack },
            ControlItem::Ack2(seq) => Control::Ack2(seq),
            ControlItem::KeepAlive => Control::KeepAlive,
            ControlItem::Shutdown => Control::Shutdown,
            ControlItem::MsgDrop { msg, first, last } => {
                Control::MsgDropRequest { msg, first, last }
            }
            ControlItem::Handshake(hs) => Control::Handshake(hs),
        };
        Packet::Control(ControlPacket {
            timestamp,
            dest,
            control,
        })
        .encode(buf);
    }

    /// The paced data path (UDT4 `packData`, §6.1).
    fn poll_data(&mut self, now: Instant, buf: &mut Vec<u8>) -> Option<TransmitKind> {
        if !self.may_send_data() || now < self.sender.next_slot {
            return None;
        }
        let timestamp = wire_timestamp(self.start, now);
        // Retransmissions first.
        while let Some(seq) = self.sender.loss.pop_first() {
            if seq.is_before(self.sender.last_data_ack) {
                continue;
            }
            if self.sender.buffer.is_expired(seq, now) {
                self.drop_expired_message(seq);
                continue;
            }
            let Some(block) = self.sender.buffer.block(seq) else {
                continue;
            };
            let len = encode_block(&block, timestamp, self.peer_id, buf);
            self.counters.packets_retransmitted += 1;
            self.counters.bytes_retransmitted += len;
            self.on_data_sent(now, seq, len);
            self.sender.advance_slot(now);
            return Some(TransmitKind::Retransmit);
        }
        if !self.sender.may_send_new() {
            return None;
        }
        // The hold (if any) has expired: it must not pull the pacing slot
        // back later.
        self.first_data_hold = false;
        let block = self.sender.buffer.take_next()?;
        let seq = block.seq;
        let len = encode_block(&block, timestamp, self.peer_id, buf);
        self.sender.current = seq;
        self.on_data_sent(now, seq, len);
        // Packet pair: 16n and 16n+1 leave back to back so the receiver
        // can estimate the link capacity (§6.1 step 4, §8.3).
        if seq.value() & 0xF != 0 {
            self.sender.advance_slot(now);
        }
        Some(TransmitKind::Data)
    }

    /// Bookkeeping shared by first transmissions and retransmissions.
    fn on_data_sent(&mut self, now: Instant, seq: SeqNumber, len: u64) {
        self.counters.packets_sent += 1;
        self.counters.bytes_sent += len;
        let ctx = self.cc_context(now);
        self.cc.on_packet_sent(&ctx, seq);
    }

    /// The message holding `seq` outlived its TTL: skip what is left of it
    /// and ask the receiver to drop it (§11). Unlike UDT4 the request names
    /// the message's real last packet (no off-by-one).
    fn drop_expired_message(&mut self, seq: SeqNumber) {
        let Some((msg, first, _)) = self.sender.buffer.message_span(seq) else {
            return;
        };
        let last = self.sender.buffer.skip_message(seq);
        if last.is_after(self.sender.current) {
            self.sender.current = last;
        }
        self.sender.loss.remove_range(first, last);
        self.counters.messages_dropped_sent += 1;
        log::debug!(
            "{} message {msg:?} [{first:?}, {last:?}] expired: dropping",
            self.local_id
        );
        self.queue_control(ControlItem::MsgDrop { msg, first, last });
    }

    /// The ACK timer (UDT4 `sendCtrl(2)`, §6.4).
    pub(super) fn send_ack(&mut self, now: Instant) {
        let r = &mut self.receiver;
        let window_update = r.ack_now && r.last_advertised < 32;
        r.ack_now = false;
        let ack = r.ack_number();
        if ack == r.last_ack_ack && !window_update {
            return;
        }
        if ack.is_after(r.last_ack) {
            r.last_ack = ack;
        } else if ack == r.last_ack {
            let resend_after = self.rtt.rtt() + 4 * self.rtt.rtt_var();
            if !window_update && now < r.last_ack_time + resend_after {
                return;
            }
        } else {
            return;
        }
        let ack_seq = r.next_ack_seq;
        r.next_ack_seq = ack_seq.next();
        let full = now.saturating_duration_since(r.last_full_ack_time) >= SYN_INTERVAL;
        // UDT4 never advertises less than 2 packets "to break deadlock".
        let available = r.buffer.available_packets().max(2);
        r.last_advertised = available;
        let rates = full.then(|| AckRates {
            recv_rate: r.arrivals.recv_speed(),
            link_capacity: r.arrivals.link_capacity(),
        });
        r.ack_window.store(ack_seq, ack, now);
        r.last_ack_time = now;
        if full {
            r.last_full_ack_time = now;
        }
        r.packets_since_ack = 0;
        let item = ControlItem::Ack(Ack {
            ack_seq,
            ack,
            rtt_us: self.rtt.rtt_us(),
            rtt_var_us: self.rtt.rtt_var_us(),
            available_buffer: available,
            rates,
        });
        self.queue_control(item);
        self.counters.acks_sent += 1;
    }

    /// Periodic NAK of the whole loss list.
    pub(super) fn on_nak_timer(&mut self, now: Instant) {
        self.receiver.last_nak_time = now;
        if !self.nak_list_queued && !self.receiver.loss.is_empty() {
            self.nak_list_queued = true;
            self.queue_control(super::output::ControlItem::NakList);
        }
    }

    /// The EXP timer with data outstanding (UDT4 `checkTimers`, §7).
    pub(super) fn on_exp(&mut self, now: Instant) {
        let s = &mut self.sender;
        if s.unacked() > 0 {
            if s.loss.is_empty() {
                // Nothing known lost, yet nothing acknowledged: resend all
                // that is unacknowledged.
                let first = s.last_ack.max_of(s.last_data_ack);
                if !first.is_after(s.current) {
                    s.loss.insert(first, s.current);
                }
            }
            self.counters.timeouts += 1;
            let ctx = self.cc_context(now);
            self.cc.on_timeout(&ctx);
            self.apply_cc();
            // Send the retransmission now rather than at a stale slot.
            self.sender.next_slot = self.sender.next_slot.min(now);
        }
        log::debug!(
            "{} EXP #{} after {:?}",
            self.local_id,
            self.exp_count,
            now.saturating_duration_since(self.exp_base)
        );
        self.exp_count = self.exp_count.saturating_add(1);
        self.exp_base = now;
    }

    pub(super) fn queue_keepalive(&mut self, now: Instant) {
        // Mark the time now so the timer does not fire again before the
        // driver drains the queue.
        self.last_send_time = now;
        self.counters.keepalives_sent += 1;
        self.queue_control(ControlItem::KeepAlive);
    }

    pub(super) fn queue_shutdown(&mut self) {
        if !matches!(self.state, State::Closed(_)) {
            self.queue_control(ControlItem::Shutdown);
        }
    }
}
