//! SYN cookies for the stateless listener: SipHash-2-4 keyed with a secret,
//! over the caller's address and a time bucket.
//!
//! UDT4 uses the first 4 bytes of an unkeyed MD5 of "host:port:minute",
//! which anyone who knows the listener's start minute can predict
//! (udt4-protocol.md §4.1, §4.3). The cookie is opaque to the peer, so a
//! keyed hash is wire-compatible and cannot be forged without the secret.

use std::net::{IpAddr, SocketAddr};

/// SipHash-2-4 (Aumasson & Bernstein, "SipHash: a fast short-input PRF",
/// 2012) of `msg` under the 128-bit `key`, whose two halves are read as
/// little-endian 64-bit words as the reference implementation does.
pub(crate) fn siphash24(key: &[u8; 16], msg: &[u8]) -> u64 {
    let (k0, k1) = key.split_at(8);
    let k0 = le_u64(k0);
    let k1 = le_u64(k1);
    // The initialisation constants spell "somepseudorandomlygeneratedbytes".
    let mut v = [
        k0 ^ 0x736f_6d65_7073_6575,
        k1 ^ 0x646f_7261_6e64_6f6d,
        k0 ^ 0x6c79_6765_6e65_7261,
        k1 ^ 0x7465_6462_7974_6573,
    ];
    let mut blocks = msg.chunks_exact(8);
    for block in &mut blocks {
        let m = le_u64(block);
        v[3] ^= m;
        sip_round(&mut v);
        sip_round(&mut v);
        v[0] ^= m;
    }
    // The last block: the remaining bytes, with the message length (mod 256)
    // in the top byte.
    let tail = blocks.remainder();
    let mut last = (msg.len() as u64) << 56;
    for (i, b) in tail.iter().enumerate() {
        last |= u64::from(*b) << (8 * i);
    }
    v[3] ^= last;
    sip_round(&mut v);
    sip_round(&mut v);
    v[0] ^= last;
    v[2] ^= 0xff;
    for _ in 0..4 {
        sip_round(&mut v);
    }
    v[0] ^ v[1] ^ v[2] ^ v[3]
}

/// One SipRound: the ARX network of the paper's Figure 2.
fn sip_round(v: &mut [u64; 4]) {
    v[0] = v[0].wrapping_add(v[1]);
    v[1] = v[1].rotate_left(13);
    v[1] ^= v[0];
    v[0] = v[0].rotate_left(32);
    v[2] = v[2].wrapping_add(v[3]);
    v[3] = v[3].rotate_left(16);
    v[3] ^= v[2];
    v[0] = v[0].wrapping_add(v[3]);
    v[3] = v[3].rotate_left(21);
    v[3] ^= v[0];
    v[2] = v[2].wrapping_add(v[1]);
    v[1] = v[1].rotate_left(17);
    v[1] ^= v[2];
    v[2] = v[2].rotate_left(32);
}

/// A little-endian u64 from up to 8 bytes (callers pass exactly 8).
fn le_u64(bytes: &[u8]) -> u64 {
    bytes
        .iter()
        .take(8)
        .enumerate()
        .fold(0, |acc, (i, b)| acc | (u64::from(*b) << (8 * i)))
}

/// The cookie a listener hands to `peer` during time bucket `bucket`.
///
/// The message is the peer's IP as 16 bytes (IPv4 as IPv4-mapped IPv6, so a
/// dual-stack socket gives one peer one cookie), its port and the bucket
/// number: 26 bytes on the stack, nothing allocated.
pub(crate) fn cookie(secret: &[u8; 16], peer: SocketAddr, bucket: u64) -> u32 {
    let ip = match peer.ip().to_canonical() {
        IpAddr::V4(v4) => v4.to_ipv6_mapped().octets(),
        IpAddr::V6(v6) => v6.octets(),
    };
    let mut msg = [0u8; 26];
    msg[..16].copy_from_slice(&ip);
    msg[16..18].copy_from_slice(&peer.port().to_be_bytes());
    msg[18..].copy_from_slice(&bucket.to_le_bytes());
    siphash24(secret, &msg) as u32
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::rng::Rng;
    use std::net::{Ipv4Addr, Ipv6Addr};

    fn reference_key() -> [u8; 16] {
        std::array::from_fn(|i| i as u8)
    }

    #[test]
    fn paper_test_vector() {
        // SipHash paper, Appendix A: key 00..0f, message 00..0e (15 bytes)
        // → a129ca6149be45e5.
        let msg: Vec<u8> = (0..15).collect();
        assert_eq!(siphash24(&reference_key(), &msg), 0xa129_ca61_49be_45e5);
    }

    #[test]
    fn reference_vectors_for_short_messages() {
        // vectors.h of the reference implementation, first two entries
        // (empty message and the one-byte message 00), read little-endian.
        assert_eq!(siphash24(&reference_key(), &[]), 0x726f_db47_dd0e_0e31);
        assert_eq!(siphash24(&reference_key(), &[0]), 0x74f8_39c5_93dc_67fd);
    }

    #[test]
    #[allow(deprecated)] // std's SipHasher is SipHash-2-4: a second opinion.
    fn matches_std_siphasher_on_random_input() {
        use std::hash::Hasher;
        let seed = 0x51_9A54;
        let mut rng = Rng::new(seed);
        for case in 0..2_000 {
            let key: [u8; 16] = std::array::from_fn(|_| rng.next_u32() as u8);
            let len = rng.below(70) as usize;
            let msg: Vec<u8> = (0..len).map(|_| rng.next_u32() as u8).collect();
            let mut h = std::hash::SipHasher::new_with_keys(
                u64::from_le_bytes(key[..8].try_into().unwrap()),
                u64::from_le_bytes(key[8..].try_into().unwrap()),
            );
            h.write(&msg);
            assert_eq!(
                siphash24(&key, &msg),
                h.finish(),
                "seed={seed:#x} case={case}"
            );
        }
    }

    #[test]
    fn cookies_depend_on_every_input() {
        let secret = [7u8; 16];
        let a: SocketAddr = (Ipv4Addr::new(10, 0, 0, 1), 9000).into();
        let base = cookie(&secret, a, 5);
        assert_eq!(cookie(&secret, a, 5), base);
        assert_ne!(cookie(&secret, a, 6), base);
        assert_ne!(
            cookie(&secret, (Ipv4Addr::new(10, 0, 0, 2), 9000).into(), 5),
            base
        );
        assert_ne!(
            cookie(&secret, (Ipv4Addr::new(10, 0, 0, 1), 9001).into(), 5),
            base
        );
        assert_ne!(cookie(&[8u8; 16], a, 5), base);
        // The IPv4-mapped form of the same peer gets the same cookie.
        let mapped: SocketAddr = (Ipv4Addr::new(10, 0, 0, 1).to_ipv6_mapped(), 9000).into();
        assert_eq!(cookie(&secret, mapped, 5), base);
        let v6: SocketAddr = (Ipv6Addr::LOCALHOST, 9000).into();
        assert_ne!(cookie(&secret, v6, 5), base);
    }
}
