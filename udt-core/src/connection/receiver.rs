//! The receiving half of a connection: receive buffer, receiver loss list,
//! ACK bookkeeping and arrival estimators (UDT4 `processData` and the ACK
//! side of `sendCtrl`).

use std::time::Instant;

use crate::ack_window::AckWindow;
use crate::estimate::ArrivalWindow;
use crate::loss_list::RecvLossList;
use crate::recv_buffer::RecvBuffer;
use crate::seq::{AckSeqNumber, SeqNumber};

/// Receiver-side state.
#[derive(Debug)]
pub(crate) struct Receiver {
    pub(crate) buffer: RecvBuffer,
    pub(crate) loss: RecvLossList,
    /// The largest sequence number received (UDT4 `m_iRcvCurrSeqNo`).
    pub(crate) current: SeqNumber,
    /// The last ACK number sent in a full or medium ACK (UDT4 `m_iRcvLastAck`).
    pub(crate) last_ack: SeqNumber,
    /// The highest ACK number the sender confirmed with ACK2 (UDT4 `m_iRcvLastAckAck`).
    pub(crate) last_ack_ack: SeqNumber,
    /// Sequence number of the next full/medium ACK.
    pub(crate) next_ack_seq: AckSeqNumber,
    pub(crate) ack_window: AckWindow,
    pub(crate) arrivals: ArrivalWindow,
    /// When the last full or medium ACK left.
    pub(crate) last_ack_time: Instant,
    /// When the last full ACK (with rate fields) left.
    pub(crate) last_full_ack_time: Instant,
    /// Data packets since the last ACK, for the light-ACK self-clock.
    pub(crate) packets_since_ack: u32,
    /// A short packet arrived: ACK at once (UDT4 sets the ACK timer to now).
    pub(crate) ack_now: bool,
    /// When the whole loss list was last reported.
    pub(crate) last_nak_time: Instant,
    /// The window we advertised in the last ACK, to decide on window updates.
    pub(crate) last_advertised: u32,
}

impl Receiver {
    pub(crate) fn new(
        buffer: RecvBuffer,
        loss: RecvLossList,
        isn: SeqNumber,
        now: Instant,
    ) -> Self {
        Receiver {
            buffer,
            loss,
            current: isn.prev(),
            last_ack: isn,
            last_ack_ack: isn,
            next_ack_seq: AckSeqNumber::FIRST,
            ack_window: AckWindow::new(),
            arrivals: ArrivalWindow::new(),
            last_ack_time: now,
            last_full_ack_time: now,
            packets_since_ack: 0,
            ack_now: false,
            last_nak_time: now,
            last_advertised: u32::MAX,
        }
    }

    /// The ACK number: the first missing packet (UDT4 `sendCtrl(2)`).
    pub(crate) fn ack_number(&self) -> SeqNumber {
        self.loss.first().unwrap_or(self.current.next())
    }

    /// True when the sender has not yet confirmed everything we received.
    pub(crate) fn has_unconfirmed(&self) -> bool {
        self.ack_number() != self.last_ack_ack
    }
}
