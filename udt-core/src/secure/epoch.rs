//! The per-epoch packet keys of one direction: a one-way chain of secrets,
//! as TLS 1.3 key updates (RFC 8446 §7.2) and QUIC's key phases (RFC 9001
//! §6) build it, but advanced by the packet counter instead of a signal.
//!
//! AES-GCM may protect at most 2^23 packets under one key (RFC 9001
//! §6.6, the confidentiality limit, the same for AES-128 and AES-256). The
//! counters of a direction are cut into epochs of 2^[`EPOCH_BITS`] packets;
//! epoch 0's secret is the Noise `Split()` key of that direction and
//!
//! ```text
//! secret[e + 1] = HKDF-Expand-Label(secret[e], "udt ku", "", 32)
//! key[e]        = HKDF-Expand-Label(secret[e], "udt key", "", 16)
//! iv[e]         = HKDF-Expand-Label(secret[e], "udt iv", "", 12)
//! nonce         = iv[e] XOR (4 zero bytes | 64-bit big-endian counter)
//! ```
//!
//! with TLS 1.3's HKDF-Expand-Label over SHA-256: TLS 1.3's record keys
//! (RFC 8446 §7.3, §5.3) with our labels. The secret IV makes the nonces of
//! every key unpredictable, which keeps AES-128's multi-key margin (an
//! attacker holding many connections' first packets cannot search all
//! their keys at once, the reason TLS 1.3 masks its sequence numbers).
//! Both ends know a packet's
//! epoch from its counter alone, so no message announces a new key; and a
//! secret is overwritten as soon as the next one is derived, so a key
//! compromised later does not open the packets of earlier epochs.

use ring::aead::{LessSafeKey, Nonce, UnboundKey, AES_128_GCM, NONCE_LEN};
use ring::hkdf;
use zeroize::Zeroize;

/// log2 of the packets per epoch: 2^22, half the AES-GCM limit.
pub const EPOCH_BITS: u32 = 22;

/// One direction's chain, positioned at one epoch.
#[derive(Clone)]
pub struct KeyChain {
    /// The secret of epoch `epoch`; those before it are gone.
    secret: [u8; 32],
    epoch: u64,
}

impl std::fmt::Debug for KeyChain {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Never the secret.
        f.debug_struct("KeyChain")
            .field("epoch", &self.epoch)
            .finish_non_exhaustive()
    }
}

impl Drop for KeyChain {
    fn drop(&mut self) {
        self.secret.zeroize();
    }
}

impl KeyChain {
    /// The chain whose epoch-0 secret is `secret` (a `Split()` key).
    pub fn new(secret: [u8; 32]) -> Self {
        KeyChain { secret, epoch: 0 }
    }

    /// The epoch the chain stands at.
    pub fn epoch(&self) -> u64 {
        self.epoch
    }

    /// The packet key and IV of the current epoch.
    pub fn key(&self) -> PacketKey {
        let mut key: [u8; 16] = expand_label(&self.secret, b"udt key");
        // A 16-byte key is AES-128's key length: ring cannot refuse it.
        let unbound = match UnboundKey::new(&AES_128_GCM, &key) {
            Ok(k) => k,
            Err(_) => unreachable!("AES-128-GCM takes 16-byte keys"),
        };
        key.zeroize();
        PacketKey {
            aead: LessSafeKey::new(unbound),
            iv: expand_label(&self.secret, b"udt iv"),
        }
    }

    /// Moves to the next epoch, erasing the current secret.
    pub fn advance(&mut self) {
        let mut next: [u8; 32] = expand_label(&self.secret, b"udt ku");
        self.secret.copy_from_slice(&next);
        next.zeroize();
        self.epoch += 1;
    }
}

/// One epoch's AES-128-GCM key and IV.
#[derive(Clone)]
pub struct PacketKey {
    aead: LessSafeKey,
    iv: [u8; NONCE_LEN],
}

impl std::fmt::Debug for PacketKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Never the key or the IV.
        f.write_str("PacketKey(..)")
    }
}

impl Drop for PacketKey {
    fn drop(&mut self) {
        // ring's expanded key schedule cannot be wiped; the IV can.
        self.iv.zeroize();
    }
}

impl PacketKey {
    /// The AEAD key.
    pub fn aead(&self) -> &LessSafeKey {
        &self.aead
    }

    /// The nonce of the packet with this transmission counter: the IV
    /// XOR the counter, right-aligned (TLS 1.3's per-record nonce).
    /// Unique per key as long as the counter is.
    pub fn nonce(&self, counter: u64) -> Nonce {
        let mut n = self.iv;
        for (b, c) in n[NONCE_LEN - 8..].iter_mut().zip(counter.to_be_bytes()) {
            *b ^= c;
        }
        Nonce::assume_unique_for_key(n)
    }
}

/// TLS 1.3's HKDF-Expand-Label (RFC 8446 §7.1) with an empty context and
/// an `N`-byte output: the info is `length | "tls13 " + label | context`.
fn expand_label<const N: usize>(secret: &[u8; 32], label: &[u8]) -> [u8; N] {
    const PREFIX: &[u8] = b"tls13 ";
    // N and the labels are small constants: neither length overflows.
    let length = (N as u16).to_be_bytes();
    let label_len = [(PREFIX.len() + label.len()) as u8];
    let info: [&[u8]; 5] = [&length, &label_len, PREFIX, label, &[0u8]];
    let prk = hkdf::Prk::new_less_safe(hkdf::HKDF_SHA256, secret);
    let mut out = [0u8; N];
    // The outputs used (16 and 32 bytes) are far below HKDF's limit of
    // 255 hash blocks, so neither call can fail.
    match prk.expand(&info, Len(N)).and_then(|okm| okm.fill(&mut out)) {
        Ok(()) => out,
        Err(_) => unreachable!("HKDF-SHA256 expands to {N} bytes"),
    }
}

/// An HKDF output length.
struct Len(usize);

impl hkdf::KeyType for Len {
    fn len(&self) -> usize {
        self.0
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use ring::aead::Aad;

    /// Counter 0 under `key`: shows both the key and the IV.
    fn seal_with(key: &PacketKey) -> Vec<u8> {
        let mut body = b"epoch test".to_vec();
        key.aead()
            .seal_in_place_append_tag(key.nonce(0), Aad::empty(), &mut body)
            .expect("seal");
        body
    }

    #[test]
    fn the_nonce_is_the_iv_xor_the_counter() {
        let key = KeyChain::new([7; 32]).key();
        let iv = key.iv;
        let n = key.nonce(0x0102_0304_0506_0708);
        let mut want = iv;
        for (i, c) in [1u8, 2, 3, 4, 5, 6, 7, 8].into_iter().enumerate() {
            want[4 + i] ^= c;
        }
        assert_eq!(n.as_ref(), &want);
        assert_eq!(key.nonce(0).as_ref(), &iv);
        assert_ne!(iv, [0; NONCE_LEN], "the IV is derived, not zero");
        // Each epoch has its own IV.
        let mut chain = KeyChain::new([7; 32]);
        chain.advance();
        assert_ne!(chain.key().iv, iv);
    }

    #[test]
    fn each_epoch_has_its_own_key_and_both_ends_agree() {
        let mut a = KeyChain::new([7; 32]);
        let mut b = KeyChain::new([7; 32]);
        let mut seen = Vec::new();
        for epoch in 0..4 {
            assert_eq!(a.epoch(), epoch);
            let sealed = seal_with(&a.key());
            assert_eq!(sealed, seal_with(&b.key()), "ends disagree");
            assert!(!seen.contains(&sealed), "key repeated at epoch {epoch}");
            seen.push(sealed);
            a.advance();
            b.advance();
        }
        // Another root gives other keys.
        assert_ne!(seal_with(&KeyChain::new([8; 32]).key()), seen[0]);
    }

    #[test]
    fn expand_label_matches_rfc_8448() {
        // RFC 8448 §3 (simple 1-RTT handshake): the server's handshake
        // traffic secret and the write key and IV expanded from it.
        let secret = hex::<32>("b67b7d690cc16c4e75e54213cb2d37b4e9c912bcded9105d42befd59d391ad38");
        assert_eq!(
            expand_label::<16>(&secret, b"key"),
            hex::<16>("3fce516009c21727d0f2e4e86ee403bc")
        );
        assert_eq!(
            expand_label::<12>(&secret, b"iv"),
            hex::<12>("5d313eb2671276ee13000b30")
        );
    }

    fn hex<const N: usize>(s: &str) -> [u8; N] {
        let mut out = [0u8; N];
        for (i, b) in out.iter_mut().enumerate() {
            *b = u8::from_str_radix(&s[2 * i..2 * i + 2], 16).expect("hex");
        }
        out
    }
}
