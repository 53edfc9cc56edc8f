//! The remote cache on object storage, against two S3 implementations on loopback: `s3s-fs`
//! (served from this test process) and moto's server (PyPI, installed under target/ by
//! `./dev tools`). One machine's results are another's verified hits; poisoned entries are misses
//! with warnings and are never written; read-only writes nothing; a remote that is down costs a
//! few warnings, not the run.

use std::path::{Path, PathBuf};
use std::process::Output;

use crate::support::{self, show};

use crate::s3::{ACCESS_KEY, S3s, SECRET_KEY};

/// A `qpf` command with the S3 credentials and endpoint in its environment, and none of the
/// caller's remote-cache settings.
pub(crate) fn qpf_command(endpoint: &str) -> std::process::Command {
    let mut command = std::process::Command::new(support::qpf_bin());
    command
        .env("QPF_LOG", "warn")
        .env("AWS_ACCESS_KEY_ID", ACCESS_KEY)
        .env("AWS_SECRET_ACCESS_KEY", SECRET_KEY)
        .env("AWS_REGION", "us-east-1")
        .env("AWS_ENDPOINT", endpoint)
        .env("AWS_ALLOW_HTTP", "true")
        .env_remove("QPF_REMOTE_CACHE")
        .env_remove("QPF_REMOTE_CACHE_KEY")
        .env_remove("QPF_REMOTE_CACHE_SALT")
        .env_remove("QPF_REMOTE_CACHE_HEADERS")
        .env_remove("QPF_REMOTE_READ_ONLY");
    command
}

/// `qpf ARGS` with the S3 credentials and endpoint in its environment.
pub(crate) fn qpf(args: &[&str], endpoint: &str) -> Output {
    qpf_command(endpoint).args(args).output().expect("qpf runs")
}

/// Runs `qpf extract` on a fresh copy of the example project (its own local cache) against the
/// remote at `url`, with `extra` flags; returns the copy, the run and its report.
fn extract(endpoint: &str, url: &str, extra: &[&str]) -> (tempfile::TempDir, Output, serde_json::Value) {
    extract_in(support::example_project(), endpoint, url, extra)
}

/// [`extract`] on a given project copy.
pub(crate) fn extract_in(
    project: tempfile::TempDir,
    endpoint: &str,
    url: &str,
    extra: &[&str],
) -> (tempfile::TempDir, Output, serde_json::Value) {
    let p = project.path().to_str().expect("utf-8").to_owned();
    let report = project.path().join("report.json");
    let mut args = vec!["extract", "--project", &p, "--remote-cache", url, "--report", report.to_str().expect("utf-8")];
    args.extend_from_slice(extra);
    let out = qpf(&args, endpoint);
    let report = if report.is_file() { support::report(&report) } else { serde_json::Value::Null };
    (project, out, report)
}

pub(crate) fn stdout(out: &Output) -> String {
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// The whole scenario against one S3 implementation: CI fills the cache, a laptop reads it.
fn one_machine_fills_and_another_hits(endpoint: &str, url: &str) -> usize {
    let (ci, out, report) = extract(endpoint, url, &[]);
    assert!(out.status.success(), "{}", show(&out));
    let n = report["summary"]["invocations"].as_u64().expect("count") as usize;
    assert_eq!(report["remote"]["misses"], n, "{report}");
    assert_eq!(report["remote"]["uploaded"], n, "{report}");
    assert_eq!(report["remote"]["errors"], 0, "{report}");
    assert!(
        stdout(&out).contains(&format!("remote cache {url}: 0 hits, {n} misses, {n} results uploaded")),
        "{}",
        show(&out)
    );

    let (laptop, out, report) = extract(endpoint, url, &[]);
    assert!(out.status.success(), "{}", show(&out));
    assert_eq!(report["summary"]["hits"], n, "every invocation is a hit: {report}");
    assert_eq!(report["remote"]["hits"], n, "{report}");
    assert_eq!(report["remote"]["rejected"], 0, "{report}");
    assert_eq!(support::tree(&ci.path().join("out")), support::tree(&laptop.path().join("out")), "byte-identical");
    n
}

#[test]
fn results_stored_by_one_run_are_verified_hits_for_another_on_s3s() {
    let s3 = S3s::start();
    let url = "s3://cache/ci";
    let n = one_machine_fills_and_another_hits(&s3.endpoint, url);
    assert!(s3.objects().iter().any(|o| o.starts_with("ci/qpf-cache/v1/ac")), "{:?}", s3.objects());

    read_only_under_a_new_salt_writes_nothing(&s3.endpoint, url, n, &|| s3.objects());
}

/// Read-only under a new salt, on a fresh copy of the example project (`n` invocations): every
/// invocation misses and `objects` (what the store holds) is unchanged.
pub(crate) fn read_only_under_a_new_salt_writes_nothing(
    endpoint: &str,
    url: &str,
    n: usize,
    objects: &dyn Fn() -> Vec<PathBuf>,
) {
    let before = objects();
    let project = support::example_project();
    let p = project.path().to_str().expect("utf-8");
    let out = qpf_command(endpoint)
        .args(["extract", "--project", p, "--remote-cache", url, "--remote-read-only"])
        .env("QPF_REMOTE_CACHE_SALT", "2026-12")
        .output()
        .expect("qpf runs");
    assert!(out.status.success(), "{}", show(&out));
    assert!(
        stdout(&out).contains(&format!("remote cache {url} (read-only): 0 hits, {n} misses, 0 results uploaded")),
        "{}",
        show(&out)
    );
    assert_eq!(objects(), before, "read-only wrote nothing");
}

#[test]
fn poisoned_remote_entries_are_misses_with_warnings_and_never_written() {
    let s3 = S3s::start();
    let url = "s3://cache/poison";
    // The whole example project: its larger files travel as blobs.
    let (ci, out, _) = extract_in(support::agents_project(), &s3.endpoint, url, &[]);
    assert!(out.status.success(), "{}", show(&out));
    let objects = s3.objects();
    let blobs: Vec<&PathBuf> = objects.iter().filter(|o| o.starts_with("poison/qpf-cache/v1/cas")).collect();
    assert!(blobs.len() >= 2, "{objects:?}");
    // Wrong bytes under one digest (same size, so only the digest tells); another blob evicted;
    // an entry that names neither cut short.
    let size = std::fs::metadata(s3.object(blobs[0])).expect("blob").len() as usize;
    std::fs::write(s3.object(blobs[0]), vec![b'#'; size]).expect("poison");
    std::fs::remove_file(s3.object(blobs[1])).expect("evict");
    let names = |b: &PathBuf| b.file_name().expect("name").to_string_lossy().into_owned();
    let (poisoned, evicted) = (names(blobs[0]), names(blobs[1]));
    let entry = objects
        .iter()
        .filter(|o| o.starts_with("poison/qpf-cache/v1/ac"))
        .find(|o| {
            let text = std::fs::read_to_string(s3.object(o)).expect("entry");
            !text.contains(&poisoned) && !text.contains(&evicted)
        })
        .expect("an entry that names neither blob");
    let text = std::fs::read(s3.object(entry)).expect("entry");
    std::fs::write(s3.object(entry), &text[..text.len() / 2]).expect("truncate");

    let (laptop, out, report) = extract_in(support::agents_project(), &s3.endpoint, url, &[]);
    assert!(out.status.success(), "{}", show(&out));
    assert!(report["remote"]["rejected"].as_u64().is_some_and(|n| n >= 3), "{}", report["remote"]);
    let err = String::from_utf8_lossy(&out.stderr);
    for why in ["does not match its digest", "which the store lacks", "corrupt or truncated"] {
        assert!(err.contains(why), "{why}: {}", show(&out));
    }
    // The refused invocations ran locally: the outputs are the true ones.
    assert_eq!(report["summary"]["failed"], 0, "{report}");
    assert_eq!(support::tree(&ci.path().join("out")), support::tree(&laptop.path().join("out")));
    // And their true results replaced the poisoned entries: a third machine hits everything.
    let (_, out, report) = extract_in(support::agents_project(), &s3.endpoint, url, &[]);
    assert!(out.status.success(), "{}", show(&out));
    assert_eq!(report["remote"]["rejected"], 0, "{}", report["remote"]);
    assert_eq!(report["remote"]["hits"], report["summary"]["invocations"], "{}", report["remote"]);
}

#[test]
fn a_remote_that_is_down_costs_warnings_not_the_run() {
    let closed = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let endpoint = format!("http://{}", closed.local_addr().expect("addr"));
    drop(closed);
    let (_project, out, report) = extract(&endpoint, "s3://cache/down", &[]);
    assert!(out.status.success(), "{}", show(&out));
    assert_eq!(report["summary"]["failed"], 0, "{report}");
    assert_eq!(report["remote"]["disabled"], true, "{report}");
    // Three failures in a row turn it off; with two jobs, one more may already be on its way.
    assert!(report["remote"]["errors"].as_u64().is_some_and(|n| (3..=4).contains(&n)), "{report}");
    assert!(stdout(&out).contains("(left alone after repeated failures)"), "{}", show(&out));
    assert!(String::from_utf8_lossy(&out.stderr).contains("not used for the rest of this run"), "{}", show(&out));
}

#[test]
fn a_project_names_object_storage_only_and_bad_urls_are_clear_errors() {
    let project = support::example_project();
    let p = project.path().to_str().expect("utf-8");
    let qpf_yaml = project.path().join("qpf.yaml");
    let text = std::fs::read_to_string(&qpf_yaml).expect("qpf.yaml");
    std::fs::write(&qpf_yaml, format!("{text}remote-cache:\n  url: file:///tmp/somewhere\n")).expect("write");
    let out = qpf(&["extract", "--project", p], "http://127.0.0.1:9");
    assert_eq!(out.status.code(), Some(1), "{}", show(&out));
    assert!(String::from_utf8_lossy(&out.stderr).contains("must be object storage"), "{}", show(&out));
    let out = qpf(&["extract", "--project", p, "--remote-cache", "ftp://x/y"], "http://127.0.0.1:9");
    assert_eq!(out.status.code(), Some(1), "{}", show(&out));
    assert!(String::from_utf8_lossy(&out.stderr).contains("not `ftp://`"), "{}", show(&out));
}

#[test]
fn results_stored_by_one_run_are_verified_hits_for_another_on_moto() {
    let moto = support::Moto::start();
    one_machine_fills_and_another_hits(&moto.endpoint, "s3://cache/ci");
}

/// `qpf extract` on `project` with the S3 environment, as a child process (not waited for).
fn spawn_extract(project: &Path, endpoint: &str, url: &str, extra: &[&str]) -> std::process::Child {
    qpf_command(endpoint)
        .args(["extract", "--project", project.to_str().expect("utf-8"), "--remote-cache", url])
        .args(extra)
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("qpf starts")
}

/// Runs the shards `indices` of `count` at once, each on its own copy of the example project (its
/// own local cache, as on separate CI runners), and checks that each succeeded.
pub(crate) fn run_shards(endpoint: &str, url: &str, indices: &[u32], count: u32) {
    let runs: Vec<(tempfile::TempDir, std::process::Child)> = indices
        .iter()
        .map(|i| {
            let project = support::agents_project();
            let child = spawn_extract(project.path(), endpoint, url, &["--shard", &format!("{i}/{count}")]);
            (project, child)
        })
        .collect();
    for (project, child) in runs {
        let out = child.wait_with_output().expect("qpf ends");
        assert!(out.status.success(), "{}", show(&out));
        assert!(stdout(&out).contains("marker stored"), "{}", show(&out));
        assert!(!project.path().join("out").exists(), "a shard writes no outputs");
        assert!(!project.path().join("qpf.lock").exists(), "a shard writes no lock");
    }
}

/// The gather of a sharded run on a fresh copy: `--require-hits --shards N`.
pub(crate) fn gather(endpoint: &str, url: &str, count: u32) -> (tempfile::TempDir, Output) {
    let project = support::agents_project();
    let child =
        spawn_extract(project.path(), endpoint, url, &["--require-hits", "--shards", &count.to_string(), "-j", "2"]);
    let out = child.wait_with_output().expect("qpf ends");
    (project, out)
}

#[test]
fn three_shards_then_a_gather_give_the_outputs_and_lock_of_one_run() {
    let single = support::agents_project();
    let out = support::qpf(&["extract", "--project", single.path().to_str().expect("utf-8")]);
    assert!(out.status.success(), "{}", show(&out));

    let s3 = S3s::start();
    let url = "s3://cache/sharded";
    run_shards(&s3.endpoint, url, &[1, 2, 3], 3);
    let (gathered, out) = gather(&s3.endpoint, url, 3);
    assert!(out.status.success(), "{}", show(&out));
    assert!(stdout(&out).contains("0 run, 0 failed"), "only hits: {}", show(&out));
    assert_eq!(
        support::tree(&single.path().join("out")),
        support::tree(&gathered.path().join("out")),
        "byte-identical"
    );
    assert_eq!(
        std::fs::read(single.path().join("qpf.lock")).expect("lock"),
        std::fs::read(gathered.path().join("qpf.lock")).expect("lock"),
        "the one lock"
    );
}

#[test]
fn a_gather_names_the_shard_whose_work_is_missing_and_a_rerun_of_it_completes_the_plan() {
    let s3 = S3s::start();
    let url = "s3://cache/missing";
    run_shards(&s3.endpoint, url, &[1, 3], 3);
    let (_, out) = gather(&s3.endpoint, url, 3);
    assert_eq!(out.status.code(), Some(1), "{}", show(&out));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("error: shard 2/3:") && err.contains("left no marker for this plan"), "{}", show(&out));
    assert!(!err.contains("shard 1/3") && !err.contains("shard 3/3"), "{}", show(&out));

    // Shard 2 is killed (-9) part-way, then run again; meanwhile a second copy of it runs too.
    let project = support::agents_project();
    let mut killed = spawn_extract(project.path(), &s3.endpoint, url, &["--shard", "2/3"]);
    std::thread::sleep(std::time::Duration::from_millis(300));
    let _ = killed.kill();
    let _ = killed.wait();
    run_shards(&s3.endpoint, url, &[2, 2], 3);
    let (_, out) = gather(&s3.endpoint, url, 3);
    assert!(out.status.success(), "{}", show(&out));
}

#[test]
fn a_shard_needs_a_writable_remote_and_a_well_formed_index() {
    let project = support::example_project();
    let p = project.path().to_str().expect("utf-8");
    let out = support::qpf(&["extract", "--project", p, "--shard", "1/2"]);
    assert_eq!(out.status.code(), Some(64), "{}", show(&out));
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("--shard stores its results in the remote cache"),
        "{}",
        show(&out)
    );
    let out = support::qpf(&["extract", "--project", p, "--shard", "3/2", "--remote-cache", "file:///tmp/qpf-unused"]);
    assert_eq!(out.status.code(), Some(1), "{}", show(&out));
    assert!(String::from_utf8_lossy(&out.stderr).contains("expected I/N"), "{}", show(&out));
    let out = std::process::Command::new(support::qpf_bin())
        .args(["extract", "--project", p, "--shard", "auto", "--remote-cache", "file:///tmp/qpf-unused"])
        .env("QPF_LOG", "warn")
        .env("JOB_COMPLETION_INDEX", "0")
        .output()
        .expect("qpf runs");
    assert_eq!(out.status.code(), Some(1), "{}", show(&out));
    assert!(String::from_utf8_lossy(&out.stderr).contains("needs --shards N"), "{}", show(&out));
}

#[test]
fn a_remote_that_goes_down_mid_run_leaves_the_run_whole() {
    let s3 = S3s::start();
    going_down_mid_run_leaves_the_run_whole(&s3.endpoint, "s3://cache/mid-run", &mut || {
        // Down as soon as the first results have arrived: the run is then in its middle.
        let started = std::time::Instant::now();
        while s3.objects().len() < 3 && started.elapsed() < std::time::Duration::from_secs(120) {
            std::thread::sleep(std::time::Duration::from_millis(1));
        }
        s3.set_down(true);
    });
}

/// The agents project run once locally, then against the remote at `url` with one job, while
/// `go_down` waits for the first results to arrive and takes the remote down: the run succeeds,
/// uploads stop part-way, the failures are counted and the outputs are those of the local run.
pub(crate) fn going_down_mid_run_leaves_the_run_whole(endpoint: &str, url: &str, go_down: &mut dyn FnMut()) {
    let single = support::agents_project();
    let out = support::qpf(&["extract", "--project", single.path().to_str().expect("utf-8")]);
    assert!(out.status.success(), "{}", show(&out));

    let project = support::agents_project();
    let report = project.path().join("report.json");
    let child = spawn_extract(project.path(), endpoint, url, &["-j", "1", "--report", report.to_str().expect("utf-8")]);
    go_down();
    let out = child.wait_with_output().expect("qpf ends");
    assert!(out.status.success(), "{}", show(&out));
    let report = support::report(&report);
    let remote = &report["remote"];
    assert!(remote["uploaded"].as_u64().is_some_and(|n| n > 0 && n < 65), "uploads stopped part-way: {remote}");
    assert!(remote["errors"].as_u64().is_some_and(|n| n >= 1), "{remote}");
    assert_eq!(report["summary"]["failed"], 0, "{report}");
    assert_eq!(support::tree(&single.path().join("out")), support::tree(&project.path().join("out")), "whole outputs");
}
