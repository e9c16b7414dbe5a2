//! The (primary) receive thread: reads datagrams in batches, routes each
//! by its destination socket ID (ID 0: a rendezvous peer by address, else
//! the listener; see `router.rs`), runs handshakes to completion, fires the
//! protocol timers from a deadline heap (never a scan of all connections),
//! and stops the multiplexer. An endpoint with several sockets has one
//! more receive thread per extra socket (`recv_aux.rs`).
//!
//! It waits in mio's `poll` over the socket and a `Waker`; the poll timeout
//! is the earliest timer deadline (mio rounds it up to whole milliseconds,
//! harmless at the 10 ms SYN scale). While datagrams arrive one by one and
//! fast, it pauses briefly between reads instead (`read_pause.rs`). Bad input is counted and dropped:
//! nothing a peer sends can stop this thread.

use std::io;
use std::os::fd::RawFd;
use std::sync::Arc;
use std::time::{Duration, Instant};

use crossbeam_channel::{Receiver, TryRecvError};
use mio::unix::SourceFd;
use mio::{Events, Interest, Poll, Token};

use crate::mux::MuxShared;
use crate::notify::{RecvCmd, SendCmd};
use crate::read_pause::ReadPause;
use crate::router::{Input, Router};
use crate::udp::RecvBatch;

/// mio token of the UDP socket.
const SOCKET: Token = Token(0);
/// mio token of the waker other threads use.
pub(crate) const WAKER: Token = Token(1);

/// State of the receive thread.
pub(crate) struct RecvThread {
    poll: Poll,
    events: Events,
    rx: Receiver<RecvCmd>,
    input: RecvBatch,
    router: Router,
    /// The last read stopped on its budget, not on an empty socket.
    more_to_read: bool,
    pause: ReadPause,
}

impl RecvThread {
    /// Registers the socket with `poll`.
    ///
    /// # Errors
    /// Failure to register with the OS poller.
    pub(crate) fn new(
        mux: Arc<MuxShared>,
        poll: Poll,
        rx: Receiver<RecvCmd>,
    ) -> io::Result<RecvThread> {
        let fd: RawFd = mux.port().raw_fd();
        poll.registry()
            .register(&mut SourceFd(&fd), SOCKET, Interest::READABLE)?;
        let pause = ReadPause::new(mux.options().read_pause);
        let router = Router::new(mux, 0);
        let input = router.recv_batch();
        Ok(RecvThread {
            pause,
            poll,
            events: Events::with_capacity(8),
            rx,
            input,
            router,
            more_to_read: true,
        })
    }

    /// The thread body; returns when the endpoint is aborted, or unused
    /// with every connection finished.
    pub(crate) fn run(mut self) {
        loop {
            if self.router.mux.is_aborted() {
                self.router.abort_all();
                break;
            }
            if self.router.is_unused() {
                break;
            }
            let timeout = if self.more_to_read {
                Some(Duration::ZERO)
            } else {
                self.router
                    .next_timer()
                    .map(|at| at.saturating_duration_since(Instant::now()))
            };
            if let Err(e) = self.poll.poll(&mut self.events, timeout) {
                if e.kind() != io::ErrorKind::Interrupted {
                    log::error!("receive thread poll failed: {e}");
                    std::thread::sleep(Duration::from_millis(10));
                }
            }
            // Clear before draining the commands: a request queued after
            // this point wakes the poll again.
            self.router.mux.notify().clear_recv_wake();
            self.read_socket();
            self.run_commands();
            self.router.fire_timers();
            self.router.flush_pass();
            // After a pause, read again whatever `poll` would say.
            let drained = !self.more_to_read;
            self.more_to_read |= self.pause.rest(self.router.last_read(), drained);
        }
        self.router.mux.notify().send_command(SendCmd::Stop);
        self.router.mux.mark_stopped();
        // The extra sockets' threads see the mark once woken.
        self.router.mux.wake_aux();
        log::info!("endpoint {} stopped", self.router.mux.local_addr());
    }

    /// Reads until the socket is empty or the round budget is used (then
    /// the next poll does not wait).
    fn read_socket(&mut self) {
        self.more_to_read = self.router.read_socket(&mut self.input);
    }

    fn run_commands(&mut self) {
        loop {
            match self.rx.try_recv() {
                Ok(RecvCmd::Touch(h)) => {
                    let conn = self.router.mux.registry().get(h).cloned();
                    if let Some(conn) = conn {
                        self.router.drive(&conn, Instant::now(), Input::Touch);
                    }
                }
                Err(TryRecvError::Empty) | Err(TryRecvError::Disconnected) => return,
            }
        }
    }
}
