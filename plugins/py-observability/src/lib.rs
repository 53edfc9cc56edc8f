//! `py-observability`: the agent's structured logging, Prometheus metrics (latency buckets from
//! the SLOs) and its operational endpoints `/health`, `/ready` and `/metrics`.

use qpf_agent_model::{AgentView, Template, family_info, render_all};
use qpf_sdk::{ExtractError, Extractor, PluginInfo, Request, Response};

const TEMPLATES: [Template; 2] = [
    Template {
        path: "src/{package}/observability.py",
        name: "observability.py.j2",
        source: include_str!("../templates/observability.py.j2"),
    },
    Template {
        path: "src/{package}/operations.py",
        name: "operations.py.j2",
        source: include_str!("../templates/operations.py.j2"),
    },
];
const PLUGIN: &str = concat!("py-observability ", env!("CARGO_PKG_VERSION"));

/// The extractor (exported as the component; public for native callers).
pub struct PyObservability;

impl Extractor for PyObservability {
    fn info() -> PluginInfo {
        family_info(
            "py-observability",
            env!("CARGO_PKG_VERSION"),
            "Logging, metrics and probes of an agent.",
            serde_json::json!({}),
        )
    }

    fn extract(request: Request) -> Result<Response, ExtractError> {
        let agent = AgentView::from_request(&request)?;
        let mut response = Response::new();
        render_all(&mut response, &TEMPLATES.iter().collect::<Vec<_>>(), &agent, PLUGIN, &minijinja::context! {})?;
        Ok(response)
    }
}

qpf_sdk::export!(PyObservability);
