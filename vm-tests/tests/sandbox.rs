//! Boots the real appliance image and runs the sandbox checks (AGT-1..6,
//! NODE-1, LAT-1) through the suite runner, printing every outcome.
//!
//! Slow (minutes under TCG: first boot, Docker, the gateway; the sandbox
//! image is baked into Docker's store, nothing is loaded), so ignored by
//! default: run it with `VMTEST_IMAGE=target/image/openclaw-appliance.raw
//! cargo test -p vm-tests --test sandbox -- --ignored` (the image's manifest
//! must lie beside it, as `cargo xtask build-image` writes it); it fails,
//! saying so, without `VMTEST_IMAGE`.
//!
//! - `VMTEST_IMAGE`: `target/image/openclaw-appliance.raw` (left unchanged).
//! - `VMTEST_FIRMWARE`: `bios` (default) or `uefi`.
//!
//! Logs, overlays and the serial console stay under
//! `target/tmp/vm-tests-sandbox/`.

use std::path::PathBuf;

use anyhow::{Context, Result, bail};
use vm_tests::Firmware;
use vm_tests::suite::{Outcome, SuiteOptions, run_suite, table};

/// The IDs this test runs, in catalogue order.
const IDS: &[&str] = &[
    "AGT-1", "AGT-2", "AGT-3", "AGT-4", "AGT-5", "AGT-6", "NODE-1", "LAT-1",
];

#[test]
#[ignore = "needs VMTEST_IMAGE=<path to a built raw image>; run with --ignored"]
fn sandbox_invariants_on_the_real_image() -> Result<()> {
    let image = std::env::var_os("VMTEST_IMAGE").context(
        "VMTEST_IMAGE is not set: set VMTEST_IMAGE=target/image/openclaw-appliance.raw \
         (a raw image built by `cargo xtask build-image`, its manifest beside it) to run \
         sandbox_invariants_on_the_real_image",
    )?;
    let firmware = match std::env::var("VMTEST_FIRMWARE").as_deref() {
        Ok("uefi") => Firmware::Uefi,
        _ => Firmware::Bios,
    };
    let opts = SuiteOptions {
        image: PathBuf::from(image),
        out_dir: PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("vm-tests-sandbox"),
        firmwares: vec![firmware],
        only: IDS.iter().map(|s| s.to_string()).collect(),
        icount_firmwares: Vec::new(),
        split: false,
        image_b: None,
    };
    let report = run_suite(&opts)?;
    let text = table(&report);
    eprintln!("{text}");
    // Print every detail line (the table keeps twelve per case).
    for case in &report.cases {
        eprintln!("--- {} {}: {}", case.id, case.outcome.label(), case.title);
        eprintln!("{}", case.outcome.detail());
    }

    let ran: Vec<&str> = report.cases.iter().map(|c| c.id.as_str()).collect();
    for id in IDS {
        if !ran.contains(id) {
            bail!("{id} did not run:\n{text}");
        }
    }
    // Not-run and not-applicable are reported (with their reason), never
    // counted as a pass; a failure, or a check that broke, fails the test.
    for case in report
        .cases
        .iter()
        .filter(|c| matches!(c.outcome, Outcome::NotRun(_) | Outcome::NotApplicable(_)))
    {
        eprintln!(
            "{} {}: {}",
            case.outcome.label(),
            case.id,
            case.outcome.detail()
        );
    }
    let failed: Vec<String> = report
        .cases
        .iter()
        .filter(|c| matches!(c.outcome, Outcome::Fail(_)))
        .map(|c| c.id.clone())
        .collect();
    if !failed.is_empty() {
        bail!("failed: {}\n{text}", failed.join(", "));
    }
    Ok(())
}
