//! The audit log: one JSON Lines record per invocation, appended to `.qpf/audit.jsonl`. Records
//! carry a format version and a tenant (`default` for CLI runs) so that a multi-tenant host and a
//! tamper-evident log can build on them.

use std::io::Write;
use std::path::Path;

use serde::Serialize;

/// Version of the record format.
pub const AUDIT_FORMAT: u32 = 1;

/// One invocation, as the audit log keeps it.
#[derive(Debug, Clone, Serialize)]
pub struct AuditRecord {
    /// [`AUDIT_FORMAT`].
    pub format: u32,
    /// When the run started (RFC 3339, UTC).
    pub time: String,
    /// Tenant; `default` for the CLI.
    pub tenant: String,
    /// Entry id.
    pub entry: String,
    /// Schema id.
    pub schema: String,
    /// Plugin name, version and digest.
    pub plugin: AuditPlugin,
    /// Invocation key.
    pub key: String,
    /// Digest of the canonical input.
    pub input_digest: String,
    /// Digest of the canonical config.
    pub config_digest: String,
    /// `hit` or `miss`.
    pub cache: crate::report::CacheState,
    /// `ok`, `error` or `skipped`.
    pub outcome: crate::report::Outcome,
    /// The error, when the outcome is `error`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    /// Wall time of the invocation in microseconds.
    pub duration_us: u64,
    /// Fuel consumed (for a hit: what the original run consumed).
    pub fuel: u64,
    /// Output files with their digests.
    pub outputs: Vec<AuditOutput>,
}

/// The plugin of an audit record.
#[derive(Debug, Clone, Serialize)]
pub struct AuditPlugin {
    /// Name as declared in `qpf.yaml`.
    pub name: String,
    /// Version from `info()`, when the plugin was loaded in this run.
    pub version: Option<String>,
    /// `blake3:<hex>`.
    pub digest: String,
}

/// One output of an audit record.
#[derive(Debug, Clone, Serialize)]
pub struct AuditOutput {
    /// Path under the output root.
    pub path: String,
    /// `blake3:<hex>`.
    pub digest: String,
    /// `scaffold` for a file handed to its user (written only when absent); absent for generated.
    #[serde(default, skip_serializing_if = "qpf_runtime::FileMode::is_generated")]
    pub mode: qpf_runtime::FileMode,
}

/// Appends records to the log in one write.
///
/// # Errors
/// I/O errors.
pub fn append(path: &Path, records: &[AuditRecord]) -> std::io::Result<()> {
    if records.is_empty() {
        return Ok(());
    }
    let mut buf = Vec::new();
    for r in records {
        serde_json::to_writer(&mut buf, r)?;
        buf.push(b'\n');
    }
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir)?;
    }
    let mut file = std::fs::OpenOptions::new().create(true).append(true).open(path)?;
    file.write_all(&buf)
}
