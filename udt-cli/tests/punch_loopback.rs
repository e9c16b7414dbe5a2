//! `udt broker`, `udt punch` and `udt send`/`udt recv --broker --code` on
//! loopback, where no NAT is needed: the relay is forced with
//! `--relay-only` (the NAT lab in nat_lab.rs makes direct checks fail for
//! real). Every process is bounded in time and killed by its PID on drop.
//! Everything is secure (the code's nameplate names the session, the
//! whole code authenticates) unless a test says `--insecure`.

mod common;

use std::net::SocketAddr;
use std::path::Path;
use std::process::Stdio;
use std::time::{Duration, Instant};

use common::{heavy, scratch, udt, write_random, Proc};

const LIMIT: Duration = Duration::from_secs(90);

/// A broker on a free loopback port (`--relay` when `relay`).
fn broker(relay: bool) -> (Proc, SocketAddr) {
    broker_on("127.0.0.1:0", relay)
}

fn broker_on(listen: &str, relay: bool) -> (Proc, SocketAddr) {
    let mut cmd = udt();
    cmd.args(["broker", "--listen", listen, "--run-for", "80"]);
    if relay {
        cmd.arg("--relay");
    }
    let p = Proc::spawn("broker", cmd);
    let addr = p.listening_addr(Duration::from_secs(20));
    (p, addr)
}

/// `udt --json punch` with `extra` arguments.
fn punch(name: &str, broker: SocketAddr, code: &str, extra: &[&str]) -> Proc {
    let mut cmd = udt();
    cmd.args(["--json", "punch", "--broker"])
        .arg(broker.to_string())
        .args(["--code", code, "--wait", "30"])
        .args(extra)
        .stdout(Stdio::null());
    Proc::spawn(name, cmd)
}

/// The JSON summary `udt punch` prints last on stderr.
fn summary(p: &Proc) -> serde_json::Value {
    let err = p.stderr();
    err.lines()
        .rev()
        .find_map(|l| serde_json::from_str(l).ok())
        .unwrap_or_else(|| panic!("{}: no JSON summary in: {err}", p.name))
}

fn same_bytes(a: &Path, b: &Path) {
    let (x, y) = (
        std::fs::read(a).expect("input"),
        std::fs::read(b).expect("output"),
    );
    assert!(
        x == y,
        "{} bytes sent, {} received, or they differ",
        x.len(),
        y.len()
    );
}

#[test]
fn relayed_transfer_is_byte_exact_and_says_relayed() {
    let _heavy = heavy();
    let dir = scratch("punch-relay");
    let (input, output) = (dir.join("in"), dir.join("out"));
    let len = 32u64 << 20;
    write_random(&input, len, 12);
    let (mut b, addr) = broker(true);
    let input_s = input.to_string_lossy().into_owned();
    let output_s = output.to_string_lossy().into_owned();
    let t0 = Instant::now();
    let mut s = punch(
        "sender",
        addr,
        "1-relay-me",
        &["--relay-only", "--send", &input_s],
    );
    let mut r = punch(
        "receiver",
        addr,
        "1-relay-me",
        &["--relay-only", "--out", &output_s],
    );
    for p in [&mut s, &mut r] {
        assert_eq!(p.code(LIMIT), 0, "{}: {}", p.name, p.stderr());
    }
    let elapsed = t0.elapsed();
    same_bytes(&input, &output);
    for p in [&s, &r] {
        let j = summary(p);
        assert_eq!(j["path"], "relayed", "{j}");
        assert_eq!(j["pair_type"], "relay", "{j}");
        assert_eq!(j["remote"], format!("relay {addr}"), "{j}");
        assert_eq!(j["bytes"], len, "{j}");
        assert!(p.stderr().contains("RELAYED"), "{}", p.stderr());
    }
    // Relayed throughput, for docs/punch.md (not asserted: the machine is
    // shared).
    eprintln!(
        "relayed {} MiB on loopback: sender {:.0} Mbit/s, receiver {:.0} Mbit/s ({:.1} s in all)",
        len >> 20,
        summary(&s)["throughput_mbps"].as_f64().unwrap_or(0.0),
        summary(&r)["throughput_mbps"].as_f64().unwrap_or(0.0),
        elapsed.as_secs_f64()
    );
    b.kill();
    assert!(b.stderr().contains("relaying 1 pair"), "{}", b.stderr());
}

#[test]
fn without_relay_on_the_broker_the_error_says_so() {
    let (_b, addr) = broker(false);
    let mut s = punch("a", addr, "2-no-relay", &["--relay-only", "--no-data"]);
    let mut r = punch("b", addr, "2-no-relay", &["--relay-only", "--no-data"]);
    for p in [&mut s, &mut r] {
        assert_eq!(p.code(LIMIT), 3, "{}: {}", p.name, p.stderr());
        let err = p.stderr();
        assert!(
            err.contains("a relay is needed") && err.contains("the broker offers none"),
            "{err}"
        );
    }
}

/// `udt send`/`udt recv --broker` with `send_code` / `recv_code` and
/// `extra` arguments on both; returns both processes, finished, and the
/// output directory.
fn meet_transfer(
    name: &str,
    send_code: &str,
    recv_code: &str,
    extra: &[&str],
) -> (Proc, Proc, std::path::PathBuf, std::path::PathBuf) {
    let dir = scratch(name);
    let (src, out) = (dir.join("src"), dir.join("out"));
    std::fs::create_dir_all(&src).expect("src");
    std::fs::create_dir_all(&out).expect("out");
    let input = src.join("data.bin");
    write_random(&input, 3 << 20, 5);
    let (_b, addr) = broker(true);
    let mut send = udt();
    send.env_remove("UDT_CODE")
        .args(["send", "--json"])
        .arg(&input)
        .args(["--broker", &addr.to_string(), "--code", send_code])
        .args(extra)
        .stdout(Stdio::piped());
    let mut recv = udt();
    recv.env_remove("UDT_CODE")
        .args(["recv", "--json", "--out"])
        .arg(&out)
        .args(["--broker", &addr.to_string(), "--code", recv_code])
        .args(extra)
        .stdout(Stdio::piped());
    let mut s = Proc::spawn("send", send);
    let mut r = Proc::spawn("recv", recv);
    for p in [&mut s, &mut r] {
        p.code(LIMIT);
    }
    (s, r, input, out)
}

#[test]
fn send_and_recv_meet_through_the_broker_encrypted_by_default() {
    let _heavy = heavy();
    let (mut s, mut r, input, out) = meet_transfer(
        "punch-files",
        "3-amber-falcon-river",
        "3-Amber-Falcon-River",
        &[],
    );
    for p in [&mut s, &mut r] {
        assert_eq!(p.code(LIMIT), 0, "{}: {}", p.name, p.stderr());
    }
    same_bytes(&input, &out.join("data.bin"));
    // On loopback the direct host pair works: no relay. Only the
    // nameplate went to the broker.
    for p in [&s, &r] {
        let err = p.stderr();
        assert!(err.contains("connected (direct)"), "{err}");
        assert!(!err.contains("RELAYED"), "{err}");
        assert!(err.contains("session \"3\""), "{err}");
        assert!(!err.contains("NOT encrypted"), "{err}");
    }
    let j = common::json_of(&mut s);
    assert_eq!(j["ok"], true, "{j}");
}

#[test]
fn receivers_without_a_code_get_distinct_nameplates_from_the_broker() {
    let _heavy = heavy();
    let dir = scratch("punch-allocate");
    let (_b, addr) = broker(false);
    // Two receivers wait at one broker at once, neither given a code: the
    // broker names their sessions, so the pairs cannot meet the wrong peer.
    let pairs: Vec<(Proc, std::path::PathBuf, std::path::PathBuf)> = (0..2)
        .map(|i| {
            let (src, out) = (dir.join(format!("src{i}")), dir.join(format!("out{i}")));
            std::fs::create_dir_all(&src).expect("src");
            std::fs::create_dir_all(&out).expect("out");
            let input = src.join(format!("data{i}.bin"));
            write_random(&input, 1 << 20, 10 + i);
            let mut recv = udt();
            recv.env_remove("UDT_CODE")
                .args(["recv", "--json", "--out"])
                .arg(&out)
                .args(["--broker", &addr.to_string()])
                .stdout(Stdio::piped());
            (Proc::spawn(&format!("recv{i}"), recv), input, out)
        })
        .collect();
    let codes: Vec<String> = pairs
        .iter()
        .map(|(r, _, _)| r.line_after("Code: ", Duration::from_secs(20)))
        .collect();
    let nameplates: Vec<&str> = codes
        .iter()
        .map(|c| c.split('-').next().expect("a nameplate"))
        .collect();
    assert_ne!(nameplates[0], nameplates[1], "{codes:?}");
    assert!(nameplates
        .iter()
        .all(|n| n.parse::<u32>().is_ok_and(|n| (1..=99).contains(&n))));
    for ((mut r, input, out), code) in pairs.into_iter().zip(&codes) {
        let mut send = udt();
        send.env_remove("UDT_CODE")
            .args(["send", "--json"])
            .arg(&input)
            .args(["--broker", &addr.to_string(), "--code", code])
            .stdout(Stdio::piped());
        let mut s = Proc::spawn("send", send);
        for p in [&mut s, &mut r] {
            assert_eq!(p.code(LIMIT), 0, "{}: {}", p.name, p.stderr());
        }
        let name = input.file_name().expect("a file name");
        same_bytes(&input, &out.join(name));
        let nameplate = code.split('-').next().unwrap_or_default();
        assert!(
            r.stderr().contains(&format!("session \"{nameplate}\"")),
            "{}",
            r.stderr()
        );
    }
}

#[test]
fn insecure_through_the_broker_is_plain_and_loud() {
    let _heavy = heavy();
    let (mut s, mut r, input, out) =
        meet_transfer("punch-plain", "files", "files", &["--insecure"]);
    for p in [&mut s, &mut r] {
        assert_eq!(p.code(LIMIT), 0, "{}: {}", p.name, p.stderr());
        assert!(p.stderr().contains("NOT encrypted"), "{}", p.stderr());
        // The whole code names the session, as before secure rendezvous.
        assert!(p.stderr().contains("session \"files\""), "{}", p.stderr());
    }
    same_bytes(&input, &out.join("data.bin"));
}

#[test]
fn a_wrong_code_through_the_broker_fails_fast_on_both_sides_with_nothing_written() {
    // Same nameplate (they meet at the broker), different secret words.
    let t0 = Instant::now();
    let (mut s, mut r, _, out) = meet_transfer(
        "punch-wrong",
        "5-amber-falcon-river",
        "5-amber-falcon-rivet",
        &[],
    );
    let (cs, cr) = (s.code(LIMIT), r.code(LIMIT));
    assert!(cs != 0 && cr != 0, "{}\n{}", s.stderr(), r.stderr());
    // Meeting takes a moment; the refusal does not wait for a timeout
    // (the rendezvous allows 30 s, the idle timeout 30 s).
    assert!(t0.elapsed() < Duration::from_secs(20), "{:?}", t0.elapsed());
    let both = format!("{}\n{}", s.stderr(), r.stderr());
    assert!(both.contains("wrong code"), "{both}");
    assert!(r.stderr().contains("wrong code"), "{}", r.stderr());
    let written = std::fs::read_dir(&out).map(|d| d.count()).unwrap_or(0);
    assert_eq!(written, 0, "something was written for a wrong code");
}

#[test]
fn a_secure_broker_code_needs_a_nameplate() {
    let out = udt()
        .env_remove("UDT_CODE")
        .args([
            "send",
            "x",
            "--broker",
            "127.0.0.1:1",
            "--code",
            "nonameplate",
        ])
        .output()
        .expect("run udt");
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("NAMEPLATE-SECRET"), "{err}");
}

#[test]
fn broker_requires_code_and_excludes_a_target() {
    let out = udt()
        .env_remove("UDT_CODE")
        .args(["send", "x", "--broker", "127.0.0.1:1"])
        .output()
        .expect("run udt");
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("--code"));
    let out = udt()
        .args([
            "recv",
            "127.0.0.1:9",
            "--broker",
            "127.0.0.1:1",
            "--code",
            "c",
        ])
        .output()
        .expect("run udt");
    assert_eq!(
        out.status.code(),
        Some(2),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn punches_over_ipv6() {
    let v6_loopback = std::net::UdpSocket::bind("[::1]:0").is_ok();
    if !v6_loopback {
        eprintln!("punches_over_ipv6: skipped (no IPv6 loopback)");
        return;
    }
    let (_b, addr) = broker_on("[::1]:0", false);
    assert!(addr.is_ipv6());
    let mut x = punch("x", addr, "6-six-six", &["--no-data"]);
    let mut y = punch("y", addr, "6-six-six", &["--no-data"]);
    for p in [&mut x, &mut y] {
        assert_eq!(p.code(LIMIT), 0, "{}: {}", p.name, p.stderr());
        let j = summary(p);
        assert_eq!(j["path"], "direct", "{j}");
        assert_eq!(j["pair_type"], "host-host", "{j}");
        // Candidates and the nominated pair are IPv6 (gathered from the
        // interfaces of the broker's family).
        let remote = j["remote"].as_str().unwrap_or_default();
        assert!(remote.starts_with("host [::1]:"), "{j}");
        let locals = j["local_candidates"]
            .as_array()
            .cloned()
            .unwrap_or_default();
        assert!(!locals.is_empty());
        assert!(
            locals
                .iter()
                .all(|c| c.as_str().is_some_and(|c| c.contains('['))),
            "{j}"
        );
    }
}

/// `--no-data` used to close right after the side that finished the UDT
/// rendezvous first connected, leaving the other side waiting for a
/// handshake that never came (about one run in three on loopback).
#[test]
fn no_data_punch_finishes_on_both_sides_every_time() {
    let (_b, addr) = broker(false);
    for round in 0..6 {
        let code = format!("{round}-nd-nd");
        let mut x = punch("x", addr, &code, &["--no-data"]);
        let mut y = punch("y", addr, &code, &["--no-data"]);
        for p in [&mut x, &mut y] {
            assert_eq!(
                p.code(Duration::from_secs(30)),
                0,
                "round {round}, {}: {}",
                p.name,
                p.stderr()
            );
        }
    }
}

#[test]
fn punch_without_a_code_prints_the_one_the_broker_named() {
    let (_b, addr) = broker(false);
    let mut cmd = udt();
    cmd.args(["--json", "punch", "--broker"])
        .arg(addr.to_string())
        .args(["--wait", "30", "--no-data"])
        .stdout(Stdio::null());
    let mut x = Proc::spawn("x", cmd);
    let code = x.line_after("Code: ", Duration::from_secs(20));
    let mut y = punch("y", addr, &code, &["--no-data"]);
    for p in [&mut x, &mut y] {
        assert_eq!(p.code(LIMIT), 0, "{}: {}", p.name, p.stderr());
        assert_eq!(summary(p)["ok"], true);
    }
    // A plain session is named by the whole code, which the broker cannot
    // pick: --insecure still needs one.
    let out = udt()
        .args(["punch", "--broker", &addr.to_string(), "--insecure"])
        .output()
        .expect("run udt");
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("--code"));
}
