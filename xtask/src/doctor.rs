//! `cargo xtask doctor`

use anyhow::Result;
use builder::doctor;
use builder::store::Store;

use crate::flags::DoctorArgs;
use crate::output::{Out, say};

pub fn run(args: &DoctorArgs) -> Result<()> {
    let out = Out::new(args.json)?;
    let store = Store::default_root()?;
    let target = crate::project_root().join("target");
    let dirs = [store.as_path(), target.as_path()];
    let findings = if args.no_install {
        doctor::check(&dirs)
    } else {
        match doctor::ensure(&dirs, true) {
            Ok(findings) => findings,
            Err(e) => {
                let findings = doctor::check(&dirs);
                print(out, &findings);
                out.report(&doctor::to_json(&findings))?;
                return Err(e);
            }
        }
    };
    print(out, &findings);
    out.report(&doctor::to_json(&findings))?;
    if findings.iter().any(|f| !f.ok) {
        anyhow::bail!("some prerequisites are missing (see above)");
    }
    Ok(())
}

fn print(out: Out, findings: &[doctor::Finding]) {
    for f in findings {
        let mark = if f.ok { "ok  " } else { "MISS" };
        say!(out, "{mark} {:<70} {}", f.what, f.detail);
    }
}
