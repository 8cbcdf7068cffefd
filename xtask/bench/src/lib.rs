//! `cargo xtask bench`: what the build, the rebuilds, vm-test and the image
//! cost on this machine, each against its goal, with the build's own floor
//! (a bare `mmdebstrap` of the same packages) timed in the same run.
//!
//! Everything is measured as a user meets it: `cargo xtask build-image` and
//! `cargo xtask vm-test` run as child processes (in their own stage and
//! output directories under `target/bench/`, so `target/image` is left
//! alone). Results go to stdout (a table) and `target/bench/bench.json`; no
//! file of the repository is changed, except the one appliance file the warm
//! rebuild edits, which is always restored.

pub mod ci;
mod measure;
mod parts;
pub mod report;

use std::collections::BTreeMap;
use std::ffi::OsString;
use std::fmt;
use std::path::PathBuf;

use anyhow::{Result, bail};
use builder::locking::Project;
use builder::store::Store;
use serde::Serialize;

pub use measure::MEMORY_METHOD;
pub use parts::run;
pub use report::{Figure, Goal, Status};

/// A part of the bench, chosen with `--only`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Part {
    /// The bare `mmdebstrap` floor.
    Floor,
    /// The cold build (empty stage cache, input store kept) and its peak memory.
    Build,
    /// The no-op rebuild.
    Noop,
    /// Image sizes and the largest contributors.
    Size,
    /// The warm rebuild after one appliance file changed.
    Warm,
    /// vm-test wall time per firmware.
    VmTest,
    /// The last `cargo xtask ci` run's phases (read from its timings file).
    Ci,
}

impl Part {
    /// Every part, in the order they run.
    pub const ALL: [Part; 7] = [
        Part::Floor,
        Part::Build,
        Part::Noop,
        Part::Size,
        Part::Warm,
        Part::VmTest,
        Part::Ci,
    ];

    /// The name used by `--only`.
    pub fn name(self) -> &'static str {
        match self {
            Part::Floor => "floor",
            Part::Build => "build",
            Part::Noop => "noop",
            Part::Warm => "warm",
            Part::Size => "size",
            Part::VmTest => "vm-test",
            Part::Ci => "ci",
        }
    }

    /// Parses a `--only` name.
    pub fn parse(s: &str) -> Result<Part> {
        match Part::ALL.iter().find(|p| p.name() == s.trim()) {
            Some(p) => Ok(*p),
            None => bail!(
                "unknown bench part {s:?}: expected one of {}",
                Part::ALL.map(Part::name).join(", ")
            ),
        }
    }
}

impl fmt::Display for Part {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// What the bench needs.
#[derive(Debug, Clone)]
pub struct Options {
    /// The project root.
    pub root: PathBuf,
    /// The cargo program (`$CARGO`), to run `cargo xtask …` as a user does.
    pub cargo: OsString,
    /// Spec and lock (for the floor and the versions).
    pub project: Project,
    /// The input store (for the floor's local repository).
    pub store: Store,
    /// Flags passed on to `fetch` and `build-image` (`--spec`, `--store`, mirrors).
    pub source_args: Vec<OsString>,
    /// Runs of each cheap figure (no-op and warm rebuild).
    pub runs: usize,
    /// The parts to run.
    pub parts: Vec<Part>,
    /// Firmwares for the vm-test part (`bios`, `uefi`).
    pub firmwares: Vec<String>,
}

/// The machine the figures come from.
#[derive(Debug, Clone, Serialize)]
pub struct Machine {
    /// `/proc/cpuinfo`'s model name.
    pub cpu: String,
    /// CPUs available to the bench.
    pub cores: usize,
    /// Total memory, bytes.
    pub memory_bytes: u64,
    /// Kernel release.
    pub kernel: String,
    /// `/proc/loadavg` when the bench started and ended (other work on the machine).
    pub load_start: String,
    /// See `load_start`.
    pub load_end: String,
}

/// Everything `bench.json` holds.
#[derive(Debug, Clone, Serialize)]
pub struct Bench {
    /// When the bench started (UTC, RFC 3339).
    pub date: String,
    /// The machine.
    pub machine: Machine,
    /// `kvm` or `tcg`, and why (the vm-test harness's own probe).
    pub accel: String,
    /// Tool and input versions: rustc, qemu, mmdebstrap, zstd, the lock's
    /// hash, OpenClaw and Node.
    pub versions: BTreeMap<String, String>,
    /// The parts that ran.
    pub parts: Vec<Part>,
    /// The figures, each with runs, median, goals and status.
    pub figures: Vec<Figure>,
    /// How peak memory was measured, contention, anything else to know.
    pub notes: Vec<String>,
}

impl Bench {
    /// The JSON of `bench.json`.
    pub fn json(&self) -> String {
        let mut s = serde_json::to_string_pretty(self).unwrap_or_default();
        s.push('\n');
        s
    }

    /// The table printed on stdout.
    pub fn table(&self) -> String {
        let mut out = format!(
            "bench {} on {} ({} cores, {:.0} GiB), accel {}\n\n",
            self.date,
            self.machine.cpu,
            self.machine.cores,
            self.machine.memory_bytes as f64 / (1u64 << 30) as f64,
            self.accel
        );
        out.push_str(&report::table(&self.figures));
        for n in &self.notes {
            out.push_str(&format!("note: {n}\n"));
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parts_parse_by_name() {
        assert_eq!(Part::parse("vm-test").unwrap(), Part::VmTest);
        assert_eq!(Part::parse(" noop").unwrap(), Part::Noop);
        let err = Part::parse("cold").unwrap_err().to_string();
        assert!(
            err.contains("floor, build, noop, size, warm, vm-test"),
            "{err}"
        );
    }

    #[test]
    fn json_shape() {
        let bench = Bench {
            date: "2026-11-26T12:00:00Z".into(),
            machine: Machine {
                cpu: "Test CPU".into(),
                cores: 2,
                memory_bytes: 24 << 30,
                kernel: "6.1.0".into(),
                load_start: "1.00 1.00 1.00 1/100 1".into(),
                load_end: "2.00 1.00 1.00 1/100 2".into(),
            },
            accel: "tcg (cannot open /dev/kvm)".into(),
            versions: [("rustc".to_string(), "rustc 1.95.0".to_string())].into(),
            parts: vec![Part::Build, Part::Warm, Part::Noop],
            figures: report::tests_sample(),
            notes: vec![MEMORY_METHOD.into()],
        };
        insta::assert_snapshot!(bench.json());
        insta::assert_snapshot!(bench.table());
    }
}
