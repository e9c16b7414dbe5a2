//! A [`PunchAgent`] shared between the driver that owns the port (it holds
//! the agent as its [`DatagramHandler`]) and the application thread that
//! waits for the outcome. The handler wakes waiters after every input.

use std::net::SocketAddr;
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use super::agent::PunchAgent;
use crate::endpoint::DatagramHandler;

/// A cloneable handle on one agent. See the module documentation.
#[derive(Clone, Debug)]
pub struct SharedPunch {
    inner: Arc<(Mutex<PunchAgent>, Condvar)>,
}

impl SharedPunch {
    /// Wraps `agent`.
    pub fn new(agent: PunchAgent) -> SharedPunch {
        SharedPunch {
            inner: Arc::new((Mutex::new(agent), Condvar::new())),
        }
    }

    /// Locks the agent (a panic elsewhere while it was locked does not
    /// make its state unreadable: the agent has no invariants spanning
    /// calls that a panic could break half-way).
    pub fn lock(&self) -> MutexGuard<'_, PunchAgent> {
        self.inner.0.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Waits at most `timeout` for the handler to process an input, then
    /// returns the lock again.
    pub fn wait<'a>(
        &self,
        guard: MutexGuard<'a, PunchAgent>,
        timeout: Duration,
    ) -> MutexGuard<'a, PunchAgent> {
        match self.inner.1.wait_timeout(guard, timeout) {
            Ok((g, _)) => g,
            Err(e) => e.into_inner().0,
        }
    }

    /// A handler to register with the endpoint.
    pub fn handler(&self) -> Box<dyn DatagramHandler> {
        Box::new(PunchHandler(self.clone()))
    }
}

/// The [`DatagramHandler`] side of a [`SharedPunch`].
#[derive(Debug)]
struct PunchHandler(SharedPunch);

impl DatagramHandler for PunchHandler {
    fn handle_datagram(&mut self, now: Instant, from: SocketAddr, datagram: &[u8]) {
        self.0.lock().handle(now, from, datagram);
        self.0.inner.1.notify_all();
    }

    fn poll_transmit(&mut self, _now: Instant, buf: &mut Vec<u8>) -> Option<SocketAddr> {
        let (to, d) = self.0.lock().poll_send()?;
        buf.extend_from_slice(&d);
        Some(to)
    }

    fn poll_timeout(&self) -> Option<Instant> {
        self.0.lock().next_timeout()
    }

    fn handle_timeout(&mut self, now: Instant) {
        self.0.lock().handle_timeout(now);
        self.0.inner.1.notify_all();
    }
}
