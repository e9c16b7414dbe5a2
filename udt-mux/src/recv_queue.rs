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
use udt_core::connection::Connection;
use udt_core::handshake::ListenerOutput;
use udt_core::packet::{self, Control, ControlPacket, Packet};
use udt_core::sched::SendSchedule;
use udt_core::SocketId;

use crate::conn::{ConnShared, NewConn, Phase, Role};
use crate::listener::ListenerShared;
use crate::mux::{Counters, MuxShared, RecvCmd, SendCmd};
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
        let fd: RawFd = mux.port.raw_fd();
        poll.registry()
            .register(&mut SourceFd(&fd), SOCKET, Interest::READABLE)?;
        let batch = mux.options.effective_batch();
        let input = RecvBatch::new(batch, mux.options.effective_max_datagram());
        let out = SendBatch::new(batch, mux.config.mss as usize);
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
                    .timers
                    .peek()
                    .map(|(_, at)| at.saturating_duration_since(Instant::now()))
            };
            if let Err(e) = self.poll.poll(&mut self.events, timeout) {
                if e.kind() != io::ErrorKind::Interrupted {
                    log::error!("receive thread poll failed: {e}");
                    std::thread::sleep(Duration::from_millis(10));
                }
            }
            // Clear before draining the commands: a request queued after
            // this point wakes the poll again.
            self.router
                .mux
                .recv_wake_pending
                .store(false, std::sync::atomic::Ordering::SeqCst);
            self.read_socket();
            self.run_commands();
            self.router.fire_timers();
            self.router.flush();
        }
        self.router.mux.send_command(SendCmd::Stop);
        self.router
            .mux
            .stopped
            .store(true, std::sync::atomic::Ordering::SeqCst);
        log::info!("endpoint {} stopped", self.router.mux.port.local_addr());
    }

    /// Reads until the socket is empty or the round budget is used (then
    /// the next poll does not wait).
    fn read_socket(&mut self) {
        let mux = self.router.mux.clone();
        let counters = &mux.counters;
        for _ in 0..READ_ROUNDS {
            match self.input.recv(&mux.port) {
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
                    log::debug!(
                        "receive error on {}: {e}",
                        self.router.mux.port.local_addr()
                    );
                }
            }
        }
        self.more_to_read = true;
    }

    fn run_commands(&mut self) {
        loop {
            match self.rx.try_recv() {
                Ok(RecvCmd::Touch(h)) => {
                    let conn = self.router.mux.registry.lock().slot(h).cloned();
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
    /// Routes one datagram (udt4-protocol.md §13).
    fn on_datagram(&mut self, now: Instant, from: SocketAddr, data: &[u8]) {
        let mux = self.mux.clone();
        let counters = &mux.counters;
        let Some(dest) = packet::peek_dest(data) else {
            Counters::add(&counters.malformed, 1);
            return;
        };
        let target = {
            let mut reg = mux.registry.lock();
            if dest != SocketId::HANDSHAKE {
                reg.by_id(dest).cloned()
            } else if let Some(c) = reg.by_peer(from) {
                // Rendezvous handshakes are matched by exact peer address
                // first; the listener takes the rest (§4.2, §13).
                Some(c.clone())
            } else if reg.listener.is_some() {
                match self.on_listener(&mut reg, now, from, data) {
                    ListenerAction::Done => return,
                    ListenerAction::Route(c) => Some(c),
                    ListenerAction::Accepted(conn, queue) => {
                        drop(reg);
                        self.adopt_accepted(conn, queue, now);
                        return;
                    }
                }
            } else {
                None
            }
        };
        let Some(conn) = target else {
            Counters::add(&counters.unknown_destination, 1);
            if dest != SocketId::HANDSHAKE {
                self.answer_from_grave(now, dest, from, data);
            }
            return;
        };
        if conn.peer != from {
            // Every packet must come from the recorded peer (UDT4
            // CRcvQueue::worker compares IP and port).
            Counters::add(&counters.wrong_source, 1);
            return;
        }
        self.drive(&conn, now, Input::Datagram(from, data));
        if self.out.is_full() {
            self.flush();
        }
    }

    /// A packet for a connection that finished recently: its peer missed
    /// our shutdown (sent once, never acknowledged, udt4-protocol.md §12),
    /// so send another instead of letting it wait for its idle timeout.
    /// At most one answer per 50 ms per connection, never to a shutdown.
    fn answer_from_grave(&mut self, now: Instant, dest: SocketId, from: SocketAddr, data: &[u8]) {
        const REPLY_GAP: Duration = Duration::from_millis(50);
        if matches!(
            packet::decode(data),
            Ok(Packet::Control(ControlPacket {
                control: Control::Shutdown,
                ..
            }))
        ) {
            return;
        }
        let peer_id = {
            let mut reg = self.mux.registry.lock();
            let Some(t) = reg.tombstone(dest, now) else {
                return;
            };
            if t.peer != from || t.last_reply.is_some_and(|at| now < at + REPLY_GAP) {
                return;
            }
            t.last_reply = Some(now);
            t.peer_id
        };
        let Some(buf) = self.out.slot() else {
            return;
        };
        Packet::Control(ControlPacket {
            timestamp: 0,
            dest: peer_id,
            control: Control::Shutdown,
        })
        .encode(buf);
        self.out.push(from);
        log::debug!("{dest} is closed: repeated the shutdown to {from}");
    }

    /// Runs the listener on a dest-0 datagram, under the registry lock.
    fn on_listener(
        &mut self,
        reg: &mut crate::registry::Registry,
        now: Instant,
        from: SocketAddr,
        data: &[u8],
    ) -> ListenerAction {
        let Some(entry) = reg.listener.as_mut() else {
            return ListenerAction::Done;
        };
        self.scratch.clear();
        match entry
            .machine
            .handle_datagram(now, from, data, &mut self.scratch)
        {
            ListenerOutput::Nothing => ListenerAction::Done,
            ListenerOutput::Reply => {
                self.out.push_copy(from, &self.scratch);
                ListenerAction::Done
            }
            ListenerOutput::Accept(req) => {
                let key = (req.peer_addr, req.peer_socket_id, req.peer_isn);
                if let Some(existing) = reg.accepted(&key) {
                    // A repeated final request: the connection answers it
                    // with its stored response.
                    return ListenerAction::Route(existing.clone());
                }
                let Some(entry) = reg.listener.as_ref() else {
                    return ListenerAction::Done;
                };
                let queue = entry.shared.clone();
                let config = entry.config.clone();
                if !queue.has_room() {
                    req.reject(&mut self.scratch);
                    self.out.push_copy(from, &self.scratch);
                    Counters::add(&self.mux.counters.handshakes_rejected, 1);
                    log::debug!("accept backlog full: rejected {from}");
                    return ListenerAction::Done;
                }
                let id = reg.new_socket_id();
                let handle = reg.reserve_handle();
                let params = req.accept(id, &config, &mut self.scratch);
                self.out.push_copy(from, &self.scratch);
                let connection = Connection::new(params, config.clone(), now);
                let conn = ConnShared::new(
                    self.mux.clone(),
                    NewConn {
                        handle,
                        socket_id: id,
                        peer: req.peer_addr,
                        rendezvous: false,
                        accept_key: Some(key),
                        config,
                        phase: Phase::Established(Box::new(connection)),
                        handles: 0,
                        queued_for_accept: true,
                        now,
                    },
                );
                reg.insert(conn.clone());
                log::debug!("accepted {} from {from} as {id}", req.peer_socket_id);
                ListenerAction::Accepted(conn, queue)
            }
        }
    }

    /// Starts scheduling a just-accepted connection and queues it for
    /// `accept`. Register goes to the send thread before anyone else can
    /// know the handle.
    fn adopt_accepted(&mut self, conn: Arc<ConnShared>, queue: Arc<ListenerShared>, now: Instant) {
        self.mux
            .send_command(SendCmd::Register(conn.handle, conn.clone()));
        self.drive(&conn, now, Input::Touch);
        if !queue.push(conn.clone()) {
            // The listener closed meanwhile: nobody will accept it.
            let wake = {
                let mut g = conn.inner.lock();
                g.queued_for_accept = false;
                let now = g.clock(now);
                if let Some(c) = g.phase.connection() {
                    c.close(now);
                }
                g.settle(&self.mux, Role::Recv)
            };
            self.timers.set(conn.handle, wake.timer);
            let reap = wake.reapable;
            conn.run_wake(wake, Role::Recv);
            if reap {
                self.reap(&conn);
            }
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
            match input {
                Input::Datagram(from, data) => g.phase.handle_datagram(now, from, data),
                Input::Timeout => g.phase.handle_timeout(now),
                Input::Touch => {}
            }
            let mut established = false;
            if g.phase.complete_handshake(&conn.config, now) {
                match &mut g.phase {
                    Phase::Established(c) => {
                        established = true;
                        log::debug!("{} connected to {}", conn.socket_id, conn.peer);
                        // A rendezvous may complete on the peer's first data
                        // packet (§4.2 step 4): give it to the connection.
                        if let Input::Datagram(from, data) = input {
                            if !packet::is_control(data) {
                                c.handle_datagram(now, from, data);
                            }
                        }
                        if g.handles == 0 {
                            // Nobody waits for it any more (the connect
                            // call gave up): close it politely.
                            if let Some(c) = g.phase.connection() {
                                c.close(now);
                            }
                        }
                    }
                    Phase::Failed(e) => {
                        log::debug!(
                            "{} handshake with {} failed: {e}",
                            conn.socket_id,
                            conn.peer
                        );
                    }
                    Phase::Connecting(_) => {}
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
            match &mut g.phase {
                Phase::Connecting(_) => {
                    while let Some(buf) = self.out.slot() {
                        match g.phase.poll_transmit(now, buf) {
                            Some(dest) => self.out.push(dest),
                            None => break,
                        }
                    }
                }
                Phase::Established(c) if !c.is_closed() && !matches!(input, Input::Touch) => {
                    while let Some(buf) = self.out.slot() {
                        match c.poll_transmit_control(now, buf) {
                            Some(t) => self.out.push(t.destination),
                            None => break,
                        }
                    }
                }
                _ => {}
            }
            let mut wake = g.settle(&self.mux, Role::Recv);
            if established || matches!(g.phase, Phase::Failed(_)) {
                wake.notify = true;
            }
            (wake, established)
        };
        self.timers.set(conn.handle, wake.timer);
        if established {
            self.mux
                .send_command(SendCmd::Register(conn.handle, conn.clone()));
        }
        let reap = wake.reapable;
        self.run_wake(conn, wake);
        if reap {
            self.reap(conn);
        }
    }

    /// Like [`ConnShared::run_wake`], but application wake-ups wait until
    /// the batch is flushed: a reader is woken once per batch, not once
    /// per packet.
    fn run_wake(&mut self, conn: &Arc<ConnShared>, mut wake: crate::conn::Wake) {
        if wake.notify {
            wake.notify = false;
            if !conn
                .notify_deferred
                .swap(true, std::sync::atomic::Ordering::AcqRel)
            {
                self.deferred.push(conn.clone());
            }
        }
        conn.run_wake(wake, Role::Recv);
    }

    /// Fires every protocol timer that is due.
    fn fire_timers(&mut self) {
        let now = Instant::now();
        while let Some(h) = self.timers.pop_due(now) {
            let conn = self.mux.registry.lock().slot(h).cloned();
            if let Some(conn) = conn {
                self.drive(&conn, now, Input::Timeout);
            }
            if self.out.is_full() {
                self.flush();
            }
        }
    }

    /// Removes a finished connection nobody holds any more.
    fn reap(&mut self, conn: &Arc<ConnShared>) {
        {
            let mut reg = self.mux.registry.lock();
            let peer_id = {
                let g = conn.inner.lock();
                if !g.is_reapable() {
                    return;
                }
                g.phase.connection_ref().map(|c| c.peer_socket_id())
            };
            if !reg.remove(conn) {
                return;
            }
            if let Some(peer_id) = peer_id {
                let lifetime = conn
                    .config
                    .peer_idle_timeout
                    .clamp(Duration::from_secs(1), Duration::from_secs(60));
                reg.bury(conn.socket_id, conn.peer, peer_id, Instant::now(), lifetime);
            }
        }
        self.timers.remove(conn.handle);
        self.mux.send_command(SendCmd::Deregister(conn.handle));
        log::debug!("{} removed", conn.socket_id);
    }

    /// True once no endpoint or handle refers to the multiplexer and every
    /// connection has finished: the threads may stop.
    fn is_unused(&self) -> bool {
        self.mux.users() == 0 && self.mux.registry.lock().live() == 0
    }

    /// Aborts every connection: handles fail, nothing more is sent.
    fn abort_all(&mut self) {
        let (conns, listener) = {
            let mut reg = self.mux.registry.lock();
            let listener = reg.listener.take();
            (reg.drain(), listener)
        };
        for c in conns {
            c.abort();
        }
        if let Some(l) = listener {
            l.shared.close();
        }
        log::info!("endpoint {} aborted", self.mux.port.local_addr());
    }

    fn flush(&mut self) {
        if self.mux.is_aborted() {
            self.out.discard();
        }
        if !self.out.is_empty() {
            // Never block the receive thread on a full send buffer: a
            // dropped control packet is recovered by the protocol.
            let f = self.out.flush(&self.mux.port, false);
            self.mux.counters.on_flush(f);
        }
        for conn in self.deferred.drain(..) {
            conn.notify_deferred
                .store(false, std::sync::atomic::Ordering::Release);
            conn.cond.notify_all();
            conn.watchers.notify();
        }
    }
}

/// What the listener made of a datagram.
enum ListenerAction {
    /// Answered or ignored.
    Done,
    /// A repeat for an existing connection: route it there.
    Route(Arc<ConnShared>),
    /// A new connection to queue for accept.
    Accepted(Arc<ConnShared>, Arc<ListenerShared>),
}
