//! `cargo xtask vm-test`

use anyhow::{Context, Result, bail};
use vm_tests::Firmware;
use vm_tests::suite::{
    PASSES_FILE, REPORT_JSON_FILE, SuiteOptions, junit_xml, passes_json, report_json, run_suite,
    table,
};

use crate::flags::{FirmwareChoice, VmTestArgs};
use crate::output::{Out, say};

pub fn run(args: &VmTestArgs) -> Result<()> {
    let out = Out::new(args.json)?;
    let root = crate::project_root();
    if !args.no_doctor {
        let target = root.join("target");
        builder::doctor::ensure(&[target.as_path()], true)?;
    }
    let image = crate::built_image(args.image.as_deref())?;
    let icount_firmwares = args.icount.map(firmware_passes).unwrap_or_default();
    let firmwares = firmware_passes(args.firmware);
    let out_dir = root.join("target/vm-test");
    std::fs::create_dir_all(&out_dir).with_context(|| format!("creating {}", out_dir.display()))?;
    let report = run_suite(&SuiteOptions {
        image,
        out_dir: out_dir.clone(),
        firmwares,
        only: args.only.clone(),
        icount_firmwares,
        split: args.ci,
        image_b: args.image_b.clone(),
    })?;
    let text = table(&report);
    say!(out, "{text}");
    let json = report_json(&report);
    builder::fsutil::write_atomic(&out_dir.join("report.txt"), text.as_bytes())?;
    builder::fsutil::write_atomic(&out_dir.join(REPORT_JSON_FILE), json.as_bytes())?;
    builder::fsutil::write_atomic(&out_dir.join("junit.xml"), junit_xml(&report).as_bytes())?;
    builder::fsutil::write_atomic(&out_dir.join(PASSES_FILE), passes_json(&report).as_bytes())?;
    say!(out, "JUnit: {}", out_dir.join("junit.xml").display());
    out.report(&json)?;
    if report.failures() > 0 {
        bail!(
            "{} invariant check(s) failed (serial logs under {})",
            report.failures(),
            out_dir.display()
        );
    }
    Ok(())
}

fn firmware_passes(choice: FirmwareChoice) -> Vec<Firmware> {
    match choice {
        FirmwareChoice::Bios => vec![Firmware::Bios],
        FirmwareChoice::Uefi => vec![Firmware::Uefi],
        FirmwareChoice::Both => vec![Firmware::Bios, Firmware::Uefi],
    }
}
