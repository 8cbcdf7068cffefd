//! Package relation fields: `Depends`, `Pre-Depends`, `Provides`, …
//!
//! `a (>= 1) | b, c:any` is a list of OR-groups. Architecture qualifiers
//! (`:any`, `:native`, `:amd64`) are stripped: the image is single-arch.
//! Architecture restrictions (`[amd64]`) and build profiles (`<!nocheck>`)
//! only occur in source packages and are ignored if present.

use std::fmt;

use anyhow::{Result, bail};

use super::version::Op;

/// One alternative: a package name with an optional version constraint.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct Relation {
    /// Package (or virtual package) name, without architecture qualifier.
    pub name: String,
    /// `(op, version)` if the relation is versioned.
    pub constraint: Option<(Op, String)>,
}

impl Relation {
    /// Whether a package `version` meets this relation's constraint.
    pub fn accepts(&self, version: &str) -> bool {
        match &self.constraint {
            None => true,
            Some((op, target)) => op.holds(version, target),
        }
    }

    /// Whether a `Provides:` entry (with its optional `(= v)`) meets this
    /// relation. An unversioned provide only meets unversioned relations.
    pub fn accepts_provide(&self, provided: Option<&str>) -> bool {
        match (&self.constraint, provided) {
            (None, _) => true,
            (Some(_), None) => false,
            (Some(_), Some(v)) => self.accepts(v),
        }
    }
}

impl fmt::Display for Relation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.constraint {
            None => write!(f, "{}", self.name),
            Some((op, v)) => write!(f, "{} ({} {v})", self.name, op.as_str()),
        }
    }
}

/// An OR-group: satisfied by any one of its alternatives.
pub type Group = Vec<Relation>;

/// Renders an OR-group as in a control file (`a (>= 1) | b`).
pub fn group_to_string(group: &[Relation]) -> String {
    group
        .iter()
        .map(Relation::to_string)
        .collect::<Vec<_>>()
        .join(" | ")
}

/// Parses a relation field (`Depends`, `Pre-Depends`, `Conflicts`, …) into
/// its OR-groups. An empty field gives no groups.
pub fn parse_groups(field: &str) -> Result<Vec<Group>> {
    let mut out = Vec::new();
    for group in field.split(',') {
        if group.trim().is_empty() {
            continue;
        }
        let alternatives = group
            .split('|')
            .map(parse_relation)
            .collect::<Result<Vec<_>>>()?;
        out.push(alternatives);
    }
    Ok(out)
}

/// Parses a `Provides:` field: a comma list of names with optional `(= v)`.
/// Returns `(name, provided version)` pairs.
pub fn parse_provides(field: &str) -> Result<Vec<(String, Option<String>)>> {
    let mut out = Vec::new();
    for item in field.split(',') {
        if item.trim().is_empty() {
            continue;
        }
        let r = parse_relation(item)?;
        let version = match r.constraint {
            None => None,
            Some((Op::Eq, v)) => Some(v),
            Some((op, _)) => bail!(
                "`{}`: a Provides entry may only use `=`, not `{}`",
                item.trim(),
                op.as_str()
            ),
        };
        out.push((r.name, version));
    }
    Ok(out)
}

/// Parses one alternative: `name[:arch] [(op version)] [[archs]] [<profiles>]`.
fn parse_relation(text: &str) -> Result<Relation> {
    let s = text.trim();
    // Anything after the name or the `(…)` constraint is source-only syntax
    // (architecture restrictions, build profiles) and is dropped.
    let (name_part, constraint) = match s.find('(') {
        None => (s.find(['[', '<']).map_or(s, |i| &s[..i]), None),
        Some(open) => {
            let Some(close) = s[open..].find(')').map(|c| open + c) else {
                bail!("`{}`: unclosed `(`", text.trim());
            };
            let inner = s[open + 1..close].trim();
            let split = inner
                .find(|c: char| !matches!(c, '<' | '>' | '='))
                .unwrap_or(inner.len());
            let (op, version) = inner.split_at(split);
            let Some(op) = Op::parse(op.trim()) else {
                bail!("`{}`: unknown version operator `{op}`", text.trim());
            };
            let version = version.trim();
            if version.is_empty() {
                bail!("`{}`: missing version", text.trim());
            }
            (s[..open].trim(), Some((op, version.to_string())))
        }
    };
    let name = name_part
        .split_once(':')
        .map_or(name_part, |(n, _)| n)
        .trim();
    if name.is_empty() || name.contains(char::is_whitespace) {
        bail!("`{}`: bad package name", text.trim());
    }
    Ok(Relation {
        name: name.to_string(),
        constraint,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rel(name: &str, c: Option<(Op, &str)>) -> Relation {
        Relation {
            name: name.into(),
            constraint: c.map(|(o, v)| (o, v.to_string())),
        }
    }

    #[test]
    fn groups_with_alternatives_constraints_and_qualifiers() {
        let g = parse_groups(
            "libc6 (>= 2.38), python3:any (>= 3.11~) | python3-minimal:native,\n libfoo(<<2),  bar:amd64 (= 1:2-3)",
        )
        .unwrap();
        assert_eq!(
            g,
            vec![
                vec![rel("libc6", Some((Op::GreaterEq, "2.38")))],
                vec![
                    rel("python3", Some((Op::GreaterEq, "3.11~"))),
                    rel("python3-minimal", None)
                ],
                vec![rel("libfoo", Some((Op::Less, "2")))],
                vec![rel("bar", Some((Op::Eq, "1:2-3")))],
            ]
        );
        assert_eq!(
            group_to_string(&g[1]),
            "python3 (>= 3.11~) | python3-minimal"
        );
        assert!(parse_groups("").unwrap().is_empty());
    }

    #[test]
    fn source_only_syntax_is_dropped() {
        let g = parse_groups("foo (>= 1) [amd64] <!nocheck>, bar [!i386]").unwrap();
        assert_eq!(g[0], vec![rel("foo", Some((Op::GreaterEq, "1")))]);
        assert_eq!(g[1], vec![rel("bar", None)]);
    }

    #[test]
    fn provides() {
        let p = parse_provides("awk, c-compiler (= 4:14.2.0-1), libfoo:any (= 2)").unwrap();
        assert_eq!(
            p,
            vec![
                ("awk".into(), None),
                ("c-compiler".into(), Some("4:14.2.0-1".into())),
                ("libfoo".into(), Some("2".into())),
            ]
        );
        assert!(parse_provides("a (>= 1)").is_err());
    }

    #[test]
    fn accepts() {
        let r = rel("x", Some((Op::GreaterEq, "2.0")));
        assert!(r.accepts("2.0-1"));
        assert!(!r.accepts("1.9"));
        assert!(r.accepts_provide(Some("2.1")));
        assert!(!r.accepts_provide(None));
        assert!(rel("x", None).accepts_provide(None));
    }

    #[test]
    fn malformed() {
        assert!(parse_groups("foo (>= 1").is_err());
        assert!(parse_groups("foo (~ 1)").is_err());
        assert!(parse_groups("foo (>=)").is_err());
        assert!(parse_groups("foo | | bar").is_err());
    }
}
