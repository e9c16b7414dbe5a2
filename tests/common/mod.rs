//! Shared set-up for the simulator scenario tests.

#![allow(dead_code)]

pub use udt_core::sim::harness::*;

/// Initialises logging once (RUST_LOG=udt_core=debug to see protocol logs).
pub fn init_logs() {
    let _ = env_logger::builder().is_test(true).try_init();
}
