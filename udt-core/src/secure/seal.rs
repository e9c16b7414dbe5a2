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
//! authenticated as associated data. The counter is authenticated as part
//! of the nonce (below). It trails the body so that sealing encrypts the
//! body where the encoder wrote it and only appends: nothing is moved.
//!
//! The body (data payload or control fields) is encrypted with AES-128-GCM
//! under the key of its direction and of the counter's epoch
//! ([`super::epoch`]: a new key every 2^22 packets, derived from the
//! previous one). The 96-bit nonce is the epoch's secret IV XOR the
//! big-endian counter (TLS 1.3's record nonce): the counter counts
//! transmissions, not sequence numbers, so a retransmission gets a fresh
//! nonce. Nonces are unique per key: the counter of a direction never
//! repeats (a sender stops at [`MAX_COUNTER`]), each direction has its own
//! keys and each epoch's key sees only the counters of that epoch. Handshakes are never sealed (they
//! carry their own Noise protection).

use ring::aead::{Aad, Tag};

use super::epoch::{KeyChain, PacketKey, EPOCH_BITS};
use super::keys::SessionKeys;
use super::replay::{ReplayWindow, WINDOW};
use crate::packet::HEADER_SIZE;

/// Bytes of the per-packet counter.
pub const COUNTER_SIZE: usize = 8;
/// Bytes of the GCM tag.
pub const TAG_SIZE: usize = 16;
/// Bytes a sealed packet carries beyond the plain one; the payload of a
/// full data packet is that much smaller, so the datagram still fits the
/// MSS.
pub const SEAL_OVERHEAD: usize = COUNTER_SIZE + TAG_SIZE;

/// The payload of a full sealed data packet, given the `room` a plain one
/// has (MSS less IP, UDP and UDT headers): the room less
/// [`SEAL_OVERHEAD`], rounded down to whole AES blocks.
///
/// A body of whole 16-byte blocks goes through the cipher's bulk path in
/// one call; a partial last block costs ring an extra block encryption and
/// GHASH call per packet, more than the 8 bytes of payload (0.6 % more
/// packets) that rounding gives up at MSS 1500 (1424 bytes instead of
/// 1432). Rooms too small for one block (an MSS below 100) are not rounded.
/// Both ends compute the same size, and a receiver takes any payload up to
/// its own.
pub const fn sealed_payload_size(room: usize) -> usize {
    let body = room.saturating_sub(SEAL_OVERHEAD);
    let whole = body - body % AES_BLOCK;
    if whole == 0 {
        body
    } else {
        whole
    }
}

/// Bytes of an AES block.
const AES_BLOCK: usize = 16;

/// The last counter a sender uses. Past it the connection refuses to send
/// (see [`SealError::CounterExhausted`]); at ten million packets a second
/// that is about 29 000 years away.
pub const MAX_COUNTER: u64 = (1 << 63) - 1;

// The receiver keeps the keys of the epochs next to the current one only:
// the replay window must not reach back further than one epoch.
const _: () = assert!(1u64 << EPOCH_BITS > WINDOW);

/// Why a datagram could not be sealed or opened.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SealError {
    /// Shorter than a UDT header, or (opening) than header, counter and tag.
    TooShort,
    /// The counter was seen before or is older than the replay window.
    Replayed,
    /// The tag did not verify: forged, corrupted, from another session, or
    /// of an epoch whose key the receiver does not hold (more than one
    /// epoch ahead of the packets it has authenticated).
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

/// The sending half: the key chain of our direction and its next counter.
#[derive(Clone)]
pub struct Sealer {
    /// At the epoch of `cipher`.
    chain: KeyChain,
    cipher: PacketKey,
    /// The counter of the next packet we send.
    counter: u64,
    epoch_bits: u32,
}

impl std::fmt::Debug for Sealer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Never the key.
        f.debug_struct("Sealer")
            .field("counter", &self.counter)
            .field("epoch", &self.chain.epoch())
            .finish_non_exhaustive()
    }
}

impl Sealer {
    fn new(secret: [u8; 32], epoch_bits: u32) -> Self {
        let chain = KeyChain::new(secret);
        Sealer {
            cipher: chain.key(),
            chain,
            counter: 0,
            epoch_bits,
        }
    }

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
        let epoch = counter >> self.epoch_bits;
        if self.chain.epoch() < epoch {
            // Once per epoch; the loop only matters to tests that jump.
            while self.chain.epoch() < epoch {
                self.chain.advance();
            }
            self.cipher = self.chain.key();
        }
        let aad = associated_data(buf);
        // The body is encrypted where the encoder wrote it; the counter and
        // the tag are appended (the buffer is reused, so once it has grown
        // to a full packet this neither copies nor allocates).
        let tag = self
            .cipher
            .aead()
            .seal_in_place_separate_tag(
                self.cipher.nonce(counter),
                Aad::from(aad),
                &mut buf[HEADER_SIZE..],
            )
            // Only fails for bodies beyond 64 GiB.
            .map_err(|_| SealError::TooShort)?;
        buf.reserve(SEAL_OVERHEAD);
        buf.extend_from_slice(&counter.to_be_bytes());
        buf.extend_from_slice(tag.as_ref());
        self.counter += 1;
        Ok(())
    }
}

/// The receiving half: the keys of the current epoch and its neighbours.
struct Opener {
    /// At the epoch after `current`'s, whose key is `next`.
    chain: KeyChain,
    /// The epoch before `current`'s, until the replay window has moved past
    /// all of its counters (then erased).
    previous: Option<PacketKey>,
    /// The epoch of the newest authenticated packet.
    current: PacketKey,
    next: PacketKey,
    epoch_bits: u32,
    window: ReplayWindow,
}

impl Opener {
    fn new(secret: [u8; 32], epoch_bits: u32) -> Self {
        let mut chain = KeyChain::new(secret);
        let current = chain.key();
        chain.advance();
        Opener {
            next: chain.key(),
            chain,
            previous: None,
            current,
            epoch_bits,
            window: ReplayWindow::new(),
        }
    }

    fn current_epoch(&self) -> u64 {
        self.chain.epoch() - 1
    }

    /// The key of `epoch`, if we hold it.
    fn key(&self, epoch: u64) -> Option<&PacketKey> {
        let current = self.current_epoch();
        if epoch == current {
            Some(&self.current)
        } else if epoch == current + 1 {
            Some(&self.next)
        } else if epoch + 1 == current {
            self.previous.as_ref()
        } else {
            None
        }
    }

    /// A packet of the next epoch authenticated: it becomes the current
    /// one, and the key after it is derived.
    fn step(&mut self) {
        self.chain.advance();
        let next = std::mem::replace(&mut self.next, self.chain.key());
        self.previous = Some(std::mem::replace(&mut self.current, next));
    }

    fn open_in_place(&mut self, datagram: &mut [u8]) -> Result<usize, SealError> {
        let min = HEADER_SIZE + COUNTER_SIZE + TAG_SIZE;
        if datagram.len() < min {
            return Err(SealError::TooShort);
        }
        let plain_len = datagram.len() - COUNTER_SIZE - TAG_SIZE;
        let (packet, trailer) = datagram.split_at_mut(plain_len);
        let (counter_bytes, tag) = trailer.split_at(COUNTER_SIZE);
        let mut counter = [0u8; COUNTER_SIZE];
        counter.copy_from_slice(counter_bytes);
        let counter = u64::from_be_bytes(counter);
        if !self.window.check(counter) {
            return Err(SealError::Replayed);
        }
        let epoch = counter >> self.epoch_bits;
        let key = self.key(epoch).ok_or(SealError::Unauthenticated)?;
        let aad = associated_data(packet);
        let mut tag_bytes = [0u8; TAG_SIZE];
        tag_bytes.copy_from_slice(tag);
        // The body is decrypted where it lies: header and body stay
        // contiguous for the decoder, and the trailer is simply cut off.
        key.aead()
            .open_in_place_separate_tag(
                key.nonce(counter),
                Aad::from(aad),
                Tag::from(tag_bytes),
                &mut packet[HEADER_SIZE..],
                0..,
            )
            .map_err(|_| SealError::Unauthenticated)?;
        self.window.accept(counter);
        if epoch > self.current_epoch() {
            self.step();
        }
        if self.previous.is_some()
            && self.window.oldest() >> self.epoch_bits >= self.current_epoch()
        {
            // No counter of the previous epoch can pass the window any more:
            // its key goes (forward secrecy within the connection).
            self.previous = None;
        }
        Ok(plain_len)
    }
}

/// The send and receive state of one secure connection.
pub struct SealState {
    send: Sealer,
    recv: Opener,
}

impl std::fmt::Debug for SealState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Never the keys.
        f.debug_struct("SealState")
            .field("send", &self.send)
            .field("recv_epoch", &self.recv.current_epoch())
            .finish_non_exhaustive()
    }
}

/// The associated data of a packet: its clear header. `packet` starts
/// with a whole header (the callers checked).
///
/// The counter is not in it: it is the nonce, which GCM authenticates
/// already (another counter gives another keystream and tag mask, so the
/// tag fails), as in WireGuard's transport packets. Sixteen bytes are one
/// GHASH block, where header and counter took two.
fn associated_data(packet: &[u8]) -> [u8; HEADER_SIZE] {
    let mut aad = [0u8; HEADER_SIZE];
    aad.copy_from_slice(&packet[..HEADER_SIZE]);
    aad
}

impl SealState {
    /// The state for the keys a finished handshake produced.
    pub fn new(keys: &SessionKeys) -> Self {
        Self::with_epoch_bits(keys, EPOCH_BITS)
    }

    /// As [`new`](Self::new) with epochs of 2^`epoch_bits` packets, for
    /// tests of the epoch change (which must stay longer than the replay
    /// window).
    fn with_epoch_bits(keys: &SessionKeys, epoch_bits: u32) -> Self {
        debug_assert!(1u64 << epoch_bits > WINDOW);
        SealState {
            send: Sealer::new(keys.send_key, epoch_bits),
            recv: Opener::new(keys.recv_key, epoch_bits),
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

    /// Opens the sealed `datagram` where it lies and returns the length of
    /// the plain packet now at its start (header and body, ready for
    /// [`crate::packet::decode`]; counter and tag are what follows). The
    /// counter is recorded in the replay window, and the receive keys move
    /// on to a new epoch, only when the tag verifies.
    ///
    /// # Errors
    /// [`SealError::TooShort`], [`SealError::Replayed`] or
    /// [`SealError::Unauthenticated`]; the header is then unchanged and the
    /// rest of `datagram` unspecified.
    pub fn open_in_place(&mut self, datagram: &mut [u8]) -> Result<usize, SealError> {
        self.recv.open_in_place(datagram)
    }

    /// As [`open_in_place`](Self::open_in_place), for a borrowed
    /// `datagram`: the plain packet is opened in `out` (cleared first).
    ///
    /// # Errors
    /// As [`open_in_place`](Self::open_in_place); `out`'s contents are
    /// then unspecified.
    pub fn open(&mut self, datagram: &[u8], out: &mut Vec<u8>) -> Result<(), SealError> {
        out.clear();
        out.extend_from_slice(datagram);
        let len = self.open_in_place(out)?;
        out.truncate(len);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::secure::keys::PeerIdentity;

    fn pair() -> (SealState, SealState) {
        pair_with_epochs(EPOCH_BITS)
    }

    fn pair_with_epochs(epoch_bits: u32) -> (SealState, SealState) {
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
        (
            SealState::with_epoch_bits(&a, epoch_bits),
            SealState::with_epoch_bits(&b, epoch_bits),
        )
    }

    fn packet(marker: &[u8]) -> Vec<u8> {
        let mut p = vec![
            0x00, 0x00, 0x00, 0x07, 0xC0, 0, 0, 1, 0, 0, 0, 9, 0, 0, 0, 42,
        ];
        p.extend_from_slice(marker);
        p
    }

    #[test]
    fn full_payloads_are_whole_blocks_and_fit_the_room() {
        // MSS 1500: 1456 bytes of room, 1432 after the seal, 1424 in blocks.
        assert_eq!(sealed_payload_size(1456), 1424);
        for room in SEAL_OVERHEAD + 1..2000 {
            let p = sealed_payload_size(room);
            assert!(p + SEAL_OVERHEAD <= room, "room {room}: {p} does not fit");
            assert!(p > 0, "room {room}: no payload");
            if room >= SEAL_OVERHEAD + AES_BLOCK {
                assert_eq!(p % AES_BLOCK, 0, "room {room}: {p} not whole blocks");
                assert!(
                    p + SEAL_OVERHEAD + AES_BLOCK > room,
                    "room {room}: {p} wastes a block"
                );
            } else {
                assert_eq!(p, room - SEAL_OVERHEAD, "room {room}: tiny MSS not rounded");
            }
        }
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
    fn opening_in_place_leaves_the_plain_packet_at_the_start() {
        let (mut a, mut b) = pair();
        let plain = packet(b"SECRET-MARKER-in-place");
        let mut sealed = plain.clone();
        a.seal(&mut sealed).expect("seal");
        let mut forged = sealed.clone();
        let last = forged.len() - 1;
        forged[last] ^= 1;
        assert_eq!(
            b.open_in_place(&mut forged),
            Err(SealError::Unauthenticated)
        );
        assert_eq!(forged[..HEADER_SIZE], plain[..HEADER_SIZE], "header kept");
        let len = b.open_in_place(&mut sealed).expect("open");
        assert_eq!(len, plain.len());
        assert_eq!(sealed[..len], plain[..]);
        assert_eq!(
            b.open_in_place(&mut sealed.clone()),
            Err(SealError::Replayed)
        );
        assert_eq!(b.open_in_place(&mut [0u8; 39]), Err(SealError::TooShort));
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
    fn the_counter_is_authenticated_through_the_nonce() {
        // Not in the associated data: a packet moved to a counter the
        // window has not seen must still fail its tag, not open.
        let (mut a, mut b) = pair();
        let mut sealed = packet(b"moved");
        a.seal(&mut sealed).expect("seal");
        let at = sealed.len() - SEAL_OVERHEAD;
        for other in [1u64, 2, 1 << 20, MAX_COUNTER] {
            let mut moved = sealed.clone();
            moved[at..at + COUNTER_SIZE].copy_from_slice(&other.to_be_bytes());
            let mut out = Vec::new();
            assert_eq!(
                b.open(&moved, &mut out),
                Err(SealError::Unauthenticated),
                "counter {other}"
            );
        }
        b.open(&sealed, &mut Vec::new())
            .expect("the genuine one opens");
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

    /// Test epochs: 8192 packets, twice the replay window.
    const BITS: u32 = 13;
    const EPOCH: u64 = 1 << BITS;

    /// Seals `plain` as counter `counter` under `key` exactly as a sender
    /// would, to check which key a side really uses.
    fn seal_raw(key: &PacketKey, counter: u64, plain: &[u8]) -> Vec<u8> {
        let mut buf = plain.to_vec();
        let tag = key
            .aead()
            .seal_in_place_separate_tag(
                key.nonce(counter),
                Aad::from(associated_data(&buf)),
                &mut buf[HEADER_SIZE..],
            )
            .expect("seal");
        buf.extend_from_slice(&counter.to_be_bytes());
        buf.extend_from_slice(tag.as_ref());
        buf
    }

    fn epoch_key(secret: [u8; 32], epoch: u64) -> PacketKey {
        let mut chain = KeyChain::new(secret);
        for _ in 0..epoch {
            chain.advance();
        }
        chain.key()
    }

    #[test]
    fn both_ends_stay_in_step_over_several_epochs() {
        let (mut a, mut b) = pair_with_epochs(BITS);
        let mut out = Vec::new();
        for i in 0..3 * EPOCH + 10 {
            let plain = packet(&i.to_be_bytes());
            let mut buf = plain.clone();
            a.seal(&mut buf).expect("seal");
            b.open(&buf, &mut out).expect("open");
            assert_eq!(out, plain);
        }
        assert_eq!(b.recv.current_epoch(), 3);
    }

    #[test]
    fn the_sender_changes_key_at_the_epoch_boundary() {
        let (mut a, _) = pair_with_epochs(BITS);
        a.send.counter = EPOCH - 1;
        let plain = packet(b"boundary");
        let mut last_of_0 = plain.clone();
        let mut first_of_1 = plain.clone();
        a.seal(&mut last_of_0).expect("seal");
        a.seal(&mut first_of_1).expect("seal");
        // Exactly what epoch 0's and epoch 1's keys of the chain give.
        assert_eq!(
            last_of_0,
            seal_raw(&epoch_key([1; 32], 0), EPOCH - 1, &plain)
        );
        assert_eq!(first_of_1, seal_raw(&epoch_key([1; 32], 1), EPOCH, &plain));
    }

    #[test]
    fn the_receiver_wants_the_key_of_the_counters_epoch() {
        let (_, mut b) = pair_with_epochs(BITS);
        let plain = packet(b"wrong epoch key");
        let mut out = Vec::new();
        // Epoch 0's key on a counter of epoch 1: refused, window untouched.
        let stale = seal_raw(&epoch_key([1; 32], 0), EPOCH, &plain);
        assert_eq!(b.open(&stale, &mut out), Err(SealError::Unauthenticated));
        assert_eq!(b.recv.current_epoch(), 0, "a forgery moved the epoch");
        let good = seal_raw(&epoch_key([1; 32], 1), EPOCH, &plain);
        b.open(&good, &mut out).expect("epoch 1 key");
        assert_eq!(out, plain);
        assert_eq!(b.recv.current_epoch(), 1);
    }

    #[test]
    fn reordering_and_replays_across_an_epoch_boundary() {
        let (mut a, mut b) = pair_with_epochs(BITS);
        a.send.counter = EPOCH - 3;
        let sealed: Vec<Vec<u8>> = (0..6u8)
            .map(|i| {
                let mut p = packet(&[i; 20]);
                a.seal(&mut p).expect("seal");
                p
            })
            .collect();
        let mut out = Vec::new();
        // The first of epoch 1 arrives first; the late ones of epoch 0
        // still open under the kept previous key.
        for i in [3, 0, 4, 1, 2, 5] {
            b.open(&sealed[i], &mut out).expect("reordered");
            assert_eq!(out, packet(&[i as u8; 20]));
        }
        for p in &sealed {
            assert_eq!(b.open(p, &mut out), Err(SealError::Replayed));
        }
        assert!(
            b.recv.previous.is_some(),
            "epoch 0 is still inside the window"
        );
        // Once the window has passed the boundary, the old epoch's packets
        // are too old and its key is gone.
        a.send.counter = EPOCH + WINDOW;
        let mut late = packet(b"moves the window");
        a.seal(&mut late).expect("seal");
        b.open(&late, &mut out).expect("open");
        assert!(b.recv.previous.is_none(), "old epoch key kept");
        assert_eq!(b.open(&sealed[0], &mut out), Err(SealError::Replayed));
    }

    #[test]
    fn a_counter_two_epochs_ahead_is_refused_without_harm() {
        let (mut a, mut b) = pair_with_epochs(BITS);
        let mut out = Vec::new();
        let mut first = packet(b"epoch 0");
        a.seal(&mut first).expect("seal");
        // Genuine, but two epochs ahead of anything the receiver has seen:
        // it holds no key for it (a sender cannot get there while the
        // connection lives, and deriving on demand would let forgeries make
        // it hash its way forward).
        a.send.counter = 2 * EPOCH;
        let mut far = packet(b"epoch 2");
        a.seal(&mut far).expect("seal");
        assert_eq!(b.open(&far, &mut out), Err(SealError::Unauthenticated));
        assert_eq!(b.recv.current_epoch(), 0);
        b.open(&first, &mut out).expect("the window did not move");
    }
}
