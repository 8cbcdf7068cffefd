//! Reading a raw disk image's root filesystem from the host, without
//! booting or mounting it: `debugfs` (read-only) on the partition, addressed
//! by its byte offset in the image (`IMAGE?offset=N`). SEC-1 reads the
//! image as shipped this way, where a booted machine could not tell shipped
//! files from those its boot made.

use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{Context, Result, bail};

/// The root filesystem's partition number in the image (ESP, BIOS boot, root).
pub const ROOT_PARTITION: u32 = 3;

/// The root filesystem of a raw image, opened read-only.
#[derive(Debug, Clone)]
pub struct ImageFs {
    /// `debugfs`'s device argument: the image with the partition's offset.
    device: String,
}

impl ImageFs {
    /// Opens partition `part` of the raw image `raw`.
    pub fn open(raw: &Path, part: u32) -> Result<ImageFs> {
        let (start, _) = crate::diskscan::partition(raw, part)?;
        let device = format!("{}?offset={start}", raw.display());
        let fs = ImageFs { device };
        let stats = fs.request("stats")?;
        if !stats.contains("Block size:") {
            bail!(
                "partition {part} of {} is not an ext filesystem debugfs can read",
                raw.display()
            );
        }
        Ok(fs)
    }

    /// Runs one `debugfs` request; its standard output.
    fn request(&self, request: &str) -> Result<String> {
        let out = Command::new("debugfs")
            .args(["-R", request, &self.device])
            .output()
            .context("running debugfs")?;
        if !out.status.success() {
            bail!(
                "debugfs -R {request:?} {} failed: {}",
                self.device,
                String::from_utf8_lossy(&out.stderr)
            );
        }
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    }

    /// Whether `path` exists (any type).
    pub fn exists(&self, path: &str) -> Result<bool> {
        Ok(self
            .request(&format!("stat \"{path}\""))?
            .contains("Inode:"))
    }

    /// The contents of the regular file `path`; `None` when absent.
    pub fn read(&self, path: &str) -> Result<Option<Vec<u8>>> {
        if !self.exists(path)? {
            return Ok(None);
        }
        let out = Command::new("debugfs")
            .args(["-R", &format!("cat \"{path}\""), &self.device])
            .output()
            .context("running debugfs")?;
        Ok(Some(out.stdout))
    }

    /// The entries of directory `dir` (without `.` and `..`): name and
    /// whether it is a directory; empty when absent.
    pub fn list(&self, dir: &str) -> Result<Vec<(String, bool)>> {
        // `ls -p`: one `/inode/mode/uid/gid/name/size/` line per entry,
        // the mode in octal (040000: a directory).
        Ok(self
            .request(&format!("ls -p \"{dir}\""))?
            .lines()
            .filter_map(|l| {
                let fields: Vec<&str> = l.split('/').collect();
                let mode = u32::from_str_radix(fields.get(2)?, 8).ok()?;
                let name = fields.get(5)?.to_string();
                Some((name, mode & 0o170000 == 0o040000))
            })
            .filter(|(n, _)| !n.is_empty() && n != "." && n != "..")
            .collect())
    }

    /// Copies the entry at `path` (a directory, recursively, or a file)
    /// into the host directory `dest`, which must exist, as
    /// `dest/<basename of path>`; returns that path.
    pub fn copy_out(&self, path: &str, is_dir: bool, dest: &Path) -> Result<PathBuf> {
        let name = path.rsplit('/').next().unwrap_or(path);
        let target = dest.join(name);
        if is_dir {
            self.request(&format!("rdump \"{path}\" \"{}\"", dest.display()))?;
        } else {
            self.request(&format!("dump \"{path}\" \"{}\"", target.display()))?;
        }
        Ok(target)
    }
}
