//! The data phase of a bench process's UDT streams on a few threads (one
//! per core at most), each with a [`Poller`].
//!
//! A test of a thousand connections with a thread per connection and side
//! spends its two cores switching between two thousand threads: each wakes
//! to copy a few kilobytes when its connection has room or data, and
//! clears a fresh stack and buffer of its own. A server holding many
//! connections drives them from one thread with a [`Poller`] instead, as
//! `benches/mux_sockets.rs` measures (about twice the aggregate of a thread
//! each), and so does the bench for a test of more than
//! [`MANY_CONNECTIONS`] connections: each connection's thread still opens it
//! and reads the report at the end, but hands the chunks in between to the
//! pump and sleeps until it is done. TCP connections keep their threads
//! (the mux's poller does not watch kernel sockets).
//!
//! A job sends chunks until its deadline and then the zero length, or
//! reads chunks until the zero length and not a byte further (the report
//! follows it on the same stream).

use std::collections::HashMap;
use std::io::{self, Read, Write};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{mpsc, Arc, OnceLock};
use std::thread;
use std::time::{Duration, Instant};

use udt_mux::{Interest, PollEvent, Poller, Token, UdtStream};

use super::protocol::{
    chunk_payload, stall_error, Stall, END_OF_CHUNKS, MANY_CONNECTIONS, MAX_CHUNK, READ_PIECE,
};

/// Whether a test of `parallel` connections uses the pump: only a test of
/// many ([`MANY_CONNECTIONS`]). Smaller ones keep a thread per connection,
/// which copies on every core: `-P 8` moved 12-13 Gbit/s through one pump
/// thread against 15.5 with eight writers (alternating runs on two cores),
/// while `-P 1024` gained 1.1-1.4x from the pump.
pub(super) fn for_test_of(parallel: u32) -> bool {
    parallel > MANY_CONNECTIONS
}

/// Longest the pump sleeps without an event before it asks every job
/// whether to stop (another stream failed, Ctrl-C).
const STOP_CHECK: Duration = Duration::from_millis(100);

/// Most bytes one job moves per event before the pump turns to the next
/// ready one: a connection that always has room must not starve the rest
/// (the poller is level-triggered, so it is reported again).
const TURN_BYTES: usize = 4 << 20;

/// What a job does with its stream.
enum Work {
    /// Writes `data` (one whole chunk, its length first) again and again
    /// until `deadline` passes at a chunk boundary, then the zero length.
    Send {
        data: &'static [u8],
        /// Bytes of the current chunk written.
        at: usize,
        deadline: Instant,
        /// Bytes of the zero length written, once the deadline passed.
        ending: Option<usize>,
    },
    /// Reads chunks until the zero length.
    Receive {
        /// The next chunk's length as far as it arrived.
        length: [u8; 4],
        length_got: usize,
        /// Bytes of the current chunk still to read.
        left: usize,
    },
}

/// One stream's data phase.
struct Job {
    stream: UdtStream,
    work: Work,
    /// Told the chunk bytes moved by each call (not the lengths).
    progress: Box<dyn FnMut(u64) + Send>,
    /// Asked between calls and while the stream waits; false stops the job
    /// with `Interrupted`.
    keep_going: Box<dyn Fn() -> bool + Send>,
    /// Ends the job once its peer moved nothing for the patience, as a
    /// thread's read or write timeout would.
    stall: Stall,
    done: mpsc::SyncSender<io::Result<()>>,
}

impl Job {
    /// Moves as much as the stream takes now, at most [`TURN_BYTES`];
    /// true when the data phase is over.
    fn step(&mut self, buf: &mut Vec<u8>) -> io::Result<bool> {
        let mut moved = 0;
        while moved < TURN_BYTES {
            if !(self.keep_going)() {
                return Err(io::ErrorKind::Interrupted.into());
            }
            let n = match &mut self.work {
                Work::Send {
                    data,
                    at,
                    deadline,
                    ending,
                } => {
                    if ending.is_none() && *at == 0 && Instant::now() >= *deadline {
                        *ending = Some(0);
                    }
                    if let Some(end) = ending {
                        let Some(n) = write_some(&self.stream, &END_OF_CHUNKS[*end..])? else {
                            return Ok(false);
                        };
                        *end += n;
                        if *end == END_OF_CHUNKS.len() {
                            return Ok(true);
                        }
                        continue;
                    }
                    let Some(n) = write_some(&self.stream, &data[*at..])? else {
                        return Ok(false);
                    };
                    let payload = chunk_payload(*at, n);
                    *at = (*at + n) % data.len();
                    (self.progress)(payload);
                    n
                }
                Work::Receive {
                    length,
                    length_got,
                    left,
                } => {
                    if *left == 0 {
                        let Some(n) = read_some(&self.stream, &mut length[*length_got..])? else {
                            return Ok(false);
                        };
                        *length_got += n;
                        if *length_got < length.len() {
                            continue;
                        }
                        *length_got = 0;
                        let len = u32::from_be_bytes(*length);
                        if len == 0 {
                            return Ok(true);
                        }
                        if len > MAX_CHUNK {
                            return Err(io::Error::new(
                                io::ErrorKind::InvalidData,
                                "bench chunk too large",
                            ));
                        }
                        *left = len as usize;
                        continue;
                    }
                    buf.clear();
                    let n = match self.stream.read_append(buf, (*left).min(READ_PIECE)) {
                        Ok(0) => return Err(ended_inside_a_chunk()),
                        Ok(n) => n,
                        Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Ok(false),
                        Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                        Err(e) => return Err(e),
                    };
                    *left -= n;
                    (self.progress)(n as u64);
                    n
                }
            };
            moved += n;
            self.stall.moved();
        }
        Ok(false)
    }

    /// Why a job that waits should end now: `Interrupted` when told to
    /// stop, `TimedOut` when its peer moved nothing for its patience (a
    /// sender's peer also moves its acknowledgements).
    fn overdue(&mut self) -> Option<io::Error> {
        if !(self.keep_going)() {
            return Some(io::ErrorKind::Interrupted.into());
        }
        // Free room: a cheap look (a thousand jobs are asked ten times a
        // second), and acknowledgements change it as they do the bytes
        // held.
        let buffer = match self.work {
            Work::Send { .. } => self.stream.send_buffer_free() as u64,
            Work::Receive { .. } => 0,
        };
        self.stall
            .stalled(buffer)
            .then(|| stall_error(self.stall.patience()))
    }
}

/// One non-blocking write: `None` when the stream has no room.
fn write_some(mut stream: &UdtStream, data: &[u8]) -> io::Result<Option<usize>> {
    loop {
        return match stream.write(data) {
            Ok(0) => Err(io::ErrorKind::WriteZero.into()),
            Ok(n) => Ok(Some(n)),
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => Ok(None),
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => Err(e),
        };
    }
}

/// One non-blocking read into `into`: `None` when nothing is there.
fn read_some(mut stream: &UdtStream, into: &mut [u8]) -> io::Result<Option<usize>> {
    loop {
        return match stream.read(into) {
            Ok(0) => Err(ended_inside_a_chunk()),
            Ok(n) => Ok(Some(n)),
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => Ok(None),
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => Err(e),
        };
    }
}

fn ended_inside_a_chunk() -> io::Error {
    io::Error::new(
        io::ErrorKind::UnexpectedEof,
        "the stream ended before its zero length",
    )
}

/// A job's progress report, stop check and patience.
type JobCalls = (
    Box<dyn FnMut(u64) + Send>,
    Box<dyn Fn() -> bool + Send>,
    Duration,
);

/// The pump: a thread per core at most (a lane), each with its own
/// `Poller`, that take the jobs in turn. One thread would copy every byte
/// of the test: on a machine with many cores, `-P 8` wrote from eight
/// threads before. A lane's thread starts with its first job and runs for
/// the life of the process (a server) or of the test (a client's `Pump` is
/// dropped with it).
pub(super) struct Pump {
    lanes: Vec<OnceLock<Running>>,
    next_lane: AtomicUsize,
}

impl Default for Pump {
    fn default() -> Pump {
        let cores = thread::available_parallelism().map_or(1, |n| n.get());
        Pump {
            lanes: (0..cores.clamp(1, MAX_LANES))
                .map(|_| OnceLock::new())
                .collect(),
            next_lane: AtomicUsize::new(0),
        }
    }
}

/// Most pump threads, whatever the core count.
const MAX_LANES: usize = 16;

struct Running {
    poller: Arc<Poller>,
    jobs: mpsc::Sender<(usize, Job)>,
    next_token: AtomicUsize,
}

impl Pump {
    /// Sends `data` (a whole chunk, length first) on `stream` until
    /// `deadline`, then the zero length; blocks until done, or until the
    /// peer took nothing (no byte written, none acknowledged) for
    /// `patience`.
    ///
    /// # Errors
    /// The stream's write errors; `TimedOut` after `patience` without
    /// progress; `Interrupted` when `keep_going` said stop.
    pub(super) fn send(
        &self,
        stream: &UdtStream,
        data: &'static [u8],
        deadline: Instant,
        patience: Duration,
        progress: impl FnMut(u64) + Send + 'static,
        keep_going: impl Fn() -> bool + Send + 'static,
    ) -> io::Result<()> {
        let work = Work::Send {
            data,
            at: 0,
            deadline,
            ending: None,
        };
        let job = (Box::new(progress) as _, Box::new(keep_going) as _, patience);
        self.run(stream, work, job)
    }

    /// Reads chunks from `stream` until the zero length (and nothing after
    /// it), telling `progress` the chunk bytes as they arrive; blocks until
    /// done, or once nothing arrived for `patience`.
    ///
    /// # Errors
    /// The stream's read errors, `UnexpectedEof` before the zero length,
    /// `InvalidData` for a chunk over the largest, `TimedOut` after
    /// `patience` without a byte, `Interrupted` when `keep_going` said
    /// stop.
    pub(super) fn receive(
        &self,
        stream: &UdtStream,
        patience: Duration,
        progress: impl FnMut(u64) + Send + 'static,
        keep_going: impl Fn() -> bool + Send + 'static,
    ) -> io::Result<()> {
        let work = Work::Receive {
            length: [0; 4],
            length_got: 0,
            left: 0,
        };
        let job = (Box::new(progress) as _, Box::new(keep_going) as _, patience);
        self.run(stream, work, job)
    }

    fn run(&self, stream: &UdtStream, work: Work, calls: JobCalls) -> io::Result<()> {
        let (progress, keep_going, patience) = calls;
        let lane = self.next_lane.fetch_add(1, Ordering::Relaxed) % self.lanes.len();
        let Some(lane) = self.lanes.get(lane) else {
            return Err(pump_gone());
        };
        let running = match lane.get() {
            Some(r) => r,
            None => {
                let started = Running::start()?;
                lane.get_or_init(|| started)
            }
        };
        let interest = match work {
            Work::Send { .. } => Interest::WRITABLE,
            Work::Receive { .. } => Interest::READABLE,
        };
        let (done, finished) = mpsc::sync_channel(1);
        let job = Job {
            stream: stream.try_clone()?,
            work,
            progress,
            keep_going,
            stall: Stall::new(patience),
            done,
        };
        let token = running.next_token.fetch_add(1, Ordering::Relaxed);
        // Watched before the pump has the job: an event it cannot match
        // yet is reported again (level-triggered) once the job is there.
        running.poller.register(stream, Token(token), interest)?;
        job.stream.set_nonblocking(true);
        if running.jobs.send((token, job)).is_err() {
            let _ = running.poller.deregister(Token(token));
            stream.set_nonblocking(false);
            return Err(pump_gone());
        }
        finished.recv().map_err(|_| pump_gone())?
    }
}

fn pump_gone() -> io::Error {
    io::Error::other("the bench's I/O thread stopped")
}

impl Running {
    fn start() -> io::Result<Running> {
        let poller = Arc::new(Poller::new());
        let (tx, rx) = mpsc::channel();
        let theirs = poller.clone();
        thread::Builder::new()
            .name("bench-pump".into())
            .spawn(move || pump(&theirs, &rx))?;
        Ok(Running {
            poller,
            jobs: tx,
            next_token: AtomicUsize::new(0),
        })
    }
}

/// The pump's thread: moves every job's data as its stream allows, until
/// the last sender of jobs is gone and no job is left.
fn pump(poller: &Poller, incoming: &mpsc::Receiver<(usize, Job)>) {
    let mut jobs: HashMap<usize, Job> = HashMap::new();
    let mut events: Vec<PollEvent> = Vec::new();
    let mut buf = Vec::with_capacity(READ_PIECE);
    let mut last_check = Instant::now();
    loop {
        let mut open = true;
        loop {
            match incoming.try_recv() {
                Ok((token, job)) => {
                    jobs.insert(token, job);
                }
                Err(mpsc::TryRecvError::Empty) => break,
                Err(mpsc::TryRecvError::Disconnected) => {
                    open = false;
                    break;
                }
            }
        }
        if !open && jobs.is_empty() {
            return;
        }
        if poller.wait(&mut events, Some(STOP_CHECK)).is_err() {
            events.clear();
        }
        for ev in &events {
            let token = ev.token.0;
            let Some(job) = jobs.get_mut(&token) else {
                continue;
            };
            // A hang-up or error shows in the next call's result.
            let outcome = job.step(&mut buf);
            if !matches!(outcome, Ok(false)) {
                finish(poller, &mut jobs, token, outcome.map(|_| ()));
            }
        }
        if last_check.elapsed() >= STOP_CHECK {
            last_check = Instant::now();
            let stopped: Vec<(usize, io::Error)> = jobs
                .iter_mut()
                .filter_map(|(t, j)| j.overdue().map(|why| (*t, why)))
                .collect();
            for (token, why) in stopped {
                finish(poller, &mut jobs, token, Err(why));
            }
        }
    }
}

/// Ends the job of `token`: the stream blocks again and goes back to its
/// thread with the outcome.
fn finish(poller: &Poller, jobs: &mut HashMap<usize, Job>, token: usize, outcome: io::Result<()>) {
    let _ = poller.deregister(Token(token));
    if let Some(job) = jobs.remove(&token) {
        job.stream.set_nonblocking(false);
        // The pump's handles (the stream's, any in the job's calls) go
        // before the thread resumes and closes the connection.
        let done = job.done.clone();
        drop(job);
        let _ = done.send(outcome);
    }
}

#[cfg(test)]
mod tests {
    use std::io::{Read, Write};
    use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
    use std::sync::Arc;
    use std::thread;
    use std::time::{Duration, Instant};

    use udt_mux::{Endpoint, UdtStream};

    use super::Pump;
    use crate::cmd::bench::protocol::{chunk, read_chunks, END_OF_CHUNKS};
    use crate::net::Conn;

    /// A connected pair of UDT streams on loopback (the endpoints must
    /// outlive them).
    fn pair() -> (Endpoint, Endpoint, UdtStream, UdtStream) {
        let server = Endpoint::bind("127.0.0.1:0").unwrap();
        let listener = server.listen(4).unwrap();
        let client = Endpoint::bind("127.0.0.1:0").unwrap();
        let ours = client.connect(server.local_addr()).unwrap();
        let (theirs, _) = listener.accept().unwrap();
        (server, client, ours, theirs)
    }

    fn leak(data: Vec<u8>) -> &'static [u8] {
        Box::leak(data.into_boxed_slice())
    }

    #[test]
    fn a_receive_job_stops_at_the_zero_length_and_leaves_what_follows() {
        let (_a, _b, reader, mut writer) = pair();
        let piece = chunk(100_000);
        let sender = thread::spawn(move || {
            for _ in 0..5 {
                writer.write_all(&piece).unwrap();
            }
            writer.write_all(&END_OF_CHUNKS).unwrap();
            writer.write_all(b"the report").unwrap();
            writer
        });
        let total = Arc::new(AtomicU64::new(0));
        let counted = total.clone();
        let pump = Pump::default();
        pump.receive(
            &reader,
            Duration::from_secs(30),
            move |n| {
                counted.fetch_add(n, Ordering::Relaxed);
            },
            || true,
        )
        .unwrap();
        assert_eq!(total.load(Ordering::Relaxed), 500_000);
        // Blocking again, and the bytes after the zero length still there.
        let mut rest = [0u8; 10];
        (&reader).read_exact(&mut rest).unwrap();
        assert_eq!(&rest, b"the report");
        drop(sender.join().unwrap());
    }

    #[test]
    fn a_send_job_writes_whole_chunks_until_its_deadline_then_the_zero_length() {
        let (_a, _b, writer, reader) = pair();
        let data = leak(chunk(64 * 1024));
        let counter = thread::spawn(move || {
            let mut conn = Conn::udt(reader);
            let mut got = 0;
            read_chunks(&mut conn, |n| got += n, || true).unwrap();
            let mut tail = [0u8; 4];
            conn.read_exact(&mut tail).unwrap();
            (got, tail)
        });
        let sent = Arc::new(AtomicU64::new(0));
        let counted = sent.clone();
        let started = Instant::now();
        Pump::default()
            .send(
                &writer,
                data,
                started + Duration::from_millis(300),
                Duration::from_secs(30),
                move |n| {
                    counted.fetch_add(n, Ordering::Relaxed);
                },
                || true,
            )
            .unwrap();
        assert!(started.elapsed() >= Duration::from_millis(300));
        (&writer).write_all(b"tail").unwrap();
        let (got, tail) = counter.join().unwrap();
        let sent = sent.load(Ordering::Relaxed);
        assert!(sent > 0);
        assert_eq!(sent % (64 * 1024), 0, "whole chunks only: {sent}");
        assert_eq!(got, sent);
        assert_eq!(&tail, b"tail");
    }

    #[test]
    fn a_send_job_ends_when_its_peer_takes_nothing_for_its_patience() {
        let (_a, _b, writer, _never_reads) = pair();
        writer.set_send_buffer(64).unwrap();
        let data = leak(chunk(64 * 1024));
        let started = Instant::now();
        let err = Pump::default()
            .send(
                &writer,
                data,
                started + Duration::from_secs(60),
                Duration::from_millis(300),
                |_| {},
                || true,
            )
            .unwrap_err();
        assert_eq!(err.kind(), std::io::ErrorKind::TimedOut);
        assert!(started.elapsed() < Duration::from_secs(30), "{err}");
    }

    #[test]
    fn a_send_job_waits_on_a_peer_that_reads_slowly() {
        // Room worth a write (64 packets) comes back only every two
        // seconds or so, but reads are acknowledged every few dozen
        // milliseconds (a few hundred at worst, when the sender learns
        // late that the window opened): that is progress, and the job
        // must not take the peer for stalled.
        let (_a, _b, writer, reader) = pair();
        let data = leak(chunk(64 * 1024));
        let stop = Arc::new(AtomicBool::new(false));
        let (flag, check) = (stop.clone(), stop.clone());
        let slow = thread::spawn(move || {
            let mut piece = [0u8; 500];
            let started = Instant::now();
            while started.elapsed() < Duration::from_secs(3) {
                (&reader).read_exact(&mut piece).unwrap();
                thread::sleep(Duration::from_millis(10));
            }
            flag.store(true, Ordering::Relaxed);
            reader
        });
        let err = Pump::default()
            .send(
                &writer,
                data,
                Instant::now() + Duration::from_secs(60),
                Duration::from_millis(1000),
                |_| {},
                move || !check.load(Ordering::Relaxed),
            )
            .unwrap_err();
        assert_eq!(err.kind(), std::io::ErrorKind::Interrupted, "{err}");
        drop(slow.join().unwrap());
    }

    #[test]
    fn a_job_ends_when_told_to_stop_or_when_nothing_arrives_for_its_patience() {
        let (_a, _b, reader, _quiet) = pair();
        let pump = Pump::default();
        let started = Instant::now();
        let err = pump
            .receive(&reader, Duration::from_millis(200), |_| {}, || true)
            .unwrap_err();
        assert_eq!(err.kind(), std::io::ErrorKind::TimedOut);
        assert!(started.elapsed() >= Duration::from_millis(200));
        let stop = Arc::new(AtomicBool::new(false));
        let flag = stop.clone();
        let stopper = thread::spawn(move || {
            thread::sleep(Duration::from_millis(50));
            flag.store(true, Ordering::Relaxed);
        });
        let err = pump
            .receive(
                &reader,
                Duration::from_secs(30),
                |_| {},
                move || !stop.load(Ordering::Relaxed),
            )
            .unwrap_err();
        assert_eq!(err.kind(), std::io::ErrorKind::Interrupted);
        stopper.join().unwrap();
        // The stream blocks again after the pump let it go.
        reader.set_read_timeout(Some(Duration::from_millis(50)));
        let mut byte = [0u8; 1];
        let err = (&reader).read(&mut byte).unwrap_err();
        assert_eq!(err.kind(), std::io::ErrorKind::TimedOut);
    }
}
