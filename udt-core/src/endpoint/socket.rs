//! One socket of an endpoint through its whole life: the handshake, then the
//! connection it produced, or the reason it failed. Drivers keep one
//! [`Socket`] per handle and feed it what the [`Endpoint`](super::Endpoint)
//! routes to that handle.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Instant;

use crate::config::Config;
use crate::connection::Connection;
use crate::handshake::{ConnectError, Connecting};
use crate::packet;
use crate::seq::SocketId;

/// Where a socket is in its life.
#[derive(Debug)]
enum Phase {
    /// The handshake runs (boxed: a handshake machine is large and the
    /// phase lasts milliseconds).
    Connecting(Box<Connecting>),
    /// The connection exists (it may have closed since).
    Connected(Box<Connection>),
    /// The handshake failed.
    Failed(ConnectError),
}

/// What an input did to a socket's phase.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[must_use]
pub enum Progress {
    /// The phase did not change.
    Unchanged,
    /// The handshake finished: the socket now holds a connection, which the
    /// driver starts scheduling.
    Connected,
    /// The handshake failed; [`Socket::failure`] says why.
    Failed,
}

/// One socket: a handshake in progress, an established connection, or a
/// failed attempt. Sans-I/O like everything in this crate.
#[derive(Debug)]
pub struct Socket {
    socket_id: SocketId,
    peer: SocketAddr,
    rendezvous: bool,
    config: Arc<Config>,
    phase: Phase,
    /// The endpoint's keep-alive grid origin, handed to the connection
    /// when the handshake completes.
    timer_origin: Option<Instant>,
}

impl Socket {
    /// A socket whose handshake is under way.
    pub(crate) fn connecting(config: Arc<Config>, c: Connecting) -> Socket {
        Socket {
            socket_id: c.local_socket_id(),
            peer: c.peer_addr(),
            rendezvous: c.is_rendezvous(),
            config,
            phase: Phase::Connecting(Box::new(c)),
            timer_origin: None,
        }
    }

    /// A socket born connected (accepted by the listener).
    pub(crate) fn connected(config: Arc<Config>, c: Connection) -> Socket {
        Socket {
            socket_id: c.socket_id(),
            peer: c.peer_addr(),
            rendezvous: c.is_rendezvous(),
            config,
            phase: Phase::Connected(Box::new(c)),
            timer_origin: None,
        }
    }

    /// Sets the keep-alive grid origin the connection gets when its
    /// handshake completes (`Connection::align_soft_timers`).
    pub(crate) fn set_timer_origin(&mut self, origin: Instant) {
        self.timer_origin = Some(origin);
    }

    /// Our socket ID: the destination of the peer's packets.
    pub fn socket_id(&self) -> SocketId {
        self.socket_id
    }

    /// The peer's address, the only one packets are accepted from.
    pub fn peer_addr(&self) -> SocketAddr {
        self.peer
    }

    /// True for a rendezvous socket (its peer is matched by address).
    pub fn is_rendezvous(&self) -> bool {
        self.rendezvous
    }

    /// The configuration of this socket.
    pub fn config(&self) -> &Arc<Config> {
        &self.config
    }

    /// Feeds one datagram the endpoint routed here. When it completes a
    /// rendezvous handshake and is itself a data packet (the peer may
    /// already send data, udt4-protocol.md §4.2 step 4), the new connection
    /// receives it too: it is the first packet of the stream, not noise.
    pub fn handle_datagram(&mut self, now: Instant, from: SocketAddr, datagram: &[u8]) -> Progress {
        match &mut self.phase {
            Phase::Connecting(p) => {
                p.handle_datagram(now, from, datagram);
                let progress = self.complete_handshake(now);
                if progress == Progress::Connected && !packet::is_control(datagram) {
                    if let Phase::Connected(c) = &mut self.phase {
                        c.handle_datagram(now, from, datagram);
                    }
                }
                progress
            }
            Phase::Connected(c) => {
                c.handle_datagram(now, from, datagram);
                Progress::Unchanged
            }
            Phase::Failed(_) => Progress::Unchanged,
        }
    }

    /// As [`handle_datagram`](Self::handle_datagram), for a driver that
    /// owns the datagram's buffer: an established secure connection opens
    /// it in place ([`Connection::handle_datagram_mut`]), so its contents
    /// are unspecified afterwards.
    pub fn handle_datagram_mut(
        &mut self,
        now: Instant,
        from: SocketAddr,
        datagram: &mut [u8],
    ) -> Progress {
        match &mut self.phase {
            Phase::Connected(c) => {
                c.handle_datagram_mut(now, from, datagram);
                Progress::Unchanged
            }
            // Handshakes only read it.
            _ => self.handle_datagram(now, from, datagram),
        }
    }

    /// Runs the timers that are due (extra calls are harmless).
    pub fn handle_timeout(&mut self, now: Instant) -> Progress {
        match &mut self.phase {
            Phase::Connecting(p) => {
                p.handle_timeout(now);
                self.complete_handshake(now)
            }
            Phase::Connected(c) => {
                c.handle_timeout(now);
                Progress::Unchanged
            }
            Phase::Failed(_) => Progress::Unchanged,
        }
    }

    /// Writes the next datagram due into `buf` (a handshake request or a
    /// connection's packet); returns its destination.
    pub fn poll_transmit(&mut self, now: Instant, buf: &mut Vec<u8>) -> Option<SocketAddr> {
        match &mut self.phase {
            Phase::Connecting(p) => p.poll_transmit(now, buf),
            Phase::Connected(c) => c.poll_transmit(now, buf).map(|t| t.destination),
            Phase::Failed(_) => None,
        }
    }

    /// The earliest protocol timer (handshake retry or deadline, or the
    /// connection's ACK/NAK/EXP/keep-alive timers).
    pub fn poll_timeout(&self) -> Option<Instant> {
        match &self.phase {
            Phase::Connecting(p) => p.poll_timeout(),
            Phase::Connected(c) => c.poll_timeout(),
            Phase::Failed(_) => None,
        }
    }

    /// When the connection may send its next data packet: the send-queue key.
    /// `None` while connecting (handshakes run on [`poll_timeout`](Self::poll_timeout)).
    pub fn next_send_time(&self) -> Option<Instant> {
        match &self.phase {
            Phase::Connected(c) => c.next_send_time(),
            _ => None,
        }
    }

    /// The connection, once the handshake finished.
    pub fn connection(&mut self) -> Option<&mut Connection> {
        match &mut self.phase {
            Phase::Connected(c) => Some(c),
            _ => None,
        }
    }

    /// The connection, once the handshake finished.
    pub fn connection_ref(&self) -> Option<&Connection> {
        match &self.phase {
            Phase::Connected(c) => Some(c),
            _ => None,
        }
    }

    /// True while the handshake runs.
    pub fn is_connecting(&self) -> bool {
        matches!(self.phase, Phase::Connecting(_))
    }

    /// Why the handshake failed, if it did.
    pub fn failure(&self) -> Option<ConnectError> {
        match self.phase {
            Phase::Failed(e) => Some(e),
            _ => None,
        }
    }

    /// True once the socket has nothing left to do: its handshake failed, or
    /// its connection is closed with nothing left to send.
    pub fn is_finished(&self) -> bool {
        match &self.phase {
            Phase::Connecting(_) => false,
            Phase::Connected(c) => c.is_finished(),
            Phase::Failed(_) => true,
        }
    }

    /// If the handshake just finished, turns it into a connection or a
    /// failure.
    fn complete_handshake(&mut self, now: Instant) -> Progress {
        let Phase::Connecting(p) = &mut self.phase else {
            return Progress::Unchanged;
        };
        let Some(result) = p.poll_result() else {
            return Progress::Unchanged;
        };
        match result {
            Ok(params) => {
                log::debug!("{} connected to {}", self.socket_id, self.peer);
                let mut c = Connection::new(params, self.config.clone(), now);
                if let Some(origin) = self.timer_origin {
                    c.align_soft_timers(origin);
                }
                self.phase = Phase::Connected(Box::new(c));
                Progress::Connected
            }
            Err(e) => {
                log::debug!(
                    "{} handshake with {} failed: {e}",
                    self.socket_id,
                    self.peer
                );
                self.phase = Phase::Failed(e);
                Progress::Failed
            }
        }
    }
}
