//! Which parts, files and metadata of a FAT32 ESP differ: byte ranges are
//! mapped onto the boot sector/reserved area, the FATs and data clusters
//! (clusters to files with `mshowfat`); the listings (`mdir -/ -a`: names,
//! sizes, dates) and each file's content (`mcopy` to stdout) are compared.
//! mtools come from the tools tree and read the image at the partition's
//! offset (`image@@offset`), read-only.

use std::collections::BTreeMap;
use std::ffi::OsString;
use std::path::Path;

use anyhow::{Context, Result, bail};
use sha2::{Digest, Sha256};

use super::bytes::ByteRange;
use super::ext4::line_diff;
use disk::tools::ToolsTree;

/// The BIOS parameter block fields that place everything in a FAT32 volume.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Bpb {
    /// Bytes per sector.
    pub bytes_per_sector: u64,
    /// Sectors per cluster.
    pub sectors_per_cluster: u64,
    /// Reserved sectors (boot sector, FSInfo, backup boot sector).
    pub reserved_sectors: u64,
    /// Number of FATs.
    pub fats: u64,
    /// Sectors per FAT.
    pub fat_sectors: u64,
}

impl Bpb {
    /// Parses the boot sector of a FAT32 volume.
    pub fn parse(boot: &[u8]) -> Result<Bpb> {
        if boot.len() < 512 || boot[510] != 0x55 || boot[511] != 0xAA {
            bail!("no FAT boot sector signature");
        }
        let u16_at = |i: usize| u64::from(u16::from_le_bytes([boot[i], boot[i + 1]]));
        let b = Bpb {
            bytes_per_sector: u16_at(11),
            sectors_per_cluster: u64::from(boot[13]),
            reserved_sectors: u16_at(14),
            fats: u64::from(boot[16]),
            fat_sectors: u64::from(u32::from_le_bytes([boot[36], boot[37], boot[38], boot[39]])),
        };
        if b.bytes_per_sector == 0 || b.sectors_per_cluster == 0 || b.fat_sectors == 0 {
            bail!("not a FAT32 boot sector");
        }
        Ok(b)
    }

    fn data_start(&self) -> u64 {
        (self.reserved_sectors + self.fats * self.fat_sectors) * self.bytes_per_sector
    }

    fn cluster_bytes(&self) -> u64 {
        self.sectors_per_cluster * self.bytes_per_sector
    }

    /// Names the part of the volume holding byte `at` (relative to its start).
    pub fn place(&self, at: u64) -> Place {
        let bps = self.bytes_per_sector;
        let reserved = self.reserved_sectors * bps;
        if at < reserved {
            return Place::Reserved(at / bps);
        }
        if at < self.data_start() {
            return Place::Fat((at - reserved) / (self.fat_sectors * bps) + 1);
        }
        Place::Cluster((at - self.data_start()) / self.cluster_bytes() + 2)
    }
}

/// A part of a FAT volume.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Place {
    /// Reserved-area sector `n` (0 = boot sector, 1 = FSInfo, 6 = backup boot sector).
    Reserved(u64),
    /// FAT number `n` (1-based).
    Fat(u64),
    /// Data cluster `n`.
    Cluster(u64),
}

/// `path → clusters` from `mshowfat` lines like `::/EFI/BOOT/X.EFI <5-1556><1600>`.
pub fn parse_showfat(text: &str) -> BTreeMap<String, Vec<(u64, u64)>> {
    let mut out = BTreeMap::new();
    for line in text.lines() {
        let Some((path, chains)) = line.split_once(" <") else {
            continue;
        };
        let mut runs = Vec::new();
        for run in format!("<{chains}").split('<').filter(|s| !s.is_empty()) {
            let run = run.trim_end().trim_end_matches('>');
            let (a, b) = run.split_once('-').unwrap_or((run, run));
            if let (Ok(a), Ok(b)) = (a.parse(), b.parse()) {
                runs.push((a, b));
            }
        }
        out.insert(path.trim().to_string(), runs);
    }
    out
}

fn mtool(tools: &ToolsTree, name: &str, drive: &OsString, args: &[&str]) -> Result<Vec<u8>> {
    tools
        .tool(name)
        .arg("-i")
        .arg(drive.clone())
        .args(args.iter().copied())
        .run()
        .with_context(|| format!("{name} {}", args.join(" ")))
}

fn drive(img: &Path, offset: u64) -> OsString {
    let mut d = img.as_os_str().to_owned();
    d.push(format!("@@{offset}"));
    d
}

/// Explains the differences of the FAT volumes at byte `offset` of images
/// `a` and `b`, given the differing `ranges` (relative to the partition)
/// and A's boot sector `boot`. Returns report lines.
pub fn explain(
    tools: &ToolsTree,
    a: &Path,
    b: &Path,
    offset: u64,
    boot: &[u8],
    ranges: &[ByteRange],
) -> Result<Vec<String>> {
    let bpb = Bpb::parse(boot)?;
    let (da, db) = (drive(a, offset), drive(b, offset));
    let mut out = Vec::new();

    // Which files own the differing clusters.
    let listed = String::from_utf8_lossy(&mtool(tools, "mdir", &da, &["-/", "-b", "::/"])?)
        .lines()
        .map(|l| l.trim().to_string())
        .filter(|l| !l.is_empty())
        .collect::<Vec<_>>();
    let files: Vec<&str> = listed
        .iter()
        .filter(|l| !l.ends_with('/'))
        .map(String::as_str)
        .collect();
    let paths_a: Vec<String> = listed
        .iter()
        .map(|l| l.trim_end_matches('/').to_string())
        .collect();
    let mut showfat_args: Vec<&str> = vec![];
    showfat_args.extend(paths_a.iter().map(String::as_str));
    let owners = parse_showfat(&String::from_utf8_lossy(&mtool(
        tools,
        "mshowfat",
        &da,
        &showfat_args,
    )?));
    let owner_of = |cluster: u64| -> String {
        if cluster == 2 {
            return "the root directory".into();
        }
        owners
            .iter()
            .find(|(_, runs)| runs.iter().any(|(x, y)| (*x..=*y).contains(&cluster)))
            .map(|(p, _)| p.clone())
            .unwrap_or_else(|| "no file (free space)".into())
    };
    let mut seen: BTreeMap<String, u64> = BTreeMap::new();
    for r in ranges {
        for at in [r.start, r.end - 1] {
            let what = match bpb.place(at) {
                Place::Reserved(0) => "boot sector (volume ID, label, geometry)".to_string(),
                Place::Reserved(1) => "FSInfo sector (free-cluster hints)".to_string(),
                Place::Reserved(n) => format!("reserved sector {n} (6 = backup boot sector)"),
                Place::Fat(n) => format!("FAT #{n} (cluster allocation)"),
                Place::Cluster(c) => format!("cluster {c}: {}", owner_of(c)),
            };
            *seen.entry(what).or_default() += 1;
        }
    }
    for what in seen.keys() {
        out.push(format!("bytes differ in {what}"));
    }

    // Listings: names, sizes, dates and times.
    let list = |d: &OsString| -> Result<Vec<String>> {
        Ok(
            String::from_utf8_lossy(&mtool(tools, "mdir", d, &["-/", "-a", "::/"])?)
                .lines()
                .map(str::to_string)
                .collect(),
        )
    };
    let d = line_diff(&list(&da)?, &list(&db)?);
    if !d.is_empty() {
        out.push("directory listings (mdir -/ -a) differ:".into());
        out.extend(d.into_iter().map(|l| format!("  {l}")));
    }

    // Contents.
    for p in files {
        let hash = |d: &OsString| -> Result<Option<String>> {
            match mtool(tools, "mcopy", d, &["-n", p, "-"]) {
                Ok(bytes) => Ok(Some(hex::encode(Sha256::digest(&bytes)))),
                Err(_) => Ok(None),
            }
        };
        let (ha, hb) = (hash(&da)?, hash(&db)?);
        if ha != hb {
            let show = |h: Option<String>| {
                h.map(|h| h[..16].to_string())
                    .unwrap_or_else(|| "(not a file / missing)".into())
            };
            out.push(format!("{p}: content sha256 {} → {}", show(ha), show(hb)));
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn boot() -> Vec<u8> {
        let mut b = vec![0u8; 512];
        b[11..13].copy_from_slice(&512u16.to_le_bytes());
        b[13] = 1;
        b[14..16].copy_from_slice(&32u16.to_le_bytes());
        b[16] = 2;
        b[36..40].copy_from_slice(&2000u32.to_le_bytes());
        b[510] = 0x55;
        b[511] = 0xAA;
        b
    }

    #[test]
    fn places_in_a_fat32_volume() {
        let bpb = Bpb::parse(&boot()).unwrap();
        assert_eq!(bpb.place(3), Place::Reserved(0));
        assert_eq!(bpb.place(512 + 4), Place::Reserved(1));
        assert_eq!(bpb.place(32 * 512), Place::Fat(1));
        assert_eq!(bpb.place((32 + 2000) * 512), Place::Fat(2));
        assert_eq!(bpb.place((32 + 4000) * 512), Place::Cluster(2));
        assert_eq!(bpb.place((32 + 4000 + 5) * 512 + 1), Place::Cluster(7));
        assert!(Bpb::parse(&[0u8; 512]).is_err());
    }

    /// End to end with the tools tree named by `REPRO_TEST_TOOLS`: two FAT32
    /// volumes whose one file has other contents and another mtime.
    #[test]
    #[ignore = "needs REPRO_TEST_TOOLS=<a built tools tree>; run with --ignored"]
    fn real_volumes_are_explained() {
        let tools =
            ToolsTree::open(&crate::tests::test_tools("real_volumes_are_explained")).unwrap();
        let dir = tempfile::tempdir().unwrap();
        let offset = 4096u64;
        let make = |name: &str, data: &[u8], mtime: u64| {
            let img = dir.path().join(format!("{name}.img"));
            std::fs::File::create(&img)
                .unwrap()
                .set_len(offset + (40 << 20))
                .unwrap();
            tools
                .tool("mkfs.fat")
                .epoch(1000)
                .args(["-F", "32", "-S", "512", "-s", "1", "--mbr=n", "--invariant"])
                .arg(format!("--offset={}", offset / 512))
                .args(["-i", "12345678", "-n", "ESP"])
                .arg(&img)
                .arg((40 * 1024).to_string())
                .run()
                .unwrap();
            let f = dir.path().join(format!("{name}-BOOTX64.EFI"));
            std::fs::write(&f, data).unwrap();
            std::fs::File::options()
                .write(true)
                .open(&f)
                .and_then(|x| {
                    x.set_modified(std::time::UNIX_EPOCH + std::time::Duration::from_secs(mtime))
                })
                .unwrap();
            let d = drive(&img, offset);
            tools
                .tool("mmd")
                .epoch(1000)
                .arg("-i")
                .arg(d.clone())
                .arg("::/EFI")
                .run()
                .unwrap();
            tools
                .tool("mcopy")
                .epoch(1000)
                .args(["-m", "-i"])
                .arg(d)
                .arg(&f)
                .arg("::/EFI/BOOTX64.EFI")
                .run()
                .unwrap();
            img
        };
        let a = make("a", b"efi A", 1_763_942_400);
        let b = make("b", b"efi B", 1_763_942_400 + 86_400);
        let diff = crate::bytes::diff_files(&a, &b, 1000).unwrap();
        let rel: Vec<ByteRange> = diff
            .ranges
            .iter()
            .filter_map(|r| r.clip(offset, u64::MAX))
            .map(|r| ByteRange {
                start: r.start - offset,
                end: r.end - offset,
            })
            .collect();
        let boot = std::fs::read(&a).unwrap()[offset as usize..offset as usize + 512].to_vec();
        let lines = explain(&tools, &a, &b, offset, &boot, &rel).unwrap();
        let text = lines.join("\n");
        eprintln!("{text}");
        assert!(
            text.contains("::/EFI/BOOTX64.EFI: content sha256"),
            "{text}"
        );
        assert!(
            text.contains("2025-11-24") && text.contains("2025-11-25"),
            "{text}"
        );
        assert!(text.contains(": ::/EFI"), "{text}");
    }

    #[test]
    fn showfat_output() {
        let m = parse_showfat("::/EFI <3>\n::/EFI/BOOT/BOOTX64.EFI <5-1556><1600-1601>\n");
        assert_eq!(m["::/EFI"], [(3, 3)]);
        assert_eq!(m["::/EFI/BOOT/BOOTX64.EFI"], [(5, 1556), (1600, 1601)]);
    }
}
