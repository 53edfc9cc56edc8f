//! Pointer patterns of a migration (JSON Pointers where a `*` segment matches every key or index)
//! and the small edits of a JSON document along a path that the steps are made of.

use serde_json::{Map, Value};

use super::MigrateError;

/// One segment of a pointer pattern.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) enum Seg {
    Key(String),
    Any,
}

/// A concrete path matched by a pattern, with the keys or indices each `*` matched, in order.
pub(super) struct Found {
    pub(super) path: Vec<String>,
    pub(super) binds: Vec<String>,
}

pub(super) fn parse_pointer(pointer: &str) -> Result<Vec<Seg>, MigrateError> {
    let invalid = |reason| MigrateError::InvalidPointer { pointer: pointer.into(), reason };
    if pointer.is_empty() {
        return Ok(Vec::new());
    }
    let rest = pointer.strip_prefix('/').ok_or_else(|| invalid("must be empty or start with `/`"))?;
    rest.split('/')
        .map(|token| {
            if token == "*" {
                return Ok(Seg::Any);
            }
            let mut out = String::with_capacity(token.len());
            let mut chars = token.chars();
            while let Some(c) = chars.next() {
                if c != '~' {
                    out.push(c);
                    continue;
                }
                match chars.next() {
                    Some('0') => out.push('~'),
                    Some('1') => out.push('/'),
                    _ => return Err(invalid("`~` must be followed by `0` or `1`")),
                }
            }
            Ok(Seg::Key(out))
        })
        .collect()
}

pub(super) fn non_root(pointer: &str, pattern: &[Seg]) -> Result<(), MigrateError> {
    if pattern.is_empty() {
        return Err(MigrateError::InvalidPointer {
            pointer: pointer.into(),
            reason: "cannot target the document root",
        });
    }
    Ok(())
}

/// Expands a pattern against `doc` in document order. With `allow_missing`, a key segment that is absent
/// from an object (or is `-` or the length of an array) still matches when no `*` follows it, so that the
/// value can be created there.
pub(super) fn expand(doc: &Value, pattern: &[Seg], allow_missing: bool) -> Vec<Found> {
    let mut out = Vec::new();
    let mut path = Vec::new();
    let mut binds = Vec::new();
    walk(doc, pattern, allow_missing, &mut path, &mut binds, &mut out);
    out
}

pub(super) fn walk(
    node: &Value,
    pattern: &[Seg],
    allow_missing: bool,
    path: &mut Vec<String>,
    binds: &mut Vec<String>,
    out: &mut Vec<Found>,
) {
    let Some((first, rest)) = pattern.split_first() else {
        out.push(Found { path: path.clone(), binds: binds.clone() });
        return;
    };
    match first {
        Seg::Key(key) => {
            if let Some(child) = child(node, key) {
                path.push(key.clone());
                walk(child, rest, allow_missing, path, binds, out);
                path.pop();
                return;
            }
            if !allow_missing || rest.contains(&Seg::Any) {
                return;
            }
            let token = match node {
                Value::Object(_) => key.clone(),
                Value::Array(items) if key == "-" || *key == items.len().to_string() => items.len().to_string(),
                _ => return,
            };
            let mut full = path.clone();
            full.push(token);
            full.extend(rest.iter().filter_map(|seg| match seg {
                Seg::Key(key) => Some(key.clone()),
                Seg::Any => None,
            }));
            out.push(Found { path: full, binds: binds.clone() });
        }
        Seg::Any => {
            let children: Vec<(String, &Value)> = match node {
                Value::Object(map) => map.iter().map(|(k, v)| (k.clone(), v)).collect(),
                Value::Array(items) => items.iter().enumerate().map(|(i, v)| (i.to_string(), v)).collect(),
                _ => Vec::new(),
            };
            for (key, child) in children {
                path.push(key.clone());
                binds.push(key);
                walk(child, rest, allow_missing, path, binds, out);
                binds.pop();
                path.pop();
            }
        }
    }
}

/// Parses an array index token: decimal digits without leading zeros.
pub(super) fn index(token: &str) -> Option<usize> {
    let digits = !token.is_empty() && token.bytes().all(|b| b.is_ascii_digit());
    (digits && (token == "0" || !token.starts_with('0'))).then(|| token.parse().ok()).flatten()
}

pub(super) fn child<'a>(node: &'a Value, token: &str) -> Option<&'a Value> {
    match node {
        Value::Object(map) => map.get(token),
        Value::Array(items) => index(token).and_then(|i| items.get(i)),
        _ => None,
    }
}

pub(super) fn child_mut<'a>(node: &'a mut Value, token: &str) -> Option<&'a mut Value> {
    match node {
        Value::Object(map) => map.get_mut(token),
        Value::Array(items) => index(token).and_then(|i| items.get_mut(i)),
        _ => None,
    }
}

pub(super) fn get<'a>(doc: &'a Value, path: &[String]) -> Option<&'a Value> {
    path.iter().try_fold(doc, |node, token| child(node, token))
}

pub(super) fn get_mut<'a>(doc: &'a mut Value, path: &[String]) -> Option<&'a mut Value> {
    path.iter().try_fold(doc, |node, token| child_mut(node, token))
}

/// Removes and returns the value at `path`, if present.
pub(super) fn remove(doc: &mut Value, path: &[String]) -> Option<Value> {
    let (last, parent) = path.split_last()?;
    match get_mut(doc, parent)? {
        Value::Object(map) => map.remove(last),
        Value::Array(items) => index(last).filter(|i| *i < items.len()).map(|i| items.remove(i)),
        _ => None,
    }
}

/// Inserts `value` at `path`, creating missing parent objects; appends when the last token is `-` or the
/// length of an array. Fails with [`MigrateError::Conflict`] when a value is already there.
pub(super) fn insert(doc: &mut Value, path: &[String], value: Value) -> Result<(), MigrateError> {
    let cannot =
        |depth: usize| MigrateError::CannotInsert { pointer: to_pointer(path), parent: to_pointer(&path[..depth]) };
    let Some((last, parents)) = path.split_last() else {
        return Err(MigrateError::Conflict { pointer: String::new() });
    };
    let mut node = doc;
    for (depth, token) in parents.iter().enumerate() {
        node = match node {
            Value::Object(map) => map.entry(token.clone()).or_insert_with(|| Value::Object(Map::new())),
            Value::Array(items) => index(token).and_then(|i| items.get_mut(i)).ok_or_else(|| cannot(depth))?,
            _ => return Err(cannot(depth)),
        };
    }
    match node {
        Value::Object(map) if map.contains_key(last) => Err(MigrateError::Conflict { pointer: to_pointer(path) }),
        Value::Object(map) => {
            map.insert(last.clone(), value);
            Ok(())
        }
        Value::Array(items) if last == "-" || index(last) == Some(items.len()) => {
            items.push(value);
            Ok(())
        }
        Value::Array(items) if index(last).is_some_and(|i| i < items.len()) => {
            Err(MigrateError::Conflict { pointer: to_pointer(path) })
        }
        _ => Err(cannot(parents.len())),
    }
}

/// Renders a value for a description: strings without quotes, everything else as compact JSON.
pub(super) fn show(value: &Value) -> String {
    match value {
        Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

/// Builds an RFC 6901 pointer from unescaped tokens.
pub(super) fn to_pointer(path: &[String]) -> String {
    path.iter().map(|t| format!("/{}", crate::provenance::escape_pointer(t))).collect()
}
