//! `qpf plan`: every invocation the project would run, with its cache state and, for a miss, why;
//! after the checks of `qpf validate` on plugin pins and configs ([`qpf_engine::preflight`]) and
//! its kind validators, whose problems it prints too (exit code 1 when one is an error).

use crate::term::{esay, say};
use std::path::Path;

use anyhow::Result;
use qpf_engine::Engine;

use super::Format;
use crate::exit::Exit;

/// Arguments of `qpf plan`.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// Print exactly what one invocation's plugin receives (entry, schema, input, config, context)
    /// as JSON, instead of the plan. SCHEMA is `kind/name@version` or a name.
    #[arg(long, num_args = 2, value_names = ["ENTRY", "SCHEMA"])]
    show_request: Option<Vec<String>>,
    /// Output format.
    #[arg(long, value_enum, default_value = "human")]
    format: Format,
}

/// Runs the command.
///
/// # Errors
/// A missing or invalid project.
pub fn run(project: &Path, args: &Args) -> Result<Exit> {
    let engine = crate::commands::load(project)?;
    let problems = qpf_engine::preflight::check(&engine);
    if !problems.is_empty() {
        return Err(qpf_engine::EngineError::Invalid(problems).into());
    }
    if let Some([entry, schema]) = args.show_request.as_deref() {
        return show_request(&engine, entry, schema);
    }
    // Before the cache states: the validators' results are cached, so they show as hits below.
    let problems = crate::problems::Problem::of_validators(&engine, None)?;
    let invalid = problems.iter().any(|p| p.severity == "error");
    let reasons = engine.miss_reasons();
    let plan = &engine.plan().invocations;
    match args.format {
        Format::Human => {
            for p in &problems {
                p.print();
            }
            for (inv, reason) in plan.iter().zip(&reasons) {
                let key = qpf_core::digest::file_stem(&inv.key);
                let state = if reason.is_some() { "miss" } else { "hit" };
                let why = reason.as_deref().map(|r| format!("  ({r})")).unwrap_or_default();
                let out = if inv.validator { "(validator)".to_owned() } else { format!("-> {}/", inv.out_dir) };
                say!(
                    "{state:<5} {:<16} {:<32} {:<14} {out}  key {}{why}",
                    inv.entry,
                    inv.schema,
                    inv.plugin,
                    &key[..12.min(key.len())]
                );
            }
            let hits = reasons.iter().filter(|r| r.is_none()).count();
            say!("{} invocations: {} cached, {} to run", plan.len(), hits, plan.len() - hits);
        }
        Format::Json => {
            let items: Vec<_> = plan
                .iter()
                .zip(&reasons)
                .map(|(inv, reason)| {
                    serde_json::json!({
                        "entry": inv.entry, "schema": inv.schema, "schema_path": inv.schema_path,
                        "plugin": inv.plugin, "out": inv.out_dir, "key": inv.key, "validator": inv.validator,
                        "cache": if reason.is_some() { "miss" } else { "hit" },
                        "reason": reason,
                    })
                })
                .collect();
            crate::term::out_json(&serde_json::json!({ "invocations": items, "problems": problems }), false);
        }
    }
    if invalid {
        esay!("error: the validators found errors: the invocations of those schemas will not run");
        return Ok(Exit::Failure);
    }
    Ok(Exit::Success)
}

/// Prints the request of the invocation of `entry` for `schema`: the JSON document a plugin's
/// `extract` receives, with `input`, `config` and `context` parsed. For an entry with `needs`,
/// `context.upstream` is filled in at run time with the upstream entries' outputs.
fn show_request(engine: &Engine, entry: &str, schema: &str) -> Result<Exit> {
    let plan = &engine.plan().invocations;
    let of_entry: Vec<_> = plan.iter().filter(|i| i.entry == entry).collect();
    if of_entry.is_empty() {
        let ids: Vec<&str> = engine.project().map.entries.iter().map(|e| e.id.as_str()).collect();
        anyhow::bail!("no invocation of entry `{entry}`{}", qpf_schema::document::suggest(entry, &ids));
    }
    let name_of = |id: &str| id.split_once('/').and_then(|(_, rest)| rest.split_once('@')).map(|(n, _)| n.to_owned());
    let found: Vec<_> =
        of_entry.iter().filter(|i| i.schema == schema || name_of(&i.schema).as_deref() == Some(schema)).collect();
    let inv = match found.as_slice() {
        [one] => one,
        [] => anyhow::bail!(
            "entry `{entry}` does not select schema `{schema}`; it selects: {}",
            of_entry.iter().map(|i| format!("`{}`", i.schema)).collect::<Vec<_>>().join(", ")
        ),
        several => anyhow::bail!(
            "several schemas match `{schema}`: {}",
            several.iter().map(|i| format!("`{}`", i.schema)).collect::<Vec<_>>().join(", ")
        ),
    };
    let parse = |text: &str| serde_json::from_str::<serde_json::Value>(text).unwrap_or(serde_json::Value::Null);
    let r = &inv.request;
    let request = serde_json::json!({
        "entry": r.entry,
        "schema": {"kind": r.schema.kind, "name": r.schema.name, "version": r.schema.version},
        "input": parse(&r.input),
        "config": parse(&r.config),
        "context": parse(&r.context),
    });
    // As it is (no `format` key): the file can serve as a `qpf plugin test` case's request.json.
    crate::term::out(&serde_json::to_string_pretty(&request).unwrap_or_default());
    Ok(Exit::Success)
}
