//! Budgets on what a plugin hands the host besides its files: names, versions, messages,
//! diagnostics. The host copies, prints and audits these, so each has a bound in bytes or count;
//! text past its bound is cut at a character boundary with a note saying how much was dropped,
//! and `info()` fields past theirs make the plugin unloadable (a clear error, not a truncation,
//! because they identify the plugin).

/// Bytes one call may carry from the plugin's `info()` (name, version, description, kinds, config
/// schema together).
pub const INFO_TRANSFER_BYTES: u64 = 1 << 20;
/// Bytes of a plugin name (`info().name`): ASCII letters, digits, `-`, `_`, `.`.
pub const MAX_NAME_BYTES: usize = 64;
/// Bytes of a plugin version (`info().version`): ASCII letters, digits, `-`, `_`, `.`, `+`.
pub const MAX_VERSION_BYTES: usize = 64;
/// Bytes of a plugin description (`info().description`); no control characters.
pub const MAX_DESCRIPTION_BYTES: usize = 1024;
/// Number of kinds a plugin may list (`info().kinds`).
pub const MAX_KINDS: usize = 64;
/// Bytes of one kind name in `info().kinds`.
pub const MAX_KIND_BYTES: usize = 128;
/// Bytes of the config JSON Schema (`info().config-schema`).
pub const MAX_CONFIG_SCHEMA_BYTES: usize = 256 << 10;
/// Bytes kept of an `extract-error` message, a diagnostic message, or a trap description.
pub const MAX_MESSAGE_BYTES: usize = 4096;
/// Diagnostics kept per invocation (a note counts the rest).
pub const MAX_DIAGNOSTICS: usize = 256;
/// Bytes of a diagnostic's JSON Pointer; a longer pointer is dropped (it cannot locate anything).
pub const MAX_POINTER_BYTES: usize = 1024;

/// `text` cut to at most `max` bytes at a character boundary, with a note of what was dropped.
pub fn truncate(mut text: String, max: usize) -> String {
    if text.len() <= max {
        return text;
    }
    let dropped = text.len();
    let mut end = max;
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    text.truncate(end);
    let dropped = dropped - end;
    text.push_str(&format!("… [{dropped} more bytes dropped]"));
    text
}

fn plain(text: &str, extra: &[char]) -> bool {
    text.chars().all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.') || extra.contains(&c))
}

/// A field of a plugin's `info()` over its budget. Quoted fields are debug-escaped and cut to 80
/// bytes.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum InfoError {
    /// The name is empty, too long or not plain ASCII.
    #[error("the name {0} (a name is 1 to {MAX_NAME_BYTES} bytes of ASCII letters, digits, `-`, `_` and `.`)")]
    Name(String),
    /// The version is empty, too long or not plain ASCII.
    #[error(
        "the version {0} (a version is 1 to {MAX_VERSION_BYTES} bytes of ASCII letters, digits, `-`, `_`, `.` and `+`)"
    )]
    Version(String),
    /// The description is too long (its length in bytes).
    #[error("a description of {0} bytes (the budget is {MAX_DESCRIPTION_BYTES})")]
    DescriptionSize(usize),
    /// The description holds a control or format character (its code point).
    #[error("a description with the control or format character U+{0:04X}")]
    DescriptionChar(u32),
    /// Too many kinds (their number).
    #[error("{0} kinds (the budget is {MAX_KINDS})")]
    KindCount(usize),
    /// A kind is empty, too long or not plain ASCII.
    #[error(
        "the kind {0} (a kind is 1 to {MAX_KIND_BYTES} bytes of ASCII letters, digits, `-`, `_`, `.`, `:` and `/`)"
    )]
    Kind(String),
    /// The config schema is too long (its length in bytes).
    #[error("a config schema of {0} bytes (the budget is {MAX_CONFIG_SCHEMA_BYTES})")]
    ConfigSchemaSize(usize),
    /// The whole `info()` is larger than [`INFO_TRANSFER_BYTES`].
    #[error(
        "more than {INFO_TRANSFER_BYTES} bytes (the budget of `info()`: name, version, description, kinds and config schema together)"
    )]
    Transfer,
}

/// Checks the fields of a plugin's `info()` against their budgets.
///
/// # Errors
/// The first field out of bounds.
pub fn check_info(info: &crate::PluginInfo) -> Result<(), InfoError> {
    let shown = |s: &str| crate::budgets::truncate(format!("{s:?}"), 80);
    if info.name.is_empty() || info.name.len() > MAX_NAME_BYTES || !plain(&info.name, &[]) {
        return Err(InfoError::Name(shown(&info.name)));
    }
    if info.version.is_empty() || info.version.len() > MAX_VERSION_BYTES || !plain(&info.version, &['+']) {
        return Err(InfoError::Version(shown(&info.version)));
    }
    if info.description.len() > MAX_DESCRIPTION_BYTES {
        return Err(InfoError::DescriptionSize(info.description.len()));
    }
    if let Some(c) = info.description.chars().find(|c| qpf_core::text::is_unsafe_char(*c) && *c != '\n') {
        return Err(InfoError::DescriptionChar(c as u32));
    }
    if info.kinds.len() > MAX_KINDS {
        return Err(InfoError::KindCount(info.kinds.len()));
    }
    if let Some(kind) = info.kinds.iter().find(|k| k.is_empty() || k.len() > MAX_KIND_BYTES || !plain(k, &[':', '/'])) {
        return Err(InfoError::Kind(shown(kind)));
    }
    if info.config_schema.len() > MAX_CONFIG_SCHEMA_BYTES {
        return Err(InfoError::ConfigSchemaSize(info.config_schema.len()));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn truncation_keeps_a_char_boundary_and_says_how_much_was_dropped() {
        assert_eq!(truncate("abc".into(), 3), "abc");
        assert_eq!(truncate("abcdef".into(), 3), "abc… [3 more bytes dropped]");
        assert_eq!(truncate("aé".into(), 2), "a… [2 more bytes dropped]");
    }

    fn info() -> crate::PluginInfo {
        crate::PluginInfo {
            name: "py-models".into(),
            version: "0.1.0+build.1".into(),
            description: "Models.".into(),
            kinds: vec!["Agent".into()],
            config_schema: String::new(),
        }
    }

    #[test]
    fn info_fields_out_of_budget_are_refused_by_name() {
        assert_eq!(check_info(&info()), Ok(()));
        let cases: Vec<(crate::PluginInfo, &str)> = vec![
            (crate::PluginInfo { name: String::new(), ..info() }, "the name"),
            (crate::PluginInfo { name: "a\x1b[2Jb".into(), ..info() }, "the name"),
            (crate::PluginInfo { name: "x".repeat(65), ..info() }, "the name"),
            (crate::PluginInfo { version: "v".repeat(16 << 20), ..info() }, "the version"),
            (crate::PluginInfo { description: "d".repeat(2000), ..info() }, "description of 2000"),
            (crate::PluginInfo { description: "a\u{202e}b".into(), ..info() }, "U+202E"),
            (crate::PluginInfo { kinds: vec!["K".into(); 65], ..info() }, "65 kinds"),
            (crate::PluginInfo { kinds: vec!["K\nX".into()], ..info() }, "the kind"),
            (crate::PluginInfo { config_schema: " ".repeat(300 << 10), ..info() }, "config schema of"),
        ];
        for (bad, expected) in cases {
            let err = check_info(&bad).unwrap_err().to_string();
            assert!(err.contains(expected), "{err}");
            assert!(err.len() < 400, "the error stays short: {} bytes", err.len());
        }
    }
}
