//! A connection whose every read and write gives up when the peer makes no
//! progress for the idle limit (`--idle-timeout`), or soon after Ctrl-C.
//!
//! The transport's own timeouts only notice a peer that is gone; a peer
//! that is there but sends nothing (an idle client, a stalled sender) would
//! hold a blocking call forever. Here the blocking calls wait in short
//! slices and check, between slices, how long the connection has made no
//! progress in *either* direction (so a receiver that only reads at the end
//! does not time out while the sender is busy writing), and whether the
//! user pressed Ctrl-C.

use std::io::{self, Read, Write};
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::net::{Conn, LinkStats};
use crate::proto::interrupted_error;
use crate::signals;

/// How long one slice of a blocking call waits.
const SLICE: Duration = Duration::from_millis(100);

/// How long a write may still take after Ctrl-C: long enough to finish the
/// frame in progress (so an `Error` frame can follow it), short enough not
/// to feel stuck.
const WRITE_GRACE: Duration = Duration::from_secs(1);

/// What all handles of one watched connection share.
#[derive(Debug)]
struct Shared {
    epoch: Instant,
    /// Milliseconds since `epoch` of the last read or write that moved
    /// bytes.
    last_progress_ms: AtomicU64,
    /// The idle limit in milliseconds (0: none).
    idle_ms: AtomicU64,
    /// When Ctrl-C was first seen by a write, ms since `epoch` + 1 (0:
    /// not yet).
    interrupted_at_ms: AtomicU64,
}

/// A [`Conn`] with an idle limit and Ctrl-C checks (see the module doc).
#[derive(Debug)]
pub struct Watched {
    conn: Conn,
    shared: Arc<Shared>,
}

impl Watched {
    /// Watches `conn` with the idle limit `idle` (`None`: only Ctrl-C).
    pub fn new(conn: Conn, idle: Option<Duration>) -> Watched {
        conn.set_read_timeout(Some(SLICE));
        conn.set_write_timeout(Some(SLICE));
        let shared = Arc::new(Shared {
            epoch: Instant::now(),
            last_progress_ms: AtomicU64::new(0),
            idle_ms: AtomicU64::new(idle.map_or(0, |d| d.as_millis().max(1) as u64)),
            interrupted_at_ms: AtomicU64::new(0),
        });
        Watched { conn, shared }
    }

    /// Changes the idle limit of every handle of this connection.
    pub fn set_idle(&self, idle: Option<Duration>) {
        self.shared.idle_ms.store(
            idle.map_or(0, |d| d.as_millis().max(1) as u64),
            Ordering::Relaxed,
        );
    }

    /// Another handle to the same connection, sharing the limits.
    ///
    /// # Errors
    /// The transport's.
    pub fn try_clone(&self) -> io::Result<Watched> {
        Ok(Watched {
            conn: self.conn.try_clone()?,
            shared: self.shared.clone(),
        })
    }

    /// The peer's address.
    pub fn peer_addr(&self) -> Option<SocketAddr> {
        self.conn.peer_addr()
    }

    /// The connection's counters.
    pub fn stats(&self) -> LinkStats {
        self.conn.stats()
    }

    /// Bytes written but not yet acknowledged by the peer (an upper
    /// bound; 0 when the transport cannot tell).
    pub fn unacknowledged_bytes(&self) -> u64 {
        self.conn.unacknowledged_bytes()
    }

    /// The connection itself (for an orderly close).
    pub fn into_inner(self) -> Conn {
        self.conn
    }

    fn now_ms(&self) -> u64 {
        self.shared.epoch.elapsed().as_millis() as u64
    }

    fn progressed(&self) {
        self.shared
            .last_progress_ms
            .store(self.now_ms(), Ordering::Relaxed);
    }

    /// After a slice without progress: the error that ends the call, if
    /// any.
    fn check(&self, writing: bool) -> Option<io::Error> {
        let now = self.now_ms();
        if signals::interrupted() {
            if !writing {
                return Some(interrupted_error());
            }
            let first = match self.shared.interrupted_at_ms.load(Ordering::Relaxed) {
                0 => {
                    self.shared
                        .interrupted_at_ms
                        .store(now + 1, Ordering::Relaxed);
                    now + 1
                }
                t => t,
            };
            if now + 1 >= first + WRITE_GRACE.as_millis() as u64 {
                return Some(interrupted_error());
            }
        }
        let idle = self.shared.idle_ms.load(Ordering::Relaxed);
        let last = self.shared.last_progress_ms.load(Ordering::Relaxed);
        if idle > 0 && now.saturating_sub(last) >= idle {
            return Some(io::Error::new(
                io::ErrorKind::TimedOut,
                format!(
                    "the peer made no progress for {} s (--idle-timeout)",
                    Duration::from_millis(idle).as_secs_f64()
                ),
            ));
        }
        None
    }
}

/// True for the error of a slice that ran out. Not for a connection that
/// ended: UDT reports a peer that went silent (killed, unplugged) as
/// `TimedOut` too, but with the connection's reason inside, and that must
/// end the call at once rather than after `--idle-timeout`.
fn is_slice_timeout(e: &io::Error) -> bool {
    matches!(
        e.kind(),
        io::ErrorKind::TimedOut | io::ErrorKind::WouldBlock
    ) && e
        .get_ref()
        .and_then(|inner| inner.downcast_ref::<udt_core::ConnectionError>())
        .is_none()
}

impl Read for Watched {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        // Also when data keeps coming: Ctrl-C must not wait for a pause.
        if signals::interrupted() {
            return Err(interrupted_error());
        }
        loop {
            match self.conn.read(buf) {
                Ok(n) => {
                    self.progressed();
                    return Ok(n);
                }
                Err(e) if is_slice_timeout(&e) || e.kind() == io::ErrorKind::Interrupted => {
                    if let Some(e) = self.check(false) {
                        return Err(e);
                    }
                }
                Err(e) => return Err(e),
            }
        }
    }
}

impl crate::proto::ReadAppend for Watched {
    /// As `read`, appending to `out` (one copy fewer over UDT).
    fn read_append(&mut self, out: &mut Vec<u8>, max: usize) -> io::Result<usize> {
        if signals::interrupted() {
            return Err(interrupted_error());
        }
        loop {
            match self.conn.read_append(out, max) {
                Ok(n) => {
                    self.progressed();
                    return Ok(n);
                }
                Err(e) if is_slice_timeout(&e) || e.kind() == io::ErrorKind::Interrupted => {
                    if let Some(e) = self.check(false) {
                        return Err(e);
                    }
                }
                Err(e) => return Err(e),
            }
        }
    }
}

impl Write for Watched {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        if signals::interrupted() {
            if let Some(e) = self.check(true) {
                return Err(e);
            }
        }
        loop {
            match self.conn.write(buf) {
                Ok(n) => {
                    if n > 0 {
                        self.progressed();
                    }
                    return Ok(n);
                }
                Err(e) if is_slice_timeout(&e) || e.kind() == io::ErrorKind::Interrupted => {
                    if let Some(e) = self.check(true) {
                        return Err(e);
                    }
                }
                Err(e) => return Err(e),
            }
        }
    }
    fn flush(&mut self) -> io::Result<()> {
        self.conn.flush()
    }
}
