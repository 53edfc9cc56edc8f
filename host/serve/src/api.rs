//! The HTTP API v1 (see docs/openapi.json): routes, bearer authentication, quotas, bodies read
//! within the tenant's cap and a time limit, and blocking work (compiling, invoking) run on a
//! bounded pool behind a fair, two-level queue: a tenant's requests first wait for one of its
//! `concurrent` slots, then for a worker, which goes round-robin to the tenants with requests
//! waiting ([`crate::fair`]). A tenant flooding the service delays another by at most one of its
//! invocations per worker.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, RwLock};
use std::time::{Duration, Instant};

use axum::Router;
use axum::body::{Body, Bytes};
use axum::extract::{Query, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use serde_json::json;

use crate::metrics::Metrics;
use crate::problem::Problem;
use crate::store::{Store, UploadError};
use crate::tenants::{Tenant, Tenants};

/// How long a client may take to send its body.
const BODY_TIMEOUT: Duration = Duration::from_secs(30);

/// The OpenAPI 3.1 document of this API.
pub const OPENAPI: &str = include_str!("../../../docs/openapi.json");

/// The service's shared state.
#[derive(Debug)]
pub struct App {
    tenants: RwLock<Arc<Tenants>>,
    /// The plugin stores.
    pub store: Store,
    workers: Arc<crate::fair::FairPool>,
    lanes: Arc<crate::lanes::Lanes>,
    /// The metrics.
    pub metrics: Metrics,
    /// Set once SIGTERM arrived: `/readyz` answers 503.
    pub draining: AtomicBool,
}

impl App {
    /// The state for `tenants`, running blocking work on `workers` threads at once; with more
    /// than one tenant, one worker stays out of any single tenant's reach.
    pub fn new(tenants: Tenants, store: Store, workers: usize, lanes: Arc<crate::lanes::Lanes>) -> App {
        let cap = if tenants.all().len() > 1 { workers.saturating_sub(1).max(1) } else { workers };
        App {
            tenants: RwLock::new(Arc::new(tenants)),
            store,
            workers: crate::fair::FairPool::new(workers, cap),
            lanes,
            metrics: Metrics::default(),
            draining: AtomicBool::new(false),
        }
    }

    /// The current tenants.
    pub fn tenants(&self) -> Arc<Tenants> {
        self.tenants.read().unwrap_or_else(std::sync::PoisonError::into_inner).clone()
    }

    /// Replaces the tenants (SIGHUP); requests in flight keep the ones they started with.
    pub fn replace_tenants(&self, tenants: Tenants) {
        *self.tenants.write().unwrap_or_else(std::sync::PoisonError::into_inner) = Arc::new(tenants);
    }
}

type Shared = State<Arc<App>>;

/// The router of API v1.
pub fn router(app: Arc<App>) -> Router {
    Router::new()
        .route("/healthz", get(|| async { "ok\n" }))
        .route("/readyz", get(readyz))
        .route("/metrics", get(metrics))
        .route("/v1/openapi.json", get(openapi))
        .route("/v1/plugins", post(upload).get(list))
        .route("/v1/invoke", post(invoke))
        .route("/v1/extract", post(extract))
        .route("/v1/runs/{id}", get(run))
        .route("/v1/audit", get(audit))
        .fallback(|| async { Problem::not_found("no such route").into_response() })
        .with_state(app)
}

async fn readyz(State(app): Shared) -> Response {
    if app.draining.load(Ordering::Relaxed) {
        (StatusCode::SERVICE_UNAVAILABLE, "draining\n").into_response()
    } else {
        "ready\n".into_response()
    }
}

/// The bearer token of a request.
fn bearer(headers: &HeaderMap) -> Option<&str> {
    headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .map(str::trim)
}

/// The tenant a request acts as, after its per-minute quota.
fn authenticate(app: &App, headers: &HeaderMap) -> Result<Arc<Tenant>, Problem> {
    let token = bearer(headers).ok_or_else(Problem::unauthorized)?;
    let tenant = app.tenants().authenticate(token).ok_or_else(Problem::unauthorized)?;
    tenant.admit_request().map_err(|q| Problem::over_quota(q.quota, q.retry_after))?;
    Ok(tenant)
}

/// Reads a body within `limit` bytes and [`BODY_TIMEOUT`].
async fn read_body(headers: &HeaderMap, body: Body, limit: u64) -> Result<Bytes, Problem> {
    let too_large = || Problem::too_large(format!("the body is over the tenant's `max-request-bytes` of {limit}"));
    let declared =
        headers.get(header::CONTENT_LENGTH).and_then(|v| v.to_str().ok()).and_then(|v| v.parse::<u64>().ok());
    if declared.is_some_and(|n| n > limit) {
        return Err(too_large());
    }
    let limit = usize::try_from(limit).unwrap_or(usize::MAX);
    match tokio::time::timeout(BODY_TIMEOUT, axum::body::to_bytes(body, limit)).await {
        Err(_) => Err(Problem::new(
            StatusCode::REQUEST_TIMEOUT,
            "timeout",
            "The request took too long",
            format!("the body did not arrive within {} s", BODY_TIMEOUT.as_secs()),
        )),
        Ok(Err(e)) => {
            let e = e.into_inner();
            if e.downcast_ref::<http_body_util::LengthLimitError>().is_some() {
                Err(too_large())
            } else {
                Err(Problem::bad_request(format!("cannot read the body: {e}")))
            }
        }
        Ok(Ok(bytes)) => Ok(bytes),
    }
}

/// Runs heavy blocking work (compiling, the sandbox) for `tenant` behind the two-level queue.
async fn blocking<T: Send + 'static>(
    app: &Arc<App>,
    tenant: &Arc<Tenant>,
    work: impl FnOnce() -> T + Send + 'static,
) -> Result<T, Problem> {
    let closed = |_| Problem::internal("the service is shutting down");
    let slot = tenant.concurrency.clone().acquire_owned().await.map_err(closed)?;
    on_worker(app, tenant, slot, work).await
}

/// Runs `work` on a worker of the fair pool, on the lane its tenant's recent use calls for. The
/// worker and the tenant's `slot` are given back when the work ends, not when the request does:
/// a client that goes away does not free them while its plugin still runs.
async fn on_worker<T: Send + 'static>(
    app: &Arc<App>,
    tenant: &Arc<Tenant>,
    slot: tokio::sync::OwnedSemaphorePermit,
    work: impl FnOnce() -> T + Send + 'static,
) -> Result<T, Problem> {
    let worker = app.workers.acquire(&tenant.id).await;
    let low = worker.low();
    if low {
        app.metrics.low(&tenant.id);
    }
    let held = move || {
        let value = work();
        drop((worker, slot));
        value
    };
    app.lanes.run(low, held).await.map_err(|e| Problem::internal(e.to_string()))
}

/// Counts the answer in the metrics.
fn finish(app: &App, tenant: Option<&Tenant>, route: &'static str, result: Result<Response, Problem>) -> Response {
    let response = result.unwrap_or_else(IntoResponse::into_response);
    app.metrics.request(tenant.map_or("-", |t| t.id.as_str()), route, response.status().as_u16());
    response
}

async fn metrics(State(app): Shared, headers: HeaderMap) -> Response {
    let operator = bearer(&headers).is_some_and(|t| app.tenants().is_operator(t));
    let result = if operator {
        Ok(([(header::CONTENT_TYPE, "text/plain; version=0.0.4")], app.metrics.render(app.workers.waiting()))
            .into_response())
    } else {
        Err(Problem::unauthorized())
    };
    finish(&app, None, "metrics", result)
}

async fn openapi(State(app): Shared, headers: HeaderMap) -> Response {
    let result =
        authenticate(&app, &headers).map(|_| ([(header::CONTENT_TYPE, "application/json")], OPENAPI).into_response());
    finish(&app, None, "openapi", result)
}

async fn upload(State(app): Shared, headers: HeaderMap, body: Body) -> Response {
    let tenant = match authenticate(&app, &headers) {
        Ok(t) => t,
        Err(p) => return finish(&app, None, "plugins", Err(p)),
    };
    let result = async {
        // The body is read first (within its cap), so that a client still sending it gets the
        // answer rather than a broken pipe.
        let bytes = read_body(&headers, body, tenant.config.quotas.max_request_bytes).await?;
        let kind = headers.get(header::CONTENT_TYPE).and_then(|v| v.to_str().ok()).unwrap_or("");
        if kind != "application/wasm" {
            return Err(Problem::media_type("application/wasm", "the component"));
        }
        let (a, t) = (app.clone(), tenant.clone());
        let uploaded = blocking(&app, &tenant, move || a.store.upload(&t, &bytes)).await?;
        match uploaded {
            Ok((digest, info)) => {
                Ok((StatusCode::CREATED, axum::Json(json!({"digest": digest, "info": info_json(&info)})))
                    .into_response())
            }
            Err(e @ UploadError::OverQuota { .. }) => Err(Problem::too_large(e.to_string())),
            Err(UploadError::Invalid(why)) => {
                Err(Problem::new(StatusCode::BAD_REQUEST, "invalid-plugin", "Not a component this service runs", why))
            }
            Err(e @ UploadError::Io(_)) => Err(Problem::internal(e.to_string())),
        }
    }
    .await;
    finish(&app, Some(&tenant), "plugins", result)
}

fn info_json(info: &qpf_runtime::PluginInfo) -> serde_json::Value {
    json!({"name": info.name, "version": info.version, "description": info.description, "kinds": info.kinds})
}

async fn list(State(app): Shared, headers: HeaderMap) -> Response {
    let tenant = match authenticate(&app, &headers) {
        Ok(t) => t,
        Err(p) => return finish(&app, None, "plugins", Err(p)),
    };
    let plugins: Vec<serde_json::Value> = app
        .store
        .list(&tenant)
        .into_iter()
        .map(|(digest, info)| json!({"digest": digest, "info": info.as_ref().map(info_json)}))
        .collect();
    finish(&app, Some(&tenant), "plugins", Ok(axum::Json(json!({"plugins": plugins})).into_response()))
}

async fn invoke(State(app): Shared, headers: HeaderMap, body: Body) -> Response {
    let tenant = match authenticate(&app, &headers) {
        Ok(t) => t,
        Err(p) => return finish(&app, None, "invoke", Err(p)),
    };
    let started = Instant::now();
    let result = async {
        let bytes = read_body(&headers, body, tenant.config.quotas.max_request_bytes).await?;
        let parsed: crate::invoke::InvokeBody = serde_json::from_slice(&bytes)
            .map_err(|e| Problem::bad_request(format!("the body is not an invocation: {e}")))?;
        let closed = |_| Problem::internal("the service is shutting down");
        let slot = tenant.concurrency.clone().acquire_owned().await.map_err(closed)?;
        // The cache lookup needs no worker: a hit never waits behind another tenant's sandbox.
        let (a, t) = (app.clone(), tenant.clone());
        let looked = tokio::task::spawn_blocking(move || crate::invoke::lookup(&a.store, &t, &parsed))
            .await
            .map_err(|e| Problem::internal(format!("a lookup failed: {e}")))?;
        let answer = match looked {
            Err(answer) => answer,
            Ok(miss) => {
                let (a, t) = (app.clone(), tenant.clone());
                on_worker(&app, &tenant, slot, move || crate::invoke::run(&t, &a.store, miss)).await?
            }
        };
        if answer.ran {
            let outcome = if answer.result.is_ok() { "ok" } else { "failed" };
            app.metrics.invocation(&tenant.id, outcome, answer.hit, answer.fuel, started.elapsed());
        }
        answer.result.map(|v| axum::Json(v).into_response())
    }
    .await;
    finish(&app, Some(&tenant), "invoke", result)
}

async fn extract(State(app): Shared, headers: HeaderMap, body: Body) -> Response {
    let tenant = match authenticate(&app, &headers) {
        Ok(t) => t,
        Err(p) => return finish(&app, None, "extract", Err(p)),
    };
    let result = async {
        let bytes = read_body(&headers, body, tenant.config.quotas.max_request_bytes).await?;
        let kind = headers.get(header::CONTENT_TYPE).and_then(|v| v.to_str().ok()).unwrap_or("");
        if kind != "application/gzip" {
            return Err(Problem::media_type("application/gzip", "the project as a gzip-compressed tar"));
        }
        tenant.admit_fuel().map_err(|q| Problem::over_quota(q.quota, q.retry_after))?;
        let (a, t) = (app.clone(), tenant.clone());
        let run = blocking(&app, &tenant, move || crate::extract::extract(&a.store, &t, &bytes)).await??;
        let accept = headers.get(header::ACCEPT).and_then(|v| v.to_str().ok());
        let wants_tar = accept.is_some_and(|v| v.contains("application/gzip"));
        if wants_tar {
            let tar = crate::extract::tar_gz(&run).map_err(|e| Problem::internal(e.to_string()))?;
            let headers = [
                (header::CONTENT_TYPE, "application/gzip".to_owned()),
                (header::HeaderName::from_static("x-qpf-run"), run.id),
            ];
            return Ok((headers, tar).into_response());
        }
        let files: Vec<serde_json::Value> = run.files.iter().map(crate::invoke::file_json).collect();
        Ok(axum::Json(json!({"run": run.id, "report": run.report, "files": files})).into_response())
    }
    .await;
    finish(&app, Some(&tenant), "extract", result)
}

async fn run(State(app): Shared, headers: HeaderMap, axum::extract::Path(id): axum::extract::Path<String>) -> Response {
    let tenant = match authenticate(&app, &headers) {
        Ok(t) => t,
        Err(p) => return finish(&app, None, "runs", Err(p)),
    };
    let report = crate::extract::run_dir(&tenant, &id)
        .and_then(|dir| qpf_core::fs::read_regular(&dir.join("report.json"), 256 << 20).ok())
        .and_then(|bytes| serde_json::from_slice::<serde_json::Value>(&bytes).ok());
    let result = match report {
        Some(report) => Ok(axum::Json(report).into_response()),
        None => Err(Problem::not_found(format!("no run `{}` for this tenant", qpf_core::text::escape(&id)))),
    };
    finish(&app, Some(&tenant), "runs", result)
}

/// `since`: the first record to return (0-based); `limit`: at most this many (default and cap 1000).
#[derive(Debug, serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct Page {
    #[serde(default)]
    since: u64,
    #[serde(default)]
    limit: Option<u64>,
}

async fn audit(
    State(app): Shared,
    headers: HeaderMap,
    page: Result<Query<Page>, axum::extract::rejection::QueryRejection>,
) -> Response {
    let tenant = match authenticate(&app, &headers) {
        Ok(t) => t,
        Err(p) => return finish(&app, None, "audit", Err(p)),
    };
    let result = async {
        let Query(page) = page.map_err(|e| Problem::bad_request(e.body_text()))?;
        let limit = page.limit.unwrap_or(1000).min(1000);
        let path = tenant.dir.join("audit.jsonl");
        let records = blocking(&app, &tenant, move || read_page(&path, page.since, limit)).await?;
        let next = page.since + records.len() as u64;
        Ok(axum::Json(json!({"records": records, "next": next})).into_response())
    }
    .await;
    finish(&app, Some(&tenant), "audit", result)
}

fn read_page(path: &std::path::Path, since: u64, limit: u64) -> Vec<serde_json::Value> {
    use std::io::BufRead;
    let Ok(file) = std::fs::File::open(path) else { return Vec::new() };
    std::io::BufReader::new(file)
        .lines()
        .map_while(Result::ok)
        .skip(usize::try_from(since).unwrap_or(usize::MAX))
        .take(usize::try_from(limit).unwrap_or(usize::MAX))
        .filter_map(|l| serde_json::from_str(&l).ok())
        .collect()
}
