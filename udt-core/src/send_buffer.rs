//! The send buffer: application data from `write` until the peer
//! acknowledges it.
//!
//! One concern: turning application writes into numbered, fixed-size blocks
//! and keeping each block until it is acknowledged, so that it can be
//! retransmitted. Pacing, windows and the loss list live in the connection's
//! sender half (`connection/sender.rs`); this buffer only answers "what is
//! the next new block", "give me block `seq` again" and "release everything
//! before `seq`".
//!
//! # Layout
//!
//! Blocks sit in a ring (`VecDeque`) indexed by `seq.offset_from(first_unacked)`:
//! `[0, sent)` have been transmitted (or skipped), `[sent, len)` wait for
//! their first transmission. A block's sequence number is therefore implied
//! by its position and is fixed from the moment it is written (UDT4 assigns
//! it when packing, `SndCurrSeqNo + 1`, which is the same number because
//! blocks are sent in order). Payload bytes live in a `pool` of
//! `payload_size` slots allocated lazily in chunks of 32 and recycled, so a
//! connection that never writes holds no payload memory and a busy one stops
//! allocating once it has reached its peak fill.
//!
//! # Messages and TTL (udt4-protocol.md §2.1, §11)
//!
//! Every write is one message: all its blocks share a message number and
//! carry First/Middle/Last (or Only) positions. Message numbers start at 1
//! and skip 0 and 0x1FFF_FFFF ([`MsgNumber::next`]). A message's TTL is only
//! checked when one of its blocks is about to be *retransmitted*
//! ([`SendBuffer::is_expired`]), exactly as UDT4 `CSndBuffer::readData` does;
//! a message whose first transmission goes out late is still sent.
//!
//! We deliberately do not discard expired messages before their first
//! transmission: UDT4 never does it, and removing blocks from the middle of
//! the unsent region would cost work proportional to the window.

use std::collections::VecDeque;
use std::error::Error;
use std::fmt;
use std::time::{Duration, Instant};

use crate::seq::{MsgNumber, SeqNumber};

use crate::payload_pool::{PayloadPool, CHUNK_SLOTS};

pub use crate::packet::PacketPosition;

/// The largest buffer capacity in packets. Offsets inside a buffer must stay
/// below 2^30 for [`SeqNumber::offset_from`] to compare them correctly.
pub const MAX_CAPACITY_PACKETS: u32 = 1 << 30;

/// Why [`SendBuffer::write_message`] refused a message.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum SendBufferError {
    /// The message needs more packets than the whole buffer holds, so it can
    /// never be sent (UDT4 `ELARGEMSG`).
    MessageTooLarge,
    /// The message would fit in an empty buffer but not in the space free
    /// right now; retry after acknowledgements free some.
    Full,
}

impl fmt::Display for SendBufferError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            SendBufferError::MessageTooLarge => f.write_str("message larger than the send buffer"),
            SendBufferError::Full => f.write_str("send buffer full"),
        }
    }
}

impl Error for SendBufferError {}

/// One block of the send buffer, as it goes on the wire in a data packet.
#[derive(Clone, Copy, Debug)]
pub struct Block<'a> {
    /// The block's sequence number.
    pub seq: SeqNumber,
    /// The payload: `payload_size` bytes, or fewer for a message's last block.
    pub payload: &'a [u8],
    /// The number of the message the block belongs to.
    pub msg: MsgNumber,
    /// Where the block sits inside its message (header bits `ff`).
    pub position: PacketPosition,
    /// Whether the receiver must deliver the message in order (header bit `o`).
    pub in_order: bool,
    /// When the message was written; its TTL counts from here.
    pub origin: Instant,
    /// How long the message may wait for retransmission; `None` = forever.
    pub ttl: Option<Duration>,
}

/// Metadata of one buffered block; the bytes are in the pool.
#[derive(Clone, Copy, Debug)]
struct SendSlot {
    msg: MsgNumber,
    position: PacketPosition,
    in_order: bool,
    len: u32,
    data: u32,
    origin: Instant,
    ttl: Option<Duration>,
}

/// Application data waiting to be sent or acknowledged (UDT4 `CSndBuffer`).
///
/// Call order, as the connection uses it: the application side calls
/// [`write_stream`](Self::write_stream) or [`write_message`](Self::write_message);
/// the sender takes new blocks with [`take_next`](Self::take_next), rereads
/// lost ones with [`block`](Self::block) (after checking
/// [`is_expired`](Self::is_expired)), and releases acknowledged ones with
/// [`ack`](Self::ack).
#[derive(Debug)]
pub struct SendBuffer {
    /// Blocks from `first_unacked` on; index = offset from `first_unacked`.
    slots: VecDeque<SendSlot>,
    pool: PayloadPool,
    capacity: u32,
    first_unacked: SeqNumber,
    /// How many blocks at the front have been sent (or skipped).
    sent: u32,
    /// The number the next write will use.
    next_msg: MsgNumber,
    /// Payload bytes held (written and not yet acknowledged).
    held_bytes: usize,
}

impl SendBuffer {
    /// An empty buffer for at most `capacity_packets` blocks of
    /// `payload_size` bytes whose first block will carry `first_seq` (the
    /// connection's initial sequence number). Allocates nothing yet.
    ///
    /// `capacity_packets` is clamped to `1..=`[`MAX_CAPACITY_PACKETS`] and
    /// `payload_size` to at least 1.
    pub fn new(capacity_packets: u32, payload_size: usize, first_seq: SeqNumber) -> Self {
        let capacity = capacity_packets.clamp(1, MAX_CAPACITY_PACKETS);
        SendBuffer {
            slots: VecDeque::new(),
            pool: PayloadPool::new(payload_size.max(1), capacity),
            capacity,
            first_unacked: first_seq,
            sent: 0,
            next_msg: MsgNumber::FIRST,
            held_bytes: 0,
        }
    }

    /// The capacity in packets.
    pub fn capacity(&self) -> u32 {
        self.capacity
    }

    /// Raises the capacity to `capacity_packets` (clamped to
    /// [`MAX_CAPACITY_PACKETS`]); a smaller value changes nothing. Nothing
    /// is allocated until the room is used.
    pub fn grow(&mut self, capacity_packets: u32) {
        let capacity = capacity_packets.min(MAX_CAPACITY_PACKETS);
        if capacity > self.capacity {
            self.capacity = capacity;
            self.pool.raise_limit(capacity);
        }
    }

    /// Sets the capacity to `capacity_packets`, clamped to at least the
    /// blocks held now (and 1) and at most [`MAX_CAPACITY_PACKETS`]: the
    /// one way to lower it. Lowering frees nothing at once; it bounds what
    /// later writes may queue.
    pub fn resize(&mut self, capacity_packets: u32) {
        let held = u32::try_from(self.slots.len()).unwrap_or(MAX_CAPACITY_PACKETS);
        let capacity = capacity_packets.max(held).clamp(1, MAX_CAPACITY_PACKETS);
        if capacity > self.capacity {
            self.grow(capacity);
        } else {
            self.capacity = capacity;
        }
    }

    /// The blocks a message of `len` bytes takes.
    pub fn blocks_for(&self, len: usize) -> usize {
        len.div_ceil(self.pool.payload_size())
    }

    /// The payload bytes one block holds.
    pub fn payload_size(&self) -> usize {
        self.pool.payload_size()
    }

    /// Stream-mode write: stores as many bytes of `data` as fit and returns
    /// how many (0 when the buffer is full or `data` is empty).
    ///
    /// Like UDT4's stream `send()`, one call is one message: its blocks share
    /// one message number, carry First/Middle/Last (or Only for a single
    /// block), are not in order (`o = 0`) and have no TTL (udt4-protocol.md
    /// §2.1). Every block is full except the call's last, so a 3000-byte
    /// write with 1456-byte payloads becomes 1456 + 1456 + 88.
    pub fn write_stream(&mut self, data: &[u8], now: Instant) -> usize {
        let n = data.len().min(self.free_bytes());
        match data.get(..n) {
            Some(accepted) if n > 0 => {
                self.push_message(accepted, false, now, None);
                n
            }
            _ => 0,
        }
    }

    /// Message-mode write: stores the whole message or nothing.
    ///
    /// `ttl` bounds how long the message may wait for retransmission
    /// (`None` = forever); `in_order` sets the header's `o` bit. An empty
    /// message is accepted and stores nothing, as UDT4 `sendmsg` returns 0
    /// for an empty buffer.
    ///
    /// # Errors
    /// [`SendBufferError::MessageTooLarge`] if the message needs more blocks
    /// than the capacity; [`SendBufferError::Full`] if it needs more than are
    /// free now.
    pub fn write_message(
        &mut self,
        data: &[u8],
        ttl: Option<Duration>,
        in_order: bool,
        now: Instant,
    ) -> Result<(), SendBufferError> {
        if data.is_empty() {
            return Ok(());
        }
        let packets = self.blocks_for(data.len());
        if packets > self.capacity as usize {
            return Err(SendBufferError::MessageTooLarge);
        }
        if packets > self.free_packets() as usize {
            return Err(SendBufferError::Full);
        }
        self.push_message(data, in_order, now, ttl);
        Ok(())
    }

    /// Blocks that can still be written.
    pub fn free_packets(&self) -> u32 {
        self.capacity.saturating_sub(self.slots.len() as u32)
    }

    /// Payload bytes written and not yet acknowledged, sent or not.
    pub fn held_bytes(&self) -> usize {
        self.held_bytes
    }

    /// Payload bytes written and not yet sent.
    pub fn unsent_bytes(&self) -> usize {
        self.slots
            .range(self.sent as usize..)
            .map(|s| s.len as usize)
            .sum()
    }

    /// Bytes that can still be written in stream mode
    /// (`free_packets × payload_size`).
    pub fn free_bytes(&self) -> usize {
        (self.free_packets() as usize).saturating_mul(self.pool.payload_size())
    }

    /// True when nothing is unsent or unacknowledged (UDT4 uses this for
    /// linger and to choose between retransmission and keep-alive on EXP).
    pub fn is_empty(&self) -> bool {
        self.slots.is_empty()
    }

    /// The sequence number of the block [`take_next`](Self::take_next) would
    /// return, if there is unsent data.
    pub fn next_unsent(&self) -> Option<SeqNumber> {
        ((self.sent as usize) < self.slots.len()).then(|| self.next_seq())
    }

    /// Takes the next unsent block for its first transmission and marks it
    /// sent. `None` when everything written has been sent.
    pub fn take_next(&mut self) -> Option<Block<'_>> {
        let idx = self.sent as usize;
        if idx >= self.slots.len() {
            return None;
        }
        self.sent += 1;
        self.block_at(idx)
    }

    /// The block with sequence number `seq`, for retransmission. `None` if it
    /// was acknowledged already or was never written. Unsent blocks are
    /// returned too.
    pub fn block(&self, seq: SeqNumber) -> Option<Block<'_>> {
        self.block_at(self.index_of(seq)?)
    }

    /// True when `seq` is in the buffer and its message's TTL has passed:
    /// more than `ttl` since the message was written (UDT4
    /// `CSndBuffer::readData`, checked only before a retransmission, §11).
    pub fn is_expired(&self, seq: SeqNumber, now: Instant) -> bool {
        let Some(slot) = self.index_of(seq).and_then(|i| self.slots.get(i)) else {
            return false;
        };
        match slot.ttl {
            Some(ttl) => now.saturating_duration_since(slot.origin) > ttl,
            None => false,
        }
    }

    /// `(msg, first, last)` of the message containing `seq`, over the blocks
    /// still buffered: `first` is clipped to the first unacknowledged block,
    /// `last` is the message's real last block (UDT4's drop request puts
    /// `last + 1` on the wire, §11). `None` if `seq` is not buffered.
    /// Costs O(message length).
    pub fn message_span(&self, seq: SeqNumber) -> Option<(MsgNumber, SeqNumber, SeqNumber)> {
        let (first, last) = self.span_indices(self.index_of(seq)?)?;
        let msg = self.slots.get(first)?.msg;
        Some((
            msg,
            self.first_unacked.add(first as u32),
            self.first_unacked.add(last as u32),
        ))
    }

    /// Drops the message containing `seq` after its TTL expired: its unsent
    /// blocks are marked sent, so they consume sequence numbers but are never
    /// transmitted (UDT4 `packData` pushes `SndCurrSeqNo` past the message).
    /// Returns the message's real last sequence number; the caller sends the
    /// drop request and clears its loss list up to it.
    ///
    /// Only the unsent tail that starts exactly at the send point can be
    /// skipped; a message that is entirely unsent and not next in line is
    /// left alone. If `seq` is not buffered, returns `seq`.
    pub fn skip_message(&mut self, seq: SeqNumber) -> SeqNumber {
        let Some((first, last)) = self.index_of(seq).and_then(|i| self.span_indices(i)) else {
            return seq;
        };
        let sent = self.sent as usize;
        if first <= sent && last >= sent {
            self.sent = last as u32 + 1;
        }
        self.first_unacked.add(last as u32)
    }

    /// Releases every block before `upto` (a full or medium ACK's number) and
    /// returns how many were released. An `upto` at or before the first
    /// unacknowledged block releases nothing; one beyond the send point is
    /// clamped to it, because unsent data cannot have been received (the
    /// connection treats such an ACK as a protocol violation, §6.5).
    pub fn ack(&mut self, upto: SeqNumber) -> u32 {
        let off = upto.offset_from(self.first_unacked);
        if off <= 0 {
            return 0;
        }
        let n = (off as u32).min(self.sent);
        for _ in 0..n {
            if let Some(slot) = self.slots.pop_front() {
                self.held_bytes = self.held_bytes.saturating_sub(slot.len as usize);
                self.pool.release(slot.data);
            }
        }
        self.first_unacked = self.first_unacked.add(n);
        self.sent -= n;
        n
    }

    /// The oldest unacknowledged sequence number (UDT4 `SndLastDataAck`).
    /// When the buffer is empty this is the number the next block will get.
    pub fn first_unacked(&self) -> SeqNumber {
        self.first_unacked
    }

    /// The sequence number the next new transmission will carry: one past
    /// the last block sent or skipped (UDT4 `SndCurrSeqNo + 1`).
    pub fn next_seq(&self) -> SeqNumber {
        self.first_unacked.add(self.sent)
    }

    /// Bytes of payload memory held, in use or kept for reuse.
    pub fn memory_bytes(&self) -> usize {
        self.pool.capacity_bytes() + self.slots.capacity() * std::mem::size_of::<SendSlot>()
    }

    /// Releases the memory a burst left behind when nothing is buffered;
    /// call when the connection has been quiet for a while.
    pub fn trim(&mut self) {
        if self.slots.is_empty() && self.pool.trim() {
            self.slots = VecDeque::new();
        }
    }

    /// One past the last block ever written, sent or not: where the data
    /// of this connection ends if nothing more is written.
    pub fn end_seq(&self) -> SeqNumber {
        self.first_unacked.add(self.slots.len() as u32)
    }

    fn index_of(&self, seq: SeqNumber) -> Option<usize> {
        let off = usize::try_from(seq.offset_from(self.first_unacked)).ok()?;
        (off < self.slots.len()).then_some(off)
    }

    fn block_at(&self, idx: usize) -> Option<Block<'_>> {
        let slot = self.slots.get(idx)?;
        Some(Block {
            seq: self.first_unacked.add(idx as u32),
            payload: self.pool.bytes(slot.data, slot.len as usize),
            msg: slot.msg,
            position: slot.position,
            in_order: slot.in_order,
            origin: slot.origin,
            ttl: slot.ttl,
        })
    }

    /// Indices of the first and last buffered blocks of the message holding
    /// block `idx`, found from the position bits and message numbers of its
    /// own blocks only.
    fn span_indices(&self, idx: usize) -> Option<(usize, usize)> {
        let slot = self.slots.get(idx)?;
        let msg = slot.msg;
        let mut first = idx;
        while first > 0 {
            match (self.slots.get(first), self.slots.get(first - 1)) {
                (Some(cur), Some(prev)) if !cur.position.is_first() && prev.msg == msg => {
                    first -= 1
                }
                _ => break,
            }
        }
        let mut last = idx;
        loop {
            match (self.slots.get(last), self.slots.get(last + 1)) {
                (Some(cur), Some(next)) if !cur.position.is_last() && next.msg == msg => last += 1,
                _ => break,
            }
        }
        Some((first, last))
    }

    /// Appends `data` as one new message. The caller has checked that it fits.
    fn push_message(
        &mut self,
        data: &[u8],
        in_order: bool,
        origin: Instant,
        ttl: Option<Duration>,
    ) {
        let payload_size = self.pool.payload_size();
        let packets = self.blocks_for(data.len());
        let msg = self.next_msg;
        self.next_msg = msg.next();
        self.reserve_slots(packets);
        for (i, chunk) in data.chunks(payload_size).enumerate() {
            let position = match (i == 0, i + 1 == packets) {
                (true, true) => PacketPosition::Only,
                (true, false) => PacketPosition::First,
                (false, true) => PacketPosition::Last,
                (false, false) => PacketPosition::Middle,
            };
            // The pool holds exactly `capacity` slots and every buffered block
            // owns one, so this cannot fail once the caller checked the space.
            let Some(idx) = self.pool.alloc() else {
                debug_assert!(false, "payload pool exhausted below capacity");
                return;
            };
            let len = self.pool.store(idx, chunk) as u32;
            self.held_bytes += len as usize;
            self.slots.push_back(SendSlot {
                msg,
                position,
                in_order,
                len,
                data: idx,
                origin,
                ttl,
            });
        }
    }

    /// Grows the ring's metadata ahead of `additional` pushes: doubling, at
    /// least one chunk, never past the capacity, so steady-state pushes never
    /// reallocate.
    fn reserve_slots(&mut self, additional: usize) {
        let need = self.slots.len() + additional;
        if need > self.slots.capacity() {
            let target = (self.slots.capacity() * 2)
                .max(CHUNK_SLOTS as usize)
                .min(self.capacity as usize)
                .max(need);
            self.slots.reserve_exact(target - self.slots.len());
        }
    }

    /// Payload slots the pool has created so far.
    #[cfg(test)]
    fn allocated_slots(&self) -> u32 {
        self.pool.allocated()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::rng::Rng;

    use crate::time::test_epoch as epoch;

    fn bytes(n: usize, salt: u8) -> Vec<u8> {
        (0..n)
            .map(|i| (i as u8).wrapping_mul(31).wrapping_add(salt))
            .collect()
    }

    #[test]
    fn grow_raises_the_capacity_and_never_lowers_it() {
        let t = epoch();
        let mut b = SendBuffer::new(4, 10, SeqNumber::new(7));
        assert_eq!(b.write_stream(&bytes(100, 1), t), 40);
        assert_eq!(b.free_packets(), 0);
        b.grow(2);
        assert_eq!(b.capacity(), 4);
        b.grow(6);
        assert_eq!((b.capacity(), b.free_packets()), (6, 2));
        assert_eq!(b.write_stream(&bytes(100, 2), t), 20);
        // All six blocks are sendable, in order, with their bytes.
        let mut seqs = Vec::new();
        let mut got = Vec::new();
        while let Some(k) = b.take_next() {
            seqs.push(k.seq.value());
            got.extend_from_slice(k.payload);
        }
        assert_eq!(seqs, (7..13).collect::<Vec<_>>());
        let mut want = bytes(100, 1)[..40].to_vec();
        want.extend_from_slice(&bytes(100, 2)[..20]);
        assert_eq!(got, want);
        b.grow(u32::MAX);
        assert_eq!(b.capacity(), MAX_CAPACITY_PACKETS);
    }

    #[test]
    fn resize_lowers_the_capacity_but_never_below_what_is_held() {
        let t = epoch();
        let mut b = SendBuffer::new(8, 10, SeqNumber::new(0));
        assert_eq!(b.write_stream(&bytes(30, 1), t), 30); // three blocks
        b.resize(2);
        assert_eq!((b.capacity(), b.free_packets()), (3, 0), "three are held");
        assert_eq!(b.write_stream(&bytes(10, 2), t), 0);
        b.resize(5);
        assert_eq!((b.capacity(), b.free_packets()), (5, 2));
        assert_eq!(b.write_stream(&bytes(100, 3), t), 20);
        b.resize(0);
        assert_eq!(b.capacity(), 5);
        b.resize(u32::MAX);
        assert_eq!(b.capacity(), MAX_CAPACITY_PACKETS);
    }

    #[test]
    fn held_and_unsent_bytes_follow_writes_sends_and_acks_across_growth() {
        // What the CLI's progress bar takes for "not yet acknowledged": it
        // used to be the capacity at the start less the free space now,
        // which reads zero once the buffer has grown with the path.
        let t = epoch();
        let mut b = SendBuffer::new(4, 10, SeqNumber::new(0));
        assert_eq!(b.write_stream(&bytes(35, 1), t), 35);
        assert_eq!((b.held_bytes(), b.unsent_bytes()), (35, 35));
        b.grow(8);
        assert_eq!(b.write_stream(&bytes(100, 2), t), 40);
        assert_eq!((b.held_bytes(), b.unsent_bytes()), (75, 75));
        for _ in 0..5 {
            assert!(b.take_next().is_some());
        }
        // Sent: 10 + 10 + 10 + 5 (the first write's short block) + 10.
        assert_eq!((b.held_bytes(), b.unsent_bytes()), (75, 30));
        assert_eq!(b.ack(SeqNumber::new(4)), 4);
        assert_eq!((b.held_bytes(), b.unsent_bytes()), (40, 30));
        while b.take_next().is_some() {}
        assert_eq!(b.ack(SeqNumber::new(8)), 4);
        assert_eq!((b.held_bytes(), b.unsent_bytes()), (0, 0));
        assert!(b.is_empty());
    }

    #[test]
    fn stream_writes_follow_udt4_framing() {
        let t = epoch();
        let mut b = SendBuffer::new(16, 1456, SeqNumber::new(0x3039));
        assert_eq!(b.write_stream(b"abc", t), 3);
        let data = bytes(3000, 7);
        assert_eq!(b.write_stream(&data, t), 3000);

        let k = b.take_next().unwrap();
        assert_eq!(
            (k.seq.value(), k.msg.value(), k.position),
            (0x3039, 1, PacketPosition::Only)
        );
        assert_eq!(k.payload, b"abc");
        assert!(!k.in_order && k.ttl.is_none());

        let mut got = Vec::new();
        let mut lens = Vec::new();
        let mut positions = Vec::new();
        while let Some(k) = b.take_next() {
            assert_eq!(k.msg.value(), 2);
            got.extend_from_slice(k.payload);
            lens.push(k.payload.len());
            positions.push(k.position);
        }
        assert_eq!(got, data);
        assert_eq!(lens, [1456, 1456, 88]);
        use PacketPosition::*;
        assert_eq!(positions, [First, Middle, Last]);
        assert_eq!(b.next_seq().value(), 0x3039 + 4);
    }

    #[test]
    fn stream_write_takes_what_fits_and_zero_when_full() {
        let t = epoch();
        let mut b = SendBuffer::new(3, 10, SeqNumber::new(5));
        assert_eq!(b.free_bytes(), 30);
        assert_eq!(b.write_stream(&bytes(25, 0), t), 25);
        assert_eq!(b.free_packets(), 0, "a short last block still takes a slot");
        assert_eq!(b.write_stream(b"x", t), 0);
        assert_eq!(b.write_stream(b"", t), 0);

        let mut b = SendBuffer::new(3, 10, SeqNumber::new(5));
        assert_eq!(b.write_stream(&bytes(45, 0), t), 30);
        let positions: Vec<_> = std::iter::from_fn(|| b.take_next().map(|k| k.position)).collect();
        use PacketPosition::*;
        assert_eq!(
            positions,
            [First, Middle, Last],
            "the accepted part is a whole message"
        );
    }

    #[test]
    fn messages_are_whole_or_nothing() {
        let t = epoch();
        let mut b = SendBuffer::new(4, 100, SeqNumber::new(0));
        assert_eq!(
            b.write_message(&bytes(401, 0), None, true, t),
            Err(SendBufferError::MessageTooLarge)
        );
        b.write_message(&bytes(250, 1), None, true, t).unwrap();
        assert_eq!(b.free_packets(), 1);
        assert_eq!(
            b.write_message(&bytes(101, 2), None, false, t),
            Err(SendBufferError::Full)
        );
        assert_eq!(
            b.free_packets(),
            1,
            "a refused message leaves nothing behind"
        );
        b.write_message(b"", None, false, t).unwrap();
        assert_eq!(b.free_packets(), 1, "an empty message stores nothing");
        b.write_message(&bytes(100, 3), None, false, t).unwrap();

        let all: Vec<_> = std::iter::from_fn(|| {
            b.take_next()
                .map(|k| (k.msg.value(), k.position, k.in_order, k.payload.len()))
        })
        .collect();
        use PacketPosition::*;
        assert_eq!(
            all,
            [
                (1, First, true, 100),
                (1, Middle, true, 100),
                (1, Last, true, 50),
                (2, Only, false, 100)
            ]
        );
        assert_eq!(SendBufferError::Full.to_string(), "send buffer full");
    }

    #[test]
    fn message_numbers_skip_zero_and_max() {
        let t = epoch();
        let mut b = SendBuffer::new(4, 8, SeqNumber::new(0));
        b.next_msg = MsgNumber::new(MsgNumber::MASK - 1);
        b.write_message(b"a", None, false, t).unwrap();
        b.write_message(b"b", None, false, t).unwrap();
        assert_eq!(b.take_next().unwrap().msg.value(), MsgNumber::MASK - 1);
        assert_eq!(b.take_next().unwrap().msg.value(), 1);
    }

    #[test]
    fn ack_release_and_retransmission_across_the_wrap() {
        let t = epoch();
        let isn = SeqNumber::new(SeqNumber::MAX - 2);
        let mut b = SendBuffer::new(8, 4, isn);
        assert_eq!(b.write_stream(&bytes(24, 9), t), 24);
        for _ in 0..5 {
            b.take_next().unwrap();
        }
        assert_eq!(b.next_seq().value(), 2);
        assert_eq!(b.next_unsent().map(|s| s.value()), Some(2));
        // Retransmission reads across the wrap.
        assert_eq!(
            b.block(SeqNumber::new(0)).unwrap().payload,
            &bytes(24, 9)[12..16]
        );
        assert!(b.block(isn.prev()).is_none());
        assert!(b.block(isn.add(5)).is_some(), "unsent blocks can be read");
        assert!(b.block(isn.add(6)).is_none(), "never written");
        // Stale and hostile ACKs release nothing; ACKs past the send point clamp.
        assert_eq!(b.ack(isn), 0);
        assert_eq!(b.ack(isn.sub(1000)), 0);
        assert_eq!(b.ack(SeqNumber::new(1)), 4);
        assert_eq!(b.first_unacked().value(), 1);
        assert_eq!(b.ack(isn.add(1 << 29)), 1, "clamped to the send point");
        assert_eq!(b.first_unacked(), b.next_seq());
        assert_eq!(b.free_packets(), 7);
        assert!(!b.is_empty());
        while b.take_next().is_some() {}
        assert_eq!(b.ack(b.next_seq()), 1);
        assert!(b.is_empty());
    }

    #[test]
    fn ttl_expiry_is_per_message_and_strict() {
        let t = epoch();
        let mut b = SendBuffer::new(8, 4, SeqNumber::new(SeqNumber::MAX));
        b.write_message(b"aaaaaaaa", Some(Duration::from_millis(100)), false, t)
            .unwrap();
        b.write_stream(b"bb", t);
        let s0 = SeqNumber::new(SeqNumber::MAX);
        let ms = Duration::from_millis;
        assert!(
            !b.is_expired(s0, t + ms(100)),
            "exactly the TTL is not expired"
        );
        assert!(b.is_expired(s0, t + ms(101)));
        assert!(b.is_expired(s0.next(), t + ms(101)));
        assert!(
            !b.is_expired(s0.add(2), t + Duration::from_secs(3600)),
            "no TTL"
        );
        assert!(!b.is_expired(s0.add(3), t + ms(101)), "not buffered");
        assert!(
            !b.is_expired(s0, t),
            "a clock that went backwards expires nothing"
        );
    }

    #[test]
    fn message_span_and_skip_of_a_partly_sent_message() {
        let t = epoch();
        let isn = SeqNumber::new(SeqNumber::MAX - 1);
        let mut b = SendBuffer::new(16, 4, isn);
        b.write_message(b"0123", None, true, t).unwrap(); // isn
        b.write_message(&bytes(20, 1), Some(Duration::ZERO), true, t)
            .unwrap(); // isn+1 ..= isn+5
        b.write_message(b"zz", None, true, t).unwrap(); // isn+6
        for _ in 0..3 {
            b.take_next().unwrap();
        }
        let m2 = MsgNumber::new(2);
        assert_eq!(
            b.message_span(isn.add(3)),
            Some((m2, isn.add(1), isn.add(5)))
        );
        assert_eq!(
            b.message_span(isn.add(6)),
            Some((MsgNumber::new(3), isn.add(6), isn.add(6)))
        );
        assert_eq!(b.message_span(isn.add(7)), None);

        // The lost block isn+2 expired: skip the rest of its message.
        assert_eq!(b.skip_message(isn.add(2)), isn.add(5));
        assert_eq!(b.next_seq(), isn.add(6));
        let k = b.take_next().unwrap();
        assert_eq!((k.seq, k.payload), (isn.add(6), &b"zz"[..]));

        // Acknowledging part of a message clips `first`.
        assert_eq!(b.ack(isn.add(3)), 3);
        assert_eq!(
            b.message_span(isn.add(4)),
            Some((m2, isn.add(3), isn.add(5)))
        );
        assert_eq!(
            b.skip_message(isn.add(4)),
            isn.add(5),
            "fully sent: nothing to skip"
        );
        assert_eq!(b.skip_message(isn), isn, "not buffered");
    }

    #[test]
    fn skip_leaves_a_later_unsent_message_alone() {
        let t = epoch();
        let mut b = SendBuffer::new(8, 4, SeqNumber::new(10));
        b.write_message(b"aaaa", None, true, t).unwrap();
        b.write_message(b"bbbbbbbb", None, true, t).unwrap();
        assert_eq!(b.skip_message(SeqNumber::new(11)), SeqNumber::new(12));
        assert_eq!(
            b.next_seq(),
            SeqNumber::new(10),
            "message 1 is still to be sent"
        );
        assert_eq!(b.skip_message(SeqNumber::new(10)), SeqNumber::new(10));
        assert_eq!(
            b.next_seq(),
            SeqNumber::new(11),
            "an unsent next message can be skipped"
        );
    }

    #[test]
    fn memory_is_lazy_chunked_and_reused() {
        let t = epoch();
        let mut b = SendBuffer::new(8192, 1456, SeqNumber::new(0));
        assert_eq!(
            b.allocated_slots(),
            0,
            "an idle buffer holds no payload memory"
        );
        assert_eq!(b.slots.capacity(), 0);
        // Keep at most 40 blocks in flight for a long time.
        let chunk = bytes(1456 * 5, 3);
        for _ in 0..2000 {
            while b.free_packets() > 8192 - 40 {
                assert_eq!(b.write_stream(&chunk, t), chunk.len());
            }
            while b.take_next().is_some() {}
            let upto = b.next_seq();
            b.ack(upto);
        }
        assert_eq!(
            b.allocated_slots(),
            64,
            "two chunks of 32 cover a 40-block peak"
        );
        assert!(b.slots.capacity() <= 128);
        let small = SendBuffer::new(5, 8, SeqNumber::new(0));
        let mut small = small;
        for _ in 0..5 {
            small.write_message(b"x", None, false, t).unwrap();
        }
        assert_eq!(small.allocated_slots(), 5, "never beyond capacity");
    }

    /// Random operations against a naive model: a list of
    /// `(seq, msg, position, bytes)` plus a send point.
    #[test]
    fn model_random_ops() {
        for seed in 0..40u64 {
            run_model(seed);
        }
    }

    fn run_model(seed: u64) {
        let t = epoch();
        let mut rng = Rng::new(seed);
        let cap = 1 + rng.below(64) as u32;
        let ps = 1 + rng.below(16) as usize;
        let isn = SeqNumber::new(SeqNumber::MAX - rng.below(200) as u32);
        let mut b = SendBuffer::new(cap, ps, isn);
        // Model: blocks from first_unacked on.
        let mut model: VecDeque<(u32, PacketPosition, Vec<u8>)> = VecDeque::new();
        let mut base = isn;
        let mut sent = 0usize;
        let mut msg = MsgNumber::FIRST;
        let frame = |data: &[u8], msg: MsgNumber, model: &mut VecDeque<_>| {
            let n = data.len().div_ceil(ps);
            for (i, c) in data.chunks(ps).enumerate() {
                let p = match (i == 0, i + 1 == n) {
                    (true, true) => PacketPosition::Only,
                    (true, false) => PacketPosition::First,
                    (false, true) => PacketPosition::Last,
                    _ => PacketPosition::Middle,
                };
                model.push_back((msg.value(), p, c.to_vec()));
            }
        };
        for step in 0..3000 {
            let ctx = format!("seed={seed} step={step}");
            match rng.below(6) {
                0 => {
                    let data = bytes(rng.below(ps as u64 * 6) as usize, step as u8);
                    let free = (cap as usize - model.len()) * ps;
                    let n = b.write_stream(&data, t);
                    assert_eq!(n, data.len().min(free), "{ctx}");
                    if n > 0 {
                        frame(&data[..n], msg, &mut model);
                        msg = msg.next();
                    }
                }
                1 => {
                    let data = bytes(rng.below(ps as u64 * 8) as usize, step as u8);
                    let need = data.len().div_ceil(ps);
                    let r = b.write_message(&data, None, true, t);
                    if data.is_empty() {
                        assert_eq!(r, Ok(()), "{ctx}");
                    } else if need > cap as usize {
                        assert_eq!(r, Err(SendBufferError::MessageTooLarge), "{ctx}");
                    } else if need > cap as usize - model.len() {
                        assert_eq!(r, Err(SendBufferError::Full), "{ctx}");
                    } else {
                        assert_eq!(r, Ok(()), "{ctx}");
                        frame(&data, msg, &mut model);
                        msg = msg.next();
                    }
                }
                2 => {
                    let got = b
                        .take_next()
                        .map(|k| (k.seq, k.msg.value(), k.position, k.payload.to_vec()));
                    let want = model
                        .get(sent)
                        .map(|(m, p, d)| (base.add(sent as u32), *m, *p, d.clone()));
                    assert_eq!(got, want, "{ctx}");
                    if want.is_some() {
                        sent += 1;
                    }
                }
                3 => {
                    let off = rng.below(sent as u64 + 3) as i64 - 1;
                    let upto = base.add(off as u32);
                    let n = b.ack(upto) as usize;
                    let expect = if off <= 0 {
                        0
                    } else {
                        (off as usize).min(sent)
                    };
                    assert_eq!(n, expect, "{ctx}");
                    model.drain(..n);
                    base = base.add(n as u32);
                    sent -= n;
                }
                4 => {
                    let off = rng.below(model.len() as u64 + 2) as i64 - 1;
                    let seq = base.add(off as u32);
                    let got = b.block(seq).map(|k| (k.msg.value(), k.payload.to_vec()));
                    let want = usize::try_from(off)
                        .ok()
                        .and_then(|o| model.get(o))
                        .map(|(m, _, d)| (*m, d.clone()));
                    assert_eq!(got, want, "{ctx}");
                }
                _ => {
                    if sent > 0 {
                        let off = rng.below(sent as u64) as usize;
                        let seq = base.add(off as u32);
                        let m = model[off].0;
                        let last = (off..model.len())
                            .take_while(|&i| model[i].0 == m)
                            .last()
                            .unwrap();
                        let first = (0..=off)
                            .rev()
                            .take_while(|&i| model[i].0 == m)
                            .last()
                            .unwrap();
                        assert_eq!(
                            b.message_span(seq),
                            Some((
                                MsgNumber::new(m),
                                base.add(first as u32),
                                base.add(last as u32)
                            )),
                            "{ctx}"
                        );
                        assert_eq!(b.skip_message(seq), base.add(last as u32), "{ctx}");
                        sent = sent.max(last + 1);
                    }
                }
            }
            assert_eq!(b.first_unacked(), base, "{ctx}");
            assert_eq!(b.next_seq(), base.add(sent as u32), "{ctx}");
            assert_eq!(
                b.free_packets() as usize,
                cap as usize - model.len(),
                "{ctx}"
            );
            assert_eq!(b.is_empty(), model.is_empty(), "{ctx}");
            assert!(b.allocated_slots() <= cap, "{ctx}");
        }
    }
}
