//! Per-connection configuration with documented defaults.

use std::sync::Arc;
use std::time::Duration;

use crate::cc::{CcAlgorithm, CongestionControlFactory};

mod validate;

pub use validate::{ConfigError, MAX_BUFFER_PACKETS, MIN_BUFFER_PACKETS};

/// Whether a connection carries a byte stream or whole messages.
///
/// On the wire (handshake word 1) UDT4 uses 1 for stream and 2 for datagram
/// (message) sockets; the draft's 0/1 is wrong.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum SocketType {
    /// A reliable byte stream (`SOCK_STREAM`); handshake value 1.
    Stream,
    /// Reliable or partially reliable messages with boundaries (`SOCK_DGRAM`); handshake value 2.
    Message,
}

impl SocketType {
    /// The handshake encoding of this type.
    pub const fn to_wire(self) -> u32 {
        match self {
            SocketType::Stream => 1,
            SocketType::Message => 2,
        }
    }

    /// Decodes a handshake socket type; `None` for values UDT4 never sends.
    pub const fn from_wire(v: u32) -> Option<Self> {
        match v {
            1 => Some(SocketType::Stream),
            2 => Some(SocketType::Message),
            _ => None,
        }
    }
}

/// Configuration of a connection. `Config::default()` gives the documented
/// defaults; change the fields you need on a mutable copy, and check the
/// result with [`Config::validate`] (udt-mux does when you hand it one).
///
/// ```
/// use std::time::Duration;
/// use udt_core::Config;
///
/// let mut config = Config::default();
/// config.mss = 1400;
/// config.linger = Some(Duration::from_secs(5));
/// assert!(config.validate().is_ok());
/// ```
///
/// New fields may be added in any release (the type is
/// `#[non_exhaustive]`), so it cannot be built with a struct literal
/// outside this crate.
#[derive(Clone, Debug)]
#[non_exhaustive]
pub struct Config {
    /// Maximum segment size in bytes, IP and UDP headers included, as UDT4
    /// counts it. Payload per data packet is `mss` less [`PACKET_OVERHEAD`]
    /// (44 bytes). Default 1500.
    pub mss: u32,
    /// Send buffer capacity in packets. Default 8192 (UDT4 `UDT_SNDBUF`).
    pub send_buffer_packets: u32,
    /// Receive buffer capacity in packets. Default 8192 (UDT4 `UDT_RCVBUF`).
    pub recv_buffer_packets: u32,
    /// Maximum flow window in packets (UDT4 `UDT_FC`). Default 25600.
    /// The handshake advertises `min(recv_buffer_packets, flow_window)`.
    pub flow_window: u32,
    /// Stream or message mode of the handshake machines built from this
    /// configuration. Not a user option: a driver sets it for the kind of
    /// socket it opens ([`Config::with_socket_type`]).
    pub(crate) socket_type: SocketType,
    /// How long `close` waits for unacknowledged data and for the peer's
    /// application to read what it acknowledged (where its ACKs report it);
    /// `None` abandons both at once. Default 180 s (as UDT4).
    pub linger: Option<Duration>,
    /// How long a caller tries to connect. Default 3 s (as UDT4).
    pub connect_timeout: Duration,
    /// How long a rendezvous connect tries. Default 30 s (as UDT4).
    pub rendezvous_timeout: Duration,
    /// A connection whose peer has been silent this long is declared dead.
    /// Default 10 s (UDT4 needs ~47 s with its EXP counting).
    pub peer_idle_timeout: Duration,
    /// Cap on the sending rate in bytes per second; `None` for no cap
    /// (UDT4 `UDT_MAXBW` = -1).
    pub max_bandwidth: Option<u64>,
    /// The most payload memory, in bytes, this connection's send and
    /// receive buffers may grow to together (half each). The buffers start
    /// at `send_buffer_packets` and `recv_buffer_packets` and grow with the
    /// measured bandwidth-delay product up to this cap, so a long fat path
    /// is not limited by a fixed window (8192 packets cap a 200 ms path at
    /// about 477 Mbit/s). Memory is only allocated as data is actually
    /// buffered. A cap below the configured sizes keeps them fixed, as
    /// UDT4's are. Default 256 MiB ([`DEFAULT_MEMORY_CAP`]).
    pub memory_cap: u64,
    /// Builds the congestion controller of each connection. Default: the
    /// model-based controller with the fair profile ([`CcAlgorithm::Bbr`]),
    /// chosen from the measurements in docs/congestion-control.md; pick a
    /// built-in one with [`Config::with_congestion`] (`udt` for UDT4's
    /// native controller, `bbr-bulk` for dedicated lossy links) or plug in
    /// your own factory.
    pub congestion: Arc<dyn CongestionControlFactory>,
    /// Plain UDT4 (the default) or secure mode with its authentication
    /// (issue 11, docs/security.md). A secure caller refuses a plain
    /// listener and a secure listener refuses plain callers. Rendezvous
    /// connections are plain only.
    pub security: crate::secure::Security,
    /// Whether this side, as a receiver, reports its whole loss list again
    /// every NAK interval (`max(RTT + 4·RTTVar + losses/arrival rate,
    /// 20 ms)`) on top of the immediate NAK of each gap. Default `true`:
    /// without it a lost NAK or a lost retransmission is found only by the
    /// sender. UDT4 4.11 computes this timer but never sends the NAK;
    /// `false` makes this receiver report each loss once, as a libudt0
    /// receiver does (used to test a sender against UDT4 receivers in the
    /// simulator).
    pub periodic_nak: bool,
    /// Whether this side, as a receiver, keeps sending light ACKs (every
    /// 64 data packets) while its ACK number is one the sender already
    /// confirmed with ACK2: its first missing packet is stuck, and the light
    /// ACK only repeats it. Default `true`: the repeats keep a stalled
    /// sender's loss detection informed (docs/divergences.md). A libudt0
    /// receiver sends nothing at all then, light or full, until the ACK
    /// number moves or the sender stops confirming (udt4-protocol.md §6.4);
    /// `false` does the same (used to test a sender against UDT4 receivers
    /// in the simulator).
    pub stall_light_acks: bool,
    /// Whether this side, as a receiver, puts its arrival speed and link
    /// capacity into the first 32 ACKs of a connection (until the first gap in
    /// the sequence), at every self-clock point (64 data packets) instead of a
    /// light ACK (unless its number has not moved since the last ACK), and not
    /// only once per SYN. Default `true`: a UDT4 sender averages these fields
    /// from 16 packets/s with a 7/8 weight and takes its sending period from
    /// that average when it leaves slow start, which on a short path comes
    /// after a handful of SYNs; with one report per SYN it kept half the pace
    /// we measured (docs/interop.md). `false` reports once per SYN from the
    /// start, as a libudt0 receiver does (used to model UDT4 receivers in the
    /// simulator).
    pub early_rate_reports: bool,
}

impl Config {
    /// Bytes of payload in a full data packet: MSS less [`PACKET_OVERHEAD`].
    pub fn payload_size(&self) -> usize {
        (self.mss as usize).saturating_sub(PACKET_OVERHEAD)
    }

    /// The most packets one buffer (send or receive) may grow to under
    /// [`memory_cap`](Self::memory_cap): half the cap in payload-sized
    /// packets, never below `configured`.
    pub fn buffer_cap_packets(&self, configured: u32) -> u32 {
        let payload = self.payload_size().max(1) as u64;
        let packets = (self.memory_cap / 2 / payload).min(u64::from(MAX_BUFFER_PACKETS));
        (packets as u32).max(configured)
    }

    /// The flow window this side advertises in its handshake.
    pub fn advertised_window(&self) -> u32 {
        self.recv_buffer_packets.min(self.flow_window)
    }

    /// This configuration for handshakes of `socket_type`: the
    /// [`Caller`](crate::handshake::Caller), [`Listener`](crate::handshake::Listener)
    /// and [`Rendezvous`](crate::handshake::Rendezvous) machines offer (and a
    /// listener accepts) that type. For code that drives those machines
    /// itself; a driver such as udt-mux sets it from the kind of socket the
    /// application opens, so applications never set it.
    pub fn with_socket_type(mut self, socket_type: SocketType) -> Config {
        self.socket_type = socket_type;
        self
    }

    /// This configuration with the built-in congestion controller `cc`.
    ///
    /// ```
    /// use udt_core::cc::CcAlgorithm;
    /// use udt_core::Config;
    ///
    /// let config = Config::default().with_congestion(CcAlgorithm::Udt);
    /// assert_eq!(config.congestion.build().name(), "udt");
    /// ```
    pub fn with_congestion(mut self, cc: CcAlgorithm) -> Config {
        self.congestion = cc.factory();
        self
    }

    /// The socket type handshakes built from this configuration use
    /// (default [`SocketType::Stream`]).
    pub fn socket_type(&self) -> SocketType {
        self.socket_type
    }
}

/// The default [`Config::memory_cap`]: 256 MiB, enough for 1 Gbit/s over a
/// 200 ms path with loss (about 4 bandwidth-delay products per buffer).
pub const DEFAULT_MEMORY_CAP: u64 = 256 << 20;

/// The IP and UDP header bytes UDT4 assumes every datagram carries (a
/// 20-byte IPv4 header and an 8-byte UDP header): the MSS counts them.
pub const IP_UDP_HEADER_SIZE: usize = 28;

/// The bytes of an MSS that carry no payload: the IP and UDP headers plus
/// the 16-byte UDT header (UDT4 `m_iPayloadSize = m_iMSS - 28 - 16`).
pub const PACKET_OVERHEAD: usize = IP_UDP_HEADER_SIZE + crate::packet::HEADER_SIZE;

/// The smallest MSS accepted (UDT4 rejects below 76 bytes).
pub const MIN_MSS: u32 = 76;

// Every accepted MSS leaves room for a payload.
const _: () = assert!(MIN_MSS as usize > PACKET_OVERHEAD);
// ... and in secure mode too, after the seal's counter and tag.
const _: () = assert!(MIN_MSS as usize > PACKET_OVERHEAD + crate::secure::SEAL_OVERHEAD);

/// The largest MSS accepted: the largest UDP datagram over IPv4.
pub const MAX_MSS: u32 = 65_535;

impl Default for Config {
    fn default() -> Self {
        Config {
            mss: 1500,
            send_buffer_packets: 8192,
            recv_buffer_packets: 8192,
            flow_window: 25_600,
            socket_type: SocketType::Stream,
            linger: Some(Duration::from_secs(180)),
            connect_timeout: Duration::from_secs(3),
            rendezvous_timeout: Duration::from_secs(30),
            peer_idle_timeout: Duration::from_secs(10),
            max_bandwidth: None,
            memory_cap: DEFAULT_MEMORY_CAP,
            congestion: CcAlgorithm::DEFAULT.factory(),
            security: crate::secure::Security::Plain,
            periodic_nak: true,
            stall_light_acks: true,
            early_rate_reports: true,
        }
    }
}
