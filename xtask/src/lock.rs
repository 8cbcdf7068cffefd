//! `cargo xtask lock`

use anyhow::{Result, bail};
use builder::locking::{LockOptions, LockOutcome, LockReport, Project, lock};

use crate::flags::LockArgs;
use crate::output::{Out, say};
use crate::sources::{open_store, project, source_flags};

pub fn run(args: &LockArgs) -> Result<()> {
    let out = Out::new(args.json)?;
    let project: Project = project(&args.sources);
    if args.check {
        let spec = project.read_spec()?;
        let lock = project.require_lock()?;
        let diffs = project.check(&spec, &lock)?;
        out.report(&LockReport::checked(&project, diffs.clone()).to_json())?;
        if diffs.is_empty() {
            say!(
                out,
                "{} matches {}",
                project.lock.display(),
                project.spec.display()
            );
            return Ok(());
        }
        for d in &diffs {
            eprintln!("  {d}");
        }
        bail!(
            "{} no longer matches {} ({} difference(s) above): run `cargo xtask lock`",
            project.lock.display(),
            project.spec.display(),
            diffs.len()
        );
    }
    let store = open_store(&args.sources)?;
    let opts = LockOptions {
        sources: source_flags(&args.sources),
        update: args.update,
        cache_dir: store.root().join("index-cache"),
    };
    let outcome = lock(&project, &store, &opts)?;
    match &outcome {
        LockOutcome::UpToDate => say!(out, "{} is up to date", project.lock.display()),
        LockOutcome::Written { debs, npm_packages } => say!(
            out,
            "wrote {} ({debs} Debian packages) and {} ({npm_packages} npm packages)",
            project.lock.display(),
            project.npm_lock.display()
        ),
    }
    out.report(&LockReport::locked(&project, &outcome).to_json())?;
    Ok(())
}
