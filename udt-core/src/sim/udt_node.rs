//! A UDT endpoint for the simulator: a miniature multiplexer on one
//! address that routes datagrams by destination socket ID, runs the
//! listener and pending handshakes, and paces its connections with the
//! same [`SendSchedule`] the real multiplexer uses. Only threads, locks and
//! system calls are left out.

use std::collections::{HashMap, VecDeque};
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Instant;

use super::Endpoint;
use crate::config::Config;
use crate::connection::Connection;
use crate::handshake::{
    Caller, ConnectError, ConnectParams, Connecting, Listener, ListenerOutput, Rendezvous,
};
use crate::packet;
use crate::rng::Rng;
use crate::sched::{ConnectionHandle, SendSchedule};
use crate::seq::{SeqNumber, SocketId};

/// A simulated UDT endpoint: one address, any number of connections.
#[derive(Debug)]
pub struct UdtNode {
    addr: SocketAddr,
    config: Arc<Config>,
    rng: Rng,
    listener: Option<Listener>,
    backlog: VecDeque<SocketId>,
    pending: Vec<(SocketId, Connecting)>,
    failed: Vec<(SocketId, ConnectError)>,
    conns: Vec<Option<Connection>>,
    by_id: HashMap<SocketId, ConnectionHandle>,
    accepted: HashMap<(SocketAddr, SocketId, SeqNumber), SocketId>,
    sched: SendSchedule,
    outgoing: VecDeque<(SocketAddr, Vec<u8>)>,
    next_id: u32,
}

impl UdtNode {
    /// A node with the given configuration; `seed` drives its socket IDs,
    /// ISNs and cookie secret.
    pub fn new(addr: SocketAddr, config: Config, seed: u64) -> Self {
        let mut rng = Rng::new(seed);
        let next_id = (rng.next_u32() & 0x3FFF_FFFF).max(1_000);
        UdtNode {
            addr,
            config: Arc::new(config),
            rng,
            listener: None,
            backlog: VecDeque::new(),
            pending: Vec::new(),
            failed: Vec::new(),
            conns: Vec::new(),
            by_id: HashMap::new(),
            accepted: HashMap::new(),
            sched: SendSchedule::new(),
            outgoing: VecDeque::new(),
            next_id,
        }
    }

    /// This node's address.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// The node's configuration.
    pub fn config(&self) -> &Config {
        &self.config
    }

    fn new_socket_id(&mut self) -> SocketId {
        // Like UDT4: a counter counting down from a random start.
        self.next_id = self.next_id.wrapping_sub(1).max(1);
        SocketId(self.next_id)
    }

    fn new_isn(&mut self) -> SeqNumber {
        SeqNumber::new(self.rng.next_u32())
    }

    /// Starts listening for callers.
    pub fn listen(&mut self, now: Instant) {
        let mut secret = [0u8; 16];
        secret[..8].copy_from_slice(&self.rng.next_u64().to_le_bytes());
        secret[8..].copy_from_slice(&self.rng.next_u64().to_le_bytes());
        self.listener = Some(Listener::new(&self.config, secret, now));
    }

    /// Starts connecting to a listener; returns the new socket's ID.
    pub fn connect(&mut self, now: Instant, peer: SocketAddr) -> SocketId {
        let isn = self.new_isn();
        self.connect_with_isn(now, peer, isn)
    }

    /// Starts connecting with a chosen initial sequence number (tests of
    /// the sequence wrap).
    pub fn connect_with_isn(&mut self, now: Instant, peer: SocketAddr, isn: SeqNumber) -> SocketId {
        let id = self.new_socket_id();
        let caller = Caller::new(&self.config, id, peer, isn, now);
        self.pending.push((id, Connecting::Caller(caller)));
        id
    }

    /// Starts a rendezvous connection with `peer`; returns the socket's ID.
    pub fn rendezvous(&mut self, now: Instant, peer: SocketAddr) -> SocketId {
        let id = self.new_socket_id();
        let isn = self.new_isn();
        let r = Rendezvous::new(&self.config, id, peer, isn, now);
        self.pending.push((id, Connecting::Rendezvous(r)));
        id
    }

    /// Takes the next accepted connection's ID, if any.
    pub fn accept(&mut self) -> Option<SocketId> {
        self.backlog.pop_front()
    }

    /// The connection with this socket ID, once established.
    pub fn connection(&self, id: SocketId) -> Option<&Connection> {
        let h = self.by_id.get(&id)?;
        self.conns.get(h.0 as usize)?.as_ref()
    }

    /// Runs `f` on the connection with this ID and updates the schedule
    /// afterwards (the application side of a test). Returns `None` when
    /// there is no such connection.
    pub fn with_connection<R>(
        &mut self,
        id: SocketId,
        f: impl FnOnce(&mut Connection) -> R,
    ) -> Option<R> {
        let h = *self.by_id.get(&id)?;
        let conn = self.conns.get_mut(h.0 as usize)?.as_mut()?;
        let r = f(conn);
        let next = conn.next_send_time();
        self.sched.set(h, next);
        Some(r)
    }

    /// True once `id` is an established connection.
    pub fn is_connected(&self, id: SocketId) -> bool {
        self.by_id.contains_key(&id)
    }

    /// The error a failed connect ended with, if it failed.
    pub fn connect_error(&self, id: SocketId) -> Option<ConnectError> {
        self.failed.iter().find(|(i, _)| *i == id).map(|(_, e)| *e)
    }

    /// IDs of every established connection.
    pub fn connection_ids(&self) -> Vec<SocketId> {
        self.by_id.keys().copied().collect()
    }

    fn add_connection(&mut self, params: ConnectParams, now: Instant) -> SocketId {
        let id = params.local_socket_id;
        let conn = Connection::new(params, self.config.clone(), now);
        let h = ConnectionHandle(self.conns.len() as u32);
        let next = conn.next_send_time();
        self.conns.push(Some(conn));
        self.by_id.insert(id, h);
        self.sched.set(h, next);
        id
    }

    fn route_to_connection(
        &mut self,
        now: Instant,
        h: ConnectionHandle,
        from: SocketAddr,
        d: &[u8],
    ) {
        if let Some(Some(conn)) = self.conns.get_mut(h.0 as usize) {
            conn.handle_datagram(now, from, d);
            let next = conn.next_send_time();
            self.sched.set(h, next);
        }
    }

    fn on_listener_datagram(&mut self, now: Instant, from: SocketAddr, datagram: &[u8]) -> bool {
        let Some(listener) = self.listener.as_mut() else {
            return false;
        };
        let mut out = Vec::new();
        match listener.handle_datagram(now, from, datagram, &mut out) {
            ListenerOutput::Nothing => {}
            ListenerOutput::Reply => self.outgoing.push_back((from, out)),
            ListenerOutput::Accept(req) => {
                let key = (req.peer_addr, req.peer_socket_id, req.peer_isn);
                if let Some(existing) = self.accepted.get(&key).copied() {
                    // A repeated final request: the connection re-sends
                    // its response.
                    if let Some(&h) = self.by_id.get(&existing) {
                        self.route_to_connection(now, h, from, datagram);
                    }
                } else {
                    let id = self.new_socket_id();
                    let params = req.accept(id, &self.config, &mut out);
                    self.outgoing.push_back((from, out));
                    self.accepted.insert(key, id);
                    self.add_connection(params, now);
                    self.backlog.push_back(id);
                }
            }
        }
        true
    }

    fn finish_pending(&mut self, now: Instant) {
        let mut i = 0;
        while i < self.pending.len() {
            if let Some(result) = self.pending[i].1.poll_result() {
                let (id, _) = self.pending.swap_remove(i);
                match result {
                    Ok(params) => {
                        self.add_connection(params, now);
                    }
                    Err(e) => self.failed.push((id, e)),
                }
            } else {
                i += 1;
            }
        }
    }
}

impl Endpoint for UdtNode {
    fn handle_datagram(&mut self, now: Instant, from: SocketAddr, datagram: &[u8]) {
        let Some(dest) = packet::peek_dest(datagram) else {
            return;
        };
        if let Some(&h) = self.by_id.get(&dest) {
            self.route_to_connection(now, h, from, datagram);
            return;
        }
        if dest == SocketId::HANDSHAKE {
            // Rendezvous handshakes are matched by peer address first
            // (udt4-protocol.md §4.2), then the listener takes the rest.
            if let Some((_, p)) = self
                .pending
                .iter_mut()
                .find(|(_, p)| p.is_rendezvous() && p.peer_addr() == from)
            {
                p.handle_datagram(now, from, datagram);
            } else if !self.on_listener_datagram(now, from, datagram) {
                // An established rendezvous connection still answers the
                // peer's repeated dest-0 handshakes.
                if let Some(h) = self.conns.iter().position(|c| {
                    c.as_ref()
                        .is_some_and(|c| c.is_rendezvous() && c.peer_addr() == from)
                }) {
                    self.route_to_connection(now, ConnectionHandle(h as u32), from, datagram);
                }
            }
        } else if let Some((_, p)) = self.pending.iter_mut().find(|(id, _)| *id == dest) {
            p.handle_datagram(now, from, datagram);
        }
        self.finish_pending(now);
    }

    fn handle_timeout(&mut self, now: Instant) {
        for (_, p) in self.pending.iter_mut() {
            if p.poll_timeout().is_some_and(|t| t <= now) {
                p.handle_timeout(now);
            }
        }
        self.finish_pending(now);
        for (i, slot) in self.conns.iter_mut().enumerate() {
            if let Some(conn) = slot {
                if conn.poll_timeout().is_some_and(|t| t <= now) {
                    conn.handle_timeout(now);
                    self.sched
                        .set(ConnectionHandle(i as u32), conn.next_send_time());
                }
            }
        }
    }

    fn poll_transmit(&mut self, now: Instant, buf: &mut Vec<u8>) -> Option<SocketAddr> {
        if let Some((to, data)) = self.outgoing.pop_front() {
            buf.clear();
            buf.extend_from_slice(&data);
            return Some(to);
        }
        for (_, p) in self.pending.iter_mut() {
            if let Some(to) = p.poll_transmit(now, buf) {
                return Some(to);
            }
        }
        while let Some(h) = self.sched.pop_due(now) {
            let Some(Some(conn)) = self.conns.get_mut(h.0 as usize) else {
                continue;
            };
            let t = conn.poll_transmit(now, buf);
            self.sched.set(h, conn.next_send_time());
            if let Some(t) = t {
                return Some(t.destination);
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
        for (_, p) in &self.pending {
            consider(p.poll_timeout());
        }
        for conn in self.conns.iter().flatten() {
            consider(conn.poll_timeout());
        }
        at
    }
}
