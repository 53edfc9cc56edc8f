//! `qpf plugin new|build|inspect|test` in Rust, Python and JavaScript, the repository's Python and
//! JavaScript plugins rebuilt from source against their cases, and the errors a faulty guest gets.
//!
//! The toolchains come from `./dev tools` (target/qpf-tools), which the tests run on first use.

use crate::support::{self, show};
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

fn plugin(args: &[&str], cwd: &Path) -> Output {
    support::tools();
    Command::new(support::qpf_bin())
        .arg("plugin")
        .args(args)
        .current_dir(cwd)
        .env("QPF_LOG", "warn")
        .env("XDG_CACHE_HOME", support::target_dir().join("qpf-test-cache"))
        // Scaffolded Rust plugins share one target folder, so each build after the first is quick.
        .env("CARGO_TARGET_DIR", support::target_dir().join("plugin-new-target"))
        .env_remove("QPF_BLESS")
        .output()
        .expect("qpf runs")
}

fn stdout(out: &Output) -> String {
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// Where the test builds components (never over the published `dist/` artifacts).
fn build_dir() -> PathBuf {
    let dir = support::target_dir().join("plugin-builds");
    std::fs::create_dir_all(&dir).expect("build dir");
    dir
}

/// The author's whole loop, outside the repository, in every language: `new`, edit, `build`,
/// `test`, `inspect`, `push` to a registry on loopback; then a second project pins the pushed
/// plugins by `oci:` and digest, and `qpf extract` runs every one of them.
#[test]
fn a_new_plugin_builds_passes_its_own_test_and_is_pushed_and_pulled_in_every_language() {
    let tmp = tempfile::tempdir().expect("temp dir");
    let registry = support::Registry::start(false);
    let mut pushed = Vec::new();
    for lang in ["rust", "python", "js"] {
        let name = format!("hello-{lang}");
        let out = plugin(&["new", "--lang", lang, &name], tmp.path());
        assert!(out.status.success(), "{}", show(&out));
        let dir = tmp.path().join(&name);
        assert!(dir.join("qpf-plugin.yaml").is_file() && dir.join("tests/cases/hello/expected/hello.txt").is_file());
        // The author's edit: another greeting, in the code and in the case's expectation.
        let source = dir.join(match lang {
            "rust" => "src/lib.rs",
            "python" => "app.py",
            _ => "index.js",
        });
        for file in [source.clone(), dir.join("tests/cases/hello/expected/hello.txt")] {
            let text = std::fs::read_to_string(&file).expect("scaffold file");
            assert!(text.contains("hello, "), "{}", file.display());
            std::fs::write(&file, text.replace("hello, ", "greetings, ")).expect("edit");
        }
        // And a scaffold file (contract 0.2.0), in each SDK's words, with the case's expectation.
        let (from, to) = match lang {
            "rust" => {
                (".file(\"hello.txt\", text))", ".file(\"hello.txt\", text).scaffold(\"notes.txt\", \"yours\\n\"))")
            }
            "python" => (
                "\\ninput keys: {keys}\\n\")]",
                "\\ninput keys: {keys}\\n\"), File(\"notes.txt\", \"yours\\n\", scaffold=True)]",
            ),
            _ => ("\\ninput keys: ${keys}\\n`)]", "\\ninput keys: ${keys}\\n`), scaffold('notes.txt', 'yours\\n')]"),
        };
        let text = std::fs::read_to_string(&source).expect("source");
        assert!(text.contains(from), "{lang}: `{from}` not in {text}");
        std::fs::write(&source, text.replace(from, to)).expect("edit");
        std::fs::write(dir.join("tests/cases/hello/expected/notes.txt"), "yours\n").expect("expected scaffold");
        std::fs::write(dir.join("tests/cases/hello/expected-scaffolds.txt"), "notes.txt\n").expect("scaffolds");
        if lang == "js" {
            let text = std::fs::read_to_string(&source).expect("source");
            std::fs::write(&source, text.replace("definePlugin, file }", "definePlugin, file, scaffold }"))
                .expect("import");
        }
        {
            // No path of this machine in the scaffold: it builds wherever the SDK can be fetched.
            let root = support::workspace_root().display().to_string();
            for file in support::walk(&dir) {
                let text = std::fs::read_to_string(&file).unwrap_or_default();
                assert!(!text.contains(&root), "{lang}: `{}` holds the checkout's path", file.display());
            }
            if lang == "rust" {
                let manifest = std::fs::read_to_string(dir.join("Cargo.toml")).expect("Cargo.toml");
                assert!(manifest.contains(&format!("qpf-sdk = \"{}\"", env!("CARGO_PKG_VERSION"))), "{manifest}");
            }
        }

        let out = plugin(&["build", &name], tmp.path());
        assert!(out.status.success(), "{lang}: {}", show(&out));
        if lang != "rust" {
            // Without a QPF checkout: the SDK and its WIT come from the packaged SDK alone.
            let target = support::target_dir();
            let out = Command::new(support::qpf_bin())
                .args(["plugin", "build", &name, "--out"])
                .arg(tmp.path().join("no-checkout.wasm"))
                .current_dir(tmp.path())
                .env("QPF_ROOT", tmp.path())
                .env("QPF_SDK_DIR", target.join("sdk"))
                .env("QPF_TOOLS", target.join("qpf-tools"))
                .env("XDG_CACHE_HOME", target.join("qpf-test-cache"))
                .output()
                .expect("qpf runs");
            assert!(out.status.success(), "{lang} without a checkout: {}", show(&out));
        }
        let wasm = dir.join(format!("dist/{name}.wasm"));
        assert!(stdout(&out).starts_with("blake3:"), "{lang}: the digest to pin: {}", show(&out));
        assert_eq!(stdout(&out).split_whitespace().next(), Some(support::digest(&wasm).as_str()));

        let out = plugin(&["test", &name], tmp.path());
        assert!(out.status.success(), "{lang}: {}", show(&out));
        assert!(stdout(&out).contains("case hello ... ok"), "{lang}: {}", show(&out));

        let out = plugin(&["inspect", wasm.to_str().expect("utf-8"), "--format", "json"], tmp.path());
        assert!(out.status.success(), "{lang}: {}", show(&out));
        let v: serde_json::Value = serde_json::from_slice(&out.stdout).expect("json");
        assert_eq!(v["runs"], true, "{v}");
        assert_eq!(v["world"], "qpf:extractor/extractor@0.2.0", "{v}");
        assert_eq!(v["info"]["name"], name.as_str(), "{v}");
        if lang != "rust" {
            assert_eq!(v["refused"], serde_json::json!([]), "{v}");
            let wasi = v["imports"]
                .as_array()
                .expect("imports")
                .iter()
                .filter(|i| i.as_str().unwrap_or("").starts_with("wasi:"));
            assert_eq!(wasi.count(), 0, "{lang} components have no WASI imports: {v}");
        }

        // Published: the folder's built component goes to the registry.
        let reference = format!("{}/authors/{name}:0.1.0", registry.addr);
        let out = plugin(&["push", &name, &reference], tmp.path());
        assert!(out.status.success(), "{lang}: {}", show(&out));
        let line = stdout(&out);
        let (digest, pinned) = line.trim().split_once("  ").expect("DIGEST  REPOSITORY@SHA256");
        assert_eq!(digest, support::digest(&wasm), "{lang}: {line}");
        pushed.push((name, pinned.to_owned(), digest.to_owned()));
    }

    // Another team's project, elsewhere, with an empty plugin store: it pins the three plugins
    // by registry and digest, pulls them on its first run and runs every invocation.
    let project = tempfile::tempdir().expect("temp dir");
    let p = project.path();
    std::fs::create_dir_all(p.join("notes")).expect("mkdir");
    for schema in ["first", "second"] {
        std::fs::write(
            p.join(format!("notes/{schema}.yaml")),
            format!("apiVersion: example.dev/v1\nkind: Note\nmetadata: {{ name: {schema}, version: 1.0.0 }}\nspec: {{ description: d, owner: o }}\n"),
        )
        .expect("schema");
    }
    std::fs::write(p.join("note.schema.json"), r#"{"type": "object"}"#).expect("kind");
    let mut map = String::from("entries:\n");
    let mut plugins = String::new();
    for (name, pinned, digest) in &pushed {
        map.push_str(&format!("  - {{ id: {name}, plugin: {name}, input: /spec, out: \"{{name}}/{name}\" }}\n"));
        plugins.push_str(&format!("  {name}:\n    oci: {pinned}\n    digest: \"{digest}\"\n"));
    }
    std::fs::write(p.join("map.yaml"), map).expect("map");
    std::fs::write(
        p.join("qpf.yaml"),
        format!(
            "version: 1\nschemas: [\"notes/*.yaml\"]\nkinds: {{ Note: note.schema.json }}\nmap: map.yaml\noutput: out\nplugins:\n{plugins}"
        ),
    )
    .expect("qpf.yaml");
    let out = Command::new(support::qpf_bin())
        .args(["extract", "--project", p.to_str().expect("utf-8"), "--report"])
        .env("QPF_RUN_SNAPSHOT", "off")
        .arg(p.join("report.json"))
        .env("QPF_LOG", "warn")
        .env("QPF_PLUGIN_STORE", p.join(".store"))
        .env("XDG_CACHE_HOME", support::target_dir().join("qpf-test-cache"))
        .output()
        .expect("qpf runs");
    assert!(out.status.success(), "{}", show(&out));
    let report = support::report(&p.join("report.json"));
    let invocations = report["invocations"].as_array().expect("invocations");
    assert_eq!(invocations.len(), 6, "{report}");
    assert!(invocations.iter().all(|i| i["outcome"] == "ok"), "{report}");
    for (name, _, _) in &pushed {
        for schema in ["first", "second"] {
            let text = std::fs::read_to_string(p.join(format!("out/{schema}/{name}/hello.txt"))).expect("generated");
            assert_eq!(text, format!("greetings, {schema}\ninput keys: description, owner\n"), "{name}");
            let scaffold = p.join(format!("out/{schema}/{name}/notes.txt"));
            assert_eq!(std::fs::read_to_string(scaffold).expect("scaffold"), "yours\n", "{name}");
        }
    }
    let lock: serde_json::Value =
        serde_json::from_slice(&std::fs::read(p.join("qpf.lock")).expect("lock")).expect("lock is JSON");
    for (name, _, _) in &pushed {
        assert_eq!(lock["files"][format!("first/{name}/notes.txt")]["user_owned"], true, "{name}: {lock}");
        assert!(lock["files"][format!("first/{name}/hello.txt")].get("user_owned").is_none(), "{name}: {lock}");
    }
    drop(registry);
    // A changed expectation is a failure with a diff, and QPF_BLESS=1 accepts it.
    let expected = tmp.path().join("hello-python/tests/cases/hello/expected/hello.txt");
    std::fs::write(&expected, "hello, someone else\ninput keys: description, owner\n").expect("edit");
    let out = plugin(&["test", "hello-python"], tmp.path());
    assert_eq!(out.status.code(), Some(1), "{}", show(&out));
    assert!(stdout(&out).contains("-hello, someone else\n  +greetings, example"), "{}", show(&out));
    let blessed = Command::new(support::qpf_bin())
        .args(["plugin", "test", "hello-python"])
        .current_dir(tmp.path())
        .env("XDG_CACHE_HOME", support::target_dir().join("qpf-test-cache"))
        .env("QPF_BLESS", "1")
        .output()
        .expect("qpf runs");
    assert!(blessed.status.success(), "{}", show(&blessed));
    assert_eq!(
        std::fs::read_to_string(&expected).expect("blessed"),
        "greetings, example\ninput keys: description, owner\n"
    );
}

#[test]
fn the_repository_python_and_javascript_plugins_rebuild_and_pass_their_cases() {
    let root = support::workspace_root();
    for name in ["env-example", "ts-client"] {
        let dir = root.join("plugins").join(name);
        let rebuilt = build_dir().join(format!("{name}.wasm"));
        let out = plugin(&["build", dir.to_str().expect("utf-8"), "--out", rebuilt.to_str().expect("utf-8")], &root);
        assert!(out.status.success(), "{name}: {}", show(&out));
        for wasm in [rebuilt, dir.join(format!("dist/{name}.wasm"))] {
            let out = plugin(&["test", dir.to_str().expect("utf-8"), "--wasm", wasm.to_str().expect("utf-8")], &root);
            assert!(out.status.success(), "{name} ({}): {}", wasm.display(), show(&out));
            assert!(stdout(&out).contains("2 cases, 2 passed, 0 failed"), "{}", show(&out));
        }
    }
}

#[test]
fn raising_throwing_and_bad_paths_are_clear_errors_not_traps() {
    let root = support::workspace_root();
    for (name, expected) in [
        (
            "faulty-py",
            vec![
                "case raise ... ok",
                "plugin `faulty-py`: output error: the plugin returned the path `../escape.txt`, which is not allowed: the path has a `..` segment",
            ],
        ),
        (
            "faulty-js",
            vec![
                "case throw-object ... ok",
                "case throw-string ... ok",
                "plugin `faulty-js`: output error: the plugin returned the path `/etc/escape.txt`, which is not allowed: the path is absolute",
            ],
        ),
    ] {
        let dir = root.join("tests/guests").join(name);
        let wasm = build_dir().join(format!("{name}.wasm"));
        let out = plugin(&["build", dir.to_str().expect("utf-8"), "--out", wasm.to_str().expect("utf-8")], &root);
        assert!(out.status.success(), "{name}: {}", show(&out));
        let out = plugin(&["test", dir.to_str().expect("utf-8"), "--wasm", wasm.to_str().expect("utf-8")], &root);
        assert_eq!(out.status.code(), Some(1), "the bad-path case fails: {}", show(&out));
        let text = stdout(&out);
        for line in expected {
            assert!(text.contains(line), "{name}: missing `{line}` in\n{}", show(&out));
        }
        assert!(!text.contains("trap") && !text.contains("unreachable"), "{name}: {}", show(&out));
    }
}

#[test]
fn a_component_with_imports_the_sandbox_does_not_grant_is_refused_with_a_hint() {
    // jco's default build imports wasi:http (and more); the sandbox grants WASI p2 without
    // capabilities, but not wasi:http.
    let root = support::workspace_root();
    let src = tempfile::tempdir().expect("temp dir");
    std::fs::write(
        src.path().join("index.js"),
        "export function info() { return { name: 'wide', version: '0.1.0', description: '', kinds: [], configSchema: '' }; }\n\
         export function extract(request) { return { files: [], diagnostics: [], spawns: [] }; }\n",
    )
    .expect("source");
    support::tools();
    let jco = root.join("target/qpf-tools/js/node_modules/.bin/jco");
    assert!(jco.is_file(), "{} is missing after `./dev tools`", jco.display());
    let wasm = build_dir().join("wide-wasi-imports.wasm");
    let out = Command::new(&jco)
        .current_dir(src.path())
        .args(["componentize", "index.js", "--wit"])
        .arg(root.join("wit/0.2.0"))
        .args(["--world-name", "extractor", "-o"])
        .arg(&wasm)
        .output()
        .expect("jco runs");
    assert!(out.status.success(), "{}", show(&out));
    let out = plugin(&["inspect", wasm.to_str().expect("utf-8")], &root);
    assert_eq!(out.status.code(), Some(1), "{}", show(&out));
    let text = stdout(&out);
    assert!(text.contains("runs here no: it imports `wasi:http/"), "{}", show(&out));
    assert!(text.contains("jco componentize ... --disable all"), "{}", show(&out));
}

/// Every Rust reference plugin has golden cases of its own (`plugins/NAME/tests/cases/`, run with
/// `qpf plugin test` against the built component): a change to one plugin shows in its own test,
/// not only in the whole-service goldens. `QPF_BLESS=1 qpf plugin test plugins/NAME --wasm ...`
/// accepts a change.
#[test]
fn every_rust_reference_plugin_passes_its_own_golden_cases() {
    let root = support::workspace_root();
    let mut tested = Vec::new();
    for entry in std::fs::read_dir(root.join("plugins")).expect("plugins/") {
        let dir = entry.expect("entry").path();
        let Ok(manifest) = std::fs::read_to_string(dir.join("qpf-plugin.yaml")) else { continue };
        if !manifest.lines().any(|l| l.trim() == "lang: rust") {
            continue;
        }
        let name = dir.file_name().expect("name").to_string_lossy().into_owned();
        let wasm = support::wasm(&format!("qpf_{}", name.replace('-', "_")));
        let out = plugin(&["test", dir.to_str().expect("utf-8"), "--wasm", wasm.to_str().expect("utf-8")], &root);
        assert!(out.status.success(), "{name}: {}", show(&out));
        assert!(stdout(&out).contains("0 failed"), "{name}: {}", show(&out));
        tested.push(name);
    }
    tested.sort();
    assert_eq!(tested.len(), 12, "the twelve Rust reference plugins: {tested:?}");
}

#[test]
fn golden_cases_assert_diagnostics_and_match_errors_by_text_or_regex() {
    let tmp = tempfile::tempdir().expect("temp dir");
    let dir = tmp.path().join("probe");
    let case = |name: &str, config: &str, files: &[(&str, &str)]| {
        let case = dir.join("tests/cases").join(name);
        std::fs::create_dir_all(&case).expect("case");
        std::fs::write(case.join("input.json"), "{}").expect("input");
        std::fs::write(case.join("config.json"), config).expect("config");
        for (path, text) in files {
            let to = case.join(path);
            std::fs::create_dir_all(to.parent().expect("parent")).expect("dir");
            std::fs::write(to, text).expect("file");
        }
    };
    std::fs::create_dir_all(&dir).expect("dir");
    std::fs::write(dir.join("qpf-plugin.yaml"), "name: hostile\nlang: rust\n").expect("manifest");
    let warns = r#"{"mode": "many-diagnostics", "bytes": 2}"#;
    let fails = r#"{"mode": "error"}"#;
    case("warns", warns, &[("expected/d.txt", "x"), ("expected-diagnostics.txt", "warning: w0\nwarning: w1\n")]);
    case("fails-text", fails, &[("expected-error.txt", "the input has no `types`")]);
    case("fails-regex", fails, &[("expected-error.regex", r"^the input has no `\w+`\nerror: expected a list")]);
    // Spawns are part of what a plugin returns: a case lists them, or none may be asked for.
    let spawns = r#"{"mode": "spawn", "spawn": [{"plugin": "template:h", "input": {"name": "x"}, "config": {}}]}"#;
    let listed = r#"[{"plugin": "template:h", "input": {"name": "x"}, "config": {}}]"#;
    case("spawns", spawns, &[("expected/test.json", "{}"), ("expected-spawns.json", listed)]);
    case("spawns-unlisted", spawns, &[("expected/test.json", "{}")]);
    let wasm = support::wasm("qpf_hostile");
    let run = |env: &[(&str, &str)]| {
        let mut cmd = Command::new(support::qpf_bin());
        cmd.args(["plugin", "test", "probe", "--wasm", wasm.to_str().expect("utf-8")])
            .current_dir(tmp.path())
            .env("XDG_CACHE_HOME", support::target_dir().join("qpf-test-cache"))
            .env_remove("QPF_BLESS");
        for (k, v) in env {
            cmd.env(k, v);
        }
        cmd.output().expect("qpf runs")
    };
    let out = run(&[]);
    assert_eq!(out.status.code(), Some(1), "{}", show(&out));
    assert!(stdout(&out).contains("case spawns ... ok"), "{}", show(&out));
    assert!(stdout(&out).contains("the spawns (`expected-spawns.json`) differ"), "{}", show(&out));
    std::fs::write(dir.join("tests/cases/spawns-unlisted/expected-spawns.json"), listed).expect("edit");
    let out = run(&[]);
    assert!(out.status.success(), "{}", show(&out));
    assert!(stdout(&out).contains("case warns ... ok\n  warning: w0\n  warning: w1\n"), "{}", show(&out));
    // A diagnostic that changed, an error that no longer matches: failures that say what differs.
    std::fs::write(dir.join("tests/cases/warns/expected-diagnostics.txt"), "warning: w0\n").expect("edit");
    std::fs::write(dir.join("tests/cases/fails-regex/expected-error.regex"), "^no such").expect("edit");
    let out = run(&[]);
    assert_eq!(out.status.code(), Some(1), "{}", show(&out));
    let text = stdout(&out);
    assert!(text.contains("the diagnostics differ"), "{text}");
    assert!(text.contains("does not match `^no such`"), "{text}");
    // Blessing stores the diagnostics, and only the first line of an error.
    let out = run(&[("QPF_BLESS", "1")]);
    assert!(out.status.success(), "{}", show(&out));
    let read = |p: &str| std::fs::read_to_string(dir.join("tests/cases").join(p)).expect("blessed");
    assert_eq!(read("warns/expected-diagnostics.txt"), "warning: w0\nwarning: w1\n");
    assert_eq!(read("fails-regex/expected-error.txt"), "the input has no `types`\n");
    assert!(!dir.join("tests/cases/fails-regex/expected-error.regex").exists());
}

#[test]
fn a_case_can_take_its_request_from_a_project_through_plan_show_request() {
    let project = support::hostile_project(&[("x", serde_json::json!({"mode": "echo"}))], "  fuel: 100000000\n");
    let tmp = tempfile::tempdir().expect("temp dir");
    let dir = tmp.path().join("probe");
    let case = dir.join("tests/cases/from-project");
    std::fs::create_dir_all(&case).expect("case");
    std::fs::write(dir.join("qpf-plugin.yaml"), "name: hostile\nlang: rust\n").expect("manifest");
    let request =
        support::qpf(&["plan", "--show-request", "x", "probe", "--project", project.path().to_str().unwrap()]);
    assert!(request.status.success(), "{}", show(&request));
    std::fs::write(case.join("request.json"), &request.stdout).expect("request.json");
    let wasm = support::wasm("qpf_hostile");
    let run = |bless: bool| {
        let mut cmd = Command::new(support::qpf_bin());
        cmd.args(["plugin", "test", "probe", "--wasm", wasm.to_str().expect("utf-8")])
            .current_dir(tmp.path())
            .env("XDG_CACHE_HOME", support::target_dir().join("qpf-test-cache"))
            .env_remove("QPF_BLESS");
        if bless {
            cmd.env("QPF_BLESS", "1");
        }
        cmd.output().expect("qpf runs")
    };
    assert!(run(true).status.success());
    let out = run(false);
    assert!(out.status.success(), "{}", show(&out));
    // The plugin received the project's input for that schema: the echo holds it.
    let echoed = std::fs::read_to_string(case.join("expected/echo.json")).expect("echo");
    assert!(echoed.contains("\"greeting\":\"hello\"") || echoed.contains("\"greeting\": \"hello\""), "{echoed}");
}

#[test]
fn a_rust_plugin_builds_to_the_same_digest_wherever_it_lives() {
    // Two copies of the same plugin in two folders: `qpf plugin build` remaps the folders, so no
    // machine-specific path ends up in the component.
    let digests: Vec<String> = (0..2)
        .map(|_| {
            let tmp = tempfile::tempdir().expect("temp dir");
            let out = plugin(&["new", "--lang", "rust", "repro"], tmp.path());
            assert!(out.status.success(), "{}", show(&out));
            let out = plugin(&["build", "repro"], tmp.path());
            assert!(out.status.success(), "{}", show(&out));
            stdout(&out).split_whitespace().next().unwrap_or_default().to_owned()
        })
        .collect();
    assert!(digests[0].starts_with("blake3:"), "{digests:?}");
    assert_eq!(digests[0], digests[1]);
}

/// The compiled-plugin cache has a size cap (`QPF_COMPILED_CACHE_MAX`): past it, the least
/// recently used artifacts go and the one just compiled stays.
#[test]
fn the_compiled_cache_keeps_to_its_cap_and_keeps_the_newest_artifact() {
    let cache = tempfile::tempdir().expect("dir");
    let artifacts = || {
        let mut names: Vec<String> = std::fs::read_dir(cache.path())
            .expect("the cache folder")
            .filter_map(|e| e.ok()?.file_name().into_string().ok())
            .filter(|n| n.ends_with(".cwasm"))
            .collect();
        names.sort();
        names
    };
    let inspect = |name: &str, cap: Option<&str>| {
        let wasm = support::wasm(name);
        let mut command = Command::new(support::qpf_bin());
        command
            .args(["plugin", "inspect", wasm.to_str().expect("utf-8")])
            .env("QPF_LOG", "warn")
            .env("QPF_COMPILED_CACHE", cache.path());
        match cap {
            Some(cap) => command.env("QPF_COMPILED_CACHE_MAX", cap),
            None => command.env_remove("QPF_COMPILED_CACHE_MAX"),
        };
        let out = command.output().expect("qpf runs");
        assert!(out.status.success(), "{}", show(&out));
        artifacts()
    };
    let hostile = support::digest(&support::wasm("qpf_hostile"));
    let settings = support::digest(&support::wasm("qpf_py_settings"));
    let stem = |digest: &str| digest.trim_start_matches("blake3:").to_owned();
    assert_eq!(inspect("qpf_hostile", None).len(), 1);
    // A cap of one byte: the new artifact is kept, the other goes.
    let left = inspect("qpf_py_settings", Some("1"));
    assert_eq!(left.len(), 1, "{left:?}");
    assert!(left[0].starts_with(&stem(&settings)), "{left:?}");
    // With the default cap (2 GiB) both stay.
    let both = inspect("qpf_hostile", None);
    assert_eq!(both.len(), 2, "{both:?}");
    assert!(both.iter().any(|n| n.starts_with(&stem(&hostile))), "{both:?}");
}
