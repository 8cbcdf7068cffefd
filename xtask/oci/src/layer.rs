//! The layer: the rootfs tar re-written deterministically.
//!
//! Pass one ([`scan`]) reads only the headers of the rootfs tar (seeking over
//! the data) and keeps, per entry, its normalized path, metadata and the
//! offset of its data. The list is then fixed up — dropped entries, hard-link
//! groups re-pointed at the first member in sorted order — and sorted.
//! Pass two ([`write`]) writes the layer, copying each file's data from its
//! offset.

use std::collections::{BTreeMap, HashMap};
use std::ffi::OsStr;
use std::fs::File;
use std::io::{self, BufReader, Read, Seek, SeekFrom, Write};
use std::os::unix::ffi::OsStrExt;
use std::path::Path;

use anyhow::{Context, Result, bail};
use tar::{Archive, Builder, EntryType, Header};

use super::LayerStats;

/// Bits cleared on every entry (AGT-3): setuid and setgid.
pub(crate) const SETID_BITS: u32 = 0o6000;

/// The pax record prefix for extended attributes (GNU tar, bsdtar, Go).
pub const XATTR_PREFIX: &str = "SCHILY.xattr.";

/// The xattr holding file capabilities, dropped with the setid bits.
pub(crate) const CAPABILITY_XATTR: &str = "SCHILY.xattr.security.capability";

/// What an entry is, after dropping what the layer does not keep (also
/// what the root-file-system merge lays over the base from a tarball).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// A regular file.
    File,
    /// A directory.
    Dir,
    /// A symbolic link.
    Symlink,
    /// A hard link to an earlier entry.
    HardLink,
    /// A named pipe.
    Fifo,
}

/// One entry of the rootfs tar, as the layer will hold it.
#[derive(Debug, Clone)]
pub(crate) struct Node {
    /// Normalized: no leading `./` or `/`, no empty or `.` components, no
    /// trailing `/`.
    path: Vec<u8>,
    kind: Kind,
    mode: u32,
    uid: u64,
    gid: u64,
    mtime: u64,
    /// Data size (files only).
    size: u64,
    /// Offset of the data in the rootfs tar (files only).
    offset: u64,
    /// Symlink target (verbatim) or hard-link target (normalized path).
    link: Vec<u8>,
    /// Full pax keys (`SCHILY.xattr.…`) and values, sorted by key.
    xattrs: Vec<(String, Vec<u8>)>,
}

/// The sorted entries of the layer, ready for [`write`].
#[derive(Debug)]
pub(crate) struct Plan {
    nodes: Vec<Node>,
    /// Counts so far; [`write`] fills in `entries_written`.
    pub(crate) stats: LayerStats,
}

/// Normalizes a tar member name; `None` for the root itself.
fn normalize(raw: &[u8]) -> Result<Option<Vec<u8>>> {
    let mut out = Vec::with_capacity(raw.len());
    for part in raw.split(|b| *b == b'/') {
        match part {
            b"" | b"." => {}
            b".." => bail!("member name has a `..` component"),
            _ => {
                if !out.is_empty() {
                    out.push(b'/');
                }
                out.extend_from_slice(part);
            }
        }
    }
    Ok(if out.is_empty() { None } else { Some(out) })
}

/// Whether a normalized path is under one of the trees whose contents the
/// layer never holds (the runtime mounts over them).
fn under_special_tree(path: &[u8]) -> bool {
    [&b"dev/"[..], b"proc/", b"sys/"]
        .iter()
        .any(|p| path.starts_with(p))
}

/// Parses a pax numeric record (`mtime` may carry a fraction).
fn pax_number(value: &[u8]) -> Option<u64> {
    let s = std::str::from_utf8(value).ok()?;
    let whole = s.split('.').next()?;
    whole.parse().ok()
}

/// Pass one: reads the headers of `rootfs_tar` and plans the layer.
pub(crate) fn scan(rootfs_tar: &Path) -> Result<Plan> {
    let name = rootfs_tar.display();
    let file = File::open(rootfs_tar).with_context(|| format!("opening {name}"))?;
    let mut archive = Archive::new(BufReader::with_capacity(1 << 20, file));
    let mut stats = LayerStats::default();
    let mut nodes = Vec::new();
    let entries = archive
        .entries_with_seek()
        .with_context(|| format!("reading {name}"))?;
    for entry in entries {
        let mut entry = entry.with_context(|| format!("reading an entry header of {name}"))?;
        let raw_path = entry.path_bytes().into_owned();
        let shown = String::from_utf8_lossy(&raw_path).into_owned();
        let ctx = || format!("entry `{shown}` of {name}");
        let ty = entry.header().entry_type();
        if ty == EntryType::XGlobalHeader {
            continue;
        }
        stats.entries_read += 1;

        let kind = match ty {
            EntryType::Regular | EntryType::Continuous => Kind::File,
            EntryType::Directory => Kind::Dir,
            EntryType::Symlink => Kind::Symlink,
            EntryType::Link => Kind::HardLink,
            EntryType::Fifo => Kind::Fifo,
            EntryType::Char | EntryType::Block => {
                stats.devices_dropped += 1;
                continue;
            }
            EntryType::GNUSparse => bail!("{}: sparse files are not supported", ctx()),
            other => bail!(
                "{}: unsupported entry type {:?}",
                ctx(),
                other.as_byte() as char
            ),
        };
        let Some(path) = normalize(&raw_path).with_context(ctx)? else {
            // The root directory: the runtime creates it.
            stats.special_dropped += 1;
            continue;
        };
        if under_special_tree(&path) {
            stats.special_dropped += 1;
            continue;
        }

        let header = entry.header();
        let mode = header.mode().with_context(ctx)? & 0o7777;
        let mut uid = header.uid().with_context(ctx)?;
        let mut gid = header.gid().with_context(ctx)?;
        let mut mtime = header.mtime().with_context(ctx)?;
        let link = match kind {
            Kind::Symlink | Kind::HardLink => {
                let Some(target) = entry.link_name_bytes() else {
                    bail!("{}: link without a target", ctx());
                };
                if target.is_empty() {
                    bail!("{}: link with an empty target", ctx());
                }
                if kind == Kind::HardLink {
                    normalize(&target)
                        .with_context(ctx)?
                        .with_context(|| format!("{}: hard link to the root", ctx()))?
                } else {
                    target.into_owned()
                }
            }
            _ => Vec::new(),
        };
        let (size, offset) = if kind == Kind::File {
            (entry.size(), entry.raw_file_position())
        } else {
            (0, 0)
        };

        let mut xattrs = Vec::new();
        if let Some(pax) = entry.pax_extensions().with_context(ctx)? {
            for record in pax {
                let record = record.with_context(ctx)?;
                let key = record.key_bytes();
                let value = record.value_bytes();
                match key {
                    b"uid" => uid = pax_number(value).unwrap_or(uid),
                    b"gid" => gid = pax_number(value).unwrap_or(gid),
                    b"mtime" => mtime = pax_number(value).unwrap_or(mtime),
                    _ if key.starts_with(b"GNU.sparse.") => {
                        bail!("{}: sparse files are not supported", ctx())
                    }
                    _ if key.starts_with(XATTR_PREFIX.as_bytes()) => {
                        if key == CAPABILITY_XATTR.as_bytes() {
                            stats.capabilities_dropped += 1;
                        } else {
                            let key = std::str::from_utf8(key)
                                .with_context(|| format!("{}: xattr name is not UTF-8", ctx()))?;
                            xattrs.push((key.to_owned(), value.to_vec()));
                        }
                    }
                    // atime, ctime, LIBARCHIVE.* (duplicates of SCHILY
                    // records), comments, …: not carried over.
                    _ => {}
                }
            }
        }
        xattrs.sort();

        if mode & SETID_BITS != 0 {
            stats.setid_cleared += 1;
        }
        nodes.push(Node {
            path,
            kind,
            mode: mode & !SETID_BITS,
            uid,
            gid,
            mtime,
            size,
            offset,
            link,
            xattrs,
        });
    }
    plan(nodes, stats).with_context(|| format!("planning the layer for {name}"))
}

/// Resolves hard links and sorts.
///
/// Each group of hard links (the data entry and every link to it) is
/// re-pointed at the member that sorts first: that one is written with the
/// data and the others as links to it, so every link target precedes the
/// link whatever the input order was.
fn plan(mut nodes: Vec<Node>, mut stats: LayerStats) -> Result<Plan> {
    let mut by_path: HashMap<Vec<u8>, usize> = HashMap::with_capacity(nodes.len());
    for (i, node) in nodes.iter().enumerate() {
        if by_path.insert(node.path.clone(), i).is_some() {
            bail!(
                "`{}` appears twice in the rootfs tar",
                String::from_utf8_lossy(&node.path)
            );
        }
    }

    // Data entry index -> indexes of the links to it (in input order).
    let mut groups: BTreeMap<usize, Vec<usize>> = BTreeMap::new();
    for (i, node) in nodes.iter().enumerate() {
        if node.kind != Kind::HardLink {
            continue;
        }
        let mut cur = i;
        let mut hops = 0usize;
        let root = loop {
            let target = &nodes[cur].link;
            let Some(&j) = by_path.get(target) else {
                bail!(
                    "hard link `{}` points at `{}`, which is not in the layer",
                    String::from_utf8_lossy(&node.path),
                    String::from_utf8_lossy(target)
                );
            };
            if nodes[j].kind != Kind::HardLink {
                break j;
            }
            cur = j;
            hops += 1;
            if hops > nodes.len() {
                bail!(
                    "hard link `{}` is part of a cycle",
                    String::from_utf8_lossy(&node.path)
                );
            }
        };
        if nodes[root].kind == Kind::Dir {
            bail!(
                "hard link `{}` points at a directory",
                String::from_utf8_lossy(&node.path)
            );
        }
        groups.entry(root).or_default().push(i);
    }

    for (root, links) in groups {
        let proto = nodes[root].clone();
        let leader = links
            .iter()
            .copied()
            .chain([root])
            .min_by(|a, b| nodes[*a].path.cmp(&nodes[*b].path))
            .unwrap_or(root);
        let leader_path = nodes[leader].path.clone();
        for member in links.into_iter().chain([root]) {
            let path = std::mem::take(&mut nodes[member].path);
            nodes[member] = if member == leader {
                Node {
                    path,
                    ..proto.clone()
                }
            } else {
                stats.hardlinks += 1;
                Node {
                    path,
                    kind: Kind::HardLink,
                    size: 0,
                    offset: 0,
                    link: leader_path.clone(),
                    xattrs: Vec::new(),
                    ..proto.clone()
                }
            };
        }
    }

    nodes.sort_unstable_by(|a, b| a.path.cmp(&b.path));
    Ok(Plan { nodes, stats })
}

/// A reader that yields exactly `remaining` bytes of `inner`, or fails.
struct Exact<R> {
    inner: R,
    remaining: u64,
}

impl<R: Read> Read for Exact<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        if self.remaining == 0 {
            return Ok(0);
        }
        let max = usize::try_from(self.remaining)
            .unwrap_or(usize::MAX)
            .min(buf.len());
        let n = self.inner.read(&mut buf[..max])?;
        if n == 0 {
            return Err(io::Error::new(
                io::ErrorKind::UnexpectedEof,
                "the tarball ends inside a file's data",
            ));
        }
        self.remaining -= n as u64;
        Ok(n)
    }
}

/// Appends a symlink or hard link whose target is kept byte for byte where
/// the header has room for it (`append_link` would canonicalize `a//b`);
/// longer targets go through `append_link`'s GNU long-link record.
pub(crate) fn append_link_verbatim<W: Write>(
    builder: &mut Builder<W>,
    header: &mut Header,
    path: &Path,
    target: &[u8],
) -> io::Result<()> {
    if target.len() <= 100 && !target.contains(&0) {
        header.set_link_name_literal(target)?;
        builder.append_data(header, path, io::empty())
    } else {
        builder.append_link(header, path, Path::new(OsStr::from_bytes(target)))
    }
}

/// One tar entry's metadata, as the builder's two tar writers (this layer
/// and the root merge, `rootfs::merge`) write it.
pub struct EntryHead<'a> {
    /// What the entry is.
    pub kind: Kind,
    /// Permission bits (setid bits included as given).
    pub mode: u32,
    /// Numeric owner.
    pub uid: u64,
    /// Numeric group.
    pub gid: u64,
    /// Clamped to the epoch when written.
    pub mtime: u64,
    /// `SCHILY.xattr.*` pax records.
    pub xattrs: &'a [(String, Vec<u8>)],
}

/// Appends one entry at `path`: its xattrs as pax records, then a GNU
/// header (mtime clamped to `epoch`) and, by kind, exactly `size` bytes of
/// `data` for a file (positioned by the caller; a short read is an error),
/// `path/` for a directory, `link` kept byte for byte for a link.
pub fn append_entry<W: Write>(
    builder: &mut Builder<W>,
    head: &EntryHead<'_>,
    epoch: u64,
    path: &[u8],
    link: &[u8],
    data: &mut dyn Read,
    size: u64,
) -> io::Result<()> {
    if !head.xattrs.is_empty() {
        builder.append_pax_extensions(head.xattrs.iter().map(|(k, v)| (k.as_str(), &v[..])))?;
    }
    let mut header = Header::new_gnu();
    header.set_mode(head.mode);
    header.set_uid(head.uid);
    header.set_gid(head.gid);
    header.set_mtime(head.mtime.min(epoch));
    header.set_size(0);
    let at = Path::new(OsStr::from_bytes(path));
    match head.kind {
        Kind::File => {
            header.set_entry_type(EntryType::Regular);
            header.set_size(size);
            let exact = Exact {
                inner: data,
                remaining: size,
            };
            builder.append_data(&mut header, at, exact)
        }
        Kind::Dir => {
            header.set_entry_type(EntryType::Directory);
            let mut dir = path.to_vec();
            dir.push(b'/');
            builder.append_data(&mut header, Path::new(OsStr::from_bytes(&dir)), io::empty())
        }
        Kind::Fifo => {
            header.set_entry_type(EntryType::Fifo);
            builder.append_data(&mut header, at, io::empty())
        }
        Kind::Symlink | Kind::HardLink => {
            header.set_entry_type(if head.kind == Kind::Symlink {
                EntryType::Symlink
            } else {
                EntryType::Link
            });
            append_link_verbatim(builder, &mut header, at, link)
        }
    }
}

/// Pass two: writes the planned layer into `out`, data copied from
/// `rootfs_tar`. Returns `out` after the end-of-archive blocks.
pub(crate) fn write<W: Write>(rootfs_tar: &Path, plan: &mut Plan, epoch: u64, out: W) -> Result<W> {
    let name = rootfs_tar.display();
    let file = File::open(rootfs_tar).with_context(|| format!("opening {name}"))?;
    let mut input = BufReader::with_capacity(1 << 20, file);
    let mut builder = Builder::new(out);
    for node in &plan.nodes {
        let shown = String::from_utf8_lossy(&node.path);
        let ctx = || format!("writing `{shown}` (from {name}) to the layer");
        if node.kind == Kind::File {
            input
                .seek(SeekFrom::Start(node.offset))
                .with_context(|| format!("seeking in {name}"))?;
        }
        let head = EntryHead {
            kind: node.kind,
            mode: node.mode,
            uid: node.uid,
            gid: node.gid,
            mtime: node.mtime,
            xattrs: &node.xattrs,
        };
        append_entry(
            &mut builder,
            &head,
            epoch,
            &node.path,
            &node.link,
            &mut input,
            node.size,
        )
        .with_context(ctx)?;
        plan.stats.entries_written += 1;
    }
    builder
        .into_inner()
        .with_context(|| format!("finishing the layer for {name}"))
}
