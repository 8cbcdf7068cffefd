//! `cargo xtask fetch`

use anyhow::{Result, bail};
use builder::fetching::{self, FetchSummary};

use crate::flags::FetchArgs;
use crate::output::{Out, say};
use crate::sources::{open_store, project, source_flags};

pub fn run(args: &FetchArgs) -> Result<()> {
    let out = Out::new(args.json)?;
    let summary = fetch(args, out)?;
    out.report(&summary.to_json())?;
    require_all(&summary)
}

/// The fetch step of `build-image` and `verify-repro`: their lines to `out`,
/// no report of its own; fails when an input the build needs is missing.
pub fn fetch_step(args: &FetchArgs, out: Out) -> Result<()> {
    require_all(&fetch(args, out)?)
}

/// Fetches every locked input, saying what it did on `out`.
fn fetch(args: &FetchArgs, out: Out) -> Result<FetchSummary> {
    let store = open_store(&args.sources)?;
    let summary = fetching::fetch(
        &project(&args.sources),
        &store,
        &source_flags(&args.sources),
        args.input_dir.as_deref(),
    )?;
    say!(
        out,
        "fetch: {} present, {} downloaded ({:.1} MB), {} from --input-dir; npm tree: {} packages{}",
        summary.present,
        summary.downloaded,
        summary.bytes as f64 / 1e6,
        summary.seeded,
        summary.npm_packages,
        if summary.npm_already_complete {
            " (already complete)"
        } else {
            ""
        }
    );
    if let Some(line) = &summary.tailscale_modules {
        say!(out, "fetch: tailscale: {line}");
    }
    for m in summary.missing.iter().filter(|m| !m.fatal) {
        eprintln!(
            "warning: Tailscale is not in the store: {m}\n  \
             the image will be built WITHOUT Tailscale (the manifest says so, vm-test reports TS-1 and NET-8 as not run);\n  \
             to include it, download the file elsewhere and pass `--input-dir DIR` containing {}",
            m.name
        );
    }
    Ok(summary)
}

fn require_all(summary: &FetchSummary) -> Result<()> {
    let fatal: Vec<String> = summary.fatal().map(|m| m.to_string()).collect();
    if !fatal.is_empty() {
        bail!(
            "{} input(s) could not be fetched:\n  {}",
            fatal.len(),
            fatal.join("\n  ")
        );
    }
    Ok(())
}
