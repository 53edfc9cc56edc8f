//! Deterministic randomness for plugins: a per-invocation stream derived from what the plugin
//! sees (so that outputs stay a function of the cache key), never repeating within a call.
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

/// The seed of one invocation: blake3 over a length-prefixed encoding of the plugin's digest and
/// every field of the request, which is everything the plugin can observe.
pub(crate) fn invocation_seed(plugin_digest: &str, request: &crate::Request) -> [u8; 32] {
    let mut hasher = blake3::Hasher::new_derive_key("qpf sandbox randomness seed v1");
    for field in [
        plugin_digest,
        &request.entry,
        &request.schema.kind,
        &request.schema.name,
        &request.schema.version,
        &request.input,
        &request.config,
        &request.context,
    ] {
        hasher.update(&(field.len() as u64).to_le_bytes());
        hasher.update(field.as_bytes());
    }
    *hasher.finalize().as_bytes()
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
    fn the_seed_follows_every_request_field() {
        let request = crate::Request {
            entry: "e".into(),
            schema: crate::SchemaId { kind: "K".into(), name: "n".into(), version: "1".into() },
            input: "{}".into(),
            config: "{}".into(),
            context: "{}".into(),
        };
        let base = invocation_seed("blake3:00", &request);
        assert_eq!(base, invocation_seed("blake3:00", &request));
        let mut other = request.clone();
        other.entry = "f".into();
        assert_ne!(base, invocation_seed("blake3:00", &other));
        assert_ne!(base, invocation_seed("blake3:01", &request));
    }
}
