//! Re-reading a written image archive: what the tests and the lead check.

use std::collections::{BTreeMap, HashSet};
use std::fs::File;
use std::io::{self, BufReader, Read, Seek, SeekFrom};
use std::path::Path;

use anyhow::{Context, Result, bail};
use serde::Deserialize;
use sha2::{Digest, Sha256};
use tar::{Archive, EntryType};

use super::digest_of;
use super::layer::{CAPABILITY_XATTR, SETID_BITS};

/// Blobs up to this size are read into memory; larger ones (the layer) are
/// streamed from the archive.
const SMALL_BLOB: u64 = 4 << 20;

/// At most this many paths are listed in [`LayerAudit::setid_paths`] and
/// problems of one kind in [`LayerAudit::problems`].
const LIST_MAX: usize = 20;

/// What [`audit_layer`] found in an image archive.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct LayerAudit {
    /// `sha256:` + sha256 of the config blob's bytes as stored: the image ID.
    pub image_id: String,
    /// `config.User` of the image config.
    pub user: String,
    /// `RepoTags` of `manifest.json`.
    pub repo_tags: Vec<String>,
    /// `rootfs.diff_ids` of the image config.
    pub diff_ids: Vec<String>,
    /// `sha256:` + sha256 of each layer as stored, recomputed.
    pub layer_digests: Vec<String>,
    /// The manifest digest `index.json` points at, if there is an
    /// `index.json`.
    pub manifest_digest: Option<String>,
    /// Entries in all layers.
    pub entries: u64,
    /// Entries with a setuid or setgid bit (AGT-3: must be 0).
    pub setid_entries: u64,
    /// The first few of those.
    pub setid_paths: Vec<String>,
    /// Character and block device entries.
    pub device_nodes: u64,
    /// `security.capability` xattrs.
    pub capability_xattrs: u64,
    /// Hard-link entries.
    pub hardlinks: u64,
    /// Everything that is wrong; empty for a good archive. Covers AGT-3
    /// (setid bits, capabilities), blob digests, the config's diff IDs, the
    /// index → manifest → config chain, sort order, hard links pointing
    /// forward, device nodes, contents of `dev/`, `proc/`, `sys/`, and
    /// owner names.
    pub problems: Vec<String>,
}

impl LayerAudit {
    fn problem(&mut self, text: String) {
        if self.problems.len() < LIST_MAX * 8 {
            self.problems.push(text);
        }
    }
}

/// One entry of an archive's `manifest.json`.
#[derive(Deserialize)]
pub(crate) struct DockerManifestIn {
    #[serde(rename = "Config")]
    pub(crate) config: String,
    #[serde(rename = "RepoTags", default)]
    pub(crate) repo_tags: Option<Vec<String>>,
    #[serde(rename = "Layers")]
    pub(crate) layers: Vec<String>,
}

#[derive(Deserialize)]
struct DescriptorIn {
    digest: String,
}

#[derive(Deserialize)]
struct IndexIn {
    manifests: Vec<DescriptorIn>,
}

#[derive(Deserialize)]
struct ManifestIn {
    config: DescriptorIn,
    layers: Vec<DescriptorIn>,
}

/// A reader that hashes what goes through it.
pub(crate) struct HashReader<R> {
    pub(crate) inner: R,
    pub(crate) hasher: Sha256,
}

impl<R: Read> Read for HashReader<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.hasher.update(&buf[..n]);
        Ok(n)
    }
}

/// The regular files of an image archive: small ones read, large ones
/// (layers) located.
pub(crate) struct Members {
    /// Path (without `./`) → bytes, for files up to [`SMALL_BLOB`].
    pub(crate) small: BTreeMap<String, Vec<u8>>,
    /// Path → (offset of the data in the archive, size), for larger files.
    pub(crate) large: BTreeMap<String, (u64, u64)>,
}

/// Reads the regular members of `image_archive`; see [`Members`].
pub(crate) fn read_members(image_archive: &Path) -> Result<Members> {
    let name = image_archive.display();
    let mut small: BTreeMap<String, Vec<u8>> = BTreeMap::new();
    let mut large: BTreeMap<String, (u64, u64)> = BTreeMap::new();
    let file = File::open(image_archive).with_context(|| format!("opening {name}"))?;
    let mut archive = Archive::new(BufReader::with_capacity(1 << 20, file));
    for entry in archive
        .entries_with_seek()
        .with_context(|| format!("reading {name}"))?
    {
        let mut entry = entry.with_context(|| format!("reading an entry of {name}"))?;
        if !matches!(
            entry.header().entry_type(),
            EntryType::Regular | EntryType::Continuous
        ) {
            continue;
        }
        let path = String::from_utf8_lossy(&entry.path_bytes())
            .trim_start_matches("./")
            .to_owned();
        let size = entry.size();
        if size <= SMALL_BLOB {
            let mut bytes = Vec::new();
            entry
                .read_to_end(&mut bytes)
                .with_context(|| format!("reading `{path}` in {name}"))?;
            small.insert(path, bytes);
        } else {
            large.insert(path, (entry.raw_file_position(), size));
        }
    }
    Ok(Members { small, large })
}

fn blob_path(digest: &str) -> String {
    format!("blobs/sha256/{}", digest.trim_start_matches("sha256:"))
}

/// Re-reads `image_archive` (as [`super::write_image`] writes it, or as
/// `docker save` does) and reports on it; see [`LayerAudit`].
///
/// Fails only when the archive cannot be read or lacks `manifest.json`, the
/// config or a layer; everything else lands in [`LayerAudit::problems`].
pub fn audit_layer(image_archive: &Path) -> Result<LayerAudit> {
    let name = image_archive.display();
    let Members { small, large } = read_members(image_archive)?;

    let mut audit = LayerAudit::default();
    for (path, bytes) in &small {
        if let Some(hex) = path.strip_prefix("blobs/sha256/") {
            let actual = digest_of(bytes);
            if actual.trim_start_matches("sha256:") != hex {
                audit.problem(format!("blob {path} has digest {actual}"));
            }
        }
    }

    let manifest_bytes = small
        .get("manifest.json")
        .with_context(|| format!("{name} has no manifest.json"))?;
    let manifests: Vec<DockerManifestIn> = serde_json::from_slice(manifest_bytes)
        .with_context(|| format!("parsing manifest.json in {name}"))?;
    let Some(manifest) = manifests.first() else {
        bail!("manifest.json in {name} lists no image");
    };
    if manifests.len() != 1 {
        audit.problem(format!("manifest.json lists {} images", manifests.len()));
    }
    audit.repo_tags = manifest.repo_tags.clone().unwrap_or_default();

    let config_bytes = small
        .get(manifest.config.trim_start_matches("./"))
        .with_context(|| format!("{name} lacks the config {}", manifest.config))?;
    audit.image_id = digest_of(config_bytes);
    let config: serde_json::Value = serde_json::from_slice(config_bytes)
        .with_context(|| format!("parsing the config {} in {name}", manifest.config))?;
    audit.user = config["config"]["User"]
        .as_str()
        .unwrap_or_default()
        .to_owned();
    audit.diff_ids = config["rootfs"]["diff_ids"]
        .as_array()
        .map(|ids| {
            ids.iter()
                .filter_map(|id| id.as_str().map(str::to_owned))
                .collect()
        })
        .unwrap_or_default();

    for layer in &manifest.layers {
        let layer = layer.trim_start_matches("./");
        let digest = if let Some(bytes) = small.get(layer) {
            audit_tar(&bytes[..], &mut audit)
        } else if let Some(&(offset, size)) = large.get(layer) {
            let mut file = File::open(image_archive).with_context(|| format!("opening {name}"))?;
            file.seek(SeekFrom::Start(offset))
                .with_context(|| format!("seeking in {name}"))?;
            audit_tar(
                BufReader::with_capacity(1 << 20, file).take(size),
                &mut audit,
            )
        } else {
            bail!("{name} lacks the layer {layer}");
        }
        .with_context(|| format!("reading the layer {layer} in {name}"))?;
        if let Some(hex) = layer.strip_prefix("blobs/sha256/")
            && digest.trim_start_matches("sha256:") != hex
        {
            audit.problem(format!("blob {layer} has digest {digest}"));
        }
        audit.layer_digests.push(digest);
    }
    if audit.layer_digests != audit.diff_ids {
        audit.problem(format!(
            "config diff_ids {:?} differ from the layers' digests {:?} (only true for uncompressed layers)",
            audit.diff_ids, audit.layer_digests
        ));
    }

    if let Some(index_bytes) = small.get("index.json") {
        let index: IndexIn = serde_json::from_slice(index_bytes)
            .with_context(|| format!("parsing index.json in {name}"))?;
        if index.manifests.len() != 1 {
            audit.problem(format!(
                "index.json lists {} manifests",
                index.manifests.len()
            ));
        }
        if let Some(desc) = index.manifests.first() {
            audit.manifest_digest = Some(desc.digest.clone());
            match small.get(&blob_path(&desc.digest)) {
                None => audit.problem(format!("index.json points at a missing {}", desc.digest)),
                Some(bytes) => {
                    let oci: ManifestIn = serde_json::from_slice(bytes).with_context(|| {
                        format!("parsing the manifest {} in {name}", desc.digest)
                    })?;
                    if oci.config.digest != audit.image_id {
                        audit.problem(format!(
                            "the OCI manifest's config {} is not manifest.json's {}",
                            oci.config.digest, audit.image_id
                        ));
                    }
                    let layers: Vec<String> = oci.layers.into_iter().map(|d| d.digest).collect();
                    if layers != audit.layer_digests {
                        audit.problem(format!(
                            "the OCI manifest's layers {layers:?} are not manifest.json's {:?}",
                            audit.layer_digests
                        ));
                    }
                }
            }
        }
    }

    if audit.setid_entries != 0 {
        audit.problem(format!(
            "AGT-3: {} setuid/setgid entries, e.g. {:?}",
            audit.setid_entries, audit.setid_paths
        ));
    }
    if audit.capability_xattrs != 0 {
        audit.problem(format!(
            "AGT-3: {} security.capability xattrs",
            audit.capability_xattrs
        ));
    }
    Ok(audit)
}

/// Walks one layer tar; returns its digest.
fn audit_tar<R: Read>(reader: R, audit: &mut LayerAudit) -> Result<String> {
    let mut hashed = HashReader {
        inner: reader,
        hasher: Sha256::new(),
    };
    let mut seen: HashSet<Vec<u8>> = HashSet::new();
    let mut previous: Option<Vec<u8>> = None;
    let mut out_of_order = 0usize;
    {
        let mut archive = Archive::new(&mut hashed);
        for entry in archive.entries()? {
            let mut entry = entry?;
            audit.entries += 1;
            let raw = entry.path_bytes().into_owned();
            let mut key: &[u8] = &raw;
            while let Some(rest) = key.strip_prefix(b"./") {
                key = rest;
            }
            let key = key.strip_suffix(b"/").unwrap_or(key).to_vec();
            let shown = String::from_utf8_lossy(&key).into_owned();
            let header = entry.header();
            let ty = header.entry_type();

            if let Some(prev) = &previous
                && *prev >= key
                && out_of_order < LIST_MAX
            {
                out_of_order += 1;
                audit.problem(format!("`{shown}` is not sorted after the entry before it"));
            }
            let mode = header.mode()?;
            if mode & SETID_BITS != 0 {
                audit.setid_entries += 1;
                if audit.setid_paths.len() < LIST_MAX {
                    audit.setid_paths.push(format!("{shown} ({mode:o})"));
                }
            }
            if matches!(ty, EntryType::Char | EntryType::Block) {
                audit.device_nodes += 1;
                audit.problem(format!("device node `{shown}`"));
            }
            if [&b"dev/"[..], b"proc/", b"sys/"]
                .iter()
                .any(|p| key.starts_with(p))
            {
                audit.problem(format!("`{shown}` is under dev/, proc/ or sys/"));
            }
            if header.username_bytes().is_some_and(|u| !u.is_empty())
                || header.groupname_bytes().is_some_and(|g| !g.is_empty())
            {
                audit.problem(format!("`{shown}` carries an owner name"));
            }
            if ty == EntryType::Link {
                audit.hardlinks += 1;
                let target = entry
                    .link_name_bytes()
                    .map(|t| t.into_owned())
                    .unwrap_or_default();
                let mut target: &[u8] = &target;
                while let Some(rest) = target.strip_prefix(b"./") {
                    target = rest;
                }
                if !seen.contains(target) {
                    audit.problem(format!(
                        "hard link `{shown}` points at `{}`, not an earlier entry",
                        String::from_utf8_lossy(target)
                    ));
                }
            }
            if let Some(pax) = entry.pax_extensions()? {
                for record in pax {
                    if record?.key_bytes() == CAPABILITY_XATTR.as_bytes() {
                        audit.capability_xattrs += 1;
                    }
                }
            }
            seen.insert(key.clone());
            previous = Some(key);
        }
    }
    // The end-of-archive blocks and any padding after them.
    io::copy(&mut hashed, &mut io::sink())?;
    Ok(format!("sha256:{}", hex::encode(hashed.hasher.finalize())))
}
