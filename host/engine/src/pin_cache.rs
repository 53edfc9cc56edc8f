//! The pin cache (`.qpf/pins.json`): the digest of each plugin file as it was last hashed, with
//! the file's identity and times, so that a run whose plugin files did not change does not read
//! and hash tens of megabytes of components again just to check their pins. The idea is git's
//! index: a file whose device, inode, size, modification time and change time (to the
//! nanosecond) are what they were when it was hashed has the same bytes.
//!
//! Why that is safe here: every write to a file changes its modification and change times, and
//! the change time cannot be set from user space (`utimensat` sets it to now), so a swapped or
//! edited plugin file no longer matches its entry and is hashed again. A file modified in the two
//! seconds before it was hashed (or whose inode changed then) is not recorded ("racy", as git calls it: on a file system with
//! coarse timestamps a second write in the same tick would keep its times). The cache file is
//! sealed with a MAC under the user's secret ([`crate::secret`]): an entry nobody with the secret
//! wrote, or a cache file that does not parse, is ignored and the files are hashed. On systems
//! without these fields (not Unix), nothing is cached.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

/// The largest pin cache read back (a project with thousands of plugins stays far below it).
const MAX_BYTES: u64 = 4 << 20;

use qpf_core::fs::FileStat;

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
struct Entry {
    stat: FileStat,
    digest: String,
}

#[derive(Debug, Serialize, Deserialize)]
struct Sealed {
    format: u32,
    /// Hex of the keyed blake3 of `entries` as JSON.
    mac: String,
    entries: BTreeMap<String, Entry>,
}

/// The cache, loaded for one check of the pins and saved after it when it learnt something.
pub(crate) struct PinCache {
    path: PathBuf,
    key: [u8; 32],
    entries: BTreeMap<String, Entry>,
    changed: bool,
}

fn mac(key: &[u8; 32], entries: &BTreeMap<String, Entry>) -> String {
    let json = serde_json::to_vec(entries).unwrap_or_default();
    blake3::keyed_hash(key, &json).to_hex().to_string()
}

impl PinCache {
    /// Reads the cache at `path` (an empty one when it is missing, unreadable, too large, of
    /// another format or not sealed with `secret`).
    pub(crate) fn load(path: PathBuf, secret: &[u8; 32]) -> PinCache {
        let key = blake3::derive_key("qpf pin cache v1", secret);
        let entries = qpf_core::fs::read_regular(&path, MAX_BYTES)
            .ok()
            .and_then(|bytes| serde_json::from_slice::<Sealed>(&bytes).ok())
            .filter(|s| s.format == 1 && s.mac == mac(&key, &s.entries))
            .map(|s| s.entries)
            .unwrap_or_default();
        PinCache { path, key, entries, changed: false }
    }

    /// The digest (`blake3:<hex>`) of the regular file at `path` of at most `limit` bytes: from
    /// the cache when the file is as it was when hashed, else read (as
    /// [`qpf_core::fs::read_regular`] does, with its errors) and hashed.
    pub(crate) fn digest(&mut self, path: &Path, limit: u64) -> Result<String, qpf_core::fs::ReadError> {
        let name = path.to_string_lossy().into_owned();
        let before = FileStat::of(path);
        if let (Some(stat), Some(entry)) = (&before, self.entries.get(&name))
            && entry.stat == *stat
            && stat.size <= limit
        {
            return Ok(entry.digest.clone());
        }
        let bytes = qpf_core::fs::read_regular(path, limit)?;
        let digest = crate::writer::digest_of(&bytes);
        let after = FileStat::of(path);
        match (before, after) {
            // Unchanged while it was read, and not modified too recently to trust its times.
            (Some(before), Some(after)) if before == after && after.settled() => {
                let entry = Entry { stat: after, digest: digest.clone() };
                if self.entries.get(&name) != Some(&entry) {
                    self.entries.insert(name, entry);
                    self.changed = true;
                }
            }
            _ => {
                self.changed |= self.entries.remove(&name).is_some();
            }
        }
        Ok(digest)
    }

    /// Writes the cache back when it changed (atomically; a failure only costs hashing again).
    pub(crate) fn save(self) {
        if !self.changed {
            return;
        }
        let Some(dir) = self.path.parent() else { return };
        let sealed = Sealed { format: 1, mac: mac(&self.key, &self.entries), entries: self.entries };
        let Ok(json) = serde_json::to_vec(&sealed) else { return };
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
        let mut pins = PinCache::load(cache.clone(), &[1; 32]);
        assert_eq!(pins.digest(&file, 1024).expect("hashes"), crate::writer::digest_of(b"one"));
        pins.save();

        // Cached: the entry answers (proved by planting another digest under a valid seal).
        let mut pins = PinCache::load(cache.clone(), &[1; 32]);
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
    fn a_cache_not_sealed_with_the_users_secret_and_a_racy_file_are_ignored() {
        let dir = tempfile::tempdir().expect("temp dir");
        let (file, cache) = (dir.path().join("p.wasm"), dir.path().join("pins.json"));
        std::fs::write(&file, b"one").expect("write");
        old(&file);
        let mut pins = PinCache::load(cache.clone(), &[1; 32]);
        pins.digest(&file, 1024).expect("hashes");
        pins.save();
        assert_eq!(PinCache::load(cache.clone(), &[2; 32]).entries.len(), 0, "another secret");
        let text = std::fs::read_to_string(&cache).expect("cache");
        std::fs::write(&cache, text.replace("blake3:", "blake3:0")).expect("tamper");
        assert_eq!(PinCache::load(cache.clone(), &[1; 32]).entries.len(), 0, "tampered");

        // Just written: hashed, not recorded.
        std::fs::write(&file, b"new").expect("write");
        let mut pins = PinCache::load(dir.path().join("other.json"), &[1; 32]);
        pins.digest(&file, 1024).expect("hashes");
        assert!(pins.entries.is_empty());
        // Too large is the same error as reading would give.
        assert!(matches!(pins.digest(&file, 2), Err(qpf_core::fs::ReadError::TooLarge { .. })));
    }
}
