//! `py-tests`: the agent's pytest suite: every capability (its output model, input validation,
//! the configured handler and each declared error's mapping), the operational endpoints, the
//! settings, and the memory stores, sub-agents and anomaly handlers the app wires.
//!
//! Like `py-app`, it reads `context.upstream` to test only what upstream entries generated; with
//! the docs entry upstream it also checks that the published OpenAPI document matches the app.

use qpf_agent_model::{
    AgentView, Template, family_info, has, has_file, output_path, render, render_all, upstream_paths,
};
use qpf_sdk::{ExtractError, Extractor, PluginInfo, Request, Response};

const CONFTEST: Template =
    Template { path: "tests/conftest.py", name: "conftest.py.j2", source: include_str!("../templates/conftest.py.j2") };
const OPERATIONS: Template = Template {
    path: "tests/test_operations.py",
    name: "test_operations.py.j2",
    source: include_str!("../templates/test_operations.py.j2"),
};
const CAPABILITY: Template = Template {
    path: "tests/test_capability_{item}.py",
    name: "test_capability.py.j2",
    source: include_str!("../templates/test_capability.py.j2"),
};
const MEMORY: Template = Template {
    path: "tests/test_memory.py",
    name: "test_memory.py.j2",
    source: include_str!("../templates/test_memory.py.j2"),
};
const SUBAGENTS: Template = Template {
    path: "tests/test_subagents.py",
    name: "test_subagents.py.j2",
    source: include_str!("../templates/test_subagents.py.j2"),
};
const SUBAGENTS_BENCH: Template = Template {
    path: "tests/bench_subagents.py",
    name: "bench_subagents.py.j2",
    source: include_str!("../templates/bench_subagents.py.j2"),
};
const SWARM: Template = Template {
    path: "tests/test_swarm.py",
    name: "test_swarm.py.j2",
    source: include_str!("../templates/test_swarm.py.j2"),
};
const ANOMALIES: Template = Template {
    path: "tests/test_anomalies.py",
    name: "test_anomalies.py.j2",
    source: include_str!("../templates/test_anomalies.py.j2"),
};
const BACKENDS: Template = Template {
    path: "tests/test_backends.py",
    name: "test_backends.py.j2",
    source: include_str!("../templates/test_backends.py.j2"),
};
const AUTH: Template = Template {
    path: "tests/test_auth.py",
    name: "test_auth.py.j2",
    source: include_str!("../templates/test_auth.py.j2"),
};
const PLUGIN: &str = concat!("py-tests ", env!("CARGO_PKG_VERSION"));

/// The extractor (exported as the component; public for native callers).
pub struct PyTests;

impl Extractor for PyTests {
    fn info() -> PluginInfo {
        family_info("py-tests", env!("CARGO_PKG_VERSION"), "The pytest suite of an agent.", serde_json::json!({}))
    }

    fn extract(request: Request) -> Result<Response, ExtractError> {
        let agent = AgentView::from_request(&request)?;
        let paths = upstream_paths(&request)?;
        if !has(&paths, &agent, "app.py") {
            return Err(ExtractError::new("the tests need `app.py`: add the entry that generates it to `needs`"));
        }
        let extra = minijinja::context! {
            has => minijinja::context! {
                openapi => has_file(&paths, &format!("{}/docs/openapi.json", agent.name)),
                observability => has(&paths, &agent, "observability.py"),
                errors => has(&paths, &agent, "errors.py"),
                capabilities => has(&paths, &agent, "capabilities/__init__.py"),
            },
        };
        let mut response = Response::new();
        render_all(&mut response, &[&CONFTEST, &OPERATIONS], &agent, PLUGIN, &extra)?;
        if has(&paths, &agent, "capabilities/__init__.py") {
            for cap in &agent.capabilities {
                let ctx = minijinja::context! { cap => qpf_agent_model::value(cap), ..extra.clone() };
                response.push_file(
                    output_path(CAPABILITY.path, &agent, &cap.ident),
                    render(&CAPABILITY, &agent, PLUGIN, ctx)?,
                );
            }
        }
        let parts = [
            (&MEMORY, "memory/__init__.py", !agent.memory.is_empty()),
            (&SUBAGENTS, "subagents.py", !agent.subagents.is_empty()),
            (&SUBAGENTS_BENCH, "subagents.py", !agent.subagents.is_empty()),
            (&SWARM, "swarm.py", !agent.capabilities.is_empty()),
            (&ANOMALIES, "anomalies.py", !agent.anomalies.is_empty()),
            (&AUTH, "auth.py", true),
            (&BACKENDS, "memory/__init__.py", agent.memory.iter().any(|m| m.backend != "memory")),
        ];
        for (t, module, declared) in parts {
            if declared && has(&paths, &agent, module) {
                response.push_file(output_path(t.path, &agent, ""), render(t, &agent, PLUGIN, extra.clone())?);
            }
        }
        Ok(response)
    }
}

qpf_sdk::export!(PyTests);
