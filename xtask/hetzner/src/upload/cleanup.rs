//! `upload cleanup`: delete the temporary servers and SSH keys that killed
//! uploads left behind. Only what is older than an age (a running upload's
//! resources are younger), unless `all`; every error is reported and the
//! rest is still deleted. Snapshots are never touched.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde::Serialize;

use super::{TEMPORARY_LABEL, guard};
use crate::api::{ApiError, Client};

/// Which leftovers to delete.
#[derive(Debug, Clone)]
pub struct CleanupOptions {
    /// Only resources created longer ago than this.
    pub older_than: Duration,
    /// Every labelled resource, whatever its age (a running upload's too).
    pub all: bool,
}

impl Default for CleanupOptions {
    fn default() -> Self {
        CleanupOptions {
            older_than: Duration::from_secs(2 * 3600),
            all: false,
        }
    }
}

/// One resource `cleanup` looked at.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Resource {
    /// `server` or `ssh_key`.
    pub kind: &'static str,
    /// Its id.
    pub id: i64,
    /// Its name.
    pub name: String,
    /// Its `created` time as the API gave it.
    pub created: String,
}

/// What `cleanup` did.
#[derive(Debug, Default, Serialize)]
pub struct Cleaned {
    /// Deleted.
    pub deleted: Vec<Resource>,
    /// Kept: younger than the age (perhaps a running upload's).
    pub kept: Vec<Resource>,
    /// What failed, one message each (the rest was still done).
    pub errors: Vec<String>,
}

impl Cleaned {
    /// Pretty JSON (`upload cleanup -o json`).
    pub fn to_json(&self) -> String {
        // Plain strings and numbers: serializing cannot fail.
        serde_json::to_string_pretty(self).unwrap_or_default()
    }

    /// One line per deleted, kept and failed resource, for the terminal.
    pub fn summary(&self) -> String {
        let mut out = Vec::new();
        for r in &self.deleted {
            out.push(format!("deleted {} {} ({})", r.kind, r.id, r.name));
        }
        for r in &self.kept {
            out.push(format!(
                "kept {} {} ({}, created {}): younger than the age; --all deletes it",
                r.kind, r.id, r.name, r.created
            ));
        }
        for e in &self.errors {
            out.push(format!("failed: {e}"));
        }
        if out.is_empty() {
            out.push("nothing to delete".into());
        }
        out.join("\n")
    }
}

/// Whether a resource created at `created` is old enough to delete.
fn old_enough(created: &str, options: &CleanupOptions, now: i64) -> bool {
    if options.all {
        return true;
    }
    let age = i64::try_from(options.older_than.as_secs()).unwrap_or(i64::MAX);
    // An unreadable time: keep it (it might be a running upload's).
    image_spec::time::parse_rfc3339(created).is_some_and(|t| now.saturating_sub(t) >= age)
}

/// The servers, then the SSH keys, matching `selector`; a failed listing
/// is added to `errors`.
pub(crate) fn labelled(client: &Client, selector: &str, errors: &mut Vec<String>) -> Vec<Resource> {
    let mut found = Vec::new();
    match client.servers(selector) {
        Ok(servers) => found.extend(servers.into_iter().map(|s| Resource {
            kind: "server",
            id: s.id,
            name: s.name,
            created: s.created,
        })),
        Err(e) => errors.push(format!("listing the servers labelled {selector}: {e}")),
    }
    match client.ssh_keys(selector) {
        Ok(keys) => found.extend(keys.into_iter().map(|k| Resource {
            kind: "ssh_key",
            id: k.id,
            name: k.name,
            created: k.created,
        })),
        Err(e) => errors.push(format!("listing the SSH keys labelled {selector}: {e}")),
    }
    found
}

/// Delete one: a server waiting for its deletion; already gone counts as deleted.
pub(crate) fn delete(client: &Client, r: &Resource) -> Result<(), ApiError> {
    match r.kind {
        "server" => guard::delete_server(client, r.id),
        _ => match client.delete_ssh_key(r.id) {
            Err(e) if guard::gone(&e) => Ok(()),
            other => other,
        },
    }
}

/// Delete every server, then every SSH key, labelled [`TEMPORARY_LABEL`]
/// and old enough.
pub fn cleanup(client: &Client, options: &CleanupOptions) -> Cleaned {
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| i64::try_from(d.as_secs()).unwrap_or(i64::MAX))
        .unwrap_or(0);
    let mut done = Cleaned::default();
    let found = labelled(client, TEMPORARY_LABEL, &mut done.errors);
    for r in found {
        if !old_enough(&r.created, options, now) {
            done.kept.push(r);
            continue;
        }
        match delete(client, &r) {
            Ok(()) => done.deleted.push(r),
            Err(e) => done
                .errors
                .push(format!("deleting {} {} ({}): {e}", r.kind, r.id, r.name)),
        }
    }
    done
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn age() {
        let o = CleanupOptions::default();
        let now = 1_800_000_000;
        let at = |secs_ago: i64| image_spec::time::rfc3339(now - secs_ago);
        assert!(old_enough(&at(3 * 3600), &o, now));
        assert!(!old_enough(&at(600), &o, now));
        assert!(!old_enough("garbage", &o, now));
        let all = CleanupOptions {
            all: true,
            ..CleanupOptions::default()
        };
        assert!(old_enough(&at(1), &all, now));
    }
}
