//! `udt punch` through real Linux NATs: network namespaces, veth pairs and
//! nftables masquerade, built and torn down by each test.
//!
//! Topology: a public segment (198.18.0.0/24, a bridge in the `wan`
//! namespace, which also runs the broker at 198.18.0.1), NAT routers with
//! their LANs (192.0.2.0/24 and 198.51.100.0/24) and a host on each LAN.
//! Namespaces get unique names per test and a guard deletes them (with
//! their veths and nft tables) and kills the processes, also on failure.
//!
//! Needs root, `ip` and `nft` (scripts/test.sh installs them). Without root
//! the tests say so and pass, unless UDT_NAT_LAB=1 demands the lab (CI).

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};

const UDT: &str = env!("CARGO_BIN_EXE_udt");
const BROKER: &str = "198.18.0.1:3478";
/// Every process in the lab is wrapped in `timeout` with this many seconds.
const LIMIT: &str = "60";

/// True when the lab can run; panics when it must run and cannot.
fn lab_available() -> bool {
    let root = Command::new("id")
        .arg("-u")
        .output()
        .is_ok_and(|o| String::from_utf8_lossy(&o.stdout).trim() == "0");
    let tools = ["ip", "nft", "timeout"].iter().all(|t| {
        Command::new("sh")
            .args(["-c", &format!("command -v {t}")])
            .stdout(Stdio::null())
            .status()
            .is_ok_and(|s| s.success())
    });
    let ok = root && tools;
    if !ok {
        assert!(
            std::env::var_os("UDT_NAT_LAB").is_none(),
            "UDT_NAT_LAB is set but the lab needs root, ip and nft"
        );
        eprintln!("nat_lab: skipped (needs root, ip and nft; set UDT_NAT_LAB=1 to require)");
    }
    ok
}

fn run(args: &[&str]) {
    let out = Command::new(args[0])
        .args(&args[1..])
        .output()
        .unwrap_or_else(|e| panic!("{args:?}: {e}"));
    assert!(
        out.status.success(),
        "{args:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// How a NAT router maps and filters.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum NatKind {
    /// `masquerade`: endpoint-independent mapping, port-preserving.
    Masquerade,
    /// `masquerade fully-random`: a new random port per flow (symmetric).
    FullyRandom,
}

/// The lab; dropping it kills the processes and deletes the namespaces.
struct Lab {
    prefix: String,
    namespaces: Vec<String>,
    children: Vec<Option<Child>>,
    dir: PathBuf,
}

static LABS: AtomicU32 = AtomicU32::new(0);

impl Lab {
    fn new() -> Lab {
        let n = LABS.fetch_add(1, Ordering::Relaxed);
        let prefix = format!("ul{}x{n}", std::process::id() % 100_000);
        let dir = std::env::temp_dir().join(format!("udt-nat-lab-{prefix}"));
        std::fs::create_dir_all(&dir).expect("lab directory");
        let mut lab = Lab {
            prefix,
            namespaces: Vec::new(),
            children: Vec::new(),
            dir,
        };
        let wan = lab.netns("wan");
        run(&["ip", "-n", &wan, "link", "add", "br0", "type", "bridge"]);
        run(&[
            "ip",
            "-n",
            &wan,
            "addr",
            "add",
            "198.18.0.1/24",
            "dev",
            "br0",
        ]);
        run(&["ip", "-n", &wan, "link", "set", "br0", "up"]);
        lab
    }

    fn ns(&self, name: &str) -> String {
        format!("{}{name}", self.prefix)
    }

    fn netns(&mut self, name: &str) -> String {
        let ns = self.ns(name);
        run(&["ip", "netns", "add", &ns]);
        self.namespaces.push(ns.clone());
        run(&["ip", "-n", &ns, "link", "set", "lo", "up"]);
        ns
    }

    /// A veth from namespace `a` (named `a_if`) to `b` (named `b_if`).
    fn veth(&self, a: &str, a_if: &str, b: &str, b_if: &str) {
        let tmp_a = format!("{}a", self.prefix);
        let tmp_b = format!("{}b", self.prefix);
        run(&[
            "ip", "-n", a, "link", "add", &tmp_a, "type", "veth", "peer", "name", &tmp_b, "netns",
            b,
        ]);
        run(&["ip", "-n", a, "link", "set", &tmp_a, "name", a_if]);
        run(&["ip", "-n", b, "link", "set", &tmp_b, "name", b_if]);
        run(&["ip", "-n", a, "link", "set", a_if, "up"]);
        run(&["ip", "-n", b, "link", "set", b_if, "up"]);
    }

    /// A host on the public segment at `ip` (/24 of 198.18.0.0).
    fn public_host(&mut self, name: &str, ip: &str) -> String {
        let ns = self.netns(name);
        let wan = self.ns("wan");
        let port = format!("p{name}");
        self.veth(&ns, "eth0", &wan, &port);
        run(&["ip", "-n", &wan, "link", "set", &port, "master", "br0"]);
        run(&[
            "ip",
            "-n",
            &ns,
            "addr",
            "add",
            &format!("{ip}/24"),
            "dev",
            "eth0",
        ]);
        ns
    }

    /// A NAT router at public `ip` with LAN `lan` (x.y.z.1/24 is the
    /// router); `firewall` adds a home-router policy: forwarded traffic
    /// only as replies or from the LAN, and nothing unsolicited from the
    /// WAN to the router itself (OpenWrt's default). The input drop
    /// matters for punching: conntrack confirms an entry only once the
    /// packet passed the input hooks, so a peer's early check dropped
    /// there leaves no entry to collide with our own mapping.
    fn nat(&mut self, name: &str, ip: &str, lan: &str, kind: NatKind, firewall: bool) -> String {
        let ns = self.public_host(name, ip);
        run(&["ip", "-n", &ns, "link", "set", "eth0", "name", "wan0"]);
        let ns_lan = format!("{lan}.1/24");
        // The LAN side gets its veth when a host is added; keep a dummy
        // bridge so several hosts can share the LAN.
        run(&["ip", "-n", &ns, "link", "add", "lan0", "type", "bridge"]);
        run(&["ip", "-n", &ns, "addr", "add", &ns_lan, "dev", "lan0"]);
        run(&["ip", "-n", &ns, "link", "set", "lan0", "up"]);
        run(&[
            "ip",
            "netns",
            "exec",
            &ns,
            "sysctl",
            "-qw",
            "net.ipv4.ip_forward=1",
        ]);
        let masq = match kind {
            NatKind::Masquerade => "masquerade",
            NatKind::FullyRandom => "masquerade fully-random",
        };
        let mut rules = format!(
            "table ip udtlab {{\n chain post {{ type nat hook postrouting priority 100; oifname \"wan0\" {masq}; }}\n"
        );
        if firewall {
            rules.push_str(
                " chain forward_policy { type filter hook forward priority 0; policy drop; ct state established,related accept; iifname \"lan0\" accept; }\n",
            );
            rules.push_str(
                " chain input_policy { type filter hook input priority 0; policy accept; iifname \"wan0\" ct state established,related accept; iifname \"wan0\" drop; }\n",
            );
        }
        rules.push_str("}\n");
        let file = self.dir.join(format!("{name}.nft"));
        std::fs::write(&file, rules).expect("nft rules");
        run(&[
            "ip",
            "netns",
            "exec",
            &ns,
            "nft",
            "-f",
            &file.to_string_lossy(),
        ]);
        ns
    }

    /// A host on the LAN of `router` at `ip`.
    fn lan_host(&mut self, name: &str, router: &str, ip: &str, gw: &str) -> String {
        let ns = self.netns(name);
        let port = format!("l{name}");
        self.veth(&ns, "eth0", router, &port);
        run(&["ip", "-n", router, "link", "set", &port, "master", "lan0"]);
        run(&[
            "ip",
            "-n",
            &ns,
            "addr",
            "add",
            &format!("{ip}/24"),
            "dev",
            "eth0",
        ]);
        run(&["ip", "-n", &ns, "route", "add", "default", "via", gw]);
        ns
    }

    fn spawn(&mut self, ns: &str, args: &[&str], stdout: Option<&Path>) -> usize {
        let mut c = Command::new("ip");
        c.args(["netns", "exec", ns, "timeout", LIMIT, UDT])
            .args(args);
        c.stdout(match stdout {
            Some(p) => Stdio::from(std::fs::File::create(p).expect("stdout file")),
            None => Stdio::null(),
        });
        c.stderr(Stdio::piped());
        self.children.push(Some(c.spawn().expect("spawn udt")));
        self.children.len() - 1
    }

    /// Waits for child `i` (bounded: every child runs under `timeout`).
    fn wait(&mut self, i: usize) -> Output {
        let child = self.children[i].take().expect("a child not yet waited for");
        child.wait_with_output().expect("wait for udt")
    }

    fn broker(&mut self) {
        self.broker_with(&[]);
    }

    /// The broker with `extra` arguments (`--relay`).
    fn broker_with(&mut self, extra: &[&str]) {
        let wan = self.ns("wan");
        let mut args = vec!["broker", "--listen", BROKER, "--run-for", LIMIT];
        args.extend_from_slice(extra);
        self.spawn(&wan, &args, None);
    }

    fn file(&self, name: &str) -> PathBuf {
        self.dir.join(name)
    }
}

impl Drop for Lab {
    fn drop(&mut self) {
        for c in self.children.iter_mut().flatten() {
            let _ = c.kill();
            let _ = c.wait();
        }
        // Deleting a namespace deletes its veths, bridges and nft tables.
        for ns in self.namespaces.iter().rev() {
            let _ = Command::new("ip").args(["netns", "del", ns]).status();
        }
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

fn write_random(path: &Path, len: usize) {
    let mut data = vec![0u8; len];
    let mut x = 0x9E37_79B9_7F4A_7C15u64;
    for chunk in data.chunks_mut(8) {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        for (b, v) in chunk.iter_mut().zip(x.to_le_bytes()) {
            *b = v;
        }
    }
    std::fs::write(path, data).expect("input file");
}

fn summary(out: &Output) -> serde_json::Value {
    let err = String::from_utf8_lossy(&out.stderr);
    err.lines()
        .rev()
        .find_map(|l| serde_json::from_str(l).ok())
        .unwrap_or_else(|| panic!("no JSON summary in: {err}"))
}

/// Punches from `a` (sending `len` bytes) to `b` (receiving), encrypted,
/// under the nameplate `code`;
/// returns both outputs after checking the bytes arrived intact.
fn transfer(lab: &mut Lab, a: &str, b: &str, code: &str, len: usize) -> (Output, Output) {
    let input = lab.file(&format!("{code}.in"));
    let output = lab.file(&format!("{code}.out"));
    write_random(&input, len);
    // Secure by default: `code` is the nameplate that names the session
    // at the broker; the words after it stay secret (the PAKE password).
    let code = &format!("{code}-amber-falcon-river");
    let common = [
        "--json",
        "punch",
        "--broker",
        BROKER,
        "--code",
        code,
        "--bind",
        "0.0.0.0:9000",
        "--wait",
        "20",
    ];
    let input_s = input.to_string_lossy().into_owned();
    let output_s = output.to_string_lossy().into_owned();
    let mut sa: Vec<&str> = common.to_vec();
    sa.extend(["--send", &input_s]);
    let mut rb: Vec<&str> = common.to_vec();
    rb.extend(["--out", &output_s]);
    let ia = lab.spawn(a, &sa, None);
    let ib = lab.spawn(b, &rb, None);
    let (oa, ob) = (lab.wait(ia), lab.wait(ib));
    assert!(
        oa.status.success() && ob.status.success(),
        "sender: {}\nreceiver: {}",
        String::from_utf8_lossy(&oa.stderr),
        String::from_utf8_lossy(&ob.stderr)
    );
    let (x, y) = (
        std::fs::read(&input).expect("input"),
        std::fs::read(&output).expect("output"),
    );
    assert!(
        x == y,
        "{} bytes sent, {} received, or they differ",
        x.len(),
        y.len()
    );
    (oa, ob)
}

fn two_nats(kind_a: NatKind, kind_b: NatKind, firewall: bool) -> (Lab, String, String) {
    two_nats_with(kind_a, kind_b, firewall, &[])
}

/// Two NATs and their hosts; the broker gets `broker_args`.
fn two_nats_with(
    kind_a: NatKind,
    kind_b: NatKind,
    firewall: bool,
    broker_args: &[&str],
) -> (Lab, String, String) {
    let mut lab = Lab::new();
    let na = lab.nat("na", "198.18.0.2", "192.0.2", kind_a, firewall);
    let nb = lab.nat("nb", "198.18.0.3", "198.51.100", kind_b, firewall);
    let a = lab.lan_host("ha", &na, "192.0.2.10", "192.0.2.1");
    let b = lab.lan_host("hb", &nb, "198.51.100.10", "198.51.100.1");
    lab.broker_with(broker_args);
    (lab, a, b)
}

/// Ignored: without the routers' input firewall, on this lab's
/// zero-latency bridge the first check of the side that starts first is
/// delivered locally on the other NAT (nothing listens there), and
/// conntrack keeps that entry; its tuple is exactly the port-preserving
/// mapping the host behind needs, so that host's flow to the peer is
/// remapped to another port, which the first side's NAT filters (seen in
/// /proc/net/nf_conntrack: `src=PEER sport=9000 dport=9000 [UNREPLIED]`
/// on one NAT, our flow mapped to a random port). It needs WAN delay
/// (`tc netem`, absent from this kernel); TTL-limited probes cannot help
/// because the peer's public address is its NAT router itself (local
/// delivery ignores the TTL). See docs/punch.md and the passing test
/// with home-router firewalls below.
#[test]
#[ignore = "needs WAN latency (netem) for simultaneous open; see docs/punch.md"]
fn endpoint_independent_nats_punch_and_move_64_mib_direct() {
    if !lab_available() {
        return;
    }
    for (run_no, firewall) in [(0, false), (1, false)] {
        let (mut lab, a, b) = two_nats(NatKind::Masquerade, NatKind::Masquerade, firewall);
        let len = if run_no == 0 { 64 << 20 } else { 4 << 20 };
        let (oa, ob) = transfer(&mut lab, &a, &b, &format!("eim{run_no}"), len);
        for (o, peer_public) in [(&oa, "198.18.0.3"), (&ob, "198.18.0.2")] {
            let s = summary(o);
            assert_eq!(s["path"], "direct");
            assert_eq!(s["pair_type"], "srflx-srflx", "firewall {firewall}: {s}");
            assert!(
                s["remote"]
                    .as_str()
                    .is_some_and(|r| r.contains(peer_public)),
                "{s}"
            );
        }
    }
}

/// Masquerade on both sides behind home-router firewalls (input drop on
/// the WAN): the early check is dropped before conntrack confirms it, so
/// port preservation holds and the srflx pair works directly. Several
/// runs, 64 MiB once.
#[test]
fn endpoint_independent_nats_behind_home_router_firewalls_punch_direct() {
    if !lab_available() {
        return;
    }
    for run_no in 0..3 {
        let (mut lab, a, b) = two_nats(NatKind::Masquerade, NatKind::Masquerade, true);
        let len = if run_no == 0 { 64 << 20 } else { 4 << 20 };
        let (oa, ob) = transfer(&mut lab, &a, &b, &format!("eimfw{run_no}"), len);
        for (o, peer_public) in [(&oa, "198.18.0.3"), (&ob, "198.18.0.2")] {
            let s = summary(o);
            assert_eq!(s["path"], "direct", "run {run_no}: {s}");
            assert_eq!(s["pair_type"], "srflx-srflx", "run {run_no}: {s}");
            assert_eq!(
                s["remote"],
                format!("srflx {peer_public}:9000"),
                "run {run_no}: {s}"
            );
        }
        eprintln!(
            "masquerade both sides behind firewalls, direct, {} MiB: {:.0} Mbit/s",
            len >> 20,
            summary(&ob)["throughput_mbps"].as_f64().unwrap_or(0.0)
        );
    }
}

/// A lab with A behind a masquerading, firewalled NAT, B on the public
/// side and the broker running: returns the lab and the two hosts.
fn one_side_behind_masquerade() -> (Lab, String, String) {
    let mut lab = Lab::new();
    let na = lab.nat("na", "198.18.0.2", "192.0.2", NatKind::Masquerade, true);
    let a = lab.lan_host("ha", &na, "192.0.2.10", "192.0.2.1");
    let b = lab.public_host("pb", "198.18.0.20");
    lab.broker();
    (lab, a, b)
}

#[test]
fn one_side_without_nat_punches() {
    if !lab_available() {
        return;
    }
    let (mut lab, a, b) = one_side_behind_masquerade();
    let (oa, ob) = transfer(&mut lab, &a, &b, "open", 1 << 20);
    // The public side's check may reach A's NAT before A's own and make
    // conntrack remap A's flow: B then learns A peer-reflexively.
    let (sa_, sb) = (summary(&oa), summary(&ob));
    assert_eq!(sa_["remote"], "host 198.18.0.20:9000", "{sa_}");
    assert!(
        sb["remote"]
            .as_str()
            .is_some_and(|r| r.contains("198.18.0.2:")),
        "{sb}"
    );
}

#[test]
fn both_behind_one_nat_host_candidates_win() {
    if !lab_available() {
        return;
    }
    let mut lab = Lab::new();
    let na = lab.nat("na", "198.18.0.2", "192.0.2", NatKind::Masquerade, false);
    let a = lab.lan_host("ha", &na, "192.0.2.10", "192.0.2.1");
    let c = lab.lan_host("hc", &na, "192.0.2.11", "192.0.2.1");
    lab.broker();
    let (oa, oc) = transfer(&mut lab, &a, &c, "same", 1 << 20);
    assert_eq!(summary(&oa)["pair_type"], "host-host");
    assert_eq!(summary(&oc)["remote"], "host 192.0.2.10:9000");
}

#[test]
fn symmetric_nat_fails_with_a_clear_error() {
    if !lab_available() {
        return;
    }
    for firewall in [false, true] {
        let (mut lab, a, b) = two_nats(NatKind::Masquerade, NatKind::FullyRandom, firewall);
        let args = [
            "punch",
            "--broker",
            BROKER,
            "--code",
            "sym-amber-falcon",
            "--bind",
            "0.0.0.0:9000",
            "--wait",
            "20",
            "--no-data",
        ];
        let ia = lab.spawn(&a, &args, None);
        let ib = lab.spawn(&b, &args, None);
        for i in [ia, ib] {
            let o = lab.wait(i);
            let err = String::from_utf8_lossy(&o.stderr);
            assert_eq!(o.status.code(), Some(3), "{err}");
            assert!(
                err.contains("hole punching failed") && err.contains("relay"),
                "{err}"
            );
            assert!(err.contains("the broker offers none"), "{err}");
        }
    }
}

/// Symmetric (`fully-random`) NATs on both sides, then on one side: the
/// checks cannot get through, the broker started with `--relay` relays,
/// the bytes arrive intact and both sides say the path is relayed.
/// Several runs, with and without the home-router firewall.
#[test]
fn symmetric_nats_on_both_sides_relay_byte_exact() {
    if !lab_available() {
        return;
    }
    let both = NatKind::FullyRandom;
    for (run_no, kind_a, firewall) in [
        (0, both, false),
        (1, both, true),
        (2, both, false),
        (3, NatKind::Masquerade, true),
    ] {
        let (mut lab, a, b) = two_nats_with(kind_a, both, firewall, &["--relay"]);
        let len = if run_no == 0 { 64 << 20 } else { 4 << 20 };
        let (oa, ob) = transfer(&mut lab, &a, &b, &format!("relay{run_no}"), len);
        for o in [&oa, &ob] {
            let s = summary(o);
            assert_eq!(s["path"], "relayed", "firewall {firewall}: {s}");
            assert_eq!(s["pair_type"], "relay", "{s}");
            assert_eq!(s["remote"], format!("relay {BROKER}"), "{s}");
            let err = String::from_utf8_lossy(&o.stderr);
            assert!(
                err.contains("no direct path (hole punching failed"),
                "{err}"
            );
        }
        eprintln!(
            "relayed {} MiB through the lab's NATs ({kind_a:?}, firewall {firewall}): {:.0} Mbit/s",
            len >> 20,
            summary(&ob)["throughput_mbps"].as_f64().unwrap_or(0.0)
        );
    }
}

/// Masquerade on both sides with a relaying broker: on this zero-latency
/// lab the direct checks fail (see the ignored test above), so the
/// transfer must still arrive intact, through the relay. Whichever path
/// is taken, both sides must agree on it.
#[test]
fn endpoint_independent_nats_with_a_relay_always_deliver() {
    if !lab_available() {
        return;
    }
    for (run_no, firewall) in [(0, false), (1, true)] {
        let (mut lab, a, b) = two_nats_with(
            NatKind::Masquerade,
            NatKind::Masquerade,
            firewall,
            &["--relay"],
        );
        let (oa, ob) = transfer(&mut lab, &a, &b, &format!("eimrelay{run_no}"), 4 << 20);
        let (sa_, sb) = (summary(&oa), summary(&ob));
        assert_eq!(sa_["path"], sb["path"], "{sa_}\n{sb}");
        eprintln!(
            "masquerade both sides (firewall {firewall}), relay allowed: {} ({})",
            sa_["path"], sa_["pair_type"]
        );
    }
}

/// `udt send`/`udt recv --broker` from `a` to `b` (files, encrypted by
/// default) with the codes given; returns both outputs and the output
/// directory.
fn files_through_nats(
    lab: &mut Lab,
    (a, b): (&str, &str),
    (send_code, recv_code): (&str, &str),
    name: &str,
) -> (Output, Output, PathBuf, PathBuf) {
    let input = lab.file(&format!("{name}.in"));
    let out = lab.file(&format!("{name}.out.d"));
    std::fs::create_dir_all(&out).expect("output directory");
    write_random(&input, 1 << 20);
    let (input_s, out_s) = (
        input.to_string_lossy().into_owned(),
        out.to_string_lossy().into_owned(),
    );
    let ia = lab.spawn(
        a,
        &["send", &input_s, "--broker", BROKER, "--code", send_code],
        None,
    );
    let ib = lab.spawn(
        b,
        &[
            "recv", "-y", "--out", &out_s, "--broker", BROKER, "--code", recv_code,
        ],
        None,
    );
    let (oa, ob) = (lab.wait(ia), lab.wait(ib));
    (oa, ob, input, out)
}

#[test]
fn files_through_a_nat_are_encrypted_by_default_and_a_wrong_code_fails_fast() {
    if !lab_available() {
        return;
    }
    let (mut lab, a, b) = one_side_behind_masquerade();
    let code = "8-amber-falcon-river";
    let (oa, ob, input, out) = files_through_nats(&mut lab, (&a, &b), (code, code), "right");
    let err = |o: &Output| String::from_utf8_lossy(&o.stderr).into_owned();
    assert!(
        oa.status.success() && ob.status.success(),
        "sender: {}\nreceiver: {}",
        err(&oa),
        err(&ob)
    );
    let name = input.file_name().expect("name");
    assert_eq!(
        std::fs::read(out.join(name)).expect("received"),
        std::fs::read(&input).expect("sent")
    );
    for o in [&oa, &ob] {
        assert!(!err(o).contains("NOT encrypted"), "{}", err(o));
        assert!(err(o).contains("session \"8\""), "{}", err(o));
    }
    // Same nameplate (they meet), one wrong word: both fail, fast, clearly,
    // and nothing is written.
    let t0 = std::time::Instant::now();
    let (oa, ob, _, out) = files_through_nats(
        &mut lab,
        (&a, &b),
        ("9-amber-falcon-river", "9-amber-falcon-rivet"),
        "wrong",
    );
    assert!(!oa.status.success() && !ob.status.success());
    assert!(
        t0.elapsed() < std::time::Duration::from_secs(20),
        "{:?}",
        t0.elapsed()
    );
    let both = format!("{}\n{}", err(&oa), err(&ob));
    assert!(both.contains("wrong code"), "{both}");
    let written = std::fs::read_dir(&out).map(|d| d.count()).unwrap_or(0);
    assert_eq!(written, 0, "something was written for a wrong code");
}
