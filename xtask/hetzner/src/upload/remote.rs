//! The commands run in the rescue system (by `bash`, under `set -euo
//! pipefail`), and what their output means.

use hostutil::shell_quote;

/// `bash -c '<script>'` as one remote command line.
fn bash(script: &str) -> String {
    format!(
        "bash -c {}",
        shell_quote(&format!("set -euo pipefail\n{script}"))
    )
}

/// The tools the rescue system must have for the check, the write and the read-back.
const TOOLS: [&str; 7] = [
    "zstd",
    "dd",
    "sha256sum",
    "hostname",
    "findmnt",
    "stat",
    "blockdev",
];

/// Check that the tools exist, then print the facts [`Facts::parse`]
/// reads: the host name, then the mount table (`SOURCE TARGET FSTYPE`, raw:
/// spaces escaped as `\x20`). One SSH session for both.
pub(crate) fn facts() -> String {
    bash(&format!(
        "for t in {}; do\n  \
         command -v \"$t\" >/dev/null || {{ echo \"$t is missing on the rescue system\" >&2; exit 127; }}\n\
         done\n\
         echo \"host $(hostname)\"\n\
         findmnt -rn -o SOURCE,TARGET,FSTYPE",
        TOOLS.join(" ")
    ))
}

/// What the logged-in system says about itself.
#[derive(Debug, PartialEq, Eq)]
pub(crate) struct Facts {
    /// `hostname`.
    pub host: String,
    /// `(source, target, fstype)` of every mount.
    pub mounts: Vec<(String, String, String)>,
}

/// The host name Hetzner's rescue system has.
pub(crate) const RESCUE_HOST: &str = "rescue";

impl Facts {
    /// Read the output of [`facts`].
    pub(crate) fn parse(out: &str) -> Facts {
        let mut host = String::new();
        let mut mounts = Vec::new();
        for line in out.lines() {
            if let Some(h) = line.strip_prefix("host ") {
                host = h.trim().to_string();
                continue;
            }
            let f: Vec<&str> = line.split_whitespace().collect();
            if let [source, target, fstype] = f.as_slice() {
                mounts.push((
                    source.replace("\\x20", " "),
                    target.replace("\\x20", " "),
                    fstype.to_string(),
                ));
            }
        }
        Facts { host, mounts }
    }

    /// Refuse anything but a rescue system with `device` free to write:
    /// the host name is `rescue`, `/` is not on a disk (a RAM filesystem or
    /// an overlay of one), and neither the device nor a partition of it is
    /// mounted. The reason names what was seen and what to do.
    pub(crate) fn check_rescue(&self, device: &str) -> Result<(), String> {
        let again = "the server did not boot into the rescue system; nothing was written. \
                     Run the upload again (a new server is made); if it persists, check the \
                     server in the Hetzner console (Rescue tab)";
        if self.host != RESCUE_HOST {
            return Err(format!(
                "the host name is `{}`, not `{RESCUE_HOST}`: {again}",
                self.host
            ));
        }
        let root = self.mounts.iter().rev().find(|(_, t, _)| t == "/");
        match root {
            None => return Err(format!("no mount on `/` in the mount table: {again}")),
            Some((source, _, fstype)) if source.starts_with("/dev/") => {
                return Err(format!(
                    "`/` is {source} ({fstype}), a disk, not a RAM filesystem: {again}"
                ));
            }
            Some(_) => {}
        }
        if let Some((source, target, _)) =
            self.mounts.iter().find(|(s, _, _)| is_same_disk(s, device))
        {
            return Err(format!(
                "{source} is mounted on {target}; refusing to write {device}: {again}"
            ));
        }
        Ok(())
    }
}

/// `source` is `device` or one of its partitions (`/dev/sda1`, `/dev/nvme0n1p1`).
fn is_same_disk(source: &str, device: &str) -> bool {
    let Some(rest) = source.strip_prefix(device) else {
        return false;
    };
    let rest = rest.strip_prefix('p').unwrap_or(rest);
    rest.bytes().all(|b| b.is_ascii_digit())
}

/// How a write treats the image's zero blocks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Zeros {
    /// Discard the device first; if that works, skip zero blocks
    /// (`conv=sparse`), else write them.
    DiscardThenSparse,
    /// Write every byte (the retry after a mismatch).
    WriteAll,
}

/// The marker line the write prints when the discard failed.
pub(crate) const NO_DISCARD: &str = "blkdiscard failed; writing every byte";

/// Decompress stdin onto `target` and `fsync` it (dd's `conv=fsync`
/// reports a failed flush). Zero blocks are skipped only after a discard
/// that worked; a failed `blkdiscard` means every byte is written.
pub(crate) fn write(target: &str, zeros: Zeros) -> String {
    let discard = match zeros {
        Zeros::DiscardThenSparse => format!(
            "if blkdiscard \"$dev\" 2>/dev/null; then conv=fsync,notrunc,sparse; else echo {} >&2; fi\n",
            shell_quote(NO_DISCARD)
        ),
        Zeros::WriteAll => String::new(),
    };
    bash(&format!(
        "dev={}\n\
         conv=fsync,notrunc\n\
         {discard}\
         zstd -d -q | dd of=\"$dev\" bs=4M iflag=fullblock conv=\"$conv\" status=none",
        shell_quote(target)
    ))
}

/// The sha256 of exactly the first `len` bytes of the device, read with
/// `O_DIRECT` (from the disk, not the page cache the write filled); when
/// the device is shorter than `len`, `short <size>` instead.
pub(crate) fn hash(target: &str, len: u64) -> String {
    bash(&format!(
        "dev={}\n\
         len={len}\n\
         if [ -b \"$dev\" ]; then size=$(blockdev --getsize64 \"$dev\"); else size=$(stat -c %s \"$dev\"); fi\n\
         if [ \"$size\" -lt \"$len\" ]; then echo \"short $size\"; exit 0; fi\n\
         dd if=\"$dev\" bs=4M iflag=direct,count_bytes count=\"$len\" status=none | sha256sum",
        shell_quote(target)
    ))
}

/// What [`hash`] found: the device's sha256, or (a mismatch too) a
/// description of a device shorter than the image. `None`: neither.
pub(crate) fn read_back(out: &str) -> Option<String> {
    match out.trim().strip_prefix("short ") {
        Some(size) => Some(format!("nothing: the device holds only {size} bytes")),
        None => parse_hash(out),
    }
}

/// The hash out of `sha256sum`'s output.
pub(crate) fn parse_hash(out: &str) -> Option<String> {
    let h = out.split_whitespace().next()?.to_ascii_lowercase();
    (h.len() == 64 && h.bytes().all(|b| b.is_ascii_hexdigit())).then_some(h)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scripts_quote_the_target() {
        let w = write("/dev/sda", Zeros::DiscardThenSparse);
        assert!(w.starts_with("bash -c 'set -euo pipefail\n"), "{w}");
        assert!(w.contains("dev='\\''/dev/sda'\\''"), "{w}");
        assert!(w.contains("dd of=\"$dev\" bs=4M"), "{w}");
        assert!(w.contains("then conv=fsync,notrunc,sparse; else"), "{w}");
        assert!(!write("/dev/sda", Zeros::WriteAll).contains("sparse"));
        assert!(hash("/dev/sda", 4096).contains("iflag=direct,count_bytes count=\"$len\""));
        assert_eq!(
            parse_hash(&format!("{}  -\n", "ab".repeat(32))),
            Some("ab".repeat(32))
        );
        assert_eq!(parse_hash("nope"), None);
        assert_eq!(
            read_back("short 512\n").as_deref(),
            Some("nothing: the device holds only 512 bytes")
        );
    }

    fn facts(host: &str, mounts: &str) -> Facts {
        Facts::parse(&format!("host {host}\n{mounts}"))
    }

    #[test]
    fn only_a_rescue_system_with_a_free_disk_passes() {
        let rescue = "tmpfs / tmpfs\nproc /proc proc\n";
        assert_eq!(facts("rescue", rescue).check_rescue("/dev/sda"), Ok(()));
        let overlay = "overlay / overlay\n";
        assert_eq!(facts("rescue", overlay).check_rescue("/dev/sda"), Ok(()));
        let err = facts("openclaw-upload-1", "/dev/sda1 / ext4\n")
            .check_rescue("/dev/sda")
            .unwrap_err();
        assert!(err.contains("host name is `openclaw-upload-1`"), "{err}");
        let err = facts("rescue", "/dev/sda1 / ext4\n")
            .check_rescue("/dev/sda")
            .unwrap_err();
        assert!(err.contains("`/` is /dev/sda1 (ext4), a disk"), "{err}");
        let err = facts("rescue", "tmpfs / tmpfs\n/dev/sda15 /mnt vfat\n")
            .check_rescue("/dev/sda")
            .unwrap_err();
        assert!(err.contains("/dev/sda15 is mounted on /mnt"), "{err}");
        let nvme = "tmpfs / tmpfs\n/dev/nvme0n1p2 /boot ext4\n";
        assert!(facts("rescue", nvme).check_rescue("/dev/nvme0n1").is_err());
        let other = "tmpfs / tmpfs\n/dev/sdb1 /mnt ext4\n";
        assert_eq!(facts("rescue", other).check_rescue("/dev/sda"), Ok(()));
        assert!(facts("rescue", "").check_rescue("/dev/sda").is_err());
    }
}
