//! `qpf-engine`: plans invocations from a project and its schemas, runs them in the sandbox in
//! parallel, caches them, writes their outputs atomically, and records the lock and the audit log.
//!
//! The flow, one module per stage, plain data between them:
//! [`project`] → [`qpf_schema`] → [`plan`] → [`cache`] / [`qpf_runtime`] → [`output_path`] →
//! [`writer`] → [`lock`], [`audit`], [`report`]. [`extract`] drives it. The engine prints nothing:
//! front ends read the returned [`report::Report`] and the progress events.

pub mod audit;
pub mod cache;
pub mod cache_admin;
pub mod cache_key;
pub mod drift;
pub mod extract;
pub mod impact;
mod invoker;
pub mod lock;
pub mod plan;
pub mod plugin_config;
pub mod project;
pub mod protect;
mod prune;
pub mod report;
mod scheduler;
pub mod secret;
mod spawner;
pub mod writer;

pub use extract::{Engine, EngineError, Event, ExtractOptions};
pub use invoker::{Call, Invoker};
/// Canonical JSON and output-path rules live in `qpf-core` (pure, fuzzed); re-exported here.
pub use qpf_core::{canonical, output_path};
