//! Kinds: each schema kind is described by a JSON Schema (draft 2020-12) that the project declares;
//! every resolved schema is validated against its kind, and each violation is reported at the file,
//! line and column the offending value came from.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use crate::provenance::{Provenance, Sources, locate};
use crate::{Schema, SchemaError};

/// The JSON Schemas of a project's kinds, compiled once.
pub struct KindRegistry {
    validators: BTreeMap<String, (PathBuf, jsonschema::Validator)>,
    /// Each kind's JSON Schema file, `blake3:<hex>` of the bytes compiled.
    digests: BTreeMap<String, String>,
}

impl std::fmt::Debug for KindRegistry {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KindRegistry").field("kinds", &self.validators.keys().collect::<Vec<_>>()).finish()
    }
}

/// Why a JSON Schema (from a plugin or a kind) was not compiled.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum JsonSchemaError {
    /// It exceeds a budget of [`crate::schema_budget`].
    #[error("over budget: {0}")]
    OverBudget(#[from] crate::schema_budget::BudgetError),
    /// It is not a valid JSON Schema (the compiler's message, cut to 1 KiB and escaped).
    #[error("{0}")]
    Invalid(String),
}

/// A compiled JSON Schema, for checking values other than schemas (e.g. a plugin's config).
pub struct JsonSchema(jsonschema::Validator);

impl std::fmt::Debug for JsonSchema {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("JsonSchema")
    }
}

impl JsonSchema {
    /// Compiles a JSON Schema (draft 2020-12) after checking it against the budgets of
    /// [`crate::schema_budget`] (it may come from a plugin).
    ///
    /// # Errors
    /// When the value is over budget or not a valid JSON Schema.
    pub fn compile(schema: &serde_json::Value) -> Result<Self, JsonSchemaError> {
        compile(schema).map(JsonSchema)
    }

    /// Every violation in `value`, as (JSON Pointer, message).
    pub fn errors(&self, value: &serde_json::Value) -> Vec<(String, String)> {
        self.0.iter_errors(value).map(|e| (e.instance_path().to_string(), e.to_string())).collect()
    }
}

/// Compiles a JSON Schema (draft 2020-12) from a JSON value, within the budgets of
/// [`crate::schema_budget`] and with the linear-time regex engine for `pattern`s.
///
/// # Errors
/// When the value is over budget or not a valid JSON Schema.
pub fn compile(schema: &serde_json::Value) -> Result<jsonschema::Validator, JsonSchemaError> {
    crate::schema_budget::check(schema)?;
    jsonschema::draft202012::options()
        .with_pattern_options(jsonschema::PatternOptions::regex().size_limit(1 << 20).dfa_size_limit(1 << 20))
        .build(schema)
        .map_err(|e| JsonSchemaError::Invalid(crate::schema_budget::shorten_message(&e.to_string())))
}

/// Largest JSON Schema file of a kind, in bytes.
pub const MAX_KIND_FILE_BYTES: u64 = 4 << 20;

/// Reads a regular file that resolves inside the project root.
fn read_inside(root: &Path, rel: &Path) -> Result<Vec<u8>, String> {
    let path = root.join(rel);
    let canonical_root = std::fs::canonicalize(root).map_err(|e| e.to_string())?;
    let canonical = std::fs::canonicalize(&path).map_err(|e| e.to_string())?;
    if !canonical.starts_with(&canonical_root) {
        return Err("it resolves outside the project folder".to_owned());
    }
    qpf_core::fs::read_regular(&canonical, MAX_KIND_FILE_BYTES).map_err(|e| e.to_string())
}

impl KindRegistry {
    /// Loads `kind → JSON Schema file` (paths relative to `root`).
    ///
    /// # Errors
    /// Every file that cannot be read, is not JSON, or is not a valid JSON Schema.
    pub fn load(root: &Path, kinds: &BTreeMap<String, PathBuf>) -> Result<KindRegistry, Vec<SchemaError>> {
        let mut validators = BTreeMap::new();
        let mut digests = BTreeMap::new();
        let mut errors = Vec::new();
        for (kind, rel) in kinds {
            let result = read_inside(root, rel)
                .map_err(|e| format!("cannot read the JSON Schema of kind `{kind}`: {e}"))
                .and_then(|bytes| {
                    digests.insert(kind.clone(), qpf_core::digest_of(&bytes));
                    serde_json::from_slice::<serde_json::Value>(&bytes)
                        .map_err(|e| format!("the JSON Schema of kind `{kind}` is not JSON: {e}"))
                })
                .and_then(|schema| {
                    compile(&schema).map_err(|e| format!("the JSON Schema of kind `{kind}` is invalid: {e}"))
                });
            match result {
                Ok(v) => {
                    validators.insert(kind.clone(), (rel.clone(), v));
                }
                Err(message) => errors.push(SchemaError::file(rel, message)),
            }
        }
        if errors.is_empty() { Ok(KindRegistry { validators, digests }) } else { Err(errors) }
    }

    /// A registry with no kinds (every schema fails validation with "undeclared kind").
    pub fn empty() -> Self {
        KindRegistry { validators: BTreeMap::new(), digests: BTreeMap::new() }
    }

    /// Each kind's JSON Schema file as it was compiled: `blake3:<hex>` of its bytes, by kind.
    pub fn digests(&self) -> &BTreeMap<String, String> {
        &self.digests
    }

    /// The declared kinds.
    pub fn kinds(&self) -> impl Iterator<Item = &str> {
        self.validators.keys().map(String::as_str)
    }

    /// Validates one resolved schema.
    ///
    /// # Errors
    /// Every violation, each at the origin of the offending value, with an excerpt and the chain it
    /// came through; or one error when the kind is not declared.
    pub fn validate(&self, schema: &Schema, sources: &Sources) -> Result<(), Vec<SchemaError>> {
        let Some((kind_file, validator)) = self.validators.get(&schema.doc.kind) else {
            let known: Vec<&str> = self.kinds().collect();
            return Err(vec![SchemaError::file(
                &schema.path,
                format!(
                    "kind `{}` has no JSON Schema; declare it under `kinds` in qpf.yaml{}",
                    schema.doc.kind,
                    crate::document::suggest(&schema.doc.kind, &known)
                ),
            )]);
        };
        let instance = schema.to_json();
        let errors: Vec<SchemaError> = validator
            .iter_errors(&instance)
            .map(|e| {
                let pointer = e.instance_path().to_string();
                located(&schema.provenance, &schema.path, &pointer, format!("{e}"), sources, kind_file)
            })
            .collect();
        if errors.is_empty() { Ok(()) } else { Err(errors) }
    }
}

/// An error about the value at `pointer`, placed at its origin.
pub fn located(
    provenance: &Provenance,
    fallback: &Path,
    pointer: &str,
    message: String,
    sources: &Sources,
    kind_file: &Path,
) -> SchemaError {
    let shown = if pointer.is_empty() { "the document".to_owned() } else { format!("`{pointer}`") };
    match locate(provenance, pointer) {
        Some(origin) => {
            let mut notes: Vec<String> = origin.via.iter().map(|v| format!("via {v}")).collect();
            notes.push(format!("checked against `{}`", kind_file.display()));
            SchemaError {
                path: origin.file.clone(),
                line: origin.line,
                column: origin.column,
                message: format!("{shown}: {message}"),
                excerpt: sources.excerpt(origin),
                notes,
            }
        }
        None => SchemaError::file(fallback, format!("{shown}: {message}")),
    }
}
