//! Composition: `imports` (by path or `name@range`), `$ref` (a JSON Pointer into an import) and
//! `extends` (deep merge of bases, see [`crate::merge`]), with cycle detection, a depth limit and
//! confinement to the project root. The result is plain JSON with provenance.

use std::collections::BTreeMap;
use std::path::{Component, Path, PathBuf};

use serde_json::Value;

use crate::SchemaError;
use crate::document::{ImportTarget, RawDocument};
use crate::merge::{Located, merge};
use crate::provenance::{Origin, Provenance, Sources, graft};

/// How deep imports may nest.
pub const MAX_DEPTH: usize = 16;

/// A resolved document: plain JSON and where each value came from.
#[derive(Debug, Clone)]
pub struct Resolved {
    /// The whole document (`apiVersion`, `kind`, `metadata`, `spec`), without `imports`/`extends`.
    pub body: Value,
    /// JSON Pointer → origin.
    pub provenance: Provenance,
    /// Every file it imports, directly or not, sorted.
    pub depends_on: Vec<PathBuf>,
}

/// Resolves documents against each other and against files they import.
pub struct Resolver<'a> {
    root: PathBuf,
    /// The project's documents by path and by name: a lookup per import or per document must not
    /// scan them all (20 000 schemas made planning quadratic: 11 s).
    by_path: std::collections::HashMap<&'a Path, &'a RawDocument>,
    by_name: BTreeMap<&'a str, Vec<&'a RawDocument>>,
    /// Documents of the registry folders, by name: candidates of a `name@range` import no project
    /// document answers (their paths are absolute).
    registry: BTreeMap<&'a str, Vec<&'a RawDocument>>,
    /// The version the lock holds for a registry name: kept while it exists and matches the range.
    locked: BTreeMap<String, semver::Version>,
    /// What each registry name resolved to in this run.
    picked: BTreeMap<String, (semver::Version, PathBuf)>,
    /// Imports written as a path that reached their file through a symbolic link: the path as
    /// written (relative to the root), which names a different file once the link is re-pointed.
    linked: std::collections::BTreeSet<PathBuf>,
    sources: &'a mut Sources,
    loaded: BTreeMap<PathBuf, RawDocument>,
    done: BTreeMap<PathBuf, Resolved>,
    stack: Vec<PathBuf>,
}

fn err_at(origin: &Origin, message: String) -> SchemaError {
    SchemaError {
        path: origin.file.clone(),
        line: origin.line,
        column: origin.column,
        message,
        ..SchemaError::default()
    }
}

/// `a/b/../c` → `a/c`, without touching the file system; `None` if it climbs above its start.
fn normalise(path: &Path) -> Option<PathBuf> {
    let mut out = PathBuf::new();
    for c in path.components() {
        match c {
            Component::CurDir => {}
            Component::ParentDir => {
                if !out.pop() {
                    return None;
                }
            }
            Component::Normal(s) => out.push(s),
            Component::RootDir | Component::Prefix(_) => return None,
        }
    }
    Some(out)
}

impl<'a> Resolver<'a> {
    /// A resolver for the project at `root` (canonical path) whose schema files are `project`.
    pub fn new(root: &Path, project: &'a [RawDocument], sources: &'a mut Sources) -> Self {
        Self::with_registry(root, project, &[], BTreeMap::new(), sources)
    }

    /// [`Resolver::new`], with the documents of registry folders (absolute paths) that answer
    /// `name@range` imports of names no project document has, preferring the `locked` versions.
    pub fn with_registry(
        root: &Path,
        project: &'a [RawDocument],
        registry: &'a [RawDocument],
        locked: BTreeMap<String, semver::Version>,
        sources: &'a mut Sources,
    ) -> Self {
        let mut by_path = std::collections::HashMap::with_capacity(project.len() + registry.len());
        let mut by_name: BTreeMap<&str, Vec<&RawDocument>> = BTreeMap::new();
        for d in project {
            // The first of two documents at one path wins, as the linear search did.
            by_path.entry(d.path.as_path()).or_insert(d);
            by_name.entry(d.name.as_str()).or_default().push(d);
        }
        let mut by_registry_name: BTreeMap<&str, Vec<&RawDocument>> = BTreeMap::new();
        for d in registry {
            by_path.entry(d.path.as_path()).or_insert(d);
            by_registry_name.entry(d.name.as_str()).or_default().push(d);
        }
        Resolver {
            root: root.to_owned(),
            by_path,
            by_name,
            registry: by_registry_name,
            locked,
            picked: BTreeMap::new(),
            linked: std::collections::BTreeSet::new(),
            sources,
            loaded: BTreeMap::new(),
            done: BTreeMap::new(),
            stack: Vec::new(),
        }
    }

    /// Makes a document that is not one of the project's files (a template) resolvable by its
    /// path, as an imported file would be.
    pub fn preload(&mut self, doc: RawDocument, text: &str) {
        if self.find(&doc.path).is_none() {
            self.sources.add(&doc.path, text);
            self.loaded.insert(doc.path.clone(), doc);
        }
    }

    /// Import paths that went through a symbolic link, as written (relative to the root).
    pub fn linked_imports(&self) -> &std::collections::BTreeSet<PathBuf> {
        &self.linked
    }

    /// What each registry name resolved to (version and file), for the lock.
    pub fn registry_picks(&self) -> &BTreeMap<String, (semver::Version, PathBuf)> {
        &self.picked
    }

    fn find(&self, path: &Path) -> Option<&RawDocument> {
        self.by_path.get(path).copied().or_else(|| self.loaded.get(path))
    }

    /// Resolves the document at `path` (relative to the root; a project file or an already loaded one).
    ///
    /// # Errors
    /// Unknown imports, cycles (printing the whole cycle), too deep nesting, imports outside the
    /// project, bad `$ref`s and malformed merge directives.
    pub fn resolve(&mut self, path: &Path) -> Result<Resolved, SchemaError> {
        if let Some(done) = self.done.get(path) {
            return Ok(done.clone());
        }
        let doc = self.find(path).cloned().ok_or_else(|| SchemaError::file(path, "not loaded"))?;
        if let Some(start) = self.stack.iter().position(|p| p == path) {
            let mut cycle: Vec<String> = self.stack[start..].iter().map(|p| p.display().to_string()).collect();
            cycle.push(path.display().to_string());
            return Err(SchemaError::file(
                &self.stack[self.stack.len() - 1],
                format!("import cycle: {}", cycle.join(" → ")),
            ));
        }
        if self.stack.len() >= MAX_DEPTH {
            let chain: Vec<String> = self.stack.iter().map(|p| p.display().to_string()).collect();
            return Err(SchemaError::file(
                path,
                format!("imports nest deeper than {MAX_DEPTH} levels: {} → {}", chain.join(" → "), path.display()),
            ));
        }
        self.stack.push(path.to_owned());
        let result = self.resolve_doc(&doc);
        self.stack.pop();
        let resolved = result?;
        // Kept for the documents that import it (a fragment is resolved once however many
        // schemas import it); a schema resolved for itself is not kept twice (at 20,000 schemas
        // the copies were a third of the memory the project's load peaked at).
        if !self.stack.is_empty() {
            self.done.insert(path.to_owned(), resolved.clone());
        }
        Ok(resolved)
    }

    fn import_path(
        &mut self,
        doc: &RawDocument,
        target: &ImportTarget,
        origin: &Origin,
        alias: &str,
    ) -> Result<PathBuf, SchemaError> {
        match target {
            ImportTarget::Path(rel) if doc.path.is_absolute() => Err(err_at(
                origin,
                format!(
                    "import `{alias}`: `{}` is a path, and a registry fragment imports by `name@range` only",
                    rel.display()
                ),
            )),
            ImportTarget::Path(rel) => {
                let joined = doc.path.parent().unwrap_or(Path::new("")).join(rel);
                let outside = || {
                    err_at(
                        origin,
                        format!(
                            "import `{alias}`: `{}` is outside the project; imports must stay under the project folder",
                            rel.display()
                        ),
                    )
                };
                let normal = normalise(&joined).ok_or_else(outside)?;
                let absolute = self.root.join(&normal);
                let canonical = std::fs::canonicalize(&absolute).map_err(|e| {
                    err_at(origin, format!("import `{alias}`: cannot open `{}`: {e}", normal.display()))
                })?;
                let inside = canonical.strip_prefix(&self.root).map_err(|_| outside())?.to_owned();
                if inside != normal {
                    self.linked.insert(normal.clone());
                }
                if self.find(&inside).is_none() {
                    let (raw, text) = load_document(&canonical, &inside)?;
                    self.sources.add(&inside, &text);
                    self.loaded.insert(inside.clone(), raw);
                }
                Ok(inside)
            }
            ImportTarget::Name { name, range } => {
                // The project's documents first; a name none of them has, from the registries.
                let in_project = self.by_name.get(name.as_str()).filter(|d| !d.is_empty());
                let from_registry = in_project.is_none();
                let same_name: &[&RawDocument] =
                    in_project.or_else(|| self.registry.get(name.as_str())).map_or(&[], Vec::as_slice);
                let candidates: Vec<&RawDocument> =
                    same_name.iter().copied().filter(|d| range.matches(&d.version)).collect();
                // A registry name keeps its locked version while that still exists and matches.
                let locked = self.locked.get(name.as_str()).filter(|_| from_registry);
                let kept = locked.and_then(|v| candidates.iter().find(|d| &d.version == v));
                let best =
                    kept.or_else(|| candidates.iter().max_by(|a, b| a.version.cmp(&b.version))).ok_or_else(|| {
                        let known: Vec<String> = same_name.iter().map(|d| d.version.to_string()).collect();
                        err_at(
                            origin,
                            format!(
                                "import `{alias}`: no schema `{name}` matches `{range}`{}",
                                if known.is_empty() {
                                    String::new()
                                } else {
                                    format!(" (versions found: {})", known.join(", "))
                                }
                            ),
                        )
                    })?;
                if candidates.iter().any(|c| c.kind != best.kind && c.version == best.version) {
                    return Err(err_at(
                        origin,
                        format!("import `{alias}`: `{name}` is ambiguous: more than one kind has that name"),
                    ));
                }
                let path = best.path.clone();
                if from_registry {
                    let version = best.version.clone();
                    match self.picked.get(name.as_str()) {
                        Some((v, p)) if (v, p) != (&version, &path) => {
                            return Err(err_at(
                                origin,
                                format!(
                                    "import `{alias}`: registry fragment `{name}` is imported at {version} here and at {v} elsewhere in the project; a name resolves to one version per project"
                                ),
                            ));
                        }
                        _ => {
                            self.picked.insert(name.clone(), (version, path.clone()));
                        }
                    }
                }
                Ok(path)
            }
        }
    }

    fn resolve_doc(&mut self, doc: &RawDocument) -> Result<Resolved, SchemaError> {
        let mut imports: BTreeMap<String, (PathBuf, Resolved)> = BTreeMap::new();
        let mut depends_on = std::collections::BTreeSet::new();
        for import in &doc.imports {
            let path = self.import_path(doc, &import.target, &import.origin, &import.alias)?;
            // A cycle found below is reported at the import that closes it.
            let resolved = self.resolve(&path).map_err(|e| {
                if e.line == 0 && e.message.starts_with("import cycle") { err_at(&import.origin, e.message) } else { e }
            })?;
            depends_on.insert(path.clone());
            depends_on.extend(resolved.depends_on.iter().cloned());
            imports.insert(import.alias.clone(), (path, resolved));
        }
        let depends_on: Vec<PathBuf> = depends_on.into_iter().collect();
        // `$ref`s first, so that bases and the document itself are plain JSON.
        let mut body = doc.body.clone();
        let mut provenance = doc.provenance.clone();
        replace_refs(&mut body, "", &doc.provenance, &mut provenance, &imports, &doc.path)?;

        if doc.extends.is_empty() {
            // Directives in a document without bases act on empty lists.
            if body.get("spec").is_some() {
                merge_own_spec(&mut body, &mut provenance, None, &doc.path)?;
            }
            return Ok(Resolved { body, provenance, depends_on });
        }
        let mut acc: Option<(Value, Provenance)> = None;
        for (alias, origin) in &doc.extends {
            let (path, base) = &imports[alias];
            let Some(spec) = base.body.get("spec") else {
                return Err(err_at(
                    origin,
                    format!("`extends` `{alias}`: `{}` has no `spec` to extend", path.display()),
                ));
            };
            let via = format!("extends `{alias}` ({})", path.display());
            let over = Located { value: spec, pointer: "/spec", provenance: &base.provenance, via: Some(&via) };
            let mut out = Provenance::new();
            let merged = match &acc {
                None => merge(None, over, "/spec", &mut out),
                Some((value, prov)) => merge(
                    Some(Located { value, pointer: "/spec", provenance: prov, via: None }),
                    over,
                    "/spec",
                    &mut out,
                ),
            }
            .map_err(|m| err_at(origin, m.message))?;
            acc = Some((merged, out));
        }
        merge_own_spec(&mut body, &mut provenance, acc, &doc.path)?;
        Ok(Resolved { body, provenance, depends_on })
    }
}

/// Merges the document's own `spec` over the merged bases (or over nothing, which still applies its
/// list directives), and puts the result and its provenance in place.
fn merge_own_spec(
    body: &mut Value,
    provenance: &mut Provenance,
    base: Option<(Value, Provenance)>,
    file: &Path,
) -> Result<(), SchemaError> {
    let own_spec = body.get("spec").cloned().unwrap_or(Value::Null);
    let mut out = Provenance::new();
    let over = Located { value: &own_spec, pointer: "/spec", provenance, via: None };
    let merged = match &base {
        None => merge(None, over, "/spec", &mut out),
        Some((value, prov)) => {
            merge(Some(Located { value, pointer: "/spec", provenance: prov, via: None }), over, "/spec", &mut out)
        }
    }
    .map_err(|m| {
        let origin =
            crate::provenance::locate(provenance, &m.pointer).cloned().unwrap_or_else(|| Origin::new(file, 0, 0));
        err_at(&origin, m.message)
    })?;
    provenance.retain(|p, _| !(p == "/spec" || p.starts_with("/spec/")));
    provenance.extend(out);
    if let Value::Object(map) = body {
        map.insert("spec".to_owned(), merged);
    }
    Ok(())
}

/// Replaces every `{$ref: "alias#/pointer", ...}` in `value` by the referenced value, with sibling
/// keys merged over it.
fn replace_refs(
    value: &mut Value,
    pointer: &str,
    own: &Provenance,
    out: &mut Provenance,
    imports: &BTreeMap<String, (PathBuf, Resolved)>,
    file: &Path,
) -> Result<(), SchemaError> {
    let here = || crate::provenance::locate(own, pointer).cloned().unwrap_or_else(|| Origin::new(file, 0, 0));
    match value {
        Value::Object(map) => {
            if let Some(reference) = map.get("$ref") {
                let reference = reference
                    .as_str()
                    .ok_or_else(|| err_at(&here(), "`$ref` must be a string like `alias#/spec/types/0`".into()))?;
                let (alias, target) = reference.split_once('#').unwrap_or((reference, ""));
                let (path, resolved) = imports.get(alias).ok_or_else(|| {
                    let aliases: Vec<&str> = imports.keys().map(String::as_str).collect();
                    err_at(
                        &here(),
                        format!(
                            "`$ref` `{reference}`: `{alias}` is not an import alias{}",
                            crate::document::suggest(alias, &aliases)
                        ),
                    )
                })?;
                let found = resolved.body.pointer(target).ok_or_else(|| {
                    err_at(&here(), format!("`$ref` `{reference}`: `{target}` selects nothing in `{}`", path.display()))
                })?;
                let mut siblings = map.clone();
                siblings.remove("$ref");
                if siblings.values().any(contains_ref) {
                    return Err(err_at(
                        &here(),
                        format!("`$ref` `{reference}`: keys beside a `$ref` may not contain another `$ref`"),
                    ));
                }
                let via = format!("$ref `{reference}` ({})", path.display());
                out.retain(|p, _| !(p == pointer || p.starts_with(&format!("{pointer}/"))));
                let siblings = Value::Object(siblings);
                let base = Located { value: found, pointer: target, provenance: &resolved.provenance, via: Some(&via) };
                *value = if siblings.as_object().is_some_and(|m| m.is_empty()) {
                    graft(&resolved.provenance, target, pointer, Some(&via), out);
                    found.clone()
                } else {
                    merge(Some(base), Located { value: &siblings, pointer, provenance: own, via: None }, pointer, out)
                        .map_err(|m| err_at(&here(), m.message))?
                };
                return Ok(());
            }
            for (k, v) in map.iter_mut() {
                let child = format!("{pointer}/{}", crate::provenance::escape_pointer(k));
                replace_refs(v, &child, own, out, imports, file)?;
            }
        }
        Value::Array(items) => {
            for (i, v) in items.iter_mut().enumerate() {
                replace_refs(v, &format!("{pointer}/{i}"), own, out, imports, file)?;
            }
        }
        _ => {}
    }
    Ok(())
}

fn contains_ref(v: &Value) -> bool {
    match v {
        Value::Object(m) => m.contains_key("$ref") || m.values().any(contains_ref),
        Value::Array(items) => items.iter().any(contains_ref),
        _ => false,
    }
}

/// Reads and parses one schema file (`absolute` on disk, `display` relative to the root).
///
/// # Errors
/// Unreadable, too large, not UTF-8, bad YAML, or a bad envelope.
pub fn load_document(absolute: &Path, display: &Path) -> Result<(RawDocument, String), SchemaError> {
    let text = crate::yaml::read_text(absolute, display)?;
    let node = crate::yaml::parse_node(display, &text)?;
    Ok((RawDocument::from_node(display, &node)?, text))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn normalise_refuses_to_climb_above_the_start() {
        assert_eq!(normalise(Path::new("a/./b/../c")), Some(PathBuf::from("a/c")));
        assert_eq!(normalise(Path::new("a/../../etc/passwd")), None);
        assert_eq!(normalise(Path::new("/etc/passwd")), None);
    }
}
