//! `py-subagents`: how an agent's work is spread: `subagents.py` (sub-agents that run, within
//! `max_instances` across replicas) and `swarm.py` (capability tasks shared by the replicas), with
//! their endpoints.

use qpf_agent_model::{AgentView, Template, family_info, output_path, render};
use qpf_sdk::{ExtractError, Extractor, PluginInfo, Request, Response};

const MODULE: Template = Template {
    path: "src/{package}/subagents.py",
    name: "subagents.py.j2",
    source: include_str!("../templates/subagents.py.j2"),
};
const SWARM: Template =
    Template { path: "src/{package}/swarm.py", name: "swarm.py.j2", source: include_str!("../templates/swarm.py.j2") };
const PLUGIN: &str = concat!("py-subagents ", env!("CARGO_PKG_VERSION"));

/// The extractor (exported as the component; public for native callers).
pub struct PySubagents;

impl Extractor for PySubagents {
    fn info() -> PluginInfo {
        family_info(
            "py-subagents",
            env!("CARGO_PKG_VERSION"),
            "Sub-agents that run, and the swarm of replicas sharing capability tasks.",
            serde_json::json!({}),
        )
    }

    fn extract(request: Request) -> Result<Response, ExtractError> {
        let agent = AgentView::from_request(&request)?;
        let mut response = Response::new();
        if !agent.subagents.is_empty() {
            let text = render(&MODULE, &agent, PLUGIN, minijinja::context! {})?;
            response.push_file(output_path(MODULE.path, &agent, ""), text);
        }
        // The swarm runs capability tasks: an agent without capabilities has none to share.
        if !agent.capabilities.is_empty() {
            let text = render(&SWARM, &agent, PLUGIN, minijinja::context! {})?;
            response.push_file(output_path(SWARM.path, &agent, ""), text);
        }
        Ok(response)
    }
}

qpf_sdk::export!(PySubagents);
