//! Plugins as Wasm OCI artifacts: `qpf plugin push` and `qpf plugin pull`.
//!
//! A plugin travels the way Spin and wasmCloud ship components, under the conventions of the CNCF
//! Wasm OCI artifact layout: an image manifest whose config has the media type
//! `application/vnd.wasm.config.v0+json` and whose single layer is the component, media type
//! `application/wasm`. Any OCI registry (Docker Hub, GHCR, Harbor, ECR, a `registry:2` on
//! loopback) stores it; `oci-wasm` writes and checks the layout, `oci-client` speaks the protocol.
//!
//! This crate only moves bytes. What a project pins and trusts is the component's `blake3:` digest,
//! checked by the engine after the pull (see `qpf_engine::plugin_store`); the registry's own sha256
//! digests are checked here on the way in (a tampered blob is refused).
//!
//! Everything a registry sends is untrusted: the component is read under a byte budget, every
//! operation under a deadline, and the registry's messages are cut short before they reach an error.

use std::collections::BTreeMap;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use oci_client::client::{ClientConfig, ClientProtocol};
use oci_client::errors::{OciDistributionError, OciErrorCode};
use oci_client::secrets::RegistryAuth;
use oci_client::{Client, Reference};
use oci_wasm::{WasmClient, WasmConfig};
use tokio::io::AsyncWrite;

/// The longest a registry's own message may be in an error (the rest is cut).
const MAX_MESSAGE_CHARS: usize = 300;

/// How `push` and `pull` reach a registry.
#[derive(Debug, Clone)]
pub struct Options {
    /// Basic-auth credentials for one registry; every other registry, and every registry when
    /// `None`, is accessed anonymously.
    pub credentials: Option<Credentials>,
    /// Registries (`host` or `host:port`) spoken to over plain HTTP besides the loopback ones
    /// (`localhost`, `127.0.0.0/8`, `[::1]`), which always are.
    pub plain_http: Vec<String>,
    /// The most one `push` or `pull` may take, connection and transfer included.
    pub timeout: Duration,
}

impl Default for Options {
    fn default() -> Options {
        Options { credentials: None, plain_http: Vec::new(), timeout: Duration::from_secs(120) }
    }
}

/// A user name and password (or token) for one registry: they are sent to no other.
#[derive(Clone)]
pub struct Credentials {
    /// The registry they are for, `host[:port]` as in references (`ghcr.io`, `localhost:5000`).
    pub registry: String,
    /// The user name.
    pub username: String,
    /// The password or access token.
    pub password: String,
}

impl std::fmt::Debug for Credentials {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Credentials")
            .field("registry", &self.registry)
            .field("username", &self.username)
            .finish_non_exhaustive()
    }
}

/// What a push left in the registry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Pushed {
    /// The full reference pushed, e.g. `ghcr.io/acme/py-models:1.2.0`.
    pub reference: String,
    /// Its registry and repository, e.g. `ghcr.io/acme/py-models`.
    pub repository: String,
    /// The manifest's digest (`sha256:…`): `REPOSITORY@DIGEST` names exactly this push.
    pub manifest_digest: String,
}

/// A component's imports and exports as the host sees them (`qpf plugin inspect`): the artifact's
/// description when `oci-wasm` cannot read the component's WIT.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Surface {
    /// Import names, e.g. `qpf:extractor/host@0.1.0`.
    pub imports: Vec<String>,
    /// Export names.
    pub exports: Vec<String>,
}

/// A pulled component.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Pulled {
    /// The component's bytes (the artifact's only layer, its sha256 checked).
    pub component: Vec<u8>,
    /// The manifest's digest (`sha256:…`).
    pub manifest_digest: String,
}

/// Why a push or pull failed.
#[derive(Debug, thiserror::Error)]
pub enum OciError {
    /// The reference does not parse.
    #[error("`{reference}` is not an OCI reference (REGISTRY/REPOSITORY[:TAG|@DIGEST]): {message}")]
    BadReference {
        /// The reference as given.
        reference: String,
        /// Why.
        message: String,
    },
    /// No connection to the registry (down, wrong port, DNS, TLS).
    #[error("cannot reach the registry `{registry}`: {message}")]
    Unreachable {
        /// `host[:port]`.
        registry: String,
        /// The transport's reason.
        message: String,
    },
    /// The registry refused the credentials, or asks for some.
    #[error(
        "the registry `{registry}` refused access to `{reference}` (log in with QPF_OCI_REGISTRY={registry}, QPF_OCI_USERNAME and QPF_OCI_PASSWORD, or check them): {message}"
    )]
    Unauthorized {
        /// `host[:port]`.
        registry: String,
        /// The reference.
        reference: String,
        /// The registry's reason.
        message: String,
    },
    /// No such repository, tag or digest.
    #[error("`{reference}` does not exist in the registry `{registry}`")]
    NotFound {
        /// `host[:port]`.
        registry: String,
        /// The reference.
        reference: String,
    },
    /// The artifact is not one Wasm component (wrong media types, several layers).
    #[error("`{reference}` is not a Wasm component artifact: {message}")]
    NotAComponent {
        /// The reference.
        reference: String,
        /// What is wrong with it.
        message: String,
    },
    /// The component is over the byte budget.
    #[error("`{reference}`: the component is {size} bytes, over the limit of {limit} bytes")]
    TooLarge {
        /// The reference.
        reference: String,
        /// What the registry announced or sent.
        size: u64,
        /// The budget.
        limit: u64,
    },
    /// The bytes received do not have the digest the registry announced: a tampered or corrupt
    /// blob.
    #[error("`{reference}`: the component received does not match its digest (tampered or corrupt blob): {message}")]
    Tampered {
        /// The reference.
        reference: String,
        /// Expected and actual digests.
        message: String,
    },
    /// The operation took longer than [`Options::timeout`].
    #[error("`{reference}`: the registry `{registry}` did not finish within {seconds} s")]
    Timeout {
        /// `host[:port]`.
        registry: String,
        /// The reference.
        reference: String,
        /// The deadline.
        seconds: u64,
    },
    /// Anything else the registry or the transport reported.
    #[error("`{reference}`: {message}")]
    Registry {
        /// The reference.
        reference: String,
        /// The reason.
        message: String,
    },
}

/// Parses `REGISTRY/REPOSITORY[:TAG|@DIGEST]`; a reference without a registry is refused rather
/// than sent to Docker Hub by default.
///
/// # Errors
/// [`OciError::BadReference`].
pub fn parse_reference(reference: &str) -> Result<Reference, OciError> {
    let bad = |message: String| OciError::BadReference { reference: cut(reference), message };
    let first = reference.split('/').next().unwrap_or_default();
    if !reference.contains('/') || !(first.contains('.') || first.contains(':') || first == "localhost") {
        return Err(bad("name the registry, e.g. `ghcr.io/acme/plugin:1.0` or `localhost:5000/plugin:1.0`".into()));
    }
    reference.parse::<Reference>().map_err(|e| bad(e.to_string()))
}

/// Pushes `component` to `reference` as a Wasm OCI artifact. The artifact's config carries the
/// component's imports and exports and a fixed creation time, so pushing the same bytes twice
/// gives the same manifest digest.
///
/// # Errors
/// Any [`OciError`]; `NotAComponent` when the bytes are not a component.
pub fn push(component: &[u8], surface: &Surface, reference: &str, options: &Options) -> Result<Pushed, OciError> {
    let image = parse_reference(reference)?;
    let (mut config, layer) = match WasmConfig::from_raw_component(component.to_vec(), None) {
        Ok(described) => described,
        Err(e) => {
            // A component wasmtime runs but whose WIT `oci-wasm` cannot decode (a hand-written
            // one, say): described by the caller's list of its imports and exports instead.
            tracing::debug!("oci-wasm cannot describe the component ({e:#}); using the host's inspection");
            let described = oci_wasm::Component {
                exports: surface.exports.clone(),
                imports: surface.imports.clone(),
                target: None,
            };
            let mut config = WasmConfig {
                created: chrono::DateTime::<chrono::Utc>::UNIX_EPOCH,
                author: None,
                architecture: oci_wasm::WASM_ARCHITECTURE.to_owned(),
                os: oci_wasm::COMPONENT_OS.to_owned(),
                layer_digests: Vec::new(),
                component: Some(described),
            };
            let layer = oci_client::client::ImageLayer::new(
                component.to_vec(),
                oci_wasm::WASM_LAYER_MEDIA_TYPE.to_owned(),
                None,
            );
            config.layer_digests = vec![layer.sha256_digest()];
            (config, layer)
        }
    };
    // Reproducible manifests: the creation time is the Unix epoch, not the push's clock.
    config.created = chrono::DateTime::<chrono::Utc>::UNIX_EPOCH;
    let annotations = BTreeMap::from([("org.opencontainers.image.title".to_owned(), "plugin.wasm".to_owned())]);
    let client = client(&image, options);
    let auth = auth(&image, options);
    let out = run(&image, options, async {
        client.push(&image, &auth, layer, config, Some(annotations)).await.map_err(|e| classify(&image, &e))
    })?;
    let manifest_digest = digest_of_url(&out.manifest_url).unwrap_or_default();
    let repository = format!("{}/{}", image.registry(), image.repository());
    Ok(Pushed { reference: image.whole(), repository, manifest_digest })
}

/// Pulls the component at `reference`, refusing one over `max_bytes` before and while reading it.
///
/// # Errors
/// Any [`OciError`].
pub fn pull(reference: &str, options: &Options, max_bytes: u64) -> Result<Pulled, OciError> {
    let image = parse_reference(reference)?;
    let client = client(&image, options);
    let auth = auth(&image, options);
    run(&image, options, async {
        let (manifest, _config, manifest_digest) =
            client.pull_manifest_and_config(&image, &auth).await.map_err(|e| classify(&image, &e))?;
        let Some(layer) = manifest.layers.first() else {
            return Err(OciError::NotAComponent { reference: image.whole(), message: "no layer".into() });
        };
        if layer.media_type != oci_wasm::WASM_LAYER_MEDIA_TYPE {
            return Err(OciError::NotAComponent {
                reference: image.whole(),
                message: cut(&format!(
                    "its layer is `{}`, not `{}`",
                    layer.media_type,
                    oci_wasm::WASM_LAYER_MEDIA_TYPE
                )),
            });
        }
        let size = u64::try_from(layer.size).unwrap_or(u64::MAX);
        if size > max_bytes {
            return Err(OciError::TooLarge { reference: image.whole(), size, limit: max_bytes });
        }
        let mut sink = Bounded { bytes: Vec::new(), limit: max_bytes };
        client.pull_blob(&image, layer, &mut sink).await.map_err(|e| match e {
            OciDistributionError::IoError(io) if io.kind() == std::io::ErrorKind::FileTooLarge => {
                OciError::TooLarge { reference: image.whole(), size: max_bytes.saturating_add(1), limit: max_bytes }
            }
            other => classify_client(&image, &other),
        })?;
        Ok(Pulled { component: sink.bytes, manifest_digest })
    })
}

/// Tags asked for per page of the tag list.
const TAG_PAGE: usize = 1_000;

/// The tags of `repository` (`REGISTRY/REPOSITORY`), page by page, at most `max` of them (a
/// registry that keeps sending pages is cut off there, and by the deadline).
///
/// # Errors
/// Any [`OciError`].
pub fn list_tags(repository: &str, options: &Options, max: usize) -> Result<Vec<String>, OciError> {
    let image = parse_reference(repository)?;
    let client = client(&image, options);
    let auth = auth(&image, options);
    run(&image, options, async {
        let mut tags: Vec<String> = Vec::new();
        loop {
            let last = tags.last().cloned();
            let page = client
                .list_tags(&image, &auth, Some(TAG_PAGE), last.as_deref())
                .await
                .map_err(|e| classify_client(&image, &e))?;
            let count = page.tags.len();
            // A tag is at most 128 characters of `[A-Za-z0-9_.-]` (the distribution spec); others
            // are dropped, never shortened into another tag.
            let valid = |t: &String| {
                !t.is_empty() && t.len() <= 128 && t.bytes().all(|b| b.is_ascii_alphanumeric() || b"_.-".contains(&b))
            };
            tags.extend(page.tags.into_iter().filter(valid));
            // A short page is the last one; a page that does not move the cursor would loop.
            if count < TAG_PAGE || tags.len() >= max || tags.last() == last.as_ref() || tags.is_empty() {
                break;
            }
        }
        tags.truncate(max);
        Ok(tags)
    })
}

fn client(image: &Reference, options: &Options) -> WasmClient {
    let registry = image.resolve_registry().to_owned();
    let protocol = if is_loopback(&registry) || options.plain_http.iter().any(|r| r == &registry) {
        ClientProtocol::HttpsExcept(vec![registry])
    } else {
        ClientProtocol::Https
    };
    let config = ClientConfig {
        protocol,
        connect_timeout: Some(Duration::from_secs(10).min(options.timeout)),
        read_timeout: Some(options.timeout),
        // One layer: nothing to parallelise, and a hostile registry gets one stream at a time.
        max_concurrent_download: 1,
        max_concurrent_upload: 1,
        platform_resolver: None,
        ..ClientConfig::default()
    };
    WasmClient::new(Client::new(config))
}

/// The credentials when they are for `image`'s registry; anonymous otherwise, so that a reference
/// a project chose cannot draw them to another registry.
fn auth(image: &Reference, options: &Options) -> RegistryAuth {
    match &options.credentials {
        Some(c) if c.registry == image.resolve_registry() || c.registry == image.registry() => {
            RegistryAuth::Basic(c.username.clone(), c.password.clone())
        }
        _ => RegistryAuth::Anonymous,
    }
}

/// `localhost`, `127.0.0.0/8` and `[::1]`, with or without a port.
fn is_loopback(registry: &str) -> bool {
    let host = match registry.rsplit_once(':') {
        Some((h, port)) if port.bytes().all(|b| b.is_ascii_digit()) && !h.ends_with(':') => h,
        _ => registry,
    };
    let host = host.trim_start_matches('[').trim_end_matches(']');
    host == "localhost" || host.parse::<std::net::IpAddr>().is_ok_and(|ip| ip.is_loopback())
}

/// Runs one operation on a private single-threaded runtime, under the deadline.
fn run<T>(
    image: &Reference,
    options: &Options,
    work: impl std::future::Future<Output = Result<T, OciError>>,
) -> Result<T, OciError> {
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().map_err(|e| {
        OciError::Registry { reference: image.whole(), message: format!("cannot start the network runtime: {e}") }
    })?;
    runtime.block_on(async {
        tokio::time::timeout(options.timeout, work).await.unwrap_or_else(|_| {
            Err(OciError::Timeout {
                registry: image.resolve_registry().to_owned(),
                reference: image.whole(),
                seconds: options.timeout.as_secs(),
            })
        })
    })
}

/// Sorts an `oci-wasm` error (an `anyhow::Error` around the client's) into an [`OciError`].
fn classify(image: &Reference, e: &anyhow::Error) -> OciError {
    match e.downcast_ref::<OciDistributionError>() {
        Some(inner) => classify_client(image, inner),
        None => {
            let message = cut(&format!("{e:#}"));
            if message.contains("Wasm components must") {
                OciError::NotAComponent { reference: image.whole(), message }
            } else {
                OciError::Registry { reference: image.whole(), message }
            }
        }
    }
}

fn classify_client(image: &Reference, e: &OciDistributionError) -> OciError {
    let registry = image.resolve_registry().to_owned();
    let reference = image.whole();
    match e {
        OciDistributionError::RequestError(r) if r.is_connect() || r.is_timeout() || r.is_request() => {
            OciError::Unreachable { registry, message: cut(&chain(r)) }
        }
        OciDistributionError::AuthenticationFailure(m) => {
            OciError::Unauthorized { registry, reference, message: cut(m) }
        }
        OciDistributionError::UnauthorizedError { .. } => {
            OciError::Unauthorized { registry, reference, message: "401 Unauthorized".into() }
        }
        OciDistributionError::ImageManifestNotFoundError(_) => OciError::NotFound { registry, reference },
        OciDistributionError::ServerError { code: 404, .. } => OciError::NotFound { registry, reference },
        OciDistributionError::ServerError { code: 401 | 403, message, .. } => {
            OciError::Unauthorized { registry, reference, message: cut(message) }
        }
        OciDistributionError::RegistryError { envelope, .. } => {
            let codes: Vec<&OciErrorCode> = envelope.errors.iter().map(|e| &e.code).collect();
            if codes.iter().any(|c| matches!(c, OciErrorCode::Unauthorized | OciErrorCode::Denied)) {
                OciError::Unauthorized { registry, reference, message: envelope_text(envelope) }
            } else if codes.iter().any(|c| {
                matches!(
                    c,
                    OciErrorCode::ManifestUnknown
                        | OciErrorCode::NameUnknown
                        | OciErrorCode::NotFound
                        | OciErrorCode::BlobUnknown
                )
            }) {
                OciError::NotFound { registry, reference }
            } else {
                OciError::Registry { reference, message: envelope_text(envelope) }
            }
        }
        OciDistributionError::DigestError(d) => OciError::Tampered { reference, message: cut(&d.to_string()) },
        OciDistributionError::IncompatibleLayerMediaTypeError(m)
        | OciDistributionError::UnsupportedMediaTypeError(m) => OciError::NotAComponent { reference, message: cut(m) },
        OciDistributionError::ImageIndexParsingNoPlatformResolverError => OciError::NotAComponent {
            reference,
            message: "it is an image index (several platforms), not one component".into(),
        },
        other => OciError::Registry { reference, message: cut(&chain(other)) },
    }
}

/// The messages of a registry's error envelope, without its JSON.
fn envelope_text(envelope: &oci_client::errors::OciEnvelope) -> String {
    cut(&envelope.errors.iter().map(|e| e.message.trim()).collect::<Vec<_>>().join("; "))
}

/// An error and its sources on one line.
fn chain(e: &dyn std::error::Error) -> String {
    let mut out = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        out.push_str(": ");
        out.push_str(&s.to_string());
        source = s.source();
    }
    out
}

/// A registry's text, cut to [`MAX_MESSAGE_CHARS`].
fn cut(text: &str) -> String {
    let text = text.trim();
    match text.char_indices().nth(MAX_MESSAGE_CHARS) {
        Some((at, _)) => format!("{}…", &text[..at]),
        None => text.to_owned(),
    }
}

/// The digest at the end of a manifest URL (`…/manifests/sha256:…`).
fn digest_of_url(url: &str) -> Option<String> {
    url.rsplit('/').next().filter(|d| d.starts_with("sha256:")).map(str::to_owned)
}

/// A sink that refuses to grow past `limit` bytes.
struct Bounded {
    bytes: Vec<u8>,
    limit: u64,
}

impl AsyncWrite for Bounded {
    fn poll_write(mut self: Pin<&mut Self>, _: &mut Context<'_>, buf: &[u8]) -> Poll<std::io::Result<usize>> {
        let total = u64::try_from(self.bytes.len() + buf.len()).unwrap_or(u64::MAX);
        if total > self.limit {
            return Poll::Ready(Err(std::io::Error::new(std::io::ErrorKind::FileTooLarge, "over the byte budget")));
        }
        self.bytes.extend_from_slice(buf);
        Poll::Ready(Ok(buf.len()))
    }

    fn poll_flush(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Poll::Ready(Ok(()))
    }

    fn poll_shutdown(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Poll::Ready(Ok(()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn loopback_registries_are_recognised_with_or_without_a_port() {
        for r in ["localhost", "localhost:5000", "127.0.0.1:5000", "127.1.2.3", "[::1]:5000", "[::1]"] {
            assert!(is_loopback(r), "{r}");
        }
        for r in ["ghcr.io", "localhost.example.com:5000", "10.0.0.1:5000", "example.com:443"] {
            assert!(!is_loopback(r), "{r}");
        }
    }

    #[test]
    fn a_reference_must_name_its_registry() {
        assert!(parse_reference("localhost:5000/plugins/py-models:1.0").is_ok());
        assert!(
            parse_reference(
                "ghcr.io/acme/py-models@sha256:0000000000000000000000000000000000000000000000000000000000000000"
            )
            .is_ok()
        );
        for bad in ["py-models:1.0", "acme/py-models", "ghcr.io/Acme/UPPER", ""] {
            let e = parse_reference(bad).expect_err(bad);
            assert!(matches!(e, OciError::BadReference { .. }), "{bad}: {e}");
        }
    }

    #[test]
    fn credentials_go_to_their_own_registry_only() {
        let credentials = Credentials { registry: "ghcr.io".into(), username: "u".into(), password: "p".into() };
        let options = Options { credentials: Some(credentials), ..Options::default() };
        let ours = parse_reference("ghcr.io/acme/plugin:1").expect("reference");
        assert!(matches!(auth(&ours, &options), RegistryAuth::Basic(..)));
        for other in ["evil.example/acme/plugin:1", "ghcr.io.evil.example/acme/plugin:1", "localhost:5000/plugin:1"] {
            let image = parse_reference(other).expect("reference");
            assert!(matches!(auth(&image, &options), RegistryAuth::Anonymous), "{other}");
        }
    }

    #[test]
    fn a_registry_message_is_cut_short() {
        let long = "x".repeat(10_000);
        assert_eq!(cut(&long).chars().count(), MAX_MESSAGE_CHARS + 1);
        assert_eq!(cut("short"), "short");
    }

    #[test]
    fn the_sink_refuses_bytes_over_its_budget() {
        let runtime = tokio::runtime::Builder::new_current_thread().build().expect("runtime");
        runtime.block_on(async {
            use tokio::io::AsyncWriteExt;
            let mut sink = Bounded { bytes: Vec::new(), limit: 4 };
            sink.write_all(b"abcd").await.expect("within the budget");
            let e = sink.write_all(b"e").await.expect_err("over the budget");
            assert_eq!(e.kind(), std::io::ErrorKind::FileTooLarge);
        });
    }
}
