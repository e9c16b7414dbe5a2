//! How much CPU this process used: both ends of a bench report it.

use std::time::Duration;

/// CPU time (user + system) this process has used.
pub fn cpu_time() -> Duration {
    #[cfg(unix)]
    {
        let mut usage = std::mem::MaybeUninit::<libc::rusage>::zeroed();
        // SAFETY: getrusage writes a `rusage` into the pointer we pass,
        // which points to enough zeroed memory for one.
        let rc = unsafe { libc::getrusage(libc::RUSAGE_SELF, usage.as_mut_ptr()) };
        if rc == 0 {
            // SAFETY: initialised by the successful call above (and zeroed
            // before it).
            let u = unsafe { usage.assume_init() };
            let tv = |t: libc::timeval| {
                Duration::new(t.tv_sec.max(0) as u64, (t.tv_usec.max(0) as u32) * 1000)
            };
            return tv(u.ru_utime) + tv(u.ru_stime);
        }
    }
    Duration::ZERO
}

/// Percent of one core used since `cpu0` over `wall`.
pub fn cpu_percent(cpu0: Duration, wall: Duration) -> f64 {
    let w = wall.as_secs_f64();
    if w <= 0.0 {
        0.0
    } else {
        cpu_time().saturating_sub(cpu0).as_secs_f64() / w * 100.0
    }
}
