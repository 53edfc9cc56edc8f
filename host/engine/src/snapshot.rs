//! The run snapshot, `.qpf/run-snapshot`: what the last complete run read and wrote, with every
//! file's and folder's stat, so that a `qpf extract` over exactly the same files answers without
//! loading the project, planning, or opening the caches ("nothing changed", as make and ninja
//! say it). At 20,000 invocations a run of hits spends most of its second reading 20,000 schemas
//! and opening 20,000 manifests; the snapshot answers by looking at each file's stat.
//!
//! What it records: the files the run read (`qpf.yaml`, the map, the kinds' JSON Schemas, every
//! schema and fragment, every plugin's component), the lock, every folder the schema search
//! listed (a file added, removed or renamed changes its folder's modification time), and every
//! file the lock names under the output root; the build of `qpf` (its executable's stat) and how
//! the run was asked for (project, output root, caches); each invocation's record as a cache hit
//! would report it.
//!
//! Why a replay is the run's answer: the stats are [`FileStat`]s (device, inode, size,
//! modification and change times to the nanosecond), which every write changes and user space
//! cannot set back (see `stat_cache`); a snapshot is written only when every one of them was
//! last changed more than 2 s before the run began reading the project (the stats are taken at
//! the end of the run: a file changed during the run has a later change time), and sealed with a MAC under the user's secret over its bytes and the
//! project's folder. The plan is a function of those files and that build; the outputs on disk
//! are the ones the lock names with these stats; so the run would find every invocation cached
//! and every file up to date, which is what the replay reports (and appends to the audit log).
//! Anything else (a stat that differs, a missing file, another option, a remote cache, a shard,
//! `--no-cache`) is an ordinary run, which writes a new snapshot when it succeeds. A writing run
//! removes the snapshot before it starts; a run with a failure, a skipped invocation or a warning
//! leaves none, and `qpf cache clear` removes it.

use std::path::{Path, PathBuf};
use std::time::Instant;

use qpf_core::fs::FileStat;
use serde::{Deserialize, Serialize};

use crate::commit::InvocationRecord;
use crate::extract::{ExtractOptions, Settings};
use crate::lock::SpawnedBy;
use crate::report::{CacheState, DiagnosticReport, Outcome, REPORT_FORMAT, Report, Summary};

/// The snapshot's file name in the project's state folder.
pub const FILE_NAME: &str = "run-snapshot";

/// The first line's words, before the format and the MAC.
const MAGIC: &str = "qpf-run-snapshot";

/// Version of the snapshot's format.
const FORMAT: u32 = 1;

/// The largest snapshot read back (about 500 bytes an invocation: over a million invocations).
const MAX_BYTES: u64 = 512 << 20;

#[derive(Debug, Serialize, Deserialize)]
struct Body {
    /// The build of `qpf` and how the run was asked for ([`fingerprint`]).
    fingerprint: String,
    /// [`Report::output`].
    output: String,
    /// Files the run read, the lock, and the files the lock names (absolute paths).
    files: Vec<(PathBuf, FileStat)>,
    /// Folders the schema search listed (absolute paths).
    dirs: Vec<(PathBuf, FileStat)>,
    /// The run's counts.
    summary: Summary,
    /// Every invocation, in the report's order.
    records: Vec<Record>,
}

/// An invocation as the snapshot keeps it: what a cache hit reports.
#[derive(Debug, Serialize, Deserialize)]
struct Record {
    entry: String,
    schema: String,
    plugin: String,
    plugin_digest: String,
    key: String,
    input_digest: String,
    config_digest: String,
    spawned_by: Option<SpawnedBy>,
    fuel: u64,
    files: Vec<(String, String, qpf_runtime::FileMode)>,
    diagnostics: Vec<DiagnosticReport>,
}

impl Record {
    fn of(r: &InvocationRecord) -> Record {
        Record {
            entry: r.entry.clone(),
            schema: r.schema.clone(),
            plugin: r.plugin.clone(),
            plugin_digest: r.plugin_digest.clone(),
            key: r.key.clone(),
            input_digest: r.input_digest.clone(),
            config_digest: r.config_digest.clone(),
            spawned_by: r.spawned_by.clone(),
            fuel: r.fuel,
            files: r.files.clone(),
            diagnostics: r.diagnostics.clone(),
        }
    }

    /// The record a run that found it cached would make.
    fn replayed(self) -> InvocationRecord {
        InvocationRecord {
            entry: self.entry,
            schema: self.schema,
            plugin: self.plugin,
            plugin_version: None,
            plugin_digest: self.plugin_digest,
            key: self.key,
            input_digest: self.input_digest,
            config_digest: self.config_digest,
            spawned_by: self.spawned_by,
            cache: CacheState::Hit,
            outcome: Outcome::Ok,
            error: None,
            duration_us: 0,
            fuel: self.fuel,
            files: self.files,
            written: Vec::new(),
            diagnostics: self.diagnostics,
        }
    }
}

/// What a run that may leave a snapshot read and wrote (see [`write`]).
pub(crate) struct Ran<'a> {
    /// The project's folder.
    pub root: &'a Path,
    /// When the run began reading the project: every stat recorded must be settled before it.
    pub began: std::time::SystemTime,
    /// The files it read (absolute).
    pub files: Vec<PathBuf>,
    /// The folders the schema search listed (absolute).
    pub dirs: Vec<PathBuf>,
    /// The output root, and the files the lock names under it.
    pub output_root: &'a Path,
    /// [`Report::output`].
    pub output: &'a str,
    /// The files the lock names.
    pub outputs: Vec<String>,
    /// The run's counts and records.
    pub summary: &'a Summary,
    /// Every invocation.
    pub records: &'a [InvocationRecord],
}

/// Whether runs with these settings and options may write or replay a snapshot: a plain local
/// run of the CLI (no remote cache, no shard, the cache on, no embedder's overrides).
pub(crate) fn applies(settings: &Settings, options: &ExtractOptions) -> bool {
    settings.run_snapshot
        && !settings.registry_update
        && settings.remote.is_none()
        && settings.plugin_paths.is_empty()
        && settings.ceilings.is_none()
        && !options.no_cache
        && options.shard.is_none()
}

/// The snapshot's path for a project.
pub fn path(root: &Path) -> PathBuf {
    root.join(".qpf").join(FILE_NAME)
}

/// Removes a project's snapshot (before a run that writes, and by `qpf cache clear`).
///
/// # Errors
/// I/O errors other than there being none.
pub fn remove(root: &Path) -> std::io::Result<()> {
    match std::fs::remove_file(path(root)) {
        Err(e) if e.kind() != std::io::ErrorKind::NotFound => Err(e),
        _ => Ok(()),
    }
}

fn key(secret: &[u8; 32]) -> [u8; 32] {
    blake3::derive_key("qpf run snapshot v1", secret)
}

fn mac(key: &[u8; 32], root: &Path, body: &[u8]) -> blake3::Hash {
    let mut hasher = blake3::Hasher::new_keyed(key);
    let root = root.as_os_str().as_encoded_bytes();
    hasher.update(&(root.len() as u64).to_le_bytes());
    hasher.update(root);
    hasher.update(body);
    hasher.finalize()
}

/// The build of `qpf` that ran (its version and its executable's stat: a rebuilt binary may plan
/// differently) and how the run was asked for; `None` when the executable cannot be identified.
fn fingerprint(root: &Path, settings: &Settings, options: &ExtractOptions) -> Option<String> {
    let exe = std::env::current_exe().ok()?;
    let stat = FileStat::of(&exe)?;
    let mut h = blake3::Hasher::new();
    let mut part = |bytes: &[u8]| {
        h.update(&(bytes.len() as u64).to_le_bytes());
        h.update(bytes);
    };
    part(env!("CARGO_PKG_VERSION").as_bytes());
    part(exe.as_os_str().as_encoded_bytes());
    part(&stat.to_bytes());
    part(root.as_os_str().as_encoded_bytes());
    let path = |p: &Option<PathBuf>| p.as_ref().map(|p| p.as_os_str().as_encoded_bytes().to_vec()).unwrap_or_default();
    part(&path(&options.out));
    part(&path(&settings.invocation_cache));
    part(&path(&settings.plugin_store));
    Some(h.finalize().to_hex().to_string())
}

/// The canonical project folder the snapshot is bound to.
fn canonical(root: &Path) -> Option<PathBuf> {
    std::fs::canonicalize(root).ok()
}

/// Writes the snapshot of a run that succeeded, if every file and folder it names has settled;
/// returns whether it did. Failures are not errors: the next run is then an ordinary one.
pub(crate) fn write(ran: &Ran<'_>, settings: &Settings, options: &ExtractOptions, secret: &[u8; 32]) -> bool {
    let _span = tracing::info_span!("write_run_snapshot").entered();
    let Some(root) = canonical(ran.root) else { return false };
    let Some(fingerprint) = fingerprint(&root, settings, options) else { return false };
    // Every stat, settled before the run began reading: the stats are taken now, after the files
    // were read and the outputs compared, so a file changed meanwhile (its change time is then
    // later than the start) is not recorded as what the run saw; and a file written in the 2 s
    // before could change again in the same tick of a coarse clock.
    let settled = |paths: &mut dyn Iterator<Item = PathBuf>, stat: fn(&Path) -> Option<FileStat>| {
        paths
            .map(|path| match stat(&path).filter(|s| s.settled_before(ran.began)) {
                Some(s) => Some((path, s)),
                None => {
                    tracing::debug!(path = %path.display(), "no run snapshot: changed since the run began (or unreadable)");
                    None
                }
            })
            .collect::<Option<Vec<_>>>()
    };
    let outputs = ran.outputs.iter().map(|rel| ran.output_root.join(rel));
    let Some(files) = settled(&mut ran.files.iter().cloned().chain(outputs), FileStat::of) else { return false };
    let Some(dirs) = settled(&mut ran.dirs.iter().cloned(), FileStat::of_dir) else { return false };
    let body = Body {
        fingerprint,
        output: ran.output.to_owned(),
        files,
        dirs,
        summary: ran.summary.clone(),
        records: ran.records.iter().map(Record::of).collect(),
    };
    let Ok(body) = serde_json::to_vec(&body) else { return false };
    let mut bytes = format!("{MAGIC} {FORMAT} {}\n", mac(&key(secret), &root, &body).to_hex()).into_bytes();
    bytes.extend_from_slice(&body);
    match crate::writer::write_file_atomic(&path(ran.root), &bytes) {
        Ok(()) => true,
        Err(e) => {
            tracing::warn!("cannot write the run snapshot: {e}");
            false
        }
    }
}

/// Answers a run from the project's snapshot when nothing it names changed: the report a run would
/// return (every invocation a hit, every file unchanged), after appending the run's audit records.
/// `None` means "run": no snapshot, another build or request, a stat that differs, or a snapshot
/// this user's secret did not seal.
pub fn replay(root: &Path, settings: &Settings, options: &ExtractOptions) -> Option<Report> {
    let started = Instant::now();
    if !applies(settings, options) {
        return None;
    }
    let _span = tracing::info_span!("replay_run_snapshot").entered();
    let secret = settings.secret.unwrap_or_else(crate::secret::user_secret);
    let canonical_root = canonical(root)?;
    let body = open(root, &canonical_root, &secret)?;
    if body.fingerprint != fingerprint(&canonical_root, settings, options)? {
        return None;
    }
    let same = |(path, stat): &(PathBuf, FileStat), now: fn(&Path) -> Option<FileStat>| {
        now(path).as_ref() == Some(stat) || {
            tracing::debug!(path = %path.display(), "changed since the run snapshot");
            false
        }
    };
    if !body.files.iter().all(|f| same(f, FileStat::of)) || !body.dirs.iter().all(|d| same(d, FileStat::of_dir)) {
        return None;
    }
    let time = humantime::format_rfc3339_micros(std::time::SystemTime::now()).to_string();
    let records: Vec<InvocationRecord> = body.records.into_iter().map(Record::replayed).collect();
    let audit: Vec<_> = records.iter().map(|r| r.audit(&time, "default")).collect();
    // The records must reach the audit log like any run's; if they cannot, run instead.
    crate::audit::append(&root.join(".qpf").join("audit.jsonl"), &audit).ok()?;
    // Its time is when it was last used: `qpf cache gc` keeps the entries of a used snapshot.
    if let Ok(f) = std::fs::File::options().write(true).open(path(root)) {
        let _ = f.set_modified(std::time::SystemTime::now());
    }
    let s = body.summary;
    let summary = Summary {
        invocations: s.invocations,
        hits: s.invocations,
        files_unchanged: s.files_written + s.files_unchanged,
        ..Summary::default()
    };
    Some(Report {
        format: REPORT_FORMAT,
        output: body.output,
        jobs: options.jobs.max(1),
        load_us: 0,
        duration_us: started.elapsed().as_micros() as u64,
        summary,
        invocations: records.iter().map(InvocationRecord::report).collect(),
        removed: Vec::new(),
        remote: None,
        shard: None,
        warnings: Vec::new(),
        replayed: true,
    })
}

/// The project's snapshot, if this user's secret sealed it for this folder.
fn open(root: &Path, canonical_root: &Path, secret: &[u8; 32]) -> Option<Body> {
    let bytes = qpf_core::fs::read_regular(&path(root), MAX_BYTES).ok()?;
    let newline = bytes.iter().position(|&b| b == b'\n')?;
    let (header, body) = (std::str::from_utf8(&bytes[..newline]).ok()?, &bytes[newline + 1..]);
    let mut words = header.split(' ');
    let (magic, format, sealed) = (words.next()?, words.next()?, words.next()?);
    if magic != MAGIC || format != FORMAT.to_string() || words.next().is_some() {
        return None;
    }
    // `blake3::Hash` compares in constant time.
    if blake3::Hash::from_hex(sealed).ok()? != mac(&key(secret), canonical_root, body) {
        tracing::debug!("run snapshot not sealed with this user's secret for this folder: ignored");
        return None;
    }
    serde_json::from_slice(body).ok()
}

/// The keys of the invocations in a project's snapshot sealed with `secret`, and when it was last
/// used (its modification time), for `qpf cache gc`.
pub fn keys_in_use(
    root: &Path,
    secret: &[u8; 32],
) -> Option<(std::collections::HashSet<String>, std::time::SystemTime)> {
    let used = std::fs::metadata(path(root)).ok()?.modified().ok()?;
    let body = open(root, &canonical(root)?, secret)?;
    Some((body.records.into_iter().map(|r| r.key).collect(), used))
}
