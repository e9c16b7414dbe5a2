//! The receiver's file operations, all relative to directory handles
//! (`openat` and friends): a path from the sender is never resolved from a
//! string, no component is followed if it is a symbolic link (`O_NOFOLLOW`
//! on every step), and a file is opened once and then used through its
//! handle, so nothing can be swapped between a check and its use. A local
//! user who replaces a directory with a symlink in the middle of a transfer
//! makes the next step fail; it never redirects a write.

use std::fs::File;
use std::io;
use std::os::fd::OwnedFd;
use std::path::Path;

use rustix::fs::{self as rfs, AtFlags, FileType, Mode, OFlags};

use super::names::PARTIAL_SUFFIX;

/// A directory held open by handle.
#[derive(Debug)]
pub(crate) struct Dir(OwnedFd);

/// What a name in a directory is, without following a symlink.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Found {
    /// Nothing by that name.
    Missing,
    /// A regular file of this length.
    File(u64),
    /// A directory.
    Dir,
    /// A symbolic link.
    Symlink,
    /// A device, socket or FIFO.
    Special,
}

/// Flags of every directory step: no symlink, directories only.
fn dir_flags() -> OFlags {
    OFlags::RDONLY | OFlags::DIRECTORY | OFlags::NOFOLLOW | OFlags::CLOEXEC
}

impl Dir {
    /// Opens (creating it and its parents if missing) the output directory
    /// the user named. The user's own path may contain symlinks: only what
    /// the sender names is held to `O_NOFOLLOW`.
    ///
    /// # Errors
    /// `NotADirectory` when `path` is something else; the OS errors of
    /// creating or opening it.
    pub(crate) fn open_root(path: &Path, create: bool) -> io::Result<Dir> {
        if create {
            match std::fs::create_dir_all(path) {
                Ok(()) => {}
                // create_dir_all reports "exists" for a file in the way.
                Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {}
                Err(e) => return Err(e),
            }
        }
        let fd = rfs::open(
            path,
            OFlags::RDONLY | OFlags::DIRECTORY | OFlags::CLOEXEC,
            Mode::empty(),
        )?;
        Ok(Dir(fd))
    }

    /// Opens the subdirectory `name` (one component), refusing a symlink.
    pub(crate) fn open_dir(&self, name: &[u8]) -> io::Result<Dir> {
        Ok(Dir(rfs::openat(&self.0, name, dir_flags(), Mode::empty())?))
    }

    /// Opens the directory at the `/`-separated relative `path`, one
    /// component at a time.
    pub(crate) fn walk(&self, path: &[u8]) -> io::Result<Dir> {
        let mut parts = path.split(|&b| b == b'/');
        let first = parts.next().unwrap_or_default();
        let mut dir = self.open_dir(first)?;
        for part in parts {
            dir = dir.open_dir(part)?;
        }
        Ok(dir)
    }

    /// Creates the subdirectory `name`, private (0700) until its final
    /// mode is set at the end of the transfer.
    pub(crate) fn make_dir(&self, name: &[u8]) -> io::Result<()> {
        Ok(rfs::mkdirat(&self.0, name, Mode::from_raw_mode(0o700))?)
    }

    /// What `name` is (not following a symlink).
    pub(crate) fn find(&self, name: &[u8]) -> io::Result<Found> {
        let st = match rfs::statat(&self.0, name, AtFlags::SYMLINK_NOFOLLOW) {
            Ok(st) => st,
            Err(rustix::io::Errno::NOENT) => return Ok(Found::Missing),
            Err(e) => return Err(e.into()),
        };
        Ok(match FileType::from_raw_mode(st.st_mode) {
            FileType::RegularFile => Found::File(u64::try_from(st.st_size).unwrap_or(0)),
            FileType::Directory => Found::Dir,
            FileType::Symlink => Found::Symlink,
            _ => Found::Special,
        })
    }

    /// Creates the new file `name` for reading and writing, readable by us
    /// only; fails if anything by that name exists (`O_EXCL`, which never
    /// follows a symlink).
    pub(crate) fn create_new(&self, name: &[u8]) -> io::Result<File> {
        let fd = rfs::openat(
            &self.0,
            name,
            OFlags::RDWR | OFlags::CREATE | OFlags::EXCL | OFlags::NOFOLLOW | OFlags::CLOEXEC,
            Mode::from_raw_mode(0o600),
        )?;
        Ok(File::from(fd))
    }

    /// Opens the existing regular file `name` (read-write when `write`).
    /// A symlink, and anything but a regular file, is refused; opening does
    /// not block on a FIFO.
    pub(crate) fn open_file(&self, name: &[u8], write: bool) -> io::Result<File> {
        let access = if write { OFlags::RDWR } else { OFlags::RDONLY };
        let fd = rfs::openat(
            &self.0,
            name,
            access | OFlags::NOFOLLOW | OFlags::NONBLOCK | OFlags::CLOEXEC,
            Mode::empty(),
        )?;
        let st = rfs::fstat(&fd)?;
        if FileType::from_raw_mode(st.st_mode) != FileType::RegularFile {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                "not a regular file",
            ));
        }
        // Back to blocking I/O for the file itself.
        rfs::fcntl_setfl(&fd, rfs::fcntl_getfl(&fd)? - OFlags::NONBLOCK)?;
        Ok(File::from(fd))
    }

    /// Removes the file `name` (never a directory).
    pub(crate) fn remove_file(&self, name: &[u8]) -> io::Result<()> {
        Ok(rfs::unlinkat(&self.0, name, AtFlags::empty())?)
    }

    /// Removes the empty directory `name`.
    pub(crate) fn remove_dir(&self, name: &[u8]) -> io::Result<()> {
        Ok(rfs::unlinkat(&self.0, name, AtFlags::REMOVEDIR)?)
    }

    /// Gives the file `from` the additional name `to`; fails with
    /// `AlreadyExists` rather than replace anything.
    pub(crate) fn link(&self, from: &[u8], to: &[u8]) -> io::Result<()> {
        Ok(rfs::linkat(&self.0, from, &self.0, to, AtFlags::empty())?)
    }

    /// Renames `from` to `to` within this directory, replacing `to`.
    pub(crate) fn rename(&self, from: &[u8], to: &[u8]) -> io::Result<()> {
        Ok(rfs::renameat(&self.0, from, &self.0, to)?)
    }

    /// Another handle to this directory as a `File`, for its times, mode
    /// and fsync.
    pub(crate) fn as_file(&self) -> io::Result<File> {
        Ok(File::from(self.0.try_clone()?))
    }

    /// Bytes an unprivileged user may still write on this file system.
    pub(crate) fn available_bytes(&self) -> io::Result<u64> {
        let st = rfs::fstatvfs(&self.0)?;
        Ok(st.f_bavail.saturating_mul(st.f_frsize))
    }
}

/// The name of a file's temporary sibling: `.NAME.udt-partial`.
pub(crate) fn partial_name(base: &[u8]) -> Vec<u8> {
    let mut name = Vec::with_capacity(base.len() + 1 + PARTIAL_SUFFIX.len());
    name.push(b'.');
    name.extend_from_slice(base);
    name.extend_from_slice(PARTIAL_SUFFIX.as_bytes());
    name
}

/// The permission bits the process's umask allows (`0o777 & !umask`),
/// read without changing the umask (which would race with other threads).
pub(crate) fn umask_allowed_bits() -> u32 {
    let umask = std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find_map(|l| l.strip_prefix("Umask:"))
                .and_then(|v| u32::from_str_radix(v.trim(), 8).ok())
        })
        .unwrap_or(0o022);
    0o777 & !umask
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nothing_follows_a_symlink() {
        let base = std::env::temp_dir().join(format!("udt-outdir-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&base);
        std::fs::create_dir_all(base.join("out/real")).unwrap();
        std::fs::create_dir_all(base.join("outside")).unwrap();
        std::os::unix::fs::symlink(base.join("outside"), base.join("out/link")).unwrap();
        std::os::unix::fs::symlink(base.join("outside/f"), base.join("out/flink")).unwrap();
        let root = Dir::open_root(&base.join("out"), false).unwrap();
        assert_eq!(root.find(b"link").unwrap(), Found::Symlink);
        assert_eq!(root.find(b"real").unwrap(), Found::Dir);
        assert_eq!(root.find(b"nothing").unwrap(), Found::Missing);
        assert!(root.open_dir(b"link").is_err());
        assert!(root.walk(b"link").is_err());
        assert!(root.create_new(b"flink").is_err());
        assert!(root.open_file(b"flink", true).is_err());
        root.walk(b"real").unwrap().make_dir(b"sub").unwrap();
        root.walk(b"real/sub").unwrap();
        assert_eq!(std::fs::read_dir(base.join("outside")).unwrap().count(), 0);
        let _ = std::fs::remove_dir_all(&base);
    }

    #[test]
    fn partial_names() {
        assert_eq!(partial_name(b"f.txt"), b".f.txt.udt-partial");
        let bits = umask_allowed_bits();
        assert_eq!(bits & !0o777, 0);
    }
}
