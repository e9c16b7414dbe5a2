//! How the threads of one multiplexer tell each other what changed: the
//! command channels of the send and receive threads, the receive thread's
//! waker, the generation counter that orders send-queue keys, and the abort
//! flag. Generic over the connection type so that this layer sits below the
//! connection state and names nothing above it.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

use crossbeam_channel::{Receiver, Sender};
use udt_core::sched::ConnectionHandle;

/// Messages to the send thread, which alone owns the send schedule.
///
/// Both channels are unbounded in type but bounded in use (issue 10 item
/// 8): per connection, the send thread's holds at most one `Register`, one
/// `Reschedule` (coalesced by `ConnInner::reschedule_queued`) and one
/// `Deregister`, plus one `Stop`; the receive thread's holds at most one
/// `Touch` per connection from settles (coalesced by
/// `ConnInner::touch_queued`) plus one per `connect` call in progress. So
/// a flood of packets or of application calls cannot grow them: their
/// length is at most about 3 × the connections of the endpoint.
#[derive(Debug)]
pub(crate) enum SendCmd<C> {
    /// A connection was established: start scheduling it.
    Register(ConnectionHandle, C),
    /// The connection's `next_send_time` changed: read it under the
    /// connection's lock. At most one is queued per connection
    /// (`ConnInner::reschedule_queued`).
    Reschedule(ConnectionHandle),
    /// The connection was removed from the registry.
    Deregister(ConnectionHandle),
    /// Exit.
    Stop,
}

/// Messages to the receive thread, which alone owns the timer heap.
#[derive(Debug)]
pub(crate) enum RecvCmd {
    /// Re-read this connection's timer deadline, send what it has, and
    /// remove it if it is finished.
    Touch(ConnectionHandle),
}

/// The receiving ends, handed to the threads when they start: one per send
/// thread, one for the (primary) receive thread.
#[derive(Debug)]
pub(crate) struct Inboxes<C> {
    pub(crate) send: Vec<Receiver<SendCmd<C>>>,
    pub(crate) recv: Receiver<RecvCmd>,
}

/// Cross-thread signals of one multiplexer.
#[derive(Debug)]
pub(crate) struct Notifier<C> {
    /// One channel per send thread; a connection belongs to the thread of
    /// its handle's index modulo their number ([`send_thread_of`]).
    send_tx: Vec<Sender<SendCmd<C>>>,
    recv_tx: Sender<RecvCmd>,
    waker: mio::Waker,
    /// A wake of the receive thread is in flight: coalesces wake-ups.
    recv_wake_pending: AtomicBool,
    generation: AtomicU64,
    aborted: AtomicBool,
}

impl<C> Notifier<C> {
    /// Creates the channels of `send_threads` send threads (at least one)
    /// and the receive thread; `waker` interrupts the receive thread's poll.
    pub(crate) fn new(waker: mio::Waker, send_threads: usize) -> (Notifier<C>, Inboxes<C>) {
        let (send_tx, send) = (0..send_threads.max(1))
            .map(|_| crossbeam_channel::unbounded())
            .unzip();
        let (recv_tx, recv) = crossbeam_channel::unbounded();
        let n = Notifier {
            send_tx,
            recv_tx,
            waker,
            recv_wake_pending: AtomicBool::new(false),
            generation: AtomicU64::new(0),
            aborted: AtomicBool::new(false),
        };
        (n, Inboxes { send, recv })
    }

    /// A fresh generation number for a send-queue key.
    pub(crate) fn next_generation(&self) -> u64 {
        self.generation.fetch_add(1, Ordering::Relaxed) + 1
    }

    /// Sends a command to the send thread of its connection (`Stop` to
    /// every send thread).
    pub(crate) fn send_command(&self, cmd: SendCmd<C>) {
        // Sending only fails once that thread has exited: nothing to do then.
        let h = match &cmd {
            SendCmd::Register(h, _) | SendCmd::Reschedule(h) | SendCmd::Deregister(h) => *h,
            SendCmd::Stop => {
                for tx in &self.send_tx {
                    let _ = tx.send(SendCmd::Stop);
                }
                return;
            }
        };
        if let Some(tx) = self.send_tx.get(send_thread_of(h, self.send_tx.len())) {
            let _ = tx.send(cmd);
        }
    }

    /// Asks the receive thread to look at a connection.
    pub(crate) fn touch(&self, h: ConnectionHandle) {
        let _ = self.recv_tx.send(RecvCmd::Touch(h));
        self.wake_recv();
    }

    /// Interrupts the receive thread's poll, once per batch of requests.
    pub(crate) fn wake_recv(&self) {
        if !self.recv_wake_pending.swap(true, Ordering::SeqCst) {
            if let Err(e) = self.waker.wake() {
                log::error!("cannot wake the receive thread: {e}");
            }
        }
    }

    /// The receive thread is about to drain its commands: a request queued
    /// after this wakes its poll again.
    pub(crate) fn clear_recv_wake(&self) {
        self.recv_wake_pending.store(false, Ordering::SeqCst);
    }

    /// True once the multiplexer was aborted.
    pub(crate) fn is_aborted(&self) -> bool {
        self.aborted.load(Ordering::SeqCst)
    }

    /// Marks the multiplexer aborted and wakes the receive thread, which
    /// stops everything.
    pub(crate) fn abort(&self) {
        self.aborted.store(true, Ordering::SeqCst);
        self.wake_recv();
    }
}

/// The send thread (of `threads`) that schedules and sends the packets of
/// connection `h`. Handles are dense slot indexes, so connections spread
/// evenly; a connection keeps its thread for life.
pub(crate) fn send_thread_of(h: ConnectionHandle, threads: usize) -> usize {
    h.index() % threads.max(1)
}
