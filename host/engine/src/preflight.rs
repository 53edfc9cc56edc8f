//! Checks that `qpf validate` and `qpf plan` make before anything runs, so that a stale pin or a
//! bad config is found at once and in full, not one at a time at extract time:
//! - [`pins`]: every plugin an entry uses (or may spawn) against its pin in `qpf.yaml`, all
//!   mismatches listed, each at the pin's line and column;
//! - [`configs`]: every entry's `config` against its plugin's config schema (from `info()`), each
//!   problem at the map's line and column of the value at fault.

use std::collections::BTreeSet;
use std::path::Path;

use qpf_runtime::LoadError;
use qpf_schema::SchemaError;
use qpf_schema::provenance::{Provenance, locate};

use crate::Engine;
use crate::project::PROJECT_FILE;

/// JSON Pointer → position for a YAML file of the project (empty when it cannot be read: the
/// project loaded, so this only loses positions, never problems).
fn positions(root: &Path, file: &Path) -> Provenance {
    let mut provenance = Provenance::new();
    if let Ok(text) = qpf_schema::yaml::read_text(&root.join(file), file)
        && let Ok(node) = qpf_schema::yaml::parse_node(file, &text)
    {
        node.to_json(file, "", &mut provenance);
    }
    provenance
}

fn at(provenance: &Provenance, file: &Path, pointer: &str, message: String) -> SchemaError {
    let mut error = SchemaError::file(file, message);
    if let Some(origin) = locate(provenance, pointer) {
        (error.line, error.column) = (origin.line, origin.column);
    }
    error
}

/// The plugins the map uses: entries' plugins and the plugins they may spawn.
fn used(engine: &Engine) -> BTreeSet<&str> {
    let entries = &engine.project().map.entries;
    entries
        .iter()
        .flat_map(|e| std::iter::once(e.plugin.as_str()).chain(e.spawn.plugins.iter().map(String::as_str)))
        .collect()
}

/// Both checks: pins, then configs for the plugins whose pin holds (a plugin that does not match
/// its pin is not loaded). Empty when everything is in order.
pub fn check(engine: &Engine) -> Vec<SchemaError> {
    let (mut problems, stale) = pins_and_stale(engine);
    problems.extend(configs_except(engine, &stale));
    problems
}

/// Every used plugin's file against its pin: one problem per plugin whose file is missing,
/// unreadable or has another digest.
pub fn pins(engine: &Engine) -> Vec<SchemaError> {
    pins_and_stale(engine).0
}

/// [`pins`], and the names of the plugins at fault.
fn pins_and_stale(engine: &Engine) -> (Vec<SchemaError>, BTreeSet<String>) {
    let file = Path::new(PROJECT_FILE);
    let provenance = positions(&engine.project().root, file);
    let mut problems = Vec::new();
    let mut stale = BTreeSet::new();
    for (name, problem) in engine.pin_problems(used(engine)) {
        let pointer = format!("/plugins/{}/digest", qpf_schema::provenance::escape_pointer(name));
        let message = match problem {
            LoadError::DigestMismatch { path, expected, actual } => format!(
                "plugin `{name}`: `{}` has digest {actual}, but it is pinned to {expected}; if the rebuild is \
                 intended, pin the new digest in `{PROJECT_FILE}`",
                path.display()
            ),
            other => format!("plugin `{name}`: {other}"),
        };
        problems.push(at(&provenance, file, &pointer, message));
        stale.insert(name.to_owned());
    }
    (problems, stale)
}

/// Every entry's `config` against its plugin's config schema. Loads (compiles, or takes from the
/// compiled cache) each plugin that declares one; a plugin that does not load is reported once.
pub fn configs(engine: &Engine) -> Vec<SchemaError> {
    configs_except(engine, &BTreeSet::new())
}

fn configs_except(engine: &Engine, skip: &BTreeSet<String>) -> Vec<SchemaError> {
    let project = engine.project();
    let map_file = project.file.map.clone();
    let provenance = positions(&project.root, &map_file);
    let plugins = crate::invoker::Plugins::new(engine, 1);
    let mut problems = Vec::new();
    let mut broken = BTreeSet::new();
    for (i, entry) in project.map.entries.iter().enumerate() {
        let name = entry.plugin.as_str();
        if broken.contains(name) || skip.contains(name) {
            continue;
        }
        let schema = plugins.get(name).and_then(|(_, plugin)| plugins.config_schema(name, plugin));
        let pointer = format!("/entries/{i}/config");
        match schema {
            Err(e) => {
                broken.insert(name);
                let at_plugin = format!("/entries/{i}/plugin");
                problems.push(at(&provenance, &map_file, &at_plugin, format!("entry `{}`: {e}", entry.id)));
            }
            Ok(None) => {}
            Ok(Some(schema)) => {
                for (path, why) in schema.errors(&entry.config) {
                    let message = format!(
                        "entry `{}`: config{} does not match what plugin `{name}` accepts: {why}",
                        entry.id,
                        if path.is_empty() { String::new() } else { format!(" at `{path}`") }
                    );
                    problems.push(at(&provenance, &map_file, &format!("{pointer}{path}"), message));
                }
            }
        }
    }
    problems
}
