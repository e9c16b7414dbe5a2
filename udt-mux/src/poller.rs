//! `Poller`: readiness of many connections and listeners from one thread
//! (the role of UDT4's epoll), level-triggered, and unlike UDT4 it reports
//! errors and hang-ups.
//!
//! Cost model: a connection tells its pollers when its core reports an
//! event; the poller keeps a list of candidate tokens and checks only
//! those when waiting, so `wait` costs O(ready), not O(registered).

use std::collections::HashMap;
use std::io;
use std::sync::{Arc, Weak};
use std::time::{Duration, Instant};

use parking_lot::{Condvar, Mutex};
use udt_core::{ConnectionError, State};

use crate::accept::AcceptSignal;
use crate::conn::ConnShared;
use crate::listener::{UdtListener, UdtMessageListener};
use crate::message::UdtMessageSocket;
use crate::stream::UdtStream;
use crate::watch::ReadyListener;

/// Identifies a registered source in the events a [`Poller`] reports.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Token(pub usize);

/// Which readiness a registration is interested in.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Interest {
    /// Report when a read (or accept) would not block.
    pub readable: bool,
    /// Report when a write would not block.
    pub writable: bool,
}

impl Interest {
    /// Readable only.
    pub const READABLE: Interest = Interest {
        readable: true,
        writable: false,
    };
    /// Writable only.
    pub const WRITABLE: Interest = Interest {
        readable: false,
        writable: true,
    };
    /// Both.
    pub const BOTH: Interest = Interest {
        readable: true,
        writable: true,
    };
}

/// One readiness report. Errors and hang-ups are always reported,
/// whatever the interest.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PollEvent {
    /// The token given at registration.
    pub token: Token,
    /// A read, `recv_msg` or `accept` would not block (also true at end of
    /// stream and after an error, as with epoll: the call then reports it).
    pub readable: bool,
    /// A write or `send_msg` has room worth writing (`WRITER_WAKE_PACKETS`
    /// of udt-core, 64 packets, or a quarter of a smaller send buffer, and
    /// at least the room of the last message that did not fit), or the
    /// connection is no longer open (the call then reports why). A
    /// write may succeed with less room; it is just not reported, as Linux
    /// does not report a TCP socket writable for a few free bytes.
    pub writable: bool,
    /// The connection ended in order: the peer closed it, or we did.
    pub hang_up: bool,
    /// The connection failed: why (peer silent past the idle timeout,
    /// linger expired, protocol violation), or `None`.
    pub error: Option<ConnectionError>,
}

/// Something a [`Poller`] can watch: [`UdtStream`], [`UdtMessageSocket`],
/// [`UdtListener`], [`UdtMessageListener`].
pub trait Pollable: sealed::Sealed {
    #[doc(hidden)]
    fn source(&self) -> Source;
}

mod sealed {
    pub trait Sealed {}
    impl Sealed for crate::UdtStream {}
    impl Sealed for crate::UdtMessageSocket {}
    impl Sealed for crate::UdtListener {}
    impl Sealed for crate::UdtMessageListener {}
}

/// What a registration watches (opaque; returned by [`Pollable`]).
#[doc(hidden)]
#[derive(Debug, Clone)]
pub struct Source(SourceKind);

#[derive(Debug, Clone)]
enum SourceKind {
    Conn(Weak<ConnShared>),
    Listener(Weak<AcceptSignal>),
}

impl Source {
    fn add_watcher(&self, poller: &Arc<PollerShared>, token: usize) -> bool {
        let poller: Arc<dyn ReadyListener> = poller.clone();
        let poller = &poller;
        match &self.0 {
            SourceKind::Conn(w) => w.upgrade().map(|c| c.watchers.add(poller, token)).is_some(),
            SourceKind::Listener(w) => w.upgrade().map(|l| l.watchers.add(poller, token)).is_some(),
        }
    }

    fn remove_watcher(&self, poller: &Arc<PollerShared>) {
        let poller: Arc<dyn ReadyListener> = poller.clone();
        let poller = &poller;
        match &self.0 {
            SourceKind::Conn(w) => {
                if let Some(c) = w.upgrade() {
                    c.watchers.remove(poller);
                }
            }
            SourceKind::Listener(w) => {
                if let Some(l) = w.upgrade() {
                    l.watchers.remove(poller);
                }
            }
        }
    }

    fn same(&self, other: &Source) -> bool {
        match (&self.0, &other.0) {
            (SourceKind::Conn(a), SourceKind::Conn(b)) => Weak::ptr_eq(a, b),
            (SourceKind::Listener(a), SourceKind::Listener(b)) => Weak::ptr_eq(a, b),
            _ => false,
        }
    }

    /// The current readiness, or `None` when the source is gone.
    fn readiness(&self, token: Token) -> Option<PollEvent> {
        let mut ev = PollEvent {
            token,
            readable: false,
            writable: false,
            hang_up: false,
            error: None,
        };
        match &self.0 {
            SourceKind::Conn(w) => {
                let conn = w.upgrade()?;
                let g = conn.inner.lock();
                if g.aborted {
                    ev.error = Some(ConnectionError::LocallyClosed);
                    ev.hang_up = true;
                    ev.readable = true;
                    ev.writable = true;
                    return Some(ev);
                }
                let c = g.phase.connection_ref()?;
                ev.readable = c.is_readable() || g.read_shut;
                // As for a blocked writer: room worth a write, not the
                // packet or two a slow flow's ACK frees (Linux reports a
                // TCP socket writable likewise only once part of its send
                // buffer is free).
                ev.writable = c.writer_due();
                if let State::Closed(e) = c.state() {
                    match e {
                        ConnectionError::PeerClosed | ConnectionError::LocallyClosed => {
                            ev.hang_up = true
                        }
                        other => ev.error = Some(other),
                    }
                }
            }
            SourceKind::Listener(w) => {
                ev.readable = w.upgrade()?.is_ready();
            }
        }
        Some(ev)
    }
}

impl Pollable for UdtStream {
    fn source(&self) -> Source {
        Source(SourceKind::Conn(Arc::downgrade(self.conn())))
    }
}

impl Pollable for UdtMessageSocket {
    fn source(&self) -> Source {
        Source(SourceKind::Conn(Arc::downgrade(self.conn())))
    }
}

impl Pollable for UdtListener {
    fn source(&self) -> Source {
        Source(SourceKind::Listener(Arc::downgrade(self.signal())))
    }
}

impl Pollable for UdtMessageListener {
    fn source(&self) -> Source {
        Source(SourceKind::Listener(Arc::downgrade(self.signal())))
    }
}

#[derive(Debug)]
struct Registration {
    source: Source,
    interest: Interest,
    /// In `ready` already.
    queued: bool,
}

#[derive(Debug, Default)]
struct PollerState {
    regs: HashMap<usize, Registration>,
    /// Tokens whose readiness may have changed (or was ready last time).
    ready: Vec<usize>,
}

/// The shared part of a poller, notified by connections.
#[derive(Debug, Default)]
pub(crate) struct PollerShared {
    state: Mutex<PollerState>,
    cond: Condvar,
}

impl ReadyListener for PollerShared {
    /// Queues `token` for a readiness check and wakes a waiter.
    fn mark_ready(&self, token: usize) {
        {
            let mut st = self.state.lock();
            let queued = match st.regs.get_mut(&token) {
                Some(r) if !r.queued => {
                    r.queued = true;
                    true
                }
                _ => false,
            };
            if queued {
                st.ready.push(token);
            }
        }
        self.cond.notify_all();
    }
}

/// Waits for readiness of many UDT connections and listeners at once.
///
/// Level-triggered: a source that is still ready is reported again by the
/// next `wait`. Errors and hang-ups are always reported. Use non-blocking
/// handles and retry on `WouldBlock`: a report is a hint, as with epoll.
///
/// # Examples
///
/// ```
/// use std::io::Write;
/// use std::time::Duration;
/// use udt_mux::{Endpoint, Interest, Poller, Token};
///
/// # fn main() -> std::io::Result<()> {
/// let a = Endpoint::bind("127.0.0.1:0")?;
/// let b = Endpoint::bind("127.0.0.1:0")?;
/// let listener = b.listen(4)?;
/// let mut client = a.connect(b.local_addr())?;
/// let (server, _) = listener.accept()?;
/// server.set_nonblocking(true);
///
/// let poller = Poller::new();
/// poller.register(&server, Token(7), Interest::READABLE)?;
/// client.write_all(b"wake up")?;
/// let mut events = Vec::new();
/// poller.wait(&mut events, Some(Duration::from_secs(5)))?;
/// assert!(events.iter().any(|e| e.token == Token(7) && e.readable));
/// # Ok(())
/// # }
/// ```
#[derive(Debug, Default)]
pub struct Poller {
    shared: Arc<PollerShared>,
}

impl Poller {
    /// An empty poller.
    pub fn new() -> Poller {
        Poller::default()
    }

    /// Watches `source` under `token`, replacing an earlier registration of
    /// the same token. Its current readiness is reported by the next wait.
    ///
    /// # Errors
    /// `NotConnected` when the source is already gone.
    pub fn register(
        &self,
        source: &impl Pollable,
        token: Token,
        interest: Interest,
    ) -> io::Result<()> {
        let source = source.source();
        if !source.add_watcher(&self.shared, token.0) {
            return Err(io::Error::new(
                io::ErrorKind::NotConnected,
                "the source is gone",
            ));
        }
        let old = {
            let mut st = self.shared.state.lock();
            let old = st.regs.insert(
                token.0,
                Registration {
                    source: source.clone(),
                    interest,
                    queued: true,
                },
            );
            if !old.as_ref().is_some_and(|r| r.queued) {
                st.ready.push(token.0);
            }
            old
        };
        if let Some(old) = old {
            if !old.source.same(&source) {
                old.source.remove_watcher(&self.shared);
            }
        }
        self.shared.cond.notify_all();
        Ok(())
    }

    /// Changes the interest of a registered token.
    ///
    /// # Errors
    /// `NotFound` when the token is not registered.
    pub fn reregister(&self, token: Token, interest: Interest) -> io::Result<()> {
        {
            let mut st = self.shared.state.lock();
            let Some(r) = st.regs.get_mut(&token.0) else {
                return Err(io::Error::new(
                    io::ErrorKind::NotFound,
                    "token not registered",
                ));
            };
            r.interest = interest;
            let queue = !r.queued;
            r.queued = true;
            if queue {
                st.ready.push(token.0);
            }
        }
        self.shared.cond.notify_all();
        Ok(())
    }

    /// Stops watching a token.
    ///
    /// # Errors
    /// `NotFound` when the token is not registered.
    pub fn deregister(&self, token: Token) -> io::Result<()> {
        let reg = self.shared.state.lock().regs.remove(&token.0);
        match reg {
            Some(r) => {
                r.source.remove_watcher(&self.shared);
                Ok(())
            }
            None => Err(io::Error::new(
                io::ErrorKind::NotFound,
                "token not registered",
            )),
        }
    }

    /// Number of registrations.
    pub fn len(&self) -> usize {
        self.shared.state.lock().regs.len()
    }

    /// True when nothing is registered.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Waits until at least one registered source is ready or `timeout`
    /// passes (`None`: forever), and fills `events` (cleared first) with
    /// every ready source. Returns the number of events; 0 means timeout.
    ///
    /// # Errors
    /// None at present; the `Result` leaves room for OS-level failures.
    pub fn wait(
        &self,
        events: &mut Vec<PollEvent>,
        timeout: Option<Duration>,
    ) -> io::Result<usize> {
        events.clear();
        let deadline = timeout.map(|t| Instant::now() + t);
        let mut candidates: Vec<(usize, Source, Interest)> = Vec::new();
        loop {
            {
                let mut st = self.shared.state.lock();
                loop {
                    if !st.ready.is_empty() {
                        break;
                    }
                    match deadline {
                        Some(d) => {
                            if self.shared.cond.wait_until(&mut st, d).timed_out()
                                && st.ready.is_empty()
                            {
                                return Ok(0);
                            }
                        }
                        None => self.shared.cond.wait(&mut st),
                    }
                }
                let st = &mut *st;
                candidates.clear();
                for token in st.ready.drain(..) {
                    if let Some(r) = st.regs.get_mut(&token) {
                        r.queued = false;
                        candidates.push((token, r.source.clone(), r.interest));
                    }
                }
            }
            // Check readiness with the poller unlocked: the lock order is
            // connection before poller, never the reverse.
            let mut still_ready = Vec::new();
            for (token, source, interest) in candidates.drain(..) {
                let Some(ev) = source.readiness(Token(token)) else {
                    continue;
                };
                let wanted = (interest.readable && ev.readable)
                    || (interest.writable && ev.writable)
                    || ev.hang_up
                    || ev.error.is_some();
                if wanted {
                    events.push(PollEvent {
                        readable: ev.readable && interest.readable,
                        writable: ev.writable && interest.writable,
                        ..ev
                    });
                    still_ready.push(token);
                }
            }
            // Level-triggered: whatever was ready is checked again next time.
            {
                let mut st = self.shared.state.lock();
                for token in still_ready {
                    if let Some(r) = st.regs.get_mut(&token) {
                        if !r.queued {
                            r.queued = true;
                            st.ready.push(token);
                        }
                    }
                }
            }
            if !events.is_empty() {
                return Ok(events.len());
            }
            if deadline.is_some_and(|d| Instant::now() >= d) {
                return Ok(0);
            }
        }
    }
}

impl Drop for Poller {
    fn drop(&mut self) {
        let regs: Vec<Registration> = self
            .shared
            .state
            .lock()
            .regs
            .drain()
            .map(|(_, r)| r)
            .collect();
        for r in regs {
            r.source.remove_watcher(&self.shared);
        }
    }
}
