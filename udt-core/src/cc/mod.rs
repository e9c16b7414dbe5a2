//! Congestion control: the [`CongestionControl`] trait (the role of UDT4's
//! `CCC`) and the native UDT rate-based controller ([`NativeCc`]).
//!
//! A controller only decides *how fast* the sender sends: the inter-packet
//! period and the congestion window. It runs on the sending side only, and
//! the peer never learns which controller is in use, so any controller is
//! wire-compatible with UDT4.

use std::fmt;
use std::time::{Duration, Instant};

use crate::seq::SeqNumber;

mod native;

pub use native::{NativeCc, NativeCcFactory};

/// The congestion window every controller starts from, packets (UDT4's
/// `CCC` constructor sets 16); the connection also holds it until the
/// controller's `init` has run.
pub(crate) const INITIAL_CONGESTION_WINDOW: f64 = 16.0;

/// What a controller may read about its connection when an event arrives.
#[derive(Clone, Copy, Debug)]
pub struct CcContext {
    /// Current time.
    pub now: Instant,
    /// Negotiated MSS in bytes, including IP and UDP headers (UDT4 counts it so).
    pub mss: u32,
    /// Smoothed round-trip time.
    pub rtt: Duration,
    /// Smoothed packet arrival rate reported by the receiver, packets/s
    /// (UDT4 `m_iDeliveryRate`), or 0 until the receiver has reported one:
    /// UDT4 starts it at a placeholder of 16, which is not a measurement
    /// (docs/congestion-control.md).
    pub recv_rate: u32,
    /// Smoothed link capacity estimate reported by the receiver, packets/s
    /// (UDT4 `m_iBandwidth`, starts at 1).
    pub bandwidth: u32,
    /// The largest sequence number sent so far (UDT4 `m_iSndCurrSeqNo`).
    pub send_current_seq: SeqNumber,
    /// The flow window the peer granted in the handshake, packets (UDT4 `MaxCWnd`).
    pub max_window: u32,
}

/// A pluggable congestion controller (UDT4 `CCC`).
///
/// The connection calls the `on_*` hooks as events happen and reads
/// [`send_period_us`](Self::send_period_us) and
/// [`congestion_window`](Self::congestion_window) after each one.
pub trait CongestionControl: Send + fmt::Debug {
    /// A short name for logs and statistics.
    fn name(&self) -> &'static str;
    /// Called once when the connection is established.
    fn init(&mut self, ctx: &CcContext);
    /// A full or medium ACK acknowledged everything before `ack`.
    fn on_ack(&mut self, ctx: &CcContext, ack: SeqNumber);
    /// A NAK reported `count` lost packets, the first of which is `first_lost`.
    fn on_loss(&mut self, ctx: &CcContext, first_lost: SeqNumber, count: u32);
    /// The retransmission (EXP) timer fired with data outstanding.
    fn on_timeout(&mut self, ctx: &CcContext);
    /// A data packet was sent (new or retransmitted).
    fn on_packet_sent(&mut self, _ctx: &CcContext, _seq: SeqNumber) {}
    /// A data packet arrived.
    fn on_packet_received(&mut self, _ctx: &CcContext, _seq: SeqNumber) {}
    /// The inter-packet sending period in microseconds (UDT4 `m_dPktSndPeriod`).
    fn send_period_us(&self) -> f64;
    /// The congestion window in packets (UDT4 `m_dCWndSize`).
    fn congestion_window(&self) -> f64;
    /// How often the receiver side sends a full ACK; `None` means every SYN.
    /// Capped at the SYN interval by the connection.
    fn ack_period(&self) -> Option<Duration> {
        None
    }
    /// Send an ACK after this many packets as well; `None` disables it.
    fn ack_interval(&self) -> Option<u32> {
        None
    }
    /// A fixed retransmission timeout replacing the EXP formula; `None` keeps it.
    fn rto(&self) -> Option<Duration> {
        None
    }
}

/// Builds one controller per connection (UDT4 `CCCFactory`).
pub trait CongestionControlFactory: Send + Sync + fmt::Debug {
    /// A fresh controller for a new connection.
    fn build(&self) -> Box<dyn CongestionControl>;
}
