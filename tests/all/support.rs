//! Shared helpers: where the built artifacts are, temporary projects, running `qpf`.

use std::path::{Path, PathBuf};
use std::process::Output;
use std::sync::OnceLock;

/// The cargo target folder this test binary was built into (`<target>/<profile>/deps/all-*`), with
/// the guests built into it: the first call in a process runs `./dev guests` (the wasm32-wasip2
/// target, the plugins and the hostile guests, built reproducibly as `./dev test` builds them), so
/// that `cargo test --workspace` works on its own. Cargo makes the build a no-op when it is fresh.
pub fn target_dir() -> PathBuf {
    static BUILT: OnceLock<PathBuf> = OnceLock::new();
    BUILT
        .get_or_init(|| {
            let exe = std::env::current_exe().expect("test executable path");
            let target = exe.ancestors().nth(3).expect("test binary lives in <target>/<profile>/deps").to_owned();
            dev(&["guests"], &target);
            target
        })
        .clone()
}

/// The Python and JavaScript plugin toolchains (componentize-py, jco) under `target/qpf-tools`,
/// installed by `./dev tools` on the first call in a process (reinstalled only when their pins change).
pub fn tools() {
    static INSTALLED: OnceLock<()> = OnceLock::new();
    INSTALLED.get_or_init(|| dev(&["tools"], &target_dir()));
}

/// Runs `./dev ARGS` with cargo's target folder set to `target`.
fn dev(args: &[&str], target: &Path) {
    let out = std::process::Command::new("bash")
        .arg(workspace_root().join("dev"))
        .args(args)
        .env("CARGO_TARGET_DIR", target)
        .output()
        .expect("bash runs ./dev");
    assert!(out.status.success(), "./dev {} failed:\n{}", args.join(" "), String::from_utf8_lossy(&out.stderr));
}

/// The workspace root.
pub fn workspace_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).ancestors().nth(2).expect("host/cli is in the workspace").to_owned()
}

/// A built wasm component (`qpf_hostile`, `qpf_py_models`, ...).
pub fn wasm(name: &str) -> PathBuf {
    let path = target_dir().join("wasm32-wasip2/guest").join(format!("{name}.wasm"));
    assert!(path.is_file(), "{} is missing after `./dev guests`", path.display());
    path
}

/// The `qpf` binary of this package, which cargo builds before it runs these tests.
pub fn qpf_bin() -> PathBuf {
    PathBuf::from(env!("CARGO_BIN_EXE_qpf"))
}

/// `blake3:<hex>` of a file.
pub fn digest(path: &Path) -> String {
    format!("blake3:{}", blake3::hash(&std::fs::read(path).expect("readable file")).to_hex())
}

/// Runs `qpf` with arguments.
pub fn qpf(args: &[&str]) -> Output {
    qpf_env(args, &[])
}

/// Runs `qpf` with arguments and environment variables (e.g. a private `QPF_COMPILED_CACHE`, for
/// a test that counts or clears compiled plugins: the default is the user's cache, shared by
/// every project and every test).
pub fn qpf_env(args: &[&str], env: &[(&str, &Path)]) -> Output {
    let mut command = std::process::Command::new(qpf_bin());
    // Without the run snapshot, whose replays depend on how long ago files were written (2 s):
    // a test's second run loads the project however fast it follows the first. The snapshot's
    // own tests (tests/all/snapshot.rs) turn it on.
    command.args(args).env("QPF_LOG", "warn").env("QPF_RUN_SNAPSHOT", "off");
    for (name, value) in env {
        command.env(name, value);
    }
    command.output().expect("qpf runs")
}

/// The exit code, stdout and stderr of a run, for assertion messages.
pub fn show(out: &Output) -> String {
    format!(
        "exit {:?}\n--- stdout\n{}\n--- stderr\n{}",
        out.status.code(),
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

/// A copy of the example project (`schemas/`) in a temporary folder, with plugin paths made absolute
/// and the two-entry map of the engine tests (`tests/fixtures/engine-map.yaml`).
pub fn example_project() -> tempfile::TempDir {
    let tmp = validated_example_project();
    // Without the kind's validator, so that these tests count the map's invocations only
    // (tests/all/validate.rs runs the validator on this project).
    let qpf_yaml = tmp.path().join("qpf.yaml");
    let text = std::fs::read_to_string(&qpf_yaml).expect("qpf.yaml");
    let stripped = text.replace("    validators:\n      - { plugin: agent-validator, input: /spec }\n", "");
    assert_ne!(stripped, text, "schemas/qpf.yaml names the Agent validator");
    std::fs::write(&qpf_yaml, stripped).expect("write qpf.yaml");
    tmp
}

/// [`example_project`] with the `Agent` kind's validator, as `schemas/qpf.yaml` declares it.
pub fn validated_example_project() -> tempfile::TempDir {
    let tmp = agents_project();
    std::fs::copy(workspace_root().join("tests/fixtures/engine-map.yaml"), tmp.path().join("extractors.yaml"))
        .expect("engine map");
    tmp
}

/// A copy of `schemas/` with its full extractor map: every agent becomes a FastAPI service.
pub fn agents_project() -> tempfile::TempDir {
    let tmp = tempfile::tempdir().expect("temp dir");
    let src = workspace_root().join("schemas");
    copy_tree(&src, tmp.path(), &|rel| {
        rel.starts_with("out") || rel.starts_with(".qpf") || rel == Path::new("qpf.lock")
    });
    let qpf_yaml = tmp.path().join("qpf.yaml");
    let text = std::fs::read_to_string(&qpf_yaml).expect("qpf.yaml");
    let target = target_dir();
    let text = text
        .replace("../target/", &format!("{}/", target.display()))
        .replace("../plugins/", &format!("{}/", workspace_root().join("plugins").display()));
    std::fs::write(&qpf_yaml, text).expect("write qpf.yaml");
    tmp
}

fn copy_tree(src: &Path, dst: &Path, skip: &dyn Fn(&Path) -> bool) {
    for entry in walk(src) {
        let rel = entry.strip_prefix(src).expect("under src");
        if skip(rel) {
            continue;
        }
        let to = dst.join(rel);
        std::fs::create_dir_all(to.parent().expect("parent")).expect("mkdir");
        std::fs::copy(&entry, &to).expect("copy");
    }
}

/// Every regular file under `dir`, sorted.
pub fn walk(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_owned()];
    while let Some(d) = stack.pop() {
        let Ok(entries) = std::fs::read_dir(&d) else { continue };
        for e in entries.flatten() {
            let p = e.path();
            if p.is_dir() {
                stack.push(p);
            } else if p.is_file() {
                out.push(p);
            }
        }
    }
    out.sort();
    out
}

/// Every file under `dir` with its bytes, keyed by relative path.
pub fn tree(dir: &Path) -> Vec<(PathBuf, Vec<u8>)> {
    walk(dir)
        .into_iter()
        .map(|p| (p.strip_prefix(dir).expect("under dir").to_owned(), std::fs::read(&p).expect("read")))
        .collect()
}

/// Reads a JSON report written with `--report`.
pub fn report(path: &Path) -> serde_json::Value {
    serde_json::from_slice(&std::fs::read(path).expect("report exists")).expect("report is JSON")
}

/// The JSON Schema of the `Probe` kind used by hostile projects.
pub const PROBE_KIND: &str = r#"{"$schema": "https://json-schema.org/draft/2020-12/schema", "type": "object",
  "properties": {"spec": {"type": "object", "required": ["greeting"]}}}"#;

/// A one-schema project whose only plugin is the hostile guest, one entry per `(id, config)`.
pub fn hostile_project(entries: &[(&str, serde_json::Value)], limits: &str) -> tempfile::TempDir {
    let with_needs: Vec<(&str, serde_json::Value, &str)> = entries.iter().map(|(id, c)| (*id, c.clone(), "")).collect();
    hostile_project_with(&with_needs, limits)
}

/// Like [`hostile_project`], with extra YAML lines per entry (e.g. `    needs: [a]\n`).
pub fn hostile_project_with(entries: &[(&str, serde_json::Value, &str)], limits: &str) -> tempfile::TempDir {
    let tmp = tempfile::tempdir().expect("temp dir");
    let wasm = wasm("qpf_hostile");
    std::fs::create_dir_all(tmp.path().join("schemas")).expect("mkdir");
    std::fs::write(
        tmp.path().join("schemas/probe.yaml"),
        "apiVersion: qpf.dev/v1\nkind: Probe\nmetadata:\n  name: probe\n  version: 1.0.0\nspec:\n  greeting: hello\n",
    )
    .expect("schema");
    let mut map = String::from("entries:\n");
    for (id, config, extra) in entries {
        map.push_str(&format!(
            "  - id: {id}\n    plugin: hostile\n    input: /spec\n    out: {id}\n    config: {config}\n{extra}"
        ));
    }
    std::fs::write(tmp.path().join("map.yaml"), map).expect("map");
    std::fs::write(tmp.path().join("probe.schema.json"), PROBE_KIND).expect("kind");
    std::fs::write(
        tmp.path().join("qpf.yaml"),
        format!(
            "version: 1\nschemas: [\"schemas/*.yaml\"]\nkinds: {{Probe: probe.schema.json}}\nmap: map.yaml\noutput: out\nplugins:\n  hostile:\n    path: {}\n    digest: {}\nlimits:\n{limits}",
            wasm.display(),
            digest(&wasm)
        ),
    )
    .expect("qpf.yaml");
    tmp
}

/// The component of `tests/guests/wat/hello.wat`, which writes `hello.txt`.
pub fn hello_wasm() -> Vec<u8> {
    let wat = std::fs::read_to_string(workspace_root().join("tests/guests/wat/hello.wat")).expect("hello.wat");
    wat::parse_str(wat).expect("wat")
}

/// A one-schema project in `dir`: `notes/first.yaml` (kind `Note`, any object), a map with one
/// entry `hello` of plugin `hello` into `out/{name}`, and `qpf.yaml` with `kinds:` and `plugins:`
/// given as their YAML values (e.g. `{ Note: note.schema.json }`).
pub fn note_project(dir: &Path, kinds: &str, plugins: &str) {
    std::fs::create_dir_all(dir.join("notes")).expect("mkdir");
    std::fs::write(
        dir.join("notes/first.yaml"),
        "apiVersion: example.dev/v1\nkind: Note\nmetadata: { name: first, version: 1.0.0 }\nspec: { text: hi }\n",
    )
    .expect("schema");
    std::fs::write(dir.join("note.schema.json"), r#"{"type": "object"}"#).expect("kind");
    std::fs::write(dir.join("map.yaml"), "entries:\n  - { id: hello, plugin: hello, input: /spec, out: \"{name}\" }\n")
        .expect("map");
    std::fs::write(
        dir.join("qpf.yaml"),
        format!(
            "version: 1\nschemas: [\"notes/*.yaml\"]\nkinds: {kinds}\nmap: map.yaml\noutput: out\nplugins:{plugins}"
        ),
    )
    .expect("qpf.yaml");
}

/// Whether golden files are to be rewritten: `QPF_BLESS=1`, and no other value, blesses (the one
/// switch of every golden and snapshot test, and of `qpf plugin test`).
pub fn blessing() -> bool {
    std::env::var_os("QPF_BLESS").is_some_and(|v| v == "1")
}

/// The one golden check: with [`blessing`], writes `actual` to `path`; then compares, failing with
/// a unified diff that names the file.
pub fn golden(path: &Path, actual: &str) {
    if blessing() {
        std::fs::create_dir_all(path.parent().expect("golden files live in a folder")).expect("mkdir");
        std::fs::write(path, actual).expect("write golden file");
    }
    let expected = std::fs::read_to_string(path)
        .unwrap_or_else(|e| panic!("cannot read {} ({e}); QPF_BLESS=1 writes it", path.display()));
    assert_text_eq(&expected, actual, &path.display().to_string());
}

/// Asserts two texts are equal, failing with a unified diff (`-` expected, `+` actual).
pub fn assert_text_eq(expected: &str, actual: &str, what: &str) {
    if expected == actual {
        return;
    }
    let diff = similar::TextDiff::from_lines(expected, actual);
    panic!(
        "{what} differs from the expected text (QPF_BLESS=1 accepts the new one):\n{}",
        diff.unified_diff().context_radius(3).header("expected", "actual")
    );
}

/// A real OCI registry on loopback (Debian's `docker-registry`, installed by `./dev tools`), with
/// its storage in a temporary folder; stopped when dropped, and by `timeout` after 15 minutes if
/// the test process dies first.
pub struct Registry {
    /// `127.0.0.1:PORT`.
    pub addr: String,
    /// The registry's storage root.
    pub storage: PathBuf,
    child: std::process::Child,
    _dir: tempfile::TempDir,
}

/// `user` / `correct-horse` as an htpasswd line (bcrypt, cost 5), for registries that ask for a login.
pub const REGISTRY_LOGIN: (&str, &str, &str) =
    ("author", "correct-horse", "author:$2b$05$bB7nJo501s4IQzkuiT6HWucBD3T3tjK4zRUDiE1lvfUZQTJrYGGOe");

impl Registry {
    /// Starts a registry on a free loopback port; with `login`, only [`REGISTRY_LOGIN`] may read or write.
    pub fn start(login: bool) -> Registry {
        use std::io::BufRead;
        tools();
        let dir = tempfile::tempdir().expect("temp dir");
        let storage = dir.path().join("storage");
        let mut config = format!(
            "version: 0.1\nlog: {{ level: info, accesslog: {{ disabled: true }} }}\n\
             storage: {{ filesystem: {{ rootdirectory: {} }} }}\nhttp: {{ addr: \"127.0.0.1:0\" }}\n",
            storage.display()
        );
        if login {
            std::fs::write(dir.path().join("htpasswd"), format!("{}\n", REGISTRY_LOGIN.2)).expect("htpasswd");
            config.push_str(&format!(
                "auth: {{ htpasswd: {{ realm: qpf-test, path: {} }} }}\n",
                dir.path().join("htpasswd").display()
            ));
        }
        std::fs::write(dir.path().join("config.yml"), config).expect("registry config");
        let mut child = std::process::Command::new("timeout")
            .args(["900", "docker-registry", "serve"])
            .arg(dir.path().join("config.yml"))
            .stdin(std::process::Stdio::null())
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .expect("docker-registry starts (./dev tools installs it)");
        // The registry logs the port it bound; the rest of its log is drained in the background.
        let mut lines = std::io::BufReader::new(child.stderr.take().expect("stderr")).lines();
        let mut log = String::new();
        let addr = lines
            .by_ref()
            .map_while(Result::ok)
            .inspect(|l| {
                log.push_str(l);
                log.push('\n');
            })
            .find_map(|l| l.split("listening on ").nth(1).map(|a| a.split(['"', ' ']).next().unwrap_or("").to_owned()));
        let addr = addr.unwrap_or_else(|| panic!("docker-registry exited without listening; its log:\n{log}"));
        std::thread::spawn(move || lines.for_each(drop));
        Registry { addr, storage, child, _dir: dir }
    }

    /// Every blob file the registry stores (`…/blobs/sha256/xx/HEX/data`).
    pub fn blobs(&self) -> Vec<PathBuf> {
        walk(&self.storage.join("docker/registry/v2/blobs")).into_iter().filter(|p| p.ends_with("data")).collect()
    }
}

impl Drop for Registry {
    fn drop(&mut self) {
        // `timeout` passes SIGTERM on to the registry and exits with it.
        let _ = std::process::Command::new("kill").args(["-TERM", &self.child.id().to_string()]).status();
        let _ = self.child.wait();
    }
}

/// moto's S3 server (installed by `./dev tools`), on a loopback port; stopped when dropped, and by
/// `timeout` after 15 minutes if the test process dies first.
pub struct Moto {
    /// `http://127.0.0.1:PORT`.
    pub endpoint: String,
    child: std::process::Child,
}

impl Moto {
    /// Starts one with a bucket `cache`.
    pub fn start() -> Moto {
        use std::io::BufRead;
        crate::support::tools();
        let server = crate::support::target_dir().join("qpf-tools/moto/bin/moto_server");
        let mut child = std::process::Command::new("timeout")
            .arg("900")
            .arg(&server)
            .args(["-H", "127.0.0.1", "-p", "0"])
            .stdin(std::process::Stdio::null())
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .expect("moto_server starts (./dev tools installs it)");
        // It says where it listens on stdout or stderr, depending on the version.
        let (tx, rx) = std::sync::mpsc::channel();
        for stream in [
            Box::new(child.stdout.take().expect("stdout")) as Box<dyn std::io::Read + Send>,
            Box::new(child.stderr.take().expect("stderr")),
        ] {
            let tx = tx.clone();
            std::thread::spawn(move || {
                for line in std::io::BufReader::new(stream).lines().map_while(Result::ok) {
                    if let Some(url) = line.split("Running on ").nth(1) {
                        let _ = tx.send(url.trim().to_owned());
                    }
                }
            });
        }
        let endpoint = rx.recv_timeout(std::time::Duration::from_secs(60)).expect("moto says where it listens");
        // Buckets are created by the client: moto accepts any credentials.
        let agent: ureq::Agent = ureq::Agent::config_builder().http_status_as_error(false).build().into();
        let reply = agent.put(&format!("{endpoint}/cache")).send_empty().expect("create the bucket");
        assert!(reply.status().is_success(), "create bucket: {}", reply.status());
        Moto { endpoint, child }
    }

    /// Creates a bucket.
    pub fn create_bucket(&self, name: &str) {
        let agent: ureq::Agent = ureq::Agent::config_builder().http_status_as_error(false).build().into();
        let reply = agent.put(&format!("{}/{name}", self.endpoint)).send_empty().expect("create the bucket");
        assert!(reply.status().is_success(), "create bucket {name}: {}", reply.status());
    }
}

impl Drop for Moto {
    fn drop(&mut self) {
        let _ = std::process::Command::new("kill").args(["-TERM", &self.child.id().to_string()]).status();
        let _ = self.child.wait();
    }
}
