//! GRUB: configuration text, module lists, and what `grub-bios-setup` would
//! do to `boot.img` and `core.img` (it refuses to target an image file).
//!
//! Offsets are GRUB 2.12's (`include/grub/i386/pc/boot.h`,
//! `grub-core/boot/i386/pc/boot.S` and `diskboot.S`, `util/setup.c`); the
//! patch functions check the bytes they expect around them so that a GRUB
//! with another layout fails loudly instead of producing an unbootable disk.

use anyhow::{Result, bail};

/// Modules embedded in `BOOTX64.EFI`. All of them are embedded: the root
/// filesystem holds no GRUB module directory, so `grub.cfg` must not
/// `insmod` anything else.
pub const EFI_MODULES: &[&str] = &[
    "part_gpt",
    "part_msdos",
    "fat",
    "ext2",
    "search",
    "search_fs_uuid",
    "search_label",
    "normal",
    "configfile",
    "linux",
    "boot",
    "echo",
    "test",
    "gzio",
    "all_video",
    "efi_gop",
    "serial",
    "terminal",
    "minicmd",
    "ls",
    "cat",
    "sleep",
    "reboot",
    "halt",
];

/// Modules embedded in the BIOS `core.img`; see [`EFI_MODULES`].
pub const BIOS_MODULES: &[&str] = &[
    "biosdisk",
    "part_gpt",
    "part_msdos",
    "ext2",
    "search",
    "search_fs_uuid",
    "search_label",
    "normal",
    "configfile",
    "linux",
    "boot",
    "echo",
    "test",
    "gzio",
    "serial",
    "terminal",
    "minicmd",
    "ls",
    "cat",
    "sleep",
    "reboot",
    "halt",
];

/// The configuration embedded in both GRUB images: find the root
/// filesystem by UUID and hand over to its `/boot/grub/grub.cfg`.
pub fn early_config(root_fs_uuid: &str) -> String {
    format!(
        "search --no-floppy --fs-uuid --set=root {root_fs_uuid}\n\
         set prefix=($root)/boot/grub\n\
         configfile ($root)/boot/grub/grub.cfg\n"
    )
}

/// Size of a boot sector.
pub const SECTOR_SIZE: usize = 512;
/// `GRUB_BOOT_MACHINE_BPB_START`: the BIOS parameter block area of boot.img.
const BPB_START: usize = 0x3;
/// `GRUB_BOOT_MACHINE_BPB_END`.
const BPB_END: usize = 0x5a;
/// `GRUB_BOOT_MACHINE_KERNEL_SECTOR`: u64 LE, LBA of core.img's first sector.
pub const KERNEL_SECTOR: usize = 0x5c;
/// `GRUB_BOOT_MACHINE_BOOT_DRIVE`: 0xff = use the drive the BIOS passed in DL.
pub const BOOT_DRIVE: usize = 0x64;
/// `GRUB_BOOT_MACHINE_DRIVE_CHECK`: a 2-byte `jmp` that grub-setup replaces
/// with `nop nop` for hard disks, so a BIOS passing DL=0x00 is treated as 0x80.
pub const DRIVE_CHECK: usize = 0x66;
/// `GRUB_BOOT_MACHINE_WINDOWS_NT_MAGIC`: start of disk signature + partition table.
pub const WINDOWS_NT_MAGIC: usize = 0x1b8;
/// `GRUB_BOOT_MACHINE_PART_END`: end of the partition table, start of 0x55AA.
pub const PART_END: usize = 0x1fe;

/// In diskboot.img (core.img's first sector), the first blocklist entry sits
/// at the end of the sector: start LBA u64, sector count u16, segment u16.
pub const BLOCKLIST_START: usize = SECTOR_SIZE - 12;
/// Sector count field of the first blocklist entry.
pub const BLOCKLIST_LEN: usize = SECTOR_SIZE - 4;
/// Load segment field of the first blocklist entry.
pub const BLOCKLIST_SEGMENT: usize = SECTOR_SIZE - 2;
/// `GRUB_BOOT_I386_PC_KERNEL_SEG + 0x20`: where diskboot loads the rest.
const BLOCKLIST_SEGMENT_VALUE: u16 = 0x0820;
/// GRUB refuses a core.img larger than this (it must fit below 0x80000).
pub const MAX_CORE_IMG: usize = 0x78000;

/// The MBR: GRUB's `boot.img` made to load core.img from `core_lba`, keeping
/// the BPB area and the (protective) partition table of `current_mbr`, as
/// `grub-bios-setup` does for a hard disk.
pub fn patch_boot_img(boot_img: &[u8], current_mbr: &[u8], core_lba: u64) -> Result<[u8; 512]> {
    if boot_img.len() != SECTOR_SIZE {
        bail!(
            "boot.img is {} bytes, expected {SECTOR_SIZE}",
            boot_img.len()
        );
    }
    if current_mbr.len() != SECTOR_SIZE {
        bail!(
            "the MBR is {} bytes, expected {SECTOR_SIZE}",
            current_mbr.len()
        );
    }
    if boot_img[PART_END..] != [0x55, 0xaa] || current_mbr[PART_END..] != [0x55, 0xaa] {
        bail!("boot.img or the disk's MBR lacks the 0x55AA signature");
    }
    // `jmp after_BPB` at 0, `boot_drive` = 0xff, and the drive check `jmp`.
    if boot_img[0] != 0xeb || boot_img[BOOT_DRIVE] != 0xff || boot_img[DRIVE_CHECK] != 0xeb {
        bail!("boot.img does not have GRUB 2.12's layout (jmp, boot_drive, drive check)");
    }
    let mut mbr = [0u8; SECTOR_SIZE];
    mbr.copy_from_slice(boot_img);
    mbr[BPB_START..BPB_END].copy_from_slice(&current_mbr[BPB_START..BPB_END]);
    mbr[WINDOWS_NT_MAGIC..PART_END].copy_from_slice(&current_mbr[WINDOWS_NT_MAGIC..PART_END]);
    mbr[KERNEL_SECTOR..KERNEL_SECTOR + 8].copy_from_slice(&core_lba.to_le_bytes());
    mbr[BOOT_DRIVE] = 0xff;
    mbr[DRIVE_CHECK] = 0x90;
    mbr[DRIVE_CHECK + 1] = 0x90;
    Ok(mbr)
}

/// Makes core.img's first sector (diskboot.img) load the remaining sectors
/// from the LBA after `core_lba`, where the rest of core.img is written
/// contiguously. Returns the number of sectors core.img occupies.
pub fn patch_core_img(core: &mut [u8], core_lba: u64) -> Result<u64> {
    if core.len() < 2 * SECTOR_SIZE {
        bail!("core.img is only {} bytes", core.len());
    }
    if core.len() > MAX_CORE_IMG {
        bail!(
            "core.img is {} bytes, more than GRUB can load ({MAX_CORE_IMG})",
            core.len()
        );
    }
    let sectors = core.len().div_ceil(SECTOR_SIZE) as u64;
    let rest = u16::try_from(sectors - 1)?;
    let le16 = |at: usize| u16::from_le_bytes([core[at], core[at + 1]]);
    if le16(BLOCKLIST_SEGMENT) != BLOCKLIST_SEGMENT_VALUE {
        bail!("core.img's first sector is not GRUB 2.12's diskboot.img (blocklist segment)");
    }
    if le16(BLOCKLIST_LEN) != rest {
        bail!(
            "core.img's blocklist says {} sectors, the file has {rest} after the first",
            le16(BLOCKLIST_LEN)
        );
    }
    // The entry before the first must be the terminator (length 0).
    if le16(BLOCKLIST_START - 4) != 0 {
        bail!("core.img's blocklist has more than one entry");
    }
    core[BLOCKLIST_START..BLOCKLIST_START + 8].copy_from_slice(&(core_lba + 1).to_le_bytes());
    Ok(sectors)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A synthetic boot.img with GRUB's markers and recognisable filler.
    fn boot_img() -> Vec<u8> {
        let mut b: Vec<u8> = (0..512).map(|i| (i % 251) as u8 | 1).collect();
        b[0] = 0xeb;
        b[1] = 0x63;
        b[KERNEL_SECTOR..KERNEL_SECTOR + 8].copy_from_slice(&1u64.to_le_bytes());
        b[BOOT_DRIVE] = 0xff;
        b[DRIVE_CHECK] = 0xeb;
        b[DRIVE_CHECK + 1] = 0x05;
        b[510] = 0x55;
        b[511] = 0xaa;
        b
    }

    fn protective_mbr() -> Vec<u8> {
        let mut m = vec![0u8; 512];
        m[0x1be..0x1ce].copy_from_slice(&[
            0x00, 0x00, 0x02, 0x00, 0xee, 0xff, 0xff, 0xff, 0x01, 0, 0, 0, 0xff, 0xff, 0x7f, 0,
        ]);
        m[0x1b8..0x1bc].copy_from_slice(&[1, 2, 3, 4]);
        m[510] = 0x55;
        m[511] = 0xaa;
        m
    }

    #[test]
    fn boot_img_is_patched_like_grub_setup() {
        let boot = boot_img();
        let pmbr = protective_mbr();
        let mbr = patch_boot_img(&boot, &pmbr, 2048).unwrap();
        assert_eq!(&mbr[..3], &boot[..3]);
        assert_eq!(&mbr[3..0x5a], &pmbr[3..0x5a]);
        assert_eq!(&mbr[0x5a..0x5c], &boot[0x5a..0x5c]);
        assert_eq!(&mbr[0x5c..0x64], &2048u64.to_le_bytes());
        assert_eq!(mbr[0x64], 0xff);
        assert_eq!(mbr[0x65], boot[0x65]);
        assert_eq!(&mbr[0x66..0x68], &[0x90, 0x90]);
        assert_eq!(&mbr[0x68..0x1b8], &boot[0x68..0x1b8]);
        assert_eq!(&mbr[0x1b8..0x1fe], &pmbr[0x1b8..0x1fe]);
        assert_eq!(&mbr[0x1fe..], &[0x55, 0xaa]);
    }

    #[test]
    fn boot_img_patching_checks_its_input() {
        let pmbr = protective_mbr();
        assert!(patch_boot_img(&boot_img()[..440], &pmbr, 1).is_err());
        let mut b = boot_img();
        b[DRIVE_CHECK] = 0x90;
        assert!(patch_boot_img(&b, &pmbr, 1).is_err());
        let mut m = protective_mbr();
        m[511] = 0;
        assert!(patch_boot_img(&boot_img(), &m, 1).is_err());
    }

    fn core_img(sectors: usize, tail: usize) -> Vec<u8> {
        let mut c = vec![0x5au8; (sectors - 1) * 512 + tail];
        c[..512].fill(0);
        c[BLOCKLIST_START..BLOCKLIST_START + 8].copy_from_slice(&2u64.to_le_bytes());
        c[BLOCKLIST_LEN..BLOCKLIST_LEN + 2].copy_from_slice(&((sectors - 1) as u16).to_le_bytes());
        c[BLOCKLIST_SEGMENT..BLOCKLIST_SEGMENT + 2].copy_from_slice(&0x0820u16.to_le_bytes());
        c
    }

    #[test]
    fn core_img_blocklist_points_after_its_first_sector() {
        let mut c = core_img(60, 100);
        let before = c.clone();
        assert_eq!(patch_core_img(&mut c, 2048).unwrap(), 60);
        assert_eq!(&c[0x1f4..0x1fc], &2049u64.to_le_bytes());
        assert_eq!(&c[..0x1f4], &before[..0x1f4]);
        assert_eq!(&c[0x1fc..], &before[0x1fc..]);
        // An exact multiple of the sector size.
        let mut c = core_img(3, 512);
        assert_eq!(patch_core_img(&mut c, 10).unwrap(), 3);
    }

    #[test]
    fn core_img_patching_checks_its_input() {
        let mut c = core_img(60, 100);
        c[BLOCKLIST_LEN] = 7;
        assert!(patch_core_img(&mut c, 2048).is_err());
        let mut c = core_img(60, 100);
        c[BLOCKLIST_SEGMENT] = 0;
        assert!(patch_core_img(&mut c, 2048).is_err());
        let mut c = core_img(60, 100);
        c[BLOCKLIST_START - 4] = 1;
        assert!(patch_core_img(&mut c, 2048).is_err());
        assert!(patch_core_img(&mut [0u8; 600], 2048).is_err());
    }
}
