//! `qpf serve --config FILE`: sandboxed multi-tenant extraction over HTTP (docs/serve.md).
//! `qpf serve --new-token` prints a fresh bearer token and the digest to put in the config.

use std::path::PathBuf;

use anyhow::{Context, Result};

use crate::exit::Exit;
use crate::term::say;

/// Arguments of `qpf serve`.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// The service's configuration (YAML; see docs/serve.md).
    #[arg(long, value_name = "FILE", required_unless_present = "new_token")]
    config: Option<PathBuf>,
    /// Print a new random bearer token and its digest (`tokens:` holds the digest), then exit.
    #[arg(long, conflicts_with = "config")]
    new_token: bool,
}

/// Runs the command.
///
/// # Errors
/// An invalid config, an unusable state folder or address.
pub fn run(args: &Args) -> Result<Exit> {
    if args.new_token {
        let (token, digest) = qpf_serve::new_token().context("cannot read the system's random source")?;
        say!("token   {token}");
        say!("digest  {digest}");
        return Ok(Exit::Success);
    }
    let Some(config) = &args.config else { return Ok(Exit::Usage) };
    match qpf_serve::run(config) {
        Ok(()) => Ok(Exit::Success),
        Err(qpf_serve::ServeError::Io { what, source }) => {
            crate::term::esay!("error: {what}: {source}");
            Ok(Exit::Io)
        }
        Err(e) => Err(e.into()),
    }
}
