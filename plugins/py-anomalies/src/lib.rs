//! `py-anomalies`: the agent's `anomalies.py`: anomaly handlers of an agent, with its endpoints.
//!
//! An anomaly with `action: agent` is handed to an agent of its own: this plugin asks the host
//! (a template spawn) for a new Agent schema completed from the extractor map's handler template,
//! which every entry of the map then extracts into a service of its own; the generated module
//! posts each raise of the anomaly to that service's `handle` capability.

use std::collections::BTreeMap;

use qpf_agent_model::{AgentView, Template, family_info, output_path, render};
use qpf_sdk::{ExtractError, Extractor, PluginInfo, Request, Response};
use serde::Deserialize;

const MODULE: Template = Template {
    path: "src/{package}/anomalies.py",
    name: "anomalies.py.j2",
    source: include_str!("../templates/anomalies.py.j2"),
};
const PLUGIN: &str = concat!("py-anomalies ", env!("CARGO_PKG_VERSION"));

/// The entry's config.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Config {
    /// The extractor map's template the handler agents of `action: agent` anomalies are
    /// completed from.
    #[serde(default = "default_template")]
    handler_template: String,
}

fn default_template() -> String {
    "anomaly-handler".to_owned()
}

/// What the host tells an entry about the templates it may spawn from (`context.templates`).
#[derive(Deserialize)]
struct Context {
    #[serde(default)]
    templates: BTreeMap<String, String>,
}

/// The extractor (exported as the component; public for native callers).
pub struct PyAnomalies;

impl Extractor for PyAnomalies {
    fn info() -> PluginInfo {
        family_info(
            "py-anomalies",
            env!("CARGO_PKG_VERSION"),
            "Anomaly handlers of an agent; handler agents for `action: agent` anomalies (template spawns).",
            serde_json::json!({ "handler_template": { "type": "string" } }),
        )
    }

    fn extract(request: Request) -> Result<Response, ExtractError> {
        let config: Config = request.config()?;
        let agent = AgentView::from_request(&request)?;
        if agent.anomalies.is_empty() {
            return Ok(Response::new());
        }
        let text = render(&MODULE, &agent, PLUGIN, minijinja::context! {})?;
        let mut response = Response::new().file(output_path(MODULE.path, &agent, ""), text);
        let handed: Vec<_> = agent.anomalies.iter().filter_map(|a| Some((a, a.handler.as_ref()?))).collect();
        if handed.is_empty() {
            return Ok(response);
        }
        let context: Context = request.context()?;
        if !context.templates.contains_key(&config.handler_template) {
            return Err(ExtractError::new(format!(
                "anomaly `{}` has `action: agent`, which extracts a handler agent from the template `{}`: declare it under `templates` in the extractor map and allow it under this entry's `spawn.templates`",
                handed[0].0.name, config.handler_template
            )));
        }
        let template = format!("template:{}", config.handler_template);
        for (anomaly, handler) in handed {
            let description = format!(
                "Handles the `{}` anomaly of the `{}` agent{}",
                anomaly.name,
                agent.name,
                if anomaly.description.is_empty() { ".".to_owned() } else { format!(": {}", anomaly.description) }
            );
            let input = serde_json::json!({
                "name": handler.name,
                "version": agent.version,
                "labels": { "qpf.dev/handles": format!("{}.{}", agent.name, anomaly.name) },
                "spec": { "description": description },
            });
            response = response.spawn(&template, &input, &serde_json::json!({}));
        }
        Ok(response)
    }
}

qpf_sdk::export!(PyAnomalies);
