// UDT4 stream server for the interop tests: listens, accepts --conns
// connections (one thread each) and either receives and checks the pattern
// (--mode recv, the default) or sends --bytes of it (--mode send).
//
// stream_server --bind 127.0.0.1:0 [--mode recv|send] [--bytes N] [--expect N]
//               [--seed S] [--conns K] [--mss M] [--verify 0|1] [--handler-delay-ms MS]
//               [--timeout SECONDS]
//   receiving: [--read-start-ms T] [--read-sleep-us N] [--read-sleep-every K] [--read-chunk B] (a slow reader, common.h ReadPace)
// Prints READY addr=IP:PORT, then ACCEPTED conn=N sock=... peer=... as each
// connection is accepted and one RESULT line per connection. Exits 0 when
// every connection did what was asked.
//
// With --expect, a receiver waits for the sender's close after the last
// expected byte before it closes (see await_close in common.h); elapsed_ms
// then ends at the last expected byte. A sender's elapsed_ms ends when its
// close returns, that is once the peer acknowledged everything.
//
// --handler-delay-ms holds each connection's handler back before it starts,
// as a loaded machine may: a test can then check that nothing the peer
// reports depends on the handler running before the other side closed.

#include <pthread.h>

#include "common.h"

using namespace peer;

namespace {

struct Job {
    UDTSOCKET sock;
    int index;
    // libudt's getsockname/getpeername, asked for in the accept loop: the
    // handler thread can start after the peer already closed, and libudt
    // refuses both on a broken socket.
    std::string sock_name;
    std::string peer_name;
    const Args* args;
    bool ok;
};

pthread_mutex_t print_lock = PTHREAD_MUTEX_INITIALIZER;

void* serve(void* arg) {
    Job* job = (Job*)arg;
    const Args& args = *job->args;
    long long delay_ms = args.num("handler-delay-ms", 0);
    if (delay_ms > 0) usleep((useconds_t)(delay_ms * 1000));
    std::string mode = args.str("mode", "recv");
    bool verify = args.num("verify", 1) != 0;
    uint64_t seed = (uint64_t)args.num("seed", 1);
    Pattern pattern(seed);
    Fnv fnv;
    double start = now_ms();
    double elapsed = 0;
    long long bytes = 0, mismatch = -1, extra = 0;
    int error = 0, end = 0;
    if (mode == "send") {
        bytes = send_stream(job->sock, pattern, fnv, args.num("bytes", 0), &error, verify);
        job->ok = error == 0;
    } else {
        long long expect = args.num("expect", -1);
        bytes = recv_stream(job->sock, pattern, fnv, expect, &mismatch, &error, verify);
        elapsed = now_ms() - start;
        if (expect >= 0 && error == 0) end = await_close(job->sock, &extra);
        job->ok = mismatch < 0 && extra == 0 && (expect < 0 || bytes == expect);
    }
    std::string perf = perf_text(job->sock);
    // A blocking close lingers until the peer acknowledged everything sent.
    int close_rc = UDT::close(job->sock);
    if (mode == "send") elapsed = now_ms() - start;
    pthread_mutex_lock(&print_lock);
    printf("RESULT role=stream_server conn=%d mode=%s bytes=%lld fnv=%016llx mismatch=%lld err=%d extra=%lld end=%d close=%d sock=%s peer=%s elapsed_ms=%.1f%s\n",
           job->index, mode.c_str(), bytes, (unsigned long long)fnv.value(), mismatch, error, extra, end, close_rc,
           job->sock_name.c_str(), job->peer_name.c_str(), elapsed, perf.c_str());
    fflush(stdout);
    pthread_mutex_unlock(&print_lock);
    return NULL;
}

}  // namespace

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
    int conns = (int)args.num("conns", 1);
    UDTSOCKET listener = make_socket(addr.ss_family, SOCK_STREAM, args);
    if (UDT::bind(listener, (sockaddr*)&addr, addr_len) == UDT::ERROR) fail("bind");
    if (UDT::listen(listener, conns + 8) == UDT::ERROR) fail("listen");
    printf("READY addr=%s\n", sock_name(listener).c_str());
    fflush(stdout);

    std::vector<Job> jobs(conns);
    std::vector<pthread_t> threads(conns);
    for (int i = 0; i < conns; ++i) {
        sockaddr_storage from;
        int from_len = sizeof(from);
        UDTSOCKET s = UDT::accept(listener, (sockaddr*)&from, &from_len);
        if (s == UDT::INVALID_SOCK) fail("accept");
        jobs[i].sock = s;
        jobs[i].index = i;
        jobs[i].sock_name = sock_name(s);
        jobs[i].peer_name = peer_name(s);
        pthread_mutex_lock(&print_lock);
        printf("ACCEPTED conn=%d sock=%s peer=%s\n", i, jobs[i].sock_name.c_str(), jobs[i].peer_name.c_str());
        fflush(stdout);
        pthread_mutex_unlock(&print_lock);
        jobs[i].args = &args;
        jobs[i].ok = false;
        if (pthread_create(&threads[i], NULL, serve, &jobs[i]) != 0) {
            printf("ERROR stage=thread code=0 msg=\"pthread_create\"\n");
            return 2;
        }
    }
    bool ok = true;
    for (int i = 0; i < conns; ++i) {
        pthread_join(threads[i], NULL);
        ok = ok && jobs[i].ok;
    }
    UDT::close(listener);
    return finish(ok);
}
