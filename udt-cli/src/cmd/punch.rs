//! `udt punch`: meet a peer through a `udt broker` under a session code,
//! punch through the NATs on the UDT port, run the UDT rendezvous on the
//! nominated pair, then move bytes: `--send PATH` streams a file (or `-`
//! for stdin), otherwise what arrives goes to stdout (or `--out PATH`).
//!
//! The punch engine is udt-core's [`PunchAgent`], registered as the
//! endpoint's datagram handler: STUN and checks share the port with UDT,
//! so the rendezvous runs on exactly the 5-tuple the checks opened. The
//! agent stays registered afterwards to answer the peer's late checks.
//! When no pair works and the broker relays (`udt broker --relay`), the
//! rendezvous runs to the broker's address instead, and every message
//! says the path is relayed.
//!
//! [`meet`] is the part `udt send`/`udt recv --broker --code` share: it
//! returns the connected stream.

use std::fs::File;
use std::io::{self, Read, Write};
use std::net::{IpAddr, SocketAddr, UdpSocket};
use std::path::PathBuf;
use std::time::{Duration, Instant};

use clap::Args;
use serde::Serialize;
use udt_core::punch::{PunchAgent, PunchConfig, PunchEvent, PunchState, Selected, SharedPunch};
use udt_mux::{Endpoint, UdtStream};

use crate::net::{self, Conn, NetOptions};
use crate::proto::exit;
use crate::stdio;
use crate::ui::{self, CliError, Output};

/// `udt punch` arguments.
#[derive(Clone, Debug, Args)]
pub struct PunchArgs {
    /// The broker, HOST:PORT.
    #[arg(long, value_name = "HOST:PORT")]
    pub broker: String,
    /// The code both peers give: its nameplate (before the first `-`)
    /// names the session at the broker, the whole code authenticates the
    /// connection (see docs/security.md). Without it, the broker picks a
    /// free nameplate, and the code to give the other side is printed.
    #[arg(long, value_name = "CODE")]
    pub code: Option<String>,
    /// Plain UDT4 after the punch: no encryption, no authentication, and
    /// the whole code names the session at the broker.
    #[arg(long)]
    pub insecure: bool,
    /// Local UDP address for UDT and the punch, [ADDR:]PORT (default: any
    /// port on every address of the broker's family, IPv4 or IPv6).
    #[arg(long, value_name = "ADDR:PORT")]
    pub bind: Option<String>,
    /// Send this file after connecting (`-`: stdin); without it, receive.
    #[arg(long, value_name = "PATH")]
    pub send: Option<PathBuf>,
    /// Where received bytes go (default: stdout).
    #[arg(long, value_name = "PATH", conflicts_with = "send")]
    pub out: Option<PathBuf>,
    /// Seconds to wait for the broker and the peer.
    #[arg(long, value_name = "SECONDS", default_value_t = 60.0)]
    pub wait: f64,
    /// Only punch and connect, then close (both sides exchange one byte
    /// so that each knows the other is connected).
    #[arg(long)]
    pub no_data: bool,
    /// Never use the broker's relay: fail when no direct pair works.
    #[arg(long, conflicts_with = "relay_only")]
    pub no_relay: bool,
    /// Skip the direct checks and use the broker's relay at once.
    #[arg(long)]
    pub relay_only: bool,
    /// UDT congestion control for the transfer (as the other data
    /// commands' --cc).
    #[arg(long, value_name = "CC", env = "UDT_CC")]
    pub cc: Option<udt_core::cc::CcAlgorithm>,
}

/// `--broker` and `--code` for `udt send` and `udt recv`: meet the peer
/// through a broker instead of connecting to an address.
#[derive(Clone, Debug, Default, Args)]
pub struct BrokerOpts {
    /// Meet the other side through this `udt broker` (HOST:PORT) and punch
    /// through the NATs (or relay), instead of a HOST:PORT to connect to.
    #[arg(long, value_name = "HOST:PORT")]
    pub broker: Option<String>,
    /// The session's name at the broker, from `--code` (which the
    /// transfer's security options own): see [`crate::secure::broker_session`].
    #[arg(skip)]
    pub session: Option<String>,
    /// No `--code` on the side that waits: the broker picks the nameplate.
    #[arg(skip)]
    pub allocate: Option<Allocation>,
}

/// A session the broker names: the code is its nameplate followed by a
/// secret made up here, and is printed for the other side once the broker
/// has answered.
#[derive(Clone, Debug)]
pub struct Allocation {
    /// The code's secret part (the words after the nameplate).
    pub secret: String,
    /// The command the other side runs, for the printed hint.
    pub other_side: String,
}

impl Allocation {
    /// An allocation with the words of a fresh code.
    ///
    /// # Errors
    /// When the operating system's random source cannot be read.
    pub fn new(other_side: impl Into<String>) -> Result<Allocation, CliError> {
        let code = crate::secure::new_code().map_err(|e| CliError::io("making a code", e))?;
        Ok(Allocation::from_code(&code, other_side))
    }

    /// An allocation keeping the secret part of `code` (its nameplate is
    /// replaced by the broker's).
    pub fn from_code(code: &str, other_side: impl Into<String>) -> Allocation {
        let secret = code.split_once('-').map_or(code, |(_, rest)| rest);
        Allocation {
            secret: secret.to_string(),
            other_side: other_side.into(),
        }
    }

    /// The whole code once the broker named the session.
    pub fn code(&self, nameplate: &str) -> String {
        format!("{nameplate}-{}", self.secret)
    }
}

/// What [`meet`] needs.
#[derive(Clone, Debug)]
pub struct MeetOptions {
    /// The broker, HOST:PORT.
    pub broker: String,
    /// The session's name at the broker (a code's nameplate in secure
    /// mode); empty with [`allocate`](Self::allocate).
    pub session: String,
    /// Let the broker name the session, and authenticate the connection
    /// with the code made of its nameplate and this secret (secure mode).
    pub allocate: Option<Allocation>,
    /// Local UDP address, [ADDR:]PORT (`None`: any port, any address of
    /// the broker's family).
    pub bind: Option<String>,
    /// Seconds to wait for the broker and the peer.
    pub wait: f64,
    /// Fall back to the broker's relay.
    pub allow_relay: bool,
    /// Relay at once.
    pub relay_only: bool,
}

impl MeetOptions {
    /// Defaults (any port, 60 s, relay allowed) for a broker and session.
    pub fn new(broker: &str, session: &str) -> MeetOptions {
        MeetOptions {
            broker: broker.to_string(),
            session: session.to_string(),
            allocate: None,
            bind: None,
            wait: 60.0,
            allow_relay: true,
            relay_only: false,
        }
    }
}

/// A connected punch: the stream and how it came about.
#[derive(Debug)]
pub struct Meeting {
    /// The endpoint (its punch handler keeps answering and refreshing).
    pub endpoint: Endpoint,
    /// The UDT stream to the peer (through the relay when relayed).
    pub stream: UdtStream,
    /// The pair both sides settled on.
    pub selected: Selected,
    /// Our candidates.
    pub local_candidates: Vec<String>,
    /// Seconds until the pair was settled.
    pub punch_seconds: f64,
    /// Seconds until the UDT rendezvous completed.
    pub connect_seconds: f64,
    /// Progress steps.
    pub steps: Vec<Step>,
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
    /// Types of the local and remote candidates (`srflx-srflx`,
    /// `host-host`, ...), or `relay` when relayed through the broker.
    pub pair_type: String,
    /// `"direct"`, or `"relayed"` through the broker.
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

/// Our host candidates: the bound address, or when bound to any
/// address, the one that routes to the broker first (it is the likeliest
/// to be reachable), then the other interface addresses of the same
/// family, at most [`MAX_CANDIDATES`](udt_core::punch::broker::MAX_CANDIDATES).
fn host_candidates(local: SocketAddr, broker: SocketAddr) -> Result<Vec<SocketAddr>, CliError> {
    if !local.ip().is_unspecified() {
        return Ok(vec![local]);
    }
    let route = route_source(broker)
        .ok_or_else(|| CliError::new(exit::NETWORK, format!("no route to the broker {broker}")))?;
    let mut ips = vec![route];
    for ip in super::ifaddrs::interface_addresses(route, broker.ip().is_loopback()) {
        if !ips.contains(&ip) {
            ips.push(ip);
        }
    }
    ips.truncate(udt_core::punch::broker::MAX_CANDIDATES);
    Ok(ips
        .into_iter()
        .map(|ip| SocketAddr::new(ip, local.port()))
        .collect())
}

fn describe(e: &PunchEvent, relay_only: bool) -> String {
    match e {
        PunchEvent::Registered {
            reflexive,
            rtt,
            session,
        } => format!(
            "registered with the broker as session {session:?}: we are {reflexive} from outside \
             (rtt {:.1} ms)",
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
        PunchEvent::RelayRequested(_) if relay_only => {
            "direct checks skipped (--relay-only); asking the broker to relay".into()
        }
        PunchEvent::RelayRequested(f) => {
            format!("no direct path ({f}); asking the broker to relay")
        }
        PunchEvent::Nominated(s) if s.is_relayed() => format!(
            "RELAYED through the broker {}: both sides asked and the broker bound us",
            s.remote.addr
        ),
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
    relay_only: bool,
    allocate: Option<&Allocation>,
    steps: &mut Vec<Step>,
) -> Result<Selected, CliError> {
    let deadline = start + limit;
    let mut g = shared.lock();
    loop {
        while let Some((at, e)) = g.poll_event() {
            if let (Some(a), PunchEvent::Registered { session, .. }) = (allocate, &e) {
                // Always printed (stderr), even with --quiet: without it
                // nobody can join.
                crate::secure::announce_code(&a.code(session), &a.other_side);
            }
            let what = describe(&e, relay_only);
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

/// `pair_type` for a person and `--json`: `relay`, or the two kinds.
pub fn pair_type(s: &Selected) -> String {
    if s.is_relayed() {
        "relay".into()
    } else {
        format!("{}-{}", s.local.kind, s.remote.kind)
    }
}

/// Meets the peer through the broker: registers, punches (or falls back
/// to the relay), runs the UDT rendezvous on the settled pair with
/// `config`, and returns the stream. Progress goes to `output`.
///
/// # Errors
/// Bad options (exit 2); the broker unreachable, no peer, punching failed
/// with the NAT behaviour seen and what became of the relay, or the
/// rendezvous failed (exit 3).
pub fn meet(
    opts: &MeetOptions,
    mut config: udt_core::Config,
    output: Output,
) -> Result<Meeting, CliError> {
    if !(opts.wait.is_finite() && opts.wait > 0.0) {
        return Err(CliError::usage(
            "--wait must be a positive number of seconds",
        ));
    }
    if opts.allocate.is_some() != opts.session.is_empty() || opts.session.len() > 64 {
        return Err(CliError::usage("--code must be 1 to 64 bytes"));
    }
    let broker = *net::resolve(&opts.broker)
        .map_err(|e| CliError::io("bad --broker", e))?
        .first()
        .ok_or_else(|| CliError::usage("--broker resolves to no address"))?;
    let bind = match &opts.bind {
        Some(b) => net::listen_addr(b).map_err(|e| CliError::usage(e.to_string()))?,
        None if broker.is_ipv6() => SocketAddr::from((std::net::Ipv6Addr::UNSPECIFIED, 0)),
        None => SocketAddr::from(([0, 0, 0, 0], 0)),
    };
    if bind.is_ipv4() != broker.is_ipv4() {
        return Err(CliError::usage(format!(
            "--bind {bind} and the broker {broker} are not the same IP version"
        )));
    }
    // The two sides learn of the nomination about half a round trip apart;
    // a generous rendezvous window costs nothing when it succeeds.
    config.connect_timeout = Duration::from_secs(10);
    let secure = config.security.is_secure();
    let endpoint = Endpoint::bind_with(bind, config, NetOptions::endpoint_config())
        .map_err(|e| CliError::io("cannot bind", e))?;
    let local = endpoint.local_addr();
    let hosts = host_candidates(local, broker)?;
    let random = os_random().map_err(|e| CliError::io("reading /dev/urandom", e))?;
    let mut token = [0u8; 16];
    token.copy_from_slice(&random[..16]);
    let seed = u64::from_le_bytes(random[16..].try_into().unwrap_or_default());
    let mut pc = PunchConfig::new(broker, opts.session.clone(), hosts.clone(), token, seed);
    pc.wait_for_peer = Duration::from_secs_f64(opts.wait);
    pc.allow_relay = opts.allow_relay;
    pc.relay_only = opts.relay_only;
    // Checks, then (for the relay) the peer's own check deadline.
    let limit = pc.wait_for_peer + pc.check_timeout * 2 + Duration::from_secs(10);
    let start = Instant::now();
    let shared = SharedPunch::new(PunchAgent::new(pc, start));
    let list: Vec<String> = hosts.iter().map(|h| h.to_string()).collect();
    output.status(format_args!(
        "udt: punching from {local} (host candidates {}) via broker {broker}, session {}{}",
        list.join(", "),
        if opts.allocate.is_some() {
            "to be named by the broker".to_string()
        } else {
            format!("{:?}", opts.session)
        },
        if secure && opts.allocate.is_none() {
            " (the code's nameplate; the rest of it stays secret)"
        } else {
            ""
        }
    ));
    endpoint.set_datagram_handler(Some(shared.handler()));
    let mut steps = Vec::new();
    let selected = wait_for_pair(
        &shared,
        start,
        limit,
        output,
        opts.relay_only,
        opts.allocate.as_ref(),
        &mut steps,
    )?;
    let mut options = udt_mux::Options::stream();
    if let Some(a) = &opts.allocate {
        // The code the other side was given names the broker's nameplate.
        let code = a.code(shared.lock().session());
        options = options.security(udt_core::Security::Code(code));
    }
    let punch_seconds = start.elapsed().as_secs_f64();
    let local_candidates = shared
        .lock()
        .local_candidates()
        .iter()
        .map(|c| c.to_string())
        .collect();
    if selected.is_relayed() {
        output.status(format_args!(
            "udt: RELAYED path through the broker {} (no direct pair worked), UDT rendezvous...",
            selected.remote.addr
        ));
    } else {
        output.status(format_args!(
            "udt: direct path: {} (remote {}), UDT rendezvous...",
            selected, selected.remote.kind
        ));
    }
    let stream = endpoint
        .rendezvous_with(selected.remote.addr, options)
        .map_err(|e| {
            CliError::io(
                &format!("UDT rendezvous with {}", selected.remote.addr),
                e.into(),
            )
        })?;
    let connect_seconds = start.elapsed().as_secs_f64();
    let how = if selected.is_relayed() {
        "relayed"
    } else {
        "direct"
    };
    output.status(format_args!(
        "udt: connected ({how}) to {} in {:.3} s",
        selected.remote.addr, connect_seconds
    ));
    steps.push(Step {
        at: connect_seconds,
        what: format!(
            "UDT rendezvous with {} completed ({how})",
            selected.remote.addr
        ),
    });
    Ok(Meeting {
        endpoint,
        stream,
        selected,
        local_candidates,
        punch_seconds,
        connect_seconds,
        steps,
    })
}

/// `udt send`/`udt recv --broker --code`: [`meet`] with the transfer's
/// UDT options, as a connection for the file protocol.
///
/// # Errors
/// As [`meet`]; `--broker` is UDT only.
pub fn connect(opts: &BrokerOpts, net: &NetOptions, output: Output) -> Result<Conn, CliError> {
    let Some(broker) = &opts.broker else {
        return Err(CliError::usage("--broker needs a HOST:PORT"));
    };
    let session = match (&opts.session, &opts.allocate) {
        (Some(session), None) => session.as_str(),
        (None, Some(_)) => "",
        _ => return Err(CliError::usage("--broker needs --code")),
    };
    if net.transport != net::Transport::Udt {
        return Err(CliError::usage("--broker works over UDT only (not --tcp)"));
    }
    let opts = MeetOptions {
        allocate: opts.allocate.clone(),
        ..MeetOptions::new(broker, session)
    };
    let m = meet(&opts, net.udt_config(), output)?;
    // The stream keeps the endpoint (and its punch handler) running.
    drop(m.endpoint);
    Ok(Conn::udt(m.stream))
}

/// Runs `udt punch`.
///
/// # Errors
/// Bad arguments (exit 2); the broker unreachable, no peer, punching
/// failed with the NAT behaviour seen, or the connection broke (exit 3);
/// file errors.
pub fn run(args: &PunchArgs, output: Output) -> Result<PunchSummary, CliError> {
    let mut config = udt_core::Config::default();
    if let Some(cc) = args.cc {
        config = config.with_congestion(cc);
    }
    let (session, allocate) = match &args.code {
        Some(code) => (crate::secure::broker_session(code, args.insecure)?, None),
        None if args.insecure => {
            return Err(CliError::usage(
                "--insecure needs --code: the whole code names a plain session at the broker",
            ))
        }
        None => {
            let hint = format!("udt punch --broker {}", args.broker);
            (String::new(), Some(Allocation::new(hint)?))
        }
    };
    if args.insecure {
        eprintln!(
            "udt: WARNING: --insecure: this connection is NOT encrypted and NOT authenticated \
             (plain UDT4): anyone on the path, the broker included, can read or change it"
        );
    } else if let Some(code) = &args.code {
        config.security = udt_core::Security::Code(code.trim().to_lowercase());
    }
    let opts = MeetOptions {
        allocate,
        bind: args.bind.clone(),
        wait: args.wait,
        allow_relay: !args.no_relay,
        relay_only: args.relay_only,
        ..MeetOptions::new(&args.broker, &session)
    };
    let Meeting {
        endpoint: _endpoint,
        mut stream,
        selected,
        local_candidates,
        punch_seconds,
        connect_seconds,
        steps,
    } = meet(&opts, config, output)?;
    let t0 = Instant::now();
    let bytes = if args.no_data {
        // A UDT rendezvous side can finish its handshake before the other
        // (which then waits for our next handshake or data); closing at
        // once would leave the peer waiting until its timeout. One byte
        // each way proves both sides connected.
        stream
            .write_all(&[0])
            .and_then(|()| stream.flush())
            .and_then(|()| stream.read_exact(&mut [0u8; 1]))
            .map_err(|e| CliError::io("exchanging the connection check", e))?;
        0
    } else if let Some(path) = &args.send {
        let mut input: Box<dyn Read> = if path.as_os_str() == "-" {
            stdio::widen_pipe(stdio::STDIN);
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
            None => {
                Box::new(stdio::raw_stdout().map_err(|e| CliError::io("cannot use stdout", e))?)
            }
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
        pair_type: pair_type(&selected),
        path: if selected.is_relayed() {
            "relayed"
        } else {
            "direct"
        },
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
            "udt: {} {} in {:.2} s: {} ({} path, pair {})",
            if args.send.is_some() {
                "sent"
            } else {
                "received"
            },
            ui::bytes(bytes),
            elapsed.as_secs_f64(),
            ui::bitrate(summary.throughput_mbps * 1e6),
            summary.path,
            summary.pair_type
        );
    }
    Ok(summary)
}
