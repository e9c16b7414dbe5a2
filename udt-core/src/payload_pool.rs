//! Payload storage shared by the send and receive buffers: fixed-size
//! payload slots allocated lazily in chunks and recycled through a free list.
//!
//! Why a pool instead of one `Vec<u8>` per packet: a steady-state data path
//! must not allocate per packet, and an idle connection should hold no
//! payload memory. UDT4 gets the same effect from `CSndBuffer::increase` and
//! `CUnitQueue::increase` (32-packet chunks, udt4-protocol.md §13). Unlike
//! UDT4 we never walk existing units when growing: a new chunk only pushes
//! its indices onto the free list.
//!
//! Slots are named by a `u32` index that stays valid until it is released,
//! so the buffers' ring metadata can be reordered or grown without moving
//! any payload bytes.

/// How many payload slots one allocation adds (UDT4 grows its buffers by 32).
pub(crate) const CHUNK_SLOTS: u32 = 32;

/// A pool of at most `limit` payload slots of `payload_size` bytes each.
#[derive(Debug)]
pub(crate) struct PayloadPool {
    payload_size: usize,
    limit: u32,
    /// Chunk `i` holds slots `[i * CHUNK_SLOTS, (i + 1) * CHUNK_SLOTS)`; the
    /// last chunk may be shorter so that we never exceed `limit`.
    chunks: Vec<Box<[u8]>>,
    /// Released slot indices, reused last-in first-out (warm in cache).
    free: Vec<u32>,
    /// Slots created so far (`<= limit`).
    allocated: u32,
}

impl PayloadPool {
    /// An empty pool: no memory is allocated until the first [`alloc`](Self::alloc).
    pub(crate) fn new(payload_size: usize, limit: u32) -> Self {
        PayloadPool {
            payload_size,
            limit,
            chunks: Vec::new(),
            free: Vec::new(),
            allocated: 0,
        }
    }

    /// Raises the most slots the pool may create to `limit` (never lowers
    /// it): a buffer that grows with the bandwidth-delay product.
    pub(crate) fn raise_limit(&mut self, limit: u32) {
        if limit <= self.limit {
            return;
        }
        self.limit = limit;
        // Slot `i` lives in chunk `i / CHUNK_SLOTS`, so only the last chunk
        // may be short. One cut at the old limit must be completed (as far
        // as the new limit allows) before another chunk follows it.
        let short = self.allocated % CHUNK_SLOTS;
        if short == 0 {
            return;
        }
        let count = (CHUNK_SLOTS - short).min(limit - self.allocated);
        let Some(last) = self.chunks.last_mut() else {
            return;
        };
        let mut bigger = vec![0u8; (short + count) as usize * self.payload_size];
        if let Some(dst) = bigger.get_mut(..last.len()) {
            dst.copy_from_slice(last);
        }
        *last = bigger.into_boxed_slice();
        let first = self.allocated;
        self.allocated += count;
        self.free
            .reserve_exact((self.allocated as usize).saturating_sub(self.free.len()));
        self.free.extend((first..first + count).rev());
    }

    /// Bytes per slot.
    pub(crate) fn payload_size(&self) -> usize {
        self.payload_size
    }

    /// Slots created so far (in use or free).
    #[cfg(test)]
    pub(crate) fn allocated(&self) -> u32 {
        self.allocated
    }

    /// Slots currently handed out.
    #[cfg(test)]
    pub(crate) fn in_use(&self) -> u32 {
        self.allocated - self.free.len() as u32
    }

    /// Takes a free slot, growing the pool by one chunk when none is free.
    /// `None` only when all `limit` slots are in use.
    pub(crate) fn alloc(&mut self) -> Option<u32> {
        if let Some(idx) = self.free.pop() {
            return Some(idx);
        }
        if self.allocated >= self.limit {
            return None;
        }
        let count = CHUNK_SLOTS.min(self.limit - self.allocated);
        let bytes = self.payload_size.saturating_mul(count as usize);
        self.chunks.push(vec![0u8; bytes].into_boxed_slice());
        let first = self.allocated;
        self.allocated += count;
        // Reserve for the whole pool now so that releasing never reallocates
        // the free list on the per-packet path; amortised, so a pool
        // growing chunk by chunk to a new peak reallocates it a few times,
        // not once per chunk.
        self.free
            .reserve((self.allocated as usize).saturating_sub(self.free.len()));
        // Hand out `first`; keep the rest, lowest index on top of the stack.
        self.free.extend((first + 1..first + count).rev());
        Some(first)
    }

    /// Bytes of payload memory the pool holds (in use or free).
    pub(crate) fn capacity_bytes(&self) -> usize {
        self.chunks.iter().map(|c| c.len()).sum()
    }

    /// Gives all memory back when no slot is in use (a connection gone
    /// quiet after a burst). Returns whether it did. Never on the
    /// per-packet path: a pool that empties between packets would
    /// reallocate constantly.
    pub(crate) fn trim(&mut self) -> bool {
        if self.allocated == 0 || self.free.len() != self.allocated as usize {
            return false;
        }
        self.chunks = Vec::new();
        self.free = Vec::new();
        self.allocated = 0;
        true
    }

    /// Returns a slot to the pool. Releasing an index twice is a bug in the
    /// caller; it is ignored in release builds rather than corrupting memory.
    pub(crate) fn release(&mut self, idx: u32) {
        debug_assert!(idx < self.allocated, "slot {idx} was never allocated");
        if idx < self.allocated {
            self.free.push(idx);
        }
    }

    /// The first `len` bytes of slot `idx` (clamped to the slot size). Returns
    /// an empty slice for an index that does not exist, so a broken internal
    /// invariant can never become a panic on the data path.
    pub(crate) fn bytes(&self, idx: u32, len: usize) -> &[u8] {
        let (chunk, start) = self.locate(idx);
        let len = len.min(self.payload_size);
        self.chunks
            .get(chunk)
            .and_then(|c| c.get(start..start + len))
            .unwrap_or(&[])
    }

    /// All `payload_size` bytes of slot `idx`, for writing. Empty for an
    /// index that does not exist.
    pub(crate) fn bytes_mut(&mut self, idx: u32) -> &mut [u8] {
        let (chunk, start) = self.locate(idx);
        let size = self.payload_size;
        match self.chunks.get_mut(chunk) {
            Some(c) => c.get_mut(start..start + size).unwrap_or(&mut []),
            None => &mut [],
        }
    }

    /// Copies `data` (at most one slot's worth) into slot `idx` and returns
    /// how many bytes were stored.
    pub(crate) fn store(&mut self, idx: u32, data: &[u8]) -> usize {
        let dst = self.bytes_mut(idx);
        let n = data.len().min(dst.len());
        if let (Some(d), Some(s)) = (dst.get_mut(..n), data.get(..n)) {
            d.copy_from_slice(s);
        }
        n
    }

    fn locate(&self, idx: u32) -> (usize, usize) {
        let chunk = (idx / CHUNK_SLOTS) as usize;
        let start = (idx % CHUNK_SLOTS) as usize * self.payload_size;
        (chunk, start)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn grows_by_chunks_never_beyond_limit_and_recycles() {
        let mut p = PayloadPool::new(4, 40);
        assert_eq!(p.allocated(), 0, "a fresh pool holds no memory");
        let mut taken = Vec::new();
        for i in 0..40u32 {
            let idx = p.alloc().unwrap();
            assert_eq!(p.store(idx, &i.to_be_bytes()), 4);
            taken.push(idx);
        }
        assert_eq!(p.allocated(), 40);
        assert!(p.alloc().is_none());
        for (i, &idx) in taken.iter().enumerate() {
            assert_eq!(p.bytes(idx, 4), (i as u32).to_be_bytes());
        }
        p.release(taken[7]);
        assert_eq!(p.alloc(), Some(taken[7]));
        assert_eq!(p.allocated(), 40);
    }

    #[test]
    fn out_of_range_indices_never_panic() {
        let mut p = PayloadPool::new(8, 8);
        assert!(p.bytes(1000, 8).is_empty());
        assert!(p.bytes_mut(1000).is_empty());
        assert_eq!(p.store(1000, b"abc"), 0);
        let idx = p.alloc().unwrap();
        assert_eq!(p.store(idx, b"0123456789"), 8, "stores at most one slot");
        assert_eq!(p.bytes(idx, 100), b"01234567");
    }

    #[test]
    fn raising_the_limit_completes_a_short_last_chunk() {
        // A limit of 40 leaves the second chunk 8 slots long; raising it
        // must not let slot 40 land past the end of that chunk.
        let mut p = PayloadPool::new(4, 40);
        let mut taken: Vec<u32> = (0..40).map(|_| p.alloc().expect("slot")).collect();
        for (i, &idx) in taken.iter().enumerate() {
            p.store(idx, &[i as u8; 4]);
        }
        assert_eq!(p.alloc(), None);
        p.raise_limit(30);
        assert_eq!(p.alloc(), None, "lowering does nothing");
        p.raise_limit(45);
        p.raise_limit(100);
        while let Some(idx) = p.alloc() {
            taken.push(idx);
        }
        assert_eq!(taken.len(), 100);
        assert_eq!(p.allocated(), 100);
        for (i, &idx) in taken.iter().enumerate() {
            if i >= 40 {
                assert_eq!(p.store(idx, &[i as u8; 4]), 4, "slot {idx} has room");
            }
        }
        // The first 40 kept their bytes through the reallocation.
        for (i, &idx) in taken.iter().enumerate() {
            assert_eq!(p.bytes(idx, 4), &[i as u8; 4], "slot {idx}");
        }
    }

    #[test]
    fn trims_only_when_nothing_is_in_use() {
        let mut p = PayloadPool::new(4, 100);
        let a = p.alloc().unwrap();
        let b = p.alloc().unwrap();
        assert_eq!(p.capacity_bytes(), 4 * CHUNK_SLOTS as usize);
        p.release(a);
        assert!(!p.trim(), "slot b is still in use");
        assert_eq!(p.allocated(), CHUNK_SLOTS);
        p.release(b);
        assert!(p.trim());
        assert_eq!((p.allocated(), p.capacity_bytes(), p.in_use()), (0, 0, 0));
        assert!(!p.trim(), "nothing left to trim");
        // It grows again from scratch.
        let c = p.alloc().unwrap();
        assert_eq!(c, 0);
        p.store(c, b"wxyz");
        assert_eq!(p.bytes(c, 4), b"wxyz");
    }
}
