//! The reference plugins end to end: every example agent becomes a Python service that passes its
//! own generated tests, `ruff check` and `compileall`, builds as a wheel, and answers `/health` and
//! a capability call over real HTTP under uvicorn. Two agents' trees are golden files.
//!
//! Python comes from the machine (`python3`, 3.11 or newer); the tools come from PyPI, pinned in
//! `tests/e2e/requirements.txt`, installed into a venv under the target folder that is reused while
//! that file is unchanged.

use crate::servers;
use crate::support::{self, agents_project, show, walk};
use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// The agents whose generated trees are golden files under `tests/golden/agents/`.
const GOLDEN: [&str; 3] = ["orchestrator", "auditor", "monitor-metric-drift-handler"];

/// The venv with the pinned tools, created (under a lock, so parallel tests share it) when
/// missing or when the requirements changed.
fn venv() -> PathBuf {
    let requirements = support::workspace_root().join("tests/e2e/requirements.txt");
    let wanted = blake3::hash(&std::fs::read(&requirements).expect("requirements")).to_hex().to_string();
    let dir = support::target_dir().join("e2e-venv");
    std::fs::create_dir_all(support::target_dir()).expect("target dir");
    let lock = std::fs::File::create(support::target_dir().join("e2e-venv.lock")).expect("lock file");
    lock.lock().expect("lock the venv");
    let stamp = dir.join("qpf-requirements.blake3");
    if std::fs::read_to_string(&stamp).ok().as_deref() != Some(wanted.as_str()) {
        let _ = std::fs::remove_dir_all(&dir);
        run(Command::new("python3").args(["-m", "venv"]).arg(&dir), "create the venv (is python3 ≥ 3.11 installed?)");
        run(
            Command::new(dir.join("bin/python"))
                .args(["-m", "pip", "install", "--disable-pip-version-check", "--quiet", "-r"])
                .arg(&requirements),
            "install tests/e2e/requirements.txt from PyPI",
        );
        std::fs::write(&stamp, &wanted).expect("stamp");
    }
    dir
}

/// Runs a command to success, or fails the test with its output.
fn run(cmd: &mut Command, what: &str) -> String {
    let out = cmd.output().unwrap_or_else(|e| panic!("{what}: cannot start {cmd:?}: {e}"));
    assert!(out.status.success(), "{what} failed: {cmd:?}\n{}", show(&out));
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// A generated service's pytest run in `dir`, strict (`-W error`, no cache folder, no bytecode,
/// the package found through its own `pyproject.toml`); `args` follow.
fn pytest(venv: &Path, dir: &Path, args: &[&str]) -> Command {
    let mut cmd = Command::new(venv.join("bin/python"));
    cmd.args(["-m", "pytest", "-p", "no:cacheprovider", "-W", "error"])
        .args(args)
        .current_dir(dir)
        .env("PYTHONDONTWRITEBYTECODE", "1")
        .env_remove("PYTHONPATH");
    cmd
}

/// The extracted example project, with the report of the run.
fn extracted() -> tempfile::TempDir {
    let project = agents_project();
    let p = project.path().to_str().expect("utf-8 path");
    let out = Command::new(support::qpf_bin())
        .args(["extract", "--project", p])
        .env("QPF_RUN_SNAPSHOT", "off")
        .env("QPF_LOG", "warn")
        // The Python and JavaScript plugins take seconds to compile: compile them once per build.
        .env("QPF_COMPILED_CACHE", support::target_dir().join("qpf-test-compiled"))
        .output()
        .expect("qpf runs");
    assert!(out.status.success(), "{}", show(&out));
    project
}

/// A port nobody listens on now.
fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0").and_then(|l| l.local_addr()).expect("a free port").port()
}

/// The API key the served agents accept (`serve` configures it).
const API_KEY: &str = "e2e-key";

/// One HTTP/1.0 exchange, presenting [`API_KEY`]: the status and the body.
fn http(port: u16, method: &str, path: &str, body: &str) -> std::io::Result<(u16, String)> {
    http_as(port, method, path, body, Some(API_KEY))
}

/// One HTTP/1.0 exchange with the given API key, or none.
fn http_as(port: u16, method: &str, path: &str, body: &str, key: Option<&str>) -> std::io::Result<(u16, String)> {
    let mut stream = TcpStream::connect(("127.0.0.1", port))?;
    stream.set_read_timeout(Some(Duration::from_secs(10)))?;
    let auth = key.map(|k| format!("X-API-Key: {k}\r\n")).unwrap_or_default();
    write!(
        stream,
        "{method} {path} HTTP/1.0\r\nHost: 127.0.0.1\r\n{auth}Content-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    )?;
    let mut response = String::new();
    stream.read_to_string(&mut response)?;
    let status = response.split(' ').nth(1).and_then(|s| s.parse().ok()).unwrap_or(0);
    let body = response.split_once("\r\n\r\n").map(|(_, b)| b.to_owned()).unwrap_or_default();
    Ok((status, body))
}

/// Kills the server when the test ends, passing or not.
struct Server(Child);

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Serves the agent in `dir` under uvicorn and returns the port once `/health` answers.
fn serve(venv: &Path, dir: &Path, package: &str) -> (Server, u16) {
    serve_with(venv, dir, package, &[])
}

/// [`serve`] with more environment variables.
fn serve_with(venv: &Path, dir: &Path, package: &str, env: &[(&str, &str)]) -> (Server, u16) {
    let port = free_port();
    let child = Command::new(venv.join("bin/python"))
        .args(["-m", "uvicorn", "--factory", &format!("{package}.app:create_app"), "--host", "127.0.0.1"])
        .args(["--port", &port.to_string()])
        .current_dir(dir)
        .env("PYTHONPATH", dir.join("src"))
        .env("PYTHONDONTWRITEBYTECODE", "1")
        .env(format!("{}_API_KEYS", package.to_uppercase()), API_KEY)
        .envs(env.iter().copied())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("uvicorn starts");
    let mut server = Server(child);
    let start = Instant::now();
    loop {
        if let Ok((200, _)) = http(port, "GET", "/health", "") {
            return (server, port);
        }
        if let Ok(Some(status)) = server.0.try_wait() {
            panic!("{package}: uvicorn exited with {status} before answering /health");
        }
        assert!(start.elapsed() < Duration::from_secs(30), "{package}: /health did not answer within 30 s");
        std::thread::sleep(Duration::from_millis(100));
    }
}

#[test]
fn every_agent_passes_its_tests_and_lint_and_serves_http() {
    let venv = venv();
    let python = venv.join("bin/python");
    let project = extracted();
    let out = project.path().join("out");
    // The five schemas, and the handler agent the monitor's `metric_drift` anomaly was given.
    let agents = ["adapter", "auditor", "monitor", "orchestrator", "trainer", "monitor-metric-drift-handler"];
    for agent in agents {
        let dir = out.join(agent);
        let package = agent.replace('-', "_");
        let quiet = |cmd: &mut Command| {
            cmd.current_dir(&dir).env("PYTHONDONTWRITEBYTECODE", "1").env_remove("PYTHONPATH");
        };

        let report = run(&mut pytest(&venv, &dir, &["-q"]), &format!("{agent}: the generated pytest suite"));
        assert!(report.contains(" passed"), "{agent}: {report}");

        let mut ruff = Command::new(venv.join("bin/ruff"));
        ruff.args(["check", "--no-cache", "."]);
        quiet(&mut ruff);
        run(&mut ruff, &format!("{agent}: ruff check"));

        let cache = tempfile::tempdir().expect("temp dir");
        let mut mypy = Command::new(&python);
        mypy.args(["-m", "mypy", "--no-error-summary", "--cache-dir"]).arg(cache.path()).args(["src", "tests"]);
        quiet(&mut mypy);
        run(&mut mypy, &format!("{agent}: mypy --strict (the generated pyproject.toml's [tool.mypy])"));

        let mut compileall = Command::new(&python);
        compileall.args(["-B", "-m", "compileall", "-q", "src", "tests"]);
        compileall.current_dir(&dir);
        run(&mut compileall, &format!("{agent}: python -m compileall"));

        let wheels = tempfile::tempdir().expect("temp dir");
        let mut wheel = Command::new(&python);
        wheel.args([
            "-m",
            "pip",
            "wheel",
            "--quiet",
            "--no-deps",
            "--no-build-isolation",
            "--disable-pip-version-check",
            "-w",
        ]);
        wheel.arg(wheels.path()).arg(".");
        quiet(&mut wheel);
        run(&mut wheel, &format!("{agent}: building its wheel from pyproject.toml"));
        assert_eq!(std::fs::read_dir(wheels.path()).expect("wheel dir").count(), 1, "{agent}: one wheel");

        let mut manifests = Command::new(&python);
        manifests.args([
            "-c",
            "import sys, yaml\n\
             docs = [d for f in sys.argv[1:] for d in yaml.safe_load_all(open(f))]\n\
             kinds = sorted(d['kind'] for d in docs)\n\
             probes = [c[p]['httpGet']['path'] for d in docs if d['kind'] == 'Deployment'\n\
                       for c in d['spec']['template']['spec']['containers'] for p in ('readinessProbe', 'livenessProbe')]\n\
             print(' '.join(kinds), ' '.join(probes))",
            "k8s/deployment.yaml",
            "k8s/service.yaml",
            "k8s/configmap.yaml",
        ]);
        quiet(&mut manifests);
        let parsed = run(&mut manifests, &format!("{agent}: parsing its Kubernetes manifests"));
        assert!(
            parsed.contains("ConfigMap Deployment") && parsed.trim_end().ends_with("/ready /health"),
            "{agent}: {parsed}"
        );

        // Over real HTTP: the probes and the first capability with the OpenAPI document's example,
        // which nobody implemented yet (the `handlers.py` scaffold overrides nothing): a 501 with
        // the one error body, never invented data.
        let openapi: serde_json::Value =
            serde_json::from_str(&std::fs::read_to_string(dir.join("docs/openapi.json")).expect("openapi.json"))
                .expect("openapi.json is JSON");
        let (path, operation) = openapi["paths"]
            .as_object()
            .expect("paths")
            .iter()
            .find_map(|(path, item)| item.get("post").filter(|op| op["tags"][0] == "capabilities").map(|op| (path, op)))
            .expect("a capability");
        let example = operation["requestBody"]["content"]["application/json"]["example"].to_string();
        let (_server, port) = serve(&venv, &dir, &package);
        let (status, body) = http(port, "GET", "/ready", "").expect("/ready");
        assert_eq!(status, 200, "{agent}: /ready: {body}");
        let (status, body) = http_as(port, "POST", path, &example, None).expect("anonymous call");
        assert_eq!(status, 401, "{agent}: POST {path} without credentials: {body}");
        let (status, body) = http(port, "POST", path, &example).expect("capability call");
        assert_eq!(status, 501, "{agent}: POST {path} {example}: {body}");
        let output: serde_json::Value = serde_json::from_str(&body).expect("a JSON answer");
        assert_eq!(output["code"], "not_implemented", "{agent}: {body}");
        assert_eq!(output["retryable"], false, "{agent}: {body}");
        let (status, body) = http(port, "GET", "/metrics", "").expect("/metrics");
        assert!(status == 200 && body.contains(&format!("route=\"{path}\"")), "{agent}: /metrics: {body}");
    }
}

#[test]
fn generated_trees_match_the_golden_files() {
    let project = extracted();
    let bless = support::blessing();
    for agent in GOLDEN {
        let actual = project.path().join("out").join(agent);
        let golden = support::workspace_root().join("tests/golden/agents").join(agent);
        if bless {
            let _ = std::fs::remove_dir_all(&golden);
            for file in walk(&actual) {
                let to = golden.join(file.strip_prefix(&actual).expect("under out"));
                std::fs::create_dir_all(to.parent().expect("parent")).expect("mkdir");
                std::fs::copy(&file, &to).expect("copy");
            }
            continue;
        }
        let rel = |root: &Path| -> Vec<PathBuf> {
            walk(root).into_iter().map(|f| f.strip_prefix(root).expect("under root").to_owned()).collect()
        };
        assert_eq!(rel(&actual), rel(&golden), "{agent}: the files differ (QPF_BLESS=1 accepts the new tree)");
        for file in rel(&golden) {
            support::golden(&golden.join(&file), &std::fs::read_to_string(actual.join(&file)).expect("generated file"));
        }
    }
}

/// Every agent's Kubernetes manifests pass the Kubernetes API's own JSON Schemas (strict: no
/// unknown fields), offline, with kubernetes-validate (PyPI, pinned in
/// `tests/tools/k8s-requirements.txt`, installed by `./dev tools`), for the oldest and newest
/// Kubernetes this project supports; and every pod meets the Pod Security Standard "restricted"
/// (`tests/tools/pss_restricted.py`).
#[test]
fn generated_kubernetes_manifests_are_valid_and_meet_pod_security_restricted() {
    support::tools();
    let project = extracted();
    let manifests: Vec<PathBuf> = walk(&project.path().join("out"))
        .into_iter()
        .filter(|f| f.parent().is_some_and(|p| p.ends_with("k8s")) && f.extension().is_some_and(|e| e == "yaml"))
        .collect();
    assert!(manifests.len() >= 15, "every agent has a ConfigMap, a Deployment and a Service: {manifests:?}");
    let bin = support::target_dir().join("qpf-tools/k8s/bin");
    for version in ["1.30.0", "1.37.0"] {
        let out = Command::new(bin.join("kubernetes-validate"))
            .args(["--strict", "--quiet", "-k", version])
            .args(&manifests)
            .output()
            .expect("kubernetes-validate runs (./dev tools installs it)");
        assert!(out.status.success(), "Kubernetes {version}: {}", show(&out));
    }
    let out = Command::new(bin.join("python"))
        .arg(support::workspace_root().join("tests/tools/pss_restricted.py"))
        .args(&manifests)
        .output()
        .expect("python runs");
    assert!(out.status.success(), "{}", show(&out));
    assert!(String::from_utf8_lossy(&out.stdout).contains("pod template(s) checked"), "{}", show(&out));

    // The check is not a rubber stamp: a pod as the deploy plugin wrote it before is refused.
    let bad = tempfile::tempdir().expect("dir");
    let old = bad.path().join("deployment.yaml");
    std::fs::write(
        &old,
        "apiVersion: apps/v1\nkind: Deployment\nmetadata: {name: x}\nspec:\n  selector: {matchLabels: {a: b}}\n  template:\n    metadata: {labels: {a: b}}\n    spec:\n      securityContext: {runAsNonRoot: true, runAsUser: 10001}\n      containers:\n        - name: x\n          image: x\n          resources: {requests: {cpu: 100m}, limits: {memory: 512Mi}}\n          securityContext: {allowPrivilegeEscalation: false, readOnlyRootFilesystem: true}\n",
    )
    .expect("write");
    let out = Command::new(bin.join("python"))
        .arg(support::workspace_root().join("tests/tools/pss_restricted.py"))
        .arg(&old)
        .output()
        .expect("python runs");
    assert_eq!(out.status.code(), Some(1), "{}", show(&out));
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        text.contains("seccompProfile.type is None") && text.contains("capabilities.drop does not hold ALL"),
        "{text}"
    );
}

#[test]
fn a_broken_reference_in_an_agent_is_an_error_at_its_schema_line() {
    let project = agents_project();
    let p = project.path();
    let file = p.join("agents/monitor.yaml");
    let text = std::fs::read_to_string(&file).expect("monitor.yaml");
    std::fs::write(&file, text.replace("      output: Alert\n", "      output: Alert\n      errors: [Overloaded]\n"))
        .expect("edit");
    let out = Command::new(support::qpf_bin())
        .args(["extract", "--project", p.to_str().expect("utf-8 path")])
        .env("QPF_RUN_SNAPSHOT", "off")
        .env("QPF_COMPILED_CACHE", support::target_dir().join("qpf-test-compiled"))
        .output()
        .expect("qpf runs");
    assert_eq!(out.status.code(), Some(1), "{}", show(&out));
    let stderr = String::from_utf8_lossy(&out.stderr);
    let line = text.lines().position(|l| l == "      output: Alert").expect("the output line") + 2;
    // Found once, by the kind's validator, before any generator runs on the agent.
    let problem = format!(
        "error[agent/undeclared-error]: agents/monitor.yaml:{line}:16: capability `observe`: error `Overloaded` is not declared in `errors`"
    );
    assert_eq!(stderr.matches(&problem).count(), 1, "{stderr}");
    assert_eq!(stderr.matches("`Overloaded` is not declared").count(), 1, "{stderr}");
    assert!(stderr.contains("plugin `agent-validator`"), "{stderr}");
    assert!(stderr.contains("invocations were not run because a validator found errors in their schema"), "{stderr}");
}

/// The README's worked example: a team implements one capability in the `handlers.py` scaffold; a
/// new `qpf extract` keeps its code and `qpf drift` stays clean; served over HTTP, the capability
/// answers with the team's data and the others 501; a capability added to the schema appears in
/// the generated `Handlers` (501) while the team's implementation still loads and the generated
/// tests pass.
#[test]
fn a_teams_handlers_py_survives_regeneration_and_schema_changes_and_serves() {
    let venv = venv();
    let python = venv.join("bin/python");
    let project = extracted();
    let p = project.path();
    let dir = p.join("out/orchestrator");
    let handlers = dir.join("src/orchestrator/handlers.py");
    let scaffold = std::fs::read_to_string(&handlers).expect("handlers.py is written");
    assert!(scaffold.contains("YOURS to edit") && scaffold.contains("# async def status("), "{scaffold}");
    let lock: serde_json::Value =
        serde_json::from_slice(&std::fs::read(p.join("qpf.lock")).expect("lock")).expect("lock is JSON");
    assert_eq!(lock["files"]["orchestrator/src/orchestrator/handlers.py"]["user_owned"], true);

    let ours = "\"\"\"Our orchestrator.\"\"\"\n\nfrom __future__ import annotations\n\nfrom . import models\n\
                from .capabilities import Handlers as GeneratedHandlers\n\n\n\
                class Handlers(GeneratedHandlers):\n    \
                async def status(self, body: models.Assignment) -> models.TaskStatus:\n        \
                return models.TaskStatus(task_id=body.task_id, state=\"running\", progress=0.5)\n";
    std::fs::write(&handlers, ours).expect("the team edits handlers.py");
    let qpf_in = |args: &[&str]| {
        Command::new(support::qpf_bin())
            .args(args)
            .args(["--project", p.to_str().expect("utf-8")])
            .env("QPF_COMPILED_CACHE", support::target_dir().join("qpf-test-compiled"))
            .output()
            .expect("qpf runs")
    };
    let out = qpf_in(&["extract", "--no-cache"]);
    assert!(out.status.success(), "{}", show(&out));
    assert_eq!(std::fs::read_to_string(&handlers).expect("handlers.py"), ours, "the team's code survives");
    let out = qpf_in(&["drift"]);
    assert_eq!(out.status.code(), Some(0), "drift stays clean: {}", show(&out));

    let suite = |what: &str| {
        let report = run(&mut pytest(&venv, &dir, &["-q"]), what);
        assert!(report.contains(" passed"), "{what}: {report}");
    };
    suite("the generated tests with the team's handlers");
    {
        let (_server, port) = serve(&venv, &dir, "orchestrator");
        let assignment = r#"{"task_id": "t-1", "agent": "trainer", "accepted_at": "2026-01-01T00:00:00Z"}"#;
        let (status, body) = http(port, "POST", "/status", assignment).expect("/status");
        assert_eq!(status, 200, "{body}");
        let answer: serde_json::Value = serde_json::from_str(&body).expect("JSON");
        assert_eq!(answer, serde_json::json!({"task_id": "t-1", "state": "running", "progress": 0.5}));
        let task = r#"{"id": "t-2", "kind": "train"}"#;
        let (status, body) = http(port, "POST", "/dispatch", task).expect("/dispatch");
        assert_eq!(status, 501, "{body}");
        assert_eq!(
            serde_json::from_str::<serde_json::Value>(&body).expect("JSON"),
            serde_json::json!({"code": "not_implemented", "message": "the capability `dispatch` is not implemented yet", "retryable": false})
        );
    }

    // The schema gains a capability: the generated interface has it (501), the team's file does not
    // change, the app still loads it, and the generated tests (including the new capability's) pass.
    let schema = p.join("agents/orchestrator.yaml");
    let text = std::fs::read_to_string(&schema).expect("schema");
    let added = text.replace(
        "  memory:\n",
        "    - name: cancel\n      description: Cancel a task.\n      input: Assignment\n      output: TaskStatus\n  memory:\n",
    );
    assert_ne!(added, text);
    std::fs::write(&schema, added).expect("schema edit");
    let out = qpf_in(&["extract"]);
    assert!(out.status.success(), "{}", show(&out));
    assert_eq!(std::fs::read_to_string(&handlers).expect("handlers.py"), ours);
    let generated = std::fs::read_to_string(dir.join("src/orchestrator/capabilities/__init__.py")).expect("generated");
    assert!(generated.contains("async def cancel(self, body: models.Assignment) -> models.TaskStatus:"), "{generated}");
    suite("the generated tests after the schema change");
    let mut check = Command::new(&python);
    check
        .args(["-c", "from orchestrator.app import team_handlers; print(team_handlers().implemented())"])
        .current_dir(&dir)
        .env("PYTHONPATH", dir.join("src"))
        .env("PYTHONDONTWRITEBYTECODE", "1");
    assert_eq!(run(&mut check, "loading the team's handlers").trim(), "['status']");
    let out = qpf_in(&["drift"]);
    assert_eq!(out.status.code(), Some(0), "drift stays clean: {}", show(&out));
}

/// An anomaly with `action: agent` (the monitor's `metric_drift`) got a service of its own from
/// the map's handler template; over real HTTP, the monitor hands each raise to it, with the key,
/// and the team's `handle` (written in its `handlers.py`, as a team would) receives it. A handler
/// that is down leaves the raise logged, not lost in an error.
#[test]
fn an_agent_anomaly_is_handed_over_http_to_the_service_extracted_for_it() {
    let venv = venv();
    let project = extracted();
    let out = project.path().join("out");
    let handler = out.join("monitor-metric-drift-handler");
    let package = handler.join("src/monitor_metric_drift_handler");
    assert!(package.join("capabilities/handle.py").is_file(), "the handler agent has its `handle` capability");
    let team = r#"from . import models
from .capabilities import Handlers as GeneratedHandlers


class Handlers(GeneratedHandlers):
    async def handle(self, body: models.AnomalyEvent) -> models.Handling:
        return models.Handling(accepted=True, note=f"{body.agent}/{body.anomaly}/{body.severity}: {body.detail['value']}")
"#;
    std::fs::write(package.join("handlers.py"), team).expect("the team's handlers.py");
    let (handler_server, handler_port) = serve(&venv, &handler, "monitor_metric_drift_handler");
    let url = format!("http://127.0.0.1:{handler_port}");
    let env = [("MONITOR_ANOMALY_METRIC_DRIFT_AGENT_URL", url.as_str()), ("MONITOR_ANOMALY_AGENT_API_KEY", API_KEY)];
    let (_monitor, port) = serve_with(&venv, &out.join("monitor"), "monitor", &env);
    let (status, body) = http(port, "POST", "/anomalies/metric_drift", r#"{"detail": {"value": 7}}"#).expect("raise");
    assert_eq!(status, 200, "{body}");
    let outcome: serde_json::Value = serde_json::from_str(&body).expect("JSON");
    assert_eq!(
        outcome,
        serde_json::json!({"anomaly": "metric_drift", "severity": "warning", "action": "agent", "acted": true})
    );
    // The handler answered its capability for the monitor's request (counted by its own metrics).
    let (_, metrics) = http(handler_port, "GET", "/metrics", "").expect("/metrics");
    assert!(metrics.contains("route=\"/handle\"") && metrics.contains("status=\"200\""), "{metrics}");
    // The same call the monitor made, answered by the team's code.
    let (status, body) = http(
        handler_port,
        "POST",
        "/handle",
        r#"{"agent": "monitor", "anomaly": "metric_drift", "severity": "warning", "detail": {"value": 7}}"#,
    )
    .expect("handle");
    assert_eq!((status, body.as_str()), (200, r#"{"accepted":true,"note":"monitor/metric_drift/warning: 7"}"#));

    drop(handler_server);
    let (status, body) = http(port, "POST", "/anomalies/metric_drift", r#"{"detail": {"value": 8}}"#).expect("raise");
    assert_eq!(status, 200, "{body}");
    assert!(body.contains(r#""acted":false"#), "a handler that is down: the raise is only logged: {body}");
}

/// The generated backend tests against real servers on loopback (Redis and PostgreSQL from
/// Debian's packages, S3 from moto), for every example agent that declares the backend; and a
/// service whose PostgreSQL restarts recovers `/ready` without a restart of its own.
#[test]
fn generated_backend_tests_pass_against_real_servers_and_postgres_restarts_are_survived() {
    let venv = venv();
    let project = extracted();
    let redis = servers::Redis::start();
    let mut postgres = servers::Postgres::start();
    let moto = support::Moto::start();
    moto.create_bucket("memory");
    let env = [
        ("TEST_REDIS_URL", redis.url.clone()),
        ("TEST_POSTGRES_URL", postgres.url.clone()),
        ("TEST_S3_URL", "s3://memory/tests".to_owned()),
        ("AWS_ENDPOINT_URL_S3", moto.endpoint.clone()),
        ("AWS_ACCESS_KEY_ID", "test".to_owned()),
        ("AWS_SECRET_ACCESS_KEY", "test".to_owned()),
        ("AWS_DEFAULT_REGION", "us-east-1".to_owned()),
    ];
    // Every backend the example agents declare, each run at least once.
    let mut ran: Vec<String> = Vec::new();
    for agent in ["adapter", "auditor", "monitor", "orchestrator", "trainer"] {
        let dir = project.path().join("out").join(agent);
        // The whole suite, with the servers, under coverage: at least 90 % of the service's lines,
        // adapters included, except the pgvector adapter, which no server here can run (and the
        // PostgreSQL adapter it builds on, for an agent with no PostgreSQL store of its own).
        let memory = dir.join("src").join(agent).join("memory");
        let stores = std::fs::read_to_string(memory.join("__init__.py")).unwrap_or_default();
        let mut omit = Vec::new();
        if memory.join("vector_store.py").is_file() {
            omit.push("*/memory/vector_store.py");
            if !stores.contains(": \"postgres\",") {
                omit.push("*/memory/postgres_store.py");
            }
        }
        let rc = tempfile::NamedTempFile::new().expect("coverage config");
        std::fs::write(rc.path(), format!("[run]\nomit =\n    {}\n", omit.join("\n    "))).expect("coverage config");
        let cov = [format!("--cov={agent}"), format!("--cov-config={}", rc.path().display())];
        let mut pytest =
            pytest(&venv, &dir, &["-rs", "-v", &cov[0], "--cov-report=term", "--cov-fail-under=90", &cov[1]]);
        pytest.envs(env.iter().map(|(k, v)| (*k, v.as_str())));
        let report = run(&mut pytest, &format!("{agent}: the tests on real servers, with coverage"));
        assert!(report.contains("Required test coverage of 90% reached"), "{agent}: {report}");
        let total = report.lines().find(|l| l.starts_with("TOTAL")).unwrap_or_default();
        eprintln!("{agent}: coverage with real servers (omitted: {omit:?}): {total}");
        for line in report.lines().filter(|l| l.contains("::test_store_round_trips_on_its_real_backend[")) {
            let backend = line.split('[').nth(1).and_then(|s| s.split(']').next()).and_then(|p| p.rsplit('-').next());
            let backend = backend.unwrap_or_default().to_owned();
            if line.contains("PASSED") {
                ran.push(backend);
            } else {
                // Only pgvector may be missing (no Debian package for this release): said plainly.
                assert!(backend == "vector" && line.contains("SKIPPED"), "{agent}: {line}\n{report}");
            }
        }
        if dir.join("src").join(agent).join("memory/vector_store.py").is_file() {
            assert!(report.contains("TEST_PGVECTOR_URL is not set"), "{agent}: the pgvector skip says why\n{report}");
        }
    }
    ran.sort();
    ran.dedup();
    assert_eq!(ran, ["postgres", "redis", "s3"], "every declared backend ran on a real server");

    // The orchestrator's `episodic` store on PostgreSQL: ready, then the server restarts (every
    // connection cut), and `/ready` recovers without restarting the service.
    let dir = project.path().join("out/orchestrator");
    let (_server, port) =
        serve_with(&venv, &dir, "orchestrator", &[("ORCHESTRATOR_MEMORY_EPISODIC_URL", &postgres.url)]);
    let (status, body) = http(port, "GET", "/ready", "").expect("/ready");
    assert_eq!(status, 200, "/ready before the restart: {body}");
    postgres.restart();
    let start = Instant::now();
    loop {
        let (status, body) = http(port, "GET", "/ready", "").expect("/ready");
        if status == 200 {
            break;
        }
        assert!(start.elapsed() < Duration::from_secs(30), "/ready did not recover within 30 s: {status} {body}");
        std::thread::sleep(Duration::from_millis(200));
    }
}

/// What the generated Dockerfile's build stage does, without Docker, on this machine (CPython 3.11
/// on glibc x86_64, the image's platform): a fresh venv, `pip install --require-hashes -r
/// requirements.lock` (pip refuses any package without a matching hash, or missing from the lock),
/// the package itself without dependencies and without build isolation, `pip check`, and the app
/// imports. For the two agents that together use every extra.
#[test]
fn the_image_dependencies_install_from_the_hash_lock_alone() {
    let project = extracted();
    for agent in ["orchestrator", "trainer"] {
        let dir = project.path().join("out").join(agent);
        let lock = std::fs::read_to_string(dir.join("requirements.lock")).expect("requirements.lock");
        assert!(lock.lines().filter(|l| l.contains("==")).all(|l| l.ends_with(" \\")), "{agent}: one hash per pin");
        let dockerfile = std::fs::read_to_string(dir.join("Dockerfile")).expect("Dockerfile");
        assert!(dockerfile.contains("pip install --require-hashes -r requirements.lock"), "{dockerfile}");
        let venv = tempfile::tempdir().expect("temp dir");
        let mut create = Command::new("python3");
        create.args(["-m", "venv"]).arg(venv.path());
        run(&mut create, "python3 -m venv");
        let pip = venv.path().join("bin/pip");
        let quiet = ["--quiet", "--disable-pip-version-check"];
        let mut locked = Command::new(&pip);
        locked.arg("install").args(quiet).args(["--require-hashes", "-r", "requirements.lock"]).current_dir(&dir);
        run(&mut locked, &format!("{agent}: pip install --require-hashes -r requirements.lock"));
        let mut package = Command::new(&pip);
        package.arg("install").args(quiet).args(["--no-deps", "--no-build-isolation", "."]).current_dir(&dir);
        run(&mut package, &format!("{agent}: pip install --no-deps --no-build-isolation ."));
        let mut check = Command::new(&pip);
        check.arg("check").current_dir(&dir);
        run(&mut check, &format!("{agent}: pip check"));
        let mut import = Command::new(venv.path().join("bin/python"));
        import.args(["-c", &format!("import {agent}.app")]).current_dir(venv.path()).env_remove("PYTHONPATH");
        run(&mut import, &format!("{agent}: importing the installed app"));
    }
}
