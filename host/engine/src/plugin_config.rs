//! A plugin's config schema (declared in its `info()`) and the check of an entry's config against
//! it: one rule for `qpf extract` and `qpf plugin test`.

use qpf_runtime::Plugin;
use qpf_schema::kinds::{JsonSchema, JsonSchemaError};

/// Why a plugin's config schema, or an entry's config, was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ConfigError {
    /// The plugin's `info()` declares a config schema that is not JSON.
    #[error("plugin `{plugin}` declares a config schema that is not JSON: {message}")]
    SchemaNotJson {
        /// The plugin's name.
        plugin: String,
        /// The parser's message.
        message: String,
    },
    /// The plugin's config schema is over budget or not a valid JSON Schema.
    #[error("plugin `{plugin}` declares an invalid config schema: {source}")]
    SchemaInvalid {
        /// The plugin's name.
        plugin: String,
        /// Why.
        source: JsonSchemaError,
    },
    /// The entry's config breaks the plugin's config schema.
    #[error(
        "the entry's `config` does not match what plugin `{plugin}` accepts: {}",
        violations.iter().map(|(p, m)| format!("`{}`: {m}", if p.is_empty() { "/" } else { p.as_str() })).collect::<Vec<_>>().join("; ")
    )]
    Mismatch {
        /// The plugin's name.
        plugin: String,
        /// Every violation, as (JSON Pointer, message).
        violations: Vec<(String, String)>,
    },
}

/// The compiled config schema `plugin` declares, or `None` when it accepts any config.
///
/// # Errors
/// [`ConfigError`] naming the plugin when its schema is not JSON or not a valid JSON Schema.
pub fn schema(plugin: &Plugin) -> Result<Option<JsonSchema>, ConfigError> {
    let name = plugin.name();
    let text = &plugin.info().config_schema;
    if text.trim().is_empty() {
        return Ok(None);
    }
    let value: serde_json::Value = serde_json::from_str(text)
        .map_err(|e| ConfigError::SchemaNotJson { plugin: name.to_owned(), message: e.to_string() })?;
    JsonSchema::compile(&value)
        .map(Some)
        .map_err(|source| ConfigError::SchemaInvalid { plugin: name.to_owned(), source })
}

/// Checks `config` against `schema` (from [`schema`]) of plugin `name`.
///
/// # Errors
/// [`ConfigError::Mismatch`] with every violation, each with its JSON Pointer.
pub fn check(name: &str, schema: &JsonSchema, config: &serde_json::Value) -> Result<(), ConfigError> {
    let violations = schema.errors(config);
    if violations.is_empty() {
        return Ok(());
    }
    Err(ConfigError::Mismatch { plugin: name.to_owned(), violations })
}
