//! Host side of the `qpf:extractor/log` interface: log lines are kept per invocation, bounded.

use serde::{Deserialize, Serialize};

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

/// The host side of `log` for each contract version (the interface is the same in all).
macro_rules! host_log {
    ($v:ident) => {
        impl crate::bindings::$v::qpf::extractor::log::Host for StoreState {
            fn log(&mut self, level: crate::bindings::$v::qpf::extractor::log::Level, message: String) {
                use crate::bindings::$v::qpf::extractor::log::Level;
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

        /// `qpf:extractor/types` has no functions; the generated linker still asks for its (empty)
        /// host trait.
        impl crate::bindings::$v::qpf::extractor::types::Host for StoreState {}
    };
}

host_log!(v0_1);
host_log!(v0_2);
