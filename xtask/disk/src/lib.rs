//! Disk assembly: GPT, ext4 root from a tarball, ESP, GRUB for BIOS and UEFI.
//!
//! Every byte comes from a tool of the [`ToolsTree`] or from this module,
//! and nothing is mounted: `sfdisk` writes the GPT into a sparse file,
//! `mke2fs -d <tar> -E offset=…` the root, `mkfs.fat --offset` + mtools the
//! ESP, `grub-mkimage` the two GRUB images, and this module the boot code
//! patches `grub-bios-setup` would make. Identifiers come from the lock and
//! every timestamp from `epoch`, so the same inputs give the same image.

//!
//! Its own crate (split out of `builder`, issue #20), with the tools tree
//! it runs ([`tools`]). It must not read the spec, the lock or the store,
//! nor touch the network: `builder::build` hands it a tools tree, the
//! root as a tar stream, the disk identifiers and the epoch.

#![warn(missing_docs)]

mod grub;
mod layout;
pub mod tools;

use std::fs::{File, OpenOptions};
use std::io::{Read, Seek, SeekFrom, Write};
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant, SystemTime};

use anyhow::{Context, Result, bail};
use image_spec::lock::DiskIds;

use crate::tools::ToolsTree;
use hostutil::sha256_file;

pub use grub::{BIOS_MODULES, EFI_MODULES, early_config, patch_boot_img, patch_core_img};
pub use layout::{
    BIOS_BOOT_TYPE, ESP_MIB, ESP_TYPE, Extent, Layout, MIB, ROOT_X86_64_TYPE, SECTOR,
    sfdisk_script, validate_ids,
};

/// ext4 features of the root, explicit so that a different `mke2fs.conf`
/// cannot change them. This is trixie's default ext4 set; GRUB 2.12 reads it
/// (it ignores `metadata_csum_seed`; `orphan_file` is read-only compatible).
pub const EXT4_FEATURES: &str = "none,has_journal,ext_attr,resize_inode,dir_index,filetype,\
     extent,64bit,flex_bg,sparse_super,large_file,huge_file,dir_nlink,extra_isize,\
     metadata_csum,metadata_csum_seed,orphan_file";

/// What [`assemble`] made.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DiskReport {
    /// The raw image.
    pub path: PathBuf,
    /// Its sha256 (hex).
    pub sha256: String,
    /// Apparent size in bytes.
    pub size_bytes: u64,
    /// Bytes actually allocated on the host filesystem (the image is sparse).
    pub allocated_bytes: u64,
    /// Where the partitions are.
    pub layout: Layout,
    /// Size of GRUB's BIOS `core.img` in sectors (in the BIOS boot partition).
    pub core_img_sectors: u64,
    /// Size of `EFI/BOOT/BOOTX64.EFI` in bytes.
    pub efi_image_bytes: u64,
    /// Time spent.
    pub elapsed: Duration,
}

/// Where the root filesystem's contents come from.
pub enum RootSource<'a> {
    /// A tarball on disk (`mke2fs -d <tar>`).
    Tar(&'a Path),
    /// A function that writes the tarball; streamed into `mke2fs -d -`
    /// while it runs, so no multi-GB tarball is written and read back.
    Stream(&'a mut dyn FnMut(&mut dyn Write) -> Result<()>),
}

/// Builds the raw GPT disk image `out` (replaced atomically) of `size_mib`
/// MiB from the root filesystem tarball `root_tar`, with the identifiers
/// `ids` and all timestamps at `epoch`.
pub fn assemble(
    tools: &ToolsTree,
    root_tar: &Path,
    ids: &DiskIds,
    size_mib: u64,
    epoch: u64,
    out: &Path,
) -> Result<DiskReport> {
    let root_tar = std::path::absolute(root_tar)
        .with_context(|| format!("resolving {}", root_tar.display()))?;
    if !root_tar.is_file() {
        bail!("root tarball {} does not exist", root_tar.display());
    }
    assemble_from(tools, RootSource::Tar(&root_tar), ids, size_mib, epoch, out)
}

/// [`assemble`] with the root filesystem's contents from `root`. The same
/// tar stream gives the same bytes whether it comes from a file or a pipe.
pub fn assemble_from(
    tools: &ToolsTree,
    root: RootSource<'_>,
    ids: &DiskIds,
    size_mib: u64,
    epoch: u64,
    out: &Path,
) -> Result<DiskReport> {
    let started = Instant::now();
    validate_ids(ids)?;
    let layout = Layout::new(size_mib)?;
    let parent = match out.parent() {
        Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
        _ => PathBuf::from("."),
    };
    std::fs::create_dir_all(&parent).with_context(|| format!("creating {}", parent.display()))?;
    let scratch = tempfile::Builder::new()
        .prefix(".disk-")
        .tempdir_in(&parent)
        .with_context(|| format!("creating a scratch directory in {}", parent.display()))?;
    let img = scratch.path().join("disk.raw");
    let step = |what: &str| eprintln!("disk: {what} ({:.1} s)", started.elapsed().as_secs_f64());

    // A sparse file of the final size.
    File::create(&img)
        .and_then(|f| f.set_len(layout.disk_bytes()))
        .with_context(|| format!("creating {}", img.display()))?;

    step("GPT");
    tools
        .tool("sfdisk")
        .args([
            "--no-reread",
            "--no-tell-kernel",
            "--wipe=never",
            "--wipe-partitions=never",
        ])
        .arg(&img)
        .run_with_stdin(Some(sfdisk_script(&layout, ids).as_bytes()))?;

    step("root filesystem");
    make_root(tools, &img, &layout, ids, root, epoch)?;

    step("GRUB images");
    let early = scratch.path().join("early.cfg");
    std::fs::write(&early, early_config(&ids.root_fs_uuid))
        .with_context(|| format!("writing {}", early.display()))?;
    let efi = scratch.path().join("BOOTX64.EFI");
    grub_mkimage(tools, "x86_64-efi", &early, &efi, EFI_MODULES, epoch)?;
    let core = scratch.path().join("core.img");
    grub_mkimage(tools, "i386-pc", &early, &core, BIOS_MODULES, epoch)?;

    step("ESP");
    make_esp(tools, &img, &layout, ids, &efi, epoch)?;

    step("BIOS boot code");
    let core_img_sectors = install_bios_boot(tools, &img, &layout, &core)?;

    let efi_image_bytes = std::fs::metadata(&efi)?.len();
    step("syncing");
    File::open(&img)
        .and_then(|f| f.sync_all())
        .with_context(|| format!("syncing {}", img.display()))?;
    step("hashing");
    let sha256 = sha256_file(&img)?;
    // The caller's umask must not show in the result.
    std::fs::set_permissions(&img, std::fs::Permissions::from_mode(0o644))
        .with_context(|| format!("setting the mode of {}", img.display()))?;
    let meta = std::fs::metadata(&img)?;
    std::fs::rename(&img, out)
        .with_context(|| format!("moving {} to {}", img.display(), out.display()))?;
    let report = DiskReport {
        path: out.to_path_buf(),
        sha256,
        size_bytes: meta.len(),
        allocated_bytes: meta.blocks() * 512,
        layout,
        core_img_sectors,
        efi_image_bytes,
        elapsed: started.elapsed(),
    };
    eprintln!(
        "disk: {} done in {:.1} s: {} MiB, {} MiB allocated, sha256 {}",
        out.display(),
        report.elapsed.as_secs_f64(),
        report.size_bytes / MIB,
        report.allocated_bytes / MIB,
        report.sha256
    );
    Ok(report)
}

/// The ext4 root, written by `mke2fs` straight from the tarball (a file or
/// a stream on its standard input) into the third partition.
fn make_root(
    tools: &ToolsTree,
    img: &Path,
    layout: &Layout,
    ids: &DiskIds,
    root: RootSource<'_>,
    epoch: u64,
) -> Result<()> {
    let extended = format!(
        "hash_seed={},offset={},lazy_itable_init=0,lazy_journal_init=0,nodiscard",
        ids.root_hash_seed,
        layout.root.offset_bytes()
    );
    let source = match &root {
        RootSource::Tar(path) => path.as_os_str().to_owned(),
        RootSource::Stream(_) => "-".into(),
    };
    let mke2fs = tools
        .tool("mke2fs")
        .epoch(epoch)
        .env("E2FSPROGS_FAKE_TIME", epoch.to_string())
        .args([
            "-q", "-F", "-t", "ext4", "-b", "4096", "-I", "256", "-i", "16384", "-m", "5",
        ])
        .args(["-O", EXT4_FEATURES])
        .args(["-U", ids.root_fs_uuid.as_str(), "-L", "root"])
        .args(["-E", extended.as_str()])
        .arg("-d")
        .arg(source)
        .arg(img)
        .arg(layout.root_blocks().to_string());
    let write = match root {
        RootSource::Tar(_) => {
            mke2fs.run()?;
            return Ok(());
        }
        RootSource::Stream(write) => write,
    };
    let (reader, writer) = std::io::pipe().context("creating a pipe for mke2fs")?;
    // The default 64 KiB pipe makes both sides switch ~30,000 times per GB;
    // 1 MiB (the usual unprivileged maximum) lets each run longer. Best effort.
    let _ = rustix::pipe::fcntl_setpipe_size(&writer, 1 << 20);
    let child = mke2fs
        .expression()
        .stdin_file(reader)
        .stdout_capture()
        .stderr_capture()
        .unchecked()
        .start()
        .with_context(|| format!("starting {}", mke2fs.display()))?;
    let mut pipe = std::io::BufWriter::with_capacity(1 << 20, writer);
    let written = write(&mut pipe).and_then(|()| pipe.flush().context("writing to mke2fs"));
    // Close our end so that mke2fs sees the end of the tarball.
    drop(pipe);
    let out = child
        .wait()
        .with_context(|| format!("waiting for {}", mke2fs.display()))?;
    if !out.status.success() {
        // mke2fs's own error explains a broken pipe on our side.
        bail!(
            "{} failed ({}): {}",
            mke2fs.display(),
            out.status,
            crate::tools::tail(&String::from_utf8_lossy(&out.stderr), 20)
        );
    }
    written.context("streaming the root tarball into mke2fs")
}

/// `grub-mkimage` for `format` with the embedded configuration `early`.
fn grub_mkimage(
    tools: &ToolsTree,
    format: &str,
    early: &Path,
    out: &Path,
    modules: &[&str],
    epoch: u64,
) -> Result<()> {
    let dir = tools.path(Path::new("usr/lib/grub").join(format))?;
    tools
        .tool("grub-mkimage")
        .epoch(epoch)
        .args(["-O", format, "-p", "/boot/grub"])
        .arg("-d")
        .arg(dir)
        .arg("-c")
        .arg(early)
        .arg("-o")
        .arg(out)
        .args(modules.iter().copied())
        .run()?;
    Ok(())
}

/// The FAT32 ESP with `EFI/BOOT/BOOTX64.EFI` (the removable-media path, so
/// no NVRAM boot entry is needed).
fn make_esp(
    tools: &ToolsTree,
    img: &Path,
    layout: &Layout,
    ids: &DiskIds,
    efi: &Path,
    epoch: u64,
) -> Result<()> {
    let start = layout.esp.start.to_string();
    tools
        .tool("mkfs.fat")
        .epoch(epoch)
        .args(["-F", "32", "-S", "512", "-s", "1", "--mbr=n", "--invariant"])
        .arg("-h")
        .arg(&start)
        .arg(format!("--offset={start}"))
        .args(["-i", ids.esp_volume_id.as_str(), "-n", "ESP"])
        .arg(img)
        .arg(layout.esp_kib().to_string())
        .run()?;
    // mcopy -m keeps the source's mtime.
    File::options()
        .write(true)
        .open(efi)
        .and_then(|f| f.set_modified(SystemTime::UNIX_EPOCH + Duration::from_secs(epoch)))
        .with_context(|| format!("setting the mtime of {}", efi.display()))?;
    let mut drive = img.as_os_str().to_owned();
    drive.push(format!("@@{}", layout.esp.offset_bytes()));
    tools
        .tool("mmd")
        .epoch(epoch)
        .arg("-i")
        .arg(&drive)
        .args(["::/EFI", "::/EFI/BOOT"])
        .run()?;
    tools
        .tool("mcopy")
        .epoch(epoch)
        .args(["-m", "-i"])
        .arg(&drive)
        .arg(efi)
        .arg("::/EFI/BOOT/BOOTX64.EFI")
        .run()?;
    Ok(())
}

/// Writes core.img into the BIOS boot partition and boot.img into the MBR,
/// patched as `grub-bios-setup` would. Returns core.img's size in sectors.
fn install_bios_boot(tools: &ToolsTree, img: &Path, layout: &Layout, core: &Path) -> Result<u64> {
    let mut core_img =
        std::fs::read(core).with_context(|| format!("reading {}", core.display()))?;
    let sectors = patch_core_img(&mut core_img, layout.bios_boot.start)?;
    if sectors > layout.bios_boot.sectors {
        bail!(
            "core.img needs {sectors} sectors, the BIOS boot partition has {}",
            layout.bios_boot.sectors
        );
    }
    let boot_path = tools.path("usr/lib/grub/i386-pc/boot.img")?;
    let boot_img =
        std::fs::read(&boot_path).with_context(|| format!("reading {}", boot_path.display()))?;
    let mut f = OpenOptions::new()
        .read(true)
        .write(true)
        .open(img)
        .with_context(|| format!("opening {}", img.display()))?;
    let mut mbr = [0u8; 512];
    f.read_exact(&mut mbr).context("reading the MBR")?;
    let mbr = patch_boot_img(&boot_img, &mbr, layout.bios_boot.start)?;
    f.seek(SeekFrom::Start(0))?;
    f.write_all(&mbr).context("writing the MBR")?;
    f.seek(SeekFrom::Start(layout.bios_boot.offset_bytes()))?;
    f.write_all(&core_img).context("writing core.img")?;
    f.sync_all()?;
    Ok(sectors)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// End to end, with real tools: `DISK_TEST_TOOLS` (a tools tree) and
    /// `DISK_TEST_ROOT_TAR` (a root tarball); builds twice into
    /// `DISK_TEST_OUT` (default: a temporary directory) and compares.
    /// `cargo test -p builder disk::tests::assemble_twice -- --ignored --nocapture`
    #[test]
    #[ignore = "needs DISK_TEST_TOOLS=<a tools tree> and DISK_TEST_ROOT_TAR=<a root tarball>; run with --ignored"]
    fn assemble_twice() {
        let tools = std::env::var_os("DISK_TEST_TOOLS")
            .expect("DISK_TEST_TOOLS is not set: set it to a tools tree to run assemble_twice");
        let tools = ToolsTree::open(Path::new(&tools)).unwrap();
        let tar = std::env::var_os("DISK_TEST_ROOT_TAR")
            .map(PathBuf::from)
            .expect(
                "DISK_TEST_ROOT_TAR is not set: set it to a root tarball to run assemble_twice",
            );
        let keep = std::env::var("DISK_TEST_OUT").ok().map(PathBuf::from);
        let tmp = tempfile::tempdir().unwrap();
        let base = keep.unwrap_or_else(|| tmp.path().to_path_buf());
        let ids = DiskIds::derive("disk-test");
        let epoch = 1_764_000_000;
        let a = assemble(&tools, &tar, &ids, 4096, epoch, &base.join("a/disk.raw")).unwrap();
        std::thread::sleep(Duration::from_secs(2));
        let b = assemble(&tools, &tar, &ids, 4096, epoch, &base.join("b/x/disk.raw")).unwrap();
        eprintln!("{a:#?}\n{b:#?}");
        assert_eq!(a.sha256, b.sha256);
    }
}
