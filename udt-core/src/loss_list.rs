//! The loss list: sequence numbers kept as sorted, merged, inclusive ranges.
//! One type, [`LossList`], serves both sides of a connection.
//!
//! The sender's list is its retransmission queue (UDT4 `CSndLossList`):
//! NAKs and EXP timeouts [`insert`](LossList::insert) ranges, ACKs
//! [`remove_before`](LossList::remove_before) the acknowledged point, message
//! drops [`remove_range`](LossList::remove_range), and the pacer retransmits
//! [`pop_first`](LossList::pop_first) ahead of new data (udt4-protocol.md
//! §6.1, §6.3, §7). The receiver's list holds the gaps it is still missing
//! (UDT4 `CRcvLossList`): gap detection inserts `[RcvCurrSeqNo+1, seq−1]`,
//! usually after the last range (§6.2); an arriving retransmission is
//! [`remove`](LossList::remove)d, which may split a range; a drop request
//! removes a whole range at once (§11). Its [`first`](LossList::first) entry,
//! if any, is the ACK number (§6.4), and [`ranges`](LossList::ranges) is what
//! a NAK encodes (§6.3).
//!
//! Sequence numbers wrap at 2^31, so nothing is ordered by raw value: every
//! comparison is an offset from the list's smallest number (UDT4 `seqoff`,
//! udt4-protocol.md §5).
//!
//! # Bounds
//!
//! A list is created with a capacity in packets (at most 2^30, half the
//! sequence space, so that offsets always compare correctly). The distance
//! from its smallest to its largest number, both included, never exceeds that
//! capacity. Numbers that would stretch it further are not added: existing
//! entries are never evicted, among new numbers the lower ones are kept (they
//! are the oldest losses, the ACK point), and `insert` returns only the count
//! it really added. Arguments are compared by offset from the list's smallest
//! number, so they must lie within 2^30 of it, as every valid NAK, ACK or drop
//! request does; anything else is still handled safely, just not usefully.
//!
//! Every operation costs O(log n + ranges touched), whatever the width of the
//! range passed in: UDT4 removes a dropped message's range one number at a
//! time, so a forged range of 2^30 numbers costs it 2^30 steps
//! (udt4-protocol.md §11). Here it costs a few. Memory is reserved up front
//! for 1024 ranges; a list can need up to `(capacity + 1) / 2` ranges, and
//! grows to its high-water mark at most once.

use std::collections::VecDeque;

use crate::seq::SeqNumber;

/// The widest span a list may cover: half the sequence space, the largest
/// distance at which `SeqNumber::offset_from` is still unambiguous.
const MAX_SPAN: u32 = 1 << 30;

/// How many ranges are reserved when a list is created. A list of capacity
/// `c` can need at most `(c + 1) / 2` ranges (ranges never touch); beyond this
/// reservation it grows once to its high-water mark and then stops allocating.
const INITIAL_RANGES: usize = 1024;

/// A set of sequence numbers stored as sorted, disjoint, non-adjacent
/// inclusive ranges, with a bounded span: the sender's and the receiver's
/// loss list. See the [module docs](self) for how each side uses it, the
/// capacity bound and the cost of each operation.
///
/// Invariants: ranges are in increasing order of offset from the first
/// range's start; consecutive ranges leave at least one number between them;
/// every range has `first <= last`; `len` is the total count of numbers; the
/// span from the first number to the last is at most `capacity`.
#[derive(Clone, Debug)]
pub struct LossList {
    ranges: VecDeque<(SeqNumber, SeqNumber)>,
    len: u32,
    capacity: u32,
}

/// The stored ranges at positions `[i, j)` overlap the query `[a, b]`
/// (offsets from `base`, the list's first number).
#[derive(Clone, Copy)]
struct Overlap {
    base: SeqNumber,
    a: i64,
    b: i64,
    i: usize,
    j: usize,
}

/// Signed distance from `base` to `seq`, widened so that range arithmetic
/// around it cannot overflow.
fn off(base: SeqNumber, seq: SeqNumber) -> i64 {
    i64::from(seq.offset_from(base))
}

/// The sequence number `offset` places after `base` (before it if negative).
fn seq_at(base: SeqNumber, offset: i64) -> SeqNumber {
    let raw = (i64::from(base.value()) + offset).rem_euclid(i64::from(SeqNumber::MAX) + 1);
    // rem_euclid leaves a value in [0, 2^31), which fits a u32.
    SeqNumber::new(raw as u32)
}

/// The inclusive range `[first, last]` as offsets from `base`, or `None` when
/// `last` comes before `first` (a reversed range, treated as empty). The end
/// offset is computed from the range's own length, so a range that crosses
/// the point opposite `base` stays in order instead of wrapping.
fn offsets(base: SeqNumber, first: SeqNumber, last: SeqNumber) -> Option<(i64, i64)> {
    let width = last.offset_from(first);
    if width < 0 {
        return None;
    }
    let start = off(base, first);
    Some((start, start + i64::from(width)))
}

/// The count of numbers in `[first, last]` (the range must not be reversed).
fn count(first: SeqNumber, last: SeqNumber) -> u32 {
    first.len_to(last)
}

impl LossList {
    /// Creates an empty list whose smallest and largest numbers are never
    /// more than `capacity_packets` apart (inclusive). Capacities above 2^30
    /// are lowered to 2^30; a capacity of 0 makes a list that stays empty.
    pub fn new(capacity_packets: u32) -> Self {
        let capacity = capacity_packets.min(MAX_SPAN);
        let max_ranges = (capacity as usize).div_ceil(2);
        LossList {
            ranges: VecDeque::with_capacity(max_ranges.min(INITIAL_RANGES)),
            len: 0,
            capacity,
        }
    }

    /// The smallest number (the next to retransmit, or the receiver's ACK
    /// point), without removing it. Every offset is taken from it.
    pub fn first(&self) -> Option<SeqNumber> {
        self.ranges.front().map(|&(first, _)| first)
    }

    /// Adds every number in `[first, last]` (inclusive, in wrapping order)
    /// and returns how many were not already present. A reversed range adds
    /// nothing. Numbers that would make the list span more than its capacity
    /// are left out, and are not counted.
    pub fn insert(&mut self, first: SeqNumber, last: SeqNumber) -> u32 {
        if self.capacity == 0 {
            return 0;
        }
        let cap = i64::from(self.capacity);
        let (base, a, b) = match (self.ranges.front(), self.ranges.back()) {
            (Some(&(low, _)), Some(&(_, high))) => {
                let Some((a, b)) = offsets(low, first, last) else {
                    return 0;
                };
                // Keep the span within `cap`: first so that the current
                // largest number stays in reach, then so that the new largest
                // stays in reach of the new smallest. Existing entries win
                // over new ones, lower numbers over higher ones.
                let a = a.max(off(low, high) - cap + 1);
                let b = b.min(a.min(0) + cap - 1);
                (low, a, b)
            }
            _ => {
                let Some((a, b)) = offsets(first, first, last) else {
                    return 0;
                };
                (first, a, b.min(cap - 1))
            }
        };
        if a > b {
            return 0;
        }

        // Ranges [i, j) overlap or touch [a, b] and merge with it. Every range
        // ending before a-1 also starts before b+1, so i <= j.
        let i = self.ranges.partition_point(|&(_, l)| off(base, l) < a - 1);
        let j = self.ranges.partition_point(|&(f, _)| off(base, f) <= b + 1);
        let mut merged = (a, b);
        let mut present = 0i64;
        for &(f, l) in self.ranges.range(i..j) {
            let (f, l) = (off(base, f), off(base, l));
            present += (l.min(b) - f.max(a) + 1).max(0);
            merged = (merged.0.min(f), merged.1.max(l));
        }
        let merged = (seq_at(base, merged.0), seq_at(base, merged.1));
        self.splice(i, j, [Some(merged), None]);

        // b - a + 1 <= cap <= 2^30 and 0 <= present <= b - a + 1.
        let added = (b - a + 1 - present) as u32;
        self.len += added;
        added
    }

    /// Removes `seq` (the receiver got its retransmission); returns whether
    /// it was present.
    pub fn remove(&mut self, seq: SeqNumber) -> bool {
        self.remove_range(seq, seq) == 1
    }

    /// Removes every number in `[first, last]` (inclusive) and returns how
    /// many were present. A reversed range removes nothing. The cost does not
    /// depend on the width of the range, so a forged message-drop request
    /// cannot stall the receiver (udt4-protocol.md §11).
    pub fn remove_range(&mut self, first: SeqNumber, last: SeqNumber) -> u32 {
        let Some(Overlap { base, a, b, i, j }) = self.overlap(first, last) else {
            return 0;
        };
        let mut removed = 0i64;
        for &(f, l) in self.ranges.range(i..j) {
            removed += off(base, l).min(b) - off(base, f).max(a) + 1;
        }
        // What survives: the head of the first touched range and the tail of
        // the last (the same range when [a, b] falls strictly inside it).
        let head = self
            .ranges
            .get(i)
            .filter(|&&(f, _)| off(base, f) < a)
            .map(|&(f, _)| (f, seq_at(base, a - 1)));
        let tail = self
            .ranges
            .get(j - 1)
            .filter(|&&(_, l)| off(base, l) > b)
            .map(|&(_, l)| (seq_at(base, b + 1), l));
        self.splice(i, j, [head, tail]);

        // Bounded by the current length, which fits a u32.
        let removed = removed as u32;
        self.len -= removed;
        removed
    }

    /// Where the stored ranges overlap `[first, last]` (two binary
    /// searches); `None` when none does or the range is reversed.
    fn overlap(&self, first: SeqNumber, last: SeqNumber) -> Option<Overlap> {
        let base = self.first()?;
        let (a, b) = offsets(base, first, last)?;
        let i = self.ranges.partition_point(|&(_, l)| off(base, l) < a);
        let j = self.ranges.partition_point(|&(f, _)| off(base, f) <= b);
        (i < j).then_some(Overlap { base, a, b, i, j })
    }

    /// Replaces the ranges at `[i, j)` with the given pieces, in order,
    /// touching only those positions (plus the shift a `VecDeque` does).
    fn splice(&mut self, i: usize, j: usize, pieces: [Option<(SeqNumber, SeqNumber)>; 2]) {
        let mut at = i;
        for piece in pieces.into_iter().flatten() {
            if at < j {
                if let Some(slot) = self.ranges.get_mut(at) {
                    *slot = piece;
                }
            } else {
                self.ranges.insert(at, piece);
            }
            at += 1;
        }
        if at < j {
            self.ranges.drain(at..j);
        }
    }

    /// Removes every number that comes before `seq` (an ACK of `seq`
    /// acknowledges everything below it, udt4-protocol.md §6.5).
    pub fn remove_before(&mut self, seq: SeqNumber) {
        let Some(base) = self.first() else {
            return;
        };
        let cut = off(base, seq);
        while let Some(front) = self.ranges.front_mut() {
            let (f, l) = *front;
            if off(base, l) < cut {
                self.len -= count(f, l);
                self.ranges.pop_front();
            } else {
                if off(base, f) < cut {
                    self.len -= count(f, seq.prev());
                    front.0 = seq;
                }
                break;
            }
        }
    }

    /// Removes and returns the smallest number, the next to retransmit.
    pub fn pop_first(&mut self) -> Option<SeqNumber> {
        let front = self.ranges.front_mut()?;
        let seq = front.0;
        if front.0 == front.1 {
            self.ranges.pop_front();
        } else {
            front.0 = seq.next();
        }
        self.len -= 1;
        Some(seq)
    }

    /// True when `seq` is in the list.
    pub fn contains(&self, seq: SeqNumber) -> bool {
        let Some(base) = self.first() else {
            return false;
        };
        let at = off(base, seq);
        if at < 0 {
            return false;
        }
        let i = self.ranges.partition_point(|&(_, l)| off(base, l) < at);
        self.ranges.get(i).is_some_and(|&(f, _)| off(base, f) <= at)
    }

    /// Removes everything (the reserved memory is kept).
    pub fn clear(&mut self) {
        self.ranges.clear();
        self.len = 0;
    }

    /// How many numbers the list holds.
    pub fn len(&self) -> u32 {
        self.len
    }

    /// True when the list holds no number.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// The capacity in packets, after clamping to 2^30.
    pub fn capacity(&self) -> u32 {
        self.capacity
    }

    /// Raises the capacity to `capacity_packets` (clamped to 2^30); a
    /// smaller value changes nothing. For a buffer that grew.
    pub fn grow(&mut self, capacity_packets: u32) {
        self.capacity = self.capacity.max(capacity_packets.min(MAX_SPAN));
    }

    /// The inclusive ranges held, smallest first. Ranges never overlap or
    /// touch: consecutive ranges have at least one missing number between
    /// them.
    pub fn ranges(&self) -> impl Iterator<Item = (SeqNumber, SeqNumber)> + '_ {
        self.ranges.iter().copied()
    }

    /// The missing ranges inside `[first, last]`, clipped to it, in order.
    pub fn ranges_within(
        &self,
        first: SeqNumber,
        last: SeqNumber,
    ) -> impl Iterator<Item = (SeqNumber, SeqNumber)> + '_ {
        self.overlap(first, last)
            .into_iter()
            .flat_map(move |Overlap { base, a, b, i, j }| {
                self.ranges.range(i..j).map(move |&(f, l)| {
                    (
                        seq_at(base, off(base, f).max(a)),
                        seq_at(base, off(base, l).min(b)),
                    )
                })
            })
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeSet;

    use super::*;
    use crate::rng::Rng;

    fn s(raw: u32) -> SeqNumber {
        SeqNumber::new(raw)
    }

    /// Checks every invariant of the set.
    fn check(set: &LossList) {
        let mut total = 0u64;
        let mut prev: Option<SeqNumber> = None;
        let base = set.first();
        for (f, l) in set.ranges() {
            assert!(!l.is_before(f), "reversed range {f:?}..{l:?}");
            if let Some(p) = prev {
                assert!(
                    f.offset_from(p) >= 2,
                    "ranges touch or overlap: ..{p:?} then {f:?}.."
                );
            }
            if let Some(b) = base {
                assert!(f.offset_from(b) >= 0 && l.offset_from(b) >= 0);
            }
            total += u64::from(count(f, l));
            prev = Some(l);
        }
        assert_eq!(total, u64::from(set.len), "len out of step with ranges");
        if let (Some(b), Some(last)) = (base, prev) {
            assert!(
                count(b, last) <= set.capacity,
                "span {} over capacity {}",
                count(b, last),
                set.capacity
            );
        }
    }

    /// The naive model: a set of offsets from a fixed origin, with the same
    /// clipping rule written out number by number.
    struct Model {
        origin: SeqNumber,
        items: BTreeSet<i64>,
        capacity: i64,
    }

    impl Model {
        fn insert(&mut self, a: i64, b: i64) -> u32 {
            if a > b || self.capacity == 0 {
                return 0;
            }
            let (a, b) = match (self.items.first(), self.items.last()) {
                (Some(&low), Some(&high)) => {
                    let a = a.max(high - self.capacity + 1);
                    let b = b.min(a.min(low) + self.capacity - 1);
                    (a, b)
                }
                _ => (a, b.min(a + self.capacity - 1)),
            };
            (a..=b).filter(|&x| self.items.insert(x)).count() as u32
        }

        fn remove_range(&mut self, a: i64, b: i64) -> u32 {
            if a > b {
                return 0;
            }
            (a..=b).filter(|x| self.items.remove(x)).count() as u32
        }

        fn remove_before(&mut self, x: i64) {
            self.items = self.items.split_off(&x);
        }

        fn seqs(&self) -> Vec<SeqNumber> {
            self.items.iter().map(|&x| seq_at(self.origin, x)).collect()
        }
    }

    fn expand(set: &LossList) -> Vec<SeqNumber> {
        let mut out = Vec::new();
        for (f, l) in set.ranges() {
            let mut x = f;
            loop {
                out.push(x);
                if x == l {
                    break;
                }
                x = x.next();
            }
        }
        out
    }

    /// Runs random operations on a list against the model.
    fn run_model(seed: u64, origin: SeqNumber, capacity: u32, window: i64, ops: usize) {
        let mut rng = Rng::new(seed);
        let mut set = LossList::new(capacity);
        let mut model = Model {
            origin,
            items: BTreeSet::new(),
            capacity: i64::from(capacity),
        };
        let ctx = format!("seed={seed} origin={origin:?} capacity={capacity}");
        let pick = |rng: &mut Rng| rng.below(window as u64) as i64;
        for step in 0..ops {
            let a = pick(&mut rng);
            // Mostly short ranges, sometimes wide ones, sometimes reversed.
            let width = match rng.below(10) {
                0 => rng.below(window as u64) as i64,
                1 => -(rng.below(5) as i64) - 1,
                _ => rng.below(6) as i64,
            };
            let b = a + width;
            let (fa, fb) = (seq_at(origin, a), seq_at(origin, b));
            match rng.below(8) {
                0..=2 => {
                    let got = set.insert(fa, fb);
                    let want = model.insert(a, b);
                    assert_eq!(got, want, "{ctx} step={step} insert {a}..{b}");
                }
                3 | 4 => {
                    let got = set.remove_range(fa, fb);
                    let want = model.remove_range(a, b);
                    assert_eq!(got, want, "{ctx} step={step} remove_range {a}..{b}");
                }
                5 => {
                    // Keep the cut inside the window so both sides agree on
                    // what "before" means.
                    set.remove_before(fa);
                    model.remove_before(a);
                }
                6 => {
                    let got = set.pop_first();
                    let want = model.items.pop_first().map(|x| seq_at(origin, x));
                    assert_eq!(got, want, "{ctx} step={step} pop_first");
                }
                _ => {
                    let got = set.contains(fa);
                    assert_eq!(
                        got,
                        model.items.contains(&a),
                        "{ctx} step={step} contains {a}"
                    );
                }
            }
            check(&set);
            assert_eq!(set.len as usize, model.items.len(), "{ctx} step={step} len");
            assert_eq!(
                set.first(),
                model.items.first().map(|&x| seq_at(origin, x)),
                "{ctx} step={step} first"
            );
            if step % 16 == 0 {
                assert_eq!(expand(&set), model.seqs(), "{ctx} step={step} contents");
            }
            if rng.chance(0.002) {
                set.clear();
                model.items.clear();
            }
        }
        assert_eq!(expand(&set), model.seqs(), "{ctx} final contents");
    }

    #[test]
    fn model_random_ops_no_clipping() {
        for seed in 1..=6u64 {
            run_model(seed, s(1000), 1 << 20, 300, 4000);
        }
    }

    #[test]
    fn model_random_ops_at_the_wrap() {
        // The window [origin, origin + 300) crosses 0x7FFF_FFFF -> 0.
        for (seed, origin) in [
            (11, SeqNumber::MAX - 150),
            (12, SeqNumber::MAX),
            (13, SeqNumber::MAX - 299),
            (14, 0),
        ] {
            run_model(seed, s(origin), 1 << 20, 300, 4000);
        }
    }

    #[test]
    fn model_random_ops_with_clipping() {
        for (seed, cap) in [(21, 1), (22, 2), (23, 17), (24, 64), (25, 150)] {
            run_model(seed, s(SeqNumber::MAX - 100), cap, 300, 4000);
        }
    }

    #[test]
    fn model_random_bases() {
        let mut rng = Rng::new(99);
        for seed in 31..=36u64 {
            let origin = s(rng.next_u32());
            let cap = 1 + rng.below(400) as u32;
            run_model(seed, origin, cap, 500, 3000);
        }
    }

    #[test]
    fn zero_capacity_stays_empty() {
        let mut list = LossList::new(0);
        assert_eq!(list.insert(s(1), s(10)), 0);
        assert!(list.is_empty());
        assert_eq!(list.pop_first(), None);
    }

    #[test]
    fn merges_adjacent_and_overlapping() {
        let mut list = LossList::new(1000);
        assert_eq!(list.insert(s(10), s(12)), 3);
        assert_eq!(list.insert(s(14), s(15)), 2);
        assert_eq!(list.ranges().count(), 2);
        // Fills the one-number gap: the two ranges become one.
        assert_eq!(list.insert(s(13), s(13)), 1);
        assert_eq!(list.ranges().collect::<Vec<_>>(), vec![(s(10), s(15))]);
        // Overlaps on both sides: only the new numbers count.
        assert_eq!(list.insert(s(8), s(17)), 4);
        assert_eq!(list.ranges().collect::<Vec<_>>(), vec![(s(8), s(17))]);
        assert_eq!(list.len(), 10);
        assert_eq!(list.insert(s(9), s(16)), 0);
    }

    #[test]
    fn reversed_ranges_are_empty() {
        let mut send = LossList::new(1000);
        assert_eq!(send.insert(s(10), s(9)), 0);
        assert!(send.is_empty());
        send.insert(s(1), s(20));
        assert_eq!(send.remove_range(s(15), s(5)), 0);
        assert_eq!(send.len(), 20);

        let mut recv = LossList::new(1000);
        assert_eq!(recv.insert(s(3), s(0)), 0);
        recv.insert(s(1), s(20));
        assert_eq!(recv.remove_range(s(20), s(1)), 0);
        assert_eq!(recv.len(), 20);
    }

    #[test]
    fn send_list_pops_in_wrapping_order() {
        let mut list = LossList::new(100);
        let top = s(SeqNumber::MAX - 1);
        assert_eq!(list.insert(s(1), s(2)), 2);
        assert_eq!(list.insert(top, s(0)), 3);
        assert_eq!(list.first(), Some(top));
        let popped: Vec<u32> = std::iter::from_fn(|| list.pop_first())
            .map(|x| x.value())
            .collect();
        assert_eq!(popped, vec![SeqNumber::MAX - 1, SeqNumber::MAX, 0, 1, 2]);
        assert!(list.is_empty());
    }

    #[test]
    fn send_list_ack_across_the_wrap() {
        let mut list = LossList::new(1000);
        list.insert(s(SeqNumber::MAX - 5), s(SeqNumber::MAX - 3));
        list.insert(s(SeqNumber::MAX - 1), s(4));
        list.insert(s(8), s(9));
        assert_eq!(list.len(), 3 + 7 + 2);
        // An ACK before everything changes nothing.
        list.remove_before(s(SeqNumber::MAX - 10));
        assert_eq!(list.len(), 12);
        // An ACK of 2 keeps 2..=4 and 8..=9.
        list.remove_before(s(2));
        assert_eq!(
            list.ranges().collect::<Vec<_>>(),
            vec![(s(2), s(4)), (s(8), s(9))]
        );
        assert_eq!(list.len(), 5);
        // An ACK past everything empties the list.
        list.remove_before(s(100));
        assert!(list.is_empty());
        assert_eq!(list.first(), None);
    }

    #[test]
    fn recv_list_remove_splits_ranges() {
        let mut list = LossList::new(1000);
        let base = s(SeqNumber::MAX - 2);
        // Gap detection appends after the last range.
        assert_eq!(list.insert(base, base.add(5)), 6);
        assert_eq!(list.insert(base.add(10), base.add(10)), 1);
        assert!(list.remove(base.add(2)));
        assert!(!list.remove(base.add(2)));
        assert!(!list.contains(base.add(2)));
        assert!(list.contains(base.add(3)));
        assert_eq!(
            list.ranges().collect::<Vec<_>>(),
            vec![
                (base, base.add(1)),
                (base.add(3), base.add(5)),
                (base.add(10), base.add(10))
            ]
        );
        assert!(list.remove(base));
        assert_eq!(list.first(), Some(base.add(1)));
        assert_eq!(list.len(), 1 + 3 + 1);
        // A drop request straddling two ranges.
        assert_eq!(list.remove_range(base.add(4), base.add(20)), 3);
        assert_eq!(
            list.ranges().collect::<Vec<_>>(),
            vec![(base.add(1), base.add(1)), (base.add(3), base.add(3))]
        );
        assert!(!list.contains(base.sub(1)));
        assert!(!list.contains(base.add(1000)));
    }

    #[test]
    fn ranges_within_clips_to_the_query_across_the_wrap() {
        let base = s(SeqNumber::MAX - 2);
        let mut list = LossList::new(1000);
        list.insert(base, base.add(1));
        list.insert(base.add(3), base.add(6));
        list.insert(base.add(10), base.add(10));
        let within = |a: u32, b: u32| {
            list.ranges_within(base.add(a), base.add(b))
                .collect::<Vec<_>>()
        };
        assert_eq!(
            within(1, 4),
            vec![(base.add(1), base.add(1)), (base.add(3), base.add(4))]
        );
        assert_eq!(
            within(5, 10),
            vec![(base.add(5), base.add(6)), (base.add(10), base.add(10))]
        );
        assert!(within(7, 9).is_empty());
        assert!(within(4, 3).is_empty(), "a reversed query is empty");
        assert!(list
            .ranges_within(base.sub(5), base.sub(1))
            .next()
            .is_none());
    }

    #[test]
    fn clipping_keeps_existing_entries_and_lower_numbers() {
        let mut list = LossList::new(10);
        assert_eq!(list.insert(s(100), s(104)), 5);
        // Beyond the span: only 105..=109 fit.
        assert_eq!(list.insert(s(103), s(200)), 5);
        assert_eq!(list.ranges().collect::<Vec<_>>(), vec![(s(100), s(109))]);
        // Before the list: nothing fits, since 109 must stay within reach.
        assert_eq!(list.insert(s(90), s(99)), 0);
        list.remove_before(s(105));
        // Now 100..=104 fit again in front of 105..=109.
        assert_eq!(list.insert(s(90), s(104)), 5);
        assert_eq!(list.ranges().collect::<Vec<_>>(), vec![(s(100), s(109))]);
        // A fresh list clips a wide first range at its start.
        let mut fresh = LossList::new(10);
        assert_eq!(fresh.insert(s(SeqNumber::MAX - 3), s(50)), 10);
        assert_eq!(
            fresh.ranges().collect::<Vec<_>>(),
            vec![(s(SeqNumber::MAX - 3), s(5))]
        );
    }

    #[test]
    fn capacity_is_clamped_to_half_the_space() {
        assert_eq!(LossList::new(u32::MAX).capacity(), 1 << 30);
        assert_eq!(LossList::new(5).capacity(), 5);
    }

    #[test]
    fn range_wider_than_half_the_space_is_reversed() {
        // last - first = 2^30 reads as -2^30: the range is reversed, so empty.
        let mut list = LossList::new(u32::MAX);
        assert_eq!(list.insert(s(7), s(7).add(1 << 30)), 0);
        assert!(list.is_empty());
        // 2^30 numbers exactly is the widest accepted range.
        assert_eq!(list.insert(s(7), s(7).add((1 << 30) - 1)), 1 << 30);
        assert_eq!(list.len(), 1 << 30);
    }

    /// Forged huge ranges: every operation must cost O(log n + ranges
    /// touched). Were anything proportional to the range width, this test
    /// would take hours instead of milliseconds; we also check that the range
    /// count stays small, which is what bounds the work.
    #[test]
    fn forged_huge_ranges_are_cheap() {
        let mut rng = Rng::new(0xF0_12CE);
        let huge = (1u32 << 30) - 1;
        let mut recv = LossList::new(u32::MAX);
        let mut send = LossList::new(u32::MAX);
        for round in 0..2000u32 {
            let start = s(rng.next_u32());
            let half = 1 + rng.below(u64::from(huge)) as u32;
            let ctx = format!("round={round} start={start:?} half={half}");

            recv.clear();
            assert_eq!(recv.insert(start, start.add(huge)), 1 << 30, "{ctx}");
            // Forged drop request in the middle: splits into two ranges.
            let cut = start.add(half / 2);
            let removed = recv.remove_range(cut, cut.add(huge / 4));
            assert!(removed > 0, "{ctx}");
            assert!(recv.ranges().count() <= 2, "{ctx}");
            assert_eq!(recv.len(), (1 << 30) - removed, "{ctx}");
            // Put it all back, then wipe it with one huge removal.
            assert_eq!(recv.insert(start, start.add(huge)), removed, "{ctx}");
            assert_eq!(recv.ranges().count(), 1, "{ctx}");
            assert_eq!(recv.remove_range(start, start.add(huge)), 1 << 30, "{ctx}");
            assert!(recv.is_empty(), "{ctx}");

            // The sender: a huge NAK range, then a huge ACK jump.
            send.insert(start, start.add(huge));
            send.remove_before(start.add(half));
            assert_eq!(send.len(), (1 << 30) - half, "{ctx}");
            assert_eq!(send.first(), Some(start.add(half)), "{ctx}");
            send.remove_before(start.add(huge).next());
            assert!(send.is_empty(), "{ctx}");
        }
    }

    #[test]
    fn many_ranges_then_one_huge_removal() {
        // Every other number missing: the worst case for the range count.
        let mut list = LossList::new(1 << 20);
        let base = s(SeqNumber::MAX - 5000);
        for k in 0..5000u32 {
            assert_eq!(list.insert(base.add(2 * k), base.add(2 * k)), 1);
        }
        assert_eq!(list.ranges().count(), 5000);
        // Touching every range once is the cost of this removal.
        let (from, to) = (base.sub(1 << 29), base.add((1 << 29) - 1));
        assert_eq!(list.remove_range(from, to), 5000);
        assert!(list.is_empty());
        assert_eq!(list.ranges().count(), 0);
    }

    #[test]
    fn grow_admits_a_wider_span() {
        let mut l = LossList::new(10);
        assert_eq!(l.insert(SeqNumber::new(100), SeqNumber::new(100)), 1);
        // 100..=120 spans 21 numbers: beyond the capacity, refused.
        assert_eq!(l.insert(SeqNumber::new(120), SeqNumber::new(120)), 0);
        l.grow(5);
        assert_eq!(l.capacity(), 10);
        l.grow(32);
        assert_eq!(l.insert(SeqNumber::new(120), SeqNumber::new(120)), 1);
        assert_eq!(l.len(), 2);
        l.grow(u32::MAX);
        assert_eq!(l.capacity(), 1 << 30);
    }
}
