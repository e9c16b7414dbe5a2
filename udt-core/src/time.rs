//! Protocol time constants and the wire timestamp.
//!
//! udt-core never reads a clock: every entry point takes `now: Instant`.
//! This module holds the constants of the UDT4 timer scheme and the one
//! conversion between `Instant`s and the 32-bit microsecond timestamps that
//! headers carry.

use std::time::{Duration, Instant};

/// The SYN interval: the period of the ACK timer and of rate control
/// (UDT4 `m_iSYNInterval`, 10 000 µs).
pub const SYN_INTERVAL: Duration = Duration::from_millis(10);

/// The floor of the EXP (retransmission / keep-alive) timer
/// (UDT4 `m_ullMinExpInt`, 300 ms).
pub const MIN_EXP_INTERVAL: Duration = Duration::from_millis(300);

/// Microseconds since `start`, truncated to 32 bits as UDT4 puts it in
/// word 2 of a header. Wraps every 71.6 minutes.
pub fn wire_timestamp(start: Instant, now: Instant) -> u32 {
    now.saturating_duration_since(start).as_micros() as u32
}

/// One real `Instant` for the crate's tests to count their time from: the
/// only clock read the tests need (the code itself takes `now`).
#[cfg(test)]
#[allow(clippy::disallowed_methods)]
pub(crate) fn test_epoch() -> Instant {
    Instant::now()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn timestamp_wraps_at_32_bits() {
        let start = test_epoch();
        let later = start + Duration::from_micros(u32::MAX as u64 + 11);
        assert_eq!(wire_timestamp(start, later), 10);
        assert_eq!(wire_timestamp(later, start), 0);
    }
}
