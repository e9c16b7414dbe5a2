//! The `udt` program: argument parsing, logging set-up and exit codes.
//! The commands live in the library (`udt_cli::cmd`).

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use clap::{ArgAction, Args, Parser, Subcommand};

use udt_cli::cmd::{bench, demo, files, pipe};
use udt_cli::net::{self, NetOptions, Transport};
use udt_cli::proto::{exit, RecvOptions};
use udt_cli::ui::{parse_size, CliError, Output};

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
  udt bench receiver:5201 --seconds 10

Exit codes:
  0  success                        4  data did not match its BLAKE3 hash
  1  other failure                  5  the peer broke the protocol or was refused
  2  bad arguments                  6  local file system error (disk full, ...)
  3  network: refused, timed out,   7  a file exists (use --overwrite)
     peer vanished"
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
    /// More log output on stderr (-v info, -vv debug, -vvv trace); RUST_LOG
    /// overrides.
    #[arg(short, long, action = ArgAction::Count, global = true)]
    verbose: u8,
}

#[derive(Debug, Clone, Args)]
struct NetArgs {
    /// Transport: udt, or tcp to compare.
    #[arg(long, value_enum, default_value_t = Transport::Udt, help_heading = "Transport")]
    transport: Transport,
    /// Cap the sending rate in bytes per second (K, M, G suffixes: 50M).
    #[arg(long, value_name = "RATE", value_parser = parse_size, help_heading = "Transport")]
    limit_rate: Option<u64>,
    /// UDT maximum segment size in bytes, IP/UDP headers included [default: 1500].
    #[arg(long, value_name = "BYTES", value_parser = clap::value_parser!(u32).range(76..=65535), help_heading = "Transport")]
    mss: Option<u32>,
    /// UDT send and receive buffers, in packets [default: 8192].
    #[arg(long, value_name = "PACKETS", help_heading = "Transport")]
    buffer: Option<u32>,
    /// Seconds to wait for the peer to answer a connect [default: 3].
    #[arg(long, value_name = "SECONDS", help_heading = "Transport")]
    connect_timeout: Option<f64>,
    /// UDT congestion control of what this side sends: bbr (model-based,
    /// backs off above ~2 % loss per round trip), bbr-bulk (for dedicated
    /// or lossy links: tolerates up to ~15 %) or udt (UDT4's native
    /// controller) [default: bbr].
    #[arg(long, value_name = "CC", value_parser = parse_cc, help_heading = "Transport")]
    cc: Option<udt_core::cc::CcAlgorithm>,
}

/// Parses `--cc`.
fn parse_cc(text: &str) -> Result<udt_core::cc::CcAlgorithm, String> {
    text.parse()
        .map_err(|e: udt_core::cc::ParseCcAlgorithmError| e.to_string())
}

impl NetArgs {
    fn options(&self) -> NetOptions {
        NetOptions {
            transport: self.transport,
            mss: self.mss,
            max_rate: self.limit_rate,
            buffer_packets: self.buffer,
            cc: self.cc,
            connect_timeout: self
                .connect_timeout
                .filter(|s| s.is_finite() && *s > 0.0)
                .map(Duration::from_secs_f64),
        }
    }
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Send files and directories to a `udt recv`.
    #[command(after_help = "\
Each PATH arrives under its own name in the receiver's --out directory;
directories are sent recursively (symbolic links inside them are skipped).
Every file is verified with BLAKE3 on the receiver before it is renamed into
place. Interrupted? Run the same command again against `udt recv --resume`.

Examples:
  udt send report.pdf 192.0.2.7:9000
  udt send photos/ videos/ backup.example.org:9000
  udt send --limit-rate 20M big.iso host:9000      # at most 20 MiB/s
  udt send --json dir/ host:9000 | jq .throughput_mbps")]
    Send {
        /// Files or directories to send.
        #[arg(required = true, value_name = "PATH")]
        paths: Vec<PathBuf>,
        /// The receiver, HOST:PORT.
        #[arg(value_name = "HOST:PORT")]
        target: String,
        #[command(flatten)]
        net: NetArgs,
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
  udt recv --out backup --resume             # continue an interrupted transfer")]
    Recv {
        /// Where to listen: [ADDR:]PORT.
        #[arg(short, long, value_name = "ADDR:PORT", default_value = "0.0.0.0:9000")]
        listen: String,
        /// Directory to receive into (created if missing).
        #[arg(short, long, value_name = "DIR", default_value = ".")]
        out: PathBuf,
        /// Replace existing files.
        #[arg(long)]
        overwrite: bool,
        /// Continue partial files and keep identical complete ones.
        #[arg(long)]
        resume: bool,
        /// Serve transfers one after another until killed.
        #[arg(long)]
        keep_listening: bool,
        /// Skip fsync (faster, not crash-safe).
        #[arg(long, hide = true)]
        no_fsync: bool,
        #[command(flatten)]
        net: NetArgs,
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
        net: NetArgs,
    },
    /// Measure throughput, RTT, loss and CPU (like iperf3).
    #[command(after_help = "\
Start a server with `udt bench --server`, then run the client against it.
The client prints one line per second and a summary with both ends' CPU
use; with --msg it measures round-trip latency of echoed messages
(p50/p99/p99.9/max).

Examples:
  udt bench --server                         # UDP port 5201
  udt bench host:5201                        # 10 s of stream mode
  udt bench host:5201 --seconds 5 --parallel 4
  udt bench host:5201 --msg 1K --rate 10000  # latency at 10k messages/s
  udt bench host:5201 --transport tcp        # the same over TCP")]
    Bench {
        /// Run the server, on [ADDR:]PORT (default 5201).
        #[arg(long, value_name = "[ADDR:]PORT", num_args = 0..=1, default_missing_value = "5201", conflicts_with = "target")]
        server: Option<String>,
        /// The server to test, HOST:PORT.
        #[arg(value_name = "HOST:PORT", required_unless_present = "server")]
        target: Option<String>,
        /// Seconds to run.
        #[arg(short, long, default_value_t = 10.0)]
        seconds: f64,
        /// Connections in parallel.
        #[arg(short = 'P', long, default_value_t = 1, value_parser = clap::value_parser!(u32).range(1..=128))]
        parallel: u32,
        /// Message mode with messages of SIZE bytes, echoed for latency.
        #[arg(long, value_name = "SIZE", value_parser = parse_size)]
        msg: Option<u64>,
        /// Messages per second per connection with --msg (0: as fast as possible).
        #[arg(long, default_value_t = 0)]
        rate: u64,
        /// Serve one test and exit (server).
        #[arg(long, hide = true)]
        once: bool,
        #[command(flatten)]
        net: NetArgs,
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
    },
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
    init_logging(cli.global.verbose);
    ignore_file_size_signal();
    let output = Output {
        quiet: cli.global.quiet,
        json: cli.global.json,
    };
    match run(cli.command, output) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            if output.json {
                let v = serde_json::json!({ "ok": false, "error": e.message, "exit_code": e.code });
                println!("{v}");
            }
            eprintln!("udt: error: {}", e.message);
            ExitCode::from(e.code)
        }
    }
}

fn run(command: Command, output: Output) -> Result<(), CliError> {
    match command {
        Command::Send { paths, target, net } => {
            files::send(&files::SendArgs {
                paths,
                target,
                net: net.options(),
                output,
            })?;
        }
        Command::Recv {
            listen,
            out,
            overwrite,
            resume,
            keep_listening,
            no_fsync,
            net,
        } => {
            let mut options = RecvOptions::new(out);
            options.overwrite = overwrite;
            options.resume = resume;
            options.fsync = !no_fsync;
            files::recv(&files::RecvArgs {
                listen: net::listen_addr(&listen).map_err(|e| CliError::usage(e.to_string()))?,
                options,
                keep_listening,
                net: net.options(),
                output,
            })?;
        }
        Command::Listen { addr, msg, net } => {
            pipe::listen(&pipe::PipeArgs {
                addr,
                msg,
                net: net.options(),
                output,
            })?;
        }
        Command::Connect { addr, msg, net } => {
            pipe::connect(&pipe::PipeArgs {
                addr,
                msg,
                net: net.options(),
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
            once,
            net,
        } => {
            if let Some(addr) = server {
                bench::server(&bench::ServerArgs {
                    addr: net::listen_addr(&addr).map_err(|e| CliError::usage(e.to_string()))?,
                    once,
                    net: net.options(),
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
                    net: net.options(),
                    output,
                })?;
            }
        }
        Command::Demo {
            size,
            dir,
            keep,
            net,
        } => {
            demo::run(&demo::DemoArgs {
                size,
                dir,
                keep,
                net: net.options(),
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
