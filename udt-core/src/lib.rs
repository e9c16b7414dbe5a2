//! udt-core: the sans-I/O engine of a UDT4-compatible transport.
//!
//! Nothing here opens a socket, starts a thread or reads a clock. Every
//! entry point takes the current time as `now: Instant`; datagrams go in
//! through `handle_datagram` and come out through `poll_transmit`. The
//! driver (udt-mux on real sockets, the `sim` module in tests) owns the I/O and the
//! clock. That one rule makes the protocol deterministic and testable.
//!
//! Modules, one concern each:
//! - [`seq`]: wrapping sequence, message and ACK numbers.
//! - [`packet`]: encode/decode of every UDT4 packet type.
//! - [`handshake`]: caller, listener (stateless SYN cookie) and rendezvous.
//! - [`send_buffer`], [`recv_buffer`]: application data in flight.
//! - [`loss_list`]: sender and receiver loss lists as ranges.
//! - [`estimate`]: RTT, arrival speed and link capacity estimators.
//! - [`ack_window`]: ACKs awaiting their ACK2, for RTT samples.
//! - [`cc`]: the congestion-control trait and the native UDT controller.
//! - [`connection`]: one connection tying the above together.
//! - [`endpoint`]: routing above the connections: socket IDs, the listener,
//!   rendezvous, tombstones and datagrams that are not UDT.
//! - [`punch`]: NAT traversal: STUN codec, broker, punch agent.
//! - [`secure`]: opt-in secure mode: handshake extension, Noise key
//!   agreement, per-packet AEAD and replay window.
//! - [`sched`]: the indexed min-heap the drivers use to order send times.
//! - `sim`: a deterministic network simulator (feature `sim`).

#![forbid(unsafe_code)]
#![warn(missing_docs, missing_debug_implementations, rust_2018_idioms)]

pub mod ack_window;
pub mod cc;
pub mod config;
pub mod connection;
pub mod endpoint;
pub mod error;
pub mod estimate;
pub mod handshake;
pub mod loss_list;
pub mod packet;
mod payload_pool;
pub mod punch;
pub mod recv_buffer;
pub mod rng;
pub mod sched;
pub mod secure;
pub mod send_buffer;
pub mod seq;
#[cfg(any(test, feature = "sim"))]
pub mod sim;
pub mod stats;
pub mod time;

pub use config::{Config, SocketType};
pub use connection::{Connection, Event, PayloadRef, State, Transmit, TransmitKind};
pub use error::{ConnectionError, ReadError, WriteError};
pub use secure::{PeerIdentity, Security};
pub use seq::{AckSeqNumber, MsgNumber, SeqNumber, SocketId};
