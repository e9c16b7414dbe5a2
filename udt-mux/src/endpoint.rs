//! `Endpoint`: one bound UDP port (one multiplexer) and the operations
//! that create connections on it.

use std::io;
use std::net::{IpAddr, SocketAddr, ToSocketAddrs};
use std::sync::Arc;
use std::time::{Duration, Instant};

use udt_core::endpoint::{self as core_endpoint, DatagramHandler, ListenerId};
use udt_core::handshake;
use udt_core::{Config, SocketType};

use crate::accept::AcceptSignal;
use crate::config::EndpointConfig;
use crate::conn::{ConnShared, WaitFor};
use crate::counters::EndpointStats;
use crate::error::{self, ConnectError, ListenError};
use crate::handle::UdtSocket;
use crate::listener::{listener_type, UdtListener};
use crate::mode::Mode;
use crate::mux::{MuxRef, MuxShared};
use crate::notify::{Notifier, SendCmd};
use crate::options::Options;
use crate::recv_aux::{AuxRecvThread, AUX_WAKER};
use crate::recv_queue::{RecvThread, WAKER};
use crate::registry::{random_key, ListenerEntry, Registry};
use crate::send_queue::SendThread;
use crate::stream::UdtStream;
use crate::udp::{reuseport, UdpPort};

#[cfg(doc)]
use crate::{ConfigError, UdtMessageSocket};

/// One UDP port carrying any number of UDT connections: a listener, the
/// connections it accepted, outgoing and rendezvous connections, all on
/// the same port (UDT4's multiplexer).
///
/// An endpoint owns a send thread and a receive thread. Cloning it is cheap
/// and shares the port; the threads stop when every clone and every handle
/// made from it are dropped and the last connection has finished closing.
/// Two endpoints never share anything.
///
/// Connections are byte streams unless [`Options`] say otherwise:
///
/// | to open | stream ([`UdtStream`]) | messages ([`UdtMessageSocket`]) |
/// |---|---|---|
/// | listener | `listen(backlog)` | `listen_with(backlog, Options::messages())` |
/// | connection to a listener | `connect(addr)` | `connect_with(addr, Options::messages())` |
/// | rendezvous | `rendezvous(addr)` | `rendezvous_with(addr, Options::messages())` |
///
/// The `_with` forms also take a [`Config`] for that connection
/// (`Options::stream().config(c)`); the others use the endpoint's default,
/// given at [`bind_with`](Self::bind_with).
///
/// # Examples
///
/// ```
/// use std::io::{Read, Write};
/// use udt_mux::Endpoint;
///
/// # fn main() -> std::io::Result<()> {
/// // One port both accepts and connects.
/// let hub = Endpoint::bind("127.0.0.1:0")?;
/// let listener = hub.listen(8)?;
/// let other = Endpoint::bind("127.0.0.1:0")?;
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
    /// Binds a UDP socket to `addr` (port 0: any free port) with the
    /// default [`Config`] for its connections and default
    /// [`EndpointConfig`] options. When `addr` resolves to several
    /// addresses, the first that can be bound is used.
    ///
    /// # Errors
    /// `InvalidInput` when `addr` resolves to no address; otherwise the
    /// socket errors of binding the last address tried (`AddrInUse`,
    /// `AddrNotAvailable`, ...) or of starting the threads.
    pub fn bind(addr: impl ToSocketAddrs) -> io::Result<Endpoint> {
        Endpoint::bind_with(addr, Config::default(), EndpointConfig::default())
    }

    /// Like [`bind`](Self::bind), with the default `config` of connections
    /// made through this endpoint and explicit socket and thread `options`.
    ///
    /// # Errors
    /// As [`bind`](Self::bind), and `InvalidInput` with a
    /// [`ConfigError`] inside (see [`io::Error::get_ref`]) when `config` or
    /// `options` is out of range.
    pub fn bind_with(
        addr: impl ToSocketAddrs,
        config: Config,
        options: EndpointConfig,
    ) -> io::Result<Endpoint> {
        options.validate().map_err(error::invalid_config)?;
        options
            .check_connection(&config)
            .map_err(error::invalid_config)?;
        let addrs = addr.to_socket_addrs().map_err(|e| {
            io::Error::new(e.kind(), format!("cannot resolve the bind address: {e}"))
        })?;
        let mut last = None;
        for addr in addrs {
            match start(addr, config.clone(), options.clone()) {
                Ok(mux) => return Ok(Endpoint { mux }),
                Err(e) => {
                    log::debug!("cannot bind {addr}: {e}");
                    last = Some(e);
                }
            }
        }
        Err(last.unwrap_or_else(|| {
            io::Error::new(
                io::ErrorKind::InvalidInput,
                "the bind address resolves to no address",
            )
        }))
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
        self.listen_with(backlog, Options::stream())
    }

    /// Starts accepting connections of the kind `options` name (streams or
    /// messages; callers of the other kind are refused), with the
    /// configuration `options` give for the accepted connections.
    ///
    /// ```
    /// use udt_mux::{Endpoint, Options};
    ///
    /// # fn main() -> std::io::Result<()> {
    /// let server = Endpoint::bind("127.0.0.1:0")?;
    /// let listener = server.listen_with(16, Options::messages())?;
    /// # let _ = listener;
    /// # Ok(())
    /// # }
    /// ```
    ///
    /// # Errors
    /// As [`listen`](Self::listen), and `InvalidConfig` when the
    /// configuration is out of range.
    pub fn listen_with<M: Mode>(
        &self,
        backlog: usize,
        options: Options<M>,
    ) -> Result<UdtListener<M>, ListenError> {
        let config = options.config_or(self.config());
        self.mux
            .shared()
            .options()
            .check_connection(&config)
            .map_err(ListenError::InvalidConfig)?;
        let messages = M::SOCKET_TYPE == SocketType::Message;
        let (id, signal) = self.install_listener(backlog, config, messages)?;
        Ok(UdtListener::new(id, signal, self.mux.clone()))
    }

    /// Connects a byte stream to a UDT listener at `addr` and waits for the
    /// handshake, at most [`Config::connect_timeout`] per address. When
    /// `addr` resolves to several addresses, each is tried in turn until
    /// one connects.
    ///
    /// # Errors
    /// See [`ConnectError`]: `TimedOut` when nobody answers, `Rejected` when
    /// the listener refuses, `Resolve` when `addr` resolves to no address;
    /// when every address failed, the error of the last one tried.
    pub fn connect(&self, addr: impl ToSocketAddrs) -> Result<UdtStream, ConnectError> {
        self.connect_with(addr, Options::stream())
    }

    /// Connects a connection of the kind and configuration `options` name.
    ///
    /// ```
    /// use std::time::Duration;
    /// use udt_mux::{Config, Endpoint, Options};
    ///
    /// # fn main() -> std::io::Result<()> {
    /// let server = Endpoint::bind("127.0.0.1:0")?;
    /// let _listener = server.listen(1)?;
    /// let client = Endpoint::bind("127.0.0.1:0")?;
    /// let mut config = client.config().clone();
    /// config.connect_timeout = Duration::from_secs(1);
    /// let stream = client.connect_with(server.local_addr(), Options::stream().config(config))?;
    /// assert_eq!(stream.peer_addr(), server.local_addr());
    /// # Ok(())
    /// # }
    /// ```
    ///
    /// # Errors
    /// As [`connect`](Self::connect), and `InvalidConfig` when the
    /// configuration is out of range.
    pub fn connect_with<M: Mode>(
        &self,
        addr: impl ToSocketAddrs,
        options: Options<M>,
    ) -> Result<UdtSocket<M>, ConnectError> {
        let conn = self.open_each(addr, options, Setup::Caller)?;
        Ok(UdtSocket::from_conn(conn, self.mux.clone()))
    }

    /// Rendezvous connect of a byte stream: both sides call each other at
    /// the same time (NAT traversal). Each side binds a known port and names
    /// the other's exact address; waits at most [`Config::rendezvous_timeout`]
    /// per address (several resolved addresses are tried in turn).
    ///
    /// # Errors
    /// As [`connect`](Self::connect), plus `RendezvousBusy` when this
    /// endpoint already has a rendezvous with the peer.
    ///
    /// # Examples
    ///
    /// ```
    /// use std::thread;
    /// use udt_mux::Endpoint;
    ///
    /// # fn main() -> std::io::Result<()> {
    /// let a = Endpoint::bind("127.0.0.1:0")?;
    /// let b = Endpoint::bind("127.0.0.1:0")?;
    /// let (a_addr, b_addr) = (a.local_addr(), b.local_addr());
    /// // Keep both streams alive until both sides are connected: a side
    /// // that closes at once can leave the other without its last answer.
    /// let t = thread::spawn(move || b.rendezvous(a_addr));
    /// let stream = a.rendezvous(b_addr)?;
    /// let other = t.join().expect("rendezvous thread")?;
    /// assert_eq!(stream.peer_addr(), b_addr);
    /// assert_eq!(other.peer_addr(), a_addr);
    /// # Ok(())
    /// # }
    /// ```
    pub fn rendezvous(&self, addr: impl ToSocketAddrs) -> Result<UdtStream, ConnectError> {
        self.rendezvous_with(addr, Options::stream())
    }

    /// Rendezvous connect of the kind and configuration `options` name.
    ///
    /// # Errors
    /// As [`rendezvous`](Self::rendezvous), and `InvalidConfig` when the
    /// configuration is out of range.
    pub fn rendezvous_with<M: Mode>(
        &self,
        addr: impl ToSocketAddrs,
        options: Options<M>,
    ) -> Result<UdtSocket<M>, ConnectError> {
        let conn = self.open_each(addr, options, Setup::Rendezvous)?;
        Ok(UdtSocket::from_conn(conn, self.mux.clone()))
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

    /// Checks the configuration, resolves `addr` and opens a connection to
    /// each address in turn until one succeeds.
    fn open_each<M: Mode>(
        &self,
        addr: impl ToSocketAddrs,
        options: Options<M>,
        setup: Setup,
    ) -> Result<Arc<ConnShared>, ConnectError> {
        let config = options.config_or(self.config());
        self.mux
            .shared()
            .options()
            .check_connection(&config)
            .map_err(ConnectError::InvalidConfig)?;
        let addrs: Vec<SocketAddr> = addr
            .to_socket_addrs()
            .map_err(|e| ConnectError::Resolve(Arc::new(e)))?
            .collect();
        let mut failure = None;
        for peer in addrs {
            match self.open(peer, config.clone(), M::SOCKET_TYPE, setup) {
                Ok(conn) => return Ok(conn),
                Err(ConnectError::EndpointClosed) => return Err(ConnectError::EndpointClosed),
                Err(e) => {
                    log::debug!("{peer}: {e}");
                    failure = Some(more_telling(failure, e));
                }
            }
        }
        Err(failure.unwrap_or_else(|| {
            ConnectError::Resolve(Arc::new(io::Error::new(
                io::ErrorKind::InvalidInput,
                "the address resolves to no address",
            )))
        }))
    }

    fn install_listener(
        &self,
        backlog: usize,
        config: Config,
        messages: bool,
    ) -> Result<(ListenerId, Arc<AcceptSignal>), ListenError> {
        if self.is_aborted() {
            return Err(ListenError::EndpointClosed);
        }
        let config = config.with_socket_type(listener_type(messages));
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
        config: Config,
        socket_type: SocketType,
        setup: Setup,
    ) -> Result<Arc<ConnShared>, ConnectError> {
        let mux = self.mux.shared();
        if self.is_aborted() {
            return Err(ConnectError::EndpointClosed);
        }
        let local = self.local_addr();
        let peer = same_family(local, peer).ok_or(ConnectError::AddressFamily { local, peer })?;
        let config = config.with_socket_type(socket_type);
        let timeout = match setup {
            Setup::Caller => config.connect_timeout,
            Setup::Rendezvous => config.rendezvous_timeout,
        };
        let config = Arc::new(config);
        let now = Instant::now();
        let (conn, live) = {
            let mut reg = mux.registry();
            let (handle, socket) = match setup {
                Setup::Caller => reg.endpoint.connect(now, peer, config),
                Setup::Rendezvous => reg.endpoint.rendezvous(now, peer, config).map_err(
                    |core_endpoint::RendezvousError::Busy| ConnectError::RendezvousBusy { peer },
                )?,
            };
            let conn = ConnShared::new(mux.notify().clone(), handle, socket, 1, false, now);
            reg.insert(conn.clone());
            (conn, reg.live())
        };
        mux.fit_recv_buffers(live);
        // The receive thread sends the first request and arms the retries.
        mux.notify().touch(conn.handle);
        // The handshake machine times out by itself; the extra margin only
        // guards against a stalled endpoint.
        let outcome = conn.blocking(
            WaitFor::State,
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
    let sockets = options.effective_sockets();
    let port = UdpPort::bind_with(addr, &options, sockets > 1)?;
    let local = port.local_addr();
    let mut more = Vec::with_capacity(sockets - 1);
    for _ in 1..sockets {
        more.push(UdpPort::bind_with(local, &options, true)?);
    }
    if sockets > 1 {
        // Without the program the kernel still keeps each peer address on
        // one socket (its hash of the addresses); steering by socket ID
        // only spreads the connections of one peer too.
        if let Err(e) = reuseport::attach(port.socket(), sockets as u32) {
            log::warn!("{local}: no socket-ID steering over {sockets} sockets: {e}");
        }
    }
    let poll = mio::Poll::new()?;
    let waker = mio::Waker::new(poll.registry(), WAKER)?;
    let mut aux_polls = Vec::with_capacity(more.len());
    let mut aux_wakers = Vec::with_capacity(more.len());
    for _ in &more {
        let p = mio::Poll::new()?;
        aux_wakers.push(mio::Waker::new(p.registry(), AUX_WAKER)?);
        aux_polls.push(p);
    }
    let (notify, inboxes) = Notifier::new(waker, sockets);
    let shared = Arc::new(MuxShared::new(
        port,
        more,
        aux_wakers,
        Registry::new(random_key()?),
        config,
        options,
        notify,
    ));
    let recv = RecvThread::new(shared.clone(), poll, inboxes.recv)?;
    let mut aux = Vec::with_capacity(aux_polls.len());
    for (i, p) in aux_polls.into_iter().enumerate() {
        aux.push(AuxRecvThread::new(shared.clone(), i + 1, p)?);
    }
    for (i, rx) in inboxes.send.into_iter().enumerate() {
        let send = SendThread::new(shared.clone(), rx, i);
        let name = if i == 0 {
            format!("udt-send {local}")
        } else {
            format!("udt-send{i} {local}")
        };
        if let Err(e) = std::thread::Builder::new()
            .name(name)
            .spawn(move || send.run())
        {
            // The send threads already running stop on `Stop`.
            shared.notify().send_command(SendCmd::Stop);
            return Err(e);
        }
    }
    if let Err(e) = std::thread::Builder::new()
        .name(format!("udt-recv {local}"))
        .spawn(move || recv.run())
    {
        shared.notify().send_command(SendCmd::Stop);
        return Err(e);
    }
    for (i, t) in aux.into_iter().enumerate() {
        if let Err(e) = std::thread::Builder::new()
            .name(format!("udt-recv{} {local}", i + 1))
            .spawn(move || t.run())
        {
            // The primary thread runs: aborting stops it and the others.
            shared.abort();
            return Err(e);
        }
    }
    log::info!("endpoint bound to {local} ({sockets} socket(s))");
    Ok(MuxRef::first(shared))
}

/// Of two failures to connect, the one to report: an address of the wrong
/// family says less than an attempt that reached the network, so it gives
/// way to any later error; otherwise the latest wins (as for
/// `std::net::TcpStream::connect`).
fn more_telling(earlier: Option<ConnectError>, later: ConnectError) -> ConnectError {
    match (earlier, later) {
        (Some(earlier), ConnectError::AddressFamily { .. })
            if !matches!(earlier, ConnectError::AddressFamily { .. }) =>
        {
            earlier
        }
        (_, later) => later,
    }
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

    use crate::ConfigError;

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

    fn bind_with(config: Config) -> Endpoint {
        Endpoint::bind_with("127.0.0.1:0", config, EndpointConfig::default()).unwrap()
    }

    #[test]
    fn threads_stop_once_everything_is_dropped_and_closed() {
        let mut config = Config::default();
        config.linger = Some(Duration::from_secs(5));
        let server = bind_with(config.clone());
        let client = bind_with(config);
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
        let server = Endpoint::bind("127.0.0.1:0").unwrap();
        let listener = server.listen(1).unwrap();
        let client = Endpoint::bind("127.0.0.1:0").unwrap();
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

    /// A UDP socket that never answers, and a config that gives up on it
    /// quickly.
    fn silent_peer() -> (std::net::UdpSocket, Config) {
        let silent = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
        let mut config = Config::default();
        config.connect_timeout = Duration::from_millis(200);
        (silent, config)
    }

    #[test]
    fn addresses_that_do_not_resolve_are_reported_as_such() {
        let client = Endpoint::bind(("127.0.0.1", 0)).unwrap();
        let err = client.connect("no port here").unwrap_err();
        assert!(matches!(err, ConnectError::Resolve(_)), "{err:?}");
        let none: &[SocketAddr] = &[];
        let err = client.connect(none).unwrap_err();
        assert!(matches!(err, ConnectError::Resolve(_)), "{err:?}");
        assert!(err.to_string().contains("no address"), "{err}");
        let err = Endpoint::bind(none).unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::InvalidInput);
        let err = Endpoint::bind("no port here").unwrap_err();
        assert!(err.to_string().contains("bind address"), "{err}");
    }

    #[test]
    fn each_resolved_address_is_tried_until_one_connects() {
        let server = Endpoint::bind("127.0.0.1:0").unwrap();
        let listener = server.listen(4).unwrap();
        let (silent, config) = silent_peer();
        let client = bind_with(config);
        let unreachable: SocketAddr = "[::1]:9".parse().unwrap();
        let dead = silent.local_addr().unwrap();
        let addrs = [unreachable, dead, server.local_addr()];
        let stream = client.connect(&addrs[..]).unwrap();
        assert_eq!(stream.peer_addr(), server.local_addr());
        let (_accepted, peer) = listener.accept().unwrap();
        assert_eq!(peer, client.local_addr());
        // When all fail, the attempt that reached the network is reported,
        // not the address of the wrong family that came after it.
        let err = client.connect(&[dead, unreachable][..]).unwrap_err();
        assert!(
            matches!(err, ConnectError::TimedOut { peer, .. } if peer == dead),
            "{err:?}"
        );
        let err = client.connect(unreachable).unwrap_err();
        assert!(matches!(err, ConnectError::AddressFamily { .. }), "{err:?}");
    }

    #[test]
    fn configurations_are_checked_where_they_enter() {
        let mut bad = Config::default();
        bad.peer_idle_timeout = Duration::ZERO;
        let err =
            Endpoint::bind_with("127.0.0.1:0", bad.clone(), EndpointConfig::default()).unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::InvalidInput);
        let inner = err.get_ref().and_then(|e| e.downcast_ref::<ConfigError>());
        assert!(
            matches!(
                inner,
                Some(ConfigError::DurationOutOfRange {
                    field: "Config.peer_idle_timeout",
                    ..
                })
            ),
            "{err}"
        );
        let options = EndpointConfig {
            batch_size: 0,
            ..EndpointConfig::default()
        };
        let err = Endpoint::bind_with("127.0.0.1:0", Config::default(), options).unwrap_err();
        assert!(
            err.to_string().contains("EndpointConfig.batch_size"),
            "{err}"
        );

        let endpoint = Endpoint::bind("127.0.0.1:0").unwrap();
        let err = endpoint
            .connect_with("127.0.0.1:9", Options::stream().config(bad.clone()))
            .unwrap_err();
        assert!(matches!(err, ConnectError::InvalidConfig(_)), "{err:?}");
        let err = endpoint
            .rendezvous_with("127.0.0.1:9", Options::messages().config(bad.clone()))
            .unwrap_err();
        assert!(matches!(err, ConnectError::InvalidConfig(_)), "{err:?}");
        let err = endpoint
            .listen_with(1, Options::messages().config(bad))
            .unwrap_err();
        assert!(matches!(err, ListenError::InvalidConfig(_)), "{err:?}");
        // Nothing was installed: a valid listener can still be made.
        assert!(endpoint.listen(1).is_ok());

        // Packets larger than the endpoint's datagram slots are refused.
        let small = EndpointConfig {
            max_datagram: 1472,
            ..EndpointConfig::default()
        };
        let endpoint = Endpoint::bind_with("127.0.0.1:0", Config::default(), small).unwrap();
        let mut jumbo = Config::default();
        jumbo.mss = 9000;
        let err = endpoint
            .connect_with("127.0.0.1:9", Options::stream().config(jumbo))
            .unwrap_err();
        assert!(matches!(err, ConnectError::InvalidConfig(_)), "{err:?}");
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
