//! Host side of the `qpf:extractor/log` interface: log lines are kept per invocation, bounded.

use serde::{Deserialize, Serialize};

use crate::bindings::qpf::extractor::log::{Host, Level};
use crate::runtime::StoreState;

/// Verbosity of a plugin's log line, or the stream it came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum LogLevel {
    /// `log(trace, ..)`.
    Trace,
    /// `log(debug, ..)`.
    Debug,
    /// `log(info, ..)`.
    Info,
    /// `log(warn, ..)`.
    Warn,
    /// `log(error, ..)`.
    Error,
    /// A line the plugin wrote to stdout.
    Stdout,
    /// A line the plugin wrote to stderr.
    Stderr,
}

/// One line a plugin logged.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LogLine {
    /// Level or stream.
    pub level: LogLevel,
    /// The text (lossy UTF-8 for stdout/stderr).
    pub message: String,
}

impl Host for StoreState {
    fn log(&mut self, level: Level, message: String) {
        let level = match level {
            Level::Trace => LogLevel::Trace,
            Level::Debug => LogLevel::Debug,
            Level::Info => LogLevel::Info,
            Level::Warn => LogLevel::Warn,
            Level::Error => LogLevel::Error,
        };
        self.log_budget.push(&mut self.logs, level, message);
    }
}

/// `qpf:extractor/types` has no functions; the generated linker still asks for its (empty) host trait.
impl crate::bindings::qpf::extractor::types::Host for StoreState {}
