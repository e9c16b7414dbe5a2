//! The simulator's queue of endpoint wakeups: an indexed min-heap holding at
//! most one deadline per node, so a node re-reporting its wakeup after every
//! call costs O(log nodes) and leaves no stale entries behind.

use std::time::Instant;

/// Deadlines keyed by node index; ties go to the lower index.
#[derive(Debug, Default)]
pub(crate) struct WakeupQueue {
    /// Binary min-heap of (deadline, node).
    heap: Vec<(Instant, usize)>,
    /// `pos[node]` = the node's slot in `heap`.
    pos: Vec<Option<usize>>,
}

impl WakeupQueue {
    /// Makes room for node indices below `n`.
    pub(crate) fn grow_to(&mut self, n: usize) {
        if self.pos.len() < n {
            self.pos.resize(n, None);
            self.heap.reserve(n - self.heap.len());
        }
    }

    /// Sets (`Some`) or clears (`None`) the deadline of `node`.
    pub(crate) fn set(&mut self, node: usize, at: Option<Instant>) {
        self.grow_to(node + 1);
        match (self.pos[node], at) {
            (None, None) => {}
            (None, Some(t)) => {
                self.heap.push((t, node));
                let i = self.heap.len() - 1;
                self.pos[node] = Some(i);
                self.sift_up(i);
            }
            (Some(i), Some(t)) => {
                let old = self.heap[i].0;
                self.heap[i].0 = t;
                if t < old {
                    self.sift_up(i);
                } else {
                    self.sift_down(i);
                }
            }
            (Some(i), None) => self.remove_at(i),
        }
    }

    /// The earliest deadline and its node.
    pub(crate) fn peek(&self) -> Option<(Instant, usize)> {
        self.heap.first().copied()
    }

    /// Removes and returns the earliest entry if it is due by `now`.
    pub(crate) fn pop_due(&mut self, now: Instant) -> Option<usize> {
        let &(t, node) = self.heap.first()?;
        if t > now {
            return None;
        }
        self.remove_at(0);
        Some(node)
    }

    fn remove_at(&mut self, i: usize) {
        let last = self.heap.len() - 1;
        self.swap(i, last);
        if let Some((_, node)) = self.heap.pop() {
            self.pos[node] = None;
        }
        if i < self.heap.len() {
            self.sift_down(i);
            self.sift_up(i);
        }
    }

    fn swap(&mut self, a: usize, b: usize) {
        self.heap.swap(a, b);
        self.pos[self.heap[a].1] = Some(a);
        self.pos[self.heap[b].1] = Some(b);
    }

    fn sift_up(&mut self, mut i: usize) {
        while i > 0 {
            let parent = (i - 1) / 2;
            if self.heap[i] >= self.heap[parent] {
                break;
            }
            self.swap(i, parent);
            i = parent;
        }
    }

    fn sift_down(&mut self, mut i: usize) {
        loop {
            let (l, r) = (2 * i + 1, 2 * i + 2);
            let mut min = i;
            if l < self.heap.len() && self.heap[l] < self.heap[min] {
                min = l;
            }
            if r < self.heap.len() && self.heap[r] < self.heap[min] {
                min = r;
            }
            if min == i {
                break;
            }
            self.swap(i, min);
            i = min;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::rng::Rng;
    use std::time::Duration;

    #[test]
    #[allow(clippy::disallowed_methods)] // the test needs one real Instant as an epoch
    fn matches_a_naive_model() {
        let t0 = Instant::now();
        for seed in 0..20u64 {
            let mut rng = Rng::new(seed);
            let mut q = WakeupQueue::default();
            let mut model: Vec<Option<Instant>> = vec![None; 16];
            for step in 0..2000 {
                let now = t0 + Duration::from_micros(rng.below(1000));
                match rng.below(3) {
                    0 | 1 => {
                        let node = rng.below(16) as usize;
                        let at = if rng.chance(0.2) {
                            None
                        } else {
                            Some(t0 + Duration::from_micros(rng.below(1000)))
                        };
                        q.set(node, at);
                        model[node] = at;
                    }
                    _ => {
                        let expected = model
                            .iter()
                            .enumerate()
                            .filter_map(|(n, t)| t.map(|t| (t, n)))
                            .min()
                            .filter(|&(t, _)| t <= now)
                            .map(|(_, n)| n);
                        let got = q.pop_due(now);
                        assert_eq!(got, expected, "seed={seed} step={step}");
                        if let Some(n) = got {
                            model[n] = None;
                        }
                    }
                }
                let expected_head = model
                    .iter()
                    .enumerate()
                    .filter_map(|(n, t)| t.map(|t| (t, n)))
                    .min();
                assert_eq!(q.peek(), expected_head, "seed={seed} step={step}");
            }
        }
    }
}
