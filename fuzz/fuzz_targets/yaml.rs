//! `qpf_schema::yaml::{parse_node, from_str}`: any UTF-8 text gives `Ok` or `Err`, never a panic,
//! and quickly (run with `-timeout=10 -rss_limit_mb=2048`).
#![no_main]

use std::path::Path;

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else { return };
    let path = Path::new("fuzz.yaml");
    let _ = qpf_schema::yaml::parse_node(path, text);
    let _ = qpf_schema::yaml::from_str::<serde_json::Value>(path, text);
});
