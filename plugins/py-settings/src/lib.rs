//! `py-settings`: the agent's `settings.py`, a pydantic-settings class read from `<AGENT>_*`
//! environment variables, with the schema's settings and defaults plus the URL settings of its
//! memory stores and sub-agents.

use qpf_agent_model::{AgentView, Template, family_info, output_path, render};
use qpf_sdk::{ExtractError, Extractor, PluginInfo, Request, Response};

const SETTINGS: Template = Template {
    path: "src/{package}/settings.py",
    name: "settings.py.j2",
    source: include_str!("../templates/settings.py.j2"),
};
const PLUGIN: &str = concat!("py-settings ", env!("CARGO_PKG_VERSION"));

/// The extractor (exported as the component; public for native callers).
pub struct PySettings;

impl Extractor for PySettings {
    fn info() -> PluginInfo {
        family_info(
            "py-settings",
            env!("CARGO_PKG_VERSION"),
            "An agent's settings module (pydantic-settings).",
            serde_json::json!({}),
        )
    }

    fn extract(request: Request) -> Result<Response, ExtractError> {
        let agent = AgentView::from_request(&request)?;
        let text = render(&SETTINGS, &agent, PLUGIN, minijinja::context! {})?;
        Ok(Response::new().file(output_path(SETTINGS.path, &agent, ""), text))
    }
}

qpf_sdk::export!(PySettings);
