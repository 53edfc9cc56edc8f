//! `deploy`: an agent's container image and Kubernetes manifests (Deployment with probes,
//! PodDisruptionBudget, Service, ConfigMap) shaped by its SLOs, and `docs/DEPLOYMENT.md`.
//!
//! Replicas follow availability (1 below 99 %, 2 from 99 %, 3 from 99.9 %); probe timeouts are
//! twice the p99 latency objective, rounded up to whole seconds.

use qpf_agent_model::{AgentView, Template, family_info, render_all};
use qpf_sdk::{ExtractError, Extractor, PluginInfo, Request, Response};
use serde::Deserialize;

const TEMPLATES: [Template; 6] = [
    Template { path: "Dockerfile", name: "Dockerfile.j2", source: include_str!("../templates/Dockerfile.j2") },
    Template { path: ".dockerignore", name: "dockerignore.j2", source: include_str!("../templates/dockerignore.j2") },
    Template {
        path: "k8s/deployment.yaml",
        name: "deployment.yaml.j2",
        source: include_str!("../templates/deployment.yaml.j2"),
    },
    Template {
        path: "k8s/service.yaml",
        name: "service.yaml.j2",
        source: include_str!("../templates/service.yaml.j2"),
    },
    Template {
        path: "k8s/configmap.yaml",
        name: "configmap.yaml.j2",
        source: include_str!("../templates/configmap.yaml.j2"),
    },
    Template {
        path: "docs/DEPLOYMENT.md",
        name: "DEPLOYMENT.md.j2",
        source: include_str!("../templates/DEPLOYMENT.md.j2"),
    },
];
const PLUGIN: &str = concat!("deploy ", env!("CARGO_PKG_VERSION"));

/// The entry's config.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Config {
    /// Image reference; `{name}` and `{version}` are replaced. Default `{name}:{version}`.
    #[serde(default = "default_image")]
    image: String,
    /// Container port. Default 8000.
    #[serde(default = "default_port")]
    port: u16,
    /// Namespace of the manifests; none by default.
    #[serde(default)]
    namespace: Option<String>,
    /// The base image, pinned by digest: `NAME[:TAG]@sha256:<64 hex>`. Default [`PYTHON_IMAGE`].
    #[serde(default = "default_python_image")]
    python_image: String,
}

fn default_python_image() -> String {
    PYTHON_IMAGE.to_owned()
}

fn default_image() -> String {
    "{name}:{version}".to_owned()
}

fn default_port() -> u16 {
    8000
}

/// The hash lock of every runtime and build dependency a generated service can need, for the
/// image's platform (written by `tests/tools/lock-runtime.py`).
const RUNTIME_LOCK: &str = include_str!("../runtime-lock.json");

#[derive(serde::Deserialize)]
struct RuntimeLock {
    packages: std::collections::BTreeMap<String, LockedPackage>,
    groups: std::collections::BTreeMap<String, Vec<String>>,
}

#[derive(serde::Deserialize)]
struct LockedPackage {
    version: String,
    sha256: String,
}

/// `requirements.lock` for these groups of the runtime lock: each package once, sorted, pinned
/// with its hash (the format of `pip install --require-hashes`).
fn requirements_lock(groups: &[&str], header: &str) -> Result<String, ExtractError> {
    let lock: RuntimeLock = serde_json::from_str(RUNTIME_LOCK)
        .map_err(|e| ExtractError::new(format!("the plugin's runtime lock is not valid: {e}")))?;
    let mut names = std::collections::BTreeSet::new();
    for group in groups {
        let members = lock.groups.get(*group).ok_or_else(|| ExtractError::new(format!("no lock group `{group}`")))?;
        names.extend(members.iter().map(String::as_str));
    }
    let mut out = String::from(header);
    for name in names {
        let p = lock.packages.get(name).ok_or_else(|| ExtractError::new(format!("`{name}` is not in the lock")))?;
        out.push_str(&format!(
            "{name}=={} \\
    --hash=sha256:{}
",
            p.version, p.sha256
        ));
    }
    Ok(out)
}

/// The default base image: `python:3.11-slim` by digest. QPF's machines cannot reach a container
/// registry, so this digest was not pulled here: it is the one public Dockerfiles pin for
/// `python:3.11-slim` (the same digest through Docker Hub and public.ecr.aws's mirror). Move it
/// forward with `docker buildx imagetools inspect python:3.11-slim`, or per project with the
/// entry's `python_image` config.
const PYTHON_IMAGE: &str = "python:3.11-slim@sha256:9c900dea9e8fb7e16277c179b555cc72d29a352dbc33cff48ad5a0412fd5bfc7";

/// Replicas for an availability objective in percent.
fn replicas(availability: f64) -> u32 {
    if availability >= 99.9 {
        3
    } else if availability >= 99.0 {
        2
    } else {
        1
    }
}

/// The extractor (exported as the component; public for native callers).
pub struct Deploy;

impl Extractor for Deploy {
    fn info() -> PluginInfo {
        family_info(
            "deploy",
            env!("CARGO_PKG_VERSION"),
            "Dockerfile and Kubernetes manifests of an agent.",
            serde_json::json!({
                "image": { "type": "string", "minLength": 1 },
                "port": { "type": "integer", "minimum": 1, "maximum": 65535 },
                "namespace": { "type": "string", "pattern": "^[a-z0-9]([-a-z0-9]*[a-z0-9])?$" },
                "python_image": {
                    "type": "string",
                    "description": "The base image of the Dockerfile, pinned by digest.",
                    "pattern": "^[a-z0-9][a-z0-9._/:-]*@sha256:[0-9a-f]{64}$"
                }
            }),
        )
    }

    fn extract(request: Request) -> Result<Response, ExtractError> {
        let config: Config = request.config()?;
        let agent = AgentView::from_request(&request)?;
        let image = config.image.replace("{name}", &agent.name).replace("{version}", &agent.version);
        let mut extras: Vec<&str> = Vec::new();
        for (extra, backends) in [("postgres", &["postgres", "vector"][..]), ("redis", &["redis"]), ("s3", &["s3"])] {
            if agent.backends.iter().any(|b| backends.contains(&b.as_str())) || (extra == "redis" && agent.coordinates)
            {
                extras.push(extra);
            }
        }
        // Settings the pod gets from a Secret: the secret ones and those without a default.
        let secret_settings: Vec<_> = agent.settings.iter().filter(|s| s.secret || s.required).collect();
        let extra = minijinja::context! {
            secret_settings => qpf_agent_model::value(&secret_settings),
            image,
            port => config.port,
            namespace => config.namespace,
            replicas => replicas(agent.slos.availability),
            probe_timeout_s => (agent.slos.latency_p99_ms * 2).div_ceil(1000).max(1),
            python_image => config.python_image,
            extras => extras.clone(),
        };
        let mut response = Response::new();
        render_all(&mut response, &TEMPLATES.iter().collect::<Vec<_>>(), &agent, PLUGIN, &extra)?;
        let mut groups = vec!["base", "build", "otel"];
        groups.extend(&extras);
        let header = format!(
            "# The `{}` agent's image dependencies ({}), each pinned with the hash of its wheel for CPython 3.11\n\
             # on glibc x86_64, for `pip install --require-hashes` (see the Dockerfile).\n\
             # Generated by QPF from {}/{}@{} by {PLUGIN}. Do not edit.\n",
            agent.name,
            groups.join(", "),
            agent.kind,
            agent.name,
            agent.version
        );
        Ok(response.file("requirements.lock", requirements_lock(&groups, &header)?))
    }
}

qpf_sdk::export!(Deploy);

#[cfg(test)]
mod tests {
    use super::{replicas, requirements_lock};

    #[test]
    fn a_lock_holds_each_package_of_its_groups_once_with_its_hash() {
        let base = requirements_lock(&["base"], "").unwrap();
        let with_s3 = requirements_lock(&["base", "s3", "base"], "# header\n").unwrap();
        assert!(with_s3.starts_with("# header\n"));
        assert!(!base.contains("boto3==") && with_s3.contains("boto3=="));
        for text in [&base, &with_s3] {
            let pins: Vec<&str> = text.lines().filter(|l| l.contains("==")).collect();
            let hashes = text.lines().filter(|l| l.trim_start().starts_with("--hash=sha256:")).count();
            assert_eq!(pins.len(), hashes);
            let mut names: Vec<&str> = pins.iter().map(|l| l.split("==").next().unwrap()).collect();
            let count = names.len();
            names.dedup();
            assert_eq!(names.len(), count, "each package once");
        }
        assert!(requirements_lock(&["nope"], "").is_err());
    }

    #[test]
    fn replicas_follow_availability() {
        assert_eq!(replicas(98.0), 1);
        assert_eq!(replicas(99.0), 2);
        assert_eq!(replicas(99.5), 2);
        assert_eq!(replicas(99.9), 3);
    }
}
