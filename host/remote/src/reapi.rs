//! The remote cache on a Remote Execution API v2 server (bazel-remote, BuildBuddy, Buildbarn,
//! NativeLink, buildbox-casd): `grpc://HOST:PORT`, `grpcs://HOST[:PORT]`, `unix:///ABS/PATH`, each
//! with an optional `?instance=NAME`.
//!
//! Only the cache services are used (Capabilities, ActionCache, ContentAddressableStorage,
//! ByteStream); QPF runs its plugins itself. An invocation is stored as a Bazel action would be:
//!
//! - the **Command** is `qpf-invocation <entry name>`, with one output path, `qpf-manifest`;
//! - the **input root** is a directory holding one file, `invocation`, whose bytes are the entry
//!   name (the entry name is a digest of QPF's invocation key, which covers every input);
//! - the **Action** names both, and its **salt** holds the entry format and the partition (the
//!   remote cache's salt), so a new format or salt never reads an old entry;
//! - the **ActionResult** lists `qpf-manifest` (QPF's sealed manifest, the entry) and one
//!   `blobs/<blake3 hex>` per file too large to travel inside the manifest.
//!
//! The Action, Command and input root are uploaded with the result, so the server's own
//! validation (and a person browsing the cache) sees a whole action. The digest function is
//! negotiated: BLAKE3 when the server offers it (then a blob's remote digest is QPF's own), else
//! SHA-256 (then the ActionResult is the map from QPF's blake3 digests to the server's). Nothing is
//! trusted: the engine checks the manifest's seal and every blob's blake3 digest.
//!
//! Uploads never fill the `*_raw` fields or `OutputFile.contents`; a blob above the server's batch
//! limit goes through ByteStream. A server whose `update_enabled` is false is used read-only.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::Duration;

use bazel_remote_apis::build::bazel::remote::execution::v2 as re;
use bazel_remote_apis::google::bytestream as bs;
use prost::Message as _;
use qpf_engine::remote::{RemoteError, RemoteStore};
use re::action_cache_client::ActionCacheClient;
use re::capabilities_client::CapabilitiesClient;
use re::content_addressable_storage_client::ContentAddressableStorageClient;
use re::digest_function::Value as DigestFunction;
use tonic::service::interceptor::InterceptedService;
use tonic::transport::Channel;

use crate::{Origin, TIMEOUT, cut};

/// The path of QPF's manifest in an ActionResult.
const MANIFEST_PATH: &str = "qpf-manifest";

/// The entry format, first in every Action's salt.
const FORMAT: &str = "qpf-remote-manifest/1";

/// The largest message accepted from the server: a manifest inlined in an ActionResult, with room.
const MAX_MESSAGE: usize = (qpf_engine::remote::MAX_REMOTE_MANIFEST_BYTES as usize) + (1 << 20);

/// The largest batch sent or asked for, whatever the server allows: gRPC's usual 4 MiB message,
/// less room for the request around the bytes.
const MAX_BATCH: u64 = (4 << 20) - (64 << 10);

/// ByteStream chunks.
const CHUNK: usize = 1 << 20;

/// Remote digests remembered (QPF blake3 → the server's digest), per map, before it is emptied:
/// about 100 MiB at most.
const MAX_KNOWN: usize = 1 << 20;

/// The most `blobs/` rows taken from one ActionResult (an entry names at most the project's
/// `max-files`, which the engine checks; this bounds what is remembered before that check).
const MAX_ROWS: usize = 1 << 16;

/// Room for a request's framing around each blob in a batch.
const PER_BLOB_OVERHEAD: u64 = 1 << 10;

/// Reads in flight at once when entries are read ahead.
const CONCURRENT_READS: usize = 64;

/// How long opening may wait for the server's capabilities.
const CONNECT: Duration = Duration::from_secs(5);

type Svc = InterceptedService<Channel, Headers>;

/// Headers sent with every call (`QPF_REMOTE_CACHE_HEADERS`: `name=value` lines, e.g. an API key);
/// never printed.
#[derive(Clone, Default)]
pub struct Headers(std::sync::Arc<Vec<(tonic::metadata::AsciiMetadataKey, tonic::metadata::AsciiMetadataValue)>>);

impl tonic::service::Interceptor for Headers {
    fn call(&mut self, mut request: tonic::Request<()>) -> Result<tonic::Request<()>, tonic::Status> {
        for (k, v) in self.0.iter() {
            request.metadata_mut().insert(k.clone(), v.clone());
        }
        Ok(request)
    }
}

impl Headers {
    /// Parses `name=value` lines (blank lines skipped). Values are marked sensitive (never
    /// indexed by HTTP/2 compression, hidden from `Debug`).
    ///
    /// # Errors
    /// A line that is not `name=value` with a header name and value gRPC metadata can carry. The
    /// message names the line by number only: a malformed line may hold the secret.
    pub fn parse(text: &str) -> Result<Headers, String> {
        let mut out = Vec::new();
        for (i, line) in text.lines().enumerate().filter(|(_, l)| !l.trim().is_empty()) {
            let bad = || {
                format!("QPF_REMOTE_CACHE_HEADERS: line {} is not `name=value` (a header name, `=`, a value)", i + 1)
            };
            let (name, value) = line.split_once('=').ok_or_else(bad)?;
            let key =
                name.trim().to_ascii_lowercase().parse::<tonic::metadata::AsciiMetadataKey>().map_err(|_| bad())?;
            let mut value = value.trim().parse::<tonic::metadata::AsciiMetadataValue>().map_err(|_| bad())?;
            value.set_sensitive(true);
            out.push((key, value));
        }
        Ok(Headers(std::sync::Arc::new(out)))
    }

    /// Whether there are none.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

impl std::fmt::Debug for Headers {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_list().entries(self.0.iter().map(|(k, _)| k.as_str())).finish()
    }
}

/// A blob's digest on the server: 32 bytes (SHA-256 or BLAKE3) and a size.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Remote {
    hash: [u8; 32],
    size: i64,
}

impl Remote {
    /// A digest the server sent, if well-formed: 64 lowercase hex digits and a size ≥ 0.
    fn checked(d: &re::Digest) -> Option<Remote> {
        Some(Remote { hash: hex32(&d.hash)?, size: d.size_bytes }).filter(|r| r.size >= 0)
    }

    fn digest(self) -> re::Digest {
        re::Digest { hash: self.hash.iter().map(|b| format!("{b:02x}")).collect(), size_bytes: self.size }
    }
}

/// 64 lowercase hex digits as bytes.
fn hex32(text: &str) -> Option<[u8; 32]> {
    if text.len() != 64 || !text.bytes().all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b)) {
        return None;
    }
    let mut out = [0u8; 32];
    for (i, byte) in out.iter_mut().enumerate() {
        *byte = u8::from_str_radix(&text[2 * i..2 * i + 2], 16).ok()?;
    }
    Some(out)
}

/// A QPF digest (`blake3:<64 lowercase hex>`) as bytes.
fn blake3_of(digest: &str) -> Result<[u8; 32], RemoteError> {
    digest
        .strip_prefix("blake3:")
        .and_then(hex32)
        .ok_or_else(|| RemoteError(format!("`{}` is not a blake3 digest", cut(digest))))
}

/// What reading an entry found.
enum EntryRead {
    Found(Vec<u8>),
    Absent,
    TooLarge(u64),
}

/// What the server said it supports.
#[derive(Debug, Clone, Copy)]
struct Negotiated {
    function: DigestFunction,
    update_enabled: bool,
    batch: u64,
}

/// A remote cache on a REAPI v2 server.
pub struct ReapiRemote {
    channel: Svc,
    instance: String,
    shown: String,
    salt: Vec<u8>,
    /// The server's capabilities, or why they could not be read (then every call fails with it,
    /// which the engine counts, and after three turns the remote off for the run).
    negotiated: Result<Negotiated, String>,
    /// QPF blake3 → the server's digest of the same bytes (SHA-256 servers), learnt from the
    /// ActionResults read. Any writer of the cache can put a wrong pair here; the worst it does is
    /// a miss (the engine checks every blob's blake3), which such a writer can cause anyway by
    /// overwriting the entry.
    learned: Mutex<HashMap<[u8; 32], Remote>>,
    /// The same, computed here from the bytes of each blob uploaded: the only pairs an uploaded
    /// ActionResult names.
    uploaded: Mutex<HashMap<[u8; 32], Remote>>,
    runtime: tokio::runtime::Runtime,
}

impl std::fmt::Debug for ReapiRemote {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ReapiRemote").field("server", &self.shown).finish_non_exhaustive()
    }
}

/// Whether `url` names a REAPI server.
pub fn is_reapi(url: &url::Url) -> bool {
    matches!(url.scheme(), "grpc" | "grpcs" | "unix")
}

/// Connects to the REAPI server at `url` and reads its capabilities. `partition` (the remote
/// cache's salt) goes into every Action's salt. A server that does not answer is not an error
/// here: the store is returned, fails its calls, and the run goes on locally.
///
/// # Errors
/// A malformed URL, a `unix://` URL from a project, bad `QPF_REMOTE_CACHE_HEADERS`.
pub fn open(url: &url::Url, origin: Origin, partition: &str, headers: Headers) -> Result<ReapiRemote, String> {
    let instance = url.query_pairs().find(|(k, _)| k == "instance").map(|(_, v)| v.into_owned()).unwrap_or_default();
    if let Some((k, _)) = url.query_pairs().find(|(k, _)| k != "instance") {
        let k = qpf_core::text::escape(&cut(&k)).into_owned();
        return Err(format!("`{}`: unknown parameter `{k}` (only `instance`)", crate::shown(url.as_str())));
    }
    check_instance(&instance)?;
    // Credentials go only where the user pointed: a project's `qpf.yaml` (which a pull request
    // can change) must not draw them to a server of its choosing.
    if origin == Origin::Project && !headers.is_empty() {
        return Err(
            "QPF_REMOTE_CACHE_HEADERS are sent only to a server named by --remote-cache or QPF_REMOTE_CACHE, not to one a project's `remote-cache` names"
                .into(),
        );
    }
    if url.scheme() == "grpc" && !headers.is_empty() && !is_loopback(url) {
        return Err(format!(
            "`{}`: QPF_REMOTE_CACHE_HEADERS would travel in clear text; use grpcs:// (or a loopback or unix:// server)",
            crate::shown(url.as_str())
        ));
    }
    let runtime = crate::runtime()?;
    let shown = match url.scheme() {
        "unix" => format!("unix://{}", url.path()),
        scheme => {
            format!("{scheme}://{}", url.host_str().unwrap_or_default())
                + &url.port().map(|p| format!(":{p}")).unwrap_or_default()
        }
    } + &(if instance.is_empty() { String::new() } else { format!("?instance={instance}") });
    let shown = qpf_core::text::escape(&shown).into_owned();
    let channel = match url.scheme() {
        "unix" if origin == Origin::Project => {
            return Err(format!(
                "`{shown}`: a project's `remote-cache` may not name a local socket; give it with --remote-cache"
            ));
        }
        "unix" => {
            let path = url
                .to_file_path()
                .ok()
                .filter(|p| p.is_absolute() && url.host_str().is_none_or(str::is_empty))
                .ok_or_else(|| format!("`{shown}`: write unix:///ABSOLUTE/PATH (three slashes)"))?;
            // The authority is not used: the connector opens the socket. Deadlines are set per
            // call (they grow with a blob's size).
            let endpoint = tonic::transport::Endpoint::from_static("http://localhost").connect_timeout(CONNECT);
            let _guard = runtime.enter();
            endpoint.connect_with_connector_lazy(tower::service_fn(move |_: http::Uri| {
                let path = path.clone();
                async move {
                    Ok::<_, std::io::Error>(hyper_util::rt::TokioIo::new(tokio::net::UnixStream::connect(path).await?))
                }
            }))
        }
        scheme @ ("grpc" | "grpcs") => {
            let host = url.host_str().filter(|h| !h.is_empty()).ok_or_else(|| format!("`{shown}`: no host"))?;
            let default_port = if scheme == "grpcs" { 443 } else { 80 };
            let port = url.port().unwrap_or(default_port);
            let http = if scheme == "grpcs" { "https" } else { "http" };
            let host = if host.contains(':') && !host.starts_with('[') { format!("[{host}]") } else { host.to_owned() };
            let mut endpoint = tonic::transport::Endpoint::from_shared(format!("{http}://{host}:{port}"))
                .map_err(|e| format!("`{shown}`: {e}"))?
                .connect_timeout(CONNECT)
                .tcp_nodelay(true);
            if scheme == "grpcs" {
                endpoint = endpoint
                    .tls_config(tonic::transport::ClientTlsConfig::new().with_native_roots())
                    .map_err(|e| format!("`{shown}`: {e}"))?;
            }
            let _guard = runtime.enter();
            endpoint.connect_lazy()
        }
        other => return Err(format!("`{shown}`: not a REAPI URL (`{other}://`)")),
    };
    let channel = InterceptedService::new(channel, headers);
    let mut salt = FORMAT.as_bytes().to_vec();
    salt.push(b'\n');
    salt.extend_from_slice(partition.as_bytes());
    let mut remote = ReapiRemote {
        channel,
        instance,
        shown,
        salt,
        negotiated: Err(String::new()),
        learned: Mutex::new(HashMap::new()),
        uploaded: Mutex::new(HashMap::new()),
        runtime,
    };
    remote.negotiated = remote.negotiate();
    if let Err(e) = &remote.negotiated {
        tracing::warn!("remote cache `{}`: {}", remote.shown, qpf_core::text::escape(e));
    }
    Ok(remote)
}

/// Segments REAPI reserves in resource names, which an instance name may not contain.
const RESERVED: [&str; 7] =
    ["blobs", "uploads", "actions", "actionResults", "operations", "capabilities", "compressed-blobs"];

/// An instance name: up to 256 characters of `[A-Za-z0-9._-]` in `/`-separated segments, none
/// empty or reserved.
fn check_instance(name: &str) -> Result<(), String> {
    if name.is_empty() {
        return Ok(());
    }
    let ok = name.len() <= 256
        && name.split('/').all(|seg| {
            !seg.is_empty()
                && !RESERVED.contains(&seg)
                && seg.bytes().all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'))
        });
    if ok {
        Ok(())
    } else {
        Err(format!(
            "instance `{}`: an instance name is up to 256 characters of [A-Za-z0-9._-] in `/`-separated segments, none of them {}",
            qpf_core::text::escape(&cut(name)),
            RESERVED.join(", ")
        ))
    }
}

/// Whether a `grpc://` URL names this machine.
fn is_loopback(url: &url::Url) -> bool {
    match url.host() {
        Some(url::Host::Ipv4(ip)) => ip.is_loopback(),
        Some(url::Host::Ipv6(ip)) => ip.is_loopback(),
        // `grpc` is not a scheme the URL standard knows, so its hosts stay text.
        Some(url::Host::Domain(d)) => {
            d == "localhost"
                || d.trim_start_matches('[')
                    .trim_end_matches(']')
                    .parse::<std::net::IpAddr>()
                    .is_ok_and(|ip| ip.is_loopback())
        }
        None => false,
    }
}

/// A gRPC failure, as text (the server's message cut: it is untrusted).
fn status(what: &str, s: &tonic::Status) -> RemoteError {
    RemoteError(format!("{what}: {:?}: {}", s.code(), cut(s.message())))
}

fn digest_of(function: DigestFunction, bytes: &[u8]) -> re::Digest {
    let hash = match function {
        DigestFunction::Blake3 => blake3::hash(bytes).to_hex().to_string(),
        _ => {
            use sha2::Digest as _;
            let sum = sha2::Sha256::digest(bytes);
            sum.iter().map(|b| format!("{b:02x}")).collect()
        }
    };
    re::Digest { hash, size_bytes: bytes.len() as i64 }
}

impl ReapiRemote {
    fn negotiate(&self) -> Result<Negotiated, String> {
        let mut client = CapabilitiesClient::new(self.channel.clone());
        let request = re::GetCapabilitiesRequest { instance_name: self.instance.clone() };
        let caps = self
            .runtime
            .block_on(async { tokio::time::timeout(CONNECT * 2, client.get_capabilities(request)).await })
            .map_err(|_| format!("no answer to GetCapabilities within {} s", (CONNECT * 2).as_secs()))?
            .map_err(|s| status("GetCapabilities", &s).0)?
            .into_inner();
        let cache = caps.cache_capabilities.ok_or("the server has no cache (no cache_capabilities)")?;
        let function = if cache.digest_functions.contains(&(DigestFunction::Blake3 as i32)) {
            DigestFunction::Blake3
        } else if cache.digest_functions.contains(&(DigestFunction::Sha256 as i32)) || cache.digest_functions.is_empty()
        {
            // An empty list is an old server: SHA-256 was the only function then.
            DigestFunction::Sha256
        } else {
            return Err("the server offers neither BLAKE3 nor SHA-256".into());
        };
        let update_enabled = cache.action_cache_update_capabilities.is_some_and(|u| u.update_enabled);
        let server = u64::try_from(cache.max_batch_total_size_bytes).unwrap_or(0);
        let batch = if server == 0 { MAX_BATCH } else { server.min(MAX_BATCH) };
        tracing::debug!(?function, update_enabled, batch, "remote cache capabilities");
        Ok(Negotiated { function, update_enabled, batch })
    }

    fn negotiated(&self) -> Result<Negotiated, RemoteError> {
        self.negotiated.clone().map_err(RemoteError)
    }

    /// An ActionCache client that decodes answers up to `limit` bytes of manifest (inlined), with
    /// room for the rest of the message.
    fn ac(&self, limit: u64) -> ActionCacheClient<Svc> {
        let max = usize::try_from(limit.saturating_add(1 << 20)).unwrap_or(MAX_MESSAGE).min(MAX_MESSAGE);
        ActionCacheClient::new(self.channel.clone()).max_decoding_message_size(max)
    }

    /// A CAS client that decodes one batch (at most the negotiated batch size) with room.
    fn cas(&self, n: Negotiated) -> ContentAddressableStorageClient<Svc> {
        let max = usize::try_from(n.batch.saturating_add(1 << 20)).unwrap_or(MAX_MESSAGE).min(MAX_MESSAGE);
        ContentAddressableStorageClient::new(self.channel.clone()).max_decoding_message_size(max)
    }

    /// A ByteStream client (chunks of up to 4 MiB, gRPC's usual message, with room).
    fn bytestream(&self) -> bs::byte_stream_client::ByteStreamClient<Svc> {
        bs::byte_stream_client::ByteStreamClient::new(self.channel.clone()).max_decoding_message_size(5 << 20)
    }

    fn run<T>(
        &self,
        what: &str,
        deadline: Duration,
        work: impl Future<Output = Result<T, RemoteError>>,
    ) -> Result<T, RemoteError> {
        self.runtime
            .block_on(async { tokio::time::timeout(deadline, work).await })
            .map_err(|_| RemoteError(format!("{what}: no answer within {} s", deadline.as_secs())))?
    }

    /// The Action of an entry, with the Command, input root and file it names (to be uploaded
    /// with a result), and its digest.
    fn action(&self, function: DigestFunction, name: &str) -> (re::Digest, Vec<(re::Digest, Vec<u8>)>) {
        let command = re::Command {
            arguments: vec!["qpf-invocation".to_owned(), name.to_owned()],
            output_paths: vec![MANIFEST_PATH.to_owned()],
            ..Default::default()
        }
        .encode_to_vec();
        let file = name.as_bytes().to_vec();
        let file_digest = digest_of(function, &file);
        let root = re::Directory {
            files: vec![re::FileNode {
                name: "invocation".to_owned(),
                digest: Some(file_digest.clone()),
                ..Default::default()
            }],
            ..Default::default()
        }
        .encode_to_vec();
        let (command_digest, root_digest) = (digest_of(function, &command), digest_of(function, &root));
        let action = re::Action {
            command_digest: Some(command_digest.clone()),
            input_root_digest: Some(root_digest.clone()),
            salt: self.salt.clone(),
            ..Default::default()
        }
        .encode_to_vec();
        let action_digest = digest_of(function, &action);
        (
            action_digest.clone(),
            vec![(action_digest, action), (command_digest, command), (root_digest, root), (file_digest, file)],
        )
    }

    /// The ByteStream resource of a blob: `{instance}/blobs/[blake3/]{hash}/{size}`, with
    /// `uploads/{uuid}/` before `blobs` for a write.
    fn resource(&self, function: DigestFunction, digest: &re::Digest, upload: bool) -> String {
        let mut out = String::new();
        if !self.instance.is_empty() {
            out.push_str(&self.instance);
            out.push('/');
        }
        if upload {
            out.push_str(&format!("uploads/{}/", uuid::Uuid::new_v4()));
        }
        out.push_str("blobs/");
        if function == DigestFunction::Blake3 {
            out.push_str("blake3/");
        }
        out.push_str(&format!("{}/{}", digest.hash, digest.size_bytes));
        out
    }

    /// Reads one blob (at most its size; more, or other bytes than a batch was asked for, are
    /// wrong bytes, returned empty so that the engine's digest check fails).
    async fn read_blob(&self, n: Negotiated, blob: Remote) -> Result<Option<Vec<u8>>, RemoteError> {
        let size = u64::try_from(blob.size).unwrap_or(0);
        if size == 0 {
            return Ok(Some(Vec::new()));
        }
        let digest = blob.digest();
        if size + PER_BLOB_OVERHEAD <= n.batch {
            let response = self
                .cas(n)
                .batch_read_blobs(re::BatchReadBlobsRequest {
                    instance_name: self.instance.clone(),
                    digests: vec![digest.clone()],
                    digest_function: n.function as i32,
                    ..Default::default()
                })
                .await
                .map_err(|s| status("BatchReadBlobs", &s))?
                .into_inner();
            let Some(one) = response.responses.into_iter().find(|r| r.digest.as_ref() == Some(&digest)) else {
                return Err(RemoteError("BatchReadBlobs: the answer lacks the blob asked for".into()));
            };
            return match one.status.map(|s| s.code).unwrap_or(0) {
                0 if one.data.len() as u64 == size => Ok(Some(one.data)),
                0 => Ok(Some(Vec::new())),
                5 => Ok(None), // NOT_FOUND
                code => Err(RemoteError(format!("BatchReadBlobs: status {code}"))),
            };
        }
        let request =
            bs::ReadRequest { resource_name: self.resource(n.function, &digest, false), ..Default::default() };
        let mut stream = match self.bytestream().read(request).await {
            Ok(r) => r.into_inner(),
            Err(s) if s.code() == tonic::Code::NotFound => return Ok(None),
            Err(s) => return Err(status("ByteStream.Read", &s)),
        };
        let mut out = Vec::with_capacity(usize::try_from(size.min(64 << 20)).unwrap_or(0));
        loop {
            match stream.message().await {
                Ok(Some(chunk)) => {
                    if (out.len() + chunk.data.len()) as u64 > size {
                        return Ok(Some(Vec::new()));
                    }
                    out.extend_from_slice(&chunk.data);
                }
                Ok(None) => break,
                Err(s) if s.code() == tonic::Code::NotFound => return Ok(None),
                Err(s) => return Err(status("ByteStream.Read", &s)),
            }
        }
        Ok(Some(if out.len() as u64 == size { out } else { Vec::new() }))
    }

    /// Uploads the blobs the server lacks (all of them without `check`): small ones in batches,
    /// large ones through ByteStream.
    async fn upload(&self, n: Negotiated, blobs: Vec<(re::Digest, Vec<u8>)>, check: bool) -> Result<(), RemoteError> {
        let missing: Vec<re::Digest> = if check {
            self.cas(n)
                .find_missing_blobs(re::FindMissingBlobsRequest {
                    instance_name: self.instance.clone(),
                    blob_digests: blobs.iter().map(|(d, _)| d.clone()).collect(),
                    digest_function: n.function as i32,
                })
                .await
                .map_err(|s| status("FindMissingBlobs", &s))?
                .into_inner()
                .missing_blob_digests
        } else {
            blobs.iter().map(|(d, _)| d.clone()).collect()
        };
        let mut batch: Vec<re::batch_update_blobs_request::Request> = Vec::new();
        let mut batch_bytes = 0u64;
        for (digest, bytes) in blobs.into_iter().filter(|(d, _)| missing.contains(d)) {
            let cost = bytes.len() as u64 + PER_BLOB_OVERHEAD;
            if cost > n.batch {
                self.write_stream(n, &digest, bytes).await?;
                continue;
            }
            if batch_bytes + cost > n.batch {
                self.send_batch(n, std::mem::take(&mut batch)).await?;
                batch_bytes = 0;
            }
            batch_bytes += cost;
            batch.push(re::batch_update_blobs_request::Request { digest: Some(digest), data: bytes, compressor: 0 });
        }
        if !batch.is_empty() {
            self.send_batch(n, batch).await?;
        }
        Ok(())
    }

    /// One `BatchUpdateBlobs`; every blob sent must be answered OK.
    async fn send_batch(
        &self,
        n: Negotiated,
        requests: Vec<re::batch_update_blobs_request::Request>,
    ) -> Result<(), RemoteError> {
        let sent: Vec<re::Digest> = requests.iter().filter_map(|r| r.digest.clone()).collect();
        let response = self
            .cas(n)
            .batch_update_blobs(re::BatchUpdateBlobsRequest {
                instance_name: self.instance.clone(),
                requests,
                digest_function: n.function as i32,
            })
            .await
            .map_err(|s| status("BatchUpdateBlobs", &s))?
            .into_inner();
        for digest in &sent {
            match response.responses.iter().find(|r| r.digest.as_ref() == Some(digest)) {
                None => return Err(RemoteError("BatchUpdateBlobs: a blob sent was not answered".into())),
                Some(r) => {
                    if let Some(s) = r.status.as_ref().filter(|s| s.code != 0) {
                        return Err(RemoteError(format!("BatchUpdateBlobs: status {}: {}", s.code, cut(&s.message))));
                    }
                }
            }
        }
        Ok(())
    }

    async fn write_stream(&self, n: Negotiated, digest: &re::Digest, bytes: Vec<u8>) -> Result<(), RemoteError> {
        let resource = self.resource(n.function, digest, true);
        let total = bytes.len();
        let requests = (0..total.div_ceil(CHUNK)).map(move |i| {
            let (offset, end) = (i * CHUNK, ((i + 1) * CHUNK).min(total));
            bs::WriteRequest {
                resource_name: if offset == 0 { resource.clone() } else { String::new() },
                write_offset: offset as i64,
                finish_write: end == total,
                data: bytes[offset..end].to_vec(),
            }
        });
        let response = self
            .bytestream()
            .write(futures_util::stream::iter(requests))
            .await
            .map_err(|s| status("ByteStream.Write", &s))?
            .into_inner();
        // A server that has the blob may answer early, with the whole size.
        if response.committed_size != total as i64 {
            return Err(RemoteError(format!(
                "ByteStream.Write: {} of {total} bytes committed",
                response.committed_size
            )));
        }
        Ok(())
    }

    /// The entry of `name`: the ActionResult's manifest, whose blobs' server digests are learnt.
    async fn entry(&self, n: Negotiated, name: &str, limit: u64) -> Result<EntryRead, RemoteError> {
        let (action_digest, _) = self.action(n.function, name);
        let result = match self
            .ac(limit)
            .get_action_result(re::GetActionResultRequest {
                instance_name: self.instance.clone(),
                action_digest: Some(action_digest),
                inline_output_files: vec![MANIFEST_PATH.to_owned()],
                digest_function: n.function as i32,
                ..Default::default()
            })
            .await
        {
            Ok(r) => r.into_inner(),
            Err(s) if s.code() == tonic::Code::NotFound => return Ok(EntryRead::Absent),
            Err(s) if s.code() == tonic::Code::OutOfRange => return Ok(EntryRead::TooLarge(limit + 1)),
            Err(s) => return Err(status("GetActionResult", &s)),
        };
        // Not an action of ours, or a malformed one: nothing to use.
        let Some(manifest) = result.output_files.iter().find(|f| f.path == MANIFEST_PATH) else {
            return Ok(EntryRead::Absent);
        };
        let Some(digest) = manifest.digest.as_ref().and_then(Remote::checked) else { return Ok(EntryRead::Absent) };
        let size = u64::try_from(digest.size).unwrap_or(u64::MAX);
        if size > limit {
            return Ok(EntryRead::TooLarge(size));
        }
        if n.function != DigestFunction::Blake3 {
            let rows = result.output_files.iter().filter_map(|f| {
                let key = hex32(f.path.strip_prefix("blobs/")?)?;
                Some((key, Remote::checked(f.digest.as_ref()?)?))
            });
            remember(&self.learned, rows.take(MAX_ROWS));
        }
        let bytes = if manifest.contents.len() as u64 == size {
            manifest.contents.clone()
        } else if !manifest.contents.is_empty() {
            return Ok(EntryRead::Found(Vec::new()));
        } else {
            match self.read_blob(n, digest).await? {
                Some(b) => b,
                // The result outlived its manifest (evicted): a miss.
                None => return Ok(EntryRead::Absent),
            }
        };
        // The server's digest is checked here too (the engine checks QPF's own seal after).
        if digest_of(n.function, &bytes) != digest.digest() {
            return Ok(EntryRead::Found(Vec::new()));
        }
        Ok(EntryRead::Found(bytes))
    }

    /// The server's digest of the blob QPF knows as `blake3:<hex>` of `size` bytes.
    fn remote_digest(&self, n: Negotiated, digest: &str, size: u64) -> Result<Option<Remote>, RemoteError> {
        let key = blake3_of(digest)?;
        if n.function == DigestFunction::Blake3 {
            let size = i64::try_from(size).map_err(|_| RemoteError(format!("a blob of {size} bytes")))?;
            return Ok(Some(Remote { hash: key, size }));
        }
        let known = |map: &Mutex<HashMap<[u8; 32], Remote>>| map.lock().ok().and_then(|m| m.get(&key).copied());
        Ok(known(&self.uploaded).or_else(|| known(&self.learned)))
    }

    /// A deadline that grows with the bytes moved: [`TIMEOUT`] plus a second per MiB.
    fn deadline(size: u64) -> Duration {
        TIMEOUT + Duration::from_secs(size >> 20)
    }
}

/// Remembers pairs in `map`, emptied when it would grow past [`MAX_KNOWN`].
fn remember(map: &Mutex<HashMap<[u8; 32], Remote>>, pairs: impl Iterator<Item = ([u8; 32], Remote)>) {
    if let Ok(mut known) = map.lock() {
        for (key, remote) in pairs {
            if known.len() >= MAX_KNOWN {
                known.clear();
            }
            known.insert(key, remote);
        }
    }
}

impl RemoteStore for ReapiRemote {
    fn describe(&self) -> String {
        self.shown.clone()
    }

    fn accepts_updates(&self) -> bool {
        // Unknown (the server did not answer): assumed yes, so that a shard fails on its upload
        // (counted, and its marker not stored) rather than being refused as a usage error.
        self.negotiated.as_ref().map_or(true, |n| n.update_enabled)
    }

    fn get_entry(&self, name: &str, limit: u64) -> Result<Option<Vec<u8>>, RemoteError> {
        let n = self.negotiated()?;
        match self.run("GetActionResult", TIMEOUT, self.entry(n, name, limit))? {
            EntryRead::Found(bytes) => Ok(Some(bytes)),
            EntryRead::Absent => Ok(None),
            EntryRead::TooLarge(size) => {
                Err(RemoteError(format!("the entry is {size} bytes, over the limit of {limit}")))
            }
        }
    }

    fn get_entries(&self, names: &[String], limit: u64) -> Result<HashMap<String, Option<Vec<u8>>>, RemoteError> {
        use futures_util::{StreamExt, TryStreamExt};
        let n = self.negotiated()?;
        let requests = names.iter().map(|name| async move {
            Ok::<_, RemoteError>(match self.entry(n, name, limit).await? {
                EntryRead::Found(bytes) => (name.clone(), Some(Some(bytes))),
                EntryRead::Absent => (name.clone(), Some(None)),
                // Over the limit: left to be asked alone (and refused then).
                EntryRead::TooLarge(_) => (name.clone(), None),
            })
        });
        let all = futures_util::stream::iter(requests).buffer_unordered(CONCURRENT_READS).try_collect::<Vec<_>>();
        let deadline = TIMEOUT.max(Duration::from_millis(10 * names.len() as u64));
        let got = self.run("GetActionResult", deadline, all)?;
        Ok(got.into_iter().filter_map(|(name, entry)| entry.map(|e| (name, e))).collect())
    }

    fn get_blob(&self, digest: &str, size: u64) -> Result<Option<Vec<u8>>, RemoteError> {
        let n = self.negotiated()?;
        let Some(remote) = self.remote_digest(n, digest, size)? else { return Ok(None) };
        if u64::try_from(remote.size).ok() != Some(size) {
            // The result names bytes of another size under this digest: wrong bytes, unread.
            return Ok(Some(Vec::new()));
        }
        self.run("reading a blob", Self::deadline(size), self.read_blob(n, remote))
    }

    fn put_blob(&self, digest: &str, bytes: &[u8], replace: bool) -> Result<(), RemoteError> {
        let n = self.negotiated()?;
        let key = blake3_of(digest)?;
        let remote = digest_of(n.function, bytes);
        if let Some(r) = Remote::checked(&remote) {
            remember(&self.uploaded, std::iter::once((key, r)));
        }
        // Content-addressed by the server's own digest: "replacing" is uploading the true bytes,
        // whatever the server had (a server that verifies uploads never had wrong ones).
        self.run(
            "uploading a blob",
            Self::deadline(bytes.len() as u64),
            self.upload(n, vec![(remote, bytes.to_vec())], !replace),
        )
    }

    fn put_entry(&self, name: &str, bytes: &[u8], blobs: &[(String, u64)]) -> Result<(), RemoteError> {
        let n = self.negotiated()?;
        if !n.update_enabled {
            return Err(RemoteError("the server does not accept results (update_enabled is false)".into()));
        }
        let mut output_files = vec![re::OutputFile {
            path: MANIFEST_PATH.to_owned(),
            digest: Some(digest_of(n.function, bytes)),
            ..Default::default()
        }];
        for (digest, size) in blobs {
            // Only pairs computed here from the bytes uploaded (or, with BLAKE3, QPF's own).
            let key = blake3_of(digest)?;
            let remote = if n.function == DigestFunction::Blake3 {
                self.remote_digest(n, digest, *size)?
            } else {
                self.uploaded.lock().ok().and_then(|m| m.get(&key).copied())
            };
            let Some(remote) = remote else {
                return Err(RemoteError(format!("the blob `{}` was not uploaded before its entry", cut(digest))));
            };
            let hex = &digest["blake3:".len()..];
            output_files.push(re::OutputFile {
                path: format!("blobs/{hex}"),
                digest: Some(remote.digest()),
                ..Default::default()
            });
        }
        output_files.sort_by(|a, b| a.path.cmp(&b.path));
        output_files.dedup_by(|a, b| a.path == b.path);
        let (action_digest, mut uploads) = self.action(n.function, name);
        uploads.push((digest_of(n.function, bytes), bytes.to_vec()));
        let result = re::ActionResult {
            output_files,
            exit_code: 0,
            execution_metadata: Some(re::ExecutedActionMetadata { worker: "qpf".to_owned(), ..Default::default() }),
            ..Default::default()
        };
        self.run("UpdateActionResult", Self::deadline(bytes.len() as u64), async {
            self.upload(n, uploads, true).await?;
            self.ac(qpf_engine::remote::MAX_REMOTE_MANIFEST_BYTES)
                .update_action_result(re::UpdateActionResultRequest {
                    instance_name: self.instance.clone(),
                    action_digest: Some(action_digest),
                    action_result: Some(result),
                    digest_function: n.function as i32,
                    ..Default::default()
                })
                .await
                .map_err(|s| status("UpdateActionResult", &s))?;
            Ok(())
        })
    }
}

#[cfg(test)]
mod tests {
    use re::capabilities_server::{Capabilities, CapabilitiesServer};

    use super::*;

    /// A server with a cache that takes no results, offers BLAKE3, and answers only callers
    /// carrying `x-api-key: secret`.
    struct ReadOnlyServer;

    #[tonic::async_trait]
    impl Capabilities for ReadOnlyServer {
        async fn get_capabilities(
            &self,
            request: tonic::Request<re::GetCapabilitiesRequest>,
        ) -> Result<tonic::Response<re::ServerCapabilities>, tonic::Status> {
            if request.metadata().get("x-api-key").is_none_or(|v| v != "secret") {
                return Err(tonic::Status::unauthenticated("no key"));
            }
            assert_eq!(request.get_ref().instance_name, "main");
            Ok(tonic::Response::new(re::ServerCapabilities {
                cache_capabilities: Some(re::CacheCapabilities {
                    digest_functions: vec![DigestFunction::Sha256 as i32, DigestFunction::Blake3 as i32],
                    action_cache_update_capabilities: Some(re::ActionCacheUpdateCapabilities { update_enabled: false }),
                    max_batch_total_size_bytes: 1 << 20,
                    ..Default::default()
                }),
                ..Default::default()
            }))
        }
    }

    fn serve() -> (tokio::runtime::Runtime, std::net::SocketAddr) {
        let runtime = tokio::runtime::Runtime::new().expect("runtime");
        let listener = runtime.block_on(tokio::net::TcpListener::bind("127.0.0.1:0")).expect("bind");
        let addr = listener.local_addr().expect("addr");
        runtime.spawn(
            tonic::transport::Server::builder()
                .add_service(CapabilitiesServer::new(ReadOnlyServer))
                .serve_with_incoming(tonic::transport::server::TcpIncoming::from(listener)),
        );
        (runtime, addr)
    }

    #[test]
    fn a_server_that_takes_no_results_is_used_read_only_and_blake3_is_chosen_when_offered() {
        let (_server, addr) = serve();
        let url = url::Url::parse(&format!("grpc://{addr}?instance=main")).expect("url");
        let headers = Headers::parse("X-Api-Key = secret\n").expect("headers");
        let remote = open(&url, Origin::User, "partition", headers).expect("opens");
        assert_eq!(remote.describe(), format!("grpc://{addr}?instance=main"));
        assert!(!remote.accepts_updates());
        let n = remote.negotiated().expect("negotiated");
        assert_eq!(n.function, DigestFunction::Blake3);
        assert_eq!(n.batch, 1 << 20, "the server's limit, below ours");
        let e = remote.put_entry("x", b"y", &[]).expect_err("refused");
        assert!(e.0.contains("update_enabled is false"), "{e}");

        // Without the key: the server says no, and every call fails with why (never the key).
        let remote = open(&url, Origin::User, "partition", Headers::default()).expect("opens");
        let e = remote.get_entry("x", 10).expect_err("no capabilities");
        assert!(e.0.contains("Unauthenticated"), "{e}");
        assert!(remote.accepts_updates(), "unknown counts as yes: a shard then fails on its upload");
    }

    #[test]
    fn actions_are_deterministic_and_salted_with_the_format_and_partition() {
        let (_server, addr) = serve();
        let url = url::Url::parse(&format!("grpc://{addr}")).expect("url");
        let a = open(&url, Origin::User, "one", Headers::default()).expect("opens");
        let b = open(&url, Origin::User, "two", Headers::default()).expect("opens");
        let (first, uploads) = a.action(DigestFunction::Sha256, "name");
        assert_eq!(first, a.action(DigestFunction::Sha256, "name").0, "same name, same action");
        assert_ne!(first, a.action(DigestFunction::Sha256, "other").0);
        assert_ne!(first, b.action(DigestFunction::Sha256, "name").0, "another partition, another action");
        assert_eq!(first.hash.len(), 64);
        let action = <re::Action as prost::Message>::decode(uploads[0].1.as_slice()).expect("an Action");
        assert!(action.salt.starts_with(FORMAT.as_bytes()) && action.salt.ends_with(b"one"));
        assert!(uploads.iter().all(|(d, bytes)| *d == digest_of(DigestFunction::Sha256, bytes)));
        let up = a.resource(DigestFunction::Blake3, &first, true);
        assert!(up.starts_with("uploads/") && up.contains("/blobs/blake3/"), "{up}");
        assert_eq!(
            a.resource(DigestFunction::Sha256, &first, false),
            format!("blobs/{}/{}", first.hash, first.size_bytes)
        );
        assert!(Headers::parse("bad name=x").is_err());
    }

    #[test]
    fn credentials_go_only_where_the_user_pointed_and_never_into_a_message() {
        let headers = || Headers::parse("authorization=Bearer s3cr3t").expect("headers");
        let url = url::Url::parse("grpcs://cache.example.com").expect("url");
        let e = open(&url, Origin::Project, "", headers()).expect_err("a project's server gets no credentials");
        assert!(e.contains("sent only to a server named by --remote-cache"), "{e}");
        let url = url::Url::parse("grpc://cache.example.com:9092").expect("url");
        let e = open(&url, Origin::User, "", headers()).expect_err("clear text");
        assert!(e.contains("clear text"), "{e}");
        // A malformed line is named by number: it may hold the secret.
        let e = Headers::parse("x-api-key=ok\nauthorization: Bearer s3cr3t==").expect_err("malformed");
        assert!(e.contains("line 2") && !e.contains("s3cr3t"), "{e}");
        assert!(!format!("{:?}", headers()).contains("s3cr3t"));
    }

    #[test]
    fn instance_names_and_server_digests_are_checked() {
        for bad in ["a//b", "main/blobs", "uploads", "x\u{1b}[2J", &"a".repeat(300)] {
            assert!(check_instance(bad).is_err(), "{bad:?}");
        }
        for good in ["", "main", "ci/linux-x86_64", "a.b_c-d"] {
            assert!(check_instance(good).is_ok(), "{good}");
        }
        let ok = "ab".repeat(32);
        assert!(Remote::checked(&re::Digest { hash: ok.clone(), size_bytes: 3 }).is_some());
        assert!(Remote::checked(&re::Digest { hash: ok.clone(), size_bytes: -1 }).is_none(), "negative size");
        assert!(Remote::checked(&re::Digest { hash: ok.to_uppercase(), size_bytes: 3 }).is_none());
        assert!(Remote::checked(&re::Digest { hash: format!("{ok}00"), size_bytes: 3 }).is_none(), "too long");
        assert!(Remote::checked(&re::Digest { hash: "../x".into(), size_bytes: 3 }).is_none());
        let r = Remote::checked(&re::Digest { hash: ok.clone(), size_bytes: 3 }).expect("ok");
        assert_eq!(r.digest().hash, ok);
    }
}
