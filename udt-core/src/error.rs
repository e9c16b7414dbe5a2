//! Errors of the application-facing operations of a connection.

use std::fmt;
use std::io;

/// Why a connection ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum ConnectionError {
    /// The peer was silent for longer than the configured peer-idle timeout.
    TimedOut,
    /// The peer closed the connection (it sent a shutdown) after
    /// everything it sent had arrived: a clean end of stream.
    PeerClosed,
    /// The peer ended the connection with some of its data missing here (a
    /// shutdown with gaps before it, an abortive close, an error signal, or
    /// a forged shutdown): what was read is incomplete.
    PeerAborted,
    /// The peer kept reporting as missing data that an acknowledgement had
    /// already released (a forged or corrupted ACK): that data cannot be
    /// resent, so the connection is broken.
    DataLost,
    /// Two different payloads arrived for the same sequence number (an
    /// injected packet, or corruption the UDP checksum missed): data
    /// already read may be wrong.
    Corrupted,
    /// This side closed the connection.
    LocallyClosed,
    /// Close gave up: the linger time passed with data still unacknowledged.
    LingerExpired,
    /// Close gave up: the peer acknowledged everything, but when the linger
    /// time passed its ACKs still reported data its application had not
    /// read. The shutdown was sent; a UDT4 peer may discard that data.
    PeerUnread,
    /// Secure mode: every packet counter of this connection's key was used
    /// (after 2^63 packets); it refuses to send rather than reuse a nonce.
    KeysExhausted,
    /// Secure mode: before any authentic packet arrived, the peer said its
    /// key agreement failed against ours: it gave a wrong code or key (or
    /// it could not authenticate us). A code is one guess per handshake,
    /// so the connection ends rather than waiting.
    AuthFailed,
}

impl fmt::Display for ConnectionError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ConnectionError::TimedOut => {
                f.write_str("connection timed out: the peer stopped answering")
            }
            ConnectionError::PeerClosed => f.write_str("the peer closed the connection"),
            ConnectionError::PeerAborted => f.write_str(
                "the peer ended the connection before all its data arrived (the data is incomplete)",
            ),
            ConnectionError::LocallyClosed => f.write_str("the connection was closed locally"),
            ConnectionError::Corrupted => f.write_str(
                "two different payloads arrived for one sequence number (injected or corrupted data)",
            ),
            ConnectionError::DataLost => f.write_str(
                "the peer is missing data it had acknowledged (forged or corrupted ACK): connection broken",
            ),
            ConnectionError::LingerExpired => f.write_str(
                "close gave up waiting for the peer to acknowledge data (linger time expired)",
            ),
            ConnectionError::AuthFailed => f.write_str(
                "the peer failed to authenticate: it presented a wrong code or key",
            ),
            ConnectionError::KeysExhausted => f.write_str(
                "secure connection used every packet counter of its key; reconnect for fresh keys",
            ),
            ConnectionError::PeerUnread => f.write_str(
                "close gave up waiting for the peer's application to read what it acknowledged \
                 (linger time expired); the peer may discard what it had not read",
            ),
        }
    }
}

impl std::error::Error for ConnectionError {}

impl From<ConnectionError> for io::Error {
    fn from(e: ConnectionError) -> io::Error {
        let kind = match e {
            ConnectionError::TimedOut => io::ErrorKind::TimedOut,
            ConnectionError::PeerClosed => io::ErrorKind::ConnectionReset,
            ConnectionError::PeerAborted => io::ErrorKind::ConnectionAborted,
            ConnectionError::DataLost | ConnectionError::Corrupted => io::ErrorKind::InvalidData,
            ConnectionError::LocallyClosed => io::ErrorKind::NotConnected,
            ConnectionError::LingerExpired | ConnectionError::PeerUnread => io::ErrorKind::TimedOut,
            ConnectionError::KeysExhausted => io::ErrorKind::Other,
            ConnectionError::AuthFailed => io::ErrorKind::PermissionDenied,
        };
        io::Error::new(kind, e)
    }
}

/// Why a write or a message send did not happen.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum WriteError {
    /// The send buffer is full; try again once the connection is writable.
    WouldBlock,
    /// The message is larger than the whole send buffer and can never be sent.
    MessageTooLarge {
        /// Size of the message in bytes.
        size: usize,
        /// The largest message the send buffer can hold.
        max: usize,
    },
    /// Stream writes on a message connection or the other way round.
    WrongMode,
    /// The connection is closing or closed.
    Closed(ConnectionError),
}

impl fmt::Display for WriteError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            WriteError::WouldBlock => f.write_str("send buffer full"),
            WriteError::MessageTooLarge { size, max } => write!(
                f,
                "message of {size} bytes is larger than the send buffer ({max} bytes); raise send_buffer_packets"
            ),
            WriteError::WrongMode => f.write_str(
                "operation does not match the socket type (stream calls on a message connection or vice versa)",
            ),
            WriteError::Closed(e) => write!(f, "cannot write: {e}"),
        }
    }
}

impl std::error::Error for WriteError {}

impl From<WriteError> for io::Error {
    fn from(e: WriteError) -> io::Error {
        match e {
            WriteError::WouldBlock => io::Error::new(io::ErrorKind::WouldBlock, e),
            WriteError::MessageTooLarge { .. } | WriteError::WrongMode => {
                io::Error::new(io::ErrorKind::InvalidInput, e)
            }
            WriteError::Closed(c) => match c {
                ConnectionError::PeerClosed | ConnectionError::LocallyClosed => {
                    io::Error::new(io::ErrorKind::BrokenPipe, e)
                }
                other => other.into(),
            },
        }
    }
}

/// Why a read or a message receive returned nothing.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum ReadError {
    /// Nothing to read yet; try again once the connection is readable.
    WouldBlock,
    /// Stream reads on a message connection or the other way round.
    WrongMode,
    /// The connection ended and everything it delivered has been read.
    Closed(ConnectionError),
}

impl fmt::Display for ReadError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ReadError::WouldBlock => f.write_str("no data available yet"),
            ReadError::WrongMode => f.write_str(
                "operation does not match the socket type (stream calls on a message connection or vice versa)",
            ),
            ReadError::Closed(e) => write!(f, "cannot read: {e}"),
        }
    }
}

impl std::error::Error for ReadError {}

impl From<ReadError> for io::Error {
    fn from(e: ReadError) -> io::Error {
        match e {
            ReadError::WouldBlock => io::Error::new(io::ErrorKind::WouldBlock, e),
            ReadError::WrongMode => io::Error::new(io::ErrorKind::InvalidInput, e),
            ReadError::Closed(c) => c.into(),
        }
    }
}
