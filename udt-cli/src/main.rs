//! The `udt` program: argument parsing, logging set-up and exit codes.
//! The commands live in the library (`udt_cli::cmd`).

use std::ffi::OsString;
use std::io::IsTerminal;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use clap::{ArgAction, Args, CommandFactory, Parser, Subcommand};

use udt_cli::cmd::{bench, broker, demo, files, pipe, punch};
use udt_cli::net::AllowList;
use udt_cli::net::{self, NetOptions, Transport};
use udt_cli::proto::{exit, RecvOptions};
use udt_cli::secure::{self, PipeSecurityArgs, Role, TransferSecurityArgs};
use udt_cli::signals;
use udt_cli::ui::{parse_rate, parse_size, CliError, Output};

/// File transfer, pipes and benchmarks over UDT (UDP-based Data Transfer).
#[derive(Debug, Parser)]
#[command(
    name = "udt",
    version,
    propagate_version = true,
    after_help = "\
Examples:
  udt demo                                   # local 256 MiB transfer, to see it work
  udt recv --out ./incoming                  # on the receiving machine (UDP port 9000)
  udt send photos/ notes.txt receiver:9000   # on the sending machine
  udt listen 9000 > file                     # raw pipe, like netcat
  udt connect receiver:9000 < file
  udt bench --server                         # throughput test, like iperf3
  udt bench receiver:5201 -t 10

Exit codes:
  0  success                        5  the peer broke the protocol, is another
  1  other failure                     kind of udt program, or was refused
  2  bad arguments                  6  local file system error (disk full, ...)
  3  network: cannot listen,        7  a file exists (use --overwrite)
     cannot resolve, refused,     130  interrupted (Ctrl-C)
     timed out, peer vanished,
     the peer was interrupted
  4  data did not match its BLAKE3 hash"
)]
struct Cli {
    #[command(flatten)]
    global: GlobalArgs,
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Args)]
struct GlobalArgs {
    /// Print nothing but errors.
    #[arg(short, long, global = true)]
    quiet: bool,
    /// Print a JSON summary (stdout; stderr for listen/connect, whose stdout
    /// is data).
    #[arg(long, global = true)]
    json: bool,
    /// -v: one line per file sent or received; -vv, -vvv, -vvvv: log at
    /// info, debug, trace on stderr (RUST_LOG overrides).
    #[arg(short, long, action = ArgAction::Count, global = true)]
    verbose: u8,
}

#[derive(Debug, Clone, Args)]
struct NetArgs {
    /// Transport: udt, or tcp to compare.
    #[arg(long, value_enum, default_value_t = Transport::Udt, env = "UDT_TRANSPORT", help_heading = "Transport")]
    transport: Transport,
    /// UDT maximum segment size in bytes, IP/UDP headers included [default: 1500].
    #[arg(long, value_name = "BYTES", value_parser = clap::value_parser!(u32).range(76..=65535), help_heading = "Transport")]
    mss: Option<u32>,
    /// UDT send and receive buffers, in packets [default: 8192].
    #[arg(long, value_name = "PACKETS", value_parser = clap::value_parser!(u32).range(32..=1_000_000), help_heading = "Transport")]
    buffer: Option<u32>,
    /// UDT congestion control of what this side sends: bbr (model-based,
    /// backs off above ~2 % loss per round trip), bbr-bulk (for dedicated
    /// or lossy links: tolerates up to ~15 %) or udt (UDT4's native
    /// controller) [default: bbr].
    #[arg(long, value_name = "CC", value_parser = parse_cc, env = "UDT_CC", help_heading = "Transport")]
    cc: Option<udt_core::cc::CcAlgorithm>,
    /// UDP sockets on this side's port (SO_REUSEPORT), each with its own
    /// receive and send thread: a server of many connections uses that
    /// many cores; a connection stays on one socket [default: 1].
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u32).range(1..=udt_mux::MAX_SOCKETS as i64), env = "UDT_SOCKETS", help_heading = "Transport")]
    sockets: Option<u32>,
}

/// Parses `--cc`.
fn parse_cc(text: &str) -> Result<udt_core::cc::CcAlgorithm, String> {
    text.parse()
        .map_err(|e: udt_core::cc::ParseCcAlgorithmError| e.to_string())
}

/// Options of the commands that connect out and send.
#[derive(Debug, Clone, Args)]
struct OutArgs {
    /// Cap the sending rate, in bits per second: 100M, 1.5G, 800k,
    /// 100Mbit/s; bytes with a capital B: 12MB/s, 10MiB/s.
    #[arg(short = 'b', long, visible_alias = "bitrate", value_name = "RATE", value_parser = parse_rate, env = "UDT_LIMIT_RATE", help_heading = "Transport")]
    limit_rate: Option<u64>,
    #[command(flatten)]
    connect: ConnectArgs,
}

/// How long a connect waits.
#[derive(Debug, Clone, Args)]
struct ConnectArgs {
    /// Seconds to wait for the peer to answer a connect [default: 3].
    #[arg(long, value_name = "SECONDS", value_parser = parse_seconds, env = "UDT_CONNECT_TIMEOUT", help_heading = "Transport")]
    connect_timeout: Option<Duration>,
}

/// The transfer commands' limit on a peer that makes no progress.
#[derive(Debug, Clone, Args)]
struct IdleArgs {
    /// Give up when the transfer makes no progress for this many seconds.
    #[arg(long, value_name = "SECONDS", value_parser = parse_seconds, default_value = "30", env = "UDT_IDLE_TIMEOUT", help_heading = "Transport")]
    idle_timeout: Duration,
}

fn net_options(net: &NetArgs, out: Option<&OutArgs>) -> NetOptions {
    NetOptions {
        transport: net.transport,
        mss: net.mss,
        max_rate: out.and_then(|o| o.limit_rate),
        buffer_packets: net.buffer,
        cc: net.cc,
        connect_timeout: out.and_then(|o| o.connect.connect_timeout),
        linger: None,
        security: udt_mux::Security::Plain,
        sockets: net.sockets.map(|n| n as usize),
    }
}

/// The broker options of `send`/`recv` with the session named from
/// `--code`: its nameplate in secure mode (the whole code authenticates
/// the transfer through the PAKE), the whole code with `--insecure`.
///
/// # Errors
/// A usage error for a secure code without a nameplate, or `--broker`
/// with `--key` (a broker session is named by a code).
fn broker_session(
    mut broker: punch::BrokerOpts,
    security: &secure::TransferSecurityArgs,
) -> Result<punch::BrokerOpts, CliError> {
    if broker.broker.is_none() {
        return Ok(broker);
    }
    let Some(code) = &security.code else {
        return Err(CliError::usage("--broker needs --code"));
    };
    broker.session = Some(secure::broker_session(code, security.insecure)?);
    Ok(broker)
}

/// The `--allow` values as a list.
fn allow_list(specs: &[String]) -> Result<AllowList, CliError> {
    let mut list = AllowList::default();
    for a in specs {
        list.add(a).map_err(CliError::usage)?;
    }
    Ok(list)
}

/// Seconds, more than 0 and at most a day.
fn parse_seconds(s: &str) -> Result<Duration, String> {
    match s.trim().parse::<f64>() {
        Ok(v) if v > 0.0 && v <= 86_400.0 => Ok(Duration::from_secs_f64(v)),
        _ => Err(format!(
            "{s:?}: give seconds, more than 0 and at most 86400"
        )),
    }
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Send files and directories to a `udt recv`.
    #[command(after_help = "\
Each PATH arrives under its own name in the receiver's --out directory;
directories are sent recursively (symbolic links inside them are skipped).
Every file is verified with BLAKE3 on the receiver before it is renamed into
place. Interrupted? Run the same command again with --resume.

Examples:
  udt send report.pdf 192.0.2.7:9000
  udt send photos/ videos/ backup.example.org:9000
  udt send --listen 9000 photos/               # the receiver connects: udt recv HOST:9000
  udt send --limit-rate 100M big.iso host:9000     # at most 100 Mbit/s
  udt send --json dir/ host:9000 | jq .throughput_mbps
  udt send big.iso --broker broker.example.org:3478 --code blue-fox   # through NATs")]
    Send {
        /// Files or directories to send, then the receiver's HOST:PORT
        /// (no HOST:PORT with --listen).
        #[arg(required = true, value_name = "PATH... HOST:PORT", value_parser = clap::value_parser!(OsString))]
        args: Vec<OsString>,
        /// Wait for the receiver to connect here ([ADDR:]PORT) instead of
        /// connecting to it: `udt recv HOST:PORT` on the other side, which
        /// then needs no open port.
        #[arg(long, value_name = "[ADDR:]PORT")]
        listen: Option<String>,
        /// With --listen: only this address or network may connect (repeat
        /// for more). Whoever connects first gets the file list.
        #[arg(long, value_name = "ADDR[/PREFIX]", requires = "listen")]
        allow: Vec<String>,
        /// Leave out files and directories whose name matches (shell
        /// pattern with * and ?, matched against each name; repeat for
        /// more): --exclude '*.tmp' --exclude .git
        #[arg(
            long,
            value_name = "PATTERN",
            env = "UDT_EXCLUDE",
            value_delimiter = ','
        )]
        exclude: Vec<String>,
        /// Send only the files whose name matches (shell pattern, repeat
        /// for more; directories are still walked): --include '*.jpg'
        /// --include '*.png'. --exclude wins over --include.
        #[arg(
            long,
            value_name = "PATTERN",
            env = "UDT_INCLUDE",
            value_delimiter = ','
        )]
        include: Vec<String>,
        /// Continue an interrupted transfer: the receiver keeps the
        /// verified part of each file, even without its own --resume
        /// (it adds to an existing directory only where the cut-off run
        /// left a partial file).
        #[arg(long)]
        resume: bool,
        #[command(flatten)]
        security: TransferSecurityArgs,
        #[command(flatten)]
        net: NetArgs,
        #[command(flatten)]
        out: OutArgs,
        #[command(flatten)]
        idle: IdleArgs,
        #[command(flatten)]
        broker: punch::BrokerOpts,
    },
    /// Receive files from `udt send` (one transfer, then exit).
    #[command(after_help = "\
Files are written to a temporary .NAME.udt-partial, verified with BLAKE3,
fsynced, then renamed. Existing files are never replaced without
--overwrite. With --resume, partial and complete files already here are
reported to the sender, which checks their hash and sends only the rest.
Hostile senders are refused: absolute paths, `..`, names escaping --out,
special files, oversized lists.

Examples:
  udt recv                                   # UDP port 9000, into .
  udt recv --listen 0.0.0.0:7000 --out /srv/incoming --keep-listening
  udt recv --out backup --resume             # continue an interrupted transfer
  udt recv sender.example.org:9000           # fetch from a `udt send --listen`
  udt recv --broker broker.example.org:3478 --code blue-fox   # through NATs")]
    Recv {
        /// Connect to a `udt send --listen` at HOST:PORT instead of
        /// listening (this side then needs no open port).
        #[arg(value_name = "HOST:PORT", conflicts_with_all = ["keep_listening", "allow"])]
        connect: Option<String>,
        /// Where to listen: [ADDR:]PORT. A bare port listens on every
        /// interface, IPv6 and IPv4.
        #[arg(short, long, value_name = "[ADDR:]PORT", default_value = "9000")]
        listen: String,
        /// Directory to receive into (created if missing).
        #[arg(
            short,
            long,
            value_name = "DIR",
            default_value = ".",
            env = "UDT_RECV_OUT"
        )]
        out: PathBuf,
        /// Replace existing files, add to existing directories and give
        /// them the sender's mode and time.
        #[arg(long)]
        overwrite: bool,
        /// Continue partial files, keep identical complete ones, add to
        /// existing directories (their mode and time are kept).
        #[arg(long)]
        resume: bool,
        /// Accept top-level names starting with a dot (.ssh, .bashrc).
        #[arg(long)]
        allow_hidden: bool,
        /// Serve transfers one after another until killed.
        #[arg(long)]
        keep_listening: bool,
        /// Do not ask "Accept ...? [y/N]" (asked only when stdin and stderr
        /// are a terminal).
        #[arg(short = 'y', long)]
        yes: bool,
        /// Accept transfers only from this address or network (repeat for
        /// more): 192.0.2.7, 10.0.0.0/8, 2001:db8::/32.
        #[arg(
            long,
            value_name = "ADDR[/PREFIX]",
            env = "UDT_RECV_ALLOW",
            value_delimiter = ','
        )]
        allow: Vec<String>,
        /// Skip fsync (faster, not crash-safe).
        #[arg(long, hide = true)]
        no_fsync: bool,
        #[command(flatten)]
        security: TransferSecurityArgs,
        #[command(flatten)]
        net: NetArgs,
        #[command(flatten)]
        connect_timeout: ConnectArgs,
        #[command(flatten)]
        idle: IdleArgs,
        #[command(flatten)]
        broker: punch::BrokerOpts,
    },
    /// Accept one connection and copy it to stdout (like `nc -l`).
    #[command(after_help = "\
Speaks plain UDT4 (stream mode, or message mode with --msg): any UDT4
application can be the other end. Exits 0 when the peer closes.

Examples:
  udt listen 9000 > received.bin
  udt listen 127.0.0.1:9000 | tar x
  udt listen --msg 9000                      # print each message as it arrives")]
    Listen {
        /// [ADDR:]PORT to listen on.
        #[arg(value_name = "[ADDR:]PORT")]
        addr: String,
        /// UDT message mode instead of stream mode.
        #[arg(long)]
        msg: bool,
        #[command(flatten)]
        security: PipeSecurityArgs,
        #[command(flatten)]
        net: NetArgs,
    },
    /// Send stdin to a UDT peer until EOF (like `nc`).
    #[command(after_help = "\
Returns only when the peer has acknowledged every byte. With --msg each line
of stdin is one message.

Examples:
  udt connect host:9000 < file.bin
  tar c dir | udt connect host:9000
  echo hello | udt connect --msg host:9000")]
    Connect {
        /// The peer, HOST:PORT.
        #[arg(value_name = "HOST:PORT")]
        addr: String,
        /// UDT message mode: one line = one message.
        #[arg(long)]
        msg: bool,
        #[command(flatten)]
        security: PipeSecurityArgs,
        #[command(flatten)]
        net: NetArgs,
        #[command(flatten)]
        out: OutArgs,
    },
    /// Measure throughput, RTT, loss and CPU (like iperf3).
    #[command(after_help = "\
Start a server with `udt bench --server`, then run the client against it.
The client prints results on stdout: a line per interval (-i; per stream
and a SUM line with -P) and a summary with both ends' CPU
use; with --msg it measures round-trip latency of echoed messages
(p50/p99/p99.9/max).

Examples:
  udt bench -s                               # UDP port 5201
  udt bench host:5201                        # 10 s of stream mode
  udt bench host:5201 -t 5 -P 4              # iperf3's flags where they mean the same
  udt bench host:5201 -R                     # reverse: the server sends
  udt bench host:5201 --msg 1K --rate 10000  # latency at 10k messages/s
  udt bench host:5201 --transport tcp        # the same over TCP
  udt bench -s --code 7-amber-falcon-river   # secure mode (both sides give it)
  udt bench host:5201 --code 7-amber-falcon-river

Plain UDT4 by default, like listen/connect; --code or --key on both sides
measures the encrypted transport.")]
    Bench {
        /// Run the server, on [ADDR:]PORT (default 5201).
        #[arg(short = 's', long, value_name = "[ADDR:]PORT", num_args = 0..=1, default_missing_value = "5201", conflicts_with = "target")]
        server: Option<String>,
        /// The server to test, HOST:PORT.
        #[arg(value_name = "HOST:PORT", required_unless_present = "server")]
        target: Option<String>,
        /// Seconds to run.
        #[arg(
            short = 't',
            long = "time",
            visible_alias = "seconds",
            value_name = "SECONDS",
            default_value_t = 10.0
        )]
        seconds: f64,
        /// Seconds between interval lines.
        #[arg(short = 'i', long, value_name = "SECONDS", value_parser = parse_seconds, default_value = "1")]
        interval: Duration,
        /// Connections in parallel (at most 1024).
        #[arg(short = 'P', long, default_value_t = 1, value_parser = clap::value_parser!(u32).range(1..=i64::from(udt_cli::cmd::bench::MAX_PARALLEL)))]
        parallel: u32,
        /// Message mode with messages of SIZE bytes, echoed for latency.
        #[arg(long, value_name = "SIZE", value_parser = parse_size)]
        msg: Option<u64>,
        /// Messages per second per connection with --msg (0: as fast as possible).
        #[arg(long, default_value_t = 0)]
        rate: u64,
        /// Reverse (as iperf3 -R): the server sends, this side receives
        /// (stream mode; cap the rate with -b on the server).
        #[arg(short = 'R', long, conflicts_with_all = ["server", "msg"])]
        reverse: bool,
        /// Serve one test and exit (server).
        #[arg(long, hide = true)]
        once: bool,
        #[command(flatten)]
        security: PipeSecurityArgs,
        #[command(flatten)]
        net: NetArgs,
        #[command(flatten)]
        out: OutArgs,
    },
    /// A local end-to-end transfer: receiver, sender, verification, summary.
    #[command(after_help = "\
Starts a receiver on loopback in this process, writes a file of --size random
bytes to a temporary directory, sends it over UDT with a progress bar,
verifies it and prints the summary. Everything is deleted afterwards.

Examples:
  udt demo
  udt demo --size 1G
  udt demo --json")]
    Demo {
        /// Size of the generated file (K, M, G suffixes).
        #[arg(long, default_value = "256M", value_parser = parse_size)]
        size: u64,
        /// Directory for the scratch files [default: the system temp dir].
        #[arg(long, value_name = "DIR")]
        dir: Option<PathBuf>,
        /// Keep the scratch files and print where they are.
        #[arg(long)]
        keep: bool,
        #[command(flatten)]
        net: NetArgs,
        #[command(flatten)]
        out: OutArgs,
    },
    /// Print shell completions to stdout.
    #[command(after_help = "\
Examples:
  udt completions bash > /etc/bash_completion.d/udt
  udt completions zsh > \"${fpath[1]}/_udt\"
  udt completions fish > ~/.config/fish/completions/udt.fish")]
    Completions {
        /// The shell.
        #[arg(value_enum)]
        shell: clap_complete::Shell,
    },
    /// Print the manual page (roff) to stdout: `udt man > udt.1`.
    Man,
    /// Introduce `udt punch` peers (and answer STUN Binding) on one UDP port.
    Broker(broker::BrokerArgs),
    /// Meet a peer through a broker, punch through NATs, connect directly.
    #[command(after_help = "\
Examples:
  udt broker --listen 0.0.0.0:3478                            # on a public host
  udt punch --broker broker.example.org:3478 --code blue-fox --send big.iso
  udt punch --broker broker.example.org:3478 --code blue-fox --out big.iso")]
    Punch(punch::PunchArgs),
}

impl Command {
    /// The subcommand's name, as in the JSON output.
    fn name(&self) -> &'static str {
        match self {
            Command::Completions { .. } => "completions",
            Command::Man => "man",
            Command::Send { .. } => "send",
            Command::Recv { .. } => "recv",
            Command::Listen { .. } => "listen",
            Command::Connect { .. } => "connect",
            Command::Bench { .. } => "bench",
            Command::Demo { .. } => "demo",
            Command::Broker(_) => "broker",
            Command::Punch(_) => "punch",
        }
    }
}

fn main() -> ExitCode {
    let cli = match Cli::try_parse() {
        Ok(c) => c,
        Err(e) => {
            let code = if e.use_stderr() {
                exit::USAGE
            } else {
                exit::OK
            };
            let _ = e.print();
            return ExitCode::from(code);
        }
    };
    // -v lists files; -vv and more raise the log level.
    init_logging(cli.global.verbose.saturating_sub(1));
    ignore_file_size_signal();
    // The commands whose waits poll the Ctrl-C flag stop cleanly; the raw
    // pipes keep the default (Ctrl-C ends them at once, like netcat).
    if matches!(
        cli.command,
        Command::Send { .. } | Command::Recv { .. } | Command::Bench { .. } | Command::Demo { .. }
    ) {
        signals::install();
    }
    let output = Output {
        quiet: cli.global.quiet,
        json: cli.global.json,
        verbose: cli.global.verbose > 0,
    };
    let command_name = cli.command.name();
    // listen/connect carry data on stdout: their JSON goes to stderr.
    let json_on_stderr = matches!(command_name, "listen" | "connect");
    match run(cli.command, output) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            if output.json {
                let v = serde_json::json!({
                    "command": command_name,
                    "ok": false,
                    "error": e.message,
                    "exit_code": e.code,
                });
                if json_on_stderr {
                    eprintln!("{v}");
                } else {
                    println!("{v}");
                }
            }
            if e.code == exit::INTERRUPTED {
                eprintln!("udt: {}", e.message);
            } else {
                eprintln!("udt: error: {}", e.message);
            }
            ExitCode::from(e.code)
        }
    }
}

fn run(command: Command, output: Output) -> Result<(), CliError> {
    match command {
        Command::Broker(args) => broker::run(&args, output)?,
        Command::Punch(args) => {
            punch::run(&args, output)?;
        }
        Command::Completions { shell } => {
            let mut cli = Cli::command();
            clap_complete::generate(shell, &mut cli, "udt", &mut std::io::stdout());
        }
        Command::Man => {
            clap_mangen::Man::new(Cli::command())
                .render(&mut std::io::stdout())
                .map_err(|e| CliError::io("writing the manual page", e))?;
        }
        Command::Send {
            mut args,
            listen,
            allow,
            exclude,
            include,
            resume,
            security,
            net,
            out,
            idle,
            broker,
        } => {
            let broker = broker_session(broker, &security)?;
            let role = if listen.is_some() {
                Role::Listens
            } else {
                Role::Connects
            };
            let (security, code) = secure::transfer_security(&security, role, net.transport)?;
            let (target, listen) = match listen {
                Some(_) if broker.broker.is_some() => {
                    return Err(CliError::usage("give either --broker or --listen"));
                }
                Some(l) => (
                    None,
                    Some(net::listen_addr_dual(&l).map_err(|e| CliError::usage(e.to_string()))?),
                ),
                // Every argument is a path: the peer is met through the broker.
                None if broker.broker.is_some() => (None, None),
                None => {
                    if args.len() < 2 {
                        return Err(CliError::usage(
                            "give the paths to send and then the receiver's HOST:PORT (or --listen PORT)",
                        ));
                    }
                    let target = args.pop().unwrap_or_default();
                    let target = target
                        .into_string()
                        .map_err(|t| CliError::usage(format!("{t:?} is not a HOST:PORT")))?;
                    (Some(target), None)
                }
            };
            if let Some(code) = &code {
                secure::announce_code(code, "udt recv HOST:PORT");
            }
            let mut net = net_options(&net, Some(&out));
            net.security = security;
            files::send(&files::SendArgs {
                paths: args.into_iter().map(PathBuf::from).collect(),
                target,
                listen,
                allow: allow_list(&allow)?,
                excludes: exclude,
                includes: include,
                resume,
                net,
                idle: idle.idle_timeout,
                output,
                broker,
            })?;
        }
        Command::Recv {
            connect,
            listen,
            out,
            overwrite,
            resume,
            allow_hidden,
            keep_listening,
            yes,
            allow,
            no_fsync,
            security,
            net,
            connect_timeout,
            idle,
            broker,
        } => {
            if connect.is_some() && broker.broker.is_some() {
                return Err(CliError::usage("give either HOST:PORT or --broker"));
            }
            let role = if connect.is_some() {
                Role::Connects
            } else {
                Role::Listens
            };
            let mut broker = broker;
            let (secured, code) = secure::transfer_security(&security, role, net.transport)?;
            match (&broker.broker, &code) {
                // Waiting for a sender through a broker without a code: the
                // broker picks the nameplate, so two pairs never share one;
                // the code is printed once it has.
                (Some(b), Some(code)) => {
                    let hint = format!("udt send FILES... --broker {b}");
                    broker.allocate = Some(punch::Allocation::from_code(code, hint));
                }
                (None, Some(code)) => secure::announce_code(code, "udt send FILES... HOST:PORT"),
                (_, None) => broker = broker_session(broker, &security)?,
            }
            let mut options = RecvOptions::new(out);
            options.overwrite = overwrite;
            options.resume = resume;
            options.allow_hidden = allow_hidden;
            options.fsync = !no_fsync;
            let mut net = net_options(&net, None);
            net.connect_timeout = connect_timeout.connect_timeout;
            net.security = secured;
            files::recv(&files::RecvArgs {
                listen: net::listen_addr_dual(&listen)
                    .map_err(|e| CliError::usage(e.to_string()))?,
                connect,
                options,
                keep_listening,
                allow: allow_list(&allow)?,
                idle: idle.idle_timeout,
                ask: !yes
                    && output.is_human()
                    && std::io::stdin().is_terminal()
                    && std::io::stderr().is_terminal(),
                net,
                output,
                broker,
            })?;
        }
        Command::Listen {
            addr,
            msg,
            security,
            net,
        } => {
            let mut net = net_options(&net, None);
            net.security = secure::pipe_security(&security, net.transport)?;
            pipe::listen(&pipe::PipeArgs {
                addr,
                msg,
                net,
                output,
            })?;
        }
        Command::Connect {
            addr,
            msg,
            security,
            net,
            out,
        } => {
            let mut net = net_options(&net, Some(&out));
            net.security = secure::pipe_security(&security, net.transport)?;
            pipe::connect(&pipe::PipeArgs {
                addr,
                msg,
                net,
                output,
            })?;
        }
        Command::Bench {
            server,
            target,
            seconds,
            parallel,
            msg,
            rate,
            interval,
            reverse,
            once,
            security,
            net,
            out,
        } => {
            let mut net = net_options(&net, Some(&out));
            net.security = secure::pipe_security(&security, net.transport)?;
            if let Some(addr) = server {
                bench::server(&bench::ServerArgs {
                    addr: net::listen_addr_dual(&addr)
                        .map_err(|e| CliError::usage(e.to_string()))?,
                    once,
                    net,
                    output,
                })?;
            } else {
                let target = target
                    .ok_or_else(|| CliError::usage("give HOST:PORT of a `udt bench --server`"))?;
                if !(seconds.is_finite() && seconds > 0.0 && seconds <= 86_400.0) {
                    return Err(CliError::usage("--seconds must be between 0 and 86400"));
                }
                bench::client(&bench::ClientArgs {
                    target,
                    duration: Duration::from_secs_f64(seconds),
                    parallel,
                    msg_size: msg,
                    rate,
                    interval,
                    reverse,
                    net,
                    output,
                })?;
            }
        }
        Command::Demo {
            size,
            dir,
            keep,
            net,
            out,
        } => {
            let mut net = net_options(&net, Some(&out));
            if net.transport == net::Transport::Udt {
                // Like `udt send` / `udt recv`: encrypted, with a code
                // both in-process sides share.
                let code = secure::new_code().map_err(|e| CliError::io("making a code", e))?;
                net.security = udt_mux::Security::Code(code);
            }
            demo::run(&demo::DemoArgs {
                size,
                dir,
                keep,
                net,
                output,
            })?;
        }
    }
    Ok(())
}

fn init_logging(verbose: u8) {
    let default = match verbose {
        0 => "warn",
        1 => "info",
        2 => "debug",
        _ => "trace",
    };
    let _ = env_logger::Builder::from_env(env_logger::Env::default().default_filter_or(default))
        .format_timestamp_millis()
        .try_init();
}

/// A file-size limit (`ulimit -f`) must give a clear error, not kill us:
/// with SIGXFSZ ignored, the write fails with EFBIG instead.
fn ignore_file_size_signal() {
    #[cfg(unix)]
    // SAFETY: setting a signal's disposition to SIG_IGN has no
    // preconditions; no handler code runs.
    unsafe {
        libc::signal(libc::SIGXFSZ, libc::SIG_IGN);
    }
}
