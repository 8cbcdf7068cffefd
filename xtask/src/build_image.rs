//! `cargo xtask build-image`

use anyhow::Result;
use builder::build::{BuildOptions, build_image};
use builder::sources::archives;

use crate::flags::BuildImageArgs;
use crate::output::{Out, say};
use crate::sources::{open_store, project, source_flags};

pub fn run(args: &BuildImageArgs) -> Result<()> {
    let out = Out::new(args.fetch.json)?;
    let root = crate::project_root();
    let sources = &args.fetch.sources;
    let store = open_store(sources)?;
    if !args.no_doctor {
        let target = root.join("target");
        builder::doctor::ensure(&[store.root(), target.as_path()], true)?;
    }
    if !args.offline {
        crate::fetch::fetch_step(&args.fetch, out)?;
    }
    let out_dir = args
        .out
        .clone()
        .unwrap_or_else(|| root.join("target/image"));
    let mut project = project(sources);
    if let Some(hostname) = &args.variant_hostname {
        project = project.variant_with_hostname(&out_dir.join("spec"), hostname)?;
        say!(
            out,
            "variant:  {} (image.hostname = {hostname:?}, the same lock)",
            project.spec.display()
        );
    }
    let spec = project.read_spec()?;
    let flags = source_flags(sources);
    let opts = BuildOptions {
        archives: archives(&spec, &flags)?,
        npm_registry: builder::npm::registry(flags.npm_registry.as_deref())?,
        project,
        project_root: root.clone(),
        store,
        stage_dir: args
            .stage_dir
            .clone()
            .unwrap_or_else(|| root.join("target/build/stages")),
        out_dir,
        compress: args.compress,
        keep_root_tar: args.keep_root_tar,
    };
    let report = build_image(&opts)?;
    say!(out, "image:    {}", report.image.display());
    say!(out, "sha256:   {}", report.sha256);
    say!(out, "manifest: {}", report.manifest.display());
    if !report.tailscale {
        say!(
            out,
            "note:     built WITHOUT Tailscale (not in the store); see README, section Tailscale"
        );
    }
    out.report(&report.to_json())?;
    Ok(())
}
