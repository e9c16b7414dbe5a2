//! Per-thread CPU time on Linux, to split a loopback benchmark's CPU into
//! its sending and receiving ends (both run in one process).

use std::collections::BTreeSet;
use std::time::Duration;

/// The IDs of this process's threads now.
pub fn threads() -> BTreeSet<u32> {
    let Ok(dir) = std::fs::read_dir("/proc/self/task") else {
        return BTreeSet::new();
    };
    dir.filter_map(|e| e.ok()?.file_name().to_str()?.parse().ok())
        .collect()
}

/// The ID of the calling thread.
pub fn current() -> u32 {
    // SAFETY: gettid has no preconditions.
    let tid = unsafe { libc::gettid() };
    u32::try_from(tid).unwrap_or(0)
}

/// CPU time the threads `tids` have run so far (the scheduler's own
/// nanosecond count, /proc/self/task/TID/schedstat); a thread that has
/// ended counts zero, so read before the threads go.
pub fn cpu<'a>(tids: impl IntoIterator<Item = &'a u32>) -> Duration {
    let ns: u64 = tids
        .into_iter()
        .filter_map(|tid| {
            let stat = std::fs::read_to_string(format!("/proc/self/task/{tid}/schedstat")).ok()?;
            stat.split_whitespace().next()?.parse::<u64>().ok()
        })
        .sum();
    Duration::from_nanos(ns)
}
