//! The invocation cache key: blake3 over a canonical, versioned encoding of everything an
//! invocation's result depends on: the contract version, the plugin, **the whole request** the
//! plugin receives (entry id, schema id, input, config, context), and the limits. The request is
//! encoded as the canonical JSON of its serialised form, so a field added to [`Request`] later is
//! in the key without anyone remembering to add it; a test walks every leaf of the request and its
//! JSON parts to prove that each one changes the key. Changing the encoding means bumping
//! [`KEY_FORMAT`].
//!
//! What a plugin observes besides the request is in the key too, or derived from it: its
//! randomness is seeded from the request, its clocks are frozen, and `context.upstream` (added when
//! the invocation runs) is a function of the upstream keys in `context.needs`.

use qpf_runtime::{Limits, Request};

/// Version of the key encoding. Bump it whenever the encoding or the meaning of a field changes.
/// (2: the whole request, entry id and schema id included, instead of input, config and context.)
pub const KEY_FORMAT: &str = "qpf-invocation-key/2";

/// Everything an invocation's result depends on.
#[derive(Debug, Clone, Copy)]
pub struct KeyInputs<'a> {
    /// The WIT package version the plugin is called through.
    pub abi: &'a str,
    /// `blake3:<hex>` of the plugin component.
    pub plugin_digest: &'a str,
    /// The request exactly as the plugin receives it (its JSON parts already canonical).
    pub request: &'a Request,
    /// The sandbox limits (a limit can turn success into failure).
    pub limits: &'a Limits,
}

/// The canonical JSON of a serialisable value ("" if it cannot be serialised, which the plain data
/// types here never fail to be).
fn canonical<T: serde::Serialize>(value: &T) -> String {
    serde_json::to_value(value).map(|v| crate::canonical::to_string(&v)).unwrap_or_default()
}

/// The key, as `blake3:<hex>`.
pub fn compute(inputs: &KeyInputs<'_>) -> String {
    let request = canonical(inputs.request);
    let limits = canonical(inputs.limits);
    // Length-prefixed names and values (`qpf_core::key_encoding`): no two different tuples encode
    // to the same bytes.
    qpf_core::key_encoding::hash(&[
        ("format", KEY_FORMAT),
        ("abi", inputs.abi),
        ("plugin", inputs.plugin_digest),
        ("request", request.as_str()),
        ("limits", limits.as_str()),
    ])
}

#[cfg(test)]
mod tests {
    use super::*;
    use qpf_runtime::SchemaId;
    use serde_json::Value;

    fn request() -> Request {
        Request {
            entry: "models".into(),
            schema: SchemaId { kind: "Agent".into(), name: "monitor".into(), version: "1.0.0".into() },
            input: r#"{"a":1,"list":[true,"x",null],"nested":{"b":2.5}}"#.into(),
            config: r#"{"path":"src/{package}/models.py","strict":false}"#.into(),
            context: r#"{"needs":{"types":"blake3:00"},"schema":{"apiVersion":"qpf.dev/v1","kind":"Agent","metadata":{"labels":{"team":"a"},"name":"monitor","version":"1.0.0"}},"spawned_by":"blake3:11"}"#.into(),
        }
    }

    fn key(request: &Request, limits: &Limits) -> String {
        compute(&KeyInputs { abi: "0.1.0", plugin_digest: "blake3:00", request, limits })
    }

    /// Every leaf of a JSON value, as (pointer, value).
    fn leaves(value: &Value, pointer: String, out: &mut Vec<(String, Value)>) {
        match value {
            Value::Object(map) if !map.is_empty() => {
                for (k, v) in map {
                    leaves(v, format!("{pointer}/{}", k.replace('~', "~0").replace('/', "~1")), out);
                }
            }
            Value::Array(items) if !items.is_empty() => {
                for (i, v) in items.iter().enumerate() {
                    leaves(v, format!("{pointer}/{i}"), out);
                }
            }
            leaf => out.push((pointer, leaf.clone())),
        }
    }

    /// A different value of the same shape.
    fn changed(value: &Value) -> Value {
        match value {
            Value::String(s) => Value::String(format!("{s}~")),
            Value::Number(n) => serde_json::json!(n.as_f64().unwrap_or(0.0) + 1.0),
            Value::Bool(b) => Value::Bool(!b),
            Value::Null => Value::Bool(false),
            Value::Array(_) => serde_json::json!([0]),
            Value::Object(_) => serde_json::json!({ "k": 0 }),
        }
    }

    /// Walks the request's serialised structure, and inside each field that carries JSON text
    /// (input, config, context) walks that JSON too: changing any leaf must change the key. A field
    /// added to `Request` or to the context later is walked without this test changing.
    #[test]
    fn every_leaf_of_the_request_and_its_context_is_in_the_key() {
        let limits = Limits::default();
        let base = request();
        let k0 = key(&base, &limits);
        let serialised = serde_json::to_value(&base).unwrap_or_default();
        let mut fields = Vec::new();
        leaves(&serialised, String::new(), &mut fields);
        assert!(fields.len() >= 7, "entry, schema.kind/name/version, input, config, context: {fields:?}");
        let mut checked = 0;
        for (pointer, leaf) in &fields {
            // The field itself.
            let mut mutated = serialised.clone();
            if let Some(slot) = mutated.pointer_mut(pointer) {
                *slot = changed(leaf);
            }
            if let Ok(variant) = serde_json::from_value::<Request>(mutated) {
                assert_ne!(key(&variant, &limits), k0, "changing `{pointer}` must change the key");
                checked += 1;
            }
            // Each leaf of the JSON it carries.
            let Some(text) = leaf.as_str() else { continue };
            let Ok(json) = serde_json::from_str::<Value>(text) else { continue };
            let mut inner = Vec::new();
            leaves(&json, String::new(), &mut inner);
            for (inner_pointer, inner_leaf) in inner {
                let mut doc = json.clone();
                if let Some(slot) = doc.pointer_mut(&inner_pointer) {
                    *slot = changed(&inner_leaf);
                }
                let mut mutated = serialised.clone();
                if let Some(slot) = mutated.pointer_mut(pointer) {
                    *slot = Value::String(crate::canonical::to_string(&doc));
                }
                let variant: Request = serde_json::from_value(mutated).unwrap_or_else(|_| base.clone());
                assert_ne!(key(&variant, &limits), k0, "changing `{pointer}` at `{inner_pointer}` must change the key");
                checked += 1;
            }
        }
        assert!(checked >= 20, "walked {checked} leaves");
    }

    #[test]
    fn the_key_is_a_function_of_its_inputs_only() {
        let limits = Limits::default();
        let base = request();
        // A round trip through JSON (what the lock and reports do) keeps the key.
        let text = serde_json::to_string(&base).unwrap_or_default();
        let back: Request = serde_json::from_str(&text).unwrap_or_else(|_| base.clone());
        assert_eq!(key(&back, &limits), key(&base, &limits));
        assert_eq!(key(&base, &limits), key(&base.clone(), &limits.clone()));
    }

    #[test]
    fn abi_plugin_and_every_limit_change_the_key() {
        let limits = Limits::default();
        let r = request();
        let k0 = key(&r, &limits);
        assert_ne!(compute(&KeyInputs { abi: "0.2.0", plugin_digest: "blake3:00", request: &r, limits: &limits }), k0);
        assert_ne!(compute(&KeyInputs { abi: "0.1.0", plugin_digest: "blake3:01", request: &r, limits: &limits }), k0);
        let serialised = serde_json::to_value(&limits).unwrap_or_default();
        let mut fields = Vec::new();
        leaves(&serialised, String::new(), &mut fields);
        for (pointer, leaf) in fields {
            let mut mutated = serialised.clone();
            if let Some(slot) = mutated.pointer_mut(&pointer) {
                *slot = serde_json::json!(leaf.as_u64().unwrap_or(0) + 1);
            }
            let variant: Limits = serde_json::from_value(mutated).unwrap_or_default();
            assert_ne!(key(&r, &variant), k0, "limit `{pointer}`");
        }
    }

    #[test]
    fn two_entries_with_the_same_plugin_input_and_config_get_different_keys() {
        let limits = Limits::default();
        let a = request();
        let b = Request { entry: "models-copy".into(), ..request() };
        assert_ne!(key(&a, &limits), key(&b, &limits));
    }

    #[test]
    fn key_format_is_pinned() {
        // A golden value: if this changes, every user's cache is invalidated; bump KEY_FORMAT on purpose.
        let limits = Limits::default();
        assert_eq!(key(&request(), &limits), "blake3:93bd8ffa77855c2c1dd62e7307c261866bdb13c3e4fb8461d7789365cc5344e0");
    }
}
