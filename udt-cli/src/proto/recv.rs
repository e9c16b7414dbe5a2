//! The receiving side: validates the sender's list against the name rules
//! and limits, refuses conflicts before any data moves, reports what it
//! already has (`--resume`), and writes each file to a temporary sibling
//! that is hashed, fsynced and renamed into place only when its BLAKE3
//! matches.

use std::collections::HashMap;
use std::fs::{self, File, OpenOptions};
use std::io::{self, Read, Seek, Write};
use std::path::{Path, PathBuf};

use super::names::{printable, Limits, RelPath};
use super::send::{hash_prefix, system_time, unexpected};
use super::wire::{self, EntryKind, EntryMeta, Frame, FrameReader, HASH_LEN};
use super::{Observer, TransferError};

/// How a receiver treats its output directory.
#[derive(Clone, Debug)]
pub struct RecvOptions {
    /// Everything received goes below this directory (created if missing).
    pub out: PathBuf,
    /// Replace existing files (never directories).
    pub overwrite: bool,
    /// Report partial and complete files already present so the sender can
    /// continue them after verifying their prefix.
    pub resume: bool,
    /// Bounds on the sender's list.
    pub limits: Limits,
    /// `fsync` each file before its rename, and the directories at the end.
    /// On by default; tests may turn it off for speed.
    pub fsync: bool,
}

impl RecvOptions {
    /// Defaults for `out`: no overwrite, no resume, default limits, fsync.
    pub fn new(out: impl Into<PathBuf>) -> Self {
        RecvOptions {
            out: out.into(),
            overwrite: false,
            resume: false,
            limits: Limits::default(),
            fsync: true,
        }
    }
}

/// What a finished receive did.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct RecvReport {
    /// Files in the list (all now in place and verified).
    pub files: u64,
    /// Directories in the list.
    pub dirs: u64,
    /// Sum of all file sizes.
    pub total_bytes: u64,
    /// Bytes of contents received and written by this run.
    pub bytes_written: u64,
    /// Bytes that were already here and verified (partial files continued,
    /// complete files kept).
    pub bytes_resumed: u64,
    /// Complete files that were already here, identical, and left alone.
    pub files_unchanged: u64,
}

/// What we already have of one file (`--resume`).
#[derive(Clone, Copy, Debug)]
struct Have {
    len: u64,
    hash: [u8; HASH_LEN],
    complete: bool,
}

/// One validated entry of the list.
#[derive(Debug)]
struct Entry {
    path: RelPath,
    meta: EntryMeta,
    have: Option<Have>,
}

/// Receives one transfer into `opts.out`: `reader` and `writer` are the two
/// directions of one connection. On failure an `Error` frame with the
/// reason goes to the sender (unless the connection itself failed);
/// partially received files stay as `.NAME.udt-partial` for `--resume`.
///
/// # Errors
/// `Refused` for a list that breaks a rule (absolute paths, `..`, limits,
/// duplicates); `Exists` for a conflict without `--overwrite`; `Verify`
/// for a hash mismatch; `Local` for file-system errors (disk full:
/// [`TransferError::is_disk_full`]); `Network`, `Protocol` and `Peer` for
/// the connection and the sender.
pub fn receive<R, W>(
    reader: R,
    writer: &mut W,
    opts: &RecvOptions,
    observer: &mut dyn Observer,
) -> Result<RecvReport, TransferError>
where
    R: Read,
    W: Write + ?Sized,
{
    let result = receive_inner(FrameReader::new(reader), writer, opts, observer);
    if let Err(e) = &result {
        if !matches!(e, TransferError::Network(_) | TransferError::Peer { .. }) {
            let message = e.to_string();
            let _ = wire::write_frame(
                writer,
                &Frame::Error {
                    class: e.exit_code(),
                    message: &message,
                },
            );
            let _ = writer.flush();
        }
    }
    result
}

fn receive_inner<R: Read, W: Write + ?Sized>(
    mut frames: FrameReader<R>,
    writer: &mut W,
    opts: &RecvOptions,
    observer: &mut dyn Observer,
) -> Result<RecvReport, TransferError> {
    let mut report = RecvReport::default();
    let mut entries = read_list(&mut frames, &opts.limits, &mut report)?;
    let out = &opts.out;
    fs::create_dir_all(out).map_err(|e| TransferError::local("creating", out, e))?;

    // Check everything before touching anything: a refused transfer
    // leaves the output directory as it was.
    for entry in &mut entries {
        entry.have = check_target(out, entry, opts)?;
    }
    for entry in entries.iter().filter(|e| e.meta.kind == EntryKind::Dir) {
        let dir = entry.path.under(out);
        match fs::create_dir(&dir) {
            Ok(()) => {}
            // check_target made sure it is a real directory.
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {}
            Err(e) => return Err(TransferError::local("creating", &dir, e)),
        }
    }

    let mut plan = Vec::new();
    for (index, entry) in entries.iter().enumerate() {
        if let Some(h) = entry.have {
            report.bytes_resumed += h.len;
            wire::encode(
                &Frame::Have {
                    index: index as u32,
                    len: h.len,
                    hash: h.hash,
                    complete: h.complete,
                },
                &mut plan,
            );
        }
    }
    wire::encode(&Frame::PlanEnd, &mut plan);
    writer
        .write_all(&plan)
        .map_err(|e| TransferError::network(&e))?;
    writer.flush().map_err(|e| TransferError::network(&e))?;
    // What the sender accepts of our haves is only known file by file.
    report.bytes_resumed = 0;
    observer.on_plan(report.files, report.total_bytes, 0);

    let mut files = entries
        .iter()
        .enumerate()
        .filter(|(_, e)| e.meta.kind == EntryKind::File)
        .map(|(i, _)| i)
        .peekable();
    loop {
        match frames.next_frame()? {
            Frame::FileStart { index, offset } => {
                let expected = files.next();
                if expected != Some(index as usize) {
                    return Err(TransferError::Protocol(format!(
                        "the sender started file #{index} out of order"
                    )));
                }
                let Some(entry) = entries.get(index as usize) else {
                    return Err(TransferError::Protocol("file index out of range".into()));
                };
                observer.on_file(&entry.path, entry.meta.size, offset);
                receive_file(&mut frames, out, entry, offset, opts, observer, &mut report)?;
            }
            Frame::Done => {
                if let Some(&missing) = files.peek() {
                    let name = entries
                        .get(missing)
                        .map(|e| e.path.to_string())
                        .unwrap_or_default();
                    return Err(TransferError::Protocol(format!(
                        "the sender finished without sending {name}"
                    )));
                }
                break;
            }
            Frame::Error { class, message } => {
                return Err(TransferError::Peer {
                    from: "sender",
                    class,
                    message: message.to_owned(),
                })
            }
            other => return Err(unexpected("the transfer", &other)),
        }
    }

    // Directory times last (writing files changed them), deepest first,
    // and the mode after the time: a read-only mode could forbid it.
    for entry in entries
        .iter()
        .rev()
        .filter(|e| e.meta.kind == EntryKind::Dir)
    {
        let dir = entry.path.under(out);
        finish_dir(&dir, &entry.meta, opts.fsync)
            .map_err(|e| TransferError::local("setting times and mode of", &dir, e))?;
    }
    if opts.fsync {
        sync_dir(out).map_err(|e| TransferError::local("syncing", out, e))?;
    }
    wire::write_frame(
        writer,
        &Frame::Result {
            files: report.files,
            bytes: report.bytes_written,
        },
    )
    .map_err(|e| TransferError::network(&e))?;
    writer.flush().map_err(|e| TransferError::network(&e))?;
    Ok(report)
}

/// Reads and validates `Hello` and the list.
fn read_list<R: Read>(
    frames: &mut FrameReader<R>,
    limits: &Limits,
    report: &mut RecvReport,
) -> Result<Vec<Entry>, TransferError> {
    let (announced, announced_bytes) = match frames.next_frame()? {
        Frame::Hello {
            version,
            entries,
            total_bytes,
        } => {
            if version != wire::VERSION {
                return Err(TransferError::Refused(format!(
                    "the sender speaks protocol version {version}, we speak {}; use the same udt version on \
                     both sides",
                    wire::VERSION
                )));
            }
            (entries, total_bytes)
        }
        Frame::Error { class, message } => {
            return Err(TransferError::Peer {
                from: "sender",
                class,
                message: message.to_owned(),
            })
        }
        other => return Err(unexpected("the greeting", &other)),
    };
    if announced > limits.max_entries {
        return Err(TransferError::Refused(format!(
            "{announced} entries announced, the limit is {}",
            limits.max_entries
        )));
    }
    // Bounded by max_entries, checked above.
    let mut entries = Vec::with_capacity(announced.min(4096) as usize);
    let mut kinds: HashMap<RelPath, EntryKind> = HashMap::new();
    let mut list_bytes = 0u64;
    let mut total = 0u64;
    loop {
        match frames.next_frame()? {
            Frame::Entry { meta, path } => {
                if entries.len() as u64 >= announced {
                    return Err(TransferError::Refused("more entries than announced".into()));
                }
                list_bytes += path.len() as u64;
                if list_bytes > limits.max_list_bytes {
                    return Err(TransferError::Refused(format!(
                        "the names add up to more than {} bytes",
                        limits.max_list_bytes
                    )));
                }
                let rel = RelPath::parse(path, limits)
                    .map_err(|e| TransferError::Refused(format!("{e}: {:?}", printable(path))))?;
                if let Some(parent) = rel.parent() {
                    // The parent is valid as a prefix of a valid path.
                    let parent_kind = RelPath::parse(parent, limits)
                        .ok()
                        .and_then(|p| kinds.get(&p).copied());
                    if parent_kind != Some(EntryKind::Dir) {
                        return Err(TransferError::Refused(format!(
                            "{rel}: its parent directory is not in the list before it"
                        )));
                    }
                }
                match meta.kind {
                    EntryKind::File => {
                        report.files += 1;
                        total = total
                            .checked_add(meta.size)
                            .ok_or_else(|| TransferError::Refused("the sizes overflow".into()))?;
                    }
                    EntryKind::Dir => {
                        if meta.size != 0 {
                            return Err(TransferError::Refused(format!(
                                "{rel}: a directory with a size"
                            )));
                        }
                        report.dirs += 1;
                    }
                }
                if kinds.insert(rel.clone(), meta.kind).is_some() {
                    return Err(TransferError::Refused(format!(
                        "{rel} appears twice in the list"
                    )));
                }
                entries.push(Entry {
                    path: rel,
                    meta,
                    have: None,
                });
            }
            Frame::ListEnd => break,
            Frame::Error { class, message } => {
                return Err(TransferError::Peer {
                    from: "sender",
                    class,
                    message: message.to_owned(),
                })
            }
            other => return Err(unexpected("the file list", &other)),
        }
    }
    if entries.len() as u64 != announced || total != announced_bytes {
        return Err(TransferError::Refused(format!(
            "the list has {} entries and {total} bytes, {announced} and {announced_bytes} were announced",
            entries.len()
        )));
    }
    report.total_bytes = total;
    Ok(entries)
}

/// Checks what exists at an entry's place and, with `--resume`, what we
/// already have of it.
fn check_target(
    out: &Path,
    entry: &Entry,
    opts: &RecvOptions,
) -> Result<Option<Have>, TransferError> {
    let target = entry.path.under(out);
    let existing = match fs::symlink_metadata(&target) {
        Ok(m) => Some(m),
        Err(e) if e.kind() == io::ErrorKind::NotFound => None,
        Err(e) => return Err(TransferError::local("checking", &target, e)),
    };
    if entry.meta.kind == EntryKind::Dir {
        // A symlink here could lead outside the output directory: only a
        // real directory may be merged into.
        return match existing {
            Some(m) if !m.is_dir() => Err(TransferError::Exists(format!(
                "{} exists and is not a directory",
                target.display()
            ))),
            _ => Ok(None),
        };
    }
    match existing {
        None => {}
        Some(m) if m.is_file() => {
            if opts.resume {
                return Ok(Some(hash_have(&target, m.len(), true)?));
            }
            if !opts.overwrite {
                return Err(TransferError::Exists(format!(
                    "{} already exists; use --overwrite to replace it (or --resume to keep it if identical)",
                    target.display()
                )));
            }
            return Ok(None);
        }
        // A symlink is replaced, never written through.
        Some(m) if m.file_type().is_symlink() && opts.overwrite => return Ok(None),
        Some(_) => {
            return Err(TransferError::Exists(format!(
                "{} exists and is not a regular file",
                target.display()
            )))
        }
    }
    if !opts.resume {
        return Ok(None);
    }
    let partial = entry.path.partial_under(out);
    match fs::symlink_metadata(&partial) {
        Ok(m) if m.is_file() && m.len() > 0 && m.len() <= entry.meta.size => {
            Ok(Some(hash_have(&partial, m.len(), false)?))
        }
        _ => Ok(None),
    }
}

/// Hashes the first `len` bytes of `path` for a `Have`.
fn hash_have(path: &Path, len: u64, complete: bool) -> Result<Have, TransferError> {
    let mut hasher = blake3::Hasher::new();
    let full = hash_prefix(path, len, &mut hasher)
        .map_err(|e| TransferError::local("reading", path, e))?;
    if !full {
        return Err(TransferError::local(
            "reading",
            path,
            io::Error::new(
                io::ErrorKind::UnexpectedEof,
                "the file shrank while being checked",
            ),
        ));
    }
    Ok(Have {
        len,
        hash: *hasher.finalize().as_bytes(),
        complete,
    })
}

/// Receives the contents of one file, from `offset`.
fn receive_file<R: Read>(
    frames: &mut FrameReader<R>,
    out: &Path,
    entry: &Entry,
    offset: u64,
    opts: &RecvOptions,
    observer: &mut dyn Observer,
    report: &mut RecvReport,
) -> Result<(), TransferError> {
    let size = entry.meta.size;
    let target = entry.path.under(out);
    let partial = entry.path.partial_under(out);
    // An empty complete file resumes at 0: check "continue" before "restart".
    match (offset, entry.have) {
        (o, Some(h)) if o == h.len && (!h.complete || o == size) => {}
        (0, Some(h)) if h.complete && !opts.overwrite => {
            return Err(TransferError::Exists(format!(
                "{} exists and differs from the sender's file; use --overwrite to replace it",
                target.display()
            )))
        }
        (0, _) => {}
        (o, _) => {
            return Err(TransferError::Protocol(format!(
                "the sender continues {} at byte {o}, which we never offered",
                entry.path
            )))
        }
    }

    let mut hasher = blake3::Hasher::new();
    if let Some(h) = entry.have.filter(|h| h.complete && offset == size) {
        // Complete and identical: only the final hash to compare.
        return match frames.next_frame()? {
            Frame::FileEnd { hash } if hash == h.hash => {
                report.files_unchanged += 1;
                report.bytes_resumed += size;
                Ok(())
            }
            Frame::FileEnd { .. } => Err(TransferError::Verify(format!(
                "{}: the sender's hash does not match the file we have",
                target.display()
            ))),
            other => Err(unexpected("an unchanged file", &other)),
        };
    }

    let mut file = if offset == 0 {
        match fs::remove_file(&partial) {
            Ok(()) => {}
            Err(e) if e.kind() == io::ErrorKind::NotFound => {}
            Err(e) => return Err(TransferError::local("removing", &partial, e)),
        }
        create_new(&partial).map_err(|e| TransferError::local("creating", &partial, e))?
    } else {
        let mut file =
            open_partial(&partial).map_err(|e| TransferError::local("opening", &partial, e))?;
        // Hash the prefix again: it must still be what we offered.
        let copied = io::copy(&mut (&mut file).take(offset), &mut HashSink(&mut hasher))
            .map_err(|e| TransferError::local("reading", &partial, e))?;
        if copied != offset || entry.have.map(|h| h.hash) != Some(*hasher.finalize().as_bytes()) {
            return Err(TransferError::Verify(format!(
                "{} changed during the transfer",
                partial.display()
            )));
        }
        file.set_len(offset)
            .map_err(|e| TransferError::local("truncating", &partial, e))?;
        file.seek(io::SeekFrom::Start(offset))
            .map_err(|e| TransferError::local("seeking", &partial, e))?;
        report.bytes_resumed += offset;
        file
    };

    let expected = size - offset;
    let mut written = 0u64;
    loop {
        match frames.next_frame()? {
            Frame::Data(d) => {
                if d.len() as u64 > expected - written {
                    return Err(TransferError::Protocol(format!(
                        "the sender sent more than the {size} bytes of {}",
                        entry.path
                    )));
                }
                file.write_all(d)
                    .map_err(|e| TransferError::local("writing", &partial, e))?;
                hasher.update(d);
                written += d.len() as u64;
                observer.on_bytes(d.len() as u64);
            }
            Frame::FileEnd { hash } => {
                if written != expected {
                    return Err(TransferError::Protocol(format!(
                        "{} ended after {} of {size} bytes",
                        entry.path,
                        offset + written
                    )));
                }
                if *hasher.finalize().as_bytes() != hash {
                    drop(file);
                    // Known bad: a resume must not build on it.
                    let _ = fs::remove_file(&partial);
                    return Err(TransferError::Verify(format!(
                        "{}: the received data does not match the sender's BLAKE3 hash (the partial copy \
                         was deleted; run the transfer again)",
                        entry.path
                    )));
                }
                finish_file(&file, &entry.meta, opts.fsync)
                    .map_err(|e| TransferError::local("finishing", &partial, e))?;
                drop(file);
                place(&partial, &target, opts.overwrite, opts.fsync)?;
                report.bytes_written += written;
                return Ok(());
            }
            Frame::Error { class, message } => {
                return Err(TransferError::Peer {
                    from: "sender",
                    class,
                    message: message.to_owned(),
                })
            }
            other => return Err(unexpected("a file's contents", &other)),
        }
    }
}

/// Creates a new temporary file readable by us only, never following a
/// symlink (`create_new` is `O_EXCL`).
fn create_new(path: &Path) -> io::Result<File> {
    let mut o = OpenOptions::new();
    o.read(true).write(true).create_new(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut o, 0o600);
    o.open(path)
}

/// Opens an existing partial file for reading and appending; refuses
/// symlinks and anything but a regular file.
fn open_partial(path: &Path) -> io::Result<File> {
    let mut o = OpenOptions::new();
    o.read(true).write(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::custom_flags(&mut o, libc::O_NOFOLLOW);
    let file = o.open(path)?;
    if !file.metadata()?.is_file() {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            "not a regular file",
        ));
    }
    Ok(file)
}

/// Durability, mode and time of a finished file, before its rename.
fn finish_file(file: &File, meta: &EntryMeta, fsync: bool) -> io::Result<()> {
    if let Some(t) = system_time(meta.mtime_secs, meta.mtime_nanos) {
        file.set_modified(t)?;
    }
    set_mode(file, meta.mode)?;
    if fsync {
        file.sync_all()?;
    }
    Ok(())
}

/// Time, then mode, of a directory.
fn finish_dir(dir: &Path, meta: &EntryMeta, fsync: bool) -> io::Result<()> {
    #[cfg(unix)]
    {
        let handle = File::open(dir)?;
        if let Some(t) = system_time(meta.mtime_secs, meta.mtime_nanos) {
            handle.set_modified(t)?;
        }
        if fsync {
            handle.sync_all()?;
        }
        set_mode(&handle, meta.mode)?;
    }
    #[cfg(not(unix))]
    let _ = (dir, meta, fsync);
    Ok(())
}

/// Permission bits only: set-id and sticky bits from a peer are dropped.
fn set_mode(file: &File, mode: u32) -> io::Result<()> {
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        file.set_permissions(fs::Permissions::from_mode(mode & 0o777))
    }
    #[cfg(not(unix))]
    {
        let mut p = file.metadata()?.permissions();
        p.set_readonly(mode & 0o200 == 0);
        file.set_permissions(p)
    }
}

fn sync_dir(dir: &Path) -> io::Result<()> {
    #[cfg(unix)]
    File::open(dir)?.sync_all()?;
    #[cfg(not(unix))]
    let _ = dir;
    Ok(())
}

/// Moves a verified temporary file into place. Without `overwrite` this is
/// a hard link plus unlink, which fails rather than replace a file that
/// appeared meanwhile.
fn place(partial: &Path, target: &Path, overwrite: bool, fsync: bool) -> Result<(), TransferError> {
    let exists = || {
        TransferError::Exists(format!(
            "{} appeared during the transfer; not replacing it (use --overwrite); the data is in {}",
            target.display(),
            partial.display()
        ))
    };
    if !overwrite {
        match fs::hard_link(partial, target) {
            Ok(()) => {
                fs::remove_file(partial)
                    .map_err(|e| TransferError::local("removing", partial, e))?;
                if fsync {
                    if let Some(parent) = target.parent() {
                        let _ = sync_dir(parent);
                    }
                }
                return Ok(());
            }
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists => return Err(exists()),
            // No hard links on this file system: check, then rename.
            Err(_) => {
                if fs::symlink_metadata(target).is_ok() {
                    return Err(exists());
                }
            }
        }
    }
    fs::rename(partial, target).map_err(|e| TransferError::local("renaming into", target, e))?;
    if fsync {
        if let Some(parent) = target.parent() {
            // Best effort: the rename is durable once the directory is.
            let _ = sync_dir(parent);
        }
    }
    Ok(())
}

/// Lets `io::copy` feed a hasher.
struct HashSink<'a>(&'a mut blake3::Hasher);

impl Write for HashSink<'_> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.0.update(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}
