//! The state one connection shares between its application handles and the
//! multiplexer threads: the core [`Socket`] behind one mutex, the condition
//! variable blocking calls wait on, the watchers to tell of readiness, and
//! the bookkeeping that says, after each core call, what the threads must
//! learn ([`ConnInner::settle`] and its two siblings).
//!
//! This layer computes *what* changed; each thread's own module decides how
//! to tell the others (`app.rs` for application threads, `send_queue.rs`,
//! `recv_queue.rs`). The rule everywhere: lock, call the core, settle,
//! unlock, and only then act on the result.

use std::io;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use parking_lot::{Condvar, Mutex};
use udt_core::connection::{Event, State};
use udt_core::endpoint::Socket;
use udt_core::sched::ConnectionHandle;
use udt_core::{Config, ConnectionError, SocketId};

use crate::notify::Notifier;
use crate::watch::Watchers;

/// The signals of the multiplexer a connection belongs to.
pub(crate) type Notify = Notifier<Arc<ConnShared>>;

/// What a settle found, acted on after the lock is released.
#[derive(Debug, Default)]
#[must_use]
pub(crate) struct Wake {
    /// The send-queue key changed: `(new key, generation)`.
    pub(crate) reschedule: Option<(Option<Instant>, u64)>,
    /// The receive thread must look at this connection (an earlier timer,
    /// or it may be removed).
    pub(crate) touch: bool,
    /// Application waiters and pollers must re-check.
    pub(crate) notify: bool,
    /// Only pollers must re-check: the connection's events can help none
    /// of the calls blocked on it (a close waiting for the last
    /// acknowledgement is not woken by every ACK before it).
    pub(crate) watch: bool,
    /// The only news for `notify` or `watch` is data in the middle of one
    /// of the peer's long writes (`Connection::take_reader_due` false): a
    /// receive thread may deliver it when its read pass ends rather than
    /// after the batch, so that a bulk reader takes more per wake-up.
    /// Everyone else delivers it at once.
    pub(crate) hold: bool,
    /// The receive thread's new timer key ([`ConnInner::settle_timers`] only).
    pub(crate) timer: Option<Instant>,
    /// The connection can be removed from the registry now.
    pub(crate) reapable: bool,
}

impl Wake {
    /// True when there is nothing to tell anyone (the receive thread's own
    /// `timer` and `reapable` results aside, which it reads directly).
    pub(crate) fn is_empty(&self) -> bool {
        self.reschedule.is_none() && !self.touch && !self.notify && !self.watch
    }
}

/// What a blocked application call waits for, so that a settle wakes only
/// the calls an event of the connection can help: with a thread per
/// connection, waking every blocked `close` on each of its ACKs cost a
/// tenth of the throughput of a thousand connections (docs/performance.md,
/// twelfth session).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum WaitFor {
    /// Something to read: data, a message, the end of the stream.
    Read,
    /// Room in the send buffer.
    Write,
    /// A change of state: the handshake over, every byte acknowledged, the
    /// connection closed. Such changes that come without a core event (the
    /// handshake's progress, the shutdown leaving) always wake.
    State,
}

/// Mutable per-connection state, behind [`ConnShared::inner`].
#[derive(Debug)]
pub(crate) struct ConnInner {
    /// The core socket: handshake, connection, or failure.
    pub(crate) phase: Socket,
    /// The latest `now` given to the core: time handed to it must not go
    /// backwards although several threads take their own clock readings.
    last_now: Instant,
    /// The send-queue key last reported to the send thread.
    send_key: Option<Instant>,
    /// The deadline this connection has in the receive thread's timer heap.
    timer_key: Option<Instant>,
    /// A `Touch` for this connection is queued for the receive thread.
    touch_queued: bool,
    /// A `Reschedule` for this connection is queued for the send thread,
    /// which reads the key afresh when it gets it: later key changes need
    /// no further message. With `touch_queued`, this bounds both command
    /// channels (see `notify.rs`).
    reschedule_queued: bool,
    /// Live application handles (streams, a waiting `connect`).
    pub(crate) handles: u32,
    /// Sitting in a listener's accept queue (owned by the queue).
    pub(crate) queued_for_accept: bool,
    /// The endpoint was aborted: every call fails.
    pub(crate) aborted: bool,
    pub(crate) nonblocking: bool,
    pub(crate) read_timeout: Option<Duration>,
    pub(crate) write_timeout: Option<Duration>,
    /// `shutdown(Read)` was called: reads return end of stream.
    pub(crate) read_shut: bool,
    /// The send thread took this finished connection's last packets (its
    /// shutdown) into a batch it has not yet handed to the kernel; `close`
    /// waits until this clears (set and cleared by the send thread, under
    /// this lock, followed by a notification).
    pub(crate) final_unsent: bool,
    /// Application calls blocked on the condition variable, by what they
    /// wait for (indexed by the [`WaitFor`] discriminant).
    waiting: [u32; 3],
}

impl ConnInner {
    /// Clamps a clock reading so the core never sees time go backwards.
    pub(crate) fn clock(&mut self, now: Instant) -> Instant {
        if now > self.last_now {
            self.last_now = now;
        }
        self.last_now
    }

    /// True once nothing needs this connection any more: no handle, not
    /// queued for accept (or it died there), and the core is finished (or
    /// the handshake failed).
    pub(crate) fn is_reapable(&self) -> bool {
        self.handles == 0
            && (!self.queued_for_accept || self.died_unaccepted())
            && self.phase.is_finished()
    }

    /// True for a connection that ended with an error while it waited in
    /// the accept queue: nobody can use it, and it must not hold a backlog
    /// place (issue 10 item 7). One the peer closed in order stays: its
    /// data is still for the application.
    fn died_unaccepted(&self) -> bool {
        self.phase.connection_ref().is_some_and(
            |c| matches!(c.state(), State::Closed(e) if e != ConnectionError::PeerClosed),
        )
    }

    /// Counts a call about to wait for `what` (until [`done_waiting`](Self::done_waiting)).
    pub(crate) fn start_waiting(&mut self, what: WaitFor) {
        self.waiting[what as usize] += 1;
    }

    /// Uncounts a call that stopped waiting for `what`.
    pub(crate) fn done_waiting(&mut self, what: WaitFor) {
        let n = &mut self.waiting[what as usize];
        *n = n.saturating_sub(1);
    }

    fn is_waiting(&self, what: WaitFor) -> bool {
        self.waiting[what as usize] > 0
    }

    /// After a core call on an application thread: what changed that the
    /// threads do not know yet.
    pub(crate) fn settle(&mut self, notify: &Notify) -> Wake {
        let mut wake = self.settle_common(notify, false);
        self.report_timer(&mut wake);
        wake
    }

    /// After the send thread drained the connection: it popped the
    /// connection from its heap, so it always needs the key back.
    pub(crate) fn settle_sent(&mut self, notify: &Notify) -> Wake {
        let mut wake = self.settle_common(notify, true);
        self.report_timer(&mut wake);
        wake
    }

    /// After the receive thread fed or timed the connection: it owns the
    /// timer heap, so it takes the new deadline itself.
    pub(crate) fn settle_timers(&mut self, notify: &Notify) -> Wake {
        let mut wake = self.settle_common(notify, false);
        let timer = self.phase.poll_timeout();
        self.timer_key = timer;
        self.touch_queued = false;
        wake.timer = timer;
        wake
    }

    /// Drains the core's events and compares the send-queue key with what
    /// the send thread knows.
    fn settle_common(&mut self, notify: &Notify, always_key: bool) -> Wake {
        let mut wake = Wake::default();
        if let Some(c) = self.phase.connection() {
            let (mut readable, mut writable, mut closed) = (false, false, false);
            while let Some(event) = c.poll_event() {
                match event {
                    Event::Readable => readable = true,
                    Event::Writable => writable = true,
                    Event::Closed(_) => closed = true,
                }
            }
            // Room helps a blocked write; a drained buffer also a `close`
            // or `wait_acknowledged`; the end helps everyone.
            let drained = writable && c.is_send_buffer_empty();
            // Data that ends none of the peer's writes may wait a moment:
            // with a thousand bulk flows each batch brings a packet or two
            // per connection, and waking a reader for each cost half the
            // throughput (docs/performance.md, fourteenth session).
            let due = readable && c.take_reader_due();
            // A blocked writer likewise waits for room worth a wake-up.
            let write_due = writable && c.writer_due();
            let reading = readable && self.is_waiting(WaitFor::Read);
            let helps_now = closed
                || (reading && due)
                || (write_due && self.is_waiting(WaitFor::Write))
                || (drained && self.is_waiting(WaitFor::State));
            if helps_now {
                wake.notify = true;
            } else if reading {
                wake.notify = true;
                wake.hold = true;
            } else if readable || write_due {
                // Pollers see writable only with room worth a write (the
                // poller's readiness is `writer_due` too).
                wake.watch = true;
                wake.hold = !write_due && !due;
            }
        }
        let next = self.phase.next_send_time();
        if always_key {
            // The send thread itself: it takes the key now, which answers
            // any `Reschedule` still queued.
            self.reschedule_queued = false;
            self.send_key = next;
            wake.reschedule = Some((next, notify.next_generation()));
        } else if next != self.send_key {
            self.send_key = next;
            if !self.reschedule_queued {
                self.reschedule_queued = true;
                wake.reschedule = Some((next, notify.next_generation()));
            }
        }
        wake.reapable = self.is_reapable();
        wake
    }

    /// A later timer deadline is harmless (the receive thread wakes early
    /// and finds nothing due); an earlier one, or a connection that may be
    /// removed, must be reported.
    fn report_timer(&mut self, wake: &mut Wake) {
        let timer = self.phase.poll_timeout();
        let earlier = match (timer, self.timer_key) {
            (Some(t), Some(k)) => t < k,
            (Some(_), None) => true,
            (None, _) => false,
        };
        if (earlier || wake.reapable) && !self.touch_queued {
            self.touch_queued = true;
            wake.touch = true;
        }
    }

    /// True when the send thread's view of the data deadline is current
    /// and empty (tests).
    #[cfg(test)]
    pub(crate) fn is_send_idle(&self) -> bool {
        self.send_key.is_none() && self.phase.next_send_time().is_none()
    }

    /// Makes the next settle see a changed data deadline (tests).
    #[cfg(test)]
    pub(crate) fn invalidate_send_key(&mut self) {
        self.send_key = Some(self.last_now);
        if self.phase.next_send_time() == self.send_key {
            self.send_key = None;
        }
    }

    /// True while a `Reschedule` waits for the send thread (tests).
    #[cfg(test)]
    pub(crate) fn is_reschedule_queued(&self) -> bool {
        self.reschedule_queued
    }

    /// True when the send thread knows the current data deadline (tests).
    #[cfg(test)]
    pub(crate) fn send_key_is_current(&self) -> bool {
        self.send_key == self.phase.next_send_time()
    }
}

/// One connection as the multiplexer and its handles share it.
#[derive(Debug)]
pub(crate) struct ConnShared {
    /// Index in the registry and in both heaps.
    pub(crate) handle: ConnectionHandle,
    pub(crate) socket_id: SocketId,
    /// The only address packets are accepted from.
    pub(crate) peer: SocketAddr,
    pub(crate) config: Arc<Config>,
    pub(crate) notify: Arc<Notify>,
    pub(crate) inner: Mutex<ConnInner>,
    /// Waited on (with `inner`) by blocking calls; notified when the core
    /// reports an event.
    pub(crate) cond: Condvar,
    pub(crate) watchers: Watchers,
    /// A wake-up a receive thread owes, delivered when its batch is
    /// flushed.
    pub(crate) batch_wake: OwedWake,
    /// A wake-up a receive thread owes for data in the middle of a long
    /// write ([`Wake::hold`]), delivered when its read pass ends.
    pub(crate) pass_wake: OwedWake,
}

/// A wake-up a receive thread owes a connection's waiters or pollers and
/// delivers later; the mark keeps the connection on the thread's list once.
#[derive(Debug, Default)]
pub(crate) struct OwedWake {
    queued: AtomicBool,
    /// For blocked calls too, not only for pollers ([`Wake::watch`]).
    waiters: AtomicBool,
}

impl OwedWake {
    /// Records the wake-up (`waiters`: for blocked calls too); true when
    /// the connection must be put on the list (it is not on one yet).
    pub(crate) fn owe(&self, waiters: bool) -> bool {
        if waiters {
            self.waiters.store(true, Ordering::Release);
        }
        !self.queued.swap(true, Ordering::AcqRel)
    }

    /// Clears the record for its delivery; true when blocked calls are to
    /// be woken too.
    pub(crate) fn take(&self) -> bool {
        self.queued.store(false, Ordering::Release);
        self.waiters.swap(false, Ordering::AcqRel)
    }
}

impl ConnShared {
    /// Shares a socket the core endpoint created under `handle`. `handles`
    /// counts the application handles that start with it (a waiting
    /// `connect`), `queued_for_accept` whether a listener queue owns it.
    pub(crate) fn new(
        notify: Arc<Notify>,
        handle: ConnectionHandle,
        socket: Socket,
        handles: u32,
        queued_for_accept: bool,
        now: Instant,
    ) -> Arc<ConnShared> {
        Arc::new(ConnShared {
            handle,
            socket_id: socket.socket_id(),
            peer: socket.peer_addr(),
            config: socket.config().clone(),
            notify,
            inner: Mutex::new(ConnInner {
                phase: socket,
                last_now: now,
                send_key: None,
                timer_key: None,
                // The creator touches it once so the receive thread arms
                // its timer; nothing else needs to until then.
                touch_queued: true,
                reschedule_queued: false,
                handles,
                queued_for_accept,
                aborted: false,
                nonblocking: false,
                read_timeout: None,
                write_timeout: None,
                read_shut: false,
                final_unsent: false,
                waiting: [0; 3],
            }),
            cond: Condvar::new(),
            watchers: Watchers::default(),
            batch_wake: OwedWake::default(),
            pass_wake: OwedWake::default(),
        })
    }

    /// Wakes blocked application calls and pollers: readiness may have
    /// changed. Call with no lock held.
    pub(crate) fn wake_waiters(&self) {
        self.cond.notify_all();
        self.watchers.notify();
    }

    /// Tells blocked calls and pollers (`waiters`), or pollers only: the
    /// delivery of [`Wake::notify`] and [`Wake::watch`].
    pub(crate) fn wake_waiters_or_watchers(&self, waiters: bool) {
        if waiters {
            self.wake_waiters();
        } else {
            self.watchers.notify();
        }
    }

    /// Reads the connection without changing it.
    pub(crate) fn peek<T>(&self, f: impl FnOnce(&ConnInner) -> T) -> T {
        f(&self.inner.lock())
    }

    /// Marks the connection dead after an abort and wakes its waiters.
    pub(crate) fn abort(&self) {
        self.inner.lock().aborted = true;
        self.wake_waiters();
    }
}

/// The result of an orderly close, once there is one: `None` while the
/// connection is still open, or closed with packets not yet handed to the
/// kernel (the shutdown waits in the core's control queue or in the send
/// thread's batch). Returning only then lets a process exit right after
/// `close` without leaving the peer to wait for its idle timeout.
pub(crate) fn close_result(g: &ConnInner) -> Option<io::Result<()>> {
    let c = g.phase.connection_ref()?;
    let State::Closed(e) = c.state() else {
        return None;
    };
    if !c.is_finished() || g.final_unsent {
        return None;
    }
    match e {
        ConnectionError::LocallyClosed => Some(Ok(())),
        // The peer closed first: fine if it had everything we wrote.
        ConnectionError::PeerClosed if c.is_send_buffer_empty() => Some(Ok(())),
        e => Some(Err(e.into())),
    }
}
