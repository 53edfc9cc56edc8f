//! `md-docs`: an agent's documentation: `README.md`, and under `docs/` the configuration
//! reference, the API reference and the OpenAPI 3.1 document of its HTTP interface.
//!
//! The OpenAPI document is derived from the schema, not from a running app: it is the service's
//! contract. It is written twice, byte for byte: `docs/openapi.json` for readers and
//! `src/<package>/openapi.json`, which the app serves at `/openapi.json`. The generated test suite
//! checks that the served document is the published one in full, and that the app's routes and
//! models are the ones it describes.

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
const SERVED: &str = "src/{package}/openapi.json";
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
    schemas.insert("ErrorResponse".into(), error_response());
    let error_body = || json_body(json!({ "$ref": "#/components/schemas/ErrorResponse" }));
    let unauthorized =
        || json!({ "description": "unauthorized: missing or invalid credentials", "content": error_body() });
    for c in &agent.capabilities {
        let mut responses = serde_json::Map::new();
        responses.insert(
            "200".into(),
            json!({ "description": "Success", "content": json_body(json!({ "$ref": format!("#/components/schemas/{}", c.output_class) })) }),
        );
        let invalid = "invalid_request: the body does not match the input type";
        let mut declared_422 = None;
        for (status, names) in &c.responses {
            if *status == 422 {
                declared_422 = Some(names.clone());
            }
            responses.insert(status.to_string(), json!({ "description": names, "content": error_body() }));
        }
        let description = declared_422.map_or_else(|| invalid.to_owned(), |names| format!("{names}; or {invalid}"));
        responses.insert("422".into(), json!({ "description": description, "content": error_body() }));
        responses.insert("401".into(), unauthorized());
        responses.insert(
            "501".into(),
            json!({ "description": "not_implemented: `handlers.py` does not implement the capability yet", "content": error_body() }),
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
        let name =
            json!({ "name": "name", "in": "path", "required": true, "schema": { "type": "string", "enum": names } });
        let instance = json!({ "name": "instance", "in": "path", "required": true, "schema": { "type": "string" } });
        let task_id = json!({ "name": "task_id", "in": "path", "required": true, "schema": { "type": "string" } });
        let body = json!({ "content": json_body(json!({ "type": "object", "additionalProperties": true })) });
        let not_running = json!({ "description": "No running sub-agent of this name has this id on this replica.", "content": error_body() });
        let mut spawn =
            operation("Start a sub-agent, on a first task if one is given.", "subagents", json!({ "type": "object" }));
        spawn["parameters"] = json!([name]);
        spawn["requestBody"] = json!({ "required": false, "content": body["content"] });
        spawn["responses"]["404"] = json!({ "description": "No sub-agent has this name.", "content": error_body() });
        spawn["responses"]["429"] = json!({ "description": "The sub-agent already runs `max_instances` times (across the replicas sharing a Redis).", "content": error_body() });
        spawn["responses"]["503"] =
            json!({ "description": "The remote sub-agent does not answer.", "content": error_body() });
        paths.insert("/subagents/{name}".into(), json!({ "post": spawn }));
        let mut status = operation("A running sub-agent and its tasks.", "subagents", json!({ "type": "object" }));
        status["parameters"] = json!([name, instance]);
        status["responses"]["404"] = not_running.clone();
        let mut stop = json!({ "summary": "Stop a sub-agent.", "tags": ["subagents"], "responses": { "204": { "description": "Stopped." } } });
        stop["parameters"] = json!([name, instance]);
        stop["responses"]["404"] = not_running.clone();
        paths.insert("/subagents/{name}/{instance}".into(), json!({ "get": status, "delete": stop }));
        let mut submit = json!({ "summary": "Deliver a task to a running sub-agent.", "tags": ["subagents"], "responses": { "202": { "description": "Queued: the task's id and state.", "content": json_body(json!({ "type": "object" })) } } });
        submit["parameters"] = json!([name, instance]);
        submit["requestBody"] = json!({ "required": true, "content": body["content"] });
        submit["responses"]["404"] = not_running.clone();
        submit["responses"]["429"] =
            json!({ "description": "The sub-agent has too many tasks waiting.", "content": error_body() });
        paths.insert("/subagents/{name}/{instance}/tasks".into(), json!({ "post": submit }));
        let mut task = operation(
            "A task delivered to a sub-agent: its state (queued, running, done, failed), result and error.",
            "subagents",
            json!({ "type": "object" }),
        );
        task["parameters"] = json!([name, instance, task_id]);
        task["responses"]["404"] = json!({ "description": "No such sub-agent or task.", "content": error_body() });
        paths.insert("/subagents/{name}/{instance}/tasks/{task_id}".into(), json!({ "get": task }));
    }
    if !agent.capabilities.is_empty() {
        let names: Vec<&str> = agent.capabilities.iter().map(|c| c.name.as_str()).collect();
        let mut submit = json!({
            "summary": "Queue a task for whichever replica is free.",
            "tags": ["swarm"],
            "parameters": [{ "name": "idempotency-key", "in": "header", "required": false, "schema": { "type": "string", "maxLength": 200 }, "description": "A repeated submission with the same key returns the first one's id." }],
            "requestBody": { "required": true, "content": json_body(json!({
                "type": "object",
                "required": ["capability"],
                "properties": { "capability": { "type": "string", "enum": names }, "input": { "type": "object" } }
            })) },
            "responses": { "202": { "description": "Queued: the task's id.", "content": json_body(json!({ "type": "object" })) } }
        });
        submit["responses"]["413"] =
            json!({ "description": "The task is larger than 1 MiB of JSON.", "content": error_body() });
        paths.insert("/swarm/tasks".into(), json!({ "post": submit }));
        let mut task = operation(
            "A swarm task: its state (queued, done, failed), result, error and the replica that ran it.",
            "swarm",
            json!({ "type": "object" }),
        );
        task["parameters"] =
            json!([{ "name": "task_id", "in": "path", "required": true, "schema": { "type": "string" } }]);
        task["responses"]["404"] = json!({ "description": "No swarm task has this id.", "content": error_body() });
        paths.insert("/swarm/tasks/{task_id}".into(), json!({ "get": task }));
        paths.insert(
            "/swarm/members".into(),
            json!({ "get": operation("The replicas taking part (a recent heartbeat).", "swarm", json!({ "type": "object" })) }),
        );
    }
    if !agent.anomalies.is_empty() {
        let names: Vec<&str> = agent.anomalies.iter().map(|a| a.name.as_str()).collect();
        let mut report =
            operation("Report an anomaly.", "anomalies", json!({ "$ref": "#/components/schemas/AnomalyOutcome" }));
        report["requestBody"] = json!({
            "required": true,
            "content": json_body(json!({ "$ref": "#/components/schemas/AnomalyReport" })),
        });
        schemas.insert(
            "AnomalyReport".into(),
            json!({
                "type": "object",
                "title": "AnomalyReport",
                "description": "An anomaly, as reported to `POST /anomalies/{name}`.",
                "properties": { "detail": { "type": "object", "additionalProperties": true } }
            }),
        );
        schemas.insert(
            "AnomalyOutcome".into(),
            json!({
                "type": "object",
                "title": "AnomalyOutcome",
                "description": "What the agent did about a reported anomaly.",
                "required": ["anomaly", "severity", "action", "acted"],
                "properties": {
                    "anomaly": { "type": "string" },
                    "severity": { "type": "string" },
                    "action": { "type": "string" },
                    "acted": { "type": "boolean" }
                }
            }),
        );
        report["parameters"] =
            json!([{ "name": "name", "in": "path", "required": true, "schema": { "type": "string", "enum": names } }]);
        report["responses"]["404"] = json!({ "description": "No anomaly type has this name." });
        paths.insert("/anomalies/{name}".into(), json!({ "post": report }));
    }
    // Every operation needs credentials but the probes and the scrape.
    for (path, item) in paths.iter_mut() {
        for operation in item.as_object_mut().into_iter().flat_map(|o| o.values_mut()) {
            if ["/health", "/ready", "/metrics"].contains(&path.as_str()) {
                operation["security"] = json!([]);
            } else if let Some(responses) = operation["responses"].as_object_mut() {
                responses.entry("401").or_insert_with(unauthorized);
            }
        }
    }
    json!({
        "openapi": "3.1.0",
        "info": { "title": agent.name, "version": agent.version, "description": agent.description },
        "paths": paths,
        "components": {
            "schemas": schemas,
            "securitySchemes": {
                "apiKey": { "type": "apiKey", "in": "header", "name": "X-API-Key", "description": "One of the keys of the `API_KEYS` setting (or `Authorization: Bearer <key>`)." },
                "bearer": { "type": "http", "scheme": "bearer", "description": "An API key, or with `AUTH=jwt` an HS256 JSON Web Token." }
            }
        },
        "security": [{ "apiKey": [] }, { "bearer": [] }],
    })
}
/// The extractor (exported as the component; public for native callers).
pub struct MdDocs;

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
        let served = qpf_agent_model::output_path(SERVED, &agent, "");
        Ok(response.file(OPENAPI, doc.clone()).file(served, doc))
    }
}

qpf_sdk::export!(MdDocs);
