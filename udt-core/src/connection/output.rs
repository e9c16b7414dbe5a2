//! Packet output: the control queue and its encoding (UDT4 `sendCtrl`), and
//! the paced data path that asks the sender for the next packet (`packData`).

use std::net::SocketAddr;
use std::time::Instant;

use super::sender::{Packed, BURST_CREDIT};
use super::{Connection, State, CONTROL_QUEUE_LIMIT};
use crate::packet::{self, Ack, Control, ControlPacket, Handshake, Packet};
use crate::seq::{AckSeqNumber, MsgNumber, SeqNumber};
use crate::time::wire_timestamp;

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

/// A data packet's payload that [`Connection::poll_transmit_gather`] left
/// in the send buffer: the datagram is the header it wrote followed by
/// [`Connection::payload`] of this reference.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PayloadRef(SeqNumber);

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

impl Connection {
    /// Writes the next datagram to send into `buf` (cleared first): pending
    /// control packets first, then at most one data packet if the pacer
    /// allows at `now` (retransmissions before new data).
    pub fn poll_transmit(&mut self, now: Instant, buf: &mut Vec<u8>) -> Option<Transmit> {
        self.transmit(now, buf, true).map(|(t, _)| t)
    }

    /// As [`poll_transmit`](Self::poll_transmit), except that a data packet
    /// of a plain connection may come as its 16-byte header in `buf` and a
    /// [`PayloadRef`]: the driver sends the header followed by
    /// [`payload`](Self::payload) (one gathered datagram, `Transmit::size`
    /// bytes in all), which saves copying every payload out of the send
    /// buffer. The payload stays valid until the connection is next changed
    /// (an ACK, a write, a close): gather it before that. Secure
    /// connections seal the whole datagram in `buf` and return no reference.
    pub fn poll_transmit_gather(
        &mut self,
        now: Instant,
        buf: &mut Vec<u8>,
    ) -> Option<(Transmit, Option<PayloadRef>)> {
        let inline = self.seal.is_some();
        self.transmit(now, buf, inline)
    }

    /// The payload a [`PayloadRef`] names, while it is still in the send
    /// buffer; `None` once it left it (acknowledged, or its message
    /// expired), when the datagram must not be sent.
    pub fn payload(&self, payload: PayloadRef) -> Option<&[u8]> {
        self.sender.buffer().block(payload.0).map(|b| b.payload)
    }

    fn transmit(
        &mut self,
        now: Instant,
        buf: &mut Vec<u8>,
        inline: bool,
    ) -> Option<(Transmit, Option<PayloadRef>)> {
        self.observe_time(now);
        let (kind, gathered) = if self.encode_next_control(now, buf) {
            (TransmitKind::Control, None)
        } else {
            self.poll_data(now, buf, inline)?
        };
        if !self.seal_outgoing(now, buf) {
            return None;
        }
        self.last_send_time = now;
        let size = buf.len() + gathered.map_or(0, |(_, len)| len as usize);
        Some((
            Transmit {
                destination: self.peer_addr,
                size,
                kind,
            },
            gathered.map(|(seq, _)| PayloadRef(seq)),
        ))
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
        if !self.encode_next_control(now, buf) {
            return None;
        }
        if !self.seal_outgoing(now, buf) {
            return None;
        }
        self.last_send_time = now;
        Some(Transmit {
            destination: self.peer_addr,
            size: buf.len(),
            kind: TransmitKind::Control,
        })
    }

    /// Queues a control packet; returns false when the queue was full and
    /// the packet was dropped (and counted).
    pub(super) fn queue_control(&mut self, item: ControlItem) -> bool {
        if self.control.len() >= CONTROL_QUEUE_LIMIT {
            self.counters.dropped.control_queue_full += 1;
            return false;
        }
        self.control.push_back(item);
        true
    }

    /// Encodes the next queued control packet that still has something to
    /// say into `buf`; false when the queue holds none.
    fn encode_next_control(&mut self, now: Instant, buf: &mut Vec<u8>) -> bool {
        while let Some(item) = self.control.pop_front() {
            if self.encode_control(now, item, buf) {
                return true;
            }
        }
        false
    }

    /// Encodes `item` into `buf`; false when it turned out to have nothing
    /// to say (a periodic NAK whose losses were all repaired meanwhile).
    fn encode_control(&mut self, now: Instant, item: ControlItem, buf: &mut Vec<u8>) -> bool {
        let timestamp = wire_timestamp(self.start, now);
        let dest = self.peer_id;
        let control = match item {
            ControlItem::Nak(first, last) => {
                packet::encode_nak(timestamp, dest, std::iter::once((first, last)), 2, buf);
                self.counters.naks_sent += 1;
                return true;
            }
            ControlItem::NakList => {
                let max_words = (self.payload_size / 4).max(2);
                let any = self
                    .receiver
                    .encode_nak_list(timestamp, dest, max_words, buf);
                if any {
                    self.counters.naks_sent += 1;
                }
                return any;
            }
            ControlItem::Ack(ack) => Control::Ack(ack),
            ControlItem::LightAck(ack) => Control::LightAck { ack },
            ControlItem::Ack2(seq) => Control::Ack2(seq),
            ControlItem::KeepAlive => Control::KeepAlive,
            ControlItem::Shutdown => {
                Packet::Control(ControlPacket {
                    timestamp,
                    dest,
                    control: Control::Shutdown,
                })
                .encode(buf);
                // Tell the peer where our data ends, so it can tell an
                // orderly end from a truncated stream (issue 10 item 2).
                packet::set_shutdown_end(buf, self.sender.buffer().end_seq());
                return true;
            }
            ControlItem::MsgDrop { msg, first, last } => {
                Control::MsgDropRequest { msg, first, last }
            }
            ControlItem::Handshake(hs) => {
                Packet::Control(ControlPacket {
                    timestamp,
                    dest,
                    control: Control::Handshake(hs),
                })
                .encode(buf);
                // A secure listener's repeated response carries its half
                // of the key agreement again, byte for byte.
                if hs.req_type == crate::packet::ReqType::Response {
                    buf.extend_from_slice(&self.response_ext);
                }
                return true;
            }
        };
        Packet::Control(ControlPacket {
            timestamp,
            dest,
            control,
        })
        .encode(buf);
        true
    }

    /// The paced data path (UDT4 `packData`, §6.1). Without `inline`, the
    /// payload stays in the send buffer: its sequence number and length
    /// come back with the kind.
    fn poll_data(
        &mut self,
        now: Instant,
        buf: &mut Vec<u8>,
        inline: bool,
    ) -> Option<(TransmitKind, Option<(SeqNumber, u64)>)> {
        if !self.may_send_data() {
            return None;
        }
        let timestamp = wire_timestamp(self.start, now);
        loop {
            match self
                .sender
                .pack(now, timestamp, self.peer_id, buf, inline)?
            {
                Packed::Expired { msg, first, last } => {
                    self.counters.messages_dropped_sent += 1;
                    log::debug!(
                        "{} message {msg:?} [{first:?}, {last:?}] expired: dropping",
                        self.local_id
                    );
                    self.queue_control(ControlItem::MsgDrop { msg, first, last });
                }
                Packed::Retransmit { seq, len } => {
                    self.counters.packets_retransmitted += 1;
                    self.counters.bytes_retransmitted += len;
                    self.on_data_sent(now, seq, len);
                    let limit = self.sender.buffer().capacity() as usize;
                    self.rack.on_retransmitted(now, seq, limit);
                    return Some((TransmitKind::Retransmit, (!inline).then_some((seq, len))));
                }
                Packed::New { seq, len } => {
                    if self.sender.unacked() == 1 {
                        // The only packet outstanding: the retransmission
                        // timeout counts from now (RFC 6298 (5.1); UDT4's
                        // `send` resets its EXP base when the buffer was
                        // empty), not from the last packet heard, which on
                        // a connection quiet for 300 ms or more would time
                        // this packet out as it leaves.
                        self.exp_base = self.exp_base.max(now);
                    }
                    self.on_data_sent(now, seq, len);
                    return Some((TransmitKind::Data, (!inline).then_some((seq, len))));
                }
            }
        }
    }

    /// Bookkeeping shared by first transmissions and retransmissions.
    fn on_data_sent(&mut self, now: Instant, seq: SeqNumber, len: u64) {
        self.counters.packets_sent += 1;
        self.counters.bytes_sent += len;
        let pipe = self.sender.pipe();
        self.delivery
            .on_sent(now, seq, pipe, self.sender.in_flight());
        self.sender.set_sacked(self.delivery.sacked());
        // Rate samples until this flight is delivered show this host or
        // the receiver, not the path, when the application has nothing more
        // for now, the receiver's window stops us, or the driver let the
        // pacer fall behind by more than its burst credit (a send thread
        // kept off the CPU). Taken for the path, such a stall of a few
        // milliseconds lowered the model to the late driver's rate, pacing
        // at it kept every later wake-up late, and a loopback transfer into
        // libudt0 crawled at 800 packets/s (docs/congestion-control.md 11.15).
        let driver = self.counters.send_limits.driver;
        let driver_late = driver
            .saturating_sub(std::mem::replace(&mut self.driver_at_last_send, driver))
            > BURST_CREDIT;
        if self.sender.is_idle() || self.sender.is_flow_window_limited() || driver_late {
            self.delivery.mark_app_limited(pipe);
        }
        let ctx = self.cc_context(now);
        self.cc.on_packet_sent(&ctx, seq);
    }

    /// Before an orderly shutdown: acknowledges what arrived since the last
    /// ACK. A shutdown carries no acknowledgement, so without it a peer
    /// that closes right after us found its last packets unacknowledged
    /// and its close failed (`udt punch --no-data`: each side sends one
    /// byte, reads one, closes).
    pub(super) fn queue_final_ack(&mut self, now: Instant) {
        if let Some(ack) = self.receiver.build_ack(now, &self.rtt) {
            self.queue_control(ControlItem::Ack(ack));
            self.counters.acks_sent += 1;
        }
    }

    pub(super) fn queue_shutdown(&mut self) {
        if !matches!(self.state, State::Closed(_)) {
            self.queue_control(ControlItem::Shutdown);
        }
    }
}
