//! Fragments shared between projects through registry folders (`registries` in `qpf.yaml`):
//! a `name@range` import no project schema answers resolves among them, the version chosen is
//! locked in `qpf.lock`, and `--update-registry` moves it.

use std::path::Path;

use crate::support;

/// A fragment `base` at `version` whose spec's greeting is `text`.
fn fragment(dir: &Path, version: &str, text: &str) {
    std::fs::write(
        dir.join(format!("base-{version}.yaml")),
        format!("apiVersion: qpf.dev/v1\nkind: Fragment\nmetadata: {{ name: base, version: {version} }}\nspec: {{ greeting: {text} }}\n"),
    )
    .expect("fragment");
}

/// A one-probe project whose probe extends `base@^1` from the registry folder `registry`; the
/// hostile guest echoes the probe's spec to `out/probe/echo.json`.
fn project(dir: &Path, registry: &Path) {
    let wasm = support::wasm("qpf_hostile");
    std::fs::create_dir_all(dir.join("probes")).expect("mkdir");
    std::fs::write(
        dir.join("probes/probe.yaml"),
        "apiVersion: qpf.dev/v1\nkind: Probe\nmetadata: { name: probe, version: 1.0.0 }\nimports: { base: base@^1 }\nextends: base\nspec: {}\n",
    )
    .expect("probe");
    std::fs::write(dir.join("probe.schema.json"), support::PROBE_KIND).expect("kind");
    std::fs::write(
        dir.join("map.yaml"),
        "entries:\n  - { id: echo, plugin: hostile, input: /spec, out: \"{name}\", config: { mode: echo } }\n",
    )
    .expect("map");
    std::fs::write(
        dir.join("qpf.yaml"),
        format!(
            "version: 1\nschemas: [\"probes/*.yaml\"]\nkinds: {{ Probe: probe.schema.json }}\nmap: map.yaml\noutput: out\nplugins:\n  hostile: {{ path: {:?}, digest: \"{}\" }}\nregistries: [{:?}]\n",
            wasm.to_str().expect("utf-8"),
            support::digest(&wasm),
            registry.to_str().expect("utf-8"),
        ),
    )
    .expect("qpf.yaml");
}

fn extract(p: &Path, extra: &[&str]) -> String {
    let mut args = vec!["extract", "--project", p.to_str().expect("utf-8")];
    args.extend_from_slice(extra);
    let out = support::qpf(&args);
    assert!(out.status.success(), "{}", support::show(&out));
    let echo: serde_json::Value =
        serde_json::from_slice(&std::fs::read(p.join("out/probe/echo.json")).expect("output")).expect("json");
    echo["greeting"].as_str().expect("a greeting").to_owned()
}

fn locked(p: &Path) -> serde_json::Value {
    let lock: serde_json::Value =
        serde_json::from_slice(&std::fs::read(p.join("qpf.lock")).expect("lock")).expect("json");
    lock["registry"]["base"].clone()
}

#[test]
fn a_registry_fragment_is_resolved_by_range_locked_and_updated_on_request() {
    let registry = tempfile::tempdir().expect("tmp");
    let r = registry.path();
    fragment(r, "1.0.0", "one");
    fragment(r, "1.1.0", "one-one");
    fragment(r, "2.0.0", "two");
    let tmp = tempfile::tempdir().expect("tmp");
    let p = tmp.path();
    project(p, r);

    // The newest version the range allows, recorded in the lock with its file and digest.
    assert_eq!(extract(p, &[]), "one-one");
    let lock = locked(p);
    assert_eq!(lock["version"], "1.1.0");
    let file = r.canonicalize().expect("canonical").join("base-1.1.0.yaml");
    assert_eq!(lock["file"], file.to_str().expect("utf-8"));
    assert_eq!(lock["digest"], support::digest(&file));

    // A newer version in the registry changes nothing until asked for.
    fragment(r, "1.2.0", "one-two");
    assert_eq!(extract(p, &[]), "one-one");
    assert_eq!(locked(p)["version"], "1.1.0");
    assert_eq!(extract(p, &["--update-registry"]), "one-two");
    assert_eq!(locked(p)["version"], "1.2.0");

    // The locked version gone: the newest that matches, locked in turn.
    std::fs::remove_file(r.join("base-1.2.0.yaml")).expect("remove");
    assert_eq!(extract(p, &[]), "one-one");
    assert_eq!(locked(p)["version"], "1.1.0");

    // A project schema of the same name is preferred to the registry's.
    std::fs::write(
        p.join("probes/base.yaml"),
        "apiVersion: qpf.dev/v1\nkind: Probe\nmetadata: { name: base, version: 1.5.0 }\nspec: { greeting: mine }\n",
    )
    .expect("project base");
    assert_eq!(extract(p, &[]), "mine");
    assert!(locked(p).is_null(), "nothing comes from the registry any more");
}

#[test]
fn registry_problems_are_errors_naming_the_registry_or_the_file() {
    let tmp = tempfile::tempdir().expect("tmp");
    let p = tmp.path();
    let missing = p.join("no-such-registry");
    project(p, &missing);
    let out = support::qpf(&["extract", "--project", p.to_str().expect("utf-8")]);
    assert_eq!(out.status.code(), Some(1), "{}", support::show(&out));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("registry `") && err.contains("no-such-registry") && err.contains("cannot open it"), "{err}");

    // A registry too big to be a folder of fragments is refused before anything is read.
    let huge = tempfile::tempdir().expect("tmp");
    for i in 0..=qpf_engine::extract::MAX_REGISTRY_ENTRIES {
        std::fs::write(huge.path().join(format!("f{i}.txt")), "").expect("file");
    }
    let tmp = tempfile::tempdir().expect("tmp");
    project(tmp.path(), huge.path());
    let out = support::qpf(&["extract", "--project", tmp.path().to_str().expect("utf-8")]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success() && err.contains("more than 20000 files and folders"), "{}", support::show(&out));

    let registry = tempfile::tempdir().expect("tmp");
    let r = registry.path();
    let tmp = tempfile::tempdir().expect("tmp");
    let p = tmp.path();
    project(p, r);
    std::fs::write(
        r.join("base-1.0.0.yaml"),
        "apiVersion: qpf.dev/v1\nkind: Fragment\nmetadata: { name: base, version: 1.0.0\nspec: {}\n",
    )
    .expect("broken");
    let out = support::qpf(&["extract", "--project", p.to_str().expect("utf-8")]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success() && err.contains("base-1.0.0.yaml:"), "{}", support::show(&out));

    std::fs::write(
        r.join("base-1.0.0.yaml"),
        "apiVersion: qpf.dev/v1\nkind: Fragment\nmetadata: { name: base, version: 1.0.0 }\nimports: { up: ../secret.yaml }\nspec: {}\n",
    )
    .expect("path import");
    let out = support::qpf(&["extract", "--project", p.to_str().expect("utf-8")]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        !out.status.success() && err.contains("a registry fragment imports by `name@range` only"),
        "{}",
        support::show(&out)
    );
}

/// Copies the folder `from` to `to`, recursively.
fn copy_tree(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).expect("mkdir");
    for entry in std::fs::read_dir(from).expect("read_dir").flatten() {
        let target = to.join(entry.file_name());
        if entry.file_type().expect("type").is_dir() {
            copy_tree(&entry.path(), &target);
        } else {
            std::fs::copy(entry.path(), target).expect("copy");
        }
    }
}

/// The project of [`project`], its plugin `hostile` declared by `spec` (`registry: ...`).
fn plugin_project(dir: &Path, registry: &Path, spec: &str) {
    project(dir, registry);
    let text = std::fs::read_to_string(dir.join("qpf.yaml")).expect("qpf.yaml");
    let declared = text.lines().find(|l| l.starts_with("  hostile:")).expect("the plugin").to_owned();
    std::fs::write(dir.join("qpf.yaml"), text.replace(&declared, &format!("  hostile: {spec}"))).expect("qpf.yaml");
}

fn locked_plugin(p: &Path) -> serde_json::Value {
    let lock: serde_json::Value =
        serde_json::from_slice(&std::fs::read(p.join("qpf.lock")).expect("lock")).expect("json");
    lock["registry-plugins"]["hostile"].clone()
}

#[test]
fn a_registry_plugin_is_resolved_by_range_pinned_by_the_lock_and_updated_on_request() {
    let registry = tempfile::tempdir().expect("tmp");
    let r = registry.path();
    fragment(r, "1.0.0", "one");
    let versions = r.join("plugins/probe-echo");
    std::fs::create_dir_all(&versions).expect("mkdir");
    let hostile = support::wasm("qpf_hostile");
    std::fs::copy(&hostile, versions.join("1.0.0.wasm")).expect("copy");
    std::fs::write(versions.join("2.0.0.wasm"), support::hello_wasm()).expect("write");
    std::fs::write(versions.join("notes.txt"), "not a version").expect("write");
    let tmp = tempfile::tempdir().expect("tmp");
    let p = tmp.path();
    plugin_project(p, r, "{ registry: probe-echo@^1 }");

    // The newest version the range allows, pinned in the lock by its digest.
    assert_eq!(extract(p, &[]), "one");
    let lock = locked_plugin(p);
    assert_eq!(lock["version"], "1.0.0");
    // The file as qpf.yaml names the registry (the same on every machine when that is relative).
    assert_eq!(lock["file"], format!("{}/plugins/probe-echo/1.0.0.wasm", r.display()));
    assert_eq!(lock["digest"], support::digest(&hostile));

    // The registry elsewhere (another machine, another checkout) with a newer version: the lock
    // still holds, by version and digest.
    let moved = tempfile::tempdir().expect("tmp");
    let r2 = moved.path().join("registry");
    copy_tree(r, &r2);
    std::fs::write(r2.join("plugins/probe-echo/1.1.0.wasm"), support::hello_wasm()).expect("write");
    let text = std::fs::read_to_string(p.join("qpf.yaml")).expect("qpf.yaml");
    std::fs::write(
        p.join("qpf.yaml"),
        text.replace(&format!("{:?}", r.to_str().expect("utf-8")), &format!("{:?}", r2.to_str().expect("utf-8"))),
    )
    .expect("qpf.yaml");
    assert_eq!(extract(p, &[]), "one");
    assert_eq!(locked_plugin(p)["version"], "1.0.0");
    std::fs::write(p.join("qpf.yaml"), text).expect("qpf.yaml back");

    // A newer matching version changes nothing until asked for.
    std::fs::write(versions.join("1.5.0.wasm"), support::hello_wasm()).expect("write");
    assert_eq!(extract(p, &[]), "one");
    assert_eq!(locked_plugin(p)["version"], "1.0.0");
    let out = support::qpf(&["extract", "--project", p.to_str().expect("utf-8"), "--update-registry"]);
    assert!(out.status.success(), "{}", support::show(&out));
    assert_eq!(locked_plugin(p)["version"], "1.5.0");
    assert!(p.join("out/probe/hello.txt").is_file(), "the new version ran");

    // The locked file changed in place: refused, as a pinned file would be.
    std::fs::copy(&hostile, versions.join("1.5.0.wasm")).expect("replace");
    let out = support::qpf(&["extract", "--project", p.to_str().expect("utf-8")]);
    assert_ne!(out.status.code(), Some(0), "{}", support::show(&out));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("plugin `hostile`") && err.contains("changed since qpf.lock pinned it"), "{err}");
    assert!(err.contains("--update-registry"), "{err}");
    // A pin in qpf.yaml must agree with the registry's file.
    plugin_project(
        p,
        r,
        "{ registry: probe-echo@^1, digest: \"blake3:0000000000000000000000000000000000000000000000000000000000000000\" }",
    );
    let out = support::qpf(&["extract", "--project", p.to_str().expect("utf-8"), "--update-registry"]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success() && err.contains("not the pinned"), "{}", support::show(&out));
}

#[test]
fn registry_plugin_problems_are_errors_naming_the_plugin_and_what_was_found() {
    let registry = tempfile::tempdir().expect("tmp");
    let r = registry.path();
    fragment(r, "1.0.0", "one");
    std::fs::create_dir_all(r.join("plugins/probe-echo")).expect("mkdir");
    std::fs::copy(support::wasm("qpf_hostile"), r.join("plugins/probe-echo/1.0.0.wasm")).expect("copy");
    let cases = [
        ("{ registry: probe-echo }", "must be `NAME@RANGE`"),
        ("{ registry: \"Probe@^1\" }", "must be `NAME@RANGE`"),
        ("{ registry: probe-echo@^9 }", "no version matches `^9` (versions found: 1.0.0)"),
        ("{ registry: other@^1 }", "no `plugins/other/VERSION.wasm` in the registry folders"),
        ("{ registry: probe-echo@^1, path: x.wasm }", "give one of `path`, `oci` and `registry`"),
    ];
    for (spec, expected) in cases {
        let tmp = tempfile::tempdir().expect("tmp");
        plugin_project(tmp.path(), r, spec);
        let out = support::qpf(&["extract", "--project", tmp.path().to_str().expect("utf-8")]);
        assert_eq!(out.status.code(), Some(1), "{spec}: {}", support::show(&out));
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(err.contains(expected) && err.contains("plugin `hostile`"), "{spec}: {}", support::show(&out));
    }
    // Without registry folders to look in.
    let tmp = tempfile::tempdir().expect("tmp");
    plugin_project(tmp.path(), r, "{ registry: probe-echo@^1 }");
    let text = std::fs::read_to_string(tmp.path().join("qpf.yaml")).expect("qpf.yaml");
    let without = text.lines().filter(|l| !l.starts_with("registries:")).collect::<Vec<_>>().join("\n");
    std::fs::write(tmp.path().join("qpf.yaml"), without).expect("qpf.yaml");
    let out = support::qpf(&["extract", "--project", tmp.path().to_str().expect("utf-8")]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success() && err.contains("names none"), "{}", support::show(&out));
}
