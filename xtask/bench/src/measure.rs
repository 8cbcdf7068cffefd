//! Running a command as a timed child: wall-clock seconds, the peak
//! resident memory of its whole process tree, and every output line with
//! the second it appeared. The child runs through verify-repro's runner,
//! [`repro::child::ChildRun`]; this adds the timing and the memory samples.

use std::collections::HashMap;
use std::ffi::OsString;
use std::fs;
use std::io::Write;
use std::path::Path;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

use anyhow::{Context, Result};
use repro::child::ChildRun;

/// How the peak memory is measured (stated in the report).
pub const MEMORY_METHOD: &str = "sum of VmRSS over the build's process tree, sampled from /proc every 100 ms \
     (cgroup v2 memory.peak is not available: this host's memory controller is on cgroup v1); \
     shared pages count once per process, the page cache not at all";

/// One timed run of a child.
#[derive(Debug, Clone)]
pub struct Timed {
    /// Wall-clock seconds from spawn to exit.
    pub seconds: f64,
    /// Peak of the summed resident memory of the process tree, bytes.
    pub peak_rss_bytes: u64,
    /// Output lines (stdout and stderr merged) with their second.
    pub lines: Vec<(f64, String)>,
    /// Whether it exited with status 0.
    pub success: bool,
    /// The exit status, for messages.
    pub status: String,
}

impl Timed {
    /// The last line starting with `prefix`, without the prefix.
    pub fn last_line(&self, prefix: &str) -> Option<&str> {
        self.lines
            .iter()
            .rev()
            .find_map(|(_, l)| l.strip_prefix(prefix))
    }

    /// The tail of the output, for an error message.
    pub fn tail(&self, n: usize) -> String {
        let start = self.lines.len().saturating_sub(n);
        self.lines[start..]
            .iter()
            .map(|(_, l)| l.as_str())
            .collect::<Vec<_>>()
            .join("\n")
    }
}

/// Runs `program args` in `dir`, echoing each output line to stderr after
/// `label`, appending it to `log`, and timing it.
pub fn run(
    program: &OsString,
    args: &[OsString],
    dir: &Path,
    label: &str,
    log: &Path,
) -> Result<Timed> {
    let mut log_file = fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(log)
        .with_context(|| format!("opening {}", log.display()))?;
    let shown = format!(
        "{} {}",
        program.to_string_lossy(),
        args.iter()
            .map(|a| a.to_string_lossy())
            .collect::<Vec<_>>()
            .join(" ")
    );
    let _ = writeln!(log_file, "=== {label}: {shown}");
    eprintln!("bench: {label}: {shown}");
    let child = ChildRun::start(&duct::cmd(program, args).dir(dir), &shown)?;
    let root = child.pid();
    let stop = AtomicBool::new(false);
    let peak = AtomicU64::new(0);
    let mut lines = Vec::new();
    let done = std::thread::scope(|scope| {
        scope.spawn(|| {
            while !stop.load(Ordering::Relaxed) {
                peak.fetch_max(tree_rss(root), Ordering::Relaxed);
                std::thread::sleep(Duration::from_millis(100));
            }
        });
        let done = child.finish(|t, line| {
            eprintln!("  | {line}");
            let _ = writeln!(log_file, "[{t:8.1}] {line}");
            lines.push((t, line));
            Ok(())
        });
        stop.store(true, Ordering::Relaxed);
        done
    })?;
    let seconds = done.seconds;
    let _ = writeln!(log_file, "=== {label}: {} in {seconds:.1} s", done.status);
    Ok(Timed {
        seconds,
        peak_rss_bytes: peak.load(Ordering::Relaxed),
        lines,
        success: done.status.success(),
        status: done.status.to_string(),
    })
}

/// Summed resident memory of `root` and all its descendants, bytes.
pub fn tree_rss(root: u32) -> u64 {
    let Ok(dir) = fs::read_dir("/proc") else {
        return 0;
    };
    let mut children: HashMap<u32, Vec<u32>> = HashMap::new();
    for e in dir.flatten() {
        let Some(pid) = e.file_name().to_str().and_then(|s| s.parse::<u32>().ok()) else {
            continue;
        };
        if let Some(ppid) = fs::read_to_string(format!("/proc/{pid}/stat"))
            .ok()
            .as_deref()
            .and_then(parent_of)
        {
            children.entry(ppid).or_default().push(pid);
        }
    }
    let mut total = 0;
    let mut todo = vec![root];
    while let Some(pid) = todo.pop() {
        total += resident_bytes(pid);
        if let Some(c) = children.get(&pid) {
            todo.extend(c);
        }
    }
    total
}

/// The parent pid from a `/proc/<pid>/stat` line (the comm may hold spaces
/// and parentheses, so parse after the last `)`).
pub fn parent_of(stat: &str) -> Option<u32> {
    let rest = &stat[stat.rfind(')')? + 1..];
    rest.split_whitespace().nth(1)?.parse().ok()
}

fn resident_bytes(pid: u32) -> u64 {
    fs::read_to_string(format!("/proc/{pid}/statm"))
        .ok()
        .and_then(|s| s.split_whitespace().nth(1)?.parse::<u64>().ok())
        .map_or(0, |pages| pages * 4096)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parent_of_parses_after_the_comm() {
        assert_eq!(parent_of("123 (a) b) c) S 45 123 123 0"), Some(45));
        assert_eq!(parent_of("1 (init) S 0 1 1"), Some(0));
        assert_eq!(parent_of("garbage"), None);
    }

    #[test]
    fn runs_a_child_and_keeps_its_lines() {
        let tmp = tempfile::tempdir().unwrap();
        let t = run(
            &"sh".into(),
            &["-c".into(), "echo one; echo two >&2; exit 3".into()],
            tmp.path(),
            "test",
            &tmp.path().join("log"),
        )
        .unwrap();
        assert!(!t.success);
        let text: Vec<&str> = t.lines.iter().map(|(_, l)| l.as_str()).collect();
        assert_eq!(text, ["one", "two"]);
        assert_eq!(t.last_line("tw"), Some("o"));
        assert!(tree_rss(std::process::id()) > 0);
    }
}
