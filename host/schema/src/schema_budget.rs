//! Budgets on a JSON Schema that comes from a plugin (its config schema) or a project (a kind):
//! the host compiles and evaluates it, so its cost must be bounded before the host spends it.
//!
//! | budget | bound | why |
//! |---|---|---|
//! | nesting | [`MAX_DEPTH`] levels of JSON | the compiler and this check recurse |
//! | references | only local JSON Pointer `$ref`s (`#`, `#/...`); no `$dynamicRef`, `$recursiveRef`, nested `$id` or `$anchor` | every reference must be resolvable here, without the network |
//! | reference chains | at most [`MAX_REF_CHAIN`] `$ref`s followed in a row, and no cycles | a config is a finite value |
//! | expanded size | at most [`MAX_EXPANDED`] subschemas with every `$ref` replaced by its target | evaluation cost follows the expanded size: 40 levels of `allOf: [$ref, $ref]` is 2^40 |
//! | patterns | the linear-time `regex` engine | no catastrophic backtracking |
//!
//! A schema over budget is refused with a message naming the budget.

use std::collections::HashMap;

use serde_json::Value;

/// Deepest JSON nesting accepted.
pub const MAX_DEPTH: usize = 64;
/// Longest chain of `$ref`s followed from one place.
pub const MAX_REF_CHAIN: usize = 64;
/// Largest schema, counted in subschemas after every `$ref` is expanded.
pub const MAX_EXPANDED: u64 = 20_000;

/// The first budget a schema exceeds. Quoted parts of the schema are cut to 80 characters and
/// escaped for a terminal.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum BudgetError {
    /// Nested deeper than [`MAX_DEPTH`].
    #[error("it nests deeper than {MAX_DEPTH} levels")]
    TooDeep,
    /// A `$ref` that is not a local JSON Pointer.
    #[error("`$ref` {0:?} is not a local JSON Pointer (`#/...`); a config schema must be self-contained")]
    RemoteRef(String),
    /// A `$ref` whose value is not a string.
    #[error("a `$ref` that is not a string")]
    RefNotString,
    /// A keyword that refers dynamically (`$dynamicRef`, `$anchor`, ...).
    #[error("`{0}` is not supported in a budgeted schema; use `$ref: \"#/...\"`")]
    Unsupported(String),
    /// An `$id` below the root.
    #[error("a nested `$id` is not supported in a budgeted schema")]
    NestedId,
    /// A `$ref` that reaches itself.
    #[error(
        "`$ref` {pointer:?} refers to itself through {through} reference(s); a budgeted schema may not be recursive"
    )]
    Recursive {
        /// The reference.
        pointer: String,
        /// How many references were followed before it came back.
        through: usize,
    },
    /// More than [`MAX_REF_CHAIN`] references followed in a row.
    #[error("it follows more than {MAX_REF_CHAIN} `$ref`s in a row")]
    RefChain,
    /// A `$ref` to a place that does not exist.
    #[error("`$ref` {0:?} points at nothing in the schema")]
    Dangling(String),
    /// More than [`MAX_EXPANDED`] subschemas once expanded.
    #[error("it expands to more than {MAX_EXPANDED} subschemas once its `$ref`s are followed")]
    TooBig,
}

/// Checks `schema` against the budgets above.
///
/// # Errors
/// The first budget exceeded.
pub fn check(schema: &Value) -> Result<(), BudgetError> {
    check_shape(schema)?;
    let mut walk = Walk { root: schema, memo: HashMap::new(), chain: Vec::new() };
    walk.cost(schema).map(|_| ())
}

/// Depth and reference forms, without following references (iterative: no recursion on input).
fn check_shape(schema: &Value) -> Result<(), BudgetError> {
    let mut stack = vec![(schema, 0usize, true)];
    while let Some((value, depth, is_root)) = stack.pop() {
        if depth > MAX_DEPTH {
            return Err(BudgetError::TooDeep);
        }
        match value {
            Value::Object(map) => {
                for (key, child) in map {
                    match key.as_str() {
                        "$ref" => match child.as_str() {
                            Some(r) if r == "#" || r.starts_with("#/") => {}
                            Some(r) => return Err(BudgetError::RemoteRef(quote(r))),
                            None => return Err(BudgetError::RefNotString),
                        },
                        "$dynamicRef" | "$recursiveRef" | "$dynamicAnchor" | "$recursiveAnchor" | "$anchor" => {
                            return Err(BudgetError::Unsupported(key.clone()));
                        }
                        "$id" if !is_root => {
                            return Err(BudgetError::NestedId);
                        }
                        _ => {}
                    }
                    stack.push((child, depth + 1, false));
                }
            }
            Value::Array(items) => stack.extend(items.iter().map(|v| (v, depth + 1, false))),
            _ => {}
        }
    }
    Ok(())
}

/// A piece of the schema to quote in an error: cut to 80 characters, escaped for a terminal.
fn quote(s: &str) -> String {
    qpf_core::text::escape(&s.chars().take(80).collect::<String>()).into_owned()
}

/// A compiler message cut to 1 KiB and made safe for a terminal (it may quote the schema).
pub fn shorten_message(message: &str) -> String {
    let cut: String = message.chars().take(1024).collect();
    let more = if cut.len() < message.len() { "…" } else { "" };
    format!("{}{more}", qpf_core::text::escape_block(&cut))
}

struct Walk<'a> {
    root: &'a Value,
    /// Expanded cost of each `$ref` target, by pointer.
    memo: HashMap<&'a str, u64>,
    /// The `$ref`s being expanded (cycle detection, chain length).
    chain: Vec<&'a str>,
}

impl<'a> Walk<'a> {
    /// The number of subschemas (JSON values) `value` expands to. The recursion is bounded by
    /// `MAX_DEPTH` per value (checked first) times `MAX_REF_CHAIN` references.
    fn cost(&mut self, value: &'a Value) -> Result<u64, BudgetError> {
        let mut total: u64 = 1;
        match value {
            Value::Object(map) => {
                for (key, child) in map {
                    if key == "$ref"
                        && let Some(pointer) = child.as_str()
                    {
                        total = total.saturating_add(self.reference(pointer)?);
                    } else {
                        total = total.saturating_add(self.cost(child)?);
                    }
                    if total > MAX_EXPANDED {
                        return Err(BudgetError::TooBig);
                    }
                }
            }
            Value::Array(items) => {
                for child in items {
                    total = total.saturating_add(self.cost(child)?);
                    if total > MAX_EXPANDED {
                        return Err(BudgetError::TooBig);
                    }
                }
            }
            _ => {}
        }
        Ok(total)
    }

    fn reference(&mut self, pointer: &'a str) -> Result<u64, BudgetError> {
        if let Some(cost) = self.memo.get(pointer) {
            return Ok(*cost);
        }
        if self.chain.contains(&pointer) {
            return Err(BudgetError::Recursive { pointer: quote(pointer), through: self.chain.len() });
        }
        if self.chain.len() >= MAX_REF_CHAIN {
            return Err(BudgetError::RefChain);
        }
        let fragment = &pointer[1..];
        let target = self.root.pointer(&decode(fragment)).ok_or_else(|| BudgetError::Dangling(quote(pointer)))?;
        self.chain.push(pointer);
        let cost = self.cost(target);
        self.chain.pop();
        let cost = cost?;
        self.memo.insert(pointer, cost);
        Ok(cost)
    }
}

/// A URI fragment's percent-escapes decoded (`%25` → `%`), as JSON Pointers in `$ref` use them.
fn decode(fragment: &str) -> String {
    let bytes = fragment.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%'
            && i + 2 < bytes.len()
            && let (Some(h), Some(l)) = (hex(bytes[i + 1]), hex(bytes.get(i + 2).copied().unwrap_or(0)))
        {
            out.push(h * 16 + l);
            i += 3;
            continue;
        }
        out.push(bytes[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

fn hex(b: u8) -> Option<u8> {
    (b as char).to_digit(16).map(|d| d as u8)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use serde_json::json;

    /// `allOf: [$ref a(n+1), $ref a(n+1)]` for `levels` levels: 2^levels once expanded.
    fn doubling(levels: usize) -> Value {
        let mut defs = serde_json::Map::new();
        for i in 0..levels {
            let next = format!("#/$defs/a{}", i + 1);
            defs.insert(format!("a{i}"), json!({ "allOf": [{ "$ref": next }, { "$ref": next }] }));
        }
        defs.insert(format!("a{levels}"), json!({ "type": "object" }));
        json!({ "$ref": "#/$defs/a0", "$defs": defs })
    }

    #[test]
    fn ordinary_schemas_pass() {
        check(&json!({ "type": "object", "properties": { "path": { "type": "string", "pattern": "^[a-z]+$" } } }))
            .unwrap();
        check(&json!({ "$defs": { "s": { "type": "string" } }, "properties": { "a": { "$ref": "#/$defs/s" } } }))
            .unwrap();
        check(&doubling(8)).unwrap();
    }

    #[test]
    fn exponential_reference_fans_are_refused() {
        assert_eq!(check(&doubling(40)), Err(BudgetError::TooBig));
        assert!(BudgetError::TooBig.to_string().contains("expands to more than 20000 subschemas"));
    }

    #[test]
    fn cycles_remote_refs_and_deep_nesting_are_refused() {
        let cycle =
            json!({ "$defs": { "a": { "$ref": "#/$defs/b" }, "b": { "$ref": "#/$defs/a" } }, "$ref": "#/$defs/a" });
        assert!(check(&cycle).unwrap_err().to_string().contains("refers to itself"));
        let remote = check(&json!({ "$ref": "https://example.com/s.json" })).unwrap_err();
        assert_eq!(remote, BudgetError::RemoteRef("https://example.com/s.json".into()));
        assert!(remote.to_string().contains("not a local"), "{remote}");
        assert_eq!(check(&json!({ "$dynamicRef": "#x" })), Err(BudgetError::Unsupported("$dynamicRef".into())));
        assert!(check(&json!({ "$ref": "#/nowhere" })).unwrap_err().to_string().contains("points at nothing"));
        let mut deep = json!({});
        for _ in 0..100 {
            deep = json!({ "not": deep });
        }
        assert_eq!(check(&deep), Err(BudgetError::TooDeep));
    }

    #[test]
    fn long_reference_chains_are_refused() {
        let mut defs = serde_json::Map::new();
        for i in 0..100 {
            defs.insert(format!("a{i}"), json!({ "$ref": format!("#/$defs/a{}", i + 1) }));
        }
        defs.insert("a100".into(), json!({}));
        let err = check(&json!({ "$ref": "#/$defs/a0", "$defs": defs })).unwrap_err();
        assert_eq!(err, BudgetError::RefChain);
        assert!(err.to_string().contains("in a row"), "{err}");
    }
}
