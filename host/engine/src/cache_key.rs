//! The invocation cache key: blake3 over a canonical, versioned encoding of everything an
//! invocation's result depends on. Changing anything in [`KeyInputs`] changes the key; changing the
//! encoding means bumping [`KEY_FORMAT`].

use qpf_runtime::Limits;

/// Version of the key encoding. Bump it whenever the encoding or the meaning of a field changes.
pub const KEY_FORMAT: &str = "qpf-invocation-key/1";

/// Everything an invocation's result depends on.
#[derive(Debug, Clone, Copy)]
pub struct KeyInputs<'a> {
    /// The WIT package version the plugin is called through.
    pub abi: &'a str,
    /// `blake3:<hex>` of the plugin component.
    pub plugin_digest: &'a str,
    /// Canonical JSON of the config.
    pub config: &'a str,
    /// Canonical JSON of the selected input.
    pub input: &'a str,
    /// Canonical JSON of the context.
    pub context: &'a str,
    /// The sandbox limits (a limit can turn success into failure).
    pub limits: &'a Limits,
}

/// The key, as `blake3:<hex>`.
pub fn compute(inputs: &KeyInputs<'_>) -> String {
    let limits = serde_json::to_value(inputs.limits).map(|v| crate::canonical::to_string(&v)).unwrap_or_default();
    let mut hasher = blake3::Hasher::new();
    for (name, field) in [
        ("format", KEY_FORMAT),
        ("abi", inputs.abi),
        ("plugin", inputs.plugin_digest),
        ("config", inputs.config),
        ("input", inputs.input),
        ("context", inputs.context),
        ("limits", limits.as_str()),
    ] {
        // Length-prefixed, so that no two different tuples encode to the same bytes.
        hasher.update(name.as_bytes());
        hasher.update(&(field.len() as u64).to_le_bytes());
        hasher.update(field.as_bytes());
    }
    format!("blake3:{}", hasher.finalize().to_hex())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn base(limits: &Limits) -> KeyInputs<'_> {
        KeyInputs { abi: "0.1.0", plugin_digest: "blake3:00", config: "{}", input: "{\"a\":1}", context: "{}", limits }
    }

    #[test]
    fn key_is_stable_for_equal_inputs() {
        let limits = Limits::default();
        assert_eq!(compute(&base(&limits)), compute(&base(&limits)));
    }

    #[test]
    fn every_field_changes_the_key() {
        let limits = Limits::default();
        let k0 = compute(&base(&limits));
        let tighter = Limits { fuel: 1, ..Limits::default() };
        let variants = [
            KeyInputs { abi: "0.2.0", ..base(&limits) },
            KeyInputs { plugin_digest: "blake3:01", ..base(&limits) },
            KeyInputs { config: "{\"x\":1}", ..base(&limits) },
            KeyInputs { input: "{\"a\":2}", ..base(&limits) },
            KeyInputs { context: "{\"c\":1}", ..base(&limits) },
            base(&tighter),
        ];
        for v in variants {
            assert_ne!(compute(&v), k0, "{v:?}");
        }
    }

    #[test]
    fn fields_cannot_bleed_into_each_other() {
        let limits = Limits::default();
        let a = KeyInputs { config: "ab", input: "c", ..base(&limits) };
        let b = KeyInputs { config: "a", input: "bc", ..base(&limits) };
        assert_ne!(compute(&a), compute(&b));
    }

    #[test]
    fn key_format_is_pinned() {
        // A golden value: if this changes, every user's cache is invalidated; bump KEY_FORMAT on purpose.
        let limits = Limits::default();
        assert_eq!(compute(&base(&limits)), "blake3:03ea8fc6b27c02105c46251003601cbe04b9e72b6c7309c4f3ed3e1a4e7b7804");
    }
}
