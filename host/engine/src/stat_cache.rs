//! Stat caches: the digest of a file as it was last hashed, with the file's identity and times
//! ([`FileStat`]), so that a run whose files did not change does not read and hash them again.
//! The idea is git's index: a file whose device, inode, size, modification time and change time
//! (to the nanosecond) are what they were when it was hashed has the same bytes. Two are kept in
//! the project's state folder: `.qpf/pins.json` for plugin files (checked against their pins on
//! every run: tens of megabytes of components) and `.qpf/outputs.json` for the files under the
//! output root (compared with what a cache hit would write: one file per invocation or more).
//!
//! Why that is safe here: every write to a file changes its modification and change times, and
//! the change time cannot be set from user space (`utimensat` sets it to now), so a swapped or
//! edited file no longer matches its entry and is hashed again. A file modified (or whose inode
//! changed) in the two seconds before it was hashed is not recorded ("racy", as git calls it: on
//! a file system with coarse timestamps a second write in the same tick would keep its times). The
//! cache file is sealed with a MAC under the user's secret ([`crate::secret`]) over its entries and
//! its scope (for outputs, the output root): an entry nobody with the secret wrote, one made for
//! another output root, or a cache file that does not parse, is ignored and the files are hashed.
//! On systems without these fields (not Unix), nothing is cached.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use qpf_core::fs::FileStat;
use serde::{Deserialize, Serialize};

/// The largest stat cache read back (about 150 bytes an entry: over 100,000 output files).
const MAX_BYTES: u64 = 64 << 20;

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
struct Entry {
    stat: FileStat,
    digest: String,
}

#[derive(Debug, Serialize, Deserialize)]
struct Sealed {
    format: u32,
    /// What the names are relative to (empty for plugin files, whose names are their paths).
    scope: String,
    /// Hex of the keyed blake3 of the scope and the entries as JSON.
    mac: String,
    entries: BTreeMap<String, Entry>,
}

/// A stat cache, loaded for a run and saved after it when it learnt something.
pub(crate) struct StatCache {
    path: PathBuf,
    key: [u8; 32],
    scope: String,
    entries: BTreeMap<String, Entry>,
    /// The names this run looked up or recorded ([`StatCache::keep_only_touched`]).
    touched: std::collections::HashSet<String>,
    changed: bool,
}

impl std::fmt::Debug for StatCache {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Never the key.
        f.debug_struct("StatCache")
            .field("path", &self.path)
            .field("entries", &self.entries.len())
            .finish_non_exhaustive()
    }
}

fn mac(key: &[u8; 32], scope: &str, entries: &BTreeMap<String, Entry>) -> String {
    let mut hasher = blake3::Hasher::new_keyed(key);
    hasher.update(&(scope.len() as u64).to_le_bytes());
    hasher.update(scope.as_bytes());
    hasher.update(&serde_json::to_vec(entries).unwrap_or_default());
    hasher.finalize().to_hex().to_string()
}

impl StatCache {
    /// Reads the cache at `path` (an empty one when it is missing, unreadable, too large, of
    /// another format or scope, or not sealed with `secret`).
    pub(crate) fn load(path: PathBuf, secret: &[u8; 32], scope: &str) -> StatCache {
        let key = blake3::derive_key("qpf stat cache v1", secret);
        let entries = qpf_core::fs::read_regular(&path, MAX_BYTES)
            .ok()
            .and_then(|bytes| serde_json::from_slice::<Sealed>(&bytes).ok())
            .filter(|s| s.format == 1 && s.scope == scope && s.mac == mac(&key, scope, &s.entries))
            .map(|s| s.entries)
            .unwrap_or_default();
        StatCache { path, key, scope: scope.to_owned(), entries, touched: Default::default(), changed: false }
    }

    /// The recorded digest of `name`, when the file now has the stat it had when recorded.
    pub(crate) fn lookup(&mut self, name: &str, now: Option<&FileStat>) -> Option<&str> {
        if !self.touched.contains(name) {
            self.touched.insert(name.to_owned());
        }
        let entry = self.entries.get(name)?;
        (Some(&entry.stat) == now).then_some(entry.digest.as_str())
    }

    /// Drops the entries this run neither looked up nor recorded (files no longer produced), so
    /// that the cache holds what the last run used, not every file it ever saw.
    pub(crate) fn keep_only_touched(&mut self) {
        let before = self.entries.len();
        self.entries.retain(|name, _| self.touched.contains(name));
        self.changed |= self.entries.len() != before;
    }

    /// Records what hashing `name` found: its stat before and after it was read. Only a file that
    /// did not change while it was read and has settled is recorded; anything else forgets it.
    pub(crate) fn record(&mut self, name: &str, before: Option<FileStat>, after: Option<FileStat>, digest: &str) {
        match (before, after) {
            (Some(before), Some(after)) if before == after && after.settled() => {
                let entry = Entry { stat: after, digest: digest.to_owned() };
                if self.entries.get(name) != Some(&entry) {
                    self.entries.insert(name.to_owned(), entry);
                    self.changed = true;
                }
            }
            _ => self.forget(name),
        }
    }

    /// Forgets `name` (a file just written: hashed again next time, once settled).
    pub(crate) fn forget(&mut self, name: &str) {
        self.changed |= self.entries.remove(name).is_some();
    }

    /// The digest (`blake3:<hex>`) of the regular file at `path` of at most `limit` bytes: from
    /// the cache when the file is as it was when hashed, else read (as
    /// [`qpf_core::fs::read_regular`] does, with its errors) and hashed. Plugin files are named by
    /// their path.
    pub(crate) fn digest(&mut self, path: &Path, limit: u64) -> Result<String, qpf_core::fs::ReadError> {
        let name = path.to_string_lossy().into_owned();
        let before = FileStat::of(path);
        if let Some(digest) = self.lookup(&name, before.as_ref()).filter(|_| before.is_some_and(|s| s.size <= limit)) {
            return Ok(digest.to_owned());
        }
        let bytes = qpf_core::fs::read_regular(path, limit)?;
        let digest = crate::writer::digest_of(&bytes);
        self.record(&name, before, FileStat::of(path), &digest);
        Ok(digest)
    }

    /// Writes the cache back when it changed (atomically; a failure only costs hashing again).
    pub(crate) fn save(&mut self) {
        if !std::mem::take(&mut self.changed) {
            return;
        }
        let Some(dir) = self.path.parent() else { return };
        let sealed = Sealed {
            format: 1,
            mac: mac(&self.key, &self.scope, &self.entries),
            scope: self.scope.clone(),
            entries: std::mem::take(&mut self.entries),
        };
        let json = serde_json::to_vec(&sealed);
        self.entries = sealed.entries;
        let Ok(json) = json else { return };
        let _ = std::fs::create_dir_all(dir).and_then(|()| {
            let mut tmp = tempfile::NamedTempFile::new_in(dir)?;
            std::io::Write::write_all(&mut tmp, &json)?;
            tmp.persist(&self.path).map(|_| ()).map_err(|e| e.error)
        });
    }
}

#[cfg(all(test, unix))]
mod tests {
    use super::*;

    /// Backdates the modification time, then waits until the change time (now) is settled too.
    fn old(path: &Path) {
        let past = std::time::SystemTime::now() - std::time::Duration::from_secs(60);
        std::fs::File::options().write(true).open(path).expect("open").set_modified(past).expect("set mtime");
        std::thread::sleep(std::time::Duration::from_millis(2100));
    }

    #[test]
    fn an_unchanged_file_is_not_read_again_and_any_write_is_noticed() {
        let dir = tempfile::tempdir().expect("temp dir");
        let (file, cache) = (dir.path().join("p.wasm"), dir.path().join("pins.json"));
        std::fs::write(&file, b"one").expect("write");
        old(&file);
        let mut pins = StatCache::load(cache.clone(), &[1; 32], "");
        assert_eq!(pins.digest(&file, 1024).expect("hashes"), crate::writer::digest_of(b"one"));
        pins.save();

        // Cached: the entry answers (proved by planting another digest under a valid seal).
        let mut pins = StatCache::load(cache.clone(), &[1; 32], "");
        assert_eq!(pins.entries.len(), 1);
        pins.entries.values_mut().for_each(|e| e.digest = "blake3:planted".into());
        assert_eq!(pins.digest(&file, 1024).expect("cached"), "blake3:planted");

        // The same size and an old modification time, but written: the change time moved.
        std::fs::write(&file, b"two").expect("write");
        let past = std::time::SystemTime::now() - std::time::Duration::from_secs(60);
        std::fs::File::options().write(true).open(&file).expect("open").set_modified(past).expect("set mtime");
        assert_eq!(pins.digest(&file, 1024).expect("hashes"), crate::writer::digest_of(b"two"));
    }

    #[test]
    fn only_the_files_a_run_looked_at_are_kept() {
        let dir = tempfile::tempdir().expect("temp dir");
        let cache = dir.path().join("outputs.json");
        let (a, b) = (dir.path().join("a"), dir.path().join("b"));
        std::fs::write(&a, b"a").expect("write");
        std::fs::write(&b, b"b").expect("write");
        let past = std::time::SystemTime::now() - std::time::Duration::from_secs(60);
        std::fs::File::options().write(true).open(&b).expect("open").set_modified(past).expect("set mtime");
        old(&a); // and waits for both to settle
        let mut stats = StatCache::load(cache.clone(), &[1; 32], "out");
        stats.digest(&a, 1024).expect("hashes");
        stats.digest(&b, 1024).expect("hashes");
        stats.save();
        let mut stats = StatCache::load(cache.clone(), &[1; 32], "out");
        assert_eq!(stats.entries.len(), 2);
        stats.digest(&a, 1024).expect("cached");
        stats.keep_only_touched();
        stats.save();
        let kept = StatCache::load(cache, &[1; 32], "out");
        assert_eq!(kept.entries.keys().collect::<Vec<_>>(), [&a.to_string_lossy().into_owned()]);
    }

    #[test]
    fn a_cache_not_sealed_with_the_users_secret_and_a_racy_file_are_ignored() {
        let dir = tempfile::tempdir().expect("temp dir");
        let (file, cache) = (dir.path().join("p.wasm"), dir.path().join("pins.json"));
        std::fs::write(&file, b"one").expect("write");
        old(&file);
        let mut pins = StatCache::load(cache.clone(), &[1; 32], "");
        pins.digest(&file, 1024).expect("hashes");
        pins.save();
        assert_eq!(StatCache::load(cache.clone(), &[2; 32], "").entries.len(), 0, "another secret");
        assert_eq!(StatCache::load(cache.clone(), &[1; 32], "out").entries.len(), 0, "another scope");
        let text = std::fs::read_to_string(&cache).expect("cache");
        std::fs::write(&cache, text.replace("blake3:", "blake3:0")).expect("tamper");
        assert_eq!(StatCache::load(cache.clone(), &[1; 32], "").entries.len(), 0, "tampered");

        // Just written: hashed, not recorded.
        std::fs::write(&file, b"new").expect("write");
        let mut pins = StatCache::load(dir.path().join("other.json"), &[1; 32], "");
        pins.digest(&file, 1024).expect("hashes");
        assert!(pins.entries.is_empty());
        // Too large is the same error as reading would give.
        assert!(matches!(pins.digest(&file, 2), Err(qpf_core::fs::ReadError::TooLarge { .. })));
    }
}
