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
    /// Calling `info()` failed.
    #[error("plugin `{path}`: `info()` failed: {source}")]
    Info {
        /// The plugin path.
        path: PathBuf,
        /// Why.
        source: Box<SandboxError>,
    },
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
    /// The plugin returned more data than the output limit lets the host copy.
    #[error("output limit exceeded: the plugin returned more than {limit} bytes (`limits.max-output-bytes`)")]
    OutputTooLarge {
        /// The cap.
        limit: u64,
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
}
