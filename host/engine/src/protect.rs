//! What an output root may never reach: the project's state (`.qpf/`, `qpf.lock`), its inputs
//! (`qpf.yaml`, the map, kinds, schemas and the fragments they import), the plugin files, the
//! shared compiled-plugin cache and the user's secret. A plugin writes anywhere under the output
//! root, so an output root that is, contains or sits inside any of these would let a plugin change
//! what the host reads back (its state, its inputs, or native code it loads).
//!
//! Paths are compared after resolving symbolic links (for a path that does not exist yet, its
//! nearest existing ancestor is resolved and the rest appended), so a link cannot hide an overlap.

use std::path::{Component, Path, PathBuf};

/// One path the output root must stay clear of, with what it is (for the error).
#[derive(Debug, Clone)]
pub struct Protected {
    /// The path (absolute or relative to the current folder).
    pub path: PathBuf,
    /// What it is, e.g. "the project's state folder `.qpf/`".
    pub what: String,
}

/// `path` with symbolic links resolved as far as it exists, and `.`/`..` removed lexically after.
pub fn resolve(path: &Path) -> PathBuf {
    let absolute = if path.is_absolute() {
        path.to_owned()
    } else {
        std::env::current_dir().map(|d| d.join(path)).unwrap_or_else(|_| path.to_owned())
    };
    let mut existing = absolute.as_path();
    let mut rest = Vec::new();
    loop {
        if let Ok(canonical) = std::fs::canonicalize(existing) {
            let mut out = canonical;
            for part in rest.iter().rev() {
                out.push(part);
            }
            return normalise(&out);
        }
        match (existing.parent(), existing.file_name()) {
            (Some(parent), Some(name)) => {
                rest.push(name.to_owned());
                existing = parent;
            }
            _ => return normalise(&absolute),
        }
    }
}

fn normalise(path: &Path) -> PathBuf {
    let mut out = PathBuf::new();
    for c in path.components() {
        match c {
            Component::CurDir => {}
            Component::ParentDir => {
                out.pop();
            }
            other => out.push(other.as_os_str()),
        }
    }
    out
}

/// Protected paths resolved once, to check an output root against (before and after it is
/// created) without resolving them again.
#[derive(Debug, Clone)]
pub struct ProtectedSet(Vec<(PathBuf, Protected)>);

impl ProtectedSet {
    /// Resolves each distinct path once (the first description of a path is kept). A path that
    /// is not itself a symbolic link resolves as its folder (resolved once per folder, which a
    /// project of 20,000 schemas in one folder needs) joined with its name.
    pub fn new(protected: Vec<Protected>) -> Self {
        let mut seen = std::collections::BTreeSet::new();
        let distinct = protected.into_iter().filter(|p| seen.insert(p.path.clone()));
        let mut folders: std::collections::HashMap<PathBuf, PathBuf> = std::collections::HashMap::new();
        let mut resolve_cached = |path: &Path| -> PathBuf {
            let not_a_link = std::fs::symlink_metadata(path).is_ok_and(|m| !m.file_type().is_symlink());
            match (path.parent(), path.file_name()) {
                (Some(parent), Some(name)) if not_a_link && !parent.as_os_str().is_empty() => {
                    folders.entry(parent.to_owned()).or_insert_with(|| resolve(parent)).join(name)
                }
                _ => resolve(path),
            }
        };
        ProtectedSet(distinct.map(|p| (resolve_cached(&p.path), p)).collect())
    }

    /// Checks that `out` neither is, contains, nor sits inside any protected path.
    ///
    /// # Errors
    /// [`Overlap`], naming the protected path and what it is.
    pub fn check(&self, out: &Path) -> Result<(), Overlap> {
        check_resolved(&resolve(out), &self.0)
    }
}

/// Checks that `out` neither is, contains, nor sits inside any protected path.
///
/// # Errors
/// [`Overlap`], naming the protected path and what it is.
pub fn check_output_root(out: &Path, protected: &[Protected]) -> Result<(), Overlap> {
    ProtectedSet::new(protected.to_vec()).check(out)
}

/// An output root that overlaps a protected path.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "it {relation} {what} (`{path}`); plugins write anywhere under the output root, so it must stay clear of the project's state, inputs and plugins: point `output` (or `--out`) at a folder of its own, e.g. `out`"
)]
pub struct Overlap {
    /// `is`, `contains` or `is inside`.
    pub relation: &'static str,
    /// What the protected path is.
    pub what: String,
    /// The protected path, escaped for a terminal.
    pub path: String,
}

fn check_resolved(out_resolved: &Path, protected: &[(PathBuf, Protected)]) -> Result<(), Overlap> {
    for (resolved, p) in protected {
        let relation = if resolved == out_resolved {
            "is"
        } else if resolved.starts_with(out_resolved) {
            "contains"
        } else if out_resolved.starts_with(resolved) {
            "is inside"
        } else {
            continue;
        };
        return Err(Overlap {
            relation,
            what: p.what.clone(),
            path: qpf_core::text::escape(&p.path.display().to_string()).into_owned(),
        });
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    fn protected(root: &Path) -> Vec<Protected> {
        vec![
            Protected { path: root.join(".qpf"), what: "the project's state folder `.qpf/`".into() },
            Protected { path: root.join("qpf.lock"), what: "the lock".into() },
            Protected { path: root.join("agents/a.yaml"), what: "a schema".into() },
        ]
    }

    #[test]
    fn overlaps_in_every_direction_are_refused() {
        let tmp = tempfile::tempdir().unwrap();
        let root = tmp.path();
        std::fs::create_dir_all(root.join("agents")).unwrap();
        std::fs::write(root.join("agents/a.yaml"), "").unwrap();
        let p = protected(root);
        assert!(check_output_root(&root.join("out"), &p).is_ok());
        assert!(
            check_output_root(&root.join(".qpf"), &p).unwrap_err().to_string().starts_with("it is the project's state")
        );
        assert!(
            check_output_root(&root.join(".qpf/cache/compiled"), &p)
                .unwrap_err()
                .to_string()
                .starts_with("it is inside")
        );
        assert!(check_output_root(&root.join("qpf.lock"), &p).unwrap_err().to_string().starts_with("it is the lock"));
        assert!(
            check_output_root(&root.join("agents"), &p).unwrap_err().to_string().starts_with("it contains a schema")
        );
        assert!(check_output_root(&root.join("out/../.qpf"), &p).is_err());
        assert!(check_output_root(root, &p).is_err());
    }

    #[cfg(unix)]
    #[test]
    fn a_symbolic_link_cannot_hide_an_overlap() {
        let tmp = tempfile::tempdir().unwrap();
        let root = tmp.path();
        std::fs::create_dir_all(root.join(".qpf/cache")).unwrap();
        std::os::unix::fs::symlink(root.join(".qpf"), root.join("innocent")).unwrap();
        assert!(check_output_root(&root.join("innocent/cache"), &protected(root)).is_err());
    }
}
