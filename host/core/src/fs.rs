//! Reading the files a project names (schemas, imports, kinds, the map, plugins): only regular
//! files, only up to a budget. A FIFO, a socket or a device is refused without blocking (it is
//! opened non-blocking and checked on the open handle, so no race can swap it in), and a file
//! larger than its budget is refused before it is read.

use std::io::Read;
use std::path::Path;

/// Why a file could not be read.
#[derive(Debug, thiserror::Error)]
pub enum ReadError {
    /// An I/O error.
    #[error("{0}")]
    Io(#[from] std::io::Error),
    /// Not a regular file (a FIFO, socket, device or folder).
    #[error("it is {0}, not a regular file")]
    NotRegular(&'static str),
    /// Larger than the budget.
    #[error("it is {size} bytes, over the limit of {limit} bytes")]
    TooLarge {
        /// Its size.
        size: u64,
        /// The budget.
        limit: u64,
    },
}

/// What kind of file a metadata describes, for messages.
pub fn describe(file_type: std::fs::FileType) -> &'static str {
    #[cfg(unix)]
    {
        use std::os::unix::fs::FileTypeExt;
        if file_type.is_fifo() {
            return "a FIFO";
        }
        if file_type.is_socket() {
            return "a socket";
        }
        if file_type.is_block_device() || file_type.is_char_device() {
            return "a device";
        }
    }
    if file_type.is_dir() {
        "a folder"
    } else if file_type.is_symlink() {
        "a symbolic link"
    } else if file_type.is_file() {
        "a regular file"
    } else {
        "a special file"
    }
}

/// Reads a regular file (following symbolic links) of at most `limit` bytes.
///
/// # Errors
/// [`ReadError::NotRegular`] for anything but a regular file, [`ReadError::TooLarge`] past
/// `limit`, and I/O errors.
pub fn read_regular(path: &Path, limit: u64) -> Result<Vec<u8>, ReadError> {
    let mut options = std::fs::OpenOptions::new();
    options.read(true);
    #[cfg(target_os = "linux")]
    {
        use std::os::unix::fs::OpenOptionsExt;
        // O_NONBLOCK: opening a FIFO must not wait for a writer. Regular files ignore the flag.
        const O_NONBLOCK: i32 = 0o4000;
        options.custom_flags(O_NONBLOCK);
    }
    #[cfg(all(unix, not(target_os = "linux")))]
    {
        // Elsewhere, look before opening (a narrow race, but no FIFO is opened on purpose).
        let meta = std::fs::metadata(path)?;
        if !meta.is_file() {
            return Err(ReadError::NotRegular(describe(meta.file_type())));
        }
    }
    let file = options.open(path)?;
    let meta = file.metadata()?;
    if !meta.is_file() {
        return Err(ReadError::NotRegular(describe(meta.file_type())));
    }
    if meta.len() > limit {
        return Err(ReadError::TooLarge { size: meta.len(), limit });
    }
    let mut bytes = Vec::with_capacity(usize::try_from(meta.len()).unwrap_or(0));
    // A file that grows while we read is still cut at the budget.
    file.take(limit.saturating_add(1)).read_to_end(&mut bytes)?;
    if bytes.len() as u64 > limit {
        return Err(ReadError::TooLarge { size: bytes.len() as u64, limit });
    }
    Ok(bytes)
}

/// Writes a file atomically: the bytes go to a temporary sibling, which is synced and renamed over
/// `path`, so a reader or a crash sees the old bytes or the new ones, never a mix. The one atomic
/// writer of QPF's own state (the lock, migrated schemas, compiled plugins; the caches use
/// [`write_atomic_unsynced`]).
///
/// # Errors
/// I/O errors.
pub fn write_atomic(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    write_atomic_with(path, bytes, true)
}

/// [`write_atomic`] without the `fsync`: for data that is verified when read (the caches check
/// every blob's digest and every manifest's MAC), where a write lost to a power failure is just a
/// miss. A crash of the process still leaves the whole file or none.
///
/// # Errors
/// As [`write_atomic`].
pub fn write_atomic_unsynced(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    write_atomic_with(path, bytes, false)
}

fn write_atomic_with(path: &Path, bytes: &[u8], sync: bool) -> std::io::Result<()> {
    use std::io::Write;
    let dir = match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p,
        _ => Path::new("."),
    };
    std::fs::create_dir_all(dir)?;
    let mut tmp = tempfile::NamedTempFile::new_in(dir)?;
    tmp.write_all(bytes)?;
    if sync {
        tmp.as_file().sync_all()?;
    }
    tmp.persist(path).map_err(|e| e.error)?;
    Ok(())
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn regular_files_within_budget_are_read() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().to_owned();
        let path = dir.join("a.yaml");
        std::fs::write(&path, b"abc").unwrap();
        assert_eq!(read_regular(&path, 3).unwrap(), b"abc");
        assert!(matches!(read_regular(&path, 2), Err(ReadError::TooLarge { size: 3, limit: 2 })));
        assert!(matches!(read_regular(&dir, 10), Err(ReadError::NotRegular("a folder"))));
    }

    #[cfg(target_os = "linux")]
    #[test]
    fn a_fifo_is_refused_without_blocking() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path();
        let fifo = dir.join("pipe.yaml");
        let status = std::process::Command::new("mkfifo").arg(&fifo).status().unwrap();
        assert!(status.success());
        let err = read_regular(&fifo, 1 << 20).unwrap_err();
        assert_eq!(err.to_string(), "it is a FIFO, not a regular file");
    }
}

/// What identifies a file's bytes without reading them, as git's index does: device, inode,
/// size, and the modification and change times to the nanosecond. Every write changes the
/// change time, which user space cannot set back, so a file whose `FileStat` is unchanged holds
/// the bytes it held when it was recorded, unless it was recorded while "racy" (see
/// [`FileStat::settled`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct FileStat {
    /// Device.
    pub dev: u64,
    /// Inode.
    pub ino: u64,
    /// Size in bytes.
    pub size: u64,
    /// Modification time, nanoseconds since the epoch.
    pub mtime_ns: i128,
    /// Change time (of the inode), nanoseconds since the epoch.
    pub ctime_ns: i128,
}

/// How long after its last modification a file's times are trusted to identify its bytes (a
/// file system with coarse timestamps could give a second write in the same tick the same times).
const SETTLE_NS: i128 = 2_000_000_000;

impl FileStat {
    /// The stat of a regular file at `path` (following links); `None` for anything else, or on a
    /// system without these fields (not Unix), where nothing may be trusted without reading.
    pub fn of(path: &Path) -> Option<FileStat> {
        let meta = std::fs::metadata(path).ok().filter(std::fs::Metadata::is_file)?;
        Self::from_metadata(&meta)
    }

    /// The stat of a folder at `path` (following links); `None` for anything else, or not on Unix.
    pub fn of_dir(path: &Path) -> Option<FileStat> {
        let meta = std::fs::metadata(path).ok().filter(std::fs::Metadata::is_dir)?;
        Self::from_metadata(&meta)
    }

    #[cfg(unix)]
    fn from_metadata(meta: &std::fs::Metadata) -> Option<FileStat> {
        use std::os::unix::fs::MetadataExt;
        Some(FileStat::from_unix(
            meta.dev(),
            meta.ino(),
            meta.size(),
            (meta.mtime(), meta.mtime_nsec()),
            (meta.ctime(), meta.ctime_nsec()),
        ))
    }

    /// A stat from Unix metadata fields (as `std` and cap-std expose them): device, inode, size,
    /// and the modification and change times as (seconds, nanoseconds).
    pub fn from_unix(dev: u64, ino: u64, size: u64, mtime: (i64, i64), ctime: (i64, i64)) -> FileStat {
        let ns = |(s, n): (i64, i64)| i128::from(s) * 1_000_000_000 + i128::from(n);
        FileStat { dev, ino, size, mtime_ns: ns(mtime), ctime_ns: ns(ctime) }
    }

    #[cfg(not(unix))]
    fn from_metadata(_meta: &std::fs::Metadata) -> Option<FileStat> {
        None
    }

    /// Whether the file was last modified long enough ago (2 s) for its times to identify its
    /// bytes; a stat recorded earlier than that is not to be trusted later.
    pub fn settled(&self) -> bool {
        self.settled_before(std::time::SystemTime::now())
    }

    /// Whether the file was last modified (or its inode changed) more than 2 s before `time`: a
    /// stat taken after a file was read that is settled before the read began proves that the
    /// bytes read are the ones this stat identifies.
    pub fn settled_before(&self, time: std::time::SystemTime) -> bool {
        let at =
            time.duration_since(std::time::UNIX_EPOCH).map_or(0, |d| i128::try_from(d.as_nanos()).unwrap_or(i128::MAX));
        at - self.mtime_ns.max(self.ctime_ns) > SETTLE_NS
    }

    /// The fields as bytes, for a MAC.
    pub fn to_bytes(&self) -> [u8; 56] {
        let mut out = [0u8; 56];
        out[..8].copy_from_slice(&self.dev.to_le_bytes());
        out[8..16].copy_from_slice(&self.ino.to_le_bytes());
        out[16..24].copy_from_slice(&self.size.to_le_bytes());
        out[24..40].copy_from_slice(&self.mtime_ns.to_le_bytes());
        out[40..56].copy_from_slice(&self.ctime_ns.to_le_bytes());
        out
    }
}
