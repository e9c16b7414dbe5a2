#!/usr/bin/env python3
"""One table from one run: ours against libudt0 (Debian's UDT 4.11) and TCP,
one connection, memory to memory on loopback, MSS 1500 (issue 13).

    benches/table.py [--mib 512] [--runs 5] [--port 47300]

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
import os
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
    args = ap.parse_args()
    build()
    gib = args.mib / 1024
    results = {label: [] for label, _, _ in PAIRS}
    for r in range(args.runs):
        for i, (label, recv, send) in enumerate(PAIRS):
            results[label].append(run_pair(recv, send, args.mib, args.port + i))
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


if __name__ == "__main__":
    main()
