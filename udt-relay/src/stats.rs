//! Counters of a running relay: what each direction received, forwarded and
//! dropped, by reason. Updated with relaxed atomics by the relay threads and
//! read as plain snapshots.

use std::fmt;
use std::sync::atomic::{AtomicU64, Ordering};

/// A snapshot of one direction's counters.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct DirectionStats {
    /// Datagrams read from the sending side.
    pub received: u64,
    /// Bytes of those datagrams.
    pub received_bytes: u64,
    /// Datagrams sent to the receiving side (duplicates included).
    pub forwarded: u64,
    /// Bytes of those datagrams.
    pub forwarded_bytes: u64,
    /// Extra copies made by the duplication impairment.
    pub duplicated: u64,
    /// Dropped by random or bursty loss.
    pub dropped_loss: u64,
    /// Dropped at the full bottleneck queue (rate cap).
    pub dropped_queue: u64,
    /// Dropped because the relay already held its maximum of delayed datagrams.
    pub dropped_overflow: u64,
    /// Dropped because no session could be made for a new client (session
    /// limit reached, or the session socket could not be bound).
    pub dropped_no_session: u64,
    /// Sends that the operating system refused (full socket buffer, ICMP
    /// port unreachable reported back); those datagrams are lost.
    pub send_errors: u64,
}

impl DirectionStats {
    /// Datagrams dropped for any reason, send errors included.
    pub fn dropped(&self) -> u64 {
        self.dropped_loss
            + self.dropped_queue
            + self.dropped_overflow
            + self.dropped_no_session
            + self.send_errors
    }

    /// One JSON object with every counter.
    pub fn to_json(&self) -> String {
        format!(
            "{{\"received\":{},\"received_bytes\":{},\"forwarded\":{},\"forwarded_bytes\":{},\
             \"duplicated\":{},\"dropped_loss\":{},\"dropped_queue\":{},\"dropped_overflow\":{},\
             \"dropped_no_session\":{},\"send_errors\":{}}}",
            self.received,
            self.received_bytes,
            self.forwarded,
            self.forwarded_bytes,
            self.duplicated,
            self.dropped_loss,
            self.dropped_queue,
            self.dropped_overflow,
            self.dropped_no_session,
            self.send_errors
        )
    }
}

/// A snapshot of a relay's counters in both directions.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct RelayStats {
    /// Client → upstream.
    pub to_upstream: DirectionStats,
    /// Upstream → client.
    pub to_client: DirectionStats,
    /// Client sessions opened so far (one upstream-facing socket each).
    pub sessions_opened: u64,
    /// Sessions closed to make room for new clients.
    pub sessions_evicted: u64,
}

impl RelayStats {
    /// One JSON object: `{"to_upstream":{..},"to_client":{..},"sessions_opened":n,...}`.
    pub fn to_json(&self) -> String {
        format!(
            "{{\"to_upstream\":{},\"to_client\":{},\"sessions_opened\":{},\"sessions_evicted\":{}}}",
            self.to_upstream.to_json(),
            self.to_client.to_json(),
            self.sessions_opened,
            self.sessions_evicted
        )
    }
}

impl fmt::Display for DirectionStats {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "received {} forwarded {} (dup {}) dropped {} [loss {}, queue {}, overflow {}, no session {}, send errors {}]",
            self.received,
            self.forwarded,
            self.duplicated,
            self.dropped(),
            self.dropped_loss,
            self.dropped_queue,
            self.dropped_overflow,
            self.dropped_no_session,
            self.send_errors
        )
    }
}

/// The live counters of one direction.
#[derive(Debug, Default)]
pub(crate) struct DirectionCounters {
    pub(crate) received: AtomicU64,
    pub(crate) received_bytes: AtomicU64,
    pub(crate) forwarded: AtomicU64,
    pub(crate) forwarded_bytes: AtomicU64,
    pub(crate) duplicated: AtomicU64,
    pub(crate) dropped_loss: AtomicU64,
    pub(crate) dropped_queue: AtomicU64,
    pub(crate) dropped_overflow: AtomicU64,
    pub(crate) dropped_no_session: AtomicU64,
    pub(crate) send_errors: AtomicU64,
}

/// Adds one to a counter.
pub(crate) fn bump(c: &AtomicU64) {
    c.fetch_add(1, Ordering::Relaxed);
}

/// Adds `n` to a counter.
pub(crate) fn add(c: &AtomicU64, n: usize) {
    c.fetch_add(n as u64, Ordering::Relaxed);
}

impl DirectionCounters {
    pub(crate) fn snapshot(&self) -> DirectionStats {
        let r = |c: &AtomicU64| c.load(Ordering::Relaxed);
        DirectionStats {
            received: r(&self.received),
            received_bytes: r(&self.received_bytes),
            forwarded: r(&self.forwarded),
            forwarded_bytes: r(&self.forwarded_bytes),
            duplicated: r(&self.duplicated),
            dropped_loss: r(&self.dropped_loss),
            dropped_queue: r(&self.dropped_queue),
            dropped_overflow: r(&self.dropped_overflow),
            dropped_no_session: r(&self.dropped_no_session),
            send_errors: r(&self.send_errors),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn snapshot_and_json() {
        let c = DirectionCounters::default();
        bump(&c.received);
        add(&c.received_bytes, 100);
        bump(&c.dropped_loss);
        bump(&c.send_errors);
        let s = c.snapshot();
        assert_eq!(s.received, 1);
        assert_eq!(s.received_bytes, 100);
        assert_eq!(s.dropped(), 2);
        let j = RelayStats {
            to_upstream: s,
            ..RelayStats::default()
        }
        .to_json();
        assert!(j.starts_with("{\"to_upstream\":{\"received\":1,"), "{j}");
        assert!(j.contains("\"sessions_opened\":0"), "{j}");
        assert!(s.to_string().contains("dropped 2"));
    }
}
