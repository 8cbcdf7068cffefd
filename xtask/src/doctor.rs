//! `cargo xtask doctor`

use anyhow::Result;
use builder::doctor;
use builder::store::Store;

use crate::flags::DoctorArgs;

pub fn run(args: &DoctorArgs) -> Result<()> {
    let store = Store::default_root()?;
    let target = crate::project_root().join("target");
    let dirs = [store.as_path(), target.as_path()];
    let findings = if args.no_install {
        doctor::check(&dirs)
    } else {
        doctor::ensure(&dirs, true).inspect_err(|_| print(&doctor::check(&dirs)))?
    };
    print(&findings);
    if findings.iter().any(|f| !f.ok) {
        anyhow::bail!("some prerequisites are missing (see above)");
    }
    Ok(())
}

fn print(findings: &[doctor::Finding]) {
    for f in findings {
        let mark = if f.ok { "ok  " } else { "MISS" };
        println!("{mark} {:<70} {}", f.what, f.detail);
    }
}
