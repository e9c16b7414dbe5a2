//! The receive thread of one of an endpoint's extra sockets
//! ([`EndpointConfig::sockets`](crate::EndpointConfig::sockets) > 1): it
//! reads its socket in batches and feeds the connections whose datagrams
//! the kernel steered to it. Timers, commands and removals stay with the
//! primary receive thread (`recv_queue.rs`), which it tells of an earlier
//! deadline with a `Touch`. It stops when the primary thread has stopped
//! (which wakes it) or the endpoint is aborted.

use std::io;
use std::os::fd::RawFd;
use std::sync::Arc;
use std::time::Duration;

use mio::unix::SourceFd;
use mio::{Events, Interest, Poll, Token};

use crate::mux::MuxShared;
use crate::read_pause::ReadPause;
use crate::router::Router;
use crate::udp::RecvBatch;

/// mio token of the socket.
const SOCKET: Token = Token(0);
/// mio token of the waker the primary thread stops it with.
pub(crate) const AUX_WAKER: Token = Token(1);

/// State of an extra socket's receive thread.
pub(crate) struct AuxRecvThread {
    poll: Poll,
    events: Events,
    input: RecvBatch,
    router: Router,
    pause: ReadPause,
}

impl AuxRecvThread {
    /// Registers socket `socket` (≥ 1) of `mux` with `poll`, whose waker
    /// the multiplexer holds.
    ///
    /// # Errors
    /// Failure to register with the OS poller.
    pub(crate) fn new(mux: Arc<MuxShared>, socket: usize, poll: Poll) -> io::Result<AuxRecvThread> {
        let fd: RawFd = mux.port_at(socket).raw_fd();
        poll.registry()
            .register(&mut SourceFd(&fd), SOCKET, Interest::READABLE)?;
        let pause = ReadPause::new(mux.options().read_pause);
        let router = Router::new(mux, socket);
        let input = router.recv_batch();
        Ok(AuxRecvThread {
            pause,
            poll,
            events: Events::with_capacity(4),
            input,
            router,
        })
    }

    /// The thread body.
    pub(crate) fn run(mut self) {
        let mut more_to_read = true;
        loop {
            let mux = &self.router.mux;
            if mux.is_aborted() || mux.is_stopped() {
                break;
            }
            // Nothing but datagrams and the stop wake it: no timeout.
            let timeout = more_to_read.then_some(Duration::ZERO);
            if let Err(e) = self.poll.poll(&mut self.events, timeout) {
                if e.kind() != io::ErrorKind::Interrupted {
                    log::error!("receive thread poll failed: {e}");
                    std::thread::sleep(Duration::from_millis(10));
                }
            }
            more_to_read = self.router.read_socket(&mut self.input);
            self.router.flush_pass();
            more_to_read |= self.pause.rest(self.router.last_read(), !more_to_read);
        }
    }
}
