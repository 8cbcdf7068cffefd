//! SEC-1, SEC-3: scanning a disk, from the host, for secret bytes, and
//! naming the file that holds each occurrence.
//!
//! SEC-3 converts the guest's overlay to raw (`qemu-img convert`) and
//! searches it for each injected secret; SEC-1 searches the raw image as
//! built, before any boot, for every secret *shape* the appliance handles
//! ([`Pattern`]) and the run's own secrets. Every hit inside the root
//! partition is mapped to its inode and path with `debugfs` (`icheck`,
//! `ncheck`, read-only, on the partition's byte offset in the file). A hit
//! in a free block (a stale copy) or outside the root filesystem has no
//! path and is reported as such.

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
    let patterns: Vec<Pattern<'_>> = secrets
        .iter()
        .filter(|(_, value)| !value.is_empty())
        .map(|(name, value)| Pattern::literal(name, value.as_bytes()))
        .collect();
    find_and_name(raw, &patterns, root_part)
}

/// Every hit of `patterns` in the raw disk `raw` ([`scan_patterns`]), named
/// by its pattern and, inside partition `root_part`, by its file.
pub fn find_and_name(raw: &Path, patterns: &[Pattern<'_>], root_part: u32) -> Result<Vec<Hit>> {
    let hits = scan_patterns(raw, patterns)?
        .into_iter()
        .map(|(p, offset)| Hit {
            secret: patterns[p].name.to_string(),
            offset,
            path: None,
        })
        .collect();
    name_hits(raw, root_part, hits)
}

/// Fills in the path of every hit of `hits` inside partition `root_part`
/// of the raw disk `raw` (read-only: `debugfs` on the partition's offset).
fn name_hits(raw: &Path, root_part: u32, mut hits: Vec<Hit>) -> Result<Vec<Hit>> {
    let (start, size) = partition(raw, root_part)?;
    let inside: Vec<usize> = (0..hits.len())
        .filter(|&i| hits[i].offset >= start && hits[i].offset < start + size)
        .collect();
    if inside.is_empty() {
        return Ok(hits);
    }
    let dev = format!("{}?offset={start}", raw.display());
    for (i, p) in map_blocks(&dev, &hits, &inside, start)? {
        hits[i].path = p;
    }
    Ok(hits)
}

/// Bytes a [`Pattern`]'s shape may look at before its anchor.
pub const BEFORE: usize = 64;
/// Bytes a [`Pattern`]'s shape may look at after its anchor's start.
pub const AFTER: usize = 192;

/// What a scan looks for: an anchor (bytes every match contains) and,
/// for a shape, a test of the bytes around it.
#[derive(Debug, Clone)]
pub struct Pattern<'a> {
    /// Its name in the report (never a secret's value).
    pub name: &'a str,
    /// The bytes searched for.
    pub anchor: &'a [u8],
    /// `None`: every occurrence of the anchor is a hit (a literal secret).
    /// `Some(f)`: `f(buf, i)` says whether the anchor at `buf[i..]` is a hit;
    /// `buf` holds up to [`BEFORE`] bytes before `i` and [`AFTER`] from it
    /// (fewer only at the start and end of the file).
    pub shape: Option<fn(&[u8], usize) -> bool>,
}

impl<'a> Pattern<'a> {
    /// Every occurrence of `value`, named `name`.
    pub fn literal(name: &'a str, value: &'a [u8]) -> Pattern<'a> {
        Pattern {
            name,
            anchor: value,
            shape: None,
        }
    }
}

/// Every hit of `patterns` in the file at `path`, read once in chunks:
/// (index in `patterns`, byte offset of the anchor), in file order per chunk.
pub fn scan_patterns(path: &Path, patterns: &[Pattern<'_>]) -> Result<Vec<(usize, u64)>> {
    let mut f = File::open(path).with_context(|| format!("opening {}", path.display()))?;
    let finders: Vec<memchr::memmem::Finder<'_>> = patterns
        .iter()
        .map(|p| memchr::memmem::Finder::new(p.anchor))
        .collect();
    let longest = patterns.iter().map(|p| p.anchor.len()).max().unwrap_or(0);
    // An anchor starting before `len - keep` has its whole context in the
    // buffer; later ones wait for the next chunk.
    let keep = longest.max(AFTER);
    let chunk = 16 << 20;
    let mut buf = vec![0u8; chunk + keep + BEFORE];
    let mut hits = Vec::new();
    let mut len = 0usize;
    let mut base = 0u64; // file offset of buf[0]
    let mut next = 0u64; // first file offset not yet searched
    loop {
        let n = f
            .read(&mut buf[len..])
            .with_context(|| format!("reading {}", path.display()))?;
        len += n;
        let eof = n == 0;
        if !eof && len < buf.len() {
            continue;
        }
        let limit = if eof { len } else { len - keep };
        for (p, finder) in finders.iter().enumerate() {
            for i in finder.find_iter(&buf[..len]) {
                let at = base + i as u64;
                if at < next || i >= limit {
                    continue;
                }
                let lo = i.saturating_sub(BEFORE);
                let hi = (i + AFTER.max(patterns[p].anchor.len())).min(len);
                if patterns[p]
                    .shape
                    .is_none_or(|shape| shape(&buf[lo..hi], i - lo))
                {
                    hits.push((p, at));
                }
            }
        }
        if eof {
            break;
        }
        next = base + limit as u64;
        let carry_from = limit.saturating_sub(BEFORE);
        buf.copy_within(carry_from..len, 0);
        len -= carry_from;
        base += carry_from as u64;
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
        let hits: Vec<u64> = scan_patterns(f.path(), &[Pattern::literal("n", needle)])
            .unwrap()
            .into_iter()
            .map(|(_, o)| o)
            .collect();
        assert_eq!(hits, at.iter().map(|&a| a as u64).collect::<Vec<_>>());
    }

    /// A shape sees its context across a chunk boundary, and each
    /// occurrence is reported once.
    #[test]
    fn shapes_see_their_context_across_chunk_boundaries() {
        fn digits_after(buf: &[u8], i: usize) -> bool {
            buf[i + 1..].iter().take(5).all(u8::is_ascii_digit)
        }
        let mut f = tempfile::NamedTempFile::new().unwrap();
        let mut data = vec![b'x'; (32 << 20) + 100];
        let at = [10usize, (16 << 20) - 1, (16 << 20) - 200, (32 << 20) + 90];
        for &a in &at {
            data[a] = b'#';
            data[a + 1..a + 6].copy_from_slice(b"12345");
        }
        // An anchor without its shape is not a hit.
        data[1000] = b'#';
        f.write_all(&data).unwrap();
        let shape = Pattern {
            name: "hash-digits",
            anchor: b"#",
            shape: Some(digits_after),
        };
        let mut hits: Vec<u64> = scan_patterns(f.path(), &[shape])
            .unwrap()
            .into_iter()
            .map(|(_, o)| o)
            .collect();
        hits.sort_unstable();
        let mut want: Vec<u64> = at.iter().map(|&a| a as u64).collect();
        want.sort_unstable();
        assert_eq!(hits, want);
    }
}
