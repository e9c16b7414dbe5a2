//! `udt broker`: the introducer for `udt punch`, on one UDP port. It also
//! answers standard STUN Binding requests and, with `--relay`, relays the
//! UDT packets of the sessions it introduced when they cannot punch. The
//! protocol and the relay table are udt-core's [`Broker`]; this file only
//! owns the socket and the clock.
//!
//! The relay path is one `recv_from`, one hash lookup and one `send_to`
//! per datagram into a buffer allocated once.

use std::fs::File;
use std::io::{self, Read};
use std::net::UdpSocket;
use std::time::{Duration, Instant};

use clap::Args;
use udt_core::endpoint::is_stun;
use udt_core::punch::{Broker, BrokerConfig};

use crate::net;
use crate::ui::{CliError, Output};

/// `udt broker` arguments.
#[derive(Clone, Debug, Args)]
pub struct BrokerArgs {
    /// UDP address to serve on, [ADDR:]PORT.
    #[arg(long, value_name = "ADDR:PORT", default_value = "3478")]
    pub listen: String,
    /// Most sessions held at once.
    #[arg(long, value_name = "N", default_value_t = 4096)]
    pub max_sessions: usize,
    /// Most sessions opened from one IP address.
    #[arg(long, value_name = "N", default_value_t = 16)]
    pub max_sessions_per_ip: usize,
    /// Stop after this many seconds (default: run until killed).
    #[arg(long, value_name = "SECONDS")]
    pub run_for: Option<f64>,
    /// Relay the UDT packets of sessions it introduced whose peers cannot
    /// punch through (off by default: relayed data costs this host's
    /// bandwidth).
    #[arg(long)]
    pub relay: bool,
    /// With --relay: most relayed pairs at once.
    #[arg(long, value_name = "N", default_value_t = 1024)]
    pub max_relays: usize,
}

/// Socket buffers asked for with --relay: a relayed bulk transfer arrives
/// in bursts of a UDT flow window.
const RELAY_SOCKET_BUFFER: usize = 8 << 20;

/// A seed for the relay tickets from the operating system.
fn os_seed() -> io::Result<u64> {
    let mut b = [0u8; 8];
    File::open("/dev/urandom")?.read_exact(&mut b)?;
    Ok(u64::from_le_bytes(b))
}

/// Asks for larger kernel socket buffers (best effort: the kernel caps
/// them at its maximum, and a refusal only costs throughput).
fn grow_buffers(sock: &UdpSocket) {
    let sock = socket2::SockRef::from(sock);
    if let Err(e) = sock.set_recv_buffer_size(RELAY_SOCKET_BUFFER) {
        log::warn!("broker: SO_RCVBUF refused: {e}");
    }
    if let Err(e) = sock.set_send_buffer_size(RELAY_SOCKET_BUFFER) {
        log::warn!("broker: SO_SNDBUF refused: {e}");
    }
}

/// Runs the broker until killed (or `--run-for` passes).
///
/// # Errors
/// A bad address, or a socket that cannot be bound or fails.
pub fn run(args: &BrokerArgs, output: Output) -> Result<(), CliError> {
    let addr = net::listen_addr(&args.listen).map_err(|e| CliError::usage(e.to_string()))?;
    let sock = UdpSocket::bind(addr).map_err(|e| CliError::io("cannot bind the broker", e))?;
    let local = sock
        .local_addr()
        .map_err(|e| CliError::io("broker address", e))?;
    output.status(format_args!(
        "udt: broker listening on {local} (UDP; also a STUN server){}",
        if args.relay {
            "; relays sessions it introduced when they cannot punch"
        } else {
            ""
        }
    ));
    if args.relay {
        grow_buffers(&sock);
    }
    let seed = os_seed().map_err(|e| CliError::io("reading /dev/urandom", e))?;
    let mut broker = Broker::new(BrokerConfig {
        max_sessions: args.max_sessions.max(1),
        max_sessions_per_ip: args.max_sessions_per_ip.max(1),
        relay: args.relay,
        max_relays: args.max_relays.max(1),
        seed,
        ..BrokerConfig::default()
    });
    // A fixed wake-up interval: setting the timeout on every datagram
    // would cost a system call per relayed packet.
    sock.set_read_timeout(Some(Duration::from_millis(100)))
        .map_err(|e| CliError::io("broker socket", e))?;
    let end = args
        .run_for
        .filter(|s| s.is_finite() && *s > 0.0)
        .map(|s| Instant::now() + Duration::from_secs_f64(s));
    // Room for the largest UDP datagram (a UDT MSS can be up to 64 KiB).
    let mut buf = vec![0u8; 65_536];
    let mut introductions = 0;
    let mut relayed_pairs = 0;
    loop {
        let now = Instant::now();
        if end.is_some_and(|e| now >= e) {
            return Ok(());
        }
        if broker.next_timeout().is_some_and(|t| t <= now) {
            broker.sweep(now);
        }
        match sock.recv_from(&mut buf) {
            Ok((n, from)) if !is_stun(&buf[..n]) => {
                if let Some(to) = broker.relay(Instant::now(), from, n) {
                    if let Err(e) = sock.send_to(&buf[..n], to) {
                        log::debug!("broker: relaying to {to} failed: {e}");
                    }
                }
                continue;
            }
            Ok((n, from)) => broker.handle(Instant::now(), from, &buf[..n]),
            Err(e)
                if matches!(
                    e.kind(),
                    io::ErrorKind::WouldBlock
                        | io::ErrorKind::TimedOut
                        | io::ErrorKind::Interrupted
                        // ICMP errors from earlier sends: not fatal.
                        | io::ErrorKind::ConnectionRefused
                        | io::ErrorKind::ConnectionReset
                ) => {}
            Err(e) => return Err(CliError::io("broker socket", e)),
        }
        while let Some((to, d)) = broker.poll_send() {
            if let Err(e) = sock.send_to(&d, to) {
                log::debug!("broker: send to {to} failed: {e}");
            }
        }
        let c = broker.counters();
        if c.introductions != introductions {
            introductions = c.introductions;
            log::info!(
                "broker: {} introductions, {} sessions, {} refused",
                c.introductions,
                broker.sessions(),
                c.refused
            );
        }
        let r = broker.relay_counters();
        if r.bound != relayed_pairs {
            relayed_pairs = r.bound;
            output.status(format_args!(
                "udt: broker: relaying {} pair(s) now ({} bound so far, {} packets, {} bytes relayed)",
                broker.relayed_pairs(),
                r.bound,
                r.packets,
                r.bytes
            ));
        }
    }
}
