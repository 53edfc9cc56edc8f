//! Exit codes are a contract (documented in `docs/cli.md`, tested in `tests/all/cli.rs`):
//!
//! | code | meaning |
//! |---|---|
//! | 0 | success |
//! | 1 | the work failed: invalid project or schemas, a failing invocation, a plugin that cannot load |
//! | 2 | findings: the command ran and found something to report (`qpf drift` found drift) |
//! | 64 | usage error: bad flags or arguments, no `qpf.yaml` in `--project` |
//! | 74 | I/O error: the output root, the lock or the state folder cannot be written |

use qpf_engine::EngineError;
use qpf_engine::project::ProjectError;

/// The process exit codes of `qpf`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Exit {
    /// 0.
    Success = 0,
    /// 1.
    Failure = 1,
    /// 2.
    Findings = 2,
    /// 64.
    Usage = 64,
    /// 74.
    Io = 74,
}

impl From<Exit> for std::process::ExitCode {
    fn from(e: Exit) -> Self {
        std::process::ExitCode::from(e as u8)
    }
}

/// The exit code for an error that stopped a command.
pub fn classify(error: &anyhow::Error) -> Exit {
    match error.downcast_ref::<EngineError>() {
        Some(EngineError::Project(ProjectError::NotFound(_))) => Exit::Usage,
        Some(EngineError::Io { .. } | EngineError::Output { .. }) => Exit::Io,
        Some(_) => Exit::Failure,
        None if error.downcast_ref::<std::io::Error>().is_some() => Exit::Io,
        None => Exit::Failure,
    }
}

/// The error chain, outermost first, one cause per line; a cause whose text the message already
/// shows is not repeated.
pub fn render(error: &anyhow::Error) -> String {
    let mut out = error.to_string();
    for cause in error.chain().skip(1) {
        let text = cause.to_string();
        if !out.contains(&text) {
            out.push_str(&format!("\n  caused by: {text}"));
        }
    }
    out
}
