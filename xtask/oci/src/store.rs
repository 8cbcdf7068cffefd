//! Docker's own image store for a one-layer image, written at build time so
//! that the daemon finds the image at its first start, with no `docker load`.
//!
//! The layout is the classic (graphdriver) store of Docker 26.1 with the
//! `overlay2` driver, as moby's source writes it (paths relative to the
//! data root, `/var/lib/docker` for the system daemon):
//!
//! - `image/overlay2/imagedb/content/sha256/<id>`: the config JSON bytes
//!   exactly; the daemon re-hashes them on start and drops the image if
//!   the hash is not `<id>` (`image/fs.go`, `get`). Directories 0700,
//!   file 0600; the empty `imagedb/metadata/sha256/` beside it (0700).
//! - `image/overlay2/layerdb/sha256/<chain id>/` (0700; `layerdb` 0700,
//!   `layerdb/sha256` 0755): `diff` (`sha256:<diff id>`), `size` (decimal,
//!   what the driver's `DiffSize` returns: `pkg/directory`'s `Size`, the
//!   sum of the sizes of every non-directory, hard links counted once, a
//!   symlink counting its target's length), `cache-id` (64 hex digits),
//!   all 0644 (`layer/filestore.go`). For a one-layer image the chain ID
//!   is the diff ID. `tar-split.json.gz` is *not* written: the daemon
//!   reads it only to re-create the layer tar (`layer_store.go`,
//!   `getTarStream`: `docker save`, `docker push`), never on start or to
//!   run a container (`loadLayer` reads `diff`, `size`, `cache-id`,
//!   `parent`, `descriptor.json`). So `docker save` and `docker push` of
//!   this image fail; the appliance does neither.
//! - `image/overlay2/repositories.json` (0600): `{"Repositories":{<familiar
//!   name>:{<familiar name>:<tag>: <id>}}}`, Go's `json.Marshal` of the
//!   reference store (`reference/store.go`: keys `FamiliarName` and
//!   `FamiliarString`, e.g. `openclaw-sandbox-custom` and
//!   `openclaw-sandbox-custom:latest`), no trailing newline.
//! - `overlay2/` (0710) with `l/` (0700), `l/<link id>` → `../<cache
//!   id>/diff`, and `<cache id>/` (0710) holding `link` (the 26-character
//!   link id, 0644) and `diff/` (0755, the extracted layer). A layer
//!   without a parent has no `lower` file and no `work/` directory; the
//!   driver writes `committed` into it when the first layer on top is
//!   created (`daemon/graphdriver/overlay2/overlay.go`, `create`).
//! - The data root itself is 0711 (the daemon sets it on every start).
//!   What the daemon makes on its own (`engine-id`, `buildkit/`,
//!   `containerd/`, `network/`, `volumes/`, `tmp/`, …) is not written.
//!
//! The daemon makes the cache ID and link ID at random; here they are
//! derived from the chain ID ([`cache_id`], [`link_id`]), so the same layer
//! gives the same store. Everything the daemon would own as its root is
//! owned by [`IdMap`]'s image of 0, and every owner in the layer goes
//! through the map too: identity for the system daemon; for a rootless
//! daemon, the map of its user namespace (the user, then its subuids).

use std::fs::File;
use std::io::{self, BufReader, BufWriter, Read, Seek, SeekFrom, Write};
use std::os::unix::fs::PermissionsExt;
use std::path::Path;

use anyhow::{Context, Result, bail, ensure};
use sha2::{Digest, Sha256};
use tar::{Archive, Builder, EntryType, Header};

use super::archive::parse_reference;
use super::audit::{DockerManifestIn, HashReader, Members, read_members};
use super::digest_of;
use super::layer::{XATTR_PREFIX, append_link_verbatim};

/// Bump when [`write_store`] writes other bytes for the same archive (it is
/// part of the store stage's cache key).
pub const STORE_FORMAT: &str = "docker-store/overlay2/v1";

/// The graph driver whose layout is written.
pub const DRIVER: &str = "overlay2";

/// Length of the overlay2 driver's link IDs (`idLength` in `overlay.go`).
const LINK_ID_LEN: usize = 26;

/// One contiguous range of a user-namespace ID map, like a line of
/// `/proc/<pid>/uid_map`: IDs `inside..inside+count` in the container (or
/// as the daemon sees them) are `outside..outside+count` on disk.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct IdRange {
    /// First ID as the daemon sees it.
    pub inside: u32,
    /// First ID on disk.
    pub outside: u32,
    /// How many IDs.
    pub count: u32,
}

/// How owners map onto disk: the daemon's root (0) owns the store's own
/// files; the layer's owners keep their IDs through the same map.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IdMap {
    uids: Vec<IdRange>,
    gids: Vec<IdRange>,
}

impl IdMap {
    /// Every ID maps to itself: the system daemon's store.
    pub fn identity() -> IdMap {
        let all = vec![IdRange {
            inside: 0,
            outside: 0,
            count: u32::MAX,
        }];
        IdMap {
            uids: all.clone(),
            gids: all,
        }
    }

    /// A map from ranges (e.g. a rootless daemon's: 0 → the user, 1.. → its
    /// subuids).
    pub fn new(uids: Vec<IdRange>, gids: Vec<IdRange>) -> IdMap {
        IdMap { uids, gids }
    }

    /// The on-disk uid of `id`.
    pub fn uid(&self, id: u64) -> Result<u64> {
        map_id(&self.uids, id).with_context(|| format!("uid {id} is outside the store's uid map"))
    }

    /// The on-disk gid of `id`.
    pub fn gid(&self, id: u64) -> Result<u64> {
        map_id(&self.gids, id).with_context(|| format!("gid {id} is outside the store's gid map"))
    }
}

fn map_id(ranges: &[IdRange], id: u64) -> Option<u64> {
    ranges.iter().find_map(|r| {
        let offset = id.checked_sub(u64::from(r.inside))?;
        (offset < u64::from(r.count)).then(|| u64::from(r.outside) + offset)
    })
}

/// Where and how [`write_store`] writes.
#[derive(Debug, Clone)]
pub struct StoreOptions<'a> {
    /// Docker's data root inside the root file system, without a leading
    /// `/`: `var/lib/docker` for the system daemon. Its parents are not
    /// written (they must exist in the root file system).
    pub root: &'a str,
    /// Owners on disk.
    pub ids: &'a IdMap,
    /// mtime of the entries the writer makes; the layer's keep theirs,
    /// clamped to it.
    pub epoch: u64,
}

/// What [`write_store`] wrote.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoreInfo {
    /// `sha256:<hex>` of the config: the ID `docker image inspect` shows.
    pub image_id: String,
    /// The reference tagged, as Docker shows it (`openclaw-sandbox-custom:latest`).
    pub reference: String,
    /// `sha256:<hex>`: the layer's chain ID (its diff ID, one layer).
    pub chain_id: String,
    /// The layer's directory under `overlay2/`.
    pub cache_id: String,
    /// The layer's short name under `overlay2/l/`.
    pub link_id: String,
    /// The `size` file's value.
    pub diff_size: u64,
    /// Entries of the layer written under `diff/`.
    pub layer_entries: u64,
}

/// The overlay2 cache ID of a layer: sha256 of a fixed label and the chain
/// ID, in hex (64 digits, as the daemon's random ones).
pub fn cache_id(chain_id: &str) -> String {
    hex::encode(Sha256::digest(
        format!("openclaw-image docker-store cache-id\0{chain_id}").as_bytes(),
    ))
}

/// The overlay2 link ID of a layer: the first 26 characters of the base32
/// (RFC 4648, upper case) of sha256 of a fixed label and the chain ID — the
/// alphabet and length of the daemon's random ones.
pub fn link_id(chain_id: &str) -> String {
    let hash =
        Sha256::digest(format!("openclaw-image docker-store link-id\0{chain_id}").as_bytes());
    base32(&hash).chars().take(LINK_ID_LEN).collect()
}

/// RFC 4648 base32 without padding.
fn base32(bytes: &[u8]) -> String {
    const ALPHABET: &[u8; 32] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZ234567";
    let mut out = String::with_capacity(bytes.len().div_ceil(5) * 8);
    let (mut acc, mut bits) = (0u32, 0u32);
    for &b in bytes {
        acc = (acc << 8) | u32::from(b);
        bits += 8;
        while bits >= 5 {
            bits -= 5;
            out.push(char::from(ALPHABET[((acc >> bits) & 31) as usize]));
        }
        acc &= (1 << bits) - 1;
    }
    if bits > 0 {
        out.push(char::from(ALPHABET[((acc << (5 - bits)) & 31) as usize]));
    }
    out
}

/// Writes the store for the one-layer image archive `archive` (as
/// [`super::write_image`] writes it) as a tarball at `out` (atomically):
/// paths start with `opts.root`, entries carry owners, modes, mtimes, hard
/// links and xattrs, ready to lay over a root file system.
///
/// The layer is streamed from the archive and its sha256 checked against
/// the config's diff ID; the config bytes are copied exactly, so the image
/// ID is the archive's.
pub fn write_store(archive: &Path, opts: &StoreOptions<'_>, out: &Path) -> Result<StoreInfo> {
    let name = archive.display();
    let Members { small, large } = read_members(archive)?;
    let manifest_bytes = small
        .get("manifest.json")
        .with_context(|| format!("{name} has no manifest.json: not an image archive"))?;
    let manifests: Vec<DockerManifestIn> = serde_json::from_slice(manifest_bytes)
        .with_context(|| format!("parsing manifest.json in {name}"))?;
    let [manifest] = &manifests[..] else {
        bail!(
            "manifest.json in {name} lists {} images; the store writer takes exactly one",
            manifests.len()
        );
    };
    let [layer_path] = &manifest.layers[..] else {
        bail!(
            "the image in {name} has {} layers; the store writer takes exactly one",
            manifest.layers.len()
        );
    };
    let tags = manifest.repo_tags.clone().unwrap_or_default();
    let [tag] = &tags[..] else {
        bail!(
            "the image in {name} has {} RepoTags in manifest.json; the store writer tags exactly one",
            tags.len()
        );
    };
    let reference = parse_reference(tag)?;
    let familiar_name = reference
        .familiar
        .strip_suffix(&format!(":{}", reference.tag))
        .with_context(|| format!("reference `{}` has no tag", reference.familiar))?;

    let config_bytes = small
        .get(manifest.config.trim_start_matches("./"))
        .with_context(|| format!("{name} lacks the config {}", manifest.config))?;
    let image_id = digest_of(config_bytes);
    let config: serde_json::Value = serde_json::from_slice(config_bytes)
        .with_context(|| format!("parsing the config {} in {name}", manifest.config))?;
    let diff_ids: Vec<&str> = config
        .pointer("/rootfs/diff_ids")
        .and_then(serde_json::Value::as_array)
        .map(|ids| ids.iter().filter_map(serde_json::Value::as_str).collect())
        .unwrap_or_default();
    let [diff_id] = diff_ids[..] else {
        bail!(
            "the config {} in {name} names {} rootfs.diff_ids; the store writer takes exactly one",
            manifest.config,
            diff_ids.len()
        );
    };
    let chain_id = diff_id.to_owned();
    let chain_hex = hex_of(&chain_id)?;
    let id_hex = hex_of(&image_id)?;
    let cache = cache_id(&chain_id);
    let link = link_id(&chain_id);

    let layer_path = layer_path.trim_start_matches("./");
    let (layer_reader, layer_len): (Box<dyn Read>, u64) = if let Some(bytes) = small.get(layer_path)
    {
        (Box::new(io::Cursor::new(bytes.clone())), bytes.len() as u64)
    } else if let Some(&(offset, size)) = large.get(layer_path) {
        let mut file = File::open(archive).with_context(|| format!("opening {name}"))?;
        file.seek(SeekFrom::Start(offset))
            .with_context(|| format!("seeking in {name}"))?;
        (
            Box::new(BufReader::with_capacity(1 << 20, file).take(size)),
            size,
        )
    } else {
        bail!("{name} lacks the layer {layer_path}");
    };

    let dir = out
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    let tmp = tempfile::NamedTempFile::new_in(dir)
        .with_context(|| format!("creating a temporary file in {}", dir.display()))?;
    let tmp_name = tmp.path().display().to_string();

    let root = opts.root.trim_matches('/');
    ensure!(
        !root.is_empty(),
        "the store root is empty: name Docker's data root, e.g. `var/lib/docker`"
    );
    let mut w = StoreTar {
        builder: Builder::new(BufWriter::with_capacity(
            1 << 20,
            tmp.reopen()
                .with_context(|| format!("opening {tmp_name}"))?,
        )),
        uid: opts.ids.uid(0)?,
        gid: opts.ids.gid(0)?,
        epoch: opts.epoch,
    };
    let image = format!("{root}/image/{DRIVER}");
    let layerdb = format!("{image}/layerdb/sha256/{chain_hex}");
    let overlay = format!("{root}/{DRIVER}");
    for (path, mode) in [
        (root.to_owned(), 0o711),
        (format!("{root}/image"), 0o700),
        (image.clone(), 0o700),
        (format!("{image}/imagedb"), 0o700),
        (format!("{image}/imagedb/content"), 0o700),
        (format!("{image}/imagedb/content/sha256"), 0o700),
        (format!("{image}/imagedb/metadata"), 0o700),
        (format!("{image}/imagedb/metadata/sha256"), 0o700),
        (format!("{image}/layerdb"), 0o700),
        (format!("{image}/layerdb/sha256"), 0o755),
        (layerdb.clone(), 0o700),
        (overlay.clone(), 0o710),
        (format!("{overlay}/l"), 0o700),
        (format!("{overlay}/{cache}"), 0o710),
        (format!("{overlay}/{cache}/diff"), 0o755),
    ] {
        w.dir(&path, mode)?;
    }
    w.symlink(&format!("{overlay}/l/{link}"), &format!("../{cache}/diff"))?;
    w.file(&format!("{overlay}/{cache}/link"), 0o644, link.as_bytes())?;

    // The layer, streamed and hashed.
    let diff = format!("{overlay}/{cache}/diff");
    let mut hashed = HashReader {
        inner: layer_reader,
        hasher: Sha256::new(),
    };
    let (diff_size, layer_entries) = {
        let mut layer = Archive::new(&mut hashed);
        let copied = copy_layer(&mut layer, &diff, opts, &mut w)
            .with_context(|| format!("copying the layer {layer_path} of {name} into the store"))?;
        io::copy(&mut layer.into_inner(), &mut io::sink())
            .with_context(|| format!("reading the layer {layer_path} of {name}"))?;
        copied
    };
    let actual = format!("sha256:{}", hex::encode(hashed.hasher.finalize()));
    ensure!(
        actual == diff_id,
        "the layer {layer_path} of {name} ({layer_len} bytes) has sha256 {actual}, \
         but the config names {diff_id}: the archive is damaged; rebuild it"
    );

    w.file(&format!("{layerdb}/cache-id"), 0o644, cache.as_bytes())?;
    w.file(&format!("{layerdb}/diff"), 0o644, chain_id.as_bytes())?;
    w.file(
        &format!("{layerdb}/size"),
        0o644,
        diff_size.to_string().as_bytes(),
    )?;
    w.file(
        &format!("{image}/imagedb/content/sha256/{id_hex}"),
        0o600,
        config_bytes,
    )?;
    let repositories = serde_json::to_vec(&serde_json::json!({
        "Repositories": {familiar_name: {&reference.familiar: &image_id}}
    }))?;
    w.file(&format!("{image}/repositories.json"), 0o600, &repositories)?;

    let mut buffered = w
        .builder
        .into_inner()
        .with_context(|| format!("finishing {tmp_name}"))?;
    buffered
        .flush()
        .with_context(|| format!("writing {tmp_name}"))?;
    drop(buffered);
    tmp.as_file()
        .set_permissions(std::fs::Permissions::from_mode(0o644))
        .with_context(|| format!("setting the mode of {tmp_name}"))?;
    tmp.as_file()
        .sync_all()
        .with_context(|| format!("syncing {tmp_name}"))?;
    tmp.persist(out)
        .with_context(|| format!("renaming the finished store into {}", out.display()))?;

    Ok(StoreInfo {
        image_id,
        reference: reference.familiar,
        chain_id,
        cache_id: cache,
        link_id: link,
        diff_size,
        layer_entries,
    })
}

/// The hex part of a `sha256:` digest (64 lower-case hex digits).
fn hex_of(digest: &str) -> Result<&str> {
    digest
        .strip_prefix("sha256:")
        .filter(|h| {
            h.len() == 64
                && h.bytes()
                    .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
        })
        .with_context(|| format!("`{digest}` is not a sha256 digest"))
}

/// [`base32`], for the tests.
#[cfg(test)]
pub(crate) fn base32_for_tests(bytes: &[u8]) -> String {
    base32(bytes)
}

/// The store tarball being written.
struct StoreTar<W: Write> {
    builder: Builder<W>,
    /// Owner of the store's own entries (the daemon's root, mapped).
    uid: u64,
    gid: u64,
    epoch: u64,
}

impl<W: Write> StoreTar<W> {
    fn header(&self, ty: EntryType, mode: u32) -> Header {
        let mut h = Header::new_gnu();
        h.set_entry_type(ty);
        h.set_mode(mode);
        h.set_uid(self.uid);
        h.set_gid(self.gid);
        h.set_mtime(self.epoch);
        h.set_size(0);
        h
    }

    fn dir(&mut self, path: &str, mode: u32) -> Result<()> {
        let mut h = self.header(EntryType::Directory, mode);
        self.builder
            .append_data(&mut h, format!("{path}/"), io::empty())
            .with_context(|| format!("writing the store directory {path}"))
    }

    fn file(&mut self, path: &str, mode: u32, data: &[u8]) -> Result<()> {
        let mut h = self.header(EntryType::Regular, mode);
        h.set_size(data.len() as u64);
        self.builder
            .append_data(&mut h, path, data)
            .with_context(|| format!("writing the store file {path}"))
    }

    fn symlink(&mut self, path: &str, target: &str) -> Result<()> {
        let mut h = self.header(EntryType::Symlink, 0o777);
        self.builder
            .append_link(&mut h, path, target)
            .with_context(|| format!("writing the store symlink {path}"))
    }
}

/// Copies every entry of `layer` below `diff`, owners mapped. Returns the
/// driver's `DiffSize` of the result and the number of entries.
fn copy_layer<R: Read, W: Write>(
    layer: &mut Archive<R>,
    diff: &str,
    opts: &StoreOptions<'_>,
    w: &mut StoreTar<W>,
) -> Result<(u64, u64)> {
    let (mut size, mut count) = (0u64, 0u64);
    for entry in layer.entries().context("reading the layer")? {
        let mut entry = entry.context("reading an entry header of the layer")?;
        let raw = entry.path_bytes().into_owned();
        let path = std::str::from_utf8(&raw)
            .map(|p| p.trim_start_matches("./").trim_end_matches('/').to_owned())
            .with_context(|| {
                format!(
                    "layer entry `{}`: the path is not UTF-8",
                    String::from_utf8_lossy(&raw)
                )
            })?;
        let ctx = || format!("layer entry `{path}`");
        if path.is_empty() || path == "." {
            continue;
        }
        if path.split('/').any(|c| c.starts_with(".wh.") || c == "..") {
            bail!(
                "{}: whiteouts and `..` have no place in a one-layer image",
                ctx()
            );
        }
        let header = entry.header();
        let ty = header.entry_type();
        let mut h = Header::new_gnu();
        h.set_entry_type(ty);
        h.set_mode(header.mode().with_context(ctx)? & 0o7777);
        h.set_uid(
            opts.ids
                .uid(header.uid().with_context(ctx)?)
                .with_context(ctx)?,
        );
        h.set_gid(
            opts.ids
                .gid(header.gid().with_context(ctx)?)
                .with_context(ctx)?,
        );
        h.set_mtime(header.mtime().with_context(ctx)?.min(opts.epoch));
        h.set_size(0);
        let xattrs: Vec<(String, Vec<u8>)> = match entry.pax_extensions().with_context(ctx)? {
            Some(pax) => pax
                .map(|r| {
                    let r = r.with_context(ctx)?;
                    Ok((
                        r.key().with_context(ctx)?.to_owned(),
                        r.value_bytes().to_vec(),
                    ))
                })
                .filter(|r: &Result<(String, Vec<u8>)>| {
                    r.as_ref()
                        .map_or(true, |(k, _)| k.starts_with(XATTR_PREFIX))
                })
                .collect::<Result<_>>()?,
            None => Vec::new(),
        };
        if !xattrs.is_empty() {
            w.builder
                .append_pax_extensions(xattrs.iter().map(|(k, v)| (k.as_str(), &v[..])))
                .with_context(ctx)?;
        }
        let dest = format!("{diff}/{path}");
        match ty {
            EntryType::Regular | EntryType::Continuous => {
                let len = entry.size();
                size += len;
                h.set_entry_type(EntryType::Regular);
                h.set_size(len);
                w.builder
                    .append_data(&mut h, &dest, &mut entry)
                    .with_context(ctx)?;
            }
            EntryType::Directory => {
                w.builder
                    .append_data(&mut h, format!("{dest}/"), io::empty())
                    .with_context(ctx)?;
            }
            EntryType::Fifo => {
                w.builder
                    .append_data(&mut h, &dest, io::empty())
                    .with_context(ctx)?;
            }
            EntryType::Symlink => {
                let target = entry
                    .link_name_bytes()
                    .with_context(|| format!("{}: symlink without a target", ctx()))?
                    .into_owned();
                size += target.len() as u64;
                append_link_verbatim(&mut w.builder, &mut h, Path::new(&dest), &target)
                    .with_context(ctx)?;
            }
            EntryType::Link => {
                // The same inode as its target: DiffSize counts it once.
                let target = entry
                    .link_name_bytes()
                    .with_context(|| format!("{}: hard link without a target", ctx()))?;
                let target = std::str::from_utf8(&target)
                    .with_context(|| format!("{}: the hard-link target is not UTF-8", ctx()))?
                    .trim_start_matches("./")
                    .to_owned();
                let target = format!("{diff}/{target}");
                append_link_verbatim(&mut w.builder, &mut h, Path::new(&dest), target.as_bytes())
                    .with_context(ctx)?;
            }
            other => bail!(
                "{}: entry type {:?} cannot be written to the store",
                ctx(),
                other.as_byte() as char
            ),
        }
        count += 1;
    }
    Ok((size, count))
}

/// The entries of a store tarball, for the tests:
/// path → (type, mode, uid, gid).
#[cfg(test)]
pub(crate) fn listing(
    store_tar: &Path,
) -> std::collections::BTreeMap<String, (EntryType, u32, u64, u64)> {
    let mut out = std::collections::BTreeMap::new();
    let mut archive = Archive::new(File::open(store_tar).unwrap());
    for e in archive.entries().unwrap() {
        let e = e.unwrap();
        let h = e.header();
        out.insert(
            String::from_utf8_lossy(&e.path_bytes())
                .trim_end_matches('/')
                .to_owned(),
            (
                h.entry_type(),
                h.mode().unwrap(),
                h.uid().unwrap(),
                h.gid().unwrap(),
            ),
        );
    }
    out
}
