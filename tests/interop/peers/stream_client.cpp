// UDT4 stream client for the interop tests: connects, then sends --bytes of
// the pattern (--mode send, the default; --bytes -1 sends until killed) or
// receives and checks it (--mode recv).
//
// stream_client --connect IP:PORT [--bind IP:PORT] [--mode send|recv]
//               [--bytes N] [--expect N] [--seed S] [--hold-ms MS] [--mss M] [--verify 0|1]
//               [--timeout SECONDS]
//   receiving: [--read-start-ms T] [--read-sleep-us N] [--read-sleep-every K] [--read-chunk B] (a slow reader, common.h ReadPace)
// Prints CONNECTED sock=... peer=..., then RESULT. Exits 0 on success.
//
// With --expect, a receiver waits for the sender's close after the last
// expected byte before it closes (see await_close in common.h); elapsed_ms
// then ends at the last expected byte. A sender's elapsed_ms ends when its
// close returns, that is once the peer acknowledged everything.

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
    UDTSOCKET u = make_socket(server.ss_family, SOCK_STREAM, args);
    if (args.has("bind")) {
        sockaddr_storage local;
        int local_len = 0;
        if (!parse_addr(args.str("bind", ""), &local, &local_len)) {
            printf("ERROR stage=args code=0 msg=\"bad --bind\"\n");
            return 64;
        }
        if (UDT::bind(u, (sockaddr*)&local, local_len) == UDT::ERROR) fail("bind");
    }
    double start = now_ms();
    if (UDT::connect(u, (sockaddr*)&server, server_len) == UDT::ERROR) fail("connect");
    std::string sock = sock_name(u);
    std::string peer_addr = peer_name(u);
    printf("CONNECTED sock=%s peer=%s connect_ms=%.1f\n", sock.c_str(), peer_addr.c_str(), now_ms() - start);
    fflush(stdout);

    std::string mode = args.str("mode", "send");
    bool verify = args.num("verify", 1) != 0;
    Pattern pattern((uint64_t)args.num("seed", 1));
    Fnv fnv;
    long long bytes = 0, mismatch = -1, extra = 0;
    int error = 0, end = 0;
    double elapsed = 0;
    bool ok;
    start = now_ms();
    if (mode == "recv") {
        long long expect = args.num("expect", -1);
        bytes = recv_stream(u, pattern, fnv, expect, &mismatch, &error, verify);
        elapsed = now_ms() - start;
        if (expect >= 0 && error == 0) end = await_close(u, &extra);
        ok = mismatch < 0 && extra == 0 && (expect < 0 || bytes == expect);
    } else {
        bytes = send_stream(u, pattern, fnv, args.num("bytes", 0), &error, verify);
        ok = error == 0;
    }
    if (args.has("hold-ms")) usleep((useconds_t)(args.num("hold-ms", 0) * 1000));
    std::string perf = perf_text(u);
    int close_rc = UDT::close(u);
    if (mode != "recv") elapsed = now_ms() - start;
    printf("RESULT role=stream_client mode=%s bytes=%lld fnv=%016llx mismatch=%lld err=%d extra=%lld end=%d close=%d sock=%s peer=%s elapsed_ms=%.1f%s\n",
           mode.c_str(), bytes, (unsigned long long)fnv.value(), mismatch, error, extra, end, close_rc, sock.c_str(),
           peer_addr.c_str(), elapsed, perf.c_str());
    fflush(stdout);
    return finish(ok);
}
