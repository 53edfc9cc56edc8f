//! `py-memory`: the agent's memory package: one interface, an in-process store that every memory
//! falls back to, and an adapter per backend the schema uses (redis, postgres, vector, s3).

use qpf_agent_model::{AgentView, Template, family_info, render_all};
use qpf_sdk::{ExtractError, Extractor, PluginInfo, Request, Response};

const PACKAGE: Template = Template {
    path: "src/{package}/memory/__init__.py",
    name: "memory.py.j2",
    source: include_str!("../templates/memory.py.j2"),
};
const IN_MEMORY: Template = Template {
    path: "src/{package}/memory/in_memory.py",
    name: "in_memory.py.j2",
    source: include_str!("../templates/in_memory.py.j2"),
};
/// The adapter of each durable backend.
const BACKENDS: &[(&str, Template)] = &[
    (
        "redis",
        Template {
            path: "src/{package}/memory/redis_store.py",
            name: "redis_store.py.j2",
            source: include_str!("../templates/redis_store.py.j2"),
        },
    ),
    (
        "postgres",
        Template {
            path: "src/{package}/memory/postgres_store.py",
            name: "postgres_store.py.j2",
            source: include_str!("../templates/postgres_store.py.j2"),
        },
    ),
    (
        "vector",
        Template {
            path: "src/{package}/memory/vector_store.py",
            name: "vector_store.py.j2",
            source: include_str!("../templates/vector_store.py.j2"),
        },
    ),
    (
        "s3",
        Template {
            path: "src/{package}/memory/s3_store.py",
            name: "s3_store.py.j2",
            source: include_str!("../templates/s3_store.py.j2"),
        },
    ),
];
const PLUGIN: &str = concat!("py-memory ", env!("CARGO_PKG_VERSION"));

/// The extractor (exported as the component; public for native callers).
pub struct PyMemory;

impl Extractor for PyMemory {
    fn info() -> PluginInfo {
        family_info(
            "py-memory",
            env!("CARGO_PKG_VERSION"),
            "Memory stores of an agent, with in-process defaults.",
            serde_json::json!({}),
        )
    }

    fn extract(request: Request) -> Result<Response, ExtractError> {
        let agent = AgentView::from_request(&request)?;
        let mut response = Response::new();
        if agent.memory.is_empty() {
            return Ok(response);
        }
        let mut templates = vec![&PACKAGE, &IN_MEMORY];
        // `vector` stores extend the postgres adapter.
        let needs = |b: &str| agent.backends.iter().any(|x| x == b || (b == "postgres" && x == "vector"));
        templates.extend(BACKENDS.iter().filter(|(b, _)| needs(b)).map(|(_, t)| t));
        render_all(&mut response, &templates, &agent, PLUGIN, &minijinja::context! {})?;
        Ok(response)
    }
}

qpf_sdk::export!(PyMemory);
