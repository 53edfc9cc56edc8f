//! `qpf plugin test [DIR]`: golden tests for plugin authors.
//!
//! Each folder under `DIR/tests/cases/` is a case:
//!
//! | file | meaning |
//! |---|---|
//! | `request.json` | the whole request, as `qpf plan --show-request ENTRY SCHEMA` prints it for a project (then the four files below are not read) |
//! | `input.json` or `input.yaml` | the selected input (required without `request.json`) |
//! | `config.json` or `config.yaml` | the entry's config (default `{}`), checked against the plugin's config schema |
//! | `schema.json` | `{"kind", "name", "version"}` of the schema (default `Agent/example@1.0.0`) |
//! | `context.json` | the context object (default `{}`) |
//! | `expected/` | exactly the files the plugin must write |
//! | `expected-diagnostics.txt` | with `expected/`: exactly the diagnostics of a success, one per line (`warning: message (at /pointer)`) |
//! | `expected-spawns.json` | with `expected/`: exactly the spawns a success asks for (`[{"plugin", "input", "config"}]`, input and config as JSON); none when absent |
//! | `expected-error.txt` | or: text the plugin's error message must contain |
//! | `expected-error.regex` | or: a regular expression the error message must match |
//!
//! `QPF_BLESS=1` accepts what the plugin does now as the expectation: the files and the
//! diagnostics of a success; the first line of an error (its message, without diagnostics, so that
//! a reworded detail does not break the case).

use crate::term::say;
use qpf_engine::report::FailureKind;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result, anyhow, bail};

use super::{default_wasm, manifest};
use crate::exit::Exit;

/// Arguments of `qpf plugin test`.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// The plugin folder (holding qpf-plugin.yaml and tests/cases/).
    #[arg(default_value = ".")]
    dir: PathBuf,
    /// The component to test (default: DIR/dist/NAME.wasm, as `qpf plugin build` writes it).
    #[arg(long, value_name = "FILE")]
    wasm: Option<PathBuf>,
}

/// What one case produced.
enum Outcome {
    /// The files, the diagnostics as lines, the paths of the files in `scaffold` mode, and the
    /// spawns asked for (`[{"plugin", "input", "config"}]`).
    Files(BTreeMap<String, Vec<u8>>, Vec<String>, Vec<String>, Vec<serde_json::Value>),
    /// The error message, then its diagnostics, one per line.
    Error(String),
}

/// A diagnostic as one line of `expected-diagnostics.txt`.
fn diagnostic_line(d: &qpf_runtime::Diagnostic) -> String {
    let at = d.pointer.as_ref().map(|p| format!(" (at `{p}`)")).unwrap_or_default();
    format!("{}: {}{at}", format!("{:?}", d.severity).to_lowercase(), d.message)
}

fn read_value(dir: &Path, stem: &str) -> Result<Option<serde_json::Value>> {
    for (ext, yaml) in [("json", false), ("yaml", true), ("yml", true)] {
        let path = dir.join(format!("{stem}.{ext}"));
        if let Ok(text) = std::fs::read_to_string(&path) {
            let value = if yaml {
                serde_saphyr::from_str(&text).map_err(|e| anyhow!("{}: {e}", path.display()))?
            } else {
                serde_json::from_str(&text).map_err(|e| anyhow!("{}: {e}", path.display()))?
            };
            return Ok(Some(value));
        }
    }
    Ok(None)
}

/// `request.json`: a whole request, as `qpf plan --show-request` prints it.
fn read_request(case: &Path) -> Result<Option<serde_json::Value>> {
    let path = case.join("request.json");
    let Ok(text) = std::fs::read_to_string(&path) else { return Ok(None) };
    let value: serde_json::Value = serde_json::from_str(&text).map_err(|e| anyhow!("{}: {e}", path.display()))?;
    if !value.is_object() || value.get("input").is_none() {
        bail!("{}: not a request (`qpf plan --show-request ENTRY SCHEMA` prints one)", path.display());
    }
    Ok(Some(value))
}

fn read_tree(dir: &Path) -> Result<BTreeMap<String, Vec<u8>>> {
    let mut files = BTreeMap::new();
    if !dir.is_dir() {
        return Ok(files);
    }
    for entry in walkdir::WalkDir::new(dir).sort_by_file_name() {
        let entry = entry?;
        if entry.file_type().is_file() {
            let rel = entry.path().strip_prefix(dir)?.to_string_lossy().replace('\\', "/");
            files.insert(rel, std::fs::read(entry.path())?);
        }
    }
    Ok(files)
}

/// Runs one case against the loaded plugin.
fn run_case(loaded: &qpf_engine::standalone::Loaded<'_>, case: &Path) -> Result<Outcome> {
    let plugin = loaded.plugin();
    let request = read_request(case)?;
    let (input, config, context, schema) = match &request {
        Some(r) => (r["input"].clone(), r["config"].clone(), r["context"].clone(), r["schema"].clone()),
        None => (
            read_value(case, "input")?
                .with_context(|| format!("{} has no request.json, input.json or input.yaml", case.display()))?,
            read_value(case, "config")?.unwrap_or_else(|| serde_json::json!({})),
            read_value(case, "context")?.unwrap_or_else(|| serde_json::json!({})),
            read_value(case, "schema")?.unwrap_or_else(|| serde_json::json!({})),
        ),
    };
    let config = if config.is_null() { serde_json::json!({}) } else { config };
    let context = if context.is_null() { serde_json::json!({}) } else { context };
    let field = |k: &str, default: &str| schema.get(k).and_then(|v| v.as_str()).unwrap_or(default).to_owned();
    let entry = request.as_ref().and_then(|r| r["entry"].as_str()).unwrap_or("test").to_owned();
    let request = qpf_runtime::Request {
        entry,
        schema: qpf_runtime::SchemaId {
            kind: field("kind", "Agent"),
            name: field("name", "example"),
            version: field("version", "1.0.0"),
        },
        input: qpf_engine::canonical::to_string(&input),
        config: qpf_engine::canonical::to_string(&config),
        context: context.to_string(),
    };
    // The same checks as `qpf extract` (kinds, config schema, sandbox, output rules), without a cache.
    let call = loaded.invoke(&request);
    match call.result {
        Err(e) if e.kind == FailureKind::Plugin => {
            let mut message = e.message.clone();
            for d in &call.diagnostics {
                message.push('\n');
                message.push_str(&diagnostic_line(d));
            }
            Ok(Outcome::Error(message))
        }
        Err(e) if e.kind == FailureKind::Config => Ok(Outcome::Error(format!("config error: {}", e.message))),
        Err(e) => bail!("plugin `{}`: {} error: {}", plugin.name(), e.kind, e.message),
        Ok(files) => {
            let mut scaffolds: Vec<String> =
                files.iter().filter(|f| !f.mode.is_generated()).map(|f| f.path.clone()).collect();
            scaffolds.sort();
            let json = |text: &str| serde_json::from_str(text).unwrap_or_else(|_| serde_json::json!(text));
            let spawns = call
                .spawns
                .iter()
                .map(|s| serde_json::json!({"plugin": s.plugin, "input": json(&s.input), "config": json(&s.config)}))
                .collect();
            Ok(Outcome::Files(
                files.into_iter().map(|f| (f.path, f.bytes)).collect(),
                call.diagnostics.iter().map(diagnostic_line).collect(),
                scaffolds,
                spawns,
            ))
        }
    }
}

/// The differences between the expected and the actual files, as text for the author.
fn compare(expected: &BTreeMap<String, Vec<u8>>, actual: &BTreeMap<String, Vec<u8>>) -> Vec<String> {
    let mut problems = Vec::new();
    for path in expected.keys().filter(|p| !actual.contains_key(*p)) {
        problems.push(format!("missing file `{path}`"));
    }
    for path in actual.keys().filter(|p| !expected.contains_key(*p)) {
        problems.push(format!("unexpected file `{path}`"));
    }
    for (path, want) in expected {
        let Some(got) = actual.get(path) else { continue };
        if want == got {
            continue;
        }
        match (std::str::from_utf8(want), std::str::from_utf8(got)) {
            (Ok(w), Ok(g)) => {
                let diff = similar::TextDiff::from_lines(w, g);
                problems.push(format!(
                    "`{path}` differs:\n{}",
                    diff.unified_diff().context_radius(3).header("expected", "actual")
                ));
            }
            _ => problems.push(format!("`{path}` differs ({} bytes expected, {} written)", want.len(), got.len())),
        }
    }
    problems
}

fn bless(case: &Path, outcome: &Outcome) -> Result<()> {
    let expected = case.join("expected");
    let _ = std::fs::remove_dir_all(&expected);
    for stale in [
        "expected-error.txt",
        "expected-error.regex",
        "expected-diagnostics.txt",
        "expected-scaffolds.txt",
        "expected-spawns.json",
    ] {
        let _ = std::fs::remove_file(case.join(stale));
    }
    match outcome {
        Outcome::Error(message) => {
            let first = message.lines().next().unwrap_or_default();
            std::fs::write(case.join("expected-error.txt"), format!("{first}\n"))?;
        }
        Outcome::Files(files, diagnostics, scaffolds, spawns) => {
            if !spawns.is_empty() {
                std::fs::write(case.join("expected-spawns.json"), serde_json::to_string_pretty(spawns)? + "\n")?;
            }
            if !scaffolds.is_empty() {
                std::fs::write(case.join("expected-scaffolds.txt"), scaffolds.join("\n") + "\n")?;
            }
            for (path, bytes) in files {
                let to = expected.join(path);
                std::fs::create_dir_all(to.parent().unwrap_or(&expected))?;
                std::fs::write(&to, bytes)?;
            }
            if !diagnostics.is_empty() {
                std::fs::write(case.join("expected-diagnostics.txt"), diagnostics.join("\n") + "\n")?;
            }
        }
    }
    Ok(())
}

/// What `expected` means in a case: an error (`expected-error.txt` as text it contains, or
/// `expected-error.regex` as a pattern it matches), or files (`expected/`) and, when given,
/// exactly the diagnostics in `expected-diagnostics.txt`.
enum Expectation {
    Contains(String),
    Matches(regex::Regex),
    Files { diagnostics: Option<Vec<String>>, scaffolds: Vec<String>, spawns: Vec<serde_json::Value> },
}

fn expectation(case: &Path) -> Result<Expectation> {
    if let Ok(pattern) = std::fs::read_to_string(case.join("expected-error.regex")) {
        let regex = regex::RegexBuilder::new(pattern.trim()).size_limit(1 << 20).build().with_context(|| {
            format!("`{}`: not a valid regular expression", case.join("expected-error.regex").display())
        })?;
        return Ok(Expectation::Matches(regex));
    }
    if let Ok(text) = std::fs::read_to_string(case.join("expected-error.txt")) {
        return Ok(Expectation::Contains(text.trim().to_owned()));
    }
    let diagnostics = std::fs::read_to_string(case.join("expected-diagnostics.txt"))
        .ok()
        .map(|t| t.lines().map(str::trim).filter(|l| !l.is_empty()).map(str::to_owned).collect());
    let scaffolds = std::fs::read_to_string(case.join("expected-scaffolds.txt"))
        .map(|t| t.lines().map(str::trim).filter(|l| !l.is_empty()).map(str::to_owned).collect())
        .unwrap_or_default();
    let spawns = match std::fs::read_to_string(case.join("expected-spawns.json")) {
        Ok(text) => serde_json::from_str(&text)
            .with_context(|| format!("`{}`: not a JSON array", case.join("expected-spawns.json").display()))?,
        Err(_) => Vec::new(),
    };
    Ok(Expectation::Files { diagnostics, scaffolds, spawns })
}

/// The ways `outcome` differs from what the case expects (empty: the case passes).
fn check(case: &Path, outcome: &Outcome) -> Result<Vec<String>> {
    Ok(match (expectation(case)?, outcome) {
        (Expectation::Contains(want), Outcome::Error(message)) if message.contains(&want) => Vec::new(),
        (Expectation::Contains(want), Outcome::Error(message)) => {
            vec![format!("the error `{message}` does not contain `{want}`")]
        }
        (Expectation::Matches(re), Outcome::Error(message)) if re.is_match(message) => Vec::new(),
        (Expectation::Matches(re), Outcome::Error(message)) => {
            vec![format!("the error `{message}` does not match `{}`", re.as_str())]
        }
        (Expectation::Contains(want), Outcome::Files(..)) => {
            vec![format!("expected an error containing `{want}`, but the plugin succeeded")]
        }
        (Expectation::Matches(re), Outcome::Files(..)) => {
            vec![format!("expected an error matching `{}`, but the plugin succeeded", re.as_str())]
        }
        (Expectation::Files { .. }, Outcome::Error(message)) => vec![format!("the plugin failed: {message}")],
        (
            Expectation::Files { diagnostics, scaffolds, spawns },
            Outcome::Files(files, actual, actual_scaffolds, asked),
        ) => {
            let mut problems = compare(&read_tree(&case.join("expected"))?, files);
            if &spawns != asked {
                let show = |s: &[serde_json::Value]| {
                    if s.is_empty() { "(none)".to_owned() } else { serde_json::to_string(s).unwrap_or_default() }
                };
                problems.push(format!(
                    "the spawns (`expected-spawns.json`) differ:\n  expected: {}\n  actual:   {}",
                    show(&spawns),
                    show(asked)
                ));
            }
            let mut scaffolds = scaffolds;
            scaffolds.sort();
            if &scaffolds != actual_scaffolds {
                let show = |d: &[String]| if d.is_empty() { "(none)".to_owned() } else { d.join(", ") };
                problems.push(format!(
                    "the scaffold files (`expected-scaffolds.txt`) differ: expected {}, actual {}",
                    show(&scaffolds),
                    show(actual_scaffolds)
                ));
            }
            if let Some(want) = diagnostics
                && &want != actual
            {
                let show = |d: &[String]| if d.is_empty() { "(none)".to_owned() } else { d.join("\n    ") };
                problems.push(format!(
                    "the diagnostics differ:\n  expected:\n    {}\n  actual:\n    {}",
                    show(&want),
                    show(actual)
                ));
            }
            problems
        }
    })
}

/// Runs the command: exit 0 when every case passes, 1 otherwise.
///
/// # Errors
/// No plugin folder, no component, or no cases.
pub fn run(args: &Args) -> Result<Exit> {
    let m = manifest(&args.dir)?;
    let wasm = args.wasm.clone().unwrap_or_else(|| default_wasm(&args.dir, &m));
    if !wasm.is_file() {
        bail!("`{}` does not exist: run `qpf plugin build {}` first", wasm.display(), args.dir.display());
    }
    let bench = super::workbench()?;
    let loaded = bench.load(&wasm)?;
    let cases_dir = args.dir.join("tests/cases");
    let mut cases: Vec<PathBuf> = std::fs::read_dir(&cases_dir)
        .with_context(|| format!("no cases: `{}` does not exist", cases_dir.display()))?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.is_dir())
        .collect();
    cases.sort();
    if cases.is_empty() {
        bail!("no cases under `{}`", cases_dir.display());
    }
    // `QPF_BLESS=1`, and no other value, accepts the current output (one switch for every golden test).
    let blessing = std::env::var_os("QPF_BLESS").is_some_and(|v| v == "1");
    let mut failed = 0;
    for case in &cases {
        let name = case.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
        let outcome = match run_case(&loaded, case) {
            Ok(o) => o,
            Err(e) => {
                failed += 1;
                say!("case {name} ... FAILED\n  {e:#}");
                continue;
            }
        };
        let problems = match check(case, &outcome) {
            Ok(p) => p,
            Err(e) => vec![format!("{e:#}")],
        };
        if problems.is_empty() {
            say!("case {name} ... ok");
            // Warnings and notes of a success are shown even when not asserted.
            if let Outcome::Files(_, diagnostics, _, _) = &outcome {
                for d in diagnostics {
                    // Plugin text: continuation lines indented, so none passes for a case line.
                    say!("  {}", crate::term::block(d));
                }
            }
        } else if blessing {
            bless(case, &outcome)?;
            say!("case {name} ... blessed");
        } else {
            failed += 1;
            say!("case {name} ... FAILED");
            for p in problems {
                say!("  {}", p.replace('\n', "\n  "));
            }
        }
    }
    say!(
        "{} cases, {} passed, {failed} failed ({} {})",
        cases.len(),
        cases.len() - failed,
        loaded.plugin().name(),
        wasm.display()
    );
    if failed > 0 && !blessing {
        say!("QPF_BLESS=1 accepts the plugin's current output as the expectation");
    }
    Ok(if failed == 0 { Exit::Success } else { Exit::Failure })
}
