//! `qpf validate` as the quality gate: each kind's validators (the Agent kind's reference validator
//! over the corpus of broken agents in `tests/corpus/broken-agents/`), each problem once, the
//! versioned JSON and the SARIF 2.1.0 formats (checked against the SARIF JSON Schema, which
//! `./dev tools` downloads), and what `qpf plan` and `qpf extract` do with a failed validator.

use std::collections::BTreeMap;
use std::path::Path;

use crate::support::{self, qpf, show};

/// The corpus: each file an agent schema, with `# expect: LINE:COL RULE MESSAGE` lines at its end
/// (or `# expect: nothing`).
fn corpus() -> BTreeMap<String, Vec<String>> {
    let dir = support::workspace_root().join("tests/corpus/broken-agents");
    let mut cases = BTreeMap::new();
    for entry in std::fs::read_dir(&dir).expect("corpus") {
        let path = entry.expect("entry").path();
        if path.extension().is_none_or(|e| e != "yaml") {
            continue;
        }
        let text = std::fs::read_to_string(&path).expect("case");
        let mut expected: Vec<String> = text
            .lines()
            .filter_map(|l| l.strip_prefix("# expect: "))
            .filter(|l| !l.starts_with("nothing"))
            .map(str::to_owned)
            .collect();
        expected.sort();
        cases.insert(path.file_name().expect("name").to_string_lossy().into_owned(), expected);
    }
    cases
}

/// The example project with the corpus as its agents.
fn corpus_project() -> tempfile::TempDir {
    let project = support::validated_example_project();
    let agents = project.path().join("agents");
    std::fs::remove_dir_all(&agents).expect("clear agents");
    std::fs::create_dir(&agents).expect("agents");
    let dir = support::workspace_root().join("tests/corpus/broken-agents");
    for name in corpus().keys() {
        std::fs::copy(dir.join(name), agents.join(name)).expect("copy case");
    }
    project
}

fn json_of(out: &std::process::Output) -> serde_json::Value {
    serde_json::from_slice(&out.stdout).unwrap_or_else(|e| panic!("not JSON ({e}): {}", show(out)))
}

/// The SARIF 2.1.0 JSON Schema, as `./dev tools` downloaded it.
fn sarif_validator() -> jsonschema::Validator {
    support::tools();
    let path = support::target_dir().join("qpf-tools/sarif/sarif-schema-2.1.0.json");
    let text = std::fs::read_to_string(&path).expect("the SARIF schema (./dev tools)");
    // The published schema's patterns for `language` have a stray `]`, a literal in ECMAScript
    // regular expressions but an error for Rust's: escaped, they mean the same.
    let stray = r#""^[a-zA-Z]{2}|^[a-zA-Z]{2}-[a-zA-Z]{2}]?$""#;
    assert_eq!(text.matches(stray).count(), 2, "the SARIF schema changed");
    let text = text.replace(stray, r#""^[a-zA-Z]{2}|^[a-zA-Z]{2}-[a-zA-Z]{2}\\]?$""#);
    let schema: serde_json::Value = serde_json::from_str(&text).expect("JSON");
    jsonschema::draft7::new(&schema).expect("the SARIF schema compiles")
}

fn assert_valid_sarif(log: &serde_json::Value) {
    let validator = sarif_validator();
    let errors: Vec<String> = validator.iter_errors(log).map(|e| format!("{} at {}", e, e.instance_path())).collect();
    assert!(errors.is_empty(), "not valid SARIF 2.1.0: {errors:#?}\n{log:#}");
    assert_eq!(log["version"], "2.1.0");
}

#[test]
fn every_broken_agent_of_the_corpus_is_caught_at_its_place_with_its_rule_and_message() {
    let cases = corpus();
    let broken = cases.values().filter(|e| !e.is_empty()).count();
    assert!(broken >= 20, "the corpus has {broken} broken agents");
    // Every rule of the Agent validator but `agent/spec` (which the kind's JSON Schema keeps from
    // happening) is in the corpus, and so are combinations.
    let rules: std::collections::BTreeSet<&str> =
        cases.values().flatten().filter_map(|e| e.split(' ').nth(1)).collect();
    for rule in [
        "agent/unknown-type",
        "agent/undeclared-error",
        "agent/name-collision",
        "agent/reserved-name",
        "agent/self-containing-type",
        "agent/unknown-agent",
        "agent/setting-default-type",
        "agent/setting-values",
        "agent/memory-option",
    ] {
        assert!(rules.contains(rule), "no case of {rule}");
    }
    assert!(cases.values().filter(|e| e.len() >= 3).count() >= 2, "combinations");

    let project = corpus_project();
    let p = project.path().to_str().expect("utf-8");
    let out = qpf(&["validate", "--project", p, "--format", "json"]);
    assert_eq!(out.status.code(), Some(1), "{}", show(&out));
    let doc = json_of(&out);
    assert_eq!((doc["format"].as_u64(), &doc["valid"]), (Some(2), &serde_json::json!(false)), "{doc:#}");
    let mut found: BTreeMap<String, Vec<String>> = cases.keys().map(|k| (k.clone(), Vec::new())).collect();
    for problem in doc["problems"].as_array().expect("problems") {
        let file = problem["file"].as_str().expect("every problem has its file");
        let name = file.strip_prefix("agents/").unwrap_or_else(|| panic!("a problem outside the agents: {problem}"));
        assert_eq!(problem["severity"], "error", "{problem}");
        assert_eq!(
            problem["raised_by"],
            serde_json::json!([{"entry": "validate/agent-validator", "plugin": "agent-validator"}])
        );
        found.get_mut(name).expect("a corpus file").push(format!(
            "{}:{} {} {}",
            problem["line"],
            problem["column"],
            problem["rule"].as_str().expect("rule"),
            problem["message"].as_str().expect("message")
        ));
    }
    for (name, expected) in &cases {
        let mut actual = found.remove(name).unwrap_or_default();
        actual.sort();
        assert_eq!(&actual, expected, "{name}");
    }
    let total: usize = cases.values().map(Vec::len).sum();
    assert_eq!(doc["errors"].as_u64(), Some(total as u64));

    // For people: rustc's shape, each problem once, with its excerpt.
    let out = qpf(&["validate", "--project", p]);
    assert_eq!(out.status.code(), Some(1), "{}", show(&out));
    let stderr = String::from_utf8_lossy(&out.stderr);
    let line = "error[agent/unknown-type]: agents/field-type-typo.yaml:9:32: field `value` of type `Reading`: unknown type `numbr` (did you mean `number`?) (schema `Agent/field-type-typo@1.0.0`; validator `agent-validator`)";
    assert_eq!(stderr.matches(line).count(), 1, "{stderr}");
    assert!(
        stderr.contains("9 |         - { name: value, type: numbr }\n  |                                ^"),
        "{stderr}"
    );
    assert!(stderr.ends_with(&format!("{total} error(s), 0 warning(s) found\n")), "{stderr}");

    // For code scanning: valid SARIF, a result per problem, at its place, with its rule described.
    let out = qpf(&["validate", "--project", p, "--format", "sarif"]);
    assert_eq!(out.status.code(), Some(1), "{}", show(&out));
    let log = json_of(&out);
    assert_valid_sarif(&log);
    let run = &log["runs"][0];
    let results = run["results"].as_array().expect("results");
    assert_eq!(results.len(), total);
    let typo = results
        .iter()
        .find(|r| r["message"]["text"].as_str().is_some_and(|t| t.contains("`numbr`")))
        .expect("the typo's result");
    assert_eq!(typo["ruleId"], "agent/unknown-type");
    assert_eq!(typo["level"], "error");
    let location = &typo["locations"][0]["physicalLocation"];
    assert_eq!(
        location["artifactLocation"]["uri"],
        format!("{}/agents/field-type-typo.yaml", url_path(project.path()))
    );
    assert_eq!(
        (location["region"]["startLine"].as_u64(), location["region"]["startColumn"].as_u64()),
        (Some(9), Some(32))
    );
    let rules = run["tool"]["driver"]["rules"].as_array().expect("rules");
    let index = typo["ruleIndex"].as_u64().expect("index") as usize;
    assert_eq!(rules[index]["id"], "agent/unknown-type");
    assert!(rules[index]["help"]["text"].as_str().is_some_and(|t| t.contains("agent-validator")), "{:#}", rules[index]);
}

/// `file:///…` of an absolute folder.
fn url_path(dir: &Path) -> String {
    format!("file://{}", dir.display())
}

#[test]
fn the_example_project_is_clean_in_every_format_and_its_locations_are_relative_to_where_qpf_runs() {
    let root = support::workspace_root();
    let run = |args: &[&str]| {
        std::process::Command::new(support::qpf_bin())
            .args(args)
            .current_dir(&root)
            .env("QPF_LOG", "warn")
            .output()
            .expect("qpf runs")
    };
    let out = run(&["validate", "--project", "schemas"]);
    assert_eq!(out.status.code(), Some(0), "{}", show(&out));
    assert_eq!(
        String::from_utf8_lossy(&out.stdout),
        "ok: 5 schemas, 13 entries, 65 invocations planned; 5 validator invocations\n"
    );
    let out = run(&["validate", "--project", "schemas", "--format", "json"]);
    let doc = json_of(&out);
    assert_eq!(doc["valid"], true, "{doc:#}");
    assert_eq!(doc["problems"], serde_json::json!([]));
    assert_eq!((doc["schemas"].as_u64(), doc["validator_invocations"].as_u64()), (Some(5), Some(5)));
    let out = run(&["validate", "--project", "schemas", "--format", "sarif"]);
    assert_eq!(out.status.code(), Some(0), "{}", show(&out));
    let log = json_of(&out);
    assert_valid_sarif(&log);
    assert_eq!(log["runs"][0]["results"], serde_json::json!([]));

    // A broken copy, run from its parent folder: the SARIF locations are relative to it.
    let parent = tempfile::tempdir().expect("temp dir");
    let project = support::validated_example_project();
    let copy = parent.path().join("proj");
    std::fs::rename(project.path(), &copy).expect("move the project");
    let monitor = copy.join("agents/monitor.yaml");
    let text = std::fs::read_to_string(&monitor).expect("monitor");
    std::fs::write(&monitor, text.replace("{ name: value, type: number }", "{ name: value, type: numbr }"))
        .expect("edit");
    let out = std::process::Command::new(support::qpf_bin())
        .args(["validate", "--project", "proj", "--format", "sarif"])
        .current_dir(parent.path())
        .output()
        .expect("qpf runs");
    assert_eq!(out.status.code(), Some(1), "{}", show(&out));
    let log = json_of(&out);
    assert_valid_sarif(&log);
    assert_eq!(
        log["runs"][0]["results"][0]["locations"][0]["physicalLocation"]["artifactLocation"]["uri"],
        "proj/agents/monitor.yaml"
    );
}

#[test]
fn a_problem_of_the_project_or_a_schema_file_is_a_sarif_result_of_the_hosts_rules() {
    let project = support::validated_example_project();
    let p = project.path();
    std::fs::write(p.join("agents/broken.yaml"), "apiVersion: qpf.dev/v1\nkind: Agent\nmetadata: [\n").expect("broken");
    let out = qpf(&["validate", "--project", p.to_str().expect("utf-8"), "--format", "sarif"]);
    assert_eq!(out.status.code(), Some(1), "{}", show(&out));
    let log = json_of(&out);
    assert_valid_sarif(&log);
    let result = &log["runs"][0]["results"][0];
    assert_eq!(result["ruleId"], "qpf/schema", "{log:#}");
    assert!(
        result["locations"][0]["physicalLocation"]["artifactLocation"]["uri"]
            .as_str()
            .is_some_and(|u| u.ends_with("/agents/broken.yaml")),
        "{result:#}"
    );
    assert!(result["locations"][0]["physicalLocation"]["region"]["startLine"].as_u64().is_some(), "{result:#}");

    // A validator that names a plugin qpf.yaml does not declare: a project problem, suggested.
    std::fs::remove_file(p.join("agents/broken.yaml")).expect("remove");
    let yaml = std::fs::read_to_string(p.join("qpf.yaml")).expect("qpf.yaml");
    std::fs::write(
        p.join("qpf.yaml"),
        yaml.replace("{ plugin: agent-validator, input: /spec }", "{ plugin: agent-validatr }"),
    )
    .expect("write");
    let out = qpf(&["validate", "--project", p.to_str().expect("utf-8"), "--format", "json"]);
    assert_eq!(out.status.code(), Some(1), "{}", show(&out));
    let doc = json_of(&out);
    assert_eq!(doc["problems"][0]["rule"], "qpf/project", "{doc:#}");
    assert_eq!(doc["problems"][0]["file"], "qpf.yaml");
    assert!(
        doc["problems"][0]["message"].as_str().is_some_and(|m| m.contains(
            "validator `agent-validatr` is not a plugin `qpf.yaml` declares (did you mean `agent-validator`?)"
        )),
        "{doc:#}"
    );
}

#[test]
fn a_diagnostic_several_validators_raise_is_reported_once_naming_them_all() {
    let project = support::validated_example_project();
    let p = project.path();
    // The same component declared twice, each a validator of Agent.
    let yaml = std::fs::read_to_string(p.join("qpf.yaml")).expect("qpf.yaml");
    let decl =
        yaml.split("  agent-validator:\n").nth(1).expect("declared").lines().take(2).collect::<Vec<_>>().join("\n");
    let yaml = yaml
        .replace(
            "{ plugin: agent-validator, input: /spec }",
            "{ plugin: agent-validator, input: /spec }\n      - { plugin: second-opinion, input: /spec }",
        )
        .replace("plugins:\n", &format!("plugins:\n  second-opinion:\n{decl}\n"));
    std::fs::write(p.join("qpf.yaml"), yaml).expect("write");
    let monitor = p.join("agents/monitor.yaml");
    let text = std::fs::read_to_string(&monitor).expect("monitor");
    std::fs::write(&monitor, text.replace("{ name: value, type: number }", "{ name: value, type: numbr }"))
        .expect("edit");
    let out = qpf(&["validate", "--project", p.to_str().expect("utf-8"), "--format", "json"]);
    assert_eq!(out.status.code(), Some(1), "{}", show(&out));
    let doc = json_of(&out);
    let problems = doc["problems"].as_array().expect("problems");
    assert_eq!(problems.len(), 1, "{doc:#}");
    let raisers: Vec<&str> =
        problems[0]["raised_by"].as_array().expect("raisers").iter().filter_map(|r| r["plugin"].as_str()).collect();
    assert_eq!(raisers, ["agent-validator", "second-opinion"]);
    let out = qpf(&["validate", "--project", p.to_str().expect("utf-8")]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(stderr.matches("error[agent/unknown-type]").count(), 1, "{stderr}");
    assert!(stderr.contains("validator `agent-validator`, `second-opinion`)"), "{stderr}");
}

#[test]
fn extract_runs_no_generator_on_a_schema_its_validator_refuses_and_says_so_once() {
    let project = support::validated_example_project();
    let p = project.path();
    let monitor = p.join("agents/monitor.yaml");
    let text = std::fs::read_to_string(&monitor).expect("monitor");
    std::fs::write(&monitor, text.replace("{ name: value, type: number }", "{ name: value, type: numbr }"))
        .expect("edit");
    let report = p.join("report.json");
    let out = qpf(&["extract", "--project", p.to_str().expect("utf-8"), "--report", report.to_str().expect("utf-8")]);
    assert_eq!(out.status.code(), Some(1), "{}", show(&out));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(stderr.matches("unknown type `numbr`").count(), 1, "{stderr}");
    assert!(stderr.contains("error[agent/unknown-type]: agents/monitor.yaml:16:32: "), "{stderr}");
    assert!(
        stderr.contains("error: 2 invocations were not run because a validator found errors in their schema"),
        "{stderr}"
    );
    assert!(!stderr.contains("fail-fast"), "{stderr}");
    assert!(!stderr.contains("an entry they need failed"), "{stderr}");
    // The other agents are generated; the monitor is not.
    assert!(p.join("out/adapter/src/adapter/models.py").is_file());
    assert!(!p.join("out/monitor").exists());
    let report: serde_json::Value = serde_json::from_slice(&std::fs::read(&report).expect("report")).expect("JSON");
    let rows = report["invocations"].as_array().expect("rows");
    let validator = rows
        .iter()
        .find(|r| r["entry"] == "validate/agent-validator" && r["schema"] == "Agent/monitor@0.9.0")
        .expect("the validator's row");
    assert_eq!(
        (&validator["outcome"], &validator["error"]["kind"]),
        (&serde_json::json!("error"), &serde_json::json!("invalid"))
    );
    assert_eq!(validator["diagnostics"][0]["rule"], "agent/unknown-type");
    assert_eq!(validator["files"], serde_json::json!([]));

    // `qpf plan` runs the validators too, and says the schema will not be extracted.
    let out = qpf(&["plan", "--project", p.to_str().expect("utf-8")]);
    assert_eq!(out.status.code(), Some(1), "{}", show(&out));
    assert!(String::from_utf8_lossy(&out.stderr).contains("error[agent/unknown-type]: agents/monitor.yaml:16:32: "));
    assert!(String::from_utf8_lossy(&out.stdout).contains("(validator)"), "{}", show(&out));

    // Fixed, the validator's verdict comes from the cache like any invocation's.
    std::fs::write(&monitor, &text).expect("restore");
    let out = qpf(&["extract", "--project", p.to_str().expect("utf-8")]);
    assert_eq!(out.status.code(), Some(0), "{}", show(&out));
    assert!(p.join("out/monitor/src/monitor/models.py").is_file());
    let out = qpf(&["validate", "--project", p.to_str().expect("utf-8")]);
    assert_eq!(out.status.code(), Some(0), "{}", show(&out));
}

#[test]
fn a_validator_that_writes_files_fails_and_gates_its_schema() {
    // `hello.wat` writes `hello.txt`: as a validator, that is an error, not a file.
    let dir = tempfile::tempdir().expect("temp dir");
    let p = dir.path();
    let wasm = support::hello_wasm();
    std::fs::write(p.join("hello.wasm"), &wasm).expect("wasm");
    let digest = format!("blake3:{}", blake3::hash(&wasm).to_hex());
    support::note_project(
        p,
        "\n  Note:\n    schema: note.schema.json\n    validators: [{ plugin: hello, input: /spec }]",
        &format!("\n  hello: {{ path: hello.wasm, digest: \"{digest}\" }}\n"),
    );
    let out = qpf(&["validate", "--project", p.to_str().expect("utf-8"), "--format", "json"]);
    assert_eq!(out.status.code(), Some(1), "{}", show(&out));
    let doc = json_of(&out);
    assert_eq!(doc["problems"][0]["rule"], "qpf/validator-failed", "{doc:#}");
    assert_eq!(
        doc["problems"][0]["message"],
        "the validator `hello` failed on `Note/first@1.0.0`: output error: plugin `hello` is a validator of kind `Note`: it must return diagnostics only, and it returned 1 file (`hello.txt`)"
    );
    assert_eq!(doc["problems"][0]["file"], "notes/first.yaml");
    let out = qpf(&["extract", "--project", p.to_str().expect("utf-8")]);
    assert_eq!(out.status.code(), Some(1), "{}", show(&out));
    assert!(!p.join("out/first/hello.txt").exists(), "the generator did not run: {}", show(&out));
    assert!(String::from_utf8_lossy(&out.stderr).contains("1 invocations were not run because a validator"));
}
