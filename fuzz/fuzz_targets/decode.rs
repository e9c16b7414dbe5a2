//! Any bytes into the packet decoder: no panic, and whatever decodes
//! re-encodes to bytes that decode to the same packet.
#![no_main]

use libfuzzer_sys::fuzz_target;
use udt_core::packet;

fuzz_target!(|data: &[u8]| {
    let Ok(p) = packet::decode(data) else {
        return;
    };
    let mut out = Vec::new();
    p.encode(&mut out);
    let q = packet::decode(&out).expect("a re-encoded packet decodes");
    let mut again = Vec::new();
    q.encode(&mut again);
    assert_eq!(out, again, "encoding is stable");
});
