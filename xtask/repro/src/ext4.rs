//! Which files and which metadata of an ext4 filesystem differ, from the
//! byte ranges that differ: each range becomes filesystem blocks; blocks of
//! an inode table name the inodes whose records differ, the other blocks are
//! looked up with `debugfs icheck` (which inode owns them) and `ncheck`
//! (which path that inode has); `debugfs stat` of each inode in both images
//! then shows the fields that differ. `debugfs` comes from the tools tree
//! (trixie's e2fsprogs reads every feature the root uses) and reads the
//! image read-only at the partition's offset (`image?offset=N`): nothing is
//! mounted, no loop device is needed.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

use anyhow::{Context, Result, bail};
use sha2::{Digest, Sha256};

use super::bytes::ByteRange;
use disk::tools::ToolsTree;

/// Blocks handed to `icheck` at most (the rest are counted, not resolved).
const MAX_BLOCKS: usize = 4000;
/// Files above this size are not hashed (`debugfs cat` goes through memory).
const MAX_CAT_BYTES: u64 = 256 << 20;

/// Per-group metadata locations.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Group {
    /// Block bitmap block.
    pub block_bitmap: u64,
    /// Inode bitmap block.
    pub inode_bitmap: u64,
    /// First block of the inode table.
    pub inode_table: u64,
}

/// What `debugfs stats` says about the filesystem's geometry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Geometry {
    /// Block size in bytes.
    pub block_size: u64,
    /// Inodes per group.
    pub inodes_per_group: u64,
    /// Inode record size in bytes.
    pub inode_size: u64,
    /// Blocks of each group's inode table.
    pub inode_blocks_per_group: u64,
    /// Blocks per group.
    pub blocks_per_group: u64,
    /// The groups, in order.
    pub groups: Vec<Group>,
    /// The superblock lines (everything before the group list).
    pub superblock: Vec<String>,
}

/// Parses the output of `debugfs -R stats`.
pub fn parse_stats(text: &str) -> Result<Geometry> {
    let mut fields = BTreeMap::new();
    let mut superblock = Vec::new();
    let mut groups = Vec::new();
    for line in text.lines() {
        let t = line.trim();
        if let Some(rest) = t.strip_prefix("Group") {
            // "Group  0: block bitmap at 497, inode bitmap at 513, inode table at 529"
            let num = |key: &str| -> Option<u64> {
                let i = rest.find(key)? + key.len();
                rest[i..]
                    .trim_start()
                    .split(|c: char| !c.is_ascii_digit())
                    .next()?
                    .parse()
                    .ok()
            };
            if let (Some(bb), Some(ib), Some(it)) = (
                num("block bitmap at"),
                num("inode bitmap at"),
                num("inode table at"),
            ) {
                groups.push(Group {
                    block_bitmap: bb,
                    inode_bitmap: ib,
                    inode_table: it,
                });
            }
            continue;
        }
        if groups.is_empty()
            && !line.starts_with(' ')
            && let Some((k, v)) = line.split_once(':')
        {
            fields.insert(k.trim().to_string(), v.trim().to_string());
            superblock.push(line.to_string());
        }
    }
    let get = |k: &str| -> Result<u64> {
        fields
            .get(k)
            .with_context(|| format!("debugfs stats has no `{k}`"))?
            .parse()
            .with_context(|| format!("debugfs stats: `{k}` is not a number"))
    };
    let g = Geometry {
        block_size: get("Block size")?,
        inodes_per_group: get("Inodes per group")?,
        inode_size: get("Inode size")?,
        inode_blocks_per_group: get("Inode blocks per group")?,
        blocks_per_group: get("Blocks per group")?,
        groups,
        superblock,
    };
    if g.groups.is_empty() || g.block_size == 0 || g.inode_size == 0 {
        bail!("debugfs stats lists no block groups");
    }
    Ok(g)
}

/// What a differing piece of the filesystem is.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub enum Place {
    /// The primary superblock (block 0).
    Superblock,
    /// Group descriptors, reserved GDT blocks, backups: block `n`.
    OtherMetadata(u64),
    /// A group's block bitmap.
    BlockBitmap(usize),
    /// A group's inode bitmap.
    InodeBitmap(usize),
    /// The record of an inode in an inode table.
    Inode(u64),
    /// Any other block: data (or directory, journal, extent tree) of an inode.
    Block(u64),
}

/// Classifies byte ranges (relative to the partition start) of a
/// filesystem with geometry `g`.
pub fn classify(g: &Geometry, ranges: &[ByteRange]) -> BTreeSet<Place> {
    let bs = g.block_size;
    let mut out = BTreeSet::new();
    for r in ranges {
        // Inode records, byte-exact.
        let mut rest_blocks = BTreeSet::new();
        let first = r.start / bs;
        let last = (r.end - 1) / bs;
        for block in first..=last {
            if block == 0 {
                out.insert(Place::Superblock);
                continue;
            }
            if let Some((gi, grp)) = g.groups.iter().enumerate().find(|(_, x)| {
                (x.inode_table..x.inode_table + g.inode_blocks_per_group).contains(&block)
            }) {
                let table = grp.inode_table * bs;
                let part = r.clip(block * bs, (block + 1) * bs).unwrap_or(ByteRange {
                    start: block * bs,
                    end: block * bs + 1,
                });
                let first_slot = (part.start - table) / g.inode_size;
                let last_slot = (part.end - 1 - table) / g.inode_size;
                for slot in first_slot..=last_slot {
                    out.insert(Place::Inode(gi as u64 * g.inodes_per_group + slot + 1));
                }
                continue;
            }
            if let Some(gi) = g.groups.iter().position(|x| x.block_bitmap == block) {
                out.insert(Place::BlockBitmap(gi));
                continue;
            }
            if let Some(gi) = g.groups.iter().position(|x| x.inode_bitmap == block) {
                out.insert(Place::InodeBitmap(gi));
                continue;
            }
            rest_blocks.insert(block);
        }
        out.extend(rest_blocks.into_iter().map(Place::Block));
    }
    out
}

/// Runs one debugfs request against `dev` (`image?offset=N`).
fn debugfs(tools: &ToolsTree, dev: &str, request: &str) -> Result<String> {
    let out = tools
        .tool("debugfs")
        .args(["-R", request, dev])
        .run()
        .with_context(|| format!("debugfs `{request}`"))?;
    Ok(String::from_utf8_lossy(&out).into_owned())
}

/// Runs several debugfs requests in one process (`-f -`); returns stdout.
fn debugfs_batch(tools: &ToolsTree, dev: &str, requests: &[String]) -> Result<String> {
    let script = requests.join("\n") + "\n";
    let out = tools
        .tool("debugfs")
        .args(["-f", "-", dev])
        .run_with_stdin(Some(script.as_bytes()))
        .context("debugfs batch")?;
    Ok(String::from_utf8_lossy(&out).into_owned())
}

/// `block → inode` from `icheck` output (`<block not found>` left out).
pub fn parse_icheck(text: &str) -> BTreeMap<u64, u64> {
    text.lines()
        .filter_map(|l| {
            let mut it = l.split('\t');
            let b = it.next()?.trim().parse().ok()?;
            let i = it.next()?.trim().parse().ok()?;
            Some((b, i))
        })
        .collect()
}

/// `inode → paths` from `ncheck` output.
pub fn parse_ncheck(text: &str) -> BTreeMap<u64, Vec<String>> {
    let mut out: BTreeMap<u64, Vec<String>> = BTreeMap::new();
    for l in text.lines() {
        if let Some((i, p)) = l.split_once('\t')
            && let Ok(i) = i.trim().parse()
        {
            out.entry(i).or_default().push(p.trim().to_string());
        }
    }
    out
}

/// The lines of `debugfs stat` worth comparing (the checksum always
/// changes with anything else and is left out).
fn stat_lines(text: &str) -> Vec<String> {
    text.lines()
        .map(str::trim_end)
        .filter(|l| !l.is_empty() && !l.contains("checksum:") && !l.starts_with("debugfs"))
        .map(str::to_string)
        .collect()
}

/// Lines of `a` not in `b` and of `b` not in `a`, as "A: …" / "B: …".
pub fn line_diff(a: &[String], b: &[String]) -> Vec<String> {
    let sa: BTreeSet<&String> = a.iter().collect();
    let sb: BTreeSet<&String> = b.iter().collect();
    let mut out = Vec::new();
    for l in a.iter().filter(|l| !sb.contains(l)) {
        out.push(format!("A: {}", l.trim()));
    }
    for l in b.iter().filter(|l| !sa.contains(l)) {
        out.push(format!("B: {}", l.trim()));
    }
    out
}

/// Explains the differences of the ext4 filesystems at byte `offset` of
/// images `a` and `b`, given the differing `ranges` (relative to the
/// partition). Returns report lines; at most `limit` inodes are detailed.
pub fn explain(
    tools: &ToolsTree,
    a: &Path,
    b: &Path,
    offset: u64,
    ranges: &[ByteRange],
    limit: usize,
) -> Result<Vec<String>> {
    let dev_a = format!("{}?offset={offset}", a.display());
    let dev_b = format!("{}?offset={offset}", b.display());
    let stats_a = debugfs(tools, &dev_a, "stats")?;
    let stats_b = debugfs(tools, &dev_b, "stats")?;
    let g = parse_stats(&stats_a).context("reading filesystem A's geometry")?;
    let gb = parse_stats(&stats_b).context("reading filesystem B's geometry")?;
    let mut out = Vec::new();
    let places = classify(&g, ranges);

    if places.contains(&Place::Superblock) || g.superblock != gb.superblock {
        out.push("superblock:".to_string());
        let d = line_diff(&g.superblock, &gb.superblock);
        if d.is_empty() {
            out.push("  bytes differ, but no field debugfs shows".into());
        }
        out.extend(d.into_iter().map(|l| format!("  {l}")));
    }
    let bitmaps: Vec<String> = places
        .iter()
        .filter_map(|p| match p {
            Place::BlockBitmap(n) => Some(format!("block bitmap of group {n}")),
            Place::InodeBitmap(n) => Some(format!("inode bitmap of group {n}")),
            _ => None,
        })
        .collect();
    if !bitmaps.is_empty() {
        out.push(format!(
            "allocation bitmaps differ (files were placed differently): {}",
            bitmaps.join(", ")
        ));
    }

    // Inodes whose record differs, and blocks to look up.
    let mut inodes: BTreeMap<u64, BTreeSet<&'static str>> = BTreeMap::new();
    let blocks: Vec<u64> = places
        .iter()
        .filter_map(|p| match p {
            Place::Inode(i) => {
                inodes.entry(*i).or_default().insert("inode record");
                None
            }
            Place::Block(b) => Some(*b),
            _ => None,
        })
        .collect();
    let (looked_up, skipped) = blocks.split_at(blocks.len().min(MAX_BLOCKS));
    let mut unowned = Vec::new();
    if !looked_up.is_empty() {
        let requests: Vec<String> = looked_up
            .chunks(200)
            .map(|c| {
                let nums: Vec<String> = c.iter().map(u64::to_string).collect();
                format!("icheck {}", nums.join(" "))
            })
            .collect();
        let owners = parse_icheck(&debugfs_batch(tools, &dev_a, &requests)?);
        for blk in looked_up {
            match owners.get(blk) {
                Some(i) => {
                    inodes
                        .entry(*i)
                        .or_default()
                        .insert("data/directory/extent blocks");
                }
                None => unowned.push(*blk),
            }
        }
    }
    if !unowned.is_empty() {
        let shown: Vec<String> = unowned.iter().take(20).map(u64::to_string).collect();
        out.push(format!(
            "{} block(s) owned by no inode of A (group descriptors, backup superblocks, \
             reserved GDT or free space): {}{}",
            unowned.len(),
            shown.join(", "),
            if unowned.len() > 20 { ", …" } else { "" }
        ));
    }
    if !skipped.is_empty() {
        out.push(format!(
            "{} more differing block(s) not resolved to files",
            skipped.len()
        ));
    }
    if inodes.is_empty() {
        return Ok(out);
    }

    let names = {
        let list: Vec<String> = inodes.keys().take(4 * limit).map(u64::to_string).collect();
        let mut n = parse_ncheck(&debugfs(
            tools,
            &dev_a,
            &format!("ncheck {}", list.join(" ")),
        )?);
        let missing: Vec<String> = list
            .iter()
            .filter(|i| i.parse().map(|i| !n.contains_key(&i)).unwrap_or(false))
            .cloned()
            .collect();
        if !missing.is_empty() {
            let nb = parse_ncheck(&debugfs(
                tools,
                &dev_b,
                &format!("ncheck {}", missing.join(" ")),
            )?);
            for (i, p) in nb {
                n.entry(i)
                    .or_insert_with(|| p.into_iter().map(|p| format!("{p} (in B)")).collect());
            }
        }
        n
    };
    out.push(format!("{} inode(s) differ:", inodes.len()));
    for (shown, (ino, what)) in inodes.iter().enumerate() {
        if shown == limit {
            out.push(format!("  … and {} more inode(s)", inodes.len() - limit));
            break;
        }
        let name = match *ino {
            1 => "<bad blocks inode>".to_string(),
            2 => "/".to_string(),
            7 => "<resize inode>".to_string(),
            8 => "<journal>".to_string(),
            i => names
                .get(&i)
                .map(|p| p.join(", "))
                .unwrap_or_else(|| "<no path: unused or special inode>".into()),
        };
        let what: Vec<&str> = what.iter().copied().collect();
        out.push(format!("  inode {ino} {name}: {}", what.join(" and ")));
        let sa = debugfs(tools, &dev_a, &format!("stat <{ino}>"))?;
        let sb = debugfs(tools, &dev_b, &format!("stat <{ino}>"))?;
        for l in line_diff(&stat_lines(&sa), &stat_lines(&sb)) {
            out.push(format!("    {}", clip_line(&l, 160)));
        }
        if sa.contains("Type: regular") && what.contains(&"data/directory/extent blocks") {
            let size = sa
                .split("Size: ")
                .nth(1)
                .and_then(|s| s.split_whitespace().next())
                .and_then(|s| s.parse::<u64>().ok())
                .unwrap_or(u64::MAX);
            if size <= MAX_CAT_BYTES {
                let ha = content_hash(tools, &dev_a, *ino)?;
                let hb = content_hash(tools, &dev_b, *ino)?;
                out.push(if ha == hb {
                    "    content: same bytes (only block placement differs)".to_string()
                } else {
                    format!("    content sha256: {} → {}", &ha[..16], &hb[..16])
                });
            }
        }
    }
    Ok(out)
}

/// `l` cut to at most `max` characters (extent lists can be kilobytes long).
fn clip_line(l: &str, max: usize) -> String {
    match l.char_indices().nth(max) {
        Some((i, _)) => format!("{} … ({} more bytes)", &l[..i], l.len() - i),
        None => l.to_string(),
    }
}

fn content_hash(tools: &ToolsTree, dev: &str, ino: u64) -> Result<String> {
    let bytes = tools
        .tool("debugfs")
        .args(["-R", &format!("cat <{ino}>"), dev])
        .run()
        .with_context(|| format!("debugfs cat <{ino}>"))?;
    Ok(hex::encode(Sha256::digest(&bytes)))
}

#[cfg(test)]
mod tests {
    use super::*;

    const STATS: &str = "Filesystem volume name:   root\n\
Filesystem UUID:          876bf30d-98a3-439b-84a1-3d3fb88cb13d\n\
Block count:              1015296\n\
Block size:               4096\n\
Blocks per group:         32768\n\
Inodes per group:         8192\n\
Inode blocks per group:   512\n\
Filesystem created:       Mon Nov 24 00:00:00 2025\n\
Inode size:\t          256\n\
Directories:              4435\n\
 Group  0: block bitmap at 497, inode bitmap at 513, inode table at 529\n\
           0 free blocks, 0 free inodes, 980 used directories, 0 unused inodes\n\
           [Checksum 0x1ea0]\n\
 Group  1: block bitmap at 498, inode bitmap at 514, inode table at 1041\n\
           0 free blocks, 0 free inodes, 1184 used directories, 0 unused inodes\n";

    #[test]
    fn stats_are_parsed() {
        let g = parse_stats(STATS).unwrap();
        assert_eq!(g.block_size, 4096);
        assert_eq!(g.inode_size, 256);
        assert_eq!(g.inodes_per_group, 8192);
        assert_eq!(
            g.groups,
            [
                Group {
                    block_bitmap: 497,
                    inode_bitmap: 513,
                    inode_table: 529
                },
                Group {
                    block_bitmap: 498,
                    inode_bitmap: 514,
                    inode_table: 1041
                },
            ]
        );
        assert!(g.superblock[0].starts_with("Filesystem volume name"));
        assert_eq!(g.superblock.len(), 10);
    }

    #[test]
    fn ranges_become_places() {
        let g = parse_stats(STATS).unwrap();
        let bs = 4096;
        let r = |start: u64, end: u64| ByteRange { start, end };
        let places = classify(
            &g,
            &[
                r(1024 + 40, 1024 + 44),                              // superblock
                r(498 * bs + 3, 498 * bs + 4),                        // block bitmap of group 1
                r(529 * bs + 256 * 11 + 8, 529 * bs + 256 * 11 + 12), // inode 12
                r(1041 * bs + 250, 1041 * bs + 260),                  // inodes 8193 and 8194
                r(600_000 * bs, 600_000 * bs + 5000),                 // two data blocks
            ],
        );
        assert_eq!(
            places.into_iter().collect::<Vec<_>>(),
            [
                Place::Superblock,
                Place::BlockBitmap(1),
                Place::Inode(12),
                Place::Inode(8193),
                Place::Inode(8194),
                Place::Block(600_000),
                Place::Block(600_001),
            ]
        );
    }

    #[test]
    fn icheck_and_ncheck_output() {
        let ic = "Block\tInode number\n600000\t57095\n529\t<block not found>\n40000\t1021\n";
        assert_eq!(
            parse_icheck(ic).into_iter().collect::<Vec<_>>(),
            [(40000, 1021), (600000, 57095)]
        );
        let nc = "Inode\tPathname\n5000\t/usr/lib/x.so\n5000\t/usr/lib/y.so\n12\t/etc/z\n";
        let n = parse_ncheck(nc);
        assert_eq!(n[&5000], ["/usr/lib/x.so", "/usr/lib/y.so"]);
        assert_eq!(n[&12], ["/etc/z"]);
    }

    /// End to end with the tools tree named by `REPRO_TEST_TOOLS`: two small
    /// ext4 filesystems made by `mke2fs -d` from tarballs that differ in one
    /// file's mtime and another file's content.
    #[test]
    #[ignore = "needs REPRO_TEST_TOOLS=<a built tools tree>; run with --ignored"]
    fn real_filesystems_are_explained() {
        let tools =
            ToolsTree::open(&crate::tests::test_tools("real_filesystems_are_explained")).unwrap();
        let dir = tempfile::tempdir().unwrap();
        let make = |name: &str, mtime: u64, data: &[u8]| {
            let mut b = tar::Builder::new(Vec::new());
            let mut h = tar::Header::new_gnu();
            h.set_entry_type(tar::EntryType::Directory);
            h.set_mode(0o755);
            h.set_uid(0);
            h.set_gid(0);
            h.set_mtime(1000);
            h.set_size(0);
            b.append_data(&mut h, "etc/", std::io::empty()).unwrap();
            let mut add = |path: &str, mtime: u64, data: &[u8]| {
                let mut h = tar::Header::new_gnu();
                h.set_entry_type(tar::EntryType::Regular);
                h.set_mode(0o644);
                h.set_uid(0);
                h.set_gid(0);
                h.set_mtime(mtime);
                h.set_size(data.len() as u64);
                b.append_data(&mut h, path, data).unwrap();
            };
            add("etc/stamp", mtime, b"same");
            add("etc/data", 1000, data);
            let tar = dir.path().join(format!("{name}.tar"));
            std::fs::write(&tar, b.into_inner().unwrap()).unwrap();
            let img = dir.path().join(format!("{name}.img"));
            std::fs::File::create(&img)
                .unwrap()
                .set_len((8 << 20) + 4096)
                .unwrap();
            tools
                .tool("mke2fs")
                .env("E2FSPROGS_FAKE_TIME", "1000")
                .args(["-q", "-F", "-t", "ext4", "-b", "4096", "-U"])
                .arg("11111111-2222-3333-4444-555555555555")
                .args([
                    "-E",
                    "hash_seed=11111111-2222-3333-4444-555555555555,offset=4096",
                ])
                .arg("-d")
                .arg(&tar)
                .arg(&img)
                .arg("2048")
                .run()
                .unwrap();
            img
        };
        let a = make("a", 1000, b"contents A");
        let b = make("b", 2000, b"contents B");
        let diff = crate::bytes::diff_files(&a, &b, 1000).unwrap();
        let rel: Vec<ByteRange> = diff
            .ranges
            .iter()
            .filter_map(|r| r.clip(4096, u64::MAX))
            .map(|r| ByteRange {
                start: r.start - 4096,
                end: r.end - 4096,
            })
            .collect();
        let lines = explain(&tools, &a, &b, 4096, &rel, 10).unwrap();
        let text = lines.join("\n");
        eprintln!("{text}");
        assert!(text.contains("/etc/stamp: inode record"), "{text}");
        assert!(text.contains("mtime: 0x000003e8"), "{text}");
        assert!(
            text.contains("/etc/data: data/directory/extent blocks"),
            "{text}"
        );
        assert!(text.contains("content sha256"), "{text}");
    }

    #[test]
    fn line_diffs() {
        let a: Vec<String> = ["x", " mtime: 1", "y"].map(String::from).to_vec();
        let b: Vec<String> = ["x", " mtime: 2", "y"].map(String::from).to_vec();
        assert_eq!(line_diff(&a, &b), ["A: mtime: 1", "B: mtime: 2"]);
    }
}
