//! What a receive thread does with a datagram, a timer or a touch: route
//! it through the core endpoint, feed the connection, send the control
//! packets that result, and tell the other threads what changed.
//!
//! Every socket of the endpoint has a receive thread with a `Router`. The
//! primary one (socket 0) also owns the timer heap, fires protocol timers,
//! runs `Touch` commands and removes finished connections; the others feed
//! the connections whose datagrams their socket receives and report an
//! earlier timer to the primary thread with a `Touch`, as application
//! threads do.

use std::io;
use std::net::SocketAddr;
use std::ops::Range;
use std::sync::Arc;
use std::time::Instant;

use udt_core::endpoint::{DatagramEvent, Progress};
use udt_core::packet;
use udt_core::sched::SendSchedule;

use crate::conn::{ConnShared, Wake};
use crate::counters::Counters;
use crate::mux::MuxShared;
use crate::notify::SendCmd;
use crate::udp::{RecvBatch, SendBatch};

/// Batches read before timers and commands get a turn.
const READ_ROUNDS: usize = 16;

/// What the receive thread does with a connection.
pub(crate) enum Input<'a> {
    Datagram(SocketAddr, &'a [u8]),
    /// Datagrams of a receive batch, all for this connection from its peer;
    /// a secure connection decrypts them in the batch (they are not read
    /// again).
    Datagrams(&'a mut RecvBatch, Range<usize>),
    Timeout,
    Touch,
}

/// Where a routed datagram goes next.
enum Target {
    Conn(Arc<ConnShared>),
    /// A connection the listener just accepted.
    Accepted(Arc<ConnShared>),
    /// The endpoint's datagram handler took it and may answer.
    Endpoint,
}

/// The part of a receive thread that handles datagrams and timers.
pub(crate) struct Router {
    pub(crate) mux: Arc<MuxShared>,
    /// The socket this thread reads and answers from.
    socket: usize,
    /// Owns the timer heap (socket 0's thread).
    primary: bool,
    /// Protocol-timer deadlines (`poll_timeout`) by handle: the same
    /// indexed heap the send thread uses, keyed differently (primary only).
    timers: SendSchedule,
    out: SendBatch,
    scratch: Vec<u8>,
    /// Connections whose waiters are woken at the next flush.
    deferred: Vec<Arc<ConnShared>>,
    /// Connections whose waiters are woken when the read pass ends
    /// ([`Wake::hold`], [`flush_pass`](Self::flush_pass)).
    held: Vec<Arc<ConnShared>>,
    /// Datagrams the last [`read_socket`](Self::read_socket) read.
    last_read: usize,
}

impl Router {
    /// The router of socket `socket` (0 is the primary).
    pub(crate) fn new(mux: Arc<MuxShared>, socket: usize) -> Router {
        let batch = mux.options().effective_batch();
        let out = SendBatch::new(batch, mux.config().mss as usize);
        Router {
            mux,
            socket,
            primary: socket == 0,
            timers: SendSchedule::new(),
            out,
            scratch: Vec::with_capacity(128),
            deferred: Vec::with_capacity(64),
            held: Vec::with_capacity(64),
            last_read: 0,
        }
    }

    /// A receive batch for this router's socket.
    pub(crate) fn recv_batch(&self) -> RecvBatch {
        let options = self.mux.options();
        RecvBatch::new(
            options.effective_batch(),
            options.effective_max_datagram(),
            self.mux.port_at(self.socket),
        )
    }

    /// Reads until the socket is empty or the round budget is used; true
    /// when it stopped on the budget (the next poll must not wait).
    pub(crate) fn read_socket(&mut self, input: &mut RecvBatch) -> bool {
        let mux = self.mux.clone();
        let port = mux.port_at(self.socket);
        let counters = mux.counters();
        self.last_read = 0;
        for _ in 0..READ_ROUNDS {
            match input.recv(port) {
                Ok(n) => {
                    self.last_read += n;
                    Counters::add(&counters.recv_calls, 1);
                    Counters::add(&counters.datagrams_received, n as u64);
                    Counters::add(&counters.datagrams_coalesced, input.coalesced() as u64);
                    self.on_batch(Instant::now(), input, n);
                    self.flush();
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return false,
                Err(e) => {
                    // ICMP errors surfacing on the socket and the like: count
                    // them and keep reading.
                    Counters::add(&counters.recv_errors, 1);
                    log::debug!("receive error on {}: {e}", port.local_addr());
                }
            }
        }
        true
    }
    /// Datagrams the last [`read_socket`](Self::read_socket) read.
    pub(crate) fn last_read(&self) -> usize {
        self.last_read
    }

    /// Routes the datagrams of one receive. Consecutive datagrams from one
    /// peer to one socket ID (the run a fast flow delivers) are routed once
    /// and fed to their connection under one lock: the core's verdict for
    /// an ID and a source address is a lookup that cannot change between
    /// them.
    pub(crate) fn on_batch(&mut self, now: Instant, batch: &mut RecvBatch, n: usize) {
        // Counted once per batch, not per datagram.
        let mut bytes = 0u64;
        let mut truncated = 0u64;
        let mut i = 0;
        while i < n {
            let Some(d) = batch.get(i) else {
                i += 1;
                continue;
            };
            bytes += d.data.len() as u64;
            if d.truncated {
                truncated += 1;
                i += 1;
                continue;
            }
            let dest = packet::peek_dest(d.data).filter(|id| id.0 != 0);
            let mut end = i + 1;
            if dest.is_some() {
                while let Some(next) = batch.get(end).filter(|_| end < n) {
                    if next.truncated || next.from != d.from || packet::peek_dest(next.data) != dest
                    {
                        break;
                    }
                    bytes += next.data.len() as u64;
                    end += 1;
                }
            }
            let (from, target) = (d.from, self.route(now, d.from, d.data));
            match target {
                Some(Target::Conn(conn)) => {
                    // The whole run, under one connection lock.
                    self.drive(&conn, now, Input::Datagrams(batch, i..end));
                }
                other => {
                    // Not an open connection's: each datagram of the run
                    // is routed on its own (a handshake may change the
                    // verdict for the next).
                    let data = batch.get(i).map_or(&[][..], |d| d.data);
                    self.act_on(other, now, Input::Datagram(from, data));
                    for j in i + 1..end {
                        if let Some(e) = batch.get(j) {
                            self.on_datagram(now, e.from, e.data);
                        }
                    }
                }
            }
            if self.out.is_full() {
                self.flush();
            }
            i = end;
        }
        let counters = self.mux.counters();
        Counters::add(&counters.bytes_received, bytes);
        Counters::add(&counters.truncated, truncated);
    }

    /// Routes one datagram through the core endpoint (udt4-protocol.md §13)
    /// and acts on its verdict.
    fn on_datagram(&mut self, now: Instant, from: SocketAddr, data: &[u8]) {
        let target = self.route(now, from, data);
        self.act_on(target, now, Input::Datagram(from, data));
    }

    /// The core endpoint's verdict on one datagram, taken under the
    /// registry lock; answers it asks for are queued.
    fn route(&mut self, now: Instant, from: SocketAddr, data: &[u8]) -> Option<Target> {
        let mux = self.mux.clone();
        let mut reg = mux.registry();
        match reg.endpoint.handle(now, from, data, &mut self.scratch) {
            DatagramEvent::Route(h) => reg.get(h).cloned().map(Target::Conn),
            DatagramEvent::Accepted { handle, socket } => {
                // Shared and stored before the registry lock is
                // released: `accept` may take the handle at once.
                let conn = ConnShared::new(mux.notify().clone(), handle, *socket, 0, true, now);
                reg.insert(conn.clone());
                // A few system calls per thousand connections (the buffer
                // grows in steps), so under the lock is fine.
                mux.fit_recv_buffers(reg.live());
                if let Some(l) = reg.listener.as_ref() {
                    l.signal.set_ready(true);
                }
                self.out.push_copy(from, &self.scratch);
                Some(Target::Accepted(conn))
            }
            DatagramEvent::Respond => {
                self.out.push_copy(from, &self.scratch);
                None
            }
            DatagramEvent::Handled => Some(Target::Endpoint),
            DatagramEvent::Dropped(_) => None,
        }
    }

    /// Acts on a verdict: `input` (the datagrams) goes to a routed
    /// connection.
    fn act_on(&mut self, target: Option<Target>, now: Instant, input: Input<'_>) {
        let mux = self.mux.clone();
        match target {
            Some(Target::Conn(conn)) => self.drive(&conn, now, input),
            Some(Target::Accepted(conn)) => {
                // Register goes to the send thread before the connection
                // can have anything to send.
                mux.notify()
                    .send_command(SendCmd::Register(conn.handle, conn.clone()));
                if self.primary {
                    self.drive(&conn, now, Input::Touch);
                } else {
                    // Its creator touches it once (see `ConnShared::new`):
                    // the primary thread arms its timers.
                    conn.notify.touch(conn.handle);
                }
            }
            Some(Target::Endpoint) => self.drain_endpoint(now),
            None => {}
        }
        if self.out.is_full() {
            self.flush();
        }
    }

    /// Feeds one input to a connection (or its handshake), sends what it
    /// has, and updates both heaps.
    pub(crate) fn drive(&mut self, conn: &Arc<ConnShared>, now: Instant, input: Input<'_>) {
        let (wake, established) = {
            let mut g = conn.inner.lock();
            if g.aborted {
                return;
            }
            let now = g.clock(now);
            let touch = matches!(input, Input::Touch);
            let progress = match input {
                Input::Datagram(from, data) => g.phase.handle_datagram(now, from, data),
                Input::Datagrams(batch, range) => {
                    // One lock for the whole run: the first change of
                    // phase (if any) is what the settle below acts on.
                    let mut progress = Progress::Unchanged;
                    for i in range {
                        if let Some(d) = batch.get_mut(i) {
                            // The kernel's stamp on our clock: its age at
                            // the read, back from the read's instant.
                            if let (Some(age), Some(c)) = (d.age, g.phase.connection()) {
                                c.note_arrival(now.checked_sub(age).unwrap_or(now));
                            }
                            let p = g.phase.handle_datagram_mut(now, d.from, d.data);
                            if progress == Progress::Unchanged {
                                progress = p;
                            }
                        }
                    }
                    progress
                }
                Input::Timeout => g.phase.handle_timeout(now),
                Input::Touch => Progress::Unchanged,
            };
            let established = progress == Progress::Connected;
            if established && g.handles == 0 {
                // Nobody waits for it any more (the connect call gave up):
                // close it politely.
                if let Some(c) = g.phase.connection() {
                    c.close(now);
                }
            }
            // Handshake packets go out from here, and so do the control
            // packets (ACK, ACK2, NAK, keep-alive) a datagram or a timer
            // made an open connection queue: they leave with this round's
            // flush instead of waiting for a hop to the send thread. Data
            // stays on the send thread: were both threads to send it, two
            // batches could overtake each other and the peer would see
            // reordering as loss; control packets may overtake data
            // harmlessly. A closed connection's packets (its shutdown) also
            // stay there: `close` returns once the send thread has put the
            // last one on the wire (`final_unsent`). What does not fit in
            // the batch keeps `next_send_time` immediate, which the settle
            // below reports to the send thread.
            if g.phase.is_connecting() {
                while let Some(buf) = self.out.slot() {
                    match g.phase.poll_transmit(now, buf) {
                        Some(dest) => self.out.push(dest),
                        None => break,
                    }
                }
            } else if let Some(c) = g.phase.connection() {
                if !c.is_closed() && !touch {
                    while let Some(buf) = self.out.slot() {
                        match c.poll_transmit_control(now, buf) {
                            Some(t) => self.out.push(t.destination),
                            None => break,
                        }
                    }
                }
            }
            // The primary thread owns the timer heap and takes the new
            // deadline itself; another socket's thread reports an earlier
            // one to it (a `Touch`), as an application thread would.
            let mut wake = if self.primary {
                g.settle_timers(self.mux.notify())
            } else {
                g.settle(self.mux.notify())
            };
            if progress != Progress::Unchanged {
                wake.notify = true;
                wake.hold = false;
            }
            (wake, established)
        };
        if self.primary {
            self.timers.set(conn.handle, wake.timer);
        }
        if established {
            self.mux
                .notify()
                .send_command(SendCmd::Register(conn.handle, conn.clone()));
        }
        // Only the primary thread removes connections (its timer heap
        // holds them); the settle of another thread touched it for that.
        let reap = wake.reapable && self.primary;
        self.act(conn, wake);
        if reap {
            self.reap(conn);
        }
    }

    /// Acts on a settle of the receive thread. Application wake-ups wait
    /// until the batch is flushed: a reader is woken once per batch, not
    /// once per packet; a wake-up asked for only by data in the middle of
    /// one of the peer's long writes ([`Wake::hold`]) waits until the read
    /// pass ends.
    fn act(&mut self, conn: &Arc<ConnShared>, wake: Wake) {
        if wake.touch {
            conn.notify.touch(conn.handle);
        }
        if wake.reschedule.is_some() {
            self.mux
                .notify()
                .send_command(SendCmd::Reschedule(conn.handle));
        }
        if wake.notify || wake.watch {
            let (owed, list) = if wake.hold {
                (&conn.pass_wake, &mut self.held)
            } else {
                (&conn.batch_wake, &mut self.deferred)
            };
            if owed.owe(wake.notify) {
                list.push(conn.clone());
            }
        }
    }

    /// The earliest protocol timer: a connection's, or the endpoint's
    /// datagram handler's.
    pub(crate) fn next_timer(&self) -> Option<Instant> {
        let conns = self.timers.peek().map(|(_, at)| at);
        let endpoint = self.mux.registry().endpoint.poll_timeout();
        match (conns, endpoint) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        }
    }

    /// Fires every protocol timer that is due.
    pub(crate) fn fire_timers(&mut self) {
        let now = Instant::now();
        self.mux.registry().endpoint.handle_timeout(now);
        self.drain_endpoint(now);
        while let Some(h) = self.timers.pop_due(now) {
            let conn = self.mux.registry().get(h).cloned();
            if let Some(conn) = conn {
                self.drive(&conn, now, Input::Timeout);
            }
            if self.out.is_full() {
                self.flush();
            }
        }
    }

    /// Sends what the endpoint's datagram handler has to send.
    fn drain_endpoint(&mut self, now: Instant) {
        let mux = self.mux.clone();
        let mut reg = mux.registry();
        loop {
            if self.out.is_full() {
                drop(reg);
                self.flush();
                reg = mux.registry();
            }
            let Some(buf) = self.out.slot() else {
                return;
            };
            match reg.endpoint.poll_transmit(now, buf) {
                Some(to) => self.out.push(to),
                None => return,
            }
        }
    }

    /// Removes a finished connection nobody holds any more.
    fn reap(&mut self, conn: &Arc<ConnShared>) {
        {
            let mut reg = self.mux.registry();
            let g = conn.inner.lock();
            if !g.is_reapable() || !reg.take(conn) {
                return;
            }
            reg.endpoint.remove(Instant::now(), conn.handle, &g.phase);
        }
        self.timers.remove(conn.handle);
        self.mux
            .notify()
            .send_command(SendCmd::Deregister(conn.handle));
        log::debug!("{} removed", conn.socket_id);
    }

    /// True once no endpoint or handle refers to the multiplexer and every
    /// connection has finished: the threads may stop.
    pub(crate) fn is_unused(&self) -> bool {
        self.mux.users() == 0 && self.mux.registry().live() == 0
    }

    /// Aborts every connection: handles fail, nothing more is sent.
    pub(crate) fn abort_all(&mut self) {
        let (conns, listener) = self.mux.registry().drain();
        for c in conns {
            c.abort();
        }
        if let Some(signal) = listener {
            signal.set_ready(true);
        }
        log::info!("endpoint {} aborted", self.mux.local_addr());
    }

    pub(crate) fn flush(&mut self) {
        if self.mux.is_aborted() {
            self.out.discard();
        }
        if !self.out.is_empty() {
            // Never block the receive thread on a full send buffer: a
            // dropped control packet is recovered by the protocol.
            let f = self.out.flush(self.mux.port_at(self.socket), false);
            self.mux.counters().on_flush(f);
        }
        for conn in self.deferred.drain(..) {
            conn.wake_waiters_or_watchers(conn.batch_wake.take());
        }
    }

    /// Flushes, and delivers the wake-ups held for the end of the read
    /// pass: call once the socket was read dry (or the pass's budget
    /// used), the timers fired and the commands run. A hold therefore
    /// lasts at most one pass of [`READ_ROUNDS`] batches.
    pub(crate) fn flush_pass(&mut self) {
        self.flush();
        for conn in self.held.drain(..) {
            conn.wake_waiters_or_watchers(conn.pass_wake.take());
        }
    }
}
