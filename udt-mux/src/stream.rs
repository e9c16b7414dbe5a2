//! `UdtStream`: a connected byte stream with `std::io::Read` and `Write`,
//! timeouts, non-blocking mode and an orderly close with linger.

use std::io::{self, Read, Write};
use std::net::{Shutdown, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use udt_core::stats::Stats;
use udt_core::{ReadError, SocketId, WriteError};

use crate::conn::{close_result, ConnShared};
use crate::mux::MuxRef;

/// A reliable byte stream over UDT, like `std::net::TcpStream`.
///
/// Reads block until data arrives (or the read timeout passes); `Ok(0)`
/// means the peer closed the connection in order and everything it sent
/// has been read. Writes block while the send buffer is full and return how
/// much they queued; data is delivered in order, exactly once.
///
/// `Read` and `Write` are also implemented for `&UdtStream`, so one thread
/// can read while another writes (or use [`try_clone`](Self::try_clone)).
///
/// Dropping the last handle closes the connection **in the background**:
/// data already written is still delivered (for at most the configured
/// linger time) before the shutdown goes out. Use [`close`](Self::close) to
/// wait for that and learn whether it worked.
///
/// # Examples
///
/// ```
/// use std::io::{Read, Write};
/// use udt_mux::{Config, Endpoint};
///
/// # fn main() -> std::io::Result<()> {
/// let a = Endpoint::bind("127.0.0.1:0".parse().unwrap(), Config::default())?;
/// let b = Endpoint::bind("127.0.0.1:0".parse().unwrap(), Config::default())?;
/// let listener = b.listen(1)?;
/// let mut client = a.connect(b.local_addr())?;
/// let (mut server, _) = listener.accept()?;
///
/// client.write_all(b"ping")?;
/// let mut got = [0u8; 4];
/// server.read_exact(&mut got)?;
/// assert_eq!(&got, b"ping");
/// client.close()?; // waits until the peer has acknowledged and read everything
/// assert_eq!(server.read(&mut got)?, 0); // the orderly close ends the stream
/// # Ok(())
/// # }
/// ```
#[derive(Debug)]
pub struct UdtStream {
    conn: Arc<ConnShared>,
    mux: MuxRef,
}

impl UdtStream {
    /// Wraps a connection that already counts this handle.
    pub(crate) fn from_conn(conn: Arc<ConnShared>, mux: MuxRef) -> UdtStream {
        UdtStream { conn, mux }
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

    /// A snapshot of the connection's statistics (RTT, rates, counters).
    pub fn stats(&self) -> Stats {
        self.conn
            .peek(|g| g.phase.connection_ref().map(|c| c.stats()))
            .unwrap_or_default()
    }

    /// How long reads wait before failing with `TimedOut`; `None` (the
    /// default) waits forever. Shared by every handle of the connection.
    pub fn set_read_timeout(&self, timeout: Option<Duration>) {
        self.conn.inner.lock().read_timeout = timeout;
    }

    /// How long writes wait for room before failing with `TimedOut`.
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

    /// In non-blocking mode reads, writes and `close` never wait: they fail
    /// with `WouldBlock` instead (use a [`Poller`](crate::Poller)).
    pub fn set_nonblocking(&self, nonblocking: bool) {
        self.conn.inner.lock().nonblocking = nonblocking;
    }

    /// Another handle to the same connection. The connection closes when
    /// the last handle is dropped or closed.
    pub fn try_clone(&self) -> io::Result<UdtStream> {
        let mut g = self.conn.inner.lock();
        if g.aborted {
            return Err(crate::error::aborted());
        }
        g.handles += 1;
        drop(g);
        Ok(UdtStream {
            conn: self.conn.clone(),
            mux: self.mux.clone(),
        })
    }

    /// Bytes that can be written right now without blocking.
    pub fn send_buffer_free(&self) -> usize {
        self.conn
            .peek(|g| g.phase.connection_ref().map(|c| c.send_buffer_free()))
            .unwrap_or(0)
    }

    /// Ends one or both directions. UDT has no half-close:
    /// - `Read`: later reads return `Ok(0)`; what arrives is discarded.
    /// - `Write` or `Both`: starts the orderly close in the background, as
    ///   [`close_nonblocking`](Self::close_nonblocking) does; data written
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

    /// Closes the connection and waits until the peer has acknowledged
    /// everything written, or the linger time ([`Config::linger`](udt_core::Config::linger))
    /// has passed. It returns only once the final shutdown packet has been
    /// handed to the kernel, so the process may exit right after.
    ///
    /// # Errors
    /// The reason the data may not all have arrived: `TimedOut` when the
    /// linger time expired or the peer went silent, `ConnectionReset` when
    /// the peer closed first with data still unacknowledged,
    /// `ConnectionAborted` when the endpoint was aborted. In non-blocking
    /// mode, `WouldBlock` while the close is still in progress (call again
    /// to check; dropping the stream lets it finish in the background).
    pub fn close(self) -> io::Result<()> {
        let linger = self.conn.config.linger.unwrap_or(Duration::ZERO);
        // The core always ends the close by itself (linger or idle timer);
        // this is only a safety net against a stalled endpoint.
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

    /// Starts an orderly close and returns at once; the connection finishes
    /// delivering in the background, exactly as when the stream is dropped.
    pub fn close_nonblocking(self) {
        drop(self);
    }

    fn read_inner(&self, buf: &mut [u8]) -> io::Result<usize> {
        self.conn.blocking(
            |g| g.read_timeout,
            "read timed out",
            |g, _now| {
                if g.read_shut {
                    return Some(Ok(0));
                }
                let Some(c) = g.phase.connection() else {
                    return Some(Err(not_connected()));
                };
                match c.read(buf) {
                    Ok(n) => Some(Ok(n)),
                    Err(ReadError::WouldBlock) => None,
                    Err(e) => Some(Err(e.into())),
                }
            },
        )
    }

    fn write_inner(&self, data: &[u8]) -> io::Result<usize> {
        self.conn.blocking(
            |g| g.write_timeout,
            "write timed out: the send buffer stayed full",
            |g, _now| {
                let Some(c) = g.phase.connection() else {
                    return Some(Err(not_connected()));
                };
                match c.write(data) {
                    Ok(n) => Some(Ok(n)),
                    Err(WriteError::WouldBlock) => None,
                    Err(e) => Some(Err(e.into())),
                }
            },
        )
    }

    /// Waits until every byte written has been acknowledged by the peer, or
    /// `timeout` passes. Unlike `flush` (a no-op, as for TCP) this tells
    /// the application that the peer has the data.
    ///
    /// # Errors
    /// `TimedOut` when data is still unacknowledged after `timeout`; the
    /// connection's error if it ended first.
    pub fn wait_acknowledged(&self, timeout: Option<Duration>) -> io::Result<()> {
        self.conn.blocking(
            |_| timeout,
            "data still unacknowledged",
            |g, _now| {
                let Some(c) = g.phase.connection() else {
                    return Some(Err(not_connected()));
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
}

pub(crate) fn not_connected() -> io::Error {
    io::Error::new(
        io::ErrorKind::NotConnected,
        "the connection is not established",
    )
}

impl Read for UdtStream {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        self.read_inner(buf)
    }
}

impl Read for &UdtStream {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        self.read_inner(buf)
    }
}

impl Write for UdtStream {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.write_inner(buf)
    }

    /// A no-op, as for TCP: written data is already on its way. See
    /// [`UdtStream::wait_acknowledged`] to wait for the peer.
    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

impl Write for &UdtStream {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.write_inner(buf)
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

impl Drop for UdtStream {
    fn drop(&mut self) {
        self.conn.release_handle();
    }
}
