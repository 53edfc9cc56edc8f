//! Where every value of a resolved schema came from: a map from JSON Pointer to file, line, column
//! and the import/extends chain it came through, and the source texts to quote in errors.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde::Serialize;

/// The origin of one value.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Origin {
    /// The file, relative to the project root.
    pub file: PathBuf,
    /// 1-based line (0: unknown).
    pub line: u64,
    /// 1-based column (0: unknown).
    pub column: u64,
    /// How the value reached the schema, outermost first, e.g. ``extends `base` (fragments/base.yaml)``.
    pub via: Vec<String>,
}

impl Origin {
    /// An origin in a file.
    pub fn new(file: &Path, line: u64, column: u64) -> Self {
        Origin { file: file.to_owned(), line, column, via: Vec::new() }
    }
}

/// JSON Pointer → origin, for every value of one resolved document.
pub type Provenance = BTreeMap<String, Origin>;

/// Escapes one JSON Pointer segment (RFC 6901).
pub fn escape_pointer(segment: &str) -> String {
    segment.replace('~', "~0").replace('/', "~1")
}

/// The origin of the value at `pointer`, or of its nearest ancestor that has one.
pub fn locate<'a>(provenance: &'a Provenance, pointer: &str) -> Option<&'a Origin> {
    let mut p = pointer;
    loop {
        if let Some(o) = provenance.get(p) {
            return Some(o);
        }
        match p.rfind('/') {
            Some(i) => p = &p[..i],
            None => return None,
        }
    }
}

/// Re-roots a provenance map: every pointer under `from` moves under `to`, with `via` prepended.
pub fn graft(source: &Provenance, from: &str, to: &str, via: Option<&str>, into: &mut Provenance) {
    for (pointer, origin) in source.range(from.to_owned()..) {
        let rest = if pointer == from {
            ""
        } else if let Some(rest) = pointer.strip_prefix(from).filter(|r| r.starts_with('/')) {
            rest
        } else if pointer.starts_with(from) {
            continue;
        } else {
            break;
        };
        let mut origin = origin.clone();
        if let Some(via) = via {
            origin.via.insert(0, via.to_owned());
        }
        into.insert(format!("{to}{rest}"), origin);
    }
}

/// Characters of a source line shown in an excerpt.
const EXCERPT_WIDTH: usize = 120;

/// Source texts by file, for quoting lines in errors.
#[derive(Debug, Clone, Default)]
pub struct Sources {
    texts: BTreeMap<PathBuf, String>,
}

impl Sources {
    /// Remembers a file's text.
    pub fn add(&mut self, file: &Path, text: &str) {
        self.texts.insert(file.to_owned(), text.to_owned());
    }

    /// The text of a file read.
    pub fn text(&self, file: &Path) -> Option<&str> {
        self.texts.get(file).map(String::as_str)
    }

    /// Every file read (relative to the project root): schemas and the fragments they import.
    pub fn files(&self) -> impl Iterator<Item = &Path> {
        self.texts.keys().map(PathBuf::as_path)
    }

    /// A rustc-style excerpt of the origin's line with a caret under its column, or `None` when the
    /// text or position is unknown.
    pub fn excerpt(&self, origin: &Origin) -> Option<String> {
        if origin.line == 0 {
            return None;
        }
        let text = self.texts.get(&origin.file)?;
        let line = text.lines().nth(usize::try_from(origin.line - 1).ok()?)?;
        let number = origin.line.to_string();
        let pad = " ".repeat(number.len());
        let mut caret_at = usize::try_from(origin.column.saturating_sub(1)).unwrap_or(0);
        // Long lines are cut to a window around the column, marked with `…`.
        let chars: Vec<char> = line.chars().collect();
        let start = caret_at.saturating_sub(EXCERPT_WIDTH / 2).min(chars.len());
        let end = (start + EXCERPT_WIDTH).min(chars.len());
        let mut shown: String = chars[start..end].iter().collect();
        if start > 0 {
            shown.insert(0, '…');
            caret_at = caret_at - start + 1;
        }
        if end < chars.len() {
            shown.push('…');
        }
        let prefix: String = shown.chars().take(caret_at).map(|c| if c == '\t' { '\t' } else { ' ' }).collect();
        Some(format!("{pad} |\n{number} | {shown}\n{pad} | {prefix}^"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn locate_falls_back_to_the_nearest_ancestor() {
        let mut p = Provenance::new();
        p.insert("/spec".into(), Origin::new(Path::new("a.yaml"), 3, 1));
        assert_eq!(locate(&p, "/spec/types/0").map(|o| o.line), Some(3));
        assert_eq!(locate(&p, "/other"), None);
    }

    #[test]
    fn graft_moves_a_subtree_and_records_the_chain() {
        let mut src = Provenance::new();
        src.insert("/spec/a".into(), Origin::new(Path::new("base.yaml"), 5, 3));
        src.insert("/spec/ab".into(), Origin::new(Path::new("base.yaml"), 6, 3));
        let mut out = Provenance::new();
        graft(&src, "/spec/a", "/x", Some("extends `base`"), &mut out);
        assert_eq!(out.len(), 1);
        assert_eq!(out["/x"].via, vec!["extends `base`".to_owned()]);
    }

    #[test]
    fn excerpt_puts_a_caret_under_the_column() {
        let mut s = Sources::default();
        s.add(Path::new("a.yaml"), "a: 1\nb: oops\n");
        let e = s.excerpt(&Origin::new(Path::new("a.yaml"), 2, 4)).unwrap();
        assert_eq!(e, "  |\n2 | b: oops\n  |    ^");
    }

    #[test]
    fn long_lines_are_cut_around_the_column() {
        let mut s = Sources::default();
        let line = format!("{}X{}", "a".repeat(5000), "b".repeat(5000));
        s.add(Path::new("a.yaml"), &line);
        let e = s.excerpt(&Origin::new(Path::new("a.yaml"), 1, 5001)).unwrap();
        let quoted = e.lines().nth(1).unwrap();
        assert!(quoted.chars().count() < 140, "{quoted}");
        let caret = e.lines().nth(2).unwrap().chars().position(|c| c == '^').unwrap();
        assert_eq!(quoted.chars().nth(caret), Some('X'));
    }
}
