//! Byte ranges where two files (or two byte streams) differ.

use std::fs::File;
use std::io::{self, BufReader, Read};
use std::path::Path;

use anyhow::{Context, Result};

/// Differences closer than this many bytes are reported as one range.
pub const MERGE_GAP: u64 = 16;

/// A half-open byte range `[start, end)`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct ByteRange {
    /// First byte.
    pub start: u64,
    /// One past the last byte.
    pub end: u64,
}

impl ByteRange {
    /// Length in bytes.
    pub fn len(&self) -> u64 {
        self.end - self.start
    }

    /// Whether the range is empty.
    pub fn is_empty(&self) -> bool {
        self.end <= self.start
    }

    /// The part of `self` inside `[start, end)`, if any.
    pub fn clip(&self, start: u64, end: u64) -> Option<ByteRange> {
        let r = ByteRange {
            start: self.start.max(start),
            end: self.end.min(end),
        };
        (!r.is_empty()).then_some(r)
    }
}

/// Where two byte streams differ.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ByteDiff {
    /// The differing ranges (at most the `max_ranges` asked for).
    pub ranges: Vec<ByteRange>,
    /// Whether more ranges differ than were kept.
    pub truncated: bool,
    /// Total number of differing bytes (all of them, kept or not).
    pub differing_bytes: u64,
    /// Length of stream A.
    pub len_a: u64,
    /// Length of stream B.
    pub len_b: u64,
}

/// Compares two files byte by byte; see [`diff_readers`].
pub fn diff_files(a: &Path, b: &Path, max_ranges: usize) -> Result<ByteDiff> {
    let open = |p: &Path| {
        File::open(p)
            .map(|f| BufReader::with_capacity(1 << 20, f))
            .with_context(|| format!("opening {}", p.display()))
    };
    diff_readers(open(a)?, open(b)?, max_ranges)
        .with_context(|| format!("comparing {} with {}", a.display(), b.display()))
}

/// Compares two streams byte by byte, keeping at most `max_ranges` ranges
/// (ranges less than [`MERGE_GAP`] apart are merged). A length difference
/// counts as a differing range at the end.
pub fn diff_readers<A: Read, B: Read>(
    mut a: A,
    mut b: B,
    max_ranges: usize,
) -> io::Result<ByteDiff> {
    const CHUNK: usize = 1 << 20;
    let mut ba = vec![0u8; CHUNK];
    let mut bb = vec![0u8; CHUNK];
    let mut out = ByteDiff::default();
    let mut open: Option<ByteRange> = None;
    let mut pos = 0u64;
    loop {
        let na = fill(&mut a, &mut ba)?;
        let nb = fill(&mut b, &mut bb)?;
        out.len_a += na as u64;
        out.len_b += nb as u64;
        let n = na.min(nb);
        if ba[..n] != bb[..n] {
            for i in 0..n {
                if ba[i] != bb[i] {
                    note(&mut out, &mut open, pos + i as u64, 1, max_ranges);
                }
            }
        }
        if na != nb {
            let extra = (na.max(nb) - n) as u64;
            note(&mut out, &mut open, pos + n as u64, extra, max_ranges);
            // Drain the longer stream to learn its length.
            let (rest, buf) = if na > nb {
                (&mut a as &mut dyn Read, &mut ba)
            } else {
                (&mut b as &mut dyn Read, &mut bb)
            };
            let start = pos + na.max(nb) as u64;
            let mut tail = 0u64;
            loop {
                let k = fill(rest, buf)?;
                if k == 0 {
                    break;
                }
                tail += k as u64;
            }
            if tail > 0 {
                note(&mut out, &mut open, start, tail, max_ranges);
                if na > nb {
                    out.len_a += tail;
                } else {
                    out.len_b += tail;
                }
            }
            break;
        }
        if na == 0 {
            break;
        }
        pos += n as u64;
    }
    if let Some(r) = open.take() {
        push(&mut out, r, max_ranges);
    }
    Ok(out)
}

/// Records `len` differing bytes at `at`, merging with the open range.
fn note(out: &mut ByteDiff, open: &mut Option<ByteRange>, at: u64, len: u64, max: usize) {
    out.differing_bytes += len;
    match open {
        Some(r) if at <= r.end + MERGE_GAP => r.end = r.end.max(at + len),
        _ => {
            if let Some(r) = open.take() {
                push(out, r, max);
            }
            *open = Some(ByteRange {
                start: at,
                end: at + len,
            });
        }
    }
}

fn push(out: &mut ByteDiff, r: ByteRange, max: usize) {
    if out.ranges.len() < max {
        out.ranges.push(r);
    } else {
        out.truncated = true;
    }
}

/// Reads until `buf` is full or the stream ends; returns the bytes read.
fn fill(r: &mut dyn Read, buf: &mut [u8]) -> io::Result<usize> {
    let mut n = 0;
    while n < buf.len() {
        match r.read(&mut buf[n..]) {
            Ok(0) => break,
            Ok(k) => n += k,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(n)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check(a: &[u8], b: &[u8], want: &[(u64, u64)], bytes: u64) {
        let d = diff_readers(a, b, 100).unwrap();
        let got: Vec<(u64, u64)> = d.ranges.iter().map(|r| (r.start, r.end)).collect();
        assert_eq!(got, want);
        assert_eq!(d.differing_bytes, bytes);
        assert_eq!((d.len_a, d.len_b), (a.len() as u64, b.len() as u64));
    }

    #[test]
    fn equal_streams() {
        check(b"same bytes", b"same bytes", &[], 0);
        check(b"", b"", &[], 0);
    }

    #[test]
    fn near_differences_merge_far_ones_do_not() {
        let a = vec![0u8; 200];
        let mut b = a.clone();
        b[10] = 1;
        b[20] = 1; // 9 bytes after the first: merged
        b[100] = 1; // far: a new range
        check(&a, &b, &[(10, 21), (100, 101)], 3);
    }

    #[test]
    fn length_differences_are_a_range_at_the_end() {
        check(b"abc", b"abcdef", &[(3, 6)], 3);
        check(b"abcdef", b"abX", &[(2, 6)], 4);
    }

    #[test]
    fn across_chunk_boundaries() {
        let a = vec![7u8; (1 << 20) + 10];
        let mut b = a.clone();
        b[(1 << 20) - 1] = 0;
        b[1 << 20] = 0;
        check(&a, &b, &[((1 << 20) - 1, (1 << 20) + 1)], 2);
    }

    #[test]
    fn ranges_are_capped_but_bytes_counted() {
        let a = vec![0u8; 1000];
        let mut b = a.clone();
        for i in 0..10 {
            b[i * 100] = 1;
        }
        let d = diff_readers(a.as_slice(), b.as_slice(), 3).unwrap();
        assert_eq!(d.ranges.len(), 3);
        assert!(d.truncated);
        assert_eq!(d.differing_bytes, 10);
    }
}
