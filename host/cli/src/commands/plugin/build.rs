//! `qpf plugin build [DIR]`: runs the plugin's toolchain and prints the digest to pin.
//!
//! | lang | toolchain |
//! |---|---|
//! | rust | `cargo build --release --target wasm32-wasip2` (the output is already a component) |
//! | python | `pip install --target` of `requirements.txt`, then `componentize-py ... componentize --stub-wasi` |
//! | js | `npm install` when `package.json` has dependencies, then `jco componentize --disable all --bundle` |
//!
//! The Python and JavaScript builds have no WASI imports at all; the result is inspected, and a
//! component the sandbox would refuse is an error here rather than at the first `qpf extract`.

use crate::term::say;
use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{Context, Result, bail};

use super::{Lang, Manifest, default_wasm, local_sdk_dir, manifest, qpf_root, tool};
use crate::exit::Exit;

/// Arguments of `qpf plugin build`.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// The plugin folder (holding qpf-plugin.yaml).
    #[arg(default_value = ".")]
    dir: PathBuf,
    /// Where to write the component (default: DIR/dist/NAME.wasm).
    #[arg(long, value_name = "FILE")]
    out: Option<PathBuf>,
}

/// Runs the command.
///
/// # Errors
/// A missing toolchain, a failing build, or a component the sandbox would refuse.
pub fn run(args: &Args) -> Result<Exit> {
    let m = manifest(&args.dir)?;
    let out = args.out.clone().unwrap_or_else(|| default_wasm(&args.dir, &m));
    if let Some(parent) = out.parent() {
        std::fs::create_dir_all(parent).with_context(|| format!("cannot create `{}`", parent.display()))?;
    }
    let out = std::path::absolute(&out).unwrap_or(out);
    match m.lang {
        Lang::Rust => rust(&args.dir, &out),
        Lang::Python => python(qpf_root().ok().as_deref(), &args.dir, &m, &out),
        Lang::Js => js(qpf_root().ok().as_deref(), &args.dir, &m, &out),
    }
    .with_context(|| {
        format!("cannot build plugin `{}` in `{}` (the toolchain's output is above)", m.name, args.dir.display())
    })?;
    let inspection = super::inspect::inspect(&out)?;
    if !inspection.refused.is_empty() {
        bail!(
            "`{}` imports {}, which the QPF sandbox does not grant",
            out.display(),
            inspection.refused.iter().map(|n| format!("`{n}`")).collect::<Vec<_>>().join(", ")
        );
    }
    if let Err(e) = &inspection.info {
        bail!("`{}` was built but does not load: {e}", out.display());
    }
    say!("{}  {}", inspection.digest, out.display());
    Ok(Exit::Success)
}

/// Runs a toolchain step; its output goes to stderr, so that stdout holds only the digest line.
fn run_tool(cmd: &mut Command, what: &str) -> Result<()> {
    tracing::info!("running {cmd:?}");
    cmd.stdout(std::io::stderr());
    let status = cmd.status().with_context(|| format!("{what}: cannot start {:?}", cmd.get_program()))?;
    if !status.success() {
        bail!("{what} failed ({status})");
    }
    Ok(())
}

fn rust(dir: &Path, out: &Path) -> Result<()> {
    let cargo_toml = std::fs::read_to_string(dir.join("Cargo.toml"))
        .with_context(|| format!("a Rust plugin needs `{}`", dir.join("Cargo.toml").display()))?;
    let name = package_name(&cargo_toml).context("Cargo.toml has no `[package] name`")?;
    let mut cargo = Command::new("cargo");
    cargo.args(["build", "--release", "--target", "wasm32-wasip2"]).current_dir(dir);
    if let Some(sdk) = local_rust_sdk() {
        // A path with a `"` cannot be written in the TOML string; cargo then uses crates.io.
        if let Some(path) = sdk.to_str().filter(|p| !p.contains('"')) {
            tracing::info!("building against the packaged SDK in `{path}`");
            cargo.arg("--config").arg(format!("patch.crates-io.qpf-sdk.path=\"{path}\""));
        }
    }
    cargo.env("RUSTFLAGS", reproducible_rustflags(dir));
    run_tool(&mut cargo, "cargo build")?;
    let target = std::env::var_os("CARGO_TARGET_DIR").map(PathBuf::from).unwrap_or_else(|| PathBuf::from("target"));
    let target = if target.is_absolute() { target } else { dir.join(target) };
    let built = target.join("wasm32-wasip2/release").join(format!("{}.wasm", name.replace('-', "_")));
    std::fs::copy(&built, out).with_context(|| format!("cannot copy `{}` to `{}`", built.display(), out.display()))?;
    Ok(())
}

/// The packaged Rust SDK of this `qpf`'s version, unpacked by `./dev` in a QPF checkout:
/// `$QPF_SDK_DIR/rust/qpf-sdk-VERSION`, by default under `<QPF_ROOT>/target/sdk`. `None` when it
/// is not there: cargo then takes `qpf-sdk` from crates.io, as on any other machine.
fn local_rust_sdk() -> Option<PathBuf> {
    let dir = local_sdk_dir()?.join("rust").join(format!("qpf-sdk-{}", env!("CARGO_PKG_VERSION")));
    let dir = std::fs::canonicalize(dir).ok()?;
    dir.join("Cargo.toml").is_file().then_some(dir)
}

/// `RUSTFLAGS` (the caller's, if any, first) that remap the folders whose absolute paths would
/// otherwise end up in the component (panic locations, debug names): the plugin's folder, cargo's
/// home (registry sources) and the QPF checkout (a path dependency on the SDK). The same sources
/// then give the same bytes on every machine, so the digest an author pins is the one others get.
fn reproducible_rustflags(dir: &Path) -> String {
    let mut flags = std::env::var("RUSTFLAGS").unwrap_or_default();
    let cargo_home = std::env::var_os("CARGO_HOME")
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".cargo")));
    let remaps = [
        (std::fs::canonicalize(dir).ok(), "/plugin"),
        (cargo_home, "/cargo"),
        (super::qpf_root().ok().and_then(|r| std::fs::canonicalize(r).ok()), "/qpf"),
    ];
    for (from, to) in remaps {
        // A path with spaces cannot be passed through RUSTFLAGS (space-separated); it stays.
        if let Some(from) = from.and_then(|f| f.to_str().map(str::to_owned)).filter(|f| !f.contains(' ')) {
            flags.push_str(&format!(" --remap-path-prefix={from}={to}"));
        }
    }
    flags.trim().to_owned()
}

/// `name = "..."` of the `[package]` table.
fn package_name(cargo_toml: &str) -> Option<String> {
    let mut in_package = false;
    for line in cargo_toml.lines().map(str::trim) {
        if line.starts_with('[') {
            in_package = line == "[package]";
        } else if in_package && let Some(value) = line.strip_prefix("name") {
            return Some(value.trim_start().strip_prefix('=')?.trim().trim_matches('"').to_owned());
        }
    }
    None
}

/// The Python build: the requirements (the SDK among them) installed into `.qpf-build/deps`, then
/// componentize-py with the WIT the SDK package carries. The SDK comes from the packaged SDKs of a
/// QPF checkout when there are some (`QPF_SDK_DIR`), installed first and from there only (so that
/// a package of the same name on an index can never replace it), else from the index like any
/// other requirement. A plugin that does not list `qpf-sdk` gets the checkout's `sdk/python`.
fn python(root: Option<&Path>, dir: &Path, m: &Manifest, out: &Path) -> Result<()> {
    let install = "run `./dev tools` in the QPF checkout, or `pip install componentize-py==0.25.1`";
    let componentize = tool(root, "python/bin/componentize-py", "componentize-py", install)?;
    let requirements = dir.join("requirements.txt");
    let wanted = std::fs::read_to_string(&requirements).unwrap_or_default();
    let lines: Vec<&str> = wanted.lines().map(str::trim).filter(|l| !l.is_empty() && !l.starts_with('#')).collect();
    let deps = dir.join(".qpf-build/deps");
    if !lines.is_empty() {
        install_requirements(&componentize, dir, &deps, &wanted, &lines)?;
    }
    let (wit, sdk_path) = if let Some(packaged_wit) = newest_wit(&deps.join("qpf_sdk/wit")) {
        (packaged_wit, None)
    } else {
        let root = root.context(
            "the plugin's requirements.txt does not list `qpf-sdk`, and there is no QPF checkout to take the SDK from \
             (add `qpf-sdk` to requirements.txt, or set QPF_ROOT)",
        )?;
        (root.join("wit").join(qpf_runtime::ABI_VERSION), Some(root.join("sdk/python")))
    };
    let mut cmd = Command::new(&componentize);
    cmd.arg("-q").arg("-d").arg(&wit).args(["-w", "extractor", "componentize"]);
    cmd.arg(m.entry.as_deref().unwrap_or("app")).arg("-p").arg(dir);
    if let Some(sdk) = sdk_path {
        cmd.arg("-p").arg(sdk);
    }
    if !lines.is_empty() {
        cmd.arg("-p").arg(&deps);
    }
    cmd.arg("-o").arg(out).arg("--stub-wasi");
    run_tool(&mut cmd, "componentize-py")
}
/// Whether a requirement line names the SDK (the name compared as pip normalises it, so that
/// `qpf_sdk` or `QPF.SDK` cannot slip past and be fetched from an index instead).
fn is_sdk(line: &str) -> bool {
    let name = line.split(['=', '<', '>', '~', '!', ' ', '[', ';', '@']).next().unwrap_or_default();
    name.to_ascii_lowercase().replace(['_', '.'], "-") == "qpf-sdk"
}

/// Installs the requirements `lines` (the text of `requirements.txt`: `wanted`) into `deps`,
/// unless they and the packaged SDK wheels are what the last build installed. The SDK comes from
/// the packaged wheels only when there are some (`--no-index`), the rest from the index.
fn install_requirements(componentize: &Path, dir: &Path, deps: &Path, wanted: &str, lines: &[&str]) -> Result<()> {
    let wheels = local_sdk_dir().map(|d| d.join("python")).filter(|d| d.is_dir());
    let stamp = dir.join(".qpf-build/deps.requirements");
    // The stamp also names the local SDK wheels, so that a rebuilt SDK is installed again.
    let mut state = wanted.to_owned();
    for e in wheels.iter().flat_map(std::fs::read_dir).flatten().flatten() {
        let bytes = std::fs::read(e.path()).unwrap_or_default();
        let digest = qpf_engine::writer::digest_of(&bytes);
        state.push_str(&format!("\n# {} {digest}", e.file_name().to_string_lossy()));
    }
    if std::fs::read_to_string(&stamp).ok().as_deref() == Some(state.as_str()) {
        return Ok(());
    }
    let _ = std::fs::remove_dir_all(deps);
    std::fs::create_dir_all(dir.join(".qpf-build")).context("cannot create .qpf-build")?;
    let pip = componentize.with_file_name("pip");
    let pip = if pip.is_file() { pip } else { PathBuf::from("pip") };
    let pip_install = || {
        let mut c = Command::new(&pip);
        c.args(["install", "--quiet", "--disable-pip-version-check", "--no-compile", "--target"]).arg(deps);
        c
    };
    let (sdk, rest): (Vec<&str>, Vec<&str>) = lines.iter().copied().partition(|l| is_sdk(l));
    let rest = match (&wheels, sdk.is_empty()) {
        (Some(w), false) => {
            let mut c = pip_install();
            c.args(["--no-index", "--find-links"]).arg(w).args(&sdk);
            run_tool(&mut c, "pip install qpf-sdk (the packaged SDK)")?;
            rest
        }
        _ => lines.to_vec(),
    };
    if !rest.is_empty() {
        let file = dir.join(".qpf-build/requirements.txt");
        std::fs::write(&file, rest.join("\n") + "\n").with_context(|| format!("cannot write `{}`", file.display()))?;
        run_tool(pip_install().arg("-r").arg(&file), "pip install -r requirements.txt")?;
    }
    std::fs::write(&stamp, &state).with_context(|| format!("cannot write `{}`", stamp.display()))
}

/// The JavaScript build: `npm install` of the dependencies (the SDK from the packaged SDKs of a
/// QPF checkout when there is one, `QPF_SDK_DIR`, without touching `package.json`), then jco with
/// the WIT the SDK package carries.
fn js(root: Option<&Path>, dir: &Path, m: &Manifest, out: &Path) -> Result<()> {
    let install = "run `./dev tools` in a QPF checkout, or install the pinned toolchain of \
                   `sdk/toolchains/js/package.json` (jco 1.35.0, componentize-js 0.23.0, preview2-shim 0.26.0) \
                   with npm and put its `jco` on PATH";
    let jco = tool(root, "js/node_modules/.bin/jco", "jco", install)?;
    let package = std::fs::read_to_string(dir.join("package.json")).unwrap_or_default();
    let deps = serde_json::from_str::<serde_json::Value>(&package)
        .ok()
        .and_then(|p| p.get("dependencies").and_then(|d| d.as_object()).cloned())
        .unwrap_or_default();
    if !deps.is_empty() && !dir.join("node_modules").is_dir() {
        let mut npm = Command::new("npm");
        npm.args(["install", "--no-audit", "--no-fund", "--loglevel=error"]).current_dir(dir);
        // A version of the SDK (not a path) comes from the packaged tarball when there is one:
        // `--no-save` installs it without writing its path into package.json.
        let wants_version = deps.get("@qpf/sdk").and_then(|v| v.as_str()).is_some_and(|v| !v.starts_with("file:"));
        let tarball = local_sdk_dir()
            .map(|d| d.join(format!("js/qpf-sdk-{}.tgz", env!("CARGO_PKG_VERSION"))))
            .filter(|t| t.is_file());
        if let (true, Some(tarball)) = (wants_version, tarball) {
            npm.arg("--no-save").arg(tarball);
        }
        run_tool(&mut npm, "npm install")?;
    }
    let wit = if let Some(packaged_wit) = newest_wit(&dir.join("node_modules/@qpf/sdk/wit")) {
        std::path::absolute(&packaged_wit).unwrap_or(packaged_wit)
    } else {
        root.context(
            "the installed @qpf/sdk carries no WIT, and there is no QPF checkout to take it from (set QPF_ROOT)",
        )?
        .join("wit")
        .join(qpf_runtime::ABI_VERSION)
    };
    // The host's interfaces are imports of the component, not modules to bundle.
    let config = dir.join(".qpf-build/bundle.config.mjs");
    std::fs::create_dir_all(dir.join(".qpf-build")).context("cannot create .qpf-build")?;
    std::fs::write(&config, "export default { external: [/^qpf:/, /^wasi:/] };\n")
        .context("cannot write the bundle config")?;
    let mut cmd = Command::new(jco);
    cmd.current_dir(dir)
        .arg("componentize")
        .arg(m.entry.as_deref().unwrap_or("index.js"))
        .arg("--wit")
        .arg(wit)
        .args(["--world-name", "extractor", "--disable", "all", "--bundle", "--bundle-config"])
        .arg(std::path::absolute(&config).unwrap_or(config))
        .arg("-o")
        .arg(out);
    run_tool(&mut cmd, "jco componentize")
}

/// The newest contract an installed SDK carries: the folder `wit/X.Y.Z` with the highest version
/// that this host runs and that holds `extractor.wit` (an SDK packages the WIT of the contract it
/// implements; a newer SDK may carry older ones too).
fn newest_wit(wit: &Path) -> Option<PathBuf> {
    qpf_runtime::SUPPORTED_ABI_VERSIONS.iter().rev().map(|v| wit.join(v)).find(|d| d.join("extractor.wit").is_file())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_sdk_is_recognised_under_every_spelling_pip_accepts() {
        for line in ["qpf-sdk==0.1.0", "qpf_sdk==0.1.0", "QPF.SDK>=0.1", "qpf-sdk [extra]", "qpf-sdk"] {
            assert!(is_sdk(line), "{line}");
        }
        for line in ["qpf-sdkx==1", "jinja2==3.1.6", "my-qpf-sdk"] {
            assert!(!is_sdk(line), "{line}");
        }
    }
}
