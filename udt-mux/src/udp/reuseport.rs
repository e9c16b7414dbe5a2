//! Several sockets on one port: `SO_REUSEPORT`, and a classic BPF program
//! that steers each datagram to the socket that owns its connection.
//!
//! The program reads the destination socket ID (UDT header word 3, bytes
//! 12–15 of the UDP payload) and answers `id % n`: the index of a socket in
//! the port's reuseport group, which is the order the sockets were bound
//! in. So every datagram of one connection reaches one socket, and the
//! receive thread of that socket is the one that feeds it. A datagram with
//! ID 0 (a connection request, a rendezvous handshake) or shorter than a
//! UDT header gets an out-of-range answer, and the kernel falls back to
//! its own hash of the addresses: it may land on any socket, which the
//! shared registry handles (see `docs/performance.md`).

use std::io;
use std::os::fd::AsRawFd;

use socket2::Socket;

/// Turns on `SO_REUSEPORT` (before `bind`).
///
/// # Errors
/// The `setsockopt` error (an OS without the option).
pub(crate) fn enable(socket: &Socket) -> io::Result<()> {
    #[cfg(unix)]
    {
        socket.set_reuse_port(true)
    }
    #[cfg(not(unix))]
    {
        let _ = socket;
        Err(io::Error::from(io::ErrorKind::Unsupported))
    }
}

// Classic BPF opcodes (linux/filter.h, linux/bpf_common.h).
const BPF_LD: u16 = 0x00;
const BPF_JMP: u16 = 0x05;
const BPF_RET: u16 = 0x06;
const BPF_ALU: u16 = 0x04;
const BPF_W: u16 = 0x00;
const BPF_ABS: u16 = 0x20;
const BPF_LEN: u16 = 0x80;
const BPF_JGE: u16 = 0x30;
const BPF_JEQ: u16 = 0x10;
const BPF_MOD: u16 = 0x90;
const BPF_K: u16 = 0x00;
const BPF_A: u16 = 0x10;

/// Offset of the destination socket ID in a UDT datagram.
const DEST_OFFSET: u32 = 12;
/// A UDT header: shorter datagrams carry no socket ID.
const HEADER: u32 = 16;
/// An index no group has: the kernel then picks by its hash.
const ANY: u32 = u32::MAX;

/// One classic BPF instruction, as `struct sock_filter`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Insn {
    pub(crate) code: u16,
    pub(crate) jt: u8,
    pub(crate) jf: u8,
    pub(crate) k: u32,
}

/// The steering program for a group of `n` sockets (`n` ≥ 1).
pub(crate) fn program(n: u32) -> [Insn; 7] {
    let i = |code, jt, jf, k| Insn { code, jt, jf, k };
    [
        // A = payload length; shorter than a header: any socket.
        i(BPF_LD | BPF_W | BPF_LEN, 0, 0, 0),
        i(BPF_JMP | BPF_JGE | BPF_K, 0, 4, HEADER),
        // A = destination socket ID (loaded big-endian, as the wire has it).
        i(BPF_LD | BPF_W | BPF_ABS, 0, 0, DEST_OFFSET),
        // ID 0 belongs to no connection yet: any socket.
        i(BPF_JMP | BPF_JEQ | BPF_K, 2, 0, 0),
        i(BPF_ALU | BPF_MOD | BPF_K, 0, 0, n.max(1)),
        i(BPF_RET | BPF_A, 0, 0, 0),
        i(BPF_RET | BPF_K, 0, 0, ANY),
    ]
}

/// What [`program`] answers for a datagram: the socket index, or `None`
/// for the kernel's hash (the program's semantics, for tests).
#[cfg(test)]
pub(crate) fn steer(datagram: &[u8], n: u32) -> Option<u32> {
    let word = datagram.get(DEST_OFFSET as usize..HEADER as usize)?;
    let id = u32::from_be_bytes([word[0], word[1], word[2], word[3]]);
    (id != 0).then(|| id % n.max(1))
}

/// Attaches the steering program to the reuseport group of `socket`
/// (bound already, with `n` sockets in the group).
///
/// # Errors
/// The `setsockopt` error: a kernel without `SO_ATTACH_REUSEPORT_CBPF`
/// (before 4.5), or not Linux.
pub(crate) fn attach(socket: &Socket, n: u32) -> io::Result<()> {
    #[cfg(target_os = "linux")]
    {
        let mut insns: Vec<libc::sock_filter> = program(n)
            .iter()
            .map(|x| libc::sock_filter {
                code: x.code,
                jt: x.jt,
                jf: x.jf,
                k: x.k,
            })
            .collect();
        let prog = libc::sock_fprog {
            len: insns.len() as u16,
            filter: insns.as_mut_ptr(),
        };
        // SAFETY: `prog` points at `insns`, alive for the call; the kernel
        // copies and verifies the program.
        let rc = unsafe {
            libc::setsockopt(
                socket.as_raw_fd(),
                libc::SOL_SOCKET,
                libc::SO_ATTACH_REUSEPORT_CBPF,
                (&prog as *const libc::sock_fprog).cast(),
                std::mem::size_of::<libc::sock_fprog>() as libc::socklen_t,
            )
        };
        if rc == 0 {
            Ok(())
        } else {
            Err(io::Error::last_os_error())
        }
    }
    #[cfg(not(target_os = "linux"))]
    {
        let _ = (socket, n);
        Err(io::Error::from(io::ErrorKind::Unsupported))
    }
}
