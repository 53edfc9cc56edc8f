//! `py-anomalies`: the agent's `anomalies.py`: anomaly handlers of an agent, with its endpoints.

use qpf_agent_model::{AgentView, Template, family_info, output_path, render};
use qpf_sdk::{ExtractError, Extractor, PluginInfo, Request, Response};

const MODULE: Template = Template {
    path: "src/{package}/anomalies.py",
    name: "anomalies.py.j2",
    source: include_str!("../templates/anomalies.py.j2"),
};
const PLUGIN: &str = concat!("py-anomalies ", env!("CARGO_PKG_VERSION"));

/// The extractor (exported as the component; public for native callers).
pub struct PyAnomalies;

impl Extractor for PyAnomalies {
    fn info() -> PluginInfo {
        family_info("py-anomalies", env!("CARGO_PKG_VERSION"), "Anomaly handlers of an agent.", serde_json::json!({}))
    }

    fn extract(request: Request) -> Result<Response, ExtractError> {
        let agent = AgentView::from_request(&request)?;
        if agent.anomalies.is_empty() {
            return Ok(Response::new());
        }
        let text = render(&MODULE, &agent, PLUGIN, minijinja::context! {})?;
        Ok(Response::new().file(output_path(MODULE.path, &agent, ""), text))
    }
}

qpf_sdk::export!(PyAnomalies);
