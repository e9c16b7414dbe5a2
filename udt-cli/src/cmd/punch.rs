//! `udt punch`: meet a peer through a `udt broker` under a session code,
//! punch through the NATs on the UDT port, run the UDT rendezvous on the
//! nominated pair, then move bytes: `--send PATH` streams a file (or `-`
//! for stdin), otherwise what arrives goes to stdout (or `--out PATH`).
//!
//! The punch engine is udt-core's [`PunchAgent`], registered as the
//! endpoint's datagram handler: STUN and checks share the port with UDT,
//! so the rendezvous runs on exactly the 5-tuple the checks opened. The
//! agent stays registered afterwards to answer the peer's late checks.

use std::fs::File;
use std::io::{self, Read, Write};
use std::net::{IpAddr, SocketAddr, UdpSocket};
use std::path::PathBuf;
use std::time::{Duration, Instant};

use clap::Args;
use serde::Serialize;
use udt_core::punch::{PunchAgent, PunchConfig, PunchEvent, PunchState, Selected, SharedPunch};
use udt_mux::{Endpoint, EndpointConfig};

use crate::net;
use crate::proto::exit;
use crate::ui::{self, CliError, Output};

/// `udt punch` arguments.
#[derive(Clone, Debug, Args)]
pub struct PunchArgs {
    /// The broker, HOST:PORT.
    #[arg(long, value_name = "HOST:PORT")]
    pub broker: String,
    /// The session code both peers give.
    #[arg(long, value_name = "CODE")]
    pub code: String,
    /// Local UDP address for UDT and the punch, [ADDR:]PORT.
    #[arg(long, value_name = "ADDR:PORT", default_value = "0.0.0.0:0")]
    pub bind: String,
    /// Send this file after connecting (`-`: stdin); without it, receive.
    #[arg(long, value_name = "PATH")]
    pub send: Option<PathBuf>,
    /// Where received bytes go (default: stdout).
    #[arg(long, value_name = "PATH", conflicts_with = "send")]
    pub out: Option<PathBuf>,
    /// Seconds to wait for the broker and the peer.
    #[arg(long, value_name = "SECONDS", default_value_t = 60.0)]
    pub wait: f64,
    /// Only punch and connect, then close (no data).
    #[arg(long)]
    pub no_data: bool,
}

/// One progress step, for `--json`.
#[derive(Clone, Debug, Serialize)]
pub struct Step {
    /// Seconds since the start.
    pub at: f64,
    /// What happened.
    pub what: String,
}

/// The summary of a punch.
#[derive(Clone, Debug, Serialize)]
pub struct PunchSummary {
    /// Always true (failures are errors).
    pub ok: bool,
    /// Our candidates.
    pub local_candidates: Vec<String>,
    /// The nominated pair: local and remote candidate.
    pub local: String,
    /// The remote candidate: the UDT peer address.
    pub remote: String,
    /// Type of the remote candidate (host, srflx, prflx).
    pub pair_type: String,
    /// `"direct"` (relay fallback is not implemented yet).
    pub path: &'static str,
    /// Seconds until the pair was nominated.
    pub punch_seconds: f64,
    /// Seconds until the UDT rendezvous completed.
    pub connect_seconds: f64,
    /// Payload bytes moved.
    pub bytes: u64,
    /// Megabits per second of the transfer.
    pub throughput_mbps: f64,
    /// Progress steps.
    pub steps: Vec<Step>,
}

/// 24 random bytes from the operating system: the check token and a seed.
fn os_random() -> io::Result<[u8; 24]> {
    let mut b = [0u8; 24];
    File::open("/dev/urandom")?.read_exact(&mut b)?;
    Ok(b)
}

/// The address of the interface that routes to `to` (no packet is sent:
/// connecting a UDP socket only picks the route).
fn route_source(to: SocketAddr) -> Option<IpAddr> {
    let any: SocketAddr = if to.is_ipv4() {
        ([0, 0, 0, 0], 0).into()
    } else {
        (std::net::Ipv6Addr::UNSPECIFIED, 0).into()
    };
    let s = UdpSocket::bind(any).ok()?;
    s.connect(to).ok()?;
    Some(s.local_addr().ok()?.ip())
}

fn describe(e: &PunchEvent) -> String {
    match e {
        PunchEvent::Registered { reflexive, rtt } => format!(
            "registered with the broker: we are {reflexive} from outside (rtt {:.1} ms)",
            rtt.as_secs_f64() * 1e3
        ),
        PunchEvent::PeerIntroduced {
            candidates,
            controlling,
        } => {
            let list: Vec<String> = candidates.iter().map(|c| c.to_string()).collect();
            format!(
                "peer found: {} ({})",
                list.join(", "),
                if *controlling {
                    "we nominate"
                } else {
                    "the peer nominates"
                }
            )
        }
        PunchEvent::CheckSucceeded { remote, rtt } => format!(
            "check to {remote} answered (rtt {:.1} ms)",
            rtt.as_secs_f64() * 1e3
        ),
        PunchEvent::CheckFailed { remote } => format!("check to {remote}: no answer"),
        PunchEvent::Nominated(s) => format!(
            "nominated {s}: the best working pair (priority {})",
            s.priority
        ),
        PunchEvent::Failed(f) => format!("failed: {f}"),
    }
}

/// Waits for the agent to nominate or fail, reporting progress.
fn wait_for_pair(
    shared: &SharedPunch,
    start: Instant,
    limit: Duration,
    output: Output,
    steps: &mut Vec<Step>,
) -> Result<Selected, CliError> {
    let deadline = start + limit;
    let mut g = shared.lock();
    loop {
        while let Some((at, e)) = g.poll_event() {
            let what = describe(&e);
            output.status(format_args!("udt: [{:>7.3} s] {what}", at.as_secs_f64()));
            steps.push(Step {
                at: at.as_secs_f64(),
                what,
            });
        }
        match g.state() {
            PunchState::Nominated(s) => return Ok(*s),
            PunchState::Failed(f) => return Err(CliError::new(exit::NETWORK, f.to_string())),
            _ => {}
        }
        let now = Instant::now();
        if now >= deadline {
            return Err(CliError::new(
                exit::NETWORK,
                "punch timed out before the broker introduced a peer",
            ));
        }
        g = shared.wait(g, (deadline - now).min(Duration::from_millis(500)));
    }
}

/// Runs `udt punch`.
///
/// # Errors
/// Bad arguments (exit 2); the broker unreachable, no peer, punching
/// failed with the NAT behaviour seen, or the connection broke (exit 3);
/// file errors.
pub fn run(args: &PunchArgs, output: Output) -> Result<PunchSummary, CliError> {
    if !(args.wait.is_finite() && args.wait > 0.0) {
        return Err(CliError::usage(
            "--wait must be a positive number of seconds",
        ));
    }
    if args.code.is_empty() || args.code.len() > 64 {
        return Err(CliError::usage("--code must be 1 to 64 bytes"));
    }
    let broker = *net::resolve(&args.broker)
        .map_err(|e| CliError::io("bad --broker", e))?
        .first()
        .ok_or_else(|| CliError::usage("--broker resolves to no address"))?;
    let bind = net::listen_addr(&args.bind).map_err(|e| CliError::usage(e.to_string()))?;
    let mut config = udt_core::Config::default();
    // The two sides learn of the nomination about half a round trip apart;
    // a generous rendezvous window costs nothing when it succeeds.
    config.connect_timeout = Duration::from_secs(10);
    let endpoint = Endpoint::bind_with(bind, config, EndpointConfig::default())
        .map_err(|e| CliError::io("cannot bind", e))?;
    let local = endpoint.local_addr();
    let host_ip = if local.ip().is_unspecified() {
        route_source(broker).ok_or_else(|| {
            CliError::new(exit::NETWORK, format!("no route to the broker {broker}"))
        })?
    } else {
        local.ip()
    };
    let host = SocketAddr::new(host_ip, local.port());
    let random = os_random().map_err(|e| CliError::io("reading /dev/urandom", e))?;
    let mut token = [0u8; 16];
    token.copy_from_slice(&random[..16]);
    let seed = u64::from_le_bytes(random[16..].try_into().unwrap_or_default());
    let mut pc = PunchConfig::new(broker, args.code.clone(), vec![host], token, seed);
    pc.wait_for_peer = Duration::from_secs_f64(args.wait);
    let start = Instant::now();
    let shared = SharedPunch::new(PunchAgent::new(pc, start));
    output.status(format_args!(
        "udt: punching from {local} (host candidate {host}) via broker {broker}, code {:?}",
        args.code
    ));
    endpoint.set_datagram_handler(Some(shared.handler()));
    let mut steps = Vec::new();
    let limit = Duration::from_secs_f64(args.wait) + Duration::from_secs(15);
    let selected = wait_for_pair(&shared, start, limit, output, &mut steps)?;
    let punch_seconds = start.elapsed().as_secs_f64();
    let local_candidates = shared
        .lock()
        .local_candidates()
        .iter()
        .map(|c| c.to_string())
        .collect();
    output.status(format_args!(
        "udt: direct path: {} (remote {}), UDT rendezvous...",
        selected, selected.remote.kind
    ));
    let mut stream = endpoint.rendezvous(selected.remote.addr).map_err(|e| {
        CliError::io(
            &format!("UDT rendezvous with {}", selected.remote.addr),
            e.into(),
        )
    })?;
    let connect_seconds = start.elapsed().as_secs_f64();
    output.status(format_args!(
        "udt: connected to {} in {:.3} s",
        selected.remote.addr, connect_seconds
    ));
    steps.push(Step {
        at: connect_seconds,
        what: format!("UDT rendezvous with {} completed", selected.remote.addr),
    });
    let t0 = Instant::now();
    let bytes = if args.no_data {
        0
    } else if let Some(path) = &args.send {
        let mut input: Box<dyn Read> = if path.as_os_str() == "-" {
            Box::new(io::stdin().lock())
        } else {
            Box::new(File::open(path).map_err(|e| CliError::io(&format!("{}", path.display()), e))?)
        };
        io::copy(&mut input, &mut stream).map_err(|e| CliError::io("sending", e))?
    } else {
        let mut out: Box<dyn Write> = match &args.out {
            Some(p) => Box::new(io::BufWriter::new(
                File::create(p).map_err(|e| CliError::io(&format!("{}", p.display()), e))?,
            )),
            None => Box::new(io::stdout().lock()),
        };
        let n = io::copy(&mut stream, &mut out).map_err(|e| CliError::io("receiving", e))?;
        out.flush()
            .map_err(|e| CliError::io("writing the output", e))?;
        n
    };
    // Closing waits until the peer has acknowledged everything sent.
    stream
        .close()
        .map_err(|e| CliError::io("closing the connection", e))?;
    let elapsed = t0.elapsed();
    let summary = PunchSummary {
        ok: true,
        local_candidates,
        local: selected.local.to_string(),
        remote: selected.remote.to_string(),
        pair_type: format!("{}-{}", selected.local.kind, selected.remote.kind),
        path: "direct",
        punch_seconds,
        connect_seconds,
        bytes,
        throughput_mbps: ui::mbps(bytes, elapsed),
        steps,
    };
    if output.json {
        if let Ok(s) = serde_json::to_string(&summary) {
            eprintln!("{s}");
        }
    } else if output.is_human() && !args.no_data {
        eprintln!(
            "udt: {} {} in {:.2} s: {}",
            if args.send.is_some() {
                "sent"
            } else {
                "received"
            },
            ui::bytes(bytes),
            elapsed.as_secs_f64(),
            ui::bitrate(summary.throughput_mbps * 1e6)
        );
    }
    Ok(summary)
}
