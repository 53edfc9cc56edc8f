//! `qpf schema diff | check | migrate`.

use std::path::Path;
use std::process::Command;

use crate::support::{self, qpf, show};

fn git(dir: &Path, args: &[&str]) {
    let out = Command::new("git")
        .args(["-c", "user.name=qpf-test", "-c", "user.email=qpf-test@example.invalid", "-c", "commit.gpgsign=false"])
        .args(args)
        .current_dir(dir)
        .output()
        .expect("git runs");
    assert!(out.status.success(), "git {args:?}: {}", String::from_utf8_lossy(&out.stderr));
}

fn repo_with_example() -> tempfile::TempDir {
    let project = support::example_project();
    git(project.path(), &["init", "-q"]);
    git(project.path(), &["add", "-A"]);
    git(project.path(), &["commit", "-q", "-m", "example"]);
    project
}

fn edit(path: &Path, from: &str, to: &str) {
    let text = std::fs::read_to_string(path).unwrap();
    assert!(text.contains(from), "{} lacks {from:?}", path.display());
    std::fs::write(path, text.replacen(from, to, 1)).unwrap();
}

#[test]
fn diff_classifies_each_change_with_its_reason() {
    let project = repo_with_example();
    let p = project.path();
    let trainer = p.join("agents/trainer.yaml");
    edit(&trainer, "default: 3 }", "default: 4 }");
    edit(&trainer, "description: Start a training job and return its first checkpoint.", "description: Start a job.");
    edit(&trainer, "errors: [DatasetNotFound, QuotaExceeded]", "errors: [DatasetNotFound]");
    // `REV:path` and plain paths are relative to the current folder, as with `git show`.
    let out = Command::new(support::qpf_bin())
        .args(["schema", "diff", "--format", "json", "HEAD:agents/trainer.yaml", "agents/trainer.yaml"])
        .current_dir(p)
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", show(&out));
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let reasons: Vec<(String, String)> = v["changes"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| (c["class"].as_str().unwrap().to_owned(), c["reason"].as_str().unwrap().to_owned()))
        .collect();
    assert!(reasons.contains(&("breaking".into(), "default-changed".into())), "{reasons:?}");
    assert!(reasons.contains(&("cosmetic".into(), "description-changed".into())), "{reasons:?}");
    assert!(reasons.contains(&("non-breaking".into(), "error-removed".into())), "{reasons:?}");
    assert_eq!(v["required_bump"], "major");
}

#[test]
fn a_change_in_a_shared_fragment_shows_in_every_schema_that_extends_it() {
    let project = repo_with_example();
    let p = project.path();
    edit(&p.join("fragments/base-agent.yaml"), "default: INFO", "default: DEBUG");
    let out = Command::new(support::qpf_bin())
        .args(["schema", "check", "--against", "HEAD", "--format", "json"])
        .current_dir(p)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1), "{}", show(&out));
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["failed"], 5, "all five agents extend the fragment: {v}");
}

#[test]
fn check_fails_without_the_bump_a_breaking_change_needs_and_passes_with_it() {
    let project = repo_with_example();
    let p = project.path();
    let orchestrator = p.join("agents/orchestrator.yaml");
    edit(&orchestrator, "        - { name: deadline, type: datetime, optional: true }\n", "");
    let check = || {
        Command::new(support::qpf_bin()).args(["schema", "check", "--against", "HEAD"]).current_dir(p).output().unwrap()
    };
    let out = check();
    assert_eq!(out.status.code(), Some(1), "{}", show(&out));
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(stdout.contains("needs-bump Agent/orchestrator@1.2.0") && stdout.contains("field-removed"), "{stdout}");
    edit(&orchestrator, "version: 1.2.0", "version: 1.3.0");
    assert_eq!(check().status.code(), Some(1), "a minor bump is not enough for a breaking change");
    edit(&orchestrator, "version: 1.3.0", "version: 2.0.0");
    let out = check();
    assert!(out.status.success(), "{}", show(&out));
}

#[test]
fn check_fails_on_any_change_without_a_version_bump() {
    let project = repo_with_example();
    let p = project.path();
    edit(&p.join("agents/monitor.yaml"), "Watches swarm metrics", "Watches the swarm's metrics");
    let out = Command::new(support::qpf_bin())
        .args(["schema", "check", "--against", "HEAD"])
        .current_dir(p)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1), "{}", show(&out));
    assert!(String::from_utf8_lossy(&out.stdout).contains("needs-bump Agent/monitor@0.9.0"), "{}", show(&out));
}

#[test]
fn migrate_applies_chained_migrations_as_the_fixture_expects() {
    let fixture = support::workspace_root().join("tests/fixtures/migrate");
    let out = qpf(&[
        "schema",
        "migrate",
        "--project",
        fixture.to_str().unwrap(),
        fixture.join("agents/scout.yaml").to_str().unwrap(),
    ]);
    assert!(out.status.success(), "{}", show(&out));
    support::golden(&fixture.join("expected/scout.yaml"), &String::from_utf8_lossy(&out.stdout));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("agent-1-to-2.yaml") && stderr.contains("agent-2-to-3.yaml"), "{stderr}");
}

#[test]
fn migrate_write_rewrites_the_file_in_place() {
    let tmp = tempfile::tempdir().unwrap();
    let fixture = support::workspace_root().join("tests/fixtures/migrate");
    for rel in
        ["qpf.yaml", "map.yaml", "migrations/agent-1-to-2.yaml", "migrations/agent-2-to-3.yaml", "agents/scout.yaml"]
    {
        std::fs::create_dir_all(tmp.path().join(rel).parent().unwrap()).unwrap();
        std::fs::copy(fixture.join(rel), tmp.path().join(rel)).unwrap();
    }
    let file = tmp.path().join("agents/scout.yaml");
    let out = qpf(&["schema", "migrate", "--write", "--project", tmp.path().to_str().unwrap(), file.to_str().unwrap()]);
    assert!(out.status.success(), "{}", show(&out));
    assert_eq!(
        std::fs::read_to_string(&file).unwrap(),
        std::fs::read_to_string(fixture.join("expected/scout.yaml")).unwrap()
    );
}
