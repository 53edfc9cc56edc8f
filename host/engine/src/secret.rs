//! The user's secret: 32 random bytes kept outside every project (by default
//! `$XDG_CONFIG_HOME/qpf/secret`, else `~/.config/qpf/secret`; `QPF_SECRET_FILE` overrides), created
//! on first use with mode 0600. It keys the MACs of the compiled-plugin cache (native code the host
//! maps and runs) and of invocation-cache manifests, so that nothing a project ships or a plugin
//! writes can be loaded back as if this user's `qpf` had made it.
//!
//! Without a home folder the secret is made up for the process alone: caches then never verify
//! across runs (every plugin is recompiled), which is slow but safe.

use std::io::{Read, Write};
use std::path::PathBuf;

/// Where the secret lives, if there is a place for it.
pub fn secret_path() -> Option<PathBuf> {
    if let Some(path) = std::env::var_os("QPF_SECRET_FILE") {
        return Some(PathBuf::from(path));
    }
    let config = std::env::var_os("XDG_CONFIG_HOME")
        .map(PathBuf::from)
        .filter(|p| p.is_absolute())
        .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".config")))?;
    Some(config.join("qpf").join("secret"))
}

/// 32 bytes from the operating system's random source (`/dev/urandom`).
///
/// # Errors
/// When the source cannot be read.
pub fn random_bytes() -> std::io::Result<[u8; 32]> {
    let mut bytes = [0u8; 32];
    std::fs::File::open("/dev/urandom")?.read_exact(&mut bytes)?;
    Ok(bytes)
}

/// The user's secret, created if needed.
///
/// # Errors
/// Never fails: problems are logged and an ephemeral secret is returned instead.
pub fn user_secret() -> [u8; 32] {
    match secret_path().map(|p| load_or_create(&p)) {
        Some(Ok(secret)) => secret,
        Some(Err(e)) => {
            tracing::warn!(
                "cannot read or create the user's cache secret ({e}); caches will not be reused across runs"
            );
            ephemeral()
        }
        None => {
            tracing::warn!("no home folder for the user's cache secret; caches will not be reused across runs");
            ephemeral()
        }
    }
}

fn ephemeral() -> [u8; 32] {
    random_bytes().unwrap_or_else(|_| {
        // No /dev/urandom either: a per-process value that no file on disk can predict in advance.
        let nanos =
            std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_nanos()).unwrap_or(0);
        *blake3::hash(format!("{}-{nanos}-{:p}", std::process::id(), &nanos).as_bytes()).as_bytes()
    })
}

/// The secret in the file at `path`, created (0600, published atomically) when absent: what the
/// user's secret uses, and what `qpf serve` uses for its own in its state folder.
///
/// # Errors
/// An unreadable file or one that does not hold 64 hex digits; no randomness to create one.
pub fn load_or_create(path: &std::path::Path) -> std::io::Result<[u8; 32]> {
    match qpf_core::fs::read_regular(path, 1024) {
        Ok(bytes) => {
            let text = String::from_utf8_lossy(&bytes);
            // 64 hex digits, the text form of 32 bytes (blake3's, so no hand-written codec).
            blake3::Hash::from_hex(text.trim())
                .map(|h| *h.as_bytes())
                .map_err(|_| std::io::Error::other(format!("`{}` does not hold 64 hex digits", path.display())))
        }
        Err(qpf_core::fs::ReadError::Io(e)) if e.kind() == std::io::ErrorKind::NotFound => create(path),
        Err(e) => Err(std::io::Error::other(format!("`{}`: {e}", path.display()))),
    }
}

/// Creates the secret atomically: written whole to a private temporary file, then published with a
/// hard link, which fails if another `qpf` published first (then theirs is used). No reader ever
/// sees a half-written secret.
fn create(path: &std::path::Path) -> std::io::Result<[u8; 32]> {
    let secret = random_bytes()?;
    let dir = path.parent().unwrap_or(std::path::Path::new("."));
    std::fs::create_dir_all(dir)?;
    let mut tmp = tempfile::Builder::new().prefix(".secret-").tempfile_in(dir)?;
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        tmp.as_file().set_permissions(std::fs::Permissions::from_mode(0o600))?;
    }
    tmp.write_all(format!("{}\n", blake3::Hash::from_bytes(secret).to_hex()).as_bytes())?;
    tmp.as_file().sync_all()?;
    match std::fs::hard_link(tmp.path(), path) {
        Ok(()) => Ok(secret),
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => load_or_create(path),
        Err(e) => Err(e),
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn racing_processes_agree_on_one_secret() {
        let tmp = tempfile::tempdir().unwrap();
        let path = tmp.path().join("qpf/secret");
        let secrets: Vec<[u8; 32]> = std::thread::scope(|s| {
            let handles: Vec<_> = (0..8).map(|_| s.spawn(|| load_or_create(&path).unwrap())).collect();
            handles.into_iter().map(|h| h.join().unwrap()).collect()
        });
        assert!(secrets.windows(2).all(|w| w[0] == w[1]), "every racer reads the one published secret");
    }

    #[test]
    fn the_secret_is_created_once_then_reused() {
        let tmp = tempfile::tempdir().unwrap();
        let path = tmp.path().join("qpf/secret");
        let first = load_or_create(&path).unwrap();
        assert_eq!(load_or_create(&path).unwrap(), first);
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            assert_eq!(std::fs::metadata(&path).unwrap().permissions().mode() & 0o777, 0o600);
        }
        std::fs::write(&path, "not hex").unwrap();
        assert!(load_or_create(&path).is_err());
    }
}
