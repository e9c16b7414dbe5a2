//! MESSAGE-INTEGRITY (RFC 8489 §14.5): HMAC-SHA1 over the message, with
//! SHA-1 (FIPS 180-4) written out here so udt-core keeps no dependencies.
//!
//! The checks between peers are signed with short-term credentials the
//! broker hands out per session: the key is the 16-byte token of the
//! agent that *receives* the request (as ICE uses the remote password),
//! and the response is signed with the same key. So the token no longer
//! crosses the peer-to-peer path in clear, and nobody who only sees that
//! path can forge a check or an answer. (The broker path still carries
//! the tokens in clear.)
//!
//! SHA-1 is broken for collisions, not for HMAC; RFC 8489 keeps
//! HMAC-SHA1 as the mandatory MESSAGE-INTEGRITY.

use super::stun::attr;
use crate::endpoint::STUN_HEADER_SIZE;

/// Length of an HMAC-SHA1 value, the MESSAGE-INTEGRITY attribute's.
pub const MAC_LEN: usize = 20;

/// SHA-1 of `data`.
pub fn sha1(data: &[u8]) -> [u8; 20] {
    let mut h: [u32; 5] = [
        0x6745_2301,
        0xEFCD_AB89,
        0x98BA_DCFE,
        0x1032_5476,
        0xC3D2_E1F0,
    ];
    let bit_len = (data.len() as u64).wrapping_mul(8);
    // The message, 0x80, zeros to 56 mod 64, the 64-bit length.
    let mut tail = [0u8; 128];
    let full = data.len() / 64 * 64;
    let rest = &data[full..];
    tail[..rest.len()].copy_from_slice(rest);
    tail[rest.len()] = 0x80;
    let tail_len = if rest.len() < 56 { 64 } else { 128 };
    tail[tail_len - 8..tail_len].copy_from_slice(&bit_len.to_be_bytes());
    for block in data[..full]
        .chunks_exact(64)
        .chain(tail[..tail_len].chunks_exact(64))
    {
        compress(&mut h, block);
    }
    let mut out = [0u8; 20];
    for (o, w) in out.chunks_exact_mut(4).zip(h) {
        o.copy_from_slice(&w.to_be_bytes());
    }
    out
}

/// One 64-byte block of SHA-1.
fn compress(h: &mut [u32; 5], block: &[u8]) {
    let mut w = [0u32; 80];
    for (i, c) in block.chunks_exact(4).enumerate() {
        w[i] = u32::from_be_bytes([c[0], c[1], c[2], c[3]]);
    }
    for i in 16..80 {
        w[i] = (w[i - 3] ^ w[i - 8] ^ w[i - 14] ^ w[i - 16]).rotate_left(1);
    }
    let [mut a, mut b, mut c, mut d, mut e] = *h;
    for (i, wi) in w.iter().enumerate() {
        let (f, k) = match i {
            0..=19 => ((b & c) | (!b & d), 0x5A82_7999),
            20..=39 => (b ^ c ^ d, 0x6ED9_EBA1),
            40..=59 => ((b & c) | (b & d) | (c & d), 0x8F1B_BCDC),
            _ => (b ^ c ^ d, 0xCA62_C1D6),
        };
        let t = a
            .rotate_left(5)
            .wrapping_add(f)
            .wrapping_add(e)
            .wrapping_add(k)
            .wrapping_add(*wi);
        e = d;
        d = c;
        c = b.rotate_left(30);
        b = a;
        a = t;
    }
    for (x, y) in h.iter_mut().zip([a, b, c, d, e]) {
        *x = x.wrapping_add(y);
    }
}

/// HMAC-SHA1 (RFC 2104) of the concatenation of `parts` under `key`.
pub fn hmac_sha1(key: &[u8], parts: &[&[u8]]) -> [u8; 20] {
    let mut k = [0u8; 64];
    if key.len() > 64 {
        k[..20].copy_from_slice(&sha1(key));
    } else {
        k[..key.len()].copy_from_slice(key);
    }
    let mut inner: Vec<u8> = k.iter().map(|b| b ^ 0x36).collect();
    for p in parts {
        inner.extend_from_slice(p);
    }
    let inner_hash = sha1(&inner);
    let mut outer: Vec<u8> = k.iter().map(|b| b ^ 0x5c).collect();
    outer.extend_from_slice(&inner_hash);
    sha1(&outer)
}

/// The MESSAGE-INTEGRITY value of the encoded message `prefix` (header
/// and the attributes before MESSAGE-INTEGRITY): HMAC over it with the
/// length field counting up to the end of MESSAGE-INTEGRITY (§14.5).
pub fn mac(key: &[u8], prefix: &[u8]) -> Option<[u8; 20]> {
    let header = prefix.get(..STUN_HEADER_SIZE)?;
    let len = u16::try_from(prefix.len() - STUN_HEADER_SIZE + 4 + MAC_LEN).ok()?;
    let mut head = [0u8; STUN_HEADER_SIZE];
    head.copy_from_slice(header);
    head[2..4].copy_from_slice(&len.to_be_bytes());
    Some(hmac_sha1(key, &[&head, &prefix[STUN_HEADER_SIZE..]]))
}

/// True when `datagram` (a well-formed STUN message) carries a
/// MESSAGE-INTEGRITY that verifies under `key`.
pub fn verify(datagram: &[u8], key: &[u8]) -> bool {
    let mut at = STUN_HEADER_SIZE;
    while let Some(head) = datagram.get(at..at + 4) {
        let t = u16::from_be_bytes([head[0], head[1]]);
        let len = usize::from(u16::from_be_bytes([head[2], head[3]]));
        if t == attr::MESSAGE_INTEGRITY {
            let (Some(value), Some(want)) = (
                datagram.get(at + 4..at + 4 + MAC_LEN),
                mac(key, &datagram[..at]),
            ) else {
                return false;
            };
            // Compare without an early exit on the first difference.
            let diff = value.iter().zip(want).fold(0u8, |d, (a, b)| d | (a ^ b));
            return len == MAC_LEN && diff == 0;
        }
        at += 4 + len.next_multiple_of(4);
    }
    false
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hex(b: &[u8]) -> String {
        b.iter().map(|x| format!("{x:02x}")).collect()
    }

    #[test]
    fn sha1_known_answers() {
        assert_eq!(hex(&sha1(b"")), "da39a3ee5e6b4b0d3255bfef95601890afd80709");
        assert_eq!(
            hex(&sha1(b"abc")),
            "a9993e364706816aba3e25717850c26c9cd0d89d"
        );
        // 56 bytes: the padding spills into a second block.
        assert_eq!(
            hex(&sha1(
                b"abcdbcdecdefdefgefghfghighijhijkijkljklmklmnlmnomnopnopq"
            )),
            "84983e441c3bd26ebaae4aa1f95129e5e54670f1"
        );
        assert_eq!(
            hex(&sha1(&[b'a'; 1000])),
            "291e9a6c66994949b57ba5e650361e98fc36b1ba"
        );
    }

    #[test]
    fn hmac_rfc2202_vectors() {
        assert_eq!(
            hex(&hmac_sha1(&[0x0b; 20], &[b"Hi There"])),
            "b617318655057264e28bc0b6fb378c8ef146be00"
        );
        assert_eq!(
            hex(&hmac_sha1(b"Jefe", &[b"what do ya want ", b"for nothing?"])),
            "effcdf6ae5eb2fa2d27416d5f184df9c259a7c79"
        );
        // A key longer than a block is hashed first.
        assert_eq!(
            hex(&hmac_sha1(
                &[0xaa; 80],
                &[b"Test Using Larger Than Block-Size Key - Hash Key First"]
            )),
            "aa4ae5e15272d00e95705637ce8a3b55ed402112"
        );
    }

    #[test]
    fn rfc5769_sample_request_integrity_verifies() {
        // RFC 5769 §2.1, short-term password "VOkJxbRl1RmTxUk/WvJxBt".
        let v = super::super::stun::RFC5769_SAMPLE_REQUEST;
        assert!(verify(&v, b"VOkJxbRl1RmTxUk/WvJxBt"));
        assert!(!verify(&v, b"VOkJxbRl1RmTxUk/WvJxBT"));
        let mut bad = v;
        bad[30] ^= 1; // inside SOFTWARE
        assert!(!verify(&bad, b"VOkJxbRl1RmTxUk/WvJxBt"));
        // No MESSAGE-INTEGRITY at all: does not verify.
        assert!(!verify(&v[..20], b"VOkJxbRl1RmTxUk/WvJxBt"));
    }
}
