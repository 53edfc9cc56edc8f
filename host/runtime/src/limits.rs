//! Sandbox limits: one plain value per invocation, so that a later multi-tenant host can give each
//! tenant its own policy.

use serde::{Deserialize, Serialize};

/// What one invocation may consume. Every field is part of the invocation cache key.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields, rename_all = "kebab-case")]
pub struct Limits {
    /// Deterministic CPU budget in wasmtime fuel units (roughly one per wasm instruction).
    pub fuel: u64,
    /// Maximum linear memory of the plugin instance, in bytes.
    pub memory_bytes: u64,
    /// Wall-clock backstop in milliseconds (epoch interruption); fuel is the deterministic limit.
    pub deadline_ms: u64,
    /// Maximum number of files one invocation may return.
    pub max_files: u32,
    /// Maximum total bytes of the files one invocation returns.
    pub max_output_bytes: u64,
    /// Maximum length in bytes of one output path.
    pub max_path_len: u32,
    /// Maximum bytes of log, stdout and stderr kept per invocation (the rest is dropped).
    pub max_log_bytes: u32,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            fuel: 5_000_000_000,
            memory_bytes: 256 << 20,
            deadline_ms: 10_000,
            max_files: 1_000,
            max_output_bytes: 64 << 20,
            max_path_len: 255,
            max_log_bytes: 64 << 10,
        }
    }
}
