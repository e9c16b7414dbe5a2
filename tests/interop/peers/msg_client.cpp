// UDT4 message (SOCK_DGRAM) client for the interop tests: connects and sends
// --count messages with the in-order flag of --inorder (--mode send, the
// default), or receives and checks them (--mode recv).
//
// msg_client --connect IP:PORT [--mode send|recv] --count N [--min B] [--max B]
//            [--inorder 0|1] [--ttl MS] [--seed S] [--mss M] [--timeout SECONDS]
//   receiving: [--read-start-ms T] [--read-sleep-us N] [--read-sleep-every K] [--read-chunk B] (a slow reader, common.h ReadPace)
// Prints CONNECTED sock=... peer=..., then RESULT. Exits 0 on success.

#include "common.h"

using namespace peer;

int main(int argc, char** argv) {
    Args args(argc, argv);
    watchdog(args);
    set_read_pace(args);
    UDT::startup();
    sockaddr_storage server;
    int server_len = 0;
    if (!parse_addr(args.str("connect", ""), &server, &server_len)) {
        printf("ERROR stage=args code=0 msg=\"bad --connect\"\n");
        return 64;
    }
    UDTSOCKET u = make_socket(server.ss_family, SOCK_DGRAM, args);
    if (UDT::connect(u, (sockaddr*)&server, server_len) == UDT::ERROR) fail("connect");
    std::string sock = sock_name(u), peer_addr = peer_name(u);
    printf("CONNECTED sock=%s peer=%s\n", sock.c_str(), peer_addr.c_str());
    fflush(stdout);

    std::string mode = args.str("mode", "send");
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
    if (mode == "recv") {
        MessageTally t = recv_messages(u, seed, count, min, max, ttl >= 0);
        detail = tally_text(t);
        ok = t.bad == 0 && t.dups == 0 && (!inorder || t.out_of_order == 0) &&
             (ttl >= 0 ? t.error == 0 : t.distinct == count);
    } else {
        Fnv fnv;
        int error = 0;
        long long sent = send_messages(u, seed, count, min, max, inorder, fnv, &error, ttl);
        char text[128];
        snprintf(text, sizeof(text), " msgs=%lld err=%d fnv=%016llx", sent, error, (unsigned long long)fnv.value());
        detail = text;
        ok = error == 0;
    }
    std::string perf = perf_text(u);
    int close_rc = UDT::close(u);
    printf("RESULT role=msg_client mode=%s inorder=%d%s close=%d sock=%s peer=%s elapsed_ms=%.1f%s\n", mode.c_str(),
           inorder ? 1 : 0, detail.c_str(), close_rc, sock.c_str(), peer_addr.c_str(), now_ms() - start, perf.c_str());
    fflush(stdout);
    return finish(ok);
}
