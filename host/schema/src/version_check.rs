//! `qpf schema check`'s rule, as a library: compare the schemas of two states of a project (the
//! current one and a revision) and say, per schema, whether its version bump matches its changes.

use serde::Serialize;

use crate::Schema;
use crate::diff::{self, Change};

/// What the check found for one schema.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Status {
    /// New since the revision: nothing to compare.
    New,
    /// Its version bump covers its changes.
    Ok,
    /// It changed without the version bump its changes need.
    NeedsBump,
    /// It was removed since the revision: its consumers break.
    Removed,
}

/// One schema's verdict.
#[derive(Debug, Clone, Serialize)]
pub struct SchemaCheck {
    /// `kind/name@version` now (or, when removed, before).
    pub schema: String,
    /// `kind/name@version` at the revision, when it existed there.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub was: Option<String>,
    /// The verdict.
    pub status: Status,
    /// Why it fails.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
    /// The bump its changes need (`major`, `minor`, `patch`, `none`), when compared.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub required_bump: Option<String>,
    /// Every change, when compared.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub changes: Vec<Change>,
}

impl SchemaCheck {
    /// Whether this schema fails the check.
    pub fn fails(&self) -> bool {
        matches!(self.status, Status::NeedsBump | Status::Removed)
    }
}

/// Checks every schema of `now` against its newest version in `before` (same kind and name), and
/// reports the schemas of `before` that are gone.
pub fn check<'a>(before: &[Schema], now: impl IntoIterator<Item = &'a Schema>) -> Vec<SchemaCheck> {
    let now: Vec<&Schema> = now.into_iter().collect();
    let same = |a: &Schema, b: &Schema| a.doc.kind == b.doc.kind && a.doc.metadata.name == b.doc.metadata.name;
    let mut results = Vec::new();
    for schema in &now {
        let old = before
            .iter()
            .filter(|o| same(o, schema))
            .max_by_key(|o| semver::Version::parse(&o.doc.metadata.version).ok());
        let Some(old) = old else {
            results.push(SchemaCheck {
                schema: schema.id(),
                was: None,
                status: Status::New,
                message: None,
                required_bump: None,
                changes: Vec::new(),
            });
            continue;
        };
        let changes = diff::diff(&old.to_json(), &schema.to_json());
        let verdict = match (
            semver::Version::parse(&old.doc.metadata.version),
            semver::Version::parse(&schema.doc.metadata.version),
        ) {
            (Ok(a), Ok(b)) => crate::bump::check_version(&a, &b, &changes).map_err(|e| e.to_string()),
            _ => Err("a version is not semver".to_owned()),
        };
        results.push(SchemaCheck {
            schema: schema.id(),
            was: Some(old.id()),
            status: if verdict.is_ok() { Status::Ok } else { Status::NeedsBump },
            message: verdict.err(),
            required_bump: Some(crate::bump::required(&changes).to_string()),
            changes,
        });
    }
    for old in before {
        if !now.iter().any(|s| same(s, old)) {
            results.push(SchemaCheck {
                schema: old.id(),
                was: Some(old.id()),
                status: Status::Removed,
                message: Some(format!(
                    "`{}` was removed; consumers of it break. Keep it, or accept the break explicitly",
                    old.id()
                )),
                required_bump: None,
                changes: Vec::new(),
            });
        }
    }
    results
}
