//! udt-relay: a user-space UDP impairment relay, for testing UDT (or any
//! UDP protocol) over bad networks on a machine without `tc netem`.
//!
//! A [`Relay`] listens on one UDP address and forwards every client's
//! datagrams to an upstream address, and the answers back, applying per
//! direction: random loss, bursty (Gilbert–Elliott) loss, fixed delay,
//! jitter (and so reordering), duplication, and a rate cap behind a bounded
//! drop-tail queue. Every random decision comes from a seed. Counters of
//! what was forwarded and dropped, by reason, are in [`RelayStats`].
//!
//! ```no_run
//! use std::time::Duration;
//! use udt_relay::{Impairment, Loss, Relay, RelayConfig};
//!
//! # fn main() -> std::io::Result<()> {
//! let server: std::net::SocketAddr = "127.0.0.1:9000".parse().unwrap();
//! // 20 ms RTT, 1 % loss each way.
//! let path = Impairment {
//!     loss: Loss::Random(0.01),
//!     delay: Duration::from_millis(10),
//!     ..Impairment::default()
//! };
//! let relay = Relay::start(RelayConfig { seed: 7, ..RelayConfig::new(server) }.with_both(path))?;
//! println!("clients connect to {}", relay.local_addr());
//! // ... run the test; the relay stops when dropped.
//! println!("{}", relay.stop().to_json());
//! # Ok(())
//! # }
//! ```
//!
//! The same from the command line: `udt-relay --upstream 127.0.0.1:9000
//! --impair loss=1%,delay=10ms` (see `udt-relay --help` and [`spec`] for the
//! impairment syntax).

#![warn(missing_docs, missing_debug_implementations, rust_2018_idioms)]

mod impair;
mod relay;
pub mod spec;
mod stats;

pub use impair::{
    DirectionModel, DropReason, Fate, Impairment, ImpairmentError, Loss, Verdict, MAX_DELAY,
    WIRE_OVERHEAD,
};
pub use relay::{Relay, RelayConfig};
pub use spec::SpecError;
pub use stats::{DirectionStats, RelayStats};
