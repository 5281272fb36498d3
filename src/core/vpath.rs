//! Virtual paths: what a client names, normalised against its working
//! directory before anything reaches the filesystem.
//!
//! A [`VPath`] can only be built by [`VPath::resolve`] (or the root and
//! [`VPath::child`]), so holding one proves the path is absolute, free of
//! `.` and `..`, and names no hidden component. `..` stops at `/`.

use std::fmt;

/// A normalised, absolute virtual path: `/` or `/a/b`, never a trailing
/// slash, never an empty, `.`, `..` or dot-leading component, never a NUL.
#[derive(Clone, PartialEq, Eq, Hash)]
pub struct VPath(Vec<u8>);

/// Why a client path was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum VPathError {
    /// A component starts with `.` (other than `.` and `..`): hidden.
    Hidden,
    /// The path holds a NUL byte, which no file name can.
    Nul,
}

impl fmt::Display for VPathError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            VPathError::Hidden => f.write_str("hidden names are not served"),
            VPathError::Nul => f.write_str("invalid file name"),
        }
    }
}

impl VPath {
    /// The root, `/`.
    pub fn root() -> VPath {
        VPath(b"/".to_vec())
    }

    /// Resolves `arg` (absolute, or relative to `cwd`) to a normalised path.
    pub fn resolve(cwd: &VPath, arg: &[u8]) -> Result<VPath, VPathError> {
        if arg.contains(&0) {
            return Err(VPathError::Nul);
        }
        let mut out = if arg.first() == Some(&b'/') {
            VPath::root()
        } else {
            cwd.clone()
        };
        for comp in arg.split(|&b| b == b'/') {
            match comp {
                b"" | b"." => {}
                b".." => out.pop(),
                c if c[0] == b'.' => return Err(VPathError::Hidden),
                c => out.push(c),
            }
        }
        Ok(out)
    }

    /// The path of entry `name` inside this directory, for a name read from
    /// the directory itself. `None` for a name that could not be resolved
    /// from a client path (hidden, `/`, NUL, empty).
    pub fn child(&self, name: &[u8]) -> Option<VPath> {
        if name.is_empty() || name[0] == b'.' || name.contains(&b'/') || name.contains(&0) {
            return None;
        }
        let mut out = self.clone();
        out.push(name);
        Some(out)
    }

    /// The directories between the root and this path, outermost first:
    /// `/a` and `/a/b` for `/a/b/c` (neither the root nor the path itself).
    pub fn ancestors(&self) -> impl Iterator<Item = VPath> + '_ {
        self.0
            .iter()
            .enumerate()
            .skip(1)
            .filter(|&(_, &b)| b == b'/')
            .map(|(i, _)| VPath(self.0[..i].to_vec()))
    }

    /// The parent directory (the root is its own parent).
    pub fn parent(&self) -> VPath {
        let mut out = self.clone();
        out.pop();
        out
    }

    pub fn is_root(&self) -> bool {
        self.0.len() == 1
    }

    /// The absolute path, as bytes: `/a/b`.
    pub fn as_bytes(&self) -> &[u8] {
        &self.0
    }

    /// The last component (`/` for the root).
    pub fn name(&self) -> &[u8] {
        if self.is_root() {
            return b"/";
        }
        match self.0.iter().rposition(|&b| b == b'/') {
            Some(i) => &self.0[i + 1..],
            None => &self.0,
        }
    }

    /// The path relative to the root, for `openat2(RESOLVE_IN_ROOT)`:
    /// `.` for the root, `a/b` otherwise.
    pub fn relative(&self) -> &[u8] {
        if self.is_root() { b"." } else { &self.0[1..] }
    }

    fn pop(&mut self) {
        if let Some(i) = self.0.iter().rposition(|&b| b == b'/') {
            self.0.truncate(i.max(1));
        }
    }

    fn push(&mut self, comp: &[u8]) {
        if !self.is_root() {
            self.0.push(b'/');
        }
        self.0.extend_from_slice(comp);
    }
}

impl fmt::Debug for VPath {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "VPath({:?})", String::from_utf8_lossy(&self.0))
    }
}

impl fmt::Display for VPath {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&String::from_utf8_lossy(&self.0))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn r(cwd: &str, arg: &str) -> Result<String, VPathError> {
        let cwd = VPath::resolve(&VPath::root(), cwd.as_bytes()).unwrap();
        VPath::resolve(&cwd, arg.as_bytes()).map(|p| p.to_string())
    }

    #[test]
    fn relative_and_absolute() {
        assert_eq!(r("/", "pub").unwrap(), "/pub");
        assert_eq!(r("/pub", "linux/kernel").unwrap(), "/pub/linux/kernel");
        assert_eq!(r("/pub", "/etc").unwrap(), "/etc");
        assert_eq!(r("/pub", "").unwrap(), "/pub");
        assert_eq!(r("/pub", "a//b/./c/").unwrap(), "/pub/a/b/c");
    }

    #[test]
    fn dotdot_stops_at_root() {
        assert_eq!(r("/", "..").unwrap(), "/");
        assert_eq!(r("/pub", "../../../etc/passwd").unwrap(), "/etc/passwd");
        assert_eq!(r("/a/b", "..").unwrap(), "/a");
        assert_eq!(r("/a/b", "../..").unwrap(), "/");
        assert_eq!(r("/a", "b/../../..").unwrap(), "/");
    }

    #[test]
    fn hidden_and_nul_refused() {
        assert_eq!(r("/", ".ssh"), Err(VPathError::Hidden));
        assert_eq!(r("/", "pub/.git/config"), Err(VPathError::Hidden));
        assert_eq!(r("/", "..."), Err(VPathError::Hidden));
        assert_eq!(r("/", "a\0b"), Err(VPathError::Nul));
        // Encoded dots are just a name: no decoding happens in FTP.
        assert_eq!(r("/", "%2e%2e/etc").unwrap(), "/%2e%2e/etc");
    }

    #[test]
    fn names_and_relative_forms() {
        let p = VPath::resolve(&VPath::root(), b"/a/b").unwrap();
        assert_eq!(p.name(), b"b");
        assert_eq!(p.relative(), b"a/b");
        assert_eq!(p.parent().as_bytes(), b"/a");
        assert_eq!(VPath::root().relative(), b".");
        assert_eq!(VPath::root().parent(), VPath::root());
        assert_eq!(p.child(b"c").unwrap().as_bytes(), b"/a/b/c");
        let c = p.child(b"c").unwrap();
        let up: Vec<VPath> = c.ancestors().collect();
        assert_eq!(up, [VPath(b"/a".to_vec()), VPath(b"/a/b".to_vec())]);
        assert_eq!(VPath::root().ancestors().count(), 0);
        assert_eq!(VPath(b"/a".to_vec()).ancestors().count(), 0);
        assert!(p.child(b".c").is_none());
        assert!(p.child(b"c/d").is_none());
    }

    #[test]
    fn non_utf8_passes_through() {
        let p = VPath::resolve(&VPath::root(), b"caf\xe9").unwrap();
        assert_eq!(p.as_bytes(), b"/caf\xe9");
    }
}
