//! Ctrl-C (SIGINT) and SIGTERM: the first one sets a flag that every wait
//! of the program polls (see `watch`), so a transfer stops at a clean point,
//! tells the other side, clears its progress bar and says how to resume;
//! a second one exits at once (status 130), for when the clean stop is
//! stuck.

use std::sync::atomic::{AtomicBool, Ordering};

static INTERRUPTED: AtomicBool = AtomicBool::new(false);

/// True once the user pressed Ctrl-C (or the process got SIGTERM).
pub fn interrupted() -> bool {
    INTERRUPTED.load(Ordering::Relaxed)
}

/// Marks the program as interrupted (what the signal handler does); for
/// tests and for commands that stop themselves the same way.
pub fn interrupt() {
    INTERRUPTED.store(true, Ordering::SeqCst);
}

/// Installs the handlers. Without `SA_RESTART`, so that a read of stdin
/// blocked in the kernel returns `EINTR` and its loop sees the flag.
pub fn install() {
    #[cfg(unix)]
    {
        for signal in [libc::SIGINT, libc::SIGTERM] {
            // SAFETY: the handler only touches an atomic and calls _exit,
            // both async-signal-safe; the sigaction struct is fully
            // initialised (zeroed, then the handler and an empty mask).
            unsafe {
                let mut action: libc::sigaction = std::mem::zeroed();
                action.sa_sigaction = on_signal as extern "C" fn(libc::c_int) as usize;
                libc::sigemptyset(&mut action.sa_mask);
                action.sa_flags = 0;
                if libc::sigaction(signal, &action, std::ptr::null_mut()) != 0 {
                    log::warn!("cannot install the handler of signal {signal}");
                }
            }
        }
    }
}

#[cfg(unix)]
extern "C" fn on_signal(_signal: libc::c_int) {
    if INTERRUPTED.swap(true, Ordering::SeqCst) {
        // SAFETY: _exit is async-signal-safe and ends the process without
        // running anything else.
        unsafe { libc::_exit(130) }
    }
}
