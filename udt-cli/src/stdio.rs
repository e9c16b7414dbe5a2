//! Standard output for bulk data, unbuffered.
//!
//! Why not `io::stdout()`: Rust's standard output is line-buffered. Every
//! write scans the data for its last newline, and a write holding newlines
//! becomes two system calls (up to the newline, then the rest) plus a copy
//! of the tail into the buffer. A received stream is not lines: profiling
//! `udt listen` showed 7-10 % of the receiver's CPU in that scan alone.
//! The pipe commands already write in large chunks, so they write to the
//! file descriptor directly.
//!
//! When standard input or output is a pipe (`tar c dir | udt connect`),
//! [`widen_pipe`] also raises its capacity from Linux's default 64 KiB: with
//! 64 KiB every 256 KiB read blocks and wakes the writer, which cost the
//! sender 30 000 context switches per GiB.

use std::io::{self, Write};

/// Standard output as an unbuffered writer: each `write` is one system
/// call on a duplicate of file descriptor 1 (elsewhere than Unix, the
/// locked standard output).
#[derive(Debug)]
pub struct RawStdout {
    #[cfg(unix)]
    inner: std::fs::File,
    #[cfg(not(unix))]
    inner: io::StdoutLock<'static>,
}

/// Opens standard output for bulk writes; anything written before through
/// `io::stdout()` is flushed first, so the order of the bytes holds, and a
/// pipe on it is widened ([`widen_pipe`]).
///
/// # Errors
/// The flush of `io::stdout()`, or duplicating its file descriptor (for
/// example when the process has no descriptor left).
pub fn raw_stdout() -> io::Result<RawStdout> {
    io::stdout().flush()?;
    widen_pipe(STDOUT);
    #[cfg(unix)]
    {
        use std::os::fd::AsFd;
        let fd = io::stdout().as_fd().try_clone_to_owned()?;
        Ok(RawStdout {
            inner: std::fs::File::from(fd),
        })
    }
    #[cfg(not(unix))]
    {
        Ok(RawStdout {
            inner: io::stdout().lock(),
        })
    }
}

/// Standard input.
pub const STDIN: i32 = 0;
/// Standard output.
pub const STDOUT: i32 = 1;

/// Capacity asked for a pipe on standard input or output: Linux's default
/// `/proc/sys/fs/pipe-max-size`, the most an unprivileged process may set.
const PIPE_CAPACITY: i32 = 1 << 20;

/// Raises the capacity of `fd` to 1 MiB if it is a pipe, so that the
/// process at the other end and we each move more per wake-up. Best
/// effort: anything else than a pipe, or a refusal (a lower system
/// limit), leaves it as it is. Returns the capacity now, if a pipe.
pub fn widen_pipe(fd: i32) -> Option<usize> {
    #[cfg(target_os = "linux")]
    {
        // SAFETY: fstat writes only into the zeroed struct we own; fcntl
        // with F_GETPIPE_SZ/F_SETPIPE_SZ reads or sets an integer of the
        // descriptor and touches no memory of ours.
        unsafe {
            let mut st: libc::stat = std::mem::zeroed();
            if libc::fstat(fd, &mut st) != 0 || st.st_mode & libc::S_IFMT != libc::S_IFIFO {
                return None;
            }
            if libc::fcntl(fd, libc::F_GETPIPE_SZ) < PIPE_CAPACITY
                && libc::fcntl(fd, libc::F_SETPIPE_SZ, PIPE_CAPACITY) < 0
            {
                log::debug!(
                    "pipe on descriptor {fd} keeps its capacity: {}",
                    io::Error::last_os_error()
                );
            }
            usize::try_from(libc::fcntl(fd, libc::F_GETPIPE_SZ)).ok()
        }
    }
    #[cfg(not(target_os = "linux"))]
    {
        let _ = fd;
        None
    }
}

impl Write for RawStdout {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.inner.write(buf)
    }

    fn write_all(&mut self, buf: &[u8]) -> io::Result<()> {
        self.inner.write_all(buf)
    }

    fn flush(&mut self) -> io::Result<()> {
        self.inner.flush()
    }
}

#[cfg(all(test, unix))]
mod tests {
    use super::*;

    #[cfg(target_os = "linux")]
    #[test]
    fn a_pipe_is_widened_and_anything_else_left_alone() {
        use std::os::fd::AsRawFd;
        let (reader, writer) = io::pipe().expect("a pipe");
        // SAFETY: F_GETPIPE_SZ reads an integer of the descriptor.
        let before = unsafe { libc::fcntl(reader.as_raw_fd(), libc::F_GETPIPE_SZ) };
        let after = widen_pipe(reader.as_raw_fd()).expect("a pipe");
        assert!(
            after >= 1 << 20 && after > before as usize,
            "{before} -> {after}"
        );
        drop(writer);
        let file = tempfile_in_target();
        assert_eq!(widen_pipe(file.as_raw_fd()), None);
    }

    #[cfg(target_os = "linux")]
    fn tempfile_in_target() -> std::fs::File {
        let path = std::env::temp_dir().join(format!("udt-stdio-{}", std::process::id()));
        let file = std::fs::File::create(&path).expect("a file");
        let _ = std::fs::remove_file(&path);
        file
    }

    #[test]
    fn raw_stdout_is_a_separate_descriptor_that_reaches_the_same_file() {
        use std::os::fd::AsRawFd;
        let out = raw_stdout().expect("stdout can be duplicated");
        // A duplicate, not descriptor 1 itself: dropping it must not close
        // the process's standard output.
        assert_ne!(out.inner.as_raw_fd(), 1);
        drop(out);
        assert!(io::stdout().flush().is_ok());
    }
}
