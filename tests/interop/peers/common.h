// Shared helpers of the UDT4 interop peers (tests/interop/peers/*.cpp).
//
// Each peer is a small program linked with Debian's libudt (UDT 4.11). The
// Rust interop tests start it in a fresh process (libudt caches RTT per peer
// IP process-wide, udt4-protocol.md §8.1), read its stdout and parse:
//
//   READY addr=IP:PORT                 a listening peer is ready
//   ACCEPTED conn=N sock=... peer=...  a listening peer accepted connection N;
//                                      its libudt getsockname/getpeername
//   CONNECTED sock=... peer=...        a calling or rendezvous peer is connected
//   RESULT key=value key=value ...     what it sent/received (one per connection)
//   ERROR stage=... code=N msg=...     a UDT call failed (the exit status is non-zero)
//
// Socket names are asked for at once after accept/connect and reported
// again in RESULT: libudt refuses them once the peer has closed, so a test
// that checks them waits for ACCEPTED before it closes its side.
//
// The data pattern and checksum are the ones the Rust side uses
// (tests/interop/harness.rs): byte i of a stream seeded with S is byte
// (i % 8) of mix(S + (i / 8) * GOLDEN), little-endian, where mix is the
// SplitMix64 finaliser; the checksum is FNV-1a 64 over every byte.

#ifndef UDT_INTEROP_COMMON_H
#define UDT_INTEROP_COMMON_H

#include <arpa/inet.h>
#include <netinet/in.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <unistd.h>

#include <map>
#include <string>
#include <vector>

#include <udt/udt.h>

namespace peer {

const uint64_t GOLDEN = 0x9E3779B97F4A7C15ULL;

inline uint64_t mix(uint64_t z) {
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ULL;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBULL;
    return z ^ (z >> 31);
}

// The expected byte stream of a seed, readable from any offset.
class Pattern {
public:
    explicit Pattern(uint64_t seed) : seed_(seed), offset_(0) {}

    // Fills buf with the next len bytes of the stream.
    void fill(char* buf, size_t len) {
        for (size_t i = 0; i < len; ++i) buf[i] = (char)byte_at(offset_ + i);
        offset_ += len;
    }

    // Compares buf with the next len bytes; returns the index of the first
    // difference, or -1, and advances either way.
    long long check(const char* buf, size_t len) {
        long long bad = -1;
        for (size_t i = 0; i < len; ++i) {
            if ((unsigned char)buf[i] != byte_at(offset_ + i)) {
                bad = (long long)i;
                break;
            }
        }
        offset_ += len;
        return bad;
    }

    uint64_t offset() const { return offset_; }

private:
    unsigned char byte_at(uint64_t at) {
        uint64_t word_index = at >> 3;
        if (word_index != cached_index_ || !cached_) {
            cached_word_ = mix(seed_ + word_index * GOLDEN);
            cached_index_ = word_index;
            cached_ = true;
        }
        return (unsigned char)(cached_word_ >> (8 * (at & 7)));
    }

    uint64_t seed_;
    uint64_t offset_;
    uint64_t cached_index_ = 0;
    uint64_t cached_word_ = 0;
    bool cached_ = false;
};

// FNV-1a, 64 bits.
class Fnv {
public:
    Fnv() : h_(0xCBF29CE484222325ULL) {}
    void update(const char* buf, size_t len) {
        for (size_t i = 0; i < len; ++i) {
            h_ ^= (unsigned char)buf[i];
            h_ *= 0x100000001B3ULL;
        }
    }
    uint64_t value() const { return h_; }

private:
    uint64_t h_;
};

// Size of message `index` of a message stream seeded with `seed`:
// between min and max bytes, at least 8 (the index header).
inline int message_size(uint64_t seed, uint64_t index, int min, int max) {
    if (min < 8) min = 8;
    if (max < min) max = min;
    uint64_t span = (uint64_t)(max - min) + 1;
    return min + (int)(mix(seed ^ (index * GOLDEN + 1)) % span);
}

// Content seed of message `index`: each message is its own pattern stream.
inline uint64_t message_seed(uint64_t seed, uint64_t index) { return mix(seed + index + 0x1234); }

inline double now_ms() {
    struct timeval tv;
    gettimeofday(&tv, NULL);
    return tv.tv_sec * 1000.0 + tv.tv_usec / 1000.0;
}

// Command line as --key value pairs (and bare --flag = "1").
class Args {
public:
    Args(int argc, char** argv) {
        for (int i = 1; i < argc; ++i) {
            std::string k = argv[i];
            if (k.compare(0, 2, "--") != 0) {
                fprintf(stderr, "unexpected argument %s\n", argv[i]);
                exit(64);
            }
            k = k.substr(2);
            if (i + 1 < argc && strncmp(argv[i + 1], "--", 2) != 0) {
                values_[k] = argv[++i];
            } else {
                values_[k] = "1";
            }
        }
    }
    std::string str(const char* key, const char* fallback) const {
        std::map<std::string, std::string>::const_iterator it = values_.find(key);
        return it == values_.end() ? std::string(fallback) : it->second;
    }
    long long num(const char* key, long long fallback) const {
        std::map<std::string, std::string>::const_iterator it = values_.find(key);
        return it == values_.end() ? fallback : strtoll(it->second.c_str(), NULL, 0);
    }
    bool has(const char* key) const { return values_.count(key) != 0; }

private:
    std::map<std::string, std::string> values_;
};

// Parses "IPv4:port" or "[IPv6]:port".
inline bool parse_addr(const std::string& text, sockaddr_storage* out, int* len) {
    memset(out, 0, sizeof(*out));
    if (!text.empty() && text[0] == '[') {
        size_t close = text.find(']');
        if (close == std::string::npos || close + 1 >= text.size() || text[close + 1] != ':') return false;
        sockaddr_in6* a = (sockaddr_in6*)out;
        a->sin6_family = AF_INET6;
        a->sin6_port = htons((uint16_t)atoi(text.c_str() + close + 2));
        if (inet_pton(AF_INET6, text.substr(1, close - 1).c_str(), &a->sin6_addr) != 1) return false;
        *len = sizeof(sockaddr_in6);
        return true;
    }
    size_t colon = text.rfind(':');
    if (colon == std::string::npos) return false;
    sockaddr_in* a = (sockaddr_in*)out;
    a->sin_family = AF_INET;
    a->sin_port = htons((uint16_t)atoi(text.c_str() + colon + 1));
    if (inet_pton(AF_INET, text.substr(0, colon).c_str(), &a->sin_addr) != 1) return false;
    *len = sizeof(sockaddr_in);
    return true;
}

inline std::string format_addr(const sockaddr* sa) {
    char ip[INET6_ADDRSTRLEN] = "?";
    char out[INET6_ADDRSTRLEN + 16];
    if (sa->sa_family == AF_INET) {
        const sockaddr_in* a = (const sockaddr_in*)sa;
        inet_ntop(AF_INET, &a->sin_addr, ip, sizeof(ip));
        snprintf(out, sizeof(out), "%s:%u", ip, ntohs(a->sin_port));
    } else if (sa->sa_family == AF_INET6) {
        const sockaddr_in6* a = (const sockaddr_in6*)sa;
        inet_ntop(AF_INET6, &a->sin6_addr, ip, sizeof(ip));
        snprintf(out, sizeof(out), "[%s]:%u", ip, ntohs(a->sin6_port));
    } else {
        snprintf(out, sizeof(out), "family%d", sa->sa_family);
    }
    return out;
}

inline std::string sock_name(UDTSOCKET u) {
    sockaddr_storage ss;
    int len = sizeof(ss);
    if (UDT::getsockname(u, (sockaddr*)&ss, &len) == UDT::ERROR) return "error";
    return format_addr((sockaddr*)&ss);
}

inline std::string peer_name(UDTSOCKET u) {
    sockaddr_storage ss;
    int len = sizeof(ss);
    if (UDT::getpeername(u, (sockaddr*)&ss, &len) == UDT::ERROR) return "error";
    return format_addr((sockaddr*)&ss);
}

// Reports the last UDT error of `stage` and exits non-zero.
inline void fail(const char* stage) {
    UDT::ERRORINFO& e = UDT::getlasterror();
    printf("ERROR stage=%s code=%d msg=\"%s\"\n", stage, e.getErrorCode(), e.getErrorMessage());
    fflush(stdout);
    exit(2);
}

// Bounds the whole process: SIGALRM's default action terminates it.
inline void watchdog(const Args& args) { alarm((unsigned)args.num("timeout", 600)); }

// Creates a UDT socket of `type` (SOCK_STREAM or SOCK_DGRAM) for `family`,
// with the MSS asked on the command line (default 1500, as ours).
inline UDTSOCKET make_socket(int family, int type, const Args& args) {
    UDTSOCKET u = UDT::socket(family, type, 0);
    if (u == UDT::INVALID_SOCK) fail("socket");
    int mss = (int)args.num("mss", 1500);
    if (UDT::setsockopt(u, 0, UDT_MSS, &mss, sizeof(mss)) == UDT::ERROR) fail("setsockopt_mss");
    if (args.has("maxbw")) {
        int64_t bw = args.num("maxbw", -1);
        if (UDT::setsockopt(u, 0, UDT_MAXBW, &bw, sizeof(bw)) == UDT::ERROR) fail("setsockopt_maxbw");
    }
    return u;
}

// Loss and retransmission counters of a connection, as " key=value" text.
inline std::string perf_text(UDTSOCKET u) {
    UDT::TRACEINFO perf;
    if (UDT::perfmon(u, &perf, false) == UDT::ERROR) return " perf=none";
    char out[256];
    snprintf(out, sizeof(out),
             " sent_pkts=%lld recv_pkts=%lld retrans=%d snd_loss=%d rcv_loss=%d naks_recv=%d naks_sent=%d rtt_ms=%.2f",
             (long long)perf.pktSentTotal, (long long)perf.pktRecvTotal, perf.pktRetransTotal,
             perf.pktSndLossTotal, perf.pktRcvLossTotal, perf.pktRecvNAKTotal, perf.pktSentNAKTotal, perf.msRTT);
    return out;
}

// Ends the process after the result was printed. UDT::cleanup() is skipped
// on purpose: every connection was already closed (with its linger) before
// the RESULT line, and libudt's cleanup was seen to hang for over 10 s in
// its garbage-collector join after a broken connection.
inline int finish(bool ok) {
    fflush(stdout);
    _exit(ok ? 0 : 1);
}

// The UDT error code of the last failure (0 when none).
inline int last_code() { return UDT::getlasterror().getErrorCode(); }

// How a receiving peer reads, to play a slow or absent application reader:
//   --read-start-ms T   wait T ms after the connection is up before the
//                       first read (longer than the sender's linger: a
//                       reader that never reads in time);
//   --read-sleep-us N   sleep N us after every K-th read (a lagging reader),
//   --read-sleep-every K  K = 1 by default;
//   --read-chunk B      read at most B bytes per stream recv().
// Defaults: read at once, as fast as possible, 64 KiB at a time.
struct ReadPace {
    long long start_ms = 0;
    long long sleep_us = 0;
    long long sleep_every = 1;
    long long reads = 0;
    int chunk = 1 << 16;
};

inline ReadPace& read_pace() {
    static ReadPace pace;
    return pace;
}

inline void set_read_pace(const Args& args) {
    ReadPace& p = read_pace();
    p.start_ms = args.num("read-start-ms", 0);
    p.sleep_us = args.num("read-sleep-us", 0);
    p.sleep_every = args.num("read-sleep-every", 1);
    if (p.sleep_every < 1) p.sleep_every = 1;
    long long chunk = args.num("read-chunk", 1 << 16);
    p.chunk = chunk < 1 ? 1 : (chunk > (1 << 16) ? (1 << 16) : (int)chunk);
}

// Before the first read.
inline void pace_start() {
    if (read_pace().start_ms > 0) usleep((useconds_t)(read_pace().start_ms * 1000));
}

// After each read.
inline void pace_read() {
    ReadPace& p = read_pace();
    if (p.sleep_us > 0 && ++p.reads % p.sleep_every == 0) usleep((useconds_t)p.sleep_us);
}

// Sends `total` pattern bytes on a stream socket (total < 0: until an error
// or until the process is killed). Returns the bytes sent; *error receives
// the UDT error code (0 if all was sent). With verify false (benchmarks)
// the same buffer is sent over and over and no checksum is computed.
inline long long send_stream(UDTSOCKET u, Pattern& pattern, Fnv& fnv, long long total, int* error,
                             bool verify = true) {
    std::vector<char> storage(1 << 16);
    char* buf = &storage[0];
    const int size = (int)storage.size();
    long long sent = 0;
    *error = 0;
    if (!verify) pattern.fill(buf, size);
    while (total < 0 || sent < total) {
        int chunk = size;
        if (total >= 0 && total - sent < chunk) chunk = (int)(total - sent);
        if (verify) {
            pattern.fill(buf, chunk);
            fnv.update(buf, chunk);
        }
        int off = 0;
        while (off < chunk) {
            int n = UDT::send(u, buf + off, chunk - off, 0);
            if (n == UDT::ERROR) {
                *error = last_code();
                return sent + off;
            }
            off += n;
        }
        sent += chunk;
    }
    return sent;
}

// Receives a stream until `expect` bytes (expect < 0: until the connection
// ends), checking the pattern unless verify is false (benchmarks). *mismatch
// gets the first bad offset or -1, *error the UDT error code that ended it
// (0 if `expect` was reached).
inline long long recv_stream(UDTSOCKET u, Pattern& pattern, Fnv& fnv, long long expect, long long* mismatch,
                             int* error, bool verify = true) {
    std::vector<char> storage(1 << 16);
    char* buf = &storage[0];
    const int size = (int)storage.size();
    long long got = 0;
    *mismatch = -1;
    *error = 0;
    pace_start();
    while (expect < 0 || got < expect) {
        int want = size < read_pace().chunk ? size : read_pace().chunk;
        if (expect >= 0 && expect - got < want) want = (int)(expect - got);
        int n = UDT::recv(u, buf, want, 0);
        if (n == UDT::ERROR) {
            *error = last_code();
            break;
        }
        if (verify) {
            fnv.update(buf, n);
            long long bad = pattern.check(buf, n);
            if (bad >= 0 && *mismatch < 0) *mismatch = got + bad;
        }
        got += n;
        pace_read();
    }
    return got;
}

// Called by a stream receiver once it has every byte it expected: waits for
// the sender's close (recv then fails, ECONNLOST) and only then lets the
// caller close. A receiver that closed at once would race libudt itself:
// its ACK path makes data readable and wakes recv *before* it sends the ACK
// covering that data, so the receiver's shutdown can leave first and the
// sender sees its last bytes unacknowledged at the close (a reset). Returns
// the UDT error code that ended the connection; *extra gets the bytes that
// arrived beyond the expected ones (they should be none).
inline int await_close(UDTSOCKET u, long long* extra) {
    std::vector<char> storage(1 << 16);
    *extra = 0;
    for (;;) {
        int n = UDT::recv(u, &storage[0], (int)storage.size(), 0);
        if (n == UDT::ERROR) return last_code();
        *extra += n;
    }
}

// Tally of a received message stream.
struct MessageTally {
    long long msgs = 0;        // messages received
    long long bytes = 0;       // their bytes
    long long bad = 0;         // wrong size, content or index
    long long dups = 0;        // an index seen twice
    long long out_of_order = 0;  // an index that is not the previous one + 1
    long long distinct = 0;    // different indices seen
    int error = 0;             // the UDT error that ended reception (0: count reached)
    Fnv fnv;                   // over every message, in arrival order
};

// Sends `count` messages (see message_size/message_seed) with
// sendmsg(ttl, inorder). With ttl >= 0 the last message is sent reliably
// (ttl -1) and in order, so that a receiver knows when everything before it
// was either delivered or dropped. Returns the number sent; *error gets the
// UDT error code.
inline long long send_messages(UDTSOCKET u, uint64_t seed, long long count, int min, int max, bool inorder,
                               Fnv& fnv, int* error, int ttl = -1) {
    std::vector<char> buf((size_t)(max < 8 ? 8 : max) + 8);
    *error = 0;
    for (long long i = 0; i < count; ++i) {
        int size = message_size(seed, (uint64_t)i, min, max);
        uint64_t index = (uint64_t)i;
        for (int b = 0; b < 8; ++b) buf[b] = (char)(index >> (8 * b));
        Pattern content(message_seed(seed, index));
        content.fill(&buf[8], (size_t)size - 8);
        fnv.update(&buf[0], (size_t)size);
        bool last = ttl >= 0 && i == count - 1;
        int n = UDT::sendmsg(u, &buf[0], size, last ? -1 : ttl, last ? true : inorder);
        if (n == UDT::ERROR) {
            *error = last_code();
            return i;
        }
        if (n != size) {
            printf("ERROR stage=sendmsg code=0 msg=\"sent %d of %d bytes\"\n", n, size);
            fflush(stdout);
            *error = -1;
            return i;
        }
    }
    return count;
}

// Receives messages until `count` arrived (or, with until_last, until the
// last index arrived; with until_end, until the connection ends) or the
// connection ends, checking each one's size and content against its index.
inline MessageTally recv_messages(UDTSOCKET u, uint64_t seed, long long count, int min, int max,
                                  bool until_last = false, bool until_end = false) {
    MessageTally t;
    std::vector<char> buf((size_t)(max < 8 ? 8 : max) + 64);
    std::vector<bool> seen((size_t)(count > 0 ? count : 0), false);
    long long last = -1;
    pace_start();
    while (until_end || t.msgs < count) {
        int n = UDT::recvmsg(u, &buf[0], (int)buf.size());
        if (n == UDT::ERROR) {
            t.error = last_code();
            break;
        }
        pace_read();
        t.msgs++;
        t.bytes += n;
        t.fnv.update(&buf[0], (size_t)n);
        if (n < 8) {
            t.bad++;
            continue;
        }
        uint64_t index = 0;
        for (int b = 0; b < 8; ++b) index |= (uint64_t)(unsigned char)buf[b] << (8 * b);
        if (index >= (uint64_t)count || n != message_size(seed, index, min, max)) {
            t.bad++;
            continue;
        }
        Pattern content(message_seed(seed, index));
        if (content.check(&buf[8], (size_t)n - 8) >= 0) t.bad++;
        if (seen[index]) {
            t.dups++;
        } else {
            seen[index] = true;
            t.distinct++;
        }
        if ((long long)index != last + 1) t.out_of_order++;
        last = (long long)index;
        if (until_last && (long long)index == count - 1) break;
    }
    return t;
}

inline std::string tally_text(const MessageTally& t) {
    char out[320];
    snprintf(out, sizeof(out), " msgs=%lld bytes=%lld bad=%lld dups=%lld out_of_order=%lld distinct=%lld err=%d fnv=%016llx",
             t.msgs, t.bytes, t.bad, t.dups, t.out_of_order, t.distinct, t.error, (unsigned long long)t.fnv.value());
    return out;
}

}  // namespace peer

#endif
