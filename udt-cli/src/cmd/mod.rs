//! The commands of the `udt` program, one module each; `main.rs` maps
//! arguments to their `*Args` structs.

pub mod bench;
pub mod broker;
pub mod demo;
pub mod files;
pub mod ifaddrs;
pub mod pipe;
pub mod punch;
