//! One schema file before resolution: the envelope checked key by key (so that every error points
//! at the key or value at fault, with a "did you mean" for near misses), its `imports` and
//! `extends`, and its content as JSON with provenance.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde_saphyr::Spanned;

use crate::SchemaError;
use crate::node::{Node, NodeValue};
use crate::provenance::{Origin, Provenance};

/// Top-level keys of a schema document.
pub const TOP_LEVEL_KEYS: &[&str] = &["apiVersion", "kind", "metadata", "imports", "extends", "spec"];
const METADATA_KEYS: &[&str] = &["name", "version", "labels"];

/// What an import points to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ImportTarget {
    /// A file, relative to the importing file.
    Path(PathBuf),
    /// A schema of the project by name and semver range (`base-agent@^1`).
    Name {
        /// The schema's `metadata.name`.
        name: String,
        /// Versions accepted.
        range: semver::VersionReq,
    },
}

/// One `imports` entry.
#[derive(Debug, Clone)]
pub struct Import {
    /// The alias used by `extends` and `$ref`.
    pub alias: String,
    /// The target.
    pub target: ImportTarget,
    /// Where the import is written.
    pub origin: Origin,
}

/// A parsed, envelope-checked schema file.
#[derive(Debug, Clone)]
pub struct RawDocument {
    /// The file, relative to the project root.
    pub path: PathBuf,
    /// `kind`.
    pub kind: String,
    /// `metadata.name`.
    pub name: String,
    /// `metadata.version`.
    pub version: semver::Version,
    /// `imports`, in file order.
    pub imports: Vec<Import>,
    /// `extends`: import aliases, in order, each with its position.
    pub extends: Vec<(String, Origin)>,
    /// The document without `imports` and `extends`, as JSON.
    pub body: serde_json::Value,
    /// Origins of the body's values.
    pub provenance: Provenance,
}

/// "did you mean" for a misspelt key.
pub fn suggest(word: &str, candidates: &[&str]) -> String {
    candidates
        .iter()
        .map(|c| (strsim::jaro_winkler(word, c), *c))
        .filter(|(score, _)| *score > 0.8)
        .max_by(|a, b| a.0.total_cmp(&b.0))
        .map(|(_, c)| format!(" (did you mean `{c}`?)"))
        .unwrap_or_default()
}

fn at(path: &Path, line: u64, column: u64, message: String) -> SchemaError {
    SchemaError { path: path.to_owned(), line, column, message, ..SchemaError::default() }
}

fn expect_map<'a>(path: &Path, node: &'a Node, what: &str) -> Result<&'a [(Spanned<String>, Node)], SchemaError> {
    match &node.value {
        NodeValue::Map(entries) => Ok(entries),
        _ => Err(at(path, node.line, node.column, format!("{what} must be a mapping"))),
    }
}

fn expect_str<'a>(path: &Path, node: &'a Node, what: &str) -> Result<&'a str, SchemaError> {
    match &node.value {
        NodeValue::String(s) => Ok(s),
        _ => Err(at(path, node.line, node.column, format!("{what} must be a string"))),
    }
}

fn check_keys(
    path: &Path,
    entries: &[(Spanned<String>, Node)],
    allowed: &[&str],
    what: &str,
) -> Result<(), SchemaError> {
    for (k, _) in entries {
        if !allowed.contains(&k.value.as_str()) {
            return Err(at(
                path,
                k.referenced.line(),
                k.referenced.column(),
                format!(
                    "unknown {what} key `{}`{}; expected one of {}",
                    k.value,
                    suggest(&k.value, allowed),
                    allowed.iter().map(|a| format!("`{a}`")).collect::<Vec<_>>().join(", ")
                ),
            ));
        }
    }
    Ok(())
}

fn get<'a>(entries: &'a [(Spanned<String>, Node)], key: &str) -> Option<&'a Node> {
    entries.iter().find(|(k, _)| k.value == key).map(|(_, v)| v)
}

/// Parses an import reference: a path (`./x.yaml`, `../f/base.yaml`) or `name@range`.
fn parse_target(text: &str) -> Result<ImportTarget, String> {
    let looks_like_path = text.contains('/') || text.ends_with(".yaml") || text.ends_with(".yml");
    if looks_like_path {
        return Ok(ImportTarget::Path(PathBuf::from(text)));
    }
    let (name, range) = text.split_once('@').unwrap_or((text, "*"));
    let range = semver::VersionReq::parse(range)
        .map_err(|e| format!("`{text}`: `{range}` is not a semver range like `^1.2`: {e}"))?;
    if name.is_empty() {
        return Err(format!("`{text}` names no schema"));
    }
    Ok(ImportTarget::Name { name: name.to_owned(), range })
}

impl RawDocument {
    /// Checks the envelope of a parsed file and splits off `imports` and `extends`.
    ///
    /// # Errors
    /// The first problem, at its line and column.
    pub fn from_node(path: &Path, root: &Node) -> Result<RawDocument, SchemaError> {
        let entries = expect_map(path, root, "a schema document")?;
        check_keys(path, entries, TOP_LEVEL_KEYS, "top-level")?;
        for required in ["apiVersion", "kind", "metadata", "spec"] {
            if get(entries, required).is_none() {
                return Err(at(path, root.line, root.column, format!("missing `{required}`")));
            }
        }
        let kind_node = get(entries, "kind").ok_or_else(|| at(path, 1, 1, "missing `kind`".into()))?;
        let kind = expect_str(path, kind_node, "`kind`")?.to_owned();
        if kind.is_empty() || !kind.chars().all(|c| c.is_ascii_alphanumeric()) {
            return Err(at(
                path,
                kind_node.line,
                kind_node.column,
                format!("`kind` `{kind}` must be one alphanumeric word like `Agent`"),
            ));
        }
        expect_str(path, get(entries, "apiVersion").unwrap_or(kind_node), "`apiVersion`")?;
        let (name, version) = metadata(path, get(entries, "metadata").unwrap_or(root))?;
        let imports = imports(path, get(entries, "imports"))?;
        let extends = extends(path, get(entries, "extends"), &imports)?;

        let mut provenance = Provenance::new();
        let mut body = root.to_json(path, "", &mut provenance);
        if let serde_json::Value::Object(map) = &mut body {
            map.remove("imports");
            map.remove("extends");
        }
        provenance.retain(|p, _| !(p.starts_with("/imports") || p.starts_with("/extends")));
        Ok(RawDocument { path: path.to_owned(), kind, name, version, imports, extends, body, provenance })
    }

    /// `kind/name@version`.
    pub fn id(&self) -> String {
        format!("{}/{}@{}", self.kind, self.name, self.version)
    }
}

/// Labels as a map (already checked to be strings).
pub fn labels_of(body: &serde_json::Value) -> BTreeMap<String, String> {
    body.pointer("/metadata/labels")
        .and_then(|l| l.as_object())
        .map(|m| m.iter().filter_map(|(k, v)| v.as_str().map(|s| (k.clone(), s.to_owned()))).collect())
        .unwrap_or_default()
}

/// Whether `name` may be a schema's `metadata.name`: 1-63 lower-case letters, digits or `-`, not
/// starting with `-`.
///
/// # Errors
/// Why not, quoting the name (escaped).
pub fn check_name(name: &str) -> Result<(), String> {
    if name.is_empty()
        || name.len() > 63
        || name.starts_with('-')
        || !name.chars().all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-')
    {
        return Err(format!(
            "`metadata.name` `{}` must be 1-63 lower-case letters, digits or `-`, not starting with `-`",
            qpf_core::text::escape(&name.chars().take(80).collect::<String>())
        ));
    }
    Ok(())
}

/// `metadata`: its keys, a valid `name` and a semantic `version`, and string labels.
fn metadata(path: &Path, meta_node: &Node) -> Result<(String, semver::Version), SchemaError> {
    let meta = expect_map(path, meta_node, "`metadata`")?;
    check_keys(path, meta, METADATA_KEYS, "`metadata`")?;
    let name_node = get(meta, "name")
        .ok_or_else(|| at(path, meta_node.line, meta_node.column, "missing `metadata.name`".into()))?;
    let name = expect_str(path, name_node, "`metadata.name`")?.to_owned();
    if let Err(problem) = check_name(&name) {
        return Err(at(path, name_node.line, name_node.column, problem));
    }
    let version_node = get(meta, "version")
        .ok_or_else(|| at(path, meta_node.line, meta_node.column, "missing `metadata.version`".into()))?;
    let version_text = match &version_node.value {
        NodeValue::String(s) => s.clone(),
        NodeValue::Number(n) => n.to_string(),
        _ => {
            return Err(at(path, version_node.line, version_node.column, "`metadata.version` must be a string".into()));
        }
    };
    let version = semver::Version::parse(&version_text).map_err(|e| {
        at(
            path,
            version_node.line,
            version_node.column,
            format!("`metadata.version` `{version_text}` is not a semantic version like `1.2.0`: {e}"),
        )
    })?;
    if let Some(labels) = get(meta, "labels") {
        for (k, v) in expect_map(path, labels, "`metadata.labels`")? {
            expect_str(path, v, &format!("label `{}`", k.value))?;
        }
    }
    Ok((name, version))
}

/// `imports`: alias → path or `name@range`.
fn imports(path: &Path, node: Option<&Node>) -> Result<Vec<Import>, SchemaError> {
    let mut imports = Vec::new();
    if let Some(node) = node {
        for (alias, target) in expect_map(path, node, "`imports` (alias: path or name@range)")? {
            let text = expect_str(path, target, &format!("import `{}`", alias.value))?;
            let target_parsed = parse_target(text)
                .map_err(|m| at(path, target.line, target.column, format!("import `{}`: {m}", alias.value)))?;
            imports.push(Import {
                alias: alias.value.clone(),
                target: target_parsed,
                origin: Origin::new(path, target.line, target.column),
            });
        }
    }
    Ok(imports)
}

/// `extends`: one import alias or a list of them, each declared in `imports`.
fn extends(path: &Path, node: Option<&Node>, imports: &[Import]) -> Result<Vec<(String, Origin)>, SchemaError> {
    let mut extends = Vec::new();
    if let Some(node) = node {
        let items: Vec<&Node> = match &node.value {
            NodeValue::String(_) => vec![node],
            NodeValue::Seq(items) => items.iter().collect(),
            _ => {
                return Err(at(
                    path,
                    node.line,
                    node.column,
                    "`extends` must be an import alias or a list of them".into(),
                ));
            }
        };
        for item in items {
            let alias = expect_str(path, item, "an `extends` item")?;
            if !imports.iter().any(|i| i.alias == alias) {
                let aliases: Vec<&str> = imports.iter().map(|i| i.alias.as_str()).collect();
                return Err(at(
                    path,
                    item.line,
                    item.column,
                    format!("`extends` names `{alias}`, which is not an import alias{}", suggest(alias, &aliases)),
                ));
            }
            extends.push((alias.to_owned(), Origin::new(path, item.line, item.column)));
        }
    }
    Ok(extends)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn suggestions_catch_near_misses_only() {
        assert_eq!(suggest("specs", TOP_LEVEL_KEYS), " (did you mean `spec`?)");
        assert_eq!(suggest("capabilites", &["capabilities", "types"]), " (did you mean `capabilities`?)");
        assert_eq!(suggest("zzz", TOP_LEVEL_KEYS), "");
    }

    #[test]
    fn import_targets_are_paths_or_name_at_range() {
        assert_eq!(parse_target("./a.yaml"), Ok(ImportTarget::Path("./a.yaml".into())));
        assert!(matches!(parse_target("base@^1.2"), Ok(ImportTarget::Name { name, .. }) if name == "base"));
        assert!(parse_target("base@banana").is_err());
    }
}
