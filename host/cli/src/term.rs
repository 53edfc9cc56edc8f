//! What reaches the user's terminal. Every line the CLI prints for humans goes through [`say!`]
//! or [`esay!`], which show control characters (escape, carriage return, ...) and Unicode format
//! characters (bidi overrides, zero-width characters) as `\u{…}` escapes, so no schema, project or
//! plugin text can move the cursor, recolour, retitle or reorder the terminal. Text a plugin
//! controls (its messages, logs, diagnostics) also goes through [`block`], which indents every
//! line after its first, so that it cannot pass for a line of the host's own. JSON output is
//! printed with `println!` as it is: it is already exact.

use std::borrow::Cow;

pub use qpf_core::text::{escape as one, escape_block as block};

/// `text` with unsafe characters escaped, newlines and tabs kept (for the host's own multi-line
/// output, which already carries escaped untrusted parts).
pub fn lines(text: &str) -> Cow<'_, str> {
    if !text.chars().any(|c| qpf_core::text::is_unsafe_char(c) && c != '\n' && c != '\t') {
        return Cow::Borrowed(text);
    }
    Cow::Owned(
        text.chars()
            .map(|c| {
                if qpf_core::text::is_unsafe_char(c) && c != '\n' && c != '\t' {
                    format!("\\u{{{:x}}}", c as u32)
                } else {
                    c.to_string()
                }
            })
            .collect(),
    )
}

/// `println!` for humans: the formatted line with unsafe characters escaped.
macro_rules! say {
    () => { println!() };
    ($($arg:tt)*) => { println!("{}", $crate::term::lines(&format!($($arg)*))) };
}

/// `eprintln!` for humans: the formatted line with unsafe characters escaped.
macro_rules! esay {
    () => { eprintln!() };
    ($($arg:tt)*) => { eprintln!("{}", $crate::term::lines(&format!($($arg)*))) };
}

pub(crate) use {esay, say};

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lines_keep_newlines_and_escape_the_rest() {
        assert_eq!(lines("a\nb\tc"), "a\nb\tc");
        assert_eq!(lines("a\x1b[2J\rb\u{202e}"), "a\\u{1b}[2J\\u{d}b\\u{202e}");
    }
}
