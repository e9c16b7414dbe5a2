//! `udt broker`: the introducer for `udt punch`, on one UDP port. It also
//! answers standard STUN Binding requests. The protocol is udt-core's
//! [`Broker`]; this file only owns the socket and the clock.

use std::io;
use std::net::UdpSocket;
use std::time::{Duration, Instant};

use clap::Args;
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
        "udt: broker on {local} (UDP; also a STUN server)"
    ));
    let mut broker = Broker::new(BrokerConfig {
        max_sessions: args.max_sessions.max(1),
        max_sessions_per_ip: args.max_sessions_per_ip.max(1),
        ..BrokerConfig::default()
    });
    let end = args
        .run_for
        .filter(|s| s.is_finite() && *s > 0.0)
        .map(|s| Instant::now() + Duration::from_secs_f64(s));
    let mut buf = vec![0u8; 2048];
    let mut introductions = 0;
    loop {
        let now = Instant::now();
        if end.is_some_and(|e| now >= e) {
            return Ok(());
        }
        if broker.next_timeout().is_some_and(|t| t <= now) {
            broker.sweep(now);
        }
        // Wake for the next sweep, the end, or at least once a second.
        let wait = [broker.next_timeout(), end]
            .into_iter()
            .flatten()
            .map(|t| t.saturating_duration_since(now))
            .fold(Duration::from_secs(1), Duration::min)
            .max(Duration::from_millis(1));
        sock.set_read_timeout(Some(wait))
            .map_err(|e| CliError::io("broker socket", e))?;
        match sock.recv_from(&mut buf) {
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
    }
}
