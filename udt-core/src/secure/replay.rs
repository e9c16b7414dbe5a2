//! The receive-side replay window over the per-packet counters (the
//! sliding bitmap of RFC 6479, as WireGuard and QUIC keep one).
//!
//! Each sealed packet carries the sender's 64-bit transmission counter,
//! which never repeats within one direction of one connection. A counter
//! seen before, or one so far behind the highest seen that the window has
//! forgotten it, is a replay (or a duplicate the network made) and is
//! dropped. Only counters of packets that passed authentication are
//! recorded, so a forger cannot move the window.

/// How many counters behind the highest one are still accepted once. A
/// multiple of 64; 4096 covers any reordering the UDT sender's loss
/// detection tolerates at full rate.
pub const WINDOW: u64 = 4096;

const WORDS: usize = (WINDOW / 64) as usize;

/// A sliding window of the counters already received.
#[derive(Clone, Debug)]
pub struct ReplayWindow {
    /// The highest counter accepted so far plus one (0: none yet).
    next: u64,
    /// Bit `c % WINDOW` is set when counter `c` (within the window) was seen.
    bits: [u64; WORDS],
}

impl Default for ReplayWindow {
    fn default() -> Self {
        ReplayWindow {
            next: 0,
            bits: [0; WORDS],
        }
    }
}

impl ReplayWindow {
    /// A window that has seen nothing.
    pub fn new() -> Self {
        Self::default()
    }

    /// True when `counter` may be new: not seen and not too old. Does not
    /// record it: call [`accept`](Self::accept) once the packet has
    /// authenticated.
    pub fn check(&self, counter: u64) -> bool {
        if counter >= self.next {
            return true;
        }
        if self.next - counter > WINDOW {
            return false;
        }
        !self.bit(counter)
    }

    /// Records `counter` as received; returns false (and changes nothing)
    /// when [`check`](Self::check) would have refused it.
    pub fn accept(&mut self, counter: u64) -> bool {
        if !self.check(counter) {
            return false;
        }
        if counter >= self.next {
            // Clear the bits of the counters the window slides over.
            let advance = counter - self.next + 1;
            if advance >= WINDOW {
                self.bits = [0; WORDS];
            } else {
                for c in self.next..=counter {
                    self.clear(c);
                }
            }
            self.next = counter + 1;
        }
        self.set(counter);
        true
    }

    /// The oldest counter [`check`](Self::check) may still accept: every
    /// counter below it is refused as too old.
    pub fn oldest(&self) -> u64 {
        self.next.saturating_sub(WINDOW)
    }

    fn index(counter: u64) -> (usize, u64) {
        let slot = counter % WINDOW;
        ((slot / 64) as usize, 1u64 << (slot % 64))
    }

    fn bit(&self, counter: u64) -> bool {
        let (w, m) = Self::index(counter);
        self.bits.get(w).is_some_and(|word| word & m != 0)
    }

    fn set(&mut self, counter: u64) {
        let (w, m) = Self::index(counter);
        if let Some(word) = self.bits.get_mut(w) {
            *word |= m;
        }
    }

    fn clear(&mut self, counter: u64) {
        let (w, m) = Self::index(counter);
        if let Some(word) = self.bits.get_mut(w) {
            *word &= !m;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_counter_once() {
        let mut w = ReplayWindow::new();
        assert_eq!(w.oldest(), 0);
        for c in [0, 1, 2, 5, 3] {
            assert!(w.accept(c), "{c}");
        }
        for c in [0, 1, 2, 3, 5] {
            assert!(!w.check(c), "{c}");
            assert!(!w.accept(c), "{c}");
        }
        assert!(w.check(4));
        assert!(w.accept(4));
        assert!(!w.accept(4));
    }

    #[test]
    fn too_old_is_refused_and_the_window_slides() {
        let mut w = ReplayWindow::new();
        assert!(w.accept(10));
        assert!(w.accept(10 + WINDOW));
        // 10 is exactly WINDOW behind the next expected: forgotten.
        assert!(!w.check(10));
        assert!(!w.check(9));
        // 11 is the oldest still in the window and was never seen.
        assert_eq!(w.oldest(), 11);
        assert!(w.check(11));
        assert!(w.accept(11));
        assert!(!w.accept(11));
        // A jump beyond the window clears it; bits from before do not
        // leak into the new positions.
        assert!(w.accept(10 + 3 * WINDOW));
        assert!(w.check(11 + 2 * WINDOW));
        assert!(!w.check(10 + 3 * WINDOW));
    }

    #[test]
    fn slot_reuse_after_slide_is_clean() {
        let mut w = ReplayWindow::new();
        for c in 0..WINDOW {
            assert!(w.accept(c));
        }
        // Counter WINDOW reuses counter 0's slot: it must read as unseen.
        assert!(w.check(WINDOW));
        assert!(w.accept(WINDOW));
        assert!(!w.check(WINDOW));
        assert!(!w.check(0));
        assert!(!w.check(1), "1 is still inside the window and was seen");
    }
}
