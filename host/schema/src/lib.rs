//! `qpf-schema`: from YAML files to schemas the engine can trust.
//!
//! It parses untrusted YAML with resource budgets ([`yaml`]), checks the schema envelope
//! (`apiVersion`, `kind`, `metadata {name, version, labels}`, `spec`), and collects a project's
//! schemas into a [`SchemaSet`] with unique `kind/name@version` ids. Every error names the file and,
//! where the parser knows it, the line and column. This crate has no wasmtime dependency.

mod error;
mod schema;
mod set;
pub mod yaml;

pub use error::SchemaError;
pub use schema::{Metadata, Schema, SchemaDoc};
pub use set::SchemaSet;
