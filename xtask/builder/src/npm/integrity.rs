//! npm's integrity strings: Subresource Integrity (`sha512-<base64>`).
//!
//! Only sha512 is accepted: an `integrity` that carries nothing stronger
//! than sha1 is refused, so a package is always pinned by a sha512.

use std::io::Read;

use anyhow::{Context, Result, bail};
use base64::Engine as _;
use sha2::{Digest, Sha256, Sha512};

/// A parsed SRI string: the sha512 digests it lists (usually one).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Integrity {
    sha512: Vec<[u8; 64]>,
    text: String,
}

impl Integrity {
    /// Parses an SRI string such as `sha512-3nUL…==`. Several
    /// space-separated hashes are allowed (SRI); those with other algorithms
    /// are ignored, but at least one well-formed sha512 must be present.
    pub fn parse(text: &str) -> Result<Integrity> {
        let mut sha512 = Vec::new();
        for item in text.split_ascii_whitespace() {
            let Some((alg, rest)) = item.split_once('-') else {
                bail!("integrity `{text}`: `{item}` is not `<algorithm>-<base64>`");
            };
            if alg != "sha512" {
                continue;
            }
            // SRI allows `?options` after the digest.
            let b64 = rest.split('?').next().unwrap_or(rest);
            let bytes = base64::engine::general_purpose::STANDARD
                .decode(b64)
                .with_context(|| format!("integrity `{text}`: the sha512 is not valid base64"))?;
            let digest: [u8; 64] = bytes.as_slice().try_into().map_err(|_| {
                anyhow::anyhow!(
                    "integrity `{text}`: a sha512 digest has {} bytes, not 64",
                    bytes.len()
                )
            })?;
            sha512.push(digest);
        }
        if sha512.is_empty() {
            bail!(
                "integrity `{text}` has no sha512 digest (sha1 alone is too weak to pin a package)"
            );
        }
        Ok(Integrity {
            sha512,
            text: text.trim().to_string(),
        })
    }

    /// Whether `digest` (a raw sha512) is one of the listed digests.
    pub fn matches(&self, digest: &[u8]) -> bool {
        self.sha512.iter().any(|d| d.as_slice() == digest)
    }

    /// The string as given.
    pub fn as_str(&self) -> &str {
        &self.text
    }
}

/// The SRI string (`sha512-<base64>`) of `bytes`.
pub fn sri_sha512(bytes: &[u8]) -> String {
    sri_sha512_raw(&Sha512::digest(bytes))
}

/// The SRI string of a raw sha512 digest.
pub fn sri_sha512_raw(digest: &[u8]) -> String {
    format!(
        "sha512-{}",
        base64::engine::general_purpose::STANDARD.encode(digest)
    )
}

/// Digests of one stream, computed in one pass.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Digests {
    /// Raw sha512.
    pub sha512: [u8; 64],
    /// Lowercase hex sha256 (the store key).
    pub sha256: String,
    /// Length in bytes.
    pub size: u64,
}

/// Hashes everything `reader` yields with sha512 and sha256, passing each
/// chunk to `sink` as well (e.g. a file being written).
pub fn digest_stream(
    mut reader: impl Read,
    mut sink: impl FnMut(&[u8]) -> Result<()>,
) -> Result<Digests> {
    let mut s512 = Sha512::new();
    let mut s256 = Sha256::new();
    let mut buf = vec![0u8; 1 << 16];
    let mut size = 0u64;
    loop {
        let n = reader.read(&mut buf)?;
        if n == 0 {
            break;
        }
        s512.update(&buf[..n]);
        s256.update(&buf[..n]);
        sink(&buf[..n])?;
        size += n as u64;
    }
    Ok(Digests {
        sha512: s512.finalize().into(),
        sha256: hex::encode(s256.finalize()),
        size,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn verifies_its_own_digest() {
        let sri = sri_sha512(b"hello");
        let i = Integrity::parse(&sri).unwrap();
        assert!(i.matches(&Sha512::digest(b"hello")));
        assert!(!i.matches(&Sha512::digest(b"hellp")));
    }

    #[test]
    fn known_vector() {
        // `printf '' | openssl dgst -sha512 -binary | base64`
        let empty = "sha512-z4PhNX7vuL3xVChQ1m2AB9Yg5AULVxXcg/SpIdNs6c5H0NE8XYXysP+DGNKHfuwvY7kxvUdBeoGlODJ6+SfaPg==";
        let i = Integrity::parse(empty).unwrap();
        let d = digest_stream(&b""[..], |_| Ok(())).unwrap();
        assert!(i.matches(&d.sha512));
        assert_eq!(
            d.sha256,
            "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
        );
        assert_eq!(d.size, 0);
        assert_eq!(sri_sha512(b""), empty);
    }

    #[test]
    fn several_hashes_and_options() {
        let good = sri_sha512(b"x");
        let text = format!("sha1-AAAA {good}?foo");
        let i = Integrity::parse(&text).unwrap();
        assert!(i.matches(&Sha512::digest(b"x")));
    }

    #[test]
    fn refuses_sha1_only_and_garbage() {
        let e = Integrity::parse("sha1-yNhAXV4zpHjEWJyP5rOQ+yq4Tos=").unwrap_err();
        assert!(e.to_string().contains("no sha512"), "{e}");
        assert!(Integrity::parse("").is_err());
        assert!(Integrity::parse("sha512-not*base64").is_err());
        assert!(
            Integrity::parse("sha512-AAAA")
                .unwrap_err()
                .to_string()
                .contains("not 64")
        );
        assert!(Integrity::parse("sha512").is_err());
    }
}
