//! Text from plugins and projects on its way to a terminal: control characters (C0, DEL, C1) and
//! Unicode format characters (bidi overrides and isolates, zero-width characters, the BOM) are
//! shown as `\u{…}` escapes, so that no plugin can move the cursor, clear the screen, forge a line
//! or reorder what the user reads. JSON output is never escaped this way (it is already exact).

use std::borrow::Cow;

/// Whether `c` must not reach a terminal raw: a control character or a Unicode format character
/// (general category Cf, e.g. U+202E RIGHT-TO-LEFT OVERRIDE, U+200B ZERO WIDTH SPACE), or a line
/// or paragraph separator.
pub fn is_unsafe_char(c: char) -> bool {
    c.is_control()
        || matches!(c,
            '\u{00AD}'
            | '\u{0600}'..='\u{0605}'
            | '\u{061C}'
            | '\u{06DD}'
            | '\u{070F}'
            | '\u{0890}'..='\u{0891}'
            | '\u{08E2}'
            | '\u{180E}'
            | '\u{200B}'..='\u{200F}'
            | '\u{2028}'..='\u{202E}'
            | '\u{2060}'..='\u{2064}'
            | '\u{2066}'..='\u{206F}'
            | '\u{FEFF}'
            | '\u{FFF9}'..='\u{FFFB}'
            | '\u{110BD}'
            | '\u{110CD}'
            | '\u{13430}'..='\u{1343F}'
            | '\u{1BCA0}'..='\u{1BCA3}'
            | '\u{1D173}'..='\u{1D17A}'
            | '\u{E0001}'
            | '\u{E0020}'..='\u{E007F}')
}

/// How newlines and tabs are treated.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Lines {
    /// Escaped like any control character: one line.
    Escape,
    /// Kept, and every line after the first indented (text a plugin controls).
    Indent,
    /// Kept as they are (the host's own multi-line output).
    Keep,
}

/// `text` with every unsafe character (see [`is_unsafe_char`]) escaped as `\u{…}`, and `\` kept
/// as is. Newlines are escaped too: the result is always one line.
pub fn escape(text: &str) -> Cow<'_, str> {
    escape_with(text, Lines::Escape)
}

/// Like [`escape`], but keeps newlines and indents every line after the first by four spaces, so
/// that a multi-line message stays readable and cannot pass for a line of the host's own.
pub fn escape_block(text: &str) -> Cow<'_, str> {
    escape_with(text, Lines::Indent)
}

/// Like [`escape`], but keeps newlines and tabs as they are: for the host's own multi-line output,
/// whose untrusted parts went through [`escape`] or [`escape_block`] already.
pub fn escape_lines(text: &str) -> Cow<'_, str> {
    escape_with(text, Lines::Keep)
}

fn escape_with(text: &str, lines: Lines) -> Cow<'_, str> {
    // What passes as it is: a tab in multi-line modes, a newline where lines are kept.
    let passes = |c: char| (c == '\t' && lines != Lines::Escape) || (c == '\n' && lines == Lines::Keep);
    let changes = |c: char| is_unsafe_char(c) && !passes(c);
    if !text.chars().any(changes) {
        return Cow::Borrowed(text);
    }
    let mut out = String::with_capacity(text.len() + 16);
    for c in text.chars() {
        match c {
            '\n' if lines == Lines::Indent => out.push_str("\n    "),
            c if changes(c) => out.push_str(&format!("\\u{{{:x}}}", c as u32)),
            c => out.push(c),
        }
    }
    Cow::Owned(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn escapes_controls_and_bidi_and_leaves_the_rest() {
        assert_eq!(escape("plain/path.py"), "plain/path.py");
        assert_eq!(escape("a\x1b[2Jb"), "a\\u{1b}[2Jb");
        assert_eq!(escape("x\ny\rz"), "x\\u{a}y\\u{d}z");
        assert_eq!(escape("abc\u{202e}fed"), "abc\\u{202e}fed");
        assert_eq!(escape("\u{200b}"), "\\u{200b}");
        assert_eq!(escape("\u{9b}"), "\\u{9b}");
        assert_eq!(escape("é ü 日本"), "é ü 日本");
    }

    #[test]
    fn lines_keep_newlines_and_tabs_and_escape_the_rest() {
        assert_eq!(escape_lines("a\nb\tc"), "a\nb\tc");
        assert_eq!(escape_lines("a\x1b[2J\rb\u{202e}"), "a\\u{1b}[2J\\u{d}b\\u{202e}");
    }

    #[test]
    fn blocks_keep_lines_but_indent_them() {
        assert_eq!(escape_block("one\nok: forged"), "one\n    ok: forged");
        assert_eq!(escape_block("a\x1b]0;t\x07"), "a\\u{1b}]0;t\\u{7}");
    }
}
