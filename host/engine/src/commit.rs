//! The commit phase: in plan order (so clashes are decided deterministically), each invocation's
//! files are checked against the run and the disk and written all or none, and one
//! [`InvocationRecord`] is made per invocation. The report row, the audit record and the lock
//! entries are all derived from that record, so no field is listed in three places. At the end,
//! files nobody produces any more are pruned.

use qpf_runtime::{FileMode, Limits};

use crate::audit::{self, AuditOutput, AuditPlugin, AuditRecord};
use crate::invoker::{ProducedFile, Worked, error};
use crate::lock::{Lock, LockedFile, SpawnedBy};
use crate::output_path::PathTree;
use crate::plan::PlannedInvocation;
use crate::report::{CacheState, DiagnosticReport, ErrorReport, FailureKind, InvocationReport, Outcome, Summary};
use crate::writer::{OutputRoot, WriteOutcome, digest_of};

/// Everything the run knows about one invocation once it is committed.
#[derive(Debug, Clone)]
pub struct InvocationRecord {
    /// Entry id (`<entry>><plugin>#<n>` for a spawned invocation).
    pub entry: String,
    /// Schema id.
    pub schema: String,
    /// Plugin name as declared.
    pub plugin: String,
    /// The plugin's version from `info()`, when it was loaded in this run.
    pub plugin_version: Option<String>,
    /// The plugin's digest.
    pub plugin_digest: String,
    /// Invocation key.
    pub key: String,
    /// Digest of the canonical input.
    pub input_digest: String,
    /// Digest of the canonical config.
    pub config_digest: String,
    /// For a spawned invocation: the top-level invocation it descends from.
    pub spawned_by: Option<SpawnedBy>,
    /// Served from the cache or not.
    pub cache: CacheState,
    /// How it ended.
    pub outcome: Outcome,
    /// Why it failed.
    pub error: Option<ErrorReport>,
    /// Wall time in microseconds.
    pub duration_us: u64,
    /// Fuel consumed.
    pub fuel: u64,
    /// Files produced (path under the output root, digest, who owns it).
    pub files: Vec<(String, String, FileMode)>,
    /// Of those, the files this run created or replaced.
    pub written: Vec<String>,
    /// The plugin's diagnostics, placed in the schema sources.
    pub diagnostics: Vec<DiagnosticReport>,
}

impl InvocationRecord {
    /// The report row.
    pub fn report(&self) -> InvocationReport {
        InvocationReport {
            entry: self.entry.clone(),
            schema: self.schema.clone(),
            plugin: self.plugin.clone(),
            key: self.key.clone(),
            cache: self.cache,
            outcome: self.outcome,
            error: self.error.clone(),
            duration_us: self.duration_us,
            fuel: self.fuel,
            files: self.files.iter().map(|(rel, ..)| rel.clone()).collect(),
            written: self.written.clone(),
            diagnostics: self.diagnostics.clone(),
        }
    }

    /// The audit record.
    pub fn audit(&self, time: &str, tenant: &str) -> AuditRecord {
        AuditRecord {
            format: audit::AUDIT_FORMAT,
            time: time.to_owned(),
            tenant: tenant.to_owned(),
            entry: self.entry.clone(),
            schema: self.schema.clone(),
            plugin: AuditPlugin {
                name: self.plugin.clone(),
                version: self.plugin_version.clone(),
                digest: self.plugin_digest.clone(),
            },
            key: self.key.clone(),
            input_digest: self.input_digest.clone(),
            config_digest: self.config_digest.clone(),
            cache: self.cache,
            outcome: self.outcome,
            error: self.error.as_ref().map(|e| format!("{}: {}", e.kind, e.message)),
            duration_us: self.duration_us,
            fuel: self.fuel,
            outputs: self
                .files
                .iter()
                .map(|(path, digest, mode)| AuditOutput { path: path.clone(), digest: digest.clone(), mode: *mode })
                .collect(),
        }
    }

    /// The lock entries of its files (none when it failed).
    pub fn lock_files(&self) -> impl Iterator<Item = (String, LockedFile)> + '_ {
        self.files.iter().map(|(rel, digest, mode)| {
            (
                rel.clone(),
                LockedFile {
                    digest: digest.clone(),
                    key: self.key.clone(),
                    entry: self.entry.clone(),
                    schema: self.schema.clone(),
                    plugin: self.plugin.clone(),
                    spawned_by: self.spawned_by.clone(),
                    orphan: false,
                    user_owned: *mode == FileMode::Scaffold,
                },
            )
        })
    }
}

/// The state of the commit phase.
pub(crate) struct Commit<'a> {
    root: &'a OutputRoot,
    limits: &'a Limits,
    previous: Option<Lock>,
    /// The lock being built.
    pub(crate) lock: Lock,
    claimed: PathTree<(String, String)>,
    /// Counts.
    pub(crate) summary: Summary,
    /// Problems that did not fail the run.
    pub(crate) warnings: Vec<String>,
    /// One record per invocation, in commit order.
    pub(crate) records: Vec<InvocationRecord>,
    /// Check the files (clashes), write none: a shard's outputs are the gather's to write.
    pub(crate) dry: bool,
}

impl<'a> Commit<'a> {
    pub(crate) fn new(root: &'a OutputRoot, limits: &'a Limits, previous: Option<Lock>, output: String) -> Self {
        Commit {
            root,
            limits,
            previous,
            lock: Lock::new(output),
            claimed: PathTree::default(),
            summary: Summary::default(),
            warnings: Vec::new(),
            records: Vec::new(),
            dry: false,
        }
    }

    /// Checks every file against the run and the disk, then writes them: all or none.
    fn write(&mut self, inv: &PlannedInvocation, files: &[ProducedFile]) -> Result<Vec<String>, ErrorReport> {
        for f in files {
            if let Some((other, (entry, schema))) = self.claimed.conflict(&f.rel) {
                let clash = if *other == f.rel {
                    format!("`{}` is also produced by", f.rel)
                } else {
                    format!(
                        "`{}` clashes with `{other}` (a file where a folder is needed, or a case-only difference), produced by",
                        f.rel
                    )
                };
                return Err(error(
                    FailureKind::Output,
                    format!("{clash} entry `{entry}` for `{schema}`; give the entries different `out` folders"),
                ));
            }
            if f.contents.is_some() && !self.dry {
                self.root
                    .check_writable(&f.rel)
                    .map_err(|e| error(FailureKind::Output, format!("cannot write `{}`: {e}", f.rel)))?;
            }
        }
        let mut written = Vec::new();
        for f in files {
            self.claimed.insert(&f.rel, (inv.entry.clone(), inv.schema.clone()));
            let outcome = |contents: &[u8]| match f.mode {
                FileMode::Generated => self.root.write(&f.rel, contents),
                FileMode::Scaffold => self.root.write_scaffold(&f.rel, contents),
            };
            match &f.contents {
                Some(_) if self.dry => {}
                Some(contents) => match outcome(contents) {
                    Ok(WriteOutcome::Written) => written.push(f.rel.clone()),
                    Ok(WriteOutcome::Unchanged | WriteOutcome::Kept) => self.summary.files_unchanged += 1,
                    Err(e) => {
                        return Err(error(
                            FailureKind::Write,
                            format!("cannot write `{}` under the output root: {e}", f.rel),
                        ));
                    }
                },
                None => self.summary.files_unchanged += 1,
            }
        }
        Ok(written)
    }

    /// Self-healing: a failing invocation's previous outputs stay on disk, and stay locked.
    fn keep_previous(&mut self, inv: &PlannedInvocation, id: &str) {
        let Some(previous) = &self.previous else { return };
        if let Some(before) = previous.invocations.get(id) {
            self.lock.invocations.insert(id.to_owned(), before.clone());
        }
        for (rel, f) in &previous.files {
            let descends = f.entry == inv.entry || f.spawned_by.as_ref().is_some_and(|s| s.entry == inv.entry);
            if descends && f.schema == inv.schema && self.claimed.conflict(rel).is_none() {
                self.lock.files.insert(rel.clone(), f.clone());
            }
        }
    }

    /// Commits one invocation; `place` turns a plugin diagnostic into its report form.
    pub(crate) fn add(
        &mut self,
        inv: &PlannedInvocation,
        worked: Worked,
        place: &dyn Fn(&PlannedInvocation, qpf_runtime::Diagnostic) -> DiagnosticReport,
    ) {
        let skipped = worked.result.as_ref().is_err_and(|e| e.kind == FailureKind::Skipped);
        self.warnings.extend(worked.warnings);
        let mut written = Vec::new();
        let result = worked.result.and_then(|files| {
            written = self.write(inv, &files)?;
            Ok(files)
        });
        self.summary.invocations += 1;
        self.summary.files_written += written.len();
        let cache = if worked.hit { CacheState::Hit } else { CacheState::Miss };
        if skipped {
            self.summary.skipped += 1;
        } else {
            match cache {
                CacheState::Hit => self.summary.hits += 1,
                CacheState::Miss => self.summary.misses += 1,
            }
            if result.is_err() {
                self.summary.failed += 1;
            }
        }
        let id = crate::lock::invocation_id(&inv.entry, &inv.schema);
        let (outcome, error, files) = match result {
            Ok(files) => (Outcome::Ok, None, files.into_iter().map(|f| (f.rel, f.digest, f.mode)).collect()),
            Err(e) if skipped => (Outcome::Skipped, Some(e), Vec::new()),
            Err(e) => (Outcome::Error, Some(e), Vec::new()),
        };
        let record = InvocationRecord {
            entry: inv.entry.clone(),
            schema: inv.schema.clone(),
            plugin: inv.plugin.clone(),
            plugin_version: worked.plugin_version,
            plugin_digest: inv.plugin_digest.clone(),
            key: inv.key.clone(),
            input_digest: digest_of(inv.request.input.as_bytes()),
            config_digest: digest_of(inv.request.config.as_bytes()),
            spawned_by: inv.root.as_ref().map(|(entry, key)| SpawnedBy { entry: entry.clone(), key: key.clone() }),
            cache,
            outcome,
            error,
            duration_us: worked.duration_us,
            fuel: worked.fuel,
            files,
            written,
            diagnostics: worked.diagnostics.into_iter().map(|d| place(inv, d)).collect(),
        };
        if record.outcome == Outcome::Ok {
            self.lock.invocations.insert(id, inv.inputs(self.limits));
            self.lock.files.extend(record.lock_files());
        } else {
            self.keep_previous(inv, &id);
        }
        self.records.push(record);
    }

    /// Prunes files nobody produces any more; returns the removed paths.
    pub(crate) fn prune(&mut self) -> Vec<String> {
        let removed = match &self.previous {
            Some(previous) => crate::prune::prune(previous, &mut self.lock, self.root, &mut self.warnings),
            None => Vec::new(),
        };
        self.summary.files_removed = removed.len();
        removed
    }
}
