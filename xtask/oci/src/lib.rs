//! A deterministic, `docker load`-able image archive from a rootfs tarball.
//!
//! [`write_image`] turns the uncompressed tar that `mmdebstrap` writes into a
//! one-layer image archive that holds both layouts Docker 25+ writes with
//! `docker save`: an OCI image layout (`oci-layout`, `index.json`,
//! `blobs/sha256/…`) and the legacy `manifest.json` pointing into the same
//! blobs, so either loader path (graphdriver or containerd image store) takes
//! it.
//!
//! The layer is re-written, never copied: entries sorted by path, mtimes
//! clamped to the image's epoch, numeric owners kept and names cleared, one
//! header format (GNU), device nodes and the contents of `/dev`, `/proc` and
//! `/sys` dropped, and — invariant AGT-3 — every setuid and setgid bit
//! cleared and every `security.capability` xattr dropped. The same input
//! and [`ImageConfig`] give the same bytes, whatever the time zone, umask or
//! output directory.
//!
//! The image ID that `docker image inspect --format '{{.Id}}'` shows with the
//! classic (graphdriver) store is `sha256:` + sha256 of the config JSON bytes,
//! returned as [`ImageInfo::image_id`]. With the containerd image store
//! Docker shows the manifest digest instead ([`ImageInfo::manifest_digest`]).
//!
//! [`audit_layer`] re-reads a written archive and reports what it holds.
//!
//! [`write_store`] turns the archive into Docker's own image store (the
//! `overlay2` graphdriver layout under the daemon's data root), so the
//! image is in Docker at its first start, with no `docker load`.
//!
//! Its own crate (split out of `builder`, issue #20): it owns these bytes
//! and nothing else. It must not read the spec, the lock or the store, run
//! programs or touch the network; the builder's sandbox stages hand it a
//! rootfs tarball and an [`ImageConfig`]. The root-filesystem merge reuses
//! its tar entry writer ([`append_entry`]) so both writers agree on headers.

#![warn(missing_docs)]

mod archive;
mod audit;
mod layer;
mod store;
#[cfg(test)]
mod tests;

use std::collections::BTreeMap;
use std::path::Path;

use anyhow::Result;
use serde::{Deserialize, Serialize};

pub use audit::{LayerAudit, audit_layer};
// For the root filesystem merge (`builder::rootfs`), which writes its tar
// entries the same way.
pub use layer::{EntryHead, Kind as EntryKind, XATTR_PREFIX, append_entry};
pub use store::{
    DRIVER, IdMap, IdRange, STORE_FORMAT, StoreInfo, StoreOptions, cache_id, link_id, write_store,
};

/// What goes into the image config besides the layer.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ImageConfig {
    /// The image reference to tag, e.g. `openclaw-sandbox-custom:latest`
    /// (a missing tag means `latest`; digests are refused).
    pub reference: String,
    /// `config.User`, e.g. `"1000"`.
    pub user: String,
    /// `config.WorkingDir`, e.g. `/home/node` (may be empty).
    pub working_dir: String,
    /// `config.Env`, in this order, e.g. `PATH=/usr/local/sbin:…`.
    pub env: Vec<String>,
    /// `config.Cmd`, e.g. `["sleep", "infinity"]`.
    pub cmd: Vec<String>,
    /// Seconds since the Unix epoch: the `created` time, and the upper bound
    /// of every mtime in the layer (`SOURCE_DATE_EPOCH`).
    pub created_epoch: u64,
    /// `config.Labels`.
    #[serde(default)]
    pub labels: BTreeMap<String, String>,
}

/// What [`write_image`] wrote.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ImageInfo {
    /// `sha256:<hex>` of the config JSON bytes: the ID Docker shows with the
    /// classic image store and checks on load.
    pub image_id: String,
    /// The config blob's digest (same value as `image_id`).
    pub config_digest: String,
    /// `sha256:<hex>` of the uncompressed layer tar (also its blob digest).
    pub layer_diff_id: String,
    /// `sha256:<hex>` of the OCI manifest blob: the ID Docker shows with the
    /// containerd image store.
    pub manifest_digest: String,
    /// Size of the whole archive in bytes.
    pub size: u64,
    /// Size of the layer tar in bytes.
    pub layer_size: u64,
    /// The fully qualified name written into `index.json`
    /// (`docker.io/library/openclaw-sandbox-custom:latest`).
    pub name: String,
    /// What the re-write of the layer did.
    pub stats: LayerStats,
}

/// Counts from re-writing the rootfs into the layer.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct LayerStats {
    /// Entries read from the rootfs tar (after long-name and pax headers).
    pub entries_read: u64,
    /// Entries written to the layer.
    pub entries_written: u64,
    /// Character and block device nodes dropped.
    pub devices_dropped: u64,
    /// Other entries dropped: the root `./` itself and whatever was under
    /// `dev/`, `proc/` or `sys/`.
    pub special_dropped: u64,
    /// Entries whose setuid or setgid bit was cleared (AGT-3).
    pub setid_cleared: u64,
    /// `security.capability` xattrs dropped.
    pub capabilities_dropped: u64,
    /// Hard-link entries written.
    pub hardlinks: u64,
}

/// Writes a one-layer image archive for `rootfs_tar` to `out`.
///
/// Streams: one pass over `rootfs_tar`'s headers to collect and sort the
/// entries, one pass to write the layer to a temporary file next to `out`
/// (hashing it on the way), then the archive itself is written to another
/// temporary file next to `out` and renamed into place.
pub fn write_image(rootfs_tar: &Path, config: &ImageConfig, out: &Path) -> Result<ImageInfo> {
    archive::write_image(rootfs_tar, config, out)
}

/// `sha256:<hex>` of `bytes`.
fn digest_of(bytes: &[u8]) -> String {
    use sha2::{Digest, Sha256};
    format!("sha256:{}", hex::encode(Sha256::digest(bytes)))
}

/// RFC 3339 (UTC, whole seconds) of `epoch`, e.g. `2025-05-20T00:00:00Z`.
fn rfc3339(epoch: u64) -> Result<String> {
    let epoch = i64::try_from(epoch)?;
    let (year, _, _) = image_spec::time::civil_date(epoch);
    anyhow::ensure!(year <= 9999, "created_epoch {epoch} is past the year 9999");
    Ok(image_spec::time::rfc3339(epoch))
}
