//! The agent's two ways of touching the machine besides files: running
//! programs and writing log lines. Both are traits so the tests run the
//! whole agent as a normal user against a temp directory.

use std::io::{self, Write};
use std::process::{Command, Stdio};

/// What a finished program left behind.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CmdOutput {
    /// Exit code; `None` when killed by a signal.
    pub code: Option<i32>,
    /// Standard output.
    pub stdout: String,
    /// Standard error.
    pub stderr: String,
}

impl CmdOutput {
    /// Exit code 0.
    pub fn success(&self) -> bool {
        self.code == Some(0)
    }
}

/// Runs programs. Arguments never carry a secret (TS-1: the Tailscale key
/// goes by file), so an implementation may log them.
pub trait Runner {
    /// Runs `program` (an absolute path) with `args`, stdin closed, and
    /// waits for it.
    fn run(&self, program: &str, args: &[&str]) -> io::Result<CmdOutput>;
}

/// Runs real programs with a clean environment (`PATH`, `LC_ALL=C`): the
/// agent's own environment (including `CREDENTIALS_DIRECTORY`) is not
/// passed on.
#[derive(Debug, Default, Clone, Copy)]
pub struct SystemRunner;

impl Runner for SystemRunner {
    fn run(&self, program: &str, args: &[&str]) -> io::Result<CmdOutput> {
        let out = Command::new(program)
            .args(args)
            .env_clear()
            .env(
                "PATH",
                "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
            )
            .env("LC_ALL", "C")
            .stdin(Stdio::null())
            .output()?;
        Ok(CmdOutput {
            code: out.status.code(),
            stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
        })
    }
}

/// Severity of a log line.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Level {
    /// Progress.
    Info,
    /// Something skipped or degraded; first boot goes on.
    Warn,
    /// First boot failed.
    Error,
}

/// Where progress goes. Callers never pass a secret; the agent also scrubs
/// every line it did not write itself.
pub trait Log {
    /// Writes one line.
    fn line(&self, level: Level, msg: &str);

    /// Progress.
    fn info(&self, msg: &str) {
        self.line(Level::Info, msg);
    }
    /// A warning.
    fn warn(&self, msg: &str) {
        self.line(Level::Warn, msg);
    }
    /// An error.
    fn error(&self, msg: &str) {
        self.line(Level::Error, msg);
    }
}

/// Logs to stderr. Under systemd (`JOURNAL_STREAM` set) each line carries a
/// `<N>` syslog priority prefix, which journald strips and records, and the
/// unit's `StandardError=journal+console` also puts the line on the serial
/// console.
#[derive(Debug, Clone, Copy)]
pub struct StderrLog {
    /// Whether to add `<N>` priority prefixes.
    pub journal: bool,
}

impl StderrLog {
    /// Detects the journal from the environment.
    pub fn from_env() -> Self {
        StderrLog {
            journal: std::env::var_os("JOURNAL_STREAM").is_some(),
        }
    }
}

impl Log for StderrLog {
    fn line(&self, level: Level, msg: &str) {
        let (prio, tag) = match level {
            Level::Info => (6, ""),
            Level::Warn => (4, "warning: "),
            Level::Error => (3, "error: "),
        };
        let mut err = io::stderr().lock();
        for part in msg.lines() {
            let _ = if self.journal {
                writeln!(err, "<{prio}>openclaw-firstboot: {tag}{part}")
            } else {
                writeln!(err, "openclaw-firstboot: {tag}{part}")
            };
        }
    }
}
