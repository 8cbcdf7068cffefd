//! The `fetch` flow: every input of a lock that matches its spec into the
//! store, verified, and a summary for people and for `fetch --json`.

use std::path::{Path, PathBuf};

use anyhow::{Result, bail};
use serde::Serialize;

use crate::locking::Project;
use crate::sources::{SourceFlags, archives, locked_inputs, tailscale_input};
use crate::store::{Fetcher, Store};

/// What `fetch` did (docs/cli.md has the JSON shape).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct FetchSummary {
    /// The store filled.
    pub store: PathBuf,
    /// Fixed-output inputs of the lock (Debian packages, Node and npm, the
    /// Tailscale tarball).
    pub inputs: usize,
    /// Already in the store and verified.
    pub present: usize,
    /// Downloaded now.
    pub downloaded: usize,
    /// Copied from `--input-dir`.
    pub seeded: usize,
    /// Bytes downloaded.
    pub bytes: u64,
    /// OpenClaw's npm tree: packages with a tarball in the lockfile.
    pub npm_packages: u64,
    /// Whether the npm cache already held the whole tree (nothing downloaded).
    pub npm_already_complete: bool,
    /// The Go modules of Tailscale's source build, one line (`None`: the lock
    /// builds no source).
    pub tailscale_modules: Option<String>,
    /// Inputs that could not be obtained.
    pub missing: Vec<Missing>,
}

/// An input `fetch` could not obtain.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Missing {
    /// Its file name in the store.
    pub name: String,
    /// Where it was looked for (`None`: only `--input-dir` can supply it).
    pub url: Option<String>,
    /// Its locked sha256.
    pub sha256: String,
    /// Why it is missing.
    pub reason: String,
    /// Whether the build cannot go on without it (false only for the
    /// Tailscale tarball: the image is then built without Tailscale).
    pub fatal: bool,
}

impl FetchSummary {
    /// The inputs whose absence fails `fetch`.
    pub fn fatal(&self) -> impl Iterator<Item = &Missing> {
        self.missing.iter().filter(|m| m.fatal)
    }

    /// The summary as pretty JSON.
    pub fn to_json(&self) -> String {
        // Paths, strings and numbers: serializing cannot fail.
        serde_json::to_string_pretty(self).unwrap_or_default()
    }
}

impl std::fmt::Display for Missing {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "`{}` from {} (sha256 {}): {}",
            self.name,
            self.url.as_deref().unwrap_or("(no URL)"),
            self.sha256,
            self.reason
        )
    }
}

/// Fetches every input of `project`'s lock into `store`; fails when the
/// lock does not match the spec. Missing inputs are in the summary, not
/// an error: the caller decides (see [`FetchSummary::fatal`]).
pub fn fetch(
    project: &Project,
    store: &Store,
    flags: &SourceFlags,
    input_dir: Option<&Path>,
) -> Result<FetchSummary> {
    let spec = project.read_spec()?;
    let lock = project.require_lock()?;
    let diffs = project.check(&spec, &lock)?;
    if !diffs.is_empty() {
        bail!(
            "{} does not match {}: {}; run `cargo xtask lock`",
            project.lock.display(),
            project.spec.display(),
            diffs.join("; ")
        );
    }
    let archives = archives(&spec, flags)?;
    let registry = crate::npm::registry(flags.npm_registry.as_deref())?;
    let inputs = locked_inputs(&lock, &archives, &registry);
    eprintln!(
        "fetch: {} inputs into {}",
        inputs.len(),
        store.root().display()
    );
    let report = Fetcher::new(store, input_dir)?.fetch_all(&inputs)?;
    let runtime = crate::npm::Runtime::new(store, &lock.node, &lock.openclaw.npm)?;
    let tree = crate::npm::fetch_tree(&registry, &runtime, &project.npm_lock, store)?;
    let tailscale_modules = crate::tailscale::source::fetch_modules(store, &lock)?;
    let tailscale = tailscale_input(&lock);
    let missing = report
        .missing
        .iter()
        .map(|(input, why)| Missing {
            name: input.name.clone(),
            url: input.url.clone(),
            sha256: input.sha256.clone(),
            reason: why.clone(),
            fatal: tailscale.as_ref().is_none_or(|t| t.name != input.name),
        })
        .collect();
    Ok(FetchSummary {
        store: store.root().to_path_buf(),
        inputs: inputs.len(),
        present: report.present,
        downloaded: report.downloaded,
        seeded: report.seeded,
        bytes: report.bytes,
        npm_packages: tree.packages,
        npm_already_complete: tree.already_complete,
        tailscale_modules,
        missing,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn json_shape() {
        let summary = FetchSummary {
            store: "/root/.cache/openclaw-image/store".into(),
            inputs: 3,
            present: 1,
            downloaded: 1,
            seeded: 0,
            bytes: 1_048_576,
            npm_packages: 631,
            npm_already_complete: false,
            tailscale_modules: Some("212 modules present".into()),
            missing: vec![Missing {
                name: "tailscale_1.102.4_amd64.tgz".into(),
                url: Some("https://pkgs.example/tailscale_1.102.4_amd64.tgz".into()),
                sha256: "ab".repeat(32),
                reason: "connection refused".into(),
                fatal: false,
            }],
        };
        insta::assert_snapshot!(summary.to_json());
        assert_eq!(summary.fatal().count(), 0);
    }
}
