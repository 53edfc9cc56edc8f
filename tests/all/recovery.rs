//! Self-healing: a killed run never leaves a partial output, and a corrupted cache entry is
//! detected and never served.

use std::path::Path;
use std::time::Duration;

use crate::support::{self, qpf, show};

/// A small deterministic pseudo-random sequence (no dependency needed for picking kill times).
struct Lcg(u64);

impl Lcg {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
        self.0 >> 33
    }
}

fn reference_tree() -> Vec<(std::path::PathBuf, Vec<u8>)> {
    let project = support::example_project();
    let out = qpf(&["extract", "--project", project.path().to_str().unwrap(), "--no-cache"]);
    assert!(out.status.success(), "{}", show(&out));
    support::tree(&project.path().join("out"))
}

#[test]
fn sigkill_at_25_moments_never_leaves_a_partial_file_and_the_next_run_completes() {
    let reference = reference_tree();
    let project = support::example_project();
    let p = project.path();
    let out_dir = p.join("out");
    let mut rng = Lcg(std::process::id() as u64 ^ 0x5eed);
    for round in 0..25 {
        // Change a schema each round so that there is real work to interrupt.
        let monitor = p.join("agents/monitor.yaml");
        let text = std::fs::read_to_string(&monitor).unwrap();
        let next = if round % 2 == 0 {
            text.replace("default: warning", "default: critical")
        } else {
            text.replace("default: critical", "default: warning")
        };
        std::fs::write(&monitor, next).unwrap();
        let mut child = std::process::Command::new(support::qpf_bin())
            .args(["extract", "--project", p.to_str().unwrap(), "--jobs", "2"])
            .env("QPF_RUN_SNAPSHOT", "off")
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .unwrap();
        std::thread::sleep(Duration::from_micros(rng.next() % 60_000));
        let _ = child.kill(); // SIGKILL on unix
        let _ = child.wait();
        for path in support::walk(&out_dir) {
            let name = path.file_name().unwrap().to_string_lossy().into_owned();
            // A kill can leave a temporary sibling behind; it is never mistaken for an output.
            if name.contains(".qpf-tmp-") {
                continue;
            }
            let rel = path.strip_prefix(&out_dir).unwrap().to_owned();
            let bytes = std::fs::read(&path).unwrap();
            let complete = reference.iter().any(|(r, b)| *r == rel && *b == bytes)
                || (rel.ends_with("monitor/docs/API.md") && bytes.ends_with(b"|\n"))
                || (rel.ends_with("monitor/src/monitor/models.py") && bytes.ends_with(b"model_rebuild()\n"));
            assert!(complete, "round {round}: `{}` is partial or unknown ({} bytes)", rel.display(), bytes.len());
        }
        if let Ok(lock) = std::fs::read(p.join("qpf.lock")) {
            serde_json::from_slice::<serde_json::Value>(&lock)
                .unwrap_or_else(|e| panic!("round {round}: the lock is unreadable: {e}"));
        }
    }
    // The state is readable and the next run completes with correct outputs.
    let plan = qpf(&["plan", "--project", p.to_str().unwrap()]);
    assert!(plan.status.success(), "{}", show(&plan));
    let monitor = p.join("agents/monitor.yaml");
    let text = std::fs::read_to_string(&monitor).unwrap().replace("default: critical", "default: warning");
    std::fs::write(&monitor, text).unwrap();
    let out = qpf(&["extract", "--project", p.to_str().unwrap()]);
    assert!(out.status.success(), "{}", show(&out));
    let after: Vec<_> =
        support::tree(&out_dir).into_iter().filter(|(r, _)| !r.to_string_lossy().contains(".qpf-tmp-")).collect();
    assert_eq!(after, reference);
    let drift = qpf(&["drift", "--project", p.to_str().unwrap()]);
    assert_eq!(drift.status.code(), Some(0), "{}", show(&drift));
}

fn blobs(cache: &Path) -> Vec<std::path::PathBuf> {
    support::walk(&cache.join("blobs"))
}

#[test]
fn a_corrupted_cache_entry_is_reported_and_treated_as_a_miss_never_served() {
    let reference = reference_tree();
    let project = support::example_project();
    let p = project.path();
    assert!(qpf(&["extract", "--project", p.to_str().unwrap()]).status.success());
    let cache = p.join(".qpf/cache/invocations");
    // Flip one byte of every blob, and of every manifest's body (small files live inside their
    // manifest), then delete the outputs so that the cache would have to serve them.
    for blob in blobs(&cache) {
        let mut bytes = std::fs::read(&blob).unwrap();
        bytes[0] ^= 0x20;
        std::fs::write(&blob, bytes).unwrap();
    }
    let manifests = support::walk(&cache.join("manifests"));
    assert_eq!(manifests.len(), 10);
    for manifest in manifests {
        let mut bytes = std::fs::read(&manifest).unwrap();
        let last = bytes.len() - 2;
        bytes[last] ^= 0x20;
        std::fs::write(&manifest, bytes).unwrap();
    }
    std::fs::remove_dir_all(p.join("out")).unwrap();
    let report_path = p.join("r.json");
    let out = qpf(&["extract", "--project", p.to_str().unwrap(), "--report", report_path.to_str().unwrap()]);
    assert!(out.status.success(), "{}", show(&out));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("corrupted"), "the corruption is reported: {stderr}");
    let report = support::report(&report_path);
    assert_eq!(report["summary"]["misses"], 10, "every corrupted entry was re-run");
    assert_eq!(support::tree(&p.join("out")), reference, "never served");
    std::fs::remove_dir_all(p.join("out")).unwrap();
    let out = qpf(&["extract", "--project", p.to_str().unwrap(), "--report", report_path.to_str().unwrap()]);
    assert!(out.status.success(), "{}", show(&out));
    assert_eq!(support::report(&report_path)["summary"]["hits"], 10, "the re-run repaired the cache");
    assert_eq!(support::tree(&p.join("out")), reference);

    for manifest in support::walk(&cache.join("manifests")) {
        let bytes = std::fs::read(&manifest).unwrap();
        std::fs::write(&manifest, &bytes[..bytes.len() / 2]).unwrap();
    }
    let out = qpf(&["extract", "--project", p.to_str().unwrap(), "--report", report_path.to_str().unwrap()]);
    assert!(out.status.success(), "{}", show(&out));
    assert!(String::from_utf8_lossy(&out.stderr).contains("corrupted"), "{}", show(&out));
    assert_eq!(support::report(&report_path)["summary"]["misses"], 10);
    assert_eq!(support::tree(&p.join("out")), reference);
}

#[test]
fn cache_gc_trims_least_recently_used_entries_and_keeps_what_fits() {
    let project = support::example_project();
    let p = project.path().to_str().unwrap();
    // A private compiled cache: this test counts and clears it.
    let compiled = tempfile::tempdir().unwrap();
    let env = [("QPF_COMPILED_CACHE", compiled.path())];
    let qpf = |args: &[&str]| support::qpf_env(args, &env);
    assert!(qpf(&["extract", "--project", p]).status.success());
    let stats = |args: &[&str]| {
        let out = qpf(args);
        assert!(out.status.success(), "{}", show(&out));
        serde_json::from_slice::<serde_json::Value>(&out.stdout).unwrap()
    };
    let before = stats(&["cache", "stats", "--project", p, "--format", "json"]);
    assert_eq!(before["manifests"], 10);
    assert_eq!(before["compiled"], 2);
    let half = before["invocation_bytes"].as_u64().unwrap() / 2;
    let gc = stats(&["cache", "gc", "--project", p, "--max-size", &half.to_string(), "--format", "json"]);
    assert!(gc["bytes_after"].as_u64().unwrap() <= half, "{gc}");
    assert!(gc["manifests_removed"].as_u64().unwrap() > 0, "{gc}");
    // What is left is still valid: the next run serves the rest from the cache and re-runs the others.
    let report_path = project.path().join("r.json");
    std::fs::remove_dir_all(project.path().join("out")).unwrap();
    assert!(qpf(&["extract", "--project", p, "--report", report_path.to_str().unwrap()]).status.success());
    let report = support::report(&report_path);
    assert_eq!(report["summary"]["misses"].as_u64().unwrap(), gc["manifests_removed"].as_u64().unwrap());
    assert_eq!(before["compiled_dir"], compiled.path().display().to_string());
    let cleared = stats(&["cache", "clear", "--project", p, "--format", "json"]);
    assert!(cleared["bytes_freed"].as_u64().unwrap() > 0);
    let after = stats(&["cache", "stats", "--project", p, "--format", "json"]);
    assert_eq!((after["manifests"].as_u64(), after["compiled"].as_u64()), (Some(0), Some(0)));
}

#[test]
fn cache_clear_waits_for_a_running_extraction() {
    let project = support::example_project();
    let p = project.path().to_str().unwrap();
    // A private compiled cache: `clear` deletes it.
    let compiled = tempfile::tempdir().unwrap();
    assert!(
        support::qpf_env(&["extract", "--project", p], &[("QPF_COMPILED_CACHE", compiled.path())]).status.success()
    );
    let cache_root = project.path().join(".qpf/cache");
    // Hold the shared lock as a running `qpf extract` does.
    let lock = std::fs::OpenOptions::new().write(true).open(cache_root.join(".lock")).unwrap();
    lock.lock_shared().unwrap();
    let mut child = std::process::Command::new(support::qpf_bin())
        .args(["cache", "clear", "--project", p])
        .env("QPF_COMPILED_CACHE", compiled.path())
        .stderr(std::process::Stdio::piped())
        .stdout(std::process::Stdio::null())
        .spawn()
        .unwrap();
    std::thread::sleep(Duration::from_millis(300));
    assert!(child.try_wait().unwrap().is_none(), "clear must wait while a run holds the cache");
    assert!(cache_root.join("invocations").exists(), "nothing deleted yet");
    lock.unlock().unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("waiting for another qpf"));
    assert!(!cache_root.join("invocations").exists());
}
