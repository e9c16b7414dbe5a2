//! Shell-style name patterns for `udt send --include` and `--exclude`: `*`
//! matches any run of bytes, `?` one byte, everything else itself. A
//! pattern is matched against one name (a path component), never a whole
//! path, so `*.tmp` and `.git` mean what they say at any depth.

/// Which names below a root `udt send` sends: `--exclude` patterns leave
/// out files and directories, `--include` patterns (when there are any)
/// keep only the files that match one. Directories are always walked
/// unless excluded, since a file deep inside may match; an exclusion wins
/// over an inclusion.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Filter {
    /// Names to leave out (files and directories).
    pub excludes: Vec<String>,
    /// When not empty: the only file names to send.
    pub includes: Vec<String>,
}

impl Filter {
    /// Why a file (`is_dir` false) or directory named `name` is left out,
    /// or `None` when it is sent.
    pub fn rejects(&self, name: &[u8], is_dir: bool) -> Option<&'static str> {
        if self.excludes.iter().any(|p| matches(p.as_bytes(), name)) {
            return Some("excluded");
        }
        if !is_dir
            && !self.includes.is_empty()
            && !self.includes.iter().any(|p| matches(p.as_bytes(), name))
        {
            return Some("not included");
        }
        None
    }
}

/// True when `name` matches `pattern`.
pub fn matches(pattern: &[u8], name: &[u8]) -> bool {
    // Iterative matching with one backtrack point (the last `*`): linear
    // in practice, no recursion on hostile patterns.
    let (mut p, mut n) = (0, 0);
    let mut star: Option<(usize, usize)> = None;
    while n < name.len() {
        match pattern.get(p) {
            Some(b'*') => {
                star = Some((p, n));
                p += 1;
            }
            Some(&c) if c == b'?' || c == name[n] => {
                p += 1;
                n += 1;
            }
            _ => match star {
                Some((sp, sn)) => {
                    p = sp + 1;
                    n = sn + 1;
                    star = Some((sp, sn + 1));
                }
                None => return false,
            },
        }
    }
    pattern[p.min(pattern.len())..].iter().all(|&c| c == b'*')
}

#[cfg(test)]
mod tests {
    use super::{matches, Filter};

    #[test]
    fn filters() {
        let none = Filter::default();
        assert_eq!(none.rejects(b"a.rs", false), None);
        let f = Filter {
            excludes: vec!["target".into(), "*.bak.rs".into()],
            includes: vec!["*.rs".into(), "Cargo.toml".into()],
        };
        assert_eq!(f.rejects(b"main.rs", false), None);
        assert_eq!(f.rejects(b"Cargo.toml", false), None);
        assert_eq!(f.rejects(b"notes.txt", false), Some("not included"));
        // Directories are walked whatever --include says...
        assert_eq!(f.rejects(b"src", true), None);
        // ...unless excluded; an exclusion wins over an inclusion.
        assert_eq!(f.rejects(b"target", true), Some("excluded"));
        assert_eq!(f.rejects(b"old.bak.rs", false), Some("excluded"));
    }

    #[test]
    fn patterns() {
        assert!(matches(b"*.tmp", b"a.tmp"));
        assert!(matches(b"*.tmp", b".tmp"));
        assert!(!matches(b"*.tmp", b"a.tmp.txt"));
        assert!(matches(b".git", b".git"));
        assert!(!matches(b".git", b".gitignore"));
        assert!(matches(b"?.c", b"a.c"));
        assert!(!matches(b"?.c", b"ab.c"));
        assert!(matches(b"*", b""));
        assert!(matches(b"a*b*c", b"aXXbYYc"));
        assert!(!matches(b"a*b*c", b"aXXbYY"));
        assert!(matches(b"**x", b"yyx"));
        assert!(!matches(b"", b"x"));
    }
}
