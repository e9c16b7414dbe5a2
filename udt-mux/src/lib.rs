//! udt-mux: the I/O half of the udt transport. One UDP port carries any
//! number of UDT connections; this crate owns the port, its threads and the
//! blocking socket API applications program against. The protocol itself
//! lives in [`udt_core`], which this crate drives without interpreting
//! packets beyond their destination socket ID.
//!
//! # The API in one page
//!
//! - [`Endpoint::bind`] binds a UDP port (one multiplexer: a send thread and
//!   a receive thread). Everything below shares that port.
//! - [`Endpoint::listen`] → [`UdtListener::accept`]: incoming connections.
//! - [`Endpoint::connect`] / [`Endpoint::rendezvous`]: outgoing ones.
//! - [`UdtStream`]: `std::io::Read + Write`, timeouts, non-blocking mode,
//!   [`close`](UdtStream::close) with linger.
//! - [`UdtMessageSocket`]: whole messages with TTL and ordering flag.
//! - [`Poller`]: readiness of many connections from one thread, with error
//!   and hang-up events.
//! - [`Config`] (per connection, from udt-core) and [`EndpointConfig`] (the
//!   port: UDP buffer sizes, batching, pacing precision).
//!
//! ```
//! use std::io::{Read, Write};
//! use udt_mux::{Config, Endpoint};
//!
//! # fn main() -> std::io::Result<()> {
//! let server = Endpoint::bind("127.0.0.1:0".parse().unwrap(), Config::default())?;
//! let listener = server.listen(16)?;
//! let client = Endpoint::bind("127.0.0.1:0".parse().unwrap(), Config::default())?;
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
// → app, send_queue, recv_queue (what each kind of thread does) → stream,
// message, listener (handles) → poller → endpoint (binds, starts threads).
mod accept;
mod app;
mod config;
mod conn;
mod counters;
mod endpoint;
mod error;
mod listener;
mod message;
mod mux;
mod notify;
mod poller;
mod recv_queue;
mod registry;
mod send_queue;
mod stream;
mod udp;
mod watch;

pub use config::EndpointConfig;
pub use counters::EndpointStats;
pub use endpoint::Endpoint;
pub use error::{ConnectError, ListenError};
pub use listener::{UdtListener, UdtMessageListener};
pub use message::UdtMessageSocket;
pub use poller::{Interest, PollEvent, Pollable, Poller, Token};
pub use stream::UdtStream;

pub use udt_core::stats::Stats;
pub use udt_core::{Config, ConnectionError, SocketType};

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
