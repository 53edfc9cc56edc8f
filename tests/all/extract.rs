//! `qpf extract` end to end on the example project and on hostile projects.

use std::path::Path;

use serde_json::json;

use crate::support::{self, qpf, show};

fn extract(project: &Path, extra: &[&str]) -> std::process::Output {
    let mut args = vec!["extract", "--project", project.to_str().unwrap()];
    args.extend_from_slice(extra);
    qpf(&args)
}

fn mtimes(dir: &Path) -> Vec<(std::path::PathBuf, std::time::SystemTime)> {
    support::walk(dir).into_iter().map(|p| (p.clone(), std::fs::metadata(&p).unwrap().modified().unwrap())).collect()
}

#[test]
fn second_run_of_an_unchanged_project_is_all_cache_hits_and_rewrites_nothing() {
    let project = support::example_project();
    let p = project.path();
    let out = extract(p, &[]);
    assert!(out.status.success(), "{}", show(&out));
    let before = mtimes(&p.join("out"));
    let report_path = p.join("second.json");
    let out = extract(p, &["--report", report_path.to_str().unwrap()]);
    assert!(out.status.success(), "{}", show(&out));
    let report = support::report(&report_path);
    let invocations = report["invocations"].as_array().unwrap();
    assert_eq!(invocations.len(), 10);
    for inv in invocations {
        assert_eq!(inv["cache"], "hit", "{inv}");
        assert_eq!(inv["outcome"], "ok", "{inv}");
        assert_eq!(inv["written"], json!([]), "{inv}");
    }
    assert_eq!(mtimes(&p.join("out")), before, "no file was rewritten");
}

#[test]
fn outputs_are_byte_identical_across_runs_and_job_counts() {
    let project = support::example_project();
    let p = project.path();
    let a = p.join("a");
    let b = p.join("b");
    let c = p.join("c");
    for (dir, jobs) in [(&a, "1"), (&b, "4"), (&c, "4")] {
        let out = extract(p, &["--no-cache", "--jobs", jobs, "--out", dir.to_str().unwrap()]);
        assert!(out.status.success(), "{}", show(&out));
    }
    let ta = support::tree(&a);
    assert_eq!(ta.len(), 10);
    assert_eq!(ta, support::tree(&b), "--jobs 1 and --jobs 4 differ");
    assert_eq!(ta, support::tree(&c), "two runs differ");
}

#[test]
fn changing_one_schema_reruns_only_that_schemas_invocations() {
    let project = support::example_project();
    let p = project.path();
    assert!(extract(p, &[]).status.success());
    let schema = p.join("agents/trainer.yaml");
    let text = std::fs::read_to_string(&schema).unwrap();
    std::fs::write(&schema, text.replace("default: 3 }", "default: 5 }")).unwrap();
    let report_path = p.join("r.json");
    let out = extract(p, &["--report", report_path.to_str().unwrap()]);
    assert!(out.status.success(), "{}", show(&out));
    let report = support::report(&report_path);
    for inv in report["invocations"].as_array().unwrap() {
        let expected = if inv["schema"] == "Agent/trainer@0.4.1" { "miss" } else { "hit" };
        assert_eq!(inv["cache"], expected, "{inv}");
    }
    let models = std::fs::read_to_string(p.join("out/trainer/src/trainer/models.py")).unwrap();
    assert!(models.contains("epochs: int = Field(default=5)"), "{models}");
}

#[test]
fn a_plugin_digest_mismatch_is_a_clear_error_and_nothing_is_written() {
    let project = support::example_project();
    let p = project.path();
    let qpf_yaml = p.join("qpf.yaml");
    let text = std::fs::read_to_string(&qpf_yaml).unwrap();
    let pinned = support::digest(&support::wasm("qpf_md_docs"));
    let wrong = format!("blake3:{}", "a".repeat(64));
    std::fs::write(&qpf_yaml, text.replace(&pinned, &wrong)).unwrap();
    let out = extract(p, &[]);
    assert_eq!(out.status.code(), Some(1), "{}", show(&out));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("md-docs") && stderr.contains(&wrong) && stderr.contains(&pinned), "{stderr}");
    assert!(support::walk(&p.join("out")).is_empty(), "nothing may be written");
    assert!(!p.join("qpf.lock").exists());
}

#[test]
fn a_trapping_invocation_fails_alone_and_the_run_exits_1_with_a_summary() {
    let project = support::hostile_project(
        &[("crash", json!({"mode": "trap"})), ("fine", json!({"mode": "echo"}))],
        "  fuel: 100000000\n",
    );
    let p = project.path();
    let report_path = p.join("r.json");
    let out = extract(p, &["--report", report_path.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(1), "{}", show(&out));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("entry `crash`") && stderr.contains("plugin `hostile`") && stderr.contains("crashed"),
        "{stderr}"
    );
    let report = support::report(&report_path);
    assert_eq!(report["invocations"][0]["outcome"], "error");
    assert_eq!(report["invocations"][0]["error"]["kind"], "sandbox");
    assert_eq!(report["invocations"][1]["outcome"], "ok");
    assert_eq!(std::fs::read(p.join("out/fine/echo.json")).unwrap(), b"{\"greeting\":\"hello\"}");
}

#[test]
fn escaping_and_duplicate_output_paths_are_rejected_and_nothing_lands_outside_the_root() {
    let bad = ["../x", "/etc/x", "a/../../x", "x\u{0}y", "C:/x", "a\\..\\x"];
    let mut entries: Vec<(String, serde_json::Value)> =
        bad.iter().enumerate().map(|(i, path)| (format!("bad-{i}"), json!({"mode": "path", "path": path}))).collect();
    entries.push(("dup".into(), json!({"mode": "duplicate"})));
    let borrowed: Vec<(&str, serde_json::Value)> = entries.iter().map(|(id, c)| (id.as_str(), c.clone())).collect();
    let project = support::hostile_project(&borrowed, "  fuel: 100000000\n");
    let p = project.path();
    let report_path = p.join("r.json");
    let out = extract(p, &["--report", report_path.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(1), "{}", show(&out));
    let report = support::report(&report_path);
    for inv in report["invocations"].as_array().unwrap() {
        assert_eq!(inv["outcome"], "error", "{inv}");
        assert_eq!(inv["error"]["kind"], "output", "{inv}");
    }
    assert!(support::walk(&p.join("out")).is_empty(), "nothing written under the root");
    assert!(!p.join("x").exists() && !p.join("out/x").exists(), "nothing written beside it");
}

#[test]
fn a_failing_invocation_keeps_its_previous_outputs_and_lock_entries() {
    let project = support::hostile_project(&[("one", json!({"mode": "echo"}))], "  fuel: 100000000\n");
    let p = project.path();
    assert!(extract(p, &[]).status.success());
    let lock_before = std::fs::read_to_string(p.join("qpf.lock")).unwrap();
    let map = std::fs::read_to_string(p.join("map.yaml")).unwrap();
    std::fs::write(p.join("map.yaml"), map.replace("\"echo\"", "\"trap\"")).unwrap();
    let out = extract(p, &[]);
    assert_eq!(out.status.code(), Some(1), "{}", show(&out));
    assert_eq!(std::fs::read(p.join("out/one/echo.json")).unwrap(), b"{\"greeting\":\"hello\"}");
    assert_eq!(std::fs::read_to_string(p.join("qpf.lock")).unwrap(), lock_before);
}

#[test]
fn the_audit_log_and_lock_record_every_invocation() {
    let project = support::example_project();
    let p = project.path();
    assert!(extract(p, &[]).status.success());
    let audit = std::fs::read_to_string(p.join(".qpf/audit.jsonl")).unwrap();
    let records: Vec<serde_json::Value> = audit.lines().map(|l| serde_json::from_str(l).unwrap()).collect();
    assert_eq!(records.len(), 10);
    for r in &records {
        for field in [
            "time",
            "entry",
            "schema",
            "key",
            "input_digest",
            "config_digest",
            "cache",
            "outcome",
            "duration_us",
            "fuel",
            "outputs",
        ] {
            assert!(!r[field].is_null(), "audit record lacks `{field}`: {r}");
        }
        assert_eq!(r["tenant"], "default");
        assert!(r["plugin"]["digest"].as_str().unwrap().starts_with("blake3:"));
    }
    let lock: serde_json::Value = serde_json::from_slice(&std::fs::read(p.join("qpf.lock")).unwrap()).unwrap();
    let files = lock["files"].as_object().unwrap();
    assert_eq!(files.len(), 10);
    for (path, f) in files {
        assert_eq!(f["digest"].as_str().unwrap(), support::digest(&p.join("out").join(path)), "{path}");
    }
}

#[test]
fn an_output_root_that_contains_the_project_is_refused() {
    let project = support::example_project();
    let p = project.path();
    let out = extract(p, &["--out", p.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(74), "{}", show(&out));
    assert!(String::from_utf8_lossy(&out.stderr).contains("contains the project"), "{}", show(&out));
}

#[test]
fn a_config_that_the_plugin_schema_refuses_fails_before_the_plugin_runs() {
    let project = support::example_project();
    let p = project.path();
    let map = std::fs::read_to_string(p.join("extractors.yaml")).unwrap();
    std::fs::write(
        p.join("extractors.yaml"),
        map.replace("config: { documents: [api] }", "config: { documents: [api], pathh: x.md }"),
    )
    .unwrap();
    let report_path = p.join("r.json");
    let out = extract(p, &["--report", report_path.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(1), "{}", show(&out));
    let report = support::report(&report_path);
    let docs: Vec<&serde_json::Value> =
        report["invocations"].as_array().unwrap().iter().filter(|i| i["entry"] == "api-docs").collect();
    assert_eq!(docs.len(), 5);
    for inv in docs {
        assert_eq!(inv["error"]["kind"], "config", "{inv}");
        assert!(inv["error"]["message"].as_str().unwrap().contains("pathh"), "{inv}");
        assert_eq!(inv["fuel"], 0, "the plugin never ran: {inv}");
    }
}

#[test]
fn a_plugin_diagnostic_is_reported_at_the_schema_file_line_and_column() {
    let project = support::example_project();
    let p = project.path();
    let orchestrator = p.join("agents/orchestrator.yaml");
    let text = std::fs::read_to_string(&orchestrator).unwrap();
    std::fs::write(&orchestrator, text.replace("{ name: priority, type: integer,", "{ name: priority, type: integr,"))
        .unwrap();
    let out = extract(p, &[]);
    assert_eq!(out.status.code(), Some(1), "{}", show(&out));
    let stderr = String::from_utf8_lossy(&out.stderr);
    let line = text.lines().position(|l| l.contains("name: priority")).unwrap() + 1;
    let column = text.lines().nth(line - 1).unwrap().find("integer").unwrap() + 1;
    // Without the kind's validator, the generators find it (with the same code, so the same rule).
    assert!(
        stderr.contains(&format!(
            "error[agent/unknown-type]: agents/orchestrator.yaml:{line}:{column}: field `priority` of type `Task`: unknown type `integr` (did you mean `integer`?)"
        )),
        "{stderr}"
    );
    assert!(stderr.contains("^"), "a caret excerpt: {stderr}");
}

#[test]
fn a_change_to_a_shared_fragment_re_extracts_every_schema_that_extends_it() {
    let project = support::example_project();
    let p = project.path();
    assert!(extract(p, &[]).status.success());
    let fragment = p.join("fragments/base-agent.yaml");
    let text = std::fs::read_to_string(&fragment).unwrap();
    let changed = text.replace("Short-lived state of in-flight work", "State of in-flight work");
    assert_ne!(changed, text, "the test changes the fragment");
    std::fs::write(&fragment, changed).unwrap();
    let report_path = p.join("r.json");
    assert!(extract(p, &["--report", report_path.to_str().unwrap()]).status.success());
    let report = support::report(&report_path);
    assert_eq!(report["summary"]["misses"], 10, "all five agents extend the fragment");
}

#[test]
fn fail_fast_skips_what_is_left_after_the_first_failure_and_keep_going_runs_everything() {
    let entries = [
        ("a-crash", json!({"mode": "trap"})),
        ("b-fine", json!({"mode": "echo"})),
        ("c-fine", json!({"mode": "echo"})),
    ];
    let project = support::hostile_project(&entries, "  fuel: 100000000\n");
    let p = project.path();
    let report_path = p.join("r.json");
    let out = extract(p, &["--fail-fast", "--jobs", "1", "--report", report_path.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(1), "{}", show(&out));
    let report = support::report(&report_path);
    let outcomes: Vec<&str> =
        report["invocations"].as_array().unwrap().iter().map(|i| i["outcome"].as_str().unwrap()).collect();
    assert_eq!(outcomes, ["error", "skipped", "skipped"]);
    assert_eq!(report["summary"]["skipped"], 2);
    let out = extract(p, &["--keep-going", "--jobs", "1", "--report", report_path.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(1), "{}", show(&out));
    let report = support::report(&report_path);
    let outcomes: Vec<&str> =
        report["invocations"].as_array().unwrap().iter().map(|i| i["outcome"].as_str().unwrap()).collect();
    assert_eq!(outcomes, ["error", "ok", "ok"]);
}

#[test]
fn needs_run_upstream_first_and_pass_its_outputs_in_the_context() {
    let entries = [
        ("wiring", json!({"mode": "context"}), "    needs: [models, docs]\n    upstream-contents: true\n"),
        ("models", json!({"mode": "echo"}), ""),
        ("docs", json!({"mode": "context"}), "    needs: [models]\n"),
    ];
    let project = support::hostile_project_with(&entries, "  fuel: 100000000\n");
    let p = project.path();
    let report_path = p.join("r.json");
    let out = extract(p, &["--jobs", "4", "--report", report_path.to_str().unwrap()]);
    assert!(out.status.success(), "{}", show(&out));
    let report = support::report(&report_path);
    let order: Vec<&str> =
        report["invocations"].as_array().unwrap().iter().map(|i| i["entry"].as_str().unwrap()).collect();
    assert_eq!(order, ["models", "docs", "wiring"], "the plan puts upstream entries first");
    let wiring: serde_json::Value =
        serde_json::from_slice(&std::fs::read(p.join("out/wiring/context.json")).unwrap()).unwrap();
    assert_eq!(wiring["upstream"]["models"]["files"][0]["path"], "models/echo.json");
    assert_eq!(wiring["upstream"]["models"]["files"][0]["contents"], "{\"greeting\":\"hello\"}");
    assert_eq!(wiring["upstream"]["docs"]["files"][0]["path"], "docs/context.json");
    let docs: serde_json::Value =
        serde_json::from_slice(&std::fs::read(p.join("out/docs/context.json")).unwrap()).unwrap();
    assert!(docs["upstream"]["models"]["files"][0].get("contents").is_none(), "contents only on request");
    assert!(docs["needs"]["models"].as_str().unwrap().starts_with("blake3:"), "upstream keys are part of the key");

    // A change upstream re-runs its dependants, and only them.
    let map = p.join("map.yaml");
    let text = std::fs::read_to_string(&map).unwrap();
    std::fs::write(&map, text.replace("config: {\"mode\":\"echo\"}", "config: {\"mode\":\"echo\",\"path\":\"x\"}"))
        .unwrap();
    let out = extract(p, &["--report", report_path.to_str().unwrap()]);
    assert!(out.status.success(), "{}", show(&out));
    let report = support::report(&report_path);
    assert_eq!(report["summary"]["misses"], 3, "models changed, so docs and wiring re-run: {report}");
}

#[test]
fn a_failed_upstream_skips_its_dependants_and_a_needs_cycle_is_refused() {
    let entries = [("base", json!({"mode": "trap"}), ""), ("top", json!({"mode": "context"}), "    needs: [base]\n")];
    let project = support::hostile_project_with(&entries, "  fuel: 100000000\n");
    let p = project.path();
    let report_path = p.join("r.json");
    let out = extract(p, &["--report", report_path.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(1), "{}", show(&out));
    let report = support::report(&report_path);
    assert_eq!(report["invocations"][1]["outcome"], "skipped");
    assert!(report["invocations"][1]["error"]["message"].as_str().unwrap().contains("`base`"), "{report}");

    let cyclic = [
        ("a", json!({"mode": "echo"}), "    needs: [b]\n"),
        ("b", json!({"mode": "echo"}), "    needs: [c]\n"),
        ("c", json!({"mode": "echo"}), "    needs: [a]\n"),
    ];
    let project = support::hostile_project_with(&cyclic, "  fuel: 100000000\n");
    let out = extract(project.path(), &[]);
    assert_eq!(out.status.code(), Some(1), "{}", show(&out));
    assert!(String::from_utf8_lossy(&out.stderr).contains("`needs` form a cycle: a → b → c → a"), "{}", show(&out));
}

fn spawn_config(children: serde_json::Value) -> serde_json::Value {
    json!({"mode": "spawn", "spawn": children})
}

#[test]
fn spawned_invocations_run_are_cached_locked_and_reported_like_planned_ones() {
    let leaf = |n: u32| json!({"plugin": "hostile", "input": {"n": n}, "config": {"mode": "spawn"}});
    let entries = [("top", spawn_config(json!([leaf(1), leaf(2)])), "    spawn: { plugins: [hostile] }\n")];
    let project = support::hostile_project_with(&entries, "  fuel: 100000000\n");
    let p = project.path();
    let report_path = p.join("r.json");
    let out = extract(p, &["--report", report_path.to_str().unwrap()]);
    assert!(out.status.success(), "{}", show(&out));
    let report = support::report(&report_path);
    let entries: Vec<&str> =
        report["invocations"].as_array().unwrap().iter().map(|i| i["entry"].as_str().unwrap()).collect();
    assert_eq!(entries, ["top", "top>hostile#0", "top>hostile#1"]);
    assert_eq!(std::fs::read_to_string(p.join("out/top/top_hostile_1.json")).unwrap(), "{\"n\":2}");
    let lock: serde_json::Value = serde_json::from_slice(&std::fs::read(p.join("qpf.lock")).unwrap()).unwrap();
    assert_eq!(lock["files"]["top/top_hostile_0.json"]["spawned_by"]["entry"], "top");
    let audit = std::fs::read_to_string(p.join(".qpf/audit.jsonl")).unwrap();
    assert_eq!(audit.lines().count(), 3, "spawned invocations are audited");
    // Second run: the spawns are replayed from the cache.
    let out = extract(p, &["--report", report_path.to_str().unwrap()]);
    assert!(out.status.success(), "{}", show(&out));
    let report = support::report(&report_path);
    assert!(report["invocations"].as_array().unwrap().iter().all(|i| i["cache"] == "hit"), "{report}");
    let drift = qpf(&["drift", "--project", p.to_str().unwrap()]);
    assert_eq!(drift.status.code(), Some(0), "{}", show(&drift));
}

#[test]
fn spawns_need_permission_and_stay_within_depth_and_without_cycles() {
    let leaf = json!({"plugin": "hostile", "input": {"n": 1}, "config": {"mode": "spawn"}});
    // Not allowed: the entry has no spawn policy.
    let project =
        support::hostile_project_with(&[("top", spawn_config(json!([leaf.clone()])), "")], "  fuel: 100000000\n");
    let report_path = project.path().join("r.json");
    let out = extract(project.path(), &["--report", report_path.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(1), "{}", show(&out));
    let report = support::report(&report_path);
    assert_eq!(report["invocations"][1]["error"]["kind"], "spawn");
    assert!(report["invocations"][1]["error"]["message"].as_str().unwrap().contains("spawn.plugins"), "{report}");

    // Depth: a chain of three nested spawns with max-depth 2 stops at the third.
    let level3 = json!({"plugin": "hostile", "input": {"n": 3}, "config": {"mode": "spawn"}});
    let level2 = json!({"plugin": "hostile", "input": {"n": 2}, "config": spawn_config(json!([level3]))});
    let level1 = json!({"plugin": "hostile", "input": {"n": 1}, "config": spawn_config(json!([level2]))});
    let project = support::hostile_project_with(
        &[("top", spawn_config(json!([level1])), "    spawn: { plugins: [hostile], max-depth: 2 }\n")],
        "  fuel: 100000000\n",
    );
    let report_path = project.path().join("r.json");
    let out = extract(project.path(), &["--report", report_path.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(1), "{}", show(&out));
    let report = support::report(&report_path);
    let outcomes: Vec<&str> =
        report["invocations"].as_array().unwrap().iter().map(|i| i["outcome"].as_str().unwrap()).collect();
    assert_eq!(outcomes, ["ok", "ok", "ok", "error"]);
    assert!(report["invocations"][3]["error"]["message"].as_str().unwrap().contains("max-depth"), "{report}");

    // Cycle: an invocation that asks for itself again (same plugin, input and config).
    let project = support::hostile_project_with(
        &[("top", json!({"mode": "spawn-self"}), "    spawn: { plugins: [hostile], max-depth: 5 }\n")],
        "  fuel: 100000000\n",
    );
    let report_path = project.path().join("r.json");
    let out = extract(project.path(), &["--report", report_path.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(1), "{}", show(&out));
    let report = support::report(&report_path);
    let messages: Vec<String> = report["invocations"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|i| i["error"]["message"].as_str().map(str::to_owned))
        .collect();
    assert!(messages.iter().any(|m| m.contains("spawn cycle")), "{messages:?}");
}

#[test]
fn files_no_longer_produced_are_removed_unless_edited_by_hand() {
    let echo = json!({ "mode": "echo" });
    let project =
        support::hostile_project(&[("a", echo.clone()), ("b", echo.clone()), ("c", echo)], "  fuel: 5000000000\n");
    let p = project.path();
    assert!(extract(p, &[]).status.success());
    std::fs::write(p.join("out/c/echo.json"), "my own changes\n").unwrap();
    std::fs::write(p.join("out/user.txt"), "not QPF's\n").unwrap();
    // Entries b and c leave the map.
    let map = std::fs::read_to_string(p.join("map.yaml")).unwrap();
    let only_a = &map[..map.find("  - id: b").unwrap()];
    std::fs::write(p.join("map.yaml"), only_a).unwrap();
    let report_path = p.join("r.json");
    let out = extract(p, &["--report", report_path.to_str().unwrap()]);
    assert!(out.status.success(), "{}", show(&out));
    assert!(String::from_utf8_lossy(&out.stdout).contains("1 removed (no longer produced)"), "{}", show(&out));
    assert!(String::from_utf8_lossy(&out.stderr).contains("`c/echo.json` is no longer produced"), "{}", show(&out));
    assert_eq!(support::report(&report_path)["removed"], json!(["b/echo.json"]));
    assert!(!p.join("out/b/echo.json").exists(), "QPF's untouched file is removed");
    assert_eq!(std::fs::read_to_string(p.join("out/c/echo.json")).unwrap(), "my own changes\n", "an edited one stays");
    assert_eq!(std::fs::read_to_string(p.join("out/user.txt")).unwrap(), "not QPF's\n", "a file QPF never wrote stays");
    // The kept file stays in the lock, so drift keeps reporting it.
    let drift = qpf(&["drift", "--project", p.to_str().unwrap()]);
    assert_eq!(drift.status.code(), Some(2), "{}", show(&drift));
    let text = String::from_utf8_lossy(&drift.stdout);
    assert!(text.contains("orphan") && text.contains("c/echo.json") && !text.contains("b/echo.json"), "{text}");
}

/// The same diagnostic (or failure) from several entries is printed once, naming every entry that
/// raised it; the report keeps each one. A dependant skipped because its upstream failed says so,
/// and `--fail-fast` is named only when it was given.
#[test]
fn a_problem_raised_by_several_entries_is_printed_once_and_skips_say_why() {
    let project = support::hostile_project_with(
        &[
            ("one", json!({"mode": "many-diagnostics", "bytes": 2}), ""),
            ("two", json!({"mode": "many-diagnostics", "bytes": 2}), ""),
            ("bad1", json!({"mode": "big-error", "bytes": 0}), ""),
            ("bad2", json!({"mode": "big-error", "bytes": 0}), ""),
            ("after", json!({"mode": "echo"}), "    needs: [bad1]\n"),
        ],
        "  fuel: 100000000\n",
    );
    let report_path = project.path().join("report.json");
    let out = extract(project.path(), &["--report", report_path.to_str().expect("utf-8")]);
    assert_eq!(out.status.code(), Some(1), "{}", show(&out));
    let stderr = String::from_utf8_lossy(&out.stderr);
    let w0: Vec<&str> = stderr.lines().filter(|l| l.starts_with("warning: w0 ")).collect();
    assert_eq!(w0.len(), 1, "{stderr}");
    assert!(
        w0[0].ends_with(
            "(schema `Probe/probe@1.0.0`; raised by 2 entries: `one` (plugin `hostile`), `two` (plugin `hostile`))"
        ),
        "{stderr}"
    );
    let forged: Vec<&str> = stderr.lines().filter(|l| l.contains("plugin error:") && l.contains("forged")).collect();
    assert_eq!(forged.len(), 1, "{stderr}");
    assert!(
        forged[0].contains("raised by 2 entries: `bad1` (plugin `hostile`), `bad2` (plugin `hostile`)"),
        "{stderr}"
    );
    assert!(stderr.contains("error: 1 invocations were not run because an entry they need failed"), "{stderr}");
    assert!(!stderr.contains("fail-fast"), "--fail-fast was not given: {stderr}");
    // The report keeps every diagnostic of every invocation.
    let report = support::report(&report_path);
    let by_entry = |entry: &str| {
        report["invocations"]
            .as_array()
            .expect("invocations")
            .iter()
            .find(|i| i["entry"] == entry)
            .cloned()
            .expect(entry)
    };
    assert_eq!(by_entry("one")["diagnostics"].as_array().map(Vec::len), Some(2), "{report}");
    assert_eq!(by_entry("two")["diagnostics"].as_array().map(Vec::len), Some(2), "{report}");

    // With --fail-fast, a run stopped by it says so.
    let out = extract(project.path(), &["--fail-fast", "--jobs", "1", "--no-cache"]);
    assert_eq!(out.status.code(), Some(1), "{}", show(&out));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("--fail-fast stopped the run after the first failure"), "{stderr}");
}

#[test]
fn a_plugin_file_changed_in_place_is_hashed_again_even_with_its_old_size_and_modification_time() {
    // A project with its own copy of a plugin (`hello.wat` writes `hello.txt`).
    let dir = tempfile::tempdir().expect("temp dir");
    let p = dir.path();
    let wasm = support::hello_wasm();
    let plugin = p.join("hello.wasm");
    std::fs::write(&plugin, &wasm).expect("wasm");
    let digest = blake3::hash(&wasm).to_hex();
    support::note_project(
        p,
        "{ Note: note.schema.json }",
        &format!("\n  hello: {{ path: hello.wasm, digest: \"blake3:{digest}\" }}\n"),
    );
    // Old enough to be recorded in the pin cache (its change time settles in 2 s).
    let old = std::time::SystemTime::now() - std::time::Duration::from_secs(3600);
    std::fs::File::options().write(true).open(&plugin).expect("open").set_modified(old).expect("mtime");
    std::thread::sleep(std::time::Duration::from_millis(2100));
    assert!(extract(p, &[]).status.success());
    assert!(p.join(".qpf/pins.json").is_file(), "the pin was cached");
    assert!(extract(p, &[]).status.success(), "the cached pin holds");

    // The same length, one byte changed, the old modification time put back.
    let mut changed = wasm.clone();
    let last = changed.len() - 1;
    changed[last] ^= 1;
    std::fs::write(&plugin, &changed).expect("rewrite");
    std::fs::File::options().write(true).open(&plugin).expect("open").set_modified(old).expect("mtime");
    let out = extract(p, &[]);
    assert_ne!(out.status.code(), Some(0), "{}", show(&out));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains(&format!("has digest `blake3:{}`", blake3::hash(&changed).to_hex())), "{stderr}");
}
