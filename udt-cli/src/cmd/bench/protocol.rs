//! The bench wire protocol, shared by the client and the server: the
//! header that opens every bench connection, the framing of stream mode,
//! the layout of a bench message, and the server's JSON report line.

use std::io::{self, BufRead, BufReader, Read, Write};
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};

use crate::net::Conn;
use crate::proto::exit;
use crate::proto::ReadAppend;
use crate::ui::CliError;

const MAGIC: [u8; 8] = *b"UDTBENCH";
/// Version 2: the server answers the header at once with an [`Ack`] line.
/// Version 3: the mode byte is a set of flags, with reverse mode (`-R`).
const VERSION: u8 = 3;
/// Mode flag: message mode.
const FLAG_MSG: u8 = 1;
/// Mode flag: reverse, the server sends (stream mode only).
const FLAG_REVERSE: u8 = 2;
/// Longest acknowledgement line accepted.
const MAX_ACK: usize = 4096;

/// Most connections one test may use (`udt bench -P`): a thousand
/// connections on one port, and then some. The server admits
/// twice as many at once, so a whole test of this size fits beside the
/// leftovers of one that just ended.
pub const MAX_PARALLEL: u32 = 1024;

/// Packets of buffer all of a test's connections may hold together on the
/// sending side when its `--buffer` is not given: a writer keeps its send
/// buffer full, and a thousand default buffers (8 192 packets, 12 MB each)
/// would take 12 GB.
const BUFFER_BUDGET_PACKETS: u32 = 1 << 19;

/// The buffer, in packets, of each of a test's `parallel` connections on
/// the side that sends (the client, or the server with `-R`) when none was
/// given: an equal share of [`BUFFER_BUDGET_PACKETS`], at least 256 (ample
/// on a path whose round trip is short enough for that many connections to
/// matter); `None` (the default 8 192) up to 64 connections.
pub(super) fn buffer_share(parallel: u32) -> Option<u32> {
    (parallel > MANY_CONNECTIONS).then(|| (BUFFER_BUDGET_PACKETS / parallel).max(256))
}

/// Tests of more connections than this are "many": the sending side
/// shares [`BUFFER_BUDGET_PACKETS`] among them (at 64 each share would be
/// the default 8 192), and both sides move their UDT chunks through the
/// pump instead of a thread each (`pump::for_test_of`).
pub(super) const MANY_CONNECTIONS: u32 = 64;

/// How long a stream in its data phase may go without its peer moving a
/// byte: sending nothing to a receiver, or, to a sender, taking nothing
/// (no byte written and none acknowledged). A peer that stays connected
/// but stops reading must not hold a connection and its buffers forever.
pub(super) const STALL_PATIENCE: Duration = Duration::from_secs(30);

/// Tells a stalled peer from a slow one: progress is a byte moved, or, for
/// a sender, a change in its send buffer (bytes unacknowledged, or free,
/// which acknowledgements change). A blocked writer waits for room worth a
/// write (64 packets), which a peer reading slowly frees only over
/// seconds, while its acknowledgements go on.
pub(super) struct Stall {
    patience: Duration,
    last_progress: Instant,
    buffer: u64,
}

impl Stall {
    /// A stall of `patience`, timed from now.
    pub(super) fn new(patience: Duration) -> Stall {
        Stall {
            patience,
            last_progress: Instant::now(),
            buffer: 0,
        }
    }

    /// How long it waits.
    pub(super) fn patience(&self) -> Duration {
        self.patience
    }

    /// Bytes moved just now.
    pub(super) fn moved(&mut self) {
        self.last_progress = Instant::now();
    }

    /// True once nothing moved for the patience, given the send buffer's
    /// bytes unacknowledged (or free) now; 0 for a receiver.
    pub(super) fn stalled(&mut self, buffer: u64) -> bool {
        if buffer != self.buffer {
            self.buffer = buffer;
            self.moved();
        }
        self.last_progress.elapsed() > self.patience
    }
}

/// The error of a stream whose peer moved nothing for `patience`.
pub(super) fn stall_error(patience: Duration) -> io::Error {
    let secs = patience.as_secs_f64();
    io::Error::new(
        io::ErrorKind::TimedOut,
        format!("the peer moved nothing for {secs} s"),
    )
}

/// How often a patient writer looks at its peer's acknowledgements.
const STALL_CHECK: Duration = Duration::from_secs(1);

/// Writes all of `data` to `conn` (blocking), telling `wrote` each
/// write's offset and length, and giving up only once the peer took
/// nothing for `patience` ([`Stall`]). Leaves `conn`'s write timeout at
/// the check interval.
///
/// # Errors
/// `TimedOut` for a stalled peer, and the connection's write errors.
pub(super) fn write_patiently(
    conn: &mut Conn,
    data: &[u8],
    patience: Duration,
    mut wrote: impl FnMut(usize, usize),
) -> io::Result<()> {
    conn.set_write_timeout(Some(STALL_CHECK.min(patience)));
    let mut stall = Stall::new(patience);
    let mut at = 0;
    while at < data.len() {
        match conn.write(&data[at..]) {
            Ok(0) => return Err(io::ErrorKind::WriteZero.into()),
            Ok(n) => {
                wrote(at, n);
                at += n;
                stall.moved();
            }
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) if is_timeout(&e) => {
                if stall.stalled(conn.unacknowledged_bytes()) {
                    return Err(stall_error(patience));
                }
            }
            Err(e) => return Err(e),
        }
    }
    Ok(())
}

/// A blocking call's timeout: `TimedOut`, or `WouldBlock` where the
/// platform reports a socket timeout so (TCP on Unix).
fn is_timeout(e: &io::Error) -> bool {
    matches!(
        e.kind(),
        io::ErrorKind::TimedOut | io::ErrorKind::WouldBlock
    )
}

/// Most bytes one read of chunk data asks for.
pub(super) const READ_PIECE: usize = 256 * 1024;

/// The chunk payload among bytes `[at, at + n)` of a chunk on the wire
/// (its 4-byte length is not counted, as the server counts).
pub(super) fn chunk_payload(at: usize, n: usize) -> u64 {
    ((at + n).saturating_sub(4) - at.saturating_sub(4)) as u64
}

/// Bytes of an encoded [`Header`].
pub(super) const HEADER_LEN: usize = 8 + 1 + 1 + 4 + 4 + 4 + 4 + 8;
/// Largest stream-mode chunk the server accepts.
pub(super) const MAX_CHUNK: u32 = 16 << 20;
/// Longest report line accepted.
const MAX_REPORT: u64 = 64 * 1024;
/// Bytes of a message header (sequence number, send time); the server
/// echoes exactly these.
pub(super) const MSG_HEADER: usize = 16;
/// Largest message size a header may ask for.
pub(super) const MAX_MSG: u32 = 1 << 20;
/// The chunk length that ends a stream-mode test.
pub(super) const END_OF_CHUNKS: [u8; 4] = 0u32.to_be_bytes();

/// The first bytes of every bench connection.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) struct Header {
    /// Message mode (a control stream) rather than stream mode.
    pub(super) msg: bool,
    /// Reverse stream mode: the server sends, the client receives.
    pub(super) reverse: bool,
    /// Which of the `parallel` connections this is.
    pub(super) index: u32,
    /// Connections in the test.
    pub(super) parallel: u32,
    /// How long the client sends.
    pub(super) duration_ms: u32,
    /// Message size (message mode).
    pub(super) msg_size: u32,
    /// Identifies the test the connection belongs to.
    pub(super) test_id: u64,
}

impl Header {
    /// The header on the wire.
    pub(super) fn encode(&self) -> [u8; HEADER_LEN] {
        let mut b = [0u8; HEADER_LEN];
        b[..8].copy_from_slice(&MAGIC);
        b[8] = VERSION;
        b[9] = if self.msg { FLAG_MSG } else { 0 } | if self.reverse { FLAG_REVERSE } else { 0 };
        b[10..14].copy_from_slice(&self.index.to_be_bytes());
        b[14..18].copy_from_slice(&self.parallel.to_be_bytes());
        b[18..22].copy_from_slice(&self.duration_ms.to_be_bytes());
        b[22..26].copy_from_slice(&self.msg_size.to_be_bytes());
        b[26..34].copy_from_slice(&self.test_id.to_be_bytes());
        b
    }

    /// Parses and checks a header.
    ///
    /// # Errors
    /// Not a bench client, another protocol version, or values out of
    /// range (a text for the user).
    pub(super) fn decode(b: &[u8; HEADER_LEN]) -> Result<Header, String> {
        if is_file_hello(b) {
            return Err("the peer is `udt send`, not a bench client".into());
        }
        if b[..8] != MAGIC {
            return Err("not a udt bench client".into());
        }
        if b[8] != VERSION {
            return Err(format!(
                "bench protocol version {} (we speak {VERSION})",
                b[8]
            ));
        }
        let u32_at = |i: usize| u32::from_be_bytes([b[i], b[i + 1], b[i + 2], b[i + 3]]);
        let mut id = [0u8; 8];
        id.copy_from_slice(&b[26..34]);
        if b[9] & !(FLAG_MSG | FLAG_REVERSE) != 0 {
            return Err(format!("unknown bench mode flags {:#x}", b[9]));
        }
        let h = Header {
            msg: b[9] & FLAG_MSG != 0,
            reverse: b[9] & FLAG_REVERSE != 0,
            index: u32_at(10),
            parallel: u32_at(14),
            duration_ms: u32_at(18),
            msg_size: u32_at(22),
            test_id: u64::from_be_bytes(id),
        };
        if h.parallel == 0 || h.parallel > MAX_PARALLEL || h.index >= h.parallel {
            return Err("bad parallel count".into());
        }
        if h.msg && h.reverse {
            return Err("reverse mode (-R) is for stream mode only".into());
        }
        if h.msg && !(MSG_HEADER as u32..=MAX_MSG).contains(&h.msg_size) {
            return Err("message size out of range".into());
        }
        Ok(h)
    }
}

/// True when `b` starts like the greeting of `udt send` (a `Hello` frame
/// of the file-transfer protocol).
pub(super) fn is_file_hello(b: &[u8]) -> bool {
    let hello = crate::proto::wire::HEADER_LEN;
    b.len() >= hello + 8 && b[0] == 0x01 && b[hello..hello + 8] == crate::proto::wire::MAGIC
}

/// The server's answer to a header: one JSON line, sent at once so a
/// client learns before sending anything whether it reached a bench server
/// that accepts the test.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub(super) struct Ack {
    /// Why the test is refused (busy, bad header); `None`: accepted.
    #[serde(default)]
    pub(super) error: Option<String>,
}

impl Ack {
    /// The line on the wire.
    pub(super) fn to_line(&self) -> Vec<u8> {
        let mut line = serde_json::to_vec(self).unwrap_or_else(|_| b"{}".to_vec());
        line.push(b'\n');
        line
    }

    /// Reads the server's answer (within the read timeout already set).
    ///
    /// # Errors
    /// The server's refusal (exit 5 for another kind of server, 3 for a
    /// busy one), or a broken connection.
    pub(super) fn read_from(conn: &mut Conn) -> Result<(), CliError> {
        let mut first = [0u8; 1];
        conn.read_exact(&mut first)
            .map_err(|e| CliError::io("the server did not answer the bench header", e))?;
        if first[0] != b'{' {
            // Not JSON: a `udt listen`, or anything else that speaks UDT.
            return Err(CliError::new(
                exit::PROTOCOL,
                "the server does not speak the udt bench protocol (is it `udt bench --server`?)",
            ));
        }
        // Byte by byte: what follows the line (a port number in message
        // mode) must stay in the stream.
        let mut line = vec![b'{'];
        let mut byte = [0u8; 1];
        while line.len() < MAX_ACK && byte[0] != b'\n' {
            conn.read_exact(&mut byte)
                .map_err(|e| CliError::io("reading the server's answer", e))?;
            line.push(byte[0]);
        }
        let ack: Ack = serde_json::from_slice(&line).map_err(|_| {
            CliError::new(
                exit::PROTOCOL,
                "the server does not speak the udt bench protocol (is it `udt bench --server`?)",
            )
        })?;
        match ack.error {
            None => Ok(()),
            Some(e) => {
                let shown = crate::proto::names::printable(e.as_bytes());
                let code = if e.contains("busy") {
                    exit::NETWORK
                } else {
                    exit::PROTOCOL
                };
                Err(CliError::new(
                    code,
                    format!("the server refused the test: {shown}"),
                ))
            }
        }
    }
}

/// One stream-mode chunk on the wire: its length (`len`, at most
/// [`MAX_CHUNK`]) and `len` bytes of a fixed pattern.
pub(super) fn chunk(len: u32) -> Vec<u8> {
    let mut chunk = vec![0u8; 4 + len as usize];
    chunk[..4].copy_from_slice(&len.to_be_bytes());
    for (i, b) in chunk[4..].iter_mut().enumerate() {
        *b = (i * 7) as u8;
    }
    chunk
}

/// Reads stream-mode chunks until the zero length, calling `counted` with
/// the bytes of each piece as it arrives and `keep_going` between pieces
/// (false stops with an `Interrupted` error).
///
/// # Errors
/// A broken connection (exit 3), a chunk over [`MAX_CHUNK`] (exit 5), or
/// the stop.
pub(super) fn read_chunks(
    conn: &mut Conn,
    mut counted: impl FnMut(u64),
    mut keep_going: impl FnMut() -> bool,
) -> Result<(), CliError> {
    // Appended to, never zeroed: over UDT the bytes are copied once on
    // their way in (`ReadAppend`), as `udt recv` reads them.
    let mut buf = Vec::with_capacity(READ_PIECE);
    loop {
        let mut lb = [0u8; 4];
        conn.read_exact(&mut lb).map_err(broke)?;
        let len = u32::from_be_bytes(lb);
        if len == 0 {
            return Ok(());
        }
        if len > MAX_CHUNK {
            return Err(chunk_too_large());
        }
        let mut left = len as usize;
        while left > 0 {
            if !keep_going() {
                return Err(chunks_stopped());
            }
            buf.clear();
            let n = conn
                .read_append(&mut buf, left.min(READ_PIECE))
                .map_err(broke)?;
            if n == 0 {
                return Err(broke(io::Error::new(
                    io::ErrorKind::UnexpectedEof,
                    "the stream ended inside a chunk",
                )));
            }
            left -= n;
            counted(n as u64);
        }
    }
}

/// A stream's I/O failure while it moves chunks.
pub(super) fn broke(e: io::Error) -> CliError {
    CliError::io("the bench connection broke", e)
}

/// A chunk length over [`MAX_CHUNK`].
fn chunk_too_large() -> CliError {
    CliError::new(exit::PROTOCOL, "bench chunk too large")
}

/// The test stopped while chunks moved.
fn chunks_stopped() -> CliError {
    CliError::interrupted("interrupted")
}

/// The error [`read_chunks`] gives for what its I/O failed with, for
/// chunks moved another way (the bench's pump, which reports a chunk too
/// large as `InvalidData` and a stop as `Interrupted`), either way.
pub(super) fn chunk_error(e: io::Error) -> CliError {
    match e.kind() {
        io::ErrorKind::InvalidData => chunk_too_large(),
        io::ErrorKind::Interrupted => chunks_stopped(),
        _ => broke(e),
    }
}

/// A duration as the header's millisecond field (saturating).
pub(super) fn duration_ms(d: Duration) -> u32 {
    d.as_millis().min(u128::from(u32::MAX)) as u32
}

/// Writes the header of a bench message: `[seq u64][send time ns u64]`,
/// big-endian. `msg` is at least [`MSG_HEADER`] bytes long.
pub(super) fn put_msg_header(msg: &mut [u8], seq: u64, sent_ns: u64) {
    msg[..8].copy_from_slice(&seq.to_be_bytes());
    msg[8..16].copy_from_slice(&sent_ns.to_be_bytes());
}

/// The send time of an echoed bench message, if it is long enough.
pub(super) fn msg_sent_ns(echo: &[u8]) -> Option<u64> {
    let t: [u8; 8] = echo.get(8..MSG_HEADER)?.try_into().ok()?;
    Some(u64::from_be_bytes(t))
}

/// What the server measured, sent back as one JSON line.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub struct ServerReport {
    /// Payload bytes received (sent, in reverse mode).
    pub bytes: u64,
    /// Messages received (message mode).
    pub messages: u64,
    /// Seconds from the first byte to the end.
    pub seconds: f64,
    /// Server process CPU over that time, percent of one core.
    pub cpu_percent: f64,
    /// Data packets the server found missing.
    pub packets_lost: Option<u64>,
    /// Data packets the server received.
    pub packets_received: Option<u64>,
    /// Reverse mode: the server's smoothed RTT at the end, ms.
    #[serde(default)]
    pub rtt_ms: Option<f64>,
    /// Reverse mode: data packets the server retransmitted.
    #[serde(default)]
    pub packets_retransmitted: Option<u64>,
    /// Reverse mode: the server's retransmission timeouts.
    #[serde(default)]
    pub timeouts: Option<u64>,
}

impl ServerReport {
    /// The report as the line the server sends.
    ///
    /// # Errors
    /// Serialisation failures (exit code FAILURE).
    pub(super) fn to_line(&self) -> Result<Vec<u8>, CliError> {
        let mut line =
            serde_json::to_vec(self).map_err(|e| CliError::new(exit::FAILURE, e.to_string()))?;
        line.push(b'\n');
        Ok(line)
    }

    /// Reads the server's JSON line (at most 64 KiB, within 60 s).
    ///
    /// # Errors
    /// A broken connection, or a line that is not a report (PROTOCOL).
    pub(super) fn read_from(conn: &mut Conn) -> Result<ServerReport, CliError> {
        conn.set_read_timeout(Some(Duration::from_secs(60)));
        let mut line = String::new();
        BufReader::new(conn.take(MAX_REPORT))
            .read_line(&mut line)
            .map_err(|e| CliError::io("reading the server's report", e))?;
        serde_json::from_str(line.trim())
            .map_err(|e| CliError::new(exit::PROTOCOL, format!("bad report from the server: {e}")))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Writes to `conn` until [`write_patiently`] gives up on a peer that
    /// never reads: with `TimedOut`, and only after its patience without
    /// a byte taken.
    fn gives_up_on_a_peer_that_never_reads(mut conn: Conn) {
        let data = vec![7u8; 1 << 20];
        let mut last_write = Instant::now();
        let err = loop {
            if let Err(e) = write_patiently(&mut conn, &data, Duration::from_millis(500), |_, _| {
                last_write = Instant::now();
            }) {
                break e;
            }
        };
        let stalled_for = last_write.elapsed();
        assert_eq!(err.kind(), io::ErrorKind::TimedOut, "{err}");
        assert!(stalled_for >= Duration::from_millis(500), "{stalled_for:?}");
    }

    #[test]
    fn a_patient_write_gives_up_on_a_udt_peer_that_takes_nothing() {
        let server = udt_mux::Endpoint::bind("127.0.0.1:0").unwrap();
        let listener = server.listen(1).unwrap();
        let client = udt_mux::Endpoint::bind("127.0.0.1:0").unwrap();
        let ours = client.connect(server.local_addr()).unwrap();
        let (_never_reads, _) = listener.accept().unwrap();
        gives_up_on_a_peer_that_never_reads(Conn::udt(ours));
    }

    #[test]
    fn a_patient_write_gives_up_on_a_tcp_peer_that_takes_nothing() {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let ours = std::net::TcpStream::connect(listener.local_addr().unwrap()).unwrap();
        let (_never_reads, _) = listener.accept().unwrap();
        gives_up_on_a_peer_that_never_reads(Conn::Tcp(ours));
    }

    #[test]
    fn header_roundtrips_and_rejects_garbage() {
        let h = Header {
            msg: true,
            reverse: false,
            index: 2,
            parallel: 4,
            duration_ms: 1000,
            msg_size: 1024,
            test_id: 0xdead_beef,
        };
        assert_eq!(Header::decode(&h.encode()), Ok(h));
        let mut bad = h.encode();
        bad[0] = b'X';
        assert!(Header::decode(&bad).is_err());
        let mut bad = h;
        bad.index = 4;
        assert!(Header::decode(&bad.encode()).is_err());
        let mut bad = h;
        bad.msg_size = 1 << 30;
        assert!(Header::decode(&bad.encode()).is_err());
        // Reverse mode round-trips in stream mode, is refused with messages.
        let rev = Header {
            msg: false,
            reverse: true,
            ..h
        };
        assert_eq!(Header::decode(&rev.encode()), Ok(rev));
        let mut bad = rev;
        bad.msg = true;
        assert!(Header::decode(&bad.encode()).is_err());
        let mut unknown = rev.encode();
        unknown[9] |= 0x80;
        assert!(Header::decode(&unknown).is_err());
        // The most connections, in either direction.
        let most = Header {
            parallel: MAX_PARALLEL,
            index: MAX_PARALLEL - 1,
            ..h
        };
        assert_eq!(Header::decode(&most.encode()), Ok(most));
        let too_many = Header {
            parallel: MAX_PARALLEL + 1,
            ..most
        };
        assert!(Header::decode(&too_many.encode()).is_err());
        let rev_most = Header {
            parallel: MAX_PARALLEL,
            index: 0,
            ..rev
        };
        assert_eq!(Header::decode(&rev_most.encode()), Ok(rev_most));
    }

    #[test]
    fn many_connections_share_a_bounded_buffer() {
        assert_eq!(buffer_share(1), None);
        assert_eq!(buffer_share(64), None, "the default up to 64");
        assert_eq!(buffer_share(65), Some(8065));
        assert_eq!(buffer_share(128), Some(4096));
        assert_eq!(buffer_share(1024), Some(512));
        assert_eq!(buffer_share(4096), Some(256), "never below 256");
    }

    #[test]
    fn message_header_roundtrips() {
        let mut msg = vec![0u8; MSG_HEADER + 3];
        put_msg_header(&mut msg, 7, 123_456_789);
        assert_eq!(&msg[..8], &7u64.to_be_bytes());
        assert_eq!(msg_sent_ns(&msg), Some(123_456_789));
        assert_eq!(msg_sent_ns(&msg[..MSG_HEADER]), Some(123_456_789));
        assert_eq!(msg_sent_ns(&msg[..MSG_HEADER - 1]), None);
    }
}
