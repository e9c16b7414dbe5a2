//! udt: a UDT4-compatible reliable transport over UDP.
//!
//! The public API is the multiplexer's ([`udt_mux`]): bind an [`Endpoint`]
//! on a UDP port, then [`listen`](Endpoint::listen) /
//! [`connect`](Endpoint::connect) / [`rendezvous`](Endpoint::rendezvous)
//! on it; [`UdtStream`] is `std::io::Read + Write`, [`UdtMessageSocket`]
//! keeps message boundaries (open one with [`Options::messages`]), and a
//! [`Poller`] watches many connections from one thread.
//!
//! Code that drives the protocol engine itself, without the multiplexer's
//! sockets and threads, uses the [`proto`] module.
//!
//! ```
//! use std::io::{Read, Write};
//! use udt::Endpoint;
//!
//! # fn main() -> std::io::Result<()> {
//! let server = Endpoint::bind("127.0.0.1:0")?;
//! let listener = server.listen(16)?;
//! let client = Endpoint::bind("127.0.0.1:0")?;
//! let mut stream = client.connect(server.local_addr())?;
//! let (mut accepted, _) = listener.accept()?;
//! stream.write_all(b"hi")?;
//! let mut buf = [0u8; 2];
//! accepted.read_exact(&mut buf)?;
//! assert_eq!(&buf, b"hi");
//! # Ok(())
//! # }
//! ```

#![warn(missing_docs, rust_2018_idioms)]

pub use udt_mux::*;

pub mod proto {
    //! The sans-I/O protocol engine, for code that owns its sockets, threads
    //! and clock: a simulator, an async runtime, an embedded loop.
    //!
    //! Nothing here opens a socket or reads a clock; every call takes `now`.
    //! The pieces, and the order to call them in, are described in
    //! `docs/sans-io.md`:
    //!
    //! - [`endpoint`]: the [`Endpoint`](endpoint::Endpoint) that routes
    //!   datagrams above the connections (socket IDs, listener, rendezvous,
    //!   tombstones, a [`DatagramHandler`](endpoint::DatagramHandler) for
    //!   STUN) and the [`Socket`](endpoint::Socket) each route leads to:
    //!   what a multiplexer of your own drives.
    //! - [`handshake`]: the [`Caller`](handshake::Caller),
    //!   [`Listener`](handshake::Listener) (stateless SYN cookie) and
    //!   [`Rendezvous`](handshake::Rendezvous) machines, which end in a
    //!   [`ConnectParams`](handshake::ConnectParams).
    //! - [`Connection`]: one established connection built from those
    //!   parameters; datagrams and time in, [`Transmit`]s and [`Event`]s out.
    //! - [`packet`]: decoding and encoding of every UDT4 packet.
    //! - [`Config`] (with [`Config::with_socket_type`] to choose stream or
    //!   message handshakes), [`ConfigError`], and [`cc`] for a congestion
    //!   controller of your own.
    //!
    //! The engine's internals (buffers, loss lists, estimators, the random
    //! generator, the send scheduler) are not part of this API.
    //!
    //! ```
    //! use std::net::SocketAddr;
    //! use std::time::Instant;
    //! use udt::proto::{handshake::Caller, Config, SeqNumber, SocketId, SocketType};
    //!
    //! let config = Config::default().with_socket_type(SocketType::Message);
    //! let peer = SocketAddr::from(([192, 0, 2, 1], 9000));
    //! let now = Instant::now();
    //! let mut caller = Caller::new(&config, SocketId(7), peer, SeqNumber::new(1), now);
    //! let mut datagram = Vec::new();
    //! // The first connection request is due at once.
    //! assert_eq!(caller.poll_transmit(now, &mut datagram), Some(peer));
    //! assert!(!datagram.is_empty());
    //! ```

    pub use udt_core::cc;
    pub use udt_core::config::{
        ConfigError, MAX_BUFFER_PACKETS, MAX_MSS, MIN_BUFFER_PACKETS, MIN_MSS,
    };
    pub use udt_core::endpoint;
    pub use udt_core::handshake;
    pub use udt_core::packet;
    pub use udt_core::stats::{DropStats, SendLimits, Stats};
    pub use udt_core::{
        AckSeqNumber, Config, Connection, ConnectionError, Event, MsgNumber, ReadError, SeqNumber,
        SocketId, SocketType, State, Transmit, TransmitKind, WriteError,
    };
}
