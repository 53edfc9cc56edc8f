//! `py-subagents`: the agent's `subagents.py`: sub-agent registry and spawner of an agent, with its endpoints.

use qpf_agent_model::{AgentView, Template, family_info, output_path, render};
use qpf_sdk::{ExtractError, Extractor, PluginInfo, Request, Response};

const MODULE: Template = Template {
    path: "src/{package}/subagents.py",
    name: "subagents.py.j2",
    source: include_str!("../templates/subagents.py.j2"),
};
const PLUGIN: &str = concat!("py-subagents ", env!("CARGO_PKG_VERSION"));

/// The extractor (exported as the component; public for native callers).
pub struct PySubagents;

impl Extractor for PySubagents {
    fn info() -> PluginInfo {
        family_info(
            "py-subagents",
            env!("CARGO_PKG_VERSION"),
            "Sub-agent registry and spawner of an agent.",
            serde_json::json!({}),
        )
    }

    fn extract(request: Request) -> Result<Response, ExtractError> {
        let agent = AgentView::from_request(&request)?;
        if agent.subagents.is_empty() {
            return Ok(Response::new());
        }
        let text = render(&MODULE, &agent, PLUGIN, minijinja::context! {})?;
        Ok(Response::new().file(output_path(MODULE.path, &agent, ""), text))
    }
}

qpf_sdk::export!(PySubagents);
