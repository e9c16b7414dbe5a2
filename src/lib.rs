//! udt: a UDT4-compatible reliable transport over UDP.
//!
//! The public API is the multiplexer's ([`udt_mux`]): bind an [`Endpoint`]
//! on a UDP port, then [`listen`](Endpoint::listen) /
//! [`connect`](Endpoint::connect) / [`rendezvous`](Endpoint::rendezvous)
//! on it; [`UdtStream`] is `std::io::Read + Write`, [`UdtMessageSocket`]
//! keeps message boundaries, and a [`Poller`] watches many connections
//! from one thread. The protocol engine is re-exported as [`core`].
//!
//! ```
//! use std::io::{Read, Write};
//! use udt::{Config, Endpoint};
//!
//! # fn main() -> std::io::Result<()> {
//! let server = Endpoint::bind("127.0.0.1:0".parse().unwrap(), Config::default())?;
//! let listener = server.listen(16)?;
//! let client = Endpoint::bind("127.0.0.1:0".parse().unwrap(), Config::default())?;
//! let mut stream = client.connect(server.local_addr())?;
//! let (mut accepted, _) = listener.accept()?;
//! stream.write_all(b"hi")?;
//! let mut buf = [0u8; 2];
//! accepted.read_exact(&mut buf)?;
//! assert_eq!(&buf, b"hi");
//! # Ok(())
//! # }
//! ```

pub use udt_core as core;
pub use udt_mux::*;
