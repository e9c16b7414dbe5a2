//! The signals of a listener's accept queue. The queue itself is the core
//! endpoint's (behind the registry lock); this is how `accept` waits on it
//! and how pollers hear of it.

use std::sync::atomic::{AtomicBool, Ordering};

use parking_lot::Condvar;

use crate::watch::Watchers;

/// Shared by the receive thread (which fills the queue) and the listener
/// handle (which empties it). The condition variable is used with the
/// registry's mutex, which guards the queue.
#[derive(Debug, Default)]
pub(crate) struct AcceptSignal {
    /// Notified when a connection is queued or the listener closes.
    pub(crate) cond: Condvar,
    pub(crate) watchers: Watchers,
    /// A connection waits, or the listener closed: `accept` would not block.
    /// Updated under the registry lock, read without it by pollers.
    ready: AtomicBool,
    pub(crate) nonblocking: AtomicBool,
}

impl AcceptSignal {
    /// Records whether `accept` would block now, and wakes waiters and
    /// pollers when it would not.
    pub(crate) fn set_ready(&self, ready: bool) {
        self.ready.store(ready, Ordering::Release);
        if ready {
            self.cond.notify_all();
            self.watchers.notify();
        }
    }

    /// True when `accept` would not block.
    pub(crate) fn is_ready(&self) -> bool {
        self.ready.load(Ordering::Acquire)
    }

    pub(crate) fn is_nonblocking(&self) -> bool {
        self.nonblocking.load(Ordering::Relaxed)
    }
}
