//! `UdtStream`: a connected byte stream with `std::io::Read` and `Write`.
//! Everything else it can do is the shared handle's (`handle.rs`).

use std::io::{self, Read, Write};

use udt_core::WriteError;

use crate::conn::WaitFor;
use crate::error;
use crate::handle::UdtSocket;
use crate::mode::StreamMode;

/// A reliable byte stream over UDT, like `std::net::TcpStream`.
///
/// Reads block until data arrives (or the read timeout passes); `Ok(0)`
/// means the peer closed the connection in order and everything it sent
/// has been read. Writes block while the send buffer is full and return how
/// much they queued; data is delivered in order, exactly once.
///
/// `Read` and `Write` are also implemented for `&UdtStream`, so one thread
/// can read while another writes (or use [`try_clone`](UdtSocket::try_clone)).
/// Addresses, statistics, timeouts, non-blocking mode, shutdown and close
/// are the methods of [`UdtSocket`], shared with message sockets.
///
/// # Examples
///
/// ```
/// use std::io::{Read, Write};
/// use udt_mux::Endpoint;
///
/// # fn main() -> std::io::Result<()> {
/// let a = Endpoint::bind("127.0.0.1:0")?;
/// let b = Endpoint::bind("127.0.0.1:0")?;
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
pub type UdtStream = UdtSocket<StreamMode>;

impl UdtSocket<StreamMode> {
    fn read_inner(&self, buf: &mut [u8]) -> io::Result<usize> {
        self.conn().read_into(buf)
    }

    fn write_inner(&self, data: &[u8]) -> io::Result<usize> {
        self.conn().blocking(
            WaitFor::Write,
            |g| g.write_timeout,
            "write timed out: the send buffer stayed full",
            |g, _now| {
                let Some(c) = g.phase.connection() else {
                    return Some(Err(error::not_connected()));
                };
                match c.write(data) {
                    Ok(n) => Some(Ok(n)),
                    Err(WriteError::WouldBlock) => None,
                    Err(e) => Some(Err(error::write_error(e))),
                }
            },
        )
    }
}

impl UdtSocket<StreamMode> {
    /// Reads like [`Read::read`], appending at most `max` bytes to `out`
    /// instead of filling a slice, and returns how many (`Ok(0)` at the end
    /// of the stream, or when `max` is 0).
    ///
    /// Faster for bulk data: while the call waits, `out` is lent to the
    /// connection and data arriving in order is copied from the socket's
    /// batch straight into it, once, instead of into the receive buffer and
    /// out again (`Stats::bytes_received_direct` counts it). `out` keeps what
    /// it held; reserve `max` bytes in it beforehand to avoid a reallocation.
    ///
    /// # Errors
    /// As [`Read::read`]: `WouldBlock` in non-blocking mode, `TimedOut` after
    /// the read timeout, `NotConnected`, `ConnectionAborted`, and the
    /// connection's failures (a stream truncated by the peer's abort is an
    /// error, never an end of stream).
    pub fn read_append(&self, out: &mut Vec<u8>, max: usize) -> io::Result<usize> {
        self.conn().read_lending(out, max)
    }
}

impl Read for UdtSocket<StreamMode> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        self.read_inner(buf)
    }
}

impl Read for &UdtSocket<StreamMode> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        self.read_inner(buf)
    }
}

impl Write for UdtSocket<StreamMode> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.write_inner(buf)
    }

    /// A no-op, as for TCP: written data is already on its way. See
    /// [`UdtSocket::wait_acknowledged`] to wait for the peer.
    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

impl Write for &UdtSocket<StreamMode> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.write_inner(buf)
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}
