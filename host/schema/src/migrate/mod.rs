//! Declarative migrations that rewrite a schema document written for an older version into the shape a
//! newer version expects, so that breaking schema changes come with a mechanical upgrade path.
//!
//! A [`Migration`] names the document `kind`, the versions it applies to (`from`, a semver requirement),
//! the version it produces (`to`) and a list of [`Step`]s. Steps address values with RFC 6901 JSON
//! Pointers extended with one wildcard: a `*` segment matches every element of an array or every value of
//! an object, so `/spec/types/*/fields/*/type` reaches every field type. (A literal `*` key therefore
//! cannot be addressed.) Wildcards expand in document order: arrays by index, objects by key order.
//!
//! [`migrate`] works on a copy and writes it back only when every step succeeded, so a failed migration
//! leaves the document untouched. Steps that match nothing are no-ops, except that a move onto an existing
//! value is a [`MigrateError::Conflict`].

use std::collections::BTreeMap;

use semver::{Version, VersionReq};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use thiserror::Error;

mod pattern;

use pattern::{Seg, expand, get, get_mut, insert, non_root, parse_pointer, remove, show, to_pointer};

/// A declarative migration from the versions matching `from` to version `to` of one document kind.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct Migration {
    /// The document `kind` this migration applies to, e.g. `Agent`.
    pub kind: String,
    /// Versions (`metadata.version`) this migration accepts, e.g. `^1`.
    pub from: VersionReq,
    /// Version written to `metadata.version` after the steps ran.
    pub to: Version,
    /// Steps, applied in order; may be omitted when only the version changes.
    #[serde(default)]
    pub steps: Vec<Step>,
}

/// One rewrite of a migration. Externally tagged in kebab-case, e.g. `- rename: {from: /spec/a, to: /spec/b}`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub enum Step {
    /// Same as [`Step::Move`]; spelled `rename` when the value stays in the same parent.
    Rename {
        /// Pointer of the value to move (may contain `*`).
        from: String,
        /// Destination pointer, with the same number of `*` segments as `from`.
        to: String,
    },
    /// Removes the value at `from` and inserts it at `to`, creating missing parent objects.
    Move {
        /// Pointer of the value to move (may contain `*`).
        from: String,
        /// Destination pointer, with the same number of `*` segments as `from`.
        to: String,
    },
    /// Sets `value` at `at` only where nothing is there yet, creating missing parent objects when the
    /// pointer has no `*` after the missing part.
    SetDefault {
        /// Pointer of the value to set (may contain `*`).
        at: String,
        /// Value to insert.
        value: Value,
    },
    /// Removes the value at `at` if present.
    Remove {
        /// Pointer of the value to remove (may contain `*`).
        at: String,
    },
    /// Replaces a string value at `at` that is one of `map`'s keys with the mapped value.
    MapValue {
        /// Pointer of the value to map (may contain `*`).
        at: String,
        /// Old string value to new value.
        map: BTreeMap<String, Value>,
    },
}

/// One concrete change made by [`migrate`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Applied {
    /// Concrete JSON Pointer of the changed value (the destination for moves).
    pub pointer: String,
    /// Human sentence describing the change.
    pub description: String,
}

/// Why a migration could not be applied.
#[derive(Debug, Error)]
pub enum MigrateError {
    /// The document has no string at a pointer the migration needs (`/kind` or `/metadata/version`).
    #[error("document has no string value at `{pointer}`")]
    Missing {
        /// The pointer that was looked up.
        pointer: String,
    },
    /// The document's kind is not the migration's kind.
    #[error("migration is for kind `{expected}` but the document has kind `{found}`")]
    KindMismatch {
        /// The migration's kind.
        expected: String,
        /// The document's kind.
        found: String,
    },
    /// The document's `metadata.version` is not valid semver.
    #[error("document version `{value}` is not valid semver: {source}")]
    InvalidVersion {
        /// The version string found.
        value: String,
        /// The parse error.
        source: semver::Error,
    },
    /// The document's version does not satisfy the migration's `from` requirement.
    #[error("document version `{version}` does not match the migration's `from: {req}`")]
    VersionMismatch {
        /// The document's version.
        version: Version,
        /// The migration's requirement.
        req: VersionReq,
    },
    /// A step's pointer is malformed or targets something it cannot.
    #[error("invalid pointer `{pointer}`: {reason}")]
    InvalidPointer {
        /// The pointer as written in the step.
        pointer: String,
        /// What is wrong with it.
        reason: &'static str,
    },
    /// A move's `to` pointer does not have the same number of `*` segments as its `from` pointer.
    #[error("`to` pointer `{to}` must have as many `*` segments as `from` pointer `{from}`")]
    WildcardMismatch {
        /// The `from` pointer.
        from: String,
        /// The `to` pointer.
        to: String,
    },
    /// A move's destination already holds a value.
    #[error("cannot move to `{pointer}`: a value already exists there")]
    Conflict {
        /// Concrete destination pointer.
        pointer: String,
    },
    /// A value cannot be inserted because a parent on the way is neither an object nor an array, or an
    /// array index is past the end.
    #[error("cannot insert at `{pointer}`: `{parent}` is not an object or has no such index")]
    CannotInsert {
        /// Concrete destination pointer.
        pointer: String,
        /// The parent that blocked the insertion.
        parent: String,
    },
}

/// The most migrations one chain applies (a cycle among migrations ends here).
pub const MAX_CHAIN: usize = 64;

/// One migration applied by [`migrate_chain`]: which one (its index in the list) and what it did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChainStep {
    /// Index of the migration in the list given.
    pub migration: usize,
    /// Its changes.
    pub applied: Vec<Applied>,
}

/// Applies migrations to `doc` in a chain (1.x → 2.0.0 → 3.0.0 ...): each round picks the first
/// migration whose `kind` and `from` match the document, until none does (or [`MAX_CHAIN`] rounds).
/// Returns the steps taken; an empty list means no migration applies.
///
/// # Errors
/// The first failing migration's error, with the index of the migration; `doc` keeps the steps
/// applied before it.
pub fn migrate_chain(doc: &mut Value, migrations: &[Migration]) -> Result<Vec<ChainStep>, (usize, MigrateError)> {
    let mut steps = Vec::new();
    for _ in 0..MAX_CHAIN {
        let kind = doc.get("kind").and_then(Value::as_str).unwrap_or_default().to_owned();
        let version = doc.pointer("/metadata/version").and_then(Value::as_str).and_then(|v| Version::parse(v).ok());
        let Some(index) =
            migrations.iter().position(|m| m.kind == kind && version.as_ref().is_some_and(|v| m.from.matches(v)))
        else {
            break;
        };
        let applied = migrate(doc, &migrations[index]).map_err(|e| (index, e))?;
        steps.push(ChainStep { migration: index, applied });
    }
    Ok(steps)
}

/// Applies `migration` to `doc` and returns one [`Applied`] line per concrete change, ending with the
/// version update. Checks first that `doc.kind` equals `migration.kind` and that `doc.metadata.version`
/// matches `migration.from`; on any error `doc` is left unchanged.
pub fn migrate(doc: &mut Value, migration: &Migration) -> Result<Vec<Applied>, MigrateError> {
    let kind = string_at(doc, "/kind")?;
    if kind != migration.kind {
        return Err(MigrateError::KindMismatch { expected: migration.kind.clone(), found: kind.to_string() });
    }
    let raw = string_at(doc, "/metadata/version")?;
    let version =
        Version::parse(raw).map_err(|source| MigrateError::InvalidVersion { value: raw.to_string(), source })?;
    if !migration.from.matches(&version) {
        return Err(MigrateError::VersionMismatch { version, req: migration.from.clone() });
    }
    let mut work = doc.clone();
    let mut applied = Vec::new();
    for step in &migration.steps {
        apply_step(&mut work, step, &mut applied)?;
    }
    let path = vec!["metadata".to_string(), "version".to_string()];
    let to = Value::String(migration.to.to_string());
    match get_mut(&mut work, &path) {
        Some(slot) => *slot = to,
        None => insert(&mut work, &path, to)?,
    }
    applied.push(Applied {
        pointer: "/metadata/version".into(),
        description: format!("set version from `{version}` to `{}`", migration.to),
    });
    *doc = work;
    Ok(applied)
}

fn string_at<'a>(doc: &'a Value, pointer: &str) -> Result<&'a str, MigrateError> {
    doc.pointer(pointer).and_then(Value::as_str).ok_or_else(|| MigrateError::Missing { pointer: pointer.into() })
}

/// Applies one step to `doc`, appending what it changed to `applied`.
fn apply_step(doc: &mut Value, step: &Step, applied: &mut Vec<Applied>) -> Result<(), MigrateError> {
    match step {
        Step::Rename { from, to } => move_values(doc, from, to, "renamed", applied),
        Step::Move { from, to } => move_values(doc, from, to, "moved", applied),
        Step::SetDefault { at, value } => {
            let pattern = parse_pointer(at)?;
            for found in expand(doc, &pattern, true) {
                if get(doc, &found.path).is_none() {
                    insert(doc, &found.path, value.clone())?;
                    let pointer = to_pointer(&found.path);
                    applied.push(Applied {
                        description: format!("set default `{}` at `{pointer}`", show(value)),
                        pointer,
                    });
                }
            }
            Ok(())
        }
        Step::Remove { at } => {
            let pattern = parse_pointer(at)?;
            non_root(at, &pattern)?;
            let mut removed = Vec::new();
            for found in expand(doc, &pattern, false).into_iter().rev() {
                if let Some(old) = remove(doc, &found.path) {
                    let pointer = to_pointer(&found.path);
                    removed
                        .push(Applied { description: format!("removed `{pointer}` (was `{}`)", show(&old)), pointer });
                }
            }
            applied.extend(removed.into_iter().rev());
            Ok(())
        }
        Step::MapValue { at, map } => {
            let pattern = parse_pointer(at)?;
            for found in expand(doc, &pattern, false) {
                let Some(slot) = get_mut(doc, &found.path) else { continue };
                let Some(new) = slot.as_str().and_then(|old| map.get(old)) else { continue };
                let description =
                    format!("mapped `{}` to `{}` at `{}`", show(slot), show(new), to_pointer(&found.path));
                *slot = new.clone();
                applied.push(Applied { pointer: to_pointer(&found.path), description });
            }
            Ok(())
        }
    }
}

/// Moves every value matched by `from` to the corresponding `to` location, substituting wildcards.
fn move_values(
    doc: &mut Value,
    from: &str,
    to: &str,
    verb: &str,
    applied: &mut Vec<Applied>,
) -> Result<(), MigrateError> {
    let (source, target) = (parse_pointer(from)?, parse_pointer(to)?);
    non_root(from, &source)?;
    non_root(to, &target)?;
    let count = |p: &[Seg]| p.iter().filter(|s| **s == Seg::Any).count();
    if count(&source) != count(&target) {
        return Err(MigrateError::WildcardMismatch { from: from.into(), to: to.into() });
    }
    let found = expand(doc, &source, false);
    let mut taken = Vec::with_capacity(found.len());
    for item in found.iter().rev() {
        if let Some(value) = remove(doc, &item.path) {
            taken.push((item, value));
        }
    }
    for (item, value) in taken.into_iter().rev() {
        let mut binds = item.binds.iter();
        let dest: Vec<String> = target
            .iter()
            .map(|seg| match seg {
                Seg::Key(key) => key.clone(),
                Seg::Any => binds.next().cloned().unwrap_or_default(),
            })
            .collect();
        insert(doc, &dest, value)?;
        let pointer = to_pointer(&dest);
        applied.push(Applied { description: format!("{verb} `{}` to `{pointer}`", to_pointer(&item.path)), pointer });
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn doc(spec: Value) -> Value {
        json!({"kind": "Agent", "metadata": {"name": "a", "version": "1.2.0"}, "spec": spec})
    }

    fn migration(steps: Value) -> Migration {
        serde_json::from_value(json!({"kind": "Agent", "from": "^1", "to": "2.0.0", "steps": steps})).unwrap()
    }

    /// Runs a migration on a copy of `spec`'s doc and returns the resulting spec and applied pointers.
    fn run(spec: Value, steps: Value) -> (Value, Vec<String>) {
        let mut d = doc(spec);
        let applied = migrate(&mut d, &migration(steps)).unwrap();
        assert_eq!(d["metadata"]["version"], json!("2.0.0"));
        let last = applied.last().map(|a| a.pointer.clone());
        assert_eq!(last.as_deref(), Some("/metadata/version"));
        (d["spec"].clone(), applied[..applied.len() - 1].iter().map(|a| a.pointer.clone()).collect())
    }

    #[test]
    fn deserializes_kebab_case_steps_and_rejects_unknown_fields() {
        let m = migration(json!([
            {"rename": {"from": "/spec/a", "to": "/spec/b"}},
            {"move": {"from": "/spec/c", "to": "/spec/d/e"}},
            {"set-default": {"at": "/spec/f", "value": 1}},
            {"remove": {"at": "/spec/g"}},
            {"map-value": {"at": "/spec/h", "map": {"x": "y"}}},
        ]));
        assert_eq!(m.steps.len(), 5);
        assert_eq!(m.steps[2], Step::SetDefault { at: "/spec/f".into(), value: json!(1) });
        let bad_step =
            json!({"kind": "Agent", "from": "^1", "to": "2.0.0", "steps": [{"remove": {"at": "/a", "x": 1}}]});
        assert!(serde_json::from_value::<Migration>(bad_step).is_err());
        let bad_field = json!({"kind": "Agent", "from": "^1", "to": "2.0.0", "steps": [], "extra": 1});
        assert!(serde_json::from_value::<Migration>(bad_field).is_err());
        let no_steps: Migration = serde_json::from_value(json!({"kind": "A", "from": "*", "to": "1.0.0"})).unwrap();
        assert!(no_steps.steps.is_empty());
    }

    #[test]
    fn rename_moves_value_to_new_key() {
        let (spec, applied) = run(json!({"a": 1}), json!([{"rename": {"from": "/spec/a", "to": "/spec/b"}}]));
        assert_eq!(spec, json!({"b": 1}));
        assert_eq!(applied, ["/spec/b"]);
    }

    #[test]
    fn move_creates_missing_parents() {
        let steps = json!([{"move": {"from": "/spec/a", "to": "/spec/x/y/z"}}]);
        let (spec, applied) = run(json!({"a": [1]}), steps);
        assert_eq!(spec, json!({"x": {"y": {"z": [1]}}}));
        assert_eq!(applied, ["/spec/x/y/z"]);
    }

    #[test]
    fn move_into_scalar_parent_fails() {
        let mut d = doc(json!({"a": 1, "s": "text"}));
        let err = migrate(&mut d, &migration(json!([{"move": {"from": "/spec/a", "to": "/spec/s/x"}}]))).unwrap_err();
        assert_eq!(err.to_string(), "cannot insert at `/spec/s/x`: `/spec/s` is not an object or has no such index");
    }

    #[test]
    fn set_default_only_when_absent_and_idempotent() {
        let steps =
            json!([{"set-default": {"at": "/spec/a", "value": 1}}, {"set-default": {"at": "/spec/b", "value": 2}}]);
        let (spec, applied) = run(json!({"a": 0}), steps.clone());
        assert_eq!(spec, json!({"a": 0, "b": 2}));
        assert_eq!(applied, ["/spec/b"]);
        let (again, applied) = run(spec.clone(), steps);
        assert_eq!(again, spec);
        assert!(applied.is_empty());
        let (spec, _) = run(json!({}), json!([{"set-default": {"at": "/spec/x/y", "value": true}}]));
        assert_eq!(spec, json!({"x": {"y": true}}));
        let (spec, _) = run(json!({"l": [1]}), json!([{"set-default": {"at": "/spec/l/-", "value": 2}}]));
        assert_eq!(spec, json!({"l": [1, 2]}));
    }

    #[test]
    fn remove_if_present() {
        let (spec, applied) = run(json!({"a": 1, "b": 2}), json!([{"remove": {"at": "/spec/a"}}]));
        assert_eq!(spec, json!({"b": 2}));
        assert_eq!(applied, ["/spec/a"]);
        let (spec, applied) = run(json!({"b": 2}), json!([{"remove": {"at": "/spec/a/deep"}}]));
        assert_eq!(spec, json!({"b": 2}));
        assert!(applied.is_empty());
    }

    #[test]
    fn map_value_replaces_known_strings_only() {
        let spec = json!({"s": ["queued", "done", 3, "other"]});
        let steps = json!([{"map-value": {"at": "/spec/s/*", "map": {"queued": "pending", "done": {"state": "ok"}}}}]);
        let (spec, applied) = run(spec, steps);
        assert_eq!(spec, json!({"s": ["pending", {"state": "ok"}, 3, "other"]}));
        assert_eq!(applied, ["/spec/s/0", "/spec/s/1"]);
    }

    #[test]
    fn wildcards_expand_over_arrays_and_objects() {
        let spec = json!({"types": [
            {"name": "A", "fields": [{"name": "x", "doc": "d"}, {"name": "y", "optional": false}]},
            {"name": "B", "fields": [{"name": "z"}]},
            {"name": "C"}]});
        let steps = json!([
            {"set-default": {"at": "/spec/types/*/fields/*/optional", "value": true}},
            {"rename": {"from": "/spec/types/*/fields/*/doc", "to": "/spec/types/*/fields/*/description"}},
        ]);
        let (spec, applied) = run(spec, steps);
        assert_eq!(
            spec,
            json!({"types": [
            {"name": "A", "fields": [{"name": "x", "description": "d", "optional": true}, {"name": "y", "optional": false}]},
            {"name": "B", "fields": [{"name": "z", "optional": true}]},
            {"name": "C"}]})
        );
        assert_eq!(
            applied,
            [
                "/spec/types/0/fields/0/optional",
                "/spec/types/1/fields/0/optional",
                "/spec/types/0/fields/0/description"
            ]
        );
        let (spec, applied) =
            run(json!({"m": {"a": {"k": 1}, "b": {"k": 2}}}), json!([{"remove": {"at": "/spec/m/*/k"}}]));
        assert_eq!(spec, json!({"m": {"a": {}, "b": {}}}));
        assert_eq!(applied, ["/spec/m/a/k", "/spec/m/b/k"]);
    }

    #[test]
    fn wildcard_remove_of_array_elements_keeps_indices_valid() {
        let (spec, applied) = run(json!({"l": [1, 2, 3]}), json!([{"remove": {"at": "/spec/l/*"}}]));
        assert_eq!(spec, json!({"l": []}));
        assert_eq!(applied, ["/spec/l/0", "/spec/l/1", "/spec/l/2"]);
    }

    #[test]
    fn wildcard_move_between_containers() {
        let steps = json!([{"move": {"from": "/spec/old/*/v", "to": "/spec/new/*"}}]);
        let (spec, applied) = run(json!({"old": {"a": {"v": 1}, "b": {"v": 2}}}), steps);
        assert_eq!(spec, json!({"old": {"a": {}, "b": {}}, "new": {"a": 1, "b": 2}}));
        assert_eq!(applied, ["/spec/new/a", "/spec/new/b"]);
    }

    #[test]
    fn wildcard_count_must_match() {
        let mut d = doc(json!({}));
        let err = migrate(&mut d, &migration(json!([{"move": {"from": "/spec/*/a", "to": "/spec/b"}}]))).unwrap_err();
        assert!(matches!(err, MigrateError::WildcardMismatch { .. }));
        assert_eq!(
            err.to_string(),
            "`to` pointer `/spec/b` must have as many `*` segments as `from` pointer `/spec/*/a`"
        );
    }

    #[test]
    fn conflict_names_pointer_and_leaves_doc_unchanged() {
        let original = doc(json!({"a": 1, "b": 2}));
        let mut d = original.clone();
        let steps = json!([{"remove": {"at": "/spec/a"}}, {"rename": {"from": "/spec/b", "to": "/spec/c"}},
            {"set-default": {"at": "/spec/a", "value": 9}}, {"rename": {"from": "/spec/c", "to": "/spec/a"}}]);
        let err = migrate(&mut d, &migration(steps)).unwrap_err();
        assert!(matches!(&err, MigrateError::Conflict { pointer } if pointer == "/spec/a"), "{err:?}");
        assert_eq!(err.to_string(), "cannot move to `/spec/a`: a value already exists there");
        assert_eq!(d, original);
    }

    #[test]
    fn invalid_pointers_are_errors() {
        let cases = [
            (json!([{"remove": {"at": "spec/a"}}]), "invalid pointer `spec/a`: must be empty or start with `/`"),
            (json!([{"remove": {"at": "/a~2"}}]), "invalid pointer `/a~2`: `~` must be followed by `0` or `1`"),
            (json!([{"remove": {"at": ""}}]), "invalid pointer ``: cannot target the document root"),
        ];
        for (steps, message) in cases {
            let err = migrate(&mut doc(json!({})), &migration(steps)).unwrap_err();
            assert_eq!(err.to_string(), message);
        }
        let (spec, _) = run(json!({"a/b": {"~": 1}}), json!([{"rename": {"from": "/spec/a~1b/~0", "to": "/spec/c"}}]));
        assert_eq!(spec, json!({"a/b": {}, "c": 1}));
    }

    #[test]
    fn checks_kind_and_version() {
        let m = migration(json!([]));
        let mut tool = json!({"kind": "Tool", "metadata": {"version": "1.0.0"}});
        let err = migrate(&mut tool, &m).unwrap_err();
        assert_eq!(err.to_string(), "migration is for kind `Agent` but the document has kind `Tool`");
        let err = migrate(&mut json!({"metadata": {"version": "1.0.0"}}), &m).unwrap_err();
        assert_eq!(err.to_string(), "document has no string value at `/kind`");
        let err = migrate(&mut json!({"kind": "Agent"}), &m).unwrap_err();
        assert_eq!(err.to_string(), "document has no string value at `/metadata/version`");
        let err = migrate(&mut json!({"kind": "Agent", "metadata": {"version": "one"}}), &m).unwrap_err();
        assert!(err.to_string().starts_with("document version `one` is not valid semver: "), "{err}");
        let mut two = json!({"kind": "Agent", "metadata": {"version": "2.0.0"}});
        let err = migrate(&mut two, &m).unwrap_err();
        assert_eq!(err.to_string(), "document version `2.0.0` does not match the migration's `from: ^1`");
        assert_eq!(two["metadata"]["version"], json!("2.0.0"));
    }

    #[test]
    fn deterministic_on_copies() {
        let original = doc(json!({"m": {"b": {"k": "x"}, "a": {"k": "y"}}, "l": [{"k": "x"}, {"k": "z"}]}));
        let m = migration(json!([
            {"map-value": {"at": "/spec/*/*/k", "map": {"x": "X", "y": "Y"}}},
            {"rename": {"from": "/spec/*/*/k", "to": "/spec/*/*/key"}},
        ]));
        let (mut first, mut second) = (original.clone(), original);
        let applied_first = migrate(&mut first, &m).unwrap();
        let applied_second = migrate(&mut second, &m).unwrap();
        assert_eq!(first, second);
        assert_eq!(applied_first, applied_second);
        assert_eq!(serde_json::to_string(&first).unwrap(), serde_json::to_string(&second).unwrap());
    }

    #[test]
    fn end_to_end_agent_1x_to_2_0_0() {
        let mut agent = json!({
        "apiVersion": "qpf.dev/v1", "kind": "Agent",
        "metadata": {"name": "orchestrator", "version": "1.4.2", "labels": {"tier": "core"}},
        "spec": {
            "description": "routes tasks",
            "types": [{"name": "Task", "fields": [
                {"name": "id", "type": "string"},
                {"name": "priority", "type": "integer", "default": 5},
                {"name": "state", "type": "string", "enum": ["queued", "done"], "default": "queued"}]}],
            "capabilities": [{"name": "dispatch", "input": "Task", "output": "Assignment", "retries": 3}],
            "memory": [{"name": "working", "backend": "redis"}, {"name": "archive", "backend": "sql"}],
        }});
        let m: Migration = serde_json::from_value(json!({
        "kind": "Agent", "from": ">=1.0.0, <2.0.0", "to": "2.0.0",
        "steps": [
            {"rename": {"from": "/spec/memory", "to": "/spec/stores"}},
            {"set-default": {"at": "/spec/capabilities/*/errors", "value": []}},
            {"remove": {"at": "/spec/capabilities/*/retries"}},
            {"map-value": {"at": "/spec/stores/*/backend", "map": {"sql": "postgres"}}},
        ]}))
        .unwrap();
        let applied = migrate(&mut agent, &m).unwrap();
        let expected = json!({
        "apiVersion": "qpf.dev/v1", "kind": "Agent",
        "metadata": {"name": "orchestrator", "version": "2.0.0", "labels": {"tier": "core"}},
        "spec": {
            "description": "routes tasks",
            "types": [{"name": "Task", "fields": [
                {"name": "id", "type": "string"},
                {"name": "priority", "type": "integer", "default": 5},
                {"name": "state", "type": "string", "enum": ["queued", "done"], "default": "queued"}]}],
            "capabilities": [{"name": "dispatch", "input": "Task", "output": "Assignment", "errors": []}],
            "stores": [{"name": "working", "backend": "redis"}, {"name": "archive", "backend": "postgres"}],
        }});
        assert_eq!(agent, expected);
        let lines: Vec<&str> = applied.iter().map(|a| a.description.as_str()).collect();
        assert_eq!(
            lines,
            [
                "renamed `/spec/memory` to `/spec/stores`",
                "set default `[]` at `/spec/capabilities/0/errors`",
                "removed `/spec/capabilities/0/retries` (was `3`)",
                "mapped `sql` to `postgres` at `/spec/stores/1/backend`",
                "set version from `1.4.2` to `2.0.0`",
            ]
        );
    }
}

#[cfg(test)]
mod chain_tests {
    use super::*;

    fn migration(from: &str, to: &str) -> Migration {
        Migration {
            kind: "Agent".into(),
            from: VersionReq::parse(from).unwrap_or(VersionReq::STAR),
            to: Version::parse(to).unwrap_or(Version::new(0, 0, 0)),
            steps: Vec::new(),
        }
    }

    #[test]
    fn migrations_chain_until_none_applies_and_a_cycle_ends() {
        let mut doc = serde_json::json!({ "kind": "Agent", "metadata": { "version": "1.2.0" } });
        let list = [migration("^2", "3.0.0"), migration("^1", "2.0.0")];
        let steps = migrate_chain(&mut doc, &list).map_err(|(_, e)| e.to_string());
        assert_eq!(steps.map(|s| s.iter().map(|c| c.migration).collect::<Vec<_>>()), Ok(vec![1, 0]));
        assert_eq!(doc["metadata"]["version"], "3.0.0");
        let mut looping = serde_json::json!({ "kind": "Agent", "metadata": { "version": "1.0.0" } });
        let steps = migrate_chain(&mut looping, &[migration("^1", "1.0.0")]).map_err(|(_, e)| e.to_string());
        assert_eq!(steps.map(|s| s.len()), Ok(MAX_CHAIN));
    }
}
