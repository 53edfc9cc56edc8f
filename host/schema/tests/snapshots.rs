//! Snapshot tests: every folder under `tests/snapshots/valid/` and `tests/snapshots/invalid/` is a
//! tiny project (`schemas/*.yaml`, imported fragments beside them, `kinds/<Kind>.json`).
//!
//! A valid case must load, and its resolved schemas with their provenance must equal
//! `expected.json`; an invalid case must fail, and its errors (as printed to the user) must equal
//! `expected.txt`. Run with `QPF_BLESS=1` to (re)write the expected files, then review them: they are
//! the contract.

// Helpers outside `#[test]` functions unwrap too: a failed fixture step should stop the test.
#![allow(clippy::unwrap_used)]

mod common;
use common::canonical;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use qpf_schema::{KindRegistry, SchemaError, SchemaSet};
use serde_json::Value;

fn snapshots() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/snapshots")
}

fn bless() -> bool {
    std::env::var_os("QPF_BLESS").is_some_and(|v| v == "1")
}

/// The case folders of `valid` or `invalid`, sorted by name.
fn cases(group: &str) -> Vec<PathBuf> {
    let mut dirs: Vec<PathBuf> =
        std::fs::read_dir(snapshots().join(group)).unwrap().map(|e| e.unwrap().path()).filter(|p| p.is_dir()).collect();
    dirs.sort();
    dirs
}

/// `kinds/<Kind>.json` → `Kind`.
fn registry(case: &Path) -> Result<KindRegistry, Vec<SchemaError>> {
    let mut kinds = BTreeMap::new();
    let dir = case.join("kinds");
    if dir.is_dir() {
        for entry in std::fs::read_dir(&dir).unwrap() {
            let path = entry.unwrap().path();
            if path.extension().is_some_and(|e| e == "json") {
                let stem = path.file_stem().unwrap().to_string_lossy().into_owned();
                kinds.insert(stem, Path::new("kinds").join(path.file_name().unwrap()));
            }
        }
    }
    KindRegistry::load(case, &kinds)
}

fn load(case: &Path) -> Result<SchemaSet, Vec<SchemaError>> {
    SchemaSet::load(case, &["schemas/*.yaml".into()], &registry(case)?)
}

/// `{ id: {resolved, provenance: {pointer: "file:line:col via ..."}} }`, pretty, keys sorted.
fn render_set(set: &SchemaSet) -> String {
    let mut out = serde_json::Map::new();
    for schema in set.iter() {
        let provenance: serde_json::Map<String, Value> = schema
            .provenance
            .iter()
            .map(|(pointer, origin)| {
                let mut text = format!("{}:{}:{}", origin.file.display(), origin.line, origin.column);
                for via in &origin.via {
                    text.push_str(&format!(" via {via}"));
                }
                (pointer.clone(), Value::String(text))
            })
            .collect();
        let mut entry = serde_json::Map::new();
        entry.insert("resolved".into(), schema.to_json());
        entry.insert("provenance".into(), Value::Object(provenance));
        out.insert(schema.id(), Value::Object(entry));
    }
    let mut text = serde_json::to_string_pretty(&canonical(&Value::Object(out))).unwrap();
    text.push('\n');
    text
}

fn render_errors(errors: &[SchemaError]) -> String {
    let mut text = errors.iter().map(ToString::to_string).collect::<Vec<_>>().join("\n");
    text.push('\n');
    text
}

#[derive(Debug, Clone, Copy, PartialEq)]
enum Op {
    Same,
    Removed,
    Added,
}

/// A line diff (longest common subsequence): `-` lines only in `expected`, `+` only in `actual`,
/// with two lines of context around each change.
fn diff(expected: &str, actual: &str) -> String {
    let a: Vec<&str> = expected.lines().collect();
    let b: Vec<&str> = actual.lines().collect();
    let mut lcs = vec![vec![0usize; b.len() + 1]; a.len() + 1];
    for i in (0..a.len()).rev() {
        for j in (0..b.len()).rev() {
            lcs[i][j] = if a[i] == b[j] { lcs[i + 1][j + 1] + 1 } else { lcs[i + 1][j].max(lcs[i][j + 1]) };
        }
    }
    let mut ops = Vec::new();
    let (mut i, mut j) = (0, 0);
    while i < a.len() || j < b.len() {
        if i < a.len() && j < b.len() && a[i] == b[j] {
            ops.push((Op::Same, a[i]));
            i += 1;
            j += 1;
        } else if i < a.len() && (j == b.len() || lcs[i + 1][j] >= lcs[i][j + 1]) {
            ops.push((Op::Removed, a[i]));
            i += 1;
        } else {
            ops.push((Op::Added, b[j]));
            j += 1;
        }
    }
    const CONTEXT: usize = 2;
    let near_change = |k: usize| {
        ops[k.saturating_sub(CONTEXT)..(k + CONTEXT + 1).min(ops.len())].iter().any(|(op, _)| *op != Op::Same)
    };
    let mut out = String::from("--- expected\n+++ actual\n");
    let mut skipped = false;
    for (k, (op, line)) in ops.iter().enumerate() {
        if !near_change(k) {
            if !skipped {
                out.push_str("@@ ... @@\n");
                skipped = true;
            }
            continue;
        }
        skipped = false;
        let sign = match op {
            Op::Same => ' ',
            Op::Removed => '-',
            Op::Added => '+',
        };
        out.push(sign);
        out.push_str(line);
        out.push('\n');
    }
    out
}

/// Compares `actual` with the case's expected file (or writes it when blessing); `Err` describes the
/// mismatch.
fn check(case: &Path, file: &str, actual: &str) -> Result<(), String> {
    let path = case.join(file);
    if bless() {
        std::fs::write(&path, actual).unwrap();
        return Ok(());
    }
    let name = case.file_name().unwrap().to_string_lossy();
    let expected = std::fs::read_to_string(&path)
        .map_err(|e| format!("case `{name}`: cannot read {file} ({e}); run with QPF_BLESS=1 to create it"))?;
    if expected == actual {
        Ok(())
    } else {
        Err(format!("case `{name}`: output differs from {file}\n{}", diff(&expected, actual)))
    }
}

fn finish(group: &str, failures: &[String]) {
    assert!(failures.is_empty(), "{} {group} snapshot case(s) failed:\n\n{}", failures.len(), failures.join("\n\n"));
}

#[test]
fn valid_cases_resolve_to_their_expected_json_and_provenance() {
    let cases = cases("valid");
    assert!(cases.len() >= 6, "only {} valid cases", cases.len());
    let mut failures = Vec::new();
    for case in &cases {
        let name = case.file_name().unwrap().to_string_lossy();
        let outcome = match load(case) {
            Ok(set) => {
                assert!(!set.is_empty(), "case `{name}` has no schemas");
                check(case, "expected.json", &render_set(&set))
            }
            Err(errors) => Err(format!("case `{name}` should load, but:\n{}", render_errors(&errors))),
        };
        if let Err(message) = outcome {
            failures.push(message);
        }
    }
    finish("valid", &failures);
}

#[test]
fn invalid_cases_fail_with_their_expected_errors() {
    let cases = cases("invalid");
    assert!(cases.len() >= 6, "only {} invalid cases", cases.len());
    let mut failures = Vec::new();
    for case in &cases {
        let name = case.file_name().unwrap().to_string_lossy();
        let outcome = match load(case) {
            Ok(set) => Err(format!(
                "case `{name}` should fail, but loaded {:?}",
                set.iter().map(|s| s.id()).collect::<Vec<_>>()
            )),
            Err(errors) => check(case, "expected.txt", &render_errors(&errors)),
        };
        if let Err(message) = outcome {
            failures.push(message);
        }
    }
    finish("invalid", &failures);
}

#[test]
fn every_case_has_exactly_its_expected_file() {
    for (group, wanted, unwanted) in
        [("valid", "expected.json", "expected.txt"), ("invalid", "expected.txt", "expected.json")]
    {
        for case in cases(group) {
            assert!(case.join("schemas").is_dir(), "{}: no schemas folder", case.display());
            if !bless() {
                assert!(case.join(wanted).is_file(), "{}: missing {wanted}", case.display());
            }
            assert!(!case.join(unwanted).exists(), "{}: stray {unwanted}", case.display());
        }
    }
}

#[test]
fn the_diff_printer_marks_removed_and_added_lines() {
    let d = diff("a\nb\nc\nd\ne\nf\ng\nh\n", "a\nb\nX\nd\ne\nf\ng\nh\ni\n");
    assert_eq!(d, "--- expected\n+++ actual\n a\n b\n-c\n+X\n d\n e\n@@ ... @@\n g\n h\n+i\n");
    assert_eq!(diff("same\n", "same\n"), "--- expected\n+++ actual\n@@ ... @@\n");
}
