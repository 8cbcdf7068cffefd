//! What a build is doing, for the person watching it: a status line at a
//! steady beat (every [`BEAT`]) naming the steps running, how long each has
//! run against what it took last time, the steps done, the elapsed time and
//! an estimate of what is left. No stretch of a build is silent for longer
//! than a beat, whether stderr is a terminal or a CI log.
//!
//! The estimate comes from the last build's step times, kept in
//! `<stage dir>/timings.json` ([`Timings`]). A step that took under
//! [`CACHED_BELOW`] was a cache hit and does not overwrite the time of its
//! last real run, so a warm build does not make the next cold one look
//! short. The steps of [`PARALLEL`] run at once, the others one after
//! another ([`Timings::left`]).
//!
//! Plain lines, not a redrawn bar: the stages run tools (mmdebstrap, mke2fs,
//! cargo) whose own lines pass through as they come, and a bar redrawn
//! under them would tear.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Condvar, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use anyhow::{Context, Result};

use crate::fsutil::write_atomic;

/// How often the status line is printed.
pub const BEAT: Duration = Duration::from_secs(10);
/// A step faster than this was served from the cache.
pub const CACHED_BELOW: f64 = 2.0;
/// The steps that run at the same time (the input stages).
pub const PARALLEL: [&str; 5] = ["tools", "base", "sandbox", "tailscale", "app"];
/// The steps that follow them, one after another, in order.
pub const SEQUENTIAL: [&str; 5] = ["sandbox-store", "config", "agent", "disk", "compress"];

/// The last real run time of each step, in seconds.
#[derive(Debug, Clone, Default, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct Timings {
    /// Step name → seconds of its last run that was not a cache hit.
    pub steps: BTreeMap<String, f64>,
}

impl Timings {
    /// The timings at `path`; none when the file is missing or unreadable
    /// (the first build has no estimate).
    pub fn load(path: &Path) -> Timings {
        std::fs::read_to_string(path)
            .ok()
            .and_then(|t| serde_json::from_str(&t).ok())
            .unwrap_or_default()
    }

    /// Writes the timings to `path` (temp file, then rename).
    pub fn save(&self, path: &Path) -> Result<()> {
        let text = serde_json::to_string_pretty(self).context("serialising the step timings")?;
        write_atomic(path, text.as_bytes())
    }

    /// These timings updated with a build's `done` steps: a step's time is
    /// replaced only by a run that was not a cache hit.
    pub fn updated(&self, done: &[(&str, f64)]) -> Timings {
        let mut next = self.clone();
        for (name, secs) in done {
            if *secs >= CACHED_BELOW || !next.steps.contains_key(*name) {
                next.steps.insert((*name).to_string(), *secs);
            }
        }
        next
    }

    /// Seconds left, estimated: for each step not done, its recorded time
    /// minus what it has run so far (`running`: name → seconds), at least
    /// zero; the parallel steps count as their longest, the rest add up.
    /// `None` without a recorded time for any step still to come.
    pub fn left(&self, done: &[&str], running: &BTreeMap<&str, f64>) -> Option<f64> {
        let remaining = |name: &str| -> Option<f64> {
            if done.contains(&name) {
                return Some(0.0);
            }
            let est = *self.steps.get(name)?;
            Some((est - running.get(name).copied().unwrap_or(0.0)).max(0.0))
        };
        let mut parallel: f64 = 0.0;
        let mut known = false;
        for name in PARALLEL {
            if let Some(r) = remaining(name) {
                parallel = parallel.max(r);
                known = true;
            }
        }
        let mut sequential = 0.0;
        for name in SEQUENTIAL {
            // A step with no record (compress, when never asked for) adds nothing.
            if let Some(r) = remaining(name) {
                sequential += r;
                known = true;
            }
        }
        known.then_some(parallel + sequential)
    }
}

/// `1m05s`, `42s`.
pub fn duration(secs: f64) -> String {
    let s = secs.max(0.0).round() as u64;
    if s >= 60 {
        format!("{}m{:02}s", s / 60, s % 60)
    } else {
        format!("{s}s")
    }
}

#[derive(Debug)]
struct State {
    started: Instant,
    running: Vec<(&'static str, Instant)>,
    done: Vec<(&'static str, f64)>,
    last: Timings,
}

impl State {
    fn line(&self, now: Instant) -> String {
        let elapsed = now.duration_since(self.started).as_secs_f64();
        let running: BTreeMap<&str, f64> = self
            .running
            .iter()
            .map(|(n, t)| (*n, now.duration_since(*t).as_secs_f64()))
            .collect();
        let done: Vec<&str> = self.done.iter().map(|(n, _)| *n).collect();
        status_line(elapsed, &running, &done, &self.last)
    }
}

/// The status line: elapsed, estimate, the running steps (time so far /
/// last time) and the steps done.
pub fn status_line(
    elapsed: f64,
    running: &BTreeMap<&str, f64>,
    done: &[&str],
    last: &Timings,
) -> String {
    let estimate = match last.left(done, running) {
        Some(left) => format!(
            "~{} left (from the last build's step times)",
            duration(left)
        ),
        None => "no estimate yet (no earlier build recorded its step times)".to_string(),
    };
    let running_text = if running.is_empty() {
        "between steps".to_string()
    } else {
        running
            .iter()
            .map(|(name, secs)| match last.steps.get(*name) {
                Some(est) => format!("{name} {}/~{}", duration(*secs), duration(*est)),
                None => format!("{name} {}", duration(*secs)),
            })
            .collect::<Vec<_>>()
            .join(", ")
    };
    let mut line = format!(
        "build-image: {} elapsed, {estimate} · running: {running_text}",
        duration(elapsed)
    );
    if !done.is_empty() {
        line.push_str(&format!(" · done: {}", done.join(", ")));
    }
    line
}

/// A build's progress: steps report their start and end; a background
/// thread prints the status line every [`BEAT`] until [`Progress::finish`].
#[derive(Debug)]
pub struct Progress {
    state: Arc<Mutex<State>>,
    stop: Arc<(Mutex<bool>, Condvar)>,
    ticker: Option<JoinHandle<()>>,
    timings_path: PathBuf,
}

impl Progress {
    /// Starts the beat; the estimate comes from `timings_path`.
    pub fn start(timings_path: &Path) -> Progress {
        let state = Arc::new(Mutex::new(State {
            started: Instant::now(),
            running: Vec::new(),
            done: Vec::new(),
            last: Timings::load(timings_path),
        }));
        let stop = Arc::new((Mutex::new(false), Condvar::new()));
        let ticker = {
            let state = Arc::clone(&state);
            let stop = Arc::clone(&stop);
            std::thread::Builder::new()
                .name("build-progress".into())
                .spawn(move || beat(&state, &stop))
                .ok()
        };
        Progress {
            state,
            stop,
            ticker,
            timings_path: timings_path.to_path_buf(),
        }
    }

    fn with<T>(&self, f: impl FnOnce(&mut State) -> T) -> T {
        let mut guard = self.state.lock().unwrap_or_else(|e| e.into_inner());
        f(&mut guard)
    }

    /// Step `name` starts.
    pub fn begin(&self, name: &'static str) {
        self.with(|s| s.running.push((name, Instant::now())));
    }

    /// Step `name` ended after `secs`.
    pub fn end(&self, name: &'static str, secs: f64) {
        self.with(|s| {
            s.running.retain(|(n, _)| *n != name);
            s.done.push((name, secs));
        });
    }

    /// Stops the beat and, for a build that completed (`completed`),
    /// records its step times for the next estimate.
    pub fn finish(mut self, completed: bool) -> Result<()> {
        self.stop_beat();
        if !completed {
            return Ok(());
        }
        let next = self.with(|s| s.last.updated(&s.done));
        next.save(&self.timings_path)
    }

    fn stop_beat(&mut self) {
        let (flag, wake) = &*self.stop;
        *flag.lock().unwrap_or_else(|e| e.into_inner()) = true;
        wake.notify_all();
        if let Some(t) = self.ticker.take() {
            let _ = t.join();
        }
    }
}

impl Drop for Progress {
    fn drop(&mut self) {
        self.stop_beat();
    }
}

/// The ticker: a status line every [`BEAT`] until told to stop.
fn beat(state: &Mutex<State>, stop: &(Mutex<bool>, Condvar)) {
    let (flag, wake) = stop;
    let mut stopped = flag.lock().unwrap_or_else(|e| e.into_inner());
    loop {
        let (guard, timeout) = wake
            .wait_timeout_while(stopped, BEAT, |s| !*s)
            .unwrap_or_else(|e| e.into_inner());
        stopped = guard;
        if *stopped {
            return;
        }
        if timeout.timed_out() {
            let line = state
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .line(Instant::now());
            eprintln!("{line}");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn timings(pairs: &[(&str, f64)]) -> Timings {
        Timings {
            steps: pairs.iter().map(|(n, s)| (n.to_string(), *s)).collect(),
        }
    }

    #[test]
    fn the_estimate_takes_the_longest_parallel_step_and_adds_the_rest() {
        let last = timings(&[
            ("tools", 30.0),
            ("base", 100.0),
            ("sandbox", 120.0),
            ("tailscale", 10.0),
            ("app", 20.0),
            ("sandbox-store", 15.0),
            ("config", 5.0),
            ("agent", 0.0),
            ("disk", 40.0),
        ]);
        let none = BTreeMap::new();
        assert_eq!(last.left(&[], &none), Some(120.0 + 15.0 + 5.0 + 40.0));
        // Sandbox 100 s in: 20 s of it left; the base is done.
        let running = BTreeMap::from([("sandbox", 100.0)]);
        assert_eq!(
            last.left(&["tools", "base", "tailscale", "app"], &running),
            Some(20.0 + 60.0)
        );
        // Running over its time: nothing left of it, never negative.
        let over = BTreeMap::from([("disk", 90.0)]);
        let all_but_disk = [
            "tools",
            "base",
            "sandbox",
            "tailscale",
            "app",
            "sandbox-store",
            "config",
            "agent",
        ];
        assert_eq!(last.left(&all_but_disk, &over), Some(0.0));
        assert_eq!(Timings::default().left(&[], &none), None);
    }

    #[test]
    fn a_cache_hit_keeps_the_last_real_time() {
        let last = timings(&[("base", 100.0), ("disk", 40.0)]);
        let next = last.updated(&[("base", 0.1), ("disk", 38.0), ("config", 0.0)]);
        assert_eq!(next.steps["base"], 100.0, "a cache hit keeps the real time");
        assert_eq!(next.steps["disk"], 38.0);
        assert_eq!(
            next.steps["config"], 0.0,
            "a first record is kept even when short"
        );
    }

    #[test]
    fn the_status_line_names_elapsed_estimate_running_and_done() {
        let last = timings(&[("base", 100.0), ("sandbox", 120.0), ("disk", 40.0)]);
        let running = BTreeMap::from([("base", 65.0), ("sandbox", 65.0)]);
        assert_eq!(
            status_line(65.4, &running, &["tools"], &last),
            "build-image: 1m05s elapsed, ~1m35s left (from the last build's step times) · \
             running: base 1m05s/~1m40s, sandbox 1m05s/~2m00s · done: tools"
        );
        assert_eq!(
            status_line(3.0, &BTreeMap::new(), &[], &Timings::default()),
            "build-image: 3s elapsed, no estimate yet (no earlier build recorded its step \
             times) · running: between steps"
        );
    }

    #[test]
    fn timings_round_trip_and_a_bad_file_means_none() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("timings.json");
        assert_eq!(Timings::load(&path), Timings::default());
        let t = timings(&[("base", 12.5)]);
        t.save(&path).unwrap();
        assert_eq!(Timings::load(&path), t);
        std::fs::write(&path, "not json").unwrap();
        assert_eq!(Timings::load(&path), Timings::default());
    }

    #[test]
    fn finish_records_the_steps_of_a_completed_build_only() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("timings.json");
        let p = Progress::start(&path);
        p.begin("base");
        p.end("base", 42.0);
        p.finish(false).unwrap();
        assert!(!path.exists(), "a failed build records nothing");
        let p = Progress::start(&path);
        p.begin("base");
        p.end("base", 42.0);
        p.finish(true).unwrap();
        assert_eq!(Timings::load(&path).steps["base"], 42.0);
    }
}
