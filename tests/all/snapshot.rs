//! The run snapshot (`.qpf/run-snapshot`): a run over files that did not change since the last
//! complete run is answered from it, with the report a full run would give; any change to what
//! the run read or wrote, another request, or a snapshot this user did not seal, runs again.

use std::path::Path;
use std::process::Output;
use std::time::Duration;

use crate::support;

/// How long a file must be left alone before its stat identifies its bytes (2 s), and a bit.
const SETTLE: Duration = Duration::from_millis(2_100);

/// `qpf extract` on `p` with the snapshot on, and its report (written in `.qpf/`: a file created
/// in the project's folder would change the folder, and the next run would run).
fn extract(p: &Path, extra: &[&str], env: &[(&str, &str)]) -> (Output, serde_json::Value) {
    let report = p.join(".qpf/test-report.json");
    let _ = std::fs::remove_file(&report);
    let mut command = std::process::Command::new(support::qpf_bin());
    command.args(["extract", "--project", p.to_str().expect("utf-8"), "--report", report.to_str().expect("utf-8")]);
    command.args(extra).env("QPF_LOG", "warn").env_remove("QPF_RUN_SNAPSHOT");
    for (k, v) in env {
        command.env(k, v);
    }
    let out = command.output().expect("qpf runs");
    let value = if report.is_file() { support::report(&report) } else { serde_json::Value::Null };
    (out, value)
}

fn replayed(report: &serde_json::Value) -> bool {
    report["replayed"] == true
}

/// The example project with a settled snapshot: run, wait, run (that run, all hits, leaves the
/// snapshot); with that run's report.
fn settled() -> (tempfile::TempDir, serde_json::Value) {
    let tmp = support::example_project();
    let p = tmp.path();
    let (out, _) = extract(p, &[], &[]);
    assert!(out.status.success(), "{}", support::show(&out));
    std::thread::sleep(SETTLE);
    let (out, report) = extract(p, &[], &[]);
    assert!(out.status.success(), "{}", support::show(&out));
    assert!(!replayed(&report), "the first run left no snapshot: its outputs were new");
    assert!(p.join(".qpf/run-snapshot").is_file(), "a complete run over settled files leaves a snapshot");
    (tmp, report)
}

/// The report without what only says how long things took, or whether it was replayed.
fn timeless(mut report: serde_json::Value) -> serde_json::Value {
    let o = report.as_object_mut().expect("object");
    for k in ["load_us", "duration_us", "replayed"] {
        o.remove(k);
    }
    for inv in o["invocations"].as_array_mut().expect("invocations") {
        inv.as_object_mut().expect("object").remove("duration_us");
    }
    report
}

#[test]
fn a_run_over_unchanged_files_is_answered_from_the_snapshot_as_a_full_run_would_answer() {
    // The run that left the snapshot was a full run of hits: the replay must say what it said.
    let (tmp, full) = settled();
    let p = tmp.path();
    let before = support::tree(&p.join("out"));
    let lock = std::fs::read(p.join("qpf.lock")).expect("lock");
    let audit_lines = || std::fs::read_to_string(p.join(".qpf/audit.jsonl")).expect("audit").lines().count();
    let audited = audit_lines();
    let (out, replay) = extract(p, &[], &[]);
    assert!(out.status.success(), "{}", support::show(&out));
    assert!(replayed(&replay), "{}", support::show(&out));
    assert!(
        String::from_utf8_lossy(&out.stdout).contains("nothing changed since the last run"),
        "{}",
        support::show(&out)
    );
    assert_eq!(timeless(replay.clone()), timeless(full.clone()), "the replay reports what a full run of hits reports");
    let n = replay["summary"]["invocations"].as_u64().expect("count");
    assert!(n > 0);
    assert_eq!(replay["summary"]["hits"], n);
    assert_eq!(replay["summary"]["files_written"], 0);
    // Every invocation is audited, like a run's hits; nothing under the output root or the lock moved.
    assert_eq!(audit_lines(), audited + n as usize);
    assert_eq!(support::tree(&p.join("out")), before);
    assert_eq!(std::fs::read(p.join("qpf.lock")).expect("lock"), lock);
}

/// Each change below, made to a project with a settled snapshot, makes the next run a full one
/// that does what the change asks.
fn runs_again(change: &dyn Fn(&Path), extra: &[&str], env: &[(&str, &str)]) -> serde_json::Value {
    let (tmp, _) = settled();
    let p = tmp.path();
    change(p);
    let (out, report) = extract(p, extra, env);
    assert!(out.status.success(), "{}", support::show(&out));
    assert!(!replayed(&report), "a change ran again\n{}", support::show(&out));
    report
}

#[test]
fn an_edited_schema_or_a_new_one_runs_again() {
    let report = runs_again(
        &|p| {
            let file = p.join("agents/trainer.yaml");
            let text = std::fs::read_to_string(&file).expect("schema");
            let edited = text.replacen("description:", "description: Edited.", 1);
            assert_ne!(edited, text);
            std::fs::write(&file, edited).expect("write");
        },
        &[],
        &[],
    );
    assert!(report["summary"]["misses"].as_u64().expect("count") > 0, "{report}");
    let (_, was) = settled();
    let report = runs_again(
        &|p| {
            let text = std::fs::read_to_string(p.join("agents/trainer.yaml")).expect("schema");
            std::fs::write(p.join("agents/trainer2.yaml"), text.replacen("name: trainer", "name: trainer2", 1))
                .expect("write");
        },
        &[],
        &[],
    );
    assert!(
        report["summary"]["invocations"].as_u64() > was["summary"]["invocations"].as_u64(),
        "a new schema adds invocations: {report}"
    );
}

#[test]
fn a_removed_or_edited_output_is_restored() {
    let report = runs_again(&|p| std::fs::remove_file(p.join(first_output(p))).expect("remove"), &[], &[]);
    assert_eq!(report["summary"]["files_written"], 1, "{report}");
    // Edited in place with its size and modification time put back: the change time still moved.
    let report = runs_again(
        &|p| {
            let path = p.join(first_output(p));
            let meta = std::fs::metadata(&path).expect("meta");
            let mut bytes = std::fs::read(&path).expect("read");
            bytes[0] ^= 0x20;
            std::fs::write(&path, &bytes).expect("write");
            let f = std::fs::File::options().write(true).open(&path).expect("open");
            f.set_modified(meta.modified().expect("mtime")).expect("set mtime");
        },
        &[],
        &[],
    );
    assert_eq!(report["summary"]["files_written"], 1, "{report}");
}

/// The first generated file the lock names (relative to the project).
fn first_output(p: &Path) -> std::path::PathBuf {
    let lock: serde_json::Value =
        serde_json::from_slice(&std::fs::read(p.join("qpf.lock")).expect("lock")).expect("json");
    let files = lock["files"].as_object().expect("files");
    let generated = files.iter().find(|(_, f)| f.get("user_owned").is_none()).map(|(rel, _)| rel.clone());
    let rel = generated.expect("a generated file");
    Path::new("out").join(rel)
}

#[test]
fn a_changed_project_file_lock_or_request_runs_again() {
    runs_again(
        &|p| {
            let mut text = std::fs::read_to_string(p.join("qpf.yaml")).expect("qpf.yaml");
            text.push_str("# edited\n");
            std::fs::write(p.join("qpf.yaml"), text).expect("write");
        },
        &[],
        &[],
    );
    let (tmp, _) = settled();
    std::fs::remove_file(tmp.path().join("qpf.lock")).expect("remove");
    let (out, report) = extract(tmp.path(), &[], &[]);
    assert!(out.status.success() && !replayed(&report), "{}", support::show(&out));
    assert!(tmp.path().join("qpf.lock").is_file(), "the lock is written again");
    // Another output root, no cache, the snapshot turned off.
    let other = tempfile::tempdir().expect("tmp");
    let report = runs_again(&|_| {}, &["--out", other.path().to_str().expect("utf-8")], &[]);
    assert!(report["summary"]["files_written"].as_u64().expect("count") > 0, "{report}");
    runs_again(&|_| {}, &["--no-cache"], &[]);
    runs_again(&|_| {}, &[], &[("QPF_RUN_SNAPSHOT", "off")]);
    // Another `qpf` executable (here the same bytes under another name) may plan differently.
    let (tmp, _) = settled();
    let bin = tempfile::tempdir().expect("tmp");
    let other = bin.path().join("qpf");
    if std::fs::hard_link(support::qpf_bin(), &other).is_err() {
        std::fs::copy(support::qpf_bin(), &other).expect("copy qpf");
    }
    let out = std::process::Command::new(&other)
        .args(["extract", "--project", tmp.path().to_str().expect("utf-8")])
        .env("QPF_LOG", "warn")
        .env_remove("QPF_RUN_SNAPSHOT")
        .output()
        .expect("qpf runs");
    assert!(out.status.success(), "{}", support::show(&out));
    assert!(!String::from_utf8_lossy(&out.stdout).contains("nothing changed"), "{}", support::show(&out));
}

#[test]
fn a_snapshot_not_sealed_by_this_user_or_tampered_with_is_ignored() {
    runs_again(
        &|p| {
            let path = p.join(".qpf/run-snapshot");
            let mut bytes = std::fs::read(&path).expect("snapshot");
            // A digit of the fuel of some record: still JSON, but not what was sealed.
            let at = bytes.windows(7).position(|w| w == b"\"fuel\":").expect("a fuel field") + 7;
            bytes[at] = if bytes[at] == b'1' { b'2' } else { b'1' };
            std::fs::write(&path, bytes).expect("write");
        },
        &[],
        &[],
    );
    let secret = tempfile::tempdir().expect("tmp");
    let other = secret.path().join("secret");
    runs_again(&|_| {}, &[], &[("QPF_SECRET_FILE", other.to_str().expect("utf-8"))]);
}

#[test]
fn a_failed_run_leaves_no_snapshot_and_cache_clear_removes_one() {
    let tmp = support::hostile_project(
        &[("fine", serde_json::json!({"mode": "echo"})), ("crash", serde_json::json!({"mode": "trap"}))],
        "  fuel: 100000000\n",
    );
    let p = tmp.path();
    std::thread::sleep(SETTLE);
    let (out, _) = extract(p, &[], &[]);
    assert!(!out.status.success(), "{}", support::show(&out));
    assert!(!p.join(".qpf/run-snapshot").exists(), "a run with a failure leaves no snapshot");

    let (tmp, _) = settled();
    let out = support::qpf(&["cache", "clear", "--project", tmp.path().to_str().expect("utf-8")]);
    assert!(out.status.success(), "{}", support::show(&out));
    assert!(!tmp.path().join(".qpf/run-snapshot").exists());
    let (out, report) = extract(tmp.path(), &[], &[]);
    assert!(out.status.success() && !replayed(&report), "{}", support::show(&out));
    assert_eq!(report["summary"]["hits"], 0, "the cache was cleared: every invocation runs");
}

#[test]
fn cache_gc_keeps_the_entries_of_the_snapshot_it_stands_for() {
    let (tmp, _) = settled();
    let p = tmp.path();
    let manifests = || support::walk(&p.join(".qpf/cache/invocations/manifests"));
    let in_use = manifests();
    // An older run's entries: the trainer edited, extracted, and put back.
    let file = p.join("agents/trainer.yaml");
    let text = std::fs::read_to_string(&file).expect("schema");
    std::fs::write(&file, text.replacen("description:", "description: Older.", 1)).expect("write");
    let (out, _) = extract(p, &[], &[("QPF_RUN_SNAPSHOT", "off")]);
    assert!(out.status.success(), "{}", support::show(&out));
    std::fs::write(&file, &text).expect("write back");
    // Back to the snapshot's files: a run rewrites the trainer's outputs, a later one leaves the
    // snapshot once they have settled.
    for _ in 0..2 {
        std::thread::sleep(SETTLE);
        let (out, _) = extract(p, &[], &[]);
        assert!(out.status.success(), "{}", support::show(&out));
    }
    assert!(p.join(".qpf/run-snapshot").is_file());
    let older: Vec<_> = manifests().into_iter().filter(|m| !in_use.contains(m)).collect();
    assert!(!older.is_empty());
    // Replays open no manifest: make the snapshot's entries look the least recently used.
    let long_ago = std::time::SystemTime::now() - Duration::from_secs(3600);
    for m in &in_use {
        std::fs::File::options().write(true).open(m).expect("open").set_modified(long_ago).expect("mtime");
    }
    let size: u64 = older.iter().map(|m| std::fs::metadata(m).expect("meta").len()).sum();
    let total: u64 = support::walk(&p.join(".qpf/cache/invocations"))
        .iter()
        .map(|f| std::fs::metadata(f).expect("meta").len())
        .sum();
    let max = (total - size).to_string();
    let out = support::qpf(&["cache", "gc", "--max-size", &max, "--project", p.to_str().expect("utf-8")]);
    assert!(out.status.success(), "{}", support::show(&out));
    for m in &in_use {
        assert!(m.is_file(), "{} is the snapshot's and was kept", m.display());
    }
    assert!(older.iter().any(|m| !m.exists()), "an older entry went first");
}

#[test]
fn an_import_through_a_link_that_is_re_pointed_runs_again() {
    let tmp = tempfile::tempdir().expect("tmp");
    let p = tmp.path();
    let wasm = support::wasm("qpf_hostile");
    let write = |rel: &str, text: &str| {
        let path = p.join(rel);
        std::fs::create_dir_all(path.parent().expect("parent")).expect("mkdir");
        std::fs::write(path, text).expect("write");
    };
    let fragment = |greeting: &str| {
        format!(
            "apiVersion: qpf.dev/v1\nkind: Fragment\nmetadata: {{ name: base, version: 1.0.0 }}\nspec: {{ greeting: {greeting} }}\n"
        )
    };
    // The shared part lives in a hidden folder (not searched for schemas) behind a link.
    write(".shared/v1.yaml", &fragment("one"));
    write(".shared/v2.yaml", &fragment("two"));
    std::os::unix::fs::symlink("v1.yaml", p.join(".shared/current.yaml")).expect("link");
    write(
        "probes/probe.yaml",
        "apiVersion: qpf.dev/v1\nkind: Probe\nmetadata: { name: probe, version: 1.0.0 }\nimports: { base: ../.shared/current.yaml }\nextends: base\nspec: {}\n",
    );
    write("probe.schema.json", support::PROBE_KIND);
    write(
        "map.yaml",
        "entries:\n  - { id: echo, plugin: hostile, input: /spec, out: \"{name}\", config: { mode: echo } }\n",
    );
    write(
        "qpf.yaml",
        &format!(
            "version: 1\nschemas: [\"probes/*.yaml\"]\nkinds: {{ Probe: probe.schema.json }}\nmap: map.yaml\noutput: out\nplugins:\n  hostile: {{ path: {:?}, digest: \"{}\" }}\n",
            wasm.to_str().expect("utf-8"),
            support::digest(&wasm)
        ),
    );
    let greeting = || -> serde_json::Value {
        let echo: serde_json::Value =
            serde_json::from_slice(&std::fs::read(p.join("out/probe/echo.json")).expect("echo")).expect("json");
        echo["greeting"].clone()
    };
    for _ in 0..2 {
        std::thread::sleep(SETTLE);
        let (out, _) = extract(p, &[], &[]);
        assert!(out.status.success(), "{}", support::show(&out));
    }
    assert!(p.join(".qpf/run-snapshot").is_file());
    assert_eq!(greeting(), "one");
    std::fs::remove_file(p.join(".shared/current.yaml")).expect("unlink");
    std::os::unix::fs::symlink("v2.yaml", p.join(".shared/current.yaml")).expect("link");
    let (out, report) = extract(p, &[], &[]);
    assert!(out.status.success() && !replayed(&report), "{}", support::show(&out));
    assert_eq!(greeting(), "two");
}
