//! The `spec` of an `Agent` schema as plain Rust types (`schemas/kinds/agent.schema.json` is the
//! authority; the host validates every schema against it before a plugin sees it).

use serde::{Deserialize, Serialize};

/// `spec` of an `Agent` schema.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct AgentSpec {
    /// What the agent does, one paragraph.
    pub description: String,
    /// Data models the agent exchanges.
    #[serde(default)]
    pub types: Vec<TypeDef>,
    /// Errors its capabilities may raise.
    #[serde(default)]
    pub errors: Vec<ErrorDef>,
    /// Operations the agent offers.
    #[serde(default)]
    pub capabilities: Vec<Capability>,
    /// Memory stores it keeps.
    #[serde(default)]
    pub memory: Vec<Memory>,
    /// Agents it may start.
    #[serde(default)]
    pub subagents: Vec<Subagent>,
    /// Anomaly types it reacts to.
    #[serde(default)]
    pub anomalies: Vec<Anomaly>,
    /// Service level objectives.
    #[serde(default)]
    pub slos: Slos,
    /// Configuration settings.
    #[serde(default)]
    pub settings: Vec<Setting>,
}

/// A named record type.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct TypeDef {
    /// Type name, used as the class name (`PascalCase` recommended).
    pub name: String,
    /// Documentation.
    #[serde(default)]
    pub description: String,
    /// The record's fields, in order.
    #[serde(default)]
    pub fields: Vec<Field>,
}

/// One field of a record type.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct Field {
    /// Field name as it appears on the wire; may be a Python keyword or contain `-`.
    pub name: String,
    /// Type expression: `string`, `integer`, `number`, `boolean`, `datetime`, `any`,
    /// `list[T]`, `map[T]` (string keys) or the name of a type of the same agent.
    #[serde(rename = "type")]
    pub ty: String,
    /// Documentation.
    #[serde(default)]
    pub description: String,
    /// Whether the field may be absent (`None`).
    #[serde(default)]
    pub optional: bool,
    /// Default value, as JSON.
    #[serde(default)]
    pub default: Option<serde_json::Value>,
    /// The only values allowed (strings or integers).
    #[serde(default, rename = "enum")]
    pub allowed: Option<Vec<serde_json::Value>>,
}

/// An error a capability may raise, and how it maps to HTTP.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct ErrorDef {
    /// Error name (`PascalCase`), also the exception class.
    pub name: String,
    /// HTTP status of the response (400–599).
    #[serde(default = "default_status")]
    pub status: u16,
    /// Documentation, also the default message.
    #[serde(default)]
    pub description: String,
    /// Whether a client may retry.
    #[serde(default)]
    pub retryable: bool,
}

fn default_status() -> u16 {
    400
}

/// An operation of the agent.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct Capability {
    /// Operation name (`snake_case`); the endpoint is `POST /<name>`.
    pub name: String,
    /// Documentation.
    #[serde(default)]
    pub description: String,
    /// Name of the input type.
    pub input: String,
    /// Name of the output type.
    pub output: String,
    /// Names of the errors (declared in `errors`) it may raise.
    #[serde(default)]
    pub errors: Vec<String>,
}

/// A memory store.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct Memory {
    /// Store name (`working`, `episodic`, ...).
    pub name: String,
    /// Durable backend: `redis`, `postgres`, `vector`, `s3` or `memory` (in-process only).
    pub backend: String,
    /// Documentation.
    #[serde(default)]
    pub description: String,
    /// Seconds a value lives after it is written (Redis keys expire); `None`: forever.
    #[serde(default)]
    pub ttl_seconds: Option<u64>,
    /// Length of the embeddings a `vector` store indexes.
    #[serde(default)]
    pub dimensions: Option<u32>,
}

/// An agent this one may start.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct Subagent {
    /// Local name of the sub-agent.
    pub name: String,
    /// Name of the agent it runs.
    pub agent: String,
    /// Documentation.
    #[serde(default)]
    pub description: String,
    /// At most this many run at once.
    #[serde(default = "default_max_instances")]
    pub max_instances: u32,
}

fn default_max_instances() -> u32 {
    1
}

/// An anomaly type and the reaction to it.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct Anomaly {
    /// Anomaly name (`snake_case`).
    pub name: String,
    /// Documentation.
    #[serde(default)]
    pub description: String,
    /// `info`, `warning` or `critical`.
    pub severity: String,
    /// `log`, `alert`, `restart`, `escalate`, `shed`, `unready`, `spawn` or `agent`.
    #[serde(default = "default_action")]
    pub action: String,
    /// For `spawn`: the sub-agent to start.
    #[serde(default)]
    pub subagent: Option<String>,
    /// For `agent`: the name of the handler agent extracted for it (default
    /// `<agent>-<anomaly>-handler`, `_` as `-`).
    #[serde(default)]
    pub agent: Option<String>,
    /// The rule that raises it from the service's own metrics, if any.
    #[serde(default)]
    pub when: Option<When>,
}

/// A rule over the service's requests on a rolling window.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct When {
    /// `latency_p99_ms`, `error_rate` or `availability`.
    pub metric: String,
    /// Raised above this value.
    #[serde(default)]
    pub above: Option<f64>,
    /// Raised below this value.
    #[serde(default)]
    pub below: Option<f64>,
    /// The window in seconds (default 60).
    #[serde(default)]
    pub window_s: Option<u32>,
    /// Requests the window needs before the rule is evaluated (default 20).
    #[serde(default)]
    pub min_requests: Option<u32>,
}

fn default_action() -> String {
    "log".to_owned()
}

/// Service level objectives.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct Slos {
    /// Availability in percent.
    #[serde(default = "default_availability")]
    pub availability: f64,
    /// 99th percentile latency in milliseconds.
    #[serde(default = "default_latency")]
    pub latency_p99_ms: u64,
    /// Share of requests that may fail (0–1).
    #[serde(default = "default_error_rate")]
    pub error_rate: f64,
}

impl Default for Slos {
    fn default() -> Self {
        Slos {
            availability: default_availability(),
            latency_p99_ms: default_latency(),
            error_rate: default_error_rate(),
        }
    }
}

fn default_availability() -> f64 {
    99.0
}

fn default_latency() -> u64 {
    1000
}

fn default_error_rate() -> f64 {
    0.01
}

/// A configuration setting.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct Setting {
    /// Setting name (`snake_case`); the environment variable is `<AGENT>_<NAME>`.
    pub name: String,
    /// `string`, `integer`, `number` or `boolean`.
    #[serde(rename = "type")]
    pub ty: String,
    /// Default value; without one the setting is required.
    #[serde(default)]
    pub default: Option<serde_json::Value>,
    /// Documentation.
    #[serde(default)]
    pub description: String,
    /// Kept out of logs and reprs (`SecretStr`).
    #[serde(default)]
    pub secret: bool,
    /// The only values allowed (strings or integers), checked when the settings load.
    #[serde(default, rename = "enum")]
    pub allowed: Option<Vec<serde_json::Value>>,
}
