//! Congestion control: the [`CongestionControl`] trait (the role of UDT4's
//! `CCC`), the native UDT rate-based controller ([`NativeCc`]), the
//! model-based controller ([`BbrCc`]) and the per-packet delivery-rate
//! samples a model-based controller feeds on ([`AckSample`], [`RateSample`]).
//!
//! A controller only decides *how fast* the sender sends: the pacing rate
//! (or inter-packet period) and the congestion window. It runs on the
//! sending side only, and the peer never learns which controller is in use,
//! so any controller is wire-compatible with UDT4.

use std::fmt;
use std::time::{Duration, Instant};

use crate::seq::SeqNumber;

mod bbr;
mod choice;
mod delivery;
mod native;

pub use bbr::{BbrCc, BbrCcFactory, BbrProfile};
pub use choice::{CcAlgorithm, ParseCcAlgorithmError};
pub(crate) use delivery::DeliveryTracker;
pub use delivery::{AckSample, RateSample};
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
    /// The packet arrival speed the receiver last measured (its latest full
    /// ACK with a measurement, if not older than 100 ms), unsmoothed,
    /// packets/s; 0 when there is none.
    pub recv_speed: u32,
    /// The largest sequence number sent so far (UDT4 `m_iSndCurrSeqNo`).
    pub send_current_seq: SeqNumber,
    /// The flow window the peer granted in the handshake, packets (UDT4 `MaxCWnd`).
    pub max_window: u32,
    /// Packets sent and neither acknowledged nor known lost (TCP's "pipe"):
    /// everything sent since the last ACK, less the packets NAKs reported
    /// lost that have not been retransmitted yet.
    pub in_flight: u32,
    /// Packets acknowledged so far on this connection (cumulative ACKs,
    /// light ones included).
    pub delivered: u64,
    /// Packets NAKs have reported lost so far (each report of news counted
    /// once; a repeated report is not counted again).
    pub lost: u64,
    /// The sender has no new data to send: the application, not the
    /// network, limits the rate.
    pub app_limited: bool,
}

/// What the congestion window counts.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum WindowBasis {
    /// Every packet sent since the last ACK, lost ones included (UDT4:
    /// `SndCurrSeqNo − SndLastAck < cwnd`).
    #[default]
    Sent,
    /// Only packets in flight ([`CcContext::in_flight`]): packets a NAK
    /// reported lost do not occupy the window until they are retransmitted.
    /// The flow window still bounds everything sent since the last ACK.
    InFlight,
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
    /// An ACK (full, medium or light) acknowledged new packets: the
    /// per-packet delivery-rate sample and RTT sample it produced. Called
    /// before [`on_ack`](Self::on_ack) for a full or medium ACK. UDT4's
    /// controllers have no such hook; the default ignores it.
    fn on_ack_sample(&mut self, _ctx: &CcContext, _sample: &AckSample) {}
    /// The inter-packet sending period in microseconds (UDT4 `m_dPktSndPeriod`).
    fn send_period_us(&self) -> f64;
    /// The pacing rate in packets per second, if the controller sets one;
    /// `None` (the default) paces at one packet per
    /// [`send_period_us`](Self::send_period_us), as UDT4 does.
    fn pacing_rate(&self) -> Option<f64> {
        None
    }
    /// Packets the pacer may send back to back before it waits a period
    /// for each of them (the BBR draft's send quantum). More than one
    /// halves, or better, the times a driver visits a slow connection:
    /// with a thousand connections of a few hundred packets per second
    /// each, every visit costs the cache misses of a connection for one
    /// packet. UDT4's controllers pace packet by packet: 1, the default.
    fn send_quantum(&self) -> u32 {
        1
    }
    /// Packets the pacer may send back to back once the windows open (or
    /// data arrives) after the sender waited for them; `None`, the default,
    /// keeps UDT4's catch-up: time spent waiting counts as lateness, up to
    /// the pacer's burst credit (a millisecond of packets). A controller
    /// that paces at the bottleneck's rate wants a few: a window's worth
    /// at once overflows a bottleneck queue shallower than it.
    fn idle_burst(&self) -> Option<u32> {
        None
    }
    /// The congestion window in packets (UDT4 `m_dCWndSize`).
    fn congestion_window(&self) -> f64;
    /// What [`congestion_window`](Self::congestion_window) counts; UDT4's
    /// [`WindowBasis::Sent`] by default.
    fn window_basis(&self) -> WindowBasis {
        WindowBasis::Sent
    }
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
