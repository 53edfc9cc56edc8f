//! `md-docs`: an agent's documentation: `README.md`, and under `docs/` the configuration
//! reference, the API reference and the OpenAPI 3.1 document of its HTTP interface.
//!
//! The OpenAPI document is derived from the schema, not from a running app; the generated test
//! suite checks that the app serves exactly the operations it lists.

use qpf_agent_model::{AgentView, Template, family_info, render};
use qpf_sdk::{ExtractError, Extractor, PluginInfo, Request, Response};
use serde_json::{Value, json};

/// The documents, by the name the config's `documents` uses.
const TEMPLATES: [(&str, Template); 3] = [
    ("readme", Template { path: "README.md", name: "README.md.j2", source: include_str!("../templates/README.md.j2") }),
    (
        "config",
        Template { path: "docs/CONFIG.md", name: "CONFIG.md.j2", source: include_str!("../templates/CONFIG.md.j2") },
    ),
    ("api", Template { path: "docs/API.md", name: "API.md.j2", source: include_str!("../templates/API.md.j2") }),
];

/// The entry's config.
#[derive(serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct Config {
    /// Which documents to write; all of them by default.
    #[serde(default = "all_documents")]
    documents: Vec<String>,
}

fn all_documents() -> Vec<String> {
    ["readme", "config", "api", "openapi"].map(String::from).to_vec()
}
const OPENAPI: &str = "docs/openapi.json";
const PLUGIN: &str = concat!("md-docs ", env!("CARGO_PKG_VERSION"));

fn error_response() -> Value {
    json!({
        "type": "object",
        "title": "ErrorResponse",
        "description": "The body of every error response.",
        "required": ["code", "message"],
        "properties": {
            "code": { "type": "string" },
            "message": { "type": "string" },
            "retryable": { "type": "boolean", "default": false }
        }
    })
}

fn json_body(schema: Value) -> Value {
    json!({ "application/json": { "schema": schema } })
}

fn operation(summary: &str, tag: &str, response: Value) -> Value {
    json!({ "summary": summary, "tags": [tag], "responses": { "200": { "description": "Success", "content": json_body(response) } } })
}

/// The OpenAPI document of the service the family generates for `agent`.
fn openapi(agent: &AgentView) -> Value {
    let mut paths = serde_json::Map::new();
    let mut schemas = serde_json::Map::new();
    for t in &agent.types {
        schemas.insert(t.class.clone(), t.json_schema.clone());
    }
    if !agent.capabilities.is_empty() {
        schemas.insert("ErrorResponse".into(), error_response());
    }
    for c in &agent.capabilities {
        let mut responses = serde_json::Map::new();
        responses.insert(
            "200".into(),
            json!({ "description": "Success", "content": json_body(json!({ "$ref": format!("#/components/schemas/{}", c.output_class) })) }),
        );
        for (status, names) in &c.responses {
            responses.insert(
                status.to_string(),
                json!({ "description": names, "content": json_body(json!({ "$ref": "#/components/schemas/ErrorResponse" })) }),
            );
        }
        responses.insert("422".into(), json!({ "description": "The body does not match the input type." }));
        responses.insert(
            "501".into(),
            json!({ "description": "not_implemented: `handlers.py` does not implement the capability yet.", "content": json_body(json!({ "$ref": "#/components/schemas/ErrorResponse" })) }),
        );
        paths.insert(
            c.path.clone(),
            json!({ "post": {
                "operationId": c.name,
                "summary": if c.description.is_empty() { &c.name } else { &c.description },
                "tags": ["capabilities"],
                "requestBody": {
                    "required": true,
                    "content": { "application/json": {
                        "schema": { "$ref": format!("#/components/schemas/{}", c.input_class) },
                        "example": c.sample_input,
                    } }
                },
                "responses": responses,
            } }),
        );
    }
    paths.insert(
        "/health".into(),
        json!({ "get": operation("Liveness: the process serves requests.", "operations", json!({ "type": "object" })) }),
    );
    paths.insert(
        "/ready".into(),
        json!({ "get": operation("Readiness: every dependency answers (503 otherwise).", "operations", json!({ "type": "object" })) }),
    );
    paths.insert(
        "/metrics".into(),
        json!({ "get": { "summary": "Prometheus metrics.", "tags": ["operations"], "responses": { "200": { "description": "Metrics in the Prometheus text format", "content": { "text/plain": { "schema": { "type": "string" } } } } } } }),
    );
    if !agent.subagents.is_empty() {
        let names: Vec<&str> = agent.subagents.iter().map(|s| s.name.as_str()).collect();
        paths.insert(
            "/subagents".into(),
            json!({ "get": operation("The declared sub-agents and how many of each run.", "subagents", json!({ "type": "array" })) }),
        );
        let mut spawn = operation("Start a sub-agent on a task.", "subagents", json!({ "type": "object" }));
        spawn["parameters"] =
            json!([{ "name": "name", "in": "path", "required": true, "schema": { "type": "string", "enum": names } }]);
        spawn["responses"]["404"] = json!({ "description": "No sub-agent has this name." });
        spawn["responses"]["429"] = json!({ "description": "The sub-agent already runs `max_instances` times." });
        paths.insert("/subagents/{name}".into(), json!({ "post": spawn }));
    }
    if !agent.anomalies.is_empty() {
        let names: Vec<&str> = agent.anomalies.iter().map(|a| a.name.as_str()).collect();
        let mut report = operation("Report an anomaly.", "anomalies", json!({ "type": "object" }));
        report["parameters"] =
            json!([{ "name": "name", "in": "path", "required": true, "schema": { "type": "string", "enum": names } }]);
        report["responses"]["404"] = json!({ "description": "No anomaly type has this name." });
        paths.insert("/anomalies/{name}".into(), json!({ "post": report }));
    }
    json!({
        "openapi": "3.1.0",
        "info": { "title": agent.name, "version": agent.version, "description": agent.description },
        "paths": paths,
        "components": { "schemas": schemas },
    })
}

struct MdDocs;

impl Extractor for MdDocs {
    fn info() -> PluginInfo {
        family_info(
            "md-docs",
            env!("CARGO_PKG_VERSION"),
            "README, configuration and API docs, and the OpenAPI document of an agent.",
            json!({
                "documents": {
                    "type": "array",
                    "items": { "enum": ["readme", "config", "api", "openapi"] },
                    "uniqueItems": true
                }
            }),
        )
    }

    fn extract(request: Request) -> Result<Response, ExtractError> {
        let config: Config = request.config()?;
        let agent = AgentView::from_request(&request)?;
        let wanted = |name: &str| config.documents.iter().any(|d| d == name);
        let mut response = Response::new();
        for (name, t) in &TEMPLATES {
            if wanted(name) {
                response.push_file(t.path, render(t, &agent, PLUGIN, minijinja::context! {})?);
            }
        }
        if !wanted("openapi") {
            return Ok(response);
        }
        let mut doc = serde_json::to_string_pretty(&openapi(&agent))
            .map_err(|e| ExtractError::new(format!("cannot encode the OpenAPI document: {e}")))?;
        doc.push('\n');
        Ok(response.file(OPENAPI, doc))
    }
}

qpf_sdk::export!(MdDocs);
