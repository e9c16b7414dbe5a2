//! `UdtSocket`: the application's handle to one connection, with what every
//! connection has whatever its kind (addresses, statistics, timeouts,
//! non-blocking mode, shutdown, acknowledgement, close). The kind-specific
//! calls live next to their kind: `Read`/`Write` in `stream.rs`, whole
//! messages in `message.rs`.

use std::fmt;
use std::io;
use std::marker::PhantomData;
use std::net::{Shutdown, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use udt_core::stats::Stats;
use udt_core::{PeerIdentity, SocketId};

use crate::conn::{close_result, ConnShared, WaitFor};
use crate::error;
use crate::mode::Mode;
use crate::mux::MuxRef;

/// A connected UDT socket of kind `M`: use it as [`UdtStream`](crate::UdtStream)
/// (a byte stream, `std::io::Read + Write`) or
/// [`UdtMessageSocket`](crate::UdtMessageSocket) (whole messages). The
/// methods on this page work for both.
///
/// Timeouts and non-blocking mode belong to the connection: every handle of
/// it (see [`try_clone`](Self::try_clone)) shares them.
///
/// Dropping the last handle closes the connection **in the background**:
/// data already sent is still delivered (for at most the configured linger
/// time) before the shutdown goes out. Use [`close`](Self::close) to wait
/// for that and learn whether it worked.
pub struct UdtSocket<M: Mode> {
    conn: Arc<ConnShared>,
    mux: MuxRef,
    mode: PhantomData<M>,
}

impl<M: Mode> fmt::Debug for UdtSocket<M> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("UdtSocket")
            .field("mode", &std::any::type_name::<M>())
            .field("socket_id", &self.conn.socket_id)
            .field("peer", &self.conn.peer)
            .finish_non_exhaustive()
    }
}

impl<M: Mode> UdtSocket<M> {
    /// Wraps a connection that already counts this handle.
    pub(crate) fn from_conn(conn: Arc<ConnShared>, mux: MuxRef) -> UdtSocket<M> {
        UdtSocket {
            conn,
            mux,
            mode: PhantomData,
        }
    }

    pub(crate) fn conn(&self) -> &Arc<ConnShared> {
        &self.conn
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

    /// True for a secure-mode connection (docs/security.md).
    pub fn is_secure(&self) -> bool {
        self.conn
            .peek(|g| g.phase.connection_ref().map(|c| c.is_secure()))
            .unwrap_or(false)
    }

    /// Who the peer proved to be in the secure handshake: the static key it
    /// holds, or that it knew the pre-shared key or code. `None` for a
    /// plain connection, which authenticates nothing.
    pub fn peer_identity(&self) -> Option<PeerIdentity> {
        self.conn
            .peek(|g| g.phase.connection_ref().map(|c| c.peer_identity().cloned()))
            .flatten()
    }

    /// A snapshot of the connection's statistics (RTT, rates, counters).
    pub fn stats(&self) -> Stats {
        self.conn
            .peek(|g| g.phase.connection_ref().map(|c| c.stats()))
            .unwrap_or_default()
    }

    /// How long a read (or `recv_msg`) waits before failing with
    /// `TimedOut`; `None` (the default) waits forever. A read that timed
    /// out leaves the connection usable.
    pub fn set_read_timeout(&self, timeout: Option<Duration>) {
        self.conn.inner.lock().read_timeout = timeout;
    }

    /// How long a write (or `send_msg`) waits for room in the send buffer
    /// before failing with `TimedOut`; `None` (the default) waits forever.
    pub fn set_write_timeout(&self, timeout: Option<Duration>) {
        self.conn.inner.lock().write_timeout = timeout;
    }

    /// The read timeout.
    pub fn read_timeout(&self) -> Option<Duration> {
        self.conn.inner.lock().read_timeout
    }

    /// The write timeout.
    pub fn write_timeout(&self) -> Option<Duration> {
        self.conn.inner.lock().write_timeout
    }

    /// In non-blocking mode reads, writes, sends, receives and `close`
    /// never wait: they fail with `WouldBlock` instead (use a
    /// [`Poller`](crate::Poller) to learn when to call again).
    pub fn set_nonblocking(&self, nonblocking: bool) {
        self.conn.inner.lock().nonblocking = nonblocking;
    }

    /// Another handle to the same connection, for example for a second
    /// thread. The connection closes when the last handle is dropped or
    /// closed.
    ///
    /// # Errors
    /// `ConnectionAborted` when the endpoint was aborted.
    pub fn try_clone(&self) -> io::Result<UdtSocket<M>> {
        let mut g = self.conn.inner.lock();
        if g.aborted {
            return Err(error::aborted());
        }
        g.handles += 1;
        drop(g);
        Ok(UdtSocket::from_conn(self.conn.clone(), self.mux.clone()))
    }

    /// Sets the send buffer to `packets` packets (of the connection's
    /// payload size): what writes may queue from now on, never below what
    /// is queued already. A starting size, as `Config::send_buffer_packets`
    /// is: it still grows with the path's bandwidth-delay product up to
    /// `Config::memory_cap`. For a server that learns only after `accept`
    /// how many connections share its memory.
    ///
    /// # Errors
    /// `ConnectionAborted` after an abort, `NotConnected` before the
    /// handshake finished.
    pub fn set_send_buffer(&self, packets: u32) -> io::Result<()> {
        self.conn
            .with_connection(|c, _now| c.set_send_buffer_packets(packets))
    }

    /// Bytes that can be queued right now without blocking.
    pub fn send_buffer_free(&self) -> usize {
        self.conn
            .peek(|g| g.phase.connection_ref().map(|c| c.send_buffer_free()))
            .unwrap_or(0)
    }

    /// Ends one or both directions. UDT has no half-close:
    /// - `Read`: later reads (receives) report the end: `Ok(0)` on a
    ///   stream, `Ok(None)` on a message socket; what arrives is discarded.
    /// - `Write` or `Both`: starts the orderly close in the background, as
    ///   [`close_nonblocking`](Self::close_nonblocking) does; data sent
    ///   before is still delivered, and reads return only what had arrived.
    ///
    /// # Errors
    /// `ConnectionAborted` when the endpoint was aborted.
    pub fn shutdown(&self, how: Shutdown) -> io::Result<()> {
        if matches!(how, Shutdown::Read | Shutdown::Both) {
            self.conn.inner.lock().read_shut = true;
        }
        if matches!(how, Shutdown::Write | Shutdown::Both) {
            self.conn.with_connection(|c, now| c.close(now))?;
        }
        Ok(())
    }

    /// Waits until everything sent has been acknowledged by the peer, or
    /// `timeout` passes (`None`: no limit). Unlike `flush` (a no-op, as for
    /// TCP) this tells the application that the peer has the data.
    ///
    /// # Errors
    /// `TimedOut` when data is still unacknowledged after `timeout`; the
    /// connection's error if it ended first.
    pub fn wait_acknowledged(&self, timeout: Option<Duration>) -> io::Result<()> {
        self.conn.blocking(
            WaitFor::State,
            |_| timeout,
            "data still unacknowledged",
            |g, _now| {
                let Some(c) = g.phase.connection() else {
                    return Some(Err(error::not_connected()));
                };
                if c.is_send_buffer_empty() {
                    Some(Ok(()))
                } else if let udt_core::State::Closed(e) = c.state() {
                    Some(Err(e.into()))
                } else {
                    None
                }
            },
        )
    }

    /// Closes the connection and waits until the peer has acknowledged
    /// everything sent and, where its ACKs report it, its application has
    /// read it (a UDT4 reader can lose what it had not read when the
    /// shutdown arrives, docs/interop.md), or until the linger time
    /// ([`Config::linger`](udt_core::Config::linger)) has passed. It returns
    /// only once the final shutdown packet has been handed to the kernel, so
    /// the process may exit right after.
    ///
    /// # Errors
    /// The reason the data may not all have arrived or been read: `TimedOut`
    /// when the linger time expired (with data unacknowledged, or
    /// acknowledged but unread: `ConnectionError::PeerUnread` inside) or the
    /// peer went silent, `ConnectionReset` when
    /// the peer closed first with data still unacknowledged,
    /// `ConnectionAborted` when the endpoint was aborted. In non-blocking
    /// mode, `WouldBlock` while the close is still in progress (call again
    /// to check; dropping the socket lets it finish in the background).
    pub fn close(self) -> io::Result<()> {
        let linger = self.conn.config.linger.unwrap_or(Duration::ZERO);
        // The core always ends the close by itself (linger or idle timer);
        // this is only a safety net against a stalled endpoint.
        let limit = linger + self.conn.config.peer_idle_timeout + Duration::from_secs(1);
        self.conn.blocking(
            WaitFor::State,
            |_| Some(limit),
            "the close did not finish in time",
            |g, now| {
                g.phase.connection()?.close(now);
                close_result(g)
            },
        )
    }

    /// Starts an orderly close and returns at once; the connection finishes
    /// delivering in the background, exactly as when the socket is dropped.
    pub fn close_nonblocking(self) {
        drop(self);
    }
}

impl<M: Mode> Drop for UdtSocket<M> {
    fn drop(&mut self) {
        self.conn.release_handle();
    }
}
