//! The `udt` program as users run it: real processes on loopback, real UDT
//! connections. Every wait is bounded; only processes started here are
//! killed, by their own PID.

mod common;

use std::fs;
use std::io::{Read, Write};
use std::os::unix::process::CommandExt;
use std::path::Path;
use std::process::Stdio;
use std::time::{Duration, Instant, UNIX_EPOCH};

use common::*;
use udt_cli::net::Conn;
use udt_cli::proto::wire::{self, EntryKind, EntryMeta, Frame, FrameReader};

const T: Duration = Duration::from_secs(120);

/// The tree of the issue: an empty file, an empty directory, a 256 MiB
/// file, names with spaces and non-ASCII characters, odd modes and mtimes.
#[test]
fn tree_with_a_256_mib_file_arrives_byte_exact_with_modes_and_mtimes() {
    let _heavy = heavy();
    let base = scratch("tree");
    let top = base.join("src/Projet été 2024");
    fs::create_dir_all(top.join("empty dir")).unwrap();
    fs::create_dir_all(top.join("données/子目录 with space")).unwrap();
    fs::write(top.join("empty file"), b"").unwrap();
    write_random(&top.join("données/big file.bin"), 256 << 20, 42);
    fs::write(
        top.join("données/子目录 with space/ça marche ✓.txt"),
        "ünïcödé\n",
    )
    .unwrap();
    set_mode(&top.join("empty file"), 0o600);
    set_mode(&top.join("données/big file.bin"), 0o640);
    set_mode(
        &top.join("données/子目录 with space/ça marche ✓.txt"),
        0o755,
    );
    set_mtime(
        &top.join("données/big file.bin"),
        UNIX_EPOCH + Duration::new(1_234_567_890, 987_654_321),
    );
    set_mtime(
        &top.join("empty file"),
        UNIX_EPOCH + Duration::from_secs(86_400),
    );
    set_mode(&top.join("empty dir"), 0o700);
    set_mode(&top.join("données/子目录 with space"), 0o750);

    let out = base.join("out");
    let (mut recv, addr) = start_recv("recv", &out, &["--json"]);
    let mut send = start_send("send", &[&top], addr, &[]);
    assert_eq!(send.code(T), 0, "send failed:\n{}", send.stderr());
    assert_eq!(recv.code(T), 0, "recv failed:\n{}", recv.stderr());
    let s = json_of(&mut send);
    let r = json_of(&mut recv);
    assert_eq!(s["files"], 3);
    assert_eq!(s["dirs"], 4);
    let total = (256u64 << 20) + "ünïcödé\n".len() as u64;
    assert_eq!(s["bytes_transferred"], total);
    assert_eq!(r["bytes_transferred"], total);
    assert!(s["link"]["rtt_ms"].is_number(), "{s}");
    assert!(s["throughput_mbps"].as_f64().unwrap() > 0.0);
    assert_same_tree(&top, &out.join("Projet été 2024"));
    let _ = fs::remove_dir_all(&base);
}

/// The receiver dies mid-transfer; the sender reports the vanished peer;
/// `--resume` continues a verified partial, and a tampered partial is
/// detected and sent again.
#[test]
fn resume_after_the_receiver_is_killed_and_tampering_is_detected() {
    let _heavy = heavy();
    let base = scratch("resume");
    let src = base.join("big.bin");
    write_random(&src, 64 << 20, 7);
    let out = base.join("out");
    let partial = out.join(".big.bin.udt-partial");

    // Run 1: slow sender, receiver killed once a part arrived.
    let (mut recv, addr) = start_recv("recv1", &out, &[]);
    let mut send = start_send("send1", &[&src], addr, &["--limit-rate", "128M"]);
    let deadline = Instant::now() + T;
    while fs::metadata(&partial).map(|m| m.len()).unwrap_or(0) < 8 << 20 {
        assert!(Instant::now() < deadline, "no progress:\n{}", send.stderr());
        std::thread::sleep(Duration::from_millis(20));
    }
    recv.kill();
    // The sender notices (UDT's idle timeout) and says so.
    assert_eq!(send.code(T), 3, "{}", send.stderr());
    assert!(send.stderr().contains("udt: error:"), "{}", send.stderr());
    let have = fs::metadata(&partial).unwrap().len();
    assert!((8 << 20..64 << 20).contains(&have), "{have}");
    let saved = fs::read(&partial).unwrap();

    // Run 2: the partial was tampered with: detected, sent again in full.
    let mut tampered = saved.clone();
    tampered[1000] ^= 1;
    fs::write(&partial, &tampered).unwrap();
    let (mut recv, addr) = start_recv("recv2", &out, &["--resume"]);
    let mut send = start_send("send2", &[&src], addr, &[]);
    assert_eq!(send.code(T), 0, "{}", send.stderr());
    assert_eq!(recv.code(T), 0, "{}", recv.stderr());
    let s = json_of(&mut send);
    assert_eq!(s["restarted_files"], 1, "{s}");
    assert_eq!(s["bytes_resumed"], 0, "{s}");
    assert_eq!(s["bytes_transferred"], 64u64 << 20, "{s}");
    assert_eq!(hash(&out.join("big.bin")), hash(&src));
    assert!(!partial.exists());

    // Run 3: an intact partial is continued, not resent.
    fs::remove_file(out.join("big.bin")).unwrap();
    fs::write(&partial, &saved).unwrap();
    let (mut recv, addr) = start_recv("recv3", &out, &["--resume"]);
    let mut send = start_send("send3", &[&src], addr, &[]);
    assert_eq!(send.code(T), 0, "{}", send.stderr());
    assert_eq!(recv.code(T), 0, "{}", recv.stderr());
    let s = json_of(&mut send);
    assert_eq!(s["bytes_resumed"], have, "{s}");
    assert_eq!(s["bytes_transferred"], (64u64 << 20) - have, "{s}");
    assert_eq!(hash(&out.join("big.bin")), hash(&src));

    // Run 4: everything already there: nothing moves, exit 0.
    let (mut recv, addr) = start_recv("recv4", &out, &["--resume"]);
    let mut send = start_send("send4", &[&src], addr, &[]);
    assert_eq!(send.code(T), 0, "{}", send.stderr());
    assert_eq!(recv.code(T), 0, "{}", recv.stderr());
    assert_eq!(json_of(&mut send)["bytes_transferred"], 0);
    let _ = fs::remove_dir_all(&base);
}

/// A test program speaking our protocol with hostile names: refused,
/// exit 5 on the receiver, and nothing written outside --out.
#[test]
fn malicious_sender_is_refused_and_nothing_escapes() {
    let base = scratch("malicious");
    let out = base.join("inside/out");
    fs::create_dir_all(&out).unwrap();
    let outside_abs = base.join("absolute-target");
    let names: Vec<Vec<u8>> = vec![
        b"../escaped".to_vec(),
        b"../../escaped".to_vec(),
        b"ok/../../escaped".to_vec(),
        outside_abs.to_string_lossy().as_bytes().to_vec(),
        b"/tmp/udt-cli-test-absolute".to_vec(),
        b"a\0b".to_vec(),
        vec![b'n'; 300],
    ];
    let (mut recv, addr) = start_recv("recv", &out, &["--keep-listening"]);
    for name in &names {
        let mut conn = Conn::connect(&addr.to_string(), &common::test_net()).unwrap();
        let mut frames = Vec::new();
        wire::encode(
            &Frame::Hello {
                version: wire::VERSION,
                entries: 1,
                total_bytes: 4,
            },
            &mut frames,
        );
        wire::encode(
            &Frame::Entry {
                meta: EntryMeta {
                    kind: EntryKind::File,
                    mode: 0o4755,
                    mtime_secs: 0,
                    mtime_nanos: 0,
                    size: 4,
                },
                path: name,
            },
            &mut frames,
        );
        wire::encode(&Frame::ListEnd, &mut frames);
        // Then the contents, as if the list had been accepted.
        wire::encode(
            &Frame::FileStart {
                index: 0,
                offset: 0,
            },
            &mut frames,
        );
        wire::encode(&Frame::Data(b"evil"), &mut frames);
        wire::encode(
            &Frame::FileEnd {
                hash: *blake3::hash(b"evil").as_bytes(),
            },
            &mut frames,
        );
        wire::encode(&Frame::Done, &mut frames);
        let _ = conn.write_all(&frames);
        conn.set_read_timeout(Some(Duration::from_secs(20)));
        let mut reader = FrameReader::new(conn.try_clone().unwrap());
        match reader.next_frame() {
            Ok(Frame::Error { class, message }) => {
                assert_eq!(class, 5, "{message}");
                assert!(message.contains("refused"), "{message}");
            }
            other => panic!(
                "{:?}: expected a refusal, got {other:?}",
                String::from_utf8_lossy(name)
            ),
        }
        drop(reader);
        let _ = conn.finish();
    }
    // Garbage instead of the protocol: refused too, and the receiver lives on.
    let mut conn = Conn::connect(&addr.to_string(), &common::test_net()).unwrap();
    let _ = conn.write_all(b"GET / HTTP/1.0\r\n\r\n");
    conn.set_read_timeout(Some(Duration::from_secs(20)));
    let mut reader = FrameReader::new(conn.try_clone().unwrap());
    assert!(matches!(
        reader.next_frame(),
        Ok(Frame::Error { class: 5, .. })
    ));
    drop(reader);
    let _ = conn.finish();

    recv.kill();
    assert!(
        recv.stderr().matches("refused").count() >= names.len(),
        "{}",
        recv.stderr()
    );
    // Nothing anywhere but the empty output directory.
    assert_eq!(
        listing(&base),
        [base.join("inside"), base.join("inside/out")]
    );
    assert!(!Path::new("/tmp/udt-cli-test-absolute").exists());
    assert!(!base.parent().unwrap().join("escaped").exists());

    // A one-shot receiver exits 5 on a refusal.
    let (mut recv, addr) = start_recv("recv-once", &out, &[]);
    let mut conn = Conn::connect(&addr.to_string(), &common::test_net()).unwrap();
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
            path: b"../up",
        },
        &mut frames,
    );
    wire::encode(&Frame::ListEnd, &mut frames);
    conn.write_all(&frames).unwrap();
    // Read the refusal: the receiver's close waits (up to its linger time)
    // until our application has read everything it sent.
    conn.set_read_timeout(Some(Duration::from_secs(20)));
    let mut reader = FrameReader::new(conn.try_clone().unwrap());
    assert!(matches!(
        reader.next_frame(),
        Ok(Frame::Error { class: 5, .. })
    ));
    assert_eq!(recv.code(T), 5, "{}", recv.stderr());
    assert!(!base.join("inside/up").exists());
    let _ = fs::remove_dir_all(&base);
}

/// A file-size limit (RLIMIT_FSIZE) on the receiver stands in for a full
/// disk: a clear error on both sides, a partial that --resume continues.
#[test]
fn full_disk_gives_a_clear_error_and_a_resumable_partial() {
    let _heavy = heavy();
    let base = scratch("full");
    let src = base.join("f.bin");
    write_random(&src, 24 << 20, 3);
    let out = base.join("out");
    fs::create_dir_all(&out).unwrap();

    let mut cmd = udt();
    cmd.arg("recv")
        .arg("--listen")
        .arg("127.0.0.1:0")
        .arg("--out")
        .arg(&out);
    cmd.stdout(Stdio::null());
    // SAFETY: setrlimit is async-signal-safe; nothing else runs between
    // fork and exec.
    unsafe {
        cmd.pre_exec(|| {
            let limit = libc::rlimit {
                rlim_cur: 8 << 20,
                rlim_max: 8 << 20,
            };
            if libc::setrlimit(libc::RLIMIT_FSIZE, &limit) != 0 {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        });
    }
    let mut recv = Proc::spawn("recv-limited", cmd);
    let addr = recv.listening_addr(Duration::from_secs(20));
    let mut send = start_send("send", &[&src], addr, &[]);
    assert_eq!(recv.code(T), 6, "{}", recv.stderr());
    assert!(recv.stderr().contains("disk full"), "{}", recv.stderr());
    assert!(recv.stderr().contains("--resume"), "{}", recv.stderr());
    // One line of error each.
    assert_eq!(
        recv.stderr().matches("udt: error:").count(),
        1,
        "{}",
        recv.stderr()
    );
    assert_eq!(send.code(T), 6, "{}", send.stderr());
    assert!(send.stderr().contains("disk full"), "{}", send.stderr());
    let partial = out.join(".f.bin.udt-partial");
    let have = fs::metadata(&partial).unwrap().len();
    assert!(have > 0 && have <= 8 << 20, "{have}");
    assert!(!out.join("f.bin").exists());

    // Space again: --resume continues after the verified prefix.
    let (mut recv, addr) = start_recv("recv-resume", &out, &["--resume"]);
    let mut send = start_send("send2", &[&src], addr, &[]);
    assert_eq!(send.code(T), 0, "{}", send.stderr());
    assert_eq!(recv.code(T), 0, "{}", recv.stderr());
    assert_eq!(json_of(&mut send)["bytes_resumed"], have);
    assert_eq!(hash(&out.join("f.bin")), hash(&src));
    let _ = fs::remove_dir_all(&base);
}

/// `udt listen` / `udt connect` move 100 MiB byte-exact between processes.
#[test]
fn listen_and_connect_pipe_100_mib() {
    let _heavy = heavy();
    let base = scratch("pipe");
    let input = base.join("in.bin");
    write_random(&input, 100 << 20, 9);
    let output = base.join("out.bin");
    let mut listen = udt();
    listen
        .arg("listen")
        .arg("127.0.0.1:0")
        .stdout(fs::File::create(&output).unwrap());
    let mut listen = Proc::spawn("listen", listen);
    let addr = listen.listening_addr(Duration::from_secs(20));
    let mut connect = udt();
    connect
        .arg("connect")
        .arg(addr.to_string())
        .stdin(fs::File::open(&input).unwrap())
        .stdout(Stdio::null());
    let mut connect = Proc::spawn("connect", connect);
    assert_eq!(connect.code(T), 0, "{}", connect.stderr());
    assert_eq!(listen.code(T), 0, "{}", listen.stderr());
    assert_eq!(fs::metadata(&output).unwrap().len(), 100 << 20);
    assert_eq!(hash(&output), hash(&input));
    let _ = fs::remove_dir_all(&base);
}

/// UDP sockets bound to `port` on 127.0.0.1, from the kernel's table.
fn udp_sockets_on(port: u16) -> usize {
    let table = fs::read_to_string("/proc/net/udp").unwrap();
    let local = format!("0100007F:{port:04X}");
    table
        .lines()
        .skip(1)
        .filter(|l| l.split_whitespace().nth(1) == Some(local.as_str()))
        .count()
}

/// `--sockets 3`: the listening port is three UDP sockets (each with its
/// own threads), and a transfer through it arrives whole.
#[test]
fn listen_with_several_sockets_on_one_port() {
    let base = scratch("sockets");
    let output = base.join("out.bin");
    let mut listen = udt();
    listen
        .args(["listen", "--sockets", "3", "127.0.0.1:0"])
        .stdout(fs::File::create(&output).unwrap());
    let mut listen = Proc::spawn("listen-sockets", listen);
    let addr = listen.listening_addr(Duration::from_secs(20));
    assert_eq!(udp_sockets_on(addr.port()), 3, "sockets on {addr}");
    let mut connect = udt();
    connect
        .args(["connect", "--sockets", "2"])
        .arg(addr.to_string())
        .stdin(Stdio::piped())
        .stdout(Stdio::null());
    let mut connect = Proc::spawn("connect-sockets", connect);
    let data: Vec<u8> = (0..1_000_000u32).map(|i| (i % 251) as u8).collect();
    connect
        .child
        .stdin
        .take()
        .unwrap()
        .write_all(&data)
        .unwrap();
    assert_eq!(connect.code(T), 0, "{}", connect.stderr());
    assert_eq!(listen.code(T), 0, "{}", listen.stderr());
    assert!(
        fs::read(&output).unwrap() == data,
        "the transfer arrived altered"
    );
    let _ = fs::remove_dir_all(&base);
}

/// Message mode: each line of stdin is one message, printed as it comes.
#[test]
fn listen_and_connect_in_message_mode() {
    let mut listen = udt();
    listen
        .args(["listen", "--msg", "127.0.0.1:0"])
        .stdout(Stdio::piped());
    let mut listen = Proc::spawn("listen-msg", listen);
    let addr = listen.listening_addr(Duration::from_secs(20));
    let mut connect = udt();
    connect
        .args(["connect", "--msg"])
        .arg(addr.to_string())
        .stdin(Stdio::piped())
        .stdout(Stdio::null());
    let mut connect = Proc::spawn("connect-msg", connect);
    let text: String = (0..200).map(|i| format!("message number {i}\n")).collect();
    connect
        .child
        .stdin
        .take()
        .unwrap()
        .write_all(text.as_bytes())
        .unwrap();
    assert_eq!(connect.code(T), 0, "{}", connect.stderr());
    assert_eq!(listen.code(T), 0, "{}", listen.stderr());
    assert_eq!(listen.stdout_string(), text);
    assert!(
        listen.stderr().contains("200 messages"),
        "{}",
        listen.stderr()
    );
}

#[test]
fn demo_runs_to_completion() {
    let _heavy = heavy();
    let base = scratch("demo");
    let mut demo = udt();
    demo.args(["demo", "--dir"])
        .arg(&base)
        .stdout(Stdio::piped());
    let mut demo = Proc::spawn("demo", demo);
    assert_eq!(demo.code(T), 0, "{}", demo.stderr());
    let err = demo.stderr();
    assert!(err.contains("sent 1 file"), "{err}");
    assert!(err.contains("verified"), "{err}");
    assert_eq!(
        fs::read_dir(&base).unwrap().count(),
        0,
        "scratch files removed"
    );
    let _ = fs::remove_dir_all(&base);
}

/// Runs `udt bench` with `client_args` against a `udt bench --server
/// --once` of its own; both must exit 0. Returns the client's JSON.
fn bench_once(name: &str, client_args: &[&str]) -> serde_json::Value {
    let args: Vec<&str> = ["--json"].iter().chain(client_args).copied().collect();
    let (mut server, mut client) = start_bench(name, Stdio::null(), &args);
    assert_eq!(client.code(T), 0, "{}", client.stderr());
    assert_eq!(server.code(T), 0, "{}", server.stderr());
    json_of(&mut client)
}

#[test]
fn bench_client_and_server() {
    let _heavy = heavy();
    let j = bench_once("bench", &["--seconds", "2", "--parallel", "2"]);
    assert_eq!(j["sent_bytes"], j["received_bytes"], "{j}");
    assert!(j["received_mbps"].as_f64().unwrap() > 1.0, "{j}");
    assert!(j["intervals"].as_array().unwrap().len() >= 2, "{j}");
    assert!(j["cpu_server_percent"].as_f64().unwrap() > 0.0, "{j}");
    assert!(j["rtt_ms"].is_number(), "{j}");
    assert_eq!(j["encrypted"], false, "bench is plain by default: {j}");

    // Message mode with the latency histogram.
    let j = bench_once(
        "bench-msg",
        &["--seconds", "1", "--msg", "1K", "--rate", "2000"],
    );
    let lat = &j["latency"];
    assert!(lat["count"].as_u64().unwrap() > 500, "{j}");
    assert!(
        lat["p50_us"].as_u64().unwrap() <= lat["p99_us"].as_u64().unwrap(),
        "{j}"
    );
}

/// `udt bench -P 1024`, the most the client takes, against a default
/// server: every connection is served (the server used to admit 64 at
/// once, so any `-P` above 64 was refused part-way), each one moves data,
/// and the client's buffers are sized for the test, not 12 MB each.
#[test]
fn bench_serves_the_most_parallel_connections_a_client_may_ask_for() {
    let _heavy = heavy();
    let j = bench_once("bench-1024", &["--seconds", "3", "--parallel", "1024"]);
    assert_eq!(j["parallel"], 1024, "{j}");
    assert_eq!(j["sent_bytes"], j["received_bytes"], "{j}");
    assert_eq!(idle_streams(&j, 1024), 0, "streams that moved nothing: {j}");
}

/// How many of a bench's `n` streams moved nothing over all its interval
/// lines.
fn idle_streams(j: &serde_json::Value, n: usize) -> usize {
    let mut per_stream = vec![0u64; n];
    for iv in j["intervals"].as_array().unwrap() {
        let streams = iv["streams"].as_array().unwrap();
        assert_eq!(streams.len(), n, "{iv}");
        for (sum, b) in per_stream.iter_mut().zip(streams) {
            *sum += b.as_u64().unwrap();
        }
    }
    per_stream.iter().filter(|&&b| b == 0).count()
}

/// A test of many connections (moved by the bench's pump) whose server is
/// killed part-way ends with an error once the connections' peer-idle time
/// (10 s) passes, not a hang: the pump hands each failed stream back.
#[test]
fn bench_of_many_connections_fails_soon_after_its_server_dies() {
    let _heavy = heavy();
    let (mut server, mut client) = start_bench(
        "bench-dies",
        Stdio::piped(),
        &["--json", "--seconds", "60", "--parallel", "100"],
    );
    // The server's first interval line: the data phase has begun.
    let line = server.first_stdout_line(Duration::from_secs(30));
    assert!(line.contains("MiB") || line.contains("KiB"), "{line}");
    server.kill();
    let killed = Instant::now();
    assert_eq!(client.code(T), 3, "{}", client.stderr());
    let took = killed.elapsed();
    assert!(took < Duration::from_secs(25), "the client took {took:?}");
    assert!(client.stderr().contains("broke"), "{}", client.stderr());
}

/// A reverse test of many connections: the server sends on each with a
/// buffer sized for the test (it learns the count only after `accept`),
/// and every stream delivers.
#[test]
fn bench_reverse_with_many_connections() {
    let _heavy = heavy();
    let j = bench_once("bench-r256", &["--seconds", "2", "-R", "--parallel", "256"]);
    assert_eq!(j["parallel"], 256, "{j}");
    assert_eq!(j["reverse"], true, "{j}");
    assert_eq!(j["sent_bytes"], j["received_bytes"], "{j}");
    assert_eq!(idle_streams(&j, 256), 0, "streams that moved nothing: {j}");
    // Each stream's result: the client received, the server sent and
    // reported its own counters.
    let streams = j["streams"].as_array().unwrap();
    assert_eq!(streams.len(), 256, "{j}");
    let per_stream: u64 = streams.iter().map(|s| s["bytes"].as_u64().unwrap()).sum();
    assert_eq!(j["received_bytes"].as_u64(), Some(per_stream), "{j}");
    assert!(streams.iter().all(|s| s["timeouts"].is_u64()), "{j}");
}

/// `udt bench` interval lines count bytes delivered, not bytes queued: at
/// 40 Mbit/s no half second shows more than the cap allows, although the
/// first write fills megabytes of send buffer at once (counted as sent, the
/// first interval read hundreds of Mbit/s and the last ones too little).
#[test]
fn bench_intervals_count_delivered_bytes() {
    let _heavy = heavy();
    let j = bench_once("bench-rate", &["--seconds", "3", "-i", "0.5", "-b", "40M"]);
    let intervals = j["intervals"].as_array().unwrap();
    assert!(intervals.len() >= 4, "{j}");
    let mut counted = 0;
    for iv in intervals {
        let mbps = iv["mbps"].as_f64().unwrap();
        assert!(
            mbps <= 60.0,
            "an interval above the 40 Mbit/s cap: {iv} in {j}"
        );
        counted += iv["bytes"].as_u64().unwrap();
    }
    let received = j["received_bytes"].as_u64().unwrap();
    assert!(
        counted <= received,
        "intervals count more than arrived: {j}"
    );
    // 3 s at 40 Mbit/s is 15 MB; the intervals must see most of it.
    assert!(
        counted >= 10_000_000,
        "intervals missed delivered bytes: {j}"
    );
}

/// `udt bench --code`: secure mode on both sides; a wrong code or a plain
/// client is refused with a clear error, and the server goes on serving.
#[test]
fn bench_in_secure_mode() {
    let _heavy = heavy();
    const CODE: &str = "3-bench-secure-code";
    let mut server = udt();
    server
        .args(["bench", "--server", "127.0.0.1:0", "--once", "--code", CODE])
        .stdout(Stdio::null());
    let mut server = Proc::spawn("bench-server-secure", server);
    let addr = server.listening_addr(Duration::from_secs(20));
    assert!(
        server.stderr().contains("secure mode"),
        "{}",
        server.stderr()
    );
    let bench_client = |name: &str, extra: &[&str]| {
        let mut client = udt();
        client
            .args(["bench", "--json", "--seconds", "1"])
            .args(extra)
            .arg(addr.to_string())
            .stdout(Stdio::piped());
        Proc::spawn(name, client)
    };

    let mut wrong = bench_client("bench-client-wrong", &["--code", "4-not-the-code"]);
    assert_ne!(wrong.code(T), 0, "a wrong code was accepted");
    assert!(
        wrong.stderr().contains("wrong code or key"),
        "{}",
        wrong.stderr()
    );
    let mut plain = bench_client("bench-client-plain", &[]);
    assert_ne!(plain.code(T), 0, "a plain client was accepted");
    assert!(
        plain.stderr().contains("secure"),
        "no clear refusal: {}",
        plain.stderr()
    );

    let mut client = bench_client("bench-client-secure", &["--code", CODE]);
    assert_eq!(client.code(T), 0, "{}", client.stderr());
    assert_eq!(server.code(T), 0, "{}", server.stderr());
    let j = json_of(&mut client);
    assert_eq!(j["encrypted"], true, "{j}");
    assert_eq!(j["sent_bytes"], j["received_bytes"], "{j}");
    assert!(j["received_mbps"].as_f64().unwrap() > 1.0, "{j}");

    // No secure mode over TCP: refused up front, not run in clear.
    let mut tcp = udt();
    tcp.args(["bench", "--transport", "tcp", "--code", CODE, "127.0.0.1:9"]);
    let mut tcp = Proc::spawn("bench-client-tcp", tcp);
    assert_eq!(tcp.code(T), 2, "a usage error: {}", tcp.stderr());
}

/// Nobody listening: a one-line error and exit 3, quickly.
#[test]
fn refused_connection_is_a_network_error() {
    let base = scratch("refused");
    let f = base.join("f");
    fs::write(&f, b"x").unwrap();
    // A UDP port with nobody behind it: bind one and keep it silent.
    let silent = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
    let addr = silent.local_addr().unwrap();
    let mut send = start_send("send", &[&f], addr, &["--connect-timeout", "1"]);
    assert_eq!(send.code(Duration::from_secs(30)), 3, "{}", send.stderr());
    let err = send.stderr();
    assert_eq!(
        err.lines().filter(|l| l.starts_with("udt: error:")).count(),
        1,
        "{err}"
    );
    assert!(err.contains(&addr.to_string()), "{err}");
    assert_eq!(json_of(&mut send)["exit_code"], 3);
    let _ = fs::remove_dir_all(&base);
}

/// An existing file is kept (exit 7 on both sides) unless --overwrite.
#[test]
fn existing_files_need_overwrite() {
    let base = scratch("exists");
    let f = base.join("f");
    fs::write(&f, b"new").unwrap();
    let out = base.join("out");
    fs::create_dir_all(&out).unwrap();
    fs::write(out.join("f"), b"old").unwrap();
    let (mut recv, addr) = start_recv("recv", &out, &[]);
    let mut send = start_send("send", &[&f], addr, &[]);
    assert_eq!(send.code(T), 7, "{}", send.stderr());
    assert_eq!(recv.code(T), 7, "{}", recv.stderr());
    assert!(recv.stderr().contains("--overwrite"), "{}", recv.stderr());
    assert_eq!(fs::read(out.join("f")).unwrap(), b"old");
    let (mut recv, addr) = start_recv("recv2", &out, &["--overwrite"]);
    let mut send = start_send("send2", &[&f], addr, &[]);
    assert_eq!(send.code(T), 0, "{}", send.stderr());
    assert_eq!(recv.code(T), 0, "{}", recv.stderr());
    assert_eq!(fs::read(out.join("f")).unwrap(), b"new");
    let _ = fs::remove_dir_all(&base);
}

#[test]
fn usage_errors_exit_2() {
    let out = udt().args(["send", "only-one-arg"]).output().unwrap();
    assert_eq!(out.status.code(), Some(2));
    let out = udt()
        .args(["send", "/definitely/not/here", "127.0.0.1:9"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("/definitely/not/here"));
    let out = udt()
        .args(["listen", "--msg", "--transport", "tcp", "0"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    let out = udt().arg("--help").output().unwrap();
    assert_eq!(out.status.code(), Some(0));
    let help = String::from_utf8_lossy(&out.stdout);
    assert!(
        help.contains("Examples:") && help.contains("Exit codes:"),
        "{help}"
    );
    let mut buf = String::new();
    let _ = (&out.stdout[..]).read_to_string(&mut buf);
}

/// `--cc` picks the congestion control on each side; an unknown name is a
/// usage error naming the choices.
#[test]
fn cc_flag_chooses_the_controller() {
    let out = udt()
        .args(["connect", "--cc", "cubic", "127.0.0.1:9"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("cubic") && err.contains("bbr-bulk"), "{err}");

    let base = scratch("cc");
    let input = base.join("in.bin");
    write_random(&input, 4 << 20, 11);
    let output = base.join("out.bin");
    let mut listen = udt();
    listen
        .args(["listen", "--cc", "udt", "127.0.0.1:0"])
        .stdout(fs::File::create(&output).unwrap());
    let mut listen = Proc::spawn("listen", listen);
    let addr = listen.listening_addr(Duration::from_secs(20));
    let mut connect = udt();
    connect
        .args(["connect", "--cc", "bbr-bulk"])
        .arg(addr.to_string())
        .stdin(fs::File::open(&input).unwrap())
        .stdout(Stdio::null());
    let mut connect = Proc::spawn("connect", connect);
    assert_eq!(connect.code(T), 0, "{}", connect.stderr());
    assert_eq!(listen.code(T), 0, "{}", listen.stderr());
    assert_eq!(hash(&output), hash(&input));
    let _ = fs::remove_dir_all(&base);
}
