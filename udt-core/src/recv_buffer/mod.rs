//! The receive buffer: data packets from arrival until the application
//! reads them, as a byte stream or as whole messages.
//!
//! One concern: placing packets by sequence number inside the receive window
//! and deciding what is readable. Loss detection, ACK and NAK generation
//! belong to the connection's receiver half (`connection/receiver.rs`); it
//! learns from [`RecvBuffer::contiguous_end`] and
//! [`RecvBuffer::available_packets`] what to advertise.
//!
//! # Layout
//!
//! Slots sit in a ring (`VecDeque`) indexed by `seq.offset_from(base)`,
//! where `base` is the first sequence number still held. Each slot is
//! *empty*, *data*, *dropped* (covered by a message drop request) or
//! *consumed* (an out-of-order message already read whose slots the window
//! has not passed yet). Payload bytes live in a lazily grown, recycled pool
//! (the crate's `payload_pool`); ring metadata grows by doubling up to the
//! capacity and is then reused, so the steady state does not allocate.
//!
//! Three frontiers move forward only, each passing every slot once, so all
//! per-packet work is amortized O(1):
//! * `contig`: the first empty slot. Everything before it was received or
//!   dropped; stream reads are allowed up to it.
//! * `cursor`: the message-mode read point. Slots between `base` and `cursor`
//!   are garbage for message reading (dropped, consumed, or fragments of a
//!   message that can never be completed) and are released by the next
//!   [`RecvBuffer::read_message`].
//! * `base`: advanced by reads.
//!
//! # Finding messages without scanning the window
//!
//! Adjacent data slots are *linked* when they belong to the same message
//! (same number and order flag, the left one not a Last/Only and the right
//! one not a First/Only). A maximal linked run is a *chain*; the two end
//! slots of every chain store each other's sequence number, so an insert
//! merges chains in O(1) and a message is complete exactly when its chain
//! starts with First/Only and ends with Last/Only. Completed out-of-order
//! (`o = 0`) messages are queued in completion order (udt4-protocol.md §11:
//! they may be read before the ACK point); in-order messages are read only
//! at `cursor`, i.e. when everything before them has arrived. Reading a
//! message costs O(its length).

use std::collections::VecDeque;
use std::error::Error;
use std::fmt;

use crate::packet::PacketPosition;
use crate::payload_pool::{PayloadPool, CHUNK_SLOTS};
use crate::send_buffer::MAX_CAPACITY_PACKETS;
use crate::seq::{MsgNumber, SeqNumber};

/// Why [`RecvBuffer::insert`] did not store a packet. None of these is an
/// error of the connection: the packet is simply not needed.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum InsertError {
    /// The slot already holds this packet (or its message was already read).
    Duplicate,
    /// The packet is before the first slot held (already read) or at least
    /// `capacity` packets past it.
    OutOfWindow,
    /// The packet belongs to a message dropped by a drop request (§11).
    Dropped,
    /// The slot holds a packet with the same sequence number and another
    /// payload, not yet read: one of the two was injected (or corrupted).
    /// A retransmission always repeats the payload.
    Conflict,
}

impl fmt::Display for InsertError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            InsertError::Duplicate => f.write_str("duplicate data packet"),
            InsertError::OutOfWindow => f.write_str("data packet outside the receive window"),
            InsertError::Dropped => f.write_str("data packet of a dropped message"),
            InsertError::Conflict => {
                f.write_str("data packet differs from the one received with its sequence number")
            }
        }
    }
}

impl Error for InsertError {}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum SlotState {
    Empty,
    Data,
    Dropped,
    Consumed,
}

/// Metadata of one slot; the bytes are in the pool while the state is `Data`.
#[derive(Clone, Copy, Debug)]
struct RecvSlot {
    state: SlotState,
    position: PacketPosition,
    in_order: bool,
    msg: MsgNumber,
    len: u32,
    data: u32,
    /// At a chain's first slot: the chain's last sequence number; at its
    /// last slot: its first. Meaningless inside a chain.
    other_end: SeqNumber,
}

/// A lent application buffer (see [`RecvBuffer::lend_sink`]).
#[derive(Debug)]
struct Sink {
    buf: Vec<u8>,
    /// Its length when lent: what it held before is the application's.
    start: usize,
    /// Delivered bytes a [`RecvBuffer::read`] already copied out.
    consumed: usize,
    /// Its length may grow to this much.
    limit: usize,
}

impl Sink {
    /// Delivered bytes not yet read.
    fn unread(&self) -> &[u8] {
        self.buf.get(self.start + self.consumed..).unwrap_or(&[])
    }
}

/// How many windows of a remembered drop remainder one call may apply.
const PENDING_ROUNDS: usize = 4;

const EMPTY: RecvSlot = RecvSlot {
    state: SlotState::Empty,
    position: PacketPosition::Middle,
    in_order: false,
    msg: MsgNumber::new(0),
    len: 0,
    data: 0,
    other_end: SeqNumber::new(0),
};

/// The part of a drop request beyond the window, applied as the window
/// advances so that the skipped tail of a message does not stall contiguity.
#[derive(Clone, Copy, Debug)]
struct PendingDrop {
    msg: MsgNumber,
    from: SeqNumber,
    to: SeqNumber,
}

/// Received data waiting for the application (UDT4 `CRcvBuffer`).
///
/// The connection calls [`insert`](Self::insert) for every data packet and
/// [`drop_message`](Self::drop_message) for every drop request; the
/// application side reads with [`read`](Self::read) (stream sockets) or
/// [`read_message`](Self::read_message) (message sockets). Every method does
/// bounded work for any input: at most O(capacity) for one call, and
/// amortized O(1) per packet.
#[derive(Debug)]
pub struct RecvBuffer {
    /// Slots from `base` on; index = offset from `base`.
    slots: VecDeque<RecvSlot>,
    pool: PayloadPool,
    capacity: u32,
    base: SeqNumber,
    /// Bytes of the front slot already returned by `read`.
    read_offset: usize,
    /// The first empty slot at or after `base`.
    contig: SeqNumber,
    /// Unread bytes in data slots in `[base, contig)`.
    contig_bytes: usize,
    /// Message read point: `base <= cursor <= contig`; see the module docs.
    cursor: SeqNumber,
    /// Completed out-of-order messages `(first seq, msg)`, oldest completion
    /// first. Entries go stale when their message is dropped or read another
    /// way; stale heads are popped after every change.
    ready: VecDeque<(SeqNumber, MsgNumber)>,
    pending_drop: Option<PendingDrop>,
    /// A narrower window than `capacity` while set (see
    /// [`set_window_limit`](Self::set_window_limit)); the window in force is
    /// [`window`](Self::window).
    window_limit: Option<u32>,
    /// False for a buffer read only as a byte stream
    /// ([`stream_only`](Self::stream_only)): chains, `cursor` and `ready`
    /// are not kept.
    messages: bool,
    /// The application's memory, lent while it waits for data
    /// ([`lend_sink`](Self::lend_sink)): in-order packets that find nothing
    /// buffered before them are appended to it instead of the pool.
    sink: Option<Sink>,
    /// Payload bytes delivered straight into a sink so far.
    direct_bytes: u64,
    /// Since the last [`take_reader_due`](Self::take_reader_due), data
    /// became readable that a waiting reader should not wait past (see
    /// there).
    reader_due: bool,
    /// Bytes a reader waiting without a lent sink asks for (0: none), see
    /// [`set_read_want`](Self::set_read_want).
    want: usize,
    /// Slots visited by drop requests, for the tests of their cost.
    #[cfg(test)]
    drop_walk: u64,
}

/// How many slots a drop request may walk over without changing anything
/// (slots it or another request already dropped, consumed slots of its
/// message) before it is taken for a repeat and abandoned. An honest
/// sender's ranges overlap by at most UDT4's one-slot off-by-one; without
/// this bound, one forged 24-byte request over a dropped window walked the
/// whole window every time (issue 10 item 6).
const MAX_IDLE_DROP_STEPS: u32 = 64;

impl RecvBuffer {
    /// An empty buffer of `capacity_packets` slots of `payload_size` bytes
    /// expecting `first_seq` (the peer's initial sequence number) first.
    /// Allocates nothing yet.
    ///
    /// `capacity_packets` is clamped to `1..=`[`MAX_CAPACITY_PACKETS`] and
    /// `payload_size` to at least 1.
    pub fn new(capacity_packets: u32, payload_size: usize, first_seq: SeqNumber) -> Self {
        let capacity = capacity_packets.clamp(1, MAX_CAPACITY_PACKETS);
        RecvBuffer {
            slots: VecDeque::new(),
            pool: PayloadPool::new(payload_size.max(1), capacity),
            capacity,
            base: first_seq,
            read_offset: 0,
            contig: first_seq,
            contig_bytes: 0,
            cursor: first_seq,
            ready: VecDeque::new(),
            pending_drop: None,
            window_limit: None,
            messages: true,
            sink: None,
            direct_bytes: 0,
            reader_due: false,
            want: 0,
            #[cfg(test)]
            drop_walk: 0,
        }
    }

    /// The same buffer for a connection that only ever reads it as a byte
    /// stream: message chains, the message read point and the queue of
    /// completed messages are not kept, so an insert and a read do no
    /// linking (a sixth of the buffer's work per packet, copies included:
    /// `cargo bench -p udt-core --bench wire -- recv_buffer`), and
    /// [`read_message`](Self::read_message) never delivers. Stream reads,
    /// drop requests and the window behave exactly as before.
    pub fn stream_only(mut self) -> Self {
        self.messages = false;
        self
    }

    /// Lends the application's `buf` while it waits for data: until
    /// [`take_sink`](Self::take_sink), every packet that arrives in order
    /// with nothing buffered before it has its payload appended to `buf`
    /// (at most `room` bytes in all) instead of being stored, so the bytes
    /// are copied once on their way to the application instead of twice.
    /// They count as read at once: the window does not shrink. What `buf`
    /// held before stays in front of them.
    ///
    /// # Errors
    /// Gives `buf` back unchanged on a buffer that also assembles messages
    /// (not [`stream_only`](Self::stream_only)) or with a sink already lent.
    pub fn lend_sink(&mut self, buf: Vec<u8>, room: usize) -> Result<(), Vec<u8>> {
        if self.messages || self.sink.is_some() {
            return Err(buf);
        }
        let start = buf.len();
        self.sink = Some(Sink {
            buf,
            start,
            consumed: 0,
            limit: start.saturating_add(room),
        });
        Ok(())
    }

    /// Takes the lent buffer back, with the bytes delivered into it since
    /// appended (less any a [`read`](Self::read) took meanwhile); `None`
    /// when nothing is lent.
    pub fn take_sink(&mut self) -> Option<Vec<u8>> {
        let mut sink = self.sink.take()?;
        if sink.consumed > 0 {
            sink.buf.drain(sink.start..sink.start + sink.consumed);
        }
        Some(sink.buf)
    }

    /// Payload bytes delivered straight into a lent buffer so far.
    pub fn direct_bytes(&self) -> u64 {
        self.direct_bytes
    }

    /// True (once) when data that became readable since the last call
    /// would complete what a waiting reader is likely waiting for: it
    /// includes the last packet of one of the sender's writes (every write
    /// is one message, First..Last, in stream mode too: UDT4 marks its
    /// sends the same way), completes an out-of-order message, left the
    /// lent sink without room for another packet, brought the unread data
    /// to a quarter of the window, or to what a reader without a sink asks
    /// for ([`set_read_want`](Self::set_read_want)). Data in the middle of a
    /// long write answers false: a driver may let a reader of a bulk stream
    /// wait for more of it instead of waking it for every packet.
    pub fn take_reader_due(&mut self) -> bool {
        std::mem::take(&mut self.reader_due)
    }

    /// Tells the buffer how many bytes a reader that waits without lending
    /// a sink asks for (0 once it stopped waiting): data that makes that
    /// much readable also makes it due ([`take_reader_due`](Self::take_reader_due)),
    /// as a full sink does.
    pub fn set_read_want(&mut self, bytes: usize) {
        self.want = bytes;
    }

    /// Appends the packet to the lent buffer if it may go there: stream
    /// only, the next packet expected (`off` 0) with nothing buffered or
    /// dropped ahead, and room left. Returns whether it did.
    fn deliver_direct(&mut self, off: i32, position: PacketPosition, payload: &[u8]) -> bool {
        // (Only a stream-only buffer ever has a sink: `lend_sink`.)
        if off != 0 || self.contig != self.base || self.pending_drop.is_some() {
            return false;
        }
        let cut = &payload[..payload.len().min(self.pool.payload_size())];
        let Some(sink) = self.sink.as_mut() else {
            return false;
        };
        if cut.len() > sink.limit.saturating_sub(sink.buf.len()) {
            return false;
        }
        sink.buf.extend_from_slice(cut);
        let full = sink.limit.saturating_sub(sink.buf.len()) < self.pool.payload_size();
        self.reader_due |= full || position.is_last();
        self.direct_bytes += cut.len() as u64;
        // The packet's slot (empty, since `contig` is at `base`) is passed
        // as if it had been stored and read.
        self.slots.pop_front();
        self.base = self.base.next();
        self.contig = self.base;
        self.cursor = self.base;
        self.read_offset = 0;
        self.normalize();
        true
    }

    /// The capacity in packets.
    pub fn capacity(&self) -> u32 {
        self.capacity
    }

    /// Raises the capacity to `capacity_packets` (clamped to
    /// [`MAX_CAPACITY_PACKETS`]); a smaller value changes nothing. The
    /// window advertised in ACKs grows with it; nothing is allocated until
    /// the room is used.
    pub fn grow(&mut self, capacity_packets: u32) {
        let capacity = capacity_packets.min(MAX_CAPACITY_PACKETS);
        if capacity > self.capacity {
            self.capacity = capacity;
            self.pool.raise_limit(capacity);
        }
    }

    /// Bytes of memory held: payload slots (in use or kept for reuse) and
    /// the slot ring.
    pub fn memory_bytes(&self) -> usize {
        self.pool.capacity_bytes() + self.slots.capacity() * std::mem::size_of::<RecvSlot>()
    }

    /// Releases the memory a burst left behind when nothing is held; call
    /// when the connection has been quiet for a while.
    pub fn trim(&mut self) {
        // Only when every slot is empty (nothing unread, nothing dropped
        // ahead), so `base` alone describes the buffer.
        let empty = self.slots.iter().all(|s| s.state == SlotState::Empty);
        if empty && self.pending_drop.is_none() && self.pool.trim() {
            self.slots = VecDeque::new();
            self.ready = VecDeque::new();
        }
    }

    /// Narrows the window to `limit` packets (clamped to `1..=capacity`), or
    /// restores the whole capacity with `None`. A connection nobody has
    /// accepted yet uses a small window, so unaccepted connections cannot
    /// hold megabytes each (issue 10 item 7). Packets already held beyond a
    /// new, smaller limit stay.
    pub fn set_window_limit(&mut self, limit: Option<u32>) {
        self.window_limit = limit;
    }

    /// The window in force: packets this far past `base` or more are
    /// refused. A limit (a connection not yet accepted) keeps it narrow
    /// while the capacity grows; without one it is the whole capacity.
    fn window(&self) -> u32 {
        self.window_limit
            .map_or(self.capacity, |l| l.clamp(1, self.capacity))
    }

    /// Stores a data packet.
    ///
    /// A payload longer than `payload_size` is cut to it, as UDT4's
    /// fixed-size receive units do (udt4-protocol.md §1).
    ///
    /// # Errors
    /// [`InsertError::OutOfWindow`] if `seq` is before the first slot held
    /// or `capacity` or more past it; [`InsertError::Duplicate`] if the slot
    /// is already filled; [`InsertError::Dropped`] if a drop request covered
    /// it. Nothing is stored in any of these cases.
    pub fn insert(
        &mut self,
        seq: SeqNumber,
        position: PacketPosition,
        in_order: bool,
        msg: MsgNumber,
        payload: &[u8],
    ) -> Result<(), InsertError> {
        let off = seq.offset_from(self.base);
        if off < 0 || off as u32 >= self.window() {
            return Err(InsertError::OutOfWindow);
        }
        let idx = off as usize;
        self.ensure_len(idx + 1);
        match self.slots.get(idx).copied().map(|s| (s.state, s)) {
            Some((SlotState::Empty, _)) => {}
            Some((SlotState::Data, held)) => {
                // Compare with what is held (cut as it was when stored): a
                // blind injection that won the race shows up when the
                // genuine packet arrives (issue 10 item 4).
                let cut = &payload[..payload.len().min(self.pool.payload_size())];
                if self.pool.bytes(held.data, held.len as usize) != cut {
                    return Err(InsertError::Conflict);
                }
                return Err(InsertError::Duplicate);
            }
            Some((SlotState::Consumed, _)) => return Err(InsertError::Duplicate),
            Some((SlotState::Dropped, _)) => return Err(InsertError::Dropped),
            None => return Err(InsertError::OutOfWindow),
        }
        if self.deliver_direct(off, position, payload) {
            return Ok(());
        }
        // At most `capacity` slots hold data and the pool has that many, so
        // this only fails if an internal invariant broke; refuse the packet.
        let data = self.pool.alloc().ok_or(InsertError::OutOfWindow)?;
        let len = self.pool.store(data, payload) as u32;
        if let Some(slot) = self.slots.get_mut(idx) {
            *slot = RecvSlot {
                state: SlotState::Data,
                position,
                in_order,
                msg,
                len,
                data,
                other_end: seq,
            };
        }
        if self.messages {
            self.link(idx, seq);
        }
        self.normalize();
        Ok(())
    }

    /// The first sequence number not yet received: everything before it has
    /// arrived or was dropped (the connection's ACK point candidate).
    pub fn contiguous_end(&self) -> SeqNumber {
        self.contig
    }

    /// Free slots to advertise in ACKs: `capacity − (contiguous span held) − 1`,
    /// at least 0 (UDT4 `getAvailBufSize`, §9; the connection applies UDT4's
    /// minimum of 2).
    pub fn available_packets(&self) -> u32 {
        let held = self.offset(self.contig) as u32;
        self.window().saturating_sub(held).saturating_sub(1)
    }

    /// Stream read: copies contiguous received bytes into `buf` and returns
    /// how many. A slot read only partly keeps its offset for the next call.
    /// Dropped and consumed slots are skipped.
    pub fn read(&mut self, buf: &mut [u8]) -> usize {
        let mut n = 0;
        self.read_with(buf.len(), |piece| {
            if let Some(dst) = buf.get_mut(n..n + piece.len()) {
                dst.copy_from_slice(piece);
            }
            n += piece.len();
        })
    }

    /// The work of the stream reads: hands `emit` at most `max` contiguous
    /// bytes, piece by piece, in order, and releases what was read.
    fn read_with(&mut self, max: usize, mut emit: impl FnMut(&[u8])) -> usize {
        // Bytes delivered into a lent buffer came before anything stored.
        let mut n = 0;
        if let Some(sink) = self.sink.as_mut() {
            let unread = sink.unread();
            n = unread.len().min(max);
            if n > 0 {
                emit(unread.get(..n).unwrap_or(&[]));
                sink.consumed += n;
            }
        }
        let mut moved = false;
        while n < max && self.base != self.contig {
            let Some(front) = self.slots.front().copied() else {
                break;
            };
            if front.state == SlotState::Data {
                let bytes = self.pool.bytes(front.data, front.len as usize);
                let unread = bytes.get(self.read_offset..).unwrap_or(&[]);
                let k = unread.len().min(max - n);
                emit(unread.get(..k).unwrap_or(&[]));
                n += k;
                self.read_offset += k;
                self.contig_bytes = self.contig_bytes.saturating_sub(k);
                if self.read_offset < front.len as usize {
                    break; // `max` reached
                }
            }
            self.pop_front();
            moved = true;
        }
        if moved {
            self.normalize();
        }
        n
    }

    /// Bytes a stream [`read`](Self::read) could return now.
    pub fn readable_bytes(&self) -> usize {
        self.contig_bytes + self.sink.as_ref().map_or(0, |s| s.unread().len())
    }

    /// True when [`readable_bytes`](Self::readable_bytes) is not zero.
    pub fn is_readable(&self) -> bool {
        self.readable_bytes() > 0
    }

    /// Stream read into a vector: appends at most `max` contiguous bytes to
    /// `out` (no zeroing of its spare room first) and returns how many, as
    /// [`read`](Self::read) does.
    pub fn read_to_vec(&mut self, out: &mut Vec<u8>, max: usize) -> usize {
        self.read_with(max, |piece| out.extend_from_slice(piece))
    }

    /// Message read: clears `out`, appends one whole message and returns
    /// true, or returns false (with `out` empty) when no message is ready.
    ///
    /// A message is ready when all its packets are present and, if it is
    /// in-order (`o = 1`), everything before it has arrived or was dropped.
    /// Out-of-order messages (`o = 0`) are ready wherever they sit in the
    /// window (§11). The message at the read point goes first, then
    /// out-of-order messages in the order they completed. A message is never
    /// delivered in part: fragments whose message can no longer complete are
    /// discarded. Costs O(message length) plus the garbage released.
    pub fn read_message(&mut self, out: &mut Vec<u8>) -> bool {
        out.clear();
        if !self.messages {
            return false;
        }
        // Slots before the cursor can never be part of a delivered message;
        // release them now so the window moves on even when nothing is ready.
        // (They are not released eagerly because a stream reader still wants
        // the bytes of fragments that break message framing.)
        if self.base != self.cursor {
            while self.base != self.cursor {
                let before = self.base;
                self.pop_front();
                if self.base == before {
                    break; // only an empty slot stops it, which cannot precede `cursor`
                }
            }
            self.normalize();
        }
        if let Some((start, end)) = self.complete_at(self.offset(self.cursor)) {
            self.copy_chain(start, end, out);
            let first_seq = self.base.add(start as u32);
            // Everything before the chain is garbage (see `cursor`).
            for _ in 0..=end {
                self.pop_front();
            }
            if self.ready.front().is_some_and(|&(s, _)| s == first_seq) {
                self.ready.pop_front();
            }
            self.normalize();
            return true;
        }
        while let Some((seq, msg)) = self.ready.pop_front() {
            let Some((start, end)) = self.valid_entry(seq, msg) else {
                continue;
            };
            self.copy_chain(start, end, out);
            for idx in start..=end {
                self.retire(idx, SlotState::Consumed);
            }
            self.normalize();
            return true;
        }
        false
    }

    /// True when [`read_message`](Self::read_message) would deliver a message.
    pub fn has_message(&self) -> bool {
        self.messages && self.complete_at(self.offset(self.cursor)).is_some()
            || self
                .ready
                .front()
                .is_some_and(|&(seq, msg)| self.valid_entry(seq, msg).is_some())
    }

    /// Handles a message drop request (type 7, §11) and returns how many
    /// slots it newly marked dropped.
    ///
    /// Marks the packets of `msg` in `[first, last]`, and the still-empty
    /// slots there, as dropped so that contiguity passes them; any packet of
    /// `msg` already received next to them goes too, so the message is never
    /// delivered in part. Packets whose message number differs are never
    /// touched: UDT4 senders put `last` one past the message's end, so the
    /// scan stops at the first slot of another message, and an empty `last`
    /// is spared when the packet after it shows that another message covers
    /// it. The range is clipped to the window first (bounded work for a
    /// forged 2^30-wide range); the part beyond the window is remembered
    /// (only the latest such remainder) and applied as the window advances,
    /// because the sender never transmits the skipped tail. A range with
    /// `last` before `first` is ignored.
    pub fn drop_message(&mut self, msg: MsgNumber, first: SeqNumber, last: SeqNumber) -> u32 {
        let n = self.apply_drop(msg, first, last);
        self.normalize();
        // What it skipped may have been all a waiting reader had to wait
        // for (rare: a message sender's TTL expired).
        self.reader_due |= n > 0;
        n
    }

    // ----- internals -----

    /// Offset of a frontier (`contig`, `cursor`), which never precede `base`.
    fn offset(&self, seq: SeqNumber) -> usize {
        usize::try_from(seq.offset_from(self.base)).unwrap_or(0)
    }

    fn index_of(&self, seq: SeqNumber) -> Option<usize> {
        let off = usize::try_from(seq.offset_from(self.base)).ok()?;
        (off < self.slots.len()).then_some(off)
    }

    /// Makes the ring at least `n` slots long (never beyond the capacity),
    /// growing its allocation by doubling so it settles at its peak.
    fn ensure_len(&mut self, n: usize) {
        let cap = self.capacity as usize;
        let n = n.min(cap);
        if n <= self.slots.len() {
            return;
        }
        if n > self.slots.capacity() {
            let target = (self.slots.capacity() * 2)
                .max(CHUNK_SLOTS as usize)
                .min(cap)
                .max(n);
            self.slots.reserve_exact(target - self.slots.len());
        }
        self.slots.resize(n, EMPTY);
    }

    /// Whether slot `idx` is linked to slot `idx + 1` (same chain).
    fn linked(&self, idx: usize) -> bool {
        match (self.slots.get(idx), self.slots.get(idx + 1)) {
            (Some(a), Some(b)) => {
                a.state == SlotState::Data
                    && b.state == SlotState::Data
                    && a.msg == b.msg
                    && a.in_order == b.in_order
                    && !a.position.is_last()
                    && !b.position.is_first()
            }
            _ => false,
        }
    }

    fn set_other_end(&mut self, at: SeqNumber, value: SeqNumber) {
        if let Some(slot) = self.index_of(at).and_then(|i| self.slots.get_mut(i)) {
            slot.other_end = value;
        }
    }

    /// Merges the new data slot `idx` with its neighbours' chains and queues
    /// the message if that completed an out-of-order one.
    fn link(&mut self, idx: usize, seq: SeqNumber) {
        let mut start = seq;
        let mut end = seq;
        if idx > 0 && self.linked(idx - 1) {
            if let Some(left) = self.slots.get(idx - 1) {
                start = left.other_end;
            }
        }
        if self.linked(idx) {
            if let Some(right) = self.slots.get(idx + 1) {
                end = right.other_end;
            }
        }
        self.set_other_end(start, end);
        self.set_other_end(end, start);
        let (Some(s), Some(e)) = (self.index_of(start), self.index_of(end)) else {
            return;
        };
        let (Some(first), Some(last)) = (self.slots.get(s), self.slots.get(e)) else {
            return;
        };
        if !first.in_order && first.position.is_first() && last.position.is_last() {
            self.push_ready(start, first.msg);
        }
    }

    fn push_ready(&mut self, seq: SeqNumber, msg: MsgNumber) {
        // Stale entries are normally popped from the head; if completions
        // keep landing behind a long-lived head, compact. Valid entries are at
        // most `capacity` (one slot each), so this runs at most once per
        // `capacity` pushes: amortized O(1), and the queue stays bounded.
        if self.ready.len() >= 2 * self.capacity as usize {
            let mut ready = std::mem::take(&mut self.ready);
            ready.retain(|&(s, m)| self.valid_entry(s, m).is_some());
            self.ready = ready;
        }
        self.ready.push_back((seq, msg));
        self.reader_due = true;
    }

    /// `(start, end)` indices of the complete message whose chain starts at
    /// index `idx`, if there is one.
    fn complete_at(&self, idx: usize) -> Option<(usize, usize)> {
        let first = self.slots.get(idx)?;
        if first.state != SlotState::Data || !first.position.is_first() {
            return None;
        }
        let end = self.index_of(first.other_end).filter(|&e| e >= idx)?;
        let last = self.slots.get(end)?;
        let first_seq = self.base.add(idx as u32);
        (last.state == SlotState::Data && last.position.is_last() && last.other_end == first_seq)
            .then_some((idx, end))
    }

    /// The chain of a `ready` entry if it is still a complete, unread message.
    fn valid_entry(&self, seq: SeqNumber, msg: MsgNumber) -> Option<(usize, usize)> {
        let idx = self.index_of(seq)?;
        let chain = self.complete_at(idx)?;
        (self.slots.get(idx)?.msg == msg).then_some(chain)
    }

    fn copy_chain(&self, start: usize, end: usize, out: &mut Vec<u8>) {
        let total: usize = (start..=end)
            .filter_map(|i| self.slots.get(i))
            .map(|s| s.len as usize)
            .sum();
        out.reserve(total);
        for slot in (start..=end).filter_map(|i| self.slots.get(i)) {
            out.extend_from_slice(self.pool.bytes(slot.data, slot.len as usize));
        }
    }

    /// Turns slot `idx` into `state` (dropped or consumed), returning its
    /// payload to the pool and its unread bytes out of the stream count.
    fn retire(&mut self, idx: usize, state: SlotState) {
        let contig_off = self.offset(self.contig);
        let read_offset = self.read_offset;
        let Some(slot) = self.slots.get_mut(idx) else {
            return;
        };
        if slot.state == SlotState::Data {
            if idx < contig_off {
                let already = if idx == 0 { read_offset } else { 0 };
                let unread = (slot.len as usize).saturating_sub(already);
                self.contig_bytes = self.contig_bytes.saturating_sub(unread);
            }
            self.pool.release(slot.data);
        }
        slot.state = state;
        if idx == 0 {
            self.read_offset = 0;
        }
    }

    /// Releases the front slot and advances `base`. Never releases an empty
    /// slot (that would lose a packet still to come).
    fn pop_front(&mut self) {
        match self.slots.front() {
            Some(s) if s.state != SlotState::Empty => {}
            _ => return,
        }
        // Keep the chain-end invariant if the front is cut off its chain
        // (stream reads consume a message one slot at a time).
        let next_start =
            (self.messages && self.linked(0)).then(|| self.slots.front().map(|s| s.other_end));
        self.retire(0, SlotState::Dropped);
        self.slots.pop_front();
        self.base = self.base.next();
        if let Some(Some(end)) = next_start {
            let new_first = self.base;
            self.set_other_end(new_first, end);
            self.set_other_end(end, new_first);
        }
        if self.contig.is_before(self.base) {
            self.contig = self.base;
        }
        if self.cursor.is_before(self.base) {
            self.cursor = self.base;
        }
    }

    /// Restores the invariants after any change: releases dropped and
    /// consumed slots at the front, applies a remembered drop remainder that
    /// entered the window, advances `contig` and `cursor`, and pops stale
    /// `ready` heads. Each step passes every slot at most once over the
    /// buffer's life, so this is amortized O(1) and at most O(capacity).
    fn normalize(&mut self) {
        self.release_front_garbage();
        // Each round lets one more window's worth of a remembered drop
        // remainder in. A few rounds cover any honest remainder (at most one
        // message, bounded by the sender's buffer); a forged 2^30-wide range
        // still costs at most `PENDING_ROUNDS` windows per call.
        for _ in 0..PENDING_ROUNDS {
            if !self.apply_pending_drop() {
                break;
            }
            self.release_front_garbage();
        }
        self.advance_contig();
        if !self.messages {
            return;
        }
        self.advance_cursor();
        while let Some(&(seq, msg)) = self.ready.front() {
            if self.valid_entry(seq, msg).is_some() {
                break;
            }
            self.ready.pop_front();
        }
    }

    fn release_front_garbage(&mut self) {
        while matches!(
            self.slots.front().map(|s| s.state),
            Some(SlotState::Dropped | SlotState::Consumed)
        ) {
            self.pop_front();
        }
    }

    /// Applies the part of the remembered drop remainder that is now inside
    /// the window; false if there was nothing to apply.
    fn apply_pending_drop(&mut self) -> bool {
        let Some(p) = self.pending_drop else {
            return false;
        };
        if !p.from.is_before(self.base.add(self.window())) {
            return false;
        }
        self.pending_drop = None;
        self.apply_drop(p.msg, p.from, p.to);
        true
    }

    fn advance_contig(&mut self) {
        loop {
            let idx = self.offset(self.contig);
            match self.slots.get(idx) {
                Some(s) if s.state != SlotState::Empty => {
                    if s.state == SlotState::Data {
                        let already = if idx == 0 { self.read_offset } else { 0 };
                        self.contig_bytes += (s.len as usize).saturating_sub(already);
                        self.reader_due |= s.position.is_last();
                    }
                    self.contig = self.contig.next();
                }
                _ => break,
            }
        }
        // A reader that waits on while a quarter of the window fills up
        // would soon close the flow window on its sender.
        self.reader_due |= self.offset(self.contig) >= (self.window() / 4).max(1) as usize;
        // Enough for the waiting reader's whole request.
        self.reader_due |= self.want != 0 && self.contig_bytes >= self.want;
    }

    /// Moves `cursor` past slots that can never start a deliverable message:
    /// dropped and consumed slots, fragments whose First is gone (orphans),
    /// and chains that are cut off by a non-empty slot or by the window end.
    /// Stops at an empty slot, at a complete message, or at a chain still
    /// waiting for packets.
    fn advance_cursor(&mut self) {
        loop {
            let idx = self.offset(self.cursor);
            let Some(slot) = self.slots.get(idx).copied() else {
                break;
            };
            match slot.state {
                SlotState::Empty => break,
                SlotState::Dropped | SlotState::Consumed => self.cursor = self.cursor.next(),
                SlotState::Data => {
                    // `cursor` is always at a chain start; fall back to a
                    // one-slot chain should that ever not hold.
                    let end = self
                        .index_of(slot.other_end)
                        .filter(|&e| e >= idx)
                        .unwrap_or(idx);
                    let last = self.slots.get(end).copied().unwrap_or(slot);
                    let skip = if !slot.position.is_first() {
                        true // orphan: its First was released or dropped
                    } else if last.position.is_last() {
                        break; // complete: readable
                    } else if end + 1 >= self.capacity as usize {
                        // The message is longer than the window: it can only
                        // be discarded, once nothing before it holds the window.
                        idx == 0
                    } else {
                        // The chain ends early. Wait if the next packet may
                        // still come; otherwise the message is broken.
                        matches!(self.slots.get(end + 1), Some(n) if n.state != SlotState::Empty)
                    };
                    if !skip {
                        break;
                    }
                    self.cursor = self.base.add(end as u32 + 1);
                }
            }
        }
    }

    /// Marks the whole chain holding slot `idx` dropped; returns the chain's
    /// last index and how many slots it had. O(chain length).
    fn drop_chain(&mut self, idx: usize) -> (usize, u32) {
        let mut start = idx;
        while start > 0 && self.linked(start - 1) {
            start -= 1;
        }
        let mut end = idx;
        while self.linked(end) {
            end += 1;
        }
        for i in start..=end {
            self.retire(i, SlotState::Dropped);
        }
        (end, (end - start + 1) as u32)
    }

    /// The work of [`drop_message`](Self::drop_message), without normalizing.
    fn apply_drop(&mut self, msg: MsgNumber, first: SeqNumber, last: SeqNumber) -> u32 {
        if last.is_before(first) {
            return 0;
        }
        let window_last = self.base.add(self.window() - 1);
        // Both ends relative to the window; a range entirely outside it
        // needs nothing (before) or came from a sender that cannot have sent
        // it (beyond), so it is ignored.
        if last.is_before(self.base) || first.is_after(window_last) {
            return 0;
        }
        let lo = self.offset(first.max_of(self.base));
        let hi_seq = last.min_of(window_last);
        let hi = self.offset(hi_seq);
        self.ensure_len(hi + 1);

        let mut dropped = 0;
        // Packets of `msg` received just before `first` go too.
        if lo > 0 {
            if let Some(prev) = self.slots.get(lo - 1) {
                if prev.state == SlotState::Data && prev.msg == msg {
                    dropped += self.drop_chain(lo - 1).1;
                }
            }
        }
        let mut ended = false;
        let mut idle = 0u32;
        let mut i = lo;
        while i <= hi {
            let Some(slot) = self.slots.get(i).copied() else {
                break;
            };
            #[cfg(test)]
            {
                self.drop_walk += 1;
            }
            if idle > MAX_IDLE_DROP_STEPS {
                // A repeat (or a forgery) of a drop already applied.
                log::debug!("drop request for {msg:?} walks dropped slots: abandoned");
                return dropped;
            }
            match slot.state {
                SlotState::Empty => {
                    if i == hi && hi_seq == last && self.covered_by_next_message(i, msg) {
                        ended = true;
                        break;
                    }
                    if let Some(s) = self.slots.get_mut(i) {
                        s.state = SlotState::Dropped;
                        s.msg = msg;
                    }
                    dropped += 1;
                    i += 1;
                }
                SlotState::Data if slot.msg == msg => {
                    let (end, n) = self.drop_chain(i);
                    dropped += n;
                    if self.slots.get(end).is_some_and(|s| s.position.is_last()) {
                        ended = true;
                        break;
                    }
                    i = end + 1;
                }
                SlotState::Consumed if slot.msg == msg => {
                    if slot.position.is_last() {
                        ended = true;
                        break;
                    }
                    idle += 1;
                    i += 1;
                }
                // Another message's packet: ours ended before it.
                SlotState::Data | SlotState::Consumed => {
                    ended = true;
                    break;
                }
                SlotState::Dropped => {
                    idle += 1;
                    i += 1;
                }
            }
        }
        if !ended && last.is_after(window_last) {
            self.pending_drop = Some(PendingDrop {
                msg,
                from: window_last.next(),
                to: last,
            });
        }
        dropped
    }

    /// For an empty slot at a drop request's `last`: true when the packet
    /// after it is a Middle/Last of another message, which then must also
    /// own this slot (UDT4's off-by-one `last`, §11).
    fn covered_by_next_message(&self, idx: usize, msg: MsgNumber) -> bool {
        self.slots.get(idx + 1).is_some_and(|n| {
            matches!(n.state, SlotState::Data | SlotState::Consumed)
                && n.msg != msg
                && !n.position.is_first()
        })
    }

    /// Slots visited by drop requests so far.
    #[cfg(test)]
    fn drop_walk(&self) -> u64 {
        self.drop_walk
    }

    /// Payload slots the pool has created so far.
    #[cfg(test)]
    fn allocated_slots(&self) -> u32 {
        self.pool.allocated()
    }
}

#[cfg(test)]
mod tests;
