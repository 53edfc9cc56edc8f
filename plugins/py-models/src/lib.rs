//! `py-models`: pydantic v2 models for the `types` of an Agent schema, one class per type.
//!
//! Field names that are not valid Python (`class`, `from`, `my-field`) become valid identifiers
//! with the original name kept as the pydantic alias, so the wire format is unchanged.

use qpf_agent_model::{AgentSpec, py_class, py_ident, py_literal, py_package, py_type};
use qpf_sdk::{Diagnostic, ExtractError, Extractor, PluginInfo, Request, Response, Severity};
use serde::{Deserialize, Serialize};

const TEMPLATE: &str = include_str!("../templates/models.py.j2");

/// The entry's config.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Config {
    /// Where to write the module, relative to the entry's output folder. `{package}` is replaced
    /// by the agent's Python package name.
    #[serde(default = "default_path")]
    path: String,
}

fn default_path() -> String {
    "src/{package}/models.py".to_owned()
}

#[derive(Serialize)]
struct FieldView {
    ident: String,
    alias: Option<String>,
    annotation: String,
    default_arg: String,
    description: String,
}

#[derive(Serialize)]
struct TypeView {
    name: String,
    class: String,
    description: String,
    fields: Vec<FieldView>,
}

struct PyModels;

impl Extractor for PyModels {
    fn info() -> PluginInfo {
        PluginInfo::new("py-models", env!("CARGO_PKG_VERSION"), "Pydantic v2 models for an agent's types.")
            .kinds(&["Agent"])
            .config_schema(serde_json::json!({
                "$schema": "https://json-schema.org/draft/2020-12/schema",
                "type": "object",
                "additionalProperties": false,
                "properties": { "path": { "type": "string" } }
            }))
    }

    fn extract(request: Request) -> Result<Response, ExtractError> {
        let config: Config = request.config()?;
        let spec: AgentSpec = request.input()?;
        let known: Vec<String> = spec.types.iter().map(|t| t.name.clone()).collect();
        let mut types = Vec::new();
        let mut problems = Vec::new();
        for (ti, t) in spec.types.iter().enumerate() {
            let mut fields = Vec::new();
            for (fi, f) in t.fields.iter().enumerate() {
                let annotation = match py_type(&f.ty, &known) {
                    Ok(a) => a,
                    Err(message) => {
                        problems.push(
                            Diagnostic::new(Severity::Error, message).at(format!("/types/{ti}/fields/{fi}/type")),
                        );
                        continue;
                    }
                };
                let ident = py_ident(&f.name);
                if let Some(other) = t.fields[..fi].iter().find(|o| py_ident(&o.name) == ident) {
                    problems.push(
                        Diagnostic::new(
                            Severity::Error,
                            format!(
                                "fields `{}` and `{}` both become the Python name `{ident}`; rename one",
                                other.name, f.name
                            ),
                        )
                        .at(format!("/types/{ti}/fields/{fi}/name")),
                    );
                    continue;
                }
                let (annotation, default_arg) = match (&f.default, f.optional) {
                    (Some(v), true) => (format!("Optional[{annotation}]"), format!("default={}", py_literal(v))),
                    (Some(v), false) if v.is_array() || v.is_object() => {
                        (annotation, format!("default_factory=lambda: {}", py_literal(v)))
                    }
                    (Some(v), false) => (annotation, format!("default={}", py_literal(v))),
                    (None, true) => (format!("Optional[{annotation}]"), "default=None".to_owned()),
                    (None, false) => (annotation, "...".to_owned()),
                };
                fields.push(FieldView {
                    alias: (ident != f.name).then(|| f.name.clone()),
                    ident,
                    annotation,
                    default_arg,
                    description: f.description.clone(),
                });
            }
            types.push(TypeView {
                name: t.name.clone(),
                class: py_class(&t.name),
                description: t.description.clone(),
                fields,
            });
        }
        if !problems.is_empty() {
            let mut error = ExtractError::new(format!("{} field type(s) cannot be mapped to Python", problems.len()));
            error.diagnostics = problems;
            return Err(error);
        }

        let path = config.path.replace("{package}", &py_package(&request.schema.name));
        let env = qpf_agent_model::template_env();
        let rendered = env
            .render_str(
                TEMPLATE,
                minijinja::context! {
                    agent => minijinja::context! {
                        kind => request.schema.kind,
                        name => request.schema.name,
                        version => request.schema.version,
                    },
                    plugin => concat!("py-models ", env!("CARGO_PKG_VERSION")),
                    types => minijinja::value::Value::from(minijinja::value::Serde(&types)),
                },
            )
            .map_err(|e| ExtractError::new(format!("template `models.py.j2` failed: {e:#}")))?;
        Ok(Response::new().file(path, rendered))
    }
}

qpf_sdk::export!(PyModels);
