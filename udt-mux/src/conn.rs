//! The state one connection shares between its application handles and the
//! multiplexer threads: the core machine behind one mutex, the condition
//! variable blocking calls wait on, and the bookkeeping that tells the send
//! and receive threads what changed after each call ([`ConnInner::settle`]).
//!
//! The rule everywhere: lock, call the core, settle, unlock, and only then
//! do what settle asked for (channel messages, wake-ups, condvar
//! notifications, sends). No lock is held across a system call.

use std::io;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Weak};
use std::time::{Duration, Instant};

use parking_lot::{Condvar, Mutex, MutexGuard};
use udt_core::connection::{Connection, State};
use udt_core::handshake::{self, Connecting};
use udt_core::sched::ConnectionHandle;
use udt_core::{Config, ConnectionError, SeqNumber, SocketId};

use crate::error;
use crate::mux::{MuxShared, SendCmd};
use crate::poller::PollerShared;

/// The key a listener uses to recognise a repeated connection request
/// (UDT4 `newConnection`: peer address, peer socket ID, peer ISN).
pub(crate) type AcceptKey = (SocketAddr, SocketId, SeqNumber);

/// Where a connection is in its life, from the multiplexer's view.
#[derive(Debug)]
pub(crate) enum Phase {
    /// The handshake runs (boxed: a handshake machine is large and the
    /// phase lasts milliseconds).
    Connecting(Box<Connecting>),
    /// The core connection exists (it may have closed since).
    Established(Box<Connection>),
    /// The handshake failed.
    Failed(handshake::ConnectError),
}

impl Phase {
    pub(crate) fn handle_datagram(&mut self, now: Instant, from: SocketAddr, datagram: &[u8]) {
        match self {
            Phase::Connecting(p) => p.handle_datagram(now, from, datagram),
            Phase::Established(c) => c.handle_datagram(now, from, datagram),
            Phase::Failed(_) => {}
        }
    }

    pub(crate) fn handle_timeout(&mut self, now: Instant) {
        match self {
            Phase::Connecting(p) => p.handle_timeout(now),
            Phase::Established(c) => c.handle_timeout(now),
            Phase::Failed(_) => {}
        }
    }

    /// Writes the next datagram into `buf`; returns its destination.
    pub(crate) fn poll_transmit(&mut self, now: Instant, buf: &mut Vec<u8>) -> Option<SocketAddr> {
        match self {
            Phase::Connecting(p) => p.poll_transmit(now, buf),
            Phase::Established(c) => c.poll_transmit(now, buf).map(|t| t.destination),
            Phase::Failed(_) => None,
        }
    }

    fn poll_timeout(&self) -> Option<Instant> {
        match self {
            Phase::Connecting(p) => p.poll_timeout(),
            Phase::Established(c) => c.poll_timeout(),
            Phase::Failed(_) => None,
        }
    }

    fn next_send_time(&self) -> Option<Instant> {
        match self {
            Phase::Established(c) => c.next_send_time(),
            _ => None,
        }
    }

    /// The established connection, if there is one.
    pub(crate) fn connection(&mut self) -> Option<&mut Connection> {
        match self {
            Phase::Established(c) => Some(c),
            _ => None,
        }
    }

    /// The established connection, if there is one.
    pub(crate) fn connection_ref(&self) -> Option<&Connection> {
        match self {
            Phase::Established(c) => Some(c),
            _ => None,
        }
    }

    /// If the handshake just finished, turns it into a connection (or a
    /// failure); returns true when the phase changed.
    pub(crate) fn complete_handshake(&mut self, config: &Arc<Config>, now: Instant) -> bool {
        let Phase::Connecting(p) = self else {
            return false;
        };
        let Some(result) = p.poll_result() else {
            return false;
        };
        *self = match result {
            Ok(params) => {
                Phase::Established(Box::new(Connection::new(params, config.clone(), now)))
            }
            Err(e) => Phase::Failed(e),
        };
        true
    }
}

/// Which thread settles: each owns different bookkeeping.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Role {
    /// An application thread (a handle method).
    App,
    /// The send thread, which owns the send schedule.
    Send,
    /// The receive thread, which owns the timer heap.
    Recv,
}

/// What a settle asks for, done after the lock is released.
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
    /// The receive thread's new timer key (receive role only).
    pub(crate) timer: Option<Instant>,
    /// The connection can be removed from the registry now.
    pub(crate) reapable: bool,
}

impl Wake {
    /// True when there is nothing to tell anyone (the receive thread's own
    /// `timer` and `reapable` results aside, which it reads directly).
    pub(crate) fn is_empty(&self) -> bool {
        self.reschedule.is_none() && !self.touch && !self.notify
    }
}

/// Mutable per-connection state, behind [`ConnShared::inner`].
#[derive(Debug)]
pub(crate) struct ConnInner {
    pub(crate) phase: Phase,
    /// The latest `now` given to the core: time handed to it must not go
    /// backwards although several threads take their own clock readings.
    last_now: Instant,
    /// The send-queue key last reported to the send thread.
    send_key: Option<Instant>,
    /// The deadline this connection has in the receive thread's timer heap.
    timer_key: Option<Instant>,
    /// A `Touch` for this connection is queued for the receive thread.
    touch_queued: bool,
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
    /// queued for accept, and the core is finished (or the handshake failed).
    pub(crate) fn is_reapable(&self) -> bool {
        self.handles == 0
            && !self.queued_for_accept
            && match &self.phase {
                Phase::Connecting(_) => false,
                Phase::Established(c) => c.is_finished(),
                Phase::Failed(_) => true,
            }
    }

    /// After any core call: drains the core's events and compares both
    /// deadlines with what the threads know.
    pub(crate) fn settle(&mut self, mux: &MuxShared, role: Role) -> Wake {
        let mut wake = Wake::default();
        if let Phase::Established(c) = &mut self.phase {
            while c.poll_event().is_some() {
                wake.notify = true;
            }
        }
        let next = self.phase.next_send_time();
        // The send thread popped the connection from its heap, so it always
        // needs the key back; others only report a change.
        if role == Role::Send || next != self.send_key {
            self.send_key = next;
            wake.reschedule = Some((next, mux.next_generation()));
        }
        let timer = self.phase.poll_timeout();
        wake.reapable = self.is_reapable();
        if role == Role::Recv {
            self.timer_key = timer;
            self.touch_queued = false;
            wake.timer = timer;
        } else {
            // A later deadline is harmless (the receive thread wakes early
            // and finds nothing due); an earlier one must be reported.
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
        wake
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
    /// Set up by rendezvous (routed by peer address for dest-0 packets).
    pub(crate) rendezvous: bool,
    /// Accepted by the listener under this key.
    pub(crate) accept_key: Option<AcceptKey>,
    pub(crate) config: Arc<Config>,
    pub(crate) mux: Arc<MuxShared>,
    pub(crate) inner: Mutex<ConnInner>,
    /// Waited on (with `inner`) by blocking calls; notified when the core
    /// reports an event.
    pub(crate) cond: Condvar,
    pub(crate) watchers: Watchers,
    /// The receive thread will notify waiters at its next flush.
    pub(crate) notify_deferred: AtomicBool,
}

/// The arguments of [`ConnShared::new`].
#[derive(Debug)]
pub(crate) struct NewConn {
    pub(crate) handle: ConnectionHandle,
    pub(crate) socket_id: SocketId,
    pub(crate) peer: SocketAddr,
    pub(crate) rendezvous: bool,
    pub(crate) accept_key: Option<AcceptKey>,
    pub(crate) config: Arc<Config>,
    pub(crate) phase: Phase,
    pub(crate) handles: u32,
    pub(crate) queued_for_accept: bool,
    pub(crate) now: Instant,
}

impl ConnShared {
    pub(crate) fn new(mux: Arc<MuxShared>, n: NewConn) -> Arc<ConnShared> {
        Arc::new(ConnShared {
            handle: n.handle,
            socket_id: n.socket_id,
            peer: n.peer,
            rendezvous: n.rendezvous,
            accept_key: n.accept_key,
            config: n.config,
            mux,
            inner: Mutex::new(ConnInner {
                phase: n.phase,
                last_now: n.now,
                send_key: None,
                timer_key: None,
                // The creator touches it once so the receive thread arms
                // its timer; nothing else needs to until then.
                touch_queued: true,
                handles: n.handles,
                queued_for_accept: n.queued_for_accept,
                aborted: false,
                nonblocking: false,
                read_timeout: None,
                write_timeout: None,
                read_shut: false,
                final_unsent: false,
            }),
            cond: Condvar::new(),
            watchers: Watchers::default(),
            notify_deferred: AtomicBool::new(false),
        })
    }

    /// Does what a settle asked for; call with no lock held. The send
    /// thread handles `reschedule` itself and the receive thread `timer`.
    pub(crate) fn run_wake(&self, wake: Wake, role: Role) {
        if role != Role::Send {
            if let Some((at, generation)) = wake.reschedule {
                self.mux
                    .send_command(SendCmd::Reschedule(self.handle, at, generation));
            }
        }
        if wake.touch {
            self.mux.touch(self.handle);
        }
        if wake.notify {
            self.cond.notify_all();
            self.watchers.notify();
        }
    }

    /// Runs `op` under the lock, waiting on the condition variable while it
    /// returns `None` ("would block"), at most `timeout`.
    ///
    /// # Errors
    /// What `op` returns; `WouldBlock` in non-blocking mode; `TimedOut`
    /// after the timeout; `ConnectionAborted` once the endpoint is aborted.
    pub(crate) fn blocking<T>(
        &self,
        timeout: impl Fn(&ConnInner) -> Option<Duration>,
        what: &'static str,
        mut op: impl FnMut(&mut ConnInner, Instant) -> Option<io::Result<T>>,
    ) -> io::Result<T> {
        let mut g = self.inner.lock();
        let deadline = timeout(&g).map(|d| Instant::now() + d);
        let mut last_try = false;
        loop {
            if g.aborted || self.mux.is_aborted() {
                return Err(error::aborted());
            }
            let now = g.clock(Instant::now());
            let result = op(&mut g, now);
            // Settle even when `op` would block: it may have changed the
            // core all the same (`close` queues the shutdown, or starts the
            // linger timer, and then waits), and the threads must hear of
            // it now, not at the next unrelated timer.
            let wake = g.settle(&self.mux, Role::App);
            if let Some(result) = result {
                drop(g);
                self.run_wake(wake, Role::App);
                return result;
            }
            if !wake.is_empty() {
                // Tell them with the lock released, then look again: they
                // may already have answered (the shutdown left), and a
                // notification sent before we wait would be missed. This
                // ends: the next settle reports only what changed since.
                MutexGuard::unlocked(&mut g, || self.run_wake(wake, Role::App));
                continue;
            }
            if g.nonblocking {
                return Err(error::would_block(what));
            }
            if last_try {
                return Err(error::timed_out(what));
            }
            match deadline {
                Some(d) => {
                    if self.cond.wait_until(&mut g, d).timed_out() {
                        // One more look: the event may have raced the timeout.
                        last_try = true;
                    }
                }
                None => self.cond.wait(&mut g),
            }
        }
    }

    /// Runs `f` on the connection under the lock and settles.
    pub(crate) fn with_connection<T>(
        &self,
        f: impl FnOnce(&mut Connection, Instant) -> T,
    ) -> io::Result<T> {
        let mut g = self.inner.lock();
        if g.aborted || self.mux.is_aborted() {
            return Err(error::aborted());
        }
        let now = g.clock(Instant::now());
        let Some(c) = g.phase.connection() else {
            return Err(io::Error::new(io::ErrorKind::NotConnected, "not connected"));
        };
        let r = f(c, now);
        let wake = g.settle(&self.mux, Role::App);
        drop(g);
        self.run_wake(wake, Role::App);
        Ok(r)
    }

    /// Reads the connection without changing it.
    pub(crate) fn peek<T>(&self, f: impl FnOnce(&ConnInner) -> T) -> T {
        f(&self.inner.lock())
    }

    /// One application handle fewer. The last one starts an orderly close
    /// that continues in the background (linger), and lets the receive
    /// thread forget the connection once it is finished.
    pub(crate) fn release_handle(&self) {
        let mut g = self.inner.lock();
        g.handles = g.handles.saturating_sub(1);
        // After an abort nothing is closed in order: the peer must see
        // silence, as from a killed process.
        if g.handles == 0 && !g.aborted && !self.mux.is_aborted() {
            let now = g.clock(Instant::now());
            if let Some(c) = g.phase.connection() {
                c.close(now);
            }
        }
        let wake = g.settle(&self.mux, Role::App);
        drop(g);
        self.run_wake(wake, Role::App);
    }

    /// Marks the connection dead after an abort and wakes its waiters.
    pub(crate) fn abort(&self) {
        self.inner.lock().aborted = true;
        self.cond.notify_all();
        self.watchers.notify();
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

/// Pollers interested in one connection or listener.
#[derive(Debug, Default)]
pub(crate) struct Watchers {
    /// Fast path: most connections have no poller.
    any: AtomicBool,
    list: Mutex<Vec<(Weak<PollerShared>, usize)>>,
}

impl Watchers {
    /// Adds a poller registration (replacing one with the same poller).
    pub(crate) fn add(&self, poller: &Arc<PollerShared>, token: usize) {
        let mut list = self.list.lock();
        list.retain(|(p, _)| p.strong_count() > 0 && !Weak::ptr_eq(p, &Arc::downgrade(poller)));
        list.push((Arc::downgrade(poller), token));
        self.any.store(true, Ordering::Release);
    }

    /// Removes a poller's registration.
    pub(crate) fn remove(&self, poller: &Arc<PollerShared>) {
        let mut list = self.list.lock();
        list.retain(|(p, _)| p.strong_count() > 0 && !Weak::ptr_eq(p, &Arc::downgrade(poller)));
        self.any.store(!list.is_empty(), Ordering::Release);
    }

    /// Tells every poller that readiness may have changed. The pollers are
    /// collected under the list lock and notified after it is released.
    pub(crate) fn notify(&self) {
        if !self.any.load(Ordering::Acquire) {
            return;
        }
        // Nearly always one poller: a small inline array avoids allocating.
        const INLINE: usize = 4;
        let mut inline: [Option<(Arc<PollerShared>, usize)>; INLINE] = Default::default();
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

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::{Read, Write};

    use crate::{Endpoint, EndpointConfig, UdtListener, UdtStream};

    /// A connected pair on loopback, with its endpoints and listener.
    fn pair() -> (Endpoint, Endpoint, UdtListener, UdtStream, UdtStream) {
        let mut config = Config::default();
        config.linger = Some(Duration::from_secs(5));
        let bind = |config| Endpoint::bind_with("127.0.0.1:0", config, EndpointConfig::default());
        let server = bind(config.clone()).unwrap();
        let client = bind(config).unwrap();
        let listener = server.listen(1).unwrap();
        let stream = client.connect(server.local_addr()).unwrap();
        let (accepted, _) = listener.accept().unwrap();
        (server, client, listener, stream, accepted)
    }

    /// Waits (bounded) until the send thread has nothing of `conn` left.
    fn wait_idle(conn: &ConnShared) {
        let deadline = Instant::now() + Duration::from_secs(5);
        while Instant::now() < deadline {
            {
                let g = conn.inner.lock();
                if g.send_key.is_none() && g.phase.next_send_time().is_none() {
                    return;
                }
            }
            std::thread::sleep(Duration::from_millis(1));
        }
        panic!("the connection never went idle");
    }

    #[test]
    fn a_call_that_would_block_still_reports_what_it_changed() {
        // The root cause of close() stalling until an unrelated protocol
        // timer: `blocking` settled only when `op` completed, so the
        // shutdown `close` had queued before waiting stayed unknown to the
        // send thread.
        let (_server, _client, _listener, mut stream, mut accepted) = pair();
        stream.write_all(b"x").unwrap();
        let mut byte = [0u8; 1];
        accepted.read_exact(&mut byte).unwrap();
        stream
            .wait_acknowledged(Some(Duration::from_secs(5)))
            .unwrap();
        let conn = stream.conn().clone();
        wait_idle(&conn);
        stream.set_nonblocking(true);
        let r = conn.blocking(
            |_| None,
            "closing",
            |g, now| {
                g.phase.connection()?.close(now);
                None::<io::Result<()>>
            },
        );
        assert_eq!(r.unwrap_err().kind(), io::ErrorKind::WouldBlock);
        {
            let g = conn.inner.lock();
            // Queued (the send thread was told) or already sent.
            assert_eq!(g.send_key, g.phase.next_send_time());
        }
        // And so the peer hears of it, long before its idle timeout.
        let mut rest = Vec::new();
        accepted.set_read_timeout(Some(Duration::from_secs(2)));
        assert_eq!(accepted.read_to_end(&mut rest).unwrap(), 0);
    }

    #[test]
    fn close_waits_until_the_send_thread_sent_the_shutdown() {
        let (_server, _client, _listener, stream, mut accepted) = pair();
        let conn = stream.conn().clone();
        let r = conn.blocking(
            |_| Some(Duration::from_secs(5)),
            "closing",
            |g, now| {
                g.phase.connection()?.close(now);
                close_result(g)
            },
        );
        r.unwrap();
        {
            let mut g = conn.inner.lock();
            let c = g.phase.connection_ref().unwrap();
            assert!(c.is_finished(), "returned with the shutdown still queued");
            assert!(!g.final_unsent);
            assert!(matches!(close_result(&g), Some(Ok(()))));
            // The shutdown taken into a batch not yet sent: not done.
            g.final_unsent = true;
            assert!(close_result(&g).is_none());
            g.final_unsent = false;
        }
        let mut rest = Vec::new();
        accepted.set_read_timeout(Some(Duration::from_secs(2)));
        assert_eq!(accepted.read_to_end(&mut rest).unwrap(), 0);
    }
}
