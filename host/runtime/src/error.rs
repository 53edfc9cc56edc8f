//! Why loading or running a plugin failed. Each variant names the limit or the cause, so that the
//! engine can print which entry, plugin and limit were involved.

use std::path::PathBuf;

/// Loading a plugin failed.
#[derive(Debug, thiserror::Error)]
pub enum LoadError {
    /// The file could not be read.
    #[error("cannot read plugin `{path}`: {source}")]
    Read {
        /// The plugin path.
        path: PathBuf,
        /// The I/O error.
        source: std::io::Error,
    },
    /// The file's digest differs from the pinned one.
    #[error(
        "plugin `{path}` has digest `{actual}` but the project pins `{expected}`; rebuild the plugin from the pinned source, or pin the new digest if you trust it"
    )]
    DigestMismatch {
        /// The plugin path.
        path: PathBuf,
        /// The pinned digest.
        expected: String,
        /// The file's digest.
        actual: String,
    },
    /// The file is not a valid component, or failed to compile.
    #[error("plugin `{path}` is not a valid WebAssembly component: {message}")]
    Compile {
        /// The plugin path.
        path: PathBuf,
        /// Compiler message.
        message: String,
    },
    /// The component imports something the sandbox does not grant, or does not export the world.
    #[error("plugin `{path}` cannot run in the QPF sandbox: {message}")]
    Link {
        /// The plugin path.
        path: PathBuf,
        /// Linker message.
        message: String,
    },
    /// The component is larger than `load-limits.max-component-bytes`.
    #[error(
        "plugin `{path}` is {size} bytes, over the limit of {limit} bytes (`load-limits.max-component-bytes` in qpf.yaml)"
    )]
    TooLarge {
        /// The plugin path.
        path: PathBuf,
        /// Its size.
        size: u64,
        /// The limit.
        limit: u64,
    },
    /// The component defines more functions than `load-limits.max-functions`.
    #[error(
        "plugin `{path}` defines {count} functions, over the limit of {limit} (`load-limits.max-functions` in qpf.yaml); compiling it would cost the host too much"
    )]
    TooManyFunctions {
        /// The plugin path.
        path: PathBuf,
        /// Functions found.
        count: u64,
        /// The limit.
        limit: u64,
    },
    /// Compiling the component took longer than `load-limits.compile-ms`.
    #[error("plugin `{path}` did not compile within {limit_ms} ms (`load-limits.compile-ms` in qpf.yaml)")]
    CompileTimeout {
        /// The plugin path.
        path: PathBuf,
        /// The limit.
        limit_ms: u64,
    },
    /// The component asks for more than the sandbox grants at instantiation (for example an
    /// initial memory larger than `limits.memory-bytes`).
    #[error("plugin `{path}` cannot run within the sandbox's limits: {message}")]
    OverLimits {
        /// The plugin path.
        path: PathBuf,
        /// Which limit.
        message: String,
    },
    /// `info()` returned something the host refuses (an over-long or ill-formed field).
    #[error("plugin `{path}`: `info()` returned {problem}")]
    BadInfo {
        /// The plugin path.
        path: PathBuf,
        /// What is wrong, naming the field and its budget.
        problem: crate::budgets::InfoError,
    },
    /// Calling `info()` failed.
    #[error("plugin `{path}`: `info()` failed: {source}")]
    Info {
        /// The plugin path.
        path: PathBuf,
        /// Why.
        source: Box<SandboxError>,
    },
}

impl LoadError {
    /// The plugin file the error is about.
    pub fn path(&self) -> &std::path::Path {
        match self {
            LoadError::Read { path, .. }
            | LoadError::DigestMismatch { path, .. }
            | LoadError::Compile { path, .. }
            | LoadError::Link { path, .. }
            | LoadError::TooLarge { path, .. }
            | LoadError::TooManyFunctions { path, .. }
            | LoadError::CompileTimeout { path, .. }
            | LoadError::OverLimits { path, .. }
            | LoadError::BadInfo { path, .. }
            | LoadError::Info { path, .. } => path,
        }
    }
}

/// A host-side failure of one invocation: the plugin did not return normally. (A plugin that returns
/// its own `extract-error` is not a sandbox error.)
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SandboxError {
    /// The fuel budget ran out (usually an endless loop).
    #[error(
        "fuel limit exceeded: the plugin used all {limit} units of fuel (raise `limits.fuel` if the work is legitimate)"
    )]
    OutOfFuel {
        /// The budget.
        limit: u64,
    },
    /// The plugin tried to grow its memory beyond the cap.
    #[error(
        "memory limit exceeded: the plugin tried to grow its memory to {requested} bytes, over the limit of {limit} bytes (`limits.memory-bytes`)"
    )]
    Memory {
        /// The cap.
        limit: u64,
        /// What it asked for.
        requested: u64,
    },
    /// The wall-clock deadline passed.
    #[error("deadline exceeded: the plugin ran longer than {limit_ms} ms (`limits.deadline-ms`)")]
    Deadline {
        /// The deadline.
        limit_ms: u64,
    },
    /// The plugin tried to grow its tables beyond the cap.
    #[error(
        "table limit exceeded: the plugin's tables would hold {requested} elements together, over the limit of {limit} (`limits.table-elements`)"
    )]
    Table {
        /// The cap.
        limit: u64,
        /// What it asked for, all tables together.
        requested: u64,
    },
    /// The plugin returned more data than the output limit lets the host copy.
    #[error("output limit exceeded: the plugin returned more than {limit} bytes (`limits.max-output-bytes`)")]
    OutputTooLarge {
        /// The cap.
        limit: u64,
    },
    /// One call from the plugin into the host (a log line, a write to stdout or stderr) carried
    /// more bytes than one call may.
    #[error(
        "transfer limit exceeded: the plugin passed more than {limit} bytes to the host in one call (a log line or a write to stdout/stderr; `limits.max-output-bytes` bounds every single call)"
    )]
    Transfer {
        /// The cap per call.
        limit: u64,
    },
    /// The plugin called `exit` instead of returning.
    #[error("the plugin called `exit({code})` instead of returning a response or an `extract-error`")]
    Exited {
        /// The exit code.
        code: i32,
    },
    /// The plugin trapped (panic, `unreachable`, out-of-bounds access, ...).
    #[error("the plugin crashed (wasm trap): {message}")]
    Trap {
        /// Trap description with the guest backtrace when available.
        message: String,
    },
    /// Instantiation failed in the host (for example, the instance pool is exhausted).
    #[error("could not instantiate the plugin: {message}")]
    Instantiate {
        /// Why.
        message: String,
    },
    /// The call failed in the host for a reason that is not a trap (for example, a WASI call the
    /// plugin made failed fatally).
    #[error("the plugin's call failed in the host: {message}")]
    Call {
        /// Why.
        message: String,
    },
}

/// Why a [`crate::Runtime`] could not be created.
#[derive(Debug, Clone, thiserror::Error)]
#[non_exhaustive]
pub enum RuntimeError {
    /// wasmtime refused the engine configuration.
    #[error("cannot create the wasm engine: {0}")]
    Engine(String),
    /// The sandbox's imports (WASI, the log interface) could not be linked.
    #[error("cannot link {what}: {message}")]
    Link {
        /// What was being linked.
        what: &'static str,
        /// wasmtime's message.
        message: String,
    },
    /// The epoch thread (deadlines) could not start.
    #[error("cannot start the epoch thread: {0}")]
    Ticker(String),
}
