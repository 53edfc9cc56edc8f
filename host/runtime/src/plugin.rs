//! A loaded plugin: its digest, its `info()`, and its `InstancePre`; plus the conversions between
//! the generated WIT types and the plain types of [`crate::types`].

use std::path::{Path, PathBuf};

use wasmtime::component::Component;

use crate::bindings::ExtractorPre;
use crate::bindings::qpf::extractor::types as wit;
use crate::runtime::StoreState;
use crate::types::{Diagnostic, ExtractError, OutputFile, PluginInfo, Request, Response, Severity, SpawnRequest};

/// A plugin ready to run: compiled once, pre-instantiated once, instantiated per invocation.
pub struct Plugin {
    path: PathBuf,
    pub(crate) digest: String,
    pre: ExtractorPre<StoreState>,
    info: PluginInfo,
}

impl std::fmt::Debug for Plugin {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Plugin").field("path", &self.path).field("digest", &self.digest).finish_non_exhaustive()
    }
}

impl Plugin {
    pub(crate) fn new(path: PathBuf, digest: String, pre: ExtractorPre<StoreState>, info: PluginInfo) -> Self {
        Plugin { path, digest, pre, info }
    }

    pub(crate) fn pre(&self) -> &ExtractorPre<StoreState> {
        &self.pre
    }

    /// Where the component was loaded from.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// `blake3:<hex>` of the component's bytes.
    pub fn digest(&self) -> &str {
        &self.digest
    }

    /// What the plugin said about itself.
    pub fn info(&self) -> &PluginInfo {
        &self.info
    }

    /// The plugin's name from `info()`.
    pub fn name(&self) -> &str {
        &self.info().name
    }
}

/// Explains why a component cannot be linked, naming the imports the sandbox does not grant.
/// The WASI p2 packages the host links, every capability denied (no folders, environment,
/// arguments or sockets; a frozen clock; seeded randomness). Anything else is refused at load.
const GRANTED_WASI: &[&str] =
    &["wasi:cli/", "wasi:io/", "wasi:clocks/", "wasi:random/", "wasi:filesystem/", "wasi:sockets/"];

/// Whether the sandbox satisfies an import of this name.
pub fn is_granted(import: &str) -> bool {
    import.starts_with("qpf:extractor/") || GRANTED_WASI.iter().any(|p| import.starts_with(p))
}

/// How to build each toolchain's components without imports the sandbox refuses.
pub const BUILD_WITHOUT_IMPORTS: &str = "build Python plugins with `componentize-py ... --stub-wasi`, JavaScript plugins with `jco componentize ... --disable all`, or any of them with `qpf plugin build`";

/// The imports of `component` the sandbox refuses.
pub(crate) fn refused_imports(component: &Component, engine: &wasmtime::Engine) -> Vec<String> {
    component
        .component_type()
        .imports(engine)
        .map(|(name, _)| name.to_owned())
        .filter(|name| !is_granted(name))
        .collect()
}

pub(crate) fn explain_link_error(component: &Component, engine: &wasmtime::Engine, error: &wasmtime::Error) -> String {
    let refused = refused_imports(component, engine);
    if refused.is_empty() {
        format!("{error:#}")
    } else {
        format!(
            "it imports {}, which the sandbox does not grant (only `qpf:extractor/log` and WASI p2 with every capability denied); {BUILD_WITHOUT_IMPORTS}",
            refused.iter().map(|n| format!("`{n}`")).collect::<Vec<_>>().join(", ")
        )
    }
}

pub(crate) fn info_from_wit(i: wit::PluginInfo) -> PluginInfo {
    PluginInfo {
        name: i.name,
        version: i.version,
        description: i.description,
        kinds: i.kinds,
        config_schema: i.config_schema,
    }
}

pub(crate) fn request_to_wit(r: &Request) -> wit::Request {
    wit::Request {
        entry: r.entry.clone(),
        schema: wit::SchemaId {
            kind: r.schema.kind.clone(),
            name: r.schema.name.clone(),
            version: r.schema.version.clone(),
        },
        input: r.input.clone(),
        config: r.config.clone(),
        context: r.context.clone(),
    }
}

fn diagnostic_from_wit(d: wit::Diagnostic) -> Diagnostic {
    use crate::budgets::{MAX_MESSAGE_BYTES, MAX_POINTER_BYTES, truncate};
    Diagnostic {
        severity: match d.severity {
            wit::Severity::Error => Severity::Error,
            wit::Severity::Warning => Severity::Warning,
            wit::Severity::Info => Severity::Info,
        },
        message: truncate(d.message, MAX_MESSAGE_BYTES),
        pointer: d.pointer.filter(|p| p.len() <= MAX_POINTER_BYTES),
    }
}

/// The first [`crate::budgets::MAX_DIAGNOSTICS`] diagnostics, each within its budget, and a note
/// counting the rest.
fn diagnostics_from_wit(list: Vec<wit::Diagnostic>) -> Vec<Diagnostic> {
    let max = crate::budgets::MAX_DIAGNOSTICS;
    let total = list.len();
    let mut out: Vec<Diagnostic> = list.into_iter().take(max).map(diagnostic_from_wit).collect();
    if total > max {
        out.push(Diagnostic {
            severity: Severity::Warning,
            message: format!("{} more diagnostics dropped (the host keeps {max} per invocation)", total - max),
            pointer: None,
        });
    }
    out
}

pub(crate) fn result_from_wit(r: Result<wit::Response, wit::ExtractError>) -> Result<Response, ExtractError> {
    match r {
        Ok(resp) => Ok(Response {
            files: resp.files.into_iter().map(|f| OutputFile { path: f.path, contents: f.contents }).collect(),
            diagnostics: diagnostics_from_wit(resp.diagnostics),
            spawns: resp
                .spawns
                .into_iter()
                .map(|s| SpawnRequest { plugin: s.plugin, input: s.input, config: s.config })
                .collect(),
        }),
        Err(e) => Err(ExtractError {
            message: crate::budgets::truncate(e.message, crate::budgets::MAX_MESSAGE_BYTES),
            diagnostics: diagnostics_from_wit(e.diagnostics),
        }),
    }
}
