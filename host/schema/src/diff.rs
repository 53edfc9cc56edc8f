//! Classifies every difference between two versions of a schema document as breaking, non-breaking or
//! cosmetic, so that a schema's semantic version can be checked against what actually changed.
//!
//! Consumers generate code from these schemas; a change that can make old producers or consumers fail is
//! *breaking* and needs a major version bump. The diff is structural: it walks both JSON values together,
//! applies the QPF-specific rules below where the path says they apply, and falls back to a generic
//! structural comparison everywhere else (so kinds with other `spec` shapes still get a sensible diff).
//!
//! | where | change | class | reason |
//! |---|---|---|---|
//! | list of objects with unique string `name`s | matched by name; order of common names changed | cosmetic | `reordered` |
//! | list of scalars (compared as a set; duplicates ignored) | value removed | breaking | `value-removed` |
//! | list of scalars | value added | non-breaking | `value-added` |
//! | list of scalars | order changed only | cosmetic | `reordered` |
//! | other lists | compared by index, generic rules per element | | |
//! | any key `description`, `docs` or `summary` | added, removed or changed | cosmetic | `description-changed` |
//! | `/metadata/labels` | added, removed or changed | cosmetic | `labels-changed` |
//! | `/metadata/version` | anything | ignored (see [`crate::bump::check_version`]) | |
//! | `/apiVersion` | added, removed or changed | breaking | `api-version-changed` |
//! | `/kind` | added, removed or changed | breaking | `kind-changed` |
//! | `/metadata/name` | added, removed or changed | breaking | `renamed` |
//! | named element under `/spec/types` | removed / added | breaking / non-breaking | `type-removed` / `type-added` |
//! | named element under `.../fields` | removed / added | breaking / non-breaking | `field-removed` / `field-added` |
//! | named element under `/spec/capabilities` | removed / added | breaking / non-breaking | `capability-removed` / `capability-added` |
//! | any other named element (`/spec/memory`, `/spec/settings`, ...) | removed / added | breaking / non-breaking | `removed` / `added` |
//! | element of `.../fields` or `/spec/settings` | added without `default` and not `optional: true` | breaking | `required-added` |
//! | field `optional` | `true` → `false`/absent, no `default` | breaking | `made-required` |
//! | field `optional` | `true` → `false`/absent, with a `default` | non-breaking | `made-required` |
//! | field `optional` | `false`/absent → `true` | non-breaking | `made-optional` |
//! | field `type` | narrowed (`number`→`integer`, `any`→X, element types of `list[..]`/`map[..]` likewise) | breaking | `type-narrowed` |
//! | field `type` | widened (the reverse) | non-breaking | `type-widened` |
//! | field `type` | any other change | breaking | `type-changed` |
//! | field `default` | added, removed or changed | breaking | `default-changed` |
//! | field `enum` | value removed / added | breaking / non-breaking | `enum-value-removed` / `enum-value-added` |
//! | field `enum` | list added (restricts values) / removed (lifts restriction) | breaking / non-breaking | `type-narrowed` / `type-widened` |
//! | capability `input` / `output` | added, removed or changed | breaking | `signature-changed` |
//! | capability `errors` (absent = empty) | value added / removed | breaking / non-breaking | `error-added` / `error-removed` |
//! | anywhere else | key removed | breaking | `removed` |
//! | anywhere else | key added | non-breaking | `added` |
//! | anywhere else | scalar changed, or value changed JSON type | breaking | `changed` |
//!
//! "Field" means an element of a list under a key named `fields` (at any depth) or of `/spec/settings`;
//! "capability" means an element of `/spec/capabilities`. Pointers are RFC 6901 JSON Pointers into the
//! new document, except for removals, which point into the old document. Output is sorted by pointer
//! (plain string order), then reason.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;

use serde::Serialize;
use serde_json::{Map, Value};

/// How a change affects existing producers and consumers of the schema.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Class {
    /// Old producers or consumers can fail: needs a major bump (minor for `0.y.z`).
    Breaking,
    /// Backwards compatible addition or relaxation: needs a minor bump (patch for `0.y.z`).
    NonBreaking,
    /// Documentation, labels or ordering only: needs a patch bump.
    Cosmetic,
}

impl Class {
    /// The kebab-case name used in serialized output, e.g. `non-breaking`.
    pub fn as_str(self) -> &'static str {
        match self {
            Class::Breaking => "breaking",
            Class::NonBreaking => "non-breaking",
            Class::Cosmetic => "cosmetic",
        }
    }
}

impl fmt::Display for Class {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One classified difference between two schema documents.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Change {
    /// Whether the change is breaking, non-breaking or cosmetic.
    pub class: Class,
    /// RFC 6901 JSON Pointer into the new document (into the old document for removals).
    pub pointer: String,
    /// Stable kebab-case code of the rule that fired, e.g. `field-removed`.
    pub reason: &'static str,
    /// Human sentence naming the old and new values.
    pub message: String,
}

impl fmt::Display for Change {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} {} at `{}`: {}", self.class, self.reason, self.pointer, self.message)
    }
}

/// Compares two schema documents and returns every classified change, sorted by pointer, then reason.
pub fn diff(old: &Value, new: &Value) -> Vec<Change> {
    let mut differ = Differ::default();
    differ.value(&mut Vec::new(), old, new, Role::Plain);
    let mut out = differ.out;
    out.sort_by(|a, b| a.pointer.cmp(&b.pointer).then_with(|| a.reason.cmp(b.reason)));
    out
}

/// What kind of object is being compared, which decides the special rules for its keys.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Role {
    Plain,
    Field,
    Capability,
}

/// Which list a named element belongs to; decides reason codes.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Container {
    Types,
    Fields,
    Settings,
    Capabilities,
    Other,
}

impl Container {
    fn of(path: &[String]) -> Container {
        let path: Vec<&str> = path.iter().map(String::as_str).collect();
        match path.as_slice() {
            ["spec", "types"] => Container::Types,
            ["spec", "settings"] => Container::Settings,
            ["spec", "capabilities"] => Container::Capabilities,
            [.., "fields"] => Container::Fields,
            _ => Container::Other,
        }
    }

    fn role(self) -> Role {
        match self {
            Container::Fields | Container::Settings => Role::Field,
            Container::Capabilities => Role::Capability,
            Container::Types | Container::Other => Role::Plain,
        }
    }

    /// `(noun for messages, reason when removed, reason when added)`.
    fn codes(self) -> (&'static str, &'static str, &'static str) {
        match self {
            Container::Types => ("type", "type-removed", "type-added"),
            Container::Fields => ("field", "field-removed", "field-added"),
            Container::Settings => ("setting", "removed", "added"),
            Container::Capabilities => ("capability", "capability-removed", "capability-added"),
            Container::Other => ("element", "removed", "added"),
        }
    }
}

/// Reason codes and classes for a list compared as a set of scalars.
struct SetRules {
    removed: (Class, &'static str),
    added: (Class, &'static str),
    what: &'static str,
}

const GENERIC_SET: SetRules =
    SetRules { removed: (Class::Breaking, "value-removed"), added: (Class::NonBreaking, "value-added"), what: "value" };
const ENUM_SET: SetRules = SetRules {
    removed: (Class::Breaking, "enum-value-removed"),
    added: (Class::NonBreaking, "enum-value-added"),
    what: "enum value",
};
const ERROR_SET: SetRules =
    SetRules { removed: (Class::NonBreaking, "error-removed"), added: (Class::Breaking, "error-added"), what: "error" };

/// A parsed field type expression.
#[derive(PartialEq, Eq)]
enum Ty<'a> {
    Any,
    Number,
    Integer,
    List(Box<Ty<'a>>),
    Map(Box<Ty<'a>>),
    Other(&'a str),
}

impl<'a> Ty<'a> {
    fn parse(s: &'a str) -> Ty<'a> {
        let inner = |prefix: &str| s.strip_prefix(prefix).and_then(|rest| rest.strip_suffix(']'));
        if let Some(element) = inner("list[") {
            Ty::List(Box::new(Ty::parse(element)))
        } else if let Some(element) = inner("map[") {
            Ty::Map(Box::new(Ty::parse(element)))
        } else {
            match s {
                "any" => Ty::Any,
                "number" => Ty::Number,
                "integer" => Ty::Integer,
                other => Ty::Other(other),
            }
        }
    }
}

/// Classifies a change between two different type expressions.
fn type_change(old: &Ty<'_>, new: &Ty<'_>) -> (Class, &'static str) {
    const NARROWED: (Class, &str) = (Class::Breaking, "type-narrowed");
    const WIDENED: (Class, &str) = (Class::NonBreaking, "type-widened");
    match (old, new) {
        (Ty::Any, _) | (Ty::Number, Ty::Integer) => NARROWED,
        (_, Ty::Any) | (Ty::Integer, Ty::Number) => WIDENED,
        (Ty::List(a), Ty::List(b)) | (Ty::Map(a), Ty::Map(b)) => type_change(a, b),
        _ => (Class::Breaking, "type-changed"),
    }
}

#[derive(Default)]
struct Differ {
    out: Vec<Change>,
}

impl Differ {
    fn push(&mut self, class: Class, path: &[String], reason: &'static str, message: String) {
        self.out.push(Change { class, pointer: pointer(path), reason, message });
    }

    fn value(&mut self, path: &mut Vec<String>, old: &Value, new: &Value, role: Role) {
        if old == new {
            return;
        }
        match (old, new) {
            (Value::Object(a), Value::Object(b)) => self.object(path, a, b, role),
            (Value::Array(a), Value::Array(b)) => self.list(path, a, b),
            _ => self.push(
                Class::Breaking,
                path,
                "changed",
                format!("`{}` changed from `{}` to `{}`", last(path), show(old), show(new)),
            ),
        }
    }

    fn object(&mut self, path: &mut Vec<String>, old: &Map<String, Value>, new: &Map<String, Value>, role: Role) {
        let keys: BTreeSet<&String> = old.keys().chain(new.keys()).collect();
        for key in keys {
            if old.get(key) == new.get(key) {
                continue;
            }
            path.push(key.clone());
            self.member(path, key, (old, new), role);
            path.pop();
        }
    }

    /// Compares one key of an object; `path` already ends with `key`.
    fn member(
        &mut self,
        path: &mut Vec<String>,
        key: &str,
        objs: (&Map<String, Value>, &Map<String, Value>),
        role: Role,
    ) {
        let (old_obj, new_obj) = objs;
        let (o, n) = (old_obj.get(key), new_obj.get(key));
        let name = new_obj.get("name").and_then(Value::as_str);
        let (old_s, new_s) = (show_opt(o), show_opt(n));
        let top: Vec<&str> = path.iter().map(String::as_str).collect();
        let special = match top.as_slice() {
            ["apiVersion"] => Some((Class::Breaking, "api-version-changed")),
            ["kind"] => Some((Class::Breaking, "kind-changed")),
            ["metadata", "version"] => return,
            ["metadata", "name"] => Some((Class::Breaking, "renamed")),
            ["metadata", "labels"] => Some((Class::Cosmetic, "labels-changed")),
            [.., "description" | "docs" | "summary"] => Some((Class::Cosmetic, "description-changed")),
            _ => None,
        };
        if let Some((class, reason)) = special {
            return self.push(class, path, reason, format!("`{key}` changed from `{old_s}` to `{new_s}`"));
        }
        let of = name.map_or(String::new(), |name| format!(" of `{name}`"));
        let changed = format!("`{key}`{of} changed from `{old_s}` to `{new_s}`");
        let empty = Value::Array(Vec::new());
        let (class, reason, message) = match (role, key, o, n) {
            (Role::Field, "optional", _, _) if is_bool_or_absent(o) && is_bool_or_absent(n) => {
                match (o == Some(&Value::Bool(true)), n == Some(&Value::Bool(true))) {
                    (true, false) if new_obj.contains_key("default") => {
                        (Class::NonBreaking, "made-required", format!("{changed} (has a `default`)"))
                    }
                    (true, false) => (Class::Breaking, "made-required", changed),
                    (false, true) => (Class::NonBreaking, "made-optional", changed),
                    _ => return,
                }
            }
            (Role::Field, "default", _, _) => (Class::Breaking, "default-changed", changed),
            (Role::Field, "type", Some(Value::String(a)), Some(Value::String(b))) => {
                let (class, reason) = type_change(&Ty::parse(a), &Ty::parse(b));
                (class, reason, changed)
            }
            (Role::Field, "enum", None, Some(_)) => {
                (Class::Breaking, "type-narrowed", format!("`enum`{of} added, restricting values to `{new_s}`"))
            }
            (Role::Field, "enum", Some(_), None) => {
                (Class::NonBreaking, "type-widened", format!("`enum`{of} removed, values were restricted to `{old_s}`"))
            }
            (Role::Field, "enum", Some(Value::Array(a)), Some(Value::Array(b))) if all_scalars(a, b) => {
                return self.scalar_set(path, a, b, &ENUM_SET);
            }
            (Role::Capability, "input" | "output", _, _) => (Class::Breaking, "signature-changed", changed),
            (Role::Capability, "errors", _, _) => match (o.unwrap_or(&empty), n.unwrap_or(&empty)) {
                (Value::Array(a), Value::Array(b)) if all_scalars(a, b) => {
                    return self.scalar_set(path, a, b, &ERROR_SET);
                }
                _ => return self.generic(path, o, n),
            },
            _ => return self.generic(path, o, n),
        };
        self.push(class, path, reason, message);
    }

    fn generic(&mut self, path: &mut Vec<String>, o: Option<&Value>, n: Option<&Value>) {
        match (o, n) {
            (Some(o), Some(n)) => self.value(path, o, n, Role::Plain),
            (Some(o), None) => {
                self.push(Class::Breaking, path, "removed", format!("`{}` removed (was `{}`)", last(path), show(o)))
            }
            (None, Some(n)) => {
                self.push(Class::NonBreaking, path, "added", format!("`{}` added as `{}`", last(path), show(n)))
            }
            (None, None) => {}
        }
    }

    fn list(&mut self, path: &mut Vec<String>, old: &[Value], new: &[Value]) {
        let container = Container::of(path);
        if let (Some(old_names), Some(new_names)) = (names(old), names(new)) {
            return self.named_list(path, container, (old, &old_names), (new, &new_names));
        }
        if all_scalars(old, new) {
            return self.scalar_set(path, old, new, &GENERIC_SET);
        }
        let role = container.role();
        for i in 0..old.len().max(new.len()) {
            path.push(i.to_string());
            match (old.get(i), new.get(i)) {
                (Some(o), Some(n)) => self.value(path, o, n, role),
                (o, n) => self.generic(path, o, n),
            }
            path.pop();
        }
    }

    fn named_list(
        &mut self,
        path: &mut Vec<String>,
        container: Container,
        (old, old_names): (&[Value], &[&str]),
        (new, new_names): (&[Value], &[&str]),
    ) {
        let old_pos: BTreeMap<&str, usize> = old_names.iter().enumerate().map(|(i, n)| (*n, i)).collect();
        let new_pos: BTreeMap<&str, usize> = new_names.iter().enumerate().map(|(i, n)| (*n, i)).collect();
        let (noun, removed, added) = container.codes();
        for (i, name) in old_names.iter().enumerate() {
            if !new_pos.contains_key(name) {
                path.push(i.to_string());
                self.push(Class::Breaking, path, removed, format!("{noun} `{name}` removed"));
                path.pop();
            }
        }
        let role = container.role();
        for (j, name) in new_names.iter().enumerate() {
            path.push(j.to_string());
            match old_pos.get(name) {
                Some(&i) => self.value(path, &old[i], &new[j], role),
                None => {
                    let element = &new[j];
                    let is_field = matches!(container, Container::Fields | Container::Settings);
                    let optional = element.get("optional") == Some(&Value::Bool(true));
                    if is_field && !optional && element.get("default").is_none() {
                        let msg = format!("required {noun} `{name}` added (no `default` and not `optional: true`)");
                        self.push(Class::Breaking, path, "required-added", msg);
                    } else {
                        self.push(Class::NonBreaking, path, added, format!("{noun} `{name}` added"));
                    }
                }
            }
            path.pop();
        }
        let common_old: Vec<&str> = old_names.iter().copied().filter(|n| new_pos.contains_key(n)).collect();
        let common_new: Vec<&str> = new_names.iter().copied().filter(|n| old_pos.contains_key(n)).collect();
        if common_old != common_new {
            let msg = format!(
                "order of `{}` changed from `{}` to `{}`",
                last(path),
                list_of(&common_old),
                list_of(&common_new)
            );
            self.push(Class::Cosmetic, path, "reordered", msg);
        }
    }

    fn scalar_set(&mut self, path: &mut Vec<String>, old: &[Value], new: &[Value], rules: &SetRules) {
        let key = last(path).to_string();
        for (i, v) in old.iter().enumerate() {
            if !new.contains(v) && !old[..i].contains(v) {
                path.push(i.to_string());
                let (class, reason) = rules.removed;
                self.push(class, path, reason, format!("{} `{}` removed from `{key}`", rules.what, show(v)));
                path.pop();
            }
        }
        for (j, v) in new.iter().enumerate() {
            if !old.contains(v) && !new[..j].contains(v) {
                path.push(j.to_string());
                let (class, reason) = rules.added;
                self.push(class, path, reason, format!("{} `{}` added to `{key}`", rules.what, show(v)));
                path.pop();
            }
        }
        let common_old = dedup(old.iter().filter(|v| new.contains(v)));
        let common_new = dedup(new.iter().filter(|v| old.contains(v)));
        if common_old != common_new {
            let shown = |vs: &[&Value]| list_of(&vs.iter().map(|v| show(v)).collect::<Vec<_>>());
            let msg = format!("order of `{key}` changed from `{}` to `{}`", shown(&common_old), shown(&common_new));
            self.push(Class::Cosmetic, path, "reordered", msg);
        }
    }
}

/// Names of a list whose elements are all objects with a unique string `name`; `None` otherwise.
fn names(list: &[Value]) -> Option<Vec<&str>> {
    let names: Vec<&str> = list.iter().map(|v| v.get("name").and_then(Value::as_str)).collect::<Option<_>>()?;
    let unique: BTreeSet<&str> = names.iter().copied().collect();
    (unique.len() == names.len()).then_some(names)
}

fn is_scalar(v: &Value) -> bool {
    !matches!(v, Value::Array(_) | Value::Object(_))
}

fn all_scalars(a: &[Value], b: &[Value]) -> bool {
    a.iter().chain(b).all(is_scalar)
}

fn is_bool_or_absent(v: Option<&Value>) -> bool {
    v.is_none_or(Value::is_boolean)
}

fn dedup<'a>(values: impl Iterator<Item = &'a Value>) -> Vec<&'a Value> {
    let mut out: Vec<&Value> = Vec::new();
    for v in values {
        if !out.contains(&v) {
            out.push(v);
        }
    }
    out
}

fn list_of<S: AsRef<str>>(items: &[S]) -> String {
    let items: Vec<&str> = items.iter().map(AsRef::as_ref).collect();
    format!("[{}]", items.join(", "))
}

fn last(path: &[String]) -> &str {
    path.last().map_or("", String::as_str)
}

/// Renders a value for a message: strings without quotes, everything else as compact JSON, cut at 80 chars.
fn show(v: &Value) -> String {
    let text = match v {
        Value::String(s) => s.clone(),
        other => other.to_string(),
    };
    match text.char_indices().nth(80) {
        Some((cut, _)) => format!("{}...", &text[..cut]),
        None => text,
    }
}

fn show_opt(v: Option<&Value>) -> String {
    v.map_or_else(|| "(absent)".to_string(), show)
}

/// Builds an RFC 6901 pointer from unescaped tokens.
fn pointer(path: &[String]) -> String {
    path.iter().map(|t| format!("/{}", crate::provenance::escape_pointer(t))).collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    /// A doc holding one type `T` with the given fields.
    fn fields(fields: Value) -> Value {
        json!({"kind": "Agent", "spec": {"types": [{"name": "T", "fields": fields}]}})
    }

    /// A doc holding one field in type `T`.
    fn field(field: Value) -> Value {
        fields(json!([field]))
    }

    /// A doc holding one capability.
    fn cap(cap: Value) -> Value {
        json!({"spec": {"capabilities": [cap]}})
    }

    fn spec(spec: Value) -> Value {
        json!({"spec": spec})
    }

    use Class::{Breaking as B, Cosmetic as C, NonBreaking as N};
    const F: &str = "/spec/types/0/fields/0";

    /// Expected `(class, reason, pointer)` triples, in output order.
    type Expected = Vec<(Class, &'static str, String)>;
    /// `(label, old doc, new doc, expected changes)`.
    type Case = (&'static str, Value, Value, Expected);

    #[test]
    fn classification_table() {
        let fp = |suffix: &str| format!("{F}{suffix}");
        #[rustfmt::skip]
        let cases: Vec<Case> = vec![
            ("identical docs", field(json!({"name": "a"})), field(json!({"name": "a"})), vec![]),
            ("named list reordered", spec(json!({"types": [{"name": "A"}, {"name": "B"}]})),
                spec(json!({"types": [{"name": "B"}, {"name": "A"}]})), vec![(C, "reordered", "/spec/types".into())]),
            ("named list matched by name, not index",
                spec(json!({"memory": [{"name": "a", "backend": "redis"}, {"name": "b", "backend": "sql"}]})),
                spec(json!({"memory": [{"name": "b", "backend": "pg"}, {"name": "a", "backend": "redis"}]})),
                vec![(C, "reordered", "/spec/memory".into()), (B, "changed", "/spec/memory/0/backend".into())]),
            ("scalar list value removed", spec(json!({"tags": ["a", "b"]})), spec(json!({"tags": ["a"]})),
                vec![(B, "value-removed", "/spec/tags/1".into())]),
            ("scalar list value added", spec(json!({"tags": ["a"]})), spec(json!({"tags": ["b", "a"]})),
                vec![(N, "value-added", "/spec/tags/0".into())]),
            ("scalar list reordered", spec(json!({"tags": [1, 2]})), spec(json!({"tags": [2, 1]})),
                vec![(C, "reordered", "/spec/tags".into())]),
            ("unnamed object list compared by index", spec(json!({"rules": [{"x": 1}]})),
                spec(json!({"rules": [{"x": 2}, {"x": 3}]})),
                vec![(B, "changed", "/spec/rules/0/x".into()), (N, "added", "/spec/rules/1".into())]),
            ("description changed", spec(json!({"description": "a"})), spec(json!({"description": "b"})),
                vec![(C, "description-changed", "/spec/description".into())]),
            ("nested docs added and summary removed", field(json!({"name": "a", "summary": "s"})),
                field(json!({"name": "a", "docs": "d"})),
                vec![(C, "description-changed", fp("/docs")), (C, "description-changed", fp("/summary"))]),
            ("labels changed", json!({"metadata": {"labels": {"tier": "core"}}}),
                json!({"metadata": {"labels": {"tier": "edge"}}}), vec![(C, "labels-changed", "/metadata/labels".into())]),
            ("labels added", json!({"metadata": {}}), json!({"metadata": {"labels": {"a": "b"}}}),
                vec![(C, "labels-changed", "/metadata/labels".into())]),
            ("metadata.version ignored", json!({"metadata": {"version": "1.0.0"}}),
                json!({"metadata": {"version": "2.0.0"}}), vec![]),
            ("apiVersion changed", json!({"apiVersion": "qpf.dev/v1"}), json!({"apiVersion": "qpf.dev/v2"}),
                vec![(B, "api-version-changed", "/apiVersion".into())]),
            ("kind changed", json!({"kind": "Agent"}), json!({"kind": "Tool"}), vec![(B, "kind-changed", "/kind".into())]),
            ("metadata.name changed", json!({"metadata": {"name": "a"}}), json!({"metadata": {"name": "b"}}),
                vec![(B, "renamed", "/metadata/name".into())]),
            ("type removed", spec(json!({"types": [{"name": "A"}, {"name": "B"}]})), spec(json!({"types": [{"name": "B"}]})),
                vec![(B, "type-removed", "/spec/types/0".into())]),
            ("field removed", fields(json!([{"name": "a"}, {"name": "b"}])), fields(json!([{"name": "a"}])),
                vec![(B, "field-removed", "/spec/types/0/fields/1".into())]),
            ("capability removed", cap(json!({"name": "c"})), spec(json!({"capabilities": []})),
                vec![(B, "capability-removed", "/spec/capabilities/0".into())]),
            ("memory removed", spec(json!({"memory": [{"name": "m"}]})), spec(json!({"memory": []})),
                vec![(B, "removed", "/spec/memory/0".into())]),
            ("type added", spec(json!({"types": []})), spec(json!({"types": [{"name": "A"}]})),
                vec![(N, "type-added", "/spec/types/0".into())]),
            ("optional field added", fields(json!([])), field(json!({"name": "a", "optional": true})),
                vec![(N, "field-added", F.into())]),
            ("field with default added", fields(json!([])), field(json!({"name": "a", "default": 1})),
                vec![(N, "field-added", F.into())]),
            ("capability added", spec(json!({"capabilities": []})), cap(json!({"name": "c"})),
                vec![(N, "capability-added", "/spec/capabilities/0".into())]),
            ("memory added", spec(json!({"memory": []})), spec(json!({"memory": [{"name": "m"}]})),
                vec![(N, "added", "/spec/memory/0".into())]),
            ("section added", spec(json!({})), spec(json!({"memory": [{"name": "m"}]})),
                vec![(N, "added", "/spec/memory".into())]),
            ("setting with default added", spec(json!({"settings": []})),
                spec(json!({"settings": [{"name": "s", "default": 1}]})), vec![(N, "added", "/spec/settings/0".into())]),
            ("required field added", fields(json!([])), field(json!({"name": "a", "optional": false})),
                vec![(B, "required-added", F.into())]),
            ("required setting added", spec(json!({"settings": []})), spec(json!({"settings": [{"name": "s"}]})),
                vec![(B, "required-added", "/spec/settings/0".into())]),
            ("made required", field(json!({"name": "a", "optional": true})), field(json!({"name": "a", "optional": false})),
                vec![(B, "made-required", fp("/optional"))]),
            ("optional removed", field(json!({"name": "a", "optional": true})), field(json!({"name": "a"})),
                vec![(B, "made-required", fp("/optional"))]),
            ("made required with default", field(json!({"name": "a", "optional": true, "default": 1})),
                field(json!({"name": "a", "default": 1})), vec![(N, "made-required", fp("/optional"))]),
            ("made optional", field(json!({"name": "a"})), field(json!({"name": "a", "optional": true})),
                vec![(N, "made-optional", fp("/optional"))]),
            ("optional false to absent is no change", field(json!({"name": "a", "optional": false})),
                field(json!({"name": "a"})), vec![]),
            ("setting made optional", spec(json!({"settings": [{"name": "s"}]})),
                spec(json!({"settings": [{"name": "s", "optional": true}]})),
                vec![(N, "made-optional", "/spec/settings/0/optional".into())]),
            ("default added", field(json!({"name": "a"})), field(json!({"name": "a", "default": 5})),
                vec![(B, "default-changed", fp("/default"))]),
            ("default changed", field(json!({"name": "a", "default": 5})), field(json!({"name": "a", "default": 6})),
                vec![(B, "default-changed", fp("/default"))]),
            ("default removed", field(json!({"name": "a", "default": []})), field(json!({"name": "a"})),
                vec![(B, "default-changed", fp("/default"))]),
            ("enum value removed", field(json!({"name": "a", "enum": ["x", "y"]})), field(json!({"name": "a", "enum": ["y"]})),
                vec![(B, "enum-value-removed", fp("/enum/0"))]),
            ("enum value added", field(json!({"name": "a", "enum": ["x"]})), field(json!({"name": "a", "enum": ["x", "y"]})),
                vec![(N, "enum-value-added", fp("/enum/1"))]),
            ("enum reordered", field(json!({"name": "a", "enum": ["x", "y"]})), field(json!({"name": "a", "enum": ["y", "x"]})),
                vec![(C, "reordered", fp("/enum"))]),
            ("enum added", field(json!({"name": "a"})), field(json!({"name": "a", "enum": ["x"]})),
                vec![(B, "type-narrowed", fp("/enum"))]),
            ("enum removed", field(json!({"name": "a", "enum": ["x"]})), field(json!({"name": "a"})),
                vec![(N, "type-widened", fp("/enum"))]),
            ("input changed", cap(json!({"name": "c", "input": "A"})), cap(json!({"name": "c", "input": "B"})),
                vec![(B, "signature-changed", "/spec/capabilities/0/input".into())]),
            ("output removed", cap(json!({"name": "c", "output": "A"})), cap(json!({"name": "c"})),
                vec![(B, "signature-changed", "/spec/capabilities/0/output".into())]),
            ("error added", cap(json!({"name": "c", "errors": ["E1"]})), cap(json!({"name": "c", "errors": ["E1", "E2"]})),
                vec![(B, "error-added", "/spec/capabilities/0/errors/1".into())]),
            ("errors list added", cap(json!({"name": "c"})), cap(json!({"name": "c", "errors": ["E1"]})),
                vec![(B, "error-added", "/spec/capabilities/0/errors/0".into())]),
            ("error removed", cap(json!({"name": "c", "errors": ["E1", "E2"]})), cap(json!({"name": "c", "errors": ["E2"]})),
                vec![(N, "error-removed", "/spec/capabilities/0/errors/0".into())]),
            ("generic key removed", spec(json!({"x": 1})), spec(json!({})), vec![(B, "removed", "/spec/x".into())]),
            ("generic key added", spec(json!({})), spec(json!({"x": {"y": 1}})), vec![(N, "added", "/spec/x".into())]),
            ("generic scalar changed", spec(json!({"x": 1})), spec(json!({"x": true})), vec![(B, "changed", "/spec/x".into())]),
            ("generic value changed type", spec(json!({"x": "s"})), spec(json!({"x": {"y": "s"}})),
                vec![(B, "changed", "/spec/x".into())]),
            ("field type removed falls back to generic", field(json!({"name": "a", "type": "string"})),
                field(json!({"name": "a"})), vec![(B, "removed", fp("/type"))]),
            ("pointer tokens escaped", spec(json!({"a/b": {"c~d": 1}})), spec(json!({"a/b": {"c~d": 2}})),
                vec![(B, "changed", "/spec/a~1b/c~0d".into())]),
            ("changes sorted by pointer then reason",
                json!({"kind": "A", "spec": {"description": "x", "types": [{"name": "T", "fields": [{"name": "a"}]}]}}),
                json!({"kind": "B", "spec": {"description": "y", "types": [{"name": "T", "fields": []}, {"name": "U"}]}}),
                vec![(B, "kind-changed", "/kind".into()), (C, "description-changed", "/spec/description".into()),
                     (B, "field-removed", F.into()), (N, "type-added", "/spec/types/1".into())]),
        ];
        for (label, old, new, expected) in cases {
            let got: Expected = diff(&old, &new).into_iter().map(|c| (c.class, c.reason, c.pointer)).collect();
            assert_eq!(got, expected, "case: {label}");
        }
    }

    #[test]
    fn type_relations() {
        #[rustfmt::skip]
        let cases = [
            ("number", "integer", B, "type-narrowed"),
            ("any", "string", B, "type-narrowed"),
            ("any", "list[Task]", B, "type-narrowed"),
            ("map[any]", "map[string]", B, "type-narrowed"),
            ("list[any]", "list[integer]", B, "type-narrowed"),
            ("list[number]", "list[integer]", B, "type-narrowed"),
            ("list[map[any]]", "list[map[Task]]", B, "type-narrowed"),
            ("integer", "number", N, "type-widened"),
            ("string", "any", N, "type-widened"),
            ("map[string]", "map[any]", N, "type-widened"),
            ("list[list[integer]]", "list[list[number]]", N, "type-widened"),
            ("string", "integer", B, "type-changed"),
            ("list[string]", "map[string]", B, "type-changed"),
            ("Task", "Assignment", B, "type-changed"),
            ("list[string]", "list[integer]", B, "type-changed"),
        ];
        for (old, new, class, reason) in cases {
            let changes = diff(&field(json!({"name": "a", "type": old})), &field(json!({"name": "a", "type": new})));
            let got: Vec<(Class, &str, &str)> =
                changes.iter().map(|c| (c.class, c.reason, c.pointer.as_str())).collect();
            assert_eq!(got, vec![(class, reason, "/spec/types/0/fields/0/type")], "{old} -> {new}");
            assert!(changes[0].message.contains(old) && changes[0].message.contains(new), "{}", changes[0].message);
        }
    }

    #[test]
    fn messages_name_old_and_new_values() {
        let changes =
            diff(&field(json!({"name": "prio", "default": 5})), &field(json!({"name": "prio", "default": 6})));
        assert_eq!(changes[0].message, "`default` of `prio` changed from `5` to `6`");
        let changes = diff(&spec(json!({"x": "old"})), &spec(json!({"x": "new"})));
        assert_eq!(changes[0].message, "`x` changed from `old` to `new`");
    }

    #[test]
    fn example_document_evolution() {
        let old = json!({"apiVersion": "qpf.dev/v1", "kind": "Agent",
            "metadata": {"name": "orchestrator", "version": "1.2.0", "labels": {"tier": "core"}},
            "spec": {"description": "text",
                "types": [{"name": "Task", "fields": [
                    {"name": "id", "type": "string"},
                    {"name": "priority", "type": "integer", "default": 5},
                    {"name": "state", "type": "string", "enum": ["queued", "done"]}]}],
                "capabilities": [{"name": "dispatch", "input": "Task", "output": "Assignment", "errors": ["NoAgentAvailable"]}],
                "memory": [{"name": "working", "backend": "redis"}],
                "settings": [{"name": "max_tasks", "type": "integer", "default": 10}]}});
        let mut new = old.clone();
        new["metadata"]["version"] = json!("1.3.0");
        new["spec"]["types"][0]["fields"][1]["type"] = json!("number");
        new["spec"]["types"][0]["fields"][2]["enum"] = json!(["queued", "done", "failed"]);
        let changes = diff(&old, &new);
        assert_eq!(crate::bump::required(&changes), crate::bump::Bump::Minor);
        assert!(changes.iter().all(|c| c.class == N), "{changes:?}");
    }

    #[test]
    fn serializes_with_kebab_case_class() {
        let change = Change { class: N, pointer: "/a".into(), reason: "added", message: "m".into() };
        let json = serde_json::to_value(&change).unwrap_or_default();
        assert_eq!(json, json!({"class": "non-breaking", "pointer": "/a", "reason": "added", "message": "m"}));
        assert_eq!(serde_json::to_value(B).ok(), Some(json!("breaking")));
        assert_eq!(serde_json::to_value(C).ok(), Some(json!("cosmetic")));
    }
}
