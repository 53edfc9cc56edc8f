//! Dynamic spawns: the invocations a plugin asks the host for, run within the entry's policy.

use std::collections::BTreeMap;
use std::sync::OnceLock;

use crate::extract::{Engine, RunContext, invoke_planned};
use crate::invoker::{Worked, work};
use crate::plan::PlannedInvocation;
use crate::project::TEMPLATE_PREFIX;
use crate::report::FailureKind;

/// Runs the invocations a plugin asked for, within the entry's spawn policy: allowed plugins and
/// templates only, bounded depth and count, no cycles (an invocation whose key is already in its
/// chain). Spawned invocations are cached, audited and reported like planned ones; a plugin's
/// files go to the spawning invocation's output folder, a template's schema to the folders of the
/// entries that select it.
pub(crate) struct Spawner<'a, 'p> {
    pub(crate) engine: &'a Engine,
    pub(crate) policy: &'a crate::project::SpawnPolicy,
    pub(crate) ctx: &'a RunContext<'a, 'p>,
    pub(crate) count: u32,
}

/// A template spawn's `input`: the new schema's name, and what it changes in the template.
#[derive(serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct TemplateInput {
    name: String,
    #[serde(default)]
    version: Option<String>,
    #[serde(default)]
    labels: BTreeMap<String, String>,
    /// Merged into the template's `spec` as a JSON Merge Patch (RFC 7386).
    #[serde(default)]
    spec: Option<serde_json::Value>,
}

/// A template spawn refused: its row in the report, and why.
type Refused = Box<(PlannedInvocation, String)>;

/// The most labels a template spawn may add.
const MAX_TEMPLATE_LABELS: usize = 32;

impl Spawner<'_, '_> {
    /// Runs every spawn `worked` asked for, depth first and in request order, with an explicit
    /// stack (however deep a chain the policy allows, the host does not recurse). Every request
    /// counts against `spawn.max-count`, refused or not; once the count is spent, the requests
    /// left in a response become one refusal, so the records stay bounded by the policy.
    pub(crate) fn run(&mut self, root: &PlannedInvocation, worked: &Worked) -> Vec<(PlannedInvocation, Worked)> {
        struct Frame {
            parent: PlannedInvocation,
            spawns: Vec<qpf_runtime::SpawnRequest>,
            next: usize,
        }
        let mut out = Vec::new();
        if worked.result.is_err() || worked.spawns.is_empty() {
            return out;
        }
        let mut stack = vec![Frame { parent: root.clone(), spawns: worked.spawns.clone(), next: 0 }];
        let mut chain = vec![identity(root)];
        while let Some(frame) = stack.last_mut() {
            let n = frame.next;
            let Some(request) = frame.spawns.get(n) else {
                stack.pop();
                chain.pop();
                continue;
            };
            frame.next += 1;
            if self.count >= self.policy.max_count {
                let left = frame.spawns.len() - n;
                frame.next = frame.spawns.len();
                let (child, _) = self.plan_child(&frame.parent, request, n, &chain);
                let message = format!(
                    "{left} spawn request(s) refused: `spawn.max-count` ({}) spawned invocations already",
                    self.policy.max_count
                );
                out.push((child, Worked::failed(FailureKind::Spawn, message)));
                continue;
            }
            if let Some(template) = request.plugin.strip_prefix(TEMPLATE_PREFIX) {
                let parent = frame.parent.clone();
                let request = request.clone();
                match self.template(&parent, &request, template, n, &chain) {
                    Err(refused) => {
                        let (child, message) = *refused;
                        out.push((child, Worked::failed(FailureKind::Spawn, message)));
                    }
                    Ok((identity, ran)) => {
                        let mut frames = Vec::new();
                        for (inv, mut worked) in ran {
                            let grand = std::mem::take(&mut worked.spawns);
                            if worked.result.is_ok() && !grand.is_empty() {
                                frames.push(Frame { parent: inv.clone(), spawns: grand.clone(), next: 0 });
                            }
                            out.push((inv, Worked { spawns: grand, ..worked }));
                        }
                        // The first one's spawns run first.
                        for f in frames.into_iter().rev() {
                            chain.push(identity.clone());
                            stack.push(f);
                        }
                    }
                }
                continue;
            }
            let (child, refused) = self.plan_child(&frame.parent, request, n, &chain);
            let mut result = match refused {
                Some(message) => Worked::failed(FailureKind::Spawn, message),
                None => work(&child, None, self.ctx.cache, self.ctx.plugins, self.ctx.root, self.ctx.limits),
            };
            result.children.clear();
            let grand = std::mem::take(&mut result.spawns);
            let ok = result.result.is_ok();
            let identity = identity(&child);
            out.push((child.clone(), Worked { spawns: grand.clone(), ..result }));
            if ok && !grand.is_empty() {
                chain.push(identity);
                stack.push(Frame { parent: child, spawns: grand, next: 0 });
            }
        }
        out
    }

    /// The spawned invocation, and why it may not run (if so).
    fn plan_child(
        &mut self,
        parent: &PlannedInvocation,
        request: &qpf_runtime::SpawnRequest,
        n: usize,
        chain: &[String],
    ) -> (PlannedInvocation, Option<String>) {
        let parse = |what: &str, text: &str| -> Result<String, String> {
            serde_json::from_str::<serde_json::Value>(text)
                .map(|v| crate::canonical::to_string(&v))
                .map_err(|e| format!("the spawn request's {what} is not JSON: {e}"))
        };
        let (input, config, bad_json) = match (parse("input", &request.input), parse("config", &request.config)) {
            (Ok(i), Ok(c)) => (i, c, None),
            (Err(e), _) | (_, Err(e)) => ("null".to_owned(), "{}".to_owned(), Some(e)),
        };
        // The name is the plugin's to choose: only a declared name goes into ids and records.
        let plugins = &self.engine.project().file.plugins;
        let declared = plugins.contains_key(&request.plugin);
        let name = if declared { request.plugin.clone() } else { "undeclared".to_owned() };
        let digest = plugins.get(&request.plugin).map(|d| d.digest.clone()).unwrap_or_default();
        let mut context: serde_json::Value = serde_json::from_str(&parent.request.context).unwrap_or_default();
        context["spawned_by"] = serde_json::Value::String(parent.key.clone());
        let mut req = parent.request.clone();
        req.entry = format!("{}>{name}#{n}", parent.entry);
        req.input = input;
        req.config = config;
        req.context = crate::canonical::to_string(&context);
        let key = crate::cache_key::compute(&crate::cache_key::KeyInputs {
            abi: qpf_runtime::ABI_VERSION,
            plugin_digest: &digest,
            request: &req,
            limits: self.ctx.limits,
        });
        let root_ref = parent.root.clone().unwrap_or_else(|| (parent.entry.clone(), parent.key.clone()));
        let child = PlannedInvocation {
            entry: req.entry.clone(),
            plugin: name,
            plugin_digest: digest,
            schema_path: parent.schema_path.clone(),
            out_dir: parent.out_dir.clone(),
            input_pointer: String::new(),
            upstream: Vec::new(),
            gates: Vec::new(),
            validator: false,
            upstream_contents: false,
            root: Some(root_ref),
            depth: parent.depth + 1,
            request: req,
            schema: parent.schema.clone(),
            key,
        };
        self.count = self.count.saturating_add(1);
        let refused = if let Some(e) = bad_json {
            Some(e)
        } else if !declared || !self.policy.plugins.contains(&request.plugin) {
            Some(format!(
                "entry `{}` may not spawn plugin `{}`; allow it under `spawn.plugins` in the extractor map",
                root_entry(parent),
                qpf_core::text::escape(&qpf_runtime::budgets::truncate(request.plugin.clone(), 64))
            ))
        } else if child.depth > self.policy.max_depth {
            Some(format!("spawns nest deeper than `spawn.max-depth` ({})", self.policy.max_depth))
        } else if self.count > self.policy.max_count {
            Some(format!("more than `spawn.max-count` ({}) spawned invocations", self.policy.max_count))
        } else if chain.contains(&identity(&child)) {
            Some(format!(
                "spawn cycle: `{}` with this input and config is already in its own spawn chain",
                qpf_core::text::escape(&request.plugin)
            ))
        } else {
            None
        };
        (child, refused)
    }
}

impl Spawner<'_, '_> {
    /// A template spawn: the new schema completed from the template and checked against its
    /// kind, planned for every entry that selects it, and run (in plan order, one after the
    /// other). Its identity in the chain and the invocations with their results; or the
    /// refusal, as one failed invocation.
    fn template(
        &mut self,
        parent: &PlannedInvocation,
        request: &qpf_runtime::SpawnRequest,
        template: &str,
        n: usize,
        chain: &[String],
    ) -> Result<(String, Vec<(PlannedInvocation, Worked)>), Refused> {
        let project = self.engine.project();
        let declared =
            project.map.templates.get(template).filter(|_| self.policy.templates.iter().any(|t| t == template));
        let shown = qpf_core::text::escape(&qpf_runtime::budgets::truncate(template.to_owned(), 64)).into_owned();
        let name = if declared.is_some() { format!("{TEMPLATE_PREFIX}{template}") } else { "undeclared".to_owned() };
        let prefix = format!("{}>{name}#{n}>", parent.entry);
        let input = serde_json::from_str::<serde_json::Value>(&request.input)
            .map(|v| crate::canonical::to_string(&v))
            .unwrap_or_else(|_| request.input.clone());
        let identity = format!("{name}\0{input}");
        // The refusal's row in the report: the request's own entry id, keyed by what it asked.
        let refuse = |this: &mut Self, message: String| {
            this.count = this.count.saturating_add(1);
            let mut req = parent.request.clone();
            req.entry = prefix.trim_end_matches('>').to_owned();
            req.input.clone_from(&input);
            req.config = "{}".to_owned();
            let key = crate::cache_key::compute(&crate::cache_key::KeyInputs {
                abi: qpf_runtime::ABI_VERSION,
                plugin_digest: "",
                request: &req,
                limits: this.ctx.limits,
            });
            let child = PlannedInvocation {
                entry: req.entry.clone(),
                plugin: name.clone(),
                plugin_digest: String::new(),
                upstream: Vec::new(),
                gates: Vec::new(),
                validator: false,
                root: Some(parent.root.clone().unwrap_or_else(|| (parent.entry.clone(), parent.key.clone()))),
                depth: parent.depth + 1,
                request: req,
                key,
                ..parent.clone()
            };
            Err(Box::new((child, message)))
        };
        let Some(path) = declared else {
            let message = format!(
                "entry `{}` may not spawn from template `{shown}`; declare it under `templates` in the extractor map and allow it under the entry's `spawn.templates`",
                root_entry(parent)
            );
            return refuse(self, message);
        };
        if parent.depth + 1 > self.policy.max_depth {
            return refuse(self, format!("spawns nest deeper than `spawn.max-depth` ({})", self.policy.max_depth));
        }
        if chain.contains(&identity) {
            return refuse(
                self,
                format!("spawn cycle: template `{shown}` with this input is already in its own spawn chain"),
            );
        }
        let Some(base) = self.engine.schemas().template(path) else {
            return refuse(self, format!("template `{shown}` was not loaded"));
        };
        let schema = match complete(base, &request.input, self.engine) {
            Ok(schema) => schema,
            Err(message) => return refuse(self, format!("template `{shown}`: {message}")),
        };
        let derived = crate::plan::Derived { prefix: prefix.clone(), parent, project: self.engine.schemas() };
        let index = self.engine.spawn_index();
        let plan = match crate::plan::plan_schemas(project, &[&schema], self.engine.template_digests(), Some(&derived))
        {
            Ok(plan) => plan.invocations,
            Err(errors) => {
                return refuse(self, format!("template `{shown}`: {}", first_errors(&errors)));
            }
        };
        // Its files must not land in a folder the plan writes (committed first, they would win).
        let overlap = plan.iter().filter(|i| !i.validator).find_map(|inv| overlapping(&index.out_dirs, &inv.out_dir));
        if let Some((dir, entry)) = overlap {
            return refuse(
                self,
                format!(
                    "template `{shown}`: the new schema's files would go to `{dir}`, where entry `{}` writes",
                    qpf_core::text::escape(crate::plan::plain_entry(entry))
                ),
            );
        }
        // An empty plan still counts: each request costs a completion and a check.
        let wanted = u32::try_from(plan.len()).unwrap_or(u32::MAX).max(1);
        if self.count.saturating_add(wanted) > self.policy.max_count {
            return refuse(
                self,
                format!(
                    "template `{shown}` plans {wanted} invocations: more than `spawn.max-count` ({}) spawned invocations",
                    self.policy.max_count
                ),
            );
        }
        self.count += wanted;
        let results: Vec<OnceLock<Worked>> = plan.iter().map(|_| OnceLock::new()).collect();
        for (i, inv) in plan.iter().enumerate() {
            let mut worked = invoke_planned(inv, &plan, &results, self.ctx);
            worked.children.clear();
            let _ = results[i].set(worked);
        }
        let ran = plan.into_iter().zip(results).filter_map(|(inv, w)| Some((inv, w.into_inner()?))).collect();
        Ok((identity, ran))
    }
}

/// The schema a template spawn asks for: the template with the request's name, version and
/// labels, and its `spec` merged into the template's; checked against its kind, and refused when
/// a schema of the project has its kind and name.
fn complete(base: &qpf_schema::Schema, input: &str, engine: &Engine) -> Result<qpf_schema::Schema, String> {
    let asked: TemplateInput = serde_json::from_str(input).map_err(|e| {
        let why = qpf_core::text::escape(&qpf_runtime::budgets::truncate(e.to_string(), 200)).into_owned();
        format!("the spawn request's input is not `{{\"name\", \"version\"?, \"labels\"?, \"spec\"?}}`: {why}")
    })?;
    qpf_schema::document::check_name(&asked.name)?;
    if asked.labels.len() > MAX_TEMPLATE_LABELS {
        return Err(format!("at most {MAX_TEMPLATE_LABELS} labels may be added, got {}", asked.labels.len()));
    }
    let mut doc = base.doc.clone();
    if engine.spawn_index().names.contains(&asked.name) {
        return Err(format!("a schema of the project is already named `{}`", asked.name));
    }
    doc.metadata.name = asked.name;
    if let Some(version) = asked.version {
        let parsed = semver::Version::parse(&version).map_err(|e| {
            format!(
                "`version` `{}` is not a semantic version: {e}",
                qpf_core::text::escape(&qpf_runtime::budgets::truncate(version.clone(), 64))
            )
        })?;
        doc.metadata.version = parsed.to_string();
    }
    doc.metadata.labels.extend(asked.labels);
    if let Some(spec) = asked.spec {
        merge_patch(&mut doc.spec, spec);
    }
    let schema = qpf_schema::Schema {
        path: base.path.clone(),
        doc,
        // Where the template's values came from; a value the request set has no line.
        provenance: qpf_schema::Provenance::default(),
        depends_on: base.depends_on.clone(),
    };
    engine
        .kinds()
        .validate(&schema, engine.schemas().sources())
        .map_err(|errors| format!("the completed schema does not match its kind: {}", first_errors(&errors)))?;
    Ok(schema)
}

/// A folder of `out_dirs` (with its entry) that is `dir`, holds it or lies inside it, by path
/// segments (`""` is the output root): a few lookups in the sorted map, not a scan of the plan.
fn overlapping<'m>(out_dirs: &'m BTreeMap<String, String>, dir: &str) -> Option<(&'m String, &'m String)> {
    // `dir` itself and every folder above it.
    let above = dir.match_indices('/').map(|(i, _)| &dir[..i]).chain([dir, ""]);
    if let Some(hit) = above.filter_map(|d| out_dirs.get_key_value(d)).next() {
        return Some(hit);
    }
    // A folder inside it.
    let inside = if dir.is_empty() { String::new() } else { format!("{dir}/") };
    out_dirs.range(inside.clone()..).next().filter(|(d, _)| d.starts_with(&inside))
}

/// The first five errors about a completed schema, each cut to 300 characters: they quote values
/// a plugin chose, of any size.
fn first_errors(errors: &[qpf_schema::SchemaError]) -> String {
    let cut: Vec<String> =
        errors.iter().take(5).map(|e| qpf_runtime::budgets::truncate(e.message.clone(), 300)).collect();
    cut.join("; ")
}

/// JSON Merge Patch (RFC 7386): objects merge key by key, `null` removes a key, anything else
/// replaces. Recursive: a patch parsed from JSON is at most 128 levels deep (the parser's limit).
fn merge_patch(target: &mut serde_json::Value, patch: serde_json::Value) {
    let serde_json::Value::Object(patch) = patch else {
        *target = patch;
        return;
    };
    if !target.is_object() {
        *target = serde_json::Value::Object(serde_json::Map::new());
    }
    if let serde_json::Value::Object(target) = target {
        for (key, value) in patch {
            if value.is_null() {
                target.remove(&key);
            } else {
                merge_patch(target.entry(key).or_insert(serde_json::Value::Null), value);
            }
        }
    }
}

/// What makes two invocations in a spawn chain the same: plugin, input and config.
pub(crate) fn identity(inv: &PlannedInvocation) -> String {
    format!("{}\0{}\0{}", inv.plugin, inv.request.input, inv.request.config)
}

fn root_entry(inv: &PlannedInvocation) -> &str {
    inv.root.as_ref().map_or(inv.entry.as_str(), |(e, _)| e.as_str())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_folder_overlaps_itself_what_holds_it_and_what_it_holds_by_segments() {
        let dirs: BTreeMap<String, String> =
            [("monitor", "a"), ("svc/api", "b"), ("top", "c")].map(|(d, e)| (d.to_owned(), e.to_owned())).into();
        let hit = |d: &str| overlapping(&dirs, d).map(|(_, e)| e.as_str());
        assert_eq!(hit("monitor"), Some("a"));
        assert_eq!(hit("monitor/sub"), Some("a"), "inside a planned folder");
        assert_eq!(hit("svc"), Some("b"), "holds a planned folder");
        assert_eq!(hit(""), Some("a"), "the output root holds them all");
        assert_eq!(hit("monitor-metric-drift-handler"), None, "a shared prefix is not a folder");
        assert_eq!(hit("svc2"), None);
        assert_eq!(hit("to"), None);
        let root: BTreeMap<String, String> = [(String::new(), "r".to_owned())].into();
        assert_eq!(overlapping(&root, "anything/below").map(|(_, e)| e.as_str()), Some("r"));
    }
}
