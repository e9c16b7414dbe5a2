//! `UdtMessageSocket`: a connection that carries whole messages (UDT's
//! `SOCK_DGRAM` mode), each with an optional time-to-live and an in-order
//! flag. Everything else it can do is the shared handle's (`handle.rs`).

use std::io;

use bytes::Bytes;
use udt_core::{ConnectionError, ReadError, WriteError};

use crate::conn::WaitFor;
use crate::error;
use crate::handle::UdtSocket;
use crate::mode::MessageMode;
use crate::options::MessageOptions;

/// A message-mode UDT connection: each `send_msg` arrives as exactly one
/// `recv_msg`, never merged or split.
///
/// A message may carry a time-to-live: if it still needs a retransmission
/// after that long, the sender gives it up and tells the receiver, which
/// then never delivers it (partial reliability, udt4-protocol.md §11). An
/// unordered message is delivered as soon as it is complete, ahead of
/// earlier ones. See [`MessageOptions`].
///
/// Addresses, statistics, timeouts, non-blocking mode, shutdown,
/// [`wait_acknowledged`](UdtSocket::wait_acknowledged) and close are the
/// methods of [`UdtSocket`], shared with streams.
///
/// # Examples
///
/// ```
/// use std::time::Duration;
/// use udt_mux::{Endpoint, MessageOptions, Options};
///
/// # fn main() -> std::io::Result<()> {
/// let a = Endpoint::bind("127.0.0.1:0")?;
/// let b = Endpoint::bind("127.0.0.1:0")?;
/// let listener = b.listen_with(4, Options::messages())?;
/// let sender = a.connect_with(b.local_addr(), Options::messages())?;
/// let (receiver, _) = listener.accept()?;
///
/// sender.send_msg(b"first")?;
/// let expendable = MessageOptions::new().ttl(Duration::from_millis(100)).unordered();
/// sender.send_msg_with(b"may be dropped after 100 ms", expendable)?;
/// assert_eq!(receiver.recv_msg()?.as_deref(), Some(&b"first"[..]));
/// # Ok(())
/// # }
/// ```
pub type UdtMessageSocket = UdtSocket<MessageMode>;

impl UdtSocket<MessageMode> {
    /// Queues one message, reliably and in order. Blocks while the send
    /// buffer is full.
    ///
    /// # Errors
    /// As [`send_msg_with`](Self::send_msg_with).
    pub fn send_msg(&self, msg: &[u8]) -> io::Result<()> {
        self.send_msg_with(msg, MessageOptions::new())
    }

    /// Queues one message with a time-to-live or out of order (see
    /// [`MessageOptions`]). Blocks while the send buffer is full.
    ///
    /// # Errors
    /// `InvalidInput` when the message is larger than the whole send buffer
    /// (raise `Config::send_buffer_packets`); `WouldBlock` in non-blocking
    /// mode; `TimedOut` after the write timeout; the connection's error
    /// once it ended (`BrokenPipe` after a close).
    pub fn send_msg_with(&self, msg: &[u8], options: MessageOptions) -> io::Result<()> {
        let (ttl, in_order) = (options.time_to_live(), options.is_ordered());
        self.conn().blocking(
            WaitFor::Write,
            |g| g.write_timeout,
            "send timed out: the send buffer stayed full",
            |g, now| {
                let Some(c) = g.phase.connection() else {
                    return Some(Err(error::not_connected()));
                };
                match c.send_msg(now, msg, ttl, in_order) {
                    Ok(()) => Some(Ok(())),
                    Err(WriteError::WouldBlock) => None,
                    Err(e) => Some(Err(error::write_error(e))),
                }
            },
        )
    }

    /// Receives the next whole message into `out` (replacing its contents)
    /// and returns its length, or `None` once the peer closed in order and
    /// every message was received (or after a read
    /// [`shutdown`](UdtSocket::shutdown)). Reuses `out`'s allocation.
    ///
    /// # Errors
    /// `WouldBlock` in non-blocking mode; `TimedOut` after the read timeout;
    /// the connection's error when it ended any other way.
    pub fn recv_msg_into(&self, out: &mut Vec<u8>) -> io::Result<Option<usize>> {
        self.conn().blocking(
            WaitFor::Read,
            |g| g.read_timeout,
            "receive timed out",
            |g, _now| {
                if g.read_shut {
                    return Some(Ok(None));
                }
                let Some(c) = g.phase.connection() else {
                    return Some(Err(error::not_connected()));
                };
                match c.recv_msg_into(out) {
                    Ok(n) => Some(Ok(Some(n))),
                    Err(ReadError::WouldBlock) => None,
                    Err(ReadError::Closed(ConnectionError::PeerClosed)) => Some(Ok(None)),
                    Err(e) => Some(Err(error::read_error(e))),
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
}
