//! `qpf cache stats | gc | clear`: inspecting and trimming the local caches, safely while another
//! `qpf` runs. A run holds a shared lock on `.qpf/cache/.lock` for its whole duration; `gc` and
//! `clear` take it exclusively, so they wait for running extractions and never delete an entry a
//! run is replaying.

use std::fs::File;
use std::path::{Path, PathBuf};
use std::time::SystemTime;

use serde::Serialize;

use crate::cache::{InvocationCache, LocalCache};

/// A held lock on the cache folder (released on drop).
#[derive(Debug)]
pub struct CacheLock {
    _file: File,
}

fn lock_file(cache_root: &Path) -> std::io::Result<File> {
    std::fs::create_dir_all(cache_root)?;
    std::fs::OpenOptions::new().create(true).truncate(false).write(true).open(cache_root.join(".lock"))
}

/// Takes the shared lock (many runs at once).
///
/// # Errors
/// I/O errors creating or locking the lock file.
pub fn lock_shared(cache_root: &Path) -> std::io::Result<CacheLock> {
    let file = lock_file(cache_root)?;
    file.lock_shared()?;
    Ok(CacheLock { _file: file })
}

/// Takes the exclusive lock, calling `waiting` once if it has to wait for running `qpf`s.
///
/// # Errors
/// I/O errors creating or locking the lock file.
pub fn lock_exclusive(cache_root: &Path, waiting: &dyn Fn()) -> std::io::Result<CacheLock> {
    let file = lock_file(cache_root)?;
    match file.try_lock() {
        Ok(()) => {}
        Err(std::fs::TryLockError::WouldBlock) => {
            waiting();
            file.lock()?;
        }
        Err(std::fs::TryLockError::Error(e)) => return Err(e),
    }
    Ok(CacheLock { _file: file })
}

/// Sizes of the caches.
#[derive(Debug, Clone, Default, Serialize)]
pub struct CacheStats {
    /// Invocation manifests.
    pub manifests: u64,
    /// Content blobs.
    pub blobs: u64,
    /// Bytes of the invocation cache (manifests and blobs).
    pub invocation_bytes: u64,
    /// Compiled plugins.
    pub compiled: u64,
    /// Bytes of the compiled-plugin cache.
    pub compiled_bytes: u64,
}

fn files(dir: &Path) -> Vec<(PathBuf, u64, SystemTime)> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_owned()];
    while let Some(d) = stack.pop() {
        let Ok(entries) = std::fs::read_dir(&d) else { continue };
        for e in entries.flatten() {
            let Ok(meta) = e.metadata() else { continue };
            if meta.is_dir() {
                stack.push(e.path());
            } else if meta.is_file() {
                out.push((e.path(), meta.len(), meta.modified().unwrap_or(SystemTime::UNIX_EPOCH)));
            }
        }
    }
    out.sort();
    out
}

/// Counts what the invocation cache under `cache_root` (`.qpf/cache`) and the compiled-plugin
/// cache at `compiled_dir` hold.
pub fn stats(cache_root: &Path, compiled_dir: &Path) -> CacheStats {
    let inv = cache_root.join("invocations");
    let manifests = files(&inv.join("manifests"));
    let blobs = files(&inv.join("blobs"));
    let compiled = files(compiled_dir);
    CacheStats {
        manifests: manifests.len() as u64,
        blobs: blobs.len() as u64,
        invocation_bytes: manifests.iter().chain(&blobs).map(|f| f.1).sum(),
        compiled: compiled.iter().filter(|f| f.0.extension().is_some_and(|e| e == "cwasm")).count() as u64,
        compiled_bytes: compiled.iter().map(|f| f.1).sum(),
    }
}

/// What `gc` removed.
#[derive(Debug, Clone, Default, Serialize)]
pub struct GcReport {
    /// Manifests removed (least recently used first).
    pub manifests_removed: u64,
    /// Blobs removed (no longer referenced).
    pub blobs_removed: u64,
    /// Bytes freed.
    pub bytes_freed: u64,
    /// Size of the invocation cache afterwards.
    pub bytes_after: u64,
}

/// The invocation key a manifest file stands for (`blake3:<its name>`).
fn manifest_key(path: &Path) -> String {
    path.file_stem().map(|s| format!("blake3:{}", s.to_string_lossy())).unwrap_or_default()
}

/// Shrinks the invocation cache to at most `max_bytes`: removes the least recently used manifests
/// (a hit refreshes a manifest's time), then every blob no remaining manifest references. Call
/// with the exclusive lock held. `in_use` is the project's run snapshot ([`crate::snapshot`]):
/// a replayed run opens no manifest, so the entries it stands for count as used when it was.
///
/// # Errors
/// I/O errors while deleting.
pub fn gc(
    cache_root: &Path,
    max_bytes: u64,
    in_use: Option<(std::collections::HashSet<String>, SystemTime)>,
) -> std::io::Result<GcReport> {
    let inv = cache_root.join("invocations");
    let cache = LocalCache::new(&inv, &crate::secret::user_secret());
    let mut manifests = files(&inv.join("manifests"));
    let blobs = files(&inv.join("blobs"));
    let mut total: u64 = manifests.iter().chain(&blobs).map(|f| f.1).sum();
    let mut report = GcReport::default();
    if let Some((keys, used)) = &in_use {
        for (path, _, time) in &mut manifests {
            if keys.contains(&manifest_key(path)) {
                *time = (*time).max(*used);
            }
        }
    }
    manifests.sort_by_key(|f| f.2);
    let mut kept = Vec::new();
    for (path, size, _) in manifests {
        if total > max_bytes {
            std::fs::remove_file(&path)?;
            total -= size;
            report.manifests_removed += 1;
            report.bytes_freed += size;
        } else {
            kept.push(path);
        }
    }
    let mut referenced = std::collections::HashSet::new();
    for path in &kept {
        if let Ok(Some(m)) = cache.manifest(&manifest_key(path)) {
            referenced.extend(m.files.into_iter().map(|f| f.digest.trim_start_matches("blake3:").to_owned()));
        }
    }
    for (path, size, _) in blobs {
        let name = path.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
        if !referenced.contains(&name) {
            std::fs::remove_file(&path)?;
            total = total.saturating_sub(size);
            report.blobs_removed += 1;
            report.bytes_freed += size;
        }
    }
    report.bytes_after = total;
    Ok(report)
}

/// Removes the invocation cache under `cache_root` and the compiled-plugin cache at
/// `compiled_dir`. Call with the exclusive lock held.
///
/// # Errors
/// I/O errors while deleting.
pub fn clear(cache_root: &Path, compiled_dir: &Path) -> std::io::Result<u64> {
    let before = stats(cache_root, compiled_dir);
    // The old per-project compiled cache too (`.qpf/cache/compiled`, the default before 0.2).
    for dir in [cache_root.join("invocations"), compiled_dir.to_owned(), cache_root.join("compiled")] {
        match std::fs::remove_dir_all(dir) {
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => return Err(e),
            _ => {}
        }
    }
    Ok(before.invocation_bytes + before.compiled_bytes)
}

/// A size that [`parse_size`] does not understand.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum SizeError {
    /// No number in front.
    #[error("`{0}` is not a size like `500M` or `2GiB`")]
    NotASize(String),
    /// A unit other than B, K, M or G.
    #[error("`{text}`: unknown unit `{unit}`; use B, K, M or G")]
    UnknownUnit {
        /// The whole text.
        text: String,
        /// The unit found.
        unit: String,
    },
}

/// Parses a size like `500M`, `2GiB`, `100kb`, `1048576`.
///
/// # Errors
/// [`SizeError`], naming the text.
pub fn parse_size(text: &str) -> Result<u64, SizeError> {
    let t = text.trim();
    let split = t.find(|c: char| !c.is_ascii_digit() && c != '.').unwrap_or(t.len());
    let (number, unit) = t.split_at(split);
    let shown = || qpf_core::text::escape(text).into_owned();
    let number: f64 = number.parse().map_err(|_| SizeError::NotASize(shown()))?;
    let factor: f64 = match unit.trim().to_ascii_lowercase().as_str() {
        "" | "b" => 1.0,
        "k" | "kb" | "kib" => 1024.0,
        "m" | "mb" | "mib" => 1024.0 * 1024.0,
        "g" | "gb" | "gib" => 1024.0 * 1024.0 * 1024.0,
        other => {
            return Err(SizeError::UnknownUnit { text: shown(), unit: qpf_core::text::escape(other).into_owned() });
        }
    };
    Ok((number * factor) as u64)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_parse_with_binary_units() {
        assert_eq!(parse_size("1048576"), Ok(1 << 20));
        assert_eq!(parse_size("500M"), Ok(500 << 20));
        assert_eq!(parse_size("2GiB"), Ok(2 << 30));
        assert_eq!(parse_size("1.5k"), Ok(1536));
        assert_eq!(parse_size("lots"), Err(SizeError::NotASize("lots".into())));
        let err = parse_size("5 parsecs").unwrap_err();
        assert_eq!(err.to_string(), "`5 parsecs`: unknown unit `parsecs`; use B, K, M or G");
    }
}
