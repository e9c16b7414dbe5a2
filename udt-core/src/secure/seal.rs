//! Per-packet protection of an established secure connection.
//!
//! A sealed datagram is
//!
//! ```text
//! | UDT header, 16 bytes, clear | sealed body | counter, 8 bytes, clear | tag, 16 bytes |
//! ```
//!
//! The header stays readable because routing (the destination socket ID)
//! and the packet type are read before any key is known; it is
//! authenticated as associated data together with the counter. The counter
//! trails the body so that sealing encrypts the body where the encoder
//! wrote it and only appends: nothing is moved. The body
//! (data payload or control fields) is encrypted with ChaCha20-Poly1305
//! (RFC 8439) under the key of its direction. The 96-bit nonce is four zero
//! bytes and the big-endian counter: the counter counts transmissions, not
//! sequence numbers, so a retransmission gets a fresh nonce. Handshakes are
//! never sealed (they carry their own Noise protection).

use ring::aead::{Aad, LessSafeKey, Nonce, Tag, UnboundKey, CHACHA20_POLY1305};

use super::keys::SessionKeys;
use super::replay::ReplayWindow;
use crate::packet::HEADER_SIZE;

/// Bytes of the per-packet counter.
pub const COUNTER_SIZE: usize = 8;
/// Bytes of the Poly1305 tag.
pub const TAG_SIZE: usize = 16;
/// Bytes a sealed packet carries beyond the plain one; the payload of a
/// full data packet is that much smaller, so the datagram still fits the
/// MSS.
pub const SEAL_OVERHEAD: usize = COUNTER_SIZE + TAG_SIZE;

/// The last counter a sender uses. Past it the connection refuses to send
/// (see [`SealError::CounterExhausted`]); at ten million packets a second
/// that is about 29 000 years away, so no connection rekeys in practice.
pub const MAX_COUNTER: u64 = (1 << 63) - 1;

/// Why a datagram could not be sealed or opened.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SealError {
    /// Shorter than a UDT header, or (opening) than header, counter and tag.
    TooShort,
    /// The counter was seen before or is older than the replay window.
    Replayed,
    /// The tag did not verify: forged, corrupted or from another session.
    Unauthenticated,
    /// Every counter of this direction has been used; nothing more may be
    /// sent under this key.
    CounterExhausted,
}

impl std::fmt::Display for SealError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            SealError::TooShort => "datagram too short for a sealed packet",
            SealError::Replayed => "packet counter replayed or too old",
            SealError::Unauthenticated => "packet failed authentication",
            SealError::CounterExhausted => "packet counter exhausted",
        })
    }
}

impl std::error::Error for SealError {}

/// The sending half: the key of our direction and its next counter.
#[derive(Clone)]
pub struct Sealer {
    cipher: LessSafeKey,
    /// The counter of the next packet we send.
    counter: u64,
}

/// ChaCha20-Poly1305 under `key`.
fn cipher(key: &[u8; 32]) -> LessSafeKey {
    // A 32-byte key is the algorithm's key length: ring cannot refuse it.
    match UnboundKey::new(&CHACHA20_POLY1305, key) {
        Ok(k) => LessSafeKey::new(k),
        Err(_) => unreachable!("ChaCha20-Poly1305 takes 32-byte keys"),
    }
}

impl std::fmt::Debug for Sealer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Never the key.
        f.debug_struct("Sealer")
            .field("counter", &self.counter)
            .finish_non_exhaustive()
    }
}

impl Sealer {
    /// Seals the plain packet in `buf` in place (see the module docs).
    ///
    /// # Errors
    /// [`SealError::TooShort`] when `buf` holds no whole header;
    /// [`SealError::CounterExhausted`] after [`MAX_COUNTER`] packets.
    /// `buf` is unchanged on error.
    pub fn seal(&mut self, buf: &mut Vec<u8>) -> Result<(), SealError> {
        if buf.len() < HEADER_SIZE {
            return Err(SealError::TooShort);
        }
        if self.counter > MAX_COUNTER {
            return Err(SealError::CounterExhausted);
        }
        let counter = self.counter;
        let aad = associated_data(buf, counter);
        // The body is encrypted where the encoder wrote it; the counter and
        // the tag are appended (the buffer is reused, so once it has grown
        // to a full packet this neither copies nor allocates).
        let tag = self
            .cipher
            .seal_in_place_separate_tag(nonce(counter), Aad::from(aad), &mut buf[HEADER_SIZE..])
            // Only fails for bodies beyond 256 GiB.
            .map_err(|_| SealError::TooShort)?;
        buf.reserve(SEAL_OVERHEAD);
        buf.extend_from_slice(&counter.to_be_bytes());
        buf.extend_from_slice(tag.as_ref());
        self.counter += 1;
        Ok(())
    }
}

/// The send and receive state of one secure connection.
pub struct SealState {
    send: Sealer,
    recv: LessSafeKey,
    window: ReplayWindow,
}

impl std::fmt::Debug for SealState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Never the keys.
        f.debug_struct("SealState")
            .field("send_counter", &self.send.counter)
            .finish_non_exhaustive()
    }
}

/// The associated data of a packet: its clear header and its counter.
/// `packet` starts with a whole header (the callers checked).
fn associated_data(packet: &[u8], counter: u64) -> [u8; HEADER_SIZE + COUNTER_SIZE] {
    let mut aad = [0u8; HEADER_SIZE + COUNTER_SIZE];
    aad[..HEADER_SIZE].copy_from_slice(&packet[..HEADER_SIZE]);
    aad[HEADER_SIZE..].copy_from_slice(&counter.to_be_bytes());
    aad
}

fn nonce(counter: u64) -> Nonce {
    let mut n = [0u8; 12];
    n[4..].copy_from_slice(&counter.to_be_bytes());
    // Unique per key: the counter of a direction never repeats (a sender
    // stops at MAX_COUNTER) and each direction has its own key.
    Nonce::assume_unique_for_key(n)
}

impl SealState {
    /// The state for the keys a finished handshake produced.
    pub fn new(keys: &SessionKeys) -> Self {
        SealState {
            send: Sealer {
                cipher: cipher(&keys.send_key),
                counter: 0,
            },
            recv: cipher(&keys.recv_key),
            window: ReplayWindow::new(),
        }
    }

    /// How many packets have been sealed.
    pub fn sealed(&self) -> u64 {
        self.send.counter
    }

    /// A copy of the sending half, for the endpoint to seal the repeated
    /// shutdowns of a finished connection (its tombstone). The connection
    /// must send nothing more, or counters would repeat.
    pub fn sealer(&self) -> Sealer {
        self.send.clone()
    }

    /// Seals the plain packet in `buf` in place (see [`Sealer::seal`]).
    ///
    /// # Errors
    /// As [`Sealer::seal`].
    pub fn seal(&mut self, buf: &mut Vec<u8>) -> Result<(), SealError> {
        self.send.seal(buf)
    }

    /// Opens the sealed `datagram` into `out` (cleared first): the plain
    /// packet, header and body, ready for [`crate::packet::decode`]. The
    /// counter is recorded in the replay window only when the tag verifies.
    ///
    /// # Errors
    /// [`SealError::TooShort`], [`SealError::Replayed`] or
    /// [`SealError::Unauthenticated`]; `out`'s contents are then unspecified.
    pub fn open(&mut self, datagram: &[u8], out: &mut Vec<u8>) -> Result<(), SealError> {
        let min = HEADER_SIZE + COUNTER_SIZE + TAG_SIZE;
        if datagram.len() < min {
            return Err(SealError::TooShort);
        }
        let (packet, trailer) = datagram.split_at(datagram.len() - COUNTER_SIZE - TAG_SIZE);
        let (counter_bytes, tag) = trailer.split_at(COUNTER_SIZE);
        let mut counter = [0u8; COUNTER_SIZE];
        counter.copy_from_slice(counter_bytes);
        let counter = u64::from_be_bytes(counter);
        if !self.window.check(counter) {
            return Err(SealError::Replayed);
        }
        let aad = associated_data(packet, counter);
        // The one copy of the receive path: the datagram is borrowed, and
        // the plain packet must be contiguous for the decoder.
        out.clear();
        out.extend_from_slice(packet);
        let mut tag_bytes = [0u8; TAG_SIZE];
        tag_bytes.copy_from_slice(tag);
        self.recv
            .open_in_place_separate_tag(
                nonce(counter),
                Aad::from(aad),
                Tag::from(tag_bytes),
                &mut out[HEADER_SIZE..],
                0..,
            )
            .map_err(|_| SealError::Unauthenticated)?;
        self.window.accept(counter);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::secure::keys::PeerIdentity;

    fn pair() -> (SealState, SealState) {
        let a = SessionKeys {
            send_key: [1; 32],
            recv_key: [2; 32],
            peer: PeerIdentity::PreSharedKey,
        };
        let b = SessionKeys {
            send_key: [2; 32],
            recv_key: [1; 32],
            peer: PeerIdentity::PreSharedKey,
        };
        (SealState::new(&a), SealState::new(&b))
    }

    fn packet(marker: &[u8]) -> Vec<u8> {
        let mut p = vec![
            0x00, 0x00, 0x00, 0x07, 0xC0, 0, 0, 1, 0, 0, 0, 9, 0, 0, 0, 42,
        ];
        p.extend_from_slice(marker);
        p
    }

    #[test]
    fn round_trip_hides_the_body_and_keeps_the_header() {
        let (mut a, mut b) = pair();
        let plain = packet(b"SECRET-MARKER-0123456789");
        let mut sealed = plain.clone();
        a.seal(&mut sealed).expect("seal");
        assert_eq!(sealed.len(), plain.len() + SEAL_OVERHEAD);
        assert_eq!(sealed[..HEADER_SIZE], plain[..HEADER_SIZE]);
        assert!(!sealed.windows(6).any(|w| w == b"SECRET"));
        let mut out = Vec::new();
        b.open(&sealed, &mut out).expect("open");
        assert_eq!(out, plain);
        // The same bytes again are a replay.
        assert_eq!(b.open(&sealed, &mut out), Err(SealError::Replayed));
    }

    #[test]
    fn every_flipped_bit_is_refused_and_does_not_poison_the_window() {
        let (mut a, mut b) = pair();
        let mut sealed = packet(b"payload");
        a.seal(&mut sealed).expect("seal");
        let mut out = Vec::new();
        for i in 0..sealed.len() * 8 {
            let mut bad = sealed.clone();
            bad[i / 8] ^= 1 << (i % 8);
            assert!(b.open(&bad, &mut out).is_err(), "bit {i} accepted");
        }
        // The genuine packet still opens: failures recorded nothing.
        b.open(&sealed, &mut out).expect("open");
    }

    #[test]
    fn retransmissions_get_fresh_counters_and_directions_differ() {
        let (mut a, mut b) = pair();
        let plain = packet(b"same payload");
        let mut first = plain.clone();
        let mut again = plain.clone();
        a.seal(&mut first).expect("seal");
        a.seal(&mut again).expect("seal");
        assert_ne!(first, again, "nonce reuse");
        let mut out = Vec::new();
        b.open(&again, &mut out).expect("reordered");
        b.open(&first, &mut out).expect("older, inside the window");
        // A packet sealed by b cannot be opened by b (other direction key).
        // (Its third packet: counter 2, which b's window has not seen.)
        let mut from_b = plain.clone();
        for _ in 0..3 {
            from_b = plain.clone();
            b.seal(&mut from_b).expect("seal");
        }
        assert_eq!(b.open(&from_b, &mut out), Err(SealError::Unauthenticated));
        a.open(&from_b, &mut out).expect("a opens b's packet");
    }

    #[test]
    fn exhausted_counter_refuses_to_send() {
        let (mut a, _) = pair();
        a.send.counter = MAX_COUNTER + 1;
        let mut buf = packet(b"x");
        let before = buf.clone();
        assert_eq!(a.seal(&mut buf), Err(SealError::CounterExhausted));
        assert_eq!(buf, before);
    }
}
