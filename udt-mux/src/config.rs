//! Options of the multiplexer itself (the UDP port and its threads), as
//! opposed to the per-connection protocol options in [`udt_core::Config`].

use std::time::Duration;

use udt_core::config::{ConfigError, MIN_MSS};
use udt_core::Config;

/// Bytes of IP and UDP headers UDT4 counts in the MSS: a full packet of a
/// connection is a datagram of `mss - 28` bytes.
const IP_UDP_HEADERS: u32 = 28;

/// The most datagrams one `sendmmsg` call takes (Linux `UIO_MAXIOV`).
const MAX_BATCH: usize = 1024;
/// The most sockets one endpoint binds to its port ([`EndpointConfig::sockets`]).
pub const MAX_SOCKETS: usize = 64;

/// The smallest datagram slot: the smallest legal UDT packet.
const MIN_DATAGRAM: usize = 64;

/// The largest UDP payload.
const MAX_DATAGRAM: usize = 65_535;

/// Options of an [`Endpoint`](crate::Endpoint)'s UDP socket and threads.
///
/// `EndpointConfig::default()` gives the documented defaults; change the
/// fields you need on a mutable copy (new fields may come in any release,
/// so the type cannot be built with a struct literal):
///
/// ```
/// use udt_mux::{Config, Endpoint, EndpointConfig};
///
/// # fn main() -> std::io::Result<()> {
/// let mut options = EndpointConfig::default();
/// options.udp_recv_buffer = Some(8 << 20);
/// let endpoint = Endpoint::bind_with("127.0.0.1:0", Config::default(), options)?;
/// # let _ = endpoint;
/// # Ok(())
/// # }
/// ```
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct EndpointConfig {
    /// Kernel send buffer (`SO_SNDBUF`) to request, in bytes; `None` keeps
    /// the system default. Default 4 MiB. The kernel caps it at
    /// `net.core.wmem_max` unless the process may pass the cap
    /// (`CAP_NET_ADMIN`), in which case it is forced; the size granted is in [`EndpointStats`](crate::EndpointStats)
    /// and logged when smaller than asked.
    pub udp_send_buffer: Option<usize>,
    /// Kernel receive buffer (`SO_RCVBUF`) to request, in bytes; `None` keeps
    /// the system default. Default 16 MiB. One port serves every connection,
    /// so this buffer absorbs the bursts of all of them (200 connections
    /// ramping up at once into one loopback port overflowed 4 MiB, not
    /// 16: `docs/performance.md`). The kernel caps the request at
    /// `net.core.rmem_max` unless the process may pass the cap
    /// (`CAP_NET_ADMIN`, e.g. root), in which case it is forced; it is memory
    /// only while datagrams wait in it. This is the size for an endpoint
    /// without connections: it grows with them
    /// ([`udp_recv_buffer_per_connection`](Self::udp_recv_buffer_per_connection)).
    pub udp_recv_buffer: Option<usize>,
    /// Bytes of `SO_RCVBUF` added to [`udp_recv_buffer`](Self::udp_recv_buffer)
    /// for every connection a socket serves, up to
    /// [`udp_recv_buffer_max`](Self::udp_recv_buffer_max); the buffer grows
    /// (in steps of at least a quarter) as connections are made and is never
    /// shrunk. The socket holds the bursts of all its connections at once: a
    /// thousand connections into one loopback port overflowed 16 MiB when the
    /// receive thread lost its core for a moment, and each overflow cost the
    /// connections retransmissions and timeouts (`docs/performance.md`).
    /// `0` keeps the buffer at its first size; ignored when
    /// `udp_recv_buffer` is `None`. Default 64 KiB.
    pub udp_recv_buffer_per_connection: usize,
    /// The largest `SO_RCVBUF` the growth above asks for, in bytes (a bound
    /// on the kernel memory datagrams waiting for one socket may take,
    /// whatever the number of connections). Never below `udp_recv_buffer`.
    /// Default 128 MiB.
    pub udp_recv_buffer_max: usize,
    /// For an IPv6 address: `Some(true)` accepts IPv6 only, `Some(false)`
    /// also accepts IPv4 (dual stack, peers appear as `::ffff:a.b.c.d`),
    /// `None` keeps the system default (`net.ipv6.bindv6only`). Ignored for
    /// IPv4 addresses. Default `None`.
    pub only_v6: Option<bool>,
    /// The largest datagram the receive thread accepts, in bytes; longer ones
    /// are counted as truncated and dropped. Between 64 and 65 535, and at
    /// least the MSS of every connection on the endpoint minus 28 (checked
    /// when the endpoint or connection is created). Default 65 507.
    pub max_datagram: usize,
    /// Datagrams per `sendmmsg`/`recvmmsg` call (one call per datagram where
    /// the OS has no batch call), between 1 and 1024. With GSO a run of
    /// equal datagrams to one peer counts as its datagrams; with GRO the
    /// receive side uses half as many slots, each holding up to 64 KiB of
    /// coalesced datagrams (so its memory is that of 32 plain slots).
    /// Default 64 (measured against 32: half the `sendmmsg` calls, see
    /// `docs/performance.md`).
    pub batch_size: usize,
    /// How long before a scheduled send the send thread stops sleeping and
    /// waits precisely (spinning with `yield`), for pacing accuracy below the
    /// kernel's wake-up latency. Only waits of at least ten times this long
    /// end with a spin, so a fast flow (packets microseconds apart) never
    /// makes the thread spin: its packets go out in batches instead.
    /// `Duration::ZERO` never spins. Default 50 µs.
    pub precise_wait: Duration,
    /// The shortest time between two batches of the send thread. A fast
    /// flow's packets fall due microseconds apart; instead of waking for
    /// each, the thread waits this long after a batch and sends what fell
    /// due meanwhile together (the core's pacer lets late packets go as a
    /// burst), so batches and GSO runs are long. Flows slower than one
    /// packet per interval are not affected. `Duration::ZERO` sends each
    /// packet as soon as it is due; more than 500 µs counts as 500 µs (the
    /// pacer carries 1 ms of lateness). Default 50 µs (measured: 28 instead of
    /// 2–3 datagrams per system call, half the CPU per GiB; see
    /// `docs/performance.md`).
    pub batch_interval: Duration,
    /// How long a receive thread waits before reading its socket again
    /// while datagrams keep arriving faster than one per this interval
    /// (interrupt moderation): a sender that sends its datagrams one by one
    /// (UDT4, or any peer without GSO) otherwise wakes the thread for nearly
    /// every datagram. An idle socket, or one slower than that, is read as
    /// soon as a datagram arrives. Adds at most this much delay to a
    /// datagram on a busy socket (round-trip times include it); more than
    /// 500 µs counts as 500 µs. `Duration::ZERO` reads as soon as anything
    /// arrives. Default 200 µs (measured: half the receiver's CPU per GiB
    /// from a UDT4 sender; see `docs/performance.md`).
    pub read_pause: Duration,
    /// Send data payloads straight from the connections' send buffers: a
    /// data packet is queued as its header plus a reference to its payload,
    /// and a connection with at least a few packets in a batch has the
    /// batch sent while its lock is held, the kernel gathering header and
    /// payload (one iovec each) — no copy of the payload in user space.
    /// A connection with fewer gets its payloads copied in, so many small
    /// connections still share one system call. Secure connections seal
    /// whole datagrams and are unaffected. Default `true`.
    pub zero_copy_send: bool,
    /// Use UDP segmentation offload where the kernel has it (Linux 4.18+
    /// for GSO, 5.0+ for GRO): runs of equal datagrams to one peer leave
    /// as one GSO super-datagram, and coalesced receives are split back.
    /// The datagrams on the wire are the same either way. If the kernel
    /// refuses a super-datagram, the endpoint stops using GSO and sends
    /// plainly. Default `true`.
    pub offload: bool,
    /// UDP sockets bound to the one port (`SO_REUSEPORT`), each with its
    /// own receive thread and its own send thread, between 1 and 64. With
    /// more than one, a classic BPF program steers every datagram of a
    /// connection to one socket by its destination socket ID (Linux 4.5+),
    /// and the connections are shared among the send threads (each sends
    /// through its own socket of the port), so an endpoint sending on many
    /// connections uses as many cores as it has sockets. Default 1.
    pub sockets: usize,
}

impl Default for EndpointConfig {
    fn default() -> Self {
        EndpointConfig {
            udp_send_buffer: Some(4 << 20),
            udp_recv_buffer: Some(16 << 20),
            udp_recv_buffer_per_connection: 64 << 10,
            udp_recv_buffer_max: 128 << 20,
            only_v6: None,
            max_datagram: 65_507,
            batch_size: 64,
            precise_wait: Duration::from_micros(50),
            batch_interval: Duration::from_micros(50),
            read_pause: Duration::from_micros(200),
            zero_copy_send: true,
            offload: true,
            sockets: 1,
        }
    }
}

impl EndpointConfig {
    /// Checks the fields against their ranges: `batch_size` 1 to 1024,
    /// `max_datagram` 64 to 65 535, `sockets` 1 to 64.
    ///
    /// # Errors
    /// The first field out of range, with its allowed range.
    pub fn validate(&self) -> Result<(), ConfigError> {
        out_of_range(
            "EndpointConfig.batch_size",
            self.batch_size as u64,
            1,
            MAX_BATCH as u64,
        )?;
        out_of_range(
            "EndpointConfig.max_datagram",
            self.max_datagram as u64,
            MIN_DATAGRAM as u64,
            MAX_DATAGRAM as u64,
        )?;
        out_of_range(
            "EndpointConfig.sockets",
            self.sockets as u64,
            1,
            MAX_SOCKETS as u64,
        )
    }

    /// The number of sockets actually used: 1 to 64.
    pub(crate) fn effective_sockets(&self) -> usize {
        self.sockets.clamp(1, MAX_SOCKETS)
    }

    /// The `SO_RCVBUF` to ask for a socket serving `conns` connections:
    /// `udp_recv_buffer` plus `udp_recv_buffer_per_connection` for each, at
    /// most `udp_recv_buffer_max` (never below `udp_recv_buffer`). `None`
    /// when the system default is kept.
    pub(crate) fn recv_buffer_for(&self, conns: usize) -> Option<usize> {
        let base = self.udp_recv_buffer?;
        let grown = base.saturating_add(self.udp_recv_buffer_per_connection.saturating_mul(conns));
        Some(grown.min(self.udp_recv_buffer_max).max(base))
    }

    /// Checks that a connection of `config` fits this endpoint: the
    /// configuration is valid and its full packets fit in `max_datagram`.
    pub(crate) fn check_connection(&self, config: &Config) -> Result<(), ConfigError> {
        config.validate()?;
        let fits = self.effective_max_datagram() as u64 + u64::from(IP_UDP_HEADERS);
        out_of_range(
            "Config.mss (at most EndpointConfig.max_datagram + 28)",
            config.mss.into(),
            MIN_MSS.into(),
            fits,
        )
    }

    /// The batch size actually used: at least 1, at most 1024 (the Linux
    /// `UIO_MAXIOV` limit of one `sendmmsg` call).
    pub(crate) fn effective_batch(&self) -> usize {
        self.batch_size.clamp(1, MAX_BATCH)
    }

    /// The receive slot size actually used: between the smallest legal UDT
    /// packet and the largest UDP payload.
    pub(crate) fn effective_max_datagram(&self) -> usize {
        self.max_datagram.clamp(MIN_DATAGRAM, MAX_DATAGRAM)
    }
}

/// `Ok` when `value` is in `min..=max`, else the error naming `field`.
fn out_of_range(field: &'static str, value: u64, min: u64, max: u64) -> Result<(), ConfigError> {
    if (min..=max).contains(&value) {
        Ok(())
    } else {
        Err(ConfigError::OutOfRange {
            field,
            value,
            min,
            max,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_are_valid_and_fit_the_default_connection() {
        let options = EndpointConfig::default();
        assert_eq!(options.validate(), Ok(()));
        assert_eq!(options.check_connection(&Config::default()), Ok(()));
        let mut biggest = Config::default();
        biggest.mss = udt_core::config::MAX_MSS;
        assert_eq!(options.check_connection(&biggest), Ok(()));
    }

    #[test]
    fn out_of_range_fields_are_named() {
        let mut options = EndpointConfig {
            batch_size: 0,
            ..EndpointConfig::default()
        };
        assert!(matches!(
            options.validate(),
            Err(ConfigError::OutOfRange {
                field: "EndpointConfig.batch_size",
                value: 0,
                ..
            })
        ));
        options.batch_size = 1024;
        assert_eq!(options.validate(), Ok(()));
        options.batch_size = 1025;
        assert!(options.validate().is_err());
        options.batch_size = 32;
        options.max_datagram = 63;
        assert!(matches!(
            options.validate(),
            Err(ConfigError::OutOfRange {
                field: "EndpointConfig.max_datagram",
                ..
            })
        ));
    }

    #[test]
    fn a_connection_whose_packets_do_not_fit_is_refused() {
        let options = EndpointConfig {
            max_datagram: 1472,
            ..EndpointConfig::default()
        };
        let mut config = Config::default();
        config.mss = 1500;
        assert_eq!(options.check_connection(&config), Ok(()));
        config.mss = 1501;
        assert!(matches!(
            options.check_connection(&config),
            Err(ConfigError::OutOfRange {
                value: 1501,
                max: 1500,
                ..
            })
        ));
        // An invalid configuration is reported as such first.
        config.mss = 10;
        assert!(matches!(
            options.check_connection(&config),
            Err(ConfigError::OutOfRange {
                field: "Config.mss",
                ..
            })
        ));
    }

    #[test]
    fn the_receive_buffer_grows_with_the_connections_up_to_its_maximum() {
        let options = EndpointConfig {
            udp_recv_buffer: Some(16 << 20),
            udp_recv_buffer_per_connection: 64 << 10,
            udp_recv_buffer_max: 128 << 20,
            ..EndpointConfig::default()
        };
        assert_eq!(options.recv_buffer_for(0), Some(16 << 20));
        assert_eq!(
            options.recv_buffer_for(1000),
            Some((16 << 20) + 1000 * (64 << 10))
        );
        assert_eq!(options.recv_buffer_for(100_000), Some(128 << 20));
        // No growth, a maximum below the base, the system default.
        let fixed = EndpointConfig {
            udp_recv_buffer_per_connection: 0,
            ..options.clone()
        };
        assert_eq!(fixed.recv_buffer_for(1000), Some(16 << 20));
        let low_max = EndpointConfig {
            udp_recv_buffer_max: 1 << 20,
            ..options.clone()
        };
        assert_eq!(low_max.recv_buffer_for(1000), Some(16 << 20));
        let system = EndpointConfig {
            udp_recv_buffer: None,
            ..options
        };
        assert_eq!(system.recv_buffer_for(1000), None);
    }
}
