//! `Endpoint`: one bound UDP port (one multiplexer) and the operations
//! that create connections on it.

use std::io;
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::{Duration, Instant};

use udt_core::endpoint::{self as core_endpoint, DatagramHandler, ListenerId};
use udt_core::handshake;
use udt_core::{Config, SocketType};

use crate::accept::AcceptSignal;
use crate::config::EndpointConfig;
use crate::conn::ConnShared;
use crate::counters::EndpointStats;
use crate::error::{ConnectError, ListenError};
use crate::listener::{listener_type, UdtListener, UdtMessageListener};
use crate::message::UdtMessageSocket;
use crate::mux::{MuxRef, MuxShared};
use crate::notify::{Notifier, SendCmd};
use crate::recv_queue::{RecvThread, WAKER};
use crate::registry::{random_u64, ListenerEntry, Registry};
use crate::send_queue::SendThread;
use crate::stream::UdtStream;
use crate::udp::UdpPort;

/// One UDP port carrying any number of UDT connections: a listener, the
/// connections it accepted, outgoing and rendezvous connections, all on
/// the same port (UDT4's multiplexer).
///
/// An endpoint owns a send thread and a receive thread. Cloning it is cheap
/// and shares the port; the threads stop when every clone and every handle
/// made from it are dropped and the last connection has finished closing.
/// Two endpoints never share anything.
///
/// # Examples
///
/// ```
/// use std::io::{Read, Write};
/// use udt_mux::{Config, Endpoint};
///
/// # fn main() -> std::io::Result<()> {
/// // One port both accepts and connects.
/// let hub = Endpoint::bind("127.0.0.1:0".parse().unwrap(), Config::default())?;
/// let listener = hub.listen(8)?;
/// let other = Endpoint::bind("127.0.0.1:0".parse().unwrap(), Config::default())?;
/// let other_listener = other.listen(8)?;
///
/// let mut outgoing = hub.connect(other.local_addr())?;   // from the hub's port
/// let mut incoming = other.connect(hub.local_addr())?;   // to the hub's port
/// let (mut a, _) = listener.accept()?;
/// let (mut b, _) = other_listener.accept()?;
///
/// outgoing.write_all(b"x")?;
/// incoming.write_all(b"y")?;
/// let mut buf = [0u8; 1];
/// b.read_exact(&mut buf)?;
/// assert_eq!(&buf, b"x");
/// a.read_exact(&mut buf)?;
/// assert_eq!(&buf, b"y");
/// # Ok(())
/// # }
/// ```
#[derive(Debug, Clone)]
pub struct Endpoint {
    mux: MuxRef,
}

/// How a connection is set up.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Setup {
    Caller,
    Rendezvous,
}

impl Endpoint {
    /// Binds a UDP socket to `addr` (port 0: any free port) with default
    /// [`EndpointConfig`] options; `config` is the default for connections
    /// made through this endpoint.
    ///
    /// # Errors
    /// The socket errors of binding (`AddrInUse`, `AddrNotAvailable`, ...)
    /// or of starting the threads.
    pub fn bind(addr: SocketAddr, config: Config) -> io::Result<Endpoint> {
        Endpoint::bind_with(addr, config, EndpointConfig::default())
    }

    /// Like [`bind`](Self::bind), with explicit socket and thread options.
    ///
    /// # Errors
    /// As [`bind`](Self::bind).
    pub fn bind_with(
        addr: SocketAddr,
        config: Config,
        options: EndpointConfig,
    ) -> io::Result<Endpoint> {
        Ok(Endpoint {
            mux: start(addr, config, options)?,
        })
    }

    /// The bound address, with the port the OS chose for port 0.
    pub fn local_addr(&self) -> SocketAddr {
        self.mux.shared().local_addr()
    }

    /// The default configuration of connections made through this endpoint.
    pub fn config(&self) -> &Config {
        self.mux.shared().config()
    }

    /// Counters of the port: datagrams, system calls, drops by reason, and
    /// the socket buffer sizes the kernel granted.
    pub fn stats(&self) -> EndpointStats {
        self.mux.shared().stats()
    }

    /// Starts accepting stream connections on this port, queueing at most
    /// `backlog` not yet accepted (further callers are refused).
    ///
    /// # Errors
    /// `AlreadyListening` when the endpoint has a listener (one per port, as
    /// in UDT4); `EndpointClosed` after [`abort`](Self::abort).
    pub fn listen(&self, backlog: usize) -> Result<UdtListener, ListenError> {
        let (id, signal) = self.install_listener(backlog, self.config().clone(), false)?;
        Ok(UdtListener::new(id, signal, self.mux.clone()))
    }

    /// Like [`listen`](Self::listen), with a configuration for the accepted
    /// connections (its socket type is forced to stream).
    ///
    /// # Errors
    /// As [`listen`](Self::listen).
    pub fn listen_with(&self, backlog: usize, config: Config) -> Result<UdtListener, ListenError> {
        let (id, signal) = self.install_listener(backlog, config, false)?;
        Ok(UdtListener::new(id, signal, self.mux.clone()))
    }

    /// Starts accepting message-mode connections.
    ///
    /// # Errors
    /// As [`listen`](Self::listen).
    pub fn listen_messages(&self, backlog: usize) -> Result<UdtMessageListener, ListenError> {
        let (id, signal) = self.install_listener(backlog, self.config().clone(), true)?;
        Ok(UdtMessageListener::new(id, signal, self.mux.clone()))
    }

    /// Connects to a UDT listener at `peer` and waits for the handshake,
    /// at most [`Config::connect_timeout`].
    ///
    /// # Errors
    /// See [`ConnectError`]: `TimedOut` when nobody answers, `Rejected` when
    /// the listener refuses.
    pub fn connect(&self, peer: SocketAddr) -> Result<UdtStream, ConnectError> {
        self.connect_with(peer, self.config().clone())
    }

    /// Like [`connect`](Self::connect) with a configuration for this
    /// connection (its socket type is forced to stream).
    ///
    /// # Errors
    /// As [`connect`](Self::connect).
    pub fn connect_with(
        &self,
        peer: SocketAddr,
        config: Config,
    ) -> Result<UdtStream, ConnectError> {
        let conn = self.open(peer, config, SocketType::Stream, Setup::Caller)?;
        Ok(UdtStream::from_conn(conn, self.mux.clone()))
    }

    /// Connects a message-mode connection to a listener at `peer`.
    ///
    /// # Errors
    /// As [`connect`](Self::connect).
    pub fn connect_messages(&self, peer: SocketAddr) -> Result<UdtMessageSocket, ConnectError> {
        let conn = self.open(
            peer,
            self.config().clone(),
            SocketType::Message,
            Setup::Caller,
        )?;
        Ok(UdtMessageSocket::from_conn(conn, self.mux.clone()))
    }

    /// Rendezvous connect: both sides call each other at the same time
    /// (NAT traversal). Each side binds a known port and names the other's
    /// exact address; waits at most [`Config::rendezvous_timeout`].
    ///
    /// # Errors
    /// As [`connect`](Self::connect), plus `RendezvousBusy` when this
    /// endpoint already has a rendezvous with `peer`.
    ///
    /// # Examples
    ///
    /// ```
    /// use std::thread;
    /// use udt_mux::{Config, Endpoint};
    ///
    /// # fn main() -> std::io::Result<()> {
    /// let a = Endpoint::bind("127.0.0.1:0".parse().unwrap(), Config::default())?;
    /// let b = Endpoint::bind("127.0.0.1:0".parse().unwrap(), Config::default())?;
    /// let (a_addr, b_addr) = (a.local_addr(), b.local_addr());
    /// // Keep both streams alive until both sides are connected: a side
    /// // that closes at once can leave the other without its last answer.
    /// let t = thread::spawn(move || b.rendezvous(a_addr));
    /// let stream = a.rendezvous(b_addr)?;
    /// let other = t.join().unwrap()?;
    /// assert_eq!(stream.peer_addr(), b_addr);
    /// assert_eq!(other.peer_addr(), a_addr);
    /// # Ok(())
    /// # }
    /// ```
    pub fn rendezvous(&self, peer: SocketAddr) -> Result<UdtStream, ConnectError> {
        let conn = self.open(
            peer,
            self.config().clone(),
            SocketType::Stream,
            Setup::Rendezvous,
        )?;
        Ok(UdtStream::from_conn(conn, self.mux.clone()))
    }

    /// Rendezvous connect in message mode.
    ///
    /// # Errors
    /// As [`rendezvous`](Self::rendezvous).
    pub fn rendezvous_messages(&self, peer: SocketAddr) -> Result<UdtMessageSocket, ConnectError> {
        let conn = self.open(
            peer,
            self.config().clone(),
            SocketType::Message,
            Setup::Rendezvous,
        )?;
        Ok(UdtMessageSocket::from_conn(conn, self.mux.clone()))
    }

    /// Stops all I/O of this endpoint at once, like a process that dies:
    /// no shutdown is sent, data not yet acknowledged is lost, every handle
    /// made from it fails with `ConnectionAborted`, and peers notice only
    /// through their idle timeout. Meant for tests and emergency exits;
    /// for an orderly end, close the connections.
    pub fn abort(&self) {
        self.mux.shared().abort();
    }

    /// True once [`abort`](Self::abort) was called or the threads stopped.
    pub fn is_aborted(&self) -> bool {
        let mux = self.mux.shared();
        mux.is_aborted() || mux.is_stopped()
    }

    /// Registers the handler of datagrams on this port that are not UDT
    /// (STUN messages and NAT-punch probes by default, see
    /// [`DatagramHandler::recognises`]); replaces and returns the previous
    /// one. The receive thread feeds it, fires its timer and sends what it
    /// has to send; it runs under the endpoint's routing lock, so it must
    /// not block.
    pub fn set_datagram_handler(
        &self,
        handler: Option<Box<dyn DatagramHandler>>,
    ) -> Option<Box<dyn DatagramHandler>> {
        let shared = self.mux.shared();
        let old = shared.registry().endpoint.set_datagram_handler(handler);
        // Its timer may be earlier than anything the receive thread waits for.
        shared.notify().wake_recv();
        old
    }

    fn install_listener(
        &self,
        backlog: usize,
        mut config: Config,
        messages: bool,
    ) -> Result<(ListenerId, Arc<AcceptSignal>), ListenError> {
        if self.is_aborted() {
            return Err(ListenError::EndpointClosed);
        }
        config.socket_type = listener_type(messages);
        let mut reg = self.mux.shared().registry();
        let id = reg
            .endpoint
            .listen(Instant::now(), Arc::new(config), backlog)
            .map_err(|core_endpoint::ListenError::AlreadyListening| {
                ListenError::AlreadyListening
            })?;
        let signal = Arc::new(AcceptSignal::default());
        reg.listener = Some(ListenerEntry {
            id,
            signal: signal.clone(),
        });
        log::debug!("{} listening (backlog {backlog})", self.local_addr());
        Ok((id, signal))
    }

    /// Registers a handshake and waits for its outcome.
    fn open(
        &self,
        peer: SocketAddr,
        mut config: Config,
        socket_type: SocketType,
        setup: Setup,
    ) -> Result<Arc<ConnShared>, ConnectError> {
        let mux = self.mux.shared();
        if self.is_aborted() {
            return Err(ConnectError::EndpointClosed);
        }
        let local = self.local_addr();
        let peer = same_family(local, peer).ok_or(ConnectError::AddressFamily { local, peer })?;
        config.socket_type = socket_type;
        let timeout = match setup {
            Setup::Caller => config.connect_timeout,
            Setup::Rendezvous => config.rendezvous_timeout,
        };
        let config = Arc::new(config);
        let now = Instant::now();
        let conn = {
            let mut reg = mux.registry();
            let (handle, socket) = match setup {
                Setup::Caller => reg.endpoint.connect(now, peer, config),
                Setup::Rendezvous => reg.endpoint.rendezvous(now, peer, config).map_err(
                    |core_endpoint::RendezvousError::Busy| ConnectError::RendezvousBusy { peer },
                )?,
            };
            let conn = ConnShared::new(mux.notify().clone(), handle, socket, 1, false, now);
            reg.insert(conn.clone());
            conn
        };
        // The receive thread sends the first request and arms the retries.
        mux.notify().touch(conn.handle);
        // The handshake machine times out by itself; the extra margin only
        // guards against a stalled endpoint.
        let outcome = conn.blocking(
            |_| Some(timeout + Duration::from_secs(2)),
            "handshake did not finish",
            |g, _now| {
                if g.phase.is_connecting() {
                    None
                } else {
                    Some(Ok(g.phase.failure().map_or(Ok(()), Err)))
                }
            },
        );
        let result = match outcome {
            Ok(Ok(())) => Ok(()),
            Ok(Err(e)) => Err(map_handshake_error(e, peer, timeout)),
            Err(e) if e.kind() == io::ErrorKind::ConnectionAborted => {
                Err(ConnectError::EndpointClosed)
            }
            Err(_) => Err(ConnectError::TimedOut {
                peer,
                after: timeout,
            }),
        };
        match result {
            Ok(()) => Ok(conn),
            Err(e) => {
                // Drop our claim: the receive thread forgets the handshake
                // (or closes the connection if it completed just now).
                conn.release_handle();
                Err(e)
            }
        }
    }
}

/// Binds the socket and starts the send and receive threads of a new
/// multiplexer.
///
/// # Errors
/// Socket errors from binding, or failure to create the poller or the
/// threads.
fn start(addr: SocketAddr, config: Config, options: EndpointConfig) -> io::Result<MuxRef> {
    let port = UdpPort::bind(addr, &options)?;
    let poll = mio::Poll::new()?;
    let waker = mio::Waker::new(poll.registry(), WAKER)?;
    let (notify, inboxes) = Notifier::new(waker);
    let local = port.local_addr();
    let shared = Arc::new(MuxShared::new(
        port,
        Registry::new(random_u64()),
        config,
        options,
        notify,
    ));
    let recv = RecvThread::new(shared.clone(), poll, inboxes.recv)?;
    let send = SendThread::new(shared.clone(), inboxes.send);
    std::thread::Builder::new()
        .name(format!("udt-send {local}"))
        .spawn(move || send.run())?;
    if let Err(e) = std::thread::Builder::new()
        .name(format!("udt-recv {local}"))
        .spawn(move || recv.run())
    {
        shared.notify().send_command(SendCmd::Stop);
        return Err(e);
    }
    log::info!("endpoint bound to {local}");
    Ok(MuxRef::first(shared))
}

/// Names the core's handshake failures in the endpoint's terms.
fn map_handshake_error(
    e: handshake::ConnectError,
    peer: SocketAddr,
    after: Duration,
) -> ConnectError {
    match e {
        handshake::ConnectError::TimedOut => ConnectError::TimedOut { peer, after },
        handshake::ConnectError::Rejected => ConnectError::Rejected { peer },
        other => ConnectError::Handshake(other),
    }
}

/// `peer` expressed in the local socket's address family, if reachable:
/// IPv4 peers of an IPv6 socket become v4-mapped (dual stack), v4-mapped
/// peers of an IPv4 socket become plain IPv4.
fn same_family(local: SocketAddr, peer: SocketAddr) -> Option<SocketAddr> {
    match (local.ip(), peer.ip()) {
        (IpAddr::V4(_), IpAddr::V4(_)) | (IpAddr::V6(_), IpAddr::V6(_)) => Some(peer),
        (IpAddr::V6(_), IpAddr::V4(v4)) => Some(SocketAddr::new(
            IpAddr::V6(v4.to_ipv6_mapped()),
            peer.port(),
        )),
        (IpAddr::V4(_), IpAddr::V6(v6)) => v6
            .to_ipv4_mapped()
            .map(|v4| SocketAddr::new(IpAddr::V4(v4), peer.port())),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::{Read, Write};

    /// Waits (bounded) for the threads of a multiplexer to stop.
    fn stops(mux: &Arc<crate::mux::MuxShared>) -> bool {
        let deadline = Instant::now() + Duration::from_secs(5);
        while Instant::now() < deadline {
            if mux.is_stopped() {
                return true;
            }
            std::thread::sleep(Duration::from_millis(5));
        }
        false
    }

    #[test]
    fn threads_stop_once_everything_is_dropped_and_closed() {
        let config = Config {
            linger: Some(Duration::from_secs(5)),
            ..Config::default()
        };
        let server = Endpoint::bind("127.0.0.1:0".parse().unwrap(), config.clone()).unwrap();
        let client = Endpoint::bind("127.0.0.1:0".parse().unwrap(), config).unwrap();
        let listener = server.listen(1).unwrap();
        let (server_mux, client_mux) = (server.mux.shared().clone(), client.mux.shared().clone());
        let mut s = client.connect(server.local_addr()).unwrap();
        let (mut a, _) = listener.accept().unwrap();
        s.write_all(&[1u8; 100_000]).unwrap();
        // Drop everything on the client side at once: the data must still
        // arrive (background linger) and the client's threads stop after.
        drop(s);
        drop(client);
        let mut got = Vec::new();
        a.read_to_end(&mut got).unwrap();
        assert_eq!(got.len(), 100_000);
        assert!(stops(&client_mux), "client threads still running");
        assert!(!server_mux.is_stopped());
        drop(a);
        drop(listener);
        drop(server);
        assert!(stops(&server_mux), "server threads still running");
        assert_eq!(server_mux.registry().live(), 0);
    }

    #[test]
    fn abort_fails_every_handle_and_stops_the_threads() {
        let server = Endpoint::bind("127.0.0.1:0".parse().unwrap(), Config::default()).unwrap();
        let listener = server.listen(1).unwrap();
        let client = Endpoint::bind("127.0.0.1:0".parse().unwrap(), Config::default()).unwrap();
        let mut s = client.connect(server.local_addr()).unwrap();
        let _accepted = listener.accept().unwrap();
        let mux = server.mux.shared().clone();
        server.abort();
        assert!(stops(&mux));
        assert!(server.is_aborted());
        assert!(matches!(server.listen(1), Err(ListenError::EndpointClosed)));
        assert!(matches!(
            server.connect(client.local_addr()),
            Err(ConnectError::EndpointClosed)
        ));
        assert_eq!(
            listener.accept().unwrap_err().kind(),
            io::ErrorKind::ConnectionAborted
        );
        // The other side is unaffected until its idle timeout.
        s.write_all(b"still fine").unwrap();
    }

    #[test]
    fn address_families() {
        let v4: SocketAddr = "127.0.0.1:1".parse().unwrap();
        let v6: SocketAddr = "[::1]:1".parse().unwrap();
        let mapped: SocketAddr = "[::ffff:127.0.0.1]:2".parse().unwrap();
        assert_eq!(same_family(v4, v4), Some(v4));
        assert_eq!(same_family(v6, v6), Some(v6));
        assert_eq!(same_family(v4, v6), None);
        assert_eq!(
            same_family(v4, mapped),
            Some("127.0.0.1:2".parse().unwrap())
        );
        assert_eq!(
            same_family(v6, "192.0.2.1:5".parse().unwrap()),
            Some("[::ffff:192.0.2.1]:5".parse().unwrap())
        );
    }
}
