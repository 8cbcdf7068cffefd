//! Downloading locked inputs into the store, each verified before it enters.

use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, anyhow, bail};

use super::Store;

/// One fixed-output input: a name, where to get it, and its hash.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Input {
    /// File name in the store (`bash_5.2.37-2_amd64.deb`).
    pub name: String,
    /// Download URL; `None` when it can only be supplied with `--input-dir`.
    pub url: Option<String>,
    /// Expected sha256.
    pub sha256: String,
    /// Expected size, when known.
    pub size: Option<u64>,
}

/// What a fetch run did.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct FetchReport {
    /// Already in the store and verified.
    pub present: usize,
    /// Downloaded now.
    pub downloaded: usize,
    /// Copied from `--input-dir`.
    pub seeded: usize,
    /// Bytes downloaded.
    pub bytes: u64,
    /// Inputs that could not be obtained, with the reason.
    pub missing: Vec<(Input, String)>,
}

/// Fills a [`Store`] from URLs and an optional directory of pre-seeded files.
pub struct Fetcher<'a> {
    store: &'a Store,
    agent: ureq::Agent,
    input_dir: Option<PathBuf>,
    jobs: usize,
}

impl<'a> Fetcher<'a> {
    /// A fetcher into `store`; `input_dir` is searched first, by file name.
    pub fn new(store: &'a Store, input_dir: Option<&Path>) -> Result<Fetcher<'a>> {
        Ok(Fetcher {
            store,
            agent: crate::http::agent()?,
            input_dir: input_dir.map(Path::to_path_buf),
            jobs: 8,
        })
    }

    /// Makes sure every input is in the store, verified. Downloads run in
    /// parallel; progress goes to stderr. Inputs that cannot be had are
    /// listed in the report, not treated as fatal here (the caller decides).
    pub fn fetch_all(&self, inputs: &[Input]) -> Result<FetchReport> {
        let report = Mutex::new(FetchReport::default());
        let next = AtomicUsize::new(0);
        let done = AtomicUsize::new(0);
        let bytes = AtomicU64::new(0);
        let started = Instant::now();
        let total = inputs.len();
        let fatal: Mutex<Option<anyhow::Error>> = Mutex::new(None);
        std::thread::scope(|s| {
            for _ in 0..self.jobs.min(total.max(1)) {
                s.spawn(|| {
                    loop {
                        let i = next.fetch_add(1, Ordering::SeqCst);
                        let Some(input) = inputs.get(i) else { break };
                        let outcome = self.fetch_one(input);
                        let mut r = report.lock().unwrap_or_else(|p| p.into_inner());
                        match outcome {
                            Ok(Outcome::Present) => r.present += 1,
                            Ok(Outcome::Seeded) => r.seeded += 1,
                            Ok(Outcome::Downloaded(n)) => {
                                r.downloaded += 1;
                                r.bytes += n;
                                bytes.fetch_add(n, Ordering::SeqCst);
                            }
                            Err(Failure::Unavailable(why)) => r.missing.push((input.clone(), why)),
                            Err(Failure::Fatal(e)) => {
                                let mut f = fatal.lock().unwrap_or_else(|p| p.into_inner());
                                f.get_or_insert(e);
                            }
                        }
                        drop(r);
                        let d = done.fetch_add(1, Ordering::SeqCst) + 1;
                        if d.is_multiple_of(50) || d == total {
                            eprintln!(
                                "fetch: {d}/{total} inputs checked, {:.1} MB downloaded, {:.0?}",
                                bytes.load(Ordering::SeqCst) as f64 / 1e6,
                                started.elapsed()
                            );
                        }
                    }
                });
            }
        });
        if let Some(e) = fatal.into_inner().unwrap_or_else(|p| p.into_inner()) {
            return Err(e);
        }
        let mut report = report.into_inner().unwrap_or_else(|p| p.into_inner());
        report.missing.sort_by(|a, b| a.0.name.cmp(&b.0.name));
        Ok(report)
    }

    fn fetch_one(&self, input: &Input) -> Result<Outcome, Failure> {
        let store = self.store;
        if store
            .has_verified(&input.sha256, &input.name)
            .map_err(Failure::Fatal)?
        {
            return Ok(Outcome::Present);
        }
        if let Some(dir) = &self.input_dir {
            let candidate = dir.join(&input.name);
            if candidate.is_file() {
                return match store.insert_file(&candidate, &input.sha256, &input.name) {
                    Ok(_) => Ok(Outcome::Seeded),
                    Err(e) => Err(Failure::Unavailable(format!(
                        "{}: {e:#}",
                        candidate.display()
                    ))),
                };
            }
        }
        let Some(url) = &input.url else {
            return Err(Failure::Unavailable(
                "no download URL; supply it with --input-dir".into(),
            ));
        };
        match self.download(url, input) {
            Ok(n) => Ok(Outcome::Downloaded(n)),
            Err(e) => Err(Failure::Unavailable(format!("{e:#}"))),
        }
    }

    fn download(&self, url: &str, input: &Input) -> Result<u64> {
        let mut last = None;
        for attempt in 1..=3 {
            match self.try_download(url, input) {
                Ok(n) => return Ok(n),
                Err(e) => {
                    let retry = e.downcast_ref::<ureq::Error>().is_some_and(|e| {
                        !matches!(e, ureq::Error::StatusCode(code) if (400..500).contains(code))
                    });
                    last = Some(e);
                    if !retry {
                        break;
                    }
                    std::thread::sleep(Duration::from_millis(500 * attempt));
                }
            }
        }
        Err(last.unwrap_or_else(|| anyhow!("download failed")))
    }

    fn try_download(&self, url: &str, input: &Input) -> Result<u64> {
        let mut resp = self.agent.get(url).call()?;
        let mut reader = resp.body_mut().with_config().limit(u64::MAX).reader();
        let mut tmp = self.store.temp_file()?;
        let mut buf = vec![0u8; 1 << 16];
        let mut n = 0u64;
        loop {
            let k = reader
                .read(&mut buf)
                .with_context(|| format!("reading {url}"))?;
            if k == 0 {
                break;
            }
            tmp.write_all(&buf[..k]).context("writing to the store")?;
            n += k as u64;
        }
        tmp.flush().context("writing to the store")?;
        if let Some(size) = input.size
            && size != n
        {
            bail!("{url}: expected {size} bytes, got {n}");
        }
        self.store.commit(tmp, &input.sha256, &input.name)?;
        Ok(n)
    }
}

enum Outcome {
    Present,
    Seeded,
    Downloaded(u64),
}

enum Failure {
    Unavailable(String),
    Fatal(anyhow::Error),
}
