//! The per-epoch packet keys of one direction: a one-way chain of secrets,
//! as TLS 1.3 key updates (RFC 8446 §7.2) and QUIC's key phases (RFC 9001
//! §6) build it, but advanced by the packet counter instead of a signal.
//!
//! AES-256-GCM may protect at most 2^23 packets under one key (RFC 9001
//! §6.6, the confidentiality limit). The counters of a direction are cut
//! into epochs of 2^[`EPOCH_BITS`] packets; epoch 0's secret is the Noise
//! `Split()` key of that direction and
//!
//! ```text
//! secret[e + 1] = HKDF-Expand-Label(secret[e], "udt ku", "", 32)
//! key[e]        = HKDF-Expand-Label(secret[e], "udt key", "", 32)
//! ```
//!
//! with TLS 1.3's HKDF-Expand-Label over SHA-256. Both ends know a packet's
//! epoch from its counter alone, so no message announces a new key; and a
//! secret is overwritten as soon as the next one is derived, so a key
//! compromised later does not open the packets of earlier epochs.

use ring::aead::{LessSafeKey, UnboundKey, AES_256_GCM};
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

    /// The AEAD key of the current epoch.
    pub fn key(&self) -> LessSafeKey {
        let mut key: [u8; 32] = expand_label(&self.secret, b"udt key");
        // A 32-byte key is AES-256's key length: ring cannot refuse it.
        let unbound = match UnboundKey::new(&AES_256_GCM, &key) {
            Ok(k) => k,
            Err(_) => unreachable!("AES-256-GCM takes 32-byte keys"),
        };
        key.zeroize();
        LessSafeKey::new(unbound)
    }

    /// Moves to the next epoch, erasing the current secret.
    pub fn advance(&mut self) {
        let mut next: [u8; 32] = expand_label(&self.secret, b"udt ku");
        self.secret.copy_from_slice(&next);
        next.zeroize();
        self.epoch += 1;
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
    use ring::aead::{Aad, Nonce};

    fn seal_with(key: &LessSafeKey) -> Vec<u8> {
        let mut body = b"epoch test".to_vec();
        key.seal_in_place_append_tag(
            Nonce::assume_unique_for_key([0; 12]),
            Aad::empty(),
            &mut body,
        )
        .expect("seal");
        body
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
        // traffic secret and the write key expanded from it with "key".
        let secret = hex::<32>("b67b7d690cc16c4e75e54213cb2d37b4e9c912bcded9105d42befd59d391ad38");
        assert_eq!(
            expand_label::<16>(&secret, b"key"),
            hex::<16>("3fce516009c21727d0f2e4e86ee403bc")
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
