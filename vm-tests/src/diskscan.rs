//! SEC-3: scanning a guest's disk, from the host, for secret bytes, and
//! naming the file that holds each occurrence.
//!
//! The overlay is converted to raw (`qemu-img convert`), searched for each
//! secret, and every hit inside the root partition is mapped to its inode
//! and path with `debugfs` (`icheck`, `ncheck`) on a read-only loop device.
//! A hit in a free block (a stale copy) or outside the root filesystem has
//! no path and is reported as such.

use std::collections::BTreeMap;
use std::fs::File;
use std::io::Read;
use std::path::Path;
use std::process::Command;

use anyhow::{Context, Result, bail};

/// Where one occurrence of a secret lies.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Hit {
    /// Which secret (its name, never its value).
    pub secret: String,
    /// Byte offset in the raw disk.
    pub offset: u64,
    /// The file holding it, if any (`None`: free block or outside the root filesystem).
    pub path: Option<String>,
}

/// Byte offsets of every occurrence of `needle` in the file at `path`.
pub fn find_all(path: &Path, needle: &[u8]) -> Result<Vec<u64>> {
    let mut f = File::open(path).with_context(|| format!("opening {}", path.display()))?;
    let finder = memchr::memmem::Finder::new(needle);
    let mut hits = Vec::new();
    let chunk = 16 << 20;
    let keep = needle.len().saturating_sub(1);
    let mut buf = vec![0u8; chunk + keep];
    let mut carried = 0usize;
    let mut base = 0u64; // disk offset of buf[0]
    loop {
        let n = f
            .read(&mut buf[carried..])
            .with_context(|| format!("reading {}", path.display()))?;
        if n == 0 {
            break;
        }
        let len = carried + n;
        for i in finder.find_iter(&buf[..len]) {
            hits.push(base + i as u64);
        }
        let tail = keep.min(len);
        buf.copy_within(len - tail..len, 0);
        base += (len - tail) as u64;
        carried = tail;
    }
    hits.dedup();
    Ok(hits)
}

/// Start and size in bytes of partition `number` of the raw disk.
pub(crate) fn partition(raw: &Path, number: u32) -> Result<(u64, u64)> {
    let out = Command::new("sfdisk")
        .args(["-J"])
        .arg(raw)
        .output()
        .context("running sfdisk -J")?;
    if !out.status.success() {
        bail!(
            "sfdisk -J {} failed: {}",
            raw.display(),
            String::from_utf8_lossy(&out.stderr)
        );
    }
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).context("parsing sfdisk -J")?;
    let sector = v
        .pointer("/partitiontable/sectorsize")
        .and_then(|s| s.as_u64())
        .unwrap_or(512);
    let parts = v
        .pointer("/partitiontable/partitions")
        .and_then(|p| p.as_array())
        .context("no partitions")?;
    let p = parts
        .get(number as usize - 1)
        .context("no such partition")?;
    let start = p
        .get("start")
        .and_then(|s| s.as_u64())
        .context("no start")?;
    let size = p.get("size").and_then(|s| s.as_u64()).context("no size")?;
    Ok((start * sector, size * sector))
}

fn debugfs(dev: &str, request: &str) -> Result<String> {
    let out = Command::new("debugfs")
        .args(["-R", request, dev])
        .output()
        .context("running debugfs")?;
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

/// Scans the disk behind `overlay` (qcow2) for every secret; maps hits in
/// partition `root_part` to paths.
pub fn scan(
    overlay: &Path,
    secrets: &[(&str, &str)],
    root_part: u32,
    work: &Path,
) -> Result<Vec<Hit>> {
    let raw = work.join("scan.raw");
    let st = Command::new("qemu-img")
        .args(["convert", "-O", "raw"])
        .arg(overlay)
        .arg(&raw)
        .status()
        .context("running qemu-img convert")?;
    if !st.success() {
        bail!("qemu-img convert {} failed", overlay.display());
    }
    let result = scan_raw(&raw, secrets, root_part);
    let _ = std::fs::remove_file(&raw);
    result
}

fn scan_raw(raw: &Path, secrets: &[(&str, &str)], root_part: u32) -> Result<Vec<Hit>> {
    let (start, size) = partition(raw, root_part)?;
    let mut hits = Vec::new();
    for (name, value) in secrets {
        if value.is_empty() {
            continue;
        }
        for off in find_all(raw, value.as_bytes())? {
            hits.push(Hit {
                secret: name.to_string(),
                offset: off,
                path: None,
            });
        }
    }
    let inside: Vec<usize> = (0..hits.len())
        .filter(|&i| hits[i].offset >= start && hits[i].offset < start + size)
        .collect();
    if inside.is_empty() {
        return Ok(hits);
    }
    let out = Command::new("losetup")
        .args([
            "--find",
            "--show",
            "--read-only",
            "--offset",
            &start.to_string(),
            "--sizelimit",
            &size.to_string(),
        ])
        .arg(raw)
        .output()
        .context("running losetup")?;
    if !out.status.success() {
        bail!("losetup failed: {}", String::from_utf8_lossy(&out.stderr));
    }
    let dev = String::from_utf8_lossy(&out.stdout).trim().to_string();
    let mapped = map_blocks(&dev, &hits, &inside, start);
    let _ = Command::new("losetup").args(["-d", &dev]).status();
    let paths = mapped?;
    for (i, p) in paths {
        hits[i].path = p;
    }
    Ok(hits)
}

fn map_blocks(
    dev: &str,
    hits: &[Hit],
    inside: &[usize],
    start: u64,
) -> Result<Vec<(usize, Option<String>)>> {
    let stats = debugfs(dev, "stats")?;
    let bs: u64 = stats
        .lines()
        .find_map(|l| l.strip_prefix("Block size:"))
        .and_then(|v| v.trim().parse().ok())
        .context("debugfs: no block size")?;
    let blocks: Vec<u64> = inside
        .iter()
        .map(|&i| (hits[i].offset - start) / bs)
        .collect();
    let req = format!(
        "icheck {}",
        blocks
            .iter()
            .map(u64::to_string)
            .collect::<Vec<_>>()
            .join(" ")
    );
    let mut inode_of: BTreeMap<u64, u64> = BTreeMap::new();
    for l in debugfs(dev, &req)?.lines().skip(1) {
        let mut it = l.split_whitespace();
        if let (Some(b), Some(i)) = (
            it.next().and_then(|b| b.parse().ok()),
            it.next().and_then(|i| i.parse().ok()),
        ) {
            inode_of.insert(b, i);
        }
    }
    let inodes: Vec<u64> = inode_of.values().copied().collect();
    let mut path_of: BTreeMap<u64, String> = BTreeMap::new();
    if !inodes.is_empty() {
        let req = format!(
            "ncheck {}",
            inodes
                .iter()
                .map(u64::to_string)
                .collect::<Vec<_>>()
                .join(" ")
        );
        for l in debugfs(dev, &req)?.lines().skip(1) {
            let mut it = l.splitn(2, char::is_whitespace);
            if let (Some(i), Some(p)) = (it.next().and_then(|i| i.trim().parse().ok()), it.next()) {
                path_of.entry(i).or_insert_with(|| p.trim().to_string());
            }
        }
    }
    Ok(inside
        .iter()
        .zip(blocks)
        .map(|(&i, b)| {
            (
                i,
                inode_of.get(&b).and_then(|ino| path_of.get(ino).cloned()),
            )
        })
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    #[test]
    fn finds_needles_across_chunk_boundaries() {
        let mut f = tempfile::NamedTempFile::new().unwrap();
        let mut data = vec![0u8; (16 << 20) + 100];
        let needle = b"SECRET-NEEDLE-123";
        let at = [5usize, (16 << 20) - 7, (16 << 20) + 50];
        for &a in &at {
            data[a..a + needle.len()].copy_from_slice(needle);
        }
        f.write_all(&data).unwrap();
        let hits = find_all(f.path(), needle).unwrap();
        assert_eq!(hits, at.iter().map(|&a| a as u64).collect::<Vec<_>>());
    }
}
