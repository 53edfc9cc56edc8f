//! Project bundles (`POST /v1/extract`): a gzip-compressed tar of `qpf.yaml`, the map and the
//! schemas, unpacked into a fresh folder of the tenant's storage. Everything in it is hostile:
//!
//! | refused | why |
//! |---|---|
//! | more than [`MAX_UNPACKED_BYTES`] unpacked, or more than [`MAX_RATIO`] times the compressed size | decompression bombs |
//! | more than [`MAX_FILES`] entries | a bundle is a project, not a file system |
//! | symbolic links, hard links, devices, FIFOs, anything but files and folders | they point outside or block the reader |
//! | absolute paths, `..`, control characters, names over 255 bytes (the output path rules) | the bundle stays in its folder |
//! | the same path twice (also as a file and a folder) | one meaning per path |

use std::collections::BTreeSet;
use std::io::Read;
use std::path::Path;

/// Largest bundle once unpacked, in bytes.
pub const MAX_UNPACKED_BYTES: u64 = 256 << 20;
/// Largest ratio of unpacked to compressed size.
pub const MAX_RATIO: u64 = 200;
/// Most entries in a bundle.
pub const MAX_FILES: usize = 10_000;

/// Why a bundle was refused.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum BundleError {
    /// Over a size budget (a decompression bomb, or just too large).
    #[error(
        "the bundle unpacks to more than {limit} bytes (at most {MAX_UNPACKED_BYTES}, and {MAX_RATIO} times its compressed size)"
    )]
    TooLarge {
        /// The budget that was hit.
        limit: u64,
    },
    /// Too many entries.
    #[error("the bundle has more than {MAX_FILES} entries")]
    TooManyFiles,
    /// An entry that is not a regular file or a folder.
    #[error("`{path}` is {what}; a bundle holds only regular files and folders")]
    NotAFile {
        /// The entry's path (escaped).
        path: String,
        /// What it is.
        what: &'static str,
    },
    /// A path that would leave the bundle's folder or is otherwise not allowed.
    #[error("the path `{path}` is not allowed: {why}")]
    BadPath {
        /// The path (escaped).
        path: String,
        /// Why.
        why: String,
    },
    /// The same path twice.
    #[error("`{0}` appears twice in the bundle")]
    Duplicate(String),
    /// Not a gzip-compressed tar archive.
    #[error("the body is not a gzip-compressed tar archive: {0}")]
    Malformed(String),
    /// The folder could not be written.
    #[error("cannot unpack the bundle: {0}")]
    Io(std::io::Error),
}

/// A reader that fails once more than `limit` bytes went through it.
struct Capped<R> {
    inner: R,
    left: u64,
}

impl<R: Read> Read for Capped<R> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let n = self.inner.read(buf)?;
        if n as u64 > self.left {
            return Err(std::io::Error::other("size budget"));
        }
        self.left -= n as u64;
        Ok(n)
    }
}

fn kind(t: tar::EntryType) -> Option<&'static str> {
    match t {
        tar::EntryType::Regular | tar::EntryType::Directory => None,
        tar::EntryType::Symlink => Some("a symbolic link"),
        tar::EntryType::Link => Some("a hard link"),
        tar::EntryType::Char | tar::EntryType::Block => Some("a device"),
        tar::EntryType::Fifo => Some("a FIFO"),
        _ => Some("a special entry"),
    }
}

/// Unpacks `gz` into `into` (an empty folder), returning the files' relative paths.
///
/// # Errors
/// See [`BundleError`]; on an error, `into` may hold part of the bundle (the caller removes it).
pub fn unpack(gz: &[u8], into: &Path) -> Result<Vec<String>, BundleError> {
    let limit = MAX_UNPACKED_BYTES.min((gz.len() as u64).saturating_mul(MAX_RATIO)).max(64 << 10);
    let capped = Capped { inner: flate2::read::GzDecoder::new(gz), left: limit };
    let mut archive = tar::Archive::new(capped);
    let mut seen = Seen::default();
    let mut files = Vec::new();
    let malformed = |e: std::io::Error| BundleError::Malformed(qpf_core::text::escape(&e.to_string()).into_owned());
    let entries = archive.entries().map_err(malformed)?;
    for entry in entries {
        let mut entry = match entry {
            Ok(e) => e,
            Err(e) => return Err(over_or(&e, limit).unwrap_or_else(|| malformed(e))),
        };
        if seen.count >= MAX_FILES {
            return Err(BundleError::TooManyFiles);
        }
        let raw = entry.path_bytes().into_owned();
        let shown = qpf_core::text::escape(&String::from_utf8_lossy(&raw)).into_owned();
        let etype = entry.header().entry_type();
        if let Some(what) = kind(etype) {
            return Err(BundleError::NotAFile { path: shown, what });
        }
        let text = std::str::from_utf8(&raw)
            .map_err(|_| BundleError::BadPath { path: shown.clone(), why: "it is not UTF-8".into() })?;
        let rel = text.strip_prefix("./").unwrap_or(text).trim_end_matches('/');
        if rel.is_empty() && etype.is_dir() {
            continue;
        }
        qpf_core::output_path::check(rel, 1024)
            .map_err(|why| BundleError::BadPath { path: shown.clone(), why: why.to_string() })?;
        if seen.clash(rel, etype.is_dir()) {
            return Err(BundleError::Duplicate(shown));
        }
        let target = into.join(rel);
        if etype.is_dir() {
            std::fs::create_dir_all(&target).map_err(BundleError::Io)?;
            continue;
        }
        if let Some(parent) = target.parent() {
            std::fs::create_dir_all(parent).map_err(BundleError::Io)?;
        }
        let mut out =
            std::fs::OpenOptions::new().write(true).create_new(true).open(&target).map_err(BundleError::Io)?;
        if let Err(e) = std::io::copy(&mut entry, &mut out) {
            return Err(over_or(&e, limit).unwrap_or(BundleError::Io(e)));
        }
        files.push(rel.to_owned());
    }
    Ok(files)
}

/// The paths met so far: files, folders named by an entry, and folders implied by a path.
#[derive(Default)]
struct Seen {
    files: BTreeSet<String>,
    dirs: BTreeSet<String>,
    implied: BTreeSet<String>,
    count: usize,
}

impl Seen {
    /// Records `rel`; true when it clashes with what came before (the same path twice, or a file
    /// where a folder is, or the other way round).
    fn clash(&mut self, rel: &str, is_dir: bool) -> bool {
        self.count += 1;
        let ancestors: Vec<&str> = rel.match_indices('/').map(|(i, _)| &rel[..i]).collect();
        if ancestors.iter().any(|a| self.files.contains(*a)) || self.files.contains(rel) || self.dirs.contains(rel) {
            return true;
        }
        if !is_dir && self.implied.contains(rel) {
            return true;
        }
        self.implied.extend(ancestors.iter().map(|a| (*a).to_owned()));
        if is_dir {
            self.dirs.insert(rel.to_owned());
        } else {
            self.files.insert(rel.to_owned());
        }
        false
    }
}

/// The size error when `e` came from the capped reader.
fn over_or(e: &std::io::Error, limit: u64) -> Option<BundleError> {
    (e.to_string().contains("size budget")).then_some(BundleError::TooLarge { limit })
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    /// An entry of a test archive: path, type, contents.
    type Entry<'a> = (&'a str, tar::EntryType, &'a [u8]);

    fn tar_gz(entries: &[Entry<'_>]) -> Vec<u8> {
        let mut builder = tar::Builder::new(flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast()));
        for (path, etype, data) in entries {
            let mut h = tar::Header::new_gnu();
            h.set_entry_type(*etype);
            h.set_size(data.len() as u64);
            h.set_mode(0o644);
            // `set_path` refuses `..`; a hostile archive writes the bytes itself.
            let name = &mut h.as_old_mut().name;
            name[..path.len()].copy_from_slice(path.as_bytes());
            if *etype == tar::EntryType::Symlink || *etype == tar::EntryType::Link {
                h.set_link_name("/etc/passwd").unwrap();
            }
            h.set_cksum();
            builder.append(&h, *data).unwrap();
        }
        builder.into_inner().unwrap().finish().unwrap()
    }

    #[test]
    fn a_plain_project_unpacks() {
        let tmp = tempfile::tempdir().unwrap();
        let gz = tar_gz(&[
            ("qpf.yaml", tar::EntryType::Regular, b"version: 1\n"),
            ("agents/", tar::EntryType::Directory, b""),
            ("agents/a.yaml", tar::EntryType::Regular, b"kind: Agent\n"),
        ]);
        assert_eq!(unpack(&gz, tmp.path()).unwrap(), vec!["qpf.yaml", "agents/a.yaml"]);
        assert_eq!(std::fs::read(tmp.path().join("agents/a.yaml")).unwrap(), b"kind: Agent\n");
    }

    #[test]
    fn hostile_entries_are_refused_by_kind() {
        let cases: Vec<(Vec<Entry<'_>>, &str)> = vec![
            (vec![("../escape", tar::EntryType::Regular, b"x")], "not allowed"),
            (vec![("/etc/evil", tar::EntryType::Regular, b"x")], "not allowed"),
            (vec![("a\u{1b}[2J", tar::EntryType::Regular, b"x")], "not allowed"),
            (vec![("link", tar::EntryType::Symlink, b"")], "symbolic link"),
            (vec![("hard", tar::EntryType::Link, b"")], "hard link"),
            (vec![("dev", tar::EntryType::Char, b"")], "device"),
            (vec![("fifo", tar::EntryType::Fifo, b"")], "FIFO"),
            (vec![("a", tar::EntryType::Regular, b"1"), ("a", tar::EntryType::Regular, b"2")], "twice"),
            (vec![("a", tar::EntryType::Regular, b"1"), ("a/b", tar::EntryType::Regular, b"2")], "twice"),
        ];
        for (entries, expected) in cases {
            let tmp = tempfile::tempdir().unwrap();
            let err = unpack(&tar_gz(&entries), tmp.path()).unwrap_err().to_string();
            assert!(err.contains(expected), "{entries:?}: {err}");
            assert!(!err.contains('\u{1b}'), "escaped: {err:?}");
        }
        assert!(matches!(unpack(b"not gzip", tempfile::tempdir().unwrap().path()), Err(BundleError::Malformed(_))));
    }

    #[test]
    fn decompression_bombs_stop_at_the_budget() {
        let zeros = vec![0u8; 64 << 20];
        let gz = tar_gz(&[("bomb", tar::EntryType::Regular, &zeros)]);
        assert!(gz.len() < 1 << 20, "it compresses well: {}", gz.len());
        let tmp = tempfile::tempdir().unwrap();
        assert!(matches!(unpack(&gz, tmp.path()), Err(BundleError::TooLarge { .. })));
        let written = std::fs::metadata(tmp.path().join("bomb")).map(|m| m.len()).unwrap_or(0);
        assert!(written <= MAX_RATIO * gz.len() as u64, "stopped at the ratio: {written}");
    }
}
