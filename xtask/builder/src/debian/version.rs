//! Debian version comparison, as dpkg does it (`[epoch:]upstream[-revision]`).

use std::cmp::Ordering;

/// Compares two Debian versions like `dpkg --compare-versions`.
///
/// The epoch compares numerically (absent is 0); upstream version and
/// revision compare with dpkg's `verrevcmp`: alternating runs of non-digits
/// (compared character by character, `~` before everything including the end
/// of the string, letters before non-letters) and digits (compared
/// numerically). An absent revision equals `0`.
pub fn compare(a: &str, b: &str) -> Ordering {
    let (ea, ua, ra) = split(a);
    let (eb, ub, rb) = split(b);
    compare_numeric(ea, eb)
        .then_with(|| verrevcmp(ua, ub))
        .then_with(|| verrevcmp(ra, rb))
}

/// Splits a version into epoch, upstream version and revision.
fn split(v: &str) -> (&str, &str, &str) {
    let v = v.trim();
    let (epoch, rest) = match v.split_once(':') {
        Some((e, rest)) if e.bytes().all(|c| c.is_ascii_digit()) => (e, rest),
        _ => ("", v),
    };
    match rest.rsplit_once('-') {
        Some((upstream, revision)) => (epoch, upstream, revision),
        None => (epoch, rest, ""),
    }
}

/// Compares two digit strings as unbounded non-negative integers.
fn compare_numeric(a: &str, b: &str) -> Ordering {
    let a = a.trim_start_matches('0');
    let b = b.trim_start_matches('0');
    a.len().cmp(&b.len()).then_with(|| a.cmp(b))
}

/// dpkg's character weight in the non-digit part of a version.
fn order(c: Option<u8>) -> i32 {
    match c {
        None => 0,
        Some(c) if c.is_ascii_digit() => 0,
        Some(c) if c.is_ascii_alphabetic() => i32::from(c),
        Some(b'~') => -1,
        Some(c) => i32::from(c) + 256,
    }
}

/// dpkg's `verrevcmp`.
fn verrevcmp(a: &str, b: &str) -> Ordering {
    let (a, b) = (a.as_bytes(), b.as_bytes());
    let (mut i, mut j) = (0usize, 0usize);
    let digit = |s: &[u8], k: usize| s.get(k).is_some_and(u8::is_ascii_digit);
    while i < a.len() || j < b.len() {
        while (i < a.len() && !digit(a, i)) || (j < b.len() && !digit(b, j)) {
            let ac = order(a.get(i).copied());
            let bc = order(b.get(j).copied());
            if ac != bc {
                return ac.cmp(&bc);
            }
            i += 1;
            j += 1;
        }
        while a.get(i) == Some(&b'0') {
            i += 1;
        }
        while b.get(j) == Some(&b'0') {
            j += 1;
        }
        let mut first_diff = Ordering::Equal;
        while digit(a, i) && digit(b, j) {
            if first_diff == Ordering::Equal {
                first_diff = a[i].cmp(&b[j]);
            }
            i += 1;
            j += 1;
        }
        if digit(a, i) {
            return Ordering::Greater;
        }
        if digit(b, j) {
            return Ordering::Less;
        }
        if first_diff != Ordering::Equal {
            return first_diff;
        }
    }
    Ordering::Equal
}

/// A version relation operator of a dependency field.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Op {
    /// `<<`
    Less,
    /// `<=` (and the obsolete `<`)
    LessEq,
    /// `=`
    Eq,
    /// `>=` (and the obsolete `>`)
    GreaterEq,
    /// `>>`
    Greater,
}

impl Op {
    /// Parses `<<`, `<=`, `=`, `>=`, `>>` and the obsolete `<`, `>`.
    pub fn parse(s: &str) -> Option<Op> {
        Some(match s {
            "<<" => Op::Less,
            "<=" | "<" => Op::LessEq,
            "=" => Op::Eq,
            ">=" | ">" => Op::GreaterEq,
            ">>" => Op::Greater,
            _ => return None,
        })
    }

    /// The operator as written in control files.
    pub fn as_str(self) -> &'static str {
        match self {
            Op::Less => "<<",
            Op::LessEq => "<=",
            Op::Eq => "=",
            Op::GreaterEq => ">=",
            Op::Greater => ">>",
        }
    }

    /// Whether `version` stands in this relation to `target`.
    pub fn holds(self, version: &str, target: &str) -> bool {
        let c = compare(version, target);
        match self {
            Op::Less => c == Ordering::Less,
            Op::LessEq => c != Ordering::Greater,
            Op::Eq => c == Ordering::Equal,
            Op::GreaterEq => c != Ordering::Less,
            Op::Greater => c == Ordering::Greater,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use Ordering::{Equal, Greater, Less};

    #[test]
    fn known_pairs() {
        let cases = [
            ("1.0~rc1", "1.0", Less),
            ("1:0.1", "2.0", Greater),
            ("1.0-1", "1.0-1+deb13u1", Less),
            ("2.36-9+deb12u4", "2.36-9+deb12u10", Less),
            ("1.0", "1.0", Equal),
            ("0:1.0", "1.0", Equal),
            ("1.0-0", "1.0", Equal),
            ("1.0~~", "1.0~~a", Less),
            ("1.0~~a", "1.0~", Less),
            ("1.0~", "1.0", Less),
            ("1.0", "1.0a", Less),
            ("1.0a", "1.0+", Less),
            ("1.0+", "1.0.1", Less),
            ("1.01", "1.1", Equal),
            ("1.10", "1.9", Greater),
            ("2:1", "10:0", Less),
            ("1.2-3-4", "1.2-3-5", Less),
            ("1.2-3-4", "1.2-3", Greater),
            ("6.12.57-1", "6.12.48-1", Greater),
            ("252.39-1~deb12u1", "252.39-1", Less),
            ("1:2.41-1", "2.41-1", Greater),
            ("99999999999999999999", "99999999999999999998", Greater),
        ];
        for (a, b, want) in cases {
            assert_eq!(compare(a, b), want, "{a} vs {b}");
            assert_eq!(compare(b, a), want.reverse(), "{b} vs {a}");
        }
    }

    #[test]
    fn operators() {
        assert!(Op::GreaterEq.holds("2.36-9", "2.36"));
        assert!(Op::Less.holds("1.0~rc1", "1.0"));
        assert!(!Op::Less.holds("1.0", "1.0"));
        assert!(Op::LessEq.holds("1.0", "1.0"));
        assert!(Op::Eq.holds("0:1.0-0", "1.0"));
        assert!(Op::Greater.holds("1.0-1+deb13u1", "1.0-1"));
        assert!(!Op::Greater.holds("1.0", "1.0"));
        assert_eq!(Op::parse(">"), Some(Op::GreaterEq));
        assert_eq!(Op::parse("<"), Some(Op::LessEq));
        assert_eq!(Op::parse("=>"), None);
        assert_eq!(Op::Greater.as_str(), ">>");
    }
}
