//! A minimal reader of the zip files Go's module proxy serves: the central
//! directory (zip64 included), stored and deflated entries. Enough to hash a
//! module zip (`dirhash`) and to unpack one; no writing, no encryption.

use std::io::{Read, Seek, SeekFrom};

use anyhow::{Context, Result, bail};

/// One file of a zip.
#[derive(Debug, Clone)]
pub struct Entry {
    /// Name as stored (`tailscale.com@v1.102.5/go.mod`).
    pub name: String,
    method: u16,
    compressed: u64,
    size: u64,
    local_offset: u64,
}

/// An open zip archive.
pub struct Zip<R> {
    reader: R,
    entries: Vec<Entry>,
}

fn u16_at(b: &[u8], i: usize) -> u16 {
    u16::from_le_bytes([b[i], b[i + 1]])
}

fn u32_at(b: &[u8], i: usize) -> u32 {
    u32::from_le_bytes([b[i], b[i + 1], b[i + 2], b[i + 3]])
}

fn u64_at(b: &[u8], i: usize) -> u64 {
    let mut a = [0u8; 8];
    a.copy_from_slice(&b[i..i + 8]);
    u64::from_le_bytes(a)
}

impl<R: Read + Seek> Zip<R> {
    /// Reads the central directory of `reader`.
    pub fn new(mut reader: R) -> Result<Zip<R>> {
        let len = reader
            .seek(SeekFrom::End(0))
            .context("seeking in the zip")?;
        // The end-of-central-directory record: 22 bytes + a comment of up to 64 KiB.
        let tail_len = len.min(22 + 65_535);
        let mut tail = vec![0u8; usize::try_from(tail_len).unwrap_or(0)];
        reader.seek(SeekFrom::Start(len - tail_len))?;
        reader
            .read_exact(&mut tail)
            .context("reading the zip's end")?;
        let Some(eocd) = (0..tail.len().saturating_sub(21))
            .rev()
            .find(|&i| u32_at(&tail, i) == 0x0605_4b50)
        else {
            bail!("not a zip file (no end of central directory)");
        };
        let mut count = u64::from(u16_at(&tail, eocd + 10));
        let mut cd_size = u64::from(u32_at(&tail, eocd + 12));
        let mut cd_offset = u64::from(u32_at(&tail, eocd + 16));
        if count == 0xffff || cd_size == 0xffff_ffff || cd_offset == 0xffff_ffff {
            // zip64: its locator sits just before the classic record.
            let loc = eocd.checked_sub(20).context("zip64 locator missing")?;
            if u32_at(&tail, loc) != 0x0706_4b50 {
                bail!("zip64 locator missing");
            }
            let rec_offset = u64_at(&tail, loc + 8);
            let mut rec = [0u8; 56];
            reader.seek(SeekFrom::Start(rec_offset))?;
            reader
                .read_exact(&mut rec)
                .context("reading the zip64 record")?;
            if u32_at(&rec, 0) != 0x0606_4b50 {
                bail!("bad zip64 end of central directory");
            }
            count = u64_at(&rec, 32);
            cd_size = u64_at(&rec, 40);
            cd_offset = u64_at(&rec, 48);
        }
        let mut cd = vec![0u8; usize::try_from(cd_size).context("central directory too big")?];
        reader.seek(SeekFrom::Start(cd_offset))?;
        reader
            .read_exact(&mut cd)
            .context("reading the zip's central directory")?;
        let mut entries = Vec::new();
        let mut i = 0usize;
        for _ in 0..count {
            if i + 46 > cd.len() || u32_at(&cd, i) != 0x0201_4b50 {
                bail!("damaged central directory at entry {}", entries.len());
            }
            let method = u16_at(&cd, i + 10);
            let mut compressed = u64::from(u32_at(&cd, i + 20));
            let mut size = u64::from(u32_at(&cd, i + 24));
            let name_len = usize::from(u16_at(&cd, i + 28));
            let extra_len = usize::from(u16_at(&cd, i + 30));
            let comment_len = usize::from(u16_at(&cd, i + 32));
            let mut local_offset = u64::from(u32_at(&cd, i + 42));
            let name_end = i + 46 + name_len;
            let extra_end = name_end + extra_len;
            if extra_end + comment_len > cd.len() {
                bail!("damaged central directory at entry {}", entries.len());
            }
            let name = String::from_utf8(cd[i + 46..name_end].to_vec())
                .context("a zip entry's name is not UTF-8")?;
            // zip64 extra field: the sizes and offset that overflowed, in order.
            let mut e = name_end;
            while e + 4 <= extra_end {
                let id = u16_at(&cd, e);
                let n = usize::from(u16_at(&cd, e + 2));
                if id == 1 {
                    let mut f = e + 4;
                    for v in [&mut size, &mut compressed, &mut local_offset] {
                        if *v == 0xffff_ffff && f + 8 <= e + 4 + n {
                            *v = u64_at(&cd, f);
                            f += 8;
                        }
                    }
                }
                e += 4 + n;
            }
            entries.push(Entry {
                name,
                method,
                compressed,
                size,
                local_offset,
            });
            i = extra_end + comment_len;
        }
        Ok(Zip { reader, entries })
    }

    /// Every entry, in the archive's order.
    pub fn entries(&self) -> &[Entry] {
        &self.entries
    }

    /// The decompressed bytes of `entry`.
    pub fn read(&mut self, entry: &Entry) -> Result<Vec<u8>> {
        let mut header = [0u8; 30];
        self.reader.seek(SeekFrom::Start(entry.local_offset))?;
        self.reader
            .read_exact(&mut header)
            .with_context(|| format!("reading the header of {}", entry.name))?;
        if u32_at(&header, 0) != 0x0403_4b50 {
            bail!("{}: bad local header", entry.name);
        }
        let skip = u64::from(u16_at(&header, 26)) + u64::from(u16_at(&header, 28));
        self.reader.seek(SeekFrom::Current(
            i64::try_from(skip).context("zip header too big")?,
        ))?;
        let raw = (&mut self.reader).take(entry.compressed);
        let mut out = Vec::with_capacity(usize::try_from(entry.size).unwrap_or(0));
        match entry.method {
            0 => {
                raw.take(entry.size).read_to_end(&mut out)?;
            }
            8 => {
                flate2::read::DeflateDecoder::new(raw)
                    .take(entry.size)
                    .read_to_end(&mut out)
                    .with_context(|| format!("inflating {}", entry.name))?;
            }
            m => bail!("{}: compression method {m} is not supported", entry.name),
        }
        if out.len() as u64 != entry.size {
            bail!(
                "{}: {} bytes, the directory says {}",
                entry.name,
                out.len(),
                entry.size
            );
        }
        Ok(out)
    }
}
