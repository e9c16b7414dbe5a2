//! The secure handshake (issue 11) with the fuzzer on the path: each
//! handshake datagram, either way, is replaced by, XORed with or cut by
//! input bytes. Input: [method (1 byte)] then records of
//! [op (1 byte), length (1 byte), bytes]. Whatever arrives, nothing
//! panics and a caller that connects shares its keys with a connection
//! the listener accepted.
#![no_main]

use std::time::Instant;

use libfuzzer_sys::fuzz_target;
use udt_core::sim::secure_handshake::{tamper_from_input, tampered_handshake};
use udt_core::Security;

fuzz_target!(|data: &[u8]| {
    let Some((&method, mut rest)) = data.split_first() else {
        return;
    };
    let (c, l) = match method % 3 {
        0 => (Security::PreSharedKey([1; 32]), Security::PreSharedKey([1; 32])),
        1 => (Security::Code("4-x-y-z".into()), Security::Code("4-x-y-z".into())),
        _ => (Security::Plain, Security::Code("4-x-y-z".into())),
    };
    #[allow(clippy::disallowed_methods)] // one epoch per input
    let t0 = Instant::now();
    let run = tampered_handshake(t0, c, l, |_, d| tamper_from_input(&mut rest, d));
    run.check();
});
