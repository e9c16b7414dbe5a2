//! The UDP socket of a multiplexer: `socket2` set-up (IPv4/IPv6, buffer
//! sizes) and batched send/receive. The `sendmmsg`/`recvmmsg` calls on
//! Linux live here, with a portable one-datagram-per-call fallback
//! elsewhere; they and the send thread's timer-slack `prctl` are the
//! crate's only `unsafe` code.
//!
//! The socket stays in blocking mode so that the send thread gets
//! backpressure from a full kernel send buffer; the receive thread reads
//! with `MSG_DONTWAIT` after mio reports readiness, and the receive thread's
//! own sends use `MSG_DONTWAIT` too so it never stalls behind a full buffer.

use std::io;
#[cfg(not(target_os = "linux"))]
use std::mem::MaybeUninit;
use std::net::SocketAddr;
use std::os::fd::{AsRawFd, RawFd};

use socket2::{Domain, Protocol, SockAddr, Socket, Type};

use crate::config::EndpointConfig;

/// A bound UDP socket and what the kernel granted it.
#[derive(Debug)]
pub(crate) struct UdpPort {
    socket: Socket,
    local: SocketAddr,
    /// `SO_SNDBUF` as the kernel reports it after our request.
    pub(crate) send_buffer: usize,
    /// `SO_RCVBUF` as the kernel reports it after our request.
    pub(crate) recv_buffer: usize,
}

impl UdpPort {
    /// Creates, configures and binds the socket.
    ///
    /// # Errors
    /// Any error of `socket`, `setsockopt` (only `IPV6_V6ONLY`: buffer
    /// sizes the kernel refuses are logged, not fatal) or `bind`.
    pub(crate) fn bind(addr: SocketAddr, cfg: &EndpointConfig) -> io::Result<UdpPort> {
        let socket = Socket::new(Domain::for_address(addr), Type::DGRAM, Some(Protocol::UDP))?;
        if addr.is_ipv6() {
            if let Some(only_v6) = cfg.only_v6 {
                socket.set_only_v6(only_v6)?;
            }
        }
        // Buffer sizes are a request: the kernel silently caps them at
        // net.core.{w,r}mem_max, so read back what we got and say so.
        if let Some(size) = cfg.udp_send_buffer {
            if let Err(e) = socket.set_send_buffer_size(size) {
                log::warn!("SO_SNDBUF {size} refused: {e}");
            }
        }
        if let Some(size) = cfg.udp_recv_buffer {
            if let Err(e) = socket.set_recv_buffer_size(size) {
                log::warn!("SO_RCVBUF {size} refused: {e}");
            }
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
        log::debug!("bound {local}: send buffer {send_buffer} B, receive buffer {recv_buffer} B");
        Ok(UdpPort {
            socket,
            local,
            send_buffer,
            recv_buffer,
        })
    }

    /// The address the socket is bound to (with the port the OS chose).
    pub(crate) fn local_addr(&self) -> SocketAddr {
        self.local
    }

    /// The descriptor, for registration with mio.
    pub(crate) fn raw_fd(&self) -> RawFd {
        self.socket.as_raw_fd()
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
}

/// Outgoing datagrams collected under connection locks and sent after
/// them, many per system call. Buffers are reused: no allocation once each
/// has grown to the largest datagram.
pub(crate) struct SendBatch {
    bufs: Vec<Vec<u8>>,
    dests: Vec<SockAddr>,
    len: usize,
    #[cfg(target_os = "linux")]
    sys: linux::MmsgScratch,
}

impl std::fmt::Debug for SendBatch {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SendBatch")
            .field("len", &self.len)
            .field("capacity", &self.bufs.len())
            .finish()
    }
}

impl SendBatch {
    /// A batch of `capacity` datagrams, each buffer preallocated to
    /// `datagram` bytes.
    pub(crate) fn new(capacity: usize, datagram: usize) -> SendBatch {
        let capacity = capacity.max(1);
        SendBatch {
            bufs: (0..capacity)
                .map(|_| Vec::with_capacity(datagram))
                .collect(),
            dests: Vec::with_capacity(capacity),
            len: 0,
            #[cfg(target_os = "linux")]
            sys: linux::MmsgScratch::new(capacity),
        }
    }

    /// True when no more datagrams fit before a flush.
    pub(crate) fn is_full(&self) -> bool {
        self.len >= self.bufs.len()
    }

    /// True when nothing is queued.
    pub(crate) fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// The buffer the next datagram is written into, or `None` when full.
    /// It only counts once [`push`](Self::push) names its destination.
    pub(crate) fn slot(&mut self) -> Option<&mut Vec<u8>> {
        self.bufs.get_mut(self.len)
    }

    /// Commits the datagram just written into [`slot`](Self::slot).
    pub(crate) fn push(&mut self, dest: SocketAddr) {
        if self.len < self.bufs.len() {
            let addr = SockAddr::from(dest);
            if self.dests.len() > self.len {
                self.dests[self.len] = addr;
            } else {
                self.dests.push(addr);
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
        std::mem::take(&mut self.len)
    }

    /// Sends everything queued and empties the batch. `blocking` waits for
    /// room in a full kernel buffer; otherwise such datagrams are dropped
    /// and counted as errors.
    pub(crate) fn flush(&mut self, port: &UdpPort, blocking: bool) -> Flushed {
        let mut out = Flushed::default();
        if self.len == 0 {
            return out;
        }
        #[cfg(target_os = "linux")]
        {
            linux::send_all(
                port,
                &mut self.sys,
                &self.bufs[..self.len],
                &self.dests[..self.len],
                blocking,
                &mut out,
            );
        }
        #[cfg(not(target_os = "linux"))]
        {
            portable::send_all(
                port,
                &self.bufs[..self.len],
                &self.dests[..self.len],
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

/// Receive slots for one `recvmmsg` call, reused forever.
pub(crate) struct RecvBatch {
    /// `count × slot` bytes. One big zeroed allocation: the kernel maps
    /// zero pages lazily, so only the bytes datagrams touch cost memory.
    storage: Vec<u8>,
    slot: usize,
    count: usize,
    lens: Vec<usize>,
    froms: Vec<Option<SocketAddr>>,
    truncated: Vec<bool>,
    received: usize,
    #[cfg(target_os = "linux")]
    sys: linux::MmsgScratch,
}

impl std::fmt::Debug for RecvBatch {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RecvBatch")
            .field("count", &self.count)
            .field("slot", &self.slot)
            .field("received", &self.received)
            .finish()
    }
}

impl RecvBatch {
    /// `count` slots of `slot` bytes each.
    pub(crate) fn new(count: usize, slot: usize) -> RecvBatch {
        let count = count.max(1);
        RecvBatch {
            storage: vec![0; count * slot],
            slot,
            count,
            lens: vec![0; count],
            froms: vec![None; count],
            truncated: vec![false; count],
            received: 0,
            #[cfg(target_os = "linux")]
            sys: linux::MmsgScratch::new(count),
        }
    }

    /// Reads as many waiting datagrams as fit, without blocking; returns how
    /// many. `Ok(0)` never happens: an empty socket is `WouldBlock`.
    ///
    /// # Errors
    /// `WouldBlock` when nothing is waiting; any other socket error.
    pub(crate) fn recv(&mut self, port: &UdpPort) -> io::Result<usize> {
        self.received = 0;
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
        )?;
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
        self.received = n;
        Ok(n)
    }

    /// The `i`-th datagram of the last [`recv`](Self::recv).
    pub(crate) fn get(&self, i: usize) -> Option<Datagram<'_>> {
        if i >= self.received {
            return None;
        }
        let from = (*self.froms.get(i)?)?;
        let start = i * self.slot;
        let len = (*self.lens.get(i)?).min(self.slot);
        let data = self.storage.get(start..start + len)?;
        Some(Datagram {
            from,
            data,
            truncated: *self.truncated.get(i)?,
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

#[cfg(target_os = "linux")]
mod linux {
    //! `sendmmsg`/`recvmmsg`: one system call for a whole batch.

    use super::*;

    /// The `mmsghdr`/`iovec`/address arrays of one batch call. Pointers in
    /// them are rewritten before every call, so the buffers they point to
    /// may move between calls.
    pub(super) struct MmsgScratch {
        hdrs: Vec<libc::mmsghdr>,
        iovs: Vec<libc::iovec>,
        names: Vec<libc::sockaddr_storage>,
    }

    // SAFETY: the raw pointers inside are scratch space, rewritten before
    // every system call to point at buffers borrowed for that call only;
    // they are never dereferenced by Rust code, so moving the struct to
    // another thread cannot create shared access.
    unsafe impl Send for MmsgScratch {}

    impl MmsgScratch {
        pub(super) fn new(count: usize) -> MmsgScratch {
            // SAFETY: these C structs are plain data for which all-zero
            // bytes are a valid (empty) value.
            let zero_hdr: libc::mmsghdr = unsafe { std::mem::zeroed() };
            let zero_iov = libc::iovec {
                iov_base: std::ptr::null_mut(),
                iov_len: 0,
            };
            let zero_name: libc::sockaddr_storage = unsafe { std::mem::zeroed() };
            MmsgScratch {
                hdrs: vec![zero_hdr; count],
                iovs: vec![zero_iov; count],
                names: vec![zero_name; count],
            }
        }
    }

    pub(super) fn send_all(
        port: &UdpPort,
        sys: &mut MmsgScratch,
        bufs: &[Vec<u8>],
        dests: &[SockAddr],
        blocking: bool,
        out: &mut Flushed,
    ) {
        let n = bufs.len().min(dests.len()).min(sys.hdrs.len());
        for i in 0..n {
            sys.iovs[i] = libc::iovec {
                iov_base: bufs[i].as_ptr() as *mut libc::c_void,
                iov_len: bufs[i].len(),
            };
            let hdr = &mut sys.hdrs[i].msg_hdr;
            hdr.msg_name = dests[i].as_ptr() as *mut libc::c_void;
            hdr.msg_namelen = dests[i].len();
            hdr.msg_iov = &mut sys.iovs[i];
            hdr.msg_iovlen = 1;
            hdr.msg_control = std::ptr::null_mut();
            hdr.msg_controllen = 0;
            hdr.msg_flags = 0;
            sys.hdrs[i].msg_len = 0;
        }
        let flags = if blocking { 0 } else { libc::MSG_DONTWAIT };
        let mut start = 0;
        while start < n {
            // SAFETY: hdrs[start..n] are initialised above; each points to
            // an iovec and an address that live (unmoved) until the call
            // returns, because `bufs`, `dests` and `sys` are borrowed for
            // the whole function.
            let rc = unsafe {
                libc::sendmmsg(
                    port.raw_fd(),
                    sys.hdrs.as_mut_ptr().add(start),
                    (n - start) as libc::c_uint,
                    flags,
                )
            };
            out.calls += 1;
            if rc < 0 {
                let e = io::Error::last_os_error();
                if is_retryable(&e) {
                    continue;
                }
                if e.kind() == io::ErrorKind::WouldBlock && blocking {
                    wait_writable(port);
                    continue;
                }
                // The first datagram failed (unreachable, too big, no
                // buffer space...): drop it and go on with the rest.
                log::trace!("send to {:?} failed: {e}", dests[start].as_socket());
                out.errors += 1;
                start += 1;
                continue;
            }
            let sent = rc as usize;
            for buf in &bufs[start..(start + sent).min(n)] {
                out.datagrams += 1;
                out.bytes += buf.len() as u64;
            }
            start += sent;
            if sent == 0 {
                // Nothing went and no error: do not spin.
                out.errors += 1;
                start += 1;
            }
        }
    }

    #[allow(clippy::too_many_arguments)]
    pub(super) fn recv_batch(
        port: &UdpPort,
        sys: &mut MmsgScratch,
        storage: &mut [u8],
        slot: usize,
        count: usize,
        lens: &mut [usize],
        froms: &mut [Option<SocketAddr>],
        truncated: &mut [bool],
    ) -> io::Result<usize> {
        let count = count
            .min(sys.hdrs.len())
            .min(storage.len() / slot.max(1))
            .min(lens.len())
            .min(froms.len())
            .min(truncated.len());
        let base = storage.as_mut_ptr();
        for i in 0..count {
            sys.iovs[i] = libc::iovec {
                // SAFETY: i * slot + slot <= storage.len() by the bound on
                // `count` above.
                iov_base: unsafe { base.add(i * slot) } as *mut libc::c_void,
                iov_len: slot,
            };
            let hdr = &mut sys.hdrs[i].msg_hdr;
            hdr.msg_name = &mut sys.names[i] as *mut libc::sockaddr_storage as *mut libc::c_void;
            hdr.msg_namelen = std::mem::size_of::<libc::sockaddr_storage>() as libc::socklen_t;
            hdr.msg_iov = &mut sys.iovs[i];
            hdr.msg_iovlen = 1;
            hdr.msg_control = std::ptr::null_mut();
            hdr.msg_controllen = 0;
            hdr.msg_flags = 0;
            sys.hdrs[i].msg_len = 0;
        }
        let rc = loop {
            // SAFETY: hdrs[..count] point to iovecs into `storage` and to
            // address slots in `names`, all alive and exclusively borrowed
            // for the duration of the call.
            let rc = unsafe {
                libc::recvmmsg(
                    port.raw_fd(),
                    sys.hdrs.as_mut_ptr(),
                    count as libc::c_uint,
                    libc::MSG_DONTWAIT,
                    std::ptr::null_mut(),
                )
            };
            if rc < 0 {
                let e = io::Error::last_os_error();
                if is_retryable(&e) {
                    continue;
                }
                return Err(e);
            }
            break rc as usize;
        };
        for i in 0..rc.min(count) {
            let hdr = &sys.hdrs[i];
            lens[i] = hdr.msg_len as usize;
            truncated[i] = hdr.msg_hdr.msg_flags & libc::MSG_TRUNC != 0;
            // SAFETY: the kernel wrote a socket address of `msg_namelen`
            // bytes into names[i]; SockAddr only reads within that length.
            let addr = unsafe { SockAddr::new(sys.names[i], hdr.msg_hdr.msg_namelen) };
            froms[i] = addr.as_socket();
        }
        Ok(rc.min(count))
    }
}

#[cfg(not(target_os = "linux"))]
mod portable {
    //! One system call per datagram, for Unix systems without the batch calls.

    use super::*;

    pub(super) fn send_all(
        port: &UdpPort,
        bufs: &[Vec<u8>],
        dests: &[SockAddr],
        blocking: bool,
        out: &mut Flushed,
    ) {
        for (buf, dest) in bufs.iter().zip(dests) {
            loop {
                out.calls += 1;
                match send_one(port, buf, dest, blocking) {
                    Ok(_) => {
                        out.datagrams += 1;
                        out.bytes += buf.len() as u64;
                    }
                    Err(e) if is_retryable(&e) => continue,
                    Err(e) if e.kind() == io::ErrorKind::WouldBlock && blocking => {
                        wait_writable(port);
                        continue;
                    }
                    Err(_) => out.errors += 1,
                }
                break;
            }
        }
    }

    pub(super) fn recv_batch(
        port: &UdpPort,
        storage: &mut [u8],
        slot: usize,
        count: usize,
        lens: &mut [usize],
        froms: &mut [Option<SocketAddr>],
        truncated: &mut [bool],
    ) -> io::Result<usize> {
        let mut n = 0;
        while n < count {
            let Some(chunk) = storage.get_mut(n * slot..(n + 1) * slot) else {
                break;
            };
            // SAFETY: u8 and MaybeUninit<u8> have the same layout, and the
            // kernel only writes initialised bytes.
            let uninit: &mut [MaybeUninit<u8>] =
                unsafe { std::slice::from_raw_parts_mut(chunk.as_mut_ptr().cast(), chunk.len()) };
            match port
                .socket
                .recv_from_with_flags(uninit, libc::MSG_DONTWAIT | libc::MSG_TRUNC)
            {
                Ok((len, addr)) => {
                    lens[n] = len.min(slot);
                    truncated[n] = len > slot;
                    froms[n] = addr.as_socket();
                    n += 1;
                }
                Err(e) if is_retryable(&e) => continue,
                Err(e) if n == 0 => return Err(e),
                Err(_) => break,
            }
        }
        Ok(n)
    }
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

#[cfg(test)]
mod tests {
    use super::*;

    fn port() -> UdpPort {
        UdpPort::bind("127.0.0.1:0".parse().unwrap(), &EndpointConfig::default()).unwrap()
    }

    #[test]
    fn batch_round_trip_keeps_order_and_sources() {
        let a = port();
        let b = port();
        let mut out = SendBatch::new(8, 64);
        for i in 0..8u8 {
            assert!(out.push_copy(b.local_addr(), &[i; 20]));
        }
        assert!(out.is_full());
        assert!(!out.push_copy(b.local_addr(), &[9; 20]));
        let f = out.flush(&a, true);
        assert_eq!(f.datagrams, 8);
        assert_eq!(f.bytes, 160);
        assert!(out.is_empty());
        let mut input = RecvBatch::new(4, 32);
        let mut seen = Vec::new();
        // Loopback delivery is synchronous, so all 8 are queued by now.
        while seen.len() < 8 {
            let n = input.recv(&b).unwrap();
            for i in 0..n {
                let d = input.get(i).unwrap();
                assert_eq!(d.from, a.local_addr());
                assert!(!d.truncated);
                assert_eq!(d.data.len(), 20);
                seen.push(d.data[0]);
            }
            assert!(input.get(n).is_none());
        }
        assert_eq!(seen, (0..8).collect::<Vec<u8>>());
        let e = input.recv(&b).unwrap_err();
        assert_eq!(e.kind(), io::ErrorKind::WouldBlock);
    }

    #[test]
    fn oversized_datagram_is_flagged_truncated() {
        let a = port();
        let b = port();
        a.send_now(&[7u8; 100], b.local_addr()).unwrap();
        let mut input = RecvBatch::new(2, 64);
        let n = input.recv(&b).unwrap();
        assert_eq!(n, 1);
        let d = input.get(0).unwrap();
        assert!(d.truncated);
        assert_eq!(d.data.len(), 64);
    }

    #[test]
    fn unreachable_destination_does_not_stop_the_batch() {
        let a = port();
        let b = port();
        let mut out = SendBatch::new(4, 64);
        // A v6 destination from a v4 socket fails with EAFNOSUPPORT/EINVAL.
        out.push_copy("[::1]:9".parse().unwrap(), &[1; 10]);
        out.push_copy(b.local_addr(), &[2; 10]);
        let f = out.flush(&a, true);
        assert_eq!(f.errors, 1);
        assert_eq!(f.datagrams, 1);
        let mut input = RecvBatch::new(2, 64);
        assert_eq!(input.recv(&b).unwrap(), 1);
        assert_eq!(input.get(0).unwrap().data, &[2; 10]);
    }

    #[test]
    fn granted_buffer_sizes_are_reported() {
        let p = port();
        assert!(p.send_buffer > 0);
        assert!(p.recv_buffer > 0);
    }
}
