//! Plain data at the runtime's boundary, mirroring the WIT records but free of wasmtime types, so
//! that the engine (and its tests) never see generated bindings.

use serde::{Deserialize, Serialize};

use crate::LogLine;

/// What a plugin says about itself (`plugin-info`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PluginInfo {
    /// The plugin's name.
    pub name: String,
    /// The plugin's version.
    pub version: String,
    /// One sentence on what it generates.
    pub description: String,
    /// Accepted kinds; empty accepts all.
    pub kinds: Vec<String>,
    /// JSON Schema of its config, or empty.
    pub config_schema: String,
}

/// `kind/name@version` of a schema.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SchemaId {
    /// Kind.
    pub kind: String,
    /// `metadata.name`.
    pub name: String,
    /// `metadata.version`.
    pub version: String,
}

impl std::fmt::Display for SchemaId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}/{}@{}", self.kind, self.name, self.version)
    }
}

/// One invocation's request.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Request {
    /// Extractor-map entry id.
    pub entry: String,
    /// The schema read.
    pub schema: SchemaId,
    /// Selected input, canonical JSON.
    pub input: String,
    /// Config, canonical JSON.
    pub config: String,
    /// Context, JSON.
    pub context: String,
}

/// Severity of a diagnostic.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Severity {
    /// Error.
    Error,
    /// Warning.
    Warning,
    /// Info.
    Info,
}

/// A plugin's message about its input.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Diagnostic {
    /// Severity.
    pub severity: Severity,
    /// Message.
    pub message: String,
    /// JSON Pointer into the input.
    pub pointer: Option<String>,
}

/// Who owns an output file once it is written (`file-mode`, new in contract 0.2.0).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum FileMode {
    /// QPF's: rewritten, drift-checked, restored and pruned. Every file of a 0.1.0 plugin.
    #[default]
    Generated,
    /// The user's: written only when absent, then never touched again.
    Scaffold,
}

impl FileMode {
    /// Whether this is [`FileMode::Generated`] (for `skip_serializing_if`).
    pub fn is_generated(&self) -> bool {
        *self == FileMode::Generated
    }
}

/// One file a plugin returned (not yet checked: the path is untrusted).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OutputFile {
    /// Path as the plugin gave it.
    pub path: String,
    /// Contents.
    pub contents: Vec<u8>,
    /// Who owns it once written.
    pub mode: FileMode,
}

/// A plugin's request for a further invocation.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SpawnRequest {
    /// Plugin name.
    pub plugin: String,
    /// Input JSON.
    pub input: String,
    /// Config JSON.
    pub config: String,
}

/// A successful invocation's output.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Response {
    /// Files.
    pub files: Vec<OutputFile>,
    /// Diagnostics.
    pub diagnostics: Vec<Diagnostic>,
    /// Spawn requests.
    pub spawns: Vec<SpawnRequest>,
}

/// The plugin's own error (`extract-error`): the plugin ran to completion and said no.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ExtractError {
    /// Message.
    pub message: String,
    /// Details.
    pub diagnostics: Vec<Diagnostic>,
}

/// Everything one sandboxed call produced.
#[derive(Debug, Clone)]
pub struct Invocation {
    /// The plugin's answer: its response or its own error.
    pub result: Result<Response, ExtractError>,
    /// Fuel consumed by the call (deterministic for a given plugin and request).
    pub fuel_consumed: u64,
    /// Log lines, stdout and stderr, bounded by `Limits::max_log_bytes`.
    pub logs: Vec<LogLine>,
}
