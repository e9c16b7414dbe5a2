//! Options of the multiplexer itself (the UDP port and its threads), as
//! opposed to the per-connection protocol options in [`udt_core::Config`].

use std::time::Duration;

/// Options of an [`Endpoint`](crate::Endpoint)'s UDP socket and threads.
///
/// `EndpointConfig::default()` gives the documented defaults; change fields
/// with struct update syntax:
///
/// ```
/// use udt_mux::EndpointConfig;
/// let options = EndpointConfig {
///     udp_recv_buffer: Some(8 << 20),
///     ..EndpointConfig::default()
/// };
/// assert_eq!(options.udp_recv_buffer, Some(8 << 20));
/// ```
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct EndpointConfig {
    /// Kernel send buffer (`SO_SNDBUF`) to request, in bytes; `None` keeps
    /// the system default. Default 4 MiB. The kernel caps it at
    /// `net.core.wmem_max`; the size granted is in [`EndpointStats`](crate::EndpointStats)
    /// and logged when smaller than asked.
    pub udp_send_buffer: Option<usize>,
    /// Kernel receive buffer (`SO_RCVBUF`) to request, in bytes; `None` keeps
    /// the system default. Default 4 MiB. One port serves every connection,
    /// so this buffer absorbs the bursts of all of them; the kernel caps it at
    /// `net.core.rmem_max`.
    pub udp_recv_buffer: Option<usize>,
    /// For an IPv6 address: `Some(true)` accepts IPv6 only, `Some(false)`
    /// also accepts IPv4 (dual stack, peers appear as `::ffff:a.b.c.d`),
    /// `None` keeps the system default (`net.ipv6.bindv6only`). Ignored for
    /// IPv4 addresses. Default `None`.
    pub only_v6: Option<bool>,
    /// The largest datagram the receive thread accepts, in bytes; longer ones
    /// are counted as truncated and dropped. Must be at least the largest
    /// MSS of any connection on the endpoint minus 28. Default 65 507.
    pub max_datagram: usize,
    /// Datagrams per `sendmmsg`/`recvmmsg` call (one call per datagram where
    /// the OS has no batch call). Default 32.
    pub batch_size: usize,
    /// How long before a scheduled send the send thread stops sleeping and
    /// waits precisely (spinning with `yield`), for pacing accuracy below the
    /// kernel's wake-up latency. Only waits of at least ten times this long
    /// end with a spin, so a fast flow (packets microseconds apart) never
    /// makes the thread spin: its packets go out in batches instead.
    /// `Duration::ZERO` never spins. Default 50 µs.
    pub precise_wait: Duration,
}

impl Default for EndpointConfig {
    fn default() -> Self {
        EndpointConfig {
            udp_send_buffer: Some(4 << 20),
            udp_recv_buffer: Some(4 << 20),
            only_v6: None,
            max_datagram: 65_507,
            batch_size: 32,
            precise_wait: Duration::from_micros(50),
        }
    }
}

impl EndpointConfig {
    /// The batch size actually used: at least 1, at most 1024 (the Linux
    /// `UIO_MAXIOV` limit of one `sendmmsg` call).
    pub(crate) fn effective_batch(&self) -> usize {
        self.batch_size.clamp(1, 1024)
    }

    /// The receive slot size actually used: between the smallest legal UDT
    /// packet and the largest UDP payload.
    pub(crate) fn effective_max_datagram(&self) -> usize {
        self.max_datagram.clamp(64, 65_535)
    }
}
