//! Running mmdebstrap reproducibly: fixed epoch, locale and timezone, from a
//! local repository, with hooks given as argv-safe strings.

use std::path::Path;
use std::time::Instant;

use anyhow::Result;
use disk::tools::{ToolError, command_line, run_streaming};

/// One bootstrap: the packages beyond minbase and the hooks.
#[derive(Debug, Clone)]
pub struct Bootstrap<'a> {
    /// Suite name, for mmdebstrap's bookkeeping (`trixie`).
    pub suite: &'a str,
    /// Packages to install beyond `--variant=minbase`.
    pub include: &'a [String],
    /// `--customize-hook` shell snippets; `$1` is the root directory.
    pub customize: Vec<String>,
    /// `SOURCE_DATE_EPOCH`.
    pub epoch: u64,
    /// The apt source line (a local repository).
    pub source: String,
    /// A label for progress lines.
    pub label: &'a str,
}

/// Runs mmdebstrap into `target` (a directory, or a `.tar` file).
pub fn run(b: &Bootstrap<'_>, target: &Path) -> Result<()> {
    let mut argv: Vec<String> = vec![
        "--variant=minbase".into(),
        "--mode=root".into(),
        "--format=auto".into(),
        "--aptopt=Acquire::Languages \"none\"".into(),
        "--dpkgopt=path-exclude=/usr/share/doc/*/changelog*".into(),
        "--dpkgopt=path-exclude=/usr/share/man/*".into(),
        "--dpkgopt=path-exclude=/usr/share/locale/*".into(),
        "--dpkgopt=path-include=/usr/share/locale/locale.alias".into(),
        "--essential-hook=echo 'APT::Install-Recommends \"false\";' > \"$1/etc/apt/apt.conf.d/99no-recommends\"".into(),
    ];
    if !b.include.is_empty() {
        argv.push(format!("--include={}", b.include.join(",")));
    }
    for hook in &b.customize {
        argv.push(format!("--customize-hook={hook}"));
    }
    argv.push(b.suite.into());
    argv.push(target.display().to_string());
    argv.push(b.source.clone());
    eprintln!(
        "{}: mmdebstrap {} packages → {}",
        b.label,
        b.include.len(),
        target.display()
    );
    let started = Instant::now();
    // mmdebstrap's own lines pass through as they come (`  [label] …`);
    // on failure the error ends with its last lines.
    let expr = duct::cmd("mmdebstrap", &argv)
        .env("SOURCE_DATE_EPOCH", b.epoch.to_string())
        .env("LC_ALL", "C.UTF-8")
        .env("TZ", "UTC")
        .env_remove("TMPDIR");
    run_streaming(&expr, &command_line("mmdebstrap", &argv), b.label).map_err(|e| match e {
        ToolError::Spawn { .. } => {
            anyhow::anyhow!("{}: {e} (run `cargo xtask doctor`)", b.label)
        }
        ToolError::Failed { .. } => anyhow::anyhow!("{}: {e}", b.label),
    })?;
    eprintln!("{}: done in {:.0?}", b.label, started.elapsed());
    Ok(())
}
