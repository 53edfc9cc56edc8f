//! The command line as a user meets it: help, exit codes, error messages.

use crate::support::{self, qpf, show};

#[test]
fn help_lists_the_commands() {
    let out = qpf(&["--help"]);
    assert!(out.status.success(), "{}", show(&out));
    let text = String::from_utf8_lossy(&out.stdout);
    for cmd in ["extract", "validate", "plan", "digest"] {
        assert!(text.contains(cmd), "{text}");
    }
}

#[test]
fn an_unknown_flag_is_a_usage_error_64() {
    let out = qpf(&["extract", "--frobnicate"]);
    assert_eq!(out.status.code(), Some(64), "{}", show(&out));
}

#[test]
fn a_missing_project_is_a_usage_error_64_that_says_what_to_do() {
    let tmp = tempfile::tempdir().unwrap();
    let out = qpf(&["validate", "--project", tmp.path().to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(64), "{}", show(&out));
    assert!(String::from_utf8_lossy(&out.stderr).contains("--project"), "{}", show(&out));
}

#[test]
fn validate_accepts_the_example_project() {
    let project = support::example_project();
    let out = qpf(&["validate", "--project", project.path().to_str().unwrap()]);
    assert!(out.status.success(), "{}", show(&out));
    assert!(String::from_utf8_lossy(&out.stdout).contains("5 schemas, 2 entries, 10 invocations"), "{}", show(&out));
}

#[test]
fn a_malformed_schema_is_reported_at_file_line_and_column_with_exit_1() {
    let project = support::example_project();
    let p = project.path();
    std::fs::write(
        p.join("agents/broken.yaml"),
        "apiVersion: qpf.dev/v1\nkind: Agent\nmetadata:\n  name: broken\n  name: twice\n",
    )
    .unwrap();
    let out = qpf(&["validate", "--project", p.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(1), "{}", show(&out));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("agents/broken.yaml:5:"), "{stderr}");
}

#[test]
fn a_misspelt_plugin_name_in_the_map_gets_a_suggestion() {
    let project = support::hostile_project(&[("x", serde_json::json!({}))], "  fuel: 100000000\n");
    let p = project.path();
    let map = std::fs::read_to_string(p.join("map.yaml")).unwrap().replace("plugin: hostile", "plugin: hostlie");
    std::fs::write(p.join("map.yaml"), map).unwrap();
    let out = qpf(&["validate", "--project", p.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(1), "{}", show(&out));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("plugin `hostlie`, which `qpf.yaml` does not declare (did you mean `hostile`?)"),
        "{stderr}"
    );
}

/// A project with two plugins (both the hostile guest, the second patched to declare a config
/// schema whose `mode` must be `a`s), each pinned to `pins[i]` (`None`: its real digest).
fn two_plugin_project(pins: [Option<&str>; 2], second_config: &str) -> tempfile::TempDir {
    let project = support::hostile_project(&[("x", serde_json::json!({"mode": "echo"}))], "  fuel: 100000000\n");
    let p = project.path();
    let mut bytes = std::fs::read(support::wasm("qpf_hostile")).unwrap();
    let marker = b"QPF-HOSTILE-INFO:normal";
    let at = bytes.windows(marker.len()).position(|w| w == marker).unwrap();
    let mut patch = b"QPF-HOSTILE-INFO:backtracking-schema".to_vec();
    patch.resize(64, b' ');
    bytes[at..at + 64].copy_from_slice(&patch);
    let second = p.join("second.wasm");
    std::fs::write(&second, &bytes).unwrap();
    let real = [support::digest(&support::wasm("qpf_hostile")), support::digest(&second)];
    let pin = |i: usize| pins[i].map_or_else(|| real[i].clone(), str::to_owned);
    let qpf_yaml = std::fs::read_to_string(p.join("qpf.yaml")).unwrap();
    let qpf_yaml = qpf_yaml.replace(&real[0], &pin(0)).replace(
        "plugins:\n",
        &format!("plugins:\n  second:\n    path: {}\n    digest: {}\n", second.display(), pin(1)),
    );
    std::fs::write(p.join("qpf.yaml"), qpf_yaml).unwrap();
    let map = std::fs::read_to_string(p.join("map.yaml")).unwrap();
    let map =
        format!("{map}  - id: y\n    plugin: second\n    input: /spec\n    out: y\n    config: {second_config}\n");
    std::fs::write(p.join("map.yaml"), map).unwrap();
    project
}

#[test]
fn validate_and_plan_list_every_stale_pin_at_its_line() {
    let stale = format!("blake3:{}", "1".repeat(64));
    let project = two_plugin_project([Some(&stale), Some(&stale)], "{mode: aaa}");
    let p = project.path().to_str().unwrap();
    for command in ["validate", "plan"] {
        let out = qpf(&[command, "--project", p]);
        assert_eq!(out.status.code(), Some(1), "{command}: {}", show(&out));
        let stderr = String::from_utf8_lossy(&out.stderr);
        // Both plugins, each at its `digest:` line in qpf.yaml (`second` is declared first).
        assert!(stderr.contains("qpf.yaml:9:13: plugin `second`: `"), "{command}: {stderr}");
        assert!(stderr.contains("qpf.yaml:12:13: plugin `hostile`: `"), "{command}: {stderr}");
        assert!(stderr.contains(&format!("but it is pinned to {stale}")), "{command}: {stderr}");
    }
    // `qpf extract` refuses to run and names both plugins too, not only the first.
    let out = qpf(&["extract", "--project", p]);
    assert_eq!(out.status.code(), Some(1), "{}", show(&out));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("plugin `hostile` (declared in qpf.yaml)"), "{stderr}");
    assert!(stderr.contains("plugin `second` (declared in qpf.yaml)"), "{stderr}");
    // With the pins right, both pass.
    let project = two_plugin_project([None, None], "{mode: aaa}");
    let p = project.path().to_str().unwrap();
    for command in ["validate", "plan"] {
        let out = qpf(&[command, "--project", p]);
        assert_eq!(out.status.code(), Some(0), "{command}: {}", show(&out));
    }
}

#[test]
fn an_entry_that_selects_no_schema_passes_the_checks_before_running() {
    // Its plugin is declared but in no planned invocation: it is checked, not called undeclared.
    let project = support::hostile_project(&[("x", serde_json::json!({"mode": "echo"}))], "  fuel: 100000000\n");
    let p = project.path();
    let map = std::fs::read_to_string(p.join("map.yaml")).unwrap();
    let map =
        format!("{map}  - id: y\n    plugin: hostile\n    select: {{ kind: Nothing }}\n    input: /spec\n    out: y\n");
    std::fs::write(p.join("map.yaml"), map).unwrap();
    for command in ["validate", "plan"] {
        let out = qpf(&[command, "--project", p.to_str().unwrap()]);
        assert_eq!(out.status.code(), Some(0), "{command}: {}", show(&out));
    }
}

#[test]
fn validate_checks_every_entry_config_against_its_plugins_schema_at_the_maps_line() {
    let project = two_plugin_project([None, None], "{mode: bbb}");
    let p = project.path().to_str().unwrap();
    let out = qpf(&["validate", "--project", p]);
    assert_eq!(out.status.code(), Some(1), "{}", show(&out));
    let stderr = String::from_utf8_lossy(&out.stderr);
    // The value at fault: `mode` in entry `y`'s config, on line 11 of map.yaml.
    assert!(
        stderr.contains("map.yaml:11:20: entry `y`: config at `/mode` does not match what plugin `second` accepts"),
        "{stderr}"
    );
    let out = qpf(&["validate", "--project", p, "--format", "json"]);
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["valid"], false);
    let problem = &v["problems"][0];
    assert_eq!((problem["line"].as_u64(), problem["column"].as_u64()), (Some(11), Some(20)), "{v}");
    assert_eq!(
        (&problem["rule"], &problem["file"]),
        (&serde_json::json!("qpf/project"), &serde_json::json!("map.yaml"))
    );
}

#[test]
fn an_unknown_top_level_key_is_reported_with_its_name() {
    let project = support::example_project();
    let p = project.path();
    let text = std::fs::read_to_string(p.join("agents/monitor.yaml")).unwrap();
    std::fs::write(p.join("agents/monitor.yaml"), format!("{text}specs: {{}}\n")).unwrap();
    let out = qpf(&["validate", "--project", p.to_str().unwrap(), "--format", "json"]);
    assert_eq!(out.status.code(), Some(1), "{}", show(&out));
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["valid"], false);
    assert!(v["problems"][0]["message"].as_str().unwrap().contains("specs"), "{v}");
    assert_eq!(v["problems"][0]["file"], "agents/monitor.yaml");
    assert_eq!(v["problems"][0]["rule"], "qpf/schema");
}

#[test]
fn plan_shows_every_invocation_and_its_cache_state() {
    let project = support::example_project();
    let p = project.path().to_str().unwrap();
    let out = qpf(&["plan", "--project", p, "--format", "json"]);
    assert!(out.status.success(), "{}", show(&out));
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let items = v["invocations"].as_array().unwrap();
    assert_eq!(items.len(), 10);
    assert!(items.iter().all(|i| i["cache"] == "miss"));
    assert!(qpf(&["extract", "--project", p]).status.success());
    let v: serde_json::Value =
        serde_json::from_slice(&qpf(&["plan", "--project", p, "--format", "json"]).stdout).unwrap();
    assert!(v["invocations"].as_array().unwrap().iter().all(|i| i["cache"] == "hit"));
}

#[test]
fn impact_follows_extends_from_a_fragment_to_every_agent_and_its_files() {
    let project = support::example_project();
    let p = project.path();
    assert!(qpf(&["extract", "--project", p.to_str().unwrap()]).status.success());
    let fragment = p.join("fragments/base-agent.yaml");
    let out = qpf(&["impact", "--project", p.to_str().unwrap(), "--format", "json", fragment.to_str().unwrap()]);
    assert!(out.status.success(), "{}", show(&out));
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["schemas"].as_array().unwrap().len(), 5);
    assert_eq!(v["invocations"].as_array().unwrap().len(), 10);
    assert_eq!(v["files"].as_array().unwrap().len(), 10);
    let one = p.join("agents/monitor.yaml");
    let out = qpf(&["impact", "--project", p.to_str().unwrap(), "--format", "json", one.to_str().unwrap()]);
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["schemas"], serde_json::json!(["Agent/monitor@0.9.0"]));
    assert_eq!(v["files"], serde_json::json!(["monitor/docs/API.md", "monitor/src/monitor/models.py"]));
}

#[test]
fn plan_says_why_each_invocation_will_run() {
    let project = support::example_project();
    let p = project.path();
    let plan = || {
        let out = qpf(&["plan", "--project", p.to_str().unwrap(), "--format", "json"]);
        assert!(out.status.success(), "{}", show(&out));
        serde_json::from_slice::<serde_json::Value>(&out.stdout).unwrap()
    };
    assert!(plan()["invocations"].as_array().unwrap().iter().all(|i| i["reason"] == "new: never extracted"));
    assert!(qpf(&["extract", "--project", p.to_str().unwrap()]).status.success());
    let trainer = p.join("agents/trainer.yaml");
    std::fs::write(&trainer, std::fs::read_to_string(&trainer).unwrap().replace("default: 3 }", "default: 4 }"))
        .unwrap();
    let map = p.join("extractors.yaml");
    std::fs::write(
        &map,
        std::fs::read_to_string(&map).unwrap().replace("src/{package}/models.py", "src/{package}/model.py"),
    )
    .unwrap();
    for inv in plan()["invocations"].as_array().unwrap() {
        let expected = match (inv["entry"].as_str().unwrap(), inv["schema"].as_str().unwrap()) {
            ("models", "Agent/trainer@0.4.1") => serde_json::json!("input, config changed"),
            ("models", _) => serde_json::json!("config changed"),
            ("api-docs", "Agent/trainer@0.4.1") => serde_json::json!("input changed"),
            _ => serde_json::Value::Null,
        };
        assert_eq!(inv["reason"], expected, "{inv}");
    }
}

#[test]
fn a_closed_pipe_ends_qpf_quietly_with_exit_0() {
    let project = support::example_project();
    let mut child = std::process::Command::new(support::qpf_bin())
        .args(["plan", "--project", project.path().to_str().unwrap()])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    // The reader goes away before qpf has printed anything (`qpf plan | head -0`).
    drop(child.stdout.take());
    let out = child.wait_with_output().unwrap();
    assert_eq!(out.status.code(), Some(0), "{}", show(&out));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!stderr.contains("panicked") && !stderr.contains("Broken pipe"), "{stderr}");
}

#[test]
fn every_json_output_carries_a_format_version() {
    let project = support::example_project();
    let p = project.path().to_str().unwrap();
    let trainer = project.path().join("agents/trainer.yaml");
    assert!(qpf(&["extract", "--project", p]).status.success());
    for args in [
        vec!["validate", "--format", "json"],
        vec!["plan", "--format", "json"],
        vec!["drift", "--format", "json"],
        vec!["impact", "--format", "json", trainer.to_str().unwrap()],
    ] {
        let mut all = args.clone();
        all.extend(["--project", p]);
        let out = qpf(&all);
        let value: serde_json::Value =
            serde_json::from_slice(&out.stdout).unwrap_or_else(|e| panic!("{args:?}: {e}: {}", show(&out)));
        assert!(value["format"].is_u64(), "{args:?}: {value}");
    }
}

#[test]
fn schema_show_prints_the_resolved_document_and_where_each_value_came_from() {
    let project = support::example_project();
    let p = project.path().to_str().unwrap();
    // As written: the file's own text.
    let out = qpf(&["schema", "show", "monitor", "--project", p]);
    assert!(out.status.success(), "{}", show(&out));
    assert!(String::from_utf8_lossy(&out.stdout).contains("extends: base"), "{}", show(&out));
    // Resolved, with provenance: a value from the base fragment names the fragment.
    let out = qpf(&["schema", "show", "monitor", "--resolved", "--provenance", "--format", "json", "--project", p]);
    assert!(out.status.success(), "{}", show(&out));
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["id"], "Agent/monitor@0.9.0");
    assert_eq!(v["value"]["metadata"]["name"], "monitor");
    let provenance = v["provenance"].as_object().unwrap();
    assert_eq!(provenance["/metadata/name"]["file"], "agents/monitor.yaml");
    assert_eq!(provenance["/metadata/name"]["line"], 4);
    let inherited = provenance.values().filter(|o| o["file"] == "fragments/base-agent.yaml").count();
    assert!(inherited > 0, "values from the `extends` base are traced to it: {v}");
    // One pointer, for humans.
    let out =
        qpf(&["schema", "show", "monitor", "--resolved", "--pointer", "/metadata", "--provenance", "--project", p]);
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains("\"name\": \"monitor\""), "{text}");
    assert!(text.contains("/metadata/name") && text.contains("agents/monitor.yaml:4:"), "{text}");
    // A pointer that selects nothing, a misspelt name: clear errors.
    let out = qpf(&["schema", "show", "monitor", "--resolved", "--pointer", "/nope", "--project", p]);
    assert_eq!(out.status.code(), Some(1), "{}", show(&out));
    assert!(String::from_utf8_lossy(&out.stderr).contains("`/nope` selects nothing"), "{}", show(&out));
    let out = qpf(&["schema", "show", "monitr", "--project", p]);
    assert!(String::from_utf8_lossy(&out.stderr).contains("did you mean `monitor`"), "{}", show(&out));
}

#[test]
fn plan_show_request_prints_exactly_what_the_plugin_receives() {
    let project = support::hostile_project(&[("x", serde_json::json!({"mode": "echo"}))], "  fuel: 100000000\n");
    let p = project.path().to_str().unwrap();
    let out = qpf(&["plan", "--show-request", "x", "probe", "--project", p]);
    assert!(out.status.success(), "{}", show(&out));
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["entry"], "x");
    assert_eq!(v["schema"], serde_json::json!({"kind": "Probe", "name": "probe", "version": "1.0.0"}));
    assert_eq!(v["input"], serde_json::json!({"greeting": "hello"}));
    assert_eq!(v["config"], serde_json::json!({"mode": "echo"}));
    assert!(v.get("format").is_none(), "the request as it is: {v}");
    let out = qpf(&["plan", "--show-request", "y", "probe", "--project", p]);
    assert_eq!(out.status.code(), Some(1), "{}", show(&out));
    assert!(String::from_utf8_lossy(&out.stderr).contains("no invocation of entry `y`"), "{}", show(&out));
}
