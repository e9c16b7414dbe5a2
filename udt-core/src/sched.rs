//! The send schedule: an indexed min-heap of connections keyed by the time
//! each may send its next data packet (UDT4 `CSndUList`).
//!
//! The driver (udt-mux's timer thread, or the simulator's node) keeps one
//! [`SendSchedule`]. It peeks at the earliest entry, waits until it is due,
//! pops it with [`SendSchedule::pop_due`], lets that connection transmit, and
//! puts it back with the connection's new `next_send_time()`
//! (udt4-protocol.md §6.1 item 5; style.md §C). Every operation is O(log n):
//! a position index per handle (UDT4 `m_iHeapLoc`) lets an entry be moved or
//! removed without searching the heap.

use std::time::Instant;

/// Identifies a connection to a driver: a dense small integer the driver
/// chooses (slot numbers in its connection table). Never taken from the
/// network.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ConnectionHandle(pub u32);

impl ConnectionHandle {
    /// The handle as an index into a table of connections.
    pub fn index(self) -> usize {
        self.0 as usize
    }
}

/// An indexed binary min-heap mapping each [`ConnectionHandle`] to at most
/// one scheduled send time.
///
/// Entries are ordered by `(time, handle)`, so equal times come out in
/// increasing handle order and the order is fully deterministic.
///
/// Memory: the heap holds one entry per scheduled connection; the position
/// table has one slot per handle value up to the largest handle ever
/// scheduled, which is why handles must be dense. Neither shrinks, so once
/// they have grown to the driver's high-water mark no operation allocates.
#[derive(Clone, Debug, Default)]
pub struct SendSchedule {
    /// The binary heap, smallest `(time, handle)` at index 0.
    heap: Vec<(Instant, ConnectionHandle)>,
    /// `pos[h]` is the heap index of handle `h`, or `None` when unscheduled.
    pos: Vec<Option<u32>>,
}

impl SendSchedule {
    /// Creates an empty schedule.
    pub fn new() -> Self {
        Self::default()
    }

    /// Creates an empty schedule with room for handles `0..handles` without
    /// reallocating.
    pub fn with_capacity(handles: usize) -> Self {
        SendSchedule {
            heap: Vec::with_capacity(handles),
            pos: Vec::with_capacity(handles),
        }
    }

    /// Schedules `handle` at `at`, moving it earlier or later if it is
    /// already scheduled, or unschedules it when `at` is `None`.
    pub fn set(&mut self, handle: ConnectionHandle, at: Option<Instant>) {
        let Some(at) = at else {
            self.remove(handle);
            return;
        };
        match self.position(handle) {
            Some(i) => {
                let old = self.heap[i];
                self.heap[i].0 = at;
                if (at, handle) < old {
                    self.sift_up(i);
                } else {
                    self.sift_down(i);
                }
            }
            None => {
                if self.pos.len() <= handle.index() {
                    self.pos.resize(handle.index() + 1, None);
                }
                let i = self.heap.len();
                self.heap.push((at, handle));
                self.set_position(i);
                self.sift_up(i);
            }
        }
    }

    /// The time `handle` is scheduled at, if it is scheduled.
    pub fn get(&self, handle: ConnectionHandle) -> Option<Instant> {
        self.position(handle).map(|i| self.heap[i].0)
    }

    /// The earliest entry; among equal times, the smallest handle.
    pub fn peek(&self) -> Option<(ConnectionHandle, Instant)> {
        self.heap.first().map(|&(at, handle)| (handle, at))
    }

    /// Removes and returns the earliest handle if it is due (scheduled at or
    /// before `now`); returns `None`, changing nothing, otherwise.
    pub fn pop_due(&mut self, now: Instant) -> Option<ConnectionHandle> {
        let &(at, handle) = self.heap.first()?;
        if at > now {
            return None;
        }
        self.remove(handle);
        Some(handle)
    }

    /// Unschedules `handle`; returns whether it was scheduled.
    pub fn remove(&mut self, handle: ConnectionHandle) -> bool {
        let Some(i) = self.position(handle) else {
            return false;
        };
        self.pos[handle.index()] = None;
        self.heap.swap_remove(i);
        if i < self.heap.len() {
            // The former last entry now sits at `i`: it may belong above or
            // below, depending on what it replaced.
            self.set_position(i);
            let moved_up = self.sift_up(i);
            if !moved_up {
                self.sift_down(i);
            }
        }
        true
    }

    /// How many handles are scheduled.
    pub fn len(&self) -> usize {
        self.heap.len()
    }

    /// True when no handle is scheduled.
    pub fn is_empty(&self) -> bool {
        self.heap.is_empty()
    }

    /// The heap index of `handle`, if scheduled.
    fn position(&self, handle: ConnectionHandle) -> Option<usize> {
        self.pos
            .get(handle.index())
            .copied()
            .flatten()
            .map(|i| i as usize)
    }

    /// Records that the entry at heap index `i` lives there.
    fn set_position(&mut self, i: usize) {
        let handle = self.heap[i].1;
        // NOTE: every scheduled handle has a slot (grown in `set`), and a heap
        // never holds more entries than there are u32 handles.
        self.pos[handle.index()] = Some(i as u32);
    }

    /// Moves the entry at `i` up while it is smaller than its parent; returns
    /// whether it moved.
    fn sift_up(&mut self, mut i: usize) -> bool {
        let start = i;
        while i > 0 {
            let parent = (i - 1) / 2;
            if self.heap[i] >= self.heap[parent] {
                break;
            }
            self.heap.swap(i, parent);
            self.set_position(i);
            i = parent;
        }
        self.set_position(i);
        i != start
    }

    /// Moves the entry at `i` down while a child is smaller.
    fn sift_down(&mut self, mut i: usize) {
        let n = self.heap.len();
        loop {
            let left = 2 * i + 1;
            if left >= n {
                break;
            }
            let right = left + 1;
            let child = if right < n && self.heap[right] < self.heap[left] {
                right
            } else {
                left
            };
            if self.heap[child] >= self.heap[i] {
                break;
            }
            self.heap.swap(i, child);
            self.set_position(i);
            i = child;
        }
        self.set_position(i);
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;
    use crate::rng::Rng;

    use crate::time::test_epoch as epoch;

    fn h(n: u32) -> ConnectionHandle {
        ConnectionHandle(n)
    }

    /// Checks the heap property and that the index agrees with the heap.
    fn check(sched: &SendSchedule) {
        for (i, &(at, handle)) in sched.heap.iter().enumerate() {
            if i > 0 {
                let parent = sched.heap[(i - 1) / 2];
                assert!(parent <= (at, handle), "heap order broken at {i}");
            }
            assert_eq!(sched.pos[handle.index()], Some(i as u32), "stale index");
        }
        let indexed = sched.pos.iter().filter(|p| p.is_some()).count();
        assert_eq!(indexed, sched.heap.len(), "index holds extra handles");
    }

    #[test]
    fn orders_by_time_then_handle() {
        let t0 = epoch();
        let mut sched = SendSchedule::new();
        sched.set(h(5), Some(t0 + Duration::from_micros(30)));
        sched.set(h(2), Some(t0 + Duration::from_micros(10)));
        sched.set(h(9), Some(t0 + Duration::from_micros(10)));
        sched.set(h(0), Some(t0 + Duration::from_micros(20)));
        check(&sched);
        assert_eq!(sched.len(), 4);
        assert_eq!(sched.peek(), Some((h(2), t0 + Duration::from_micros(10))));
        let end = t0 + Duration::from_secs(1);
        let order: Vec<u32> = std::iter::from_fn(|| sched.pop_due(end))
            .map(|c| c.0)
            .collect();
        assert_eq!(order, vec![2, 9, 0, 5]);
        assert!(sched.is_empty());
    }

    #[test]
    fn pop_due_respects_now() {
        let t0 = epoch();
        let mut sched = SendSchedule::new();
        let at = t0 + Duration::from_millis(5);
        sched.set(h(1), Some(at));
        assert_eq!(sched.pop_due(t0), None);
        assert_eq!(sched.len(), 1);
        // Due exactly at its time.
        assert_eq!(sched.pop_due(at), Some(h(1)));
        assert_eq!(sched.pop_due(at), None);
        assert_eq!(sched.get(h(1)), None);
    }

    #[test]
    fn set_moves_and_none_removes() {
        let t0 = epoch();
        let ms = |n| t0 + Duration::from_millis(n);
        let mut sched = SendSchedule::new();
        for n in 0..8u32 {
            sched.set(h(n), Some(ms(u64::from(n) * 10)));
        }
        // Later: handle 0 goes to the back.
        sched.set(h(0), Some(ms(100)));
        check(&sched);
        assert_eq!(sched.peek(), Some((h(1), ms(10))));
        // Earlier: handle 7 goes to the front.
        sched.set(h(7), Some(ms(1)));
        check(&sched);
        assert_eq!(sched.peek(), Some((h(7), ms(1))));
        assert_eq!(sched.get(h(0)), Some(ms(100)));
        sched.set(h(7), None);
        check(&sched);
        assert_eq!(sched.get(h(7)), None);
        assert!(!sched.remove(h(7)));
        assert!(sched.remove(h(3)));
        assert!(!sched.remove(h(1000)));
        check(&sched);
        assert_eq!(sched.len(), 6);
    }

    /// Random operations against a naive list of (handle, time) pairs.
    #[test]
    fn model_random_ops() {
        let t0 = epoch();
        for seed in 1..=8u64 {
            let mut rng = Rng::new(seed);
            let mut sched = SendSchedule::new();
            let mut model: Vec<(ConnectionHandle, Instant)> = Vec::new();
            let handles = 1 + rng.below(64) as u32;
            let mut now = t0;
            for step in 0..5000 {
                let ctx = format!("seed={seed} step={step}");
                let handle = h(rng.below(u64::from(handles)) as u32);
                // Coarse times so that ties are frequent.
                let at = now + Duration::from_micros(rng.below(50) * 100);
                match rng.below(10) {
                    0..=4 => {
                        sched.set(handle, Some(at));
                        model.retain(|&(c, _)| c != handle);
                        model.push((handle, at));
                    }
                    5 => {
                        sched.set(handle, None);
                        model.retain(|&(c, _)| c != handle);
                    }
                    6 => {
                        let was = model.iter().any(|&(c, _)| c == handle);
                        model.retain(|&(c, _)| c != handle);
                        assert_eq!(sched.remove(handle), was, "{ctx} remove");
                    }
                    _ => {
                        now += Duration::from_micros(rng.below(1000));
                        let earliest = model.iter().map(|&(c, t)| (t, c)).min();
                        let want = earliest.filter(|&(t, _)| t <= now).map(|(_, c)| c);
                        model.retain(|&(c, _)| Some(c) != want);
                        assert_eq!(sched.pop_due(now), want, "{ctx} pop_due");
                    }
                }
                check(&sched);
                assert_eq!(sched.len(), model.len(), "{ctx} len");
                let earliest = model.iter().map(|&(c, t)| (t, c)).min();
                assert_eq!(sched.peek(), earliest.map(|(t, c)| (c, t)), "{ctx} peek");
                let probe = h(rng.below(u64::from(handles) + 2) as u32);
                let want = model.iter().find(|&&(c, _)| c == probe).map(|&(_, t)| t);
                assert_eq!(sched.get(probe), want, "{ctx} get");
            }
        }
    }

    #[test]
    fn sparse_handle_grows_index() {
        let t0 = epoch();
        let mut sched = SendSchedule::with_capacity(4);
        sched.set(h(4095), Some(t0));
        sched.set(h(3), Some(t0));
        check(&sched);
        assert_eq!(sched.pop_due(t0), Some(h(3)));
        assert_eq!(sched.pop_due(t0), Some(h(4095)));
        assert_eq!(sched.pop_due(t0), None);
    }
}
