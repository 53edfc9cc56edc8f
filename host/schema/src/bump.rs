//! The version rules of a schema change: the bump each [`Change`] class calls for, the bump a
//! version change makes, and the check that the second is at least the first.

use std::cmp::Ordering;
use std::fmt;

use semver::Version;
use serde::Serialize;

use crate::diff::{Change, Class};

/// Size of a version increase, ordered from no increase to a major one.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Bump {
    /// No increase (equal or lower version, or no change needing one).
    None,
    /// Patch component increased (or only the pre-release part moved up).
    Patch,
    /// Minor component increased.
    Minor,
    /// Major component increased.
    Major,
}

impl fmt::Display for Bump {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Bump::None => "no",
            Bump::Patch => "patch",
            Bump::Minor => "minor",
            Bump::Major => "major",
        })
    }
}

/// The smallest bump the changes call for under `>= 1.0.0` rules: breaking → major, non-breaking → minor,
/// cosmetic → patch, no changes → none.
pub fn required(changes: &[Change]) -> Bump {
    changes.iter().map(|c| class_bump(c.class)).max().unwrap_or(Bump::None)
}

/// The bump actually made from `old` to `new`: the highest component that increased, [`Bump::Patch`] when
/// only the pre-release part moved up, [`Bump::None`] when `new` is equal to or lower than `old`.
pub fn actual(old: &Version, new: &Version) -> Bump {
    if new.cmp_precedence(old) != Ordering::Greater {
        return Bump::None;
    }
    if new.major != old.major {
        Bump::Major
    } else if new.minor != old.minor {
        Bump::Minor
    } else {
        Bump::Patch
    }
}

/// Checks a version change against the changes. Rules: for versions >= 1.0.0 a breaking change needs a
/// major bump, a non-breaking one at least a minor bump, a cosmetic one at least a patch bump; for 0.y.z
/// versions (semver's "anything may change") a breaking change needs at least a minor bump and anything
/// else at least a patch bump. Any change with no version increase fails. A version that goes down fails.
///
/// The error message says which bump is needed, suggests the smallest valid version and names the first
/// breaking change (or the first change of the class that drives the requirement).
///
/// # Errors
/// [`VersionError`] when the version goes down or does not go up enough.
pub fn check_version(old: &Version, new: &Version, changes: &[Change]) -> Result<(), Box<VersionError>> {
    if new.cmp_precedence(old) == Ordering::Less {
        return Err(Box::new(VersionError::Lower { old: old.clone(), new: new.clone() }));
    }
    let required = required(changes);
    let needed = match (old.major, required) {
        (0, Bump::Major) => Bump::Minor,
        (0, Bump::Minor) => Bump::Patch,
        (_, bump) => bump,
    };
    let actual = actual(old, new);
    if actual >= needed {
        return Ok(());
    }
    let suggestion = match needed {
        Bump::Major => Version::new(old.major + 1, 0, 0),
        Bump::Minor => Version::new(old.major, old.minor + 1, 0),
        _ => Version::new(old.major, old.minor, old.patch + 1),
    };
    let first = changes.iter().find(|c| class_bump(c.class) == required).cloned();
    Err(Box::new(VersionError::TooSmall {
        old: old.clone(),
        new: new.clone(),
        made: actual,
        needed,
        suggestion,
        first,
    }))
}

/// Why a version change does not fit the changes.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum VersionError {
    /// The new version is lower than the old one.
    #[error("version `{new}` is lower than the previous version `{old}`")]
    Lower {
        /// The previous version.
        old: Version,
        /// The new version.
        new: Version,
    },
    /// The version went up by less than the changes need.
    #[error(
        "version `{old}` -> `{new}` is {}, but the changes need a {needed} bump (at least `{suggestion}`){}",
        made_text(*.made),
        first.as_ref().map_or(String::new(), |c| format!("; first {} change: `{}` at `{}`: {}", c.class, c.reason, c.pointer, c.message))
    )]
    TooSmall {
        /// The previous version.
        old: Version,
        /// The new version.
        new: Version,
        /// The bump made.
        made: Bump,
        /// The bump the changes need.
        needed: Bump,
        /// The smallest version that would do.
        suggestion: Version,
        /// The first change of the class that drives the requirement.
        first: Option<Change>,
    },
}

fn made_text(made: Bump) -> String {
    match made {
        Bump::None => "no version increase".to_owned(),
        bump => format!("a {bump} bump"),
    }
}

fn class_bump(class: Class) -> Bump {
    match class {
        Class::Breaking => Bump::Major,
        Class::NonBreaking => Bump::Minor,
        Class::Cosmetic => Bump::Patch,
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    const B: Class = Class::Breaking;
    const N: Class = Class::NonBreaking;
    const C: Class = Class::Cosmetic;

    fn v(s: &str) -> Version {
        Version::parse(s).unwrap()
    }

    fn change(class: Class, reason: &'static str) -> Change {
        Change { class, pointer: "/spec/x".into(), reason, message: "msg".into() }
    }

    #[test]
    fn bumps() {
        assert!(Bump::None < Bump::Patch && Bump::Patch < Bump::Minor && Bump::Minor < Bump::Major);
        assert_eq!(required(&[]), Bump::None);
        assert_eq!(required(&[change(C, "reordered")]), Bump::Patch);
        assert_eq!(required(&[change(C, "reordered"), change(N, "added")]), Bump::Minor);
        assert_eq!(required(&[change(N, "added"), change(B, "removed")]), Bump::Major);
        assert_eq!(actual(&v("1.2.3"), &v("2.0.0")), Bump::Major);
        assert_eq!(actual(&v("1.2.3"), &v("1.3.0")), Bump::Minor);
        assert_eq!(actual(&v("1.2.3"), &v("1.2.4")), Bump::Patch);
        assert_eq!(actual(&v("1.2.3-alpha"), &v("1.2.3")), Bump::Patch);
        assert_eq!(actual(&v("1.2.3"), &v("1.2.3")), Bump::None);
        assert_eq!(actual(&v("1.2.3"), &v("1.2.3+build")), Bump::None);
        assert_eq!(actual(&v("1.2.3"), &v("1.1.9")), Bump::None);
    }

    #[test]
    fn check_version_stable_rules() {
        let breaking = [change(C, "description-changed"), change(B, "field-removed")];
        assert_eq!(check_version(&v("1.2.0"), &v("2.0.0"), &breaking), Ok(()));
        let err = check_version(&v("1.2.0"), &v("1.3.0"), &breaking).unwrap_err();
        let err = err.to_string();
        assert!(
            err.contains("need a major bump") && err.contains("`2.0.0`") && err.contains("`field-removed`"),
            "{err}"
        );
        let additive = [change(N, "field-added")];
        assert_eq!(check_version(&v("1.2.0"), &v("1.3.0"), &additive), Ok(()));
        assert_eq!(check_version(&v("1.2.0"), &v("2.0.0"), &additive), Ok(()));
        let err = check_version(&v("1.2.0"), &v("1.2.1"), &additive).unwrap_err().to_string();
        assert!(err.contains("is a patch bump") && err.contains("need a minor bump"), "{err}");
        let cosmetic = [change(C, "reordered")];
        assert_eq!(check_version(&v("1.2.0"), &v("1.2.1"), &cosmetic), Ok(()));
        let err = check_version(&v("1.2.0"), &v("1.2.0"), &cosmetic).unwrap_err().to_string();
        assert!(err.contains("no version increase") && err.contains("need a patch bump"), "{err}");
        assert_eq!(check_version(&v("1.2.0"), &v("1.2.0"), &[]), Ok(()));
    }

    #[test]
    fn check_version_zero_major_rules() {
        let breaking = [change(B, "type-removed")];
        assert_eq!(check_version(&v("0.3.1"), &v("0.4.0"), &breaking), Ok(()));
        let err = check_version(&v("0.3.1"), &v("0.3.2"), &breaking).unwrap_err();
        let err = err.to_string();
        assert!(
            err.contains("need a minor bump") && err.contains("`0.4.0`") && err.contains("`type-removed`"),
            "{err}"
        );
        assert_eq!(check_version(&v("0.3.1"), &v("0.3.2"), &[change(N, "type-added")]), Ok(()));
        assert_eq!(check_version(&v("0.3.1"), &v("0.3.2"), &[change(C, "reordered")]), Ok(()));
        assert!(check_version(&v("0.3.1"), &v("0.3.1"), &[change(C, "reordered")]).is_err());
    }

    #[test]
    fn check_version_rejects_going_down() {
        let err = check_version(&v("1.2.0"), &v("1.1.0"), &[]).unwrap_err().to_string();
        assert_eq!(err, "version `1.1.0` is lower than the previous version `1.2.0`");
        assert!(check_version(&v("1.0.0"), &v("1.0.0-rc.1"), &[change(B, "removed")]).is_err());
    }
}
