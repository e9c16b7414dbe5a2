//! udt: a UDT4-compatible reliable transport over UDP.
//!
//! This facade re-exports the protocol engine ([`core`]).

pub use udt_core as core;
