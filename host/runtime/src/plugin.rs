//! A loaded plugin: its digest, its contract version, its `info()`, and its `InstancePre`; plus
//! the conversions between each version's generated WIT types and the plain types of
//! [`crate::types`].

use std::path::{Path, PathBuf};

use wasmtime::component::{Component, InstancePre};

use crate::runtime::StoreState;
use crate::types::{
    Diagnostic, ExtractError, FileMode, OutputFile, PluginInfo, Request, Response, Severity, SpawnRequest,
};

/// The contract versions this host runs, oldest first.
pub const SUPPORTED_ABI_VERSIONS: &[&str] = &["0.1.0", "0.2.0"];

/// A plugin pre-instantiated against the world of its contract version.
pub(crate) enum World {
    /// `qpf:extractor@0.1.0`.
    V0_1(crate::bindings::v0_1::ExtractorPre<StoreState>),
    /// `qpf:extractor@0.2.0`.
    V0_2(crate::bindings::v0_2::ExtractorPre<StoreState>),
}

impl World {
    /// The contract version, e.g. `0.2.0`.
    pub(crate) fn abi(&self) -> &'static str {
        match self {
            World::V0_1(_) => "0.1.0",
            World::V0_2(_) => "0.2.0",
        }
    }

    /// Binds a linked component to the world of the contract version it imports
    /// (`qpf:extractor/*@X`, checked by [`check_versions`]), or, for a component that imports
    /// nothing of QPF's, to the first world its exports fit, newest first.
    pub(crate) fn bind(versions: &[String], pre: InstancePre<StoreState>) -> Result<World, String> {
        match versions.first().map(String::as_str) {
            Some("0.1.0") => {
                crate::bindings::v0_1::ExtractorPre::new(pre).map(World::V0_1).map_err(|e| mismatch("0.1.0", &e))
            }
            Some("0.2.0") => {
                crate::bindings::v0_2::ExtractorPre::new(pre).map(World::V0_2).map_err(|e| mismatch("0.2.0", &e))
            }
            _ => crate::bindings::v0_2::ExtractorPre::new(pre.clone()).map(World::V0_2).or_else(|newest| {
                crate::bindings::v0_1::ExtractorPre::new(pre).map(World::V0_1).map_err(|_| {
                    format!(
                        "it does not export the `extractor` world of `qpf:extractor` {}: {}",
                        SUPPORTED_ABI_VERSIONS.join(" or "),
                        crate::budgets::truncate(format!("{newest:#}"), 512)
                    )
                })
            }),
        }
    }
}

/// Refuses a component that imports a version of `qpf:extractor` this host does not run, or more
/// than one, naming the versions it runs.
pub(crate) fn check_versions(versions: &[String]) -> Result<(), String> {
    /// Versions named, at most, in the message about several.
    const MAX_SHOWN: usize = 5;
    let shown = |v: &String| match v.as_str() {
        "" => "(no version)".to_owned(),
        v => crate::budgets::truncate(qpf_core::text::escape(v).into_owned(), 64),
    };
    match versions {
        [] => Ok(()),
        [one] if SUPPORTED_ABI_VERSIONS.contains(&one.as_str()) => Ok(()),
        [one] => Err(format!(
            "it is built for {}, which this host does not run; it runs {} (use a qpf that runs it, or build the plugin with an SDK for one of those)",
            if one.is_empty() {
                "`qpf:extractor` without a version".to_owned()
            } else {
                format!("`qpf:extractor@{}`", shown(one))
            },
            SUPPORTED_ABI_VERSIONS.join(" and ")
        )),
        many => {
            let mut names: Vec<String> = many.iter().take(MAX_SHOWN).map(shown).collect();
            if many.len() > MAX_SHOWN {
                names.push(format!("and {} more", many.len() - MAX_SHOWN));
            }
            Err(format!(
                "it imports several versions of `qpf:extractor` ({}); a plugin implements one",
                names.join(", ")
            ))
        }
    }
}

fn mismatch(version: &str, e: &wasmtime::Error) -> String {
    format!(
        "it imports `qpf:extractor@{version}` but does not export that version's `extractor` world: {}",
        crate::budgets::truncate(format!("{e:#}"), 512)
    )
}

/// The versions of `qpf:extractor` a component imports (`qpf:extractor/log@0.2.0` gives
/// `0.2.0`), sorted, without duplicates.
pub(crate) fn declared_versions(component: &Component, engine: &wasmtime::Engine) -> Vec<String> {
    let mut versions: Vec<String> = component
        .component_type()
        .imports(engine)
        .filter_map(|(name, _)| {
            name.strip_prefix("qpf:extractor/").map(|rest| rest.split_once('@').map_or("", |(_, v)| v).to_owned())
        })
        .collect();
    versions.sort();
    versions.dedup();
    versions
}

/// A plugin ready to run: compiled once, pre-instantiated once, instantiated per invocation.
pub struct Plugin {
    path: PathBuf,
    pub(crate) digest: String,
    world: World,
    info: PluginInfo,
}

impl std::fmt::Debug for Plugin {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Plugin").field("path", &self.path).field("digest", &self.digest).finish_non_exhaustive()
    }
}

impl Plugin {
    pub(crate) fn new(path: PathBuf, digest: String, world: World, info: PluginInfo) -> Self {
        Plugin { path, digest, world, info }
    }

    pub(crate) fn world(&self) -> &World {
        &self.world
    }

    /// The version of the `qpf:extractor` contract the plugin implements, e.g. `0.2.0`.
    pub fn abi(&self) -> &'static str {
        self.world.abi()
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

/// The conversions between one contract version's generated types and the plain types. The
/// records are the same in every version except `output-file`, whose `mode` came in 0.2.0.
macro_rules! conversions {
    ($v:ident, $file:expr) => {
        pub(crate) mod $v {
            use super::*;
            use crate::bindings::$v::qpf::extractor::types as wit;

            pub(crate) fn info(i: wit::PluginInfo) -> PluginInfo {
                PluginInfo {
                    name: i.name,
                    version: i.version,
                    description: i.description,
                    kinds: i.kinds,
                    config_schema: i.config_schema,
                }
            }

            pub(crate) fn request(r: &Request) -> wit::Request {
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

            fn diagnostic(d: wit::Diagnostic) -> Diagnostic {
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

            fn diagnostics(list: Vec<wit::Diagnostic>) -> Vec<Diagnostic> {
                bounded_diagnostics(list.into_iter().map(diagnostic))
            }

            pub(crate) fn result(r: Result<wit::Response, wit::ExtractError>) -> Result<Response, ExtractError> {
                let file: fn(wit::OutputFile) -> OutputFile = $file;
                match r {
                    Ok(resp) => Ok(Response {
                        files: resp.files.into_iter().map(file).collect(),
                        diagnostics: diagnostics(resp.diagnostics),
                        spawns: resp
                            .spawns
                            .into_iter()
                            .map(|s| SpawnRequest { plugin: s.plugin, input: s.input, config: s.config })
                            .collect(),
                    }),
                    Err(e) => Err(ExtractError {
                        message: crate::budgets::truncate(e.message, crate::budgets::MAX_MESSAGE_BYTES),
                        diagnostics: diagnostics(e.diagnostics),
                    }),
                }
            }
        }
    };
}

conversions!(v0_1, |f| OutputFile { path: f.path, contents: f.contents, mode: FileMode::Generated });
conversions!(v0_2, |f| OutputFile {
    path: f.path,
    contents: f.contents,
    mode: match f.mode {
        crate::bindings::v0_2::qpf::extractor::types::FileMode::Generated => FileMode::Generated,
        crate::bindings::v0_2::qpf::extractor::types::FileMode::Scaffold => FileMode::Scaffold,
    },
});

/// The first [`crate::budgets::MAX_DIAGNOSTICS`] diagnostics, each within its budget, and a note
/// counting the rest.
fn bounded_diagnostics(list: impl ExactSizeIterator<Item = Diagnostic>) -> Vec<Diagnostic> {
    let max = crate::budgets::MAX_DIAGNOSTICS;
    let total = list.len();
    let mut out: Vec<Diagnostic> = list.take(max).collect();
    if total > max {
        out.push(Diagnostic {
            severity: Severity::Warning,
            message: format!("{} more diagnostics dropped (the host keeps {max} per invocation)", total - max),
            pointer: None,
        });
    }
    out
}

#[cfg(test)]
mod tests {
    use super::check_versions;

    #[test]
    fn unknown_missing_and_many_versions_are_refused_in_a_bounded_message() {
        let v = |list: &[&str]| list.iter().map(|s| (*s).to_owned()).collect::<Vec<_>>();
        assert_eq!(check_versions(&v(&[])), Ok(()));
        assert_eq!(check_versions(&v(&["0.1.0"])), Ok(()));
        assert_eq!(check_versions(&v(&["0.2.0"])), Ok(()));
        let err = check_versions(&v(&["9.9.9"])).unwrap_err();
        assert!(err.starts_with(
            "it is built for `qpf:extractor@9.9.9`, which this host does not run; it runs 0.1.0 and 0.2.0"
        ));
        assert!(check_versions(&v(&[""])).unwrap_err().contains("`qpf:extractor` without a version"));
        let many: Vec<String> = (0..1000).map(|i| format!("{i}.0.0")).collect();
        let err = check_versions(&many).unwrap_err();
        assert!(err.contains("and 995 more") && err.len() < 200, "{err}");
        let err = check_versions(&v(&["1.0.0\u{1b}[2J", "2.0.0"])).unwrap_err();
        assert!(!err.contains('\u{1b}'), "escaped for a terminal: {err}");
    }
}
