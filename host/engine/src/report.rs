//! The run report (`--report FILE`): what every invocation did, as JSON for CI and tools.

use qpf_runtime::Severity;
use serde::Serialize;

/// Version of the report format.
pub const REPORT_FORMAT: u32 = 1;

/// A whole run.
#[derive(Debug, Clone, Serialize)]
pub struct Report {
    /// [`REPORT_FORMAT`].
    pub format: u32,
    /// Output root used.
    pub output: String,
    /// Parallel jobs used.
    pub jobs: usize,
    /// Wall time of the run in microseconds.
    pub duration_us: u64,
    /// Counts.
    pub summary: Summary,
    /// Every invocation, in plan order.
    pub invocations: Vec<InvocationReport>,
    /// Problems that did not fail the run (for example a corrupted cache entry that was ignored).
    pub warnings: Vec<String>,
}

/// Counts of a run.
#[derive(Debug, Clone, Default, Serialize)]
pub struct Summary {
    /// Invocations planned.
    pub invocations: usize,
    /// Served from the cache.
    pub hits: usize,
    /// Run in the sandbox.
    pub misses: usize,
    /// Failed.
    pub failed: usize,
    /// Not run because `--fail-fast` stopped the run.
    pub skipped: usize,
    /// Files created or replaced on disk.
    pub files_written: usize,
    /// Files already up to date.
    pub files_unchanged: usize,
}

/// One invocation.
#[derive(Debug, Clone, Serialize)]
pub struct InvocationReport {
    /// Entry id.
    pub entry: String,
    /// Schema id.
    pub schema: String,
    /// Plugin name.
    pub plugin: String,
    /// Invocation key.
    pub key: String,
    /// `hit` or `miss`.
    pub cache: String,
    /// `ok`, `error`, or `skipped` (not run: `--fail-fast` stopped the run).
    pub outcome: String,
    /// Why it failed.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<ErrorReport>,
    /// Wall time in microseconds.
    pub duration_us: u64,
    /// Fuel consumed.
    pub fuel: u64,
    /// Files produced, relative to the output root.
    pub files: Vec<String>,
    /// Of those, the files this run created or replaced.
    pub written: Vec<String>,
    /// Diagnostics from the plugin.
    pub diagnostics: Vec<DiagnosticReport>,
}

/// A plugin's diagnostic, placed in the schema file when it points at a value.
#[derive(Debug, Clone, Serialize)]
pub struct DiagnosticReport {
    /// Severity.
    pub severity: Severity,
    /// The plugin's message.
    pub message: String,
    /// JSON Pointer into the invocation's input, as the plugin gave it.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub pointer: Option<String>,
    /// `file:line:column` of the value in the schema sources, when known.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub location: Option<String>,
    /// The source line with a caret, when known.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub excerpt: Option<String>,
    /// How the value reached the schema (imports, extends, `$ref`).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub via: Vec<String>,
}

/// A failure, classified.
#[derive(Debug, Clone, Serialize)]
pub struct ErrorReport {
    /// `plugin` (the plugin's own error), `sandbox` (trap or limit), `output` (bad path, too many
    /// files, conflict), `load` (the plugin could not be loaded), `write` (I/O under the output root).
    pub kind: String,
    /// The message.
    pub message: String,
}
