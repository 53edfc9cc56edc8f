//! A plugin's config schema (declared in its `info()`) and the check of an entry's config against
//! it: one rule for `qpf extract` and `qpf plugin test`.

use qpf_runtime::Plugin;
use qpf_schema::kinds::JsonSchema;

/// The compiled config schema `plugin` declares, or `None` when it accepts any config.
///
/// # Errors
/// A message naming the plugin when its schema is not JSON or not a valid JSON Schema.
pub fn schema(plugin: &Plugin) -> Result<Option<JsonSchema>, String> {
    let name = plugin.name();
    let text = &plugin.info().config_schema;
    if text.trim().is_empty() {
        return Ok(None);
    }
    let value: serde_json::Value = serde_json::from_str(text)
        .map_err(|e| format!("plugin `{name}` declares a config schema that is not JSON: {e}"))?;
    JsonSchema::compile(&value).map(Some).map_err(|e| format!("plugin `{name}` declares an invalid config schema: {e}"))
}

/// Checks `config` against `schema` (from [`schema`]) of plugin `name`.
///
/// # Errors
/// Every violation, each with its JSON Pointer.
pub fn check(name: &str, schema: &JsonSchema, config: &serde_json::Value) -> Result<(), String> {
    let errors = schema.errors(config);
    if errors.is_empty() {
        return Ok(());
    }
    let list: Vec<String> =
        errors.iter().map(|(p, m)| format!("`{}`: {m}", if p.is_empty() { "/" } else { p.as_str() })).collect();
    Err(format!("the entry's `config` does not match what plugin `{name}` accepts: {}", list.join("; ")))
}
