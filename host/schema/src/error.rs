//! The one error type of the schema layer: a message at a place in a file.

use std::path::PathBuf;

/// A problem in a schema or project file, with its position when known.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{}{}: {message}", path.display(), position(*line, *column))]
pub struct SchemaError {
    /// The file, relative to the project root where possible.
    pub path: PathBuf,
    /// 1-based line, 0 when unknown.
    pub line: u64,
    /// 1-based column, 0 when unknown.
    pub column: u64,
    /// What is wrong, and what to do about it.
    pub message: String,
}

fn position(line: u64, column: u64) -> String {
    match (line, column) {
        (0, _) => String::new(),
        (l, 0) => format!(":{l}"),
        (l, c) => format!(":{l}:{c}"),
    }
}

impl SchemaError {
    /// An error about a whole file.
    pub fn file(path: impl Into<PathBuf>, message: impl Into<String>) -> Self {
        SchemaError { path: path.into(), line: 0, column: 0, message: message.into() }
    }
}
