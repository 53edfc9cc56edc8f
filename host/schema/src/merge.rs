//! `extends`: deep merge of a base into a derived document, with provenance.
//!
//! | base | derived | result |
//! |---|---|---|
//! | mapping | mapping | merged key by key (base keys in base order, then new keys) |
//! | list of mappings that all have a string `name` | same | merged by `name`: matching items merged, new names appended in order |
//! | any list | `{$append: [...]}` | base items, then these |
//! | any list | `{$remove: [...]}` | base items minus those whose `name` (or value) is listed |
//! | any list | `{$remove: [...], $append: [...]}` | remove first, then append |
//! | any | `{$replace: X}` | exactly `X` |
//! | anything else | anything | the derived value replaces the base's |
//!
//! A directive object applied where there is no base acts on an empty list.

use serde_json::Value;

use crate::provenance::{Provenance, graft};

const DIRECTIVES: &[&str] = &["$append", "$remove", "$replace"];

/// A value with the pointer it has in its source document and that document's provenance.
#[derive(Clone, Copy)]
pub struct Located<'a> {
    /// The value.
    pub value: &'a Value,
    /// Its pointer in the source document.
    pub pointer: &'a str,
    /// The source document's provenance.
    pub provenance: &'a Provenance,
    /// How this source reached the result (e.g. ``extends `base` (base.yaml)``), if not directly.
    pub via: Option<&'a str>,
}

fn is_directive(v: &Value) -> bool {
    v.as_object().is_some_and(|m| !m.is_empty() && m.keys().all(|k| DIRECTIVES.contains(&k.as_str())))
}

fn name_of(v: &Value) -> Option<&str> {
    v.get("name").and_then(Value::as_str)
}

fn all_named(items: &[Value]) -> bool {
    items.iter().all(|i| name_of(i).is_some())
}

fn place(src: Located<'_>, at: &str, out: &mut Provenance) -> Value {
    graft(src.provenance, src.pointer, at, src.via, out);
    src.value.clone()
}

fn child<'a>(src: Located<'a>, value: &'a Value, pointer: &'a str) -> Located<'a> {
    Located { value, pointer, provenance: src.provenance, via: src.via }
}

/// A malformed directive, at the pointer of the value in the derived document.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MergeError {
    /// Pointer (in the derived document) of the offending value.
    pub pointer: String,
    /// What is wrong.
    pub message: String,
}

fn fail<T>(over: Located<'_>, message: String) -> Result<T, MergeError> {
    Err(MergeError { pointer: over.pointer.to_owned(), message: format!("`{}`: {message}", over.pointer) })
}

/// Merges `over` onto `base` at result pointer `at`, recording origins in `out`. With no base,
/// directives inside `over` still apply (to empty lists).
///
/// # Errors
/// A [`MergeError`] at the directive that is malformed or applied to something that is not a list.
pub fn merge(
    base: Option<Located<'_>>,
    over: Located<'_>,
    at: &str,
    out: &mut Provenance,
) -> Result<Value, MergeError> {
    if is_directive(over.value) {
        return apply_directive(base, over, at, out);
    }
    let Some(base) = base else { return normalise(over, at, out) };
    match (base.value, over.value) {
        (Value::Object(b), Value::Object(o)) => {
            graft_self(over, at, out);
            let mut result = serde_json::Map::new();
            for (k, bv) in b {
                let key = crate::provenance::escape_pointer(k);
                let (bp, rp) = (format!("{}/{key}", base.pointer), format!("{at}/{key}"));
                let merged = match o.get(k) {
                    Some(ov) => {
                        let op = format!("{}/{key}", over.pointer);
                        merge(Some(child(base, bv, &bp)), child(over, ov, &op), &rp, out)?
                    }
                    None => place(child(base, bv, &bp), &rp, out),
                };
                result.insert(k.clone(), merged);
            }
            for (k, ov) in o {
                if !b.contains_key(k) {
                    let key = crate::provenance::escape_pointer(k);
                    let op = format!("{}/{key}", over.pointer);
                    result.insert(k.clone(), merge(None, child(over, ov, &op), &format!("{at}/{key}"), out)?);
                }
            }
            Ok(Value::Object(result))
        }
        (Value::Array(b), Value::Array(o)) if all_named(b) && all_named(o) => {
            graft_self(over, at, out);
            let mut result = Vec::new();
            for (i, bv) in b.iter().enumerate() {
                let bp = format!("{}/{i}", base.pointer);
                let rp = format!("{at}/{}", result.len());
                let merged = match o.iter().position(|ov| name_of(ov) == name_of(bv)) {
                    Some(j) => {
                        let op = format!("{}/{j}", over.pointer);
                        merge(Some(child(base, bv, &bp)), child(over, &o[j], &op), &rp, out)?
                    }
                    None => place(child(base, bv, &bp), &rp, out),
                };
                result.push(merged);
            }
            for (j, ov) in o.iter().enumerate() {
                if !b.iter().any(|bv| name_of(bv) == name_of(ov)) {
                    let op = format!("{}/{j}", over.pointer);
                    let rp = format!("{at}/{}", result.len());
                    result.push(merge(None, child(over, ov, &op), &rp, out)?);
                }
            }
            Ok(Value::Array(result))
        }
        _ => {
            // The derived value replaces the base's: drop the base's origins under `at` first.
            out.retain(|p, _| !(p == at || p.starts_with(&format!("{at}/"))));
            normalise(over, at, out)
        }
    }
}

/// Places a derived value that has no base, applying any directive found inside it.
fn normalise(over: Located<'_>, at: &str, out: &mut Provenance) -> Result<Value, MergeError> {
    match over.value {
        Value::Object(map) if map.values().any(has_directive) => {
            graft_self(over, at, out);
            let mut result = serde_json::Map::new();
            for (k, v) in map {
                let key = crate::provenance::escape_pointer(k);
                let op = format!("{}/{key}", over.pointer);
                result.insert(k.clone(), merge(None, child(over, v, &op), &format!("{at}/{key}"), out)?);
            }
            Ok(Value::Object(result))
        }
        Value::Array(items) if items.iter().any(has_directive) => {
            graft_self(over, at, out);
            let mut result = Vec::new();
            for (i, v) in items.iter().enumerate() {
                let op = format!("{}/{i}", over.pointer);
                result.push(merge(None, child(over, v, &op), &format!("{at}/{i}"), out)?);
            }
            Ok(Value::Array(result))
        }
        _ => Ok(place(over, at, out)),
    }
}

fn has_directive(v: &Value) -> bool {
    match v {
        Value::Object(m) => is_directive(v) || m.values().any(has_directive),
        Value::Array(items) => items.iter().any(has_directive),
        _ => false,
    }
}

fn graft_self(src: Located<'_>, at: &str, out: &mut Provenance) {
    if let Some(origin) = src.provenance.get(src.pointer) {
        let mut origin = origin.clone();
        if let Some(via) = src.via {
            origin.via.insert(0, via.to_owned());
        }
        out.insert(at.to_owned(), origin);
    }
}

fn apply_directive(
    base: Option<Located<'_>>,
    over: Located<'_>,
    at: &str,
    out: &mut Provenance,
) -> Result<Value, MergeError> {
    let Some(map) = over.value.as_object() else { return fail(over, "a list directive must be a mapping".into()) };
    out.retain(|p, _| !(p == at || p.starts_with(&format!("{at}/"))));
    graft_self(over, at, out);
    if let Some(replacement) = map.get("$replace") {
        if map.len() > 1 {
            return fail(over, "`$replace` cannot be combined with `$append` or `$remove`".into());
        }
        let op = format!("{}/$replace", over.pointer);
        return Ok(place(child(over, replacement, &op), at, out));
    }
    let empty = Vec::new();
    let base_items = match base.map(|b| b.value) {
        None | Some(Value::Null) => &empty,
        Some(Value::Array(items)) => items,
        Some(_) => {
            return fail(over, "`$append`/`$remove` apply to lists, but the base value here is not a list".into());
        }
    };
    let removed: Vec<&Value> = match map.get("$remove") {
        None => Vec::new(),
        Some(Value::Array(items)) => items.iter().collect(),
        Some(_) => return fail(over, "`$remove` must be a list of names or values".into()),
    };
    let mut result = Vec::new();
    if let Some(base) = base {
        for (i, item) in base_items.iter().enumerate() {
            let gone = removed.iter().any(|r| match (r.as_str(), name_of(item)) {
                (Some(name), Some(item_name)) => name == item_name,
                _ => *r == item,
            });
            if !gone {
                let bp = format!("{}/{i}", base.pointer);
                let rp = format!("{at}/{}", result.len());
                result.push(place(child(base, item, &bp), &rp, out));
            }
        }
    }
    match map.get("$append") {
        None => {}
        Some(Value::Array(items)) => {
            for (j, item) in items.iter().enumerate() {
                let op = format!("{}/$append/{j}", over.pointer);
                let rp = format!("{at}/{}", result.len());
                result.push(place(child(over, item, &op), &rp, out));
            }
        }
        Some(_) => return fail(over, "`$append` must be a list".into()),
    }
    Ok(Value::Array(result))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn run(base: Value, over: Value) -> Value {
        let (bp, op) = (Provenance::new(), Provenance::new());
        let mut out = Provenance::new();
        let b = Located { value: &base, pointer: "", provenance: &bp, via: None };
        let o = Located { value: &over, pointer: "", provenance: &op, via: None };
        merge(Some(b), o, "", &mut out).unwrap()
    }

    #[test]
    fn maps_merge_and_scalars_replace() {
        assert_eq!(
            run(json!({"a": 1, "b": {"c": 2, "d": 3}}), json!({"b": {"d": 4}, "e": 5})),
            json!({"a": 1, "b": {"c": 2, "d": 4}, "e": 5})
        );
    }

    #[test]
    fn named_lists_merge_by_name_and_others_replace() {
        let base = json!({"t": [{"name": "a", "x": 1}, {"name": "b"}], "l": [1, 2]});
        let over = json!({"t": [{"name": "b", "y": 2}, {"name": "c"}], "l": [3]});
        assert_eq!(
            run(base, over),
            json!({"t": [{"name": "a", "x": 1}, {"name": "b", "y": 2}, {"name": "c"}], "l": [3]})
        );
    }

    #[test]
    fn directives_append_remove_and_replace() {
        let base = json!({"l": [{"name": "a"}, {"name": "b"}], "s": [1, 2, 3]});
        assert_eq!(
            run(base.clone(), json!({"l": {"$remove": ["a"], "$append": [{"name": "z"}]}})),
            json!({"l": [{"name": "b"}, {"name": "z"}], "s": [1, 2, 3]})
        );
        assert_eq!(
            run(base.clone(), json!({"s": {"$remove": [2]}})),
            json!({"l": [{"name": "a"}, {"name": "b"}], "s": [1, 3]})
        );
        assert_eq!(run(base, json!({"l": {"$replace": []}})), json!({"l": [], "s": [1, 2, 3]}));
    }

    #[test]
    fn provenance_follows_items_to_their_new_index() {
        let base = json!({"t": [{"name": "a"}, {"name": "b"}]});
        let over = json!({"t": {"$remove": ["a"]}});
        let mut bp = Provenance::new();
        bp.insert("/t/1/name".into(), crate::provenance::Origin::new(std::path::Path::new("base.yaml"), 7, 9));
        let op = Provenance::new();
        let mut out = Provenance::new();
        let b = Located { value: &base, pointer: "", provenance: &bp, via: Some("extends `base`") };
        let o = Located { value: &over, pointer: "", provenance: &op, via: None };
        merge(Some(b), o, "", &mut out).unwrap();
        assert_eq!(out["/t/0/name"].line, 7);
        assert_eq!(out["/t/0/name"].via, vec!["extends `base`".to_owned()]);
    }
}
