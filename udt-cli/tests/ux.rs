//! Issue 14: the `udt` program as a person uses it. Real processes on
//! loopback; the progress bar and Ctrl-C in a real terminal (tmux: start
//! the command, read the screen, press keys). Every wait is bounded; only
//! processes started here are signalled or killed, by their own PID (and
//! the tmux server on its own socket).

mod common;

use std::fs;
use std::io::Write;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::*;

const T: Duration = Duration::from_secs(60);

/// Sends SIGINT (what Ctrl-C sends) to a process we started.
fn interrupt(p: &Proc) {
    // SAFETY: kill() with a PID of our own child and a valid signal.
    let rc = unsafe { libc::kill(p.child.id() as libc::pid_t, libc::SIGINT) };
    assert_eq!(rc, 0);
}

/// Waits until `f` holds, failing after `limit`.
fn wait_for(limit: Duration, what: &str, mut f: impl FnMut() -> bool) {
    let deadline = Instant::now() + limit;
    while !f() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(10));
    }
}

/// Exit codes and the instant, readable failures of the table in
/// `udt --help`.
#[test]
fn exit_codes_match_the_table() {
    let run = |args: &[&str]| {
        let out = udt().args(args).output().unwrap();
        (
            out.status.code().unwrap(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    };
    // 2: arguments.
    assert_eq!(run(&["send", "x", "127.0.0.1:0"]).0, 2);
    let (code, err) = run(&["send", "--connect-timeout", "0", "x", "127.0.0.1:9"]);
    assert_eq!(code, 2, "{err}");
    let (code, err) = run(&["send", "--connect-timeout", "1e30", "x", "127.0.0.1:9"]);
    assert_eq!(code, 2, "{err}");
    assert!(!err.contains("panicked"), "{err}");
    let (code, err) = run(&["send", "--limit-rate", "fast", "x", "127.0.0.1:9"]);
    assert_eq!(code, 2, "{err}");
    // --limit-rate is not an option of recv or listen (it would do nothing).
    assert_eq!(run(&["recv", "--limit-rate", "10M"]).0, 2);
    assert_eq!(run(&["listen", "--limit-rate", "10M", "0"]).0, 2);
    // 3: the port is taken (a network resource, not a bad argument).
    let taken = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
    let port = taken.local_addr().unwrap().to_string();
    let (code, err) = run(&["listen", &port]);
    assert_eq!(code, 3, "{err}");
    assert!(err.contains("in use"), "{err}");
}

/// `--out` that is a file is refused before listening: no sender wastes
/// its time.
#[test]
fn out_pointing_at_a_file_is_refused_before_listening() {
    let base = scratch("out-file");
    let file = base.join("not-a-dir");
    fs::write(&file, b"x").unwrap();
    let out = udt()
        .args(["recv", "--listen", "127.0.0.1:0", "--out"])
        .arg(&file)
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{err}");
    assert!(err.contains("not a directory"), "{err}");
    assert!(!err.contains("listening on"), "{err}");
    let _ = fs::remove_dir_all(&base);
}

/// A FIFO as the only path: nothing to send, so no connection is tried.
#[test]
fn nothing_to_send_fails_before_connecting() {
    let base = scratch("fifo");
    let fifo = base.join("fifo");
    let c = std::ffi::CString::new(fifo.to_str().unwrap()).unwrap();
    // SAFETY: a valid NUL-terminated path.
    assert_eq!(unsafe { libc::mkfifo(c.as_ptr(), 0o600) }, 0);
    // Nobody listens there: a connect attempt would be exit 3 after 1 s.
    let silent = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
    let started = Instant::now();
    let out = udt()
        .args(["send", "--connect-timeout", "5"])
        .arg(&fifo)
        .arg(silent.local_addr().unwrap().to_string())
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{err}");
    assert!(err.contains("nothing to send"), "{err}");
    assert!(started.elapsed() < Duration::from_secs(4));
    let _ = fs::remove_dir_all(&base);
}

/// Bench with no server fails within the connect timeout and prints no
/// interval lines; over TCP "refused" is known at once.
#[test]
fn bench_with_no_server_fails_fast() {
    let silent = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
    let started = Instant::now();
    let out = udt()
        .args(["bench", "--connect-timeout", "1"])
        .arg(silent.local_addr().unwrap().to_string())
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(3), "{err}");
    assert!(
        started.elapsed() < Duration::from_secs(4),
        "{:?}",
        started.elapsed()
    );
    assert!(
        out.stdout.is_empty(),
        "{}",
        String::from_utf8_lossy(&out.stdout)
    );
    assert!(!err.contains("rendezvous"), "{err}");

    let closed = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = closed.local_addr().unwrap().to_string();
    drop(closed);
    let started = Instant::now();
    let out = udt()
        .args(["bench", "--transport", "tcp"])
        .arg(&addr)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(3));
    assert!(started.elapsed() < Duration::from_secs(2));
    assert!(out.stdout.is_empty());
}

/// `send` to a bench server and `bench` to a receiver say what the other
/// side is; the bench server's log shows plain addresses.
#[test]
fn the_wrong_kind_of_server_is_named() {
    let base = scratch("wrong-server");
    let f = base.join("f");
    fs::write(&f, b"x").unwrap();
    let mut server = udt();
    server
        .args(["bench", "--server", "127.0.0.1:0"])
        .stdout(Stdio::null());
    let mut server = Proc::spawn("bench-server", server);
    let addr = server.listening_addr(Duration::from_secs(20));
    // A bench server speaks plain UDT4: only an --insecure sender gets
    // far enough to learn what it is (a secure one refuses at the
    // handshake: the peer does not speak secure mode).
    let mut send = start_send("send", &[&f], addr, &["--insecure"]);
    assert_eq!(send.code(T), 5, "{}", send.stderr());
    assert!(send.stderr().contains("bench server"), "{}", send.stderr());
    let j = json_of(&mut send);
    assert_eq!(j["command"], "send");
    assert_eq!(j["ok"], false);
    wait_for(T, "the server's line", || {
        server.stderr().contains("bench connection from")
    });
    server.kill();
    assert!(!server.stderr().contains("Some("), "{}", server.stderr());

    let out = base.join("out");
    // `udt bench` speaks plain UDT4: the receiver must run --insecure for
    // it to get far enough to learn what it reached.
    let (mut recv, addr) = start_recv("recv", &out, &["--keep-listening", "--insecure"]);
    let bench = udt()
        .args(["bench", "-t", "1"])
        .arg(addr.to_string())
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&bench.stderr);
    assert_eq!(bench.status.code(), Some(5), "{err}");
    assert!(err.contains("udt recv"), "{err}");
    recv.kill();
    let _ = fs::remove_dir_all(&base);
}

/// SIGINT to the sender mid-transfer: the receiver reports it within a
/// second, keeps the partial file and prints the resume hint; so does the
/// sender, which exits 130.
#[test]
fn sigint_to_the_sender_is_reported_by_the_receiver_at_once() {
    let base = scratch("sigint-send");
    let src = base.join("big.bin");
    write_random(&src, 16 << 20, 11);
    let out = base.join("out");
    let (mut recv, addr) = start_recv("recv", &out, &[]);
    let mut send = start_send("send", &[&src], addr, &["--limit-rate", "32M"]);
    let partial = out.join(".big.bin.udt-partial");
    wait_for(T, "a partial file", || {
        fs::metadata(&partial).map(|m| m.len()).unwrap_or(0) > 1 << 20
    });
    interrupt(&send);
    let at = Instant::now();
    assert_eq!(recv.code(T), 3, "{}", recv.stderr());
    let took = at.elapsed();
    assert!(took < Duration::from_secs(1), "the receiver took {took:?}");
    assert_eq!(send.code(T), 130, "{}", send.stderr());
    let r = recv.stderr();
    // The sender's Error frame, or (when it is queued behind data) the
    // shutdown that follows it at once, which the transport reports as a
    // stream that ended before all its data arrived.
    assert!(
        r.contains("interrupted") || r.contains("ended the connection before all its data arrived"),
        "{r}"
    );
    assert!(r.contains("--resume"), "{r}");
    assert!(send.stderr().contains("--resume"), "{}", send.stderr());
    assert!(partial.exists());
    let j = json_of(&mut send);
    assert_eq!(j["exit_code"], 130);
    let _ = fs::remove_dir_all(&base);
}

/// SIGINT to the receiver: the sender learns it at once.
#[test]
fn sigint_to_the_receiver_is_reported_by_the_sender_at_once() {
    let base = scratch("sigint-recv");
    let src = base.join("big.bin");
    write_random(&src, 16 << 20, 12);
    let out = base.join("out");
    let (mut recv, addr) = start_recv("recv", &out, &[]);
    let mut send = start_send("send", &[&src], addr, &["--limit-rate", "32M"]);
    let partial = out.join(".big.bin.udt-partial");
    wait_for(T, "a partial file", || {
        fs::metadata(&partial).map(|m| m.len()).unwrap_or(0) > 1 << 20
    });
    interrupt(&recv);
    let at = Instant::now();
    assert_eq!(send.code(T), 3, "{}", send.stderr());
    let took = at.elapsed();
    assert!(took < Duration::from_secs(1), "the sender took {took:?}");
    assert_eq!(recv.code(T), 130, "{}", recv.stderr());
    let s = send.stderr();
    assert!(s.contains("receiver was interrupted"), "{s}");
    assert!(s.contains("--resume"), "{s}");
    assert!(recv.stderr().contains("--resume"), "{}", recv.stderr());
    assert!(partial.exists());
    let _ = fs::remove_dir_all(&base);
}

/// The JSON of every command: one object per run, with `command`, `ok`
/// and the documented fields, errors included.
#[test]
fn json_schema_of_every_command() {
    let _heavy = heavy();
    let base = scratch("json");
    let f = base.join("f.bin");
    write_random(&f, 2 << 20, 3);
    let out = base.join("out");

    // send / recv
    let (mut recv, addr) = start_recv("recv", &out, &["--json"]);
    let mut send = start_send("send", &[&f], addr, &[]);
    assert_eq!(send.code(T), 0, "{}", send.stderr());
    assert_eq!(recv.code(T), 0, "{}", recv.stderr());
    for (j, command) in [(json_of(&mut send), "send"), (json_of(&mut recv), "recv")] {
        assert_eq!(j["command"], command, "{j}");
        assert_eq!(j["ok"], true, "{j}");
        for key in [
            "peer",
            "transport",
            "files",
            "dirs",
            "total_bytes",
            "bytes_transferred",
            "bytes_resumed",
            "seconds",
            "throughput_mbps",
            "link",
            "restarted_files",
            "skipped",
            "notes",
        ] {
            assert!(j.get(key).is_some(), "{command}: no {key} in {j}");
        }
        assert_eq!(j["bytes_transferred"], 2u64 << 20);
        let secs = j["seconds"].as_f64().unwrap();
        assert_eq!(secs, (secs * 1000.0).round() / 1000.0, "rounded: {j}");
    }

    // listen / connect: JSON on stderr (stdout is data).
    let mut listen = udt();
    listen
        .args(["listen", "--json", "127.0.0.1:0"])
        .stdout(Stdio::null());
    let mut listen = Proc::spawn("listen", listen);
    let addr = listen.listening_addr(Duration::from_secs(20));
    let mut connect = udt();
    connect
        .args(["connect", "--json"])
        .arg(addr.to_string())
        .stdin(Stdio::piped())
        .stdout(Stdio::null());
    let mut connect = Proc::spawn("connect", connect);
    connect
        .child
        .stdin
        .take()
        .unwrap()
        .write_all(&vec![7u8; 3 << 20])
        .unwrap();
    assert_eq!(connect.code(T), 0, "{}", connect.stderr());
    assert_eq!(listen.code(T), 0, "{}", listen.stderr());
    for (p, command) in [(&connect, "connect"), (&listen, "listen")] {
        let line = p
            .stderr()
            .lines()
            .find(|l| l.starts_with('{'))
            .unwrap_or_else(|| panic!("{command}: no JSON:\n{}", p.stderr()))
            .to_owned();
        let j: serde_json::Value = serde_json::from_str(&line).unwrap();
        assert_eq!(j["command"], command, "{j}");
        assert_eq!(j["ok"], true, "{j}");
        assert_eq!(j["transport"], "udt", "{j}");
        assert_eq!(j["bytes"], 3u64 << 20, "{j}");
        if command == "connect" {
            // Counted after the close: every byte is in.
            assert!(j["link"]["bytes_sent"].as_u64().unwrap() >= 3 << 20, "{j}");
        }
    }

    // bench: results and the same two keys.
    // The server's stdout is read below.
    let (mut server, mut client) =
        start_bench("bench", Stdio::piped(), &["--json", "-t", "2", "-P", "2"]);
    assert_eq!(client.code(T), 0, "{}", client.stderr());
    assert_eq!(server.code(T), 0, "{}", server.stderr());
    let j = json_of(&mut client);
    assert_eq!(j["command"], "bench", "{j}");
    assert_eq!(j["ok"], true, "{j}");
    for key in [
        "transport",
        "mode",
        "reverse",
        "parallel",
        "intervals",
        "sent_bytes",
        "sent_seconds",
        "sent_mbps",
        "received_bytes",
        "received_seconds",
        "received_mbps",
        "rtt_ms",
        "retransmitted",
        "lost",
        "cpu_client_percent",
        "cpu_server_percent",
        "latency",
        "streams",
    ] {
        assert!(j.get(key).is_some(), "bench: no {key} in {j}");
    }
    // Each stream's result, in order, adding up to the receiver's bytes.
    let streams = j["streams"].as_array().unwrap();
    let ids: Vec<u64> = streams.iter().map(|s| s["id"].as_u64().unwrap()).collect();
    assert_eq!(ids, [1, 2], "{j}");
    let per_stream: u64 = streams.iter().map(|s| s["bytes"].as_u64().unwrap()).sum();
    assert_eq!(j["received_bytes"].as_u64(), Some(per_stream), "{j}");
    for s in streams {
        assert!(s["seconds"].as_f64().unwrap() > 1.0, "{j}");
        assert!(s["timeouts"].is_u64(), "{j}");
    }
    let iv = &j["intervals"][0];
    assert_eq!(iv["streams"].as_array().map(Vec::len), Some(2), "{j}");
    let sum: u64 = iv["streams"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_u64().unwrap())
        .sum();
    assert_eq!(iv["bytes"].as_u64(), Some(sum), "{j}");
    // The server prints interval lines too, per stream.
    let lines = server.stdout_string();
    assert!(
        lines
            .lines()
            .filter(|l| l.starts_with("[127.0.0.1:"))
            .count()
            >= 2,
        "{lines}"
    );

    // demo: its own object with the send and recv summaries inside.
    let demo_dir = base.join("demo");
    fs::create_dir_all(&demo_dir).unwrap();
    let out = udt()
        .args(["demo", "--json", "--size", "1M", "--dir"])
        .arg(&demo_dir)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(0));
    let j: serde_json::Value =
        serde_json::from_str(String::from_utf8_lossy(&out.stdout).trim()).unwrap();
    assert_eq!(j["command"], "demo", "{j}");
    assert_eq!(j["ok"], true, "{j}");
    assert_eq!(j["size"], 1u64 << 20, "{j}");
    assert_eq!(j["send"]["command"], "send", "{j}");
    assert_eq!(j["recv"]["command"], "recv", "{j}");
    assert!(j["blake3"].is_string() && j.get("kept_in").is_some(), "{j}");

    // An error: the command is named.
    let out = udt()
        .args(["send", "--json", "--connect-timeout", "0.5"])
        .arg(&f)
        .arg("127.0.0.1:9")
        .output()
        .unwrap();
    let j: serde_json::Value =
        serde_json::from_str(String::from_utf8_lossy(&out.stdout).trim()).unwrap();
    assert_eq!(j["command"], "send");
    assert_eq!(j["ok"], false);
    assert_eq!(j["exit_code"], 3);
    assert!(j["error"].is_string());
    let _ = fs::remove_dir_all(&base);
}

/// `--allow` keeps everyone else out.
#[test]
fn allow_restricts_who_may_send() {
    let base = scratch("allow");
    let f = base.join("f");
    fs::write(&f, b"x").unwrap();
    let out = base.join("out");
    let (mut recv, addr) = start_recv("recv", &out, &["--allow", "192.0.2.1"]);
    let mut send = start_send("send", &[&f], addr, &[]);
    assert_eq!(send.code(T), 3, "{}", send.stderr());
    assert!(
        send.stderr().contains("does not accept"),
        "{}",
        send.stderr()
    );
    assert!(!out.join("f").exists());
    recv.kill();
    assert!(
        recv.stderr().contains("not in --allow"),
        "{}",
        recv.stderr()
    );
    let (mut recv, addr) = start_recv("recv2", &out, &["--allow", "127.0.0.0/8"]);
    let mut send = start_send("send2", &[&f], addr, &[]);
    assert_eq!(send.code(T), 0, "{}", send.stderr());
    assert_eq!(recv.code(T), 0, "{}", recv.stderr());
    let _ = fs::remove_dir_all(&base);
}

/// A tmux server on a private socket, killed on drop.
struct Tmux {
    socket: String,
}

impl Tmux {
    fn start(name: &str, command: &str) -> Tmux {
        let socket = format!("udt-test-{name}-{}", std::process::id());
        let status = Command::new("tmux")
            .args([
                "-L",
                &socket,
                "new-session",
                "-d",
                "-s",
                "t",
                "-x",
                "150",
                "-y",
                "20",
            ])
            .arg(command)
            .status()
            .expect("tmux is needed for the terminal tests (scripts/test.sh installs it)");
        assert!(status.success());
        Tmux { socket }
    }

    fn screen(&self) -> String {
        let out = Command::new("tmux")
            .args(["-L", &self.socket, "capture-pane", "-p", "-t", "t"])
            .output()
            .unwrap();
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    fn keys(&self, keys: &str) {
        let status = Command::new("tmux")
            .args(["-L", &self.socket, "send-keys", "-t", "t", keys])
            .status()
            .unwrap();
        assert!(status.success());
    }
}

impl Drop for Tmux {
    fn drop(&mut self) {
        let _ = Command::new("tmux")
            .args(["-L", &self.socket, "kill-server"])
            .status();
    }
}

/// The sender's bar in a real terminal: files done out of the total, and
/// a rate within 20 % of what the receiver measures under a rate limit
/// (acknowledged bytes, not bytes handed to the send buffer); Ctrl-C
/// clears the bar and says how to resume.
#[test]
fn progress_bar_and_ctrl_c_in_a_terminal() {
    let _heavy = heavy();
    let base = scratch("tty");
    let src = base.join("src");
    fs::create_dir_all(&src).unwrap();
    fs::write(src.join("a-small.txt"), b"small").unwrap();
    write_random(&src.join("b-big.bin"), 40 << 20, 13);
    let out = base.join("out");
    let (mut recv, addr) = start_recv("recv", &out, &["--json"]);
    let command = format!(
        "'{}' send --code test-code --limit-rate 80M '{}' {addr}; echo EXIT=$?; sleep 60",
        env!("CARGO_BIN_EXE_udt"),
        src.display()
    );
    let tmux = Tmux::start("bar", &command);
    // Let the rate settle for a moment, then read the screen.
    let mut screen = String::new();
    wait_for(T, "the progress bar", || {
        screen = tmux.screen();
        screen.contains("1/2 files") && screen.contains("Mbit/s")
    });
    // The receiver's rate: how fast its partial file grows, averaged from
    // its start as the bar's estimate is.
    let partial = out.join("src/.b-big.bin.udt-partial");
    let size = || fs::metadata(&partial).map(|m| m.len()).unwrap_or(0);
    wait_for(T, "the big file", || size() > 0);
    let (t0, s0) = (Instant::now(), size());
    // Five readings as the file passes 12, 16, ... 28 MiB; the median
    // ratio must be within 20 % (one reading can catch a CPU hiccup of a
    // loaded machine on either side).
    let mut ratios = Vec::new();
    let mut last_screen = String::new();
    for mib in [12u64, 16, 20, 24, 28] {
        wait_for(T, "the big file to grow", || size() > mib << 20);
        last_screen = tmux.screen();
        let received_mbps = (size() - s0) as f64 * 8.0 / t0.elapsed().as_secs_f64() / 1e6;
        let rate = bar_rate(&last_screen).unwrap_or_else(|| panic!("no rate in:\n{last_screen}"));
        ratios.push(rate / received_mbps);
    }
    ratios.sort_by(f64::total_cmp);
    let median = ratios[ratios.len() / 2];
    assert!(
        (0.8..=1.2).contains(&median),
        "bar rate / receiver rate: {ratios:?}; last screen:\n{last_screen}"
    );
    screen = last_screen;
    assert!(screen.contains("1/2 files"), "{screen}");
    tmux.keys("C-c");
    wait_for(T, "the exit", || tmux.screen().contains("EXIT="));
    let screen = tmux.screen();
    assert!(screen.contains("EXIT=130"), "{screen}");
    assert!(screen.contains("interrupted"), "{screen}");
    assert!(screen.contains("--resume"), "{screen}");
    assert!(!screen.contains("eta"), "the bar is cleared:\n{screen}");
    assert_eq!(recv.code(T), 3, "{}", recv.stderr());
    let _ = fs::remove_dir_all(&base);
}

/// The rate the bar shows, in Mbit/s.
fn bar_rate(screen: &str) -> Option<f64> {
    let line = screen.lines().rev().find(|l| l.contains("eta"))?;
    let words: Vec<&str> = line.split_whitespace().collect();
    let i = words.iter().position(|w| *w == "Mbit/s")?;
    words.get(i.checked_sub(1)?)?.parse().ok()
}

/// Either side may listen: `udt send --listen` and `udt recv HOST:PORT`
/// connecting out. A connection that is not a receiver (here: one that
/// says nothing) is dropped and the next one served.
#[test]
fn the_sender_may_listen_and_the_receiver_connect() {
    let base = scratch("send-listen");
    let f = base.join("f.txt");
    fs::write(&f, b"pulled by the receiver").unwrap();
    let mut send = udt();
    send.args([
        "send",
        "--json",
        "--idle-timeout",
        "2",
        "--listen",
        "127.0.0.1:0",
    ])
    .arg(&f)
    .stdout(Stdio::piped());
    let mut send = Proc::spawn("send-listen", send);
    let addr = send.listening_addr(Duration::from_secs(20));
    let idle = udt_cli::net::Conn::connect(&addr.to_string(), &common::test_net()).unwrap();
    let out = base.join("out");
    let mut recv = udt();
    recv.args(["recv", "--json", "--out"])
        .arg(&out)
        .arg(addr.to_string())
        .stdout(Stdio::piped());
    let mut recv = Proc::spawn("recv-connect", recv);
    assert_eq!(recv.code(T), 0, "{}", recv.stderr());
    assert_eq!(send.code(T), 0, "{}", send.stderr());
    assert_eq!(
        fs::read(out.join("f.txt")).unwrap(),
        b"pulled by the receiver"
    );
    assert!(
        send.stderr().contains("dropped a connection"),
        "{}",
        send.stderr()
    );
    assert_eq!(json_of(&mut send)["ok"], true);
    assert_eq!(json_of(&mut recv)["bytes_transferred"], 22);
    drop(idle);
    let _ = fs::remove_dir_all(&base);
}

/// An interactive receiver asks before accepting; "n" declines (the
/// sender learns it), "y" accepts.
#[test]
fn an_interactive_receiver_asks_first() {
    let base = scratch("prompt");
    let f = base.join("f.txt");
    fs::write(&f, b"asked first").unwrap();
    let out = base.join("out");
    // The receiver needs a terminal on stdin and stderr: run it directly
    // in the pane (tee would make stderr a pipe) and read the port from
    // the screen.
    let command = format!(
        "'{}' recv --code test-code --keep-listening --listen 127.0.0.1:0 --out '{}'; sleep 60",
        env!("CARGO_BIN_EXE_udt"),
        out.display()
    );
    let tmux = Tmux::start("prompt", &command);
    let mut addr = None;
    wait_for(T, "the listening line", || {
        let screen = tmux.screen();
        addr = screen
            .split("listening on ")
            .nth(1)
            .and_then(|rest| rest.split(' ').next())
            .and_then(|a| a.parse::<std::net::SocketAddr>().ok());
        addr.is_some()
    });
    let addr = addr.unwrap();

    let mut send = start_send("send-declined", &[&f], addr, &[]);
    wait_for(T, "the question", || tmux.screen().contains("[y/N]"));
    let screen = tmux.screen();
    assert!(
        screen.contains("Accept 1 file, 11 B from 127.0.0.1? [y/N]"),
        "{screen}"
    );
    tmux.keys("n");
    tmux.keys("Enter");
    assert_eq!(send.code(T), 5, "{}", send.stderr());
    assert!(send.stderr().contains("declined"), "{}", send.stderr());
    assert!(!out.join("f.txt").exists());

    let mut send = start_send("send-accepted", &[&f], addr, &[]);
    wait_for(T, "the second question", || {
        tmux.screen().matches("[y/N]").count() >= 2
    });
    tmux.keys("y");
    tmux.keys("Enter");
    assert_eq!(send.code(T), 0, "{}", send.stderr());
    assert_eq!(fs::read(out.join("f.txt")).unwrap(), b"asked first");
    let _ = fs::remove_dir_all(&base);
}

/// Shell completions and the manual page come from the same definitions
/// as the parser.
#[test]
fn completions_and_man_page() {
    let out = udt().args(["completions", "bash"]).output().unwrap();
    assert_eq!(out.status.code(), Some(0));
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        text.contains("--limit-rate") && text.contains("recv"),
        "{text}"
    );
    let out = udt().arg("man").output().unwrap();
    assert_eq!(out.status.code(), Some(0));
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains(".TH udt 1"), "{text}");
    assert!(text.contains("bench"), "{text}");
}

/// `--exclude` leaves matching names out (listed in `skipped`), and the
/// usual options can come from the environment.
#[test]
fn exclude_patterns_and_environment_defaults() {
    let base = scratch("exclude");
    let src = base.join("proj");
    fs::create_dir_all(src.join(".git/objects")).unwrap();
    fs::write(src.join(".git/objects/x"), b"git").unwrap();
    fs::write(src.join("keep.rs"), b"fn main() {}").unwrap();
    fs::write(src.join("scratch.tmp"), b"tmp").unwrap();
    let out = base.join("out");
    let mut cmd = udt();
    cmd.arg("recv")
        .arg("--listen")
        .arg("127.0.0.1:0")
        .env("UDT_RECV_OUT", &out)
        .stdout(Stdio::null());
    let mut recv = Proc::spawn("recv-env", cmd);
    let addr = recv.listening_addr(Duration::from_secs(20));
    let mut send = udt();
    send.args(["send", "--json", "--exclude", "*.tmp", "--exclude", ".git"])
        .arg(&src)
        .arg(addr.to_string())
        .stdout(Stdio::piped());
    let mut send = Proc::spawn("send-exclude", send);
    assert_eq!(send.code(T), 0, "{}", send.stderr());
    assert_eq!(recv.code(T), 0, "{}", recv.stderr());
    assert!(out.join("proj/keep.rs").exists());
    assert!(!out.join("proj/scratch.tmp").exists());
    assert!(!out.join("proj/.git").exists());
    let j = json_of(&mut send);
    assert_eq!(j["skipped"].as_array().unwrap().len(), 2, "{j}");
    let _ = fs::remove_dir_all(&base);
}

/// `--include` sends only the files whose name matches (directories are
/// still walked; `--exclude` wins), lists the rest in `skipped`, and `-v`
/// names each file on both sides.
#[test]
fn include_patterns_and_verbose_file_lines() {
    let base = scratch("include");
    let src = base.join("proj");
    fs::create_dir_all(src.join("src/deep")).unwrap();
    fs::write(src.join("Cargo.toml"), b"[package]").unwrap();
    fs::write(src.join("notes.txt"), b"notes").unwrap();
    fs::write(src.join("src/main.rs"), b"fn main() {}").unwrap();
    fs::write(src.join("src/deep/lib.rs"), b"pub fn f() {}").unwrap();
    fs::write(src.join("src/deep/old.rs"), b"// old").unwrap();
    let out = base.join("out");
    let (mut recv, addr) = start_recv("recv-include", &out, &["-v"]);
    let mut send = udt();
    send.args([
        "send",
        "-v",
        "--include",
        "*.rs",
        "--include",
        "Cargo.toml",
        "--exclude",
        "old.rs",
    ])
    .arg(&src)
    .arg(addr.to_string());
    let mut send = Proc::spawn("send-include", send);
    assert_eq!(send.code(T), 0, "{}", send.stderr());
    assert_eq!(recv.code(T), 0, "{}", recv.stderr());
    assert!(out.join("proj/Cargo.toml").exists());
    assert!(out.join("proj/src/main.rs").exists());
    assert!(out.join("proj/src/deep/lib.rs").exists());
    assert!(!out.join("proj/notes.txt").exists());
    assert!(!out.join("proj/src/deep/old.rs").exists());
    let s = send.stderr();
    assert!(s.contains("notes.txt: not included"), "{s}");
    assert!(s.contains("old.rs: excluded"), "{s}");
    assert!(s.contains("sent proj/src/deep/lib.rs (13 B)"), "{s}");
    let r = recv.stderr();
    for name in [
        "proj/Cargo.toml",
        "proj/src/main.rs",
        "proj/src/deep/lib.rs",
    ] {
        assert!(r.contains(&format!("received {name} (")), "{name}: {r}");
    }
    assert!(!r.contains("notes.txt"), "{r}");

    // The same with --json: the left-out files are in `skipped`.
    let out2 = base.join("out2");
    let (mut recv, addr) = start_recv("recv-include-json", &out2, &[]);
    let mut send = start_send(
        "send-include-json",
        &[&src],
        addr,
        &["--include", "*.rs", "--exclude", "old.rs"],
    );
    assert_eq!(send.code(T), 0, "{}", send.stderr());
    assert_eq!(recv.code(T), 0, "{}", recv.stderr());
    let j = json_of(&mut send);
    let skipped: Vec<&str> = j["skipped"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_str().unwrap())
        .collect();
    assert_eq!(skipped.len(), 3, "{j}");
    for name in ["Cargo.toml", "notes.txt", "old.rs"] {
        assert!(skipped.iter().any(|p| p.ends_with(name)), "{name}: {j}");
    }
    assert_eq!(j["files"], 2, "{j}");
    let _ = fs::remove_dir_all(&base);
}

/// A bare port listens dual-stack: one default listener takes a transfer
/// from 127.0.0.1 and one from ::1, and names the IPv4 peer as IPv4.
#[test]
fn the_default_listener_takes_ipv4_and_ipv6() {
    let base = scratch("dual-stack");
    let a = base.join("a.bin");
    let b = base.join("b.bin");
    write_random(&a, 300_000, 21);
    write_random(&b, 200_000, 22);
    let out = base.join("out");
    let mut cmd = udt();
    cmd.args(["recv", "--keep-listening", "--listen", "0", "--out"])
        .arg(&out)
        .stdout(Stdio::null());
    let mut recv = Proc::spawn("recv-dual", cmd);
    let listening = recv.listening_addr(Duration::from_secs(20));
    let port = listening.port();
    let has_ipv6 = std::net::UdpSocket::bind("[::1]:0").is_ok();
    if has_ipv6 {
        assert_eq!(listening.to_string(), format!("[::]:{port}"));
    } else {
        // No IPv6 on this machine: the fallback is the IPv4 wildcard.
        assert_eq!(listening.to_string(), format!("0.0.0.0:{port}"));
    }
    let v4: std::net::SocketAddr = format!("127.0.0.1:{port}").parse().unwrap();
    let mut send = start_send("send-v4", &[&a], v4, &[]);
    assert_eq!(send.code(T), 0, "{}", send.stderr());
    assert_eq!(hash(&a), hash(&out.join("a.bin")));
    wait_for(T, "the IPv4 transfer line", || {
        recv.stderr().contains("transfer from 127.0.0.1:")
    });
    if has_ipv6 {
        let v6: std::net::SocketAddr = format!("[::1]:{port}").parse().unwrap();
        let mut send = start_send("send-v6", &[&b], v6, &[]);
        assert_eq!(send.code(T), 0, "{}", send.stderr());
        assert_eq!(hash(&b), hash(&out.join("b.bin")));
        wait_for(T, "the IPv6 transfer line", || {
            recv.stderr().contains("transfer from [::1]:")
        });
    }
    assert!(!recv.stderr().contains("::ffff:"), "{}", recv.stderr());
    recv.kill();
    let _ = fs::remove_dir_all(&base);
}

/// `udt bench -R`: the server sends, the client counts; both print
/// interval lines, and the JSON says who sent what.
#[test]
fn bench_reverse_mode() {
    let _heavy = heavy();
    let mut server = udt();
    server
        .args(["bench", "-s", "127.0.0.1:0", "--once"])
        .stdout(Stdio::piped());
    let mut server = Proc::spawn("bench-server-rev", server);
    let addr = server.listening_addr(Duration::from_secs(20));
    let mut client = udt();
    client
        .args(["bench", "--json", "-R", "-t", "2"])
        .arg(addr.to_string())
        .stdout(Stdio::piped());
    let mut client = Proc::spawn("bench-client-rev", client);
    assert_eq!(client.code(T), 0, "{}", client.stderr());
    assert_eq!(server.code(T), 0, "{}", server.stderr());
    let j = json_of(&mut client);
    assert_eq!(j["command"], "bench", "{j}");
    assert_eq!(j["reverse"], true, "{j}");
    let received = j["received_bytes"].as_u64().unwrap();
    assert!(received > 0, "{j}");
    assert_eq!(j["sent_bytes"].as_u64(), Some(received), "{j}");
    assert!(!j["intervals"].as_array().unwrap().is_empty(), "{j}");
    let client_sum: u64 = j["intervals"]
        .as_array()
        .unwrap()
        .iter()
        .map(|iv| iv["bytes"].as_u64().unwrap())
        .sum();
    assert!(client_sum > 0 && client_sum <= received, "{j}");
    let lines = server.stdout_string();
    assert!(
        lines.lines().any(|l| l.starts_with("[127.0.0.1:")),
        "{lines}"
    );
    assert!(server.stderr().contains("(reverse)"), "{}", server.stderr());
    // -R with message mode, or with -b on the client, is refused at once.
    let out = udt()
        .args(["bench", "-R", "--msg", "1K"])
        .arg(addr.to_string())
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    let out = udt()
        .args(["bench", "-R", "-b", "10M"])
        .arg(addr.to_string())
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
}

/// Resume the easy way: after Ctrl-C the sender says to run the same
/// command again with --resume, and that alone continues the transfer,
/// with a receiver that was started without --resume.
#[test]
fn the_sender_alone_resumes_after_ctrl_c() {
    let _heavy = heavy();
    let base = scratch("sender-resume");
    let src = base.join("tree");
    fs::create_dir_all(src.join("sub")).unwrap();
    write_random(&src.join("sub/big.bin"), 16 << 20, 31);
    fs::write(src.join("a.txt"), b"first").unwrap();
    let out = base.join("out");
    let (mut recv, addr) = start_recv("recv-1", &out, &[]);
    let mut send = start_send("send-1", &[&src], addr, &["--limit-rate", "32M"]);
    let partial = out.join("tree/sub/.big.bin.udt-partial");
    wait_for(T, "a partial file", || {
        fs::metadata(&partial).map(|m| m.len()).unwrap_or(0) > 1 << 20
    });
    interrupt(&send);
    assert_eq!(send.code(T), 130, "{}", send.stderr());
    assert_eq!(recv.code(T), 3, "{}", recv.stderr());
    assert!(
        send.stderr()
            .contains("run the same command again with --resume"),
        "{}",
        send.stderr()
    );
    let kept = fs::metadata(&partial).unwrap().len();
    assert!(kept > 0);

    let (mut recv, addr) = start_recv("recv-2", &out, &["-v"]);
    let mut send = start_send("send-2", &[&src], addr, &["--resume"]);
    assert_eq!(send.code(T), 0, "{}", send.stderr());
    assert_eq!(recv.code(T), 0, "{}", recv.stderr());
    // Contents (directories merged into keep their mode and time, as with
    // the receiver's --resume).
    for f in ["sub/big.bin", "a.txt"] {
        assert_eq!(hash(&src.join(f)), hash(&out.join("tree").join(f)), "{f}");
    }
    assert!(!partial.exists());
    let j = json_of(&mut send);
    assert!(j["bytes_resumed"].as_u64().unwrap() >= kept, "{j}");
    assert!(
        recv.stderr().contains("resumed tree/sub/big.bin"),
        "{}",
        recv.stderr()
    );
    let _ = fs::remove_dir_all(&base);
}

/// A one-shot receiver exits soon after its last frame, refused or done,
/// even when the sender never reads it (the close must not wait the
/// library's 180 s linger for the peer's reader).
#[test]
fn a_receiver_error_does_not_wait_for_a_peer_that_does_not_read() {
    use std::io::Write as _;
    use udt_cli::net::Conn;
    use udt_cli::proto::wire::{self, EntryKind, EntryMeta, Frame};
    let base = scratch("unread-error");
    let (mut recv, addr) = start_recv("recv-unread", &base.join("out"), &[]);
    let mut conn = Conn::connect(&addr.to_string(), &test_net()).unwrap();
    let mut frames = Vec::new();
    wire::encode(
        &Frame::Hello {
            version: wire::VERSION,
            entries: 1,
            total_bytes: 0,
        },
        &mut frames,
    );
    wire::encode(
        &Frame::Entry {
            meta: EntryMeta {
                kind: EntryKind::File,
                mode: 0o644,
                mtime_secs: 0,
                mtime_nanos: 0,
                size: 0,
            },
            path: b"../escape",
        },
        &mut frames,
    );
    wire::encode(&Frame::ListEnd, &mut frames);
    conn.write_all(&frames).unwrap();
    let at = Instant::now();
    // `conn` stays open and unread until the receiver has exited.
    assert_eq!(recv.code(T), 5, "{}", recv.stderr());
    assert!(
        at.elapsed() < Duration::from_secs(5),
        "the receiver took {:?}",
        at.elapsed()
    );
    drop(conn);

    // The same after a transfer that worked: the sender never reads the
    // plan or the result.
    let (mut recv, addr) = start_recv("recv-unread-ok", &base.join("out2"), &[]);
    let mut conn = Conn::connect(&addr.to_string(), &test_net()).unwrap();
    let mut frames = Vec::new();
    wire::encode(
        &Frame::Hello {
            version: wire::VERSION,
            entries: 1,
            total_bytes: 0,
        },
        &mut frames,
    );
    wire::encode(
        &Frame::Entry {
            meta: EntryMeta {
                kind: EntryKind::Dir,
                mode: 0o755,
                mtime_secs: 0,
                mtime_nanos: 0,
                size: 0,
            },
            path: b"d",
        },
        &mut frames,
    );
    wire::encode(&Frame::ListEnd, &mut frames);
    wire::encode(&Frame::Done, &mut frames);
    conn.write_all(&frames).unwrap();
    let at = Instant::now();
    assert_eq!(recv.code(T), 0, "{}", recv.stderr());
    assert!(
        at.elapsed() < Duration::from_secs(8),
        "the receiver took {:?}",
        at.elapsed()
    );
    drop(conn);
    let _ = fs::remove_dir_all(&base);
}

/// `kill -9` of the sender: nothing tells the receiver, which notices
/// when UDT's peer-idle timer fires (10 s; not the 30 s `--idle-timeout`
/// of a peer that is there but stalled), says the peer vanished, keeps
/// the partial file and gives the resume hint.
#[test]
fn kill_9_of_the_sender_is_reported_within_the_peer_idle_time() {
    let base = scratch("kill9-send");
    let src = base.join("big.bin");
    write_random(&src, 16 << 20, 41);
    let out = base.join("out");
    let (mut recv, addr) = start_recv("recv-kill9", &out, &[]);
    let mut send = start_send("send-kill9", &[&src], addr, &["--limit-rate", "32M"]);
    let partial = out.join(".big.bin.udt-partial");
    wait_for(T, "a partial file", || {
        fs::metadata(&partial).map(|m| m.len()).unwrap_or(0) > 1 << 20
    });
    send.kill();
    let at = Instant::now();
    assert_eq!(recv.code(T), 3, "{}", recv.stderr());
    let took = at.elapsed();
    assert!(took < Duration::from_secs(15), "the receiver took {took:?}");
    let r = recv.stderr();
    assert!(r.contains("stopped answering"), "{r}");
    assert!(r.contains("--resume"), "{r}");
    assert!(partial.exists());
    let _ = fs::remove_dir_all(&base);
}
