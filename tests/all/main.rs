//! Integration tests: the `qpf` binary and real wasm components, including hostile guests.
//!
//! They need the guests and plugins built for wasm32-wasip2 and the `qpf` binary built in the same
//! profile; `./dev test` does all of that before running them.

// Test helpers: a panic is the failure report.
#![allow(clippy::unwrap_used)]

mod abi;
mod agents;
mod architecture;
mod cli;
mod compilers;
mod drift;
mod extract;
mod hardening;
mod oci;
mod plugins;
mod reapi;
mod recovery;
mod registry;
mod remote;
mod report;
mod s3;
mod sandbox;
mod schema;
mod serve;
mod servers;
mod snapshot;
mod support;
mod templates;
mod validate;
mod watch;
