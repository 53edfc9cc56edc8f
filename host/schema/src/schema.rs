//! A resolved schema: the envelope QPF understands, the `spec` it passes on, and where every value
//! came from.

use std::collections::BTreeMap;
use std::path::PathBuf;

use serde::{Deserialize, Serialize};

use crate::provenance::Provenance;

/// A resolved schema document: `apiVersion`, `kind`, `metadata`, `spec` (imports and extends applied).
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

/// A loaded, resolved and validated schema.
#[derive(Debug, Clone, PartialEq)]
pub struct Schema {
    /// The file it came from, relative to the project root.
    pub path: PathBuf,
    /// Its resolved content.
    pub doc: SchemaDoc,
    /// Where each value came from (JSON Pointer into [`Schema::to_json`] → origin).
    pub provenance: Provenance,
    /// Files this schema imports, directly or not (relative to the project root), sorted.
    pub depends_on: Vec<PathBuf>,
}

impl Schema {
    /// `kind/name@version`.
    pub fn id(&self) -> String {
        format!("{}/{}@{}", self.doc.kind, self.doc.metadata.name, self.doc.metadata.version)
    }

    /// The whole resolved document as JSON (what JSON Pointers in the extractor map select from).
    pub fn to_json(&self) -> serde_json::Value {
        serde_json::to_value(&self.doc).unwrap_or(serde_json::Value::Null)
    }
}
