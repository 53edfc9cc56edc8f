//! The one digest format of every QPF record: `blake3:` and 64 lower-case hex digits.

use std::fmt;
use std::str::FromStr;

/// The prefix of every digest.
pub const PREFIX: &str = "blake3:";

/// A blake3 digest, shown and parsed as `blake3:<64 hex digits>`.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Digest([u8; 32]);

/// Why a text is not a digest.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("`{0}` is not a digest: it must be `blake3:` and 64 hex digits")]
pub struct DigestError(String);

impl Digest {
    /// The digest of some bytes.
    pub fn of(bytes: &[u8]) -> Self {
        Digest(*blake3::hash(bytes).as_bytes())
    }

    /// A digest from a finished hasher.
    pub fn from_hash(hash: blake3::Hash) -> Self {
        Digest(*hash.as_bytes())
    }

    /// As a blake3 hash, whose `==` runs in constant time (for comparing secrets' digests).
    pub fn to_hash(&self) -> blake3::Hash {
        blake3::Hash::from_bytes(self.0)
    }

    /// The 64 hex digits, without the prefix (file names in caches).
    pub fn hex(&self) -> String {
        blake3::Hash::from_bytes(self.0).to_hex().to_string()
    }

    /// Parses `blake3:<64 hex digits>`.
    ///
    /// # Errors
    /// [`DigestError`] for any other text (the text is shortened and escaped in the message).
    pub fn parse(text: &str) -> Result<Self, DigestError> {
        let bad = || DigestError(crate::text::escape(&text.chars().take(80).collect::<String>()).into_owned());
        let hex = text.strip_prefix(PREFIX).ok_or_else(bad)?;
        if hex.len() != 64 || !hex.bytes().all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b)) {
            return Err(bad());
        }
        blake3::Hash::from_hex(hex).map(Digest::from_hash).map_err(|_| bad())
    }
}

impl fmt::Display for Digest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{PREFIX}{}", self.hex())
    }
}

impl fmt::Debug for Digest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(self, f)
    }
}

impl FromStr for Digest {
    type Err = DigestError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Digest::parse(s)
    }
}

impl serde::Serialize for Digest {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> serde::Deserialize<'de> for Digest {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let text = String::deserialize(d)?;
        Digest::parse(&text).map_err(serde::de::Error::custom)
    }
}

/// The hex part of a digest text (`blake3:` stripped), for file names; any text that is not hex is
/// dropped, so the result is always a safe file name.
pub fn file_stem(text: &str) -> String {
    text.strip_prefix(PREFIX).unwrap_or(text).chars().filter(char::is_ascii_hexdigit).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn digests_round_trip_through_text_and_serde() {
        let d = Digest::of(b"hello");
        let text = d.to_string();
        assert!(text.starts_with("blake3:") && text.len() == 71);
        assert_eq!(Digest::parse(&text), Ok(d));
        assert_eq!(crate::digest_of(b"hello"), text);
        let json = serde_json::to_string(&d).unwrap_or_default();
        assert_eq!(serde_json::from_str::<Digest>(&json).ok(), Some(d));
    }

    #[test]
    fn anything_else_is_refused() {
        for bad in [
            "",
            "blake3:",
            "sha256:00",
            "blake3:XYZ",
            &format!("blake3:{}", "A".repeat(64)),
            &format!("blake3:{}", "0".repeat(63)),
        ] {
            assert!(Digest::parse(bad).is_err(), "{bad}");
        }
        assert_eq!(file_stem("blake3:ab/../cd"), "abcd");
    }
}
