//! A UDT endpoint for the simulator: the same [`endpoint::Endpoint`]
//! routing that udt-mux runs on real sockets, driven on one simulated
//! address, with its sockets paced by the same [`SendSchedule`] the
//! multiplexer uses. Only threads, locks and system calls are left out.

use std::collections::VecDeque;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use super::Endpoint as SimEndpoint;
use crate::config::Config;
use crate::connection::Connection;
use crate::endpoint::{ConnectionHandle, DatagramEvent, Endpoint, Progress, Socket};
use crate::handshake::ConnectError;
use crate::sched::SendSchedule;
use crate::seq::{SeqNumber, SocketId};

/// A simulated UDT endpoint: one address, any number of connections.
#[derive(Debug)]
pub struct UdtNode {
    addr: SocketAddr,
    config: Arc<Config>,
    endpoint: Endpoint,
    /// Sockets by handle: handshakes and connections (finished ones stay,
    /// so a test can still read them).
    sockets: Vec<Option<Socket>>,
    /// Handshakes that failed, for [`connect_error`](Self::connect_error).
    failed: Vec<(SocketId, ConnectError)>,
    /// Data send times, as the multiplexer's send thread keeps them.
    sched: SendSchedule,
    /// The endpoint's answers waiting to go out.
    replies: VecDeque<(SocketAddr, Vec<u8>)>,
    scratch: Vec<u8>,
    /// UDT4's timer cadence ([`with_udt4_timer_cadence`](Self::with_udt4_timer_cadence)):
    /// the sweep period, or `None` for timers run at their deadlines.
    timer_sweep: Option<Duration>,
    /// Per handle, when its connection's timers were last checked (UDT4
    /// cadence only).
    last_check: Vec<Option<Instant>>,
}

/// How often UDT4's receive worker runs the timers of a connection none of
/// whose datagrams arrived meanwhile (udt4-protocol.md §7).
pub const UDT4_TIMER_SWEEP: Duration = Duration::from_millis(100);

impl UdtNode {
    /// A node with the given configuration; `seed` drives its socket IDs,
    /// ISNs and cookie secret.
    pub fn new(addr: SocketAddr, config: Config, seed: u64) -> Self {
        UdtNode {
            addr,
            config: Arc::new(config),
            endpoint: Endpoint::new(seed),
            sockets: Vec::new(),
            failed: Vec::new(),
            sched: SendSchedule::new(),
            replies: VecDeque::new(),
            scratch: Vec::with_capacity(128),
            timer_sweep: None,
            last_check: Vec::new(),
        }
    }

    /// This node runs a connection's timers as UDT4 does: when a datagram
    /// of that connection arrives, and otherwise on a sweep every
    /// [`UDT4_TIMER_SWEEP`], not at their deadlines. So a UDT4 receiver's
    /// ACK, due every 10 ms, leaves only when something arrives after it
    /// fell due, or at the next sweep. Handshakes keep their deadlines.
    pub fn with_udt4_timer_cadence(mut self) -> Self {
        self.timer_sweep = Some(UDT4_TIMER_SWEEP);
        self
    }

    /// When socket `h`'s timers will next run: at their deadline, or under
    /// UDT4's cadence at the first sweep at or after it (handshakes keep
    /// their deadlines); `None` when none is armed.
    fn timers_run_at(&self, h: usize) -> Option<Instant> {
        let socket = self.sockets.get(h)?.as_ref()?;
        let due = socket.poll_timeout()?;
        match self.timer_sweep {
            Some(sweep) if !socket.is_connecting() => Some(self.swept_at(h, due, sweep)),
            _ => Some(due),
        }
    }

    /// When connection `h`'s timers, next due at `due`, will run under
    /// UDT4's cadence: at the first sweep at or after `due`.
    fn swept_at(&self, h: usize, due: Instant, sweep: Duration) -> Instant {
        let Some(last) = self.last_check.get(h).copied().flatten() else {
            return due;
        };
        let Some(wait) = due.checked_duration_since(last) else {
            return last + sweep;
        };
        let sweeps = wait.as_nanos().div_ceil(sweep.as_nanos().max(1)).max(1);
        let sweeps = u32::try_from(sweeps).unwrap_or(u32::MAX);
        last + sweep.saturating_mul(sweeps)
    }

    /// Records that connection `h`'s timers were checked at `now`.
    fn mark_checked(&mut self, h: usize, now: Instant) {
        if self.last_check.len() <= h {
            self.last_check.resize(h + 1, None);
        }
        self.last_check[h] = Some(now);
    }

    /// This node's address.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// The node's configuration.
    pub fn config(&self) -> &Config {
        &self.config
    }

    /// The routing endpoint (its counters, its datagram handler).
    pub fn endpoint(&mut self) -> &mut Endpoint {
        &mut self.endpoint
    }

    /// Starts listening for callers (backlog unbounded for tests: they
    /// accept when they like).
    pub fn listen(&mut self, now: Instant) {
        // A second listen keeps the first listener, as a test expects.
        let _ = self.endpoint.listen(now, self.config.clone(), usize::MAX);
    }

    /// Starts listening with an accept backlog of `backlog` (the hostile
    /// tests need the per-source and backlog limits of a real listener).
    pub fn listen_with_backlog(&mut self, now: Instant, backlog: usize) {
        let _ = self.endpoint.listen(now, self.config.clone(), backlog);
    }

    /// Starts connecting to a listener; returns the new socket's ID.
    pub fn connect(&mut self, now: Instant, peer: SocketAddr) -> SocketId {
        let (h, s) = self.endpoint.connect(now, peer, self.config.clone());
        self.store(h, s)
    }

    /// Starts connecting with a configuration of its own (another
    /// congestion controller, say) instead of the node's.
    pub fn connect_with(&mut self, now: Instant, peer: SocketAddr, config: Config) -> SocketId {
        let (h, s) = self.endpoint.connect(now, peer, Arc::new(config));
        self.store(h, s)
    }

    /// Starts connecting with a chosen initial sequence number (tests of
    /// the sequence wrap).
    pub fn connect_with_isn(&mut self, now: Instant, peer: SocketAddr, isn: SeqNumber) -> SocketId {
        let (h, s) = self
            .endpoint
            .connect_with_isn(now, peer, self.config.clone(), isn);
        self.store(h, s)
    }

    /// Starts a rendezvous connection with `peer`; returns the socket's ID,
    /// or `None` when a rendezvous with `peer` exists already.
    pub fn rendezvous(&mut self, now: Instant, peer: SocketAddr) -> SocketId {
        match self.endpoint.rendezvous(now, peer, self.config.clone()) {
            Ok((h, s)) => self.store(h, s),
            // The test asked twice: the first socket is the one.
            Err(_) => self
                .sockets
                .iter()
                .flatten()
                .find(|s| s.peer_addr() == peer)
                .map(Socket::socket_id)
                .unwrap_or(SocketId::HANDSHAKE),
        }
    }

    /// Takes the next accepted connection's ID, if any, and gives it its
    /// whole receive window.
    pub fn accept(&mut self) -> Option<SocketId> {
        let h = self.endpoint.accept()?;
        let socket = self.sockets.get_mut(h.index())?.as_mut()?;
        if let Some(c) = socket.connection() {
            c.limit_receive_window(None);
        }
        self.sched.set(h, socket.next_send_time());
        Some(socket.socket_id())
    }

    /// The connection with this socket ID, once established.
    pub fn connection(&self, id: SocketId) -> Option<&Connection> {
        self.socket(self.endpoint.handle_of(id)?)?.connection_ref()
    }

    /// Runs `f` on the connection with this ID and updates the schedule
    /// afterwards (the application side of a test). Returns `None` when
    /// there is no such connection.
    pub fn with_connection<R>(
        &mut self,
        id: SocketId,
        f: impl FnOnce(&mut Connection) -> R,
    ) -> Option<R> {
        let h = self.endpoint.handle_of(id)?;
        let socket = self.sockets.get_mut(h.index())?.as_mut()?;
        let r = f(socket.connection()?);
        self.sched.set(h, socket.next_send_time());
        Some(r)
    }

    /// True once `id` is an established connection.
    pub fn is_connected(&self, id: SocketId) -> bool {
        self.connection(id).is_some()
    }

    /// The error a failed connect ended with, if it failed.
    pub fn connect_error(&self, id: SocketId) -> Option<ConnectError> {
        self.failed.iter().find(|(i, _)| *i == id).map(|(_, e)| *e)
    }

    /// IDs of every established connection.
    pub fn connection_ids(&self) -> Vec<SocketId> {
        self.sockets
            .iter()
            .flatten()
            .filter(|s| s.connection_ref().is_some())
            .map(Socket::socket_id)
            .collect()
    }

    fn socket(&self, h: ConnectionHandle) -> Option<&Socket> {
        self.sockets.get(h.index())?.as_ref()
    }

    fn store(&mut self, h: ConnectionHandle, socket: Socket) -> SocketId {
        let id = socket.socket_id();
        if self.sockets.len() <= h.index() {
            self.sockets.resize_with(h.index() + 1, || None);
        }
        self.sched.set(h, socket.next_send_time());
        self.sockets[h.index()] = Some(socket);
        id
    }

    /// After any input to socket `h`: a failed handshake leaves the tables
    /// (its error is kept for `connect_error`), the send schedule follows
    /// the socket.
    fn settle(&mut self, now: Instant, h: ConnectionHandle, progress: Progress) {
        let Some(slot) = self.sockets.get_mut(h.index()) else {
            return;
        };
        if progress == Progress::Failed {
            if let Some(socket) = slot.take() {
                self.endpoint.remove(now, h, &socket);
                if let Some(e) = socket.failure() {
                    self.failed.push((socket.socket_id(), e));
                }
            }
            self.sched.set(h, None);
            return;
        }
        let next = slot.as_ref().and_then(Socket::next_send_time);
        self.sched.set(h, next);
    }
}

impl SimEndpoint for UdtNode {
    fn handle_datagram(&mut self, now: Instant, from: SocketAddr, datagram: &[u8]) {
        match self.endpoint.handle(now, from, datagram, &mut self.scratch) {
            DatagramEvent::Route(h) => {
                let Some(socket) = self.sockets.get_mut(h.index()).and_then(Option::as_mut) else {
                    return;
                };
                let mut progress = socket.handle_datagram(now, from, datagram);
                if self.timer_sweep.is_some() && !socket.is_connecting() {
                    // UDT4 checks the connection's timers after every
                    // datagram it processes for it.
                    if progress != Progress::Failed
                        && socket.poll_timeout().is_some_and(|t| t <= now)
                    {
                        progress = socket.handle_timeout(now);
                    }
                    self.mark_checked(h.index(), now);
                }
                self.settle(now, h, progress);
            }
            DatagramEvent::Accepted { handle, socket } => {
                self.replies.push_back((from, self.scratch.clone()));
                self.store(handle, *socket);
            }
            DatagramEvent::Respond => self.replies.push_back((from, self.scratch.clone())),
            DatagramEvent::Handled | DatagramEvent::Dropped(_) => {}
        }
    }

    fn handle_timeout(&mut self, now: Instant) {
        self.endpoint.handle_timeout(now);
        for i in 0..self.sockets.len() {
            if self.timers_run_at(i).is_none_or(|at| at > now) {
                continue;
            }
            if let Some(socket) = self.sockets[i].as_mut() {
                let swept = self.timer_sweep.is_some() && !socket.is_connecting();
                let progress = socket.handle_timeout(now);
                if swept {
                    self.mark_checked(i, now);
                }
                self.settle(now, ConnectionHandle(i as u32), progress);
            }
        }
    }

    fn poll_transmit(&mut self, now: Instant, buf: &mut Vec<u8>) -> Option<SocketAddr> {
        if let Some((to, data)) = self.replies.pop_front() {
            buf.clear();
            buf.extend_from_slice(&data);
            return Some(to);
        }
        if let Some(to) = self.endpoint.poll_transmit(now, buf) {
            return Some(to);
        }
        // Handshakes are not in the send schedule: they run on timers.
        for socket in self.sockets.iter_mut().flatten() {
            if socket.is_connecting() {
                if let Some(to) = socket.poll_transmit(now, buf) {
                    return Some(to);
                }
            }
        }
        while let Some(h) = self.sched.pop_due(now) {
            let Some(socket) = self.sockets.get_mut(h.index()).and_then(Option::as_mut) else {
                continue;
            };
            let to = socket.poll_transmit(now, buf);
            self.sched.set(h, socket.next_send_time());
            if to.is_some() {
                return to;
            }
        }
        None
    }

    fn poll_wakeup(&self) -> Option<Instant> {
        let mut at = self.sched.peek().map(|(_, t)| t);
        let mut consider = |t: Option<Instant>| {
            if let Some(t) = t {
                at = Some(at.map_or(t, |a| a.min(t)));
            }
        };
        consider(self.endpoint.poll_timeout());
        for i in 0..self.sockets.len() {
            consider(self.timers_run_at(i));
        }
        at
    }
}
