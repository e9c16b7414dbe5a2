//! Packet input: the reactions to each packet type (UDT4 `processData` and
//! `processCtrl`), with every value from the network checked first.

use std::time::{Duration, Instant};

use super::output::ControlItem;
use super::{Connection, State};
use crate::config::SocketType;
use crate::error::ConnectionError;
use crate::packet::{self, Ack, Control, DataHeader, Handshake, LossRanges, Packet, ReqType};
use crate::recv_buffer::InsertError;
use crate::seq::{AckSeqNumber, MsgNumber, SeqNumber};

/// The largest RTT sample believed from an ACK: beyond it the value is
/// garbage (or hostile) and would stall the timers.
const MAX_RTT_SAMPLE: Duration = Duration::from_secs(60);

/// How many times a closed connection answers the peer with a repeated
/// shutdown.
const MAX_SHUTDOWN_REPEATS: u32 = 16;

impl Connection {
    pub(super) fn on_datagram(&mut self, now: Instant, datagram: &[u8]) {
        let packet = match packet::decode(datagram) {
            Ok(p) => p,
            Err(e) => {
                self.counters.dropped.malformed += 1;
                log::debug!("{} dropped a malformed datagram: {e}", self.local_id);
                return;
            }
        };
        if let State::Closed(reason) = self.state {
            // UDT4 sends one shutdown and never repeats it, so a lost
            // shutdown leaves the peer waiting for its idle timeout. While
            // the driver keeps a closed connection around, any packet from
            // the peer (a keep-alive, an ACK) is answered with another
            // shutdown, a bounded number of times.
            let closed_here = matches!(
                reason,
                ConnectionError::LocallyClosed | ConnectionError::LingerExpired
            );
            let is_shutdown = matches!(
                &packet,
                Packet::Control(c) if matches!(c.control, Control::Shutdown)
            );
            if closed_here && !is_shutdown && self.shutdowns_repeated < MAX_SHUTDOWN_REPEATS {
                self.shutdowns_repeated += 1;
                self.queue_control(ControlItem::Shutdown);
            }
            return;
        }
        self.last_heard = now;
        self.exp_base = now;
        self.exp_count = 1;
        // Anything from the peer proves it finished connecting.
        self.release_first_data_hold(now);
        match packet {
            Packet::Data { header, payload } => self.on_data(now, &header, payload),
            Packet::Control(c) => match c.control {
                Control::Handshake(hs) => self.on_handshake(&hs),
                Control::KeepAlive => {}
                Control::LightAck { ack } => self.on_light_ack(ack),
                Control::Ack(ack) => self.on_ack(now, &ack),
                Control::Nak(ranges) => self.on_nak(now, &ranges),
                Control::CongestionWarning => {
                    // UDT4 4.11 never sends it and its own reaction is
                    // overwritten by the next rate update; we ignore it.
                    log::debug!("{} ignored a congestion warning", self.local_id);
                }
                Control::Shutdown => {
                    log::debug!("{} peer sent shutdown", self.local_id);
                    self.enter_closed(now, ConnectionError::PeerClosed);
                }
                Control::Ack2(ack_seq) => self.on_ack2(now, ack_seq),
                Control::MsgDropRequest { msg, first, last } => {
                    self.on_drop_request(msg, first, last)
                }
                Control::ErrorSignal { code } => {
                    // UDT4 treats it like a shutdown (its recvfile peer hit
                    // a disk error).
                    log::info!("{} peer signalled error {code}", self.local_id);
                    self.enter_closed(now, ConnectionError::PeerClosed);
                }
                Control::UserDefined { .. } | Control::Unknown { .. } => {
                    self.counters.dropped.unknown_control += 1;
                }
            },
        }
    }

    /// UDT4 `processData` (udt4-protocol.md §6.2).
    fn on_data(&mut self, now: Instant, header: &DataHeader, payload: &[u8]) {
        let seq = header.seq;
        self.receiver.arrivals.on_data(now, seq);
        let ctx = self.cc_context(now);
        self.cc.on_packet_received(&ctx, seq);
        if payload.len() > self.payload_size {
            self.counters.dropped.malformed += 1;
            return;
        }
        let r = &mut self.receiver;
        match r
            .buffer
            .insert(seq, header.position, header.in_order, header.msg, payload)
        {
            Ok(()) => {
                self.counters.packets_received += 1;
                self.counters.bytes_received += payload.len() as u64;
            }
            Err(InsertError::Duplicate) => {
                self.counters.dropped.duplicate += 1;
                return;
            }
            Err(InsertError::OutOfWindow) => {
                self.counters.dropped.out_of_window += 1;
                return;
            }
            Err(InsertError::Dropped) => {
                self.counters.dropped.dropped_message += 1;
            }
        }
        // Gap detection: everything between the largest sequence number
        // seen and this one is missing; report it at once.
        if seq.is_after(r.current.next()) {
            let (first, last) = (r.current.next(), seq.prev());
            let added = r.loss.insert(first, last);
            self.counters.packets_lost += u64::from(added);
            self.queue_control(ControlItem::Nak(first, last));
        }
        let r = &mut self.receiver;
        if seq.is_after(r.current) {
            r.current = seq;
        } else {
            r.loss.remove(seq);
        }
        // A short packet usually ends a message: acknowledge at once.
        if payload.len() < self.payload_size {
            r.ack_now = true;
        }
        r.packets_since_ack += 1;
        if r.packets_since_ack >= 64 {
            // UDT4's light-ACK self clock (m_iSelfClockInterval = 64).
            r.packets_since_ack = 0;
            let ack = r.ack_number();
            self.queue_control(ControlItem::LightAck(ack));
            self.counters.light_acks_sent += 1;
        }
        if self.is_readable() {
            self.readable_pending = true;
        }
    }

    /// A handshake on an established connection (udt4-protocol.md §4.1, §4.2 step 5).
    fn on_handshake(&mut self, hs: &Handshake) {
        if let Some(response) = &self.response {
            // Listener side: the caller repeats its final request because
            // our response was lost. Answer with the same response.
            if hs.req_type == ReqType::Response && hs.socket_id == self.peer_id {
                let response = *response;
                self.queue_control(ControlItem::Handshake(response));
                return;
            }
        }
        if self.rendezvous && hs.req_type != ReqType::RendezvousConnected {
            // The peer has not seen our completion yet: tell it we are
            // connected, with our values (UDT4 answers −2).
            let reply = Handshake {
                version: 4,
                socket_type: self.socket_type.to_wire(),
                isn: self.send_isn,
                mss: self.mss,
                flow_window: self.config.advertised_window(),
                req_type: ReqType::RendezvousConnected,
                socket_id: self.local_id,
                cookie: 0,
                peer_ip: packet::PeerIp::from_addr(self.peer_addr.ip()),
            };
            self.queue_control(ControlItem::Handshake(reply));
            return;
        }
        self.counters.dropped.stray_handshake += 1;
    }

    /// Light ACK: moves the flow window, releases nothing (§6.5).
    fn on_light_ack(&mut self, ack: SeqNumber) {
        let s = &mut self.sender;
        if ack.is_after(s.current.next()) {
            self.counters.dropped.invalid_control += 1;
            return;
        }
        if !ack.is_before(s.last_ack) {
            let advanced = ack.offset_from(s.last_ack) as u32;
            s.flow_window = s.flow_window.saturating_sub(advanced);
            s.last_ack = ack;
        }
    }

    /// Full or medium ACK (UDT4 `processCtrl` case 2, §6.5).
    fn on_ack(&mut self, now: Instant, ack: &Ack) {
        self.counters.acks_received += 1;
        let s = &mut self.sender;
        let seq = ack.ack;
        if seq.is_after(s.current.next()) || !seq.is_comparable(s.current) {
            // UDT4 breaks the connection here; a forged or corrupted ACK
            // must not kill a healthy connection, so we drop the packet.
            self.counters.dropped.invalid_control += 1;
            log::debug!(
                "{} ignored an ACK for {seq:?} beyond what was sent ({:?})",
                self.local_id,
                s.current
            );
            return;
        }
        // Confirm every plausible ACK, repeated ones too, so the receiver
        // gets its RTT sample (UDT4 sends one ACK2 per full/medium ACK).
        self.queue_control(ControlItem::Ack2(ack.ack_seq));
        self.counters.ack2s_sent += 1;
        let s = &mut self.sender;
        if !seq.is_before(s.last_ack) {
            s.flow_window = ack.available_buffer;
            s.last_ack = seq;
        }
        if !seq.is_after(s.last_data_ack) {
            // A repeated ACK: UDT4 stops here (no RTT or rate update).
            return;
        }
        s.buffer.ack(seq);
        s.loss.remove_before(seq);
        s.last_data_ack = seq;
        self.writable_pending = true;
        let sample = Duration::from_micros(u64::from(ack.rtt_us)).min(MAX_RTT_SAMPLE);
        if ack.rtt_us > 0 {
            self.rtt.update(sample);
        }
        if let Some(rates) = ack.rates {
            self.sender
                .rates
                .update(rates.recv_rate, rates.link_capacity);
        }
        let ctx = self.cc_context(now);
        self.cc.on_ack(&ctx, seq);
        self.apply_cc();
        if let State::Closing { .. } = self.state {
            if self.sender.buffer.is_empty() {
                self.queue_shutdown();
                self.enter_closed(now, ConnectionError::LocallyClosed);
            }
        }
    }

    /// NAK (UDT4 `processCtrl` case 3, §6.3): queue retransmissions.
    fn on_nak(&mut self, now: Instant, ranges: &LossRanges<'_>) {
        self.counters.naks_received += 1;
        let mut first_lost: Option<SeqNumber> = None;
        let mut count = 0u32;
        for item in ranges.iter() {
            let Ok((first, last)) = item else {
                self.counters.dropped.invalid_control += 1;
                break;
            };
            let s = &mut self.sender;
            // Reversed ranges and anything beyond what was sent are
            // impossible from a correct receiver; UDT4 breaks the
            // connection, we ignore the entry.
            if first.is_after(last) || last.is_after(s.current) || !last.is_comparable(s.current) {
                self.counters.dropped.invalid_control += 1;
                continue;
            }
            if last.is_before(s.last_ack) {
                continue;
            }
            let first = first.max_of(s.last_ack);
            let added = s.loss.insert(first, last);
            count += added;
            // Only news is a congestion signal: our periodic NAK repeats
            // losses already reported, which must not cut the rate again.
            if added > 0 && first_lost.is_none() {
                first_lost = Some(first);
            }
        }
        self.counters.packets_reported_lost += u64::from(count);
        if let Some(first) = first_lost {
            let ctx = self.cc_context(now);
            self.cc.on_loss(&ctx, first, count);
            self.apply_cc();
        }
    }

    /// ACK2: an RTT sample for the receiver side (§6.6).
    fn on_ack2(&mut self, now: Instant, ack_seq: AckSeqNumber) {
        let r = &mut self.receiver;
        if let Some((ack, rtt)) = r.ack_window.acknowledge(ack_seq, now) {
            self.rtt.update(rtt.min(MAX_RTT_SAMPLE));
            if ack.is_after(r.last_ack_ack) {
                r.last_ack_ack = ack;
            }
        }
    }

    /// Message drop request (UDT4 `processCtrl` case 7, §11), bounded: the
    /// range is clipped to the receive window before anything is touched.
    fn on_drop_request(&mut self, msg: MsgNumber, first: SeqNumber, last: SeqNumber) {
        if self.socket_type == SocketType::Stream {
            // Stream data has no TTL: a UDT4 sender never drops any (its
            // send() and sendfile() use an infinite TTL), so a drop request
            // on a stream could only corrupt the byte stream.
            self.counters.dropped.invalid_control += 1;
            return;
        }
        self.counters.messages_dropped_received += 1;
        let r = &mut self.receiver;
        let window_start = r.buffer.contiguous_end();
        let window_end = window_start.add(self.config.recv_buffer_packets.saturating_sub(1));
        if first.is_after(last)
            || !first.is_comparable(r.current)
            || !last.is_comparable(r.current)
            || first.is_after(window_end)
            || last.is_before(window_start)
        {
            self.counters.dropped.invalid_control += 1;
            return;
        }
        // What was already received in order cannot be dropped any more.
        let first = first.max_of(window_start);
        let last = last.min_of(window_end);
        r.buffer.drop_message(msg, first, last);
        r.loss.remove_range(first, last);
        // The sender skipped the rest of the message: do not wait for it.
        if !first.is_after(r.current.next()) && last.is_after(r.current) {
            r.current = last;
        }
        if self.is_readable() {
            self.readable_pending = true;
        }
    }
}
