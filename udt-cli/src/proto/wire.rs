//! Framing of the file-transfer protocol: every message is one frame
//! `type: u8, length: u32 (big endian), payload`, with a per-type bound on the
//! length checked before anything is read, so a hostile peer can make us
//! neither allocate nor wait for more than one bounded frame.
//!
//! The frame sequence is described in `docs/cli.md` ("Application protocol")
//! and enforced by `send.rs` and `recv.rs`; this module only encodes and
//! decodes single frames.

use std::fmt;
use std::io::{self, Read, Write};

/// First bytes of a `Hello`: identifies the protocol (not UDT4, ours).
pub const MAGIC: [u8; 8] = *b"UDTFILE\0";

/// Protocol version carried in `Hello`; a receiver refuses any other.
/// Version 2: a `Have` for a complete file carries no hash (the receiver
/// compares the sender's `FileEnd` hash itself, so a sender cannot learn
/// the hash of a file it does not have).
pub const VERSION: u16 = 2;

/// Largest payload of one `Data` frame. Large enough that the 5-byte
/// header costs nothing, small enough to bound the receiver's buffer.
pub const MAX_DATA: usize = 1 << 20;

/// Largest path of one entry, in bytes (Linux `PATH_MAX`).
pub const MAX_PATH_BYTES: usize = 4096;

/// Largest text of an `Error` frame, in bytes.
pub const MAX_MESSAGE: usize = 4096;

/// Bytes of a frame header: type and length.
pub const HEADER_LEN: usize = 5;

/// The first bytes a `udt bench` client sends (its magic `UDTBENCH`): a
/// receiver that reads them knows who called.
pub const BENCH_MAGIC_PREFIX: [u8; HEADER_LEN] = *b"UDTBE";

/// What a receiver answers a `udt bench` client, in the bench protocol's
/// own form (one JSON line), so the client can say what it reached.
pub const REPLY_TO_BENCH: &[u8] =
    b"{\"error\":\"this port is a udt recv (file receiver), not a udt bench server\"}\n";

/// Bytes of a BLAKE3 hash.
pub const HASH_LEN: usize = 32;

/// Fixed part of an `Entry` payload, before the path.
const ENTRY_FIXED: usize = 1 + 4 + 8 + 4 + 8;

/// Frame type codes.
mod code {
    pub(super) const HELLO: u8 = 0x01;
    pub(super) const ENTRY: u8 = 0x02;
    pub(super) const LIST_END: u8 = 0x03;
    pub(super) const RESUME: u8 = 0x04;
    pub(super) const HAVE: u8 = 0x10;
    pub(super) const PLAN_END: u8 = 0x11;
    pub(super) const FILE_START: u8 = 0x20;
    pub(super) const DATA: u8 = 0x21;
    pub(super) const FILE_END: u8 = 0x22;
    pub(super) const DONE: u8 = 0x23;
    pub(super) const RESULT: u8 = 0x30;
    pub(super) const ERROR: u8 = 0x7f;
}

/// What an entry of the file list is. Anything else (symlinks, devices,
/// sockets, FIFOs) cannot be expressed on the wire at all.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum EntryKind {
    /// A directory; its contents follow as separate entries.
    Dir,
    /// A regular file.
    File,
}

/// The metadata of one entry of the file list, as sent.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct EntryMeta {
    /// File or directory.
    pub kind: EntryKind,
    /// Unix permission bits (the receiver keeps only `0o777`).
    pub mode: u32,
    /// Modification time: seconds since the Unix epoch (may be negative).
    pub mtime_secs: i64,
    /// Modification time: nanoseconds within the second (< 10^9).
    pub mtime_nanos: u32,
    /// Size in bytes (0 for directories).
    pub size: u64,
}

/// One decoded frame, borrowing its variable-length parts from the reader.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Frame<'a> {
    /// Sender → receiver, first frame: protocol version and list totals.
    Hello {
        /// Protocol version ([`VERSION`]).
        version: u16,
        /// Number of `Entry` frames that follow.
        entries: u64,
        /// Sum of the sizes of all files.
        total_bytes: u64,
    },
    /// Sender → receiver: one file or directory (path not yet validated).
    Entry {
        /// Kind, mode, mtime, size.
        meta: EntryMeta,
        /// The relative path as sent, `/`-separated.
        path: &'a [u8],
    },
    /// Sender → receiver: the list is complete.
    ListEnd,
    /// Sender → receiver, right after `Hello` (optional): the sender was
    /// run with `--resume` and asks the receiver to continue its partial
    /// files as if it had `--resume` itself (see `recv.rs` for what the
    /// receiver grants).
    ResumeAsked,
    /// Receiver → sender: what the receiver already has of file `index`
    /// (only with `--resume`).
    Have {
        /// Index of the entry in the list.
        index: u32,
        /// How many bytes it has.
        len: u64,
        /// BLAKE3 of those bytes for a partial file; zeros for a complete
        /// one (the receiver checks the sender's `FileEnd` hash instead).
        hash: [u8; HASH_LEN],
        /// True when this is the final file, of the listed size (not a
        /// partial one).
        complete: bool,
    },
    /// Receiver → sender: the list is accepted; every `Have` was sent.
    PlanEnd,
    /// Sender → receiver: the contents of file `index` from `offset` follow.
    FileStart {
        /// Index of the entry in the list.
        index: u32,
        /// 0, or the length of a `Have` the sender verified.
        offset: u64,
    },
    /// Sender → receiver: the next bytes of the current file.
    Data(&'a [u8]),
    /// Sender → receiver: the current file is complete; BLAKE3 of all of it.
    FileEnd {
        /// BLAKE3 of the whole file, prefix included.
        hash: [u8; HASH_LEN],
    },
    /// Sender → receiver: every file was sent.
    Done,
    /// Receiver → sender: everything verified and in place.
    Result {
        /// Files received or found complete.
        files: u64,
        /// Bytes written by this transfer.
        bytes: u64,
    },
    /// Either direction: the transfer is over because of this error.
    Error {
        /// What kind of failure (an exit code of the `udt` program, so the
        /// other side can exit with the same meaning).
        class: u8,
        /// One line for a human.
        message: &'a str,
    },
}

/// Why a frame could not be read.
#[derive(Debug)]
pub enum WireError {
    /// The stream failed or ended (`UnexpectedEof` when the peer closed
    /// in the middle of the conversation).
    Io(io::Error),
    /// The peer sent something that is not a valid frame.
    Malformed(String),
    /// The peer speaks another protocol of ours (`udt bench`): the text
    /// says which.
    WrongPeer(String),
}

impl fmt::Display for WireError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            WireError::Io(e) if e.kind() == io::ErrorKind::UnexpectedEof => {
                f.write_str("the peer closed the connection in the middle of the transfer")
            }
            WireError::Io(e) => write!(f, "connection failed: {e}"),
            WireError::Malformed(m) => write!(f, "malformed frame from the peer: {m}"),
            WireError::WrongPeer(m) => f.write_str(m),
        }
    }
}

impl std::error::Error for WireError {}

impl From<io::Error> for WireError {
    fn from(e: io::Error) -> Self {
        WireError::Io(e)
    }
}

/// A byte stream that can append what it reads to a vector: over UDT
/// (`UdtStream::read_append`) the bytes are then copied once on their way
/// in instead of twice. The default reads into zeroed room, as `Read` does.
pub trait ReadAppend: Read {
    /// Appends at most `max` bytes to `out` and returns how many (`Ok(0)`
    /// at the end of the stream).
    ///
    /// # Errors
    /// As `Read::read`.
    fn read_append(&mut self, out: &mut Vec<u8>, max: usize) -> io::Result<usize> {
        // At most 1 MiB at a time: reading fewer than `max` is allowed,
        // zeroing a huge `max` first is not.
        let start = out.len();
        out.resize(start + max.min(1 << 20), 0);
        let r = self.read(&mut out[start..]);
        out.truncate(start + *r.as_ref().unwrap_or(&0));
        r
    }
}

impl ReadAppend for &[u8] {}
impl ReadAppend for std::net::TcpStream {}

/// Reads frames from a byte stream into one reused buffer.
#[derive(Debug)]
pub struct FrameReader<R> {
    inner: R,
    buf: Vec<u8>,
}

impl<R: ReadAppend> FrameReader<R> {
    /// Wraps `inner`; the buffer grows once to at most [`MAX_DATA`].
    pub fn new(inner: R) -> Self {
        FrameReader {
            inner,
            buf: Vec::new(),
        }
    }

    /// The wrapped stream.
    pub fn into_inner(self) -> R {
        self.inner
    }

    /// Reads the next frame.
    ///
    /// # Errors
    /// `Io` when the stream fails or ends (`UnexpectedEof` also for an end
    /// at a frame boundary: the conversation always says when it is over);
    /// `Malformed` for an unknown type, a length out of bounds for its type,
    /// or a payload that does not decode.
    pub fn next_frame(&mut self) -> Result<Frame<'_>, WireError> {
        let mut header = [0u8; HEADER_LEN];
        self.inner.read_exact(&mut header)?;
        if header == BENCH_MAGIC_PREFIX {
            return Err(WireError::WrongPeer(
                "the peer is a `udt bench` client, not `udt send`".into(),
            ));
        }
        let [kind, l0, l1, l2, l3] = header;
        let len = u32::from_be_bytes([l0, l1, l2, l3]) as usize;
        let (min, max) = bounds(kind)
            .ok_or_else(|| WireError::Malformed(format!("unknown frame type {kind:#04x}")))?;
        if len < min || len > max {
            return Err(WireError::Malformed(format!(
                "frame type {kind:#04x} with length {len} (allowed {min}..={max})"
            )));
        }
        // Bounded by `max` above: grows to at most MAX_DATA bytes, once,
        // and is filled by appending (never zeroed).
        self.buf.clear();
        self.buf.reserve(len);
        while self.buf.len() < len {
            let want = len - self.buf.len();
            match self.inner.read_append(&mut self.buf, want) {
                Ok(0) => {
                    return Err(io::Error::new(
                        io::ErrorKind::UnexpectedEof,
                        "the stream ended inside a frame",
                    )
                    .into())
                }
                Ok(_) => {}
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(e.into()),
            }
        }
        decode(kind, &self.buf[..len])
    }
}

/// Allowed payload lengths of each frame type; `None` for unknown types.
fn bounds(kind: u8) -> Option<(usize, usize)> {
    let exact = |n| Some((n, n));
    match kind {
        code::HELLO => exact(8 + 2 + 8 + 8),
        code::ENTRY => Some((ENTRY_FIXED, ENTRY_FIXED + MAX_PATH_BYTES)),
        code::LIST_END | code::RESUME | code::PLAN_END | code::DONE => exact(0),
        code::HAVE => exact(4 + 8 + HASH_LEN + 1),
        code::FILE_START => exact(4 + 8),
        code::DATA => Some((1, MAX_DATA)),
        code::FILE_END => exact(HASH_LEN),
        code::RESULT => exact(16),
        code::ERROR => Some((1, 1 + MAX_MESSAGE)),
        _ => None,
    }
}

/// A cursor over a payload whose length was already checked.
struct Cursor<'a>(&'a [u8]);

impl<'a> Cursor<'a> {
    fn take<const N: usize>(&mut self) -> Result<[u8; N], WireError> {
        let (head, rest) = self
            .0
            .split_first_chunk::<N>()
            .ok_or_else(|| WireError::Malformed("payload too short".into()))?;
        self.0 = rest;
        Ok(*head)
    }
    fn u8(&mut self) -> Result<u8, WireError> {
        Ok(self.take::<1>()?[0])
    }
    fn u16(&mut self) -> Result<u16, WireError> {
        Ok(u16::from_be_bytes(self.take()?))
    }
    fn u32(&mut self) -> Result<u32, WireError> {
        Ok(u32::from_be_bytes(self.take()?))
    }
    fn u64(&mut self) -> Result<u64, WireError> {
        Ok(u64::from_be_bytes(self.take()?))
    }
    fn i64(&mut self) -> Result<i64, WireError> {
        Ok(i64::from_be_bytes(self.take()?))
    }
    fn rest(self) -> &'a [u8] {
        self.0
    }
}

fn decode(kind: u8, payload: &[u8]) -> Result<Frame<'_>, WireError> {
    let mut c = Cursor(payload);
    let frame = match kind {
        code::HELLO => {
            let magic: [u8; 8] = c.take()?;
            if magic != MAGIC {
                return Err(WireError::Malformed(
                    "not a udt file-transfer peer (bad magic)".into(),
                ));
            }
            Frame::Hello {
                version: c.u16()?,
                entries: c.u64()?,
                total_bytes: c.u64()?,
            }
        }
        code::ENTRY => {
            let kind = match c.u8()? {
                0 => EntryKind::Dir,
                1 => EntryKind::File,
                k => {
                    return Err(WireError::Malformed(format!(
                        "entry kind {k} (only files and directories)"
                    )))
                }
            };
            let mode = c.u32()?;
            let mtime_secs = c.i64()?;
            let mtime_nanos = c.u32()?;
            if mtime_nanos >= 1_000_000_000 {
                return Err(WireError::Malformed(
                    "mtime nanoseconds out of range".into(),
                ));
            }
            let size = c.u64()?;
            Frame::Entry {
                meta: EntryMeta {
                    kind,
                    mode,
                    mtime_secs,
                    mtime_nanos,
                    size,
                },
                path: c.rest(),
            }
        }
        code::LIST_END => Frame::ListEnd,
        code::RESUME => Frame::ResumeAsked,
        code::HAVE => Frame::Have {
            index: c.u32()?,
            len: c.u64()?,
            hash: c.take()?,
            complete: match c.u8()? {
                0 => false,
                1 => true,
                _ => return Err(WireError::Malformed("bad flag in have".into())),
            },
        },
        code::PLAN_END => Frame::PlanEnd,
        code::FILE_START => Frame::FileStart {
            index: c.u32()?,
            offset: c.u64()?,
        },
        code::DATA => Frame::Data(payload),
        code::FILE_END => Frame::FileEnd { hash: c.take()? },
        code::DONE => Frame::Done,
        code::RESULT => Frame::Result {
            files: c.u64()?,
            bytes: c.u64()?,
        },
        code::ERROR => {
            let class = c.u8()?;
            let message = std::str::from_utf8(c.rest())
                .map_err(|_| WireError::Malformed("error text is not UTF-8".into()))?;
            Frame::Error { class, message }
        }
        _ => {
            return Err(WireError::Malformed(format!(
                "unknown frame type {kind:#04x}"
            )))
        }
    };
    Ok(frame)
}

/// Writes one frame (any type but `Data`, for which [`DataFrame`] avoids
/// a copy). Long paths and messages are truncated to their bounds so a
/// frame we write always decodes.
///
/// # Errors
/// The stream's write errors.
pub fn write_frame<W: Write + ?Sized>(w: &mut W, frame: &Frame<'_>) -> io::Result<()> {
    let mut out = Vec::with_capacity(64);
    encode(frame, &mut out);
    w.write_all(&out)
}

/// Appends the encoding of `frame` to `out`.
pub fn encode(frame: &Frame<'_>, out: &mut Vec<u8>) {
    let start = out.len();
    out.extend_from_slice(&[0; HEADER_LEN]);
    let kind = match *frame {
        Frame::Hello {
            version,
            entries,
            total_bytes,
        } => {
            out.extend_from_slice(&MAGIC);
            out.extend_from_slice(&version.to_be_bytes());
            out.extend_from_slice(&entries.to_be_bytes());
            out.extend_from_slice(&total_bytes.to_be_bytes());
            code::HELLO
        }
        Frame::Entry { meta, path } => {
            out.push(match meta.kind {
                EntryKind::Dir => 0,
                EntryKind::File => 1,
            });
            out.extend_from_slice(&meta.mode.to_be_bytes());
            out.extend_from_slice(&meta.mtime_secs.to_be_bytes());
            out.extend_from_slice(&meta.mtime_nanos.to_be_bytes());
            out.extend_from_slice(&meta.size.to_be_bytes());
            out.extend_from_slice(&path[..path.len().min(MAX_PATH_BYTES)]);
            code::ENTRY
        }
        Frame::ListEnd => code::LIST_END,
        Frame::ResumeAsked => code::RESUME,
        Frame::Have {
            index,
            len,
            hash,
            complete,
        } => {
            out.extend_from_slice(&index.to_be_bytes());
            out.extend_from_slice(&len.to_be_bytes());
            out.extend_from_slice(&hash);
            out.push(u8::from(complete));
            code::HAVE
        }
        Frame::PlanEnd => code::PLAN_END,
        Frame::FileStart { index, offset } => {
            out.extend_from_slice(&index.to_be_bytes());
            out.extend_from_slice(&offset.to_be_bytes());
            code::FILE_START
        }
        Frame::Data(d) => {
            out.extend_from_slice(&d[..d.len().min(MAX_DATA)]);
            code::DATA
        }
        Frame::FileEnd { hash } => {
            out.extend_from_slice(&hash);
            code::FILE_END
        }
        Frame::Done => code::DONE,
        Frame::Result { files, bytes } => {
            out.extend_from_slice(&files.to_be_bytes());
            out.extend_from_slice(&bytes.to_be_bytes());
            code::RESULT
        }
        Frame::Error { class, message } => {
            out.push(class);
            out.extend_from_slice(truncate_utf8(message, MAX_MESSAGE).as_bytes());
            code::ERROR
        }
    };
    let len = (out.len() - start - HEADER_LEN) as u32;
    out[start] = kind;
    out[start + 1..start + HEADER_LEN].copy_from_slice(&len.to_be_bytes());
}

/// The longest prefix of `s` of at most `max` bytes that ends on a char
/// boundary.
pub fn truncate_utf8(s: &str, max: usize) -> &str {
    if s.len() <= max {
        return s;
    }
    let mut end = max;
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    &s[..end]
}

/// A reusable buffer for `Data` frames: the file is read straight into the
/// payload area, then header and payload go out in one write.
#[derive(Debug)]
pub struct DataFrame {
    buf: Vec<u8>,
}

impl DataFrame {
    /// A buffer for payloads of up to `capacity` bytes (clamped to
    /// 1..=[`MAX_DATA`]).
    pub fn new(capacity: usize) -> Self {
        DataFrame {
            buf: vec![0; HEADER_LEN + capacity.clamp(1, MAX_DATA)],
        }
    }

    /// The payload area to fill.
    pub fn payload_mut(&mut self) -> &mut [u8] {
        &mut self.buf[HEADER_LEN..]
    }

    /// Writes a `Data` frame carrying the first `len` bytes of the payload
    /// area (`len` is clamped to the area; nothing is written for 0).
    ///
    /// # Errors
    /// The stream's write errors.
    pub fn write<W: Write + ?Sized>(&mut self, w: &mut W, len: usize) -> io::Result<()> {
        let len = len.min(self.buf.len() - HEADER_LEN);
        if len == 0 {
            return Ok(());
        }
        self.buf[0] = code::DATA;
        self.buf[1..HEADER_LEN].copy_from_slice(&(len as u32).to_be_bytes());
        w.write_all(&self.buf[..HEADER_LEN + len])
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use udt_core::rng::Rng;

    fn roundtrip(frame: Frame<'_>) {
        let mut bytes = Vec::new();
        encode(&frame, &mut bytes);
        let mut r = FrameReader::new(&bytes[..]);
        assert_eq!(r.next_frame().unwrap(), frame);
        assert!(matches!(r.next_frame(), Err(WireError::Io(_))));
    }

    #[test]
    fn every_frame_roundtrips() {
        roundtrip(Frame::Hello {
            version: VERSION,
            entries: 3,
            total_bytes: u64::MAX,
        });
        roundtrip(Frame::Entry {
            meta: EntryMeta {
                kind: EntryKind::File,
                mode: 0o644,
                mtime_secs: -5,
                mtime_nanos: 999_999_999,
                size: 1 << 40,
            },
            path: "dir/ünï cödé.txt".as_bytes(),
        });
        roundtrip(Frame::Entry {
            meta: EntryMeta {
                kind: EntryKind::Dir,
                mode: 0o755,
                mtime_secs: 0,
                mtime_nanos: 0,
                size: 0,
            },
            path: b"",
        });
        roundtrip(Frame::ListEnd);
        roundtrip(Frame::ResumeAsked);
        roundtrip(Frame::Have {
            index: u32::MAX,
            len: 7,
            hash: [9; 32],
            complete: true,
        });
        roundtrip(Frame::PlanEnd);
        roundtrip(Frame::FileStart {
            index: 1,
            offset: 2,
        });
        roundtrip(Frame::Data(&[1, 2, 3]));
        roundtrip(Frame::FileEnd { hash: [7; 32] });
        roundtrip(Frame::Done);
        roundtrip(Frame::Result { files: 1, bytes: 2 });
        roundtrip(Frame::Error {
            class: 6,
            message: "disk full",
        });
        roundtrip(Frame::Error {
            class: 0,
            message: "",
        });
    }

    #[test]
    fn data_frame_buffer_matches_encode() {
        let mut df = DataFrame::new(16);
        df.payload_mut()[..3].copy_from_slice(b"abc");
        let mut a = Vec::new();
        df.write(&mut a, 3).unwrap();
        let mut b = Vec::new();
        encode(&Frame::Data(b"abc"), &mut b);
        assert_eq!(a, b);
        // An empty data frame is never written (it would not decode).
        let mut c = Vec::new();
        df.write(&mut c, 0).unwrap();
        assert!(c.is_empty());
    }

    #[test]
    fn oversized_and_unknown_frames_are_refused_before_reading() {
        // A DATA frame claiming 4 GiB: refused from the header alone.
        let bytes = [code::DATA, 0xff, 0xff, 0xff, 0xff];
        let mut r = FrameReader::new(&bytes[..]);
        assert!(matches!(r.next_frame(), Err(WireError::Malformed(_))));
        assert!(r.buf.capacity() < 1024, "no allocation for a refused frame");
        let bytes = [0x55, 0, 0, 0, 0];
        assert!(matches!(
            FrameReader::new(&bytes[..]).next_frame(),
            Err(WireError::Malformed(_))
        ));
        // Empty DATA is not allowed either.
        let bytes = [code::DATA, 0, 0, 0, 0];
        assert!(matches!(
            FrameReader::new(&bytes[..]).next_frame(),
            Err(WireError::Malformed(_))
        ));
        // HELLO with a wrong length or a wrong magic.
        let bytes = [code::HELLO, 0, 0, 0, 1, 0];
        assert!(matches!(
            FrameReader::new(&bytes[..]).next_frame(),
            Err(WireError::Malformed(_))
        ));
        let mut hello = Vec::new();
        encode(
            &Frame::Hello {
                version: 1,
                entries: 0,
                total_bytes: 0,
            },
            &mut hello,
        );
        hello[HEADER_LEN] ^= 1;
        assert!(matches!(
            FrameReader::new(&hello[..]).next_frame(),
            Err(WireError::Malformed(_))
        ));
    }

    #[test]
    fn bad_fields_are_refused() {
        let mut e = Vec::new();
        encode(
            &Frame::Entry {
                meta: EntryMeta {
                    kind: EntryKind::File,
                    mode: 0,
                    mtime_secs: 0,
                    mtime_nanos: 0,
                    size: 0,
                },
                path: b"x",
            },
            &mut e,
        );
        let mut bad_kind = e.clone();
        bad_kind[HEADER_LEN] = 2; // a symlink, device, ... has no code
        assert!(FrameReader::new(&bad_kind[..]).next_frame().is_err());
        let mut bad_nanos = e.clone();
        bad_nanos[HEADER_LEN + 13..HEADER_LEN + 17]
            .copy_from_slice(&1_000_000_000u32.to_be_bytes());
        assert!(FrameReader::new(&bad_nanos[..]).next_frame().is_err());
        let bytes = [code::ERROR, 0, 0, 0, 3, 1, 0xff, 0xfe];
        assert!(FrameReader::new(&bytes[..]).next_frame().is_err());
    }

    #[test]
    fn truncation_keeps_frames_decodable() {
        let long = "é".repeat(MAX_MESSAGE);
        let mut bytes = Vec::new();
        encode(
            &Frame::Error {
                class: 1,
                message: &long,
            },
            &mut bytes,
        );
        match FrameReader::new(&bytes[..]).next_frame().unwrap() {
            Frame::Error { message: m, .. } => {
                assert!(m.len() <= MAX_MESSAGE && m.len() >= MAX_MESSAGE - 1)
            }
            f => panic!("{f:?}"),
        }
    }

    /// Random bytes never panic the decoder and never make it buffer more
    /// than one bounded frame.
    #[test]
    fn random_garbage_never_panics() {
        let seed = 0x5eed_f00d;
        let mut rng = Rng::new(seed);
        for round in 0..20_000 {
            let len = rng.below(64) as usize;
            let mut bytes: Vec<u8> = (0..len).map(|_| rng.next_u32() as u8).collect();
            // Bias towards valid types so the payload decoders get exercised.
            if let Some(b) = bytes.first_mut() {
                const CODES: [u8; 11] = [1, 2, 3, 0x10, 0x11, 0x20, 0x21, 0x22, 0x23, 0x30, 0x7f];
                *b = CODES[rng.below(CODES.len() as u64) as usize];
            }
            if bytes.len() >= HEADER_LEN && rng.chance(0.7) {
                let plen = (bytes.len() - HEADER_LEN) as u32;
                bytes[1..5].copy_from_slice(&plen.to_be_bytes());
            }
            let mut r = FrameReader::new(&bytes[..]);
            for _ in 0..4 {
                if r.next_frame().is_err() {
                    break;
                }
            }
            assert!(r.buf.len() <= MAX_DATA, "seed={seed} round={round}");
        }
    }
}
