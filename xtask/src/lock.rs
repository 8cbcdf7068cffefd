//! `cargo xtask lock`

use anyhow::{Result, bail};
use builder::locking::{LockOptions, LockOutcome, Project, lock};

use crate::flags::LockArgs;
use crate::sources::{open_store, project, source_flags};

pub fn run(args: &LockArgs) -> Result<()> {
    let project: Project = project(&args.sources);
    if args.check {
        let spec = project.read_spec()?;
        let lock = project.require_lock()?;
        let diffs = project.check(&spec, &lock)?;
        if diffs.is_empty() {
            println!(
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
    match lock(&project, &store, &opts)? {
        LockOutcome::UpToDate => println!("{} is up to date", project.lock.display()),
        LockOutcome::Written { debs, npm_packages } => println!(
            "wrote {} ({debs} Debian packages) and {} ({npm_packages} npm packages)",
            project.lock.display(),
            project.npm_lock.display()
        ),
    }
    Ok(())
}
