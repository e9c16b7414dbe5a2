//! The multiplexer: one UDP socket, its send thread and receive thread, the
//! registry of connections on it, and the channels the other threads use
//! to tell those two what changed.

use std::io;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Instant;

use crossbeam_channel::{unbounded, Sender};
use parking_lot::Mutex;
use udt_core::sched::ConnectionHandle;
use udt_core::Config;

use crate::config::EndpointConfig;
use crate::conn::ConnShared;
use crate::recv_queue::RecvThread;
use crate::registry::{random_u64, Registry};
use crate::send_queue::SendThread;
use crate::udp::{Flushed, UdpPort};

/// Messages to the send thread, which alone owns the send schedule.
#[derive(Debug)]
pub(crate) enum SendCmd {
    /// A connection was established: start scheduling it.
    Register(ConnectionHandle, Arc<ConnShared>),
    /// The connection's `next_send_time` is now this. Generations order
    /// messages from different threads: an older one is ignored.
    Reschedule(ConnectionHandle, Option<Instant>, u64),
    /// The connection was removed from the registry.
    Deregister(ConnectionHandle),
    /// Exit.
    Stop,
}

/// Messages to the receive thread, which alone owns the timer heap.
#[derive(Debug)]
pub(crate) enum RecvCmd {
    /// Re-read this connection's timer deadline, send what it has, and
    /// remove it if it is finished.
    Touch(ConnectionHandle),
}

/// Counters of one multiplexer (see [`EndpointStats`]).
#[derive(Debug, Default)]
pub(crate) struct Counters {
    pub(crate) datagrams_received: AtomicU64,
    pub(crate) bytes_received: AtomicU64,
    pub(crate) datagrams_sent: AtomicU64,
    pub(crate) bytes_sent: AtomicU64,
    pub(crate) send_errors: AtomicU64,
    pub(crate) send_calls: AtomicU64,
    pub(crate) recv_calls: AtomicU64,
    pub(crate) recv_errors: AtomicU64,
    pub(crate) malformed: AtomicU64,
    pub(crate) truncated: AtomicU64,
    pub(crate) unknown_destination: AtomicU64,
    pub(crate) wrong_source: AtomicU64,
    pub(crate) handshakes_rejected: AtomicU64,
}

impl Counters {
    pub(crate) fn add(counter: &AtomicU64, n: u64) {
        counter.fetch_add(n, Ordering::Relaxed);
    }

    pub(crate) fn on_flush(&self, f: Flushed) {
        Self::add(&self.datagrams_sent, f.datagrams);
        Self::add(&self.bytes_sent, f.bytes);
        Self::add(&self.send_errors, f.errors);
        Self::add(&self.send_calls, f.calls);
    }
}

/// Counters and socket facts of an endpoint (its multiplexer).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct EndpointStats {
    /// The bound address.
    pub local_addr: Option<SocketAddr>,
    /// `SO_SNDBUF` the kernel granted (Linux reports twice the usable size).
    pub udp_send_buffer: usize,
    /// `SO_RCVBUF` the kernel granted.
    pub udp_recv_buffer: usize,
    /// Connections and handshakes currently registered.
    pub connections: usize,
    /// Datagrams read from the socket.
    pub datagrams_received: u64,
    /// Bytes read from the socket.
    pub bytes_received: u64,
    /// Datagrams handed to the kernel.
    pub datagrams_sent: u64,
    /// Bytes handed to the kernel.
    pub bytes_sent: u64,
    /// Datagrams the kernel refused to send (dropped; UDT retransmits).
    pub send_errors: u64,
    /// Send system calls (`sendmmsg` batches or single sends).
    pub send_calls: u64,
    /// Receive system calls that returned data.
    pub recv_calls: u64,
    /// Receive errors other than "nothing to read".
    pub recv_errors: u64,
    /// Datagrams too short to carry a UDT header.
    pub malformed: u64,
    /// Datagrams longer than the receive slot (cut, then dropped).
    pub truncated: u64,
    /// Datagrams for a socket ID nobody here has (or dest 0 with no
    /// listener or rendezvous for that peer).
    pub unknown_destination: u64,
    /// Datagrams for a known socket ID from an address other than its peer.
    pub wrong_source: u64,
    /// Connection requests refused because the accept backlog was full.
    pub handshakes_rejected: u64,
}

/// Everything the threads and the handles of one multiplexer share.
#[derive(Debug)]
pub(crate) struct MuxShared {
    pub(crate) port: UdpPort,
    pub(crate) registry: Mutex<Registry>,
    /// Default configuration of connections made through the endpoint.
    pub(crate) config: Arc<Config>,
    pub(crate) options: EndpointConfig,
    send_tx: Sender<SendCmd>,
    recv_tx: Sender<RecvCmd>,
    waker: mio::Waker,
    /// A wake of the receive thread is in flight: coalesces wake-ups.
    pub(crate) recv_wake_pending: AtomicBool,
    generation: AtomicU64,
    /// Endpoint clones and live handles; the threads stop once this is zero
    /// and every connection has finished.
    users: AtomicUsize,
    pub(crate) aborted: AtomicBool,
    /// The threads have exited (after an abort or when unused).
    pub(crate) stopped: AtomicBool,
    pub(crate) counters: Counters,
}

impl MuxShared {
    /// A fresh generation number for a send-queue key.
    pub(crate) fn next_generation(&self) -> u64 {
        self.generation.fetch_add(1, Ordering::Relaxed) + 1
    }

    pub(crate) fn send_command(&self, cmd: SendCmd) {
        // Only fails once the send thread has exited: nothing to do then.
        let _ = self.send_tx.send(cmd);
    }

    /// Asks the receive thread to look at a connection.
    pub(crate) fn touch(&self, h: ConnectionHandle) {
        let _ = self.recv_tx.send(RecvCmd::Touch(h));
        self.wake_recv();
    }

    /// Interrupts the receive thread's poll, once per batch of requests.
    pub(crate) fn wake_recv(&self) {
        if !self.recv_wake_pending.swap(true, Ordering::SeqCst) {
            if let Err(e) = self.waker.wake() {
                log::error!("cannot wake the receive thread: {e}");
            }
        }
    }

    pub(crate) fn users(&self) -> usize {
        self.users.load(Ordering::SeqCst)
    }

    pub(crate) fn is_aborted(&self) -> bool {
        self.aborted.load(Ordering::SeqCst)
    }

    /// Stops all I/O at once (see [`Endpoint::abort`](crate::Endpoint::abort)).
    pub(crate) fn abort(&self) {
        self.aborted.store(true, Ordering::SeqCst);
        self.wake_recv();
    }

    pub(crate) fn stats(&self) -> EndpointStats {
        let c = &self.counters;
        let get = |a: &AtomicU64| a.load(Ordering::Relaxed);
        EndpointStats {
            local_addr: Some(self.port.local_addr()),
            udp_send_buffer: self.port.send_buffer,
            udp_recv_buffer: self.port.recv_buffer,
            connections: self.registry.lock().live(),
            datagrams_received: get(&c.datagrams_received),
            bytes_received: get(&c.bytes_received),
            datagrams_sent: get(&c.datagrams_sent),
            bytes_sent: get(&c.bytes_sent),
            send_errors: get(&c.send_errors),
            send_calls: get(&c.send_calls),
            recv_calls: get(&c.recv_calls),
            recv_errors: get(&c.recv_errors),
            malformed: get(&c.malformed),
            truncated: get(&c.truncated),
            unknown_destination: get(&c.unknown_destination),
            wrong_source: get(&c.wrong_source),
            handshakes_rejected: get(&c.handshakes_rejected),
        }
    }
}

/// A counted reference to a multiplexer, held by endpoints and handles:
/// the threads keep running while one exists or a connection lingers.
#[derive(Debug)]
pub(crate) struct MuxRef(Arc<MuxShared>);

impl MuxRef {
    /// Binds the socket and starts both threads.
    ///
    /// # Errors
    /// Socket errors from binding, or failure to create the poller or the
    /// threads.
    pub(crate) fn start(
        addr: SocketAddr,
        config: Config,
        options: EndpointConfig,
    ) -> io::Result<MuxRef> {
        let port = UdpPort::bind(addr, &options)?;
        let poll = mio::Poll::new()?;
        let waker = mio::Waker::new(poll.registry(), crate::recv_queue::WAKER)?;
        let (send_tx, send_rx) = unbounded();
        let (recv_tx, recv_rx) = unbounded();
        let local = port.local_addr();
        let shared = Arc::new(MuxShared {
            port,
            registry: Mutex::new(Registry::new(random_u64())),
            config: Arc::new(config),
            options,
            send_tx,
            recv_tx,
            waker,
            recv_wake_pending: AtomicBool::new(false),
            generation: AtomicU64::new(0),
            users: AtomicUsize::new(1),
            aborted: AtomicBool::new(false),
            stopped: AtomicBool::new(false),
            counters: Counters::default(),
        });
        let recv = RecvThread::new(shared.clone(), poll, recv_rx)?;
        let send = SendThread::new(shared.clone(), send_rx);
        std::thread::Builder::new()
            .name(format!("udt-send {local}"))
            .spawn(move || send.run())?;
        if let Err(e) = std::thread::Builder::new()
            .name(format!("udt-recv {local}"))
            .spawn(move || recv.run())
        {
            shared.send_command(SendCmd::Stop);
            return Err(e);
        }
        log::info!("endpoint bound to {local}");
        Ok(MuxRef(shared))
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
            self.0.wake_recv();
        }
    }
}
