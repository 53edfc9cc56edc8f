//! `qpf plugin new --lang rust|python|js NAME`.

use crate::term::say;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail};

use super::{Lang, MANIFEST};
use crate::exit::Exit;

/// Arguments of `qpf plugin new`.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// Language of the plugin.
    #[arg(long, value_enum)]
    lang: Lang,
    /// Plugin name: lower case letters, digits and `-`.
    name: String,
    /// Folder to create (default: ./NAME). It must not exist or be empty.
    #[arg(long)]
    dir: Option<PathBuf>,
}

const CASE_INPUT: &str = include_str!("../../../templates/plugin/case/input.json");
const CASE_EXPECTED: &str = include_str!("../../../templates/plugin/case/expected/hello.txt");

/// The files of a new plugin: `(path, template)`.
fn files(lang: Lang) -> Vec<(&'static str, &'static str)> {
    match lang {
        Lang::Rust => vec![
            ("Cargo.toml", include_str!("../../../templates/plugin/rust/Cargo.toml")),
            ("src/lib.rs", include_str!("../../../templates/plugin/rust/src/lib.rs")),
        ],
        Lang::Python => vec![
            ("app.py", include_str!("../../../templates/plugin/python/app.py")),
            ("requirements.txt", include_str!("../../../templates/plugin/python/requirements.txt")),
        ],
        Lang::Js => vec![
            ("index.js", include_str!("../../../templates/plugin/js/index.js")),
            ("package.json", include_str!("../../../templates/plugin/js/package.json")),
        ],
    }
}

fn valid_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 64
        && name.starts_with(|c: char| c.is_ascii_lowercase())
        && name.chars().all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-')
}

/// Runs the command.
///
/// # Errors
/// An invalid name, a non-empty target folder, or a write failure.
pub fn run(args: &Args) -> Result<Exit> {
    if !valid_name(&args.name) {
        bail!(
            "`{}` is not a valid plugin name: use lower case letters, digits and `-`, starting with a letter",
            args.name
        );
    }
    let dir = args.dir.clone().unwrap_or_else(|| PathBuf::from(&args.name));
    if dir.exists() && std::fs::read_dir(&dir).map(|mut d| d.next().is_some()).unwrap_or(true) {
        bail!("`{}` already exists and is not empty", dir.display());
    }
    let fill = |template: &str| {
        template
            .replace("{{name}}", &args.name)
            .replace("{{crate}}", &args.name)
            .replace("{{sdk_version}}", env!("CARGO_PKG_VERSION"))
    };
    let entry = match args.lang {
        Lang::Rust => "",
        Lang::Python => "entry: app\n",
        Lang::Js => "entry: index.js\n",
    };
    let mut written = vec![
        (
            MANIFEST.to_owned(),
            format!(
                "# Read by `qpf plugin build` and `qpf plugin test`.\nname: {}\nlang: {}\n{entry}",
                args.name,
                args.lang.name()
            ),
        ),
        (".gitignore".to_owned(), "/dist/\n/target/\n/node_modules/\n/.qpf-build/\n".to_owned()),
        ("tests/cases/hello/input.json".to_owned(), CASE_INPUT.to_owned()),
        (
            "tests/cases/hello/schema.json".to_owned(),
            "{\"kind\": \"Agent\", \"name\": \"example\", \"version\": \"1.0.0\"}\n".to_owned(),
        ),
        ("tests/cases/hello/expected/hello.txt".to_owned(), CASE_EXPECTED.to_owned()),
    ];
    written.extend(files(args.lang).into_iter().map(|(p, t)| (p.to_owned(), fill(t))));
    for (rel, text) in &written {
        write(&dir.join(rel), text)?;
    }
    say!("created {} plugin `{}` in {}", args.lang.name(), args.name, dir.display());
    say!("next: qpf plugin build {0} && qpf plugin test {0}", dir.display());
    Ok(Exit::Success)
}

fn write(path: &Path, text: &str) -> Result<()> {
    if let Some(parent) = path.parent() {
        std::fs::create_dir_all(parent).with_context(|| format!("cannot create `{}`", parent.display()))?;
    }
    std::fs::write(path, text).with_context(|| format!("cannot write `{}`", path.display()))
}
