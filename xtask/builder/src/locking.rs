//! `lock`: resolve the spec into `image.lock` (+ the npm lockfile beside it).
//!
//! Same spec and same mirror/registry state give the same bytes. Without
//! `update`, pins of an existing lock are kept wherever the spec did not
//! change them; a lock that already matches the spec is left untouched.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use image_spec::lock::{DiskIds, FORMAT, GoModule, Inputs, Lock, TailscaleLock};
use image_spec::spec::{TAILSCALE_MODULE, TailscaleSource};
use image_spec::{Spec, SpecError};

use crate::debian;
use crate::fsutil::write_atomic;
use crate::sources::{SourceFlags, archives};
use crate::store::Store;
use hostutil::sha256_file;

/// File names beside the spec.
pub const LOCK_FILE: &str = "image.lock";
/// The npm lockfile of the OpenClaw tree.
pub const NPM_LOCK_FILE: &str = "image.npm-lock.json";

/// Paths of the project's spec and lock files.
#[derive(Debug, Clone)]
pub struct Project {
    /// `image.toml`
    pub spec: PathBuf,
    /// `image.lock`, beside the spec.
    pub lock: PathBuf,
    /// `image.npm-lock.json`, beside the spec.
    pub npm_lock: PathBuf,
}

impl Project {
    /// The files for the spec at `spec`.
    pub fn new(spec: &Path) -> Project {
        let dir = spec.parent().unwrap_or(Path::new("."));
        Project {
            spec: spec.to_path_buf(),
            lock: dir.join(LOCK_FILE),
            npm_lock: dir.join(NPM_LOCK_FILE),
        }
    }

    /// Writes into `dir` a copy of this project whose spec differs in one
    /// visible way, `image.hostname` set to `hostname`, with the same lock
    /// files: what vm-test's UPD-2 rebuilds onto (`build-image --variant-hostname`).
    /// Returns the copy.
    pub fn variant_with_hostname(&self, dir: &Path, hostname: &str) -> Result<Project> {
        std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
        let text = std::fs::read_to_string(&self.spec)
            .with_context(|| format!("reading the spec {}", self.spec.display()))?;
        let mut doc: toml::Table = toml::from_str(&text)
            .with_context(|| format!("parsing the spec {}", self.spec.display()))?;
        let image = doc
            .get_mut("image")
            .and_then(toml::Value::as_table_mut)
            .with_context(|| format!("{}: no [image] table", self.spec.display()))?;
        image.insert("hostname".into(), toml::Value::String(hostname.into()));
        let copy = Project::new(&dir.join("image.toml"));
        let rendered = toml::to_string(&doc).context("rendering the variant spec")?;
        write_atomic(&copy.spec, rendered.as_bytes())?;
        for (from, to) in [(&self.lock, &copy.lock), (&self.npm_lock, &copy.npm_lock)] {
            let bytes =
                std::fs::read(from).with_context(|| format!("reading {}", from.display()))?;
            write_atomic(to, &bytes)?;
        }
        copy.read_spec()?;
        Ok(copy)
    }

    /// Reads and validates the spec.
    pub fn read_spec(&self) -> Result<Spec> {
        let text = std::fs::read_to_string(&self.spec)
            .with_context(|| format!("reading the spec {}", self.spec.display()))?;
        Ok(Spec::parse(&self.spec.display().to_string(), &text)?)
    }

    /// Reads and validates the lock, if it exists.
    pub fn read_lock(&self) -> Result<Option<Lock>> {
        if !self.lock.exists() {
            return Ok(None);
        }
        let text = std::fs::read_to_string(&self.lock)
            .with_context(|| format!("reading {}", self.lock.display()))?;
        Ok(Some(Lock::parse(&self.lock.display().to_string(), &text)?))
    }

    /// Reads the lock, failing with the fix when it is absent.
    pub fn require_lock(&self) -> Result<Lock> {
        self.read_lock()?.ok_or_else(|| {
            anyhow::anyhow!(
                "{} does not exist: run `cargo xtask lock` first",
                self.lock.display()
            )
        })
    }

    /// What no longer matches between spec, lock and npm lockfile (empty: current).
    pub fn check(&self, spec: &Spec, lock: &Lock) -> Result<Vec<String>> {
        let mut diffs = lock.check_against(spec);
        if !self.npm_lock.exists() {
            diffs.push(format!("{} is missing", self.npm_lock.display()));
        } else {
            let sha = sha256_file(&self.npm_lock)?;
            if sha != lock.openclaw.npm_lockfile_sha256 {
                diffs.push(format!(
                    "{}: sha256 {sha} differs from the {} recorded in image.lock (hand-edited?)",
                    self.npm_lock.display(),
                    lock.openclaw.npm_lockfile_sha256
                ));
            }
        }
        Ok(diffs)
    }
}

/// Options of a lock run.
#[derive(Debug, Clone)]
pub struct LockOptions {
    /// Mirror and registry overrides.
    pub sources: SourceFlags,
    /// Re-resolve everything, moving pins.
    pub update: bool,
    /// Where downloaded indexes are cached.
    pub cache_dir: PathBuf,
}

/// What a lock run did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LockOutcome {
    /// The existing lock matches the spec; nothing was written.
    UpToDate,
    /// A new lock was written.
    Written {
        /// Debian packages in all closures.
        debs: usize,
        /// npm packages in the OpenClaw tree.
        npm_packages: u64,
    },
}

/// `lock --json`: what `lock` or `lock --check` found or did (docs/cli.md).
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct LockReport {
    /// The spec file.
    pub spec: PathBuf,
    /// `image.lock`.
    pub lock: PathBuf,
    /// `image.npm-lock.json`.
    pub npm_lock: PathBuf,
    /// `matches` or `differs` (`--check`), `up-to-date` or `written`.
    pub outcome: &'static str,
    /// What no longer matches (`--check`), one line each.
    pub differences: Vec<String>,
    /// Debian packages in all closures (`written` only).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub debs: Option<usize>,
    /// npm packages in the OpenClaw tree (`written` only).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub npm_packages: Option<u64>,
}

impl LockReport {
    /// The result of `lock --check`: `differences` empty means it matches.
    pub fn checked(project: &Project, differences: Vec<String>) -> LockReport {
        LockReport {
            outcome: if differences.is_empty() {
                "matches"
            } else {
                "differs"
            },
            differences,
            ..LockReport::new(project)
        }
    }

    /// The result of `lock` (with or without `--update`).
    pub fn locked(project: &Project, outcome: &LockOutcome) -> LockReport {
        match outcome {
            LockOutcome::UpToDate => LockReport {
                outcome: "up-to-date",
                ..LockReport::new(project)
            },
            LockOutcome::Written { debs, npm_packages } => LockReport {
                outcome: "written",
                debs: Some(*debs),
                npm_packages: Some(*npm_packages),
                ..LockReport::new(project)
            },
        }
    }

    fn new(project: &Project) -> LockReport {
        LockReport {
            spec: project.spec.clone(),
            lock: project.lock.clone(),
            npm_lock: project.npm_lock.clone(),
            outcome: "",
            differences: Vec::new(),
            debs: None,
            npm_packages: None,
        }
    }

    /// The report as pretty JSON.
    pub fn to_json(&self) -> String {
        // Paths, strings and numbers: serializing cannot fail.
        serde_json::to_string_pretty(self).unwrap_or_default()
    }
}

/// Resolves `project`'s spec and writes the lock files atomically.
pub fn lock(project: &Project, store: &Store, opts: &LockOptions) -> Result<LockOutcome> {
    let spec = project.read_spec()?;
    let previous = if opts.update {
        None
    } else {
        match project.read_lock() {
            Ok(l) => l,
            Err(e) => {
                return Err(e.context(
                    "the existing lock cannot be read; `cargo xtask lock --update` replaces it",
                ));
            }
        }
    };
    if let Some(prev) = &previous
        && project.check(&spec, prev)?.is_empty()
    {
        return Ok(LockOutcome::UpToDate);
    }
    // First: a Tailscale version the module proxy does not serve fails in
    // seconds, before the Debian and npm resolutions.
    let (tailscale, gomods) = lock_tailscale(&spec, previous.as_ref(), store)?;
    let archives = archives(&spec, &opts.sources)?;
    let arch = spec.image.architecture.debian();

    eprintln!(
        "lock: reading signed Debian indexes ({})",
        spec.debian.suites.join(", ")
    );
    let (index, releases) = debian::load_index(
        &archives,
        &spec.debian.suites,
        &spec.debian.components,
        arch,
        &opts.cache_dir,
    )?;
    let preferred: BTreeMap<String, String> = previous
        .iter()
        .flat_map(|l| l.debs.iter().map(|d| (d.name.clone(), d.version.clone())))
        .collect();
    let mut sets = Vec::new();
    for (set, roots) in [
        ("host", &spec.packages.host),
        ("sandbox", &spec.packages.sandbox),
        ("tools", &spec.packages.tools),
    ] {
        let closure = debian::resolve(&index, set, roots, &preferred)
            .with_context(|| format!("resolving packages.{set} of {}", project.spec.display()))?;
        eprintln!("lock: {set}: {} packages", closure.len());
        sets.push(closure);
    }
    let debs = debian::merge_sets(sets)?;

    let registry = crate::npm::registry(opts.sources.npm_registry.as_deref())?;
    let node = match &previous {
        Some(p) if p.node.version == spec.node.version.to_string() => p.node.clone(),
        _ => {
            eprintln!("lock: node {}", spec.node.version);
            crate::npm::lock_node(
                &registry,
                &spec.node.version.to_string(),
                spec.image.architecture.node(),
                store,
            )?
        }
    };
    let npm = match &previous {
        Some(p) if p.openclaw.npm.version == crate::npm::NPM_VERSION => p.openclaw.npm.clone(),
        _ => crate::npm::lock_npm(&registry, crate::npm::NPM_VERSION, store)?,
    };
    let runtime = crate::npm::Runtime::new(store, &node, &npm)?;
    eprintln!("lock: openclaw {} and its npm tree", spec.openclaw.version);
    let openclaw = crate::npm::lock_openclaw(
        &registry,
        &spec.openclaw.version,
        &spec.openclaw.plugins,
        &runtime,
        store,
        &project.npm_lock,
    )?;

    let lock = Lock {
        format: FORMAT,
        inputs: Inputs::of(&spec),
        disk: DiskIds::derive(&spec.image.name),
        node,
        openclaw,
        tailscale,
        gomods,
        releases,
        debs,
    };
    let text = lock.render();
    // Never write a lock this code could not read back.
    Lock::parse(&project.lock.display().to_string(), &text).map_err(|e: SpecError| {
        anyhow::anyhow!("internal error: the rendered lock does not parse: {e}")
    })?;
    write_atomic(&project.lock, text.as_bytes())?;
    Ok(LockOutcome::Written {
        debs: lock.debs.len(),
        npm_packages: lock.openclaw.packages,
    })
}

/// Tailscale's pins: the tarball's, or (source build) the Go toolchain and
/// every module of the build, resolved by `go` unless the previous lock
/// already pins this version and source.
fn lock_tailscale(
    spec: &Spec,
    previous: Option<&Lock>,
    store: &Store,
) -> Result<(TailscaleLock, Vec<GoModule>)> {
    let version = spec.tailscale.version.clone();
    match &spec.tailscale.source {
        TailscaleSource::Tarball { url, sha256 } => Ok((
            TailscaleLock {
                version,
                source: "tarball".into(),
                url: Some(url.clone()),
                sha256: Some(sha256.clone()),
                go: None,
            },
            Vec::new(),
        )),
        TailscaleSource::Module => {
            if let Some(p) = previous
                && p.tailscale.source == "module"
                && p.tailscale.version == version
                && p.tailscale.go.is_some()
                && !p.gomods.is_empty()
            {
                return Ok((p.tailscale.clone(), p.gomods.clone()));
            }
            let tmp = store.root().join("tmp");
            std::fs::create_dir_all(&tmp).with_context(|| format!("creating {}", tmp.display()))?;
            let work = tempfile::tempdir_in(&tmp)
                .with_context(|| format!("creating a directory in {}", tmp.display()))?;
            let go = crate::gomod::toolchain::Go::find(work.path())?;
            let resolved = crate::gomod::resolve::resolve(
                &go,
                TAILSCALE_MODULE,
                &spec.tailscale.module_version(),
                work.path(),
            )?;
            eprintln!(
                "lock: tailscale {version}: {} Go modules ({} with a zip), {}",
                resolved.modules.len(),
                resolved.modules.iter().filter(|m| m.zip.is_some()).count(),
                resolved.go
            );
            Ok((
                TailscaleLock {
                    version,
                    source: "module".into(),
                    url: None,
                    sha256: None,
                    go: Some(resolved.go),
                },
                resolved.modules,
            ))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_variant_changes_the_host_name_and_keeps_the_lock() {
        let repo = Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
        let project = Project::new(&repo.join("image.toml"));
        let dir = tempfile::tempdir().unwrap();
        let copy = project
            .variant_with_hostname(dir.path(), "openclaw-rebuilt")
            .unwrap();
        let spec = copy.read_spec().unwrap();
        assert_eq!(spec.image.hostname, "openclaw-rebuilt");
        let original = project.read_spec().unwrap();
        assert_ne!(original.image.hostname, spec.image.hostname);
        assert_eq!(spec.image.name, original.image.name);
        assert_eq!(
            std::fs::read(&copy.lock).unwrap(),
            std::fs::read(&project.lock).unwrap()
        );
        let lock = copy.require_lock().unwrap();
        assert_eq!(copy.check(&spec, &lock).unwrap(), Vec::<String>::new());
    }

    #[test]
    fn json_shapes() {
        let project = Project::new(Path::new("/src/image.toml"));
        let differs = LockReport::checked(
            &project,
            vec!["openclaw.version: spec 2026.12.1, lock 2026.11.3".into()],
        );
        insta::assert_snapshot!("lock_check_differs", differs.to_json());
        let written = LockReport::locked(
            &project,
            &LockOutcome::Written {
                debs: 412,
                npm_packages: 631,
            },
        );
        insta::assert_snapshot!("lock_written", written.to_json());
        assert_eq!(LockReport::checked(&project, vec![]).outcome, "matches");
    }
}
