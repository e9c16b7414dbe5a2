//! One outgoing handshake of either kind behind one interface, so drivers
//! (the multiplexer, the simulator) keep a single table of connections in
//! progress.

use std::net::SocketAddr;
use std::time::Instant;

use super::{Caller, ConnectError, ConnectParams, Rendezvous};
use crate::seq::SocketId;

/// A caller or rendezvous handshake in progress.
#[derive(Debug)]
pub enum Connecting {
    /// We called a listener.
    Caller(Caller),
    /// Both sides call each other.
    Rendezvous(Rendezvous),
}

impl Connecting {
    /// Feeds one datagram from `from` to the handshake.
    pub fn handle_datagram(&mut self, now: Instant, from: SocketAddr, datagram: &[u8]) {
        match self {
            Connecting::Caller(c) => c.handle_datagram(now, from, datagram),
            Connecting::Rendezvous(r) => r.handle_datagram(now, from, datagram),
        }
    }

    /// Checks the retry and give-up deadlines.
    pub fn handle_timeout(&mut self, now: Instant) {
        match self {
            Connecting::Caller(c) => c.handle_timeout(now),
            Connecting::Rendezvous(r) => r.handle_timeout(now),
        }
    }

    /// Writes the next handshake datagram into `buf`, if one is due; returns
    /// where to send it.
    pub fn poll_transmit(&mut self, now: Instant, buf: &mut Vec<u8>) -> Option<SocketAddr> {
        match self {
            Connecting::Caller(c) => c.poll_transmit(now, buf),
            Connecting::Rendezvous(r) => r.poll_transmit(now, buf),
        }
    }

    /// The next resend or the deadline; `None` once finished.
    pub fn poll_timeout(&self) -> Option<Instant> {
        match self {
            Connecting::Caller(c) => c.poll_timeout(),
            Connecting::Rendezvous(r) => r.poll_timeout(),
        }
    }

    /// The outcome, returned once when the handshake has finished.
    pub fn poll_result(&mut self) -> Option<Result<ConnectParams, ConnectError>> {
        match self {
            Connecting::Caller(c) => c.poll_result(),
            Connecting::Rendezvous(r) => r.poll_result(),
        }
    }

    /// Our socket ID.
    pub fn local_socket_id(&self) -> SocketId {
        match self {
            Connecting::Caller(c) => c.local_socket_id(),
            Connecting::Rendezvous(r) => r.local_socket_id(),
        }
    }

    /// The peer's address.
    pub fn peer_addr(&self) -> SocketAddr {
        match self {
            Connecting::Caller(c) => c.peer_addr(),
            Connecting::Rendezvous(r) => r.peer_addr(),
        }
    }

    /// True for a rendezvous handshake (matched by peer address when the
    /// peer does not know our socket ID yet).
    pub fn is_rendezvous(&self) -> bool {
        matches!(self, Connecting::Rendezvous(_))
    }
}
