//! udt-mux: the I/O half of the udt transport. One UDP port carries any
//! number of UDT connections; this crate owns the port, its threads and the
//! blocking socket API applications program against. The protocol itself
//! lives in [`udt_core`], which this crate drives without interpreting
//! packets beyond their destination socket ID.
//!
//! # The API in one page
//!
//! - [`Endpoint::bind`] binds a UDP port (one multiplexer: a send thread and
//!   a receive thread). Everything below shares that port. Addresses are
//!   anything [`ToSocketAddrs`](std::net::ToSocketAddrs): `"host:port"`,
//!   `("host", port)`, a `SocketAddr`.
//! - [`Endpoint::listen`] → [`UdtListener::accept`]: incoming connections.
//! - [`Endpoint::connect`] / [`Endpoint::rendezvous`]: outgoing ones.
//! - The `_with` forms take [`Options`]: message connections instead of
//!   streams ([`Options::messages`]) and a per-connection [`Config`].
//! - [`UdtStream`]: `std::io::Read + Write`.
//! - [`UdtMessageSocket`]: whole messages, each optionally with a
//!   time-to-live or out of order ([`MessageOptions`]).
//! - Both are a [`UdtSocket`], which has what every connection has:
//!   addresses, statistics, timeouts, non-blocking mode, shutdown,
//!   [`wait_acknowledged`](UdtSocket::wait_acknowledged) and
//!   [`close`](UdtSocket::close) with linger.
//! - [`Poller`]: readiness of many connections from one thread, with error
//!   and hang-up events.
//! - [`Config`] (per connection, from udt-core) and [`EndpointConfig`] (the
//!   port: UDP buffer sizes, batching, pacing precision). Both are checked
//!   when an endpoint or connection is created ([`ConfigError`]).
//!
//! ```
//! use std::io::{Read, Write};
//! use udt_mux::Endpoint;
//!
//! # fn main() -> std::io::Result<()> {
//! let server = Endpoint::bind("127.0.0.1:0")?;
//! let listener = server.listen(16)?;
//! let client = Endpoint::bind("127.0.0.1:0")?;
//!
//! let mut stream = client.connect(server.local_addr())?;
//! let (mut peer, _) = listener.accept()?;
//! stream.write_all(b"hello over UDT")?;
//! let mut text = [0u8; 14];
//! peer.read_exact(&mut text)?;
//! assert_eq!(&text, b"hello over UDT");
//! // Returns once the peer has acknowledged and read everything.
//! stream.close()?;
//! # Ok(())
//! # }
//! ```
//!
//! # Errors
//!
//! Operations return `std::io::Error` (or, for `connect`, `rendezvous` and
//! `listen`, a [`ConnectError`] or [`ListenError`] that converts into
//! one). The `io::Error` keeps the typed error: get it back with
//! [`get_ref`](std::io::Error::get_ref) and `downcast_ref`. A connection
//! that ended makes every later call fail with its [`ConnectionError`]
//! inside; a bad configuration gives a [`ConfigError`].
//!
//! ```
//! use std::io;
//! use std::net::UdpSocket;
//! use std::time::Duration;
//! use udt_mux::{Config, ConnectError, Endpoint, EndpointConfig};
//!
//! fn connect_quickly(endpoint: &Endpoint, to: std::net::SocketAddr) -> io::Result<()> {
//!     let mut config = endpoint.config().clone();
//!     config.connect_timeout = Duration::from_millis(300);
//!     let options = udt_mux::Options::stream().config(config);
//!     let _stream = endpoint.connect_with(to, options)?; // ConnectError -> io::Error
//!     Ok(())
//! }
//!
//! # fn main() -> io::Result<()> {
//! let endpoint = Endpoint::bind("127.0.0.1:0")?;
//! let silent = UdpSocket::bind("127.0.0.1:0")?; // nobody answers there
//! let err = connect_quickly(&endpoint, silent.local_addr()?).unwrap_err();
//! assert_eq!(err.kind(), io::ErrorKind::TimedOut);
//! match err.get_ref().and_then(|inner| inner.downcast_ref::<ConnectError>()) {
//!     Some(ConnectError::TimedOut { peer, after }) => {
//!         assert_eq!(*peer, silent.local_addr()?);
//!         assert_eq!(*after, Duration::from_millis(300));
//!     }
//!     other => panic!("expected a connect timeout, got {other:?}"),
//! }
//!
//! // A configuration out of range is refused when the endpoint is made.
//! let mut config = Config::default();
//! config.mss = 20;
//! let err = Endpoint::bind_with("127.0.0.1:0", config, EndpointConfig::default()).unwrap_err();
//! let inner = err.get_ref().and_then(|e| e.downcast_ref::<udt_mux::ConfigError>());
//! assert!(inner.is_some(), "{err}");
//! # Ok(())
//! # }
//! ```
//!
//! # Threads and locks
//!
//! See `docs/threading.md` in the repository. In short: per endpoint a send
//! thread (send schedule heap, precise pacing, batched `sendmmsg`) and a
//! receive thread (batched `recvmmsg`, routing, handshakes, protocol timers
//! from a deadline heap); locks in the order registry → connection → poller,
//! never two connections at once, never across a system call.
//!
//! # Platform
//!
//! Unix only (the receive thread polls the socket's file descriptor). Linux
//! sends and receives in batches with `sendmmsg`/`recvmmsg`; other Unix
//! systems use one system call per datagram.

#![warn(
    missing_docs,
    missing_debug_implementations,
    unreachable_pub,
    rust_2018_idioms
)]

#[cfg(not(unix))]
compile_error!("udt-mux supports Unix systems only");

// Layers, each importing only from those above it in this list:
// udp, config, error, counters, watch (leaves) → notify (thread commands,
// waker) → conn (connection state) → accept, registry → mux (shared state)
// → app, send_queue, recv_queue (what each kind of thread does) → mode,
// options, handle, stream, message, listener (handles) → poller → endpoint
// (binds, starts threads).
mod accept;
mod app;
mod config;
mod conn;
mod counters;
mod endpoint;
mod error;
mod handle;
mod listener;
mod message;
mod mode;
mod mux;
mod notify;
mod options;
mod poller;
mod read_pause;
mod recv_aux;
mod recv_queue;
mod registry;
mod router;
mod send_queue;
mod stream;
mod udp;
mod watch;

pub use config::{EndpointConfig, MAX_SOCKETS};
pub use counters::EndpointStats;
pub use endpoint::Endpoint;
pub use error::{ConnectError, ListenError};
pub use handle::UdtSocket;
pub use listener::{UdtListener, UdtMessageListener};
pub use message::UdtMessageSocket;
pub use mode::{MessageMode, Mode, StreamMode};
pub use options::{MessageOptions, Options};
pub use poller::{Interest, PollEvent, Pollable, Poller, Token};
pub use stream::UdtStream;

pub use udt_core::config::ConfigError;
pub use udt_core::stats::Stats;
pub use udt_core::{Config, ConnectionError, PeerIdentity, ReadError, Security, WriteError};

#[cfg(test)]
mod tests {
    use super::*;

    fn assert_send_sync<T: Send + Sync>() {}

    #[test]
    fn handles_are_send_and_sync() {
        assert_send_sync::<Endpoint>();
        assert_send_sync::<UdtStream>();
        assert_send_sync::<UdtMessageSocket>();
        assert_send_sync::<UdtListener>();
        assert_send_sync::<UdtMessageListener>();
        assert_send_sync::<Poller>();
    }
}
