//! Shell-style name patterns for `udt send --exclude`: `*` matches any run
//! of bytes, `?` one byte, everything else itself. A pattern is matched
//! against one name (a path component), never a whole path, so `*.tmp`
//! and `.git` mean what they say at any depth.

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
    use super::matches;

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
