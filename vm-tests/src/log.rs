//! Log lines of the harness: `[machine +12.3s] message`, on stderr.

use std::fmt::Display;
use std::time::{Duration, Instant};

/// A log prefix (usually the machine name) and the instant its clock started.
///
/// Every line shows the time since that instant, so a log reads as a timeline.
#[derive(Debug, Clone)]
pub struct Log {
    prefix: String,
    start: Instant,
}

impl Log {
    /// A log whose lines start with `prefix` and whose clock starts now.
    pub fn new(prefix: impl Into<String>) -> Self {
        Log {
            prefix: prefix.into(),
            start: Instant::now(),
        }
    }

    /// The prefix given to [`Log::new`].
    pub fn prefix(&self) -> &str {
        &self.prefix
    }

    /// Writes one line (several if `msg` has newlines, each prefixed).
    pub fn info(&self, msg: impl Display) {
        let elapsed = self.start.elapsed().as_secs_f64();
        let msg = msg.to_string();
        for line in msg.lines() {
            eprintln!("[{} +{elapsed:.1}s] {line}", self.prefix);
        }
    }
}

/// Formats a duration as seconds with two decimals (`1.25s`).
pub fn secs(d: Duration) -> String {
    format!("{:.2}s", d.as_secs_f64())
}
