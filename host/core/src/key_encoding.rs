//! The encoding under every QPF key: named fields, each length-prefixed, hashed with blake3. Two
//! different field lists never encode to the same bytes (a name or value cannot bleed into the
//! next), which the fuzz target `key_encoding` checks.

/// The bytes hashed for `fields`: for each, its name, the value's length (u64, little endian) and
/// the value.
pub fn encode(fields: &[(&str, &str)]) -> Vec<u8> {
    let mut out = Vec::with_capacity(fields.iter().map(|(n, v)| n.len() + v.len() + 16).sum());
    for (name, value) in fields {
        out.extend_from_slice(&(name.len() as u64).to_le_bytes());
        out.extend_from_slice(name.as_bytes());
        out.extend_from_slice(&(value.len() as u64).to_le_bytes());
        out.extend_from_slice(value.as_bytes());
    }
    out
}

/// `blake3:<hex>` of [`encode`]`(fields)`.
pub fn hash(fields: &[(&str, &str)]) -> String {
    let mut hasher = blake3::Hasher::new();
    for (name, value) in fields {
        hasher.update(&(name.len() as u64).to_le_bytes());
        hasher.update(name.as_bytes());
        hasher.update(&(value.len() as u64).to_le_bytes());
        hasher.update(value.as_bytes());
    }
    crate::Digest::from_hash(hasher.finalize()).to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hashing_is_hashing_the_encoding() {
        let fields = [("format", "x/1"), ("request", "{}")];
        assert_eq!(hash(&fields), crate::digest_of(&encode(&fields)));
    }

    #[test]
    fn fields_cannot_bleed_into_each_other() {
        assert_ne!(encode(&[("a", "bc")]), encode(&[("ab", "c")]));
        assert_ne!(encode(&[("a", "b"), ("c", "d")]), encode(&[("a", "b\0\0\0\0\0\0\0\0c")]));
    }
}
