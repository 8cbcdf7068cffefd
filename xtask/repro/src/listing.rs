//! File listings (of a tarball or a directory tree) and their comparison:
//! path, type, mode, owner, mtime, size, link target, extended attributes
//! and content sha256, entry by entry and in order.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::fs::{self, File};
use std::io::{self, BufReader, Read};
use std::os::unix::fs::MetadataExt;
use std::path::Path;

use anyhow::{Context, Result};

/// One file of a listing.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry {
    /// Path without a leading `./` or `/`, directories without a trailing `/`.
    pub path: String,
    /// `file`, `dir`, `symlink`, `hardlink`, `char`, `block`, `fifo` or `other`.
    pub kind: &'static str,
    /// Permission bits (`0o7777`).
    pub mode: u32,
    /// Owner.
    pub uid: u64,
    /// Group.
    pub gid: u64,
    /// Owner and group names (tar only; empty for directories on disk).
    pub names: String,
    /// Modification time, seconds since the epoch.
    pub mtime: u64,
    /// Size in bytes (0 for non-files).
    pub size: u64,
    /// Link target (symlinks and hard links).
    pub link: Option<String>,
    /// Extended attributes and other pax records, `key=value`, sorted.
    pub extra: Vec<String>,
    /// sha256 of the contents (regular files).
    pub sha256: Option<String>,
}

/// One field that differs between two entries of the same path.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Field {
    /// Field name (`mode`, `mtime`, `content`, …).
    pub name: &'static str,
    /// The value in listing A.
    pub a: String,
    /// The value in listing B.
    pub b: String,
}

/// A difference between two listings.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Change {
    /// The path is only in listing A.
    OnlyInA(String),
    /// The path is only in listing B.
    OnlyInB(String),
    /// The path is in both, with these fields differing.
    Differs {
        /// The path.
        path: String,
        /// What differs.
        fields: Vec<Field>,
    },
    /// Same entries, different order (tar order decides `mke2fs -d` inode numbers).
    Order {
        /// Position (among the paths both listings share) of the first difference.
        index: usize,
        /// The path at that position in A.
        a: String,
        /// The path at that position in B.
        b: String,
    },
}

impl fmt::Display for Change {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Change::OnlyInA(p) => write!(f, "{p}: only in A"),
            Change::OnlyInB(p) => write!(f, "{p}: only in B"),
            Change::Differs { path, fields } => {
                write!(f, "{path}:")?;
                for (i, x) in fields.iter().enumerate() {
                    let sep = if i == 0 { " " } else { ", " };
                    write!(f, "{sep}{} {} → {}", x.name, x.a, x.b)?;
                }
                Ok(())
            }
            Change::Order { index, a, b } => {
                write!(f, "entry order differs at #{index}: A has {a}, B has {b}")
            }
        }
    }
}

/// The normalised form of an archive or tree path.
pub fn clean_path(p: &str) -> String {
    let p = p.strip_prefix("./").unwrap_or(p);
    let p = p.trim_start_matches('/').trim_end_matches('/');
    p.to_string()
}

/// Lists a tar archive in archive order, hashing every regular file.
pub fn tar_listing(path: &Path) -> Result<Vec<Entry>> {
    let f = File::open(path).with_context(|| format!("opening {}", path.display()))?;
    tar_listing_from(BufReader::with_capacity(1 << 20, f))
        .with_context(|| format!("reading the tar archive {}", path.display()))
}

/// Lists a tar archive read from `r`; see [`tar_listing`].
pub fn tar_listing_from<R: Read>(r: R) -> Result<Vec<Entry>> {
    let mut archive = tar::Archive::new(r);
    let mut out = Vec::new();
    for entry in archive.entries()? {
        let mut entry = entry?;
        let path = clean_path(&entry.path()?.to_string_lossy());
        let mut extra = Vec::new();
        if let Some(exts) = entry.pax_extensions()? {
            for ext in exts {
                let ext = ext?;
                let key = ext.key().unwrap_or("?").to_string();
                // Names and sizes are compared as fields already.
                if matches!(key.as_str(), "path" | "linkpath" | "size") {
                    continue;
                }
                extra.push(format!(
                    "{key}={}",
                    String::from_utf8_lossy(ext.value_bytes()).escape_debug()
                ));
            }
        }
        extra.sort();
        let h = entry.header().clone();
        let kind = match h.entry_type() {
            tar::EntryType::Regular | tar::EntryType::Continuous => "file",
            tar::EntryType::Directory => "dir",
            tar::EntryType::Symlink => "symlink",
            tar::EntryType::Link => "hardlink",
            tar::EntryType::Char => "char",
            tar::EntryType::Block => "block",
            tar::EntryType::Fifo => "fifo",
            _ => "other",
        };
        let link = entry.link_name()?.map(|l| l.to_string_lossy().into_owned());
        let names = format!(
            "{}:{}",
            h.username().ok().flatten().unwrap_or(""),
            h.groupname().ok().flatten().unwrap_or("")
        );
        let size = h.size()?;
        let sha256 = if kind == "file" {
            Some(hostutil::sha256_reader(&mut entry)?)
        } else {
            None
        };
        // An empty numeric field (some writers leave them blank) reads as 0.
        out.push(Entry {
            path,
            kind,
            mode: h.mode().unwrap_or(0) & 0o7777,
            uid: h.uid().unwrap_or(0),
            gid: h.gid().unwrap_or(0),
            names,
            mtime: h.mtime().unwrap_or(0),
            size,
            link,
            extra,
            sha256,
        });
    }
    Ok(out)
}

/// Lists a directory tree (sorted by path; the root itself, whose metadata
/// comes from the stage's final rename, is left out), hashing every regular
/// file. Symlinks are not followed.
pub fn tree_listing(root: &Path) -> Result<Vec<Entry>> {
    let mut out = Vec::new();
    walk(root, root, &mut out)?;
    out.retain(|e| !e.path.is_empty());
    Ok(out)
}

/// `changes` without mtime differences (for trees whose mtimes never reach
/// the image); entries left with no differing field are dropped.
pub fn without_mtimes(changes: Vec<Change>) -> Vec<Change> {
    changes
        .into_iter()
        .filter_map(|c| match c {
            Change::Differs { path, fields } => {
                let fields: Vec<Field> = fields.into_iter().filter(|f| f.name != "mtime").collect();
                (!fields.is_empty()).then_some(Change::Differs { path, fields })
            }
            other => Some(other),
        })
        .collect()
}

fn walk(root: &Path, dir: &Path, out: &mut Vec<Entry>) -> Result<()> {
    let meta = fs::symlink_metadata(dir).with_context(|| format!("reading {}", dir.display()))?;
    out.push(disk_entry(root, dir, &meta)?);
    let mut children: Vec<_> = fs::read_dir(dir)
        .with_context(|| format!("reading {}", dir.display()))?
        .collect::<io::Result<_>>()
        .with_context(|| format!("reading {}", dir.display()))?;
    children.sort_by_key(|e| e.file_name());
    for c in children {
        let p = c.path();
        let m = fs::symlink_metadata(&p).with_context(|| format!("reading {}", p.display()))?;
        if m.is_dir() {
            walk(root, &p, out)?;
        } else {
            out.push(disk_entry(root, &p, &m)?);
        }
    }
    Ok(())
}

fn disk_entry(root: &Path, p: &Path, m: &fs::Metadata) -> Result<Entry> {
    let rel = p.strip_prefix(root).unwrap_or(p);
    let ft = m.file_type();
    let kind = if ft.is_file() {
        "file"
    } else if ft.is_dir() {
        "dir"
    } else if ft.is_symlink() {
        "symlink"
    } else {
        "other"
    };
    let link = if ft.is_symlink() {
        Some(
            fs::read_link(p)
                .with_context(|| format!("reading link {}", p.display()))?
                .to_string_lossy()
                .into_owned(),
        )
    } else {
        None
    };
    let sha256 = if ft.is_file() {
        let f = File::open(p).with_context(|| format!("opening {}", p.display()))?;
        Some(
            hostutil::sha256_reader(&mut BufReader::with_capacity(1 << 20, f))
                .with_context(|| format!("reading {}", p.display()))?,
        )
    } else {
        None
    };
    Ok(Entry {
        path: clean_path(&rel.to_string_lossy()),
        kind,
        mode: m.mode() & 0o7777,
        uid: m.uid().into(),
        gid: m.gid().into(),
        names: String::new(),
        mtime: u64::try_from(m.mtime()).unwrap_or(0),
        size: if ft.is_file() { m.len() } else { 0 },
        link,
        extra: Vec::new(),
        sha256,
    })
}

/// The differences between listings `a` and `b`: per path in A's order,
/// then the paths only in B, then (if nothing else differs) the order.
pub fn diff_listings(a: &[Entry], b: &[Entry]) -> Vec<Change> {
    let index_b: BTreeMap<&str, &Entry> = b.iter().map(|e| (e.path.as_str(), e)).collect();
    let in_a: BTreeSet<&str> = a.iter().map(|e| e.path.as_str()).collect();
    let mut out = Vec::new();
    for ea in a {
        match index_b.get(ea.path.as_str()) {
            None => out.push(Change::OnlyInA(ea.path.clone())),
            Some(eb) => {
                let fields = diff_entry(ea, eb);
                if !fields.is_empty() {
                    out.push(Change::Differs {
                        path: ea.path.clone(),
                        fields,
                    });
                }
            }
        }
    }
    for eb in b {
        if !in_a.contains(eb.path.as_str()) {
            out.push(Change::OnlyInB(eb.path.clone()));
        }
    }
    let common_a = a.iter().filter(|e| index_b.contains_key(e.path.as_str()));
    let common_b = b.iter().filter(|e| in_a.contains(e.path.as_str()));
    if let Some((index, (x, y))) = common_a
        .zip(common_b)
        .enumerate()
        .find(|(_, (x, y))| x.path != y.path)
    {
        out.push(Change::Order {
            index,
            a: x.path.clone(),
            b: y.path.clone(),
        });
    }
    out
}

/// The fields that differ between two entries of the same path.
pub fn diff_entry(a: &Entry, b: &Entry) -> Vec<Field> {
    let mut out = Vec::new();
    let mut field = |name: &'static str, x: String, y: String| {
        if x != y {
            out.push(Field { name, a: x, b: y });
        }
    };
    field("type", a.kind.into(), b.kind.into());
    field("mode", format!("{:04o}", a.mode), format!("{:04o}", b.mode));
    field(
        "owner",
        format!("{}:{}", a.uid, a.gid),
        format!("{}:{}", b.uid, b.gid),
    );
    field("owner names", a.names.clone(), b.names.clone());
    field("mtime", a.mtime.to_string(), b.mtime.to_string());
    field("size", a.size.to_string(), b.size.to_string());
    field(
        "link",
        a.link.clone().unwrap_or_default(),
        b.link.clone().unwrap_or_default(),
    );
    field("xattrs/pax", a.extra.join(" "), b.extra.join(" "));
    field(
        "content sha256",
        short(a.sha256.as_deref()),
        short(b.sha256.as_deref()),
    );
    out
}

fn short(h: Option<&str>) -> String {
    h.map(|h| h.get(..16).unwrap_or(h).to_string())
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A small tar: (path, mode, mtime, contents) files under a directory.
    fn tar_of(files: &[(&str, u32, u64, &[u8])]) -> Vec<u8> {
        let mut b = tar::Builder::new(Vec::new());
        let mut h = tar::Header::new_gnu();
        h.set_entry_type(tar::EntryType::Directory);
        h.set_mode(0o755);
        h.set_mtime(100);
        h.set_size(0);
        b.append_data(&mut h, "./etc/", io::empty()).unwrap();
        for (path, mode, mtime, data) in files {
            let mut h = tar::Header::new_gnu();
            h.set_entry_type(tar::EntryType::Regular);
            h.set_mode(*mode);
            h.set_mtime(*mtime);
            h.set_size(data.len() as u64);
            b.append_data(&mut h, path, *data).unwrap();
        }
        b.into_inner().unwrap()
    }

    fn check(a: &[(&str, u32, u64, &[u8])], b: &[(&str, u32, u64, &[u8])], want: &[&str]) {
        let la = tar_listing_from(tar_of(a).as_slice()).unwrap();
        let lb = tar_listing_from(tar_of(b).as_slice()).unwrap();
        let got: Vec<String> = diff_listings(&la, &lb)
            .iter()
            .map(ToString::to_string)
            .collect();
        assert_eq!(got, want);
    }

    #[test]
    fn identical_tars_have_no_changes() {
        let files: &[(&str, u32, u64, &[u8])] = &[("./etc/a", 0o644, 100, b"a")];
        check(files, files, &[]);
    }

    #[test]
    fn one_mtime_differs() {
        check(
            &[("./etc/a", 0o644, 100, b"a"), ("./etc/b", 0o644, 100, b"b")],
            &[
                ("./etc/a", 0o644, 100, b"a"),
                ("./etc/b", 0o644, 1234, b"b"),
            ],
            &["etc/b: mtime 100 → 1234"],
        );
    }

    #[test]
    fn one_content_and_mode_differ() {
        let ha = "ca978112ca1bbdca";
        let hb = "18ac3e7343f01689";
        check(
            &[("./etc/a", 0o644, 100, b"a")],
            &[("./etc/a", 0o600, 100, b"d")],
            &[&format!(
                "etc/a: mode 0644 → 0600, content sha256 {ha} → {hb}"
            )],
        );
    }

    #[test]
    fn added_removed_and_reordered() {
        check(
            &[("./etc/a", 0o644, 1, b"a"), ("./etc/x", 0o644, 1, b"x")],
            &[("./etc/y", 0o644, 1, b"y"), ("./etc/a", 0o644, 1, b"a")],
            &["etc/x: only in A", "etc/y: only in B"],
        );
        check(
            &[("./etc/a", 0o644, 1, b"a"), ("./etc/b", 0o644, 1, b"b")],
            &[("./etc/b", 0o644, 1, b"b"), ("./etc/a", 0o644, 1, b"a")],
            &["entry order differs at #1: A has etc/a, B has etc/b"],
        );
    }

    #[test]
    fn directory_trees_are_listed_and_compared() {
        use std::os::unix::fs::PermissionsExt;
        let a = tempfile::tempdir().unwrap();
        let b = tempfile::tempdir().unwrap();
        for d in [a.path(), b.path()] {
            fs::create_dir(d.join("sub")).unwrap();
            fs::write(d.join("sub/f"), b"same").unwrap();
            std::os::unix::fs::symlink("sub/f", d.join("l")).unwrap();
            fs::set_permissions(d.join("sub/f"), fs::Permissions::from_mode(0o644)).unwrap();
            File::options()
                .write(true)
                .open(d.join("sub/f"))
                .and_then(|f| {
                    f.set_modified(std::time::UNIX_EPOCH + std::time::Duration::from_secs(7))
                })
                .unwrap();
        }
        fs::set_permissions(b.path().join("sub/f"), fs::Permissions::from_mode(0o600)).unwrap();
        let la = tree_listing(a.path()).unwrap();
        let lb = tree_listing(b.path()).unwrap();
        let paths: Vec<&str> = la.iter().map(|e| e.path.as_str()).collect();
        assert_eq!(paths, ["l", "sub", "sub/f"]);
        let changes = diff_listings(&la, &lb);
        let modes: Vec<String> = changes
            .iter()
            .filter_map(|c| match c {
                Change::Differs { path, fields } => Some(format!(
                    "{path} {}",
                    fields.iter().map(|f| f.name).collect::<Vec<_>>().join(",")
                )),
                _ => None,
            })
            .filter(|s| s.starts_with("sub/f"))
            .collect();
        assert_eq!(modes, ["sub/f mode"]);
    }
}
