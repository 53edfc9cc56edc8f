//! What reaches the user's terminal. Every line the CLI prints for humans goes through [`say!`]
//! or [`esay!`], which show control characters (escape, carriage return, ...) and Unicode format
//! characters (bidi overrides, zero-width characters) as `\u{…}` escapes, so no schema, project or
//! plugin text can move the cursor, recolour, retitle or reorder the terminal. Text a plugin
//! controls (its messages, logs, diagnostics) also goes through [`block`], which indents every
//! line after its first, so that it cannot pass for a line of the host's own. JSON output goes
//! through [`out`] as it is: it is already exact. Either way, a closed pipe ends `qpf` quietly.

pub use qpf_core::text::{escape as one, escape_block as block, escape_lines as lines};

/// Writes one line to stdout. A closed pipe (`qpf plan | head -1`) ends the program quietly with
/// exit code 0: the reader has all it wanted. Other write errors are ignored (where `println!`
/// would panic).
pub fn out(line: &str) {
    use std::io::Write;
    let mut stdout = std::io::stdout().lock();
    if let Err(e) = writeln!(stdout, "{line}").and_then(|()| stdout.flush())
        && e.kind() == std::io::ErrorKind::BrokenPipe
    {
        std::process::exit(0);
    }
}

/// The version of every `--format json` output that has none of its own.
pub const JSON_FORMAT: u32 = 1;

/// Prints a JSON document on one line (pretty when `pretty`), with a `"format"` version first
/// unless it carries its own.
pub fn out_json<T: serde::Serialize>(value: &T, pretty: bool) {
    let value = serde_json::to_value(value).unwrap_or(serde_json::Value::Null);
    let value = match value {
        serde_json::Value::Object(map) if !map.contains_key("format") => {
            let mut with = serde_json::Map::new();
            with.insert("format".to_owned(), serde_json::Value::from(JSON_FORMAT));
            with.extend(map);
            serde_json::Value::Object(with)
        }
        other => other,
    };
    let text = if pretty { serde_json::to_string_pretty(&value) } else { serde_json::to_string(&value) };
    out(&text.unwrap_or_default());
}

/// Writes one line to stderr; errors (a closed stderr) are ignored.
pub fn err(line: &str) {
    use std::io::Write;
    let _ = writeln!(std::io::stderr().lock(), "{line}");
}

/// `println!` for humans: the formatted line with unsafe characters escaped.
macro_rules! say {
    () => { $crate::term::out("") };
    ($($arg:tt)*) => { $crate::term::out(&$crate::term::lines(&format!($($arg)*))) };
}

/// `eprintln!` for humans: the formatted line with unsafe characters escaped.
macro_rules! esay {
    () => { $crate::term::err("") };
    ($($arg:tt)*) => { $crate::term::err(&$crate::term::lines(&format!($($arg)*))) };
}

pub(crate) use {esay, say};
