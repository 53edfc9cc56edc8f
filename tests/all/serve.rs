//! `qpf serve`: the real server process, started on loopback by each test and driven over real
//! HTTP: tenants that never see each other, bad input answered with problem bodies, quotas, the
//! memory-reuse probe, SIGTERM drain and SIGHUP reload.

use std::io::BufRead;
use std::path::Path;
use std::process::{Child, Command, Stdio};

use serde_json::{Value, json};

use crate::support;

/// A tenant's bearer token in these tests, and the digest the config stores.
fn token(name: &str) -> String {
    format!("token-of-{name}")
}

fn digest_of_token(name: &str) -> String {
    format!("blake3:{}", blake3::hash(token(name).as_bytes()).to_hex())
}

fn tenant(id: &str, extra: &str) -> String {
    format!("  - id: {id}\n    tokens: [{}]\n{extra}", digest_of_token(id))
}

/// A running `qpf serve`, killed when dropped.
struct Server {
    child: Child,
    base: String,
    /// The folder of the config and the state.
    dir: std::path::PathBuf,
    _owned: Option<tempfile::TempDir>,
    agent: ureq::Agent,
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn config(tenants: &[String]) -> String {
    format!(
        "listen: 127.0.0.1:0\ndata: state\ngrace-ms: 5000\noperators: [{}]\ntenants:\n{}",
        digest_of_token("operator"),
        tenants.join("")
    )
}

impl Server {
    fn start(config_text: &str) -> Server {
        let dir = tempfile::tempdir().expect("temp dir");
        let mut server = Self::start_in(dir.path(), config_text);
        server._owned = Some(dir);
        server
    }

    fn start_in(dir: &Path, config_text: &str) -> Server {
        std::fs::write(dir.join("serve.yaml"), config_text).expect("config");
        let mut child = Command::new(support::qpf_bin())
            .args(["serve", "--config"])
            .arg(dir.join("serve.yaml"))
            .env("QPF_LOG", "warn")
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("qpf serve starts");
        // The first line, read on a thread so that a server that hangs fails the test in time.
        let stdout = child.stdout.take().expect("stdout");
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            let mut first = String::new();
            let _ = std::io::BufReader::new(stdout).read_line(&mut first);
            let _ = tx.send(first);
        });
        let first = rx.recv_timeout(std::time::Duration::from_secs(60)).unwrap_or_default();
        let Some(base) = first.trim().strip_prefix("listening on ").map(str::to_owned) else {
            let _ = child.kill();
            let status = child.wait().map(|s| s.to_string()).unwrap_or_default();
            panic!("qpf serve did not start within 60 s ({status}; its stderr is above); first line: {first:?}");
        };
        let agent = ureq::Agent::config_builder().http_status_as_error(false).build().into();
        Server { child, base, dir: dir.to_owned(), _owned: None, agent }
    }

    fn pid(&self) -> String {
        self.child.id().to_string()
    }

    fn signal(&self, name: &str) {
        let status = Command::new("kill").args([&format!("-{name}"), &self.pid()]).status().expect("kill runs");
        assert!(status.success());
    }

    /// (status, headers, body) of a request.
    fn call(&self, method: &str, path: &str, who: Option<&str>, body: Option<(&str, Vec<u8>)>) -> Reply {
        let url = format!("{}{path}", self.base);
        let mut req = ureq::http::Request::builder().method(method).uri(&url);
        if let Some(who) = who {
            req = req.header("Authorization", format!("Bearer {}", token(who)));
        }
        let response = match body {
            Some((kind, bytes)) => {
                let req = req.header("Content-Type", kind).body(bytes).expect("request");
                self.agent.run(req)
            }
            None => self.agent.run(req.body(()).expect("request")),
        };
        let mut response = response.unwrap_or_else(|e| panic!("{method} {path}: {e}"));
        let status = response.status().as_u16();
        let headers = response.headers().clone();
        let text = response.body_mut().with_config().limit(64 << 20).read_to_string().unwrap_or_default();
        Reply { status, headers, text }
    }

    fn upload(&self, who: &str, wasm: &[u8]) -> Reply {
        self.call("POST", "/v1/plugins", Some(who), Some(("application/wasm", wasm.to_vec())))
    }

    fn invoke(&self, who: &str, body: &Value) -> Reply {
        self.call("POST", "/v1/invoke", Some(who), Some(("application/json", body.to_string().into_bytes())))
    }
}

#[derive(Debug)]
struct Reply {
    status: u16,
    headers: ureq::http::HeaderMap,
    text: String,
}

impl Reply {
    fn json(&self) -> Value {
        serde_json::from_str(&self.text).unwrap_or_else(|e| panic!("not JSON ({e}): {}", self.text))
    }

    /// A problem body of the expected status and type.
    fn problem(&self, status: u16, slug: &str) -> Value {
        assert_eq!(self.status, status, "{}", self.text);
        assert_eq!(
            self.headers.get("content-type").and_then(|v| v.to_str().ok()),
            Some("application/problem+json"),
            "{self:?}"
        );
        let v = self.json();
        assert_eq!(v["type"], format!("https://qpf.dev/problems/{slug}"), "{v}");
        assert_eq!(v["status"], status, "{v}");
        v
    }
}

fn hostile() -> (Vec<u8>, String) {
    let bytes = std::fs::read(support::wasm("qpf_hostile")).expect("hostile guest");
    let digest = format!("blake3:{}", blake3::hash(&bytes).to_hex());
    (bytes, digest)
}

fn echo(plugin: &str, input: Value) -> Value {
    json!({"plugin": plugin, "input": input, "config": {"mode": "echo"}, "schema": {"kind": "Probe", "name": "p", "version": "1.0.0"}})
}

fn file_text(reply: &Value, index: usize) -> String {
    use base64::Engine as _;
    let b64 = reply["files"][index]["contents_base64"].as_str().expect("contents");
    String::from_utf8(base64::engine::general_purpose::STANDARD.decode(b64).expect("base64")).expect("utf-8")
}

#[test]
fn tenants_never_see_each_others_plugins_caches_audit_or_outputs_under_load() {
    let server = Server::start(&config(&[tenant("team-a", ""), tenant("team-b", "")]));
    let (wasm, digest) = hostile();
    let up = server.upload("team-a", &wasm);
    assert_eq!(up.status, 201, "{}", up.text);
    assert_eq!(up.json()["digest"], digest.as_str());
    assert_eq!(up.json()["info"]["name"], "hostile");

    // B cannot see or run A's upload: the answers equal those for a digest nobody uploaded.
    assert_eq!(server.call("GET", "/v1/plugins", Some("team-b"), None).json(), json!({"plugins": []}));
    let listed = server.call("GET", "/v1/plugins", Some("team-a"), None).json();
    assert_eq!(listed["plugins"][0]["digest"], digest.as_str(), "{listed}");
    let theirs = server.invoke("team-b", &echo(&digest, json!({"x": 1}))).problem(404, "not-found");
    let nobody = format!("blake3:{}", "0".repeat(64));
    let missing = server.invoke("team-b", &echo(&nobody, json!({"x": 1}))).problem(404, "not-found");
    assert_eq!(
        theirs["detail"].as_str().map(|d| d.replace(&digest, "D")),
        missing["detail"].as_str().map(|d| d.replace(&nobody, "D"))
    );

    // A: a miss, then a hit.
    let first = server.invoke("team-a", &echo(&digest, json!({"who": "a"})));
    assert_eq!(first.status, 200, "{}", first.text);
    assert_eq!(first.json()["cache"], "miss");
    assert_eq!(server.invoke("team-a", &echo(&digest, json!({"who": "a"}))).json()["cache"], "hit");
    // B uploads the same component and asks the same: its own cache, so a miss.
    assert_eq!(server.upload("team-b", &wasm).status, 201);
    let b = server.invoke("team-b", &echo(&digest, json!({"who": "a"})));
    assert_eq!(b.json()["cache"], "miss", "no cross-tenant hit: {}", b.text);

    // Concurrent load from both: every answer is the caller's own.
    std::thread::scope(|s| {
        for t in 0..8 {
            let (server, digest) = (&server, &digest);
            s.spawn(move || {
                let who = if t % 2 == 0 { "team-a" } else { "team-b" };
                for i in 0..15 {
                    let input = json!({"who": who, "i": i % 5, "t": t});
                    let reply = server.invoke(who, &echo(digest, input.clone()));
                    assert_eq!(reply.status, 200, "{}", reply.text);
                    let got: Value = serde_json::from_str(&file_text(&reply.json(), 0)).expect("echo");
                    assert_eq!(got, input, "an answer of another request");
                }
            });
        }
    });

    // Audit logs: each tenant's own records only, and keys differ between tenants.
    let audit_a = server.call("GET", "/v1/audit?since=0", Some("team-a"), None).json();
    let audit_b = server.call("GET", "/v1/audit?since=0", Some("team-b"), None).json();
    let records = |v: &Value| v["records"].as_array().cloned().unwrap_or_default();
    assert_eq!(records(&audit_a).len(), 2 + 4 * 15, "{audit_a}");
    assert_eq!(records(&audit_b).len(), 1 + 4 * 15);
    assert!(records(&audit_b).iter().all(|r| r["schema"] == "Probe/p@1.0.0"));
    assert_ne!(records(&audit_a)[0]["key"], records(&audit_b)[0]["key"], "keys are salted per tenant");
    let page = server.call("GET", "/v1/audit?since=60&limit=10", Some("team-a"), None).json();
    assert_eq!((records(&page).len(), page["next"].as_u64()), (2, Some(62)));
    assert!(server.dir.join("state/tenants/team-a/audit.jsonl").is_file());
}

#[test]
fn bad_requests_are_problem_bodies_and_nothing_is_stored() {
    let tiny = "    quotas: { requests-per-minute: 1000, max-request-bytes: 4096, max-stored-bytes: 1000 }\n";
    let server = Server::start(&config(&[tenant("team-a", ""), tenant("tiny", tiny)]));
    let (wasm, digest) = hostile();

    let none = server.call("GET", "/v1/plugins", None, None);
    none.problem(401, "unauthorized");
    assert_eq!(none.headers.get("www-authenticate").and_then(|v| v.to_str().ok()), Some("Bearer"));
    server.call("GET", "/v1/plugins", Some("stranger"), None).problem(401, "unauthorized");
    assert_eq!(server.call("GET", "/healthz", None, None).status, 200);
    assert_eq!(server.call("GET", "/readyz", None, None).status, 200);

    let not_wasm = server.upload("team-a", b"\0asm but not really a component".to_vec().as_slice());
    let v = not_wasm.problem(400, "invalid-plugin");
    assert!(v["detail"].as_str().is_some_and(|d| d.contains("not a valid WebAssembly component")), "{v}");
    assert!(!v["detail"].as_str().unwrap_or("").contains(&server.dir.display().to_string()), "no server paths: {v}");
    server
        .call("POST", "/v1/plugins", Some("team-a"), Some(("text/plain", wasm.clone())))
        .problem(415, "unsupported-media-type");
    // Under `max-request-bytes` (4096) but over `max-stored-bytes` (1000): refused before it is
    // even validated.
    let v = server.upload("tiny", &[0u8; 3000]).problem(413, "too-large");
    assert!(v["detail"].as_str().is_some_and(|d| d.contains("max-stored-bytes")), "{v}");
    server
        .call("POST", "/v1/invoke", Some("tiny"), Some(("application/json", vec![b' '; 5000])))
        .problem(413, "too-large");
    // Without a Content-Length (chunked), the cap holds while the body is read.
    let addr = server.base.trim_start_matches("http://");
    let mut raw = std::net::TcpStream::connect(addr).expect("connect");
    let head = format!(
        "POST /v1/invoke HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {}\r\nContent-Type: application/json\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\n",
        token("tiny")
    );
    std::io::Write::write_all(&mut raw, head.as_bytes()).expect("head");
    for _ in 0..5 {
        std::io::Write::write_all(&mut raw, format!("400\r\n{}\r\n", " ".repeat(1024)).as_bytes()).expect("chunk");
    }
    let _ = std::io::Write::write_all(&mut raw, b"0\r\n\r\n");
    raw.set_read_timeout(Some(std::time::Duration::from_secs(10))).expect("timeout");
    let mut answer = String::new();
    let _ = std::io::Read::read_to_string(&mut raw, &mut answer);
    assert!(answer.starts_with("HTTP/1.1 413"), "{answer}");
    assert!(answer.contains("max-request-bytes"), "{answer}");
    server
        .call("POST", "/v1/invoke", Some("team-a"), Some(("application/json", b"{not json".to_vec())))
        .problem(400, "bad-request");
    let mut unknown = echo(&digest, json!({}));
    unknown["surprise"] = json!(1);
    let v = server.invoke("team-a", &unknown).problem(400, "bad-request");
    assert!(v["detail"].as_str().is_some_and(|d| d.contains("surprise")), "{v}");
    let mut bad_entry = echo(&digest, json!({}));
    bad_entry["entry"] = json!("a\u{1b}[2J");
    server.invoke("team-a", &bad_entry).problem(400, "bad-request");
    server.invoke("team-a", &echo("blake3:nope", json!({}))).problem(404, "not-found");
    server.call("GET", "/v1/nothing-here", Some("team-a"), None).problem(404, "not-found");
    server.call("GET", "/v1/audit?since=x", Some("team-a"), None).problem(400, "bad-request");

    // A plugin failure is 422 with its kind.
    assert_eq!(server.upload("team-a", &wasm).status, 201);
    let mut failing = echo(&digest, json!({}));
    failing["config"] = json!({"mode": "loop"});
    let v = server.invoke("team-a", &failing).problem(422, "plugin-failed");
    assert_eq!(v["kind"], "sandbox", "{v}");
    // Nothing of the refused uploads was kept.
    let stored: Vec<_> =
        std::fs::read_dir(server.dir.join("state/tenants/team-a/plugins")).expect("store").flatten().collect();
    assert_eq!(stored.len(), 1, "only the valid upload: {stored:?}");
    assert!(!server.dir.join("state/tenants/tiny/plugins").read_dir().is_ok_and(|mut d| d.next().is_some()));

    // /metrics: operators only; labelled by tenant.
    server.call("GET", "/metrics", Some("team-a"), None).problem(401, "unauthorized");
    let metrics = server.call("GET", "/metrics", Some("operator"), None);
    assert_eq!(metrics.status, 200);
    assert!(
        metrics.text.contains("qpf_requests_total{tenant=\"team-a\",route=\"invoke\",status=\"422\"} 1"),
        "{}",
        metrics.text
    );
    assert!(metrics.text.contains("qpf_invocations_total{tenant=\"team-a\",outcome=\"failed\"} 1"), "{}", metrics.text);
    let openapi = server.call("GET", "/v1/openapi.json", Some("team-a"), None);
    assert_eq!(openapi.json()["openapi"], "3.1.0");
    let committed =
        std::fs::read_to_string(support::workspace_root().join("docs/openapi.json")).expect("docs/openapi.json");
    assert_eq!(openapi.text, committed, "the served document is the committed one");
    for route in ["/healthz", "/readyz", "/metrics", "/v1/openapi.json", "/v1/plugins", "/v1/invoke", "/v1/audit"] {
        assert!(openapi.json()["paths"][route].is_object(), "{route} is documented");
    }
}

#[test]
fn quotas_answer_429_with_retry_after() {
    let slow = "    quotas: { requests-per-minute: 3 }\n";
    let server = Server::start(&config(&[tenant("slow", slow), tenant("other", "")]));
    for _ in 0..3 {
        assert_eq!(server.call("GET", "/v1/plugins", Some("slow"), None).status, 200);
    }
    let over = server.call("GET", "/v1/plugins", Some("slow"), None);
    over.problem(429, "over-quota");
    let retry: u64 = over
        .headers
        .get("retry-after")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse().ok())
        .expect("Retry-After");
    assert!((1..=60).contains(&retry), "{retry}");
    assert_eq!(server.call("GET", "/v1/plugins", Some("other"), None).status, 200, "another tenant is not affected");
}

#[test]
fn a_plugin_never_reads_what_another_tenants_plugin_left_in_memory() {
    let server = Server::start(&config(&[tenant("team-a", ""), tenant("team-b", "")]));
    let (wasm, digest) = hostile();
    assert_eq!(server.upload("team-a", &wasm).status, 201);
    assert_eq!(server.upload("team-b", &wasm).status, 201);
    let call = |who: &str, mode: &str, secret: &str, control: usize| {
        let body = json!({"plugin": digest, "input": {"n": control}, "config": {"mode": mode, "path": secret, "bytes": control},
            "schema": {"kind": "Probe", "name": "p", "version": "1.0.0"}});
        let reply = server.invoke(who, &body);
        assert_eq!(reply.status, 200, "{}", reply.text);
        file_text(&reply.json(), 0)
    };
    let secret = "tenant-a-secret-4f1c9a";
    // The control: a scan finds what its own invocation planted.
    assert_eq!(call("team-b", "scan", secret, 1), "found\n");
    for round in 0..4 {
        assert_eq!(call("team-a", "plant", secret, round + 10), "planted\n");
        assert_eq!(call("team-b", "scan", secret, round + 20), "clean\n", "round {round}");
        assert_eq!(call("team-a", "scan", secret, round + 30), "clean\n", "round {round}: not even the same tenant");
    }
}

#[test]
fn sigterm_drains_in_flight_requests_and_exits_0() {
    let mut server = Server::start(&config(&[tenant("team-a", "")]));
    let (wasm, digest) = hostile();
    assert_eq!(server.upload("team-a", &wasm).status, 201);
    // A slow request in flight when SIGTERM arrives still gets its answer.
    let mut slow = echo(&digest, json!({}));
    slow["config"] = json!({"mode": "noisy"});
    let reply = std::thread::scope(|s| {
        let handle = s.spawn(|| server.invoke("team-a", &slow));
        std::thread::sleep(std::time::Duration::from_millis(150));
        server.signal("TERM");
        handle.join().expect("request thread")
    });
    assert_eq!(reply.status, 200, "{}", reply.text);
    let status = server.child.wait().expect("exit status");
    assert_eq!(status.code(), Some(0));
}

#[test]
fn sighup_reloads_tenants_without_a_restart() {
    let server = Server::start(&config(&[tenant("team-a", "")]));
    server.call("GET", "/v1/plugins", Some("team-c"), None).problem(401, "unauthorized");
    std::fs::write(server.dir.join("serve.yaml"), config(&[tenant("team-a", ""), tenant("team-c", "")]))
        .expect("rewrite");
    server.signal("HUP");
    let mut status = 0;
    for _ in 0..100 {
        status = server.call("GET", "/v1/plugins", Some("team-c"), None).status;
        if status == 200 {
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    assert_eq!(status, 200, "team-c is served after SIGHUP");
    // A broken config is refused and the running one kept.
    std::fs::write(server.dir.join("serve.yaml"), "listen: [").expect("rewrite");
    server.signal("HUP");
    std::thread::sleep(std::time::Duration::from_millis(300));
    assert_eq!(server.call("GET", "/v1/plugins", Some("team-a"), None).status, 200);
}

#[test]
fn a_restart_keeps_plugins_caches_and_audit() {
    let dir = tempfile::tempdir().expect("temp dir");
    let text = config(&[tenant("team-a", "")]);
    let (wasm, digest) = hostile();
    let mut first = Server::start_in(dir.path(), &text);
    assert_eq!(first.upload("team-a", &wasm).status, 201);
    assert_eq!(first.invoke("team-a", &echo(&digest, json!({"k": 1}))).json()["cache"], "miss");
    // kill -9: no drain, no goodbye.
    first.signal("KILL");
    let _ = first.child.wait();
    let second = Server::start_in(dir.path(), &text);
    assert_eq!(second.invoke("team-a", &echo(&digest, json!({"k": 1}))).json()["cache"], "hit");
    let audit = second.call("GET", "/v1/audit", Some("team-a"), None).json();
    assert_eq!(audit["records"].as_array().map(Vec::len), Some(2), "{audit}");
    assert!(dir.path().join("state/secret").is_file());
}

/// A gzip-compressed tar of every file under `dir` (relative paths), plus `extra` entries.
fn bundle(dir: &Path, extra: &[(&str, &[u8])]) -> Vec<u8> {
    let mut builder = tar::Builder::new(flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast()));
    for file in support::walk(dir) {
        let rel = file.strip_prefix(dir).expect("under dir").to_string_lossy().into_owned();
        let bytes = std::fs::read(&file).expect("read");
        let mut h = tar::Header::new_gnu();
        h.set_size(bytes.len() as u64);
        h.set_mode(0o644);
        builder.append_data(&mut h, &rel, bytes.as_slice()).expect("append");
    }
    for (path, bytes) in extra {
        let mut h = tar::Header::new_gnu();
        h.set_size(bytes.len() as u64);
        h.set_mode(0o644);
        h.as_old_mut().name[..path.len()].copy_from_slice(path.as_bytes());
        h.set_cksum();
        builder.append(&h, *bytes).expect("append raw");
    }
    builder.into_inner().expect("tar").finish().expect("gzip")
}

#[test]
fn a_project_bundle_runs_like_qpf_extract_and_its_report_is_kept() {
    let server = Server::start(&config(&[tenant("team-a", ""), tenant("team-b", "")]));
    let project = support::example_project();
    let gz = bundle(project.path(), &[]);

    // Its plugins are not uploaded yet: refused by name.
    let v = server
        .call("POST", "/v1/extract", Some("team-a"), Some(("application/gzip", gz.clone())))
        .problem(404, "not-found");
    assert!(v["detail"].as_str().is_some_and(|d| d.contains("upload it first")), "{v}");
    for name in ["qpf_py_models", "qpf_md_docs"] {
        let wasm = std::fs::read(support::wasm(name)).expect("plugin");
        assert_eq!(server.upload("team-a", &wasm).status, 201);
    }
    let reply = server.call("POST", "/v1/extract", Some("team-a"), Some(("application/gzip", gz.clone())));
    assert_eq!(reply.status, 200, "{}", reply.text);
    let v = reply.json();
    assert_eq!(v["report"]["summary"]["failed"], 0, "{}", v["report"]);
    assert_eq!(v["report"]["output"], "out");

    // The same files as a local `qpf extract` of the same project.
    let out = support::qpf(&["extract", "--project", project.path().to_str().expect("utf-8")]);
    assert!(out.status.success(), "{}", support::show(&out));
    let local = support::tree(&project.path().join("out"));
    let served: Vec<(std::path::PathBuf, Vec<u8>)> = v["files"]
        .as_array()
        .expect("files")
        .iter()
        .enumerate()
        .map(|(i, f)| (std::path::PathBuf::from(f["path"].as_str().expect("path")), file_text(&v, i).into_bytes()))
        .collect();
    assert_eq!(served.len(), local.len());
    assert_eq!(served, local, "byte-identical to the CLI's outputs");

    // The report is kept for this tenant only; nothing else of the run is.
    let id = v["run"].as_str().expect("run id");
    let kept = server.call("GET", &format!("/v1/runs/{id}"), Some("team-a"), None);
    assert_eq!(kept.json()["summary"], v["report"]["summary"]);
    let theirs = server.call("GET", &format!("/v1/runs/{id}"), Some("team-b"), None).problem(404, "not-found");
    let nobody =
        server.call("GET", &format!("/v1/runs/{}", "0".repeat(32)), Some("team-b"), None).problem(404, "not-found");
    assert_eq!(theirs["title"], nobody["title"]);
    let run_dir = server.dir.join("state/tenants/team-a/runs").join(id);
    assert_eq!(std::fs::read_dir(&run_dir).expect("run folder").count(), 1, "only report.json stays");

    // A second run of the same bundle hits the tenant's cache; as a tar it holds the same files.
    let again = server.call("POST", "/v1/extract", Some("team-a"), Some(("application/gzip", gz.clone()))).json();
    assert_eq!(again["report"]["summary"]["misses"], 0, "{}", again["report"]["summary"]);
    let url = format!("{}/v1/extract", server.base);
    let req = ureq::http::Request::post(&url)
        .header("Authorization", format!("Bearer {}", token("team-a")))
        .header("Content-Type", "application/gzip")
        .header("Accept", "application/gzip")
        .body(gz)
        .expect("request");
    let mut tar_reply = server.agent.run(req).expect("tar reply");
    assert_eq!(tar_reply.status(), 200);
    let bytes = tar_reply.body_mut().with_config().limit(64 << 20).read_to_vec().expect("body");
    let mut archive = tar::Archive::new(flate2::read::GzDecoder::new(bytes.as_slice()));
    let names: Vec<String> = archive
        .entries()
        .expect("tar")
        .map(|e| e.expect("entry").path().expect("path").to_string_lossy().into_owned())
        .collect();
    assert_eq!(names.len(), local.len() + 1, "{names:?}");
    assert!(names.contains(&"report.json".to_owned()));
}

#[test]
fn a_bundle_whose_plugins_are_oci_references_runs_from_the_tenants_store_and_never_pulls() {
    let server = Server::start(&config(&[tenant("team-a", "")]));
    let project = support::example_project();
    // Every plugin named by a registry reference that nothing listens on: a pull would fail.
    let qpf_yaml = project.path().join("qpf.yaml");
    let text = std::fs::read_to_string(&qpf_yaml).expect("qpf.yaml");
    let text: String = text
        .lines()
        .map(|l| if l.trim_start().starts_with("path:") { "    oci: 127.0.0.1:1/never/pulled:1" } else { l })
        .collect::<Vec<_>>()
        .join("\n");
    std::fs::write(&qpf_yaml, text).expect("qpf.yaml");
    let gz = bundle(project.path(), &[]);
    let v = server
        .call("POST", "/v1/extract", Some("team-a"), Some(("application/gzip", gz.clone())))
        .problem(404, "not-found");
    assert!(v["detail"].as_str().is_some_and(|d| d.contains("upload it first")), "{v}");
    for name in ["qpf_py_models", "qpf_md_docs"] {
        let wasm = std::fs::read(support::wasm(name)).expect("plugin");
        assert_eq!(server.upload("team-a", &wasm).status, 201);
    }
    let reply = server.call("POST", "/v1/extract", Some("team-a"), Some(("application/gzip", gz)));
    assert_eq!(reply.status, 200, "{}", reply.text);
    assert_eq!(reply.json()["report"]["summary"]["failed"], 0, "{}", reply.text);
}

#[test]
fn hostile_bundles_are_refused_and_nothing_leaves_the_tenants_storage() {
    let server = Server::start(&config(&[tenant("team-a", "")]));
    let project = support::example_project();
    for (extra, slug) in [
        (vec![("../escape.txt", b"x".as_slice())], "bad-bundle"),
        (vec![("/tmp/qpf-escape.txt", b"x".as_slice())], "bad-bundle"),
        (vec![("qpf.yaml", b"version: 1\n".as_slice())], "bad-bundle"),
    ] {
        let gz = bundle(project.path(), &extra);
        server.call("POST", "/v1/extract", Some("team-a"), Some(("application/gzip", gz))).problem(400, slug);
    }
    assert!(!server.dir.join("escape.txt").exists() && !server.dir.join("state/escape.txt").exists());
    assert!(!Path::new("/tmp/qpf-escape.txt").exists());
    server
        .call("POST", "/v1/extract", Some("team-a"), Some(("application/gzip", b"not gzip".to_vec())))
        .problem(400, "bad-bundle");
    server
        .call("POST", "/v1/extract", Some("team-a"), Some(("application/x-tar", vec![0; 10])))
        .problem(415, "unsupported-media-type");
    // A malformed qpf.yaml: the problem names the file, line and column.
    let broken = tempfile::tempdir().expect("temp dir");
    std::fs::write(broken.path().join("qpf.yaml"), "version: 1\nschemas: [\n").expect("write");
    let v = server
        .call("POST", "/v1/extract", Some("team-a"), Some(("application/gzip", bundle(broken.path(), &[]))))
        .problem(400, "invalid-project");
    assert!(v["detail"].as_str().is_some_and(|d| d.contains("qpf.yaml:")), "{v}");
    // Registry folders are folders of the host: a tenant's project may not name any.
    let reaching = support::example_project();
    let qpf_yaml = reaching.path().join("qpf.yaml");
    let text = std::fs::read_to_string(&qpf_yaml).expect("qpf.yaml") + "registries: [/etc]\n";
    std::fs::write(&qpf_yaml, text).expect("qpf.yaml");
    let v = server
        .call("POST", "/v1/extract", Some("team-a"), Some(("application/gzip", bundle(reaching.path(), &[]))))
        .problem(400, "invalid-project");
    assert!(v["detail"].as_str().is_some_and(|d| d.contains("`registries` names folders of this machine")), "{v}");
    // Failed runs leave nothing behind.
    let runs = server.dir.join("state/tenants/team-a/runs");
    assert_eq!(std::fs::read_dir(&runs).map(|d| d.count()).unwrap_or(0), 0);
}

#[test]
fn a_client_that_sends_its_headers_too_slowly_is_disconnected() {
    let text = config(&[tenant("team-a", "")]).replace("grace-ms: 5000\n", "grace-ms: 5000\nheader-timeout-ms: 300\n");
    let server = Server::start(&text);
    let addr = server.base.trim_start_matches("http://");
    let mut slow = std::net::TcpStream::connect(addr).expect("connect");
    std::io::Write::write_all(&mut slow, b"GET /healthz HTTP/1.1\r\nHost: x\r\n").expect("partial headers");
    slow.set_read_timeout(Some(std::time::Duration::from_secs(10))).expect("timeout");
    let started = std::time::Instant::now();
    let mut buf = Vec::new();
    let read = std::io::Read::read_to_end(&mut slow, &mut buf);
    assert!(read.is_ok(), "the server closed the connection: {read:?}");
    assert!(started.elapsed() < std::time::Duration::from_secs(5), "closed by the header deadline");
    // Meanwhile others are served.
    assert_eq!(server.call("GET", "/healthz", None, None).status, 200);
}

#[test]
fn kill_9_under_load_then_restart_leaves_stores_caches_and_audit_consistent() {
    let dir = tempfile::tempdir().expect("temp dir");
    let text = config(&[tenant("team-a", ""), tenant("team-b", "")]);
    let (wasm, digest) = hostile();
    let mut first = Server::start_in(dir.path(), &text);
    assert_eq!(first.upload("team-a", &wasm).status, 201);
    assert_eq!(first.upload("team-b", &wasm).status, 201);
    // Load from both tenants, killed in the middle of it; each thread notes the inputs answered.
    let stop = std::sync::atomic::AtomicBool::new(false);
    let answered = std::sync::Mutex::new(Vec::new());
    std::thread::scope(|s| {
        for t in 0..6 {
            let (first, digest, stop, answered) = (&first, &digest, &stop, &answered);
            s.spawn(move || {
                let who = if t % 2 == 0 { "team-a" } else { "team-b" };
                let mut i = 0;
                while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                    let url = format!("{}/v1/invoke", first.base);
                    let body = echo(digest, json!({"t": t, "i": i})).to_string();
                    let req = ureq::http::Request::post(&url)
                        .header("Authorization", format!("Bearer {}", token(who)))
                        .body(body.into_bytes())
                        .expect("request");
                    // Requests cut by the kill fail; that is the point.
                    if first.agent.run(req).is_ok_and(|r| r.status() == 200) {
                        answered.lock().unwrap().push((t, i));
                    }
                    i += 1;
                }
            });
        }
        // Kill once both tenants have had answers (a loaded machine may take a while), in the
        // middle of further load.
        let started = std::time::Instant::now();
        while started.elapsed() < std::time::Duration::from_secs(60) {
            let seen = answered.lock().unwrap().iter().fold([false; 2], |mut seen, (t, _)| {
                seen[t % 2] = true;
                seen
            });
            if seen == [true, true] {
                break;
            }
            std::thread::sleep(std::time::Duration::from_millis(20));
        }
        std::thread::sleep(std::time::Duration::from_millis(200));
        first.signal("KILL");
        stop.store(true, std::sync::atomic::Ordering::Relaxed);
    });
    let _ = first.child.wait();

    let second = Server::start_in(dir.path(), &text);
    for who in ["team-a", "team-b"] {
        let listed = second.call("GET", "/v1/plugins", Some(who), None).json();
        assert_eq!(listed["plugins"][0]["digest"], digest.as_str(), "{who}: the store survived");
        let log = std::fs::read_to_string(dir.path().join(format!("state/tenants/{who}/audit.jsonl"))).expect("audit");
        assert!(log.is_empty() || log.ends_with('\n'), "{who}: whole records only");
        assert!(log.lines().all(|l| serde_json::from_str::<Value>(l).is_ok()), "{who}: every record parses");
        // Every record, page by page (a page holds at most 1000).
        let mut records = 0;
        loop {
            let page = second.call("GET", &format!("/v1/audit?since={records}"), Some(who), None).json();
            let n = page["records"].as_array().map_or(0, Vec::len);
            if n == 0 {
                break;
            }
            records += n;
        }
        assert_eq!(records, log.lines().count(), "{who}");
        assert!(records > 0, "{who}: the load ran");
        // The cache survived and every entry verifies: an invocation is stored before it is
        // answered, so each input answered before the kill is a hit, with the right file.
        let parity = if who == "team-a" { 0 } else { 1 };
        let inputs: Vec<(usize, usize)> =
            answered.lock().unwrap().iter().copied().filter(|(t, _)| t % 2 == parity).collect();
        assert!(!inputs.is_empty(), "{who}: some of the load was answered before the kill");
        for &(t, i) in inputs.iter().take(5) {
            let input = json!({"t": t, "i": i});
            let reply = second.invoke(who, &echo(&digest, input.clone()));
            assert_eq!(reply.status, 200, "{}", reply.text);
            assert_eq!(reply.json()["cache"], "hit", "{who}: input {i} was answered before the kill");
            assert_eq!(serde_json::from_str::<Value>(&file_text(&reply.json(), 0)).expect("echo"), input);
        }
    }
}
