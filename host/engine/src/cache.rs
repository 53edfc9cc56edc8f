//! The invocation cache: content-addressed, behind a small trait so that a shared object store can
//! replace the local folder later.
//!
//! An entry is a manifest (`files` with their digests, diagnostics, fuel) stored under the
//! invocation key; file contents are blobs stored under their own blake3 digest. Every read is
//! verified: a blob whose bytes do not match its digest, or a manifest whose MAC (keyed blake3,
//! with a key derived from the user's secret, which the project folder does not hold) does not
//! verify, is reported and treated as a miss, never served. So a manifest planted in the project's
//! `.qpf/` (by a project or anything else that can write there) is never replayed.

use std::path::{Path, PathBuf};

use qpf_runtime::{Diagnostic, FileMode};
use serde::{Deserialize, Serialize};

/// Version of the manifest format (3: sealed with a MAC; 4: small files inline). Entries of
/// another format are misses, not errors.
pub const MANIFEST_FORMAT: u32 = 4;

/// Largest manifest read, in bytes.
pub(crate) const MAX_MANIFEST_BYTES: u64 = 64 << 20;

/// Largest blob read, in bytes: a file of one invocation, itself bounded by the project's
/// `max-output-bytes` when it was stored (blobs are verified against their digest anyway).
const MAX_BLOB_BYTES: u64 = 4 << 30;

/// One cached file: its path under the invocation's output folder and its digest.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CachedFile {
    /// Path relative to the invocation's `out` folder.
    pub path: String,
    /// `blake3:<hex>` of the contents.
    pub digest: String,
    /// Size in bytes.
    pub size: u64,
    /// The contents themselves, for a small UTF-8 file ([`INLINE_MAX_BYTES`]): one file per
    /// cache entry instead of one per output (creating files dominates a miss on ext4). Verified
    /// against `digest` when read, like a blob.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub inline: Option<String>,
    /// Who owns the file once written (`scaffold` files are written only when absent).
    #[serde(default, skip_serializing_if = "FileMode::is_generated")]
    pub mode: FileMode,
}

/// One output file of an invocation, checked (path, count and size rules) and hashed: what the
/// cache stores and the commit writes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CheckedFile {
    /// Path relative to the invocation's `out` folder.
    pub path: String,
    /// `blake3:<hex>` of `bytes`.
    pub digest: String,
    /// The contents.
    pub bytes: Vec<u8>,
    /// Who owns it once written.
    pub mode: FileMode,
}

/// Largest file kept inside its manifest rather than as a blob.
pub const INLINE_MAX_BYTES: usize = 4096;

/// What a successful invocation produced, without the bytes.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Manifest {
    /// [`MANIFEST_FORMAT`].
    pub format: u32,
    /// The invocation key.
    pub key: String,
    /// Files.
    pub files: Vec<CachedFile>,
    /// Diagnostics the plugin returned.
    pub diagnostics: Vec<Diagnostic>,
    /// Fuel the original run consumed.
    pub fuel: u64,
    /// Further invocations the plugin asked for (replayed on a hit).
    #[serde(default)]
    pub spawns: Vec<qpf_runtime::SpawnRequest>,
}

impl Manifest {
    /// The manifest of a successful invocation under `key`: its checked files (path, digest,
    /// bytes), diagnostics, fuel and spawn requests. Whether a file goes inline is the cache's
    /// choice ([`InvocationCache::put`]).
    pub fn of_files(
        key: &str,
        files: &[CheckedFile],
        diagnostics: Vec<Diagnostic>,
        fuel: u64,
        spawns: Vec<qpf_runtime::SpawnRequest>,
    ) -> Manifest {
        let files = files
            .iter()
            .map(|f| CachedFile {
                path: f.path.clone(),
                digest: f.digest.clone(),
                size: f.bytes.len() as u64,
                inline: None,
                mode: f.mode,
            })
            .collect();
        Manifest { format: MANIFEST_FORMAT, key: key.to_owned(), files, diagnostics, fuel, spawns }
    }
}

/// A cache problem that is worth telling the user about (the run goes on without the cache).
#[derive(Debug, thiserror::Error)]
pub enum CacheError {
    /// Stored bytes do not match their digest.
    #[error("cache entry `{0}` is corrupted (its digest does not match); ignoring it")]
    Corrupted(String),
    /// I/O failure.
    #[error("cache I/O error at `{path}`: {source}")]
    Io {
        /// Where.
        path: PathBuf,
        /// What.
        source: std::io::Error,
    },
}

/// Where invocation results are kept between runs.
pub trait InvocationCache: Send + Sync {
    /// The manifest stored under `key`, if any.
    ///
    /// # Errors
    /// [`CacheError::Corrupted`] when a stored manifest fails its check (the caller treats it as a miss).
    fn manifest(&self, key: &str) -> Result<Option<Manifest>, CacheError>;

    /// The verified bytes of a blob.
    ///
    /// # Errors
    /// Missing or corrupted blobs.
    fn blob(&self, digest: &str) -> Result<Vec<u8>, CacheError>;

    /// Stores blobs and then the manifest (so a manifest never points to a missing blob).
    ///
    /// # Errors
    /// I/O failures.
    fn put(&self, manifest: &Manifest, blobs: &[(&str, &[u8])]) -> Result<(), CacheError>;

    /// Stores a manifest made by [`Manifest::of_files`] with the contents of those files.
    ///
    /// # Errors
    /// I/O failures.
    fn put_files(&self, manifest: &Manifest, files: &[CheckedFile]) -> Result<(), CacheError> {
        let blobs: Vec<(&str, &[u8])> = files.iter().map(|f| (f.digest.as_str(), f.bytes.as_slice())).collect();
        self.put(manifest, &blobs)
    }

    /// Whether an entry is stored under `key` (unchecked: a cheap look before a remote read).
    fn contains(&self, key: &str) -> bool {
        matches!(self.manifest(key), Ok(Some(_)))
    }

    /// The verified bytes of one file of a manifest: inline, or its blob.
    ///
    /// # Errors
    /// Missing or corrupted contents.
    fn file(&self, file: &CachedFile) -> Result<Vec<u8>, CacheError> {
        match &file.inline {
            Some(text) if digest_of(text.as_bytes()) == file.digest => Ok(text.clone().into_bytes()),
            Some(_) => Err(CacheError::Corrupted(file.digest.clone())),
            None => self.blob(&file.digest),
        }
    }
}

/// The cache in a local folder (`.qpf/cache/invocations`).
#[derive(Clone)]
pub struct LocalCache {
    root: PathBuf,
    key: [u8; 32],
}

impl std::fmt::Debug for LocalCache {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LocalCache").field("root", &self.root).finish_non_exhaustive()
    }
}

fn hex(digest: &str) -> String {
    qpf_core::digest::file_stem(digest)
}

use crate::writer::digest_of;

/// Cache files are verified when read (digests, MACs): a write lost to a power failure is a miss,
/// so they are not synced.
fn write_atomic(path: &Path, bytes: &[u8]) -> Result<(), CacheError> {
    qpf_core::fs::write_atomic_unsynced(path, bytes).map_err(|source| CacheError::Io { path: path.to_owned(), source })
}

/// A manifest file is `qpf-manifest/<format> mac:<hex>\n<manifest JSON>`: the MAC (keyed blake3)
/// covers the stored bytes themselves, so a flipped byte is detected whatever serde does, and
/// only a `qpf` holding the user's secret can make one that verifies.
const SEAL_PREFIX: &str = "qpf-manifest/";

fn mac(key: &[u8; 32], json: &[u8]) -> String {
    format!("mac:{}", blake3::keyed_hash(key, json).to_hex())
}

fn seal(key: &[u8; 32], json: &[u8]) -> Vec<u8> {
    let mut out = format!("{SEAL_PREFIX}{MANIFEST_FORMAT} {}\n", mac(key, json)).into_bytes();
    out.extend_from_slice(json);
    out
}

/// What a stored manifest file holds.
enum Unsealed {
    /// The JSON, verified against its digest.
    Current(Vec<u8>),
    /// Written by another version of the format: not ours to judge.
    OtherFormat,
    /// The bytes do not match the digest or the layout.
    Corrupted,
}

fn unseal(key: &[u8; 32], bytes: &[u8]) -> Unsealed {
    let Some(newline) = bytes.iter().position(|b| *b == b'\n') else {
        return if bytes.first() == Some(&b'{') { Unsealed::OtherFormat } else { Unsealed::Corrupted };
    };
    let Ok(header) = std::str::from_utf8(&bytes[..newline]) else { return Unsealed::Corrupted };
    let Some((format, digest)) = header.strip_prefix(SEAL_PREFIX).and_then(|h| h.split_once(' ')) else {
        // Format 1 stored a JSON object.
        return if bytes.first() == Some(&b'{') { Unsealed::OtherFormat } else { Unsealed::Corrupted };
    };
    if format != MANIFEST_FORMAT.to_string() {
        return Unsealed::OtherFormat;
    }
    let json = &bytes[newline + 1..];
    let expected = mac(key, json);
    let same = expected.len() == digest.len()
        && expected.bytes().zip(digest.bytes()).fold(0u8, |acc, (a, b)| acc | (a ^ b)) == 0;
    if same { Unsealed::Current(json.to_vec()) } else { Unsealed::Corrupted }
}

impl LocalCache {
    /// A cache rooted at `root` (created on first write), whose manifests are sealed with a key
    /// derived from `secret` (see [`crate::secret`]).
    pub fn new(root: &Path, secret: &[u8; 32]) -> Self {
        LocalCache { root: root.to_owned(), key: blake3::derive_key("qpf invocation cache MAC v1", secret) }
    }

    fn manifest_path(&self, key: &str) -> PathBuf {
        let h = hex(key);
        self.root.join("manifests").join(&h[..2.min(h.len())]).join(format!("{h}.manifest"))
    }

    fn blob_path(&self, digest: &str) -> PathBuf {
        let h = hex(digest);
        self.root.join("blobs").join(&h[..2.min(h.len())]).join(h)
    }

    /// The manifest in `sealed` (a stored manifest's bytes), verified against the MAC and `key`;
    /// `None` for another format.
    pub(crate) fn open_sealed(&self, key: &str, sealed: &[u8]) -> Result<Option<Manifest>, CacheError> {
        let json = match unseal(&self.key, sealed) {
            Unsealed::Current(json) => json,
            Unsealed::OtherFormat => return Ok(None),
            Unsealed::Corrupted => return Err(CacheError::Corrupted(key.to_owned())),
        };
        let manifest: Manifest = serde_json::from_slice(&json).map_err(|_| CacheError::Corrupted(key.to_owned()))?;
        if manifest.key != key || manifest.format != MANIFEST_FORMAT {
            return Err(CacheError::Corrupted(key.to_owned()));
        }
        Ok(Some(manifest))
    }

    /// Stores the blobs of `manifest` that do not go inline, and returns the sealed manifest
    /// (small UTF-8 files inside it) for the caller to store.
    pub(crate) fn store_blobs_and_seal(
        &self,
        manifest: &Manifest,
        blobs: &[(&str, &[u8])],
    ) -> Result<Vec<u8>, CacheError> {
        let mut manifest = manifest.clone();
        let mut inlined = std::collections::BTreeSet::new();
        for f in &mut manifest.files {
            let small = blobs.iter().find(|(d, b)| *d == f.digest && b.len() <= INLINE_MAX_BYTES);
            if let Some((digest, bytes)) = small
                && let Ok(text) = std::str::from_utf8(bytes)
            {
                f.inline = Some(text.to_owned());
                inlined.insert(*digest);
            }
        }
        for (digest, bytes) in blobs.iter().filter(|(d, _)| !inlined.contains(d)) {
            let path = self.blob_path(digest);
            // An existing blob is reused only if it is intact: a corrupted one is replaced.
            let intact = std::fs::read(&path).is_ok_and(|old| digest_of(&old) == *digest);
            if !intact {
                write_atomic(&path, bytes)?;
            }
        }
        let json =
            serde_json::to_vec(&manifest).map_err(|e| CacheError::Io { path: self.root.clone(), source: e.into() })?;
        Ok(seal(&self.key, &json))
    }
}

impl InvocationCache for LocalCache {
    fn contains(&self, key: &str) -> bool {
        self.manifest_path(key).is_file()
    }

    fn manifest(&self, key: &str) -> Result<Option<Manifest>, CacheError> {
        let path = self.manifest_path(key);
        let bytes = match qpf_core::fs::read_regular(&path, MAX_MANIFEST_BYTES) {
            Ok(b) => b,
            Err(qpf_core::fs::ReadError::Io(e)) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(qpf_core::fs::ReadError::Io(source)) => return Err(CacheError::Io { path, source }),
            Err(_) => return Err(CacheError::Corrupted(key.to_owned())),
        };
        let Some(manifest) = self.open_sealed(key, &bytes)? else { return Ok(None) };
        // A hit refreshes the manifest's time: `qpf cache gc` removes the least recently used first.
        if let Ok(file) = std::fs::File::options().write(true).open(&path) {
            let _ = file.set_modified(std::time::SystemTime::now());
        }
        Ok(Some(manifest))
    }

    fn blob(&self, digest: &str) -> Result<Vec<u8>, CacheError> {
        let path = self.blob_path(digest);
        let bytes = qpf_core::fs::read_regular(&path, MAX_BLOB_BYTES).map_err(|e| match e {
            qpf_core::fs::ReadError::Io(source) => CacheError::Io { path, source },
            _ => CacheError::Corrupted(digest.to_owned()),
        })?;
        if digest_of(&bytes) != digest {
            return Err(CacheError::Corrupted(digest.to_owned()));
        }
        Ok(bytes)
    }

    fn put(&self, manifest: &Manifest, blobs: &[(&str, &[u8])]) -> Result<(), CacheError> {
        let sealed = self.store_blobs_and_seal(manifest, blobs)?;
        write_atomic(&self.manifest_path(&manifest.key), &sealed)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A manifest of one file too large to be inlined, so that it is stored as a blob.
    fn sample() -> (Manifest, Vec<u8>) {
        sample_of("print('hi')\n".repeat(500).into_bytes())
    }

    fn sample_of(contents: Vec<u8>) -> (Manifest, Vec<u8>) {
        let manifest = Manifest {
            format: MANIFEST_FORMAT,
            key: "blake3:abcd".into(),
            files: vec![CachedFile {
                path: "a.py".into(),
                digest: digest_of(&contents),
                size: contents.len() as u64,
                inline: None,
                mode: qpf_runtime::FileMode::Generated,
            }],
            diagnostics: vec![],
            fuel: 42,
            spawns: vec![],
        };
        (manifest, contents)
    }

    #[test]
    fn round_trip() {
        let tmp = tempfile::tempdir().unwrap();
        let cache = LocalCache::new(tmp.path(), &[7; 32]);
        let (m, c) = sample();
        cache.put(&m, &[(&m.files[0].digest, &c)]).unwrap();
        assert_eq!(cache.manifest(&m.key).unwrap(), Some(m.clone()));
        assert_eq!(cache.blob(&m.files[0].digest).unwrap(), c);
        assert_eq!(cache.manifest("blake3:ffff").unwrap(), None);
    }

    #[test]
    fn a_flipped_byte_is_detected_not_served() {
        let tmp = tempfile::tempdir().unwrap();
        let cache = LocalCache::new(tmp.path(), &[7; 32]);
        let (m, c) = sample();
        cache.put(&m, &[(&m.files[0].digest, &c)]).unwrap();
        let blob = cache.blob_path(&m.files[0].digest);
        let mut bytes = std::fs::read(&blob).unwrap();
        bytes[0] ^= 1;
        std::fs::write(&blob, bytes).unwrap();
        assert!(matches!(cache.blob(&m.files[0].digest), Err(CacheError::Corrupted(_))));
        let path = cache.manifest_path(&m.key);
        let text = std::fs::read_to_string(&path).unwrap().replace("\"fuel\":42", "\"fuel\":43");
        std::fs::write(&path, text).unwrap();
        assert!(matches!(cache.manifest(&m.key), Err(CacheError::Corrupted(_))));
    }

    #[test]
    fn a_manifest_of_another_format_is_a_miss_not_a_corruption() {
        let tmp = tempfile::tempdir().unwrap();
        let cache = LocalCache::new(tmp.path(), &[7; 32]);
        let (m, _) = sample();
        let path = cache.manifest_path(&m.key);
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(&path, br#"{"digest":"blake3:00","manifest":{}}"#).unwrap();
        assert_eq!(cache.manifest(&m.key).unwrap(), None);
        std::fs::write(&path, b"qpf-manifest/999 blake3:00\n{}").unwrap();
        assert_eq!(cache.manifest(&m.key).unwrap(), None);
    }

    #[test]
    fn a_truncated_manifest_is_a_corruption() {
        let tmp = tempfile::tempdir().unwrap();
        let cache = LocalCache::new(tmp.path(), &[7; 32]);
        let (m, c) = sample();
        cache.put(&m, &[(&m.files[0].digest, &c)]).unwrap();
        let path = cache.manifest_path(&m.key);
        let bytes = std::fs::read(&path).unwrap();
        std::fs::write(&path, &bytes[..bytes.len() / 2]).unwrap();
        assert!(matches!(cache.manifest(&m.key), Err(CacheError::Corrupted(_))));
    }

    #[test]
    fn a_manifest_sealed_with_another_key_is_never_served() {
        let tmp = tempfile::tempdir().unwrap();
        let forger = LocalCache::new(tmp.path(), &[1; 32]);
        let (m, c) = sample();
        forger.put(&m, &[(&m.files[0].digest, &c)]).unwrap();
        let ours = LocalCache::new(tmp.path(), &[2; 32]);
        assert!(matches!(ours.manifest(&m.key), Err(CacheError::Corrupted(_))));
    }

    #[test]
    fn small_text_files_live_inside_their_manifest() {
        let tmp = tempfile::tempdir().unwrap();
        let cache = LocalCache::new(tmp.path(), &[7; 32]);
        let (m, c) = sample_of(b"print('hi')\n".to_vec());
        cache.put(&m, &[(&m.files[0].digest, &c)]).unwrap();
        assert!(!cache.blob_path(&m.files[0].digest).exists(), "no blob for a small file");
        let read = cache.manifest(&m.key).unwrap().unwrap();
        assert_eq!(read.files[0].inline.as_deref(), Some("print('hi')\n"));
        assert_eq!(cache.file(&read.files[0]).ok(), Some(c));
        // Inline contents are verified like blobs.
        let mut forged = read.files[0].clone();
        forged.inline = Some("import os\n".into());
        assert!(matches!(cache.file(&forged), Err(CacheError::Corrupted(_))));
    }
}
