//! Impact: which schemas, invocations and generated files a change to some files affects, through
//! imports, extends and `$ref` (the dependency edges the resolver recorded), and through the
//! templates of the map (the entries that may spawn from a changed template, and what they spawned).

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

use serde::Serialize;

use crate::lock::{LOCK_FILE, Lock};

/// What a change affects.
#[derive(Debug, Clone, Default, Serialize)]
pub struct Impact {
    /// The changed files, relative to the project root.
    pub changed: Vec<PathBuf>,
    /// Schema ids that are or depend on a changed file.
    pub schemas: Vec<String>,
    /// Affected invocations, as `entry` and `schema`.
    pub invocations: Vec<(String, String)>,
    /// Generated files (under the output root) those invocations produced at the last run.
    pub files: Vec<String>,
}

impl crate::Engine {
    /// The impact of changing `paths` (relative to the project root).
    pub fn impact(&self, paths: &[PathBuf]) -> Impact {
        let changed: BTreeSet<&Path> = paths.iter().map(PathBuf::as_path).collect();
        let schemas: BTreeSet<String> = self
            .schemas()
            .iter()
            .filter(|s| {
                changed.contains(s.path.as_path()) || s.depends_on.iter().any(|d| changed.contains(d.as_path()))
            })
            .map(|s| s.id())
            .collect();
        // A changed template (or a file it depends on) affects the entries that may spawn from it.
        let project = self.project();
        let spawners: BTreeSet<&str> = project
            .map
            .templates
            .iter()
            .filter(|(_, path)| {
                changed.contains(path.as_path())
                    || self
                        .schemas()
                        .template(path)
                        .is_some_and(|t| t.depends_on.iter().any(|d| changed.contains(d.as_path())))
            })
            .flat_map(|(name, _)| {
                project.map.entries.iter().filter(move |e| e.spawn.templates.contains(name)).map(|e| e.id.as_str())
            })
            .collect();
        let invocations: Vec<(String, String)> = self
            .plan()
            .invocations
            .iter()
            .filter(|i| schemas.contains(&i.schema) || spawners.contains(i.entry.as_str()))
            .map(|i| (i.entry.clone(), i.schema.clone()))
            .collect();
        let lock = Lock::read(&self.project().root.join(LOCK_FILE));
        let files = lock
            .map(|l| {
                l.files
                    .iter()
                    .filter(|(_, f)| {
                        let entry = f.spawned_by.as_ref().map_or(&f.entry, |s| &s.entry);
                        invocations.iter().any(|(e, s)| e == entry && *s == f.schema)
                    })
                    .map(|(p, _)| p.clone())
                    .collect()
            })
            .unwrap_or_default();
        Impact { changed: paths.to_vec(), schemas: schemas.into_iter().collect(), invocations, files }
    }
}
