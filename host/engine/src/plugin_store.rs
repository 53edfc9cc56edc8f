//! The per-user plugin store: components fetched from OCI registries, one file per `blake3:`
//! digest, shared by every project of the user.
//!
//! A plugin declared `oci: REF` in `qpf.yaml` is looked up here by its pinned digest. When it is
//! absent, a [`PluginFetcher`] (the CLI's talks to the registry) brings the bytes, which are kept
//! only when they hash to the pin; after that the project runs offline. The engine itself opens
//! no connection: without a fetcher (a service embedding the engine) an absent plugin is an error.

use std::path::{Path, PathBuf};

use qpf_core::Digest;

/// Fetches a component by OCI reference. `max_bytes` is the project's `max_component_bytes`: an
/// implementation must not read more.
pub trait PluginFetcher: Send + Sync + std::fmt::Debug {
    /// The component's bytes.
    ///
    /// # Errors
    /// A message naming the registry and the cause (unreachable, unauthorized, missing, tampered…).
    fn fetch(&self, reference: &str, max_bytes: u64) -> Result<Vec<u8>, String>;

    /// The tags of `repository` (`REGISTRY/REPOSITORY`), at most `max`, for `version:` ranges.
    ///
    /// # Errors
    /// As [`PluginFetcher::fetch`]; by default, that this fetcher cannot list tags.
    fn tags(&self, repository: &str, max: usize) -> Result<Vec<String>, String> {
        let _ = (repository, max);
        Err("this host cannot list a registry's tags".to_owned())
    }
}

/// The user's plugin store: `QPF_PLUGIN_STORE` when set, else `$XDG_CACHE_HOME/qpf/plugins`, else
/// `~/.cache/qpf/plugins` (`None` without a home folder).
pub fn user_plugin_store() -> Option<PathBuf> {
    if let Some(dir) = std::env::var_os("QPF_PLUGIN_STORE").filter(|d| !d.is_empty()) {
        return Some(PathBuf::from(dir));
    }
    crate::standalone::user_cache_dir().map(|c| c.join("qpf/plugins"))
}

/// A folder of components named by digest: `blake3/<hex>.wasm`.
#[derive(Debug, Clone)]
pub struct PluginStore {
    dir: PathBuf,
}

/// Why a component was not stored.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// The bytes do not hash to the pin.
    #[error("the component fetched has digest {actual}, not the pinned {expected}; refused")]
    Mismatch {
        /// The pin.
        expected: String,
        /// What the bytes hash to.
        actual: String,
    },
    /// The store cannot be written.
    #[error("cannot write the plugin store `{}`: {source}", path.display())]
    Io {
        /// The file.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
}

impl PluginStore {
    /// A store in `dir` (created on the first write).
    pub fn new(dir: impl Into<PathBuf>) -> PluginStore {
        PluginStore { dir: dir.into() }
    }

    /// The folder.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Where the component of `digest` is (or would be) kept.
    pub fn path_of(&self, digest: &Digest) -> PathBuf {
        self.dir.join("blake3").join(format!("{}.wasm", digest.hex()))
    }

    /// The component of `digest`, when the store has it.
    pub fn get(&self, digest: &Digest) -> Option<PathBuf> {
        let path = self.path_of(digest);
        path.is_file().then_some(path)
    }

    /// Keeps `bytes`, written atomically, when they hash to `expected` (any digest when `None`).
    ///
    /// # Errors
    /// [`StoreError::Mismatch`] (nothing is written) or [`StoreError::Io`].
    pub fn put(&self, bytes: &[u8], expected: Option<&Digest>) -> Result<(Digest, PathBuf), StoreError> {
        let actual = Digest::of(bytes);
        if let Some(expected) = expected
            && *expected != actual
        {
            return Err(StoreError::Mismatch { expected: expected.to_string(), actual: actual.to_string() });
        }
        let path = self.path_of(&actual);
        qpf_core::fs::write_atomic(&path, bytes).map_err(|source| StoreError::Io { path: path.clone(), source })?;
        Ok((actual, path))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_component_is_kept_only_under_its_own_digest() {
        let tmp = tempfile::tempdir().expect("tempdir");
        let store = PluginStore::new(tmp.path());
        let bytes = b"\0asm component bytes";
        let digest = Digest::of(bytes);
        assert!(store.get(&digest).is_none());
        let (d, path) = store.put(bytes, Some(&digest)).expect("stored");
        assert_eq!(d, digest);
        assert_eq!(store.get(&digest), Some(path.clone()));
        assert_eq!(std::fs::read(path).expect("read"), bytes);
    }

    #[test]
    fn bytes_that_do_not_hash_to_the_pin_are_refused_and_not_written() {
        let tmp = tempfile::tempdir().expect("tempdir");
        let store = PluginStore::new(tmp.path());
        let pin = Digest::of(b"what the project pinned");
        let e = store.put(b"what the registry sent", Some(&pin)).expect_err("refused");
        assert!(matches!(e, StoreError::Mismatch { .. }), "{e}");
        assert!(e.to_string().contains(&pin.to_string()), "{e}");
        assert!(
            !tmp.path().join("blake3").exists()
                || std::fs::read_dir(tmp.path().join("blake3")).expect("dir").next().is_none()
        );
    }
}
