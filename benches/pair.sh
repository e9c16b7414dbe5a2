#!/bin/sh
# One memory-to-memory transfer on loopback between a receiver and a sender,
# each timed on its own with /usr/bin/time; prints one line per side:
#   <side> <kind> wall=<s> user=<s> sys=<s> maxrss_kb=<kB>
# Usage: benches/pair.sh RECEIVER SENDER MIB [PORT]
#   RECEIVER, SENDER: ours=/path/to/udt  (udt listen / udt connect)
#                     udt4=/dir/of/peers (tests/interop/peers built with
#                     g++ -O2 X.cpp -ludt -lpthread: stream_server/client)
# Traffic stays on 127.0.0.1; the receiver exits at the end of stream, and
# both sides are bounded by `timeout`.
set -eu
recv=$1 send=$2 mib=$3 port=${4:-47000}
bytes=$((mib * 1048576))
fmt='wall=%e user=%U sys=%S maxrss_kb=%M'
limit=120

case $recv in
ours=*) timeout $limit /usr/bin/time -f "recv ours $fmt" "${recv#ours=}" --quiet listen "127.0.0.1:$port" >/dev/null &;;
udt4=*) timeout $limit /usr/bin/time -f "recv udt4 $fmt" "${recv#udt4=}/stream_server" --bind "127.0.0.1:$port" --expect "$bytes" --verify 0 >/dev/null &;;
*) echo "unknown receiver $recv" >&2; exit 2;;
esac
rpid=$!
# Both senders retry their connection request until the receiver answers
# (UDT's handshake repeats every 250 ms), so no wait is needed here.
case $send in
ours=*) head -c "$bytes" /dev/zero | timeout $limit /usr/bin/time -f "send ours $fmt" "${send#ours=}" --quiet connect "127.0.0.1:$port";;
udt4=*) timeout $limit /usr/bin/time -f "send udt4 $fmt" "${send#udt4=}/stream_client" --connect "127.0.0.1:$port" --bytes "$bytes" --verify 0 >/dev/null;;
*) echo "unknown sender $send" >&2; exit 2;;
esac
wait $rpid
