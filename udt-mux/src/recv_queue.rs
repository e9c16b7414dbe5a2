//! The receive thread: reads datagrams in batches, routes each by its
//! destination socket ID (ID 0: a rendezvous peer by address, else the
//! listener), runs handshakes to completion, and fires the protocol timers
//! from a deadline heap (never a scan of all connections).
//!
//! It waits in mio's `poll` over the socket and a `Waker`; the poll timeout
//! is the earliest timer deadline (mio rounds it up to whole milliseconds,
//! harmless at the 10 ms SYN scale). Bad input is counted and dropped:
//! nothing a peer sends can stop this thread.

use std::io;
use std::net::SocketAddr;
use std::os::fd::RawFd;
use std::sync::Arc;
use std::time::{Duration, Instant};

use crossbeam_channel::{Receiver, TryRecvError};
use mio::unix::SourceFd;
use mio::{Events, Interest, Poll, Token};
use udt_core::endpoint::{DatagramEvent, Progress};
use udt_core::sched::SendSchedule;

use crate::conn::{ConnShared, Wake};
use crate::counters::Counters;
use crate::mux::MuxShared;
use crate::notify::{RecvCmd, SendCmd};
use crate::udp::{RecvBatch, SendBatch};

/// mio token of the UDP socket.
const SOCKET: Token = Token(0);
/// mio token of the waker other threads use.
pub(crate) const WAKER: Token = Token(1);
/// Batches read before timers and commands get a turn.
const READ_ROUNDS: usize = 16;

/// What the receive thread does with a connection.
enum Input<'a> {
    Datagram(SocketAddr, &'a [u8]),
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

/// State of the receive thread.
pub(crate) struct RecvThread {
    poll: Poll,
    events: Events,
    rx: Receiver<RecvCmd>,
    input: RecvBatch,
    router: Router,
    /// The last read stopped on its budget, not on an empty socket.
    more_to_read: bool,
}

/// The part of the receive thread that handles one datagram or timer.
struct Router {
    mux: Arc<MuxShared>,
    /// Protocol-timer deadlines (`poll_timeout`) by handle: the same
    /// indexed heap the send thread uses, keyed differently.
    timers: SendSchedule,
    out: SendBatch,
    scratch: Vec<u8>,
    /// Connections whose waiters are woken at the next flush.
    deferred: Vec<Arc<ConnShared>>,
}

impl RecvThread {
    /// Registers the socket with `poll`.
    ///
    /// # Errors
    /// Failure to register with the OS poller.
    pub(crate) fn new(
        mux: Arc<MuxShared>,
        poll: Poll,
        rx: Receiver<RecvCmd>,
    ) -> io::Result<RecvThread> {
        let fd: RawFd = mux.port().raw_fd();
        poll.registry()
            .register(&mut SourceFd(&fd), SOCKET, Interest::READABLE)?;
        let batch = mux.options().effective_batch();
        let input = RecvBatch::new(batch, mux.options().effective_max_datagram());
        let out = SendBatch::new(batch, mux.config().mss as usize);
        Ok(RecvThread {
            poll,
            events: Events::with_capacity(8),
            rx,
            input,
            router: Router {
                mux,
                timers: SendSchedule::new(),
                out,
                scratch: Vec::with_capacity(128),
                deferred: Vec::with_capacity(64),
            },
            more_to_read: true,
        })
    }

    /// The thread body; returns when the endpoint is aborted, or unused
    /// with every connection finished.
    pub(crate) fn run(mut self) {
        loop {
            if self.router.mux.is_aborted() {
                self.router.abort_all();
                break;
            }
            if self.router.is_unused() {
                break;
            }
            let timeout = if self.more_to_read {
                Some(Duration::ZERO)
            } else {
                self.router
                    .next_timer()
                    .map(|at| at.saturating_duration_since(Instant::now()))
            };
            if let Err(e) = self.poll.poll(&mut self.events, timeout) {
                if e.kind() != io::ErrorKind::Interrupted {
                    log::error!("receive thread poll failed: {e}");
                    std::thread::sleep(Duration::from_millis(10));
                }
            }
            // Clear before draining the commands: a request queued after
            // this point wakes the poll again.
            self.router.mux.notify().clear_recv_wake();
            self.read_socket();
            self.run_commands();
            self.router.fire_timers();
            self.router.flush();
        }
        self.router.mux.notify().send_command(SendCmd::Stop);
        self.router.mux.mark_stopped();
        log::info!("endpoint {} stopped", self.router.mux.local_addr());
    }

    /// Reads until the socket is empty or the round budget is used (then
    /// the next poll does not wait).
    fn read_socket(&mut self) {
        let mux = self.router.mux.clone();
        let counters = mux.counters();
        for _ in 0..READ_ROUNDS {
            match self.input.recv(mux.port()) {
                Ok(n) => {
                    Counters::add(&counters.recv_calls, 1);
                    Counters::add(&counters.datagrams_received, n as u64);
                    let now = Instant::now();
                    for i in 0..n {
                        if let Some(d) = self.input.get(i) {
                            Counters::add(&counters.bytes_received, d.data.len() as u64);
                            if d.truncated {
                                Counters::add(&counters.truncated, 1);
                                continue;
                            }
                            self.router.on_datagram(now, d.from, d.data);
                        }
                    }
                    self.router.flush();
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                    self.more_to_read = false;
                    return;
                }
                Err(e) => {
                    // ICMP errors surfacing on the socket and the like: count
                    // them and keep reading.
                    Counters::add(&counters.recv_errors, 1);
                    log::debug!("receive error on {}: {e}", self.router.mux.local_addr());
                }
            }
        }
        self.more_to_read = true;
    }

    fn run_commands(&mut self) {
        loop {
            match self.rx.try_recv() {
                Ok(RecvCmd::Touch(h)) => {
                    let conn = self.router.mux.registry().get(h).cloned();
                    if let Some(conn) = conn {
                        self.router.drive(&conn, Instant::now(), Input::Touch);
                    }
                }
                Err(TryRecvError::Empty) | Err(TryRecvError::Disconnected) => return,
            }
        }
    }
}

impl Router {
    /// Routes one datagram through the core endpoint (udt4-protocol.md §13)
    /// and acts on its verdict.
    fn on_datagram(&mut self, now: Instant, from: SocketAddr, data: &[u8]) {
        let mux = self.mux.clone();
        let target = {
            let mut reg = mux.registry();
            match reg.endpoint.handle(now, from, data, &mut self.scratch) {
                DatagramEvent::Route(h) => reg.get(h).cloned().map(Target::Conn),
                DatagramEvent::Accepted { handle, socket } => {
                    // Shared and stored before the registry lock is
                    // released: `accept` may take the handle at once.
                    let conn = ConnShared::new(mux.notify().clone(), handle, *socket, 0, true, now);
                    reg.insert(conn.clone());
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
        };
        match target {
            Some(Target::Conn(conn)) => self.drive(&conn, now, Input::Datagram(from, data)),
            Some(Target::Accepted(conn)) => {
                // Register goes to the send thread before the connection
                // can have anything to send.
                mux.notify()
                    .send_command(SendCmd::Register(conn.handle, conn.clone()));
                self.drive(&conn, now, Input::Touch);
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
    fn drive(&mut self, conn: &Arc<ConnShared>, now: Instant, input: Input<'_>) {
        let (wake, established) = {
            let mut g = conn.inner.lock();
            if g.aborted {
                return;
            }
            let now = g.clock(now);
            let progress = match input {
                Input::Datagram(from, data) => g.phase.handle_datagram(now, from, data),
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
                if !c.is_closed() && !matches!(input, Input::Touch) {
                    while let Some(buf) = self.out.slot() {
                        match c.poll_transmit_control(now, buf) {
                            Some(t) => self.out.push(t.destination),
                            None => break,
                        }
                    }
                }
            }
            let mut wake = g.settle_timers(self.mux.notify());
            if progress != Progress::Unchanged {
                wake.notify = true;
            }
            (wake, established)
        };
        self.timers.set(conn.handle, wake.timer);
        if established {
            self.mux
                .notify()
                .send_command(SendCmd::Register(conn.handle, conn.clone()));
        }
        let reap = wake.reapable;
        self.act(conn, wake);
        if reap {
            self.reap(conn);
        }
    }

    /// Acts on a settle of the receive thread. Application wake-ups wait
    /// until the batch is flushed: a reader is woken once per batch, not
    /// once per packet.
    fn act(&mut self, conn: &Arc<ConnShared>, wake: Wake) {
        if wake.reschedule.is_some() {
            self.mux
                .notify()
                .send_command(SendCmd::Reschedule(conn.handle));
        }
        if wake.notify
            && !conn
                .notify_deferred
                .swap(true, std::sync::atomic::Ordering::AcqRel)
        {
            self.deferred.push(conn.clone());
        }
    }

    /// The earliest protocol timer: a connection's, or the endpoint's
    /// datagram handler's.
    fn next_timer(&self) -> Option<Instant> {
        let conns = self.timers.peek().map(|(_, at)| at);
        let endpoint = self.mux.registry().endpoint.poll_timeout();
        match (conns, endpoint) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        }
    }

    /// Fires every protocol timer that is due.
    fn fire_timers(&mut self) {
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
    fn is_unused(&self) -> bool {
        self.mux.users() == 0 && self.mux.registry().live() == 0
    }

    /// Aborts every connection: handles fail, nothing more is sent.
    fn abort_all(&mut self) {
        let (conns, listener) = self.mux.registry().drain();
        for c in conns {
            c.abort();
        }
        if let Some(signal) = listener {
            signal.set_ready(true);
        }
        log::info!("endpoint {} aborted", self.mux.local_addr());
    }

    fn flush(&mut self) {
        if self.mux.is_aborted() {
            self.out.discard();
        }
        if !self.out.is_empty() {
            // Never block the receive thread on a full send buffer: a
            // dropped control packet is recovered by the protocol.
            let f = self.out.flush(self.mux.port(), false);
            self.mux.counters().on_flush(f);
        }
        for conn in self.deferred.drain(..) {
            conn.notify_deferred
                .store(false, std::sync::atomic::Ordering::Release);
            conn.wake_waiters();
        }
    }
}
