//! Dynamic spawns: the invocations a plugin asks the host for, run within the entry's policy.

use qpf_runtime::Limits;

use crate::cache::InvocationCache;
use crate::invoker::{Plugins, Worked, work};
use crate::plan::PlannedInvocation;
use crate::project::Project;
use crate::report::FailureKind;
use crate::writer::OutputRoot;

/// Runs the invocations a plugin asked for, within the entry's spawn policy: allowed plugins only,
/// bounded depth and count, no cycles (an invocation whose key is already in its chain). Spawned
/// invocations are cached, audited and reported like planned ones; their files go to the spawning
/// invocation's output folder.
pub(crate) struct Spawner<'a, 'p> {
    pub(crate) project: &'a Project,
    pub(crate) policy: &'a crate::project::SpawnPolicy,
    pub(crate) cache: Option<&'a dyn InvocationCache>,
    pub(crate) plugins: &'a Plugins<'p>,
    pub(crate) root: &'a OutputRoot,
    pub(crate) limits: &'a Limits,
    pub(crate) count: u32,
}

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
            let (child, refused) = self.plan_child(&frame.parent, request, n, &chain);
            let mut result = match refused {
                Some(message) => Worked::failed(FailureKind::Spawn, message),
                None => work(&child, None, self.cache, self.plugins, self.root, self.limits),
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
        let declared = self.project.file.plugins.contains_key(&request.plugin);
        let name = if declared { request.plugin.clone() } else { "undeclared".to_owned() };
        let digest = self.project.file.plugins.get(&request.plugin).map(|d| d.digest.clone()).unwrap_or_default();
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
            limits: self.limits,
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

/// What makes two invocations in a spawn chain the same: plugin, input and config.
pub(crate) fn identity(inv: &PlannedInvocation) -> String {
    format!("{}\0{}\0{}", inv.plugin, inv.request.input, inv.request.config)
}

fn root_entry(inv: &PlannedInvocation) -> &str {
    inv.root.as_ref().map_or(inv.entry.as_str(), |(e, _)| e.as_str())
}
