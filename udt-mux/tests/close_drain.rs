//! Orderly close into our own lagging reader (issue 15), under CPU load: a
//! close returns success only once the reader has read everything (our
//! receiver's ACKs report its buffer drained), every byte arrives, and a
//! reader that does not read within the linger time makes close fail while
//! still keeping every acknowledged byte readable after the shutdown.
//!
//! `UDT_SLOW_READER_MIB` / `UDT_SLOW_READER_RUNS` raise the size (8 MiB)
//! and the number of runs (5) for a measurement by hand.

mod common;

use std::io::{self, Read, Write};
use std::thread;
use std::time::{Duration, Instant};

use common::{bind, init, spawn, CpuLoad, PatternStream};
use udt_mux::{Config, ConnectionError, Options, UdtMessageSocket, UdtStream};

const MIB: u64 = 1 << 20;

fn size_and_runs() -> (u64, usize) {
    let env = |name: &str, default: u64| {
        std::env::var(name)
            .ok()
            .and_then(|v| v.parse::<u64>().ok())
            .unwrap_or(default)
    };
    let mib = env("UDT_SLOW_READER_MIB", 8).clamp(1, 256);
    let runs = env("UDT_SLOW_READER_RUNS", 5).clamp(1, 50) as usize;
    (mib * MIB, runs)
}

/// Default buffers (8192 packets, as UDT4), a linger far above what these
/// readers need, and an idle timeout that survives the CPU load.
fn close_config(linger: Duration) -> Config {
    let mut config = Config::default();
    config.linger = Some(linger);
    config
}

/// Sleeps `pause` after every `every` reads: a reader slower than the link.
struct Pace {
    every: u64,
    pause: Duration,
    reads: u64,
}

impl Pace {
    fn new(every: u64, pause: Duration) -> Pace {
        Pace {
            every,
            pause,
            reads: 0,
        }
    }

    fn after_read(&mut self) {
        self.reads += 1;
        if self.reads.is_multiple_of(self.every) {
            thread::sleep(self.pause);
        }
    }
}

/// Message `i`: its index, then 0–492 bytes that depend on `i` (8–500
/// bytes in all, one packet each).
fn message(i: u64, out: &mut Vec<u8>) {
    let len = 8 + (i.wrapping_mul(0x9E37_79B9_7F4A_7C15) >> 55) as usize % 493;
    out.clear();
    out.extend_from_slice(&i.to_le_bytes());
    out.resize(len, 0);
    PatternStream::new(i).fill(&mut out[8..]);
}

/// The number of messages that make up `bytes`.
fn message_count(bytes: u64) -> u64 {
    let mut msg = Vec::new();
    let (mut total, mut n) = (0u64, 0u64);
    while total < bytes {
        message(n, &mut msg);
        total += msg.len() as u64;
        n += 1;
    }
    n
}

/// What one run gave: our close, its duration, our statistics after it
/// (ACK2s withheld, what the peer still had unread), and what the reader
/// was short of or found damaged.
struct Run {
    close: io::Result<()>,
    took: Duration,
    withheld: u64,
    unread: u32,
    missing: u64,
    damaged: bool,
}

/// Reads messages with `pace` until the connection ends; returns how many
/// arrived in order and intact, and whether any did not.
fn read_messages(sock: UdtMessageSocket, count: u64, mut pace: Pace) -> (u64, bool) {
    sock.set_read_timeout(Some(Duration::from_secs(60)));
    let (mut buf, mut want) = (Vec::new(), Vec::new());
    let (mut next, mut damaged) = (0u64, false);
    loop {
        match sock.recv_msg_into(&mut buf) {
            Ok(Some(_)) => {
                message(next, &mut want);
                damaged |= next >= count || buf != want;
                next += 1;
                pace.after_read();
            }
            Ok(None) => break,
            Err(e) => panic!("recv_msg after {next} messages: {e}"),
        }
    }
    (next, damaged)
}

fn messages_run(seed: u64, count: u64) -> Run {
    let server = bind(close_config(Duration::from_secs(60)));
    let listener = server
        .listen_with(2, Options::messages())
        .expect("listen_messages");
    let client = bind(close_config(Duration::from_secs(60)));
    let sender = client
        .connect_with(server.local_addr(), Options::messages())
        .expect("connect_messages");
    let (receiver, _) = listener.accept().expect("accept");
    let reader = spawn(format!("reader-{seed}"), move || {
        read_messages(receiver, count, Pace::new(64, Duration::from_millis(1)))
    });
    let mut msg = Vec::new();
    for i in 0..count {
        message(i, &mut msg);
        sender.send_msg(&msg).expect("send_msg");
    }
    let probe = sender.try_clone().expect("try_clone");
    let start = Instant::now();
    let close = sender.close();
    let took = start.elapsed();
    let stats = probe.stats();
    let (got, damaged) = reader.join().expect("reader thread");
    Run {
        close,
        took,
        withheld: stats.ack2s_withheld,
        unread: stats.peer_unread_packets,
        missing: count.saturating_sub(got),
        damaged,
    }
}

/// Reads the stream in 16 KiB pieces with `pace` until it ends; returns the
/// bytes read and whether any differed from the pattern.
fn read_stream(mut stream: UdtStream, seed: u64, mut pace: Pace) -> (u64, bool) {
    stream.set_read_timeout(Some(Duration::from_secs(60)));
    let mut expected = PatternStream::new(seed);
    let (mut buf, mut want) = (vec![0u8; 16 * 1024], vec![0u8; 16 * 1024]);
    let (mut got, mut damaged) = (0u64, false);
    loop {
        match stream.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => {
                expected.fill(&mut want[..n]);
                damaged |= buf[..n] != want[..n];
                got += n as u64;
                pace.after_read();
            }
            Err(e) => panic!("read after {got} bytes: {e}"),
        }
    }
    (got, damaged)
}

fn write_stream(stream: &mut UdtStream, seed: u64, bytes: u64) {
    let mut pattern = PatternStream::new(seed);
    let mut buf = vec![0u8; 64 * 1024];
    let mut left = bytes;
    while left > 0 {
        let n = left.min(buf.len() as u64) as usize;
        pattern.fill(&mut buf[..n]);
        stream.write_all(&buf[..n]).expect("write");
        left -= n as u64;
    }
}

fn stream_run(seed: u64, bytes: u64) -> Run {
    let server = bind(close_config(Duration::from_secs(60)));
    let listener = server.listen(2).expect("listen");
    let client = bind(close_config(Duration::from_secs(60)));
    let mut sender = client.connect(server.local_addr()).expect("connect");
    let (receiver, _) = listener.accept().expect("accept");
    let reader = spawn(format!("reader-{seed}"), move || {
        read_stream(receiver, seed, Pace::new(4, Duration::from_millis(1)))
    });
    write_stream(&mut sender, seed, bytes);
    let probe = sender.try_clone().expect("try_clone");
    let start = Instant::now();
    let close = sender.close();
    let took = start.elapsed();
    let stats = probe.stats();
    let (got, damaged) = reader.join().expect("reader thread");
    Run {
        close,
        took,
        withheld: stats.ack2s_withheld,
        unread: stats.peer_unread_packets,
        missing: bytes.saturating_sub(got),
        damaged,
    }
}

/// Runs `run` `runs` times under two busy loops; every run must be exact,
/// with a successful close after which the peer had nothing unread, and at
/// least one close must have had to wait for the reader.
fn under_load(what: &str, runs: usize, mut run: impl FnMut(u64) -> Run) {
    init();
    let mut load = CpuLoad::start(2, Duration::from_secs(600));
    let mut failures = Vec::new();
    let (mut lossy, mut waited) = (0, 0);
    for i in 0..runs {
        let r = run(200 + i as u64);
        eprintln!(
            "{what} run {i}: close {:?} after {:?} ({} ACK2s withheld, {} unread), missing {}{}",
            r.close,
            r.took,
            r.withheld,
            r.unread,
            r.missing,
            if r.damaged { ", DAMAGED" } else { "" }
        );
        if r.missing > 0 || r.damaged {
            lossy += 1;
        }
        if r.withheld > 0 {
            waited += 1;
        }
        if r.missing > 0 || r.damaged || r.close.is_err() || r.unread != 0 {
            failures.push(format!(
                "run {i}: close {:?}, {} unread, missing {}, damaged {}",
                r.close, r.unread, r.missing, r.damaged
            ));
        }
    }
    assert!(load.all_running(), "the busy loops ended early");
    eprintln!("{what}: {lossy} of {runs} runs lost data; close waited for the reader in {waited}");
    assert!(failures.is_empty(), "{what}:\n{}", failures.join("\n"));
    assert!(waited > 0, "{what}: the reader never lagged at close");
}

#[test]
fn small_messages_into_our_lagging_reader_under_load_lose_nothing() {
    let (bytes, runs) = size_and_runs();
    let count = message_count(bytes);
    under_load("messages -> our lagging reader", runs, |seed| {
        messages_run(seed, count)
    });
}

#[test]
fn stream_into_our_lagging_reader_under_load_loses_nothing() {
    let (bytes, runs) = size_and_runs();
    under_load("stream -> our lagging reader", runs, |seed| {
        stream_run(seed, bytes)
    });
}

/// Our reader does not read until our linger (1 s) has passed: close fails
/// with `PeerUnread` (never success) after the linger, the shutdown goes
/// out, and every acknowledged byte is still read afterwards, then the end
/// of the stream: our receiver never loses acknowledged unread data.
#[test]
fn close_into_our_reader_that_never_reads_fails_and_nothing_is_lost() {
    init();
    let linger = Duration::from_secs(1);
    let server = bind(close_config(linger));
    let listener = server.listen(2).expect("listen");
    let client = bind(close_config(linger));
    let mut sender = client.connect(server.local_addr()).expect("connect");
    let (receiver, _) = listener.accept().expect("accept");
    // 2 MiB fits in the receive buffer (8192 packets): all acknowledged.
    let bytes = 2 * MIB;
    write_stream(&mut sender, 9, bytes);
    let start = Instant::now();
    let err = sender.close().expect_err("close must not report success");
    let took = start.elapsed();
    assert_eq!(err.kind(), io::ErrorKind::TimedOut, "{err}");
    assert_eq!(
        err.get_ref()
            .and_then(|e| e.downcast_ref::<ConnectionError>()),
        Some(&ConnectionError::PeerUnread),
        "{err}"
    );
    assert!(
        took >= linger - Duration::from_millis(20) && took < linger + Duration::from_secs(2),
        "close took {took:?}"
    );
    let (got, damaged) = read_stream(receiver, 9, Pace::new(u64::MAX, Duration::ZERO));
    assert_eq!(got, bytes, "acknowledged data lost after the shutdown");
    assert!(!damaged, "data damaged");
}
