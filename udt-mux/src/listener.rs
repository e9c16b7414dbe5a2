//! Listeners: the application handles that take connections from the
//! accept queue (the core endpoint's, filled by the receive thread).

use std::fmt;
use std::io;
use std::marker::PhantomData;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use udt_core::endpoint::ListenerId;
use udt_core::SocketType;

use crate::accept::AcceptSignal;
use crate::conn::ConnShared;
use crate::error;
use crate::handle::UdtSocket;
use crate::mode::{MessageMode, Mode, StreamMode};
use crate::mux::MuxRef;

/// The shared part of both listener types.
#[derive(Debug)]
struct ListenerCore {
    id: ListenerId,
    signal: Arc<AcceptSignal>,
    mux: MuxRef,
    local: SocketAddr,
}

impl ListenerCore {
    fn new(id: ListenerId, signal: Arc<AcceptSignal>, mux: MuxRef) -> ListenerCore {
        let local = mux.shared().local_addr();
        ListenerCore {
            id,
            signal,
            mux,
            local,
        }
    }

    /// Takes the next connection, waiting at most `timeout` (`None`:
    /// forever), and turns its queue ownership into a handle.
    fn accept(&self, timeout: Option<Duration>) -> io::Result<(Arc<ConnShared>, SocketAddr)> {
        let deadline = timeout.map(|t| Instant::now() + t);
        let shared = self.mux.shared();
        let mut reg = shared.registry();
        let conn = loop {
            if !reg.endpoint.is_listening(self.id) || shared.is_aborted() {
                return Err(error::aborted());
            }
            if let Some(h) = reg.endpoint.accept() {
                let ready = reg.endpoint.has_accepted();
                self.signal.set_ready(ready);
                if let Some(conn) = reg.get(h).cloned() {
                    break conn;
                }
                continue;
            }
            if self.signal.is_nonblocking() {
                return Err(error::would_block("no connection to accept yet"));
            }
            match deadline {
                Some(d) => {
                    if self.signal.cond.wait_until(&mut reg, d).timed_out()
                        && !reg.endpoint.has_accepted()
                    {
                        return Err(error::timed_out(
                            "no connection arrived before the accept timeout",
                        ));
                    }
                }
                None => self.signal.cond.wait(&mut reg),
            }
        };
        drop(reg);
        // The application has it now: its whole receive window opens.
        conn.with_connection(|c, _| c.limit_receive_window(None))?;
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
        let unaccepted: Vec<Arc<ConnShared>> = {
            let mut reg = shared.registry();
            let handles = reg.endpoint.close_listener(self.id);
            if reg.listener.as_ref().is_some_and(|l| l.id == self.id) {
                reg.listener = None;
            }
            handles
                .into_iter()
                .filter_map(|h| reg.get(h).cloned())
                .collect()
        };
        self.signal.set_ready(true);
        // Like UDT4, closing a listener closes what it never handed out.
        for conn in unaccepted {
            conn.inner.lock().queued_for_accept = false;
            conn.close_unused();
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
    pub(crate) fn new(id: ListenerId, signal: Arc<AcceptSignal>, mux: MuxRef) -> UdtListener<M> {
        UdtListener {
            core: ListenerCore::new(id, signal, mux),
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
        self.core
            .signal
            .nonblocking
            .store(nonblocking, std::sync::atomic::Ordering::Relaxed);
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

    pub(crate) fn signal(&self) -> &Arc<AcceptSignal> {
        &self.core.signal
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
