//! An invocation cache whose manifests are appended to pack files instead of written one file
//! each, for a long-lived process (`qpf serve`) that opens the cache once: a miss then costs one
//! append to an open file, not the creation of a file, which dominates a miss on ext4 (see
//! docs/benchmarks.md). Blobs (files too large or not UTF-8 to go inline) stay in
//! [`LocalCache`]'s folder layout.
//!
//! Layout under the root: `packs/<generation>.pack`, each a sequence of records
//! `qpf-pack/1 <key> <length>\n<sealed manifest>\n`. The sealed manifest is exactly what
//! [`LocalCache`] stores in a manifest file (MAC included), and it is verified the same way on
//! every read: a pack edited by anyone without the key yields misses, never a forged hit.
//!
//! Opening scans the packs into an in-memory index (key to position). A record cut short by a
//! crash ends the scan, and the pack is cut back to the last whole record. When the current pack
//! passes its size limit a new generation starts, and only the two newest are kept: the cache
//! holds at most about twice the limit, and what goes first is what was stored longest ago.

use std::collections::HashMap;
use std::fs::File;
use std::io::{BufRead, BufReader, Read, Seek, Write};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use crate::cache::{CacheError, InvocationCache, LocalCache, Manifest};

/// The first bytes of every record.
const RECORD_PREFIX: &str = "qpf-pack/1 ";

/// Longest record header read (the key and the length).
const MAX_HEADER_BYTES: usize = 512;

/// Default size at which a pack is closed and a new generation starts.
pub const DEFAULT_PACK_BYTES: u64 = 256 << 20;

/// Where a manifest is: generation, offset of its sealed bytes, their length.
#[derive(Debug, Clone, Copy)]
struct Position {
    generation: u64,
    offset: u64,
    len: usize,
}

#[derive(Debug)]
struct Pack {
    generation: u64,
    /// Shared, so that a hit reads it (positioned reads) without holding the lock or duplicating
    /// the descriptor.
    file: Arc<File>,
    len: u64,
}

#[derive(Debug)]
struct State {
    index: HashMap<String, Position>,
    /// The older generation (read only) and the current one (appended to).
    previous: Option<Pack>,
    current: Pack,
}

/// The pack-file cache (see the module documentation).
#[derive(Debug)]
pub struct PackCache {
    dir: PathBuf,
    files: LocalCache,
    pack_bytes: u64,
    state: Mutex<State>,
}

fn io(path: &Path) -> impl FnOnce(std::io::Error) -> CacheError + '_ {
    move |source| CacheError::Io { path: path.to_owned(), source }
}

fn pack_path(dir: &Path, generation: u64) -> PathBuf {
    dir.join(format!("{generation}.pack"))
}

impl PackCache {
    /// Opens (or creates) the cache at `root`, sealed with a key derived from `secret` like
    /// [`LocalCache::new`], starting a new generation past `pack_bytes`
    /// ([`DEFAULT_PACK_BYTES`] is a fair choice).
    ///
    /// # Errors
    /// When the packs folder cannot be created, listed, read or repaired.
    pub fn open(root: &Path, secret: &[u8; 32], pack_bytes: u64) -> Result<PackCache, CacheError> {
        let dir = root.join("packs");
        std::fs::create_dir_all(&dir).map_err(io(&dir))?;
        let mut generations = Vec::new();
        for entry in std::fs::read_dir(&dir).map_err(io(&dir))? {
            let entry = entry.map_err(io(&dir))?;
            let name = entry.file_name();
            if let Some(g) = name.to_str().and_then(|n| n.strip_suffix(".pack")).and_then(|n| n.parse::<u64>().ok()) {
                generations.push(g);
            }
        }
        generations.sort_unstable();
        // Only the two newest generations are kept.
        while generations.len() > 2 {
            let old = generations.remove(0);
            let path = pack_path(&dir, old);
            std::fs::remove_file(&path).map_err(io(&path))?;
        }
        let mut index = HashMap::new();
        let mut packs = Vec::new();
        for generation in generations {
            packs.push(scan(&dir, generation, &mut index)?);
        }
        let current = match packs.pop() {
            Some(p) => p,
            None => create(&dir, 0)?,
        };
        let previous = packs.pop();
        Ok(PackCache {
            files: LocalCache::new(root, secret),
            dir,
            pack_bytes: pack_bytes.max(1),
            state: Mutex::new(State { index, previous, current }),
        })
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// How many entries the index holds.
    pub fn len(&self) -> usize {
        self.lock().index.len()
    }

    /// Whether the cache holds no entry.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

fn create(dir: &Path, generation: u64) -> Result<Pack, CacheError> {
    let path = pack_path(dir, generation);
    let file = File::options().create(true).append(true).read(true).open(&path).map_err(io(&path))?;
    Ok(Pack { generation, file: Arc::new(file), len: 0 })
}

/// Reads a pack's records into `index`, and cuts the pack back to its last whole record.
fn scan(dir: &Path, generation: u64, index: &mut HashMap<String, Position>) -> Result<Pack, CacheError> {
    let path = pack_path(dir, generation);
    let file = File::options().append(true).read(true).open(&path).map_err(io(&path))?;
    let total = file.metadata().map_err(io(&path))?.len();
    let mut reader = BufReader::new(file.try_clone().map_err(io(&path))?);
    let mut at = 0u64;
    let mut header = Vec::new();
    loop {
        header.clear();
        let read = (&mut reader).take(MAX_HEADER_BYTES as u64).read_until(b'\n', &mut header).map_err(io(&path))?;
        if read == 0 {
            break;
        }
        let Some((key, len)) = parse_header(&header) else { break };
        let body = at + read as u64;
        let end = body + len as u64 + 1;
        if end > total {
            break;
        }
        // Skip the body, then check the record's closing newline.
        std::io::copy(&mut (&mut reader).take(len as u64), &mut std::io::sink()).map_err(io(&path))?;
        let mut newline = [0u8; 1];
        if reader.read_exact(&mut newline).is_err() || newline[0] != b'\n' {
            break;
        }
        index.insert(key, Position { generation, offset: body, len });
        at = end;
    }
    if at < total {
        tracing::warn!("cache pack `{}`: cutting a damaged or unfinished record at byte {at}", path.display());
        file.set_len(at).map_err(io(&path))?;
    }
    Ok(Pack { generation, file: Arc::new(file), len: at })
}

fn parse_header(header: &[u8]) -> Option<(String, usize)> {
    let line = std::str::from_utf8(header.strip_suffix(b"\n")?).ok()?;
    let (key, len) = line.strip_prefix(RECORD_PREFIX)?.split_once(' ')?;
    if key.is_empty() || key.contains(char::is_whitespace) {
        return None;
    }
    // A record longer than any manifest the cache would read is damage, not an entry.
    let len: usize = len.parse().ok()?;
    (len as u64 <= crate::cache::MAX_MANIFEST_BYTES).then(|| (key.to_owned(), len))
}

/// Reads `buf.len()` bytes at `offset` without moving a shared cursor.
fn read_at(file: &File, buf: &mut [u8], offset: u64) -> std::io::Result<()> {
    #[cfg(unix)]
    {
        std::os::unix::fs::FileExt::read_exact_at(file, buf, offset)
    }
    #[cfg(windows)]
    {
        let mut done = 0;
        while done < buf.len() {
            let n = std::os::windows::fs::FileExt::seek_read(file, &mut buf[done..], offset + done as u64)?;
            if n == 0 {
                return Err(std::io::ErrorKind::UnexpectedEof.into());
            }
            done += n;
        }
        Ok(())
    }
}

impl InvocationCache for PackCache {
    fn manifest(&self, key: &str) -> Result<Option<Manifest>, CacheError> {
        let (position, file) = {
            let state = self.lock();
            let Some(position) = state.index.get(key).copied() else { return Ok(None) };
            let pack = if position.generation == state.current.generation {
                &state.current
            } else {
                match &state.previous {
                    Some(p) if p.generation == position.generation => p,
                    _ => return Ok(None),
                }
            };
            (position, pack.file.clone())
        };
        let mut sealed = vec![0u8; position.len];
        read_at(&file, &mut sealed, position.offset).map_err(io(&pack_path(&self.dir, position.generation)))?;
        self.files.open_sealed(key, &sealed)
    }

    fn blob(&self, digest: &str) -> Result<Vec<u8>, CacheError> {
        self.files.blob(digest)
    }

    fn put(&self, manifest: &Manifest, blobs: &[(&str, &[u8])]) -> Result<(), CacheError> {
        if manifest.key.is_empty() || manifest.key.contains(char::is_whitespace) {
            return Err(CacheError::Corrupted(manifest.key.clone()));
        }
        let sealed = self.files.store_blobs_and_seal(manifest, blobs)?;
        let mut record = format!("{RECORD_PREFIX}{} {}\n", manifest.key, sealed.len()).into_bytes();
        let body = record.len() as u64;
        record.extend_from_slice(&sealed);
        record.push(b'\n');
        let mut state = self.lock();
        if state.current.len >= self.pack_bytes {
            let next = create(&self.dir, state.current.generation + 1)?;
            let previous = std::mem::replace(&mut state.current, next);
            if let Some(dropped) = state.previous.replace(previous) {
                let path = pack_path(&self.dir, dropped.generation);
                state.index.retain(|_, p| p.generation != dropped.generation);
                drop(dropped);
                std::fs::remove_file(&path).map_err(io(&path))?;
            }
        }
        let path = pack_path(&self.dir, state.current.generation);
        // One write of the whole record to a file opened for appending; where it landed is read
        // back from the file, so another process appending to the same pack (a second instance
        // during a reload) cannot put the index off.
        let mut file = &*state.current.file;
        file.write_all(&record).map_err(io(&path))?;
        let end = file.stream_position().map_err(io(&path))?;
        let start = end.saturating_sub(record.len() as u64);
        let position = Position { generation: state.current.generation, offset: start + body, len: sealed.len() };
        state.current.len = end;
        state.index.insert(manifest.key.clone(), position);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use crate::cache::{CachedFile, MANIFEST_FORMAT};

    fn manifest(key: &str, text: &str) -> (Manifest, Vec<u8>) {
        let bytes = text.as_bytes().to_vec();
        let m = Manifest {
            format: MANIFEST_FORMAT,
            key: key.into(),
            files: vec![CachedFile {
                path: "a.txt".into(),
                digest: crate::writer::digest_of(&bytes),
                size: bytes.len() as u64,
                inline: None,
                mode: qpf_runtime::FileMode::Generated,
            }],
            diagnostics: vec![],
            fuel: 7,
            spawns: vec![],
        };
        (m, bytes)
    }

    fn put(cache: &PackCache, key: &str, text: &str) -> Manifest {
        let (m, bytes) = manifest(key, text);
        cache.put(&m, &[(&m.files[0].digest, &bytes)]).unwrap();
        m
    }

    fn contents(cache: &PackCache, key: &str) -> Option<String> {
        let m = cache.manifest(key).unwrap()?;
        Some(String::from_utf8(cache.file(&m.files[0]).unwrap()).unwrap())
    }

    #[test]
    fn entries_survive_reopening_and_small_files_live_inside_the_pack() {
        let tmp = tempfile::tempdir().unwrap();
        let cache = PackCache::open(tmp.path(), &[1; 32], DEFAULT_PACK_BYTES).unwrap();
        assert_eq!(contents(&cache, "blake3:a"), None);
        put(&cache, "blake3:a", "alpha");
        put(&cache, "blake3:b", &"b".repeat(10_000));
        assert_eq!(contents(&cache, "blake3:a").as_deref(), Some("alpha"));
        drop(cache);
        let cache = PackCache::open(tmp.path(), &[1; 32], DEFAULT_PACK_BYTES).unwrap();
        assert_eq!(cache.len(), 2);
        assert_eq!(contents(&cache, "blake3:a").as_deref(), Some("alpha"));
        assert_eq!(contents(&cache, "blake3:b"), Some("b".repeat(10_000)));
        // The small file is inline: no blob was written for it, one was for the large file.
        let blobs: usize = std::fs::read_dir(tmp.path().join("blobs"))
            .unwrap()
            .map(|d| std::fs::read_dir(d.unwrap().path()).unwrap().count())
            .sum();
        assert_eq!(blobs, 1);
    }

    #[test]
    fn another_key_or_an_edited_pack_is_a_miss_or_an_error_never_a_forged_hit() {
        let tmp = tempfile::tempdir().unwrap();
        let cache = PackCache::open(tmp.path(), &[1; 32], DEFAULT_PACK_BYTES).unwrap();
        put(&cache, "blake3:a", "alpha");
        drop(cache);
        // Another secret: the record does not verify.
        let other = PackCache::open(tmp.path(), &[2; 32], DEFAULT_PACK_BYTES).unwrap();
        assert!(matches!(other.manifest("blake3:a"), Err(CacheError::Corrupted(_))));
        drop(other);
        // Edited bytes (same length): the MAC fails.
        let path = tmp.path().join("packs/0.pack");
        let text = std::fs::read_to_string(&path).unwrap().replace("alpha", "omega");
        std::fs::write(&path, text).unwrap();
        let cache = PackCache::open(tmp.path(), &[1; 32], DEFAULT_PACK_BYTES).unwrap();
        assert!(matches!(cache.manifest("blake3:a"), Err(CacheError::Corrupted(_))));
    }

    #[test]
    fn a_record_cut_short_by_a_crash_is_dropped_and_the_pack_repaired() {
        let tmp = tempfile::tempdir().unwrap();
        let cache = PackCache::open(tmp.path(), &[1; 32], DEFAULT_PACK_BYTES).unwrap();
        put(&cache, "blake3:a", "alpha");
        put(&cache, "blake3:b", "beta");
        drop(cache);
        let path = tmp.path().join("packs/0.pack");
        let whole = std::fs::read(&path).unwrap();
        for cut in [whole.len() - 1, whole.len() - 10, whole.len() - 40] {
            std::fs::write(&path, &whole[..cut]).unwrap();
            let cache = PackCache::open(tmp.path(), &[1; 32], DEFAULT_PACK_BYTES).unwrap();
            assert_eq!(contents(&cache, "blake3:a").as_deref(), Some("alpha"), "cut at {cut}");
            assert_eq!(contents(&cache, "blake3:b"), None);
            // Appending after the repair gives whole records again.
            put(&cache, "blake3:c", "gamma");
            drop(cache);
            let cache = PackCache::open(tmp.path(), &[1; 32], DEFAULT_PACK_BYTES).unwrap();
            assert_eq!(contents(&cache, "blake3:c").as_deref(), Some("gamma"), "cut at {cut}");
            std::fs::write(&path, &whole).unwrap();
        }
        // Garbage instead of a header ends the scan the same way.
        std::fs::write(&path, [&whole[..], b"not a record\n"].concat()).unwrap();
        let cache = PackCache::open(tmp.path(), &[1; 32], DEFAULT_PACK_BYTES).unwrap();
        assert_eq!(cache.len(), 2);
        assert_eq!(std::fs::read(&path).unwrap(), whole);
        // So does a header claiming a record larger than any manifest (no huge allocation).
        drop(cache);
        let huge = format!("{RECORD_PREFIX}blake3:z {}\n", 1u64 << 40);
        std::fs::write(&path, [&whole[..], huge.as_bytes(), &[b'x'; 100]].concat()).unwrap();
        let cache = PackCache::open(tmp.path(), &[1; 32], DEFAULT_PACK_BYTES).unwrap();
        assert_eq!(cache.len(), 2);
        assert_eq!(std::fs::read(&path).unwrap(), whole);
    }

    #[test]
    fn past_the_size_limit_a_new_generation_starts_and_only_two_are_kept() {
        let tmp = tempfile::tempdir().unwrap();
        let cache = PackCache::open(tmp.path(), &[1; 32], 1).unwrap();
        for (i, key) in ["blake3:a", "blake3:b", "blake3:c"].into_iter().enumerate() {
            put(&cache, key, &format!("entry {i}"));
        }
        // Each put past the limit started a generation: `a` went with the oldest.
        assert_eq!(contents(&cache, "blake3:a"), None);
        assert_eq!(contents(&cache, "blake3:b").as_deref(), Some("entry 1"));
        assert_eq!(contents(&cache, "blake3:c").as_deref(), Some("entry 2"));
        let mut packs: Vec<_> =
            std::fs::read_dir(tmp.path().join("packs")).unwrap().map(|e| e.unwrap().file_name()).collect();
        packs.sort();
        assert_eq!(packs, ["1.pack", "2.pack"]);
        drop(cache);
        let cache = PackCache::open(tmp.path(), &[1; 32], 1).unwrap();
        assert_eq!(cache.len(), 2);
    }
}
