//! Two compilers (docs/cli.md, "Two compilers"): a plugin not compiled yet is compiled by Winch
//! unless the run calls it often; Cranelift's artifact, once cached, is preferred; the outputs are
//! the same whichever compiled the plugin.

use std::path::{Path, PathBuf};
use std::process::Output;

use crate::support;

/// The compiled artifacts in a compiled cache, by file name.
fn artifacts(dir: &Path) -> Vec<PathBuf> {
    let mut found: Vec<PathBuf> =
        support::walk(dir).into_iter().filter(|p| p.extension().is_some_and(|e| e == "cwasm")).collect();
    found.sort();
    found
}

fn extract(project: &Path, compiled: &Path, compiler: Option<&str>, extra: &[&str]) -> Output {
    let mut command = std::process::Command::new(support::qpf_bin());
    command.args(["extract", "--project", project.to_str().unwrap()]).args(extra);
    command.env("QPF_LOG", "warn").env("QPF_RUN_SNAPSHOT", "off");
    command.env("QPF_COMPILED_CACHE", compiled).env_remove("QPF_COMPILER");
    if let Some(c) = compiler {
        command.env("QPF_COMPILER", c);
    }
    let out = command.output().unwrap();
    assert!(out.status.success(), "{}", support::show(&out));
    out
}

/// A project of `n` schemas with one entry of the trivial guest (`echo`) over all of them.
fn echo_project(n: usize) -> tempfile::TempDir {
    let tmp = support::hostile_project(&[("x", serde_json::json!({ "mode": "echo" }))], "  fuel: 5000000000\n");
    let map = tmp.path().join("map.yaml");
    let text = std::fs::read_to_string(&map).unwrap().replace("out: x", "out: \"{name}\"");
    std::fs::write(&map, text).unwrap();
    for i in 1..n {
        std::fs::write(
            tmp.path().join(format!("schemas/probe-{i}.yaml")),
            format!("apiVersion: qpf.dev/v1\nkind: Probe\nmetadata:\n  name: probe-{i}\n  version: 1.0.0\nspec:\n  greeting: hello {i}\n"),
        )
        .unwrap();
    }
    tmp
}

#[test]
fn a_plugin_not_compiled_yet_gets_winch_and_cranelifts_artifact_is_preferred_once_cached() {
    let project = support::example_project();
    let p = project.path();
    let compiled = tempfile::tempdir().unwrap();
    let c = compiled.path();

    // First run, empty compiled cache: every plugin compiled once (by Winch), outputs written.
    extract(p, c, None, &[]);
    let winch = artifacts(c);
    let first = support::tree(&p.join("out"));
    assert!(!first.is_empty() && !winch.is_empty());

    // Cranelift, asked for: an artifact of its own per plugin (another engine, another key), and
    // byte-identical outputs.
    std::fs::remove_dir_all(p.join("out")).unwrap();
    extract(p, c, Some("cranelift"), &["--no-cache"]);
    let both = artifacts(c);
    assert_eq!(both.len(), 2 * winch.len(), "{both:?}");
    assert_eq!(support::tree(&p.join("out")), first, "Cranelift's code writes what Winch's wrote");
    let cranelift: Vec<&PathBuf> = both.iter().filter(|a| !winch.contains(a)).collect();

    // `auto` now loads Cranelift's artifacts (a load touches its sidecar) and compiles nothing.
    let touched = |a: &Path| std::fs::metadata(a.with_extension("json")).unwrap().modified().unwrap();
    let before: Vec<_> = both.iter().map(|a| touched(a)).collect();
    std::thread::sleep(std::time::Duration::from_millis(20));
    std::fs::remove_dir_all(p.join("out")).unwrap();
    extract(p, c, None, &["--no-cache"]);
    assert_eq!(artifacts(c), both, "nothing compiled again");
    for (a, before) in both.iter().zip(before) {
        let loaded = touched(a) > before;
        assert_eq!(loaded, cranelift.contains(&a), "{}: loaded {loaded}", a.display());
    }
    assert_eq!(support::tree(&p.join("out")), first);
}

#[test]
fn a_plugin_a_run_calls_a_thousand_times_is_compiled_by_cranelift_not_winch() {
    // The name of the trivial guest's Cranelift artifact, from a one-schema run that asks for it.
    let one = echo_project(1);
    let reference = tempfile::tempdir().unwrap();
    extract(one.path(), reference.path(), Some("cranelift"), &[]);
    let cranelift: Vec<_> = artifacts(reference.path()).iter().map(|a| a.file_name().unwrap().to_owned()).collect();
    assert_eq!(cranelift.len(), 1);

    // Below the threshold: Winch's artifact, another name.
    let few = tempfile::tempdir().unwrap();
    extract(one.path(), few.path(), None, &["--no-cache"]);
    let winch: Vec<_> = artifacts(few.path()).iter().map(|a| a.file_name().unwrap().to_owned()).collect();
    assert_eq!(winch.len(), 1);
    assert_ne!(winch, cranelift);

    // 1,000 calls in one run (`qpf_engine::TIER_UP_CALLS`): Cranelift.
    let many = echo_project(qpf_engine::TIER_UP_CALLS);
    let compiled = tempfile::tempdir().unwrap();
    extract(many.path(), compiled.path(), None, &[]);
    let chosen: Vec<_> = artifacts(compiled.path()).iter().map(|a| a.file_name().unwrap().to_owned()).collect();
    assert_eq!(chosen, cranelift);
    assert_eq!(support::walk(&many.path().join("out")).len(), qpf_engine::TIER_UP_CALLS);
}

#[test]
fn an_unknown_compiler_is_a_warning_and_auto_runs() {
    let project = echo_project(1);
    let compiled = tempfile::tempdir().unwrap();
    let out = extract(project.path(), compiled.path(), Some("llvm\u{1b}[2J"), &[]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("QPF_COMPILER"), "{stderr}");
    assert!(stderr.contains("use auto, cranelift or winch"), "{stderr}");
    assert!(!stderr.contains('\u{1b}'), "escaped: {stderr}");
    assert_eq!(artifacts(compiled.path()).len(), 1);
}
