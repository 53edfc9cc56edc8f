//! The plan: every (entry × selected schema) pair becomes one [`PlannedInvocation`] with its request
//! in canonical form and its cache key. Planning is pure: no plugin runs, no file is written.

use std::collections::{BTreeMap, HashMap};

use rayon::prelude::*;
use std::path::PathBuf;

use qpf_runtime::{Request, SchemaId};
use qpf_schema::{Schema, SchemaError, SchemaSet};
use serde::Serialize;

use crate::cache_key::{self, KeyInputs};
use crate::canonical;
use crate::project::Project;

/// One invocation to run.
#[derive(Debug, Clone, Serialize)]
pub struct PlannedInvocation {
    /// Entry id.
    pub entry: String,
    /// Plugin name (as declared in `qpf.yaml`).
    pub plugin: String,
    /// Pinned digest of the plugin.
    pub plugin_digest: String,
    /// The schema file, relative to the project root.
    pub schema_path: PathBuf,
    /// Output folder of the invocation, relative to the output root.
    pub out_dir: String,
    /// The entry's `input` pointer into the schema document.
    pub input_pointer: String,
    /// Indices (in the plan) of the invocations this one needs; they come earlier in the plan.
    pub upstream: Vec<usize>,
    /// Indices (in the plan) of the validator invocations of this invocation's schema: it runs
    /// only when they all passed. They come earlier in the plan, and are not part of its key
    /// (a validator's verdict does not change what a generator writes).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub gates: Vec<usize>,
    /// Whether this is a validator of the schema's kind (entry id `validate/PLUGIN`): it must
    /// return no files, and an error among its diagnostics fails it and gates the schema.
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub validator: bool,
    /// Whether the plugin receives the upstream files' contents.
    pub upstream_contents: bool,
    /// For a spawned invocation: the top-level invocation's entry id and key.
    pub root: Option<(String, String)>,
    /// How deep in a spawn chain this invocation is (0: planned, not spawned).
    pub depth: u32,
    /// The request the plugin receives.
    #[serde(skip)]
    pub request: Request,
    /// `schema` id as text, `kind/name@version`.
    pub schema: String,
    /// Cache key.
    pub key: String,
}

/// Every invocation of a run, in a deterministic order (map order, then schema id).
#[derive(Debug, Clone, Default, Serialize)]
pub struct Plan {
    /// The invocations.
    pub invocations: Vec<PlannedInvocation>,
}

impl Plan {
    /// A digest of the whole plan: every invocation key, in plan order. Shards of one plan agree
    /// on it; any change to a schema, a plugin, a config or the map changes it.
    pub fn digest(&self) -> String {
        let mut h = blake3::Hasher::new_derive_key("qpf plan digest v1");
        for inv in &self.invocations {
            h.update(inv.key.as_bytes());
            h.update(b"\n");
        }
        format!("blake3:{}", h.finalize().to_hex())
    }
}

/// Builds the plan.
///
/// # Errors
/// Every problem found: an `input` pointer that does not exist in a selected schema, or an `out`
/// folder that is not a plain relative path.
/// `templates`: each allowed template's digest ([`template_digests`]), for the contexts of the
/// entries that may spawn from it.
pub fn plan(
    project: &Project,
    schemas: &SchemaSet,
    templates: &BTreeMap<String, String>,
) -> Result<Plan, Vec<SchemaError>> {
    plan_schemas(project, &schemas.iter().collect::<Vec<_>>(), templates, None)
}

/// Where a template spawn's invocations come from: the invocation that asked for the new schema.
pub(crate) struct Derived<'a> {
    /// Put before every entry id (`<entry>>template:<name>#<n>>`).
    pub(crate) prefix: String,
    /// The invocation that asked.
    pub(crate) parent: &'a PlannedInvocation,
    /// The project's schemas: their names are in the validators' context with the new one's.
    pub(crate) project: &'a SchemaSet,
}

/// Each declared template's digest: of its resolved document, and of everything else that decides
/// how a schema completed from it is planned and checked (the map, the plugins' pins, the kinds'
/// declarations and JSON Schemas, the limits). It goes into the context of the entries that may
/// spawn from it, so that a change to any of these changes their keys, and drift (which judges
/// spawned files by their spawner's key) sees it.
pub(crate) fn template_digests(
    project: &Project,
    schemas: &SchemaSet,
    kinds: &qpf_schema::KindRegistry,
) -> BTreeMap<String, String> {
    if project.map.templates.is_empty() {
        return BTreeMap::new();
    }
    let mut planning = blake3::Hasher::new_derive_key("qpf template planning v1");
    for part in [
        serde_json::to_value(&project.map).map(|v| canonical::to_string(&v)).unwrap_or_default(),
        // The pins, not the paths (those differ between machines).
        serde_json::to_value(project.file.plugins.iter().map(|(n, d)| (n, &d.digest)).collect::<BTreeMap<_, _>>())
            .map(|v| canonical::to_string(&v))
            .unwrap_or_default(),
        serde_json::to_value(&project.file.kinds).map(|v| canonical::to_string(&v)).unwrap_or_default(),
        serde_json::to_value(&project.file.limits).map(|v| canonical::to_string(&v)).unwrap_or_default(),
        // The kinds' JSON Schemas as they were compiled at load.
        serde_json::to_value(kinds.digests()).map(|v| canonical::to_string(&v)).unwrap_or_default(),
    ] {
        planning.update(part.as_bytes());
        planning.update(b"\0");
    }
    let planning = planning.finalize();
    project
        .map
        .templates
        .iter()
        .filter_map(|(name, path)| {
            let doc = canonical::to_string(&schemas.template(path)?.to_json());
            let mut h = blake3::Hasher::new_derive_key("qpf template v1");
            h.update(planning.as_bytes());
            h.update(doc.as_bytes());
            Some((name.clone(), format!("blake3:{}", h.finalize().to_hex())))
        })
        .collect()
}

/// The plan of `all` (in this order): every validator of their kinds, then every entry selecting
/// them. For a template spawn (`derived`), the ids get its prefix, the contexts `spawned_by`, and
/// the invocations the spawning invocation's schema, root and depth + 1.
pub(crate) fn plan_schemas(
    project: &Project,
    all: &[&Schema],
    templates: &BTreeMap<String, String>,
    derived: Option<&Derived<'_>>,
) -> Result<Plan, Vec<SchemaError>> {
    let mut invocations: Vec<PlannedInvocation> = Vec::new();
    let mut errors = Vec::new();
    let map_path = &project.file.map;
    let limits = &project.file.limits;
    let prefix = derived.map_or("", |d| d.prefix.as_str());
    let spawned_by = |mut context: serde_json::Value| {
        if let Some(d) = derived {
            context["spawned_by"] = serde_json::Value::String(d.parent.key.clone());
        }
        context
    };
    // Each schema as JSON once, on every core (every entry and validator selects from it).
    let docs: Vec<serde_json::Value> = all.par_iter().map(|s| s.to_json()).collect();
    // Where each (entry, schema) invocation is in the plan, for `needs` and validator gates.
    let mut index: HashMap<(String, String), usize> = HashMap::new();
    let key_of = |request: &Request, digest: &str| {
        cache_key::compute(&KeyInputs { abi: qpf_runtime::ABI_VERSION, plugin_digest: digest, request, limits })
    };

    // Validators first: each kind's, over every schema of the kind.
    // Built only when a kind has validators: it goes into each of their requests.
    let has_validators = project.file.kinds.values().any(|k| !k.validators().is_empty());
    let names = match (has_validators, derived) {
        (false, _) => None,
        (true, None) => project_names(all.iter().map(|s| (&s.doc.kind, &s.doc.metadata.name))),
        (true, Some(d)) => {
            project_names(d.project.iter().chain(all.iter().copied()).map(|s| (&s.doc.kind, &s.doc.metadata.name)))
        }
    };
    let mut gates: BTreeMap<String, Vec<usize>> = BTreeMap::new();
    for (kind, decl) in &project.file.kinds {
        for validator in decl.validators() {
            let Some(plugin) = project.file.plugins.get(&validator.plugin) else { continue };
            let entry = format!("{prefix}{}{}", crate::project::VALIDATOR_ENTRY_PREFIX, validator.plugin);
            let config = canonical::to_string(&validator.config);
            let of_kind: Vec<usize> = (0..all.len()).filter(|&i| all[i].doc.kind == *kind).collect();
            let built: Vec<Result<PlannedInvocation, SchemaError>> = of_kind
                .par_iter()
                .map(|&i| {
                    let schema = all[i];
                    let Some(selected) = docs[i].pointer(&validator.input) else {
                        return Err(SchemaError::file(
                            crate::project::PROJECT_FILE,
                            format!(
                                "kind `{kind}`, validator `{}`: `input` `{}` selects nothing in `{}` ({})",
                                validator.plugin,
                                validator.input,
                                schema.id(),
                                schema.path.display()
                            ),
                        ));
                    };
                    let mut context = spawned_by(context(schema, std::iter::empty()));
                    if let Some(names) = &names {
                        context["project"] = names.clone();
                    }
                    let request = request(&entry, schema, selected, config.clone(), &context);
                    let key = key_of(&request, &plugin.digest);
                    Ok(PlannedInvocation {
                        validator: true,
                        ..invocation(&entry, &validator.plugin, &plugin.digest, schema, &validator.input, request, key)
                    })
                })
                .collect();
            for result in built {
                match result {
                    Ok(inv) => {
                        gates.entry(inv.schema.clone()).or_default().push(invocations.len());
                        invocations.push(inv);
                    }
                    Err(e) => errors.push(e),
                }
            }
        }
    }

    for entry in entries_in_dependency_order(&project.map.entries) {
        let Some(plugin) = project.file.plugins.get(&entry.plugin) else { continue };
        let config = canonical::to_string(&entry.config);
        let selected: Vec<usize> = (0..all.len()).filter(|&i| entry.select.matches(all[i])).collect();
        // The entry's invocations are independent of each other: built on every core, taken in
        // schema order.
        let built: Vec<Result<PlannedInvocation, SchemaError>> = selected
            .par_iter()
            .map(|&i| {
                let schema = all[i];
                let Some(input) = docs[i].pointer(&entry.input) else {
                    return Err(SchemaError::file(
                        map_path,
                        format!(
                            "entry `{}`: `input` `{}` selects nothing in `{}` ({})",
                            entry.id,
                            entry.input,
                            schema.id(),
                            schema.path.display()
                        ),
                    ));
                };
                let meta = &schema.doc.metadata;
                let out_dir = entry
                    .out
                    .replace("{kind}", &schema.doc.kind.to_ascii_lowercase())
                    .replace("{name}", &meta.name)
                    .replace("{version}", &meta.version);
                if let Err(problem) = crate::output_path::check(&out_dir, limits.max_path_len) {
                    return Err(SchemaError::file(
                        map_path,
                        format!("entry `{}`: `out` `{out_dir}` is not allowed: {problem}", entry.id),
                    ));
                }
                let schema_id = schema.id();
                // Upstream invocations: the needed entries' invocations for the same schema (planned
                // before this one). Their keys determine their outputs, so they go into this key.
                let upstream: Vec<usize> = entry
                    .needs
                    .iter()
                    .filter_map(|need| index.get(&(need.clone(), schema_id.clone())).copied())
                    .collect();
                let mut context = spawned_by(context(schema, upstream.iter().map(|&u| &invocations[u])));
                if !entry.spawn.templates.is_empty() {
                    let allowed: serde_json::Map<String, serde_json::Value> = entry
                        .spawn
                        .templates
                        .iter()
                        .filter_map(|t| Some((t.clone(), serde_json::Value::String(templates.get(t)?.clone()))))
                        .collect();
                    context["templates"] = serde_json::Value::Object(allowed);
                }
                let id = format!("{prefix}{}", entry.id);
                let request = request(&id, schema, input, config.clone(), &context);
                let key = key_of(&request, &plugin.digest);
                Ok(PlannedInvocation {
                    out_dir,
                    upstream,
                    gates: gates.get(&schema_id).cloned().unwrap_or_default(),
                    upstream_contents: entry.upstream_contents,
                    ..invocation(&id, &entry.plugin, &plugin.digest, schema, &entry.input, request, key)
                })
            })
            .collect();
        for result in built {
            match result {
                Ok(inv) => {
                    index.insert((entry.id.clone(), inv.schema.clone()), invocations.len());
                    invocations.push(inv);
                }
                Err(e) => errors.push(e),
            }
        }
    }
    if let Some(d) = derived {
        // Judged, locked and reported under the schema the spawning invocation read.
        let root = d.parent.root.clone().unwrap_or_else(|| (d.parent.entry.clone(), d.parent.key.clone()));
        for inv in &mut invocations {
            inv.schema.clone_from(&d.parent.schema);
            inv.schema_path.clone_from(&d.parent.schema_path);
            inv.root = Some(root.clone());
            inv.depth = d.parent.depth + 1;
        }
    }
    if errors.is_empty() { Ok(Plan { invocations }) } else { Err(errors) }
}

/// A planned invocation of `plugin` on `schema`, with nothing upstream, no gate and no output
/// folder (the callers set what differs).
fn invocation(
    entry: &str,
    plugin: &str,
    plugin_digest: &str,
    schema: &Schema,
    input_pointer: &str,
    request: Request,
    key: String,
) -> PlannedInvocation {
    PlannedInvocation {
        entry: entry.to_owned(),
        plugin: plugin.to_owned(),
        plugin_digest: plugin_digest.to_owned(),
        schema_path: schema.path.clone(),
        out_dir: String::new(),
        input_pointer: input_pointer.to_owned(),
        upstream: Vec::new(),
        gates: Vec::new(),
        validator: false,
        upstream_contents: false,
        root: None,
        depth: 0,
        schema: schema.id(),
        request,
        key,
    }
}

/// The request of one invocation.
fn request(
    entry: &str,
    schema: &Schema,
    selected: &serde_json::Value,
    config: String,
    context: &serde_json::Value,
) -> Request {
    let meta = &schema.doc.metadata;
    Request {
        entry: entry.to_owned(),
        schema: SchemaId { kind: schema.doc.kind.clone(), name: meta.name.clone(), version: meta.version.clone() },
        input: canonical::to_string(selected),
        config,
        context: canonical::to_string(context),
    }
}

/// The most schema names a validator's context carries ([`project_names`]): every validator
/// invocation carries them all, so the plan holds (number of schemas)² names; above this, none.
pub const MAX_PROJECT_NAMES: usize = 2_048;

/// What a validator knows of the rest of the project (`context.project`): the names of its
/// schemas by kind, sorted, each once (`{"names": {"Agent": ["adapter", ...]}}`), so that it can
/// check references between schemas (a sub-agent naming an agent the project lacks). It is part
/// of every validator's key: adding or removing a schema validates every schema again. A project
/// of more than [`MAX_PROJECT_NAMES`] distinct names gets `None` (no `context.project`): its
/// validators check each schema on its own.
fn project_names<'a>(schemas: impl Iterator<Item = (&'a String, &'a String)>) -> Option<serde_json::Value> {
    let mut names: BTreeMap<&str, std::collections::BTreeSet<&str>> = BTreeMap::new();
    let mut count = 0;
    for (kind, name) in schemas {
        if names.entry(kind.as_str()).or_default().insert(name.as_str()) {
            count += 1;
            if count > MAX_PROJECT_NAMES {
                return None;
            }
        }
    }
    Some(serde_json::json!({ "names": names }))
}

/// The context object of an invocation: the schema's envelope, and the cache keys of the upstream
/// invocations it needs (by entry), which determine their outputs.
fn context<'a>(schema: &Schema, upstream: impl ExactSizeIterator<Item = &'a PlannedInvocation>) -> serde_json::Value {
    let meta = &schema.doc.metadata;
    let mut context = serde_json::json!({
        "schema": {
            "apiVersion": schema.doc.api_version,
            "kind": schema.doc.kind,
            "metadata": { "name": meta.name, "version": meta.version, "labels": meta.labels },
        }
    });
    if upstream.len() > 0 {
        let needs: serde_json::Map<String, serde_json::Value> =
            upstream.map(|u| (plain_entry(&u.entry).to_owned(), serde_json::Value::String(u.key.clone()))).collect();
        context["needs"] = serde_json::Value::Object(needs);
    }
    context
}

/// An entry id without the prefix of a template spawn (`top>template:h#0>models` → `models`): the
/// id `context.needs` and `context.upstream` name an upstream entry by (entry ids have no `>`).
pub(crate) fn plain_entry(entry: &str) -> &str {
    entry.rsplit('>').next().unwrap_or(entry)
}

/// Entries ordered so that every entry comes after the entries it `needs` (map order otherwise).
/// The project loader has already refused cycles.
fn entries_in_dependency_order(entries: &[crate::project::Entry]) -> Vec<&crate::project::Entry> {
    let mut placed: Vec<&crate::project::Entry> = Vec::with_capacity(entries.len());
    while placed.len() < entries.len() {
        let before = placed.len();
        for e in entries {
            let ready =
                !placed.iter().any(|p| p.id == e.id) && e.needs.iter().all(|n| placed.iter().any(|p| p.id == *n));
            if ready {
                placed.push(e);
            }
        }
        if placed.len() == before {
            // A cycle (refused earlier) or an unknown need: keep the rest in map order.
            placed.extend(entries.iter().filter(|e| !placed.iter().any(|p| p.id == e.id)).collect::<Vec<_>>());
        }
    }
    placed
}

impl PlannedInvocation {
    /// Every invocation that must finish before this one: the upstream ones it needs, then its
    /// schema's validators.
    pub fn deps(&self) -> impl Iterator<Item = usize> + '_ {
        self.upstream.iter().chain(&self.gates).copied()
    }

    /// Digests of the parts of this invocation's key.
    pub fn inputs(&self, limits: &qpf_runtime::Limits) -> crate::lock::InvocationInputs {
        let digest = |text: &str| crate::writer::digest_of(text.as_bytes());
        let limits = serde_json::to_value(limits).map(|v| canonical::to_string(&v)).unwrap_or_default();
        crate::lock::InvocationInputs {
            key: self.key.clone(),
            plugin: self.plugin_digest.clone(),
            input: digest(&self.request.input),
            config: digest(&self.request.config),
            context: digest(&self.request.context),
            limits: digest(&limits),
        }
    }
}

impl Plan {
    /// The plugins the plan uses, by name, with their digests.
    pub fn plugins(&self) -> BTreeMap<&str, &str> {
        self.invocations.iter().map(|i| (i.plugin.as_str(), i.plugin_digest.as_str())).collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn validators_get_the_projects_names_by_kind_within_their_budget() {
        let (agent, fragment) = ("Agent".to_owned(), "Fragment".to_owned());
        let names: Vec<String> = (0..=MAX_PROJECT_NAMES).map(|i| format!("a{i:05}")).collect();
        let listed = project_names(
            [(&agent, &names[1]), (&agent, &names[0]), (&fragment, &names[0]), (&agent, &names[1])].into_iter(),
        );
        assert_eq!(listed, Some(serde_json::json!({"names": {"Agent": ["a00000", "a00001"], "Fragment": ["a00000"]}})));
        // One name over the budget: none at all (each validator's context would hold them all).
        assert!(project_names(names.iter().map(|n| (&agent, n))).is_none());
        assert!(project_names(names[..MAX_PROJECT_NAMES].iter().map(|n| (&agent, n))).is_some());
    }
}
