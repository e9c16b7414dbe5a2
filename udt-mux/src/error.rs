//! Errors of the endpoint-level operations (connect, listen), with messages
//! that say what to do, and their conversion to `io::Error`.
//!
//! Reads and writes report `io::Error`s built from the core's
//! [`ConnectionError`](udt_core::ConnectionError), [`ReadError`](udt_core::ReadError)
//! and [`WriteError`](udt_core::WriteError); the original value is the
//! error's `source`/`get_ref`.

use std::fmt;
use std::io;
use std::net::SocketAddr;
use std::time::Duration;

use udt_core::handshake;

/// Why a connect or rendezvous did not produce a connection.
#[derive(Clone, Debug)]
#[non_exhaustive]
pub enum ConnectError {
    /// Nobody answered within the connect (or rendezvous) timeout.
    TimedOut {
        /// The address we tried.
        peer: SocketAddr,
        /// How long we tried.
        after: Duration,
    },
    /// The peer answered and refused: its backlog is full, or its UDT
    /// version or socket type (stream/message) differs from ours.
    Rejected {
        /// The address that refused.
        peer: SocketAddr,
    },
    /// The handshake failed another way (for example the peer's answer did
    /// not match our request: UDT4's `ESECFAIL`).
    Handshake(handshake::ConnectError),
    /// The peer's address family cannot be reached from this endpoint's
    /// socket (an IPv6 peer from an IPv4 socket, or the reverse on an
    /// IPv6-only socket).
    AddressFamily {
        /// The endpoint's local address.
        local: SocketAddr,
        /// The peer address given.
        peer: SocketAddr,
    },
    /// A rendezvous with this peer address is already set up on this
    /// endpoint: one address pair carries one rendezvous connection.
    RendezvousBusy {
        /// The peer address given.
        peer: SocketAddr,
    },
    /// The endpoint was aborted or its threads stopped.
    EndpointClosed,
}

impl fmt::Display for ConnectError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ConnectError::TimedOut { peer, after } => write!(
                f,
                "no UDT answer from {peer} within {after:?}: check that a UDT listener (or, for \
                 rendezvous, the peer) is running there and that UDP traffic is not filtered"
            ),
            ConnectError::Rejected { peer } => write!(
                f,
                "{peer} refused the connection: its accept backlog is full, or it runs a different \
                 UDT version or socket type (stream vs message)"
            ),
            ConnectError::Handshake(e) => write!(f, "UDT handshake failed: {e}"),
            ConnectError::AddressFamily { local, peer } => write!(
                f,
                "cannot reach {peer} from the endpoint bound to {local}: bind an endpoint of the \
                 same IP version (or an IPv6 dual-stack endpoint for IPv4 peers)"
            ),
            ConnectError::RendezvousBusy { peer } => write!(
                f,
                "a rendezvous with {peer} already exists on this endpoint; close it first or use \
                 another local port"
            ),
            ConnectError::EndpointClosed => {
                f.write_str("the endpoint was aborted; bind a new endpoint")
            }
        }
    }
}

impl std::error::Error for ConnectError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            ConnectError::Handshake(e) => Some(e),
            _ => None,
        }
    }
}

impl From<ConnectError> for io::Error {
    fn from(e: ConnectError) -> io::Error {
        let kind = match e {
            ConnectError::TimedOut { .. } => io::ErrorKind::TimedOut,
            ConnectError::Rejected { .. } => io::ErrorKind::ConnectionRefused,
            ConnectError::Handshake(_) => io::ErrorKind::ConnectionAborted,
            ConnectError::AddressFamily { .. } => io::ErrorKind::InvalidInput,
            ConnectError::RendezvousBusy { .. } => io::ErrorKind::AddrInUse,
            ConnectError::EndpointClosed => io::ErrorKind::NotConnected,
        };
        io::Error::new(kind, e)
    }
}

/// Why `listen` failed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum ListenError {
    /// The endpoint already has a listener (one per UDP port, as in UDT4).
    AlreadyListening,
    /// The endpoint was aborted.
    EndpointClosed,
}

impl fmt::Display for ListenError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ListenError::AlreadyListening => f.write_str(
                "this endpoint already has a listener; drop it first or bind another port",
            ),
            ListenError::EndpointClosed => {
                f.write_str("the endpoint was aborted; bind a new endpoint")
            }
        }
    }
}

impl std::error::Error for ListenError {}

impl From<ListenError> for io::Error {
    fn from(e: ListenError) -> io::Error {
        let kind = match e {
            ListenError::AlreadyListening => io::ErrorKind::AddrInUse,
            ListenError::EndpointClosed => io::ErrorKind::NotConnected,
        };
        io::Error::new(kind, e)
    }
}

/// The error of any operation on a handle whose endpoint was aborted.
pub(crate) fn aborted() -> io::Error {
    io::Error::new(
        io::ErrorKind::ConnectionAborted,
        "the endpoint was aborted: its connections are gone",
    )
}

/// The error of a blocking call that ran into its timeout.
pub(crate) fn timed_out(what: &'static str) -> io::Error {
    io::Error::new(io::ErrorKind::TimedOut, what)
}

/// The error of a call that would block on a non-blocking handle.
pub(crate) fn would_block(what: &'static str) -> io::Error {
    io::Error::new(io::ErrorKind::WouldBlock, what)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn io_kinds() {
        let peer: SocketAddr = "127.0.0.1:9".parse().unwrap();
        let e: io::Error = ConnectError::TimedOut {
            peer,
            after: Duration::from_secs(3),
        }
        .into();
        assert_eq!(e.kind(), io::ErrorKind::TimedOut);
        assert!(e.to_string().contains("127.0.0.1:9"));
        let e: io::Error = ConnectError::Rejected { peer }.into();
        assert_eq!(e.kind(), io::ErrorKind::ConnectionRefused);
        let e: io::Error = ListenError::AlreadyListening.into();
        assert_eq!(e.kind(), io::ErrorKind::AddrInUse);
        assert_eq!(aborted().kind(), io::ErrorKind::ConnectionAborted);
    }
}
