//! Closure resolution: which packages `mmdebstrap --variant=minbase
//! --include=<roots>` installs (apt without Recommends).
//!
//! The start set is what minbase installs (every `Essential: yes` package,
//! every `Priority: required` package, and `apt`) plus the roots. The set is
//! then closed over `Pre-Depends` and `Depends`. Names are processed in
//! sorted order from a `BTreeSet` work queue, so the result never depends on
//! hash or load order. For each OR-group not yet satisfied by a selected
//! package (by name or `Provides`, honouring version constraints), the
//! choice is: the first alternative that is a real package whose candidate
//! meets the constraint; else the first alternative with a provider among
//! the candidates, preferring a selected provider, then one of priority
//! required/important/standard, then the lexicographically first.

use std::collections::{BTreeMap, BTreeSet};

use anyhow::{Result, bail};
use image_spec::lock::Deb;

use super::index::{Index, Package};
use super::relation::{Group, Relation, group_to_string};

/// Resolves the closure of `roots` for the set named `set` (`host`,
/// `sandbox`, `tools`). `preferred` maps names to versions to keep when the
/// index still has them (stable pins on re-lock); a preferred version that
/// violates a dependency of the closure is dropped for the highest one.
/// Returns the closure sorted by name, each with `sets == [set]`.
pub fn resolve(
    index: &Index,
    set: &str,
    roots: &[String],
    preferred: &BTreeMap<String, String>,
) -> Result<Vec<Deb>> {
    let mut unpinned = BTreeSet::new();
    loop {
        let mut resolver = Resolver {
            index,
            preferred,
            unpinned: &unpinned,
            selected: BTreeMap::new(),
            provided: BTreeMap::new(),
            queue: BTreeSet::new(),
        };
        match resolver.run(set, roots)? {
            Outcome::Done(debs) => return Ok(debs),
            Outcome::Unpin(name) => {
                if !unpinned.insert(name.clone()) {
                    bail!("internal error: `{name}` unpinned twice while resolving `{set}`");
                }
            }
        }
    }
}

/// Unions closures into one list sorted by name. A package in several
/// closures must have the same version (and file) in each; its `sets` lists
/// are combined, sorted and deduplicated.
pub fn merge_sets(sets: Vec<Vec<Deb>>) -> Result<Vec<Deb>> {
    let mut out: BTreeMap<String, Deb> = BTreeMap::new();
    for deb in sets.into_iter().flatten() {
        match out.get_mut(&deb.name) {
            None => {
                out.insert(deb.name.clone(), deb);
            }
            Some(have) => {
                if have.version != deb.version
                    || have.sha256 != deb.sha256
                    || have.filename != deb.filename
                {
                    bail!(
                        "`{}` is {} in closure {} but {} in closure {}: closures must agree on versions \
                         (re-lock without pins: `cargo xtask lock --update`)",
                        deb.name,
                        have.version,
                        have.sets.join("+"),
                        deb.version,
                        deb.sets.join("+"),
                    );
                }
                have.sets.extend(deb.sets);
                have.sets.sort();
                have.sets.dedup();
            }
        }
    }
    Ok(out.into_values().collect())
}

/// Result of one resolution attempt.
enum Outcome {
    Done(Vec<Deb>),
    /// The preferred version of this name violates a dependency that its
    /// highest version meets: retry without that preference.
    Unpin(String),
}

/// What to do about an unsatisfied OR-group.
enum Choice<'a> {
    Select(&'a Package),
    Unpin(String),
}

struct Resolver<'a> {
    index: &'a Index,
    preferred: &'a BTreeMap<String, String>,
    unpinned: &'a BTreeSet<String>,
    /// Name → chosen package.
    selected: BTreeMap<&'a str, &'a Package>,
    /// Virtual name → `(selected provider, provided version)`.
    provided: BTreeMap<&'a str, Vec<(&'a str, Option<&'a str>)>>,
    /// Selected names whose dependencies are still to be examined.
    queue: BTreeSet<&'a str>,
}

impl<'a> Resolver<'a> {
    fn run(&mut self, set: &str, roots: &[String]) -> Result<Outcome> {
        let index = self.index;
        for name in index.names() {
            let base = self.candidate(name);
            if let Some(c) = base.filter(|c| c.essential || c.priority == "required") {
                self.select(c);
            }
        }
        let apt = vec![Relation {
            name: "apt".into(),
            constraint: None,
        }];
        let mut base = vec![(apt, "mmdebstrap --variant=minbase".to_string())];
        for root in roots {
            let group = vec![Relation {
                name: root.clone(),
                constraint: None,
            }];
            base.push((group, format!("packages.{set}")));
        }
        for (group, needed_by) in &base {
            if let Some(unpin) = self.satisfy(group, needed_by)? {
                return Ok(Outcome::Unpin(unpin));
            }
        }
        while let Some(name) = self.queue.pop_first() {
            let Some(package) = self.selected.get(name).copied() else {
                continue;
            };
            for group in package.dependencies()? {
                if let Some(unpin) = self.satisfy(&group, name)? {
                    return Ok(Outcome::Unpin(unpin));
                }
            }
        }
        self.check_conflicts(set)?;
        Ok(Outcome::Done(
            self.selected
                .values()
                .map(|p| Deb {
                    name: p.name.clone(),
                    version: p.version.clone(),
                    architecture: p.architecture.clone(),
                    archive: p.archive.clone(),
                    filename: p.filename.clone(),
                    size: p.size,
                    sha256: p.sha256.clone(),
                    sets: vec![set.to_string()],
                })
                .collect(),
        ))
    }

    /// The preferred version of `name`, unless it was dropped.
    fn preference(&self, name: &str) -> Option<&'a str> {
        if self.unpinned.contains(name) {
            return None;
        }
        self.preferred.get(name).map(String::as_str)
    }

    fn candidate(&self, name: &str) -> Option<&'a Package> {
        self.index.candidate(name, self.preference(name))
    }

    fn is_candidate(&self, package: &Package) -> bool {
        self.candidate(&package.name)
            .is_some_and(|c| std::ptr::eq(c, package))
    }

    fn select(&mut self, package: &'a Package) {
        if self.selected.insert(&package.name, package).is_none() {
            for (virt, version) in &package.provides {
                self.provided
                    .entry(virt)
                    .or_default()
                    .push((&package.name, version.as_deref()));
            }
            self.queue.insert(&package.name);
        }
    }

    /// Makes sure `group` is satisfied; returns a name to unpin if needed.
    fn satisfy(&mut self, group: &Group, needed_by: &str) -> Result<Option<String>> {
        if self.satisfied(group) {
            return Ok(None);
        }
        match self.choose(group, needed_by)? {
            Choice::Select(p) => {
                self.select(p);
                Ok(None)
            }
            Choice::Unpin(name) => Ok(Some(name)),
        }
    }

    fn satisfied(&self, group: &Group) -> bool {
        group.iter().any(|alt| {
            self.selected
                .get(alt.name.as_str())
                .is_some_and(|p| alt.accepts(&p.version))
                || self
                    .provided
                    .get(alt.name.as_str())
                    .is_some_and(|ps| ps.iter().any(|(_, v)| alt.accepts_provide(*v)))
        })
    }

    fn choose(&self, group: &Group, needed_by: &str) -> Result<Choice<'a>> {
        for alt in group {
            let Some(candidate) = self.candidate(&alt.name) else {
                continue;
            };
            if alt.accepts(&candidate.version) {
                return Ok(Choice::Select(candidate));
            }
            let highest = self.index.candidate(&alt.name, None);
            if self.preference(&alt.name).is_some()
                && highest.is_some_and(|h| alt.accepts(&h.version))
            {
                return Ok(Choice::Unpin(alt.name.clone()));
            }
        }
        for alt in group {
            let providers = self.providers(alt);
            let best = providers.iter().min_by_key(|p| {
                let selected = self.selected.contains_key(p.name.as_str());
                let high = matches!(p.priority.as_str(), "required" | "important" | "standard");
                (!selected, !high, p.name.as_str())
            });
            if let Some(best) = best {
                return Ok(Choice::Select(best));
            }
        }
        bail!(self.unsatisfiable(group, needed_by))
    }

    /// Candidates whose `Provides` meet `alt`.
    fn providers(&self, alt: &Relation) -> Vec<&'a Package> {
        self.index
            .providers(&alt.name)
            .filter(|(p, v)| alt.accepts_provide(*v) && self.is_candidate(p))
            .map(|(p, _)| p)
            .collect()
    }

    /// The error for an OR-group nothing can satisfy.
    fn unsatisfiable(&self, group: &Group, needed_by: &str) -> String {
        let suites = self.index.suites().join(", ");
        let reason = |alt: &Relation| -> String {
            let candidate = self.candidate(&alt.name);
            let providers: Vec<&str> = self
                .index
                .providers(&alt.name)
                .filter(|(p, _)| self.is_candidate(p))
                .map(|(p, _)| p.name.as_str())
                .collect();
            match (candidate, providers.is_empty()) {
                (None, true) => format!("no such package in {suites}"),
                (Some(c), _) => format!(
                    "{} is at version {} (in {}), which does not satisfy it",
                    c.name, c.version, c.suite
                ),
                (None, false) => format!(
                    "a virtual package provided by {} but not in a version that satisfies it",
                    providers.join(", ")
                ),
            }
        };
        let text = group_to_string(group);
        match group.as_slice() {
            [alt] => format!("`{text}` (needed by `{needed_by}`): {}", reason(alt)),
            _ => format!(
                "`{text}` (needed by `{needed_by}`): no alternative can be installed: {}",
                group
                    .iter()
                    .map(|alt| format!("`{alt}`: {}", reason(alt)))
                    .collect::<Vec<_>>()
                    .join("; ")
            ),
        }
    }

    /// Fails if two selected packages conflict (`Conflicts`/`Breaks`):
    /// such a closure could not be installed together.
    fn check_conflicts(&self, set: &str) -> Result<()> {
        for p in self.selected.values() {
            for rel in p.conflicts()?.into_iter().flatten() {
                let other = self.selected.get(rel.name.as_str());
                if let Some(q) = other.filter(|q| q.name != p.name && rel.accepts(&q.version)) {
                    bail!(
                        "closure `{set}`: {} {} conflicts with `{rel}`, but {} {} is in the closure",
                        p.name,
                        p.version,
                        q.name,
                        q.version
                    );
                }
                for (provider, version) in
                    self.provided.get(rel.name.as_str()).into_iter().flatten()
                {
                    if *provider != p.name && rel.accepts_provide(*version) {
                        bail!(
                            "closure `{set}`: {} {} conflicts with `{rel}`, which {provider} (in the closure) provides",
                            p.name,
                            p.version
                        );
                    }
                }
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A stanza; `extra` holds more fields, one per line.
    fn pkg(name: &str, version: &str, extra: &str) -> String {
        let mut s = format!("Package: {name}\nVersion: {version}\nArchitecture: amd64\n");
        for line in extra.lines() {
            s.push_str(line.trim());
            s.push('\n');
        }
        s.push_str(&format!(
            "Filename: pool/main/{name}_{version}_amd64.deb\nSize: 10\nSHA256: {}\n",
            "a".repeat(64)
        ));
        s
    }

    fn index_of(suites: &[(&str, Vec<String>)]) -> Index {
        let mut index = Index::new();
        for (suite, stanzas) in suites {
            let archive = if suite.ends_with("-security") {
                "debian-security"
            } else {
                "debian"
            };
            index
                .add_packages(suite, archive, "amd64", suite, stanzas.join("\n"))
                .unwrap();
        }
        index
    }

    /// The minimal base: an Essential package and apt.
    fn base() -> Vec<String> {
        vec![
            pkg("base-files", "13.8", "Essential: yes\nPriority: required"),
            pkg(
                "apt",
                "3.0.3",
                "Priority: required\nDepends: libc6 (>= 2.34)",
            ),
            pkg("libc6", "2.41-12", "Priority: optional"),
            pkg("mawk", "1.3.4", "Priority: required\nProvides: awk"),
        ]
    }

    fn names(debs: &[Deb]) -> Vec<&str> {
        debs.iter().map(|d| d.name.as_str()).collect()
    }

    fn roots(r: &[&str]) -> Vec<String> {
        r.iter().map(|s| s.to_string()).collect()
    }

    fn no_pins() -> BTreeMap<String, String> {
        BTreeMap::new()
    }

    #[test]
    fn base_set_and_closure() {
        let mut stanzas = base();
        stanzas.push(pkg(
            "curl",
            "8.14.1-2",
            "Depends: libcurl4t64 (= 8.14.1-2), libc6",
        ));
        stanzas.push(pkg("libcurl4t64", "8.14.1-2", "Pre-Depends: libc6"));
        stanzas.push(pkg("unused", "1", ""));
        let index = index_of(&[("trixie", stanzas)]);
        let debs = resolve(&index, "host", &roots(&["curl"]), &no_pins()).unwrap();
        assert_eq!(
            names(&debs),
            ["apt", "base-files", "curl", "libc6", "libcurl4t64", "mawk"]
        );
        let curl = &debs[2];
        assert_eq!(curl.version, "8.14.1-2");
        assert_eq!(curl.archive, "debian");
        assert_eq!(curl.filename, "pool/main/curl_8.14.1-2_amd64.deb");
        assert_eq!(curl.size, 10);
        assert_eq!(curl.sets, ["host"]);
    }

    #[test]
    fn highest_version_across_suites_and_archive() {
        let index = index_of(&[
            ("trixie", base()),
            ("trixie-security", vec![pkg("libc6", "2.41-12+deb13u1", "")]),
        ]);
        let debs = resolve(&index, "host", &[], &no_pins()).unwrap();
        let libc = debs.iter().find(|d| d.name == "libc6").unwrap();
        assert_eq!(libc.version, "2.41-12+deb13u1");
        assert_eq!(libc.archive, "debian-security");
    }

    #[test]
    fn or_groups() {
        let mut stanzas = base();
        stanzas.extend([
            pkg("a", "1", "Depends: missing | b | c"),
            pkg("b", "1", ""),
            pkg("c", "1", ""),
            // `y` is a root, so `x | y` is already satisfied.
            pkg("d", "1", "Depends: x | y"),
            pkg("x", "1", ""),
            pkg("y", "1", ""),
        ]);
        let index = index_of(&[("trixie", stanzas)]);
        let debs = resolve(&index, "s", &roots(&["a", "d", "y"]), &no_pins()).unwrap();
        let n = names(&debs);
        assert!(n.contains(&"b") && !n.contains(&"c"), "{n:?}");
        assert!(n.contains(&"y") && !n.contains(&"x"), "{n:?}");
    }

    #[test]
    fn version_constraints() {
        let mut stanzas = base();
        stanzas.extend([
            pkg(
                "a",
                "1",
                "Depends: old (>= 2) | new, lt (<< 1.0), eq (= 1:2-1), le (<= 3), gt (>> 1)",
            ),
            pkg("old", "1.5", ""),
            pkg("new", "1", ""),
            pkg("lt", "1.0~rc1", ""),
            pkg("eq", "1:2-1", ""),
            pkg("le", "3", ""),
            pkg("gt", "1.0+b1", ""),
        ]);
        let index = index_of(&[("trixie", stanzas)]);
        let debs = resolve(&index, "s", &roots(&["a"]), &no_pins()).unwrap();
        let n = names(&debs);
        for want in ["new", "lt", "eq", "le", "gt"] {
            assert!(n.contains(&want), "{want} missing from {n:?}");
        }
        assert!(!n.contains(&"old"), "{n:?}");

        let mut stanzas = base();
        stanzas.extend([pkg("a", "1", "Depends: b (>> 1)"), pkg("b", "1", "")]);
        let index = index_of(&[("trixie", stanzas)]);
        let err = resolve(&index, "s", &roots(&["a"]), &no_pins())
            .unwrap_err()
            .to_string();
        assert_eq!(
            err,
            "`b (>> 1)` (needed by `a`): b is at version 1 (in trixie), which does not satisfy it"
        );
    }

    #[test]
    fn virtual_packages() {
        let mut stanzas = base();
        stanzas.extend([
            // awk: provided by mawk, which is already selected (required).
            pkg(
                "a",
                "1",
                "Depends: awk, mail-transport-agent, c-compiler (>= 14), editor",
            ),
            pkg(
                "zz-mta",
                "1",
                "Priority: standard\nProvides: mail-transport-agent",
            ),
            pkg(
                "aa-mta",
                "1",
                "Priority: optional\nProvides: mail-transport-agent",
            ),
            pkg("gawk", "1", "Priority: optional\nProvides: awk"),
            pkg("gcc-13", "13", "Provides: c-compiler (= 13)"),
            pkg("gcc-14", "14", "Provides: c-compiler (= 14)"),
            pkg("gcc-unversioned", "1", "Provides: c-compiler"),
            pkg("vim", "2", "Provides: editor"),
            pkg("nano", "8", "Provides: editor"),
        ]);
        let index = index_of(&[("trixie", stanzas)]);
        let debs = resolve(&index, "s", &roots(&["a"]), &no_pins()).unwrap();
        let n = names(&debs);
        assert!(!n.contains(&"gawk"), "{n:?}");
        assert!(n.contains(&"zz-mta") && !n.contains(&"aa-mta"), "{n:?}");
        assert!(n.contains(&"gcc-14") && !n.contains(&"gcc-13"), "{n:?}");
        assert!(!n.contains(&"gcc-unversioned"), "{n:?}");
        assert!(n.contains(&"nano") && !n.contains(&"vim"), "{n:?}");

        // A root that is only virtual resolves to a provider.
        let debs = resolve(&index, "s", &roots(&["editor"]), &no_pins()).unwrap();
        assert!(names(&debs).contains(&"nano"));
    }

    #[test]
    fn real_package_before_virtual_alternative() {
        let mut stanzas = base();
        stanzas.extend([
            pkg("a", "1", "Depends: virt | real"),
            pkg("p", "1", "Provides: virt"),
            pkg("real", "1", ""),
        ]);
        let index = index_of(&[("trixie", stanzas)]);
        let debs = resolve(&index, "s", &roots(&["a"]), &no_pins()).unwrap();
        let n = names(&debs);
        assert!(n.contains(&"real") && !n.contains(&"p"), "{n:?}");
    }

    #[test]
    fn missing_dependency_and_root() {
        let mut stanzas = base();
        stanzas.push(pkg("bar", "1", "Depends: foo"));
        let index = index_of(&[
            ("trixie", stanzas),
            ("trixie-updates", vec![]),
            ("trixie-security", vec![]),
        ]);
        let err = resolve(&index, "host", &roots(&["bar"]), &no_pins())
            .unwrap_err()
            .to_string();
        assert_eq!(
            err,
            "`foo` (needed by `bar`): no such package in trixie, trixie-updates, trixie-security"
        );
        let err = resolve(&index, "host", &roots(&["nope"]), &no_pins())
            .unwrap_err()
            .to_string();
        assert_eq!(
            err,
            "`nope` (needed by `packages.host`): no such package in trixie, trixie-updates, trixie-security"
        );

        let mut stanzas = base();
        stanzas.push(pkg("bar", "1", "Depends: foo | baz (>= 2)"));
        stanzas.push(pkg("baz", "1", ""));
        let index = index_of(&[("trixie", stanzas)]);
        let err = resolve(&index, "host", &roots(&["bar"]), &no_pins())
            .unwrap_err()
            .to_string();
        assert!(
            err.starts_with("`foo | baz (>= 2)` (needed by `bar`): no alternative"),
            "{err}"
        );
        assert!(err.contains("`foo`: no such package in trixie"), "{err}");
    }

    #[test]
    fn deterministic_regardless_of_load_order() {
        let mut stanzas = base();
        stanzas.extend([
            pkg("a", "1", "Depends: v1, v2 | w"),
            pkg("b", "1", "Depends: w | v2"),
            pkg("p1", "1", "Provides: v1, v2"),
            pkg("p2", "1", "Provides: v1"),
            pkg("w", "1", "Depends: v1"),
        ]);
        let forward = index_of(&[("trixie", stanzas.clone())]);
        stanzas.reverse();
        let backward = index_of(&[("trixie", stanzas)]);
        let r = roots(&["b", "a"]);
        let one = resolve(&forward, "s", &r, &no_pins()).unwrap();
        let two = resolve(&backward, "s", &r, &no_pins()).unwrap();
        let mut reversed_roots = r.clone();
        reversed_roots.reverse();
        let three = resolve(&forward, "s", &reversed_roots, &no_pins()).unwrap();
        assert_eq!(one, two);
        assert_eq!(one, three);
        // `a` (processed first) picks p1 for v1, which also satisfies `b`'s `w | v2`.
        assert_eq!(
            names(&one),
            ["a", "apt", "b", "base-files", "libc6", "mawk", "p1"]
        );
    }

    #[test]
    fn preferred_versions() {
        let index = index_of(&[
            (
                "trixie",
                [
                    base(),
                    vec![pkg("a", "1", "Depends: lib"), pkg("lib", "1.0", "")],
                ]
                .concat(),
            ),
            ("trixie-updates", vec![pkg("lib", "1.1", "")]),
        ]);
        let r = roots(&["a"]);
        let version = |debs: &[Deb]| {
            debs.iter()
                .find(|d| d.name == "lib")
                .map(|d| d.version.clone())
        };
        let debs = resolve(&index, "s", &r, &no_pins()).unwrap();
        assert_eq!(version(&debs).as_deref(), Some("1.1"));
        let pins = BTreeMap::from([("lib".to_string(), "1.0".to_string())]);
        let debs = resolve(&index, "s", &r, &pins).unwrap();
        assert_eq!(version(&debs).as_deref(), Some("1.0"));
        // A pin the index no longer has is ignored.
        let pins = BTreeMap::from([("lib".to_string(), "0.9".to_string())]);
        let debs = resolve(&index, "s", &r, &pins).unwrap();
        assert_eq!(version(&debs).as_deref(), Some("1.1"));

        // A pin that violates a dependency is dropped.
        let index = index_of(&[
            (
                "trixie",
                [
                    base(),
                    vec![
                        pkg("a", "1", "Depends: lib (>= 1.1)"),
                        pkg("lib", "1.0", ""),
                    ],
                ]
                .concat(),
            ),
            ("trixie-updates", vec![pkg("lib", "1.1", "")]),
        ]);
        let pins = BTreeMap::from([("lib".to_string(), "1.0".to_string())]);
        let debs = resolve(&index, "s", &r, &pins).unwrap();
        assert_eq!(version(&debs).as_deref(), Some("1.1"));
    }

    #[test]
    fn conflicts_are_errors() {
        let mut stanzas = base();
        stanzas.extend([
            pkg("a", "1", "Conflicts: b"),
            pkg("b", "1", ""),
            pkg("c", "1", "Provides: mta\nConflicts: mta"),
            pkg("d", "1", "Breaks: b (<< 1)"),
        ]);
        let index = index_of(&[("trixie", stanzas)]);
        // Self-conflicts through a provided name and unmet Breaks are fine.
        resolve(&index, "s", &roots(&["b", "c", "d"]), &no_pins()).unwrap();
        let err = resolve(&index, "s", &roots(&["a", "b"]), &no_pins())
            .unwrap_err()
            .to_string();
        assert!(err.contains("a 1 conflicts with `b`"), "{err}");
    }

    #[test]
    fn merging_closures() {
        let deb = |name: &str, version: &str, set: &str| Deb {
            name: name.into(),
            version: version.into(),
            architecture: "amd64".into(),
            archive: "debian".into(),
            filename: format!("pool/main/{name}.deb"),
            size: 1,
            sha256: "b".repeat(64),
            sets: vec![set.into()],
        };
        let merged = merge_sets(vec![
            vec![deb("libc6", "2", "tools"), deb("zstd", "1", "tools")],
            vec![deb("bash", "5", "host"), deb("libc6", "2", "host")],
        ])
        .unwrap();
        assert_eq!(names(&merged), ["bash", "libc6", "zstd"]);
        assert_eq!(merged[1].sets, ["host", "tools"]);
        let err = merge_sets(vec![
            vec![deb("libc6", "2", "host")],
            vec![deb("libc6", "3", "tools")],
        ])
        .unwrap_err()
        .to_string();
        assert!(
            err.contains("`libc6` is 2 in closure host but 3 in closure tools"),
            "{err}"
        );
    }
}
