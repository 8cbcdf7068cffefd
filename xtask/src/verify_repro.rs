//! `cargo xtask verify-repro`: build the image twice and compare (BOOT-3);
//! the flow is `repro::verify` (`docs/reproducibility.md`). Exit 0 when the
//! builds agree, 1 with the explanation when they do not.

use anyhow::{Result, anyhow};
use repro::{BuildSources, Mode, VerifyOptions};

use vm_tests::suite::rebuild::{CI_RUN_ENV, HCLOUD_CANARY_PREFIX};

use crate::flags::VerifyReproArgs;
use crate::output::{Out, say};
use crate::sources::{open_store, project};

pub fn run(args: &VerifyReproArgs) -> Result<()> {
    let out = Out::new(args.fetch.json)?;
    let root = crate::project_root();
    let sources = &args.fetch.sources;
    let store = open_store(sources)?;
    let spec = project(sources).read_spec()?;
    let work = match &args.dir {
        Some(d) if d.is_absolute() => d.clone(),
        Some(d) => root.join(d),
        None => root.join("target/repro"),
    };
    let mode = match (&args.against, args.compare_only) {
        (_, true) => Mode::CompareOnly,
        (Some(against), false) => Mode::Against(against.clone()),
        (None, false) => Mode::Twice,
    };
    if !args.compare_only {
        if !args.no_doctor {
            let target = root.join("target");
            builder::doctor::ensure(&[store.root(), target.as_path()], true)?;
        }
        if !args.offline {
            crate::fetch::fetch_step(&args.fetch, out)?;
        }
    }
    let opts = VerifyOptions {
        mode,
        sources: BuildSources {
            spec: if sources.spec.is_absolute() {
                sources.spec.clone()
            } else {
                root.join(&sources.spec)
            },
            mirror: sources.mirror.clone(),
            security_mirror: sources.security_mirror.clone(),
            npm_registry: sources.npm_registry.clone(),
            store: sources.store.clone(),
        },
        root,
        work,
        name: spec.image.name,
        epoch: spec.image.source_date_epoch,
        keep: args.keep,
        max_diffs: args.max_diffs,
        inject_nondeterminism: args.inject_nondeterminism,
        ci_run: std::env::var(CI_RUN_ENV).ok(),
        // Only the CI canary, never a real token, is recorded.
        hcloud_canary: std::env::var("HCLOUD_TOKEN")
            .ok()
            .filter(|t| t.starts_with(HCLOUD_CANARY_PREFIX)),
    };
    let outcome = repro::verify(&opts, &|line| say!(out, "{line}"))?;
    out.report(&outcome.report.to_json())?;
    match outcome.failure {
        Some(failure) => Err(anyhow!(failure)),
        None => Ok(()),
    }
}
