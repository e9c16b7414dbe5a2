//! How application threads drive a connection: lock, call the core, settle,
//! unlock, then tell the send and receive threads what changed. Blocking
//! calls wait on the connection's condition variable between attempts.
//! Application threads never do socket I/O.

use std::io;
use std::time::{Duration, Instant};

use parking_lot::MutexGuard;
use udt_core::connection::Connection;
use udt_core::ReadError;

use crate::conn::{ConnInner, ConnShared, WaitFor, Wake};
use crate::error;
use crate::notify::SendCmd;

/// One blocking call's work, for [`ConnShared::wait_for`]. All under the
/// connection's lock.
trait Attempt<T> {
    /// At the top of every round, before anything may return: take back
    /// what [`before_wait`](Self::before_wait) lent.
    fn reclaim(&mut self, _g: &mut ConnInner) {}
    /// The call itself; `None` when it would block.
    fn attempt(&mut self, g: &mut ConnInner, now: Instant) -> Option<io::Result<T>>;
    /// Right before sleeping on the condition variable.
    fn before_wait(&mut self, _g: &mut ConnInner) {}
}

/// A plain attempt: nothing lent while waiting.
struct JustTry<F>(F);

impl<T, F: FnMut(&mut ConnInner, Instant) -> Option<io::Result<T>>> Attempt<T> for JustTry<F> {
    fn attempt(&mut self, g: &mut ConnInner, now: Instant) -> Option<io::Result<T>> {
        (self.0)(g, now)
    }
}

/// A stream read into a slice ([`ConnShared::read_into`]): while it
/// waits, the connection knows how much it asks for.
struct SliceRead<'a> {
    buf: &'a mut [u8],
    /// The want was told to the connection and must be withdrawn.
    told: bool,
}

impl Attempt<usize> for SliceRead<'_> {
    fn reclaim(&mut self, g: &mut ConnInner) {
        if std::mem::take(&mut self.told) {
            if let Some(c) = g.phase.connection() {
                c.set_read_want(0);
            }
        }
    }

    fn attempt(&mut self, g: &mut ConnInner, _now: Instant) -> Option<io::Result<usize>> {
        let buf = &mut *self.buf;
        stream_read_attempt(g, |c| c.read(buf))
    }

    fn before_wait(&mut self, g: &mut ConnInner) {
        if let Some(c) = g.phase.connection() {
            c.set_read_want(self.buf.len());
            self.told = true;
        }
    }
}

/// A stream read that lends its vector while it waits
/// ([`ConnShared::read_lending`]).
struct Lending<'a> {
    out: &'a mut Vec<u8>,
    max: usize,
    /// `out`'s length when it was lent, while it is.
    lent_at: Option<usize>,
    /// Bytes the last reclaim brought back.
    got: usize,
}

impl Attempt<usize> for Lending<'_> {
    fn reclaim(&mut self, g: &mut ConnInner) {
        self.got = 0;
        let Some(at) = self.lent_at.take() else {
            return;
        };
        if let Some(back) = g.phase.connection().and_then(|c| c.take_read_sink()) {
            *self.out = back;
            self.got = self.out.len().saturating_sub(at);
        }
    }

    fn attempt(&mut self, g: &mut ConnInner, _now: Instant) -> Option<io::Result<usize>> {
        if self.got > 0 {
            return Some(Ok(self.got));
        }
        let (out, max) = (&mut *self.out, self.max);
        stream_read_attempt(g, |c| c.read_to_vec(out, max))
    }

    fn before_wait(&mut self, g: &mut ConnInner) {
        // The room is bounded: a huge `max` must not allocate that much.
        let room = self.max.min(MAX_LENT_ROOM);
        self.out.reserve(room);
        if let Some(c) = g.phase.connection() {
            let at = self.out.len();
            match c.lend_read_sink(std::mem::take(self.out), room) {
                Ok(()) => self.lent_at = Some(at),
                Err(back) => *self.out = back,
            }
        }
    }
}

/// One attempt of a stream read, `read` moving the bytes: the end of the
/// stream after a local read shutdown, `NotConnected` without a
/// connection, `None` while nothing is readable, and the connection's
/// failures as I/O errors.
pub(crate) fn stream_read_attempt(
    g: &mut ConnInner,
    read: impl FnOnce(&mut Connection) -> Result<usize, ReadError>,
) -> Option<io::Result<usize>> {
    if g.read_shut {
        return Some(Ok(0));
    }
    let Some(c) = g.phase.connection() else {
        return Some(Err(error::not_connected()));
    };
    match read(c) {
        Ok(n) => Some(Ok(n)),
        Err(ReadError::WouldBlock) => None,
        Err(e) => Some(Err(error::read_error(e))),
    }
}

/// The most a waiting [`read_lending`](ConnShared::read_lending) reserves
/// in the caller's vector for data to arrive straight into; more than that
/// waits in the receive buffer for the next call.
const MAX_LENT_ROOM: usize = 16 << 20;

impl ConnShared {
    /// Acts on a settle made by an application thread; call with no lock
    /// held.
    pub(crate) fn report(&self, wake: Wake) {
        if wake.reschedule.is_some() {
            self.notify.send_command(SendCmd::Reschedule(self.handle));
        }
        if wake.touch {
            self.notify.touch(self.handle);
        }
        if wake.notify || wake.watch {
            self.wake_waiters_or_watchers(wake.notify);
        }
    }

    /// Runs `op` under the lock, waiting on the condition variable while it
    /// returns `None` ("would block"), at most `timeout`; `wait` says what
    /// it waits for, so that only events that may help wake it.
    ///
    /// # Errors
    /// What `op` returns; `WouldBlock` in non-blocking mode; `TimedOut`
    /// after the timeout; `ConnectionAborted` once the endpoint is aborted.
    pub(crate) fn blocking<T>(
        &self,
        wait: WaitFor,
        timeout: impl Fn(&ConnInner) -> Option<Duration>,
        what: &'static str,
        op: impl FnMut(&mut ConnInner, Instant) -> Option<io::Result<T>>,
    ) -> io::Result<T> {
        self.wait_for(wait, timeout, what, &mut JustTry(op))
    }

    /// The loop of every blocking call: under the lock, `attempt`, settle,
    /// and wait on the condition variable while it would block.
    fn wait_for<T>(
        &self,
        wait: WaitFor,
        timeout: impl Fn(&ConnInner) -> Option<Duration>,
        what: &'static str,
        attempt: &mut impl Attempt<T>,
    ) -> io::Result<T> {
        let mut g = self.inner.lock();
        let deadline = timeout(&g).map(|d| Instant::now() + d);
        let mut last_try = false;
        loop {
            attempt.reclaim(&mut g);
            if g.aborted || self.notify.is_aborted() {
                return Err(error::aborted());
            }
            let now = g.clock(Instant::now());
            let result = attempt.attempt(&mut g, now);
            // Settle even when the attempt would block: it may have changed
            // the core all the same (`close` queues the shutdown, or starts
            // the linger timer, and then waits), and the threads must hear
            // of it now, not at the next unrelated timer.
            let wake = g.settle(&self.notify);
            if let Some(result) = result {
                drop(g);
                self.report(wake);
                return result;
            }
            if !wake.is_empty() {
                // Tell them with the lock released, then look again: they
                // may already have answered (the shutdown left), and a
                // notification sent before we wait would be missed. This
                // ends: the next settle reports only what changed since.
                MutexGuard::unlocked(&mut g, || self.report(wake));
                continue;
            }
            if g.nonblocking {
                return Err(error::would_block(what));
            }
            if last_try {
                return Err(error::timed_out(what));
            }
            attempt.before_wait(&mut g);
            g.start_waiting(wait);
            match deadline {
                Some(d) => {
                    if self.cond.wait_until(&mut g, d).timed_out() {
                        // One more look: the event may have raced the timeout.
                        last_try = true;
                    }
                }
                None => self.cond.wait(&mut g),
            }
            g.done_waiting(wait);
        }
    }

    /// A blocking stream read appending at most `max` bytes to `out`. While
    /// it waits, `out` (with room for up to `max` more bytes reserved) is
    /// lent to the connection, so data arriving in order goes straight into
    /// it from the receive thread: one copy instead of two (into the receive
    /// buffer, then out of it). Every way out of the wait takes it back
    /// first, so `out` never loses what it held.
    ///
    /// # Errors
    /// As a read: `WouldBlock` in non-blocking mode, `TimedOut` after the
    /// read timeout, `ConnectionAborted` once the endpoint is aborted,
    /// `NotConnected`, and the connection's own failures.
    pub(crate) fn read_lending(&self, out: &mut Vec<u8>, max: usize) -> io::Result<usize> {
        let mut lending = Lending {
            out,
            max,
            lent_at: None,
            got: 0,
        };
        self.wait_for(
            WaitFor::Read,
            |g| g.read_timeout,
            "read timed out",
            &mut lending,
        )
    }

    /// A blocking stream read into `buf`. While it waits, the connection
    /// is told how much it asks for, so that data filling the request
    /// wakes it with the receive thread's batch even in the middle of one
    /// of the peer's writes (`Connection::set_read_want`).
    ///
    /// # Errors
    /// As [`read_lending`](Self::read_lending).
    pub(crate) fn read_into(&self, buf: &mut [u8]) -> io::Result<usize> {
        self.wait_for(
            WaitFor::Read,
            |g| g.read_timeout,
            "read timed out",
            &mut SliceRead { buf, told: false },
        )
    }

    /// Runs `f` on the connection under the lock and settles.
    ///
    /// # Errors
    /// `ConnectionAborted` after an abort, `NotConnected` before the
    /// handshake finished.
    pub(crate) fn with_connection<T>(
        &self,
        f: impl FnOnce(&mut Connection, Instant) -> T,
    ) -> io::Result<T> {
        let mut g = self.inner.lock();
        if g.aborted || self.notify.is_aborted() {
            return Err(error::aborted());
        }
        let now = g.clock(Instant::now());
        let Some(c) = g.phase.connection() else {
            return Err(io::Error::new(io::ErrorKind::NotConnected, "not connected"));
        };
        let r = f(c, now);
        let wake = g.settle(&self.notify);
        drop(g);
        self.report(wake);
        Ok(r)
    }

    /// Closes the connection in order (linger continues in the background)
    /// and tells the threads; for connections nobody will use: a listener
    /// closed with them still queued, or nobody waits for a handshake that
    /// just finished.
    pub(crate) fn close_unused(&self) {
        let mut g = self.inner.lock();
        self.close_locked(&mut g);
        let wake = g.settle(&self.notify);
        drop(g);
        self.report(wake);
    }

    /// One application handle fewer. The last one starts an orderly close
    /// that continues in the background (linger), and lets the receive
    /// thread forget the connection once it is finished.
    pub(crate) fn release_handle(&self) {
        let mut g = self.inner.lock();
        g.handles = g.handles.saturating_sub(1);
        if g.handles == 0 {
            self.close_locked(&mut g);
        }
        let wake = g.settle(&self.notify);
        drop(g);
        self.report(wake);
    }

    fn close_locked(&self, g: &mut ConnInner) {
        // After an abort nothing is closed in order: the peer must see
        // silence, as from a killed process.
        if !g.aborted && !self.notify.is_aborted() {
            let now = g.clock(Instant::now());
            if let Some(c) = g.phase.connection() {
                c.close(now);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::conn::close_result;
    use std::io::{Read, Write};
    use udt_core::Config;

    use crate::{Endpoint, EndpointConfig, UdtListener, UdtStream};

    /// A connected pair on loopback, with its endpoints and listener.
    fn pair() -> (Endpoint, Endpoint, UdtListener, UdtStream, UdtStream) {
        pair_with(Config::default())
    }

    /// As [`pair`], both ends with `config` (and a 5 s linger).
    fn pair_with(mut config: Config) -> (Endpoint, Endpoint, UdtListener, UdtStream, UdtStream) {
        config.linger = Some(Duration::from_secs(5));
        let bind = |config| Endpoint::bind_with("127.0.0.1:0", config, EndpointConfig::default());
        let server = bind(config.clone()).unwrap();
        let client = bind(config).unwrap();
        let listener = server.listen(1).unwrap();
        let stream = client.connect(server.local_addr()).unwrap();
        let (accepted, _) = listener.accept().unwrap();
        (server, client, listener, stream, accepted)
    }

    /// Reads `total` bytes from `stream` on a thread of its own, which
    /// gives the stream back.
    fn drain_on_a_thread(
        mut stream: UdtStream,
        total: usize,
    ) -> std::thread::JoinHandle<UdtStream> {
        std::thread::spawn(move || {
            let mut buf = vec![0u8; 256 << 10];
            let mut got = 0;
            while got < total {
                got += stream.read(&mut buf).unwrap();
            }
            stream
        })
    }

    /// Waits (bounded) until the send thread has nothing of `conn` left.
    fn wait_idle(conn: &ConnShared) {
        let deadline = Instant::now() + Duration::from_secs(5);
        while Instant::now() < deadline {
            {
                let g = conn.inner.lock();
                if g.is_send_idle() {
                    return;
                }
            }
            std::thread::sleep(Duration::from_millis(1));
        }
        panic!("the connection never went idle");
    }

    #[test]
    fn a_call_that_would_block_still_reports_what_it_changed() {
        // The root cause of close() stalling until an unrelated protocol
        // timer: `blocking` settled only when `op` completed, so the
        // shutdown `close` had queued before waiting stayed unknown to the
        // send thread.
        let (_server, _client, _listener, mut stream, mut accepted) = pair();
        stream.write_all(b"x").unwrap();
        let mut byte = [0u8; 1];
        accepted.read_exact(&mut byte).unwrap();
        stream
            .wait_acknowledged(Some(Duration::from_secs(5)))
            .unwrap();
        let conn = stream.conn().clone();
        wait_idle(&conn);
        stream.set_nonblocking(true);
        let r = conn.blocking(
            WaitFor::State,
            |_| None,
            "closing",
            |g, now| {
                g.phase.connection()?.close(now);
                None::<io::Result<()>>
            },
        );
        assert_eq!(r.unwrap_err().kind(), io::ErrorKind::WouldBlock);
        {
            let g = conn.inner.lock();
            // Queued (the send thread was told) or already sent.
            assert!(g.send_key_is_current());
        }
        // And so the peer hears of it, long before its idle timeout.
        let mut rest = Vec::new();
        accepted.set_read_timeout(Some(Duration::from_secs(2)));
        assert_eq!(accepted.read_to_end(&mut rest).unwrap(), 0);
    }

    #[test]
    fn a_call_waiting_for_the_last_acknowledgement_is_not_woken_by_each_ack() {
        // 4 MiB at 100 Mbit/s: a third of a second of ACKs.
        let mut config = Config::default();
        config.max_bandwidth = Some(100_000_000 / 8);
        let (_server, _client, _listener, mut stream, accepted) = pair_with(config);
        let total = 4usize << 20;
        let reader = drain_on_a_thread(accepted, total);
        stream.write_all(&vec![7u8; total]).unwrap();
        let conn = stream.conn().clone();
        let acks_before = stream.stats().acks_received;
        // As `wait_acknowledged`, counting how often it is woken to look.
        let mut looks = 0;
        conn.blocking(
            WaitFor::State,
            |_| Some(Duration::from_secs(10)),
            "unacknowledged",
            |g, _now| {
                looks += 1;
                g.phase
                    .connection()?
                    .is_send_buffer_empty()
                    .then_some(Ok(()))
            },
        )
        .unwrap();
        let acks = stream.stats().acks_received - acks_before;
        // Each ACK that freed memory was a `Writable` event; none could help
        // this call but the one that emptied the buffer.
        assert!(acks >= 20, "only {acks} ACKs: the test shows nothing");
        assert!(looks <= 5, "woken {looks} times for {acks} ACKs");
        reader.join().unwrap();
    }

    /// The packets of one three-packet write, taken from the sender's core
    /// (so that they can be fed to the receiver's by hand).
    fn packets_of_a_write(stream: &UdtStream, fill: u8) -> Vec<Vec<u8>> {
        let payload = stream.conn().config.payload_size();
        let mut packets = Vec::new();
        let mut g = stream.conn().inner.lock();
        let mut now = g.clock(Instant::now());
        let c = g.phase.connection().unwrap();
        assert_eq!(c.write(&vec![fill; 3 * payload]).unwrap(), 3 * payload);
        // The pacer spaces them: step the clock until all three left.
        for _ in 0..1000 {
            if packets.len() == 3 {
                break;
            }
            let mut buf = Vec::new();
            match c.poll_transmit(now, &mut buf) {
                Some(t) if t.kind == udt_core::connection::TransmitKind::Data => {
                    buf.truncate(t.size);
                    packets.push(buf);
                }
                Some(_) => {}
                None => now += Duration::from_millis(1),
            }
        }
        assert_eq!(packets.len(), 3, "the write left as three packets");
        packets
    }

    /// Feeds `packets` to the receiving end with a reader waiting; each
    /// settle's `(notify, hold)`.
    fn wakes_of(
        conn: &ConnShared,
        from: std::net::SocketAddr,
        packets: &[Vec<u8>],
    ) -> Vec<(bool, bool)> {
        let mut g = conn.inner.lock();
        g.start_waiting(WaitFor::Read);
        let mut wakes = Vec::new();
        for p in packets {
            let now = g.clock(Instant::now());
            g.phase.connection().unwrap().handle_datagram(now, from, p);
            let wake = g.settle(&conn.notify);
            wakes.push((wake.notify, wake.hold));
        }
        g.done_waiting(WaitFor::Read);
        wakes
    }

    #[test]
    fn a_blocked_reader_is_woken_at_once_only_by_the_end_of_a_write() {
        let (_server, _client, _listener, stream, accepted) = pair();
        let payload = stream.conn().config.payload_size();
        let from = stream.local_addr();
        let conn = accepted.conn();
        // First and middle: the reader is owed a wake-up that may wait for
        // the end of the read pass; the last packet wakes it with the batch.
        let first = packets_of_a_write(&stream, 5);
        assert_eq!(
            wakes_of(conn, from, &first),
            [(true, true), (true, true), (true, false)]
        );
        let mut buf = vec![0u8; 3 * payload];
        let mut reader = &accepted;
        reader.read_exact(&mut buf).unwrap();
        assert!(buf.iter().all(|&b| b == 5));
        // A reader asking for two packets (as a plain `read` of that size
        // tells the connection while it waits) is due at the second.
        let second = packets_of_a_write(&stream, 6);
        conn.inner
            .lock()
            .phase
            .connection()
            .unwrap()
            .set_read_want(2 * payload);
        assert_eq!(
            wakes_of(conn, from, &second),
            [(true, true), (true, false), (true, false)]
        );
        reader.read_exact(&mut buf).unwrap();
        assert!(buf.iter().all(|&b| b == 6));
    }

    #[test]
    fn a_reader_held_for_the_rest_of_a_write_is_woken_when_the_read_round_ends() {
        // One 400 KB write at 8 Mbit/s arrives over ~0.4 s, far under a
        // quarter of the window: only the end of a read round can wake the
        // reader before the write's last packet does.
        let mut config = Config::default();
        config.max_bandwidth = Some(8_000_000 / 8);
        let (_server, _client, _listener, mut stream, mut accepted) = pair_with(config);
        let total = 400 << 10;
        let reader = std::thread::spawn(move || {
            let mut buf = vec![0u8; total];
            let first = accepted.read(&mut buf).unwrap();
            let mut got = first;
            while got < total {
                got += accepted.read(&mut buf[got..]).unwrap();
            }
            first
        });
        stream.write_all(&vec![3u8; total]).unwrap();
        let first = reader.join().unwrap();
        assert!(
            first < total / 2,
            "the first read waited for {first} of the write's {total} bytes"
        );
    }

    /// A flow of 8 Mbit/s (~690 packets a second) through a fixed
    /// 256-packet send buffer, so that each 10 ms ACK frees about seven
    /// packets, with 600 packets to write and a thread reading them: the
    /// endpoints and listener (kept alive), the writing stream, the
    /// reader, and the data.
    #[allow(clippy::type_complexity)]
    fn a_slow_flow_through_a_small_buffer() -> (
        (Endpoint, Endpoint, UdtListener),
        UdtStream,
        std::thread::JoinHandle<UdtStream>,
        Vec<u8>,
    ) {
        let mut config = Config::default();
        config.max_bandwidth = Some(8_000_000 / 8);
        config.send_buffer_packets = 256;
        config.memory_cap = 2 * 256 * u64::from(config.mss);
        let total = 600 * config.payload_size();
        let (server, client, listener, stream, accepted) = pair_with(config);
        let reader = drain_on_a_thread(accepted, total);
        ((server, client, listener), stream, reader, vec![9u8; total])
    }

    #[test]
    fn a_blocked_writer_is_not_woken_for_each_small_acknowledgement() {
        let (_ends, stream, reader, data) = a_slow_flow_through_a_small_buffer();
        let total = data.len();
        let conn = stream.conn().clone();
        let acks_before = stream.stats().acks_received;
        // As a blocking `write_all`, counting how often it is woken to try.
        let (mut written, mut looks) = (0, 0);
        conn.blocking(
            WaitFor::Write,
            |_| Some(Duration::from_secs(20)),
            "write",
            |g, _now| {
                looks += 1;
                let c = g.phase.connection()?;
                while written < total {
                    match c.write(&data[written..]) {
                        Ok(n) => written += n,
                        Err(udt_core::WriteError::WouldBlock) => return None,
                        Err(e) => return Some(Err(io::Error::other(e.to_string()))),
                    }
                }
                Some(Ok(()))
            },
        )
        .unwrap();
        let acks = stream.stats().acks_received - acks_before;
        // ~350 packets freed after the first fill: at 64 packets a
        // wake-up, six or so; one per ACK before.
        assert!(acks >= 30, "only {acks} ACKs: the test shows nothing");
        assert!(looks <= 12, "woken {looks} times for {acks} ACKs");
        reader.join().unwrap();
    }

    #[test]
    fn a_poller_is_not_told_writable_for_each_small_acknowledgement() {
        // As the blocked writer above, through a `Poller` and non-blocking
        // writes: each wait that reports writable is one pass of the writer.
        let (_ends, mut stream, reader, data) = a_slow_flow_through_a_small_buffer();
        let total = data.len();
        let acks_before = stream.stats().acks_received;
        stream.set_nonblocking(true);
        let poller = crate::Poller::new();
        poller
            .register(&stream, crate::Token(0), crate::Interest::WRITABLE)
            .unwrap();
        let (mut written, mut looks) = (0, 0);
        let mut events = Vec::new();
        while written < total {
            let n = poller
                .wait(&mut events, Some(Duration::from_secs(20)))
                .unwrap();
            assert_eq!(n, 1, "no room for 20 s");
            assert!(events[0].writable, "{:?}", events[0]);
            looks += 1;
            loop {
                match stream.write(&data[written..]) {
                    Ok(n) => written += n,
                    Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                    Err(e) => panic!("write: {e}"),
                }
                if written == total {
                    break;
                }
            }
        }
        let acks = stream.stats().acks_received - acks_before;
        // ~350 packets freed after the first fill: at 64 packets a report,
        // six or so; one per ACK when any free packet counted.
        assert!(acks >= 30, "only {acks} ACKs: the test shows nothing");
        assert!(
            looks <= 12,
            "reported writable {looks} times for {acks} ACKs"
        );
        reader.join().unwrap();
    }

    #[test]
    fn close_waits_until_the_send_thread_sent_the_shutdown() {
        let (_server, _client, _listener, stream, mut accepted) = pair();
        let conn = stream.conn().clone();
        let r = conn.blocking(
            WaitFor::State,
            |_| Some(Duration::from_secs(5)),
            "closing",
            |g, now| {
                g.phase.connection()?.close(now);
                close_result(g)
            },
        );
        r.unwrap();
        {
            let mut g = conn.inner.lock();
            let c = g.phase.connection_ref().unwrap();
            assert!(c.is_finished(), "returned with the shutdown still queued");
            assert!(!g.final_unsent);
            assert!(matches!(close_result(&g), Some(Ok(()))));
            // The shutdown taken into a batch not yet sent: not done.
            g.final_unsent = true;
            assert!(close_result(&g).is_none());
            g.final_unsent = false;
        }
        let mut rest = Vec::new();
        accepted.set_read_timeout(Some(Duration::from_secs(2)));
        assert_eq!(accepted.read_to_end(&mut rest).unwrap(), 0);
    }

    #[test]
    fn reschedules_are_coalesced_so_the_send_channel_stays_bounded() {
        // Before issue 10 every settle that moved the data deadline sent a
        // message: a flood of ACKs (or of application calls) while the send
        // thread was busy grew its channel without bound.
        let (_server, _client, _listener, stream, _accepted) = pair();
        let conn = stream.conn().clone();
        wait_idle(&conn);
        let mut first = None;
        let mut messages = 0;
        {
            let mut g = conn.inner.lock();
            for _ in 0..100 {
                g.invalidate_send_key();
                let wake = g.settle(&conn.notify);
                if wake.reschedule.is_some() {
                    messages += 1;
                    first.get_or_insert(wake);
                }
            }
            assert!(g.is_reschedule_queued());
        }
        assert_eq!(messages, 1, "one message per connection until it is read");
        conn.report(first.expect("one reschedule"));
        // The send thread reads the key and clears the flag (bounded wait).
        let deadline = Instant::now() + Duration::from_secs(5);
        loop {
            {
                let g = conn.inner.lock();
                if !g.is_reschedule_queued() {
                    assert!(g.send_key_is_current());
                    break;
                }
            }
            assert!(Instant::now() < deadline, "the send thread never read it");
            std::thread::sleep(Duration::from_millis(1));
        }
    }
}
