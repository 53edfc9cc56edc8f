//! Writes generated files under the output root through a cap-std capability handle: no path,
//! symlink or race can reach outside it. Each file is written to a temporary sibling and renamed
//! over the target, so a reader (or a crash) sees the old bytes or the new ones, never a mix; a
//! file whose bytes did not change is not touched, so its mtime stays.

use std::io::Write;
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};

use cap_std::fs::{Dir, OpenOptions};

static TEMP_COUNTER: AtomicU64 = AtomicU64::new(0);

pub use qpf_core::digest_of;

/// Writes a state file (cache entry, lock) atomically: a temporary sibling, then a rename.
///
/// # Errors
/// I/O errors.
pub fn write_file_atomic(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    qpf_core::fs::write_atomic(path, bytes)
}

/// Something on disk in the way of a file QPF is about to write (paths escaped for a terminal).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum InTheWay {
    /// A folder on the way is something else.
    #[error("`{part}` is {what} on disk, but `{rel}` needs it to be a folder")]
    NotAFolder {
        /// The part of the path in the way.
        part: String,
        /// What it is.
        what: &'static str,
        /// The file to write.
        rel: String,
    },
    /// The file itself is not a regular file.
    #[error("`{rel}` is {what} on disk; QPF writes only regular files")]
    NotAFile {
        /// The file to write.
        rel: String,
        /// What it is.
        what: &'static str,
    },
}

/// What a file under the root is, for messages.
fn describe(meta: &cap_std::fs::Metadata) -> &'static str {
    let t = meta.file_type();
    if t.is_dir() {
        "a folder"
    } else if t.is_symlink() {
        "a symbolic link"
    } else if t.is_file() {
        "a regular file"
    } else {
        "a special file (FIFO, socket or device)"
    }
}

/// A capability on the output root.
#[derive(Debug)]
pub struct OutputRoot {
    dir: Dir,
    /// Folders under the root this run has seen to be folders (checked or created), so that
    /// writing many files into one folder looks at it once. Only a shortcut for messages and
    /// `mkdir`: every open still goes through cap-std, which refuses to leave the root whatever
    /// was swapped in since.
    folders: std::sync::Mutex<std::collections::HashSet<String>>,
    /// Digests of the files under the root as last hashed, by stat ([`crate::stat_cache`]).
    stats: Option<std::sync::Mutex<crate::stat_cache::StatCache>>,
}

/// The stat of a file under the root, from cap-std's metadata (`None` off Unix).
#[cfg(unix)]
fn file_stat(meta: &cap_std::fs::Metadata) -> Option<qpf_core::fs::FileStat> {
    use cap_std::fs::MetadataExt;
    Some(qpf_core::fs::FileStat::from_unix(
        meta.dev(),
        meta.ino(),
        meta.size(),
        (meta.mtime(), meta.mtime_nsec()),
        (meta.ctime(), meta.ctime_nsec()),
    ))
}

#[cfg(not(unix))]
fn file_stat(_meta: &cap_std::fs::Metadata) -> Option<qpf_core::fs::FileStat> {
    None
}

/// What writing one file did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WriteOutcome {
    /// The file already had these bytes; it was not touched.
    Unchanged,
    /// The file was created or replaced.
    Written,
    /// A scaffold file was already there (its user's): it was not touched.
    Kept,
}

impl OutputRoot {
    /// Creates the output root if needed and opens it.
    ///
    /// # Errors
    /// When the folder cannot be created or opened.
    pub fn open(path: &Path) -> std::io::Result<Self> {
        std::fs::create_dir_all(path)?;
        let dir = Dir::open_ambient_dir(path, cap_std::ambient_authority())?;
        Ok(OutputRoot { dir, folders: std::sync::Mutex::new(std::collections::HashSet::new()), stats: None })
    }

    /// Answers [`OutputRoot::digest_of`] from `cache` for files unchanged since they were hashed.
    pub(crate) fn with_stat_cache(mut self, cache: crate::stat_cache::StatCache) -> Self {
        self.stats = Some(std::sync::Mutex::new(cache));
        self
    }

    /// Saves the stat cache with what this run learnt, and only the files this run compared.
    pub(crate) fn save_stat_cache(&self) {
        if let Some(stats) = &self.stats
            && let Ok(mut stats) = stats.lock()
        {
            stats.keep_only_touched();
            stats.save();
        }
    }

    fn known_folder(&self, rel: &str) -> bool {
        self.folders.lock().is_ok_and(|f| f.contains(rel))
    }

    /// Remembers `rel` and every folder above it as folders.
    fn remember_folder(&self, rel: &str) {
        if let Ok(mut f) = self.folders.lock() {
            let mut at = rel;
            while f.insert(at.to_owned()) {
                match at.rsplit_once('/') {
                    Some((up, _)) => at = up,
                    None => break,
                }
            }
        }
    }

    /// The blake3 digest (`blake3:<hex>`) of a file under the root, or `None` when it is absent or
    /// not a regular file.
    pub fn digest_of(&self, rel: &str) -> Option<String> {
        let meta = self.dir.symlink_metadata(rel).ok()?;
        if !meta.is_file() {
            return None;
        }
        let before = file_stat(&meta);
        if let Some(stats) = &self.stats
            && let Ok(mut stats) = stats.lock()
            && let Some(digest) = stats.lookup(rel, before.as_ref())
        {
            return Some(digest.to_owned());
        }
        let bytes = self.dir.read(rel).ok()?;
        let digest = digest_of(&bytes);
        if let Some(stats) = &self.stats {
            let after = self.dir.symlink_metadata(rel).ok().and_then(|m| file_stat(&m));
            if let Ok(mut stats) = stats.lock() {
                stats.record(rel, before, after, &digest);
            }
        }
        Some(digest)
    }

    /// Whether a regular file is at `rel` under the root.
    pub fn is_file(&self, rel: &str) -> bool {
        self.dir.symlink_metadata(rel).is_ok_and(|m| m.is_file())
    }

    /// The bytes of a regular file under the root, or `None`.
    pub fn read(&self, rel: &str) -> Option<Vec<u8>> {
        let meta = self.dir.symlink_metadata(rel).ok()?;
        if !meta.is_file() {
            return None;
        }
        self.dir.read(rel).ok()
    }

    /// Removes a file under the root (a no-op when it is already gone).
    ///
    /// # Errors
    /// I/O errors other than "not found".
    pub fn remove(&self, rel: &str) -> std::io::Result<()> {
        match self.dir.remove_file(rel) {
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
            other => other,
        }
    }

    /// Checks, without writing, that `rel` can be written: every folder on the way is a folder (or
    /// absent) and the file itself is a regular file (or absent). Run it on every file of an
    /// invocation before writing any, so that a clash with what is on disk leaves nothing half done.
    ///
    /// # Errors
    /// [`InTheWay`], naming the part of the path in the way.
    pub fn check_writable(&self, rel: &str) -> Result<(), InTheWay> {
        let shown = |s: &str| qpf_core::text::escape(s).into_owned();
        for (i, _) in rel.match_indices('/').chain(std::iter::once((rel.len(), ""))) {
            let part = &rel[..i];
            if i < rel.len() && self.known_folder(part) {
                continue;
            }
            match self.dir.symlink_metadata(part) {
                Ok(meta) if i < rel.len() && !meta.is_dir() => {
                    return Err(InTheWay::NotAFolder { part: shown(part), what: describe(&meta), rel: shown(rel) });
                }
                Ok(meta) if i == rel.len() && !meta.is_file() => {
                    return Err(InTheWay::NotAFile { rel: shown(rel), what: describe(&meta) });
                }
                Ok(_) if i < rel.len() => self.remember_folder(part),
                Ok(_) => {}
                // Absent from here on: nothing further can be in the way.
                Err(_) => break,
            }
        }
        Ok(())
    }

    /// Writes `bytes` to `rel` (already checked by [`crate::output_path::check`]) unless the file
    /// already holds exactly these bytes.
    ///
    /// # Errors
    /// I/O errors, including any attempt to leave the root (cap-std refuses those).
    pub fn write(&self, rel: &str, bytes: &[u8]) -> std::io::Result<WriteOutcome> {
        if let Ok(meta) = self.dir.symlink_metadata(rel)
            && meta.is_file()
            && meta.len() == bytes.len() as u64
            && self.dir.read(rel)? == bytes
        {
            return Ok(WriteOutcome::Unchanged);
        }
        let tmp = self.write_temporary(rel, bytes)?;
        let result = self.dir.rename(&tmp, &self.dir, rel);
        if result.is_err() {
            let _ = self.dir.remove_file(&tmp);
        }
        result.map(|()| WriteOutcome::Written)
    }

    /// Writes a scaffold file: `bytes` to `rel` only when nothing is there. The new file appears
    /// whole (a hard link of a complete temporary file, which fails rather than replace anything),
    /// so a file its user wrote meanwhile is never overwritten.
    ///
    /// # Errors
    /// I/O errors, including any attempt to leave the root.
    pub fn write_scaffold(&self, rel: &str, bytes: &[u8]) -> std::io::Result<WriteOutcome> {
        if self.dir.symlink_metadata(rel).is_ok() {
            return Ok(WriteOutcome::Kept);
        }
        let tmp = self.write_temporary(rel, bytes)?;
        let result = self.dir.hard_link(&tmp, &self.dir, rel);
        let _ = self.dir.remove_file(&tmp);
        match result {
            Ok(()) => Ok(WriteOutcome::Written),
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => Ok(WriteOutcome::Kept),
            Err(e) => Err(e),
        }
    }

    /// Writes `bytes` to a new temporary sibling of `rel` (creating the folders on the way) and
    /// returns its path under the root.
    fn write_temporary(&self, rel: &str, bytes: &[u8]) -> std::io::Result<String> {
        let parent = rel.rsplit_once('/').map(|(p, _)| p);
        if let Some(parent) = parent
            && !self.known_folder(parent)
        {
            self.dir.create_dir_all(parent)?;
            self.remember_folder(parent);
        }
        let n = TEMP_COUNTER.fetch_add(1, Ordering::Relaxed);
        // Short and independent of the file's name: a legal 255-byte name must not give an illegal
        // temporary one.
        let tmp_name = format!(".qpf-tmp-{}-{n}", std::process::id());
        let tmp = match parent {
            Some(p) => format!("{p}/{tmp_name}"),
            None => tmp_name,
        };
        let create = || self.dir.open_with(&tmp, OpenOptions::new().write(true).create_new(true));
        let result = (|| {
            let mut file = match (create(), parent) {
                // A folder this run created was removed since (by someone else): made again.
                (Err(e), Some(parent)) if e.kind() == std::io::ErrorKind::NotFound => {
                    if let Ok(mut f) = self.folders.lock() {
                        f.clear();
                    }
                    self.dir.create_dir_all(parent)?;
                    create()?
                }
                (file, _) => file?,
            };
            file.write_all(bytes)
        })();
        match result {
            Ok(()) => Ok(tmp),
            Err(e) => {
                let _ = self.dir.remove_file(&tmp);
                Err(e)
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_folder_removed_during_a_run_is_made_again() {
        let tmp = tempfile::tempdir().unwrap();
        let root = OutputRoot::open(tmp.path()).unwrap();
        root.write("a/b/c.txt", b"1").unwrap();
        std::fs::remove_dir_all(tmp.path().join("a")).unwrap();
        root.check_writable("a/b/d.txt").unwrap();
        assert_eq!(root.write("a/b/d.txt", b"2").unwrap(), WriteOutcome::Written);
        assert_eq!(std::fs::read(tmp.path().join("a/b/d.txt")).unwrap(), b"2");
        // And a file put where a known folder was is still named.
        std::fs::remove_dir_all(tmp.path().join("a")).unwrap();
        std::fs::write(tmp.path().join("a"), b"x").unwrap();
        let root = OutputRoot::open(tmp.path()).unwrap();
        assert!(matches!(root.check_writable("a/b/e.txt"), Err(InTheWay::NotAFolder { .. })));
    }

    #[test]
    fn unchanged_bytes_are_not_rewritten() {
        let tmp = tempfile::tempdir().unwrap();
        let root = OutputRoot::open(tmp.path()).unwrap();
        assert_eq!(root.write("a/b.txt", b"hi").unwrap(), WriteOutcome::Written);
        assert_eq!(root.write("a/b.txt", b"hi").unwrap(), WriteOutcome::Unchanged);
        assert_eq!(root.write("a/b.txt", b"ho").unwrap(), WriteOutcome::Written);
        assert_eq!(std::fs::read(tmp.path().join("a/b.txt")).unwrap(), b"ho");
        let leftovers: Vec<_> = std::fs::read_dir(tmp.path().join("a")).unwrap().collect();
        assert_eq!(leftovers.len(), 1, "no temporary file left behind");
    }

    #[cfg(unix)]
    #[test]
    fn a_symlink_cannot_lead_outside_the_root() {
        let outside = tempfile::tempdir().unwrap();
        let tmp = tempfile::tempdir().unwrap();
        std::os::unix::fs::symlink(outside.path(), tmp.path().join("link")).unwrap();
        let root = OutputRoot::open(tmp.path()).unwrap();
        assert!(root.write("link/x.txt", b"escaped").is_err());
        assert!(!outside.path().join("x.txt").exists());
    }

    #[test]
    fn a_file_in_the_way_of_a_folder_is_found_before_writing() {
        let tmp = tempfile::tempdir().unwrap();
        let root = OutputRoot::open(tmp.path()).unwrap();
        root.write("a", b"file").unwrap();
        let err = root.check_writable("a/b").unwrap_err().to_string();
        assert!(err.contains("`a` is a regular file on disk"), "{err}");
        std::fs::create_dir_all(tmp.path().join("d/e")).unwrap();
        assert!(root.check_writable("d/e").unwrap_err().to_string().contains("a folder on disk"));
        assert_eq!(root.check_writable("d/e/f.txt"), Ok(()));
        assert_eq!(root.check_writable("new/x.txt"), Ok(()));
    }

    #[test]
    fn a_scaffold_is_written_once_and_never_over_its_users_file() {
        let tmp = tempfile::tempdir().unwrap();
        let root = OutputRoot::open(tmp.path()).unwrap();
        assert_eq!(root.write_scaffold("app/handlers.py", b"stub").unwrap(), WriteOutcome::Written);
        std::fs::write(tmp.path().join("app/handlers.py"), b"mine").unwrap();
        assert_eq!(root.write_scaffold("app/handlers.py", b"stub v2").unwrap(), WriteOutcome::Kept);
        assert_eq!(std::fs::read(tmp.path().join("app/handlers.py")).unwrap(), b"mine");
        let names: Vec<_> =
            std::fs::read_dir(tmp.path().join("app")).unwrap().map(|e| e.unwrap().file_name()).collect();
        assert_eq!(names, ["handlers.py"], "no temporary file left behind");
    }

    #[test]
    fn a_name_of_255_bytes_can_be_written() {
        let tmp = tempfile::tempdir().unwrap();
        let root = OutputRoot::open(tmp.path()).unwrap();
        let name = "n".repeat(255);
        assert_eq!(root.write(&name, b"x").unwrap(), WriteOutcome::Written);
    }
}
