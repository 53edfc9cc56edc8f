//! Plugins through a real OCI registry on loopback: `qpf plugin push|pull`, `oci:` plugins in
//! `qpf.yaml` fetched once into the user's plugin store and then used offline, and every way it
//! can go wrong (a tampered blob, a moved tag, a login refused, a missing tag, a registry down).

use std::path::Path;
use std::process::Output;

use crate::support::{self, REGISTRY_LOGIN, Registry, show};

/// The hand-written plugin of the embedding example: writes `hello.txt` with "hi".
fn hello_wasm(dir: &Path) -> std::path::PathBuf {
    let wasm = wat::parse_str(include_str!("../guests/wat/hello.wat")).expect("hello.wat assembles");
    let path = dir.join("hello.wasm");
    std::fs::write(&path, wasm).expect("write hello.wasm");
    path
}

/// `qpf` with a private plugin store and compiled cache, and optionally the registry login.
fn qpf(args: &[&str], store: &Path, login: Option<(&str, &str, &str)>) -> Output {
    let mut command = std::process::Command::new(support::qpf_bin());
    command
        .args(args)
        .env("QPF_LOG", "warn")
        .env("QPF_PLUGIN_STORE", store.join("plugins"))
        .env("QPF_COMPILED_CACHE", store.join("compiled"))
        .env_remove("QPF_OCI_REGISTRY")
        .env_remove("QPF_OCI_USERNAME")
        .env_remove("QPF_OCI_PASSWORD");
    if let Some((registry, user, password)) = login {
        command.env("QPF_OCI_REGISTRY", registry).env("QPF_OCI_USERNAME", user).env("QPF_OCI_PASSWORD", password);
    }
    command.output().expect("qpf runs")
}

fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

/// A project with one schema and one entry whose plugin is `oci: REFERENCE` pinned to `digest`.
fn project(dir: &Path, reference: &str, digest: &str) {
    support::note_project(
        dir,
        "{ Note: note.schema.json }",
        &format!("\n  hello:\n    oci: {reference}\n    digest: \"{digest}\"\n"),
    );
}

#[test]
fn a_pushed_plugin_is_pulled_once_by_a_project_then_runs_with_the_registry_gone() {
    let tmp = tempfile::tempdir().expect("temp dir");
    let wasm = hello_wasm(tmp.path());
    let digest = support::digest(&wasm);
    let registry = Registry::start(false);
    let reference = format!("{}/acme/hello:1.0.0", registry.addr);

    let out = qpf(&["plugin", "push", wasm.to_str().expect("utf-8"), &reference], tmp.path(), None);
    assert!(out.status.success(), "{}", show(&out));
    let line = String::from_utf8_lossy(&out.stdout).trim().to_owned();
    let (pushed_digest, pinned) = line.split_once("  ").expect("DIGEST  REPOSITORY@SHA256");
    assert_eq!(pushed_digest, digest, "{line}");
    assert!(pinned.starts_with(&format!("{}/acme/hello@sha256:", registry.addr)), "{line}");
    assert!(stderr(&out).contains(&format!("oci: {pinned}")), "the lines to pin: {}", show(&out));
    // The same bytes pushed again give the same manifest: pushes are reproducible.
    let again = qpf(&["plugin", "push", wasm.to_str().expect("utf-8"), &reference], tmp.path(), None);
    assert_eq!(String::from_utf8_lossy(&again.stdout).trim(), line, "{}", show(&again));

    // `qpf plugin pull` checks the digest asked for and keeps the component in the store.
    let out = qpf(&["plugin", "pull", &reference, "--digest", &digest], tmp.path(), None);
    assert!(out.status.success(), "{}", show(&out));
    let stored = tmp.path().join("plugins/blake3").join(format!("{}.wasm", &digest["blake3:".len()..]));
    assert!(String::from_utf8_lossy(&out.stdout).contains(stored.to_str().expect("utf-8")), "{}", show(&out));
    assert_eq!(std::fs::read(&stored).expect("stored"), std::fs::read(&wasm).expect("wasm"));

    // A project pinning it by manifest digest: the first run fetches it (into an empty store).
    std::fs::remove_dir_all(tmp.path().join("plugins")).expect("empty the store");
    let proj = tmp.path().join("project");
    project(&proj, pinned, &digest);
    let p = proj.to_str().expect("utf-8");
    let out = qpf(&["extract", "--project", p], tmp.path(), None);
    assert!(out.status.success(), "{}", show(&out));
    assert_eq!(std::fs::read_to_string(proj.join("out/first/hello.txt")).expect("generated"), "hi\n");
    assert!(stored.is_file(), "the plugin is in the store after the first run");
    let out = qpf(&["cache", "stats", "--project", p, "--format", "json"], tmp.path(), None);
    let stats: serde_json::Value = serde_json::from_slice(&out.stdout).expect("json");
    assert_eq!(stats["pulled"], 1, "{stats}");
    assert_eq!(stats["pulled_bytes"], std::fs::metadata(&wasm).expect("wasm").len(), "{stats}");

    // The registry is gone: the store is enough, for every command.
    drop(registry);
    std::fs::remove_dir_all(proj.join("out")).expect("rm out");
    for args in
        [vec!["validate", "--project", p], vec!["plan", "--project", p], vec!["extract", "--project", p, "--no-cache"]]
    {
        let out = qpf(&args, tmp.path(), None);
        assert!(out.status.success(), "{args:?} offline: {}", show(&out));
    }
    assert_eq!(std::fs::read_to_string(proj.join("out/first/hello.txt")).expect("generated"), "hi\n");
}

#[test]
fn a_moved_tag_or_a_tampered_blob_is_refused_and_nothing_is_stored() {
    let tmp = tempfile::tempdir().expect("temp dir");
    let wasm = hello_wasm(tmp.path());
    let digest = support::digest(&wasm);
    let registry = Registry::start(false);
    let reference = format!("{}/acme/hello:latest", registry.addr);

    // The tag now names another component than the one pinned: refused, with both digests.
    let other = support::wasm("qpf_md_docs");
    let out = qpf(&["plugin", "push", other.to_str().expect("utf-8"), &reference], tmp.path(), None);
    assert!(out.status.success(), "{}", show(&out));
    let proj = tmp.path().join("project");
    project(&proj, &reference, &digest);
    let p = proj.to_str().expect("utf-8");
    for command in ["extract", "validate"] {
        let out = qpf(&[command, "--project", p], tmp.path(), None);
        assert_eq!(out.status.code(), Some(1), "{command}: {}", show(&out));
        let err = stderr(&out);
        assert!(
            err.contains(&format!("plugin `hello` (oci: {reference})"))
                && err.contains(&support::digest(&other))
                && err.contains(&format!("not the pinned {digest}; refused")),
            "{command}: {}",
            show(&out)
        );
    }
    assert!(!tmp.path().join("plugins/blake3").exists(), "nothing stored");
    assert!(!proj.join("out").exists(), "nothing written");

    // A blob changed in the registry's storage: its sha256 no longer matches the manifest's.
    let out = qpf(&["plugin", "push", wasm.to_str().expect("utf-8"), &reference], tmp.path(), None);
    assert!(out.status.success(), "{}", show(&out));
    let size = std::fs::metadata(&wasm).expect("wasm").len();
    let blob = registry.blobs().into_iter().find(|b| std::fs::metadata(b).is_ok_and(|m| m.len() == size));
    let blob = blob.expect("the component's blob");
    let mut bytes = std::fs::read(&blob).expect("blob");
    let last = bytes.len() - 1;
    bytes[last] ^= 0xff;
    std::fs::write(&blob, bytes).expect("tamper");
    let out = qpf(&["plugin", "pull", &reference], tmp.path(), None);
    assert_eq!(out.status.code(), Some(1), "{}", show(&out));
    assert!(stderr(&out).contains("does not match its digest (tampered or corrupt blob)"), "{}", show(&out));
    let out = qpf(&["extract", "--project", p], tmp.path(), None);
    assert_eq!(out.status.code(), Some(1), "{}", show(&out));
    assert!(stderr(&out).contains("tampered or corrupt blob"), "{}", show(&out));
    assert!(!tmp.path().join("plugins/blake3").exists(), "nothing stored");
}

#[test]
fn a_refused_login_a_missing_tag_and_a_registry_that_is_down_are_clear_errors() {
    let tmp = tempfile::tempdir().expect("temp dir");
    let wasm = hello_wasm(tmp.path());
    let digest = support::digest(&wasm);
    let w = wasm.to_str().expect("utf-8");
    let registry = Registry::start(true);
    let reference = format!("{}/acme/hello:1.0.0", registry.addr);
    let (user, password, _) = REGISTRY_LOGIN;
    let addr = registry.addr.clone();
    let r = addr.as_str();

    // No login, a wrong password, and the right login for another registry (never sent here).
    for login in [None, Some((r, user, "wrong")), Some(("ghcr.io", user, password))] {
        let out = qpf(&["plugin", "push", w, &reference], tmp.path(), login);
        assert_eq!(out.status.code(), Some(1), "{login:?}: {}", show(&out));
        assert!(
            stderr(&out).contains(&format!("the registry `{}` refused access", registry.addr))
                && stderr(&out).contains(&format!("QPF_OCI_REGISTRY={}", registry.addr)),
            "{login:?}: {}",
            show(&out)
        );
    }
    let out = qpf(&["plugin", "push", w, &reference], tmp.path(), Some((r, user, password)));
    assert!(out.status.success(), "{}", show(&out));
    let out = qpf(&["plugin", "pull", &reference], tmp.path(), None);
    assert_eq!(out.status.code(), Some(1), "{}", show(&out));
    assert!(stderr(&out).contains("refused access"), "{}", show(&out));
    let out = qpf(&["plugin", "pull", &reference], tmp.path(), Some((r, user, password)));
    assert!(out.status.success(), "{}", show(&out));

    let missing = format!("{}/acme/hello:2.0.0", registry.addr);
    let out = qpf(&["plugin", "pull", &missing], tmp.path(), Some((r, user, password)));
    assert_eq!(out.status.code(), Some(1), "{}", show(&out));
    assert!(stderr(&out).contains(&format!("`{missing}` does not exist in the registry")), "{}", show(&out));

    // Down: a project whose plugin is not in the store names the registry and the plugin.
    drop(registry);
    std::fs::remove_dir_all(tmp.path().join("plugins")).expect("empty the store");
    let proj = tmp.path().join("project");
    project(&proj, &reference, &digest);
    let out = qpf(&["extract", "--project", proj.to_str().expect("utf-8")], tmp.path(), Some((r, user, password)));
    assert_eq!(out.status.code(), Some(1), "{}", show(&out));
    assert!(
        stderr(&out).contains(&format!("plugin `hello` (oci: {reference}): cannot reach the registry `{addr}`")),
        "{}",
        show(&out)
    );
    let out = qpf(&["plugin", "pull", &reference], tmp.path(), None);
    assert_eq!(out.status.code(), Some(1), "{}", show(&out));
    assert!(stderr(&out).contains("cannot reach the registry"), "{}", show(&out));
}

#[test]
fn a_plugin_declares_a_path_or_an_oci_reference_and_the_reference_names_its_registry() {
    let tmp = tempfile::tempdir().expect("temp dir");
    let digest = support::digest(&hello_wasm(tmp.path()));
    let proj = tmp.path().join("project");
    let p = proj.to_str().expect("utf-8");
    project(&proj, "localhost:5000/acme/hello:1", &digest);
    let qpf_yaml = proj.join("qpf.yaml");
    let text = std::fs::read_to_string(&qpf_yaml).expect("qpf.yaml");
    let cases = [
        (text.replace("    oci:", "    path: ../hello.wasm\n    oci:"), "give `path` (a local component) or `oci`"),
        (
            text.replace("    oci: localhost:5000/acme/hello:1\n", ""),
            "needs `path` (a local component), `oci` (an OCI reference) or `registry`",
        ),
        (text.replace("localhost:5000/acme/hello:1", "\"a b\""), "`oci` must be a reference like"),
    ];
    for (yaml, expected) in cases {
        std::fs::write(&qpf_yaml, &yaml).expect("qpf.yaml");
        let out = qpf(&["validate", "--project", p], tmp.path(), None);
        assert_eq!(out.status.code(), Some(1), "{yaml}: {}", show(&out));
        assert!(stderr(&out).contains(&format!("plugin `hello`: {expected}")), "{yaml}: {}", show(&out));
    }
    // A reference without a registry is not sent to Docker Hub by default.
    std::fs::write(&qpf_yaml, text.replace("localhost:5000/acme/hello:1", "acme/hello:1")).expect("qpf.yaml");
    let out = qpf(&["validate", "--project", p], tmp.path(), None);
    assert_eq!(out.status.code(), Some(1), "{}", show(&out));
    assert!(stderr(&out).contains("name the registry"), "{}", show(&out));
}

/// `hello.wasm` writing `text` (two characters and a newline) instead of "hi\n".
fn hello_saying(dir: &Path, text: &str) -> std::path::PathBuf {
    assert_eq!(text.len(), 2, "the component's length is fixed");
    let source = include_str!("../guests/wat/hello.wat")
        .replace(r#"(data (i32.const 720) "hi\n")"#, &format!(r#"(data (i32.const 720) "{text}\n")"#));
    let path = dir.join(format!("hello-{text}.wasm"));
    std::fs::write(&path, wat::parse_str(source).expect("assembles")).expect("write");
    path
}

#[test]
fn an_oci_plugin_by_version_range_takes_the_newest_matching_tag_locks_it_and_then_runs_offline() {
    let tmp = tempfile::tempdir().expect("temp dir");
    let registry = Registry::start(false);
    let repository = format!("{}/acme/hello", registry.addr);
    for (tag, text) in [("1.0.0", "hi"), ("v1.2.0", "ho"), ("2.0.0", "ha"), ("latest", "ha"), ("nightly", "hu")] {
        let wasm = hello_saying(tmp.path(), text);
        let out =
            qpf(&["plugin", "push", wasm.to_str().expect("utf-8"), &format!("{repository}:{tag}")], tmp.path(), None);
        assert!(out.status.success(), "{}", show(&out));
    }
    let proj = tmp.path().join("project");
    let declare = |range: &str| {
        support::note_project(
            &proj,
            "{ Note: note.schema.json }",
            &format!("\n  hello: {{ oci: {repository}, version: \"{range}\" }}\n"),
        );
    };
    declare("^1");
    let p = proj.to_str().expect("utf-8");
    let said = || std::fs::read_to_string(proj.join("out/first/hello.txt")).expect("generated");
    let locked = || -> serde_json::Value {
        let lock: serde_json::Value =
            serde_json::from_slice(&std::fs::read(proj.join("qpf.lock")).expect("lock")).expect("json");
        lock["registry-plugins"]["hello"].clone()
    };

    // The newest tag `^1` allows (`v1.2.0`), pulled, pinned in the lock.
    let out = qpf(&["extract", "--project", p], tmp.path(), None);
    assert!(out.status.success(), "{}", show(&out));
    assert_eq!(said(), "ho\n");
    let lock = locked();
    assert_eq!(
        (lock["version"].as_str(), lock["file"].as_str()),
        (Some("1.2.0"), Some(format!("{repository}:v1.2.0").as_str()))
    );
    assert_eq!(lock["digest"], support::digest(&tmp.path().join("hello-ho.wasm")));

    // A newer matching tag changes nothing until asked for.
    let newer = hello_saying(tmp.path(), "he");
    let out =
        qpf(&["plugin", "push", newer.to_str().expect("utf-8"), &format!("{repository}:1.3.0")], tmp.path(), None);
    assert!(out.status.success(), "{}", show(&out));
    assert!(qpf(&["extract", "--project", p], tmp.path(), None).status.success());
    assert_eq!(said(), "ho\n");
    let out = qpf(&["extract", "--project", p, "--update-registry"], tmp.path(), None);
    assert!(out.status.success(), "{}", show(&out));
    assert_eq!(said(), "he\n");
    assert_eq!(locked()["version"], "1.3.0");

    // Nothing to match: the error names the plugin, the range and the newest tags.
    declare("^9");
    let out = qpf(&["extract", "--project", p], tmp.path(), None);
    assert_ne!(out.status.code(), Some(0), "{}", show(&out));
    assert!(stderr(&out).contains("no tag matches `^9` (newest tags: 2.0.0, 1.3.0, 1.2.0, 1.0.0)"), "{}", show(&out));
    assert!(stderr(&out).contains("hello"), "{}", show(&out));

    // The registry gone: the locked tag and the store are enough.
    declare("^1");
    drop(registry);
    std::fs::remove_dir_all(proj.join("out")).expect("rm out");
    let out = qpf(&["extract", "--project", p, "--no-cache"], tmp.path(), None);
    assert!(out.status.success(), "offline: {}", show(&out));
    assert_eq!(said(), "he\n");
}

#[test]
fn a_version_range_needs_a_repository_without_tag_and_a_range() {
    let tmp = tempfile::tempdir().expect("temp dir");
    for (declared, expected) in [
        ("{ oci: localhost:5000/acme/hello:1.0.0, version: \"^1\" }", "without a tag or digest"),
        ("{ oci: localhost:5000/acme/hello, version: \"one\" }", "semantic-version range"),
        (
            "{ path: x.wasm, version: \"^1\", digest: \"blake3:0000000000000000000000000000000000000000000000000000000000000000\" }",
            "give `oci` with it",
        ),
    ] {
        let proj = tmp.path().join("project");
        support::note_project(&proj, "{ Note: note.schema.json }", &format!("\n  hello: {declared}\n"));
        let out = qpf(&["extract", "--project", proj.to_str().expect("utf-8")], tmp.path(), None);
        assert_eq!(out.status.code(), Some(1), "{declared}: {}", show(&out));
        assert!(
            stderr(&out).contains(expected) && stderr(&out).contains("plugin `hello`"),
            "{declared}: {}",
            show(&out)
        );
    }
}
