//! Prometheus text metrics, labelled by tenant: requests by route and status, `/v1/invoke`
//! latency, invocations by outcome, cache hits, fuel, work run at low priority, and the depth of
//! the worker queue.

use std::collections::BTreeMap;
use std::sync::Mutex;
use std::time::Duration;

/// Upper bounds of the latency buckets, in seconds.
const BUCKETS: [f64; 10] = [0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.5, 2.5];

#[derive(Debug, Default)]
struct Histogram {
    counts: [u64; BUCKETS.len()],
    count: u64,
    sum: f64,
}

#[derive(Debug, Default)]
struct Counters {
    requests: BTreeMap<(String, &'static str, u16), u64>,
    invocations: BTreeMap<(String, &'static str), u64>,
    cache_hits: BTreeMap<String, u64>,
    fuel: BTreeMap<String, u64>,
    low: BTreeMap<String, u64>,
    latency: BTreeMap<String, Histogram>,
}

/// The service's metrics.
#[derive(Debug, Default)]
pub struct Metrics {
    counters: Mutex<Counters>,
}

impl Metrics {
    fn with<T>(&self, f: impl FnOnce(&mut Counters) -> T) -> T {
        f(&mut self.counters.lock().unwrap_or_else(std::sync::PoisonError::into_inner))
    }

    /// Counts one answered request.
    pub fn request(&self, tenant: &str, route: &'static str, status: u16) {
        self.with(|c| *c.requests.entry((tenant.to_owned(), route, status)).or_default() += 1);
    }

    /// Counts one piece of work run at low priority (see `crate::fair`).
    pub fn low(&self, tenant: &str) {
        self.with(|c| *c.low.entry(tenant.to_owned()).or_default() += 1);
    }

    /// Counts one invocation (`ok`, `failed`), its cache state, fuel and latency.
    pub fn invocation(&self, tenant: &str, outcome: &'static str, hit: bool, fuel: u64, took: Duration) {
        self.with(|c| {
            *c.invocations.entry((tenant.to_owned(), outcome)).or_default() += 1;
            if hit {
                *c.cache_hits.entry(tenant.to_owned()).or_default() += 1;
            }
            *c.fuel.entry(tenant.to_owned()).or_default() += fuel;
            let h = c.latency.entry(tenant.to_owned()).or_default();
            let s = took.as_secs_f64();
            for (i, bound) in BUCKETS.iter().enumerate() {
                if s <= *bound {
                    h.counts[i] += 1;
                }
            }
            h.count += 1;
            h.sum += s;
        });
    }

    /// The Prometheus text exposition; `queue_depth` is the number of requests waiting for a
    /// worker now.
    pub fn render(&self, queue_depth: usize) -> String {
        use std::fmt::Write;
        let mut out = String::new();
        self.with(|c| {
            out.push_str("# TYPE qpf_requests_total counter\n");
            for ((tenant, route, status), n) in &c.requests {
                let _ = writeln!(
                    out,
                    "qpf_requests_total{{tenant=\"{tenant}\",route=\"{route}\",status=\"{status}\"}} {n}"
                );
            }
            out.push_str("# TYPE qpf_invocations_total counter\n");
            for ((tenant, outcome), n) in &c.invocations {
                let _ = writeln!(out, "qpf_invocations_total{{tenant=\"{tenant}\",outcome=\"{outcome}\"}} {n}");
            }
            out.push_str("# TYPE qpf_cache_hits_total counter\n");
            for (tenant, n) in &c.cache_hits {
                let _ = writeln!(out, "qpf_cache_hits_total{{tenant=\"{tenant}\"}} {n}");
            }
            out.push_str("# TYPE qpf_fuel_total counter\n");
            for (tenant, n) in &c.fuel {
                let _ = writeln!(out, "qpf_fuel_total{{tenant=\"{tenant}\"}} {n}");
            }
            out.push_str("# TYPE qpf_low_priority_work_total counter\n");
            for (tenant, n) in &c.low {
                let _ = writeln!(out, "qpf_low_priority_work_total{{tenant=\"{tenant}\"}} {n}");
            }
            out.push_str("# TYPE qpf_invoke_seconds histogram\n");
            for (tenant, h) in &c.latency {
                for (i, bound) in BUCKETS.iter().enumerate() {
                    let _ = writeln!(
                        out,
                        "qpf_invoke_seconds_bucket{{tenant=\"{tenant}\",le=\"{bound}\"}} {}",
                        h.counts[i]
                    );
                }
                let _ = writeln!(out, "qpf_invoke_seconds_bucket{{tenant=\"{tenant}\",le=\"+Inf\"}} {}", h.count);
                let _ = writeln!(out, "qpf_invoke_seconds_sum{{tenant=\"{tenant}\"}} {}", h.sum);
                let _ = writeln!(out, "qpf_invoke_seconds_count{{tenant=\"{tenant}\"}} {}", h.count);
            }
        });
        let _ = writeln!(out, "# TYPE qpf_queue_depth gauge\nqpf_queue_depth {}", queue_depth);
        out
    }
}
