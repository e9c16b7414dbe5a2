//! A deterministic network simulator with virtual time.
//!
//! The simulator models only the network: endpoints are anything that
//! implements [`Endpoint`], the same sans-I/O shape as a UDT connection or
//! multiplexer (datagrams in through `handle_datagram`, out through
//! `poll_transmit`, timers through `poll_wakeup`/`handle_timeout`). Links
//! between endpoints delay, reorder, lose (independently or in bursts),
//! duplicate, corrupt, rate-limit and queue datagrams, all from one seed, so
//! a run is reproduced exactly by its seed (style.md §D).
//!
//! Time never passes for real: each [`Sim::step`] jumps to the earliest of
//! the next datagram arrival and every endpoint's wakeup. At one instant the
//! order is fixed: due datagrams are delivered (in send order), then due
//! endpoints get `handle_timeout` (in node order), then every endpoint that
//! was touched is drained through `poll_transmit` into the links.
//!
//! In steady state the simulator itself does not allocate per datagram:
//! datagram buffers come from a free list, in-flight datagrams live in a
//! reused slab and the event heap keeps its capacity.

pub mod harness;
mod histogram;
mod link;
mod loss;
pub mod scenario;
pub mod secure_handshake;
mod udt_node;
mod wakeup;

pub use histogram::DelayHistogram;
pub use link::{LinkConfig, LinkStats, ReadBatching, DEFAULT_DELAY, MAX_DATAGRAM};
pub use loss::Loss;
pub use udt_node::UdtNode;

use std::cmp::Reverse;
use std::collections::{BinaryHeap, HashMap};
use std::fmt;
use std::hash::{BuildHasher, Hasher};
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use link::{Link, Verdict};
use wakeup::WakeupQueue;

/// Something attached to the simulated network: a connection, a
/// multiplexer, or a toy endpoint in a test.
///
/// The simulator calls these methods only with a non-decreasing `now`.
pub trait Endpoint {
    /// A datagram from `from` arrived at `now`.
    fn handle_datagram(&mut self, now: Instant, from: SocketAddr, datagram: &[u8]);
    /// Called when `now >= poll_wakeup()`; at most once per simulator step.
    fn handle_timeout(&mut self, now: Instant);
    /// Writes one datagram into `buf` (empty on entry) and returns its
    /// destination, or `None` when there is nothing to send now. Called in
    /// a loop until `None` whenever the endpoint was touched.
    fn poll_transmit(&mut self, now: Instant, buf: &mut Vec<u8>) -> Option<SocketAddr>;
    /// The earliest time the endpoint wants `handle_timeout` (and a
    /// `poll_transmit` drain), or `None` to wait for a datagram.
    fn poll_wakeup(&self) -> Option<Instant>;
}

/// A node of a [`Sim`], returned by [`Sim::add_node`].
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct NodeId(usize);

impl NodeId {
    /// The node's index, in order of `add_node` calls from 0.
    pub fn index(self) -> usize {
        self.0
    }
}

/// Why [`Sim::run_until`] stopped before its condition held. `Display`
/// names the seed so a failure can be replayed with `UDT_SIM_SEED`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SimError {
    /// The virtual time limit passed.
    TimeLimit {
        /// The simulator's seed.
        seed: u64,
        /// Virtual time since the epoch when it stopped.
        elapsed: Duration,
    },
    /// Nothing can make the condition true.
    Stalled {
        /// The simulator's seed.
        seed: u64,
        /// Virtual time since the epoch when it stopped.
        elapsed: Duration,
        /// What kind of stall.
        reason: StallReason,
    },
}

/// The kind of [`SimError::Stalled`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum StallReason {
    /// No datagram in flight and no endpoint wakeup: nothing will happen.
    NoEvents,
    /// This many consecutive steps ran without virtual time advancing,
    /// usually an endpoint whose wakeup stays in the past.
    NoProgress {
        /// The number of steps at one instant.
        steps: u64,
    },
}

impl fmt::Display for SimError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match *self {
            SimError::TimeLimit { seed, elapsed } => write!(
                f,
                "simulation hit its time limit at {elapsed:?} (seed={seed}, replay with UDT_SIM_SEED={seed})"
            ),
            SimError::Stalled {
                seed,
                elapsed,
                reason: StallReason::NoEvents,
            } => write!(
                f,
                "simulation stalled at {elapsed:?}: no events left (seed={seed}, replay with UDT_SIM_SEED={seed})"
            ),
            SimError::Stalled {
                seed,
                elapsed,
                reason: StallReason::NoProgress { steps },
            } => write!(
                f,
                "simulation stalled at {elapsed:?}: {steps} steps without time advancing \
                 (seed={seed}, replay with UDT_SIM_SEED={seed})"
            ),
        }
    }
}

impl std::error::Error for SimError {}

/// Default of [`Sim::set_stall_steps`]: far more steps at one instant than
/// any sane exchange needs (each step already handles everything due).
pub const DEFAULT_STALL_STEPS: u64 = 100_000;

/// At most this many `poll_transmit` calls per node per step, so an
/// endpoint that never returns `None` cannot hang a step; the rest of its
/// output is drained in the next step at the same instant.
const MAX_DRAIN_PER_STEP: usize = 1 << 20;

/// Initial capacity of a datagram buffer: a full Ethernet-sized UDT packet
/// fits without growing.
const BUFFER_CAPACITY: usize = 2048;

/// A simulated network of endpoints of type `N` joined by links.
///
/// `N` is usually an enum or a single endpoint type, so a test reaches its
/// endpoints through [`Sim::node`]/[`Sim::node_mut`] without downcasts.
pub struct Sim<N: Endpoint> {
    seed: u64,
    epoch: Instant,
    now: Instant,
    nodes: Vec<NodeSlot<N>>,
    by_addr: HashMap<SocketAddr, usize>,
    links: Vec<Link>,
    /// (from node, to node) → index into `links`.
    link_index: HashMap<(usize, usize), usize>,
    /// Datagram arrivals, earliest first: (time, sequence, flight slot).
    events: BinaryHeap<Reverse<(Instant, u64, usize)>>,
    next_seq: u64,
    /// In-flight datagrams, indexed by the slot in `events`.
    flights: Vec<Flight>,
    free_flights: Vec<usize>,
    /// Free list of datagram buffers.
    pool: Vec<Vec<u8>>,
    /// Buffers ever allocated, for the allocation tests.
    buffers_allocated: u64,
    wakeups: WakeupQueue,
    /// Nodes called this step, to drain in this order; a node poked or
    /// borrowed mutably by the test waits here for the next step.
    touched: Vec<usize>,
    same_instant_steps: u64,
    stall_steps: u64,
    unroutable: u64,
}

/// An endpoint and what the simulator knows about it.
struct NodeSlot<N> {
    addr: SocketAddr,
    node: N,
    is_touched: bool,
}

/// A datagram between its send and its arrival.
#[derive(Debug)]
struct Flight {
    buf: Vec<u8>,
    from: SocketAddr,
    link: usize,
}

/// What one internal step did.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Stepped {
    /// Processed events at `now`.
    Processed,
    /// The next event is after the deadline; time moved to the deadline.
    Deadline,
    /// No event at all.
    Idle,
}

impl<N: Endpoint> Sim<N> {
    /// An empty network whose randomness derives from `seed`, with the
    /// epoch (virtual time zero) at the real current time.
    pub fn new(seed: u64) -> Self {
        // The one real clock read: an Instant to count virtual time from.
        // Nothing after this depends on real time.
        #[allow(clippy::disallowed_methods)]
        let epoch = Instant::now();
        Self::with_epoch(seed, epoch)
    }

    /// Like [`Sim::new`] with a given epoch, so several runs can share one.
    pub fn with_epoch(seed: u64, epoch: Instant) -> Self {
        Sim {
            seed,
            epoch,
            now: epoch,
            nodes: Vec::new(),
            by_addr: HashMap::new(),
            links: Vec::new(),
            link_index: HashMap::new(),
            events: BinaryHeap::new(),
            next_seq: 0,
            flights: Vec::new(),
            free_flights: Vec::new(),
            pool: Vec::new(),
            buffers_allocated: 0,
            wakeups: WakeupQueue::default(),
            touched: Vec::new(),
            same_instant_steps: 0,
            stall_steps: DEFAULT_STALL_STEPS,
            unroutable: 0,
        }
    }

    /// The seed this simulator was built with.
    pub fn seed(&self) -> u64 {
        self.seed
    }

    /// The current virtual time.
    pub fn now(&self) -> Instant {
        self.now
    }

    /// Virtual time since the epoch.
    pub fn elapsed(&self) -> Duration {
        self.now - self.epoch
    }

    /// The epoch: virtual time zero.
    pub fn epoch(&self) -> Instant {
        self.epoch
    }

    /// Attaches `node` at `addr`. Its `poll_wakeup` and `poll_transmit`
    /// are consulted at the next step.
    ///
    /// # Panics
    /// If another node already has `addr` (a test setup error).
    pub fn add_node(&mut self, addr: SocketAddr, node: N) -> NodeId {
        let index = self.nodes.len();
        let previous = self.by_addr.insert(addr, index);
        assert!(previous.is_none(), "sim: two nodes at {addr}");
        self.nodes.push(NodeSlot {
            addr,
            node,
            is_touched: false,
        });
        self.wakeups.grow_to(index + 1);
        self.mark_touched(index);
        NodeId(index)
    }

    /// The address of a node.
    ///
    /// # Panics
    /// If `id` is not from this simulator.
    pub fn addr(&self, id: NodeId) -> SocketAddr {
        self.nodes[id.0].addr
    }

    /// The endpoint of a node.
    ///
    /// # Panics
    /// If `id` is not from this simulator.
    pub fn node(&self, id: NodeId) -> &N {
        &self.nodes[id.0].node
    }

    /// The endpoint of a node, mutably. The node is poked (see
    /// [`Sim::poke`]), since whatever the caller changes may change its
    /// wakeup or give it something to send.
    ///
    /// # Panics
    /// If `id` is not from this simulator.
    pub fn node_mut(&mut self, id: NodeId) -> &mut N {
        self.mark_touched(id.0);
        &mut self.nodes[id.0].node
    }

    /// Tells the simulator that a node's wakeup or output may have changed
    /// outside a simulator call (the test wrote data through
    /// [`Sim::node_mut`], which pokes already). The next step re-reads its
    /// wakeup and drains its `poll_transmit` at the current instant.
    ///
    /// # Panics
    /// If `id` is not from this simulator.
    pub fn poke(&mut self, id: NodeId) {
        assert!(id.0 < self.nodes.len(), "sim: unknown {id:?}");
        self.mark_touched(id.0);
    }

    /// Joins two nodes with one link per direction, replacing any link
    /// (and its counters) already between them.
    ///
    /// # Panics
    /// If `a == b` or either id is not from this simulator.
    pub fn link(&mut self, a: NodeId, b: NodeId, a_to_b: LinkConfig, b_to_a: LinkConfig) {
        assert!(a != b, "sim: a node cannot link to itself");
        assert!(
            a.0 < self.nodes.len() && b.0 < self.nodes.len(),
            "sim: unknown node"
        );
        self.set_link(a.0, b.0, a_to_b);
        self.set_link(b.0, a.0, b_to_a);
    }

    fn set_link(&mut self, from: usize, to: usize, config: LinkConfig) {
        // Each direction's random streams depend only on the seed and the
        // two node indices: traffic one way never shifts the other way's
        // losses, and neither depends on the order links were made in.
        let direction = ((from as u64) << 32) | to as u64;
        let seed = self.seed ^ splitmix(direction.wrapping_add(0x5157_u64 << 48));
        let link = Link::new(config, to, seed);
        match self.link_index.get(&(from, to)) {
            Some(&i) => self.links[i] = link,
            None => {
                self.link_index.insert((from, to), self.links.len());
                self.links.push(link);
            }
        }
    }

    /// The configuration of the link direction `from → to`, to change it
    /// mid-run; `None` if the nodes are not linked.
    pub fn link_config_mut(&mut self, from: NodeId, to: NodeId) -> Option<&mut LinkConfig> {
        let &i = self.link_index.get(&(from.0, to.0))?;
        self.links.get_mut(i).map(|l| &mut l.config)
    }

    /// The counters of the link direction `from → to`; `None` if the nodes
    /// are not linked.
    pub fn link_stats(&self, from: NodeId, to: NodeId) -> Option<&LinkStats> {
        let &i = self.link_index.get(&(from.0, to.0))?;
        self.links.get(i).map(|l| &l.stats)
    }

    /// How long datagrams waited in the bottleneck queue of the link
    /// direction `from → to` so far; `None` if the nodes are not linked.
    pub fn link_queue_delay(&self, from: NodeId, to: NodeId) -> Option<&DelayHistogram> {
        let &i = self.link_index.get(&(from.0, to.0))?;
        self.links.get(i).map(|l| &l.queue_delay)
    }

    /// Datagrams sent to an address with no node, or to a node with no
    /// link from the sender; they are dropped.
    pub fn unroutable(&self) -> u64 {
        self.unroutable
    }

    /// Datagram copies in flight on all links.
    pub fn in_flight(&self) -> usize {
        self.events.len()
    }

    /// Sets how many consecutive steps without virtual time advancing make
    /// [`Sim::run_until`] report [`StallReason::NoProgress`] (default
    /// [`DEFAULT_STALL_STEPS`]; at least 1).
    pub fn set_stall_steps(&mut self, steps: u64) {
        self.stall_steps = steps.max(1);
    }

    /// Advances virtual time to the next event and processes everything
    /// due then. Returns `false`, without changing anything, when there is
    /// no event left (no datagram in flight, no wakeup, no poked node).
    pub fn step(&mut self) -> bool {
        self.step_until(None) == Stepped::Processed
    }

    /// Steps until `done` returns true (checked before every step), for at
    /// most `limit` of virtual time from now.
    ///
    /// # Errors
    /// [`SimError::TimeLimit`] when the next event would be after the
    /// limit (time is then exactly at the limit);
    /// [`SimError::Stalled`] when no event is left, or when
    /// [`Sim::set_stall_steps`] steps in a row did not advance time.
    pub fn run_until(
        &mut self,
        mut done: impl FnMut(&mut Self) -> bool,
        limit: Duration,
    ) -> Result<(), SimError> {
        let deadline = self.now.checked_add(limit);
        loop {
            if done(self) {
                return Ok(());
            }
            if self.same_instant_steps >= self.stall_steps {
                return Err(self.stalled(StallReason::NoProgress {
                    steps: self.same_instant_steps,
                }));
            }
            match self.step_until(deadline) {
                Stepped::Processed => {}
                Stepped::Deadline => {
                    return if done(self) {
                        Ok(())
                    } else {
                        Err(SimError::TimeLimit {
                            seed: self.seed,
                            elapsed: self.elapsed(),
                        })
                    };
                }
                Stepped::Idle => return Err(self.stalled(StallReason::NoEvents)),
            }
        }
    }

    /// Processes every event up to `now + d` and leaves time exactly there,
    /// even when nothing happens.
    ///
    /// # Panics
    /// If [`Sim::set_stall_steps`] steps in a row do not advance time (an
    /// endpoint whose wakeup stays in the past); the message names the seed.
    pub fn run_for(&mut self, d: Duration) {
        let deadline = self.now.checked_add(d);
        loop {
            if self.same_instant_steps >= self.stall_steps {
                panic!(
                    "{}",
                    self.stalled(StallReason::NoProgress {
                        steps: self.same_instant_steps
                    })
                );
            }
            if self.step_until(deadline) != Stepped::Processed {
                break;
            }
        }
        if let Some(deadline) = deadline {
            self.advance_to(deadline);
        }
    }

    fn stalled(&self, reason: StallReason) -> SimError {
        SimError::Stalled {
            seed: self.seed,
            elapsed: self.elapsed(),
            reason,
        }
    }

    fn advance_to(&mut self, t: Instant) {
        if t > self.now {
            self.now = t;
            self.same_instant_steps = 0;
        } else {
            self.same_instant_steps += 1;
        }
    }

    /// One step, not going past `deadline`.
    fn step_until(&mut self, deadline: Option<Instant>) -> Stepped {
        // Nodes the test changed between steps (poke, node_mut) are
        // drained at the current instant first, without a step of their
        // own: a test that touches a node after every step must not look
        // like a simulation stuck in time.
        if !self.touched.is_empty() {
            self.drain_touched();
        }
        let next = if self.touched.is_empty() {
            let arrival = self.events.peek().map(|Reverse((t, _, _))| *t);
            let wakeup = self.wakeups.peek().map(|(t, _)| t);
            match (arrival, wakeup) {
                (None, None) => return Stepped::Idle,
                (Some(a), Some(w)) => a.min(w),
                (Some(t), None) | (None, Some(t)) => t,
            }
        } else {
            self.now
        };
        // A wakeup in the past is handled now: time never goes back.
        let next = next.max(self.now);
        if let Some(deadline) = deadline {
            if next > deadline {
                self.advance_to(deadline.max(self.now));
                return Stepped::Deadline;
            }
        }
        self.advance_to(next);
        let now = self.now;

        // 1. Deliver every datagram due, in (arrival time, send order).
        while let Some(&Reverse((t, _, slot))) = self.events.peek() {
            if t > now {
                break;
            }
            self.events.pop();
            self.deliver(slot);
        }

        // 2. Time out every node whose (freshly read) wakeup is due. A node
        // leaves the wakeup queue when popped and only returns in phase 3,
        // so it gets at most one handle_timeout per step.
        for i in 0..self.touched.len() {
            let node = self.touched[i];
            self.wakeups.set(node, self.nodes[node].node.poll_wakeup());
        }
        while let Some(node) = self.wakeups.pop_due(now) {
            self.nodes[node].node.handle_timeout(now);
            self.mark_touched(node);
        }

        // 3. Drain every touched node into the links.
        self.drain_touched();
        Stepped::Processed
    }

    /// Drains every touched node into the links, in the order they were
    /// touched, then re-reads its wakeup. Draining only schedules arrivals;
    /// it touches no other node, so the list is stable here.
    fn drain_touched(&mut self) {
        for i in 0..self.touched.len() {
            let node = self.touched[i];
            let is_drained = self.drain(node);
            self.wakeups.set(node, self.nodes[node].node.poll_wakeup());
            // A node stopped by the drain cap stays touched for the next step.
            self.nodes[node].is_touched = !is_drained;
        }
        let nodes = &self.nodes;
        self.touched.retain(|&node| nodes[node].is_touched);
    }

    fn mark_touched(&mut self, node: usize) {
        let slot = &mut self.nodes[node];
        if !slot.is_touched {
            slot.is_touched = true;
            self.touched.push(node);
        }
    }

    /// Hands the datagram in `slot` to its receiver.
    fn deliver(&mut self, slot: usize) {
        let Some(flight) = self.flights.get_mut(slot) else {
            return;
        };
        let buf = std::mem::take(&mut flight.buf);
        let (from, link) = (flight.from, flight.link);
        self.free_flights.push(slot);
        let to = match self.links.get_mut(link) {
            Some(l) => {
                l.stats.delivered += 1;
                l.stats.delivered_bytes += buf.len() as u64;
                l.to
            }
            None => return,
        };
        log::trace!(
            "[{:>9.3?}] sim: {} bytes {} -> {}",
            self.now - self.epoch,
            buf.len(),
            from,
            self.nodes[to].addr
        );
        self.nodes[to].node.handle_datagram(self.now, from, &buf);
        self.mark_touched(to);
        self.recycle(buf);
    }

    /// Calls `poll_transmit` on `node` until it returns `None` (true) or
    /// the per-step cap is hit (false).
    fn drain(&mut self, node: usize) -> bool {
        for _ in 0..MAX_DRAIN_PER_STEP {
            let mut buf = self.take_buffer();
            let Some(to_addr) = self.nodes[node].node.poll_transmit(self.now, &mut buf) else {
                self.recycle(buf);
                return true;
            };
            self.route(node, to_addr, buf);
        }
        false
    }

    /// Offers a datagram from `from` to the link towards `to_addr`.
    fn route(&mut self, from: usize, to_addr: SocketAddr, mut buf: Vec<u8>) {
        let link = self
            .by_addr
            .get(&to_addr)
            .and_then(|&to| self.link_index.get(&(from, to)))
            .copied();
        let Some(link) = link else {
            self.unroutable += 1;
            log::trace!(
                "[{:>9.3?}] sim: unroutable datagram {} -> {}",
                self.now - self.epoch,
                self.nodes[from].addr,
                to_addr
            );
            self.recycle(buf);
            return;
        };
        let from_addr = self.nodes[from].addr;
        let verdict = self.links[link].offer(self.now, buf.len());
        let Verdict::Deliver { at, copy_at } = verdict else {
            self.recycle(buf);
            return;
        };
        if let Some(copy_at) = copy_at {
            // Copy before corrupting, so the two copies are corrupted
            // independently.
            let mut copy = self.take_buffer();
            copy.extend_from_slice(&buf);
            self.links[link].maybe_corrupt(&mut copy);
            self.schedule(copy_at, from_addr, link, copy);
        }
        self.links[link].maybe_corrupt(&mut buf);
        self.schedule(at, from_addr, link, buf);
    }

    fn schedule(&mut self, at: Instant, from: SocketAddr, link: usize, buf: Vec<u8>) {
        let flight = Flight { buf, from, link };
        let slot = match self.free_flights.pop() {
            Some(slot) => {
                self.flights[slot] = flight;
                slot
            }
            None => {
                self.flights.push(flight);
                self.flights.len() - 1
            }
        };
        let seq = self.next_seq;
        self.next_seq += 1;
        self.events.push(Reverse((at, seq, slot)));
    }

    fn take_buffer(&mut self) -> Vec<u8> {
        match self.pool.pop() {
            Some(buf) => buf,
            None => {
                self.buffers_allocated += 1;
                Vec::with_capacity(BUFFER_CAPACITY)
            }
        }
    }

    fn recycle(&mut self, mut buf: Vec<u8>) {
        // An endpoint may have swapped in a buffer of its own; keep only
        // buffers that can be reused without growing.
        if buf.capacity() > 0 {
            buf.clear();
            self.pool.push(buf);
        }
    }
}

impl<N: Endpoint> fmt::Debug for Sim<N> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Sim")
            .field("seed", &self.seed)
            .field("elapsed", &self.elapsed())
            .field("nodes", &self.nodes.len())
            .field("links", &self.links.len())
            .field("in_flight", &self.events.len())
            .field("unroutable", &self.unroutable)
            .finish_non_exhaustive()
    }
}

/// SplitMix64's finalizer: spreads a structured value over all 64 bits.
fn splitmix(mut z: u64) -> u64 {
    z = z.wrapping_add(0x9E37_79B9_7F4A_7C15);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

/// The seed in the environment variable `UDT_SIM_SEED` (decimal, or hex
/// with `0x`), else `default`. Tests use it so a logged failing seed can be
/// replayed: `UDT_SIM_SEED=1234 cargo test …`.
///
/// # Panics
/// If the variable is set but is not a valid seed: silently running another
/// seed would make a replay pass for the wrong reason.
pub fn seed_from_env_or(default: u64) -> u64 {
    match std::env::var("UDT_SIM_SEED") {
        Ok(text) => match parse_seed(&text) {
            Some(seed) => seed,
            None => panic!("UDT_SIM_SEED={text:?} is not a u64 (decimal or 0x-hex)"),
        },
        Err(_) => default,
    }
}

fn parse_seed(text: &str) -> Option<u64> {
    let text = text.trim();
    match text.strip_prefix("0x").or_else(|| text.strip_prefix("0X")) {
        Some(hex) => u64::from_str_radix(hex, 16).ok(),
        None => text.parse().ok(),
    }
}

/// A fresh unpredictable seed for a random sweep, from the standard
/// library's randomly keyed hasher (no clock involved). Log it, so a
/// failure can be replayed with [`seed_from_env_or`].
pub fn random_seed() -> u64 {
    let mut hasher = std::collections::hash_map::RandomState::new().build_hasher();
    hasher.write_u64(0x5eed);
    hasher.finish()
}

#[cfg(test)]
mod tests;
