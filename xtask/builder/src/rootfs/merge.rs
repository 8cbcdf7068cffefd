//! Merging the base root tarball with overlay layers into the one tarball
//! that `mke2fs -d` turns into the root filesystem.
//!
//! Deterministic: base entries keep mmdebstrap's order; an overlay entry for
//! an existing path replaces it in place; new overlay entries follow in path
//! order, parents first. Every mtime is clamped to the epoch.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::fs::{self, File};
use std::io::{self, BufReader, BufWriter, Read, Seek, SeekFrom};
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use anyhow::{Context, Result, bail};
use appliance::{Entry, Tree};
use sha2::{Digest, Sha256};
use tar::{EntryType, Header};

use oci::{EntryHead, EntryKind as TarKind, XATTR_PREFIX, append_entry};

/// Where overlay bytes come from.
#[derive(Debug, Clone)]
enum Source {
    Dir {
        mode: u32,
        uid: u32,
        gid: u32,
    },
    Bytes {
        mode: u32,
        uid: u32,
        gid: u32,
        data: Vec<u8>,
    },
    File {
        mode: u32,
        uid: u32,
        gid: u32,
        path: PathBuf,
    },
    Symlink {
        target: String,
    },
    /// An entry of a tarball on disk, as it is there.
    Tar(Box<TarEntry>),
}

/// One entry of a tarball laid over the base with its own owner, mode,
/// mtime, link target and xattrs; a file's data stays in the tarball.
#[derive(Debug, Clone)]
struct TarEntry {
    kind: TarKind,
    mode: u32,
    uid: u64,
    gid: u64,
    mtime: u64,
    /// Symlink target (verbatim) or hard-link target (an overlay key).
    link: Vec<u8>,
    /// `SCHILY.xattr.*` pax records.
    xattrs: Vec<(String, Vec<u8>)>,
    tar: Arc<PathBuf>,
    offset: u64,
    size: u64,
}

/// Entries to lay over the base, keyed by path without a leading `/` or `./`.
#[derive(Debug, Default)]
pub struct Overlay {
    entries: BTreeMap<String, Source>,
}

impl Overlay {
    /// Adds every entry of an appliance [`Tree`].
    pub fn add_tree(&mut self, tree: &Tree) {
        for (path, e) in tree.entries() {
            let src = match e {
                Entry::File {
                    mode,
                    uid,
                    gid,
                    data,
                } => Source::Bytes {
                    mode: *mode,
                    uid: *uid,
                    gid: *gid,
                    data: data.clone(),
                },
                Entry::Dir { mode, uid, gid } => Source::Dir {
                    mode: *mode,
                    uid: *uid,
                    gid: *gid,
                },
                Entry::Symlink { target } => Source::Symlink {
                    target: target.clone(),
                },
            };
            self.entries.insert(path.to_string(), src);
        }
    }

    /// Adds one file from disk at `dest`, root-owned with `mode`.
    pub fn add_file(&mut self, dest: &str, src: &Path, mode: u32) {
        self.entries.insert(
            clean(dest),
            Source::File {
                mode,
                uid: 0,
                gid: 0,
                path: src.to_path_buf(),
            },
        );
    }

    /// Adds a directory tree from disk below `dest`, root-owned, modes kept
    /// (group/other write bits dropped).
    pub fn add_dir(&mut self, dest: &str, src: &Path) -> Result<()> {
        let dest = clean(dest);
        self.entries.insert(
            dest.clone(),
            Source::Dir {
                mode: 0o755,
                uid: 0,
                gid: 0,
            },
        );
        self.walk(&dest, src)
    }

    /// Adds every entry of the tarball `tar` (a keyed stage output) as it is
    /// there: type, mode, owner, mtime (clamped to the epoch when merged),
    /// symlink and hard-link targets, `SCHILY.xattr.*` records. A hard
    /// link's target must come earlier in the tarball and sort before it.
    /// Returns the number of entries.
    pub fn add_tar(&mut self, tar: &Path) -> Result<usize> {
        let name = tar.display();
        let shared = Arc::new(tar.to_path_buf());
        let file = File::open(tar).with_context(|| format!("opening {name}"))?;
        let mut archive = tar::Archive::new(BufReader::with_capacity(1 << 20, file));
        let mut count = 0;
        for entry in archive
            .entries_with_seek()
            .with_context(|| format!("reading {name}"))?
        {
            let mut entry = entry.with_context(|| format!("reading an entry of {name}"))?;
            let raw = entry.path_bytes().into_owned();
            let path = std::str::from_utf8(&raw).map(clean).with_context(|| {
                format!("{name}: `{}` is not UTF-8", String::from_utf8_lossy(&raw))
            })?;
            let ctx = || format!("{name}: entry `{path}`");
            let header = entry.header();
            let kind = match header.entry_type() {
                EntryType::Regular | EntryType::Continuous => TarKind::File,
                EntryType::Directory => TarKind::Dir,
                EntryType::Symlink => TarKind::Symlink,
                EntryType::Link => TarKind::HardLink,
                EntryType::Fifo => TarKind::Fifo,
                other => bail!("{}: entry type {:?} cannot be layered", ctx(), other),
            };
            let (mode, uid, gid, mtime) = (
                header.mode().with_context(ctx)? & 0o7777,
                header.uid().with_context(ctx)?,
                header.gid().with_context(ctx)?,
                header.mtime().with_context(ctx)?,
            );
            let mut link = entry
                .link_name_bytes()
                .map(|l| l.into_owned())
                .unwrap_or_default();
            if kind == TarKind::HardLink {
                let target = std::str::from_utf8(&link)
                    .map(clean)
                    .with_context(|| format!("{}: the hard-link target is not UTF-8", ctx()))?;
                if !self.entries.contains_key(&target) || target >= path {
                    bail!(
                        "{}: hard link to `{target}`, which is not an earlier entry that sorts before it",
                        ctx()
                    );
                }
                link = target.into_bytes();
            }
            let mut xattrs = Vec::new();
            if let Some(pax) = entry.pax_extensions().with_context(ctx)? {
                for record in pax {
                    let record = record.with_context(ctx)?;
                    let key = record.key().with_context(ctx)?;
                    if key.starts_with(XATTR_PREFIX) {
                        xattrs.push((key.to_owned(), record.value_bytes().to_vec()));
                    }
                }
            }
            let (offset, size) = if kind == TarKind::File {
                (entry.raw_file_position(), entry.size())
            } else {
                (0, 0)
            };
            self.entries.insert(
                path,
                Source::Tar(Box::new(TarEntry {
                    kind,
                    mode,
                    uid,
                    gid,
                    mtime,
                    link,
                    xattrs,
                    tar: Arc::clone(&shared),
                    offset,
                    size,
                })),
            );
            count += 1;
        }
        Ok(count)
    }

    /// A hash of the entries: paths, types, owners, modes, the bytes of
    /// in-memory files and symlink targets; a file from disk counts by its
    /// path and size only, so add only files whose path names their content
    /// (a keyed stage output) or whose content the caller hashes itself.
    pub fn digest(&self) -> String {
        let mut h = Sha256::new();
        for (key, src) in &self.entries {
            h.update(key.as_bytes());
            match src {
                Source::Dir { mode, uid, gid } => {
                    h.update(format!("\0dir {mode:o} {uid} {gid}\0"));
                }
                Source::Bytes {
                    mode,
                    uid,
                    gid,
                    data,
                } => {
                    h.update(format!("\0bytes {mode:o} {uid} {gid} {}\0", data.len()));
                    h.update(data);
                }
                Source::File {
                    mode,
                    uid,
                    gid,
                    path,
                } => {
                    let len = fs::metadata(path).map(|m| m.len()).unwrap_or(u64::MAX);
                    h.update(format!(
                        "\0file {mode:o} {uid} {gid} {len} {}\0",
                        path.display()
                    ));
                }
                Source::Symlink { target } => {
                    h.update(format!("\0symlink {target}\0"));
                }
                Source::Tar(e) => {
                    h.update(format!(
                        "\0tar {:?} {:o} {} {} {} {} {} {} {}\0",
                        e.kind,
                        e.mode,
                        e.uid,
                        e.gid,
                        e.mtime,
                        e.tar.display(),
                        e.offset,
                        e.size,
                        e.xattrs.len()
                    ));
                    h.update(&e.link);
                    for (k, v) in &e.xattrs {
                        h.update(k.as_bytes());
                        h.update(v);
                    }
                }
            }
        }
        hex::encode(h.finalize())
    }

    fn walk(&mut self, dest: &str, dir: &Path) -> Result<()> {
        let mut names: Vec<_> = fs::read_dir(dir)
            .with_context(|| format!("reading {}", dir.display()))?
            .collect::<io::Result<_>>()
            .with_context(|| format!("reading {}", dir.display()))?;
        names.sort_by_key(|e| e.file_name());
        for e in names {
            let path = e.path();
            let name = e.file_name();
            let name = name
                .to_str()
                .with_context(|| format!("{} is not UTF-8", path.display()))?;
            let key = format!("{dest}/{name}");
            let meta = fs::symlink_metadata(&path)
                .with_context(|| format!("reading {}", path.display()))?;
            let mode = meta.permissions().mode() & 0o755;
            if meta.file_type().is_symlink() {
                let target =
                    fs::read_link(&path).with_context(|| format!("reading {}", path.display()))?;
                self.entries.insert(
                    key,
                    Source::Symlink {
                        target: target.display().to_string(),
                    },
                );
            } else if meta.is_dir() {
                self.entries.insert(
                    key.clone(),
                    Source::Dir {
                        mode,
                        uid: 0,
                        gid: 0,
                    },
                );
                self.walk(&key, &path)?;
            } else if meta.is_file() {
                self.entries.insert(
                    key,
                    Source::File {
                        mode,
                        uid: 0,
                        gid: 0,
                        path,
                    },
                );
            } else {
                bail!(
                    "{}: only files, directories and symlinks can be layered (mode {:o})",
                    path.display(),
                    meta.mode()
                );
            }
        }
        Ok(())
    }
}

fn clean(path: &str) -> String {
    path.trim_start_matches("./")
        .trim_start_matches('/')
        .trim_end_matches('/')
        .to_string()
}

/// Entries whose paths are known when the stream starts and whose content
/// is made later; see [`merge_into`].
pub struct Late<'a> {
    /// Their paths: all new (in neither the base nor the overlay).
    pub paths: Vec<String>,
    /// Makes them (exactly these paths); called at most once.
    pub make: &'a mut dyn FnMut() -> Result<Overlay>,
}

/// Writes `base` with `overlay` laid over it to `out` (atomically).
/// Returns the number of entries written.
pub fn merge(base: &Path, overlay: &Overlay, epoch: u64, out: &Path) -> Result<usize> {
    let dir = out.parent().unwrap_or(Path::new("."));
    let tmp = tempfile::NamedTempFile::new_in(dir)
        .with_context(|| format!("creating a temporary file in {}", dir.display()))?;
    let mut nothing = || Ok(Overlay::default());
    let none = Late {
        paths: Vec::new(),
        make: &mut nothing,
    };
    let (count, writer) = merge_into(
        base,
        overlay,
        none,
        epoch,
        BufWriter::with_capacity(1 << 20, tmp.reopen()?),
    )?;
    writer
        .into_inner()
        .map_err(|e| e.into_error())
        .context("writing the root tarball")?;
    tmp.persist(out)
        .with_context(|| format!("renaming into {}", out.display()))?;
    Ok(count)
}

/// Streams `base` with `overlay` laid over it, as a tarball, into `out`
/// (for example the standard input of `mke2fs -d -`). Returns the number
/// of entries written and the writer.
///
/// `late` names entries of new paths (an error otherwise) whose content is
/// still being made when the stream starts (the first-boot agent, the
/// manifest naming its hash): it is made when the stream reaches the first
/// of them in path order. The bytes are those of one overlay holding both.
pub fn merge_into<W: io::Write>(
    base: &Path,
    overlay: &Overlay,
    late: Late<'_>,
    epoch: u64,
    out: W,
) -> Result<(usize, W)> {
    let mut builder = tar::Builder::new(out);
    builder.mode(tar::HeaderMode::Complete);
    let mut written = BTreeSet::new();
    let mut count = 0usize;
    let mut files = TarFiles::default();

    let mut archive = tar::Archive::new(BufReader::with_capacity(
        1 << 20,
        File::open(base).with_context(|| format!("opening {}", base.display()))?,
    ));
    for entry in archive
        .entries()
        .with_context(|| format!("reading {}", base.display()))?
    {
        let mut entry = entry.with_context(|| format!("reading {}", base.display()))?;
        let raw_path = entry.path()?.display().to_string();
        let key = clean(&raw_path);
        if late.paths.iter().any(|p| clean(p) == key) {
            bail!("late overlay entry {key} is already in the base");
        }
        if let Some(src) = overlay.entries.get(&key) {
            if written.insert(key.clone()) {
                append(&mut builder, &key, src, epoch, &mut files)?;
                count += 1;
            }
            continue;
        }
        written.insert(key.clone());
        let mut header = entry.header().clone();
        header.set_mtime(header.mtime().unwrap_or(epoch).min(epoch));
        let name = if key.is_empty() {
            "./".to_string()
        } else {
            format!("./{key}")
        };
        match header.entry_type() {
            EntryType::Symlink | EntryType::Link => {
                let target = entry
                    .link_name()?
                    .with_context(|| {
                        format!("{raw_path}: link without target in {}", base.display())
                    })?
                    .display()
                    .to_string();
                builder.append_link(&mut header, &name, &target)?;
            }
            _ => {
                builder.append_data(&mut header, &name, &mut entry)?;
            }
        }
        count += 1;
    }

    let late_paths: BTreeSet<String> = late.paths.iter().map(|p| clean(p)).collect();
    if let Some(key) = late_paths
        .iter()
        .find(|k| written.contains(*k) || overlay.entries.contains_key(*k))
    {
        bail!("late overlay entry {key} is already in the base or the overlay");
    }
    let mut rest: BTreeMap<&str, Option<&Source>> = overlay
        .entries
        .iter()
        .map(|(k, s)| (k.as_str(), Some(s)))
        .collect();
    rest.extend(late_paths.iter().map(|k| (k.as_str(), None)));
    let mut made: Option<Overlay> = None;
    for (key, src) in rest {
        if written.contains(key) {
            continue;
        }
        if src.is_none() && made.is_none() {
            let m = (late.make)()?;
            let got: BTreeSet<&String> = m.entries.keys().collect();
            if got != late_paths.iter().collect() {
                bail!("the late overlay made {got:?}, not the announced {late_paths:?}");
            }
            made = Some(m);
        }
        let src = match src {
            Some(s) => s,
            None => made
                .as_ref()
                .and_then(|m| m.entries.get(key))
                .with_context(|| format!("the late overlay has no {key}"))?,
        };
        // Parents first: create any that neither the base nor the overlay has.
        let mut parent = String::new();
        for part in key
            .split('/')
            .collect::<Vec<_>>()
            .iter()
            .rev()
            .skip(1)
            .rev()
        {
            parent = if parent.is_empty() {
                part.to_string()
            } else {
                format!("{parent}/{part}")
            };
            if !written.contains(&parent) {
                append(
                    &mut builder,
                    &parent,
                    &Source::Dir {
                        mode: 0o755,
                        uid: 0,
                        gid: 0,
                    },
                    epoch,
                    &mut files,
                )?;
                written.insert(parent.clone());
                count += 1;
            }
        }
        if let Source::Tar(e) = src
            && e.kind == TarKind::HardLink
        {
            let target = String::from_utf8_lossy(&e.link);
            if !written.contains(target.as_ref()) {
                bail!("hard link {key} comes before its target {target} in the merged tarball");
            }
        }
        append(&mut builder, key, src, epoch, &mut files)?;
        written.insert(key.to_string());
        count += 1;
    }
    let writer = builder.into_inner().context("finishing the root tarball")?;
    Ok((count, writer))
}

/// Open tarballs that [`Source::Tar`] entries read their data from.
type TarFiles = HashMap<Arc<PathBuf>, File>;

fn append<W: io::Write>(
    b: &mut tar::Builder<W>,
    key: &str,
    src: &Source,
    epoch: u64,
    files: &mut TarFiles,
) -> Result<()> {
    let name = format!("./{key}");
    let mut h = Header::new_gnu();
    h.set_mtime(epoch);
    match src {
        Source::Dir { mode, uid, gid } => {
            h.set_entry_type(EntryType::Directory);
            set_owner(&mut h, *mode, *uid, *gid);
            h.set_size(0);
            b.append_data(&mut h, format!("{name}/"), io::empty())?;
        }
        Source::Bytes {
            mode,
            uid,
            gid,
            data,
        } => {
            h.set_entry_type(EntryType::Regular);
            set_owner(&mut h, *mode, *uid, *gid);
            h.set_size(data.len() as u64);
            b.append_data(&mut h, &name, data.as_slice())?;
        }
        Source::File {
            mode,
            uid,
            gid,
            path,
        } => {
            let f = File::open(path).with_context(|| format!("opening {}", path.display()))?;
            let len = f.metadata()?.len();
            h.set_entry_type(EntryType::Regular);
            set_owner(&mut h, *mode, *uid, *gid);
            h.set_size(len);
            b.append_data(&mut h, &name, BufReader::new(f).take(len))
                .with_context(|| format!("adding {}", path.display()))?;
        }
        Source::Symlink { target } => {
            h.set_entry_type(EntryType::Symlink);
            set_owner(&mut h, 0o777, 0, 0);
            h.set_size(0);
            b.append_link(&mut h, &name, target)?;
        }
        Source::Tar(e) => append_tar_entry(b, &name, e, epoch, files)?,
    }
    Ok(())
}

fn append_tar_entry<W: io::Write>(
    b: &mut tar::Builder<W>,
    name: &str,
    e: &TarEntry,
    epoch: u64,
    files: &mut TarFiles,
) -> Result<()> {
    let ctx = || format!("adding {name} from {}", e.tar.display());
    let mut data: &mut dyn Read = &mut io::empty();
    if e.kind == TarKind::File {
        let file = match files.entry(Arc::clone(&e.tar)) {
            std::collections::hash_map::Entry::Occupied(o) => o.into_mut(),
            std::collections::hash_map::Entry::Vacant(v) => v.insert(
                File::open(e.tar.as_path())
                    .with_context(|| format!("opening {}", e.tar.display()))?,
            ),
        };
        file.seek(SeekFrom::Start(e.offset)).with_context(ctx)?;
        data = file;
    }
    // A hard link's target is an overlay key: written as `./key`, like `name`.
    let link = if e.kind == TarKind::HardLink {
        [b"./".as_slice(), &e.link].concat()
    } else {
        e.link.clone()
    };
    let head = EntryHead {
        kind: e.kind,
        mode: e.mode,
        uid: e.uid,
        gid: e.gid,
        mtime: e.mtime,
        xattrs: &e.xattrs,
    };
    append_entry(b, &head, epoch, name.as_bytes(), &link, data, e.size).with_context(ctx)?;
    Ok(())
}

fn set_owner(h: &mut Header, mode: u32, uid: u32, gid: u32) {
    h.set_mode(mode);
    h.set_uid(uid.into());
    h.set_gid(gid.into());
}

#[cfg(test)]
mod tests {
    use super::*;

    fn base_tar(dir: &Path) -> PathBuf {
        let path = dir.join("base.tar");
        let mut b = tar::Builder::new(File::create(&path).unwrap());
        for (name, data) in [("./etc/a", &b"old\n"[..]), ("./etc/b", b"keep\n")] {
            let mut h = Header::new_gnu();
            h.set_mode(0o644);
            h.set_size(data.len() as u64);
            h.set_mtime(5);
            b.append_data(&mut h, name, data).unwrap();
        }
        b.into_inner().unwrap();
        path
    }

    fn file(dir: &Path, name: &str, text: &str) -> PathBuf {
        let p = dir.join(name);
        fs::write(&p, text).unwrap();
        p
    }

    #[test]
    fn late_entries_give_the_bytes_of_one_overlay() {
        let tmp = tempfile::tempdir().unwrap();
        let base = base_tar(tmp.path());
        let (a, agent, manifest) = (
            file(tmp.path(), "a", "new\n"),
            file(tmp.path(), "agent", "bin"),
            file(tmp.path(), "m", "{}"),
        );
        let mut early = Overlay::default();
        early.add_file("etc/a", &a, 0o644);
        early.add_file("usr/share/x/sandbox.tar", &a, 0o644);
        let mut whole = Overlay::default();
        whole.add_file("etc/a", &a, 0o644);
        whole.add_file("usr/share/x/sandbox.tar", &a, 0o644);
        whole.add_file("usr/local/sbin/agent", &agent, 0o755);
        whole.add_file("usr/share/x/manifest.json", &manifest, 0o644);

        let mut nothing = || Ok(Overlay::default());
        let none = Late {
            paths: Vec::new(),
            make: &mut nothing,
        };
        let (n_one, one) = merge_into(&base, &whole, none, 9, Vec::new()).unwrap();
        let mut make = || {
            let mut l = Overlay::default();
            l.add_file("usr/local/sbin/agent", &agent, 0o755);
            l.add_file("usr/share/x/manifest.json", &manifest, 0o644);
            Ok(l)
        };
        let late = Late {
            paths: vec![
                "/usr/local/sbin/agent".into(),
                "usr/share/x/manifest.json".into(),
            ],
            make: &mut make,
        };
        let (n_late, late) = merge_into(&base, &early, late, 9, Vec::new()).unwrap();
        assert_eq!(n_one, n_late);
        assert!(one == late, "the streams differ");
        assert_eq!(early.digest(), early.digest());
        assert_ne!(early.digest(), whole.digest());
    }

    #[test]
    fn late_entry_of_a_base_path_is_refused() {
        let tmp = tempfile::tempdir().unwrap();
        let base = base_tar(tmp.path());
        let a = file(tmp.path(), "a", "new\n");
        let mut make = || {
            let mut l = Overlay::default();
            l.add_file("etc/b", &a, 0o644);
            Ok(l)
        };
        let late = Late {
            paths: vec!["etc/b".into()],
            make: &mut make,
        };
        let err = merge_into(&base, &Overlay::default(), late, 9, Vec::new()).unwrap_err();
        assert!(format!("{err:#}").contains("etc/b"), "{err:#}");
    }
    #[test]
    fn a_tarball_lands_with_its_owners_modes_mtimes_and_links() {
        let tmp = tempfile::tempdir().unwrap();
        let base = base_tar(tmp.path());
        let layer = tmp.path().join("layer.tar");
        let mut b = tar::Builder::new(File::create(&layer).unwrap());
        let h = |ty: EntryType, mode: u32, uid: u64| {
            let mut h = Header::new_gnu();
            h.set_entry_type(ty);
            h.set_mode(mode);
            h.set_uid(uid);
            h.set_gid(uid);
            h.set_mtime(3);
            h.set_size(0);
            h
        };
        b.append_data(
            &mut h(EntryType::Directory, 0o710, 0),
            "var/d/",
            io::empty(),
        )
        .unwrap();
        let mut f = h(EntryType::Regular, 0o640, 1000);
        f.set_size(4);
        b.append_data(&mut f, "var/d/a", &b"data"[..]).unwrap();
        b.append_link(&mut h(EntryType::Link, 0o640, 1000), "var/d/b", "var/d/a")
            .unwrap();
        let mut sym = h(EntryType::Symlink, 0o777, 7);
        sym.set_link_name_literal("a//x").unwrap();
        b.append_data(&mut sym, "var/d/s", io::empty()).unwrap();
        b.into_inner().unwrap();

        let mut overlay = Overlay::default();
        assert_eq!(overlay.add_tar(&layer).unwrap(), 4);
        let (_, out) = merge_into(
            &base,
            &overlay,
            Late {
                paths: Vec::new(),
                make: &mut || Ok(Overlay::default()),
            },
            9,
            Vec::new(),
        )
        .unwrap();
        let mut got = Vec::new();
        for e in tar::Archive::new(&out[..]).entries().unwrap() {
            let mut e = e.unwrap();
            let h = e.header().clone();
            let link = e
                .link_name_bytes()
                .map(|l| String::from_utf8_lossy(&l).into_owned())
                .unwrap_or_default();
            let mut data = String::new();
            e.read_to_string(&mut data).unwrap();
            got.push(format!(
                "{} {:?} {:o} {} {} {link} {data}",
                String::from_utf8_lossy(&e.path_bytes()),
                h.entry_type(),
                h.mode().unwrap_or(0),
                h.uid().unwrap_or(0),
                h.mtime().unwrap_or(0),
            ));
        }
        assert_eq!(
            got[2..],
            [
                // Names as the base's come out; hard-link targets keep `./`
                // like theirs.
                "var/ Directory 755 0 9  ",
                "var/d/ Directory 710 0 3  ",
                "var/d/a Regular 640 1000 3  data",
                "var/d/b Link 640 1000 3 ./var/d/a ",
                "var/d/s Symlink 777 7 3 a//x ",
            ]
        );
    }

    #[test]
    fn a_hard_link_before_its_target_is_refused() {
        let tmp = tempfile::tempdir().unwrap();
        let layer = tmp.path().join("layer.tar");
        let mut b = tar::Builder::new(File::create(&layer).unwrap());
        let mut h = Header::new_gnu();
        h.set_entry_type(EntryType::Link);
        h.set_mode(0o644);
        h.set_uid(0);
        h.set_gid(0);
        h.set_mtime(0);
        h.set_size(0);
        b.append_link(&mut h, "x/b", "x/a").unwrap();
        b.into_inner().unwrap();
        let err = Overlay::default().add_tar(&layer).unwrap_err();
        assert!(format!("{err:#}").contains("hard link to `x/a`"), "{err:#}");
    }
}
