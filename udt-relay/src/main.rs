//! The `udt-relay` command: run an impairment relay from the command line
//! and print its counters as JSON lines.

use std::io::Write;
use std::net::SocketAddr;
use std::process::ExitCode;
use std::thread;
use std::time::{Duration, Instant};

use clap::Parser;
use udt_relay::spec::parse_duration;
use udt_relay::{Impairment, Relay, RelayConfig};

/// A UDP relay that impairs traffic: loss, bursty loss, delay, jitter,
/// duplication and a rate cap with a bounded queue, per direction, from a seed.
///
/// Clients send to --listen; each client gets its own socket towards
/// --upstream. Impairments are comma-separated key=value lists:
/// loss=1%, burst=2%:4 (rate:mean burst length), ge=P_GB:P_BG:LOSS_G:LOSS_B,
/// delay=10ms, jitter=1ms, dup=0.1%, rate=100mbit, queue=256k.
/// Example: udt-relay --upstream 127.0.0.1:9000 --impair loss=1%,delay=10ms
#[derive(Debug, Parser)]
#[command(name = "udt-relay", version)]
struct Args {
    /// Address clients send to.
    #[arg(long, default_value = "127.0.0.1:0")]
    listen: SocketAddr,
    /// Address to forward to.
    #[arg(long)]
    upstream: SocketAddr,
    /// Fixed local address of the upstream-facing socket (one client at a
    /// time; lets the upstream aim at the relay first, e.g. UDT rendezvous).
    #[arg(long)]
    upstream_bind: Option<SocketAddr>,
    /// Impairment of both directions.
    #[arg(long, default_value = "none")]
    impair: Impairment,
    /// Impairment of the client → upstream direction (overrides --impair).
    #[arg(long)]
    impair_up: Option<Impairment>,
    /// Impairment of the upstream → client direction (overrides --impair).
    #[arg(long)]
    impair_down: Option<Impairment>,
    /// Seed of every random decision.
    #[arg(long, default_value_t = 1)]
    seed: u64,
    /// Most client sessions at once.
    #[arg(long, default_value_t = 64)]
    max_sessions: usize,
    /// Most datagrams held (delayed) at once per direction.
    #[arg(long, default_value_t = 16_384)]
    max_pending: usize,
    /// Print the counters as a JSON line this often (0 = only at the end).
    #[arg(long, default_value = "1s", value_parser = parse_duration)]
    stats_interval: Duration,
    /// Stop after this long (default: run until killed).
    #[arg(long, value_parser = parse_duration)]
    duration: Option<Duration>,
}

fn main() -> ExitCode {
    let args = Args::parse();
    let config = RelayConfig {
        listen: args.listen,
        upstream_bind: args.upstream_bind,
        to_upstream: args.impair_up.unwrap_or_else(|| args.impair.clone()),
        to_client: args.impair_down.unwrap_or_else(|| args.impair.clone()),
        seed: args.seed,
        max_sessions: args.max_sessions,
        max_pending: args.max_pending,
        ..RelayConfig::new(args.upstream)
    };
    let (up, down) = (config.to_upstream.to_string(), config.to_client.to_string());
    let relay = match Relay::start(config) {
        Ok(r) => r,
        Err(e) => {
            eprintln!("udt-relay: cannot start: {e}");
            return ExitCode::FAILURE;
        }
    };
    eprintln!(
        "udt-relay: {} -> {} (to upstream: {up}; to client: {down}; seed {})",
        relay.local_addr(),
        args.upstream,
        args.seed
    );
    let started = Instant::now();
    let tick = if args.stats_interval.is_zero() {
        Duration::from_millis(200)
    } else {
        args.stats_interval
    };
    loop {
        let left = args.duration.map(|d| d.saturating_sub(started.elapsed()));
        if left.is_some_and(|l| l.is_zero()) {
            break;
        }
        thread::sleep(left.map_or(tick, |l| l.min(tick)));
        if let Some(why) = relay.failure() {
            eprintln!("udt-relay: stopped: {why}");
            println!("{}", relay.stop().to_json());
            return ExitCode::FAILURE;
        }
        if !args.stats_interval.is_zero() {
            let mut out = std::io::stdout().lock();
            // A closed stdout (the reader went away) is no reason to stop relaying.
            let _ = writeln!(out, "{}", relay.stats().to_json());
            let _ = out.flush();
        }
    }
    println!("{}", relay.stop().to_json());
    ExitCode::SUCCESS
}
