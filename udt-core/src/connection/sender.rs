//! The sending half of a connection: send buffer, sender loss list, flow
//! and congestion windows, and pacing (UDT4 `packData` and the sender side
//! of `processCtrl`).

use std::time::{Duration, Instant};

use crate::estimate::RateSmoother;
use crate::loss_list::SendLossList;
use crate::send_buffer::SendBuffer;
use crate::seq::SeqNumber;

/// How far behind schedule the pacer may fall and still catch up with a
/// burst. UDT4's Debian build sends "immediately when behind by at least one
/// interval" (udt4-protocol.md §6.1); an unbounded catch-up would turn a
/// stalled driver into a line-rate burst, so the credit is capped.
const BURST_CREDIT: Duration = Duration::from_millis(1);

/// Sender-side state.
#[derive(Debug)]
pub(crate) struct Sender {
    pub(crate) buffer: SendBuffer,
    pub(crate) loss: SendLossList,
    /// Everything before this was acknowledged by a full, medium or light
    /// ACK (UDT4 `m_iSndLastAck`); the flow window counts from here.
    pub(crate) last_ack: SeqNumber,
    /// Everything before this was released from the buffer (UDT4 `m_iSndLastDataAck`).
    pub(crate) last_data_ack: SeqNumber,
    /// The largest sequence number sent (UDT4 `m_iSndCurrSeqNo`).
    pub(crate) current: SeqNumber,
    /// Packets the receiver can still take, from its last ACK.
    pub(crate) flow_window: u32,
    /// Congestion window from the controller, packets.
    pub(crate) cwnd: f64,
    /// Inter-packet period from the controller (after the bandwidth cap).
    pub(crate) period: Duration,
    /// When the next data packet may leave.
    pub(crate) next_slot: Instant,
    /// Smoothed receive rate and link capacity reported in full ACKs.
    pub(crate) rates: RateSmoother,
}

impl Sender {
    pub(crate) fn new(
        buffer: SendBuffer,
        loss: SendLossList,
        isn: SeqNumber,
        flow_window: u32,
        now: Instant,
    ) -> Self {
        Sender {
            buffer,
            loss,
            last_ack: isn,
            last_data_ack: isn,
            current: isn.prev(),
            flow_window,
            cwnd: 16.0,
            period: Duration::from_micros(1),
            next_slot: now,
            rates: RateSmoother::new(),
        }
    }

    /// Packets sent and not yet acknowledged.
    pub(crate) fn in_flight(&self) -> u32 {
        self.current.next().offset_from(self.last_ack).max(0) as u32
    }

    /// Packets sent and not yet released from the buffer.
    pub(crate) fn unacked(&self) -> u32 {
        self.current.next().offset_from(self.last_data_ack).max(0) as u32
    }

    /// How many packets may be in flight (UDT4: `min(flow window, (int)cwnd)`).
    pub(crate) fn window(&self) -> u32 {
        let cwnd = if self.cwnd.is_finite() && self.cwnd > 0.0 {
            self.cwnd as u32
        } else {
            u32::MAX
        };
        self.flow_window.min(cwnd).max(1)
    }

    /// True when a new packet could go out now if the pacer allows.
    pub(crate) fn may_send_new(&self) -> bool {
        self.buffer.next_unsent().is_some() && self.in_flight() < self.window()
    }

    /// True when the pacer has anything to send.
    pub(crate) fn has_work(&self) -> bool {
        !self.loss.is_empty() || self.may_send_new()
    }

    /// Moves the pacing slot past the packet just sent.
    pub(crate) fn advance_slot(&mut self, now: Instant) {
        let next = self.next_slot + self.period;
        let floor = now.checked_sub(BURST_CREDIT).unwrap_or(now);
        self.next_slot = next.max(floor);
    }
}
