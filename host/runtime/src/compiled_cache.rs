//! The compiled-plugin cache: Cranelift's or Winch's output kept on disk, keyed by everything that invalidates
//! it (the plugin's digest and the engine's compatibility hash), with a sidecar holding a MAC of
//! the artifact and the plugin's `info()`, so that a hit needs neither compilation nor an
//! instantiation.
//!
//! An artifact is native code that the host maps and runs, so it is trusted only when its sidecar
//! carries a MAC (keyed blake3) made with a secret the project folder does not hold (see
//! `qpf_engine::secret`). A forged, foreign or corrupted artifact fails the check and is
//! recompiled, never loaded; where the folder lies does not matter.
//!
//! Layout: `<dir>/<plugin-hex>-<engine-hash>.cwasm` and `.json` beside it. Writes are atomic
//! (temporary file + rename), so concurrent `qpf` processes never see a partial artifact.
//!
//! The folder has a size cap: a load touches the sidecar's modification time, and after each new
//! artifact the least recently used pairs are removed until the folder fits. Every rebuild of a
//! plugin compiles to a new artifact, so without the cap an author's folder only grows (30–60 MB
//! per Python or JavaScript build). A process that is loading an artifact reads it whole first, so
//! removing it under a concurrent `qpf` costs that process nothing.

use std::hash::{DefaultHasher, Hash, Hasher};
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use wasmtime::Engine;
use wasmtime::component::Component;

use crate::PluginInfo;

/// Version of the sidecar format (2: the artifact is authenticated by a MAC, not a plain digest).
const FORMAT: u32 = 2;

/// Largest sidecar read (it holds `info()`, whose fields are budgeted).
const MAX_SIDECAR_BYTES: u64 = 2 << 20;

#[derive(Serialize, Deserialize)]
struct Sidecar {
    format: u32,
    plugin_digest: String,
    /// Keyed blake3 over the plugin digest, the engine hash, the artifact and the info.
    mac: String,
    info: Option<PluginInfo>,
    /// The artifact file as it was when its bytes last verified against `mac`, and a MAC binding
    /// that stat to `mac`: while the file still has this stat, it is mapped without being read and
    /// hashed again (see [`qpf_core::fs::FileStat`]). Absent in sidecars written before.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    artifact: Option<ArtifactStat>,
}

#[derive(Serialize, Deserialize, Clone)]
struct ArtifactStat {
    stat: qpf_core::fs::FileStat,
    mac: String,
}

pub(crate) struct CompiledCache {
    dir: PathBuf,
    key: [u8; 32],
    max_bytes: u64,
}

/// Compiles a component with the engine's compiler.
pub(crate) fn compile(engine: &Engine, bytes: &[u8]) -> Result<Component, String> {
    Component::new(engine, bytes).map_err(|e| format!("{e:#}"))
}

fn engine_hash(engine: &Engine) -> String {
    let mut hasher = DefaultHasher::new();
    engine.precompile_compatibility_hash().hash(&mut hasher);
    format!("{:016x}", hasher.finish())
}

use qpf_core::fs::write_atomic;

impl CompiledCache {
    pub(crate) fn new(dir: &Path, secret: &[u8; 32], max_bytes: u64) -> Self {
        // A key of its own, derived from the user's secret: a MAC made here means nothing elsewhere.
        let key = blake3::derive_key("qpf compiled-plugin cache MAC v1", secret);
        CompiledCache { dir: dir.to_owned(), key, max_bytes }
    }

    fn paths(&self, engine: &Engine, digest: &str) -> (PathBuf, PathBuf) {
        let hex = qpf_core::digest::file_stem(digest);
        let stem = format!("{hex}-{}", engine_hash(engine));
        (self.dir.join(format!("{stem}.cwasm")), self.dir.join(format!("{stem}.json")))
    }

    fn mac(&self, engine: &Engine, digest: &str, artifact: &[u8], info: Option<&PluginInfo>) -> String {
        let info = serde_json::to_vec(&info).unwrap_or_default();
        let mut hasher = blake3::Hasher::new_keyed(&self.key);
        for part in [digest.as_bytes(), engine_hash(engine).as_bytes(), artifact, &info] {
            hasher.update(&(part.len() as u64).to_le_bytes());
            hasher.update(part);
        }
        hasher.finalize().to_hex().to_string()
    }

    /// The MAC that binds an artifact file's stat to the artifact's MAC.
    fn stat_mac(&self, artifact_mac: &str, stat: &qpf_core::fs::FileStat) -> String {
        let mut hasher = blake3::Hasher::new_keyed(&self.key);
        hasher.update(b"artifact stat\n");
        hasher.update(artifact_mac.as_bytes());
        hasher.update(&stat.to_bytes());
        hasher.finalize().to_hex().to_string()
    }

    /// Whether an artifact and its sidecar are stored for this engine and digest (unverified).
    pub(crate) fn holds(&self, engine: &Engine, digest: &str) -> bool {
        let (artifact, sidecar) = self.paths(engine, digest);
        artifact.is_file() && sidecar.is_file()
    }

    /// The cached component and info, when the artifact's MAC verifies: by reading and hashing
    /// it, or, when the file has the stat recorded (and authenticated) in its sidecar the last
    /// time it verified, by mapping it without reading it.
    pub(crate) fn load(&self, engine: &Engine, digest: &str) -> Option<(Component, Option<PluginInfo>)> {
        let (artifact, sidecar) = self.paths(engine, digest);
        let sidecar_path = sidecar.clone();
        let raw = qpf_core::fs::read_regular(&sidecar, MAX_SIDECAR_BYTES).ok()?;
        let mut sidecar: Sidecar = serde_json::from_slice(&raw).ok()?;
        if sidecar.format != FORMAT || sidecar.plugin_digest != digest {
            return None;
        }
        let stat = qpf_core::fs::FileStat::of(&artifact);
        let unchanged = match (&sidecar.artifact, &stat) {
            (Some(recorded), Some(now)) => {
                recorded.stat == *now
                    && constant_time_eq(self.stat_mac(&sidecar.mac, now).as_bytes(), recorded.mac.as_bytes())
            }
            _ => false,
        };
        if unchanged {
            // SAFETY: as below; the file's bytes verified against their MAC when it had this
            // very stat (device, inode, size, modification and change times: any write since
            // would have changed the change time), and that stat is itself authenticated. The
            // mapping requires that nobody modifies the file while it is mapped: only this user
            // can write to their cache folder, and plugins and projects never reach it.
            #[allow(unsafe_code)]
            let component = unsafe { Component::deserialize_file(engine, &artifact) }.ok()?;
            touch(&sidecar_path);
            return Some((component, sidecar.info));
        }
        let bytes = qpf_core::fs::read_regular(&artifact, u64::MAX).ok()?;
        let expected = self.mac(engine, digest, &bytes, sidecar.info.as_ref());
        if !constant_time_eq(expected.as_bytes(), sidecar.mac.as_bytes()) {
            tracing::warn!(path = %artifact.display(), "compiled artifact is not authenticated by this user's cache key; recompiling");
            return None;
        }
        // SAFETY: `Component::deserialize` requires trusted bytes produced by `Component::serialize`
        // with a compatible engine. The bytes are authenticated: their MAC, keyed with a secret
        // that only this user's `qpf` holds, was made by `store` below over `serialize`'s output,
        // the plugin digest and the engine's compatibility hash (also in the file name, and
        // re-checked by wasmtime in the artifact's header).
        #[allow(unsafe_code)]
        let component = unsafe { Component::deserialize(engine, &bytes) }.ok()?;
        // Verified: record the file's stat, when it did not change while read and is settled,
        // so that the next load maps it without hashing it (the rewrite also marks it as used).
        match (stat, qpf_core::fs::FileStat::of(&artifact)) {
            (Some(before), Some(after)) if before == after && after.settled() => {
                sidecar.artifact = Some(ArtifactStat { stat: after, mac: self.stat_mac(&sidecar.mac, &after) });
                match serde_json::to_vec_pretty(&sidecar) {
                    Ok(json) if write_atomic(&sidecar_path, &json).is_ok() => {}
                    _ => touch(&sidecar_path),
                }
            }
            _ => touch(&sidecar_path),
        }
        Some((component, sidecar.info))
    }

    /// Stores a compiled component with its `info()`: the artifact, then the sidecar with its MAC.
    pub(crate) fn store(&self, engine: &Engine, digest: &str, component: &Component, info: Option<&PluginInfo>) {
        let (artifact, sidecar) = self.paths(engine, digest);
        let result = component.serialize().map_err(|e| std::io::Error::other(format!("{e:#}"))).and_then(|bytes| {
            write_atomic(&artifact, &bytes)?;
            let meta = Sidecar {
                format: FORMAT,
                plugin_digest: digest.to_owned(),
                mac: self.mac(engine, digest, &bytes, info),
                info: info.cloned(),
                artifact: None,
            };
            write_atomic(&sidecar, &serde_json::to_vec_pretty(&meta).map_err(std::io::Error::other)?)
        });
        if let Err(e) = result {
            tracing::warn!(dir = %self.dir.display(), "cannot write the compiled-plugin cache: {e}");
            return;
        }
        let keep = artifact.file_stem().map(|s| s.to_string_lossy().into_owned()).unwrap_or_default();
        let removed = trim(&self.dir, self.max_bytes, &keep);
        if removed > 0 {
            tracing::debug!(dir = %self.dir.display(), removed, "compiled-plugin cache trimmed to its cap");
        }
    }
}

/// Marks an artifact as used now (its sidecar's modification time); failures are ignored.
fn touch(sidecar: &Path) {
    if let Ok(f) = std::fs::File::options().write(true).open(sidecar) {
        let _ = f.set_modified(std::time::SystemTime::now());
    }
}

/// Removes the least recently used artifact pairs (`.cwasm` and `.json` of one stem, by the later
/// of their modification times) until the folder's pairs take at most `max_bytes`; `keep` (the
/// stem just stored) is never removed. Returns how many pairs were removed.
fn trim(dir: &Path, max_bytes: u64, keep: &str) -> usize {
    let Ok(entries) = std::fs::read_dir(dir) else { return 0 };
    let mut pairs: std::collections::BTreeMap<String, (u64, std::time::SystemTime)> = std::collections::BTreeMap::new();
    for entry in entries.flatten() {
        let path = entry.path();
        let (Some(stem), Some(ext)) = (path.file_stem(), path.extension()) else { continue };
        if ext != "cwasm" && ext != "json" {
            continue;
        }
        let Ok(meta) = entry.metadata() else { continue };
        if !meta.is_file() {
            continue;
        }
        let used = meta.modified().unwrap_or(std::time::UNIX_EPOCH);
        let pair = pairs.entry(stem.to_string_lossy().into_owned()).or_insert((0, std::time::UNIX_EPOCH));
        pair.0 += meta.len();
        pair.1 = pair.1.max(used);
    }
    let mut total: u64 = pairs.values().map(|p| p.0).sum();
    if total <= max_bytes {
        return 0;
    }
    let mut oldest: Vec<(std::time::SystemTime, String, u64)> =
        pairs.into_iter().filter(|(stem, _)| stem != keep).map(|(stem, (size, used))| (used, stem, size)).collect();
    oldest.sort();
    let mut removed = 0;
    for (_, stem, size) in oldest {
        if total <= max_bytes {
            break;
        }
        // The artifact first: a sidecar without its artifact is a miss, never a bad load.
        for ext in ["cwasm", "json"] {
            let _ = std::fs::remove_file(dir.join(format!("{stem}.{ext}")));
        }
        total = total.saturating_sub(size);
        removed += 1;
    }
    removed
}

/// Compares two MACs without an early exit.
fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    fn pair(dir: &Path, stem: &str, bytes: usize, age_secs: u64) {
        let when = std::time::SystemTime::now() - std::time::Duration::from_secs(age_secs);
        for ext in ["cwasm", "json"] {
            let path = dir.join(format!("{stem}.{ext}"));
            std::fs::write(&path, vec![0u8; bytes]).unwrap();
            std::fs::File::options().write(true).open(&path).unwrap().set_modified(when).unwrap();
        }
    }

    #[test]
    fn the_least_recently_used_pairs_go_first_and_the_new_one_stays() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path();
        pair(dir, "old", 100, 300);
        pair(dir, "used", 100, 200);
        pair(dir, "new", 100, 0);
        std::fs::write(dir.join("notes.txt"), vec![0u8; 10_000]).unwrap();
        assert_eq!(trim(dir, 10_000, "new"), 0, "under the cap (other files do not count)");
        touch(&dir.join("used.json"));
        // 600 bytes in pairs; a cap of 400 removes one pair, the least recently used.
        assert_eq!(trim(dir, 400, "new"), 1);
        assert!(!dir.join("old.cwasm").exists() && !dir.join("old.json").exists());
        assert!(dir.join("used.cwasm").exists() && dir.join("new.cwasm").exists());
        // A cap below the new pair alone keeps it anyway.
        assert_eq!(trim(dir, 0, "new"), 1);
        assert!(dir.join("new.cwasm").exists() && !dir.join("used.cwasm").exists());
        assert!(dir.join("notes.txt").exists());
    }
}
