//! Hostile inputs: every one is refused (or, for the harmless ones, accepted) with a clear error,
//! in bounded time and memory; plus a few edge cases of composition found while writing them.

// Helpers outside `#[test]` functions unwrap too: a failed fixture step should stop the test.
#![allow(clippy::unwrap_used)]

use std::collections::BTreeMap;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use qpf_schema::{KindRegistry, SchemaError, SchemaSet};

/// Every hostile input must be dealt with well within this.
const BOUND: Duration = Duration::from_secs(5);

fn write(root: &Path, rel: &str, text: impl AsRef<[u8]>) {
    let path = root.join(rel);
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    std::fs::write(path, text).unwrap();
}

/// A valid schema document with `extra` (YAML lines at top level, after `metadata`) and `spec`.
fn doc(kind: &str, name: &str, version: &str, extra: &str, spec: &str) -> String {
    format!(
        "apiVersion: qpf.dev/v1\nkind: {kind}\nmetadata:\n  name: {name}\n  version: {version}\n{extra}spec:\n{spec}"
    )
}

/// A registry where `Agent` and `Fragment` accept any object.
fn permissive(root: &Path) -> KindRegistry {
    write(root, "kinds/any.json", r#"{"type":"object"}"#);
    let kinds: BTreeMap<String, PathBuf> =
        [("Agent", "kinds/any.json"), ("Fragment", "kinds/any.json")].map(|(k, p)| (k.into(), p.into())).into();
    KindRegistry::load(root, &kinds).unwrap()
}

fn load(root: &Path) -> Result<SchemaSet, Vec<SchemaError>> {
    SchemaSet::load(root, &["schemas/*.yaml".into()], &permissive(root))
}

/// Loads the project, expecting failure within [`BOUND`], and returns the errors.
fn load_err(root: &Path) -> Vec<SchemaError> {
    let start = Instant::now();
    let result = load(root);
    let elapsed = start.elapsed();
    assert!(elapsed < BOUND, "took {elapsed:?}");
    match result {
        Ok(set) => panic!("expected errors, loaded {:?}", set.iter().map(|s| s.id()).collect::<Vec<_>>()),
        Err(errors) => {
            assert!(!errors.is_empty());
            errors
        }
    }
}

/// The one error whose Display contains `needle`.
fn find<'a>(errors: &'a [SchemaError], needle: &str) -> &'a SchemaError {
    errors.iter().find(|e| e.to_string().contains(needle)).unwrap_or_else(|| {
        let all: Vec<String> = errors.iter().map(ToString::to_string).collect();
        panic!("no error mentions {needle:?}; got:\n{}", all.join("\n"))
    })
}

fn tmp() -> tempfile::TempDir {
    tempfile::tempdir().unwrap()
}

#[test]
fn billion_laughs_alias_bomb_is_refused_quickly() {
    let dir = tmp();
    write(dir.path(), "schemas/bomb.yaml", billion_laughs(10));
    let errors = load_err(dir.path());
    assert_eq!(errors.len(), 1, "{errors:?}");
    let e = &errors[0];
    assert_eq!(e.path, Path::new("schemas/bomb.yaml"));
    assert!(e.message.contains("budget breached"), "{e}");
    assert!(e.line >= 7, "{e}");
}

fn billion_laughs(levels: usize) -> String {
    let mut spec = String::from("  l0: &l0 [lol, lol, lol, lol, lol, lol, lol, lol, lol]\n");
    for i in 1..levels {
        let p = i - 1;
        spec.push_str(&format!("  l{i}: &l{i} [*l{p}, *l{p}, *l{p}, *l{p}, *l{p}, *l{p}, *l{p}, *l{p}, *l{p}]\n"));
    }
    doc("Agent", "bomb", "1.0.0", "", &spec)
}

/// serde-saphyr reports errors met while replaying an alias as `... (defined at line A, column B)
/// (used at line C, column D)`; the position is printed in front, but the message must stay whole.
#[test]
fn alias_budget_error_message_is_not_cut_mid_parenthesis() {
    let dir = tmp();
    write(dir.path(), "schemas/bomb.yaml", billion_laughs(10));
    let errors = load_err(dir.path());
    let message = &errors[0].message;
    assert_eq!(message.matches('(').count(), message.matches(')').count(), "unbalanced: {message:?}");
    assert!(!message.ends_with("(used"), "cut mid-parenthesis: {message:?}");
}

/// A depth error at `line` and `column` (the message only: the excerpt of a 10,000-bracket line is
/// long). The document's root mapping is depth 1 and `spec` depth 2, so the 127th nested collection
/// is the 129th level.
fn assert_is_depth_error(e: &SchemaError, message: &str, line: u64, column: u64) {
    let shown = format!("{}:{}:{}: {}", e.path.display(), e.line, e.column, e.message);
    assert_eq!(e.message, message, "{shown}");
    assert_eq!((e.path.as_path(), e.line, e.column), (Path::new("schemas/deep.yaml"), line, column), "{shown}");
}

#[test]
fn ten_thousand_nested_flow_sequences_hit_the_parser_nesting_limit() {
    let dir = tmp();
    let n = 10_000;
    let spec = format!("  deep: {}x{}\n", "[".repeat(n), "]".repeat(n));
    write(dir.path(), "schemas/deep.yaml", doc("Agent", "deep", "1.0.0", "", &spec));
    let errors = load_err(dir.path());
    assert_eq!(errors.len(), 1, "{errors:?}");
    let e = &errors[0];
    // The scanner's flow nesting limit (255) trips before the depth budget (128) sees events.
    assert_is_depth_error(e, "recursion limit exceeded", 7, 9 + 255);
}

#[test]
fn ten_thousand_nested_flow_mappings_hit_the_depth_budget() {
    let dir = tmp();
    let n = 10_000;
    let spec = format!("  deep: {}x{}\n", "{a: ".repeat(n), "}".repeat(n));
    write(dir.path(), "schemas/deep.yaml", doc("Agent", "deep", "1.0.0", "", &spec));
    let errors = load_err(dir.path());
    assert_eq!(errors.len(), 1, "{errors:?}");
    let e = &errors[0];
    assert_is_depth_error(
        e,
        "the YAML exceeds QPF's parsing limits (budget breached: Depth { depth: 129 }); see docs/yaml.md",
        7,
        9 + 4 * 126,
    );
}

#[test]
fn ten_thousand_nested_block_sequences_hit_the_depth_budget() {
    let dir = tmp();
    let spec = format!("  deep:\n    {}x\n", "- ".repeat(10_000));
    write(dir.path(), "schemas/deep.yaml", doc("Agent", "deep", "1.0.0", "", &spec));
    let errors = load_err(dir.path());
    assert_eq!(errors.len(), 1, "{errors:?}");
    let e = &errors[0];
    assert_is_depth_error(
        e,
        "the YAML exceeds QPF's parsing limits (budget breached: Depth { depth: 129 }); see docs/yaml.md",
        8,
        5 + 2 * 126,
    );
}

#[test]
fn fifty_megabyte_scalar_is_refused_by_the_file_cap_before_parsing() {
    let dir = tmp();
    let path = dir.path().join("schemas/huge.yaml");
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    {
        let mut file = std::io::BufWriter::new(std::fs::File::create(&path).unwrap());
        file.write_all(doc("Agent", "huge", "1.0.0", "", "  blob: ").as_bytes()).unwrap();
        let chunk = vec![b'a'; 1 << 20];
        for _ in 0..50 {
            file.write_all(&chunk).unwrap();
        }
        file.write_all(b"\n").unwrap();
    }
    let size = std::fs::metadata(&path).unwrap().len();
    assert!(size > 50 << 20);

    let start = Instant::now();
    let e = qpf_schema::yaml::read_text(&path, Path::new("schemas/huge.yaml")).unwrap_err();
    assert!(start.elapsed() < BOUND);
    assert_eq!(
        e.message,
        format!("file is {size} bytes, over the limit of {} bytes for a YAML file", qpf_schema::yaml::MAX_FILE_BYTES)
    );
    assert_eq!(qpf_schema::yaml::MAX_FILE_BYTES, 8 << 20);
    assert_eq!(e.to_string(), format!("schemas/huge.yaml: {}", e.message));

    let errors = load_err(dir.path());
    assert_eq!(errors.len(), 1, "{errors:?}");
    assert_eq!(errors[0].path, Path::new("schemas/huge.yaml"));
    assert!(errors[0].message.contains("over the limit of 8388608 bytes"), "{}", errors[0]);
}

#[test]
fn file_just_over_the_cap_is_refused_and_one_at_the_cap_is_read() {
    let dir = tmp();
    let cap = usize::try_from(qpf_schema::yaml::MAX_FILE_BYTES).unwrap();
    let at_cap = dir.path().join("at.yaml");
    let over = dir.path().join("over.yaml");
    std::fs::write(&at_cap, vec![b'#'; cap]).unwrap();
    std::fs::write(&over, vec![b'#'; cap + 1]).unwrap();
    assert_eq!(qpf_schema::yaml::read_text(&at_cap, Path::new("at.yaml")).unwrap().len(), cap);
    let e = qpf_schema::yaml::read_text(&over, Path::new("over.yaml")).unwrap_err();
    assert!(e.message.contains("over the limit"), "{e}");
}

#[test]
fn one_hundred_thousand_documents_are_refused() {
    let dir = tmp();
    let mut text = doc("Agent", "many", "1.0.0", "", "  a: 1\n");
    for i in 0..100_000 {
        text.push_str(&format!("---\nn: {i}\n"));
    }
    write(dir.path(), "schemas/many.yaml", &text);
    let errors = load_err(dir.path());
    assert_eq!(errors.len(), 1, "{errors:?}");
    let e = &errors[0];
    assert_eq!(
        e.message,
        "the YAML exceeds QPF's parsing limits (budget breached: Documents { documents: 2 }); see docs/yaml.md"
    );
    assert_eq!((e.line, e.column), (8, 1), "{e}");
}

#[test]
fn a_second_document_alone_is_refused() {
    let dir = tmp();
    let text = format!(
        "{}---\n{}",
        doc("Agent", "one", "1.0.0", "", "  a: 1\n"),
        doc("Agent", "two", "1.0.0", "", "  a: 1\n")
    );
    write(dir.path(), "schemas/two.yaml", &text);
    let errors = load_err(dir.path());
    assert_eq!(errors.len(), 1, "{errors:?}");
    assert_eq!(
        errors[0].to_string().lines().next(),
        Some(
            "schemas/two.yaml:8:1: the YAML exceeds QPF's parsing limits (budget breached: Documents { documents: 2 }); see docs/yaml.md"
        )
    );
}

#[test]
fn duplicate_keys_are_refused_at_the_second_key() {
    let dir = tmp();
    write(dir.path(), "schemas/dup.yaml", doc("Agent", "dup", "1.0.0", "", "  a: 1\n  b: 2\n  a: 3\n"));
    let errors = load_err(dir.path());
    assert_eq!(errors.len(), 1, "{errors:?}");
    let e = &errors[0];
    assert!(e.message.starts_with("duplicate mapping key: a"), "{e}");
    assert_eq!((e.line, e.column), (9, 3), "{e}");
}

#[test]
fn duplicate_top_level_kind_is_refused() {
    let dir = tmp();
    let text = doc("Agent", "dup", "1.0.0", "kind: Fragment\n", "  a: 1\n");
    write(dir.path(), "schemas/dup.yaml", text);
    let errors = load_err(dir.path());
    let e = &errors[0];
    assert!(e.message.starts_with("duplicate mapping key: kind"), "{e}");
    assert_eq!((e.line, e.column), (6, 1), "{e}");
}

#[test]
fn norway_booleans_stay_strings_in_the_resolved_schema() {
    let dir = tmp();
    let spec = "  country: no\n  switch: on\n  answer: yes\n  off: off\n  y: n\n  real: true\n  unreal: false\n";
    write(dir.path(), "schemas/norway.yaml", doc("Agent", "norway", "1.0.0", "", spec));
    let set = load(dir.path()).unwrap();
    let spec = set.get("Agent/norway@1.0.0").unwrap().to_json()["spec"].clone();
    assert_eq!(
        spec,
        serde_json::json!({
            "country": "no", "switch": "on", "answer": "yes", "off": "off", "y": "n", "real": true, "unreal": false
        })
    );
}

#[test]
fn tabs_used_for_indentation_are_refused_with_a_position() {
    let dir = tmp();
    write(dir.path(), "schemas/tabs.yaml", doc("Agent", "tabs", "1.0.0", "", "\ta: 1\n\tb: 2\n"));
    let errors = load_err(dir.path());
    assert_eq!(errors.len(), 1, "{errors:?}");
    let e = &errors[0];
    assert_eq!((e.line, e.column), (7, 2), "{e}");
    assert!(e.message.contains("tabs disallowed"), "{e}");
}

#[test]
fn invalid_utf8_is_refused_naming_the_byte_offset() {
    let dir = tmp();
    let mut bytes = doc("Agent", "bad", "1.0.0", "", "  a: ").into_bytes();
    let offset = bytes.len();
    bytes.extend_from_slice(b"\xff\xfe oops\n");
    write(dir.path(), "schemas/bad.yaml", &bytes);
    let errors = load_err(dir.path());
    assert_eq!(errors.len(), 1, "{errors:?}");
    let e = &errors[0];
    assert_eq!(e.message, format!("not valid UTF-8 at byte {offset}; save the file as UTF-8"));
    assert_eq!(e.to_string(), format!("schemas/bad.yaml: not valid UTF-8 at byte {offset}; save the file as UTF-8"));
}

#[test]
fn utf8_bom_at_the_start_is_accepted_and_positions_are_unchanged() {
    let dir = tmp();
    let text = format!("\u{feff}{}", doc("Agent", "bom", "1.0.0", "", "  a: 1\n"));
    write(dir.path(), "schemas/bom.yaml", text);
    let set = load(dir.path()).unwrap();
    let schema = set.get("Agent/bom@1.0.0").unwrap();
    assert_eq!(schema.to_json()["apiVersion"], "qpf.dev/v1");
    let origin = &schema.provenance["/spec/a"];
    assert_eq!((origin.line, origin.column), (7, 6));
}

#[test]
fn cyclic_imports_print_the_whole_cycle() {
    let dir = tmp();
    write(dir.path(), "schemas/a.yaml", doc("Agent", "a", "1.0.0", "imports:\n  b: ./b.yaml\n", "  x: 1\n"));
    write(dir.path(), "schemas/b.yaml", doc("Agent", "b", "1.0.0", "imports:\n  a: ./a.yaml\n", "  x: 1\n"));
    let errors = load_err(dir.path());
    let e = find(&errors, "import cycle");
    assert!(
        e.message.contains("schemas/a.yaml → schemas/b.yaml → schemas/a.yaml")
            || e.message.contains("schemas/b.yaml → schemas/a.yaml → schemas/b.yaml"),
        "{e}"
    );
}

#[test]
fn cyclic_imports_through_a_fragment_outside_the_globs_print_the_whole_cycle() {
    let dir = tmp();
    write(dir.path(), "schemas/a.yaml", doc("Agent", "a", "1.0.0", "imports:\n  f: ../fragments/f.yaml\n", "  x: 1\n"));
    write(dir.path(), "fragments/f.yaml", doc("Fragment", "f", "1.0.0", "imports:\n  g: ./g.yaml\n", "  x: 1\n"));
    write(dir.path(), "fragments/g.yaml", doc("Fragment", "g", "1.0.0", "imports:\n  f: ./f.yaml\n", "  x: 1\n"));
    let errors = load_err(dir.path());
    let e = find(&errors, "import cycle");
    assert!(e.message.contains("fragments/f.yaml → fragments/g.yaml → fragments/f.yaml"), "{e}");
}

#[test]
fn cyclic_extends_print_the_whole_cycle() {
    let dir = tmp();
    write(dir.path(), "schemas/a.yaml", doc("Agent", "a", "1.0.0", "imports:\n  b: b@^1\nextends: b\n", "  x: 1\n"));
    write(dir.path(), "schemas/b.yaml", doc("Agent", "b", "1.0.0", "imports:\n  a: a@^1\nextends: a\n", "  y: 1\n"));
    let errors = load_err(dir.path());
    let e = find(&errors, "import cycle");
    assert!(
        e.message.contains("schemas/a.yaml → schemas/b.yaml → schemas/a.yaml")
            || e.message.contains("schemas/b.yaml → schemas/a.yaml → schemas/b.yaml"),
        "{e}"
    );
}

#[test]
fn extending_itself_is_a_cycle() {
    let dir = tmp();
    write(
        dir.path(),
        "schemas/a.yaml",
        doc("Agent", "a", "1.0.0", "imports:\n  me: ./a.yaml\nextends: me\n", "  x: 1\n"),
    );
    let errors = load_err(dir.path());
    let e = find(&errors, "import cycle");
    assert!(e.message.contains("schemas/a.yaml → schemas/a.yaml"), "{e}");
}

#[test]
fn import_chains_deeper_than_the_limit_are_refused() {
    let dir = tmp();
    let depth = qpf_schema::resolve::MAX_DEPTH + 4;
    write(
        dir.path(),
        "schemas/top.yaml",
        doc("Agent", "top", "1.0.0", "imports:\n  n: ../chain/n0.yaml\n", "  x: 1\n"),
    );
    for i in 0..depth {
        let next = i + 1;
        write(
            dir.path(),
            &format!("chain/n{i}.yaml"),
            doc("Fragment", &format!("n{i}"), "1.0.0", &format!("imports:\n  n: ./n{next}.yaml\n"), "  x: 1\n"),
        );
    }
    write(dir.path(), &format!("chain/n{depth}.yaml"), doc("Fragment", "last", "1.0.0", "", "  x: 1\n"));
    let errors = load_err(dir.path());
    let e = find(&errors, "imports nest deeper than 16 levels");
    assert!(e.message.contains("schemas/top.yaml → chain/n0.yaml"), "{e}");
}

#[test]
fn import_climbing_out_of_the_project_is_refused() {
    let dir = tmp();
    write(dir.path(), "schemas/a.yaml", doc("Agent", "a", "1.0.0", "imports:\n  x: ../../etc/passwd\n", "  x: 1\n"));
    let errors = load_err(dir.path());
    assert_eq!(errors.len(), 1, "{errors:?}");
    let e = &errors[0];
    assert_eq!(
        e.message,
        "import `x`: `../../etc/passwd` is outside the project; imports must stay under the project folder"
    );
    assert_eq!((e.path.as_path(), e.line, e.column), (Path::new("schemas/a.yaml"), 7, 6), "{e}");
    assert!(e.excerpt.as_deref().unwrap_or("").contains("x: ../../etc/passwd"), "{e}");
}

#[test]
fn import_of_an_absolute_path_is_refused() {
    let dir = tmp();
    write(dir.path(), "schemas/a.yaml", doc("Agent", "a", "1.0.0", "imports:\n  x: /etc/passwd\n", "  x: 1\n"));
    let errors = load_err(dir.path());
    let e = find(&errors, "is outside the project");
    assert_eq!(e.line, 7, "{e}");
}

#[cfg(unix)]
#[test]
fn symlink_in_the_schema_folder_pointing_outside_is_refused() {
    let dir = tmp();
    let elsewhere = tmp();
    write(elsewhere.path(), "secret.yaml", doc("Agent", "secret", "1.0.0", "", "  x: 1\n"));
    write(dir.path(), "schemas/ok.yaml", doc("Agent", "ok", "1.0.0", "", "  x: 1\n"));
    std::os::unix::fs::symlink(elsewhere.path().join("secret.yaml"), dir.path().join("schemas/link.yaml")).unwrap();
    let errors = load_err(dir.path());
    assert_eq!(errors.len(), 1, "{errors:?}");
    let e = &errors[0];
    assert_eq!(e.path, Path::new("schemas/link.yaml"));
    assert!(e.message.starts_with("is a symbolic link to `"), "{e}");
    assert!(e.message.contains("outside the project"), "{e}");
}

#[cfg(unix)]
#[test]
fn symlink_inside_the_project_is_followed() {
    let dir = tmp();
    write(dir.path(), "real/ok.yaml", doc("Agent", "ok", "1.0.0", "", "  x: 1\n"));
    std::fs::create_dir_all(dir.path().join("schemas")).unwrap();
    std::os::unix::fs::symlink(dir.path().join("real/ok.yaml"), dir.path().join("schemas/ok.yaml")).unwrap();
    let set = load(dir.path()).unwrap();
    assert_eq!(set.iter().map(|s| s.id()).collect::<Vec<_>>(), ["Agent/ok@1.0.0"]);
}

#[cfg(unix)]
#[test]
fn import_through_a_symlink_pointing_outside_is_refused() {
    let dir = tmp();
    let elsewhere = tmp();
    write(elsewhere.path(), "base.yaml", doc("Fragment", "base", "1.0.0", "", "  x: 1\n"));
    write(dir.path(), "schemas/a.yaml", doc("Agent", "a", "1.0.0", "imports:\n  b: ../frag/base.yaml\n", "  x: 1\n"));
    std::fs::create_dir_all(dir.path().join("frag")).unwrap();
    std::os::unix::fs::symlink(elsewhere.path().join("base.yaml"), dir.path().join("frag/base.yaml")).unwrap();
    let errors = load_err(dir.path());
    let e = find(&errors, "is outside the project");
    assert_eq!((e.path.as_path(), e.line), (Path::new("schemas/a.yaml"), 7), "{e}");
}

#[test]
fn version_that_is_not_semver_is_refused_at_its_position() {
    for (version, shown) in [("banana", "banana"), ("1.0", "1.0"), ("\"1\"", "1"), ("v1.0.0", "v1.0.0")] {
        let dir = tmp();
        write(dir.path(), "schemas/a.yaml", doc("Agent", "a", version, "", "  x: 1\n"));
        let errors = load_err(dir.path());
        assert_eq!(errors.len(), 1, "{errors:?}");
        let e = &errors[0];
        assert!(
            e.message.starts_with(&format!("`metadata.version` `{shown}` is not a semantic version like `1.2.0`")),
            "{e}"
        );
        assert_eq!((e.line, e.column), (5, 12), "{e}");
        assert!(e.excerpt.is_some(), "{e}");
    }
}

#[test]
fn two_schemas_with_the_same_id_name_both_files() {
    let dir = tmp();
    write(dir.path(), "schemas/one.yaml", doc("Agent", "same", "1.0.0", "", "  x: 1\n"));
    write(dir.path(), "schemas/two.yaml", doc("Agent", "same", "1.0.0", "", "  x: 2\n"));
    let errors = load_err(dir.path());
    assert_eq!(errors.len(), 1, "{errors:?}");
    assert_eq!(
        errors[0].to_string(),
        "schemas/two.yaml: `Agent/same@1.0.0` is already defined in `schemas/one.yaml`; \
         bump `metadata.version` or rename one of them"
    );
}

#[test]
fn unknown_top_level_key_suggests_the_right_one() {
    let dir = tmp();
    let text = doc("Agent", "a", "1.0.0", "", "  x: 1\n").replace("spec:", "specs:");
    write(dir.path(), "schemas/a.yaml", text);
    let errors = load_err(dir.path());
    assert_eq!(errors.len(), 1, "{errors:?}");
    let e = &errors[0];
    assert_eq!(
        e.message,
        "unknown top-level key `specs` (did you mean `spec`?); expected one of `apiVersion`, `kind`, `metadata`, \
         `imports`, `extends`, `spec`"
    );
    assert_eq!((e.line, e.column), (6, 1), "{e}");
    assert_eq!(e.excerpt.as_deref(), Some("  |\n6 | specs:\n  | ^"));
}

#[test]
fn non_finite_numbers_are_refused() {
    let dir = tmp();
    write(dir.path(), "schemas/a.yaml", doc("Agent", "a", "1.0.0", "", "  x: .nan\n"));
    let errors = load_err(dir.path());
    assert_eq!(errors.len(), 1, "{errors:?}");
    let e = &errors[0];
    assert_eq!(e.message, "non-finite float `.nan` rejected by the configured policy");
    assert_eq!((e.line, e.column), (7, 6), "{e}");
}

/// `merge.rs` documents: "A directive object applied where there is no base acts on an empty list."
/// So a directive under a key that the base does not have must not survive into the result.
#[test]
fn list_directives_on_a_key_the_base_lacks_act_on_an_empty_list() {
    let dir = tmp();
    write(dir.path(), "fragments/base.yaml", doc("Fragment", "base", "1.0.0", "", "  kept: [1]\n"));
    let spec = "  kept: { $append: [2] }\n  fresh: { $append: [only] }\n  gone: { $remove: [x] }\n  swapped: { $replace: [1] }\n";
    write(
        dir.path(),
        "schemas/a.yaml",
        doc("Agent", "a", "1.0.0", "imports:\n  base: ../fragments/base.yaml\nextends: base\n", spec),
    );
    let set = load(dir.path()).unwrap();
    let spec = set.get("Agent/a@1.0.0").unwrap().to_json()["spec"].clone();
    assert_eq!(spec["kept"], serde_json::json!([1, 2]));
    assert_eq!(
        spec,
        serde_json::json!({"kept": [1, 2], "fresh": ["only"], "gone": [], "swapped": [1]}),
        "a directive leaked into the resolved schema"
    );
}

/// A merge error in the document's own `spec` names the pointer at fault; the position (and the
/// caret) must be that value's, not the first line of `spec`.
#[test]
fn merge_error_in_own_spec_points_at_the_offending_value() {
    let dir = tmp();
    write(dir.path(), "fragments/base.yaml", doc("Fragment", "base", "1.0.0", "", "  slos: {a: 1}\n"));
    let spec = "  description: first\n  other: 1\n  slos:\n    $append: [1]\n";
    let extra = "imports:\n  base: ../fragments/base.yaml\nextends: base\n";
    write(dir.path(), "schemas/a.yaml", doc("Agent", "a", "1.0.0", extra, spec));
    let errors = load_err(dir.path());
    assert_eq!(errors.len(), 1, "{errors:?}");
    let e = &errors[0];
    assert!(e.message.starts_with("`/spec/slos`: `$append`/`$remove` apply to lists"), "{e}");
    // `slos:` is line 12, its value (`$append: [1]`) line 13; line 10 is `description: first`.
    assert!(e.line == 12 || e.line == 13, "points at the wrong line:\n{e}");
}
