//! The merged package index of several suites, keeping every raw stanza.

use std::cmp::Ordering;
use std::collections::BTreeMap;
use std::ops::Range;

use anyhow::{Context, Result, bail};

use super::control;
use super::relation::{self, Group};
use super::version;

/// One binary package version from a `Packages` file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Package {
    /// `Package:`
    pub name: String,
    /// `Version:`
    pub version: String,
    /// `Architecture:` (the index's architecture or `all`).
    pub architecture: String,
    /// Suite whose index lists it (`trixie-security`).
    pub suite: String,
    /// Archive root it comes from: `debian` or `debian-security`.
    pub archive: String,
    /// `Filename:`, the pool path below the archive root.
    pub filename: String,
    /// `Size:` of the `.deb`.
    pub size: u64,
    /// `SHA256:` of the `.deb`.
    pub sha256: String,
    /// `Essential: yes`
    pub essential: bool,
    /// `Priority:` (empty if absent).
    pub priority: String,
    /// `Provides:` as `(name, provided version)`.
    pub provides: Vec<(String, Option<String>)>,
    /// Raw `Pre-Depends:` (empty if absent).
    pub pre_depends: String,
    /// Raw `Depends:` (empty if absent).
    pub depends: String,
    /// Raw `Conflicts:` (empty if absent).
    pub conflicts: String,
    /// Raw `Breaks:` (empty if absent).
    pub breaks: String,
    source: usize,
    stanza: Range<usize>,
}

impl Package {
    /// `Pre-Depends` then `Depends`, as OR-groups.
    pub fn dependencies(&self) -> Result<Vec<Group>> {
        let mut groups = relation::parse_groups(&self.pre_depends)
            .with_context(|| format!("Pre-Depends of {} {}", self.name, self.version))?;
        groups.extend(
            relation::parse_groups(&self.depends)
                .with_context(|| format!("Depends of {} {}", self.name, self.version))?,
        );
        Ok(groups)
    }

    /// `Conflicts` then `Breaks`, as OR-groups (normally one alternative each).
    pub fn conflicts(&self) -> Result<Vec<Group>> {
        let mut groups = relation::parse_groups(&self.conflicts)
            .with_context(|| format!("Conflicts of {} {}", self.name, self.version))?;
        groups.extend(
            relation::parse_groups(&self.breaks)
                .with_context(|| format!("Breaks of {} {}", self.name, self.version))?,
        );
        Ok(groups)
    }
}

/// A `Packages` file's text and where it came from.
#[derive(Debug)]
struct Source {
    text: String,
}

/// Every package of the loaded suites (one architecture plus `all`).
#[derive(Debug, Default)]
pub struct Index {
    suites: Vec<String>,
    sources: Vec<Source>,
    packages: Vec<Package>,
    /// Name → indexes into `packages`, in load order.
    by_name: BTreeMap<String, Vec<usize>>,
    /// Virtual name → `(index into packages, provided version)`, in load order.
    providers: BTreeMap<String, Vec<(usize, Option<String>)>>,
}

impl Index {
    /// An empty index.
    pub fn new() -> Index {
        Index::default()
    }

    /// Adds the stanzas of one `Packages` file of `suite` (served by
    /// `archive`: `debian` or `debian-security`), keeping packages of
    /// architecture `arch` and `all`. `origin` (a URL or path) only names
    /// the text in errors. Suites added first win ties between equal versions.
    pub fn add_packages(
        &mut self,
        suite: &str,
        archive: &str,
        arch: &str,
        origin: &str,
        text: String,
    ) -> Result<()> {
        let source = self.sources.len();
        let mut added = Vec::new();
        {
            let stanzas =
                control::parse(&text).with_context(|| format!("parsing Packages of {origin}"))?;
            for stanza in stanzas {
                let field = |name: &str| stanza.get(name).unwrap_or("").to_string();
                let architecture = field("Architecture");
                if architecture != arch && architecture != "all" {
                    continue;
                }
                let name = field("Package");
                let version = field("Version");
                let filename = field("Filename");
                let sha256 = field("SHA256");
                if name.is_empty() || version.is_empty() || filename.is_empty() || sha256.is_empty()
                {
                    bail!(
                        "{origin}: stanza without Package, Version, Filename or SHA256: `{}`",
                        stanza.text().lines().next().unwrap_or("")
                    );
                }
                let size = field("Size").parse::<u64>().with_context(|| {
                    format!("{origin}: package {name} {version}: bad Size field")
                })?;
                let provides = relation::parse_provides(stanza.get("Provides").unwrap_or(""))
                    .with_context(|| format!("{origin}: Provides of {name} {version}"))?;
                let start = stanza.text().as_ptr() as usize - text.as_ptr() as usize;
                added.push(Package {
                    essential: stanza
                        .get("Essential")
                        .is_some_and(|e| e.eq_ignore_ascii_case("yes")),
                    priority: field("Priority"),
                    pre_depends: field("Pre-Depends"),
                    depends: field("Depends"),
                    conflicts: field("Conflicts"),
                    breaks: field("Breaks"),
                    suite: suite.to_string(),
                    archive: archive.to_string(),
                    stanza: start..start + stanza.text().len(),
                    source,
                    name,
                    version,
                    architecture,
                    filename,
                    size,
                    sha256,
                    provides,
                });
            }
        }
        self.sources.push(Source { text });
        if !self.suites.iter().any(|s| s == suite) {
            self.suites.push(suite.to_string());
        }
        for package in added {
            let id = self.packages.len();
            for (virt, version) in &package.provides {
                self.providers
                    .entry(virt.clone())
                    .or_default()
                    .push((id, version.clone()));
            }
            self.by_name
                .entry(package.name.clone())
                .or_default()
                .push(id);
            self.packages.push(package);
        }
        Ok(())
    }

    /// The suites loaded, in load order.
    pub fn suites(&self) -> &[String] {
        &self.suites
    }

    /// Number of package versions in the index.
    pub fn len(&self) -> usize {
        self.packages.len()
    }

    /// Whether the index holds no package.
    pub fn is_empty(&self) -> bool {
        self.packages.is_empty()
    }

    /// All package names, sorted.
    pub fn names(&self) -> impl Iterator<Item = &str> {
        self.by_name.keys().map(String::as_str)
    }

    /// Every version of `name` in the index, in load order.
    pub fn versions(&self, name: &str) -> impl Iterator<Item = &Package> {
        self.by_name
            .get(name)
            .into_iter()
            .flatten()
            .map(|&i| &self.packages[i])
    }

    /// The package `name` at exactly `version` (first loaded suite wins).
    pub fn package(&self, name: &str, version: &str) -> Option<&Package> {
        self.versions(name).find(|p| p.version == version)
    }

    /// The raw control stanza of `name` at `version`, as in its `Packages`
    /// file (no trailing newline).
    pub fn stanza(&self, name: &str, version: &str) -> Option<&str> {
        self.package(name, version).map(|p| self.stanza_of(p))
    }

    /// The raw control stanza of a package of this index.
    pub fn stanza_of(&self, package: &Package) -> &str {
        self.sources
            .get(package.source)
            .and_then(|s| s.text.get(package.stanza.clone()))
            .unwrap_or("")
    }

    /// The candidate of `name`: `preferred` if the index has that exact
    /// version, else the highest version (the first loaded suite wins ties).
    pub fn candidate(&self, name: &str, preferred: Option<&str>) -> Option<&Package> {
        if let Some(p) = preferred.and_then(|v| self.package(name, v)) {
            return Some(p);
        }
        self.versions(name)
            .fold(None, |best: Option<&Package>, p| match best {
                Some(b) if version::compare(&p.version, &b.version) != Ordering::Greater => Some(b),
                _ => Some(p),
            })
    }

    /// Packages whose `Provides:` names `virt`, with the provided version, in
    /// load order (any version of the provider, candidate or not).
    pub fn providers(&self, virt: &str) -> impl Iterator<Item = (&Package, Option<&str>)> {
        self.providers
            .get(virt)
            .into_iter()
            .flatten()
            .map(|(i, v)| (&self.packages[*i], v.as_deref()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn stanza(name: &str, version: &str, extra: &str) -> String {
        format!(
            "Package: {name}\nVersion: {version}\nArchitecture: amd64\n{extra}Filename: pool/main/{name}_{version}_amd64.deb\nSize: 100\nSHA256: {}\n",
            "0".repeat(64)
        )
    }

    #[test]
    fn candidates_across_suites() {
        let mut index = Index::new();
        let main = [
            stanza("libc6", "2.41-12", "Priority: required\n"),
            stanza("foo", "1.0-1", "Provides: bar (= 1.0)\n"),
            "Package: arm\nVersion: 1\nArchitecture: arm64\nFilename: pool/a.deb\nSize: 1\nSHA256: 00\n"
                .to_string(),
        ]
        .join("\n");
        let security = stanza("libc6", "2.41-12+deb13u1", "");
        index
            .add_packages("trixie", "debian", "amd64", "main", main)
            .unwrap();
        index
            .add_packages(
                "trixie-security",
                "debian-security",
                "amd64",
                "sec",
                security,
            )
            .unwrap();

        assert_eq!(index.len(), 3);
        assert_eq!(index.suites(), ["trixie", "trixie-security"]);
        assert!(index.versions("arm").next().is_none());
        let c = index.candidate("libc6", None).unwrap();
        assert_eq!(
            (c.version.as_str(), c.archive.as_str()),
            ("2.41-12+deb13u1", "debian-security")
        );
        let c = index.candidate("libc6", Some("2.41-12")).unwrap();
        assert_eq!(
            (c.version.as_str(), c.suite.as_str()),
            ("2.41-12", "trixie")
        );
        let c = index.candidate("libc6", Some("0.1")).unwrap();
        assert_eq!(c.version, "2.41-12+deb13u1");
        assert_eq!(c.priority, "");
        let s = index.stanza("libc6", "2.41-12").unwrap();
        assert!(s.starts_with("Package: libc6\nVersion: 2.41-12\n"), "{s}");
        assert!(s.ends_with(&"0".repeat(64)), "{s}");
        let providers: Vec<_> = index
            .providers("bar")
            .map(|(p, v)| (p.name.as_str(), v))
            .collect();
        assert_eq!(providers, [("foo", Some("1.0"))]);
        assert_eq!(index.names().collect::<Vec<_>>(), ["foo", "libc6"]);
    }

    #[test]
    fn missing_fields_name_the_origin() {
        let mut index = Index::new();
        let err = index
            .add_packages(
                "trixie",
                "debian",
                "amd64",
                "http://mirror.example/x",
                "Package: a\nArchitecture: all\n".into(),
            )
            .unwrap_err()
            .to_string();
        assert!(err.contains("http://mirror.example/x"), "{err}");
    }
}
