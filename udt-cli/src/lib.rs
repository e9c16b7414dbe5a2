//! The `udt` command-line program as a library: the file-transfer protocol
//! ([`proto`]), the transports it runs over ([`net`]), and the commands.
//! The binary (`src/main.rs`) only parses arguments and maps errors to exit
//! codes; integration tests use the library to speak the protocol directly
//! (the malicious-sender test).

#![warn(missing_docs, missing_debug_implementations, rust_2018_idioms)]

pub mod cmd;
pub mod net;
pub mod proto;
pub mod secure;
pub mod signals;
pub mod stdio;
pub mod ui;
pub mod watch;
