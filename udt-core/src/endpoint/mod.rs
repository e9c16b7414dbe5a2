//! Everything above one connection that is still protocol, in the role of
//! quinn-proto's `Endpoint`: the socket-ID table, the listener (SYN cookie,
//! backlog, accept de-duplication and queue), the rendezvous table,
//! tombstones that answer late packets, and the hand-off of datagrams that
//! are not UDT to a registered [`DatagramHandler`].
//!
//! Sans-I/O like the rest of the crate: a datagram goes in through
//! [`Endpoint::handle`], which says where it belongs ([`DatagramEvent`]);
//! the driver (udt-mux on real sockets, the simulator's
//! `sim::UdtNode` in tests) owns the [`Socket`]s by
//! [`ConnectionHandle`] and feeds them. Both drivers run this same code, so
//! the simulator tests the routing that runs on real sockets.
//!
//! Routing (udt4-protocol.md §13), in this order:
//! 1. a destination socket ID of a live socket, from that socket's peer
//!    address: [`DatagramEvent::Route`];
//! 2. a datagram the registered handler recognises (STUN):
//!    [`DatagramEvent::Handled`];
//! 3. destination 0: a rendezvous socket registered for exactly that peer
//!    address, else the listener (a cookie challenge, a rejection, a new
//!    connection, or the existing connection of a repeated request);
//! 4. a recently finished connection: a repeated shutdown, now and then;
//! 5. anything else is dropped and counted.

mod foreign;
mod replay_guard;
mod socket;
#[cfg(test)]
mod tests;
mod tombstones;

pub use foreign::{is_stun, DatagramHandler, STUN_HEADER_SIZE, STUN_MAGIC_COOKIE};
pub use socket::{Progress, Socket};

use std::collections::hash_map::Entry as MapEntry;
use std::collections::{HashMap, VecDeque};
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Instant;

use rand_chacha::rand_core::{RngCore, SeedableRng};
use rand_chacha::ChaCha20Rng;

use crate::config::Config;
use crate::connection::Connection;
use crate::handshake::{Caller, Connecting, Listener, ListenerOutput, Rendezvous};
use crate::packet::{self, Control, ControlPacket, Packet};
pub use crate::sched::ConnectionHandle;
use crate::seq::{SeqNumber, SocketId};
use replay_guard::ReplayGuard;
use tombstones::{Tombstones, TOMBSTONE_LIFETIME};

/// The receive window, in packets, of a connection waiting in the accept
/// queue: the most of a peer's data it holds before the application takes
/// it (about 23 KB at the default MSS, instead of the whole receive buffer,
/// ~11 MiB). The driver restores the full window on accept
/// ([`Connection::limit_receive_window`]).
pub const PENDING_RECV_WINDOW: u32 = 16;

/// The key a listener uses to recognise a repeated connection request
/// (UDT4 `newConnection`: peer address, peer socket ID, peer ISN).
type AcceptKey = (SocketAddr, SocketId, SeqNumber);

/// Where [`Endpoint::handle`] sends a datagram.
#[derive(Debug)]
#[must_use]
pub enum DatagramEvent {
    /// Feed the datagram to the socket with this handle
    /// ([`Socket::handle_datagram`]).
    Route(ConnectionHandle),
    /// The listener accepted a new connection: the driver keeps `socket`
    /// under `handle` (it is already queued for [`Endpoint::accept`]) and
    /// sends the response in the buffer back to the datagram's source.
    Accepted {
        /// The new connection's handle.
        handle: ConnectionHandle,
        /// The new connection (boxed: a connection is large).
        socket: Box<Socket>,
    },
    /// Send the buffer back to the datagram's source (a cookie challenge,
    /// a rejection, a repeated shutdown).
    Respond,
    /// The registered [`DatagramHandler`] took it.
    Handled,
    /// Dropped, for this reason (counted in [`EndpointCounters`]).
    Dropped(DropReason),
}

/// Why a datagram was dropped.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DropReason {
    /// Too short to carry a UDT header.
    Malformed,
    /// For a socket ID nobody here has, or for ID 0 with no listener or
    /// rendezvous for that peer, or a handshake the listener ignores.
    UnknownDestination,
    /// For a live socket ID, from another address than its peer's.
    WrongSource,
}

/// Datagrams the endpoint dropped or answered by itself.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct EndpointCounters {
    /// Datagrams too short to carry a UDT header.
    pub malformed: u64,
    /// Datagrams for nobody here (see [`DropReason::UnknownDestination`]).
    pub unknown_destination: u64,
    /// Datagrams for a live socket from another address than its peer.
    pub wrong_source: u64,
    /// Connection requests refused because the accept backlog was full.
    pub handshakes_rejected: u64,
    /// Connection requests ignored because their source address already
    /// has its share of the backlog waiting (the caller retries; see
    /// [`Endpoint::listen`]).
    pub handshakes_throttled: u64,
    /// Shutdowns repeated to peers of finished connections.
    pub tombstone_answers: u64,
    /// Datagrams handed to the [`DatagramHandler`].
    pub foreign: u64,
    /// Secure listener: final requests whose key agreement failed (wrong
    /// key, a static key not allowed, malformed), refused with a reason.
    pub secure_refused: u64,
    /// Secure listener: final requests that replayed the key-agreement
    /// message of a connection accepted earlier, ignored.
    pub secure_replays: u64,
    /// Secure connections that ended because the peer refused our key
    /// agreement before any authentic packet (`ConnectionError::AuthFailed`:
    /// the peer gave a wrong code or key), counted when they are removed,
    /// accepted or not.
    pub secure_peer_refused: u64,
}

/// Why [`Endpoint::listen`] failed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ListenError {
    /// The endpoint already has a listener (one per port, as in UDT4).
    AlreadyListening,
}

/// Why [`Endpoint::rendezvous`] failed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RendezvousError {
    /// A rendezvous with that peer address exists on this endpoint: dest-0
    /// handshakes are matched by peer address, so a second one would be
    /// ambiguous.
    Busy,
}

/// Identifies one [`Endpoint::listen`] call, so a stale listener handle
/// cannot close its successor.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ListenerId(u64);

/// The listener and its accept queue.
#[derive(Debug)]
struct ListenerState {
    id: ListenerId,
    /// The stateless SYN-cookie machine.
    machine: Listener,
    /// Configuration of accepted connections.
    config: Arc<Config>,
    /// At most this many accepted connections wait for [`Endpoint::accept`].
    backlog: usize,
    queue: VecDeque<ConnectionHandle>,
}

/// What the endpoint knows of one socket for routing.
#[derive(Clone, Copy, Debug)]
struct Route {
    socket_id: SocketId,
    peer: SocketAddr,
    rendezvous: bool,
    accept_key: Option<AcceptKey>,
}

/// The routing half of a UDT multiplexer, without I/O. See the module
/// documentation.
#[derive(Debug)]
pub struct Endpoint {
    /// Socket IDs, ISNs and cookie secrets. A CSPRNG: one connection's
    /// values must not reveal another's (issue 10 item 1), which UDT4's
    /// counting-down IDs did.
    rng: ChaCha20Rng,
    /// Dense handles, reused so the drivers' heaps stay small.
    routes: Vec<Option<Route>>,
    free: Vec<u32>,
    live: usize,
    by_id: HashMap<SocketId, ConnectionHandle>,
    /// Rendezvous sockets (pending or established) by peer address: dest-0
    /// handshakes from that address go to them (udt4-protocol.md §4.2).
    by_peer: HashMap<SocketAddr, ConnectionHandle>,
    /// Accepted connections by request key, so a repeated final request
    /// reaches the connection instead of creating another (§4.1).
    accepted: HashMap<AcceptKey, ConnectionHandle>,
    listener: Option<ListenerState>,
    listeners_made: u64,
    tombstones: Tombstones,
    /// Secure listener: first messages of recent connections.
    replays: ReplayGuard,
    handler: Option<Box<dyn DatagramHandler>>,
    counters: EndpointCounters,
    /// The first time the endpoint was told: the origin of its
    /// connections' keep-alive grid (`Connection::align_soft_timers`).
    timer_origin: Option<Instant>,
}

impl Endpoint {
    /// An endpoint whose socket IDs, ISNs and cookie secrets are drawn
    /// from a ChaCha20 generator keyed with `key`. A driver on a real
    /// network passes 32 bytes from the operating system's random source
    /// (udt-mux uses `getrandom`): the values are then unpredictable to
    /// anyone who does not see the traffic.
    pub fn with_key(key: [u8; 32]) -> Endpoint {
        Endpoint::from_rng(ChaCha20Rng::from_seed(key))
    }

    /// A replayable endpoint for tests and the simulator: the same `seed`
    /// gives the same socket IDs, ISNs and cookie secrets. 64 bits are
    /// too few to keep them secret: real drivers use
    /// [`with_key`](Self::with_key).
    pub fn new(seed: u64) -> Endpoint {
        Endpoint::from_rng(ChaCha20Rng::seed_from_u64(seed))
    }

    fn from_rng(rng: ChaCha20Rng) -> Endpoint {
        Endpoint {
            rng,
            routes: Vec::new(),
            free: Vec::new(),
            live: 0,
            by_id: HashMap::new(),
            by_peer: HashMap::new(),
            accepted: HashMap::new(),
            listener: None,
            listeners_made: 0,
            tombstones: Tombstones::default(),
            replays: ReplayGuard::default(),
            handler: None,
            counters: EndpointCounters::default(),
            timer_origin: None,
        }
    }

    /// The origin of the keep-alive grid shared by this endpoint's
    /// connections: the first `now` it was given.
    fn timer_origin(&mut self, now: Instant) -> Instant {
        *self.timer_origin.get_or_insert(now)
    }

    // ----- sockets made by the application -----

    /// Starts a handshake with the listener at `peer`. The driver keeps the
    /// returned socket under the returned handle and drives it.
    pub fn connect(
        &mut self,
        now: Instant,
        peer: SocketAddr,
        config: Arc<Config>,
    ) -> (ConnectionHandle, Socket) {
        let isn = self.new_isn();
        self.connect_with_isn(now, peer, config, isn)
    }

    /// Like [`connect`](Self::connect) with a chosen initial sequence
    /// number (tests of the sequence wrap).
    pub fn connect_with_isn(
        &mut self,
        now: Instant,
        peer: SocketAddr,
        config: Arc<Config>,
        isn: SeqNumber,
    ) -> (ConnectionHandle, Socket) {
        let id = self.new_socket_id();
        let caller = Caller::new(&config, id, peer, isn, now);
        self.start_handshake(now, config, Connecting::Caller(caller))
    }

    /// Starts a rendezvous handshake with `peer` (both sides call).
    ///
    /// # Errors
    /// [`RendezvousError::Busy`] when a rendezvous with `peer` exists.
    pub fn rendezvous(
        &mut self,
        now: Instant,
        peer: SocketAddr,
        config: Arc<Config>,
    ) -> Result<(ConnectionHandle, Socket), RendezvousError> {
        if self.by_peer.contains_key(&peer) {
            return Err(RendezvousError::Busy);
        }
        let id = self.new_socket_id();
        let isn = self.new_isn();
        let r = Rendezvous::new(&config, id, peer, isn, now);
        Ok(self.start_handshake(now, config, Connecting::Rendezvous(r)))
    }

    /// Registers an outgoing handshake and wraps it in its socket.
    fn start_handshake(
        &mut self,
        now: Instant,
        config: Arc<Config>,
        handshake: Connecting,
    ) -> (ConnectionHandle, Socket) {
        let mut socket = Socket::connecting(config, handshake);
        socket.set_timer_origin(self.timer_origin(now));
        let handle = self.insert(Route {
            socket_id: socket.socket_id(),
            peer: socket.peer_addr(),
            rendezvous: socket.is_rendezvous(),
            accept_key: None,
        });
        (handle, socket)
    }

    /// Starts accepting callers. `config` is the configuration of accepted
    /// connections (its socket type is the one callers must ask for); at
    /// most `backlog` (at least 1) accepted connections wait for
    /// [`accept`](Self::accept), further callers are refused.
    ///
    /// Limits against a hostile caller (issue 10 item 7): one source address
    /// (IP and port: what one cookie proves) may fill the backlog only up
    /// to [`per_source_share`] of it: an eighth (at least one place) stays
    /// for everyone else, so one cookie cannot fill the queue with made-up
    /// socket IDs. Its further requests are ignored, so an honest burst
    /// retries and gets in once the application accepts. Waiting connections keep a receive
    /// window of [`PENDING_RECV_WINDOW`] packets until accepted. A waiting
    /// connection that ends with an error is dropped from the queue when
    /// the driver [`remove`](Self::remove)s it.
    ///
    /// # Errors
    /// [`ListenError::AlreadyListening`] when a listener exists.
    pub fn listen(
        &mut self,
        now: Instant,
        config: Arc<Config>,
        backlog: usize,
    ) -> Result<ListenerId, ListenError> {
        if self.listener.is_some() {
            return Err(ListenError::AlreadyListening);
        }
        let mut secret = [0u8; 16];
        self.rng.fill_bytes(&mut secret);
        self.listeners_made += 1;
        let id = ListenerId(self.listeners_made);
        self.listener = Some(ListenerState {
            id,
            machine: Listener::new(&config, secret, now),
            config,
            backlog: backlog.max(1),
            queue: VecDeque::new(),
        });
        Ok(id)
    }

    /// True while listener `id` is the endpoint's listener.
    pub fn is_listening(&self, id: ListenerId) -> bool {
        self.listener.as_ref().is_some_and(|l| l.id == id)
    }

    /// Stops listener `id` (nothing happens when another listener has
    /// replaced it); returns the connections it accepted that nobody took,
    /// which the driver closes (as UDT4 does).
    pub fn close_listener(&mut self, id: ListenerId) -> Vec<ConnectionHandle> {
        if !self.is_listening(id) {
            return Vec::new();
        }
        self.listener
            .take()
            .map(|l| l.queue.into_iter().collect())
            .unwrap_or_default()
    }

    /// Takes the oldest accepted connection, if one waits. The driver then
    /// restores its receive window: `limit_receive_window(None)` on its
    /// connection (see [`PENDING_RECV_WINDOW`]).
    pub fn accept(&mut self) -> Option<ConnectionHandle> {
        self.listener.as_mut()?.queue.pop_front()
    }

    /// True when an accepted connection waits for [`accept`](Self::accept).
    pub fn has_accepted(&self) -> bool {
        self.listener.as_ref().is_some_and(|l| !l.queue.is_empty())
    }

    /// Forgets the socket at `handle` (it is finished, or its handshake
    /// failed), and keeps a tombstone of a connection that existed, so
    /// late packets from its peer get a repeated shutdown.
    pub fn remove(&mut self, now: Instant, handle: ConnectionHandle, socket: &Socket) {
        let Some(route) = self.routes.get_mut(handle.index()).and_then(Option::take) else {
            return;
        };
        self.free.push(handle.0);
        self.live -= 1;
        remove_if(&mut self.by_id, route.socket_id, handle);
        if route.rendezvous {
            remove_if(&mut self.by_peer, route.peer, handle);
        }
        if let Some(key) = route.accept_key {
            remove_if(&mut self.accepted, key, handle);
        }
        if let Some(l) = self.listener.as_mut() {
            l.queue.retain(|h| *h != handle);
        }
        if let Some(c) = socket.connection_ref() {
            if c.state() == crate::State::Closed(crate::ConnectionError::AuthFailed) {
                self.counters.secure_peer_refused += 1;
            }
            let (min, max) = TOMBSTONE_LIFETIME;
            let lifetime = socket.config().peer_idle_timeout.clamp(min, max);
            self.tombstones.bury(
                route.socket_id,
                route.peer,
                c.peer_socket_id(),
                now,
                lifetime,
            );
            if let Some(sealer) = c.tombstone_sealer() {
                self.tombstones.set_sealer(route.socket_id, sealer);
            }
        }
    }

    /// Forgets every socket, the listener and the tombstones (the driver
    /// aborts); returns the handles that were live.
    pub fn clear(&mut self) -> Vec<ConnectionHandle> {
        let live = (0..self.routes.len())
            .filter(|&i| self.routes[i].is_some())
            .map(|i| ConnectionHandle(i as u32))
            .collect();
        self.routes.clear();
        self.free.clear();
        self.live = 0;
        self.by_id.clear();
        self.by_peer.clear();
        self.accepted.clear();
        self.listener = None;
        self.tombstones.clear();
        live
    }

    /// How many sockets (handshakes and connections) are registered.
    pub fn live(&self) -> usize {
        self.live
    }

    /// The handle of the socket with this local ID.
    pub fn handle_of(&self, id: SocketId) -> Option<ConnectionHandle> {
        self.by_id.get(&id).copied()
    }

    /// Counters of datagrams dropped or answered by the endpoint itself.
    pub fn counters(&self) -> EndpointCounters {
        self.counters
    }

    // ----- datagrams that are not UDT -----

    /// Registers the handler of datagrams that are not UDT (see
    /// [`DatagramHandler`]); replaces and returns the previous one.
    pub fn set_datagram_handler(
        &mut self,
        handler: Option<Box<dyn DatagramHandler>>,
    ) -> Option<Box<dyn DatagramHandler>> {
        std::mem::replace(&mut self.handler, handler)
    }

    /// The handler's next datagram to send, if any: written into `buf`,
    /// destination returned.
    pub fn poll_transmit(&mut self, now: Instant, buf: &mut Vec<u8>) -> Option<SocketAddr> {
        buf.clear();
        self.handler.as_mut()?.poll_transmit(now, buf)
    }

    /// The handler's next timer.
    pub fn poll_timeout(&self) -> Option<Instant> {
        self.handler.as_ref()?.poll_timeout()
    }

    /// Fires the handler's timer when due (extra calls are harmless).
    pub fn handle_timeout(&mut self, now: Instant) {
        if let Some(h) = self.handler.as_mut() {
            if h.poll_timeout().is_some_and(|t| t <= now) {
                h.handle_timeout(now);
            }
        }
    }

    // ----- routing -----

    /// Decides where one datagram from `from` belongs (see the module
    /// documentation). `buf` receives the datagram to send back to `from`
    /// for [`DatagramEvent::Respond`] and [`DatagramEvent::Accepted`];
    /// otherwise its contents are unspecified. Never fails: bad input is
    /// dropped and counted.
    pub fn handle(
        &mut self,
        now: Instant,
        from: SocketAddr,
        datagram: &[u8],
        buf: &mut Vec<u8>,
    ) -> DatagramEvent {
        let dest = packet::peek_dest(datagram);
        let target = dest.and_then(|d| self.by_id.get(&d).copied());
        if let Some(h) = target {
            if self.route(h).is_some_and(|r| r.peer == from) && dest != Some(SocketId::HANDSHAKE) {
                return DatagramEvent::Route(h);
            }
        }
        if let Some(handler) = self.handler.as_mut() {
            if handler.recognises(datagram) {
                handler.handle_datagram(now, from, datagram);
                self.counters.foreign += 1;
                return DatagramEvent::Handled;
            }
        }
        let Some(dest) = dest else {
            return self.drop(DropReason::Malformed);
        };
        if target.is_some() {
            // Every packet must come from the recorded peer (UDT4
            // CRcvQueue::worker compares IP and port).
            return self.drop(DropReason::WrongSource);
        }
        if dest != SocketId::HANDSHAKE {
            return self.answer_from_grave(now, dest, from, datagram, buf);
        }
        if let Some(&h) = self.by_peer.get(&from) {
            // Rendezvous handshakes are matched by exact peer address
            // first; the listener takes the rest (§4.2, §13).
            return DatagramEvent::Route(h);
        }
        self.on_listener(now, from, datagram, buf)
    }

    /// A dest-0 datagram for the listener.
    fn on_listener(
        &mut self,
        now: Instant,
        from: SocketAddr,
        datagram: &[u8],
        buf: &mut Vec<u8>,
    ) -> DatagramEvent {
        let Some(l) = self.listener.as_mut() else {
            return self.drop(DropReason::UnknownDestination);
        };
        let req = match l.machine.handle_datagram(now, from, datagram, buf) {
            ListenerOutput::Nothing => return self.drop(DropReason::UnknownDestination),
            ListenerOutput::Reply => return DatagramEvent::Respond,
            ListenerOutput::Accept(req) => req,
        };
        let key = req.key();
        if let Some(&existing) = self.accepted.get(&key) {
            // A repeated final request: the connection answers it with its
            // stored response.
            return DatagramEvent::Route(existing);
        }
        if l.queue.len() >= l.backlog {
            req.reject(buf);
            self.counters.handshakes_rejected += 1;
            log::debug!("accept backlog full: rejected {from}");
            return DatagramEvent::Respond;
        }
        let per_source = per_source_share(l.backlog);
        let routes = &self.routes;
        let waiting_from_source = l
            .queue
            .iter()
            .filter_map(|h| routes.get(h.index())?.as_ref())
            .filter(|r| r.peer == from)
            .count();
        if waiting_from_source >= per_source {
            self.counters.handshakes_throttled += 1;
            log::debug!("{from} has {waiting_from_source} connections waiting: request ignored");
            return DatagramEvent::Dropped(DropReason::UnknownDestination);
        }
        let config = l.config.clone();
        let id = self.new_socket_id();
        if let Some(init) = req.secure_init() {
            if self.replays.is_replay(now, init) {
                // The same first message as a connection accepted
                // before: a replay. Ignored (answering would tell the
                // replayer nothing it could use, but costs a reply).
                self.counters.secure_replays += 1;
                log::info!("secure listener ignored a replayed handshake from {from}");
                return DatagramEvent::Dropped(DropReason::UnknownDestination);
            }
        }
        let params = match req.accept(id, &config, buf) {
            Ok(p) => p,
            Err(_) => {
                // A secure caller that did not authenticate: `buf` holds
                // the rejection that tells it why.
                self.counters.secure_refused += 1;
                return DatagramEvent::Respond;
            }
        };
        if let Some(init) = req.secure_init() {
            self.replays.remember(now, init);
        }
        let mut connection = Connection::new(params, config.clone(), now);
        connection.limit_receive_window(Some(PENDING_RECV_WINDOW));
        connection.align_soft_timers(self.timer_origin(now));
        let handle = self.insert(Route {
            socket_id: id,
            peer: req.peer_addr,
            rendezvous: false,
            accept_key: Some(key),
        });
        if let Some(l) = self.listener.as_mut() {
            l.queue.push_back(handle);
        }
        log::debug!("accepted {} from {from} as {id}", req.peer_socket_id);
        DatagramEvent::Accepted {
            handle,
            socket: Box::new(Socket::connected(config, connection)),
        }
    }

    /// A packet for a socket ID nobody has: if it belonged to a connection
    /// that finished recently, its peer missed our shutdown, so send
    /// another instead of letting it wait for its idle timeout (never in
    /// answer to a shutdown, at most every
    /// [`REPLY_GAP`](tombstones::REPLY_GAP)).
    fn answer_from_grave(
        &mut self,
        now: Instant,
        dest: SocketId,
        from: SocketAddr,
        datagram: &[u8],
        buf: &mut Vec<u8>,
    ) -> DatagramEvent {
        let is_shutdown = matches!(
            packet::decode(datagram),
            Ok(Packet::Control(ControlPacket {
                control: Control::Shutdown,
                ..
            }))
        );
        let peer_id = if is_shutdown {
            None
        } else {
            self.tombstones.answer(dest, from, now)
        };
        let Some(peer_id) = peer_id else {
            return self.drop(DropReason::UnknownDestination);
        };
        buf.clear();
        Packet::Control(ControlPacket {
            timestamp: 0,
            dest: peer_id,
            control: Control::Shutdown,
        })
        .encode(buf);
        if !self.tombstones.seal_answer(dest, buf) {
            return self.drop(DropReason::UnknownDestination);
        }
        self.counters.unknown_destination += 1;
        self.counters.tombstone_answers += 1;
        log::debug!("{dest} is closed: repeated the shutdown to {from}");
        DatagramEvent::Respond
    }

    fn drop(&mut self, reason: DropReason) -> DatagramEvent {
        let c = &mut self.counters;
        match reason {
            DropReason::Malformed => c.malformed += 1,
            DropReason::UnknownDestination => c.unknown_destination += 1,
            DropReason::WrongSource => c.wrong_source += 1,
        }
        DatagramEvent::Dropped(reason)
    }

    // ----- tables -----

    fn route(&self, h: ConnectionHandle) -> Option<&Route> {
        self.routes.get(h.index())?.as_ref()
    }

    fn insert(&mut self, route: Route) -> ConnectionHandle {
        let handle = match self.free.pop() {
            Some(h) => ConnectionHandle(h),
            None => {
                self.routes.push(None);
                ConnectionHandle(self.routes.len() as u32 - 1)
            }
        };
        self.by_id.insert(route.socket_id, handle);
        if route.rendezvous {
            self.by_peer.insert(route.peer, handle);
        }
        if let Some(key) = route.accept_key {
            self.accepted.insert(key, handle);
        }
        if let Some(slot) = self.routes.get_mut(handle.index()) {
            *slot = Some(route);
        }
        self.live += 1;
        handle
    }

    /// A random socket ID no live or recently finished connection of this
    /// endpoint uses (never 0). UDT4 counts IDs down from a random start,
    /// so one handshake revealed every other connection's ID; random IDs
    /// keep an off-path attacker guessing among 2^31 values (the ID is
    /// what a spoofed shutdown or keep-alive needs, with the address).
    fn new_socket_id(&mut self) -> SocketId {
        loop {
            let id = SocketId(self.rng.next_u32() & SocketId::MAX);
            if id != SocketId::HANDSHAKE
                && !self.by_id.contains_key(&id)
                && !self.tombstones.contains(id)
            {
                return id;
            }
        }
    }

    /// A random initial sequence number.
    fn new_isn(&mut self) -> SeqNumber {
        SeqNumber::new(self.rng.next_u32() & SeqNumber::MAX)
    }
}

/// How many connections from one source address may wait in a backlog of
/// `backlog`: all but an eighth (at least one place is left for others),
/// and at least one.
pub fn per_source_share(backlog: usize) -> usize {
    backlog.saturating_sub((backlog / 8).max(1)).max(1)
}

/// Removes `key` from `map` if it still maps to `handle` (a newer socket
/// may have taken the key since).
fn remove_if<K: std::hash::Hash + Eq>(
    map: &mut HashMap<K, ConnectionHandle>,
    key: K,
    handle: ConnectionHandle,
) {
    if let MapEntry::Occupied(e) = map.entry(key) {
        if *e.get() == handle {
            e.remove();
        }
    }
}
