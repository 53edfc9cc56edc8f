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

/// `--format`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Format {
    /// For people.
    Human,
    /// One JSON document on stdout.
    Json,
}
