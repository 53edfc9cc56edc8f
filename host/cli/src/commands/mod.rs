//! One module per command, each with a clap `Args` struct and a `run` function.

pub mod cache;
pub mod digest;
pub mod drift;
pub mod extract;
pub mod impact;
pub mod plan;
pub mod plugin;
pub mod schema;
pub mod serve;
pub mod validate;
pub mod watch;

use std::path::Path;

use qpf_engine::{Engine, EngineError};

/// Loads a project as every command does: plugins declared `oci:` that the user's plugin store
/// lacks are pulled from their registry ([`plugin::oci::Fetcher`]).
///
/// # Errors
/// As [`Engine::load_with`].
pub fn load(project: &Path) -> Result<Engine, EngineError> {
    Engine::load_with(project, settings())
}

/// The engine's settings for a command-line run: the user's caches and secret, `oci:` plugins
/// fetched as the environment says.
pub fn settings() -> qpf_engine::Settings {
    qpf_engine::Settings {
        fetcher: Some(std::sync::Arc::new(plugin::oci::Fetcher::from_env())),
        ..qpf_engine::Settings::default()
    }
}

/// `--format`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Format {
    /// For people.
    Human,
    /// One JSON document on stdout.
    Json,
}
