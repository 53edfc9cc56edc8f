//! `POST /v1/invoke`: one invocation for a tenant, through the engine's [`qpf_engine::Invoker`]
//! (kinds, config schema, sandbox limits, output rules), with the tenant's own cache and audit log.

use std::time::Instant;

use base64::Engine as _;
use qpf_engine::cache::{InvocationCache, Manifest};
use qpf_runtime::{Request, SchemaId};
use serde::Deserialize;
use serde_json::{Value, json};

use crate::problem::Problem;
use crate::store::Store;
use crate::tenants::Tenant;

/// The request body.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct InvokeBody {
    /// The plugin's digest.
    pub plugin: String,
    /// The selected input.
    pub input: Value,
    /// The entry's config (default `{}`).
    #[serde(default = "empty_object")]
    pub config: Value,
    /// The schema the input comes from.
    pub schema: SchemaBody,
    /// The entry id (default `invoke`).
    #[serde(default = "default_entry")]
    pub entry: String,
}

/// `{"kind", "name", "version"}`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SchemaBody {
    kind: String,
    name: String,
    version: String,
}

fn empty_object() -> Value {
    json!({})
}

fn default_entry() -> String {
    "invoke".to_owned()
}

fn plain(text: &str, max: usize) -> bool {
    !text.is_empty()
        && text.len() <= max
        && text.chars().all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.' | '+'))
}

impl InvokeBody {
    fn check(&self) -> Result<(), Problem> {
        if !plain(&self.entry, 63) {
            return Err(Problem::bad_request("`entry` must be 1 to 63 ASCII letters, digits, `-`, `_`, `.` or `+`"));
        }
        for (field, value) in
            [("kind", &self.schema.kind), ("name", &self.schema.name), ("version", &self.schema.version)]
        {
            if !plain(value, 128) {
                return Err(Problem::bad_request(format!(
                    "`schema.{field}` must be 1 to 128 ASCII letters, digits, `-`, `_`, `.` or `+`"
                )));
            }
        }
        Ok(())
    }

    fn request(&self) -> Request {
        let context = json!({"schema": {"kind": self.schema.kind, "metadata": {"name": self.schema.name, "version": self.schema.version}}});
        Request {
            entry: self.entry.clone(),
            schema: SchemaId {
                kind: self.schema.kind.clone(),
                name: self.schema.name.clone(),
                version: self.schema.version.clone(),
            },
            input: qpf_engine::canonical::to_string(&self.input),
            config: qpf_engine::canonical::to_string(&self.config),
            context: qpf_engine::canonical::to_string(&context),
        }
    }
}

/// What an invocation answered, with what the metrics and the audit log need.
#[derive(Debug)]
pub struct Answer {
    /// 200 body or the problem.
    pub result: Result<Value, Problem>,
    /// Whether it came from the cache.
    pub hit: bool,
    /// Fuel consumed (0 on a hit).
    pub fuel: u64,
    /// Whether it reached the cache or the sandbox (not refused before).
    pub ran: bool,
}

/// An invocation that missed the cache, ready to run in the sandbox.
#[derive(Debug)]
pub struct Miss {
    ready: std::sync::Arc<crate::store::Ready>,
    request: Request,
    key: String,
    salted: String,
    started: Instant,
}

/// The first step of an invocation: checks, the plugin, the cache (blocking, but short: it does
/// not run the sandbox, so it does not take a worker). A hit or a refusal is the answer; a miss is
/// run with [`run`] on a worker.
pub fn lookup(store: &Store, tenant: &Tenant, body: &InvokeBody) -> Result<Miss, Answer> {
    let fail = |p: Problem| Err(Answer { result: Err(p), hit: false, fuel: 0, ran: false });
    if let Err(p) = body.check() {
        return fail(p);
    }
    let ready = match store.get(tenant, &body.plugin) {
        Ok(Some(r)) => r,
        Ok(None) => {
            return fail(Problem::not_found(format!(
                "no plugin `{}` for this tenant",
                qpf_core::text::escape(&body.plugin)
            )));
        }
        Err(e) => {
            let shown = qpf_core::text::escape(&body.plugin);
            return fail(Problem::internal(format!("the stored plugin `{shown}` no longer loads: {e}")));
        }
    };
    let started = Instant::now();
    let request = body.request();
    let key = qpf_engine::cache_key::compute(&qpf_engine::cache_key::KeyInputs {
        abi: qpf_runtime::ABI_VERSION,
        plugin_digest: ready.plugin.digest(),
        request: &request,
        limits: &tenant.limits,
    });
    let salted = tenant.salted_key(&key);
    if let Some((manifest, files)) = cached(tenant, &salted) {
        let answered = answer(&files, &manifest.diagnostics, "hit", 0, started);
        audit(tenant, body_audit(&request, ready.plugin.digest(), &salted, "hit", 0, &files));
        return Err(Answer { result: Ok(answered), hit: true, fuel: 0, ran: true });
    }
    if let Err(q) = tenant.admit_fuel() {
        return fail(Problem::over_quota(q.quota, q.retry_after));
    }
    Ok(Miss { ready, request, key, salted, started })
}

/// Runs a [`Miss`] in the sandbox (blocking), stores it in the tenant's cache and audits it.
pub fn run(tenant: &Tenant, store: &Store, miss: Miss) -> Answer {
    let Miss { ready, request, key, salted, started } = miss;
    let invoker = qpf_engine::Invoker {
        runtime: store.runtime(),
        plugin: &ready.plugin,
        name: ready.plugin.name(),
        config_schema: ready.config_schema.as_ref(),
        limits: &tenant.limits,
    };
    let call = invoker.invoke(&request, &key);
    tenant.charge_fuel(call.fuel);
    match call.result {
        Ok(files) => {
            let manifest = Manifest::of_files(&salted, &files, call.diagnostics.clone(), call.fuel, Vec::new());
            if let Err(e) = tenant.cache.put_files(&manifest, &files) {
                tracing::warn!(tenant = %tenant.id, "cannot store an invocation in the cache: {e}");
            }
            let answered = answer(&files, &call.diagnostics, "miss", call.fuel, started);
            audit(tenant, body_audit(&request, ready.plugin.digest(), &salted, "miss", call.fuel, &files));
            Answer { result: Ok(answered), hit: false, fuel: call.fuel, ran: true }
        }
        Err(e) => {
            let diagnostics = serde_json::to_value(&call.diagnostics).unwrap_or_default();
            let p = Problem::new(
                axum::http::StatusCode::UNPROCESSABLE_ENTITY,
                "plugin-failed",
                "The plugin failed",
                format!("plugin `{}`: {} error: {}", ready.plugin.name(), e.kind, e.message),
            )
            .with("kind", json!(e.kind.to_string()))
            .with("diagnostics", diagnostics)
            .with("fuel", json!(call.fuel));
            audit(tenant, body_audit(&request, ready.plugin.digest(), &salted, "failed", call.fuel, &[]));
            Answer { result: Err(p), hit: false, fuel: call.fuel, ran: true }
        }
    }
}

/// A file an invocation produced.
type File = qpf_engine::cache::CheckedFile;

/// A verified cache entry of the tenant: its manifest and every file's bytes.
fn cached(tenant: &Tenant, key: &str) -> Option<(Manifest, Vec<File>)> {
    let manifest = tenant.cache.manifest(key).ok().flatten()?;
    let mut files = Vec::with_capacity(manifest.files.len());
    for f in &manifest.files {
        let bytes = tenant.cache.file(f).ok()?;
        files.push(File { path: f.path.clone(), digest: f.digest.clone(), bytes, mode: f.mode });
    }
    Some((manifest, files))
}

/// One file of an answer: `{"path", "contents_base64", "digest"}`, and `"mode": "scaffold"` for a
/// file its user should own (write it only when absent).
pub(crate) fn file_json(f: &File) -> Value {
    let mut v = json!({
        "path": f.path,
        "contents_base64": base64::engine::general_purpose::STANDARD.encode(&f.bytes),
        "digest": f.digest,
    });
    if !f.mode.is_generated() {
        v["mode"] = json!(f.mode);
    }
    v
}

fn answer(files: &[File], diagnostics: &[qpf_runtime::Diagnostic], cache: &str, fuel: u64, started: Instant) -> Value {
    json!({
        "files": files.iter().map(file_json).collect::<Vec<_>>(),
        "diagnostics": diagnostics,
        "cache": cache,
        "fuel": fuel,
        "duration_us": u64::try_from(started.elapsed().as_micros()).unwrap_or(u64::MAX),
    })
}

fn body_audit(request: &Request, plugin: &str, key: &str, cache: &str, fuel: u64, files: &[File]) -> Value {
    let time = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_secs());
    json!({
        "time": time,
        "entry": request.entry,
        "schema": request.schema.to_string(),
        "plugin": plugin,
        "key": key,
        "cache": cache,
        "fuel": fuel,
        "files": files.iter().map(|f| json!({"path": f.path, "digest": f.digest})).collect::<Vec<_>>(),
    })
}

/// Appends a record to the tenant's audit log (`data/tenants/<id>/audit.jsonl`), one line per
/// invocation.
fn audit(tenant: &Tenant, record: Value) {
    let mut line = serde_json::to_vec(&record).unwrap_or_default();
    line.push(b'\n');
    if let Err(e) = tenant.append_audit(&line) {
        tracing::warn!(tenant = %tenant.id, "cannot append to the audit log: {e}");
    }
}
