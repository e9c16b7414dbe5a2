//! Per-connection statistics: counters that only grow, plus a snapshot of
//! the estimators and control state at the time they were read.

use std::time::Duration;

/// Packets the connection received and threw away, by reason.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct DropStats {
    /// Datagrams that failed to decode (too short, bad lengths).
    pub malformed: u64,
    /// Datagrams from an address other than the peer's.
    pub wrong_source: u64,
    /// Data packets outside the receive window.
    pub out_of_window: u64,
    /// Data packets that were already received.
    pub duplicate: u64,
    /// Data packets of a message the sender had asked us to drop.
    pub dropped_message: u64,
    /// Control packets with impossible values (an ACK beyond what was sent, a
    /// reversed NAK range, a drop request beyond the window, ...).
    pub invalid_control: u64,
    /// Control packets of a type we do not handle (unknown types, user-defined).
    pub unknown_control: u64,
    /// Handshakes that arrived after the connection was set up and needed no answer.
    pub stray_handshake: u64,
    /// Control packets not sent because the outgoing control queue was full.
    pub control_queue_full: u64,
    /// Secure mode: packets whose tag did not verify (forged, corrupted,
    /// or sealed under another key), or too short to be sealed.
    pub unauthenticated: u64,
    /// Secure mode: authentic packets whose counter was already seen or
    /// is older than the replay window (replays, network duplicates).
    pub replayed: u64,
}

/// What kept the sender from sending, as time spent in each state while
/// connected (after Linux's `tcp_info` "chrono" times). Together they add
/// up to the connection's lifetime until close; compare them to see
/// whether the network (congestion window, pacing), the peer (flow
/// window), the application or the I/O driver limited a transfer.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct SendLimits {
    /// Nothing to send: no unsent data written and no loss awaiting
    /// retransmission.
    pub app: Duration,
    /// Data waiting, but the peer's flow window (its free receive buffer)
    /// is used up.
    pub flow_window: Duration,
    /// Data waiting, but the congestion window is used up.
    pub congestion_window: Duration,
    /// A packet may go, and waits for its pacing slot.
    pub pacing: Duration,
    /// A packet's pacing slot has passed and the driver has not yet asked
    /// for it: how far the I/O side lags behind the pacer.
    pub driver: Duration,
}

impl SendLimits {
    /// The total time accounted.
    pub fn total(&self) -> Duration {
        self.app + self.flow_window + self.congestion_window + self.pacing + self.driver
    }

    /// Each state's share of the total, in the field order (app, flow
    /// window, congestion window, pacing, driver); zeros before any time
    /// was accounted.
    pub fn shares(&self) -> [f64; 5] {
        let total = self.total().as_secs_f64();
        let share = |d: Duration| {
            if total > 0.0 {
                d.as_secs_f64() / total
            } else {
                0.0
            }
        };
        [
            share(self.app),
            share(self.flow_window),
            share(self.congestion_window),
            share(self.pacing),
            share(self.driver),
        ]
    }
}

/// A snapshot of one connection's statistics (see [`crate::connection::Connection::stats`]).
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct Stats {
    /// Time since the connection was established.
    pub elapsed: Duration,
    /// Data packets sent, first transmissions and retransmissions.
    pub packets_sent: u64,
    /// Payload bytes sent, retransmissions included.
    pub bytes_sent: u64,
    /// Data packets retransmitted.
    pub packets_retransmitted: u64,
    /// Payload bytes retransmitted.
    pub bytes_retransmitted: u64,
    /// Data packets received and stored (duplicates and drops excluded).
    pub packets_received: u64,
    /// Payload bytes received and stored.
    pub bytes_received: u64,
    /// Sequence numbers the receiver found missing (gaps detected).
    pub packets_lost: u64,
    /// Sequence numbers the peer reported lost to us in NAKs.
    pub packets_reported_lost: u64,
    /// Packets this sender resent without a NAK because it concluded they
    /// were lost: a retransmission sent well before a packet that has
    /// since arrived, or the first missing packet that the peer's ACKs keep
    /// naming (some of these resends may turn out duplicates).
    pub packets_presumed_lost: u64,
    /// Control packets sent / received, by kind.
    pub acks_sent: u64,
    /// Light ACKs sent.
    pub light_acks_sent: u64,
    /// Full and medium ACKs received.
    pub acks_received: u64,
    /// ACK2s sent.
    pub ack2s_sent: u64,
    /// ACKs deliberately left without an ACK2: they acknowledged everything
    /// written while the peer still reported unread data, so the peer keeps
    /// repeating them until its application has read everything.
    pub ack2s_withheld: u64,
    /// NAK packets sent.
    pub naks_sent: u64,
    /// NAK packets received.
    pub naks_received: u64,
    /// Keep-alives sent because nothing else had been sent for a while.
    pub keepalives_sent: u64,
    /// Keep-alives sent to let the peer's ACK timer run: data was in
    /// flight and nothing had been heard or sent for an ACK period (a UDT4
    /// receiver checks its timers only when a datagram arrives).
    pub ack_nudges_sent: u64,
    /// Retransmission (EXP) timeouts with data outstanding.
    pub timeouts: u64,
    /// Messages this side dropped because their TTL expired before delivery.
    pub messages_dropped_sent: u64,
    /// Message-drop requests received from the peer.
    pub messages_dropped_received: u64,
    /// Received packets discarded, by reason.
    pub dropped: DropStats,
    /// What kept the sender from sending, as time in each state.
    pub send_limits: SendLimits,
    /// Smoothed round-trip time.
    pub rtt: Duration,
    /// Round-trip time variation.
    pub rtt_var: Duration,
    /// The peer's estimate of the link capacity towards it, packets/s.
    pub link_capacity_pps: u32,
    /// The peer's measured arrival rate of our packets, packets/s.
    pub recv_rate_pps: u32,
    /// Our own measurement of the arrival rate of the peer's packets, packets/s.
    pub local_recv_rate_pps: u32,
    /// The current inter-packet sending period.
    pub send_period: Duration,
    /// The flow window granted by the peer, packets.
    pub flow_window: u32,
    /// The congestion window, packets.
    pub congestion_window: f64,
    /// Packets sent and not yet acknowledged.
    pub packets_in_flight: u32,
    /// Bytes the application may still write before the send buffer is full.
    pub send_buffer_free_bytes: usize,
    /// Bytes written and not yet acknowledged by the peer, sent or not.
    /// (Not the capacity less the free bytes: the capacity grows with the
    /// path.)
    pub send_buffer_held_bytes: usize,
    /// The send buffer's capacity now, packets (it grows with the measured
    /// bandwidth-delay product up to the memory cap).
    pub send_buffer_packets: u32,
    /// The receive buffer's capacity now, packets (likewise).
    pub recv_buffer_packets: u32,
    /// Payload bytes delivered straight into a buffer the application lent
    /// while it waited (`Connection::lend_read_sink`), one copy fewer than
    /// through the receive buffer.
    pub bytes_received_direct: u64,
    /// Packets the peer's application had not read yet, by the peer's
    /// newest full or medium ACK: 0 once it reported its receive buffer
    /// drained (or before it reported anything). After an orderly close that
    /// returned success, non-zero means the peer closed first, so whether its
    /// application read these last packets is unknown.
    pub peer_unread_packets: u32,
}

impl Stats {
    /// The sending rate implied by the pacing period, in megabits per second
    /// of payload, given the payload size per packet.
    pub fn send_rate_mbps(&self, payload_size: usize) -> f64 {
        let secs = self.send_period.as_secs_f64();
        if secs <= 0.0 {
            return 0.0;
        }
        payload_size as f64 * 8.0 / secs / 1e6
    }

    /// The fraction of sent packets that had to be retransmitted.
    pub fn retransmit_ratio(&self) -> f64 {
        if self.packets_sent == 0 {
            0.0
        } else {
            self.packets_retransmitted as f64 / self.packets_sent as f64
        }
    }
}
