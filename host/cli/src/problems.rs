//! Problems as the user reads them, one line (and its excerpt) per distinct problem: the
//! diagnostics and failures of a run (`qpf extract`), and everything `qpf validate` finds (the
//! project's and schemas' own errors, and each kind validator's diagnostics) in the three
//! formats it prints: for people, as versioned JSON, and as SARIF 2.1.0 for code-scanning tools.

use std::collections::HashMap;
use std::path::Path;

use qpf_engine::report::{InvocationReport, Outcome, Report};
use qpf_runtime::Severity;
use qpf_schema::SchemaError;
use serde::Serialize;

use crate::term::esay;

/// Groups equal items (by `key`) in first-seen order, each with every invocation that raised it.
fn group_by<'a, K: Eq + std::hash::Hash, T>(
    items: impl Iterator<Item = (K, T, &'a InvocationReport)>,
) -> Vec<(T, Vec<&'a InvocationReport>)> {
    let mut groups: Vec<(T, Vec<&InvocationReport>)> = Vec::new();
    let mut index: HashMap<K, usize> = HashMap::new();
    for (key, item, inv) in items {
        match index.get(&key) {
            Some(&i) => groups[i].1.push(inv),
            None => {
                index.insert(key, groups.len());
                groups.push((item, vec![inv]));
            }
        }
    }
    groups
}

/// Entries named, at most, in one line about a message several raised (the report has them all).
const MAX_RAISERS_SHOWN: usize = 12;

/// Who raised a message: `entry `e`, schema `s`, plugin `p`` for one invocation; for several (of
/// one schema, since the message is keyed by it), the schema once and the entries with their
/// plugins, the first [`MAX_RAISERS_SHOWN`] of them.
fn raised_by(invs: &[&InvocationReport]) -> String {
    match invs {
        [one] => format!("entry `{}`, schema `{}`, plugin `{}`", one.entry, one.schema, one.plugin),
        many => {
            let mut names: Vec<String> =
                many.iter().take(MAX_RAISERS_SHOWN).map(|i| format!("`{}` (plugin `{}`)", i.entry, i.plugin)).collect();
            if many.len() > MAX_RAISERS_SHOWN {
                names.push(format!("and {} more (see --report)", many.len() - MAX_RAISERS_SHOWN));
            }
            format!("schema `{}`; raised by {} entries: {}", many[0].schema, many.len(), names.join(", "))
        }
    }
}

fn severity_name(severity: Severity) -> &'static str {
    match severity {
        Severity::Error => "error",
        Severity::Warning => "warning",
        Severity::Info => "info",
    }
}

/// `error` or `error[RULE]`, as rustc prints its codes.
fn headline(severity: &str, rule: Option<&str>) -> String {
    match rule {
        Some(rule) => format!("{severity}[{}]", crate::term::one(rule)),
        None => severity.to_owned(),
    }
}

/// The run's warnings and every plugin diagnostic, with where it points and what it came through.
/// A diagnostic several invocations raised (same severity, rule, place, message and schema) is
/// printed once, naming them all; the report keeps every one.
pub fn print_diagnostics(report: &Report) {
    for warning in &report.warnings {
        esay!("warning: {}", crate::term::block(warning));
    }
    let all = report.invocations.iter().flat_map(|inv| inv.diagnostics.iter().map(move |d| (d, inv)));
    let keyed = all.map(|(d, inv)| {
        let at = match (&d.location, &d.pointer) {
            (Some(loc), _) => format!("{loc}: "),
            (None, Some(p)) => format!("`{p}`: "),
            (None, None) => String::new(),
        };
        let head = headline(severity_name(d.severity), d.rule.as_deref());
        ((head.clone(), at.clone(), d.message.as_str(), inv.schema.as_str()), (head, at, d), inv)
    });
    for ((head, at, d), invs) in group_by(keyed) {
        esay!("{head}: {}{} ({})", crate::term::one(&at), crate::term::block(&d.message), raised_by(&invs));
        if let Some(excerpt) = &d.excerpt {
            esay!("{excerpt}");
        }
        for via in &d.via {
            esay!("  = note: via {via}");
        }
    }
}

/// One line per distinct failure (same kind, message and schema), naming every invocation that
/// failed so. Invocations a failed validator kept from running are left to the summary: the
/// validator's own line and diagnostics say why.
pub fn print_failures(report: &Report) {
    let failed = report
        .invocations
        .iter()
        .filter(|i| i.outcome != Outcome::Ok && !i.error.as_ref().is_some_and(|e| e.gated_by_validator()));
    let keyed = failed.filter_map(|inv| {
        inv.error.as_ref().map(|e| ((e.kind.to_string(), e.message.as_str(), inv.schema.as_str()), e, inv))
    });
    for (e, invs) in group_by(keyed) {
        esay!("error: {}: {} error: {}", raised_by(&invs), e.kind, crate::term::block(&e.message));
    }
}

/// The host's own rules: what `qpf.yaml` and the map must be, what a schema file must be, and a
/// validator that did not run to the end.
pub const HOST_RULES: [(&str, &str); 3] = [
    ("qpf/project", "`qpf.yaml`, the extractor map, plugin pins and entry configs are valid (see docs/project.md)."),
    (
        "qpf/schema",
        "A schema file is valid YAML with apiVersion, kind, metadata {name, version} and spec; its imports and `extends` resolve; the resolved schema matches its kind's JSON Schema (see docs/schemas.md).",
    ),
    (
        "qpf/validator-failed",
        "A validator plugin of the schema's kind ran to the end (no trap, limit, load or output error): until it does, the schema is not checked and its generators do not run.",
    ),
];

/// Who raised a problem (a validator's entry and plugin).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Raiser {
    /// `validate/PLUGIN`.
    pub entry: String,
    /// The plugin.
    pub plugin: String,
}

/// One problem `qpf validate` found: an element of its JSON output (`format` 2) and a SARIF result.
#[derive(Debug, Clone, Serialize)]
pub struct Problem {
    /// `error`, `warning` or `info`.
    pub severity: &'static str,
    /// `qpf/...` for the host's rules, or the rule a validator names.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub rule: Option<String>,
    /// What is wrong, and what to do about it.
    pub message: String,
    /// The file, relative to the project root, when known.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub file: Option<String>,
    /// 1-based line, when known.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub line: Option<u64>,
    /// 1-based column, when known.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub column: Option<u64>,
    /// The schema (`kind/name@version`) a validator checked.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub schema: Option<String>,
    /// The JSON Pointer into the validator's input, as it gave it.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub pointer: Option<String>,
    /// The source line with a caret.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub excerpt: Option<String>,
    /// Further context (the imports a value came through).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub notes: Vec<String>,
    /// The validators that raised it (each problem is listed once).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub raised_by: Vec<Raiser>,
}

impl Problem {
    /// A problem of the project or a schema file: `qpf/project` for `qpf.yaml` and the map,
    /// `qpf/schema` for the rest.
    pub fn of_schema_error(e: &SchemaError, map: &Path) -> Problem {
        let path = e.path.to_string_lossy().replace('\\', "/");
        let project = e.path == Path::new(qpf_engine::project::PROJECT_FILE) || e.path == map;
        Problem {
            severity: "error",
            rule: Some(if project { "qpf/project" } else { "qpf/schema" }.to_owned()),
            message: e.message.clone(),
            file: (!path.is_empty()).then_some(path),
            line: (e.line > 0).then_some(e.line),
            column: (e.column > 0).then_some(e.column),
            schema: None,
            pointer: None,
            excerpt: e.excerpt.clone(),
            notes: e.notes.clone(),
            raised_by: Vec::new(),
        }
    }

    /// The validators' problems in a report of [`qpf_engine::Engine::validate`]: each distinct
    /// diagnostic once (same severity, rule, place, message and schema), with every validator that
    /// raised it, then each validator that failed to run. `schema_file` gives a schema's file.
    pub fn of_report(report: &Report, schema_file: &dyn Fn(&str) -> Option<String>) -> Vec<Problem> {
        let all = report.invocations.iter().flat_map(|inv| inv.diagnostics.iter().map(move |d| (d, inv)));
        let keyed = all.map(|(d, inv)| {
            let key = (
                severity_name(d.severity),
                d.rule.as_deref(),
                d.location.as_deref(),
                d.pointer.as_deref(),
                d.message.as_str(),
            );
            ((key, inv.schema.as_str()), d, inv)
        });
        let mut problems: Vec<Problem> = group_by(keyed)
            .into_iter()
            .map(|(d, invs)| {
                let (file, line, column) = match d.location.as_deref().map(split_location) {
                    Some((file, line, column)) => (Some(file), line, column),
                    None => (schema_file(&invs[0].schema), None, None),
                };
                Problem {
                    severity: severity_name(d.severity),
                    rule: d.rule.clone(),
                    message: d.message.clone(),
                    file,
                    line,
                    column,
                    schema: Some(invs[0].schema.clone()),
                    pointer: d.pointer.clone(),
                    excerpt: d.excerpt.clone(),
                    notes: d.via.iter().map(|v| format!("via {v}")).collect(),
                    raised_by: invs
                        .iter()
                        .map(|i| Raiser { entry: i.entry.clone(), plugin: i.plugin.clone() })
                        .collect(),
                }
            })
            .collect();
        for inv in &report.invocations {
            let Some(e) = &inv.error else { continue };
            if e.kind == qpf_engine::report::FailureKind::Invalid {
                continue;
            }
            problems.push(Problem {
                severity: "error",
                rule: Some("qpf/validator-failed".to_owned()),
                message: format!(
                    "the validator `{}` failed on `{}`: {} error: {}",
                    inv.plugin, inv.schema, e.kind, e.message
                ),
                file: schema_file(&inv.schema),
                line: None,
                column: None,
                schema: Some(inv.schema.clone()),
                pointer: None,
                excerpt: None,
                notes: Vec::new(),
                raised_by: vec![Raiser { entry: inv.entry.clone(), plugin: inv.plugin.clone() }],
            });
        }
        problems
    }

    /// Runs the kind validators of `engine`'s project ([`qpf_engine::Engine::validate`]), `jobs`
    /// at a time (default: the available cores), and returns their problems ([`Problem::of_report`]).
    ///
    /// # Errors
    /// What stops a run before any invocation (unwritable project state).
    pub fn of_validators(
        engine: &qpf_engine::Engine,
        jobs: Option<usize>,
    ) -> Result<Vec<Problem>, qpf_engine::EngineError> {
        let jobs = jobs.unwrap_or_else(|| std::thread::available_parallelism().map_or(1, |n| n.get()));
        let options = qpf_engine::ExtractOptions {
            jobs,
            out: None,
            no_cache: false,
            fail_fast: false,
            require_hits: false,
            shard: None,
        };
        let report = engine.validate(&options, &|_| {})?;
        let schema_file = |id: &str| engine.schemas().get(id).map(|s| s.path.to_string_lossy().replace('\\', "/"));
        Ok(Self::of_report(&report, &schema_file))
    }

    /// Prints the problem for people: `error[RULE]: FILE:LINE:COL: message (who)`, the excerpt
    /// and the notes.
    pub fn print(&self) {
        let at = match (&self.file, self.line, self.column) {
            (Some(f), Some(l), Some(c)) => format!("{f}:{l}:{c}: "),
            (Some(f), Some(l), None) => format!("{f}:{l}: "),
            (Some(f), None, _) => format!("{f}: "),
            (None, ..) => String::new(),
        };
        let who = match self.raised_by.as_slice() {
            [] => String::new(),
            raisers => format!(
                " (schema `{}`; validator {})",
                self.schema.as_deref().unwrap_or_default(),
                raisers.iter().map(|r| format!("`{}`", r.plugin)).collect::<Vec<_>>().join(", ")
            ),
        };
        esay!(
            "{}: {}{}{who}",
            headline(self.severity, self.rule.as_deref()),
            crate::term::one(&at),
            crate::term::block(&self.message)
        );
        if let Some(excerpt) = &self.excerpt {
            esay!("{excerpt}");
        }
        for note in &self.notes {
            esay!("  = note: {note}");
        }
    }
}

/// `file:line:column` (the file may hold `:`) into its parts.
fn split_location(location: &str) -> (String, Option<u64>, Option<u64>) {
    let mut parts = location.rsplitn(3, ':');
    let (column, line, file) = (parts.next(), parts.next(), parts.next());
    match (file, line.and_then(|l| l.parse().ok()), column.and_then(|c| c.parse().ok())) {
        (Some(file), Some(line), Some(column)) => (file.to_owned(), Some(line), Some(column)),
        _ => (location.to_owned(), None, None),
    }
}

/// The SARIF 2.1.0 log of `problems` (<https://docs.oasis-open.org/sarif/sarif/v2.1.0/>), one run
/// of the tool `qpf`. Every rule that occurs is described in `tool.driver.rules`: the host's own
/// with their help text, a validator's by its id and the plugin that raised it. File locations are
/// `project_dir` joined with the file, relative when `--project` was (so they are relative to the
/// folder `qpf` ran in, the repository's root in CI), with `/` separators.
pub fn sarif(problems: &[Problem], project_dir: &Path) -> serde_json::Value {
    use serde_json::json;
    let mut rules: Vec<serde_json::Value> = Vec::new();
    let mut rule_index: HashMap<String, usize> = HashMap::new();
    let mut add_rule = |id: &str, rule: serde_json::Value| -> usize {
        *rule_index.entry(id.to_owned()).or_insert_with(|| {
            rules.push(rule);
            rules.len() - 1
        })
    };
    for (id, help) in HOST_RULES {
        add_rule(
            id,
            json!({"id": id, "shortDescription": {"text": help}, "help": {"text": help}, "properties": {"source": "qpf"}}),
        );
    }
    let results: Vec<serde_json::Value> = problems
        .iter()
        .map(|p| {
            let id = p.rule.clone().unwrap_or_else(|| "qpf/unnamed".to_owned());
            let plugins: Vec<&str> = p.raised_by.iter().map(|r| r.plugin.as_str()).collect();
            let index = add_rule(&id, {
                let text = format!(
                    "Rule `{id}` of the validator {}; its documentation describes it.",
                    plugins.iter().map(|p| format!("`{p}`")).collect::<Vec<_>>().join(", ")
                );
                json!({"id": id, "shortDescription": {"text": text}, "help": {"text": text}, "properties": {"source": plugins}})
            });
            let mut result = json!({
                "ruleId": id,
                "ruleIndex": index,
                "level": match p.severity { "error" => "error", "warning" => "warning", _ => "note" },
                "message": {"text": p.message},
            });
            if let Some(file) = &p.file {
                let mut physical = json!({"artifactLocation": {"uri": uri(&project_dir.join(file))}});
                if let Some(line) = p.line {
                    physical["region"] = json!({"startLine": line});
                    if let Some(column) = p.column {
                        physical["region"]["startColumn"] = json!(column);
                    }
                }
                let mut location = json!({"physicalLocation": physical});
                if let Some(pointer) = &p.pointer {
                    location["logicalLocations"] =
                        json!([{"fullyQualifiedName": format!("{}#{pointer}", p.schema.as_deref().unwrap_or_default())}]);
                }
                result["locations"] = json!([location]);
            }
            let mut properties = serde_json::Map::new();
            if let Some(schema) = &p.schema {
                properties.insert("schema".into(), json!(schema));
            }
            if !p.raised_by.is_empty() {
                properties.insert("raisedBy".into(), json!(p.raised_by));
            }
            if !properties.is_empty() {
                result["properties"] = serde_json::Value::Object(properties);
            }
            result
        })
        .collect();
    json!({
        "$schema": "https://json.schemastore.org/sarif-2.1.0.json",
        "version": "2.1.0",
        "runs": [{
            "tool": {"driver": {
                "name": "qpf",
                "version": env!("CARGO_PKG_VERSION"),
                "informationUri": "https://example.invalid/qpf",
                "rules": rules,
            }},
            "columnKind": "unicodeCodePoints",
            "results": results,
        }],
    })
}

/// A path as a URI reference: percent-encoded, `/`-separated; `file://` when absolute.
fn uri(path: &Path) -> String {
    if path.is_absolute()
        && let Ok(url) = url::Url::from_file_path(path)
    {
        return url.to_string();
    }
    let text = path.to_string_lossy().replace('\\', "/");
    let text = text.strip_prefix("./").unwrap_or(&text);
    text.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'.' | b'_' | b'~' | b'/' => (b as char).to_string(),
            other => format!("%{other:02X}"),
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn locations_split_at_their_last_two_colons_and_paths_become_uri_references() {
        assert_eq!(split_location("a:b/c.yaml:12:5"), ("a:b/c.yaml".to_owned(), Some(12), Some(5)));
        assert_eq!(split_location("nowhere"), ("nowhere".to_owned(), None, None));
        assert_eq!(uri(Path::new("./schemas/agents/my agent.yaml")), "schemas/agents/my%20agent.yaml");
        assert_eq!(uri(Path::new("/tmp/x/a.yaml")), "file:///tmp/x/a.yaml");
    }
}
