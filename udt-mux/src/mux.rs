//! The state one multiplexer's threads and handles share: the UDP port, the
//! registry, the signals between threads, the counters, and the count of
//! users that keeps the threads alive. Its fields are private: everything
//! goes through the methods below.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;

use parking_lot::{Mutex, MutexGuard};
use udt_core::Config;

use crate::config::EndpointConfig;
use crate::conn::Notify;
use crate::counters::{Counters, EndpointStats};
use crate::registry::Registry;
use crate::udp::UdpPort;

/// Everything the threads and the handles of one multiplexer share.
#[derive(Debug)]
pub(crate) struct MuxShared {
    /// The sockets bound to the port: one, or an `SO_REUSEPORT` group whose
    /// first member carries the steering program. Never empty.
    ports: Vec<UdpPort>,
    /// Wakes the receive threads of `ports[1..]` (to stop them).
    aux_wakers: Vec<mio::Waker>,
    registry: Mutex<Registry>,
    /// Default configuration of connections made through the endpoint.
    config: Arc<Config>,
    options: EndpointConfig,
    notify: Arc<Notify>,
    /// Endpoint clones and live handles; the threads stop once this is zero
    /// and every connection has finished.
    users: AtomicUsize,
    /// The threads have exited (after an abort or when unused).
    stopped: AtomicBool,
    counters: Counters,
}

impl MuxShared {
    /// The shared state of a multiplexer on `port` (and the extra sockets
    /// `more`, whose receive threads `aux_wakers` wake), with one user (the
    /// endpoint that starts it).
    pub(crate) fn new(
        port: UdpPort,
        more: Vec<UdpPort>,
        aux_wakers: Vec<mio::Waker>,
        registry: Registry,
        config: Config,
        options: EndpointConfig,
        notify: Notify,
    ) -> MuxShared {
        let mut ports = Vec::with_capacity(1 + more.len());
        ports.push(port);
        ports.extend(more);
        MuxShared {
            ports,
            aux_wakers,
            registry: Mutex::new(registry),
            config: Arc::new(config),
            options,
            notify: Arc::new(notify),
            users: AtomicUsize::new(1),
            stopped: AtomicBool::new(false),
            counters: Counters::default(),
        }
    }

    /// The first (or only) socket: the send thread's, and the primary
    /// receive thread's.
    pub(crate) fn port(&self) -> &UdpPort {
        &self.ports[0]
    }

    /// Socket `i` of the port (the first for an index out of range).
    pub(crate) fn port_at(&self, i: usize) -> &UdpPort {
        self.ports.get(i).unwrap_or(&self.ports[0])
    }

    /// Wakes the extra sockets' receive threads (after the primary one
    /// stopped).
    pub(crate) fn wake_aux(&self) {
        for w in &self.aux_wakers {
            if let Err(e) = w.wake() {
                log::error!("cannot wake a receive thread: {e}");
            }
        }
    }

    /// The bound address.
    pub(crate) fn local_addr(&self) -> SocketAddr {
        self.port().local_addr()
    }

    /// Locks the registry (before any connection lock, never the reverse).
    pub(crate) fn registry(&self) -> MutexGuard<'_, Registry> {
        self.registry.lock()
    }

    /// Default configuration of connections made through the endpoint.
    pub(crate) fn config(&self) -> &Arc<Config> {
        &self.config
    }

    pub(crate) fn options(&self) -> &EndpointConfig {
        &self.options
    }

    /// The signals between the threads.
    pub(crate) fn notify(&self) -> &Arc<Notify> {
        &self.notify
    }

    pub(crate) fn counters(&self) -> &Counters {
        &self.counters
    }

    pub(crate) fn users(&self) -> usize {
        self.users.load(Ordering::SeqCst)
    }

    pub(crate) fn is_aborted(&self) -> bool {
        self.notify.is_aborted()
    }

    /// Stops all I/O at once (see [`Endpoint::abort`](crate::Endpoint::abort)).
    pub(crate) fn abort(&self) {
        self.notify.abort();
    }

    /// Grows every socket's receive buffer for `live` connections
    /// ([`EndpointConfig::udp_recv_buffer_per_connection`]): the steering
    /// spreads them evenly, so each socket holds its share's bursts.
    pub(crate) fn fit_recv_buffers(&self, live: usize) {
        let share = live.div_ceil(self.ports.len());
        if let Some(bytes) = self.options.recv_buffer_for(share) {
            for port in &self.ports {
                port.grow_recv_buffer(bytes, self.options.udp_recv_buffer_max);
            }
        }
    }

    /// True once the threads have exited.
    pub(crate) fn is_stopped(&self) -> bool {
        self.stopped.load(Ordering::SeqCst)
    }

    /// Called by the receive thread as it exits.
    pub(crate) fn mark_stopped(&self) {
        self.stopped.store(true, Ordering::SeqCst);
    }

    pub(crate) fn stats(&self) -> EndpointStats {
        let c = &self.counters;
        let get = |a: &std::sync::atomic::AtomicU64| a.load(Ordering::Relaxed);
        let (connections, e) = {
            let reg = self.registry.lock();
            (reg.live(), reg.endpoint.counters())
        };
        EndpointStats {
            local_addr: Some(self.port().local_addr()),
            udp_send_buffer: self.port().send_buffer,
            udp_recv_buffer: self.port().recv_buffer(),
            connections,
            datagrams_received: get(&c.datagrams_received),
            bytes_received: get(&c.bytes_received),
            datagrams_sent: get(&c.datagrams_sent),
            bytes_sent: get(&c.bytes_sent),
            send_errors: get(&c.send_errors),
            send_calls: get(&c.send_calls),
            recv_calls: get(&c.recv_calls),
            recv_errors: get(&c.recv_errors),
            malformed: e.malformed,
            truncated: get(&c.truncated),
            unknown_destination: e.unknown_destination,
            wrong_source: e.wrong_source,
            handshakes_rejected: e.handshakes_rejected,
            handshakes_throttled: e.handshakes_throttled,
            foreign: e.foreign,
            secure_refused: e.secure_refused,
            secure_replays: e.secure_replays,
            secure_peer_refused: e.secure_peer_refused,
            datagrams_offloaded: get(&c.datagrams_offloaded),
            datagrams_coalesced: get(&c.datagrams_coalesced),
        }
    }
}

/// A counted reference to a multiplexer, held by endpoints and handles:
/// the threads keep running while one exists or a connection lingers.
#[derive(Debug)]
pub(crate) struct MuxRef(Arc<MuxShared>);

impl MuxRef {
    /// The first reference to a multiplexer (its count starts at one).
    pub(crate) fn first(shared: Arc<MuxShared>) -> MuxRef {
        MuxRef(shared)
    }

    pub(crate) fn shared(&self) -> &Arc<MuxShared> {
        &self.0
    }

    /// A new counted reference to the same multiplexer.
    pub(crate) fn from_shared(shared: &Arc<MuxShared>) -> MuxRef {
        shared.users.fetch_add(1, Ordering::SeqCst);
        MuxRef(shared.clone())
    }
}

impl Clone for MuxRef {
    fn clone(&self) -> Self {
        MuxRef::from_shared(&self.0)
    }
}

impl Drop for MuxRef {
    fn drop(&mut self) {
        if self.0.users.fetch_sub(1, Ordering::SeqCst) == 1 {
            // The receive thread decides whether it can stop now.
            self.0.notify.wake_recv();
        }
    }
}
