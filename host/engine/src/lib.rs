//! `qpf-engine`: plans invocations from a project and its schemas, runs them in the sandbox in
//! parallel, caches them, writes their outputs atomically, and records the lock and the audit log.
//!
//! The flow, one module per stage, plain data between them:
//! [`project`] → [`qpf_schema`] → [`plan`] → [`cache`] / [`qpf_runtime`] → [`output_path`] →
//! [`writer`] → [`lock`], [`audit`], [`report`]. [`extract`] drives it. The engine prints nothing:
//! front ends read the returned [`report::Report`] and the progress events.
//!
//! # Embedding
//!
//! A service or a shard runner drives the engine without the CLI: load a project, look at the
//! plan, run it with its own event sink, and read the records. (The plugin here is the hand-written
//! component `tests/guests/wat/hello.wat`, which writes `hello.txt`.)
//!
//! ```
//! # fn main() -> Result<(), Box<dyn std::error::Error>> {
//! use std::sync::atomic::{AtomicUsize, Ordering};
//! use qpf_engine::{Engine, Event, ExtractOptions};
//!
//! // A project: one schema of kind `Note`, one entry, one pinned plugin.
//! let dir = tempfile::tempdir()?;
//! let p = dir.path();
//! let wasm = wat::parse_str(include_str!("../../../tests/guests/wat/hello.wat"))?;
//! std::fs::write(p.join("hello.wasm"), &wasm)?;
//! std::fs::create_dir_all(p.join("notes"))?;
//! std::fs::write(
//!     p.join("notes/first.yaml"),
//!     "apiVersion: example.dev/v1\nkind: Note\nmetadata: { name: first, version: 1.0.0 }\nspec: { text: hi }\n",
//! )?;
//! std::fs::write(p.join("note.schema.json"), r#"{"type": "object"}"#)?;
//! std::fs::write(p.join("map.yaml"), "entries:\n  - { id: hello, plugin: hello, input: /spec, out: \"{name}\" }\n")?;
//! std::fs::write(
//!     p.join("qpf.yaml"),
//!     format!(
//!         "version: 1\nschemas: [\"notes/*.yaml\"]\nkinds: {{ Note: note.schema.json }}\nmap: map.yaml\noutput: out\n\
//!          plugins:\n  hello: {{ path: hello.wasm, digest: \"{}\" }}\n",
//!         qpf_core::digest_of(&wasm)
//!     ),
//! )?;
//!
//! // Load and plan: no plugin runs yet.
//! let engine = Engine::load(p)?;
//! assert_eq!(engine.plan().invocations.len(), 1);
//!
//! // Run, with an event sink of our own.
//! let finished = AtomicUsize::new(0);
//! let options = ExtractOptions { jobs: 2, out: None, no_cache: false, fail_fast: false, require_hits: false, shard: None };
//! let report = engine.extract(&options, &|event| {
//!     if let Event::Finished { ok, .. } = event {
//!         assert!(ok);
//!         finished.fetch_add(1, Ordering::Relaxed);
//!     }
//! })?;
//!
//! // Read the records: the report (also written to the audit log and the lock).
//! assert_eq!(finished.load(Ordering::Relaxed), 1);
//! assert_eq!(report.summary.files_written, 1);
//! assert_eq!(report.invocations[0].files, ["first/hello.txt"]);
//! assert_eq!(std::fs::read_to_string(p.join("out/first/hello.txt"))?, "hi\n");
//! # Ok(())
//! # }
//! ```

pub mod audit;
pub mod cache;
pub mod cache_admin;
pub mod cache_key;
pub mod commit;
pub mod drift;
pub mod extract;
pub mod impact;
mod invoker;
pub mod lock;
pub mod pack_cache;
pub mod plan;
pub mod plugin_config;
pub mod plugin_store;
pub mod plugin_versions;
pub mod preflight;
pub mod project;
pub mod protect;
mod prune;
pub mod remote;
pub mod report;
mod scheduler;
pub mod secret;
pub mod shard;
pub mod snapshot;
mod spawner;
pub mod standalone;
mod stat_cache;
pub mod writer;

pub use extract::{Engine, EngineError, Event, ExtractOptions, Settings};
pub use invoker::{Call, CompilerChoice, Invoker, TIER_UP_CALLS};
/// Canonical JSON and output-path rules live in `qpf-core` (pure, fuzzed); re-exported here.
pub use qpf_core::{canonical, output_path};
