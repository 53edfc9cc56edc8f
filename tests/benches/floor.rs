//! Issue 17, item 6: the floor. The example's Rust reference plugins, compiled natively and called
//! in-process (their `Extractor::extract`, the very code the components run), against the same
//! requests run in the sandbox (a fresh instance per call, Cranelift's code from the compiled
//! cache): what the sandbox costs per call, per plugin and over the whole example. Both sides
//! produce the same files; the benchmark checks it before timing. Then the seed's own stack, Python
//! + Jinja2, renders the same templates with the same contexts (`jinja_peer.py`).

use std::path::Path;
use std::time::{Duration, Instant};

use qpf_runtime::{Limits, Runtime, RuntimeOptions, Seed};
use qpf_sdk::{ExtractError, Extractor, Request, Response, SchemaId};

// The plugins' own sources, compiled natively into this benchmark (their `export!` emits the
// component's exports only for wasm): the very code the components run.
#[allow(dead_code, unreachable_pub, unused_imports)]
#[path = "../../plugins/agent-validator/src/lib.rs"]
mod agent_validator;
#[allow(dead_code, unreachable_pub, unused_imports)]
#[path = "../../plugins/deploy/src/lib.rs"]
mod deploy;
#[allow(dead_code, unreachable_pub, unused_imports)]
#[path = "../../plugins/md-docs/src/lib.rs"]
mod md_docs;
#[allow(dead_code, unreachable_pub, unused_imports)]
#[path = "../../plugins/py-anomalies/src/lib.rs"]
mod py_anomalies;
#[allow(dead_code, unreachable_pub, unused_imports)]
#[path = "../../plugins/py-api/src/lib.rs"]
mod py_api;
#[allow(dead_code, unreachable_pub, unused_imports)]
#[path = "../../plugins/py-app/src/lib.rs"]
mod py_app;
#[allow(dead_code, unreachable_pub, unused_imports)]
#[path = "../../plugins/py-memory/src/lib.rs"]
mod py_memory;
#[allow(dead_code, unreachable_pub, unused_imports)]
#[path = "../../plugins/py-models/src/lib.rs"]
mod py_models;
#[allow(dead_code, unreachable_pub, unused_imports)]
#[path = "../../plugins/py-observability/src/lib.rs"]
mod py_observability;
#[allow(dead_code, unreachable_pub, unused_imports)]
#[path = "../../plugins/py-settings/src/lib.rs"]
mod py_settings;
#[allow(dead_code, unreachable_pub, unused_imports)]
#[path = "../../plugins/py-subagents/src/lib.rs"]
mod py_subagents;
#[allow(dead_code, unreachable_pub, unused_imports)]
#[path = "../../plugins/py-tests/src/lib.rs"]
mod py_tests;

type Native = fn(Request) -> Result<Response, ExtractError>;

/// The native build of a Rust reference plugin, by its name in the example's `qpf.yaml`.
fn native(plugin: &str) -> Option<Native> {
    Some(match plugin {
        "agent-validator" => <agent_validator::AgentValidator as Extractor>::extract,
        "py-models" => <py_models::PyModels as Extractor>::extract,
        "py-settings" => <py_settings::PySettings as Extractor>::extract,
        "py-api" => <py_api::PyApi as Extractor>::extract,
        "py-memory" => <py_memory::PyMemory as Extractor>::extract,
        "py-subagents" => <py_subagents::PySubagents as Extractor>::extract,
        "py-anomalies" => <py_anomalies::PyAnomalies as Extractor>::extract,
        "py-observability" => <py_observability::PyObservability as Extractor>::extract,
        "py-app" => <py_app::PyApp as Extractor>::extract,
        "py-tests" => <py_tests::PyTests as Extractor>::extract,
        "md-docs" => <md_docs::MdDocs as Extractor>::extract,
        "deploy" => <deploy::Deploy as Extractor>::extract,
        _ => return None,
    })
}

fn sdk_request(r: &qpf_runtime::Request) -> Request {
    Request {
        entry: r.entry.clone(),
        schema: SchemaId {
            kind: r.schema.kind.clone(),
            name: r.schema.name.clone(),
            version: r.schema.version.clone(),
        },
        input_json: r.input.clone(),
        config_json: r.config.clone(),
        context_json: r.context.clone(),
    }
}

fn median(mut v: Vec<Duration>) -> Duration {
    v.sort();
    v[v.len() / 2]
}

/// Runs the floor benchmark over the project at `project` (the example, with its validator).
pub fn run(project: &Path, tools: &Path, fmt: fn(Duration) -> String) {
    let engine = qpf_engine::Engine::load(project).expect("the example loads");
    let root = &engine.project().root;
    let rt = Runtime::new(&RuntimeOptions {
        compiled_cache: Some(qpf_runtime::CompiledCacheOptions::new(
            std::env::temp_dir().join("qpf-bench-floor-compiled"),
            [7; 32],
        )),
        compiler: qpf_runtime::Compiler::Cranelift,
        ..RuntimeOptions::default()
    })
    .expect("runtime");
    let limits = Limits::default();
    // (plugin, native, loaded component, requests)
    let mut plugins: Vec<(String, Native, qpf_runtime::Plugin, Vec<qpf_runtime::Request>)> = Vec::new();
    let mut skipped = std::collections::BTreeSet::new();
    for inv in &engine.plan().invocations {
        let Some(f) = native(&inv.plugin) else { continue };
        if !inv.upstream.is_empty() {
            // Its context holds the files of the entries it needs, known only during a run.
            skipped.insert(inv.plugin.clone());
            continue;
        }
        match plugins.iter_mut().find(|p| p.0 == inv.plugin) {
            Some(p) => p.3.push(inv.request.clone()),
            None => {
                let decl = &engine.project().file.plugins[&inv.plugin];
                let loaded = rt.load(&root.join(&decl.path), Some(&decl.digest), &limits).expect("plugin loads");
                plugins.push((inv.plugin.clone(), f, loaded, vec![inv.request.clone()]));
            }
        }
    }
    for name in &skipped {
        println!("floor: `{name}` left out (its requests carry upstream files, made during a run)");
    }
    let seed = Seed::from_key("floor");
    // Same files both ways (paths and bytes), before any timing.
    for (name, f, plugin, requests) in &plugins {
        for r in requests {
            let native = f(sdk_request(r)).expect("native extract");
            let sandboxed = rt.invoke(plugin, r, &limits, &seed).expect("runs").result.expect("extract");
            let mut a: Vec<(&str, &[u8])> =
                native.files.iter().chain(&native.scaffolds).map(|(p, b)| (p.as_str(), b.as_slice())).collect();
            let mut b: Vec<(&str, &[u8])> =
                sandboxed.files.iter().map(|f| (f.path.as_str(), f.contents.as_slice())).collect();
            a.sort();
            b.sort();
            assert!(a == b, "{name}: the native build and the component wrote different files");
        }
    }
    let rounds = 15;
    let mut total_native = Duration::ZERO;
    let mut total_sandboxed = Duration::ZERO;
    let calls: usize = plugins.iter().map(|p| p.3.len()).sum();
    println!(
        "{:<52} {:>12} {:>12} {:>8}",
        "floor: per call (median over the example's requests)", "native", "sandboxed", "ratio"
    );
    for (name, f, plugin, requests) in &plugins {
        let per_call = |run: &dyn Fn(&qpf_runtime::Request)| {
            median(
                (0..rounds)
                    .map(|_| {
                        let t = Instant::now();
                        for r in requests {
                            run(r);
                        }
                        t.elapsed() / requests.len() as u32
                    })
                    .collect(),
            )
        };
        let n = per_call(&|r| {
            std::hint::black_box(f(sdk_request(r)).expect("native extract"));
        });
        let s = per_call(&|r| {
            std::hint::black_box(rt.invoke(plugin, r, &limits, &seed).expect("runs"));
        });
        total_native += n * requests.len() as u32;
        total_sandboxed += s * requests.len() as u32;
        println!(
            "{:<52} {:>12} {:>12} {:>7.1}x",
            format!("  {name} ({} calls)", requests.len()),
            fmt(n),
            fmt(s),
            s.as_secs_f64() / n.as_secs_f64()
        );
    }
    println!(
        "{:<52} {:>12} {:>12} {:>7.1}x",
        format!("floor: the example's {calls} Rust-plugin calls, one thread"),
        fmt(total_native),
        fmt(total_sandboxed),
        total_sandboxed.as_secs_f64() / total_native.as_secs_f64()
    );

    // The Python + Jinja2 peer: the same templates and contexts, recorded from one native pass.
    let python = tools.join("jinja/bin/python");
    if !python.is_file() {
        println!("jinja peer: not run ({} is missing: `./dev tools` installs it)", python.display());
        return;
    }
    qpf_agent_model::recording::start();
    for (_, f, _, requests) in &plugins {
        for r in requests {
            f(sdk_request(r)).expect("native extract");
        }
    }
    let renders = qpf_agent_model::recording::take();
    let input = tempfile::NamedTempFile::new().expect("temp file");
    let data = serde_json::json!({ "reserved": qpf_agent_model::recording::reserved_names(), "renders": renders });
    std::fs::write(input.path(), serde_json::to_vec(&data).expect("JSON")).expect("write");
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../tests/benches/jinja_peer.py");
    let peer = |passes: &str| {
        let t = Instant::now();
        let out =
            std::process::Command::new(&python).arg(&script).arg(input.path()).arg(passes).output().expect("python");
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
        let result: serde_json::Value = serde_json::from_slice(&out.stdout).expect("the peer's JSON");
        (t.elapsed(), result)
    };
    // Whole processes that render everything once (a generator run), then one that times passes.
    let process: Vec<Duration> = (0..7).map(|_| peer("0").0).collect();
    let (_, result) = peer("15");
    let rendered = result["rendered"].as_u64().unwrap_or(0);
    println!(
        "jinja peer: {} of {} templates render under Jinja2, {} byte-identical to QPF's",
        rendered, result["templates"], result["identical"]
    );
    for (name, why) in result["failed"].as_object().into_iter().flatten() {
        let why = why.as_str().unwrap_or_default();
        println!("  not rendered: {name}: {}", why.chars().take(100).collect::<String>());
    }
    let pass = Duration::from_secs_f64(result["pass_ms"].as_f64().unwrap_or(0.0) / 1000.0);
    println!("{:<52} {:>12}", "jinja peer: one pass over those renders (compiled)", fmt(pass));
    println!("{:<52} {:>12}", "jinja peer: whole process (start, import, compile, render once)", fmt(median(process)));
    println!(
        "{:<52} {:>12}",
        "QPF sandboxed calls / jinja peer's pass",
        format!("{:.2}x", total_sandboxed.as_secs_f64() / pass.as_secs_f64())
    );
}
