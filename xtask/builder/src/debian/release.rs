//! Signed release files and the package indexes they vouch for.
//!
//! For a suite: download `<root>/dists/<suite>/InRelease`, verify its
//! OpenPGP signature with `gpgv` against the Debian archive keyring, read
//! the `SHA256:` list of the text gpgv verified, then download each
//! `<component>/binary-<arch>/Packages.xz`, check its size and sha256,
//! decompress it and check the uncompressed sha256 too. Debian's
//! `binary-<arch>` indexes also list the `Architecture: all` packages, so
//! `binary-all` is not read. This is the only network access of the module.

use std::ffi::OsString;
use std::fs;
use std::path::Path;

use anyhow::{Context, Result, anyhow, bail};
use image_spec::lock::Release;
use sha2::{Digest, Sha256};

use super::control;

/// Largest InRelease accepted (Debian's are about 150 KiB).
const MAX_INRELEASE: u64 = 16 << 20;

/// One downloaded, verified `Packages` index.
#[derive(Debug, Clone)]
pub struct PackagesFile {
    /// Component (`main`).
    pub component: String,
    /// Where it was downloaded from (for error messages).
    pub url: String,
    /// The decompressed text.
    pub text: String,
}

/// A verified suite: its release record and its package indexes.
#[derive(Debug, Clone)]
pub struct SuiteIndex {
    /// The lock's record of the InRelease file.
    pub release: Release,
    /// One `Packages` file per component, in the order asked for.
    pub packages: Vec<PackagesFile>,
}

/// The builder's HTTP agent ([`crate::http::agent`]).
pub fn agent() -> Result<ureq::Agent> {
    crate::http::agent()
}

/// Downloads and verifies `suite` from the archive root `root` (named
/// `archive` in the lock: `debian` or `debian-security`), reading the
/// `Packages` index of each of `components` for `arch`. Compressed indexes
/// are cached in `cache_dir` under their sha256 and re-checked when read.
pub fn fetch_suite(
    agent: &ureq::Agent,
    root: &str,
    archive: &str,
    suite: &str,
    components: &[String],
    arch: &str,
    cache_dir: &Path,
) -> Result<SuiteIndex> {
    let dists = format!("{root}/dists/{suite}");
    let url = format!("{dists}/InRelease");
    let inrelease = download(agent, &url, MAX_INRELEASE)?;
    let signed = verify_inrelease(&inrelease, suite, &url)?;
    let info = parse_release(&signed).with_context(|| format!("parsing {url}"))?;
    if info.codename != suite && info.suite != suite {
        bail!(
            "{url}: the release file is for suite `{}` (codename `{}`), not `{suite}`",
            info.suite,
            info.codename
        );
    }

    fs::create_dir_all(cache_dir)
        .with_context(|| format!("creating cache directory {}", cache_dir.display()))?;
    let mut packages = Vec::new();
    for component in components {
        let dir = format!("{component}/binary-{arch}");
        let xz_path = format!("{dir}/Packages.xz");
        let Some((sha256, size)) = info.files.get(&xz_path) else {
            bail!(
                "{url} lists no {xz_path}: does the mirror carry component `{component}` for {arch}?"
            );
        };
        let plain_url = format!("{dists}/{xz_path}");
        let mut urls = Vec::new();
        if info.by_hash {
            urls.push(format!("{dists}/{dir}/by-hash/SHA256/{sha256}"));
        }
        urls.push(plain_url.clone());
        let xz = cached_or_download(agent, &urls, sha256, *size, cache_dir)?;

        let mut plain = Vec::new();
        lzma_rs::xz_decompress(&mut xz.as_slice(), &mut plain)
            .map_err(|e| anyhow!("decompressing {plain_url}: {e}"))?;
        if let Some((want, want_size)) = info.files.get(&format!("{dir}/Packages")) {
            let have = hex::encode(Sha256::digest(&plain));
            if &have != want || plain.len() as u64 != *want_size {
                bail!(
                    "{plain_url}: decompressed index is {} bytes with sha256 {have}, but {url} says {want_size} bytes with sha256 {want}",
                    plain.len()
                );
            }
        }
        let text =
            String::from_utf8(plain).with_context(|| format!("{plain_url}: index is not UTF-8"))?;
        packages.push(PackagesFile {
            component: component.clone(),
            url: plain_url,
            text,
        });
    }

    Ok(SuiteIndex {
        release: Release {
            suite: suite.to_string(),
            archive: archive.to_string(),
            date: info.date,
            inrelease_sha256: hex::encode(Sha256::digest(&inrelease)),
        },
        packages,
    })
}

/// GETs `url` into memory (at most `limit` bytes). Errors name the URL and
/// say whether the server answered (HTTP status) or could not be reached.
fn download(agent: &ureq::Agent, url: &str, limit: u64) -> Result<Vec<u8>> {
    let mut response = agent.get(url).call().map_err(|e| match e {
        ureq::Error::StatusCode(404) => {
            anyhow!("{url}: HTTP 404 Not Found (does the mirror carry this suite and component?)")
        }
        ureq::Error::StatusCode(code) => anyhow!("{url}: HTTP status {code}"),
        other => {
            anyhow!("{url}: cannot download (no network, or the mirror is unreachable): {other}")
        }
    })?;
    response
        .body_mut()
        .with_config()
        .limit(limit)
        .read_to_vec()
        .with_context(|| format!("{url}: reading the response"))
}

/// The compressed index with this `sha256` and `size`: from the cache if a
/// good copy is there, else downloaded from the first of `urls` that works
/// and stored in the cache.
fn cached_or_download(
    agent: &ureq::Agent,
    urls: &[String],
    sha256: &str,
    size: u64,
    cache_dir: &Path,
) -> Result<Vec<u8>> {
    let cached = cache_dir.join(format!("{sha256}.Packages.xz"));
    if let Ok(bytes) = fs::read(&cached) {
        if check(&bytes, sha256, size).is_ok() {
            return Ok(bytes);
        }
        // A damaged or truncated copy: replace it.
        fs::remove_file(&cached)
            .with_context(|| format!("removing damaged cache file {}", cached.display()))?;
    }
    let mut errors = Vec::new();
    for url in urls {
        let bytes = match download(agent, url, size + 1) {
            Ok(bytes) => bytes,
            Err(e) => {
                errors.push(format!("{e:#}"));
                continue;
            }
        };
        if let Err(e) = check(&bytes, sha256, size) {
            errors.push(format!("{url}: {e}"));
            continue;
        }
        let partial = cache_dir.join(format!(
            "{sha256}.Packages.xz.partial-{}",
            std::process::id()
        ));
        fs::write(&partial, &bytes).with_context(|| format!("writing {}", partial.display()))?;
        fs::rename(&partial, &cached)
            .with_context(|| format!("renaming {} to {}", partial.display(), cached.display()))?;
        return Ok(bytes);
    }
    bail!("cannot get a good index: {}", errors.join("; "))
}

/// Checks `bytes` against an expected sha256 and size.
fn check(bytes: &[u8], sha256: &str, size: u64) -> Result<()> {
    let have = hex::encode(Sha256::digest(bytes));
    if bytes.len() as u64 != size || have != sha256 {
        bail!(
            "got {} bytes with sha256 {have}, the release file says {size} bytes with sha256 {sha256}",
            bytes.len()
        );
    }
    Ok(())
}

/// Verifies the InRelease `bytes` of `suite` (downloaded from `url`) with
/// `gpgv` and returns the text gpgv verified. The file must be a single
/// clearsigned message with nothing outside it, and gpgv's output must be
/// that message's body.
pub fn verify_inrelease(bytes: &[u8], suite: &str, url: &str) -> Result<String> {
    let text = std::str::from_utf8(bytes).with_context(|| format!("{url}: not UTF-8"))?;
    let body =
        clearsigned_body(text).with_context(|| format!("{url}: not a clearsigned InRelease"))?;
    // The keyring `gpgv` checks release signatures against.
    let keyring = crate::host::debian_keyring();
    if !keyring.is_file() {
        bail!(
            "the Debian archive keyring {} is missing: install debian-archive-keyring, or set {} \
             to the keyring file",
            keyring.display(),
            crate::host::DEBIAN_KEYRING_ENV
        );
    }
    let dir = tempfile::tempdir().context("creating a temporary directory for gpgv")?;
    let file = dir.path().join("InRelease");
    let verified = dir.path().join("InRelease.verified");
    fs::write(&file, bytes).with_context(|| format!("writing {}", file.display()))?;
    let args: Vec<OsString> = vec![
        "--keyring".into(),
        keyring.into(),
        "--status-fd".into(),
        "1".into(),
        "--output".into(),
        verified.clone().into(),
        file.into(),
    ];
    let output = duct::cmd("gpgv", args)
        .stdout_capture()
        .stderr_capture()
        .unchecked()
        .run()
        .context("running gpgv (is the gpgv package installed?)")?;
    let status = String::from_utf8_lossy(&output.stdout);
    if let Err(why) = judge_gpgv_status(&status) {
        bail!(
            "{suite}: the signature of {url} does not verify: {why}\ngpgv said:\n{}{}",
            status,
            String::from_utf8_lossy(&output.stderr)
        );
    }
    let signed = fs::read_to_string(&verified)
        .with_context(|| format!("{suite}: reading the text gpgv verified from {url}"))?;
    if signed.trim_end_matches(['\r', '\n']) != body.trim_end_matches(['\r', '\n']) {
        bail!("{suite}: {url}: the text gpgv verified differs from the clearsigned body");
    }
    Ok(signed)
}

/// Decides from gpgv's `--status-fd` output whether the file is good: at
/// least one valid signature by a key of the keyring, and no bad, expired or
/// revoked one. Signatures by keys missing from the keyring (`ERRSIG`) are
/// tolerated next to a valid one, as apt does.
fn judge_gpgv_status(status: &str) -> Result<(), String> {
    let mut valid = 0;
    for line in status.lines() {
        let Some(rest) = line.strip_prefix("[GNUPG:] ") else {
            continue;
        };
        let keyword = rest.split_whitespace().next().unwrap_or("");
        match keyword {
            "VALIDSIG" => valid += 1,
            "BADSIG" | "EXPKEYSIG" | "REVKEYSIG" | "EXPSIG" => {
                return Err(format!("gpgv reports {keyword}"));
            }
            _ => {}
        }
    }
    if valid == 0 {
        return Err("no valid signature by a key of the Debian archive keyring".into());
    }
    Ok(())
}

/// The body of a clearsigned message (dash-escaping undone), checking that
/// the text is one such message with nothing but blank lines around it.
pub fn clearsigned_body(text: &str) -> Result<String> {
    let mut lines = text.split('\n').map(|l| l.strip_suffix('\r').unwrap_or(l));
    let mut first = lines.next();
    while first.is_some_and(|l| l.trim().is_empty()) {
        first = lines.next();
    }
    if first != Some("-----BEGIN PGP SIGNED MESSAGE-----") {
        bail!("does not start with `-----BEGIN PGP SIGNED MESSAGE-----`");
    }
    // Armor headers (`Hash: SHA256`) up to a blank line.
    loop {
        match lines.next() {
            None => bail!("ends inside the armor headers"),
            Some(l) if l.trim().is_empty() => break,
            Some(l) if l.contains(": ") => {}
            Some(l) => bail!("bad armor header `{l}`"),
        }
    }
    let mut body = String::new();
    loop {
        match lines.next() {
            None => bail!("no `-----BEGIN PGP SIGNATURE-----`"),
            Some("-----BEGIN PGP SIGNATURE-----") => break,
            Some(l) => {
                let l = match l.strip_prefix("- ") {
                    Some(unescaped) => unescaped,
                    None if l.starts_with('-') => bail!("line `{l}` is not dash-escaped"),
                    None => l,
                };
                body.push_str(l);
                body.push('\n');
            }
        }
    }
    loop {
        match lines.next() {
            None => bail!("no `-----END PGP SIGNATURE-----`"),
            Some("-----END PGP SIGNATURE-----") => break,
            Some(_) => {}
        }
    }
    if lines.any(|l| !l.trim().is_empty()) {
        bail!("text after `-----END PGP SIGNATURE-----`");
    }
    Ok(body)
}

/// What the lock and the index download need from a release file.
#[derive(Debug, Clone, PartialEq, Eq)]
struct ReleaseInfo {
    date: String,
    suite: String,
    codename: String,
    by_hash: bool,
    /// Path below `dists/<suite>/` → (sha256, size).
    files: std::collections::BTreeMap<String, (String, u64)>,
}

fn parse_release(text: &str) -> Result<ReleaseInfo> {
    let stanzas = control::parse(text)?;
    let [stanza] = stanzas.as_slice() else {
        bail!("expected one stanza, found {}", stanzas.len());
    };
    let Some(date) = stanza.get("Date") else {
        bail!("no Date field");
    };
    let mut files = std::collections::BTreeMap::new();
    for line in stanza.lines("SHA256") {
        let mut words = line.split_whitespace();
        let (Some(sha), Some(size), Some(path), None) =
            (words.next(), words.next(), words.next(), words.next())
        else {
            bail!("bad SHA256 line `{line}`");
        };
        let size = size
            .parse::<u64>()
            .with_context(|| format!("bad size in SHA256 line `{line}`"))?;
        if sha.len() != 64 || !sha.bytes().all(|b| b.is_ascii_hexdigit()) {
            bail!("bad sha256 in line `{line}`");
        }
        files.insert(path.to_string(), (sha.to_ascii_lowercase(), size));
    }
    if files.is_empty() {
        bail!("no SHA256 field");
    }
    Ok(ReleaseInfo {
        date: date.to_string(),
        suite: stanza.get("Suite").unwrap_or("").to_string(),
        codename: stanza.get("Codename").unwrap_or("").to_string(),
        by_hash: stanza
            .get("Acquire-By-Hash")
            .is_some_and(|v| v.eq_ignore_ascii_case("yes")),
        files,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const BODY: &str = "Origin: Debian\n\
Suite: stable-security\n\
Codename: trixie-security\n\
Date: Mon, 24 Nov 2025 10:00:00 UTC\n\
Acquire-By-Hash: yes\n\
MD5Sum:\n 00000000000000000000000000000000 10 main/binary-amd64/Packages.xz\n\
SHA256:\n 1111111111111111111111111111111111111111111111111111111111111111 1234 main/binary-amd64/Packages\n \
2222222222222222222222222222222222222222222222222222222222222222 99 main/binary-amd64/Packages.xz\n";

    fn clearsigned(body: &str) -> String {
        format!(
            "-----BEGIN PGP SIGNED MESSAGE-----\nHash: SHA256\n\n{body}-----BEGIN PGP SIGNATURE-----\n\nabc=\n-----END PGP SIGNATURE-----\n"
        )
    }

    #[test]
    fn release_fields() {
        let info = parse_release(BODY).unwrap();
        assert_eq!(info.date, "Mon, 24 Nov 2025 10:00:00 UTC");
        assert_eq!(info.codename, "trixie-security");
        assert_eq!(info.suite, "stable-security");
        assert!(info.by_hash);
        assert_eq!(
            info.files.get("main/binary-amd64/Packages.xz"),
            Some(&("2".repeat(64), 99))
        );
        assert_eq!(info.files.len(), 2);
        assert!(parse_release("Date: x\nSHA256:\n zz 1 a\n").is_err());
        assert!(parse_release("SHA256:\n").is_err());
    }

    #[test]
    fn clearsign_armor() {
        assert_eq!(clearsigned_body(&clearsigned(BODY)).unwrap(), BODY);
        let escaped = clearsigned("A: b\n- -----not armor\n");
        assert_eq!(
            clearsigned_body(&escaped).unwrap(),
            "A: b\n-----not armor\n"
        );
    }

    #[test]
    fn clearsign_armor_rejects_extra_text() {
        let mut after = clearsigned(BODY);
        after.push_str("Origin: Evil\n");
        assert!(clearsigned_body(&after).is_err());
        let before = format!("Origin: Evil\n{}", clearsigned(BODY));
        assert!(clearsigned_body(&before).is_err());
        let unescaped = clearsigned("A: b\n-----BEGIN PGP SIGNED MESSAGE-----\n");
        assert!(clearsigned_body(&unescaped).is_err());
        assert!(
            clearsigned_body("-----BEGIN PGP SIGNED MESSAGE-----\nHash: SHA256\n\nA: b\n").is_err()
        );
    }

    #[test]
    fn gpgv_status() {
        let good = "[GNUPG:] NEWSIG\n[GNUPG:] GOODSIG 78DB x\n[GNUPG:] VALIDSIG B8E5 2026-11-21\n";
        assert!(judge_gpgv_status(good).is_ok());
        let missing_one =
            format!("{good}[GNUPG:] ERRSIG 1234 1 8 01 0 9\n[GNUPG:] NO_PUBKEY 1234\n");
        assert!(judge_gpgv_status(&missing_one).is_ok());
        assert!(judge_gpgv_status("[GNUPG:] ERRSIG 1234\n[GNUPG:] NO_PUBKEY 1234\n").is_err());
        let bad = format!("{good}[GNUPG:] BADSIG 1234 x\n");
        assert_eq!(judge_gpgv_status(&bad), Err("gpgv reports BADSIG".into()));
        assert!(judge_gpgv_status("").is_err());
    }

    #[test]
    #[ignore = "needs the Debian archive keyring (apt-get install debian-archive-keyring); run with cargo test -p builder tampered_inrelease_fails_verification -- --ignored (`cargo xtask ci` does where the keyring is)"]
    fn tampered_inrelease_fails_verification() {
        let keyring = crate::host::debian_keyring();
        assert!(
            keyring.is_file(),
            "{} is missing: apt-get install debian-archive-keyring, or set OPENCLAW_DEBIAN_KEYRING",
            keyring.display()
        );
        let text = clearsigned(BODY);
        let err = format!(
            "{:#}",
            verify_inrelease(
                text.as_bytes(),
                "trixie-security",
                "http://mirror.example/x/InRelease"
            )
            .unwrap_err()
        );
        assert!(err.contains("trixie-security"), "{err}");
        assert!(err.contains("http://mirror.example/x/InRelease"), "{err}");
        assert!(err.contains("gpgv said"), "{err}");
    }

    #[test]
    fn size_and_hash_check() {
        let sha = hex::encode(Sha256::digest(b"abc"));
        assert!(check(b"abc", &sha, 3).is_ok());
        assert!(check(b"abc", &sha, 4).is_err());
        assert!(check(b"abd", &sha, 3).is_err());
    }

    #[test]
    fn cache_hit_needs_no_network_and_damage_is_detected() {
        let dir = tempfile::tempdir().unwrap();
        let bytes = b"cached index".to_vec();
        let sha = hex::encode(Sha256::digest(&bytes));
        fs::write(dir.path().join(format!("{sha}.Packages.xz")), &bytes).unwrap();
        // An unroutable URL: only the cache can answer.
        let urls = vec!["http://127.0.0.1:9/none".to_string()];
        let agent = agent().unwrap();
        let got = cached_or_download(&agent, &urls, &sha, bytes.len() as u64, dir.path()).unwrap();
        assert_eq!(got, bytes);

        fs::write(dir.path().join(format!("{sha}.Packages.xz")), b"damaged").unwrap();
        let err = cached_or_download(&agent, &urls, &sha, bytes.len() as u64, dir.path())
            .unwrap_err()
            .to_string();
        assert!(err.contains("http://127.0.0.1:9/none"), "{err}");
        assert!(!dir.path().join(format!("{sha}.Packages.xz")).exists());
    }
}
