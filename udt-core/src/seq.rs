//! Wrapping sequence, message and ACK numbers as newtypes.
//!
//! UDT4 numbers wrap: data sequence numbers and ACK sequence numbers at 2^31,
//! message numbers at 2^29. None of these types implement `Ord`: a derived
//! order is wrong at the wrap and a circular one is not a total order. Compare
//! them with [`SeqNumber::offset_from`], [`SeqNumber::is_before`] and friends,
//! which are correct whenever the two values are less than half the space
//! apart (always true inside a flow window).

use std::fmt;

/// A 31-bit data packet sequence number (UDT4 `CSeqNo`).
#[derive(Clone, Copy, PartialEq, Eq, Hash, Default)]
pub struct SeqNumber(u32);

impl SeqNumber {
    /// The largest sequence number, 2^31 − 1.
    pub const MAX: u32 = 0x7FFF_FFFF;
    /// Half the sequence space: the largest distance that compares correctly.
    const THRESHOLD: u32 = 0x3FFF_FFFF;

    /// Builds a sequence number from a raw value, keeping its low 31 bits.
    pub const fn new(raw: u32) -> Self {
        SeqNumber(raw & Self::MAX)
    }

    /// The raw 31-bit value.
    pub const fn value(self) -> u32 {
        self.0
    }

    /// This number plus `n`, wrapping at 2^31.
    pub const fn add(self, n: u32) -> Self {
        SeqNumber(self.0.wrapping_add(n) & Self::MAX)
    }

    /// This number minus `n`, wrapping at 2^31.
    pub const fn sub(self, n: u32) -> Self {
        SeqNumber(self.0.wrapping_sub(n) & Self::MAX)
    }

    /// The next sequence number (UDT4 `incseq`).
    pub const fn next(self) -> Self {
        self.add(1)
    }

    /// The previous sequence number (UDT4 `decseq`).
    pub const fn prev(self) -> Self {
        self.sub(1)
    }

    /// Signed distance from `base` to `self` (UDT4 `seqoff(base, self)`):
    /// positive when `self` comes after `base`.
    pub const fn offset_from(self, base: SeqNumber) -> i32 {
        // Shift the 31-bit difference into the top of an i32 and back, which
        // sign-extends it: the result lies in [-2^30, 2^30).
        ((self.0.wrapping_sub(base.0) << 1) as i32) >> 1
    }

    /// True when `self` comes strictly before `other`.
    pub const fn is_before(self, other: SeqNumber) -> bool {
        self.offset_from(other) < 0
    }

    /// True when `self` comes strictly after `other`.
    pub const fn is_after(self, other: SeqNumber) -> bool {
        self.offset_from(other) > 0
    }

    /// Number of sequence numbers from `self` to `end`, both included
    /// (UDT4 `seqlen`). Returns 0 when `end` is before `self`.
    pub const fn len_to(self, end: SeqNumber) -> u32 {
        let off = end.offset_from(self);
        if off < 0 {
            0
        } else {
            off as u32 + 1
        }
    }

    /// The later of two sequence numbers.
    pub const fn max_of(self, other: SeqNumber) -> SeqNumber {
        if self.is_before(other) {
            other
        } else {
            self
        }
    }

    /// The earlier of two sequence numbers.
    pub const fn min_of(self, other: SeqNumber) -> SeqNumber {
        if self.is_before(other) {
            self
        } else {
            other
        }
    }

    /// True when the raw distance is small enough for comparisons to be
    /// meaningful (less than 2^30 apart).
    pub const fn is_comparable(self, other: SeqNumber) -> bool {
        let d = self.0.wrapping_sub(other.0) & Self::MAX;
        d <= Self::THRESHOLD || d > Self::MAX - Self::THRESHOLD
    }
}

impl fmt::Debug for SeqNumber {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "#{}", self.0)
    }
}

impl fmt::Display for SeqNumber {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.0)
    }
}

/// A 29-bit message number (UDT4 `CMsgNo`).
///
/// UDT4 numbers messages from 1 and wraps back to 1 before reaching
/// 0x1FFF_FFFF, so 0 and 0x1FFF_FFFF never appear on the wire from a UDT4
/// sender; we decode them anyway.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct MsgNumber(u32);

impl MsgNumber {
    /// The mask of the 29 bits a message number occupies in a data header.
    pub const MASK: u32 = 0x1FFF_FFFF;
    /// The first message number a sender uses.
    pub const FIRST: MsgNumber = MsgNumber(1);

    /// Builds a message number from a raw value, keeping its low 29 bits.
    pub const fn new(raw: u32) -> Self {
        MsgNumber(raw & Self::MASK)
    }

    /// The raw 29-bit value.
    pub const fn value(self) -> u32 {
        self.0
    }

    /// The next message number, skipping 0 and 0x1FFF_FFFF as UDT4 does.
    pub const fn next(self) -> Self {
        let n = self.0 + 1;
        if n >= Self::MASK {
            MsgNumber(1)
        } else {
            MsgNumber(n)
        }
    }

    /// Signed distance from `base` to `self`, wrapping at 2^29.
    pub const fn offset_from(self, base: MsgNumber) -> i32 {
        ((self.0.wrapping_sub(base.0) << 3) as i32) >> 3
    }

    /// True when `self` comes strictly before `other`.
    pub const fn is_before(self, other: MsgNumber) -> bool {
        self.offset_from(other) < 0
    }
}

impl fmt::Debug for MsgNumber {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "msg#{}", self.0)
    }
}

/// The sequence number of an ACK, echoed by the ACK2 that confirms it.
///
/// UDT4 counts these from 1 and wraps at 2^31 (`CAckNo`); the draft's
/// "16-bit" is wrong.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct AckSeqNumber(u32);

impl AckSeqNumber {
    /// The first ACK sequence number of a connection.
    pub const FIRST: AckSeqNumber = AckSeqNumber(1);

    /// Builds an ACK sequence number from a raw value (low 31 bits).
    pub const fn new(raw: u32) -> Self {
        AckSeqNumber(raw & SeqNumber::MAX)
    }

    /// The raw value.
    pub const fn value(self) -> u32 {
        self.0
    }

    /// The next ACK sequence number, wrapping at 2^31.
    pub const fn next(self) -> Self {
        AckSeqNumber(self.0.wrapping_add(1) & SeqNumber::MAX)
    }
}

impl fmt::Debug for AckSeqNumber {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "ack#{}", self.0)
    }
}

/// A UDT socket ID: the connection identifier carried in every header's
/// destination field. 0 is reserved for connection requests.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Default)]
pub struct SocketId(pub u32);

impl SocketId {
    /// Destination ID of connection requests (handshakes to a listener or a
    /// rendezvous peer that has not told us its ID yet).
    pub const HANDSHAKE: SocketId = SocketId(0);
    /// The largest socket ID: IDs are positive 31-bit numbers, as UDT4's.
    pub const MAX: u32 = 0x7FFF_FFFF;
}

impl fmt::Debug for SocketId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:#010x}", self.0)
    }
}

impl fmt::Display for SocketId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:#010x}", self.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn offsets_wrap() {
        let a = SeqNumber::new(SeqNumber::MAX - 2);
        let b = a.add(5);
        assert_eq!(b.value(), 2);
        assert_eq!(b.offset_from(a), 5);
        assert_eq!(a.offset_from(b), -5);
        assert!(a.is_before(b));
        assert!(b.is_after(a));
        assert_eq!(a.len_to(b), 6);
        assert_eq!(b.len_to(a), 0);
        assert_eq!(b.sub(5), a);
        assert_eq!(SeqNumber::new(0).prev().value(), SeqNumber::MAX);
    }

    #[test]
    fn offsets_match_udt4_seqoff() {
        // UDT4 seqoff: if |b-a| < TH then b-a; else if b < a then b-a+MAX+1 else b-a-MAX-1.
        fn seqoff(a: i64, b: i64) -> i64 {
            let max = SeqNumber::MAX as i64;
            if (a - b).abs() < 0x3FFF_FFFF {
                b - a
            } else if a < b {
                b - a - max - 1
            } else {
                b - a + max + 1
            }
        }
        let mut x: u64 = 0x9E37_79B9_7F4A_7C15;
        for _ in 0..10_000 {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            let a = (x as u32) & SeqNumber::MAX;
            let d = ((x >> 32) as u32) % 0x3FFF_FFFE;
            let b = SeqNumber::new(a).add(d);
            let got = b.offset_from(SeqNumber::new(a)) as i64;
            assert_eq!(got, seqoff(a as i64, b.value() as i64), "a={a} d={d}");
        }
    }

    #[test]
    fn msg_numbers_skip_zero_and_max() {
        let m = MsgNumber::new(MsgNumber::MASK - 1);
        assert_eq!(m.next(), MsgNumber::FIRST);
        assert_eq!(MsgNumber::new(5).offset_from(MsgNumber::new(3)), 2);
        assert_eq!(
            MsgNumber::new(1).offset_from(MsgNumber::new(MsgNumber::MASK)),
            2
        );
    }

    #[test]
    fn ack_numbers_wrap() {
        assert_eq!(AckSeqNumber::new(SeqNumber::MAX).next().value(), 0);
    }
}
