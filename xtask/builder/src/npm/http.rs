//! HTTP for the registry: packuments (JSON) and tarballs into the store.
//!
//! The agent is [`crate::http::agent`].

use std::io::{Read, Write};
use std::path::Path;
use std::time::Duration;

use anyhow::{Context, Result, anyhow, bail};

use super::integrity::{Digests, Integrity, digest_stream};
use crate::store::Store;

pub use crate::http::{agent, host_ca_files};

/// GETs `url` and parses it as JSON, with a few retries on transport errors.
pub(crate) fn get_json(agent: &ureq::Agent, url: &str) -> Result<serde_json::Value> {
    let mut last = None;
    for attempt in 1..=3u64 {
        match try_get_json(agent, url) {
            Ok(v) => return Ok(v),
            Err(e) => {
                let permanent = e.downcast_ref::<ureq::Error>().is_some_and(
                    |e| matches!(e, ureq::Error::StatusCode(c) if (400..500).contains(c)),
                );
                last = Some(e);
                if permanent {
                    break;
                }
                std::thread::sleep(Duration::from_millis(700 * attempt));
            }
        }
    }
    Err(last.unwrap_or_else(|| anyhow!("GET {url} failed")))
}

fn try_get_json(agent: &ureq::Agent, url: &str) -> Result<serde_json::Value> {
    let mut resp = agent
        .get(url)
        .header("Accept", "application/json")
        .call()
        .map_err(anyhow::Error::from)
        .with_context(|| format!("GET {url}"))?;
    let text = resp
        .body_mut()
        .with_config()
        .limit(256 << 20)
        .read_to_string()
        .with_context(|| format!("reading the body of {url}"))?;
    serde_json::from_str(&text).with_context(|| format!("{url} did not answer JSON"))
}

/// Puts the tarball with `integrity` into the store under `name`, keyed by
/// its sha256. An entry already in the store whose sha512 matches is reused
/// without downloading; otherwise `url` is downloaded, its sha512 checked
/// against `integrity` before it enters the store. Returns the digests.
pub(crate) fn store_tarball(
    agent: &ureq::Agent,
    store: &Store,
    url: &str,
    integrity: &Integrity,
    name: &str,
) -> Result<Digests> {
    if let Some(d) = find_in_store(store, integrity, name)? {
        return Ok(d);
    }
    let mut last = None;
    for attempt in 1..=3u64 {
        match try_download(agent, store, url, integrity, name) {
            Ok(d) => return Ok(d),
            Err(e) => {
                let permanent = e.downcast_ref::<ureq::Error>().is_some_and(
                    |e| matches!(e, ureq::Error::StatusCode(c) if (400..500).contains(c)),
                ) || e.to_string().contains("integrity mismatch");
                last = Some(e);
                if permanent {
                    break;
                }
                std::thread::sleep(Duration::from_millis(700 * attempt));
            }
        }
    }
    Err(last.unwrap_or_else(|| anyhow!("GET {url} failed")))
}

fn try_download(
    agent: &ureq::Agent,
    store: &Store,
    url: &str,
    integrity: &Integrity,
    name: &str,
) -> Result<Digests> {
    let mut resp = agent
        .get(url)
        .call()
        .map_err(anyhow::Error::from)
        .with_context(|| format!("GET {url}"))?;
    let reader = resp.body_mut().with_config().limit(u64::MAX).reader();
    let mut tmp = store.temp_file()?;
    let digests = {
        let file = tmp.as_file_mut();
        digest_stream(reader, |chunk| {
            file.write_all(chunk)
                .with_context(|| format!("writing {url} into the store"))
        })
        .with_context(|| format!("downloading {url}"))?
    };
    tmp.flush()
        .with_context(|| format!("writing {url} into the store"))?;
    if !integrity.matches(&digests.sha512) {
        bail!(
            "{url}: integrity mismatch: the registry says {}, the downloaded bytes are {}; nothing was stored",
            integrity.as_str(),
            super::integrity::sri_sha512_raw(&digests.sha512)
        );
    }
    store.commit(tmp, &digests.sha256, name)?;
    Ok(digests)
}

/// A store entry named `<64 hex>-<name>` whose sha512 matches `integrity`.
fn find_in_store(store: &Store, integrity: &Integrity, name: &str) -> Result<Option<Digests>> {
    let dir = store.root().join("inputs");
    let entries = match std::fs::read_dir(&dir) {
        Ok(e) => e,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(e).with_context(|| format!("listing {}", dir.display())),
    };
    let suffix = format!("-{name}");
    for entry in entries {
        let entry = entry.with_context(|| format!("listing {}", dir.display()))?;
        let file_name = entry.file_name();
        let Some(file_name) = file_name.to_str() else {
            continue;
        };
        let Some(sha) = file_name.strip_suffix(&suffix) else {
            continue;
        };
        if sha.len() != 64 || !sha.bytes().all(|b| b.is_ascii_hexdigit()) {
            continue;
        }
        let d = digest_file(&entry.path())?;
        if d.sha256 == sha && integrity.matches(&d.sha512) {
            return Ok(Some(d));
        }
    }
    Ok(None)
}

/// sha512, sha256 and size of a file.
pub(crate) fn digest_file(path: &Path) -> Result<Digests> {
    let file = std::fs::File::open(path).with_context(|| format!("opening {}", path.display()))?;
    digest_stream(file, |_| Ok(())).with_context(|| format!("reading {}", path.display()))
}

/// Reads a whole (small) file into a string, naming it on error.
pub(crate) fn read_text(path: &Path) -> Result<String> {
    let mut s = String::new();
    std::fs::File::open(path)
        .and_then(|mut f| f.read_to_string(&mut s))
        .with_context(|| format!("reading {}", path.display()))?;
    Ok(s)
}
