//! Plugins chosen by version: `registry: NAME@RANGE` (a component of the registry folders) and
//! `oci: REPOSITORY` with `version: RANGE` (a tag of an OCI repository). Each resolves to the
//! version `qpf.lock` holds while the range allows it, else to the newest the range allows, and
//! the choice (version, file or reference, digest) goes back to the lock, whose digest pins it.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use qpf_schema::SchemaError;

use crate::EngineError;
use crate::extract::Settings;
use crate::lock::LockedFragment;
use crate::project::{PluginDecl, Project};

/// Takes `pick` as the plugin's pin, unless `qpf.yaml` pins it to another digest.
fn adopt(decl: &mut PluginDecl, pick: LockedFragment) -> Result<LockedFragment, String> {
    if !decl.digest.is_empty() && decl.digest != pick.digest {
        return Err(format!(
            "version {} (`{}`) is {}, not the pinned {}",
            pick.version, pick.file, pick.digest, decl.digest
        ));
    }
    decl.digest.clone_from(&pick.digest);
    Ok(pick)
}

/// The most tags of one repository read for a `version:` range.
pub const MAX_OCI_TAGS: usize = 10_000;

/// Resolves every `oci` plugin with a `version:` range to a tag: the one `locked` holds while the
/// range allows it (unless `update`; nothing is asked of the registry then), else the newest tag
/// (`1.2.0` or `v1.2.0`) the range allows, pulled once into the plugin store to learn its digest.
/// The declaration gets `REPOSITORY:TAG` and its pin; the picks go to the lock.
pub(crate) fn resolve_oci_ranges(
    project: &mut Project,
    settings: &Settings,
    locked: &BTreeMap<String, LockedFragment>,
    update: bool,
) -> Result<BTreeMap<String, LockedFragment>, EngineError> {
    let mut picks = BTreeMap::new();
    let mut failed = Vec::new();
    let max_bytes = project.file.load_limits.max_component_bytes;
    let store = settings
        .plugin_store
        .clone()
        .or_else(crate::plugin_store::user_plugin_store)
        .map(crate::plugin_store::PluginStore::new);
    let tag_version = |tag: &str| semver::Version::parse(tag.strip_prefix('v').unwrap_or(tag)).ok();
    for (name, decl) in &mut project.file.plugins {
        let (Some(range), Some(repository)) = (decl.version.clone(), decl.oci.clone()) else { continue };
        let fail = |message: String| EngineError::Fetch {
            name: name.clone(),
            reference: format!("{repository} (version {range})"),
            message,
        };
        // Checked when the project was read.
        let Ok(req) = semver::VersionReq::parse(&range) else { continue };
        let kept = locked.get(name).filter(|_| !update).filter(|l| {
            let tag = l.file.strip_prefix(&format!("{repository}:"));
            tag.and_then(tag_version).is_some_and(|v| req.matches(&v) && v.to_string() == l.version)
        });
        let (version, reference, digest) = if let Some(l) = kept {
            (l.version.clone(), l.file.clone(), l.digest.clone())
        } else {
            let Some(fetcher) = &settings.fetcher else {
                failed.push(fail("this host does not reach registries; pin a tag or digest instead".into()));
                continue;
            };
            let tags = match fetcher.tags(&repository, MAX_OCI_TAGS) {
                Ok(tags) => tags,
                Err(e) => {
                    failed.push(fail(e));
                    continue;
                }
            };
            let best = tags.iter().filter_map(|t| Some((tag_version(t)?, t))).filter(|(v, _)| req.matches(v)).max();
            let Some((version, tag)) = best else {
                let mut versions: Vec<semver::Version> = tags.iter().filter_map(|t| tag_version(t)).collect();
                versions.sort();
                let listed: Vec<String> = versions.iter().rev().take(10).map(ToString::to_string).collect();
                failed.push(fail(if listed.is_empty() {
                    "the repository has no semantic-version tag".to_owned()
                } else {
                    format!("no tag matches `{range}` (newest tags: {})", listed.join(", "))
                }));
                continue;
            };
            let reference = format!("{repository}:{tag}");
            let digest = if decl.digest.is_empty() {
                // Pulled once now to learn its digest, and kept in the store for the run.
                let Some(store) = &store else {
                    failed.push(fail("no plugin store: set QPF_PLUGIN_STORE (there is no home folder)".into()));
                    continue;
                };
                let stored = fetcher
                    .fetch(&reference, max_bytes)
                    .and_then(|bytes| store.put(&bytes, None).map_err(|e| e.to_string()));
                match stored {
                    Ok((digest, _)) => digest.to_string(),
                    Err(e) => {
                        failed.push(fail(e));
                        continue;
                    }
                }
            } else {
                decl.digest.clone()
            };
            (version.to_string(), reference, digest)
        };
        match adopt(decl, LockedFragment { version, file: reference, digest }) {
            Ok(pick) => {
                decl.oci = Some(pick.file.clone());
                picks.insert(name.clone(), pick);
            }
            Err(e) => failed.push(fail(e)),
        }
    }
    match failed.len() {
        0 => Ok(picks),
        1 => Err(failed.remove(0)),
        _ => Err(EngineError::Plugins(failed)),
    }
}

/// The most entries one registry plugin's folder (`plugins/NAME/`) may hold.
pub const MAX_REGISTRY_PLUGIN_VERSIONS: usize = 1_000;

/// What `registry: NAME@RANGE` plugins resolved to, by plugin name (for the lock), and the
/// folders listed (for the run snapshot).
pub(crate) type RegistryPlugins = (BTreeMap<String, LockedFragment>, Vec<PathBuf>);

/// Resolves every `registry: NAME@RANGE` plugin to a component of the registry folders: the
/// version `locked` holds while its file exists and the range allows it (unless `update`), else
/// the newest the range allows (the first registry's file for a version two of them hold). The
/// declaration gets the file's absolute path and its pin: the locked digest (a file changed since
/// is then refused when it is loaded, like any pinned file), else the digest of its bytes now.
pub(crate) fn resolve_registry_plugins(
    root: &Path,
    project: &mut Project,
    locked: &BTreeMap<String, LockedFragment>,
    update: bool,
) -> Result<RegistryPlugins, EngineError> {
    let mut picks = BTreeMap::new();
    let mut dirs = Vec::new();
    let mut errors = Vec::new();
    // Each registry as declared (what the lock shows: the same on every machine when relative)
    // and where it is here.
    let registries: Vec<(&PathBuf, PathBuf)> =
        project.file.registries.iter().filter_map(|r| Some((r, std::fs::canonicalize(root.join(r)).ok()?))).collect();
    let max_bytes = project.file.load_limits.max_component_bytes;
    for (name, decl) in &mut project.file.plugins {
        let Some(spec) = decl.registry.clone() else { continue };
        let fail =
            |message: String| SchemaError::file("qpf.yaml", format!("plugin `{name}` (`registry: {spec}`): {message}"));
        let (wanted, range) = match crate::project::registry_plugin_spec(&spec) {
            Ok(parsed) => parsed,
            Err(e) => {
                errors.push(fail(e));
                continue;
            }
        };
        // Version → (the file here, the file as the lock shows it).
        let mut found: BTreeMap<semver::Version, (PathBuf, String)> = BTreeMap::new();
        for (declared, registry) in &registries {
            let dir = registry.join("plugins").join(&wanted);
            let Ok(entries) = std::fs::read_dir(&dir) else { continue };
            dirs.push(dir.clone());
            for (n, entry) in entries.flatten().enumerate() {
                if n >= MAX_REGISTRY_PLUGIN_VERSIONS {
                    errors.push(fail(format!(
                        "`{}` holds more than {MAX_REGISTRY_PLUGIN_VERSIONS} entries",
                        dir.display()
                    )));
                    break;
                }
                let path = entry.path();
                let is_file = entry.file_type().is_ok_and(|t| t.is_file());
                let version = path
                    .file_name()
                    .and_then(|f| f.to_str())
                    .and_then(|f| f.strip_suffix(".wasm"))
                    .and_then(|v| semver::Version::parse(v).ok());
                if let (true, Some(version)) = (is_file, version) {
                    let shown =
                        format!("{}/plugins/{wanted}/{}", declared.display(), entry.file_name().to_string_lossy());
                    found.entry(version).or_insert((path, shown));
                }
            }
        }
        // The locked version, by version (its file is wherever the registries are on this machine).
        let kept = locked
            .get(name)
            .filter(|_| !update)
            .and_then(|l| Some((l, semver::Version::parse(&l.version).ok()?)))
            .filter(|(_, v)| range.matches(v))
            .and_then(|(l, v)| Some((l, found.get(&v)?.clone(), v)));
        let (version, (path, shown), digest) = if let Some((l, (path, shown), v)) = kept {
            // Hashed here too, to say what happened and what to do (the load would only refuse it).
            let now = qpf_core::fs::read_regular(&path, max_bytes).map(|b| qpf_core::digest_of(&b));
            if now.as_ref().is_ok_and(|d| *d != l.digest) {
                errors.push(fail(format!(
                    "version {v} (`{shown}`) changed since qpf.lock pinned it ({}, pinned {}); `qpf extract --update-registry` accepts it as it is now",
                    now.unwrap_or_default(),
                    l.digest
                )));
                continue;
            }
            (v, (path, shown), l.digest.clone())
        } else {
            let Some((v, (p, shown))) = found.iter().rev().find(|(v, _)| range.matches(v)) else {
                let versions: Vec<String> = found.keys().map(ToString::to_string).collect();
                errors.push(fail(if versions.is_empty() {
                    format!("no `plugins/{wanted}/VERSION.wasm` in the registry folders")
                } else {
                    format!("no version matches `{range}` (versions found: {})", versions.join(", "))
                }));
                continue;
            };
            match qpf_core::fs::read_regular(p, max_bytes) {
                Ok(bytes) => (v.clone(), (p.clone(), shown.clone()), qpf_core::digest_of(&bytes)),
                Err(e) => {
                    errors.push(fail(format!("cannot read `{}`: {e}", p.display())));
                    continue;
                }
            }
        };
        match adopt(decl, LockedFragment { version: version.to_string(), file: shown, digest }) {
            Ok(pick) => {
                decl.path = path;
                picks.insert(name.clone(), pick);
            }
            Err(e) => errors.push(fail(e)),
        }
    }
    if errors.is_empty() { Ok((picks, dirs)) } else { Err(EngineError::Invalid(errors)) }
}
