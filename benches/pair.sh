#!/bin/sh
# One memory-to-memory transfer on loopback between a receiver and a sender,
# each timed on its own with /usr/bin/time; prints one line per side:
#   <side> <kind> wall=<s> user=<s> sys=<s> maxrss_kb=<kB>
# Usage: benches/pair.sh RECEIVER SENDER MIB [PORT]
#   RECEIVER, SENDER: ours=/path/to/udt  (udt listen / udt connect)
#                     udt4=/dir/of/peers (tests/interop/peers built with
#                     g++ -O2 X.cpp -ludt -lpthread: stream_server/client)
#                     tcp=/path/to/udt  (the same over TCP: --transport tcp)
# Traffic stays on 127.0.0.1; the receiver exits at the end of stream, and
# both sides are bounded by `timeout`.
set -eu
recv=$1 send=$2 mib=$3 port=${4:-47000}
bytes=$((mib * 1048576))
fmt='wall=%e user=%U sys=%S maxrss_kb=%M'
limit=120
# Each side's timing goes to its own file and is printed at the end, so the
# two lines never interleave.
out=$(mktemp -d)
trap 'rm -rf "$out"' EXIT

case $recv in
ours=*) timeout $limit /usr/bin/time -o "$out/recv" -f "recv ours $fmt" "${recv#ours=}" --quiet listen "127.0.0.1:$port" >/dev/null &;;
udt4=*) timeout $limit /usr/bin/time -o "$out/recv" -f "recv udt4 $fmt" "${recv#udt4=}/stream_server" --bind "127.0.0.1:$port" --expect "$bytes" --verify 0 >/dev/null &;;
tcp=*) timeout $limit /usr/bin/time -o "$out/recv" -f "recv tcp $fmt" "${recv#tcp=}" --quiet listen --transport tcp "127.0.0.1:$port" >/dev/null &;;
*) echo "unknown receiver $recv" >&2; exit 2;;
esac
rpid=$!
case $recv in
tcp=*)
  # A TCP connect is refused, not retried, until the listener is up.
  tries=0
  until ss -Hltn "sport = :$port" | grep -q .; do
    tries=$((tries + 1))
    [ $tries -lt 100 ] || { echo "the TCP receiver did not start" >&2; exit 1; }
    sleep 0.05
  done;;
esac
# UDT senders retry their connection request until the receiver answers
# (UDT's handshake repeats every 250 ms), so only TCP waits above.
case $send in
ours=*) head -c "$bytes" /dev/zero | timeout $limit /usr/bin/time -o "$out/send" -f "send ours $fmt" "${send#ours=}" --quiet connect "127.0.0.1:$port";;
udt4=*) timeout $limit /usr/bin/time -o "$out/send" -f "send udt4 $fmt" "${send#udt4=}/stream_client" --connect "127.0.0.1:$port" --bytes "$bytes" --verify 0 >/dev/null;;
tcp=*) head -c "$bytes" /dev/zero | timeout $limit /usr/bin/time -o "$out/send" -f "send tcp $fmt" "${send#tcp=}" --quiet connect --transport tcp "127.0.0.1:$port";;
*) echo "unknown sender $send" >&2; exit 2;;
esac
wait $rpid
cat "$out/recv" "$out/send"
