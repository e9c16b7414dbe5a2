//! The code workflow of `udt send` / `udt recv` (issue 11): the receiver
//! prints a code, the sender must give it, a wrong code fails fast with a
//! clear message and nothing written, `--insecure` is plain and says so.

mod common;

use std::fs;
use std::process::Stdio;
use std::time::{Duration, Instant};

use common::{scratch, udt, write_random, Proc};

/// `udt recv` without a code (the tests' shared one removed): returns the
/// process, its address and the code it printed.
fn recv_printing_code(name: &str, out: &std::path::Path) -> (Proc, std::net::SocketAddr, String) {
    recv_printing_code_with(name, out, &[])
}

fn send(name: &str, file: &std::path::Path, addr: std::net::SocketAddr, extra: &[&str]) -> Proc {
    let mut cmd = udt();
    cmd.env_remove("UDT_CODE")
        .arg("send")
        .args(extra)
        .arg(file)
        .arg(addr.to_string());
    Proc::spawn(name, cmd)
}

/// `udt recv` without a code and with `extra` arguments.
fn recv_printing_code_with(
    name: &str,
    out: &std::path::Path,
    extra: &[&str],
) -> (Proc, std::net::SocketAddr, String) {
    let mut cmd = udt();
    cmd.env_remove("UDT_CODE")
        .args(["recv", "-y", "--listen", "127.0.0.1:0"])
        .args(extra)
        .arg("--out")
        .arg(out)
        .stdout(Stdio::piped());
    let p = Proc::spawn(name, cmd);
    let addr = p.listening_addr(Duration::from_secs(20));
    let code = p
        .stderr()
        .lines()
        .find_map(|l| l.strip_prefix("Code: ").map(str::to_owned))
        .expect("the receiver prints a code");
    (p, addr, code)
}

#[test]
fn a_wrong_code_ends_the_receiver_on_both_sides_and_the_right_one_gets_through() {
    let dir = scratch("secure-code");
    let out = dir.join("out");
    let file = dir.join("data.bin");
    write_random(&file, 300_000, 11);
    let (mut recv, addr, code) = recv_printing_code("recv", &out);
    let parts: Vec<&str> = code.split('-').collect();
    assert_eq!(parts.len(), 4, "{code}");
    assert!(parts[0].parse::<u32>().is_ok_and(|n| (1..=99).contains(&n)));

    // Wrong code: both sides fail fast, clearly, and nothing is written.
    // The receiver ends: a code is good for one guess.
    let start = Instant::now();
    let mut wrong = send("send-wrong", &file, addr, &["--code", "1-not-the-code"]);
    assert_ne!(wrong.code(Duration::from_secs(10)), 0);
    assert_ne!(recv.code(Duration::from_secs(10)), 0, "{}", recv.stderr());
    assert!(
        start.elapsed() < Duration::from_secs(3),
        "{:?}",
        start.elapsed()
    );
    assert!(
        wrong.stderr().contains("wrong code or key"),
        "{}",
        wrong.stderr()
    );
    assert!(
        recv.stderr().contains("a sender presented a wrong code"),
        "{}",
        recv.stderr()
    );
    // What the receiver said about who may send is true for a code.
    let said = recv.stderr();
    assert!(
        said.contains("only a sender with the code may send"),
        "{said}"
    );
    assert!(!said.contains("anyone who can reach"), "{said}");
    let written = fs::read_dir(&out).map(|d| d.count()).unwrap_or(0);
    assert_eq!(written, 0, "something was written for a wrong code");

    // A new receiver, a new code, typed right (in upper case): the file
    // arrives intact.
    let (mut recv, addr, code) = recv_printing_code("recv-2", &out);
    let mut right = send("send-right", &file, addr, &["--code", &code.to_uppercase()]);
    assert_eq!(right.code(Duration::from_secs(60)), 0, "{}", right.stderr());
    assert_eq!(recv.code(Duration::from_secs(60)), 0, "{}", recv.stderr());
    assert_eq!(
        fs::read(out.join("data.bin")).expect("received"),
        fs::read(&file).expect("sent")
    );
}

#[test]
fn a_listening_service_reports_a_wrong_code_and_goes_on() {
    let dir = scratch("secure-keep");
    let out = dir.join("out");
    let file = dir.join("keep.bin");
    write_random(&file, 100_000, 12);
    let (mut recv, addr, code) = recv_printing_code_with("recv", &out, &["--keep-listening"]);
    let mut wrong = send("send-wrong", &file, addr, &["--code", "1-not-the-code"]);
    assert_ne!(wrong.code(Duration::from_secs(10)), 0);
    let mut right = send("send-right", &file, addr, &["--code", &code]);
    assert_eq!(right.code(Duration::from_secs(60)), 0, "{}", right.stderr());
    assert_eq!(
        fs::read(out.join("keep.bin")).expect("received"),
        fs::read(&file).expect("sent")
    );
    recv.kill();
    assert!(
        recv.stderr()
            .contains("WARNING: a sender presented a wrong code"),
        "{}",
        recv.stderr()
    );
}

#[test]
fn the_sender_needs_the_code() {
    let dir = scratch("secure-nocode");
    let file = dir.join("f");
    write_random(&file, 10, 1);
    let mut s = send("send", &file, "127.0.0.1:9".parse().expect("addr"), &[]);
    assert_eq!(s.code(Duration::from_secs(10)), 2, "a usage error");
    assert!(s.stderr().contains("--code"), "{}", s.stderr());
}

#[test]
fn insecure_is_plain_and_loud() {
    let dir = scratch("secure-insecure");
    let out = dir.join("out");
    let file = dir.join("plain.bin");
    write_random(&file, 50_000, 3);
    let mut cmd = udt();
    cmd.env_remove("UDT_CODE")
        .args([
            "recv",
            "-y",
            "--insecure",
            "--listen",
            "127.0.0.1:0",
            "--out",
        ])
        .arg(&out)
        .stdout(Stdio::piped());
    let mut recv = Proc::spawn("recv", cmd);
    let addr = recv.listening_addr(Duration::from_secs(20));
    assert!(!recv.stderr().contains("Code:"));
    let mut s = send("send", &file, addr, &["--insecure"]);
    assert_eq!(s.code(Duration::from_secs(60)), 0, "{}", s.stderr());
    assert_eq!(recv.code(Duration::from_secs(60)), 0);
    for p in [&s, &recv] {
        assert!(p.stderr().contains("NOT encrypted"), "{}", p.stderr());
    }
    assert!(
        recv.stderr()
            .contains("anyone who can reach this port may send"),
        "{}",
        recv.stderr()
    );
    assert_eq!(
        fs::read(out.join("plain.bin")).expect("received"),
        fs::read(&file).expect("sent")
    );
}

#[test]
fn a_listening_sender_ends_on_a_wrong_code_too() {
    let dir = scratch("secure-send-listen");
    let out = dir.join("out");
    let file = dir.join("s.bin");
    write_random(&file, 10_000, 13);
    let mut cmd = udt();
    cmd.env_remove("UDT_CODE")
        .args(["send", "--listen", "127.0.0.1:0"])
        .arg(&file);
    let mut sender = Proc::spawn("send", cmd);
    let addr = sender.listening_addr(Duration::from_secs(20));
    let mut cmd = udt();
    cmd.env_remove("UDT_CODE")
        .args(["recv", "-y", "--code", "1-not-the-code", "--out"])
        .arg(&out)
        .arg(addr.to_string());
    let mut recv = Proc::spawn("recv", cmd);
    assert_ne!(recv.code(Duration::from_secs(10)), 0);
    assert_ne!(sender.code(Duration::from_secs(10)), 0);
    assert!(
        sender
            .stderr()
            .contains("a receiver presented a wrong code"),
        "{}",
        sender.stderr()
    );
    assert!(
        recv.stderr().contains("wrong code or key"),
        "{}",
        recv.stderr()
    );
    let written = fs::read_dir(&out).map(|d| d.count()).unwrap_or(0);
    assert_eq!(written, 0);
}
