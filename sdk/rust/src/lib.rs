//! `qpf-sdk`: everything a Rust extractor plugin needs, and nothing else.
//!
//! This crate owns the one `wit_bindgen::generate!` for the `qpf:extractor@0.2.0` world (`wit/0.2.0`)
//! and wraps it in plain Rust: implement [`Extractor`] for a type, call [`export!`] once, and build
//! for `wasm32-wasip2`. Input and config arrive as JSON and can be read into serde types with
//! [`Request::input`] and [`Request::config`]; outputs are collected in a [`Response`]: generated
//! files ([`Response::file`]), which QPF owns, and scaffolds ([`Response::scaffold`]), which QPF
//! writes once, when absent, and leaves to their user from then on.
//!
//! ```no_run
//! use qpf_sdk::{Extractor, ExtractError, PluginInfo, Request, Response};
//!
//! struct Hello;
//!
//! impl Extractor for Hello {
//!     fn info() -> PluginInfo {
//!         PluginInfo::new("hello", env!("CARGO_PKG_VERSION"), "Writes a greeting per schema.")
//!     }
//!     fn extract(request: Request) -> Result<Response, ExtractError> {
//!         let name = request.schema.name.clone();
//!         Ok(Response::new().file("hello.txt", format!("hello, {name}\n")))
//!     }
//! }
//!
//! qpf_sdk::export!(Hello);
//! ```

use serde::de::DeserializeOwned;

#[doc(hidden)]
#[allow(clippy::too_many_arguments)] // generated code
pub mod bindings {
    wit_bindgen::generate!({
        world: "extractor",
        path: "wit/0.2.0",
        pub_export_macro: true,
        export_macro_name: "__export_world",
        default_bindings_module: "qpf_sdk::bindings",
    });
}

use bindings::qpf::extractor::types as wit;

/// The contract version this SDK implements (the WIT package version).
pub const ABI_VERSION: &str = "0.2.0";

/// What a plugin says about itself (`info()` in the WIT).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PluginInfo {
    /// Short, stable plugin name, e.g. `py-models`.
    pub name: String,
    /// The plugin's version (semver).
    pub version: String,
    /// One sentence on what the plugin generates.
    pub description: String,
    /// Accepted schema kinds; empty accepts every kind.
    pub kinds: Vec<String>,
    /// JSON Schema of the config object (empty: any config).
    pub config_schema: String,
}

impl PluginInfo {
    /// Starts a description with a name, a version and one sentence.
    pub fn new(name: &str, version: &str, description: &str) -> Self {
        PluginInfo {
            name: name.to_owned(),
            version: version.to_owned(),
            description: description.to_owned(),
            kinds: Vec::new(),
            config_schema: String::new(),
        }
    }

    /// Restricts the plugin to these schema kinds.
    pub fn kinds(mut self, kinds: &[&str]) -> Self {
        self.kinds = kinds.iter().map(|k| (*k).to_owned()).collect();
        self
    }

    /// Declares the JSON Schema of the plugin's config (the host validates configs against it).
    pub fn config_schema(mut self, schema: serde_json::Value) -> Self {
        self.config_schema = schema.to_string();
        self
    }
}

/// Identifies the schema an invocation reads.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SchemaId {
    /// The schema's kind, e.g. `Agent`.
    pub kind: String,
    /// `metadata.name`.
    pub name: String,
    /// `metadata.version`.
    pub version: String,
}

/// One invocation's input, as the host sent it.
#[derive(Debug, Clone)]
pub struct Request {
    /// The extractor-map entry this invocation belongs to.
    pub entry: String,
    /// The schema being read.
    pub schema: SchemaId,
    /// The selected part of the schema, as canonical JSON.
    pub input_json: String,
    /// The entry's config, as canonical JSON.
    pub config_json: String,
    /// The context object, as JSON.
    pub context_json: String,
}

impl Request {
    /// Reads the selected input into a serde type.
    ///
    /// # Errors
    /// An [`ExtractError`] saying which field did not match, when the input does not fit `T`.
    pub fn input<T: DeserializeOwned>(&self) -> Result<T, ExtractError> {
        serde_json::from_str(&self.input_json)
            .map_err(|e| ExtractError::new(format!("input does not match the expected shape: {e}")))
    }

    /// Reads the entry's config into a serde type.
    ///
    /// # Errors
    /// An [`ExtractError`] when the config does not fit `T`.
    pub fn config<T: DeserializeOwned>(&self) -> Result<T, ExtractError> {
        serde_json::from_str(&self.config_json)
            .map_err(|e| ExtractError::new(format!("config does not match the expected shape: {e}")))
    }

    /// Reads the context object into a serde type.
    ///
    /// # Errors
    /// An [`ExtractError`] when the context does not fit `T`.
    pub fn context<T: DeserializeOwned>(&self) -> Result<T, ExtractError> {
        serde_json::from_str(&self.context_json)
            .map_err(|e| ExtractError::new(format!("context does not match the expected shape: {e}")))
    }
}

/// How serious a [`Diagnostic`] is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Severity {
    /// The output is wrong or incomplete.
    Error,
    /// Usable output, but the input deserves attention.
    Warning,
    /// For information.
    Info,
}

/// A message about the input, optionally at a JSON Pointer into it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Diagnostic {
    /// How serious it is.
    pub severity: Severity,
    /// What is wrong and what to do.
    pub message: String,
    /// JSON Pointer into the request's input.
    pub pointer: Option<String>,
}

impl Diagnostic {
    /// A diagnostic of the given severity.
    pub fn new(severity: Severity, message: impl Into<String>) -> Self {
        Diagnostic { severity, message: message.into(), pointer: None }
    }

    /// Points the diagnostic at a value of the input (a JSON Pointer such as `/types/0/name`).
    pub fn at(mut self, pointer: impl Into<String>) -> Self {
        self.pointer = Some(pointer.into());
        self
    }
    /// Names the rule the diagnostic enforces (e.g. `agent/unknown-type`): the message then starts
    /// with `[RULE] `, which the host shows as `error[RULE]` and puts in SARIF output as the rule
    /// id. A rule is 1 to 64 characters of `a-z`, `0-9`, `-`, `_`, `.`, `/`, starting with a letter
    /// or digit, outside the host's `qpf/` namespace; the host reads any other prefix as message.
    pub fn rule(mut self, rule: &str) -> Self {
        self.message = format!("[{rule}] {}", self.message);
        self
    }
}

/// A further invocation the plugin asks the host to run.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Spawn {
    /// Plugin name, as declared in the project.
    pub plugin: String,
    /// Input JSON.
    pub input: String,
    /// Config JSON.
    pub config: String,
}

/// What a successful invocation produces.
#[derive(Debug, Clone, Default)]
pub struct Response {
    /// Generated files: (relative path, bytes). QPF owns them: rewritten on every run, checked
    /// for drift, removed when no longer produced.
    pub files: Vec<(String, Vec<u8>)>,
    /// Scaffold files: (relative path, bytes). Written only when absent; from then on their
    /// user's (never overwritten, drift-checked or removed). A path is a file or a scaffold, not
    /// both.
    pub scaffolds: Vec<(String, Vec<u8>)>,
    /// Messages about the input.
    pub diagnostics: Vec<Diagnostic>,
    /// Further invocations requested.
    pub spawns: Vec<Spawn>,
}

impl Response {
    /// An empty response.
    pub fn new() -> Self {
        Response::default()
    }

    /// Adds a file (builder style).
    pub fn file(mut self, path: impl Into<String>, contents: impl Into<Vec<u8>>) -> Self {
        self.push_file(path, contents);
        self
    }

    /// Adds a file.
    pub fn push_file(&mut self, path: impl Into<String>, contents: impl Into<Vec<u8>>) {
        self.files.push((path.into(), contents.into()));
    }

    /// Adds a scaffold: a file written only when absent, then left to its user (builder style).
    pub fn scaffold(mut self, path: impl Into<String>, contents: impl Into<Vec<u8>>) -> Self {
        self.push_scaffold(path, contents);
        self
    }

    /// Adds a scaffold.
    pub fn push_scaffold(&mut self, path: impl Into<String>, contents: impl Into<Vec<u8>>) {
        self.scaffolds.push((path.into(), contents.into()));
    }

    /// Adds a diagnostic.
    pub fn diagnostic(mut self, diagnostic: Diagnostic) -> Self {
        self.diagnostics.push(diagnostic);
        self
    }

    /// Asks the host to run another invocation.
    pub fn spawn(mut self, plugin: &str, input: &serde_json::Value, config: &serde_json::Value) -> Self {
        self.spawns.push(Spawn { plugin: plugin.to_owned(), input: input.to_string(), config: config.to_string() });
        self
    }
}

/// The plugin's own explanation of a failure (`extract-error` in the WIT).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExtractError {
    /// What went wrong and what to do.
    pub message: String,
    /// Details.
    pub diagnostics: Vec<Diagnostic>,
}

impl ExtractError {
    /// An error with a message.
    pub fn new(message: impl Into<String>) -> Self {
        ExtractError { message: message.into(), diagnostics: Vec::new() }
    }

    /// Adds a detail.
    pub fn with(mut self, diagnostic: Diagnostic) -> Self {
        self.diagnostics.push(diagnostic);
        self
    }
}

impl std::fmt::Display for ExtractError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.message)
    }
}

impl std::error::Error for ExtractError {}

/// Implement this for a type and pass the type to [`export!`].
pub trait Extractor {
    /// Describes the plugin.
    fn info() -> PluginInfo;

    /// Runs one invocation. Must be deterministic.
    ///
    /// # Errors
    /// An [`ExtractError`] when the input cannot be turned into output; the host reports it as the
    /// plugin's error (not as a crash) and the other invocations go on.
    fn extract(request: Request) -> Result<Response, ExtractError>;
}

/// Writes to the host's log (tagged with the plugin and entry).
pub mod log {
    use crate::bindings::qpf::extractor::log::{Level, log};

    /// Logs at debug level.
    pub fn debug(message: &str) {
        log(Level::Debug, message);
    }
    /// Logs at info level.
    pub fn info(message: &str) {
        log(Level::Info, message);
    }
    /// Logs at warn level.
    pub fn warn(message: &str) {
        log(Level::Warn, message);
    }
    /// Logs at error level.
    pub fn error(message: &str) {
        log(Level::Error, message);
    }
}

/// Exports a type implementing [`Extractor`] as the component's `extractor` world.
#[macro_export]
macro_rules! export {
    ($ty:ident) => {
        impl $crate::bindings::Guest for $ty {
            fn info() -> $crate::bindings::PluginInfo {
                $crate::__private::report_panics();
                $crate::__private::info_to_wit(<$ty as $crate::Extractor>::info())
            }
            fn extract(
                request: $crate::bindings::Request,
            ) -> ::core::result::Result<$crate::bindings::Response, $crate::bindings::ExtractError> {
                $crate::__private::report_panics();
                $crate::__private::result_to_wit(<$ty as $crate::Extractor>::extract(
                    $crate::__private::request_from_wit(request),
                ))
            }
        }
        // The component's exports exist only in the wasm build: natively (a benchmark or a test
        // calling the plugin's `Extractor` in-process) several plugins can link into one binary.
        #[cfg(target_arch = "wasm32")]
        $crate::bindings::__export_world!($ty with_types_in $crate::bindings);
        // Natively, the extractor is still the crate's entry point (no dead-code warnings).
        #[cfg(not(target_arch = "wasm32"))]
        const _: (fn() -> $crate::PluginInfo, fn($crate::Request) -> Result<$crate::Response, $crate::ExtractError>) =
            (<$ty as $crate::Extractor>::info, <$ty as $crate::Extractor>::extract);
    };
}

#[doc(hidden)]
pub mod __private {
    use super::*;

    /// Makes a panic log its message and location at error level before the plugin aborts: the
    /// host puts that line at the head of the crash report (a panic is a trap, not an
    /// `extract-error`, so nothing else would carry the message).
    pub fn report_panics() {
        static ONCE: std::sync::Once = std::sync::Once::new();
        ONCE.call_once(|| {
            std::panic::set_hook(Box::new(|info| {
                let payload = info.payload();
                let message = payload
                    .downcast_ref::<&str>()
                    .map(|s| (*s).to_owned())
                    .or_else(|| payload.downcast_ref::<String>().cloned())
                    .unwrap_or_else(|| "(a panic without a message)".to_owned());
                let location = info
                    .location()
                    .map(|l| format!("{}:{}:{}", l.file(), l.line(), l.column()))
                    .unwrap_or_else(|| "an unknown location".to_owned());
                crate::log::error(&format!("panicked at {location}: {message}"));
            }));
        });
    }

    fn severity(s: Severity) -> wit::Severity {
        match s {
            Severity::Error => wit::Severity::Error,
            Severity::Warning => wit::Severity::Warning,
            Severity::Info => wit::Severity::Info,
        }
    }

    fn diagnostic(d: Diagnostic) -> wit::Diagnostic {
        wit::Diagnostic { severity: severity(d.severity), message: d.message, pointer: d.pointer }
    }

    pub fn info_to_wit(i: PluginInfo) -> wit::PluginInfo {
        wit::PluginInfo {
            name: i.name,
            version: i.version,
            description: i.description,
            kinds: i.kinds,
            config_schema: i.config_schema,
        }
    }

    pub fn request_from_wit(r: wit::Request) -> Request {
        Request {
            entry: r.entry,
            schema: SchemaId { kind: r.schema.kind, name: r.schema.name, version: r.schema.version },
            input_json: r.input,
            config_json: r.config,
            context_json: r.context,
        }
    }

    pub fn result_to_wit(r: Result<Response, ExtractError>) -> Result<wit::Response, wit::ExtractError> {
        match r {
            Ok(resp) => Ok(wit::Response {
                files: resp
                    .files
                    .into_iter()
                    .map(|(path, contents)| wit::OutputFile { path, contents, mode: wit::FileMode::Generated })
                    .chain(resp.scaffolds.into_iter().map(|(path, contents)| wit::OutputFile {
                        path,
                        contents,
                        mode: wit::FileMode::Scaffold,
                    }))
                    .collect(),
                diagnostics: resp.diagnostics.into_iter().map(diagnostic).collect(),
                spawns: resp
                    .spawns
                    .into_iter()
                    .map(|s| wit::SpawnRequest { plugin: s.plugin, input: s.input, config: s.config })
                    .collect(),
            }),
            Err(e) => Err(wit::ExtractError {
                message: e.message,
                diagnostics: e.diagnostics.into_iter().map(diagnostic).collect(),
            }),
        }
    }
}
