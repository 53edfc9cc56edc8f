//! The report format (`--report`, format 1) pinned by a golden file: every field, every outcome
//! (`ok`, `error`, `skipped`) and every failure kind a project can provoke with the hostile guest.
//! Values that depend on the machine or the guest build (keys, durations, fuel) are normalised.
//! `QPF_BLESS=1` rewrites `tests/golden/report.json`.

use serde_json::{Value, json};

use crate::support::{self, show};

fn normalise(value: &mut Value) {
    match value {
        Value::Object(map) => {
            for (k, v) in map.iter_mut() {
                match k.as_str() {
                    "key" => *v = json!("blake3:KEY"),
                    "duration_us" | "load_us" | "fuel" => *v = json!(0),
                    _ => normalise(v),
                }
            }
        }
        Value::Array(items) => items.iter_mut().for_each(normalise),
        _ => {}
    }
}

#[test]
fn a_full_report_matches_its_golden_file() {
    let spawn = "    spawn: { plugins: [hostile], max-count: 1 }\n";
    let project = support::hostile_project_with(
        &[
            ("ok", json!({ "mode": "echo" }), ""),
            ("refuses", json!({ "mode": "error" }), ""),
            ("needs-refuses", json!({ "mode": "echo" }), "    needs: [refuses]\n"),
            ("bad-path", json!({ "mode": "path", "path": "../x" }), ""),
            ("exits", json!({ "mode": "exit", "bytes": 0 }), ""),
            ("extra-config", json!({ "mode": "echo", "extra": true }), ""),
            ("spawns", json!({ "mode": "spawn-many", "bytes": 3 }), spawn),
        ],
        "  fuel: 5000000000\n",
    );
    let p = project.path();
    let report_path = p.join("report.json");
    let out = support::qpf(&[
        "extract",
        "--project",
        p.to_str().unwrap(),
        "--jobs",
        "1",
        "--report",
        report_path.to_str().unwrap(),
    ]);
    assert_eq!(out.status.code(), Some(1), "{}", show(&out));
    let mut report = support::report(&report_path);
    normalise(&mut report);
    let actual = format!("{}\n", serde_json::to_string_pretty(&report).unwrap());
    support::golden(&support::workspace_root().join("tests/golden/report.json"), &actual);
    // Every outcome and cache state is one of the documented names.
    for inv in report["invocations"].as_array().unwrap() {
        assert!(["ok", "error", "skipped"].contains(&inv["outcome"].as_str().unwrap()), "{inv}");
        assert!(["hit", "miss"].contains(&inv["cache"].as_str().unwrap()), "{inv}");
    }
}
