//! The invariant suite of `cargo xtask vm-test`: every ID of
//! `invariants.md` is a named case whose outcome is pass, fail, not-run or
//! not-applicable with a reason. Neither of the last two ever counts as
//! pass; nothing is skipped silently.

mod catalogue;
mod checks;
pub mod rebuild;
mod report;
mod run;

pub use catalogue::{CATALOGUE, FIRMWARE_DEPENDENT, Invariant, Phase};
pub use report::{
    CaseResult, Outcome, PASSES_FILE, PassTiming, REPORT_JSON_FILE, Report, Summary, junit_xml,
    passes_json, read_passes, report_json, table,
};
pub use run::{PassRole, SuiteOptions, random_hex, run_suite};
