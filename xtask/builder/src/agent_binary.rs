//! Building the first-boot agent (`appliance`'s `openclaw-firstboot`) for the image.
//!
//! Reproducible: a dedicated target directory, `--locked`, build paths
//! remapped (`--remap-path-prefix`), debug info stripped, fixed
//! `SOURCE_DATE_EPOCH`; the environment is set explicitly, not inherited.

use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail};

/// The agent's binary name.
pub const BINARY: &str = "openclaw-firstboot";

/// Builds the agent from the workspace at `project_root`; returns the binary.
pub fn build(project_root: &Path, epoch: u64) -> Result<PathBuf> {
    let target = project_root.join("target").join("agent");
    let cargo_home = std::env::var_os("CARGO_HOME")
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".cargo")))
        .unwrap_or_else(|| PathBuf::from("/nonexistent"));
    // CARGO_ENCODED_RUSTFLAGS: flags separated by 0x1f, so paths with spaces are safe.
    let flags = [
        format!("--remap-path-prefix={}=/build", project_root.display()),
        format!("--remap-path-prefix={}=/cargo", cargo_home.display()),
        "-Cstrip=debuginfo".to_string(),
        "-Cdebuginfo=0".to_string(),
    ]
    .join("\u{1f}");
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    eprintln!("agent: cargo build --release --no-default-features -p appliance --bin {BINARY}");
    let out = duct::cmd!(
        cargo,
        "build",
        "--release",
        "--locked",
        "--quiet",
        // Without the rendered files, which the agent does not use: a change
        // to one of them is then no reason for cargo to rebuild the agent.
        "--no-default-features",
        "-p",
        "appliance",
        "--bin",
        BINARY,
        "--target-dir",
        &target
    )
    .dir(project_root)
    .env("CARGO_ENCODED_RUSTFLAGS", flags)
    .env_remove("RUSTFLAGS")
    .env("SOURCE_DATE_EPOCH", epoch.to_string())
    .env("TZ", "UTC")
    .env("LC_ALL", "C.UTF-8")
    .stderr_to_stdout()
    .stdout_capture()
    .unchecked()
    .run()
    .context("running cargo to build the first-boot agent")?;
    if !out.status.success() {
        bail!(
            "building the first-boot agent failed ({}):\n{}",
            out.status,
            String::from_utf8_lossy(&out.stdout)
        );
    }
    let bin = target.join("release").join(BINARY);
    if !bin.is_file() {
        bail!("cargo succeeded but {} is missing", bin.display());
    }
    Ok(bin)
}
