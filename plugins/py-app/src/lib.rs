//! `py-app`: the glue of an agent's service: the package's `__init__.py`, `app.py` (the FastAPI
//! application wiring every module the entries it `needs` generated), `__main__.py` and
//! `pyproject.toml`.
//!
//! What gets wired comes from `context.upstream`: a module that no upstream entry generated is
//! left out (remove the memory entry from the map and the app no longer opens memory stores).

use qpf_agent_model::{AgentView, Template, family_info, has, has_file, render_all, upstream_paths};
use qpf_sdk::{Diagnostic, ExtractError, Extractor, PluginInfo, Request, Response, Severity};

const TEMPLATES: [Template; 5] = [
    Template { path: "src/{package}/__init__.py", name: "init.py.j2", source: include_str!("../templates/init.py.j2") },
    Template { path: "src/{package}/auth.py", name: "auth.py.j2", source: include_str!("../templates/auth.py.j2") },
    Template { path: "src/{package}/app.py", name: "app.py.j2", source: include_str!("../templates/app.py.j2") },
    Template { path: "src/{package}/__main__.py", name: "main.py.j2", source: include_str!("../templates/main.py.j2") },
    Template {
        path: "pyproject.toml",
        name: "pyproject.toml.j2",
        source: include_str!("../templates/pyproject.toml.j2"),
    },
];
const PLUGIN: &str = concat!("py-app ", env!("CARGO_PKG_VERSION"));

/// The extras of `pyproject.toml` per memory backend.
fn extras(agent: &AgentView) -> Vec<(&'static str, Vec<&'static str>)> {
    let mut out = Vec::new();
    if agent.backends.iter().any(|b| b == "postgres" || b == "vector") {
        out.push(("postgres", vec!["psycopg[binary,pool]>=3.1"]));
    }
    if agent.backends.iter().any(|b| b == "redis") || agent.coordinates {
        out.push(("redis", vec!["redis>=5"]));
    }
    if agent.backends.iter().any(|b| b == "s3") {
        out.push(("s3", vec!["boto3>=1.34"]));
    }
    out
}

/// The extractor (exported as the component; public for native callers).
pub struct PyApp;

impl Extractor for PyApp {
    fn info() -> PluginInfo {
        family_info(
            "py-app",
            env!("CARGO_PKG_VERSION"),
            "The application wiring and packaging of an agent.",
            serde_json::json!({}),
        )
    }

    fn extract(request: Request) -> Result<Response, ExtractError> {
        let agent = AgentView::from_request(&request)?;
        let paths = upstream_paths(&request)?;
        let module = |m: &str| has(&paths, &agent, m);
        if !module("settings.py") {
            return Err(ExtractError::new("the app needs `settings.py`: add the entry that generates it to `needs`")
                .with(Diagnostic::new(Severity::Info, format!("upstream files: {}", paths.join(", ")))));
        }
        let has = minijinja::context! {
            capabilities => module("capabilities/__init__.py"),
            errors => module("errors.py"),
            memory => module("memory/__init__.py"),
            subagents => module("subagents.py"),
            swarm => module("swarm.py"),
            anomalies => module("anomalies.py"),
            observability => module("observability.py"),
            operations => module("operations.py"),
            readme => has_file(&paths, &format!("{}/README.md", agent.name)),
            openapi => module("openapi.json"),
        };
        let extra = minijinja::context! {
            has,
            has_log_level => agent.settings.iter().any(|s| s.ident == "log_level"),
            extras => extras(&agent),
        };
        let mut response = Response::new();
        render_all(&mut response, &TEMPLATES.iter().collect::<Vec<_>>(), &agent, PLUGIN, &extra)?;
        Ok(response)
    }
}

qpf_sdk::export!(PyApp);
