//! Relative paths as they travel in the file list, and the rules that keep
//! a hostile sender inside the receiver's output directory: no absolute
//! paths, no `.`/`..`, no empty components, no NUL, bounded lengths and
//! depth, and nothing that collides with our own temporary files.

use std::fmt;
use std::path::{Path, PathBuf};

use super::wire::MAX_PATH_BYTES;

/// Suffix of the temporary file a receiver writes before the rename; names
/// ending with it are refused so a sender cannot aim at another file's
/// partial.
pub const PARTIAL_SUFFIX: &str = ".udt-partial";

/// Bounds on what a receiver accepts from a sender.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Limits {
    /// Most entries (files plus directories) in one transfer.
    pub max_entries: u64,
    /// Most bytes of one path component (Linux `NAME_MAX` is 255).
    pub max_component_bytes: usize,
    /// Most bytes of one whole relative path (at most [`MAX_PATH_BYTES`]).
    pub max_path_bytes: usize,
    /// Most components of one path.
    pub max_depth: usize,
    /// Most bytes of all paths together (bounds the list's memory).
    pub max_list_bytes: u64,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_entries: 1_000_000,
            max_component_bytes: 255,
            max_path_bytes: MAX_PATH_BYTES,
            max_depth: 128,
            max_list_bytes: 64 << 20,
        }
    }
}

/// Why a path from the list was refused.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum NameError {
    /// The path is empty.
    Empty,
    /// The path starts with `/` (absolute) — or, on Windows, has a drive or
    /// a backslash.
    Absolute,
    /// A component is empty (`a//b`, trailing `/`).
    EmptyComponent,
    /// A component is `.` or `..`.
    DotComponent,
    /// The path contains a NUL byte.
    Nul,
    /// A component is longer than the limit.
    ComponentTooLong,
    /// The whole path is longer than the limit.
    TooLong,
    /// The path has more components than the limit.
    TooDeep,
    /// A component of the name ends with [`PARTIAL_SUFFIX`].
    ReservedSuffix,
    /// The name is not valid UTF-8 and this system only has Unicode names.
    NotUnicode,
}

impl fmt::Display for NameError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            NameError::Empty => "empty path",
            NameError::Absolute => "absolute path",
            NameError::EmptyComponent => "empty path component",
            NameError::DotComponent => "`.` or `..` component",
            NameError::Nul => "NUL byte in the name",
            NameError::ComponentTooLong => "a name component is too long",
            NameError::TooLong => "the path is too long",
            NameError::TooDeep => "the path is too deep",
            NameError::ReservedSuffix => "the name ends with the reserved suffix .udt-partial",
            NameError::NotUnicode => "the name is not valid UTF-8",
        })
    }
}

impl std::error::Error for NameError {}

/// A validated relative path: `/`-separated components, each a plain name.
/// Joining it under a directory can only name something inside it.
#[derive(Clone, PartialEq, Eq, Hash)]
pub struct RelPath(Vec<u8>);

impl RelPath {
    /// Validates a path received from a peer.
    ///
    /// # Errors
    /// The first rule the path breaks (see [`NameError`]).
    pub fn parse(bytes: &[u8], limits: &Limits) -> Result<RelPath, NameError> {
        validate(bytes, limits)?;
        Ok(RelPath(bytes.to_vec()))
    }

    /// Wraps bytes that [`validate`] accepted (the receiver keeps its list
    /// in one buffer and makes a `RelPath` only for the file at hand).
    pub(crate) fn from_validated(bytes: &[u8]) -> RelPath {
        RelPath(bytes.to_vec())
    }

    /// Builds the wire form of a local relative path made of `components`
    /// (the sender's side), validated by the same rules.
    ///
    /// # Errors
    /// As [`parse`](Self::parse); `NotUnicode` on systems without byte names.
    pub fn from_components<'a, I>(components: I, limits: &Limits) -> Result<RelPath, NameError>
    where
        I: IntoIterator<Item = &'a std::ffi::OsStr>,
    {
        let mut bytes = Vec::new();
        for (i, c) in components.into_iter().enumerate() {
            if i > 0 {
                bytes.push(b'/');
            }
            let c = os_bytes(c).ok_or(NameError::NotUnicode)?;
            if c.contains(&b'/') {
                return Err(NameError::EmptyComponent);
            }
            bytes.extend_from_slice(&c);
        }
        RelPath::parse(&bytes, limits)
    }

    /// The wire bytes.
    pub fn as_bytes(&self) -> &[u8] {
        &self.0
    }

    /// The parent path, or `None` for a top-level name.
    pub fn parent(&self) -> Option<&[u8]> {
        let slash = self.0.iter().rposition(|&b| b == b'/')?;
        Some(&self.0[..slash])
    }

    /// The path of this entry under `root`.
    pub fn under(&self, root: &Path) -> PathBuf {
        let mut p = root.to_path_buf();
        for c in self.0.split(|&b| b == b'/') {
            p.push(os_str(c));
        }
        p
    }

    /// The path of this entry's temporary file under `root`: the same
    /// directory, name `.NAME.udt-partial`.
    pub fn partial_under(&self, root: &Path) -> PathBuf {
        let full = self.under(root);
        let mut name = std::ffi::OsString::from(".");
        name.push(full.file_name().unwrap_or_default());
        name.push(PARTIAL_SUFFIX);
        full.with_file_name(name)
    }
}

/// Checks a path received from a peer against the rules (see
/// [`NameError`]) without copying it.
///
/// # Errors
/// The first rule the path breaks.
pub fn validate(bytes: &[u8], limits: &Limits) -> Result<(), NameError> {
    if bytes.is_empty() {
        return Err(NameError::Empty);
    }
    if bytes[0] == b'/' {
        return Err(NameError::Absolute);
    }
    if bytes.len() > limits.max_path_bytes.min(MAX_PATH_BYTES) {
        return Err(NameError::TooLong);
    }
    if bytes.contains(&0) {
        return Err(NameError::Nul);
    }
    if cfg!(windows) && (bytes.contains(&b'\\') || bytes.contains(&b':')) {
        return Err(NameError::Absolute);
    }
    let mut depth = 0;
    for component in bytes.split(|&b| b == b'/') {
        depth += 1;
        if depth > limits.max_depth {
            return Err(NameError::TooDeep);
        }
        match component {
            b"" => return Err(NameError::EmptyComponent),
            b"." | b".." => return Err(NameError::DotComponent),
            c if c.len() > limits.max_component_bytes => return Err(NameError::ComponentTooLong),
            // Any component: a directory `.f.udt-partial` would take the
            // temporary name of the file `f` beside it.
            c if c.ends_with(PARTIAL_SUFFIX.as_bytes()) => return Err(NameError::ReservedSuffix),
            _ => {}
        }
    }
    if !cfg!(unix) && std::str::from_utf8(bytes).is_err() {
        return Err(NameError::NotUnicode);
    }
    Ok(())
}

impl fmt::Display for RelPath {
    /// Lossy UTF-8 with control characters escaped, so a hostile name cannot
    /// drive the terminal.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&printable(&self.0))
    }
}

impl fmt::Debug for RelPath {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "RelPath({:?})", String::from_utf8_lossy(&self.0))
    }
}

/// `bytes` as lossy UTF-8 with control characters escaped and the length
/// capped, for messages that show a peer's names.
pub fn printable(bytes: &[u8]) -> String {
    let text = String::from_utf8_lossy(&bytes[..bytes.len().min(MAX_PATH_BYTES)]);
    let mut out = String::with_capacity(text.len());
    for ch in text.chars() {
        if ch.is_control() {
            out.extend(ch.escape_default());
        } else {
            out.push(ch);
        }
    }
    out
}

#[cfg(unix)]
fn os_bytes(s: &std::ffi::OsStr) -> Option<std::borrow::Cow<'_, [u8]>> {
    use std::os::unix::ffi::OsStrExt;
    Some(std::borrow::Cow::Borrowed(s.as_bytes()))
}

#[cfg(not(unix))]
fn os_bytes(s: &std::ffi::OsStr) -> Option<std::borrow::Cow<'_, [u8]>> {
    s.to_str().map(|s| std::borrow::Cow::Borrowed(s.as_bytes()))
}

#[cfg(unix)]
fn os_str(b: &[u8]) -> &std::ffi::OsStr {
    use std::os::unix::ffi::OsStrExt;
    std::ffi::OsStr::from_bytes(b)
}

#[cfg(not(unix))]
fn os_str(b: &[u8]) -> std::ffi::OsString {
    // NOTE: parse() refused non-UTF-8 names on these systems.
    String::from_utf8_lossy(b).into_owned().into()
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::Component;
    use udt_core::rng::Rng;

    fn ok(s: &str) -> RelPath {
        RelPath::parse(s.as_bytes(), &Limits::default()).unwrap()
    }
    fn err(s: &[u8]) -> NameError {
        RelPath::parse(s, &Limits::default()).unwrap_err()
    }

    #[test]
    fn plain_names_pass() {
        ok("a");
        ok("dir/sub/file.txt");
        ok("with space/ünïcödé ✓.bin");
        ok("...");
        ok(".hidden");
        ok("a..b");
        assert_eq!(ok("a/b/c").parent(), Some(&b"a/b"[..]));
        assert_eq!(ok("a").parent(), None);
    }

    #[test]
    fn hostile_names_are_refused() {
        assert_eq!(err(b""), NameError::Empty);
        assert_eq!(err(b"/etc/passwd"), NameError::Absolute);
        assert_eq!(err(b"../x"), NameError::DotComponent);
        assert_eq!(err(b"a/../../x"), NameError::DotComponent);
        assert_eq!(err(b"a/.."), NameError::DotComponent);
        assert_eq!(err(b"./a"), NameError::DotComponent);
        assert_eq!(err(b"a//b"), NameError::EmptyComponent);
        assert_eq!(err(b"a/"), NameError::EmptyComponent);
        assert_eq!(err(b"a\0b"), NameError::Nul);
        assert_eq!(err(&[b'x'; 256]), NameError::ComponentTooLong);
        assert_eq!(err(&[b'x'; MAX_PATH_BYTES + 1]), NameError::TooLong);
        let deep = "a/".repeat(200) + "a";
        assert_eq!(err(deep.as_bytes()), NameError::TooDeep);
        assert_eq!(err(b"x.udt-partial"), NameError::ReservedSuffix);
    }

    #[test]
    fn partial_name_is_a_sibling() {
        let root = Path::new("/out");
        assert_eq!(ok("d/f.txt").under(root), Path::new("/out/d/f.txt"));
        assert_eq!(
            ok("d/f.txt").partial_under(root),
            Path::new("/out/d/.f.txt.udt-partial")
        );
    }

    #[test]
    fn display_escapes_control_characters() {
        let p = ok("evil\x1b[2Jname\n");
        let shown = p.to_string();
        assert!(!shown.chars().any(char::is_control), "{shown:?}");
    }

    /// Whatever random bytes pass validation, the joined path stays under
    /// the root: only `Normal` components after it.
    #[test]
    fn accepted_paths_never_escape() {
        let seed = 0xdead_beef;
        let mut rng = Rng::new(seed);
        const ALPHABET: &[u8] = b"./a\0\\:";
        let root = Path::new("/root/out");
        let mut accepted = 0;
        for round in 0..50_000 {
            let len = 1 + rng.below(12) as usize;
            let bytes: Vec<u8> = (0..len)
                .map(|_| ALPHABET[rng.below(ALPHABET.len() as u64) as usize])
                .collect();
            if let Ok(p) = RelPath::parse(&bytes, &Limits::default()) {
                accepted += 1;
                let full = p.under(root);
                let rest = full.strip_prefix(root).unwrap();
                assert!(
                    rest.components().all(|c| matches!(c, Component::Normal(_))),
                    "seed={seed} round={round} bytes={bytes:?}"
                );
                assert_eq!(
                    rest.components().count(),
                    bytes.split(|&b| b == b'/').count()
                );
            }
        }
        assert!(
            accepted > 100,
            "the generator must also produce valid names"
        );
    }
}
