//! The commit phase's pruning: files the previous run wrote that nobody produces any more.

use crate::lock::{Lock, LockedFile};
use crate::writer::OutputRoot;

/// Files the previous lock lists that no invocation of this run produces (an entry or schema
/// removed, a config that drops a file): each is deleted when it still holds the bytes QPF wrote,
/// kept in the lock as an orphan (with a warning) when someone edited it, and forgotten when it is
/// already gone. A file QPF did not write, or a scaffold (its user's), is never deleted: the lock
/// forgets it. Returns the removed paths.
pub(crate) fn prune(previous: &Lock, lock: &mut Lock, root: &OutputRoot, warnings: &mut Vec<String>) -> Vec<String> {
    let mut removed = Vec::new();
    for (rel, locked) in &previous.files {
        if lock.files.contains_key(rel) || locked.user_owned {
            continue;
        }
        match root.digest_of(rel) {
            Some(on_disk) if on_disk == locked.digest => match root.remove(rel) {
                Ok(()) => removed.push(rel.clone()),
                Err(e) => {
                    warnings.push(format!("`{rel}` is no longer produced, but it cannot be removed: {e}"));
                    lock.files.insert(rel.clone(), LockedFile { orphan: true, ..locked.clone() });
                }
            },
            Some(_) => {
                warnings.push(format!(
                    "`{rel}` is no longer produced by entry `{}` for `{}`, but it was edited by hand: kept (delete it yourself once its changes are safe)",
                    locked.entry, locked.schema
                ));
                lock.files.insert(rel.clone(), LockedFile { orphan: true, ..locked.clone() });
            }
            None => {}
        }
    }
    removed
}
