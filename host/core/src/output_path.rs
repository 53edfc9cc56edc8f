//! Output paths are untrusted: a plugin's path must be relative, normalised, short and printable
//! before the host joins it to anything, and the paths of one run must form a tree (no file that is
//! also a folder of another, no two that differ only in case). (The writer then goes through a
//! capability handle, so even a path that passed here cannot escape the output root through a
//! symlink or a race.)

use std::collections::{BTreeMap, HashMap};

/// Longest segment (file or folder name) in bytes: what file systems accept (`NAME_MAX`).
pub const MAX_SEGMENT_BYTES: usize = 255;

/// Why a path was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PathProblem {
    /// Empty path.
    #[error("the path is empty")]
    Empty,
    /// Longer than the limit.
    #[error("the path is {len} bytes long, over the limit of {limit} (`limits.max-path-len`)")]
    TooLong {
        /// Its length.
        len: usize,
        /// The limit.
        limit: u32,
    },
    /// Contains a NUL byte.
    #[error("the path contains a NUL byte")]
    Nul,
    /// Contains `\`.
    #[error("the path contains `\\`; use `/` as the separator")]
    Backslash,
    /// Starts with `/`.
    #[error("the path is absolute; it must be relative to the output folder")]
    Absolute,
    /// A drive prefix like `C:`.
    #[error("the path contains `:` (a drive or stream prefix); it must be a plain relative path")]
    Colon,
    /// An empty, `.` or `..` segment.
    #[error("the path has a `{0}` segment; it must be normalised (no `.`, `..` or empty segments)")]
    Segment(String),
    /// A control character (newline, escape, ...) or a Unicode format character (a bidi override,
    /// a zero-width character).
    #[error(
        "the path contains the control or format character U+{0:04X}; paths must be printable (no newline, escape, bidi override or zero-width character)"
    )]
    Unprintable(u32),
    /// A segment longer than file systems allow.
    #[error(
        "the path has a segment of {len} bytes, over the limit of {MAX_SEGMENT_BYTES} bytes per file or folder name"
    )]
    SegmentTooLong {
        /// Its length.
        len: usize,
    },
}

/// Why a set of paths cannot be written together.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ClashProblem {
    /// The same path twice.
    #[error("the path `{0}` is returned twice")]
    Duplicate(String),
    /// Two paths that differ only in case (they are one file on macOS and Windows).
    #[error("the paths `{0}` and `{1}` differ only in case; they would be one file on a case-insensitive file system")]
    Case(String, String),
    /// A path that is also a folder of another path.
    #[error("`{0}` is a file, but `{1}` needs it to be a folder")]
    FileAndFolder(String, String),
}

/// Checks one path a plugin returned (or an entry's `out` folder) and returns it unchanged when
/// it is a plain relative path: `a/b.txt`, never `../x`, `/etc/x`, `a/../../x`, `C:x`, `x\0y`.
///
/// # Errors
/// The first [`PathProblem`] found.
pub fn check(path: &str, max_len: u32) -> Result<&str, PathProblem> {
    if path.is_empty() {
        return Err(PathProblem::Empty);
    }
    if path.len() > max_len as usize {
        return Err(PathProblem::TooLong { len: path.len(), limit: max_len });
    }
    if path.contains('\0') {
        return Err(PathProblem::Nul);
    }
    if let Some(c) = path.chars().find(|c| crate::text::is_unsafe_char(*c)) {
        return Err(PathProblem::Unprintable(c as u32));
    }
    if path.contains('\\') {
        return Err(PathProblem::Backslash);
    }
    if path.starts_with('/') {
        return Err(PathProblem::Absolute);
    }
    if path.contains(':') {
        return Err(PathProblem::Colon);
    }
    for segment in path.split('/') {
        if segment.is_empty() || segment == "." || segment == ".." {
            return Err(PathProblem::Segment(segment.to_owned()));
        }
        if segment.len() > MAX_SEGMENT_BYTES {
            return Err(PathProblem::SegmentTooLong { len: segment.len() });
        }
    }
    Ok(path)
}

/// Checks that a set of (already [`check`]ed) paths can all be written: no duplicates, no two
/// that differ only in case, no path that is a folder of another. Work is linear in the total
/// length of the paths.
///
/// # Errors
/// The first clash found (in the order given).
pub fn check_set<'a>(paths: impl IntoIterator<Item = &'a str>) -> Result<(), ClashProblem> {
    let mut files: HashMap<String, &'a str> = HashMap::new();
    let mut folders: HashMap<String, &'a str> = HashMap::new();
    let mut exact: BTreeMap<&'a str, ()> = BTreeMap::new();
    for path in paths {
        if exact.insert(path, ()).is_some() {
            return Err(ClashProblem::Duplicate(path.to_owned()));
        }
        let folded = path.to_lowercase();
        if let Some(other) = files.get(&folded) {
            return Err(ClashProblem::Case((*other).to_owned(), path.to_owned()));
        }
        if let Some(other) = folders.get(&folded) {
            return Err(ClashProblem::FileAndFolder(path.to_owned(), (*other).to_owned()));
        }
        for (i, _) in folded.match_indices('/') {
            let folder = &folded[..i];
            if let Some(other) = files.get(folder) {
                return Err(ClashProblem::FileAndFolder((*other).to_owned(), path.to_owned()));
            }
            folders.entry(folder.to_owned()).or_insert(path);
        }
        files.insert(folded, path);
    }
    Ok(())
}

/// The paths already claimed in a run, each with its owner (an invocation), so that a new
/// invocation's files can be checked against all of them before any is written.
#[derive(Debug)]
pub struct PathTree<O> {
    files: HashMap<String, (String, O)>,
    folders: HashMap<String, (String, O)>,
}

impl<O: Clone> Default for PathTree<O> {
    fn default() -> Self {
        PathTree { files: HashMap::new(), folders: HashMap::new() }
    }
}

impl<O: Clone> PathTree<O> {
    /// The path and owner that `path` cannot coexist with: the same file (in any case), a file
    /// where `path` needs a folder, or a folder where `path` would be a file.
    pub fn conflict(&self, path: &str) -> Option<&(String, O)> {
        let folded = path.to_lowercase();
        if let Some(hit) = self.files.get(&folded).or_else(|| self.folders.get(&folded)) {
            return Some(hit);
        }
        folded.match_indices('/').find_map(|(i, _)| self.files.get(&folded[..i]))
    }

    /// Claims `path` for `owner`.
    pub fn insert(&mut self, path: &str, owner: O) {
        let folded = path.to_lowercase();
        for (i, _) in folded.match_indices('/') {
            self.folders.entry(folded[..i].to_owned()).or_insert_with(|| (path.to_owned(), owner.clone()));
        }
        self.files.insert(folded, (path.to_owned(), owner));
    }

    /// Whether `path` (exactly) is claimed.
    pub fn contains(&self, path: &str) -> bool {
        self.files.get(&path.to_lowercase()).is_some_and(|(p, _)| p == path)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plain_relative_paths_pass() {
        assert_eq!(check("a/b/c.py", 255), Ok("a/b/c.py"));
        assert_eq!(check("x..y/.hidden", 255), Ok("x..y/.hidden"));
    }

    #[test]
    fn escapes_and_odd_forms_are_refused() {
        assert_eq!(check("../x", 255), Err(PathProblem::Segment("..".into())));
        assert_eq!(check("/etc/x", 255), Err(PathProblem::Absolute));
        assert_eq!(check("a/../../x", 255), Err(PathProblem::Segment("..".into())));
        assert_eq!(check("x\0y", 255), Err(PathProblem::Nul));
        assert_eq!(check("C:/x", 255), Err(PathProblem::Colon));
        assert_eq!(check("\\\\server\\share", 255), Err(PathProblem::Backslash));
        assert_eq!(check("a//b", 255), Err(PathProblem::Segment(String::new())));
        assert_eq!(check("a/./b", 255), Err(PathProblem::Segment(".".into())));
        assert_eq!(check("a/", 255), Err(PathProblem::Segment(String::new())));
        assert_eq!(check("", 255), Err(PathProblem::Empty));
        assert_eq!(check("abcd", 3), Err(PathProblem::TooLong { len: 4, limit: 3 }));
    }

    #[test]
    fn unprintable_paths_are_refused() {
        assert_eq!(check("a\nb", 255), Err(PathProblem::Unprintable(0x0a)));
        assert_eq!(check("a\rb", 255), Err(PathProblem::Unprintable(0x0d)));
        assert_eq!(check("\x1b[31mred", 255), Err(PathProblem::Unprintable(0x1b)));
        assert_eq!(check("evil\u{202e}yp.exe", 255), Err(PathProblem::Unprintable(0x202e)));
        assert_eq!(check("zero\u{200b}width", 255), Err(PathProblem::Unprintable(0x200b)));
        assert_eq!(check("c1\u{9b}x", 255), Err(PathProblem::Unprintable(0x9b)));
        assert_eq!(check("ünïcødé/日本.py", 255), Ok("ünïcødé/日本.py"));
    }

    #[test]
    fn segments_longer_than_file_systems_allow_are_refused() {
        let long = "x".repeat(256);
        assert_eq!(check(&long, 4096), Err(PathProblem::SegmentTooLong { len: 256 }));
        assert!(check(&"x".repeat(255), 4096).is_ok());
    }

    #[test]
    fn a_tree_finds_clashes_with_other_owners() {
        let mut tree = PathTree::default();
        tree.insert("svc/a.py", 1);
        tree.insert("svc/pkg/b.py", 1);
        assert_eq!(tree.conflict("svc/a.py").map(|c| c.1), Some(1));
        assert_eq!(tree.conflict("SVC/A.py").map(|c| c.1), Some(1));
        assert_eq!(tree.conflict("svc/a.py/x").map(|c| c.1), Some(1));
        assert_eq!(tree.conflict("svc/pkg").map(|c| c.1), Some(1));
        assert_eq!(tree.conflict("svc/c.py"), None);
        assert!(tree.contains("svc/a.py") && !tree.contains("svc/A.py"));
    }

    #[test]
    fn sets_that_cannot_be_written_together_are_refused() {
        assert_eq!(check_set(["a", "b/c", "b/d"]), Ok(()));
        assert_eq!(check_set(["a", "a"]), Err(ClashProblem::Duplicate("a".into())));
        assert_eq!(check_set(["a", "a/b"]), Err(ClashProblem::FileAndFolder("a".into(), "a/b".into())));
        assert_eq!(check_set(["a/b", "a"]), Err(ClashProblem::FileAndFolder("a".into(), "a/b".into())));
        assert_eq!(check_set(["x/a/b/c", "x/a/b"]), Err(ClashProblem::FileAndFolder("x/a/b".into(), "x/a/b/c".into())));
        assert_eq!(
            check_set(["README.md", "readme.md"]),
            Err(ClashProblem::Case("README.md".into(), "readme.md".into()))
        );
        assert_eq!(check_set(["A/x", "a"]), Err(ClashProblem::FileAndFolder("a".into(), "A/x".into())));
    }
}
