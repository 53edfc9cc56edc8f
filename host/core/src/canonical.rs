//! Canonical JSON: object keys sorted by their UTF-8 bytes, no insignificant whitespace, numbers as
//! serde_json prints them. Two equal values always give the same bytes, which is what the cache key
//! and plugins (`input`, `config`) rely on.

use serde_json::Value;

/// The canonical text of a JSON value.
pub fn to_string(value: &Value) -> String {
    let mut out = String::new();
    write(value, &mut out);
    out
}

fn write(value: &Value, out: &mut String) {
    match value {
        Value::Object(map) => {
            let mut keys: Vec<&String> = map.keys().collect();
            keys.sort();
            out.push('{');
            for (i, k) in keys.into_iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                out.push_str(&Value::String(k.clone()).to_string());
                out.push(':');
                write(&map[k], out);
            }
            out.push('}');
        }
        Value::Array(items) => {
            out.push('[');
            for (i, item) in items.iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                write(item, out);
            }
            out.push(']');
        }
        other => out.push_str(&other.to_string()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_are_sorted_at_every_depth_and_whitespace_is_gone() {
        let v: Value = serde_json::from_str(r#"{ "b": {"z": 1, "a": [true, null]}, "a": "x\"y" }"#).unwrap();
        assert_eq!(to_string(&v), r#"{"a":"x\"y","b":{"a":[true,null],"z":1}}"#);
    }

    #[test]
    fn insertion_order_does_not_matter() {
        let a: Value = serde_json::from_str(r#"{"x":1,"y":2}"#).unwrap();
        let b: Value = serde_json::from_str(r#"{"y":2,"x":1}"#).unwrap();
        assert_eq!(to_string(&a), to_string(&b));
    }
}
