//! Drift: does the code on disk still match the lock and the current schemas? Each file the lock
//! knows is classified:
//!
//! | class | meaning |
//! |---|---|
//! | `modified` | the file's bytes differ from the lock (a hand edit) |
//! | `missing` | the lock (or the cache entry of a current invocation) lists it, the disk does not have it |
//! | `orphan` | the lock lists it, but no current invocation produces it any more (entry or schema gone) |
//! | `stale` | its invocation's inputs changed since the lock (schema, config, plugin or limits): re-extract |
//!
//! Files under the output root that the lock never listed are not QPF's and are left alone; nor
//! are scaffolds (files the lock lists as user-owned): their edits are their users' work.

use std::collections::{BTreeMap, BTreeSet};

use serde::Serialize;

use crate::cache::InvocationCache;
use crate::lock::{LOCK_FILE, Lock};
use crate::writer::OutputRoot;

/// Version of the drift report format.
pub const DRIFT_FORMAT: u32 = 1;

/// How a file drifted.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum DriftClass {
    /// Hand-edited.
    Modified,
    /// Absent from disk.
    Missing,
    /// No longer produced.
    Orphan,
    /// Inputs changed since the lock.
    Stale,
}

/// One drifted file.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct DriftItem {
    /// Path under the output root.
    pub path: String,
    /// The class.
    pub class: DriftClass,
    /// Entry id that produced (or produces) it.
    pub entry: String,
    /// Schema id.
    pub schema: String,
    /// What differs, for people.
    pub detail: String,
}

/// The result of a drift check.
#[derive(Debug, Clone, Serialize)]
pub struct DriftReport {
    /// [`DRIFT_FORMAT`].
    pub format: u32,
    /// Output root checked.
    pub output: String,
    /// Files checked (lock entries plus files expected from current cache entries).
    pub checked: usize,
    /// Drifted files, sorted by path.
    pub items: Vec<DriftItem>,
}

/// What [`crate::Engine::fix_drift`] did.
#[derive(Debug, Clone)]
pub struct DriftFix {
    /// The extraction that restored and re-extracted files.
    pub extract: crate::report::Report,
    /// Orphans kept (edited by hand, or not removable), with why.
    pub kept: Vec<String>,
    /// Drift after the repair.
    pub after: DriftReport,
}

impl DriftReport {
    /// Whether nothing drifted.
    pub fn is_clean(&self) -> bool {
        self.items.is_empty()
    }
}

impl crate::Engine {
    /// Compares the output root, the lock and what the current schemas would produce.
    ///
    /// # Errors
    /// An unusable output root.
    pub fn drift(&self, out: Option<&std::path::Path>) -> Result<DriftReport, crate::EngineError> {
        let (path, shown) = match out {
            Some(o) => (o.to_owned(), o.display().to_string()),
            None => (self.project().output_root(), self.project().file.output.display().to_string()),
        };
        let root = OutputRoot::open(&path)
            .map_err(|e| crate::EngineError::Output { path: path.clone(), message: format!("cannot open it: {e}") })?;
        let lock = Lock::read(&self.project().root.join(LOCK_FILE)).unwrap_or_else(|| Lock::new(shown.clone()));
        let cache = self.invocation_cache();
        let current: BTreeMap<(&str, &str), &crate::plan::PlannedInvocation> =
            self.plan().invocations.iter().map(|i| ((i.entry.as_str(), i.schema.as_str()), i)).collect();
        let mut items = Vec::new();
        let mut seen = BTreeSet::new();
        for (rel, locked) in &lock.files {
            seen.insert(rel.clone());
            if locked.user_owned {
                continue;
            }
            let item = |class, detail: String| DriftItem {
                path: rel.clone(),
                class,
                entry: locked.entry.clone(),
                schema: locked.schema.clone(),
                detail,
            };
            if locked.orphan {
                items.push(item(
                    DriftClass::Orphan,
                    "no invocation produces it any more; kept because it was edited by hand".to_owned(),
                ));
                continue;
            }
            // A spawned file is judged by the top-level invocation that spawned it.
            let (entry, key) = match &locked.spawned_by {
                Some(s) => (s.entry.as_str(), s.key.as_str()),
                None => (locked.entry.as_str(), locked.key.as_str()),
            };
            match current.get(&(entry, locked.schema.as_str())) {
                None => items.push(item(
                    DriftClass::Orphan,
                    format!("entry `{entry}` no longer produces it for `{}`", locked.schema),
                )),
                Some(inv) if inv.key != key => items.push(item(
                    DriftClass::Stale,
                    "the schema, config, plugin or limits changed since it was generated".to_owned(),
                )),
                Some(_) => match root.digest_of(rel) {
                    None => items.push(item(DriftClass::Missing, "not on disk".to_owned())),
                    Some(d) if d != locked.digest => {
                        items.push(item(DriftClass::Modified, format!("on disk {d}, locked {}", locked.digest)))
                    }
                    Some(_) => {}
                },
            }
        }
        // Files a current, cached invocation produces that the lock does not list (a lost lock).
        for inv in &self.plan().invocations {
            if let Ok(Some(manifest)) = cache.manifest(&inv.key) {
                for f in manifest.files.iter().filter(|f| f.mode.is_generated()) {
                    let rel = format!("{}/{}", inv.out_dir, f.path);
                    if seen.insert(rel.clone()) && root.digest_of(&rel).as_deref() != Some(f.digest.as_str()) {
                        items.push(DriftItem {
                            path: rel,
                            class: DriftClass::Missing,
                            entry: inv.entry.clone(),
                            schema: inv.schema.clone(),
                            detail: "produced by the current schemas but not on disk (or not as produced)".to_owned(),
                        });
                    }
                }
            }
        }
        items.sort_by(|a, b| (&a.path, a.class).cmp(&(&b.path, b.class)));
        Ok(DriftReport { format: DRIFT_FORMAT, output: shown, checked: seen.len(), items })
    }

    /// Repairs drift: restores modified and missing files (from the cache where it has them),
    /// re-extracts stale ones, removes orphans that still hold their locked bytes, then checks
    /// again. `report` is the drift found before.
    ///
    /// # Errors
    /// What stops an extraction, or an unusable output root.
    pub fn fix_drift(
        &self,
        report: &DriftReport,
        out: Option<&std::path::Path>,
        jobs: usize,
    ) -> Result<DriftFix, crate::EngineError> {
        let locked = Lock::read(&self.project().root.join(LOCK_FILE)).unwrap_or_else(|| Lock::new(String::new()));
        let options = crate::ExtractOptions {
            jobs,
            out: out.map(ToOwned::to_owned),
            no_cache: false,
            fail_fast: false,
            require_hits: false,
            shard: None,
        };
        let extract = self.extract(&options, &|_| {})?;
        let kept = self.remove_orphans(&report.items, &locked, out)?;
        let after = self.drift(out)?;
        Ok(DriftFix { extract, kept, after })
    }

    /// Removes orphaned files that still hold the bytes the lock recorded (hand-edited orphans are
    /// kept and returned), after a fix has re-extracted everything else.
    ///
    /// # Errors
    /// An unusable output root.
    pub fn remove_orphans(
        &self,
        orphans: &[DriftItem],
        locked: &Lock,
        out: Option<&std::path::Path>,
    ) -> Result<Vec<String>, crate::EngineError> {
        let path = out.map(ToOwned::to_owned).unwrap_or_else(|| self.project().output_root());
        let root = OutputRoot::open(&path)
            .map_err(|e| crate::EngineError::Output { path: path.clone(), message: format!("cannot open it: {e}") })?;
        let mut kept = Vec::new();
        for item in orphans.iter().filter(|i| i.class == DriftClass::Orphan) {
            let on_disk = root.digest_of(&item.path);
            let unchanged = locked.files.get(&item.path).is_some_and(|l| on_disk.as_deref() == Some(l.digest.as_str()));
            if on_disk.is_none() {
                continue;
            }
            if unchanged {
                if let Err(e) = root.remove(&item.path) {
                    kept.push(format!("{}: {e}", item.path));
                }
            } else {
                kept.push(format!("{}: edited by hand, kept", item.path));
            }
        }
        Ok(kept)
    }
}
