//! Deterministic randomness for plugins: a per-invocation stream derived from the invocation's
//! cache key (so that outputs stay a function of the key), never repeating within a call.
//! It is **not secret**: anyone who knows the request can compute it. Plugins must not use it
//! for keys or tokens.

use std::convert::Infallible;

/// An endless byte stream: the blake3 extendable output of a seed under a domain context.
pub(crate) struct SeededStream(blake3::OutputReader);

impl SeededStream {
    /// A stream for `seed` in `domain` (secure and insecure randomness use different domains, so
    /// they never hand out the same bytes).
    pub(crate) fn new(domain: &str, seed: &[u8; 32]) -> Self {
        let mut hasher = blake3::Hasher::new_derive_key(domain);
        hasher.update(seed);
        SeededStream(hasher.finalize_xof())
    }

    /// The first 16 bytes of the stream, as a number (the WASI `insecure-seed`).
    pub(crate) fn seed_u128(domain: &str, seed: &[u8; 32]) -> u128 {
        let mut bytes = [0u8; 16];
        SeededStream::new(domain, seed).0.fill(&mut bytes);
        u128::from_le_bytes(bytes)
    }
}

impl rand_core::TryRng for SeededStream {
    type Error = Infallible;

    fn try_next_u32(&mut self) -> Result<u32, Infallible> {
        let mut b = [0u8; 4];
        self.0.fill(&mut b);
        Ok(u32::from_le_bytes(b))
    }

    fn try_next_u64(&mut self) -> Result<u64, Infallible> {
        let mut b = [0u8; 8];
        self.0.fill(&mut b);
        Ok(u64::from_le_bytes(b))
    }

    fn try_fill_bytes(&mut self, dst: &mut [u8]) -> Result<(), Infallible> {
        self.0.fill(dst);
        Ok(())
    }
}

/// The seed of one invocation's randomness, derived from its cache key (which covers the plugin,
/// the whole request and the limits: everything the plugin can observe). The key is computed once,
/// when the invocation is planned; the seed is one more hash of it, not of the request again.
#[derive(Clone, Copy, PartialEq, Eq)]
pub struct Seed(pub(crate) [u8; 32]);

impl Seed {
    /// The seed of the invocation whose cache key is `key`.
    pub fn from_key(key: &str) -> Seed {
        Seed(blake3::derive_key("qpf sandbox randomness seed v2", key.as_bytes()))
    }
}

impl std::fmt::Debug for Seed {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Seed(..)")
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand_core::Rng;

    #[test]
    fn a_stream_does_not_repeat_and_domains_differ() {
        let seed = [7u8; 32];
        let mut a = SeededStream::new("a", &seed);
        let mut bytes = [0u8; 16];
        a.fill_bytes(&mut bytes);
        assert_ne!(bytes[..8], bytes[8..], "16 bytes are not 8 bytes twice");
        let mut b = SeededStream::new("b", &seed);
        let mut other = [0u8; 16];
        b.fill_bytes(&mut other);
        assert_ne!(bytes, other);
    }

    #[test]
    fn the_seed_follows_the_key() {
        assert_eq!(Seed::from_key("blake3:00"), Seed::from_key("blake3:00"));
        assert_ne!(Seed::from_key("blake3:00"), Seed::from_key("blake3:01"));
    }
}
