//! Standard output for bulk data, unbuffered.
//!
//! Why not `io::stdout()`: Rust's standard output is line-buffered. Every
//! write scans the data for its last newline, and a write holding newlines
//! becomes two system calls (up to the newline, then the rest) plus a copy
//! of the tail into the buffer. A received stream is not lines: profiling
//! `udt listen` showed 7-10 % of the receiver's CPU in that scan alone.
//! The pipe commands already write in large chunks, so they write to the
//! file descriptor directly.

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
/// `io::stdout()` is flushed first, so the order of the bytes holds.
///
/// # Errors
/// The flush of `io::stdout()`, or duplicating its file descriptor (for
/// example when the process has no descriptor left).
pub fn raw_stdout() -> io::Result<RawStdout> {
    io::stdout().flush()?;
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
