//! Bounded memory (issue 10): 1000 connections open, carry data and close
//! on loopback; afterwards the live heap and the resident set return near
//! where they were after the first 100.
//!
//! This binary holds one test only, so the counting allocator sees nothing
//! else. Figures are printed with `--nocapture`.

use std::alloc::{GlobalAlloc, Layout, System};
use std::io::{Read, Write};
use std::sync::atomic::{AtomicI64, Ordering};
use std::thread;
use std::time::{Duration, Instant};

use udt::{Config, Endpoint, EndpointConfig};

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

/// Resident set size in bytes (Linux), 0 elsewhere.
fn rss() -> i64 {
    let Ok(statm) = std::fs::read_to_string("/proc/self/statm") else {
        return 0;
    };
    let pages: i64 = statm
        .split_whitespace()
        .nth(1)
        .and_then(|p| p.parse().ok())
        .unwrap_or(0);
    pages * 4096
}

fn config() -> Config {
    let mut c = Config::default();
    c.linger = Some(Duration::from_secs(5));
    c.peer_idle_timeout = Duration::from_secs(5);
    c
}

/// `count` connections, `parallel` at a time: each sends 256 KiB, which
/// the server checks, then both close.
fn round(server: &Endpoint, client: &Endpoint, listener: &udt::UdtListener, count: usize) {
    const PARALLEL: usize = 50;
    const BYTES: usize = 256 * 1024;
    let addr = server.local_addr();
    for _ in 0..count / PARALLEL {
        let senders: Vec<_> = (0..PARALLEL)
            .map(|i| {
                let mut s = client.connect(addr).expect("connect");
                thread::spawn(move || {
                    let data = vec![i as u8; BYTES];
                    s.write_all(&data).expect("write");
                    s.close().expect("close");
                })
            })
            .collect();
        let readers: Vec<_> = (0..PARALLEL)
            .map(|_| {
                let (mut s, _) = listener
                    .accept_timeout(Duration::from_secs(10))
                    .expect("accept");
                thread::spawn(move || {
                    s.set_read_timeout(Some(Duration::from_secs(20)));
                    let mut got = Vec::with_capacity(BYTES);
                    s.read_to_end(&mut got).expect("read to the end");
                    assert_eq!(got.len(), BYTES);
                    assert!(got.iter().all(|&b| b == got[0]));
                })
            })
            .collect();
        for t in senders.into_iter().chain(readers) {
            t.join().expect("a connection thread panicked");
        }
    }
}

/// Waits (bounded) until neither endpoint holds a connection.
fn wait_empty(server: &Endpoint, client: &Endpoint) {
    let deadline = Instant::now() + Duration::from_secs(30);
    while server.stats().connections + client.stats().connections > 0 {
        assert!(
            Instant::now() < deadline,
            "connections never went away: {} and {}",
            server.stats().connections,
            client.stats().connections
        );
        thread::sleep(Duration::from_millis(20));
    }
}

#[test]
fn a_thousand_connections_leave_the_heap_where_it_was() {
    let server = Endpoint::bind_with("127.0.0.1:0", config(), EndpointConfig::default())
        .expect("bind server");
    let client = Endpoint::bind_with("127.0.0.1:0", config(), EndpointConfig::default())
        .expect("bind client");
    let listener = server.listen(64).expect("listen");
    // Warm-up: pools, heaps, tables and thread stacks reach their size.
    round(&server, &client, &listener, 100);
    wait_empty(&server, &client);
    let (heap0, rss0) = (LIVE.load(Ordering::Relaxed), rss());
    round(&server, &client, &listener, 1000);
    wait_empty(&server, &client);
    // The send threads drop their references to removed connections when
    // they read the removal from their inbox: give them a bounded moment.
    let deadline = Instant::now() + Duration::from_secs(10);
    while LIVE.load(Ordering::Relaxed) - heap0 >= 1 << 20 && Instant::now() < deadline {
        thread::sleep(Duration::from_millis(20));
    }
    let (heap1, rss1) = (LIVE.load(Ordering::Relaxed), rss());
    eprintln!(
        "1000 connections: live heap {heap0} -> {heap1} bytes ({:+}), RSS {rss0} -> {rss1} bytes ({:+})",
        heap1 - heap0,
        rss1 - rss0
    );
    // Each connection would hold about 12 MiB of buffers at its peak (256
    // KiB here): a leak of one per connection would show as megabytes.
    assert!(
        heap1 - heap0 < 1 << 20,
        "the live heap grew by {} bytes",
        heap1 - heap0
    );
    // The allocator may keep freed pages: the resident set is looser.
    assert!(rss1 - rss0 < 64 << 20, "RSS grew by {} bytes", rss1 - rss0);
}
