//! `qpf schema show | diff | check | migrate`: a schema as a plugin sees it, and schema versioning.
//!
//! `show --resolved` prints a schema after its imports and `extends` are applied, the document the
//! map's JSON Pointers select from, optionally one pointer of it and where each value came from.
//!
//! `diff` and `check` compare resolved schemas (imports and extends applied), so a change made in a
//! shared fragment shows up in every schema that uses it. A side given as `REV:path` is read from
//! git: the project's tree at `REV` is extracted to a temporary folder and resolved there.

use crate::term::{esay, say};
use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail};
use qpf_engine::project::Project;
use qpf_schema::diff::{self, Change, Class};
use qpf_schema::migrate::{self, Migration};
use qpf_schema::{Schema, SchemaError, SchemaSet};

use super::Format;
use crate::exit::Exit;

/// Arguments of `qpf schema`.
#[derive(Debug, clap::Args)]
pub struct Args {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, clap::Subcommand)]
enum Command {
    /// Print a schema: as written, or resolved (imports and `extends` applied) with `--resolved`.
    Show {
        /// The schema: its name, or `kind/name@version` when several versions exist.
        name: String,
        /// Print the resolved document (what the map's `input` pointers select from).
        #[arg(long)]
        resolved: bool,
        /// Only the value at this JSON Pointer of the resolved document (e.g. `/spec/tools`).
        #[arg(long, value_name = "P", requires = "resolved")]
        pointer: Option<String>,
        /// With each value's origin: file, line, column and the import or `extends` chain.
        #[arg(long, requires = "resolved")]
        provenance: bool,
        /// Output format.
        #[arg(long, value_enum, default_value = "human")]
        format: Format,
    },
    /// List every change between two versions of a schema, classified as breaking, non-breaking or cosmetic.
    Diff {
        /// The old version: a file, or `REV:path` read from git (e.g. `HEAD~1:schemas/agents/trainer.yaml`).
        old: String,
        /// The new version: a file, or `REV:path`.
        new: String,
        /// Output format.
        #[arg(long, value_enum, default_value = "human")]
        format: Format,
    },
    /// Fail when a schema changed without the version bump its changes need (compared with a git revision).
    Check {
        /// The git revision to compare with (e.g. `main`, `HEAD~1`, a tag).
        #[arg(long, value_name = "REV")]
        against: String,
        /// Output format.
        #[arg(long, value_enum, default_value = "human")]
        format: Format,
    },
    /// Apply the project's migrations to schema files (printed to stdout unless --write).
    Migrate {
        /// Schema files to migrate.
        #[arg(required = true)]
        files: Vec<PathBuf>,
        /// Rewrite the files in place instead of printing the result.
        #[arg(long)]
        write: bool,
    },
}

/// Runs the command.
///
/// # Errors
/// Unreadable files, git failures, invalid schemas or migrations.
pub fn run(project: &Path, args: &Args) -> Result<Exit> {
    match &args.command {
        Command::Show { name, resolved, pointer, provenance, format } => {
            show_cmd(project, name, *resolved, pointer.as_deref(), *provenance, *format)
        }
        Command::Diff { old, new, format } => diff_cmd(project, old, new, *format),
        Command::Check { against, format } => check_cmd(project, against, *format),
        Command::Migrate { files, write } => migrate_cmd(project, files, *write),
    }
}

/// The one schema `name` designates: an exact id, or the only schema with that name.
fn find<'a>(set: &'a SchemaSet, name: &str) -> Result<&'a Schema> {
    if let Some(s) = set.get(name) {
        return Ok(s);
    }
    let named: Vec<&Schema> = set.iter().filter(|s| s.doc.metadata.name == name).collect();
    match named.as_slice() {
        [one] => Ok(one),
        [] => {
            let names: Vec<&str> = set.iter().map(|s| s.doc.metadata.name.as_str()).collect();
            bail!("no schema named `{name}`{}", qpf_schema::document::suggest(name, &names))
        }
        several => bail!(
            "{} schemas are named `{name}`; name one: {}",
            several.len(),
            several.iter().map(|s| format!("`{}`", s.id())).collect::<Vec<_>>().join(", ")
        ),
    }
}

fn show_cmd(
    project: &Path,
    name: &str,
    resolved: bool,
    pointer: Option<&str>,
    provenance: bool,
    format: Format,
) -> Result<Exit> {
    let engine = crate::commands::load(project)?;
    let schema = find(engine.schemas(), name)?;
    if !resolved {
        // Within the same budget (size, regular file, UTF-8) as when the schema was loaded.
        let text = qpf_schema::yaml::read_text(&project.join(&schema.path), &schema.path)?;
        match format {
            Format::Human => say!("{}", text.trim_end()),
            Format::Json => {
                crate::term::out_json(&serde_json::json!({"id": schema.id(), "path": schema.path, "text": text}), false)
            }
        }
        return Ok(Exit::Success);
    }
    let pointer = pointer.unwrap_or("");
    let doc = schema.to_json();
    let value = doc.pointer(pointer).with_context(|| {
        format!("`{pointer}` selects nothing in `{}` (a JSON Pointer starts with `/`, e.g. `/spec`)", schema.id())
    })?;
    let origins: Vec<(&String, &qpf_schema::Origin)> = schema
        .provenance
        .iter()
        .filter(|(p, _)| pointer.is_empty() || *p == pointer || p.starts_with(&format!("{pointer}/")))
        .collect();
    match format {
        Format::Human => {
            say!("{}", serde_json::to_string_pretty(value).unwrap_or_default());
            if provenance {
                for (p, o) in &origins {
                    let via = if o.via.is_empty() { String::new() } else { format!("  via {}", o.via.join(" → ")) };
                    say!(
                        "{:<40} {}:{}:{}{via}",
                        if p.is_empty() { "/" } else { p.as_str() },
                        o.file.display(),
                        o.line,
                        o.column
                    );
                }
            }
        }
        Format::Json => {
            let mut out =
                serde_json::json!({"id": schema.id(), "path": schema.path, "pointer": pointer, "value": value});
            if provenance {
                out["provenance"] =
                    serde_json::json!(origins.into_iter().collect::<std::collections::BTreeMap<_, _>>());
            }
            crate::term::out_json(&out, false);
        }
    }
    Ok(Exit::Success)
}

fn schema_errors(errors: Vec<SchemaError>) -> anyhow::Error {
    anyhow::anyhow!("{}", errors.iter().map(ToString::to_string).collect::<Vec<_>>().join("\n"))
}

fn globs(project: &Path) -> Vec<String> {
    Project::load(project).map(|p| p.file.schemas).unwrap_or_else(|_| vec!["**/*.yaml".to_owned()])
}

/// A git tree extracted to a temporary folder.
struct Checkout {
    /// Kept so that the folder lives as long as the checkout.
    _dir: tempfile::TempDir,
    /// The project folder inside the checkout.
    project: PathBuf,
}

fn git(project: &Path, args: &[&str]) -> Result<Vec<u8>> {
    let out = std::process::Command::new("git")
        .args(args)
        .current_dir(project)
        .output()
        .context("cannot run `git`; `REV:path` and `--against` need git installed")?;
    if !out.status.success() {
        bail!("`git {}` failed: {}", args.join(" "), String::from_utf8_lossy(&out.stderr).trim());
    }
    Ok(out.stdout)
}

fn checkout(project: &Path, rev: &str) -> Result<Checkout> {
    let prefix = String::from_utf8(git(project, &["rev-parse", "--show-prefix"])?)?.trim().to_owned();
    let top = PathBuf::from(String::from_utf8(git(project, &["rev-parse", "--show-toplevel"])?)?.trim());
    // From the top level: run in a subfolder, `git archive` would only export that subfolder.
    let tar = git(&top, &["archive", "--format=tar", rev])?;
    let dir = tempfile::tempdir().context("cannot create a temporary folder")?;
    let mut child = std::process::Command::new("tar")
        .args(["-x", "-f", "-", "-C"])
        .arg(dir.path())
        .stdin(std::process::Stdio::piped())
        .spawn()
        .context("cannot run `tar`")?;
    if let Some(stdin) = child.stdin.as_mut() {
        std::io::Write::write_all(stdin, &tar).context("cannot extract the git tree")?;
    }
    if !child.wait()?.success() {
        bail!("cannot extract the tree of `{rev}`");
    }
    let project = dir.path().join(prefix);
    Ok(Checkout { _dir: dir, project })
}

/// Loads one side of a diff: a file (relative to the current folder) or `REV:path`.
fn load_side(project: &Path, spec: &str) -> Result<(Schema, Option<Checkout>)> {
    let project_abs = std::fs::canonicalize(project).with_context(|| format!("cannot open `{}`", project.display()))?;
    if !Path::new(spec).exists()
        && let Some((rev, path)) = spec.split_once(':')
    {
        let co = checkout(project, rev)?;
        let cwd = std::env::current_dir()?;
        let abs = cwd.join(path);
        let rel = abs
            .strip_prefix(&project_abs)
            .with_context(|| format!("`{path}` is not inside the project `{}`", project.display()))?;
        let schema = SchemaSet::resolve_one(&co.project, &globs(&co.project), rel).map_err(schema_errors)?;
        return Ok((schema, Some(co)));
    }
    let abs = std::fs::canonicalize(spec).with_context(|| format!("cannot open `{spec}`"))?;
    let rel = abs
        .strip_prefix(&project_abs)
        .with_context(|| format!("`{spec}` is not inside the project `{}`; pass --project", project.display()))?;
    let schema = SchemaSet::resolve_one(project, &globs(project), rel).map_err(schema_errors)?;
    Ok((schema, None))
}

fn print_changes(title: &str, changes: &[Change]) {
    say!("{title}");
    if changes.is_empty() {
        say!("  no changes");
    }
    for c in changes {
        let class = match c.class {
            Class::Breaking => "breaking    ",
            Class::NonBreaking => "non-breaking",
            Class::Cosmetic => "cosmetic    ",
        };
        say!("  {class} {:<22} {}  {}", c.reason, c.pointer, c.message);
    }
}

fn diff_cmd(project: &Path, old: &str, new: &str, format: Format) -> Result<Exit> {
    let (old_schema, _a) = load_side(project, old)?;
    let (new_schema, _b) = load_side(project, new)?;
    let changes = diff::diff(&old_schema.to_json(), &new_schema.to_json());
    match format {
        Format::Human => {
            print_changes(&format!("{} -> {}", old_schema.id(), new_schema.id()), &changes);
            let b = changes.iter().filter(|c| c.class == Class::Breaking).count();
            let zero = semver::Version::parse(&old_schema.doc.metadata.version).is_ok_and(|v| v.major == 0);
            let note = if zero && b > 0 { " (a minor one while the version is 0.y.z)" } else { "" };
            say!(
                "{} changes, {b} breaking; needs at least a {} version bump{note}",
                changes.len(),
                qpf_schema::bump::required(&changes)
            );
        }
        Format::Json => crate::term::out_json(
            &serde_json::json!({
                "old": old_schema.id(), "new": new_schema.id(),
                "required_bump": qpf_schema::bump::required(&changes).to_string(),
                "changes": changes,
            }),
            false,
        ),
    }
    Ok(Exit::Success)
}

fn check_cmd(project: &Path, rev: &str, format: Format) -> Result<Exit> {
    let current = Project::load(project)?;
    let kinds = qpf_schema::KindRegistry::load(project, &current.kind_schemas()).map_err(schema_errors)?;
    let now = SchemaSet::load(project, &current.file.schemas, &kinds).map_err(schema_errors)?;
    let co = checkout(project, rev)?;
    let old_globs = globs(&co.project);
    let old_files = qpf_schema::find_files(&co.project, &old_globs).unwrap_or_default();
    let mut before: Vec<Schema> = Vec::new();
    for f in &old_files {
        if let Ok(s) = SchemaSet::resolve_one(&co.project, &old_globs, f) {
            before.push(s);
        }
    }
    let results = qpf_schema::version_check::check(&before, now.iter());
    let failed = results.iter().filter(|r| r.fails()).count();
    drop(co);
    match format {
        Format::Json => {
            crate::term::out_json(&serde_json::json!({"against": rev, "failed": failed, "schemas": results}), false)
        }
        Format::Human => {
            for r in &results {
                let status = serde_json::to_value(r.status).ok().and_then(|v| v.as_str().map(str::to_owned));
                let message = r.message.as_deref().map(|m| format!(": {m}")).unwrap_or_default();
                say!("{:<10} {}{message}", status.unwrap_or_default(), r.schema);
            }
            say!("{} schemas checked against `{rev}`, {failed} failing", results.len());
        }
    }
    Ok(if failed > 0 { Exit::Failure } else { Exit::Success })
}

fn load_migrations(project: &Project) -> Result<Vec<(PathBuf, Migration)>> {
    let files = qpf_schema::find_files(&project.root, &project.file.migrations).map_err(schema_errors)?;
    let mut out = Vec::new();
    for rel in files {
        let m: Migration = qpf_schema::yaml::read_file(&project.root.join(&rel), &rel)?;
        out.push((rel, m));
    }
    Ok(out)
}

fn migrate_cmd(project: &Path, files: &[PathBuf], write: bool) -> Result<Exit> {
    let loaded = Project::load(project)?;
    let migrations = load_migrations(&loaded)?;
    if migrations.is_empty() {
        bail!("no migrations: list migration files under `migrations` in qpf.yaml (globs, e.g. `migrations/*.yaml`)");
    }
    for file in files {
        let text = std::fs::read_to_string(file).with_context(|| format!("cannot read `{}`", file.display()))?;
        let mut doc: serde_json::Value = qpf_schema::yaml::from_str(file, &text)?;
        let list: Vec<Migration> = migrations.iter().map(|(_, m)| m.clone()).collect();
        let chain = migrate::migrate_chain(&mut doc, &list).map_err(|(i, e)| {
            anyhow::Error::new(e).context(format!("migration `{}` on `{}`", migrations[i].0.display(), file.display()))
        })?;
        for step in &chain {
            for a in &step.applied {
                esay!("{}: {} ({})", file.display(), a.description, migrations[step.migration].0.display());
            }
        }
        let steps = chain.len();
        if steps == 0 {
            esay!("{}: no migration applies", file.display());
        }
        let mut yaml = serde_saphyr::to_string(&doc).context("cannot write YAML")?;
        if !yaml.ends_with('\n') {
            yaml.push('\n');
        }
        if write {
            qpf_core::fs::write_atomic(file, yaml.as_bytes())
                .with_context(|| format!("cannot replace `{}`", file.display()))?;
        } else {
            crate::term::out(yaml.trim_end_matches('\n'));
        }
    }
    Ok(Exit::Success)
}
