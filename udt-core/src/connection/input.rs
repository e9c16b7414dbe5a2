//! Packet input: the reactions to each packet type (UDT4 `processData` and
//! `processCtrl`), with every value from the network checked first.

use std::time::{Duration, Instant};

use super::output::ControlItem;
use super::rack::Verdict;
use super::receiver::DataOutcome;
use super::sender::AckOutcome;
use super::{Connection, State};
use crate::config::SocketType;
use crate::error::ConnectionError;
use crate::packet::{self, Ack, Control, DataHeader, Handshake, LossRanges, Packet, ReqType};
use crate::seq::{AckSeqNumber, MsgNumber, SeqNumber};

/// How old a driver's arrival time may be and still be believed
/// ([`Connection::note_arrival`]).
const ARRIVAL_HINT_WINDOW: Duration = Duration::from_secs(1);

/// The most packets after a lost NAK's head that are resent with it
/// ([`Connection::resend_rest_of_lost_nak`]): the gaps a queue overflowing
/// under paced traffic leaves are a few packets long, while at 1 % random
/// loss a lost NAK's neighbours are about a hundred packets away.
const MAX_LOST_NAK_RUN: usize = 8;

/// The most times the head's timed wait doubles while the peer stays
/// silent (`Connection::head_loss_deadline`): 64 waits of about 2·RTT, by
/// then the EXP timer's own backoff is longer.
const MAX_SILENT_BACKOFF_STEPS: u32 = 6;

/// The most packets one head repair resends (`Connection::widen_head_repair`).
const MAX_HEAD_REPAIR: u32 = 64;

/// A head repair: the sequence number after its last packet, how many it
/// resent, and when.
#[derive(Clone, Copy, Debug)]
pub(super) struct HeadRepair {
    end: SeqNumber,
    burst: u32,
    at: Instant,
}

/// The head of the send window as the sender's loss detection sees it
/// ([`Connection::head_candidate`]).
#[derive(Clone, Copy, Debug)]
pub(super) struct Head {
    /// The first packet no ACK covers.
    pub(super) seq: SeqNumber,
    /// When it last left, or when a doubted NAK proved it arrived.
    pub(super) since: Instant,
    /// Its last transmission was a retransmission.
    pub(super) retransmitted: bool,
    /// A NAK proved it arrived after an ACK had named it missing.
    pub(super) proof_doubted: bool,
}

/// The largest RTT sample believed from an ACK: beyond it the value is
/// garbage (or hostile) and would stall the timers.
const MAX_RTT_SAMPLE: Duration = Duration::from_secs(60);

/// How many times a closed connection answers the peer with a repeated
/// shutdown.
const MAX_SHUTDOWN_REPEATS: u32 = 16;

impl Connection {
    pub(super) fn on_datagram(&mut self, now: Instant, datagram: &[u8]) {
        // A kernel timestamp is believed if it is not in the future and
        // less than a second old (a clock step in between would make it
        // nonsense).
        let arrived = self
            .arrival_hint
            .take()
            .filter(|&t| t <= now && now.saturating_duration_since(t) < ARRIVAL_HINT_WINDOW)
            .unwrap_or(now);
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
                ConnectionError::LocallyClosed
                    | ConnectionError::LingerExpired
                    | ConnectionError::PeerUnread
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
        let is_keepalive = matches!(
            &packet,
            Packet::Control(c) if matches!(c.control, Control::KeepAlive)
        );
        // A keep-alive proves the peer alive only while we miss none of its
        // data: with a hole to fill, a live peer retransmits (NAK and EXP
        // never give up), so keep-alives alone (spoofed, or from a peer
        // that lost its state) must not hold the connection and its
        // buffers open forever (issue 10 item 1). Unacknowledged data of
        // ours is no such sign: a receiver whose application stopped
        // reading has a full window and only sends keep-alives.
        if !is_keepalive || self.receiver.has_everything_before(None) {
            self.last_heard = now;
            self.exp_base = now;
            self.exp_count = 1;
            self.silent_head_resends = 0;
            self.ack_nudged = false;
        }
        // Anything from the peer proves it finished connecting.
        self.sender.release_hold(now);
        match packet {
            Packet::Data { header, payload } => self.on_data(now, arrived, &header, payload),
            Packet::Control(c) => match c.control {
                Control::Handshake(hs) => self.on_handshake(&hs),
                Control::KeepAlive => {}
                Control::LightAck { ack } => self.on_light_ack(now, ack),
                Control::Ack(ack) => self.on_ack(now, &ack),
                Control::Nak(ranges) => self.on_nak(now, &ranges),
                Control::CongestionWarning => {
                    // UDT4 4.11 never sends it and its own reaction is
                    // overwritten by the next rate update; we ignore it.
                    log::debug!("{} ignored a congestion warning", self.local_id);
                }
                Control::Shutdown => {
                    // An end of stream only when nothing the peer sent is
                    // missing; otherwise (an abortive close, an injected
                    // shutdown) the reader must see an error, not a
                    // truncated stream (issue 10 item 2).
                    let end = packet::shutdown_end(datagram);
                    let reason = if self.receiver.has_everything_before(end) {
                        ConnectionError::PeerClosed
                    } else {
                        ConnectionError::PeerAborted
                    };
                    log::debug!("{} peer sent shutdown: {reason}", self.local_id);
                    self.enter_closed(now, reason);
                }
                Control::Ack2(ack_seq) => self.on_ack2(now, ack_seq),
                Control::MsgDropRequest { msg, first, last } => {
                    self.on_drop_request(msg, first, last)
                }
                Control::ErrorSignal { code } => {
                    // UDT4 sends it when its recvfile peer hit a disk
                    // error: never an orderly end.
                    log::info!("{} peer signalled error {code}", self.local_id);
                    self.enter_closed(now, ConnectionError::PeerAborted);
                }
                Control::UserDefined { .. } | Control::Unknown { .. } => {
                    self.counters.dropped.unknown_control += 1;
                }
            },
        }
    }

    /// Tells the connection when the next datagram it is handed reached the
    /// host (a kernel receive timestamp). A driver that reads datagrams in
    /// batches hands them over at one `now`; the receiver's arrival speed
    /// and packet pairs (the rates full ACKs report) need their own times,
    /// or they read 1 µs between the packets of a batch: 1 000 000
    /// packets/s on any path, which a UDT4 sender paces at.
    pub fn note_arrival(&mut self, arrived: Instant) {
        self.arrival_hint = Some(arrived);
    }

    /// UDT4 `processData` (udt4-protocol.md §6.2).
    fn on_data(&mut self, now: Instant, arrived: Instant, header: &DataHeader, payload: &[u8]) {
        let ctx = self.cc_context(now);
        self.cc.on_packet_received(&ctx, header.seq);
        let outcome =
            self.receiver
                .on_data(arrived, header, payload, self.payload_size, self.rtt.rtt());
        let (gap, light_ack) = match outcome {
            DataOutcome::Oversized => {
                self.counters.dropped.malformed += 1;
                return;
            }
            DataOutcome::Duplicate => {
                self.counters.dropped.duplicate += 1;
                return;
            }
            DataOutcome::OutOfWindow => {
                self.counters.dropped.out_of_window += 1;
                return;
            }
            DataOutcome::Conflict => {
                // Without encryption we cannot tell which copy is genuine:
                // the stream can no longer be trusted, so it ends with an
                // error instead of going on with possibly injected data.
                self.counters.dropped.duplicate += 1;
                log::warn!(
                    "{} two different payloads for {:?}: data injected or corrupted",
                    self.local_id,
                    header.seq
                );
                self.queue_shutdown();
                self.enter_closed(now, ConnectionError::Corrupted);
                return;
            }
            DataOutcome::Accepted {
                dropped_message,
                gap,
                light_ack,
            } => {
                if dropped_message {
                    self.counters.dropped.dropped_message += 1;
                } else {
                    self.counters.packets_received += 1;
                    self.counters.bytes_received += payload.len() as u64;
                }
                (gap, light_ack)
            }
        };
        if let Some(gap) = gap {
            self.counters.packets_lost += u64::from(gap.added);
            if gap.report_now {
                self.queue_control(ControlItem::Nak(gap.first, gap.last));
            }
        }
        if let Some(ack) = light_ack {
            self.queue_control(ControlItem::LightAck(ack));
            self.counters.light_acks_sent += 1;
        }
        if self.is_readable() {
            self.readable_pending = true;
        }
    }

    /// A handshake on an established connection (udt4-protocol.md §4.1, §4.2 step 5).
    pub(super) fn on_handshake(&mut self, hs: &Handshake) {
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
    fn on_light_ack(&mut self, now: Instant, ack: SeqNumber) {
        if !self.sender.on_light_ack(ack) {
            self.counters.dropped.invalid_control += 1;
            return;
        }
        if self.on_delivery(now, ack) {
            self.apply_cc();
        }
        self.detect_losses(now, true);
    }

    /// The sender's own loss detection, after every ACK, light ACK and NAK
    /// (`on_ack` false for a NAK; udt4-protocol.md §6.3: a UDT4 receiver
    /// reports a loss once and never again, so a lost retransmission or a
    /// lost NAK shows in no later NAK).
    ///
    /// On an ACK it uses all the evidence: the receiver sends ACKs and NAKs
    /// in order, so an ACK was made after every NAK that arrived before it,
    /// and so after the packets those NAKs proved arrived; a retransmission
    /// that arrived before them and is the first missing packet is covered
    /// by this ACK. On a NAK only evidence at least `rack::SETTLE_TIME` old
    /// counts: the ACK covering such a retransmission may still be on its
    /// way (one ACK interval at most). NAKs must trigger it too because a
    /// UDT4 receiver sends no ACK at all while its first missing packet
    /// stays the one its last confirmed ACK named (§6.4; measured: our
    /// sender into libudt0 heard only NAKs and EXP timeouts during such
    /// stalls).
    ///
    /// Retransmissions, while the peer has never repeated a loss report (one
    /// that does reports a lost retransmission again): a retransmission
    /// sent more than a reordering window before the newest packet known
    /// delivered, and still outstanding, was lost too (`rack.rs`); it is
    /// resent once per such window. Beyond the head this is a guess (UDT's
    /// ACK has no SACK blocks: nothing says whether it arrived), made only
    /// when the head is a retransmission sent no later than it, which the
    /// ACKs then show lost as well. Otherwise the ACKs are stuck on a
    /// repair still under way (the head left again after it) or on a first
    /// transmission whose NAK was lost, and say nothing about it: it, and
    /// the ones sent after it, wait until the ACKs name another head.
    /// (Guessing anyway made most such resends duplicates, 2 % of the
    /// traffic at 5 % loss in the simulator, and after Startup's overshoot
    /// resent thousands and collapsed the flow; forgetting it instead,
    /// leaving it to the head rule, repaired a burst of lost
    /// retransmissions one round trip per packet.)
    ///
    /// The head: the same rule (covering a first transmission whose NAK was
    /// lost); without such evidence, a packet still missing longer after it
    /// last left than an ACK takes to report its arrival
    /// ([`head_wait`](Self::head_wait); a timer fires it when no packet
    /// comes, [`head_loss_deadline`](Self::head_loss_deadline)). Either way
    /// the EXP timer, which only fires once the window has filled and the
    /// peer falls silent and then resends everything unacknowledged, is
    /// not needed.
    fn detect_losses(&mut self, now: Instant, on_ack: bool) {
        if self.is_closed() {
            return;
        }
        let fresh = self.delivery.newest_delivered_sent();
        if let Some(fresh) = fresh {
            self.rack.observe(now, fresh);
        }
        let newest = if on_ack {
            fresh
        } else {
            self.rack.settled(now)
        };
        let window = super::rack::reordering_window(self.delivery.min_rtt(), self.rtt.rtt());
        let candidate = self.head_candidate();
        let head = candidate.map_or_else(|| self.delivery.first_unacked(), |h| h.seq);
        let mut presumed = 0u64;
        // A peer that repeats its loss reports will report a lost
        // retransmission or a lost NAK's packet again: the evidence rules
        // are for peers that report once. (With ours, resending the head on
        // the evidence put Startup's overshoot repair on a 200 ms path out
        // of step with the periodic NAKs, and the bulk profile fell from
        // 79 % to 10 % of the link on one seed.)
        let newest = newest.filter(|_| !self.peer_repeats_naks);
        if let Some(newest) = newest {
            let (delivery, sender) = (&self.delivery, &mut self.sender);
            self.rack.detect(newest, window, |seq, sent| {
                // Still outstanding: not acknowledged and not sent again
                // since (a NAK may have queued it meanwhile).
                if delivery.last_sent(seq) != Some((sent, true)) {
                    return Verdict::Judged;
                }
                // Beyond the head only when the ACKs show the head's own
                // retransmission, sent no later than this one, lost.
                let head_lost_first = candidate.is_some_and(|h| h.retransmitted && h.since <= sent);
                if seq != head && !head_lost_first {
                    return Verdict::Wait;
                }
                if sender.requeue(seq) {
                    presumed += 1;
                }
                Verdict::Judged
            });
        }
        if let Some(h) = candidate {
            // A NAK's proof the ACK contradicts: the receiver had the
            // head by the time it sent that NAK, so it would have sent an
            // ACK beyond it within one ACK interval.
            let margin = if h.proof_doubted {
                window + crate::time::SYN_INTERVAL
            } else {
                window
            };
            let overtaken = newest.is_some_and(|n| n >= h.since + margin);
            let timed_out = now.saturating_duration_since(h.since)
                > self.head_wait(h.retransmitted || h.proof_doubted);
            if (overtaken || timed_out) && self.sender.requeue(head) {
                presumed += 1 + self.widen_head_repair(now, head);
                if overtaken && !h.retransmitted {
                    presumed += self.resend_rest_of_lost_nak(head);
                }
                if overtaken {
                    // The cumulative ACK stood still on a lost packet for a
                    // round trip and jumps once it is repaired: until this
                    // flight is delivered, rate samples show that stall (a
                    // window full of packets no ACK can release yet), not
                    // the path.
                    self.delivery.mark_app_limited(self.sender.pipe());
                }
                log::debug!(
                    "{} resends {head:?}: still missing {:?} after {}",
                    self.local_id,
                    now.saturating_duration_since(h.since),
                    if h.proof_doubted {
                        "a NAK proved it arrived"
                    } else {
                        "it left"
                    }
                );
            }
        }
        self.counters.packets_presumed_lost += presumed;
    }

    /// Resends more packets with the head `head` when the last head repair
    /// ended right before it: returns how many. A peer without SACK names
    /// one missing packet per ACK, so a tail loss (the last packets all
    /// lost: nothing after them arrived to draw a NAK) showed as a new
    /// head after each repair, and the head rule repaired one packet per
    /// round trip (700 packets in 16 s on loopback, `udt bench -P 64`
    /// under load, the peer's ACKs keeping the EXP timer quiet). Each
    /// repair that ends where the next head begins doubles the next (up to
    /// [`MAX_HEAD_REPAIR`]), as slow start would, with the outstanding
    /// packets that left before the last repair: a tail of n packets takes
    /// about log2 n round trips. A lone lost head (the packets after it
    /// arrived) is resent alone, as before: its repair's ACK moves past
    /// them, so no head follows it at once.
    fn widen_head_repair(&mut self, now: Instant, head: SeqNumber) -> u64 {
        let (burst, since) = match self.head_repair {
            Some(r) if r.end == head => ((r.burst * 2).min(MAX_HEAD_REPAIR), Some(r.at)),
            _ => (1, None),
        };
        let mut end = head.next();
        let mut queued = 0;
        if let Some(since) = since {
            let (delivery, sender) = (&self.delivery, &mut self.sender);
            for seq in delivery
                .outstanding_sent_by(since)
                .filter(|s| s.is_after(head))
                .take(burst as usize - 1)
            {
                if sender.requeue(seq) {
                    queued += 1;
                }
                end = seq.next();
            }
        }
        self.head_repair = Some(HeadRepair {
            end,
            burst,
            at: now,
        });
        queued
    }

    /// The first packet no ACK (full or light) covers yet, and since when
    /// it is judged; `None` when nothing is outstanding, or a NAK proved it
    /// arrived before any ACK named it (an ACK naming it withdraws an
    /// earlier proof).
    ///
    /// A proof that came after an ACK named it missing is doubted rather
    /// than believed: the NAK that reported it was lost, and a later one
    /// "proved" it because it reported a gap beyond. A UDT4 receiver sends
    /// no ACK at all once the sender confirmed the one naming its first
    /// missing packet, so believing the proof left nothing but the EXP
    /// timer to find the head lost (simulator S5-udt4, seed 1: 3 500 and
    /// 5 200 packets sent beyond such a head, then a timeout resending them
    /// all). Such a head is judged from the time of the proof, as a
    /// retransmission would be.
    pub(super) fn head_candidate(&self) -> Option<Head> {
        let seq = self.delivery.first_unacked();
        let (sent, retransmitted) = self.delivery.last_sent(seq)?;
        if !self.delivery.is_proved_delivered(seq) {
            return Some(Head {
                seq,
                since: sent,
                retransmitted,
                proof_doubted: false,
            });
        }
        let (proved, at) = self.head_proved_after_ack?;
        (proved == seq).then_some(Head {
            seq,
            since: at.max(sent),
            retransmitted,
            proof_doubted: true,
        })
    }

    /// How long the head may stay missing after it left before it is
    /// resent without evidence: longer than an ACK takes to report its
    /// arrival. Twice the smoothed RTT (it starts at UDT4's 100 ms
    /// placeholder and lags behind a longer path or a growing queue) plus
    /// 4 RTTVar and the ACK interval; a first transmission never reported
    /// lost is usually only waiting in a busy receiver's socket buffer (no
    /// loss at all on loopback), so it gets UDT4's shortest EXP time on top
    /// while the sender still sends: the packets after it will prove or
    /// report what arrived. Not once the sender can send nothing (its
    /// window full, or nothing left to write) to a peer that reports each
    /// loss once: no new packet will draw a NAK then, and the EXP timer
    /// came first (real S2 into libudt0: the head's NAK lost, the window
    /// full, 300 ms of silence and the whole window resent). Resending too
    /// early costs one duplicate.
    fn head_wait(&self, retransmitted: bool) -> Duration {
        let wait = 2 * self.rtt.rtt() + 4 * self.rtt.rtt_var() + crate::time::SYN_INTERVAL;
        let stalled = !self.peer_repeats_naks && !self.sender.has_work();
        if retransmitted || stalled {
            wait
        } else {
            wait + crate::time::MIN_EXP_INTERVAL
        }
    }

    /// When the head is due for its timed resend (see
    /// [`head_wait`](Self::head_wait)), if it is outstanding and not queued
    /// already. Not for a peer that repeats its loss reports: ours never
    /// falls silent while it misses data (its periodic NAK), and the
    /// packets it sends run the rule anyway. A UDT4 receiver sends nothing
    /// at all while its confirmed first missing packet stays missing, and a
    /// sender whose window is full sends nothing either: without this timer
    /// the rule waited for a packet that never came, and the EXP timer
    /// resent everything unacknowledged instead.
    ///
    /// The peer need not have been heard from since the head left if the
    /// head is a retransmission: when it is lost with the window full, the
    /// UDT4 receiver has nothing to answer, and only a resend of the head
    /// breaks the silence. Waiting for the EXP timer there cost 300 ms and
    /// a resend of the whole window, most of it duplicates (simulator
    /// S5-udt4, seed 1: two such timeouts in the first two seconds). Each
    /// resend while the peer stays silent doubles the wait, and once the
    /// EXP timer fired the head is its own again: a peer that is gone gets
    /// a single packet or two before UDT4's backoff, not a stream.
    pub(super) fn head_loss_deadline(&self) -> Option<Instant> {
        let h = self.head_candidate()?;
        // Silent since the head left: a first transmission no NAK reported
        // stays the EXP timer's (nothing says the peer is there), and so
        // does everything once the EXP timer fired (the peer was silent
        // for a whole EXP interval: UDT4's backoff takes over).
        let silent = self.last_heard <= h.since
            && (self.exp_count > 1 || !(h.retransmitted || h.proof_doubted));
        if self.peer_repeats_naks
            || silent
            || self.sender.unacked() == 0
            || self.sender.is_queued(h.seq)
            || self.head_timer_spent == Some((h.seq, h.since))
        {
            return None;
        }
        let backoff = 1u32 << self.silent_head_resends.min(MAX_SILENT_BACKOFF_STEPS);
        let wait = self.head_wait(h.retransmitted || h.proof_doubted) * backoff;
        // The rule needs strictly more than the wait.
        Some(h.since + wait + Duration::from_micros(1))
    }

    /// The loss-detection timer fired: judge the head (and what the
    /// evidence allows) as if a NAK had come.
    pub(super) fn on_loss_detection_timer(&mut self, now: Instant) {
        self.head_timer_spent = self.head_candidate().map(|h| (h.seq, h.since));
        let before = self.counters.packets_presumed_lost;
        self.detect_losses(now, false);
        if self.counters.packets_presumed_lost > before {
            // Hearing from the peer resets it (`on_datagram`).
            self.silent_head_resends = self.silent_head_resends.saturating_add(1);
        }
    }

    /// `head` was a first transmission whose NAK was lost (the ACKs name it
    /// missing, later packets arrived, no NAK reported it). The same NAK
    /// may have reported the packets right after it: when the next
    /// reported loss is near (`MAX_LOST_NAK_RUN`), resends those too,
    /// instead of learning of each from the ACKs one round trip after the
    /// other. Returns how many it resent. (After Startup's overshoot into a
    /// UDT4 receiver, NAKs of neighbouring gaps lost on the way back left
    /// the window stuck for a round trip per packet, simulator S3 seed 1.)
    fn resend_rest_of_lost_nak(&mut self, head: SeqNumber) -> u64 {
        let Some(last) = self.delivery.unreported_run_after(head, MAX_LOST_NAK_RUN) else {
            return 0;
        };
        let mut resent = 0;
        let mut seq = head.next();
        while !seq.is_after(last) {
            if self.delivery.last_sent(seq).is_some_and(|(_, r)| !r) && self.sender.requeue(seq) {
                resent += 1;
            }
            seq = seq.next();
        }
        log::debug!(
            "{} resends {head:?}..={last:?}: the rest of a lost NAK's range",
            self.local_id
        );
        resent
    }

    /// Gives the controller the delivery-rate sample of an ACK that
    /// acknowledged new packets; returns whether there was one.
    fn on_delivery(&mut self, now: Instant, ack: SeqNumber) -> bool {
        let sample = self.delivery.on_ack(now, ack);
        self.sender.set_sacked(self.delivery.sacked());
        let Some(sample) = sample else {
            return false;
        };
        let ctx = self.cc_context(now);
        self.cc.on_ack_sample(&ctx, &sample);
        if let Some(rate) = sample.rate {
            self.size_send_buffer(rate.delivery_rate());
        }
        true
    }

    /// Grows the send buffer to follow the bandwidth-delay product, taking
    /// the delivery rate no higher than the receiver's measured arrival
    /// speed (a cumulative ACK after a repaired hole overstates the rate).
    fn size_send_buffer(&mut self, delivery_rate: f64) {
        if !self.sender.is_buffer_limited() {
            return;
        }
        let speed = f64::from(self.sender.rates().latest_recv_rate(self.last_now));
        let rate = if speed > 0.0 && speed * 4.0 >= delivery_rate {
            delivery_rate.min(speed)
        } else {
            delivery_rate
        };
        if let Some(packets) = self.send_sizer.observe(rate, self.rtt.rtt(), self.last_now) {
            log::debug!("{} send buffer grows to {packets} packets", self.local_id);
            self.sender.grow_buffer(packets);
            self.writable_pending = true;
        }
    }

    /// Full or medium ACK (UDT4 `processCtrl` case 2, §6.5).
    fn on_ack(&mut self, now: Instant, ack: &Ack) {
        self.counters.acks_received += 1;
        let outcome = self.sender.on_ack(now, ack);
        if self.check_desync(now) {
            return;
        }
        if outcome == AckOutcome::Invalid {
            self.counters.dropped.invalid_control += 1;
            log::debug!(
                "{} ignored an ACK for {:?} beyond what was sent ({:?})",
                self.local_id,
                ack.ack,
                self.sender.current()
            );
            return;
        }
        // Confirm every plausible ACK, repeated ones too, so the receiver
        // gets its RTT sample (UDT4 sends one ACK2 per full/medium ACK),
        // except one that acknowledges everything while the peer's
        // application has not read it all: unconfirmed, it keeps coming back
        // with the peer's free buffer until the reader catches up
        // (`Sender::withholds_ack2`, docs/interop.md).
        if self.sender.withholds_ack2() {
            self.counters.ack2s_withheld += 1;
        } else {
            self.queue_control(ControlItem::Ack2(ack.ack_seq));
            self.counters.ack2s_sent += 1;
        }
        if outcome == AckOutcome::Advanced {
            self.writable_pending = true;
            // The receiver's estimate before it measured anything is no
            // sample: taken as the first one, it held ours near 100 ms for
            // dozens of ACKs on a 1 ms path (our first sample replaces the
            // initial guess), and a NAK of a packet resent less than that
            // "RTT" ago counts as stale.
            if ack.rtt_us > 0
                && !crate::estimate::RttEstimator::is_initial_report(ack.rtt_us, ack.rtt_var_us)
            {
                let sample = Duration::from_micros(u64::from(ack.rtt_us)).min(MAX_RTT_SAMPLE);
                self.rtt.update(sample);
            }
            self.on_delivery(now, ack.ack);
            let ctx = self.cc_context(now);
            self.cc.on_ack(&ctx, ack.ack);
            self.apply_cc();
        } else if self.on_delivery(now, ack.ack) {
            // A repeated ACK: a light ACK may have covered less, and
            // anything new still counts.
            self.apply_cc();
        }
        self.detect_losses(now, true);
        // A repeated ACK may be the one that reports the peer drained.
        if let State::Closing { .. } = self.state {
            if self.sender.is_peer_drained() {
                self.queue_final_ack(now);
                self.queue_shutdown();
                self.enter_closed(now, ConnectionError::LocallyClosed);
            }
        }
    }

    /// NAK (UDT4 `processCtrl` case 3, §6.3): queue retransmissions.
    fn on_nak(&mut self, now: Instant, ranges: &LossRanges<'_>) {
        self.counters.naks_received += 1;
        // A report of a number retransmitted less than a smoothed RTT ago
        // was sent before that retransmission could arrive.
        let since = now.checked_sub(self.rtt.rtt()).unwrap_or(now);
        let delivery = &self.delivery;
        let outcome = self
            .sender
            .on_nak(now, ranges, |seq| delivery.retransmitted_since(seq, since));
        if self.check_desync(now) {
            return;
        }
        self.counters.dropped.invalid_control += outcome.invalid;
        self.counters.packets_reported_lost += u64::from(outcome.added);
        if ranges.iter().nth(1).is_some() {
            // More than one range: a list of the peer's losses, which a
            // UDT4 receiver never sends (its only NAK reports the one gap
            // it just found); ours repeats its whole list every NAK
            // interval. (Not "a NAK with nothing new": after an EXP
            // timeout a UDT4 receiver's first report of a gap can name
            // packets just resent.)
            self.peer_repeats_naks = true;
        }
        self.delivery.on_lost(outcome.added, outcome.events);
        // A NAK also proves which packets arrived (delivery.rs).
        let sender = &self.sender;
        let sample = self
            .delivery
            .on_nak(now, ranges, |seq| sender.is_queued(seq));
        self.sender.set_sacked(self.delivery.sacked());
        // An ACK named the head missing before this NAK proved it arrived
        // (a proof given before any ACK named it would have been withdrawn
        // by that ACK): doubt it (`head_candidate`).
        let head = self.delivery.first_unacked();
        if self.delivery.is_proved_delivered(head)
            && self.head_proved_after_ack.is_none_or(|(h, _)| h != head)
        {
            self.head_proved_after_ack = Some((head, now));
        }
        let mut changed = false;
        if let Some(sample) = sample {
            let ctx = self.cc_context(now);
            self.cc.on_ack_sample(&ctx, &sample);
            if let Some(rate) = sample.rate {
                self.size_send_buffer(rate.delivery_rate());
            }
            changed = true;
        }
        if let Some(first) = outcome.first_lost {
            let ctx = self.cc_context(now);
            self.cc.on_loss(&ctx, first, outcome.added);
            changed = true;
        }
        if changed {
            self.apply_cc();
        }
        self.detect_losses(now, false);
    }

    /// Ends the connection when the receiver keeps missing data a full ACK
    /// released (a forged or corrupted ACK, issue 10 item 3): that data
    /// cannot be resent, and waiting would hang both sides. Returns true
    /// when it did.
    fn check_desync(&mut self, now: Instant) -> bool {
        if self.sender.is_desynchronized(now) && !self.is_closed() {
            log::warn!(
                "{} peer {} keeps missing data it acknowledged: connection broken",
                self.local_id,
                self.peer_addr
            );
            self.queue_shutdown();
            self.enter_closed(now, ConnectionError::DataLost);
            return true;
        }
        false
    }

    /// ACK2: an RTT sample for the receiver side (§6.6).
    fn on_ack2(&mut self, now: Instant, ack_seq: AckSeqNumber) {
        if let Some(rtt) = self.receiver.on_ack2(now, ack_seq) {
            self.rtt.update(rtt.min(MAX_RTT_SAMPLE));
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
        let window = self.config.recv_buffer_packets;
        if !self.receiver.on_drop_request(msg, first, last, window) {
            self.counters.dropped.invalid_control += 1;
            return;
        }
        if self.is_readable() {
            self.readable_pending = true;
        }
    }
}
