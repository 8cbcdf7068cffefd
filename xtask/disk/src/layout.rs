//! Partition layout arithmetic and the `sfdisk` script that writes it.

use anyhow::{Result, bail};
use image_spec::lock::DiskIds;

/// Logical sector size of the image.
pub const SECTOR: u64 = 512;
/// One MiB in bytes.
pub const MIB: u64 = 1 << 20;
/// Sectors per MiB (the alignment of every partition).
pub const SECTORS_PER_MIB: u64 = MIB / SECTOR;
/// Size of the BIOS boot partition (holds GRUB's `core.img`).
pub const BIOS_BOOT_MIB: u64 = 1;
/// Size of the EFI system partition.
pub const ESP_MIB: u64 = 127;
/// Smallest root partition accepted.
pub const MIN_ROOT_MIB: u64 = 256;
/// ext4 block size of the root filesystem.
pub const ROOT_BLOCK_SIZE: u64 = 4096;

/// GPT type GUID of a BIOS boot partition.
pub const BIOS_BOOT_TYPE: &str = "21686148-6449-6E6F-744E-656564454649";
/// GPT type GUID of an EFI system partition.
pub const ESP_TYPE: &str = "C12A7328-F81F-11D2-BA4B-00A0C93EC93B";
/// GPT type GUID of a Linux root partition for x86-64 (Discoverable
/// Partitions Specification).
pub const ROOT_X86_64_TYPE: &str = "4F68BCE3-E8CD-4DB1-96E7-FBCAF984B709";

/// A run of sectors on the disk.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Extent {
    /// First LBA.
    pub start: u64,
    /// Length in sectors.
    pub sectors: u64,
}

impl Extent {
    /// Byte offset of the first sector.
    pub fn offset_bytes(&self) -> u64 {
        self.start * SECTOR
    }

    /// Length in bytes.
    pub fn size_bytes(&self) -> u64 {
        self.sectors * SECTOR
    }

    /// One past the last LBA.
    pub fn end(&self) -> u64 {
        self.start + self.sectors
    }
}

/// Where everything goes on the disk: 1 MiB gap for the primary GPT, BIOS
/// boot (1 MiB), ESP (127 MiB), root up to the last MiB, which holds the
/// backup GPT. All partitions start and end on MiB boundaries.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Layout {
    /// Total sectors of the disk.
    pub disk_sectors: u64,
    /// Partition 1: BIOS boot.
    pub bios_boot: Extent,
    /// Partition 2: EFI system partition.
    pub esp: Extent,
    /// Partition 3: the ext4 root.
    pub root: Extent,
}

impl Layout {
    /// The layout of a disk of `size_mib` MiB.
    pub fn new(size_mib: u64) -> Result<Layout> {
        let fixed = 1 + BIOS_BOOT_MIB + ESP_MIB + 1;
        if size_mib < fixed + MIN_ROOT_MIB {
            bail!(
                "a disk of {size_mib} MiB is too small: at least {} MiB are needed",
                fixed + MIN_ROOT_MIB
            );
        }
        let Some(disk_sectors) = size_mib.checked_mul(SECTORS_PER_MIB) else {
            bail!("a disk of {size_mib} MiB is too large");
        };
        let bios_boot = Extent {
            start: SECTORS_PER_MIB,
            sectors: BIOS_BOOT_MIB * SECTORS_PER_MIB,
        };
        let esp = Extent {
            start: bios_boot.end(),
            sectors: ESP_MIB * SECTORS_PER_MIB,
        };
        let root = Extent {
            start: esp.end(),
            sectors: disk_sectors - SECTORS_PER_MIB - esp.end(),
        };
        Ok(Layout {
            disk_sectors,
            bios_boot,
            esp,
            root,
        })
    }

    /// Size of the disk in bytes.
    pub fn disk_bytes(&self) -> u64 {
        self.disk_sectors * SECTOR
    }

    /// Size of the root filesystem in ext4 blocks.
    pub fn root_blocks(&self) -> u64 {
        self.root.size_bytes() / ROOT_BLOCK_SIZE
    }

    /// Size of the ESP in KiB (the unit `mkfs.fat` takes).
    pub fn esp_kib(&self) -> u64 {
        self.esp.size_bytes() / 1024
    }
}

/// The `sfdisk` script that writes `layout` with the identifiers of `ids`.
/// Every header field is explicit so that `sfdisk` computes nothing itself.
pub fn sfdisk_script(layout: &Layout, ids: &DiskIds) -> String {
    let part = |e: &Extent, ty: &str, uuid: &str, name: &str| {
        format!(
            "start={}, size={}, type={ty}, uuid={}, name=\"{name}\"\n",
            e.start,
            e.sectors,
            uuid.to_ascii_uppercase()
        )
    };
    let mut s = String::new();
    s.push_str("label: gpt\n");
    s.push_str(&format!(
        "label-id: {}\n",
        ids.disk_guid.to_ascii_uppercase()
    ));
    s.push_str("unit: sectors\n");
    s.push_str("sector-size: 512\n");
    s.push_str("table-length: 128\n");
    s.push_str("first-lba: 34\n");
    // The backup GPT takes the last 33 sectors.
    s.push_str(&format!("last-lba: {}\n", layout.disk_sectors - 34));
    s.push('\n');
    s.push_str(&part(
        &layout.bios_boot,
        BIOS_BOOT_TYPE,
        &ids.bios_boot_guid,
        "bios",
    ));
    s.push_str(&part(&layout.esp, ESP_TYPE, &ids.esp_guid, "esp"));
    s.push_str(&part(
        &layout.root,
        ROOT_X86_64_TYPE,
        &ids.root_guid,
        "root",
    ));
    s
}

/// Checks the shape of the identifiers before they reach a tool's command
/// line (`sfdisk`, `mke2fs` and `mkfs.fat` would each fail differently).
pub fn validate_ids(ids: &DiskIds) -> Result<()> {
    for (name, value) in [
        ("disk-guid", &ids.disk_guid),
        ("bios-boot-guid", &ids.bios_boot_guid),
        ("esp-guid", &ids.esp_guid),
        ("root-guid", &ids.root_guid),
        ("root-fs-uuid", &ids.root_fs_uuid),
        ("root-hash-seed", &ids.root_hash_seed),
    ] {
        if !is_uuid(value) {
            bail!("disk.{name} `{value}` is not a UUID (8-4-4-4-12 hex digits)");
        }
    }
    let v = &ids.esp_volume_id;
    if v.len() != 8 || !v.chars().all(|c| c.is_ascii_hexdigit()) {
        bail!("disk.esp-volume-id `{v}` is not 8 hex digits");
    }
    Ok(())
}

fn is_uuid(s: &str) -> bool {
    let groups: Vec<&str> = s.split('-').collect();
    groups.len() == 5
        && groups
            .iter()
            .zip([8, 4, 4, 4, 12])
            .all(|(g, n)| g.len() == n && g.chars().all(|c| c.is_ascii_hexdigit()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn layout_of_a_4_gib_disk() {
        let l = Layout::new(4096).unwrap();
        assert_eq!(l.disk_sectors, 8_388_608);
        assert_eq!(
            l.bios_boot,
            Extent {
                start: 2048,
                sectors: 2048
            }
        );
        assert_eq!(
            l.esp,
            Extent {
                start: 4096,
                sectors: 260_096
            }
        );
        assert_eq!(l.root.start, 264_192);
        assert_eq!(l.root.end(), 8_388_608 - 2048);
        assert_eq!(l.root.sectors, 8_122_368);
        assert_eq!(l.root_blocks(), 8_122_368 / 8);
        assert_eq!(l.esp_kib(), 127 * 1024);
        assert_eq!(l.root.offset_bytes(), 129 * MIB);
        assert_eq!(l.disk_bytes(), 4096 * MIB);
        for e in [l.bios_boot, l.esp, l.root] {
            assert_eq!(e.start % SECTORS_PER_MIB, 0);
            assert_eq!(e.sectors % SECTORS_PER_MIB, 0);
        }
        assert!(l.root.end() <= l.disk_sectors - 34);
    }

    #[test]
    fn small_disks_are_refused() {
        assert!(Layout::new(385).is_err());
        let l = Layout::new(386).unwrap();
        assert_eq!(l.root.size_bytes(), 256 * MIB);
        assert!(Layout::new(u64::MAX).is_err());
    }

    #[test]
    fn sfdisk_script_text() {
        let ids = DiskIds::derive("test");
        let s = sfdisk_script(&Layout::new(1024).unwrap(), &ids);
        let up = |s: &str| s.to_ascii_uppercase();
        let want = format!(
            "label: gpt\n\
             label-id: {}\n\
             unit: sectors\n\
             sector-size: 512\n\
             table-length: 128\n\
             first-lba: 34\n\
             last-lba: 2097118\n\
             \n\
             start=2048, size=2048, type=21686148-6449-6E6F-744E-656564454649, uuid={}, name=\"bios\"\n\
             start=4096, size=260096, type=C12A7328-F81F-11D2-BA4B-00A0C93EC93B, uuid={}, name=\"esp\"\n\
             start=264192, size=1830912, type=4F68BCE3-E8CD-4DB1-96E7-FBCAF984B709, uuid={}, name=\"root\"\n",
            up(&ids.disk_guid),
            up(&ids.bios_boot_guid),
            up(&ids.esp_guid),
            up(&ids.root_guid)
        );
        assert_eq!(s, want);
    }

    #[test]
    fn ids_are_validated() {
        let ids = DiskIds::derive("x");
        assert!(validate_ids(&ids).is_ok());
        let mut bad = ids.clone();
        bad.root_fs_uuid = "not-a-uuid".into();
        assert!(validate_ids(&bad).is_err());
        let mut bad = ids.clone();
        bad.esp_volume_id = "1234".into();
        assert!(validate_ids(&bad).is_err());
        let mut bad = ids;
        bad.disk_guid = "ab60f2c4-736f-458b-9f74-9117d7bba6b4\nx".into();
        assert!(validate_ids(&bad).is_err());
    }
}
