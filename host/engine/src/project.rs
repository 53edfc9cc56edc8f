//! The project: `qpf.yaml` and the extractor map it points to, read strictly (unknown keys are
//! errors) and checked before anything runs.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use qpf_runtime::{Limits, LoadLimits};
use qpf_schema::SchemaError;
use serde::{Deserialize, Serialize};

/// The project file's name.
pub const PROJECT_FILE: &str = "qpf.yaml";

/// `qpf.yaml`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ProjectFile {
    /// Format version of this file; `1`.
    pub version: u32,
    /// Globs (relative to the project root) of the schema files, e.g. `agents/*.yaml`.
    pub schemas: Vec<String>,
    /// Each kind, by name: its JSON Schema (draft 2020-12, relative to the project root), and
    /// the validator plugins that check what a JSON Schema cannot.
    #[serde(default)]
    pub kinds: BTreeMap<String, KindDecl>,
    /// Globs (relative to the project root) of migration files for `qpf schema migrate`.
    #[serde(default)]
    pub migrations: Vec<String>,
    /// Path of the extractor map, relative to the project root.
    pub map: PathBuf,
    /// Output root, relative to the project root (or absolute). Every generated file lands under it.
    pub output: PathBuf,
    /// Plugins by name: where the component is and the digest it must have.
    pub plugins: BTreeMap<String, PluginDecl>,
    /// Sandbox limits for every invocation (defaults apply to omitted fields).
    #[serde(default)]
    pub limits: Limits,
    /// What loading one plugin may cost (component size, functions, compile time).
    #[serde(default, rename = "load-limits")]
    pub load_limits: LoadLimits,
    /// A shared remote cache behind the local one (object storage; `--remote-cache` overrides).
    #[serde(default, rename = "remote-cache", skip_serializing_if = "Option::is_none")]
    pub remote_cache: Option<RemoteCacheDecl>,
    /// Folders of fragments shared between projects (relative to the project or absolute): a
    /// `name@range` import of a name no project schema has resolves among their schema files.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub registries: Vec<PathBuf>,
}

/// One kind in `qpf.yaml`: `Kind: path.schema.json`, or `Kind: { schema: PATH, validators: [...] }`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum KindDecl {
    /// Only the kind's JSON Schema.
    Schema(PathBuf),
    /// The JSON Schema and validators.
    Full(KindSpec),
}

/// The long form of a kind.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct KindSpec {
    /// The kind's JSON Schema, relative to the project root.
    pub schema: PathBuf,
    /// Plugins that check every schema of the kind before any generator runs on it (like buf's
    /// lint plugins): they return diagnostics only.
    #[serde(default)]
    pub validators: Vec<ValidatorDecl>,
}

/// A validator of a kind: a declared plugin run on every schema of the kind, which returns
/// diagnostics and no files. An error among them stops that schema's generators.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ValidatorDecl {
    /// Name of a plugin declared in `qpf.yaml`.
    pub plugin: String,
    /// JSON Pointer into each schema (e.g. `/spec`); empty selects the whole document.
    #[serde(default)]
    pub input: String,
    /// Config passed to the plugin (`{}` when omitted).
    #[serde(default = "empty_object")]
    pub config: serde_json::Value,
}

impl KindDecl {
    /// The kind's JSON Schema file.
    pub fn schema(&self) -> &Path {
        match self {
            KindDecl::Schema(p) => p,
            KindDecl::Full(k) => &k.schema,
        }
    }

    /// Its validators, in declaration order.
    pub fn validators(&self) -> &[ValidatorDecl] {
        match self {
            KindDecl::Schema(_) => &[],
            KindDecl::Full(k) => &k.validators,
        }
    }
}

/// The prefix of a validator invocation's entry id: `validate/PLUGIN`. Map entry ids cannot
/// contain `/`, so the two never meet.
pub const VALIDATOR_ENTRY_PREFIX: &str = "validate/";

/// `remote-cache:` in `qpf.yaml`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RemoteCacheDecl {
    /// `s3://BUCKET/PREFIX`, `gs://BUCKET/PREFIX` or `az://CONTAINER/PREFIX`.
    pub url: String,
    /// Mixed into every entry's name: change it to disown every entry written before.
    #[serde(default)]
    pub salt: String,
}

/// One plugin of the project.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PluginDecl {
    /// Path of the `.wasm` component, relative to the project root (empty when `oci` is given).
    #[serde(default, skip_serializing_if = "is_empty_path")]
    pub path: PathBuf,
    /// An OCI reference (`REGISTRY/REPOSITORY[:TAG|@sha256:…]`) the component is pulled from into
    /// the user's plugin store ([`crate::plugin_store`]), once; instead of `path`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub oci: Option<String>,
    /// `NAME@RANGE` (`py-models@^0.2`): the component is the newest `plugins/NAME/VERSION.wasm`
    /// of the `registries` folders whose version the range allows, or the version `qpf.lock`
    /// holds while it exists and matches; instead of `path` and `oci`. Its digest is locked.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub registry: Option<String>,
    /// With `oci` (a repository, without tag or digest): a semantic-version range of its tags
    /// (`^1.2`); the newest tag it allows, or the one `qpf.lock` holds, is pulled and locked.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub version: Option<String>,
    /// Expected `blake3:<hex>` digest of the component; loading fails when the file differs, and a
    /// pulled component that differs is refused. Optional with `registry` (the lock pins it then).
    #[serde(default)]
    pub digest: String,
}

/// Whether `s` is 1 to `max` bytes of lower-case letters, digits and `-` (entry ids, template and
/// registry plugin names).
fn is_slug(s: &str, max: usize) -> bool {
    !s.is_empty() && s.len() <= max && s.chars().all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-')
}

/// A plugin's `registry: NAME@RANGE`: the name and the range.
///
/// # Errors
/// Why it is not one.
pub fn registry_plugin_spec(spec: &str) -> Result<(String, semver::VersionReq), String> {
    let bad = || {
        format!(
            "`registry` must be `NAME@RANGE` like `py-models@^0.2` (NAME: lower-case letters, digits and `-`), got `{}`",
            qpf_core::text::escape(&spec.chars().take(80).collect::<String>())
        )
    };
    let (name, range) = spec.split_once('@').ok_or_else(bad)?;
    if !is_slug(name, 64) || range.len() > 64 {
        return Err(bad());
    }
    let range = semver::VersionReq::parse(range).map_err(|_| bad())?;
    Ok((name.to_owned(), range))
}

fn is_empty_path(p: &Path) -> bool {
    p.as_os_str().is_empty()
}

/// The longest `oci:` reference accepted.
const MAX_OCI_REFERENCE: usize = 512;

/// The extractor map file.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MapFile {
    /// The entries, run in this order when they do not depend on each other.
    pub entries: Vec<Entry>,
    /// Schema templates by name: schema files (relative to the project folder) that are not
    /// extracted themselves; an entry whose `spawn.templates` names one may ask for a new schema
    /// completed from it (`template:<name>` in a spawn request), which every entry selecting it
    /// then extracts.
    #[serde(default)]
    pub templates: BTreeMap<String, PathBuf>,
}

/// The prefix of a spawn request's `plugin` that names a template of the map instead.
pub const TEMPLATE_PREFIX: &str = "template:";
/// The most templates a map may declare.
pub const MAX_TEMPLATES: usize = 64;

/// One extractor-map entry: which schemas, which part of them, which plugin, which config, where.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Entry {
    /// Unique id of the entry (`[a-z0-9-]+`), used in reports, the lock and errors.
    pub id: String,
    /// Name of a plugin declared in `qpf.yaml`.
    pub plugin: String,
    /// Which schemas the entry applies to (all criteria must match).
    #[serde(default)]
    pub select: Selector,
    /// JSON Pointer into each selected schema (e.g. `/spec`); empty selects the whole document.
    #[serde(default)]
    pub input: String,
    /// Config passed to the plugin (any JSON value; `{}` when omitted).
    #[serde(default = "empty_object")]
    pub config: serde_json::Value,
    /// Output folder under the output root; `{kind}`, `{name}` and `{version}` are replaced by the
    /// schema's. Files the plugin returns are written under it.
    pub out: String,
    /// Entries that must run first for the same schema; their outputs (paths and digests) reach
    /// this entry's plugin in `context.upstream`, and their keys are part of this entry's key.
    #[serde(default)]
    pub needs: Vec<String>,
    /// Also pass the upstream files' contents (UTF-8 text; `null` for binary files).
    #[serde(default, rename = "upstream-contents")]
    pub upstream_contents: bool,
    /// Which further invocations this entry's plugin may ask for (dynamic spawning).
    #[serde(default)]
    pub spawn: SpawnPolicy,
}

/// What an entry's plugin may spawn.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct SpawnPolicy {
    /// Plugins (declared in qpf.yaml) that may be spawned; empty: spawning is refused.
    #[serde(default)]
    pub plugins: Vec<String>,
    /// Templates (declared under the map's `templates`) new schemas may be completed from.
    #[serde(default)]
    pub templates: Vec<String>,
    /// How deep spawns may nest (a spawned invocation spawning again is depth 2).
    #[serde(default = "default_spawn_depth")]
    pub max_depth: u32,
    /// How many invocations one top-level invocation may spawn in total.
    #[serde(default = "default_spawn_count")]
    pub max_count: u32,
}

/// The most `spawn.max-depth` may be: a chain is run with an explicit stack, but each level keeps
/// its parent's request.
pub const MAX_SPAWN_DEPTH: u32 = 64;
/// The most `spawn.max-count` may be: each spawned invocation is a report row and an audit record.
pub const MAX_SPAWN_COUNT: u32 = 10_000;

fn default_spawn_depth() -> u32 {
    2
}

fn default_spawn_count() -> u32 {
    32
}

impl Default for SpawnPolicy {
    fn default() -> Self {
        SpawnPolicy {
            plugins: Vec::new(),
            templates: Vec::new(),
            max_depth: default_spawn_depth(),
            max_count: default_spawn_count(),
        }
    }
}

fn empty_object() -> serde_json::Value {
    serde_json::Value::Object(serde_json::Map::new())
}

/// Which schemas an entry selects.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Selector {
    /// Only schemas of this kind.
    #[serde(default)]
    pub kind: Option<String>,
    /// Only schemas with one of these names.
    #[serde(default)]
    pub names: Vec<String>,
    /// Only schemas that carry all these labels.
    #[serde(default)]
    pub labels: BTreeMap<String, String>,
}

impl Selector {
    /// Whether a schema matches.
    pub fn matches(&self, schema: &qpf_schema::Schema) -> bool {
        let meta = &schema.doc.metadata;
        self.kind.as_ref().is_none_or(|k| *k == schema.doc.kind)
            && (self.names.is_empty() || self.names.contains(&meta.name))
            && self.labels.iter().all(|(k, v)| meta.labels.get(k) == Some(v))
    }
}

/// A loaded project.
#[derive(Debug, Clone)]
pub struct Project {
    /// The project root (the folder holding `qpf.yaml`).
    pub root: PathBuf,
    /// `qpf.yaml`.
    pub file: ProjectFile,
    /// The extractor map.
    pub map: MapFile,
}

/// Loading the project failed.
#[derive(Debug, thiserror::Error)]
pub enum ProjectError {
    /// There is no `qpf.yaml` in the folder.
    #[error("no `{PROJECT_FILE}` in `{}`; pass the project folder with `--project DIR`", .0.display())]
    NotFound(PathBuf),
    /// A file is invalid.
    #[error("{0}")]
    Invalid(#[from] SchemaError),
}

/// The first cycle among entries' `needs`, as the list of entry ids with the first repeated at the end.
pub fn needs_cycle(entries: &[Entry]) -> Option<Vec<String>> {
    fn visit<'a>(
        id: &'a str,
        entries: &'a [Entry],
        stack: &mut Vec<&'a str>,
        done: &mut std::collections::BTreeSet<&'a str>,
    ) -> Option<Vec<String>> {
        if let Some(start) = stack.iter().position(|s| *s == id) {
            let mut cycle: Vec<String> = stack[start..].iter().map(|s| (*s).to_owned()).collect();
            cycle.push(id.to_owned());
            return Some(cycle);
        }
        if done.contains(id) {
            return None;
        }
        stack.push(id);
        if let Some(entry) = entries.iter().find(|e| e.id == id) {
            for need in &entry.needs {
                if let Some(cycle) = visit(need, entries, stack, done) {
                    return Some(cycle);
                }
            }
        }
        stack.pop();
        done.insert(id);
        None
    }
    let mut done = std::collections::BTreeSet::new();
    entries.iter().find_map(|e| visit(&e.id, entries, &mut Vec::new(), &mut done))
}

/// The map's entries against the project file: unique well-formed ids, declared plugins, JSON
/// Pointer inputs, spawn ceilings, and `needs` that name entries and form no cycle.
/// What is wrong with where a plugin comes from: exactly one of `path` and `oci`, and an `oci`
/// reference of printable characters without spaces.
fn plugin_source_problem(plugin: &PluginDecl) -> Option<String> {
    if let Some(range) = &plugin.version {
        let Some(repository) = plugin.oci.as_deref() else {
            return Some("`version` is a range of an `oci` repository's tags; give `oci` with it".into());
        };
        let last = repository.rsplit('/').next().unwrap_or_default();
        if repository.contains('@') || last.contains(':') {
            return Some(format!(
                "with `version`, `oci` names a repository without a tag or digest (like `ghcr.io/acme/plugin`), got `{}`",
                qpf_core::text::escape(&repository.chars().take(80).collect::<String>())
            ));
        }
        if range.len() > 64 || semver::VersionReq::parse(range).is_err() {
            return Some(format!(
                "`version` must be a semantic-version range like `^1.2`, got `{}`",
                qpf_core::text::escape(&range.chars().take(80).collect::<String>())
            ));
        }
    }
    if let Some(spec) = &plugin.registry {
        if plugin.oci.is_some() || !plugin.path.as_os_str().is_empty() {
            return Some("give one of `path`, `oci` and `registry`".into());
        }
        return registry_plugin_spec(spec).err();
    }
    match (&plugin.oci, plugin.path.as_os_str().is_empty()) {
        (Some(_), false) => Some("give `path` (a local component) or `oci` (a registry reference), not both".into()),
        (None, true) => Some(
            "needs `path` (a local component), `oci` (an OCI reference) or `registry` (NAME@RANGE in the registry folders)"
                .into(),
        ),
        (Some(r), true) if r.is_empty() || r.len() > MAX_OCI_REFERENCE || r.chars().any(|c| !c.is_ascii_graphic()) => {
            Some(format!(
                "`oci` must be a reference like `ghcr.io/acme/plugin:1.0` (printable ASCII, no spaces, at most {MAX_OCI_REFERENCE} characters), got `{}`",
                qpf_core::text::escape(&r.chars().take(80).collect::<String>())
            ))
        }
        _ => None,
    }
}

/// The most validators one kind may name.
pub const MAX_VALIDATORS_PER_KIND: usize = 16;

/// Validators name declared plugins, once per kind, with JSON Pointer inputs.
fn check_kinds(file: &ProjectFile) -> Result<(), String> {
    for (kind, decl) in &file.kinds {
        let validators = decl.validators();
        if validators.len() > MAX_VALIDATORS_PER_KIND {
            return Err(format!(
                "kind `{kind}` names {} validators; at most {MAX_VALIDATORS_PER_KIND} are allowed",
                validators.len()
            ));
        }
        for (i, v) in validators.iter().enumerate() {
            if !file.plugins.contains_key(&v.plugin) {
                let declared: Vec<&str> = file.plugins.keys().map(String::as_str).collect();
                return Err(format!(
                    "kind `{kind}`: validator `{}` is not a plugin `{PROJECT_FILE}` declares{}",
                    qpf_core::text::escape(&v.plugin),
                    qpf_schema::document::suggest(&v.plugin, &declared)
                ));
            }
            if validators[..i].iter().any(|o| o.plugin == v.plugin) {
                return Err(format!("kind `{kind}`: validator `{}` is named twice", v.plugin));
            }
            if !v.input.is_empty() && !v.input.starts_with('/') {
                return Err(format!(
                    "kind `{kind}`, validator `{}`: `input` `{}` is not a JSON Pointer (it must start with `/`)",
                    v.plugin,
                    qpf_core::text::escape(&v.input)
                ));
            }
        }
    }
    Ok(())
}

fn check_map(file: &ProjectFile, map: &MapFile) -> Result<(), String> {
    if map.templates.len() > MAX_TEMPLATES {
        return Err(format!("the map declares {} templates; at most {MAX_TEMPLATES} are allowed", map.templates.len()));
    }
    for (name, path) in &map.templates {
        if !is_slug(name, 63) {
            return Err(format!(
                "template name `{}` must be 1-63 lower-case letters, digits and `-`",
                qpf_core::text::escape(name)
            ));
        }
        if path.as_os_str().is_empty() || !path.components().all(|c| matches!(c, std::path::Component::Normal(_))) {
            return Err(format!(
                "template `{name}`: `{}` must be a plain path relative to the project folder (no `..`, no leading `/`)",
                qpf_core::text::escape(&path.display().to_string())
            ));
        }
    }
    let mut seen = std::collections::BTreeSet::new();
    for entry in &map.entries {
        let problem = if !seen.insert(entry.id.as_str()) {
            Some(format!("entry id `{}` is used twice; ids must be unique", entry.id))
        } else if !is_slug(&entry.id, usize::MAX) {
            Some(format!("entry id `{}` must be lower-case letters, digits and `-`", entry.id))
        } else if !file.plugins.contains_key(&entry.plugin) {
            let declared: Vec<&str> = file.plugins.keys().map(String::as_str).collect();
            Some(format!(
                "entry `{}` uses plugin `{}`, which `{PROJECT_FILE}` does not declare{} (declared: {})",
                entry.id,
                entry.plugin,
                qpf_schema::document::suggest(&entry.plugin, &declared),
                declared.iter().map(|k| format!("`{k}`")).collect::<Vec<_>>().join(", ")
            ))
        } else if !entry.input.is_empty() && !entry.input.starts_with('/') {
            Some(format!(
                "entry `{}`: `input` `{}` is not a JSON Pointer (it must start with `/`)",
                entry.id, entry.input
            ))
        } else {
            None
        };
        if let Some(message) = problem {
            return Err(message);
        }
    }
    for entry in &map.entries {
        if entry.spawn.max_depth > MAX_SPAWN_DEPTH || entry.spawn.max_count > MAX_SPAWN_COUNT {
            return Err(format!(
                "entry `{}`: `spawn.max-depth` may be at most {MAX_SPAWN_DEPTH} and `spawn.max-count` at most {MAX_SPAWN_COUNT} (got {} and {})",
                entry.id, entry.spawn.max_depth, entry.spawn.max_count
            ));
        }
        if let Some(p) = entry.spawn.plugins.iter().find(|p| !file.plugins.contains_key(*p)) {
            let declared: Vec<&str> = file.plugins.keys().map(String::as_str).collect();
            return Err(format!(
                "entry `{}` allows spawning plugin `{p}`, which `{PROJECT_FILE}` does not declare{}",
                entry.id,
                qpf_schema::document::suggest(p, &declared)
            ));
        }
        if let Some(t) = entry.spawn.templates.iter().find(|t| !map.templates.contains_key(*t)) {
            let declared: Vec<&str> = map.templates.keys().map(String::as_str).collect();
            return Err(format!(
                "entry `{}` allows spawning from template `{}`, which the map's `templates` does not declare{}",
                entry.id,
                qpf_core::text::escape(t),
                qpf_schema::document::suggest(t, &declared)
            ));
        }
        for need in &entry.needs {
            if !seen.contains(need.as_str()) {
                let ids: Vec<&str> = seen.iter().copied().collect();
                return Err(format!(
                    "entry `{}` needs `{need}`, which is not an entry{}",
                    entry.id,
                    qpf_schema::document::suggest(need, &ids)
                ));
            }
        }
    }
    if let Some(cycle) = needs_cycle(&map.entries) {
        return Err(format!("`needs` form a cycle: {}", cycle.join(" → ")));
    }
    Ok(())
}

impl Project {
    /// Reads `qpf.yaml` and the map from `root`, and checks that they agree.
    ///
    /// # Errors
    /// [`ProjectError::NotFound`] without a project file; [`ProjectError::Invalid`] for bad YAML,
    /// unknown keys, duplicate entry ids, unknown plugins or bad JSON Pointers.
    pub fn load(root: &Path) -> Result<Project, ProjectError> {
        let path = root.join(PROJECT_FILE);
        if !path.is_file() {
            return Err(ProjectError::NotFound(root.to_owned()));
        }
        let file: ProjectFile = qpf_schema::yaml::read_file(&path, Path::new(PROJECT_FILE))?;
        if file.version != 1 {
            return Err(SchemaError::file(
                PROJECT_FILE,
                format!("`version: {}` is not supported; this qpf reads version 1", file.version),
            )
            .into());
        }
        for (name, plugin) in &file.plugins {
            if let Some(problem) = plugin_source_problem(plugin) {
                return Err(SchemaError::file(PROJECT_FILE, format!("plugin `{name}`: {problem}")).into());
            }
            if plugin.registry.is_some() && file.registries.is_empty() {
                return Err(SchemaError::file(
                    PROJECT_FILE,
                    format!("plugin `{name}`: `registry` resolves in the `registries` folders, and `{PROJECT_FILE}` names none"),
                )
                .into());
            }
            // A plugin chosen by version may leave its pin to the lock.
            let locked = plugin.registry.is_some() || plugin.version.is_some();
            if (!locked || !plugin.digest.is_empty()) && qpf_core::Digest::parse(&plugin.digest).is_err() {
                return Err(SchemaError::file(
                    PROJECT_FILE,
                    format!("plugin `{name}`: `digest` must be `blake3:` and 64 hex digits, got `{}`", plugin.digest),
                )
                .into());
            }
        }
        check_kinds(&file).map_err(|message| SchemaError::file(PROJECT_FILE, message))?;
        let map: MapFile = qpf_schema::yaml::read_file(&root.join(&file.map), &file.map)?;
        check_map(&file, &map).map_err(|message| SchemaError::file(&file.map, message))?;
        Ok(Project { root: root.to_owned(), file, map })
    }

    /// Each kind's JSON Schema file, by kind name.
    pub fn kind_schemas(&self) -> BTreeMap<String, PathBuf> {
        self.file.kinds.iter().map(|(k, d)| (k.clone(), d.schema().to_owned())).collect()
    }

    /// The output root, resolved against the project root.
    pub fn output_root(&self) -> PathBuf {
        self.root.join(&self.file.output)
    }

    /// The state folder (`.qpf/`): caches and audit log.
    pub fn state_dir(&self) -> PathBuf {
        self.root.join(".qpf")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn file(kinds: &str) -> ProjectFile {
        let yaml = format!(
            "version: 1\nschemas: [\"*.yaml\"]\nkinds:\n{kinds}\nmap: map.yaml\noutput: out\nplugins:\n  v: {{ path: v.wasm, digest: \"blake3:{}\" }}\n",
            "0".repeat(64)
        );
        qpf_schema::yaml::from_str(Path::new(PROJECT_FILE), &yaml).expect("parses")
    }

    #[test]
    fn a_kind_is_a_schema_path_or_a_schema_with_validators() {
        let short = file("  Note: note.json");
        assert_eq!(short.kinds["Note"].schema(), Path::new("note.json"));
        assert!(short.kinds["Note"].validators().is_empty());
        let long = file(
            "  Note:\n    schema: note.json\n    validators: [{ plugin: v, input: /spec, config: { strict: true } }]",
        );
        assert_eq!(long.kinds["Note"].schema(), Path::new("note.json"));
        let v = &long.kinds["Note"].validators()[0];
        assert_eq!((v.plugin.as_str(), v.input.as_str()), ("v", "/spec"));
        assert_eq!(v.config, serde_json::json!({ "strict": true }));
        assert_eq!(check_kinds(&long), Ok(()));
    }

    #[test]
    fn validators_name_declared_plugins_once_with_pointer_inputs() {
        let unknown = file("  Note: { schema: n.json, validators: [{ plugin: w }] }");
        assert_eq!(
            check_kinds(&unknown),
            Err("kind `Note`: validator `w` is not a plugin `qpf.yaml` declares".to_owned())
        );
        let twice = file("  Note: { schema: n.json, validators: [{ plugin: v }, { plugin: v }] }");
        assert_eq!(check_kinds(&twice), Err("kind `Note`: validator `v` is named twice".to_owned()));
        let pointer = file("  Note: { schema: n.json, validators: [{ plugin: v, input: spec }] }");
        assert!(check_kinds(&pointer).is_err_and(|e| e.contains("is not a JSON Pointer")));
        let many = format!("  Note: {{ schema: n.json, validators: [{}] }}", vec!["{ plugin: v }"; 17].join(", "));
        assert!(check_kinds(&file(&many)).is_err_and(|e| e.contains("at most 16")));
    }
}
