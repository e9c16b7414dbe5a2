//! The file-transfer application protocol of `udt send` / `udt recv`, over
//! any reliable byte stream (a UDT stream in the program, in-memory pipes and
//! TCP in tests).
//!
//! One conversation moves one set of files and directories:
//!
//! ```text
//! sender                                   receiver
//! Hello {version, entries, total_bytes} →
//! Entry {kind, mode, mtime, size, path} →  (× entries; parents first)
//! ListEnd                               →  validates every name and limit,
//!                                          checks for conflicts, creates dirs
//!                                       ←  Have {index, len, hash, complete}
//!                                          (× files it already has, --resume)
//!                                       ←  PlanEnd
//! FileStart {index, offset}             →  offset = 0, or a Have's len that
//! Data × n                              →  the sender verified by hashing
//! FileEnd {blake3 of the whole file}    →  its own prefix; the receiver
//! … every file in list order …             checks the hash, fsyncs, renames
//! Done                                  →
//!                                       ←  Result {files, bytes}
//! ```
//! Either side may send `Error {class, message}` instead and stop. Framing
//! is in [`wire`], name rules in [`names`].

pub mod glob;
mod list;
pub mod names;
#[cfg(unix)]
mod outdir;
#[cfg(unix)]
mod recv;
mod send;
pub mod wire;

use std::fmt;
use std::io;

pub use names::{Limits, NameError, RelPath};
#[cfg(unix)]
pub use recv::{receive, RecvOptions, RecvReport};
pub use send::{scan, scan_filtered, send_files, send_files_resuming, LocalEntry, SendReport};
pub use wire::ReadAppend;

/// Exit codes of the `udt` program; also the `class` of an `Error` frame so
/// both ends of a failed transfer exit with the same meaning.
pub mod exit {
    /// Success.
    pub const OK: u8 = 0;
    /// Any failure not listed below.
    pub const FAILURE: u8 = 1;
    /// Bad command line or arguments (also clap's code).
    pub const USAGE: u8 = 2;
    /// The connection could not be made, or broke (refused, timed out,
    /// peer vanished).
    pub const NETWORK: u8 = 3;
    /// Data did not match its BLAKE3 hash.
    pub const VERIFY: u8 = 4;
    /// The peer broke the protocol or sent something refused (hostile
    /// names, limits).
    pub const PROTOCOL: u8 = 5;
    /// A local file-system error: disk full, permission denied, ...
    pub const LOCAL_IO: u8 = 6;
    /// A file exists and `--overwrite` was not given.
    pub const EXISTS: u8 = 7;
    /// Interrupted by the user (Ctrl-C, SIGINT; 128 + 2 as shells report
    /// it). As the class of an `Error` frame it tells the other side why
    /// the transfer stopped; that side exits with [`NETWORK`].
    pub const INTERRUPTED: u8 = 130;
}

/// Why a transfer failed. Every variant's message is one line meant for the
/// user.
#[derive(Debug)]
pub enum TransferError {
    /// The connection failed or the peer vanished.
    Network(String),
    /// The peer sent something malformed or out of order.
    Protocol(String),
    /// The receiver refused the file list (hostile or over a limit).
    Refused(String),
    /// A file already exists where one would be written.
    Exists(String),
    /// A file's contents did not match the sender's BLAKE3 hash.
    Verify(String),
    /// A local file-system error; `disk_full` for ENOSPC, EFBIG, EDQUOT.
    Local {
        /// What we were doing, with the path.
        what: String,
        /// The OS error.
        source: io::Error,
    },
    /// Bad local arguments (missing path, two roots with one name).
    Usage(String),
    /// The user interrupted the transfer (Ctrl-C).
    Interrupted,
    /// The peer speaks another of our protocols (a bench client).
    WrongPeer(String),
    /// The receiver is busy with another transfer.
    Busy(String),
    /// Secure mode: the peer did not prove it knows the code or key (it
    /// presented a wrong one).
    WrongCode(String),
    /// The peer reported this failure (its class and message).
    Peer {
        /// Who reported it: "sender" or "receiver".
        from: &'static str,
        /// The peer's exit code class.
        class: u8,
        /// The peer's message, control characters escaped.
        message: String,
    },
}

impl TransferError {
    /// The exit code this failure maps to (see [`exit`]).
    pub fn exit_code(&self) -> u8 {
        match self {
            TransferError::Network(_) | TransferError::Busy(_) | TransferError::WrongCode(_) => {
                exit::NETWORK
            }
            TransferError::Protocol(_)
            | TransferError::Refused(_)
            | TransferError::WrongPeer(_) => exit::PROTOCOL,
            TransferError::Exists(_) => exit::EXISTS,
            TransferError::Verify(_) => exit::VERIFY,
            TransferError::Local { .. } => exit::LOCAL_IO,
            TransferError::Usage(_) => exit::USAGE,
            TransferError::Interrupted => exit::INTERRUPTED,
            TransferError::Peer { class, .. } => match *class {
                exit::OK => exit::FAILURE,
                // The peer was interrupted; for us the connection ended.
                exit::INTERRUPTED => exit::NETWORK,
                c => c,
            },
        }
    }

    /// True for a disk that is full (or a file-size or quota limit).
    pub fn is_disk_full(&self) -> bool {
        matches!(self, TransferError::Local { source, .. } if is_disk_full(source))
    }

    /// A local error while doing `what` on `path`. Errors may travel to
    /// the peer in an `Error` frame: `path` names a file relative to what
    /// is sent or received, never an absolute local path.
    pub(crate) fn local(what: &str, path: impl fmt::Display, source: io::Error) -> TransferError {
        TransferError::Local {
            what: format!("{what} {path}"),
            source,
        }
    }

    /// A failure the peer reported in an `Error` frame; its text is
    /// escaped so it cannot drive our terminal.
    pub(crate) fn peer(from: &'static str, class: u8, message: &str) -> TransferError {
        TransferError::Peer {
            from,
            class,
            message: names::printable(message.as_bytes()),
        }
    }

    /// A stream error: the connection failed (or the user interrupted a
    /// wait on it, see [`interrupted_error`]).
    pub(crate) fn network(e: &io::Error) -> TransferError {
        if is_interruption(e) {
            return TransferError::Interrupted;
        }
        if is_wrong_code(e) {
            return TransferError::WrongCode(format!(
                "{WRONG_CODE}; nothing was transferred, and a code is good for one try: start \
                 again and check the code"
            ));
        }
        TransferError::Network(match e.kind() {
            io::ErrorKind::UnexpectedEof => {
                "the peer closed the connection in the middle of the transfer (interrupted, killed or \
                 failed)"
                    .into()
            }
            _ if is_peer_silent(e) => {
                "the peer stopped answering (killed, crashed, or cut off from the network)".into()
            }
            _ => format!("connection failed: {e}"),
        })
    }
}

impl fmt::Display for TransferError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            TransferError::Network(m)
            | TransferError::Protocol(m)
            | TransferError::Exists(m)
            | TransferError::Verify(m)
            | TransferError::WrongPeer(m)
            | TransferError::Busy(m)
            | TransferError::WrongCode(m)
            | TransferError::Usage(m) => f.write_str(m),
            TransferError::Refused(m) => write!(f, "refused the file list: {m}"),
            TransferError::Local { what, source } if is_disk_full(source) => write!(
                f,
                "disk full (or file size limit) while {what}: {source}; free some space and run again \
                 with --resume to continue"
            ),
            TransferError::Local { what, source } => write!(f, "{what}: {source}"),
            TransferError::Interrupted => f.write_str("interrupted"),
            TransferError::Peer {
                class: exit::INTERRUPTED,
                from,
                ..
            } => write!(f, "the {from} was interrupted (Ctrl-C) and stopped the transfer"),
            TransferError::Peer { from, message, .. } => write!(f, "the {from} reported: {message}"),
        }
    }
}

impl std::error::Error for TransferError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            TransferError::Local { source, .. } => Some(source),
            _ => None,
        }
    }
}

impl From<wire::WireError> for TransferError {
    fn from(e: wire::WireError) -> Self {
        match e {
            wire::WireError::Io(e) => TransferError::network(&e),
            wire::WireError::Malformed(m) => {
                TransferError::Protocol(format!("malformed frame from the peer: {m}"))
            }
            wire::WireError::WrongPeer(m) => TransferError::WrongPeer(m),
        }
    }
}

/// True for a UDT connection that ended because the peer went silent for
/// the peer-idle time (the library's typed reason inside the error).
/// How the message of [`TransferError::WrongCode`] starts.
pub const WRONG_CODE: &str = "wrong code: the other side's code (or key) is not this one";

/// The secure connection ended because the peer's key agreement failed
/// against ours (udt-core's `ConnectionError::AuthFailed`).
fn is_wrong_code(e: &io::Error) -> bool {
    e.get_ref()
        .and_then(|inner| inner.downcast_ref::<udt_core::ConnectionError>())
        .is_some_and(|why| *why == udt_core::ConnectionError::AuthFailed)
}

fn is_peer_silent(e: &io::Error) -> bool {
    e.get_ref()
        .and_then(|inner| inner.downcast_ref::<udt_core::ConnectionError>())
        .is_some_and(|why| *why == udt_core::ConnectionError::TimedOut)
}

/// The marker inside [`interrupted_error`].
#[derive(Debug)]
struct InterruptedByUser;

impl fmt::Display for InterruptedByUser {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("interrupted by the user")
    }
}

impl std::error::Error for InterruptedByUser {}

/// The error a stream wrapper returns when the user interrupts a blocked
/// read or write. Not `ErrorKind::Interrupted`: `read_exact` and
/// `write_all` retry that kind.
pub fn interrupted_error() -> io::Error {
    io::Error::other(InterruptedByUser)
}

/// True for an error made by [`interrupted_error`].
pub fn is_interruption(e: &io::Error) -> bool {
    e.get_ref()
        .is_some_and(|inner| inner.is::<InterruptedByUser>())
}

/// True for the errors a full disk (or a quota, or `RLIMIT_FSIZE`) gives.
pub fn is_disk_full(e: &io::Error) -> bool {
    // io::ErrorKind::StorageFull and FileTooLarge are newer than our MSRV.
    #[cfg(unix)]
    if let Some(code) = e.raw_os_error() {
        return code == libc::ENOSPC || code == libc::EFBIG || code == libc::EDQUOT;
    }
    let _ = e;
    false
}

/// Watches a transfer (progress bars, logs). Every method has a no-op
/// default.
pub trait Observer {
    /// A sender greeted (the receiver's first sign of a real transfer).
    /// An error refuses it, for example because the receiver is busy.
    fn on_hello(&mut self) -> Result<(), TransferError> {
        Ok(())
    }
    /// The receiver checked the list: `files` files and `dirs`
    /// directories, `bytes` in all. An error declines the transfer (the
    /// user said no).
    fn on_list(&mut self, files: u64, dirs: u64, bytes: u64) -> Result<(), TransferError> {
        let _ = (files, dirs, bytes);
        Ok(())
    }
    /// The plan is settled: `files` files of `bytes` bytes in total, of
    /// which `already` are on the receiver and verified.
    fn on_plan(&mut self, files: u64, bytes: u64, already: u64) {
        let _ = (files, bytes, already);
    }
    /// File `name` of `size` bytes starts at `offset`.
    fn on_file(&mut self, name: &RelPath, size: u64, offset: u64) {
        let _ = (name, size, offset);
    }
    /// `n` more bytes of contents went through.
    fn on_bytes(&mut self, n: u64) {
        let _ = n;
    }
    /// Something the user should know that is not an error (a skipped
    /// symlink, a partial file that did not match and is sent again).
    fn on_note(&mut self, message: &str) {
        let _ = message;
    }
    /// The scan left `path` out (a symlink inside a directory, a special
    /// file); by default a note.
    fn on_skipped(&mut self, path: &str, why: &str) {
        self.on_note(&format!("skipping {path}: {why}"));
    }
    /// File `name` is complete (verified, in place, or kept unchanged).
    fn on_file_done(&mut self, name: &RelPath) {
        let _ = name;
    }
    /// True when the user asked to stop (Ctrl-C): checked between frames,
    /// where an `Error` frame can still go out cleanly.
    fn should_stop(&mut self) -> bool {
        false
    }
}

/// An observer that ignores everything.
#[derive(Debug, Default, Clone, Copy)]
pub struct Quiet;

impl Observer for Quiet {}

#[cfg(test)]
mod tests;
