//! Which Debian mirror to use: read from the host's apt configuration.
//!
//! Only the URIs are taken: the host may run another release (its sources
//! name its own suites); the image's suites are used with those roots.

use std::fs;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail};

use super::control;

/// The two archive roots, as URLs without a trailing slash.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Archives {
    /// Root of the main archive (suites `trixie`, `trixie-updates`).
    pub debian: String,
    /// Root of the security archive (suite `trixie-security`).
    pub security: String,
}

impl Archives {
    /// The root serving `suite`, and the archive's name as recorded in the
    /// lock: `debian-security` for `*-security` suites, `debian` otherwise.
    pub fn for_suite(&self, suite: &str) -> (&str, &'static str) {
        if is_security_suite(suite) {
            (&self.security, "debian-security")
        } else {
            (&self.debian, "debian")
        }
    }
}

/// Whether `suite` lives on the security archive (`trixie-security`, or the
/// old-style `buster/updates`).
pub fn is_security_suite(suite: &str) -> bool {
    suite.ends_with("-security") || suite.ends_with("/updates")
}

/// One `deb` source entry: a URI and the suites used with it.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Entry {
    uri: String,
    suites: Vec<String>,
}

/// Reads the archive roots from the host's apt configuration in `etc_apt`
/// (normally `/etc/apt`): `sources.list`, then `sources.list.d/*.list`
/// (one-line format) and `sources.list.d/*.sources` (deb822) in file name
/// order. Files with other names (`*.disabled-by-farm`, `*.save`), comments,
/// `deb-src` entries, disabled stanzas and non-HTTP URIs are ignored. The
/// first URI used with a `*-security` suite is the security root; the first
/// URI used with any other suite is the main root.
pub fn host_archives(etc_apt: &Path) -> Result<Archives> {
    let mut files: Vec<PathBuf> = Vec::new();
    let list = etc_apt.join("sources.list");
    if list.is_file() {
        files.push(list);
    }
    let dir = etc_apt.join("sources.list.d");
    if dir.is_dir() {
        let mut more = Vec::new();
        for entry in
            fs::read_dir(&dir).with_context(|| format!("reading directory {}", dir.display()))?
        {
            let path = entry
                .with_context(|| format!("reading directory {}", dir.display()))?
                .path();
            let ext = path.extension().and_then(|e| e.to_str());
            if matches!(ext, Some("list" | "sources")) && path.is_file() {
                more.push(path);
            }
        }
        more.sort();
        files.extend(more);
    }

    let mut entries = Vec::new();
    for file in &files {
        let text =
            fs::read_to_string(file).with_context(|| format!("reading {}", file.display()))?;
        let parsed = if file.extension().is_some_and(|e| e == "sources") {
            parse_deb822(&text)
        } else {
            Ok(parse_one_line(&text))
        };
        entries.extend(parsed.with_context(|| format!("parsing {}", file.display()))?);
    }

    let pick = |security: bool| {
        entries
            .iter()
            .find(|e| e.suites.iter().any(|s| is_security_suite(s) == security))
            .map(|e| e.uri.clone())
    };
    let where_ = format!(
        "{} and {}",
        etc_apt.join("sources.list").display(),
        etc_apt.join("sources.list.d").display()
    );
    let Some(debian) = pick(false) else {
        bail!("no Debian mirror found in {where_}: pass --mirror URL");
    };
    let Some(security) = pick(true) else {
        bail!(
            "no Debian security mirror (a `*-security` suite) found in {where_}: pass --security-mirror URL"
        );
    };
    Ok(Archives { debian, security })
}

/// Normalises a URI; `None` for schemes we cannot fetch from.
fn usable_uri(uri: &str) -> Option<String> {
    let uri = uri.trim();
    (uri.starts_with("http://") || uri.starts_with("https://"))
        .then(|| uri.trim_end_matches('/').to_string())
}

/// Parses one-line-format sources: `deb [options] uri suite [components…]`.
fn parse_one_line(text: &str) -> Vec<Entry> {
    let mut out = Vec::new();
    for line in text.lines() {
        let line = line.split('#').next().unwrap_or("").trim();
        let Some(rest) = line.strip_prefix("deb") else {
            continue;
        };
        if !rest.starts_with([' ', '\t']) {
            continue; // `deb-src` and anything else
        }
        let mut rest = rest.trim_start();
        if let Some(options) = rest.strip_prefix('[') {
            let Some(close) = options.find(']') else {
                continue;
            };
            rest = options[close + 1..].trim_start();
        }
        let mut words = rest.split_whitespace();
        let (Some(uri), Some(suite)) = (words.next(), words.next()) else {
            continue;
        };
        if let Some(uri) = usable_uri(uri) {
            out.push(Entry {
                uri,
                suites: vec![suite.to_string()],
            });
        }
    }
    out
}

/// Parses deb822 `.sources` stanzas (`Types`, `URIs`, `Suites`, `Enabled`).
fn parse_deb822(text: &str) -> Result<Vec<Entry>> {
    let mut out = Vec::new();
    for stanza in control::parse(text)? {
        let has_deb = stanza
            .get("Types")
            .is_some_and(|t| t.split_whitespace().any(|t| t == "deb"));
        let enabled = stanza
            .get("Enabled")
            .is_none_or(|e| !e.eq_ignore_ascii_case("no"));
        if !has_deb || !enabled {
            continue;
        }
        let suites: Vec<String> = stanza
            .get("Suites")
            .unwrap_or("")
            .split_whitespace()
            .map(str::to_string)
            .collect();
        if suites.is_empty() {
            continue;
        }
        for uri in stanza.get("URIs").unwrap_or("").split_whitespace() {
            if let Some(uri) = usable_uri(uri) {
                out.push(Entry {
                    uri,
                    suites: suites.clone(),
                });
            }
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    const DEB822: &str = "Types: deb\n\
# http://snapshot.example/archive/debian/20250520T000000Z\n\
URIs: http://mirror.example/debian\n\
Suites: bookworm bookworm-updates\n\
Components: main\n\
Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg\n\
\n\
Types: deb\n\
URIs: http://mirror.example/debian-security/\n\
Suites: bookworm-security\n\
Components: main\n";

    fn write(dir: &Path, name: &str, text: &str) {
        let path = dir.join(name);
        fs::create_dir_all(path.parent().unwrap()).unwrap();
        fs::write(path, text).unwrap();
    }

    #[test]
    fn deb822_sources() {
        let tmp = tempfile::tempdir().unwrap();
        write(tmp.path(), "sources.list.d/debian.sources", DEB822);
        write(
            tmp.path(),
            "sources.list.d/other.list.disabled-by-farm",
            "deb https://elsewhere.example/apt stable main\n",
        );
        let a = host_archives(tmp.path()).unwrap();
        assert_eq!(
            a,
            Archives {
                debian: "http://mirror.example/debian".into(),
                security: "http://mirror.example/debian-security".into(),
            }
        );
        assert_eq!(
            a.for_suite("trixie-security"),
            ("http://mirror.example/debian-security", "debian-security")
        );
        assert_eq!(
            a.for_suite("trixie-updates"),
            ("http://mirror.example/debian", "debian")
        );
    }

    #[test]
    fn one_line_sources() {
        let tmp = tempfile::tempdir().unwrap();
        write(
            tmp.path(),
            "sources.list",
            "# deb http://commented.example/debian bookworm main\n\
deb-src http://src.example/debian bookworm main\n\
deb [arch=amd64 signed-by=/usr/share/keyrings/x.gpg] https://mirror.example/debian/ bookworm main contrib # trailing\n\
deb http://security.example/debian-security bookworm-security main\n",
        );
        let a = host_archives(tmp.path()).unwrap();
        assert_eq!(a.debian, "https://mirror.example/debian");
        assert_eq!(a.security, "http://security.example/debian-security");
    }

    #[test]
    fn sources_list_d_in_name_order_and_disabled_stanzas() {
        let tmp = tempfile::tempdir().unwrap();
        write(
            tmp.path(),
            "sources.list.d/b.list",
            "deb http://second.example/debian bookworm main\n",
        );
        write(
            tmp.path(),
            "sources.list.d/a.sources",
            "Types: deb\nURIs: http://off.example/debian\nSuites: bookworm\nEnabled: no\n\n\
Types: deb deb-src\nURIs: cdrom:/media http://first.example/debian\nSuites: bookworm-backports\n\n\
Types: deb\nURIs: http://first.example/debian-security\nSuites: bookworm-security\n",
        );
        let a = host_archives(tmp.path()).unwrap();
        assert_eq!(a.debian, "http://first.example/debian");
        assert_eq!(a.security, "http://first.example/debian-security");
    }

    #[test]
    fn nothing_found_is_a_clear_error() {
        let tmp = tempfile::tempdir().unwrap();
        write(
            tmp.path(),
            "sources.list.d/x.sources.disabled-by-farm",
            DEB822,
        );
        let err = host_archives(tmp.path()).unwrap_err().to_string();
        assert!(err.contains("no Debian mirror found in"), "{err}");
        assert!(err.contains("pass --mirror URL"), "{err}");

        write(
            tmp.path(),
            "sources.list",
            "deb http://mirror.example/debian bookworm main\n",
        );
        let err = host_archives(tmp.path()).unwrap_err().to_string();
        assert!(err.contains("--security-mirror"), "{err}");
    }

    #[test]
    fn malformed_sources_file_names_the_file() {
        let tmp = tempfile::tempdir().unwrap();
        write(tmp.path(), "sources.list.d/bad.sources", "Types deb\n");
        let err = format!("{:#}", host_archives(tmp.path()).unwrap_err());
        assert!(err.contains("bad.sources"), "{err}");
    }
}
