//! `qpf_core::canonical::to_string` and `qpf_core::key_encoding::{encode, hash}`: canonical JSON
//! re-parses to the same value, is idempotent and ignores key order; the key encoding is injective
//! and its hash is the digest of the encoding.
#![no_main]

use libfuzzer_sys::fuzz_target;
use qpf_core::key_encoding::{encode, hash};
use serde_json::{Map, Value};

/// A copy of `value` with every object's keys inserted in reverse order.
fn reversed(value: &Value) -> Value {
    match value {
        Value::Object(map) => {
            let mut out = Map::new();
            for (k, v) in map.iter().rev() {
                out.insert(k.clone(), reversed(v));
            }
            Value::Object(out)
        }
        Value::Array(items) => Value::Array(items.iter().map(reversed).collect()),
        other => other.clone(),
    }
}

/// `name=value;name=value;...` (a field without `=` has an empty value).
fn fields_by_entry(text: &str) -> Vec<(&str, &str)> {
    text.split(';').map(|f| f.split_once('=').unwrap_or((f, ""))).collect()
}

/// The same text cut at every `=` and `;`, taken two at a time.
fn fields_by_token(text: &str) -> Vec<(&str, &str)> {
    let tokens: Vec<&str> = text.split(['=', ';']).collect();
    tokens.chunks(2).map(|c| (c[0], c.get(1).copied().unwrap_or(""))).collect()
}

fn check_pair(a: &[(&str, &str)], b: &[(&str, &str)]) {
    let (ea, eb) = (encode(a), encode(b));
    assert_eq!(ea == eb, a == b, "{a:?} vs {b:?}");
    assert_eq!(hash(a), qpf_core::digest_of(&ea));
    assert_eq!(hash(b), qpf_core::digest_of(&eb));
}

fuzz_target!(|data: &[u8]| {
    let text = String::from_utf8_lossy(data);
    check_pair(&fields_by_entry(&text), &fields_by_token(&text));
    let (left, right) = data.split_at(data.len() / 2);
    let (left, right) = (String::from_utf8_lossy(left), String::from_utf8_lossy(right));
    check_pair(&fields_by_entry(&left), &fields_by_entry(&right));
    check_pair(&fields_by_token(&left), &fields_by_entry(&right));

    let Ok(value) = serde_json::from_slice::<Value>(data) else { return };
    let canonical = qpf_core::canonical::to_string(&value);
    let reparsed: Value = serde_json::from_str(&canonical)
        .unwrap_or_else(|e| panic!("canonical text {canonical:?} does not parse: {e}"));
    assert_eq!(reparsed, value, "canonical text {canonical:?} changes the value");
    assert_eq!(qpf_core::canonical::to_string(&reparsed), canonical, "not idempotent");
    let other = reversed(&value);
    assert_eq!(qpf_core::canonical::to_string(&other), canonical, "depends on key order");
});
