//! Readiness watchers: how a connection or a listener tells whoever watches
//! it (a [`Poller`](crate::Poller)) that its readiness may have changed,
//! without naming the poller. The watched side holds weak references to
//! [`ReadyListener`]s; the poller implements the trait.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Weak};

use parking_lot::Mutex;

/// Something that wants to hear that a source's readiness may have changed.
pub(crate) trait ReadyListener: Send + Sync + std::fmt::Debug {
    /// The source registered under `token` may be ready now. Called with no
    /// lock of the source held.
    fn mark_ready(&self, token: usize);
}

/// The listeners interested in one connection or listener.
#[derive(Debug, Default)]
pub(crate) struct Watchers {
    /// Fast path: most connections have no poller.
    any: AtomicBool,
    list: Mutex<Vec<(Weak<dyn ReadyListener>, usize)>>,
}

impl Watchers {
    /// Adds a registration (replacing one of the same listener).
    pub(crate) fn add(&self, listener: &Arc<dyn ReadyListener>, token: usize) {
        let mut list = self.list.lock();
        let weak = Arc::downgrade(listener);
        list.retain(|(p, _)| p.strong_count() > 0 && !Weak::ptr_eq(p, &weak));
        list.push((weak, token));
        self.any.store(true, Ordering::Release);
    }

    /// Removes a listener's registration.
    pub(crate) fn remove(&self, listener: &Arc<dyn ReadyListener>) {
        let mut list = self.list.lock();
        let weak = Arc::downgrade(listener);
        list.retain(|(p, _)| p.strong_count() > 0 && !Weak::ptr_eq(p, &weak));
        self.any.store(!list.is_empty(), Ordering::Release);
    }

    /// Tells every listener that readiness may have changed. They are
    /// collected under the list lock and told after it is released (the
    /// list is a leaf lock).
    pub(crate) fn notify(&self) {
        if !self.any.load(Ordering::Acquire) {
            return;
        }
        // Nearly always one poller: a small inline array avoids allocating.
        const INLINE: usize = 4;
        let mut inline: [Option<(Arc<dyn ReadyListener>, usize)>; INLINE] = Default::default();
        let mut overflow = Vec::new();
        {
            let list = self.list.lock();
            for (i, (p, token)) in list.iter().enumerate() {
                if let Some(p) = p.upgrade() {
                    if i < INLINE {
                        inline[i] = Some((p, *token));
                    } else {
                        overflow.push((p, *token));
                    }
                }
            }
        }
        for (p, token) in inline.into_iter().flatten().chain(overflow) {
            p.mark_ready(token);
        }
    }
}
