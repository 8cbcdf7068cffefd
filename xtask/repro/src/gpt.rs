//! The regions of a GPT disk image (protective MBR, both GPT headers and
//! entry arrays, each partition, the gaps) and which of them a byte range
//! falls into.
//!
//! Read directly from the image rather than through `sfdisk -J` so the
//! classification does not depend on a host tool and can be unit-tested on
//! synthetic bytes; the fields are those of UEFI 2.10 §5.3.

use std::fs::File;
use std::io::{Read, Seek, SeekFrom};
use std::path::Path;

use anyhow::{Context, Result, bail};

use super::bytes::ByteRange;
use disk::{BIOS_BOOT_TYPE, ESP_TYPE, ROOT_X86_64_TYPE, SECTOR};

/// One partition entry in use.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Partition {
    /// 1-based partition number (entry index + 1).
    pub number: u32,
    /// The entry's name.
    pub name: String,
    /// Type GUID (upper case, canonical form).
    pub type_guid: String,
    /// Unique partition GUID.
    pub guid: String,
    /// First LBA.
    pub first_lba: u64,
    /// Last LBA (inclusive).
    pub last_lba: u64,
}

impl Partition {
    /// Byte offset of the partition.
    pub fn offset(&self) -> u64 {
        self.first_lba * SECTOR
    }

    /// One past the partition's last byte.
    pub fn end(&self) -> u64 {
        (self.last_lba + 1) * SECTOR
    }

    /// What the type GUID means, for messages.
    pub fn kind(&self) -> &'static str {
        match self.type_guid.as_str() {
            t if t == BIOS_BOOT_TYPE => "BIOS boot (GRUB core.img)",
            t if t == ESP_TYPE => "EFI system partition (vfat)",
            t if t == ROOT_X86_64_TYPE => "root (ext4)",
            _ => "unknown type",
        }
    }
}

/// The primary GPT header's fields that locate everything else.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Gpt {
    /// Disk GUID.
    pub disk_guid: String,
    /// LBA of the backup header.
    pub alternate_lba: u64,
    /// LBA of the primary entry array.
    pub entries_lba: u64,
    /// Number of entries in the array.
    pub entry_count: u32,
    /// Size of one entry in bytes.
    pub entry_size: u32,
    /// The entries in use.
    pub partitions: Vec<Partition>,
}

/// A named region of the disk.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Region {
    /// What it is (`primary GPT header`, `partition 3 "root" …`).
    pub name: String,
    /// First byte.
    pub start: u64,
    /// One past the last byte.
    pub end: u64,
    /// The partition number, for partitions.
    pub partition: Option<u32>,
}

/// Reads the primary GPT of the image at `path`.
pub fn read_gpt(path: &Path) -> Result<Gpt> {
    let mut f = File::open(path).with_context(|| format!("opening {}", path.display()))?;
    let mut header = [0u8; 512];
    f.seek(SeekFrom::Start(SECTOR))
        .and_then(|_| f.read_exact(&mut header))
        .with_context(|| format!("reading the GPT header of {}", path.display()))?;
    let (entries_lba, count, size) = entry_array(&header)?;
    let mut entries = vec![0u8; count as usize * size as usize];
    f.seek(SeekFrom::Start(entries_lba * SECTOR))
        .and_then(|_| f.read_exact(&mut entries))
        .with_context(|| format!("reading the GPT entries of {}", path.display()))?;
    parse_gpt(&header, &entries)
}

fn u32_at(b: &[u8], at: usize) -> u32 {
    let mut x = [0u8; 4];
    x.copy_from_slice(&b[at..at + 4]);
    u32::from_le_bytes(x)
}

fn u64_at(b: &[u8], at: usize) -> u64 {
    let mut x = [0u8; 8];
    x.copy_from_slice(&b[at..at + 8]);
    u64::from_le_bytes(x)
}

/// (entries LBA, entry count, entry size) of a GPT header sector.
fn entry_array(header: &[u8]) -> Result<(u64, u32, u32)> {
    if header.len() < 92 || &header[..8] != b"EFI PART" {
        bail!("no GPT header at LBA 1 (signature `EFI PART` missing)");
    }
    let count = u32_at(header, 80);
    let size = u32_at(header, 84);
    if !(128..=4096).contains(&size) || count > 4096 {
        bail!("implausible GPT entry array: {count} entries of {size} bytes");
    }
    Ok((u64_at(header, 72), count, size))
}

/// Parses a GPT header sector and its entry array.
pub fn parse_gpt(header: &[u8], entries: &[u8]) -> Result<Gpt> {
    let (entries_lba, entry_count, entry_size) = entry_array(header)?;
    let mut partitions = Vec::new();
    for (i, e) in entries.chunks_exact(entry_size as usize).enumerate() {
        if e[..16].iter().all(|&b| b == 0) {
            continue;
        }
        let name: Vec<u16> = e[56..128]
            .chunks_exact(2)
            .map(|c| u16::from_le_bytes([c[0], c[1]]))
            .take_while(|&c| c != 0)
            .collect();
        partitions.push(Partition {
            number: i as u32 + 1,
            name: String::from_utf16_lossy(&name),
            type_guid: guid(&e[..16]),
            guid: guid(&e[16..32]),
            first_lba: u64_at(e, 32),
            last_lba: u64_at(e, 40),
        });
    }
    Ok(Gpt {
        disk_guid: guid(&header[56..72]),
        alternate_lba: u64_at(header, 32),
        entries_lba,
        entry_count,
        entry_size,
        partitions,
    })
}

/// The canonical (mixed-endian) text form of an on-disk GUID.
pub fn guid(b: &[u8]) -> String {
    format!(
        "{:02X}{:02X}{:02X}{:02X}-{:02X}{:02X}-{:02X}{:02X}-{:02X}{:02X}-{:02X}{:02X}{:02X}{:02X}{:02X}{:02X}",
        b[3],
        b[2],
        b[1],
        b[0],
        b[5],
        b[4],
        b[7],
        b[6],
        b[8],
        b[9],
        b[10],
        b[11],
        b[12],
        b[13],
        b[14],
        b[15]
    )
}

impl Gpt {
    /// Every region of a disk of `disk_bytes` bytes, in order, gaps included.
    pub fn regions(&self, disk_bytes: u64) -> Vec<Region> {
        let array = u64::from(self.entry_count) * u64::from(self.entry_size);
        let array_sectors = array.div_ceil(SECTOR);
        let mut named = vec![
            Region {
                name: "protective MBR + GRUB boot.img (LBA 0)".into(),
                start: 0,
                end: SECTOR,
                partition: None,
            },
            Region {
                name: "primary GPT header (LBA 1)".into(),
                start: SECTOR,
                end: 2 * SECTOR,
                partition: None,
            },
            Region {
                name: format!(
                    "primary GPT entries (LBA {}-{})",
                    self.entries_lba,
                    self.entries_lba + array_sectors - 1
                ),
                start: self.entries_lba * SECTOR,
                end: self.entries_lba * SECTOR + array,
                partition: None,
            },
        ];
        for p in &self.partitions {
            named.push(Region {
                name: format!(
                    "partition {} \"{}\", {} (LBA {}-{})",
                    p.number,
                    p.name,
                    p.kind(),
                    p.first_lba,
                    p.last_lba
                ),
                start: p.offset(),
                end: p.end(),
                partition: Some(p.number),
            });
        }
        if self.alternate_lba > array_sectors {
            let backup_entries = self.alternate_lba - array_sectors;
            named.push(Region {
                name: format!(
                    "backup GPT entries (LBA {}-{})",
                    backup_entries,
                    self.alternate_lba - 1
                ),
                start: backup_entries * SECTOR,
                end: backup_entries * SECTOR + array,
                partition: None,
            });
            named.push(Region {
                name: format!("backup GPT header (LBA {})", self.alternate_lba),
                start: self.alternate_lba * SECTOR,
                end: (self.alternate_lba + 1) * SECTOR,
                partition: None,
            });
        }
        named.sort_by_key(|r| (r.start, r.end));
        let mut out = Vec::new();
        let mut at = 0;
        for r in named {
            if r.start < at || r.start >= disk_bytes {
                // Overlapping or outside the disk: keep it, the table is odd.
                out.push(r);
                continue;
            }
            if r.start > at {
                out.push(Region {
                    name: format!("unpartitioned bytes {at}-{}", r.start - 1),
                    start: at,
                    end: r.start,
                    partition: None,
                });
            }
            at = r.end;
            out.push(r);
        }
        if at < disk_bytes {
            out.push(Region {
                name: format!("unpartitioned bytes {at}-{}", disk_bytes - 1),
                start: at,
                end: disk_bytes,
                partition: None,
            });
        }
        out
    }
}

/// The byte ranges that fall into each region (only regions with any),
/// clipped to the region; ranges outside every region go to `beyond`.
pub fn locate(ranges: &[ByteRange], regions: &[Region]) -> Vec<(Region, Vec<ByteRange>)> {
    let mut out: Vec<(Region, Vec<ByteRange>)> = Vec::new();
    for r in regions {
        let hits: Vec<ByteRange> = ranges
            .iter()
            .filter_map(|x| x.clip(r.start, r.end))
            .collect();
        if !hits.is_empty() {
            out.push((r.clone(), hits));
        }
    }
    let end = regions.iter().map(|r| r.end).max().unwrap_or(0);
    let beyond: Vec<ByteRange> = ranges
        .iter()
        .filter_map(|x| x.clip(end, u64::MAX))
        .collect();
    if !beyond.is_empty() {
        out.push((
            Region {
                name: "beyond the end of disk A".into(),
                start: end,
                end: u64::MAX,
                partition: None,
            },
            beyond,
        ));
    }
    out
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::bytes::diff_readers;

    /// A GPT-like disk of `sectors` sectors with partitions at the given
    /// (first, last) LBAs; the types cycle through BIOS boot, ESP, root.
    pub(crate) fn disk(sectors: u64, parts: &[(u64, u64, &str)]) -> Vec<u8> {
        let mut d = vec![0u8; (sectors * SECTOR) as usize];
        let types = [BIOS_BOOT_TYPE, ESP_TYPE, ROOT_X86_64_TYPE];
        let mut header = vec![0u8; 512];
        header[..8].copy_from_slice(b"EFI PART");
        header[32..40].copy_from_slice(&(sectors - 1).to_le_bytes());
        header[56..72].copy_from_slice(&[0x11; 16]);
        header[72..80].copy_from_slice(&2u64.to_le_bytes());
        header[80..84].copy_from_slice(&128u32.to_le_bytes());
        header[84..88].copy_from_slice(&128u32.to_le_bytes());
        let mut entries = vec![0u8; 128 * 128];
        for (i, (first, last, name)) in parts.iter().enumerate() {
            let e = &mut entries[i * 128..(i + 1) * 128];
            e[..16].copy_from_slice(&guid_bytes(types[i % 3]));
            e[16..32].copy_from_slice(&[i as u8 + 1; 16]);
            e[32..40].copy_from_slice(&first.to_le_bytes());
            e[40..48].copy_from_slice(&last.to_le_bytes());
            for (j, c) in name.encode_utf16().enumerate() {
                e[56 + 2 * j..58 + 2 * j].copy_from_slice(&c.to_le_bytes());
            }
        }
        d[512..1024].copy_from_slice(&header);
        d[1024..1024 + entries.len()].copy_from_slice(&entries);
        let backup = ((sectors - 33) * SECTOR) as usize;
        d[backup..backup + entries.len()].copy_from_slice(&entries);
        let bh = ((sectors - 1) * SECTOR) as usize;
        d[bh..bh + 512].copy_from_slice(&header);
        d
    }

    fn guid_bytes(s: &str) -> [u8; 16] {
        let hex: String = s.chars().filter(|c| *c != '-').collect();
        let raw: Vec<u8> = (0..16)
            .map(|i| u8::from_str_radix(&hex[2 * i..2 * i + 2], 16).unwrap())
            .collect();
        let mut b = [0u8; 16];
        b[..4].copy_from_slice(&[raw[3], raw[2], raw[1], raw[0]]);
        b[4..6].copy_from_slice(&[raw[5], raw[4]]);
        b[6..8].copy_from_slice(&[raw[7], raw[6]]);
        b[8..].copy_from_slice(&raw[8..]);
        b
    }

    fn regions_of(d: &[u8]) -> Vec<Region> {
        let g = parse_gpt(&d[512..1024], &d[1024..1024 + 128 * 128]).unwrap();
        g.regions(d.len() as u64)
    }

    #[test]
    fn parses_the_table() {
        let d = disk(4096, &[(2048, 2559, "bios"), (2560, 4061, "esp")]);
        let g = parse_gpt(&d[512..1024], &d[1024..1024 + 128 * 128]).unwrap();
        assert_eq!(g.partitions.len(), 2);
        assert_eq!(g.partitions[0].type_guid, BIOS_BOOT_TYPE);
        assert_eq!(g.partitions[1].type_guid, ESP_TYPE);
        assert_eq!(g.partitions[1].name, "esp");
        assert_eq!(g.partitions[1].offset(), 2560 * 512);
        assert_eq!(g.disk_guid, "11111111-1111-1111-1111-111111111111");
        assert_eq!(g.alternate_lba, 4095);
    }

    #[test]
    fn regions_cover_the_disk_in_order() {
        let d = disk(4096, &[(2048, 2559, "bios"), (2560, 4061, "esp")]);
        let r = regions_of(&d);
        let names: Vec<&str> = r.iter().map(|r| r.name.as_str()).collect();
        assert_eq!(
            names,
            [
                "protective MBR + GRUB boot.img (LBA 0)",
                "primary GPT header (LBA 1)",
                "primary GPT entries (LBA 2-33)",
                "unpartitioned bytes 17408-1048575",
                "partition 1 \"bios\", BIOS boot (GRUB core.img) (LBA 2048-2559)",
                "partition 2 \"esp\", EFI system partition (vfat) (LBA 2560-4061)",
                "unpartitioned bytes 2079744-2080255",
                "backup GPT entries (LBA 4063-4094)",
                "backup GPT header (LBA 4095)",
            ]
        );
        for w in r.windows(2) {
            assert_eq!(w[0].end, w[1].start);
        }
        assert_eq!(r.last().unwrap().end, d.len() as u64);
    }

    #[test]
    fn differences_are_located() {
        let a = disk(4096, &[(2048, 2559, "bios"), (2560, 4061, "esp")]);
        let mut b = a.clone();
        b[2600 * 512 + 7] ^= 0xff; // inside the ESP
        b[1024 + 128 + 40] ^= 1; // entry 2's last LBA, primary copy
        b[4095 * 512 + 16] ^= 1; // backup header CRC field
        let diff = diff_readers(a.as_slice(), b.as_slice(), 100).unwrap();
        let found = locate(&diff.ranges, &regions_of(&a));
        let got: Vec<(String, Vec<(u64, u64)>)> = found
            .iter()
            .map(|(r, x)| {
                (
                    r.name.clone(),
                    x.iter()
                        .map(|x| (x.start - r.start, x.end - r.start))
                        .collect(),
                )
            })
            .collect();
        assert_eq!(
            got,
            [
                (
                    "primary GPT entries (LBA 2-33)".to_string(),
                    vec![(168, 169)]
                ),
                (
                    "partition 2 \"esp\", EFI system partition (vfat) (LBA 2560-4061)".to_string(),
                    vec![(40 * 512 + 7, 40 * 512 + 8)]
                ),
                ("backup GPT header (LBA 4095)".to_string(), vec![(16, 17)]),
            ]
        );
        assert_eq!(found[1].0.partition, Some(2));
    }

    #[test]
    fn garbage_is_not_a_gpt() {
        assert!(parse_gpt(&[0u8; 512], &[]).is_err());
    }
}
