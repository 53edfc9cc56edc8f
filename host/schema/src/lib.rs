//! `qpf-schema`: from YAML files to schemas the engine can trust.
//!
//! The flow: [`yaml`] parses untrusted text under resource budgets into position-aware nodes;
//! [`document`] checks the envelope (`apiVersion`, `kind`, `metadata {name, version, labels}`,
//! `imports`, `extends`, `spec`); [`resolve`] applies imports, `$ref` and `extends` (with
//! [`merge`]'s rules) into plain JSON with [`provenance`]; [`kinds`] validates each result against
//! its kind's JSON Schema; [`SchemaSet`] does all of it for a project. [`diff`] classifies the
//! changes between two versions and [`migrate`] applies declarative migrations. Every error names
//! the file, line and column, with an excerpt. This crate has no wasmtime dependency.

pub mod bump;
pub mod diff;
pub mod document;
mod error;
pub mod kinds;
pub mod merge;
pub mod migrate;
pub mod node;
pub mod provenance;
pub mod resolve;
mod schema;
pub mod schema_budget;
mod set;
pub mod version_check;
pub mod yaml;

pub use error::SchemaError;
pub use kinds::KindRegistry;
pub use provenance::{Origin, Provenance, Sources};
pub use schema::{Metadata, Schema, SchemaDoc};
pub use set::{Registry, SchemaSet, Walked, find_files, find_files_excluding, walk};
