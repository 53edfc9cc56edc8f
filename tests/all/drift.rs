//! `qpf drift`: modified, missing, orphan and stale files; exit codes 0 / 2 / 1; `--fix`.

use std::path::Path;

use crate::support::{self, qpf, show};

fn drift(p: &Path, extra: &[&str]) -> (Option<i32>, serde_json::Value, String) {
    let mut args = vec!["drift", "--project", p.to_str().unwrap(), "--format", "json"];
    args.extend_from_slice(extra);
    let out = qpf(&args);
    let stdout = String::from_utf8_lossy(&out.stdout);
    let json = stdout.lines().last().and_then(|l| serde_json::from_str(l).ok()).unwrap_or(serde_json::Value::Null);
    (out.status.code(), json, show(&out))
}

fn classes(report: &serde_json::Value) -> Vec<(String, String)> {
    report["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|i| (i["class"].as_str().unwrap().to_owned(), i["path"].as_str().unwrap().to_owned()))
        .collect()
}

fn extracted() -> tempfile::TempDir {
    let project = support::example_project();
    let out = qpf(&["extract", "--project", project.path().to_str().unwrap()]);
    assert!(out.status.success(), "{}", show(&out));
    project
}

#[test]
fn a_fresh_extraction_has_no_drift_and_exits_0() {
    let project = extracted();
    let (code, report, shown) = drift(project.path(), &[]);
    assert_eq!(code, Some(0), "{shown}");
    assert_eq!(report["items"], serde_json::json!([]));
    assert_eq!(report["checked"], 10);
}

#[test]
fn hand_edits_deletions_schema_changes_and_removed_entries_are_classified_and_exit_2() {
    let project = extracted();
    let p = project.path();
    std::fs::write(p.join("out/monitor/docs/API.md"), "# edited by hand\n").unwrap();
    std::fs::remove_file(p.join("out/adapter/docs/API.md")).unwrap();
    let trainer = p.join("agents/trainer.yaml");
    std::fs::write(&trainer, std::fs::read_to_string(&trainer).unwrap().replace("default: 3 }", "default: 7 }"))
        .unwrap();
    let map = p.join("extractors.yaml");
    let text = std::fs::read_to_string(&map).unwrap();
    let cut = text.find("  - id: api-docs").unwrap();
    std::fs::write(
        &map,
        format!(
            "{}{}",
            &text[..cut],
            text[cut..]
                .replace("select: { kind: Agent }", "select: { kind: Agent, names: [monitor, adapter, trainer] }")
        ),
    )
    .unwrap();
    let (code, report, shown) = drift(p, &[]);
    assert_eq!(code, Some(2), "{shown}");
    let found = classes(&report);
    for expected in [
        ("modified", "monitor/docs/API.md"),
        ("missing", "adapter/docs/API.md"),
        ("stale", "trainer/src/trainer/models.py"),
        ("stale", "trainer/docs/API.md"),
        ("orphan", "orchestrator/docs/API.md"),
        ("orphan", "auditor/docs/API.md"),
    ] {
        assert!(found.contains(&(expected.0.to_owned(), expected.1.to_owned())), "{expected:?} not in {found:?}");
    }
    assert_eq!(found.len(), 6, "{found:?}");
}

#[test]
fn fix_restores_from_the_cache_without_plugins_removes_orphans_and_re_extracts_stale_files() {
    let project = extracted();
    let p = project.path();
    let original = std::fs::read(p.join("out/monitor/docs/API.md")).unwrap();
    std::fs::write(p.join("out/monitor/docs/API.md"), "# edited by hand\n").unwrap();
    std::fs::remove_file(p.join("out/adapter/src/adapter/models.py")).unwrap();
    let out = qpf(&["drift", "--project", p.to_str().unwrap(), "--fix"]);
    assert_eq!(out.status.code(), Some(0), "{}", show(&out));
    assert!(String::from_utf8_lossy(&out.stderr).contains("(0 plugin runs, 10 from the cache)"), "{}", show(&out));
    assert_eq!(std::fs::read(p.join("out/monitor/docs/API.md")).unwrap(), original);
    assert!(p.join("out/adapter/src/adapter/models.py").is_file());

    let trainer = p.join("agents/trainer.yaml");
    std::fs::write(&trainer, std::fs::read_to_string(&trainer).unwrap().replace("default: 3 }", "default: 7 }"))
        .unwrap();
    let map = p.join("extractors.yaml");
    let text = std::fs::read_to_string(&map).unwrap();
    std::fs::write(&map, &text[..text.find("  - id: api-docs").unwrap()]).unwrap();
    let out = qpf(&["drift", "--project", p.to_str().unwrap(), "--fix"]);
    assert_eq!(out.status.code(), Some(0), "{}", show(&out));
    assert!(String::from_utf8_lossy(&out.stderr).contains("(1 plugin runs, 4 from the cache)"), "{}", show(&out));
    assert!(std::fs::read_to_string(p.join("out/trainer/src/trainer/models.py")).unwrap().contains("default=7"));
    assert!(!p.join("out/monitor/docs/API.md").exists(), "orphans are removed");
    let (code, _, shown) = drift(p, &[]);
    assert_eq!(code, Some(0), "{shown}");
}

#[test]
fn a_hand_edited_orphan_is_kept() {
    let project = extracted();
    let p = project.path();
    std::fs::write(p.join("out/monitor/docs/API.md"), "# my notes now\n").unwrap();
    let map = p.join("extractors.yaml");
    let text = std::fs::read_to_string(&map).unwrap();
    std::fs::write(&map, &text[..text.find("  - id: api-docs").unwrap()]).unwrap();
    let out = qpf(&["drift", "--project", p.to_str().unwrap(), "--fix"]);
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("monitor/docs/API.md: edited by hand, kept"),
        "{}",
        show(&out)
    );
    assert_eq!(std::fs::read_to_string(p.join("out/monitor/docs/API.md")).unwrap(), "# my notes now\n");
}

#[test]
fn an_invalid_project_is_an_error_1_not_drift() {
    let project = extracted();
    let p = project.path();
    std::fs::write(p.join("agents/broken.yaml"), "kind: [\n").unwrap();
    let (code, _, shown) = drift(p, &[]);
    assert_eq!(code, Some(1), "{shown}");
}

#[test]
fn an_output_edited_in_place_with_its_old_times_is_still_drift_and_is_rewritten() {
    let project = extracted();
    let p = project.path();
    // Settled, then a run of all hits records the outputs' stats in `.qpf/outputs.json`.
    std::thread::sleep(std::time::Duration::from_millis(2100));
    let out = qpf(&["extract", "--project", p.to_str().unwrap()]);
    assert!(out.status.success(), "{}", show(&out));
    assert!(p.join(".qpf/outputs.json").is_file(), "the stats were recorded");

    // The same length, other bytes, the modification time put back.
    let file = p.join("out/monitor/docs/API.md");
    let mtime = std::fs::metadata(&file).unwrap().modified().unwrap();
    let text = std::fs::read_to_string(&file).unwrap();
    let edited: String = text.chars().map(|c| if c == 'e' { 'E' } else { c }).collect();
    assert_eq!((edited.len(), edited != text), (text.len(), true));
    std::fs::write(&file, &edited).unwrap();
    std::fs::File::options().write(true).open(&file).unwrap().set_modified(mtime).unwrap();

    let (code, report, shown) = drift(p, &[]);
    assert_eq!(code, Some(2), "{shown}");
    assert_eq!(classes(&report), [("modified".to_owned(), "monitor/docs/API.md".to_owned())]);
    let out = qpf(&["extract", "--project", p.to_str().unwrap()]);
    assert!(out.status.success(), "{}", show(&out));
    assert!(String::from_utf8_lossy(&out.stdout).contains("1 files written"), "{}", show(&out));
    assert_eq!(std::fs::read_to_string(&file).unwrap(), text, "a cache hit wrote it back");
}
