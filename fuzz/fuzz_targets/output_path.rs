//! `qpf_core::output_path::{check, check_set}`: an accepted path is a plain, printable, relative,
//! normalised path that stays under the root it is joined to; an accepted set forms a tree.
#![no_main]

use std::path::{Component, Path, PathBuf};

use libfuzzer_sys::fuzz_target;
use qpf_core::output_path::{MAX_SEGMENT_BYTES, PathTree, check, check_set};

/// The documented rules, written independently of `check`.
fn acceptable(path: &str, max_len: u32) -> bool {
    !path.is_empty()
        && path.len() <= max_len as usize
        && !path.starts_with('/')
        && !path.chars().any(|c| c == '\\' || c == ':' || c == '\0' || qpf_core::text::is_unsafe_char(c))
        && path.split('/').all(|s| !s.is_empty() && s != "." && s != ".." && s.len() <= MAX_SEGMENT_BYTES)
}

/// `root.join(path)` normalised lexically (`..` pops, `.` is dropped, a root restarts).
fn normalise(root: &Path, path: &str) -> PathBuf {
    let mut out = PathBuf::new();
    for component in root.join(path).components() {
        match component {
            Component::ParentDir => {
                out.pop();
            }
            Component::CurDir => {}
            other => out.push(other.as_os_str()),
        }
    }
    out
}

fn assert_accepted(path: &str, max_len: u32) {
    assert!(!path.is_empty());
    assert!(path.len() <= max_len as usize, "{path:?} longer than {max_len}");
    assert!(!path.starts_with('/'), "{path:?} absolute");
    for c in path.chars() {
        assert!(c != '\\' && c != ':' && c != '\0', "{path:?} has {c:?}");
        assert!(!qpf_core::text::is_unsafe_char(c), "{path:?} has unsafe {c:?}");
    }
    for segment in path.split('/') {
        assert!(!segment.is_empty() && segment != "." && segment != "..", "{path:?} has segment {segment:?}");
        assert!(segment.len() <= MAX_SEGMENT_BYTES, "{path:?} has a long segment");
    }
    let root = Path::new("/srv/out");
    let joined = normalise(root, path);
    assert!(joined.starts_with(root) && joined != root, "{path:?} leaves the root: {joined:?}");
}

/// Whether `paths` can be written together, by pairwise comparison of lowercased paths.
fn set_clashes(paths: &[&str]) -> bool {
    let lower: Vec<String> = paths.iter().map(|p| p.to_lowercase()).collect();
    for i in 0..paths.len() {
        for j in 0..paths.len() {
            if i == j {
                continue;
            }
            if paths[i] == paths[j] || lower[i] == lower[j] {
                return true;
            }
            if lower[j].len() > lower[i].len()
                && lower[j].starts_with(lower[i].as_str())
                && lower[j].as_bytes()[lower[i].len()] == b'/'
            {
                return true;
            }
        }
    }
    false
}

fuzz_target!(|data: &[u8]| {
    let Some((&first, rest)) = data.split_first() else { return };
    // Low 7 bits: the limit (small ones make `TooLong` reachable); high bit: one path or several.
    let max_len = match first & 0x7f {
        0x7f => 4096,
        n => u32::from(n) * 4,
    };
    let text = String::from_utf8_lossy(rest);

    if first & 0x80 == 0 {
        let result = check(&text, max_len);
        assert_eq!(result.is_ok(), acceptable(&text, max_len), "{text:?} (limit {max_len}): {result:?}");
        if let Ok(p) = result {
            assert_eq!(p, &*text);
            assert_accepted(p, max_len);
        }
        return;
    }

    let parts: Vec<&str> = text.split('\n').collect();
    let mut accepted = Vec::new();
    for part in &parts {
        let result = check(part, max_len);
        assert_eq!(result.is_ok(), acceptable(part, max_len), "{part:?} (limit {max_len}): {result:?}");
        if let Ok(p) = result {
            assert_accepted(p, max_len);
            accepted.push(p);
        }
    }
    // Unchecked paths must not make it panic either.
    let _ = check_set(parts.iter().copied());

    let result = check_set(accepted.iter().copied());
    assert_eq!(result.is_err(), set_clashes(&accepted), "{accepted:?}: {result:?}");

    // A tree filled one path at a time finds a clash exactly when the set does.
    let mut tree = PathTree::default();
    let mut clash = false;
    for (i, p) in accepted.iter().enumerate() {
        if tree.conflict(p).is_some() {
            clash = true;
            break;
        }
        tree.insert(p, i);
        assert!(tree.contains(p));
    }
    assert_eq!(clash, result.is_err(), "{accepted:?}: {result:?}");
});
