//! YAML parsing for untrusted input: one policy for every YAML file QPF reads.
//!
//! The parser is serde-saphyr (YAML 1.2, panic-free) with a budget on events, depth, aliases,
//! anchors, documents and scalar bytes, duplicate keys rejected, YAML 1.1 booleans (`no`, `on`)
//! kept as strings, and a size cap on the file itself. See `docs/yaml.md` for why.

use std::path::Path;

use serde::de::DeserializeOwned;
use serde_saphyr::{Budget, DuplicateKeyPolicy};

use crate::SchemaError;
use crate::node::Node;

/// Largest YAML file QPF reads, in bytes.
pub const MAX_FILE_BYTES: u64 = 8 << 20;

fn budget() -> Budget {
    let mut budget = Budget::default();
    budget.max_events = 1_000_000;
    budget.max_aliases = 1_000;
    budget.max_anchors = 1_000;
    budget.max_depth = 128;
    budget.max_documents = 1;
    budget.max_nodes = 500_000;
    budget.max_total_scalar_bytes = MAX_FILE_BYTES as usize;
    budget
}

fn options() -> serde_saphyr::Options {
    serde_saphyr::options! {
        budget: Some(budget()),
        duplicate_keys: DuplicateKeyPolicy::Error,
        strict_booleans: true,
        with_snippet: false,
    }
}

fn to_error(path: &Path, e: &serde_saphyr::Error) -> SchemaError {
    let (line, column) = e.location().map(|l| (l.line(), l.column())).unwrap_or((0, 0));
    SchemaError {
        path: path.to_owned(),
        line,
        column,
        message: clean_message(&e.to_string()),
        ..SchemaError::default()
    }
}

/// Parses one YAML document into a tree of [`Node`]s that remember their positions.
///
/// # Errors
/// A [`SchemaError`] at the offending line and column.
pub fn parse_node(path: &Path, text: &str) -> Result<Node, SchemaError> {
    let text = text.strip_prefix('\u{feff}').unwrap_or(text);
    serde_saphyr::from_str_with_options(text, options()).map_err(|e| to_error(path, &e))
}

/// Parses one YAML document into `T`.
///
/// # Errors
/// A [`SchemaError`] at the offending line and column: syntax, budget exceeded, duplicate key,
/// unknown field, wrong type.
pub fn from_str<T: DeserializeOwned>(path: &Path, text: &str) -> Result<T, SchemaError> {
    let text = text.strip_prefix('\u{feff}').unwrap_or(text);
    serde_saphyr::from_str_with_options(text, options()).map_err(|e| to_error(path, &e))
}

/// Reads a YAML file's text, refusing anything but a regular file (a FIFO, device or folder),
/// files over [`MAX_FILE_BYTES`] and invalid UTF-8.
///
/// # Errors
/// A [`SchemaError`] naming `display` (the path to show the user).
pub fn read_text(path: &Path, display: &Path) -> Result<String, SchemaError> {
    let bytes = qpf_core::fs::read_regular(path, MAX_FILE_BYTES).map_err(|e| match e {
        qpf_core::fs::ReadError::TooLarge { size, limit } => {
            SchemaError::file(display, format!("file is {size} bytes, over the limit of {limit} bytes for a YAML file"))
        }
        e => SchemaError::file(display, format!("cannot read: {e}")),
    })?;
    String::from_utf8(bytes).map_err(|e| {
        SchemaError::file(
            display,
            format!("not valid UTF-8 at byte {}; save the file as UTF-8", e.utf8_error().valid_up_to()),
        )
    })
}

/// Reads and parses a YAML file into `T` (see [`read_text`] and [`from_str`]).
///
/// # Errors
/// A [`SchemaError`] naming `display` when the file cannot be read or parsed.
pub fn read_file<T: DeserializeOwned>(path: &Path, display: &Path) -> Result<T, SchemaError> {
    from_str(display, &read_text(path, display)?)
}

/// Strips a trailing ` at line L, column C` (or `column C` without the comma) that serde-saphyr adds:
/// we print the position in front instead. Anything else in the message is kept.
fn strip_position(message: &str) -> &str {
    let Some(i) = message.rfind(" at line ") else { return message };
    let tail = &message[i + " at line ".len()..];
    let mut parts = tail.splitn(2, [',', ' ']);
    let line_ok = parts.next().is_some_and(|l| !l.is_empty() && l.chars().all(|c| c.is_ascii_digit()));
    let rest = parts.next().unwrap_or("").trim_start();
    let column_ok =
        rest.strip_prefix("column ").is_some_and(|c| !c.is_empty() && c.chars().all(|ch| ch.is_ascii_digit()));
    if line_ok && column_ok { &message[..i] } else { message }
}

/// The first line of a serde-saphyr message, reworded where it speaks of the library's API.
fn clean_message(message: &str) -> String {
    let first = strip_position(message.lines().next().unwrap_or(message).trim());
    let first = first
        .replace(", set DuplicateKeyPolicy in Options if acceptable", "; each key may appear once in a mapping")
        .replace("set DuplicateKeyPolicy in Options if acceptable", "each key may appear once in a mapping");
    if first.starts_with("budget breached") {
        return format!("the YAML exceeds QPF's parsing limits ({first}); see docs/yaml.md");
    }
    first
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeMap;

    #[test]
    fn duplicate_keys_are_errors_with_position() {
        let e = from_str::<BTreeMap<String, u32>>(Path::new("a.yaml"), "a: 1\nb: 2\na: 3\n").unwrap_err();
        assert_eq!((e.line, e.path.to_str()), (3, Some("a.yaml")), "{e}");
    }

    #[test]
    fn only_a_trailing_position_is_stripped() {
        assert_eq!(strip_position("bad at line 3, column 4"), "bad");
        assert_eq!(strip_position("bad at line 3 column 4"), "bad");
        assert_eq!(
            strip_position("x at line 7, column 42 (defined at line 11, column 11) (used at line 2)"),
            "x at line 7, column 42 (defined at line 11, column 11) (used at line 2)"
        );
    }

    #[test]
    fn yaml_1_1_booleans_stay_strings() {
        let v = from_str::<BTreeMap<String, serde_json::Value>>(Path::new("a.yaml"), "country: no\n").unwrap();
        assert_eq!(v["country"], serde_json::json!("no"));
    }
}
