//! The remote tier of the invocation cache on object storage (`s3://`, `gs://`, `az://` and
//! `file://`, through the `object_store` crate) and on Remote Execution API v2 servers
//! (`grpc://`, `grpcs://`, `unix://`; see [`reapi`]). The engine's [`qpf_engine::remote::Tiered`] decides
//! what to read and write and verifies everything; this crate only moves bytes.
//!
//! Layout under the URL's prefix (versioned, so a new layout never reads an old one):
//!
//! ```text
//! qpf-cache/v1/ac/<entry name>          a sealed manifest (small files inline), written last
//! qpf-cache/v1/cas/blake3/<hex>         a file's bytes, by digest, written create-only
//! ```
//!
//! Credentials come from each provider's usual environment (`AWS_*`, `GOOGLE_*`, `AZURE_*`, with
//! the instance and workload identity chains `object_store` supports) and are never printed:
//! [`RemoteStore::describe`] shows the scheme, bucket and prefix only.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use object_store::path::Path as StorePath;
use object_store::{ObjectStore, ObjectStoreExt, PutMode, PutOptions, PutPayload};
use qpf_engine::remote::{RemoteError, RemoteStore};

pub mod reapi;

/// The most one remote operation may take.
pub const TIMEOUT: Duration = Duration::from_secs(60);

/// Reads in flight at once when entries are read ahead (a gather reads thousands).
const CONCURRENT_READS: usize = 64;

/// The layout's root under the URL's prefix.
const ROOT: &str = "qpf-cache/v1";

/// Where a remote cache may live, by who names it: the command line and the environment may name
/// any, a project's `qpf.yaml` only object storage (a project must not make `qpf` write into a
/// folder of the user's machine).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Origin {
    /// `--remote-cache` or `QPF_REMOTE_CACHE`.
    User,
    /// `remote-cache:` in `qpf.yaml`.
    Project,
}

/// A remote cache on object storage.
pub struct ObjectRemote {
    store: Arc<dyn ObjectStore>,
    prefix: String,
    shown: String,
    runtime: tokio::runtime::Runtime,
}

impl std::fmt::Debug for ObjectRemote {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ObjectRemote").field("store", &self.shown).finish_non_exhaustive()
    }
}

/// Opens the remote cache at `text`: object storage (`s3://`, `gs://`, `az://`, `file://`) or a
/// REAPI server (`grpc://`, `grpcs://`, `unix://`). `partition` (the remote cache's salt) goes
/// into a REAPI Action's salt; `headers` (`name=value` lines, from `QPF_REMOTE_CACHE_HEADERS`) are
/// sent with every REAPI call.
///
/// # Errors
/// An unsupported scheme, a URL the provider's builder refuses, a local URL (`file://`,
/// `unix://`) from a project, or malformed headers.
pub fn open(
    text: &str,
    origin: Origin,
    partition: &str,
    headers: Option<&str>,
) -> Result<Arc<dyn RemoteStore>, String> {
    let url = url::Url::parse(text).map_err(|e| format!("`{}` is not a URL: {e}", shown(text)))?;
    if reapi::is_reapi(&url) {
        let headers = reapi::Headers::parse(headers.unwrap_or_default())?;
        return Ok(Arc::new(reapi::open(&url, origin, partition, headers)?));
    }
    Ok(Arc::new(open_object(text, origin)?))
}

/// Opens the remote cache on object storage at `text`.
///
/// # Errors
/// An unsupported scheme, a URL the provider's builder refuses, or a `file://` URL from a project.
pub fn open_object(text: &str, origin: Origin) -> Result<ObjectRemote, String> {
    let url = url::Url::parse(text).map_err(|e| format!("`{}` is not a URL: {e}", shown(text)))?;
    let shown = shown(text);
    let (store, prefix): (Arc<dyn ObjectStore>, String) = match url.scheme() {
        "s3" | "s3a" => (
            Arc::new(
                object_store::aws::AmazonS3Builder::from_env()
                    .with_url(text)
                    .with_config(
                        object_store::aws::AmazonS3ConfigKey::Client(object_store::ClientConfigKey::ConnectTimeout),
                        "5s",
                    )
                    .with_config(
                        object_store::aws::AmazonS3ConfigKey::Client(object_store::ClientConfigKey::Timeout),
                        "60s",
                    )
                    .with_retry(retry())
                    .build()
                    .map_err(|e| format!("`{shown}`: {e}"))?,
            ),
            url.path().trim_matches('/').to_owned(),
        ),
        "gs" => (
            Arc::new(
                object_store::gcp::GoogleCloudStorageBuilder::from_env()
                    .with_url(text)
                    .with_config(
                        object_store::gcp::GoogleConfigKey::Client(object_store::ClientConfigKey::ConnectTimeout),
                        "5s",
                    )
                    .with_config(
                        object_store::gcp::GoogleConfigKey::Client(object_store::ClientConfigKey::Timeout),
                        "60s",
                    )
                    .with_retry(retry())
                    .build()
                    .map_err(|e| format!("`{shown}`: {e}"))?,
            ),
            url.path().trim_matches('/').to_owned(),
        ),
        "az" | "azure" | "abfs" | "abfss" => (
            Arc::new(
                object_store::azure::MicrosoftAzureBuilder::from_env()
                    .with_url(text)
                    .with_config(
                        object_store::azure::AzureConfigKey::Client(object_store::ClientConfigKey::ConnectTimeout),
                        "5s",
                    )
                    .with_config(
                        object_store::azure::AzureConfigKey::Client(object_store::ClientConfigKey::Timeout),
                        "60s",
                    )
                    .with_retry(retry())
                    .build()
                    .map_err(|e| format!("`{shown}`: {e}"))?,
            ),
            url.path().trim_matches('/').to_owned(),
        ),
        "file" if origin == Origin::Project => {
            return Err(format!(
                "`{shown}`: a project's `remote-cache` must be object storage (s3://, gs://, az://); give a folder with --remote-cache"
            ));
        }
        "file" => {
            let dir = url.to_file_path().map_err(|()| format!("`{shown}` is not an absolute file URL"))?;
            std::fs::create_dir_all(&dir).map_err(|e| format!("cannot create `{}`: {e}", dir.display()))?;
            let local = object_store::local::LocalFileSystem::new_with_prefix(&dir)
                .map_err(|e| format!("`{shown}`: {e}"))?
                .with_automatic_cleanup(true);
            (Arc::new(local), String::new())
        }
        other => {
            return Err(format!(
                "`{shown}`: the remote cache speaks s3://, gs://, az://, file:// (object storage) and grpc://, grpcs://, unix:// (REAPI), not `{other}://`"
            ));
        }
    };
    Ok(ObjectRemote { store, prefix, shown, runtime: runtime()? })
}

/// The runtime a remote store blocks on: two threads, its own, so that the engine's threads
/// (which are not async) can call the store.
fn runtime() -> Result<tokio::runtime::Runtime, String> {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .thread_name("qpf-remote")
        .enable_all()
        .build()
        .map_err(|e| format!("cannot start the remote cache's runtime: {e}"))
}

/// Retries: two, within 10 s (and 5 s to connect, 60 s per request, set with each builder). A cache that does not answer is skipped, not waited for: the run
/// can always compute the result itself.
fn retry() -> object_store::RetryConfig {
    object_store::RetryConfig { max_retries: 2, retry_timeout: Duration::from_secs(10), ..Default::default() }
}

/// A URL as it may be shown: scheme, host and path; no user, password or query.
fn shown(text: &str) -> String {
    match url::Url::parse(text) {
        Ok(u) => format!("{}://{}{}", u.scheme(), u.host_str().unwrap_or_default(), u.path()),
        Err(_) => "(not a URL)".to_owned(),
    }
}

impl ObjectRemote {
    fn path(&self, rest: &str) -> StorePath {
        if self.prefix.is_empty() {
            StorePath::from(format!("{ROOT}/{rest}"))
        } else {
            StorePath::from(format!("{}/{ROOT}/{rest}", self.prefix))
        }
    }

    fn blob_path(digest: &str) -> Result<String, RemoteError> {
        let hex = digest.strip_prefix("blake3:").filter(|h| h.len() == 64 && h.bytes().all(|b| b.is_ascii_hexdigit()));
        hex.map(|h| format!("cas/blake3/{h}")).ok_or_else(|| RemoteError(format!("`{digest}` is not a blake3 digest")))
    }

    /// Runs one operation under [`TIMEOUT`].
    fn run<T>(&self, what: &str, work: impl Future<Output = Result<T, object_store::Error>>) -> Result<T, RemoteError> {
        self.run_for(what, TIMEOUT, work)
    }

    /// Runs one operation under `deadline`.
    fn run_for<T>(
        &self,
        what: &str,
        deadline: Duration,
        work: impl Future<Output = Result<T, object_store::Error>>,
    ) -> Result<T, RemoteError> {
        self.runtime
            .block_on(async { tokio::time::timeout(deadline, work).await })
            .map_err(|_| RemoteError(format!("{what}: no answer within {} s", deadline.as_secs())))?
            .map_err(|e| RemoteError(format!("{what}: {}", cut(&e.to_string()))))
    }

    /// Reads an object of at most `limit` bytes (exactly `exact` when given).
    fn get(&self, path: StorePath, limit: u64, exact: Option<u64>) -> Result<Option<Vec<u8>>, RemoteError> {
        let store = self.store.clone();
        let got = self.run("get", async move {
            match store.get(&path).await {
                Ok(r) => {
                    let size = r.meta.size;
                    if size > limit || exact.is_some_and(|e| e != size) {
                        return Ok(Err(size));
                    }
                    r.bytes().await.map(|b| Ok(Some(b.to_vec())))
                }
                Err(object_store::Error::NotFound { .. }) => Ok(Ok(None)),
                Err(e) => Err(e),
            }
        })?;
        match (got, exact) {
            // A blob of another size than its entry names is wrong bytes under the digest: no
            // bytes are read, and the empty answer fails the caller's digest check, which then
            // replaces the object with the true bytes.
            (Err(_), Some(_)) => Ok(Some(Vec::new())),
            (Err(size), None) => Err(RemoteError(format!("the object is {size} bytes, over the limit of {limit}"))),
            (Ok(found), _) => Ok(found),
        }
    }
}

/// A store's message, cut to 300 characters (it may quote a server's answer).
fn cut(text: &str) -> String {
    match text.char_indices().nth(300) {
        Some((at, _)) => format!("{}…", &text[..at]),
        None => text.to_owned(),
    }
}

impl RemoteStore for ObjectRemote {
    fn describe(&self) -> String {
        self.shown.clone()
    }

    fn get_entry(&self, name: &str, limit: u64) -> Result<Option<Vec<u8>>, RemoteError> {
        if !name.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_') {
            return Err(RemoteError("an entry name of other characters than [A-Za-z0-9_-]".into()));
        }
        self.get(self.path(&format!("ac/{name}")), limit, None)
    }

    fn get_entries(&self, names: &[String], limit: u64) -> Result<HashMap<String, Option<Vec<u8>>>, RemoteError> {
        use futures_util::{StreamExt, TryStreamExt};
        if let Some(bad) =
            names.iter().find(|n| !n.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_'))
        {
            return Err(RemoteError(format!("an entry name of other characters than [A-Za-z0-9_-]: {}", cut(bad))));
        }
        let requests = names.iter().map(|name| {
            let (store, path, name) = (self.store.clone(), self.path(&format!("ac/{name}")), name.clone());
            async move {
                // `None`: left to be asked alone (an entry over the limit is refused then).
                match store.get(&path).await {
                    Ok(r) if r.meta.size > limit => Ok((name, None)),
                    Ok(r) => r.bytes().await.map(|b| (name, Some(Some(b.to_vec())))),
                    Err(object_store::Error::NotFound { .. }) => Ok((name, Some(None))),
                    Err(e) => Err(e),
                }
            }
        });
        let all = futures_util::stream::iter(requests).buffer_unordered(CONCURRENT_READS).try_collect::<Vec<_>>();
        // The deadline grows with the batch: 10 ms an entry, at least [`TIMEOUT`].
        let deadline = TIMEOUT.max(Duration::from_millis(10 * names.len() as u64));
        let got = self.run_for("get entries", deadline, all)?;
        Ok(got.into_iter().filter_map(|(name, entry)| entry.map(|e| (name, e))).collect())
    }

    fn get_blob(&self, digest: &str, size: u64) -> Result<Option<Vec<u8>>, RemoteError> {
        self.get(self.path(&Self::blob_path(digest)?), size, Some(size))
    }

    fn put_blob(&self, digest: &str, bytes: &[u8], replace: bool) -> Result<(), RemoteError> {
        let path = self.path(&Self::blob_path(digest)?);
        let store = self.store.clone();
        let payload = PutPayload::from(bytes.to_vec());
        if replace {
            return self.run("replace blob", async move { store.put(&path, payload).await.map(drop) });
        }
        self.run("put blob", async move {
            let create = PutOptions { mode: PutMode::Create, ..PutOptions::default() };
            match store.put_opts(&path, payload.clone(), create).await {
                Ok(_) | Err(object_store::Error::AlreadyExists { .. }) => Ok(()),
                // A store without conditional writes: write unless it is there (same digest,
                // same bytes, so a race between two writers is harmless).
                Err(object_store::Error::NotImplemented { .. }) => match store.head(&path).await {
                    Ok(_) => Ok(()),
                    Err(object_store::Error::NotFound { .. }) => store.put(&path, payload).await.map(drop),
                    Err(e) => Err(e),
                },
                Err(e) => Err(e),
            }
        })
    }

    fn put_entry(&self, name: &str, bytes: &[u8], _blobs: &[(String, u64)]) -> Result<(), RemoteError> {
        if !name.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_') {
            return Err(RemoteError("an entry name of other characters than [A-Za-z0-9_-]".into()));
        }
        let path = self.path(&format!("ac/{name}"));
        let store = self.store.clone();
        let payload = PutPayload::from(bytes.to_vec());
        self.run("put entry", async move { store.put(&path, payload).await.map(drop) })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_folder_holds_entries_and_blobs_create_only() {
        let dir = tempfile::tempdir().expect("dir");
        let url = url::Url::from_directory_path(dir.path()).expect("url").to_string();
        let remote = open_object(&url, Origin::User).expect("opens");
        let digest = format!("blake3:{}", blake3::hash(b"bytes").to_hex());
        assert_eq!(remote.get_blob(&digest, 5).expect("ok"), None);
        remote.put_blob(&digest, b"bytes", false).expect("stored");
        remote.put_blob(&digest, b"bytes", false).expect("an existing blob is success");
        assert_eq!(remote.get_blob(&digest, 5).expect("ok"), Some(b"bytes".to_vec()));
        assert_eq!(remote.get_blob(&digest, 4).expect("another size"), Some(Vec::new()), "not read: fails the digest");
        remote.put_entry("abc", b"entry", &[]).expect("stored");
        assert_eq!(remote.get_entry("abc", 100).expect("ok"), Some(b"entry".to_vec()));
        assert!(remote.get_entry("abc", 2).expect_err("over the limit").0.contains("over the limit"));
        assert!(dir.path().join("qpf-cache/v1/ac/abc").is_file());
        let many = remote.get_entries(&["abc".to_owned(), "nope".to_owned()], 100).expect("ok");
        assert_eq!(many.get("abc"), Some(&Some(b"entry".to_vec())));
        assert_eq!(many.get("nope"), Some(&None));
        assert!(remote.get_entries(&["abc".to_owned()], 2).expect("ok").is_empty(), "over the limit: asked alone");
        assert!(remote.get_entry("../x", 100).is_err());
        assert!(remote.put_blob("blake3:../../etc", b"x", false).is_err());
    }

    #[test]
    fn a_project_may_not_name_a_folder_and_credentials_are_never_shown() {
        let e = open_object("file:///tmp/x", Origin::Project).expect_err("refused");
        assert!(e.contains("must be object storage"), "{e}");
        assert_eq!(shown("s3://key:secret@bucket/prefix?token=t"), "s3://bucket/prefix");
        let e = open("ftp://host/x", Origin::User, "", None).expect_err("refused");
        assert!(e.contains("not `ftp://`"), "{e}");
    }
}
