//! Label syntax as the Hetzner Cloud API documents it ("Labels"), and label
//! selectors.
//!
//! A key is an optional DNS-subdomain prefix and `/`, then a name of at most
//! 63 characters; a value is empty or at most 63 characters. Names and values
//! begin and end with an alphanumeric and have only alphanumerics, `-`, `_`
//! and `.` between. The `hetzner.cloud/` prefix is reserved.

use std::collections::BTreeMap;

/// Labels of a resource, in a stable order.
pub type Labels = BTreeMap<String, String>;

/// A label that the API would refuse.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error("invalid label `{label}`: {reason}")]
pub struct LabelError {
    /// The label as given.
    pub label: String,
    /// Why it is refused.
    pub reason: String,
}

fn refuse(label: &str, reason: &str) -> LabelError {
    LabelError {
        label: label.to_string(),
        reason: reason.to_string(),
    }
}

/// A name segment or a value (non-empty): ≤ 63 characters, alphanumeric at
/// both ends, alphanumerics, `-`, `_`, `.` between.
fn is_segment(s: &str) -> bool {
    let b = s.as_bytes();
    !b.is_empty()
        && b.len() <= 63
        && b[0].is_ascii_alphanumeric()
        && b[b.len() - 1].is_ascii_alphanumeric()
        && b.iter()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, b'-' | b'_' | b'.'))
}

/// A DNS subdomain: dot-separated DNS labels, ≤ 253 characters.
fn is_dns_subdomain(s: &str) -> bool {
    s.len() <= 253
        && s.split('.').all(|l| {
            let b = l.as_bytes();
            !b.is_empty()
                && b.len() <= 63
                && b[0].is_ascii_alphanumeric()
                && b[b.len() - 1].is_ascii_alphanumeric()
                && b.iter().all(|c| c.is_ascii_alphanumeric() || *c == b'-')
        })
}

/// Check a key and a value against the documented syntax.
pub fn validate(key: &str, value: &str) -> Result<(), LabelError> {
    let shown = format!("{key}={value}");
    let name = match key.split_once('/') {
        Some((prefix, name)) => {
            if !is_dns_subdomain(prefix) {
                return Err(refuse(
                    &shown,
                    "the key's prefix must be a DNS subdomain (e.g. example.com/name)",
                ));
            }
            if prefix == "hetzner.cloud" {
                return Err(refuse(&shown, "the hetzner.cloud/ prefix is reserved"));
            }
            name
        }
        None => key,
    };
    if !is_segment(name) {
        return Err(refuse(
            &shown,
            "a key's name must be 1–63 characters, alphanumeric at both ends, with only `-`, `_`, `.` between",
        ));
    }
    if !value.is_empty() && !is_segment(value) {
        return Err(refuse(
            &shown,
            "a value must be empty or 1–63 characters, alphanumeric at both ends, with only `-`, `_`, `.` between",
        ));
    }
    Ok(())
}

/// Parse `key=value` (as given to `--label`), validated.
pub fn parse(arg: &str) -> Result<(String, String), LabelError> {
    let (k, v) = arg
        .split_once('=')
        .ok_or_else(|| refuse(arg, "expected key=value"))?;
    validate(k, v)?;
    Ok((k.to_string(), v.to_string()))
}

/// A selector matching every given label exactly: `k1==v1,k2==v2`.
pub fn selector(labels: &Labels) -> String {
    labels
        .iter()
        .map(|(k, v)| format!("{k}=={v}"))
        .collect::<Vec<_>>()
        .join(",")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[track_caller]
    fn check(arg: &str, ok: bool) {
        assert_eq!(parse(arg).is_ok(), ok, "{arg}: {:?}", parse(arg));
    }

    #[test]
    fn documented_examples_and_limits() {
        check("environment=development", true);
        check("example.com/my=label", true);
        check("just-a-key=", true);
        check("openclaw-image/version=2026.9.6", true);
        check("hetzner.cloud/x=y", false);
        check("-bad=x", false);
        check("k=-bad", false);
        check("k=a b", false);
        check("noequals", false);
        check(&format!("k={}", "a".repeat(63)), true);
        check(&format!("k={}", "a".repeat(64)), false);
        check(&format!("{}=v", "a".repeat(64)), false);
        check("Bad_Prefix/x=y", false);
    }

    #[test]
    fn selector_is_exact_and_stable() {
        let l: Labels = [("b", "2"), ("a/x", "1")]
            .into_iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        assert_eq!(selector(&l), "a/x==1,b==2");
    }
}
