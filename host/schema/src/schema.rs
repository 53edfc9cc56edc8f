//! One schema document: the envelope QPF understands and the `spec` it passes on.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::SchemaError;

/// A schema file as written: `apiVersion`, `kind`, `metadata`, `spec`. Unknown top-level keys are errors.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct SchemaDoc {
    /// Version of the kind's format, e.g. `qpf.dev/v1`.
    pub api_version: String,
    /// The schema's type, e.g. `Agent`.
    pub kind: String,
    /// Name, version and labels.
    pub metadata: Metadata,
    /// The content; its shape is defined by the kind.
    pub spec: serde_json::Value,
}

/// `metadata` of a schema.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Metadata {
    /// Unique name within the kind: lower-case letters, digits and `-`.
    pub name: String,
    /// Semantic version of this schema, e.g. `1.2.0`.
    pub version: String,
    /// Free-form labels used by the extractor map to select schemas.
    #[serde(default)]
    pub labels: BTreeMap<String, String>,
}

/// A loaded, checked schema.
#[derive(Debug, Clone, PartialEq)]
pub struct Schema {
    /// The file it came from, relative to the project root.
    pub path: PathBuf,
    /// Its content.
    pub doc: SchemaDoc,
}

impl Schema {
    /// `kind/name@version`.
    pub fn id(&self) -> String {
        format!("{}/{}@{}", self.doc.kind, self.doc.metadata.name, self.doc.metadata.version)
    }

    /// The whole document as JSON (what JSON Pointers in the extractor map select from).
    pub fn to_json(&self) -> serde_json::Value {
        serde_json::to_value(&self.doc).unwrap_or(serde_json::Value::Null)
    }

    /// Loads and checks one schema file.
    ///
    /// # Errors
    /// A [`SchemaError`] naming `display` for unreadable files, bad YAML, unknown top-level keys,
    /// a name that is not a lower-case identifier or a version that is not semver.
    pub fn load(path: &Path, display: &Path) -> Result<Schema, SchemaError> {
        let doc: SchemaDoc = crate::yaml::read_file(path, display)?;
        let name = &doc.metadata.name;
        if name.is_empty()
            || name.len() > 63
            || !name.chars().all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-')
            || name.starts_with('-')
        {
            return Err(SchemaError::file(
                display,
                format!(
                    "`metadata.name` `{name}` must be 1-63 lower-case letters, digits or `-`, not starting with `-`"
                ),
            ));
        }
        if let Err(e) = semver::Version::parse(&doc.metadata.version) {
            return Err(SchemaError::file(
                display,
                format!("`metadata.version` `{}` is not a semantic version like `1.2.0`: {e}", doc.metadata.version),
            ));
        }
        if doc.kind.is_empty() || !doc.kind.chars().all(|c| c.is_ascii_alphanumeric()) {
            return Err(SchemaError::file(
                display,
                format!("`kind` `{}` must be a non-empty alphanumeric word like `Agent`", doc.kind),
            ));
        }
        Ok(Schema { path: display.to_owned(), doc })
    }
}
