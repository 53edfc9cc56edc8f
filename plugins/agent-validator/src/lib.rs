//! `agent-validator`: the `Agent` kind's validator. It returns no files, only a diagnostic per
//! broken rule ([`qpf_agent_model::rules`]), each pointing at the value in the schema and named by
//! its rule id. The checks are the generators' own ([`qpf_agent_model::view::check`]), so a schema
//! this validator passes is one every generator of the family accepts; and, with the project's
//! agent names the host gives validators (`context.project.names.Agent`), it also checks that
//! each sub-agent runs an agent of the project.

use qpf_agent_model::family_info;
use qpf_sdk::{ExtractError, Extractor, PluginInfo, Request, Response};

/// The extractor (exported as the component; public for native callers).
pub struct AgentValidator;

impl Extractor for AgentValidator {
    fn info() -> PluginInfo {
        family_info(
            "agent-validator",
            env!("CARGO_PKG_VERSION"),
            "Checks an Agent schema's references, names and defaults before any generator runs.",
            serde_json::json!({}),
        )
    }

    fn extract(request: Request) -> Result<Response, ExtractError> {
        Ok(qpf_agent_model::view::check(&request).into_iter().fold(Response::new(), Response::diagnostic))
    }
}

qpf_sdk::export!(AgentValidator);
