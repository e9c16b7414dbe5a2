//! `UdtMessageSocket`: a connection that carries whole messages (UDT's
//! `SOCK_DGRAM` mode) with a time-to-live and an in-order flag per message.

use std::io;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use udt_core::stats::Stats;
use udt_core::{ConnectionError, ReadError, SocketId, WriteError};

use crate::conn::{close_result, ConnShared};
use crate::mux::MuxRef;
use crate::stream::not_connected;

/// A message-mode UDT connection: each `send_msg` arrives as exactly one
/// `recv_msg`, never merged or split.
///
/// A message may carry a time-to-live: if it still needs a retransmission
/// after that long, the sender gives it up and tells the receiver, which
/// then never delivers it (partial reliability, udt4-protocol.md §11).
/// `in_order = false` lets the receiver deliver a message as soon as it is
/// complete, ahead of earlier ones.
///
/// Dropping the last handle closes the connection in the background after
/// the queued messages are delivered (at most the linger time), as for
/// [`UdtStream`](crate::UdtStream).
///
/// # Examples
///
/// ```
/// use std::time::Duration;
/// use udt_mux::{Config, Endpoint};
///
/// # fn main() -> std::io::Result<()> {
/// let a = Endpoint::bind("127.0.0.1:0".parse().unwrap(), Config::default())?;
/// let b = Endpoint::bind("127.0.0.1:0".parse().unwrap(), Config::default())?;
/// let listener = b.listen_messages(4)?;
/// let sender = a.connect_messages(b.local_addr())?;
/// let (receiver, _) = listener.accept()?;
///
/// sender.send_msg(b"first", None, true)?;
/// sender.send_msg(b"may be dropped after 100 ms", Some(Duration::from_millis(100)), false)?;
/// assert_eq!(receiver.recv_msg()?.as_deref(), Some(&b"first"[..]));
/// # Ok(())
/// # }
/// ```
#[derive(Debug)]
pub struct UdtMessageSocket {
    conn: Arc<ConnShared>,
    mux: MuxRef,
}

impl UdtMessageSocket {
    /// Wraps a connection that already counts this handle.
    pub(crate) fn from_conn(conn: Arc<ConnShared>, mux: MuxRef) -> UdtMessageSocket {
        UdtMessageSocket { conn, mux }
    }

    pub(crate) fn conn(&self) -> &Arc<ConnShared> {
        &self.conn
    }

    /// Queues one message. `ttl`: give it up if it cannot be delivered
    /// within that time (`None`: never). `in_order`: deliver it only after
    /// every earlier in-order message. Blocks while the send buffer is full.
    ///
    /// # Errors
    /// `InvalidInput` when the message is larger than the whole send buffer
    /// (raise `Config::send_buffer_packets`); `WouldBlock` in non-blocking
    /// mode; `TimedOut` after the write timeout; the connection's error
    /// once it ended (`BrokenPipe` after a close).
    pub fn send_msg(&self, msg: &[u8], ttl: Option<Duration>, in_order: bool) -> io::Result<()> {
        self.conn.blocking(
            |g| g.write_timeout,
            "send timed out: the send buffer stayed full",
            |g, now| {
                let Some(c) = g.phase.connection() else {
                    return Some(Err(not_connected()));
                };
                match c.send_msg(now, msg, ttl, in_order) {
                    Ok(()) => Some(Ok(())),
                    Err(WriteError::WouldBlock) => None,
                    Err(e) => Some(Err(e.into())),
                }
            },
        )
    }

    /// Receives the next whole message into `out` (replacing its contents)
    /// and returns its length, or `None` once the peer closed in order and
    /// every message was received. Reuses `out`'s allocation.
    ///
    /// # Errors
    /// `WouldBlock` in non-blocking mode; `TimedOut` after the read timeout;
    /// the connection's error when it ended any other way.
    pub fn recv_msg_into(&self, out: &mut Vec<u8>) -> io::Result<Option<usize>> {
        self.conn.blocking(
            |g| g.read_timeout,
            "receive timed out",
            |g, _now| {
                let Some(c) = g.phase.connection() else {
                    return Some(Err(not_connected()));
                };
                match c.recv_msg_into(out) {
                    Ok(n) => Some(Ok(Some(n))),
                    Err(ReadError::WouldBlock) => None,
                    Err(ReadError::Closed(ConnectionError::PeerClosed)) => Some(Ok(None)),
                    Err(e) => Some(Err(e.into())),
                }
            },
        )
    }

    /// Receives the next whole message, or `None` after the peer's orderly
    /// close.
    ///
    /// # Errors
    /// As [`recv_msg_into`](Self::recv_msg_into).
    pub fn recv_msg(&self) -> io::Result<Option<Bytes>> {
        let mut out = Vec::new();
        Ok(self.recv_msg_into(&mut out)?.map(|_| Bytes::from(out)))
    }

    /// The peer's address.
    pub fn peer_addr(&self) -> SocketAddr {
        self.conn.peer
    }

    /// The local address (the endpoint's).
    pub fn local_addr(&self) -> SocketAddr {
        self.mux.shared().local_addr()
    }

    /// This connection's UDT socket ID.
    pub fn socket_id(&self) -> SocketId {
        self.conn.socket_id
    }

    /// A snapshot of the connection's statistics.
    pub fn stats(&self) -> Stats {
        self.conn
            .peek(|g| g.phase.connection_ref().map(|c| c.stats()))
            .unwrap_or_default()
    }

    /// How long `recv_msg` waits before `TimedOut`; `None` waits forever.
    pub fn set_read_timeout(&self, timeout: Option<Duration>) {
        self.conn.inner.lock().read_timeout = timeout;
    }

    /// How long `send_msg` waits for room before `TimedOut`.
    pub fn set_write_timeout(&self, timeout: Option<Duration>) {
        self.conn.inner.lock().write_timeout = timeout;
    }

    /// Non-blocking mode: calls fail with `WouldBlock` instead of waiting.
    pub fn set_nonblocking(&self, nonblocking: bool) {
        self.conn.inner.lock().nonblocking = nonblocking;
    }

    /// Another handle to the same connection.
    ///
    /// # Errors
    /// `ConnectionAborted` when the endpoint was aborted.
    pub fn try_clone(&self) -> io::Result<UdtMessageSocket> {
        let mut g = self.conn.inner.lock();
        if g.aborted {
            return Err(crate::error::aborted());
        }
        g.handles += 1;
        drop(g);
        Ok(UdtMessageSocket {
            conn: self.conn.clone(),
            mux: self.mux.clone(),
        })
    }

    /// Closes the connection and waits until everything sent was
    /// acknowledged or the linger time passed, and the final shutdown
    /// packet has been handed to the kernel.
    ///
    /// # Errors
    /// As [`UdtStream::close`](crate::UdtStream::close).
    pub fn close(self) -> io::Result<()> {
        let linger = self.conn.config.linger.unwrap_or(Duration::ZERO);
        let limit = linger + self.conn.config.peer_idle_timeout + Duration::from_secs(1);
        self.conn.blocking(
            |_| Some(limit),
            "the close did not finish in time",
            |g, now| {
                g.phase.connection()?.close(now);
                close_result(g)
            },
        )
    }

    /// Starts an orderly close and returns at once (same as dropping).
    pub fn close_nonblocking(self) {
        drop(self);
    }
}

impl Drop for UdtMessageSocket {
    fn drop(&mut self) {
        self.conn.release_handle();
    }
}
