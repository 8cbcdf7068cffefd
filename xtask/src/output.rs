//! Where a task's lines go: stdout for people, or, under `--json`, stderr,
//! with the JSON report alone on stdout (docs/cli.md).

use std::fmt::Display;
use std::io::Write;
use std::sync::{Mutex, OnceLock};

/// The original stdout, once `--json` has pointed fd 1 at stderr.
static REPORT: OnceLock<Mutex<std::fs::File>> = OnceLock::new();

/// A task's output channel, chosen by its `--json` flag.
#[derive(Debug, Clone, Copy)]
pub struct Out {
    json: bool,
}

impl Out {
    /// The channel for a task run with (`json`) or without `--json`. With
    /// it, stdout (this process's and its children's) goes to stderr from
    /// now on, and only [`Out::report`] writes to the real stdout.
    pub fn new(json: bool) -> anyhow::Result<Out> {
        if json && REPORT.get().is_none() {
            let file = builder::fsutil::divert_stdout()?;
            let _ = REPORT.set(Mutex::new(file));
        }
        Ok(Out { json })
    }

    /// Whether stdout carries the JSON report.
    pub fn is_json(self) -> bool {
        self.json
    }

    /// A line for people: stdout, or stderr under `--json`.
    pub fn line(self, text: impl Display) {
        if self.json {
            eprintln!("{text}");
        } else {
            println!("{text}");
        }
    }

    /// The JSON report on the real stdout, only under `--json`.
    pub fn report(self, json: &str) -> anyhow::Result<()> {
        use anyhow::Context;
        if !self.json {
            return Ok(());
        }
        let file = REPORT
            .get()
            .context("the JSON report's stdout was not kept")?;
        let mut file = file.lock().unwrap_or_else(|e| e.into_inner());
        writeln!(file, "{}", json.trim_end())
            .and_then(|()| file.flush())
            .context("writing the JSON report to stdout")
    }
}

/// `say!(out, "format", args…)`: [`Out::line`] with `format!` arguments.
macro_rules! say {
    ($out:expr, $($arg:tt)*) => {
        $out.line(format_args!($($arg)*))
    };
}
pub(crate) use say;
