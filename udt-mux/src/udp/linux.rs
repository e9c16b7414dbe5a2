//! `sendmmsg`/`recvmmsg` with UDP GSO and GRO: one system call for a whole
//! batch, and one trip through the network stack for each run of equal
//! datagrams to one peer.
//!
//! Send: the batch is cut into runs (`segment::run_at`); each run is one
//! `msghdr` whose iovecs point at the queued buffers (no copy) and, when it
//! has more than one datagram, a `UDP_SEGMENT` control message with the
//! segment size. One `sendmmsg` carries the runs to all peers. A datagram
//! whose payload was left in its connection's send buffer is two iovecs,
//! header and payload: the kernel segments the concatenation of a run's
//! iovecs, so GSO still cuts it into the same datagrams.
//! Receive: each slot may come back with a `UDP_GRO` control message
//! giving the segment size at which it splits.

use super::segment::{self, Run};
use super::*;

/// Room for the control messages of one datagram: an `int` (`UDP_GRO`,
/// `CMSG_SPACE(4)` is 24 on 64-bit Linux) and a `timespec`
/// (`SCM_TIMESTAMPNS`, `CMSG_SPACE(16)` is 32), aligned like `cmsghdr`.
#[derive(Clone, Copy)]
#[repr(C, align(8))]
struct CmsgBuf([u8; 64]);

/// The `mmsghdr`/`iovec`/address/control arrays of one batch call.
/// Pointers in them are rewritten before every call, so the buffers they
/// point to may move between calls.
pub(super) struct MmsgScratch {
    hdrs: Vec<libc::mmsghdr>,
    /// Two per datagram at most: its buffer, and a gathered payload.
    iovs: Vec<libc::iovec>,
    /// Per datagram: the gathered payload after its buffer (empty: none).
    tails: Vec<libc::iovec>,
    names: Vec<libc::sockaddr_storage>,
    /// Per message sent: the address of its run (one per run, not per
    /// datagram: a run's datagrams share it).
    send_names: Vec<SockAddr>,
    ctrl: Vec<CmsgBuf>,
    runs: Vec<Run>,
    lens: Vec<usize>,
    /// Per datagram, its first iovec (one more entry: the end).
    first: Vec<usize>,
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
            iovs: vec![zero_iov; 2 * count],
            tails: vec![zero_iov; count],
            names: vec![zero_name; count],
            send_names: vec![SockAddr::from(SocketAddr::from(([0, 0, 0, 0], 0))); count],
            ctrl: vec![CmsgBuf([0; 64]); count],
            runs: vec![Run::default(); count],
            lens: vec![0; count],
            first: vec![0; count + 1],
        }
    }
}

impl MmsgScratch {
    /// Sets the payload gathered after datagram `i`'s buffer for the next
    /// send (empty: none). Only the next `send_all` with tails reads it,
    /// while the caller still borrows `tail`.
    pub(super) fn set_tail(&mut self, i: usize, tail: &[u8]) {
        if let Some(t) = self.tails.get_mut(i) {
            *t = libc::iovec {
                iov_base: tail.as_ptr() as *mut libc::c_void,
                iov_len: tail.len(),
            };
        }
    }
}

/// Turns on GRO and checks for GSO: `(gso, gro)`. Reading `UDP_SEGMENT`
/// succeeds exactly on kernels that accept it (4.18 and later).
pub(super) fn offload_support(socket: &Socket) -> (bool, bool) {
    let fd = socket.as_raw_fd();
    let mut value: libc::c_int = 0;
    let mut len = std::mem::size_of::<libc::c_int>() as libc::socklen_t;
    // SAFETY: getsockopt writes at most `len` bytes into `value`.
    let gso = unsafe {
        libc::getsockopt(
            fd,
            libc::SOL_UDP,
            libc::UDP_SEGMENT,
            (&mut value as *mut libc::c_int).cast(),
            &mut len,
        )
    } == 0;
    let gro = set_int_option(socket, libc::SOL_UDP, libc::UDP_GRO, 1).is_ok();
    (gso, gro)
}

/// Sets the `int` socket option `name` at `level` to `value`.
///
/// # Errors
/// The `setsockopt` error (an option the kernel lacks or refuses).
fn set_int_option(
    socket: &Socket,
    level: libc::c_int,
    name: libc::c_int,
    value: libc::c_int,
) -> io::Result<()> {
    // SAFETY: setsockopt reads one int from `value`.
    let rc = unsafe {
        libc::setsockopt(
            socket.as_raw_fd(),
            level,
            name,
            (&value as *const libc::c_int).cast(),
            std::mem::size_of::<libc::c_int>() as libc::socklen_t,
        )
    };
    if rc == 0 {
        Ok(())
    } else {
        Err(io::Error::last_os_error())
    }
}

/// Asks the kernel to stamp every received datagram with its arrival time
/// (`SO_TIMESTAMPNS`, wall clock, nanoseconds); true if it agreed. A
/// receive batch is handed to the connections at one instant, and their
/// arrival-speed and packet-pair estimates need the datagrams' own times.
pub(super) fn enable_timestamps(socket: &Socket) -> bool {
    set_int_option(socket, libc::SOL_SOCKET, libc::SO_TIMESTAMPNS, 1).is_ok()
}

/// Which kernel buffer [`force_buffer_size`] sets.
#[derive(Clone, Copy, Debug)]
pub(super) enum BufferKind {
    Send,
    Receive,
}

/// Sets a socket buffer past `net.core.{w,r}mem_max` with `SO_SNDBUFFORCE`
/// / `SO_RCVBUFFORCE`, which the kernel allows a process with
/// `CAP_NET_ADMIN` (root, as servers often run). One port carries every
/// connection's bursts, and Debian's default cap (208 KiB, ~140 datagrams)
/// overflows at a few hundred Mbit/s; quic-go and other UDP servers ask the
/// same way.
///
/// # Errors
/// `EPERM` without the capability; any other `setsockopt` error.
pub(super) fn force_buffer_size(socket: &Socket, kind: BufferKind, bytes: usize) -> io::Result<()> {
    let option = match kind {
        BufferKind::Send => libc::SO_SNDBUFFORCE,
        BufferKind::Receive => libc::SO_RCVBUFFORCE,
    };
    let value = libc::c_int::try_from(bytes).unwrap_or(libc::c_int::MAX);
    set_int_option(socket, libc::SOL_SOCKET, option, value)
}

/// Writes one control message (`level`, `kind`, `data`) into `buf` and
/// points `hdr` at it.
fn set_cmsg(hdr: &mut libc::msghdr, buf: &mut CmsgBuf, kind: libc::c_int, data: &[u8]) {
    // SAFETY: CMSG_SPACE/CMSG_LEN are pure arithmetic; `buf` is 64 bytes,
    // enough for a header and up to 8 bytes of data, and aligned for
    // `cmsghdr`; CMSG_FIRSTHDR returns a pointer into it because
    // msg_controllen is at least a header's size.
    unsafe {
        let space = libc::CMSG_SPACE(data.len() as u32) as usize;
        debug_assert!(space <= std::mem::size_of::<CmsgBuf>());
        hdr.msg_control = buf.0.as_mut_ptr().cast();
        hdr.msg_controllen = space;
        let cmsg = libc::CMSG_FIRSTHDR(hdr);
        (*cmsg).cmsg_level = libc::SOL_UDP;
        (*cmsg).cmsg_type = kind;
        (*cmsg).cmsg_len = libc::CMSG_LEN(data.len() as u32) as usize;
        std::ptr::copy_nonoverlapping(data.as_ptr(), libc::CMSG_DATA(cmsg), data.len());
    }
}

/// Cuts `bufs[pos..]` into runs and fills one `msghdr` per run; returns
/// how many.
fn plan(
    sys: &mut MmsgScratch,
    bufs: &[Vec<u8>],
    tails: bool,
    peers: &[SocketAddr],
    pos: usize,
    gso: bool,
) -> usize {
    let n = bufs.len().min(peers.len()).min(sys.tails.len());
    // Datagram i's iovecs start at first[i]; its run's iovecs are
    // contiguous, so a run's msghdr points at its first datagram's.
    let mut k = 0;
    for (i, buf) in bufs.iter().enumerate().take(n) {
        sys.first[i] = k;
        sys.iovs[k] = libc::iovec {
            iov_base: buf.as_ptr() as *mut libc::c_void,
            iov_len: buf.len(),
        };
        k += 1;
        sys.lens[i] = buf.len();
        if tails && sys.tails[i].iov_len > 0 {
            sys.iovs[k] = sys.tails[i];
            sys.lens[i] += sys.tails[i].iov_len;
            k += 1;
        }
    }
    sys.first[n] = k;
    let mut i = pos;
    let mut h = 0;
    while i < n && h < sys.hdrs.len() {
        let run = segment::run_at(&sys.lens[..n], &peers[..n], i, gso);
        if run.count == 0 {
            break;
        }
        sys.runs[h] = run;
        sys.send_names[h] = SockAddr::from(peers[i]);
        let hdr = &mut sys.hdrs[h].msg_hdr;
        hdr.msg_name = sys.send_names[h].as_ptr() as *mut libc::c_void;
        hdr.msg_namelen = sys.send_names[h].len();
        hdr.msg_iov = &mut sys.iovs[sys.first[i]];
        hdr.msg_iovlen = sys.first[i + run.count] - sys.first[i];
        hdr.msg_flags = 0;
        if run.count > 1 {
            let size = run.segment as u16;
            set_cmsg(
                hdr,
                &mut sys.ctrl[h],
                libc::UDP_SEGMENT,
                &size.to_ne_bytes(),
            );
        } else {
            hdr.msg_control = std::ptr::null_mut();
            hdr.msg_controllen = 0;
        }
        sys.hdrs[h].msg_len = 0;
        i += run.count;
        h += 1;
    }
    h
}

/// True for the answers of a kernel (or device) that cannot segment.
fn is_gso_refusal(e: &io::Error) -> bool {
    matches!(
        e.raw_os_error(),
        Some(libc::EIO) | Some(libc::EINVAL) | Some(libc::EOPNOTSUPP) | Some(libc::ENOPROTOOPT)
    )
}

#[allow(clippy::too_many_arguments)] // the batch's parallel arrays, borrowed for one call
pub(super) fn send_all(
    port: &UdpPort,
    sys: &mut MmsgScratch,
    bufs: &[Vec<u8>],
    tails: bool,
    peers: &[SocketAddr],
    blocking: bool,
    out: &mut Flushed,
) {
    let n = bufs.len().min(peers.len());
    let flags = if blocking { 0 } else { libc::MSG_DONTWAIT };
    let mut pos = 0;
    'plan: while pos < n {
        let count = plan(sys, bufs, tails, peers, pos, port.gso());
        if count == 0 {
            return;
        }
        let mut start = 0;
        while start < count {
            // SAFETY: hdrs[start..count] are initialised by `plan`; each
            // points to iovecs, an address and a control buffer that live
            // (unmoved) until the call returns, because `bufs`, `peers` and
            // `sys` are borrowed for the whole function.
            let rc = unsafe {
                libc::sendmmsg(
                    port.raw_fd(),
                    sys.hdrs.as_mut_ptr().add(start),
                    (count - start) as libc::c_uint,
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
                let run = sys.runs[start];
                if run.count > 1 && is_gso_refusal(&e) {
                    // Offload refused: from this run on, one datagram
                    // per message.
                    port.disable_gso(&e);
                    pos = run.first;
                    continue 'plan;
                }
                // The first run failed (unreachable, no buffer space...):
                // drop it and go on with the rest.
                log::trace!("send to {} failed: {e}", peers[run.first]);
                out.errors += run.count as u64;
                start += 1;
                continue;
            }
            let sent = (rc as usize).min(count - start);
            for run in &sys.runs[start..start + sent] {
                out.datagrams += run.count as u64;
                out.bytes += run.bytes as u64;
                if run.count > 1 {
                    out.offloaded += run.count as u64;
                }
            }
            start += sent;
            if sent == 0 {
                // Nothing went and no error: do not spin.
                out.errors += sys.runs[start].count as u64;
                start += 1;
            }
        }
        return;
    }
}

/// What the kernel attached to a received message: the GRO segment size
/// (0: none) and the arrival time (since the Unix epoch), if stamped.
fn control_of(hdr: &libc::msghdr) -> (usize, Option<Duration>) {
    let (mut segment, mut stamp) = (0, None);
    if hdr.msg_control.is_null() || hdr.msg_controllen < std::mem::size_of::<libc::cmsghdr>() {
        return (segment, stamp);
    }
    // SAFETY: the kernel wrote `msg_controllen` bytes of control messages
    // into the buffer `msg_control` points at; CMSG_FIRSTHDR/NXTHDR stay
    // within that length, and the data is read unaligned.
    unsafe {
        let mut cmsg = libc::CMSG_FIRSTHDR(hdr);
        while !cmsg.is_null() {
            let (level, kind) = ((*cmsg).cmsg_level, (*cmsg).cmsg_type);
            if level == libc::SOL_UDP && kind == libc::UDP_GRO {
                let size = std::ptr::read_unaligned(libc::CMSG_DATA(cmsg) as *const libc::c_int);
                segment = usize::try_from(size).unwrap_or(0);
            } else if level == libc::SOL_SOCKET && kind == libc::SCM_TIMESTAMPNS {
                let ts = std::ptr::read_unaligned(libc::CMSG_DATA(cmsg) as *const libc::timespec);
                if let (Ok(secs), Ok(nanos)) = (u64::try_from(ts.tv_sec), u32::try_from(ts.tv_nsec))
                {
                    stamp = (nanos < 1_000_000_000).then(|| Duration::new(secs, nanos));
                }
            }
            cmsg = libc::CMSG_NXTHDR(hdr, cmsg);
        }
    }
    (segment, stamp)
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
    segments: &mut [usize],
    stamps: &mut [Option<Duration>],
) -> io::Result<usize> {
    let count = count
        .min(sys.hdrs.len())
        .min(storage.len() / slot.max(1))
        .min(lens.len())
        .min(froms.len())
        .min(truncated.len())
        .min(segments.len())
        .min(stamps.len());
    let base = storage.as_mut_ptr();
    let gro = port.gro();
    // SAFETY: pure arithmetic.
    let space = unsafe {
        let gro_space = libc::CMSG_SPACE(std::mem::size_of::<libc::c_int>() as u32) as usize;
        let stamp_space = libc::CMSG_SPACE(std::mem::size_of::<libc::timespec>() as u32) as usize;
        usize::from(gro) * gro_space + usize::from(port.stamps()) * stamp_space
    }
    .min(std::mem::size_of::<CmsgBuf>());
    let with_control = space > 0;
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
        if with_control {
            hdr.msg_control = sys.ctrl[i].0.as_mut_ptr().cast();
            hdr.msg_controllen = space;
        } else {
            hdr.msg_control = std::ptr::null_mut();
            hdr.msg_controllen = 0;
        }
        hdr.msg_flags = 0;
        sys.hdrs[i].msg_len = 0;
    }
    let rc = loop {
        // SAFETY: hdrs[..count] point to iovecs into `storage`, to address
        // slots in `names` and to control buffers in `ctrl`, all alive and
        // exclusively borrowed for the duration of the call.
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
        // Without GRO the kernel attaches no segment size: 0.
        (segments[i], stamps[i]) = if with_control {
            control_of(&hdr.msg_hdr)
        } else {
            (0, None)
        };
        // SAFETY: the kernel wrote a socket address of `msg_namelen`
        // bytes into names[i]; SockAddr only reads within that length.
        let addr = unsafe { SockAddr::new(sys.names[i], hdr.msg_hdr.msg_namelen) };
        froms[i] = addr.as_socket();
    }
    Ok(rc.min(count))
}
