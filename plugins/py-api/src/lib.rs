//! `py-api`: the agent's capabilities as FastAPI routers, one module per capability, the
//! `Handlers` interface behind them (every capability 501 until implemented), the declared errors
//! with their HTTP mapping, and `handlers.py`, a scaffold: the team's subclass of `Handlers`,
//! written once and theirs from then on.

use qpf_agent_model::{AgentView, Template, family_info, output_path, render, render_all};
use qpf_sdk::{ExtractError, Extractor, PluginInfo, Request, Response};

const ERRORS: Template = Template {
    path: "src/{package}/errors.py",
    name: "errors.py.j2",
    source: include_str!("../templates/errors.py.j2"),
};
const PACKAGE: Template = Template {
    path: "src/{package}/capabilities/__init__.py",
    name: "capabilities.py.j2",
    source: include_str!("../templates/capabilities.py.j2"),
};
const CAPABILITY: Template = Template {
    path: "src/{package}/capabilities/{item}.py",
    name: "capability.py.j2",
    source: include_str!("../templates/capability.py.j2"),
};
const HANDLERS: Template = Template {
    path: "src/{package}/handlers.py",
    name: "handlers.py.j2",
    source: include_str!("../templates/handlers.py.j2"),
};
const PLUGIN: &str = concat!("py-api ", env!("CARGO_PKG_VERSION"));

/// The extractor (exported as the component; public for native callers).
pub struct PyApi;

impl Extractor for PyApi {
    fn info() -> PluginInfo {
        family_info(
            "py-api",
            env!("CARGO_PKG_VERSION"),
            "FastAPI routers, handlers and errors of an agent.",
            serde_json::json!({}),
        )
    }

    fn extract(request: Request) -> Result<Response, ExtractError> {
        let agent = AgentView::from_request(&request)?;
        let mut response = Response::new();
        render_all(&mut response, &[&ERRORS, &PACKAGE], &agent, PLUGIN, &minijinja::context! {})?;
        for cap in &agent.capabilities {
            let text = render(&CAPABILITY, &agent, PLUGIN, minijinja::context! { cap => qpf_agent_model::value(cap) })?;
            response.push_file(output_path(CAPABILITY.path, &agent, &cap.ident), text);
        }
        let handlers = render(&HANDLERS, &agent, PLUGIN, minijinja::context! {})?;
        response.push_scaffold(output_path(HANDLERS.path, &agent, ""), handlers);
        Ok(response)
    }
}

qpf_sdk::export!(PyApi);
