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
}

fn default_image() -> String {
    "{name}:{version}".to_owned()
}

fn default_port() -> u16 {
    8000
}

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

struct Deploy;

impl Extractor for Deploy {
    fn info() -> PluginInfo {
        family_info(
            "deploy",
            env!("CARGO_PKG_VERSION"),
            "Dockerfile and Kubernetes manifests of an agent.",
            serde_json::json!({
                "image": { "type": "string", "minLength": 1 },
                "port": { "type": "integer", "minimum": 1, "maximum": 65535 },
                "namespace": { "type": "string", "pattern": "^[a-z0-9]([-a-z0-9]*[a-z0-9])?$" }
            }),
        )
    }

    fn extract(request: Request) -> Result<Response, ExtractError> {
        let config: Config = request.config()?;
        let agent = AgentView::from_request(&request)?;
        let image = config.image.replace("{name}", &agent.name).replace("{version}", &agent.version);
        let mut extras: Vec<&str> = Vec::new();
        for (extra, backends) in [("postgres", &["postgres", "vector"][..]), ("redis", &["redis"]), ("s3", &["s3"])] {
            if agent.backends.iter().any(|b| backends.contains(&b.as_str())) {
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
            extras,
        };
        let mut response = Response::new();
        render_all(&mut response, &TEMPLATES.iter().collect::<Vec<_>>(), &agent, PLUGIN, &extra)?;
        Ok(response)
    }
}

qpf_sdk::export!(Deploy);

#[cfg(test)]
mod tests {
    use super::replicas;

    #[test]
    fn replicas_follow_availability() {
        assert_eq!(replicas(98.0), 1);
        assert_eq!(replicas(99.0), 2);
        assert_eq!(replicas(99.5), 2);
        assert_eq!(replicas(99.9), 3);
    }
}
