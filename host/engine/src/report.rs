//! The run report (`--report FILE`): what every invocation did, as JSON for CI and tools.

use qpf_runtime::Severity;
use serde::Serialize;

/// Version of the report format.
pub const REPORT_FORMAT: u32 = 1;

/// Whether an invocation was served from the invocation cache.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum CacheState {
    /// Served from the cache.
    Hit,
    /// Run in the sandbox (or not run at all).
    Miss,
}

/// How an invocation ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Outcome {
    /// It produced its files.
    Ok,
    /// It failed; see its [`ErrorReport`].
    Error,
    /// It was not run: `--fail-fast` stopped the run, or an entry it needs failed.
    Skipped,
}

/// Why an invocation failed. These are all the kinds the engine emits.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum FailureKind {
    /// The plugin returned its own `extract-error`.
    Plugin,
    /// A trap or a limit: fuel, memory, tables, deadline, output or transfer size, `exit`.
    Sandbox,
    /// A bad path, too many files or bytes, files that cannot coexist, or a file another
    /// invocation produces.
    Output,
    /// The plugin could not be loaded (read, compiled, linked, its `info()`), or does not accept
    /// the schema's kind.
    Load,
    /// The entry's config does not match the config schema the plugin declares (or that schema is
    /// refused).
    Config,
    /// I/O under the output root.
    Write,
    /// A spawn request the entry's policy refuses.
    Spawn,
    /// Not run (see [`Outcome::Skipped`]).
    Skipped,
    /// Not in the cache, and the run may not run plugins (`--require-hits`).
    #[serde(rename = "not-cached")]
    NotCached,
    /// A validator of the schema's kind found errors in it (its diagnostics say which).
    Invalid,
}

impl FailureKind {
    /// The name in reports and messages (`plugin`, `sandbox`, ...).
    pub fn as_str(self) -> &'static str {
        match self {
            FailureKind::Plugin => "plugin",
            FailureKind::Sandbox => "sandbox",
            FailureKind::Output => "output",
            FailureKind::Load => "load",
            FailureKind::Config => "config",
            FailureKind::Write => "write",
            FailureKind::Spawn => "spawn",
            FailureKind::Skipped => "skipped",
            FailureKind::NotCached => "not-cached",
            FailureKind::Invalid => "invalid",
        }
    }
}

impl std::fmt::Display for FailureKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

impl std::fmt::Display for CacheState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            CacheState::Hit => "hit",
            CacheState::Miss => "miss",
        })
    }
}

impl std::fmt::Display for Outcome {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Outcome::Ok => "ok",
            Outcome::Error => "error",
            Outcome::Skipped => "skipped",
        })
    }
}

/// A whole run.
#[derive(Debug, Clone, Serialize)]
pub struct Report {
    /// [`REPORT_FORMAT`].
    pub format: u32,
    /// Output root used.
    pub output: String,
    /// Parallel jobs used.
    pub jobs: usize,
    /// Wall time of loading the project (reading, resolving and validating the schemas, planning)
    /// in microseconds; the whole command took about `load_us + duration_us`.
    pub load_us: u64,
    /// Wall time of the run (the invocations, writing, the lock and the audit) in microseconds.
    pub duration_us: u64,
    /// Counts.
    pub summary: Summary,
    /// Every invocation, in plan order.
    pub invocations: Vec<InvocationReport>,
    /// Files the previous run generated that no invocation produces any more, removed because
    /// they still held the bytes QPF wrote (an edited one is kept, with a warning).
    pub removed: Vec<String>,
    /// What the remote cache did, when the run had one (`--remote-cache`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub remote: Option<crate::remote::RemoteSummary>,
    /// The shard this run was (`--shard I/N`) and its marker.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub shard: Option<crate::extract::ShardReport>,
    /// Problems that did not fail the run (for example a corrupted cache entry that was ignored).
    pub warnings: Vec<String>,
    /// Nothing the last complete run read or wrote had changed: the run was answered from its
    /// snapshot ([`crate::snapshot`]) without loading the project (present only when true).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub replayed: bool,
}

/// Counts of a run.
#[derive(Debug, Clone, Default, Serialize, serde::Deserialize)]
pub struct Summary {
    /// Invocations planned.
    pub invocations: usize,
    /// Served from the cache.
    pub hits: usize,
    /// Run in the sandbox.
    pub misses: usize,
    /// Failed.
    pub failed: usize,
    /// Not run: `--fail-fast` stopped the run, or an entry it needs failed.
    pub skipped: usize,
    /// Files created or replaced on disk.
    pub files_written: usize,
    /// Files already up to date.
    pub files_unchanged: usize,
    /// Files no longer produced, removed (see [`Report::removed`]).
    pub files_removed: usize,
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
    pub cache: CacheState,
    /// `ok`, `error`, or `skipped`.
    pub outcome: Outcome,
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
#[derive(Debug, Clone, Serialize, serde::Deserialize)]
pub struct DiagnosticReport {
    /// Severity.
    pub severity: Severity,
    /// The rule the plugin names (a message that starts with `[RULE] `, see [`split_rule`]).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub rule: Option<String>,
    /// The plugin's message (without its rule).
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
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub via: Vec<String>,
}

/// A failure, classified.
#[derive(Debug, Clone, Serialize)]
pub struct ErrorReport {
    /// What kind of failure.
    pub kind: FailureKind,
    /// The message.
    pub message: String,
}

/// The longest rule id a plugin may name.
pub const MAX_RULE_LEN: usize = 64;

/// A plugin names the rule a diagnostic enforces by starting its message with `[RULE] `, where
/// RULE is 1 to [`MAX_RULE_LEN`] characters of `a-z`, `0-9`, `-`, `_`, `.` and `/`, starting with a
/// letter or digit, and not in the host's own `qpf/` namespace. Returns the rule and the rest of
/// the message; anything else is a message without a rule.
pub fn split_rule(message: &str) -> (Option<&str>, &str) {
    let parsed = message.strip_prefix('[').and_then(|rest| rest.split_once("] ")).filter(|(rule, _)| {
        !rule.is_empty()
            && rule.len() <= MAX_RULE_LEN
            && rule.starts_with(|c: char| c.is_ascii_lowercase() || c.is_ascii_digit())
            && rule.chars().all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || "-_./".contains(c))
            && !rule.starts_with("qpf/")
    });
    match parsed {
        Some((rule, rest)) => (Some(rule), rest),
        None => (None, message),
    }
}

/// The start of the message of an invocation that did not run because a validator of its
/// schema failed.
pub(crate) const GATED_BY_VALIDATOR: &str = "not run: the validator";

/// The message of an invocation `--fail-fast` kept from running.
pub(crate) const STOPPED_BY_FAIL_FAST: &str = "not run: `--fail-fast` stopped the run after the first failure";

impl ErrorReport {
    /// Whether this is an invocation `--fail-fast` kept from running (rather than one whose
    /// upstream entry failed).
    pub fn stopped_by_fail_fast(&self) -> bool {
        self.kind == FailureKind::Skipped && self.message == STOPPED_BY_FAIL_FAST
    }

    /// Whether this is an invocation that did not run because a validator of its schema failed.
    pub fn gated_by_validator(&self) -> bool {
        self.kind == FailureKind::Skipped && self.message.starts_with(GATED_BY_VALIDATOR)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_rule_is_a_short_lower_case_prefix_in_brackets() {
        assert_eq!(split_rule("[agent/unknown-type] no type `x`"), (Some("agent/unknown-type"), "no type `x`"));
        assert_eq!(split_rule("[a.b_c-1] m"), (Some("a.b_c-1"), "m"));
        for plain in
            ["no rule", "[] empty", "[Upper] m", "[qpf/schema] the host's", "[a b] space", "[-a] m", "[a]no space"]
        {
            assert_eq!(split_rule(plain), (None, plain), "{plain}");
        }
        let long = format!("[{}] m", "a".repeat(MAX_RULE_LEN + 1));
        assert_eq!(split_rule(&long).0, None);
    }

    /// The names the report, the audit log and messages use are one set of strings.
    #[test]
    fn serialised_names_are_the_displayed_names() {
        let kinds = [
            FailureKind::Plugin,
            FailureKind::Sandbox,
            FailureKind::Output,
            FailureKind::Load,
            FailureKind::Config,
            FailureKind::Write,
            FailureKind::Spawn,
            FailureKind::Skipped,
            FailureKind::NotCached,
            FailureKind::Invalid,
        ];
        for kind in kinds {
            assert_eq!(serde_json::to_value(kind).ok(), Some(serde_json::Value::String(kind.to_string())));
        }
        for outcome in [Outcome::Ok, Outcome::Error, Outcome::Skipped] {
            assert_eq!(serde_json::to_value(outcome).ok(), Some(serde_json::Value::String(outcome.to_string())));
        }
        for cache in [CacheState::Hit, CacheState::Miss] {
            assert_eq!(serde_json::to_value(cache).ok(), Some(serde_json::Value::String(cache.to_string())));
        }
    }
}
