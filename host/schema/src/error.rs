//! The one error type of the schema layer: a message at a place in a file, optionally with a quoted
//! excerpt (rustc style) and notes such as the import chain a value came through.

use std::path::PathBuf;

use serde::Serialize;

/// A problem in a schema or project file, with its position when known.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct SchemaError {
    /// The file, relative to the project root where possible.
    pub path: PathBuf,
    /// 1-based line, 0 when unknown.
    pub line: u64,
    /// 1-based column, 0 when unknown.
    pub column: u64,
    /// What is wrong, and what to do about it.
    pub message: String,
    /// The offending line with a caret under the column, when the source is known.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub excerpt: Option<String>,
    /// Further context, e.g. ``via extends `base` (fragments/base.yaml)``.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub notes: Vec<String>,
}

fn position(line: u64, column: u64) -> String {
    match (line, column) {
        (0, _) => String::new(),
        (l, 0) => format!(":{l}"),
        (l, c) => format!(":{l}:{c}"),
    }
}

impl std::fmt::Display for SchemaError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}{}: {}", self.path.display(), position(self.line, self.column), self.message)?;
        if let Some(excerpt) = &self.excerpt {
            write!(f, "\n{excerpt}")?;
        }
        for note in &self.notes {
            write!(f, "\n  = note: {note}")?;
        }
        Ok(())
    }
}

impl std::error::Error for SchemaError {}

impl SchemaError {
    /// An error about a whole file.
    pub fn file(path: impl Into<PathBuf>, message: impl Into<String>) -> Self {
        SchemaError { path: path.into(), message: message.into(), ..SchemaError::default() }
    }

    /// Adds a quoted excerpt from `sources` when the position is known.
    pub fn with_excerpt(mut self, sources: &crate::Sources) -> Self {
        if self.excerpt.is_none() {
            self.excerpt = sources.excerpt(&crate::provenance::Origin::new(&self.path, self.line, self.column));
        }
        self
    }
}
