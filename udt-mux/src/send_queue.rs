//! The send thread: owns the send schedule (an indexed min-heap of
//! connections keyed by `next_send_time`, UDT4 `CSndUList`), sleeps until
//! its head is due, drains every due connection into one batch and sends
//! the batch with as few system calls as the OS allows.
//!
//! Waiting: a coarse sleep on the command channel (`recv_deadline`, so a
//! `Reschedule` to an earlier time wakes it), then a precise wait for the
//! last [`EndpointConfig::precise_wait`](crate::EndpointConfig::precise_wait).
//! With nothing scheduled it blocks on the channel: an idle endpoint costs
//! no CPU.

use std::sync::Arc;
use std::time::{Duration, Instant};

use crossbeam_channel::{Receiver, RecvTimeoutError, TryRecvError};
use udt_core::packet;
use udt_core::sched::{ConnectionHandle, SendSchedule};

use crate::conn::{ConnShared, Wake};
use crate::mux::MuxShared;
use crate::notify::SendCmd;
use crate::udp::SendBatch;

/// A wait is precise (sleep, then spin for `precise_wait`) only when it is
/// at least this many times `precise_wait`, so spinning stays a small part
/// of any wait.
const SPIN_RATIO: u32 = 10;

/// The longest [`EndpointConfig::batch_interval`](crate::EndpointConfig::batch_interval) used.
const MAX_BATCH_INTERVAL: Duration = Duration::from_micros(500);

/// A connection with at least this many payloads to gather in a batch has
/// the batch sent under its lock (no copy); with fewer, they are copied in
/// and the batch waits for other connections (one system call for many).
const GATHER_MIN: usize = 8;

/// State of the send thread.
pub(crate) struct SendThread {
    mux: Arc<MuxShared>,
    rx: Receiver<SendCmd<Arc<ConnShared>>>,
    sched: SendSchedule,
    /// The send thread's own view of the connections, by handle, so it
    /// never takes the registry lock.
    conns: Vec<Option<Arc<ConnShared>>>,
    /// Newest key generation applied per handle.
    applied: Vec<u64>,
    batch: SendBatch,
    precise: Duration,
    /// Shortest time between two batches
    /// ([`EndpointConfig::batch_interval`](crate::EndpointConfig::batch_interval)).
    quantum: Duration,
    /// No batch before this (the last batch plus `quantum`).
    floor: Instant,
    /// [`EndpointConfig::zero_copy_send`](crate::EndpointConfig::zero_copy_send).
    gather: bool,
    /// The socket of the port this thread sends through (its index).
    socket: usize,
}

impl SendThread {
    /// The send thread of socket `socket`: it schedules the connections
    /// whose commands arrive on `rx` and sends through that socket.
    pub(crate) fn new(
        mux: Arc<MuxShared>,
        rx: Receiver<SendCmd<Arc<ConnShared>>>,
        socket: usize,
    ) -> SendThread {
        let batch = SendBatch::new(mux.options().effective_batch(), mux.config().mss as usize);
        let precise = mux.options().precise_wait;
        // Longer intervals would be lateness the pacer no longer carries
        // as burst credit (1 ms): cap well below it.
        let quantum = mux.options().batch_interval.min(MAX_BATCH_INTERVAL);
        let gather = mux.options().zero_copy_send;
        SendThread {
            mux,
            rx,
            sched: SendSchedule::new(),
            conns: Vec::new(),
            applied: Vec::new(),
            batch,
            precise,
            quantum,
            floor: Instant::now(),
            gather,
            socket,
        }
    }

    /// The thread body; returns when told to stop.
    pub(crate) fn run(mut self) {
        reduce_timer_slack();
        loop {
            loop {
                match self.rx.try_recv() {
                    Ok(cmd) => {
                        if !self.apply(cmd) {
                            return;
                        }
                    }
                    Err(TryRecvError::Empty) => break,
                    Err(TryRecvError::Disconnected) => return,
                }
            }
            let Some((_, at)) = self.sched.peek() else {
                // Nothing to send: sleep until someone has something.
                match self.rx.recv() {
                    Ok(cmd) => {
                        if !self.apply(cmd) {
                            return;
                        }
                        continue;
                    }
                    Err(_) => return,
                }
            };
            // A fast flow's next packet is due microseconds after the last
            // batch: wait out the quantum, so what falls due meanwhile
            // leaves together on the pacer's burst credit.
            let at = at.max(self.floor);
            if at > Instant::now() {
                if !self.wait_until(at) {
                    return;
                }
                continue;
            }
            let now = Instant::now();
            self.send_due(now);
            self.floor = now + self.quantum;
        }
    }

    /// Applies one command; false means stop.
    fn apply(&mut self, cmd: SendCmd<Arc<ConnShared>>) -> bool {
        match cmd {
            SendCmd::Register(h, conn) => {
                let i = h.0 as usize;
                if self.conns.len() <= i {
                    self.conns.resize(i + 1, None);
                    self.applied.resize(i + 1, 0);
                }
                self.conns[i] = Some(conn.clone());
                // Read the key fresh under the lock: it supersedes any
                // message about this handle generated before.
                let wake = conn.inner.lock().settle_sent(self.mux.notify());
                self.act(&conn, wake);
            }
            SendCmd::Reschedule(h) => {
                // Coalesced: the key is read now, under the lock, which
                // also lets the next change send another message.
                if let Some(conn) = self.conns.get(h.0 as usize).cloned().flatten() {
                    let wake = conn.inner.lock().settle_sent(self.mux.notify());
                    self.act(&conn, wake);
                }
            }
            SendCmd::Deregister(h) => {
                if let Some(c) = self.conns.get_mut(h.0 as usize) {
                    *c = None;
                }
                self.sched.remove(h);
            }
            SendCmd::Stop => return false,
        }
        true
    }

    fn schedule(&mut self, h: ConnectionHandle, at: Option<Instant>, generation: u64) {
        let Some(applied) = self.applied.get_mut(h.0 as usize) else {
            return;
        };
        if generation < *applied {
            return;
        }
        *applied = generation;
        self.sched.set(h, at);
    }

    /// Waits until `at` or a command; false means stop.
    ///
    /// Long waits sleep until `precise` before `at`, then spin (yielding)
    /// for the rest. Short waits, as between the packets of a fast flow,
    /// only sleep: a spin per packet would burn a core, and the wake-up
    /// latency is absorbed by the connection's burst credit, which sends
    /// every packet that fell due in one batch.
    fn wait_until(&mut self, at: Instant) -> bool {
        let now = Instant::now();
        let wait = at.saturating_duration_since(now);
        let spin = if wait >= self.precise * SPIN_RATIO {
            self.precise
        } else {
            Duration::ZERO
        };
        if wait > spin {
            match self.rx.recv_deadline(at - spin) {
                Ok(cmd) => return self.apply(cmd),
                Err(RecvTimeoutError::Timeout) => {}
                Err(RecvTimeoutError::Disconnected) => return false,
            }
        }
        // The last stretch: the kernel's timers are too coarse for it.
        let mut spins = 0u32;
        while Instant::now() < at {
            spins = spins.wrapping_add(1);
            if spins.is_multiple_of(16) {
                match self.rx.try_recv() {
                    Ok(cmd) => return self.apply(cmd),
                    Err(TryRecvError::Empty) => {}
                    Err(TryRecvError::Disconnected) => return false,
                }
                // Let other threads of this process run on a busy core.
                std::thread::yield_now();
            } else {
                std::hint::spin_loop();
            }
        }
        true
    }

    /// Drains every connection due at `now` into the batch and sends it.
    fn send_due(&mut self, now: Instant) {
        while let Some(h) = self.sched.pop_due(now) {
            let Some(Some(conn)) = self.conns.get(h.0 as usize) else {
                continue;
            };
            let conn = conn.clone();
            let mut last_taken = false;
            let mut wake = {
                let mut g = conn.inner.lock();
                let now = g.clock(now);
                if let Some(c) = g.phase.connection() {
                    let mut taken = false;
                    while let Some(buf) = self.batch.slot() {
                        let polled = if self.gather {
                            c.poll_transmit_gather(now, buf)
                        } else {
                            c.poll_transmit(now, buf).map(|t| (t, None))
                        };
                        match polled {
                            Some((t, payload)) => {
                                self.batch.push_gathered(t.destination, payload);
                                taken = true;
                                // A full batch must not split a packet
                                // pair: 16n + 1 follows 16n in this call.
                                if self.batch.is_full()
                                    && self.batch.last().is_some_and(packet::is_probe_head)
                                {
                                    self.batch.keep_pair();
                                }
                            }
                            None => break,
                        }
                    }
                    // Payloads still in its send buffer leave (or are
                    // copied into the batch) before its lock is released.
                    let deferred = self.batch.deferred();
                    if deferred >= GATHER_MIN && !self.mux.is_aborted() {
                        let f =
                            self.batch
                                .flush_gathered(self.mux.port_at(self.socket), true, |p| {
                                    c.payload(p)
                                });
                        self.mux.counters().on_flush(f);
                    } else if deferred > 0 {
                        self.batch.attach(|p| c.payload(p));
                    }
                    // Its last packet (the shutdown, after a close) is now
                    // in our batch or sent: `close` waits until it has left.
                    last_taken = taken && c.is_finished();
                }
                if last_taken {
                    g.final_unsent = true;
                }
                g.settle_sent(self.mux.notify())
            };
            if last_taken {
                // Put it on the wire before waking the `close()` waiting
                // for it, so a process may exit as soon as `close` returns
                // (the flag changes under the lock: no lost wake-up).
                self.flush();
                conn.inner.lock().final_unsent = false;
                wake.notify = true;
            }
            self.act(&conn, wake);
            if self.batch.is_full() {
                self.flush();
            }
        }
        self.flush();
    }

    /// Acts on a settle of the send thread: the new key goes into its own
    /// heap; a receive-thread touch and application wake-ups go out.
    fn act(&mut self, conn: &ConnShared, wake: Wake) {
        if let Some((at, generation)) = wake.reschedule {
            self.schedule(conn.handle, at, generation);
        }
        if wake.touch {
            conn.notify.touch(conn.handle);
        }
        if wake.notify || wake.watch {
            conn.wake_waiters_or_watchers(wake.notify);
        }
    }

    fn flush(&mut self) {
        if self.mux.is_aborted() {
            // Aborted: nothing more leaves, as if the process had died.
            let _ = self.batch.discard();
            return;
        }
        if !self.batch.is_empty() {
            let f = self.batch.flush(self.mux.port_at(self.socket), true);
            self.mux.counters().on_flush(f);
        }
    }
}

/// Asks Linux for 1 µs timer slack on this thread (default 50 µs), so the
/// coarse sleep already lands close to the deadline and the precise wait
/// stays short.
fn reduce_timer_slack() {
    #[cfg(target_os = "linux")]
    // SAFETY: PR_SET_TIMERSLACK takes one integer argument and only
    // affects the calling thread.
    unsafe {
        libc::prctl(libc::PR_SET_TIMERSLACK, 1_000 as libc::c_ulong, 0, 0, 0);
    }
}
