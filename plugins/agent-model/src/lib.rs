//! The `Agent` kind as the reference extractors see it: the spec as Rust types ([`spec`]), the
//! rules that turn its names into valid Python ([`python`]), the checked view every template
//! renders ([`view`]), and the template environment with those rules as filters.
//!
//! Every plugin of the family reads agents through this crate, so that the modules they write
//! separately agree on names (a class, a setting, an environment variable) without seeing each other.

pub mod python;
pub mod rules;
pub mod spec;
pub mod view;

pub use python::{py_class, py_const, py_doc, py_ident, py_literal, py_package, py_str, py_type};
pub use spec::AgentSpec;
pub use view::AgentView;

use qpf_sdk::{ExtractError, PluginInfo, Request, Response};

/// A minijinja environment with the Python filters registered: `py_ident`, `py_class`, `py_str`,
/// `py_doc`, `py_const`, `md` (escapes Markdown table cells), `json` (pretty JSON with sorted
/// keys kept in schema order) and `yaml_str` (a double-quoted YAML scalar).
pub fn template_env() -> minijinja::Environment<'static> {
    let mut env = minijinja::Environment::new();
    match minijinja::syntax::SyntaxConfig::builder()
        .trim_blocks(true)
        .lstrip_blocks(true)
        .keep_trailing_newline(true)
        .build()
    {
        Ok(syntax) => env.set_syntax(syntax),
        // The builder only fails for conflicting custom delimiters, which are not set here.
        Err(e) => unreachable!("default delimiters are valid: {e}"),
    }
    env.set_undefined_behavior(minijinja::UndefinedBehavior::Strict);
    env.add_filter("py_ident", |s: String| py_ident(&s));
    env.add_filter("py_class", |s: String| py_class(&s));
    env.add_filter("py_str", |s: String| py_str(&s));
    env.add_filter("py_doc", |s: String| py_doc(&s));
    env.add_filter("py_const", |s: String| py_const(&s));
    env.add_filter("md", |s: String| s.replace('|', "\\|").replace('\n', " "));
    // JSON strings are valid YAML double-quoted scalars.
    env.add_filter("yaml_str", |s: String| serde_json::Value::String(s).to_string());
    env
}

/// One file a plugin writes: its path (relative to the entry's output folder) and template.
pub struct Template {
    /// Output path; `{package}` is replaced by the agent's Python package, `{item}` by the
    /// identifier of the item when the template is rendered once per item.
    pub path: &'static str,
    /// Template name, for error messages.
    pub name: &'static str,
    /// Template source.
    pub source: &'static str,
}

/// Renders `template` with `agent` (the view), `plugin` (name and version) and `extra` values.
///
/// # Errors
/// An [`ExtractError`] naming the template when rendering fails.
pub fn render(
    template: &Template,
    agent: &AgentView,
    plugin: &str,
    extra: minijinja::Value,
) -> Result<String, ExtractError> {
    let env = template_env();
    #[cfg(not(target_arch = "wasm32"))]
    let recorded = recording::context(agent, plugin, &extra);
    let ctx = minijinja::context! {
        agent => value(agent),
        plugin => plugin,
        ..extra
    };
    let text = env
        .render_str(template.source, ctx)
        .map_err(|e| ExtractError::new(format!("template `{}` failed: {e:#}", template.name)))?;
    #[cfg(not(target_arch = "wasm32"))]
    recording::record(template, recorded, &text);
    Ok(text)
}

/// Native builds only: every render's template, context (as JSON) and output, recorded on the
/// current thread between [`recording::start`] and [`recording::take`]. The benchmark's Python +
/// Jinja2 peer renders the same templates with the same contexts (`cargo bench -- jinja`).
#[cfg(not(target_arch = "wasm32"))]
pub mod recording {
    use std::cell::RefCell;

    /// One render.
    #[derive(serde::Serialize)]
    pub struct Render {
        /// The template's name.
        pub name: &'static str,
        /// Its source.
        pub source: &'static str,
        /// The context it was rendered with, as JSON.
        pub context: serde_json::Value,
        /// What minijinja rendered.
        pub output: String,
    }

    thread_local! {
        static RENDERS: RefCell<Option<Vec<Render>>> = const { RefCell::new(None) };
    }

    /// Starts recording on this thread (dropping anything recorded before).
    pub fn start() {
        RENDERS.with(|r| *r.borrow_mut() = Some(Vec::new()));
    }

    /// Stops recording and returns what was recorded.
    pub fn take() -> Vec<Render> {
        RENDERS.with(|r| r.borrow_mut().take()).unwrap_or_default()
    }

    /// The names the Python filters treat specially: keywords, pydantic's reserved names, and the
    /// names the models module imports (what a port of `py_ident` and `py_class` needs).
    pub fn reserved_names() -> serde_json::Value {
        serde_json::json!({
            "keywords": crate::python::PY_KEYWORDS,
            "pydantic": crate::python::PYDANTIC_RESERVED,
            "model_imports": crate::python::MODEL_IMPORTS,
        })
    }

    pub(crate) fn context(
        agent: &crate::AgentView,
        plugin: &str,
        extra: &minijinja::Value,
    ) -> Option<serde_json::Value> {
        let on = RENDERS.with(|r| r.borrow().is_some());
        if !on {
            return None;
        }
        let mut context = match serde_json::to_value(extra) {
            Ok(serde_json::Value::Object(map)) => map,
            _ => serde_json::Map::new(),
        };
        context.insert("agent".into(), serde_json::to_value(agent).unwrap_or_default());
        context.insert("plugin".into(), plugin.into());
        Some(serde_json::Value::Object(context))
    }

    pub(crate) fn record(template: &crate::Template, context: Option<serde_json::Value>, output: &str) {
        let Some(context) = context else { return };
        RENDERS.with(|r| {
            if let Some(list) = r.borrow_mut().as_mut() {
                list.push(Render { name: template.name, source: template.source, context, output: output.to_owned() });
            }
        });
    }
}

/// An output path (a [`Template::path`]) with `{package}` and `{item}` filled in.
pub fn output_path(path: &str, agent: &AgentView, item: &str) -> String {
    path.replace("{package}", &agent.package).replace("{item}", item)
}

/// The files of upstream entries (`context.upstream.<entry>.files[].path`), sorted, for plugins
/// that wire together what others generated.
///
/// # Errors
/// An [`ExtractError`] when the context is not the shape the host sends.
pub fn upstream_paths(request: &Request) -> Result<Vec<String>, ExtractError> {
    let context: serde_json::Value = request.context()?;
    let mut paths = Vec::new();
    if let Some(entries) = context.get("upstream").and_then(|u| u.as_object()) {
        for entry in entries.values() {
            for file in entry.get("files").and_then(|f| f.as_array()).into_iter().flatten() {
                if let Some(p) = file.get("path").and_then(|p| p.as_str()) {
                    paths.push(p.to_owned());
                }
            }
        }
    }
    paths.sort();
    Ok(paths)
}

/// The JSON Schema of a config object with `properties` and nothing else.
pub fn config_schema(properties: serde_json::Value) -> serde_json::Value {
    serde_json::json!({
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        "type": "object",
        "additionalProperties": false,
        "properties": properties,
    })
}

/// Which modules of the agent's package upstream entries generated: `has(paths, "memory/__init__.py")`.
pub fn has(paths: &[String], agent: &AgentView, module: &str) -> bool {
    let suffix = format!("src/{}/{module}", agent.package);
    paths.iter().any(|p| p == &suffix || p.ends_with(&format!("/{suffix}")))
}

/// Whether upstream entries generated `file` (a path relative to the agent's folder, like `docs/openapi.json`).
pub fn has_file(paths: &[String], file: &str) -> bool {
    paths.iter().any(|p| p == file || p.ends_with(&format!("/{file}")))
}

/// A template value of any serializable item.
pub fn value<T: serde::Serialize>(item: &T) -> minijinja::Value {
    minijinja::Value::from(minijinja::value::Serde(item))
}

/// `info()` of a plugin of the family: it reads `Agent` schemas, and its config is an object with
/// `config_properties` (JSON Schema properties) and nothing else.
pub fn family_info(name: &str, version: &str, description: &str, config_properties: serde_json::Value) -> PluginInfo {
    PluginInfo::new(name, version, description).kinds(&["Agent"]).config_schema(config_schema(config_properties))
}

/// Renders each template once (no `{item}`) into `response`.
///
/// # Errors
/// The first template that fails to render.
pub fn render_all(
    response: &mut Response,
    templates: &[&Template],
    agent: &AgentView,
    plugin: &str,
    extra: &minijinja::Value,
) -> Result<(), ExtractError> {
    for t in templates {
        response.push_file(output_path(t.path, agent, ""), render(t, agent, plugin, extra.clone())?);
    }
    Ok(())
}
