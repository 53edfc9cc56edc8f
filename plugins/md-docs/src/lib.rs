//! `md-docs`: a Markdown API reference for an Agent schema: its capabilities (endpoint, input,
//! output, errors) and a table per type.

use qpf_agent_model::AgentSpec;
use qpf_sdk::{ExtractError, Extractor, PluginInfo, Request, Response};
use serde::Deserialize;

const TEMPLATE: &str = include_str!("../templates/API.md.j2");

/// The entry's config.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Config {
    /// File name of the reference, relative to the entry's output folder.
    #[serde(default = "default_path")]
    path: String,
}

fn default_path() -> String {
    "API.md".to_owned()
}

struct MdDocs;

impl Extractor for MdDocs {
    fn info() -> PluginInfo {
        PluginInfo::new("md-docs", env!("CARGO_PKG_VERSION"), "A Markdown API reference for an agent.")
            .kinds(&["Agent"])
            .config_schema(serde_json::json!({
                "$schema": "https://json-schema.org/draft/2020-12/schema",
                "type": "object",
                "additionalProperties": false,
                "properties": { "path": { "type": "string" } }
            }))
    }

    fn extract(request: Request) -> Result<Response, ExtractError> {
        let config: Config = request.config()?;
        let spec: AgentSpec = request.input()?;
        let env = qpf_agent_model::template_env();
        let rendered = env
            .render_str(
                TEMPLATE,
                minijinja::context! {
                    agent => minijinja::context! {
                        kind => request.schema.kind,
                        name => request.schema.name,
                        version => request.schema.version,
                    },
                    plugin => concat!("md-docs ", env!("CARGO_PKG_VERSION")),
                    spec => minijinja::value::Value::from(minijinja::value::Serde(&spec)),
                },
            )
            .map_err(|e| ExtractError::new(format!("template `API.md.j2` failed: {e:#}")))?;
        Ok(Response::new().file(config.path, rendered))
    }
}

qpf_sdk::export!(MdDocs);
