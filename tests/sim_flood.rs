//! A handshake flood against a listener while a transfer runs (issue 10):
//! 200,000 connection requests from spoofed sources, in the simulator. The
//! transfer stays byte-exact, the flood leaves no state and no memory
//! behind, and a new legitimate caller still connects in the middle of it.
//!
//! This binary holds one test only, so the counting allocator sees nothing
//! else. The figures (flood rate through the endpoint, memory before and
//! after) are printed with `--nocapture`.

mod common;

use std::alloc::{GlobalAlloc, Layout, System};
use std::net::SocketAddr;
use std::sync::atomic::{AtomicI64, Ordering};
use std::time::Duration;

use common::{check_pattern, fill_pattern, init_logs, link, stream_bytes, Pair};
use udt_core::packet::{Control, ControlPacket, Handshake, Packet, PeerIp, ReqType};
use udt_core::rng::Rng;
use udt_core::sim::{seed_from_env_or, Endpoint as SimEndpoint, Loss, UdtNode};
use udt_core::{Config, ReadError, SeqNumber, SocketId};

struct Counting;

/// Bytes currently allocated by the whole test process.
static LIVE: AtomicI64 = AtomicI64::new(0);

// SAFETY: defers every call to the system allocator unchanged; it only
// keeps a running total of live bytes.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        LIVE.fetch_add(layout.size() as i64, Ordering::Relaxed);
        // SAFETY: same contract as ours.
        unsafe { System.alloc(layout) }
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        LIVE.fetch_sub(layout.size() as i64, Ordering::Relaxed);
        // SAFETY: same contract as ours.
        unsafe { System.dealloc(ptr, layout) }
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        LIVE.fetch_add(new_size as i64 - layout.size() as i64, Ordering::Relaxed);
        // SAFETY: same contract as ours.
        unsafe { System.realloc(ptr, layout, new_size) }
    }
}

#[global_allocator]
static GLOBAL: Counting = Counting;

const FLOOD: u64 = 200_000;

/// One spoofed request: mostly first requests (each earns a cookie reply
/// to the spoofed address), then second requests with guessed cookies,
/// rendezvous requests and junk.
fn spoofed(rng: &mut Rng, out: &mut Vec<u8>) -> SocketAddr {
    let from = SocketAddr::from((rng.next_u32().to_be_bytes(), 1024 + rng.below(60000) as u16));
    let req_type = match rng.below(10) {
        0..=5 => ReqType::Caller,
        6..=8 => ReqType::Response,
        _ => ReqType::Rendezvous,
    };
    Packet::Control(ControlPacket {
        timestamp: 0,
        dest: SocketId::HANDSHAKE,
        control: Control::Handshake(Handshake {
            version: 4,
            socket_type: 1,
            isn: SeqNumber::new(rng.next_u32()),
            mss: 1500,
            flow_window: 8192,
            req_type,
            socket_id: SocketId((rng.next_u32() & SocketId::MAX).max(1)),
            cookie: rng.next_u32(),
            peer_ip: PeerIp::from_addr(from.ip()),
        }),
    })
    .encode(out);
    from
}

#[test]
#[allow(clippy::disallowed_methods)] // wall-clock time for the flood rate figure
fn two_hundred_thousand_spoofed_requests_during_a_transfer() {
    init_logs();
    let seed = seed_from_env_or(0xF100D);
    let mut rng = Rng::new(seed);
    let l = link(100, Duration::from_millis(5), Loss::None);
    let mut p = Pair::new(seed, l.clone(), l.clone(), Config::default());
    let (a, b) = p.connect();
    // A third host that connects while the flood runs.
    let c_addr: SocketAddr = "192.0.2.77:9000".parse().expect("literal");
    let c = p
        .sim
        .add_node(c_addr, UdtNode::new(c_addr, Config::default(), seed ^ 0xC));
    p.sim.link(c, p.b, l.clone(), l);
    // Warm-up: buffers and pools reach their working size, and C has one
    // connection already (so what a connection costs is not counted).
    stream_bytes(
        &mut p.sim,
        (p.a, a),
        (p.b, b),
        16 << 20,
        Duration::from_secs(60),
    );
    let now = p.sim.now();
    let first = p.sim.node_mut(c).connect(now, p.b_addr);
    p.sim.poke(c);
    p.sim
        .run_until(
            |sim| sim.node(c).is_connected(first),
            Duration::from_secs(10),
        )
        .expect("C's first connection");
    let live_before = LIVE.load(Ordering::Relaxed);
    let counters_before = p.sim.node_mut(p.b).endpoint().counters();

    let total: u64 = 16 << 20;
    let (mut written, mut read, mut sent) = (0u64, 0u64, 0u64);
    let stream = u64::from(a.0) ^ 0xF;
    let mut chunk = vec![0u8; 64 * 1024];
    let mut rbuf = vec![0u8; 64 * 1024];
    let mut req = Vec::new();
    let mut c_id = None;
    let mut flood_time = Duration::ZERO;
    let start = p.sim.now();
    while read < total || sent < FLOOD {
        assert!(
            p.sim.now() - start < Duration::from_secs(120),
            "seed={seed}: stuck at {read}/{total} bytes, {sent} requests"
        );
        while written < total {
            let n = (total - written).min(chunk.len() as u64) as usize;
            fill_pattern(stream, written, &mut chunk[..n]);
            match p
                .sim
                .node_mut(p.a)
                .with_connection(a, |k| k.write(&chunk[..n]))
            {
                Some(Ok(k)) => written += k as u64,
                _ => break,
            }
        }
        p.sim.poke(p.a);
        loop {
            let r = p
                .sim
                .node_mut(p.b)
                .with_connection(b, |k| k.read(&mut rbuf))
                .expect("B");
            match r {
                Ok(n) if n > 0 => {
                    assert_eq!(check_pattern(stream, read, &rbuf[..n]), None, "seed={seed}");
                    read += n as u64;
                }
                Err(ReadError::WouldBlock) => break,
                other => panic!("seed={seed}: transfer failed at {read}: {other:?}"),
            }
        }
        p.sim.poke(p.b);
        // 2,000 spoofed requests per millisecond of virtual time: 2 M/s.
        let now = p.sim.now();
        let t0 = std::time::Instant::now();
        for _ in 0..2000 {
            if sent == FLOOD {
                break;
            }
            let from = spoofed(&mut rng, &mut req);
            p.sim.node_mut(p.b).handle_datagram(now, from, &req);
            sent += 1;
        }
        flood_time += t0.elapsed();
        p.sim.poke(p.b);
        if sent >= FLOOD / 2 && c_id.is_none() {
            c_id = Some(p.sim.node_mut(c).connect(now, p.b_addr));
            p.sim.poke(c);
        }
        p.sim.run_for(Duration::from_millis(1));
    }
    // The new caller got in during the flood.
    let c_id = c_id.expect("C connected");
    p.sim
        .run_until(
            |sim| sim.node(c).is_connected(c_id),
            Duration::from_secs(10),
        )
        .unwrap_or_else(|e| panic!("seed={seed}: a legitimate caller failed: {e}"));
    let counters = p.sim.node_mut(p.b).endpoint().counters();
    let dropped = counters.unknown_destination - counters_before.unknown_destination;
    // Nothing of the flood stays: A's connection and C's two.
    assert_eq!(p.sim.node_mut(p.b).endpoint().live(), 3, "seed={seed}");
    assert!(dropped > FLOOD / 3, "seed={seed}: {counters:?}");
    // The cookie replies went to the spoofed addresses, one per request.
    assert!(p.sim.unroutable() >= FLOOD / 2, "{}", p.sim.unroutable());
    let live_after = LIVE.load(Ordering::Relaxed);
    let grew = live_after - live_before;
    eprintln!(
        "flood: {FLOOD} requests in {flood_time:?} of endpoint time ({:.0} requests/s), \
         live heap {live_before} -> {live_after} bytes ({grew:+}), {read} bytes verified",
        FLOOD as f64 / flood_time.as_secs_f64()
    );
    // One more (idle) connection from C and the node's reply queue at its
    // peak are all that may remain.
    assert!(
        grew < 1 << 20,
        "seed={seed}: the heap grew by {grew} bytes during the flood"
    );
}
