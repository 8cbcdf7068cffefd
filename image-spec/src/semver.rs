//! Just enough semver for Node versions and npm `engines` ranges.

use std::cmp::Ordering;
use std::fmt;
use std::str::FromStr;

/// An exact `major.minor.patch` version (no pre-release, no build).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Version {
    /// Major number.
    pub major: u64,
    /// Minor number.
    pub minor: u64,
    /// Patch number.
    pub patch: u64,
}

impl FromStr for Version {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        let s = s.trim().trim_start_matches('v');
        let mut parts = s.split('.');
        let mut next = |what: &str| -> Result<u64, String> {
            let p = parts
                .next()
                .ok_or_else(|| format!("`{s}` lacks a {what} number"))?;
            if p.is_empty() || !p.bytes().all(|b| b.is_ascii_digit()) {
                return Err(format!(
                    "`{s}` has a {what} part `{p}` that is not a number"
                ));
            }
            p.parse::<u64>().map_err(|e| format!("`{s}`: {e}"))
        };
        let v = Version {
            major: next("major")?,
            minor: next("minor")?,
            patch: next("patch")?,
        };
        if parts.next().is_some() {
            return Err(format!("`{s}` has more than three parts"));
        }
        Ok(v)
    }
}

impl serde::Serialize for Version {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl fmt::Display for Version {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}.{}.{}", self.major, self.minor, self.patch)
    }
}

/// A range in npm's `engines` syntax, limited to what Node ranges use:
/// `||`-separated sets of space-separated `>=`, `>`, `<`, `<=`, `=` comparators.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Range {
    sets: Vec<Vec<(Ordering, bool, Version)>>,
    text: String,
}

impl FromStr for Range {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        let mut sets = Vec::new();
        for set in s.split("||") {
            let mut comps = Vec::new();
            for comp in set.split_whitespace() {
                let (ord, inclusive, rest) = if let Some(r) = comp.strip_prefix(">=") {
                    (Ordering::Greater, true, r)
                } else if let Some(r) = comp.strip_prefix("<=") {
                    (Ordering::Less, true, r)
                } else if let Some(r) = comp.strip_prefix('>') {
                    (Ordering::Greater, false, r)
                } else if let Some(r) = comp.strip_prefix('<') {
                    (Ordering::Less, false, r)
                } else if let Some(r) = comp.strip_prefix('=') {
                    (Ordering::Equal, true, r)
                } else {
                    (Ordering::Equal, true, comp)
                };
                comps.push((ord, inclusive, pad(rest).parse()?));
            }
            if comps.is_empty() {
                return Err(format!("empty comparator set in range `{s}`"));
            }
            sets.push(comps);
        }
        Ok(Range {
            sets,
            text: s.trim().to_string(),
        })
    }
}

/// `24` → `24.0.0`, `24.1` → `24.1.0`.
fn pad(v: &str) -> String {
    match v.matches('.').count() {
        0 => format!("{v}.0.0"),
        1 => format!("{v}.0"),
        _ => v.to_string(),
    }
}

impl Range {
    /// Whether `v` lies in the range.
    pub fn matches(&self, v: Version) -> bool {
        self.sets.iter().any(|set| {
            set.iter().all(|&(ord, inclusive, bound)| {
                let c = v.cmp(&bound);
                c == ord || (inclusive && c == Ordering::Equal)
            })
        })
    }
}

impl fmt::Display for Range {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.text)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[track_caller]
    fn check(range: &str, version: &str, expected: bool) {
        let r: Range = range.parse().unwrap();
        assert_eq!(
            r.matches(version.parse().unwrap()),
            expected,
            "{version} in {range}"
        );
    }

    #[test]
    fn openclaw_engines() {
        let r = ">=24.16.0 <25 || >=26.1.0";
        check(r, "24.21.0", true);
        check(r, "24.16.0", true);
        check(r, "24.15.9", false);
        check(r, "25.0.0", false);
        check(r, "26.0.5", false);
        check(r, "26.1.0", true);
        check(r, "22.1.0", false);
    }

    #[test]
    fn bad_versions() {
        assert!("24.x".parse::<Version>().is_err());
        assert!("24".parse::<Version>().is_err());
        assert!("24.1.2.3".parse::<Version>().is_err());
        assert_eq!(
            "v24.21.0".parse::<Version>().unwrap().to_string(),
            "24.21.0"
        );
    }
}
