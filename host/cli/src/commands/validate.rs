//! `qpf validate`, the quality gate: load qpf.yaml, the map and every schema (each against its
//! kind's JSON Schema), plan, check every plugin pin and every entry's config against its
//! plugin's config schema ([`qpf_engine::preflight`]), then run each kind's validator plugins on
//! its schemas ([`qpf_engine::Engine::validate`]: sandboxed and cached like any invocation; no
//! file is written). Every problem is reported once, for people, as JSON (`format` 2), or as
//! SARIF 2.1.0 for code-scanning tools ([`crate::problems`]).

use crate::term::{esay, say};
use std::path::Path;

use anyhow::Result;
use qpf_engine::EngineError;

use crate::exit::Exit;
use crate::problems::Problem;

/// The version of `qpf validate --format json`.
pub const VALIDATE_JSON_FORMAT: u32 = 2;

/// Output formats of `qpf validate`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum ValidateFormat {
    /// For people (problems on stderr, the verdict on stdout).
    Human,
    /// One JSON document on stdout (`"format": 2`).
    Json,
    /// A SARIF 2.1.0 log on stdout, for code-scanning tools.
    Sarif,
}

/// Arguments of `qpf validate`.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// Output format.
    #[arg(long, value_enum, default_value = "human")]
    format: ValidateFormat,
    /// Validators to run at once [default: the number of available cores].
    #[arg(long, short = 'j', value_name = "N", value_parser = clap::value_parser!(u32).range(1..=1024))]
    jobs: Option<u32>,
}

/// What the run found.
struct Found {
    problems: Vec<Problem>,
    counts: Option<Counts>,
}

/// The size of a valid project.
struct Counts {
    schemas: usize,
    entries: usize,
    invocations: usize,
    validated: usize,
}

/// Runs the command: exit 0 when nothing of severity `error` was found, 1 otherwise.
///
/// # Errors
/// Only for a missing project (usage error) or unwritable project state; invalid input is
/// reported and gives exit code 1.
pub fn run(project: &Path, args: &Args) -> Result<Exit> {
    let found = find(project, args)?;
    let errors = found.problems.iter().filter(|p| p.severity == "error").count();
    let valid = errors == 0;
    match args.format {
        ValidateFormat::Human => {
            for p in &found.problems {
                p.print();
            }
            let warnings = found.problems.len() - errors;
            match (&found.counts, valid) {
                (Some(c), true) => say!(
                    "ok: {} schemas, {} entries, {} invocations planned; {} validator invocations{}",
                    c.schemas,
                    c.entries,
                    c.invocations,
                    c.validated,
                    if warnings > 0 { format!(", {warnings} warnings") } else { String::new() }
                ),
                _ => esay!("{errors} error(s), {warnings} warning(s) found"),
            }
        }
        ValidateFormat::Json => {
            let mut doc = serde_json::json!({
                "format": VALIDATE_JSON_FORMAT,
                "valid": valid,
                "errors": errors,
                "warnings": found.problems.len() - errors,
                "problems": found.problems,
            });
            if let Some(c) = &found.counts {
                doc["schemas"] = c.schemas.into();
                doc["entries"] = c.entries.into();
                doc["invocations"] = c.invocations.into();
                doc["validator_invocations"] = c.validated.into();
            }
            crate::term::out_json(&doc, false);
        }
        ValidateFormat::Sarif => {
            let log = crate::problems::sarif(&found.problems, project);
            crate::term::out(&serde_json::to_string_pretty(&log).unwrap_or_default());
        }
    }
    Ok(if valid { Exit::Success } else { Exit::Failure })
}

/// Loads, checks and runs the validators; problems of the project stop before the validators.
fn find(project: &Path, args: &Args) -> Result<Found> {
    let invalid = |errors: &[qpf_schema::SchemaError]| {
        // The map's path, for telling project problems from schema problems.
        let map = qpf_engine::project::Project::load(project).map(|p| p.file.map).unwrap_or_default();
        Found { problems: errors.iter().map(|e| Problem::of_schema_error(e, &map)).collect(), counts: None }
    };
    let engine = match crate::commands::load(project) {
        Ok(engine) => engine,
        Err(EngineError::Invalid(errors)) => return Ok(invalid(&errors)),
        Err(EngineError::Project(qpf_engine::project::ProjectError::Invalid(error))) => return Ok(invalid(&[error])),
        Err(e) => return Err(e.into()),
    };
    let map = engine.project().file.map.clone();
    let preflight = qpf_engine::preflight::check(&engine);
    if !preflight.is_empty() {
        return Ok(Found {
            problems: preflight.iter().map(|e| Problem::of_schema_error(e, &map)).collect(),
            counts: None,
        });
    }
    let problems = Problem::of_validators(&engine, args.jobs.map(|j| j as usize))?;
    let plan = &engine.plan().invocations;
    Ok(Found {
        problems,
        counts: Some(Counts {
            schemas: engine.schemas().len(),
            entries: engine.project().map.entries.len(),
            invocations: plan.iter().filter(|i| !i.validator).count(),
            validated: plan.iter().filter(|i| i.validator).count(),
        }),
    })
}
