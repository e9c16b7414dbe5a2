//! One system call per datagram, for Unix systems without the batch calls
//! (and without segmentation offload).

use std::mem::MaybeUninit;

use super::*;

pub(super) fn send_all(
    port: &UdpPort,
    bufs: &[Vec<u8>],
    peers: &[SocketAddr],
    blocking: bool,
    out: &mut Flushed,
) {
    for (buf, peer) in bufs.iter().zip(peers) {
        let dest = &SockAddr::from(*peer);
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
