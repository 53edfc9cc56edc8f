//! A project's schemas: found by glob under the project root, parsed, resolved against each other,
//! validated against their kinds, and indexed by id. The result does not depend on the order in
//! which files are found.

use std::collections::BTreeMap;

use rayon::prelude::*;
use std::path::{Path, PathBuf};

use globset::{Glob, GlobSetBuilder};

use crate::document::RawDocument;
use crate::kinds::KindRegistry;
use crate::provenance::Sources;
use crate::resolve::{Resolver, load_document};
use crate::{Schema, SchemaDoc, SchemaError};

/// Every schema of a project, in a deterministic order (by id), and the source texts for errors.
#[derive(Debug, Clone, Default)]
pub struct SchemaSet {
    schemas: BTreeMap<String, Schema>,
    sources: Sources,
    /// Registry fragments the imports resolved to: name → (version, file).
    registry_picks: BTreeMap<String, (semver::Version, PathBuf)>,
    /// Imports that reached their file through a symbolic link, as written.
    linked_imports: Vec<PathBuf>,
    /// Schema templates (see [`SchemaSet::from_files_with_registry`]), by file.
    templates: BTreeMap<PathBuf, Schema>,
}

/// Shared fragments from registry folders, for [`SchemaSet::from_files_with_registry`].
#[derive(Debug, Clone, Default)]
pub struct Registry {
    /// Every schema file of the registry folders (absolute paths).
    pub files: Vec<PathBuf>,
    /// The version the lock holds for a fragment name (kept while it exists and matches).
    pub locked: BTreeMap<String, semver::Version>,
}

/// Finds the files under `root` matching `globs`, sorted. Hidden folders (`.qpf`, `.git`) are
/// skipped; a symbolic link is followed only when it points inside the project.
///
/// # Errors
/// Bad globs, unreadable folders, and links pointing outside the project.
pub fn find_files(root: &Path, globs: &[String]) -> Result<Vec<PathBuf>, Vec<SchemaError>> {
    find_files_excluding(root, globs, &[])
}

/// [`find_files`], without descending into the folders `exclude` names (relative to `root`): the
/// project's output root, whose generated files (tens of thousands of them in a big project) are
/// never schemas, and which may not hold any (see the engine's `protect`).
///
/// # Errors
/// As [`find_files`].
pub fn find_files_excluding(
    root: &Path,
    globs: &[String],
    exclude: &[PathBuf],
) -> Result<Vec<PathBuf>, Vec<SchemaError>> {
    walk(root, globs, exclude).map(|w| w.files)
}

/// What [`walk`] found: the matching files and every folder it looked into.
#[derive(Debug, Clone, Default)]
pub struct Walked {
    /// The files matching the globs, relative to the root, sorted.
    pub files: Vec<PathBuf>,
    /// Every folder listed, relative to the root (the root itself is the empty path), sorted: a
    /// file added, removed or renamed in any of them changes its modification time, which is how
    /// the engine's run snapshot knows the set of schema files did not change.
    pub dirs: Vec<PathBuf>,
}

/// [`find_files_excluding`], also naming the folders it listed.
///
/// # Errors
/// As [`find_files`].
pub fn walk(root: &Path, globs: &[String], exclude: &[PathBuf]) -> Result<Walked, Vec<SchemaError>> {
    let mut builder = GlobSetBuilder::new();
    let mut errors = Vec::new();
    for g in globs {
        match Glob::new(g) {
            Ok(glob) => {
                builder.add(glob);
            }
            Err(e) => errors.push(SchemaError::file("qpf.yaml", format!("invalid schema glob `{g}`: {e}"))),
        }
    }
    let set = builder.build().map_err(|e| vec![SchemaError::file("qpf.yaml", format!("invalid schema globs: {e}"))])?;
    let canonical_root = std::fs::canonicalize(root)
        .map_err(|e| vec![SchemaError::file(root, format!("cannot open the project: {e}"))])?;
    let mut files = Vec::new();
    let mut dirs = Vec::new();
    let walker = walkdir::WalkDir::new(root).follow_links(false).sort_by_file_name().into_iter().filter_entry(|e| {
        e.depth() == 0
            || !(e.file_name().to_string_lossy().starts_with('.')
                || (e.file_type().is_dir()
                    && e.path().strip_prefix(root).is_ok_and(|rel| exclude.iter().any(|x| x == rel))))
    });
    for entry in walker {
        let entry = match entry {
            Ok(e) => e,
            Err(e) => {
                errors.push(SchemaError::file(root, format!("cannot list the project: {e}")));
                continue;
            }
        };
        let Ok(rel) = entry.path().strip_prefix(root) else { continue };
        if entry.file_type().is_dir() {
            dirs.push(rel.to_owned());
            continue;
        }
        if !set.is_match(rel) {
            continue;
        }
        if entry.path_is_symlink() {
            match std::fs::canonicalize(entry.path()) {
                Ok(target) if target.starts_with(&canonical_root) && target.is_file() => {}
                Ok(target) => {
                    errors.push(SchemaError::file(
                        rel,
                        format!("is a symbolic link to `{}`, outside the project; schemas must live under the project folder", target.display()),
                    ));
                    continue;
                }
                Err(e) => {
                    errors.push(SchemaError::file(rel, format!("is a broken symbolic link: {e}")));
                    continue;
                }
            }
        }
        files.push(rel.to_owned());
    }
    if errors.is_empty() { Ok(Walked { files, dirs }) } else { Err(errors) }
}

impl SchemaSet {
    /// Loads every file under `root` that matches one of `globs`, resolves and validates them.
    ///
    /// # Errors
    /// Every problem found, not just the first.
    pub fn load(root: &Path, globs: &[String], kinds: &KindRegistry) -> Result<SchemaSet, Vec<SchemaError>> {
        Self::load_excluding(root, globs, &[], kinds)
    }

    /// [`SchemaSet::load`], without looking into the folders `exclude` names ([`find_files_excluding`]).
    ///
    /// # Errors
    /// As [`SchemaSet::load`].
    pub fn load_excluding(
        root: &Path,
        globs: &[String],
        exclude: &[PathBuf],
        kinds: &KindRegistry,
    ) -> Result<SchemaSet, Vec<SchemaError>> {
        let files = find_files_excluding(root, globs, exclude)?;
        SchemaSet::from_files(root, &files, kinds)
    }

    /// Loads, resolves and validates the given files (relative to `root`), in any order.
    ///
    /// # Errors
    /// Every problem found: bad files, duplicate ids, resolution and validation errors.
    pub fn from_files(root: &Path, files: &[PathBuf], kinds: &KindRegistry) -> Result<SchemaSet, Vec<SchemaError>> {
        Self::from_files_with_registry(root, files, &Registry::default(), &[], kinds)
    }

    /// [`SchemaSet::from_files`], with fragments shared through registry folders: a
    /// `name@range` import of a name no project file has resolves among them (the locked version
    /// while it exists and matches, else the highest matching one). They are not schemas of the
    /// project themselves: only what imports them is extracted.
    ///
    /// `templates` (relative to the root) are schema files that are not extracted themselves: an
    /// extractor map completes them into new schemas when a plugin asks (template spawns). Each
    /// is resolved (imports, extends) and checked against its kind like a schema.
    ///
    /// # Errors
    /// As [`SchemaSet::from_files`], every registry file that does not parse, and every
    /// template that is not a plain relative path inside the project or not a valid schema.
    pub fn from_files_with_registry(
        root: &Path,
        files: &[PathBuf],
        registry: &Registry,
        templates: &[PathBuf],
        kinds: &KindRegistry,
    ) -> Result<SchemaSet, Vec<SchemaError>> {
        let canonical_root = std::fs::canonicalize(root)
            .map_err(|e| vec![SchemaError::file(root, format!("cannot open the project: {e}"))])?;
        let mut files = files.to_vec();
        files.sort();
        files.dedup();
        let mut sources = Sources::default();
        let docs = load_all(root, &files, &mut sources)?;
        // Absolute paths: `root.join` leaves them as they are, and they show where the file is.
        let shared = load_all(root, &registry.files, &mut sources)?;
        let mut errors = Vec::new();
        let mut schemas = BTreeMap::new();
        let mut resolved_all = Vec::new();
        let mut template_all = Vec::new();
        let (registry_picks, linked_imports) = {
            let mut resolver =
                Resolver::with_registry(&canonical_root, &docs, &shared, registry.locked.clone(), &mut sources);
            for doc in &docs {
                match resolver.resolve(&doc.path) {
                    Ok(resolved) => resolved_all.push((doc.path.clone(), doc.id(), resolved)),
                    Err(e) => errors.push(e),
                }
            }
            for rel in templates {
                match load_template(&canonical_root, rel).and_then(|raw| {
                    resolver.preload(raw.0, &raw.1);
                    resolver.resolve(rel)
                }) {
                    Ok(resolved) => template_all.push((rel.clone(), resolved)),
                    Err(e) => errors.push(e),
                }
            }
            (resolver.registry_picks().clone(), resolver.linked_imports().iter().cloned().collect())
        };
        let mut template_set = BTreeMap::new();
        for (path, resolved) in template_all {
            match serde_json::from_value::<SchemaDoc>(resolved.body) {
                Ok(doc) => {
                    let schema = Schema { path, doc, provenance: resolved.provenance, depends_on: resolved.depends_on };
                    match kinds.validate(&schema, &sources) {
                        Ok(()) => {
                            template_set.insert(schema.path.clone(), schema);
                        }
                        Err(found) => merge_violations(&mut errors, &schema, found),
                    }
                }
                Err(e) => errors.push(SchemaError::file(&path, format!("resolved template is not a schema: {e}"))),
            }
        }
        errors = errors.into_iter().map(|e| e.with_excerpt(&sources)).collect();
        // Each schema against its kind, on every core; the results are merged in file order.
        let checked: Vec<Checked> = resolved_all
            .into_par_iter()
            .map(|(path, id, resolved)| match serde_json::from_value::<SchemaDoc>(resolved.body) {
                Ok(doc) => {
                    let schema = Schema { path, doc, provenance: resolved.provenance, depends_on: resolved.depends_on };
                    let valid = kinds.validate(&schema, &sources);
                    (id, Ok(schema), valid)
                }
                Err(e) => {
                    (id, Err(SchemaError::file(&path, format!("resolved document is not a schema: {e}"))), Ok(()))
                }
            })
            .collect();
        for (id, schema, valid) in checked {
            match (schema, valid) {
                (Err(e), _) => errors.push(e),
                (Ok(schema), Err(found)) => merge_violations(&mut errors, &schema, found),
                (Ok(schema), Ok(())) => {
                    schemas.insert(id, schema);
                }
            }
        }
        if errors.is_empty() {
            Ok(SchemaSet { schemas, sources, registry_picks, linked_imports, templates: template_set })
        } else {
            Err(errors)
        }
    }

    /// Resolves one schema file (relative to `root`) in the context of the project's other schema
    /// files (for `name@range` imports), without validating it against its kind.
    ///
    /// # Errors
    /// Every problem found in the file or what it imports.
    pub fn resolve_one(root: &Path, globs: &[String], file: &Path) -> Result<Schema, Vec<SchemaError>> {
        let canonical_root = std::fs::canonicalize(root)
            .map_err(|e| vec![SchemaError::file(root, format!("cannot open the project: {e}"))])?;
        let mut files = find_files(root, globs).unwrap_or_default();
        if !files.iter().any(|f| f == file) {
            files.push(file.to_owned());
        }
        let mut sources = Sources::default();
        let mut docs = Vec::new();
        for rel in &files {
            match load_document(&root.join(rel), rel) {
                Ok((doc, text)) => {
                    sources.add(rel, &text);
                    docs.push(doc);
                }
                // Other files' problems do not matter here, unless it is the file asked for.
                Err(e) if rel == file => return Err(vec![e.with_excerpt(&sources)]),
                Err(_) => {}
            }
        }
        let resolved = {
            let mut resolver = Resolver::new(&canonical_root, &docs, &mut sources);
            resolver.resolve(file)
        }
        .map_err(|e| vec![e.with_excerpt(&sources)])?;
        let doc: SchemaDoc = serde_json::from_value(resolved.body)
            .map_err(|e| vec![SchemaError::file(file, format!("resolved document is not a schema: {e}"))])?;
        Ok(Schema { path: file.to_owned(), doc, provenance: resolved.provenance, depends_on: resolved.depends_on })
    }

    /// The schemas, ordered by id.
    pub fn iter(&self) -> impl Iterator<Item = &Schema> {
        self.schemas.values()
    }

    /// The number of schemas.
    pub fn len(&self) -> usize {
        self.schemas.len()
    }

    /// Whether there are none.
    pub fn is_empty(&self) -> bool {
        self.schemas.is_empty()
    }

    /// Imports that reached their file through a symbolic link, as written (relative to the root):
    /// re-pointing the link changes what they read.
    pub fn linked_imports(&self) -> &[PathBuf] {
        &self.linked_imports
    }

    /// The registry fragments the imports resolved to: name → (version, file).
    pub fn registry_picks(&self) -> &BTreeMap<String, (semver::Version, PathBuf)> {
        &self.registry_picks
    }

    /// The source texts of every file read (for quoting positions in messages).
    pub fn sources(&self) -> &Sources {
        &self.sources
    }

    /// A schema by id.
    pub fn get(&self, id: &str) -> Option<&Schema> {
        self.schemas.get(id)
    }

    /// A resolved, checked template by its file (relative to the root).
    pub fn template(&self, path: &Path) -> Option<&Schema> {
        self.templates.get(path)
    }
}

/// A template file: a plain relative path (no `..`, no root) whose file, links followed, is
/// inside the project; parsed like a schema file.
fn load_template(canonical_root: &Path, rel: &Path) -> Result<(crate::document::RawDocument, String), SchemaError> {
    use std::path::Component;
    if rel.as_os_str().is_empty() || !rel.components().all(|c| matches!(c, Component::Normal(_))) {
        return Err(SchemaError::file(
            rel,
            "a template must be a plain path relative to the project folder (no `..`, no leading `/`)",
        ));
    }
    let canonical = std::fs::canonicalize(canonical_root.join(rel))
        .map_err(|e| SchemaError::file(rel, format!("cannot open the template: {e}")))?;
    if !canonical.starts_with(canonical_root) {
        return Err(SchemaError::file(rel, "the template is a link to a file outside the project"));
    }
    load_document(&canonical, rel)
}

/// One resolved schema checked against its kind: its id, the schema (or why the resolved
/// document is not one), and the kind's verdict.
type Checked = (String, Result<Schema, SchemaError>, Result<(), Vec<SchemaError>>);

/// A file that did not parse: why, and its text for the excerpt.
type ParseFailure = Box<(SchemaError, Option<String>)>;

/// Parses every file, adding its text to `sources`, and refuses duplicate ids.
fn load_all(root: &Path, files: &[PathBuf], sources: &mut Sources) -> Result<Vec<RawDocument>, Vec<SchemaError>> {
    let mut errors = Vec::new();
    let mut docs: Vec<RawDocument> = Vec::new();
    // Read and parse on every core; the results are taken in file order (deterministic).
    let parsed: Vec<_> = files
        .par_iter()
        .map(|rel| {
            let absolute = root.join(rel);
            // On an error, the text for the excerpt (`read_text` applies the same size cap).
            load_document(&absolute, rel)
                .map_err(|e| -> ParseFailure { Box::new((e, crate::yaml::read_text(&absolute, rel).ok())) })
        })
        .collect();
    for (rel, result) in files.iter().zip(parsed) {
        match result {
            Ok((doc, text)) => {
                sources.add(rel, &text);
                docs.push(doc);
            }
            Err(failure) => {
                let (e, text) = *failure;
                if let Some(text) = text {
                    sources.add(rel, &text);
                }
                errors.push(e.with_excerpt(sources));
            }
        }
    }
    let mut by_id: BTreeMap<String, &RawDocument> = BTreeMap::new();
    for doc in &docs {
        if let Some(first) = by_id.get(&doc.id()) {
            errors.push(SchemaError::file(
                &doc.path,
                format!(
                    "`{}` is already defined in `{}`; bump `metadata.version` or rename one of them",
                    doc.id(),
                    first.path.display()
                ),
            ));
        } else {
            by_id.insert(doc.id(), doc);
        }
    }
    if errors.is_empty() { Ok(docs) } else { Err(errors) }
}

/// Adds a schema's kind violations to `errors`: a value shared through `extends` or `$ref` fails
/// once, wherever it is used, with a note per schema that uses it.
fn merge_violations(errors: &mut Vec<SchemaError>, schema: &Schema, found: Vec<SchemaError>) {
    for mut e in found {
        let note = format!("in `{}` ({})", schema.id(), schema.path.display());
        match errors
            .iter_mut()
            .find(|o| (&o.path, o.line, o.column, &o.message) == (&e.path, e.line, e.column, &e.message))
        {
            Some(existing) => existing.notes.push(note),
            None => {
                if e.path != schema.path {
                    e.notes.push(note);
                }
                errors.push(e);
            }
        }
    }
}
