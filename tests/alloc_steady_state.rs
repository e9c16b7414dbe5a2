//! The per-packet path allocates nothing in steady state: a counting global
//! allocator watches a whole simulated transfer (both connections, the
//! simulated network and the test driver) after a warm-up.
//!
//! This binary holds one test only, so no other test's allocations are
//! counted.

mod common;

use std::alloc::{GlobalAlloc, Layout, System};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use common::{link, stream_bytes, Pair};
use udt_core::sim::Loss;
use udt_core::Config;

struct Counting;

static ALLOCATIONS: AtomicU64 = AtomicU64::new(0);

// SAFETY: defers every call to the system allocator unchanged; it only counts.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        ALLOCATIONS.fetch_add(1, Ordering::Relaxed);
        // SAFETY: same contract as ours.
        unsafe { System.alloc(layout) }
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: same contract as ours.
        unsafe { System.dealloc(ptr, layout) }
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        ALLOCATIONS.fetch_add(1, Ordering::Relaxed);
        // SAFETY: same contract as ours.
        unsafe { System.realloc(ptr, layout, new_size) }
    }
}

#[global_allocator]
static GLOBAL: Counting = Counting;

#[test]
fn steady_state_transfer_does_not_allocate_per_packet() {
    for (name, loss) in [("clean", Loss::None), ("1% loss", Loss::Bernoulli(0.01))] {
        let l = link(100, Duration::from_millis(10), loss);
        let mut p = Pair::new(77, l.clone(), l, Config::default());
        let (a, b) = p.connect();
        // Warm-up: buffers, pools, heaps and loss lists reach their working
        // size (under random loss the receive buffer's peak, the packets
        // held behind a hole, keeps rising for a while: after 32 MiB it was
        // still 512 packets short of the measured run's, once BBR sent two
        // packets per pacing slot).
        stream_bytes(
            &mut p.sim,
            (p.a, a),
            (p.b, b),
            64 << 20,
            Duration::from_secs(600),
        );
        let packets_before = p.sim.node(p.a).connection(a).unwrap().stats().packets_sent;
        let before = ALLOCATIONS.load(Ordering::Relaxed);
        stream_bytes(
            &mut p.sim,
            (p.a, a),
            (p.b, b),
            32 << 20,
            Duration::from_secs(600),
        );
        let allocations = ALLOCATIONS.load(Ordering::Relaxed) - before;
        let packets = p.sim.node(p.a).connection(a).unwrap().stats().packets_sent - packets_before;
        eprintln!("{name}: {allocations} allocations for {packets} data packets");
        assert!(
            packets > 20_000,
            "{name}: the measured run moved {packets} packets"
        );
        // The driver allocates its two transfer buffers once per call; the
        // protocol path must add nothing that grows with the packet count.
        assert!(
            allocations <= 16,
            "{name}: {allocations} allocations for {packets} packets in steady state"
        );
    }
}
