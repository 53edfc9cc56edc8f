//! The service's configuration file (YAML, strict: an unknown key is an error at its line and
//! column). Tokens are stored as `blake3:` digests, never in clear.
//!
//! ```yaml
//! listen: 127.0.0.1:8080
//! data: /var/lib/qpf
//! grace-ms: 10000
//! header-timeout-ms: 10000
//! operators: [blake3:…]         # tokens that may read /metrics
//! tenants:
//!   - id: team-a
//!     tokens: [blake3:…]          # qpf digest of the bearer token
//!     plugins: [blake3:…]         # shared plugins this tenant may run, besides its own uploads
//!     limits: { fuel: 1000000000 } # ceilings over the sandbox defaults
//!     quotas: { concurrent: 4, requests-per-minute: 600, fuel-per-minute: 100000000000,
//!               max-request-bytes: 16777216, max-stored-bytes: 1073741824 }
//! ```

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

use qpf_core::Digest;
use qpf_schema::SchemaError;
use serde::Deserialize;

/// The whole file.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct ServeConfig {
    /// `ADDR:PORT` to listen on (`127.0.0.1:0` picks a free port).
    pub listen: String,
    /// The state folder: per-tenant plugin stores, caches and audit logs, and the shared compiled
    /// plugins. Relative paths are relative to the config file's folder.
    pub data: PathBuf,
    /// How long SIGTERM waits for in-flight requests before cancelling them, in milliseconds.
    #[serde(default = "default_grace_ms")]
    pub grace_ms: u64,
    /// How long a client may take to send a request's headers, in milliseconds; slower ones are
    /// disconnected.
    #[serde(default = "default_header_timeout_ms")]
    pub header_timeout_ms: u64,
    /// Digests of the operators' bearer tokens: only they may read `/metrics`, which covers every
    /// tenant.
    #[serde(default)]
    pub operators: Vec<String>,
    /// The tenants.
    pub tenants: Vec<TenantConfig>,
}

fn default_grace_ms() -> u64 {
    10_000
}

fn default_header_timeout_ms() -> u64 {
    10_000
}

/// One tenant.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct TenantConfig {
    /// Lower-case letters, digits and `-`, 1 to 63 bytes.
    pub id: String,
    /// Digests (`blake3:<hex>`) of the bearer tokens that act as this tenant.
    pub tokens: Vec<String>,
    /// Digests of plugins (uploaded by the operator's tenant or any other) this tenant may run,
    /// besides its own uploads.
    #[serde(default)]
    pub plugins: Vec<String>,
    /// Ceilings over the sandbox limits.
    #[serde(default)]
    pub limits: LimitCeilings,
    /// Quotas.
    #[serde(default)]
    pub quotas: Quotas,
}

/// Ceilings over the sandbox's default limits (each absent one keeps the default).
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct LimitCeilings {
    /// Fuel per invocation.
    pub fuel: Option<u64>,
    /// Memory per invocation, in bytes.
    pub memory_bytes: Option<u64>,
    /// Wall-clock deadline per invocation, in milliseconds.
    pub deadline_ms: Option<u64>,
    /// Files per invocation.
    pub max_files: Option<u32>,
    /// Bytes of output per invocation.
    pub max_output_bytes: Option<u64>,
}

impl LimitCeilings {
    /// The sandbox limits for this tenant: each of `base` lowered to its ceiling.
    pub fn apply(&self, base: &qpf_runtime::Limits) -> qpf_runtime::Limits {
        let unlimited = |c: Option<u64>| c.unwrap_or(u64::MAX);
        base.capped_by(&qpf_runtime::Limits {
            fuel: unlimited(self.fuel),
            memory_bytes: unlimited(self.memory_bytes),
            deadline_ms: unlimited(self.deadline_ms),
            max_files: self.max_files.unwrap_or(u32::MAX),
            max_output_bytes: unlimited(self.max_output_bytes),
            table_elements: u64::MAX,
            max_path_len: u32::MAX,
            max_log_bytes: u32::MAX,
        })
    }
}

/// What a tenant may use.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct Quotas {
    /// Requests of this tenant served at once; more wait in its queue.
    #[serde(default = "Quotas::default_concurrent")]
    pub concurrent: u32,
    /// Requests per minute (a token bucket refilled continuously); over it, 429 with `Retry-After`.
    #[serde(default = "Quotas::default_rpm")]
    pub requests_per_minute: u32,
    /// Fuel per minute across the tenant's invocations; over it, 429 with `Retry-After`.
    #[serde(default = "Quotas::default_fuel")]
    pub fuel_per_minute: u64,
    /// Largest request body, in bytes; over it, 413.
    #[serde(default = "Quotas::default_request_bytes")]
    pub max_request_bytes: u64,
    /// Bytes the tenant may keep in its plugin store; over it, 413 on upload.
    #[serde(default = "Quotas::default_stored_bytes")]
    pub max_stored_bytes: u64,
}

impl Quotas {
    fn default_concurrent() -> u32 {
        4
    }
    fn default_rpm() -> u32 {
        6_000
    }
    fn default_fuel() -> u64 {
        1 << 40
    }
    fn default_request_bytes() -> u64 {
        16 << 20
    }
    fn default_stored_bytes() -> u64 {
        1 << 30
    }
}

impl Default for Quotas {
    fn default() -> Self {
        Quotas {
            concurrent: Self::default_concurrent(),
            requests_per_minute: Self::default_rpm(),
            fuel_per_minute: Self::default_fuel(),
            max_request_bytes: Self::default_request_bytes(),
            max_stored_bytes: Self::default_stored_bytes(),
        }
    }
}

impl ServeConfig {
    /// Reads and checks the file: ids well formed and unique, tokens and plugins as digests, a
    /// token used by one tenant only, quotas above zero.
    ///
    /// # Errors
    /// A [`SchemaError`] naming the file (with line and column for YAML problems).
    pub fn load(path: &Path) -> Result<ServeConfig, SchemaError> {
        let mut config: ServeConfig = qpf_schema::yaml::read_file(path, path)?;
        let fail = |message: String| SchemaError::file(path, message);
        let mut ids = BTreeSet::new();
        let mut tokens = BTreeSet::new();
        for op in &config.operators {
            if Digest::parse(op).is_err() {
                return Err(fail(
                    "an operator token must be stored as its digest (`blake3:` and 64 hex digits; `qpf serve --new-token` prints one)".to_owned(),
                ));
            }
            if !tokens.insert(op.as_str()) {
                return Err(fail("an operator token digest is listed twice".to_owned()));
            }
        }
        for t in &config.tenants {
            let id_ok = !t.id.is_empty()
                && t.id.len() <= 63
                && t.id.chars().all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-');
            if !id_ok {
                return Err(fail(format!(
                    "tenant id {:?} must be 1 to 63 lower-case letters, digits and `-`",
                    qpf_core::text::escape(&t.id)
                )));
            }
            if !ids.insert(t.id.as_str()) {
                return Err(fail(format!("tenant id `{}` is used twice", t.id)));
            }
            if t.tokens.is_empty() {
                return Err(fail(format!("tenant `{}` has no token", t.id)));
            }
            for token in &t.tokens {
                if Digest::parse(token).is_err() {
                    return Err(fail(format!(
                        "tenant `{}`: a token must be stored as its digest (`blake3:` and 64 hex digits; `qpf serve --new-token` prints one), not in clear",
                        t.id
                    )));
                }
                if !tokens.insert(token.as_str()) {
                    return Err(fail(format!("tenant `{}`: a token digest is used by two tenants", t.id)));
                }
            }
            if let Some(p) = t.plugins.iter().find(|p| Digest::parse(p).is_err()) {
                return Err(fail(format!(
                    "tenant `{}`: plugin {:?} is not a digest (`blake3:` and 64 hex digits)",
                    t.id,
                    qpf_core::text::escape(p)
                )));
            }
            let q = &t.quotas;
            if q.concurrent == 0 || q.requests_per_minute == 0 || q.fuel_per_minute == 0 || q.max_request_bytes == 0 {
                return Err(fail(format!("tenant `{}`: quotas must be above zero", t.id)));
            }
        }
        if config.data.is_relative() {
            config.data = path.parent().unwrap_or(Path::new(".")).join(&config.data);
        }
        Ok(config)
    }
}
