//! Errors of the endpoint-level operations (connect, listen), with messages
//! that say what to do, and their conversion to `io::Error`.
//!
//! Every `io::Error` this crate returns for a reason it can name carries a
//! typed error inside, which [`io::Error::get_ref`] and `downcast_ref` give
//! back (the crate documentation shows how):
//!
//! | from | inner error |
//! |---|---|
//! | `connect`, `rendezvous` (after `?`) | [`ConnectError`] |
//! | `listen` (after `?`) | [`ListenError`] |
//! | `bind` with a bad configuration | [`ConfigError`](udt_core::config::ConfigError) |
//! | reads, writes, messages, `close`, `wait_acknowledged` on a connection that ended | [`ConnectionError`](udt_core::ConnectionError): why it ended |
//! | a message larger than the send buffer | [`WriteError`](udt_core::WriteError) |
//!
//! A read, write or accept that ran into its own timeout (`TimedOut`) or
//! would block (`WouldBlock`) carries no typed error: the connection is
//! still usable.

use std::fmt;
use std::io;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use udt_core::config::ConfigError;
use udt_core::{handshake, ReadError, WriteError};

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
    /// The address given did not resolve to any socket address (the
    /// resolver's error, or "no address").
    Resolve(Arc<io::Error>),
    /// The configuration given for this connection is out of range.
    InvalidConfig(ConfigError),
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
            ConnectError::Resolve(e) => write!(f, "cannot resolve the peer address: {e}"),
            ConnectError::InvalidConfig(e) => write!(f, "cannot connect: {e}"),
        }
    }
}

impl std::error::Error for ConnectError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            ConnectError::Handshake(e) => Some(e),
            ConnectError::Resolve(e) => Some(&**e),
            ConnectError::InvalidConfig(e) => Some(e),
            _ => None,
        }
    }
}

impl From<ConnectError> for io::Error {
    fn from(e: ConnectError) -> io::Error {
        let kind = match e {
            ConnectError::TimedOut { .. } => io::ErrorKind::TimedOut,
            ConnectError::Rejected { .. } => io::ErrorKind::ConnectionRefused,
            // Secure-mode refusals (wrong code or key, downgrade) keep the
            // core's PermissionDenied / InvalidInput, so a caller can tell
            // them from a broken handshake.
            ConnectError::Handshake(h) => match io::Error::from(h).kind() {
                k @ (io::ErrorKind::PermissionDenied | io::ErrorKind::InvalidInput) => k,
                _ => io::ErrorKind::ConnectionAborted,
            },
            ConnectError::AddressFamily { .. } => io::ErrorKind::InvalidInput,
            ConnectError::RendezvousBusy { .. } => io::ErrorKind::AddrInUse,
            ConnectError::EndpointClosed => io::ErrorKind::NotConnected,
            ConnectError::Resolve(ref r) => r.kind(),
            ConnectError::InvalidConfig(_) => io::ErrorKind::InvalidInput,
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
    /// The configuration given for the accepted connections is out of range.
    InvalidConfig(ConfigError),
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
            ListenError::InvalidConfig(e) => write!(f, "cannot listen: {e}"),
        }
    }
}

impl std::error::Error for ListenError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            ListenError::InvalidConfig(e) => Some(e),
            _ => None,
        }
    }
}

impl From<ListenError> for io::Error {
    fn from(e: ListenError) -> io::Error {
        let kind = match e {
            ListenError::AlreadyListening => io::ErrorKind::AddrInUse,
            ListenError::EndpointClosed => io::ErrorKind::NotConnected,
            ListenError::InvalidConfig(_) => io::ErrorKind::InvalidInput,
        };
        io::Error::new(kind, e)
    }
}

/// The `io::Error` of a bad configuration, with the [`ConfigError`] inside.
pub(crate) fn invalid_config(e: ConfigError) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidInput, e)
}

/// The `io::Error` of a refused write or send. The kind is the core's; the
/// inner error is the [`ConnectionError`](udt_core::ConnectionError) when
/// the connection has ended (whichever way), so that one downcast tells why.
pub(crate) fn write_error(e: WriteError) -> io::Error {
    let kind = io::Error::from(e).kind();
    match e {
        WriteError::Closed(why) => io::Error::new(kind, why),
        other => io::Error::new(kind, other),
    }
}

/// The `io::Error` of a failed read or receive, on the same rule as
/// [`write_error`].
pub(crate) fn read_error(e: ReadError) -> io::Error {
    let kind = io::Error::from(e).kind();
    match e {
        ReadError::Closed(why) => io::Error::new(kind, why),
        other => io::Error::new(kind, other),
    }
}

/// The error of an operation on a connection that is not established.
pub(crate) fn not_connected() -> io::Error {
    io::Error::new(
        io::ErrorKind::NotConnected,
        "the connection is not established",
    )
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

    #[test]
    fn the_typed_error_comes_back_out_of_the_io_error() {
        let peer: SocketAddr = "127.0.0.1:9".parse().unwrap();
        let e: io::Error = ConnectError::Rejected { peer }.into();
        let inner = e.get_ref().and_then(|i| i.downcast_ref::<ConnectError>());
        assert!(matches!(inner, Some(ConnectError::Rejected { .. })));

        let e: io::Error = ListenError::AlreadyListening.into();
        let inner = e.get_ref().and_then(|i| i.downcast_ref::<ListenError>());
        assert_eq!(inner, Some(&ListenError::AlreadyListening));
    }

    #[test]
    fn an_ended_connection_reads_and_writes_as_its_connection_error() {
        use udt_core::ConnectionError;
        let why = |e: &io::Error| {
            e.get_ref()
                .and_then(|i| i.downcast_ref::<ConnectionError>())
                .copied()
        };
        // The kinds stay the core's; the inner error is always the reason.
        for reason in [
            ConnectionError::PeerClosed,
            ConnectionError::TimedOut,
            ConnectionError::LingerExpired,
        ] {
            let w = write_error(WriteError::Closed(reason));
            assert_eq!(w.kind(), io::Error::from(WriteError::Closed(reason)).kind());
            assert_eq!(why(&w), Some(reason));
            let r = read_error(ReadError::Closed(reason));
            assert_eq!(r.kind(), io::Error::from(ReadError::Closed(reason)).kind());
            assert_eq!(why(&r), Some(reason));
        }
        assert_eq!(
            write_error(WriteError::Closed(ConnectionError::PeerClosed)).kind(),
            io::ErrorKind::BrokenPipe
        );
        // A refusal that is not the connection's end keeps its own type.
        let big = write_error(WriteError::MessageTooLarge { size: 9, max: 1 });
        assert_eq!(big.kind(), io::ErrorKind::InvalidInput);
        assert!(big
            .get_ref()
            .and_then(|i| i.downcast_ref::<WriteError>())
            .is_some());
    }

    #[test]
    fn errors_name_their_cause() {
        let e = ConnectError::Resolve(Arc::new(io::Error::new(
            io::ErrorKind::InvalidInput,
            "no address",
        )));
        assert!(e.to_string().contains("no address"));
        assert_eq!(io::Error::from(e).kind(), io::ErrorKind::InvalidInput);
        let bad = ConfigError::OutOfRange {
            field: "Config.mss",
            value: 1,
            min: 76,
            max: 65_535,
        };
        let e = ConnectError::InvalidConfig(bad);
        assert!(e.to_string().contains("Config.mss = 1"));
        assert!(std::error::Error::source(&e).is_some());
        assert_eq!(io::Error::from(e).kind(), io::ErrorKind::InvalidInput);
        let e = ListenError::InvalidConfig(bad);
        assert_eq!(io::Error::from(e).kind(), io::ErrorKind::InvalidInput);
    }
}
