//! The receiving side: validates the sender's list against the name rules
//! and limits, refuses conflicts before any data moves (all of them, in
//! one message), reports what it already has (`--resume`), and writes each
//! file to a temporary sibling that is hashed, fsynced and renamed into
//! place only when its BLAKE3 matches.
//!
//! Safety rules (issue 10): nothing that existed before the transfer is
//! changed unless `--overwrite` allows it (an existing directory is merged
//! into only with `--resume` or `--overwrite`, and keeps its mode and time
//! unless `--overwrite`); every file operation goes through directory
//! handles without following symlinks (`outdir`); modes are masked by the
//! umask; directories are created only when the first file needs them and
//! the empty ones this run created are removed when it fails.

use std::collections::HashMap;
use std::fs::File;
use std::io::{self, Read, Seek, Write};
use std::path::PathBuf;

use super::list::FileList;
use super::names::{printable, Limits};
use super::outdir::{self, Dir, Found};
use super::send::{system_time, unexpected};
use super::wire::{self, EntryKind, EntryMeta, Frame, FrameReader, ReadAppend, HASH_LEN};
use super::{Observer, TransferError};

/// How a receiver treats its output directory.
#[derive(Clone, Debug)]
pub struct RecvOptions {
    /// Everything received goes below this directory (created if missing).
    pub out: PathBuf,
    /// Replace existing files, merge into existing directories and give
    /// them the sender's mode and time.
    pub overwrite: bool,
    /// Report partial files (and complete files of the right size) already
    /// present so the sender can continue them; merge into existing
    /// directories without changing their mode or time.
    pub resume: bool,
    /// Accept top-level names starting with a dot (`.ssh`, `.bashrc`):
    /// refused by default, as a receiver run from `$HOME` would otherwise
    /// let a sender plant configuration files.
    pub allow_hidden: bool,
    /// Bounds on the sender's list.
    pub limits: Limits,
    /// `fsync` each file before its rename, and the directories at the end.
    /// On by default; tests may turn it off for speed.
    pub fsync: bool,
    /// Permission bits a received file or directory may have: by default
    /// `0o777` less the umask, as `tar` and `cp` do; set-id and sticky bits
    /// are always dropped.
    pub mode_bits: u32,
}

impl RecvOptions {
    /// Defaults for `out`: no overwrite, no resume, no top-level hidden
    /// names, default limits, fsync, modes masked by the umask.
    pub fn new(out: impl Into<PathBuf>) -> Self {
        RecvOptions {
            out: out.into(),
            overwrite: false,
            resume: false,
            allow_hidden: false,
            limits: Limits::default(),
            fsync: true,
            mode_bits: outdir::umask_allowed_bits(),
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
    /// The BLAKE3 of a partial file's `len` bytes; unused for complete
    /// files, whose hash is computed only when the sender's arrives.
    hash: [u8; HASH_LEN],
    complete: bool,
}

/// The state of a directory of the list on our side.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum DirState {
    /// Not there yet: created when a file needs it (or at the end).
    Absent,
    /// Created by this run: gets the sender's mode and time at the end,
    /// removed (if empty) when the transfer fails.
    Created,
    /// Was there before: merged into (with `--resume` or `--overwrite`).
    Existing,
}

/// Most conflicts named in the refusal message (all are counted).
const CONFLICTS_SHOWN: usize = 5;

/// Receives one transfer into `opts.out`: `reader` and `writer` are the two
/// directions of one connection. On failure an `Error` frame with the
/// reason goes to the sender (unless the connection itself failed); it
/// names files relative to the transfer, never local absolute paths.
/// Partially received files stay as `.NAME.udt-partial` for `--resume`;
/// empty directories this run created are removed.
///
/// # Errors
/// `Refused` for a list that breaks a rule (absolute paths, `..`, limits,
/// duplicates, top-level hidden names); `Exists` for conflicts without
/// `--overwrite`; `Verify` for a hash mismatch; `Local` for file-system
/// errors (disk full: [`TransferError::is_disk_full`], also when the list
/// needs more space than is free); `Network`, `Protocol`, `WrongPeer`,
/// `Peer` and `Interrupted` for the connection, the sender and the user.
pub fn receive<R, W>(
    reader: R,
    writer: &mut W,
    opts: &RecvOptions,
    observer: &mut dyn Observer,
) -> Result<RecvReport, TransferError>
where
    R: ReadAppend,
    W: Write + ?Sized,
{
    let mut frames = FrameReader::new(reader);
    let result = receive_inner(&mut frames, writer, opts, observer);
    if let Err(e) = &result {
        match e {
            TransferError::Network(_) | TransferError::Peer { .. } => {}
            TransferError::WrongPeer(_) => {
                let _ = writer.write_all(wire::REPLY_TO_BENCH);
            }
            TransferError::Interrupted => {
                let _ = wire::write_frame(
                    writer,
                    &Frame::Error {
                        class: super::exit::INTERRUPTED,
                        message: "the receiver was interrupted",
                    },
                );
            }
            e => {
                let message = e.to_string();
                let _ = wire::write_frame(
                    writer,
                    &Frame::Error {
                        class: e.exit_code(),
                        message: &message,
                    },
                );
            }
        }
        let _ = writer.flush();
    }
    result
}

fn receive_inner<R: ReadAppend, W: Write + ?Sized>(
    frames: &mut FrameReader<R>,
    writer: &mut W,
    opts: &RecvOptions,
    observer: &mut dyn Observer,
) -> Result<RecvReport, TransferError> {
    let root = Dir::open_root(&opts.out, true)
        .map_err(|e| TransferError::local("opening", "the output directory", e))?;
    let list = FileList::read(frames, &opts.limits, observer)?;
    if !opts.allow_hidden {
        refuse_hidden(&list)?;
    }
    // A sender run with --resume asks for what --resume does here: every
    // byte kept is hash-verified and nothing that exists is replaced. Only
    // adding to an existing directory needs more (see `Tree::check`).
    let granted;
    let merge_needs_evidence = list.resume_asked && !opts.resume && !opts.overwrite;
    let opts = if list.resume_asked && !opts.resume {
        granted = RecvOptions {
            resume: true,
            ..opts.clone()
        };
        &granted
    } else {
        opts
    };
    observer.on_list(list.files, list.dirs, list.total_bytes)?;
    let mut report = RecvReport {
        files: list.files,
        dirs: list.dirs,
        total_bytes: list.total_bytes,
        ..RecvReport::default()
    };
    let mut tree = Tree::check(root, &list, opts, merge_needs_evidence)?;
    tree.check_space(&list)?;

    let mut plan = Vec::new();
    for (&index, h) in &tree.haves {
        wire::encode(
            &Frame::Have {
                index,
                len: h.len,
                hash: if h.complete { [0; HASH_LEN] } else { h.hash },
                complete: h.complete,
            },
            &mut plan,
        );
    }
    wire::encode(&Frame::PlanEnd, &mut plan);
    writer
        .write_all(&plan)
        .map_err(|e| TransferError::network(&e))?;
    writer.flush().map_err(|e| TransferError::network(&e))?;
    observer.on_plan(report.files, report.total_bytes, 0);

    let result = tree.receive_files(frames, &list, opts, observer, &mut report);
    let result = result.and_then(|()| tree.finish_dirs(&list, opts));
    if result.is_err() {
        tree.remove_created_dirs(&list);
    }
    result?;
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

/// Refuses top-level names that start with a dot.
fn refuse_hidden(list: &FileList) -> Result<(), TransferError> {
    for i in 0..list.len() {
        if list.parent(i).is_none() && list.name(i).first() == Some(&b'.') {
            return Err(TransferError::Refused(format!(
                "{}: a hidden name at the top level (the receiver accepts those only with --allow-hidden)",
                list.show(i)
            )));
        }
    }
    Ok(())
}

/// The output directory and what this transfer found and did in it.
struct Tree {
    root: Dir,
    /// Per entry: the state of a directory (unused for files).
    dirs: Vec<DirState>,
    /// Directories this run created, in creation order.
    created: Vec<u32>,
    /// What `--resume` found, by entry index.
    haves: HashMap<u32, Have>,
    /// Entries that replace an existing file or symlink (`--overwrite`).
    replaces: Vec<bool>,
    /// The last directory handle used, by entry index (`None`: the root).
    cached: Option<(Option<usize>, Dir)>,
    /// Complete files here (`--resume`) that turned out to differ from
    /// the sender's: counted, the first few named, all reported at the end
    /// rather than the transfer stopping at the first.
    differing: (usize, Vec<String>),
}

impl Tree {
    /// Looks at what exists at every entry's place, before anything is
    /// written; collects every conflict.
    ///
    /// `merge_needs_evidence`: the resume was the sender's request, not
    /// the receiver's option. Then an existing directory is added to, and
    /// an existing complete file compared, only when the top-level entry it
    /// belongs to holds a partial file of this list: a sign that an earlier
    /// udt transfer of it was cut off there. Otherwise a sender could add
    /// files to any directory that happens to exist (`bin/`, say), which
    /// issue 10 forbids without the receiver's consent, or test guesses of
    /// the contents of files it names.
    fn check(
        root: Dir,
        list: &FileList,
        opts: &RecvOptions,
        merge_needs_evidence: bool,
    ) -> Result<Tree, TransferError> {
        let mut tree = Tree {
            root,
            dirs: vec![DirState::Absent; list.len()],
            created: Vec::new(),
            haves: HashMap::new(),
            replaces: vec![false; list.len()],
            cached: None,
            differing: (0, Vec::new()),
        };
        let mut conflicts = Vec::new();
        let mut count = 0usize;
        for i in 0..list.len() {
            match tree.check_one(list, i, opts) {
                Ok(()) => {}
                Err(TransferError::Exists(m)) => {
                    count += 1;
                    if conflicts.len() < CONFLICTS_SHOWN {
                        conflicts.push(m);
                    }
                }
                Err(e) => return Err(e),
            }
        }
        if merge_needs_evidence {
            let top = |mut i: usize| {
                while let Some(p) = list.parent(i) {
                    i = p;
                }
                i
            };
            let resumable: std::collections::HashSet<usize> = tree
                .haves
                .iter()
                .filter(|(_, h)| !h.complete)
                .map(|(&i, _)| top(i as usize))
                .collect();
            // Complete files likewise: offering one would let any sender
            // test a guess of its contents ("identical" or "differs").
            let mut unproven: Vec<usize> = tree
                .haves
                .iter()
                .filter(|(&i, h)| h.complete && !resumable.contains(&top(i as usize)))
                .map(|(&i, _)| i as usize)
                .collect();
            unproven.sort_unstable();
            for i in unproven {
                tree.haves.remove(&(i as u32));
                count += 1;
                if conflicts.len() < CONFLICTS_SHOWN {
                    conflicts.push(format!(
                        "{} already exists; use --overwrite to replace it",
                        list.show(i)
                    ));
                }
            }
            for i in 0..list.len() {
                if tree.dirs[i] == DirState::Existing && !resumable.contains(&top(i)) {
                    count += 1;
                    if conflicts.len() < CONFLICTS_SHOWN {
                        conflicts.push(format!(
                            "the directory {} already exists and holds no partial file of this transfer; \
                             the receiver must run with --resume to add to it (or --overwrite)",
                            list.show(i)
                        ));
                    }
                }
            }
        }
        match count {
            0 => Ok(tree),
            1 => Err(TransferError::Exists(conflicts.remove(0))),
            n => {
                let more = n - conflicts.len();
                let mut m = format!("{n} conflicts: {}", conflicts.join("; "));
                if more > 0 {
                    m.push_str(&format!("; and {more} more"));
                }
                Err(TransferError::Exists(m))
            }
        }
    }

    fn check_one(
        &mut self,
        list: &FileList,
        i: usize,
        opts: &RecvOptions,
    ) -> Result<(), TransferError> {
        let parent = list.parent(i);
        if parent.is_some_and(|p| self.dirs[p] == DirState::Absent) {
            // Inside a directory that does not exist yet: nothing is there.
            return Ok(());
        }
        let name = list.base_name(i);
        let dir = self.dir_handle(list, parent)?;
        let found = dir
            .find(name)
            .map_err(|e| TransferError::local("checking", list.show(i), e))?;
        let meta = list.meta(i);
        if meta.kind == EntryKind::Dir {
            return match found {
                Found::Missing => Ok(()),
                Found::Dir if opts.resume || opts.overwrite => {
                    self.dirs[i] = DirState::Existing;
                    Ok(())
                }
                Found::Dir => Err(TransferError::Exists(format!(
                    "the directory {} already exists; use --resume to add to it (or --overwrite)",
                    list.show(i)
                ))),
                _ => Err(TransferError::Exists(format!(
                    "{} exists and is not a directory",
                    list.show(i)
                ))),
            };
        }
        match found {
            Found::Missing => {}
            Found::File(len) if opts.resume && !opts.overwrite && len == meta.size => {
                // Compared with the sender's hash when it arrives: its own
                // hash never leaves this machine.
                self.haves.insert(
                    i as u32,
                    Have {
                        len,
                        hash: [0; HASH_LEN],
                        complete: true,
                    },
                );
                return Ok(());
            }
            Found::File(_) | Found::Symlink if opts.overwrite => {
                self.replaces[i] = true;
            }
            Found::File(_) => {
                return Err(TransferError::Exists(format!(
                    "{} already exists{}; use --overwrite to replace it",
                    list.show(i),
                    if opts.resume { " and differs" } else { "" }
                )))
            }
            _ => {
                return Err(TransferError::Exists(format!(
                    "{} exists and is not a regular file",
                    list.show(i)
                )))
            }
        }
        if !opts.resume {
            return Ok(());
        }
        let partial = outdir::partial_name(name);
        let dir = self.dir_handle(list, parent)?;
        if let Found::File(len) = dir
            .find(&partial)
            .map_err(|e| TransferError::local("checking", list.show(i), e))?
        {
            if len > 0 && len <= meta.size {
                let file = dir.open_file(&partial, false).map_err(|e| {
                    TransferError::local("opening the partial copy of", list.show(i), e)
                })?;
                let hash = hash_prefix(file, len).map_err(|e| {
                    TransferError::local("reading the partial copy of", list.show(i), e)
                })?;
                self.haves.insert(
                    i as u32,
                    Have {
                        len,
                        hash,
                        complete: false,
                    },
                );
            }
        }
        Ok(())
    }

    /// Refuses a list that needs more space than the file system has.
    fn check_space(&self, list: &FileList) -> Result<(), TransferError> {
        let have: u64 = self.haves.values().map(|h| h.len).sum();
        let needed = list.total_bytes.saturating_sub(have);
        let Ok(free) = self.root.available_bytes() else {
            return Ok(());
        };
        if needed > free {
            return Err(TransferError::local(
                "checking the space for",
                format_args!("{} bytes of files ({free} bytes free)", needed),
                io::Error::from_raw_os_error(libc::ENOSPC),
            ));
        }
        Ok(())
    }

    /// A handle to directory entry `dir` (`None`: the root), which must
    /// exist; the last one is kept for the next call.
    fn dir_handle(&mut self, list: &FileList, dir: Option<usize>) -> Result<&Dir, TransferError> {
        let Some(d) = dir else {
            return Ok(&self.root);
        };
        if !matches!(&self.cached, Some((Some(c), _)) if *c == d) {
            let handle = self.root.walk(list.name(d)).map_err(|e| {
                TransferError::local(
                    "opening the directory",
                    format_args!("{} (was it replaced during the transfer?)", list.show(d)),
                    e,
                )
            })?;
            self.cached = Some((Some(d), handle));
        }
        match &self.cached {
            Some((_, handle)) => Ok(handle),
            None => Ok(&self.root),
        }
    }

    /// Creates directory entry `d` and any of its parents that are not
    /// there yet.
    fn ensure_dir(&mut self, list: &FileList, d: usize) -> Result<(), TransferError> {
        if self.dirs[d] != DirState::Absent {
            return Ok(());
        }
        // Parents first; the depth is bounded by Limits::max_depth.
        let mut chain = vec![d];
        let mut up = list.parent(d);
        while let Some(p) = up {
            if self.dirs[p] != DirState::Absent {
                break;
            }
            chain.push(p);
            up = list.parent(p);
        }
        for &c in chain.iter().rev() {
            let parent = self.dir_handle(list, list.parent(c))?;
            match parent.make_dir(list.base_name(c)) {
                Ok(()) => {}
                Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {
                    return Err(TransferError::Exists(format!(
                        "{} appeared during the transfer; not writing into it",
                        list.show(c)
                    )))
                }
                Err(e) => return Err(TransferError::local("creating", list.show(c), e)),
            }
            self.dirs[c] = DirState::Created;
            self.created.push(c as u32);
        }
        Ok(())
    }

    /// Receives every file the sender sends, in list order, until `Done`.
    fn receive_files<R: ReadAppend>(
        &mut self,
        frames: &mut FrameReader<R>,
        list: &FileList,
        opts: &RecvOptions,
        observer: &mut dyn Observer,
        report: &mut RecvReport,
    ) -> Result<(), TransferError> {
        let mut files = (0..list.len())
            .filter(|&i| list.meta(i).kind == EntryKind::File)
            .peekable();
        loop {
            match frames.next_frame()? {
                Frame::FileStart { index, offset } => {
                    if files.next() != Some(index as usize) {
                        return Err(TransferError::Protocol(format!(
                            "the sender started file #{index} out of order"
                        )));
                    }
                    let i = index as usize;
                    let rel = list.rel(i);
                    observer.on_file(&rel, list.meta(i).size, offset);
                    if self.receive_file(frames, list, i, offset, opts, observer, report)? {
                        observer.on_file_done(&rel);
                    }
                }
                Frame::Done => {
                    if let Some(&missing) = files.peek() {
                        return Err(TransferError::Protocol(format!(
                            "the sender finished without sending {}",
                            list.show(missing)
                        )));
                    }
                    return match &self.differing {
                        (0, _) => Ok(()),
                        (1, shown) => Err(TransferError::Exists(format!(
                            "{} exists and differs from the sender's file; use --overwrite to replace it",
                            shown.join("")
                        ))),
                        (n, shown) => {
                            let more = n - shown.len();
                            Err(TransferError::Exists(format!(
                                "{n} files exist and differ from the sender's: {}{}; use --overwrite to \
                                 replace them",
                                shown.join(", "),
                                if more > 0 {
                                    format!(" and {more} more")
                                } else {
                                    String::new()
                                }
                            )))
                        }
                    };
                }
                Frame::Error { class, message } => {
                    return Err(TransferError::peer("sender", class, message))
                }
                other => return Err(unexpected("the transfer", &other)),
            }
        }
    }

    /// Receives the contents of file `i`, from `offset`. False for a
    /// complete file here that differs from the sender's: left alone and
    /// counted in `differing`.
    #[allow(clippy::too_many_arguments)]
    fn receive_file<R: ReadAppend>(
        &mut self,
        frames: &mut FrameReader<R>,
        list: &FileList,
        i: usize,
        offset: u64,
        opts: &RecvOptions,
        observer: &mut dyn Observer,
        report: &mut RecvReport,
    ) -> Result<bool, TransferError> {
        let meta = *list.meta(i);
        let size = meta.size;
        let have = self.haves.get(&(i as u32)).copied();
        // An empty complete file resumes at 0: check "continue" first.
        match (offset, have) {
            (o, Some(h)) if o == h.len && (!h.complete || o == size) => {}
            (0, Some(h)) if h.complete => {
                return Err(TransferError::Exists(format!(
                    "{} exists and differs from the sender's file; use --overwrite to replace it",
                    list.show(i)
                )))
            }
            (0, _) => {}
            (o, _) => {
                return Err(TransferError::Protocol(format!(
                    "the sender continues {} at byte {o}, which we never offered",
                    list.show(i)
                )))
            }
        }
        if let Some(parent) = list.parent(i) {
            self.ensure_dir(list, parent)?;
        }
        let replace = self.replaces[i];
        let name = list.base_name(i).to_vec();
        let partial = outdir::partial_name(&name);
        let shown = list.show(i);
        let shown_partial = match list.parent(i) {
            Some(p) => format!("{}/{}", list.show(p), printable(&partial)),
            None => printable(&partial),
        };
        let dir = self.dir_handle(list, list.parent(i))?;

        if let Some(h) = have.filter(|h| h.complete && offset == size) {
            // Complete, of the right size: compare hashes only.
            let hash = match frames.next_frame()? {
                Frame::FileEnd { hash } => hash,
                other => return Err(unexpected("an unchanged file", &other)),
            };
            let file = dir
                .open_file(&name, false)
                .map_err(|e| TransferError::local("opening", &shown, e))?;
            let ours =
                hash_prefix(file, h.len).map_err(|e| TransferError::local("reading", &shown, e))?;
            if ours != hash {
                self.differing.0 += 1;
                if self.differing.1.len() < CONFLICTS_SHOWN {
                    self.differing.1.push(shown);
                }
                return Ok(false);
            }
            report.files_unchanged += 1;
            report.bytes_resumed += size;
            return Ok(true);
        }

        let mut hasher = blake3::Hasher::new();
        let mut file = if offset == 0 {
            match dir.remove_file(&partial) {
                Ok(()) => {}
                Err(e) if e.kind() == io::ErrorKind::NotFound => {}
                Err(e) => return Err(TransferError::local("removing", &shown_partial, e)),
            }
            dir.create_new(&partial)
                .map_err(|e| TransferError::local("creating", &shown_partial, e))?
        } else {
            let mut file = dir
                .open_file(&partial, true)
                .map_err(|e| TransferError::local("opening", &shown_partial, e))?;
            // Hash the prefix again: it must still be what we offered.
            let copied = io::copy(&mut (&mut file).take(offset), &mut HashSink(&mut hasher))
                .map_err(|e| TransferError::local("reading", &shown_partial, e))?;
            if copied != offset || have.map(|h| h.hash) != Some(*hasher.finalize().as_bytes()) {
                return Err(TransferError::Verify(format!(
                    "the partial copy of {shown} changed during the transfer"
                )));
            }
            file.set_len(offset)
                .map_err(|e| TransferError::local("truncating", &shown_partial, e))?;
            file.seek(io::SeekFrom::Start(offset))
                .map_err(|e| TransferError::local("seeking", &shown_partial, e))?;
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
                            "the sender sent more than the {size} bytes of {shown}"
                        )));
                    }
                    file.write_all(d)
                        .map_err(|e| TransferError::local("writing", &shown_partial, e))?;
                    hasher.update(d);
                    written += d.len() as u64;
                    observer.on_bytes(d.len() as u64);
                }
                Frame::FileEnd { hash } => {
                    if written != expected {
                        return Err(TransferError::Protocol(format!(
                            "{shown} ended after {} of {size} bytes",
                            offset + written
                        )));
                    }
                    // The handle may have been cached by dir_handle since.
                    let dir = self.dir_handle(list, list.parent(i))?;
                    if *hasher.finalize().as_bytes() != hash {
                        drop(file);
                        // Known bad: a resume must not build on it.
                        let _ = dir.remove_file(&partial);
                        return Err(TransferError::Verify(format!(
                            "{shown}: the received data does not match the sender's BLAKE3 hash (the partial \
                             copy was deleted; run the transfer again)"
                        )));
                    }
                    finish_file(&file, &meta, opts)
                        .map_err(|e| TransferError::local("finishing", &shown_partial, e))?;
                    drop(file);
                    place(dir, &partial, &name, replace, &shown)?;
                    if opts.fsync {
                        // Best effort: the rename is durable once the
                        // directory is.
                        let _ = dir.as_file().and_then(|d| d.sync_all());
                    }
                    report.bytes_written += written;
                    return Ok(true);
                }
                Frame::Error { class, message } => {
                    return Err(TransferError::peer("sender", class, message))
                }
                other => return Err(unexpected("a file's contents", &other)),
            }
        }
    }

    /// Creates the directories no file needed, then gives the directories
    /// this run created (and, with `--overwrite`, the existing ones) their
    /// time and mode, deepest first: writing files changed their times.
    fn finish_dirs(&mut self, list: &FileList, opts: &RecvOptions) -> Result<(), TransferError> {
        for i in 0..list.len() {
            if list.meta(i).kind == EntryKind::Dir {
                self.ensure_dir(list, i)?;
            }
        }
        // The cached handle must not outlive the renames of this phase.
        self.cached = None;
        for i in (0..list.len()).rev() {
            let apply = match self.dirs[i] {
                DirState::Created => true,
                DirState::Existing => opts.overwrite,
                DirState::Absent => false,
            };
            if list.meta(i).kind != EntryKind::Dir || !apply {
                continue;
            }
            let dir = self
                .root
                .walk(list.name(i))
                .and_then(|d| d.as_file())
                .map_err(|e| {
                    TransferError::local(
                        "opening the directory",
                        format_args!("{} (was it replaced during the transfer?)", list.show(i)),
                        e,
                    )
                })?;
            finish_dir(&dir, list.meta(i), opts).map_err(|e| {
                TransferError::local("setting the time and mode of", list.show(i), e)
            })?;
        }
        if opts.fsync {
            self.root
                .as_file()
                .and_then(|d| d.sync_all())
                .map_err(|e| TransferError::local("syncing", "the output directory", e))?;
        }
        Ok(())
    }

    /// After a failure: removes the directories this run created that are
    /// still empty (those holding partial files stay for `--resume`).
    fn remove_created_dirs(&mut self, list: &FileList) {
        self.cached = None;
        for &d in self.created.iter().rev() {
            let d = d as usize;
            let removed = match list.parent(d) {
                None => self.root.remove_dir(list.base_name(d)),
                Some(p) => self
                    .root
                    .walk(list.name(p))
                    .and_then(|h| h.remove_dir(list.base_name(d))),
            };
            if let Err(e) = removed {
                log::debug!("keeping {}: {e}", list.show(d));
            }
        }
    }
}

/// BLAKE3 of the first `len` bytes of `file`.
fn hash_prefix(file: File, len: u64) -> io::Result<[u8; HASH_LEN]> {
    let mut hasher = blake3::Hasher::new();
    let copied = io::copy(&mut file.take(len), &mut HashSink(&mut hasher))?;
    if copied != len {
        return Err(io::Error::new(
            io::ErrorKind::UnexpectedEof,
            "the file shrank while being checked",
        ));
    }
    Ok(*hasher.finalize().as_bytes())
}

/// Durability, mode and time of a finished file, before its rename.
fn finish_file(file: &File, meta: &EntryMeta, opts: &RecvOptions) -> io::Result<()> {
    if let Some(t) = system_time(meta.mtime_secs, meta.mtime_nanos) {
        file.set_modified(t)?;
    }
    set_mode(file, meta.mode & opts.mode_bits)?;
    if opts.fsync {
        file.sync_all()?;
    }
    Ok(())
}

/// Time, then durability, then mode of a directory (a read-only mode last,
/// as it could forbid the rest).
fn finish_dir(dir: &File, meta: &EntryMeta, opts: &RecvOptions) -> io::Result<()> {
    if let Some(t) = system_time(meta.mtime_secs, meta.mtime_nanos) {
        dir.set_modified(t)?;
    }
    if opts.fsync {
        dir.sync_all()?;
    }
    set_mode(dir, meta.mode & opts.mode_bits)
}

/// Permission bits only: set-id and sticky bits from a peer are dropped.
fn set_mode(file: &File, mode: u32) -> io::Result<()> {
    use std::os::unix::fs::PermissionsExt;
    file.set_permissions(std::fs::Permissions::from_mode(mode & 0o777))
}

/// Moves a verified temporary file into place. Unless it replaces (with
/// `--overwrite`), this is a hard link plus unlink, which fails rather than
/// replace a file that appeared meanwhile.
fn place(
    dir: &Dir,
    partial: &[u8],
    name: &[u8],
    replace: bool,
    shown: &str,
) -> Result<(), TransferError> {
    let exists = || {
        TransferError::Exists(format!(
            "{shown} appeared during the transfer; not replacing it (use --overwrite); the data is in its \
             .udt-partial file"
        ))
    };
    if !replace {
        match dir.link(partial, name) {
            Ok(()) => {
                return dir
                    .remove_file(partial)
                    .map_err(|e| TransferError::local("removing the temporary copy of", shown, e));
            }
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists => return Err(exists()),
            // No hard links on this file system: check, then rename.
            Err(_) => {
                if dir.find(name).map_or(true, |f| f != Found::Missing) {
                    return Err(exists());
                }
            }
        }
    }
    dir.rename(partial, name)
        .map_err(|e| TransferError::local("renaming into place", shown, e))
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
