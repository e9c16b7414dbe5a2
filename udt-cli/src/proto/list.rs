//! The receiver's copy of the sender's file list, kept compact because a
//! hostile sender may send a million entries: every name lives in one
//! buffer (at most [`Limits::max_list_bytes`]), each entry is a fixed
//! 48-byte record, and the duplicate and parent checks sort an index of
//! `u32`s instead of keeping a second copy of the names in a hash map.
//!
//! Bound: `list bytes + 48 × entries` for the list, plus `4 × entries`
//! while it is checked.

use super::names::{self, printable, Limits, RelPath};
use super::send::unexpected;
use super::wire::{self, EntryKind, EntryMeta, Frame, FrameReader, ReadAppend};
use super::{Observer, TransferError};

/// No parent: a top-level entry.
const TOP: u32 = u32::MAX;

/// One entry of the list.
#[derive(Clone, Copy, Debug)]
struct Record {
    /// Where its name starts in [`FileList::names`].
    start: u32,
    /// The length of its name (at most `MAX_PATH_BYTES`).
    len: u16,
    /// The index of its parent directory, or [`TOP`].
    parent: u32,
    meta: EntryMeta,
}

/// A validated file list: every name passed [`names::validate`], appears
/// once, and has its parent directory listed before it.
#[derive(Debug, Default)]
pub(crate) struct FileList {
    names: Vec<u8>,
    records: Vec<Record>,
    /// Files in the list.
    pub(crate) files: u64,
    /// Directories in the list.
    pub(crate) dirs: u64,
    /// Sum of the file sizes.
    pub(crate) total_bytes: u64,
    /// The sender asked to resume (`udt send --resume`).
    pub(crate) resume_asked: bool,
}

impl FileList {
    /// Entries in the list.
    pub(crate) fn len(&self) -> usize {
        self.records.len()
    }

    /// The wire name of entry `i` (`/`-separated).
    pub(crate) fn name(&self, i: usize) -> &[u8] {
        let r = &self.records[i];
        &self.names[r.start as usize..r.start as usize + r.len as usize]
    }

    /// The last component of entry `i`'s name.
    pub(crate) fn base_name(&self, i: usize) -> &[u8] {
        let name = self.name(i);
        match name.iter().rposition(|&b| b == b'/') {
            Some(slash) => &name[slash + 1..],
            None => name,
        }
    }

    /// The name of entry `i` as a [`RelPath`].
    pub(crate) fn rel(&self, i: usize) -> RelPath {
        RelPath::from_validated(self.name(i))
    }

    /// Entry `i`'s name for messages (control characters escaped).
    pub(crate) fn show(&self, i: usize) -> String {
        printable(self.name(i))
    }

    /// Kind, mode, time and size of entry `i`.
    pub(crate) fn meta(&self, i: usize) -> &EntryMeta {
        &self.records[i].meta
    }

    /// The index of entry `i`'s parent directory (`None` at the top).
    pub(crate) fn parent(&self, i: usize) -> Option<usize> {
        match self.records[i].parent {
            TOP => None,
            p => Some(p as usize),
        }
    }

    /// Reads `Hello`, the entries and `ListEnd`, and checks them.
    ///
    /// # Errors
    /// `Refused` for a list that breaks a rule or a limit; `Peer` when the
    /// sender sends an error instead; `Protocol`/`Network` for the stream.
    pub(crate) fn read<R: ReadAppend>(
        frames: &mut FrameReader<R>,
        limits: &Limits,
        observer: &mut dyn Observer,
    ) -> Result<FileList, TransferError> {
        let (announced, announced_bytes) = read_hello(frames)?;
        observer.on_hello()?;
        if announced > limits.max_entries {
            return Err(TransferError::Refused(format!(
                "{announced} entries announced, the limit is {}",
                limits.max_entries
            )));
        }
        let mut list = FileList {
            // Announced, so bounded by max_entries; capped so a lie costs
            // little before the entries arrive.
            records: Vec::with_capacity(announced.min(1 << 16) as usize),
            ..FileList::default()
        };
        loop {
            match frames.next_frame()? {
                Frame::ResumeAsked if list.records.is_empty() && !list.resume_asked => {
                    list.resume_asked = true;
                }
                Frame::Entry { meta, path } => {
                    if list.records.len() as u64 >= announced {
                        return Err(TransferError::Refused("more entries than announced".into()));
                    }
                    list.push(meta, path, limits)?;
                }
                Frame::ListEnd => break,
                Frame::Error { class, message } => {
                    return Err(TransferError::peer("sender", class, message))
                }
                other => return Err(unexpected("the file list", &other)),
            }
        }
        if list.records.len() as u64 != announced || list.total_bytes != announced_bytes {
            return Err(TransferError::Refused(format!(
                "the list has {} entries and {} bytes, {announced} and {announced_bytes} were announced",
                list.records.len(),
                list.total_bytes
            )));
        }
        list.link_parents()?;
        Ok(list)
    }

    /// Validates and stores one entry (parents are linked at the end).
    fn push(&mut self, meta: EntryMeta, path: &[u8], limits: &Limits) -> Result<(), TransferError> {
        if (self.names.len() + path.len()) as u64 > limits.max_list_bytes {
            return Err(TransferError::Refused(format!(
                "the names add up to more than {} bytes",
                limits.max_list_bytes
            )));
        }
        names::validate(path, limits)
            .map_err(|e| TransferError::Refused(format!("{e}: {:?}", printable(path))))?;
        match meta.kind {
            EntryKind::File => {
                self.files += 1;
                self.total_bytes = self
                    .total_bytes
                    .checked_add(meta.size)
                    .ok_or_else(|| TransferError::Refused("the sizes overflow".into()))?;
            }
            EntryKind::Dir => {
                if meta.size != 0 {
                    return Err(TransferError::Refused(format!(
                        "{}: a directory with a size",
                        printable(path)
                    )));
                }
                self.dirs += 1;
            }
        }
        // Both fit: max_list_bytes is checked above and is far below 4 GiB
        // in any sane configuration; a path is at most MAX_PATH_BYTES.
        let start = u32::try_from(self.names.len())
            .map_err(|_| TransferError::Refused("the names are too long in total".into()))?;
        let len = u16::try_from(path.len())
            .map_err(|_| TransferError::Refused("a name is too long".into()))?;
        self.names.extend_from_slice(path);
        self.records.push(Record {
            start,
            len,
            parent: TOP,
            meta,
        });
        Ok(())
    }

    /// Refuses duplicates and entries whose parent directory is not listed
    /// before them, and records each entry's parent.
    fn link_parents(&mut self) -> Result<(), TransferError> {
        let mut order: Vec<u32> = (0..self.records.len() as u32).collect();
        order.sort_unstable_by(|&a, &b| self.name(a as usize).cmp(self.name(b as usize)));
        for pair in order.windows(2) {
            if self.name(pair[0] as usize) == self.name(pair[1] as usize) {
                return Err(TransferError::Refused(format!(
                    "{} appears twice in the list",
                    self.show(pair[0] as usize)
                )));
            }
        }
        for i in 0..self.records.len() {
            let name = self.name(i);
            let Some(slash) = name.iter().rposition(|&b| b == b'/') else {
                continue;
            };
            let parent_name = &name[..slash];
            let found = order
                .binary_search_by(|&j| self.name(j as usize).cmp(parent_name))
                .ok()
                .map(|k| order[k] as usize);
            match found {
                Some(p) if p < i && self.records[p].meta.kind == EntryKind::Dir => {
                    self.records[i].parent = p as u32;
                }
                _ => {
                    return Err(TransferError::Refused(format!(
                        "{}: its parent directory is not in the list before it",
                        self.show(i)
                    )))
                }
            }
        }
        Ok(())
    }
}

/// Reads the greeting: the number of entries and bytes announced.
fn read_hello<R: ReadAppend>(frames: &mut FrameReader<R>) -> Result<(u64, u64), TransferError> {
    match frames.next_frame()? {
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
            Ok((entries, total_bytes))
        }
        Frame::Error { class, message } => Err(TransferError::peer("sender", class, message)),
        other => Err(unexpected("the greeting", &other)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn meta(kind: EntryKind) -> EntryMeta {
        EntryMeta {
            kind,
            mode: 0o644,
            mtime_secs: 0,
            mtime_nanos: 0,
            size: 0,
        }
    }

    fn list_of(entries: &[(EntryKind, &str)]) -> Result<FileList, TransferError> {
        let mut bytes = Vec::new();
        wire::encode(
            &Frame::Hello {
                version: wire::VERSION,
                entries: entries.len() as u64,
                total_bytes: 0,
            },
            &mut bytes,
        );
        for (kind, name) in entries {
            wire::encode(
                &Frame::Entry {
                    meta: meta(*kind),
                    path: name.as_bytes(),
                },
                &mut bytes,
            );
        }
        wire::encode(&Frame::ListEnd, &mut bytes);
        FileList::read(
            &mut FrameReader::new(&bytes[..]),
            &Limits::default(),
            &mut super::super::Quiet,
        )
    }

    #[test]
    fn parents_are_linked() {
        use EntryKind::*;
        let l = list_of(&[(Dir, "a"), (Dir, "a/b"), (File, "a/b/c"), (File, "z")]).unwrap();
        assert_eq!(l.len(), 4);
        assert_eq!(l.parent(0), None);
        assert_eq!(l.parent(1), Some(0));
        assert_eq!(l.parent(2), Some(1));
        assert_eq!(l.parent(3), None);
        assert_eq!(l.base_name(2), b"c");
        assert_eq!(l.name(2), b"a/b/c");
        assert_eq!((l.files, l.dirs), (2, 2));
    }

    #[test]
    fn duplicates_and_orphans_are_refused() {
        use EntryKind::*;
        for bad in [
            &[(Dir, "a"), (File, "a")][..],
            &[(File, "a/b"), (Dir, "a")][..],
            &[(File, "a"), (File, "a/b")][..],
            &[(Dir, "a"), (File, "a/b/c")][..],
        ] {
            assert!(
                matches!(list_of(bad), Err(TransferError::Refused(_))),
                "{bad:?}"
            );
        }
    }
}
