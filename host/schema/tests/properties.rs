//! Properties of loading the example project (`/schemas`: agents extending a shared fragment): the
//! result does not depend on the order the files are given in, and resolving is deterministic.

// Helpers outside `#[test]` functions unwrap too: a failed fixture step should stop the test.
#![allow(clippy::unwrap_used)]

mod common;
use common::canonical;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use proptest::prelude::*;
use proptest::test_runner::TestRunner;
use qpf_schema::{KindRegistry, SchemaError, SchemaSet};
use serde_json::{Value, json};

/// The example project of the repository.
fn example() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../schemas")
}

fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for entry in std::fs::read_dir(from).unwrap() {
        let entry = entry.unwrap();
        let target = to.join(entry.file_name());
        if entry.file_type().unwrap().is_dir() {
            copy_dir(&entry.path(), &target);
        } else {
            std::fs::copy(entry.path(), target).unwrap();
        }
    }
}

/// A copy of the example project's agents, fragments and kinds (not its outputs), and its registry.
fn project() -> (tempfile::TempDir, KindRegistry) {
    let dir = tempfile::tempdir().unwrap();
    for sub in ["agents", "fragments", "kinds"] {
        copy_dir(&example().join(sub), &dir.path().join(sub));
    }
    let kinds: BTreeMap<String, PathBuf> = [("Agent".to_owned(), PathBuf::from("kinds/agent.schema.json"))].into();
    let registry = KindRegistry::load(dir.path(), &kinds).unwrap();
    (dir, registry)
}

fn agent_files(root: &Path) -> Vec<PathBuf> {
    let files = qpf_schema::find_files(root, &["agents/*.yaml".into()]).unwrap();
    assert!(files.len() >= 5, "the example project has five agents, found {files:?}");
    files
}

/// Everything a loaded set exposes, as one canonical string: per schema (in the set's order) its
/// id, file, resolved JSON, provenance and dependencies.
fn fingerprint(set: &SchemaSet) -> String {
    let schemas: Vec<Value> = set
        .iter()
        .map(|s| {
            json!({
                "id": s.id(),
                "path": s.path,
                "resolved": canonical(&s.to_json()),
                "provenance": s.provenance,
                "depends_on": s.depends_on,
            })
        })
        .collect();
    serde_json::to_string(&schemas).unwrap()
}

fn ids(set: &SchemaSet) -> Vec<String> {
    set.iter().map(|s| s.id()).collect()
}

fn errors_text(errors: &[SchemaError]) -> Vec<String> {
    errors.iter().map(ToString::to_string).collect()
}

fn runner() -> TestRunner {
    TestRunner::new(ProptestConfig::with_cases(24))
}

#[test]
fn the_example_project_loads_with_provenance_through_extends() {
    let (dir, registry) = project();
    let set = SchemaSet::from_files(dir.path(), &agent_files(dir.path()), &registry).unwrap();
    assert_eq!(
        ids(&set),
        [
            "Agent/adapter@1.0.3",
            "Agent/auditor@2.0.0",
            "Agent/monitor@0.9.0",
            "Agent/orchestrator@1.2.0",
            "Agent/trainer@0.4.1"
        ]
    );
    let trainer = set.get("Agent/trainer@0.4.1").unwrap();
    assert_eq!(trainer.depends_on, [PathBuf::from("fragments/base-agent.yaml")]);
    let inherited = &trainer.provenance["/spec/errors/0/name"];
    assert_eq!(inherited.file, Path::new("fragments/base-agent.yaml"));
    assert_eq!(inherited.via, ["extends `base` (fragments/base-agent.yaml)"]);
    assert_eq!(trainer.to_json()["spec"]["errors"][0]["name"], "Unavailable");
}

#[test]
fn any_order_of_the_files_gives_the_same_schemas() {
    let (dir, registry) = project();
    let root = dir.path();
    let sorted = agent_files(root);
    let expected = SchemaSet::from_files(root, &sorted, &registry).unwrap();
    let (expected_ids, expected_print) = (ids(&expected), fingerprint(&expected));
    runner()
        .run(&Just(sorted.clone()).prop_shuffle(), |shuffled| {
            let set = SchemaSet::from_files(root, &shuffled, &registry).unwrap();
            prop_assert_eq!(ids(&set), expected_ids.clone(), "order {:?}", shuffled);
            for schema in expected.iter() {
                let other = set.get(&schema.id()).unwrap();
                prop_assert_eq!(canonical(&other.to_json()), canonical(&schema.to_json()));
                prop_assert_eq!(&other.provenance, &schema.provenance, "provenance of {}", schema.id());
                prop_assert_eq!(other, schema);
            }
            prop_assert_eq!(fingerprint(&set), expected_print.clone());
            Ok(())
        })
        .unwrap();
}

#[test]
fn repeated_and_shuffled_file_lists_give_the_same_schemas() {
    let (dir, registry) = project();
    let root = dir.path();
    let sorted = agent_files(root);
    let expected = fingerprint(&SchemaSet::from_files(root, &sorted, &registry).unwrap());
    let strategy = proptest::collection::vec(proptest::sample::select(sorted.clone()), sorted.len()..3 * sorted.len())
        .prop_flat_map({
            let sorted = sorted.clone();
            move |extra| {
                let mut all = sorted.clone();
                all.extend(extra);
                Just(all).prop_shuffle()
            }
        });
    runner()
        .run(&strategy, |files| {
            let set = SchemaSet::from_files(root, &files, &registry).unwrap();
            prop_assert_eq!(fingerprint(&set), expected.clone(), "files {:?}", files);
            Ok(())
        })
        .unwrap();
}

#[test]
fn resolving_twice_gives_identical_results() {
    let (dir, registry) = project();
    let root = dir.path();
    let sorted = agent_files(root);
    runner()
        .run(&Just(sorted).prop_shuffle(), |shuffled| {
            let first = SchemaSet::from_files(root, &shuffled, &registry).unwrap();
            let second = SchemaSet::from_files(root, &shuffled, &registry).unwrap();
            prop_assert_eq!(first.iter().collect::<Vec<_>>(), second.iter().collect::<Vec<_>>());
            prop_assert_eq!(fingerprint(&first), fingerprint(&second));
            Ok(())
        })
        .unwrap();
}

#[test]
fn errors_do_not_depend_on_the_order_of_the_files() {
    let (dir, registry) = project();
    let root = dir.path();
    // Three kinds of error: the fragment's kind has no JSON Schema; one agent breaks its kind; and
    // a value every agent inherits breaks it too (reported once, with a note per agent).
    let edit = |rel: &str, from: &str, to: &str| {
        let text = std::fs::read_to_string(root.join(rel)).unwrap();
        assert!(text.contains(from), "{rel} has no {from:?}");
        std::fs::write(root.join(rel), text.replacen(from, to, 1)).unwrap();
    };
    edit("agents/orchestrator.yaml", "- name: dispatch", "- name: Dispatch");
    edit("fragments/base-agent.yaml", "availability: 99.5", "availability: high");
    let mut sorted = agent_files(root);
    sorted.push(PathBuf::from("fragments/base-agent.yaml"));
    let expected = errors_text(&SchemaSet::from_files(root, &sorted, &registry).unwrap_err());
    assert_eq!(expected.len(), 3, "{expected:#?}");
    assert!(expected.iter().any(|e| e.contains("kind `Fragment` has no JSON Schema")), "{expected:#?}");
    assert!(expected.iter().any(|e| e.contains("\"Dispatch\" does not match")), "{expected:#?}");
    let inherited = expected.iter().find(|e| e.contains("\"high\" is not of type \"number\"")).unwrap();
    assert!(inherited.starts_with("fragments/base-agent.yaml:"), "{inherited}");
    // Orchestrator and monitor set their own availability; the three others inherit the bad value.
    assert_eq!(inherited.matches("= note: in `Agent/").count(), 3, "{inherited}");
    runner()
        .run(&Just(sorted).prop_shuffle(), |shuffled| {
            let errors = errors_text(&SchemaSet::from_files(root, &shuffled, &registry).unwrap_err());
            prop_assert_eq!(errors, expected.clone(), "order {:?}", shuffled);
            Ok(())
        })
        .unwrap();
}
