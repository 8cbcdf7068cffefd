//! `cargo xtask fetch`

use anyhow::{Result, bail};
use builder::sources::{archives, locked_inputs};
use builder::store::Fetcher;

use crate::flags::FetchArgs;
use crate::sources::{open_store, project, source_flags};

pub fn run(args: &FetchArgs) -> Result<()> {
    let project = project(&args.sources);
    let spec = project.read_spec()?;
    let lock = project.require_lock()?;
    let diffs = project.check(&spec, &lock)?;
    if !diffs.is_empty() {
        bail!(
            "{} does not match {}: {}; run `cargo xtask lock`",
            project.lock.display(),
            project.spec.display(),
            diffs.join("; ")
        );
    }
    let store = open_store(&args.sources)?;
    let flags = source_flags(&args.sources);
    let archives = archives(&spec, &flags)?;
    let registry = builder::npm::registry(flags.npm_registry.as_deref())?;
    let inputs = locked_inputs(&lock, &archives, &registry);
    eprintln!(
        "fetch: {} inputs into {}",
        inputs.len(),
        store.root().display()
    );
    let report = Fetcher::new(&store, args.input_dir.as_deref())?.fetch_all(&inputs)?;
    let runtime = builder::npm::Runtime::new(&store, &lock.node, &lock.openclaw.npm)?;
    let tree = builder::npm::fetch_tree(&registry, &runtime, &project.npm_lock, &store)?;
    println!(
        "fetch: {} present, {} downloaded ({:.1} MB), {} from --input-dir; npm tree: {tree:?}",
        report.present,
        report.downloaded,
        report.bytes as f64 / 1e6,
        report.seeded
    );
    if let Some(line) = builder::tailscale::source::fetch_modules(&store, &lock)? {
        println!("fetch: tailscale {}: {line}", lock.tailscale.version);
    }
    let tailscale = builder::sources::tailscale_input(&lock);
    let mut fatal = Vec::new();
    for (input, why) in &report.missing {
        let url = input.url.as_deref().unwrap_or("(no URL)");
        let line = format!(
            "`{}` from {url} (sha256 {}): {why}",
            input.name, input.sha256
        );
        if tailscale.as_ref().is_some_and(|t| t.name == input.name) {
            eprintln!(
                "warning: Tailscale is not in the store: {line}\n  \
                 the image will be built WITHOUT Tailscale (the manifest says so, vm-test reports TS-1 and NET-8 as not run);\n  \
                 to include it, download the file elsewhere and pass `--input-dir DIR` containing {}",
                input.name
            );
        } else {
            fatal.push(line);
        }
    }
    if !fatal.is_empty() {
        bail!(
            "{} input(s) could not be fetched:\n  {}",
            fatal.len(),
            fatal.join("\n  ")
        );
    }
    Ok(())
}
