//! Merging the base root tarball with overlay layers into the one tarball
//! that `mke2fs -d` turns into the root filesystem.
//!
//! Deterministic: base entries keep mmdebstrap's order; an overlay entry for
//! an existing path replaces it in place; new overlay entries follow in path
//! order, parents first. Every mtime is clamped to the epoch.

use std::collections::{BTreeMap, BTreeSet};
use std::fs::{self, File};
use std::io::{self, BufReader, BufWriter, Read};
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail};
use appliance::{Entry, Tree};
use sha2::{Digest, Sha256};
use tar::{EntryType, Header};

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
                append(&mut builder, &key, src, epoch)?;
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
                )?;
                written.insert(parent.clone());
                count += 1;
            }
        }
        append(&mut builder, key, src, epoch)?;
        written.insert(key.to_string());
        count += 1;
    }
    let writer = builder.into_inner().context("finishing the root tarball")?;
    Ok((count, writer))
}

fn append<W: io::Write>(
    b: &mut tar::Builder<W>,
    key: &str,
    src: &Source,
    epoch: u64,
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
    }
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
}
