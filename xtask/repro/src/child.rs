//! Running a `build-image` (or any) child whose output is read line by
//! line as it comes: the one runner of `verify-repro`'s builds and
//! `bench`'s timed runs.

use std::io::{BufRead, BufReader};
use std::process::ExitStatus;
use std::time::Instant;

use anyhow::{Context, Result};

/// A started child, stdout and stderr merged into one stream of lines.
pub struct ChildRun {
    handle: duct::ReaderHandle,
    started: Instant,
    what: String,
}

/// How a [`ChildRun`] ended.
#[derive(Debug, Clone, Copy)]
pub struct Finished {
    /// Its exit status (not checked: the caller says what a failure means).
    pub status: ExitStatus,
    /// Wall-clock seconds from the start to the exit.
    pub seconds: f64,
}

impl ChildRun {
    /// Starts `expr` with its stderr merged into its stdout, its exit
    /// status unchecked; `what` names it in error messages.
    pub fn start(expr: &duct::Expression, what: &str) -> Result<ChildRun> {
        let started = Instant::now();
        let handle = expr
            .stderr_to_stdout()
            .unchecked()
            .reader()
            .with_context(|| format!("starting {what}"))?;
        Ok(ChildRun {
            handle,
            started,
            what: what.to_string(),
        })
    }

    /// The process id of the child (the first of a pipeline), 0 if unknown.
    pub fn pid(&self) -> u32 {
        self.handle.pids().first().copied().unwrap_or(0)
    }

    /// Hands each output line (lossy UTF-8, without its newline) and the
    /// seconds since the start to `on_line` until the output ends, then
    /// waits for the exit. An error of `on_line` stops the reading.
    pub fn finish(self, mut on_line: impl FnMut(f64, String) -> Result<()>) -> Result<Finished> {
        let what = &self.what;
        for line in BufReader::new(&self.handle).split(b'\n') {
            let line = line.with_context(|| format!("reading the output of {what}"))?;
            on_line(
                self.started.elapsed().as_secs_f64(),
                String::from_utf8_lossy(&line).into_owned(),
            )?;
        }
        let output = self
            .handle
            .try_wait()
            .with_context(|| format!("waiting for {what}"))?
            .with_context(|| format!("{what} closed its output but did not exit"))?;
        Ok(Finished {
            status: output.status,
            seconds: self.started.elapsed().as_secs_f64(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hands_over_every_line_and_the_status() {
        let expr = duct::cmd!("sh", "-c", "echo one; echo two >&2; printf three; exit 3");
        let child = ChildRun::start(&expr, "the test child").unwrap();
        assert_ne!(child.pid(), 0);
        let mut lines = Vec::new();
        let done = child
            .finish(|_, l| {
                lines.push(l);
                Ok(())
            })
            .unwrap();
        assert_eq!(lines, ["one", "two", "three"]);
        assert_eq!(done.status.code(), Some(3));
    }
}
