//! Every flag of every task, in one place; their doc comments are the help text.

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand};

/// Build, test and publish the reproducible OpenClaw appliance image.
#[derive(Parser, Debug)]
#[command(
    name = "cargo xtask",
    bin_name = "cargo xtask",
    version,
    about = "Build, test and publish the reproducible OpenClaw appliance image."
)]
pub struct Cli {
    /// The task to run.
    #[command(subcommand)]
    pub task: Task,
}

/// The tasks.
#[derive(Subcommand, Debug)]
pub enum Task {
    /// Resolve every input of image.toml to exact versions and hashes (image.lock).
    Lock(LockArgs),
    /// Download every locked input into the content-addressed store, verified.
    Fetch(FetchArgs),
    /// Build the disk image target/image/<name>.raw (+ .sha256, manifest) from the lock.
    BuildImage(BuildImageArgs),
    /// Boot the image in QEMU (BIOS and UEFI) and prove every invariant of invariants.md.
    VmTest(VmTestArgs),
    /// Build the image twice (other directory, time, TZ, locale, umask) and compare; on a mismatch say where.
    VerifyRepro(VerifyReproArgs),
    /// Check host prerequisites; on Debian as root, install what is missing.
    Doctor(DoctorArgs),
    /// Run exactly what CI runs: formatting, lints, tests, lock check, doctor, build-image.
    Ci(CiArgs),
    /// Time the cold, warm and no-op builds, vm-test and the image sizes against their goals (target/bench/bench.json).
    Bench(BenchArgs),
}

/// Where inputs come from: the spec, mirrors, registries, the store.
#[derive(Args, Debug, Clone)]
pub struct Sources {
    /// The spec file.
    #[arg(long, default_value = "image.toml", value_name = "FILE")]
    pub spec: PathBuf,
    /// Debian archive root URL (default: image.toml's debian.mirror, else the host's apt sources).
    #[arg(long, value_name = "URL")]
    pub mirror: Option<String>,
    /// Debian security archive root URL (default: image.toml, else the host's apt sources).
    #[arg(long, value_name = "URL")]
    pub security_mirror: Option<String>,
    /// npm registry URL (default: $npm_config_registry, else `npm config get registry`).
    #[arg(long, value_name = "URL")]
    pub npm_registry: Option<String>,
    /// The content-addressed store (default: ~/.cache/openclaw-image/store).
    #[arg(long, value_name = "DIR")]
    pub store: Option<PathBuf>,
}

/// `cargo xtask lock`
#[derive(Args, Debug)]
pub struct LockArgs {
    #[command(flatten)]
    pub sources: Sources,
    /// Only check that image.lock matches image.toml; exit 1 naming what differs.
    #[arg(long, conflicts_with = "update")]
    pub check: bool,
    /// Re-resolve everything against the mirror and registry now, moving pins.
    #[arg(long)]
    pub update: bool,
}

/// `cargo xtask fetch`
#[derive(Args, Debug)]
pub struct FetchArgs {
    #[command(flatten)]
    pub sources: Sources,
    /// A directory of inputs that cannot be downloaded here (e.g. tailscale_1.102.4_amd64.tgz).
    #[arg(long, value_name = "DIR")]
    pub input_dir: Option<PathBuf>,
}

/// `cargo xtask build-image`
#[derive(Args, Debug)]
pub struct BuildImageArgs {
    #[command(flatten)]
    pub fetch: FetchArgs,
    /// Never download: build only from what the store already holds.
    #[arg(long)]
    pub offline: bool,
    /// Also write <name>.raw.zst (zstd -3).
    #[arg(long)]
    pub compress: bool,
    /// Output directory (default: target/image).
    #[arg(long, value_name = "DIR")]
    pub out: Option<PathBuf>,
    /// Stage cache directory (default: target/build/stages).
    #[arg(long, value_name = "DIR")]
    pub stage_dir: Option<PathBuf>,
    /// Skip the host prerequisite check.
    #[arg(long)]
    pub no_doctor: bool,
    /// Also keep the merged root tarball as <stage-dir>/root.tar (verify-repro compares it).
    #[arg(long, hide = true)]
    pub keep_root_tar: bool,
}

/// `cargo xtask vm-test`
#[derive(Args, Debug)]
pub struct VmTestArgs {
    /// The raw image to test (default: target/image/openclaw-appliance.raw); never modified.
    #[arg(long, value_name = "PATH")]
    pub image: Option<PathBuf>,
    /// Firmware to boot under.
    #[arg(long, value_enum, default_value = "both")]
    pub firmware: FirmwareChoice,
    /// Only these invariant IDs, comma-separated (e.g. NET-3,SRV-1).
    #[arg(long, value_delimiter = ',', value_name = "ID,ID…")]
    pub only: Vec<String>,
    /// Skip the host prerequisite check.
    #[arg(long)]
    pub no_doctor: bool,
}

/// `--firmware`
#[derive(clap::ValueEnum, Debug, Clone, Copy, PartialEq, Eq)]
pub enum FirmwareChoice {
    /// Legacy BIOS (SeaBIOS).
    Bios,
    /// UEFI (OVMF).
    Uefi,
    /// BIOS, then UEFI.
    Both,
}

/// `cargo xtask doctor`
#[derive(Args, Debug)]
pub struct DoctorArgs {
    /// Only report; never install.
    #[arg(long)]
    pub no_install: bool,
}

/// `cargo xtask ci`
#[derive(Args, Debug)]
pub struct CiArgs {
    /// Skip the slow steps (image build, vm-test): formatting, lints, unit tests, lock check only.
    #[arg(long)]
    pub quick: bool,
}

/// `cargo xtask verify-repro`
#[derive(Args, Debug)]
pub struct VerifyReproArgs {
    #[command(flatten)]
    pub fetch: FetchArgs,
    /// Rebuild once and compare with a published image: a sha256 (64 hex) or a manifest / .sha256 file.
    #[arg(long, value_name = "SHA256|MANIFEST")]
    pub against: Option<String>,
    /// Keep both build directories (stage caches, images) after a match (always kept on a mismatch).
    #[arg(long)]
    pub keep: bool,
    /// Never download: use only what the store already holds.
    #[arg(long)]
    pub offline: bool,
    /// Where the builds go (default: target/repro; builds in <DIR>/a and <DIR>/b).
    #[arg(long, value_name = "DIR")]
    pub dir: Option<PathBuf>,
    /// How many differing files, inodes or entries to list per section.
    #[arg(long, default_value_t = 20, value_name = "N")]
    pub max_diffs: usize,
    /// Skip the host prerequisite check.
    #[arg(long)]
    pub no_doctor: bool,
    /// Test the detector: write the current time into one file of build B's appliance layer.
    #[arg(long, hide = true)]
    pub inject_nondeterminism: bool,
    /// Do not build: explain the kept builds <DIR>/a and <DIR>/b again.
    #[arg(long, hide = true)]
    pub compare_only: bool,
}

/// `cargo xtask bench`
#[derive(Args, Debug)]
pub struct BenchArgs {
    #[command(flatten)]
    pub sources: Sources,
    /// Print the JSON (target/bench/bench.json) instead of the table.
    #[arg(long)]
    pub json: bool,
    /// Runs of each cheap figure (no-op and warm rebuild); the median is reported.
    #[arg(long, default_value_t = 3, value_name = "N", value_parser = clap::value_parser!(u32).range(1..))]
    pub runs: u32,
    /// Only these parts, comma-separated: floor, build, noop, size, warm, vm-test (default: all; vm-test takes ~50 min per firmware under TCG).
    #[arg(long, value_delimiter = ',', value_name = "PART,…")]
    pub only: Vec<String>,
    /// Firmware for the vm-test part.
    #[arg(long, value_enum, default_value = "both")]
    pub firmware: FirmwareChoice,
}
