// UDT4 message (SOCK_DGRAM) server for the interop tests: accepts one
// connection and receives --count messages, checking each message's size and
// content against its index (--mode recv, the default), or sends them
// (--mode send) with the in-order flag of --inorder.
//
// msg_server --bind 127.0.0.1:0 [--mode recv|send] --count N [--min B] [--max B]
//            [--inorder 0|1] [--ttl MS] [--seed S] [--mss M] [--until-end 0|1] [--timeout SECONDS]
//   receiving: [--read-start-ms T] [--read-sleep-us N] [--read-sleep-every K] (a slow reader, common.h ReadPace)
// Prints READY addr=IP:PORT, ACCEPTED conn=0 sock=... peer=..., then RESULT.
// Exits 0 on success.

#include "common.h"

using namespace peer;

int main(int argc, char** argv) {
    Args args(argc, argv);
    watchdog(args);
    set_read_pace(args);
    UDT::startup();
    sockaddr_storage addr;
    int addr_len = 0;
    if (!parse_addr(args.str("bind", "127.0.0.1:0"), &addr, &addr_len)) {
        printf("ERROR stage=args code=0 msg=\"bad --bind\"\n");
        return 64;
    }
    UDTSOCKET listener = make_socket(addr.ss_family, SOCK_DGRAM, args);
    if (UDT::bind(listener, (sockaddr*)&addr, addr_len) == UDT::ERROR) fail("bind");
    if (UDT::listen(listener, 8) == UDT::ERROR) fail("listen");
    printf("READY addr=%s\n", sock_name(listener).c_str());
    fflush(stdout);
    sockaddr_storage from;
    int from_len = sizeof(from);
    UDTSOCKET u = UDT::accept(listener, (sockaddr*)&from, &from_len);
    if (u == UDT::INVALID_SOCK) fail("accept");
    // Asked for at once: libudt refuses them once the peer has closed.
    std::string sock = sock_name(u), peer_addr = peer_name(u);
    printf("ACCEPTED conn=0 sock=%s peer=%s\n", sock.c_str(), peer_addr.c_str());
    fflush(stdout);

    std::string mode = args.str("mode", "recv");
    uint64_t seed = (uint64_t)args.num("seed", 1);
    long long count = args.num("count", 0);
    int min = (int)args.num("min", 8), max = (int)args.num("max", 4096);
    bool inorder = args.num("inorder", 0) != 0;
    // --ttl MS: partial reliability; the last message is reliable and in
    // order, and the receiver stops when it arrives.
    int ttl = (int)args.num("ttl", -1);
    double start = now_ms();
    std::string detail;
    bool ok;
    if (mode == "send") {
        Fnv fnv;
        int error = 0;
        long long sent = send_messages(u, seed, count, min, max, inorder, fnv, &error, ttl);
        char text[128];
        snprintf(text, sizeof(text), " msgs=%lld err=%d fnv=%016llx", sent, error, (unsigned long long)fnv.value());
        detail = text;
        ok = error == 0;
    } else {
        // --until-end 1: keep reading after --count messages until the
        // connection ends (as an application that reads until the sender
        // closes), so the sender's close is what ends reception.
        bool until_end = args.num("until-end", 0) != 0;
        MessageTally t = recv_messages(u, seed, count, min, max, ttl >= 0, until_end);
        detail = tally_text(t);
        ok = t.bad == 0 && t.dups == 0 && (!inorder || t.out_of_order == 0) &&
             (ttl >= 0 ? t.error == 0 : t.distinct == count);
    }
    std::string perf = perf_text(u);
    int close_rc = UDT::close(u);
    printf("RESULT role=msg_server mode=%s inorder=%d%s close=%d sock=%s peer=%s elapsed_ms=%.1f%s\n", mode.c_str(),
           inorder ? 1 : 0, detail.c_str(), close_rc, sock.c_str(), peer_addr.c_str(), now_ms() - start, perf.c_str());
    fflush(stdout);
    UDT::close(listener);
    return finish(ok);
}
