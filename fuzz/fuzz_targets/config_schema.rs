//! `qpf_schema::schema_budget::check` and `qpf_schema::kinds::JsonSchema`: a schema within the
//! budget compiles (or is refused) and evaluates without a panic, within the timeout
//! (`-timeout=10`). Input: `<schema JSON> NUL <instance JSON>`.
#![no_main]

use libfuzzer_sys::fuzz_target;
use qpf_schema::kinds::JsonSchema;
use serde_json::{Value, json};

fuzz_target!(|data: &[u8]| {
    let (schema, instance) = match data.iter().position(|&b| b == 0) {
        Some(i) => (&data[..i], Some(&data[i + 1..])),
        None => (data, None),
    };
    let Ok(schema) = serde_json::from_slice::<Value>(schema) else { return };
    if qpf_schema::schema_budget::check(&schema).is_err() {
        return;
    }
    let compiled = match JsonSchema::compile(&schema) {
        Ok(c) => c,
        Err(e) => {
            assert!(!e.starts_with("over budget"), "the budget passed, compile says {e}");
            return;
        }
    };
    if let Some(Ok(instance)) = instance.map(serde_json::from_slice::<Value>) {
        let _ = compiled.errors(&instance);
    }
    for fixed in [json!(null), json!({}), json!([]), json!("x"), json!(1)] {
        let _ = compiled.errors(&fixed);
    }
});
