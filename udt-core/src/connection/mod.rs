//! One established UDT connection, as a sans-I/O state machine.
//!
//! The public surface lives here; the protocol logic is split by concern:
//! - `sender.rs`: the sending half as a component: ACK, light-ACK and NAK
//!   processing, loss detection on timeout, pacing and packing data;
//! - `receiver.rs`: the receiving half as a component: storing data, gap
//!   detection, building ACKs and NAKs and deciding when they are due;
//! - `input.rs`: decodes a datagram and dispatches it to the components;
//! - `output.rs`: the control queue and the data path;
//! - `timers.rs`: the protocol timers.
//!
//! The connection owns what both halves share: the RTT estimator, the
//! congestion controller, the control queue, the counters and the state.

use std::collections::VecDeque;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;

use crate::cc::{CcContext, CongestionControl, DeliveryTracker};
use crate::config::{Config, SocketType};
use crate::error::{ConnectionError, ReadError, WriteError};
use crate::estimate::{BufferSizer, RttEstimator};
use crate::handshake::ConnectParams;
use crate::packet::Handshake;
use crate::secure::{sealed_payload_size, PeerIdentity, SealState};
use crate::send_buffer::SendBufferError;
use crate::seq::SocketId;
use crate::stats::Stats;

mod advertised;
#[cfg(test)]
mod close_tests;
mod input;
mod output;
mod rack;
#[cfg(test)]
mod rack_tests;
mod receiver;
#[cfg(test)]
mod rendezvous_secure_tests;
#[cfg(test)]
mod rendezvous_tests;
#[cfg(test)]
mod scripted_tests;
mod sealed;
#[cfg(test)]
mod secure_tests;
mod sender;
#[cfg(test)]
mod tests;
mod timers;

pub use output::{PayloadRef, Transmit, TransmitKind};
pub use timers::Timer;

use output::ControlItem;
use rack::Rack;
use receiver::Receiver;
use sender::{SendLimit, Sender};

/// The most control packets waiting to be sent. Control packets are
/// produced by input and timers and drained right after by the driver, so
/// the queue only fills when a driver stops draining; beyond this bound new
/// items are dropped and counted.
const CONTROL_QUEUE_LIMIT: usize = 256;

/// How long a listener-side or rendezvous connection holds back its first
/// data packet unless the peer speaks first.
///
/// A UDT4 caller is not ready for data when our handshake response reaches
/// it: its connecting thread must process the response and register the
/// socket with the receive queue's hash (`CRcvQueue::setNewEntry`, inserted
/// by the worker on its next loop), and until then UDT4 drops every data
/// packet addressed to it (queue.cpp `CRcvQueue::worker`: no hash entry, and
/// `storePkt` hands it to the connecting thread, which discards it; a
/// rendezvous peer even consumes the first data packet to complete).
/// Measured on Debian's libudt0: the first ~6 packets sent within 0.7 ms of
/// the response were lost. The loss then ends slow start at the tiny rate
/// measured so far, and the native controller takes many seconds to recover.
/// A UDT4 listener never sends that early (its application must `accept`
/// first). One SYN covers the caller's set-up with a wide margin and is
/// released at once by any packet from the peer, which proves it is ready.
const FIRST_DATA_HOLD: Duration = crate::time::SYN_INTERVAL;

/// Where a connection is in its life.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum State {
    /// Data flows both ways.
    Connected,
    /// `close` was called: the last data is being delivered, and read by
    /// the peer's application where its ACKs tell, before a shutdown is
    /// sent, until `deadline` (the linger time).
    Closing {
        /// When to give up; `None` never happens in practice (linger off
        /// closes at once) but keeps the type honest.
        deadline: Option<Instant>,
    },
    /// The connection is over; data already received can still be read.
    Closed(ConnectionError),
}

/// Room, in packets, that makes a blocked writer worth waking
/// ([`Connection::writer_due`]): what one light ACK frees (one per 64
/// packets received), so a fast flow's writer is woken as before, once per
/// light ACK, and a slow flow's, whose timer ACKs free a few packets each,
/// once per ~90 kB instead of per ACK.
pub const WRITER_WAKE_PACKETS: u32 = 64;

/// Something the application may want to react to.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Event {
    /// New data or a whole message can be read.
    Readable,
    /// Send buffer space was freed.
    Writable,
    /// The connection ended for this reason.
    Closed(ConnectionError),
}

/// One UDT connection after its handshake.
///
/// # Driving it
///
/// The driver (udt-mux, or the simulator) owns the socket and the clock and
/// calls, in this order after any input:
/// 1. inputs: [`handle_datagram`](Self::handle_datagram) for each datagram
///    addressed to this connection, [`handle_timeout`](Self::handle_timeout)
///    when [`poll_timeout`](Self::poll_timeout) has passed (extra calls are
///    harmless no-ops);
/// 2. [`poll_transmit`](Self::poll_transmit) until it returns `None`, sending
///    each datagram;
/// 3. [`next_send_time`](Self::next_send_time) (the send-queue key: when the
///    next data packet may leave; a time in the past means "now") and
///    [`poll_timeout`](Self::poll_timeout) (the protocol timers);
/// 4. [`poll_event`](Self::poll_event) until `None`, to wake the application.
///
/// Application commands ([`write`](Self::write), [`read`](Self::read),
/// [`send_msg`](Self::send_msg), [`recv_msg`](Self::recv_msg),
/// [`close`](Self::close)) never block; after them the driver runs steps 2–4
/// again. `now` must never go backwards between calls.
///
/// Bad input from the network never returns an error: it is counted in
/// [`Stats::dropped`] and logged at debug level.
pub struct Connection {
    config: Arc<Config>,
    local_id: SocketId,
    peer_id: SocketId,
    peer_addr: SocketAddr,
    socket_type: SocketType,
    rendezvous: bool,
    mss: u32,
    payload_size: usize,
    /// Listener side: the final handshake response, re-sent when the
    /// caller repeats its request because our first answer was lost.
    response: Option<Handshake>,
    /// Our own handshake values, for `-2` replies in rendezvous mode.
    send_isn: crate::seq::SeqNumber,
    /// The reflexive address the peer reported for us, if any.
    self_ip: Option<std::net::IpAddr>,
    /// Epoch of the 32-bit wire timestamps.
    start: Instant,
    /// The latest `now` seen, for commands that take no time argument.
    last_now: Instant,
    state: State,
    sender: Sender,
    receiver: Receiver,
    /// When the next datagram reached the host, if the driver said
    /// ([`note_arrival`](Self::note_arrival)).
    arrival_hint: Option<Instant>,
    rtt: RttEstimator,
    cc: Box<dyn CongestionControl>,
    /// Per-packet delivery records for the controller's rate samples.
    delivery: DeliveryTracker,
    /// Retransmissions in flight, for the sender's own loss detection.
    rack: Rack,
    /// The peer sent a NAK listing several losses: it reports its loss
    /// list again and again (our periodic NAK), so lost retransmissions
    /// get reported; a UDT4 receiver reports each gap once, alone.
    peer_repeats_naks: bool,
    /// The head (and when it left) the loss-detection timer last fired
    /// for without a resend: its deadline is not armed again for it.
    head_timer_spent: Option<(crate::seq::SeqNumber, Instant)>,
    /// Timed head resends since the peer was last heard from: each one
    /// doubles the wait for the next (`Connection::head_loss_deadline`).
    silent_head_resends: u32,
    /// The last head repair and the packets resent with it
    /// (`Connection::widen_head_repair`).
    head_repair: Option<input::HeadRepair>,
    /// The head a NAK proved arrived after an ACK had named it missing,
    /// and when (`Connection::head_candidate`).
    head_proved_after_ack: Option<(crate::seq::SeqNumber, Instant)>,
    /// Send and receive buffer sizes, following the measured BDP up to
    /// the configured memory cap.
    send_sizer: BufferSizer,
    recv_sizer: BufferSizer,
    control: VecDeque<ControlItem>,
    /// Last time any packet arrived from the peer.
    last_heard: Instant,
    /// Last time any packet left for the peer.
    last_send_time: Instant,
    /// An ACK nudge went out since the peer was last heard from
    /// (`Connection::ack_nudge_due`): one per silence.
    ack_nudged: bool,
    /// Where the keep-alive grid starts; `None`: no grid (see
    /// [`align_soft_timers`](Self::align_soft_timers)).
    timer_origin: Option<Instant>,
    /// Base and count of the EXP backoff.
    exp_base: Instant,
    exp_count: u32,
    counters: Stats,
    /// Shutdowns re-sent after close, in answer to a peer that missed ours.
    shutdowns_repeated: u32,
    readable_pending: bool,
    writable_pending: bool,
    /// Packets of room the last message that did not fit needs (0: none):
    /// until that much is free, [`writer_due`](Self::writer_due) holds, so
    /// that a writer of large messages is not woken (nor a poller told) to
    /// fail again. A message that fits clears it.
    message_waiting_packets: u32,
    /// The application wrote while nothing was waiting to be sent, since
    /// time was last observed: `write` takes no time, so the interval up to
    /// the next observation is the application's (it had nothing to send
    /// until then), not the state the write left behind.
    wrote_while_idle: bool,
    /// `SendLimits::driver` when the last data packet left: the growth
    /// since is how long the driver has kept the sender waiting (a pacing
    /// slot passed with the window open and data queued).
    driver_at_last_send: Duration,
    closed_pending: bool,
    /// Secure mode: the packet keys, counters and replay window; `None`
    /// for plain UDT4.
    seal: Option<SealState>,
    /// Secure mode: who the peer proved to be in the handshake.
    peer_identity: Option<PeerIdentity>,
    /// Secure listener: the extension appended to a re-sent response.
    response_ext: Vec<u8>,
    /// Secure mode: where a borrowed datagram is copied to be opened
    /// ([`handle_datagram`](Self::handle_datagram)).
    open_buf: Vec<u8>,
    /// Secure listener or rendezvous responder: no authentic packet from
    /// the peer yet, so its key agreement may have failed (a code is only
    /// checked by the initiator). A refusal from the peer ends the
    /// connection with [`ConnectionError::AuthFailed`] until then.
    unconfirmed: bool,
}

impl std::fmt::Debug for Connection {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Connection")
            .field("local_id", &self.local_id)
            .field("peer_id", &self.peer_id)
            .field("peer_addr", &self.peer_addr)
            .field("state", &self.state)
            .finish_non_exhaustive()
    }
}

impl Connection {
    /// Creates the connection a finished handshake describes.
    pub fn new(params: ConnectParams, config: Arc<Config>, now: Instant) -> Self {
        let mss = params
            .mss
            .clamp(crate::config::MIN_MSS, crate::config::MAX_MSS);
        // MIN_MSS is larger than the overhead (with the seal's counter and
        // tag too), so this never underflows: a sealed data packet still
        // fits the MSS.
        let room = mss as usize - crate::config::PACKET_OVERHEAD;
        let payload_size = if params.secure.is_some() {
            sealed_payload_size(room)
        } else {
            room
        };
        let (seal, peer_identity, response_ext) = match params.secure {
            Some(s) => (
                Some(SealState::new(&s.keys)),
                Some(s.keys.peer.clone()),
                s.response_ext,
            ),
            None => (None, None, Vec::new()),
        };
        let send_capacity = config.send_buffer_packets.max(2);
        let recv_capacity = config.recv_buffer_packets.max(2);
        let sender = Sender::new(
            send_capacity,
            payload_size,
            params.send_isn,
            params.peer_flow_window.max(2),
            now,
        );
        let receiver = Receiver::new(
            recv_capacity,
            payload_size,
            params.recv_isn,
            now,
            params.socket_type == SocketType::Stream,
            config.stall_light_acks,
            config.early_rate_reports,
        );
        let send_sizer = BufferSizer::new(send_capacity, config.buffer_cap_packets(send_capacity));
        let recv_sizer = BufferSizer::new(recv_capacity, config.buffer_cap_packets(recv_capacity));
        let mut conn = Connection {
            cc: config.congestion.build(),
            config,
            local_id: params.local_socket_id,
            peer_id: params.peer_socket_id,
            peer_addr: params.peer_addr,
            socket_type: params.socket_type,
            rendezvous: params.rendezvous,
            mss,
            payload_size,
            response: params.response,
            send_isn: params.send_isn,
            self_ip: params.self_ip,
            start: now,
            last_now: now,
            state: State::Connected,
            sender,
            receiver,
            arrival_hint: None,
            rtt: RttEstimator::new(),
            delivery: DeliveryTracker::new(params.send_isn, now),
            rack: Rack::new(),
            peer_repeats_naks: false,
            head_timer_spent: None,
            silent_head_resends: 0,
            head_repair: None,
            head_proved_after_ack: None,
            send_sizer,
            recv_sizer,
            control: VecDeque::with_capacity(32),
            last_heard: now,
            ack_nudged: false,
            last_send_time: now,
            timer_origin: None,
            exp_base: now,
            exp_count: 1,
            counters: Stats::default(),
            shutdowns_repeated: 0,
            readable_pending: false,
            writable_pending: false,
            message_waiting_packets: 0,
            wrote_while_idle: false,
            driver_at_last_send: Duration::ZERO,
            closed_pending: false,
            seal,
            peer_identity,
            response_ext,
            open_buf: Vec::new(),
            unconfirmed: false,
        };
        conn.unconfirmed = conn.seal.is_some() && conn.response.is_some();
        let ctx = conn.cc_context(now);
        conn.cc.init(&ctx);
        conn.apply_cc();
        // Only a caller knows the peer is ready when it connects: a UDT4
        // listener registered the socket before answering.
        if conn.response.is_some() || conn.rendezvous {
            conn.sender.hold_first_data(now + FIRST_DATA_HOLD);
        }
        if let (true, Some(response)) = (conn.rendezvous, conn.response) {
            // A secure rendezvous responder completed on the initiator's
            // first message; the initiator completes on this −1 with our
            // half of the key agreement (repeated when it asks again).
            conn.queue_control(ControlItem::Handshake(response));
        }
        log::debug!(
            "{} connected to {} (peer id {}, mss {}, send isn {:?}, cc {})",
            conn.local_id,
            conn.peer_addr,
            conn.peer_id,
            mss,
            params.send_isn,
            conn.cc.name()
        );
        conn
    }

    // ----- (A) getters -----

    /// This side's socket ID (the destination of the peer's packets).
    pub fn socket_id(&self) -> SocketId {
        self.local_id
    }

    /// The peer's socket ID.
    pub fn peer_socket_id(&self) -> SocketId {
        self.peer_id
    }

    /// True for a secure-mode connection: every packet but handshakes is
    /// authenticated, and data is encrypted.
    pub fn is_secure(&self) -> bool {
        self.seal.is_some()
    }

    /// The identity the peer proved in the secure handshake (its static
    /// key, or that it knew the pre-shared key or code); `None` for a
    /// plain connection.
    pub fn peer_identity(&self) -> Option<&PeerIdentity> {
        self.peer_identity.as_ref()
    }

    /// Secure mode: the sending half of the keys, for the endpoint to seal
    /// the repeated shutdowns of this connection once it is finished.
    pub(crate) fn tombstone_sealer(&self) -> Option<crate::secure::Sealer> {
        self.seal.as_ref().map(SealState::sealer)
    }

    /// The peer's address; packets from any other address are dropped.
    pub fn peer_addr(&self) -> SocketAddr {
        self.peer_addr
    }

    /// Our own address as the peer saw it during the handshake, if it said.
    pub fn reflexive_ip(&self) -> Option<std::net::IpAddr> {
        self.self_ip
    }

    /// Stream or message mode.
    pub fn socket_type(&self) -> SocketType {
        self.socket_type
    }

    /// True for a connection set up by rendezvous.
    pub fn is_rendezvous(&self) -> bool {
        self.rendezvous
    }

    /// The negotiated MSS, headers included.
    pub fn mss(&self) -> u32 {
        self.mss
    }

    /// Payload bytes per full data packet.
    pub fn payload_size(&self) -> usize {
        self.payload_size
    }

    /// When the last packet from the peer arrived; the connection is
    /// declared dead `peer_idle_timeout` after it.
    pub fn last_heard(&self) -> Instant {
        self.last_heard
    }

    /// The current state.
    pub fn state(&self) -> State {
        self.state
    }

    /// True once the connection has ended (data may still be readable).
    pub fn is_closed(&self) -> bool {
        matches!(self.state, State::Closed(_))
    }

    /// True once the connection has ended and has nothing left to send: the
    /// driver may forget it once the application has read what it wants.
    pub fn is_finished(&self) -> bool {
        self.is_closed() && self.control.is_empty()
    }

    /// True when [`read`](Self::read) or [`recv_msg`](Self::recv_msg) would
    /// return something other than `WouldBlock`.
    pub fn is_readable(&self) -> bool {
        self.is_closed()
            || match self.socket_type {
                SocketType::Stream => self.receiver.buffer().readable_bytes() > 0,
                SocketType::Message => self.receiver.buffer().has_message(),
            }
    }

    /// Bytes of memory the send and receive buffers hold now. They grow
    /// with a burst and give the memory back once the connection has been
    /// quiet (nothing sent) for a keep-alive interval with both buffers
    /// empty.
    pub fn buffer_memory(&self) -> usize {
        self.sender.buffer().memory_bytes() + self.receiver.buffer().memory_bytes()
    }

    /// Puts the keep-alive timer on a grid counted from `origin`: a
    /// keep-alive is due at the first grid point (a quarter of the
    /// keep-alive interval apart) after the interval has passed. The
    /// endpoint gives all its connections one origin, so a thousand idle
    /// connections wake their driver four times a second, each time for a
    /// batch of keep-alives, instead of a thousand times for one each (the
    /// wake-ups, not the packets, were the cost: `docs/performance.md`).
    /// A keep-alive leaves at most a quarter interval later than without
    /// the grid, far inside every peer's dead-peer detection.
    pub fn align_soft_timers(&mut self, origin: Instant) {
        self.timer_origin = Some(origin);
    }

    /// Narrows the receive window to `packets` (`None`: the configured
    /// buffer again, announced to the peer at once). The endpoint narrows
    /// it for connections waiting in the accept queue, so each holds at
    /// most that much of a peer's data until the application takes it.
    pub fn limit_receive_window(&mut self, packets: Option<u32>) {
        self.receiver.set_window_limit(packets);
    }

    /// True when a writer blocked on a full send buffer is worth waking,
    /// and what a poller reports as writable: [`WRITER_WAKE_PACKETS`]
    /// packets of room (a quarter of a smaller buffer), or room for the
    /// last message that did not fit, are free, or the connection is no
    /// longer open. Each acknowledgement frees what it covers, a packet or
    /// two on a slow flow, and a writer woken for each would copy a few
    /// kilobytes per wake-up (Linux likewise wakes a socket's writers only
    /// once part of its send buffer is free). [`Event::Writable`] is
    /// reported either way, and the room only grows while nobody writes,
    /// so the wake-up comes.
    pub fn writer_due(&self) -> bool {
        let buffer = self.sender.buffer();
        let worth = WRITER_WAKE_PACKETS.min(buffer.capacity() / 4).max(1);
        let needed = worth
            .max(self.message_waiting_packets)
            .min(buffer.capacity().max(1));
        !matches!(self.state, State::Connected) || buffer.free_packets() >= needed
    }

    /// Sets the send buffer to `packets` packets: what writes may queue
    /// from now on, never below what it holds already. Like
    /// [`Config::send_buffer_packets`] it is a starting size, which still
    /// grows with the path's bandwidth-delay product up to the memory cap.
    /// A server that learns only after `accept` how many connections a
    /// client will use sizes each this way.
    pub fn set_send_buffer_packets(&mut self, packets: u32) {
        let capacity = self.sender.resize_buffer(packets);
        self.send_sizer = BufferSizer::new(capacity, self.config.buffer_cap_packets(capacity));
        // More room may let a blocked writer go on.
        self.writable_pending = true;
    }

    /// Bytes that can be written right now without `WouldBlock`.
    pub fn send_buffer_free(&self) -> usize {
        self.sender.buffer().free_bytes()
    }

    /// True when every byte written has been acknowledged by the peer.
    pub fn is_send_buffer_empty(&self) -> bool {
        self.sender.buffer().is_empty()
    }

    /// A snapshot of this connection's statistics.
    pub fn stats(&self) -> Stats {
        let mut s = self.counters;
        s.elapsed = self.last_now.saturating_duration_since(self.start);
        s.rtt = self.rtt.rtt();
        s.rtt_var = self.rtt.rtt_var();
        s.link_capacity_pps = self.sender.rates().bandwidth();
        s.recv_rate_pps = self.sender.rates().recv_rate();
        s.local_recv_rate_pps = self.receiver.recv_speed();
        s.send_period = self.sender.period();
        s.flow_window = self.sender.flow_window();
        s.congestion_window = self.sender.cwnd();
        s.packets_in_flight = self.sender.in_flight();
        s.send_buffer_free_bytes = self.sender.buffer().free_bytes();
        s.send_buffer_held_bytes = self.sender.buffer().held_bytes();
        s.send_buffer_packets = self.sender.buffer().capacity();
        s.recv_buffer_packets = self.receiver.buffer().capacity();
        s.bytes_received_direct = self.receiver.buffer().direct_bytes();
        s.peer_unread_packets = self.sender.peer_unread();
        s
    }

    // ----- (B) inputs -----

    /// Processes one datagram the driver routed to this connection.
    /// Malformed or unexpected packets are counted and dropped.
    pub fn handle_datagram(&mut self, now: Instant, remote: SocketAddr, datagram: &[u8]) {
        if self.accept_source(now, remote) {
            if self.seal.is_some() {
                // Borrowed: a secure packet is opened in a copy (a driver
                // that owns its buffers saves it with `handle_datagram_mut`).
                let mut copy = std::mem::take(&mut self.open_buf);
                copy.clear();
                copy.extend_from_slice(datagram);
                self.on_secure_datagram(now, &mut copy);
                self.open_buf = copy;
            } else {
                self.on_datagram(now, datagram);
            }
        }
        self.end_datagram();
    }

    /// As [`handle_datagram`](Self::handle_datagram), for a driver that
    /// owns the datagram's buffer: a secure connection decrypts the
    /// datagram where it lies instead of copying it first. The buffer's
    /// contents are unspecified afterwards (a plain connection leaves
    /// them as they were).
    pub fn handle_datagram_mut(&mut self, now: Instant, remote: SocketAddr, datagram: &mut [u8]) {
        if self.accept_source(now, remote) {
            if self.seal.is_some() {
                self.on_secure_datagram(now, datagram);
            } else {
                self.on_datagram(now, datagram);
            }
        }
        self.end_datagram();
    }

    /// The driver's arrival time ([`note_arrival`](Self::note_arrival)) was
    /// this datagram's, whether it reached the packet handling or was
    /// dropped on the way (a wrong source, a packet that does not open):
    /// it must never date the next one.
    fn end_datagram(&mut self) {
        self.arrival_hint = None;
    }

    /// Notes the time; false (and counted) when `remote` is not the peer.
    fn accept_source(&mut self, now: Instant, remote: SocketAddr) -> bool {
        self.observe_time(now);
        if remote != self.peer_addr {
            self.counters.dropped.wrong_source += 1;
            log::debug!(
                "{} dropped a datagram from {remote}: peer is {}",
                self.local_id,
                self.peer_addr
            );
            return false;
        }
        true
    }

    /// A datagram before the first authentic one of a secure connection
    /// whose peer initiated the key agreement: the peer's refusal (a
    /// rejection with a secure extension saying "authentication failed",
    /// addressed to us: its sender saw our response) ends the connection;
    /// the first packet that authenticates confirms the keys.
    fn on_unconfirmed_datagram(&mut self, now: Instant, datagram: &mut [u8]) {
        if crate::secure::handshake_ext::is_auth_refusal(datagram)
            && crate::packet::decode(datagram).is_ok_and(
                |p| matches!(p, crate::packet::Packet::Control(c) if c.dest == self.local_id),
            )
        {
            log::info!(
                "{}: {} refused our key agreement (wrong code or key)",
                self.local_id,
                self.peer_addr
            );
            self.enter_closed(now, ConnectionError::AuthFailed);
            return;
        }
        // Handshakes are not sealed: only a packet that opened confirms.
        // (Read before opening, which overwrites the body.)
        let handshake = crate::packet::is_control(datagram)
            && datagram.get(..2).is_some_and(|w| w == [0x80, 0x00]);
        let dropped = (
            self.counters.dropped.unauthenticated,
            self.counters.dropped.replayed,
        );
        self.on_sealed_datagram(now, datagram);
        let after = (
            self.counters.dropped.unauthenticated,
            self.counters.dropped.replayed,
        );
        if dropped == after && !handshake {
            self.unconfirmed = false;
        }
    }

    /// Fires the protocol timers that are due. Calling it early is a no-op.
    pub fn handle_timeout(&mut self, now: Instant) {
        self.observe_time(now);
        self.fire_due_timers(now);
    }

    // ----- (C) application commands -----

    /// Queues stream data; returns how many bytes were accepted.
    ///
    /// # Errors
    /// `WouldBlock` when the send buffer is full, `WrongMode` on a message
    /// connection, `Closed` once `close` was called or the connection ended.
    pub fn write(&mut self, data: &[u8]) -> Result<usize, WriteError> {
        if self.socket_type != SocketType::Stream {
            return Err(WriteError::WrongMode);
        }
        self.check_writable()?;
        if data.is_empty() {
            return Ok(0);
        }
        // Idle, not merely unable to send: a write while a window holds
        // the sender leaves that time to the window.
        self.wrote_while_idle |= self.sender.is_idle();
        let n = self.sender.write_stream(data, self.last_now);
        if n == 0 {
            return Err(WriteError::WouldBlock);
        }
        Ok(n)
    }

    /// Queues one message with an optional time-to-live; `in_order` asks the
    /// receiver to deliver it only after every earlier in-order message.
    ///
    /// # Errors
    /// `WouldBlock` when it does not fit now, `MessageTooLarge` when it can
    /// never fit, `WrongMode` on a stream connection, `Closed` after close.
    pub fn send_msg(
        &mut self,
        now: Instant,
        msg: &[u8],
        ttl: Option<Duration>,
        in_order: bool,
    ) -> Result<(), WriteError> {
        self.observe_time(now);
        if self.socket_type != SocketType::Message {
            return Err(WriteError::WrongMode);
        }
        self.check_writable()?;
        match self.sender.write_message(msg, ttl, in_order, now) {
            Ok(()) => {
                self.message_waiting_packets = 0;
                Ok(())
            }
            Err(SendBufferError::Full) => {
                let packets = self.sender.buffer().blocks_for(msg.len());
                self.message_waiting_packets = u32::try_from(packets).unwrap_or(u32::MAX);
                Err(WriteError::WouldBlock)
            }
            Err(SendBufferError::MessageTooLarge) => Err(WriteError::MessageTooLarge {
                size: msg.len(),
                max: self.config.send_buffer_packets as usize * self.payload_size,
            }),
        }
    }

    fn check_writable(&self) -> Result<(), WriteError> {
        match self.state {
            State::Connected => Ok(()),
            State::Closing { .. } => Err(WriteError::Closed(ConnectionError::LocallyClosed)),
            State::Closed(e) => Err(WriteError::Closed(e)),
        }
    }

    /// Reads stream data in order. Returns `Ok(0)` at the end of the stream
    /// after the peer's orderly close, once everything has been read: only
    /// when nothing the peer sent is missing ([`ConnectionError::PeerClosed`]).
    ///
    /// # Errors
    /// `WouldBlock` when nothing is readable yet, `WrongMode` on a message
    /// connection, `Closed` when the connection ended any other way and all
    /// data has been read, including a shutdown with data still missing
    /// ([`ConnectionError::PeerAborted`]): the stream is truncated.
    pub fn read(&mut self, buf: &mut [u8]) -> Result<usize, ReadError> {
        let asked = !buf.is_empty();
        self.read_stream(asked, |r| r.read(buf))
    }

    /// The checks and outcomes of the stream reads around `take`, which
    /// moves the bytes; `asked` false (nothing wanted) returns 0 at once.
    fn read_stream(
        &mut self,
        asked: bool,
        take: impl FnOnce(&mut Receiver) -> usize,
    ) -> Result<usize, ReadError> {
        if self.socket_type != SocketType::Stream {
            return Err(ReadError::WrongMode);
        }
        if !asked {
            return Ok(0);
        }
        self.refuse_corrupted()?;
        let n = take(&mut self.receiver);
        if n > 0 {
            return Ok(n);
        }
        match self.state {
            State::Closed(ConnectionError::PeerClosed) => Ok(0),
            State::Closed(e) => Err(ReadError::Closed(e)),
            _ => Err(ReadError::WouldBlock),
        }
    }

    /// Reads stream data in order, appending at most `max` bytes to `out`
    /// (whose spare room is not zeroed first); returns how many, and
    /// `Ok(0)` at the end of the stream as [`read`](Self::read) does.
    ///
    /// # Errors
    /// As [`read`](Self::read).
    pub fn read_to_vec(&mut self, out: &mut Vec<u8>, max: usize) -> Result<usize, ReadError> {
        self.read_stream(max > 0, |r| r.read_to_vec(out, max))
    }

    /// Lends the application's `buf` while it waits for stream data: data
    /// that arrives in order with nothing buffered before it is appended
    /// to `buf` (at most `room` bytes) instead of going through the receive
    /// buffer, one copy fewer. Readable as any data ([`read`](Self::read)
    /// takes it first); [`take_read_sink`](Self::take_read_sink) gives
    /// `buf` back with it. A driver lends right before it sleeps waiting
    /// for data and takes it back when woken, under the same lock as every
    /// input.
    ///
    /// # Errors
    /// Gives `buf` back unchanged on a message connection (whose receive
    /// buffer assembles messages) or when a buffer is already lent.
    pub fn lend_read_sink(&mut self, buf: Vec<u8>, room: usize) -> Result<(), Vec<u8>> {
        self.receiver.lend_sink(buf, room)
    }

    /// Takes back the buffer lent with [`lend_read_sink`](Self::lend_read_sink),
    /// with the data delivered into it appended (less what a
    /// [`read`](Self::read) took meanwhile); `None` when nothing is lent.
    pub fn take_read_sink(&mut self) -> Option<Vec<u8>> {
        self.receiver.take_sink()
    }

    /// True (once) when the data that became readable since the last call
    /// completes what a waiting reader most likely waits for: the end of
    /// one of the peer's writes (each write is one message with its last
    /// packet marked, in stream mode too, by UDT4 as by us), a whole
    /// message, a lent read sink filled to its room, a waiting reader's
    /// whole request ([`set_read_want`](Self::set_read_want)), or a quarter
    /// of the receive window waiting to be read. False for data in
    /// the middle of a long write: a driver may hold a bulk reader's
    /// wake-up for a moment so that it takes more per wake-up, and wake a
    /// request-response reader at once. [`Event::Readable`] is reported
    /// either way.
    pub fn take_reader_due(&mut self) -> bool {
        self.receiver.take_reader_due()
    }

    /// Says how many bytes a reader waiting without a lent sink
    /// ([`lend_read_sink`](Self::lend_read_sink)) asks for, 0 once it no
    /// longer waits: data that makes that much readable is due to it
    /// ([`take_reader_due`](Self::take_reader_due)) even in the middle of a
    /// write.
    pub fn set_read_want(&mut self, bytes: usize) {
        self.receiver.set_read_want(bytes);
    }

    /// Receives one whole message into `out` (cleared first); returns its length.
    ///
    /// # Errors
    /// As [`recv_msg`](Self::recv_msg).
    pub fn recv_msg_into(&mut self, out: &mut Vec<u8>) -> Result<usize, ReadError> {
        if self.socket_type != SocketType::Message {
            return Err(ReadError::WrongMode);
        }
        self.refuse_corrupted()?;
        if self.receiver.read_message(out) {
            return Ok(out.len());
        }
        match self.state {
            State::Closed(e) => Err(ReadError::Closed(e)),
            _ => Err(ReadError::WouldBlock),
        }
    }

    /// Once two payloads conflicted, nothing still buffered is delivered:
    /// the injected copy may be among it.
    fn refuse_corrupted(&self) -> Result<(), ReadError> {
        match self.state {
            State::Closed(ConnectionError::Corrupted) => {
                Err(ReadError::Closed(ConnectionError::Corrupted))
            }
            _ => Ok(()),
        }
    }

    /// Receives one whole message.
    ///
    /// # Errors
    /// `WouldBlock` when no complete message is ready, `WrongMode` on a
    /// stream connection, `Closed` once the connection ended and every
    /// delivered message has been read.
    pub fn recv_msg(&mut self) -> Result<Bytes, ReadError> {
        let mut out = Vec::new();
        self.recv_msg_into(&mut out)?;
        Ok(Bytes::from(out))
    }

    /// Starts an orderly close: data already written is still delivered,
    /// and the shutdown waits until the peer's ACKs report that its
    /// application has read everything (a UDT4 peer discards acknowledged
    /// data its application has not read when the shutdown arrives), for
    /// at most the configured linger time. The connection then ends as
    /// `LocallyClosed`, or, when the linger time runs out, as
    /// `LingerExpired` (data unacknowledged) or `PeerUnread` (acknowledged,
    /// not read), with the shutdown sent all the same. With linger off, or
    /// nothing left to deliver or to be read, the shutdown goes at once.
    pub fn close(&mut self, now: Instant) {
        self.observe_time(now);
        if self.state != State::Connected {
            return;
        }
        match self.config.linger {
            Some(linger) if !self.sender.is_peer_drained() => {
                log::debug!(
                    "{} closing: lingering up to {linger:?} for {} packets in flight, {} bytes unsent \
                     and {} packets the peer has not read",
                    self.local_id,
                    self.sender.unacked(),
                    self.sender.buffer().unsent_bytes(),
                    self.sender.peer_unread()
                );
                self.state = State::Closing {
                    deadline: Some(now + linger),
                };
            }
            _ => {
                self.queue_final_ack(now);
                self.queue_shutdown();
                self.enter_closed(now, ConnectionError::LocallyClosed);
            }
        }
    }

    // ----- (D) outputs -----

    /// When the next data packet may be sent, or `None` when the sender has
    /// nothing to send (the send queue forgets the connection until an
    /// input or a command changes that). A time in the past means now.
    pub fn next_send_time(&self) -> Option<Instant> {
        if !self.control.is_empty() {
            return Some(self.start);
        }
        if !self.may_send_data() || !self.sender.has_work() {
            return None;
        }
        Some(self.sender.next_slot())
    }

    /// The earliest protocol timer deadline (ACK, NAK, EXP, keep-alive,
    /// idle, linger), or `None` once the connection is closed.
    pub fn poll_timeout(&self) -> Option<Instant> {
        Timer::ALL
            .iter()
            .filter_map(|&t| self.timer_deadline(t))
            .min()
    }

    /// The next application event, if any.
    pub fn poll_event(&mut self) -> Option<Event> {
        if self.readable_pending {
            self.readable_pending = false;
            return Some(Event::Readable);
        }
        if self.writable_pending {
            self.writable_pending = false;
            return Some(Event::Writable);
        }
        if self.closed_pending {
            self.closed_pending = false;
            if let State::Closed(e) = self.state {
                return Some(Event::Closed(e));
            }
        }
        None
    }

    // ----- internals shared by the submodules -----

    fn observe_time(&mut self, now: Instant) {
        if now > self.last_now {
            if self.may_send_data() {
                self.account_send_limit(now);
            }
            self.last_now = now;
        }
        self.wrote_while_idle = false;
    }

    /// Adds the time since the last call to the state that kept the sender
    /// from sending. Between two calls only time changes the sender (every
    /// input and output goes through `observe_time` first), so the state
    /// at the last call held until now, except that a pacing slot may have
    /// passed in between.
    fn account_send_limit(&mut self, now: Instant) {
        let from = self.last_now;
        let elapsed = now.saturating_duration_since(from);
        let limits = &mut self.counters.send_limits;
        let limit = if self.wrote_while_idle {
            SendLimit::App
        } else {
            self.sender.limit(from)
        };
        match limit {
            SendLimit::App => limits.app += elapsed,
            SendLimit::FlowWindow => limits.flow_window += elapsed,
            SendLimit::CongestionWindow => limits.congestion_window += elapsed,
            SendLimit::Driver => limits.driver += elapsed,
            SendLimit::Pacing => {
                let slot = self.sender.next_slot().min(now);
                limits.pacing += slot.saturating_duration_since(from);
                limits.driver += now.saturating_duration_since(slot);
            }
        }
    }

    fn may_send_data(&self) -> bool {
        matches!(self.state, State::Connected | State::Closing { .. })
    }

    fn cc_context(&self, now: Instant) -> CcContext {
        CcContext {
            now,
            mss: self.mss,
            rtt: self.rtt.rtt(),
            // Until a receiver has measured it, the delivery rate is UDT4's
            // placeholder of 16 packets/s; reporting 0 makes the controller
            // leave slow start at the rate its window achieved instead of
            // collapsing to 16 packets/s (docs/congestion-control.md).
            recv_rate: if self.sender.rates().is_recv_rate_measured() {
                self.sender.rates().recv_rate()
            } else {
                0
            },
            bandwidth: self.sender.rates().bandwidth(),
            recv_speed: self.sender.rates().latest_recv_rate(now),
            send_current_seq: self.sender.current(),
            max_window: self.sender.flow_window(),
            in_flight: self.sender.pipe(),
            delivered: self.delivery.delivered(),
            lost: self.delivery.lost(),
            app_limited: self.delivery.is_app_limited(),
        }
    }

    /// Copies the controller's period and window into the sender, applying
    /// the configured bandwidth cap (UDT4 `CCUpdate`).
    fn apply_cc(&mut self) {
        let mut period_us = match self.cc.pacing_rate() {
            // The sender sends every sixteenth packet back to back with the
            // one before (the packet pair for the receiver's capacity
            // estimate), so 16 packets take 15 periods: stretch the period
            // so that the rate is the one the controller asked for.
            Some(rate) if rate.is_finite() && rate > 0.0 => 1e6 / rate * 16.0 / 15.0,
            _ => self.cc.send_period_us(),
        };
        if !period_us.is_finite() || period_us < 0.0 {
            period_us = 1.0;
        }
        if let Some(max_bw) = self.config.max_bandwidth {
            if max_bw > 0 {
                let floor = 1e6 * f64::from(self.mss) / max_bw as f64;
                period_us = period_us.max(floor);
            }
        }
        // A period over a second would starve the EXP and keep-alive logic.
        period_us = period_us.min(1e6);
        let period = Duration::from_nanos((period_us * 1000.0) as u64);
        self.sender.set_pacing(
            period,
            (self.cc.send_quantum(), self.cc.idle_burst()),
            self.cc.congestion_window(),
            self.cc.window_basis(),
        );
    }

    fn enter_closed(&mut self, now: Instant, reason: ConnectionError) {
        if matches!(self.state, State::Closed(_)) {
            return;
        }
        log::info!(
            "{} closed after {:?}: {reason}",
            self.local_id,
            now.saturating_duration_since(self.start)
        );
        self.state = State::Closed(reason);
        self.closed_pending = true;
        self.readable_pending = true;
        self.writable_pending = true;
    }
}
