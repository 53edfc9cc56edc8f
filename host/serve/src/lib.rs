//! `qpf serve`: sandboxed multi-tenant extraction over HTTP, built on the engine library.
//!
//! Every guarantee of `qpf extract` holds per tenant: each invocation runs through
//! [`qpf_engine::Invoker`] (fresh sandbox, limits under the tenant's ceilings, output rules), and
//! each tenant has its own plugin store, invocation cache (separate folder, MAC key and salted
//! keys) and audit log. See docs/serve.md.

mod api;
mod bundle;
mod config;
mod extract;
mod fair;
mod invoke;
mod lanes;
mod metrics;
mod problem;
mod store;
mod tenants;

/// How often a running plugin gives its core back, so that a short request waiting for a core
/// never waits for a long invocation's whole time slice (docs/serve.md, "Fairness").
const YIELD_EVERY: std::time::Duration = std::time::Duration::from_micros(500);

use std::io::Write;
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

pub use config::ServeConfig;

/// Why the service could not start.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ServeError {
    /// The config file is missing or invalid.
    #[error("{0}")]
    Config(#[from] qpf_schema::SchemaError),
    /// The state folder, the secret or the listening socket.
    #[error("{what}: {source}")]
    Io {
        /// What failed.
        what: String,
        /// Why.
        source: std::io::Error,
    },
    /// A tenant's invocation cache cannot be opened.
    #[error("cannot open the invocation cache of tenant `{tenant}`: {source}")]
    Cache {
        /// The tenant.
        tenant: String,
        /// Why.
        source: qpf_engine::cache::CacheError,
    },
    /// The wasm runtime.
    #[error("cannot start the wasm runtime: {0}")]
    Runtime(#[from] qpf_runtime::RuntimeError),
}

fn io(what: impl Into<String>) -> impl FnOnce(std::io::Error) -> ServeError {
    let what = what.into();
    move |source| ServeError::Io { what, source }
}

/// A new random bearer token and the digest to put in the config (`blake3:<hex>`).
///
/// # Errors
/// When the operating system's random source cannot be read.
pub fn new_token() -> std::io::Result<(String, String)> {
    let token = format!("qpf_{}", blake3::Hash::from_bytes(qpf_engine::secret::random_bytes()?).to_hex());
    let digest = qpf_core::digest_of(token.as_bytes());
    Ok((token, digest))
}

/// Runs the service until SIGTERM or SIGINT: prints `listening on http://ADDR:PORT` as its first
/// line of stdout, reloads tenants on SIGHUP, and on SIGTERM stops accepting, lets requests in
/// flight finish within `grace-ms`, and returns.
///
/// # Errors
/// See [`ServeError`].
pub fn run(config_path: &Path) -> Result<(), ServeError> {
    let config = ServeConfig::load(config_path)?;
    let workers = std::thread::available_parallelism().map_or(2, std::num::NonZero::get);
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .max_blocking_threads(workers * 2 + 4)
        .build()
        .map_err(io("cannot start the async runtime"))?;
    rt.block_on(serve(config, config_path, workers))
}

async fn serve(config: ServeConfig, config_path: &Path, workers: usize) -> Result<(), ServeError> {
    std::fs::create_dir_all(&config.data).map_err(io(format!("cannot create `{}`", config.data.display())))?;
    let secret = qpf_engine::secret::load_or_create(&config.data.join("secret"))
        .map_err(io("cannot read or create the service's secret"))?;
    let max_memory = config
        .tenants
        .iter()
        .map(|t| t.limits.apply(&qpf_runtime::Limits::default()).memory_bytes)
        .max()
        .unwrap_or(qpf_runtime::Limits::default().memory_bytes);
    let compiled = qpf_runtime::CompiledCacheOptions::new(config.data.join("compiled"), secret);
    let runtime = qpf_runtime::Runtime::new(&qpf_runtime::RuntimeOptions {
        compiled_cache: Some(compiled.clone()),
        load_limits: qpf_runtime::LoadLimits::default(),
        max_memory_bytes: max_memory,
        max_concurrency: u32::try_from(workers).unwrap_or(u32::MAX),
        pooling: true,
        yield_every: Some(YIELD_EVERY),
        // Uploads are compiled here, off the requests' path, with the optimising compiler; a
        // run then finds Cranelift's artifact (`auto`).
        compiler: qpf_runtime::Compiler::Cranelift,
    })?;
    let store = store::Store::new(runtime, &config.data, compiled);
    let tenants = tenants::Tenants::new(&config, &secret, None)
        .map_err(|(tenant, source)| ServeError::Cache { tenant, source })?;
    repair(&tenants);
    let lanes = lanes::Lanes::start(workers).map_err(io("cannot start the low-priority workers"))?;
    let app = Arc::new(api::App::new(tenants, store, workers, lanes));
    let listener = tokio::net::TcpListener::bind(&config.listen)
        .await
        .map_err(io(format!("cannot listen on `{}`", config.listen)))?;
    let addr = listener.local_addr().map_err(io("cannot read the listening address"))?;
    // Installed before the first line: a client that reads it may signal at once.
    let mut term = signal(tokio::signal::unix::SignalKind::terminate())?;
    let mut int = signal(tokio::signal::unix::SignalKind::interrupt())?;
    let mut hup = signal(tokio::signal::unix::SignalKind::hangup())?;
    {
        let mut out = std::io::stdout().lock();
        let _ = writeln!(out, "listening on http://{addr}");
        let _ = out.flush();
    }
    tracing::info!("listening on http://{addr}");

    let stop = Arc::new(tokio::sync::Notify::new());
    let header_timeout = Duration::from_millis(config.header_timeout_ms);
    let mut server = tokio::spawn(accept(listener, api::router(app.clone()), header_timeout, stop.clone()));
    let reload = {
        let (app, path, data) = (app.clone(), config_path.to_owned(), config.data.clone());
        move || match ServeConfig::load(&path) {
            Ok(mut fresh) => {
                if fresh.data != data {
                    tracing::warn!("`data` changes only on restart; keeping `{}`", data.display());
                    fresh.data = data.clone();
                }
                // No audit repair here: requests in flight may be appending.
                match tenants::Tenants::new(&fresh, &secret, Some(&app.tenants())) {
                    Ok(tenants) => {
                        app.replace_tenants(tenants);
                        tracing::info!("reloaded {} tenants", fresh.tenants.len());
                    }
                    Err((tenant, e)) => {
                        tracing::error!("reload refused, keeping the running configuration: tenant `{tenant}`: {e}");
                    }
                }
            }
            Err(e) => tracing::error!("reload refused, keeping the running configuration: {e}"),
        }
    };
    loop {
        tokio::select! {
            _ = term.recv() => break,
            _ = int.recv() => break,
            _ = hup.recv() => reload(),
            ended = &mut server => {
                let source = std::io::Error::other(ended.err().map_or_else(|| "the accept loop ended".to_owned(), |e| e.to_string()));
                return Err(ServeError::Io { what: "the server stopped".into(), source });
            }
        }
    }
    app.draining.store(true, Ordering::Relaxed);
    stop.notify_one();
    let grace = Duration::from_millis(config.grace_ms);
    if tokio::time::timeout(grace, &mut server).await.is_err() {
        tracing::warn!("requests still in flight after {} ms; stopping them", config.grace_ms);
        server.abort();
    }
    Ok(())
}

/// Cuts every tenant's audit log back to its last whole record (after a `kill -9`); at start only,
/// before any request can append.
fn repair(tenants: &tenants::Tenants) {
    for t in tenants.all() {
        let path = t.dir.join("audit.jsonl");
        if let Err(e) = tenants::repair_audit(&path) {
            tracing::error!("cannot repair `{}`: {e}", path.display());
        }
    }
}

/// Accepts connections until `stop`, then waits for the connections in flight to finish their
/// requests. Each connection is HTTP/1.1 with a deadline on reading request headers (slow
/// clients are closed; bodies have their own deadline in the API).
async fn accept(
    listener: tokio::net::TcpListener,
    router: axum::Router,
    header_timeout: Duration,
    stop: Arc<tokio::sync::Notify>,
) {
    let mut http = hyper::server::conn::http1::Builder::new();
    http.timer(hyper_util::rt::TokioTimer::new()).header_read_timeout(header_timeout).max_headers(64);
    let graceful = hyper_util::server::graceful::GracefulShutdown::new();
    loop {
        tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok((stream, _)) => {
                    let service = hyper_util::service::TowerToHyperService::new(router.clone());
                    let conn = http.serve_connection(hyper_util::rt::TokioIo::new(stream), service);
                    let conn = graceful.watch(conn);
                    tokio::spawn(async move {
                        if let Err(e) = conn.await {
                            tracing::debug!("connection closed: {e}");
                        }
                    });
                }
                // Out of file descriptors and the like: wait a little rather than spin.
                Err(e) => {
                    tracing::warn!("cannot accept a connection: {e}");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
            },
            () = stop.notified() => break,
        }
    }
    drop(listener);
    graceful.shutdown().await;
}

fn signal(kind: tokio::signal::unix::SignalKind) -> Result<tokio::signal::unix::Signal, ServeError> {
    tokio::signal::unix::signal(kind).map_err(io("cannot install a signal handler"))
}
