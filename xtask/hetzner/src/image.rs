//! The image to publish and what its build manifest says about it.

use std::path::{Path, PathBuf};

use serde::Deserialize;

/// The image file and the facts that become the snapshot's labels.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ImageInfo {
    /// The raw disk image.
    pub path: PathBuf,
    /// Its size in bytes.
    pub len: u64,
    /// Its sha256 (64 lowercase hex), as the manifest records it.
    pub sha256: String,
    /// The spec's image name (`[image] name` of image.toml).
    pub spec_name: String,
    /// The OpenClaw version baked in.
    pub openclaw_version: String,
    /// The build date (`SOURCE_DATE_EPOCH` as YYYY-MM-DD, UTC).
    pub build_date: String,
    /// The Hetzner architecture the image runs on (`x86` or `arm`).
    pub architecture: String,
}

/// The image or its manifest cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum ImageError {
    /// A file cannot be read.
    #[error("reading {path}: {source}")]
    Read {
        /// The file.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// The manifest is not what `build-image` writes.
    #[error("{path}: {reason} (rebuild it with `cargo xtask build-image`)")]
    Manifest {
        /// The manifest.
        path: PathBuf,
        /// What is wrong.
        reason: String,
    },
}

/// The part of `<name>.manifest.json` that the upload uses.
#[derive(Deserialize)]
struct Manifest {
    name: String,
    image_sha256: String,
    source_date_epoch: i64,
    openclaw: OpenClaw,
    #[serde(default)]
    debian_packages: Vec<Package>,
}

#[derive(Deserialize)]
struct OpenClaw {
    version: String,
}

#[derive(Deserialize)]
struct Package {
    architecture: String,
}

/// The manifest beside an image: `target/image/<name>.raw` →
/// `target/image/<name>.manifest.json`.
pub fn manifest_path(image: &Path) -> PathBuf {
    let stem = image
        .file_stem()
        .map(|s| s.to_string_lossy().into_owned())
        .unwrap_or_default();
    image.with_file_name(format!("{stem}.manifest.json"))
}

impl ImageInfo {
    /// Read the image's size and its manifest (`<name>.manifest.json` beside it).
    pub fn load(image: &Path) -> Result<ImageInfo, ImageError> {
        let meta = std::fs::metadata(image).map_err(|source| ImageError::Read {
            path: image.to_path_buf(),
            source,
        })?;
        let mpath = manifest_path(image);
        let text = std::fs::read_to_string(&mpath).map_err(|source| ImageError::Read {
            path: mpath.clone(),
            source,
        })?;
        let bad = |reason: String| ImageError::Manifest {
            path: mpath.clone(),
            reason,
        };
        let m: Manifest = serde_json::from_str(&text).map_err(|e| bad(e.to_string()))?;
        let sha256 = m.image_sha256.to_ascii_lowercase();
        if sha256.len() != 64 || !sha256.bytes().all(|b| b.is_ascii_hexdigit()) {
            return Err(bad(format!(
                "image_sha256 `{}` is not a sha256",
                m.image_sha256
            )));
        }
        Ok(ImageInfo {
            path: image.to_path_buf(),
            len: meta.len(),
            sha256,
            spec_name: m.name,
            openclaw_version: m.openclaw.version,
            build_date: image_spec::time::date(m.source_date_epoch),
            architecture: hetzner_architecture(&m.debian_packages).map_err(bad)?,
        })
    }
}

/// The Hetzner architecture of the image: that of its Debian packages
/// (`amd64` → `x86`, `arm64` → `arm`; `all` says nothing).
fn hetzner_architecture(packages: &[Package]) -> Result<String, String> {
    let mut archs: Vec<&str> = packages
        .iter()
        .map(|p| p.architecture.as_str())
        .filter(|a| *a != "all")
        .collect();
    archs.sort_unstable();
    archs.dedup();
    match archs.as_slice() {
        [] | ["amd64"] => Ok("x86".into()),
        ["arm64"] => Ok("arm".into()),
        other => Err(format!(
            "the image's packages have architectures {other:?}; Hetzner runs amd64 (x86) or arm64 (arm)"
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn manifest_beside_the_image() {
        assert_eq!(
            manifest_path(Path::new("target/image/openclaw-appliance.raw")),
            Path::new("target/image/openclaw-appliance.manifest.json")
        );
    }

    #[test]
    fn loads_what_build_image_writes() {
        let dir = tempfile::tempdir().unwrap();
        let img = dir.path().join("x.raw");
        std::fs::write(&img, b"0123").unwrap();
        std::fs::write(
            dir.path().join("x.manifest.json"),
            r#"{"name":"x","image_sha256":"ABCDEF0123456789abcdef0123456789abcdef0123456789abcdef0123456789",
               "source_date_epoch":1763942400,"openclaw":{"version":"2026.9.6"},
               "debian_packages":[{"architecture":"all"},{"architecture":"amd64"}]}"#,
        )
        .unwrap();
        let info = ImageInfo::load(&img).unwrap();
        assert_eq!(info.len, 4);
        assert_eq!(info.architecture, "x86");
        assert_eq!(info.build_date, "2025-11-24");
        assert!(info.sha256.starts_with("abcdef"));
    }
}
