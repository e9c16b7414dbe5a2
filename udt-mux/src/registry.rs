//! The connection table of one multiplexer: the core endpoint (socket IDs,
//! listener, rendezvous peers, tombstones) and, by the handles it hands
//! out, the shared state of each connection. Behind the multiplexer's
//! registry lock, which comes before any connection lock.

use std::io;
use std::sync::Arc;

use udt_core::endpoint::{ConnectionHandle, Endpoint, ListenerId};

use crate::accept::AcceptSignal;
use crate::conn::ConnShared;

/// The listener of a multiplexer (at most one, as in UDT4).
#[derive(Debug)]
pub(crate) struct ListenerEntry {
    pub(crate) id: ListenerId,
    pub(crate) signal: Arc<AcceptSignal>,
}

/// Connection tables of one multiplexer.
#[derive(Debug)]
pub(crate) struct Registry {
    /// The routing tables, in udt-core.
    pub(crate) endpoint: Endpoint,
    /// Shared connection state by handle.
    conns: Vec<Option<Arc<ConnShared>>>,
    /// The listener's signals, if there is a listener.
    pub(crate) listener: Option<ListenerEntry>,
}

impl Registry {
    /// An empty registry whose endpoint draws its socket IDs, ISNs and
    /// cookie secrets from a CSPRNG keyed with `key`.
    pub(crate) fn new(key: [u8; 32]) -> Registry {
        Registry {
            endpoint: Endpoint::with_key(key),
            conns: Vec::new(),
            listener: None,
        }
    }

    /// Stores the shared state of the socket the endpoint created under
    /// `conn.handle`.
    pub(crate) fn insert(&mut self, conn: Arc<ConnShared>) {
        let i = conn.handle.index();
        if self.conns.len() <= i {
            self.conns.resize(i + 1, None);
        }
        self.conns[i] = Some(conn);
    }

    /// The connection in slot `h`.
    pub(crate) fn get(&self, h: ConnectionHandle) -> Option<&Arc<ConnShared>> {
        self.conns.get(h.index())?.as_ref()
    }

    /// Removes `conn` if it still occupies its slot; returns whether it did.
    /// The caller removes it from the endpoint too.
    pub(crate) fn take(&mut self, conn: &Arc<ConnShared>) -> bool {
        match self.conns.get_mut(conn.handle.index()) {
            Some(slot) if slot.as_ref().is_some_and(|c| Arc::ptr_eq(c, conn)) => {
                *slot = None;
                true
            }
            _ => false,
        }
    }

    /// How many connections and handshakes are registered.
    pub(crate) fn live(&self) -> usize {
        self.endpoint.live()
    }

    /// Empties every table (abort), returning the connections and the
    /// listener's signals.
    pub(crate) fn drain(&mut self) -> (Vec<Arc<ConnShared>>, Option<Arc<AcceptSignal>>) {
        let _ = self.endpoint.clear();
        let listener = self.listener.take().map(|l| l.signal);
        (self.conns.drain(..).flatten().collect(), listener)
    }
}

/// 32 bytes from the operating system's random source: the key of the
/// endpoint's CSPRNG (socket IDs, ISNs and cookie secrets must be
/// unpredictable to an off-path attacker, issue 10 item 1).
///
/// # Errors
/// The operating system's random source failed (no fallback: a guessable
/// key would silently weaken every connection).
pub(crate) fn random_key() -> io::Result<[u8; 32]> {
    let mut key = [0u8; 32];
    getrandom::fill(&mut key)
        .map_err(|e| io::Error::other(format!("no operating-system randomness: {e}")))?;
    Ok(key)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn random_keys_differ() {
        let a = random_key().expect("randomness");
        let b = random_key().expect("randomness");
        assert_ne!(a, b);
        assert_ne!(a, [0; 32]);
    }
}
