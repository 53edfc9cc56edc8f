//! `qpf-runtime`: everything that touches wasmtime.
//!
//! One [`Runtime`] owns one wasmtime `Engine` (component model, fuel, epochs, pooling allocator
//! where the machine allows it) and a linker that offers a plugin exactly two things: the
//! `qpf:extractor/log` import and a WASI p2 context with no preopened directories, no environment,
//! no arguments, no sockets, fixed clocks and randomness seeded per invocation from its request. A [`Plugin`] is a compiled
//! component with its `InstancePre`; each [`Runtime::invoke`] runs in a fresh `Store` under the
//! [`Limits`] it is given, so invocations share nothing.
//!
//! The engine crate decides *what* to run; this crate only knows *how* to run one invocation
//! safely and says precisely why it failed ([`SandboxError`]).

mod bindings;
pub mod budgets;
mod compiled_cache;
mod error;
mod limits;
mod log;
mod log_sink;
mod plugin;
mod random;
mod runtime;
mod types;

pub use error::{LoadError, RuntimeError, SandboxError};
pub use limits::{LOG_LINE_OVERHEAD, Limits, LoadLimits};
pub use log::{LogLevel, LogLine};
pub use plugin::{BUILD_WITHOUT_IMPORTS, Plugin, SUPPORTED_ABI_VERSIONS, is_granted};
pub use random::Seed;
pub use runtime::{CompiledCacheOptions, Compiler, DEFAULT_COMPILED_CACHE_MAX, Inspection, Runtime, RuntimeOptions};
pub use types::{
    Diagnostic, ExtractError, FileMode, Invocation, OutputFile, PluginInfo, Request, Response, SchemaId, Severity,
    SpawnRequest,
};

/// The newest WIT package version this host implements (`wit/0.2.0`); it runs every version in
/// [`SUPPORTED_ABI_VERSIONS`].
pub const ABI_VERSION: &str = "0.2.0";
