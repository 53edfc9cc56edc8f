//! `POST /v1/extract`: a whole project run for a tenant. The bundle is unpacked into a fresh
//! folder of the tenant's storage (see [`crate::bundle`]), its plugins are resolved by digest in
//! the stores the tenant may use, its limits are lowered to the tenant's ceilings, and the engine
//! runs it with the tenant's invocation cache and the shared compiled plugins. Only the report is
//! kept (`GET /v1/runs/{id}`); the project and its outputs are removed once answered.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use axum::http::StatusCode;
use qpf_engine::{Engine, EngineError, ExtractOptions, Settings};
use serde_json::{Value, json};

use crate::bundle::BundleError;
use crate::problem::Problem;
use crate::store::Store;
use crate::tenants::Tenant;

/// What a run produced.
#[derive(Debug)]
pub struct Run {
    /// Its id, for `GET /v1/runs/{id}`.
    pub id: String,
    /// The engine's report (format 1).
    pub report: Value,
    /// The files under the output root, sorted by relative path; scaffolds (files the run's lock
    /// lists as user-owned) are marked so, for the caller to write only where absent.
    pub files: Vec<qpf_engine::cache::CheckedFile>,
}

/// A new run id: 32 hex digits from the system's random source.
fn new_id() -> Result<String, Problem> {
    let bytes = qpf_engine::secret::random_bytes().map_err(|e| Problem::internal(format!("no randomness: {e}")))?;
    Ok(blake3::Hash::from_bytes(bytes).to_hex()[..32].to_owned())
}

/// The folder of run `id` of `tenant`, when `id` is well formed.
pub fn run_dir(tenant: &Tenant, id: &str) -> Option<PathBuf> {
    (id.len() == 32 && id.bytes().all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b)))
        .then(|| tenant.dir.join("runs").join(id))
}

fn bad_bundle(e: BundleError) -> Problem {
    match e {
        BundleError::TooLarge { .. } => Problem::too_large(e.to_string()),
        BundleError::Io(e) => Problem::internal(format!("cannot unpack: {e}")),
        other => {
            Problem::new(StatusCode::BAD_REQUEST, "bad-bundle", "The project bundle is not valid", other.to_string())
        }
    }
}

fn invalid_project(e: &EngineError) -> Problem {
    let errors: Vec<String> = match e {
        EngineError::Invalid(errors) => errors.iter().map(ToString::to_string).collect(),
        other => vec![other.to_string()],
    };
    Problem::new(StatusCode::BAD_REQUEST, "invalid-project", "The project is not valid", errors.join("\n"))
        .with("errors", json!(errors.iter().map(|e| qpf_core::text::escape_block(e).into_owned()).collect::<Vec<_>>()))
}

/// Runs the bundle `gz` for `tenant` (blocking).
///
/// # Errors
/// A [`Problem`] for a bad bundle, an invalid project, a plugin the tenant may not run, or a
/// fault of the service. Failing invocations are in the report, not errors.
pub fn extract(store: &Store, tenant: &Tenant, gz: &[u8]) -> Result<Run, Problem> {
    let id = new_id()?;
    let dir = tenant.dir.join("runs").join(&id);
    let result = run(store, tenant, gz, &dir, &id);
    // Whatever happened, only the report stays.
    let _ = std::fs::remove_dir_all(dir.join("project"));
    let _ = std::fs::remove_dir_all(dir.join("out"));
    if result.is_err() {
        let _ = std::fs::remove_dir_all(&dir);
    }
    result
}

fn run(store: &Store, tenant: &Tenant, gz: &[u8], dir: &Path, id: &str) -> Result<Run, Problem> {
    let project = dir.join("project");
    std::fs::create_dir_all(&project).map_err(|e| Problem::internal(format!("cannot create the run folder: {e}")))?;
    crate::bundle::unpack(gz, &project).map_err(bad_bundle)?;
    let declared =
        qpf_engine::project::Project::load(&project).map_err(|e| invalid_project(&EngineError::Project(e)))?;
    // Every declared plugin is mapped: to the store when the tenant may run it, else to a path
    // that does not exist (never to the bundle's own `path`, which could name any file here).
    let mut plugin_paths = BTreeMap::new();
    let mut unavailable = BTreeMap::new();
    for (name, decl) in &declared.file.plugins {
        let path = store.path_for(tenant, &decl.digest).unwrap_or_else(|| {
            unavailable.insert(name.clone(), decl.digest.clone());
            dir.join("unavailable.wasm")
        });
        plugin_paths.insert(name.clone(), path);
    }
    let settings = Settings {
        secret: Some(tenant.secret),
        invocation_cache: Some(tenant.dir.join("cache")),
        compiled_cache: Some(store.compiled.clone()),
        plugin_paths,
        ceilings: Some((tenant.limits.clone(), qpf_runtime::LoadLimits::default())),
        yield_every: Some(crate::YIELD_EVERY),
        // A tenant's `oci:` plugins are mapped to the store above like any other: never fetched.
        plugin_store: None,
        fetcher: None,
        // A tenant's results stay in its own cache namespace.
        remote: None,
        // Not the service's environment: `auto`, the same for every tenant.
        compiler: Some(qpf_engine::CompilerChoice::Auto),
        // Every request loads and runs: a tenant's project folder is made for it.
        run_snapshot: false,
        registry_update: false,
        // A tenant's project reads its bundle and nothing else of this machine.
        forbid_registries: true,
    };
    let engine = Engine::load_with(&project, settings).map_err(|e| invalid_project(&e))?;
    let spawnable = engine.project().map.entries.iter().flat_map(|e| e.spawn.plugins.iter().map(String::as_str));
    let used: Vec<&str> = engine.plan().plugins().into_keys().chain(spawnable).collect();
    if let Some((name, digest)) = used.iter().find_map(|n| unavailable.get_key_value(*n)) {
        return Err(Problem::not_found(format!(
            "plugin `{name}` ({digest}) is not available to this tenant; upload it first"
        )));
    }
    let out = dir.join("out");
    let options = ExtractOptions {
        jobs: 1,
        out: Some(out.clone()),
        no_cache: false,
        fail_fast: false,
        require_hits: false,
        shard: None,
    };
    let report = engine.extract(&options, &|_| {}).map_err(|e| match e {
        EngineError::Io { .. } => Problem::internal(e.to_string()),
        other => invalid_project(&other),
    })?;
    let fuel: u64 = report.invocations.iter().map(|i| i.fuel).sum();
    tenant.charge_fuel(fuel);
    let mut report = serde_json::to_value(&report).map_err(|e| Problem::internal(e.to_string()))?;
    // The report names the output root; the tenant sees it as `out`, not as our folder.
    report["output"] = json!("out");
    let lock = qpf_engine::lock::Lock::read(&project.join(qpf_engine::lock::LOCK_FILE));
    let files = collect(&out)?
        .into_iter()
        .map(|(path, bytes)| {
            let user_owned = lock.as_ref().and_then(|l| l.files.get(&path)).is_some_and(|f| f.user_owned);
            qpf_engine::cache::CheckedFile {
                digest: qpf_core::digest_of(&bytes),
                mode: if user_owned { qpf_runtime::FileMode::Scaffold } else { qpf_runtime::FileMode::Generated },
                path,
                bytes,
            }
        })
        .collect();
    let text = serde_json::to_vec_pretty(&report).map_err(|e| Problem::internal(e.to_string()))?;
    qpf_core::fs::write_atomic(&dir.join("report.json"), &text)
        .map_err(|e| Problem::internal(format!("cannot keep the report: {e}")))?;
    Ok(Run { id: id.to_owned(), report, files })
}

/// Every regular file under `root`, by relative path, sorted.
fn collect(root: &Path) -> Result<Vec<(String, Vec<u8>)>, Problem> {
    let mut files = Vec::new();
    let mut stack = vec![root.to_owned()];
    while let Some(d) = stack.pop() {
        let Ok(entries) = std::fs::read_dir(&d) else { continue };
        for e in entries.flatten() {
            let (path, kind) = (e.path(), e.file_type());
            if kind.as_ref().is_ok_and(std::fs::FileType::is_dir) {
                stack.push(path);
            } else if kind.as_ref().is_ok_and(std::fs::FileType::is_file) {
                let rel = path.strip_prefix(root).map(|p| p.to_string_lossy().into_owned()).unwrap_or_default();
                let bytes =
                    std::fs::read(&path).map_err(|e| Problem::internal(format!("cannot read an output: {e}")))?;
                files.push((rel, bytes));
            }
        }
    }
    files.sort();
    Ok(files)
}

/// The tar.gz of a run: the files under `out/`, and `report.json`.
///
/// # Errors
/// Only if the archive cannot be built in memory.
pub fn tar_gz(run: &Run) -> std::io::Result<Vec<u8>> {
    let mut builder = tar::Builder::new(flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast()));
    let mut add = |path: &str, bytes: &[u8]| -> std::io::Result<()> {
        let mut h = tar::Header::new_gnu();
        h.set_size(bytes.len() as u64);
        h.set_mode(0o644);
        h.set_mtime(0);
        builder.append_data(&mut h, path, bytes)
    };
    add("report.json", &serde_json::to_vec_pretty(&run.report).unwrap_or_default())?;
    for f in &run.files {
        add(&format!("out/{}", f.path), &f.bytes)?;
    }
    builder.into_inner()?.finish()
}
