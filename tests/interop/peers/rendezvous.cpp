// UDT4 rendezvous peer for the interop tests: binds --bind, rendezvous-
// connects to --peer, then at the same time sends --bytes of pattern
// --send-seed and receives --expect bytes of pattern --recv-seed (stream), or
// sends and receives --count messages each way (--type msg).
//
// rendezvous --bind IP:PORT --peer IP:PORT [--type stream|msg] [--bytes N]
//            [--expect N] [--send-seed S] [--recv-seed S] [--count N]
//            [--min B] [--max B] [--inorder 0|1] [--mss M] [--timeout SECONDS]
// Prints CONNECTED sock=... peer=..., then RESULT. Exits 0 on success.
//
// A stream peer waits, after its last expected byte, for the other side's
// close before it closes (see await_close in common.h), so the other side
// closes first and this peer's RESULT comes after that close.

#include <pthread.h>

#include "common.h"

using namespace peer;

namespace {

struct Sender {
    UDTSOCKET sock;
    const Args* args;
    bool message;
    long long sent;
    int error;
    Fnv fnv;
};

void* send_side(void* arg) {
    Sender* s = (Sender*)arg;
    const Args& args = *s->args;
    uint64_t seed = (uint64_t)args.num("send-seed", 1);
    if (s->message) {
        s->sent = send_messages(s->sock, seed, args.num("count", 0), (int)args.num("min", 8),
                                (int)args.num("max", 4096), args.num("inorder", 0) != 0, s->fnv, &s->error);
    } else {
        Pattern pattern(seed);
        s->sent = send_stream(s->sock, pattern, s->fnv, args.num("bytes", 0), &s->error);
    }
    return NULL;
}

}  // namespace

int main(int argc, char** argv) {
    Args args(argc, argv);
    watchdog(args);
    UDT::startup();
    sockaddr_storage local, remote;
    int local_len = 0, remote_len = 0;
    if (!parse_addr(args.str("bind", ""), &local, &local_len) ||
        !parse_addr(args.str("peer", ""), &remote, &remote_len)) {
        printf("ERROR stage=args code=0 msg=\"need --bind and --peer\"\n");
        return 64;
    }
    bool message = args.str("type", "stream") == "msg";
    UDTSOCKET u = make_socket(local.ss_family, message ? SOCK_DGRAM : SOCK_STREAM, args);
    bool yes = true;
    if (UDT::setsockopt(u, 0, UDT_RENDEZVOUS, &yes, sizeof(yes)) == UDT::ERROR) fail("setsockopt_rendezvous");
    if (UDT::bind(u, (sockaddr*)&local, local_len) == UDT::ERROR) fail("bind");
    double start = now_ms();
    if (UDT::connect(u, (sockaddr*)&remote, remote_len) == UDT::ERROR) fail("connect");
    std::string sock = sock_name(u), peer_addr = peer_name(u);
    printf("CONNECTED sock=%s peer=%s connect_ms=%.1f\n", sock.c_str(), peer_addr.c_str(), now_ms() - start);
    fflush(stdout);

    Sender sender;
    sender.sock = u;
    sender.args = &args;
    sender.message = message;
    sender.sent = 0;
    sender.error = 0;
    pthread_t thread;
    if (pthread_create(&thread, NULL, send_side, &sender) != 0) {
        printf("ERROR stage=thread code=0 msg=\"pthread_create\"\n");
        return 2;
    }
    start = now_ms();
    std::string received;
    bool ok;
    uint64_t recv_seed = (uint64_t)args.num("recv-seed", 2);
    if (message) {
        long long count = args.num("count", 0);
        bool inorder = args.num("inorder", 0) != 0;
        MessageTally t = recv_messages(u, recv_seed, count, (int)args.num("min", 8), (int)args.num("max", 4096));
        received = tally_text(t);
        ok = t.bad == 0 && t.dups == 0 && t.distinct == count && (!inorder || t.out_of_order == 0);
    } else {
        Pattern pattern(recv_seed);
        Fnv fnv;
        long long mismatch = -1, extra = 0;
        int error = 0, end = 0;
        long long expect = args.num("expect", 0);
        long long got = recv_stream(u, pattern, fnv, expect, &mismatch, &error);
        if (error == 0) end = await_close(u, &extra);
        char text[200];
        snprintf(text, sizeof(text), " bytes=%lld fnv=%016llx mismatch=%lld err=%d extra=%lld end=%d", got,
                 (unsigned long long)fnv.value(), mismatch, error, extra, end);
        received = text;
        ok = mismatch < 0 && extra == 0 && got == expect;
    }
    pthread_join(thread, NULL);
    ok = ok && sender.error == 0;
    std::string perf = perf_text(u);
    int close_rc = UDT::close(u);
    printf("RESULT role=rendezvous type=%s%s sent=%lld send_err=%d send_fnv=%016llx close=%d sock=%s peer=%s elapsed_ms=%.1f%s\n",
           message ? "msg" : "stream", received.c_str(), sender.sent, sender.error,
           (unsigned long long)sender.fnv.value(), close_rc, sock.c_str(), peer_addr.c_str(), now_ms() - start,
           perf.c_str());
    fflush(stdout);
    return finish(ok);
}
