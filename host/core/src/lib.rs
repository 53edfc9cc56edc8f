//! `qpf-core`: the small, boring bottom of QPF that every other crate may use and that uses none
//! of them: the one digest format, bounded reads of regular files (so that no FIFO, device or
//! oversized file reaches a parser), and terminal-safe text for whatever plugins and projects
//! say.

pub mod canonical;
pub mod digest;
pub mod fs;
pub mod key_encoding;
pub mod output_path;
pub mod text;

pub use digest::Digest;

/// `blake3:<hex>` of some bytes, as text: the one digest format of every QPF record.
pub fn digest_of(bytes: &[u8]) -> String {
    Digest::of(bytes).to_string()
}
