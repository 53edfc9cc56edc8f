//! `py-models`: pydantic v2 models for the `types` of an Agent schema, one class per type.
//!
//! Field names that are not valid Python (`class`, `from`, `my-field`) become valid identifiers
//! with the original name kept as the pydantic alias, so the wire format is unchanged.

use qpf_agent_model::{AgentView, Template, family_info, output_path, render};
use qpf_sdk::{ExtractError, Extractor, PluginInfo, Request, Response};
use serde::Deserialize;

/// The models module; its path comes from the entry's config.
const MODELS: Template = Template { path: "", name: "models.py.j2", source: include_str!("../templates/models.py.j2") };
const PLUGIN: &str = concat!("py-models ", env!("CARGO_PKG_VERSION"));

/// The entry's config.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Config {
    /// Where to write the module, relative to the entry's output folder. `{package}` is replaced
    /// by the agent's Python package name.
    #[serde(default = "default_path")]
    path: String,
}

fn default_path() -> String {
    "src/{package}/models.py".to_owned()
}

/// The extractor (exported as the component; public for native callers).
pub struct PyModels;

impl Extractor for PyModels {
    fn info() -> PluginInfo {
        family_info(
            "py-models",
            env!("CARGO_PKG_VERSION"),
            "Pydantic v2 models for an agent's types.",
            serde_json::json!({ "path": { "type": "string" } }),
        )
    }

    fn extract(request: Request) -> Result<Response, ExtractError> {
        let config: Config = request.config()?;
        let agent = AgentView::from_request(&request)?;
        let text = render(&MODELS, &agent, PLUGIN, minijinja::context! {})?;
        Ok(Response::new().file(output_path(&config.path, &agent, ""), text))
    }
}

qpf_sdk::export!(PyModels);
