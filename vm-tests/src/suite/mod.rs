//! The invariant suite of `cargo xtask vm-test`: every ID of
//! `invariants.md` is a named case whose outcome is pass, fail or not-run
//! with a reason. Not-run never counts as pass; nothing is skipped silently.

mod catalogue;
mod checks;
mod report;
mod run;

pub use catalogue::{CATALOGUE, FIRMWARE_DEPENDENT, Invariant, Phase};
pub use report::{
    CaseResult, Outcome, PASSES_FILE, PassTiming, Report, junit_xml, passes_json, read_passes,
    table,
};
pub use run::{PassRole, SuiteOptions, run_suite};
