//! The transports the commands run over: UDT streams and message sockets
//! from `udt-mux` (the real thing), and TCP (`--transport tcp`, to compare
//! and to test the application protocol apart from UDT). Everything above
//! this module sees a [`Conn`] that is `Read + Write` plus an orderly
//! [`Conn::finish`] and a [`LinkStats`] snapshot.

use std::fmt;
use std::io::{self, Read, Write};
use std::net::{
    IpAddr, Ipv4Addr, Ipv6Addr, Shutdown, SocketAddr, TcpListener, TcpStream, ToSocketAddrs,
};
use std::time::Duration;

use serde::Serialize;
use udt_mux::{
    Config, Endpoint, EndpointConfig, Options, UdtListener, UdtMessageListener, UdtMessageSocket,
    UdtStream,
};

/// Which transport to use.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default, clap::ValueEnum, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Transport {
    /// UDT4 over UDP (the default).
    #[default]
    Udt,
    /// Plain TCP, for comparison and debugging.
    Tcp,
}

impl fmt::Display for Transport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Transport::Udt => "UDT",
            Transport::Tcp => "TCP",
        })
    }
}

/// Transport options shared by the commands.
#[derive(Clone, Debug, Default)]
pub struct NetOptions {
    /// UDT or TCP.
    pub transport: Transport,
    /// UDT maximum segment size (bytes, IP and UDP headers included).
    pub mss: Option<u32>,
    /// Cap on the sending rate, bytes per second.
    pub max_rate: Option<u64>,
    /// UDT send and receive buffers, in packets.
    pub buffer_packets: Option<u32>,
    /// UDT congestion control (default: the library's).
    pub cc: Option<udt_core::cc::CcAlgorithm>,
    /// How long to try to connect.
    pub connect_timeout: Option<Duration>,
    /// How long a close may still try to deliver unacknowledged data
    /// before it sends the shutdown anyway (default: the library's). `udt
    /// send` closes only after the receiver confirmed everything, so it
    /// uses a short one: after Ctrl-C the shutdown then reaches the
    /// receiver at once instead of after the queued data.
    pub linger: Option<Duration>,
    /// Plain UDT4 or secure mode (issue 11); see [`crate::secure`].
    pub security: udt_mux::Security,
    /// UDP sockets on this side's port, each with its own receive and
    /// send thread (`EndpointConfig::sockets`; default 1).
    pub sockets: Option<usize>,
}

impl NetOptions {
    /// The UDT connection configuration these options describe.
    pub fn udt_config(&self) -> Config {
        let mut c = Config::default();
        if let Some(mss) = self.mss {
            c.mss = mss.clamp(udt_core::config::MIN_MSS, 65_535);
        }
        c.max_bandwidth = self.max_rate;
        if let Some(p) = self.buffer_packets {
            let p = p.max(32);
            c.send_buffer_packets = p;
            c.recv_buffer_packets = p;
            c.flow_window = c.flow_window.max(p);
        }
        if let Some(t) = self.connect_timeout {
            c.connect_timeout = t;
        }
        if let Some(cc) = self.cc {
            c = c.with_congestion(cc);
        }
        if let Some(l) = self.linger {
            c.linger = Some(l);
        }
        c.security = self.security.clone();
        c
    }

    pub(crate) fn endpoint_config() -> EndpointConfig {
        let mut options = EndpointConfig::default();
        options.udp_send_buffer = Some(8 << 20);
        options.udp_recv_buffer = Some(8 << 20);
        options
    }

    /// An endpoint of these options on `addr`; on the IPv6 wildcard it
    /// accepts IPv4 too (see [`Listener::bind`]).
    fn bind_udt(&self, addr: SocketAddr) -> io::Result<Endpoint> {
        let mut options = NetOptions::endpoint_config();
        if let Some(n) = self.sockets {
            options.sockets = n;
        }
        if is_v6_wildcard(addr) {
            options.only_v6 = Some(false);
        }
        Endpoint::bind_with(addr, self.udt_config(), options)
    }
}

/// Connections that may wait to be accepted: a `udt bench -P 1024` test
/// opens all of its connections at once, and a busy server may accept them
/// more slowly than their handshakes complete (at 64, the rest of a
/// `-P 128` were refused). A connection nobody accepted yet holds a narrow
/// window and no buffers (~40 kB), and each took a cookie round trip.
const LISTEN_BACKLOG: usize = 1024;

/// Link-level counters for the summaries; `None` where the transport
/// cannot tell (TCP).
#[derive(Clone, Copy, Debug, Default, PartialEq, Serialize)]
pub struct LinkStats {
    /// Smoothed round-trip time, milliseconds.
    pub rtt_ms: Option<f64>,
    /// Data packets sent, retransmissions included.
    pub packets_sent: Option<u64>,
    /// Data packets retransmitted.
    pub packets_retransmitted: Option<u64>,
    /// Data packets received.
    pub packets_received: Option<u64>,
    /// Packets this side found missing on arrival (gaps).
    pub packets_lost: Option<u64>,
    /// Packets the peer reported lost to us (NAKs).
    pub packets_reported_lost: Option<u64>,
    /// Retransmission timeouts.
    pub timeouts: Option<u64>,
    /// Payload bytes sent, retransmissions included.
    pub bytes_sent: Option<u64>,
    /// Payload bytes received.
    pub bytes_received: Option<u64>,
}

/// ACKs a connection must have exchanged before its smoothed RTT is shown:
/// the estimate starts at UDT4's 100 ms and moves 1/8 of the way to each
/// sample, so after a handful it still mostly shows the start value (the
/// 77-87 ms reported on loopback after short transfers). After 32 samples
/// less than 2 % of the start value is left.
pub const RTT_MIN_SAMPLES: u64 = 32;

impl LinkStats {
    fn from_udt(s: &udt_mux::Stats) -> LinkStats {
        let samples = s.acks_received.max(s.acks_sent);
        LinkStats {
            rtt_ms: (samples >= RTT_MIN_SAMPLES)
                .then(|| crate::ui::round3(s.rtt.as_secs_f64() * 1e3)),
            packets_sent: Some(s.packets_sent),
            packets_retransmitted: Some(s.packets_retransmitted),
            packets_received: Some(s.packets_received),
            packets_lost: Some(s.packets_lost),
            packets_reported_lost: Some(s.packets_reported_lost),
            timeouts: Some(s.timeouts),
            bytes_sent: Some(s.bytes_sent),
            bytes_received: Some(s.bytes_received),
        }
    }

    /// Loss as seen by this side: packets found missing (receiver) plus
    /// packets the peer reported lost (sender).
    pub fn loss(&self) -> Option<u64> {
        Some(self.packets_lost? + self.packets_reported_lost?)
    }
}

/// Who may connect (`--allow`): addresses and networks (`192.0.2.7`,
/// `10.0.0.0/8`, `2001:db8::/32`). Empty: anyone.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct AllowList(Vec<(IpAddr, u8)>);

impl AllowList {
    /// Adds `ADDR` or `ADDR/PREFIX`.
    ///
    /// # Errors
    /// A message for a malformed address or prefix.
    pub fn add(&mut self, spec: &str) -> Result<(), String> {
        let (addr, prefix) = match spec.split_once('/') {
            Some((a, p)) => (a, Some(p)),
            None => (spec, None),
        };
        let ip: IpAddr = addr
            .trim()
            .parse()
            .map_err(|_| format!("bad --allow {spec:?}: use an IP address or ADDRESS/PREFIX"))?;
        let max = if ip.is_ipv4() { 32 } else { 128 };
        let prefix = match prefix {
            Some(p) => p
                .trim()
                .parse::<u8>()
                .ok()
                .filter(|p| *p <= max)
                .ok_or_else(|| format!("bad prefix in --allow {spec:?} (0 to {max})"))?,
            None => max,
        };
        self.0.push((ip, prefix));
        Ok(())
    }

    /// True when nothing restricts who may connect.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// True when `ip` may connect (an IPv4-mapped IPv6 address counts as
    /// its IPv4 address).
    pub fn permits(&self, ip: IpAddr) -> bool {
        if self.0.is_empty() {
            return true;
        }
        let ip = match ip {
            IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(ip, IpAddr::V4),
            v4 => v4,
        };
        self.0.iter().any(|&(net, prefix)| match (net, ip) {
            (IpAddr::V4(n), IpAddr::V4(a)) => {
                let mask = u32::MAX.checked_shl(32 - u32::from(prefix)).unwrap_or(0);
                u32::from(n) & mask == u32::from(a) & mask
            }
            (IpAddr::V6(n), IpAddr::V6(a)) => {
                let mask = u128::MAX.checked_shl(128 - u32::from(prefix)).unwrap_or(0);
                u128::from(n) & mask == u128::from(a) & mask
            }
            _ => false,
        })
    }
}

/// Resolves `HOST:PORT` (or `[v6]:PORT`) to its addresses.
///
/// # Errors
/// `InvalidInput` with a readable message when it does not resolve.
pub fn resolve(target: &str) -> io::Result<Vec<SocketAddr>> {
    let Some((host, port)) = target.rsplit_once(':') else {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            format!("{target:?} has no port: give HOST:PORT"),
        ));
    };
    match port.parse::<u16>() {
        Ok(0) => {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                format!("{target:?}: port 0; give the port the other side listens on"),
            ))
        }
        Ok(_) => {}
        Err(_) => {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                format!("{target:?}: bad port {port:?}; give HOST:PORT"),
            ))
        }
    }
    let addrs: Vec<SocketAddr> = target
        .to_socket_addrs()
        .map_err(|e| {
            // A name that does not resolve is a network failure, not a
            // typo in the command line (the form was checked above).
            io::Error::new(
                io::ErrorKind::HostUnreachable,
                format!("cannot resolve {host:?}: {e}"),
            )
        })?
        .collect();
    if addrs.is_empty() {
        return Err(io::Error::new(
            io::ErrorKind::HostUnreachable,
            format!("{host:?} resolves to no address"),
        ));
    }
    Ok(addrs)
}

/// Parses a listen address: `PORT`, `:PORT`, `ADDR:PORT` or `[V6]:PORT`
/// (a bare port listens on all IPv4 interfaces; the commands that serve
/// connections use [`listen_addr_dual`]).
///
/// # Errors
/// `InvalidInput` when it is none of these.
pub fn listen_addr(spec: &str) -> io::Result<SocketAddr> {
    let spec = spec.trim();
    let port_only = spec.strip_prefix(':').unwrap_or(spec);
    if let Ok(port) = port_only.parse::<u16>() {
        return Ok(SocketAddr::from((Ipv4Addr::UNSPECIFIED, port)));
    }
    if let Ok(addr) = spec.parse::<SocketAddr>() {
        // Port 0 is fine here: the system picks one, and we print it.
        return Ok(addr);
    }
    resolve(spec)?.into_iter().next().ok_or_else(|| {
        io::Error::new(
            io::ErrorKind::InvalidInput,
            format!("bad listen address {spec:?}"),
        )
    })
}

/// As [`listen_addr`], but a bare port is the IPv6 wildcard `[::]:PORT`,
/// which [`Listener::bind`] makes accept IPv4 as well (dual stack),
/// falling back to `0.0.0.0` where the system has no IPv6. For `udt recv`,
/// `udt send --listen`, `udt listen` and `udt bench -s`.
///
/// # Errors
/// As [`listen_addr`].
pub fn listen_addr_dual(spec: &str) -> io::Result<SocketAddr> {
    let trimmed = spec.trim();
    match trimmed.strip_prefix(':').unwrap_or(trimmed).parse::<u16>() {
        Ok(port) => Ok(SocketAddr::from((Ipv6Addr::UNSPECIFIED, port))),
        Err(_) => listen_addr(spec),
    }
}

/// The library's connect error in the program's words (the library's
/// text also speaks of rendezvous, which the program does not do).
fn connect_error(e: udt_mux::ConnectError) -> io::Error {
    match e {
        udt_mux::ConnectError::TimedOut { peer, after } => io::Error::new(
            io::ErrorKind::TimedOut,
            format!(
                "no answer from {peer} within {:.1} s: is the other udt command running there, and is \
                 UDP not filtered? (--connect-timeout waits longer)",
                after.as_secs_f64()
            ),
        ),
        e => io::Error::from(e),
    }
}

/// The wildcard address of `peer`'s family, port 0.
fn any_for(peer: SocketAddr) -> SocketAddr {
    match peer {
        SocketAddr::V4(_) => SocketAddr::from(([0, 0, 0, 0], 0)),
        SocketAddr::V6(_) => SocketAddr::from(([0u16; 8], 0)),
    }
}

/// One connected byte stream.
pub enum Conn {
    /// A UDT stream.
    Udt {
        /// The stream.
        stream: UdtStream,
    },
    /// A TCP stream.
    Tcp(TcpStream),
}

impl fmt::Debug for Conn {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Conn::Udt { stream: s, .. } => {
                write!(f, "Conn::Udt({} -> {})", s.local_addr(), s.peer_addr())
            }
            Conn::Tcp(s) => write!(f, "Conn::Tcp({:?})", s.peer_addr().ok()),
        }
    }
}

impl Conn {
    /// Wraps a new UDT stream (its send buffer still empty).
    pub(crate) fn udt(stream: UdtStream) -> Conn {
        Conn::Udt { stream }
    }

    /// The UDT stream underneath, if this is one (for a `Poller`).
    pub fn udt_stream(&self) -> Option<&UdtStream> {
        match self {
            Conn::Udt { stream } => Some(stream),
            Conn::Tcp(_) => None,
        }
    }

    /// Bytes written but not yet acknowledged by the peer (UDT: held in
    /// the send buffer; TCP: the kernel's send queue, `SIOCOUTQ`, 0 where
    /// it will not tell). Written bytes minus these are the bytes
    /// delivered, what a progress figure should count: a write returns as
    /// soon as its data is queued (12 MB per UDT connection by default).
    pub fn unacknowledged_bytes(&self) -> u64 {
        match self {
            Conn::Udt { stream } => stream.stats().send_buffer_held_bytes as u64,
            Conn::Tcp(s) => tcp_send_queue(s).unwrap_or(0),
        }
    }

    /// Waits (at most `timeout`) until the peer has acknowledged
    /// everything written; over TCP returns at once.
    ///
    /// # Errors
    /// `TimedOut`, or the connection's error.
    pub fn wait_acknowledged(&self, timeout: Duration) -> io::Result<()> {
        match self {
            Conn::Udt { stream, .. } => stream.wait_acknowledged(Some(timeout)),
            Conn::Tcp(_) => Ok(()),
        }
    }

    /// Sets how long a write may wait for room (`None`: forever).
    pub fn set_write_timeout(&self, t: Option<Duration>) {
        match self {
            Conn::Udt { stream: s, .. } => s.set_write_timeout(t),
            Conn::Tcp(s) => {
                let _ = s.set_write_timeout(t);
            }
        }
    }

    /// Connects to the first address of `target` that answers.
    ///
    /// # Errors
    /// A readable error for each failure mode (does not resolve, timed
    /// out, refused); the last one when every address failed.
    pub fn connect(target: &str, opts: &NetOptions) -> io::Result<Conn> {
        Connector::new(opts).connect(target)
    }

    /// Another handle to the same connection (one thread reads while
    /// another writes).
    ///
    /// # Errors
    /// The transport's.
    pub fn try_clone(&self) -> io::Result<Conn> {
        Ok(match self {
            Conn::Udt { stream } => Conn::Udt {
                stream: stream.try_clone()?,
            },
            Conn::Tcp(s) => Conn::Tcp(s.try_clone()?),
        })
    }

    /// The peer's address; an IPv4 peer of a dual-stack listener shows as
    /// its IPv4 address (`127.0.0.1:5000`, not `[::ffff:127.0.0.1]:5000`).
    pub fn peer_addr(&self) -> Option<SocketAddr> {
        match self {
            Conn::Udt { stream: s, .. } => Some(s.peer_addr()),
            Conn::Tcp(s) => s.peer_addr().ok(),
        }
        .map(canonical)
    }

    /// Our own address on this connection (canonical, as
    /// [`peer_addr`](Self::peer_addr)).
    pub fn local_addr(&self) -> Option<SocketAddr> {
        match self {
            Conn::Udt { stream: s, .. } => Some(s.local_addr()),
            Conn::Tcp(s) => s.local_addr().ok(),
        }
        .map(canonical)
    }

    /// A snapshot of the link counters.
    pub fn stats(&self) -> LinkStats {
        match self {
            Conn::Udt { stream: s, .. } => LinkStats::from_udt(&s.stats()),
            Conn::Tcp(_) => LinkStats::default(),
        }
    }

    /// Sets the send buffer to `packets` packets over UDT (see
    /// `UdtSocket::set_send_buffer`); over TCP the kernel sizes it and this
    /// does nothing.
    ///
    /// # Errors
    /// The connection's, over UDT.
    pub fn set_send_buffer(&self, packets: u32) -> io::Result<()> {
        match self {
            Conn::Udt { stream } => stream.set_send_buffer(packets),
            Conn::Tcp(_) => Ok(()),
        }
    }

    /// Sets how long a read may wait (`None`: forever).
    pub fn set_read_timeout(&self, t: Option<Duration>) {
        match self {
            Conn::Udt { stream: s, .. } => s.set_read_timeout(t),
            Conn::Tcp(s) => {
                let _ = s.set_read_timeout(t);
            }
        }
    }

    /// Closes in order: returns when the peer has acknowledged everything
    /// written (UDT), or after our side is shut down and the peer's rest
    /// drained (TCP).
    ///
    /// # Errors
    /// When the data may not all have arrived (the peer vanished, the
    /// linger time passed).
    pub fn finish(self) -> io::Result<()> {
        match self {
            // `close` returns once the shutdown is on the wire.
            Conn::Udt { stream: s, .. } => s.close(),
            Conn::Tcp(mut s) => {
                s.shutdown(Shutdown::Write)?;
                // Read until the peer closes too, so our last bytes are not
                // lost to a reset; bounded in time.
                let _ = s.set_read_timeout(Some(Duration::from_secs(5)));
                let mut sink = [0u8; 4096];
                while matches!(s.read(&mut sink), Ok(n) if n > 0) {}
                Ok(())
            }
        }
    }
}

impl crate::proto::ReadAppend for Conn {
    /// Over UDT the bytes are copied once on their way in
    /// (`UdtStream::read_append`); over TCP as `Read::read`.
    fn read_append(&mut self, out: &mut Vec<u8>, max: usize) -> io::Result<usize> {
        match self {
            Conn::Udt { stream: s, .. } => s.read_append(out, max),
            Conn::Tcp(s) => s.read_append(out, max),
        }
    }
}

impl Read for Conn {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        match self {
            Conn::Udt { stream: s, .. } => s.read(buf),
            Conn::Tcp(s) => s.read(buf),
        }
    }
}

impl Write for Conn {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        match self {
            Conn::Udt { stream: s, .. } => s.write(buf),
            Conn::Tcp(s) => s.write(buf),
        }
    }
    fn flush(&mut self) -> io::Result<()> {
        match self {
            Conn::Udt { stream: s, .. } => s.flush(),
            Conn::Tcp(s) => s.flush(),
        }
    }
}

/// A listening socket for byte streams.
pub enum Listener {
    /// UDT: the endpoint (the UDP port) and its listener.
    Udt(Endpoint, UdtListener),
    /// TCP.
    Tcp(TcpListener),
}

impl fmt::Debug for Listener {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Listener({})", self.local_addr())
    }
}

impl Listener {
    /// Binds `addr` and starts listening. The IPv6 wildcard `[::]` is
    /// bound dual-stack (IPv4 peers arrive as IPv4-mapped addresses) where
    /// the system allows; where it has no IPv6 at all, `0.0.0.0` on the
    /// same port is bound instead.
    ///
    /// # Errors
    /// The bind errors (`AddrInUse`, ...).
    pub fn bind(addr: SocketAddr, opts: &NetOptions) -> io::Result<Listener> {
        match Listener::bind_exact(addr, opts) {
            Err(e) if is_v6_wildcard(addr) && no_ipv6(&e) => {
                let v4 = SocketAddr::from((Ipv4Addr::UNSPECIFIED, addr.port()));
                log::info!("no IPv6 here ({e}); listening on {v4} instead");
                Listener::bind_exact(v4, opts)
            }
            other => other,
        }
    }

    fn bind_exact(addr: SocketAddr, opts: &NetOptions) -> io::Result<Listener> {
        if opts.transport == Transport::Tcp && is_v6_wildcard(addr) {
            return Ok(Listener::Tcp(
                dual_stack_tcp(addr).map_err(|e| bind_error(addr, e))?,
            ));
        }
        match opts.transport {
            Transport::Udt => {
                let ep = opts.bind_udt(addr).map_err(|e| bind_error(addr, e))?;
                let l = ep.listen(LISTEN_BACKLOG)?;
                Ok(Listener::Udt(ep, l))
            }
            Transport::Tcp => Ok(Listener::Tcp(
                TcpListener::bind(addr).map_err(|e| bind_error(addr, e))?,
            )),
        }
    }

    /// The bound address (with the port chosen for port 0).
    pub fn local_addr(&self) -> SocketAddr {
        match self {
            Listener::Udt(ep, _) => ep.local_addr(),
            Listener::Tcp(l) => l
                .local_addr()
                .unwrap_or_else(|_| SocketAddr::from(([0, 0, 0, 0], 0))),
        }
    }

    /// Secure mode: how many connections so far ended because the peer
    /// refused our key agreement (a sender with a wrong code or key),
    /// whether or not they were accepted. 0 for TCP.
    pub fn wrong_codes(&self) -> u64 {
        match self {
            Listener::Udt(ep, _) => ep.stats().secure_peer_refused,
            Listener::Tcp(_) => 0,
        }
    }

    /// Waits at most `timeout` for the next connection (`Ok(None)` when
    /// none came), so the caller can check for Ctrl-C in between.
    ///
    /// # Errors
    /// The transport's accept errors.
    pub fn accept_timeout(&self, timeout: Duration) -> io::Result<Option<Conn>> {
        match self {
            Listener::Udt(_, l) => match l.accept_timeout(timeout) {
                Ok((s, _)) => Ok(Some(Conn::udt(s))),
                Err(e) if e.kind() == io::ErrorKind::TimedOut => Ok(None),
                Err(e) => Err(e),
            },
            Listener::Tcp(l) => {
                // std has no accept with a timeout: poll without blocking.
                l.set_nonblocking(true)?;
                let deadline = std::time::Instant::now() + timeout;
                loop {
                    match l.accept() {
                        Ok((s, _)) => {
                            s.set_nonblocking(false)?;
                            let _ = s.set_nodelay(true);
                            return Ok(Some(Conn::Tcp(s)));
                        }
                        Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                            if std::time::Instant::now() >= deadline {
                                return Ok(None);
                            }
                            std::thread::sleep(Duration::from_millis(20));
                        }
                        Err(e) => return Err(e),
                    }
                }
            }
        }
    }

    /// Waits for the next connection.
    ///
    /// # Errors
    /// The transport's accept errors.
    pub fn accept(&self) -> io::Result<Conn> {
        match self {
            Listener::Udt(_, l) => l.accept().map(|(s, _)| Conn::udt(s)),
            Listener::Tcp(l) => l
                .set_nonblocking(false)
                .and_then(|()| l.accept())
                .map(|(s, _)| {
                    let _ = s.set_nodelay(true);
                    Conn::Tcp(s)
                }),
        }
    }
}

fn bind_error(addr: SocketAddr, e: io::Error) -> io::Error {
    io::Error::new(e.kind(), format!("{addr}: {e}"))
}

/// True for `[::]:PORT`, the address a bare port listens on.
fn is_v6_wildcard(addr: SocketAddr) -> bool {
    addr.ip() == IpAddr::V6(Ipv6Addr::UNSPECIFIED)
}

/// True for the errors of a system without IPv6 (no address family, no
/// such address), not for a port in use or a permission.
fn no_ipv6(e: &io::Error) -> bool {
    #[cfg(unix)]
    if let Some(code) = e.raw_os_error() {
        return code == libc::EAFNOSUPPORT || code == libc::EADDRNOTAVAIL;
    }
    e.kind() == io::ErrorKind::AddrNotAvailable
}

/// A TCP listener on the IPv6 wildcard that accepts IPv4 too, whatever
/// the system's default (`net.ipv6.bindv6only`).
fn dual_stack_tcp(addr: SocketAddr) -> io::Result<TcpListener> {
    use socket2::{Domain, Protocol, Socket, Type};
    let socket = Socket::new(Domain::IPV6, Type::STREAM, Some(Protocol::TCP))?;
    socket.set_only_v6(false)?;
    socket.set_reuse_address(true)?;
    socket.bind(&addr.into())?;
    socket.listen(LISTEN_BACKLOG as i32)?;
    Ok(socket.into())
}

/// `addr` with an IPv4-mapped IPv6 address written as IPv4.
pub fn canonical(addr: SocketAddr) -> SocketAddr {
    SocketAddr::new(addr.ip().to_canonical(), addr.port())
}

/// Binds a UDT endpoint at `addr` accepting message-mode connections.
///
/// # Errors
/// Bind errors.
pub fn listen_messages(
    addr: SocketAddr,
    opts: &NetOptions,
) -> io::Result<(Endpoint, UdtMessageListener)> {
    let ep = match opts.bind_udt(addr) {
        // As Listener::bind: no IPv6 here, so the IPv4 wildcard.
        Err(e) if is_v6_wildcard(addr) && no_ipv6(&e) => {
            let v4 = SocketAddr::from((Ipv4Addr::UNSPECIFIED, addr.port()));
            opts.bind_udt(v4).map_err(|e| bind_error(v4, e))?
        }
        other => other.map_err(|e| bind_error(addr, e))?,
    };
    let l = ep.listen_with(64, Options::messages())?;
    Ok((ep, l))
}

/// Connects a UDT message socket to the first address of `target` that
/// answers.
///
/// # Errors
/// As [`Conn::connect`].
pub fn connect_messages(target: &str, opts: &NetOptions) -> io::Result<UdtMessageSocket> {
    Connector::new(opts).connect_messages(target)
}

/// Connects to peers through one local UDT endpoint per address family
/// (one port, one set of threads for every connection it makes), as the
/// multiplexer is meant to be used: `udt bench -P 128` opens 128
/// connections through one port instead of binding 128 ports with two
/// threads and two 8 MB socket buffers each. The endpoint is bound on the
/// first connection of its family; the connections keep it alive.
#[derive(Debug)]
pub struct Connector {
    opts: NetOptions,
    /// The endpoints bound so far, IPv4 and IPv6.
    endpoints: std::sync::Mutex<Vec<Endpoint>>,
}

impl Connector {
    /// A connector with these options; binds nothing yet.
    pub fn new(opts: &NetOptions) -> Connector {
        Connector {
            opts: opts.clone(),
            endpoints: std::sync::Mutex::new(Vec::new()),
        }
    }

    /// Connects a byte stream to `target` (`HOST:PORT`), trying each
    /// address it resolves to. Over TCP, a plain `connect`.
    ///
    /// # Errors
    /// Resolution failures, the bind of the local endpoint, or the last
    /// address's connect error (refused, timed out).
    pub fn connect(&self, target: &str) -> io::Result<Conn> {
        self.each_address(target, |addr| match self.opts.transport {
            Transport::Udt => self
                .endpoint_for(addr)?
                .connect(addr)
                .map_err(connect_error)
                .map(Conn::udt),
            Transport::Tcp => match self.opts.connect_timeout {
                Some(t) => TcpStream::connect_timeout(&addr, t),
                None => TcpStream::connect(addr),
            }
            .map(|s| {
                let _ = s.set_nodelay(true);
                Conn::Tcp(s)
            }),
        })
    }

    /// Connects a UDT message socket to `target`.
    ///
    /// # Errors
    /// As [`connect`](Self::connect).
    pub fn connect_messages(&self, target: &str) -> io::Result<UdtMessageSocket> {
        self.each_address(target, |addr| {
            self.endpoint_for(addr)?
                .connect_with(addr, Options::messages())
                .map_err(connect_error)
        })
    }

    /// Tries `attempt` on each address `target` resolves to; the first
    /// success, or the last error.
    fn each_address<T>(
        &self,
        target: &str,
        attempt: impl Fn(SocketAddr) -> io::Result<T>,
    ) -> io::Result<T> {
        let mut last = None;
        for addr in resolve(target)? {
            match attempt(addr) {
                Ok(c) => return Ok(c),
                Err(e) => {
                    log::debug!("connect to {addr} failed: {e}");
                    last = Some(e);
                }
            }
        }
        Err(last
            .unwrap_or_else(|| io::Error::new(io::ErrorKind::NotFound, "no address to connect to")))
    }

    /// The endpoint for connections to `peer`'s address family, bound on
    /// first use.
    fn endpoint_for(&self, peer: SocketAddr) -> io::Result<Endpoint> {
        let mut endpoints = self
            .endpoints
            .lock()
            .map_err(|_| io::Error::other("a connecting thread panicked"))?;
        if let Some(ep) = endpoints
            .iter()
            .find(|ep| ep.local_addr().is_ipv4() == peer.is_ipv4())
        {
            return Ok(ep.clone());
        }
        let ep = self.opts.bind_udt(any_for(peer))?;
        endpoints.push(ep.clone());
        Ok(ep)
    }
}

/// Link counters of a message socket.
pub fn message_stats(s: &UdtMessageSocket) -> LinkStats {
    LinkStats::from_udt(&s.stats())
}

/// Bytes in a TCP socket's send queue not yet acknowledged by the peer
/// (`SIOCOUTQ`); `None` where the kernel will not tell.
#[cfg(target_os = "linux")]
fn tcp_send_queue(s: &TcpStream) -> Option<u64> {
    use std::os::fd::AsRawFd;
    let mut queued: libc::c_int = 0;
    // SAFETY: SIOCOUTQ (== TIOCOUTQ) writes one int into `queued`, which
    // we own and which outlives the call; the descriptor is the stream's.
    let r = unsafe { libc::ioctl(s.as_raw_fd(), libc::TIOCOUTQ, &mut queued) };
    if r == 0 {
        u64::try_from(queued).ok()
    } else {
        None
    }
}

#[cfg(not(target_os = "linux"))]
fn tcp_send_queue(_: &TcpStream) -> Option<u64> {
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn allow_lists_match_addresses_and_networks() {
        let mut a = AllowList::default();
        assert!(a.permits("198.51.100.7".parse().unwrap()));
        a.add("192.0.2.7").unwrap();
        a.add("10.0.0.0/8").unwrap();
        a.add("2001:db8::/32").unwrap();
        let ok = |s: &str| a.permits(s.parse().unwrap());
        assert!(ok("192.0.2.7") && ok("10.200.3.4") && ok("2001:db8::1"));
        assert!(ok("::ffff:10.1.2.3"));
        assert!(!ok("192.0.2.8") && !ok("11.0.0.1") && !ok("2001:db9::1"));
        assert!(a.add("10.0.0.0/33").is_err());
        assert!(a.add("nonsense").is_err());
        let mut all = AllowList::default();
        all.add("0.0.0.0/0").unwrap();
        assert!(all.permits("203.0.113.1".parse().unwrap()));
    }

    #[test]
    fn listen_address_forms() {
        assert_eq!(
            listen_addr("9000").unwrap(),
            "0.0.0.0:9000".parse().unwrap()
        );
        assert_eq!(
            listen_addr(":9000").unwrap(),
            "0.0.0.0:9000".parse().unwrap()
        );
        assert_eq!(
            listen_addr_dual("9000").unwrap(),
            "[::]:9000".parse().unwrap()
        );
        assert_eq!(
            listen_addr_dual(":9000").unwrap(),
            "[::]:9000".parse().unwrap()
        );
        assert_eq!(
            listen_addr_dual("127.0.0.1:9").unwrap(),
            "127.0.0.1:9".parse().unwrap()
        );
        assert_eq!(
            listen_addr("127.0.0.1:9").unwrap(),
            "127.0.0.1:9".parse().unwrap()
        );
        assert_eq!(listen_addr("[::1]:9").unwrap(), "[::1]:9".parse().unwrap());
        assert!(listen_addr("nonsense").is_err());
    }

    #[test]
    fn the_ipv6_wildcard_accepts_ipv4_too() {
        let has_ipv6 = std::net::UdpSocket::bind("[::1]:0").is_ok();
        for transport in [Transport::Udt, Transport::Tcp] {
            let opts = NetOptions {
                transport,
                ..NetOptions::default()
            };
            let l = Listener::bind(listen_addr_dual("0").unwrap(), &opts).unwrap();
            let port = l.local_addr().port();
            let mut peers = vec![format!("127.0.0.1:{port}")];
            if has_ipv6 {
                assert!(l.local_addr().is_ipv6(), "{transport:?}");
                peers.push(format!("[::1]:{port}"));
            }
            for target in peers {
                let mut c = Conn::connect(&target, &opts).unwrap();
                let accepted = l.accept().unwrap();
                // Shown as the address the peer used, not as ::ffff:….
                let seen = accepted.peer_addr().unwrap();
                let used: SocketAddr = target.parse().unwrap();
                assert_eq!(seen.ip(), used.ip(), "{transport:?}");
                c.write_all(b"x").unwrap();
                let mut got = [0u8; 1];
                let mut accepted = accepted;
                accepted.read_exact(&mut got).unwrap();
                assert_eq!(&got, b"x");
                drop(accepted);
                c.finish().unwrap();
            }
        }
    }

    /// A whole `udt bench -P 1024` connects before the server accepts
    /// any: its listener holds them all (a backlog of 64 refused the rest
    /// of a `-P 128`).
    #[test]
    fn a_listener_holds_a_whole_bench_test_before_accepting() {
        let opts = NetOptions::default();
        let l = Listener::bind("127.0.0.1:0".parse().unwrap(), &opts).unwrap();
        let target = l.local_addr().to_string();
        let n = crate::cmd::bench::MAX_PARALLEL as usize;
        let conns: Vec<Conn> = (0..n)
            .map(|i| {
                Conn::connect(&target, &opts)
                    .unwrap_or_else(|e| panic!("connection {i} of {n} refused: {e}"))
            })
            .collect();
        for _ in 0..n {
            l.accept().unwrap();
        }
        drop(conns);
    }

    /// A connector's connections share one local port (one endpoint):
    /// `udt bench -P 64` bound 64 ports, each with two threads, and under
    /// load lost up to 116 000 packets at the server where one port lost
    /// none.
    #[test]
    fn a_connectors_connections_share_one_local_port() {
        let opts = NetOptions::default();
        let l = Listener::bind("127.0.0.1:0".parse().unwrap(), &opts).unwrap();
        let target = l.local_addr().to_string();
        let connector = Connector::new(&opts);
        let conns: Vec<Conn> = (0..3)
            .map(|_| connector.connect(&target).unwrap())
            .collect();
        let ports: Vec<u16> = conns
            .iter()
            .map(|c| c.local_addr().unwrap().port())
            .collect();
        assert!(ports.iter().all(|&p| p == ports[0]), "{ports:?}");
        for _ in 0..3 {
            l.accept().unwrap();
        }
        // Plain `Conn::connect` still binds its own.
        let other = Conn::connect(&target, &opts).unwrap();
        assert_ne!(other.local_addr().unwrap().port(), ports[0]);
        l.accept().unwrap();
    }

    #[test]
    fn cc_option_reaches_the_config() {
        use udt_core::cc::CcAlgorithm;
        assert_eq!(
            NetOptions::default().udt_config().congestion.build().name(),
            "bbr"
        );
        for cc in CcAlgorithm::ALL {
            let opts = NetOptions {
                cc: Some(cc),
                ..NetOptions::default()
            };
            assert_eq!(opts.udt_config().congestion.build().name(), cc.name());
        }
    }

    #[test]
    fn udt_and_tcp_connections_carry_bytes() {
        for transport in [Transport::Udt, Transport::Tcp] {
            let opts = NetOptions {
                transport,
                ..NetOptions::default()
            };
            let l = Listener::bind("127.0.0.1:0".parse().unwrap(), &opts).unwrap();
            let addr = l.local_addr().to_string();
            let t = std::thread::spawn(move || {
                let mut c = l.accept().unwrap();
                let mut got = Vec::new();
                c.read_to_end(&mut got).unwrap();
                got
            });
            let mut c = Conn::connect(&addr, &opts).unwrap();
            c.write_all(&[7u8; 100_000]).unwrap();
            c.finish().unwrap();
            assert_eq!(t.join().unwrap(), vec![7u8; 100_000], "{transport:?}");
        }
    }
}
