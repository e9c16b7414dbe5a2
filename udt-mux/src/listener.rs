//! Listeners: the accept queue the receive thread fills and the
//! application handles that take connections from it.

use std::collections::VecDeque;
use std::fmt;
use std::io;
use std::marker::PhantomData;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use parking_lot::{Condvar, Mutex};
use udt_core::SocketType;

use crate::conn::{ConnShared, Watchers};
use crate::error;
use crate::handle::UdtSocket;
use crate::mode::{MessageMode, Mode, StreamMode};
use crate::mux::MuxRef;

/// The accept queue of a listener.
#[derive(Debug, Default)]
pub(crate) struct AcceptQueue {
    ready: VecDeque<Arc<ConnShared>>,
    closed: bool,
    nonblocking: bool,
}

/// State shared by the receive thread (producer) and the listener handle.
#[derive(Debug)]
pub(crate) struct ListenerShared {
    queue: Mutex<AcceptQueue>,
    cond: Condvar,
    backlog: usize,
    pub(crate) watchers: Watchers,
}

impl ListenerShared {
    pub(crate) fn new(backlog: usize) -> ListenerShared {
        ListenerShared {
            queue: Mutex::new(AcceptQueue::default()),
            cond: Condvar::new(),
            backlog: backlog.max(1),
            watchers: Watchers::default(),
        }
    }

    /// True while the queue can take another connection.
    pub(crate) fn has_room(&self) -> bool {
        let q = self.queue.lock();
        !q.closed && q.ready.len() < self.backlog
    }

    /// Queues a new connection; false when the listener is closed.
    pub(crate) fn push(&self, conn: Arc<ConnShared>) -> bool {
        {
            let mut q = self.queue.lock();
            if q.closed {
                return false;
            }
            q.ready.push_back(conn);
        }
        self.cond.notify_one();
        self.watchers.notify();
        true
    }

    /// True when `accept` would not block.
    pub(crate) fn is_ready(&self) -> bool {
        let q = self.queue.lock();
        q.closed || !q.ready.is_empty()
    }

    /// Closes the queue; returns what was never accepted.
    pub(crate) fn close(&self) -> Vec<Arc<ConnShared>> {
        let rest = {
            let mut q = self.queue.lock();
            q.closed = true;
            q.ready.drain(..).collect()
        };
        self.cond.notify_all();
        self.watchers.notify();
        rest
    }

    /// Takes the next connection, waiting at most `timeout` (`None`: forever).
    fn pop(&self, timeout: Option<Duration>) -> io::Result<Arc<ConnShared>> {
        let deadline = timeout.map(|t| Instant::now() + t);
        let mut q = self.queue.lock();
        loop {
            if let Some(c) = q.ready.pop_front() {
                return Ok(c);
            }
            if q.closed {
                return Err(error::aborted());
            }
            if q.nonblocking {
                return Err(error::would_block("no connection to accept yet"));
            }
            match deadline {
                Some(d) => {
                    if self.cond.wait_until(&mut q, d).timed_out() && q.ready.is_empty() {
                        return Err(error::timed_out(
                            "no connection arrived before the accept timeout",
                        ));
                    }
                }
                None => self.cond.wait(&mut q),
            }
        }
    }
}

/// The shared part of both listener types.
#[derive(Debug)]
struct ListenerCore {
    shared: Arc<ListenerShared>,
    mux: MuxRef,
    local: SocketAddr,
}

impl ListenerCore {
    /// Takes a connection and turns its queue ownership into a handle.
    fn accept(&self, timeout: Option<Duration>) -> io::Result<(Arc<ConnShared>, SocketAddr)> {
        let conn = self.shared.pop(timeout)?;
        {
            let mut g = conn.inner.lock();
            g.queued_for_accept = false;
            g.handles += 1;
        }
        let peer = conn.peer;
        Ok((conn, peer))
    }
}

impl Drop for ListenerCore {
    fn drop(&mut self) {
        let shared = self.mux.shared();
        {
            let mut reg = shared.registry.lock();
            if reg
                .listener
                .as_ref()
                .is_some_and(|l| Arc::ptr_eq(&l.shared, &self.shared))
            {
                reg.listener = None;
            }
        }
        // Like UDT4, closing a listener closes what it never handed out.
        for conn in self.shared.close() {
            let wake = {
                let mut g = conn.inner.lock();
                g.queued_for_accept = false;
                let now = g.clock(Instant::now());
                if let Some(c) = g.phase.connection() {
                    c.close(now);
                }
                g.settle(shared, crate::conn::Role::App)
            };
            conn.run_wake(wake, crate::conn::Role::App);
        }
    }
}

/// Accepts connections of kind `M` on an endpoint's port: streams
/// (`UdtListener`, the default) or message sockets
/// ([`UdtMessageListener`]). Dropping it stops accepting and closes
/// connections that were queued but never accepted.
///
/// # Examples
///
/// ```
/// use std::io::{Read, Write};
/// use udt_mux::Endpoint;
///
/// # fn main() -> std::io::Result<()> {
/// let server = Endpoint::bind("127.0.0.1:0")?;
/// let listener = server.listen(16)?;
/// let client = Endpoint::bind("127.0.0.1:0")?;
/// let mut stream = client.connect(server.local_addr())?;
/// let (mut accepted, peer) = listener.accept()?;
/// assert_eq!(peer, client.local_addr());
/// stream.write_all(b"hello")?;
/// let mut buf = [0u8; 5];
/// accepted.read_exact(&mut buf)?;
/// assert_eq!(&buf, b"hello");
/// # Ok(())
/// # }
/// ```
pub struct UdtListener<M: Mode = StreamMode> {
    core: ListenerCore,
    mode: PhantomData<M>,
}

/// Accepts message-mode connections ([`UdtMessageSocket`](crate::UdtMessageSocket)).
///
/// # Examples
///
/// ```
/// use udt_mux::{Endpoint, Options};
///
/// # fn main() -> std::io::Result<()> {
/// let server = Endpoint::bind("127.0.0.1:0")?;
/// let listener = server.listen_with(16, Options::messages())?;
/// let client = Endpoint::bind("127.0.0.1:0")?;
/// let socket = client.connect_with(server.local_addr(), Options::messages())?;
/// let (accepted, _) = listener.accept()?;
/// socket.send_msg(b"one message")?;
/// assert_eq!(accepted.recv_msg()?.as_deref(), Some(&b"one message"[..]));
/// # Ok(())
/// # }
/// ```
pub type UdtMessageListener = UdtListener<MessageMode>;

impl<M: Mode> fmt::Debug for UdtListener<M> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("UdtListener")
            .field("mode", &std::any::type_name::<M>())
            .field("local", &self.core.local)
            .finish_non_exhaustive()
    }
}

impl<M: Mode> UdtListener<M> {
    pub(crate) fn new(shared: Arc<ListenerShared>, mux: MuxRef) -> UdtListener<M> {
        let local = mux.shared().port.local_addr();
        UdtListener {
            core: ListenerCore { shared, mux, local },
            mode: PhantomData,
        }
    }

    /// Waits for the next connection; returns it and the peer's address.
    ///
    /// # Errors
    /// `WouldBlock` in non-blocking mode when none is queued;
    /// `ConnectionAborted` after the endpoint was aborted.
    pub fn accept(&self) -> io::Result<(UdtSocket<M>, SocketAddr)> {
        let (conn, peer) = self.core.accept(None)?;
        Ok((UdtSocket::from_conn(conn, self.core.mux.clone()), peer))
    }

    /// Like [`accept`](Self::accept), giving up after `timeout`.
    ///
    /// # Errors
    /// `TimedOut` when no connection arrived in time; otherwise as `accept`.
    pub fn accept_timeout(&self, timeout: Duration) -> io::Result<(UdtSocket<M>, SocketAddr)> {
        let (conn, peer) = self.core.accept(Some(timeout))?;
        Ok((UdtSocket::from_conn(conn, self.core.mux.clone()), peer))
    }

    /// Makes `accept` return `WouldBlock` instead of waiting.
    pub fn set_nonblocking(&self, nonblocking: bool) {
        self.core.shared.queue.lock().nonblocking = nonblocking;
    }

    /// The address the listener accepts on (the endpoint's).
    pub fn local_addr(&self) -> SocketAddr {
        self.core.local
    }

    /// An iterator over accepted connections (blocking), like
    /// `std::net::TcpListener::incoming`.
    pub fn incoming(&self) -> impl Iterator<Item = io::Result<UdtSocket<M>>> + '_ {
        std::iter::from_fn(move || Some(self.accept().map(|(s, _)| s)))
    }

    pub(crate) fn shared(&self) -> &Arc<ListenerShared> {
        &self.core.shared
    }
}

/// The socket type a listener of this kind accepts.
pub(crate) fn listener_type(messages: bool) -> SocketType {
    if messages {
        SocketType::Message
    } else {
        SocketType::Stream
    }
}
