//! The UDP socket of a multiplexer: `socket2` set-up (IPv4/IPv6, buffer
//! sizes, segmentation offload, `SO_REUSEPORT`) and batched send/receive.
//! The system calls live in `linux` (`sendmmsg`/`recvmmsg` with UDP GSO and
//! GRO) and `portable` (one datagram per call); `segment` holds the
//! offload arithmetic. They, `reuseport`'s steering program and the send
//! thread's timer-slack `prctl` are the crate's only `unsafe` code.
//!
//! The wire never changes: a GSO super-datagram leaves the kernel as the
//! ordinary UDT datagrams it was made of, and a GRO super-datagram is split
//! back into them before anything routes it.
//!
//! The socket stays in blocking mode so that the send thread gets
//! backpressure from a full kernel send buffer; the receive thread reads
//! with `MSG_DONTWAIT` after mio reports readiness, and the receive thread's
//! own sends use `MSG_DONTWAIT` too so it never stalls behind a full buffer.

use std::io;
use std::net::SocketAddr;
use std::os::fd::{AsRawFd, RawFd};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::Duration;

use parking_lot::Mutex;
use socket2::{Domain, Protocol, SockAddr, Socket, Type};
use udt_core::PayloadRef;

use crate::config::EndpointConfig;

#[cfg(target_os = "linux")]
mod linux;
#[cfg(not(target_os = "linux"))]
mod portable;
pub(crate) mod reuseport;
mod segment;
#[cfg(test)]
mod tests;

/// The receive slot when GRO is on: a coalesced datagram can be as long as
/// the largest UDP payload.
const GRO_SLOT: usize = 65_535;

/// A bound UDP socket and what the kernel granted it.
#[derive(Debug)]
pub(crate) struct UdpPort {
    socket: Socket,
    local: SocketAddr,
    /// `SO_SNDBUF` as the kernel reports it after our request.
    pub(crate) send_buffer: usize,
    /// `SO_RCVBUF` as the kernel reports it after our newest request.
    recv_buffer: AtomicUsize,
    /// The newest `SO_RCVBUF` request (0: none, the system default); held
    /// while a larger one is made, so requests never go out of order.
    recv_asked: Mutex<usize>,
    /// UDP GSO is used for runs of equal datagrams. Cleared for good the
    /// first time the kernel refuses a super-datagram (a device without
    /// checksum offload answers `EIO`, a path MTU below the segment
    /// `EINVAL`); the refused run is then sent plainly.
    gso: AtomicBool,
    /// UDP GRO is on: received buffers may hold several datagrams.
    gro: bool,
    /// The kernel stamps received datagrams with their arrival time.
    stamps: bool,
}

impl UdpPort {
    /// Creates, configures and binds the socket (tests; the endpoint uses
    /// [`bind_with`](Self::bind_with)).
    ///
    /// # Errors
    /// Any error of `socket`, `setsockopt` (only `IPV6_V6ONLY`: buffer
    /// sizes the kernel refuses are logged, not fatal) or `bind`.
    #[cfg(test)]
    pub(crate) fn bind(addr: SocketAddr, cfg: &EndpointConfig) -> io::Result<UdpPort> {
        Self::bind_with(addr, cfg, false)
    }

    /// Creates, configures and binds the socket; with `reuse_port` it joins
    /// the `SO_REUSEPORT` group of `addr`, so several sockets share one port.
    ///
    /// # Errors
    /// Any error of `socket`, `setsockopt` (only `IPV6_V6ONLY` and
    /// `SO_REUSEPORT`: buffer sizes the kernel refuses are logged, not
    /// fatal) or `bind`.
    pub(crate) fn bind_with(
        addr: SocketAddr,
        cfg: &EndpointConfig,
        reuse_port: bool,
    ) -> io::Result<UdpPort> {
        let socket = Socket::new(Domain::for_address(addr), Type::DGRAM, Some(Protocol::UDP))?;
        if addr.is_ipv6() {
            if let Some(only_v6) = cfg.only_v6 {
                socket.set_only_v6(only_v6)?;
            }
        }
        if reuse_port {
            reuseport::enable(&socket)?;
        }
        // Buffer sizes are a request: the kernel silently caps them at
        // net.core.{w,r}mem_max, so read back what we got and say so.
        if let Some(size) = cfg.udp_send_buffer {
            request_buffer(&socket, BufferSide::Send, size);
        }
        if let Some(size) = cfg.udp_recv_buffer {
            request_buffer(&socket, BufferSide::Receive, size);
        }
        socket.bind(&SockAddr::from(addr))?;
        let local = socket
            .local_addr()?
            .as_socket()
            .ok_or_else(|| io::Error::other("bound to a non-IP address"))?;
        let send_buffer = socket.send_buffer_size().unwrap_or(0);
        let recv_buffer = socket.recv_buffer_size().unwrap_or(0);
        // Linux reports twice the requested size (it counts its own
        // bookkeeping); only a grant below the request is worth a note.
        for (name, asked, got, sysctl) in [
            (
                "send",
                cfg.udp_send_buffer,
                send_buffer,
                "net.core.wmem_max",
            ),
            (
                "receive",
                cfg.udp_recv_buffer,
                recv_buffer,
                "net.core.rmem_max",
            ),
        ] {
            if let Some(asked) = asked {
                if got < asked {
                    log::info!(
                        "UDP {name} buffer of {local}: asked {asked} bytes, kernel granted {got} \
                         (raise {sysctl} for more)"
                    );
                }
            }
        }
        let (gso, gro) = if cfg.offload {
            offload_support(&socket)
        } else {
            (false, false)
        };
        log::debug!(
            "bound {local}: send buffer {send_buffer} B, receive buffer {recv_buffer} B, \
             GSO {gso}, GRO {gro}"
        );
        #[cfg(target_os = "linux")]
        let stamps = linux::enable_timestamps(&socket);
        #[cfg(not(target_os = "linux"))]
        let stamps = false;
        Ok(UdpPort {
            socket,
            local,
            send_buffer,
            recv_buffer: AtomicUsize::new(recv_buffer),
            recv_asked: Mutex::new(cfg.udp_recv_buffer.unwrap_or(0)),
            gso: AtomicBool::new(gso),
            gro,
            stamps,
        })
    }

    /// `SO_RCVBUF` as the kernel reported it after our newest request
    /// (Linux reports twice the bytes asked: it counts its bookkeeping).
    pub(crate) fn recv_buffer(&self) -> usize {
        self.recv_buffer.load(Ordering::Relaxed)
    }

    /// Asks for a receive buffer of `bytes` when that is more than the
    /// newest request, rounded up to a quarter more than that request (so a
    /// thousand new connections make a dozen system calls, not a thousand),
    /// at most `max`. Never shrinks the buffer; a refusal is logged and the
    /// granted size kept. Called by whichever thread registers a connection.
    pub(crate) fn grow_recv_buffer(&self, bytes: usize, max: usize) {
        let mut asked_guard = self.recv_asked.lock();
        let asked = *asked_guard;
        if asked == 0 || bytes <= asked {
            return;
        }
        let size = bytes
            .max(asked.saturating_add(asked / 4))
            .min(max.max(asked));
        if size <= asked {
            return;
        }
        *asked_guard = size;
        request_buffer(&self.socket, BufferSide::Receive, size);
        let granted = self.socket.recv_buffer_size().unwrap_or(0);
        self.recv_buffer.store(granted, Ordering::Relaxed);
        log::debug!(
            "receive buffer of {} grown for its connections: asked {size} B, granted {granted} B",
            self.local
        );
    }

    /// The address the socket is bound to (with the port the OS chose).
    pub(crate) fn local_addr(&self) -> SocketAddr {
        self.local
    }

    /// The descriptor, for registration with mio.
    pub(crate) fn raw_fd(&self) -> RawFd {
        self.socket.as_raw_fd()
    }

    /// The socket itself (for `reuseport` steering).
    pub(crate) fn socket(&self) -> &Socket {
        &self.socket
    }

    /// True while sends coalesce runs of equal datagrams (UDP GSO).
    pub(crate) fn gso(&self) -> bool {
        self.gso.load(Ordering::Relaxed)
    }

    /// True when receives may return coalesced datagrams (UDP GRO).
    pub(crate) fn gro(&self) -> bool {
        self.gro
    }

    /// True when received datagrams carry the kernel's arrival time.
    pub(crate) fn stamps(&self) -> bool {
        self.stamps
    }

    /// Stops using GSO after the kernel refused a super-datagram.
    #[cfg_attr(not(target_os = "linux"), allow(dead_code))]
    fn disable_gso(&self, why: &io::Error) {
        if self.gso.swap(false, Ordering::Relaxed) {
            log::info!(
                "UDP GSO refused on {} ({why}): sending one datagram per segment",
                self.local
            );
        }
    }
}

/// Turns on what the kernel offers: `(gso, gro)`.
/// The direction of a socket buffer.
#[derive(Clone, Copy, Debug)]
enum BufferSide {
    Send,
    Receive,
}

/// Asks for a kernel buffer of `size` bytes on `side`, past the sysctl cap
/// where the process may ([`force_past_cap`]); a refusal is logged and the
/// kernel's size kept (the caller reads back what it granted).
fn request_buffer(socket: &Socket, side: BufferSide, size: usize) {
    let asked = match side {
        BufferSide::Send => socket.set_send_buffer_size(size),
        BufferSide::Receive => socket.set_recv_buffer_size(size),
    };
    if let Err(e) = asked {
        log::warn!("{side:?} buffer of {size} B refused: {e}");
    }
    force_past_cap(socket, side, size);
}

/// When the kernel capped a buffer below `asked` (at
/// `net.core.{w,r}mem_max`), asks again with the privileged option that
/// ignores the cap. Without the privilege the capped size stays, and the
/// caller's log line says which sysctl to raise.
fn force_past_cap(socket: &Socket, side: BufferSide, asked: usize) {
    let granted = match side {
        BufferSide::Send => socket.send_buffer_size(),
        BufferSide::Receive => socket.recv_buffer_size(),
    };
    // Linux reports twice what it was asked (bookkeeping included), so a
    // grant of at least `asked` means the request was honoured.
    if granted.map_or(true, |g| g >= asked) {
        return;
    }
    #[cfg(target_os = "linux")]
    {
        let kind = match side {
            BufferSide::Send => linux::BufferKind::Send,
            BufferSide::Receive => linux::BufferKind::Receive,
        };
        match linux::force_buffer_size(socket, kind, asked) {
            Ok(()) => log::debug!("{side:?} buffer of {asked} B forced past the sysctl cap"),
            Err(e) => log::debug!("{side:?} buffer past the sysctl cap refused: {e}"),
        }
    }
}

fn offload_support(socket: &Socket) -> (bool, bool) {
    #[cfg(target_os = "linux")]
    {
        linux::offload_support(socket)
    }
    #[cfg(not(target_os = "linux"))]
    {
        let _ = socket;
        (false, false)
    }
}

/// What one flush of a [`SendBatch`] did.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(crate) struct Flushed {
    /// Datagrams handed to the kernel.
    pub(crate) datagrams: u64,
    /// Their total size.
    pub(crate) bytes: u64,
    /// Datagrams the kernel refused (counted and dropped: UDT recovers).
    pub(crate) errors: u64,
    /// Batch system calls made.
    pub(crate) calls: u64,
    /// Of `datagrams`, those that left inside a GSO super-datagram.
    pub(crate) offloaded: u64,
}

/// Outgoing datagrams collected under connection locks and sent after
/// them, many per system call, runs of equal datagrams to one peer as one
/// GSO super-datagram. Buffers are reused: no allocation once each has
/// grown to the largest datagram.
///
/// A datagram may be a header whose payload is still in its connection's
/// send buffer ([`push_gathered`](Self::push_gathered)): before that
/// connection's lock is released, the batch is either sent with the
/// payloads gathered from it ([`flush_gathered`](Self::flush_gathered), no
/// copy) or the payloads are copied in ([`attach`](Self::attach)).
pub(crate) struct SendBatch<R = PayloadRef> {
    /// `capacity + 1` buffers: the spare lets a packet pair stay together
    /// (see [`keep_pair`](Self::keep_pair)).
    bufs: Vec<Vec<u8>>,
    /// Per slot: where it goes (turned into a `sockaddr` once per run
    /// when sent, not per datagram).
    peers: Vec<SocketAddr>,
    /// Per slot: the payload that follows the header in `bufs`, if any
    /// (a [`PayloadRef`] of the connection; any token in tests).
    refs: Vec<Option<R>>,
    /// Slots with a payload reference.
    deferred: usize,
    len: usize,
    capacity: usize,
    /// Slots usable before the next flush: `capacity`, or one more.
    limit: usize,
    #[cfg(target_os = "linux")]
    sys: linux::MmsgScratch,
}

impl<R> std::fmt::Debug for SendBatch<R> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SendBatch")
            .field("len", &self.len)
            .field("capacity", &self.capacity)
            .finish()
    }
}

impl<R: Copy> SendBatch<R> {
    /// A batch of `capacity` datagrams, each buffer preallocated to
    /// `datagram` bytes.
    pub(crate) fn new(capacity: usize, datagram: usize) -> SendBatch<R> {
        let capacity = capacity.max(1);
        let slots = capacity + 1;
        SendBatch {
            bufs: (0..slots).map(|_| Vec::with_capacity(datagram)).collect(),
            peers: Vec::with_capacity(slots),
            refs: vec![None; slots],
            deferred: 0,
            len: 0,
            capacity,
            limit: capacity,
            #[cfg(target_os = "linux")]
            sys: linux::MmsgScratch::new(slots),
        }
    }

    /// True when no more datagrams fit before a flush.
    pub(crate) fn is_full(&self) -> bool {
        self.len >= self.limit
    }

    /// True when nothing is queued.
    pub(crate) fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// The buffer the next datagram is written into, or `None` when full.
    /// It only counts once [`push`](Self::push) names its destination.
    pub(crate) fn slot(&mut self) -> Option<&mut Vec<u8>> {
        if self.len >= self.limit {
            return None;
        }
        self.bufs.get_mut(self.len)
    }

    /// The datagram queued last, if any.
    pub(crate) fn last(&self) -> Option<&[u8]> {
        self.len.checked_sub(1).map(|i| self.bufs[i].as_slice())
    }

    /// Lets one datagram more into a full batch, until the next flush: the
    /// second packet of a packet pair must follow the first in the same
    /// call, not a system call later.
    pub(crate) fn keep_pair(&mut self) {
        self.limit = self.capacity + 1;
    }

    /// Commits the datagram just written into [`slot`](Self::slot).
    pub(crate) fn push(&mut self, dest: SocketAddr) {
        self.push_gathered(dest, None);
    }

    /// Commits the datagram just written into [`slot`](Self::slot), whose
    /// payload (if `payload`) is still to be gathered from its connection.
    pub(crate) fn push_gathered(&mut self, dest: SocketAddr, payload: Option<R>) {
        if self.len < self.limit {
            self.refs[self.len] = payload;
            self.deferred += usize::from(payload.is_some());
            if self.peers.len() > self.len {
                self.peers[self.len] = dest;
            } else {
                self.peers.push(dest);
            }
            self.len += 1;
        }
    }

    /// Copies a finished datagram into the batch; returns false when full.
    pub(crate) fn push_copy(&mut self, dest: SocketAddr, datagram: &[u8]) -> bool {
        let Some(buf) = self.slot() else {
            return false;
        };
        buf.clear();
        buf.extend_from_slice(datagram);
        self.push(dest);
        true
    }

    /// Forgets everything queued; returns how many datagrams that was.
    pub(crate) fn discard(&mut self) -> usize {
        self.limit = self.capacity;
        self.refs.iter_mut().for_each(|r| *r = None);
        self.deferred = 0;
        std::mem::take(&mut self.len)
    }

    /// Datagrams whose payload is still to be gathered.
    pub(crate) fn deferred(&self) -> usize {
        self.deferred
    }

    /// Copies every deferred payload in after its header, so the batch can
    /// outlive the connection's lock; a datagram whose payload `payload`
    /// no longer has is dropped (its message expired meanwhile).
    pub(crate) fn attach<'a>(&mut self, payload: impl Fn(R) -> Option<&'a [u8]>) {
        self.resolve(payload, |batch, i, p| batch.bufs[i].extend_from_slice(p));
    }

    /// Sends everything queued, the deferred payloads gathered straight
    /// from `payload` (no copy), and empties the batch. Call it with the
    /// payloads' connection locked: they must not change until it returns.
    pub(crate) fn flush_gathered<'a>(
        &mut self,
        port: &UdpPort,
        blocking: bool,
        payload: impl Fn(R) -> Option<&'a [u8]>,
    ) -> Flushed {
        #[cfg(target_os = "linux")]
        {
            self.resolve(payload, |batch, i, p| batch.sys.set_tail(i, p));
            self.send(port, blocking, true)
        }
        #[cfg(not(target_os = "linux"))]
        {
            self.attach(payload);
            self.flush(port, blocking)
        }
    }

    /// Hands `put` every slot with its payload (empty for a slot that has
    /// none to gather) and forgets the references; a slot whose payload
    /// `payload` no longer has is taken out of the batch.
    fn resolve<'a>(
        &mut self,
        payload: impl Fn(R) -> Option<&'a [u8]>,
        mut put: impl FnMut(&mut Self, usize, &'a [u8]),
    ) {
        let mut i = 0;
        while i < self.len {
            match self.refs[i].take().map(&payload) {
                None => {
                    put(self, i, &[]);
                    i += 1;
                }
                Some(Some(p)) => {
                    put(self, i, p);
                    i += 1;
                }
                Some(None) => self.remove(i),
            }
        }
        self.deferred = 0;
    }

    /// Takes slot `i` out of the batch, keeping the order of the others.
    fn remove(&mut self, i: usize) {
        if i >= self.len {
            return;
        }
        log::trace!("a gathered datagram's payload left the send buffer: not sent");
        self.bufs[i..self.len].rotate_left(1);
        self.peers[i..self.len].rotate_left(1);
        self.refs[i..self.len].rotate_left(1);
        self.len -= 1;
        self.refs[self.len] = None;
    }

    /// Sends everything queued and empties the batch. `blocking` waits for
    /// room in a full kernel buffer; otherwise such datagrams are dropped
    /// and counted as errors.
    pub(crate) fn flush(&mut self, port: &UdpPort, blocking: bool) -> Flushed {
        if self.deferred > 0 {
            // A header without its payload must never leave: a caller bug.
            debug_assert!(false, "flush with payloads not gathered");
            self.resolve(|_| None, |_, _, _| {});
        }
        self.send(port, blocking, false)
    }

    /// Sends the queued datagrams (with the tails [`flush_gathered`](Self::flush_gathered)
    /// set when `tails`) and empties the batch.
    fn send(&mut self, port: &UdpPort, blocking: bool, tails: bool) -> Flushed {
        let mut out = Flushed::default();
        self.limit = self.capacity;
        if self.len == 0 {
            return out;
        }
        #[cfg(target_os = "linux")]
        {
            linux::send_all(
                port,
                &mut self.sys,
                &self.bufs[..self.len],
                tails,
                &self.peers[..self.len],
                blocking,
                &mut out,
            );
        }
        #[cfg(not(target_os = "linux"))]
        {
            // Gathered payloads were attached (copied) before: no tails.
            let _ = tails;
            portable::send_all(
                port,
                &self.bufs[..self.len],
                &self.peers[..self.len],
                blocking,
                &mut out,
            );
        }
        self.len = 0;
        out
    }
}

/// One received datagram, borrowed from a [`RecvBatch`].
#[derive(Debug)]
pub(crate) struct Datagram<'a> {
    pub(crate) from: SocketAddr,
    pub(crate) data: &'a [u8],
    /// The datagram was longer than a receive slot and was cut.
    pub(crate) truncated: bool,
}

/// One received datagram, borrowed mutably from a [`RecvBatch`] (for a
/// connection that opens it in place).
#[derive(Debug)]
pub(crate) struct DatagramMut<'a> {
    pub(crate) from: SocketAddr,
    pub(crate) data: &'a mut [u8],
    /// How long before the read it reached the host, if the kernel stamped
    /// it; the datagrams of one GRO slot share a stamp.
    pub(crate) age: Option<Duration>,
}

/// One datagram of the last receive: where it lies in the storage.
#[derive(Clone, Copy, Debug, Default)]
struct Piece {
    start: usize,
    len: usize,
    /// The message (receive slot) it came in.
    msg: usize,
    truncated: bool,
}

/// Receive slots for one `recvmmsg` call, reused forever. With GRO a slot
/// may hold several datagrams; [`get`](Self::get) numbers the datagrams,
/// not the slots.
pub(crate) struct RecvBatch {
    /// `count × slot` bytes. One big zeroed allocation: the kernel maps
    /// zero pages lazily, so only the bytes datagrams touch cost memory.
    storage: Vec<u8>,
    slot: usize,
    count: usize,
    /// Longest datagram accepted; a longer GRO segment counts as truncated.
    max_datagram: usize,
    lens: Vec<usize>,
    froms: Vec<Option<SocketAddr>>,
    truncated: Vec<bool>,
    /// GRO segment size per slot (0: one datagram).
    segments: Vec<usize>,
    /// The kernel's arrival time per slot (wall clock since the Unix
    /// epoch), if stamped.
    stamps: Vec<Option<Duration>>,
    /// The wall clock when the last receive returned, to turn stamps into
    /// ages: taken once per call, right after it, as the router takes its
    /// instant.
    read_wall: Duration,
    /// The datagrams of the last receive, in order.
    pieces: Vec<Piece>,
    /// Datagrams of the last receive that came coalesced.
    coalesced: usize,
    #[cfg(target_os = "linux")]
    sys: linux::MmsgScratch,
}

impl std::fmt::Debug for RecvBatch {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RecvBatch")
            .field("count", &self.count)
            .field("slot", &self.slot)
            .field("received", &self.pieces.len())
            .finish()
    }
}

impl RecvBatch {
    /// `count` slots, each for one datagram of up to `max_datagram` bytes;
    /// when `port` has GRO on, `count / 2` slots of 64 KiB, each for a
    /// super-datagram.
    pub(crate) fn new(count: usize, max_datagram: usize, port: &UdpPort) -> RecvBatch {
        // A GRO slot holds many datagrams: half as many slots keep the
        // memory of a plain batch while one call still reads more.
        let (count, slot) = if port.gro() {
            ((count / 2).max(1), GRO_SLOT)
        } else {
            (count.max(1), max_datagram)
        };
        RecvBatch {
            storage: vec![0; count * slot],
            slot,
            count,
            max_datagram,
            lens: vec![0; count],
            froms: vec![None; count],
            truncated: vec![false; count],
            segments: vec![0; count],
            stamps: vec![None; count],
            read_wall: Duration::ZERO,
            // Room for every slot full of minimal segments would be large;
            // a typical batch fits, and a larger one grows this once.
            pieces: Vec::with_capacity(count * 4),
            coalesced: 0,
            #[cfg(target_os = "linux")]
            sys: linux::MmsgScratch::new(count),
        }
    }

    /// Reads as many waiting datagrams as fit, without blocking; returns how
    /// many datagrams (GRO super-datagrams counted as the datagrams they
    /// hold). `Ok(0)` never happens: an empty socket is `WouldBlock`.
    ///
    /// # Errors
    /// `WouldBlock` when nothing is waiting; any other socket error.
    pub(crate) fn recv(&mut self, port: &UdpPort) -> io::Result<usize> {
        self.pieces.clear();
        self.coalesced = 0;
        #[cfg(target_os = "linux")]
        let n = linux::recv_batch(
            port,
            &mut self.sys,
            &mut self.storage,
            self.slot,
            self.count,
            &mut self.lens,
            &mut self.froms,
            &mut self.truncated,
            &mut self.segments,
            &mut self.stamps,
        )?;
        if port.stamps() {
            self.read_wall = std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .unwrap_or(Duration::ZERO);
        }
        #[cfg(not(target_os = "linux"))]
        let n = portable::recv_batch(
            port,
            &mut self.storage,
            self.slot,
            self.count,
            &mut self.lens,
            &mut self.froms,
            &mut self.truncated,
        )?;
        for msg in 0..n {
            let base = msg * self.slot;
            let len = self.lens[msg].min(self.slot);
            let segment = self.segments.get(msg).copied().unwrap_or(0);
            let before = self.pieces.len();
            for (offset, piece_len) in segment::split(len, segment) {
                // A GRO segment longer than we accept is cut like a
                // datagram longer than a plain slot.
                self.pieces.push(Piece {
                    start: base + offset,
                    len: piece_len.min(self.max_datagram),
                    msg,
                    truncated: piece_len > self.max_datagram,
                });
            }
            if let Some(last) = self.pieces.last_mut() {
                // A cut slot loses its tail: the last piece is incomplete.
                last.truncated |= self.truncated[msg];
            }
            if segment != 0 {
                self.coalesced += self.pieces.len() - before;
            }
        }
        Ok(self.pieces.len())
    }

    /// Of the datagrams of the last [`recv`](Self::recv), those that came
    /// inside GRO super-datagrams.
    pub(crate) fn coalesced(&self) -> usize {
        self.coalesced
    }

    /// The `i`-th datagram of the last [`recv`](Self::recv), to be
    /// overwritten (by decryption in place); `None` for a truncated one.
    pub(crate) fn get_mut(&mut self, i: usize) -> Option<DatagramMut<'_>> {
        let p = *self.pieces.get(i)?;
        if p.truncated {
            return None;
        }
        let from = (*self.froms.get(p.msg)?)?;
        let age = self
            .stamps
            .get(p.msg)
            .copied()
            .flatten()
            .map(|stamp| self.read_wall.saturating_sub(stamp));
        let data = self.storage.get_mut(p.start..p.start + p.len)?;
        Some(DatagramMut { from, data, age })
    }

    /// The `i`-th datagram of the last [`recv`](Self::recv).
    pub(crate) fn get(&self, i: usize) -> Option<Datagram<'_>> {
        let p = self.pieces.get(i)?;
        let from = (*self.froms.get(p.msg)?)?;
        let data = self.storage.get(p.start..p.start + p.len)?;
        Some(Datagram {
            from,
            data,
            truncated: p.truncated,
        })
    }
}

/// Waits until the socket can take a datagram (after `EAGAIN` on a send),
/// for at most 10 ms so the caller keeps control.
fn wait_writable(port: &UdpPort) {
    let mut pfd = libc::pollfd {
        fd: port.raw_fd(),
        events: libc::POLLOUT,
        revents: 0,
    };
    // SAFETY: `pfd` is a valid pollfd for the duration of the call and we
    // pass a count of exactly one.
    unsafe {
        libc::poll(&mut pfd, 1, 10);
    }
}

/// Sends one datagram without batching (the portable fallback).
#[cfg(any(test, not(target_os = "linux")))]
fn send_one(port: &UdpPort, data: &[u8], dest: &SockAddr, blocking: bool) -> io::Result<usize> {
    let flags = if blocking { 0 } else { libc::MSG_DONTWAIT };
    port.socket.send_to_with_flags(data, dest, flags)
}

/// True for errors after which the same call is simply made again (a
/// signal interrupted it); any other error concerns the datagram at hand,
/// which is dropped and counted.
fn is_retryable(e: &io::Error) -> bool {
    matches!(e.kind(), io::ErrorKind::Interrupted)
}

#[cfg(test)]
impl UdpPort {
    /// Sends one datagram at once.
    pub(crate) fn send_now(&self, data: &[u8], dest: SocketAddr) -> io::Result<usize> {
        let dest = SockAddr::from(dest);
        loop {
            match send_one(self, data, &dest, false) {
                Err(e) if is_retryable(&e) => continue,
                other => return other,
            }
        }
    }
}
