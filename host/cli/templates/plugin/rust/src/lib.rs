//! `{{name}}`: a QPF extractor plugin. It writes `hello.txt` with the schema's name and the keys of
//! its input; replace `extract` with your generator.

use qpf_sdk::{ExtractError, Extractor, PluginInfo, Request, Response};

struct Plugin;

impl Extractor for Plugin {
    fn info() -> PluginInfo {
        PluginInfo::new("{{name}}", env!("CARGO_PKG_VERSION"), "Writes a greeting per schema.")
    }

    fn extract(request: Request) -> Result<Response, ExtractError> {
        let input: serde_json::Value = request.input()?;
        let Some(object) = input.as_object() else {
            return Err(ExtractError::new("the input must be an object"));
        };
        let keys: Vec<&str> = object.keys().map(String::as_str).collect();
        let text = format!("hello, {}\ninput keys: {}\n", request.schema.name, keys.join(", "));
        Ok(Response::new().file("hello.txt", text))
    }
}

qpf_sdk::export!(Plugin);
