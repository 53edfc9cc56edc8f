//! Template spawns: a plugin asks for a new schema completed from a template of the map, and every
//! entry that selects it extracts it, within the spawning entry's policy.

use std::path::Path;

use serde_json::json;

use crate::support::{self, qpf, show};

const TEMPLATE: &str = "apiVersion: qpf.dev/v1\nkind: Probe\nmetadata:\n  name: handler\n  version: 0.1.0\n  labels: { made: template }\nspec:\n  greeting: from the template\n  kept: yes\n";

/// A hostile project with the template `handler` and two entries: `top` (the probe schema only)
/// asks for `spawns` with `policy` as its spawn policy; `gen` echoes every Probe's spec into
/// `out/{name}`.
fn project(spawns: serde_json::Value, policy: &str) -> tempfile::TempDir {
    let project = support::hostile_project_with(&[], "  fuel: 100000000\n");
    let p = project.path();
    std::fs::create_dir_all(p.join("templates")).unwrap();
    std::fs::write(p.join("templates/handler.yaml"), TEMPLATE).unwrap();
    let map = format!(
        "templates:\n  handler: templates/handler.yaml\nentries:\n  - id: top\n    plugin: hostile\n    select: {{ names: [probe] }}\n    input: /spec\n    out: top\n    config: {}\n    spawn: {policy}\n  - id: gen\n    plugin: hostile\n    select: {{ kind: Probe }}\n    input: /spec\n    out: \"{{name}}\"\n    config: {{ mode: echo }}\n",
        json!({"mode": "spawn", "spawn": spawns})
    );
    std::fs::write(p.join("map.yaml"), map).unwrap();
    project
}

fn asks(input: serde_json::Value) -> serde_json::Value {
    json!([{"plugin": "template:handler", "input": input, "config": {}}])
}

fn extract(p: &Path) -> (std::process::Output, serde_json::Value) {
    let report = p.join("r.json");
    let out = qpf(&["extract", "--project", p.to_str().unwrap(), "--report", report.to_str().unwrap()]);
    let report = if report.is_file() { support::report(&report) } else { serde_json::Value::Null };
    (out, report)
}

fn errors(report: &serde_json::Value) -> Vec<String> {
    report["invocations"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|i| i["error"]["message"].as_str().map(str::to_owned))
        .collect()
}

#[test]
fn a_template_spawn_is_extracted_by_every_entry_that_selects_it_and_locked_under_its_spawner() {
    let ask = asks(json!({"name": "probe-handler", "version": "2.0.0", "spec": {"greeting": "hi", "kept": null}}));
    let project = project(ask, "{ templates: [handler] }");
    let p = project.path();
    let (out, report) = extract(p);
    assert!(out.status.success(), "{}", show(&out));
    let entries: Vec<&str> =
        report["invocations"].as_array().unwrap().iter().map(|i| i["entry"].as_str().unwrap()).collect();
    assert_eq!(entries, ["top", "top>template:handler#0>gen", "gen"], "{report}");
    // The template's spec with the request's merged in (`null` removed `kept`).
    assert_eq!(std::fs::read_to_string(p.join("out/probe-handler/echo.json")).unwrap(), r#"{"greeting":"hi"}"#);
    // The schema the new one came from is the spawner's: drift and impact judge it by `top`.
    let lock: serde_json::Value = serde_json::from_slice(&std::fs::read(p.join("qpf.lock")).unwrap()).unwrap();
    let locked = &lock["files"]["probe-handler/echo.json"];
    assert_eq!(locked["spawned_by"]["entry"], "top", "{lock}");
    assert_eq!(locked["schema"], "Probe/probe@1.0.0", "{lock}");

    // Nothing changed: every invocation is a hit, and drift is clean.
    let (out, report) = extract(p);
    assert!(out.status.success(), "{}", show(&out));
    assert!(report["invocations"].as_array().unwrap().iter().all(|i| i["cache"] == "hit"), "{report}");
    let drift = qpf(&["drift", "--project", p.to_str().unwrap()]);
    assert_eq!(drift.status.code(), Some(0), "{}", show(&drift));

    // What a change of the template affects: its spawner, and the files of what it spawned.
    let template = p.join("templates/handler.yaml");
    let args = ["impact", "--project", p.to_str().unwrap(), "--format", "json", template.to_str().unwrap()];
    let out = qpf(&args);
    assert!(out.status.success(), "{}", show(&out));
    let impact: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(impact["invocations"], json!([["top", "Probe/probe@1.0.0"]]), "{impact}");
    assert_eq!(impact["files"], json!(["probe-handler/echo.json", "top/top.json"]), "{impact}");

    // A change to how the new schema is planned (the config of `gen`, which extracts it) is a
    // change of its spawner too: drift calls the spawned file stale.
    let map = std::fs::read_to_string(p.join("map.yaml")).unwrap();
    std::fs::write(p.join("map.yaml"), map.replace("config: { mode: echo }", "config: { mode: echo, path: p }"))
        .unwrap();
    let drift = qpf(&["drift", "--project", p.to_str().unwrap()]);
    assert_eq!(drift.status.code(), Some(2), "{}", show(&drift));
    assert!(String::from_utf8_lossy(&drift.stdout).contains("stale     probe-handler/echo.json"), "{}", show(&drift));
    std::fs::write(p.join("map.yaml"), map).unwrap();

    // Editing the template changes the spawner's key: drift calls the file stale, a run rewrites it.
    std::fs::write(p.join("templates/handler.yaml"), TEMPLATE.replace("kept: yes", "kept: no\n  more: 1")).unwrap();
    let drift = qpf(&["drift", "--project", p.to_str().unwrap()]);
    assert_eq!(drift.status.code(), Some(2), "{}", show(&drift));
    assert!(String::from_utf8_lossy(&drift.stdout).contains("probe-handler/echo.json"), "{}", show(&drift));
    let (out, _) = extract(p);
    assert!(out.status.success(), "{}", show(&out));
    assert_eq!(
        std::fs::read_to_string(p.join("out/probe-handler/echo.json")).unwrap(),
        r#"{"greeting":"hi","more":1}"#
    );
}

#[test]
fn template_spawns_are_refused_with_a_reason_naming_the_template_and_the_limit() {
    let cases = [
        // Not allowed by the entry's policy.
        (asks(json!({"name": "x"})), "{ plugins: [] }", "spawn.templates"),
        // A template the map does not declare.
        (
            json!([{"plugin": "template:other", "input": {"name": "x"}, "config": {}}]),
            "{ templates: [handler] }",
            "spawn.templates",
        ),
        // The name of a schema of the project.
        (asks(json!({"name": "probe"})), "{ templates: [handler] }", "already named `probe`"),
        // Not a schema name.
        (asks(json!({"name": "Bad Name\u{1b}[31m"})), "{ templates: [handler] }", "lower-case letters"),
        // Not the input a template spawn takes.
        (asks(json!({"spec": {}})), "{ templates: [handler] }", "missing field `name`"),
        (asks(json!({"name": "x", "owner": "me"})), "{ templates: [handler] }", "unknown field `owner`"),
        (asks(json!({"name": "x", "version": "one"})), "{ templates: [handler] }", "not a semantic version"),
        // The completed schema breaks its kind's JSON Schema.
        (asks(json!({"name": "x", "spec": {"greeting": null}})), "{ templates: [handler] }", "does not match its kind"),
        // Its plan (`gen` alone) is over what the count leaves; and the count spent before.
        (asks(json!({"name": "x"})), "{ templates: [handler], max-count: 0 }", "refused: `spawn.max-count` (0)"),
        // Its files would go where a planned entry writes (`gen` writes `{name}`: `top`).
        (asks(json!({"name": "top"})), "{ templates: [handler] }", "where entry `top` writes"),
    ];
    for (ask, policy, expected) in cases {
        let project = project(ask.clone(), policy);
        let (out, report) = extract(project.path());
        assert_eq!(out.status.code(), Some(1), "{ask} {policy}: {}", show(&out));
        let messages = errors(&report);
        assert!(messages.iter().any(|m| m.contains(expected)), "{ask} {policy}: {messages:?}");
        assert!(messages.iter().all(|m| !m.contains('\u{1b}')), "escaped: {messages:?}");
        assert!(!project.path().join("out/x").exists(), "nothing of a refused spawn is written");
    }
}

#[test]
fn a_template_spawn_that_asks_for_itself_again_is_a_cycle_not_a_loop() {
    // The template's schema is selected by `top` too (no name selector): it asks for the same again.
    let ask = asks(json!({"name": "again"}));
    let project = project(ask, "{ templates: [handler], max-depth: 8, max-count: 1000 }");
    let p = project.path();
    let map = std::fs::read_to_string(p.join("map.yaml"))
        .unwrap()
        .replace("select: { names: [probe] }", "select: { kind: Probe }")
        .replace("out: top\n", "out: \"top-{name}\"\n");
    std::fs::write(p.join("map.yaml"), map).unwrap();
    let (out, report) = extract(p);
    assert_eq!(out.status.code(), Some(1), "{}", show(&out));
    let messages = errors(&report);
    assert!(messages.iter().any(|m| m.contains("spawn cycle: template `handler`")), "{messages:?}");
}

#[test]
fn a_map_with_a_bad_template_is_refused_at_load_naming_the_file() {
    let cases = [
        ("templates:\n  handler: ../outside.yaml\nentries: []\n", "plain path relative to the project folder"),
        ("templates:\n  Handler: templates/handler.yaml\nentries: []\n", "template name `Handler`"),
        ("templates:\n  handler: templates/missing.yaml\nentries: []\n", "cannot open the template"),
        (
            "templates:\n  handler: templates/handler.yaml\nentries:\n  - { id: a, plugin: hostile, out: a, spawn: { templates: [nope] } }\n",
            "template `nope`, which the map's `templates` does not declare",
        ),
    ];
    for (map, expected) in cases {
        let project = project(json!([]), "{}");
        let p = project.path();
        std::fs::write(p.join("map.yaml"), map).unwrap();
        let (out, _) = extract(p);
        assert_eq!(out.status.code(), Some(1), "{map}: {}", show(&out));
        assert!(String::from_utf8_lossy(&out.stderr).contains(expected), "{map}: {}", show(&out));
    }
    // A template that breaks its kind is refused like a schema, at its line.
    let project = project(json!([]), "{ templates: [handler] }");
    let p = project.path();
    std::fs::write(p.join("templates/handler.yaml"), TEMPLATE.replace("  greeting: from the template\n", "")).unwrap();
    let (out, _) = extract(p);
    assert_eq!(out.status.code(), Some(1), "{}", show(&out));
    assert!(String::from_utf8_lossy(&out.stderr).contains("templates/handler.yaml"), "{}", show(&out));
}
