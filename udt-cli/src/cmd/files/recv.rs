//! `udt recv`: checks `--out`, listens (or connects to a `udt send
//! --listen`), serves each connection on its own thread behind the gate
//! that keeps a silent client from blocking a sender, asks before
//! accepting on a terminal, and prints each transfer's summary.

use std::fs;
use std::io;
use std::net::SocketAddr;
use std::path::Path;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{mpsc, Arc};
use std::thread;
use std::time::{Duration, Instant};

use super::{
    refuse, TransferSummary, DEFAULT_IDLE, GREETING_TIMEOUT, LAST_WORDS, MAX_CONNECTIONS,
    RECEIVER_LINGER,
};
use crate::net::{AllowList, Conn, Listener, NetOptions};
use crate::proto::{self, exit, Observer, RecvOptions, RelPath, TransferError};
use crate::signals;
use crate::ui::{self, BarObserver, CliError, Output};
use crate::watch::Watched;

/// `udt recv` arguments.
#[derive(Clone, Debug)]
pub struct RecvArgs {
    /// Where to listen.
    pub listen: SocketAddr,
    /// Connect to a `udt send --listen` at this `HOST:PORT` instead.
    pub connect: Option<String>,
    /// Output directory and policies.
    pub options: RecvOptions,
    /// Serve transfers until killed instead of exiting after one.
    pub keep_listening: bool,
    /// Who may send (empty: anyone).
    pub allow: AllowList,
    /// How long a transfer may make no progress.
    pub idle: Duration,
    /// Ask "Accept …? [y/N]" on the terminal before each transfer (when
    /// stdin and stderr are terminals and `--yes` was not given).
    pub ask: bool,
    /// Transport options.
    pub net: NetOptions,
    /// Output mode.
    pub output: Output,
    /// `--broker`/`--code`: meet the sender through a broker instead.
    pub broker: crate::cmd::punch::BrokerOpts,
}

/// One question on the terminal at a time (connections run in parallel).
static PROMPT: std::sync::Mutex<()> = std::sync::Mutex::new(());

/// Asks whether to accept a transfer; anything but y/yes is no.
fn ask_accept(files: u64, dirs: u64, bytes: u64, peer: Option<SocketAddr>) -> bool {
    let _turn = PROMPT.lock().unwrap_or_else(|e| e.into_inner());
    let who = peer
        .map(|p| p.ip().to_string())
        .unwrap_or_else(|| "?".into());
    eprint!(
        "Accept {files} file{}{}, {} from {who}? [y/N] ",
        if files == 1 { "" } else { "s" },
        match dirs {
            0 => String::new(),
            1 => " in 1 directory".into(),
            n => format!(" in {n} directories"),
        },
        ui::bytes(bytes)
    );
    let mut answer = String::new();
    // Ctrl-C makes the read fail (EINTR): that is a no.
    if io::stdin().read_line(&mut answer).is_err() {
        eprintln!();
        return false;
    }
    matches!(answer.trim().to_ascii_lowercase().as_str(), "y" | "yes")
}

/// Checks `--out` before listening: a directory we can write into,
/// created if missing.
///
/// # Errors
/// Exit 2 when it is not a directory, 6 when it cannot be created or
/// written.
pub fn check_out_dir(out: &Path) -> Result<(), CliError> {
    match fs::metadata(out) {
        Ok(m) if !m.is_dir() => {
            return Err(CliError::usage(format!(
                "--out {} is not a directory",
                out.display()
            )))
        }
        Ok(_) => {}
        Err(e) if e.kind() == io::ErrorKind::NotFound => {
            fs::create_dir_all(out).map_err(|e| {
                CliError::new(
                    exit::LOCAL_IO,
                    format!("cannot create --out {}: {e}", out.display()),
                )
            })?;
        }
        Err(e) => {
            return Err(CliError::new(
                exit::LOCAL_IO,
                format!("cannot use --out {}: {e}", out.display()),
            ))
        }
    }
    // Writable? Try what a transfer does first: create a private file.
    let probe = out.join(format!(
        ".udt-write-check-{}{}",
        std::process::id(),
        proto::names::PARTIAL_SUFFIX
    ));
    let mut o = fs::OpenOptions::new();
    o.write(true).create_new(true);
    match o.open(&probe) {
        Ok(_) => {
            let _ = fs::remove_file(&probe);
            Ok(())
        }
        Err(e) => Err(CliError::new(
            exit::LOCAL_IO,
            format!("cannot write into --out {}: {e}", out.display()),
        )),
    }
}

/// Shared by the connection threads of one receiver.
#[derive(Debug)]
struct Gate {
    /// One transfer, then exit.
    one_shot: bool,
    /// A one-shot receiver's transfer has begun.
    claimed: AtomicBool,
    /// Connections being served.
    connections: AtomicUsize,
}

/// Runs `udt recv`.
///
/// # Errors
/// The failure of the transfer (one-shot), or of listening; 130 after
/// Ctrl-C.
pub fn recv(args: &RecvArgs) -> Result<(), CliError> {
    check_out_dir(&args.options.out)?;
    let mut bounded = args.clone();
    bounded.net.linger = Some(RECEIVER_LINGER);
    let args = &bounded;
    let gate = Gate {
        one_shot: true,
        claimed: AtomicBool::new(false),
        connections: AtomicUsize::new(0),
    };
    if args.broker.broker.is_some() {
        let conn = crate::cmd::punch::connect(&args.broker, &args.net, args.output)?;
        let mut claimed = false;
        return serve(conn, args, &gate, &mut claimed).map(|_| ());
    }
    if let Some(target) = &args.connect {
        let conn = Conn::connect(target, &args.net)
            .map_err(|e| CliError::io(&format!("cannot connect to {target}"), e))?;
        let mut claimed = false;
        return serve(conn, args, &gate, &mut claimed).map(|_| ());
    }
    let listener =
        Listener::bind(args.listen, &args.net).map_err(|e| CliError::io("cannot listen", e))?;
    let addr = listener.local_addr();
    args.output.status(format_args!(
        "udt: listening on {addr} ({}), receiving into {}; send with: udt send PATH... HOST:{}",
        args.net.transport,
        args.options.out.display(),
        addr.port()
    ));
    args.output.status(who_may_send(args));
    let gate = Arc::new(Gate {
        one_shot: !args.keep_listening,
        claimed: AtomicBool::new(false),
        connections: AtomicUsize::new(0),
    });
    let (done_tx, done_rx) = mpsc::channel::<Result<(), CliError>>();
    let mut wrong_codes = 0;
    loop {
        if let Ok(result) = done_rx.try_recv() {
            return result;
        }
        // A sender with a wrong code whose connection ended before we
        // accepted it (its refusal is quicker than our accept loop).
        let refused = listener.wrong_codes();
        if refused > wrong_codes {
            wrong_codes = refused;
            if let Some(e) = on_wrong_code(&gate) {
                return Err(e);
            }
        }
        if signals::interrupted() {
            return wind_down(&gate, &done_rx);
        }
        let conn = match listener.accept_timeout(Duration::from_millis(200)) {
            Ok(Some(c)) => c,
            Ok(None) => continue,
            Err(e) => return Err(CliError::io("accept failed", e)),
        };
        let peer = conn.peer_addr();
        if let Some(p) = peer.filter(|p| !args.allow.permits(p.ip())) {
            log::warn!("refused a connection from {p}: not in --allow");
            args.output.status(format_args!(
                "udt: refused a connection from {p} (not in --allow)"
            ));
            refuse(
                conn,
                &format!("this receiver does not accept transfers from {}", p.ip()),
            );
            continue;
        }
        if gate.connections.load(Ordering::SeqCst) >= MAX_CONNECTIONS {
            refuse(conn, "busy: too many connections; try again later");
            continue;
        }
        gate.connections.fetch_add(1, Ordering::SeqCst);
        let (conn_gate, done, args) = (gate.clone(), done_tx.clone(), args.clone());
        let spawned = thread::Builder::new()
            .name("udt-recv-conn".into())
            .spawn(move || {
                let gate = conn_gate;
                let mut claimed = false;
                let result = serve(conn, &args, &gate, &mut claimed);
                gate.connections.fetch_sub(1, Ordering::SeqCst);
                match result {
                    Ok(_) if gate.one_shot => {
                        let _ = done.send(Ok(()));
                    }
                    Err(e) if e.message.starts_with(proto::WRONG_CODE) => {
                        if let Some(e) = on_wrong_code(&gate) {
                            let _ = done.send(Err(e));
                        }
                    }
                    Err(e) if gate.one_shot && (claimed || e.code == exit::INTERRUPTED) => {
                        let _ = done.send(Err(e));
                    }
                    Ok(_) => {}
                    Err(e) if claimed => eprintln!("udt: error: {e}"),
                    Err(e) => {
                        let who = peer.map(|p| p.to_string()).unwrap_or_default();
                        args.output.status(format_args!(
                            "udt: note: dropped a connection from {who}: {e}"
                        ));
                    }
                }
            });
        if let Err(e) = spawned {
            log::warn!("cannot start a thread for a connection: {e}");
            gate.connections.fetch_sub(1, Ordering::SeqCst);
        }
    }
}

/// What `udt recv` says about who may send, true for its mode.
fn who_may_send(args: &RecvArgs) -> String {
    let allow = if args.allow.is_empty() {
        ""
    } else {
        " (and only from the --allow addresses)"
    };
    match &args.net.security {
        udt_mux::Security::Plain if args.allow.is_empty() => {
            "udt: note: anyone who can reach this port may send; restrict with --allow ADDR".into()
        }
        udt_mux::Security::Plain => {
            "udt: note: only the --allow addresses may send (an address check, not authentication)"
                .into()
        }
        udt_mux::Security::Code(_) if args.keep_listening => format!(
            "udt: only a sender with the code may send{allow}; each wrong code is reported and \
             refused"
        ),
        udt_mux::Security::Code(_) => format!(
            "udt: only a sender with the code may send{allow}; a wrong code ends this receiver \
             (one try per code)"
        ),
        _ => format!("udt: only a sender with the key may send{allow}"),
    }
}

/// A sender presented a wrong code (or key). A one-shot receiver ends
/// with that error: a code is a one-guess secret, so ending caps an
/// attacker at one guess per printed code (as magic-wormhole does), and a
/// legitimate sender who mistyped is told on both sides. With
/// `--keep-listening` (a service, which a stranger's guess must not be
/// able to stop) it is reported and the receiver goes on.
fn on_wrong_code(gate: &Gate) -> Option<CliError> {
    if gate.one_shot && !gate.claimed.load(Ordering::SeqCst) {
        return Some(CliError::from(TransferError::WrongCode(
            "wrong code: a sender presented a wrong code (or key), so nothing was received; \
             a code is good for one try: start again (a new code) and check it on both sides"
                .into(),
        )));
    }
    eprintln!(
        "udt: WARNING: a sender presented a wrong code (or key) and was refused; still listening"
    );
    None
}

/// After Ctrl-C: gives the connection threads a moment to tell their
/// peers and print their errors, then reports the transfer's end.
fn wind_down(gate: &Gate, done: &mpsc::Receiver<Result<(), CliError>>) -> Result<(), CliError> {
    let deadline = Instant::now() + Duration::from_secs(3);
    let mut outcome = None;
    while Instant::now() < deadline && gate.connections.load(Ordering::SeqCst) > 0 {
        if let Ok(r) = done.recv_timeout(Duration::from_millis(50)) {
            outcome.get_or_insert(r);
        }
    }
    if let Ok(r) = done.try_recv() {
        outcome.get_or_insert(r);
    }
    match outcome {
        Some(Err(e)) => Err(e),
        _ => Err(CliError::interrupted(
            "interrupted while waiting for a sender",
        )),
    }
}

/// The receiver's observer: the progress bar, plus the greeting hook that
/// claims a one-shot receiver and lifts the greeting timeout.
struct Serving<'a> {
    bar: BarObserver,
    gate: &'a Gate,
    claimed: &'a mut bool,
    conn: &'a Watched,
    idle: Duration,
    peer: Option<SocketAddr>,
    output: Output,
    ask: bool,
}

impl Observer for Serving<'_> {
    fn on_list(&mut self, files: u64, dirs: u64, bytes: u64) -> Result<(), TransferError> {
        if self.ask && !ask_accept(files, dirs, bytes, self.peer) {
            return Err(TransferError::Refused(
                "the receiver declined the transfer".into(),
            ));
        }
        Ok(())
    }
    fn on_hello(&mut self) -> Result<(), TransferError> {
        if self.gate.one_shot && self.gate.claimed.swap(true, Ordering::SeqCst) {
            return Err(TransferError::Busy(
                "busy: this receiver is taking another transfer; try again later".into(),
            ));
        }
        *self.claimed = true;
        self.conn.set_idle(Some(self.idle));
        if let Some(p) = self.peer {
            self.output.status(format_args!("udt: transfer from {p}"));
        }
        Ok(())
    }
    fn on_plan(&mut self, files: u64, bytes: u64, already: u64) {
        self.bar.on_plan(files, bytes, already);
    }
    fn on_file(&mut self, name: &RelPath, size: u64, offset: u64) {
        self.bar.on_file(name, size, offset);
    }
    fn on_bytes(&mut self, n: u64) {
        self.bar.on_bytes(n);
    }
    fn on_note(&mut self, message: &str) {
        self.bar.on_note(message);
    }
    fn on_file_done(&mut self, name: &RelPath) {
        self.bar.on_file_done(name);
    }
    fn should_stop(&mut self) -> bool {
        self.bar.should_stop()
    }
}

/// Serves one connection of `udt recv`.
fn serve(
    conn: Conn,
    args: &RecvArgs,
    gate: &Gate,
    claimed: &mut bool,
) -> Result<TransferSummary, CliError> {
    let watched = Watched::new(conn, Some(GREETING_TIMEOUT.min(args.idle)));
    let control = watched
        .try_clone()
        .map_err(|e| CliError::io("cannot use the connection", e))?;
    let peer = watched.peer_addr();
    let mut observer = Serving {
        bar: BarObserver::new(args.output).receiving(),
        gate,
        claimed,
        conn: &control,
        idle: args.idle,
        peer,
        output: args.output,
        ask: args.ask,
    };
    receive_on(
        watched,
        &args.options,
        &args.net,
        args.output,
        &mut observer,
    )
}

/// Receives one transfer on an accepted connection and prints its summary
/// (the demo's receiver; `udt recv` adds its gate around it).
///
/// # Errors
/// The transfer's failure with its exit code.
pub fn serve_one(
    conn: Conn,
    options: &RecvOptions,
    net: &NetOptions,
    output: Output,
) -> Result<TransferSummary, CliError> {
    let mut observer = BarObserver::new(output).receiving();
    receive_on(
        Watched::new(conn, Some(DEFAULT_IDLE)),
        options,
        net,
        output,
        &mut observer,
    )
}

fn receive_on(
    conn: Watched,
    options: &RecvOptions,
    net: &NetOptions,
    output: Output,
    observer: &mut dyn ObserverWithBar,
) -> Result<TransferSummary, CliError> {
    let start = Instant::now();
    let peer = conn.peer_addr();
    let reader = conn
        .try_clone()
        .map_err(|e| CliError::io("cannot use the connection", e))?;
    let mut writer = conn;
    let result = proto::receive(reader, &mut writer, options, observer.as_observer());
    observer.bar().finish();
    let link = writer.stats();
    let conn = writer.into_inner();
    let report = match result {
        Ok(r) => {
            // Deliver our last frame (the result).
            if let Err(e) = conn.finish() {
                log::debug!("closing the connection: {e}");
            }
            r
        }
        Err(e) => {
            let _ = conn.wait_acknowledged(LAST_WORDS);
            drop(conn);
            return Err(recv_error(e));
        }
    };
    let elapsed = start.elapsed();
    let bar = observer.bar();
    let summary = TransferSummary {
        command: "recv",
        ok: true,
        peer: peer.map(|p| p.to_string()),
        transport: net.transport,
        files: report.files,
        dirs: report.dirs,
        total_bytes: report.total_bytes,
        bytes_transferred: report.bytes_written,
        bytes_resumed: report.bytes_resumed,
        seconds: ui::round3(elapsed.as_secs_f64()),
        throughput_mbps: ui::round3(ui::mbps(report.bytes_written, elapsed)),
        link,
        restarted_files: 0,
        skipped: Vec::new(),
        notes: bar.notes.clone(),
    };
    summary.print(&output);
    Ok(summary)
}

/// The receiver's error with what to do about it.
fn recv_error(e: TransferError) -> CliError {
    let resumable = super::is_resumable(&e);
    let mut err = match e {
        TransferError::Interrupted => CliError::interrupted("interrupted; the sender was told"),
        e => CliError::from(e),
    };
    if resumable {
        err.message
            .push_str("; partial files are kept: run again with --resume to continue (or the sender with --resume)");
    }
    err
}

/// An observer that has a progress bar inside (the plain bar, or the
/// receiver's wrapper around it).
trait ObserverWithBar {
    fn as_observer(&mut self) -> &mut dyn Observer;
    fn bar(&self) -> &BarObserver;
}

impl ObserverWithBar for BarObserver {
    fn as_observer(&mut self) -> &mut dyn Observer {
        self
    }
    fn bar(&self) -> &BarObserver {
        self
    }
}

impl ObserverWithBar for Serving<'_> {
    fn as_observer(&mut self) -> &mut dyn Observer {
        self
    }
    fn bar(&self) -> &BarObserver {
        &self.bar
    }
}
