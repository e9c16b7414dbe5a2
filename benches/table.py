#!/usr/bin/env python3
"""One table from one run: ours against libudt0 (Debian's UDT 4.11) and TCP,
one connection, memory to memory on loopback, MSS 1500 (issue 13).

    benches/table.py [--mib 512] [--runs 5] [--port 47300] [--many]

With `--many`, a second table follows from the same rounds: the scenarios
of many connections on one port (`benches/mux_sockets.rs`, both ends in one
process, `Poller`-driven as a server would be, each scenario its own process):
one connection, a thousand (2 MiB each over ten client endpoints) with their
aggregate against the one, Jain's index and peak RSS, eight connections
through one and through two sockets on the port (the second against the
first), and the CPU of a thousand idle connections.

Every pair below runs once per round, the rounds repeat `--runs` times, so
pairs alternate and share the machine's noise. Each transfer is one call of
`benches/pair.sh`, which times the receiver and the sender apart with
/usr/bin/time. Printed: the median throughput (the receiver's wall time,
which spans the whole transfer), the median of the per-round ratio against
libudt0 <-> libudt0, CPU-seconds per GiB of each side and its per-round
ratio against libudt0's, and peak RSS.

It builds what it needs: `target/release/udt` (cargo) and the UDT4 peers of
the interop suite (g++ against libudt-dev) in `target/udt4-peers`.
"""

import argparse
import json
import os
import re
import statistics
import subprocess
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
UDT = os.path.join(ROOT, "target", "release", "udt")
PEERS = os.path.join(ROOT, "target", "udt4-peers")

# (label, receiver spec, sender spec); the first is the baseline.
PAIRS = [
    ("libudt0 -> libudt0", "udt4={peers}", "udt4={peers}"),
    ("ours -> ours", "ours={udt}", "ours={udt}"),
    ("ours -> libudt0", "udt4={peers}", "ours={udt}"),
    ("libudt0 -> ours", "ours={udt}", "udt4={peers}"),
    ("TCP (udt --transport tcp)", "tcp={udt}", "tcp={udt}"),
]


def build():
    subprocess.run(
        ["cargo", "build", "--release", "-q", "-p", "udt-cli"], cwd=ROOT, check=True
    )
    os.makedirs(PEERS, exist_ok=True)
    for peer in ("stream_server", "stream_client"):
        src = os.path.join(ROOT, "tests", "interop", "peers", peer + ".cpp")
        out = os.path.join(PEERS, peer)
        if not os.path.exists(out) or os.path.getmtime(out) < os.path.getmtime(src):
            subprocess.run(
                ["g++", "-O2", "-o", out, src, "-ludt", "-lpthread"], check=True
            )


def mux_sockets_binary():
    """Builds the `mux_sockets` bench and returns its executable."""
    out = subprocess.run(
        ["cargo", "bench", "--bench", "mux_sockets", "--no-run", "--message-format=json", "-q"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=True,
    )
    for line in out.stdout.splitlines():
        try:
            msg = json.loads(line)
        except ValueError:
            continue
        if msg.get("executable") and msg.get("target", {}).get("name") == "mux_sockets":
            return msg["executable"]
    sys.exit("cargo did not name the mux_sockets bench executable")


# (label, environment, the row its aggregate is compared with) of the
# many-connection scenarios, each its own process once per round (a case
# that ran second in one process would find the first's memory already
# faulted in).
ONE = "1 connection, 2 GiB"


def thousand(clients, peers, extra=None):
    """The 1000 x 2 MiB scenario from `peers` client endpoints."""
    env = {"UDT_BENCH_CONNS": "1000", "UDT_BENCH_PEERS": str(peers), "UDT_BENCH_MIB": "2"}
    env.update(extra or {})
    return (f"1000 connections x 2 MiB, {clients}", env, ONE)


MANY = [
    (ONE, {"UDT_BENCH_CONNS": "1", "UDT_BENCH_MIB": "2048"}, None),
    # The clients are load generators sharing the two cores with the
    # server: one client endpoint (two threads) as the one-connection row
    # has, and ten (twenty threads) as earlier sessions measured.
    thousand("1 client endpoint", 1),
    thousand("1 client endpoint with 2 sockets", 1, {"UDT_BENCH_CLIENT_SOCKETS": "2"}),
    thousand("2 client endpoints", 2),
    thousand("10 client endpoints", 10),
    ("8 connections x 64 MiB, 1 socket", {"UDT_BENCH_CONNS": "8", "UDT_BENCH_MIB": "64"}, None),
    (
        "8 connections x 64 MiB, 2 sockets",
        {"UDT_BENCH_CONNS": "8", "UDT_BENCH_MIB": "64", "UDT_BENCH_SOCKETS": "2"},
        "8 connections x 64 MiB, 1 socket",
    ),
    (
        "1000 connections idle 5 s",
        {"UDT_BENCH_CONNS": "1000", "UDT_BENCH_PEERS": "10", "UDT_BENCH_MIB": "0", "UDT_BENCH_IDLE": "5"},
        None,
    ),
]

CASE_LINE = re.compile(
    r"sockets (\d+) offload \S+\s+conns\s+(\d+):\s+([\d.]+) MB/s aggregate, ([\d.]+) CPU-s/GiB.*Jain ([\d.]+)"
)
PEAK = re.compile(r"peak ([\d.]+) MB while sending")
IDLE = re.compile(r"idle: .*: ([\d.]+) % of one core")


def run_many(binary, env):
    """One `mux_sockets` run; returns its case lines, peak RSS and idle CPU."""
    out = subprocess.run(
        [binary],
        env={**os.environ, "UDT_BENCH_DRIVER": "poll", "UDT_BENCH_SOCKETS": "1", **env},
        capture_output=True,
        text=True,
        timeout=600,
    )
    if out.returncode != 0:
        sys.exit(f"mux_sockets {env} failed ({out.returncode}):\n{out.stdout}{out.stderr}")
    cases = [
        {"sockets": int(m[1]), "conns": int(m[2]), "mbs": float(m[3]), "cpu": float(m[4]), "jain": float(m[5])}
        for m in CASE_LINE.finditer(out.stdout)
    ]
    peaks = [float(m[1]) for m in PEAK.finditer(out.stdout)]
    idle = [float(m[1]) for m in IDLE.finditer(out.stdout)]
    return {"cases": cases, "peaks": peaks, "idle": idle[0] if idle else None}


def print_many(many, runs):
    med = statistics.median
    print(f"\nMany connections on one port ({runs} rounds, both ends in one process, Poller-driven)\n")
    print("| scenario | MB/s | aggregate / compared row | CPU-s/GiB both ends | Jain | peak RSS MB |")
    print("|---|---:|---:|---:|---:|---:|")
    first = lambda label: [r["cases"][0] if r["cases"] else None for r in many[label]]
    for label, _, base in MANY:
        rows = many[label]
        if rows and rows[0]["idle"] is not None:
            print(f"| {label}: CPU of both ends | {med(r['idle'] for r in rows):.2f} % of a core | | | | |")
            continue
        cases = [c for c in first(label) if c]
        if not cases:
            continue
        # Pair by pair (round by round), as the one-connection table does.
        ratio = "–"
        if base:
            pairs = [(c, b) for c, b in zip(first(label), first(base)) if c and b]
            ratio = f"{med(c['mbs'] / b['mbs'] for c, b in pairs):.2f} (vs {base})"
        peak = [r["peaks"][0] for r in rows if r["peaks"]]
        print(
            f"| {label} | {med(c['mbs'] for c in cases):.1f} | {ratio} | "
            f"{med(c['cpu'] for c in cases):.2f} | {med(c['jain'] for c in cases):.3f} | "
            f"{med(peak) if peak else float('nan'):.0f} |"
        )


def run_pair(recv, send, mib, port):
    """One transfer; returns {'recv': {...}, 'send': {...}} from pair.sh."""
    spec = lambda s: s.format(peers=PEERS, udt=UDT)
    out = subprocess.run(
        [os.path.join(ROOT, "benches", "pair.sh"), spec(recv), spec(send), str(mib), str(port)],
        capture_output=True,
        text=True,
        timeout=300,
    )
    sides = {}
    for line in (out.stdout + out.stderr).splitlines():
        words = line.split()
        if len(words) >= 3 and words[0] in ("recv", "send") and words[2].startswith("wall="):
            sides[words[0]] = {
                k: float(v) for k, v in (w.split("=", 1) for w in words[2:])
            }
    if out.returncode != 0 or len(sides) != 2:
        sys.exit(f"pair.sh {recv} {send} failed ({out.returncode}):\n{out.stdout}{out.stderr}")
    return sides


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--mib", type=int, default=512)
    ap.add_argument("--runs", type=int, default=5)
    ap.add_argument("--port", type=int, default=47300)
    ap.add_argument("--many", action="store_true", help="also the many-connection table")
    args = ap.parse_args()
    build()
    binary = mux_sockets_binary() if args.many else None
    many = {label: [] for label, _, _ in MANY}
    gib = args.mib / 1024
    results = {label: [] for label, _, _ in PAIRS}
    for r in range(args.runs):
        for i, (label, recv, send) in enumerate(PAIRS):
            results[label].append(run_pair(recv, send, args.mib, args.port + i))
        if binary:
            for label, env, _ in MANY:
                many[label].append(run_many(binary, env))
        print(f"round {r + 1} of {args.runs} done", file=sys.stderr)
    base = results[PAIRS[0][0]]
    load = os.getloadavg()[0]
    print(f"{args.mib} MiB per transfer, {args.runs} rounds, load {load:.1f} at the end\n")
    print(
        "| pair (sender -> receiver) | Gbit/s | throughput / libudt0 | sender CPU-s/GiB "
        "| receiver CPU-s/GiB | CPU / libudt0, send and recv | RSS send / recv MB |"
    )
    print("|---|---:|---:|---:|---:|---:|---:|")
    med = statistics.median
    for label, _, _ in PAIRS:
        rows = results[label]
        gbit = [args.mib * 8 * 1.048576 / 1000 / r["recv"]["wall"] for r in rows]
        ratio = [b["recv"]["wall"] / r["recv"]["wall"] for r, b in zip(rows, base)]
        used = lambda r, side: r[side]["user"] + r[side]["sys"]
        cpu = lambda side: med(used(r, side) / gib for r in rows)
        cpu_ratio = lambda side: med(used(r, side) / used(b, side) for r, b in zip(rows, base))
        rss = lambda side: med(r[side]["maxrss_kb"] for r in rows) / 1000
        print(
            f"| {label} | {med(gbit):.2f} | {med(ratio):.2f} | {cpu('send'):.2f} | "
            f"{cpu('recv'):.2f} | {cpu_ratio('send'):.2f}, {cpu_ratio('recv'):.2f} | "
            f"{rss('send'):.1f} / {rss('recv'):.1f} |"
        )
    if binary:
        print_many(many, args.runs)


if __name__ == "__main__":
    main()
