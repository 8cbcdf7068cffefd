//! The image archive around the layer: config, manifest, index and the
//! outer tar.

use std::collections::BTreeMap;
use std::fs::File;
use std::io::{self, BufWriter, Read, Seek, SeekFrom, Write};
use std::os::unix::fs::PermissionsExt;
use std::path::Path;

use anyhow::{Context, Result, bail};
use serde::Serialize;
use sha2::{Digest, Sha256};
use tar::{Builder, EntryType, Header};

use super::{ImageConfig, ImageInfo, digest_of, layer, rfc3339};

/// OCI media types.
pub(crate) const MEDIA_INDEX: &str = "application/vnd.oci.image.index.v1+json";
pub(crate) const MEDIA_MANIFEST: &str = "application/vnd.oci.image.manifest.v1+json";
pub(crate) const MEDIA_CONFIG: &str = "application/vnd.oci.image.config.v1+json";
pub(crate) const MEDIA_LAYER: &str = "application/vnd.oci.image.layer.v1.tar";

/// The `created_by` of the one history entry.
const CREATED_BY: &str = "openclaw builder: rootfs (mmdebstrap) re-written by builder::oci";

/// The image config. Field order is the serialization order (alphabetical,
/// as Docker writes it); maps are `BTreeMap`s: the bytes are stable.
#[derive(Serialize)]
struct ConfigJson<'a> {
    architecture: &'static str,
    config: RuntimeConfig<'a>,
    created: &'a str,
    history: [History<'a>; 1],
    os: &'static str,
    rootfs: RootFs<'a>,
}

#[derive(Serialize)]
struct RuntimeConfig<'a> {
    #[serde(rename = "Cmd")]
    cmd: &'a [String],
    #[serde(rename = "Env")]
    env: &'a [String],
    #[serde(rename = "Labels")]
    labels: &'a BTreeMap<String, String>,
    #[serde(rename = "User")]
    user: &'a str,
    #[serde(rename = "WorkingDir")]
    working_dir: &'a str,
}

#[derive(Serialize)]
struct History<'a> {
    created: &'a str,
    created_by: &'static str,
}

#[derive(Serialize)]
struct RootFs<'a> {
    #[serde(rename = "type")]
    kind: &'static str,
    diff_ids: [&'a str; 1],
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct Descriptor<'a> {
    media_type: &'static str,
    digest: &'a str,
    size: u64,
    #[serde(skip_serializing_if = "Option::is_none")]
    annotations: Option<BTreeMap<&'static str, &'a str>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    platform: Option<Platform>,
}

#[derive(Serialize)]
struct Platform {
    architecture: &'static str,
    os: &'static str,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct Manifest<'a> {
    schema_version: u32,
    media_type: &'static str,
    config: Descriptor<'a>,
    layers: [Descriptor<'a>; 1],
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct Index<'a> {
    schema_version: u32,
    media_type: &'static str,
    manifests: [Descriptor<'a>; 1],
}

/// One entry of `manifest.json` (the `docker save` format).
#[derive(Serialize)]
struct DockerManifest<'a> {
    #[serde(rename = "Config")]
    config: &'a str,
    #[serde(rename = "RepoTags")]
    repo_tags: [&'a str; 1],
    #[serde(rename = "Layers")]
    layers: [&'a str; 1],
}

/// A reference split into Docker's familiar form and the fully qualified
/// name containerd records.
#[derive(Debug, PartialEq, Eq)]
pub(crate) struct Reference {
    /// `openclaw-sandbox-custom:latest` (what `docker save` puts in RepoTags).
    pub(crate) familiar: String,
    /// `docker.io/library/openclaw-sandbox-custom:latest`.
    pub(crate) full: String,
    /// `latest`.
    pub(crate) tag: String,
}

/// Validates and normalizes an image reference like Docker does.
pub(crate) fn parse_reference(reference: &str) -> Result<Reference> {
    if reference.contains('@') {
        bail!("image reference `{reference}`: digests cannot be tagged on load");
    }
    let last_slash = reference.rfind('/').map_or(0, |i| i + 1);
    let (name, tag) = match reference[last_slash..].rfind(':') {
        Some(i) => (
            &reference[..last_slash + i],
            &reference[last_slash + i + 1..],
        ),
        None => (reference, "latest"),
    };
    let tag_ok = !tag.is_empty()
        && tag.len() <= 128
        && tag
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"_.-".contains(&b))
        && !tag.starts_with(['.', '-']);
    if !tag_ok {
        bail!("image reference `{reference}`: invalid tag `{tag}`");
    }
    let mut parts: Vec<&str> = name.split('/').collect();
    let has_domain = parts.len() > 1 && (parts[0].contains(['.', ':']) || parts[0] == "localhost");
    let domain = if has_domain {
        parts.remove(0)
    } else {
        "docker.io"
    };
    if domain.is_empty()
        || !domain
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b".-:".contains(&b))
    {
        bail!("image reference `{reference}`: invalid registry `{domain}`");
    }
    for part in &parts {
        let ok = !part.is_empty()
            && part
                .bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b"._-".contains(&b))
            && part.starts_with(|c: char| c.is_ascii_alphanumeric())
            && part.ends_with(|c: char| c.is_ascii_alphanumeric());
        if !ok {
            bail!("image reference `{reference}`: invalid name component `{part}`");
        }
    }
    let path = parts.join("/");
    let full_path = if domain == "docker.io" && parts.len() == 1 {
        format!("library/{path}")
    } else {
        path.clone()
    };
    let familiar = if domain == "docker.io" {
        path.strip_prefix("library/").unwrap_or(&path).to_owned()
    } else {
        format!("{domain}/{path}")
    };
    Ok(Reference {
        familiar: format!("{familiar}:{tag}"),
        full: format!("{domain}/{full_path}:{tag}"),
        tag: tag.to_owned(),
    })
}

/// The config JSON bytes for a layer with `diff_id`.
pub(crate) fn config_json(config: &ImageConfig, diff_id: &str) -> Result<Vec<u8>> {
    let created = rfc3339(config.created_epoch)?;
    let json = ConfigJson {
        architecture: "amd64",
        config: RuntimeConfig {
            cmd: &config.cmd,
            env: &config.env,
            labels: &config.labels,
            user: &config.user,
            working_dir: &config.working_dir,
        },
        created: &created,
        history: [History {
            created: &created,
            created_by: CREATED_BY,
        }],
        os: "linux",
        rootfs: RootFs {
            kind: "layers",
            diff_ids: [diff_id],
        },
    };
    Ok(serde_json::to_vec(&json)?)
}

/// A writer that hashes and counts what goes through it.
struct HashWriter<W> {
    inner: W,
    hasher: Sha256,
    len: u64,
}

impl<W: Write> Write for HashWriter<W> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let n = self.inner.write(buf)?;
        self.hasher.update(&buf[..n]);
        self.len += n as u64;
        Ok(n)
    }

    fn flush(&mut self) -> io::Result<()> {
        self.inner.flush()
    }
}

/// What the outer tar holds at one path.
enum Content<'a> {
    Dir,
    Bytes(&'a [u8]),
    /// The layer: `len` bytes of a file from its start.
    File(&'a mut File, u64),
}

/// See [`super::write_image`].
pub(crate) fn write_image(
    rootfs_tar: &Path,
    config: &ImageConfig,
    out: &Path,
) -> Result<ImageInfo> {
    let reference = parse_reference(&config.reference)?;
    // Fail on a bad epoch before the expensive part.
    rfc3339(config.created_epoch)?;
    let dir = out
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;

    // The layer, into a temporary file next to `out`.
    let mut plan = layer::scan(rootfs_tar)?;
    let mut layer_tmp = tempfile::NamedTempFile::new_in(dir)
        .with_context(|| format!("creating a temporary file in {}", dir.display()))?;
    let layer_name = layer_tmp.path().display().to_string();
    let (layer_hex, layer_size) = {
        let hashed = HashWriter {
            inner: BufWriter::with_capacity(1 << 20, layer_tmp.as_file_mut()),
            hasher: Sha256::new(),
            len: 0,
        };
        let mut hashed = layer::write(rootfs_tar, &mut plan, config.created_epoch, hashed)?;
        hashed
            .flush()
            .with_context(|| format!("writing {layer_name}"))?;
        (hex::encode(hashed.hasher.finalize()), hashed.len)
    };
    let diff_id = format!("sha256:{layer_hex}");

    // The JSON blobs.
    let config_bytes = config_json(config, &diff_id)?;
    let config_digest = digest_of(&config_bytes);
    let manifest_bytes = serde_json::to_vec(&Manifest {
        schema_version: 2,
        media_type: MEDIA_MANIFEST,
        config: Descriptor {
            media_type: MEDIA_CONFIG,
            digest: &config_digest,
            size: config_bytes.len() as u64,
            annotations: None,
            platform: None,
        },
        layers: [Descriptor {
            media_type: MEDIA_LAYER,
            digest: &diff_id,
            size: layer_size,
            annotations: None,
            platform: None,
        }],
    })?;
    let manifest_digest = digest_of(&manifest_bytes);
    let index_bytes = serde_json::to_vec(&Index {
        schema_version: 2,
        media_type: MEDIA_INDEX,
        manifests: [Descriptor {
            media_type: MEDIA_MANIFEST,
            digest: &manifest_digest,
            size: manifest_bytes.len() as u64,
            annotations: Some(BTreeMap::from([
                ("io.containerd.image.name", reference.full.as_str()),
                ("org.opencontainers.image.ref.name", reference.tag.as_str()),
            ])),
            platform: Some(Platform {
                architecture: "amd64",
                os: "linux",
            }),
        }],
    })?;
    let blob = |digest: &str| format!("blobs/sha256/{}", digest.trim_start_matches("sha256:"));
    let config_path = blob(&config_digest);
    let layer_path = blob(&diff_id);
    let docker_manifest = serde_json::to_vec(&[DockerManifest {
        config: &config_path,
        repo_tags: [&reference.familiar],
        layers: [&layer_path],
    }])?;
    let oci_layout = br#"{"imageLayoutVersion":"1.0.0"}"#;

    // The outer tar, sorted by name.
    let layer_file = layer_tmp.as_file_mut();
    let mut members: Vec<(String, Content<'_>)> = vec![
        ("blobs/".to_owned(), Content::Dir),
        ("blobs/sha256/".to_owned(), Content::Dir),
        (config_path, Content::Bytes(&config_bytes)),
        (layer_path, Content::File(layer_file, layer_size)),
        (blob(&manifest_digest), Content::Bytes(&manifest_bytes)),
        ("index.json".to_owned(), Content::Bytes(&index_bytes)),
        ("manifest.json".to_owned(), Content::Bytes(&docker_manifest)),
        ("oci-layout".to_owned(), Content::Bytes(oci_layout)),
    ];
    members.sort_by(|a, b| a.0.cmp(&b.0));

    let out_name = out.display();
    let mut out_tmp = tempfile::NamedTempFile::new_in(dir)
        .with_context(|| format!("creating a temporary file in {}", dir.display()))?;
    let out_tmp_name = out_tmp.path().display().to_string();
    let size = {
        let counted = HashWriter {
            inner: BufWriter::with_capacity(1 << 20, out_tmp.as_file_mut()),
            hasher: Sha256::new(),
            len: 0,
        };
        let mut builder = Builder::new(counted);
        for (path, content) in members {
            let ctx = || format!("writing `{path}` into the archive for {out_name}");
            let mut header = Header::new_ustar();
            header.set_uid(0);
            header.set_gid(0);
            header.set_mtime(config.created_epoch);
            match content {
                Content::Dir => {
                    header.set_entry_type(EntryType::Directory);
                    header.set_mode(0o755);
                    header.set_size(0);
                    builder
                        .append_data(&mut header, &path, io::empty())
                        .with_context(ctx)?;
                }
                Content::Bytes(bytes) => {
                    header.set_entry_type(EntryType::Regular);
                    header.set_mode(0o644);
                    header.set_size(bytes.len() as u64);
                    builder
                        .append_data(&mut header, &path, bytes)
                        .with_context(ctx)?;
                }
                Content::File(file, len) => {
                    header.set_entry_type(EntryType::Regular);
                    header.set_mode(0o644);
                    header.set_size(len);
                    file.seek(SeekFrom::Start(0))
                        .with_context(|| format!("rewinding {layer_name}"))?;
                    let mut data = io::BufReader::with_capacity(1 << 20, file).take(len);
                    builder
                        .append_data(&mut header, &path, &mut data)
                        .with_context(ctx)?;
                    if data.limit() != 0 {
                        bail!("{layer_name} is shorter than the {len} bytes written to it");
                    }
                }
            }
        }
        let mut counted = builder
            .into_inner()
            .with_context(|| format!("finishing {out_name}"))?;
        counted
            .flush()
            .with_context(|| format!("writing {out_tmp_name}"))?;
        counted.len
    };
    // NamedTempFile is created 0600; the archive is no secret.
    out_tmp
        .as_file()
        .set_permissions(std::fs::Permissions::from_mode(0o644))
        .with_context(|| format!("setting the mode of {out_tmp_name}"))?;
    out_tmp
        .as_file()
        .sync_all()
        .with_context(|| format!("syncing {out_tmp_name}"))?;
    out_tmp
        .persist(out)
        .with_context(|| format!("renaming the finished archive into {out_name}"))?;

    Ok(ImageInfo {
        image_id: config_digest.clone(),
        config_digest,
        layer_diff_id: diff_id,
        manifest_digest,
        size,
        layer_size,
        name: reference.full,
        stats: plan.stats,
    })
}
