//! The contract's versions: a 0.1.0 plugin (kept as bytes in `tests/fixtures/abi-0.1.0`) runs next
//! to 0.2.0 plugins; a component of a version this host does not know is refused, naming the ones
//! it runs; and 0.2.0's `scaffold` files are written once, then left to their user by every run,
//! `drift`, `drift --fix` and pruning.

use std::path::{Path, PathBuf};

use crate::support::{self, qpf, show};

const LEGACY: &str = "tests/fixtures/abi-0.1.0/legacy-hello.wasm";

fn legacy() -> PathBuf {
    support::workspace_root().join(LEGACY)
}

/// A project with one `Probe` schema, the 0.1.0 fixture (entry `legacy`) and the hostile guest
/// (0.2.0) in `scaffold` mode (entry `scaffold`), plus any `extra` entries.
fn project(extra: &str) -> tempfile::TempDir {
    let tmp = tempfile::tempdir().expect("temp dir");
    let p = tmp.path();
    std::fs::create_dir_all(p.join("schemas")).expect("mkdir");
    std::fs::write(
        p.join("schemas/probe.yaml"),
        "apiVersion: qpf.dev/v1\nkind: Probe\nmetadata:\n  name: probe\n  version: 1.0.0\nspec:\n  greeting: hello\n",
    )
    .expect("schema");
    std::fs::write(p.join("probe.schema.json"), support::PROBE_KIND).expect("kind");
    std::fs::write(
        p.join("map.yaml"),
        format!(
            "entries:\n  - id: legacy\n    plugin: legacy\n    input: /spec\n    out: legacy\n  - id: scaffold\n    plugin: hostile\n    input: /spec\n    out: svc\n    config: {{mode: scaffold}}\n{extra}"
        ),
    )
    .expect("map");
    let hostile = support::wasm("qpf_hostile");
    std::fs::write(
        p.join("qpf.yaml"),
        format!(
            "version: 1\nschemas: [\"schemas/*.yaml\"]\nkinds: {{Probe: probe.schema.json}}\nmap: map.yaml\noutput: out\nplugins:\n  legacy:\n    path: {}\n    digest: {}\n  hostile:\n    path: {}\n    digest: {}\n",
            legacy().display(),
            support::digest(&legacy()),
            hostile.display(),
            support::digest(&hostile)
        ),
    )
    .expect("qpf.yaml");
    tmp
}

fn extract(p: &Path, extra: &[&str]) -> std::process::Output {
    let mut args = vec!["extract", "--project", p.to_str().expect("utf-8")];
    args.extend_from_slice(extra);
    qpf(&args)
}

fn lock(p: &Path) -> serde_json::Value {
    serde_json::from_slice(&std::fs::read(p.join("qpf.lock")).expect("lock")).expect("lock is JSON")
}

fn drift(p: &Path, extra: &[&str]) -> (Option<i32>, serde_json::Value, String) {
    let mut args = vec!["drift", "--project", p.to_str().expect("utf-8"), "--format", "json"];
    args.extend_from_slice(extra);
    let out = qpf(&args);
    let stdout = String::from_utf8_lossy(&out.stdout);
    let json = stdout.lines().last().and_then(|l| serde_json::from_str(l).ok()).unwrap_or(serde_json::Value::Null);
    (out.status.code(), json, show(&out))
}

fn read(p: &Path, rel: &str) -> String {
    std::fs::read_to_string(p.join(rel)).unwrap_or_else(|e| panic!("{rel}: {e}"))
}

#[test]
fn the_frozen_0_1_0_fixture_is_the_one_it_documents() {
    let readme =
        std::fs::read_to_string(support::workspace_root().join("tests/fixtures/abi-0.1.0/README.md")).expect("README");
    assert!(readme.contains(&support::digest(&legacy())), "the fixture's bytes changed: it must stay as built");
    let out = qpf(&["plugin", "inspect", legacy().to_str().expect("utf-8"), "--format", "json"]);
    assert!(out.status.success(), "{}", show(&out));
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).expect("json");
    assert_eq!(v["world"], "qpf:extractor/extractor@0.1.0", "{v}");
    assert_eq!(v["runs"], true, "{v}");
    let out = qpf(&["plugin", "inspect", support::wasm("qpf_hostile").to_str().expect("utf-8"), "--format", "json"]);
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).expect("json");
    assert_eq!(v["world"], "qpf:extractor/extractor@0.2.0", "{v}");
}

#[test]
fn a_0_1_0_plugin_runs_in_one_project_next_to_0_2_0_plugins_and_its_files_are_generated() {
    let tmp = project("");
    let p = tmp.path();
    let out = extract(p, &["--jobs", "2"]);
    assert!(out.status.success(), "{}", show(&out));
    assert_eq!(read(p, "out/legacy/hello.txt"), "hello, probe\ninput keys: greeting\n");
    assert_eq!(read(p, "out/svc/gen.txt"), "generated from {\"greeting\":\"hello\"}\n");
    let lock = lock(p);
    assert!(lock["files"]["legacy/hello.txt"].get("user_owned").is_none(), "{lock}");
    assert!(lock["files"]["svc/gen.txt"].get("user_owned").is_none(), "{lock}");
    assert_eq!(lock["files"]["svc/user.txt"]["user_owned"], true, "{lock}");
    // Hits replay both, from the cache, byte for byte.
    let out = extract(p, &[]);
    assert!(out.status.success(), "{}", show(&out));
    assert!(String::from_utf8_lossy(&out.stdout).contains("(2 cached, 0 run, 0 failed)"), "{}", show(&out));
    assert_eq!(read(p, "out/legacy/hello.txt"), "hello, probe\ninput keys: greeting\n");
}

#[test]
fn a_component_of_a_contract_version_this_host_does_not_run_is_refused_naming_the_ones_it_runs() {
    let tmp = tempfile::tempdir().expect("temp dir");
    let future = tmp.path().join("future.wasm");
    let wasm = wat::parse_str(
        r#"(component
             (import "qpf:extractor/log@0.3.0" (instance (export "log" (func (param "message" string))))))"#,
    )
    .expect("assembles");
    std::fs::write(&future, wasm).expect("write");
    let out = qpf(&["plugin", "inspect", future.to_str().expect("utf-8")]);
    assert_eq!(out.status.code(), Some(1), "{}", show(&out));
    let text = show(&out);
    assert!(
        text.contains("it is built for `qpf:extractor@0.3.0`, which this host does not run; it runs 0.1.0 and 0.2.0"),
        "{text}"
    );
}

#[test]
fn a_scaffold_is_written_once_then_survives_runs_schema_changes_drift_fix_and_pruning() {
    let tmp = project("");
    let p = tmp.path();
    let out = extract(p, &[]);
    assert!(out.status.success(), "{}", show(&out));
    assert_eq!(read(p, "out/svc/user.txt"), "# yours: written once from {\"greeting\":\"hello\"}\n");

    // The team writes its own code there; no run, cached or not, touches it, and drift is clean.
    std::fs::write(p.join("out/svc/user.txt"), "my own code\n").expect("edit");
    for extra in [&[][..], &["--no-cache"][..]] {
        let out = extract(p, extra);
        assert!(out.status.success(), "{}", show(&out));
        assert_eq!(read(p, "out/svc/user.txt"), "my own code\n");
    }
    let (code, report, shown) = drift(p, &[]);
    assert_eq!(code, Some(0), "{shown}");
    assert_eq!(report["items"], serde_json::json!([]), "{shown}");

    // A schema change regenerates the generated file and keeps the scaffold.
    let schema = p.join("schemas/probe.yaml");
    std::fs::write(&schema, read(p, "schemas/probe.yaml").replace("greeting: hello", "greeting: bonjour"))
        .expect("edit");
    let (code, report, shown) = drift(p, &[]);
    assert_eq!(code, Some(2), "{shown}");
    let paths: Vec<&str> =
        report["items"].as_array().expect("items").iter().filter_map(|i| i["path"].as_str()).collect();
    assert!(!paths.contains(&"svc/user.txt"), "a scaffold is never drift: {shown}");
    let (code, _, shown) = drift(p, &["--fix"]);
    assert_eq!(code, Some(0), "{shown}");
    assert_eq!(read(p, "out/svc/gen.txt"), "generated from {\"greeting\":\"bonjour\"}\n");
    assert_eq!(read(p, "out/svc/user.txt"), "my own code\n");

    // Removing the entry prunes its generated file, never the scaffold, which the lock forgets.
    std::fs::write(
        p.join("map.yaml"),
        "entries:\n  - id: legacy\n    plugin: legacy\n    input: /spec\n    out: legacy\n",
    )
    .expect("map");
    let out = extract(p, &[]);
    assert!(out.status.success(), "{}", show(&out));
    assert!(!p.join("out/svc/gen.txt").exists(), "the generated file is pruned");
    assert_eq!(read(p, "out/svc/user.txt"), "my own code\n");
    assert!(lock(p)["files"].get("svc/user.txt").is_none(), "{}", lock(p));
    let (code, _, shown) = drift(p, &[]);
    assert_eq!(code, Some(0), "{shown}");

    // Deleted by its user and the entry back: written again, from today's input.
    std::fs::remove_file(p.join("out/svc/user.txt")).expect("rm");
    std::fs::write(
        p.join("map.yaml"),
        "entries:\n  - id: scaffold\n    plugin: hostile\n    input: /spec\n    out: svc\n    config: {mode: scaffold}\n",
    )
    .expect("map");
    let out = extract(p, &[]);
    assert!(out.status.success(), "{}", show(&out));
    assert_eq!(read(p, "out/svc/user.txt"), "# yours: written once from {\"greeting\":\"bonjour\"}\n");
}

#[test]
fn a_scaffold_path_obeys_the_same_rules_as_any_output() {
    let tmp = project("");
    let p = tmp.path();
    let map = read(p, "map.yaml").replace("config: {mode: scaffold}", "config: {mode: scaffold, path: ../escape.txt}");
    std::fs::write(p.join("map.yaml"), map).expect("map");
    let out = extract(p, &[]);
    assert_eq!(out.status.code(), Some(1), "{}", show(&out));
    assert!(
        show(&out).contains("the plugin returned the path `../escape.txt`, which is not allowed"),
        "{}",
        show(&out)
    );
    assert!(!p.join("out/escape.txt").exists() && !p.join("escape.txt").exists());
    // Nothing of the failing invocation was written: all or none.
    assert!(!p.join("out/svc/gen.txt").exists());
}
