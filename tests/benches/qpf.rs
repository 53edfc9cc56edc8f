//! `cargo bench -p qpf --bench qpf` (or `./dev bench`): the numbers in docs/benchmarks.md.
//!
//! A plain harness that prints medians, so that ratios come from one run on one machine:
//! for a trivial plugin (the hostile guest in `echo` mode) — compile, load from the compiled
//! cache, fresh-instance invocation, cache hit, and throughput at 1 and 2 threads; for the example
//! project — `qpf extract` wall time cold (compiled cache warm, invocation cache empty) and warm;
//! per language (Rust, Python, JavaScript) — size, first compile, cached load and per-call time.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

mod floor;
mod recovery;
mod remote;
// The S3 server of the remote cache tests (this benchmark uses only part of it).
#[allow(dead_code)]
#[path = "../all/s3.rs"]
mod s3;
mod serve;

use qpf_runtime::{CompiledCacheOptions, Limits, Request, Runtime, RuntimeOptions, SchemaId, Seed};

/// The `qpf` binary's allocator, so that in-process measurements see what `qpf` does.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn target_dir() -> PathBuf {
    let exe = std::env::current_exe().expect("bench executable path");
    exe.ancestors().nth(3).expect("<target>/<profile>/deps/bench").to_owned()
}

/// The `qpf` binary the project benchmarks run: `QPF_BENCH_QPF` (e.g. a build of an older commit,
/// for a before/after comparison in one session), else the one cargo built with this benchmark.
fn qpf_bin() -> PathBuf {
    std::env::var_os("QPF_BENCH_QPF").map_or_else(|| PathBuf::from(env!("CARGO_BIN_EXE_qpf")), PathBuf::from)
}

fn median(mut samples: Vec<Duration>) -> Duration {
    samples.sort();
    samples[samples.len() / 2]
}

fn measure(n: usize, mut f: impl FnMut()) -> Duration {
    f(); // warm-up
    median(
        (0..n)
            .map(|_| {
                let t = Instant::now();
                f();
                t.elapsed()
            })
            .collect(),
    )
}

fn fmt(d: Duration) -> String {
    let us = d.as_secs_f64() * 1e6;
    if us >= 10_000.0 { format!("{:.1} ms", us / 1000.0) } else { format!("{us:.1} µs") }
}

fn request() -> Request {
    Request {
        entry: "bench".into(),
        schema: SchemaId { kind: "Probe".into(), name: "probe".into(), version: "1.0.0".into() },
        input: "{\"greeting\":\"hello\"}".into(),
        config: "{\"mode\":\"echo\"}".into(),
        context: "{}".into(),
    }
}

/// Set in a child process of [`process_per_invocation`].
const CHILD: &str = "QPF_BENCH_ECHO_CHILD";

/// The child: the trivial guest's `echo` logic, natively: reads the request (JSON) on stdin and
/// writes a response with one file holding the input on stdout.
fn echo_child() {
    use std::io::{Read, Write};
    let mut text = String::new();
    let _ = std::io::stdin().read_to_string(&mut text);
    let request: serde_json::Value = serde_json::from_str(&text).unwrap_or_default();
    let response = serde_json::json!({
        "files": [{ "path": "echo.json", "contents": request["input"] }],
        "diagnostics": [],
    });
    let _ = std::io::stdout().write_all(response.to_string().as_bytes());
}

/// One invocation the way a protoc-style host makes it: spawn the plugin's process, write the
/// request, read and parse the response.
fn process_per_invocation(req: &Request) {
    use std::io::Write;
    let mut child = std::process::Command::new(std::env::current_exe().expect("the bench's path"))
        .env(CHILD, "1")
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .expect("the child starts");
    let request = serde_json::json!({
        "entry": req.entry, "input": req.input, "config": req.config, "context": req.context,
        "schema": { "kind": req.schema.kind, "name": req.schema.name, "version": req.schema.version },
    });
    child.stdin.take().expect("stdin").write_all(request.to_string().as_bytes()).expect("write");
    let out = child.wait_with_output().expect("the child ends");
    let response: serde_json::Value = serde_json::from_slice(&out.stdout).expect("a JSON response");
    assert_eq!(response["files"][0]["path"], "echo.json");
}

fn throughput(rt: &Runtime, plugin: &qpf_runtime::Plugin, threads: usize, calls_per_thread: usize) -> f64 {
    let limits = Limits::default();
    let req = request();
    let t = Instant::now();
    std::thread::scope(|s| {
        for _ in 0..threads {
            s.spawn(|| {
                for _ in 0..calls_per_thread {
                    let inv = rt.invoke(plugin, &req, &limits, &Seed::from_key("test")).expect("echo runs");
                    assert!(inv.result.is_ok());
                }
            });
        }
    });
    (threads * calls_per_thread) as f64 / t.elapsed().as_secs_f64()
}

/// Runs `qpf` without the run snapshot (measured on its own: `snapshot_on`).
fn qpf(args: &[&str]) {
    qpf_snapshot(args, false);
}

/// Runs `qpf` with the run snapshot on or off (`QPF_RUN_SNAPSHOT`).
fn qpf_snapshot(args: &[&str], snapshot_on: bool) {
    let bin = qpf_bin();
    let out = std::process::Command::new(&bin)
        .args(args)
        .env("QPF_RUN_SNAPSHOT", if snapshot_on { "on" } else { "off" })
        .output()
        .expect("qpf runs (build it first: ./dev build)");
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
}

fn example_project() -> tempfile::TempDir {
    let tmp = tempfile::tempdir().expect("temp dir");
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../schemas");
    for sub in ["agents", "kinds", "fragments", "templates"] {
        std::fs::create_dir_all(tmp.path().join(sub)).expect("mkdir");
        for e in std::fs::read_dir(src.join(sub)).expect("schemas/").flatten() {
            std::fs::copy(e.path(), tmp.path().join(sub).join(e.file_name())).expect("copy");
        }
    }
    std::fs::copy(src.join("extractors.yaml"), tmp.path().join("extractors.yaml")).expect("copy map");
    let text = std::fs::read_to_string(src.join("qpf.yaml")).expect("qpf.yaml");
    let plugins = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../plugins");
    let text = text
        .replace("../target/", &format!("{}/", target_dir().display()))
        .replace("../plugins/", &format!("{}/", plugins.display()));
    std::fs::write(tmp.path().join("qpf.yaml"), text).expect("write qpf.yaml");
    tmp
}

fn hostile_echo_project(wasm: &Path) -> tempfile::TempDir {
    let tmp = tempfile::tempdir().expect("temp dir");
    std::fs::write(
        tmp.path().join("probe.yaml"),
        "apiVersion: qpf.dev/v1\nkind: Probe\nmetadata: {name: probe, version: 1.0.0}\nspec: {greeting: hello}\n",
    )
    .expect("schema");
    std::fs::write(
        tmp.path().join("map.yaml"),
        "entries:\n  - {id: echo, plugin: hostile, input: /spec, out: echo, config: {mode: echo}}\n",
    )
    .expect("map");
    std::fs::write(tmp.path().join("probe.json"), "{\"type\": \"object\"}").expect("kind");
    let digest = format!("blake3:{}", blake3::hash(&std::fs::read(wasm).expect("wasm")).to_hex());
    std::fs::write(
        tmp.path().join("qpf.yaml"),
        format!(
            "version: 1\nschemas: [probe.yaml]\nkinds: {{Probe: probe.json}}\nmap: map.yaml\noutput: out\nplugins:\n  hostile: {{path: {}, digest: {digest}}}\n",
            wasm.display()
        ),
    )
    .expect("qpf.yaml");
    tmp
}

/// The example project with its five agents copied `copies` times under new names.
fn big_project(copies: usize) -> tempfile::TempDir {
    let project = example_project();
    let agents = project.path().join("agents");
    let originals: Vec<_> = std::fs::read_dir(&agents).expect("agents").flatten().map(|e| e.path()).collect();
    for i in 1..copies {
        for path in &originals {
            let text = std::fs::read_to_string(path).expect("agent");
            let name = path.file_stem().expect("stem").to_string_lossy().into_owned();
            let renamed = text.replace(&format!("name: {name}\n"), &format!("name: {name}-{i:02}\n"));
            std::fs::write(agents.join(format!("{name}-{i:02}.yaml")), renamed).expect("write");
        }
    }
    project
}

fn toggle(path: &Path, flip: bool) {
    let text = std::fs::read_to_string(path).expect("schema");
    let text = if flip {
        text.replace("default: warning", "default: critical")
    } else {
        text.replace("default: critical", "default: warning")
    };
    std::fs::write(path, text).expect("write");
}

/// One `qpf extract` of a generated project: wall time, the report's loading and run times, and
/// the process's peak RSS (GNU time's `%M`, when `/usr/bin/time` exists).
fn extract_once(project: &Path, extra: &[&str]) -> (Duration, u64, u64, Option<u64>) {
    extract_measured(project, extra, false, false)
}

/// [`extract_once`] with the run snapshot on, which must answer the run (nothing changed).
fn extract_replayed(project: &Path) -> (Duration, u64, u64, Option<u64>) {
    extract_measured(project, &[], true, true)
}

/// `qpf extract` with the run snapshot on or off; whether the snapshot must answer the run.
fn extract_measured(
    project: &Path,
    extra: &[&str],
    snapshot_on: bool,
    replay: bool,
) -> (Duration, u64, u64, Option<u64>) {
    let report = project.join("report.json");
    let mut args: Vec<String> =
        ["extract", "--project", &project.to_string_lossy(), "--report", &report.to_string_lossy()]
            .iter()
            .map(|s| (*s).to_owned())
            .collect();
    args.extend(extra.iter().map(|s| (*s).to_owned()));
    let timed = Path::new("/usr/bin/time").is_file();
    let mut command = if timed {
        let mut c = std::process::Command::new("/usr/bin/time");
        c.args(["-f", "%M"]).arg(qpf_bin());
        c
    } else {
        std::process::Command::new(qpf_bin())
    };
    command.env("QPF_RUN_SNAPSHOT", if snapshot_on { "on" } else { "off" });
    let started = Instant::now();
    let out = command.args(&args).output().expect("qpf runs");
    let wall = started.elapsed();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let rss = timed
        .then(|| String::from_utf8_lossy(&out.stderr).lines().last().and_then(|l| l.trim().parse::<u64>().ok()))
        .flatten();
    let r: serde_json::Value = serde_json::from_slice(&std::fs::read(&report).expect("report")).expect("JSON");
    assert_eq!(r["replayed"] == true, replay, "replayed or not as expected");
    (wall, r["load_us"].as_u64().unwrap_or(0), r["duration_us"].as_u64().unwrap_or(0), rss)
}

/// `qpf extract` of the example with `QPF_COMPILER` set to `compiler`, its own compiled cache and
/// nothing in the output folder.
fn extract_with(project: &Path, compiled: &Path, compiler: &str, extra: &[&str]) -> Duration {
    let _ = std::fs::remove_dir_all(project.join("out"));
    let t = Instant::now();
    let out = std::process::Command::new(qpf_bin())
        .args(["extract", "--project", &project.to_string_lossy()])
        .args(extra)
        .env("QPF_COMPILED_CACHE", compiled)
        .env("QPF_COMPILER", compiler)
        .output()
        .expect("qpf runs");
    let elapsed = t.elapsed();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    elapsed
}

/// Issue 17, item 3: the example's first run on a machine whose compiled cache is empty, per
/// compiler choice (3 runs each, each with an empty compiled cache and invocation cache), and what
/// staying on Winch's code costs afterwards: `--no-cache` runs over each compiler's artifacts.
fn first_run() {
    let project = example_project();
    let p = project.path();
    let mut firsts = Vec::new();
    for compiler in ["auto", "cranelift"] {
        let first = median(
            (0..3)
                .map(|_| {
                    let compiled = tempfile::tempdir().expect("temp dir");
                    let _ = std::fs::remove_dir_all(p.join(".qpf"));
                    extract_with(p, compiled.path(), compiler, &[])
                })
                .collect(),
        );
        println!("{:<52} {:>12}", format!("example: first run, empty compiled cache, {compiler}"), fmt(first));
        firsts.push(first);
    }
    println!(
        "{:<52} {:>12}",
        "first run: cranelift / auto",
        format!("{:.1}x", firsts[1].as_secs_f64() / firsts[0].as_secs_f64())
    );
    let mut cold = Vec::new();
    for compiler in ["winch", "cranelift"] {
        let compiled = tempfile::tempdir().expect("temp dir");
        extract_with(p, compiled.path(), compiler, &["--no-cache"]);
        let run = median((0..9).map(|_| extract_with(p, compiled.path(), compiler, &["--no-cache"])).collect());
        println!("{:<52} {:>12}", format!("example: --no-cache over {compiler}'s artifacts"), fmt(run));
        cold.push(run);
    }
    println!(
        "{:<52} {:>12}",
        "--no-cache: winch / cranelift",
        format!("{:.2}x", cold[0].as_secs_f64() / cold[1].as_secs_f64())
    );
}

/// Issue 17's scale measurements: a generated project of N tiny schemas and one entry of the
/// trivial guest (N invocations), compiled cache warm: cold (`--no-cache`), warm (all hits) and
/// one schema changed, each with its stages' shares (loading = reading, resolving, validating and
/// planning; run = invocations, writing, lock, audit; the rest = process start and exit) and
/// peak RSS. Medians of 5 runs (3 at 100,000).
fn scale() {
    for n in [2_000usize, 20_000, 100_000] {
        let project = remote::generated(n);
        let p = project.path();
        let samples = if n >= 100_000 { 3 } else { 5 };
        extract_once(p, &[]); // the compiled cache, the outputs and the lock
        let report = |label: &str, runs: Vec<(Duration, u64, u64, Option<u64>)>| {
            let mut runs = runs;
            runs.sort_by_key(|r| r.0);
            let (wall, load, run, rss) = runs[runs.len() / 2];
            let wall_us = wall.as_micros().max(1) as f64;
            println!(
                "{:<52} {:>12}   loading {:>3.0} %, run {:>3.0} %, rest {:>3.0} %, peak RSS {}",
                format!("scale {n}: {label}"),
                fmt(wall),
                100.0 * load as f64 / wall_us,
                100.0 * run as f64 / wall_us,
                (100.0 * (wall_us - load as f64 - run as f64) / wall_us).max(0.0),
                rss.map_or_else(|| "?".to_owned(), |kb| format!("{} MB", kb / 1024))
            );
        };
        report("cold (--no-cache)", (0..samples).map(|_| extract_once(p, &["--no-cache"])).collect());
        report("warm (all hits, snapshot off)", (0..samples).map(|_| extract_once(p, &[])).collect());
        // A run leaves the snapshot once its files have settled (2 s); then nothing changed.
        std::thread::sleep(Duration::from_millis(2_100));
        qpf_snapshot(&["extract", "--project", &p.to_string_lossy()], true);
        report("warm (nothing changed: snapshot replay)", (0..samples).map(|_| extract_replayed(p)).collect());
        let schema = p.join("probes/p00000.yaml");
        let original = std::fs::read_to_string(&schema).expect("schema");
        let mut flip = false;
        let changed = (0..samples)
            .map(|_| {
                flip = !flip;
                let text = if flip { original.replace("hello 0}", "hello 0 again}") } else { original.clone() };
                std::fs::write(&schema, text).expect("write");
                extract_measured(p, &[], true, false)
            })
            .collect();
        report("one schema changed (snapshot on)", changed);
    }
}

/// The tests' Python environment (tests/all/agents.rs makes the same one, stamped with its
/// requirements), made here when it is missing.
fn e2e_venv() -> PathBuf {
    let venv = target_dir().join("e2e-venv");
    if !venv.join("bin/python").is_file() {
        let requirements = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../tests/e2e/requirements.txt");
        let made = std::process::Command::new("python3").args(["-m", "venv"]).arg(&venv).status();
        let ok = made.is_ok_and(|s| s.success())
            && std::process::Command::new(venv.join("bin/python"))
                .args(["-m", "pip", "install", "--quiet", "-r"])
                .arg(&requirements)
                .status()
                .is_ok_and(|s| s.success());
        assert!(ok, "cannot make the Python environment {}", venv.display());
    }
    venv
}

/// New anomaly types become agents (issue 18, item 4): from a schema edit (one new anomaly with
/// `action: agent` in the example's `trainer`) to the handler agent's passing generated test
/// suite: `qpf extract` (compiled cache warm; the trainer's own invocations run again, the other
/// agents' are cache hits; the handler's fourteen are new), then its pytest suite in the tests'
/// Python environment. Five edits, each a new anomaly type on the original schema (so the last
/// edit's handler is removed as the next one is added); medians.
fn anomaly_agent() {
    let project = example_project();
    let p = project.path();
    let root = p.to_string_lossy().into_owned();
    qpf(&["extract", "--project", &root]);
    let venv = e2e_venv();
    let trainer = p.join("agents/trainer.yaml");
    let original = std::fs::read_to_string(&trainer).expect("trainer.yaml");
    let (mut extracts, mut suites, mut totals) = (Vec::new(), Vec::new(), Vec::new());
    for i in 0..5 {
        let edited = original.replacen(
            "  anomalies:\n",
            &format!("  anomalies:\n    - {{ name: drift_{i}, severity: warning, action: agent }}\n"),
            1,
        );
        assert_ne!(edited, original, "trainer.yaml has anomalies");
        let started = Instant::now();
        std::fs::write(&trainer, edited).expect("edit");
        qpf(&["extract", "--project", &root]);
        let extracted = started.elapsed();
        let service = p.join(format!("out/trainer-drift-{i}-handler"));
        let out = std::process::Command::new(venv.join("bin/python"))
            .args(["-m", "pytest", "-q", "-p", "no:cacheprovider"])
            .current_dir(&service)
            .env("PYTHONDONTWRITEBYTECODE", "1")
            .env_remove("PYTHONPATH")
            .output()
            .expect("pytest runs");
        let total = started.elapsed();
        let report = String::from_utf8_lossy(&out.stdout);
        assert!(out.status.success() && report.contains(" passed"), "{}: {report}", service.display());
        extracts.push(extracted);
        suites.push(total - extracted);
        totals.push(total);
    }
    println!("{:<52} {:>12}", "anomaly -> agent: qpf extract (new handler service)", fmt(median(extracts)));
    println!("{:<52} {:>12}", "anomaly -> agent: its generated test suite", fmt(median(suites)));
    println!("{:<52} {:>12}", "anomaly -> agent: schema edit to passing tests", fmt(median(totals)));
}

/// Spawn-to-first-task latency of the generated sub-agents (issue 18): the example's `orchestrator`
/// service runs its own benchmark (`tests/bench_subagents.py`, generated with its tests) in the
/// tests' Python environment, with a real Redis for the limits across replicas.
fn subagents() {
    let project = example_project();
    let p = project.path();
    qpf(&["extract", "--project", &p.to_string_lossy()]);
    let venv = e2e_venv();
    let port = std::net::TcpListener::bind("127.0.0.1:0").and_then(|l| l.local_addr()).expect("a port").port();
    let mut redis = std::process::Command::new("timeout")
        .args(["300", "redis-server", "--bind", "127.0.0.1", "--port", &port.to_string(), "--save", ""])
        .args(["--appendonly", "no"])
        .stdout(std::process::Stdio::null())
        .spawn()
        .expect("redis-server (./dev tools installs it)");
    let started = Instant::now();
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(started.elapsed() < Duration::from_secs(30), "redis-server did not start");
        std::thread::sleep(Duration::from_millis(20));
    }
    let service = p.join("out/orchestrator");
    let out = std::process::Command::new(venv.join("bin/python"))
        .args(["tests/bench_subagents.py", "500"])
        .current_dir(&service)
        .env("PYTHONPATH", service.join("src"))
        .env("TEST_REDIS_URL", format!("redis://127.0.0.1:{port}/0"))
        .output()
        .expect("python runs");
    let _ = std::process::Command::new("kill").arg(redis.id().to_string()).status();
    let _ = redis.wait();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    print!("{}", String::from_utf8_lossy(&out.stdout));
}

/// What `qpf validate` costs (issue 16), the compiled cache warm: on the example (5 agents) and on
/// 1,000 agents (the example's five copied 200 times), with the validators' results not cached
/// (their invocation cache emptied before each run) and cached, and without validators (the
/// JSON Schema checks, pins and configs alone) for the validators' share.
fn validate_cost() {
    for (label, copies, samples) in [("example, 5 agents", 1, 15), ("1,000 agents", 200, 5)] {
        let project = big_project(copies);
        let p = project.path().to_str().expect("utf-8 path");
        let validate = || {
            let out =
                std::process::Command::new(qpf_bin()).args(["validate", "--project", p]).output().expect("qpf runs");
            assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
        };
        validate(); // fills the compiled cache
        let invocations = project.path().join(".qpf/cache/invocations");
        let uncached = measure(samples, || {
            let _ = std::fs::remove_dir_all(&invocations);
            validate();
        });
        println!("{:<52} {:>12}", format!("validate {label}: validators run"), fmt(uncached));
        validate();
        let cached = measure(samples, validate);
        println!("{:<52} {:>12}", format!("validate {label}: validators cached"), fmt(cached));
        let yaml = project.path().join("qpf.yaml");
        let text = std::fs::read_to_string(&yaml).expect("qpf.yaml");
        std::fs::write(&yaml, text.replace("    validators:\n      - { plugin: agent-validator, input: /spec }\n", ""))
            .expect("write");
        let without = measure(samples, validate);
        println!("{:<52} {:>12}", format!("validate {label}: no validators"), fmt(without));
        std::fs::write(&yaml, text).expect("restore");
    }
}

/// A small Agent spec, the input of the per-language comparison.
const AGENT_SPEC: &str = r#"{"description":"d","types":[{"name":"Q","fields":[{"name":"text","type":"string"}]}],"capabilities":[{"name":"ask","input":"Q","output":"Q"}],"settings":[{"name":"log_level","type":"string","default":"INFO"}],"memory":[{"name":"working","backend":"redis"}]}"#;

/// Size, first compile, load from the compiled cache and per-call time of a plugin in each
/// language, each doing the same kind of work (one text file from the spec above).
fn languages() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
    let plugins = [
        ("rust (py-settings)", target_dir().join("wasm32-wasip2/guest/qpf_py_settings.wasm")),
        ("python (env-example)", root.join("plugins/env-example/dist/env-example.wasm")),
        ("js (ts-client)", root.join("plugins/ts-client/dist/ts-client.wasm")),
    ];
    let req = Request {
        entry: "bench".into(),
        schema: SchemaId { kind: "Agent".into(), name: "bench".into(), version: "1.0.0".into() },
        input: AGENT_SPEC.into(),
        config: "{}".into(),
        context: "{}".into(),
    };
    let limits = Limits::default();
    for (label, wasm) in plugins {
        let size = std::fs::metadata(&wasm).expect("plugin built").len();
        println!("{label}: component {:.1} MB", size as f64 / 1e6);
        let cache = tempfile::tempdir().expect("temp dir");
        let with_cache = || {
            Runtime::new(&RuntimeOptions {
                compiled_cache: Some(CompiledCacheOptions::new(cache.path().to_owned(), [7; 32])),
                ..RuntimeOptions::default()
            })
        };
        let rt = with_cache().expect("runtime");
        let t = Instant::now();
        let plugin = rt.load(&wasm, None, &Limits::default()).expect("loads");
        println!("{:<52} {:>12}", format!("{label}: first compile (Cranelift)"), fmt(t.elapsed()));
        let load = measure(5, || {
            with_cache().expect("runtime").load(&wasm, None, &Limits::default()).expect("loads");
        });
        println!("{:<52} {:>12}", format!("{label}: load from the compiled cache"), fmt(load));
        let n = if size > 4_000_000 { 30 } else { 300 };
        let call = measure(n, || {
            let inv = rt.invoke(&plugin, &req, &limits, &Seed::from_key("test")).expect("runs");
            assert!(inv.result.is_ok(), "{label}: {:?}", inv.result.err());
        });
        println!("{:<52} {:>12}", format!("{label}: call, pooling allocator"), fmt(call));
        let plain = Runtime::new(&RuntimeOptions {
            compiled_cache: Some(CompiledCacheOptions::new(cache.path().to_owned(), [7; 32])),
            pooling: false,
            ..RuntimeOptions::default()
        })
        .expect("runtime");
        let plugin = plain.load(&wasm, None, &Limits::default()).expect("loads");
        let call = measure(n, || {
            plain.invoke(&plugin, &req, &limits, &Seed::from_key("test")).expect("runs");
        });
        println!("{:<52} {:>12}", format!("{label}: call, on-demand allocator"), fmt(call));
    }
}

fn main() {
    if std::env::var_os(CHILD).is_some() {
        echo_child();
        return;
    }
    let filter: Option<String> = std::env::args().skip(1).find(|a| !a.starts_with('-'));
    let wanted = |name: &str| filter.as_deref().is_none_or(|f| name.contains(f));
    let wasm = target_dir().join("wasm32-wasip2/guest/qpf_hostile.wasm");
    let cache = tempfile::tempdir().expect("temp dir");
    println!(
        "machine: {} cores, {}",
        std::thread::available_parallelism().map_or(1, |n| n.get()),
        std::env::consts::ARCH
    );
    println!("{:<52} {:>12}", "measurement", "median");

    if wanted("plugin") && filter.as_deref() != Some("profile-invoke") {
        let rt = Runtime::new(&RuntimeOptions::default()).expect("runtime");
        println!("pooling allocator: {}", rt.is_pooling());
        let size = std::fs::metadata(&wasm).expect("run ./dev build first").len();
        println!("trivial plugin: {} KB", size / 1024);
        let compile = measure(5, || {
            rt.load(&wasm, None, &Limits::default()).expect("loads");
        });
        println!("{:<52} {:>12}", "trivial plugin: compile (cold, Cranelift)", fmt(compile));
        let cached = Runtime::new(&RuntimeOptions {
            compiled_cache: Some(CompiledCacheOptions::new(cache.path().to_owned(), [7; 32])),
            ..RuntimeOptions::default()
        })
        .expect("runtime");
        let load = measure(50, || {
            cached.load(&wasm, None, &Limits::default()).expect("loads");
        });
        println!("{:<52} {:>12}", "trivial plugin: load from the compiled cache", fmt(load));
        let plugin = rt.load(&wasm, None, &Limits::default()).expect("loads");
        let limits = Limits::default();
        let req = request();
        let call = measure(2000, || {
            rt.invoke(&plugin, &req, &limits, &Seed::from_key("test")).expect("runs");
        });
        println!("{:<52} {:>12}", "trivial plugin: fresh-instance invocation", fmt(call));
        // The protoc-style peer: a native process per invocation, request on stdin, response on
        // stdout, the same echo logic (this bench's own executable, as a child).
        let peer = measure(300, || process_per_invocation(&req));
        println!("{:<52} {:>12}", "peer: native process per invocation (same logic)", fmt(peer));
        println!(
            "{:<52} {:>12}",
            "  ratio process / QPF fresh instance",
            format!("{:.1}x", peer.as_secs_f64() / call.as_secs_f64().max(1e-9))
        );
        let hit_project = hostile_echo_project(&wasm);
        let engine = qpf_engine::Engine::load(hit_project.path()).expect("project loads");
        let options = qpf_engine::ExtractOptions {
            jobs: 1,
            out: None,
            no_cache: false,
            fail_fast: false,
            require_hits: false,
            shard: None,
        };
        engine.extract(&options, &|_| {}).expect("first run");
        let hit = measure(200, || {
            let report = engine.extract(&options, &|_| {}).expect("runs");
            assert_eq!(report.summary.hits, 1);
        });
        println!("{:<52} {:>12}", "trivial plugin: cache hit (1-invocation run, in-process)", fmt(hit));
        let calls = 4000;
        let mut one = Vec::new();
        let mut two = Vec::new();
        for _ in 0..5 {
            one.push(throughput(&rt, &plugin, 1, calls));
            two.push(throughput(&rt, &plugin, 2, calls / 2));
        }
        one.sort_by(f64::total_cmp);
        two.sort_by(f64::total_cmp);
        let (one, two) = (one[2], two[2]);
        println!("{:<52} {:>12}", "throughput --jobs 1 (calls/s)", format!("{one:.0}"));
        println!("{:<52} {:>12}", "throughput --jobs 2 (calls/s)", format!("{two:.0}"));
        println!("{:<52} {:>12}", "speed-up --jobs 2 / --jobs 1", format!("{:.2}x", two / one));
    }

    if wanted("languages") && filter.as_deref() != Some("profile-invoke") {
        languages();
    }

    if filter.as_deref() == Some("profile-invoke") {
        // For `perf record`: nothing but fresh-instance invocations.
        let rt = Runtime::new(&RuntimeOptions::default()).expect("runtime");
        let plugin = rt.load(&wasm, None, &Limits::default()).expect("loads");
        let (limits, req) = (Limits::default(), request());
        for _ in 0..100_000 {
            rt.invoke(&plugin, &req, &limits, &Seed::from_key("test")).expect("runs");
        }
        return;
    }

    if wanted("remote-example") {
        remote::example_bench();
    }
    if wanted("remote-shards") {
        remote::shards(20_000);
    }

    if wanted("validate") {
        validate_cost();
    }

    if wanted("scale") {
        scale();
    }

    if wanted("subagents") {
        subagents();
    }

    if wanted("anomaly-agent") {
        anomaly_agent();
    }

    if wanted("recovery") {
        let project = example_project();
        qpf(&["extract", "--project", &project.path().to_string_lossy()]);
        recovery::run(&e2e_venv(), &project.path().join("out/orchestrator"), fmt);
    }

    if wanted("floor") {
        let project = example_project();
        floor::run(project.path(), &target_dir().join("qpf-tools"), fmt);
    }

    if wanted("first-run") {
        first_run();
    }

    if wanted("project") {
        let project = example_project();
        let p = project.path().to_str().expect("utf-8 path");
        qpf(&["extract", "--project", p]); // fills the compiled cache
        let hit_project = project.path().join("hit");
        let out = hit_project.to_str().expect("utf-8");
        let cold = measure(20, || {
            let _ = std::fs::remove_dir_all(&hit_project);
            qpf(&["extract", "--project", p, "--no-cache", "--out", out]);
        });
        println!("{:<52} {:>12}", "example project: cold (compiled cache warm)", fmt(cold));
        qpf(&["extract", "--project", p]);
        let warm = measure(20, || qpf(&["extract", "--project", p]));
        println!("{:<52} {:>12}", "example project: warm (all hits, snapshot off)", fmt(warm));
        std::thread::sleep(Duration::from_millis(2_100));
        qpf_snapshot(&["extract", "--project", p], true);
        assert!(project.path().join(".qpf/run-snapshot").is_file(), "a settled run leaves the snapshot");
        let replay = measure(20, || qpf_snapshot(&["extract", "--project", p], true));
        println!("{:<52} {:>12}", "example project: warm (nothing changed: replay)", fmt(replay));
        let schema = project.path().join("agents/monitor.yaml");
        let original = std::fs::read_to_string(&schema).expect("schema");
        let mut flip = false;
        let one = measure(20, || {
            flip = !flip;
            let text = if flip { original.replace("default: warning", "default: critical") } else { original.clone() };
            std::fs::write(&schema, text).expect("write");
            qpf(&["extract", "--project", p, "--no-cache"]);
        });
        println!("{:<52} {:>12}", "example project: one schema changed, --no-cache", fmt(one));
        let hit = measure(20, || {
            flip = !flip;
            let text = if flip { original.replace("default: warning", "default: critical") } else { original.clone() };
            std::fs::write(&schema, text).expect("write");
            qpf(&["extract", "--project", p]);
        });
        println!("{:<52} {:>12}", "example project: schema toggled, served from cache", fmt(hit));
    }

    if wanted("incremental") {
        for copies in [1, 10] {
            let project = big_project(copies);
            let p = project.path().to_str().expect("utf-8 path");
            qpf(&["extract", "--project", p]);
            let schema = project.path().join("agents/monitor.yaml");
            let original = std::fs::read_to_string(&schema).expect("schema");
            let mut round = 0;
            // A new description each round: the two invocations of that schema always miss.
            let one = measure(10, || {
                round += 1;
                let text = original.replace("Watches swarm metrics", &format!("Watches swarm metrics (edit {round})"));
                std::fs::write(&schema, text).expect("write");
                qpf(&["extract", "--project", p]);
            });
            let fresh = project.path().join("fresh");
            let all = measure(5, || {
                let _ = std::fs::remove_dir_all(&fresh);
                qpf(&["extract", "--project", p, "--no-cache", "--out", fresh.to_str().expect("utf-8")]);
            });
            let n = copies * 5;
            println!("{:<52} {:>12}", format!("{n} agents: every invocation run (--no-cache)"), fmt(all));
            println!("{:<52} {:>12}", format!("{n} agents: one schema changed, rest cached"), fmt(one));
        }
    }

    if wanted("watch") {
        let project = example_project();
        let p = project.path().to_str().expect("utf-8 path");
        let bin = qpf_bin();
        let mut child = std::process::Command::new(&bin)
            .args(["watch", "--project", p, "--interval", "20"])
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .expect("qpf watch runs");
        let stderr = child.stderr.take().expect("stderr");
        let mut lines = std::io::BufRead::lines(std::io::BufReader::new(stderr));
        while let Some(Ok(line)) = lines.next() {
            if line.starts_with("watching") {
                break;
            }
        }
        let schema = project.path().join("agents/monitor.yaml");
        let output = project.path().join("out/monitor/src/monitor/models.py");
        let mut flip = false;
        let latency = median(
            (0..15)
                .map(|_| {
                    std::thread::sleep(Duration::from_millis(50));
                    flip = !flip;
                    let want = if flip { "\"critical\"" } else { "\"warning\"" };
                    let t = Instant::now();
                    toggle(&schema, flip);
                    while !std::fs::read_to_string(&output).is_ok_and(|o| o.contains(want)) {
                        assert!(t.elapsed() < Duration::from_secs(10), "watch did not react");
                        std::thread::sleep(Duration::from_millis(1));
                    }
                    t.elapsed()
                })
                .collect(),
        );
        let _ = child.kill();
        let _ = child.wait();
        println!("{:<52} {:>12}", "watch: save-to-written latency, one schema (20 ms poll)", fmt(latency));
    }

    if wanted("serve") {
        serve::run(&qpf_bin(), &target_dir().join("wasm32-wasip2/guest/qpf_hostile.wasm"));
    }
}
