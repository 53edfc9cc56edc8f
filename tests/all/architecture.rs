//! The dependency rule of the workspace, checked over `cargo metadata`: host crates form layers
//! (cli → {serve, remote} → engine → {schema, runtime} → core; `qpf-oci`, the registry client, is
//! beside schema and runtime and used by the CLI alone; `qpf-remote` implements the engine's
//! remote-cache trait on object storage) and a crate may use only crates of lower layers;
//! `qpf-schema` and `qpf-runtime` never use each other; guests and SDKs never use host crates.

use std::collections::BTreeMap;

use crate::support;

/// Host crates and their layer.
const LAYERS: &[(&str, u32)] = &[
    ("qpf-core", 0),
    ("qpf-schema", 1),
    ("qpf-runtime", 1),
    ("qpf-oci", 1),
    ("qpf-engine", 2),
    ("qpf-serve", 3),
    ("qpf-remote", 3),
    ("qpf", 4),
];

#[test]
fn host_crates_depend_only_downwards_and_guests_never_on_the_host() {
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".to_owned());
    let out = std::process::Command::new(cargo)
        .args(["metadata", "--format-version", "1", "--no-deps", "--offline"])
        .current_dir(support::workspace_root())
        .output()
        .expect("cargo metadata runs");
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let meta: serde_json::Value = serde_json::from_slice(&out.stdout).expect("metadata is JSON");
    let layers: BTreeMap<&str, u32> = LAYERS.iter().copied().collect();
    let mut checked = 0;
    for package in meta["packages"].as_array().expect("packages") {
        let name = package["name"].as_str().unwrap_or_default();
        let deps: Vec<&str> = package["dependencies"]
            .as_array()
            .expect("dependencies")
            .iter()
            .filter(|d| d["kind"].is_null())
            .filter_map(|d| d["name"].as_str())
            .filter(|d| d.starts_with("qpf-") || *d == "qpf")
            .collect();
        match layers.get(name) {
            Some(&layer) => {
                for dep in &deps {
                    let dep_layer = layers.get(dep).copied();
                    assert!(
                        dep_layer.is_some_and(|l| l < layer),
                        "`{name}` (layer {layer}) depends on `{dep}` (layer {dep_layer:?}): dependencies point down only"
                    );
                }
            }
            // A guest, a plugin or an SDK: only the SDK and the plugin family's own library.
            None => {
                for dep in &deps {
                    assert!(!layers.contains_key(dep), "`{name}` (a guest or SDK) depends on the host crate `{dep}`");
                }
            }
        }
        checked += 1;
    }
    assert!(checked >= 15, "read {checked} packages");
}
