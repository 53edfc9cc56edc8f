//! Splitting a plan over N shard processes (`qpf extract --shard I/N`, groundwork of the sharded
//! runs): every shard computes the same partition on its own, from the plan alone, without talking
//! to the others.
//!
//! - **Whole chains together**: invocations joined by `needs` (in either direction, transitively)
//!   are one connected component, and a component is never split, so a shard never waits for
//!   another's output.
//! - **Balanced by estimated cost**: components go, heaviest first, to the shard with the least
//!   estimated cost so far (longest-processing-time first), ties to the lowest shard. The estimate
//!   must come from the plan only (the default, [`estimate`], is a fixed cost per invocation plus
//!   its request's size): a cost measured on one machine would give another machine's shard a
//!   different partition.
//! - **Deterministic**: components are ordered by cost, then by their smallest invocation key (a
//!   digest of everything the invocation depends on), never by memory addresses or thread timing.

use crate::plan::{Plan, PlannedInvocation};

/// One shard of a run: `index` in `1..=count`, as written on the command line (`--shard 2/4`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Shard {
    /// 1-based index of this shard.
    pub index: u32,
    /// How many shards share the plan.
    pub count: u32,
}

/// The most shards a plan may be split into.
pub const MAX_SHARDS: u32 = 10_000;

impl Shard {
    /// Parses `I/N` (`1 <= I <= N <= 10000`).
    ///
    /// # Errors
    /// A message saying what form is expected.
    pub fn parse(text: &str) -> Result<Shard, String> {
        let bad = || {
            format!(
                "`{}` is not a shard: expected I/N with 1 <= I <= N <= {MAX_SHARDS}, e.g. 2/4",
                qpf_core::text::escape(text)
            )
        };
        let (i, n) = text.split_once('/').ok_or_else(bad)?;
        let (index, count) = (i.trim().parse::<u32>().map_err(|_| bad())?, n.trim().parse::<u32>().map_err(|_| bad())?);
        if index == 0 || index > count || count > MAX_SHARDS {
            return Err(bad());
        }
        Ok(Shard { index, count })
    }

    /// The shard of a Kubernetes Indexed Job's pod: `JOB_COMPLETION_INDEX` is 0-based.
    ///
    /// # Errors
    /// As [`Shard::parse`].
    pub fn from_completion_index(index: &str, count: u32) -> Result<Shard, String> {
        let i = index
            .trim()
            .parse::<u32>()
            .map_err(|_| format!("JOB_COMPLETION_INDEX `{}` is not a number", qpf_core::text::escape(index)))?;
        Shard::parse(&format!("{}/{count}", i.saturating_add(1)))
    }
}

/// The default cost estimate of an invocation, from the plan alone: a fixed part (loading and
/// calling a plugin) plus one unit per KiB of request.
pub fn estimate(inv: &PlannedInvocation) -> u64 {
    let bytes = inv.request.input.len() + inv.request.config.len() + inv.request.context.len();
    64 + (bytes as u64).div_ceil(1024)
}

/// The shard (0-based) of every invocation of `plan`, in plan order, over `count` shards.
pub fn partition(plan: &Plan, count: u32, cost: &dyn Fn(&PlannedInvocation) -> u64) -> Vec<u32> {
    let n = plan.invocations.len();
    let count = count.max(1);
    // Union-find over `needs` edges.
    let mut parent: Vec<usize> = (0..n).collect();
    fn find(parent: &mut [usize], mut i: usize) -> usize {
        while parent[i] != i {
            parent[i] = parent[parent[i]];
            i = parent[i];
        }
        i
    }
    for (i, inv) in plan.invocations.iter().enumerate() {
        for u in inv.deps().filter(|&u| u < n) {
            let (a, b) = (find(&mut parent, i), find(&mut parent, u));
            if a != b {
                parent[a.max(b)] = a.min(b);
            }
        }
    }
    // Components: total cost, smallest key, members.
    let mut components: std::collections::BTreeMap<usize, (u64, &str, Vec<usize>)> = std::collections::BTreeMap::new();
    for (i, inv) in plan.invocations.iter().enumerate() {
        let root = find(&mut parent, i);
        let c = components.entry(root).or_insert((0, inv.key.as_str(), Vec::new()));
        c.0 = c.0.saturating_add(cost(inv));
        c.1 = c.1.min(inv.key.as_str());
        c.2.push(i);
    }
    let mut components: Vec<(u64, &str, Vec<usize>)> = components.into_values().collect();
    components.sort_by(|a, b| b.0.cmp(&a.0).then_with(|| a.1.cmp(b.1)));
    let mut load = vec![0u64; count as usize];
    let mut shard_of = vec![0u32; n];
    for (c_cost, _, members) in components {
        let (lightest, _) = load.iter().enumerate().min_by_key(|&(s, l)| (*l, s)).unwrap_or((0, &0));
        load[lightest] = load[lightest].saturating_add(c_cost);
        for i in members {
            shard_of[i] = lightest as u32;
        }
    }
    shard_of
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn invocation(key: String, upstream: Vec<usize>, input_bytes: usize) -> PlannedInvocation {
        PlannedInvocation {
            entry: "e".into(),
            plugin: "p".into(),
            plugin_digest: String::new(),
            schema_path: "s.yaml".into(),
            out_dir: "out".into(),
            input_pointer: String::new(),
            upstream,
            gates: Vec::new(),
            validator: false,
            upstream_contents: false,
            root: None,
            depth: 0,
            request: qpf_runtime::Request {
                entry: "e".into(),
                schema: qpf_runtime::SchemaId { kind: "Kind".into(), name: "name".into(), version: "1.0.0".into() },
                input: "x".repeat(input_bytes),
                config: "{}".into(),
                context: "{}".into(),
            },
            schema: "Kind/name@1.0.0".into(),
            key: key.clone(),
        }
    }

    /// A plan of `sizes.len()` invocations; invocation `i` needs `i - 1` when `chained[i]`.
    fn plan(sizes: &[usize], chained: &[bool]) -> Plan {
        let invocations = sizes
            .iter()
            .enumerate()
            .map(|(i, &size)| {
                let upstream = if i > 0 && chained.get(i).copied().unwrap_or(false) { vec![i - 1] } else { vec![] };
                invocation(format!("{:064x}", (i as u64).wrapping_mul(0x9e37_79b9_7f4a_7c15)), upstream, size)
            })
            .collect();
        Plan { invocations }
    }

    #[test]
    fn a_shard_is_i_of_n_counted_from_one() {
        assert_eq!(Shard::parse("2/4"), Ok(Shard { index: 2, count: 4 }));
        assert_eq!(Shard::parse("1/1"), Ok(Shard { index: 1, count: 1 }));
        for bad in ["0/4", "5/4", "4", "a/b", "1/0", "1/10001", "", "\u{1b}[2J/3"] {
            let e = Shard::parse(bad).expect_err(bad);
            assert!(e.contains("expected I/N") && !e.contains('\u{1b}'), "{e}");
        }
        assert_eq!(Shard::from_completion_index("0", 3), Ok(Shard { index: 1, count: 3 }));
        assert_eq!(Shard::from_completion_index("2", 3), Ok(Shard { index: 3, count: 3 }));
        assert!(Shard::from_completion_index("3", 3).is_err());
    }

    #[test]
    fn chains_stay_together_and_independent_work_spreads() {
        // 0←1←2 is one chain; 3, 4, 5 stand alone.
        let p = plan(&[0; 6], &[false, true, true, false, false, false]);
        let shards = partition(&p, 2, &estimate);
        assert_eq!(shards[0], shards[1]);
        assert_eq!(shards[1], shards[2]);
        let load = |s: u32| shards.iter().filter(|&&x| x == s).count();
        assert_eq!((load(0), load(1)), (3, 3), "{shards:?}");
    }

    proptest! {
        #[test]
        fn every_invocation_has_one_shard_chains_are_whole_and_loads_are_balanced(
            sizes in proptest::collection::vec(0usize..20_000, 0..200),
            chained in proptest::collection::vec(any::<bool>(), 0..200),
            count in 1u32..9,
        ) {
            let p = plan(&sizes, &chained);
            let shards = partition(&p, count, &estimate);
            prop_assert_eq!(shards.len(), p.invocations.len());
            prop_assert!(shards.iter().all(|&s| s < count));
            for (i, inv) in p.invocations.iter().enumerate() {
                for &u in &inv.upstream {
                    prop_assert_eq!(shards[i], shards[u]);
                }
            }
            // Longest-processing-time first: no shard exceeds the lightest by more than one component.
            let mut load = vec![0u64; count as usize];
            for (i, inv) in p.invocations.iter().enumerate() {
                load[shards[i] as usize] += estimate(inv);
            }
            let biggest_component = {
                let mut best = 0u64;
                let mut run = 0u64;
                for (i, inv) in p.invocations.iter().enumerate() {
                    if inv.upstream.is_empty() && i > 0 { run = 0; }
                    run += estimate(inv);
                    best = best.max(run);
                }
                best
            };
            let (max, min) = (load.iter().max().copied().unwrap_or(0), load.iter().min().copied().unwrap_or(0));
            prop_assert!(max <= min + biggest_component, "{:?}", load);
            // The same plan gives the same partition.
            prop_assert_eq!(partition(&p, count, &estimate), shards);
        }
    }
}
