//! The running relay: its UDP sockets, one thread per direction, client
//! sessions, and the hold queue that releases each datagram at the time the
//! impairment model chose.
//!
//! Clients send to the relay's front socket. Each distinct client address
//! gets a *session*: its own socket connected to the upstream address, so the
//! upstream sees one peer per client (as through a NAT) and its answers can be
//! routed back. Thread "up" reads the front socket and sends through the
//! sessions; thread "down" reads every session socket and sends from the
//! front socket. Each direction has its own impairment model and random
//! stream, so traffic in one direction cannot shift the losses of the other.
//!
//! Chaos: [`Relay::set_impairments`] swaps both directions' impairments
//! while the relay runs (changing bursts), and [`Relay::set_blackhole`]
//! drops everything until it is turned off again (outages). Each thread
//! picks a change up at its next loop turn.
//!
//! Timing: mio's `poll` rounds timeouts up to whole milliseconds, so the
//! threads poll until about 1 ms before the next release and then sleep
//! precisely (`nanosleep`, tens of µs late at worst). Enough for delays of a
//! few milliseconds and rate caps into the Gbit/s range on loopback.

use std::cmp::Ordering;
use std::collections::{BinaryHeap, HashMap};
use std::io;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::os::fd::AsRawFd;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering as AtomicOrdering};
use std::sync::{Arc, Mutex, PoisonError};
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

use udt_core::rng::Rng;

use mio::net::UdpSocket;
use mio::unix::SourceFd;
use mio::{Events, Interest, Poll, Registry, Token, Waker};
use socket2::{Domain, Protocol, Socket, Type};

use crate::impair::{DirectionModel, DropReason, Fate, Impairment};
use crate::stats::{add, bump, DirectionCounters, RelayStats};

/// How a relay is set up. Build one with [`RelayConfig::new`] and adjust
/// fields with struct update syntax.
#[derive(Clone, Debug)]
pub struct RelayConfig {
    /// Where clients send to. Default `127.0.0.1:0` (an ephemeral port; read
    /// it back with [`Relay::local_addr`]).
    pub listen: SocketAddr,
    /// Where the relay forwards to.
    pub upstream: SocketAddr,
    /// Local address of the upstream-facing socket of each session. `None`
    /// (default) binds an ephemeral port per session. A fixed address lets
    /// the upstream aim at the relay before any client has spoken (UDT
    /// rendezvous through the relay), but then only one session can exist
    /// at a time.
    pub upstream_bind: Option<SocketAddr>,
    /// Impairments from clients to the upstream.
    pub to_upstream: Impairment,
    /// Impairments from the upstream to clients.
    pub to_client: Impairment,
    /// Seed of every random decision (each direction derives its own stream).
    pub seed: u64,
    /// Most client sessions at once. Default 64. When full, a new client
    /// replaces the least recently active session if that one has been idle
    /// for [`session_idle`](Self::session_idle); otherwise its datagrams are
    /// dropped (counted as `dropped_no_session`).
    pub max_sessions: usize,
    /// How long a session must be idle before a new client may replace it.
    /// Default 30 s.
    pub session_idle: Duration,
    /// Most datagrams held (delayed) at once per direction; more are dropped
    /// and counted as `dropped_overflow`. Bounds the relay's memory to about
    /// `max_pending` × the largest datagram seen. Default 16 384.
    pub max_pending: usize,
    /// `SO_RCVBUF`/`SO_SNDBUF` requested for every socket, in bytes (the
    /// kernel caps it at `net.core.rmem_max`/`wmem_max`). Default 4 MiB.
    pub socket_buffer: usize,
}

impl RelayConfig {
    /// A transparent relay from `127.0.0.1:0` to `upstream`, seed 1.
    pub fn new(upstream: SocketAddr) -> Self {
        RelayConfig {
            listen: SocketAddr::from((Ipv4Addr::LOCALHOST, 0)),
            upstream,
            upstream_bind: None,
            to_upstream: Impairment::default(),
            to_client: Impairment::default(),
            seed: 1,
            max_sessions: 64,
            session_idle: Duration::from_secs(30),
            max_pending: 16_384,
            socket_buffer: 4 << 20,
        }
    }

    /// The same impairment in both directions (for example half of an RTT
    /// as `delay`).
    pub fn with_both(mut self, impairment: Impairment) -> Self {
        self.to_upstream = impairment.clone();
        self.to_client = impairment;
        self
    }
}

/// A running relay. It stops, and its threads exit, when dropped (or with
/// [`Relay::stop`]).
#[derive(Debug)]
pub struct Relay {
    local_addr: SocketAddr,
    shared: Arc<Shared>,
    wakers: Vec<Waker>,
    threads: Vec<JoinHandle<()>>,
}

impl Relay {
    /// Binds the front socket, starts both direction threads and returns
    /// once the relay is ready to forward.
    ///
    /// # Errors
    /// `InvalidInput` if an impairment is invalid or a limit is zero; the
    /// socket or thread error if binding or spawning fails.
    pub fn start(config: RelayConfig) -> io::Result<Relay> {
        for imp in [&config.to_upstream, &config.to_client] {
            imp.validate()
                .map_err(|e| io::Error::new(io::ErrorKind::InvalidInput, e))?;
        }
        if config.max_sessions == 0 || config.max_pending == 0 {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                "max_sessions and max_pending must be at least 1",
            ));
        }
        let front = bind_udp(config.listen, config.socket_buffer)?;
        let local_addr = front.local_addr()?;
        // Two handles on one socket: "up" reads it, "down" sends from it.
        let front_send = UdpSocket::from_std(front.try_clone()?);
        let mut front_recv = UdpSocket::from_std(front);

        let up_poll = Poll::new()?;
        let down_poll = Poll::new()?;
        let wakers = vec![
            Waker::new(up_poll.registry(), WAKE)?,
            Waker::new(down_poll.registry(), WAKE)?,
        ];
        up_poll
            .registry()
            .register(&mut front_recv, FRONT, Interest::READABLE)?;
        let down_registry = down_poll.registry().try_clone()?;

        let shared = Arc::new(Shared {
            stop: AtomicBool::new(false),
            to_upstream: DirectionCounters::default(),
            to_client: DirectionCounters::default(),
            sessions_opened: AtomicU64::new(0),
            sessions_evicted: AtomicU64::new(0),
            table: Mutex::new(Vec::with_capacity(config.max_sessions)),
            failure: Mutex::new(None),
            start: Instant::now(),
            blackhole: AtomicBool::new(false),
            impairment_gen: AtomicU64::new(0),
            impairments: Mutex::new((config.to_upstream.clone(), config.to_client.clone())),
        });

        let up = Up {
            poll: up_poll,
            front: front_recv,
            down_registry,
            sessions: HashMap::with_capacity(config.max_sessions),
            sched: Scheduler::new(
                DirectionModel::new(
                    config.to_upstream.clone(),
                    Rng::new(config.seed ^ 1).next_u64(),
                ),
                config.max_pending,
            ),
            shared: Arc::clone(&shared),
            config: config.clone(),
            applied: 0,
            seed: config.seed ^ 1,
        };
        let down = Down {
            poll: down_poll,
            front: front_send,
            ready: Vec::with_capacity(config.max_sessions),
            sched: Scheduler::new(
                DirectionModel::new(
                    config.to_client.clone(),
                    Rng::new(config.seed ^ 2).next_u64(),
                ),
                config.max_pending,
            ),
            shared: Arc::clone(&shared),
            applied: 0,
            seed: config.seed ^ 2,
        };
        let mut relay = Relay {
            local_addr,
            shared,
            wakers,
            threads: Vec::with_capacity(2),
        };
        // If the second spawn fails, dropping `relay` stops the first thread.
        relay.threads.push(
            thread::Builder::new()
                .name("udt-relay-up".into())
                .spawn(move || up.run())?,
        );
        relay.threads.push(
            thread::Builder::new()
                .name("udt-relay-down".into())
                .spawn(move || down.run())?,
        );
        Ok(relay)
    }

    /// The address clients send to.
    pub fn local_addr(&self) -> SocketAddr {
        self.local_addr
    }

    /// The counters so far.
    pub fn stats(&self) -> RelayStats {
        RelayStats {
            to_upstream: self.shared.to_upstream.snapshot(),
            to_client: self.shared.to_client.snapshot(),
            sessions_opened: self.shared.sessions_opened.load(AtomicOrdering::Relaxed),
            sessions_evicted: self.shared.sessions_evicted.load(AtomicOrdering::Relaxed),
        }
    }

    /// Why a relay thread stopped on its own (a failed `poll`), if one did.
    /// `None` while the relay works.
    pub fn failure(&self) -> Option<String> {
        self.shared
            .failure
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }

    /// Replaces the impairments of both directions while the relay runs
    /// (each direction restarts its model; datagrams already held keep
    /// their release times).
    ///
    /// # Errors
    /// `InvalidInput` if an impairment is invalid; nothing changes then.
    pub fn set_impairments(
        &self,
        to_upstream: Impairment,
        to_client: Impairment,
    ) -> io::Result<()> {
        for imp in [&to_upstream, &to_client] {
            imp.validate()
                .map_err(|e| io::Error::new(io::ErrorKind::InvalidInput, e))?;
        }
        *self
            .shared
            .impairments
            .lock()
            .unwrap_or_else(PoisonError::into_inner) = (to_upstream, to_client);
        self.shared
            .impairment_gen
            .fetch_add(1, AtomicOrdering::Release);
        Ok(())
    }

    /// Turns the blackhole on or off: while on, every datagram in either
    /// direction is dropped (counted as `dropped_loss`), as during an
    /// outage. Datagrams already held are still released.
    pub fn set_blackhole(&self, on: bool) {
        self.shared.blackhole.store(on, AtomicOrdering::Relaxed);
    }

    /// Stops both threads, waits for them, and returns the final counters.
    /// Datagrams still held are discarded.
    pub fn stop(mut self) -> RelayStats {
        self.shutdown();
        self.stats()
    }

    fn shutdown(&mut self) {
        self.shared.stop.store(true, AtomicOrdering::SeqCst);
        for w in &self.wakers {
            // A failed wake only delays the stop until the thread's next poll.
            let _ = w.wake();
        }
        for t in self.threads.drain(..) {
            let _ = t.join();
        }
    }
}

impl Drop for Relay {
    fn drop(&mut self) {
        self.shutdown();
    }
}

const WAKE: Token = Token(usize::MAX);
const FRONT: Token = Token(0);
/// Datagrams read from one socket before giving the hold queue a turn, so a
/// flood on the input cannot delay releases.
const READ_BUDGET: usize = 64;
/// Poll this long before a release, then sleep precisely: epoll rounds
/// timeouts up to whole milliseconds.
const PRECISE_MARGIN: Duration = Duration::from_millis(1);
/// The largest UDP payload.
const MAX_DATAGRAM: usize = 65_536;

#[derive(Debug)]
struct Shared {
    stop: AtomicBool,
    to_upstream: DirectionCounters,
    to_client: DirectionCounters,
    sessions_opened: AtomicU64,
    sessions_evicted: AtomicU64,
    /// Sessions by slot (token = slot + 1), for the "down" thread's lookups.
    table: Mutex<Vec<Option<Arc<Session>>>>,
    failure: Mutex<Option<String>>,
    start: Instant,
    /// Everything is dropped (counted as loss) while set.
    blackhole: AtomicBool,
    /// Bumped by every [`Relay::set_impairments`]; each thread compares it
    /// with the generation it applied.
    impairment_gen: AtomicU64,
    /// The latest impairments asked for: (to upstream, to client).
    impairments: Mutex<(Impairment, Impairment)>,
}

impl Shared {
    /// The new impairment for one direction, if it changed since
    /// `applied` (which is updated).
    fn impairment_update(&self, applied: &mut u64, upstream: bool) -> Option<Impairment> {
        let gen = self.impairment_gen.load(AtomicOrdering::Acquire);
        if gen == *applied {
            return None;
        }
        *applied = gen;
        let both = self
            .impairments
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        Some(if upstream {
            both.0.clone()
        } else {
            both.1.clone()
        })
    }

    fn is_blackholed(&self) -> bool {
        self.blackhole.load(AtomicOrdering::Relaxed)
    }

    fn is_stopping(&self) -> bool {
        self.stop.load(AtomicOrdering::Relaxed)
    }

    fn fail(&self, what: &str, e: &io::Error) {
        let mut f = self.failure.lock().unwrap_or_else(PoisonError::into_inner);
        f.get_or_insert_with(|| format!("{what}: {e}"));
    }

    fn millis(&self, now: Instant) -> u64 {
        now.saturating_duration_since(self.start).as_millis() as u64
    }
}

/// One client's path to the upstream.
#[derive(Debug)]
struct Session {
    /// Connected to the upstream.
    socket: UdpSocket,
    client: SocketAddr,
    slot: usize,
    /// Milliseconds since the relay started, at the last datagram either way.
    last_active: AtomicU64,
}

/// A datagram waiting for its release time.
struct Held<D> {
    due: Instant,
    seq: u64,
    buf: Vec<u8>,
    dest: D,
}

impl<D> PartialEq for Held<D> {
    fn eq(&self, other: &Self) -> bool {
        self.due == other.due && self.seq == other.seq
    }
}

impl<D> Eq for Held<D> {}

impl<D> PartialOrd for Held<D> {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

impl<D> Ord for Held<D> {
    /// Reversed, so that `BinaryHeap` pops the earliest; the sequence number
    /// keeps datagrams due at the same instant in arrival order.
    fn cmp(&self, other: &Self) -> Ordering {
        (other.due, other.seq).cmp(&(self.due, self.seq))
    }
}

/// One direction's model plus its hold queue and buffer pool.
struct Scheduler<D> {
    model: DirectionModel,
    heap: BinaryHeap<Held<D>>,
    /// Buffers of released datagrams, reused so steady state allocates nothing.
    pool: Vec<Vec<u8>>,
    max_pending: usize,
    seq: u64,
}

impl<D: Clone> Scheduler<D> {
    fn new(model: DirectionModel, max_pending: usize) -> Self {
        let initial = max_pending.min(4096);
        Scheduler {
            model,
            heap: BinaryHeap::with_capacity(initial),
            pool: Vec::with_capacity(initial),
            max_pending,
            seq: 0,
        }
    }

    /// Applies the impairments to one arriving datagram and holds each
    /// surviving copy until its release time.
    fn admit(&mut self, now: Instant, data: &[u8], dest: &D, counters: &DirectionCounters) {
        bump(&counters.received);
        add(&counters.received_bytes, data.len());
        let verdict = self.model.on_datagram(now, data.len());
        if verdict.duplicate.is_some() {
            bump(&counters.duplicated);
        }
        for fate in std::iter::once(verdict.original).chain(verdict.duplicate) {
            match fate {
                Fate::Drop(DropReason::Loss) => bump(&counters.dropped_loss),
                Fate::Drop(DropReason::Queue) => bump(&counters.dropped_queue),
                Fate::Deliver(due) => {
                    if self.heap.len() >= self.max_pending {
                        bump(&counters.dropped_overflow);
                        continue;
                    }
                    let mut buf = self.pool.pop().unwrap_or_default();
                    buf.clear();
                    buf.extend_from_slice(data);
                    self.heap.push(Held {
                        due,
                        seq: self.seq,
                        buf,
                        dest: dest.clone(),
                    });
                    self.seq = self.seq.wrapping_add(1);
                }
            }
        }
    }

    fn next_due(&self) -> Option<Instant> {
        self.heap.peek().map(|h| h.due)
    }

    /// Applies a new impairment (chaos): a fresh model, a new stream.
    fn replace_model(&mut self, impairment: Impairment, seed: u64) {
        self.model = DirectionModel::new(impairment, seed);
    }

    /// Drops one datagram whole (blackhole), counting it as loss.
    fn blackhole(&mut self, len: usize, counters: &DirectionCounters) {
        bump(&counters.received);
        add(&counters.received_bytes, len);
        bump(&counters.dropped_loss);
    }

    fn pop_due(&mut self, now: Instant) -> Option<Held<D>> {
        if self.next_due()? <= now {
            self.heap.pop()
        } else {
            None
        }
    }

    fn recycle(&mut self, buf: Vec<u8>) {
        if self.pool.len() < self.max_pending {
            self.pool.push(buf);
        }
    }
}

/// Waits for socket events, but no later than the next release; the last
/// stretch before a release is slept precisely. `busy` means sockets still
/// have unread data: only look for new events.
fn wait(
    poll: &mut Poll,
    events: &mut Events,
    next_due: Option<Instant>,
    busy: bool,
) -> io::Result<()> {
    let mut precise = None;
    let timeout = if busy {
        Some(Duration::ZERO)
    } else {
        match next_due {
            None => None,
            Some(due) => {
                let left = due.saturating_duration_since(Instant::now());
                if left > 2 * PRECISE_MARGIN {
                    Some(left - PRECISE_MARGIN)
                } else {
                    precise = Some(left);
                    Some(Duration::ZERO)
                }
            }
        }
    };
    match poll.poll(events, timeout) {
        Ok(()) => {}
        Err(e) if e.kind() == io::ErrorKind::Interrupted => return Ok(()),
        Err(e) => return Err(e),
    }
    if let Some(left) = precise {
        if events.is_empty() && !left.is_zero() {
            thread::sleep(left);
        }
    }
    Ok(())
}

/// The client → upstream direction, which also opens sessions.
struct Up {
    poll: Poll,
    front: UdpSocket,
    down_registry: Registry,
    sessions: HashMap<SocketAddr, Arc<Session>>,
    sched: Scheduler<Arc<Session>>,
    shared: Arc<Shared>,
    config: RelayConfig,
    /// The impairment generation applied.
    applied: u64,
    /// Seed of the next model (changes with each impairment change).
    seed: u64,
}

impl Up {
    fn run(mut self) {
        let mut events = Events::with_capacity(64);
        let mut scratch = vec![0u8; MAX_DATAGRAM];
        let mut readable = false;
        while !self.shared.is_stopping() {
            if let Some(imp) = self.shared.impairment_update(&mut self.applied, true) {
                self.seed = Rng::new(self.seed).next_u64();
                self.sched.replace_model(imp, self.seed);
            }
            readable |= events.iter().any(|e| e.token() == FRONT);
            if readable {
                readable = self.read_front(&mut scratch);
            }
            let now = Instant::now();
            while let Some(held) = self.sched.pop_due(now) {
                let c = &self.shared.to_upstream;
                match held.dest.socket.send(&held.buf) {
                    Ok(n) => {
                        bump(&c.forwarded);
                        add(&c.forwarded_bytes, n);
                    }
                    Err(_) => bump(&c.send_errors),
                }
                held.dest
                    .last_active
                    .store(self.shared.millis(now), AtomicOrdering::Relaxed);
                self.sched.recycle(held.buf);
            }
            if let Err(e) = wait(&mut self.poll, &mut events, self.sched.next_due(), readable) {
                self.shared
                    .fail("relay (client to upstream) poll failed", &e);
                return;
            }
        }
    }

    /// Reads up to the budget; returns whether the socket may hold more.
    fn read_front(&mut self, scratch: &mut [u8]) -> bool {
        for _ in 0..READ_BUDGET {
            match self.front.recv_from(scratch) {
                Ok((n, from)) => {
                    let now = Instant::now();
                    let data = scratch.get(..n).unwrap_or_default();
                    if self.shared.is_blackholed() {
                        self.sched.blackhole(n, &self.shared.to_upstream);
                        continue;
                    }
                    match self.session_for(from, now) {
                        Some(session) => {
                            self.sched
                                .admit(now, data, &session, &self.shared.to_upstream)
                        }
                        None => {
                            let c = &self.shared.to_upstream;
                            bump(&c.received);
                            add(&c.received_bytes, n);
                            bump(&c.dropped_no_session);
                        }
                    }
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return false,
                // Interrupted, or an ICMP error queued on the socket: neither
                // ends the relay; keep reading.
                Err(_) => {}
            }
        }
        true
    }

    fn session_for(&mut self, client: SocketAddr, now: Instant) -> Option<Arc<Session>> {
        if let Some(s) = self.sessions.get(&client) {
            s.last_active
                .store(self.shared.millis(now), AtomicOrdering::Relaxed);
            return Some(Arc::clone(s));
        }
        self.open_session(client, now)
    }

    /// Opens a session for a new client, evicting an idle one if the table
    /// is full. `None` if no room or the socket could not be set up.
    fn open_session(&mut self, client: SocketAddr, now: Instant) -> Option<Arc<Session>> {
        let mut table = self
            .shared
            .table
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        let slot = match table.iter().position(Option::is_none) {
            Some(free) => free,
            None if table.len() < self.config.max_sessions => {
                table.push(None);
                table.len() - 1
            }
            None => {
                let now_ms = self.shared.millis(now);
                let idle_ms = self.config.session_idle.as_millis() as u64;
                let oldest = table
                    .iter()
                    .flatten()
                    .min_by_key(|s| s.last_active.load(AtomicOrdering::Relaxed))?;
                if now_ms.saturating_sub(oldest.last_active.load(AtomicOrdering::Relaxed)) < idle_ms
                {
                    return None;
                }
                let victim = Arc::clone(oldest);
                self.sessions.remove(&victim.client);
                let slot = victim.slot;
                let fd = victim.socket.as_raw_fd();
                // Closing the descriptor (when the last holder lets go) would
                // remove it from epoll anyway; deregister now so the slot's
                // token is not reported for the old socket.
                let _ = self.down_registry.deregister(&mut SourceFd(&fd));
                if let Some(entry) = table.get_mut(slot) {
                    *entry = None;
                }
                self.shared
                    .sessions_evicted
                    .fetch_add(1, AtomicOrdering::Relaxed);
                slot
            }
        };
        let bind = self
            .config
            .upstream_bind
            .unwrap_or_else(|| unspecified_like(self.config.upstream));
        let std_socket = bind_udp(bind, self.config.socket_buffer).ok()?;
        std_socket.connect(self.config.upstream).ok()?;
        let mut socket = UdpSocket::from_std(std_socket);
        self.down_registry
            .register(&mut socket, Token(slot + 1), Interest::READABLE)
            .ok()?;
        let session = Arc::new(Session {
            socket,
            client,
            slot,
            last_active: AtomicU64::new(self.shared.millis(now)),
        });
        if let Some(entry) = table.get_mut(slot) {
            *entry = Some(Arc::clone(&session));
        }
        drop(table);
        self.sessions.insert(client, Arc::clone(&session));
        self.shared
            .sessions_opened
            .fetch_add(1, AtomicOrdering::Relaxed);
        Some(session)
    }
}

/// The upstream → client direction.
struct Down {
    poll: Poll,
    front: UdpSocket,
    /// Sessions whose socket may still hold datagrams.
    ready: Vec<Arc<Session>>,
    sched: Scheduler<SocketAddr>,
    shared: Arc<Shared>,
    /// The impairment generation applied.
    applied: u64,
    /// Seed of the next model.
    seed: u64,
}

impl Down {
    fn run(mut self) {
        let mut events = Events::with_capacity(256);
        let mut scratch = vec![0u8; MAX_DATAGRAM];
        while !self.shared.is_stopping() {
            if let Some(imp) = self.shared.impairment_update(&mut self.applied, false) {
                self.seed = Rng::new(self.seed).next_u64();
                self.sched.replace_model(imp, self.seed);
            }
            self.note_ready(&events);
            self.read_sessions(&mut scratch);
            let now = Instant::now();
            while let Some(held) = self.sched.pop_due(now) {
                let c = &self.shared.to_client;
                match self.front.send_to(&held.buf, held.dest) {
                    Ok(n) => {
                        bump(&c.forwarded);
                        add(&c.forwarded_bytes, n);
                    }
                    Err(_) => bump(&c.send_errors),
                }
                self.sched.recycle(held.buf);
            }
            let busy = !self.ready.is_empty();
            if let Err(e) = wait(&mut self.poll, &mut events, self.sched.next_due(), busy) {
                self.shared
                    .fail("relay (upstream to client) poll failed", &e);
                return;
            }
        }
    }

    fn note_ready(&mut self, events: &Events) {
        let mut table = None;
        for event in events.iter() {
            let Some(slot) = event.token().0.checked_sub(1) else {
                continue;
            };
            if event.token() == WAKE {
                continue;
            }
            // One lock per poll round, not per datagram.
            let table = table.get_or_insert_with(|| {
                self.shared
                    .table
                    .lock()
                    .unwrap_or_else(PoisonError::into_inner)
            });
            if let Some(Some(s)) = table.get(slot) {
                if !self.ready.iter().any(|r| Arc::ptr_eq(r, s)) {
                    self.ready.push(Arc::clone(s));
                }
            }
        }
    }

    fn read_sessions(&mut self, scratch: &mut [u8]) {
        let mut i = 0;
        while let Some(session) = self.ready.get(i) {
            let mut exhausted = false;
            for _ in 0..READ_BUDGET {
                match session.socket.recv(scratch) {
                    Ok(n) => {
                        let now = Instant::now();
                        let data = scratch.get(..n).unwrap_or_default();
                        session
                            .last_active
                            .store(self.shared.millis(now), AtomicOrdering::Relaxed);
                        if self.shared.is_blackholed() {
                            self.sched.blackhole(n, &self.shared.to_client);
                            continue;
                        }
                        self.sched
                            .admit(now, data, &session.client, &self.shared.to_client);
                    }
                    Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                        exhausted = true;
                        break;
                    }
                    // ECONNREFUSED from an ICMP "port unreachable" (upstream
                    // not listening yet), or EINTR: keep going.
                    Err(_) => {}
                }
            }
            if exhausted {
                self.ready.swap_remove(i);
            } else {
                i += 1;
            }
        }
    }
}

/// The unspecified address of `peer`'s family, port 0.
fn unspecified_like(peer: SocketAddr) -> SocketAddr {
    match peer.ip() {
        IpAddr::V4(_) => SocketAddr::from((Ipv4Addr::UNSPECIFIED, 0)),
        IpAddr::V6(_) => SocketAddr::from((Ipv6Addr::UNSPECIFIED, 0)),
    }
}

/// A non-blocking UDP socket bound to `addr` with the requested buffers.
fn bind_udp(addr: SocketAddr, buffer: usize) -> io::Result<std::net::UdpSocket> {
    let socket = Socket::new(Domain::for_address(addr), Type::DGRAM, Some(Protocol::UDP))?;
    // The kernel caps these at rmem_max/wmem_max; smaller is not an error.
    let _ = socket.set_recv_buffer_size(buffer);
    let _ = socket.set_send_buffer_size(buffer);
    socket.set_nonblocking(true)?;
    socket.bind(&addr.into())?;
    Ok(socket.into())
}
