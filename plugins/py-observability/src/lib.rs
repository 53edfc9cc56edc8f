//! `py-observability`: the agent's structured logging, Prometheus metrics (latency buckets from
//! the SLOs) and its operational endpoints `/health`, `/ready` and `/metrics`.

use qpf_agent_model::{AgentView, Template, config_schema, output_path, render};
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

struct PyObservability;

impl Extractor for PyObservability {
    fn info() -> PluginInfo {
        PluginInfo::new("py-observability", env!("CARGO_PKG_VERSION"), "Logging, metrics and probes of an agent.")
            .kinds(&["Agent"])
            .config_schema(config_schema(serde_json::json!({})))
    }

    fn extract(request: Request) -> Result<Response, ExtractError> {
        let agent = AgentView::from_request(&request)?;
        let mut response = Response::new();
        for t in &TEMPLATES {
            response.push_file(output_path(t.path, &agent, ""), render(t, &agent, PLUGIN, minijinja::context! {})?);
        }
        Ok(response)
    }
}

qpf_sdk::export!(PyObservability);
