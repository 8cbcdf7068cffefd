//! The phase timings of a `cargo xtask ci` run (`target/ci/timings.json`)
//! and the figures `bench` makes of them: the whole run against CI's
//! budget, and vm-test's primary and secondary passes against theirs.

use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use serde::{Deserialize, Serialize};
use vm_tests::suite::PassTiming;

use crate::report::{Figure, Goal};

/// Where `cargo xtask ci` writes its timings, under the project root.
pub const TIMINGS_FILE: &str = "target/ci/timings.json";

/// CI's goal for a whole run on a 2-core machine without KVM (its hard
/// limit is 90 minutes).
pub const CI_GOAL_S: f64 = 45.0 * 60.0;
/// The goal for vm-test's primary pass (every ID, the gateway started).
pub const PRIMARY_GOAL_S: f64 = 900.0;
/// The goal for a secondary pass (the firmware-dependent IDs only).
pub const SECONDARY_GOAL_S: f64 = 300.0;

/// One step of a CI run.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StepTiming {
    /// The step's name (`format`, `build the image`, …).
    pub name: String,
    /// Wall seconds.
    pub seconds: f64,
    /// Whether it succeeded.
    pub ok: bool,
}

/// What one `cargo xtask ci` run took.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CiTimings {
    /// Seconds since the Unix epoch when the run ended.
    pub finished_unix: u64,
    /// Whether every step passed.
    pub passed: bool,
    /// Wall seconds of the whole run.
    pub total_s: f64,
    /// Each step that ran, in order (a failed step is the last).
    pub steps: Vec<StepTiming>,
    /// vm-test's firmware passes, when its step ran.
    pub vm_test_passes: Vec<PassTiming>,
}

impl CiTimings {
    /// The file under `root`.
    pub fn path(root: &Path) -> PathBuf {
        root.join(TIMINGS_FILE)
    }

    /// Writes the timings atomically to [`TIMINGS_FILE`] under `root`.
    pub fn write(&self, root: &Path) -> Result<()> {
        let path = Self::path(root);
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
        }
        let text = serde_json::to_string_pretty(self)? + "\n";
        builder::fsutil::write_atomic(&path, text.as_bytes())
    }

    /// Reads the last run's timings under `root`; `None` when there are none.
    pub fn read(root: &Path) -> Result<Option<CiTimings>> {
        let path = Self::path(root);
        let text = match std::fs::read_to_string(&path) {
            Ok(t) => t,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(e).with_context(|| format!("reading {}", path.display())),
        };
        let t = serde_json::from_str(&text).with_context(|| {
            format!(
                "{} is not a CI timings file: run `cargo xtask ci` again",
                path.display()
            )
        })?;
        Ok(Some(t))
    }
}

/// The figures of the last CI run: its total (≤ [`CI_GOAL_S`]) with each
/// step's time in the detail, and each vm-test pass against its goal.
pub fn figures(last: Option<&CiTimings>) -> Vec<Figure> {
    let primary = |f: Figure| {
        f.goal(Goal::AtMost {
            limit: PRIMARY_GOAL_S,
        })
    };
    let secondary = |f: Figure| {
        f.goal(Goal::AtMost {
            limit: SECONDARY_GOAL_S,
        })
    };
    let ci = |f: Figure| f.goal(Goal::AtMost { limit: CI_GOAL_S });
    let Some(t) = last else {
        let why = format!("no {TIMINGS_FILE}: run `cargo xtask ci` first (bench does not run it)");
        return vec![
            ci(Figure::not_measured(
                "ci_total_s",
                "ci: whole run",
                "s",
                &why,
            )),
            primary(Figure::not_measured(
                "ci_vm_test_primary_s",
                "ci: vm-test primary pass",
                "s",
                &why,
            )),
            secondary(Figure::not_measured(
                "ci_vm_test_secondary_s",
                "ci: vm-test secondary pass",
                "s",
                &why,
            )),
        ];
    };
    let steps = t
        .steps
        .iter()
        .map(|s| {
            format!(
                "{} {:.0} s{}",
                s.name,
                s.seconds,
                if s.ok { "" } else { " (FAILED)" }
            )
        })
        .collect::<Vec<_>>()
        .join("; ");
    let mut total = Figure::measured("ci_total_s", "ci: whole run", "s", vec![t.total_s]).detail(
        format!("{}; {steps}", if t.passed { "passed" } else { "FAILED" }),
    );
    total = ci(total);
    let pass = |role: &str, id: &'static str, name: &str| {
        let runs: Vec<&PassTiming> = t.vm_test_passes.iter().filter(|p| p.role == role).collect();
        if runs.is_empty() {
            return Figure::not_measured(id, name, "s", "no such pass in the last CI run");
        }
        Figure::measured(id, name, "s", runs.iter().map(|p| p.seconds).collect()).detail(
            runs.iter()
                .map(|p| {
                    format!(
                        "{} {:.0} s, {} case(s), {}{}",
                        p.firmware,
                        p.seconds,
                        p.cases,
                        p.accel,
                        if p.icount { " with -icount" } else { "" }
                    )
                })
                .collect::<Vec<_>>()
                .join("; "),
        )
    };
    vec![
        total,
        primary(pass(
            "primary",
            "ci_vm_test_primary_s",
            "ci: vm-test primary pass",
        )),
        secondary(pass(
            "secondary",
            "ci_vm_test_secondary_s",
            "ci: vm-test secondary pass",
        )),
    ]
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::report::{Status, judge};

    fn timings() -> CiTimings {
        let pass = |fw: &str, role: &str, seconds| PassTiming {
            firmware: fw.into(),
            role: role.into(),
            icount: role == "primary",
            accel: "tcg".into(),
            seconds,
            cases: 3,
        };
        CiTimings {
            finished_unix: 1,
            passed: true,
            total_s: 2000.0,
            steps: vec![StepTiming {
                name: "format".into(),
                seconds: 1.0,
                ok: true,
            }],
            vm_test_passes: vec![
                pass("bios", "primary", 1200.0),
                pass("uefi", "secondary", 250.0),
            ],
        }
    }

    #[test]
    fn passes_are_judged_against_their_goals() {
        let mut f = figures(Some(&timings()));
        judge(&mut f);
        let status = |id: &str| f.iter().find(|x| x.id == id).map(|x| x.status.clone());
        assert_eq!(status("ci_total_s"), Some(Status::Met));
        assert_eq!(status("ci_vm_test_primary_s"), Some(Status::Missed));
        assert_eq!(status("ci_vm_test_secondary_s"), Some(Status::Met));
    }

    #[test]
    fn round_trip_and_absent_file() {
        let dir = tempfile::tempdir().expect("tempdir");
        assert_eq!(CiTimings::read(dir.path()).expect("read"), None);
        timings().write(dir.path()).expect("write");
        assert_eq!(CiTimings::read(dir.path()).expect("read"), Some(timings()));
        let f = figures(None);
        assert!(f.iter().all(|x| matches!(x.status, Status::NotMeasured(_))));
    }
}
