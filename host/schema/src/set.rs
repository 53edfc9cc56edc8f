//! A project's schemas: found by glob under the project root, loaded, and indexed by id.

use std::collections::BTreeMap;
use std::path::Path;

use globset::{Glob, GlobSetBuilder};

use crate::{Schema, SchemaError};

/// Every schema of a project, in a deterministic order (by id).
#[derive(Debug, Clone, Default)]
pub struct SchemaSet {
    schemas: BTreeMap<String, Schema>,
}

impl SchemaSet {
    /// Loads every file under `root` that matches one of `globs` (relative to `root`).
    /// Symbolic links are not followed, so a link cannot pull in a file outside the project.
    ///
    /// # Errors
    /// Every problem found, not just the first: bad globs, unreadable or invalid files, and two
    /// files declaring the same `kind/name@version`.
    pub fn load(root: &Path, globs: &[String]) -> Result<SchemaSet, Vec<SchemaError>> {
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
        let set =
            builder.build().map_err(|e| vec![SchemaError::file("qpf.yaml", format!("invalid schema globs: {e}"))])?;
        let mut files = Vec::new();
        for entry in walkdir::WalkDir::new(root).follow_links(false).sort_by_file_name() {
            let entry = match entry {
                Ok(e) => e,
                Err(e) => {
                    errors.push(SchemaError::file(root, format!("cannot list the project: {e}")));
                    continue;
                }
            };
            if !entry.file_type().is_file() {
                continue;
            }
            let Ok(rel) = entry.path().strip_prefix(root) else { continue };
            if set.is_match(rel) {
                files.push((entry.path().to_owned(), rel.to_owned()));
            }
        }
        let mut schemas: BTreeMap<String, Schema> = BTreeMap::new();
        for (path, rel) in files {
            match Schema::load(&path, &rel) {
                Ok(schema) => {
                    let id = schema.id();
                    if let Some(first) = schemas.get(&id) {
                        errors.push(SchemaError::file(
                            &rel,
                            format!(
                                "`{id}` is already defined in `{}`; bump `metadata.version` or rename one of them",
                                first.path.display()
                            ),
                        ));
                    } else {
                        schemas.insert(id, schema);
                    }
                }
                Err(e) => errors.push(e),
            }
        }
        if errors.is_empty() { Ok(SchemaSet { schemas }) } else { Err(errors) }
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
}
