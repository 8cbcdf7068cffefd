//! Reading the image, hashing it, compressing it with zstd and writing it
//! into the `ssh` pipe, with a progress bar and the Ctrl-C flag checked
//! between chunks.

use std::fs::File;
use std::io::{BufWriter, Read, Write};
use std::time::{Duration, Instant};

use indicatif::{ProgressBar, ProgressStyle};
use sha2::{Digest, Sha256};

use crate::Interrupt;
use crate::image::ImageInfo;

const CHUNK: usize = 1 << 20;

/// Why the stream stopped.
#[derive(Debug)]
pub(crate) enum StreamError {
    /// Reading the image failed.
    Read(std::io::Error),
    /// Writing into `ssh` failed (the remote side ended).
    Write(std::io::Error),
    /// Ctrl-C.
    Interrupted,
}

/// The progress bar: bytes, rate, ETA. Hidden when stderr is not a terminal;
/// then a line every 10 %.
struct Progress {
    bar: ProgressBar,
    total: u64,
    next_line: u64,
}

impl Progress {
    fn new(total: u64) -> Progress {
        let bar = ProgressBar::new(total);
        if let Ok(style) = ProgressStyle::with_template(
            "{bytes}/{total_bytes} [{bar:30}] {binary_bytes_per_sec}, ETA {eta}",
        ) {
            bar.set_style(style.progress_chars("=> "));
        }
        Progress {
            bar,
            total,
            next_line: total / 10,
        }
    }

    fn advance(&mut self, n: u64) {
        self.bar.inc(n);
        let done = self.bar.position();
        if self.bar.is_hidden() && self.total > 0 && done >= self.next_line {
            eprintln!(
                "upload: streamed {} of {} MiB ({}%)",
                done >> 20,
                self.total >> 20,
                done * 100 / self.total
            );
            self.next_line = done + self.total / 10;
        }
    }
}

/// Stream the image into `sink` zstd-compressed (level 3); the sha256 of the
/// bytes read. `max_rate` (bytes/s of image) slows it down.
pub(crate) fn send(
    image: &ImageInfo,
    sink: impl Write,
    interrupt: &Interrupt,
    max_rate: Option<u64>,
) -> Result<String, StreamError> {
    let mut file = File::open(&image.path).map_err(StreamError::Read)?;
    let mut encoder =
        zstd::Encoder::new(BufWriter::with_capacity(CHUNK, sink), 3).map_err(StreamError::Write)?;
    let mut hasher = Sha256::new();
    let mut progress = Progress::new(image.len);
    let mut buf = vec![0u8; CHUNK];
    let started = Instant::now();
    let mut sent = 0u64;
    loop {
        if interrupt.is_set() {
            progress.bar.abandon();
            return Err(StreamError::Interrupted);
        }
        let n = file.read(&mut buf).map_err(StreamError::Read)?;
        if n == 0 {
            break;
        }
        hasher.update(&buf[..n]);
        encoder.write_all(&buf[..n]).map_err(StreamError::Write)?;
        sent += n as u64;
        progress.advance(n as u64);
        if let Some(rate) = max_rate.filter(|r| *r > 0) {
            let due = Duration::from_secs_f64(sent as f64 / rate as f64);
            if let Some(wait) = due.checked_sub(started.elapsed()) {
                std::thread::sleep(wait);
            }
        }
    }
    let mut inner = encoder.finish().map_err(StreamError::Write)?;
    inner.flush().map_err(StreamError::Write)?;
    progress.bar.finish();
    Ok(hex::encode(hasher.finalize()))
}
