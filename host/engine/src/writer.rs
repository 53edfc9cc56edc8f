//! Writes generated files under the output root through a cap-std capability handle: no path,
//! symlink or race can reach outside it. Each file is written to a temporary sibling and renamed
//! over the target, so a reader (or a crash) sees the old bytes or the new ones, never a mix; a
//! file whose bytes did not change is not touched, so its mtime stays.

use std::io::Write;
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};

use cap_std::fs::{Dir, OpenOptions};

static TEMP_COUNTER: AtomicU64 = AtomicU64::new(0);

/// `blake3:<hex>` of some bytes: the one digest format of every QPF record.
pub fn digest_of(bytes: &[u8]) -> String {
    format!("blake3:{}", blake3::hash(bytes).to_hex())
}

/// Writes a state file (cache entry, lock) atomically: a temporary sibling, then a rename.
///
/// # Errors
/// I/O errors.
pub fn write_file_atomic(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    let dir = path.parent().unwrap_or(Path::new("."));
    std::fs::create_dir_all(dir)?;
    let mut tmp = tempfile::NamedTempFile::new_in(dir)?;
    tmp.write_all(bytes)?;
    tmp.persist(path).map_err(|e| e.error)?;
    Ok(())
}

/// A capability on the output root.
#[derive(Debug)]
pub struct OutputRoot {
    dir: Dir,
}

/// What writing one file did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WriteOutcome {
    /// The file already had these bytes; it was not touched.
    Unchanged,
    /// The file was created or replaced.
    Written,
}

impl OutputRoot {
    /// Creates the output root if needed and opens it.
    ///
    /// # Errors
    /// When the folder cannot be created or opened.
    pub fn open(path: &Path) -> std::io::Result<Self> {
        std::fs::create_dir_all(path)?;
        let dir = Dir::open_ambient_dir(path, cap_std::ambient_authority())?;
        Ok(OutputRoot { dir })
    }

    /// The blake3 digest (`blake3:<hex>`) of a file under the root, or `None` when it is absent or
    /// not a regular file.
    pub fn digest_of(&self, rel: &str) -> Option<String> {
        let meta = self.dir.symlink_metadata(rel).ok()?;
        if !meta.is_file() {
            return None;
        }
        let bytes = self.dir.read(rel).ok()?;
        Some(digest_of(&bytes))
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
        let (parent, name) = match rel.rsplit_once('/') {
            Some((p, n)) => (Some(p), n),
            None => (None, rel),
        };
        if let Some(parent) = parent {
            self.dir.create_dir_all(parent)?;
        }
        let n = TEMP_COUNTER.fetch_add(1, Ordering::Relaxed);
        let tmp_name = format!(".{name}.qpf-tmp-{}-{n}", std::process::id());
        let tmp = match parent {
            Some(p) => format!("{p}/{tmp_name}"),
            None => tmp_name,
        };
        let result = (|| {
            let mut file = self.dir.open_with(&tmp, OpenOptions::new().write(true).create_new(true))?;
            file.write_all(bytes)?;
            drop(file);
            self.dir.rename(&tmp, &self.dir, rel)
        })();
        if result.is_err() {
            let _ = self.dir.remove_file(&tmp);
        }
        result.map(|()| WriteOutcome::Written)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

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
}
