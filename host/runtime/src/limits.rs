//! Sandbox limits: one plain value per invocation ([`Limits`]) and one per plugin load
//! ([`LoadLimits`]), so that a multi-tenant host can give each tenant its own policy.

use serde::{Deserialize, Serialize};

/// What one invocation may consume. Every field is part of the invocation cache key.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields, rename_all = "kebab-case")]
pub struct Limits {
    /// Deterministic CPU budget in wasmtime fuel units (roughly one per wasm instruction).
    pub fuel: u64,
    /// Maximum linear memory of the whole invocation, in bytes: every memory of every core
    /// instance of the component counts, together.
    pub memory_bytes: u64,
    /// Maximum table elements of the whole invocation, every table of every core instance together.
    pub table_elements: u64,
    /// Wall-clock backstop in milliseconds (epoch interruption); fuel is the deterministic limit.
    pub deadline_ms: u64,
    /// Maximum number of files one invocation may return.
    pub max_files: u32,
    /// Maximum total bytes of the files one invocation returns. Also the most one call between the
    /// plugin and the host may carry (plus 1 MiB for paths and records).
    pub max_output_bytes: u64,
    /// Maximum length in bytes of one output path.
    pub max_path_len: u32,
    /// Maximum bytes of log, stdout and stderr kept per invocation (the rest is dropped). Each log
    /// line also costs [`LOG_LINE_OVERHEAD`] bytes, so that empty lines are not free.
    pub max_log_bytes: u32,
}

/// What each kept log line costs against `max_log_bytes` besides its text.
pub const LOG_LINE_OVERHEAD: usize = 64;

impl Default for Limits {
    fn default() -> Self {
        Limits {
            fuel: 5_000_000_000,
            memory_bytes: 256 << 20,
            table_elements: 1 << 20,
            deadline_ms: 10_000,
            max_files: 1_000,
            max_output_bytes: 64 << 20,
            max_path_len: 255,
            max_log_bytes: 64 << 10,
        }
    }
}

impl Limits {
    /// These limits, each lowered to the same field of `ceiling` (a host's policy over what a
    /// project or a tenant asks for: less, never more).
    pub fn capped_by(&self, ceiling: &Limits) -> Limits {
        Limits {
            fuel: self.fuel.min(ceiling.fuel),
            memory_bytes: self.memory_bytes.min(ceiling.memory_bytes),
            table_elements: self.table_elements.min(ceiling.table_elements),
            deadline_ms: self.deadline_ms.min(ceiling.deadline_ms),
            max_files: self.max_files.min(ceiling.max_files),
            max_output_bytes: self.max_output_bytes.min(ceiling.max_output_bytes),
            max_path_len: self.max_path_len.min(ceiling.max_path_len),
            max_log_bytes: self.max_log_bytes.min(ceiling.max_log_bytes),
        }
    }
}

/// What loading one plugin may cost the host before any invocation limit applies: the size of the
/// component, the number of functions Cranelift must compile, and the compile time.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields, rename_all = "kebab-case")]
pub struct LoadLimits {
    /// Maximum size of a component file, in bytes.
    pub max_component_bytes: u64,
    /// Maximum number of functions defined across all core modules of a component.
    pub max_functions: u64,
    /// Maximum wall-clock time of one compilation, in milliseconds.
    pub compile_ms: u64,
}

impl LoadLimits {
    /// These limits, each lowered to the same field of `ceiling`.
    pub fn capped_by(&self, ceiling: &LoadLimits) -> LoadLimits {
        LoadLimits {
            max_component_bytes: self.max_component_bytes.min(ceiling.max_component_bytes),
            max_functions: self.max_functions.min(ceiling.max_functions),
            compile_ms: self.compile_ms.min(ceiling.compile_ms),
        }
    }
}

impl Default for LoadLimits {
    fn default() -> Self {
        // The largest reference plugins: a componentize-py component (19 MB, 13 482 functions) and a
        // jco one (13 MB, 12 669 functions); both compile in 10-13 s on two cores.
        LoadLimits { max_component_bytes: 64 << 20, max_functions: 50_000, compile_ms: 60_000 }
    }
}
