//! The view every reference template renders: an agent's spec checked across references (types,
//! errors), with each name already turned into valid Python and each derived value (sample
//! payloads, default outputs, environment variables) computed once, here, so that the plugins of
//! the family agree on them.

use crate::python::{py_class, py_const, py_ident, py_literal, py_package, py_str, py_type};
use crate::rules::{self, Rule};
use crate::spec::{AgentSpec, Field, Slos, TypeDef};
use qpf_sdk::{Diagnostic, ExtractError, Request, Severity};
use serde::Serialize;
use serde_json::{Value, json};

/// An agent, ready for templates.
#[derive(Debug, Clone, Serialize)]
pub struct AgentView {
    /// Schema kind (`Agent`).
    pub kind: String,
    /// Schema name (`orchestrator`).
    pub name: String,
    /// Schema version.
    pub version: String,
    /// Python package (`orchestrator`).
    pub package: String,
    /// Distribution name on an index (`orchestrator-agent`).
    pub dist: String,
    /// Title-case name (`Orchestrator`).
    pub title: String,
    /// Prefix of its environment variables (`ORCHESTRATOR_`).
    pub env_prefix: String,
    /// What the agent does.
    pub description: String,
    /// Record types.
    pub types: Vec<TypeView>,
    /// Declared errors.
    pub errors: Vec<ErrorView>,
    /// Capabilities.
    pub capabilities: Vec<CapabilityView>,
    /// Memory stores.
    pub memory: Vec<MemoryView>,
    /// Distinct backends of the memory stores, sorted.
    pub backends: Vec<String>,
    /// Whether the service's replicas may coordinate through Redis (a swarm of capability tasks,
    /// sub-agent limits): it then needs the `redis` extra even without a Redis memory store.
    pub coordinates: bool,
    /// Sub-agents.
    pub subagents: Vec<SubagentView>,
    /// Anomaly types.
    pub anomalies: Vec<AnomalyView>,
    /// Service level objectives.
    pub slos: Slos,
    /// The schema's settings.
    pub settings: Vec<SettingView>,
    /// Names `models.py` must import: any of `Any`, `Literal`, `datetime`.
    pub model_imports: Vec<String>,
    /// Whether a setting is a secret.
    pub has_secrets: bool,
    /// Whether a setting has allowed values (`settings.py` imports `Literal`).
    pub has_enum_settings: bool,
}

/// A record type.
#[derive(Debug, Clone, Serialize)]
pub struct TypeView {
    /// Schema name.
    pub name: String,
    /// Python class.
    pub class: String,
    /// Documentation.
    pub description: String,
    /// Fields, in order.
    pub fields: Vec<FieldView>,
    /// Its JSON Schema (OpenAPI 3.1 component).
    pub json_schema: Value,
}

/// A field of a record type.
#[derive(Debug, Clone, Serialize)]
pub struct FieldView {
    /// Wire name.
    pub name: String,
    /// Python attribute.
    pub ident: String,
    /// The wire name when it differs from the attribute.
    pub alias: Option<String>,
    /// Type expression of the schema.
    pub ty: String,
    /// Python annotation.
    pub annotation: String,
    /// First argument of `Field(...)`: `...`, `default=...` or `default_factory=...`.
    pub default_arg: String,
    /// Whether a payload must carry it.
    pub required: bool,
    /// Default value, as JSON.
    pub default: Option<Value>,
    /// Documentation.
    pub description: String,
}

/// A declared error.
#[derive(Debug, Clone, Serialize)]
pub struct ErrorView {
    /// Schema name.
    pub name: String,
    /// Exception class.
    pub class: String,
    /// `snake_case` code in the response body.
    pub code: String,
    /// HTTP status.
    pub status: u16,
    /// Documentation and default message.
    pub description: String,
    /// Whether a client may retry.
    pub retryable: bool,
}

/// A capability.
#[derive(Debug, Clone, Serialize)]
pub struct CapabilityView {
    /// Schema name.
    pub name: String,
    /// Python module and method name.
    pub ident: String,
    /// HTTP path (`/dispatch`).
    pub path: String,
    /// Documentation.
    pub description: String,
    /// Input type (schema name).
    pub input: String,
    /// Input class.
    pub input_class: String,
    /// Output type (schema name).
    pub output: String,
    /// Output class.
    pub output_class: String,
    /// The errors it may raise.
    pub errors: Vec<ErrorView>,
    /// A valid input payload (wire JSON).
    pub sample_input: Value,
    /// The same, as a Python literal.
    pub sample_input_py: String,
    /// Whether `{}` is an invalid input (the input type has required fields).
    pub rejects_empty: bool,
    /// Keyword arguments of the output the default handler returns: `(attribute, expression)`;
    /// an expression reads the input as `body`.
    pub default_output: Vec<(String, String)>,
    /// Error responses by status, sorted: `(status, error names joined by ", ")`.
    pub responses: Vec<(u16, String)>,
}

/// A memory store.
#[derive(Debug, Clone, Serialize)]
pub struct MemoryView {
    /// Schema name.
    pub name: String,
    /// Python identifier.
    pub ident: String,
    /// Backend.
    pub backend: String,
    /// Documentation.
    pub description: String,
    /// Setting holding its URL (`memory_working_url`).
    pub setting: String,
    /// Environment variable of that setting.
    pub env: String,
    /// Seconds a value lives after it is written (`redis` only).
    pub ttl_seconds: Option<u64>,
    /// Length of the indexed embeddings (`vector` only).
    pub dimensions: Option<u32>,
}

/// A sub-agent.
#[derive(Debug, Clone, Serialize)]
pub struct SubagentView {
    /// Local name.
    pub name: String,
    /// Python identifier.
    pub ident: String,
    /// Agent it runs.
    pub agent: String,
    /// Documentation.
    pub description: String,
    /// Concurrency cap.
    pub max_instances: u32,
    /// Setting holding its base URL (`subagent_trainer_url`).
    pub setting: String,
    /// Environment variable of that setting.
    pub env: String,
}

/// An anomaly type.
#[derive(Debug, Clone, Serialize)]
pub struct AnomalyView {
    /// Schema name.
    pub name: String,
    /// Python identifier (handler `on_<ident>`).
    pub ident: String,
    /// Documentation.
    pub description: String,
    /// `info`, `warning` or `critical`.
    pub severity: String,
    /// `log`, `alert`, `restart`, `escalate`, `shed`, `unready` or `spawn`.
    pub action: String,
    /// For `spawn`: the sub-agent it starts.
    pub subagent: Option<String>,
    /// For `agent`: the handler agent extracted for it, which receives it.
    pub handler: Option<HandlerView>,
    /// The rule that raises it, with its threshold resolved (from the SLOs when not given).
    pub when: Option<WhenView>,
}

/// Whether `name` may be a schema's `metadata.name` (the host's rule): 1-63 lower-case letters,
/// digits or `-`, not starting with `-`.
fn valid_agent_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 63
        && !name.starts_with('-')
        && name.chars().all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-')
}

/// The agent an `action: agent` anomaly is handed to: a service of its own, extracted from a
/// template of the extractor map.
#[derive(Debug, Clone, Serialize)]
pub struct HandlerView {
    /// Its schema name (`monitor-metric-drift-handler`).
    pub name: String,
    /// Setting holding its base URL (`anomaly_metric_drift_agent_url`).
    pub setting: String,
    /// That setting's environment variable.
    pub env: String,
    /// The URL's default: its Kubernetes service (`http://<name>`).
    pub url: String,
}

/// An anomaly's rule, resolved.
#[derive(Debug, Clone, Serialize)]
pub struct WhenView {
    /// `latency_p99_ms`, `error_rate` or `availability`.
    pub metric: String,
    /// `above` or `below`.
    pub op: String,
    /// The threshold.
    pub threshold: f64,
    /// Window in seconds.
    pub window_s: u32,
    /// Requests the window needs.
    pub min_requests: u32,
}

/// A setting.
#[derive(Debug, Clone, Serialize)]
pub struct SettingView {
    /// Schema name.
    pub name: String,
    /// Python attribute.
    pub ident: String,
    /// Schema type.
    pub ty: String,
    /// Python annotation.
    pub annotation: String,
    /// Python literal of the default, when there is one.
    pub default_py: Option<String>,
    /// The default as JSON (`null` when required).
    pub default: Value,
    /// Whether the environment must provide it.
    pub required: bool,
    /// Documentation.
    pub description: String,
    /// Hidden in logs (`SecretStr`).
    pub secret: bool,
    /// Environment variable.
    pub env: String,
    /// The only values allowed (empty: any of the type), as JSON.
    pub allowed: Vec<Value>,
    /// A value the environment may give, as text, and what it reads as in Python: the last
    /// allowed value, or an ordinary one of the type.
    pub sample_env: String,
    /// The Python literal of [`SettingView::sample_env`] once read.
    pub sample_py: String,
}

/// Sample timestamp used in payloads (fixed: outputs are deterministic).
const SAMPLE_TIME: &str = "2026-01-01T00:00:00Z";

impl AgentView {
    /// Reads and checks the request's input (an Agent `spec`) and builds the view.
    ///
    /// # Errors
    /// Every reference the schema cannot satisfy (an unknown type or error, two names that become
    /// the same Python name, a type that contains itself through required fields), each with a
    /// JSON Pointer into the input, so that the host shows the schema line.
    pub fn from_request(request: &Request) -> Result<AgentView, ExtractError> {
        let spec: AgentSpec = request.input()?;
        let mut problems = Vec::new();
        let view = build(request, &spec, &mut problems);
        if problems.is_empty() {
            Ok(view)
        } else {
            let mut error = ExtractError::new(format!("the agent `{}` cannot be generated", request.schema.name));
            error.diagnostics = problems;
            Err(error)
        }
    }

    /// The type named `name`.
    pub fn type_named(&self, name: &str) -> Option<&TypeView> {
        self.types.iter().find(|t| t.name == name)
    }
}

fn problem(problems: &mut Vec<Diagnostic>, rule: Rule, pointer: String, message: String) {
    problems.push(Diagnostic::new(Severity::Error, message).rule(rule.id).at(pointer));
}

/// Every problem of an agent's spec the generators would stop at, plus the references between
/// agents the project's names allow checking (`context.project.names.Agent`, which only a
/// validator receives): the checks of the Agent validator, with the generators' own code.
pub fn check(request: &Request) -> Vec<Diagnostic> {
    let spec: AgentSpec = match request.input() {
        Ok(spec) => spec,
        Err(e) => {
            let message = format!("the input is not an Agent spec: {}", e.message);
            return vec![Diagnostic::new(Severity::Error, message).rule(rules::SPEC.id)];
        }
    };
    let mut problems = Vec::new();
    let _ = build(request, &spec, &mut problems);
    let context: Value = request.context().unwrap_or(Value::Null);
    if let Some(agents) = context.pointer("/project/names/Agent").and_then(Value::as_array) {
        let agents: Vec<&str> = agents.iter().filter_map(Value::as_str).collect();
        for (i, s) in spec.subagents.iter().enumerate() {
            if !agents.contains(&s.agent.as_str()) {
                problem(
                    &mut problems,
                    rules::UNKNOWN_AGENT,
                    format!("/subagents/{i}/agent"),
                    format!(
                        "sub-agent `{}` runs the agent `{}`, which is not in the project{}",
                        s.name,
                        s.agent,
                        rules::suggest(&s.agent, agents.iter().copied())
                    ),
                );
            }
        }
    }
    problems
}

/// The first type, by index, of each cycle of types that contain themselves through required
/// fields (a value of them could never be built): (type index, field index, the cycle).
fn self_containing(spec: &AgentSpec) -> Vec<(usize, usize, Vec<String>)> {
    let index = |name: &str| spec.types.iter().position(|t| t.name == name.trim());
    // Path from `from` back to `target` through required fields of named types, if any.
    fn reach(
        spec: &AgentSpec,
        from: usize,
        target: usize,
        seen: &mut Vec<usize>,
        index: &dyn Fn(&str) -> Option<usize>,
    ) -> Option<Vec<usize>> {
        if from == target {
            return Some(vec![target]);
        }
        if seen.contains(&from) {
            return None;
        }
        seen.push(from);
        for f in spec.types[from].fields.iter().filter(|f| required(f)) {
            if let Some(next) = index(&f.ty)
                && let Some(mut path) = reach(spec, next, target, seen, index)
            {
                path.insert(0, from);
                return Some(path);
            }
        }
        None
    }
    let mut found = Vec::new();
    for (ti, t) in spec.types.iter().enumerate() {
        for (fi, f) in t.fields.iter().enumerate().filter(|(_, f)| required(f)) {
            let Some(next) = index(&f.ty) else { continue };
            let Some(path) = reach(spec, next, ti, &mut Vec::new(), &index) else { continue };
            // Once per cycle: at its first type.
            if path.iter().all(|&p| p >= ti) {
                let mut names = vec![t.name.clone()];
                names.extend(path.iter().map(|&p| spec.types[p].name.clone()));
                found.push((ti, fi, names));
                break;
            }
        }
    }
    found
}

fn build(request: &Request, spec: &AgentSpec, problems: &mut Vec<Diagnostic>) -> AgentView {
    let name = request.schema.name.clone();
    let package = py_package(&name);
    let env_prefix = format!("{}_", py_const(&package));
    let known: Vec<String> = spec.types.iter().map(|t| t.name.clone()).collect();

    let types: Vec<TypeView> =
        spec.types.iter().enumerate().map(|(ti, t)| type_view(ti, t, &known, problems)).collect();
    unique(problems, spec.types.iter().enumerate().map(|(i, t)| item("/types", i, "type", &t.name, py_class(&t.name))));
    for (ti, fi, cycle) in self_containing(spec) {
        problem(
            problems,
            rules::SELF_CONTAINING_TYPE,
            format!("/types/{ti}/fields/{fi}/type"),
            format!(
                "type `{}` contains itself through required fields ({}), so no value of it can exist; make one of these fields optional, give it a default, or use a list",
                cycle[0],
                cycle.join(" → ")
            ),
        );
    }
    // Problems in the types already explain a capability whose samples cannot be built.
    let types_clean = problems.is_empty();

    let errors: Vec<ErrorView> = spec
        .errors
        .iter()
        .map(|e| ErrorView {
            name: e.name.clone(),
            class: py_class(&e.name),
            code: snake(&e.name),
            status: e.status,
            description: e.description.clone(),
            retryable: e.retryable,
        })
        .collect();
    unique(problems, errors.iter().enumerate().map(|(i, e)| item("/errors", i, "error", &e.name, e.class.clone())));

    let mut capabilities = Vec::new();
    for (ci, c) in spec.capabilities.iter().enumerate() {
        let at = |field: &str| format!("/capabilities/{ci}/{field}");
        let input = spec.types.iter().find(|t| t.name == c.input);
        let output = spec.types.iter().find(|t| t.name == c.output);
        let suggest = |name: &str| rules::suggest(name, spec.types.iter().map(|t| t.name.as_str()));
        if input.is_none() {
            problem(
                problems,
                rules::UNKNOWN_TYPE,
                at("input"),
                format!("capability `{}`: unknown input type `{}`{}", c.name, c.input, suggest(&c.input)),
            );
        }
        if output.is_none() {
            problem(
                problems,
                rules::UNKNOWN_TYPE,
                at("output"),
                format!("capability `{}`: unknown output type `{}`{}", c.name, c.output, suggest(&c.output)),
            );
        }
        let mut cap_errors = Vec::new();
        for (ei, e) in c.errors.iter().enumerate() {
            match errors.iter().find(|d| &d.name == e) {
                Some(d) => cap_errors.push(d.clone()),
                None => problem(
                    problems,
                    rules::UNDECLARED_ERROR,
                    format!("/capabilities/{ci}/errors/{ei}"),
                    format!(
                        "capability `{}`: error `{e}` is not declared in `errors`{}",
                        c.name,
                        rules::suggest(e, errors.iter().map(|d| d.name.as_str()))
                    ),
                ),
            }
        }
        let (Some(input), Some(output)) = (input, output) else { continue };
        let sample_input = match sample_record(input, spec, &mut Vec::new()) {
            Ok(v) => v,
            Err(message) => {
                if types_clean {
                    problem(problems, rules::SELF_CONTAINING_TYPE, at("input"), message);
                }
                Value::Null
            }
        };
        let default_output = match default_output(input, output, spec) {
            Ok(v) => v,
            Err(message) => {
                if types_clean {
                    problem(problems, rules::SELF_CONTAINING_TYPE, at("output"), message);
                }
                Vec::new()
            }
        };
        capabilities.push(CapabilityView {
            name: c.name.clone(),
            ident: py_ident(&c.name),
            path: format!("/{}", c.name),
            description: c.description.clone(),
            input: c.input.clone(),
            input_class: py_class(&c.input),
            output: c.output.clone(),
            output_class: py_class(&c.output),
            sample_input_py: py_literal(&sample_input),
            sample_input,
            rejects_empty: input.fields.iter().any(required),
            default_output,
            responses: responses(&cap_errors),
            errors: cap_errors,
        });
    }
    unique(
        problems,
        spec.capabilities
            .iter()
            .enumerate()
            .map(|(i, c)| item("/capabilities", i, "capability", &c.name, py_ident(&c.name))),
    );

    for (i, m) in spec.memory.iter().enumerate() {
        if m.ttl_seconds.is_some() && m.backend != "redis" {
            problem(
                problems,
                rules::MEMORY_OPTION,
                format!("/memory/{i}/ttl_seconds"),
                format!(
                    "memory `{}`: `ttl_seconds` is supported by the `redis` backend only, not `{}`",
                    m.name, m.backend
                ),
            );
        }
        match (m.backend.as_str(), m.dimensions) {
            ("vector", None) => problem(
                problems,
                rules::MEMORY_OPTION,
                format!("/memory/{i}"),
                format!("memory `{}`: a `vector` store needs `dimensions`, the length of its embeddings", m.name),
            ),
            ("vector", Some(_)) | (_, None) => {}
            (backend, Some(_)) => problem(
                problems,
                rules::MEMORY_OPTION,
                format!("/memory/{i}/dimensions"),
                format!("memory `{}`: `dimensions` is for the `vector` backend only, not `{backend}`", m.name),
            ),
        }
    }
    let memory: Vec<MemoryView> = spec
        .memory
        .iter()
        .map(|m| {
            let ident = py_ident(&m.name);
            MemoryView {
                ttl_seconds: m.ttl_seconds,
                dimensions: m.dimensions,
                name: m.name.clone(),
                backend: m.backend.clone(),
                description: m.description.clone(),
                setting: format!("memory_{ident}_url"),
                env: format!("{env_prefix}MEMORY_{}_URL", py_const(&m.name)),
                ident,
            }
        })
        .collect();
    unique(
        problems,
        memory.iter().enumerate().map(|(i, m)| item("/memory", i, "memory store", &m.name, m.ident.clone())),
    );
    let mut backends: Vec<String> = memory.iter().map(|m| m.backend.clone()).collect();
    backends.sort();
    backends.dedup();

    let subagents: Vec<SubagentView> = spec
        .subagents
        .iter()
        .map(|s| {
            let ident = py_ident(&s.name);
            SubagentView {
                name: s.name.clone(),
                agent: s.agent.clone(),
                description: s.description.clone(),
                max_instances: s.max_instances,
                setting: format!("subagent_{ident}_url"),
                env: format!("{env_prefix}SUBAGENT_{}_URL", py_const(&s.name)),
                ident,
            }
        })
        .collect();
    unique(
        problems,
        subagents.iter().enumerate().map(|(i, s)| item("/subagents", i, "sub-agent", &s.name, s.ident.clone())),
    );

    let anomalies: Vec<AnomalyView> = spec
        .anomalies
        .iter()
        .enumerate()
        .map(|(i, a)| {
            let at = |field: &str| format!("/anomalies/{i}/{field}");
            match (&a.subagent, a.action == "spawn") {
                (None, true) => problem(
                    problems,
                    rules::ANOMALY_RULE,
                    at("action"),
                    format!("anomaly `{}` spawns a sub-agent: name it with `subagent`", a.name),
                ),
                (Some(s), true) if !spec.subagents.iter().any(|d| &d.name == s) => problem(
                    problems,
                    rules::ANOMALY_RULE,
                    at("subagent"),
                    format!(
                        "anomaly `{}` spawns `{s}`, which is not a sub-agent of this agent{}",
                        a.name,
                        rules::suggest(s, spec.subagents.iter().map(|d| d.name.as_str()))
                    ),
                ),
                (Some(_), false) => problem(
                    problems,
                    rules::ANOMALY_RULE,
                    at("subagent"),
                    format!("anomaly `{}` names a sub-agent but its action is `{}`, not `spawn`", a.name, a.action),
                ),
                _ => {}
            }
            if a.agent.is_some() && a.action != "agent" {
                problem(
                    problems,
                    rules::ANOMALY_RULE,
                    at("agent"),
                    format!("anomaly `{}` names a handler agent but its action is `{}`, not `agent`", a.name, a.action),
                );
            }
            let handler = (a.action == "agent").then(|| {
                let handler = a.agent.clone().unwrap_or_else(|| format!("{name}-{}-handler", a.name.replace('_', "-")));
                if !valid_agent_name(&handler) {
                    problem(
                        problems,
                        rules::ANOMALY_RULE,
                        at(if a.agent.is_some() { "agent" } else { "name" }),
                        format!(
                            "anomaly `{}`: its handler agent's name `{handler}` is not a schema name (1-63 lower-case letters, digits or `-`); name it with `agent`",
                            a.name
                        ),
                    );
                }
                let ident = py_ident(&a.name);
                HandlerView {
                    url: format!("http://{handler}"),
                    setting: format!("anomaly_{ident}_agent_url"),
                    env: format!("{env_prefix}ANOMALY_{}_AGENT_URL", py_const(&a.name)),
                    name: handler,
                }
            });
            let when = a.when.as_ref().and_then(|w| {
                let (op, threshold) = match (w.above, w.below) {
                    (Some(x), None) => ("above", x),
                    (None, Some(x)) => ("below", x),
                    (None, None) => match w.metric.as_str() {
                        "latency_p99_ms" => ("above", spec.slos.latency_p99_ms as f64),
                        "error_rate" => ("above", spec.slos.error_rate),
                        _ => ("below", spec.slos.availability),
                    },
                    (Some(_), Some(_)) => {
                        problem(
                            problems,
                            rules::ANOMALY_RULE,
                            at("when"),
                            format!("anomaly `{}`: give `above` or `below`, not both", a.name),
                        );
                        return None;
                    }
                };
                Some(WhenView {
                    metric: w.metric.clone(),
                    op: op.to_owned(),
                    threshold,
                    window_s: w.window_s.unwrap_or(60),
                    min_requests: w.min_requests.unwrap_or(20),
                })
            });
            AnomalyView {
                name: a.name.clone(),
                ident: py_ident(&a.name),
                description: a.description.clone(),
                severity: a.severity.clone(),
                action: a.action.clone(),
                subagent: a.subagent.clone(),
                handler,
                when,
            }
        })
        .collect();
    unique(
        problems,
        anomalies.iter().enumerate().map(|(i, a)| item("/anomalies", i, "anomaly", &a.name, a.ident.clone())),
    );
    // Two anomalies handed to one agent would ask for the same new schema twice.
    for (i, a) in anomalies.iter().enumerate() {
        let Some(h) = &a.handler else { continue };
        if let Some(first) = anomalies[..i].iter().find(|b| b.handler.as_ref().is_some_and(|g| g.name == h.name)) {
            problem(
                problems,
                rules::ANOMALY_RULE,
                format!("/anomalies/{i}/agent"),
                format!(
                    "anomalies `{}` and `{}` are both handed to the agent `{}`; give each its own with `agent`",
                    first.name, a.name, h.name
                ),
            );
        }
    }

    let settings: Vec<SettingView> = spec
        .settings
        .iter()
        .enumerate()
        .map(|(i, s)| {
            let base = match s.ty.as_str() {
                "integer" => "int",
                "number" => "float",
                "boolean" => "bool",
                _ => "str",
            };
            let allowed = s.allowed.clone().unwrap_or_default();
            if let Some(default) = &s.default {
                let fits = match s.ty.as_str() {
                    "string" => default.is_string(),
                    "integer" => default.is_i64() || default.is_u64(),
                    "number" => default.is_number(),
                    "boolean" => default.is_boolean(),
                    _ => true,
                };
                if !fits {
                    problem(
                        problems,
                        rules::SETTING_DEFAULT_TYPE,
                        format!("/settings/{i}/default"),
                        format!(
                            "setting `{}` is of type `{}`, but its default `{default}` is {}",
                            s.name,
                            s.ty,
                            rules::json_type_phrase(default)
                        ),
                    );
                }
            }
            if !allowed.is_empty() {
                let fits = |v: &Value| match s.ty.as_str() {
                    "string" => v.is_string(),
                    "integer" => v.is_i64() || v.is_u64(),
                    _ => false,
                };
                if s.secret {
                    problem(
                        problems,
                        rules::SETTING_VALUES,
                        format!("/settings/{i}/enum"),
                        format!("setting `{}`: a secret setting cannot list its allowed values", s.name),
                    );
                } else if let Some(bad) = allowed.iter().find(|v| !fits(v)) {
                    problem(
                        problems,
                        rules::SETTING_VALUES,
                        format!("/settings/{i}/enum"),
                        format!(
                            "setting `{}`: `{bad}` is not a value of type `{}` (allowed values are strings or integers)",
                            s.name, s.ty
                        ),
                    );
                }
                if let Some(default) = s.default.as_ref().filter(|d| !allowed.contains(d)) {
                    problem(
                        problems,
                        rules::SETTING_VALUES,
                        format!("/settings/{i}/default"),
                        format!(
                            "setting `{}`: the default `{default}` is not one of the allowed values ({})",
                            s.name,
                            allowed.iter().map(|v| format!("`{v}`")).collect::<Vec<_>>().join(", ")
                        ),
                    );
                }
            }
            let (sample_env, sample_py) = match (allowed.last(), s.ty.as_str()) {
                (Some(Value::String(v)), _) => (v.clone(), py_str(v)),
                (Some(v), _) => (v.to_string(), v.to_string()),
                (None, "integer") => ("42".to_owned(), "42".to_owned()),
                (None, "number") => ("2.5".to_owned(), "2.5".to_owned()),
                (None, "boolean") => ("true".to_owned(), "True".to_owned()),
                (None, _) => ("changed".to_owned(), py_str("changed")),
            };
            let annotation = if s.secret {
                "SecretStr".to_owned()
            } else if allowed.is_empty() {
                base.to_owned()
            } else {
                format!("Literal[{}]", allowed.iter().map(py_literal).collect::<Vec<_>>().join(", "))
            };
            SettingView {
                name: s.name.clone(),
                ident: py_ident(&s.name),
                ty: s.ty.clone(),
                annotation,
                allowed,
                sample_env,
                sample_py,
                default_py: s.default.as_ref().map(py_literal),
                default: s.default.clone().unwrap_or(Value::Null),
                required: s.default.is_none(),
                description: s.description.clone(),
                secret: s.secret,
                env: format!("{env_prefix}{}", py_const(&s.name)),
            }
        })
        .collect();
    // A memory store's and a sub-agent's URLs are settings too: their names share one namespace.
    // Those come first, so that the setting that takes such a name is the one reported.
    // The sub-agents' own settings (the shared Redis and the lease), when there are sub-agents.
    let (swarm, has_subagents) = (!capabilities.is_empty() || !subagents.is_empty(), !subagents.is_empty());
    let coordination = [
        ("swarm_redis_url", swarm),
        ("swarm_reclaim_after_s", !capabilities.is_empty()),
        ("subagents_lease_s", has_subagents),
        ("anomaly_webhook_url", !anomalies.is_empty()),
        ("anomaly_hold_s", !anomalies.is_empty()),
        ("anomaly_eval_s", !anomalies.is_empty()),
        ("anomaly_agent_api_key", anomalies.iter().any(|a| a.handler.is_some())),
    ]
    .into_iter()
    .filter(|(_, generated)| *generated)
    .map(|(name, _)| Named {
        pointer: "/settings".to_owned(),
        what: "the generated setting",
        name: name.to_owned(),
        python: name.to_owned(),
    });
    let setting_names = coordination
        .chain(
            memory
                .iter()
                .enumerate()
                .map(|(i, m)| item("/memory", i, "the URL setting of memory store", &m.name, m.setting.clone())),
        )
        .chain(
            subagents
                .iter()
                .enumerate()
                .map(|(i, s)| item("/subagents", i, "the URL setting of sub-agent", &s.name, s.setting.clone())),
        )
        .chain(anomalies.iter().enumerate().filter_map(|(i, a)| {
            let h = a.handler.as_ref()?;
            Some(item("/anomalies", i, "the handler URL setting of anomaly", &a.name, h.setting.clone()))
        }))
        .chain(settings.iter().enumerate().map(|(i, s)| item("/settings", i, "setting", &s.name, s.ident.clone())));
    unique(problems, setting_names);

    let types: Vec<TypeView> = types;
    let model_imports = ["Any", "Literal", "datetime"]
        .iter()
        .filter(|name| types.iter().flat_map(|t| &t.fields).any(|f| mentions(&f.annotation, name)))
        .map(|name| (*name).to_owned())
        .collect();
    for (i, c) in capabilities.iter().enumerate() {
        // The generated `Handlers` class has these methods besides one per capability.
        if ["agent", "bind", "implemented", "run_subagent_task", "run_swarm_task"].contains(&c.ident.as_str()) {
            problem(
                problems,
                rules::RESERVED_NAME,
                format!("/capabilities/{i}/name"),
                format!("`{}` is a name the generated `Handlers` class uses; rename the capability", c.name),
            );
        }
    }
    for (i, e) in errors.iter().enumerate() {
        if ["AgentError", "ErrorResponse"].contains(&e.class.as_str()) {
            problem(
                problems,
                rules::RESERVED_NAME,
                format!("/errors/{i}/name"),
                format!("`{}` is a name the errors module defines; rename the error", e.name),
            );
        }
    }
    AgentView {
        model_imports,
        has_secrets: settings.iter().any(|s| s.secret),
        has_enum_settings: settings.iter().any(|s| !s.allowed.is_empty() && !s.secret),
        kind: request.schema.kind.clone(),
        version: request.schema.version.clone(),
        dist: format!("{}-agent", name.to_ascii_lowercase().replace('_', "-")),
        title: py_class(&package).replace('_', " "),
        env_prefix,
        package,
        name,
        description: spec.description.clone(),
        types,
        errors,
        capabilities,
        memory,
        coordinates: swarm,
        backends,
        subagents,
        anomalies,
        slos: spec.slos.clone(),
        settings,
    }
}

fn responses(errors: &[ErrorView]) -> Vec<(u16, String)> {
    let mut by_status: std::collections::BTreeMap<u16, Vec<&str>> = std::collections::BTreeMap::new();
    for e in errors {
        by_status.entry(e.status).or_default().push(&e.name);
    }
    by_status.into_iter().map(|(status, names)| (status, names.join(", "))).collect()
}

/// Whether a Python annotation mentions `name` as a whole word.
fn mentions(annotation: &str, name: &str) -> bool {
    annotation.split(|c: char| !(c.is_ascii_alphanumeric() || c == '_')).any(|token| token == name)
}

/// A named item of a list, for [`unique`]: where it is, what it is, its name and its Python name.
struct Named {
    pointer: String,
    what: &'static str,
    name: String,
    python: String,
}

fn item(list: &str, i: usize, what: &'static str, name: &str, python: String) -> Named {
    Named { pointer: format!("{list}/{i}/name"), what, name: name.to_owned(), python }
}

/// Reports the second of two items whose Python names collide, naming both.
fn unique(problems: &mut Vec<Diagnostic>, items: impl Iterator<Item = Named>) {
    let items: Vec<Named> = items.collect();
    for (i, n) in items.iter().enumerate() {
        if let Some(first) = items[..i].iter().find(|f| f.python == n.python) {
            let message = format!(
                "{} `{}` and {} `{}` both become the Python name `{}`; rename one",
                first.what, first.name, n.what, n.name, n.python
            );
            problem(problems, rules::NAME_COLLISION, n.pointer.clone(), message);
        }
    }
}

fn required(f: &Field) -> bool {
    !f.optional && f.default.is_none()
}

fn type_view(ti: usize, t: &TypeDef, known: &[String], problems: &mut Vec<Diagnostic>) -> TypeView {
    let mut fields = Vec::new();
    let mut properties = serde_json::Map::new();
    let mut required_names = Vec::new();
    for (fi, f) in t.fields.iter().enumerate() {
        let annotation = match (&f.allowed, py_type(&f.ty, known)) {
            (Some(values), Ok(_)) => {
                format!("Literal[{}]", values.iter().map(py_literal).collect::<Vec<_>>().join(", "))
            }
            (None, Ok(a)) => a,
            (_, Err(message)) => {
                problem(
                    problems,
                    rules::UNKNOWN_TYPE,
                    format!("/types/{ti}/fields/{fi}/type"),
                    format!("field `{}` of type `{}`: {message}", f.name, t.name),
                );
                continue;
            }
        };
        let ident = py_ident(&f.name);
        if let Some(other) = t.fields[..fi].iter().find(|o| py_ident(&o.name) == ident) {
            problem(
                problems,
                rules::NAME_COLLISION,
                format!("/types/{ti}/fields/{fi}/name"),
                format!(
                    "field `{}` and field `{}` both become the Python name `{ident}`; rename one",
                    other.name, f.name
                ),
            );
            continue;
        }
        let (annotation, default_arg) = match (&f.default, f.optional) {
            (Some(v), true) => (format!("{annotation} | None"), format!("default={}", py_literal(v))),
            (Some(v), false) if v.is_array() || v.is_object() => {
                (annotation, format!("default_factory=lambda: {}", py_literal(v)))
            }
            (Some(v), false) => (annotation, format!("default={}", py_literal(v))),
            (None, true) => (format!("{annotation} | None"), "default=None".to_owned()),
            (None, false) => (annotation, "...".to_owned()),
        };
        let mut schema = json_schema_of(&f.ty);
        if let Value::Object(map) = &mut schema {
            if let Some(values) = &f.allowed {
                map.insert("enum".into(), Value::Array(values.clone()));
            }
            if let Some(d) = &f.default {
                map.insert("default".into(), d.clone());
            }
            if !f.description.is_empty() {
                map.insert("description".into(), Value::String(f.description.clone()));
            }
        }
        properties.insert(f.name.clone(), schema);
        if required(f) {
            required_names.push(Value::String(f.name.clone()));
        }
        fields.push(FieldView {
            name: f.name.clone(),
            alias: (ident != f.name).then(|| f.name.clone()),
            ident,
            ty: f.ty.clone(),
            annotation,
            default_arg,
            required: required(f),
            default: f.default.clone(),
            description: f.description.clone(),
        });
    }
    let mut json_schema = json!({ "type": "object", "title": py_class(&t.name), "properties": properties });
    if !t.description.is_empty() {
        json_schema["description"] = Value::String(t.description.clone());
    }
    if !required_names.is_empty() {
        json_schema["required"] = Value::Array(required_names);
    }
    TypeView { name: t.name.clone(), class: py_class(&t.name), description: t.description.clone(), fields, json_schema }
}

/// The JSON Schema of a type expression, with named types as OpenAPI component references.
fn json_schema_of(expr: &str) -> Value {
    let expr = expr.trim();
    if let Some(inner) = expr.strip_prefix("list[").and_then(|r| r.strip_suffix(']')) {
        return json!({ "type": "array", "items": json_schema_of(inner) });
    }
    if let Some(inner) = expr.strip_prefix("map[").and_then(|r| r.strip_suffix(']')) {
        return json!({ "type": "object", "additionalProperties": json_schema_of(inner) });
    }
    match expr {
        "string" => json!({ "type": "string" }),
        "integer" => json!({ "type": "integer" }),
        "number" => json!({ "type": "number" }),
        "boolean" => json!({ "type": "boolean" }),
        "datetime" => json!({ "type": "string", "format": "date-time" }),
        "any" => json!({}),
        name => json!({ "$ref": format!("#/components/schemas/{}", py_class(name)) }),
    }
}

/// A valid payload for a record: every field, with its default, first allowed value or a sample.
fn sample_record(t: &TypeDef, spec: &AgentSpec, stack: &mut Vec<String>) -> Result<Value, String> {
    if stack.contains(&t.name) {
        return Err(format!("type `{}` contains itself through required fields ({})", t.name, stack.join(" → ")));
    }
    stack.push(t.name.clone());
    let mut out = serde_json::Map::new();
    for f in &t.fields {
        let value = if let Some(first) = f.allowed.as_ref().and_then(|v| v.first()) {
            first.clone()
        } else if let Some(d) = f.default.as_ref().filter(|d| !d.is_null()) {
            d.clone()
        } else {
            match sample_of(&f.ty, &f.name, spec, stack) {
                Ok(v) => v,
                Err(_) if f.optional => continue,
                Err(e) => return Err(e),
            }
        };
        out.insert(f.name.clone(), value);
    }
    stack.pop();
    Ok(Value::Object(out))
}

fn sample_of(expr: &str, field: &str, spec: &AgentSpec, stack: &mut Vec<String>) -> Result<Value, String> {
    let expr = expr.trim();
    if let Some(inner) = expr.strip_prefix("list[").and_then(|r| r.strip_suffix(']')) {
        return Ok(sample_of(inner, field, spec, stack).map_or_else(|_| json!([]), |v| json!([v])));
    }
    if let Some(inner) = expr.strip_prefix("map[").and_then(|r| r.strip_suffix(']')) {
        return Ok(sample_of(inner, field, spec, stack).map_or_else(|_| json!({}), |v| json!({ "key": v })));
    }
    Ok(match expr {
        "string" => Value::String(format!("{field}-1")),
        "integer" => json!(1),
        "number" => json!(1.5),
        "boolean" => json!(true),
        "datetime" => json!(SAMPLE_TIME),
        "any" => json!("value"),
        name => match spec.types.iter().find(|t| t.name == name) {
            Some(t) => sample_record(t, spec, stack)?,
            None => return Err(format!("unknown type `{name}`")),
        },
    })
}

/// The default handler's output: every field the input also has (same name and type) is copied,
/// every other required field gets an empty value; fields with defaults keep them.
fn default_output(input: &TypeDef, output: &TypeDef, spec: &AgentSpec) -> Result<Vec<(String, String)>, String> {
    let mut args = Vec::new();
    for f in &output.fields {
        let ident = py_ident(&f.name);
        let same = input.fields.iter().find(|i| i.name == f.name && i.ty == f.ty && i.allowed == f.allowed);
        if let Some(i) = same {
            args.push((ident.clone(), format!("body.{}", py_ident(&i.name))));
        } else if required(f) {
            args.push((ident, zero(f, spec, &mut Vec::new())?));
        }
    }
    Ok(args)
}

/// A Python expression of an empty value of a field's type.
fn zero(f: &Field, spec: &AgentSpec, stack: &mut Vec<String>) -> Result<String, String> {
    if let Some(first) = f.allowed.as_ref().and_then(|v| v.first()) {
        return Ok(py_literal(first));
    }
    zero_of(&f.ty, spec, stack)
}

fn zero_of(expr: &str, spec: &AgentSpec, stack: &mut Vec<String>) -> Result<String, String> {
    let expr = expr.trim();
    if expr.starts_with("list[") {
        return Ok("[]".to_owned());
    }
    if expr.starts_with("map[") {
        return Ok("{}".to_owned());
    }
    Ok(match expr {
        "string" => "\"\"".to_owned(),
        "integer" => "0".to_owned(),
        "number" => "0.0".to_owned(),
        "boolean" => "False".to_owned(),
        "datetime" => "datetime.fromtimestamp(0, tz=UTC)".to_owned(),
        "any" => "None".to_owned(),
        name => {
            let Some(t) = spec.types.iter().find(|t| t.name == name) else {
                return Err(format!("unknown type `{name}`"));
            };
            if stack.contains(&t.name) {
                return Err(format!("type `{}` contains itself through required fields", t.name));
            }
            stack.push(t.name.clone());
            let mut args = Vec::new();
            for f in t.fields.iter().filter(|f| required(f)) {
                args.push(format!("{}={}", py_ident(&f.name), zero(f, spec, stack)?));
            }
            stack.pop();
            format!("models.{}({})", py_class(name), args.join(", "))
        }
    })
}

/// `NoAgentAvailable` → `no_agent_available`.
pub fn snake(name: &str) -> String {
    let mut out = String::new();
    let chars: Vec<char> = name.chars().collect();
    for (i, &c) in chars.iter().enumerate() {
        if c.is_ascii_uppercase() {
            let prev_lower = i > 0 && (chars[i - 1].is_ascii_lowercase() || chars[i - 1].is_ascii_digit());
            let next_lower = chars.get(i + 1).is_some_and(char::is_ascii_lowercase);
            if i > 0 && (prev_lower || (next_lower && chars[i - 1].is_ascii_uppercase())) {
                out.push('_');
            }
            out.push(c.to_ascii_lowercase());
        } else if c.is_ascii_alphanumeric() {
            out.push(c);
        } else {
            out.push('_');
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use qpf_sdk::SchemaId;

    fn request(spec: Value) -> Request {
        Request {
            entry: "e".into(),
            schema: SchemaId { kind: "Agent".into(), name: "my-agent".into(), version: "1.0.0".into() },
            input_json: spec.to_string(),
            config_json: "{}".into(),
            context_json: "{}".into(),
        }
    }

    #[test]
    fn snake_case_of_error_names() {
        assert_eq!(snake("NoAgentAvailable"), "no_agent_available");
        assert_eq!(snake("HTTPTimeout"), "http_timeout");
        assert_eq!(snake("Quota2Exceeded"), "quota2_exceeded");
    }

    #[test]
    fn views_carry_samples_defaults_and_environment_names() {
        let view = AgentView::from_request(&request(json!({
            "description": "d",
            "types": [
                { "name": "In", "fields": [
                    { "name": "id", "type": "string" },
                    { "name": "class", "type": "string", "enum": ["a", "b"] },
                    { "name": "at", "type": "datetime", "optional": true } ] },
                { "name": "Out", "fields": [
                    { "name": "id", "type": "string" },
                    { "name": "count", "type": "integer" },
                    { "name": "when", "type": "datetime" },
                    { "name": "tags", "type": "list[string]", "default": [] } ] }
            ],
            "errors": [{ "name": "NotFound", "status": 404 }],
            "capabilities": [{ "name": "get", "input": "In", "output": "Out", "errors": ["NotFound"] }],
            "memory": [{ "name": "working", "backend": "redis" }]
        })))
        .unwrap();
        assert_eq!(view.package, "my_agent");
        assert_eq!(view.env_prefix, "MY_AGENT_");
        let cap = &view.capabilities[0];
        assert_eq!(cap.sample_input, json!({ "id": "id-1", "class": "a", "at": "2026-01-01T00:00:00Z" }));
        assert_eq!(
            cap.default_output,
            vec![
                ("id".to_owned(), "body.id".to_owned()),
                ("count".to_owned(), "0".to_owned()),
                ("when".to_owned(), "datetime.fromtimestamp(0, tz=UTC)".to_owned()),
            ]
        );
        assert_eq!(cap.errors[0].code, "not_found");
        assert_eq!(view.memory[0].env, "MY_AGENT_MEMORY_WORKING_URL");
        assert_eq!(view.types[0].fields[1].annotation, "Literal[\"a\", \"b\"]");
    }

    #[test]
    fn memory_ttls_and_dimensions_belong_to_their_backends() {
        let view = AgentView::from_request(&request(json!({
            "description": "d",
            "memory": [
                { "name": "cache", "backend": "redis", "ttl_seconds": 60 },
                { "name": "near", "backend": "vector", "dimensions": 3 }
            ]
        })))
        .unwrap();
        assert_eq!((view.memory[0].ttl_seconds, view.memory[1].dimensions), (Some(60), Some(3)));
        let err = AgentView::from_request(&request(json!({
            "description": "d",
            "memory": [
                { "name": "rows", "backend": "postgres", "ttl_seconds": 60 },
                { "name": "near", "backend": "vector" },
                { "name": "cache", "backend": "redis", "dimensions": 3 }
            ]
        })))
        .unwrap_err();
        let found: Vec<_> = err.diagnostics.iter().map(|d| (d.pointer.clone().unwrap(), d.message.clone())).collect();
        assert_eq!(found[0].0, "/memory/0/ttl_seconds");
        assert!(found[0].1.contains("`redis` backend only, not `postgres`"), "{found:?}");
        assert_eq!(found[1].0, "/memory/1");
        assert!(found[1].1.contains("needs `dimensions`"), "{found:?}");
        assert_eq!(found[2].0, "/memory/2/dimensions");
        assert_eq!(found.len(), 3, "{found:?}");
    }

    #[test]
    fn broken_references_point_at_the_schema() {
        let err = AgentView::from_request(&request(json!({
            "description": "d",
            "types": [{ "name": "Loop", "fields": [{ "name": "next", "type": "Loop" }] }],
            "capabilities": [
                { "name": "a", "input": "Nope", "output": "Loop", "errors": ["Undeclared"] },
                { "name": "b", "input": "Loop", "output": "Loop" }
            ]
        })))
        .unwrap_err();
        let pointers: Vec<_> = err.diagnostics.iter().map(|d| d.pointer.clone().unwrap()).collect();
        assert_eq!(pointers, ["/types/0/fields/0/type", "/capabilities/0/input", "/capabilities/0/errors/0"]);
        assert!(err.diagnostics[0].message.starts_with("[agent/self-containing-type] type `Loop` contains itself"));
        assert!(err.diagnostics[0].message.contains("(Loop → Loop)"), "{:?}", err.diagnostics[0]);
        assert!(err.diagnostics[1].message.starts_with("[agent/unknown-type] "), "{:?}", err.diagnostics[1]);
        assert!(err.diagnostics[2].message.starts_with("[agent/undeclared-error] "), "{:?}", err.diagnostics[2]);
    }

    #[test]
    fn a_cycle_through_several_types_is_reported_once_at_its_first_type() {
        let err = AgentView::from_request(&request(json!({
            "description": "d",
            "types": [
                { "name": "Leaf", "fields": [{ "name": "x", "type": "integer" }] },
                { "name": "A", "fields": [{ "name": "b", "type": "B" }] },
                { "name": "B", "fields": [{ "name": "leaf", "type": "Leaf" }, { "name": "a", "type": "A" }] },
                { "name": "Ok", "fields": [{ "name": "a", "type": "A", "optional": true }] }
            ]
        })))
        .unwrap_err();
        let found: Vec<_> = err.diagnostics.iter().map(|d| (d.pointer.clone().unwrap(), d.message.clone())).collect();
        assert_eq!(found.len(), 1, "{found:?}");
        assert_eq!(found[0].0, "/types/1/fields/0/type");
        assert!(found[0].1.contains("(A → B → A)"), "{found:?}");
    }

    #[test]
    fn mistyped_names_get_a_suggestion_and_defaults_must_have_their_settings_type() {
        let err = AgentView::from_request(&request(json!({
            "description": "d",
            "types": [{ "name": "Order", "fields": [{ "name": "size", "type": "numbr" }] }],
            "errors": [{ "name": "NotFound", "status": 404 }],
            "capabilities": [{ "name": "a", "input": "Ordr", "output": "Order", "errors": ["NotFund"] }],
            "settings": [
                { "name": "workers", "type": "integer", "default": "16" },
                { "name": "ratio", "type": "number", "default": 1 },
                { "name": "on", "type": "boolean", "default": "yes" }
            ]
        })))
        .unwrap_err();
        let found: Vec<_> = err.diagnostics.iter().map(|d| (d.pointer.clone().unwrap(), d.message.clone())).collect();
        assert_eq!(
            found,
            [
                (
                    "/types/0/fields/0/type".to_owned(),
                    "[agent/unknown-type] field `size` of type `Order`: unknown type `numbr` (did you mean `number`?)"
                        .to_owned()
                ),
                (
                    "/capabilities/0/input".to_owned(),
                    "[agent/unknown-type] capability `a`: unknown input type `Ordr` (did you mean `Order`?)".to_owned()
                ),
                (
                    "/capabilities/0/errors/0".to_owned(),
                    "[agent/undeclared-error] capability `a`: error `NotFund` is not declared in `errors` (did you mean `NotFound`?)"
                        .to_owned()
                ),
                (
                    "/settings/0/default".to_owned(),
                    "[agent/setting-default-type] setting `workers` is of type `integer`, but its default `\"16\"` is a string"
                        .to_owned()
                ),
                (
                    "/settings/2/default".to_owned(),
                    "[agent/setting-default-type] setting `on` is of type `boolean`, but its default `\"yes\"` is a string"
                        .to_owned()
                ),
            ]
        );
    }

    #[test]
    fn the_check_names_sub_agents_of_agents_the_project_lacks_when_it_knows_them() {
        let spec = json!({
            "description": "d",
            "subagents": [{ "name": "t", "agent": "trainr" }, { "name": "a", "agent": "auditor" }]
        });
        // A generator does not know the project's agents: nothing to say.
        assert!(check(&request(spec.clone())).is_empty());
        let mut req = request(spec);
        req.context_json = json!({ "project": { "names": { "Agent": ["auditor", "trainer"] } } }).to_string();
        let found: Vec<_> = check(&req).into_iter().map(|d| (d.pointer.unwrap(), d.message)).collect();
        assert_eq!(
            found,
            [(
                "/subagents/0/agent".to_owned(),
                "[agent/unknown-agent] sub-agent `t` runs the agent `trainr`, which is not in the project (did you mean `trainer`?)"
                    .to_owned()
            )]
        );
    }

    #[test]
    fn settings_with_allowed_values_are_literals_and_their_mistakes_point_at_the_schema() {
        let view = AgentView::from_request(&request(json!({
            "description": "d",
            "settings": [
                { "name": "level", "type": "string", "default": "INFO", "enum": ["DEBUG", "INFO"] },
                { "name": "shards", "type": "integer", "enum": [1, 2, 4] }
            ]
        })))
        .unwrap();
        assert!(view.has_enum_settings);
        assert_eq!(view.settings[0].annotation, "Literal[\"DEBUG\", \"INFO\"]");
        assert_eq!((view.settings[0].sample_env.as_str(), view.settings[0].sample_py.as_str()), ("INFO", "\"INFO\""));
        assert_eq!((view.settings[1].sample_env.as_str(), view.settings[1].sample_py.as_str()), ("4", "4"));

        let err = AgentView::from_request(&request(json!({
            "description": "d",
            "settings": [
                { "name": "level", "type": "string", "default": "TRACE", "enum": ["DEBUG", "INFO"] },
                { "name": "token", "type": "string", "secret": true, "enum": ["a"] },
                { "name": "shards", "type": "integer", "enum": [1, "two"] }
            ]
        })))
        .unwrap_err();
        let found: Vec<_> = err.diagnostics.iter().map(|d| (d.pointer.clone().unwrap(), d.message.clone())).collect();
        assert_eq!(found.len(), 3, "{found:?}");
        assert!(
            found[0].0 == "/settings/0/default" && found[0].1.contains("not one of the allowed values"),
            "{found:?}"
        );
        assert!(found[1].0 == "/settings/1/enum" && found[1].1.contains("secret"), "{found:?}");
        assert!(
            found[2].0 == "/settings/2/enum" && found[2].1.contains("`\"two\"` is not a value of type `integer`"),
            "{found:?}"
        );
    }

    #[test]
    fn names_the_generated_code_uses_are_refused_where_they_are_declared() {
        let err = AgentView::from_request(&request(json!({
            "description": "d",
            "types": [{ "name": "T", "fields": [{ "name": "x", "type": "string" }] }],
            "capabilities": [{ "name": "run_subagent_task", "input": "T", "output": "T" }],
            "subagents": [{ "name": "worker", "agent": "worker" }],
            "settings": [{ "name": "swarm_redis_url", "type": "string", "default": "" }]
        })))
        .unwrap_err();
        let found: Vec<_> = err.diagnostics.iter().map(|d| (d.pointer.clone().unwrap(), d.message.clone())).collect();
        assert_eq!(found.len(), 2, "{found:?}");
        assert!(found.iter().any(|(p, m)| p == "/capabilities/0/name" && m.contains("`Handlers` class")), "{found:?}");
        assert!(
            found.iter().any(|(p, m)| p == "/settings/0/name" && m.contains("the generated setting `swarm_redis_url`")),
            "{found:?}"
        );
    }

    #[test]
    fn anomaly_rules_resolve_their_slo_and_refuse_what_cannot_work() {
        let view = AgentView::from_request(&request(json!({
            "description": "d",
            "subagents": [{ "name": "helper", "agent": "helper" }],
            "slos": { "latency_p99_ms": 250, "error_rate": 0.02, "availability": 99.0 },
            "anomalies": [
                { "name": "slow", "severity": "warning", "action": "shed", "when": { "metric": "latency_p99_ms" } },
                { "name": "down", "severity": "critical", "action": "unready", "when": { "metric": "availability", "below": 50, "window_s": 30 } },
                { "name": "busy", "severity": "info", "action": "spawn", "subagent": "helper" }
            ]
        })))
        .unwrap();
        let slow = view.anomalies[0].when.as_ref().unwrap();
        assert_eq!((slow.op.as_str(), slow.threshold, slow.window_s, slow.min_requests), ("above", 250.0, 60, 20));
        let down = view.anomalies[1].when.as_ref().unwrap();
        assert_eq!((down.op.as_str(), down.threshold, down.window_s), ("below", 50.0, 30));
        assert_eq!(view.anomalies[2].subagent.as_deref(), Some("helper"));

        let err = AgentView::from_request(&request(json!({
            "description": "d",
            "subagents": [{ "name": "helper", "agent": "helper" }],
            "anomalies": [
                { "name": "a", "severity": "info", "action": "spawn" },
                { "name": "b", "severity": "info", "action": "spawn", "subagent": "helpr" },
                { "name": "c", "severity": "info", "action": "alert", "subagent": "helper" },
                { "name": "d", "severity": "info", "when": { "metric": "error_rate", "above": 0.1, "below": 0.2 } }
            ]
        })))
        .unwrap_err();
        let found: Vec<_> = err.diagnostics.iter().map(|d| (d.pointer.clone().unwrap(), d.message.clone())).collect();
        let pointers: Vec<_> = found.iter().map(|(p, _)| p.as_str()).collect();
        assert_eq!(
            pointers,
            ["/anomalies/0/action", "/anomalies/1/subagent", "/anomalies/2/subagent", "/anomalies/3/when"]
        );
        assert!(found[1].1.contains("(did you mean `helper`?)"), "{found:?}");
        assert!(found.iter().all(|(_, m)| m.starts_with("[agent/anomaly-rule] ")), "{found:?}");
    }

    #[test]
    fn anomalies_handed_to_agents_get_a_handler_each_with_a_schema_name() {
        let view = AgentView::from_request(&request(json!({
            "description": "d",
            "anomalies": [
                { "name": "metric_drift", "severity": "warning", "action": "agent" },
                { "name": "other", "severity": "info", "action": "agent", "agent": "triage" }
            ]
        })))
        .unwrap();
        let handler = view.anomalies[0].handler.as_ref().unwrap();
        assert_eq!(handler.name, format!("{}-metric-drift-handler", view.name));
        assert_eq!(
            (handler.url.as_str(), handler.setting.as_str()),
            (format!("http://{}", handler.name).as_str(), "anomaly_metric_drift_agent_url")
        );
        assert_eq!(view.anomalies[1].handler.as_ref().unwrap().name, "triage");

        let err = AgentView::from_request(&request(json!({
            "description": "d",
            "anomalies": [
                { "name": "a", "severity": "info", "action": "alert", "agent": "x" },
                { "name": "b", "severity": "info", "action": "agent", "agent": "Not A Name" },
                { "name": "c", "severity": "info", "action": "agent", "agent": "same" },
                { "name": "d", "severity": "info", "action": "agent", "agent": "same" }
            ]
        })))
        .unwrap_err();
        let pointers: Vec<_> = err.diagnostics.iter().map(|d| d.pointer.clone().unwrap()).collect();
        assert_eq!(
            pointers,
            ["/anomalies/0/agent", "/anomalies/1/agent", "/anomalies/3/agent"],
            "{:?}",
            err.diagnostics
        );
    }
}
