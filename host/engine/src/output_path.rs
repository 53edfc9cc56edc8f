//! Output paths are untrusted: a plugin's path must be relative, normalised and short before the
//! host joins it to anything. (The writer then goes through a capability handle, so even a path
//! that passed here cannot escape the output root through a symlink or a race.)

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
    }
    Ok(path)
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
}
