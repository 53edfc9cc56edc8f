//! The remote tier of the invocation cache: local first, then a shared remote store that CI and
//! every developer read (object storage, a Remote Execution API cache); a remote hit fills the
//! local cache.
//!
//! The remote is never trusted. Its entries are QPF's own manifests, each carried with its
//! blake3 digest (and, with a team key, a MAC); every blob it serves is checked against the blake3
//! digest the manifest names before anything is kept or written. A corrupt, truncated or missing
//! entry or blob is a miss (the plugin runs locally) and a counted warning. A remote that fails is
//! a counted warning too; after [`MAX_CONSECUTIVE_ERRORS`] failures in a row it is left alone for
//! the rest of the run, so a remote that goes down costs a few timeouts, not one per invocation.
//! What the remote did is in the report ([`RemoteSummary`]), so a remote that silently does
//! nothing shows.
//!
//! The engine opens no connection itself: a [`RemoteStore`] is handed in by the embedder (the CLI
//! builds one from `--remote-cache URL`).

use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicUsize, Ordering};

use serde::Serialize;

use crate::cache::{CacheError, InvocationCache, MANIFEST_FORMAT, Manifest};

/// Failures in a row after which the remote is not asked again during a run.
pub const MAX_CONSECUTIVE_ERRORS: u32 = 3;

/// Entries read ahead per request batch, the largest entry read ahead (larger ones are read
/// alone when used), and the most bytes held read ahead.
const PREFETCH_CHUNK: usize = 1024;
const PREFETCH_ENTRY_MAX: u64 = 1 << 20;
const PREFETCH_BUDGET: u64 = 256 << 20;

/// The largest remote manifest read.
pub const MAX_REMOTE_MANIFEST_BYTES: u64 = 16 << 20;

/// The first line of a remote manifest: format, then `blake3:<hex>` of the JSON that follows, or
/// `mac:<hex>` (keyed blake3) with a team key.
const MAGIC: &str = "qpf-remote-manifest/1";

/// A shared store of cache entries and blobs. Implementations move bytes; everything they return is
/// checked here.
pub trait RemoteStore: Send + Sync + std::fmt::Debug {
    /// Where it is, for messages and the report, without credentials (e.g. `s3://bucket/prefix`).
    fn describe(&self) -> String;

    /// The entry stored under `name`, at most `limit` bytes (a larger one is an error).
    ///
    /// # Errors
    /// The store failed or the entry is over `limit`.
    fn get_entry(&self, name: &str, limit: u64) -> Result<Option<Vec<u8>>, RemoteError>;

    /// Many entries at once (a store with latency answers them concurrently); the default asks
    /// one after the other. Stops at the first failure: the entries after it are not in the map.
    ///
    /// # Errors
    /// The first failure.
    fn get_entries(
        &self,
        names: &[String],
        limit: u64,
    ) -> Result<std::collections::HashMap<String, Option<Vec<u8>>>, RemoteError> {
        let mut out = std::collections::HashMap::new();
        for name in names {
            out.insert(name.clone(), self.get_entry(name, limit)?);
        }
        Ok(out)
    }

    /// The blob of `digest` (`blake3:<hex>`), which must be `size` bytes.
    ///
    /// # Errors
    /// The store failed or the blob has another size.
    fn get_blob(&self, digest: &str, size: u64) -> Result<Option<Vec<u8>>, RemoteError>;

    /// Stores a blob unless the store has it: create-only, an existing object is success. With
    /// `replace`, the object is overwritten: the run found wrong bytes under this digest.
    ///
    /// # Errors
    /// The store failed.
    fn put_blob(&self, digest: &str, bytes: &[u8], replace: bool) -> Result<(), RemoteError>;

    /// Stores an entry (after its blobs). `blobs` are the digests and sizes of the blobs it
    /// names (not the files inlined in it), for stores that link an entry to its blobs (a REAPI
    /// ActionResult lists its outputs).
    ///
    /// # Errors
    /// The store failed.
    fn put_entry(&self, name: &str, bytes: &[u8], blobs: &[(String, u64)]) -> Result<(), RemoteError>;

    /// Whether the store takes new entries. A REAPI server may say it does not
    /// (`update_enabled = false`): the run then reads only, as with `--remote-read-only`.
    fn accepts_updates(&self) -> bool {
        true
    }
}

/// A remote store's failure, as text (never with credentials).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct RemoteError(pub String);

/// How a run uses a remote store.
#[derive(Debug, Clone)]
pub struct RemoteSettings {
    /// The store.
    pub store: std::sync::Arc<dyn RemoteStore>,
    /// Read, never write (`--remote-read-only`: builds of untrusted changes).
    pub read_only: bool,
    /// Mixed into every entry name: a new salt disowns every entry written under the old one.
    pub salt: String,
    /// A team key: entries are MAC-sealed with it, and entries without a valid MAC are misses.
    /// Without it, entries carry their blake3 digest, which detects corruption but not forgery
    /// (then only the store's write permissions keep poisoned entries out).
    pub key: Option<[u8; 32]>,
}

/// What the remote tier did during a run.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct RemoteSummary {
    /// [`RemoteStore::describe`].
    pub store: String,
    /// Whether the run only read.
    pub read_only: bool,
    /// Invocations served by the remote (then kept locally).
    pub hits: usize,
    /// Invocations the remote did not have.
    pub misses: usize,
    /// Results uploaded (entries; blobs are counted in `blobs_uploaded`).
    pub uploaded: usize,
    /// Blobs uploaded (an existing one counts too: create-only).
    pub blobs_uploaded: usize,
    /// Entries or blobs refused: corrupt, truncated, forged, of another key, or a blob missing.
    pub rejected: usize,
    /// Store failures (each a warning; the run goes on locally).
    pub errors: usize,
    /// Whether the remote was left alone after [`MAX_CONSECUTIVE_ERRORS`] failures in a row.
    pub disabled: bool,
}

/// The local cache with a remote behind it.
pub struct Tiered<'a> {
    local: &'a dyn InvocationCache,
    remote: RemoteSettings,
    hits: AtomicUsize,
    misses: AtomicUsize,
    uploaded: AtomicUsize,
    blobs_uploaded: AtomicUsize,
    rejected: AtomicUsize,
    errors: AtomicUsize,
    in_a_row: AtomicU32,
    disabled: AtomicBool,
    /// Digests under which the remote served wrong bytes: uploaded again with `replace`, since a
    /// create-only put would keep the poison.
    poisoned: Mutex<std::collections::BTreeSet<String>>,
    /// The most files and bytes an entry may name (the project's `max-files` and
    /// `max-output-bytes`): an entry is refused before any of its blobs is read.
    max_files: usize,
    max_bytes: u64,
    /// Send local hits the remote lacks to it (a shard: its results must all be in the remote).
    push_local_hits: bool,
    /// Entries read ahead by [`Tiered::prefetch`], by remote name (taken once).
    prefetched: Mutex<std::collections::HashMap<String, Option<Vec<u8>>>>,
    /// The warnings of the run, in the order they happened (at most [`MAX_WARNINGS`]).
    warnings: Mutex<Vec<String>>,
}

/// Warnings kept per run; the counts go on.
const MAX_WARNINGS: usize = 20;

impl<'a> Tiered<'a> {
    /// `local` first, then `remote`.
    pub fn new(local: &'a dyn InvocationCache, remote: RemoteSettings) -> Tiered<'a> {
        Tiered {
            local,
            remote,
            hits: AtomicUsize::new(0),
            misses: AtomicUsize::new(0),
            uploaded: AtomicUsize::new(0),
            blobs_uploaded: AtomicUsize::new(0),
            rejected: AtomicUsize::new(0),
            errors: AtomicUsize::new(0),
            in_a_row: AtomicU32::new(0),
            disabled: AtomicBool::new(false),
            poisoned: Mutex::new(std::collections::BTreeSet::new()),
            prefetched: Mutex::new(std::collections::HashMap::new()),
            max_files: usize::MAX,
            max_bytes: u64::MAX,
            push_local_hits: false,
            warnings: Mutex::new(Vec::new()),
        }
    }

    /// Sends every local hit the remote lacks to the remote (a shard run, whose results must all
    /// be in the remote for the gather).
    #[must_use]
    pub fn pushing_local_hits(mut self) -> Tiered<'a> {
        self.push_local_hits = true;
        self
    }

    /// Refuses entries naming more than `max_files` files or `max_bytes` bytes in all, before
    /// anything they name is downloaded (a forged entry could name a blob of any size).
    #[must_use]
    pub fn with_limits(mut self, max_files: usize, max_bytes: u64) -> Tiered<'a> {
        self.max_files = max_files;
        self.max_bytes = max_bytes;
        self
    }

    /// What the remote did.
    pub fn summary(&self) -> RemoteSummary {
        RemoteSummary {
            store: self.remote.store.describe(),
            read_only: self.remote.read_only,
            hits: self.hits.load(Ordering::Relaxed),
            misses: self.misses.load(Ordering::Relaxed),
            uploaded: self.uploaded.load(Ordering::Relaxed),
            blobs_uploaded: self.blobs_uploaded.load(Ordering::Relaxed),
            rejected: self.rejected.load(Ordering::Relaxed),
            errors: self.errors.load(Ordering::Relaxed),
            disabled: self.disabled.load(Ordering::Relaxed),
        }
    }

    /// The warnings of the run (the first [`MAX_WARNINGS`]).
    pub fn warnings(&self) -> Vec<String> {
        self.warnings.lock().map(|w| w.clone()).unwrap_or_default()
    }

    fn warn(&self, message: String) {
        // Store and server messages are untrusted text: escaped before they reach a terminal.
        let message = qpf_core::text::escape(&message).into_owned();
        tracing::warn!("{message}");
        if let Ok(mut w) = self.warnings.lock()
            && w.len() < MAX_WARNINGS
        {
            w.push(message);
        }
    }

    /// Counts a store failure; the third in a row turns the remote off for the run.
    fn failed(&self, what: &str, e: &RemoteError) {
        self.errors.fetch_add(1, Ordering::Relaxed);
        let in_a_row = self.in_a_row.fetch_add(1, Ordering::Relaxed) + 1;
        self.warn(format!("remote cache `{}`: {what}: {e}", self.remote.store.describe()));
        if in_a_row >= MAX_CONSECUTIVE_ERRORS && !self.disabled.swap(true, Ordering::Relaxed) {
            self.warn(format!(
                "remote cache `{}`: {in_a_row} failures in a row; not used for the rest of this run",
                self.remote.store.describe()
            ));
        }
    }

    fn succeeded(&self) {
        self.in_a_row.store(0, Ordering::Relaxed);
    }

    fn rejected(&self, message: String) {
        self.rejected.fetch_add(1, Ordering::Relaxed);
        self.warn(format!("remote cache `{}`: {message}; running locally", self.remote.store.describe()));
    }

    fn active(&self) -> bool {
        !self.disabled.load(Ordering::Relaxed)
    }

    /// The remote name of an invocation key: the key itself, or with a salt a digest of both.
    fn name(&self, key: &str) -> String {
        entry_name(&self.remote.salt, key)
    }

    /// Reads ahead, in one batch, the remote entries of the `keys` the local cache lacks, so that
    /// a run against a warm remote pays the store's latency once, not once per invocation. What
    /// is read is checked when used, like any entry; a failure leaves the rest to be asked one by
    /// one (and counted then).
    pub fn prefetch<'k>(&self, keys: impl Iterator<Item = &'k str>) {
        if !self.active() {
            return;
        }
        let names: Vec<String> =
            keys.filter(|k| self.push_local_hits || !self.local.contains(k)).map(|k| self.name(k)).collect();
        if names.is_empty() {
            return;
        }
        let _span = tracing::info_span!("remote_prefetch", entries = names.len()).entered();
        // Bounded memory: entries over 1 MiB are left to be read alone, and reading ahead stops
        // once 256 MiB are held.
        // Each batch is small enough that, even with every entry at the per-entry maximum, what
        // is held never passes the budget.
        let mut held = 0u64;
        let mut rest = names.as_slice();
        while !rest.is_empty() {
            let room = usize::try_from(PREFETCH_BUDGET.saturating_sub(held) / PREFETCH_ENTRY_MAX).unwrap_or(0);
            if room == 0 {
                break;
            }
            let (chunk, after) = rest.split_at(room.min(PREFETCH_CHUNK).min(rest.len()));
            rest = after;
            let Ok(found) = self.remote.store.get_entries(chunk, PREFETCH_ENTRY_MAX) else { break };
            held += found.values().flatten().map(|e| e.len() as u64).sum::<u64>();
            if let Ok(mut map) = self.prefetched.lock() {
                map.extend(found);
            }
        }
    }

    /// Looks `key` up remotely; a complete, verified entry is copied into the local cache.
    fn fetch(&self, key: &str) -> Option<Manifest> {
        let name = self.name(key);
        let ahead = self.prefetched.lock().ok().and_then(|mut m| m.remove(&name));
        let read = match ahead {
            Some(entry) => Ok(entry),
            None => self.remote.store.get_entry(&name, MAX_REMOTE_MANIFEST_BYTES),
        };
        let bytes = match read {
            Ok(Some(b)) => b,
            Ok(None) => {
                self.succeeded();
                return None;
            }
            Err(e) => {
                self.failed("reading an entry", &e);
                return None;
            }
        };
        self.succeeded();
        let manifest = match open(self.remote.key.as_ref(), &self.remote.salt, key, &bytes) {
            Ok(m) => m,
            Err(why) => {
                self.rejected(format!("entry for key {key} refused ({why})"));
                return None;
            }
        };
        if !within_plugin_budgets(&manifest) {
            self.rejected(format!(
                "entry for key {key} carries more diagnostics, or longer ones, than a plugin may return"
            ));
            return None;
        }
        if manifest.files.iter().any(|f| f.inline.as_ref().is_some_and(|t| t.len() as u64 != f.size)) {
            self.rejected(format!("entry for key {key} has an inline file whose length is not its size"));
            return None;
        }
        let total = manifest.files.iter().fold(0u64, |sum, f| sum.saturating_add(f.size));
        if manifest.files.len() > self.max_files || total > self.max_bytes {
            self.rejected(format!(
                "entry for key {key} names {} files and {total} bytes, over the project's limits ({} files, {} bytes)",
                manifest.files.len(),
                self.max_files,
                self.max_bytes
            ));
            return None;
        }
        let mut blobs = Vec::new();
        for file in manifest.files.iter().filter(|f| f.inline.is_none()) {
            match self.remote.store.get_blob(&file.digest, file.size) {
                Ok(Some(bytes)) if qpf_core::digest_of(&bytes) == file.digest => {
                    blobs.push((file.digest.clone(), bytes))
                }
                Ok(Some(_)) => {
                    self.succeeded();
                    if let Ok(mut p) = self.poisoned.lock() {
                        p.insert(file.digest.clone());
                    }
                    self.rejected(format!("blob {} does not match its digest", file.digest));
                    return None;
                }
                Ok(None) => {
                    self.succeeded();
                    self.rejected(format!("entry for key {key} names blob {}, which the store lacks", file.digest));
                    return None;
                }
                Err(e) => {
                    self.failed("reading a blob", &e);
                    return None;
                }
            }
        }
        for file in manifest.files.iter().filter_map(|f| f.inline.as_ref().map(|t| (f, t))) {
            if qpf_core::digest_of(file.1.as_bytes()) != file.0.digest {
                self.rejected(format!("an inline file of the entry for key {key} does not match its digest"));
                return None;
            }
        }
        let refs: Vec<(&str, &[u8])> = blobs.iter().map(|(d, b)| (d.as_str(), b.as_slice())).collect();
        if let Err(e) = self.local.put(&manifest, &refs) {
            self.warn(format!("the local cache could not keep a remote hit: {e}"));
        }
        Some(manifest)
    }
}

/// Whether an entry's diagnostics fit what the host keeps of a plugin's: at most
/// [`qpf_runtime::budgets::MAX_DIAGNOSTICS`] and a note, each message within its budget (plus the
/// note of what was cut), each pointer within its own. A remote entry is untrusted text bound for
/// the report and the terminal.
fn within_plugin_budgets(manifest: &Manifest) -> bool {
    use qpf_runtime::budgets::{MAX_DIAGNOSTICS, MAX_MESSAGE_BYTES, MAX_POINTER_BYTES};
    manifest.diagnostics.len() <= MAX_DIAGNOSTICS + 1
        && manifest.diagnostics.iter().all(|d| {
            d.message.len() <= MAX_MESSAGE_BYTES + 256
                && d.pointer.as_ref().is_none_or(|p| p.len() <= MAX_POINTER_BYTES)
        })
}

/// The remote name of `key` under `salt`: the key's hex digits without a salt, else the blake3 of
/// both (always `[0-9a-f]`, safe as an object name).
pub fn entry_name(salt: &str, key: &str) -> String {
    let hex = key.strip_prefix("blake3:").filter(|h| h.len() == 64 && h.bytes().all(|b| b.is_ascii_hexdigit()));
    if let (true, Some(hex)) = (salt.is_empty(), hex) {
        hex.to_ascii_lowercase()
    } else {
        let mut h = blake3::Hasher::new_derive_key("qpf remote cache entry name v1");
        h.update(&(salt.len() as u64).to_le_bytes());
        h.update(salt.as_bytes());
        h.update(key.as_bytes());
        h.finalize().to_hex().to_string()
    }
}

/// The MAC key of remote entries, derived from a team key.
fn mac_key(team: &[u8; 32]) -> [u8; 32] {
    blake3::derive_key("qpf remote cache manifest mac v1", team)
}

/// The MAC of an entry: over the salt (length-prefixed) and the JSON, so that an entry copied
/// from an old salt's name to a new one does not verify.
fn mac(team: &[u8; 32], salt: &str, json: &[u8]) -> blake3::Hash {
    let mut h = blake3::Hasher::new_keyed(&mac_key(team));
    h.update(&(salt.len() as u64).to_le_bytes());
    h.update(salt.as_bytes());
    h.update(json);
    h.finalize()
}

/// A manifest as a remote entry: the magic, the JSON's digest or MAC, a newline, the JSON.
pub fn seal(key: Option<&[u8; 32]>, salt: &str, manifest: &Manifest) -> Vec<u8> {
    let json = serde_json::to_vec(manifest).unwrap_or_default();
    let check = match key {
        Some(k) => format!("mac:{}", mac(k, salt, &json).to_hex()),
        None => qpf_core::digest_of(&json),
    };
    let mut out = format!("{MAGIC} {check}\n").into_bytes();
    out.extend_from_slice(&json);
    out
}

/// Checks and parses a remote entry for `key`.
///
/// # Errors
/// Why it is refused (never the entry's own text, which is untrusted).
pub fn open(key: Option<&[u8; 32]>, salt: &str, expected_key: &str, bytes: &[u8]) -> Result<Manifest, String> {
    let newline = bytes.iter().position(|&b| b == b'\n').ok_or("no header line")?;
    let header = std::str::from_utf8(&bytes[..newline]).map_err(|_| "a header that is not UTF-8")?;
    let json = &bytes[newline + 1..];
    let check = header.strip_prefix(MAGIC).and_then(|r| r.strip_prefix(' ')).ok_or("not a QPF remote entry")?;
    match (key, check.strip_prefix("mac:")) {
        (Some(k), Some(given)) => {
            let expected = mac(k, salt, json);
            let given = blake3::Hash::from_hex(given).map_err(|_| "a malformed MAC")?;
            if expected != given {
                return Err("its MAC does not verify under the team key".into());
            }
        }
        (Some(_), None) => return Err("it is not sealed with the team key".into()),
        (None, _) => {
            if check.starts_with("mac:") {
                return Err("it is sealed with a team key, and none is set".into());
            }
            if qpf_core::digest_of(json) != check {
                return Err("its digest does not match (corrupt or truncated)".into());
            }
        }
    }
    let manifest: Manifest = serde_json::from_slice(json).map_err(|_| "its JSON is not a manifest")?;
    if manifest.format != MANIFEST_FORMAT {
        return Err(format!("manifest format {} (this qpf reads {MANIFEST_FORMAT})", manifest.format));
    }
    if manifest.key != expected_key {
        return Err("it is the entry of another key".into());
    }
    Ok(manifest)
}

impl InvocationCache for Tiered<'_> {
    fn manifest(&self, key: &str) -> Result<Option<Manifest>, CacheError> {
        let local = self.local.manifest(key);
        if let Ok(Some(m)) = local {
            if self.push_local_hits && self.active() {
                // Read ahead with every key in this mode: `Some(None)` is "the remote lacks it".
                let lacks = self.prefetched.lock().ok().and_then(|mut p| p.remove(&self.name(key)));
                if matches!(lacks, Some(None)) {
                    self.upload_local_hit(&m);
                }
            }
            return Ok(Some(m));
        }
        if !self.active() {
            return local;
        }
        match self.fetch(key) {
            Some(m) => {
                self.hits.fetch_add(1, Ordering::Relaxed);
                Ok(Some(m))
            }
            None => {
                self.misses.fetch_add(1, Ordering::Relaxed);
                local
            }
        }
    }

    fn blob(&self, digest: &str) -> Result<Vec<u8>, CacheError> {
        self.local.blob(digest)
    }

    fn put(&self, manifest: &Manifest, blobs: &[(&str, &[u8])]) -> Result<(), CacheError> {
        let stored = self.local.put(manifest, blobs);
        self.upload(manifest, blobs);
        stored
    }
}

impl Tiered<'_> {
    /// Sends a result to the remote (unless read-only or left alone): blobs, then the entry.
    fn upload(&self, manifest: &Manifest, blobs: &[(&str, &[u8])]) {
        if self.remote.read_only || !self.active() {
            return;
        }
        // Blobs first, the entry last: an entry never names a blob the store lacks (unless the
        // store evicts it later, which a reader sees as a miss).
        let mut remote_manifest = manifest.clone();
        for f in &mut remote_manifest.files {
            if f.inline.is_none() && (f.size as usize) <= crate::cache::INLINE_MAX_BYTES {
                // Small UTF-8 files travel inside the entry, as they do locally.
                if let Some((_, bytes)) = blobs.iter().find(|(d, _)| *d == f.digest)
                    && let Ok(text) = std::str::from_utf8(bytes)
                {
                    f.inline = Some(text.to_owned());
                }
            }
        }
        for (digest, bytes) in blobs {
            let travels_inline = remote_manifest.files.iter().any(|f| f.digest == *digest && f.inline.is_some());
            if travels_inline {
                continue;
            }
            let replace = self.poisoned.lock().is_ok_and(|p| p.contains(*digest));
            match self.remote.store.put_blob(digest, bytes, replace) {
                Ok(()) => {
                    self.succeeded();
                    self.blobs_uploaded.fetch_add(1, Ordering::Relaxed);
                }
                Err(e) => {
                    self.failed("uploading a blob", &e);
                    return;
                }
            }
        }
        let sealed = seal(self.remote.key.as_ref(), &self.remote.salt, &remote_manifest);
        let mut named: Vec<(String, u64)> =
            remote_manifest.files.iter().filter(|f| f.inline.is_none()).map(|f| (f.digest.clone(), f.size)).collect();
        named.sort();
        named.dedup();
        match self.remote.store.put_entry(&self.name(&manifest.key), &sealed, &named) {
            Ok(()) => {
                self.succeeded();
                self.uploaded.fetch_add(1, Ordering::Relaxed);
            }
            Err(e) => self.failed("uploading an entry", &e),
        }
    }

    /// A local hit the remote lacks (a shard on a runner whose `.qpf/` was restored) is sent to
    /// the remote, so that the gather finds it.
    fn upload_local_hit(&self, manifest: &Manifest) {
        let mut bytes = Vec::new();
        for f in &manifest.files {
            match self.local.file(f) {
                Ok(b) => bytes.push((f.digest.clone(), b)),
                Err(e) => {
                    self.warn(format!("a local hit could not be read for upload: {e}"));
                    return;
                }
            }
        }
        let refs: Vec<(&str, &[u8])> = bytes.iter().map(|(d, b)| (d.as_str(), b.as_slice())).collect();
        self.upload(manifest, &refs);
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;
    use std::sync::Arc;

    use super::*;
    use crate::cache::{CheckedFile, LocalCache};

    /// A remote in memory, with switches for the failures a real one has.
    #[derive(Debug, Default)]
    struct Memory {
        objects: Mutex<BTreeMap<String, Vec<u8>>>,
        down: AtomicBool,
        calls: AtomicUsize,
    }

    impl Memory {
        fn call(&self) -> Result<(), RemoteError> {
            self.calls.fetch_add(1, Ordering::Relaxed);
            if self.down.load(Ordering::Relaxed) { Err(RemoteError("connection refused".into())) } else { Ok(()) }
        }
        fn set(&self, name: &str, bytes: Vec<u8>) {
            self.objects.lock().expect("lock").insert(name.to_owned(), bytes);
        }
        fn get(&self, name: &str) -> Option<Vec<u8>> {
            self.objects.lock().expect("lock").get(name).cloned()
        }
    }

    impl RemoteStore for Memory {
        fn describe(&self) -> String {
            "memory://test".into()
        }
        fn get_entry(&self, name: &str, _: u64) -> Result<Option<Vec<u8>>, RemoteError> {
            self.call()?;
            Ok(self.get(&format!("ac/{name}")))
        }
        fn get_blob(&self, digest: &str, _: u64) -> Result<Option<Vec<u8>>, RemoteError> {
            self.call()?;
            Ok(self.get(&format!("cas/{digest}")))
        }
        fn put_blob(&self, digest: &str, bytes: &[u8], replace: bool) -> Result<(), RemoteError> {
            self.call()?;
            let mut objects = self.objects.lock().expect("lock");
            if replace {
                objects.insert(format!("cas/{digest}"), bytes.to_vec());
            } else {
                objects.entry(format!("cas/{digest}")).or_insert_with(|| bytes.to_vec());
            }
            Ok(())
        }
        fn put_entry(&self, name: &str, bytes: &[u8], _: &[(String, u64)]) -> Result<(), RemoteError> {
            self.call()?;
            self.set(&format!("ac/{name}"), bytes.to_vec());
            Ok(())
        }
    }

    fn settings(store: &Arc<Memory>, read_only: bool) -> RemoteSettings {
        RemoteSettings { store: store.clone(), read_only, salt: String::new(), key: None }
    }

    /// A manifest with one large file (a blob) and one small one (inline remotely).
    fn entry(key: &str) -> (Manifest, Vec<CheckedFile>) {
        let big = "x".repeat(10_000).into_bytes();
        let small = b"small\n".to_vec();
        let file = |path: &str, bytes: Vec<u8>| CheckedFile {
            path: path.to_owned(),
            digest: qpf_core::digest_of(&bytes),
            bytes,
            mode: qpf_runtime::FileMode::Generated,
        };
        let files = vec![file("big.txt", big), file("small.txt", small)];
        (Manifest::of_files(key, &files, Vec::new(), 7, Vec::new()), files)
    }

    #[test]
    fn a_result_uploaded_by_one_machine_is_a_verified_hit_on_another_and_fills_its_local_cache() {
        let remote = Arc::new(Memory::default());
        let (a, b) = (tempfile::tempdir().expect("dir"), tempfile::tempdir().expect("dir"));
        let (manifest, files) = entry("k1");
        let ci = LocalCache::new(a.path(), &[1; 32]);
        let tier = Tiered::new(&ci, settings(&remote, false));
        tier.put_files(&manifest, &files).expect("stored");
        assert_eq!((tier.summary().uploaded, tier.summary().blobs_uploaded), (1, 1), "the small file travels inline");

        let laptop = LocalCache::new(b.path(), &[2; 32]);
        let tier = Tiered::new(&laptop, settings(&remote, false));
        let got = tier.manifest("k1").expect("no error").expect("a remote hit");
        assert_eq!(got.files.len(), 2);
        for f in &got.files {
            assert_eq!(qpf_core::digest_of(&tier.file(f).expect("verified bytes")), f.digest);
        }
        assert_eq!(tier.summary().hits, 1);
        // Now local: the remote is not asked again.
        let calls = remote.calls.load(Ordering::Relaxed);
        assert!(Tiered::new(&laptop, settings(&remote, false)).manifest("k1").expect("ok").is_some());
        assert_eq!(remote.calls.load(Ordering::Relaxed), calls);
    }

    #[test]
    fn poisoned_entries_are_misses_with_a_counted_warning_and_never_reach_the_local_cache() {
        let remote = Arc::new(Memory::default());
        let a = tempfile::tempdir().expect("dir");
        let (manifest, files) = entry("k1");
        let ci = LocalCache::new(a.path(), &[1; 32]);
        Tiered::new(&ci, settings(&remote, false)).put_files(&manifest, &files).expect("stored");
        let big = files[0].digest.clone();

        // Wrong bytes under a digest; then a blob missing; then a forged entry; then another key's.
        type Poison = Box<dyn Fn(&Memory)>;
        let cases: Vec<(&str, Poison)> = vec![
            ("does not match its digest", Box::new(move |m: &Memory| m.set(&format!("cas/{big}"), b"evil".to_vec()))),
            (
                "which the store lacks",
                Box::new(|m: &Memory| {
                    m.objects.lock().expect("lock").retain(|k, _| !k.starts_with("cas/"));
                }),
            ),
            (
                "digest does not match",
                Box::new(|m: &Memory| {
                    let mut e = m.get(&format!("ac/{}", entry_name("", "k1"))).expect("entry");
                    let last = e.len() - 2;
                    e[last] ^= 1;
                    m.set(&format!("ac/{}", entry_name("", "k1")), e);
                }),
            ),
            (
                "another key",
                Box::new(|m: &Memory| {
                    let e = m.get(&format!("ac/{}", entry_name("", "k1"))).expect("entry");
                    m.set(&format!("ac/{}", entry_name("", "k2")), e);
                }),
            ),
        ];
        for (why, poison) in cases {
            let remote = Arc::new(Memory::default());
            Tiered::new(&LocalCache::new(tempfile::tempdir().expect("dir").path(), &[1; 32]), settings(&remote, false))
                .put_files(&manifest, &files)
                .expect("stored");
            poison(&remote);
            let laptop_dir = tempfile::tempdir().expect("dir");
            let laptop = LocalCache::new(laptop_dir.path(), &[2; 32]);
            let tier = Tiered::new(&laptop, settings(&remote, false));
            let key = if why == "another key" { "k2" } else { "k1" };
            assert!(tier.manifest(key).expect("a miss, not an error").is_none(), "{why}");
            let s = tier.summary();
            assert_eq!((s.hits, s.misses, s.rejected), (0, 1, 1), "{why}");
            assert!(tier.warnings().iter().any(|w| w.contains(why)), "{why}: {:?}", tier.warnings());
            assert!(laptop.manifest(key).expect("ok").is_none(), "{why}: nothing kept locally");
            // The laptop runs the plugin and uploads the true result: the poison is replaced.
            if key == "k1" {
                tier.put_files(&manifest, &files).expect("stored");
                let third_dir = tempfile::tempdir().expect("dir");
                let third = LocalCache::new(third_dir.path(), &[3; 32]);
                let tier = Tiered::new(&third, settings(&remote, false));
                assert!(tier.manifest("k1").expect("ok").is_some(), "{why}: repaired");
                assert_eq!(tier.summary().rejected, 0, "{why}");
            }
        }
    }

    #[test]
    fn entries_read_ahead_are_used_once_and_checked_like_any_other() {
        let remote = Arc::new(Memory::default());
        let (a, b) = (tempfile::tempdir().expect("dir"), tempfile::tempdir().expect("dir"));
        let ci = LocalCache::new(a.path(), &[1; 32]);
        for key in ["k1", "k2"] {
            let (manifest, files) = entry(key);
            Tiered::new(&ci, settings(&remote, false)).put_files(&manifest, &files).expect("stored");
        }
        let laptop = LocalCache::new(b.path(), &[2; 32]);
        let tier = Tiered::new(&laptop, settings(&remote, false));
        tier.prefetch(["k1", "k2", "k3"].into_iter());
        let after_prefetch = remote.calls.load(Ordering::Relaxed);
        // A poisoned copy planted after the read-ahead is not what is used; what was read is checked.
        remote.set(&format!("ac/{}", entry_name("", "k1")), b"garbage".to_vec());
        assert!(tier.manifest("k1").expect("ok").is_some());
        assert!(tier.manifest("k3").expect("ok").is_none());
        let s = tier.summary();
        assert_eq!((s.hits, s.misses, s.rejected), (1, 1, 0), "{s:?}");
        // Only the blob of k1 was asked for after the read-ahead.
        assert_eq!(remote.calls.load(Ordering::Relaxed), after_prefetch + 1);
    }

    #[test]
    fn an_entry_naming_more_than_the_limits_is_refused_before_its_blobs_are_read() {
        let remote = Arc::new(Memory::default());
        let (a, b) = (tempfile::tempdir().expect("dir"), tempfile::tempdir().expect("dir"));
        let ci = LocalCache::new(a.path(), &[1; 32]);
        let (manifest, files) = entry("k1");
        Tiered::new(&ci, settings(&remote, false)).put_files(&manifest, &files).expect("stored");
        let laptop = LocalCache::new(b.path(), &[2; 32]);
        let tier = Tiered::new(&laptop, settings(&remote, false)).with_limits(16, 1000);
        let before = remote.calls.load(Ordering::Relaxed);
        assert!(tier.manifest("k1").expect("a miss").is_none());
        assert_eq!(remote.calls.load(Ordering::Relaxed), before + 1, "only the entry was read");
        assert_eq!(tier.summary().rejected, 1);
        assert!(tier.warnings().iter().any(|w| w.contains("over the project's limits")), "{:?}", tier.warnings());
    }

    #[test]
    fn an_entry_with_more_diagnostics_than_a_plugin_may_return_is_refused() {
        let remote = Arc::new(Memory::default());
        let (files_manifest, _) = entry("k1");
        let diagnostic = |message: String| qpf_runtime::Diagnostic {
            severity: qpf_runtime::Severity::Warning,
            message,
            pointer: None,
        };
        for diagnostics in
            [vec![diagnostic("x".repeat(1 << 20))], (0..1000).map(|i| diagnostic(format!("d{i}"))).collect()]
        {
            let forged = Manifest { files: Vec::new(), diagnostics, ..files_manifest.clone() };
            remote.set(&format!("ac/{}", entry_name("", "k1")), seal(None, "", &forged));
            let dir = tempfile::tempdir().expect("dir");
            let local = LocalCache::new(dir.path(), &[2; 32]);
            let tier = Tiered::new(&local, settings(&remote, false));
            assert!(tier.manifest("k1").expect("a miss").is_none());
            assert_eq!(tier.summary().rejected, 1);
        }
    }

    #[test]
    fn a_shard_sends_local_hits_the_remote_lacks() {
        let remote = Arc::new(Memory::default());
        let dir = tempfile::tempdir().expect("dir");
        let local = LocalCache::new(dir.path(), &[1; 32]);
        let (manifest, files) = entry("k1");
        local.put_files(&manifest, &files).expect("a warm local cache, say restored by CI");
        let tier = Tiered::new(&local, settings(&remote, false)).pushing_local_hits();
        tier.prefetch(["k1"].into_iter());
        assert!(tier.manifest("k1").expect("ok").is_some(), "a local hit");
        assert_eq!(tier.summary().uploaded, 1, "and now in the remote too");
        let other = tempfile::tempdir().expect("dir");
        let reader = LocalCache::new(other.path(), &[2; 32]);
        assert!(Tiered::new(&reader, settings(&remote, false)).manifest("k1").expect("ok").is_some());
    }

    #[test]
    fn a_team_key_refuses_entries_it_did_not_seal() {
        let (manifest, _) = entry("k1");
        let team = [9; 32];
        let sealed = seal(Some(&team), "", &manifest);
        assert_eq!(open(Some(&team), "", "k1", &sealed).expect("verifies"), manifest);
        assert!(open(Some(&team), "new salt", "k1", &sealed).expect_err("another salt").contains("MAC"));
        assert!(open(Some(&[8; 32]), "", "k1", &sealed).expect_err("another team").contains("MAC"));
        assert!(open(Some(&team), "", "k1", &seal(None, "", &manifest)).expect_err("unsealed").contains("team key"));
        assert!(open(None, "", "k1", &sealed).expect_err("no key set").contains("none is set"));
        assert_eq!(open(None, "", "k1", &seal(None, "", &manifest)).expect("digest checks"), manifest);
    }

    #[test]
    fn read_only_writes_nothing_and_a_remote_that_goes_down_is_left_alone_after_three_failures() {
        let remote = Arc::new(Memory::default());
        let dir = tempfile::tempdir().expect("dir");
        let local = LocalCache::new(dir.path(), &[1; 32]);
        let (manifest, files) = entry("k1");
        let tier = Tiered::new(&local, settings(&remote, true));
        tier.put_files(&manifest, &files).expect("stored locally");
        assert!(remote.objects.lock().expect("lock").is_empty(), "read-only: nothing written remotely");
        assert!(local.manifest("k1").expect("ok").is_some());

        remote.down.store(true, Ordering::Relaxed);
        let tier = Tiered::new(&local, settings(&remote, false));
        for key in ["a", "b", "c", "d", "e"] {
            assert!(tier.manifest(key).expect("a miss").is_none());
        }
        let s = tier.summary();
        assert_eq!((s.errors, s.disabled), (3, true), "{s:?}");
        assert_eq!(remote.calls.load(Ordering::Relaxed), 3, "not asked after the third failure");
        assert!(tier.warnings().iter().any(|w| w.contains("not used for the rest of this run")));
    }

    #[test]
    fn a_store_message_is_escaped_before_it_is_logged_or_kept() {
        #[derive(Debug)]
        struct Hostile;
        impl RemoteStore for Hostile {
            fn describe(&self) -> String {
                "hostile".into()
            }
            fn get_entry(&self, _: &str, _: u64) -> Result<Option<Vec<u8>>, RemoteError> {
                Err(RemoteError("\u{1b}]0;pwned\u{7}\u{1b}[2J".into()))
            }
            fn get_blob(&self, _: &str, _: u64) -> Result<Option<Vec<u8>>, RemoteError> {
                Ok(None)
            }
            fn put_blob(&self, _: &str, _: &[u8], _: bool) -> Result<(), RemoteError> {
                Ok(())
            }
            fn put_entry(&self, _: &str, _: &[u8], _: &[(String, u64)]) -> Result<(), RemoteError> {
                Ok(())
            }
        }
        let dir = tempfile::tempdir().expect("dir");
        let local = LocalCache::new(dir.path(), &[3; 32]);
        let settings = RemoteSettings { store: Arc::new(Hostile), read_only: true, salt: String::new(), key: None };
        let tier = Tiered::new(&local, settings);
        assert!(tier.manifest("k1").expect("a miss").is_none());
        let warnings = tier.warnings();
        assert!(!warnings.is_empty());
        assert!(warnings.iter().all(|w| !w.chars().any(char::is_control)), "{warnings:?}");
    }

    #[test]
    fn a_salt_renames_every_entry() {
        let key = format!("blake3:{}", "ab".repeat(32));
        assert_eq!(entry_name("", &key), "ab".repeat(32));
        assert_eq!(entry_name("", "not a digest").len(), 64, "anything else is hashed");
        assert_ne!(entry_name("2026-12", "abc"), entry_name("2026-11", "abc"));
        assert_eq!(entry_name("s", "abc").len(), 64);
    }
}
