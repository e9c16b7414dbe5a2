//! The sending side: turns local paths into the file list, answers the
//! receiver's `Have`s by hashing its own prefixes, and streams contents with
//! a running BLAKE3 of each file.

use std::collections::{HashMap, HashSet};
use std::fs::{self, File};
use std::io::{self, Read, Write};
use std::path::{Path, PathBuf};
use std::sync::mpsc;
use std::thread;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use super::glob;
use super::names::{Limits, RelPath};
use super::wire::{
    self, DataFrame, EntryKind, EntryMeta, Frame, FrameReader, ReadAppend, HASH_LEN,
};
use super::{Observer, TransferError};

/// Bytes read from a file per `Data` frame.
const CHUNK: usize = 256 * 1024;

/// One local file or directory to send.
#[derive(Clone, Debug)]
pub struct LocalEntry {
    /// Its name in the transfer.
    pub path: RelPath,
    /// What the list says about it.
    pub meta: EntryMeta,
    /// Where it is on this machine.
    pub source: PathBuf,
}

/// What a finished send did.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct SendReport {
    /// Files in the list.
    pub files: u64,
    /// Directories in the list.
    pub dirs: u64,
    /// Sum of all file sizes.
    pub total_bytes: u64,
    /// Bytes of contents actually sent by this run.
    pub bytes_sent: u64,
    /// Bytes the receiver already had and that were verified (resume).
    pub bytes_resumed: u64,
    /// Files whose partial copy on the receiver did not match and were sent
    /// from the start.
    pub restarted: u64,
}

/// Builds the file list for `roots`: each root appears under its own last
/// name component, directories recursively (parents before children,
/// names in byte order). Symbolic links below a root and special files are
/// skipped with a note; a root that is a symlink is followed.
///
/// # Errors
/// `Usage` for a missing root, a root without a name (`/`), two roots with
/// the same name, or a local name the protocol cannot carry; `Local` when a
/// directory cannot be read.
pub fn scan(
    roots: &[PathBuf],
    limits: &Limits,
    observer: &mut dyn Observer,
) -> Result<Vec<LocalEntry>, TransferError> {
    scan_filtered(roots, limits, &glob::Filter::default(), observer)
}

/// As [`scan`], leaving out every file or directory below a root that
/// `filter` rejects (`--include`, `--exclude`; see [`glob::Filter`]),
/// each reported with [`Observer::on_skipped`]. The roots themselves are
/// always sent: the user named them.
///
/// # Errors
/// As [`scan`].
pub fn scan_filtered(
    roots: &[PathBuf],
    limits: &Limits,
    filter: &glob::Filter,
    observer: &mut dyn Observer,
) -> Result<Vec<LocalEntry>, TransferError> {
    let mut entries = Vec::new();
    let mut top_names = HashSet::new();
    for root in roots {
        let meta = fs::metadata(root)
            .map_err(|e| TransferError::Usage(format!("cannot send {}: {e}", root.display())))?;
        let name = match root.file_name() {
            Some(n) => n.to_os_string(),
            // `.`, `..` or a path ending in them: use the real name.
            None => fs::canonicalize(root)
                .ok()
                .and_then(|p| p.file_name().map(|n| n.to_os_string()))
                .ok_or_else(|| {
                    TransferError::Usage(format!("{} has no name to send it under", root.display()))
                })?,
        };
        if !top_names.insert(name.clone()) {
            return Err(TransferError::Usage(format!(
                "two paths to send are both named {:?}; the receiver would get only one",
                name
            )));
        }
        let rel = RelPath::from_components([name.as_os_str()], limits)
            .map_err(|e| TransferError::Usage(format!("cannot send {}: {e}", root.display())))?;
        // Depth-first, pre-order: pop an entry, emit it, push its children
        // in reverse so they pop in order.
        let mut stack = vec![(root.clone(), rel, meta)];
        while let Some((source, rel, meta)) = stack.pop() {
            let kind = if meta.is_dir() {
                EntryKind::Dir
            } else if meta.is_file() {
                EntryKind::File
            } else {
                observer.on_skipped(
                    &source.display().to_string(),
                    "not a regular file or directory",
                );
                continue;
            };
            let (mtime_secs, mtime_nanos) = mtime_of(&meta);
            entries.push(LocalEntry {
                path: rel.clone(),
                meta: EntryMeta {
                    kind,
                    mode: mode_of(&meta),
                    mtime_secs,
                    mtime_nanos,
                    size: if kind == EntryKind::File {
                        meta.len()
                    } else {
                        0
                    },
                },
                source: source.clone(),
            });
            if entries.len() as u64 > limits.max_entries {
                return Err(TransferError::Usage(format!(
                    "more than {} files and directories to send",
                    limits.max_entries
                )));
            }
            if kind == EntryKind::Dir {
                let mut children = Vec::new();
                let dir = fs::read_dir(&source)
                    .map_err(|e| TransferError::local("reading directory", source.display(), e))?;
                for child in dir {
                    let child = child.map_err(|e| {
                        TransferError::local("reading directory", source.display(), e)
                    })?;
                    children.push(child.file_name());
                }
                children.sort_by(|a, b| a.as_encoded_bytes().cmp(b.as_encoded_bytes()));
                for name in children.into_iter().rev() {
                    let child_source = source.join(&name);
                    let child_meta = fs::symlink_metadata(&child_source)
                        .map_err(|e| TransferError::local("reading", child_source.display(), e))?;
                    if let Some(why) = filter.rejects(name.as_encoded_bytes(), child_meta.is_dir())
                    {
                        observer.on_skipped(&child_source.display().to_string(), why);
                        continue;
                    }
                    if child_meta.file_type().is_symlink() {
                        observer.on_skipped(&child_source.display().to_string(), "a symbolic link");
                        continue;
                    }
                    let mut child_rel = rel.as_bytes().to_vec();
                    child_rel.push(b'/');
                    child_rel.extend_from_slice(name.as_encoded_bytes());
                    // Native names are bytes on Unix and WTF-8 elsewhere, where
                    // `parse` insists on UTF-8.
                    let child_rel = RelPath::parse(&child_rel, limits).map_err(|e| {
                        TransferError::Usage(format!("cannot send {}: {e}", child_source.display()))
                    })?;
                    stack.push((child_source, child_rel, child_meta));
                }
            }
        }
    }
    Ok(entries)
}

#[cfg(unix)]
fn mode_of(meta: &fs::Metadata) -> u32 {
    use std::os::unix::fs::PermissionsExt;
    meta.permissions().mode() & 0o7777
}

#[cfg(not(unix))]
fn mode_of(meta: &fs::Metadata) -> u32 {
    match (meta.is_dir(), meta.permissions().readonly()) {
        (true, _) => 0o755,
        (false, true) => 0o444,
        (false, false) => 0o644,
    }
}

/// Seconds and nanoseconds of the modification time since the epoch
/// (before it: negative seconds, nanos counted forward).
fn mtime_of(meta: &fs::Metadata) -> (i64, u32) {
    let Ok(t) = meta.modified() else {
        return (0, 0);
    };
    match t.duration_since(UNIX_EPOCH) {
        Ok(d) => (d.as_secs() as i64, d.subsec_nanos()),
        Err(e) => {
            let d = e.duration();
            let (s, n) = (d.as_secs() as i64, d.subsec_nanos());
            if n == 0 {
                (-s, 0)
            } else {
                (-s - 1, 1_000_000_000 - n)
            }
        }
    }
}

/// The `SystemTime` of a wire mtime, `None` when out of range.
pub(crate) fn system_time(secs: i64, nanos: u32) -> Option<SystemTime> {
    let base = if secs >= 0 {
        UNIX_EPOCH.checked_add(Duration::from_secs(secs as u64))?
    } else {
        UNIX_EPOCH.checked_sub(Duration::from_secs(secs.unsigned_abs()))?
    };
    base.checked_add(Duration::from_nanos(u64::from(nanos)))
}

/// What the receiver said it has of one file.
#[derive(Clone, Copy, Debug)]
struct Have {
    len: u64,
    hash: [u8; HASH_LEN],
    complete: bool,
}

/// Sends `entries` to a receiver: `reader` and `writer` are the two
/// directions of one connection. `reader` moves to a thread during the
/// data phase so an `Error` from the receiver (a full disk, say) is seen at
/// once rather than after the whole send.
///
/// # Errors
/// `Network` when the connection breaks; `Peer` with the receiver's class
/// and message when it refuses or fails; `Local` when a file cannot be read
/// or changed size while being sent; `Protocol` for a malformed answer.
pub fn send_files<R, W>(
    reader: R,
    writer: &mut W,
    entries: &[LocalEntry],
    observer: &mut dyn Observer,
) -> Result<SendReport, TransferError>
where
    R: ReadAppend + Send + 'static,
    W: Write + ?Sized,
{
    send_files_resuming(reader, writer, entries, false, observer)
}

/// As [`send_files`]; with `ask_resume` (`udt send --resume`) the sender
/// asks the receiver to continue what an interrupted run left there, even
/// when the receiver was not started with `--resume` (a
/// [`Frame::ResumeAsked`] after the greeting).
///
/// # Errors
/// As [`send_files`].
pub fn send_files_resuming<R, W>(
    reader: R,
    writer: &mut W,
    entries: &[LocalEntry],
    ask_resume: bool,
    observer: &mut dyn Observer,
) -> Result<SendReport, TransferError>
where
    R: ReadAppend + Send + 'static,
    W: Write + ?Sized,
{
    let mut report = SendReport::default();
    for e in entries {
        match e.meta.kind {
            EntryKind::File => {
                report.files += 1;
                report.total_bytes = report.total_bytes.saturating_add(e.meta.size);
            }
            EntryKind::Dir => report.dirs += 1,
        }
    }
    // The list goes out in one buffered burst.
    let mut out = Vec::with_capacity(64 * 1024);
    wire::encode(
        &Frame::Hello {
            version: wire::VERSION,
            entries: entries.len() as u64,
            total_bytes: report.total_bytes,
        },
        &mut out,
    );
    if ask_resume {
        wire::encode(&Frame::ResumeAsked, &mut out);
    }
    for e in entries {
        wire::encode(
            &Frame::Entry {
                meta: e.meta,
                path: e.path.as_bytes(),
            },
            &mut out,
        );
        if out.len() >= 64 * 1024 {
            writer
                .write_all(&out)
                .map_err(|e| TransferError::network(&e))?;
            out.clear();
        }
    }
    wire::encode(&Frame::ListEnd, &mut out);
    writer
        .write_all(&out)
        .map_err(|e| TransferError::network(&e))?;
    writer.flush().map_err(|e| TransferError::network(&e))?;

    // The plan: what the receiver already has.
    let mut frames = FrameReader::new(reader);
    let mut haves: HashMap<u32, Have> = HashMap::new();
    loop {
        match frames.next_frame()? {
            Frame::Have {
                index,
                len,
                hash,
                complete,
            } => {
                let is_file = entries
                    .get(index as usize)
                    .is_some_and(|e| e.meta.kind == EntryKind::File);
                if !is_file || haves.len() >= entries.len() {
                    return Err(TransferError::Protocol(format!(
                        "the receiver sent a have for entry {index}, not a file"
                    )));
                }
                haves.insert(
                    index,
                    Have {
                        len,
                        hash,
                        complete,
                    },
                );
            }
            Frame::PlanEnd => break,
            Frame::Error { class, message } => {
                return Err(TransferError::peer("receiver", class, message))
            }
            other => return Err(unexpected("the plan", &other)),
        }
    }

    // Settle every offset first, so the progress bar knows the total.
    let mut offsets = vec![0u64; entries.len()];
    let mut resumed_hashers: HashMap<u32, blake3::Hasher> = HashMap::new();
    for (&index, have) in &haves {
        let Some(entry) = entries.get(index as usize) else {
            continue;
        };
        if have.complete {
            // The receiver has a file of this size and compares our hash
            // (in FileEnd) with its own; it never tells us its hash.
            if have.len == entry.meta.size {
                offsets[index as usize] = have.len;
                report.bytes_resumed += have.len;
            } else {
                return Err(TransferError::Protocol(format!(
                    "the receiver offered a complete {} of the wrong size",
                    entry.path
                )));
            }
            continue;
        }
        if have.len > entry.meta.size {
            report.restarted += 1;
            continue;
        }
        let mut hasher = blake3::Hasher::new();
        let matched = hash_prefix(&entry.source, have.len, &mut hasher)
            .map_err(|e| TransferError::local("reading", &entry.path, e))?;
        if matched && *hasher.finalize().as_bytes() == have.hash {
            offsets[index as usize] = have.len;
            report.bytes_resumed += have.len;
            resumed_hashers.insert(index, hasher);
        } else {
            report.restarted += 1;
            observer.on_note(&format!(
                "{}: the receiver's copy differs from ours; sending it again from the start",
                entry.path
            ));
        }
    }
    observer.on_plan(report.files, report.total_bytes, report.bytes_resumed);

    // From here on the receiver only speaks to end the transfer.
    let (tx, rx) = mpsc::channel();
    thread::Builder::new()
        .name("udt-send-replies".into())
        .spawn(move || {
            let outcome = match frames.next_frame() {
                Ok(Frame::Result { files, bytes }) => Ok((files, bytes)),
                Ok(Frame::Error { class, message }) => {
                    Err(TransferError::peer("receiver", class, message))
                }
                Ok(other) => Err(unexpected("the transfer", &other)),
                Err(e) => Err(e.into()),
            };
            let _ = tx.send(outcome);
        })
        .map_err(|e| TransferError::Network(format!("cannot start a thread: {e}")))?;

    let mut data = DataFrame::new(CHUNK);
    let sent = (|| -> Result<(), TransferError> {
        for (index, entry) in entries.iter().enumerate() {
            if entry.meta.kind != EntryKind::File {
                continue;
            }
            // Stop early if the receiver already gave up.
            if let Ok(outcome) = rx.try_recv() {
                return Err(outcome.err().unwrap_or_else(|| {
                    TransferError::Protocol(
                        "the receiver confirmed before the transfer ended".into(),
                    )
                }));
            }
            if observer.should_stop() {
                return Err(TransferError::Interrupted);
            }
            let offset = offsets[index];
            let hasher = resumed_hashers.remove(&(index as u32));
            observer.on_file(&entry.path, entry.meta.size, offset);
            send_one(
                writer,
                index as u32,
                entry,
                offset,
                hasher,
                &mut data,
                observer,
                &mut report,
            )?;
            observer.on_file_done(&entry.path);
        }
        wire::write_frame(writer, &Frame::Done).map_err(|e| TransferError::network(&e))?;
        writer.flush().map_err(|e| TransferError::network(&e))
    })();
    match sent {
        Ok(()) => {}
        Err(e @ TransferError::Network(_)) => {
            // A broken connection is often the receiver having stopped with
            // a reason: give its last words a moment to arrive.
            return Err(match rx.recv_timeout(Duration::from_secs(3)) {
                Ok(Err(peer @ TransferError::Peer { .. })) => peer,
                _ => e,
            });
        }
        Err(e) => {
            let message = match e {
                TransferError::Interrupted => "the sender was interrupted".to_owned(),
                ref e => e.to_string(),
            };
            let _ = wire::write_frame(
                writer,
                &Frame::Error {
                    class: e.exit_code(),
                    message: &message,
                },
            );
            let _ = writer.flush();
            return Err(e);
        }
    }
    // Wait for the receiver's verdict; Ctrl-C still counts meanwhile.
    let outcome = loop {
        match rx.recv_timeout(Duration::from_millis(100)) {
            Ok(outcome) => break Ok(outcome),
            Err(mpsc::RecvTimeoutError::Timeout) => {
                if observer.should_stop() {
                    let _ = wire::write_frame(
                        writer,
                        &Frame::Error {
                            class: TransferError::Interrupted.exit_code(),
                            message: "the sender was interrupted",
                        },
                    );
                    let _ = writer.flush();
                    return Err(TransferError::Interrupted);
                }
            }
            Err(mpsc::RecvTimeoutError::Disconnected) => break Err(()),
        }
    };
    match outcome {
        Ok(Ok((files, _bytes))) if files == report.files => Ok(report),
        Ok(Ok((files, _))) => Err(TransferError::Protocol(format!(
            "the receiver confirmed {files} files, we sent {}",
            report.files
        ))),
        Ok(Err(e)) => Err(e),
        Err(_) => Err(TransferError::Network("the reply reader stopped".into())),
    }
}

/// Sends one file from `offset`; `resumed` is the hash state of the first
/// `offset` bytes (verified against the receiver's partial copy), `None`
/// from the start or for a complete file the receiver only compares.
#[allow(clippy::too_many_arguments)]
fn send_one<W: Write + ?Sized>(
    writer: &mut W,
    index: u32,
    entry: &LocalEntry,
    offset: u64,
    resumed: Option<blake3::Hasher>,
    data: &mut DataFrame,
    observer: &mut dyn Observer,
    report: &mut SendReport,
) -> Result<(), TransferError> {
    let net = |e: io::Error| TransferError::network(&e);
    // Errors name the file as it is sent: they may travel to the peer.
    let name = &entry.path;
    let mut file =
        File::open(&entry.source).map_err(|e| TransferError::local("opening", name, e))?;
    let mut hasher = match resumed {
        Some(h) => {
            io::Seek::seek(&mut file, io::SeekFrom::Start(offset))
                .map_err(|e| TransferError::local("reading", name, e))?;
            h
        }
        None => {
            // A complete file on the receiver: our hash of all of it.
            let mut h = blake3::Hasher::new();
            let copied = io::copy(&mut (&mut file).take(offset), &mut HashWriter(&mut h))
                .map_err(|e| TransferError::local("reading", name, e))?;
            if copied != offset {
                return Err(shrank(name));
            }
            h
        }
    };
    wire::write_frame(writer, &Frame::FileStart { index, offset }).map_err(net)?;
    let mut left = entry.meta.size - offset;
    while left > 0 {
        let want = (left.min(CHUNK as u64)) as usize;
        let buf = &mut data.payload_mut()[..want];
        let n = match file.read(buf) {
            Ok(0) => return Err(shrank(name)),
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(TransferError::local("reading", name, e)),
        };
        hasher.update(&buf[..n]);
        data.write(writer, n).map_err(net)?;
        left -= n as u64;
        report.bytes_sent += n as u64;
        observer.on_bytes(n as u64);
        if left > 0 && observer.should_stop() {
            // Mid-file, at a frame boundary: the Error frame goes next.
            return Err(TransferError::Interrupted);
        }
    }
    wire::write_frame(
        writer,
        &Frame::FileEnd {
            hash: *hasher.finalize().as_bytes(),
        },
    )
    .map_err(net)
}

/// The error for a file that got shorter than listed.
fn shrank(name: &RelPath) -> TransferError {
    TransferError::local(
        "reading",
        name,
        io::Error::new(
            io::ErrorKind::UnexpectedEof,
            "the file shrank while being sent",
        ),
    )
}

/// Feeds the first `len` bytes of `path` to `hasher`; false when the file
/// is shorter than that.
fn hash_prefix(path: &Path, len: u64, hasher: &mut blake3::Hasher) -> io::Result<bool> {
    let file = File::open(path)?;
    let mut taken = file.take(len);
    let copied = io::copy(&mut taken, &mut HashWriter(hasher))?;
    Ok(copied == len)
}

/// Lets `io::copy` feed a hasher.
struct HashWriter<'a>(&'a mut blake3::Hasher);

impl Write for HashWriter<'_> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.0.update(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

/// A protocol error for a frame that does not belong in `phase`.
pub(crate) fn unexpected(phase: &str, frame: &Frame<'_>) -> TransferError {
    let name = match frame {
        Frame::Hello { .. } => "hello",
        Frame::Entry { .. } => "entry",
        Frame::ListEnd => "list end",
        Frame::ResumeAsked => "resume request",
        Frame::Have { .. } => "have",
        Frame::PlanEnd => "plan end",
        Frame::FileStart { .. } => "file start",
        Frame::Data(_) => "data",
        Frame::FileEnd { .. } => "file end",
        Frame::Done => "done",
        Frame::Result { .. } => "result",
        Frame::Error { .. } => "error",
    };
    TransferError::Protocol(format!("unexpected {name} frame during {phase}"))
}
