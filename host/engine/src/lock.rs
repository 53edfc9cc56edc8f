//! `qpf.lock`: every generated file with its digest and the invocation that produced it. Written
//! deterministically (sorted, pretty JSON, trailing newline) and atomically, and only when it changed.

use std::collections::BTreeMap;
use std::path::Path;

use serde::{Deserialize, Serialize};

/// The lock file's name, at the project root.
pub const LOCK_FILE: &str = "qpf.lock";

/// Version of the lock format.
pub const LOCK_FORMAT: u32 = 1;

/// The lock.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Lock {
    /// [`LOCK_FORMAT`].
    pub format: u32,
    /// The output root the paths are relative to, as configured (or given with `--out`).
    pub output: String,
    /// Generated files by path (relative to the output root).
    pub files: BTreeMap<String, LockedFile>,
    /// What each invocation's key was made of, by `entry schema`, so that `qpf plan` can say why
    /// an invocation will run again.
    #[serde(default)]
    pub invocations: BTreeMap<String, InvocationInputs>,
    /// The registry fragments the project's imports resolved to, by name: later runs keep these
    /// versions while they exist and match (`qpf extract --update-registry` takes the newest).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub registry: BTreeMap<String, LockedFragment>,
    /// The registry plugins (`registry: NAME@RANGE` in `qpf.yaml`) by plugin name: the version
    /// chosen, its file and its digest, which pins it until `--update-registry`.
    #[serde(default, rename = "registry-plugins", skip_serializing_if = "BTreeMap::is_empty")]
    pub registry_plugins: BTreeMap<String, LockedFragment>,
}

/// A registry fragment (or a registry plugin) in the lock.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LockedFragment {
    /// Its version.
    pub version: String,
    /// Its file.
    pub file: String,
    /// `blake3:<hex>` of its bytes when it was read.
    pub digest: String,
}

/// Digests of the parts of an invocation's key.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct InvocationInputs {
    /// The invocation key.
    pub key: String,
    /// Plugin digest.
    pub plugin: String,
    /// Digest of the canonical input.
    pub input: String,
    /// Digest of the canonical config.
    pub config: String,
    /// Digest of the canonical context.
    pub context: String,
    /// Digest of the canonical limits.
    pub limits: String,
}

impl InvocationInputs {
    /// The parts that differ from `before`, by name (`plugin`, `input`, `config`, `context`, `limits`).
    pub fn changed_since(&self, before: &InvocationInputs) -> Vec<&'static str> {
        [
            ("plugin", &self.plugin, &before.plugin),
            ("input", &self.input, &before.input),
            ("config", &self.config, &before.config),
            ("context", &self.context, &before.context),
            ("limits", &self.limits, &before.limits),
        ]
        .into_iter()
        .filter(|(_, a, b)| a != b)
        .map(|(name, _, _)| name)
        .collect()
    }
}

/// The lock's key for an invocation: `entry schema`.
pub fn invocation_id(entry: &str, schema: &str) -> String {
    format!("{entry} {schema}")
}

/// One generated file.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LockedFile {
    /// `blake3:<hex>` of its bytes.
    pub digest: String,
    /// Key of the invocation that produced it.
    pub key: String,
    /// Entry id.
    pub entry: String,
    /// Schema id, `kind/name@version`.
    pub schema: String,
    /// Plugin name.
    pub plugin: String,
    /// For a file of a spawned invocation: the top-level entry and key that spawned it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub spawned_by: Option<SpawnedBy>,
    /// No invocation produces it any more, but it was edited by hand, so `qpf extract` kept it
    /// (and `qpf drift` reports it as an orphan) instead of deleting someone's work.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub orphan: bool,
    /// A scaffold: written by QPF once, owned by its user since. Drift ignores its edits, and no
    /// run, `drift --fix` or pruning overwrites, restores or removes it.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub user_owned: bool,
}

/// The top-level invocation a spawned file descends from.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SpawnedBy {
    /// Its entry id.
    pub entry: String,
    /// Its key.
    pub key: String,
}

impl Lock {
    /// An empty lock for an output root.
    pub fn new(output: String) -> Self {
        Lock {
            format: LOCK_FORMAT,
            output,
            files: BTreeMap::new(),
            invocations: BTreeMap::new(),
            registry: BTreeMap::new(),
            registry_plugins: BTreeMap::new(),
        }
    }

    /// Reads the lock, or `None` when there is none or it cannot be parsed (a warning is logged;
    /// the next write replaces it).
    pub fn read(path: &Path) -> Option<Lock> {
        let bytes = std::fs::read(path).ok()?;
        match serde_json::from_slice::<Lock>(&bytes) {
            Ok(lock) if lock.format == LOCK_FORMAT => Some(lock),
            Ok(lock) => {
                tracing::warn!(path = %path.display(), format = lock.format, "unsupported lock format; it will be rewritten");
                None
            }
            Err(e) => {
                tracing::warn!(path = %path.display(), "unreadable lock ({e}); it will be rewritten");
                None
            }
        }
    }

    /// The lock's bytes: pretty JSON with a trailing newline.
    pub fn to_bytes(&self) -> Vec<u8> {
        let mut bytes = serde_json::to_vec_pretty(self).unwrap_or_default();
        bytes.push(b'\n');
        bytes
    }

    /// Writes the lock atomically unless the file already holds these bytes.
    ///
    /// # Errors
    /// I/O errors.
    pub fn write(&self, path: &Path) -> std::io::Result<bool> {
        let bytes = self.to_bytes();
        if std::fs::read(path).is_ok_and(|old| old == bytes) {
            return Ok(false);
        }
        crate::writer::write_file_atomic(path, &bytes)?;
        Ok(true)
    }
}
